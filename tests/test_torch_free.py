"""What must load without torch or transformers: the config (and the settings it holds), the
model listing, scripted models, and models and judges behind an endpoint. Each check runs in a
fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "transformers")
CHECKS = {
    "config": "import vlmalign.config",
    "models package": "import vlmalign.models",
    "sampling settings": "from vlmalign.sampling import SamplingParams, derive_seed",
    "engines": "from vlmalign.models.engines import ENGINES",
    "model protocols": "import vlmalign.models.base",
    "model listing": "from vlmalign.models.registry import MODELS; assert 'mock' in MODELS",
    "scripted model": "from vlmalign.models.registry import load_model; load_model('mock:ideal')",
    "endpoint model": "import os; os.environ['OPENAI_API_KEY'] = 'k'; "
    "from vlmalign.models.registry import load_model; load_model('openai:gpt-4o')",
    "endpoint judge": "import os; os.environ['OPENAI_API_KEY'] = 'k'; "
    "from vlmalign.judges.registry import build_judge; "
    "build_judge('vlm:openai:m', image_base_dir=None)",
}


def heavy_modules_after(code: str) -> list[str]:
    """The heavy modules a fresh interpreter holds after running `code`."""
    probe = (
        f"import json, sys\n{code}\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    loaded: list[str] = json.loads(result.stdout)
    return sorted(loaded)


@pytest.mark.parametrize("code", list(CHECKS.values()), ids=list(CHECKS))
def test_loads_without_torch(code: str) -> None:
    assert heavy_modules_after(code) == []


def test_the_probe_sees_torch_when_it_is_imported() -> None:
    """The check above can fail: a module that imports torch is reported."""
    assert heavy_modules_after("import vlmalign.models.decoding") == sorted(HEAVY)
