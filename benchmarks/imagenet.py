"""The ImageNet benchmark: the DAA group size against Inception-ResNet-v2's input gradient.

``python -m benchmarks.run --model imagenet --batch 4 --particles 4 --steps 1 --repeats 3``
(random weights: the fixture holds no weights, and timings do not depend on them; the fixture's
four ``inputs.npy`` images repeated, else random images).

Section ``groups`` (every model; on ImageNet its only section):

- ``step`` rows: the gradient floor (a compiled loop doing only the input gradient, as
  :func:`benchmarks.runners.floor_runner`) on half the timed batch and on all of it, then PGD and
  DAA-BLOB (targeted; groups of ``--particles`` images, at most the batch) on the batch: ms per
  step and per image-step (medians of interleaved calls), and the peak resident set over each
  run's first call. The runs go from the smallest batch up and the allocator keeps what a run
  freed, so the floor's growth from half the batch to all of it is the gradient's memory per
  image (``grad MB/img``).
- ``kernel`` rows: the DAA-BLOB direction alone (:func:`benchmarks.runners.kernel_runner`) on one
  group of ``M`` particles of the model's dimension ``d`` (268203 on ImageNet) for ``M`` in
  :data:`KERNEL_GROUPS`; ``of pgd step``: its share of a PGD step of ``M`` images, i.e. of ``M``
  times the measured PGD ms per image-step (``x pgd``: the DAA step so projected). A DAA batch is
  a whole number of groups and the model takes the whole batch at once, so a group of ``M`` needs
  the gradient of ``M`` images in memory: ``group peak MB`` estimates a DAA step's peak on a batch
  of ``M`` (the measured DAA step's peak, plus ``grad MB/img`` for each further image, plus the
  kernel's own peak), extrapolated linearly from the timed batch: an upper estimate, as the
  memory per image measured at small batches exceeds its marginal cost at large ones
  (Inception-ResNet-v2: 150-210 MB per image between 2 and 8 images; a DAA step on 32 images
  peaked at 4.9 GB where batches of 4 and 8 extrapolate to 6.4-8.2 GB).
"""
import time
from typing import Any, Callable, List, Optional, Tuple

from benchmarks.common import (Context, Row, interleaved, median, peak_memory_mb,
                               reset_peak_memory, resident_mb, section)
from benchmarks.runners import attack_runner, floor_runner, kernel_runner

KERNEL_GROUPS = (8, 16, 32, 64, 100, 200)  # group sizes M of the kernel rows

COLUMNS = [('mode', 'mode', '{}'),
           ('attack', 'attack', '{}'),
           ('batch', 'batch', '{}'),
           ('particles', 'M', '{}'),
           ('ms_per_step', 'ms/step', '{:.1f}'),
           ('ms_per_image_step', 'ms/img/step', '{:.2f}'),
           ('vs_floor', 'x floor', '{:.3f}'),
           ('vs_pgd', 'x pgd', '{:.3f}'),
           ('of_pgd_step', 'of pgd step', '{:.2%}'),
           ('peak_mb', 'peak MB', '{:.0f}'),
           ('peak_over_before_mb', 'peak-before MB', '{:.0f}'),
           ('mb_per_image', 'grad MB/img', '{:.0f}'),
           ('group_peak_mb', 'group peak MB (est.)', '{:.0f}')]


def _over(peak: Optional[float], before: Optional[float]) -> Optional[float]:
    return None if peak is None or before is None else peak - before


