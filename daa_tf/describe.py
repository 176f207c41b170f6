"""The one-line description of run settings that the logs print. No TensorFlow."""
from __future__ import annotations

from typing import Optional

from daa_tf.stages import RunSettings, is_cascade


def describe(settings: RunSettings, restarts: Optional[int] = None) -> str:
    """A one-line summary of ``settings`` (and the number of restarts) for logs."""
    if is_cascade(settings):
        if settings.stages is not None:
            sequence = "stages " + "; ".join(stage.describe() for stage in settings.stages)
        elif settings.version is not None or settings.attack == "autoattack":
            sequence = f"version {settings.version or 'standard'}"
        else:
            sequence = "default sequence"
        budget = ("no gradient budget" if settings.budget is None else
                  f"budget {settings.budget} gradients per image"
                  + (" and restart" if restarts not in (None, 1) else ""))
        if getattr(settings, "queries", None) is not None:
            budget += f", {settings.queries} queries per image"
        return (f"{settings.attack} cascade, eps {settings.eps:g}, {budget}"
                + (f", {restarts} restarts" if restarts not in (None, 1) else "")
                + f", {sequence}")
    loss = settings.loss if isinstance(settings.loss, str) else "custom"
    parts = [f"{settings.attack}, loss {loss}", f"eps {settings.eps:g}",
             f"step size {settings.step_size:g}", f"{settings.steps} steps"]
    if restarts is not None:
        parts.append(f"{restarts} restarts")
    parts.append("random start" if settings.random_start else "no random start")
    if settings.targeted:
        parts.append("targeted")
    if settings.interacting:
        default = settings.c == settings.spec.c_for(settings.loss)
        parts += [f"c {settings.c:g}" + (" (default)" if default else ""),
                  f"{settings.particles} particles per group"]
    if settings.decay is not None:
        parts.append(f"decay {settings.decay:g}")
    if settings.odi_steps:
        odi_step = settings.eps if settings.odi_step_size is None else settings.odi_step_size
        parts.append(f"ODI start ({settings.odi_steps} steps of {odi_step:g})")
    if settings.targets:
        parts.append(f"{settings.targets} target classes")
    if settings.best:
        parts.append("best iterate")
    return ", ".join(parts)
