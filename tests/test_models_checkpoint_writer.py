"""TF1 checkpoints in the released layouts (daa_tf.models.checkpoint_writer): names, round trips
through the loaders (and TF1's own Saver), optimizer state, atomic writes and the kept-checkpoint
policy."""
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from daa_tf import data, training
from daa_tf.models import (checkpoint_writer as cw, load_daa_fashion_mnist, load_madry_cifar10,
                           load_madry_mnist)
from daa_tf.models.daa_fashion_mnist import build_daa_fashion_mnist
from daa_tf.models.madry_cifar10 import ResNetConfig, build_madry_cifar10
from daa_tf.models.madry_mnist import build_madry_mnist
from tests.helpers import tiny_resnet

TINY_RESNET = tiny_resnet()


def shapes_of(prefix) -> dict:
    reader = tf.train.load_checkpoint(str(prefix))
    return {k: tuple(v) for k, v in reader.get_variable_to_shape_map().items()}


def model_only(names) -> set:
    return {n for n in names if not n.endswith(("/Adam", "/Adam_1", "/Momentum"))
            and n not in ("beta1_power", "beta2_power")}


@pytest.mark.parametrize("layout, build, released", [
    ("madry_mnist", build_madry_mnist, "mnist/adv_trained"),
    ("daa_fashion_mnist", build_daa_fashion_mnist, "fashion_mnist/adv_trained"),
    ("madry_cifar10", lambda: build_madry_cifar10(ResNetConfig(filters=(16, 16, 32, 64))),
     "cifar10/adv_trained_narrow"),
])
def test_names_and_shapes_are_the_released_ones(shared, tmp_path, layout, build, released):
    prefix = cw.save_checkpoint(build(), layout, tmp_path, 7)
    assert shapes_of(prefix) == shapes_of(cw.open_checkpoint(shared / "models" / released).prefix)
    dtypes = tf.train.load_checkpoint(prefix).get_variable_to_dtype_map()
    assert dtypes["global_step"] == tf.int64


def test_mnist_round_trip_after_training(shared, tmp_path):
    """Train a few steps, save, load with the adapter: the same logits (bitwise)."""
    x, y = data.load_mnist("train", shared / "data" / "mnist", 256)
    keras.utils.set_random_seed(1)
    model = build_madry_mnist()
    trainer = training.AdversarialTrainer(model, "pgd", eps=0.3, step_size=0.1, steps=2)
    trainer.compile(keras.optimizers.Adam(1e-3, epsilon=1e-8))
    trainer.fit(training.training_batches(x, y, 32, seed=0, stop_step=12), verbose=0)
    cw.save_madry_mnist(model, tmp_path, 12, trainer.optimizer)
    loaded = load_madry_mnist(tmp_path)
    x_test, _ = data.load_mnist("test", shared / "data" / "mnist", 200)
    np.testing.assert_array_equal(loaded(x_test).numpy(), model(x_test).numpy())
    names = shapes_of(tmp_path / "checkpoint-12")
    assert "Variable_7/Adam_1" in names and "beta1_power" in names


def randomize(model: keras.Model, seed: int = 0) -> None:
    """Random values in every variable (batch norm variances positive)."""
    rng = np.random.default_rng(seed)
    for v in model.weights:
        value = rng.normal(0, 0.1, v.shape)
        if "variance" in v.path:
            value = 0.5 + np.abs(value)
        v.assign(value.astype(np.float32))


def test_fashion_and_cifar10_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    fashion = build_daa_fashion_mnist()
    randomize(fashion)
    xf = rng.random((16, 784), dtype=np.float32)
    cw.save_daa_fashion_mnist(fashion, tmp_path / "f", 2)
    np.testing.assert_array_equal(load_daa_fashion_mnist(tmp_path / "f")(xf).numpy(),
                                  fashion(xf).numpy())

    resnet = build_madry_cifar10(TINY_RESNET)
    randomize(resnet)
    xc = rng.integers(0, 256, (8, 32, 32, 3)).astype(np.float32)
    optimizer = training.TF1Momentum(0.1, 0.9)
    prefix = cw.save_madry_cifar10(resnet, tmp_path / "c", 2, optimizer)
    loaded = load_madry_cifar10(tmp_path / "c")
    np.testing.assert_allclose(loaded(xc).numpy(), resnet(xc).numpy(), rtol=0, atol=1e-6)
    assert "unit_3_0/sub1/conv1/DW/Momentum" in shapes_of(prefix)
    assert "unit_last/BatchNorm/moving_mean/Momentum" not in shapes_of(prefix)  # not trainable


def test_tf1_saver_reads_it(tmp_path):
    """MadryLab's code restores with ``tf.train.Saver`` over its graph's variables."""
    model = build_madry_mnist()
    cw.save_madry_mnist(model, tmp_path, 300)
    graph = tf.Graph()
    with graph.as_default():
        shapes = [(5, 5, 1, 32), (32,), (5, 5, 32, 64), (64,), (3136, 1024), (1024,),
                  (1024, 10), (10,)]
        variables = [tf.compat.v1.Variable(tf.zeros(s)) for s in shapes]  # Variable, Variable_1..
        step = tf.compat.v1.train.get_or_create_global_step()
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session(graph=graph) as sess:
            saver.restore(sess, tf.train.latest_checkpoint(str(tmp_path)))
            values, step_value = sess.run([variables, step])
    assert step_value == 300
    for value, weight in zip(values, model.get_weights()):
        np.testing.assert_array_equal(value, weight)


