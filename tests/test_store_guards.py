"""Stores that must not be written to: a damaged store takes no label import and gives no
export, and an empty (0-byte) `study.sqlite` is never turned into a store by opening it.

The damage is made with plain SQLite (an index pointed at another index's pages), and SQLite's
own `PRAGMA integrity_check` (what `vlmalign store check` runs) is what calls it damaged."""

from __future__ import annotations

import csv
import shutil
import sqlite3
from pathlib import Path

import pytest

from tests.report.conftest import build_run
from tests.test_store import cli, one_error_line, snapshot
from vlmalign.errors import StoreError
from vlmalign.store import STORE_FILE, RunStore


@pytest.fixture(scope="module")
def built_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("built") / "run"
    build_run(run_dir, samples=1, annotators=("ana",))
    return run_dir


@pytest.fixture
def run(built_run: Path, tmp_path: Path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(built_run, target)
    return target


def damage_an_index(run: Path) -> None:
    """Point the labels index at another index's pages (as a torn write might leave it)."""
    conn = sqlite3.connect(run / STORE_FILE)
    other = conn.execute(
        "SELECT rootpage FROM sqlite_master WHERE name = 'sqlite_autoindex_judgments_1'"
    ).fetchone()[0]
    conn.execute("PRAGMA writable_schema = ON")
    with conn:
        conn.execute(
            "UPDATE sqlite_master SET rootpage = ? WHERE name = 'labels_by_generation'", (other,)
        )
    conn.close()
    check = sqlite3.connect(f"file:{run / STORE_FILE}?mode=ro", uri=True)
    assert check.execute("PRAGMA integrity_check").fetchone()[0] != "ok"  # SQLite agrees
    check.close()


def label_file(run: Path, path: Path) -> Path:
    conn = sqlite3.connect(f"file:{run / STORE_FILE}?mode=ro", uri=True)
    key = conn.execute("SELECT key FROM generations ORDER BY key LIMIT 1").fetchone()[0]
    conn.close()
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(
            [["generation_key", "annotator", "label"], [key, "zoe", "aligned"]]
        )
    return path


# --- a damaged store -----------------------------------------------------------------------
def test_a_damaged_store_takes_no_import(run: Path, tmp_path: Path) -> None:
    labels = label_file(run, tmp_path / "in.csv")
    damage_an_index(run)
    assert cli("store", "check", run)[0] == 1  # `store check` calls it damaged
    before = snapshot(run)
    code, stderr = cli("labels", "import", run, labels)
    assert code == 2
    line = one_error_line(stderr)
    assert line.startswith(f"error: {run / STORE_FILE} is damaged (SQLite's integrity check: ")
    assert "nothing was imported" in line and "vlmalign store check" in line
    assert snapshot(run) == before  # not a byte written


@pytest.mark.parametrize("to_file", [True, False], ids=["--output", "stdout"])
def test_a_damaged_store_gives_no_export(
    run: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str], to_file: bool
) -> None:
    damage_an_index(run)
    before = snapshot(run)
    output = tmp_path / "labels.csv"
    capfd.readouterr()
    where: list[str | Path] = ["--output", output] if to_file else []
    code, stderr = cli("labels", "export", run, *where)
    assert code == 2
    assert "nothing was exported" in one_error_line(stderr)
    assert not output.exists() and not list(tmp_path.glob("*.tmp"))
    assert capfd.readouterr().out == ""  # not even the header on stdout
    assert snapshot(run) == before


def test_an_intact_store_still_imports_and_exports(run: Path, tmp_path: Path) -> None:
    labels = label_file(run, tmp_path / "in.csv")
    assert cli("labels", "import", run, labels) == (0, "")
    code, _ = cli("labels", "export", run, "--output", tmp_path / "out.csv")
    assert code == 0
    rows = list(csv.DictReader((tmp_path / "out.csv").open(encoding="utf-8", newline="")))
    assert any(r["annotator"] == "zoe" for r in rows)


# --- an empty file ---------------------------------------------------------------------------
EMPTY_COMMANDS = {
    "labels import": ["labels", "import", "{run}", "{tmp}/in.csv"],
    "labels export": ["labels", "export", "{run}", "--output", "{tmp}/labels.csv"],
    "report": ["report", "{run}", "--out", "{tmp}/out"],
    "responses export": ["responses", "export", "{run}", "--output", "{tmp}/responses.jsonl"],
    "annotate": ["annotate", "{run}", "--port", "1"],
    "store check": ["store", "check", "{run}"],
}


def never_serve(app: object, **_: object) -> None:
    raise AssertionError("annotate started serving")


@pytest.mark.parametrize("command", list(EMPTY_COMMANDS))
def test_an_empty_store_file_is_refused_and_stays_empty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    monkeypatch.setattr("vlmalign.annotate.server.serve", never_serve)
    run = tmp_path / "run"
    run.mkdir()
    (run / STORE_FILE).write_bytes(b"")
    (tmp_path / "in.csv").write_text("generation_key,annotator,label\n")
    args = [a.format(run=run, tmp=tmp_path) for a in EMPTY_COMMANDS[command]]
    code, stderr = cli(*args)
    assert code == 2
    line = one_error_line(stderr)
    assert line == (
        f"error: {run / STORE_FILE} is an empty file (0 bytes), not a vlmalign store: it holds "
        "nothing; delete it, then run `vlmalign study` to start a new store there"
    )
    assert (run / STORE_FILE).read_bytes() == b""
    assert sorted(p.name for p in run.iterdir()) == [STORE_FILE]  # no -wal, no -shm
    assert cli("store", "check", run)[0] == 2  # still not a store


@pytest.mark.parametrize("read_only", [False, True])
def test_opening_an_empty_file_never_makes_a_store(tmp_path: Path, read_only: bool) -> None:
    (tmp_path / STORE_FILE).write_bytes(b"")
    with pytest.raises(StoreError) as refused:
        RunStore(tmp_path, read_only=read_only)
    assert refused.value.problem == "not a store"
    assert (tmp_path / STORE_FILE).read_bytes() == b""


def test_a_study_does_not_adopt_an_empty_file(tmp_path: Path) -> None:
    """Only a store file that does not exist yet is made; an empty one is left for the user."""
    dataset = Path(__file__).parent.parent / "src/vlmalign/data/builtin/moral-vqa-40.jsonl"
    run = tmp_path / "run"
    run.mkdir()
    (run / STORE_FILE).write_bytes(b"")
    args: list[str | Path] = ["study", "--dataset", dataset, "--model", "mock:ideal"]
    args += ["--no-finetune"]
    args += ["--judge", "stance", "--samples", "1", "--out", run, "--quiet"]
    code, stderr = cli(*args)
    assert code == 2 and "Traceback" not in stderr
    [error] = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert "is an empty file (0 bytes)" in error
    assert (run / STORE_FILE).read_bytes() == b""
    (run / STORE_FILE).unlink()  # as the message says: delete it, and the study makes one
    code, stderr = cli(*args)
    assert code == 0, stderr
    with RunStore(run, read_only=True) as store:
        assert store.latest_run() is not None
