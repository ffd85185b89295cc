"""The report's item cards: one per item, with its thumbnail, its prompts (the question the model
was asked marked) and every run's samples with their verdicts and human labels, as views the
HTML template renders (report/html.py)."""

from __future__ import annotations

import base64
import io
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from markupsafe import Markup, escape

from vlmalign.data.images import ImageError, load_image
from vlmalign.data.schema import Item
from vlmalign.data.text import visible_text
from vlmalign.judges.human import HumanVerdict
from vlmalign.prompts import IMAGE_TOKEN
from vlmalign.report.analysis import Analysis
from vlmalign.report.conditions import ConditionKey
from vlmalign.report.formatting import decimal
from vlmalign.store import GenerationRow, JudgmentRow, LabelRow, RunStore

log = logging.getLogger(__name__)

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


def data_uri(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def item_cards(runs: Sequence[tuple[str, Analysis]]) -> list[ItemCard]:
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
        return data_uri("image/jpeg", buffer.getvalue()), ""


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
