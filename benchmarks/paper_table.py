"""The paper's Table 2 rows beside ours: ``python benchmarks/paper_table.py SWEEP...``.

Each SWEEP is a folder written by ``python -m harness.sweep`` at the paper's targets (hopper 3600
and 1800, walker2d 5000 and 2500, halfcheetah 12000 and 6000), many episodes each. For every
(env, checkpoint, target) cell: our mean normalised score with its 95% bootstrap CI (from
``summary.csv``), the number of episodes, the paper's DT (Chen et al. 2021, Table 2; its
protocol reports the higher target) and CORL's DT for the checkpoint's dataset name, and our
difference from the paper. Writes ``results/paper/table.csv`` and ``table.md``.

    python -m harness.sweep --envs halfcheetah --checkpoint halfcheetah=halfcheetah-medium-replay \\
        --targets 12000 6000 --episodes 50 --seed 100 --out results/paper/halfcheetah-medium-replay
    python benchmarks/paper_table.py results/paper/halfcheetah-medium-replay
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

from harness.core.provenance import machine_line

ROOT = Path(__file__).resolve().parents[1]
PUBLISHED = ROOT / "harness" / "resources" / "published_scores.json"
OUT = ROOT / "results" / "paper"


def table(folders: list[Path]) -> pd.DataFrame:
    pub = json.loads(PUBLISHED.read_text())
    rows = []
    for folder in folders:
        summary = pd.read_csv(folder / "summary.csv")
        meta = json.loads((folder / "metadata.json").read_text())
        names = {c["label"]: (c.get("dataset") or {}).get("name") for c in meta["checkpoints"]}
        for r in summary.itertuples(index=False):
            dataset = names.get(r.checkpoint) or r.checkpoint
            paper = pub["paper_dt"].get(dataset)
            rows.append(
                {
                    "env": r.env,
                    "checkpoint": r.checkpoint,
                    "dataset": dataset,
                    "target": r.target,
                    "episodes": r.n,
                    "failed": r.n_failed,
                    "score_mean": round(r.score_mean, 1),
                    "score_ci_low": round(r.score_ci_low, 1),
                    "score_ci_high": round(r.score_ci_high, 1),
                    "paper_dt": paper[0] if paper else None,
                    "paper_spread": paper[1] if paper else None,
                    "corl_dt": pub["corl_dt"].get(dataset),
                    "diff_vs_paper": round(r.score_mean - paper[0], 1) if paper else None,
                    "paper_target": r.target == max(pub["paper_targets"].get(r.env, [r.target])),
                    "machine": machine_line(meta.get("machine")),
                    "sweep": str(folder.relative_to(ROOT) if folder.is_relative_to(ROOT) else folder),
                }
            )
    return pd.DataFrame(rows)


def markdown(df: pd.DataFrame) -> str:
    lines = [
        "| dataset | target | ours (95% CI) | episodes | paper DT | CORL DT | ours - paper |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in df.itertuples(index=False):
        paper = f"{r.paper_dt} ± {r.paper_spread}" if r.paper_dt is not None else "-"
        star = " (paper's target)" if r.paper_target else ""
        diff = f"{r.diff_vs_paper:+.1f}" if r.diff_vs_paper is not None else "-"
        lines.append(
            f"| {r.dataset} | {r.target:.0f}{star} | {r.score_mean:.1f} ({r.score_ci_low:.1f} … {r.score_ci_high:.1f}) "
            f"| {r.episodes} | {paper} | {r.corl_dt if r.corl_dt is not None else '-'} | {diff} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    folders = [Path(a).resolve() for a in argv]
    if not folders or not all((f / "summary.csv").is_file() for f in folders):
        print("pass sweep folders (each with summary.csv) written at the paper's targets", file=sys.stderr)
        return 2
    df = table(folders)
    OUT.mkdir(parents=True, exist_ok=True)
    df.to_csv(OUT / "table.csv", index=False)
    (OUT / "table.md").write_text(markdown(df))
    print(markdown(df))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
