"""The generic runner ``python -m challenges.attack``: every model kind and data kind end to end
(subprocesses on tens of images), the files it writes, the refusals of settings and paths
(subprocesses, before any model is loaded); in process, the resolution of ``--model``/``--data``
(challenges.model_source, challenges.data_source) and the refusals of model outputs
(probabilities, too few classes). Its resume after SIGTERM is tested with the challenge runners'
(tests/test_challenges_runner.py)."""
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict

import numpy as np
import pytest

from challenges import runner
from challenges.resolve import SetupError
from tests.helpers import ENV, GENERIC_IMAGES as NUM_IMAGES, REPO_ROOT, TIMEOUT, run_module
from tests.helpers import generic_net as net


def run_attack(options: Dict[str, object], cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess:
    """``python -m challenges.attack`` with ``options``; output captured as text."""
    return run_module("challenges.attack", options, cwd=cwd)


@pytest.fixture(scope="module")
def files(generic_files) -> Dict[str, Path]:
    """The runner's input files (tests.helpers.write_generic_files)."""
    return generic_files


def npz_images(files: Dict[str, Path], scale: float = 1 / 255) -> np.ndarray:
    """The .npz's images as float32, times ``scale``."""
    with np.load(files["data"]) as data:
        return data["x"].astype(np.float32) * np.float32(scale)


def assert_in_ball_and_box(x_adv: np.ndarray, x: np.ndarray, eps: float, lo: float, hi: float):
    assert x_adv.dtype == np.float32 and x_adv.shape == x.shape
    assert np.all(np.isfinite(x_adv))
    assert x_adv.min() >= lo and x_adv.max() <= hi
    assert 0 < np.abs(x_adv - x).max() <= eps + 1e-5


@pytest.fixture(scope="module")
def baseline(generic_baseline):
    """One uninterrupted DAA-BLOB run of the .keras model on the .npz: ``(process, output)``."""
    return generic_baseline


# --------------------------------------------------------------------------- model kinds


def test_keras_file_on_an_npz_writes_a_checked_file_and_its_summary(baseline, files):
    done, output = baseline
    assert_in_ball_and_box(np.load(output), npz_images(files), 0.1, 0, 1)
    assert not Path(runner.state_path(str(output))).exists()
    summary = json.loads(Path(f"{output}.json").read_text())
    settings = summary["settings"]
    assert (settings["attack"], settings["eps"], settings["steps"], settings["restarts"],
            settings["particles"], settings["clip_min"], settings["clip_max"]) == (
        "daa_blob", 0.1, 4, 40, 16, 0.0, 1.0)
    assert summary["inferred"] == {"clip_min": "flag", "clip_max": "flag", "epsilon": "flag"}
    assert summary["model"]["num_classes"] == 10 and "Keras file" in summary["model"]["description"]
    assert summary["data"]["num_examples"] == NUM_IMAGES
    assert "uint8 pixels / 255" in summary["data"]["description"]
    assert 0 <= summary["adversarial_accuracy"] <= summary["clean_accuracy"] <= 1
    assert len(summary["restart_accuracies"]) == 40 and summary["seconds"] > 0
    assert summary["output"]["shape"] == [NUM_IMAGES, 28, 28, 1]
    assert summary["output"]["sha256"] == hashlib.sha256(output.read_bytes()).hexdigest()
    assert summary["command"].startswith("python -m challenges.attack --model=")
    assert "gradients_per_image" in summary
    for expected in ("clean accuracy", "restart 40/40: accuracy", "final accuracy", "summary:"):
        assert expected in done.stderr, expected


def test_saved_model_on_the_mnist_idx_folder_infers_the_box(files, shared, tmp_path):
    from daa_tf.data import load_mnist

    output = tmp_path / "adv.npy"
    done = run_attack({"model": files["saved_model"], "data": shared / "data/mnist",
                       "epsilon": 0.1, "attack": "pgd", "steps": 3, "num_examples": 30,
                       "verbose": 0, "output": output})
    assert done.returncode == 0, done.stderr
    assert "serving_default" in done.stderr and "reshaped to the model's input" in done.stderr
    assert "box [0, 1] (the data folder, read by the mnist loader)" in done.stderr
    assert "step size 0.0833333" in done.stderr  # generic: 2.5 * eps / steps
    x, _ = load_mnist(data_dir=shared / "data/mnist", num_examples=30)
    assert_in_ball_and_box(np.load(output), x, 0.1, 0, 1)


def test_module_function_from_the_working_directory(files, tmp_path):
    (tmp_path / "user_models.py").write_text(
        "import keras\n\n\ndef build():\n    keras.utils.set_random_seed(2)\n"
        "    return keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),\n"
        "                             keras.layers.Dense(10)])\n")
    done = run_attack({"model": "user_models:build", "data": files["data"], "clip_min": 0,
                       "clip_max": 255, "epsilon": 8, "attack": "fgsm", "verbose": 0,
                       "output": "adv.npy"}, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "user_models:build()" in done.stderr and "uint8 pixels as they are" in done.stderr
    assert "eps 8, step size 8, 1 steps" in done.stderr
    assert_in_ball_and_box(np.load(tmp_path / "adv.npy"), npz_images(files, 1), 8, 0, 255)


def test_an_adapter_takes_its_challenges_bound_and_box(shared, tmp_path):
    from daa_tf.data import load_mnist

    output = tmp_path / "adv.npy"
    done = run_attack({"model": f"madry_mnist:{shared / 'models/mnist/adv_trained'}",
                       "data": shared / "data/mnist", "attack": "pgd", "steps": 3,
                       "restarts": 1, "num_examples": 20, "verbose": 0, "output": output})
    assert done.returncode == 0, done.stderr
    assert "epsilon 0.3 (the mnist challenge's bound)" in done.stderr
    assert "box [0, 1] (the mnist challenge, whose model the adapter loads)" in done.stderr
    assert "step size 0.01" in done.stderr  # the mnist challenge's default
    x, _ = load_mnist(data_dir=shared / "data/mnist", num_examples=20)
    assert_in_ball_and_box(np.load(output), x, 0.3, 0, 1)


def test_the_cascade_runs_on_a_users_model(shared, tmp_path):
    """``--attack=strongest`` through the generic runner: its budget in the summary."""
    from daa_tf.data import load_mnist

    output = tmp_path / "adv.npy"
    done = run_attack({"model": f"madry_mnist:{shared / 'models/mnist/adv_trained'}",
                       "data": shared / "data/mnist", "attack": "strongest", "steps": 100,
                       "restarts": 1, "num_examples": 20, "verbose": 0, "output": output})
    assert done.returncode == 0, done.stderr
    assert "strongest cascade, eps 0.3, budget 100 gradients per image" in done.stderr
    summary = json.loads(Path(f"{output}.json").read_text())
    assert summary["settings"]["budget"] == 100 and summary["gradients_per_image"] == 100
    assert len(summary["restart_accuracies"]) == 2  # two stages of 50 gradients
    x, _ = load_mnist(data_dir=shared / "data/mnist", num_examples=20)
    assert_in_ball_and_box(np.load(output), x, 0.3, 0, 1)


def test_autoattack_runs_on_a_users_model_with_its_own_settings(shared, tmp_path):
    """``--attack=autoattack`` through the generic runner: no budget, the standard version, one
    restart, four stages, in the summary (the natural model: APGD-CE fools every image)."""
    output = tmp_path / "adv.npy"
    done = run_attack({"model": f"madry_mnist:{shared / 'models/mnist/natural'}",
                       "data": shared / "data/mnist", "attack": "autoattack",
                       "num_examples": 20, "verbose": 0, "output": output})
    assert done.returncode == 0, done.stderr
    summary = json.loads(Path(f"{output}.json").read_text())
    settings = summary["settings"]
    assert (settings["budget"], settings["version"], settings["restarts"]) == (None, "standard", 1)
    assert "version standard" in done.stderr
    assert summary["gradients_per_image"] == 100 + 900 + 900  # APGD-CE, APGD-T, FAB-T
    assert summary["queries_per_image"] == 5000 and len(summary["restart_accuracies"]) == 4
    assert summary["adversarial_accuracy"] == summary["restart_accuracies"][-1] < 0.5
    from daa_tf.data import load_mnist

    x, _ = load_mnist(data_dir=shared / "data/mnist", num_examples=20)
    assert_in_ball_and_box(np.load(output), x, 0.3, 0, 1)


def test_tfds_data_when_prepared_locally(shared, tmp_path):
    data_dir = Path(os.environ.get("TFDS_DATA_DIR", Path.home() / "tensorflow_datasets"))
    if not (data_dir / "mnist").is_dir():
        pytest.skip(f"no prepared tensorflow-datasets mnist in {data_dir} (offline machine)")
    output = tmp_path / "adv.npy"
    done = run_attack({"model": f"madry_mnist:{shared / 'models/mnist/adv_trained'}",
                       "data": "tfds:mnist:test", "attack": "pgd", "steps": 2, "restarts": 1,
                       "num_examples": 10, "verbose": 0, "output": output})
    assert done.returncode == 0, done.stderr
    assert "uint8 pixels / 255" in done.stderr and "reshaped" in done.stderr
    x_adv = np.load(output)
    assert x_adv.shape == (10, 28, 28, 1) and 0 <= x_adv.min() and x_adv.max() <= 1


# ---------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("options, message", [
    ({"epsilon": None}, "--epsilon is required"),
    ({"clip_min": None, "clip_max": None}, "--clip_min and --clip_max are required"),
    ({"clip_min": None}, "--clip_min is required"),
    ({"model": "missing.keras"}, "--model=missing.keras: no such file or folder"),
    ({"data": "missing.npz"}, "--data=missing.npz: no such file or folder"),
    ({"data": "tfds:"}, "name the data set"),
    ({"model": None}, "Flag --model must have a value"),
], ids=["epsilon", "box", "clip_min", "model file", "data file", "tfds name", "no model"])
def test_setup_refusals(files, tmp_path, options, message):
    given = {"model": files["logits"], "data": files["data"], "clip_min": 0, "clip_max": 1,
             "epsilon": 0.1, "output": tmp_path / "adv.npy", **options}
    done = run_attack({k: v for k, v in given.items() if v is not None})
    assert done.returncode == 1 and message in done.stderr, done.stderr
    assert "clean accuracy" not in done.stderr  # refused before loading the model
    assert not (tmp_path / "adv.npy").exists()


