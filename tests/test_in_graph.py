"""The attacks inside users' graphs: a ``tf.function`` adversarial-training step and a
``tf.distribute`` replica context (``strategy.run``), with batch sizes unknown at trace time.

Inside a ``tf.function`` the public attack functions skip their eager input checks, take the seed
as an int64 scalar tensor (so every call draws a new start without retracing) and run the same
compiled loop as eagerly. The replica-context test runs in a fresh process (2 logical CPU devices
must be configured before TensorFlow initialises them; see tests/distribute_worker.py).
"""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Callable, List

import keras
import numpy as np
import pytest
import tensorflow as tf

import daa_tf

REPO_ROOT = Path(__file__).resolve().parents[1]
D, CLASSES, PARTICLES = 12, 4, 4
EPS, STEP, STEPS = 0.3, 0.05, 4
SIZES = (8, 5, 3, 11)  # 5, 3 and 11 are not multiples of the 4 particles
TIMEOUT = 240  # seconds for the replica-context subprocess (usually about 15)
SIGNATURE = [tf.TensorSpec([None, D], tf.float32), tf.TensorSpec([None], tf.int64),
             tf.TensorSpec([], tf.int64)]
ATTACKS = {"pgd": dict(eps=EPS, step_size=STEP, steps=STEPS),
           "daa_blob": dict(eps=EPS, step_size=STEP, steps=STEPS, particles=PARTICLES, c=5.0)}


def mlp() -> keras.Model:
    """A tiny random MLP ``[N, 12] -> [N, 4]`` logits (the same weights on every call)."""
    keras.utils.set_random_seed(2)
    inputs = keras.Input((D,))
    h = keras.layers.Dense(16, activation="tanh")(inputs)
    return keras.Model(inputs, keras.layers.Dense(CLASSES)(h))


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(5)
    return (rng.uniform(0.1, 0.9, (max(SIZES), D)).astype(np.float32),
            rng.integers(0, CLASSES, max(SIZES)))


def attack_function(model: keras.Model, attack: str, **overrides) -> Callable:
    """``daa_tf.<attack>`` in a ``tf.function(x [None, D], y [None] int64, seed [] int64)``."""
    settings = {**ATTACKS[attack], **overrides}
    return tf.function(lambda x, y, seed: getattr(daa_tf, attack)(model, x, y, seed=seed,
                                                                   **settings),
                       input_signature=SIGNATURE)


def in_ball_and_box(x_adv: np.ndarray, x: np.ndarray) -> bool:
    return bool(np.all(np.abs(x_adv - x) <= EPS + 1e-6) and x_adv.min() >= 0
                and x_adv.max() <= 1)


# ------------------------------------------------------------------ (a) a training step


def training_step(model: keras.Model, optimizer: keras.optimizers.Optimizer, traces: List[int],
                  **attack_settings) -> Callable:
    """The user's adversarial-training step: PGD on the batch, then one optimizer step on the
    adversarial batch's cross-entropy. Returns ``(x_adv, loss)``."""
    @tf.function(input_signature=SIGNATURE)
    def step(x, y, seed):
        traces.append(1)  # runs only while tracing
        x_adv = daa_tf.pgd(model, x, y, seed=seed, **{**ATTACKS["pgd"], **attack_settings})
        with tf.GradientTape() as tape:
            logits = model(x_adv, training=True)
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
                y, logits, from_logits=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return x_adv, loss
    return step


