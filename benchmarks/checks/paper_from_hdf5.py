"""``harness paper`` on exported D4RL files against the path the paper's rows were made with.

For each parquet dataset (the tutorial's schema, named ``<env>-<kind>.parquet`` as
``harness collect --recipe d4rl`` names them):

1. export it as a D4RL file, ``OUT/d4rl/<env>_<kind>-v2.hdf5`` (``OfflineDataset.to_d4rl_hdf5``,
   what ``harness collect --out x.hdf5`` writes);
2. today's path, through the real commands: ``harness train --data X.parquet`` then ``harness
   sweep --checkpoint ENV=... --targets HIGH LOW`` at the paper's targets, then the table as
   ``benchmarks/tools/paper_table.py`` makes it;
3. the new path: one ``harness paper OUT/d4rl`` with the same hyperparameters;
4. compares, bit for bit: every weight of the two checkpoints, every episode row (return, length,
   termination) of the two sweeps, and the two tables' numbers.

Writes ``OUT/comparison.json`` (machine, versions, commands, what differed) and prints it; exit 1
if anything differs. Run on our own D4RL-recipe data:

    python -m benchmarks.checks.paper_from_hdf5 runs/d4rl/hopper-medium.parquet --steps 10000 --bf16 \\
        --episodes 50 --seed 100 --out runs/paper-from-hdf5

The training is the cost (see the manual's "Reproducing the paper" page); ``--steps``, ``--threads``
and ``--episodes`` scale it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import torch
from safetensors.torch import load_file

from harness.analysis.paper import published, table
from harness.core.provenance import machine, machine_line, versions
from harness.io.data import OfflineDataset

ROWS = ["env", "target", "episode", "seed", "return", "length", "terminated", "truncated", "status"]
SCORES = ["dataset", "target", "episodes", "score_mean", "score_ci_low", "score_ci_high"]


def harness(*args: str, log: list[list[str]]) -> None:
    """Run ``python -m harness.commands.main ARGS`` (the ``harness`` console script), failing loudly."""
    cmd = [sys.executable, "-m", "harness.commands.main", *args]
    log.append(["harness", *args])
    print("$", " ".join(log[-1]), flush=True)
    subprocess.run(cmd, check=True, env=os.environ | {"PYTHONUNBUFFERED": "1"})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data", nargs="+", type=Path, help="parquet files named <env>-<kind>.parquet")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--steps", type=int, default=10_000)
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--seed", type=int, default=100)
    a = p.parse_args(argv)
    started = time.time()
    targets = published()["paper_targets"]
    d4rl = a.out / "d4rl"
    d4rl.mkdir(parents=True, exist_ok=True)
    commands: list[list[str]] = []
    extra = ["--bf16"] if a.bf16 else []
    today = []
    names = []
    for src in a.data:
        name = src.stem
        env = name.split("-")[0]
        names.append((name, env))
        OfflineDataset.from_parquet(src).to_d4rl_hdf5(d4rl / f"{name.replace('-', '_')}-v2.hdf5")
        ckpt = a.out / "today" / name / "checkpoint"
        sweep = a.out / "today" / name / "sweep"
        if not (ckpt / "model.safetensors").is_file():
            harness(
                "train",
                "--data",
                str(src),
                "--env",
                env,
                "--out",
                str(ckpt),
                "--steps",
                str(a.steps),
                "--warmup-ratio",
                "0.1",
                "--threads",
                str(a.threads),
                "--name",
                name,
                *extra,
                log=commands,
            )
        if not (sweep / "summary.csv").is_file():
            harness(
                "sweep",
                "--envs",
                env,
                "--checkpoint",
                f"{env}={ckpt}",
                "--targets",
                *[str(t) for t in targets[env]],
                "--episodes",
                str(a.episodes),
                "--seed",
                str(a.seed),
                "--out",
                str(sweep),
                "--no-progress",
                log=commands,
            )
        today.append(sweep.resolve())
    new = a.out / "paper"
    harness(
        "paper",
        str(d4rl),
        "--out",
        str(new),
        "--steps",
        str(a.steps),
        "--warmup-steps",
        str(a.steps // 10),
        "--threads",
        str(a.threads),
        "--episodes",
        str(a.episodes),
        "--seed",
        str(a.seed),
        *extra,
        log=commands,
    )

    report: dict = {
        "machine": machine(),
        "machine_line": machine_line(machine()),
        "versions": versions(),
        "commands": [" ".join(c) for c in commands],
        "datasets": {},
    }
    same = True
    for name, _env in names:
        wa = load_file(a.out / "today" / name / "checkpoint" / "model.safetensors")
        wb = load_file(new / name / "checkpoint" / "model.safetensors")
        weights_differ = sorted(k for k in wa if k not in wb or not torch.equal(wa[k], wb[k]))
        ra = pd.read_csv(a.out / "today" / name / "sweep" / "episodes.csv")[ROWS]
        rb = pd.read_csv(new / name / "sweep" / "episodes.csv")[ROWS]
        ra, rb = (r.sort_values(["target", "episode"]).reset_index(drop=True) for r in (ra, rb))
        rows_differ = int((ra != rb).any(axis=1).sum()) if ra.shape == rb.shape else max(len(ra), len(rb))
        report["datasets"][name] = {
            "tensors": len(wa),
            "tensors_differ": weights_differ,
            "episodes": len(ra),
            "episodes_differ": rows_differ,
        }
        same &= not weights_differ and rows_differ == 0
    ta = table(today)[SCORES].sort_values(["dataset", "target"]).reset_index(drop=True)
    tb = pd.read_csv(new / "table.csv")[SCORES].sort_values(["dataset", "target"]).reset_index(drop=True)
    report["table"] = ta.to_dict(orient="records")
    report["table_equal"] = bool(ta.equals(tb))
    same &= report["table_equal"]
    report["same"] = bool(same)
    report["elapsed_s"] = round(time.time() - started, 1)
    (a.out / "comparison.json").write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps({k: report[k] for k in ("datasets", "table_equal", "same", "elapsed_s")}, indent=1))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
