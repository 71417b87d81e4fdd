"""``bsopt analyze`` as text: the tables, fits and verdicts of a :class:`StudyAnalysis`."""

from __future__ import annotations

import math
import statistics
import textwrap
from collections.abc import Iterable, Sequence

from bsopt.analysis.answers import answer_lines
from bsopt.analysis.study import StudyAnalysis
from bsopt.text import plural, table

NOTE_WIDTH = 98
NOISE_COLUMNS = 8  # epochs of the noise-scale table; longer runs show 8 spread evenly


def _num(value: float | None, spec: str = ".4g") -> str:
    return "-" if value is None or not math.isfinite(value) else format(value, spec)


def _indented_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return textwrap.indent(table(headers, rows), "  ").splitlines()


def _ci(pair: tuple[float, float], spec: str = ".3g") -> str:
    return f"95% CI {_num(pair[0], spec)} .. {_num(pair[1], spec)}"


def _notes(notes: Iterable[str]) -> list[str]:
    return [line for n in notes for line in
            textwrap.wrap(n, NOTE_WIDTH, initial_indent="  note: ", subsequent_indent=" " * 8)]


def _best_lr_section(a: StudyAnalysis) -> list[str]:
    lines = ["Best learning rate per batch size (lowest final val loss among complete trials)"]
    if a.best:
        lines += _indented_table(
            ["batch", "trials", "lrs", "best lr", "val loss", "train loss", "gap", "val acc",
             "train s", "trial"],
            [[str(b.batch_size), str(b.complete_trials), str(b.lrs_tried),
              _num(b.lr, ".3g") + ("*" if b.lr_at_edge else ""), _num(b.val_loss),
              _num(b.train_loss), _num(b.generalization_gap, "+.4f"), _num(b.val_accuracy, ".4f"),
              _num(b.train_seconds, ".1f"), f"#{b.trial}"] for b in a.best])
        edge = any(b.lr_at_edge for b in a.best)
        lines.append("  gap: generalization gap, final val loss - final train loss"
                     + ("; *: at the edge of the lrs tried" if edge else ""))
    if a.best_lrs:
        lines += ["  the best lr with its bracket (the lrs either side; edge: a higher loss on "
                  "one side only), by a parabola on log lr:"]
        lines += _indented_table(
            ["batch", "trials", "best lr", "bracket", "se(log lr)"],
            [[str(b.batch_size), str(b.trials), _num(b.lr, ".3g"),
              (f"{b.low:.3g} .. {b.high:.3g}" if b.bracketed else
               f"edge ({b.low:.3g} .. {b.high:.3g})"), _num(b.se_log, ".3f")]
             for b in a.best_lrs])
    fit = a.lr_scaling
    if fit is not None:
        lines += [f"  lr* = c * B^alpha (weighted least squares in log-log over "
                  f"{fit.batch_sizes} batch sizes, weights 1/se^2):",
                  f"    alpha = {fit.alpha:.3f} ({_ci((fit.alpha_low, fit.alpha_high), '.3f')}), "
                  f"c = {fit.c:.3g}",
                  f"    verdict: {fit.verdict_text}"]
    forms = (("surge form lr_max / (0.5 (sqrt(B_noise/B) + sqrt(B/B_noise))) (Li et al. 2024)",
              a.surge), ("saturating form lr_max / (1 + B_noise/B) (McCandlish et al. 2018)",
                         a.saturating))
    for name, form in forms:
        if form is not None:
            where = (f"lr_max = {form.lr_max:.3g}, B_noise = {form.b_noise:.3g} "
                     f"({_ci(form.b_noise_ci)})" if form.inside else "B_noise outside the data")
            lines += [f"  {name}: {where}", f"    {form.verdict_text}"]
    return lines + _notes(a.lr_notes)


