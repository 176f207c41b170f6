"""The challenge runners (``challenges.mnist``, ``challenges.cifar10``,
``challenges.fashion_mnist``, ``challenges.imagenet``): attack the challenge's model over its test
set and write a checked leaderboard file.

Flow: flags (:mod:`challenges.options`) -> data and model (:mod:`challenges.resolve`) ->
``daa_tf.run`` (resumable state beside the output) -> :mod:`challenges.submission` (checks, then an
atomic write). TensorFlow is imported only once the flags are parsed, so ``--help`` and flag
errors answer at once.

:func:`execute` is that flow after the preparation (state, attack, restart logs, score, checked
write, interruption, final logs); the generic runner (:mod:`challenges.attack`) runs it too, with
its own preparation (a :class:`Job`) and a summary written beside the output.

A targeted challenge (``registry.Challenge.targets``) adds ``--target``: the preparation chooses
the target classes by that rule, the attack aims at them (``daa_tf.run`` with ``targeted=True``
and the targets as labels) and the logs add the targeted success rate (the fraction of images
classified as their target) to the top-1 accuracy against the true labels.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from typing import Any, Callable, Optional

import numpy as np
from absl import flags, logging

from daa_tf import catalogue

from challenges import cli, options, registry, resolve, submission


def define_flags(challenge: registry.Challenge) -> None:
    """The runner's flags, with ``challenge``'s defaults (and ``--target`` if it is targeted)."""
    options.define_attack_choice_flags()
    options.define_attack_setting_flags(challenge)
    options.define_model_data_flags(challenge)
    options.define_run_flags("Continue from the state saved beside --output.")
    options.define_output_flag()
    options.define_tensorboard_flag()
    options.register_batch_size_validator("attack")
    if challenge.targets is not None:
        define_target_flag(challenge.targets)
    options.list_flags_in_help()


def define_target_flag(targets: Optional[registry.Targets]) -> None:
    """``--target``: the rule choosing each image's target class. ``targets`` None (the evaluator,
    which learns the challenge from a flag): every targeted challenge's rules, default None (the
    challenge's own)."""
    if targets is not None:
        flags.DEFINE_enum("target", targets.default, list(targets.choices),
                          f"Target class of each image: {targets.about}.")
        return
    ruled = [c for c in registry.CHALLENGES.values() if c.targets is not None]
    choices = list(dict.fromkeys(rule for c in ruled for rule in c.targets.choices))
    flags.DEFINE_enum("target", None, choices, "Targeted challenges: the rule that chose the "
                      "target classes, as the runner's --target (default: the challenge's: "
                      + "; ".join(f"{c.name} {c.targets.default}" for c in ruled) + ").")


def choose_targets(challenge: registry.Challenge, rule: str, model: Any, x: np.ndarray,
                   y: np.ndarray, seed: int, data_dir: Optional[str],
                   num_examples: Optional[int], jit_compile: Optional[bool]) -> np.ndarray:
    """The target classes ``[N]`` int64 of a targeted challenge by ``rule`` (runner and evaluator
    alike)."""
    if challenge.targets is None:
        raise ValueError(f"the {challenge.title} challenge is untargeted: it has no --target")
    return np.asarray(challenge.targets.choose(
        rule, model=model, x=x, y=y, seed=seed, data_dir=data_dir, num_examples=num_examples,
        batch_size=challenge.eval_batch_size, jit_compile=jit_compile), np.int64)


def success_rate(pred: np.ndarray, targets: np.ndarray) -> float:
    """The targeted success rate: the fraction of predictions equal to their target."""
    return float(np.mean(np.asarray(pred) == np.asarray(targets)))


def state_path(output: str) -> str:
    """The resumable state beside the output: ``<output>.state.npz``."""
    return output + ".state.npz"


def _saved_restarts(state: str) -> Optional[int]:
    try:
        with np.load(state) as saved:
            return len(saved["restart_accuracies"])
    except Exception:  # noqa: BLE001 - only for the message
        return None


def _warn_not_a_submission(challenge: registry.Challenge, settings: catalogue.RunSettings,
                           restarts: int) -> None:
    if settings.eps > challenge.format.eps + submission.EPS_TOLERANCE:
        logging.warning("*** --epsilon=%g exceeds the %s bound %g: the file is NOT a leaderboard "
                        "submission (evaluate it with --epsilon=%g). ***", settings.eps,
                        challenge.title, challenge.format.eps, settings.eps)
    warn_repeated_restarts(settings, restarts)


