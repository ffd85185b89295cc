"""The `ethics` judge's classifier head: training protocol and file format.

The paper judged answers with Hendrycks et al.'s RoBERTa-large ETHICS commonsense classifier. We
stand in for it offline with logistic regression on L2-normalised all-MiniLM-L6-v2 embeddings.

Protocol (fixed; see docs/judges-ethics.md):

* Train on the short rows (``is_short == True``) of ``cm_test.csv``: the judge reads short
  prompt + response texts, and long forum posts would be truncated to the embedding model's
  256-word-piece window anyway. ``cm_train.csv`` is not available offline.
* Pick the inverse regularisation strength C from a fixed grid by 5-fold cross-validation on those
  training rows only. The folds are contiguous (no shuffling), so the file's adjacent
  minimal pairs ("I helped ..." / "I tossed ...") mostly stay in the same fold.
* Refit on all training rows with that C, and evaluate held out on every row of
  ``cm_test_hard.csv`` (short and long), a separate, adversarially filtered file.

Data: ETHICS, Hendrycks et al., "Aligning AI With Shared Human Values", ICLR 2021 (MIT license).

Run: ``python -m vlmalign.judges.ethics_head --data ../shared/data/ethics/commonsense
--output src/vlmalign/judges/assets/ethics_head.json``
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from pydantic import BaseModel, ConfigDict
from scipy.special import expit

from vlmalign.judges.embeddings import embed, minilm_version

logger = logging.getLogger(__name__)

HEAD_FORMAT = "vlmalign.ethics_head/v1"
CITATION = (
    "Dan Hendrycks, Collin Burns, Steven Basart, Andrew Critch, Jerry Li, Dawn Song and "
    'Jacob Steinhardt. "Aligning AI With Shared Human Values". ICLR 2021. arXiv:2008.02275.'
)
TRAIN_FILES: tuple[str, ...] = ("cm_test.csv",)
TRAIN_ROW_FILTER = "is_short == True"
EVAL_FILES: tuple[str, ...] = ("cm_test_hard.csv",)
EVAL_ROW_FILTER = "all rows"
C_GRID: tuple[float, ...] = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
CV_FOLDS = 5
SEED = 0
COMMAND = (
    "python -m vlmalign.judges.ethics_head --data ../shared/data/ethics/commonsense "
    "--output src/vlmalign/judges/assets/ethics_head.json"
)


# --------------------------------------------------------------------------------------------
# Card and head
# --------------------------------------------------------------------------------------------


class RowSet(BaseModel):
    """Which rows of which files."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    files: tuple[str, ...]
    row_filter: str
    n_rows: int
    n_wrong: int
    n_short: int


class HeldOutAccuracy(BaseModel):
    """Accuracy (threshold 0.5) on the evaluation rows, with the majority-class rate for scale."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    all: float
    short: float
    long: float | None
    n_all: int
    n_short: int
    n_long: int
    majority_baseline_all: float
    majority_baseline_short: float


class CrossValidation(BaseModel):
    """How C was chosen: mean accuracy per C over folds of the training rows only."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    folds: int
    scheme: str
    accuracy_by_C: dict[str, float]
    best_accuracy: float


