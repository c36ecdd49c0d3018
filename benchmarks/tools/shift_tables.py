"""The manual's tables of the embedded checkpoints under shift, from the result files.

Rewrites the block between the ``begin shift table`` / ``end shift table`` markers of
``docs/shift.md`` from ``results/shift/<axis>/robustness.csv`` and ``calibration.csv`` (made by
the commands on that page). ``tests/test_docs.py`` checks that the page is current.

    python -m benchmarks.tools.shift_tables
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from benchmarks.tools.doc_tables import fill, write

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "shift.md"
AXES = ("obs_noise", "act_noise", "mass", "friction", "gravity", "version")
ENVS = ("hopper", "walker2d", "halfcheetah")
READ = {"keep_default_na": False, "na_values": [""]}


def _ci(v: float, lo: float, hi: float, digits: int) -> str:
    return f"{v:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def shift_table() -> str:
    """One row per env x condition: score kept (pooled over targets), rho and slope in the data's range."""
    lines = [
        "| axis | env | condition | score kept [95% CI] | mean score | rho [95% CI] | slope [95% CI] |",
        "|---|---|---|---|---|---|---|",
    ]
    for axis in AXES:
        folder = ROOT / "results" / "shift" / axis
        if not (folder / "calibration.csv").is_file():
            continue
        cal = pd.read_csv(folder / "calibration.csv", **READ)
        rob = pd.read_csv(folder / "robustness.csv", **READ) if (folder / "robustness.csv").is_file() else None
        summary = pd.read_csv(folder / "summary.csv", **READ)
        for env in ENVS:
            for _, c in cal[cal["env"] == env].iterrows():
                shifted = c["shift"] != "none" or c["env_id"] != cal[cal["env"] == env]["env_id"].iloc[0]
                name = (c["env_id"] if axis == "version" else c["shift"]) if shifted else "unshifted"
                if axis == "version" and not shifted:
                    name = f"{c['env_id']} (base)"
                kept = "-"
                if shifted and rob is not None:
                    r = rob[(rob["env"] == env) & (rob["env_id"] == c["env_id"]) & (rob["shift"] == c["shift"])]
                    if len(r):
                        r = r.iloc[0]
                        kept = _ci(r["retained"], r["retained_ci_low"], r["retained_ci_high"], 2)
                at = (summary["env"] == env) & (summary["env_id"] == c["env_id"]) & (summary["shift"] == c["shift"])
                score = summary.loc[at, "score_mean"].mean()
                lines.append(
                    f"| {axis} | {env} | {name} | {kept} | {score:.1f} | "
                    f"{_ci(c['rho'], c['rho_ci_low'], c['rho_ci_high'], 2)} | "
                    f"{_ci(c['slope'], c['slope_ci_low'], c['slope_ci_high'], 2)} |"
                )
    return "\n".join(lines)


TABLES = {"shift": shift_table}
"""The page's generated blocks (:mod:`doc_tables`)."""


def render(page: str) -> str:
    """``page`` with its tables rebuilt from the result files."""
    return fill(page, TABLES)


def main() -> int:
    return write(PAGE, TABLES)


if __name__ == "__main__":
    sys.exit(main())
