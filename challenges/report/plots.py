"""The report's figures (matplotlib, optional: ``pip install .[report]``).

matplotlib is imported lazily, only when a figure is drawn, and only its Agg backend is used (a
``Figure`` with a ``FigureCanvasAgg``, never ``pyplot``): no display is needed and no global
backend is switched. Every figure has a fixed size in pixels (the constants below), whatever the
data: ``ACCURACY_SIZE`` and ``EXAMPLES_SIZE``, each ``(width, height)``.
"""
from __future__ import annotations

import io
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from daa_tf.files import atomic_write

INSTALL_HINT = ("the figures need matplotlib: pip install matplotlib "
                "(or, from a checkout, pip install .[report]) and rerun with --resume")

DPI = 100
ACCURACY_FIGSIZE = (7.0, 4.5)    # inches -> 700 x 450 pixels at DPI
EXAMPLES_ROWS = 4                # examples shown (rows); unused rows stay blank
EXAMPLES_FIGSIZE = (8.0, 7.0)    # inches -> 800 x 700 pixels at DPI
ACCURACY_SIZE = (round(ACCURACY_FIGSIZE[0] * DPI), round(ACCURACY_FIGSIZE[1] * DPI))
EXAMPLES_SIZE = (round(EXAMPLES_FIGSIZE[0] * DPI), round(EXAMPLES_FIGSIZE[1] * DPI))


class MatplotlibMissing(ImportError):
    """matplotlib is not installed; the message says how to get it."""


def matplotlib_available() -> bool:
    """True when matplotlib can be imported."""
    try:
        _figure_class()
    except MatplotlibMissing:
        return False
    return True


def _figure_class():
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as err:
        raise MatplotlibMissing(f"{INSTALL_HINT} ({err})") from None
    return Figure, FigureCanvasAgg


def _new_figure(figsize: Tuple[float, float]):
    figure_cls, canvas_cls = _figure_class()
    fig = figure_cls(figsize=figsize, dpi=DPI)
    canvas_cls(fig)
    return fig


