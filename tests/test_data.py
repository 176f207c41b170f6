"""Data loaders: every file format on small synthetic files, their errors, and the shared data."""
import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest

from daa_tf import data


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx(folder: Path, split: str, images: np.ndarray, labels: np.ndarray,
              compressed: bool = True) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    prefix = "t10k" if split == "test" else "train"
    for name, array, magic in (("images-idx3", images, 2051), ("labels-idx1", labels, 2049)):
        payload = idx_bytes(array, magic)
        path = folder / f"{prefix}-{name}-ubyte"
        if compressed:
            with gzip.open(str(path) + ".gz", "wb") as f:
                f.write(payload)
        else:
            path.write_bytes(payload)


def small_mnist(n: int = 12, seed: int = 0):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (n, 28, 28), dtype=np.uint8),
            rng.integers(0, 10, n, dtype=np.uint8))


def write_cifar_batch(path: Path, images_hwc: np.ndarray, labels) -> None:
    rows = images_hwc.transpose(0, 3, 1, 2).reshape(len(images_hwc), 3072)  # C,H,W rows
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump({b"batch_label": b"x", b"data": rows, b"labels": list(labels)}, f)


def small_cifar(n: int = 6, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, n)


# ------------------------------------------------------------------------------- IDX (MNIST)


@pytest.mark.parametrize("compressed", [True, False])
@pytest.mark.parametrize("loader", [data.load_mnist, data.load_fashion_mnist])
def test_idx_round_trip(tmp_path, compressed, loader):
    images, labels = small_mnist()
    write_idx(tmp_path, "test", images, labels, compressed)
    x, y = loader("test", data_dir=tmp_path)
    assert x.shape == (12, 784) and x.dtype == np.float32
    assert y.dtype == np.int64
    np.testing.assert_array_equal(x, images.reshape(12, 784).astype(np.float32) / 255.0)
    np.testing.assert_array_equal(y, labels)
    assert 0.0 <= x.min() and x.max() <= 1.0


def test_idx_train_split_and_num_examples(tmp_path):
    images, labels = small_mnist(20, seed=1)
    write_idx(tmp_path, "train", images, labels)
    x, y = data.load_mnist("train", data_dir=tmp_path, num_examples=5)
    assert x.shape == (5, 784)
    np.testing.assert_array_equal(y, labels[:5])
    with pytest.raises(ValueError, match="num_examples=21 but .* holds only 20"):
        data.load_mnist("train", data_dir=tmp_path, num_examples=21)
    with pytest.raises(data.DataNotFoundError, match="t10k-images-idx3-ubyte.gz"):
        data.load_mnist("test", data_dir=tmp_path)  # only train files there


def test_idx_truncated_gzip_names_the_file(tmp_path):
    images, labels = small_mnist()
    write_idx(tmp_path, "test", images, labels)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte.gz"):
        data.load_mnist(data_dir=tmp_path)


def test_idx_truncated_payload_names_the_file(tmp_path):
    images, labels = small_mnist()
    write_idx(tmp_path, "test", images, labels, compressed=False)
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte: IDX header says .* truncated"):
        data.load_mnist(data_dir=tmp_path)
    (tmp_path / "short").write_bytes(b"\x00\x00")
    with pytest.raises(ValueError, match="short: truncated"):
        data.read_idx(tmp_path / "short")


