"""Where prepared model files live, and cached file hashes (hashing 100 MB every start is waste)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from vlmalign.atomic import write_text


def cache_root() -> Path:
    """$VLMALIGN_CACHE, else ~/.cache/vlmalign."""
    root = os.environ.get("VLMALIGN_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "vlmalign"


def file_sha256(path: Path) -> str:
    """sha256 of a file, remembered by (path, size, mtime) in the cache."""
    stat = path.stat()
    index_path = cache_root() / "hashes.json"
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    try:
        index = json.loads(index_path.read_text())
    except (OSError, ValueError):
        index = {}
    if key in index:
        return str(index[key])
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    index[key] = digest.hexdigest()
    index_path.parent.mkdir(parents=True, exist_ok=True)
    write_text(index_path, json.dumps(index, indent=0))
    return str(index[key])