def _save(fig, path: str) -> str:
    """Writes ``fig`` as PNG to ``path`` atomically (a temporary file, then a rename)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    atomic_write(path, lambda f: f.write(buffer.getvalue()))
    return path


def accuracy_vs_eps(path: str, eps: Sequence[float], curves: Dict[str, Sequence[float]],
                    clean_accuracy: Optional[float] = None, title: str = "",
                    eps_label: str = "eps") -> str:
    """One curve per attack: accuracy (fractions, plotted in %) over the ``eps`` grid.

    ``curves`` maps a label to one accuracy per grid value. With ``clean_accuracy``, every curve
    starts at ``(0, clean_accuracy)``. Writes a PNG of ``ACCURACY_SIZE`` pixels to ``path``.
    """
    fig = _new_figure(ACCURACY_FIGSIZE)
    ax = fig.add_subplot(1, 1, 1)
    xs = [float(e) for e in eps]
    markers = "os^Dvx*"
    for i, (label, accs) in enumerate(curves.items()):
        if len(accs) != len(xs):
            raise ValueError(f"curve {label!r} has {len(accs)} values for {len(xs)} eps values")
        px, py = list(xs), [100.0 * a for a in accs]
        if clean_accuracy is not None and 0.0 not in px:
            px, py = [0.0] + px, [100.0 * clean_accuracy] + py
        style = "--" if "cw" in label.lower() else "-"
        ax.plot(px, py, style, marker=markers[i % len(markers)], label=label)
    ax.set_xlabel(eps_label)
    ax.set_ylabel("accuracy (%)")
    ax.grid(True, alpha=0.3)
    if title:
        ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    return _save(fig, path)


def _as_image(x: np.ndarray, clip_min: float, clip_max: float) -> np.ndarray:
    """A flattened square gray image or an HWC image, scaled to [0, 1]."""
    x = np.asarray(x, np.float64)
    if x.ndim == 1:
        side = int(round(np.sqrt(x.size)))
        if side * side != x.size:
            raise ValueError(f"cannot show a flat image of {x.size} values")
        x = x.reshape(side, side)
    if x.ndim == 3 and x.shape[-1] == 1:
        x = x[..., 0]
    return np.clip((x - clip_min) / (clip_max - clip_min), 0.0, 1.0)


def examples(path: str, x_nat: np.ndarray, rows: List[dict], eps: float,
             clip_min: float = 0.0, clip_max: float = 1.0, title: str = "",
             empty_message: str = "no example") -> str:
    """Natural image, PGD and DAA adversarials and their perturbations, one example per row.

    ``x_nat``: the natural images of the rows ``[R, ...]`` (flat square gray or HWC).
    ``rows``: per example a dict with ``x_pgd``, ``x_daa`` (the adversarial images), ``label``,
    ``pred_pgd``, ``pred_daa`` and ``index``; the first ``EXAMPLES_ROWS`` are drawn. Perturbations
    are shown on ``[-eps, eps]`` (blue negative, red positive; RGB images as ``0.5 + d / 2eps``).
    Writes a PNG of ``EXAMPLES_SIZE`` pixels to ``path``; with no rows it says ``empty_message``.
    """
    fig = _new_figure(EXAMPLES_FIGSIZE)
    columns = ["natural", "PGD adversarial", "PGD perturbation", "DAA adversarial",
               "DAA perturbation"]
    grid = fig.add_gridspec(EXAMPLES_ROWS, len(columns))
    rows = list(rows)[:EXAMPLES_ROWS]
    if not rows:
        ax = fig.add_subplot(grid[:, :])
        ax.axis("off")
        ax.text(0.5, 0.5, empty_message, ha="center", va="center", wrap=True, fontsize=11)
    scale = float(clip_max - clip_min)
    for r, row in enumerate(rows):
        nat = np.asarray(x_nat[r])
        panels = []
        for key in ("x_pgd", "x_daa"):
            adv = np.asarray(row[key])
            panels.append(("adv", adv))
            panels.append(("delta", adv - nat))
        cells = [("img", nat)] + panels
        captions = [f"#{row['index']}  label {row['label']}", f"pred {row['pred_pgd']}",
                    f"max |d| {np.max(np.abs(panels[1][1])) / scale:.3g}",
                    f"pred {row['pred_daa']}",
                    f"max |d| {np.max(np.abs(panels[3][1])) / scale:.3g}"]
        for col, ((kind, value), caption) in enumerate(zip(cells, captions)):
            ax = fig.add_subplot(grid[r, col])
            ax.set_xticks([])
            ax.set_yticks([])
            if kind == "delta":
                d = np.asarray(value, np.float64)
                if d.ndim == 3 and d.shape[-1] == 3:
                    ax.imshow(np.clip(0.5 + d / (2.0 * eps), 0.0, 1.0))
                else:
                    d = _as_image(d, -eps, eps) * 2.0 - 1.0
                    ax.imshow(d, cmap="RdBu_r", vmin=-1.0, vmax=1.0)
            else:
                img = _as_image(value, clip_min, clip_max)
                ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0.0, vmax=1.0)
            ax.set_xlabel(caption, fontsize=7)
            if r == 0:
                ax.set_title(columns[col], fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def png_size(path: str) -> Tuple[int, int]:
    """``(width, height)`` of a PNG, read from its IHDR chunk; ValueError if not a PNG."""
    with open(path, "rb") as f:
        head = f.read(24)
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        raise ValueError(f"{path} is not a PNG file")
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


__all__ = ["DPI", "ACCURACY_SIZE", "EXAMPLES_SIZE", "EXAMPLES_ROWS", "INSTALL_HINT",
           "MatplotlibMissing", "matplotlib_available", "accuracy_vs_eps", "examples",
           "png_size"]
