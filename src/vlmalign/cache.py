"""Where prepared model files live, and cached file hashes (hashing 100 MB every start is waste)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from vlmalign.atomic import file_lock, write_text


def cache_root() -> Path:
    """$VLMALIGN_CACHE, else ~/.cache/vlmalign."""
    root = os.environ.get("VLMALIGN_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "vlmalign"


def file_sha256(path: Path) -> str:
    """sha256 of a file, remembered by (path, size, mtime) in the cache's shared index."""
    stat = path.stat()
    index_path = cache_root() / "hashes.json"
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    known = _read_index(index_path).get(key)
    if known is not None:
        return str(known)
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    # Processes started together (`accelerate launch`) may add to the index at once: each reads
    # the newest index under the lock, so no one's entry is lost.
    with file_lock(index_path):
        index = _read_index(index_path)
        index[key] = digest.hexdigest()
        write_text(index_path, json.dumps(index, indent=0))
    return digest.hexdigest()


def _read_index(index_path: Path) -> dict[str, str]:
    try:
        index = json.loads(index_path.read_text())
    except (OSError, ValueError):
        return {}
    return index if isinstance(index, dict) else {}
