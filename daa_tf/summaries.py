"""TensorBoard summaries of attack and training runs (``tf.summary`` event files), for the command
lines' ``--tensorboard_dir`` and for anyone's own loop. Written with ``tf.summary.write`` and the
scalar and image plugins' metadata, so TensorFlow alone writes them (``tf.summary.scalar`` /
``image`` need the ``tensorboard`` package; viewing them does anyway).

:class:`RunSummaries` writes, under one tag prefix (default ``attack``):

- ``<prefix>/accuracy`` after each restart or cascade stage (step = restarts or stages done;
  :meth:`RunSummaries.on_restart` has the signature of ``daa_tf.run``'s ``on_restart``),
  ``<prefix>/restart_seconds`` (that restart's wall time) and ``<prefix>/elapsed_seconds``
  (since the writer was made);
- at the end (:meth:`RunSummaries.result`): ``<prefix>/final_accuracy``,
  ``<prefix>/budget_per_image`` and ``<prefix>/spent_per_image`` (model gradients per image: the
  budget and what early stop left of it); when queries were budgeted (Square, or a cascade with
  it) ``<prefix>/query_budget_per_image`` and ``<prefix>/queries_per_image`` likewise in forward
  passes; and a few images: ``<prefix>/clean``, ``<prefix>/adversarial`` (both scaled from the pixel box to
  [0, 1]) and ``<prefix>/perturbation`` (``0.5 + (x_adv - x) / (2 eps)``: grey is no change).

:meth:`RunSummaries.scalars` writes any other figures (the trainer's progress).
"""
import math
import os
import time
from typing import Any, Dict, Optional

import numpy as np
import tensorflow as tf

MAX_IMAGES = 3


def _metadata(plugin: str) -> Any:
    """The summary metadata TensorBoard's ``plugin`` (``scalars``, ``images``) reads."""
    metadata = tf.compat.v1.SummaryMetadata()
    metadata.plugin_data.plugin_name = plugin
    return metadata


def write_scalar(tag: str, value: float, step: int) -> None:
    """A scalar summary into the default writer, as ``tf.summary.scalar`` writes it, with
    TensorFlow alone (``tf.summary.scalar`` needs the ``tensorboard`` package installed)."""
    tf.summary.write(tag, tf.constant(float(value), tf.float32), step=int(step),
                     metadata=_metadata("scalars"))


def write_images(tag: str, images: np.ndarray, step: int) -> None:
    """An image summary of ``images`` ``[k, H, W, C]`` in [0, 1] (PNG-encoded, each value
    rounded to the nearest of 256 levels), as
    ``tf.summary.image`` writes it, with TensorFlow alone."""
    pixels = np.round(np.clip(images, 0.0, 1.0) * 255.0).astype(np.uint8)  # nearest level
    encoded = [tf.io.encode_png(image) for image in pixels]
    height, width = images.shape[1:3]
    tensor = tf.stack([tf.constant(str(width)), tf.constant(str(height))] + encoded)
    tf.summary.write(tag, tensor, step=int(step), metadata=_metadata("images"))


def as_images(x: np.ndarray) -> Optional[np.ndarray]:
    """``x`` as an image batch ``[N, H, W, C]`` with ``C`` in 1, 3, 4 (``[N, H, W]`` gets a
    channel; flat rows of a square number of pixels, as MNIST's ``[N, 784]``, are shown as
    square grey images), or None when it is not one (e.g. other feature vectors)."""
    x = np.asarray(x, np.float32)
    if x.ndim == 2:
        side = math.isqrt(x.shape[1])
        if side < 2 or side * side != x.shape[1]:
            return None
        x = x.reshape(len(x), side, side)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3, 4):
        return None
    return x


