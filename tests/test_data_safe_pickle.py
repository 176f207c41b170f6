"""CIFAR-10 python batches are read without running code (issue 22): a planted payload never runs,
whichever command reads the folder, and the error names the file; real batches (as Python 2 and
NumPy 1 wrote them, and as Python 3 writes them at every protocol) still load."""
import os
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from daa_tf import data

REPO_ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
       "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT),
                                                   os.environ.get("PYTHONPATH")]))}


class Payload:
    """Unpickled by ``pickle.load``, it runs a shell command creating ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def plant(path: Path, marker: Path, protocol: int = 2, where: str = "data") -> None:
    """A CIFAR-looking batch at ``path`` whose ``where`` entry is the payload."""
    batch = {b"batch_label": b"testing batch 1 of 1", b"labels": [3, 8],
             b"data": np.zeros((2, 3072), np.uint8), b"filenames": [b"a.png", b"b.png"]}
    if where == "labels":
        batch[b"labels"] = [3, Payload(marker)]
    else:
        batch[b"data"] = Payload(marker)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(batch, protocol=protocol))


def python2_batch(images: np.ndarray, labels) -> bytes:
    """A CIFAR-10 python batch byte for byte as Python 2's cPickle (protocol 2) and NumPy 1 wrote
    the released ones: py2 strings, ``numpy.core.multiarray._reconstruct``, ``numpy.dtype``."""
    def string(b: bytes) -> bytes:
        if len(b) < 256:
            return b"U" + bytes([len(b)]) + b
        return b"T" + struct.pack("<I", len(b)) + b

    rows = images.transpose(0, 3, 1, 2).reshape(len(images), 3072)
    out = b"\x80\x02}(" + string(b"data")
    out += b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85" + string(b"b")
    out += b"\x87R(K\x01M" + struct.pack("<H", rows.shape[0]) + b"M" + struct.pack("<H", 3072)
    out += b"\x86cnumpy\ndtype\n" + string(b"u1") + b"K\x00K\x01\x87R(K\x03" + string(b"|")
    out += b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89" + string(rows.tobytes()) + b"tb"
    out += string(b"labels") + b"](" + b"".join(b"K" + bytes([v]) for v in labels) + b"e"
    out += string(b"batch_label") + string(b"testing batch 1 of 1") + b"u."
    return out


def images(n: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


def test_a_batch_as_python2_wrote_it_loads(tmp_path):
    x = images()
    (tmp_path / "test_batch").write_bytes(python2_batch(x, [3, 8, 8, 0]))
    assert pickle.loads((tmp_path / "test_batch").read_bytes(), encoding="bytes")[b"labels"]
    got, y = data.load_cifar10("test", data_dir=tmp_path)
    np.testing.assert_array_equal(got, x.astype(np.float32))
    np.testing.assert_array_equal(y, [3, 8, 8, 0])


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_a_batch_written_by_python3_loads(tmp_path, protocol):
    x = images(3, seed=protocol)
    rows = x.transpose(0, 3, 1, 2).reshape(3, 3072)
    batch = {b"batch_label": b"testing", b"labels": [1, 2, 9], b"data": rows,
             b"filenames": [b"a.png", b"b.png", b"c.png"]}
    (tmp_path / "test_batch").write_bytes(pickle.dumps(batch, protocol=protocol))
    got, y = data.load_cifar10("test", data_dir=tmp_path)
    np.testing.assert_array_equal(got, x.astype(np.float32))
    np.testing.assert_array_equal(y, [1, 2, 9])


@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])
@pytest.mark.parametrize("where", ["data", "labels"])
def test_a_planted_payload_never_runs(tmp_path, protocol, where):
    marker = tmp_path / "payload_ran"
    plant(tmp_path / "data" / "test_batch", marker, protocol, where)
    with pytest.raises(ValueError, match=r"test_batch: refused, it holds a call of "
                                         r"(posix|nt|os)\.system") as err:
        data.load_cifar10("test", data_dir=tmp_path / "data")
    assert str(tmp_path / "data" / "test_batch") in str(err.value)
    assert "nothing in it was run" in str(err.value)
    assert not marker.exists()


@pytest.mark.parametrize("array", [np.array([1.5, 2.0]), np.array([None, 1], dtype=object),
                                   np.zeros(2, dtype=[("a", "u1"), ("b", "i4")])])
def test_arrays_other_than_integer_ones_are_refused(tmp_path, array):
    path = tmp_path / "test_batch"
    path.write_bytes(pickle.dumps({b"data": array, b"labels": [0, 1]}, protocol=2))
    from daa_tf.data import safe_pickle

    with pytest.raises(ValueError, match="test_batch: refused"):
        safe_pickle.load_batch(path)


def test_binary_batches_are_preferred_to_python_ones(tmp_path):
    x = images(3, seed=7)
    labels = np.array([4, 5, 6], np.uint8)
    rows = x.transpose(0, 3, 1, 2).reshape(3, 3072)
    (tmp_path / "test_batch.bin").write_bytes(np.concatenate([labels[:, None], rows], 1).tobytes())
    marker = tmp_path / "payload_ran"
    plant(tmp_path / "test_batch", marker)
    got, y = data.load_cifar10("test", data_dir=tmp_path)
    np.testing.assert_array_equal(got, x.astype(np.float32))
    np.testing.assert_array_equal(y, labels)
    assert not marker.exists()


def test_the_trainer_never_runs_a_payload(tmp_path):
    from challenges import resolve, train

    marker = tmp_path / "payload_ran"
    for i in range(1, 6):
        plant(tmp_path / "d" / f"data_batch_{i}", marker)
    with pytest.raises(resolve.SetupError, match="data_batch_1: refused"):
        train._load_training_data({"challenge": "cifar10"}, str(tmp_path / "d"), None)
    assert not marker.exists()


def run(args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=ENV, capture_output=True,
                          text=True, timeout=300)


def test_the_generic_runner_never_runs_a_payload(tmp_path):
    import keras

    marker = tmp_path / "payload_ran"
    plant(tmp_path / "d" / "test_batch", marker)
    inputs = keras.Input((32, 32, 3))
    keras.Model(inputs, keras.layers.Dense(10)(keras.layers.Flatten()(inputs))).save(
        tmp_path / "m.keras")
    done = run(["challenges.attack", f"--model={tmp_path / 'm.keras'}",
                f"--data={tmp_path / 'd'}", "--epsilon=8", f"--output={tmp_path / 'a.npy'}"],
               tmp_path)
    assert done.returncode == 1
    assert f"{tmp_path / 'd' / 'test_batch'}: refused" in done.stderr
    assert not marker.exists()


def test_the_evaluator_never_runs_a_payload(tmp_path):
    marker = tmp_path / "payload_ran"
    plant(tmp_path / "d" / "test_batch", marker)
    np.save(tmp_path / "attack.npy", np.zeros((2, 32, 32, 3), np.float32))
    done = run(["challenges.eval", "--challenge=cifar10",
                f"--attack_file={tmp_path / 'attack.npy'}", f"--data_dir={tmp_path / 'd'}",
                f"--model_dir={tmp_path}", "--num_examples=2",
                f"--pred_file={tmp_path / 'pred.npy'}"], tmp_path)
    assert done.returncode == 1
    assert f"{tmp_path / 'd' / 'test_batch'}: refused" in done.stderr
    assert not marker.exists()
