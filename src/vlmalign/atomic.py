"""Files written whole or not at all: the one way vlmalign writes a file others read.

A file is written to a temporary file of a unique name in its own folder (so the rename is on
one file system, and two writers never share a temporary file), flushed and `fsync`ed, then
`os.replace`d over the target: a reader sees the old file or the new one, never half of one, and
a failure (or a kill) leaves the target as it was, the temporary file removed when it can be
(after a kill, by the next command that opens the folder: `remove_leftovers`).
A replaced file keeps its permissions; a new one gets the umask's.
"""

from __future__ import annotations

import glob
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO


def file_mode(path: Path) -> int:
    """The mode `path` keeps if it exists, else a new file's under the umask."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


#: A temporary file's name: `.TARGET.PID.RANDOM.tmp` (mkstemp's random part has no dot); files
#: of earlier releases have no PID.
TEMPORARY = re.compile(r"\.(?P<target>.+?)(?:\.(?P<pid>\d+))?\.(?P<random>[a-z0-9_]+)\.tmp")


def leftovers(path: Path) -> list[Path]:
    """Temporary files a writer of `path` left beside it, whose writer is gone (killed): each
    name holds its writer's process id, and a file of a process still running is its own."""
    found = path.parent.glob(f".{glob.escape(path.name)}.*.tmp")
    return sorted(f for f in found if _left_behind(f, path.name))


def remove_leftovers(folder: Path) -> int:
    """Remove every temporary file in `folder` whose writer is gone (a `kill -9` during
    `report`, say); how many were removed. Files it cannot remove are left."""
    removed = 0
    for candidate in folder.glob(".*.tmp"):
        if _left_behind(candidate):
            try:
                candidate.unlink()
            except OSError:
                continue
            removed += 1
    return removed


def _left_behind(candidate: Path, target: str | None = None) -> bool:
    """Whether `candidate` is a temporary file (of `target`) whose writer is not running."""
    match = TEMPORARY.fullmatch(candidate.name)
    if match is None or (target is not None and match["target"] != target):
        return False
    return match["pid"] is None or not _running(int(match["pid"]))


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # another user's process: not ours to judge
    return True


@contextmanager
def staged(path: Path) -> Iterator[Path]:
    """A temporary path beside `path` for a writer that takes a path (safetensors): when the
    block ends it is synced and renamed over `path`; on an error it is removed."""
    # The writer's process id in the name tells a leftover of a killed writer (`leftovers`).
    prefix = f".{path.name}.{os.getpid()}."
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with tmp.open("rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, file_mode(path))  # mkstemp makes it owner-only
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # gone once replaced; a leftover after a failure


@contextmanager
def atomic_write(path: Path, *, newline: str | None = None) -> Iterator[TextIO]:
    """An open UTF-8 text file whose content replaces `path` when the block ends without an
    error."""
    with staged(path) as tmp, tmp.open("w", encoding="utf-8", newline=newline) as handle:
        yield handle
        handle.flush()


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path`'s lock file (`NAME.lock` beside it) for the block, so
    processes that read, change and rewrite one shared file take turns. Where the platform has
    no `fcntl` (Windows) the block runs unlocked."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on the platforms CI runs
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.with_name(path.name + ".lock").open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def write_text(path: Path, text: str) -> None:
    """`path` holds `text` (UTF-8), written whole or not at all."""
    with atomic_write(path) as handle:
        handle.write(text)
