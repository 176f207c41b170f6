"""``python -m challenges.report``: the report's command line. Model and data are resolved as the
runners do (:mod:`challenges.resolve`); the attack settings default to the challenge's."""
from __future__ import annotations

from pathlib import Path
from typing import Dict

import numpy as np
from absl import flags, logging

from daa_tf import catalogue

from challenges import cli, options, registry, resolve, submission
from challenges.report import make_report, plots
from challenges.report.settings import PAPER_ATTACKS, PAPER_LOSSES, ReportConfig, ReportError

MODULE = "challenges.report"


def _c_flag(attack: str, loss: str) -> str:
    return f"c_{attack.replace('daa_', '')}_{loss}"


def define_flags() -> None:
    """The report's flags: the shared groups of :mod:`challenges.options` and its own."""
    options.define_challenge_flag("mnist")
    options.define_model_data_flags(None)
    options.define_attack_setting_flags(None)
    options.define_autoattack_flag()
    options.define_queries_flag()
    options.define_run_flags("Skip the attacks already saved under --out and continue an "
                             "interrupted one from its last restart.")
    options.list_flags_in_help()
    flags.DEFINE_string("out", "report", "Folder receiving table.md, results.json, the figures "
                        "and every attack's saved result.")
    flags.DEFINE_list("attacks", list(PAPER_ATTACKS), "Attacks, the table's rows, of: "
                      + ", ".join(catalogue.RUNNABLE) + ".")
    flags.DEFINE_list("losses", list(PAPER_LOSSES), "Losses, the table's columns, of: "
                      + ", ".join(catalogue.LOSSES) + ".")
    flags.DEFINE_float("fgsm_step_size", None, "One-step attacks' step (default: --epsilon; on "
                       "the eps grid it scales with eps).")
    for attack in catalogue.DAA_ATTACKS:
        spec = catalogue.ATTACKS[attack]
        for loss in catalogue.LOSSES:
            unit = " per unit pixel range" if spec.c_per_unit_range else ""
            flags.DEFINE_float(_c_flag(attack, loss), None, f"{spec.label}'s c with the "
                               f"{catalogue.LOSS_LABELS[loss]} loss (default "
                               f"{spec.c_for(loss):g}{unit}).")
    flags.DEFINE_list("eps_grid", None, "The eps values of accuracy_vs_eps.png (default: "
                      + "; ".join(f"{n} " + ",".join(f"{e:g}" for e in c.defaults.eps_grid)
                                  for n, c in registry.CHALLENGES.items())
                      + "); empty: no curve.")
    flags.DEFINE_list("eps_grid_losses", ["xent"], "Losses of the eps-grid curves.")
    flags.DEFINE_enum("examples_daa", "daa_blob", list(catalogue.DAA_ATTACKS), "The DAA variant "
                      "whose adversarials examples.png shows against PGD's.")
    flags.DEFINE_enum("examples_loss", "xent", list(catalogue.LOSSES), "The loss of the attacks "
                      "shown in examples.png.")
    flags.DEFINE_boolean("figures", True, "Draw the PNG figures (needs matplotlib).")
    options.register_batch_size_validator("attacks")


def config_from_flags(challenge: registry.Challenge, f: flags.FlagValues) -> ReportConfig:
    """The report's settings from the parsed flags, with ``challenge``'s defaults filled in."""
    try:
        grid = (challenge.defaults.eps_grid if f.eps_grid is None
                else tuple(float(v) for v in f.eps_grid if v.strip()))
    except ValueError:
        raise ReportError(f"--eps_grid must list numbers, got {','.join(f.eps_grid)}") from None
    c: Dict[str, Dict[str, float]] = {}
    for attack in catalogue.DAA_ATTACKS:
        for loss in catalogue.LOSSES:
            value = f[_c_flag(attack, loss)].value
            if value is not None:
                c.setdefault(attack, {})[loss] = float(value)
    setting = lambda name: options.attack_setting(f, name, challenge)  # noqa: E731
    return ReportConfig(
        eps=float(setting("epsilon")), step_size=float(setting("step_size")),
        steps=int(setting("steps")), restarts=int(setting("restarts")),
        random_start=bool(setting("random_start")), clip_min=challenge.format.clip_min,
        clip_max=challenge.format.clip_max, steps_per_round=int(setting("steps_per_round")),
        particles=int(setting("particles")), seed=f.seed, batch_size=f.batch_size,
        attacks=tuple(f.attacks), losses=tuple(f.losses), fgsm_step_size=f.fgsm_step_size, c=c,
        eps_grid=grid, eps_grid_losses=tuple(f.eps_grid_losses), examples_daa=f.examples_daa,
        examples_loss=f.examples_loss, jit_compile=options.jit_compile(f),
        autoattack_version=f.autoattack_version, queries=f.queries)


def _make(challenge: registry.Challenge, cfg: ReportConfig, f: flags.FlagValues) -> None:
    from daa_tf.distribute import is_chief

    strategy = resolve.distribution_strategy()
    model, path, x, y, source = resolve.inputs_from_flags(challenge, f, strategy)
    info = {"challenge": challenge.name, "model": str(path), "model_name": Path(path).name,
            "data": str(source), "command": cli.command(MODULE)}

    def score(x_adv: np.ndarray, labels: np.ndarray) -> np.ndarray:
        return resolve.score(challenge, model, x_adv, labels, cfg.jit_compile)[0]

    make_report(model, x, y, cfg, f.out, resume=f.resume, verbose=f.verbose,
                log=lambda message: logging.info("%s", message), info=info, figures=f.figures,
                score=score, fmt=challenge.format,
                run_kwargs={"strategy": strategy} if strategy is not None else None,
                writer=is_chief(strategy))


def run_report(f: flags.FlagValues) -> int:
    """The CLI: resolve model and data as the runners do, make the report. Returns the exit
    status (0 done, 1 error, 130 interrupted: the finished attacks are kept for --resume)."""
    challenge = registry.get_challenge(f.challenge)
    try:
        cfg = config_from_flags(challenge, f)
    except ReportError as err:
        logging.error("%s", err)
        return 1
    if cfg.eps > challenge.format.eps + submission.EPS_TOLERANCE:
        logging.warning("--epsilon=%g exceeds the %s bound %g", cfg.eps, challenge.title,
                        challenge.format.eps)
    if f.figures and not plots.matplotlib_available():
        logging.warning("no figures will be drawn: %s", plots.INSTALL_HINT)
    try:
        _make(challenge, cfg, f)
    except KeyboardInterrupt:
        logging.error("interrupted: the finished attacks are saved under %s (and the last "
                      "finished restart of the running one). Continue with:\n  %s", f.out,
                      cli.command(MODULE, resume=True))
        return cli.INTERRUPTED
    except (resolve.SetupError, ReportError, ValueError) as err:
        logging.error("%s", err)
        return 1
    return 0


def main() -> None:
    """Entry point of ``python -m challenges.report``."""
    cli.main(define_flags, run_report)


if __name__ == "__main__":
    main()
