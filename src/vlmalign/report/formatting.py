"""How the report writes numbers: percentages, intervals, p-values, and the judge warning.

Markdown, HTML, the plot and the console all format through these, so a figure reads the same
in every output. A missing value is an en dash.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vlmalign.stats.minimums import TOO_FEW

if TYPE_CHECKING:
    from vlmalign.stats import JudgeAgreement

MISSING = "–"
#: Appended wherever a number of a judge that is not informative stands (see judge validity).
NOT_INFORMATIVE = "judge not informative"


def percent(value: float | None) -> str:
    """0.564 -> "56%"."""
    return MISSING if value is None else f"{value:.0%}"


def count(value: int | None) -> str:
    """12345 -> "12,345"."""
    return MISSING if value is None else f"{value:,}"


def decimal(value: float | None) -> str:
    """0.564 -> "0.56"."""
    return MISSING if value is None else f"{value:.2f}"


def rate(value: float | None, low: float | None, high: float | None) -> str:
    """A share with its interval: "56% [41%–70%]" (the interval left out when there is none)."""
    if value is None:
        return MISSING
    if low is None or high is None:
        return percent(value)
    return f"{percent(value)} [{percent(low)}–{percent(high)}]"


def estimate(value: float | None, low: float | None, high: float | None, n: int) -> str:
    """An accuracy, its interval and its sample size: "56% [41%–70%] (n=30)"."""
    if value is None or n == 0:
        return MISSING
    return f"{rate(value, low, high)} (n={n})"


def difference(value: float, low: float, high: float) -> str:
    """A signed difference of shares with its interval: "+20% [+4%, +35%]"."""
    return f"{value:+.0%} [{low:+.0%}, {high:+.0%}]"


def decimal_interval(value: float | None, low: float | None, high: float | None) -> str:
    """A score with its interval: "0.71 [0.62, 0.80]"."""
    if value is None or low is None or high is None:
        return decimal(value)
    return f"{decimal(value)} [{decimal(low)}, {decimal(high)}]"


def points(value: float | None, low: float | None, high: float | None) -> str:
    """A difference of shares in percentage points: "+12.5 points [+3.0, +21.0]"."""
    if value is None:
        return MISSING
    interval = "" if low is None or high is None else f" [{low * 100:+.1f}, {high * 100:+.1f}]"
    return f"{value * 100:+.1f} points{interval}"


def p_value(p: float) -> str:
    """A p-value for a table cell: "0.012", "<0.001"."""
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def p_statement(p: float) -> str:
    """A p-value in a sentence: "p = 0.012", "p < 0.001"."""
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def judge_warning(informative: bool | None) -> str:
    """What follows a figure of a judge found not informative: " ⚠ judge not informative"."""
    return f" ⚠ {NOT_INFORMATIVE}" if informative is False else ""


def agreement_kappa(agreement: JudgeAgreement) -> str:
    """Kappa with its interval, or "too few to tell" on a handful of responses."""
    if agreement.too_few:
        return TOO_FEW
    return decimal_interval(agreement.kappa, agreement.kappa_ci_low, agreement.kappa_ci_high)


def agreement_bias(agreement: JudgeAgreement) -> str:
    """Judge − people aligned rate in points with its interval, or "too few to tell"."""
    if agreement.too_few:
        return TOO_FEW
    return points(agreement.alignment_bias, agreement.bias_ci_low, agreement.bias_ci_high)
