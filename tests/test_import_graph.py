"""No import cycles in `src/vlmalign`, and no import from a lower layer to a higher one
(docs/architecture.md, "Layers").

The graph is read from the source: every `import` and `from ... import`, at module level or
inside a function, except those under `if TYPE_CHECKING:` (never run). `from package import
submodule` is an import of the submodule, as Python resolves it. Cycles are found as strongly
connected components by networkx, an implementation of its own, so the check does not rest on
code written here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

SOURCE = Path(__file__).resolve().parents[1] / "src"


def _modules() -> dict[str, Path]:
    found = {}
    for path in SOURCE.rglob("*.py"):
        parts = list(path.relative_to(SOURCE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imported(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package modules `module` imports anywhere in its body (TYPE_CHECKING aside)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _type_checking(child):
                for other in child.orelse:
                    visit_one(other)
                continue
            visit_one(child)

    def visit_one(node: ast.AST) -> None:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in modules)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            submodules = {f"{base}.{a.name}" for a in node.names} & modules.keys()
            found.update(submodules)
            if len(submodules) < len(node.names) and base in modules:
                found.add(base)  # names defined in `base` itself
        visit(node)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return found


def import_graph() -> nx.DiGraph:
    modules = _modules()
    graph = nx.DiGraph()
    graph.add_nodes_from(modules)
    for module, path in modules.items():
        graph.add_edges_from((module, target) for target in _imported(module, path, modules))
    return graph


def test_the_package_has_no_import_cycle() -> None:
    graph = import_graph()
    assert len(graph) > 100  # the whole package was read
    cycles = [sorted(c) for c in nx.strongly_connected_components(graph) if len(c) > 1]
    loops = [m for m in graph if graph.has_edge(m, m)]
    assert cycles == [] and loops == [], f"import cycles: {cycles} {loops}"


#: The layers of docs/architecture.md, lowest first: a module imports its own layer or lower
#: ones. A module belongs to the first layer with a prefix that names it or a package above it.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "foundation",
        (
            "vlmalign",
            "vlmalign.errors",
            "vlmalign.hashing",
            "vlmalign.atomic",
            "vlmalign.cache",
            "vlmalign.naming",
            "vlmalign.registries",
            "vlmalign.data.text",
        ),
    ),
    ("artifacts", ("vlmalign.schemas",)),
    (
        "data",
        (
            "vlmalign.data",
            "vlmalign.prompts",
            "vlmalign.sampling",
            "vlmalign.stats",
            "vlmalign.distributed",
        ),
    ),
    ("models", ("vlmalign.models",)),
    ("judges and store", ("vlmalign.judges", "vlmalign.store")),
    (
        "stages",
        (
            "vlmalign.config",
            "vlmalign.provenance",
            "vlmalign.generation",
            "vlmalign.validation",
            "vlmalign.finetune",
            "vlmalign.labels",
            "vlmalign.judge_file",
            "vlmalign.dataset_checks",
        ),
    ),
    ("reports and app", ("vlmalign.report", "vlmalign.annotate")),
    ("orchestration", ("vlmalign.study", "vlmalign.study_checks", "vlmalign.api")),
    ("entry points", ("vlmalign.cli", "vlmalign.__main__", "vlmalign.plugins")),
)


def layer_of(module: str) -> int:
    """The layer of `module`: its own name listed, else the nearest package above it listed."""
    for name in (module, *_packages_above(module)):
        for index, (_, prefixes) in enumerate(LAYERS):
            if name in prefixes:
                return index
    raise AssertionError(f"{module} is in no layer: add it to LAYERS and docs/architecture.md")


def _packages_above(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:end]) for end in range(len(parts) - 1, 0, -1)]


def test_no_module_imports_a_higher_layer() -> None:
    upward = [
        f"{a} ({LAYERS[layer_of(a)][0]}) -> {b} ({LAYERS[layer_of(b)][0]})"
        for a, b in import_graph().edges
        if layer_of(b) > layer_of(a)
    ]
    assert upward == []


def test_the_check_sees_imports_inside_functions_and_skips_type_checking(tmp_path) -> None:
    """The reader on a package written here: a cycle through a function-level import is one,
    a TYPE_CHECKING import is not."""
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("def f():\n    from pkg import b\n")
    (package / "b.py").write_text("from pkg.a import f\n")
    (package / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import a\n"
    )
    modules = {"pkg": package / "__init__.py"} | {
        f"pkg.{name}": package / f"{name}.py" for name in ("a", "b", "c")
    }
    assert _imported("pkg.a", modules["pkg.a"], modules) == {"pkg.b"}
    assert _imported("pkg.b", modules["pkg.b"], modules) == {"pkg.a"}
    assert _imported("pkg.c", modules["pkg.c"], modules) == set()
