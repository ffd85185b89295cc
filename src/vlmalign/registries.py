"""Models, judges and dataset sources registered by packages, through entry points.

A package adds to vlmalign without editing it by naming its specs in its own metadata
(docs/plugins.md):

    [project.entry-points."vlmalign.models"]
    echo = "vlmalign_echo:echo_model"        # a `ModelSpec`
    [project.entry-points."vlmalign.judges"]
    keyword = "vlmalign_echo:keyword_judge"  # a `JudgeSpec` (what `@judge(...)` returns)
    [project.entry-points."vlmalign.datasets"]
    csv = "vlmalign_echo:csv_source"         # a `DatasetSource`

vlmalign's own models, judges and sources are registered the same way, in its pyproject.toml.
A registry reads its group on first use (so listing is all that loading costs). Each entry
point's object must be a spec of the group's kind named as the entry point; the built-in names
come first and cannot be taken. A plugin that fails to load, or breaks these rules, is named in
one logged line and left out; the others load.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from typing import Generic, Protocol, TypeVar

from vlmalign.errors import VlmalignError

log = logging.getLogger(__name__)

OWN_PACKAGE = "vlmalign"
IN_CODE = "(registered in code)"  # the package shown for a spec registered by a program


class Named(Protocol):
    @property
    def name(self) -> str: ...


SpecT = TypeVar("SpecT", bound=Named)
BuiltT = TypeVar("BuiltT")


@dataclass(frozen=True)
class Origin:
    """Where a registered spec comes from: the distribution that declares it."""

    package: str
    version: str = ""

    def __str__(self) -> str:
        return f"{self.package} {self.version}".strip()


@cache
def _group(group: str) -> tuple[EntryPoint, ...]:
    return tuple(entry_points(group=group))


def _origin(entry: EntryPoint) -> Origin:
    dist = entry.dist
    if dist is None:
        return Origin("?")
    return Origin(dist.name, dist.version)


class PluginRegistry(MutableMapping[str, SpecT], Generic[SpecT]):
    """The specs of one entry-point group by name, loaded on first use.

    `builtins` names the module holding vlmalign's own specs: it is imported directly only when
    the installed metadata lists none of them (a source tree used without `pip install`).
    Programs and tests may add or replace specs like dict entries (`registry[name] = spec`).
    """

    def __init__(self, group: str, kind: type[SpecT], what: str, builtins: str) -> None:
        self.group = group
        self.kind = kind
        self.what = what  # "model", "judge", "dataset source": how messages name one
        self.builtins = builtins
        self._specs: dict[str, SpecT] | None = None
        self._origins: dict[str, Origin] = {}
        self.failures: dict[str, str] = {}  # entry-point name -> why it was left out

    # --- mapping ------------------------------------------------------------------------------
    def __getitem__(self, name: str) -> SpecT:
        return self._loaded()[name]

    def __setitem__(self, name: str, spec: SpecT) -> None:
        self._loaded()[name] = spec
        self._origins[name] = Origin(IN_CODE)

    def __delitem__(self, name: str) -> None:
        del self._loaded()[name]
        self._origins.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        return iter(self._loaded())

    def __len__(self) -> int:
        return len(self._loaded())

    def origin(self, name: str) -> Origin:
        """The package that registered `name`."""
        self._loaded()
        return self._origins.get(name, Origin(IN_CODE))

    def built(self, name: str, build: Callable[[], BuiltT], error: type[VlmalignError]) -> BuiltT:
        """What a plugin's factory builds; whatever else it raises becomes one line (`error`)
        naming the plugin and its package. vlmalign's own factories raise as they do."""
        origin = self.origin(name)
        if origin.package == OWN_PACKAGE:
            return build()
        try:
            return build()
        except VlmalignError:
            raise
        except Exception as exc:  # the plugin's code: named, not shown as a traceback
            why = f"{type(exc).__name__}: {exc}".splitlines()[0]
            raise error(f"{self.what} {name!r} ({origin}) failed: {why}") from exc

    def reload(self) -> None:
        """Read the group again (after installing a package in this process)."""
        _group.cache_clear()
        self._specs = None
        self._origins = {}
        self.failures = {}

    # --- loading ------------------------------------------------------------------------------
    def _loaded(self) -> dict[str, SpecT]:
        if self._specs is None:
            self._specs = {}
            self._load()
        return self._specs

    def _load(self) -> None:
        entries = _group(self.group)
        own = [e for e in entries if _origin(e).package == OWN_PACKAGE]
        others = sorted(
            (e for e in entries if e not in own), key=lambda e: (_origin(e).package, e.name)
        )
        if own:
            for entry in sorted(own, key=lambda e: e.name):
                self._add_entry(entry)
        else:
            self._add_builtins()
        for entry in others:
            self._add_entry(entry)

    def _add_builtins(self) -> None:
        module = importlib.import_module(self.builtins)
        for value in vars(module).values():
            if isinstance(value, self.kind):
                self._add(value.name, value, Origin(OWN_PACKAGE))

    def _add_entry(self, entry: EntryPoint) -> None:
        origin = _origin(entry)
        try:
            value = entry.load()
        except Exception as exc:  # a plugin's import may raise anything: it must not stop ours
            why = f"{type(exc).__name__}: {exc}".splitlines()[0]
            self._fail(entry, origin, f"cannot be loaded ({why})")
            return
        if not isinstance(value, self.kind):
            found = type(value).__name__
            self._fail(entry, origin, f"is a {found}, not a {self.kind.__name__}")
        elif value.name != entry.name:
            self._fail(entry, origin, f"names a {self.what} {value.name!r}; use the same name")
        elif entry.name in self._loaded():
            taken = self._origins[entry.name]
            self._fail(entry, origin, f"the name is taken by {taken.package}")
        else:
            self._add(entry.name, value, origin)

    def _add(self, name: str, spec: SpecT, origin: Origin) -> None:
        assert self._specs is not None
        self._specs[name] = spec
        self._origins[name] = origin

    def _fail(self, entry: EntryPoint, origin: Origin, why: str) -> None:
        message = f"{self.what} plugin {entry.name!r} ({origin}, {entry.value}) left out: {why}"
        self.failures[entry.name] = message
        log.warning("%s", message)
