"""`NAME[:ARGUMENT]` names, shared by the model and judge registries (no torch here)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, TypeVar

from vlmalign.errors import VlmalignError


class NamedSpec(Protocol):
    @property
    def argument(self) -> str | None: ...  # what `name:ARGUMENT` means, or None when none is taken

    @property
    def argument_required(self) -> bool: ...


SpecT = TypeVar("SpecT", bound=NamedSpec)


def split_name(name: str) -> tuple[str, str | None]:
    """Split at the first colon: 'vlm:hf:org/model' -> ('vlm', 'hf:org/model')."""
    base, sep, argument = name.partition(":")
    return base, (argument if sep else None)


def display_name(name: str, argument: str | None) -> str:
    """How listings show a spec: `hf:<hub id or local folder>` when it takes an argument."""
    return f"{name}:<{argument}>" if argument else name


def resolve_name(
    name: str, specs: Mapping[str, SpecT], kind: str, error: type[VlmalignError]
) -> tuple[SpecT, str | None]:
    """The spec behind `NAME[:ARGUMENT]` and its argument, checked; `error` says what is wrong."""
    base, argument = split_name(name)
    spec = specs.get(base)
    if spec is None:
        raise error(f"unknown {kind} {name!r}; known: {', '.join(specs)} (see `vlmalign {kind}s`)")
    if argument is not None and spec.argument is None:
        raise error(f"{kind} {base!r} takes no argument; use {base!r}")
    if argument == "" or (argument is None and spec.argument_required):
        raise error(f"{kind} {base!r} needs {spec.argument}: use '{base}:<{spec.argument}>'")
    return spec, argument
