"""Artifacts own their fields: `schemas/` imports nothing of vlmalign above it, and the settings
an artifact records (finetuning options, sampling, endpoint) are records of its own that read
files of older and newer versions alike."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, get_args

import pytest
from pydantic import BaseModel

from vlmalign.config import FinetuneConfig
from vlmalign.data import schema as data_schema
from vlmalign.models.adapters import CARD_FILE, read_card
from vlmalign.models.endpoint import EndpointSettings
from vlmalign.prompts import PromptFormat, ShotsAs
from vlmalign.sampling import SamplingParams
from vlmalign.schemas import terms
from vlmalign.schemas.adapter_card import AdapterCard, HyperparametersRecord
from vlmalign.schemas.base import written_json_schema
from vlmalign.schemas.provenance import EndpointRecord, Provenance, SamplingRecord

SCHEMAS = Path(__file__).resolve().parents[1] / "src" / "vlmalign" / "schemas"
#: What a `schemas/` module may import of vlmalign besides `vlmalign.schemas.*`.
BELOW = {"vlmalign.errors", "vlmalign.hashing"}


def vlmalign_imports(path: Path) -> set[str]:
    """Every vlmalign module `path` imports, at module level or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name == "vlmalign" or name.startswith("vlmalign.")}


@pytest.mark.parametrize("path", sorted(SCHEMAS.glob("*.py")), ids=lambda p: p.name)
def test_a_schemas_module_imports_only_schemas_and_what_lies_below(path: Path) -> None:
    above = {
        name
        for name in vlmalign_imports(path)
        if not name.startswith("vlmalign.schemas") and name not in BELOW
    }
    assert above == set(), f"{path.name} imports {sorted(above)}"


def test_loading_every_artifact_loads_no_other_vlmalign_module() -> None:
    """Beyond what `errors` and `hashing` themselves load, only `schemas` modules."""
    code = (
        "import json, sys\n"
        "import vlmalign.errors, vlmalign.hashing\n"
        "below = set(sys.modules)\n"
        "from vlmalign.schemas.registry import ARTIFACTS\n"
        "for artifact in ARTIFACTS.values():\n"
        "    artifact.model()\n"
        "print(json.dumps(sorted(set(sys.modules) - below)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    loaded = json.loads(result.stdout)
    assert "vlmalign.schemas.adapter_card" in loaded
    outside = [m for m in loaded if m.startswith("vlmalign.")]
    assert [m for m in outside if not m.startswith("vlmalign.schemas")] == []


@pytest.mark.parametrize(
    ("record", "settings"),
    [
        (HyperparametersRecord, FinetuneConfig),
        (SamplingRecord, SamplingParams),
        (EndpointRecord, EndpointSettings),
    ],
)
def test_a_record_has_the_fields_of_the_settings_it_records(
    record: type[BaseModel], settings: type[BaseModel]
) -> None:
    """Written apart, they must not drift: an option added to the settings only would be
    written as a key the printed schema does not name."""
    assert list(record.model_fields) == list(settings.model_fields)
    assert record.model_validate(settings().model_dump()).model_dump() == settings().model_dump()


def test_the_shared_terms_are_spelled_as_the_code_spells_them() -> None:
    assert get_args(terms.Split) == get_args(data_schema.Split)
    assert get_args(terms.PromptFormat) == get_args(PromptFormat)
    assert get_args(terms.ShotsAs) == get_args(ShotsAs)


def write_card(folder: Path, hyperparameters: dict[str, Any]) -> Path:
    folder.mkdir()
    card = {
        "schema_version": 1,
        "adapter_hash": "h",
        "base_model": "tiny",
        "base_model_fingerprint": "fp",
        "hyperparameters": hyperparameters,
    }
    (folder / CARD_FILE).write_text(json.dumps(card))
    return folder


def test_a_card_with_a_hyperparameter_this_version_does_not_know_reads_and_keeps_it(
    tmp_path: Path,
) -> None:
    newer = {**FinetuneConfig().model_dump(mode="json"), "label_smoothing": 0.1}
    card = read_card(write_card(tmp_path / "adapter", newer))
    assert card is not None and card.hyperparameters is not None
    assert card.hyperparameters.epochs == 4
    assert card.hyperparameters.model_dump(mode="json") == newer  # kept, written back as read
    assert card.model_dump(mode="json")["hyperparameters"]["label_smoothing"] == 0.1


def test_a_card_of_an_older_version_lacking_hyperparameters_reads_their_defaults(
    tmp_path: Path,
) -> None:
    older = {"epochs": 2, "batch_size": 4, "lr": 0.001}  # before LoRA, schedules, ...
    card = read_card(write_card(tmp_path / "adapter", older))
    assert card is not None and card.hyperparameters is not None
    assert (card.hyperparameters.epochs, card.hyperparameters.lora_r) == (2, 16)
    assert card.hyperparameters.betas == (0.9, 0.95)


def test_the_card_written_from_a_config_is_what_the_config_was() -> None:
    config = FinetuneConfig(epochs=2, lora_r=4, encoder_lr=1e-5)
    record = HyperparametersRecord.model_validate(config.model_dump())
    card = AdapterCard(
        adapter_hash="h", base_model="tiny", base_model_fingerprint="fp", hyperparameters=record
    )
    assert card.model_dump(mode="json")["hyperparameters"] == config.model_dump(mode="json")


def test_provenance_keeps_settings_it_does_not_know() -> None:
    recorded = {
        "sampling": {**SamplingParams().model_dump(), "min_p": 0.05},
        "endpoint": {**EndpointSettings().model_dump(), "organisation": "lab"},
    }
    provenance = Provenance.model_validate(recorded)
    assert provenance.sampling is not None and provenance.sampling.temperature == 0.7
    assert provenance.as_json()["sampling"]["min_p"] == 0.05
    assert provenance.as_json()["endpoint"]["organisation"] == "lab"


@pytest.mark.parametrize("record", [HyperparametersRecord, SamplingRecord, EndpointRecord])
def test_a_records_printed_schema_names_every_key_it_writes_and_no_other(
    record: type[BaseModel],
) -> None:
    schema = written_json_schema(record)
    assert schema["additionalProperties"] is False
    assert schema["required"] == list(record.model_fields)


def test_validity_entry_and_the_cuts_keep_their_old_import_paths() -> None:
    from vlmalign.judges import cuts, threshold, validity
    from vlmalign.schemas import judge_validity

    assert validity.ValidityEntry is judge_validity.ValidityEntry
    assert validity.VALIDITY_SCHEMA_VERSION == judge_validity.VALIDITY_SCHEMA_VERSION == 1
    assert (
        judge_validity.ValidityFile.model_fields["validity"].annotation
        == list[judge_validity.ValidityEntry]
    )
    assert threshold.cross_validated is cuts.cross_validated
    assert threshold.fit_threshold is cuts.fit_threshold
    assert threshold.CV_FOLDS == cuts.CV_FOLDS
