"""TensorBoard: ``daa_tf.summaries`` event files read back (scalars and images), and
``--tensorboard_dir`` on the generic runner, the trainer and the ImageNet runner."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from daa_tf import summaries

REPO_ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
       "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT),
                                                   os.environ.get("PYTHONPATH")]))}
TIMEOUT = 300


def events(logdir: Path):
    """Every event of the event files under ``logdir``, read with TensorFlow's own iterator."""
    out = []
    for folder, _, names in os.walk(logdir):
        for name in sorted(names):
            if name.startswith("events.out.tfevents."):
                out += list(tf.compat.v1.train.summary_iterator(os.path.join(folder, name)))
    return out


def images(logdir: Path):
    """``{tag: decoded images [k, H, W, C] uint8}`` of the image summaries under ``logdir``."""
    out = {}
    for event in events(logdir):
        for value in event.summary.value:
            if value.metadata.plugin_data.plugin_name == "images":
                parts = tf.make_ndarray(value.tensor)
                width, height = int(parts[0]), int(parts[1])
                decoded = np.stack([tf.io.decode_png(p).numpy() for p in parts[2:]])
                assert decoded.shape[1:3] == (height, width)
                out[value.tag] = decoded
    return out


class _Result:
    accuracy, gradients_per_image, gradients_mean = 0.25, 20, 12.5
    queries_per_image, queries_mean = 0, 0.0
    restart_accuracies = [0.5, 0.25]


class _SquareResult(_Result):
    gradients_per_image, gradients_mean = 0, 0.0
    queries_per_image, queries_mean = 40, 17.5


def test_query_figures_only_for_query_attacks(tmp_path):
    """Square's budget and spending in queries are written next to the gradient figures (0);
    a gradient attack's run writes no query tags."""
    for name, result in (("grad", _Result()), ("square", _SquareResult())):
        board = summaries.RunSummaries(str(tmp_path / name))
        board.result(result)
        board.close()
    grad = summaries.read_scalars(str(tmp_path / "grad"))
    square = summaries.read_scalars(str(tmp_path / "square"))
    assert "attack/query_budget_per_image" not in grad
    assert square["attack/query_budget_per_image"] == {2: 40.0}
    assert square["attack/queries_per_image"] == {2: 17.5}
    assert square["attack/budget_per_image"] == {2: 0.0}


def test_run_summaries_are_read_back(tmp_path):
    board = summaries.RunSummaries(str(tmp_path))
    board.on_restart(0, 0.5, 1.5)
    board.on_restart(1, 0.25, 2.0)
    x = np.full((5, 6, 7), 0.5, np.float32)  # [N, H, W]: a channel is added
    x_adv = x.copy()
    x_adv[:, 0, 0] += 0.1
    board.result(_Result(), x, x_adv, clip_min=0.0, clip_max=1.0, eps=0.1)
    board.close()
    scalars = summaries.read_scalars(str(tmp_path))
    assert scalars["attack/accuracy"] == {1: 0.5, 2: 0.25}
    assert scalars["attack/restart_seconds"] == {1: 1.5, 2: 2.0}
    assert scalars["attack/final_accuracy"] == {2: 0.25}
    assert scalars["attack/budget_per_image"] == {2: 20.0}
    assert scalars["attack/spent_per_image"] == {2: 12.5}
    assert set(scalars["attack/elapsed_seconds"]) == {1, 2}
    pictures = images(tmp_path)
    assert sorted(pictures) == ["attack/adversarial", "attack/clean", "attack/perturbation"]
    assert pictures["attack/clean"].shape == (3, 6, 7, 1)  # max_images of the 5
    assert np.all(pictures["attack/clean"] == 128)
    perturbation = pictures["attack/perturbation"][:, :, :, 0]
    assert np.all(perturbation[:, 0, 0] == 255) and np.all(perturbation[:, 1:, 1:] == 128)


