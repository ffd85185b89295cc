"""Files written whole or not at all (`vlmalign.atomic`)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vlmalign.atomic import atomic_write, leftovers, remove_leftovers, staged, write_text


def test_a_file_is_replaced_whole_and_keeps_its_permissions(tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    target.write_text("old\n")
    os.chmod(target, 0o640)
    with atomic_write(target, newline="") as handle:
        handle.write("a,b\r\n")
        assert target.read_text() == "old\n"  # not replaced before the block ends
    assert target.read_bytes() == b"a,b\r\n"
    assert target.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]  # no temporary left


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "card.json"
    write_text(target, "{}\n")
    with pytest.raises(RuntimeError), atomic_write(target) as handle:
        handle.write('{"half": ')
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "{}\n"
    assert [p.name for p in tmp_path.iterdir()] == ["card.json"]


def test_a_writer_that_takes_a_path_is_staged_beside_its_target(tmp_path: Path) -> None:
    target = tmp_path / "weights.bin"
    with staged(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name != target.name
        tmp.write_bytes(b"\x00\x01")
        assert not target.exists()
    assert target.read_bytes() == b"\x00\x01" and not tmp.exists()


def test_a_killed_writers_temporary_is_found_beside_its_target(tmp_path: Path) -> None:
    target = tmp_path / "report[1].md"  # glob characters in the name are taken literally
    left = tmp_path / ".report[1].md.abc123.tmp"
    left.write_text("half")
    (tmp_path / ".other.md.x.tmp").write_text("not ours")
    assert leftovers(target) == [left]


def _finished_pid() -> int:
    """The process id of a process that has ended."""
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        text=True,
        capture_output=True,
        check=True,
    )
    return int(done.stdout)


def test_a_temporary_of_a_running_writer_is_not_a_leftover(tmp_path: Path) -> None:
    target = tmp_path / "report.md"
    alive = tmp_path / f".report.md.{os.getpid()}.abc123.tmp"  # this process: still writing
    dead = tmp_path / f".report.md.{_finished_pid()}.def456.tmp"
    for path in (alive, dead):
        path.write_text("half")
    assert leftovers(target) == [dead]
    with staged(target) as tmp:  # the name a writer uses holds its process id
        assert tmp.name.startswith(f".report.md.{os.getpid()}.")


def test_a_command_on_a_run_removes_what_a_killed_report_left(tmp_path: Path) -> None:
    """`kill -9` during `report` leaves temporary files; the next command that opens the run
    (here `labels export`) removes them, and keeps a running writer's."""
    run = tmp_path / "run"
    shutil.copytree(Path(__file__).parent / "fixtures" / "runs" / "dac1fdb-mock", run)
    dead = [run / f".{name}.{_finished_pid()}.k1ll3d.tmp" for name in ("report.md", "report.html")]
    alive = run / f".results.json.{os.getpid()}.w0rk1n.tmp"
    for path in (*dead, alive):
        path.write_text("half")
    done = subprocess.run(
        [sys.executable, "-m", "vlmalign", "labels", "export", str(run)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert not any(path.exists() for path in dead) and alive.exists()
    assert remove_leftovers(run) == 0
