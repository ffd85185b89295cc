"""Each annotator's own token (`vlmalign annotate RUN --annotators FILE`): issued, kept, checked.

FILE lists the names that may sign in, one a line. Each name gets a random token
(`secrets.token_urlsafe`), printed once by the command; only a salted hash of it is kept, in
`TOKENS_FILE` beside the run's store (written whole, owner-only). A sign-in needs the name's own
token, compared in constant time, so a name cannot be used by someone who lacks its token; a
name not in FILE cannot sign in at all. Starting again with the same FILE keeps the tokens
already issued (only names new to FILE get one) unless `renew` asks for new ones; a name
taken out of FILE loses its token.

The tokens are 192 random bits: the salted PBKDF2 hash keeps a copied tokens file from being
of use, and stretching only adds to that.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from vlmalign.atomic import file_lock, write_text
from vlmalign.errors import VlmalignError
from vlmalign.labels import validate_annotator

TOKENS_FILE = "annotator-tokens.json"  # beside study.sqlite: names and salted token hashes
TOKEN_BYTES = 24  # random bytes of a token (32 URL-safe characters)
HASH = "pbkdf2-sha256"
ITERATIONS = 100_000
SALT_BYTES = 16
FORMAT_VERSION = 1
MAX_NAMES = 1000


@dataclass(frozen=True)
class TokenHash:
    """A token's salted hash, as kept."""

    salt: bytes
    digest: bytes
    iterations: int = ITERATIONS

    @classmethod
    def of(cls, token: str, iterations: int = ITERATIONS) -> TokenHash:
        salt = secrets.token_bytes(SALT_BYTES)
        return cls(salt, _derive(token, salt, iterations), iterations)

    def matches(self, token: str) -> bool:
        """Whether `token` is the one hashed (the digests compared in constant time)."""
        return hmac.compare_digest(_derive(token, self.salt, self.iterations), self.digest)


def _derive(token: str, salt: bytes, iterations: int) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", token.encode("utf-8"), salt, iterations)


class AnnotatorTokens:
    """The names that may sign in, each with its token's hash."""

    def __init__(self, hashes: Mapping[str, TokenHash]) -> None:
        self.hashes = dict(hashes)
        # An unknown name costs the same hashing as a known one: timing tells no names apart.
        self._decoy = TokenHash.of(secrets.token_urlsafe(TOKEN_BYTES))

    @property
    def names(self) -> list[str]:
        return list(self.hashes)

    def verify(self, name: str, token: str) -> bool:
        """True only for a listed name with its own token."""
        known = self.hashes.get(name)
        matches = (known or self._decoy).matches(token)
        return known is not None and matches


@dataclass(frozen=True)
class Issued:
    """What `issue_tokens` did: the tokens made now (to show once), and the names kept."""

    tokens: AnnotatorTokens
    new: dict[str, str]  # name -> token, made now
    kept: list[str]  # names whose earlier token still holds


def read_names(path: Path) -> list[str]:
    """The annotator names of FILE: one a line, surrounding spaces stripped; blank lines and
    lines starting with `#` are skipped. Raises a one-line `VlmalignError` naming file and line."""
    where = f"--annotators {path}"
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise VlmalignError(f"{where}: the file does not exist") from None
    except UnicodeDecodeError as exc:
        raise VlmalignError(f"{where}: not UTF-8 text (byte {exc.start})") from exc
    except OSError as exc:
        raise VlmalignError(f"{where}: {exc.strerror or exc}") from exc
    names: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        name = line.strip()
        if not name or name.startswith("#"):
            continue
        if problem := validate_annotator(name):
            raise VlmalignError(f"{path}:{number}: {problem}")
        if name in names:
            raise VlmalignError(f"{path}:{number}: {name!r} is listed twice (line {names[name]})")
        names[name] = number
    if not names:
        raise VlmalignError(f"{where}: lists no annotator names (one a line)")
    if len(names) > MAX_NAMES:
        raise VlmalignError(f"{where}: lists {len(names)} names, more than {MAX_NAMES}")
    return list(names)


def issue_tokens(run_dir: Path, names: Iterable[str], renew: bool = False) -> Issued:
    """Give each name without a kept token (every name, with `renew`) a new one, keep the hashes
    of the others, drop those of names not given, and save the hashes. The new tokens are in
    the result only: show them now, they cannot be recovered."""
    path = run_dir / TOKENS_FILE
    with file_lock(path):  # two commands started at once take turns
        stored = {} if renew else read_hashes(path)
        hashes: dict[str, TokenHash] = {}
        new: dict[str, str] = {}
        kept: list[str] = []
        for name in names:
            if name in stored:
                hashes[name] = stored[name]
                kept.append(name)
            else:
                new[name] = secrets.token_urlsafe(TOKEN_BYTES)
                hashes[name] = TokenHash.of(new[name])
        if hashes != stored or not path.is_file():
            _save(path, hashes)
    return Issued(AnnotatorTokens(hashes), new, kept)


def read_hashes(path: Path) -> dict[str, TokenHash]:
    """The hashes kept in a tokens file (none when it does not exist)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise VlmalignError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if not text.strip():  # created, then the writer was stopped before it wrote
        return {}
    try:
        data = json.loads(text)
        if data.get("version") != FORMAT_VERSION or data.get("hash") != HASH:
            raise ValueError(f"version {data.get('version')!r}, hash {data.get('hash')!r}")
        return {
            str(name): TokenHash(
                bytes.fromhex(entry["salt"]), bytes.fromhex(entry["digest"]), entry["iterations"]
            )
            for name, entry in data["annotators"].items()
        }
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise VlmalignError(
            f"{path}: not a tokens file vlmalign can read ({exc}); move it away and pass "
            "--new-tokens to issue new tokens"
        ) from exc


def _save(path: Path, hashes: Mapping[str, TokenHash]) -> None:
    """Write the hashes whole (a temporary file renamed), readable by the owner only."""
    data = {
        "version": FORMAT_VERSION,
        "hash": HASH,
        "annotators": {
            name: {"salt": h.salt.hex(), "digest": h.digest.hex(), "iterations": h.iterations}
            for name, h in hashes.items()
        },
    }
    try:
        if not path.exists():  # created owner-only; the rename below keeps a file's mode
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    except OSError as exc:
        raise VlmalignError(f"{path}: cannot write ({exc.strerror or exc})") from exc
