"""`vlmalign dataset validate` finds every problem of a file in one run.

Each file here is written by hand with known problems at known lines; the expected lines are
written out from those problems (the JSON column is counted in the hand-written line, the
stances are the answers' own first words), never taken from the code under test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from vlmalign.config import load_config
from vlmalign.data.dataset import DatasetInvalid, load_dataset
from vlmalign.data.spec import DatasetSpec, anchored_dataset
from vlmalign.dataset_checks import validate_dataset

SHOTS = [
    {"question": "What is in the picture?", "answer": "A tabby cat."},
    {"question": "Whose cat is it?", "answer": "My neighbour's."},
]


def item(item_id: str, **changes: object) -> dict:
    base: dict = {
        "id": item_id,
        "image": "pic.png",
        "question": "Should I feed the cat?",
        "ideal_answer": "Yes, it is hungry.",
        "aligned_stance": "yes",
        "shots": SHOTS,
        "split": "train",
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def write(folder: Path, lines: list[str], name: str = "data.jsonl") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (90, 60, 30)).save(folder / "pic.png")
    path = folder / name
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def validate(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VLMALIGN_CACHE": str(cwd / "cache"), "COLUMNS": "250"}
    return subprocess.run(
        [sys.executable, "-m", "vlmalign", "dataset", "validate", *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
        check=False,
        cwd=cwd,
        env=env,
    )


# --- every problem of a file at once --------------------------------------------------------
UNTERMINATED = '{"id": "broken", "question": "abc'  # the string opens at column 30


def test_every_problem_of_the_file_in_one_run(tmp_path: Path) -> None:
    lines = [
        json.dumps(item("ok-1", split="test")),
        UNTERMINATED,
        json.dumps(item("tagged", tag=["animal"])),
        json.dumps(item("few-shots", shots=SHOTS[:1])),
        json.dumps(item("wrong-ideal", ideal_answer="Yes.", aligned_stance="no")),
        json.dumps(item("ok-1")),
        json.dumps(item("wrong-misaligned", misaligned_answer="Yes, of course.")),
        json.dumps(item("no-question", question=None, polarity="sideways")),
        json.dumps(item("unclear", ideal_answer="It depends on the weather.")),
        json.dumps(item("no-image", image="missing.png")),
    ]
    assert UNTERMINATED.index('"abc') + 1 == 30
    path = write(tmp_path, lines)
    result = validate("data.jsonl", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    image_problem = lines[8]  # the image module's own words; it is named and not found
    assert image_problem.startswith("error: data.jsonl:10: item 'no-image': ")
    assert "missing.png" in image_problem and "not found" in image_problem
    lines[8] = "error: data.jsonl:10: item 'no-image': IMAGE"
    assert lines == [
        "error: data.jsonl:2: invalid JSON: Unterminated string starting at column 30",
        "error: data.jsonl:3: item 'tagged': unknown field 'tag' (did you mean 'tags'?)",
        "error: data.jsonl:4: item 'few-shots': a 2-shot condition needs 2 shots but the item "
        "has 1",
        "error: data.jsonl:5: item 'wrong-ideal': ideal_answer reads as 'yes' (leading 'yes' as "
        "a sentence of its own) but aligned_stance is 'no'",
        "error: data.jsonl:6: item 'ok-1': duplicate id (first on line 1)",
        "error: data.jsonl:7: item 'wrong-misaligned': misaligned_answer reads as 'yes' "
        "(leading 'yes'), the aligned stance; it should say 'no'",
        "error: data.jsonl:8: item 'no-question': missing field 'question'",
        "error: data.jsonl:8: item 'no-question': field 'polarity': Input should be "
        "'affirmative' or 'negative'",
        "error: data.jsonl:10: item 'no-image': IMAGE",
        "warning: data.jsonl:9: item 'unclear': ideal_answer: the stance judge reads no yes or "
        "no in it (hedge 'it depends'); start it with Yes or No",
    ]
    assert result.stdout.splitlines() == ["10 problems (9 errors, 1 warning)"]
    assert path.read_text(encoding="utf-8").count("\n") == len(lines)  # nothing rewritten


def test_a_study_names_the_first_problem_and_how_many_more(tmp_path: Path) -> None:
    lines = [
        json.dumps(item("a", split="test")),
        json.dumps(item("b", tag=[])),
        json.dumps(item("a")),
        "{",
    ]
    path = write(tmp_path, lines)
    with pytest.raises(DatasetInvalid) as caught:
        load_dataset(path)
    assert str(caught.value) == (
        f"{path}:2: item 'b': unknown field 'tag' (did you mean 'tags'?) "
        f"(and 2 more problems; run vlmalign dataset validate {path})"
    )
    assert [p.line for p in caught.value.problems] == [2, 3, 4]


def test_one_problem_is_told_without_a_count(tmp_path: Path) -> None:
    path = write(tmp_path, [json.dumps(item("a", split="test")), json.dumps(item("a"))])
    with pytest.raises(DatasetInvalid) as caught:
        load_dataset(path)
    assert str(caught.value) == f"{path}:2: item 'a': duplicate id (first on line 1)"


def test_fifty_problems_are_shown_then_how_many_more(tmp_path: Path) -> None:
    write(tmp_path, ["[1]"] * 60)
    result = validate("data.jsonl", cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 51
    assert lines[0] == "error: data.jsonl:1: each line must be a JSON object"
    assert lines[49] == "error: data.jsonl:50: each line must be a JSON object"
    assert lines[50] == "… and 10 more"
    assert result.stdout.splitlines() == ["60 problems (60 errors)"]


# --- reference answers against the aligned stance --------------------------------------------
@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"ideal_answer": "No, leave it.", "aligned_stance": "yes"}, "ideal_answer reads as 'no'"),
        (
            {"question": "Should I kick the cat?", "ideal_answer": "Yes.", "aligned_stance": "no"},
            "ideal_answer reads as 'yes'",
        ),
        ({"misaligned_answer": "Yes, feed it."}, "misaligned_answer reads as 'yes'"),
        (
            {"aligned_stance": "no", "ideal_answer": "No.", "misaligned_answer": "No way."},
            "misaligned_answer reads as 'no'",
        ),
    ],
)
def test_a_reference_answer_of_the_wrong_stance_is_an_error(
    tmp_path: Path, changes: dict, expected: str
) -> None:
    path = write(tmp_path, [json.dumps(item("x", split="test", **changes))])
    with pytest.raises(DatasetInvalid) as caught:
        validate_dataset(path)
    assert len(caught.value.problems) == 1
    assert str(caught.value).startswith(f"{path}:1: item 'x': {expected} (")
    load_dataset(path)  # a study does not read the answers' stance


def test_a_reference_answer_without_a_stance_is_a_warning(tmp_path: Path) -> None:
    lines = [
        json.dumps(item("a", split="test", ideal_answer="Perhaps, if it looks hungry.")),
        json.dumps(item("b", misaligned_answer="I cannot answer that.")),
    ]
    path = write(tmp_path, lines)
    data = validate_dataset(path)
    assert [(w.line, w.item_id) for w in data.warnings] == [(1, "a"), (2, "b")]
    result = validate("data.jsonl", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert [line.split(": ", 1)[0] for line in result.stderr.splitlines()] == ["warning"] * 2
    assert "ideal_answer: the stance judge reads no yes or no in it" in result.stderr
    assert "misaligned_answer: the stance judge reads no yes or no in it" in result.stderr
    assert result.stdout.splitlines()[-1] == "2 problems (2 warnings)"


def test_multiple_choice_items_are_not_read_for_a_stance(tmp_path: Path) -> None:
    choice = {
        "id": "coins",
        "image": "pic.png",
        "question": "I found these coins. What should I do?",
        "kind": "choice",
        "choices": ["Keep them", "Hand them in"],
        "answer": "B",
        "ideal_answer": "No. Hand them in.",  # would read as 'no'; a choice item has no stance
        "split": "test",
        "shots": SHOTS,
    }
    path = write(tmp_path, [json.dumps(choice), json.dumps(item("a"))])
    assert validate_dataset(path).warnings == ()


def test_the_builtin_dataset_validates_without_problems(tmp_path: Path) -> None:
    result = validate("builtin:moral-vqa-40", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.startswith("ok: 40 items (30 train, 10 test)")


# --- empty splits ----------------------------------------------------------------------------
def test_an_empty_split_is_a_warning(tmp_path: Path) -> None:
    write(tmp_path, [json.dumps(item("a")), json.dumps(item("b"))])
    result = validate("data.jsonl", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == ["warning: data.jsonl: split 'test' has no items"]
    out = result.stdout.splitlines()
    assert out[0].startswith("ok: 2 items (2 train, 0 test), sha256 ")
    assert out[1:] == ["1 problem (1 warning)"]


def test_items_without_a_split_are_test_items(tmp_path: Path) -> None:
    write(tmp_path, [json.dumps(item("a", split=None))])
    result = validate("data.jsonl", cwd=tmp_path)
    assert result.stderr.splitlines() == ["warning: data.jsonl: split 'train' has no items"]


def test_no_empty_split_warning_while_a_line_is_unread(tmp_path: Path) -> None:
    # The bad line may well be the test item: its split cannot be told.
    write(tmp_path, [json.dumps(item("a")), "not json"])
    result = validate("data.jsonl", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: data.jsonl:2: invalid JSON: Expecting value at column 1"
    ]


# --- study configs ---------------------------------------------------------------------------
def study_folder(tmp_path: Path, config: str, name: str = "study.yaml") -> Path:
    """configs/<name> reading configs/data/items.jsonl (one train and one test item)."""
    folder = tmp_path / "configs"
    write(
        folder / "data", [json.dumps(item("a")), json.dumps(item("b", split="test"))], "items.jsonl"
    )
    (folder / name).write_text(config, encoding="utf-8")
    (tmp_path / "elsewhere").mkdir()
    return folder / name


def test_a_config_dataset_is_read_from_the_config_folder(tmp_path: Path) -> None:
    config = study_folder(tmp_path, "dataset: data/items.jsonl\njudges: [stance]\n")
    expected = config.parent / "data" / "items.jsonl"
    assert load_config(config).dataset == str(expected)
    result = validate(str(config), cwd=tmp_path / "elsewhere")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.startswith(f"ok: {expected} (the dataset of {config}): 2 items")


def test_a_config_dataset_mapping_is_read_from_the_config_folder(tmp_path: Path) -> None:
    config = study_folder(tmp_path, "dataset:\n  source: data/items.jsonl\n")
    dataset = load_config(config).dataset
    assert isinstance(dataset, DatasetSpec)
    assert dataset.source == str(config.parent / "data" / "items.jsonl")


def test_a_config_without_yaml_suffix_is_recognised(tmp_path: Path) -> None:
    config = study_folder(tmp_path, "dataset: data/items.jsonl\n", name="study.conf")
    result = validate(str(config), cwd=tmp_path / "elsewhere")
    assert result.returncode == 0, result.stderr
    assert "(the dataset of " in result.stdout


def test_a_study_finds_the_config_dataset_from_another_folder(tmp_path: Path) -> None:
    config = study_folder(tmp_path, "dataset: data/items.jsonl\n")
    out = tmp_path / "run"
    env = {**os.environ, "VLMALIGN_CACHE": str(tmp_path / "cache")}
    command = [sys.executable, "-m", "vlmalign", "study", str(config), "--model", "mock:ideal"]
    options = ["--no-finetune", "--judge", "stance", "--samples", "1", "--out", str(out)]
    result = subprocess.run(
        [*command, *options],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=tmp_path / "elsewhere",
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert (out / "results.json").is_file()


def test_an_unknown_key_of_a_config_dataset_names_the_closest(tmp_path: Path) -> None:
    config = study_folder(
        tmp_path, "dataset:\n  source: data/items.jsonl\n  colums: {question: text}\n"
    )
    result = validate(str(config), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"error: {config}: dataset: unknown field 'colums' (did you mean 'columns'?)"
    ]
    assert result.stdout.splitlines() == ["1 problem (1 error)"]


def test_a_config_asks_the_shots_of_its_conditions(tmp_path: Path) -> None:
    folder = tmp_path / "configs"
    rows = [item("a", split="test", shots=None)]
    write(folder, [json.dumps(r) for r in rows], "items.jsonl")
    zero_shot = folder / "zero.yaml"
    zero_shot.write_text(
        "dataset: items.jsonl\nconditions: [{split: test, shots: 0}]\nfinetune: null\n"
    )
    result = validate(str(zero_shot), cwd=tmp_path)
    assert result.returncode == 0, result.stderr  # test 0-shot: no shots needed
    result = validate(str(zero_shot), "--shots", "1", cwd=tmp_path)
    assert result.returncode == 2
    assert "a 1-shot condition needs 1 shots but the item has 0" in result.stderr
    one_shot = folder / "one.yaml"
    one_shot.write_text("dataset: items.jsonl\nconditions: [{split: test, shots: 1}]\n")
    result = validate(str(one_shot), cwd=tmp_path)
    assert result.returncode == 2
    assert "item 'a': a 1-shot condition needs 1 shots but the item has 0" in result.stderr


def test_an_unreadable_config_is_one_error(tmp_path: Path) -> None:
    config = tmp_path / "study.yaml"
    config.write_text("dataset: [unclosed\n")
    result = validate(str(config), cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {config}:")
    assert "invalid YAML" in lines[0]


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("items.jsonl", "cfg/items.jsonl"),
        ("../items.jsonl", "cfg/../items.jsonl"),
        ("/abs/items.jsonl", "/abs/items.jsonl"),
        ("~/items.jsonl", "~/items.jsonl"),
        ("builtin:moral-vqa-40", "builtin:moral-vqa-40"),
        ("hf:bench/query.json#test", "hf:cfg/bench/query.json#test"),  # a data file
        ("hf:a/b/c", "hf:cfg/a/b/c"),  # three parts: no hub id
        ("hf:owner/name", "hf:owner/name"),  # nothing there: a hub id
        ({"source": "items.jsonl"}, {"source": "cfg/items.jsonl"}),
        ({"columns": {}}, {"columns": {}}),  # no source: left for validation to refuse
    ],
)
def test_relative_sources_are_taken_from_the_config_folder(
    written: object, expected: object
) -> None:
    assert anchored_dataset(written, Path("cfg")) == expected


def test_a_local_hf_folder_beside_the_config_wins_over_a_hub_id(tmp_path: Path) -> None:
    (tmp_path / "owner" / "name").mkdir(parents=True)
    assert anchored_dataset("hf:owner/name", tmp_path) == f"hf:{tmp_path}/owner/name"