def test_help_states_the_generic_defaults():
    done = subprocess.run([sys.executable, "-m", "challenges.attack", "--helpfull"], cwd=REPO_ROOT,
                          env=ENV, capture_output=True, text=True, timeout=60)
    for expected in ("--model", "--data", "--clip_min", "2.5 * epsilon / steps", "--resume",
                     "--attack", "--distribute"):
        assert expected in done.stdout, expected


# ------------------------------------------------------------------- resolution, in process


def test_model_spec_resolution(files, shared, tmp_path):
    from challenges import model_source

    adapter = model_source.parse(f"madry_mnist:{shared / 'models/mnist/adv_trained'}")
    assert (adapter.kind, adapter.name) == ("adapter", "madry_mnist")
    assert model_source.adapter_challenge(adapter).name == "mnist"
    wong = model_source.parse(f"wong_kolter_mnist:{shared / 'models/wong_kolter/mnist.npz'}")
    assert model_source.adapter_challenge(wong) is None
    assert model_source.parse(str(files["logits"])).kind == "keras"
    assert model_source.parse(str(files["saved_model"])).kind == "saved_model"
    assert model_source.parse("my.models:build").kind == "function"
    with pytest.raises(SetupError, match="unknown adapter 'wong_kolter'.*wong_kolter_mnist"):
        model_source.parse(f"wong_kolter:{shared / 'models/wong_kolter/mnist.npz'}")
    with pytest.raises(SetupError, match="no file or folder"):
        model_source.parse(f"madry_mnist:{tmp_path / 'missing'}")
    with pytest.raises(SetupError, match="without saved_model.pb"):
        model_source.parse(str(tmp_path))


