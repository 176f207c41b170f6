"""What the challenge runners (``challenges.mnist``, ``challenges.cifar10``,
``challenges.fashion_mnist``) share: the per-challenge table, the flags, model and data
resolution, the run itself, the checked atomic write and the logs.

Flow: flags -> data (``daa_tf.data``) -> model (``daa_tf.models``) -> ``daa_tf.run`` (resumable
state beside the output) -> :mod:`challenges.submission` (checks, then an atomic write).

TensorFlow is imported only once the flags are parsed, so ``--help`` and flag errors answer at once.
"""
from __future__ import annotations

import contextlib
import dataclasses
import importlib
import os
import shlex
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np
from absl import app, flags, logging

from challenges import submission

# Mirrors of daa_tf.attacks.ATTACKS and the losses (checked equal by the tests), kept here so that
# flag parsing does not import TensorFlow.
ATTACKS = ("fgsm", "pgd", "momentum_pgd", "daa_blob", "daa_dgf")
DAA_ATTACKS = ("daa_blob", "daa_dgf")
LOSSES = ("xent", "cw")
MODELS = ("natural", "adv_trained", "secret")
JIT = {"auto": None, "true": True, "false": False}


@dataclasses.dataclass(frozen=True)
class Defaults:
    """The attack settings of the paper (ALGORITHMS.md, "Defaults that reproduce the paper")."""

    step_size: float
    steps: int
    restarts: int
    random_start: bool
    particles: int = 200
    steps_per_round: int = 10


@dataclasses.dataclass(frozen=True)
class Challenge:
    """One challenge: its file format, where its data and model come from, its defaults.

    Loaders are ``"module:function"`` names, imported on use (they pull in TensorFlow).
    """

    name: str
    title: str
    format: submission.Format
    data_loader: str
    model_loader: str
    downloadable: bool      # MadryLab publish the models (natural, adv_trained, secret)
    defaults: Defaults
    eval_batch_size: int    # batch of the final scoring (runner and evaluator alike)


CHALLENGES: Dict[str, Challenge] = {
    "mnist": Challenge(
        "mnist", "MNIST", submission.Format((784,), 0.0, 1.0, 0.3),
        "daa_tf.data:load_mnist", "daa_tf.models:load_madry_mnist", True,
        Defaults(step_size=0.01, steps=200, restarts=50, random_start=True), 1000),
    "cifar10": Challenge(
        # Madry's PGD-20 setting (no random start, one run); the paper's DAA used 100 steps and
        # 10 restarts: --steps=100 --restarts=10 --random_start.
        "cifar10", "CIFAR10", submission.Format((32, 32, 3), 0.0, 255.0, 8.0),
        "daa_tf.data:load_cifar10", "daa_tf.models:load_madry_cifar10", True,
        Defaults(step_size=2.0, steps=20, restarts=1, random_start=False), 100),
    "fashion_mnist": Challenge(
        "fashion_mnist", "Fashion-MNIST", submission.Format((784,), 0.0, 1.0, 0.2),
        "daa_tf.data:load_fashion_mnist", "daa_tf.models:load_daa_fashion_mnist", False,
        Defaults(step_size=0.01, steps=100, restarts=10, random_start=True), 1000),
}


class SetupError(Exception):
    """The model or data cannot be had as the flags say; the message tells the user what to do."""


def _function(name: str) -> Callable[..., Any]:
    module, attr = name.split(":")
    return getattr(importlib.import_module(module), attr)


# ----------------------------------------------------------------------------------------- flags


def define_model_data_flags(challenge: Optional[Challenge]) -> None:
    """``--model_dir``, ``--model``, ``--data_dir``, ``--num_examples`` (runners and evaluator)."""
    fetch = ("required: MadryLab publish no Fashion-MNIST model"
             if challenge is not None and not challenge.downloadable else
             "default: --model is downloaded once into the cache ($DAA_TF_CACHE or "
             "~/.cache/daa_tf) and reused")
    flags.DEFINE_string("model_dir", None, f"Checkpoint folder of the attacked model ({fetch}).")
    flags.DEFINE_enum("model", "secret", list(MODELS),
                      "MadryLab model to download when --model_dir is not given (MNIST, CIFAR10).")
    flags.DEFINE_string("data_dir", None, "Test data: IDX files (MNIST, Fashion-MNIST), CIFAR-10 "
                        "python batches, or an .npz with x and y (default: tensorflow-datasets).")
    flags.DEFINE_integer("num_examples", None, "Use only the first N test images (the file is "
                         "then not a leaderboard submission).", lower_bound=1)


