"""AutoAttack's checks (daa_tf.checks, docs/algorithms.md#autoattack-checks): a model with a
softmax output, a randomized model and a model with zero gradients each draw their warning; a
plain logit model draws none."""
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from daa_tf import checks, loop

N, D, C = 16, 6, 5


def _dense(activation=None, seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((D,))
    return keras.Model(inputs, keras.layers.Dense(C, activation=activation)(inputs))


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return rng.uniform(0, 1, (N, D)).astype(np.float32), rng.integers(0, C, N)


def _warnings(fn):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = fn()
    return out, [w for w in caught if issubclass(w.category, checks.EvaluationWarning)]


def test_a_plain_logit_model_passes_every_check(data):
    x, y = data
    model = _dense()
    logits_fn = loop.compiled_logits(model, False)
    for check in (lambda: checks.check_logits(logits_fn(x).numpy()),
                  lambda: checks.check_deterministic(logits_fn, x, y),
                  lambda: checks.check_gradients(model, x, y),
                  lambda: checks.check_classes(C, C - 1)):
        out, caught = _warnings(check)
        assert out is None and not caught


def test_probabilities_are_flagged(data):
    x, _ = data
    model = _dense("softmax")
    out, caught = _warnings(lambda: checks.check_logits(model(x).numpy()))
    assert "probabilities" in out and "drop its final softmax" in str(caught[0].message)


def test_a_randomized_model_is_flagged(data):
    x, y = data
    dense = _dense()

    class Noisy(keras.Model):
        def call(self, inputs):
            return dense(inputs) + tf.random.normal([tf.shape(inputs)[0], C], stddev=1e-2)

    noisy = Noisy()
    out, caught = _warnings(lambda: checks.check_deterministic(lambda t: noisy(t), x, y))
    assert "change between calls" in out and len(caught) == 1


def test_zero_gradients_are_counted(data):
    x, y = data
    dense = _dense()
    # gradients masked: the logits stop the gradient, so every example has a zero one
    flat = keras.Sequential([dense, keras.layers.Lambda(tf.stop_gradient)])
    out, caught = _warnings(lambda: checks.check_gradients(flat, x, y))
    assert out.startswith(f"{N} of {N} images have a zero loss gradient") and caught
    # half the examples zeroed: only those are counted
    half = np.concatenate([np.ones((N // 2, 1)), np.zeros((N // 2, 1))]).astype(np.float32)
    masked = lambda t: dense(t * half)  # noqa: E731 - the second half sees a constant input
    out, _ = _warnings(lambda: checks.check_gradients(masked, x, y))
    assert out.startswith(f"{N // 2} of {N} images")


def test_classes_and_square_checks():
    assert "at least 4 classes" in _warnings(lambda: checks.check_classes(3, 2))[0]
    assert "9 target classes asked for, only 4 exist" in _warnings(
        lambda: checks.check_classes(5, 9))[0]
    # Square 0.3 points below the best gradient attack: flagged; 0.2 or less: not
    flagged, caught = _warnings(lambda: checks.check_square(
        {"clean": 0.99, "apgd": 0.904, "apgd_t": 0.901, "fab_t": 0.901, "square": 0.898}))
    assert "0.30 points" in flagged and caught
    assert _warnings(lambda: checks.check_square(
        {"clean": 0.99, "apgd": 0.904, "square": 0.902}))[0] is None
    assert checks.check_square({"clean": 0.99, "square": 0.5}) is None  # nothing to compare
