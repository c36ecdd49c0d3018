"""The package's layering, shown by its folders: each subpackage is a layer, and each module imports
only modules of lower layers (function-level imports included), so there is no import cycle, and
no module imports a command (``harness.commands.*``) but the ``harness`` dispatcher.

The order is written once, here (:data:`LAYERS`); the manual's layout page (``docs/layout.md``)
is generated from it (:func:`layout_markdown`) and checked against it.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "harness"

LAYERS: list[tuple[str, str, list[list[str]]]] = [
    (
        "kernels",
        "the fixed-order fp32 kernels: C sources by operation, their build, their binding by name, torch ops",
        [["build", "binding"], ["fixedgemm"]],
    ),
    (
        "core",
        "names and errors, pinned numerics, provenance, statistics",
        [["errors", "schema", "provenance", "stats"], ["numerics"]],
    ),
    (
        "world",
        "shifts (noise, dynamics); env names, sizes and D4RL scores; the batched MuJoCo stepper; vector envs",
        [["shift"], ["envs"], ["mjbatch"], ["vector"]],
    ),
    (
        "io",
        "checkpoints (folder, Hub id, embedded name) and offline data; the sweep folder's log",
        [["data", "results"], ["checkpoints"], ["convert"]],
    ),
    (
        "engine",
        "the context window, the exact fast forward, the batched policy, the rollout, the tutorial's oracle",
        [["context"], ["fast"], ["policy", "reference"], ["rollout"], ["evaluate", "probe", "trace"]],
    ),
    (
        "analysis",
        "statistics tables, comparisons, figures, reports, aggregates and trackers, from the CSV files alone",
        [
            ["robustness"],
            ["summary", "calibration", "comparison", "figures", "paper"],
            ["aggregate", "report"],
            ["publish"],
        ],
    ),
    (
        "offline",
        "offline data making and training: behaviour agents, the D4RL recipe, the Trainer",
        [["behavior", "training"], ["recipe"]],
    ),
    (
        "running",
        "a whole sweep: validation, cells on joblib / Dask / Ray, videos, resume",
        [["recording", "parallel"], ["runner"]],
    ),
    (
        "commands",
        "the command line, thin: one module per subcommand, and the harness dispatcher",
        [
            ["cli"],
            ["sweep", "plot", "video", "collect", "train", "regression", "compare", "convert", "probe"]
            + ["aggregate", "select", "card", "log", "trace"],
            ["paper"],
            ["main"],
        ],
    ),
]
SHIMS = ["sweep", "plot", "video", "collect", "train", "regression", "compare", "convert"]
"""``harness/<cmd>.py``: ``python -m harness.<cmd>`` as before the subcommands; each imports its command only."""


def qualified(module: str, names: list[str]) -> set[str]:
    return {f"{module}.{n}" for n in names}


def project_imports(path: Path) -> set[str]:
    """``pkg.module`` names of the ``harness`` modules that ``path`` imports anywhere in its body."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "harness":
            parts = node.module.split(".")
            if len(parts) >= 3:
                found.add(".".join(parts[1:3]))
            elif len(parts) == 2:  # from harness.core import errors, stats
                found |= qualified(parts[1], [a.name for a in node.names])
        elif isinstance(node, ast.Import):
            for a in node.names:
                parts = a.name.split(".")
                if parts[0] == "harness" and len(parts) >= 3:
                    found.add(".".join(parts[1:3]))
    return found


def layer_of() -> dict[str, int]:
    rank, i = {}, 0
    for package, _, groups in LAYERS:
        for group in groups:
            rank |= {f"{package}.{m}": i for m in group}
            i += 1
    return rank


def violations(imports: dict[str, set[str]], rank: dict[str, int]) -> list[str]:
    out = []
    for module, deps in sorted(imports.items()):
        for dep in sorted(deps - {module}):
            if dep not in rank:
                out.append(f"{module} imports {dep}, which is in no layer")
            elif dep.startswith("commands.") and dep != "commands.cli" and module != "commands.main":
                out.append(f"{module} imports the command module {dep}")
            elif rank[dep] >= rank[module]:
                out.append(f"{module} imports {dep}, which is not below it")
    return out


def modules() -> dict[str, Path]:
    return {f"{p.parent.name}.{p.stem}": p for p in PACKAGE.glob("*/*.py") if p.stem != "__init__"}


def test_every_module_has_a_layer_and_its_folder_is_its_layer():
    assert set(modules()) == set(layer_of()), "add new modules to LAYERS (docs/layout.md is generated from it)"
    assert sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__") == sorted(SHIMS)


def test_modules_import_only_lower_layers():
    imports = {name: project_imports(path) for name, path in modules().items()}
    assert violations(imports, layer_of()) == []


def test_shims_only_run_their_command():
    for shim in SHIMS:
        assert project_imports(PACKAGE / f"{shim}.py") == {f"commands.{shim}"}


@pytest.mark.parametrize(
    ("imports", "expected"),
    [
        (
            {"running.parallel": {"engine.evaluate"}, "engine.evaluate": {"running.parallel"}},
            "engine.evaluate imports running.parallel, which is not below it",
        ),
        ({"running.parallel": {"commands.sweep"}}, "running.parallel imports the command module commands.sweep"),
        ({"core.numerics": {"engine.policy"}}, "core.numerics imports engine.policy, which is not below it"),
        ({"engine.rollout": {"engine.rollout", "running.recording"}}, "engine.rollout imports running.recording"),
        ({"engine.fast": {"engine.policy"}}, "engine.fast imports engine.policy, which is not below it"),
    ],
)
def test_a_cycle_or_an_upward_import_is_caught(imports, expected):
    """Mutations: the cycle sweep <-> parallel that once existed, and upward imports across folders."""
    assert any(v.startswith(expected) for v in violations(imports, layer_of()))


def layout_markdown() -> str:
    """The layout page of the manual, from :data:`LAYERS` (bottom layer first)."""
    lines = [
        "# Layout",
        "",
        "<!-- generated from tests/test_layers.py (LAYERS); the test fails when this page differs -->",
        "",
        "Each folder of `harness/` is a layer; a module imports only modules of the layers above it in",
        "this table (lower layers), and nothing of the library imports `harness.commands`. "
        "`tests/test_layers.py` enforces it.",
        "",
        "| layer | folder | holds | modules (in import order) |",
        "|---|---|---|---|",
    ]
    for i, (package, holds, groups) in enumerate(LAYERS):
        mods = " → ".join(", ".join(f"`{m}`" for m in g) for g in groups)
        lines.append(f"| {i} | `harness/{package}/` | {holds} | {mods} |")
    lines += [
        "",
        "The modules `harness/<command>.py` (sweep, plot, video, collect, train, regression, compare, convert) keep",
        "`python -m harness.<command>` working; each runs its command in `harness/commands/`.",
        "`benchmarks/` and `results/` sit beside the package: measurements as ratios within one run, with",
        "the machine named, and the committed outputs of the real commands.",
        "",
    ]
    return "\n".join(lines)


def test_the_manuals_layout_page_is_generated_from_the_layers():
    page = ROOT / "docs" / "layout.md"
    assert page.read_text() == layout_markdown(), "regenerate: python tests/test_layers.py > docs/layout.md"


if __name__ == "__main__":
    print(layout_markdown(), end="")