def _warn_partial(challenge: registry.Challenge, n: int, num_examples: Optional[int]) -> None:
    """Warns, once the data is loaded, that ``n`` test images are fewer than the test set."""
    if n >= challenge.format.num_test:
        return
    if num_examples is not None:
        logging.warning("*** --num_examples=%d: the output covers only the first %d of the %d "
                        "test images; it is NOT a leaderboard submission. ***", num_examples, n,
                        challenge.format.num_test)
    else:
        logging.warning("*** the test data holds only %d images (the test set has %d): the "
                        "output is NOT a leaderboard submission. ***", n,
                        challenge.format.num_test)


def warn_repeated_restarts(settings: catalogue.RunSettings, restarts: int) -> None:
    """Warns that restarts of a deterministic attack repeat the same run."""
    if restarts > 1 and not settings.random_start and not settings.interacting:
        logging.warning("%d restarts of %s without --random_start repeat the same run",
                        restarts, settings.attack)


# Flags an attack does not read: DAA's for the other attacks; the cascade's stages set all these.
_DAA_FLAGS = ("c", "particles", "steps_per_round")
_CASCADE_IGNORES = ("loss", "step_size", "random_start") + _DAA_FLAGS


def warn_ignored_flags(f: flags.FlagValues, settings: catalogue.RunSettings) -> None:
    """Warns about each flag given explicitly that ``settings``' attack does not read."""
    warned = []
    if catalogue.is_cascade(settings):
        autoattack = settings.attack == "autoattack"
        warned.append((_CASCADE_IGNORES + (("steps",) if autoattack else ()),
                       "set by the cascade's stages"))
    else:
        warned.append((() if settings.interacting else _DAA_FLAGS, "a DAA setting"))
    if settings.attack != "autoattack":
        warned.append((("autoattack_version",), "AutoAttack's setting"))
    if settings.attack != "strongest":
        warned.append((("queries",), "strongest's setting"))
    for ignored, what in warned:
        for name in ignored:
            if name in f and f[name].present:
                logging.warning("--%s is %s: ignored by --attack=%s", name, what,
                                settings.attack)


def log_state(f: flags.FlagValues, state: str) -> None:
    if f.resume:
        logging.info("resuming from %s" if os.path.exists(state) else
                     "--resume: no state at %s, starting afresh", state)
    elif os.path.exists(state):
        logging.warning("the existing state %s will be replaced by this run's (pass --resume "
                        "to continue from it instead)", state)


def _restart_score(settings: catalogue.RunSettings, accuracy: float) -> str:
    """A restart's figure: its accuracy, or for a targeted attack its success rate (``daa_tf.run``
    reports the fraction of images not classified as their target)."""
    if settings.targeted:
        return f"targeted success {100 * (1 - accuracy):.2f}%"
    return f"accuracy {100 * accuracy:.2f}%"


def _part(settings: catalogue.RunSettings, index: int, restarts: int) -> str:
    """How the logs name run ``index``: ``restart i/R``, or a cascade's ``stage i`` (counted over
    its restarts)."""
    if catalogue.is_cascade(settings):
        return f"stage {index + 1}"
    return f"restart {index + 1}/{restarts}"


def _stage_name(settings: catalogue.RunSettings, index: int) -> str:
    """`` after <stage>`` for a cascade's run ``index`` (its stages on a 10-class model), else
    nothing."""
    if not catalogue.is_cascade(settings):
        return ""
    stages = settings.stages_for(10, checked=False)
    stage = stages[index % len(stages)]
    restarts = f" x {stage.restarts}" if stage.restarts > 1 else ""
    return f" after {stage.label}{restarts}"