def test_training_step_traces_once_and_its_seed_tensor_flows(data):
    x, y = data
    model = mlp()
    optimizer = keras.optimizers.SGD(0.5)
    optimizer.build(model.trainable_variables)
    traces: List[int] = []
    step = training_step(model, optimizer, traces)
    attack = attack_function(model, "pgd")
    before = [w.copy() for w in model.get_weights()]
    for i, n in enumerate(SIZES):
        # Same weights, same seed: the attack alone (another graph) gives the step's points.
        expected = attack(x[:n], y[:n], i).numpy()
        other_seed = attack(x[:n], y[:n], i + 100).numpy()
        x_adv, loss = step(x[:n], y[:n], tf.constant(i, tf.int64))
        assert np.array_equal(x_adv.numpy(), expected), n
        assert not np.array_equal(other_seed, expected), n  # the seed tensor is not frozen
        assert in_ball_and_box(x_adv.numpy(), x[:n]) and np.isfinite(loss.numpy())
    assert len(traces) == 1 and step.experimental_get_tracing_count() == 1
    assert attack.experimental_get_tracing_count() == 1
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def test_training_step_without_random_start_equals_eager_pgd_bit_for_bit(data):
    x, y = data
    model = mlp()
    optimizer = keras.optimizers.SGD(0.5)
    optimizer.build(model.trainable_variables)
    traces: List[int] = []
    step = training_step(model, optimizer, traces, random_start=False)
    for i, n in enumerate(SIZES):
        expected = daa_tf.pgd(model, x[:n], y[:n], random_start=False, **ATTACKS["pgd"]).numpy()
        x_adv, _ = step(x[:n], y[:n], tf.constant(i, tf.int64))  # then the weights change
        assert np.array_equal(x_adv.numpy(), expected), n
    assert len(traces) == 1


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_unknown_batch_size_without_random_start_equals_eager_bit_for_bit(data, attack):
    # DAA-BLOB groups 4 particles; batches of 5, 3 and 11 end with a partial group (padded inside).
    x, y = data
    model = mlp()
    fn = attack_function(model, attack, random_start=False)
    for n in SIZES:
        expected = getattr(daa_tf, attack)(model, x[:n], y[:n], random_start=False,
                                           **ATTACKS[attack]).numpy()
        assert np.array_equal(fn(x[:n], y[:n], 0).numpy(), expected), n
    assert fn.experimental_get_tracing_count() == 1


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_seeded_in_graph_equals_eager_with_the_same_int_seed(data, attack):
    x, y = data
    model = mlp()
    fn = attack_function(model, attack)
    for n in SIZES:
        expected = getattr(daa_tf, attack)(model, x[:n], y[:n], seed=3, **ATTACKS[attack])
        assert np.array_equal(fn(x[:n], y[:n], 3).numpy(), expected.numpy()), n


def test_daa_blob_seed_tensor_varies_and_a_python_none_seed_freezes(data):
    x, y = data
    model = mlp()
    fn = attack_function(model, "daa_blob")
    n = 11
    a, b, c = (fn(x[:n], y[:n], s).numpy() for s in (1, 2, 1))
    assert not np.array_equal(a, b) and np.array_equal(a, c)
    assert in_ball_and_box(a, x[:n]) and in_ball_and_box(b, x[:n])
    # The pitfall the README warns about: seed=None inside a tf.function draws once, at trace time.
    frozen = tf.function(
        lambda x, y: daa_tf.daa_blob(model, x, y, seed=None, **ATTACKS["daa_blob"]),
        input_signature=SIGNATURE[:2])
    assert np.array_equal(frozen(x[:n], y[:n]).numpy(), frozen(x[:n], y[:n]).numpy())
    eager = [daa_tf.daa_blob(model, x[:n], y[:n], seed=None, **ATTACKS["daa_blob"]).numpy()
             for _ in range(2)]
    assert not np.array_equal(*eager)  # eagerly, None is a fresh draw on every call


# ------------------------------------------------------------ (b) a replica context


