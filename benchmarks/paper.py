"""The paper section: PGD and DAA-BLOB over the paper's set through ``daa_tf.run``, against the
DAA authors' design re-created in :mod:`benchmarks.authors`, timed in the same invocation."""
import json
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional

from benchmarks.common import REPO, Context, Row, median, section

# The DAA authors' released code, 100 steps over the first 1000 MNIST test images, timed on the
# project's reference machine (2-core CPU): seconds.
AUTHORS_SECONDS = {"pgd": 28.8, "daa_blob": 60.6}


def authors_runs(args: Any) -> Optional[List[Row]]:
    """One subprocess run of :mod:`benchmarks.authors` (PGD then DAA-BLOB over the paper set);
    None, with the reason on stderr, when it cannot run here."""
    command = [sys.executable, "-m", "benchmarks.authors", "--json", "-",
               "--examples", str(args.paper_examples), "--steps", str(args.paper_steps)]
    if args.random:
        command.append("--random")
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if done.returncode:
        tail = done.stderr.strip().splitlines()[-3:]
        print("# the authors' loops could not run here (" + " / ".join(tail) + "): only the "
              "recorded figures are shown", file=sys.stderr)
        return None
    return json.loads(done.stdout)["runs"]


@section("paper", "the paper's run (1000 MNIST images, 100 steps) vs the authors' design, "
         "alternated",
         [('attack', 'attack', '{}'),
          ('examples', 'images', '{}'),
          ('steps', 'steps', '{}'),
          ('jit', 'jit', '{}'),
          ('runs', 'runs', '{}'),
          ('seconds', 'ours s', '{:.1f}'),
          ('accuracy', 'ours acc', '{:.1%}'),
          ('authors_measured_s', 'authors s (now)', '{:.1f}'),
          ('authors_accuracy', 'authors acc', '{:.1%}'),
          ('vs_authors_measured', 'x authors (now)', '{:.3f}'),
          ('authors_s', 'authors s (recorded)', '{}'),
          ('vs_authors', 'x recorded', '{:.3f}')],
         examples=lambda args: max(args.batch, args.paper_examples),
         models=("mnist",))
def paper(ctx: Context) -> List[Row]:
    """PGD and DAA-BLOB over the first ``--paper-examples`` images, one restart of ``daa_tf.run``
    (random start, rounds of ``--steps-per-round`` with reshuffles, groups of ``--particles``,
    the driver's default batch, final evaluation) against :mod:`benchmarks.authors` (their design:
    TF1 session run per step, host-side kernel, batches of 200), alternated ``--paper-repeats``
    times; medians. Also the ratio to the authors' figures recorded in ``AUTHORS_SECONDS``."""
    import daa_tf
    args, model, x, y, settings, jit = (ctx.args, ctx.model, ctx.x_all, ctx.y_all, ctx.settings,
                                        ctx.jit)
    n = min(args.paper_examples, len(x))
    ours: Dict[str, List[float]] = {"pgd": [], "daa_blob": []}
    accuracy: Dict[str, float] = {}
    theirs: Dict[str, List[Dict[str, Any]]] = {"pgd": [], "daa_blob": []}
    for repeat in range(-1 if args.paper_warmup else 0, args.paper_repeats):
        if repeat >= 0 and args.paper_authors:
            for run in authors_runs(args) or []:
                theirs[run["attack"]].append(run)
        for attack in ("pgd", "daa_blob"):
            started = time.perf_counter()
            result = daa_tf.run(model, x[:n], y[:n], attack=attack, steps=args.paper_steps,
                                steps_per_round=args.steps_per_round, seed=repeat + 1, verbose=0,
                                jit_compile=jit, particles=args.particles, **settings)
            if repeat >= 0:  # the warm-up call traces and optimises the graphs
                ours[attack].append(time.perf_counter() - started)
                accuracy[attack] = result.accuracy
    full = n == 1000 and args.paper_steps == 100
    rows = []
    for attack in ("pgd", "daa_blob"):
        seconds = median(ours[attack])
        their = median([r["seconds"] for r in theirs[attack]]) if theirs[attack] else None
        rows.append(dict(attack=attack, examples=n, steps=args.paper_steps, jit=jit,
                         seconds=seconds, accuracy=accuracy[attack], authors_measured_s=their,
                         authors_accuracy=theirs[attack][-1]["accuracy"] if their else None,
                         vs_authors_measured=seconds / their if their else None,
                         runs=len(ours[attack]), seconds_all=ours[attack],
                         authors_seconds_all=[r["seconds"] for r in theirs[attack]],
                         authors_s=AUTHORS_SECONDS[attack] if full else None,
                         vs_authors=seconds / AUTHORS_SECONDS[attack] if full else None))
    return rows
