"""The self-contained HTML report: one file, readable offline, one or several runs side by side.

Everything the page needs is inline: CSS in the template, the plot and the item thumbnails as
data: URIs, and a few lines of script for filtering item cards (allowed by a hash in the page's
Content-Security-Policy, so nothing else could run even if escaping failed). The template
autoescapes everything; the only markup built here is the visible `[image]` marker in prompts.
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
from vlmalign.judges.human import HUMAN, AnnotatorAgreement, HumanVerdict
from vlmalign.prompts import IMAGE_TOKEN
from vlmalign.report.analysis import (
    Analysis,
    Cell,
    Comparison,
    ConditionKey,
    condition_label,
)
from vlmalign.report.markdown import VALIDITY_HEADER, VALIDITY_NOTE, validity_rows
from vlmalign.report.plot import accuracy_png, condition_order
from vlmalign.report.reference import (
    EVALUATION_OF_JUDGE,
    PAPER,
    PAPER_LABEL,
    REFERENCE,
    TRAIN_ITEMS,
    reference_for,
)
from vlmalign.store import GenerationRow, JudgmentRow, LabelRow, RunStore

log = logging.getLogger(__name__)

ASSETS = "assets"
TEMPLATE = "report.html.j2"
SCRIPT = "report.js"
THUMBNAIL_PX = 160
IMAGE_MARKER = Markup('<span class="image-marker" title="the image goes here">[image]</span>')
TABLE1_SHOTS = (0, 1, 2)
TABLE2_SPLITS = ("train", "test")
MODELS = ("base", "finetuned")


# --- formatting (also the template's filters) ----------------------------------------------------


def pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}"


def decimal(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def p_value(value: float) -> str:
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def rate_text(rate: float | None, low: float | None, high: float | None) -> str:
    """ "acc [lo–hi]", the interval left out when there is none."""
    if rate is None:
        return "–"
    interval = f" [{low:.0%}–{high:.0%}]" if low is not None and high is not None else ""
    return f"{rate:.0%}{interval}"


def estimate_text(accuracy: float | None, low: float | None, high: float | None, n: int) -> str:
    """Same shape as `Cell.text()`: "acc [lo–hi] (n=…)"."""
    if accuracy is None or n == 0:
        return "–"
    return f"{rate_text(accuracy, low, high)} (n={n})"


def prompt_markup(prompt: str) -> Markup:
    """The prompt escaped, with each image placeholder shown as a visible marker."""
    return IMAGE_MARKER.join(escape(part) for part in prompt.split(IMAGE_TOKEN))


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
class CellView:
    text: str
    paper: str | None = None  # e.g. "paper (MAGMA): 56%"
    note: str | None = None  # what the accuracy leaves out


@dataclass(frozen=True)
class TableRow:
    labels: tuple[str, ...]  # judge, and for Table 2 the model
    cells: tuple[CellView, ...]  # run-major: every column of run 1, then of run 2, ...


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
class BreakdownTable:
    run: str
    judge: str
    conditions: list[str]
    rows: list[tuple[str, list[str]]]


@dataclass(frozen=True)
class ProfileView:
    condition: str
    yes_rate: str
    unclear_rate: str
    consistency: str
    inconsistent_items: list[str]


@dataclass(frozen=True)
class VerdictView:
    judge: str
    text: str  # aligned | not aligned | unclear | no verdict
    css: str
    detail: str = ""


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


def render_html(analyses: Sequence[Analysis]) -> str:
    """One self-contained page for the runs (one Analysis per run directory), side by side."""
    if not analyses:
        raise ValueError("render_html needs at least one analysed run")
    runs = list(zip(run_labels(analyses), analyses, strict=True))
    several = len(runs) > 1
    judges = _judges(analyses)
    script = _asset(SCRIPT)
    plot = accuracy_png({label: a.cells for label, a in runs})
    return _template().render(
        runs=[_header(label, a) for label, a in runs],
        several=several,
        run_names=[label for label, _ in runs],
        table1_columns=[f"{shots}-shot train" for shots in TABLE1_SHOTS],
        table1=_table1(analyses, judges),
        table2_columns=[f"0-shot {split}" for split in TABLE2_SPLITS],
        table2=_table2(analyses, judges),
        paper=PAPER,
        paper_label=PAPER_LABEL,
        paper_rows=_paper_rows(judges),
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
        breakdowns=[table for label, a in runs for table in _breakdowns(label, a)],
        profiles=[(label, _profiles(a)) for label, a in runs],
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
    environment.filters.update(pct=pct, decimal=decimal)
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
        model=str(provenance.get("model", "?")),
        dataset=str(provenance.get("dataset", "?")),
        samples_per_prompt=str(provenance.get("samples_per_prompt", "?")),
        prompt_format=str(provenance.get("prompt_format", "?")),
        judges=analysis.judges,
        items=len({g.item_id for g in analysis.run.generations}),
        responses=len(analysis.run.generations),
        labels=len(analysis.run.labels),
    )


def _judges(analyses: Sequence[Analysis]) -> list[str]:
    """Automatic judges in first-seen order, then `human` when any run has labels."""
    automatic = dict.fromkeys(j for a in analyses for j in a.run.judges)
    return list(automatic) + ([HUMAN] if any(a.human for a in analyses) else [])


# --- Tables 1 and 2 ------------------------------------------------------------------------------


def _cell_view(cell: Cell | None, table: int) -> CellView:
    if cell is None:
        return CellView("–")
    reference = reference_for(cell.model, cell.split, cell.shots, cell.judge, table)
    paper = f"{PAPER_LABEL}: {reference.accuracy:.0%}" if reference else None
    return CellView(cell.text(), paper, _cell_note(cell))


def _cell_note(cell: Cell) -> str | None:
    if cell.judge == HUMAN:
        parts = [f"{cell.unclear} unsure/tie"] if cell.unclear else []
        parts += [f"{cell.unlabelled} unlabelled"] if cell.unlabelled else []
        return ", ".join(parts) or None
    return f"{cell.unclear} unclear" if cell.unclear else None


def _find(analysis: Analysis, condition: ConditionKey, judge: str) -> Cell | None:
    return next((c for c in analysis.cells if c.condition == condition and c.judge == judge), None)


def _table1(analyses: Sequence[Analysis], judges: Sequence[str]) -> list[TableRow]:
    return [
        TableRow(
            (judge,),
            tuple(
                _cell_view(_find(a, ("base", "train", shots), judge), table=1)
                for a in analyses
                for shots in TABLE1_SHOTS
            ),
        )
        for judge in judges
    ]


def _table2(analyses: Sequence[Analysis], judges: Sequence[str]) -> list[TableRow]:
    models = [m for m in MODELS if any(c.model == m for a in analyses for c in a.cells)]
    return [
        TableRow(
            (judge, model),
            tuple(
                _cell_view(_find(a, (model, split, 0), judge), table=2)
                for a in analyses
                for split in TABLE2_SPLITS
            ),
        )
        for judge in judges
        for model in models
    ]


def _paper_rows(judges: Sequence[str]) -> list[PaperRow]:
    """Which row of the paper is shown beside which of our judges (see reference.py)."""
    grouped: dict[tuple[int, str, str], list[str]] = defaultdict(list)
    for ref in REFERENCE:
        shots = "0/1/2-shot" if ref.table == 1 else "0-shot"
        grouped[(ref.table, ref.paper_row, ref.evaluation)].append(
            f"{ref.model} {shots} {ref.split}"
        )
    present = {j.split(":")[0] for j in judges}
    rows = []
    for (table, paper_row, evaluation), conditions in grouped.items():
        mapped = [j for j, e in EVALUATION_OF_JUDGE.items() if e == evaluation]
        shown = [j for j in mapped if j in present] or mapped
        rows.append(PaperRow(table, paper_row, ", ".join(dict.fromkeys(conditions)), shown))
    return rows


# --- significance, humans, breakdowns ------------------------------------------------------------


def _comparison_view(label: str, c: Comparison, several: bool) -> ComparisonView:
    return ComparisonView(
        run=label,
        judge=c.judge,
        a=condition_label(c.a),
        b=condition_label(c.b),
        accuracy_a=pct(c.accuracy_a),
        accuracy_b=pct(c.accuracy_b),
        difference=f"{c.difference:+.0%} [{c.ci_low:+.0%}, {c.ci_high:+.0%}]",
        p=p_value(c.p_value),
        p_holm=p_value(c.p_holm),
        method=c.method,
        items=c.n_items,
        significant=c.significant,
        sentence=f"{label}: {c.sentence()}" if several else c.sentence(),
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
            accuracy=estimate_text(
                agreement.accuracy,
                agreement.accuracy_ci_low,
                agreement.accuracy_ci_high,
                agreement.n,
            ),
            kappa=agreement.kappa_text(),
            confusion=agreement.confusion,
            summary=agreement.summary(),
            bias=agreement.bias_text(),
        )
        for judge, agreement in analysis.judge_vs_human.items()
    ]
    coverage = [c.text() for c in analysis.human_coverage]
    return HumanSection(label, analysis.annotators, statuses, judges, coverage)


def _breakdowns(label: str, analysis: Analysis) -> list[BreakdownTable]:
    conditions = sorted({b.condition for b in analysis.breakdowns}, key=condition_order)
    tables = []
    for judge in dict.fromkeys(b.judge for b in analysis.breakdowns):
        texts: dict[str, dict[ConditionKey, str]] = defaultdict(dict)
        for b in analysis.breakdowns:
            if b.judge == judge:
                texts[b.group][b.condition] = estimate_text(b.accuracy, b.ci_low, b.ci_high, b.n)
        rows = [(group, [by.get(c, "–") for c in conditions]) for group, by in texts.items()]
        tables.append(BreakdownTable(label, judge, [condition_label(c) for c in conditions], rows))
    return tables


def _profiles(analysis: Analysis) -> list[ProfileView]:
    return [
        ProfileView(
            condition=condition_label(p.condition),
            yes_rate=rate_text(p.yes_rate, p.yes_ci_low, p.yes_ci_high),
            unclear_rate=pct(p.unclear_rate),
            consistency=pct(p.consistency),
            inconsistent_items=p.inconsistent_items,
        )
        for p in analysis.profiles
    ]


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
            self.rows[row.item_id][(row.variant, row.split, row.shots)].append(row)
        self.labels: dict[str, dict[str, LabelRow]] = defaultdict(dict)
        for label_row in analysis.run.labels:  # label order: a later label revises an earlier one
            self.labels[label_row.generation_key][label_row.annotator] = label_row

    def item_view(self, item_id: str) -> RunItemView | None:
        by_condition = self.rows.get(item_id)
        if not by_condition:
            return None
        conditions = [
            ConditionView(
                condition_label(condition),
                [prompt_markup(p) for p in dict.fromkeys(r.prompt for r in rows)],
                [self._sample(r) for r in sorted(rows, key=lambda r: r.sample_index)],
            )
            for condition, rows in sorted(
                by_condition.items(), key=lambda kv: condition_order(kv[0])
            )
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
    if "stance" in row.detail:
        details.append(f"stance: {row.detail['stance']}")
    if row.score is not None:
        details.append(f"score {row.score:.2f}")
    return VerdictView(judge, text, css, ", ".join(details))


def _votes(verdict: HumanVerdict) -> str:
    return ", ".join(f"{count} {label}" for label, count in verdict.votes.items())
