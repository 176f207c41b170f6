"""NIPS 2017 competition images (daa_tf.data.nips17: images.csv + images/<ImageId>.png): values,
order, every error."""
import numpy as np
import pytest

from daa_tf.data import DataNotFoundError, Nips17, load_nips17
from tests.helpers import NIPS17_HEADER as HEADER
from tests.helpers import NIPS17_IDS as IDS
from tests.helpers import NIPS17_LABELS as LABELS
from tests.helpers import NIPS17_TARGETS as TARGETS
from tests.helpers import layout_dir, make_nips17, write_png
from tests.helpers import nips17_csv_line as csv_line


@pytest.fixture(scope="module")
def random_images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (4, 299, 299, 3), dtype=np.uint8)


def test_reads_the_fixture_images_exactly(shared, tmp_path):
    inputs = np.load(layout_dir(shared) / "inputs.npy")
    data = load_nips17(make_nips17(tmp_path, inputs))
    assert isinstance(data, Nips17)
    assert data.x.dtype == np.float32 and data.x.shape == (4, 299, 299, 3)
    np.testing.assert_array_equal(data.x, inputs.astype(np.float32) / 255.0)
    assert 0.0 <= data.x.min() and data.x.max() <= 1.0
    assert data.labels.dtype == data.targets.dtype == np.int64
    assert data.labels.tolist() == LABELS and data.targets.tolist() == TARGETS
    assert data.image_ids == IDS


def test_num_examples_keeps_the_first(random_images, tmp_path):
    folder = make_nips17(tmp_path, random_images)
    x, labels, targets, ids = load_nips17(str(folder), num_examples=2)
    assert x.shape == (2, 299, 299, 3) and ids == IDS[:2] and labels.tolist() == LABELS[:2]
    np.testing.assert_array_equal(x[1] * 255.0, random_images[1].astype(np.float32))
    with pytest.raises(ValueError, match="num_examples=5 but .* lists only 4"):
        load_nips17(folder, num_examples=5)
    with pytest.raises(ValueError, match="positive"):
        load_nips17(folder, num_examples=0)


def test_missing_folder_csv_and_image(random_images, tmp_path):
    with pytest.raises(DataNotFoundError, match="expected images.csv"):
        load_nips17(tmp_path / "nowhere")
    folder = make_nips17(tmp_path / "d", random_images)
    (folder / "images" / f"{IDS[2]}.png").unlink()
    with pytest.raises(DataNotFoundError,
                       match=f"images.csv, row 4: image .*{IDS[2]}.png not found"):
        load_nips17(folder)
    load_nips17(folder, num_examples=2)  # only the images asked for are read
    (folder / "images.csv").unlink()
    with pytest.raises(DataNotFoundError, match="no NIPS 2017 data in"):
        load_nips17(folder)


@pytest.mark.parametrize("shape, message", [
    ((299, 298, 3), "is 298x299 with 3 channel"),
    ((299, 299, 1), "is 299x299 with 1 channel"),
    ((299, 299, 4), "is 299x299 with 4 channel"),
])
def test_wrong_image_size_or_channels(random_images, tmp_path, shape, message):
    folder = make_nips17(tmp_path, random_images)
    bad = folder / "images" / f"{IDS[1]}.png"
    write_png(bad, np.zeros(shape, np.uint8))
    with pytest.raises(ValueError, match=f"row 3: .*{IDS[1]}.png {message}.*expected 299x299"):
        load_nips17(folder)


def test_corrupt_png(random_images, tmp_path):
    folder = make_nips17(tmp_path, random_images)
    (folder / "images" / f"{IDS[0]}.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(ValueError, match=f"row 2: .*{IDS[0]}.png is not a readable PNG"):
        load_nips17(folder)


@pytest.mark.parametrize("row, message", [
    (csv_line(IDS[1], "cat", 5), "row 3: TrueLabel 'cat' is not an integer"),
    (csv_line(IDS[1], 0, 5), "row 3: TrueLabel 0 outside 1..1000"),
    (csv_line(IDS[1], 5, 1001), "row 3: TargetClass 1001 outside 1..1000"),
    (csv_line(IDS[1], 5, 2.5), "row 3: TargetClass '2.5' is not an integer"),
    (csv_line("", 5, 5), "row 3: empty ImageId"),
    (csv_line(IDS[0], 5, 5), f"row 3: ImageId '{IDS[0]}' already on row 2"),
    (IDS[1] + ",https://example.org/x.jpg,0,0,1", "row 3: no TrueLabel value"),
])
def test_bad_rows_name_file_and_row(random_images, tmp_path, row, message):
    lines = [csv_line(IDS[0], 1, 2), row, csv_line(IDS[2], 3, 4)]
    folder = make_nips17(tmp_path, random_images, lines=lines)
    with pytest.raises(ValueError, match=f"images.csv, {message}"):
        load_nips17(folder)


def test_missing_column_and_empty_csv(random_images, tmp_path):
    header = [c for c in HEADER if c != "TargetClass"]
    folder = make_nips17(tmp_path / "a", random_images, header=header)
    with pytest.raises(ValueError, match=r"images.csv: no column\(s\) \['TargetClass'\]"):
        load_nips17(folder)
    folder = make_nips17(tmp_path / "b", random_images, lines=[])
    with pytest.raises(ValueError, match="images.csv: no image rows"):
        load_nips17(folder)
    (folder / "images.csv").write_bytes(b"ImageId,TrueLabel,TargetClass\n\xff\xfe,1,2\n")
    with pytest.raises(ValueError, match="not a readable csv file"):
        load_nips17(folder)
