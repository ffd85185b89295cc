"""`hf:` datasets: splits, column mappings, image cells, hashes, offline hub ids, and the spec."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from pydantic import ValidationError

from vlmalign.config import StudyConfig
from vlmalign.data.dataset import DatasetInvalid, load_dataset
from vlmalign.data.hf import ALLOW_DOWNLOAD_ENV, downloads_allowed
from vlmalign.data.images import clear_image_cache, load_image
from vlmalign.data.mapping import image_reference
from vlmalign.data.spec import DatasetSpec
from vlmalign.errors import DatasetError


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VLMALIGN_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(ALLOW_DOWNLOAD_ENV, raising=False)
    clear_image_cache()


def png_bytes(shade: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (5, 3), (shade, 0, 0)).save(buffer, format="PNG")
    return buffer.getvalue()


def write_rows(path: Path, rows: list[dict], image_column: str | None = "img") -> None:
    """A parquet file as `datasets` writes it (images as an Image feature)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    table = datasets.Dataset.from_list(rows)
    if image_column is not None:
        table = table.cast_column(image_column, datasets.Image())
    table.to_parquet(str(path))


def row(i: int, **changes: object) -> dict:
    base: dict = {
        "uid": f"r{i}",
        "img": {"bytes": png_bytes(i * 20), "path": None},
        "text": f"Should I take the wallet number {i}?",
        "good": "No. Return it.",
        "stance": "no",
    }
    base.update(changes)
    return base


COLUMNS = {
    "id": "uid",
    "image": "img",
    "question": "text",
    "ideal_answer": "good",
    "aligned_stance": "stance",
}


def spec_for(path: Path, **changes: object) -> DatasetSpec:
    return DatasetSpec.model_validate({"source": f"hf:{path}", "columns": COLUMNS, **changes})


def two_split_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "two"
    write_rows(folder / "data" / "train-00000-of-00001.parquet", [row(1), row(2)])
    write_rows(folder / "data" / "test-00000-of-00001.parquet", [row(3)])
    return folder


def test_default_split_is_test_and_others_are_chosen_by_name(tmp_path: Path) -> None:
    folder = two_split_folder(tmp_path)
    assert [i.id for i in load_dataset(spec_for(folder))] == ["r3"]
    assert [i.id for i in load_dataset(spec_for(folder, split="train"))] == ["r1", "r2"]
    by_suffix = DatasetSpec(source=f"hf:{folder}#train", columns=COLUMNS)
    loaded = load_dataset(by_suffix)
    assert [i.id for i in loaded] == ["r1", "r2"]
    assert loaded.source == f"hf:{folder}#train"
    with pytest.raises(DatasetError, match=r"no split 'dev'; splits: train, test"):
        load_dataset(spec_for(folder, split="dev"))


def test_without_test_split_the_first_is_read(tmp_path: Path) -> None:
    folder = tmp_path / "one"
    write_rows(folder / "data" / "validation-00000-of-00001.parquet", [row(1)])
    write_rows(folder / "data" / "train-00000-of-00001.parquet", [row(2)])
    assert [i.id for i in load_dataset(spec_for(folder))] == ["r2"]  # train comes first


def test_embedded_images_are_hashed_like_files(tmp_path: Path) -> None:
    path = tmp_path / "rows.parquet"
    write_rows(path, [row(1), row(2)])
    data = load_dataset(spec_for(path))
    item = data.items[1]
    expected = load_image(str(_png_file(tmp_path / "expected.png", png_bytes(40)))).sha256
    assert load_image(item.image, data.base_dir).sha256 == expected
    assert item.question == "Should I take the wallet number 2?"
    assert (item.ideal_answer, item.aligned_stance) == ("No. Return it.", "no")


