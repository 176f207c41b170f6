"""The report's two figures (``accuracy_vs_eps.png``, ``examples.png``) and the choice of the
examples shown; drawing is :mod:`challenges.report.plots` (matplotlib, optional)."""
from __future__ import annotations

import os
from typing import Any, Dict, List

import numpy as np

from daa_tf import catalogue

from challenges.report import plots
from challenges.report.settings import ReportConfig

ACCURACY_PLOT = "accuracy_vs_eps.png"
EXAMPLES_PLOT = "examples.png"


def key_label(key: str) -> str:
    """``"daa_blob/cw"`` -> ``"DAA-BLOB (CW)"``."""
    attack, loss = key.split("/")
    if catalogue.is_cascade(attack):  # its stages choose their losses
        return catalogue.label(attack)
    return f"{catalogue.label(attack)} ({catalogue.LOSS_LABELS[loss]})"


def pick_examples(pgd: Dict[str, Any], daa: Dict[str, Any], limit: int) -> List[int]:
    """Indices (in order) of the examples DAA fools and PGD does not."""
    return [int(i) for i in np.flatnonzero(pgd["correct"] & ~daa["correct"])[:limit]]


def draw_figures(results: Dict[str, Any], runs: Dict[str, Dict[str, Any]], x: np.ndarray,
                 y: np.ndarray, cfg: ReportConfig, out: str, title: str) -> Dict[str, Any]:
    """Draws the figures the results call for into ``out`` (``title`` heads each); returns their
    entries of ``results.json`` (file, width, height)."""
    drawn: Dict[str, Any] = {}
    grid = results["eps_grid"]
    if grid["eps"]:
        curves = {key_label(k): v for k, v in grid["accuracy"].items()}
        plots.accuracy_vs_eps(os.path.join(out, ACCURACY_PLOT), grid["eps"], curves,
                              clean_accuracy=results["clean_accuracy"],
                              title=f"{title}: accuracy vs eps", eps_label="eps (L-inf)")
        width, height = plots.ACCURACY_SIZE
        drawn["accuracy_vs_eps"] = {"file": ACCURACY_PLOT, "width": width, "height": height}
    ex = results["examples"]
    if ex["pgd"] in runs and ex["daa"] in runs:
        pgd, daa = runs[ex["pgd"]], runs[ex["daa"]]
        rows = [{"index": i, "label": int(y[i]), "x_pgd": pgd["x_adv"][i],
                 "x_daa": daa["x_adv"][i], "pred_pgd": int(pgd["pred"][i]),
                 "pred_daa": int(daa["pred"][i])} for i in ex["indices"]]
        daa_label = key_label(ex["daa"])
        plots.examples(os.path.join(out, EXAMPLES_PLOT), x[ex["indices"]], rows, cfg.eps,
                       cfg.clip_min, cfg.clip_max,
                       title=f"{title}: examples {daa_label} fools and PGD does not",
                       empty_message=f"no example that {daa_label} fools and PGD does not")
        width, height = plots.EXAMPLES_SIZE
        drawn["examples"] = {"file": EXAMPLES_PLOT, "width": width, "height": height}
    return drawn
