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
import io
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path

from jinja2 import Environment, StrictUndefined, Template
from markupsafe import Markup, escape

from vlmalign.data.images import ImageError, load_image
from vlmalign.data.schema import Item
from vlmalign.data.text import visible_text
from vlmalign.judges.human import HUMAN, AnnotatorAgreement, HumanVerdict
from vlmalign.prompts import IMAGE_TOKEN
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
from vlmalign.store import GenerationRow, JudgmentRow, LabelRow, RunStore

log = logging.getLogger(__name__)

ASSETS = "assets"
TEMPLATE = "report.html.j2"
SCRIPT = "report.js"
THUMBNAIL_PX = 160
IMAGE_MARKER = Markup('<span class="image-marker" title="the image goes here">[image]</span>')


# --- text ---------------------------------------------------------------------------------------


def prompt_markup(prompt: str, question: str | None = None) -> Markup:
    """The whole prompt escaped, each image placeholder shown as a visible marker.

    With the item's `question`, the turn that asks it (from its last occurrence on) is set
    apart as `<span class="asked">`, after the few-shot examples in `<span class="shots">`,
    so a reader never mistakes a shot's question for the one the model answered."""
    start = _asked_start(prompt, question) if question else None
    if start is None:
        return _marked(prompt)
    shots, asked = prompt[:start], prompt[start:]
    shown = Markup('<span class="asked" title="the question the model was asked">{}</span>')
    shown = shown.format(_marked(asked))
    if shots.strip():
        # The shots' last line break is the block boundary between the two.
        muted = Markup('<span class="shots" title="few-shot examples">{}</span>')
        shown = muted.format(_marked(shots.removesuffix("\n"))) + shown
    return shown


def _marked(text: str) -> Markup:
    return IMAGE_MARKER.join(escape(visible_text(part)) for part in text.split(IMAGE_TOKEN))


MAX_TURN_PREFIX = 32  # characters before the question on its line: a role, `Q: `, the image


def _asked_start(prompt: str, question: str) -> int | None:
    """Where the asked turn begins: the start of the line of the question's last occurrence
    (taking `user: ` or `Q: ` with it), or the question itself when a chat template put the
    whole conversation on one line; None when the prompt does not contain the question."""
    found = prompt.rfind(question.strip())
    if found < 0 or not question.strip():
        return None
    line = prompt.rfind("\n", 0, found) + 1
    prefix = prompt[line:found].replace(IMAGE_TOKEN, "")
    return line if len(prefix) <= MAX_TURN_PREFIX else found


# --- views handed to the template ----------------------------------------------------------------


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


@dataclass(frozen=True)
class VerdictView:
    judge: str
    text: str  # aligned | not aligned | unclear | no verdict
    css: str
    detail: str = ""  # what the judge read, and its score
    explanation: str = ""  # the judge's one sentence on why (shown on hover)


@dataclass(frozen=True)
class HumanLabelView:
    annotator: str
    label: str
    note: str


@dataclass(frozen=True)
class SampleView:
    index: int
    response: str
    verdicts: list[VerdictView]
    labels: list[HumanLabelView]
    majority: str | None  # the humans' status, None when nobody labelled it
    votes: str = ""


@dataclass(frozen=True)
class ConditionView:
    label: str
    prompts: list[Markup]
    samples: list[SampleView]


@dataclass(frozen=True)
class RunItemView:
    run: str
    conditions: list[ConditionView]


@dataclass(frozen=True)
class ItemCard:
    item: Item
    thumbnail: str | None  # data: URI
    image_problem: str
    search: str  # lower-case text the card filter matches
    runs: list[RunItemView] = field(default_factory=list)


# --- the page -----------------------------------------------------------------------------------


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
        plot_uri=_data_uri("image/png", plot),
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
        items=_item_cards(runs),
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


