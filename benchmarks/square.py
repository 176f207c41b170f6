"""Square Attack on the shared MNIST models (docs/algorithms.md#square): the cost of one query
against one forward pass of the same batch, and the robust accuracy at a query budget.

    python -m benchmarks.square cost --model adv_trained --images 1000 --queries 100 --repeats 5
    python -m benchmarks.square run --model adv_trained --images 1000 --queries 5000

``cost``: medians of interleaved repeats of (a) ``--queries`` compiled forward passes of the
batch (the model's compiled inference, ``daa_tf.loop.compiled_logits``, called in a Python loop)
and (b) one compiled Square loop of ``--queries`` queries on the same batch (stripes start,
margin loss, candidates, acceptance; the fixed-shape loop computes every row until all are done,
so each query is one forward pass of the whole batch). Prints the seconds per forward pass, per
query and their ratio.

``run``: ``daa_tf.run(..., "square", steps=--queries)`` on the images the model classifies
correctly (as AutoAttack attacks them); the robust accuracy counts the others as errors. Prints
the clean and robust accuracy, the seconds and the queries spent per attacked image.
The fixtures are read from ``../shared`` (or ``DAA_TF_SHARED``).
"""
import argparse
import sys
import time
from typing import List, Optional

from benchmarks.common import interleaved, median, shared_dir


def _setup(args: argparse.Namespace):
    from daa_tf import data
    from daa_tf.models import load_madry_mnist

    shared = shared_dir()
    if shared is None:
        raise SystemExit("the shared fixtures (../shared or DAA_TF_SHARED) are needed")
    model = load_madry_mnist(shared / "models" / "mnist" / args.model)
    x, y = data.load_mnist("test", data_dir=shared / "data" / "mnist",
                           num_examples=args.images)
    return model, x, y.astype("int32")


def cost(args: argparse.Namespace) -> None:
    import tensorflow as tf

    from daa_tf import engine, loop

    model, x, y = _setup(args)
    cfg = engine.make_config("square", eps=args.eps, steps=args.queries)
    seed = engine.seed_tensor(0)
    x0, yt = tf.constant(x), tf.constant(y)
    start = engine.start_points(cfg, x0, seed)
    keys = engine.example_keys(seed, len(x))
    logits = loop.compiled_logits(model, cfg.jit_compile)
    spent: List[float] = []

    def forward():
        for _ in range(args.queries):
            out = logits(x0)
        out.numpy()

    def square():
        out = engine.run_loop(model, cfg, x0, yt, start, keys=keys)
        spent.append(float(engine.queries(cfg, out).numpy().mean()))

    _, times, _ = interleaved({"forward": forward, "square": square}, args.repeats)
    per_pass = median(times["forward"]) / args.queries
    per_query = median(times["square"]) / args.queries
    print(f"model {args.model}, {len(x)} images, {args.queries} queries, jit "
          f"{cfg.jit_compile}: forward pass {1000 * per_pass:.1f} ms, Square query "
          f"{1000 * per_query:.1f} ms (queries counted per image: {spent[-1]:.1f}), ratio "
          f"{per_query / per_pass:.3f}")


def run(args: argparse.Namespace) -> None:
    import numpy as np

    import daa_tf

    model, x, y = _setup(args)
    pred, _, _ = daa_tf.evaluate(model, x, y, batch_size=args.batch)
    clean = pred == y
    started = time.perf_counter()
    result = daa_tf.run(model, x[clean], y[clean], "square", eps=args.eps, steps=args.queries,
                        batch_size=args.batch, seed=args.seed, verbose=args.verbose,
                        state_path=args.state, resume=bool(args.state))
    seconds = time.perf_counter() - started
    robust = int(np.sum(result.correct))
    print(f"model {args.model}, {len(x)} images, eps {args.eps}, {args.queries} queries, seed "
          f"{args.seed}: clean {100 * clean.mean():.1f}%, robust {100 * robust / len(x):.1f}% "
          f"({robust}/{len(x)}), {seconds:.0f} s, {result.queries_mean:.0f} queries per "
          f"attacked image")


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("cost", "run"))
    parser.add_argument("--model", default="adv_trained", choices=("adv_trained", "natural"))
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--eps", type=float, default=0.3)
    parser.add_argument("--queries", type=int, default=None,
                        help="default: 100 for cost, 5000 for run")
    parser.add_argument("--repeats", type=int, default=5, help="cost: timed repeats")
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--state", default=None, help="run: save / resume the state here")
    parser.add_argument("--verbose", type=int, default=0)
    args = parser.parse_args(argv)
    if args.queries is None:
        args.queries = 100 if args.command == "cost" else 5000
    (cost if args.command == "cost" else run)(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
