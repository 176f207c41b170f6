"""The tensorflow-datasets path of :mod:`daa_tf.data` (daa_tf.data.tfds_sets), end to end and
without a network.

Without ``data_dir`` the loaders fetch the ORIGINAL files with tfds's download manager, from the
URLs of tfds's own builders, and parse them in the files' order (``tfds.load`` would return tfds's
prepared, shuffled order: MNIST test labels ``2 0 4 8 7 ...`` instead of ``7 2 1 0 4 ...``, which
misorders a MadryLab ``attack.npy``). Here the builders' URLs point at a local HTTP server on
127.0.0.1 serving the fixture files: the MNIST and Fashion-MNIST IDX ``.gz`` files of
``../shared/data`` (read in place) and a ``cifar-10-binary.tar.gz`` built in ``tmp_path`` from
``../shared/data/cifar10/test_first1000.npz``; the loaded arrays must EQUAL (same order) those of
the ``data_dir`` path.

The real tfds code runs (not mocked): ``DatasetBuilder.url_infos`` -> ``code_path`` is where
tensorflow-datasets imports ``importlib_resources`` lazily (issue 14: nothing installed it), so the
served-files test fails on an install without it.

tfds runs in a child process: its class patches, module globals and data dir must not leak into
other tests (and ``TFDS_DATA_DIR`` is read when tensorflow_datasets is imported).
"""
import http.server
import io
import json
import os
import socket
import subprocess
import sys
import tarfile
import threading
import urllib.parse
from pathlib import Path

import numpy as np
import pytest

from daa_tf import data
from tests.helpers import REPO_ROOT

CHILD_TIMEOUT = 180  # seconds; the whole child takes ~6 s on 2 idle cores
OFFLINE_LIMIT = 30  # seconds for the offline error (tfds's own 10 retries back off for minutes)

# Run in the child: point tfds's builders at the served files, load through the project's public
# loaders, save the arrays (or the loaders' errors) for the parent to check.
_CHILD = r"""
import json, sys, time
import numpy as np
urls, out = json.loads(sys.argv[1]), sys.argv[2]
import tensorflow_datasets as tfds
from tensorflow_datasets.core.download import downloader

# tfds 4.9: `class MNIST: URL = ...` (FashionMNIST(MNIST) has its own), joined with the IDX names.
# The local URLs have no registered checksum, so tfds does not validate them (the shared MNIST
# train images are recompressed: their checksum differs from the registered one).
for name in ("mnist", "fashion_mnist"):
    if name in urls:
        tfds.builder_cls(name).URL = urls[name]
if "cifar10" in urls:
    cifar = tfds.builder_cls("cifar10")
    real_info = cifar._cifar_info  # property -> CifarInfo(url=..., prefix=..., test_files=...)
    cifar._cifar_info = property(lambda self: real_info.fget(self)._replace(url=urls["cifar10"]))

from daa_tf import data
result = {"retries_before": downloader.MAX_RETRIES}
arrays = {}
for name in urls:
    start = time.perf_counter()
    try:
        x, y = data.load_dataset(name, "test", None)
    except data.DataNotFoundError as err:
        result[name] = {"error": type(err).__name__, "message": str(err)}
    else:
        arrays[name + "_x"], arrays[name + "_y"] = x, y
        result[name] = {"source": "loaded"}
    result[name]["seconds"] = time.perf_counter() - start
result["retries_after"] = downloader.MAX_RETRIES

if "checksum" in sys.argv[3:]:
    # Validation stays on for URLs that tfds registers: register the local MNIST URLs with a wrong
    # checksum (a fresh cache path, so they are downloaded again) and expect the loader to refuse.
    mnist = tfds.builder_cls("mnist")
    infos = {}
    for f in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        infos[urls["mnist"] + f] = tfds.download.checksums.UrlInfo(
            size=1, checksum="0" * 64, filename=f)
    mnist.url_infos = infos
    try:
        data.load_mnist("test", None)
        result["checksum"] = {"error": None}
    except data.DataNotFoundError as err:
        result["checksum"] = {"error": type(err).__name__, "message": str(err)}

np.savez(out + ".npz", **arrays)
with open(out + ".json", "w") as f:
    json.dump(result, f)
"""


class _FoldersHandler(http.server.SimpleHTTPRequestHandler):
    """Serves ``/<key>/<file>`` from ``folders[key]``, read in place."""

    folders: dict = {}

    def translate_path(self, path):
        parts = urllib.parse.unquote(urllib.parse.urlsplit(path).path).strip("/").split("/")
        if len(parts) != 2 or parts[0] not in self.folders or parts[1] in ("", ".", ".."):
            return "/nonexistent"
        return str(Path(self.folders[parts[0]]) / parts[1])

    def log_message(self, *args):  # keep pytest's output clean
        pass


def _cifar_binary_tarball(npz: Path, folder: Path) -> Path:
    """``cifar-10-binary.tar.gz`` as tfds's cifar10 URL provides it, holding the npz's images.

    ``cifar-10-batches-bin/test_batch.bin``: records of 1 label byte + 3072 bytes (C, H, W), in the
    npz's order; ``batches.meta.txt`` the class names (tfds's builder reads them too).
    """
    with np.load(npz) as f:
        x, y = f["x"], f["y"]
    records = np.concatenate([y.astype(np.uint8)[:, None],
                              x.transpose(0, 3, 1, 2).reshape(len(x), 3072)], axis=1)
    names = b"airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n"
    path = folder / "cifar-10-binary.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for member, payload in (("test_batch.bin", records.tobytes()),
                                ("batches.meta.txt", names)):
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{member}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return path


