"""Adversarial training in model.fit (daa_tf.training): the train step, the inner attack's examples,
DAA groups, batch-norm modes, seeds and data order, resume == uninterrupted, tf.distribute. The
training command line is tested in tests/test_challenges_train.py, the training benchmark in
tests/test_benchmarks.py."""
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from daa_tf import attacks, data, training
from daa_tf.models import checkpoint_writer as cw
from daa_tf.models.madry_cifar10 import build_madry_cifar10
from daa_tf.models.madry_mnist import build_madry_mnist
from tests.helpers import REPO_ROOT, tiny_resnet

TINY_RESNET = tiny_resnet()


def blobs(n: int = 256, d: int = 20, seed: int = 0):
    """Two classes in [0, 1]^d: means 0.3 and 0.7, noise 0.1."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = np.clip(0.3 + 0.4 * y[:, None] + 0.1 * rng.standard_normal((n, d)), 0, 1)
    return x.astype(np.float32), y


def mlp(d: int = 20, classes: int = 2) -> keras.Model:
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((d,)), keras.layers.Dense(16, activation="relu"),
                             keras.layers.Dense(classes)])


class Recording(keras.Model):
    """Wraps a classifier and keeps the last batch it was trained on (training-mode call)."""

    def __init__(self, inner: keras.Model, shape) -> None:
        super().__init__()
        self.inner = inner
        self.seen = self.add_weight(shape=shape, initializer="zeros", trainable=False)

    def call(self, x, training=False):
        if training:
            self.seen.assign(x)
        return self.inner(x, training=training)


def test_loss_goes_down_on_a_small_problem():
    x, y = blobs()
    trainer = training.AdversarialTrainer(mlp(), "pgd", eps=0.05, step_size=0.02, steps=5)
    trainer.compile(keras.optimizers.Adam(0.01))
    history = trainer.fit(training.training_batches(x, y, 32, seed=0, stop_step=60), epochs=3,
                          steps_per_epoch=20, verbose=0, shuffle=False).history
    assert history["loss"][0] > history["loss"][1] > history["loss"][2]  # 0.62, 0.48, 0.34
    assert history["loss"][-1] < 0.6 * history["loss"][0]
    assert history["adv_accuracy"][-1] > 0.95 and history["nat_accuracy"][-1] > 0.95
    assert set(history) == {"loss", "adv_accuracy", "nat_accuracy"}
    result = trainer.evaluate(x, y, batch_size=128, verbose=0, return_dict=True)
    assert result["adv_accuracy"] <= result["nat_accuracy"]


@pytest.mark.parametrize("attack, extra, batch, fraction", [
    ("pgd", {}, 16, 0.5),
    ("daa_blob", {"particles": 4}, 10, 1.0),  # 10 = groups of 4, 4 and 2
    ("daa_dgf", {"particles": 4}, 8, 0.75),   # attacked: the first 6 (groups of 4 and 2)
])
def test_trained_examples_stay_in_the_ball_and_the_box(attack, extra, batch, fraction):
    x, y = blobs(64)
    eps = 0.1
    recording = Recording(mlp(), (batch, 20))
    trainer = training.AdversarialTrainer(recording, attack, eps=eps, step_size=0.04, steps=4,
                                          fraction=fraction, seed=3, **extra)
    trainer.compile(keras.optimizers.Adam(0.01))
    batches = training.training_batches(x, y, batch, seed=5, stop_step=2)
    trainer.fit(batches, verbose=0, shuffle=False)
    trained = recording.seen.numpy()
    clean = list(batches.skip(1).take(1))[0][0].numpy()  # the batch of the last step
    attacked = int(round(fraction * batch))
    diff = np.abs(trained - clean)
    assert diff.max() <= eps + 1e-6 and trained.min() >= 0.0 and trained.max() <= 1.0
    assert np.all(diff[:attacked].max(axis=1) > 0)  # every attacked example moved
    np.testing.assert_array_equal(trained[attacked:], clean[attacked:])


def test_perturb_is_the_public_attack_with_the_step_seed():
    x, y = blobs(16)
    model = mlp()
    trainer = training.AdversarialTrainer(model, "pgd", eps=0.1, step_size=0.03, steps=3, seed=11)
    trainer.compile(keras.optimizers.Adam())
    seed = training.derived_seed(11, training.TRAIN_TAG, 0, 0)
    mine = tf.function(lambda a, b: trainer.perturb(a, b, trainer.step_seed()))(x, y)
    direct = tf.function(lambda a, b: attacks.pgd(model, a, b, eps=0.1, step_size=0.03, steps=3,
                                                  seed=seed))(x, y)
    np.testing.assert_array_equal(mine.numpy(), direct.numpy())


def test_every_catalogue_attack_runs_in_a_compiled_step_or_says_why_not():
    from daa_tf import catalogue
    x, y = blobs(16)
    model = mlp()
    for name, spec in catalogue.ATTACKS.items():
        settings = dict(eps=0.1, steps=1 if spec.one_step else 2)
        if not spec.one_step and getattr(spec, "schedule", "fixed") == "fixed":
            settings["step_size"] = 0.05
        if spec.interacting:
            settings["particles"] = 4
        trainer = training.AdversarialTrainer(model, name, **settings)
        trainer.compile(keras.optimizers.Adam(0.01))
        step = tf.function(lambda a, b: trainer.perturb(a, b, trainer.step_seed()))
        try:
            x_adv = step(x, y).numpy()
        except ValueError as err:  # an attack that needs the host (e.g. NumPy checks)
            assert "cannot run inside a compiled training step" in str(err), name
            assert name not in ("fgsm", "pgd", "momentum_pgd", "daa_blob", "daa_dgf", "apgd")
        else:
            assert np.abs(x_adv - x).max() <= 0.1 + 1e-6 and 0 <= x_adv.min(), name
            assert x_adv.max() <= 1, name
            # FAB returns the clean point where it found no fooling point within eps
            assert np.abs(x_adv - x).max() > 0 or spec.schedule == "fab", name


def test_seeds_and_batches_depend_on_the_step_only():
    a = training.derived_seed(1, training.TRAIN_TAG, 0, 5).numpy()
    assert not np.array_equal(a, training.derived_seed(1, training.TRAIN_TAG, 0, 6).numpy())
    assert not np.array_equal(a, training.derived_seed(1, training.TRAIN_TAG, 1, 5).numpy())
    assert not np.array_equal(a, training.derived_seed(2, training.TRAIN_TAG, 0, 5).numpy())
    x = np.arange(10, dtype=np.float32)[:, None] * np.ones((1, 3), np.float32) / 10
    y = np.arange(10)
    full = [b[1].numpy() for b in training.training_batches(x, y, 3, seed=4, stop_step=7)]
    tail = [b[1].numpy() for b in training.training_batches(x, y, 3, seed=4, start_step=4,
                                                            stop_step=7)]
    np.testing.assert_array_equal(np.stack(full[4:]), np.stack(tail))
    for epoch in (full[0:3], full[3:6]):  # 3 batches an epoch, remainder skipped: no repeats
        assert len(set(np.concatenate(epoch))) == 9
    assert not np.array_equal(np.concatenate(full[0:3]), np.concatenate(full[3:6]))


def test_cifar10_augmentation_is_a_padded_crop_and_flip():
    rng = np.random.default_rng(0)
    x = rng.integers(1, 256, (6, 32, 32, 3)).astype(np.float32)
    out = training.augment_cifar10(tf.constant(x), tf.constant([3, 4], tf.int64)).numpy()
    padded = np.pad(x, [(0, 0), (2, 2), (2, 2), (0, 0)])
    for i in range(len(x)):
        windows = [padded[i, dy:dy + 32, dx:dx + 32] for dy in range(5) for dx in range(5)]
        crops = windows + [w[:, ::-1] for w in windows]
        assert any(np.array_equal(out[i], c) for c in crops)
    again = training.augment_cifar10(tf.constant(x), tf.constant([3, 4], tf.int64)).numpy()
    np.testing.assert_array_equal(out, again)


def test_batch_norm_modes():
    """attack_training=True: the attack runs batch statistics and moves the moving averages
    (MadryLab CIFAR10); update_training=False: the update never touches them (DAA Fashion-MNIST)."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (4, 32, 32, 3)).astype(np.float32)
    y = rng.integers(0, 10, 4)
    model = build_madry_cifar10(TINY_RESNET)
    bn = next(layer for layer in model.layers
              if isinstance(layer, keras.layers.BatchNormalization))
    moved = {}
    for attack_training in (False, True):
        trainer = training.AdversarialTrainer(model, "pgd", eps=8.0, step_size=2.0, steps=2,
                                              clip_max=255.0, attack_training=attack_training)
        trainer.compile(keras.optimizers.SGD(0.0))
        before = bn.moving_mean.numpy().copy()
        tf.function(lambda a, b: trainer.perturb(a, b, tf.constant([1, 2], tf.int64)))(x, y)
        moved[attack_training] = np.abs(bn.moving_mean.numpy() - before).max()
    assert moved[False] == 0.0 and moved[True] > 0.0

    frozen = training.AdversarialTrainer(model, "pgd", eps=8.0, step_size=2.0, steps=1,
                                         clip_max=255.0, update_training=False)
    frozen.compile(keras.optimizers.SGD(0.01))
    before = [v.numpy().copy() for v in model.non_trainable_weights]
    gamma = bn.gamma.numpy().copy()
    frozen.fit(x, y, batch_size=4, verbose=0)
    for b, v in zip(before, model.non_trainable_weights):
        np.testing.assert_array_equal(b, v.numpy())
    assert not np.array_equal(gamma, bn.gamma.numpy())  # scale and shift still train


