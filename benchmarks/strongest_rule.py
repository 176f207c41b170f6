"""``strongest``'s rule measured on a shared model (docs/algorithms.md#strongest)::

    python -m benchmarks.strongest_rule --model mnist --examples 100 --budget 100 --queries 500

One process, the first ``--examples`` test images of the model's set (the shared fixtures:
``DAA_TF_SHARED`` or ``../shared``). Runs ``daa_tf.strongest(budget=B, queries=Q)``, then every
one of its stages alone, as it ran (sized when it started), with the seed it has in the
cascade, and checks per example that the cascade fools every image a stage alone fools (the
rule's guarantee; a violation raises). Then,
for comparison at the same budget of each kind, single attacks given the whole budget: APGD-CE
and APGD with DAA-BLOB's direction (CW loss) with ``B`` steps, APGD-T, FAB-T and MultiTargeted
with 9 targets of ``B // 9`` steps, Square with ``Q`` queries.
Prints one line per run: accuracy (fraction of the images still classified correctly) and wall
seconds (tracing included).
"""
from __future__ import annotations

import argparse
import time
from typing import Any, Dict, Iterator, Tuple

import numpy as np

from benchmarks.common import shared_dir

# model name -> (adapter of daa_tf.models.LOADERS, checkpoint folder, data set, data path,
# eps, clip_max), all relative to the shared fixtures.
MODELS: Dict[str, Tuple[str, str, str, str, float, float]] = {
    "mnist": ("madry_mnist", "models/mnist/adv_trained", "mnist", "data/mnist", 0.3, 1.0),
    "fashion_mnist": ("daa_fashion_mnist", "models/fashion_mnist/adv_trained", "fashion_mnist",
                      "data/fashion_mnist", 0.2, 1.0),
    "cifar10": ("madry_cifar10", "models/cifar10/adv_trained_narrow", "cifar10",
                "data/cifar10/test_first1000.npz", 8.0, 255.0),
}


def load(name: str, examples: int) -> Tuple[Any, np.ndarray, np.ndarray, Dict[str, float]]:
    """The model, ``x`` ``[examples, ...]`` float32 in its box, ``y`` ``[examples]`` and the
    box and radius (pixel units)."""
    from daa_tf.data import load_dataset
    from daa_tf.models import load_model

    shared = shared_dir()
    if shared is None:
        raise SystemExit("the shared fixtures are needed (DAA_TF_SHARED or ../shared)")
    adapter, folder, data, path, eps, clip_max = MODELS[name]
    model = load_model(adapter, shared / folder)
    x, y = load_dataset(data, data_dir=shared / path, num_examples=examples)
    return model, np.asarray(x, np.float32), np.asarray(y), dict(eps=eps, clip_min=0.0,
                                                                 clip_max=clip_max)


def _timed(run: Any) -> Tuple[Any, float]:
    started = time.perf_counter()
    result = run()
    return result, time.perf_counter() - started


def measure(name: str, examples: int, budget: int, queries: int, seed: int) -> Iterator[str]:
    """The lines described in the module's doc, as they are measured; RuntimeError if the rule
    is broken."""
    import daa_tf
    from daa_tf import catalogue
    from daa_tf.cascade import stage_seed

    model, x, y, box = load(name, examples)
    yield (f"{name}: {len(x)} images, eps {box['eps']:g}, budget {budget} gradients and "
           f"{queries} queries per image, seed {seed}")
    pred, _, _ = daa_tf.evaluate(model, x, y)
    yield f"  clean: {np.mean(pred == y):.3f}"
    ran = []  # the stages as they ran: each sized when it started
    cascade, seconds = _timed(lambda: daa_tf.strongest(
        model, x, y, budget=budget, queries=queries, seed=seed, verbose=0,
        on_stage=lambda index, stage, *_: ran.append(stage), **box))
    yield (f"  strongest: {cascade.accuracy:.3f} ({seconds:.1f} s; after each stage "
           + ", ".join(f"{a:.3f}" for a in cascade.restart_accuracies) + ")")
    for i, stage in enumerate(ran):
        alone, seconds = _timed(lambda: daa_tf.run(model, x, y, stage.attack, verbose=0,
                                                   seed=stage_seed(seed, i),
                                                   **stage.settings, **box))
        broken = int(np.sum(cascade.correct & ~alone.correct))
        if broken and not catalogue.ATTACKS[stage.attack].interacting:
            raise RuntimeError(f"{stage.describe()} alone fools {broken} images the cascade "
                               "does not")
        yield (f"  stage {i + 1} alone, {stage.describe()}: {alone.accuracy:.3f} "
               f"({seconds:.1f} s; fools {broken} images the cascade does not)")
    whole = [("apgd", dict(loss="xent", steps=budget)),
             ("apgd_t", dict(steps=budget // 9, targets=9)),
             ("fab_t", dict(steps=budget // 9, targets=9)),
             ("multitargeted", dict(steps=budget // 9, targets=9)),
             ("apgd_daa_blob", dict(loss="cw", steps=budget)),
             ("square", dict(steps=queries))]
    for attack, settings in whole:
        alone, seconds = _timed(lambda: daa_tf.run(model, x, y, attack, verbose=0, seed=seed,
                                                   **settings, **box))
        yield (f"  {attack} {settings} alone: {alone.accuracy:.3f} ({seconds:.1f} s; "
               f"fools {int(np.sum(cascade.correct & ~alone.correct))} images the "
               "cascade does not)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=sorted(MODELS), default="mnist")
    p.add_argument("--examples", type=int, default=100)
    p.add_argument("--budget", type=int, default=100, help="gradients per image")
    p.add_argument("--queries", type=int, default=500, help="queries per image")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    for line in measure(args.model, args.examples, args.budget, args.queries, args.seed):
        print(line, flush=True)


if __name__ == "__main__":
    main()
