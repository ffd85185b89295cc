"""The self-contained HTML report: one file, readable offline, one or several runs side by side.

Everything the page needs is inline: CSS in the template, the plot and the item thumbnails as
data: URIs, and a few lines of script for filtering item cards (allowed by a hash in the page's
Content-Security-Policy, so nothing else could run even if escaping failed). The template
autoescapes everything; the only markup built here is in prompts: the visible `[image]` marker
and the spans that set the few-shot examples apart from the asked question.
"""

from __future__ import annotations

import base64
import hashlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

from jinja2 import Environment, StrictUndefined, Template
from markupsafe import Markup

from vlmalign.data.text import visible_text
from vlmalign.judges.human import HUMAN, AnnotatorAgreement
from vlmalign.report.across_runs import AcrossRuns, across_runs
from vlmalign.report.analysis import Analysis
from vlmalign.report.conditions import ConditionKey
from vlmalign.report.formatting import (
    agreement_bias,
    agreement_kappa,
    decimal,
    difference,
    judge_warning,
    p_value,
    percent,
    rate,
)
from vlmalign.report.item_cards import data_uri, item_cards
from vlmalign.report.markdown import VALIDITY_NOTE, calibrated_note
from vlmalign.report.plot import accuracy_png
from vlmalign.report.reference import (
    EVALUATION_OF_JUDGE,
    PAPER,
    PAPER_LABEL,
    REFERENCE,
    TRAIN_ITEMS,
)
from vlmalign.report.tables import (
    COMPARISON_HEADER,
    USAGE_HEADER,
    USAGE_NOTE,
    USAGE_TITLE,
    VALIDITY_HEADER,
    breakdown_tables,
    comparison_rows,
    profile_rows,
    result_tables,
    usage_rows,
    validity_rows,
)
from vlmalign.report.texts import comparison_sentence, coverage_text, shared_items_sentence
from vlmalign.schemas.results import ComparisonRecord

ASSETS = "assets"
TEMPLATE = "report.html.j2"
SCRIPT = "report.js"


@dataclass(frozen=True)
class RunHeader:
    label: str
    model: str
    dataset: str
    samples_per_prompt: str
    prompt_format: str
    judges: list[str]
    items: int
    responses: int
    labels: int


@dataclass(frozen=True)
class PaperRow:
    table: int
    paper_row: str
    conditions: str
    judges: list[str]


@dataclass(frozen=True)
class ComparisonView:
    run: str
    judge: str
    a: str
    b: str
    accuracy_a: str
    accuracy_b: str
    difference: str
    p: str
    p_holm: str
    method: str
    items: int
    significant: bool
    sentence: str


@dataclass(frozen=True)
class JudgeVsHumanView:
    judge: str
    pairs: int
    n: int
    judge_unclear: int
    human_unclear: int
    accuracy: str
    kappa: str  # with its 95% interval
    confusion: dict[str, dict[str, int]]
    summary: str
    bias: str = "–"  # judge − human aligned rate with its 95% interval


@dataclass(frozen=True)
class HumanSection:
    run: str
    agreement: AnnotatorAgreement
    statuses: dict[str, int]
    judges: list[JudgeVsHumanView]
    coverage: list[str] = field(default_factory=list)  # "base 0-shot train: 12 of 150 ..."


def render_html(analyses: Sequence[Analysis], across: AcrossRuns | None = None) -> str:
    """One self-contained page for the runs (one Analysis per run directory), side by side."""
    if not analyses:
        raise ValueError("render_html needs at least one analysed run")
    runs = list(zip(run_labels(analyses), analyses, strict=True))
    several = len(runs) > 1
    judges = _judges(analyses)
    script = _asset(SCRIPT)
    plot = accuracy_png({label: a.cells for label, a in runs})
    cells = [(label, a.cells) for label, a in runs]
    tables = result_tables(cells, judges)
    if several and across is None:
        across = across_runs(analyses)
    return _template().render(
        runs=[_header(label, a) for label, a in runs],
        several=several,
        run_names=[label for label, _ in runs],
        tables=tables,
        paper_layout=any(t.key == "table1" for t in tables),
        across=across,
        comparison_header=COMPARISON_HEADER,
        between=comparison_rows(across.comparisons) if across else [],
        shared=[shared_items_sentence(s) for s in across.shared] if across else [],
        paper=PAPER,
        paper_label=PAPER_LABEL,
        paper_rows=_paper_rows(judges),
        show_paper=any(a.paper for _, a in runs),
        calibrated_note=calibrated_note([c for _, a in runs for c in a.cells])
        if any(t.table.calibrated for t in tables)
        else None,
        train_items=TRAIN_ITEMS,
        plot_uri=data_uri("image/png", plot),
        comparisons=[
            _comparison_view(label, c, several) for label, a in runs for c in a.comparisons
        ],
        validity_note=VALIDITY_NOTE.replace("**", ""),
        validity_header=(["run"] if several else []) + VALIDITY_HEADER,
        validity=[
            ([label] if several else []) + row
            for label, a in runs
            for row in validity_rows(a.validity)
        ],
        human=[s for label, a in runs if (s := _human_section(label, a)) is not None],
        breakdowns=[table for label, a in runs for table in breakdown_tables(a, label)],
        profiles=[(label, rows) for label, a in runs if (rows := profile_rows(a))],
        usage_title=USAGE_TITLE,
        usage_header=USAGE_HEADER,
        usage_note=USAGE_NOTE,
        usage=[(label, shown) for label, a in runs if (shown := usage_rows(a.usage))],
        items=item_cards(runs),
        script=Markup(script),  # our own asset, allowed by its hash in the policy
        csp=_content_security_policy(script),
    )


