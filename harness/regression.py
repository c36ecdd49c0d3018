"""Result regression check of the embedded checkpoints: ``python -m harness.regression``.

A small fixed sweep (3 targets × 6 episodes per env, fixed seeds) of the embedded checkpoints;
its normalised means are compared with the values committed in
``results/reference/regression.json``. A cell fails when its mean drops by more than
``max(3 standard errors of the committed cell, 3 points)``: on the same machine and versions
the sweep is deterministic, and on another machine floating-point differences can send an
episode down another trajectory, so the mean then varies like a fresh sample of its episodes
(3 standard errors: about one false alarm in a thousand cells).

    python -m harness.regression            # check (exit 1 on a drop)
    python -m harness.regression --write    # rewrite the committed reference values
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from harness.checkpoints import embedded_names, load_checkpoint
from harness.cli import Parser
from harness.cli import run as run_command
from harness.envs import resolve_env
from harness.errors import HarnessError
from harness.evaluate import evaluate

REFERENCE = Path(__file__).resolve().parent.parent / "results" / "reference" / "regression.json"
EPISODES = 6
SEED = 1000
#: target returns per env: low, middle and high inside each embedded dataset's range
TARGETS = {
    "hopper": [800.0, 2000.0, 3600.0],
    "walker2d": [1000.0, 2500.0, 4500.0],
    "halfcheetah": [3000.0, 7000.0, 12000.0],
}
MIN_TOLERANCE = 3.0


@functools.lru_cache(maxsize=2)
def run(precision: str = "fp32") -> dict[str, dict[str, Any]]:
    """The fixed sweep: ``{"env/target": {"mean", "std", "n", "scores"}}`` in normalised points.

    Cached per precision within a process (the fp32 run serves both the regression check and
    the bf16-against-fp32 test).
    """
    cells = {}
    for env_name, targets in TARGETS.items():
        env = resolve_env(env_name)
        df = evaluate(load_checkpoint(env_name), env, targets, episodes=EPISODES, seed=SEED, precision=precision)
        for target, cell in df.groupby("target"):
            scores = cell.sort_values("episode")["normalized_score"].to_numpy()
            cells[f"{env_name}/{target:.0f}"] = {
                "mean": float(scores.mean()),
                "std": float(scores.std(ddof=1)),
                "n": int(scores.size),
                "scores": [float(x) for x in scores],
            }
    return cells


def compare(reference: dict[str, dict[str, float]], measured: dict[str, dict[str, float]]) -> list[str]:
    """Lines describing each cell; those starting with ``FAIL`` dropped beyond tolerance."""
    lines = []
    for key, ref in reference.items():
        got = measured[key]
        tol = max(3.0 * ref["std"] / np.sqrt(ref["n"]), MIN_TOLERANCE)
        status = "FAIL" if got["mean"] < ref["mean"] - tol else "ok"
        lines.append(f"{status:4} {key:18} reference {ref['mean']:6.1f}  now {got['mean']:6.1f}  tolerance {tol:4.1f}")
    return lines


def compare_precisions(fp32: dict[str, dict[str, Any]], other: dict[str, dict[str, Any]]) -> list[str]:
    """Lines per cell; ``FAIL`` when the two means differ by more than the episode-to-episode CI.

    The CI half-width is ``1.96 * sqrt(s1**2 / n + s2**2 / n)`` of the two cells' episode
    scores (at least 1 point: cells whose episodes all score alike would otherwise demand
    bit-equal returns, which bf16 does not promise).
    """
    lines = []
    for key, a in fp32.items():
        b = other[key]
        half = max(1.96 * np.sqrt(a["std"] ** 2 / a["n"] + b["std"] ** 2 / b["n"]), 1.0)
        diff = b["mean"] - a["mean"]
        status = "FAIL" if abs(diff) > half else "ok"
        lines.append(
            f"{status:4} {key:18} fp32 {a['mean']:6.1f}  other {b['mean']:6.1f}  diff {diff:+5.1f}  CI ±{half:4.1f}"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    p = Parser(prog="python -m harness.regression", description=__doc__.split("\n\n")[0])
    p.add_argument("--write", action="store_true", help="rewrite results/reference/regression.json")
    args = p.parse_args(argv)
    return run_command(lambda: _check(args.write))


def _check(write: bool) -> int:
    missing = [e for e in TARGETS if e not in embedded_names()]
    if missing:
        raise HarnessError(f"no embedded checkpoint for {', '.join(missing)}; reinstall the package (pip install -e .)")
    measured = run()
    if write:
        REFERENCE.parent.mkdir(parents=True, exist_ok=True)
        REFERENCE.write_text(json.dumps({"episodes": EPISODES, "seed": SEED, "cells": measured}, indent=2) + "\n")
        print(f"wrote {REFERENCE}")
        return 0
    lines = compare(json.loads(REFERENCE.read_text())["cells"], measured)
    print("\n".join(lines))
    return 1 if any(line.startswith("FAIL") for line in lines) else 0


if __name__ == "__main__":
    sys.exit(main())