SAVED_MODEL_FALLBACK = """
import sys
import numpy as np
import tensorflow as tf
from challenges import model_source
from challenges.resolve import SetupError

class TwoHeads(tf.Module):
    def __init__(self):
        self.w = tf.Variable(tf.reshape(tf.range(12, dtype=tf.float32), [4, 3]))

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32)])
    def __call__(self, x):
        return x @ self.w

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32)])
    def heads(self, x):
        return {"a": x @ self.w, "b": -(x @ self.w)}

folder = sys.argv[1]
module = TwoHeads()
tf.saved_model.save(module, folder + "/two", signatures={"serving_default": module.heads})
fn, how, shape = model_source.saved_model_logits(tf.saved_model.load(folder + "/two"), "two")
assert how == "__call__" and shape == (4,), (how, shape)
x = tf.ones([2, 4])
np.testing.assert_allclose(fn(x).numpy(), (x @ module.w).numpy())
bare = tf.Module()
bare.v = tf.Variable(1.0)
tf.saved_model.save(bare, folder + "/bare")
try:
    model_source.saved_model_logits(tf.saved_model.load(folder + "/bare"), "bare")
except SetupError as err:
    assert "no logits function" in str(err), err
else:
    raise AssertionError("a SavedModel without logits function was accepted")
print("ok")
"""