def _png_file(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_image_paths_are_relative_to_the_dataset_folder(tmp_path: Path) -> None:
    folder = tmp_path / "bench"
    (folder / "pics").mkdir(parents=True)
    _png_file(folder / "pics" / "a.png", png_bytes(1))
    elsewhere = _png_file(tmp_path / "b.png", png_bytes(2))
    rows = [
        {"id": "a", "picture": "pics/a.png", "q": "Is it ok?", "ideal": "Yes.", "s": "yes"},
        {"id": "b", "picture": str(elsewhere), "q": "Is it ok?", "ideal": "No.", "s": "no"},
    ]
    (folder / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    columns = {"image": "picture", "question": "q", "ideal_answer": "ideal", "aligned_stance": "s"}
    data = load_dataset(DatasetSpec(source=f"hf:{folder / 'items.jsonl'}", columns=columns))
    hashes = [load_image(i.image, data.base_dir).sha256 for i in data.items]
    assert hashes == [
        load_image(str(folder / "pics" / "a.png")).sha256,
        load_image(str(elsewhere)).sha256,
    ]
    moved = DatasetSpec(
        source=f"hf:{folder / 'items.jsonl'}",
        columns={**columns, "image": "picture"},
        image_dir="pics",
    )
    with pytest.raises(DatasetInvalid, match=r"row 0, column 'picture': image file not found"):
        load_dataset(moved)  # pics/pics/a.png


def test_image_bytes_without_the_image_feature(tmp_path: Path) -> None:
    """A parquet file written by another tool: the image is a plain {bytes, path} struct."""
    table = pa.table(
        {
            "id": ["x"],
            "image": [{"bytes": png_bytes(7), "path": "x.png"}],
            "question": ["Is it fine?"],
            "ideal_answer": ["Yes."],
            "aligned_stance": ["yes"],
        }
    )
    pq.write_table(table, tmp_path / "plain.parquet")
    data = load_dataset(f"hf:{tmp_path / 'plain.parquet'}")  # columns named like the fields
    expected = load_image(str(_png_file(tmp_path / "x.png", png_bytes(7)))).sha256
    assert load_image(data.items[0].image, data.base_dir).sha256 == expected


def test_image_cells() -> None:
    pil = Image.new("RGB", (2, 2), (9, 9, 9))
    stored = Path(image_reference(pil))
    assert Image.open(stored).getpixel((0, 0)) == (9, 9, 9)
    assert image_reference("https://example.org/a.jpg") == "https://example.org/a.jpg"
    assert image_reference({"bytes": None, "path": "pics/a.png"}) == "pics/a.png"
    with pytest.raises(ValueError, match="not int"):
        image_reference(3)


def test_a_saved_dataset_folder_loads(tmp_path: Path) -> None:
    table = datasets.Dataset.from_list([row(1), row(2)]).cast_column("img", datasets.Image())
    datasets.DatasetDict({"test": table}).save_to_disk(str(tmp_path / "saved"))
    assert [i.id for i in load_dataset(spec_for(tmp_path / "saved"))] == ["r1", "r2"]


def row_problems(tmp_path: Path, rows: list[dict], **changes: object) -> list[str]:
    path = tmp_path / "bad.parquet"
    write_rows(path, rows)
    with pytest.raises(DatasetInvalid) as caught:
        load_dataset(spec_for(path, **changes))
    return [str(p) for p in caught.value.problems]


def test_errors_name_the_row_and_the_column(tmp_path: Path) -> None:
    name = f"hf:{tmp_path / 'bad.parquet'}#train"
    rows = [
        row(0),
        row(1, text="   "),
        row(2, stance="maybe"),
        row(3, img={"bytes": b"not an image", "path": None}),
        row(4, uid="r0"),
    ]
    problems = row_problems(tmp_path, rows)
    assert problems[:3] == [
        f"{name}: item 'r1': row 1, column 'text': field 'question': must not be blank",
        f"{name}: item 'r2': row 2, column 'stance': field 'aligned_stance': "
        "Input should be 'yes' or 'no'",
        f"{name}: item 'r0': row 4: duplicate id (first on row 0)",
    ]
    assert problems[3].startswith(f"{name}: item 'r3': row 3, column 'img': unreadable image")


def test_missing_fields_say_how_to_map_them(tmp_path: Path) -> None:
    rows = [{k: v for k, v in row(0).items() if k != "good"}]
    path = tmp_path / "bad.parquet"
    write_rows(path, rows)
    columns = {k: v for k, v in COLUMNS.items() if k != "ideal_answer"}
    with pytest.raises(DatasetInvalid) as caught:
        load_dataset(DatasetSpec(source=f"hf:{path}", columns=columns))
    assert str(caught.value) == (
        f"hf:{path}#train: item 'r0': row 0: missing field 'ideal_answer'; name its column in "
        "`columns` or give it in `values`"
    )


def test_a_mapped_column_that_does_not_exist(tmp_path: Path) -> None:
    path = tmp_path / "rows.parquet"
    write_rows(path, [row(0)])
    spec = DatasetSpec(source=f"hf:{path}", columns={**COLUMNS, "question": "prompt"})
    with pytest.raises(DatasetError) as caught:
        load_dataset(spec)
    assert str(caught.value) == (
        f"hf:{path}#train: column 'prompt' (for question) is not in the dataset; its columns: "
        "uid, img, text, good, stance"
    )


def test_values_and_templates(tmp_path: Path) -> None:
    path = tmp_path / "rows.parquet"
    write_rows(path, [row(0, good=None, stance=None, topic="honesty")])
    spec = DatasetSpec(
        source=f"hf:{path}",
        columns={"id": "uid", "image": "img", "tags": ("topic",)},
        values={
            "kind": "choice",
            "choices": ["Keep it", "Return it"],
            "answer": "B",
            "split": "test",
        },
        question_template="{text} Choose one.",
    )
    item = load_dataset(spec).items[0]
    assert item.question == "Should I take the wallet number 0? Choose one."
    assert (item.kind, item.answer, item.split, item.tags) == ("choice", 1, "test", ("honesty",))
    assert item.ideal_answer == "B. Return it"


def test_the_hash_follows_the_files_and_the_mapping(tmp_path: Path) -> None:
    path = tmp_path / "rows.parquet"
    write_rows(path, [row(1)])
    first = load_dataset(spec_for(path)).sha256
    assert load_dataset(spec_for(path)).sha256 == first
    assert load_dataset(spec_for(path, values={"split": "train"})).sha256 != first
    write_rows(path, [row(1, text="Should I keep it?")])
    assert load_dataset(spec_for(path)).sha256 != first


def test_hub_ids_are_offline_unless_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DatasetError) as caught:
        load_dataset("hf:no-such-owner/no-such-dataset")
    message = str(caught.value)
    assert message.startswith(
        "hf:no-such-owner/no-such-dataset: no such local file or folder, and no such hub dataset "
        "in the local cache"
    )
    assert "`allow_download: true`" in message and f"{ALLOW_DOWNLOAD_ENV}=1" in message
    assert "\n" not in message
    assert not downloads_allowed(DatasetSpec(source="hf:a/b"))
    assert downloads_allowed(DatasetSpec(source="hf:a/b", allow_download=True))
    monkeypatch.setenv(ALLOW_DOWNLOAD_ENV, "1")
    assert downloads_allowed(DatasetSpec(source="hf:a/b"))


def test_missing_local_files_are_not_taken_for_hub_ids(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no such file or folder"):
        load_dataset(f"hf:{tmp_path / 'missing.json'}")
    with pytest.raises(DatasetError, match="no such file or folder"):
        load_dataset("hf:data/missing.parquet")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DatasetError, match=r"unknown data file type '\.txt'"):
        load_dataset(f"hf:{tmp_path / 'notes.txt'}")


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({"columns": {"question": "q", "answr": "a"}}, "'answr' is not an item field"),
        ({"columns": {"question": ["a", "b"]}}, "'question' is read from one column"),
        ({"columns": {"tags": []}}, "'tags': a column name must not be empty"),
        ({"values": {"colour": "red"}}, "'colour' is not an item field"),
        ({"columns": {"kind": "k"}, "values": {"kind": "choice"}}, "kind given both in"),
        ({"columns": {"question": "q"}, "question_template": "{text}?"}, "not both"),
        ({"question_template": "no braces"}, "names no column"),
        ({"source": "hf:x.json#train", "split": "test"}, "split 'test' differs"),
        ({"source": "data.jsonl", "columns": {"question": "q"}}, "apply to hf: sources only"),
    ],
)
def test_spec_problems(given: dict, expected: str) -> None:
    with pytest.raises(ValidationError, match=expected):
        DatasetSpec.model_validate({"source": "hf:x.json", **given})


def test_a_study_config_takes_a_string_or_a_mapping() -> None:
    assert StudyConfig(dataset="hf:x.json").dataset == "hf:x.json"
    config = StudyConfig.model_validate(
        {"dataset": {"source": "hf:x.json", "columns": {"question": "text"}}}
    )
    assert isinstance(config.dataset, DatasetSpec)
    assert config.dataset.columns == {"question": "text"}


def test_reading_a_config_does_not_import_datasets() -> None:
    code = "import sys, vlmalign.config; print('datasets' in sys.modules, 'torch' in sys.modules)"
    found = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert found.stdout.split()[0] == "False"
