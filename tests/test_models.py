"""Model adapters: clean accuracies / logits on the shared fixtures, and every loader error."""
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from daa_tf import data
from daa_tf.models import (LOADERS, load_daa_fashion_mnist, load_madry_cifar10, load_madry_mnist,
                           load_model, load_wong_kolter_mnist, open_checkpoint)
from daa_tf.models import madry_cifar10, madry_mnist

BATCH = 1000


def correct_count(model: keras.Model, x: np.ndarray, y: np.ndarray) -> int:
    """Number of examples whose argmax logit is the label (batches of BATCH, one trace)."""
    forward = tf.function(lambda a: model(a, training=False))
    return sum(int(np.sum(np.argmax(forward(x[i:i + BATCH]).numpy(), 1) == y[i:i + BATCH]))
               for i in range(0, len(x), BATCH))


def save_tf1_checkpoint(folder: Path, tensors: dict, step: int = 1) -> Path:
    """Write a TF1 name-based checkpoint (``checkpoint`` file + ``checkpoint-<step>.*``)."""
    folder.mkdir(parents=True, exist_ok=True)
    prefix = folder / f"checkpoint-{step}"
    names = sorted(tensors)
    tf.raw_ops.SaveV2(prefix=str(prefix), tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=[tf.constant(tensors[n]) for n in names])
    (folder / "checkpoint").write_text(f'model_checkpoint_path: "checkpoint-{step}"\n'
                                       f'all_model_checkpoint_paths: "checkpoint-{step}"\n')
    return prefix


