"""The command-line flags, each defined once, in groups the CLIs pick from, and their reading.

| group | flags | used by |
| --- | --- | --- |
| :func:`define_challenge_flag` | ``--challenge`` | eval, report, train |
| :func:`define_model_data_flags` | ``--model_dir --model --data_dir --num_examples`` (or
  :func:`define_model_flags`, :func:`define_data_flags`) | all |
| :func:`define_attack_choice_flags` | ``--attack --loss --c`` | runners |
| :func:`define_attack_setting_flags` | :func:`define_step_flags` (``--epsilon --step_size
  --steps --random_start --particles``) and :func:`define_restart_flags` (``--restarts
  --steps_per_round``) | runners, report (training: the step flags) |
| :func:`define_run_flags` | ``--batch_size --seed --resume --jit_compile --distribute
  --verbose`` | runners, report, train |
| :func:`define_output_flag` | ``--output`` | runners |
| :func:`define_tensorboard_flag` | ``--tensorboard_dir`` | runners, train |

With a known challenge the attack settings default to its values (shown by ``--help``); without
one (the report picks it by flag) they default to None and :func:`attack_setting` resolves them
after parsing. A command adapts a shared flag's help or default with :func:`tailor`. The choices
come from :mod:`daa_tf.catalogue` and :mod:`challenges.registry`: nothing here imports TensorFlow.
"""
from __future__ import annotations

import math
import sys
from typing import Any, Callable, Dict, Iterable, Optional, Tuple

from absl import flags

from daa_tf import catalogue
from daa_tf.models import fetch as model_fetch

from challenges import registry

FlagValues = flags.FlagValues

# The attack settings that take a challenge's default (flag name -> field of registry.Defaults).
_DEFAULTED = {"step_size": "step_size", "steps": "steps", "restarts": "restarts",
              "random_start": "random_start", "particles": "particles",
              "steps_per_round": "steps_per_round"}


def _per_challenge(field: str) -> str:
    return ", ".join(f"{name} {getattr(c.defaults, field)}"
                     for name, c in registry.CHALLENGES.items())


def define_challenge_flag(default: Optional[str]) -> None:
    """``--challenge`` (required when ``default`` is None)."""
    flags.DEFINE_enum("challenge", default, list(registry.CHALLENGES), "Which challenge.")
    if default is None:
        flags.mark_flag_as_required("challenge")


def define_model_data_flags(challenge: Optional[registry.Challenge]) -> None:
    """``--model_dir``, ``--model``, ``--data_dir``, ``--num_examples``."""
    define_model_flags(challenge)
    define_data_flags()


def define_model_flags(challenge: Optional[registry.Challenge], choice: bool = True) -> None:
    """``--model_dir`` and (with ``choice``) ``--model``, the MadryLab model to download."""
    fetch = ("required: MadryLab publish no Fashion-MNIST model"
             if challenge is not None and not challenge.downloadable else
             "default: --model is downloaded once into the cache ($DAA_TF_CACHE or "
             "~/.cache/daa_tf) and reused")
    flags.DEFINE_string("model_dir", None, f"Checkpoint folder of the attacked model ({fetch}).")
    if choice:
        flags.DEFINE_enum("model", "secret", list(model_fetch.MODELS), "MadryLab model to "
                          "download when --model_dir is not given (MNIST, CIFAR10).")


def define_data_flags(data_dir: bool = True) -> None:
    """``--data_dir`` (unless ``data_dir`` is False) and ``--num_examples``."""
    if data_dir:
        flags.DEFINE_string("data_dir", None, "Test data: IDX files (MNIST, Fashion-MNIST), "
                            "CIFAR-10 python batches, or an .npz with x and y (default: the "
                            "original files, downloaded through tensorflow-datasets).")
    flags.DEFINE_integer("num_examples", None, "Use only the first N test images (the file is "
                         "then not a leaderboard submission).", lower_bound=1)


