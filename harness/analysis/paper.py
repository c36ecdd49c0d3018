"""The paper's Table 2 beside ours, from sweep folders: our mean normalised score with its 95% CI,
the paper's DT (Chen et al. 2021, Table 2) and CORL's DT for the checkpoint's dataset name.

Used by ``harness paper`` (the whole protocol) and ``benchmarks/tools/paper_table.py`` (existing sweeps).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from harness.core.provenance import machine_line

PUBLISHED = Path(__file__).resolve().parents[1] / "resources" / "published_scores.json"


def published() -> dict:
    """``{"paper_targets": {env: [high, low]}, "paper_dt": {dataset: [mean, spread]}, "corl_dt": {...}}``."""
    return json.loads(PUBLISHED.read_text())


def table(folders: list[Path], root: Path | None = None) -> pd.DataFrame:
    """One row per (env, checkpoint, target) of the sweep folders (the columns of ``table.csv``)."""
    pub = published()
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
                    "sweep": str(
                        folder.relative_to(root) if root is not None and folder.is_relative_to(root) else folder
                    ),
                }
            )
    return pd.DataFrame(rows)


def markdown(df: pd.DataFrame) -> str:
    """``table.md``: the rows as a Markdown table."""
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