# Runs in a fresh process: 2 logical CPUs, MirroredStrategy, a distributed dataset of 30 rows in
# global batches of 13 (replica shards of 7 and 6 rows, then 2 and 2: partial DAA groups), one
# traced step (shapes [None, D]) whose replicas each attack their own shard with seed + replica id.
REPLICA_SCRIPT = textwrap.dedent("""
    import json, sys
    from tests.distribute_worker import split_cpu

    split_cpu(2)
    import numpy as np
    import tensorflow as tf

    import daa_tf
    from tests.test_in_graph import ATTACKS, mlp

    x, y = np.load(sys.argv[1])["x"], np.load(sys.argv[1])["y"]
    strategy = tf.distribute.MirroredStrategy(
        [d.name for d in tf.config.list_logical_devices("CPU")])
    assert strategy.num_replicas_in_sync == 2
    with strategy.scope():
        model = mlp()
    dataset = tf.data.Dataset.from_tensor_slices((x, y.astype(np.int64))).batch(13)
    traces = []

    def replica_step(xs, ys, seed):
        context = tf.distribute.get_replica_context()
        assert context is not None and not tf.distribute.in_cross_replica_context()
        seed = seed + tf.cast(context.replica_id_in_sync_group, tf.int64)
        out = {"x": xs, "y": ys, "seed": seed}
        for name, settings in ATTACKS.items():
            fn = getattr(daa_tf, name)
            out[name] = fn(model, xs, ys, seed=seed, **settings)
            out[name + "_no_start"] = fn(model, xs, ys, random_start=False, **settings)
        out["device"] = tf.constant(out["pgd"].device)  # where the replica placed the attack
        return out

    distributed = strategy.experimental_distribute_dataset(dataset)

    @tf.function(input_signature=[distributed.element_spec, tf.TensorSpec([], tf.int64)])
    def step(batch, seed):
        traces.append(1)
        assert batch[0].values[0].shape.as_list() == [None, x.shape[1]], batch[0]
        return strategy.run(replica_step, args=(batch[0], batch[1], seed))

    shards = []
    for i, batch in enumerate(distributed):
        result = step(batch, tf.constant(10 * i, tf.int64))
        for replica in range(2):
            shard = {k: strategy.experimental_local_results(v)[replica].numpy()
                     for k, v in result.items()}
            shards.append(shard)
    report = {"traces": len(traces), "weights": [w.tolist() for w in model.get_weights()],
              "shards": [{k: (v.decode() if isinstance(v, bytes) else v.tolist())
                          for k, v in s.items()} for s in shards]}
    with open(sys.argv[2], "w") as f:
        json.dump(report, f)
""")


@pytest.fixture(scope="module")
def replicas(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("replicas")
    rng = np.random.default_rng(6)
    np.savez(tmp / "in.npz", x=rng.uniform(0.1, 0.9, (30, D)).astype(np.float32),
             y=rng.integers(0, CLASSES, 30))
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    proc = subprocess.run([sys.executable, "-c", REPLICA_SCRIPT, str(tmp / "in.npz"),
                           str(tmp / "out.json")], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((tmp / "out.json").read_text())
    model = mlp()
    model.set_weights([np.asarray(w, np.float32) for w in report["weights"]])
    shards = [{k: (np.asarray(v, np.float32) if k != "device" else str(v)) for k, v in s.items()}
              for s in report["shards"]]
    for shard in shards:
        shard["y"], shard["seed"] = shard["y"].astype(np.int64), int(shard["seed"])
    return report["traces"], model, shards


def test_replica_context_runs_each_shard_on_its_device(replicas):
    traces, _, shards = replicas
    assert traces == 1  # three global batches (13, 13 and 4 rows), one trace
    assert [len(s["x"]) for s in shards] == [7, 6, 7, 6, 2, 2]
    assert [s["device"][-5:] for s in shards] == ["CPU:0", "CPU:1"] * 3
    assert [s["seed"] for s in shards] == [0, 1, 10, 11, 20, 21]
    for shard in shards:
        for name in ATTACKS:
            assert in_ball_and_box(shard[name], shard["x"])


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_replica_results_equal_single_device_results_per_shard(replicas, attack):
    _, model, shards = replicas
    fn = attack_function(model, attack)
    for shard in shards:
        x, y, seed = shard["x"], shard["y"], shard["seed"]
        no_start = getattr(daa_tf, attack)(model, x, y, random_start=False, **ATTACKS[attack])
        assert np.array_equal(shard[attack + "_no_start"], no_start.numpy())
        assert np.array_equal(shard[attack], fn(x, y, seed).numpy())


def test_replica_results_equal_eager_single_device_results_with_the_same_int_seed(replicas):
    _, model, shards = replicas
    for shard in shards:
        for attack in ATTACKS:
            expected = getattr(daa_tf, attack)(model, shard["x"], shard["y"], seed=shard["seed"],
                                               **ATTACKS[attack])
            assert np.array_equal(shard[attack], expected.numpy()), attack
