"""The cache's shared hash index: processes adding to it at once lose no entry."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from vlmalign.cache import file_sha256

WORKER = """
import sys
from pathlib import Path
from vlmalign.cache import file_sha256
for path in sys.argv[1:]:
    file_sha256(Path(path))
"""


def test_a_hash_is_the_files_own_and_is_remembered(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("VLMALIGN_CACHE", str(tmp_path / "cache"))
    data = tmp_path / "weights.bin"
    data.write_bytes(b"weights" * 1000)
    expected = hashlib.sha256(data.read_bytes()).hexdigest()
    assert file_sha256(data) == expected
    index = json.loads((tmp_path / "cache" / "hashes.json").read_text())
    assert list(index.values()) == [expected]
    assert file_sha256(data) == expected  # from the index


def test_processes_adding_at_once_lose_no_entry(tmp_path: Path) -> None:
    files = []
    for number in range(60):
        path = tmp_path / f"file-{number}.bin"
        path.write_bytes(os.urandom(2048))
        files.append(path)
    env = {**os.environ, "VLMALIGN_CACHE": str(tmp_path / "cache")}
    halves = [files[0::2], files[1::2]]
    workers = [
        subprocess.Popen([sys.executable, "-c", WORKER, *map(str, half)], env=env)
        for half in (halves[0], halves[1], halves[0][::-1], halves[1][::-1])
    ]
    assert [worker.wait(timeout=120) for worker in workers] == [0, 0, 0, 0]
    index = json.loads((tmp_path / "cache" / "hashes.json").read_text())
    assert sorted(index.values()) == sorted(
        hashlib.sha256(p.read_bytes()).hexdigest() for p in files
    )
