"""``python -m benchmarks.checks NAME [ARGS]``: run entry NAME (a module of this folder; ``-`` or ``_``);
without NAME, list them."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def entries() -> list[str]:
    return sorted(p.stem for p in HERE.glob("*.py") if not p.stem.startswith("_"))


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        print("entries:", ", ".join(entries()))
        return 0
    name = argv[0].replace("-", "_")
    if name not in entries():
        print(f"error: benchmarks.checks has no entry {argv[0]!r}; use one of: {', '.join(entries())}", file=sys.stderr)
        return 2
    sys.argv = [f"benchmarks.checks.{name}", *argv[1:]]
    runpy.run_module(f"benchmarks.checks.{name}", run_name="__main__", alter_sys=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
