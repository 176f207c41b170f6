"""The challenge runners (``challenges.mnist``, ``challenges.cifar10``,
``challenges.fashion_mnist``): attack the challenge's model over its test set and write a checked
leaderboard file.

Flow: flags (:mod:`challenges.options`) -> data and model (:mod:`challenges.resolve`) ->
``daa_tf.run`` (resumable state beside the output) -> :mod:`challenges.submission` (checks, then an
atomic write). TensorFlow is imported only once the flags are parsed, so ``--help`` and flag
errors answer at once.

:func:`execute` is that flow after the preparation (state, attack, restart logs, score, checked
write, interruption, final logs); the generic runner (:mod:`challenges.attack`) runs it too, with
its own preparation (a :class:`Job`) and a summary written beside the output.
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
    """The runner's flags, with ``challenge``'s defaults."""
    options.define_attack_choice_flags()
    options.define_attack_setting_flags(challenge)
    options.define_model_data_flags(challenge)
    options.define_run_flags("Continue from the state saved beside --output.")
    options.define_output_flag()
    options.register_batch_size_validator("attack")
    options.list_flags_in_help()


def state_path(output: str) -> str:
    """The resumable state beside the output: ``<output>.state.npz``."""
    return output + ".state.npz"


def _saved_restarts(state: str) -> Optional[int]:
    try:
        with np.load(state) as saved:
            return len(saved["restart_accuracies"])
    except Exception:  # noqa: BLE001 - only for the message
        return None


def _warn_not_a_submission(challenge: registry.Challenge, settings: catalogue.AttackSettings,
                           restarts: int, num_examples: Optional[int]) -> None:
    if num_examples is not None:
        logging.warning("*** --num_examples=%d: the output covers only the first %d test images; "
                        "it is NOT a leaderboard submission. ***", num_examples, num_examples)
    if settings.eps > challenge.format.eps + submission.EPS_TOLERANCE:
        logging.warning("*** --epsilon=%g exceeds the %s bound %g: the file is NOT a leaderboard "
                        "submission (evaluate it with --epsilon=%g). ***", settings.eps,
                        challenge.title, challenge.format.eps, settings.eps)
    warn_repeated_restarts(settings, restarts)


def warn_repeated_restarts(settings: catalogue.AttackSettings, restarts: int) -> None:
    """Warns that restarts of a deterministic attack repeat the same run."""
    if restarts > 1 and not settings.random_start and not settings.interacting:
        logging.warning("%d restarts of %s without --random_start repeat the same run",
                        restarts, settings.attack)


def warn_ignored_daa_flags(f: flags.FlagValues, settings: catalogue.AttackSettings) -> None:
    if not settings.interacting:
        for name in ("c", "particles", "steps_per_round"):
            if f[name].present:
                logging.warning("--%s is a DAA setting: ignored by --attack=%s", name,
                                settings.attack)


def log_state(f: flags.FlagValues, state: str) -> None:
    if f.resume:
        logging.info("resuming from %s" if os.path.exists(state) else
                     "--resume: no state at %s, starting afresh", state)
    elif os.path.exists(state):
        logging.warning("the existing state %s will be replaced by this run's (pass --resume "
                        "to continue from it instead)", state)


def _attack(f: flags.FlagValues, settings: catalogue.AttackSettings, strategy: Any, model: Any,
            x: np.ndarray, y: np.ndarray, state: str) -> Any:
    """``daa_tf.run`` with live restart logs; returns its result."""
    import daa_tf

    def log_restart(index: int, accuracy: float, seconds: float) -> None:
        logging.info("restart %d/%d: accuracy %.2f%% (%.1f s)", index + 1, f.restarts,
                     100 * accuracy, seconds)

    extra = {"strategy": strategy} if strategy is not None else {}
    result = daa_tf.run(model, x, y, settings, restarts=f.restarts,
                        steps_per_round=f.steps_per_round, batch_size=f.batch_size, seed=f.seed,
                        verbose=f.verbose, state_path=state, resume=f.resume,
                        on_restart=log_restart, **extra)
    resumed = len(result.restart_accuracies) - len(result.restart_seconds)
    for i, accuracy in enumerate(result.restart_accuracies[:resumed]):
        logging.info("restart %d/%d: accuracy %.2f%% (earlier run)", i + 1, f.restarts,
                     100 * accuracy)
    return result


@dataclasses.dataclass
class Job:
    """A prepared attack: ``challenge`` gives the output's format (checked before writing) and the
    scoring batch size; ``settings`` the attack; ``model`` maps ``x`` to logits; ``x`` ``[N, ...]``
    float32 in the box, ``y`` ``[N]`` labels; ``strategy`` the ``tf.distribute`` one or None."""

    challenge: registry.Challenge
    settings: catalogue.AttackSettings
    strategy: Any
    model: Any
    x: np.ndarray
    y: np.ndarray


@dataclasses.dataclass
class Outcome:
    """A finished attack: ``daa_tf.run``'s result, the final accuracy (fraction), the perturbation
    and the seconds since the runner started."""

    result: Any
    accuracy: float
    size: submission.Perturbation
    seconds: float


def _interrupted(f: flags.FlagValues, module: str, output: str, state: str) -> int:
    saved = _saved_restarts(state) if os.path.exists(state) else None
    where = (f"{saved} of {f.restarts} restarts are saved in {state}"
             if saved is not None else "no restart has finished yet, nothing is saved")
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
    try:
        job = prepare(f)
        log_state(f, state)
        from daa_tf.distribute import is_chief

        result = _attack(f, job.settings, job.strategy, job.model, job.x, job.y, state)
        chief = is_chief(job.strategy)  # multi-worker runs: every worker computes, the chief writes
        _, accuracy = resolve.score(job.challenge, job.model, result.x_adv, job.y,
                                    job.settings.jit_compile)
        fmt, eps = job.challenge.format, job.settings.eps
        if chief:
            size = submission.write(output, result.x_adv, job.x, fmt, eps)
        else:
            size = submission.check(result.x_adv, job.x, fmt, eps)
        if chief and written is not None:
            written(job, Outcome(result, accuracy, size, time.perf_counter() - started))
    except KeyboardInterrupt:
        return _interrupted(f, module, output, state)
    except submission.InvalidSubmission as err:
        logging.error("refusing to write %s: %s", output, err)
        return 1
    except (resolve.SetupError, ValueError) as err:
        logging.error("%s", err)
        return 1
    logging.info("final accuracy: %.2f%%", 100 * accuracy)
    logging.info("perturbation: L-inf %g, mean L2 %g (pixel units)", size.linf, size.mean_l2)
    logging.info("wrote %s %s float32; elapsed %.1f s", output,
                 job.challenge.format.shape(len(job.x)), time.perf_counter() - started)
    if chief:
        with contextlib.suppress(FileNotFoundError):
            os.remove(state)
    return 0


def prepare(challenge: registry.Challenge, f: flags.FlagValues) -> Job:
    """A challenge runner's preparation: settings, warnings, the model and the test data, logs."""
    settings = options.attack_settings(f, challenge, f.attack, f.loss, c=f.c)
    warn_ignored_daa_flags(f, settings)
    _warn_not_a_submission(challenge, settings, f.restarts, f.num_examples)
    resolve.check_output(f.output)
    strategy = resolve.distribution_strategy()
    model, path, x, y, source = resolve.inputs_from_flags(challenge, f, strategy)
    if len(x) < challenge.format.num_test and f.num_examples is None:
        logging.warning("*** the test data holds only %d images (the test set has %d): the "
                        "output is NOT a leaderboard submission. ***", len(x),
                        challenge.format.num_test)
    logging.info("%s challenge: %s%s, seed %d, batch size %s, jit_compile %s",
                 challenge.title, catalogue.describe(settings, f.restarts),
                 f", rounds of {f.steps_per_round} steps" if settings.interacting else "",
                 f.seed, f.batch_size or "auto", f.jit_compile)
    logging.info("model %s; data %s, %d images; output %s (state %s)", path, source, len(x),
                 f.output, state_path(f.output))
    return Job(challenge, settings, strategy, model, x, y)


def run(challenge: registry.Challenge, f: flags.FlagValues) -> int:
    """The runner: attack, log, check and write ``--output``. Returns the exit status."""
    return execute(f, f"challenges.{challenge.name}", lambda flags_: prepare(challenge, flags_))


def main(challenge_name: str) -> None:
    """Entry point of ``python -m challenges.<challenge_name>``."""
    challenge = registry.get_challenge(challenge_name)
    cli.main(lambda: define_flags(challenge), lambda f: run(challenge, f))