class RunSummaries:
    """Writes the summaries of one run into ``logdir`` (a new event file; TensorBoard reads the
    folder). ``prefix``: the tags' first part; ``max_images``: images per image summary."""

    def __init__(self, logdir: str, prefix: str = "attack", max_images: int = MAX_IMAGES
                 ) -> None:
        self.writer = tf.summary.create_file_writer(logdir)
        self.prefix = prefix
        self.max_images = int(max_images)
        self.started = time.perf_counter()

    def scalars(self, step: int, values: Dict[str, float]) -> None:
        """Each ``name: value`` as the scalar ``<prefix>/<name>`` at ``step``."""
        with self.writer.as_default():
            for name, value in values.items():
                write_scalar(f"{self.prefix}/{name}", value, step)
        self.writer.flush()

    def on_restart(self, index: int, accuracy: float, seconds: float) -> None:
        """After restart (or stage) ``index``: its running accuracy (fraction) and seconds."""
        self.scalars(index + 1, {"accuracy": accuracy, "restart_seconds": seconds,
                                 "elapsed_seconds": time.perf_counter() - self.started})

    def images(self, step: int, x: np.ndarray, x_adv: np.ndarray, clip_min: float,
               clip_max: float, eps: Optional[float] = None) -> bool:
        """The first images of ``x`` and ``x_adv`` and their difference (``eps`` default: the
        largest absolute difference). Returns False (nothing written) when they are not images."""
        clean, adv = as_images(x[:self.max_images]), as_images(x_adv[:self.max_images])
        if clean is None or adv is None or not len(clean):
            return False
        span = float(clip_max - clip_min) or 1.0
        delta = adv - clean
        radius = float(eps) if eps else float(np.max(np.abs(delta))) or 1.0
        pictures = {"clean": (clean - clip_min) / span, "adversarial": (adv - clip_min) / span,
                    "perturbation": 0.5 + delta / (2.0 * radius)}
        with self.writer.as_default():
            for name, value in pictures.items():
                write_images(f"{self.prefix}/{name}", np.clip(value, 0.0, 1.0), step)
        self.writer.flush()
        return True

    def result(self, result: Any, x: Optional[np.ndarray] = None,
               x_adv: Optional[np.ndarray] = None, clip_min: float = 0.0,
               clip_max: float = 1.0, eps: Optional[float] = None) -> None:
        """The end of a run: ``result`` (a :class:`daa_tf.results.RunResult` or
        :class:`daa_tf.stream.StreamResult`; Square's queries too when it spent any) and, given
        ``x`` and ``x_adv``, a few images."""
        step = max(1, len(result.restart_accuracies))
        values = {"final_accuracy": result.accuracy,
                  "budget_per_image": result.gradients_per_image,
                  "spent_per_image": result.gradients_mean,
                  "elapsed_seconds": time.perf_counter() - self.started}
        if result.queries_per_image:  # a query attack (Square) or a cascade with one
            values.update(query_budget_per_image=result.queries_per_image,
                          queries_per_image=result.queries_mean)
        self.scalars(step, values)
        if x is not None and x_adv is not None:
            self.images(step, x, x_adv, clip_min, clip_max, eps)

    def close(self) -> None:
        self.writer.close()


def read_scalars(logdir: str) -> Dict[str, Dict[int, float]]:
    """Every scalar in the event files under ``logdir``: ``{tag: {step: value}}`` (for tests and
    scripts; TensorBoard itself reads the folder)."""
    out: Dict[str, Dict[int, float]] = {}
    paths = sorted(os.path.join(folder, name) for folder, _, names in os.walk(logdir)
                   for name in names if name.startswith("events.out.tfevents."))
    for path in paths:
        for record in tf.data.TFRecordDataset(path):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                if value.HasField("tensor") and value.metadata.plugin_data.plugin_name in (
                        "scalars", ""):
                    number = tf.make_ndarray(value.tensor)
                    if number.ndim == 0:
                        out.setdefault(value.tag, {})[int(event.step)] = float(number)
                elif value.HasField("simple_value"):
                    out.setdefault(value.tag, {})[int(event.step)] = float(value.simple_value)
    return out
