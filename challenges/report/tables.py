"""The report's Markdown: the paper's table (rows attacks, columns losses), McNemar's tests, the
settings, the eps grid and the figures' captions, from the content of ``results.json``."""
from __future__ import annotations

from typing import Any, Dict, List

from daa_tf import catalogue

from challenges.report.figures import ACCURACY_PLOT, EXAMPLES_PLOT, key_label


def _attack_label(name: str) -> str:
    return catalogue.label(name)


def fmt_accuracy(value: float) -> str:
    return f"{100.0 * value:.2f}%"


def fmt_p(value: float) -> str:
    """A p-value with three significant digits (``< 1e-300`` when it underflows)."""
    return f"{value:.3g}" if value > 0 else "< 1e-300"


def fmt_seconds(value: float) -> str:
    return f"{value:.1f}"


def title(results: Dict[str, Any]) -> str:
    """``"MNIST adv_trained"``: the challenge and model the results name, else ``"report"``."""
    challenge = results.get("challenge", "")
    model = results.get("model_name") or ""
    return " ".join(s for s in (challenge.upper() if challenge else "", model) if s) or "report"


def _cells(values: List[str]) -> str:
    return "| " + " | ".join(values) + " |"


def _main_table(results: Dict[str, Any]) -> List[str]:
    """Rows attacks; columns accuracy per loss, McNemar's p against PGD, seconds."""
    s, entries, tests = results["settings"], results["attacks"], results["mcnemar"]
    losses = s["losses"]
    head = ["attack"] + [catalogue.LOSS_LABELS[l] for l in losses]
    if tests:
        head += [f"McNemar p vs PGD, {catalogue.LOSS_LABELS[l]}" for l in losses]
    head += [f"seconds, {catalogue.LOSS_LABELS[l]}" for l in losses]
    lines = [_cells(head), "| --- " + "| ---: " * (len(head) - 1) + "|"]
    for attack in s["attacks"]:
        cells = [_attack_label(attack)]
        cells += [fmt_accuracy(entries[f"{attack}/{l}"]["accuracy"]) for l in losses]
        if tests:
            cells += [fmt_p(tests[f"{attack}/{l}"]["p_value"]) if f"{attack}/{l}" in tests
                      else "-" for l in losses]
        cells += [fmt_seconds(entries[f"{attack}/{l}"]["seconds"]) for l in losses]
        lines.append(_cells(cells))
    return lines + ["", f"Clean accuracy: {fmt_accuracy(results['clean_accuracy'])} on "
                    f"{results['num_examples']} examples. Accuracy is the model's on the final "
                    "adversarial set (worst case over the restarts); lower is a stronger attack."]


def _mcnemar_table(tests: Dict[str, Any]) -> List[str]:
    if not tests:
        return []
    lines = ["", "McNemar's exact test of each DAA variant (and each stronger attack) against "
             "PGD on the same examples (b: examples only the attack fools, c: examples only PGD "
             "fools; two-sided p = min(1, 2 P[Binomial(b + c, 1/2) <= min(b, c)])):", "",
             "| comparison | loss | both correct | b: only the attack fools | c: only PGD fools | "
             "both fooled | p |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for key, t in tests.items():
        attack, loss = key.split("/")
        lines.append(f"| {_attack_label(attack)} vs PGD | {catalogue.LOSS_LABELS[loss]} | "
                     f"{t['both_correct']} | {t['b']} | {t['c']} | {t['both_fooled']} | "
                     f"{fmt_p(t['p_value'])} |")
    return lines


def _grid_table(grid: Dict[str, Any]) -> List[str]:
    if not grid["eps"]:
        return []
    lines = ["", f"Accuracy over the eps grid ({ACCURACY_PLOT}):", "",
             "| attack | loss | " + " | ".join(f"eps {e:g}" for e in grid["eps"]) + " |",
             "| --- | --- " + "| ---: " * len(grid["eps"]) + "|"]
    for key, accs in grid["accuracy"].items():
        attack, loss = key.split("/")
        lines.append(f"| {_attack_label(attack)} | {catalogue.LOSS_LABELS[loss]} | "
                     + " | ".join(fmt_accuracy(a) for a in accs) + " |")
    return lines


def _figure_lines(results: Dict[str, Any]) -> List[str]:
    figs = results.get("figures") or {}
    lines = [""]
    if figs:
        lines.append("Figures: " + ", ".join(f"[{f['file']}]({f['file']})" for f in figs.values())
                     + ".")
    elif results.get("figures_note"):
        lines.append(f"No figures: {results['figures_note']}.")
    ex = results["examples"]
    if "examples" in figs:
        daa_name = key_label(ex["daa"])
        lines.append(f"{EXAMPLES_PLOT}: the first {len(ex['indices'])} examples (indices "
                     f"{ex['indices']}) that {daa_name} fools and PGD does not."
                     if ex["indices"] else
                     f"{EXAMPLES_PLOT}: no example that {daa_name} fools and PGD does not.")
    return lines


def format_table(results: Dict[str, Any]) -> str:
    """The Markdown report: the paper's table (rows attacks, columns losses), McNemar, the
    settings, the eps grid, the figures and the command that made it."""
    lines = [f"# {title(results)}: accuracy under attack", ""]
    lines += _main_table(results)
    lines += _mcnemar_table(results["mcnemar"])
    lines += ["", "Settings:", ""] + [f"- {line}" for line in settings_lines(results)]
    lines += _grid_table(results["eps_grid"])
    lines += _figure_lines(results)
    if results.get("command"):
        lines += ["", "Made with:", "", "```bash", results["command"], "```"]
    return "\n".join(lines).rstrip() + "\n"


def settings_lines(results: Dict[str, Any]) -> List[str]:
    """The settings section's lines, from ``results["settings"]``."""
    s = results["settings"]
    out = []
    desc = [f"{k}: {results[k]}" for k in ("challenge", "model", "data") if results.get(k)]
    if desc:
        out.append(", ".join(desc))
    out.append(f"{results['num_examples']} examples, seed {s['seed']}, pixel box "
               f"[{s['clip_min']:g}, {s['clip_max']:g}], L-inf eps {s['eps']:g}")
    fgsm = s["fgsm_step_size"]
    start = "random start" if s["random_start"] else "no random start (from the clean images)"
    out.append(f"PGD, momentum PGD (decay 1.0), DAA: {s['steps']} steps of {s['step_size']:g}, "
               f"{start}; Rand+FGSM: random start, then one step of "
               f"{'eps' if fgsm is None else format(fgsm, 'g')}")
    out.append(f"{s['restarts']} restart(s) per attack (the same random starts for every "
               "attack: the outcomes are paired)")
    if any(a in s["attacks"] for a in catalogue.DAA_ATTACKS):
        cs = "; ".join(f"{_attack_label(a)} c = " + ", ".join(
            f"{v:g} ({catalogue.LOSS_LABELS[l]})" for l, v in per_loss.items())
            + (" per unit pixel range" if catalogue.ATTACKS[a].c_per_unit_range else "")
            for a, per_loss in s["c_used"].items())
        out.append(f"DAA: groups of {s['particles']} particles, rounds of "
                   f"{s['steps_per_round']} steps over the permuted set (Algorithm 1); {cs}")
    out.append(f"seconds: wall time of each attack (all restarts) on this machine; all "
               f"attacks of the report, eps grid included: {results['attack_seconds']:.0f} s")
    return out
