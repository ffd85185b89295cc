"""Where an `hf:` model's weights come from: a folder, or a hub id[@revision] in the local
cache (resolved to a commit, never downloaded here), and the fingerprint that names them."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlmalign.errors import ModelError

WRAPPER_VERSION = 1  # bump when the way prompts or inputs are built changes outputs


@dataclass(frozen=True)
class Source:
    """A local folder (revision None) or a hub id at a commit."""

    location: str
    revision: str | None

    @property
    def local(self) -> bool:
        return self.revision is None


def parse_source(argument: str) -> tuple[str, str | None]:
    """'org/model@rev' -> ('org/model', 'rev'); an existing folder is taken as it is."""
    if Path(argument).expanduser().is_dir():
        return str(Path(argument).expanduser()), None
    location, _, revision = argument.partition("@")
    return location, revision or None


def hub_commit(repo_id: str, revision: str | None, cache_dir: str | None = None) -> str:
    """The commit of the hub repository's config.json in the local cache (or downloaded)."""
    from transformers.utils.hub import cached_file, extract_commit_hash

    try:
        resolved = cached_file(repo_id, "config.json", revision=revision, cache_dir=cache_dir)
    except (OSError, ValueError) as exc:
        raise ModelError(
            f"hf:{repo_id}: not a local folder and not in the Hugging Face cache "
            "(download it with HF_HUB_OFFLINE=0, or pass a folder)"
        ) from exc
    commit = extract_commit_hash(resolved, None)
    if commit is None:
        raise ModelError(f"hf:{repo_id}: cannot tell the revision of {resolved}")
    return commit


def resolve_source(argument: str) -> Source:
    location, revision = parse_source(argument)
    if Path(location).is_dir():
        return Source(location, None)
    if location.startswith(("/", ".", "~")) or location.count("/") != 1:
        raise ModelError(f"hf:{argument}: no such folder, and not a hub id (org/name)")
    return Source(location, hub_commit(location, revision))


def _identity_files(folder: Path) -> list[Path]:
    """Weights, configs, tokenizer and processor files: what decides the model's outputs."""
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() not in {".md", ".txt"}
    )


def fingerprint_of(source: Source) -> str:
    """Hub id + commit, or the hashes of a folder's files; part of every generation key."""
    from vlmalign.cache import file_sha256

    identity: dict[str, Any] = {"backend": "hf", "wrapper_version": WRAPPER_VERSION}
    if source.local:
        folder = Path(source.location)
        identity["files"] = {p.name: file_sha256(p) for p in _identity_files(folder)}
    else:
        identity["repo"] = source.location
        identity["commit"] = source.revision
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
