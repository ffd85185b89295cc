"""Resolve an item's `image` reference (path, pkg: URI or URL) to bytes, a hash and a PIL image."""

from __future__ import annotations

import hashlib
import http.client
import importlib.util
import io
import os
import threading
import urllib.request
import warnings
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from vlmalign.cache import cache_root
from vlmalign.data.text import printable

PKG_SCHEME = "pkg:"
URL_SCHEMES = ("http://", "https://")

MAX_IMAGE_PIXELS = 50_000_000
"""Images with more pixels are refused before decoding (a 17 KB PNG can hold 144 megapixels)."""
MAX_IMAGE_BYTES = 256 * 1024 * 1024
"""Image files larger than this are refused before they are read."""
IMAGE_CACHE_BYTES = 512 * 1024 * 1024
"""Decoded images kept for reuse, in bytes of pixels (least recently used dropped first)."""
URL_DEADLINE_S = 30.0
"""A URL's image must arrive whole within this many seconds, connection and headers included
(a server that sends a byte now and then would otherwise hold a read open for ever)."""
URL_READ_TIMEOUT_S = 30.0
"""Each wait for the server (connecting, each read) ends after this many seconds at most."""
URL_CHUNK = 64 * 1024


class ImageError(Exception):
    """The image cannot be found or read; the message says which and why."""


@dataclass(frozen=True)
class LoadedImage:
    """An image's bytes hash (part of every generation key), its RGB pixels, and the file's
    bytes (a remote model sends a PNG or JPEG file as it is)."""

    ref: str
    sha256: str
    image: Image.Image
    data: bytes = b""


def package_root(package: str) -> Path:
    """Directory of an installed top-level package, found without importing it."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError) as exc:  # ValueError: a module without a spec (__main__)
        raise ImageError(f"package {package!r} cannot be located: {exc}") from exc
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
        if not package.isidentifier():  # a dotted name would import its parent package
            raise ImageError(f"bad pkg: URI {ref!r}; <package> must be a top-level package name")
        return package_root(package) / resource
    try:
        path = Path(ref).expanduser()
    except RuntimeError as exc:  # `~nosuchuser/...`
        raise ImageError(f"image file not found: {printable(ref)} (no such home folder)") from exc
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    return path


def missing_files(refs: Iterable[str], base_dir: Path | None) -> list[str]:
    """The references, of `refs`, to image files that are not there (a relative path taken from
    `base_dir`; a relative `base_dir` from the working directory). URLs are not fetched."""
    missing = []
    for ref in refs:
        try:
            path = resolve_local(ref, base_dir)
            if path is not None and not path.is_file():
                missing.append(ref)
        except (ImageError, OSError, ValueError):  # a bad pkg: URI, a name with a NUL
            missing.append(ref)
    return missing


def _fetch_url(url: str) -> bytes:
    """Download once; later runs read the cached copy (so the image hash stays stable)."""
    cached = cache_root() / "images" / hashlib.sha256(url.encode()).hexdigest()
    if cached.exists():
        return cached.read_bytes()
    data = _download(url, URL_DEADLINE_S, MAX_IMAGE_BYTES)
    cached.parent.mkdir(parents=True, exist_ok=True)
    partial = cached.with_name(f"{cached.name}.{os.getpid()}.{threading.get_ident()}.part")
    partial.write_bytes(data)
    partial.replace(cached)
    return data


def _download(url: str, deadline_s: float, max_bytes: int) -> bytes:
    """The body at `url`, whole within `deadline_s` and at most `max_bytes`, or an ImageError.

    The download runs in a thread of its own that this one waits for until the deadline: a
    socket timeout bounds each wait for the server, not the whole (a server may send one byte
    per second for ever, headers included). A download given up on stops at its next read.
    """
    shown = printable(url)
    outcome: dict[str, Any] = {}
    given_up = threading.Event()

    def fetch() -> None:
        try:
            with urllib.request.urlopen(url, timeout=min(URL_READ_TIMEOUT_S, deadline_s)) as got:
                chunks: list[bytes] = []
                size = 0
                while not given_up.is_set():
                    chunk = got.read1(URL_CHUNK)  # what has arrived, not a full chunk
                    if not chunk:
                        outcome["data"] = b"".join(chunks)
                        return
                    size += len(chunk)
                    if size > max_bytes:
                        outcome["too_big"] = True
                        return
                    chunks.append(chunk)
        except (OSError, ValueError, http.client.HTTPException) as exc:  # ValueError: bad URL
            outcome["error"] = exc

    worker = threading.Thread(target=fetch, name="vlmalign-download", daemon=True)
    worker.start()
    worker.join(deadline_s)
    if worker.is_alive():
        given_up.set()
        raise ImageError(
            f"cannot download {shown}: not complete within {deadline_s:g} s; download it "
            "yourself and refer to the file"
        )
    if "error" in outcome:
        raise ImageError(f"cannot download {shown}: {printable(str(outcome['error']))}")
    if outcome.get("too_big"):
        raise ImageError(f"image {shown} is larger than {_size(max_bytes)}")
    data: bytes = outcome["data"]
    return data


def _size(limit: int) -> str:
    return f"{limit >> 20} MiB" if limit >= 1 << 20 else f"{limit} bytes"


def stored_image_path(data: bytes) -> Path:
    """Keep image bytes that came inside a dataset (not as a file) in the cache, named by their
    sha256, and return that file; an item refers to it like to any other image file."""
    if len(data) > MAX_IMAGE_BYTES:
        raise ImageError(f"an embedded image is larger than {MAX_IMAGE_BYTES >> 20} MiB")
    digest = hashlib.sha256(data).hexdigest()
    path = cache_root() / "images" / "sha256" / digest
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{digest}.{os.getpid()}.{threading.get_ident()}.part")
        partial.write_bytes(data)
        partial.replace(path)  # atomic: a reader never sees half an image
    return path


def read_image_bytes(ref: str, base_dir: Path | None = None) -> bytes:
    path = resolve_local(ref, base_dir)
    if path is None:
        return _fetch_url(ref)
    shown = printable(str(path))
    if not path.is_file():
        raise ImageError(f"image file not found: {shown}")
    try:
        if path.stat().st_size > MAX_IMAGE_BYTES:
            raise ImageError(f"image {shown} is larger than {MAX_IMAGE_BYTES >> 20} MiB")
        return path.read_bytes()
    except OSError as exc:
        raise ImageError(f"cannot read image {shown}: {printable(str(exc))}") from exc


_OPEN_LOCK = threading.Lock()  # warnings.catch_warnings changes process-wide state


def _open(data: bytes) -> Image.Image:
    """Open (header only); PIL's decompression-bomb warning is raised, not printed."""
    with _OPEN_LOCK, warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        return Image.open(io.BytesIO(data))