def _steps_section(a: StudyAnalysis) -> list[str]:
    lines = ["Steps to target" + (f" val loss {a.target_loss:.4g} ({a.target_rule})"
                                  if a.target_loss is not None else "")]
    if a.steps_to_target:
        lines += ["  fewest optimizer steps over each batch size's trials (complete and pruned),",
                  "  interpolated linearly between epoch ends"]
        crit = a.critical_batch
        lines += _indented_table(
            ["batch", "steps", "examples", "fit steps", "trial"],
            [[str(r.batch_size), ("<= " if r.upper_bound else "") + _num(r.steps, ".1f"),
              _num(r.examples, ".4g"), _num(crit.steps(r.batch_size), ".1f") if crit else "-",
              f"#{r.trial}"] for r in a.steps_to_target])
        if crit is not None:
            lines += [f"  S(B) = S_min (1 + B_crit/B), so E(B) = B S(B) = E_min (1 + B/B_crit) "
                      f"({crit.batch_sizes} batch sizes;",
                      "  McCandlish et al. 2018):",
                      f"    B_crit = {crit.b_crit:.4g} ({_ci(crit.b_crit_ci)})",
                      f"    S_min = {crit.s_min:.4g} steps ({_ci(crit.s_min_ci)})",
                      f"    E_min = {crit.e_min:.4g} examples ({_ci(crit.e_min_ci)})",
                      "    below B_crit doubling B nearly halves the steps; above it, it mostly "
                      "doubles the examples"]
        z = a.zhang
        if z is not None:
            lines.append(f"  Zhang et al. 2024 (steps 20% above linear scaling from B={z.b_ref}): "
                         + (f"B = {z.b_crit:.4g}" if z.b_crit is not None else
                            f"not reached up to B={z.beyond}")
                         + (f"; on the fitted curve 1.2 B_ref + 0.2 B_crit = {z.closed_form:.4g}"
                            if z.closed_form is not None else ""))
    return lines + _notes(a.steps_notes)


def _noise_section(a: StudyAnalysis) -> list[str]:
    lines = ["Gradient noise scale B_simple = tr(Sigma)/|G|^2 (median over trials)"]
    if a.noise_scale:
        epochs = max(len(s.medians) for s in a.noise_scale)
        last_column = NOISE_COLUMNS - 1
        shown = (sorted({round(i * (epochs - 1) / last_column) for i in range(NOISE_COLUMNS)})
                 if epochs > NOISE_COLUMNS else list(range(epochs)))
        lines += _indented_table(
            ["batch", "trials"] + [f"epoch {e + 1}" for e in shown],
            [[str(s.batch_size), str(s.trials)]
             + [_num(s.medians[e] if e < len(s.medians) else None, ".4g") for e in shown]
             for s in a.noise_scale])
        last = [s.medians[-1] for s in a.noise_scale if s.medians[-1] is not None]
        if last:
            lines += [f"  last epoch, median over batch sizes: {statistics.median(last):.4g}; "
                      "McCandlish et al. predict",
                      "  B_crit ~ B_noise, which B_simple approximates (it grows as the loss "
                      "falls)"]
    return lines + _notes(a.noise_notes)


def format_analysis(a: StudyAnalysis) -> str:
    """The analysis as the CLI prints it: a summary line, then one section per question."""
    sizes = sorted({b.batch_size for b in a.best} | {r.batch_size for r in a.steps_to_target})
    lines = [f"Study {a.study_name or '(unnamed)'}: {a.complete_trials} complete and "
             f"{a.pruned_trials} pruned trials, {len(sizes)} batch "
             f"{plural(len(sizes), 'size', 'sizes')} with results"]
    lines += _notes(a.notes)
    lines += ["", "Answers"] + [line for answer in answer_lines(a) for line in textwrap.wrap(
        answer, NOTE_WIDTH, initial_indent="  - ", subsequent_indent="    ")]
    for section in (_best_lr_section, _steps_section, _noise_section):
        lines += ["", *section(a)]
    return "\n".join(lines)