def _attack(f: flags.FlagValues, job: "Job", state: str) -> Any:
    """``daa_tf.run`` with live restart logs; returns its result."""
    import daa_tf

    settings = job.settings
    board = _summaries(f, job)

    def log_restart(index: int, accuracy: float, seconds: float) -> None:
        logging.info("%s: %s (%.1f s)%s", _part(settings, index, job.restarts),
                     _restart_score(settings, accuracy), seconds, _stage_name(settings, index))
        if board is not None:
            board.on_restart(index, accuracy, seconds)

    extra = {"strategy": job.strategy} if job.strategy is not None else {}
    labels = job.y if job.targets is None else job.targets
    batch_size = f.batch_size if job.batch_size is None else job.batch_size
    result = daa_tf.run(job.model, job.x, labels, settings, restarts=job.restarts,
                        steps_per_round=job.steps_per_round, batch_size=batch_size, seed=f.seed,
                        verbose=f.verbose, state_path=state, resume=f.resume,
                        on_restart=log_restart, **extra)
    resumed = len(result.restart_accuracies) - len(result.restart_seconds)
    for i, accuracy in enumerate(result.restart_accuracies[:resumed]):
        logging.info("%s: %s (earlier run)", _part(settings, i, job.restarts),
                     _restart_score(settings, accuracy))
    if board is not None:
        board.result(result, job.x, result.x_adv, settings.clip_min, settings.clip_max,
                     settings.eps)
        board.close()
    return result


def _summaries(f: flags.FlagValues, job: "Job") -> Any:
    """The TensorBoard writer of ``--tensorboard_dir`` (:class:`daa_tf.summaries.RunSummaries`),
    or None without it (or on a non-chief worker)."""
    if "tensorboard_dir" not in f or not f.tensorboard_dir:
        return None
    from daa_tf.distribute import is_chief
    from daa_tf.summaries import RunSummaries

    return RunSummaries(f.tensorboard_dir) if is_chief(job.strategy) else None


@dataclasses.dataclass
class Job:
    """A prepared attack: ``challenge`` gives the output's format (checked before writing) and the
    scoring batch size; ``settings`` the attack; ``model`` maps ``x`` to logits; ``x`` ``[N, ...]``
    float32 in the box, ``y`` ``[N]`` labels; ``strategy`` the ``tf.distribute`` one or None;
    ``restarts`` and (DAA) ``steps_per_round`` the run's. ``targets`` ``[N]``: the target classes
    of a targeted attack (chosen by the rule ``target_rule``), else None. ``batch_size``: images
    per compiled call (None: ``--batch_size``).
    """

    challenge: registry.Challenge
    settings: catalogue.RunSettings
    strategy: Any
    model: Any
    x: np.ndarray
    y: np.ndarray
    restarts: int
    steps_per_round: int
    targets: Optional[np.ndarray] = None
    target_rule: str = ""
    batch_size: Optional[int] = None


@dataclasses.dataclass
class Outcome:
    """A finished attack: ``daa_tf.run``'s result, the final accuracy (fraction), the perturbation
    and the seconds since the runner started; ``success`` the targeted success rate (fraction;
    None for an untargeted attack) and ``pred`` ``[N]`` the final predictions."""

    result: Any
    accuracy: float
    size: submission.Perturbation
    seconds: float
    success: Optional[float] = None
    pred: Optional[np.ndarray] = None


def _interrupted(f: flags.FlagValues, module: str, output: str, state: str,
                 restarts: Optional[int]) -> int:
    saved = _saved_restarts(state) if os.path.exists(state) else None
    part = "stages" if catalogue.is_cascade(f.attack) else f"of {restarts} restarts"
    where = (f"{saved} {part} are saved in {state}"
             if saved is not None else "nothing has finished yet, nothing is saved")
    logging.error("interrupted: %s; %s was not written. Resume with:\n  %s", where, output,
                  cli.command(module, resume=True))
    return cli.INTERRUPTED


