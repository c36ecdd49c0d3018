"""The manual's tables of the embedded checkpoints' return conditioning, from the result files.

Rewrites the blocks between the ``begin ... table`` / ``end ... table`` markers of
``docs/return-token.md``: the calibration numbers from ``results/reference/calibration.csv`` and
the probe numbers from ``results/probe/<env>/probe.csv`` and ``probe_attention.csv``.
``tests/test_docs.py`` checks that the page is current.

    python -m benchmarks.tools.return_token_tables
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from benchmarks.tools.doc_tables import fill, write

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "return-token.md"
ENVS = ("hopper", "walker2d", "halfcheetah")


def _ci(r: pd.Series, name: str, digits: int) -> str:
    return f"{r[name]:.{digits}f} [{r[name + '_ci_low']:.{digits}f}, {r[name + '_ci_high']:.{digits}f}]"


def calibration_table() -> str:
    cal = pd.read_csv(ROOT / "results" / "reference" / "calibration.csv")
    lines = [
        "| env | rho (targets in range) | slope | tracking error | best score (at) | saturates from | stuck "
        "| above the data |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for _, r in cal.iterrows():
        above = r["above"] + (f", {_ci(r, 'above_ratio', 2)} of best" if r["above"] != "none" else "")
        lines.append(
            f"| {r['env']} | {_ci(r, 'rho', 2)} ({r['targets_in_range']}) | {_ci(r, 'slope', 2)} | "
            f"{_ci(r, 'tracking_error', 1)} | {_ci(r, 'best_score', 1)} ({r['best_target']:,.0f}) | "
            f"{r['saturation_target']:,.0f} | {r['stuck_share']:.1%} | {above} |"
        )
    return "\n".join(lines)


def probe_table() -> str:
    lines = [
        "| env | windows (source) | action change per 100 points [95% CI] | windows that never move | "
        "attention to return tokens by layer (head 0) |",
        "|---|---|---|---|---|",
    ]
    for env in ENVS:
        folder = ROOT / "results" / "probe" / env
        r = pd.read_csv(folder / "probe.csv").iloc[0]
        att = pd.read_csv(folder / "probe_attention.csv")
        layers = ", ".join(
            f"L{int(a['layer'])} {a['attention_to_returns']:.2f}" for _, a in att[att["head"] == 0].iterrows()
        )
        lines.append(
            f"| {env} | {int(r['windows'])} ({r['source']}) | {_ci(r, 'action_change', 3)} | "
            f"{r['frozen_share']:.0%} | {layers} |"
        )
    return "\n".join(lines)


TABLES = {"calibration": calibration_table, "probe": probe_table}
"""The page's generated blocks (:mod:`doc_tables`)."""


def render(page: str) -> str:
    """``page`` with its tables rebuilt from the result files."""
    return fill(page, TABLES)


def main() -> int:
    return write(PAGE, TABLES)


if __name__ == "__main__":
    sys.exit(main())