def _resume_case(case, shared_dir):
    if case == "mnist":
        x, y = data.load_mnist("train", shared_dir / "data" / "mnist", 200)
        return (x, y, build_madry_mnist, "madry_mnist",
                lambda: keras.optimizers.Adam(1e-3, epsilon=1e-8),
                dict(eps=0.3, step_size=0.1, steps=2), None, 16)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (40, 32, 32, 3)).astype(np.float32)
    y = rng.integers(0, 10, 40)
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay([2], [0.1, 0.01])
    return (x, y, lambda: build_madry_cifar10(TINY_RESNET), "madry_cifar10",
            lambda: training.TF1Momentum(schedule, 0.9),
            dict(eps=8.0, step_size=2.0, steps=2, clip_max=255.0, attack_training=True),
            training.augment_cifar10, 8)


@pytest.mark.parametrize("case", ["mnist", "cifar10"])
def test_resume_equals_uninterrupted(shared, tmp_path, case):
    """2k steps in one run == k steps, checkpoint, fresh process state, restore, k more steps."""
    x, y, build, layout, make_optimizer, settings, augment, batch = _resume_case(case, shared)
    k = 3
    keras.utils.set_random_seed(0)
    initial = build().get_weights()

    def run(model, start, stop):
        trainer = training.AdversarialTrainer(model, "pgd", seed=9, **settings)
        trainer.compile(make_optimizer())
        if start:
            assert cw.restore_checkpoint(model, layout, tmp_path, trainer.optimizer) == start
        trainer.fit(training.training_batches(x, y, batch, seed=2, start_step=start,
                                              stop_step=stop, augment=augment),
                    verbose=0, shuffle=False)
        return trainer

    whole = build()
    whole.set_weights(initial)
    run(whole, 0, 2 * k)
    first = build()
    first.set_weights(initial)
    trainer = run(first, 0, k)
    cw.save_checkpoint(first, layout, tmp_path, k, trainer.optimizer)
    resumed = build()
    run(resumed, k, 2 * k)
    for a, b in zip(whole.weights, resumed.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)


