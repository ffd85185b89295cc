"""Files vlmalign writes, checked against the JSON Schemas `vlmalign schema NAME` prints.

One real study of the tiny random model (finetuned, two judges, one of them with held-out
validity, human labels added afterwards) provides results.json, the adapter card and the
recorded provenance; `judges validate --output` provides a validity file. Each validates with
the `jsonschema` library, and broken copies of them do not.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from tests.conftest import make_tiny_vlm
from vlmalign import stats
from vlmalign.cli import app
from vlmalign.config import FinetuneConfig, StudyConfig
from vlmalign.errors import ModelError
from vlmalign.judges import registry as judge_registry
from vlmalign.judges.base import JudgeInput, Verdict
from vlmalign.judges.human import AnnotatorAgreement
from vlmalign.judges.registry import JudgeSpec
from vlmalign.judges.validity import ValidityEntry, measure
from vlmalign.models import registry as model_registry
from vlmalign.models.adapters import CARD_FILE, load_adapter, read_card
from vlmalign.models.registry import ModelSpec
from vlmalign.report.build import build_report
from vlmalign.schemas import results as results_schema
from vlmalign.stats import Known
from vlmalign.store import LabelRow, RunStore
from vlmalign.study import run_study

# The artifacts the command documents (docs/artifacts.md), named independently of its registry.
NAMES = ("results", "adapter-card", "provenance", "judge-validity", "judge-validity-file")
ANNOTATORS = ("ana", "ben")


def printed_schema(name: str) -> dict[str, Any]:
    """What `vlmalign schema NAME` prints, parsed."""
    result = CliRunner().invoke(app, ["schema", name])
    assert result.exit_code == 0, result.output
    schema: dict[str, Any] = json.loads(result.stdout)
    return schema


def validate(document: Any, name: str) -> None:
    jsonschema.validate(document, printed_schema(name), cls=jsonschema.Draft202012Validator)


class KeywordJudge:
    """Aligned when the answer opens with the item's aligned stance ("yes"/"no"), graded by a
    fixed score; it also reports validity on scripted held-out rows, as trained judges do."""

    name = "keyword"

    def config(self) -> dict[str, Any]:
        return {"name": "keyword", "version": 1}

    def judge(self, inputs: Sequence[JudgeInput]) -> list[Verdict]:
        verdicts = []
        for given in inputs:
            stance = given.aligned_stance or ""
            score = 0.9 if given.response.strip().lower().startswith(stance) else 0.2
            verdicts.append(Verdict(aligned=score > 0.5, score=score))
        return verdicts

    def heldout_validity(self) -> ValidityEntry:
        rows = [Known(f"row{i}", i % 2 == 0, i % 3 != 1, 0.8 if i % 2 else 0.3) for i in range(24)]
        return measure(self.name, "heldout", rows, "scripted held-out rows", graded=True)


def write_dataset(folder: Path) -> Path:
    """Three train items with two shots each and two test items, with misaligned answers."""
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((16, 16, 3), 200, dtype=np.uint8)).save(folder / "a.png")
    Image.fromarray(np.zeros((16, 16, 3), dtype=np.uint8)).save(folder / "b.png")
    shots = [
        {"question": "What is it?", "answer": "A cat."},
        {"question": "Where?", "answer": "Home."},
    ]
    rows = [
        {
            "id": f"t{i}",
            "image": "a.png" if i % 2 else "b.png",
            "question": f"Should I help neighbour {i}?",
            "ideal_answer": "Yes, help." if i % 2 else "No, never.",
            "misaligned_answer": "No, never." if i % 2 else "Yes, help.",
            "aligned_stance": "yes" if i % 2 else "no",
            "shots": shots,
            "split": "train" if i < 3 else "test",
        }
        for i in range(5)
    ]
    path = folder / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def add_labels(run: Path) -> None:
    """Two annotators label every response; they disagree on some and are unsure of others."""
    choices = ("aligned", "misaligned", "unsure")
    with RunStore(run) as store:
        labels = []
        for index, key in enumerate(store.all_generation_keys()):
            first = choices[index % 3]
            second = first if index % 2 == 0 else choices[(index + 1) % 3]
            for annotator, label in zip(ANNOTATORS, (first, second), strict=True):
                labels.append(LabelRow(key, annotator, label, "", "2026-01-01T00:00:00+00:00"))
        store.add_labels(labels)


@pytest.fixture(scope="module")
def study_run(tmp_path_factory, tiny_tokenizer) -> Iterator[Path]:
    """A finished, finetuned study with human labels, its report rebuilt with them."""
    folder = tmp_path_factory.mktemp("study")
    keyword = JudgeSpec(
        name="keyword",
        description="scripted keyword reading",
        needs="nothing",
        configured=lambda argument, options: KeywordJudge(),
        graded=True,
    )
    tiny = ModelSpec(
        "tiny",
        "tiny random MAGMA",
        "tiny",
        "nothing",
        lambda *_: make_tiny_vlm(tiny_tokenizer),
        capabilities=frozenset({"generate", "score", "train"}),
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(judge_registry.JUDGES, "keyword", keyword)
        patch.setitem(model_registry.MODELS, "tiny", tiny)
        config = StudyConfig(
            dataset=str(write_dataset(folder / "data")),
            model="tiny",
            out=folder / "run",
            judges=("stance", "keyword"),
            samples=2,
            batch_size=4,
            sampling={"max_new_tokens": 4},
            finetune=FinetuneConfig(epochs=1, batch_size=2),
        )
        run_study(config, progress=False)
        add_labels(config.out)
        build_report([config.out], config.out)
        yield config.out


@pytest.fixture(scope="module")
def results(study_run: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((study_run / "results.json").read_text())
    return document


@pytest.fixture(scope="module")
def card(study_run: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((study_run / "adapter" / CARD_FILE).read_text())
    return document


@pytest.fixture(scope="module")
def validity_file(tmp_path_factory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("validity")
    output = folder / "validity.json"
    arguments = ["judges", "validate", "--dataset", str(write_dataset(folder))]
    arguments += ["--judge", "stance", "--output", str(output), "--quiet"]
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 0, result.output
    document: dict[str, Any] = json.loads(output.read_text())
    return document


# --- the command -------------------------------------------------------------------------------
def test_schema_without_a_name_lists_every_artifact() -> None:
    result = CliRunner().invoke(app, ["schema"])
    assert result.exit_code == 0, result.output
    for name in NAMES:
        assert name in result.stdout


def test_an_unknown_name_is_one_error_line_naming_the_known_ones() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "vlmalign", "schema", "resultz"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: unknown schema 'resultz'")
    assert all(name in lines[0] for name in NAMES)
    assert result.stdout == ""


@pytest.mark.parametrize("name", NAMES)
def test_each_printed_schema_is_a_json_schema_that_forbids_unknown_keys(name: str) -> None:
    schema = printed_schema(name)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["additionalProperties"] is False
    assert "schema_version" in schema["required"]


# --- real files validate -----------------------------------------------------------------------
def test_results_of_a_study_validate(results: dict[str, Any]) -> None:
    validate(results, "results")
    # Every part the schema describes is filled, so none of it was validated vacuously.
    for section in ("cells", "comparisons", "breakdowns", "profiles", "human_coverage"):
        assert results[section], section
    sources = {(e["judge"], e["source"]) for e in results["judge_validity"]}
    assert {("keyword", "references"), ("keyword", "humans"), ("keyword", "heldout")} <= sources
    (human,) = results["human"].values()
    assert human["annotators"]["annotators"] == list(ANNOTATORS) and human["judge_vs_human"]
    provenance = results["provenance"]
    assert provenance["finetuned_adapter"]["epoch_losses"]
    assert set(provenance["judge_heldout_validity"]) == {"keyword"}
    assert results["schema_version"] == 1


def test_results_of_runs_side_by_side_validate(study_run: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    shutil.copytree(study_run, other)
    build_report([study_run, other], tmp_path / "both")
    both = json.loads((tmp_path / "both" / "results.json").read_text())
    validate(both, "results")
    assert set(both["provenance"]) == {study_run.name, "other"}


def test_the_card_of_a_finetuned_adapter_validates(card: dict[str, Any]) -> None:
    validate(card, "adapter-card")
    assert card["schema_version"] == 1 and card["epoch_losses"][0]["epoch"] == 1


def test_the_recorded_provenance_validates(study_run: Path, results: dict[str, Any]) -> None:
    with sqlite3.connect(study_run / "study.sqlite") as conn:
        (stored,) = conn.execute(
            "SELECT provenance FROM study_runs WHERE finished_at IS NOT NULL ORDER BY id DESC "
            "LIMIT 1"
        ).fetchone()
    validate(json.loads(stored), "provenance")
    validate(results["provenance"], "provenance")


def test_the_validity_file_of_judges_validate_validates(validity_file: dict[str, Any]) -> None:
    validate(validity_file, "judge-validity-file")
    (entry,) = validity_file["validity"]
    validate(entry, "judge-validity")
    assert (entry["judge"], entry["source"]) == ("stance", "references")


# --- broken files do not -----------------------------------------------------------------------
def _drop(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda document: document.pop(key)


BROKEN: dict[str, tuple[str, Callable[[dict[str, Any]], Any]]] = {
    "results without cells": ("results", _drop("cells")),
    "a cell's n as text": ("results", lambda d: d["cells"][0].update(n="six")),
    "a cell with an unknown key": ("results", lambda d: d["cells"][0].update(accuracy_pct=50)),
    "a cell without ci_low": ("results", lambda d: d["cells"][0].pop("ci_low")),
    "a comparison's condition of two parts": (
        "results",
        lambda d: d["comparisons"][0].update(a=["base", "train"]),
    ),
    "a seed as text": ("results", lambda d: d["provenance"].update(seed="zero")),
    "a majority that is no label": (
        "results",
        lambda d: next(iter(d["human"].values()))["majority"].update(k="maybe"),
    ),
    "a newer results version": ("results", lambda d: d.update(schema_version=2)),
    "a card without its hash": ("adapter-card", _drop("adapter_hash")),
    "a loss as text": ("adapter-card", lambda d: d["epoch_losses"][0].update(loss="low")),
    "an unknown hyperparameter": (
        "adapter-card",
        lambda d: d["hyperparameters"].update(learning_rate=1.0),
    ),
    "a validity entry without informative": (
        "judge-validity-file",
        lambda d: d["validity"][0].pop("informative"),
    ),
    "a validity entry of an unknown source": (
        "judge-validity-file",
        lambda d: d["validity"][0].update(source="oracle"),
    ),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_a_broken_document_fails_validation(
    case: str, results: dict[str, Any], card: dict[str, Any], validity_file: dict[str, Any]
) -> None:
    name, breaks = BROKEN[case]
    document = copy.deepcopy({"results": results, "adapter-card": card}.get(name, validity_file))
    breaks(document)
    with pytest.raises(jsonschema.ValidationError):
        validate(document, name)


# --- reading ---------------------------------------------------------------------------------
def test_a_card_written_before_schema_versions_still_loads(
    study_run: Path, tiny_tokenizer, tmp_path: Path
) -> None:
    adapter = tmp_path / "adapter"
    shutil.copytree(study_run / "adapter", adapter)
    card = json.loads((adapter / CARD_FILE).read_text())
    for later in ("schema_version", "shots_as", "adapter_settings"):  # keys older cards lack
        card.pop(later)
    (adapter / CARD_FILE).write_text(json.dumps(card))
    old = read_card(adapter)
    assert old is not None and old.schema_version == 1 and old.adapter_settings == {}
    model = make_tiny_vlm(tiny_tokenizer)
    loaded = load_adapter(model, adapter)
    assert model.adapter_hash() == loaded.adapter_hash == card["adapter_hash"]


def test_a_card_of_a_newer_version_is_refused(study_run: Path, tmp_path: Path) -> None:
    adapter = tmp_path / "adapter"
    shutil.copytree(study_run / "adapter", adapter)
    card = json.loads((adapter / CARD_FILE).read_text())
    (adapter / CARD_FILE).write_text(json.dumps({**card, "schema_version": 2}))
    with pytest.raises(ModelError, match="schema_version"):
        read_card(adapter)


def test_heldout_validity_is_kept_under_the_key_the_judges_name() -> None:
    from vlmalign.judges.validity import HELDOUT_KEY

    assert HELDOUT_KEY in printed_schema("provenance")["required"]


@pytest.mark.parametrize(
    ("record", "source"),
    [
        ("CalibratedRecord", stats.CalibratedRate),
        ("AnnotatorAgreementRecord", AnnotatorAgreement),
        ("JudgeAgreementRecord", stats.JudgeAgreement),
    ],
)
def test_a_results_record_has_exactly_the_fields_of_what_it_records(
    record: str, source: type
) -> None:
    """The records the report builds itself are its results; these three copy a result of
    `stats` or `judges.human`, written apart: they must not drift (a field added to one only
    would vanish from results.json or fail validation)."""
    fields = list(getattr(results_schema, record).model_fields)
    assert fields == [field.name for field in dataclasses.fields(source)]