def random_mnist_tensors(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {name: rng.normal(0, 0.05, shape).astype(np.float32)
            for _, w, b, shape in madry_mnist.WEIGHTS
            for name, shape in ((w, shape), (b, shape[-1:]))}


@pytest.fixture(scope="module")
def mnist_test(shared):
    return data.load_mnist("test", data_dir=shared / "data" / "mnist")


# ------------------------------------------------------------------- accuracies on the fixtures


@pytest.mark.parametrize("which, expected", [("adv_trained", 9913), ("natural", 9915)])
def test_madry_mnist_clean_accuracy(shared, mnist_test, which, expected):
    x, y = mnist_test
    assert len(x) == 10000
    model = load_model("madry_mnist", shared / "models" / "mnist" / which)
    assert model.output_shape == (None, 10)
    assert correct_count(model, x, y) == expected  # 99.13% / 99.15%


def test_daa_fashion_mnist_clean_accuracy(shared):
    x, y = data.load_fashion_mnist("test", data_dir=shared / "data" / "fashion_mnist")
    model = load_daa_fashion_mnist(shared / "models" / "fashion_mnist" / "adv_trained")
    assert correct_count(model, x, y) == 8362  # 83.62%


def test_wong_kolter_clean_accuracy(shared, mnist_test):
    x, y = mnist_test
    model = load_wong_kolter_mnist(shared / "models" / "wong_kolter" / "mnist.npz")
    assert correct_count(model, x, y) == 9820  # 98.20%


@pytest.mark.parametrize("which, filters, expected_correct", [
    ("adv_trained_narrow", (16, 16, 32, 64), 685),
    ("random_16_32_48_64", (16, 32, 48, 64), 86),
])
def test_madry_cifar10_reproduces_reference_logits(shared, which, filters, expected_correct):
    folder = shared / "models" / "cifar10" / which
    x, y = data.load_cifar10("test", data_dir=shared / "data" / "cifar10")
    assert madry_cifar10.config_from_checkpoint(open_checkpoint(folder)).filters == filters
    model = load_model("madry_cifar10", folder)
    forward = tf.function(lambda a: model(a, training=False))
    logits = np.concatenate([forward(x[i:i + 500]).numpy() for i in range(0, len(x), 500)])
    expected = np.load(folder / "expected_logits_test_first1000.npy")
    assert logits.shape == expected.shape == (1000, 10)
    assert np.max(np.abs(logits - expected)) < 1e-3
    assert int(np.sum(logits.argmax(1) == y)) == expected_correct


# ------------------------------------------------------------- architecture checks, no fixtures


def tf1_madry_mnist(t: dict, x: np.ndarray) -> np.ndarray:
    """MadryLab's model.py forward pass written with raw tf.nn ops (the reference)."""
    h = tf.reshape(x, [-1, 28, 28, 1])
    pool = lambda a: tf.nn.max_pool2d(a, 2, 2, "SAME")  # noqa: E731
    h = pool(tf.nn.relu(tf.nn.conv2d(h, t["Variable"], 1, "SAME") + t["Variable_1"]))
    h = pool(tf.nn.relu(tf.nn.conv2d(h, t["Variable_2"], 1, "SAME") + t["Variable_3"]))
    h = tf.nn.relu(tf.reshape(h, [-1, 7 * 7 * 64]) @ t["Variable_4"] + t["Variable_5"])
    return (h @ t["Variable_6"] + t["Variable_7"]).numpy()


def test_madry_mnist_matches_tf1_graph_and_ignores_optimizer_slots(tmp_path):
    tensors = random_mnist_tensors()
    extra = {"Variable/Adam": np.ones((5, 5, 1, 32), np.float32),
             "Variable/Adam_1": np.ones((5, 5, 1, 32), np.float32),
             "beta1_power": np.float32(0.9), "beta2_power": np.float32(0.999),
             "global_step": np.int64(99900)}
    save_tf1_checkpoint(tmp_path / "m", {**tensors, **extra}, step=99900)
    model = load_madry_mnist(tmp_path / "m")
    x = np.random.default_rng(1).uniform(0, 1, (8, 784)).astype(np.float32)
    np.testing.assert_allclose(model(x).numpy(), tf1_madry_mnist(tensors, x), atol=1e-4)
    # an explicit prefix and its .index file work too
    for path in (tmp_path / "m" / "checkpoint-99900", tmp_path / "m" / "checkpoint-99900.index"):
        np.testing.assert_allclose(load_madry_mnist(path)(x).numpy(), model(x).numpy())


def test_cifar10_round_trip_of_a_small_config(tmp_path):
    cfg = madry_cifar10.ResNetConfig(filters=(4, 6, 8, 12), units_per_stage=2)
    source = madry_cifar10.build_madry_cifar10(cfg)
    rng = np.random.default_rng(5)
    tensors = {"global_step": np.int64(1), "logit/DW/Momentum": np.zeros((12, 10), np.float32)}
    for layer in source.layers:
        scope = layer.name.replace(".", "/")
        if isinstance(layer, keras.layers.Conv2D):
            tensors[f"{scope}/DW"] = layer.kernel.numpy()
        elif isinstance(layer, keras.layers.BatchNormalization):
            stats = [rng.uniform(0.5, 1.5, layer.gamma.shape).astype(np.float32) for _ in "abcd"]
            layer.set_weights(stats)
            tensors.update({f"{scope}/{v}": t for v, t in zip(madry_cifar10.BN_VARIABLES, stats)})
        elif isinstance(layer, keras.layers.Dense):
            tensors["logit/DW"], tensors["logit/biases"] = layer.kernel.numpy(), layer.bias.numpy()
    assert "unit_1_0/shared_activation/BatchNorm/gamma" in tensors
    assert "unit_2_1/residual_only_activation/BatchNorm/moving_variance" in tensors
    save_tf1_checkpoint(tmp_path / "c", tensors)
    loaded = load_madry_cifar10(tmp_path / "c")
    assert len(loaded.layers) == len(source.layers)
    x = np.random.default_rng(2).uniform(0, 255, (3, 32, 32, 3)).astype(np.float32)
    bn = loaded.get_layer("unit_last.BatchNorm")
    assert np.allclose(bn.moving_variance.numpy(), tensors["unit_last/BatchNorm/moving_variance"])
    np.testing.assert_allclose(loaded(x).numpy(), source(x).numpy(), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="even"):
        madry_cifar10.ResNetConfig(filters=(16, 17, 32, 64))


def test_per_image_standardization_matches_tf():
    x = np.random.default_rng(3).uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)
    x[1] = 7.0  # constant image: std floored at 1/sqrt(3072)
    ours = madry_cifar10.PerImageStandardization()(x).numpy()
    np.testing.assert_allclose(ours, tf.image.per_image_standardization(x).numpy(), atol=1e-5)


# ----------------------------------------------------------------------------- loader errors


@pytest.mark.parametrize("loader, challenge", [(load_madry_mnist, "mnist"),
                                               (load_madry_cifar10, "cifar10")])
def test_empty_folder_says_how_to_fetch(tmp_path, loader, challenge):
    with pytest.raises(FileNotFoundError,
                       match=f"python -m challenges.fetch_model --challenge={challenge}"):
        loader(tmp_path)


def test_missing_path_and_fashion_hint(tmp_path):
    with pytest.raises(FileNotFoundError, match="no TF checkpoint"):
        load_madry_mnist(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="no TF checkpoint in folder"):
        load_daa_fashion_mnist(tmp_path)


def test_missing_variable_is_named(tmp_path):
    tensors = random_mnist_tensors()
    del tensors["Variable_6"]
    save_tf1_checkpoint(tmp_path, tensors)
    with pytest.raises(ValueError, match="no variable 'Variable_6'"):
        load_madry_mnist(tmp_path)


