"""The `ethics` judge's classifier head: training protocol and file format.

The paper judged answers with Hendrycks et al.'s RoBERTa-large ETHICS commonsense classifier. We
stand in for it offline with a small head (logistic regression or a one-hidden-layer MLP, chosen by
cross-validation) on L2-normalised all-MiniLM-L6-v2 embeddings.

Protocol (fixed; see docs/judges-ethics.md):

* Use only the short rows (``is_short == True``) of ``cm_test.csv`` and ``cm_test_hard.csv``: the
  judge reads short prompt + response texts, and long forum posts would be truncated to the
  embedding model's 256-word-piece window anyway (and take minutes to embed). ``cm_train.csv`` is
  not available offline.
* Hold out the last 20% of each file's short rows as one contiguous block. Adjacent rows are often
  minimal pairs ("I helped ..." / "I tossed ..."); the block's start moves forward past such a pair,
  so no pair straddles the boundary. Train on everything before the blocks.
* Choose the model by 5-fold cross-validation on the training rows only. Fold k is the k-th
  contiguous chunk of each file's training rows (boundaries again never split a pair). The
  candidates are logistic regression over a C grid and an MLP (one ReLU hidden layer, early
  stopping) over a small width x L2 grid; the best mean fold accuracy wins, ties go to the earlier
  (simpler) candidate.
* Refit the winner on all training rows and report accuracy on each file's held-out block:
  ``cm_test.csv`` (in distribution) and ``cm_test_hard.csv`` (adversarially filtered), and overall,
  with majority-class baselines.

Data: ETHICS, Hendrycks et al., "Aligning AI With Shared Human Values", ICLR 2021 (MIT license).

Run: ``python -m vlmalign.judges.ethics_head --data ../shared/data/ethics/commonsense
--output src/vlmalign/judges/assets/ethics_head.json``
"""

from __future__ import annotations

import argparse
import base64
import binascii
import csv
import difflib
import hashlib
import itertools
import json
import logging
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
from pydantic import BaseModel, ConfigDict
from scipy.special import expit

from vlmalign.judges.embeddings import embed, minilm_version

logger = logging.getLogger(__name__)

#: A linear head: P(wrong) = sigmoid(x . weights + bias).
HEAD_FORMAT = "vlmalign.ethics_head/v1"
#: A head with one ReLU hidden layer in front of the linear output. Linear heads are still written
#: as v1, so every v1 file stays readable and unchanged.
HEAD_FORMAT_MLP = "vlmalign.ethics_head/v2"
CITATION = (
    "Dan Hendrycks, Collin Burns, Steven Basart, Andrew Critch, Jerry Li, Dawn Song and "
    'Jacob Steinhardt. "Aligning AI With Shared Human Values". ICLR 2021. arXiv:2008.02275.'
)
#: Both files give training rows and a held-out block each.
DATA_FILES: tuple[str, ...] = ("cm_test.csv", "cm_test_hard.csv")
TRAIN_FILES: tuple[str, ...] = DATA_FILES
EVAL_FILES: tuple[str, ...] = DATA_FILES
ROW_FILTER = "is_short == True"
HELDOUT_FRACTION = 0.2
TRAIN_ROW_FILTER = "is_short == True; each file's short rows before its held-out block"
EVAL_ROW_FILTER = (
    "is_short == True; the last 20% of each file's short rows, one contiguous block per file, "
    "its start moved forward so that no minimal pair straddles it"
)
#: Adjacent rows whose lower-cased word sequences have a difflib ratio at least this high are
#: treated as a minimal pair (at most two rows per pair) and never put on different sides.
PAIR_SIMILARITY = 0.45
C_GRID: tuple[float, ...] = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
MLP_HIDDEN_GRID: tuple[int, ...] = (64, 256)
MLP_ALPHA_GRID: tuple[float, ...] = (1e-4, 0.1)
MLP_FIXED: dict[str, float | int | str | bool] = {
    "activation": "relu",
    "solver": "adam",
    "early_stopping": True,
    "validation_fraction": 0.1,
    "n_iter_no_change": 10,
    "max_iter": 500,
}
CV_FOLDS = 5
SEED = 0
COMMAND = (
    "python -m vlmalign.judges.ethics_head --data ../shared/data/ethics/commonsense "
    "--output src/vlmalign/judges/assets/ethics_head.json"
)