def test_saved_model_logits_signature_then_call(tmp_path):
    """A two-output serving_default falls back to ``__call__``; neither is refused. In a process
    of its own: TensorFlow can mix up restored functions of several SavedModels saved and loaded
    in one process (seen in the full suite, never in a CLI run, which loads one model)."""
    done = subprocess.run([sys.executable, "-c", SAVED_MODEL_FALLBACK, str(tmp_path)],
                          cwd=REPO_ROOT, env=ENV, capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr


def test_probabilities_wrong_class_counts_and_layouts_are_refused(files):
    import keras

    from challenges import attack, model_source

    x = npz_images(files)[:8]
    y = np.arange(8)
    with pytest.raises(SetupError, match="5 outputs .* wrong number of classes"):
        attack.check_model(keras.saving.load_model(files["five"]), x, y, "five")
    with pytest.raises(SetupError, match="probabilities"):
        attack.check_model(keras.saving.load_model(files["probabilities"]), x, y, "softmax")
    loaded = model_source.LoadedModel(net(shape=(3, 32, 32)), "nchw", (3, 32, 32))
    with pytest.raises(SetupError, match=r"takes images of shape \[3, 32, 32\]"):
        model_source.fit_input(loaded, (32, 32, 3))


def test_data_specs(shared, monkeypatch):
    from challenges import data_source
    from daa_tf import data

    folder = data_source.read_folder(data_source.parse(str(shared / "data/cifar10")), 5)
    assert folder.challenge.name == "cifar10" and folder.x.shape == (5, 32, 32, 3)
    assert folder.x.max() > 1  # the CIFAR-10 loader's 0..255 scale
    asked = []

    def fake_tfds(name, split, num_examples=None):
        asked.append((name, split, num_examples))
        return np.full((10, 2, 2, 1), 255, np.uint8), np.arange(10)

    monkeypatch.setattr(data.tfds_sets, "load_tfds", fake_tfds)
    unit = data_source.load(data_source.parse("tfds:mnist"), 1.0, 4)
    assert asked[-1] == ("mnist", "test", 4) and unit.x.shape == (4, 2, 2, 1)
    assert unit.x.dtype == np.float32 and unit.x.max() == 1.0 and unit.y.dtype == np.int64
    kept = data_source.load(data_source.parse("tfds:mnist:train[:10]"), 255.0, None)
    assert asked[-1] == ("mnist", "train[:10]", None) and kept.x.max() == 255.0

    def offline(name, split, num_examples=None):
        raise ConnectionError("no network")

    monkeypatch.setattr(data.tfds_sets, "load_tfds", offline)
    with pytest.raises(SetupError, match="Offline"):
        data_source.load(data_source.parse("tfds:mnist"), 1.0, None)
