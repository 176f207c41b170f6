"""The DAA authors' MNIST attack loops, re-created for timing: ``python -m benchmarks.authors``.

The paper's released code (``mnist_challenge/pgd_rand.py`` and ``blob_rand.py``) builds a TF1
graph of the MadryLab net and then, for every step, fetches the input gradient with one
``session.run``, computes the DAA kernel on the host in NumPy (SciPy's ``pdist``, float64 because
the random start ``x + uniform(-eps, eps)`` is float64), and clips on the host. Batches of 200;
PGD runs its ``k`` steps per batch, DAA-BLOB runs rounds of 10 steps, reshuffling the whole set
before each round. This module does the same work the same way (TF1 graph through
``tf.compat.v1``, graph mode), so that ``benchmarks.run --sections paper`` can time the authors'
design and ours on the same machine, minutes apart, instead of comparing with figures taken on
another day. It is written from that description (not copied) and only its timing is used; its
accuracy is printed as a check that it did the real work.

It disables eager execution for the whole process, so ``benchmarks.run`` starts it as a
subprocess. Output (``--json -``): ``{"runs": [{"attack", "seconds", "accuracy"}, ...], "meta"}``.
"""
import argparse
import json
import os
import time
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

BATCH = 200  # the authors' eval_batch_size
ROUND = 10  # DAA steps per round (their perturb() does 10 steps)
C_XENT = 1.1  # their BLOB weight c for the xent loss


try:
    from scipy.spatial.distance import pdist, squareform
except ImportError:  # SciPy is not a dependency of daa_tf
    pdist = squareform = None


def pairwise_sq_dists(theta: np.ndarray) -> np.ndarray:
    """``[m, m]`` squared Euclidean distances between the rows of ``theta`` ``[m, d]``, as the
    authors compute them (``squareform(pdist(theta)) ** 2``); NumPy's equivalent without SciPy."""
    if pdist is None:
        diff = theta[:, None, :] - theta[None, :, :]
        return np.einsum("ijk,ijk->ij", diff, diff)
    return squareform(pdist(theta)) ** 2


def blob_kernel(theta: np.ndarray):
    """``(K [m, m], dK [m, d])``: the RBF kernel with the median bandwidth and its repulsive term,
    computed as in the authors' ``svgd_kernel`` (including its per-column loop)."""
    dists = pairwise_sq_dists(theta)
    h = np.sqrt(0.5 * np.median(dists) / np.log(theta.shape[0]))
    kxy = np.exp(-dists / h ** 2 / 2)
    dxkxy = -np.matmul(kxy, theta)
    sumkxy = np.sum(kxy, axis=1)
    for i in range(theta.shape[1]):
        dxkxy[:, i] = dxkxy[:, i] + np.multiply(theta[:, i], sumkxy)
    return kxy, dxkxy / h ** 2


def blob_direction(grad: np.ndarray, theta: np.ndarray, c: float = C_XENT) -> np.ndarray:
    """The authors' BLOB step direction for one group (whose sign is taken)."""
    kxy, dxkxy = blob_kernel(theta)
    return c * (-(np.matmul(kxy, -grad) + dxkxy) / theta.shape[0]) + grad


def build_graph(tf1, weights: Optional[Sequence[np.ndarray]]):
    """``(x_input, y_input, grad, correct)``: the MadryLab net as a TF1 graph (random weights
    when ``weights`` is None) and the gradient of the summed cross-entropy."""
    import tensorflow as tf
    from daa_tf.models.madry_mnist import WEIGHTS
    shapes = [shape for *_, kernel in WEIGHTS for shape in (kernel, kernel[-1:])]
    rng = np.random.default_rng(0)
    values = weights or [rng.normal(0, 0.05, s).astype(np.float32) for s in shapes]
    w = [tf1.Variable(v) for v in values]
    x_input = tf1.placeholder(tf.float32, [None, 784])
    y_input = tf1.placeholder(tf.int64, [None])
    h = tf.reshape(x_input, [-1, 28, 28, 1])
    h = tf.nn.relu(tf.nn.conv2d(h, w[0], [1, 1, 1, 1], "SAME") + w[1])
    h = tf.nn.max_pool2d(h, [1, 2, 2, 1], [1, 2, 2, 1], "SAME")
    h = tf.nn.relu(tf.nn.conv2d(h, w[2], [1, 1, 1, 1], "SAME") + w[3])
    h = tf.nn.max_pool2d(h, [1, 2, 2, 1], [1, 2, 2, 1], "SAME")
    h = tf.nn.relu(tf.matmul(tf.reshape(h, [-1, 3136]), w[4]) + w[5])
    logits = tf.matmul(h, w[6]) + w[7]
    y_xent = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=y_input, logits=logits))
    grad = tf1.gradients(y_xent, x_input)[0]
    correct = tf.equal(tf.argmax(logits, 1), y_input)
    return x_input, y_input, grad, correct