ModelKind = Literal["logistic", "mlp"]
Param = float | int | str | bool


# --------------------------------------------------------------------------------------------
# Card and head
# --------------------------------------------------------------------------------------------


class RowBlock(BaseModel):
    """A contiguous block of one file's short rows: positions [start, stop) among them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    file: str
    start: int
    stop: int
    n_rows: int
    n_wrong: int


class RowSet(BaseModel):
    """Which rows of which files."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    files: tuple[str, ...]
    row_filter: str
    n_rows: int
    n_wrong: int
    n_short: int
    blocks: tuple[RowBlock, ...] = ()


class FileAccuracy(BaseModel):
    """Held-out accuracy on one file's block, with its majority-class rate."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    accuracy: float
    n: int
    n_wrong: int
    majority_baseline: float


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
    by_file: dict[str, FileAccuracy] = {}


class CandidateScore(BaseModel):
    """Cross-validated accuracy of one candidate model."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: ModelKind
    params: dict[str, Param]
    accuracy: float
    accuracy_by_file: dict[str, float]


class CrossValidation(BaseModel):
    """How the model was chosen: mean accuracy over folds of the training rows only."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    folds: int
    scheme: str
    accuracy_by_C: dict[str, float]
    best_accuracy: float
    candidates: tuple[CandidateScore, ...] = ()


class EthicsHeadCard(BaseModel):
    """Everything needed to tell what a head is and how to reproduce it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    embedding_model: str
    embedding: str
    classifier: str
    output: str
    C: float | None
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
    model: ModelKind = "logistic"
    hyperparameters: dict[str, Param] = {}


def _finite(a: np.ndarray) -> bool:
    return bool(np.all(np.isfinite(a)))


@dataclass(frozen=True, eq=False)
class EthicsHead:
    """P(wrong) = sigmoid(h · weights + bias), with h = x (a linear head) or, when the head has a
    hidden layer, h = relu(x · hidden_weights + hidden_bias) (an MLP head)."""

    weights: np.ndarray
    bias: float
    card: EthicsHeadCard | None = None
    hidden_weights: np.ndarray | None = None
    hidden_bias: np.ndarray | None = None
    dim: int = field(init=False)

    def __post_init__(self) -> None:
        w = np.asarray(self.weights, dtype=np.float64)
        if w.ndim != 1 or w.size == 0:
            raise ValueError(f"ethics head weights must be a non-empty vector, got shape {w.shape}")
        if not _finite(w) or not np.isfinite(self.bias):
            raise ValueError("ethics head weights and bias must be finite")
        object.__setattr__(self, "weights", w)
        object.__setattr__(self, "bias", float(self.bias))
        if (self.hidden_weights is None) != (self.hidden_bias is None):
            raise ValueError("ethics head: give both hidden_weights and hidden_bias, or neither")
        dim = int(w.size)
        if self.hidden_weights is not None and self.hidden_bias is not None:
            hw = np.asarray(self.hidden_weights, dtype=np.float64)
            hb = np.asarray(self.hidden_bias, dtype=np.float64)
            if hw.ndim != 2 or hw.shape[0] == 0 or hw.shape[1] != w.size or hb.shape != (w.size,):
                raise ValueError(
                    f"ethics head hidden layer shapes {hw.shape}/{hb.shape} do not fit "
                    f"{w.size} output weights (want (dim, {w.size}) and ({w.size},))"
                )
            if not _finite(hw) or not _finite(hb):
                raise ValueError("ethics head hidden weights and bias must be finite")
            object.__setattr__(self, "hidden_weights", hw)
            object.__setattr__(self, "hidden_bias", hb)
            dim = int(hw.shape[0])
        object.__setattr__(self, "dim", dim)

    @property
    def kind(self) -> ModelKind:
        return "logistic" if self.hidden_weights is None else "mlp"

    def predict_wrong_proba(self, embeddings: np.ndarray) -> np.ndarray:
        """P(morally wrong) per row of `embeddings` (shape (n, dim), or (dim,) for one row)."""
        x = np.asarray(embeddings, dtype=np.float64)
        single = x.ndim == 1
        if single:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"expected embeddings of shape (n, {self.dim}), got {x.shape}")
        if self.hidden_weights is not None and self.hidden_bias is not None:
            x = np.maximum(x @ self.hidden_weights + self.hidden_bias, 0.0)
        p = np.asarray(expit(x @ self.weights + self.bias), dtype=np.float64)
        return p

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"format": HEAD_FORMAT, "dim": self.dim}
        if self.hidden_weights is not None and self.hidden_bias is not None:
            hw32 = self.hidden_weights.astype("<f4")
            if not np.array_equal(hw32.astype(np.float64), self.hidden_weights):
                raise ValueError("ethics head hidden weights must be float32 values to be saved")
            out["format"] = HEAD_FORMAT_MLP
            out["hidden"] = {
                "activation": "relu",
                "units": int(self.weights.size),
                "weights_encoding": "base64 of little-endian float32, row-major (dim, units)",
                "weights": base64.b64encode(hw32.tobytes()).decode("ascii"),
                "bias": [float(v) for v in self.hidden_bias],
            }
        out["bias"] = self.bias
        out["weights"] = [float(v) for v in self.weights]
        out["card"] = self.card.model_dump(mode="json") if self.card is not None else None
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes) -> EthicsHead:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"ethics head is not valid JSON: {exc}") from exc
        formats = (HEAD_FORMAT, HEAD_FORMAT_MLP)
        if not isinstance(raw, dict) or raw.get("format") not in formats:
            found = raw.get("format") if isinstance(raw, dict) else type(raw).__name__
            raise ValueError(f"not an ethics head file (format {found!r}; want one of {formats})")
        dim = raw.get("dim")
        if not isinstance(dim, int) or isinstance(dim, bool) or dim <= 0:
            raise ValueError("ethics head: 'dim' must be a positive integer")
        hidden_weights = hidden_bias = None
        n_out = dim
        if raw["format"] == HEAD_FORMAT_MLP:
            hidden_weights, hidden_bias = _read_hidden(raw.get("hidden"), dim)
            n_out = hidden_bias.size
        weights = raw.get("weights")
        if not isinstance(weights, list) or len(weights) != n_out:
            want = "'dim'" if raw["format"] == HEAD_FORMAT else "'hidden.units'"
            raise ValueError(f"ethics head: 'weights' must be a list of {want} numbers")
        bias = raw.get("bias")
        if not isinstance(bias, int | float) or isinstance(bias, bool):
            raise ValueError("ethics head: 'bias' must be a number")
        card = raw.get("card")
        return cls(
            weights=np.asarray(weights, dtype=np.float64),
            bias=float(bias),
            card=EthicsHeadCard.model_validate(card) if card is not None else None,
            hidden_weights=hidden_weights,
            hidden_bias=hidden_bias,
        )

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(self.to_json(), encoding="utf-8")
        os.replace(tmp, path)


