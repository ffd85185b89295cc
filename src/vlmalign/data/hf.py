"""Open one split of an `hf:` source with the Hugging Face `datasets` library.

`hf:` takes a local folder (data files such as `data/test-00000-of-00001.parquet`, or a folder
written by `save_to_disk`), one data file (`.parquet`, `.json`/`.jsonl`, `.csv`, `.arrow`), or a
hub id (`owner/name`, optionally `@revision`), then optionally `#split`. Loading is offline: a
hub dataset is read from the local cache unless downloads are allowed (`allow_download: true`
in the dataset config, or VLMALIGN_ALLOW_DOWNLOAD=1).

`datasets` is imported here only, when an `hf:` source is opened, so reading a config does not
load it.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlmalign.cache import cache_root, file_sha256
from vlmalign.data.spec import ARROW_SUFFIX, DATA_FILE_BUILDERS, HUB_ID, DatasetSpec
from vlmalign.data.text import printable
from vlmalign.errors import DatasetError

JSONL_EXPORT_FILE = "dataset.jsonl"
"""The items file of a `dataset export --format jsonl` folder (images beside it)."""

ALLOW_DOWNLOAD_ENV = "VLMALIGN_ALLOW_DOWNLOAD"
SAVED_DATASET_FILES = ("dataset_dict.json", "state.json")  # what `save_to_disk` writes
_FILE_SUFFIXES = (*DATA_FILE_BUILDERS, ARROW_SUFFIX)
SINGLE_SPLIT = "train"  # the name `datasets` gives the one split of a lone data file
HOW_TO_ALLOW = (
    f"allow downloads with `allow_download: true` in the dataset config or {ALLOW_DOWNLOAD_ENV}=1"
)

_LOCK = threading.Lock()  # offline mode and progress bars are process-wide settings of `datasets`


@dataclass(frozen=True)
class OpenedTable:
    """One split of an `hf:` source, with image columns left undecoded (bytes and paths)."""

    table: Any  # datasets.Dataset
    name: str  # `hf:<source>#<split>`, for messages and the store
    folder: Path  # image paths in the rows are relative to it
    sha256: str  # of the files read and the column mapping (or the hub data's fingerprint)

    @property
    def column_names(self) -> list[str]:
        return list(self.table.column_names)

    def rows(self) -> Iterator[dict[str, Any]]:
        yield from self.table


def downloads_allowed(spec: DatasetSpec) -> bool:
    flag = os.environ.get(ALLOW_DOWNLOAD_ENV, "").strip().lower()
    return spec.allow_download or flag in ("1", "true", "yes")


def open_table(spec: DatasetSpec) -> OpenedTable:
    """The split the spec asks for (default: `test`, else the only or first split)."""
    shown = printable(spec.source)
    target = spec.hf_target
    if not target:
        raise DatasetError(shown, None, None, "hf: needs a folder, a data file or a hub id")
    try:
        local = Path(target).expanduser()
    except RuntimeError as exc:  # `~nosuchuser/...`
        raise DatasetError(shown, None, None, "cannot find that home folder") from exc
    is_local = local.exists()
    if not is_local and (not HUB_ID.fullmatch(target) or local.suffix.lower() in _FILE_SUFFIXES):
        raise DatasetError(shown, None, None, "no such file or folder (nor a hub id)")
    datasets = _import_datasets(shown)
    download = not is_local and downloads_allowed(spec)
    with _LOCK, quiet_progress(datasets), _offline(datasets, not download):
        try:
            if is_local:
                return _open_local(datasets, local, spec)
            return _open_hub(datasets, target, spec)
        except DatasetError:
            raise
        except Exception as exc:  # `datasets` raises many types; each is one line for the user
            reason = _first_line(exc)
            if not is_local and not download:
                message = (
                    f"no such local file or folder, and no such hub dataset in the local cache "
                    f"({reason}); {HOW_TO_ALLOW}"
                )
            else:
                message = f"cannot read it with the datasets library: {reason}"
            raise DatasetError(shown, None, None, message) from exc


def _import_datasets(shown: str) -> Any:
    try:
        import datasets
    except ImportError as exc:
        raise DatasetError(
            shown, None, None, "hf: sources need the `datasets` package: pip install datasets"
        ) from exc
    return datasets


def _open_local(datasets: Any, path: Path, spec: DatasetSpec) -> OpenedTable:
    if path.is_dir():
        if any((path / marker).is_file() for marker in SAVED_DATASET_FILES):
            return _open_saved(datasets, path, spec)
        if (path / JSONL_EXPORT_FILE).is_file():  # `dataset export --format jsonl`: its items,
            return _open_local(datasets, path / JSONL_EXPORT_FILE, spec)  # not its images/
        builder = datasets.load_dataset_builder(str(path), cache_dir=_cache_dir())
        return _from_builder(datasets, builder, spec, folder=path)
    suffix = path.suffix.lower()
    if suffix == ARROW_SUFFIX:
        split = _choose_split([SINGLE_SPLIT], spec)
        table = datasets.Dataset.from_file(str(path))
        digest = _digest(spec, split, files=[(path.name, file_sha256(path))])
        return _opened(datasets, table, spec, split, path.parent, digest)
    if suffix not in DATA_FILE_BUILDERS:
        known = ", ".join(_FILE_SUFFIXES)
        raise DatasetError(
            printable(spec.source), None, None, f"unknown data file type {suffix!r}; known: {known}"
        )
    builder = datasets.load_dataset_builder(
        DATA_FILE_BUILDERS[suffix], data_files=str(path.resolve()), cache_dir=_cache_dir()
    )
    return _from_builder(datasets, builder, spec, folder=path.parent)


def _open_saved(datasets: Any, folder: Path, spec: DatasetSpec) -> OpenedTable:
    """A folder written by `Dataset.save_to_disk` or `DatasetDict.save_to_disk`."""
    loaded = datasets.load_from_disk(str(folder))
    if isinstance(loaded, datasets.DatasetDict):
        split = _choose_split(list(loaded), spec)
        table = loaded[split]
    else:
        split = _choose_split([str(loaded.split or SINGLE_SPLIT)], spec)
        table = loaded
    files = [Path(f["filename"]) for f in table.cache_files]
    digest = _digest(spec, split, files=[(_relative(f, folder), file_sha256(f)) for f in files])
    return _opened(datasets, table, spec, split, folder, digest)


def _open_hub(datasets: Any, target: str, spec: DatasetSpec) -> OpenedTable:
    repo, _, revision = target.partition("@")
    builder = datasets.load_dataset_builder(repo, name=spec.subset, revision=revision or None)
    return _from_builder(datasets, builder, spec, folder=Path.cwd(), hub=True)


def _from_builder(
    datasets: Any, builder: Any, spec: DatasetSpec, *, folder: Path, hub: bool = False
) -> OpenedTable:
    data_files = builder.config.data_files
    if data_files:
        splits = [str(split) for split in data_files]  # NamedSplit objects are not JSON
    else:  # no data files known before preparing (a hub dataset in the cache)
        builder.download_and_prepare()
        splits = list(builder.info.splits or {})
    split = _choose_split(splits, spec)
    builder.download_and_prepare()
    table = builder.as_dataset(split=split)
    if hub or not data_files:
        digest = _digest(spec, split, fingerprint=str(table._fingerprint))
    else:
        files = [Path(str(f)) for f in data_files[split]]
        digest = _digest(spec, split, files=[(_relative(f, folder), file_sha256(f)) for f in files])
    return _opened(datasets, table, spec, split, folder, digest)


def _opened(
    datasets: Any, table: Any, spec: DatasetSpec, split: str, folder: Path, digest: str
) -> OpenedTable:
    for column, feature in table.features.items():  # keep images as bytes: hashed as stored
        if isinstance(feature, datasets.Image) and feature.decode:
            table = table.cast_column(column, datasets.Image(decode=False))
    name = f"hf:{spec.hf_target}#{split}"
    return OpenedTable(table=table, name=name, folder=folder, sha256=digest)


def _choose_split(splits: Sequence[str], spec: DatasetSpec) -> str:
    if not splits:
        raise DatasetError(printable(spec.source), None, None, "the dataset has no splits")
    requested = spec.requested_split
    if requested is not None:
        if requested not in splits:
            known = ", ".join(splits)
            raise DatasetError(
                printable(spec.source), None, None, f"no split {requested!r}; splits: {known}"
            )
        return requested
    return "test" if "test" in splits else splits[0]


def _digest(
    spec: DatasetSpec,
    split: str,
    *,
    files: Sequence[tuple[str, str]] = (),
    fingerprint: str | None = None,
) -> str:
    """What the items are made from: the files read (or the data's fingerprint), the split
    and the column mapping; a changed mapping makes other items, so another dataset."""
    parts = {
        "split": split,
        "mapping": spec.mapping(),
        "files": sorted(files),
        "fingerprint": fingerprint,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _relative(path: Path, folder: Path) -> str:
    try:
        return path.resolve().relative_to(folder.resolve()).as_posix()
    except ValueError:
        return path.name


def _cache_dir() -> str:
    """Where `datasets` keeps its Arrow copy of local data files (not the user's HF cache)."""
    return str(cache_root() / "datasets")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return printable(text[0] if text else type(exc).__name__)


@contextmanager
def _offline(datasets: Any, offline: bool) -> Iterator[None]:
    """Forbid, or allow, network access to the hub while `datasets` works, whatever
    HF_HUB_OFFLINE says (the command line sets it for models). Both libraries read the flag once
    at import, so it is set on their modules, then restored."""
    import huggingface_hub.constants as hub_constants

    saved = datasets.config.HF_HUB_OFFLINE, hub_constants.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = hub_constants.HF_HUB_OFFLINE = offline
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, hub_constants.HF_HUB_OFFLINE = saved


@contextmanager
def quiet_progress(datasets: Any) -> Iterator[None]:
    """No progress bars from `datasets` (library code reports through logging)."""
    was_enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was_enabled:
            datasets.enable_progress_bars()
