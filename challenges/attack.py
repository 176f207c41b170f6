r"""Attack any classifier on any labelled images and write the adversarial set.

    python -m challenges.attack --model=SPEC --data=SPEC [--epsilon=E] [--clip_min=A --clip_max=B]
        [--attack=daa_blob] [--steps=N --step_size=S --restarts=R ...] [--output=attack.npy]

``--model``: a ``.keras`` file, a SavedModel folder, ``module:function`` or an adapter
``NAME:PATH`` (rules: :mod:`challenges.model_source`). ``--data``: ``tfds:NAME[:SPLIT]``, an
``.npz`` with ``x`` and ``y``, or a folder a challenge's loader reads
(:mod:`challenges.data_source`).

Inferred where possible, else required:

- the pixel box ``--clip_min/--clip_max``: from an adapter of a challenge's model (its box), else
  from a data folder (the box of the challenge whose loader read it), else required;
- ``--epsilon``: from an adapter of a challenge's model (the challenge's bound), else required;
- the other settings: the adapter's challenge's defaults (as its runner), else steps 100, step size
  ``2.5 * epsilon / steps``, 1 restart, random start, DAA groups of 200 in rounds of 10 steps.

Models returning probabilities, or fewer outputs than the labels need, are refused. The run is the
challenge runners' (:func:`challenges.runner.execute`): restart logs, resumable state beside the
output (``--resume``; Ctrl-C or SIGTERM exits with 130), checks (box, ball, finite) before an atomic
write of the ``.npy`` (float32, the data's shape), then ``<output>.json`` (:func:`summary`).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from typing import Any, Dict, Optional, Tuple

import numpy as np
from absl import flags, logging

from daa_tf import catalogue

from challenges import cli, data_source, model_source, options, registry, resolve, runner
from challenges import submission

MODULE = "challenges.attack"
GENERIC_STEPS = 100
STEP_SIZE_FACTOR = 2.5  # generic step size: 2.5 * epsilon / steps (Madry et al. 2018)
EVAL_PIXELS = 2 ** 24   # pixel values per scoring batch without a challenge (at most 1000 images)

_HERE = "challenges.attack: the challenge whose model the --model adapter loads; without one, "
_GENERIC_HELP = {
    "epsilon": "challenges.attack: the bound of the challenge whose model the --model adapter "
               "loads; without one, required.",
    "step_size": _HERE + f"{STEP_SIZE_FACTOR:g} * epsilon / steps.",
    "steps": _HERE + f"{GENERIC_STEPS}.",
    "restarts": _HERE + "1.",
    "random_start": _HERE + "true.",
    "particles": _HERE + f"{catalogue.DEFAULT_PARTICLES}.",
    "steps_per_round": _HERE + f"{catalogue.DEFAULT_STEPS_PER_ROUND}.",
}


def define_flags() -> None:
    """The generic runner's flags: the challenge runners' groups, with ``--model``, ``--data``,
    ``--clip_min``, ``--clip_max`` and ``--num_examples`` in place of the challenge's model and
    data flags."""
    options.define_attack_choice_flags()
    options.define_attack_setting_flags(None)
    options.tailor(help_texts={name: f"{flags.FLAGS[name].help} {text}"
                               for name, text in _GENERIC_HELP.items()})
    flags.DEFINE_string("model", None, "The attacked model: a .keras file, a SavedModel folder, "
                        "module:function (returning the model) or NAME:PATH with NAME an adapter "
                        "of daa_tf.models.LOADERS. It must return logits.", required=True)
    flags.DEFINE_string("data", None, "Labelled images: tfds:NAME[:SPLIT] (split default test), an "
                        ".npz with x and y, or a folder a challenge's loader reads (MNIST IDX "
                        "files, CIFAR-10 batches).", required=True)
    flags.DEFINE_float("clip_min", None, "Lowest pixel value (default: inferred from an adapter "
                       "of a challenge's model or a data folder; else required).")
    flags.DEFINE_float("clip_max", None, "Highest pixel value (default: as --clip_min). Integer "
                       "pixels of tfds: or an .npz are divided by 255 when it is at most 1.")
    for name in ("clip_min", "clip_max"):
        flags.register_validator(name, lambda v: v is None or math.isfinite(v),
                                 message=f"--{name} must be a finite number")
    options.define_data_flags(data_dir=False)
    options.tailor(help_texts={"num_examples": "Attack only the first N images."})
    options.define_run_flags("Continue from the state saved beside --output.")
    options.define_output_flag()
    options.define_tensorboard_flag()
    options.register_batch_size_validator("attack")
    options.list_flags_in_help()


def summary_path(output: str) -> str:
    """The run's summary beside the output: ``<output>.json``."""
    return output + ".json"