def _read_hidden(hidden: object, dim: int) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(hidden, dict) or hidden.get("activation") != "relu":
        raise ValueError("ethics head: 'hidden' must be an object with activation 'relu'")
    units = hidden.get("units")
    if not isinstance(units, int) or isinstance(units, bool) or units <= 0:
        raise ValueError("ethics head: 'hidden.units' must be a positive integer")
    bias = hidden.get("bias")
    if not isinstance(bias, list) or len(bias) != units:
        raise ValueError("ethics head: 'hidden.bias' must be a list of 'hidden.units' numbers")
    encoded = hidden.get("weights")
    if not isinstance(encoded, str):
        raise ValueError("ethics head: 'hidden.weights' must be a base64 string")
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"ethics head: 'hidden.weights' is not base64: {exc}") from exc
    if len(data) != 4 * dim * units:
        raise ValueError(
            f"ethics head: 'hidden.weights' holds {len(data)} bytes, want 4 * dim * units "
            f"= {4 * dim * units}"
        )
    weights = np.frombuffer(data, dtype="<f4").reshape(dim, units).astype(np.float64)
    return weights, np.asarray(bias, dtype=np.float64)


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
    """Rows of an ETHICS commonsense CSV (columns label, input, is_short, edited)."""
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


def pair_similarity(a: str, b: str) -> float:
    """difflib ratio of the two texts' lower-cased word sequences (1.0 = identical)."""
    matcher = difflib.SequenceMatcher(None, a.lower().split(), b.lower().split(), autojunk=False)
    return matcher.ratio()


