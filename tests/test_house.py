"""The house rules a newcomer relies on: no test code in the package, a short benchmarks folder
whose scripts import the installed package (no ``sys.path`` edits), and no reference anywhere to
a ``harness/...`` path that does not exist."""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def tracked(*suffixes: str) -> list[Path]:
    names = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    return [ROOT / n for n in names if n.endswith(suffixes) and (ROOT / n).is_file()]


def test_no_test_code_ships_in_the_package():
    for path in (ROOT / "harness").rglob("*"):
        if path.suffix in (".py", ".c", ".h"):
            text = path.read_text()
            for word in ("FX_MUTATE", "MUTANT", "read_wandb_run"):
                assert word not in text, f"{path.relative_to(ROOT)} holds {word}: test code belongs in tests/"


def test_benchmarks_is_short_and_imports_the_installed_package():
    entries = [p.name for p in (ROOT / "benchmarks").iterdir() if p.name != "__pycache__"]
    assert len(entries) <= 10, entries
    for path in (ROOT / "benchmarks").rglob("*.py"):
        assert "sys.path" not in path.read_text(), f"{path.relative_to(ROOT)} edits sys.path"


def test_every_harness_path_named_exists():
    pattern = re.compile(r"harness/[\w/]+\.(?:py|c|h|json)\b")
    missing = set()
    for path in tracked(".py", ".md", ".c", ".h", ".sh", ".toml"):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith(("results/", "CHANGELOG")):  # what a past run or release wrote stays as written
            continue
        for name in pattern.findall(path.read_text(errors="replace")):
            if not (ROOT / name).exists() and not any(ROOT.glob(name)):
                missing.add(f"{rel}: {name}")
    assert not missing, sorted(missing)
