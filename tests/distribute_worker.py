"""One process of the tf.distribute tests (tests/test_distribute.py), run in a subprocess.

Logical CPU devices and the multi-worker strategy must be configured before TensorFlow initialises
its devices, which a pytest process has long done; so each configuration runs here, fresh:

    python -m tests.distribute_worker --cpus 2 --strategy mirrored --shared DIR --out OUT.npz
    python -m tests.distribute_worker --cpus 2 --module challenges.mnist -- ARGS...

The first form runs ``daa_tf.run`` (PGD and DAA-BLOB) on the first ``--num`` MNIST test images and
saves each attack's ``x_adv`` to ``OUT.npz`` (``--strategy multi_worker`` reads ``TF_CONFIG``; every
worker writes ``OUT`` with its task index appended) with the wall time of each attack's last of
``--repeat`` runs. The second runs ``python -m MODULE ARGS`` on ``--cpus`` logical CPU devices.

The 1 vs 2 device timing of the README / report (DAA-BLOB, 1000 images, 20 steps; the second run
timed, after tracing), with ``--cpus 1 --strategy none`` for one device:

    python -m tests.distribute_worker --cpus 2 --strategy mirrored --shared ../shared \
        --out t.npz --attacks daa_blob --num 1000 --steps 20 --steps-per-round 10 \
        --batch-size 500 --particles 100 --repeat 2
"""
import argparse
import json
import os
import runpy
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def split_cpu(cpus: int) -> None:
    import tensorflow as tf
    if cpus > 1:
        device = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            device, [tf.config.LogicalDeviceConfiguration() for _ in range(cpus)])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, allow_abbrev=False)
    parser.add_argument("--cpus", type=int, default=1, help="logical CPU devices")
    parser.add_argument("--strategy", default="none", help="none | mirrored | multi_worker")
    parser.add_argument("--module", help="run this module as __main__ with the remaining args")
    parser.add_argument("--shared", help="the shared fixtures folder")
    parser.add_argument("--out", help="where to save the results (.npz)")
    parser.add_argument("--attacks", default="pgd,daa_blob")
    parser.add_argument("--num", type=int, default=245)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--steps-per-round", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--particles", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=1, help="time the last of REPEAT runs")
    args, rest = parser.parse_known_args(argv)
    if rest[:1] == ["--"]:
        rest = rest[1:]

    split_cpu(args.cpus)
    if args.module:
        sys.argv = [args.module] + rest
        runpy.run_module(args.module, run_name="__main__", alter_sys=True)
        return 0

    from daa_tf import distribute
    strategy = distribute.make_strategy(args.strategy)  # first: multi-worker configures collectives

    import numpy as np

    import daa_tf
    from daa_tf import data
    from daa_tf.models import load_madry_mnist

    x, y = data.load_mnist("test", data_dir=os.path.join(args.shared, "data", "mnist"),
                           num_examples=args.num)
    with distribute.strategy_scope(strategy):
        model = load_madry_mnist(os.path.join(args.shared, "models", "mnist", "adv_trained"))
    results, seconds = {}, {}
    for name in args.attacks.split(","):
        kw = dict(attack=name, eps=0.3, step_size=0.01, steps=args.steps,
                  steps_per_round=args.steps_per_round, batch_size=args.batch_size,
                  seed=args.seed, verbose=0, strategy=strategy)
        if name.startswith("daa"):
            kw["particles"] = args.particles
        for _ in range(args.repeat):
            started = time.perf_counter()
            result = daa_tf.run(model, x, y, **kw)
            seconds[name] = time.perf_counter() - started
        results[name] = result.x_adv
    out = args.out
    if args.strategy == "multi_worker":
        task = json.loads(os.environ.get("TF_CONFIG", "{}")).get("task", {}).get("index", 0)
        out = f"{os.path.splitext(out)[0]}.{task}.npz"
    np.savez(out, replicas=distribute.num_replicas(strategy), chief=distribute.is_chief(strategy),
             seconds=json.dumps(seconds), **results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
