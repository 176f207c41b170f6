"""The attack functions against the NumPy reference of docs/algorithms.md, and their invariants."""
import numpy as np
import pytest
import tensorflow as tf
import keras

import daa_tf
from daa_tf import attacks, catalogue, loop
from daa_tf.losses import get_loss
from tests import numpy_reference as ref

N, SHAPE, CLASSES, PARTICLES = 11, (4, 4, 2), 5, 4  # groups of 4, 4 and 3
EPS, STEP = 0.3, 0.05


def toy_model(scale: float = 1.0) -> keras.Model:
    """A small random net on [N, 4, 4, 2] images; ``scale`` divides its input (a [0, 255] twin)."""
    keras.utils.set_random_seed(1)
    inputs = keras.Input(SHAPE)
    h = keras.layers.Rescaling(1.0 / scale)(inputs)
    h = keras.layers.Flatten()(h)
    h = keras.layers.Dense(16, activation="tanh")(h)
    return keras.Model(inputs, keras.layers.Dense(CLASSES)(h))


@pytest.fixture(scope="module")
def model() -> keras.Model:
    return toy_model()


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


@pytest.mark.parametrize("name", attacks.ATTACKS)
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


def test_no_retrace_when_only_numbers_change(model, data):
    x0, y, _ = data
    for eps, steps in ((0.1, 2), (0.2, 3), (0.3, 1)):
        attacks.pgd(model, x0, y, eps=eps, step_size=0.01, steps=steps, seed=0)
    cfg = attacks.make_config("pgd", eps=0.1, step_size=0.01, steps=1)
    fn = loop.compiled_loop(model, get_loss("xent"), cfg.rule, False, cfg.jit_compile)
    assert fn.experimental_get_tracing_count() == 1


def test_jit_compile_is_a_per_device_default_and_overridable(model, data):
    x0, y, _ = data
    has_gpu = bool(tf.config.list_logical_devices("GPU"))
    assert attacks.make_config("pgd", eps=0.1, step_size=0.1, steps=1).jit_compile == has_gpu
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
