"""The answers in a few plain lines: what ``analyze`` puts first, in the dashboard's note and
at the top of the HTML report."""

from __future__ import annotations

import math

from bsopt.analysis.study import StudyAnalysis


def _g(value: float | None, spec: str = ".3g") -> str:
    return "-" if value is None or not math.isfinite(value) else format(value, spec)


def answer_lines(a: StudyAnalysis) -> list[str]:
    """One line per question: lr scaling, surge, critical batch size, noise scale."""
    lines = []
    fit = a.lr_scaling
    if fit is None:
        lines.append("lr scaling: not enough batch sizes with complete trials (3 needed)")
    else:
        lines.append(
            f"lr scaling: lr* = {fit.c:.3g} B^{fit.alpha:.2f} (alpha 95% CI "
            f"{fit.alpha_low:.2f} .. {fit.alpha_high:.2f}, {fit.batch_sizes} batch sizes, "
            f"{fit.trials} trials): when B doubles, multiply the lr by {2 ** fit.alpha:.2f}. "
            f"Verdict: {fit.verdict_text}")
    if a.surge is not None:
        s = a.surge
        lines.append(f"surge form (Li et al. 2024, for Adam): {s.verdict_text}"
                     + (f"; peak B = {_g(s.b_noise)} (95% CI {_g(s.b_noise_ci[0])} .. "
                        f"{_g(s.b_noise_ci[1])})" if s.inside else ""))
    if a.saturating is not None:
        s = a.saturating
        lines.append(f"saturating form (McCandlish et al. 2018, for SGD): {s.verdict_text}"
                     + (f"; knee B = {_g(s.b_noise)} (95% CI {_g(s.b_noise_ci[0])} .. "
                        f"{_g(s.b_noise_ci[1])})" if s.inside else ""))
    crit, zhang = a.critical_batch, a.zhang
    parts = []
    if crit is not None:
        parts.append(f"McCandlish B_crit = {_g(crit.b_crit)} (95% CI {_g(crit.b_crit_ci[0])} .. "
                     f"{_g(crit.b_crit_ci[1])})")
    if zhang is not None:
        if zhang.b_crit is not None:
            z = f"Zhang et al. (20% more steps than linear scaling from B={zhang.b_ref}): " \
                f"{_g(zhang.b_crit)}"
        else:
            z = f"Zhang et al.: not reached up to B={zhang.beyond} (all within 20% of linear " \
                f"scaling from B={zhang.b_ref})"
        if zhang.closed_form is not None:
            z += f" (on the fitted curve: {_g(zhang.closed_form)})"
        parts.append(z)
    if parts:
        lines.append("critical batch size (steps to val loss "
                     f"{_g(a.target_loss, '.4g')}): " + "; ".join(parts)
                     + ". Below it, doubling B nearly halves the steps; above, it mostly "
                     "doubles the examples")
    else:
        lines.append("critical batch size: too few batch sizes reach the target loss")
    late = a.b_simple_late
    if late is not None:
        ratios = []
        if crit is not None:
            ratios.append(f"B_crit / B_simple = {crit.b_crit / late:.2g}")
        if zhang is not None and zhang.b_crit is not None:
            ratios.append(f"Zhang / B_simple = {zhang.b_crit / late:.2g}")
        lines.append(f"noise scale: B_simple late in training = {late:.3g} (last epoch of each "
                     "batch size's best trial, median)"
                     + (f"; {', '.join(ratios)} (McCandlish et al. predict about 1)"
                        if ratios else ""))
    return lines


def answer_note(a: StudyAnalysis) -> str:
    """The answers as Markdown, for optuna-dashboard's study note."""
    head = f"## bsopt analyze: {a.study_name or 'study'}\n\n"
    body = "\n".join(f"- {line}" for line in answer_lines(a))
    return head + body + ("\n\n" + "\n".join(f"- note: {n}" for n in a.lr_notes)
                          if a.lr_notes else "") + "\n"
