"""The paper's own MAGMA results, shown beside a run's matching cells (never mixed with them).

Source: "Aligning MAGMA by Few-Shot Learning and Finetuning", Table 1 and Table 2. The paper
sampled once per prompt (temperature 0.7, top-k 0, 15 tokens) on 30 train items; the size of
its test split is not stated. Its "hand-evaluated" rows are shown beside our `human` judge and
the `stance` judge (an automatic reading of the same question: did the answer take the aligned
stance?), and its "Common sense RoBERTa-large Classifier" row beside `ethics-roberta` and its
stand-in `ethics`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from functools import cache
from typing import Literal

from vlmalign.config import PAPER_CONDITIONS
from vlmalign.report.conditions import ConditionKey
from vlmalign.schemas.results import PaperCell

PAPER = "Aligning MAGMA by Few-Shot Learning and Finetuning"
#: The dataset the paper's numbers are comparable with (our stand-in for its 30 + test items).
PAPER_DATASET = "builtin:moral-vqa-40"
PAPER_LABEL = "paper (MAGMA)"


def _cell(
    table: int,
    model: str,  # base | finetuned
    split: str,
    shots: int,
    evaluation: Literal["classifier", "hand"],  # RoBERTa-large on prompt + response, or by hand
    paper_row: str,
    accuracy: float,
    n: int | None,  # None where the paper does not say
) -> PaperCell:
    return PaperCell(
        table=table,
        model=model,
        split=split,
        shots=shots,
        evaluation=evaluation,
        paper_row=paper_row,
        accuracy=accuracy,
        n=n,
    )


TRAIN_ITEMS = 30
REFERENCE: tuple[PaperCell, ...] = (
    _cell(1, "base", "train", 0, "classifier", "RoBERTa-large classifier", 0.90, 30),
    _cell(1, "base", "train", 1, "classifier", "RoBERTa-large classifier", 0.93, 30),
    _cell(1, "base", "train", 2, "classifier", "RoBERTa-large classifier", 0.93, 30),
    _cell(1, "base", "train", 0, "hand", "hand-evaluated", 0.56, 30),
    _cell(1, "base", "train", 1, "hand", "hand-evaluated", 0.67, 30),
    _cell(1, "base", "train", 2, "hand", "hand-evaluated", 0.56, 30),
    _cell(2, "base", "train", 0, "hand", "Huggingface's MAGMA", 0.56, 30),
    _cell(2, "base", "test", 0, "hand", "Huggingface's MAGMA", 0.50, None),
    _cell(2, "finetuned", "train", 0, "hand", "Finetuned MAGMA", 0.67, 30),
    _cell(2, "finetuned", "test", 0, "hand", "Finetuned MAGMA", 0.60, None),
)


EVALUATION_OF_JUDGE = {
    "ethics-roberta": "classifier",
    "ethics": "classifier",
    "human": "hand",
    "stance": "hand",
}


def reference_for(
    model: str, split: str, shots: int, judge: str, table: int | None = None
) -> PaperCell | None:
    """The paper's number for the same condition and kind of evaluation, if it reported one."""
    evaluation = EVALUATION_OF_JUDGE.get(judge.split(":")[0])
    for cell in REFERENCE:
        same = (cell.model, cell.split, cell.shots, cell.evaluation) == (
            model,
            split,
            shots,
            evaluation,
        )
        if same and (table is None or cell.table == table):
            return cell
    return None


@cache
def _paper_dataset_sha256() -> str:
    from vlmalign.data.dataset import resolve_source

    return hashlib.sha256(resolve_source(PAPER_DATASET).read_bytes()).hexdigest()


def paper_applies(
    dataset: str | None, dataset_sha256: str | None, conditions: Collection[ConditionKey]
) -> bool:
    """Whether the paper's numbers mean anything beside a run: the built-in dataset (its
    content, or its name for a run that recorded no hash), studied with every one of the
    paper's conditions on the base model."""
    if dataset_sha256 is not None:
        if dataset_sha256 != _paper_dataset_sha256():
            return False
    elif dataset != PAPER_DATASET:
        return False
    present = set(conditions)
    return all(ConditionKey("base", c.split, c.shots) in present for c in PAPER_CONDITIONS)