@dataclasses.dataclass
class GenericJob(runner.Job):
    """A :class:`challenges.runner.Job` with what the summary reports: the model and data
    descriptions, the number of classes, the clean accuracy (fraction) and where the box and
    epsilon came from."""

    model_text: str = ""
    data_text: str = ""
    num_classes: int = 0
    clean_accuracy: float = 0.0
    inferred: Dict[str, str] = dataclasses.field(default_factory=dict)


# ------------------------------------------------------------------------- what is inferred


def _bounds(f: flags.FlagValues, base: Optional[registry.Challenge],
            folder: Optional[data_source.Data]) -> Tuple[float, float, float, Dict[str, str]]:
    """``(clip_min, clip_max, epsilon, where each came from)``; SetupError when one is missing."""
    inferred: Dict[str, str] = {}
    values: Dict[str, float] = {}
    for name in ("clip_min", "clip_max"):
        if f[name].value is not None:
            values[name], inferred[name] = f[name].value, "flag"
        elif base is not None:
            values[name] = getattr(base.format, name)
            inferred[name] = f"the {base.name} challenge, whose model the adapter loads"
        elif folder is not None:
            values[name] = getattr(folder.challenge.format, name)
            inferred[name] = f"the data folder, read by the {folder.challenge.name} loader"
    missing = [f"--{name}" for name in ("clip_min", "clip_max") if name not in values]
    if missing:
        raise resolve.SetupError(
            f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} required: the pixel "
            "box is inferred only from an adapter of a challenge's model or a data folder a "
            "challenge's loader reads; e.g. --clip_min=0 --clip_max=1 for images in [0, 1]")
    if f.epsilon is not None:
        eps, inferred["epsilon"] = f.epsilon, "flag"
    elif base is not None:
        eps, inferred["epsilon"] = base.format.eps, f"the {base.name} challenge's bound"
    else:
        bounds = ", ".join(f"{n} {c.format.eps:g}" for n, c in registry.CHALLENGES.items())
        raise resolve.SetupError(f"--epsilon is required: it is inferred only for an adapter of a "
                                 f"challenge's model ({bounds}); --model={f.model} is not one")
    return values["clip_min"], values["clip_max"], eps, inferred


def _ad_hoc_challenge(f: flags.FlagValues, base: Optional[registry.Challenge], clip_min: float,
                      clip_max: float, eps: float) -> registry.Challenge:
    """The run as a challenge: the box and bound found, the adapter's challenge's defaults or the
    generic ones (the values of the setting flags not given: :func:`options.attack_setting`)."""
    if base is not None:
        defaults, eval_batch_size = base.defaults, base.eval_batch_size
    else:
        steps = f.steps or GENERIC_STEPS
        defaults = registry.Defaults(step_size=STEP_SIZE_FACTOR * eps / steps, steps=GENERIC_STEPS,
                                     restarts=1, random_start=True)
        eval_batch_size = catalogue.DEFAULT_BATCH
    fmt = submission.Format(image_shape=(), clip_min=clip_min, clip_max=clip_max, eps=eps)
    return registry.Challenge(name="attack", title="generic", format=fmt, data_loader="",
                              model_loader="", defaults=defaults, eval_batch_size=eval_batch_size)


