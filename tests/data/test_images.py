"""Image references: relative paths, pkg: URIs and http(s) URLs (served here on loopback)."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vlmalign.data.images import ImageError, load_image, read_image_bytes


@pytest.fixture
def served(tmp_path: Path, monkeypatch) -> Iterator[str]:
    monkeypatch.setenv("VLMALIGN_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "www"
    root.mkdir()
    Image.fromarray(np.full((10, 10, 3), 90, dtype=np.uint8)).save(root / "pic.png")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_url_image_is_downloaded_once_and_cached(served: str, tmp_path: Path) -> None:
    url = f"{served}/pic.png"
    first = read_image_bytes(url)
    (tmp_path / "www" / "pic.png").unlink()  # the cached copy is used from now on
    assert read_image_bytes(url) == first
    assert load_image(url).image.size == (10, 10)


def test_missing_url_is_an_image_error(served: str) -> None:
    with pytest.raises(ImageError, match="cannot download"):
        read_image_bytes(f"{served}/missing.png")


def test_relative_path_is_relative_to_the_dataset(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((4, 4, 3), dtype=np.uint8)).save(tmp_path / "x.png")
    assert load_image("x.png", tmp_path).image.size == (4, 4)
    with pytest.raises(ImageError, match="not found"):
        read_image_bytes("x.png", tmp_path / "elsewhere")


def test_bad_pkg_uri() -> None:
    with pytest.raises(ImageError, match="not installed"):
        read_image_bytes("pkg:no_such_package_xyz/a.png")
    with pytest.raises(ImageError, match="expected pkg:<package>/<resource path>"):
        read_image_bytes("pkg:skimage")