def test_idx_bad_magic(tmp_path):
    images, labels = small_mnist()
    write_idx(tmp_path, "test", images, labels, compressed=False)
    # labels file where images are expected: magic 2049, not 2051
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(idx_bytes(labels, 2049))
    with pytest.raises(ValueError, match="bad IDX magic number 2049 .expected 2051"):
        data.load_mnist(data_dir=tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(b"\x12\x34\x56\x78" + bytes(100))
    with pytest.raises(ValueError, match="bad IDX magic number"):
        data.load_mnist(data_dir=tmp_path)


def test_idx_count_mismatch(tmp_path):
    images, labels = small_mnist()
    write_idx(tmp_path, "test", images, labels[:-1])
    with pytest.raises(ValueError, match="12 images but .* 11 labels"):
        data.load_mnist(data_dir=tmp_path)


# ------------------------------------------------------------------------------------ CIFAR


@pytest.mark.parametrize("subfolder", ["", "cifar-10-batches-py"])
def test_cifar_pickle_test_batch(tmp_path, subfolder):
    images, labels = small_cifar()
    write_cifar_batch(tmp_path / subfolder / "test_batch", images, labels)
    x, y = data.load_cifar10("test", data_dir=tmp_path)
    assert x.shape == (6, 32, 32, 3) and x.dtype == np.float32 and y.dtype == np.int64
    np.testing.assert_array_equal(x, images.astype(np.float32))  # NHWC, 0..255
    np.testing.assert_array_equal(y, labels)


def test_cifar_pickle_train_batches_in_order(tmp_path):
    parts = [small_cifar(2, seed=i) for i in range(5)]
    for i, (images, labels) in enumerate(parts, start=1):
        write_cifar_batch(tmp_path / f"data_batch_{i}", images, labels)
    x, y = data.load_cifar10("train", data_dir=tmp_path, num_examples=7)
    np.testing.assert_array_equal(x, np.concatenate([p[0] for p in parts])[:7])
    np.testing.assert_array_equal(y, np.concatenate([p[1] for p in parts])[:7])


def test_cifar_bad_pickle(tmp_path):
    (tmp_path / "test_batch").write_bytes(b"not a pickle at all")
    with pytest.raises(ValueError, match="test_batch: not a CIFAR-10 python batch"):
        data.load_cifar10(data_dir=tmp_path)


def test_cifar_binary_batch_in_order(tmp_path):
    # The format of cifar-10-binary.tar.gz (the default download): 1 label byte, 3072 bytes C,H,W.
    images, labels = small_cifar(5, seed=3)
    rows = images.transpose(0, 3, 1, 2).reshape(5, 3072)
    path = tmp_path / "test_batch.bin"
    path.write_bytes(np.concatenate([labels.astype(np.uint8)[:, None], rows], axis=1).tobytes())
    x, y = data.read_cifar10_bin(path)
    assert x.dtype == np.uint8 and x.shape == (5, 32, 32, 3)
    np.testing.assert_array_equal(x, images)
    np.testing.assert_array_equal(y, labels)


def test_cifar_binary_batch_errors(tmp_path):
    path = tmp_path / "test_batch.bin"
    path.write_bytes(bytes(3073 * 2 - 1))
    with pytest.raises(ValueError, match=r"test_batch.bin: 6145 bytes is not a whole number"):
        data.read_cifar10_bin(path)
    path.write_bytes(bytes([10]) + bytes(3072))
    with pytest.raises(ValueError, match=r"test_batch.bin: label 10 > 9"):
        data.read_cifar10_bin(path)


# -------------------------------------------------------------------------------------- npz


def test_npz_file_and_folder(tmp_path):
    images, labels = small_cifar(4)
    np.savez(tmp_path / "test_first4.npz", x=images, y=labels.astype(np.uint8))
    for source in (tmp_path, tmp_path / "test_first4.npz"):
        x, y = data.load_cifar10(data_dir=source)
        np.testing.assert_array_equal(x, images.astype(np.float32))
        assert y.dtype == np.int64
    mnist_images, mnist_labels = small_mnist(3)
    folder = tmp_path / "m"
    folder.mkdir()
    np.savez(folder / "test.npz", x=mnist_images, y=mnist_labels)  # [N, 28, 28] uint8
    x, y = data.load_mnist(data_dir=folder)
    np.testing.assert_array_equal(x, mnist_images.reshape(3, 784) / np.float32(255))
    np.savez(folder / "train.npz", x=mnist_images[:1] / 255.0, y=mnist_labels[:1])  # float [0,1]
    assert data.load_mnist("train", data_dir=folder)[0].shape == (1, 784)


def test_npz_errors(tmp_path):
    np.savez(tmp_path / "a.npz", images=np.zeros((2, 784)))
    with pytest.raises(ValueError, match="without arrays 'x' and 'y'"):
        data.load_mnist(data_dir=tmp_path / "a.npz")
    np.savez(tmp_path / "b.npz", x=np.full((2, 784), 3.0), y=np.zeros(2))
    with pytest.raises(ValueError, match=r"outside \[0, 1\]"):
        data.load_mnist(data_dir=tmp_path / "b.npz")
    np.savez(tmp_path / "c.npz", x=np.zeros((2, 32, 32)), y=np.zeros(2))
    with pytest.raises(ValueError, match=r"expected \[N, 32, 32, 3\]"):
        data.load_cifar10(data_dir=tmp_path / "c.npz")
    (tmp_path / "d.npz").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not a readable npz"):
        data.load_cifar10(data_dir=tmp_path / "d.npz")


# ------------------------------------------------------------------------ tfds and arguments


def test_tfds_used_without_data_dir(monkeypatch):
    images, labels = small_mnist(4)
    calls = []

    def fake(name, split):
        calls.append((name, split))
        return images[..., None], labels  # tfds layout: [N, 28, 28, 1] uint8

    monkeypatch.setattr(data.downloads, "download_original", fake)
    x, y = data.load_fashion_mnist("train")
    assert calls == [("fashion_mnist", "train")]
    np.testing.assert_array_equal(x, images.reshape(4, 784) / np.float32(255))


@pytest.mark.parametrize("loader, files", [
    (data.load_mnist, "t10k-images-idx3-ubyte.gz"),
    (data.load_cifar10, "test_batch"),
])
def test_offline_without_files_explains(monkeypatch, loader, files):
    def offline(name, split):
        raise ConnectionError("no network")

    monkeypatch.setattr(data.downloads, "download_original", offline)
    with pytest.raises(data.DataNotFoundError) as err:
        loader("test")
    message = str(err.value)
    assert files in message and "data_dir" in message and "--data_dir" in message
    assert "no network" in message


def test_argument_errors(tmp_path):
    with pytest.raises(ValueError, match="split must be one of"):
        data.load_mnist("validation", data_dir=tmp_path)
    with pytest.raises(ValueError, match="num_examples must be positive"):
        data.load_cifar10(data_dir=tmp_path, num_examples=0)
    with pytest.raises(data.DataNotFoundError, match="no cifar10 test data in"):
        data.load_cifar10(data_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown data set"):
        data.load_dataset("svhn")


# ------------------------------------------------------------------------- the shared files


def test_shared_mnist(shared):
    x, y = data.load_mnist("test", data_dir=shared / "data" / "mnist")
    assert x.shape == (10000, 784) and x.dtype == np.float32
    assert x.min() == 0.0 and x.max() == 1.0
    np.testing.assert_array_equal(y[:10], [7, 2, 1, 0, 4, 1, 4, 9, 5, 9])
    np.testing.assert_array_equal(np.bincount(y),
                                  [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009])
    x, y = data.load_mnist("train", data_dir=shared / "data" / "mnist", num_examples=100)
    np.testing.assert_array_equal(y[:5], [5, 0, 4, 1, 9])


def test_shared_fashion_mnist(shared):
    x, y = data.load_fashion_mnist("test", data_dir=shared / "data" / "fashion_mnist")
    assert x.shape == (10000, 784)
    np.testing.assert_array_equal(y[:10], [9, 2, 1, 1, 6, 1, 4, 6, 5, 7])
    np.testing.assert_array_equal(np.bincount(y), [1000] * 10)


def test_shared_cifar10(shared):
    x, y = data.load_cifar10("test", data_dir=shared / "data" / "cifar10")
    assert x.shape == (1000, 32, 32, 3) and x.dtype == np.float32
    assert x.min() >= 0 and x.max() == 255.0
    np.testing.assert_array_equal(y[:10], [3, 8, 8, 0, 6, 6, 1, 6, 3, 1])
    np.testing.assert_array_equal(np.bincount(y), [103, 89, 100, 103, 90, 86, 112, 102, 106, 109])
    with pytest.raises(ValueError, match="num_examples=1001 but .* holds only 1000"):
        data.load_cifar10("test", data_dir=shared / "data" / "cifar10", num_examples=1001)


def test_load_tfds_reads_any_data_set_in_chunks():
    """The generic runner's tfds path (tfds's prepared sets, read batch by batch) under tfds's
    mock data: image and label arrays of the mock's size, labels int64."""
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=7):
        x, y = data.load_tfds("cifar10", "test")
    assert x.shape == (7, 32, 32, 3) and x.dtype == np.uint8
    assert y.shape == (7,) and y.dtype == np.int64 and y.min() >= 0 and y.max() <= 9
