"""The releases' training recipes (daa_tf.recipes): the nets' initialisation, the optimizers and
learning rates, the batch-norm and augmentation choices, the trainer they build."""
import subprocess
import sys

import keras
import numpy as np
import pytest

from daa_tf import recipes, training
from tests.helpers import REPO_ROOT

TINY_FILTERS = (4, 4, 8, 16)


def test_the_table_is_the_releases_config():
    table = {name: (r.layout, r.train_steps, r.batch_size, r.epsilon, r.steps, r.step_size,
                    r.checkpoint_steps, r.update_batch_norm, r.augment)
             for name, r in recipes.RECIPES.items()}
    assert table == {
        "mnist": ("madry_mnist", 100000, 50, 0.3, 40, 0.01, 300, True, False),
        "cifar10": ("madry_cifar10", 80000, 128, 8.0, 10, 2.0, 10000, True, True),
        "fashion_mnist": ("daa_fashion_mnist", 100000, 50, 0.2, 30, 0.01, 300, False, False)}
    with pytest.raises(ValueError, match="no training recipe for 'imagenet'"):
        recipes.get_recipe("imagenet")


def test_importing_the_recipes_imports_no_tensorflow():
    code = ("import sys; from daa_tf import recipes; assert recipes.RECIPES; "
            "print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False"]


def weighted(model: keras.Model) -> list:
    """The model's convolution and dense layers, in order."""
    return [layer for layer in model.layers
            if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense))]


def test_mnist_initialisation_is_madrylabs_and_seeded():
    dense = weighted(recipes.build_classifier("mnist", seed=3))
    assert len(dense) == 4
    for layer in dense:
        kernel = layer.kernel.numpy()
        np.testing.assert_array_equal(layer.bias.numpy(), np.full(layer.bias.shape, 0.1,
                                                                  np.float32))
        assert np.abs(kernel).max() <= 0.2 + 1e-6  # truncated at two standard deviations
        if kernel.size > 10000:
            assert abs(kernel.std() - 0.088) < 0.005  # sd of N(0, 0.1) truncated at 2 sd
    again = weighted(recipes.build_classifier("mnist", seed=3))
    other = weighted(recipes.build_classifier("mnist", seed=4))
    for layer, same, different in zip(dense, again, other):
        np.testing.assert_array_equal(layer.kernel.numpy(), same.kernel.numpy())
        assert not np.array_equal(layer.kernel.numpy(), different.kernel.numpy())


def test_cifar10_net_has_the_weight_decay_batch_norm_decay_and_he_init():
    model = recipes.build_classifier("cifar10", seed=0, resnet_filters=TINY_FILTERS)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    norms = [layer for layer in model.layers
             if isinstance(layer, keras.layers.BatchNormalization)]
    (logit,) = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert convs[0].kernel.shape[-1] == TINY_FILTERS[0] and norms
    assert all(layer.momentum == 0.9 for layer in norms)
    for layer in convs + [logit]:
        assert layer.kernel.regularizer.l2 == pytest.approx(recipes.CIFAR10_WEIGHT_DECAY / 2)
    limit = np.sqrt(3.0 / logit.kernel.shape[0])
    assert np.abs(logit.kernel.numpy()).max() <= limit
    np.testing.assert_array_equal(logit.bias.numpy(), 0)
    widest = max(convs, key=lambda layer: layer.kernel.shape[-1])
    k, _, _, out = widest.kernel.shape
    assert abs(widest.kernel.numpy().std() - np.sqrt(2.0 / (k * k * out))) < 0.2 * np.sqrt(
        2.0 / (k * k * out))


def test_optimizers_and_the_cifar10_learning_rate_schedule():
    adam = recipes.make_optimizer("mnist")
    assert isinstance(adam, keras.optimizers.Adam)
    assert adam.epsilon == 1e-8 and float(adam.learning_rate) == pytest.approx(1e-4)
    assert recipes.tf1_adam(3e-3).epsilon == 1e-8
    momentum = recipes.make_optimizer("cifar10")
    assert isinstance(momentum, training.TF1Momentum)
    assert momentum.momentum == 0.9
    schedule = keras.optimizers.schedules.deserialize(momentum.get_config()["learning_rate"])
    rates = [float(schedule(step)) for step in (0, 40000, 40001, 60000, 60001, 79999)]
    assert rates == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001, 0.001])  # TF1's boundaries


def test_the_trainer_takes_the_recipes_batch_norm_mode_and_the_attack():
    settings = dict(eps=0.2, step_size=0.01, steps=2, random_start=True, clip_min=0.0,
                    clip_max=1.0)
    classifier, trainer = recipes.make_trainer("fashion_mnist", "pgd", settings, seed=1,
                                               fraction=0.5)
    assert isinstance(trainer, training.AdversarialTrainer) and trainer.classifier is classifier
    assert trainer.update_training is False and trainer.fraction == 0.5
    assert trainer.settings.eps == 0.2 and trainer.settings.steps == 2
    assert isinstance(trainer.optimizer, keras.optimizers.Adam)
    _, mnist = recipes.make_trainer("mnist", "pgd", dict(settings, eps=0.3), seed=1)
    assert mnist.update_training is True


def test_training_batches_augment_cifar10_only():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (8, 32, 32, 3)).astype(np.float32)
    y = np.arange(8)
    plain = next(iter(training.training_batches(x, y, 4, seed=0)))[0].numpy()
    mnist = next(iter(recipes.training_batches("mnist", x, y, 4, seed=0)))[0].numpy()
    cifar = next(iter(recipes.training_batches("cifar10", x, y, 4, seed=0)))[0].numpy()
    np.testing.assert_array_equal(mnist, plain)
    expected = next(iter(training.training_batches(
        x, y, 4, seed=0, augment=training.augment_cifar10)))[0].numpy()
    np.testing.assert_array_equal(cifar, expected)
    assert not np.array_equal(cifar, plain)
