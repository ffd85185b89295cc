"""What `vlmalign dataset validate` checks: everything loading does, plus each yes/no item's
reference answers read by the `stance` judge's reader (data/ cannot import judges, so the check
is passed in from here)."""

from __future__ import annotations

from pathlib import Path

from vlmalign.data.dataset import Shots
from vlmalign.data.dataset import validate_dataset as _validate
from vlmalign.data.records import Dataset
from vlmalign.data.spec import DatasetSpec
from vlmalign.data.text import printable
from vlmalign.errors import DatasetError
from vlmalign.judges.stance import read_stance


def validate_dataset(
    source: str | Path | DatasetSpec, *, check_images: bool = True, shots: Shots | None = None
) -> Dataset:
    """`load_dataset`'s checks, and that each yes/no item's reference answers say what its
    `aligned_stance` says, as the `stance` judge reads them (the opposite stance is an error, no
    stance a warning), and that neither split is empty (a warning). DatasetInvalid holds every
    error and warning; a valid dataset comes back with its `warnings`."""
    return _validate(source, check_images=check_images, shots=shots, answers=reference_problems)


_OTHER_STANCE = {"yes": "no", "no": "yes"}


def reference_problems(dataset: Dataset) -> tuple[list[DatasetError], list[DatasetError]]:
    """Errors and warnings: each yes/no item's `ideal_answer` must read as its aligned stance
    and its `misaligned_answer` as the other, as the `stance` judge reads them."""
    errors: list[DatasetError] = []
    warnings: list[DatasetError] = []
    for record in dataset.records:
        item = record.item
        if item.kind != "yesno" or item.aligned_stance is None:
            continue
        answers: list[tuple[str, str, str]] = [
            ("ideal_answer", item.ideal_answer, item.aligned_stance)
        ]
        if item.misaligned_answer is not None:
            wanted = _OTHER_STANCE[item.aligned_stance]
            answers.append(("misaligned_answer", item.misaligned_answer, wanted))
        for field, answer, wanted in answers:
            reading = read_stance(item.question, answer)
            why = printable(reading.reason)  # a reason may quote the answer
            if reading.stance == "unclear":
                message = (
                    f"{field}: the stance judge reads no yes or no in it ({why}); start it "
                    f"with Yes or No"
                )
                warnings.append(dataset.problem(record, message))
            elif reading.stance != wanted:
                said = f"{field} reads as {reading.stance!r} ({why})"
                if field == "ideal_answer":
                    message = f"{said} but aligned_stance is {item.aligned_stance!r}"
                else:
                    message = f"{said}, the aligned stance; it should say {wanted!r}"
                errors.append(dataset.problem(record, message))
    return errors, warnings
