"""The package's layering: each module imports only modules of lower layers (function-level
imports included), so there is no import cycle, and no module imports a command-line module.

The order is written once, here; README's "Layout" section describes the same layers."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "harness"

LAYERS: list[list[str]] = [
    ["errors", "schema", "stats", "provenance", "context", "numerics"],  # import nothing of the project
    ["cli", "envs", "data", "results"],
    ["mjbatch", "checkpoints", "fast", "behavior", "summary", "figures", "comparison"],
    ["vector", "policy", "recipe", "reference"],
    ["rollout"],
    ["evaluate", "recording"],
    ["parallel"],
    ["runner"],
]
COMMANDS = ["sweep", "plot", "video", "collect", "train", "regression", "compare"]
"""``python -m harness.<name>``: on top; no module of the package imports them."""


def project_imports(path: Path) -> set[str]:
    """Names of the ``harness`` modules that ``path`` imports anywhere in its body."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "harness":
            parts = node.module.split(".")
            if len(parts) > 1:
                found.add(parts[1])
            else:  # from harness import stats, sweep
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("harness."))
    return found


def layer_of() -> dict[str, int]:
    rank = {m: i for i, layer in enumerate(LAYERS) for m in layer}
    return rank | {m: len(LAYERS) for m in COMMANDS}


def violations(imports: dict[str, set[str]], rank: dict[str, int]) -> list[str]:
    out = []
    for module, deps in sorted(imports.items()):
        for dep in sorted(deps - {module}):
            if dep in COMMANDS:
                out.append(f"{module} imports the command-line module {dep}")
            elif rank[dep] >= rank[module]:
                out.append(f"{module} (layer {rank[module]}) imports {dep} (layer {rank[dep]})")
    return out


def test_every_module_has_a_layer():
    modules = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    assert modules == set(layer_of()), "add new modules to LAYERS (and to README's Layout)"


def test_modules_import_only_lower_layers():
    imports = {p.stem: project_imports(p) for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    assert violations(imports, layer_of()) == []


@pytest.mark.parametrize(
    ("imports", "expected"),
    [
        ({"parallel": {"evaluate"}, "evaluate": {"parallel"}}, "evaluate (layer 5) imports parallel (layer 6)"),
        ({"parallel": {"sweep"}}, "parallel imports the command-line module sweep"),
        ({"rollout": {"rollout", "recording"}}, "rollout (layer 4) imports recording (layer 5)"),
    ],
)
def test_a_cycle_or_an_upward_import_is_caught(imports, expected):
    """Mutations: the cycle sweep <-> parallel that once existed, and an upward import."""
    assert expected in violations(imports, layer_of())


def test_function_level_imports_count(tmp_path):
    src = tmp_path / "m.py"
    src.write_text("def f():\n    from harness.sweep import evaluate\n    import harness.plot\n")
    assert project_imports(src) == {"sweep", "plot"}
