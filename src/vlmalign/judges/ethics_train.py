"""Train the `ethics` judge's classifier on ETHICS commonsense scenarios (`vlmalign ethics train`).

Protocol (docs/judges-ethics.md): LoRA on all-MiniLM-L6-v2 with a linear head, trained on the
training rows of both ETHICS files (`ethics_data.split_file`) and, in the shipped recipe, the
hand-written everyday scenarios (`judges.ethics_everyday`). After each epoch the validation rows
score it; the best epoch is kept, and the cut on P(wrong) with the best balanced accuracy on the
validation rows becomes its ETHICS threshold. The held-out blocks are scored once, at the end.
Training reads no vlmalign dataset. `calibrate_for_questions` then fits the judge's calibration
for question scenarios on a development dataset's items (and records that dataset in the card);
a study's own items are never its training or tuning data.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.optimize import minimize
from scipy.special import logit
from tqdm.auto import tqdm

from vlmalign.judges.embeddings import minilm_version
from vlmalign.judges.ethics_classifier import (
    CARD_FILE,
    SHIPPED_RECIPE,
    BlockCounts,
    DatasetRecord,
    EthicsClassifier,
    EthicsClassifierCard,
    FileAccuracy,
    QuestionCalibration,
    TrainingRecipe,
    load_base,
    peft_config,
    predict,
    read_card,
)
from vlmalign.judges.ethics_data import (
    CITATION,
    EthicsRow,
    FileSplit,
    everyday_rows,
    load_splits,
)
from vlmalign.judges.threshold import fit_threshold
from vlmalign.judges.validity import measure
from vlmalign.stats import Known, roc_auc

log = logging.getLogger(__name__)
COMMAND = (
    "vlmalign ethics train --data ../shared/data/ethics/commonsense "
    "--output src/vlmalign/judges/assets/ethics_classifier, then vlmalign ethics calibrate "
    "src/vlmalign/judges/assets/ethics_classifier --dataset tests/judges/ethics_sets/dev.jsonl"
)


def train_ethics_classifier(
    data_dir: Path,
    output: Path,
    recipe: TrainingRecipe | None = None,
    *,
    progress: bool = True,
    encoder_path: Path | None = None,
) -> EthicsClassifierCard:
    """Train, pick the epoch and cut on validation rows, score the held-out blocks, save.

    `output` (a folder) is written whole or not at all. `encoder_path` replaces the offline
    MiniLM (tests pass a tiny random BERT).
    """
    recipe = recipe or SHIPPED_RECIPE
    started = time.perf_counter()
    splits, hashes = load_splits(data_dir)
    train = [row for s in splits for row in s.train]
    if recipe.everyday_rows:  # training rows only: validation and held-out stay ETHICS's own
        train += everyday_rows()
    validation = [row for s in splits for row in s.validation]
    torch.manual_seed(recipe.seed)
    from peft import get_peft_model

    base, tokenizer = load_base(encoder_path)
    model = get_peft_model(base, peft_config(recipe.lora))
    accuracies = _fit(model, tokenizer, train, validation, recipe, progress)
    best_epoch = int(np.argmax(accuracies))  # _fit restored this epoch's weights
    p_validation = predict(model, tokenizer, [r.text for r in validation], recipe.max_length)
    not_wrong = [
        Known(str(i), r.label == 0, None, 1 - p)
        for i, (r, p) in enumerate(zip(validation, p_validation, strict=True))
    ]
    wrong_threshold = 1.0 - fit_threshold(not_wrong)
    by_file, known = _heldout(model, tokenizer, splits, wrong_threshold, recipe.max_length)
    card = EthicsClassifierCard(
        base_model=minilm_version() if encoder_path is None else str(encoder_path),
        recipe=recipe,
        best_epoch=best_epoch + 1,
        validation_accuracy_by_epoch=tuple(accuracies),
        wrong_threshold=wrong_threshold,
        blocks=tuple(_blocks(s) for s in splits),
        heldout_by_file=by_file,
        heldout=measure("ethics", "heldout", known, "ETHICS held-out blocks (short rows)", True),
        data_files_sha256=hashes,
        dataset="ETHICS commonsense (Hendrycks et al., ICLR 2021), short rows",
        citation=CITATION,
        command=COMMAND,
        versions={p: version(p) for p in ("torch", "transformers", "peft")},
        seconds=round(time.perf_counter() - started, 1),
    )
    _save(model, card, output)
    return card


def _fit(
    model: Any,
    tokenizer: Any,
    train: list[EthicsRow],
    validation: list[EthicsRow],
    recipe: TrainingRecipe,
    progress: bool,
) -> list[float]:
    """Train for `recipe.epochs`; validation accuracy per epoch; the best epoch's weights kept."""
    from transformers import get_linear_schedule_with_warmup

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=recipe.learning_rate, weight_decay=recipe.weight_decay)
    steps = recipe.epochs * -(-len(train) // recipe.batch_size)
    schedule = get_linear_schedule_with_warmup(
        optimizer, round(recipe.warmup_fraction * steps), steps
    )
    labels = np.array([r.label for r in validation])
    rng = np.random.default_rng(recipe.seed)
    accuracies: list[float] = []
    best: dict[str, torch.Tensor] = {}
    model.train()
    with tqdm(total=steps, desc="train ethics", unit="batch", disable=not progress) as bar:
        for _ in range(recipe.epochs):
            order = rng.permutation(len(train))
            for start in range(0, len(order), recipe.batch_size):
                batch = [train[i] for i in order[start : start + recipe.batch_size]]
                encoded = tokenizer(
                    [r.text for r in batch],
                    padding=True,
                    truncation=True,
                    max_length=recipe.max_length,
                    return_tensors="pt",
                )
                logits = model(encoded["input_ids"], encoded["attention_mask"])
                target = torch.tensor([float(r.label) for r in batch])
                loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                schedule.step()
                bar.update(1)
            p = predict(model, tokenizer, [r.text for r in validation], recipe.max_length)
            accuracies.append(float(np.mean((p > 0.5) == labels)))
            log.info("epoch %d: validation accuracy %.3f", len(accuracies), accuracies[-1])
            if accuracies[-1] >= max(accuracies):
                best = {
                    k: v.detach().clone() for k, v in model.named_parameters() if v.requires_grad
                }
    with torch.no_grad():
        for name, value in model.named_parameters():
            if name in best:
                value.copy_(best[name])
    return accuracies


def _heldout(
    model: Any, tokenizer: Any, splits: list[FileSplit], wrong_threshold: float, max_length: int
) -> tuple[dict[str, FileAccuracy], list[Known]]:
    """Per-file accuracy on the held-out blocks, and every held-out row as a known verdict
    ("aligned" = not wrong), clustered by minimal pair."""
    by_file: dict[str, FileAccuracy] = {}
    known: list[Known] = []
    for split in splits:
        rows = split.heldout
        p = predict(model, tokenizer, [r.text for r in rows], max_length)
        wrong = np.array([r.label == 1 for r in rows])
        predicted = p > wrong_threshold
        by_file[split.name] = FileAccuracy(
            accuracy=float(np.mean(predicted == wrong)),
            n=len(rows),
            n_wrong=int(wrong.sum()),
            majority_baseline=float(max(wrong.mean(), 1 - wrong.mean())),
            auc=roc_auc(list(wrong), list(p)),
        )
        known += [
            Known(group, not w, not bool(flag), float(1 - prob))
            for group, w, flag, prob in zip(
                split.heldout_groups(), wrong, predicted, p, strict=True
            )
        ]
    return by_file, known


def _blocks(split: FileSplit) -> BlockCounts:
    n = len(split.rows)
    return BlockCounts(
        file=split.name,
        train=(0, split.validation_start),
        validation=(split.validation_start, split.heldout_start),
        heldout=(split.heldout_start, n),
    )


def _save(model: Any, card: EthicsClassifierCard, output: Path) -> None:
    """peft's adapter files and the card, into `output` at once (a staging folder is renamed)."""
    staging = output.with_name(output.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(str(staging), safe_serialization=True)  # safetensors, not a pickle
    (staging / "README.md").unlink(missing_ok=True)  # peft's blank model card template
    (staging / CARD_FILE).write_text(card.model_dump_json(indent=1) + "\n", encoding="utf-8")
    if output.exists():
        shutil.rmtree(output)
    staging.rename(output)


def calibrate_for_questions(
    folder: Path,
    dataset: str,
    developed_on: Sequence[DatasetRecord] = (),
    *,
    encoder_path: Path | None = None,
) -> EthicsClassifierCard:
    """Fit the card's `question_calibration` on a dataset's yes/no items and rewrite the card.

    Each item's question becomes a scenario (`judges.scenario`), labelled wrong when its aligned
    answer rejects the action (`aligned_stance` against the question's frame); a logistic curve
    on logit P(wrong), the two classes weighted equally, is fit to those labels. `developed_on`
    (with the dataset itself added) is recorded in the card. Only the card changes.
    `encoder_path` replaces the offline MiniLM (tests pass a tiny random BERT).
    """
    from vlmalign.data.dataset import load_dataset
    from vlmalign.judges.scenario import parse_scenario

    loaded = load_dataset(dataset)
    texts: list[str] = []
    wrong: list[bool] = []
    for item in loaded.items:
        scenario = parse_scenario(item.question)
        if scenario is None or item.aligned_stance is None:
            continue
        texts.append(scenario.text)
        wrong.append((item.aligned_stance == "yes") != scenario.yes_endorses)
    if not any(wrong) or all(wrong):
        raise ValueError(f"{dataset}: calibration needs both wrong and acceptable actions")
    classifier = EthicsClassifier(folder, encoder_path=encoder_path)
    slope, intercept = _balanced_logistic(classifier.predict_wrong(texts), np.array(wrong))
    record = DatasetRecord(
        name=dataset, sha256=loaded.sha256, role="fit question_calibration; chose the recipe"
    )
    others = tuple(d for d in developed_on if d.sha256 != record.sha256)
    card = classifier.card.model_copy(
        update={
            "question_calibration": QuestionCalibration(
                slope=slope,
                intercept=intercept,
                fit_on=record,
                n=len(wrong),
                n_wrong=int(sum(wrong)),
            ),
            "developed_on": (*others, record),
        }
    )
    (folder / CARD_FILE).write_text(card.model_dump_json(indent=1) + "\n", encoding="utf-8")
    assert read_card(folder) == card
    return card


def _balanced_logistic(p_wrong: np.ndarray, wrong: np.ndarray) -> tuple[float, float]:
    """(slope, intercept) of P(wrong | p) = sigmoid(slope * logit(p) + intercept), by maximum
    likelihood with each class weighing half: its 0.5 is then the cut with balanced errors."""
    x = logit(np.clip(p_wrong, 1e-9, 1 - 1e-9))
    y = wrong.astype(np.float64)
    weight = np.where(wrong, 0.5 / y.mean(), 0.5 / (1 - y.mean()))

    def loss(params: np.ndarray) -> float:
        z = params[0] * x + params[1]
        return float(np.sum(weight * (np.logaddexp(0.0, z) - y * z)))

    fitted = minimize(loss, np.array([1.0, 0.0]), method="BFGS")
    return float(fitted.x[0]), float(fitted.x[1])
