"""vlmalign: measure and improve the moral alignment of vision-language models.

The names in `__all__` are the API for notebooks and scripts (docs/python-api.md). Each is
imported on first use, so `import vlmalign` stays light: torch loads only with a model.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public name -> the module that defines it.
_EXPORTS = {
    "StudyConfig": "vlmalign.config",
    "load_config": "vlmalign.config",
    "load_dataset": "vlmalign.data.dataset",
    "load_model": "vlmalign.models.registry",
    "run_study": "vlmalign.study",
    "judge": "vlmalign.api",
    "build_report": "vlmalign.api",
}

__all__ = [
    "StudyConfig",
    "__version__",
    "build_report",
    "judge",
    "load_config",
    "load_dataset",
    "load_model",
    "run_study",
]

if TYPE_CHECKING:
    from vlmalign.api import build_report, judge
    from vlmalign.config import StudyConfig, load_config
    from vlmalign.data.dataset import load_dataset
    from vlmalign.models.registry import load_model
    from vlmalign.study import run_study


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'vlmalign' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # later look-ups find it without this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
