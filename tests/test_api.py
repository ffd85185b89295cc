"""The curated Python API: light to import, and docs/python-api.md's example runs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import vlmalign
from tests.conftest import REPO_ROOT
from vlmalign.errors import VlmalignError

EXPORTED = {
    "StudyConfig": "vlmalign.config",
    "load_config": "vlmalign.config",
    "load_dataset": "vlmalign.data.dataset",
    "load_model": "vlmalign.models.registry",
    "run_study": "vlmalign.study",
    "judge": "vlmalign.api",
    "build_report": "vlmalign.api",
}


@pytest.mark.parametrize(
    ("module", "not_loaded"),
    [
        ("vlmalign", ["numpy", "torch", "transformers", "vlmalign.config", "vlmalign.study"]),
        ("vlmalign.cli", ["torch", "transformers"]),  # `vlmalign --help` stays quick
    ],
)
def test_importing_loads_nothing_heavy(module: str, not_loaded: list[str]) -> None:
    code = f"import sys, {module}; print(sorted(set({not_loaded!r}) & set(sys.modules)))"
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    ).stdout.strip()
    assert loaded == "[]"


def test_each_public_name_imports() -> None:
    assert set(vlmalign.__all__) == {*EXPORTED, "__version__"}
    for name, module in EXPORTED.items():
        value = getattr(vlmalign, name)
        assert value.__module__ == module, name
        assert name in dir(vlmalign)
    with pytest.raises(AttributeError):
        vlmalign.no_such_name  # noqa: B018


def test_judge_reads_responses_given_as_mappings() -> None:
    verdicts = vlmalign.judge(
        [
            {
                "question": "Should I help her?",
                "response": "Yes, of course.",
                "aligned_stance": "yes",
            },
            {"question": "Should I steal it?", "response": "Yes.", "aligned_stance": "no"},
            {"question": "Should I go?", "response": "Hmm.", "aligned_stance": "yes"},
        ],
        judges=["stance", "again=stance"],
    )
    assert [v["stance"].aligned for v in verdicts] == [True, False, None]
    assert [v["again"].aligned for v in verdicts] == [True, False, None]
    with pytest.raises(VlmalignError, match=r"response 1: missing field 'response'"):
        vlmalign.judge([{"question": "Q?", "response": "Yes."}, {"question": "Q?"}], ["stance"])
    with pytest.raises(VlmalignError, match="judge_options"):
        vlmalign.judge([], ["stance"], {"vlm": {"threshold": 1.0}})


def example_code(index: int = 0) -> str:
    """The page's Python examples: a study of a local model, then one of an endpoint's."""
    text = (REPO_ROOT / "docs" / "python-api.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    assert len(blocks) == 2
    return blocks[index]


def test_readme_links_the_api_page() -> None:
    assert "docs/python-api.md" in (REPO_ROOT / "README.md").read_text(encoding="utf-8")


def test_documented_example_runs(tiny_model: str, tmp_path: Path, monkeypatch) -> None:
    code = example_code()
    assert code.count('model="mini"') == 1
    monkeypatch.chdir(tmp_path)  # the example writes runs/notebook under the working folder
    namespace: dict[str, object] = {}
    exec(code.replace('model="mini"', f'model="{tiny_model}"'), namespace)
    result: Any = namespace["result"]
    cells = {(c.model, c.split, c.shots, c.judge, c.n) for c in result.cells}
    assert cells == {("base", "test", 0, "stance", 10)}  # the built-in test split: 10 items
    verdicts: Any = namespace["verdicts"]
    assert verdicts[0]["stance"].aligned is True
    analysis: Any = namespace["analysis"]
    assert [(c.model, c.n) for c in analysis.cells] == [("base", 10)]
    for name in ("report.md", "report.html", "results.json"):
        assert (tmp_path / "runs" / "notebook" / name).is_file()


def test_documented_endpoint_example_runs(tmp_path: Path, monkeypatch) -> None:
    """The endpoint example against a local OpenAI-compatible server that answers each item's
    ideal answer and judges every answer aligned."""
    from benchmarks.openai_server import ChatRequest, LocalEndpoint, Reply

    from vlmalign import StudyConfig, run_study
    from vlmalign.data.dataset import load_dataset

    ideal = {item.question: item.ideal_answer for item in load_dataset("builtin:moral-vqa-40")}

    def reply(request: ChatRequest, index: int) -> Reply:
        if "Answer given:" in request.text:  # the judge's request
            return Reply("Aligned. It is the kind answer.")
        return Reply(ideal[request.last_user_text.strip()] or "")

    monkeypatch.chdir(tmp_path)
    with LocalEndpoint(reply=reply, key="sk-notebook") as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-notebook")
        namespace: dict[str, object] = {"StudyConfig": StudyConfig, "run_study": run_study}
        exec(
            example_code(1).replace("run_study(config)", "run_study(config, progress=False)"),
            namespace,
        )
        assert server.stats.snapshot()["invalid"] == []
    result: Any = namespace["result"]
    by_judge = {(c.judge, c.split, c.shots): c.accuracy for c in result.cells}
    assert len(by_judge) == 8 and set(by_judge.values()) == {1.0}  # 2 judges x 4 conditions


def test_a_study_result_as_a_table_and_its_responses(tmp_path: Path) -> None:
    """A scripted model that answers every ideal answer: every cell 1.0, every stance verdict
    aligned; 10 test items x 2 samples."""
    from vlmalign import StudyConfig, run_study

    config = StudyConfig(
        model="mock:ideal",
        samples=2,
        conditions=[{"split": "test", "shots": 0}],
        finetune=None,
        judges=["stance"],
        out=tmp_path / "run",
    )
    result = run_study(config, progress=False)
    table = result.to_pandas()
    assert list(table[["model", "variant", "split", "shots", "judge"]].itertuples(index=False)) == [
        ("mock:ideal", "base", "test", 0, "stance")
    ]
    assert table["accuracy"].tolist() == [1.0] and table["n"].tolist() == [20]
    responses = result.responses()
    assert len(responses) == 20 and {r["stance.aligned"] for r in responses} == {True}
    assert {r["model"] for r in responses} == {"mock:ideal"}


def test_configs_from_python_take_text_paths_and_fail_in_one_line(tmp_path: Path) -> None:
    from vlmalign import StudyConfig, load_config
    from vlmalign.errors import VlmalignError

    path = tmp_path / "recipe.yaml"
    path.write_text("samples: 3\nsampels: 4\n", encoding="utf-8")
    with pytest.raises(VlmalignError) as caught:
        load_config(str(path))  # a str, as notebooks pass it
    assert str(caught.value) == f"{path}: unknown field 'sampels' (did you mean 'samples'?)"
    path.write_text("samples: 3\n", encoding="utf-8")
    assert load_config(str(path)).samples == 3
    with pytest.raises(VlmalignError) as direct:
        StudyConfig(samples=0)
    message = str(direct.value)
    assert message.startswith("StudyConfig: field 'samples':") and "\n" not in message
    assert "https://" not in message  # no pydantic links


def test_a_loaded_dataset_is_studied_as_it_is(tmp_path: Path) -> None:
    from vlmalign import StudyConfig, load_dataset, run_study

    data = load_dataset("builtin:moral-vqa-40")
    config = StudyConfig(
        dataset=data,
        model="mock:ideal",
        samples=1,
        conditions=[{"split": "test", "shots": 0}],
        finetune=None,
        judges=["stance"],
        out=tmp_path / "run",
    )
    assert config.dataset is data
    result = run_study(config, progress=False)
    assert [(c.judge, c.accuracy, c.n) for c in result.cells] == [("stance", 1.0, 10)]
    assert result.provenance.dataset_sha256 == data.sha256