def minimal_pair_groups(texts: Sequence[str], threshold: float = PAIR_SIMILARITY) -> np.ndarray:
    """A group id per row, in order: a row joins the previous row's group when that group has one
    row so far and the two texts are at least `threshold` similar (so groups are pairs at most)."""
    groups = np.zeros(len(texts), dtype=np.int64)
    size = 1
    for i in range(1, len(texts)):
        if size == 1 and pair_similarity(texts[i - 1], texts[i]) >= threshold:
            groups[i] = groups[i - 1]
            size = 2
        else:
            groups[i] = groups[i - 1] + 1
            size = 1
    return groups


def snap_to_group_start(groups: np.ndarray, i: int) -> int:
    """The first position >= i that starts a group (or len(groups)): splits no pair."""
    n = len(groups)
    i = max(0, min(int(i), n))
    while 0 < i < n and groups[i] == groups[i - 1]:
        i += 1
    return i


def heldout_start(groups: np.ndarray, fraction: float = HELDOUT_FRACTION) -> int:
    """Where a file's held-out block starts: the last `fraction` of its rows, moved past a pair."""
    n = len(groups)
    return snap_to_group_start(groups, n - round(fraction * n))


def contiguous_folds(groups: np.ndarray, k: int = CV_FOLDS) -> np.ndarray:
    """Fold id per row: k contiguous chunks of about equal size whose boundaries split no pair."""
    n = len(groups)
    bounds = [0, *(snap_to_group_start(groups, round(j * n / k)) for j in range(1, k)), n]
    if any(b1 <= b0 for b0, b1 in itertools.pairwise(bounds)):
        raise ValueError(f"too few rows ({n}) for {k} contiguous folds")
    fold = np.zeros(n, dtype=np.int64)
    for j in range(k):
        fold[bounds[j] : bounds[j + 1]] = j
    return fold


def _accuracy(pred: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(pred == y)) if y.size else float("nan")


def _majority(y: np.ndarray) -> float:
    return float(max(np.mean(y), 1.0 - np.mean(y))) if y.size else float("nan")


@dataclass(frozen=True)
class _FileSplit:
    """One file's short rows, split into training rows and the held-out block."""

    name: str
    rows: list[EthicsRow]
    cut: int

    @property
    def train(self) -> list[EthicsRow]:
        return self.rows[: self.cut]

    @property
    def heldout(self) -> list[EthicsRow]:
        return self.rows[self.cut :]

    def block(self, start: int, stop: int) -> RowBlock:
        rows = self.rows[start:stop]
        return RowBlock(
            file=self.name,
            start=start,
            stop=stop,
            n_rows=len(rows),
            n_wrong=sum(r.label for r in rows),
        )


def split_file(name: str, rows: Sequence[EthicsRow]) -> _FileSplit:
    """Keep a file's short rows and find where its held-out block starts."""
    short = [r for r in rows if r.is_short]
    cut = heldout_start(minimal_pair_groups([r.text for r in short]))
    if len(short) < 2 * CV_FOLDS or cut >= len(short):
        raise ValueError(f"{name}: too few short rows ({len(short)}) to split")
    return _FileSplit(name=name, rows=short, cut=cut)


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Candidate:
    model: ModelKind
    params: dict[str, Param]

    def estimator(self) -> Any:
        from sklearn.linear_model import LogisticRegression
        from sklearn.neural_network import MLPClassifier

        if self.model == "logistic":
            return LogisticRegression(C=self.params["C"], max_iter=10_000, random_state=SEED)
        return MLPClassifier(
            hidden_layer_sizes=(self.params["hidden_units"],),
            alpha=self.params["alpha"],
            random_state=SEED,
            **MLP_FIXED,
        )

    def label(self) -> str:
        return f"{self.model} " + " ".join(f"{k}={v}" for k, v in self.params.items())


def _candidates() -> list[_Candidate]:
    """In tie-breaking order: logistic regression (small C first), then MLPs (small first)."""
    out = [_Candidate("logistic", {"C": c}) for c in C_GRID]
    out += [
        _Candidate("mlp", {"hidden_units": h, "alpha": a})
        for h in MLP_HIDDEN_GRID
        for a in sorted(MLP_ALPHA_GRID, reverse=True)
    ]
    return out


def _fit(candidate: _Candidate, x: np.ndarray, y: np.ndarray) -> Any:
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return candidate.estimator().fit(x, y)


