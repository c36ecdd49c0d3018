"""The paper's Table 2 rows beside ours: ``python -m benchmarks.tools.paper_table SWEEP...``.

Each SWEEP is a folder written by ``python -m harness.sweep`` at the paper's targets (hopper 3600
and 1800, walker2d 5000 and 2500, halfcheetah 12000 and 6000), many episodes each. For every
(env, checkpoint, target) cell: our mean normalised score with its 95% bootstrap CI (from
``summary.csv``), the number of episodes, the paper's DT (Chen et al. 2021, Table 2; its
protocol reports the higher target) and CORL's DT for the checkpoint's dataset name, and our
difference from the paper. Writes ``results/paper/table.csv`` and ``table.md``.

    python -m harness.sweep --envs halfcheetah --checkpoint halfcheetah=halfcheetah-medium-replay \\
        --targets 12000 6000 --episodes 50 --seed 100 --out results/paper/halfcheetah-medium-replay
    python -m benchmarks.tools.paper_table results/paper/halfcheetah-medium-replay
"""

from __future__ import annotations

import sys
from pathlib import Path

from harness.analysis.paper import markdown, table

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "results" / "paper"


def main(argv: list[str]) -> int:
    folders = [Path(a).resolve() for a in argv]
    if not folders or not all((f / "summary.csv").is_file() for f in folders):
        print("pass sweep folders (each with summary.csv) written at the paper's targets", file=sys.stderr)
        return 2
    df = table(folders, ROOT)
    OUT.mkdir(parents=True, exist_ok=True)
    df.to_csv(OUT / "table.csv", index=False)
    (OUT / "table.md").write_text(markdown(df))
    print(markdown(df))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