def execute(f: flags.FlagValues, module: str, prepare: Callable[[flags.FlagValues], Job],
            written: Optional[Callable[[Job, Outcome], None]] = None) -> int:
    """The runners' flow: ``prepare(f)``, then the attack with its state beside ``--output``, the
    score, the checked atomic write (by the chief worker), ``written(job, outcome)`` once the file
    is written, the logs. Interrupted (Ctrl-C, SIGTERM): says how to resume ``python -m
    <module>``. Returns the exit status."""
    started = time.perf_counter()
    output, state = f.output, state_path(f.output)
    job: Optional[Job] = None
    try:
        job = prepare(f)
        log_state(f, state)
        from daa_tf.distribute import is_chief

        result = _attack(f, job, state)
        chief = is_chief(job.strategy)  # multi-worker runs: every worker computes, the chief writes
        pred, accuracy = resolve.score(job.challenge, job.model, result.x_adv, job.y,
                                       job.settings.jit_compile)
        success = None if job.targets is None else success_rate(pred, job.targets)
        fmt, eps = job.challenge.format, job.settings.eps
        if chief:
            size = submission.write(output, result.x_adv, job.x, fmt, eps)
        else:
            size = submission.check(result.x_adv, job.x, fmt, eps)
        if chief and written is not None:
            written(job, Outcome(result, accuracy, size, time.perf_counter() - started, success,
                                 pred))
    except KeyboardInterrupt:
        return _interrupted(f, module, output, state,
                            f.restarts if job is None else job.restarts)
    except submission.InvalidSubmission as err:
        logging.error("refusing to write %s: %s", output, err)
        return 1
    except (resolve.SetupError, ValueError) as err:
        logging.error("%s", err)
        return 1
    logging.info("final accuracy: %.2f%%", 100 * accuracy)
    logging.info("gradients per image: budget %d, spent %.1f on average",
                 result.gradients_per_image, result.gradients_mean)
    if result.queries_per_image:
        logging.info("queries per image: budget %d, spent %.1f on average",
                     result.queries_per_image, result.queries_mean)
    if success is not None:
        logging.info("targeted success rate: %.2f%% (targets: %s)", 100 * success,
                     job.target_rule)
    logging.info("perturbation: L-inf %g, mean L2 %g (pixel units)", size.linf, size.mean_l2)
    logging.info("wrote %s %s float32; elapsed %.1f s", output,
                 job.challenge.format.shape(len(job.x)), time.perf_counter() - started)
    if chief:
        with contextlib.suppress(FileNotFoundError):
            os.remove(state)
    return 0


def prepare(challenge: registry.Challenge, f: flags.FlagValues) -> Job:
    """A challenge runner's preparation: settings, warnings, the model and the test data (and a
    targeted challenge's target classes), logs."""
    settings = _targeted(challenge, options.attack_settings(f, challenge, f.attack, f.loss, c=f.c))
    restarts = options.run_restarts(f, challenge, f.attack)
    warn_ignored_flags(f, settings)
    _warn_not_a_submission(challenge, settings, restarts)
    resolve.check_output(f.output)
    strategy = resolve.distribution_strategy()
    model, path, x, y, source = resolve.inputs_from_flags(challenge, f, strategy)
    batch_size = f.batch_size
    if batch_size is None:
        batch_size = challenge.defaults.attack_batch_size(settings.batch_multiple)
    _warn_partial(challenge, len(x), f.num_examples)
    logging.info("%s challenge: %s%s, seed %d, batch size %s, jit_compile %s",
                 challenge.title, catalogue.describe(settings, restarts),
                 f", rounds of {f.steps_per_round} steps" if settings.interacting else "",
                 f.seed, batch_size or "auto", f.jit_compile)
    logging.info("model %s; data %s, %d images; output %s (state %s)", path, source, len(x),
                 f.output, state_path(f.output))
    targets = rule = None
    if challenge.targets is not None:  # least_likely: a forward pass over the clean images
        rule = f.target
        targets = choose_targets(challenge, rule, model, x, y, f.seed, f.data_dir,
                                 f.num_examples, settings.jit_compile)
        logging.info("targets: %s (%d distinct classes)", rule, len(np.unique(targets)))
    return Job(challenge, settings, strategy, model, x, y, restarts, f.steps_per_round,
               targets, rule or "", batch_size)


def _targeted(challenge: registry.Challenge, settings: catalogue.RunSettings
              ) -> catalogue.RunSettings:
    """``settings`` made targeted for a targeted challenge (as they are for the others)."""
    if challenge.targets is None:
        return settings
    if settings.targets:
        raise ValueError(f"--attack={settings.attack} chooses its own target classes (an "
                         f"untargeted attack): the {challenge.title} challenge is targeted "
                         "(--target); use another attack")
    return settings.replace(targeted=True)


def run(challenge: registry.Challenge, f: flags.FlagValues) -> int:
    """The runner: attack, log, check and write ``--output``. Returns the exit status."""
    return execute(f, f"challenges.{challenge.name}", lambda flags_: prepare(challenge, flags_))


def main(challenge_name: str) -> None:
    """Entry point of ``python -m challenges.<challenge_name>``."""
    challenge = registry.get_challenge(challenge_name)
    cli.main(lambda: define_flags(challenge), lambda f: run(challenge, f))
