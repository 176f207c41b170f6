"""``daa_tf.callbacks.RobustAccuracy`` inside ``fit``: EarlyStopping, ModelCheckpoint, CSVLogger and
TensorBoard read its figure; its schedule; AdversarialTrainer under MirroredStrategy with a
streamed validation set."""
import csv

import keras
import pytest
import tensorflow as tf

import daa_tf
from daa_tf import callbacks, distribute, summaries
from daa_tf.training import AdversarialTrainer
from tests.test_stream import batched, toy_data, toy_model

SETTINGS = dict(eps=0.05, step_size=0.02, steps=3)


def frozen(model: keras.Model) -> keras.Model:
    """``model`` compiled with a zero learning rate: its robust accuracy stays the same."""
    model.compile(keras.optimizers.SGD(0.0),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def test_early_stopping_checkpoint_and_csv_read_the_robust_accuracy(tmp_path):
    model = frozen(toy_model())
    x, y = toy_data(40)
    expected = daa_tf.run(model, x[:20], y[:20], "pgd", verbose=0, **SETTINGS).accuracy
    assert 0.0 < expected < 1.0
    robust = callbacks.RobustAccuracy((x[:20], y[:20]), "pgd", **SETTINGS)
    history = model.fit(x, y, epochs=6, batch_size=10, verbose=0,
                        validation_data=(x[20:], y[20:]), callbacks=[
                            robust,
                            keras.callbacks.EarlyStopping("val_robust_accuracy", mode="max",
                                                          patience=1),
                            keras.callbacks.ModelCheckpoint(
                                str(tmp_path / "best.keras"), monitor="val_robust_accuracy",
                                mode="max", save_best_only=True),
                            keras.callbacks.CSVLogger(str(tmp_path / "log.csv"))])
    # a constant figure stops the run after patience + 1 epochs (it would run 6 without it)
    assert history.history["val_robust_accuracy"] == [expected, expected]
    assert robust.history == [(0, expected), (1, expected)]
    assert (tmp_path / "best.keras").exists()
    with open(tmp_path / "log.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [float(r["val_robust_accuracy"]) for r in rows] == [expected, expected]


@pytest.mark.parametrize("epochs,attacked", [(5, [0, 2, 4]), (4, [0, 2, 3])])
def test_every_attacks_the_first_every_nth_and_the_last_epoch(epochs, attacked):
    model = frozen(toy_model())
    x, y = toy_data(20)
    robust = callbacks.RobustAccuracy((x, y), "fgsm", every=2, name="robust", eps=0.05)
    history = model.fit(x, y, epochs=epochs, batch_size=10, verbose=0, callbacks=[robust])
    assert [epoch for epoch, _ in robust.history] == attacked
    assert len(history.history["robust"]) == len(attacked)  # only where attacked


def test_adversarial_trainer_under_mirrored_strategy_with_a_streamed_set():
    strategy = distribute.make_strategy("mirrored")  # the CPU device of this process
    x, y = toy_data(30)
    with strategy.scope():
        classifier = toy_model()
        trainer = AdversarialTrainer(classifier, "pgd", **SETTINGS)
        trainer.compile(keras.optimizers.SGD(0.05))
    assert callbacks.fit_strategy(trainer) is strategy
    robust = callbacks.RobustAccuracy(batched(x[:20], y[:20]), "pgd", **SETTINGS)
    trainer.fit(x, y, epochs=2, batch_size=10, verbose=0, callbacks=[robust])
    assert [epoch for epoch, _ in robust.history] == [0, 1]
    # the figure of the last epoch is the attack on the trained classifier, as daa_tf.run sees it
    expected = daa_tf.run(classifier, x[:20], y[:20], "pgd", verbose=0, **SETTINGS).accuracy
    assert robust.history[-1][1] == expected
    assert trainer.history.history["val_robust_accuracy"][-1] == expected


def test_keras_tensorboard_writes_the_figure(tmp_path):
    pytest.importorskip("tensorboard", reason="Keras' TensorBoard callback needs tensorboard")
    model = frozen(toy_model())
    x, y = toy_data(20)
    model.fit(x, y, epochs=2, batch_size=10, verbose=0, callbacks=[
        callbacks.RobustAccuracy((x, y), "pgd", **SETTINGS),
        keras.callbacks.TensorBoard(str(tmp_path / "tb"))])
    scalars = summaries.read_scalars(str(tmp_path / "tb"))
    expected = daa_tf.run(model, x, y, "pgd", verbose=0, **SETTINGS).accuracy
    assert scalars["epoch_robust_accuracy"] == {0: pytest.approx(expected),
                                                1: pytest.approx(expected)}


def test_bad_arguments_are_refused_at_once():
    x, y = toy_data(4)
    with pytest.raises(ValueError, match="every"):
        callbacks.RobustAccuracy((x, y), every=0, **SETTINGS)
    with pytest.raises(ValueError, match="needs step_size"):
        callbacks.RobustAccuracy((x, y), "pgd", eps=0.1, steps=3)
    with pytest.raises(ValueError, match="data must be"):
        callbacks.RobustAccuracy(x, "pgd", **SETTINGS)
    with pytest.raises(ValueError, match="batch it"):
        callbacks.RobustAccuracy(tf.data.Dataset.from_tensor_slices((x, y)), **SETTINGS)