def _data_uri(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


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


def _item_cards(runs: Sequence[tuple[str, Analysis]]) -> list[ItemCard]:
    """One card per item of any run, in the first run's dataset order."""
    items: dict[str, tuple[Item, Analysis]] = {}
    for _, analysis in runs:
        for item_id, item in analysis.run.items.items():
            items.setdefault(item_id, (item, analysis))
    thumbnails = _Thumbnails()
    base_dirs = _image_base_dirs(items)
    per_run = [_RunIndex(label, a) for label, a in runs]
    cards = []
    for item_id, (item, _) in items.items():
        thumbnail, problem = thumbnails.get(item.image, base_dirs.get(item_id))
        cards.append(
            ItemCard(
                item=item,
                thumbnail=thumbnail,
                image_problem=problem,
                search=" ".join(
                    [item.id, item.question, item.split or "", item.polarity or "", *item.tags]
                ).lower(),
                runs=[view for index in per_run if (view := index.item_view(item_id))],
            )
        )
    return cards


def _image_base_dirs(items: dict[str, tuple[Item, Analysis]]) -> dict[str, Path]:
    """Where each item's relative image path starts (as recorded with its dataset snapshot)."""
    by_run: dict[Path, list[str]] = defaultdict(list)
    for item_id, (_, analysis) in items.items():
        by_run[analysis.run.run_dir].append(item_id)
    found: dict[str, Path] = {}
    for run_dir, item_ids in by_run.items():
        with RunStore(run_dir, read_only=True) as store:
            for item_id in item_ids:
                stored = store.item(item_id)
                found[item_id] = stored[1] if stored else run_dir
    return found


class _Thumbnails:
    """JPEG thumbnails as data: URIs, made once per image however many items share it."""

    def __init__(self) -> None:
        self._made: dict[tuple[str, Path | None], tuple[str | None, str]] = {}

    def get(self, ref: str, base_dir: Path | None) -> tuple[str | None, str]:
        key = (ref, base_dir)
        if key not in self._made:
            self._made[key] = self._make(ref, base_dir)
        return self._made[key]

    @staticmethod
    def _make(ref: str, base_dir: Path | None) -> tuple[str | None, str]:
        try:
            image = load_image(ref, base_dir).image.copy()  # the loaded image is cached: copy
            image.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
            buffer = io.BytesIO()
            image.convert("RGB").save(buffer, format="JPEG", quality=82)
        except (ImageError, OSError, ValueError) as exc:
            log.warning("report: no thumbnail for %s: %s", ref, exc)
            return None, str(exc)
        return _data_uri("image/jpeg", buffer.getvalue()), ""


class _RunIndex:
    """One run's responses, verdicts and labels looked up by item (built once per run)."""

    def __init__(self, label: str, analysis: Analysis) -> None:
        self.label = label
        self.analysis = analysis
        self.rows: dict[str, dict[ConditionKey, list[GenerationRow]]] = defaultdict(
            lambda: defaultdict(list)
        )
        for row in analysis.run.generations:
            self.rows[row.item_id][ConditionKey.of(row)].append(row)
        self.labels: dict[str, dict[str, LabelRow]] = defaultdict(dict)
        for label_row in analysis.run.labels:  # label order: a later label revises an earlier one
            self.labels[label_row.generation_key][label_row.annotator] = label_row

    def item_view(self, item_id: str) -> RunItemView | None:
        by_condition = self.rows.get(item_id)
        if not by_condition:
            return None
        item = self.analysis.run.items.get(item_id)
        question = item.question if item else None
        conditions = [
            ConditionView(
                condition.label,
                [prompt_markup(p, question) for p in dict.fromkeys(r.prompt for r in rows)],
                [self._sample(r) for r in sorted(rows, key=lambda r: r.sample_index)],
            )
            for condition, rows in sorted(by_condition.items(), key=lambda kv: kv[0].sort_key())
        ]
        return RunItemView(self.label, conditions)

    def _sample(self, row: GenerationRow) -> SampleView:
        verdicts = [
            _verdict_view(judge, self.analysis.run.verdicts[judge].get(row.key))
            for judge in self.analysis.run.judges
        ]
        labels = [
            HumanLabelView(annotator, label.label, label.note)
            for annotator, label in sorted(self.labels.get(row.key, {}).items())
        ]
        human = self.analysis.human.get(row.key)
        return SampleView(
            index=row.sample_index,
            response=row.response,
            verdicts=verdicts,
            labels=labels,
            majority=human.status if human else None,
            votes=_votes(human) if human else "",
        )


def _verdict_view(judge: str, row: JudgmentRow | None) -> VerdictView:
    if row is None:
        return VerdictView(judge, "no verdict", "none")
    text, css = {
        True: ("aligned", "ok"),
        False: ("not aligned", "bad"),
        None: ("unclear", "unclear"),
    }[row.aligned]
    details = []
    if row.answer is not None:
        details.append(f"reads {row.answer}")
    if row.score is not None:
        details.append(f"score {decimal(row.score)}")
    return VerdictView(judge, text, css, ", ".join(details), row.explanation or "")


def _votes(verdict: HumanVerdict) -> str:
    return ", ".join(f"{count} {label}" for label, count in verdict.votes.items())