@pytest.fixture
def served(shared, tmp_path):
    """``{name: url}`` of the builders' files, served on 127.0.0.1 for this test only."""
    folders = {name: shared / "data" / name for name in ("mnist", "fashion_mnist")}
    for folder in folders.values():
        if not (folder / "t10k-images-idx3-ubyte.gz").is_file():
            pytest.skip(f"no IDX files in {folder}")
    npz = shared / "data" / "cifar10" / "test_first1000.npz"
    if not npz.is_file():
        pytest.skip(f"no {npz}")
    (tmp_path / "served").mkdir()
    folders["cifar10"] = tmp_path / "served"
    tarball = _cifar_binary_tarball(npz, folders["cifar10"])

    handler = type("Handler", (_FoldersHandler,), {"folders": folders})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        yield {"mnist": base + "mnist/", "fashion_mnist": base + "fashion_mnist/",
               "cifar10": base + "cifar10/" + tarball.name}
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _closed_port_url() -> str:
    """A 127.0.0.1 URL whose port nobody listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def _run_child(urls: dict, tmp_path: Path, *checks: str):
    """Run :data:`_CHILD`; its json result and the loaded arrays."""
    env = dict(os.environ)
    env.update(TFDS_DATA_DIR=str(tmp_path / "tensorflow_datasets"), TF_CPP_MIN_LOG_LEVEL="2",
               CUDA_VISIBLE_DEVICES="")
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"  # requests honours *_proxy vars
    out = tmp_path / "loaded"
    proc = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(urls), str(out), *checks],
                          cwd=str(REPO_ROOT), env=env, capture_output=True, text=True,
                          timeout=CHILD_TIMEOUT)
    assert proc.returncode == 0, (
        f"child exited with {proc.returncode}\n--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n"
        f"{proc.stderr[-6000:]}")
    result = json.loads(Path(str(out) + ".json").read_text())
    with np.load(str(out) + ".npz") as f:
        arrays = {k: f[k] for k in f.files}
    return result, arrays


def test_default_path_downloads_the_original_files_in_official_order(served, shared, tmp_path):
    result, arrays = _run_child(served, tmp_path, "checksum")
    for name in served:
        assert result[name] == {"source": "loaded", "seconds": result[name]["seconds"]}, (
            f"{name}: tfds path failed: {result[name].get('message')}")

    # Exactly the arrays of the data_dir path: same examples, same (official) order, same dtypes.
    for name, folder, first in (("mnist", "mnist", [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]),
                                ("fashion_mnist", "fashion_mnist", [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]),
                                ("cifar10", "cifar10", [3, 8, 8, 0, 6, 6, 1, 6, 3, 1])):
        x, y = arrays[name + "_x"], arrays[name + "_y"]
        ref_x, ref_y = data.load_dataset(name, "test", shared / "data" / folder)
        assert x.dtype == ref_x.dtype == np.float32 and y.dtype == ref_y.dtype == np.int64, name
        assert x.shape == ref_x.shape and y.shape == ref_y.shape, name
        np.testing.assert_array_equal(y[:10], first, err_msg=name)
        np.testing.assert_array_equal(y, ref_y, err_msg=name)
        np.testing.assert_array_equal(x, ref_x, err_msg=name)
    assert arrays["mnist_x"].shape == (10000, 784) and arrays["mnist_x"].max() == 1.0
    assert arrays["cifar10_x"].shape == (1000, 32, 32, 3) and arrays["cifar10_x"].max() == 255.0

    # Only the test split's files were fetched, into tfds's download cache; nothing prepared.
    tfds_dir = tmp_path / "tensorflow_datasets"
    fetched = sorted(p.name for p in (tfds_dir / "downloads" / "mnist").glob("*.gz"))
    assert len(fetched) == 2 and "t10k-image" in fetched[0] and "t10k-label" in fetched[1], fetched
    assert sorted(p.name for p in tfds_dir.iterdir()) == ["downloads"]
    assert result["retries_before"] == result["retries_after"] == 10  # restored

    # A file whose registered checksum differs is refused, not loaded.
    assert result["checksum"]["error"] == "DataNotFoundError", result["checksum"]
    assert "NonMatchingChecksumError" in result["checksum"]["message"], result["checksum"]


def test_offline_is_a_quick_download_error_not_an_import_error(tmp_path):
    closed = _closed_port_url()
    result, _ = _run_child({"mnist": closed, "cifar10": closed + "cifar-10-binary.tar.gz"},
                           tmp_path)
    for name, what in (("mnist", "t10k-images-idx3-ubyte.gz"), ("cifar10", "test_batch")):
        assert result[name].get("error") == "DataNotFoundError", f"{name}: loaded from nowhere?"
        message = result[name]["message"]
        assert "ModuleNotFoundError" not in message and "No module named" not in message, message
        assert "ImportError" not in message, message
        assert f"could not load {name!r} (test) from tensorflow-datasets" in message
        assert "Connection" in message or "connect" in message.lower(), message
        assert "--data_dir" in message and what in message, message
        assert result[name]["seconds"] < OFFLINE_LIMIT, result[name]
    assert result["retries_before"] == result["retries_after"] == 10  # restored
