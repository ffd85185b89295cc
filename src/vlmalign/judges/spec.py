"""How a judge is declared: `@judge(...)` on the factory that builds it, once.

A declaration names the judge, says what its `NAME:ARGUMENT` means, which options it accepts,
whether its score is graded, and its version. The decorator turns the factory into a
`JudgeSpec` whose factory stamps every judge it builds with its declaration: the built judge's
`config()` records the declared name (its kind) and version, so a judge whose verdicts change
gets a new version here and nowhere else, and the store judges again (verdicts are keyed by a
hash of the config). A spec is registered by naming it as an entry point of the group
`vlmalign.judges` (`judges.registry.JUDGES`; docs/plugins.md); declaring it registers nothing.

No judge module is imported here: a factory imports its judge (and torch, if the judge needs it)
when it is called, so the registry loads fast and `vlmalign.config` stays free of torch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import wraps
from typing import Any

from vlmalign.judges.base import Judge
from vlmalign.judges.options import JudgeOptions
from vlmalign.naming import display_name

#: What a judge's factory receives: the ARGUMENT of `NAME:ARGUMENT` (None when not given), and
#: the options it accepts (others were refused before the call).
JudgeFactory = Callable[[str | None, JudgeOptions], Judge]


@dataclass(frozen=True)
class JudgeSpec:
    """One registered judge, as `vlmalign judges` lists it and `build_judge` builds it."""

    name: str
    description: str
    needs: str  # what must be installed or given for it to run
    configured: JudgeFactory
    version: int | None = None  # recorded in every built judge's config (None: not recorded)
    argument: str | None = None  # what `name:ARGUMENT` means, or None when none is taken
    argument_required: bool = False
    options: frozenset[str] = frozenset()  # the JudgeOptions fields this judge accepts
    uses_model: bool = False  # a VLM that an --adapter could change
    graded: bool = False  # its score is graded (an AUC means something), not just its verdict
    # The item kinds it reads; on others it answers unclear, and its validity leaves them out.
    item_kinds: frozenset[str] = frozenset({"yesno"})

    def __post_init__(self) -> None:
        unknown = sorted(set(self.options) - set(JudgeOptions.model_fields))
        if unknown:
            raise TypeError(f"judge {self.name!r}: no such option(s) {', '.join(unknown)}")

    @property
    def display_name(self) -> str:
        """How `vlmalign judges` shows it: `vlm:<model name>` for a judge with an argument."""
        return display_name(self.name, self.argument)

    def declared(self) -> dict[str, Any]:
        """What every judge built from this declaration records in its config."""
        found: dict[str, Any] = {"name": self.name}
        if self.version is not None:
            found["version"] = self.version
        return found


def judge(
    *,
    name: str,
    description: str,
    needs: str,
    version: int | None = 1,
    argument: str | None = None,
    argument_required: bool = False,
    options: Iterable[str] = (),
    uses_model: bool = False,
    graded: bool = False,
    item_kinds: Iterable[str] = ("yesno",),
) -> Callable[[JudgeFactory], JudgeSpec]:
    """Declare the decorated factory as the judge `name`: the decorated name is its `JudgeSpec`
    (see the module docstring). Bump `version` whenever the judge's verdicts on the same input
    change.
    """

    def declare(factory: JudgeFactory) -> JudgeSpec:
        @wraps(factory)
        def build(argument: str | None, options: JudgeOptions) -> Judge:
            return _stamped(factory(argument, options), spec)

        spec = JudgeSpec(
            name=name,
            description=description,
            needs=needs,
            configured=build,
            version=version,
            argument=argument,
            argument_required=argument_required,
            options=frozenset(options),
            uses_model=uses_model,
            graded=graded,
            item_kinds=frozenset(item_kinds),
        )
        return spec

    return declare


def _stamped(built: Judge, spec: JudgeSpec) -> Judge:
    """The built judge, its `config()` extended with its declaration (declared values win)."""
    own = built.config

    def config() -> dict[str, Any]:
        return {**own(), **spec.declared()}

    built.config = config  # type: ignore[method-assign]
    built.name = spec.name  # its kind; `build_judge` then sets its identity
    return built
