r"""Evaluate a leaderboard file as MadryLab's ``run_attack.py`` does.

    python -m challenges.eval --challenge=mnist --attack_file=attack.npy --model_dir=... \
        [--data_dir=...] [--num_examples=N] [--pred_file=pred.npy]

Refuses (exit status 1, a message naming the problem) a wrong shape, NaN or inf, pixels outside
the range (tolerance 1e-4 of it) and a perturbation over ``--epsilon`` (default: the challenge's;
tolerance 1e-4). Otherwise prints ``Accuracy: 92.52%`` and saves the predictions to
``--pred_file``.
``--num_examples=N`` evaluates a file of the first N test images (not a leaderboard score).

A targeted challenge (ImageNet) also prints ``Targeted success rate: 12.50% (targets: ...)``, the
fraction of images classified as their target, with the targets chosen as the runner chose them
(``--target``, default the challenge's; ``--target=random`` also needs the runner's ``--seed``):

    python -m challenges.eval --challenge=imagenet --attack_file=attack.npy --data_dir=... \
        [--model_dir=...] [--target=least_likely]
"""
import sys
from typing import Any, Optional, Tuple

import numpy as np
from absl import flags

from challenges import cli, options, registry, resolve, runner, submission


def define_flags() -> None:
    """The evaluator's flags: the challenge, the file, the bound, the model and the data."""
    options.define_challenge_flag(None)
    flags.DEFINE_string("attack_file", "attack.npy", "The .npy file to evaluate.")
    flags.DEFINE_string("pred_file", "pred.npy", "Where to save the predicted labels.")
    flags.DEFINE_float("epsilon", None, "L-inf bound (default: the challenge's: " + ", ".join(
        f"{n} {c.format.eps:g}" for n, c in registry.CHALLENGES.items()) + ").")
    flags.register_validator("epsilon", lambda v: v is None or v > 0,
                             message="--epsilon must be a positive number")
    options.define_model_data_flags(None)
    runner.define_target_flag(None)
    flags.DEFINE_integer("seed", 0, "Targeted challenges with --target=random: the runner's "
                         "--seed, from which it drew the targets.", lower_bound=0)
    options.list_flags_in_help()


def evaluate(f: flags.FlagValues) -> int:
    """Checks ``--attack_file``, scores it, saves the predictions. Returns the exit status."""
    challenge = registry.get_challenge(f.challenge)
    eps = challenge.format.eps if f.epsilon is None else f.epsilon
    try:
        if f.target is not None and challenge.targets is None:
            raise resolve.SetupError(f"--target: the {challenge.title} challenge is untargeted")
        x_adv = submission.load(f.attack_file)
        submission.check_values(x_adv, challenge.format, f.num_examples)
        resolve.check_paths(challenge, f.model_dir, f.data_dir)
        model, _, x_nat, y, _ = resolve.load_inputs(challenge, f.model_dir, f.model, f.data_dir,
                                                    len(x_adv))
        submission.check_perturbation(x_adv, x_nat, eps)
        targets, rule = _targets(f, challenge, model, x_nat, y)
    except (submission.InvalidSubmission, resolve.SetupError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if len(x_adv) < challenge.format.num_test:
        print(f"WARNING: evaluated on the first {len(x_adv)} test images only: not a leaderboard "
              "score", file=sys.stderr)
    pred, accuracy = resolve.score(challenge, model, x_adv.astype(submission.DTYPE), y)
    print(f"Accuracy: {100.0 * accuracy:.2f}%")
    if targets is not None:
        print(f"Targeted success rate: {100.0 * runner.success_rate(pred, targets):.2f}% "
              f"(targets: {rule})")
    submission.save_atomic(f.pred_file, pred)
    print(f"Output saved at {f.pred_file}")
    return 0


def _targets(f: flags.FlagValues, challenge: registry.Challenge, model: Any, x_nat: np.ndarray,
             y: np.ndarray) -> Tuple[Optional[np.ndarray], Optional[str]]:
    """``(targets [N], rule)`` of a targeted challenge, chosen as the runner chose them, or
    ``(None, None)``."""
    if challenge.targets is None:
        return None, None
    rule = f.target or challenge.targets.default
    try:
        targets = runner.choose_targets(challenge, rule, model, x_nat, y, f.seed, f.data_dir,
                                        len(x_nat), None)
    except ValueError as err:
        raise resolve.SetupError(str(err)) from None
    return targets, rule


if __name__ == "__main__":
    cli.main(define_flags, evaluate)