def define_flags(challenge: Challenge) -> None:
    """Defines the runner's flags with ``challenge``'s defaults, and their validators."""
    d = challenge.defaults
    flags.DEFINE_enum("attack", "daa_blob", list(ATTACKS), "The attack.")
    flags.DEFINE_enum("loss", "xent", list(LOSSES), "Loss: cross-entropy or the CW margin.")
    flags.DEFINE_float("epsilon", challenge.format.eps, "L-inf radius in pixel units "
                       f"(the challenge's bound: {challenge.format.eps:g}).")
    flags.DEFINE_float("step_size", d.step_size, "Step size in pixel units (fgsm: epsilon "
                       "unless given).")
    flags.DEFINE_integer("steps", d.steps, "Steps per restart (fgsm: 1).", lower_bound=1)
    flags.DEFINE_integer("restarts", d.restarts, "Restarts; the file keeps each image's worst "
                         "case over them.", lower_bound=1)
    flags.DEFINE_boolean("random_start", d.random_start, "Start every restart at a uniform "
                         "random point of the eps-ball.")
    flags.DEFINE_integer("particles", d.particles, "DAA: particles (images) per group.",
                         lower_bound=2)
    flags.DEFINE_integer("steps_per_round", d.steps_per_round, "DAA: steps per round (the set is "
                         "re-permuted into groups every round).", lower_bound=1)
    flags.DEFINE_float("c", None, "DAA constant (default: blob 1.1 xent / 10 cw; dgf -0.001 "
                       "xent / -0.01 cw).")
    define_model_data_flags(challenge)
    flags.DEFINE_integer("batch_size", None, "Images per compiled call (throughput only; DAA: a "
                         "multiple of --particles; default about 1000).", lower_bound=1)
    flags.DEFINE_integer("seed", 0, "Random seed (starts and DAA permutations).", lower_bound=0)
    flags.DEFINE_string("output", "attack.npy", "Where to write the adversarial images.")
    flags.DEFINE_boolean("resume", False, "Continue from the state saved beside --output.")
    flags.DEFINE_enum("jit_compile", "auto", list(JIT), "XLA: auto (GPU/TPU only), true, false.")
    define_distribute_flag()

    for name in ("epsilon", "step_size"):
        flags.register_validator(name, lambda v: v is not None and np.isfinite(v) and v > 0,
                                 message=f"--{name} must be a positive number")
    flags.register_validator("c", lambda v: v is None or bool(np.isfinite(v)),
                             message="--c must be a finite number")
    flags.register_validator("output", bool, message="--output must name a file")
    flags.register_multi_flags_validator(
        ["attack", "batch_size", "particles"],
        lambda v: (v["attack"] not in DAA_ATTACKS or v["batch_size"] is None
                   or v["batch_size"] % v["particles"] == 0),
        message="--batch_size must be a multiple of --particles for the DAA attacks")


def list_flags_in_help() -> None:
    """Makes the flags defined here key flags of the main module, so that ``--help`` (not only
    ``--helpfull``) lists them (absl names the main module by ``sys.argv[0]``)."""
    for flag in flags.FLAGS.get_flags_for_module(__name__):
        flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)