def test_keras_callbacks_and_serialization(tmp_path):
    x, y = blobs(32)
    trainer = training.AdversarialTrainer(mlp(), "pgd", eps=0.05, step_size=0.02, steps=2,
                                          fraction=0.5, seed=4)
    trainer.compile(keras.optimizers.Adam(0.01))
    path = tmp_path / "w.weights.h5"
    trainer.fit(x, y, batch_size=16, epochs=1, verbose=0,
                callbacks=[keras.callbacks.ModelCheckpoint(str(path), save_weights_only=True)])
    clone = training.AdversarialTrainer.from_config(trainer.get_config())
    assert (clone.attack, clone.fraction, clone.seed, clone.settings) == \
        (trainer.attack, 0.5, 4, trainer.settings)
    clone.load_weights(str(path))
    np.testing.assert_array_equal(clone.predict(x, verbose=0), trainer.predict(x, verbose=0))
    trainer.save(tmp_path / "t.keras")
    loaded = keras.models.load_model(tmp_path / "t.keras")
    assert isinstance(loaded, training.AdversarialTrainer) and loaded.settings == trainer.settings
    assert int(loaded.optimizer.iterations.numpy()) == 2
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), trainer.predict(x, verbose=0))


def test_invalid_settings():
    with pytest.raises(ValueError, match="fraction"):
        training.AdversarialTrainer(mlp(), "pgd", eps=0.1, step_size=0.1, steps=1, fraction=0)
    with pytest.raises(ValueError, match="untargeted"):
        training.AdversarialTrainer(mlp(), "pgd", eps=0.1, step_size=0.1, steps=1, targeted=True)
    with pytest.raises(ValueError, match="unknown attack"):
        training.AdversarialTrainer(mlp(), "nope", eps=0.1, step_size=0.1, steps=1)
    with pytest.raises(ValueError, match="batch_size"):
        training.training_batches(*blobs(8), 9, seed=0)


MIRRORED = textwrap.dedent("""
    import numpy as np, tensorflow as tf, keras
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from daa_tf import training
    rng = np.random.default_rng(0)
    x = rng.random((32, 20), dtype=np.float32)
    y = rng.integers(0, 2, 32)
    with tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]).scope():
        model = keras.Sequential([keras.Input((20,)), keras.layers.Dense(2)])
        trainer = training.AdversarialTrainer(model, "daa_blob", eps=0.1, step_size=0.05,
                                              steps=2, particles=4)
        trainer.compile(keras.optimizers.Adam(0.01))
    history = trainer.fit(training.training_batches(x, y, 16, seed=0, stop_step=4),
                          verbose=0, shuffle=False).history
    assert int(trainer.optimizer.iterations.numpy()) == 4, history
    assert np.isfinite(history["loss"][-1])
    print("OK", history)
""")


def test_mirrored_strategy_two_replicas():
    done = subprocess.run([sys.executable, "-c", MIRRORED], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0 and "OK" in done.stdout, done.stderr[-3000:]
