"""The manual's tables of "Claims across tasks and seeds", from the result files.

Rewrites the blocks between the ``begin ... table`` / ``end ... table`` markers of
``docs/claims.md``: ``select`` from ``results/reference/select.csv`` (``harness select``) and
``aggregate`` from ``results/claims/aggregate/aggregate.csv`` and ``improvement.csv``
(``harness aggregate``). ``tests/test_docs.py`` checks that the page is current.

    python -m benchmarks.tools.claims_tables
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from benchmarks.tools.doc_tables import fill, write

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "claims.md"


def _ci(v: float, lo: float, hi: float, fmt: str) -> str:
    return f"{v:{fmt}} [{lo:{fmt}}, {hi:{fmt}}]"


def select_table() -> str:
    t = pd.read_csv(ROOT / "results" / "reference" / "select.csv")
    lines = [
        "| env | selected target (of cells) | on seeds | selected-on score | held out on seeds | held-out score "
        "| optimism gap | picked and reported on the same episodes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in t.itertuples():
        lines.append(
            f"| {r.env} | {r.target:,.0f} ({r.candidates}) | {r.selection_seeds} | "
            f"{_ci(r.selected_score, r.selected_ci_low, r.selected_ci_high, '.1f')} | {r.report_seeds} | "
            f"{_ci(r.heldout_score, r.heldout_ci_low, r.heldout_ci_high, '.1f')} | "
            f"{_ci(r.optimism_gap, r.gap_ci_low, r.gap_ci_high, '+.1f')} | {r.same_episodes_best_score:.1f} |"
        )
    return "\n".join(lines)


def aggregate_table() -> str:
    folder = ROOT / "results" / "claims" / "aggregate"
    m = pd.read_csv(folder / "aggregate.csv")
    imp = pd.read_csv(folder / "improvement.csv")
    metrics = list(dict.fromkeys(m["metric"]))
    lines = ["| group (runs x tasks) | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
    for g, rows in m.groupby("group", sort=False):
        cells = [_ci(r.value, r.ci_low, r.ci_high, ".1f") for r in rows.set_index("metric").loc[metrics].itertuples()]
        lines.append(f"| {g} ({rows['runs'].iloc[0]} x {rows['tasks'].iloc[0]}) | " + " | ".join(cells) + " |")
    lines += ["", "| X | Y | P(X > Y) [95% CI] |", "|---|---|---|"]
    lines += [f"| {r.x} | {r.y} | {_ci(r.probability, r.ci_low, r.ci_high, '.2f')} |" for r in imp.itertuples()]
    return "\n".join(lines)


TABLES = {"select": select_table, "aggregate": aggregate_table}
"""The page's generated blocks (:mod:`doc_tables`)."""


def render(page: str) -> str:
    """``page`` with its tables rebuilt from the result files."""
    return fill(page, TABLES)


def main() -> int:
    return write(PAGE, TABLES)


if __name__ == "__main__":
    sys.exit(main())
