"""The landing page, the manual and the generated pages stay true."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"

OLD_SECTIONS = {
    # every section of the README before the manual existed, and the page that holds it now
    "What it does": "index.md",
    "Embedded checkpoints": "embedded.md",
    "Regression gate": "regression-gate.md",
    "Speed": "speed.md",
    "Resuming and failures": "sweeps.md",
    "Scale-out": "scale-out.md",
    "From Python": "python-api.md",
    "Comparing sweeps": "comparing.md",
    "Many checkpoints of one training run": "comparing.md",
    "Output files": "output-files.md",
    "Videos": "output-files.md",
    "Checkpoint format": "checkpoints-and-data.md",
    "Offline data and training": "checkpoints-and-data.md",
    "D4RL-recipe data": "checkpoints-and-data.md",
    "The paper's experiment": "paper.md",
    "Evaluation semantics": "semantics.md",
    "Layout": "layout.md",
}


def test_readme_is_a_landing_page():
    text = README.read_text()
    lines = text.splitlines()
    assert len(lines) <= 200
    blocks = re.findall(r"```bash\n(.*?)\n```", text, flags=re.S)
    assert "pip install torch==2.13.0" in blocks[0] and "harness sweep --envs hopper walker2d halfcheetah" in blocks[0]
    assert "pip install torch==2.13.0" in blocks[1] and "python -m pytest" in blocks[1]
    assert "import harness" in text and "harness.evaluate(" in text
    for placeholder in ("TEST_MINUTES", "PINNED_COST"):
        assert placeholder not in text, f"README still holds the placeholder {placeholder}"


def test_readme_links_resolve():
    text = README.read_text()
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
        if not target.startswith("http"):
            assert (ROOT / target).exists(), target


def test_every_old_readme_section_has_a_home_in_the_manual():
    for heading, page in OLD_SECTIONS.items():
        text = (DOCS / page).read_text()
        assert heading.lower() in text.lower(), f"{heading!r} not in docs/{page}"


def test_the_command_line_reference_is_generated_from_the_parsers():
    from harness.commands.main import reference_markdown

    assert (DOCS / "cli.md").read_text() == reference_markdown(), "regenerate: harness --reference > docs/cli.md"


@pytest.mark.parametrize(
    "script, page",
    [("return_token_tables", "return-token.md"), ("shift_tables", "shift.md"), ("claims_tables", "claims.md")],
)
def test_generated_tables_hold_the_result_files_numbers(script, page):
    """Each page's generated blocks equal what its script builds from results/ now (the script fails on
    a page without its blocks)."""
    tables = importlib.import_module(f"benchmarks.tools.{script}")
    text = (DOCS / page).read_text()
    assert text == tables.render(text), f"python -m benchmarks.tools.{script}"
    with pytest.raises(ValueError, match="table block"):
        tables.render("a page without its tables")


def test_model_cards_are_current():
    cards = importlib.import_module("benchmarks.tools.model_cards")
    folders = sorted(p for p in cards.EMBEDDED.iterdir() if (p / "config.json").is_file())
    assert len(folders) >= 3
    for folder in folders:
        assert (folder / "README.md").read_text() == cards.card(folder), (
            f"python -m benchmarks.tools.model_cards ({folder.name})"
        )


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("mkdocs") is None and importlib.util.find_spec("mkdocs") is None, reason="docs extra")
def test_the_manual_builds_strictly(tmp_path):
    """``mkdocs build --strict``: a broken link, a missing page or a bad API reference fails."""
    out = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**__import__("os").environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert (tmp_path / "site" / "reproducibility" / "index.html").is_file()