def _with_data(challenge: registry.Challenge, base: Optional[registry.Challenge],
               x: np.ndarray) -> registry.Challenge:
    """``challenge`` whose format is the data's shape and size."""
    eval_batch_size = challenge.eval_batch_size
    if base is None:
        pixels = max(1, int(np.prod(x.shape[1:])))
        eval_batch_size = max(1, min(catalogue.DEFAULT_BATCH, EVAL_PIXELS // pixels))
    fmt = dataclasses.replace(challenge.format, image_shape=tuple(x.shape[1:]), num_test=len(x))
    return dataclasses.replace(challenge, format=fmt, eval_batch_size=eval_batch_size)


# ------------------------------------------------------------------------------ preparation


def check_model(model: Any, x: np.ndarray, y: np.ndarray, description: str) -> int:
    """Runs the model on the first images; refuses outputs that are not logits ``[n, C]``
    (probabilities included) and labels ``>= C``. Returns ``C``."""
    import tensorflow as tf

    from daa_tf import validation
    from daa_tf.loop import call_model

    probe_x = x[:64]
    try:
        output = call_model(model, tf.constant(probe_x))
    except Exception as err:  # noqa: BLE001 - whatever the model raises on these inputs
        raise resolve.SetupError(f"the model ({description}) fails on the data's images "
                                 f"{list(x.shape[1:])}: {type(err).__name__}: "
                                 f"{str(err).strip()[:500]}") from None
    try:
        probe = validation.logits_array(output, len(probe_x))
    except ValueError as err:  # a dict or list of outputs, or not [n, C]
        raise resolve.SetupError(f"refusing the model ({description}): {err}") from None
    if probe.shape[1] < 2:
        raise resolve.SetupError(f"refusing the model ({description}): it has one output; the "
                                 "attacks need one logit per class (at least 2)")
    if y.size and int(y.max()) >= probe.shape[1]:
        raise resolve.SetupError(f"refusing the model ({description}): it has {probe.shape[1]} "
                                 f"outputs (classes) but the labels go up to {int(y.max())}: the "
                                 "wrong number of classes for this data")
    try:
        return validation.check_model_output(lambda _: probe, probe_x, y,
                                             refuse_probabilities=True)
    except ValueError as err:
        raise resolve.SetupError(f"refusing the model ({description}): {err}") from None


def _load(model_spec: model_source.ModelSpec, data: data_source.Data,
          settings: catalogue.RunSettings, strategy: Any) -> Tuple[Any, str, int]:
    """The model fed the data, its description, its number of classes."""
    from daa_tf import validation

    validation.check_batch(data.x, data.y, settings.clip_min, settings.clip_max,
                           name="the data's images")
    loaded = model_source.load(model_spec, strategy.scope() if strategy is not None else None)
    model, reshaped = model_source.fit_input(loaded, data.x.shape[1:])
    text = loaded.description + (f"; {reshaped}" if reshaped else "")
    return model, text, check_model(model, data.x, data.y, loaded.description)


def prepare(f: flags.FlagValues) -> GenericJob:
    """Parses ``--model``/``--data``, infers or requires the box and bound, loads and checks the
    model and data, logs the setup and the clean accuracy."""
    model_spec = model_source.parse(f.model)
    data_spec = data_source.parse(f.data)
    base = model_source.adapter_challenge(model_spec)
    folder = (data_source.read_folder(data_spec, f.num_examples)
              if data_spec.kind == "folder" else None)
    clip_min, clip_max, eps, inferred = _bounds(f, base, folder)
    challenge = _ad_hoc_challenge(f, base, clip_min, clip_max, eps)
    settings = options.attack_settings(f, challenge, f.attack, f.loss, c=f.c)
    restarts = options.run_restarts(f, challenge, f.attack)
    steps_per_round = options.attack_setting(f, "steps_per_round", challenge)
    runner.warn_ignored_flags(f, settings)
    runner.warn_repeated_restarts(settings, restarts)
    resolve.check_output(f.output)
    strategy = resolve.distribution_strategy()
    data = folder or data_source.load(data_spec, clip_max, f.num_examples)
    model, model_text, num_classes = _load(model_spec, data, settings, strategy)
    challenge = _with_data(challenge, base, data.x)
    _, clean = resolve.score(challenge, model, data.x, data.y, settings.jit_compile)
    logging.info("attack: %s%s, seed %d, batch size %s, jit_compile %s",
                 catalogue.describe(settings, restarts),
                 f", rounds of {steps_per_round} steps" if settings.interacting else "",
                 f.seed, f.batch_size or "auto", f.jit_compile)
    logging.info("model: %s, %d classes", model_text, num_classes)
    logging.info("data: %s, %d images of shape %s", data.description, len(data.x),
                 list(data.x.shape[1:]))
    box_from = inferred["clip_min"] if inferred["clip_min"] == inferred["clip_max"] else (
        f"clip_min: {inferred['clip_min']}; clip_max: {inferred['clip_max']}")
    logging.info("box [%g, %g] (%s), epsilon %g (%s)", clip_min, clip_max, box_from, eps,
                 inferred["epsilon"])
    logging.info("clean accuracy: %.2f%%", 100 * clean)
    logging.info("output %s (state %s, summary %s)", f.output, runner.state_path(f.output),
                 summary_path(f.output))
    return GenericJob(challenge, settings, strategy, model, data.x, data.y, restarts,
                      steps_per_round, model_text=model_text, data_text=data.description,
                      num_classes=num_classes, clean_accuracy=clean, inferred=inferred)


# ---------------------------------------------------------------------------------- summary


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def summary(f: flags.FlagValues, job: GenericJob, outcome: runner.Outcome) -> Dict[str, Any]:
    """The summary written beside the output: the command, settings, model and data, accuracies
    (fractions), gradients per image (None when the library does not count them), seconds, and
    the ``.npy``'s shape and sha256 (which ties the summary to the file)."""
    import tensorflow as tf

    import daa_tf

    settings = dataclasses.asdict(job.settings)
    if "loss" in settings:  # a cascade's stages hold their own losses
        settings["loss"] = settings["loss"] if isinstance(settings["loss"], str) else "custom"
    settings.update(restarts=job.restarts, seed=f.seed, batch_size=f.batch_size,
                    distribute=f.distribute)
    if job.settings.interacting:
        settings["steps_per_round"] = job.steps_per_round
    result = outcome.result
    return {
        "command": cli.command(MODULE),
        "settings": settings,
        "inferred": job.inferred,
        "model": {"spec": f.model, "description": job.model_text,
                  "num_classes": job.num_classes},
        "data": {"spec": f.data, "description": job.data_text, "num_examples": len(job.x),
                 "image_shape": list(job.x.shape[1:])},
        "clean_accuracy": job.clean_accuracy,
        "adversarial_accuracy": outcome.accuracy,
        "restart_accuracies": list(result.restart_accuracies),
        "gradients_per_image": getattr(result, "gradients_per_image", None),
        "queries_per_image": getattr(result, "queries_per_image", None),
        "perturbation": {"linf": outcome.size.linf, "mean_l2": outcome.size.mean_l2},
        "seconds": outcome.seconds,
        "attack_seconds": float(sum(result.restart_seconds)),
        "restarts_resumed": len(result.restart_accuracies) - len(result.restart_seconds),
        "output": {"file": f.output, "shape": list(job.x.shape), "dtype": "float32",
                   "sha256": _sha256(f.output)},
        "versions": {"daa_tf": daa_tf.__version__, "tensorflow": tf.__version__},
    }


def write_summary(f: flags.FlagValues, job: GenericJob, outcome: runner.Outcome) -> None:
    """Writes :func:`summary` atomically to ``<output>.json`` (after the checked ``.npy``)."""
    from daa_tf.files import atomic_write

    path = summary_path(f.output)
    text = json.dumps(summary(f, job, outcome), indent=2) + "\n"
    try:
        atomic_write(path, lambda fh: fh.write(text), binary=False)
    except OSError as err:
        raise resolve.SetupError(f"wrote {f.output} but not its summary {path}: {err}") from None
    logging.info("summary: %s", path)


def run(f: flags.FlagValues) -> int:
    """The generic runner. Returns the exit status."""
    return runner.execute(f, MODULE, prepare,
                          lambda job, outcome: write_summary(f, job, outcome))


if __name__ == "__main__":
    cli.main(define_flags, run)