def attack_settings(challenge: Challenge, f: flags.FlagValues) -> Dict[str, Any]:
    """The keyword arguments of ``daa_tf.run`` that the flags ask for."""
    steps, step_size = f.steps, f.step_size
    if f.attack == "fgsm":
        if f["steps"].present and f.steps != 1:
            raise app.UsageError("--attack=fgsm takes exactly one step: drop --steps")
        steps = 1
        if not f["step_size"].present:
            step_size = f.epsilon
    settings: Dict[str, Any] = dict(
        attack=f.attack, restarts=f.restarts, steps_per_round=f.steps_per_round,
        batch_size=f.batch_size, seed=f.seed, eps=f.epsilon, step_size=step_size, steps=steps,
        loss=f.loss, random_start=f.random_start, clip_min=challenge.format.clip_min,
        clip_max=challenge.format.clip_max, jit_compile=JIT[f.jit_compile])
    if f.attack in DAA_ATTACKS:
        settings.update(c=f.c, particles=f.particles)
    else:
        for name in ("c", "particles", "steps_per_round"):
            if f[name].present:
                logging.warning("--%s is a DAA setting: ignored by --attack=%s", name, f.attack)
    return settings


# ------------------------------------------------------------------------- model and data


def _no_download(challenge: Challenge) -> SetupError:
    return SetupError(f"--model_dir is required for {challenge.title}: MadryLab publish no "
                      f"{challenge.title} model, so there is nothing to download; pass the folder "
                      "of the checkpoint to attack")


def check_paths(challenge: Challenge, model_dir: Optional[str], data_dir: Optional[str]) -> None:
    """Refuses a ``--model_dir`` / ``--data_dir`` that does not exist, or a missing
    ``--model_dir`` where nothing can be downloaded (before importing TensorFlow)."""
    if model_dir is None and not challenge.downloadable:
        raise _no_download(challenge)
    for flag, path in (("--model_dir", model_dir), ("--data_dir", data_dir)):
        if path is not None and not os.path.exists(path):
            raise SetupError(f"{flag}={path} does not exist")


def check_output(output: str) -> None:
    """Refuses an ``--output`` that could not be written (before the attack runs, not after)."""
    folder = os.path.dirname(os.path.abspath(output))
    if os.path.isdir(output):
        raise SetupError(f"--output={output} is a folder; name the file to write")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as err:
        raise SetupError(f"--output={output}: cannot create its folder ({err})") from None
    if not os.access(folder, os.W_OK):
        raise SetupError(f"--output={output}: the folder {folder} is not writable")


def load_data(challenge: Challenge, data_dir: Optional[str], num_examples: Optional[int]
              ) -> Tuple[np.ndarray, np.ndarray, str]:
    """The first ``num_examples`` (default: all) test images, labels, and where they came from."""
    from daa_tf.data import DataNotFoundError

    source = data_dir or "tensorflow-datasets"
    try:
        x, y = _function(challenge.data_loader)("test", data_dir, num_examples)
    except DataNotFoundError as err:
        raise SetupError(f"no {challenge.title} test data: {err}") from None
    except ValueError as err:
        raise SetupError(f"cannot use the {challenge.title} test data from {source}: {err}"
                         ) from None
    return x, y, source


def model_path(challenge: Challenge, model_dir: Optional[str], model: str) -> Path:
    """``model_dir``, or MadryLab's ``model`` fetched into the cache once."""
    if model_dir is not None:
        return Path(model_dir)
    if not challenge.downloadable:
        raise _no_download(challenge)
    from challenges.fetch_model import FetchError, ensure_model

    try:
        return ensure_model(challenge.name, model)
    except FetchError as err:
        raise SetupError(f"could not download the {challenge.title} {model} model: {err} "
                         "Or pass --model_dir=<checkpoint folder>.") from None


def load_model(challenge: Challenge, path: Path) -> Any:
    """The Keras port of ``challenge``'s model with the weights of the checkpoint at ``path``."""
    try:
        return _function(challenge.model_loader)(path)
    except (OSError, ValueError) as err:
        raise SetupError(f"cannot load the {challenge.title} model from {path}: {err}") from None


def load_inputs(challenge: Challenge, model_dir: Optional[str], model: str,
                data_dir: Optional[str], num_examples: Optional[int],
                scope: Any = None) -> Tuple[Any, Path, np.ndarray, np.ndarray, str]:
    """``(model, model_path, x, y, data_source)``; when both the download of the model and the
    data fail, one message names both flags. The model is built under ``scope`` if given."""
    errors = []
    try:
        x, y, source = load_data(challenge, data_dir, num_examples)
    except SetupError as err:
        errors.append(str(err))
    try:
        path = model_path(challenge, model_dir, model)
    except SetupError as err:
        errors.append(str(err))
    if len(errors) == 2 and model_dir is None and data_dir is None:
        raise SetupError("could get neither the model nor the data (offline?): pass "
                         "--model_dir=<checkpoint folder> and --data_dir=<data folder>.\n  "
                         + "\n  ".join(errors))
    if errors:
        raise SetupError("\n".join(errors))
    with scope or contextlib.nullcontext():
        net = load_model(challenge, path)
    return net, path, x, y, source


