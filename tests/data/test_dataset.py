"""Dataset loading and `vlmalign dataset validate`: every bad-input case names file:line:item."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vlmalign.data.dataset import DatasetInvalid, check_shots, load_dataset
from vlmalign.data.images import load_image, resolve_local


def item(i: int, **changes: object) -> dict:
    base = {
        "id": f"item-{i}",
        "image": "pic.png",
        "question": "Should I help her?",
        "ideal_answer": "Yes, she needs help.",
        "aligned_stance": "yes",
        "shots": [
            {"question": "What is in the picture?", "answer": "An old lady."},
            {"question": "Where is she?", "answer": "At a crossing."},
        ],
        "split": "train",
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def write(tmp_path: Path, lines: list[str]) -> Path:
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(tmp_path / "pic.png")
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def run_validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vlmalign", "dataset", "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_valid_file_loads(tmp_path: Path) -> None:
    path = write(tmp_path, [json.dumps(item(1)), json.dumps(item(2, split="test"))])
    data = load_dataset(path)
    assert [i.id for i in data.items] == ["item-1", "item-2"]
    assert len(data.split("train")) == 1 and len(data.split("test")) == 1
    assert len(data.sha256) == 64


BAD_CASES = {
    "bad json": ('{"id": "item-2", "image": ', 2, None, "invalid JSON"),
    "missing field": (json.dumps(item(2, question=None)), 2, "item-2", "missing field 'question'"),
    "duplicate id": (json.dumps(item(1)), 2, "item-1", "duplicate id"),
    "missing image": (json.dumps(item(2, image="nope.png")), 2, "item-2", "not found"),
    "unreadable image": (json.dumps(item(2, image="junk.png")), 2, "item-2", "unreadable image"),
    "unknown split": (json.dumps(item(2, split="dev")), 2, "item-2", "split"),
    "too few shots": (
        json.dumps(item(2, shots=[{"question": "q", "answer": "a"}])),
        2,
        "item-2",
        "2-shot",
    ),
    "bad stance": (json.dumps(item(2, aligned_stance="maybe")), 2, "item-2", "aligned_stance"),
}


@pytest.mark.parametrize("case", list(BAD_CASES))
def test_validate_reports_file_line_and_item_with_exit_2(tmp_path: Path, case: str) -> None:
    bad_line, line, item_id, fragment = BAD_CASES[case]
    path = write(tmp_path, [json.dumps(item(1)), bad_line])
    (tmp_path / "junk.png").write_bytes(b"not an image at all")
    before = sorted(p.name for p in tmp_path.iterdir())
    result = run_validate(path)
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if not line.startswith("warning: ")]
    assert len(errors) == 1, result.stderr  # warnings (an empty split) may come beside it
    message = errors[0]
    assert f"{path}:{line}:" in message
    if item_id:
        assert f"item {item_id!r}" in message
    assert fragment in message
    assert "Traceback" not in message
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written


def test_all_problems_are_collected(tmp_path: Path) -> None:
    path = write(tmp_path, [json.dumps(item(1)), json.dumps(item(1)), "{oops"])
    with pytest.raises(DatasetInvalid) as info:
        load_dataset(path)
    assert [p.line for p in info.value.problems] == [2, 3]


def test_shots_are_checked_only_for_the_split_asked(tmp_path: Path) -> None:
    path = write(tmp_path, [json.dumps(item(1)), json.dumps(item(2, split="test", shots=[]))])
    data = load_dataset(path)
    check_shots(data, 2, "train")
    with pytest.raises(DatasetInvalid, match="item 'item-2'"):
        check_shots(data, 1, "test")


def test_builtin_dataset_is_complete() -> None:
    data = load_dataset("builtin:moral-vqa-40")
    items = data.items
    assert len(items) == 40
    assert len(data.split("train")) == 30 and len(data.split("test")) == 10
    assert all(len(i.shots) == 2 for i in items)
    assert {i.polarity for i in items} == {"affirmative", "negative"}
    assert sum("trap" in i.tags for i in items) >= 3
    assert all(i.image.startswith("pkg:") for i in items)
    check_shots(data, 2)


def test_pkg_uri_resolves_without_importing_the_package() -> None:
    path = resolve_local("pkg:skimage/data/chelsea.png", None)
    assert path is not None and path.is_file()
    loaded = load_image("pkg:skimage/data/chelsea.png")
    assert loaded.image.mode == "RGB" and len(loaded.sha256) == 64


def test_unknown_builtin_is_a_clear_error() -> None:
    with pytest.raises(Exception, match="unknown built-in dataset"):
        load_dataset("builtin:nope")