def _step_runs(ctx: Context) -> List[Tuple[str, int, Callable[[], Any], Any]]:
    """``(attack, batch, run, compiled)``: the floor on half the batch, then the floor, PGD and
    DAA-BLOB (groups of ``--particles``, at most the batch) on the whole batch, in that order."""
    args, x, y = ctx.args, ctx.x, ctx.y
    particles = max(2, min(args.particles, len(x)))
    settings = dict(ctx.settings, targeted=True)  # the challenge's form; same cost untargeted
    runs = []
    for attack, n in (("floor", max(1, len(x) // 2)), ("floor", len(x)), ("pgd", len(x)),
                      ("daa_blob", len(x))):
        if attack == "floor":
            run, fn = floor_runner(ctx.model, x[:n], y[:n], args.steps, ctx.jit)
        else:
            run, fn, _ = attack_runner(ctx.model, attack, x, y, args.steps, particles, ctx.jit,
                                       settings)
        runs.append((attack, n, run, fn))
    return runs


def _step_rows(ctx: Context) -> List[Row]:
    """The step rows. Memory: each run's peak resident set over its first call (tracing and one
    call; the runs go from the smallest batch up, and the allocator keeps what a run freed, so the
    floor's growth from half the batch to the whole batch is the gradient's memory per image).
    Time: medians of ``--repeats`` interleaved calls (A B C ...) of ``--steps`` steps."""
    args = ctx.args
    runs = _step_runs(ctx)
    base = resident_mb()
    first_peaks = []
    for _, _, run, _ in runs:
        reset_peak_memory()
        run()
        first_peaks.append(peak_memory_mb())
    times: List[List[float]] = [[] for _ in runs]
    for _ in range(args.repeats):
        for k, (_, _, run, _) in enumerate(runs):
            started = time.perf_counter()
            run()
            times[k].append(time.perf_counter() - started)
    rows: List[Row] = []
    for (attack, n, _, fn), peak, t in zip(runs, first_peaks, times):
        ms = 1000.0 * median(t) / args.steps
        rows.append(dict(mode="step", attack=attack, batch=n,
                         particles=(max(2, min(args.particles, n)) if attack.startswith("daa")
                                    else None),
                         ms_per_step=ms, ms_per_image_step=ms / n, vs_floor=None, vs_pgd=None,
                         of_pgd_step=None, peak_mb=peak, rss_before_mb=base,
                         peak_over_before_mb=_over(peak, base), mb_per_image=None,
                         group_peak_mb=None, steps=args.steps, repeats=args.repeats,
                         tracing_count=fn.experimental_get_tracing_count()))
    half, floor, pgd = rows[0], rows[1], rows[2]
    if floor["batch"] > half["batch"] and None not in (floor["peak_mb"], half["peak_mb"]):
        floor["mb_per_image"] = max(floor["peak_mb"] - half["peak_mb"], 0.0) / (
            floor["batch"] - half["batch"])
    for row in rows:
        row["vs_floor"] = row["ms_per_image_step"] / floor["ms_per_image_step"]
        row["vs_pgd"] = row["ms_per_image_step"] / pgd["ms_per_image_step"]
    return rows


def _kernel_rows(ctx: Context, steps: List[Row]) -> List[Row]:
    """The DAA-BLOB kernel alone on one group of ``M`` points of the model's dimension, for ``M``
    of :data:`KERNEL_GROUPS`: its share of a PGD step of ``M`` images, and the estimated peak of
    a DAA step on a batch of ``M`` images (the measured DAA step's peak, plus the gradient's
    memory of the extra images, plus the kernel's own)."""
    import numpy as np
    dim = int(np.prod(ctx.x.shape[1:]))
    floor, pgd, daa = steps[1], steps[2], steps[3]
    rows: List[Row] = []
    for m in KERNEL_GROUPS:
        run = kernel_runner(m, dim, tiled=False)
        run()  # trace
        reset_peak_memory()
        before = resident_mb()
        _, times, peaks = interleaved({"kernel": run}, ctx.args.repeats)
        ms = 1000.0 * median(times["kernel"])
        over = _over(peaks["kernel"], before)
        pgd_group_ms = m * pgd["ms_per_image_step"]
        group_peak = (None if None in (floor["mb_per_image"], over, daa["peak_mb"]) else
                      daa["peak_mb"] + (m - daa["batch"]) * floor["mb_per_image"] + over)
        rows.append(dict(mode="kernel", attack="daa_blob", batch=m, particles=m, dim=dim,
                         ms_per_step=ms, ms_per_image_step=ms / m, vs_floor=None,
                         vs_pgd=1.0 + ms / pgd_group_ms, of_pgd_step=ms / pgd_group_ms,
                         peak_mb=peaks["kernel"], rss_before_mb=before, peak_over_before_mb=over,
                         mb_per_image=None, group_peak_mb=group_peak, repeats=ctx.args.repeats))
    return rows


@section("groups", "DAA group size: step time per image (floor = input gradient only), the DAA "
         "kernel alone by group size M (share of a PGD step of M images), peak resident memory",
         COLUMNS, models=("mnist", "cifar10", "imagenet"))
def groups(ctx: Context) -> List[Row]:
    """Step rows on the timed batch, then kernel rows by group size (see the module's doc)."""
    steps = _step_rows(ctx)
    return steps + _kernel_rows(ctx, steps)

