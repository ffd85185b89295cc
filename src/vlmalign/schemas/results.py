"""`results.json`: the machine-readable contract of a report (one run, or several side by side).

The records are the report's results themselves: `report/analysis.py`, `report/usage.py`,
`report/across_runs.py` and `report/reference.py` build them, the renderers read them and
`results.json` dumps them, so there is one type per result. How the report words a record
(`report/texts.py`) stays in `report/`; this module imports only pydantic, the standard library
and `schemas/`. Three records copy a result computed below the report (`CalibratedRecord`:
`stats.CalibratedRate`, `AnnotatorAgreementRecord`: `judges.human.AnnotatorAgreement`,
`JudgeAgreementRecord`: `stats.JudgeAgreement`; tests/test_schemas.py keeps their fields the
same). Every field is required, so a result that gains or loses a field fails loudly until this
contract says so.
"""

from __future__ import annotations

from typing import Any, Final, Literal, NamedTuple, Protocol

from pydantic import ConfigDict, Field, GetCoreSchemaHandler
from pydantic_core import CoreSchema, core_schema

from vlmalign.schemas.base import Record
from vlmalign.schemas.judge_validity import ValidityEntry
from vlmalign.schemas.provenance import Provenance

#: Version of the results' shape (docs/artifacts.md).
RESULTS_SCHEMA_VERSION: Final = 1

#: Model variants in report order; any other variant sorts after these.
VARIANTS = ("base", "finetuned")


class _Generated(Protocol):
    @property
    def variant(self) -> str: ...
    @property
    def split(self) -> str: ...
    @property
    def shots(self) -> int: ...


class ConditionKey(NamedTuple):
    """(model variant, split, shots): the one key every part of the report groups by, labels and
    sorts with; written as a 3-item array (a plain tuple wherever it is stored)."""

    model: str  # the model variant: base | finetuned
    split: str
    shots: int

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        # Validated and written as the 3-item array `tuple[str, str, int]` (the same JSON
        # Schema), read back as a ConditionKey.
        return core_schema.no_info_after_validator_function(
            lambda value: cls(*value), handler(tuple[str, str, int])
        )

    @classmethod
    def of(cls, row: _Generated) -> ConditionKey:
        """The condition a stored response was generated under."""
        return cls(row.variant, row.split, row.shots)

    @property
    def column(self) -> str:
        """Shots and split, for a table whose rows already say the model: "1-shot train"."""
        return f"{self.shots}-shot {self.split}"

    @property
    def label(self) -> str:
        """The whole condition: "base 1-shot train"."""
        return f"{self.model} {self.column}"

    @property
    def tick(self) -> str:
        """The label on three lines, for a plot's axis."""
        return "\n".join((self.model, f"{self.shots}-shot", self.split))

    def sort_key(self) -> tuple[int, str, bool, str, int]:
        """Base before finetuned, train before other splits, then by shots."""
        rank = VARIANTS.index(self.model) if self.model in VARIANTS else len(VARIANTS)
        return (rank, self.model, self.split != "train", self.split, self.shots)


class ResultRecord(Record):
    """A result of the report: built once by the analysis, never changed afterwards.

    (A docstring of a record below is its description in the JSON Schema: notes for readers of
    the code are comments.)
    """

    model_config = ConfigDict(extra="forbid", frozen=True)


class CalibratedRecord(ResultRecord):
    """The rate people would give in one condition, from its human labels and one judge on all
    its responses (prediction-powered inference, PPI++; docs/statistics.md)."""

    estimate: float | None
    ci_low: float | None
    ci_high: float | None
    n_labelled: int
    n_unlabelled: int
    lam: float | None = Field(description="PPI++ weight of the judge: 0 = labels only")
    method: str
    labelled_clusters: int = Field(description="items with at least one labelled response")
    labels_only_ci_low: float | None = Field(description="the same interval from labels alone")
    labels_only_ci_high: float | None
    confidence: float


class CellRecord(ResultRecord):
    """Accuracy of one judge on one condition with its 95% interval (`results.csv` rows)."""

    # Automatic judges: unclear verdicts count in n, not as aligned. `human`: n counts responses
    # whose annotators' majority is aligned or misaligned; `unclear` counts unsure majorities and
    # ties, `unlabelled` responses nobody labelled (neither is guessed into the accuracy).
    # `paper_magma_accuracy` is the paper's own MAGMA result for the same cell, when it applies
    # (the built-in dataset with the paper's conditions). `judge_informative` is None where
    # validity was not measured (and for `human`). `calibrated` is the rate people would give,
    # from the condition's human labels and this judge on all its responses (prediction-powered;
    # automatic judges of conditions with labels only).

    model: str = Field(description="model variant: base or finetuned")
    split: str
    shots: int
    judge: str
    accuracy: float | None
    n: int
    aligned: int
    unclear: int
    items: int
    samples_per_prompt: int
    ci_low: float | None
    ci_high: float | None
    ci_method: str
    unlabelled: int
    paper_magma_accuracy: float | None = Field(
        description="the paper's number, only for builtin:moral-vqa-40 with its conditions"
    )
    run: str
    judge_informative: bool | None
    calibrated: CalibratedRecord | None = Field(
        description="the rate people would give (automatic judges, conditions with labels)"
    )

    @property
    def condition(self) -> ConditionKey:
        return ConditionKey(self.model, self.split, self.shots)