def attack(sess, graph, name: str, x_nat: np.ndarray, y: np.ndarray, steps: int, eps: float,
           a: float, rng: np.random.Generator) -> np.ndarray:
    """One restart of the authors' PGD or DAA-BLOB over ``x_nat`` ``[n, 784]``: the final points."""
    x_input, y_input, grad, _ = graph
    n = len(x_nat)

    def step(xb, x0b, yb, daa):
        g = sess.run(grad, feed_dict={x_input: xb, y_input: yb})
        if daa:
            g = blob_direction(g, xb)
        xb = xb + a * np.sign(g)
        return np.clip(np.clip(xb, x0b - eps, x0b + eps), 0, 1)

    x_adv = x_nat + rng.uniform(-eps, eps, x_nat.shape)  # float64, not clipped (their code)
    if name == "pgd":
        for s in range(0, n, BATCH):
            xb, x0b, yb = x_adv[s:s + BATCH], x_nat[s:s + BATCH], y[s:s + BATCH]
            for _ in range(steps):
                xb = step(xb, x0b, yb, False)
            x_adv[s:s + BATCH] = xb
        return x_adv
    x0, yy, perm = x_nat.copy(), y.copy(), np.arange(n)
    for _ in range(steps // ROUND):
        idx = rng.permutation(n)
        x0, x_adv, yy, perm = x0[idx], x_adv[idx], yy[idx], perm[idx]
        for s in range(0, n, BATCH):
            xb, x0b, yb = x_adv[s:s + BATCH], x0[s:s + BATCH], yy[s:s + BATCH]
            for _ in range(ROUND):
                xb = step(xb, x0b, yb, True)
            x_adv[s:s + BATCH] = xb
    return x_adv[np.argsort(perm)]


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.authors",
                                description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--attacks", default="pgd,daa_blob", help="comma-separated: pgd, daa_blob")
    p.add_argument("--examples", type=int, default=1000)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--repeats", type=int, default=1, help="timed runs of each attack, interleaved")
    p.add_argument("--random", action="store_true",
                   help="random weights and images even when the fixtures are present")
    p.add_argument("--json", metavar="PATH", default=None, help="'-': stdout")
    args = p.parse_args(argv)
    args.attacks = [a for a in args.attacks.split(",") if a]
    for name in args.attacks:
        if name not in ("pgd", "daa_blob"):
            p.error(f"unknown attack {name!r}: use pgd or daa_blob")
    if args.steps % ROUND and "daa_blob" in args.attacks:
        p.error(f"--steps must be a multiple of {ROUND} for daa_blob (rounds of {ROUND})")
    if args.examples < 2:
        p.error("--examples must be at least 2")
    return args


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    from benchmarks.common import load_data, shared_dir
    tf1 = tf.compat.v1
    tf1.disable_eager_execution()

    x, y, data_desc = load_data("mnist", args.examples, args.random)
    weights = None
    folder = None if args.random else shared_dir()
    if folder is not None and (folder / "models" / "mnist" / "adv_trained").is_dir():
        from daa_tf.models.checkpoint import open_checkpoint
        from daa_tf.models.madry_mnist import WEIGHTS
        ckpt = open_checkpoint(folder / "models" / "mnist" / "adv_trained", "")
        weights = [v for _, k, b, s in WEIGHTS for v in (ckpt.get(k, s), ckpt.get(b, s[-1:]))]
    graph = build_graph(tf1, weights)
    x32, y64 = x.astype(np.float32), y.astype(np.int64)
    runs: List[Dict[str, Any]] = []
    with tf1.Session() as sess:
        sess.run(tf1.global_variables_initializer())
        sess.run(graph[2], {graph[0]: x32[:BATCH], graph[1]: y64[:BATCH]})  # warm up
        rng = np.random.default_rng(0)
        for _ in range(args.repeats):
            for name in args.attacks:
                started = time.perf_counter()
                x_adv = attack(sess, graph, name, x32, y64, args.steps, 0.3, 0.01, rng)
                seconds = time.perf_counter() - started
                correct = np.concatenate([
                    sess.run(graph[3], {graph[0]: x_adv[s:s + BATCH], graph[1]: y64[s:s + BATCH]})
                    for s in range(0, len(x_adv), BATCH)])
                runs.append(dict(attack=name, seconds=seconds, accuracy=float(np.mean(correct)),
                                 linf=float(np.max(np.abs(x_adv - x32)))))
    result = dict(runs=runs, meta=dict(
        tensorflow=tf.__version__, data=data_desc, batch=BATCH,
        weights="adv_trained fixture" if weights else "random",
        pairwise="scipy pdist" if pdist is not None else "numpy (SciPy absent)",
        examples=args.examples, steps=args.steps))
    text = json.dumps(result, indent=2)
    if args.json == "-":
        print(text)
    elif args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    else:
        for r in runs:
            print(f"{r['attack']:>8}: {r['seconds']:.1f} s, accuracy {r['accuracy']:.2%}")
    return result


if __name__ == "__main__":
    main()
