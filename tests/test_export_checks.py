"""The exported attack checks its inputs in the graph (issue 22): fed through
``tf.saved_model.load``'s signature (where no Python check runs), inputs outside the box, 0..255
floats, NaN, a wrong shape, bad labels or an empty batch fail with InvalidArgumentError naming the
input and the rule; a valid batch still works and stays in the ball and the box."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from daa_tf import export

D, CLASSES, N, EPS = 20, 5, 12, 0.1


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> str:
    """A saved PGD on a tiny MLP ``[N, 20] -> [N, 5]`` (box [0, 1])."""
    keras.utils.set_random_seed(3)
    inputs = keras.Input((D,))
    model = keras.Model(inputs, keras.layers.Dense(CLASSES)(
        keras.layers.Dense(16, activation="tanh")(inputs)))
    path = tmp_path_factory.mktemp("checks") / "attack"
    export.save_attack(model, path, "pgd", eps=EPS, step_size=0.05, steps=5)
    return str(path)


@pytest.fixture(scope="module")
def serve(saved):
    """Its serving signature, as TF Serving or a C++ harness would call it."""
    return tf.saved_model.load(saved).signatures[export.SIGNATURE]


def call(serve, x, y=None, seed=0):
    y = np.random.default_rng(1).integers(0, CLASSES, len(x)) if y is None else y
    return serve(x=tf.constant(x, tf.float32), y=tf.constant(y, tf.int64),
                 seed=tf.constant(seed, tf.int64))["x_adv"].numpy()


def clean(n: int = N) -> np.ndarray:
    return np.random.default_rng(0).uniform(0, 1, (n, D)).astype(np.float32)


def test_a_valid_batch_stays_in_the_ball_and_the_box(serve):
    x = clean()
    x_adv = call(serve, x)
    assert x_adv.shape == x.shape and np.all(np.isfinite(x_adv))
    assert np.abs(x_adv - x).max() <= EPS + 1e-6
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    assert np.abs(x_adv - x).max() > EPS / 2  # it did attack


@pytest.mark.parametrize("case, rule", [
    ("outside", r"x must lie in the pixel box \[0, 1\]"),
    ("0..255", r"x must lie in the pixel box \[0, 1\]"),
    ("nan", "x must be finite"),
    ("wrong size", r"Shape of tensor x \[12,19\] is not compatible with expected shape \[\?,20\]"),
    ("wrong rank", r"Shape of tensor x \[12,20,1\] is not compatible with expected shape"),
    ("empty", "x must hold at least one image"),
])
def test_bad_images_are_refused_in_the_graph(serve, case, rule):
    x = clean()
    bad = {"outside": x * 2 - 0.5, "0..255": np.round(x * 255), "wrong size": x[:, :-1],
           "wrong rank": x[:, :, None], "empty": x[:0]}
    if case == "nan":
        x[3, 7] = np.nan
        bad["nan"] = x
    y = None if case != "empty" else np.zeros(0, np.int64)
    with pytest.raises(tf.errors.InvalidArgumentError, match=rule):
        call(serve, bad[case], y)


@pytest.mark.parametrize("labels, rule", [
    (np.full(N, CLASSES), r"y must hold class indices in \[0, num_classes\)"),
    (np.full(N, -1), r"y must hold class indices in \[0, num_classes\)"),
    (np.zeros(N - 1), "y must hold one label per image of x"),
    (np.zeros((N, 1)), r"Shape of tensor y \[12,1\] is not compatible with expected shape \[\?\]"),
])
def test_bad_labels_are_refused_in_the_graph(serve, labels, rule):
    with pytest.raises(tf.errors.InvalidArgumentError, match=rule):
        call(serve, clean(), labels.astype(np.int64))


def test_the_signature_requires_the_seed_and_attack_defaults_it_to_0(serve, saved):
    with pytest.raises(TypeError, match="missing a required argument: 'seed'"):
        serve(x=tf.constant(clean()), y=tf.constant(np.zeros(N), tf.int64))
    loaded = tf.saved_model.load(saved)
    y = tf.constant(np.arange(N) % CLASSES, tf.int64)
    default = loaded.attack(tf.constant(clean()), y)["x_adv"].numpy()
    np.testing.assert_array_equal(default, call(serve, clean(), y.numpy(), seed=0))
    assert not np.array_equal(default, call(serve, clean(), y.numpy(), seed=1))


def test_a_box_of_0_to_255_is_the_saved_one(tmp_path):
    keras.utils.set_random_seed(4)
    inputs = keras.Input((D,))
    model = keras.Model(inputs, keras.layers.Dense(CLASSES)(inputs))
    export.save_attack(model, tmp_path / "a", "pgd", eps=8.0, step_size=2.0, steps=2,
                       clip_min=0.0, clip_max=255.0)
    serve = tf.saved_model.load(str(tmp_path / "a")).signatures[export.SIGNATURE]
    x = np.round(clean() * 255)
    x_adv = call(serve, x)
    assert np.abs(x_adv - x).max() <= 8.0 + 1e-4 and 0 <= x_adv.min() and x_adv.max() <= 255
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"pixel box \[0, 255\]"):
        call(serve, x + 300)
