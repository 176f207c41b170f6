"""Streamed evaluation (``daa_tf.run`` on a ``tf.data.Dataset``): peak memory against the number of
images, and time against the array path on the same images.

    python -m benchmarks.streaming [--sizes 10000,100000] [--time-images 20000] [--repeats 3]

``memory``: for each size, a fresh process streams that many generated 28 x 28 images (made batch
by batch inside the pipeline from a stateless seed: no array of the set exists anywhere) through
PGD on a tiny dense net and reports its peak resident set (``ru_maxrss``; TensorFlow's allocator
is invisible to ``tracemalloc``). The goal: the largest size costs at most 100 MB more than the
smallest. ``time``: the same ``--time-images`` images as arrays (``daa_tf.run(model, x, y)``) and
as a dataset of the same batches, timed alternately, ``--repeats`` times each after a warm-up,
in wall time and in process CPU time (all threads: steadier on a shared machine), as medians;
the goal: streaming at most 5% slower. Three pipelines are timed (:func:`timing`), and reading
each alone.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

REPO = Path(__file__).resolve().parents[1]
SHAPE = (28, 28, 1)
CLASSES = 10
SETTINGS = dict(eps=0.1, step_size=0.02, steps=5, random_start=False)


def tiny_model() -> Any:
    """A fixed dense net ``28x28x1 -> 32 -> 10`` (logits)."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input(SHAPE)
    h = keras.layers.Dense(32, activation="relu")(keras.layers.Flatten()(inputs))
    return keras.Model(inputs, keras.layers.Dense(CLASSES)(h))


def generated(n: int, batch: int) -> Any:
    """``n`` images ``[0, 1]`` and labels, ``batch`` at a time, made inside the pipeline from
    the batch index (stateless): a dataset with no array behind it."""
    import tensorflow as tf

    def make(start: Any) -> Tuple[Any, Any]:
        size = tf.minimum(tf.cast(batch, tf.int64), n - start)
        seed = tf.stack([start, tf.constant(7, tf.int64)])
        x = tf.random.stateless_uniform(tf.concat([[size], tf.constant(SHAPE, tf.int64)], 0), seed)
        y = tf.random.stateless_uniform([size], seed + 1, 0, CLASSES, tf.int64)
        return x, y

    return tf.data.Dataset.range(0, n, batch).map(make).prefetch(1)


def child_memory(n: int, batch: int) -> Dict[str, Any]:
    """Streams ``n`` generated images through PGD; returns the accuracy, seconds and the peak
    resident set in MB."""
    import daa_tf

    model = tiny_model()
    started = time.perf_counter()
    result = daa_tf.run(model, generated(n, batch), "pgd", verbose=0, **SETTINGS)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KB on Linux
    return {"images": result.examples, "accuracy": result.accuracy, "seconds": seconds,
            "peak_mb": peak}


def memory(sizes: List[int], batch: int) -> List[Dict[str, Any]]:
    """:func:`child_memory` for each size, each in a fresh process."""
    rows = []
    for n in sizes:
        out = subprocess.run([sys.executable, "-m", "benchmarks.streaming", "--child", str(n),
                              "--batch", str(batch)], capture_output=True, text=True,
                             check=True, cwd=REPO,
                             env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return rows


def timing(n: int, batch: int, repeats: int) -> Dict[str, Any]:
    """The array path against the streamed path on the same ``n`` images (a multiple of
    ``batch``), alternated, after a warm-up; wall and process CPU seconds of every repeat.

    Two pipelines over the same arrays: ``sliced``, the common
    ``from_tensor_slices((x, y)).batch(B)`` (tf.data cuts the examples and re-batches them: its
    own cost), ``batched``, arrays of whole batches, one element per batch (reading costs next
    to nothing), both prefetching one batch (a thread hands it over), and ``plain``, ``batched``
    without prefetching. ``read_*``: reading the pipeline alone, no attack."""
    import numpy as np
    import tensorflow as tf

    import daa_tf

    model = tiny_model()
    x, y = [], []
    for xb, yb in generated(n, batch):
        x.append(xb.numpy())
        y.append(yb.numpy())
    x, y = np.concatenate(x), np.concatenate(y)
    pipelines = {
        "sliced": tf.data.Dataset.from_tensor_slices((x, y)).batch(batch).prefetch(1),
        "batched": tf.data.Dataset.from_tensor_slices(
            (x.reshape((-1, batch) + x.shape[1:]), y.reshape(-1, batch))).prefetch(1),
        "plain": tf.data.Dataset.from_tensor_slices(
            (x.reshape((-1, batch) + x.shape[1:]), y.reshape(-1, batch)))}
    runs = {"arrays": lambda: daa_tf.run(model, x, y, "pgd", batch_size=batch, verbose=0,
                                         **SETTINGS)}
    for name, ds in pipelines.items():
        runs[f"stream_{name}"] = (lambda ds=ds: daa_tf.run(model, ds, "pgd", verbose=0,
                                                           **SETTINGS))
        runs[f"read_{name}"] = lambda ds=ds: sum(len(b[1]) for b in daa_tf.stream.batches(ds))
    wall: Dict[str, List[float]] = {k: [] for k in runs}
    cpu: Dict[str, List[float]] = {k: [] for k in runs}
    results = {k: fn() for k, fn in runs.items()}  # warm-up (traces)
    assert all(results[f"read_{p}"] == n for p in pipelines)
    same = all(np.array_equal(results["arrays"].correct, results[f"stream_{p}"].correct)
               for p in pipelines)
    for i in range(repeats):
        for name in (list(runs) if i % 2 == 0 else list(runs)[::-1]):
            started, started_cpu = time.perf_counter(), time.process_time()
            runs[name]()
            wall[name].append(time.perf_counter() - started)
            cpu[name].append(time.process_time() - started_cpu)
    row: Dict[str, Any] = {"images": n, "batch": batch, "same_correct": same,
                           "wall_s": wall, "cpu_s": cpu, "compared": {}}
    for kind, values in (("wall", wall), ("cpu", cpu)):
        base = float(np.median(values["arrays"]))
        for name in values:
            med = float(np.median(values[name]))
            row["compared"][f"{kind} {name}"] = (med, 100.0 * (med / base - 1.0))
    return row


def main(argv: Any = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--time-images", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sections", default="memory,time")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(child_memory(args.child, args.batch)))
        return 0
    sections = args.sections.split(",")
    if "memory" in sections:
        rows = memory([int(s) for s in args.sizes.split(",")], args.batch)
        for row in rows:
            print(f"memory: {row['images']:>7d} images: peak {row['peak_mb']:.1f} MB, "
                  f"{row['seconds']:.1f} s, accuracy {100 * row['accuracy']:.2f}%")
        grown = rows[-1]["peak_mb"] - rows[0]["peak_mb"]
        print(f"memory: {rows[-1]['images']} images cost {grown:+.1f} MB against "
              f"{rows[0]['images']} (goal: at most +100 MB)")
    if "time" in sections:
        row = timing(args.time_images, args.batch, args.repeats)
        print(f"time: {row['images']} images in batches of {row['batch']}, {args.repeats} "
              f"alternated repeats (medians); same per-example result: {row['same_correct']}")
        for key, (seconds, pct) in row["compared"].items():
            print(f"time: {key:<20s} {seconds:7.3f} s  {pct:+6.1f}% against the arrays")
        print("time: goal: stream at most +5% against the arrays")
    return 0


if __name__ == "__main__":
    sys.exit(main())