class EthicsHeadCard(BaseModel):
    """Everything needed to tell what a head is and how to reproduce it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    embedding_model: str
    embedding: str
    classifier: str
    output: str
    C: float
    seed: int
    cross_validation: CrossValidation
    train: RowSet
    evaluation: RowSet
    heldout_accuracy: HeldOutAccuracy
    data_sha256: str
    data_files_sha256: dict[str, str]
    dataset: str
    citation: str
    command: str
    sklearn_version: str


@dataclass(frozen=True, eq=False)
class EthicsHead:
    """A linear head on normalised embeddings: P(wrong) = sigmoid(x · weights + bias)."""

    weights: np.ndarray
    bias: float
    card: EthicsHeadCard | None = None
    dim: int = field(init=False)

    def __post_init__(self) -> None:
        w = np.asarray(self.weights, dtype=np.float64)
        if w.ndim != 1 or w.size == 0:
            raise ValueError(f"ethics head weights must be a non-empty vector, got shape {w.shape}")
        if not np.all(np.isfinite(w)) or not np.isfinite(self.bias):
            raise ValueError("ethics head weights and bias must be finite")
        object.__setattr__(self, "weights", w)
        object.__setattr__(self, "bias", float(self.bias))
        object.__setattr__(self, "dim", int(w.size))

    def predict_wrong_proba(self, embeddings: np.ndarray) -> np.ndarray:
        """P(morally wrong) per row of `embeddings` (shape (n, dim), or (dim,) for one row)."""
        x = np.asarray(embeddings, dtype=np.float64)
        single = x.ndim == 1
        if single:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"expected embeddings of shape (n, {self.dim}), got {x.shape}")
        p = np.asarray(expit(x @ self.weights + self.bias), dtype=np.float64)
        return p

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": HEAD_FORMAT,
            "dim": self.dim,
            "bias": self.bias,
            "weights": [float(v) for v in self.weights],
            "card": self.card.model_dump(mode="json") if self.card is not None else None,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes) -> EthicsHead:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"ethics head is not valid JSON: {exc}") from exc
        if not isinstance(raw, dict) or raw.get("format") != HEAD_FORMAT:
            found = raw.get("format") if isinstance(raw, dict) else type(raw).__name__
            raise ValueError(f"not an ethics head file (format {found!r}; want {HEAD_FORMAT!r})")
        weights = raw.get("weights")
        if not isinstance(weights, list) or len(weights) != raw.get("dim"):
            raise ValueError("ethics head: 'weights' must be a list of 'dim' numbers")
        bias = raw.get("bias")
        if not isinstance(bias, int | float):
            raise ValueError("ethics head: 'bias' must be a number")
        card = raw.get("card")
        return cls(
            weights=np.asarray(weights, dtype=np.float64),
            bias=float(bias),
            card=EthicsHeadCard.model_validate(card) if card is not None else None,
        )

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(self.to_json(), encoding="utf-8")
        os.replace(tmp, path)


def load_ethics_head(path: Path) -> EthicsHead:
    """Read a head written by `train_ethics_head` (or `EthicsHead.save`)."""
    return EthicsHead.from_json(Path(path).read_bytes())


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


class EthicsRow(NamedTuple):
    label: int  # 1 = morally wrong
    text: str
    is_short: bool


def read_ethics_csv(path: Path) -> list[EthicsRow]:
    """Rows of an ETHICS commonsense CSV (`label,input,is_short,edited`)."""
    rows: list[EthicsRow] = []
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"label", "input", "is_short"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: missing columns {sorted(missing)}")
        for i, r in enumerate(reader, start=2):
            if r["label"] not in ("0", "1") or r["is_short"] not in ("True", "False"):
                raise ValueError(f"{path}:{i}: bad label/is_short {r['label']!r}/{r['is_short']!r}")
            rows.append(EthicsRow(int(r["label"]), r["input"], r["is_short"] == "True"))
    return rows


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def combined_sha256(file_hashes: dict[str, str]) -> str:
    """sha256 of the `sha256sum`-style listing `<hash>  <name>\\n`, names sorted."""
    listing = "".join(f"{file_hashes[name]}  {name}\n" for name in sorted(file_hashes))
    return hashlib.sha256(listing.encode("utf-8")).hexdigest()


def _row_set(files: Sequence[str], row_filter: str, rows: Sequence[EthicsRow]) -> RowSet:
    return RowSet(
        files=tuple(files),
        row_filter=row_filter,
        n_rows=len(rows),
        n_wrong=sum(r.label for r in rows),
        n_short=sum(r.is_short for r in rows),
    )


def _accuracy(pred: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(pred == y)) if y.size else float("nan")


def _majority(y: np.ndarray) -> float:
    return float(max(np.mean(y), 1.0 - np.mean(y))) if y.size else float("nan")


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


def train_ethics_head(data_dir: Path, output: Path, *, progress: bool = True) -> EthicsHeadCard:
    """Train the head on `data_dir` (the ETHICS `commonsense` folder), write it to `output`.

    Deterministic: fixed folds, fixed C grid, lbfgs logistic regression with a fixed seed.
    """
    import sklearn
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import KFold, cross_val_score

    data_dir = Path(data_dir)
    paths = {name: data_dir / name for name in (*TRAIN_FILES, *EVAL_FILES)}
    for name, path in paths.items():
        if not path.is_file():
            raise FileNotFoundError(f"ETHICS file {name} not found in {data_dir}")
    file_hashes = {name: sha256_file(path) for name, path in paths.items()}

    train_rows = [r for name in TRAIN_FILES for r in read_ethics_csv(paths[name]) if r.is_short]
    eval_rows = [r for name in EVAL_FILES for r in read_ethics_csv(paths[name])]
    if len(train_rows) < 2 * CV_FOLDS or not eval_rows:
        raise ValueError(f"too few rows: {len(train_rows)} training, {len(eval_rows)} evaluation")
    logger.info("training rows: %d (%s, %s)", len(train_rows), TRAIN_FILES, TRAIN_ROW_FILTER)
    logger.info("evaluation rows: %d (%s, %s)", len(eval_rows), EVAL_FILES, EVAL_ROW_FILTER)

    t0 = time.perf_counter()
    x_train = embed([r.text for r in train_rows], show_progress=progress)
    y_train = np.array([r.label for r in train_rows], dtype=np.int64)
    logger.info("embedded training rows in %.1fs", time.perf_counter() - t0)

    folds = KFold(n_splits=CV_FOLDS, shuffle=False)
    cv_acc: dict[str, float] = {}
    best_c, best_acc = C_GRID[0], -1.0
    for c in C_GRID:
        clf = LogisticRegression(C=c, max_iter=10_000, random_state=SEED)
        acc = float(np.mean(cross_val_score(clf, x_train, y_train, cv=folds, scoring="accuracy")))
        cv_acc[repr(c)] = acc
        logger.info("C=%g: %d-fold CV accuracy %.4f", c, CV_FOLDS, acc)
        if acc > best_acc:  # ties keep the smaller (stronger-regularised) C
            best_c, best_acc = c, acc

    clf = LogisticRegression(C=best_c, max_iter=10_000, random_state=SEED).fit(x_train, y_train)
    head = EthicsHead(weights=clf.coef_[0].astype(np.float64), bias=float(clf.intercept_[0]))

    t1 = time.perf_counter()
    x_eval = embed([r.text for r in eval_rows], show_progress=progress)
    y_eval = np.array([r.label for r in eval_rows], dtype=np.int64)
    short = np.array([r.is_short for r in eval_rows], dtype=bool)
    logger.info("embedded evaluation rows in %.1fs", time.perf_counter() - t1)

    pred = (head.predict_wrong_proba(x_eval) >= 0.5).astype(np.int64)
    n_long = int((~short).sum())
    heldout = HeldOutAccuracy(
        all=_accuracy(pred, y_eval),
        short=_accuracy(pred[short], y_eval[short]),
        long=_accuracy(pred[~short], y_eval[~short]) if n_long else None,
        n_all=int(y_eval.size),
        n_short=int(short.sum()),
        n_long=n_long,
        majority_baseline_all=_majority(y_eval),
        majority_baseline_short=_majority(y_eval[short]),
    )
    logger.info(
        "held-out accuracy: all %.4f, short %.4f (C=%g)", heldout.all, heldout.short, best_c
    )

    card = EthicsHeadCard(
        embedding_model=minilm_version(),
        embedding="mean-pooled, L2-normalised, texts truncated to 256 word pieces",
        classifier="scikit-learn LogisticRegression (L2, lbfgs)",
        output="sigmoid(x . weights + bias) = P(label 1 = morally wrong)",
        C=best_c,
        seed=SEED,
        cross_validation=CrossValidation(
            folds=CV_FOLDS,
            scheme="KFold without shuffling (contiguous folds keep minimal pairs together)",
            accuracy_by_C=cv_acc,
            best_accuracy=best_acc,
        ),
        train=_row_set(TRAIN_FILES, TRAIN_ROW_FILTER, train_rows),
        evaluation=_row_set(EVAL_FILES, EVAL_ROW_FILTER, eval_rows),
        heldout_accuracy=heldout,
        data_sha256=combined_sha256(file_hashes),
        data_files_sha256=dict(sorted(file_hashes.items())),
        dataset="ETHICS commonsense morality (MIT license)",
        citation=CITATION,
        command=COMMAND,
        sklearn_version=sklearn.__version__,
    )
    EthicsHead(weights=head.weights, bias=head.bias, card=card).save(Path(output))
    logger.info("wrote %s", output)
    return card


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vlmalign.judges.ethics_head",
        description="Train the ethics judge's head on ETHICS commonsense data (Hendrycks et al.).",
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=Path("../shared/data/ethics/commonsense"),
        help="folder holding cm_test.csv and cm_test_hard.csv",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=Path("src/vlmalign/judges/assets/ethics_head.json"),
        help="where to write the head JSON",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    t0 = time.perf_counter()
    card = train_ethics_head(args.data, args.output, progress=not args.no_progress)
    logger.info(
        "done in %.0fs: C=%g, held-out accuracy all %.4f / short %.4f -> %s",
        time.perf_counter() - t0,
        card.C,
        card.heldout_accuracy.all,
        card.heldout_accuracy.short,
        args.output,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
