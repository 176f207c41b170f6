"""``.keras`` files using daa_tf's layers (issue 22): they load with ``keras.saving.load_model``
after only ``import daa_tf`` (whichever of daa_tf and Keras is imported first), with
:func:`daa_tf.models.load_keras_file`, and in the generic runner; ``import daa_tf`` stays free of
TensorFlow; a truncated file is named as such."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
       "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT),
                                                   os.environ.get("PYTHONPATH")]))}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The MadryLab MNIST net (its first layer an InputConv2D) saved as ``madry.keras`` with its
    logits on 8 images; a truncated copy; 8 MNIST-like images in an ``.npz``."""
    from daa_tf.models.madry_mnist import build_madry_mnist

    folder = tmp_path_factory.mktemp("keras_files")
    model = build_madry_mnist()
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (8, 784), np.uint8)
    np.savez(folder / "data.npz", x=x, y=rng.integers(0, 10, 8))
    np.save(folder / "logits.npy", model(x.astype(np.float32) / 255).numpy())
    model.save(folder / "madry.keras")
    data = (folder / "madry.keras").read_bytes()
    (folder / "truncated.keras").write_bytes(data[: len(data) // 2])
    return folder


def python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=ENV, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize("imports", ["import daa_tf; import keras",
                                     "import keras; import daa_tf",
                                     "import daa_tf; import tensorflow; import keras"])
def test_keras_load_model_after_import_daa_tf(files, imports):
    done = python(f"""{imports}
import numpy as np
model = keras.saving.load_model("madry.keras")
x = np.load("data.npz")["x"].astype(np.float32) / 255
np.testing.assert_allclose(model(x).numpy(), np.load("logits.npy"), rtol=0, atol=1e-5)
print(type(model.get_layer("conv1")).__module__, type(model.get_layer("conv1")).__name__)
""", files)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["daa_tf.models.layers", "InputConv2D"]


def test_import_daa_tf_stays_light(tmp_path):
    done = python("import sys, daa_tf, daa_tf.models, daa_tf.catalogue\n"
                  "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))",
                  tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_load_keras_file(files):
    from daa_tf.models import load_keras_file
    from daa_tf.models.layers import InputConv2D

    model = load_keras_file(files / "madry.keras")
    assert isinstance(model.get_layer("conv1"), InputConv2D)


def test_a_truncated_keras_file_is_named_truncated(files):
    from daa_tf.models import load_keras_file

    with pytest.raises(ValueError, match=r"truncated.keras is not a complete \.keras file .*"
                                         r"truncated or corrupt.*save the model again"):
        load_keras_file(files / "truncated.keras")
    with pytest.raises(FileNotFoundError, match="no such Keras model file"):
        load_keras_file(files / "absent.keras")


def attack(files: Path, model: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "challenges.attack", f"--model={model}",
                           f"--data={files / 'data.npz'}", "--epsilon=0.1", "--clip_min=0",
                           "--clip_max=1", "--attack=pgd", "--steps=2", "--verbose=0",
                           f"--output={files / 'out' / 'attack.npy'}"], cwd=files, env=ENV,
                          capture_output=True, text=True, timeout=300)


def test_the_generic_runner_attacks_a_keras_file_with_our_layers(files):
    done = attack(files, str(files / "madry.keras"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert np.load(files / "out" / "attack.npy").shape == (8, 784)


def test_the_generic_runner_names_a_truncated_keras_file(files):
    done = attack(files, str(files / "truncated.keras"))
    assert done.returncode == 1
    assert "truncated.keras is not a complete .keras file" in done.stderr
    assert "File not found" not in done.stderr
