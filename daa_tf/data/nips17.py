"""The NIPS 2017 adversarial competition's development set (its Kaggle layout): ``images.csv``
(ImageId, URL, x1, y1, x2, y2, TrueLabel, TargetClass, ...) beside ``images/<ImageId>.png``,
299x299 RGB; labels index 1001-class logits (0 = background).
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import List, NamedTuple, Optional, Tuple

import numpy as np

from daa_tf.data.formats import DataNotFoundError, PathLike

NIPS17_IMAGE_SHAPE = (299, 299, 3)
NIPS17_COLUMNS = ("ImageId", "TrueLabel", "TargetClass")


class Nips17(NamedTuple):
    """NIPS 2017 images in csv order.

    ``x`` float32 ``[N, 299, 299, 3]`` in [0, 1] (pixel / 255); ``labels`` and ``targets`` int64
    ``[N]`` in 1..1000 (1001-class indexing, 0 = background: ImageNet class ``k`` is ``k + 1``);
    ``image_ids`` the csv's ImageId strings (file ``images/<ImageId>.png``).
    """

    x: np.ndarray
    labels: np.ndarray
    targets: np.ndarray
    image_ids: List[str]


def _nips17_class(value: Optional[str], column: str, where: str) -> int:
    if value is None or not value.strip():
        raise ValueError(f"{where}: no {column} value (short row?)")
    try:
        label = int(value.strip())
    except ValueError:
        raise ValueError(f"{where}: {column} {value!r} is not an integer") from None
    if not 1 <= label <= 1000:
        raise ValueError(f"{where}: {column} {label} outside 1..1000 (1001-class indexing, "
                         "0 = background)")
    return label


def _nips17_rows(csv_path: Path) -> List[Tuple[str, int, int, str]]:
    """``(image_id, label, target, 'file, row n')`` of every data row; ValueError on a bad one."""
    try:
        return _nips17_parse(csv_path)
    except (csv.Error, UnicodeDecodeError) as err:
        raise ValueError(f"{csv_path}: not a readable csv file ({err})") from None


def _nips17_parse(csv_path: Path) -> List[Tuple[str, int, int, str]]:
    with open(csv_path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in NIPS17_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{csv_path}: no column(s) {missing} in the header "
                             f"{reader.fieldnames}; expected at least {list(NIPS17_COLUMNS)}")
        rows, seen = [], {}
        for row in reader:
            where = f"{csv_path}, row {reader.line_num}"
            image_id = (row["ImageId"] or "").strip()
            if not image_id:
                raise ValueError(f"{where}: empty ImageId")
            if image_id in seen:
                raise ValueError(f"{where}: ImageId {image_id!r} already on row {seen[image_id]}")
            seen[image_id] = reader.line_num
            rows.append((image_id, _nips17_class(row["TrueLabel"], "TrueLabel", where),
                         _nips17_class(row["TargetClass"], "TargetClass", where), where))
    if not rows:
        raise ValueError(f"{csv_path}: no image rows")
    return rows


def _nips17_image(path: Path, where: str) -> np.ndarray:
    """uint8 ``[299, 299, 3]`` decoded from the PNG at ``path``."""
    import tensorflow as tf

    if not path.is_file():
        raise DataNotFoundError(f"{where}: image {path} not found")
    try:
        image = tf.io.decode_png(path.read_bytes(), channels=0, dtype=tf.uint8).numpy()
    except (tf.errors.OpError, ValueError) as err:
        raise ValueError(f"{where}: {path} is not a readable PNG "
                         f"({str(err).splitlines()[0][:200] if str(err) else err})") from None
    if image.shape != NIPS17_IMAGE_SHAPE:
        raise ValueError(f"{where}: {path} is {image.shape[1]}x{image.shape[0]} with "
                         f"{image.shape[2]} channel(s), expected 299x299 RGB (3 channels)")
    return image


def load_nips17(data_dir: PathLike, num_examples: Optional[int] = None) -> Nips17:
    """The NIPS 2017 competition images of ``data_dir`` (``images.csv`` + ``images/*.png``).

    ``images.csv`` needs the columns ImageId, TrueLabel, TargetClass (others, e.g. URL and the box,
    are ignored); rows keep their order. ``num_examples``: the first ones (ValueError if more than
    the csv lists). Raises DataNotFoundError for a missing folder, csv or image, and ValueError
    naming the file and row for a bad row or an image that is not a 299x299 RGB PNG.
    """
    if num_examples is not None and num_examples <= 0:
        raise ValueError(f"num_examples must be positive, got {num_examples}")
    folder = Path(data_dir)
    csv_path = folder / "images.csv"
    if not csv_path.is_file():
        raise DataNotFoundError(f"no NIPS 2017 data in {folder}: expected images.csv and "
                                "images/<ImageId>.png there (the competition's development set)")
    rows = _nips17_rows(csv_path)
    if num_examples is not None:
        if num_examples > len(rows):
            raise ValueError(f"num_examples={num_examples} but {csv_path} lists only {len(rows)} "
                             "images")
        rows = rows[:num_examples]
    x = np.empty((len(rows), *NIPS17_IMAGE_SHAPE), dtype=np.float32)
    for i, (image_id, _, _, where) in enumerate(rows):
        x[i] = _nips17_image(folder / "images" / f"{image_id}.png", where)
    x /= 255.0
    return Nips17(x=x, labels=np.array([r[1] for r in rows], dtype=np.int64),
                  targets=np.array([r[2] for r in rows], dtype=np.int64),
                  image_ids=[r[0] for r in rows])