def tailor(help_texts: Optional[Dict[str, str]] = None,
           defaults: Optional[Dict[str, Any]] = None) -> None:
    """Adapts flags defined by the groups here to one command (its help texts, its defaults):
    the flags stay defined once, with one meaning, and read the same way."""
    for name, text in (help_texts or {}).items():
        flags.FLAGS[name].help = text
    for name, value in (defaults or {}).items():
        flags.FLAGS.set_default(name, value)


def _c_help() -> str:
    return "; ".join(f"{name} " + " / ".join(f"{c:g} {loss}" for loss, c in spec.default_c.items())
                     for name, spec in catalogue.ATTACKS.items() if spec.interacting)


def define_attack_choice_flags() -> None:
    """``--attack``, ``--loss`` and DAA's ``--c``: the one attack a runner runs."""
    flags.DEFINE_enum("attack", "daa_blob", list(catalogue.RUNNABLE), "The attack; "
                      "strongest: a cascade of attacks sharing --steps gradients per image, "
                      "repeated --restarts times (docs/algorithms.md#strongest); autoattack: "
                      "AutoAttack with its own settings (--autoattack_version; no budget, one "
                      "restart unless --restarts is given).")
    define_autoattack_flag()
    define_queries_flag()
    flags.DEFINE_enum("loss", None, list(catalogue.LOSSES), "The loss the attack ascends "
                      "(default: the attack's own: margin for multitargeted, else xent).")
    flags.DEFINE_float("c", None, f"DAA constant (default per loss: {_c_help()}; DGF's per unit "
                       "pixel range).")
    flags.register_validator("c", lambda v: v is None or math.isfinite(v),
                             message="--c must be a finite number")


def define_autoattack_flag() -> None:
    """``--autoattack_version``: which AutoAttack ``--attack=autoattack`` runs."""
    flags.DEFINE_enum("autoattack_version", "standard", list(catalogue.AUTOATTACK_VERSIONS),
                      "--attack=autoattack: AutoAttack's version, run with its own settings and "
                      "no gradient budget (--steps is ignored): standard (APGD-CE, APGD-T, FAB-T, "
                      "Square with 5000 queries) or plus (APGD-CE and APGD-DLR with 5 restarts, "
                      "FAB with 5 restarts, Square, APGD-T, FAB-T); docs/algorithms.md#autoattack.")


def define_queries_flag() -> None:
    """``--queries``: ``strongest``'s query budget."""
    flags.DEFINE_integer("queries", None, "--attack=strongest: queries (forward passes) per image "
                         "for its last stage, Square (default: no Square stage); "
                         "docs/algorithms.md#strongest.", lower_bound=1)


def autoattack_version(f: FlagValues, attack: str) -> Optional[str]:
    """The AutoAttack version the flags ask for when ``attack`` is ``autoattack``, else None."""
    if attack != "autoattack":
        return None
    return f["autoattack_version"].value if "autoattack_version" in f else None


def define_attack_setting_flags(challenge: Optional[registry.Challenge]) -> None:
    """The settings every attack run shares (:func:`define_step_flags`,
    :func:`define_restart_flags`), defaulting to ``challenge``'s (or, without one, to None
    resolved per challenge after parsing)."""
    define_step_flags(challenge)
    define_restart_flags(challenge)


def _defaults(challenge: Optional[registry.Challenge]
              ) -> Tuple[Callable[[str], Any], Callable[[str], str]]:
    """``(default(field), shown(field))``: a flag's default and the help's note about it."""
    d = challenge.defaults if challenge is not None else None

    def default(field: str) -> Any:
        return getattr(d, field) if d is not None else None

    def shown(field: str) -> str:
        return "" if d is not None else f" (default: the challenge's: {_per_challenge(field)})"

    return default, shown