def test_wrong_shape_names_variable_and_shapes(tmp_path):
    tensors = random_mnist_tensors()
    tensors["Variable_4"] = np.zeros((3136, 512), np.float32)
    save_tf1_checkpoint(tmp_path, tensors)
    with pytest.raises(ValueError, match=r"'Variable_4' has shape \[3136, 512\], expected "
                                         r"\[3136, 1024\]"):
        load_madry_mnist(tmp_path)


def test_fashion_missing_batch_norm(tmp_path):
    rng = np.random.default_rng(0)
    from daa_tf.models import daa_fashion_mnist
    tensors = {name: rng.normal(0, 0.05, shape).astype(np.float32)
               for _, w, b, shape in daa_fashion_mnist.WEIGHTS
               for name, shape in ((w, shape), (b, shape[-1:]))}
    save_tf1_checkpoint(tmp_path, tensors)
    with pytest.raises(ValueError, match="batch_normalization/gamma"):
        load_daa_fashion_mnist(tmp_path)


def test_file_that_is_not_a_checkpoint(tmp_path):
    junk = tmp_path / "model.bin"
    junk.write_bytes(b"this is not a checkpoint" * 10)
    with pytest.raises(ValueError, match="not a readable TF checkpoint"):
        load_madry_mnist(junk)
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "checkpoint").write_text('model_checkpoint_path: "checkpoint-1"\n')
    (folder / "checkpoint-1.index").write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ValueError, match="not a readable TF checkpoint"):
        load_madry_cifar10(folder)


def wong_kolter_state(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    shapes = {"0.weight": (16, 1, 4, 4), "0.bias": (16,), "2.weight": (32, 16, 4, 4),
              "2.bias": (32,), "5.weight": (100, 1568), "5.bias": (100,),
              "7.weight": (10, 100), "7.bias": (10,)}
    return {k: rng.normal(0, 0.1, s).astype(np.float32) for k, s in shapes.items()}


def test_wong_kolter_matches_pytorch_layout(tmp_path):
    """Reference: NCHW conv with padding 1 via tf.nn on transposed input, C,H,W flatten."""
    state = wong_kolter_state()
    np.savez(tmp_path / "wk.npz", **state)
    model = load_wong_kolter_mnist(tmp_path / "wk.npz")
    x = np.random.default_rng(4).uniform(0, 1, (5, 784)).astype(np.float32)
    h = tf.reshape(x, [-1, 28, 28, 1])
    for k in ("0", "2"):
        w = np.transpose(state[f"{k}.weight"], (2, 3, 1, 0))
        h = tf.pad(h, [[0, 0], [1, 1], [1, 1], [0, 0]])
        h = tf.nn.relu(tf.nn.conv2d(h, w, 2, "VALID") + state[f"{k}.bias"])
    h = tf.reshape(tf.transpose(h, [0, 3, 1, 2]), [-1, 1568])
    h = tf.nn.relu(h @ state["5.weight"].T + state["5.bias"])
    ref = (h @ state["7.weight"].T + state["7.bias"]).numpy()
    np.testing.assert_allclose(model(x).numpy(), ref, atol=1e-4)


def test_wong_kolter_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_wong_kolter_mnist(tmp_path / "absent.npz")
    state = wong_kolter_state()
    bad = dict(state)
    del bad["5.weight"]
    np.savez(tmp_path / "missing.npz", **bad)
    with pytest.raises(ValueError, match="'5.weight'"):
        load_wong_kolter_mnist(tmp_path / "missing.npz")
    bad = {**state, "2.weight": np.zeros((32, 16, 3, 3), np.float32)}
    np.savez(tmp_path / "shape.npz", **bad)
    with pytest.raises(ValueError, match=r"'2.weight' has shape \[32, 16, 3, 3\], expected "
                                         r"\[32, 16, 4, 4\]"):
        load_wong_kolter_mnist(tmp_path / "shape.npz")
    (tmp_path / "junk.npz").write_bytes(b"garbage" * 100)
    with pytest.raises(ValueError, match="not a readable npz"):
        load_wong_kolter_mnist(tmp_path / "junk.npz")


def test_registry():
    assert sorted(LOADERS) == ["daa_fashion_mnist", "ens_adv_inception_resnet_v2",
                               "madry_cifar10", "madry_mnist", "wong_kolter_mnist"]
    with pytest.raises(ValueError, match="unknown model 'resnet'"):
        load_model("resnet", "anywhere")


def test_folder_without_state_file_uses_highest_step(tmp_path):
    old, new = random_mnist_tensors(1), random_mnist_tensors(2)
    save_tf1_checkpoint(tmp_path, old, step=900)
    save_tf1_checkpoint(tmp_path, new, step=1000)
    (tmp_path / "checkpoint").unlink()
    assert open_checkpoint(tmp_path).prefix.endswith("checkpoint-1000")
    kernel = load_madry_mnist(tmp_path).get_layer("conv1").kernel.numpy()
    np.testing.assert_array_equal(kernel, new["Variable"])