def score(challenge: Challenge, model: Any, x: np.ndarray, y: np.ndarray,
          jit_compile: Optional[bool] = None) -> Tuple[np.ndarray, float]:
    """Predictions and accuracy of ``model`` on ``x``: the leaderboard's number (runner and
    evaluator compute it the same way)."""
    import daa_tf

    pred, _, _ = daa_tf.evaluate(model, x, y, batch_size=challenge.eval_batch_size,
                                 jit_compile=jit_compile)
    return pred, float(np.mean(pred == y))


def define_distribute_flag() -> None:
    """``--distribute`` (``daa_tf.distribute.STRATEGIES``, mirrored here to keep TF unimported)."""
    flags.DEFINE_enum("distribute", "none", ["none", "mirrored", "multi_worker"],
                      "tf.distribute: none (one device), mirrored (every local GPU), multi_worker "
                      "(MultiWorkerMirroredStrategy from TF_CONFIG: start the same command on "
                      "every worker). Same results; --batch_size is then per device.")


def distribution_strategy() -> Any:
    """The ``tf.distribute`` strategy of ``--distribute``, or None (one device; also when the
    program defines no ``--distribute``). Call it before TensorFlow runs anything (multi-worker
    collectives are set up at start); build the model under its scope, pass it to ``daa_tf.run``.
    """
    if "distribute" not in flags.FLAGS:
        return None
    from daa_tf.distribute import make_strategy

    return make_strategy(flags.FLAGS.distribute)


# ---------------------------------------------------------------------------------------- run


def state_path(output: str) -> str:
    """The resumable state beside the output: ``<output>.state.npz``."""
    return output + ".state.npz"


def _resume_command(challenge: Challenge) -> str:
    args = [a for a in sys.argv[1:]
            if a.split("=")[0] not in ("--resume", "--noresume", "-resume", "-noresume")]
    return shlex.join(["python", "-m", f"challenges.{challenge.name}", *args, "--resume"])


def _saved_restarts(state: str) -> Optional[int]:
    try:
        with np.load(state) as saved:
            return len(saved["restart_accuracies"])
    except Exception:  # noqa: BLE001 - only for the message
        return None


def _describe(challenge: Challenge, s: Dict[str, Any]) -> str:
    from daa_tf import attacks

    parts = [f"{challenge.title} challenge: {s['attack']}, loss {s['loss']}",
             f"eps {s['eps']:g}", f"step size {s['step_size']:g}", f"{s['steps']} steps",
             f"{s['restarts']} restarts",
             "random start" if s["random_start"] else "no random start"]
    if s["attack"] in DAA_ATTACKS:
        c = attacks.DEFAULT_C[s["attack"]][s["loss"]] if s["c"] is None else s["c"]
        parts += [f"c {c:g}" + (" (default)" if s["c"] is None else ""),
                  f"{s['particles']} particles per group",
                  f"rounds of {s['steps_per_round']} steps"]
    parts += [f"seed {s['seed']}", f"batch size {s['batch_size'] or 'auto'}",
              f"jit_compile {s['jit_compile'] if s['jit_compile'] is not None else 'auto'}"]
    return ", ".join(parts)