class ComparisonRecord(ResultRecord):
    """Condition b against a for one judge on the same items (difference = b - a)."""

    judge: str
    a: ConditionKey
    b: ConditionKey
    accuracy_a: float
    accuracy_b: float
    difference: float
    ci_low: float
    ci_high: float
    p_value: float
    p_holm: float
    method: str
    n_items: int
    run: str
    judge_informative: bool | None
    calibrated: bool = Field(description="accuracies are calibrated estimates (labels + judge)")
    # Set by whoever builds the record (`report.analysis.paired_record`), from `p_value`.
    significant: bool = Field(description="p_value < 0.05")
    run_b: str = Field(
        "",
        description="between runs: the run of b (a is `run`'s; a and b are the same condition, "
        "compared on the items both runs asked); empty within a run",
    )


class BreakdownRecord(ResultRecord):
    """Accuracy of one judge on one condition within a group of items."""

    judge: str
    condition: ConditionKey
    group: str
    accuracy: float | None
    n: int
    ci_low: float | None
    ci_high: float | None
    run: str
    items: int
    judge_informative: bool | None


class ProfileRecord(ResultRecord):
    """How a condition's answers look whatever their alignment (from the stance judge)."""

    condition: ConditionKey
    yes_rate: float | None
    yes_ci_low: float | None
    yes_ci_high: float | None
    unclear_rate: float | None
    consistency: float | None
    inconsistent_items: list[str]
    run: str


class HumanCoverageRecord(ResultRecord):
    """How many of a condition's responses at least one annotator labelled."""

    # Human figures rest on these; with `vlmalign annotate --budget` it is a sample.

    model: str
    split: str
    shots: int
    labelled: int
    responses: int
    run: str

    @property
    def condition(self) -> ConditionKey:
        return ConditionKey(self.model, self.split, self.shots)


class UsageRecord(ResultRecord):
    """One condition's responses and what the endpoint reported about them (token counts and
    `served_by` are null/empty for in-process models, which report none)."""

    model: str = Field(description="model variant: base or finetuned")
    split: str
    shots: int
    responses: int
    refused: int = Field(description="responses the endpoint's content filter refused")
    length_stops: int = Field(
        description="responses stopped at the maximum number of new tokens (finish_reason length)"
    )
    prompt_tokens: int | None = Field(
        description="prompt tokens summed over the responses (what was paid for); null: none "
        "reported"
    )
    completion_tokens: int | None = Field(
        description="completion tokens summed over the responses; null: none reported"
    )
    served_by: list[str] = Field(description="model names the endpoint answered with, sorted")
    run: str

    @property
    def condition(self) -> ConditionKey:
        return ConditionKey(self.model, self.split, self.shots)


class RunValidityEntry(ValidityEntry):
    """A judge-validity entry of one of the reported runs."""

    run: str


class AnnotatorAgreementRecord(Record):
    annotators: list[str]
    labelled: int
    overlapping: int
    cohen_kappa: float | None
    krippendorff_alpha: float | None
    labels_per_annotator: dict[str, int]


class JudgeAgreementRecord(Record):
    """A judge's verdicts against the human majority on the same responses."""

    pairs: int
    n: int
    judge_unclear: int
    human_unclear: int
    accuracy: float | None
    accuracy_ci_low: float | None
    accuracy_ci_high: float | None
    kappa: float | None
    confusion: dict[str, dict[str, int]]
    judge_aligned_rate: float | None
    human_aligned_rate: float | None
    alignment_bias: float | None
    kappa_ci_low: float | None
    kappa_ci_high: float | None
    bias_ci_low: float | None
    bias_ci_high: float | None


HumanStatus = Literal["aligned", "misaligned", "unsure", "tie"]


class HumanSummary(Record):
    """People's verdicts of one run."""

    annotators: AnnotatorAgreementRecord | None
    judge_vs_human: dict[str, JudgeAgreementRecord]
    majority: dict[str, HumanStatus] = Field(description="response key -> majority label")


class PaperCell(ResultRecord):
    """One number of the paper's own MAGMA results."""

    table: int
    model: str
    split: str
    shots: int
    evaluation: Literal["classifier", "hand"]
    paper_row: str
    accuracy: float
    n: int | None


class SharedItemsRecord(ResultRecord):
    """Two runs' items in common: between-run comparisons are on these."""

    run_a: str
    run_b: str
    same_dataset: bool = Field(description="both runs ask the same dataset (by sha256)")
    shared: int = Field(description="item ids both runs asked")
    items_a: int
    items_b: int


class PaperReference(Record):
    source: str
    label: str
    cells: list[PaperCell]


class Results(Record):
    """Everything `results.json` holds. Rows of several runs carry the run's name in `run`."""

    schema_version: Literal[1] = RESULTS_SCHEMA_VERSION
    runs: list[str]
    cells: list[CellRecord]
    comparisons: list[ComparisonRecord]
    breakdowns: list[BreakdownRecord]
    profiles: list[ProfileRecord]
    human_coverage: list[HumanCoverageRecord]
    shared_items: list[SharedItemsRecord] = Field(
        default_factory=list,
        description="with several runs: per pair, the items they share (what between-run "
        "comparisons are on)",
    )
    usage: list[UsageRecord] = Field(
        default_factory=list,
        description="per run and condition: responses, token counts, refusals, stops at the "
        "token limit (missing in files written before it: an empty list)",
    )
    judge_validity: list[RunValidityEntry]
    human: dict[str, HumanSummary] = Field(description="run name -> people's verdicts, if any")
    paper: PaperReference
    provenance: Provenance | dict[str, Provenance] = Field(
        description="the run's provenance; with several runs, run name -> provenance"
    )
