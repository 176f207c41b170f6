"""The attack functions (daa_tf.attacks) against the NumPy reference of docs/algorithms.md, their
invariants, and the same functions inside users' graphs: a ``tf.function`` adversarial-training
step and a ``tf.distribute`` replica context, with batch sizes unknown at trace time.

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
from typing import Callable, List

import keras
import numpy as np
import pytest
import tensorflow as tf

import daa_tf
from daa_tf import attacks, catalogue, loop
from daa_tf import engine
from daa_tf.losses import get_loss
from tests import numpy_reference as ref
from tests.helpers import (GRAPH_ATTACKS, MLP_CLASSES, MLP_FEATURES, REPO_ROOT, TOY_CLASSES,
                           TOY_SHAPE, graph_mlp, toy_model)

N, SHAPE, CLASSES, PARTICLES = 11, TOY_SHAPE, TOY_CLASSES, 4  # groups of 4, 4 and 3
EPS, STEP = 0.3, 0.05


@pytest.fixture(scope="module")
def model(toy) -> keras.Model:
    return toy


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x0 = rng.uniform(0.2, 0.8, (N,) + SHAPE).astype(np.float32)
    y = rng.integers(0, CLASSES, N)
    start = ref.project(x0 + rng.uniform(-EPS, EPS, x0.shape).astype(np.float32), x0, EPS, 0, 1)
    return x0, y, start


def tf_grad(model, x, y, loss="xent", targeted=False):
    return loop.loss_gradient(model, get_loss(loss), tf.constant(x), tf.constant(y, tf.int32),
                              targeted).numpy()


def clear_pixels(v, scale):
    """Pixels whose direction is not within float noise of zero."""
    return np.abs(v) > 1e-3 * scale + 1e-12


def step_of(fn, model, x0, y, x, **kw):
    return fn(model, x0, y, eps=EPS, step_size=STEP, steps=1, random_start=False, x_init=x,
              **kw).numpy()


@pytest.mark.parametrize("kind,c", [("blob", 5.0), ("dgf", -0.5), ("blob", 1.1),
                                    ("dgf", -0.001)])
@pytest.mark.parametrize("loss", ["xent", "cw"])
def test_daa_matches_numpy_step_by_step(model, data, kind, c, loss):
    x0, y, x = data
    fn = attacks.daa_blob if kind == "blob" else attacks.daa_dgf
    changed = 0
    for _ in range(6):
        g = tf_grad(model, x, y, loss).reshape(N, -1)
        v, scale = ref.daa_direction(kind, g, x.reshape(N, -1), c, PARTICLES)
        expected = ref.project(x + STEP * np.sign(v).astype(np.float32).reshape(x.shape), x0,
                               EPS, 0, 1)
        ours = step_of(fn, model, x0, y, x, loss=loss, c=c, particles=PARTICLES)
        clear = clear_pixels(v, scale).reshape(x.shape)
        assert clear.mean() > 0.95
        np.testing.assert_array_equal(ours[clear], expected[clear])
        changed += np.sum(np.sign(v) != np.sign(g))
        x = ours
    if c in (5.0, -0.5):  # the interaction must actually matter, or this test proves nothing
        assert changed > 0


@pytest.mark.parametrize("loss", ["xent", "cw"])
@pytest.mark.parametrize("targeted", [False, True])
def test_pgd_matches_numpy_and_runs_its_steps_in_one_call(model, data, loss, targeted):
    x0, y, start = data
    x = start
    for _ in range(5):
        g = tf_grad(model, x, y, loss, targeted)
        x = ref.project(x + STEP * np.sign(g).astype(np.float32), x0, EPS, 0, 1)
    ours = attacks.pgd(model, x0, y, eps=EPS, step_size=STEP, steps=5, loss=loss,
                       random_start=False, x_init=start, targeted=targeted).numpy()
    np.testing.assert_array_equal(ours, x)


def test_fgsm_is_one_step_of_eps(model, data):
    x0, y, _ = data
    g = tf_grad(model, x0, y)
    expected = ref.project(x0 + np.float32(EPS) * np.sign(g).astype(np.float32), x0, EPS, 0, 1)
    np.testing.assert_array_equal(attacks.fgsm(model, x0, y, eps=EPS).numpy(), expected)
    with pytest.raises(ValueError, match="one step"):
        attacks.fgsm(model, x0, y, eps=EPS, steps=3)


def test_momentum_matches_numpy(model, data):
    x0, y, start = data
    expected, margin = ref.momentum_run(lambda x: tf_grad(model, x, y), x0, start, EPS, STEP, 8,
                                        1.0)
    ours = attacks.momentum_pgd(model, x0, y, eps=EPS, step_size=STEP, steps=8,
                                random_start=False, x_init=start).numpy()
    rows = margin > 1e-3
    assert rows.sum() >= N - 2
    np.testing.assert_array_equal(ours[rows], expected[rows])
    pgd = attacks.pgd(model, x0, y, eps=EPS, step_size=STEP, steps=8, random_start=False,
                      x_init=start).numpy()
    assert not np.array_equal(ours, pgd)  # the momentum really is carried across steps


def test_blob_with_c_zero_is_pgd(model, data):
    x0, y, _ = data
    kw = dict(eps=EPS, step_size=STEP, steps=7, seed=5)
    np.testing.assert_array_equal(
        attacks.daa_blob(model, x0, y, c=0.0, particles=PARTICLES, **kw).numpy(),
        attacks.pgd(model, x0, y, **kw).numpy())


@pytest.mark.parametrize("fn", [attacks.daa_blob, attacks.daa_dgf])
def test_groups_do_not_depend_on_the_batch(model, data, fn):
    x0, y, start = data
    kw = dict(eps=EPS, step_size=STEP, steps=4, random_start=False, particles=PARTICLES)
    whole = fn(model, x0, y, x_init=start, **kw).numpy()
    parts = [fn(model, x0[i:i + PARTICLES], y[i:i + PARTICLES], x_init=start[i:i + PARTICLES],
                **kw).numpy() for i in range(0, N, PARTICLES)]
    np.testing.assert_array_equal(whole, np.concatenate(parts))


@pytest.mark.parametrize("kind,c", [("blob", 5.0), ("dgf", -0.5)])
def test_daa_signs_do_not_depend_on_the_pixel_range(data, kind, c):
    x0, y, start = data
    fn = attacks.daa_blob if kind == "blob" else attacks.daa_dgf
    kw = dict(steps=1, random_start=False, c=c, particles=PARTICLES)
    unit = fn(toy_model(), x0, y, eps=EPS, step_size=STEP, x_init=start, **kw).numpy()
    wide = fn(toy_model(255.0), x0 * 255, y, eps=EPS * 255, step_size=STEP * 255,
              x_init=start * 255, clip_max=255.0, **kw).numpy()
    g = tf_grad(toy_model(), start, y).reshape(N, -1)
    v, scale = ref.daa_direction(kind, g, start.reshape(N, -1), c, PARTICLES)
    clear = clear_pixels(v, scale).reshape(start.shape)
    np.testing.assert_array_equal(np.sign(unit - start)[clear],
                                  np.sign(wide - start * 255)[clear])


@pytest.mark.parametrize("name", catalogue.ATTACKS)
def test_bound_box_and_determinism(model, data, name):
    x0, y, _ = data
    x0 = x0.copy()
    x0[0] = 0.0  # pixels at the box edges
    x0[1] = 1.0
    kw = dict(eps=EPS, random_start=True)
    spec = catalogue.get_spec(name)
    if not spec.one_step:
        kw.update(step_size=0.1, steps=6)
    if spec.interacting:
        kw["particles"] = PARTICLES
    fn = attacks.ATTACK_FUNCTIONS[name]
    a = fn(model, x0, y, seed=3, **kw).numpy()
    assert a.shape == x0.shape and a.dtype == np.float32
    assert np.all(np.abs(a - x0) <= EPS + 1e-6)
    assert a.min() >= 0.0 and a.max() <= 1.0
    np.testing.assert_array_equal(a, fn(model, x0, y, seed=3, **kw).numpy())
    other = fn(model, x0, y, seed=4, **kw).numpy()
    if spec.clean_first:  # FAB: one call is restart 0, which starts at x (the seed is unused)
        np.testing.assert_array_equal(a, other)
    else:
        assert not np.array_equal(a, other)


@pytest.mark.parametrize("name,settings", [
    ("pgd", dict(step_size=0.01)),  # the fixed step
    ("apgd", dict()),               # APGD's schedule and best iterates
])
def test_no_retrace_when_only_numbers_change(data, name, settings):
    x0, y, _ = data
    model = toy_model()  # its own compiled functions: nothing traced by other tests
    for eps, steps in ((0.1, 3), (0.2, 7), (0.3, 20)):
        attacks.ATTACK_FUNCTIONS[name](model, x0, y, eps=eps, steps=steps, seed=0, **settings)
    cfg = engine.make_config(name, eps=0.1, steps=1, **settings)
    assert engine.compiled(model, cfg).experimental_get_tracing_count() == 1


def test_jit_compile_is_a_per_device_default_and_overridable(model, data):
    x0, y, _ = data
    has_gpu = bool(tf.config.list_logical_devices("GPU"))
    assert engine.make_config("pgd", eps=0.1, step_size=0.1, steps=1).jit_compile == has_gpu
    kw = dict(eps=EPS, step_size=STEP, steps=3, seed=1, particles=PARTICLES)
    xla = attacks.daa_blob(model, x0, y, jit_compile=True, **kw).numpy()
    graph = attacks.daa_blob(model, x0, y, jit_compile=False, **kw).numpy()
    assert np.all(np.abs(xla - x0) <= EPS + 1e-6)
    assert np.mean(xla == graph) > 0.95  # same algorithm; XLA may round differently


def test_runs_inside_a_users_tf_function(model, data):
    x0, y, _ = data

    @tf.function
    def pipeline(x, labels):
        return daa_tf.daa_blob(model, x, labels, eps=EPS, step_size=STEP, steps=2, seed=0,
                               particles=PARTICLES)

    out = pipeline(tf.constant(x0), tf.constant(y))
    np.testing.assert_array_equal(out.numpy(), daa_tf.daa_blob(
        model, x0, y, eps=EPS, step_size=STEP, steps=2, seed=0, particles=PARTICLES).numpy())


def test_a_plain_callable_works(data):
    x0, y, _ = data
    w = tf.constant(np.random.default_rng(0).normal(size=(32, CLASSES)), tf.float32)
    logits = lambda x: tf.reshape(x, [-1, 32]) @ w  # noqa: E731
    out = attacks.pgd(logits, x0, y, eps=EPS, step_size=STEP, steps=2, seed=0).numpy()
    assert np.all(np.abs(out - x0) <= EPS + 1e-6)


@pytest.mark.parametrize("change,message", [
    (dict(eps=0.0), "eps must be a positive"),
    (dict(eps=float("nan")), "eps must be a positive"),
    (dict(step_size=-1.0), "step_size must be a positive"),
    (dict(steps=0), "steps must be"),
    (dict(particles=1), "particles"),
    (dict(loss="hinge"), "unknown loss"),
    (dict(clip_min=1.0, clip_max=0.0), "clip_min < clip_max"),
])
def test_bad_settings_are_refused(model, data, change, message):
    x0, y, _ = data
    kw = dict(eps=EPS, step_size=STEP, steps=2, particles=PARTICLES)
    kw.update(change)
    with pytest.raises(ValueError, match=message):
        attacks.daa_blob(model, x0, y, **kw)


def test_bad_inputs_are_refused(model, data):
    x0, y, start = data
    kw = dict(eps=EPS, step_size=STEP, steps=1)
    nan = x0.copy()
    nan[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        attacks.pgd(model, nan, y, **kw)
    with pytest.raises(ValueError, match="outside the pixel box"):
        attacks.pgd(model, x0 * 255, y, **kw)
    with pytest.raises(ValueError, match="labels must have shape"):
        attacks.pgd(model, x0, y[:-1], **kw)
    with pytest.raises(ValueError, match="out of range"):
        attacks.pgd(model, x0, np.full(N, CLASSES), **kw)
    with pytest.raises(ValueError, match="integers"):
        attacks.pgd(model, x0, y.astype(np.float32), **kw)
    with pytest.raises(ValueError, match="random_start=False"):
        attacks.pgd(model, x0, y, x_init=start, **kw)
    with pytest.raises(ValueError, match="x_init has shape"):
        attacks.pgd(model, x0, y, x_init=start[:3], random_start=False, **kw)
    with pytest.raises(ValueError, match="logits of shape"):
        attacks.pgd(lambda x: tf.reduce_sum(x, axis=[1, 2, 3]), x0, y, **kw)


def test_probabilities_are_warned_about(model, data):
    x0, y, _ = data
    probs = lambda x: tf.nn.softmax(model(x))  # noqa: E731
    with pytest.warns(UserWarning, match="probabilities"):
        attacks.pgd(probs, x0, y, eps=EPS, step_size=STEP, steps=1)


# ============================================================== inside users' graphs

SIZES = (8, 5, 3, 11)  # 5, 3 and 11 are not multiples of the 4 particles
TIMEOUT = 240  # seconds for the replica-context subprocess (usually about 15)
SIGNATURE = [tf.TensorSpec([None, MLP_FEATURES], tf.float32), tf.TensorSpec([None], tf.int64),
             tf.TensorSpec([], tf.int64)]


@pytest.fixture(scope="module")
def graph_data():
    rng = np.random.default_rng(5)
    return (rng.uniform(0.1, 0.9, (max(SIZES), MLP_FEATURES)).astype(np.float32),
            rng.integers(0, MLP_CLASSES, max(SIZES)))


def attack_function(model: keras.Model, attack: str, **overrides) -> Callable:
    """``daa_tf.<attack>`` in a ``tf.function(x [None, MLP_FEATURES], y [None] int64,
    seed [] int64)``."""
    settings = {**GRAPH_ATTACKS[attack], **overrides}
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
        x_adv = daa_tf.pgd(model, x, y, seed=seed, **{**GRAPH_ATTACKS["pgd"], **attack_settings})
        with tf.GradientTape() as tape:
            logits = model(x_adv, training=True)
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
                y, logits, from_logits=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return x_adv, loss
    return step


def test_training_step_traces_once_and_its_seed_tensor_flows(graph_data):
    x, y = graph_data
    model = graph_mlp()
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


def test_training_step_without_random_start_equals_eager_pgd_bit_for_bit(graph_data):
    x, y = graph_data
    model = graph_mlp()
    optimizer = keras.optimizers.SGD(0.5)
    optimizer.build(model.trainable_variables)
    traces: List[int] = []
    step = training_step(model, optimizer, traces, random_start=False)
    for i, n in enumerate(SIZES):
        expected = daa_tf.pgd(model, x[:n], y[:n], random_start=False,
                              **GRAPH_ATTACKS["pgd"]).numpy()
        x_adv, _ = step(x[:n], y[:n], tf.constant(i, tf.int64))  # then the weights change
        assert np.array_equal(x_adv.numpy(), expected), n
    assert len(traces) == 1


@pytest.mark.parametrize("attack", list(GRAPH_ATTACKS))
def test_unknown_batch_size_without_random_start_equals_eager_bit_for_bit(graph_data, attack):
    # DAA-BLOB groups 4 particles; batches of 5, 3 and 11 end with a partial group (padded inside).
    x, y = graph_data
    model = graph_mlp()
    fn = attack_function(model, attack, random_start=False)
    for n in SIZES:
        expected = getattr(daa_tf, attack)(model, x[:n], y[:n], random_start=False,
                                           **GRAPH_ATTACKS[attack]).numpy()
        assert np.array_equal(fn(x[:n], y[:n], 0).numpy(), expected), n
    assert fn.experimental_get_tracing_count() == 1


@pytest.mark.parametrize("attack", list(GRAPH_ATTACKS))
def test_seeded_in_graph_equals_eager_with_the_same_int_seed(graph_data, attack):
    x, y = graph_data
    model = graph_mlp()
    fn = attack_function(model, attack)
    for n in SIZES:
        expected = getattr(daa_tf, attack)(model, x[:n], y[:n], seed=3, **GRAPH_ATTACKS[attack])
        assert np.array_equal(fn(x[:n], y[:n], 3).numpy(), expected.numpy()), n


def test_daa_blob_seed_tensor_varies_and_a_python_none_seed_freezes(graph_data):
    x, y = graph_data
    model = graph_mlp()
    fn = attack_function(model, "daa_blob")
    n = 11
    a, b, c = (fn(x[:n], y[:n], s).numpy() for s in (1, 2, 1))
    assert not np.array_equal(a, b) and np.array_equal(a, c)
    assert in_ball_and_box(a, x[:n]) and in_ball_and_box(b, x[:n])
    # The pitfall the README warns about: seed=None inside a tf.function draws once, at trace time.
    frozen = tf.function(
        lambda x, y: daa_tf.daa_blob(model, x, y, seed=None, **GRAPH_ATTACKS["daa_blob"]),
        input_signature=SIGNATURE[:2])
    assert np.array_equal(frozen(x[:n], y[:n]).numpy(), frozen(x[:n], y[:n]).numpy())
    eager = [daa_tf.daa_blob(model, x[:n], y[:n], seed=None, **GRAPH_ATTACKS["daa_blob"]).numpy()
             for _ in range(2)]
    assert not np.array_equal(*eager)  # eagerly, None is a fresh draw on every call


# ------------------------------------------------------------ (b) a replica context


# Runs in a fresh process: 2 logical CPUs, MirroredStrategy, a distributed dataset of 30 rows in
# global batches of 13 (replica shards of 7 and 6 rows, then 2 and 2: partial DAA groups), one
# traced step (shapes [None, MLP_FEATURES]) whose replicas each attack their own shard with
# seed + replica id.
REPLICA_SCRIPT = textwrap.dedent("""
    import json, sys
    from tests.distribute_worker import split_cpu

    split_cpu(2)
    import numpy as np
    import tensorflow as tf

    import daa_tf
    from tests.helpers import GRAPH_ATTACKS, graph_mlp

    x, y = np.load(sys.argv[1])["x"], np.load(sys.argv[1])["y"]
    strategy = tf.distribute.MirroredStrategy(
        [d.name for d in tf.config.list_logical_devices("CPU")])
    assert strategy.num_replicas_in_sync == 2
    with strategy.scope():
        model = graph_mlp()
    dataset = tf.data.Dataset.from_tensor_slices((x, y.astype(np.int64))).batch(13)
    traces = []

    def replica_step(xs, ys, seed):
        context = tf.distribute.get_replica_context()
        assert context is not None and not tf.distribute.in_cross_replica_context()
        seed = seed + tf.cast(context.replica_id_in_sync_group, tf.int64)
        out = {"x": xs, "y": ys, "seed": seed}
        for name, settings in GRAPH_ATTACKS.items():
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
    np.savez(tmp / "in.npz", x=rng.uniform(0.1, 0.9, (30, MLP_FEATURES)).astype(np.float32),
             y=rng.integers(0, MLP_CLASSES, 30))
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    proc = subprocess.run([sys.executable, "-c", REPLICA_SCRIPT, str(tmp / "in.npz"),
                           str(tmp / "out.json")], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((tmp / "out.json").read_text())
    model = graph_mlp()
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
        for name in GRAPH_ATTACKS:
            assert in_ball_and_box(shard[name], shard["x"])


@pytest.mark.parametrize("attack", list(GRAPH_ATTACKS))
def test_replica_results_equal_single_device_results_per_shard(replicas, attack):
    _, model, shards = replicas
    fn = attack_function(model, attack)
    for shard in shards:
        x, y, seed = shard["x"], shard["y"], shard["seed"]
        no_start = getattr(daa_tf, attack)(model, x, y, random_start=False,
                                           **GRAPH_ATTACKS[attack])
        assert np.array_equal(shard[attack + "_no_start"], no_start.numpy())
        assert np.array_equal(shard[attack], fn(x, y, seed).numpy())


def test_replica_results_equal_eager_single_device_results_with_the_same_int_seed(replicas):
    _, model, shards = replicas
    for shard in shards:
        for attack in GRAPH_ATTACKS:
            expected = getattr(daa_tf, attack)(model, shard["x"], shard["y"], seed=shard["seed"],
                                               **GRAPH_ATTACKS[attack])
            assert np.array_equal(shard[attack], expected.numpy()), attack