@pytest.mark.parametrize("make_optimizer", [lambda: keras.optimizers.Adam(1e-3),
                                            lambda: training.TF1Momentum(0.05, 0.9)])
def test_optimizer_state_round_trip(tmp_path, make_optimizer):
    rng = np.random.default_rng(2)
    x, y = rng.random((16, 784), dtype=np.float32), rng.integers(0, 10, 16)
    model = build_madry_mnist()
    model.compile(make_optimizer(), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    cw.save_madry_mnist(model, tmp_path, 2, model.optimizer)

    fresh = build_madry_mnist()
    optimizer = make_optimizer()
    assert cw.restore_checkpoint(fresh, "madry_mnist", tmp_path, optimizer) == 2
    assert int(optimizer.iterations.numpy()) == 2
    for a, b in zip(optimizer.variables, model.optimizer.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    for a, b in zip(fresh.weights, model.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_restore_refuses_missing_optimizer_state_and_foreign_layouts(shared, tmp_path):
    model = build_madry_mnist()
    with pytest.raises(ValueError, match="holds no Adam state"):
        cw.restore_checkpoint(model, "madry_mnist", shared / "models" / "mnist" / "natural",
                              keras.optimizers.Adam())
    assert cw.restore_checkpoint(model, "madry_mnist",
                                 shared / "models" / "mnist" / "natural") == 99900
    with pytest.raises(ValueError, match="does not have the madry_cifar10 layout|names no"):
        cw.save_checkpoint(model, "madry_cifar10", tmp_path, 1)
    with pytest.raises(ValueError, match="does not have the daa_fashion_mnist layout"):
        cw.save_checkpoint(model, "daa_fashion_mnist", tmp_path, 1)
    with pytest.raises(ValueError, match="unknown checkpoint layout"):
        cw.save_checkpoint(model, "nope", tmp_path, 1)
    with pytest.raises(ValueError, match="no TF1 checkpoint layout for optimizer SGD"):
        cw.save_checkpoint(model, "madry_mnist", tmp_path, 1, keras.optimizers.SGD())
    assert not list(tmp_path.iterdir())


def test_kept_checkpoints_and_state_file(tmp_path):
    model = build_madry_mnist()
    for step in (0, 300, 600, 900):
        cw.save_madry_mnist(model, tmp_path, step)
    assert cw.checkpoint_steps(tmp_path) == [300, 600, 900]
    state = (tmp_path / "checkpoint").read_text().splitlines()
    assert state == ['model_checkpoint_path: "checkpoint-900"',
                     'all_model_checkpoint_paths: "checkpoint-300"',
                     'all_model_checkpoint_paths: "checkpoint-600"',
                     'all_model_checkpoint_paths: "checkpoint-900"']
    assert tf.train.latest_checkpoint(str(tmp_path)).endswith("checkpoint-900")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    cw.save_madry_mnist(model, tmp_path, 1200, max_to_keep=None)
    assert cw.checkpoint_steps(tmp_path) == [300, 600, 900, 1200]


def test_an_interrupted_write_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    model = build_madry_mnist()
    cw.save_madry_mnist(model, tmp_path, 300)
    real_replace = os.replace

    def failing_replace(src, dst):
        if str(dst).endswith("checkpoint-600.index"):
            raise OSError("disk full")
        return real_replace(src, dst)

    monkeypatch.setattr(cw.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        cw.save_madry_mnist(model, tmp_path, 600)
    monkeypatch.undo()
    assert cw.checkpoint_steps(tmp_path) == [300]
    assert not (tmp_path / "checkpoint-600.index").exists()
    assert tf.train.latest_checkpoint(str(tmp_path)).endswith("checkpoint-300")
    assert not [p for p in tmp_path.iterdir() if p.is_dir()]  # no staging folder left
    load_madry_mnist(tmp_path)  # still reads


def test_the_state_file_goes_through_the_one_atomic_writer(tmp_path, monkeypatch):
    """checkpoint_writer writes text with daa_tf.files.atomic_write (issue 22: one atomic writer):
    its folder is created, the text is UTF-8 whatever the locale, and no temporary file is left
    when the write fails."""
    from daa_tf import files

    calls = []
    real = files.atomic_write
    monkeypatch.setattr(files, "atomic_write", lambda *a, **k: (calls.append(a[0]), real(*a, **k)))
    cw.write_text_atomic(tmp_path / "new" / "config.json", "κ = 0.9\n")
    assert (tmp_path / "new" / "config.json").read_bytes() == "κ = 0.9\n".encode("utf-8")
    cw.save_madry_mnist(build_madry_mnist(), tmp_path / "m", 3)
    assert [os.path.basename(p) for p in calls] == ["config.json", cw.STATE_FILE]

    def broken(f):
        f.write("partial")
        raise OSError("disk full")

    monkeypatch.setattr(files, "atomic_write", real)
    with pytest.raises(OSError, match="disk full"):
        files.atomic_write(tmp_path / "new" / "config.json", broken, binary=False)
    assert sorted(os.listdir(tmp_path / "new")) == ["config.json"]