def run(challenge: Challenge, f: flags.FlagValues) -> int:
    """The runner: attack, log, check and write ``--output``. Returns the exit status."""
    started = time.perf_counter()
    settings = attack_settings(challenge, f)
    output, state = f.output, state_path(f.output)
    if f.num_examples is not None:
        logging.warning("*** --num_examples=%d: the output covers only the first %d test images; "
                        "it is NOT a leaderboard submission. ***", f.num_examples, f.num_examples)
    if settings["eps"] > challenge.format.eps + submission.EPS_TOLERANCE:
        logging.warning("*** --epsilon=%g exceeds the %s bound %g: the file is NOT a leaderboard "
                        "submission (evaluate it with --epsilon=%g). ***", settings["eps"],
                        challenge.title, challenge.format.eps, settings["eps"])
    if settings["restarts"] > 1 and not settings["random_start"] and \
            settings["attack"] not in DAA_ATTACKS:
        logging.warning("%d restarts of %s without --random_start repeat the same run",
                        settings["restarts"], settings["attack"])
    try:
        check_paths(challenge, f.model_dir, f.data_dir)
        check_output(output)
        strategy = distribution_strategy()
        model, path, x, y, source = load_inputs(
            challenge, f.model_dir, f.model, f.data_dir, f.num_examples,
            strategy.scope() if strategy is not None else None)
        if f.model_dir is not None and f["model"].present:
            logging.warning("--model is ignored: --model_dir is given")
        if len(x) < challenge.format.num_test and f.num_examples is None:
            logging.warning("*** the test data holds only %d images (the test set has %d): the "
                            "output is NOT a leaderboard submission. ***", len(x),
                            challenge.format.num_test)
        logging.info("%s", _describe(challenge, settings))
        logging.info("model %s; data %s, %d images; output %s (state %s)", path, source, len(x),
                     output, state)
        if f.resume:
            logging.info("resuming from %s" if os.path.exists(state) else
                         "--resume: no state at %s, starting afresh", state)
        elif os.path.exists(state):
            logging.warning("the existing state %s will be replaced by this run's (pass --resume "
                            "to continue from it instead)", state)

        import daa_tf
        from daa_tf.distribute import is_chief

        def log_restart(index: int, accuracy: float, seconds: float) -> None:
            logging.info("restart %d/%d: accuracy %.2f%% (%.1f s)", index + 1,
                         settings["restarts"], 100 * accuracy, seconds)

        extra = {"strategy": strategy} if strategy is not None else {}
        result = daa_tf.run(model, x, y, verbose=1, state_path=state, resume=f.resume,
                            on_restart=log_restart, **extra, **settings)
        resumed = len(result.restart_accuracies) - len(result.restart_seconds)
        for i, accuracy in enumerate(result.restart_accuracies[:resumed]):
            logging.info("restart %d/%d: accuracy %.2f%% (earlier run)", i + 1,
                         settings["restarts"], 100 * accuracy)
        chief = is_chief(strategy)  # multi-worker runs: every worker computes, the chief writes
        _, accuracy = score(challenge, model, result.x_adv, y, settings["jit_compile"])
        if chief:
            size = submission.write(output, result.x_adv, x, challenge.format, settings["eps"])
        else:
            size = submission.check(result.x_adv, x, challenge.format, settings["eps"])
    except KeyboardInterrupt:
        saved = _saved_restarts(state) if os.path.exists(state) else None
        where = (f"{saved} of {settings['restarts']} restarts are saved in {state}"
                 if saved is not None else "no restart has finished yet, nothing is saved")
        logging.error("interrupted: %s; %s was not written. Resume with:\n  %s", where, output,
                      _resume_command(challenge))
        return 130
    except submission.InvalidSubmission as err:
        logging.error("refusing to write %s: %s", output, err)
        return 1
    except (SetupError, ValueError) as err:
        logging.error("%s", err)
        return 1
    logging.info("final accuracy: %.2f%%", 100 * accuracy)
    logging.info("perturbation: L-inf %g, mean L2 %g (pixel units)", size.linf, size.mean_l2)
    logging.info("wrote %s %s float32; elapsed %.1f s", output, challenge.format.shape(len(x)),
                 time.perf_counter() - started)
    if chief:
        with contextlib.suppress(FileNotFoundError):
            os.remove(state)
    return 0


def _sigterm_as_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(challenge_name: str) -> None:
    """Entry point of ``python -m challenges.<challenge_name>``: defines the flags and runs."""
    challenge = CHALLENGES[challenge_name]
    define_flags(challenge)
    list_flags_in_help()

    def _main(argv: list) -> int:
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
        signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
        return run(challenge, flags.FLAGS)

    app.run(_main)