def _head_from(candidate: _Candidate, model: Any) -> EthicsHead:
    if candidate.model == "logistic":
        return EthicsHead(
            weights=model.coef_[0].astype(np.float64), bias=float(model.intercept_[0])
        )
    if model.activation != "relu" or model.out_activation_ != "logistic" or model.n_layers_ != 3:
        raise RuntimeError("unexpected MLP architecture")
    return EthicsHead(
        # Stored as float32 (see HEAD_FORMAT_MLP); the head is evaluated with these values.
        hidden_weights=model.coefs_[0].astype(np.float32).astype(np.float64),
        hidden_bias=model.intercepts_[0].astype(np.float64),
        weights=model.coefs_[1][:, 0].astype(np.float64),
        bias=float(model.intercepts_[1][0]),
    )


def _cross_validate(
    candidate: _Candidate,
    x: np.ndarray,
    y: np.ndarray,
    fold: np.ndarray,
    source: np.ndarray,
    names: Sequence[str],
) -> CandidateScore:
    acc: list[float] = []
    by_file: list[list[float]] = [[] for _ in names]
    for k in range(CV_FOLDS):
        test = fold == k
        pred = _fit(candidate, x[~test], y[~test]).predict(x[test])
        acc.append(_accuracy(pred, y[test]))
        for i in range(len(names)):
            mask = source[test] == i
            by_file[i].append(_accuracy(pred[mask], y[test][mask]))
    return CandidateScore(
        model=candidate.model,
        params=dict(candidate.params),
        accuracy=float(np.mean(acc)),
        accuracy_by_file={name: float(np.mean(v)) for name, v in zip(names, by_file, strict=True)},
    )


def _embed_rows(rows: Sequence[EthicsRow], progress: bool) -> np.ndarray:
    return np.asarray(embed([r.text for r in rows], show_progress=progress), dtype=np.float64)


