"""Resolve an item's `image` reference (path, pkg: URI or URL) to bytes, a hash and a PIL image."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import urllib.request
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from PIL import Image

from vlmalign.cache import cache_root

PKG_SCHEME = "pkg:"
URL_SCHEMES = ("http://", "https://")


class ImageError(Exception):
    """The image cannot be found or read; the message says which and why."""


@dataclass(frozen=True)
class LoadedImage:
    """An image's bytes hash (part of every generation key) and its RGB pixels."""

    ref: str
    sha256: str
    image: Image.Image


def package_root(package: str) -> Path:
    """Directory of an installed top-level package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ImageError(f"package {package!r} is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def resolve_local(ref: str, base_dir: Path | None) -> Path | None:
    """The file a reference points to, or None for URLs."""
    if ref.startswith(URL_SCHEMES):
        return None
    if ref.startswith(PKG_SCHEME):
        package, _, resource = ref[len(PKG_SCHEME) :].partition("/")
        if not package or not resource:
            raise ImageError(f"bad pkg: URI {ref!r}; expected pkg:<package>/<resource path>")
        return package_root(package) / resource
    path = Path(ref).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    return path


def _fetch_url(url: str) -> bytes:
    """Download once; later runs read the cached copy (so the image hash stays stable)."""
    cached = cache_root() / "images" / hashlib.sha256(url.encode()).hexdigest()
    if cached.exists():
        return cached.read_bytes()
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            data: bytes = response.read()
    except OSError as exc:
        raise ImageError(f"cannot download {url}: {exc}") from exc
    cached.parent.mkdir(parents=True, exist_ok=True)
    partial = cached.with_suffix(".part")
    partial.write_bytes(data)
    partial.replace(cached)
    return data


def read_image_bytes(ref: str, base_dir: Path | None = None) -> bytes:
    path = resolve_local(ref, base_dir)
    if path is None:
        return _fetch_url(ref)
    if not path.is_file():
        raise ImageError(f"image file not found: {path}")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ImageError(f"cannot read image {path}: {exc}") from exc


def decode_image(data: bytes, ref: str) -> Image.Image:
    try:
        with Image.open(io.BytesIO(data)) as probe:
            probe.verify()
        image = Image.open(io.BytesIO(data))
        return image.convert("RGB")
    except Exception as exc:  # PIL raises many types for corrupt files
        raise ImageError(f"unreadable image {ref}: {exc}") from exc


@lru_cache(maxsize=256)
def load_image(ref: str, base_dir: Path | None = None) -> LoadedImage:
    """Read, verify and decode an image once per process."""
    data = read_image_bytes(ref, base_dir)
    image = decode_image(data, ref)
    return LoadedImage(ref=ref, sha256=hashlib.sha256(data).hexdigest(), image=image)
