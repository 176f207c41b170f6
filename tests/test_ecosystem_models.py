"""Models from the rest of the TensorFlow ecosystem, each attacked by ``daa_tf.pgd`` and
``daa_tf.run``: a ``tf_keras`` (Keras 2) model, a SavedModel exported by Keras 3's
``model.export`` (loaded three ways) and a plain ``tf.Module``."""
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import daa_tf
from tests.test_stream import CLASSES, SHAPE, batched, toy_data, toy_model

PGD = dict(eps=0.05, step_size=0.02, steps=3, random_start=False)


def attacked_both_ways(model, x, y):
    """``(daa_tf.pgd's x_adv, daa_tf.run's result, the streamed result)`` of ``model``."""
    x_adv = daa_tf.pgd(model, x, y, **PGD).numpy()
    result = daa_tf.run(model, x, y, "pgd", verbose=0, batch_size=10, **PGD)
    streamed = daa_tf.run(model, batched(x, y), "pgd", verbose=0, **PGD)
    return x_adv, result, streamed


def check_attacked(x, x_adv, result, streamed, reference):
    """In the ball and box; ``daa_tf.run`` agrees with ``daa_tf.pgd`` and the stream with the
    arrays; ``reference``: the same attack on an equivalent Keras 3 model (same function)."""
    assert np.max(np.abs(x_adv - x)) <= PGD["eps"] + 1e-6 and np.any(x_adv != x)
    np.testing.assert_array_equal(result.x_adv, x_adv)
    np.testing.assert_array_equal(streamed.correct, result.correct)
    np.testing.assert_allclose(x_adv, reference, atol=1e-6)


@pytest.fixture(scope="module")
def data():
    return toy_data(20)


def test_a_tf_keras_model_is_attacked_in_inference_mode(data):
    import tf_keras

    x, y = data
    tf_keras.utils.set_random_seed(1)
    model = tf_keras.Sequential([
        tf_keras.layers.Flatten(input_shape=SHAPE),
        tf_keras.layers.Dense(16, activation="tanh"),
        tf_keras.layers.BatchNormalization(),
        tf_keras.layers.Dropout(0.5),
        tf_keras.layers.Dense(CLASSES)])
    bn = model.layers[2]
    bn.moving_mean.assign(np.full(16, 0.3, np.float32))
    bn.moving_variance.assign(np.full(16, 4.0, np.float32))
    assert daa_tf.loop.is_keras_layer(model)
    inference = daa_tf.pgd(lambda t: model(t, training=False), x, y, **PGD).numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # learning_phase_scope is deprecated
        with tf_keras.backend.learning_phase_scope(1):  # a training phase left set globally
            x_adv, result, streamed = attacked_both_ways(model, x, y)
    # batch statistics or dropout would change the gradients: the attack ran in inference mode
    check_attacked(x, x_adv, result, streamed, inference)
    np.testing.assert_array_equal(x_adv, inference)


def test_a_saved_model_exported_by_keras(data, tmp_path):
    x, y = data
    original = toy_model()
    reference = daa_tf.pgd(original, x, y, **PGD).numpy()
    path = str(tmp_path / "exported")
    original.export(path, verbose=False)
    loaded = tf.saved_model.load(path)
    assert not callable(loaded)  # its logits are the "serve" endpoint
    for model in (loaded, loaded.serve, keras.layers.TFSMLayer(path, call_endpoint="serve")):
        x_adv, result, streamed = attacked_both_ways(model, x, y)
        check_attacked(x, x_adv, result, streamed, reference)


class Linear(tf.Module):
    """A plain ``tf.Module``: logits ``flatten(x) W + b``."""

    def __init__(self, kernel: np.ndarray, bias: np.ndarray) -> None:
        super().__init__()
        self.kernel, self.bias = tf.Variable(kernel), tf.Variable(bias)

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        return tf.reshape(x, [tf.shape(x)[0], -1]) @ self.kernel + self.bias


def test_a_plain_tf_module(data):
    x, y = data
    rng = np.random.default_rng(3)
    kernel = rng.normal(0, 1, (int(np.prod(SHAPE)), CLASSES)).astype(np.float32)
    bias = rng.normal(0, 0.1, CLASSES).astype(np.float32)
    twin = keras.Sequential([keras.Input(SHAPE), keras.layers.Flatten(),
                             keras.layers.Dense(CLASSES)])
    twin.layers[-1].set_weights([kernel, bias])
    reference = daa_tf.pgd(twin, x, y, **PGD).numpy()
    x_adv, result, streamed = attacked_both_ways(Linear(kernel, bias), x, y)
    check_attacked(x, x_adv, result, streamed, reference)