def define_step_flags(challenge: Optional[registry.Challenge]) -> None:
    """``--epsilon``, ``--step_size``, ``--steps``, ``--random_start``, ``--particles``: one run
    of an attack."""
    default, shown = _defaults(challenge)
    eps_text = (f"the challenge's bound: {challenge.format.eps:g}" if challenge is not None else
                "default: the challenge's bound: " + ", ".join(
                    f"{n} {c.format.eps:g}" for n, c in registry.CHALLENGES.items()))
    flags.DEFINE_float("epsilon", challenge.format.eps if challenge is not None else None,
                       f"L-inf radius in pixel units ({eps_text}).")
    flags.DEFINE_float("step_size", default("step_size"), "Step size in pixel units (FGSM: "
                       "epsilon unless given)" + shown("step_size") + ".")
    flags.DEFINE_integer("steps", default("steps"), "Steps per restart (FGSM: 1)"
                         + shown("steps") + ".", lower_bound=1)
    flags.DEFINE_boolean("random_start", default("random_start"), "Start every restart at a "
                         "uniform random point of the eps-ball" + shown("random_start") + ".")
    flags.DEFINE_integer("particles", default("particles"), "DAA: particles (images) per group"
                         + shown("particles") + ".", lower_bound=2)
    for name in ("epsilon", "step_size"):
        flags.register_validator(name, lambda v: v is None or (math.isfinite(v) and v > 0),
                                 message=f"--{name} must be a positive number")


def define_restart_flags(challenge: Optional[registry.Challenge]) -> None:
    """``--restarts`` and DAA's ``--steps_per_round``: runs over a data set."""
    default, shown = _defaults(challenge)
    flags.DEFINE_integer("restarts", default("restarts"), "Restarts; each image keeps its worst "
                         "case over them" + shown("restarts") + ".", lower_bound=1)
    flags.DEFINE_integer("steps_per_round", default("steps_per_round"), "DAA: steps per round "
                         "(the set is re-permuted into groups every round)"
                         + shown("steps_per_round") + ".", lower_bound=1)


def define_run_flags(resume_help: str) -> None:
    """``--batch_size``, ``--seed``, ``--resume``, ``--jit_compile``, ``--distribute``,
    ``--verbose``."""
    flags.DEFINE_integer("batch_size", None, "Images per compiled call (throughput only; DAA: a "
                         "multiple of --particles; default about 1000).", lower_bound=1)
    flags.DEFINE_integer("seed", 0, "Random seed (starts and DAA permutations).", lower_bound=0)
    flags.DEFINE_boolean("resume", False, resume_help)
    flags.DEFINE_enum("jit_compile", "auto", list(catalogue.JIT_CHOICES),
                      "XLA: auto (GPU/TPU only), true, false.")
    flags.DEFINE_enum("distribute", "none", list(catalogue.STRATEGIES),
                      "tf.distribute: none (one device), mirrored (every local GPU), multi_worker "
                      "(MultiWorkerMirroredStrategy from TF_CONFIG: start the same command on "
                      "every worker). Same results; --batch_size is then per device.")
    flags.DEFINE_integer("verbose", 1, "Progress bars: 1 on, 0 off.")


def define_output_flag() -> None:
    """``--output``: the leaderboard file a runner writes."""
    flags.DEFINE_string("output", "attack.npy", "Where to write the adversarial images.")
    flags.register_validator("output", bool, message="--output must name a file")


def define_tensorboard_flag() -> None:
    """``--tensorboard_dir``: TensorBoard event files of the run (:mod:`daa_tf.summaries`)."""
    flags.DEFINE_string("tensorboard_dir", None, "Write TensorBoard summaries into this folder: "
                        "the accuracy after each restart (cascade: stage), the gradients per "
                        "image budgeted and spent, elapsed time and a few clean / adversarial / "
                        "perturbation images (training: the progress figures every "
                        "--output_steps). Default: none.")


def list_flags_in_help() -> None:
    """Makes the flags defined here key flags of the main module, so that ``--help`` (not only
    ``--helpfull``) lists them (absl names the main module by ``sys.argv[0]``)."""
    for flag in flags.FLAGS.get_flags_for_module(__name__):
        flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)


# ------------------------------------------------------------------------ reading the flags


def attack_setting(f: FlagValues, name: str, challenge: registry.Challenge) -> Any:
    """The value of flag ``name``, or ``challenge``'s default where it is None."""
    value = f[name].value
    if value is not None:
        return value
    if name == "epsilon":
        return challenge.format.eps
    return getattr(challenge.defaults, _DEFAULTED[name])