def _check_size(size: tuple[int, int], shown: str) -> None:
    width, height = size
    if width * height > MAX_IMAGE_PIXELS:
        raise ImageError(
            f"image {shown} is {width}x{height} pixels ({width * height / 1e6:.0f} megapixels), "
            f"over the limit of {MAX_IMAGE_PIXELS // 1_000_000} megapixels; downscale it"
        )


def decode_image(data: bytes, ref: str) -> Image.Image:
    """Check the size in the header, verify the file, then decode it to RGB."""
    shown = printable(ref)
    try:
        with _open(data) as probe:
            _check_size(probe.size, shown)
            probe.verify()
        with _open(data) as image:
            return image.convert("RGB")
    except ImageError:
        raise
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise ImageError(
            f"image {shown} is over the limit of {MAX_IMAGE_PIXELS // 1_000_000} megapixels "
            "(a decompression bomb?); downscale it"
        ) from exc
    except Exception as exc:  # PIL raises many types for corrupt files
        raise ImageError(f"unreadable image {shown}: {printable(str(exc))}") from exc


class _ImageCache:
    """Least-recently-used decoded images, bounded by their bytes (pixels and file; not count)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: OrderedDict[tuple[str, Path | None], tuple[LoadedImage, int]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, Path | None]) -> LoadedImage | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            self._entries.move_to_end(key)
            return entry[0]

    def put(self, key: tuple[str, Path | None], loaded: LoadedImage) -> None:
        pixels = loaded.image.width * loaded.image.height * len(loaded.image.getbands())
        size = pixels + len(loaded.data)
        if size > self.max_bytes:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self.bytes -= old[1]
            self._entries[key] = (loaded, size)
            self.bytes += size
            while self.bytes > self.max_bytes:
                _, (_, dropped) = self._entries.popitem(last=False)
                self.bytes -= dropped

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.bytes = 0


_cache = _ImageCache(IMAGE_CACHE_BYTES)


def clear_image_cache() -> None:
    """Forget every decoded image (tests; a long-lived process that wants its memory back)."""
    _cache.clear()


def load_image(ref: str, base_dir: Path | None = None) -> LoadedImage:
    """Read, verify and decode an image; decoded images are reused while the cache has room."""
    # A relative folder is the working directory's: keyed as it is now, not as it was.
    key = (ref, base_dir.absolute() if base_dir is not None else None)
    cached = _cache.get(key)
    if cached is not None:
        return cached
    data = read_image_bytes(ref, base_dir)
    image = decode_image(data, ref)
    loaded = LoadedImage(
        ref=ref, sha256=hashlib.sha256(data).hexdigest(), image=image, data=bytes(data)
    )
    _cache.put(key, loaded)
    return loaded