def run_labels(analyses: Sequence[Analysis]) -> list[str]:
    """Run names, made unique (two directories may share a name) so columns stay distinct."""
    labels: list[str] = []
    for analysis in analyses:
        label, copy = analysis.run.name, 2
        while label in labels:
            label, copy = f"{analysis.run.name} ({copy})", copy + 1
        labels.append(label)
    return labels


@cache
def _template() -> Template:
    environment = Environment(autoescape=True, undefined=StrictUndefined, trim_blocks=True)
    # Untrusted text (responses, questions, notes, names) shows bidi controls escaped: an
    # override must not make a response read as another on the page.
    environment.filters.update(pct=percent, decimal=decimal, visible=visible_text)
    return environment.from_string(_asset(TEMPLATE))


def _asset(name: str) -> str:
    return (resources.files("vlmalign.report") / ASSETS / name).read_text(encoding="utf-8")


def _content_security_policy(script: str) -> str:
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    return (
        "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
        f"script-src 'sha256-{digest}'; base-uri 'none'; form-action 'none'"
    )


def _header(label: str, analysis: Analysis) -> RunHeader:
    provenance = analysis.run.provenance
    return RunHeader(
        label=label,
        model=provenance.model or "?",
        dataset=provenance.dataset or "?",
        samples_per_prompt=str(provenance.samples_per_prompt or "?"),
        prompt_format=provenance.prompt_format or "?",
        judges=analysis.judges,
        items=len({g.item_id for g in analysis.run.generations}),
        responses=len(analysis.run.generations),
        labels=len(analysis.run.labels),
    )


def _judges(analyses: Sequence[Analysis]) -> list[str]:
    """Automatic judges in first-seen order, then `human` when any run has labels."""
    automatic = dict.fromkeys(j for a in analyses for j in a.run.judges)
    return list(automatic) + ([HUMAN] if any(a.human for a in analyses) else [])


# --- the paper's rows ----------------------------------------------------------------------------


def _paper_rows(judges: Sequence[str]) -> list[PaperRow]:
    """Which row of the paper is shown beside which of our judges (see reference.py)."""
    grouped: dict[tuple[int, str, str], list[str]] = defaultdict(list)
    for ref in REFERENCE:
        condition = ConditionKey(ref.model, ref.split, ref.shots)
        grouped[(ref.table, ref.paper_row, ref.evaluation)].append(condition.label)
    present = {j.split(":")[0] for j in judges}
    rows = []
    for (table, paper_row, evaluation), conditions in grouped.items():
        mapped = [j for j, e in EVALUATION_OF_JUDGE.items() if e == evaluation]
        shown = [j for j in mapped if j in present] or mapped
        rows.append(PaperRow(table, paper_row, ", ".join(dict.fromkeys(conditions)), shown))
    return rows


# --- significance, humans, breakdowns ------------------------------------------------------------


def _comparison_view(label: str, c: ComparisonRecord, several: bool) -> ComparisonView:
    return ComparisonView(
        run=label,
        judge=c.judge,
        a=c.a.label,
        b=c.b.label,
        accuracy_a=percent(c.accuracy_a),
        accuracy_b=percent(c.accuracy_b),
        difference=difference(c.difference, c.ci_low, c.ci_high),
        p=p_value(c.p_value),
        p_holm=p_value(c.p_holm),
        method=c.method,
        items=c.n_items,
        significant=c.significant,
        sentence=f"{label}: {comparison_sentence(c)}" if several else comparison_sentence(c),
    )


def _human_section(label: str, analysis: Analysis) -> HumanSection | None:
    if analysis.annotators is None:
        return None
    statuses = {s: 0 for s in ("aligned", "misaligned", "unsure", "tie")}
    for verdict in analysis.human.values():
        statuses[verdict.status] = statuses.get(verdict.status, 0) + 1
    judges = [
        JudgeVsHumanView(
            judge=judge,
            pairs=agreement.pairs,
            n=agreement.n,
            judge_unclear=agreement.judge_unclear,
            human_unclear=agreement.human_unclear,
            accuracy=rate(
                agreement.accuracy, agreement.accuracy_ci_low, agreement.accuracy_ci_high
            ),
            kappa=agreement_kappa(agreement),
            confusion=agreement.confusion,
            summary=agreement.summary() + judge_warning(analysis.informative.get(judge)),
            bias=agreement_bias(agreement),
        )
        for judge, agreement in analysis.judge_vs_human.items()
    ]
    coverage = [coverage_text(c) for c in analysis.human_coverage]
    return HumanSection(label, analysis.annotators, statuses, judges, coverage)


# --- item cards ----------------------------------------------------------------------------------