def run_restarts(f: FlagValues, challenge: registry.Challenge, attack: str) -> int:
    """``--restarts`` (or ``challenge``'s default), but 1 for ``autoattack`` unless given
    explicitly: AutoAttack's restarts are its attacks' own settings."""
    if attack == "autoattack" and not f["restarts"].present:
        return 1
    return attack_setting(f, "restarts", challenge)


def jit_compile(f: FlagValues) -> Optional[bool]:
    """``--jit_compile`` as the library takes it (None: choose per device)."""
    return catalogue.JIT_CHOICES[f.jit_compile]


def check_batch_size(attacks: Iterable[str], batch_size: Optional[int],
                     particles: Optional[int]) -> Optional[str]:
    """Why ``--batch_size`` does not suit one of ``attacks``, or None."""
    for attack in attacks:
        problem = catalogue.batch_size_error(attack, batch_size, particles)
        if problem:
            return problem.replace("batch_size", "--batch_size").replace("particles (",
                                                                          "--particles (")
    return None


def register_batch_size_validator(attacks_flag: str) -> None:
    """Refuses at parse time a ``--batch_size`` that does not suit the attack(s) named by
    ``attacks_flag`` (``attack`` or the report's list ``attacks``) and ``--particles``."""
    def valid(values: dict) -> bool:
        attacks = values[attacks_flag]
        attacks = [attacks] if isinstance(attacks, str) else attacks
        known = [a for a in attacks if a in catalogue.RUNNABLE]  # unknown: reported elsewhere
        return check_batch_size(known, values["batch_size"], values["particles"]) is None

    flags.register_multi_flags_validator(
        [attacks_flag, "batch_size", "particles"], valid,
        message="--batch_size must be a multiple of --particles for the DAA attacks (and of "
                f"{catalogue.DEFAULT_PARTICLES} for a cascade, whose stages include DAA)")


def attack_settings(f: FlagValues, challenge: registry.Challenge, attack: str, loss: str,
                    c: Optional[float] = None, eps: Optional[float] = None,
                    step_size: Optional[float] = None) -> catalogue.RunSettings:
    """The validated settings of ``attack`` with ``loss`` that the flags ask for (``eps`` and
    ``step_size`` override the flags'). A one-step attack, and APGD's schedule, take
    ``--step_size`` only when it is given explicitly (else ``epsilon``, and ``2 epsilon``); a
    one-step attack refuses ``--steps`` other than 1. A cascade takes ``--steps`` as its budget
    of gradients per image (and restart); its stages set their own losses and steps. AutoAttack
    has no budget (its own settings) and takes ``--autoattack_version``."""
    steps = attack_setting(f, "steps", challenge)
    if catalogue.is_cascade(attack):
        version = autoattack_version(f, attack)
        return catalogue.cascade_settings(
            attack, eps=attack_setting(f, "epsilon", challenge) if eps is None else eps,
            budget=None if attack == "autoattack" else steps, version=version,
            queries=f["queries"].value if attack == "strongest" and "queries" in f else None,
            clip_min=challenge.format.clip_min, clip_max=challenge.format.clip_max,
            jit_compile=jit_compile(f))
    spec = catalogue.get_spec(attack)
    if step_size is None:  # given explicitly, else catalogue.default_step_size's rule
        configured = attack_setting(f, "step_size", challenge)
        step_size = (configured if f["step_size"].present
                     else catalogue.default_step_size(attack, configured=configured))
    if spec.one_step:
        if f["steps"].present and f.steps != 1:
            raise ValueError(f"--attack={attack} takes exactly one step: drop --steps")
        steps = None
    return catalogue.attack_settings(
        attack, eps=attack_setting(f, "epsilon", challenge) if eps is None else eps,
        step_size=step_size, steps=steps, loss=loss,
        random_start=attack_setting(f, "random_start", challenge),
        clip_min=challenge.format.clip_min, clip_max=challenge.format.clip_max, c=c,
        particles=attack_setting(f, "particles", challenge), jit_compile=jit_compile(f))
