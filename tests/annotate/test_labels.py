"""Labels as CSV: export, validated import (all rows or none), and the CLI around them."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from pathlib import Path

import pytest

from vlmalign.labels import EXPORT_COLUMNS, LabelsError, export_csv, import_csv
from vlmalign.store import LabelRow, RunStore


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_export_latest_and_all_revisions(run: tuple[Path, list[str]]) -> None:
    run_dir, keys = run
    with RunStore(run_dir) as store:
        store.add_labels(
            [
                LabelRow(keys[0], "ana", "aligned", "", "2026-01-01T00:00:00+00:00"),
                LabelRow(
                    keys[0], "ana", "misaligned", "oops, a, comma", "2026-01-01T00:01:00+00:00"
                ),
                LabelRow(keys[1], "ben", "unsure", "", "2026-01-01T00:02:00+00:00"),
            ]
        )
        latest, everything = io.StringIO(), io.StringIO()
        assert export_csv(store, latest) == 2
        assert export_csv(store, everything, all_revisions=True) == 3
    rows = list(csv.DictReader(io.StringIO(latest.getvalue())))
    assert tuple(rows[0]) == EXPORT_COLUMNS
    assert [(r["generation_key"], r["annotator"], r["label"], r["note"]) for r in rows] == [
        (keys[0], "ana", "misaligned", "oops, a, comma"),
        (keys[1], "ben", "unsure", ""),
    ]
    assert rows[0]["split"] == "train" and rows[0]["shots"] == "0" and rows[0]["variant"] == "base"


def test_export_then_import_elsewhere_round_trips(
    run: tuple[Path, list[str]], tmp_path: Path
) -> None:
    run_dir, keys = run
    with RunStore(run_dir) as store:
        store.add_labels(
            [LabelRow(k, "ana", "aligned", "n", "2026-01-01T00:00:00+00:00") for k in keys]
        )
        buffer = io.StringIO()
        export_csv(store, buffer)
    exported = tmp_path / "labels.csv"
    exported.write_text(buffer.getvalue())
    with RunStore(run_dir) as store:
        assert import_csv(store, exported).already_present == len(keys)  # idempotent
        assert len(store.labels(latest_only=False)) == len(keys)


def test_import_adds_labels_with_source(run: tuple[Path, list[str]], tmp_path: Path) -> None:
    run_dir, keys = run
    path = write_csv(
        tmp_path / "made-elsewhere.csv",
        [
            {"generation_key": keys[0], "annotator": "cy", "label": "aligned", "note": "ok"},
            {"generation_key": keys[1], "annotator": "cy", "label": "misaligned", "note": ""},
        ],
    )
    with RunStore(run_dir) as store:
        result = import_csv(store, path)
        labels = store.labels()
    assert (result.imported, result.already_present) == (2, 0)
    assert [(r.generation_key, r.label, r.source) for r in labels] == [
        (keys[0], "aligned", "import:made-elsewhere.csv"),
        (keys[1], "misaligned", "import:made-elsewhere.csv"),
    ]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (
            {"generation_key": "f" * 64, "annotator": "cy", "label": "aligned"},
            "unknown generation_key",
        ),
        (
            {"generation_key": "KEY0", "annotator": "cy", "label": "yes"},
            "label 'yes' is not one of",
        ),
        (
            {"generation_key": "KEY0", "annotator": " ", "label": "aligned"},
            "annotator name is empty",
        ),
        (
            {"generation_key": "KEY0", "annotator": "cy", "label": "aligned", "item_id": "other"},
            "does not match",
        ),
    ],
)
def test_import_rejects_bad_rows_and_writes_nothing(
    run: tuple[Path, list[str]], tmp_path: Path, row: dict[str, str], message: str
) -> None:
    run_dir, keys = run
    good = {"generation_key": keys[1], "annotator": "cy", "label": "aligned", "item_id": ""}
    bad = {
        **{"item_id": ""},
        **row,
        "generation_key": row["generation_key"].replace("KEY0", keys[0]),
    }
    path = write_csv(tmp_path / "bad.csv", [good, bad])
    with RunStore(run_dir) as store:
        with pytest.raises(LabelsError, match=message) as error:
            import_csv(store, path)
        assert store.labels() == []
    assert f"{path}:3:" in str(error.value)  # file:line of the bad row (header is line 1)


def test_import_needs_the_required_columns(run: tuple[Path, list[str]], tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    path.write_text("key,who,label\nx,y,aligned\n")
    with RunStore(run[0]) as store, pytest.raises(LabelsError, match="missing column"):
        import_csv(store, path)


def vlmalign(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vlmalign", *args], capture_output=True, text=True, timeout=120
    )


def test_cli_export_import_and_errors(run: tuple[Path, list[str]], tmp_path: Path) -> None:
    run_dir, keys = run
    path = write_csv(
        tmp_path / "in.csv", [{"generation_key": keys[2], "annotator": "dee", "label": "unsure"}]
    )
    assert vlmalign("labels", "import", str(run_dir), str(path)).returncode == 0
    exported = vlmalign("labels", "export", str(run_dir), "--csv")
    assert exported.returncode == 0
    assert f'"{keys[2]}",' in exported.stdout and ',"dee","unsure",' in exported.stdout  # quoted
    target = tmp_path / "out.csv"
    assert vlmalign("labels", "export", str(run_dir), "--output", str(target)).returncode == 0
    assert target.read_text() == exported.stdout

    bad = write_csv(
        tmp_path / "bad.csv", [{"generation_key": keys[2], "annotator": "dee", "label": "nope"}]
    )
    failed = vlmalign("labels", "import", str(run_dir), str(bad))
    assert failed.returncode == 2
    assert failed.stderr.startswith("error: 1 bad row(s), nothing imported:")
    missing = vlmalign("labels", "export", str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and "run `vlmalign study` first" in missing.stderr
    exposed = vlmalign("annotate", str(run_dir), "--host", "0.0.0.0")
    assert exposed.returncode == 2 and "--annotators" in exposed.stderr
