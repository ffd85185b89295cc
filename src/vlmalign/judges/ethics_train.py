"""Train the `ethics` judge's classifier on ETHICS commonsense scenarios (`vlmalign ethics train`).

Protocol (docs/judges-ethics.md): LoRA on all-MiniLM-L6-v2 with a linear head, trained on the
training rows of both ETHICS files (`ethics_data.split_file`). After each epoch the validation
rows score it; the best epoch is kept, and the cut on P(wrong) with the best balanced accuracy on
the validation rows becomes its decision threshold. The held-out blocks are scored once, at the
end. Nothing of any vlmalign dataset is used: the study's items are the judge's test, not its
training or tuning data.
"""

from __future__ import annotations

import logging
import shutil
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from vlmalign.judges.embeddings import minilm_version
from vlmalign.judges.ethics_classifier import (
    CARD_FILE,
    BlockCounts,
    EthicsClassifierCard,
    FileAccuracy,
    TrainingRecipe,
    load_base,
    peft_config,
    predict,
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
    "--output src/vlmalign/judges/assets/ethics_classifier"
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
    recipe = recipe or TrainingRecipe()
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
