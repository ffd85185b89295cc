"""How a model is declared: a `ModelSpec` names it, says what it needs and what it can do.

A spec's `capabilities` say which roles its models fill beyond generating (`score`: the `vlm`
judge; `train`: a study's finetuning stage; `serve_adapter`: generating with an adapter folder
as it lies on disk). Work that needs a capability asks `require` before anything is loaded or
written, so a model that lacks it is refused in one line naming what is missing, never skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from vlmalign.errors import ModelError
from vlmalign.models.base import Generator, Model, Scorer, ServesAdapters, Trainable
from vlmalign.models.endpoint import EndpointSettings
from vlmalign.naming import display_name

Capability = Literal["generate", "score", "train", "serve_adapter"]
CAPABILITIES: tuple[Capability, ...] = ("generate", "score", "train", "serve_adapter")

#: The protocol a model of each capability implements (models/base.py).
ROLE: dict[Capability, type] = {
    "generate": Generator,
    "score": Scorer,
    "train": Trainable,
    "serve_adapter": ServesAdapters,
}

#: What each capability lets a study do, as messages say it.
DOES: dict[Capability, str] = {
    "generate": "answer prompts",
    "score": "score answers (a `vlm:` judge)",
    "train": "be finetuned",
    "serve_adapter": "generate with an adapter folder",
}


@dataclass(frozen=True)
class LoadOptions:
    """What a factory builds a model from: the device name as given, whether to show progress,
    the name's argument, and the endpoint settings (remote models)."""

    device: str = "auto"
    progress: bool = True
    argument: str | None = None
    api: EndpointSettings | None = None


Factory = Callable[[LoadOptions], Generator]


@dataclass(frozen=True)
class ModelSpec:
    """One registered model, as `vlmalign models` lists it and `load_model` builds it."""

    name: str
    description: str
    size: str
    needs: str
    factory: Factory
    argument: str | None = None  # what `name:ARGUMENT` means, or None when none is taken
    argument_required: bool = False
    capabilities: frozenset[Capability] = frozenset({"generate"})

    def __post_init__(self) -> None:
        unknown = sorted(set(self.capabilities) - set(CAPABILITIES))
        if unknown or "generate" not in self.capabilities:
            raise TypeError(
                f"model {self.name!r}: capabilities are some of {', '.join(CAPABILITIES)}, "
                f"'generate' among them (got {', '.join(sorted(self.capabilities))})"
            )

    @property
    def display_name(self) -> str:
        return display_name(self.name, self.argument)

    def can(self, capability: Capability) -> bool:
        return capability in self.capabilities


def require(
    model_name: str, capabilities: frozenset[Capability], capability: Capability, remedy: str
) -> None:
    """A one-line ModelError when `capabilities` (a spec's, or an engine's) lack `capability`."""
    if capability in capabilities:
        return
    raise ModelError(
        f"model {model_name!r} cannot {DOES[capability]}: it lacks the '{capability}' "
        f"capability (it has: {', '.join(sorted(capabilities))}); {remedy}"
    )


def missing_members(model: object, capability: Capability) -> list[str]:
    """The members of the role's protocol that `model` does not have (empty: it fills it)."""
    role = ROLE[capability]
    wanted = getattr(role, "__protocol_attrs__", None) or [
        name for name in vars(role) if not name.startswith("_")
    ]
    return sorted(name for name in wanted if not hasattr(model, name))


def check_role(model: object, model_name: str, capability: Capability) -> None:
    """A loaded model really fills a role its spec declares; one line naming what it lacks."""
    role = ROLE[capability]
    if isinstance(model, role):
        return
    missing = missing_members(model, capability)
    lacking = ", ".join(missing) if missing else f"what {role.__name__} asks"
    raise ModelError(
        f"model {model_name!r} declares '{capability}' but its {type(model).__name__} lacks "
        f"{lacking}"
    )


__all__ = [
    "CAPABILITIES",
    "Capability",
    "Factory",
    "LoadOptions",
    "Model",
    "ModelSpec",
    "check_role",
    "missing_members",
    "require",
]
