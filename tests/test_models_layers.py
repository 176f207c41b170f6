"""InputConv2D (daa_tf.models.layers): the same layer as keras Conv2D, with the input gradient
computed another way."""
import numpy as np
import pytest
import keras
import tensorflow as tf

from daa_tf.models.layers import InputConv2D, fold_input_gradient


def _pair(filters, kernel, padding, shape, strides=1, fast=True):
    rng = np.random.default_rng(sum(shape) + kernel)
    x = tf.constant(rng.uniform(0, 1, shape).astype(np.float32))
    plain = keras.layers.Conv2D(filters, kernel, strides=strides, padding=padding,
                                activation="relu")
    plain.build(x.shape)
    plain.set_weights([rng.normal(0, 0.3, w.shape).astype(np.float32)
                       for w in plain.get_weights()])
    ours = InputConv2D(filters, kernel, strides=strides, padding=padding, activation="relu",
                       fast_input_gradient=fast)
    ours.build(x.shape)
    ours.set_weights(plain.get_weights())
    return x, plain, ours


def _grads(layer, x, weights):
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        y = layer(x)
        loss = tf.reduce_sum(y * weights)
    return y, tape.gradient(loss, x), tape.gradient(loss, layer.kernel), \
        tape.gradient(loss, layer.bias)


@pytest.mark.parametrize("kernel,padding,hw", [(5, "same", (28, 28)), (4, "same", (10, 6)),
                                               (4, "valid", (28, 28)), (3, "same", (7, 9)),
                                               (1, "valid", (5, 5)), (6, "valid", (6, 6))])
def test_outputs_and_all_gradients_match_conv2d(kernel, padding, hw):
    x, plain, ours = _pair(6, kernel, padding, (3, *hw, 1))
    weights = tf.constant(np.random.default_rng(1).normal(0, 1, plain(x).shape), tf.float32)
    ref, got = _grads(plain, x, weights), _grads(ours, x, weights)
    np.testing.assert_array_equal(got[0], ref[0])  # the forward op is Conv2D's own
    scale = float(np.abs(ref[1]).max())
    np.testing.assert_allclose(got[1], ref[1], rtol=0, atol=1e-6 * scale)
    np.testing.assert_allclose(got[2], ref[2], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[3], ref[3], rtol=1e-5, atol=1e-6)


def test_fold_against_a_direct_numpy_transposed_convolution():
    rng = np.random.default_rng(7)
    dy = rng.normal(0, 1, (2, 6, 5, 3)).astype(np.float32)
    k = rng.normal(0, 1, (3, 2, 1, 3)).astype(np.float32)
    # SAME, stride 1, kernel 3x2 on a 6x5 input: top pad 1, left pad 0 (TensorFlow's split)
    expected = np.zeros((2, 6, 5))
    for i in range(6):
        for j in range(5):
            for a in range(3):
                for b in range(2):
                    r, c = i + a - 1, j + b
                    if 0 <= r < 6 and 0 <= c < 5:
                        expected[:, r, c] += dy[:, i, j, :] @ k[a, b, 0, :]
    got = fold_input_gradient(tf.constant(dy), tf.constant(k), (6, 5), (1, 0)).numpy()
    np.testing.assert_allclose(got[..., 0], expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("channels,strides", [(3, 1), (1, 2)])
def test_other_configurations_are_plain_conv2d(channels, strides):
    x, plain, ours = _pair(4, 3, "same", (2, 9, 9, channels), strides=strides)
    assert not ours._use_fast_path(x)
    weights = tf.ones_like(plain(x))
    for r, g in zip(_grads(plain, x, weights), _grads(ours, x, weights)):
        np.testing.assert_array_equal(g, r)


def test_switch_config_and_serialisation(tmp_path):
    x, _, ours = _pair(4, 5, "same", (2, 8, 8, 1), fast=None)
    assert ours._use_fast_path(x) == (not tf.config.list_logical_devices("GPU")
                                    and not tf.config.list_logical_devices("TPU"))
    assert not InputConv2D(4, 5, fast_input_gradient=False)._use_fast_path(x)
    model = keras.Sequential([keras.Input((8, 8, 1)), ours])
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded.layers[0], InputConv2D)
    assert loaded.layers[0].fast_input_gradient is None
    np.testing.assert_array_equal(loaded(x), model(x))


def test_gradient_inside_a_compiled_loop_does_not_retrace_per_call():
    x, _, ours = _pair(8, 5, "same", (4, 12, 12, 1))

    @tf.function
    def grad(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(ours(x))
        return tape.gradient(loss, x)
    first = grad(x).numpy()
    for _ in range(3):
        np.testing.assert_array_equal(grad(x).numpy(), first)  # deterministic
    assert grad.experimental_get_tracing_count() == 1