def train_ethics_head(data_dir: Path, output: Path, *, progress: bool = True) -> EthicsHeadCard:
    """Train the head on `data_dir` (the ETHICS `commonsense` folder), write it to `output`.

    Deterministic: fixed blocks and folds, fixed candidate grids, fixed seeds.
    """
    import sklearn

    t_start = time.perf_counter()
    data_dir = Path(data_dir)
    paths = {name: data_dir / name for name in DATA_FILES}
    for name, path in paths.items():
        if not path.is_file():
            raise FileNotFoundError(f"ETHICS file {name} not found in {data_dir}")
    file_hashes = {name: sha256_file(path) for name, path in paths.items()}
    splits = [split_file(name, read_ethics_csv(paths[name])) for name in DATA_FILES]
    for s in splits:
        logger.info(
            "%s: %d short rows; training [0, %d), held out [%d, %d)",
            s.name,
            len(s.rows),
            s.cut,
            s.cut,
            len(s.rows),
        )

    t0 = time.perf_counter()
    x_train = np.vstack([_embed_rows(s.train, progress) for s in splits])
    x_eval = [_embed_rows(s.heldout, progress) for s in splits]
    logger.info(
        "embedded %d short rows in %.1fs",
        sum(len(s.rows) for s in splits),
        time.perf_counter() - t0,
    )

    y_train = np.array([r.label for s in splits for r in s.train], dtype=np.int64)
    source = np.concatenate([np.full(s.cut, i, dtype=np.int64) for i, s in enumerate(splits)])
    fold = np.concatenate(
        [contiguous_folds(minimal_pair_groups([r.text for r in s.train])) for s in splits]
    )

    scores: list[CandidateScore] = []
    best: tuple[_Candidate, CandidateScore] | None = None
    for candidate in _candidates():
        t1 = time.perf_counter()
        score = _cross_validate(candidate, x_train, y_train, fold, source, DATA_FILES)
        scores.append(score)
        logger.info(
            "%s: %d-fold CV accuracy %.4f (%s) in %.1fs",
            candidate.label(),
            CV_FOLDS,
            score.accuracy,
            ", ".join(f"{k} {v:.4f}" for k, v in score.accuracy_by_file.items()),
            time.perf_counter() - t1,
        )
        if best is None or score.accuracy > best[1].accuracy:  # ties keep the earlier candidate
            best = (candidate, score)
    assert best is not None
    chosen, chosen_score = best
    logger.info("chosen: %s (CV accuracy %.4f)", chosen.label(), chosen_score.accuracy)

    head = _head_from(chosen, _fit(chosen, x_train, y_train))

    by_file: dict[str, FileAccuracy] = {}
    preds, ys = [], []
    for s, x in zip(splits, x_eval, strict=True):
        y = np.array([r.label for r in s.heldout], dtype=np.int64)
        pred = (head.predict_wrong_proba(x) >= 0.5).astype(np.int64)
        by_file[s.name] = FileAccuracy(
            accuracy=_accuracy(pred, y),
            n=int(y.size),
            n_wrong=int(y.sum()),
            majority_baseline=_majority(y),
        )
        preds.append(pred)
        ys.append(y)
    pred_all, y_all = np.concatenate(preds), np.concatenate(ys)
    acc_all = _accuracy(pred_all, y_all)
    heldout = HeldOutAccuracy(
        all=acc_all,
        short=acc_all,
        long=None,
        n_all=int(y_all.size),
        n_short=int(y_all.size),
        n_long=0,
        majority_baseline_all=_majority(y_all),
        majority_baseline_short=_majority(y_all),
        by_file=by_file,
    )
    logger.info(
        "held-out accuracy: all %.4f (majority %.4f); %s",
        heldout.all,
        heldout.majority_baseline_all,
        "; ".join(
            f"{k} {v.accuracy:.4f} (majority {v.majority_baseline:.4f})" for k, v in by_file.items()
        ),
    )

    if chosen.model == "logistic":
        classifier = "scikit-learn LogisticRegression (L2, lbfgs)"
        output_desc = "sigmoid(x . weights + bias) = P(label 1 = morally wrong)"
        hyper: dict[str, Param] = {"C": chosen.params["C"], "penalty": "l2", "solver": "lbfgs"}
    else:
        classifier = (
            "scikit-learn MLPClassifier (one ReLU hidden layer, adam, early stopping); "
            "hidden weights stored as float32"
        )
        output_desc = (
            "sigmoid(relu(x . hidden.weights + hidden.bias) . weights + bias) "
            "= P(label 1 = morally wrong)"
        )
        hyper = {**chosen.params, **MLP_FIXED}

    def row_set(blocks: list[RowBlock], row_filter: str) -> RowSet:
        n = sum(b.n_rows for b in blocks)
        return RowSet(
            files=DATA_FILES,
            row_filter=row_filter,
            n_rows=n,
            n_wrong=sum(b.n_wrong for b in blocks),
            n_short=n,
            blocks=tuple(blocks),
        )

    card = EthicsHeadCard(
        embedding_model=minilm_version(),
        embedding="mean-pooled, L2-normalised, texts truncated to 256 word pieces",
        classifier=classifier,
        output=output_desc,
        C=float(chosen.params["C"]) if chosen.model == "logistic" else None,
        seed=SEED,
        cross_validation=CrossValidation(
            folds=CV_FOLDS,
            scheme=(
                f"fold k = the k-th of {CV_FOLDS} contiguous chunks of each file's training rows "
                f"(no shuffling; chunk boundaries never split a minimal pair); mean accuracy over "
                f"folds; ties keep the earlier candidate"
            ),
            accuracy_by_C={
                repr(s.params["C"]): s.accuracy for s in scores if s.model == "logistic"
            },
            best_accuracy=chosen_score.accuracy,
            candidates=tuple(scores),
        ),
        train=row_set([s.block(0, s.cut) for s in splits], TRAIN_ROW_FILTER),
        evaluation=row_set([s.block(s.cut, len(s.rows)) for s in splits], EVAL_ROW_FILTER),
        heldout_accuracy=heldout,
        data_sha256=combined_sha256(file_hashes),
        data_files_sha256=dict(sorted(file_hashes.items())),
        dataset="ETHICS commonsense morality (MIT license)",
        citation=CITATION,
        command=COMMAND,
        sklearn_version=sklearn.__version__,
        model=chosen.model,
        hyperparameters=hyper,
    )
    EthicsHead(
        weights=head.weights,
        bias=head.bias,
        card=card,
        hidden_weights=head.hidden_weights,
        hidden_bias=head.hidden_bias,
    ).save(Path(output))
    logger.info("wrote %s (training took %.0fs)", output, time.perf_counter() - t_start)
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
    acc = card.heldout_accuracy
    logger.info(
        "done in %.0fs: %s %s, held-out accuracy %.4f (%s) -> %s",
        time.perf_counter() - t0,
        card.model,
        card.hyperparameters,
        acc.all,
        ", ".join(f"{k} {v.accuracy:.4f}" for k, v in acc.by_file.items()),
        args.output,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