def test_non_images_write_no_image_summary(tmp_path):
    board = summaries.RunSummaries(str(tmp_path))
    assert not board.images(1, np.zeros((4, 10)), np.zeros((4, 10)), 0.0, 1.0)
    assert summaries.as_images(np.zeros((2, 784))).shape == (2, 28, 28, 1)  # MNIST's flat rows
    assert not board.images(1, np.zeros((4, 4, 4, 2)), np.zeros((4, 4, 4, 2)), 0.0, 1.0)
    board.close()
    assert images(tmp_path) == {}


def test_the_generic_runner_writes_restarts_budget_and_images(tmp_path):
    import keras

    keras.utils.set_random_seed(1)
    inputs = keras.Input((28, 28, 1))
    hidden = keras.layers.Dense(16, activation="relu")(keras.layers.Flatten()(inputs))
    keras.Model(inputs, keras.layers.Dense(10)(hidden)).save(tmp_path / "net.keras")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "data.npz", x=rng.integers(0, 256, (32, 28, 28, 1), np.uint8),
             y=rng.integers(0, 10, 32))
    board, output = tmp_path / "tb", tmp_path / "adv.npy"
    cmd = [sys.executable, "-m", "challenges.attack", f"--model={tmp_path / 'net.keras'}",
           f"--data={tmp_path / 'data.npz'}", "--clip_min=0", "--clip_max=1",
           "--epsilon=0.05", "--attack=pgd", "--steps=3", "--step_size=0.02", "--restarts=2",
           "--verbose=0", f"--output={output}", f"--tensorboard_dir={board}"]
    out = subprocess.run(cmd, cwd=REPO_ROOT, env=ENV, capture_output=True, text=True,
                         timeout=TIMEOUT)
    assert out.returncode == 0, out.stderr[-3000:]
    with open(str(output) + ".json") as fh:
        summary = json.load(fh)
    scalars = summaries.read_scalars(str(board))
    assert scalars["attack/accuracy"] == {
        i + 1: pytest.approx(a) for i, a in enumerate(summary["restart_accuracies"])}
    assert scalars["attack/final_accuracy"] == {2: pytest.approx(summary["adversarial_accuracy"])}
    assert scalars["attack/budget_per_image"] == {2: 6.0}
    assert 0 < scalars["attack/spent_per_image"][2] <= 6.0
    pictures = images(board)
    assert pictures["attack/adversarial"].shape == (3, 28, 28, 1)
    x_adv = np.load(output)[:3]
    np.testing.assert_array_equal(pictures["attack/adversarial"][..., 0],
                                  np.round(np.clip(x_adv[..., 0], 0, 1) * 255).astype(np.uint8))


def test_the_trainer_writes_its_progress_and_images(shared, tmp_path):
    board = tmp_path / "tb"
    cmd = [sys.executable, "-m", "challenges.train", "--challenge=mnist",
           f"--model_dir={tmp_path / 'run'}", f"--data_dir={shared / 'data' / 'mnist'}",
           "--num_examples=40", "--batch_size=10", "--steps=2", "--train_steps=2",
           "--output_steps=1", "--checkpoint_steps=2", f"--tensorboard_dir={board}"]
    out = subprocess.run(cmd, cwd=REPO_ROOT, env=ENV, capture_output=True, text=True,
                         timeout=TIMEOUT)
    assert out.returncode == 0, out.stderr[-3000:]
    scalars = summaries.read_scalars(str(board))
    for name in ("adv_accuracy", "nat_accuracy", "loss", "examples_per_second"):
        assert set(scalars[f"train/{name}"]) == {1, 2}, name
    assert all(0.0 <= v <= 1.0 for v in scalars["train/adv_accuracy"].values())
    assert images(board)["train/perturbation"].shape == (3, 28, 28, 1)


@pytest.mark.parametrize("module", ["challenges.mnist", "challenges.imagenet",
                                    "challenges.attack", "challenges.train"])
def test_every_command_takes_the_flag(module):
    out = subprocess.run([sys.executable, "-m", module, "--helpfull"], cwd=REPO_ROOT, env=ENV,
                         capture_output=True, text=True, timeout=TIMEOUT)
    assert "--tensorboard_dir" in out.stdout, out.stderr[-2000:]
