"""Power and false-alarm rate of the regression gate's statistical mode (``harness.regression``).

Runs the gate's fixed sweep (3 targets x 3 envs, ``--episodes`` per cell, seeds 1000+k) for:

- ``untouched``: the embedded checkpoints (the reference);
- ``rounding-<i>``: the same weights, each nudged by one float32 ulp in a random direction (what
  another CPU's rounding does to a forward pass: the same model, other last bits), ``--rounding``
  draws of it;
- ``head-x0.97``: every embedded checkpoint's action head (weights and bias of the last linear
  layer before the tanh) scaled by 0.97.

Then the gate's statistical check of each against ``untouched`` (what CI on another machine runs),
and, by resampling episodes within each cell (``--resamples`` pairs of samples of the gate's
size), its false-alarm rate (two samples of the untouched policy) and its power (untouched
against 0.97). Writes ``results/benchmarks/regression_power/`` (episodes.csv, report.json).

    python benchmarks/regression_power.py --episodes 48 --rounding 2
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from harness import regression
from harness.checkpoints import Checkpoint, load_checkpoint
from harness.comparison import compare, pair_checkpoints
from harness.provenance import machine, versions

OUT = Path(__file__).resolve().parents[1] / "results" / "benchmarks" / "regression_power"
HEAD = "predict_action.0"


def variant(env: str, kind: str, seed: int = 0) -> Checkpoint:
    """The embedded checkpoint of ``env``, untouched, ulp-nudged or with its head scaled."""
    ckpt = load_checkpoint(env)
    if kind == "untouched":
        return ckpt
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in ckpt.model.named_parameters():
            if kind == "rounding":
                up = torch.rand(p.shape, generator=g) < 0.5
                inf = torch.full_like(p, float("inf"))
                p.copy_(torch.where(up, torch.nextafter(p, inf), torch.nextafter(p, -inf)))
            elif kind == "head" and name.startswith(HEAD):
                p.mul_(0.97)
    return ckpt


def resampled_rate(a: pd.DataFrame, b: pd.DataFrame, n: int, resamples: int, seed: int) -> float:
    """Fraction of ``resamples`` gate checks (n episodes per cell of each, drawn with replacement
    within each cell from ``a`` and from ``b``) that find a drop."""
    rng = np.random.default_rng(seed)
    hits = 0
    cells = [(e, t) for (e, t), _ in a.groupby(["env", "target"])]
    for _ in range(resamples):
        xa, xb = [], []
        for e, t in cells:
            ca = a[(a["env"] == e) & (a["target"] == t)]
            cb = b[(b["env"] == e) & (b["target"] == t)]
            sa = ca.iloc[rng.integers(0, len(ca), n)].assign(seed=np.arange(n), episode=np.arange(n))
            sb = cb.iloc[rng.integers(0, len(cb), n)].assign(seed=np.arange(n), episode=np.arange(n))
            xa.append(sa)
            xb.append(sb)
        base = pd.concat(xa).assign(checkpoint="reference", status="ok")
        cand = pd.concat(xb).assign(checkpoint="today", status="ok")
        table = compare(
            base, cand, pair_checkpoints(base, cand, []), regression.MIN_DROP, seed=int(rng.integers(1 << 30))
        )
        hits += bool((table["verdict"] == "drop").any())
    return hits / resamples


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--episodes", type=int, default=48, help="episodes per cell in each run")
    p.add_argument("--rounding", type=int, default=2, help="ulp-nudged runs")
    p.add_argument("--resamples", type=int, default=200)
    p.add_argument("--gate-episodes", type=int, nargs="+", default=[regression.EPISODES], help="gate sizes to measure")
    args = p.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    runs = {"untouched": ("untouched", 0), "head-x0.97": ("head", 0)}
    runs |= {f"rounding-{i}": ("rounding", i) for i in range(args.rounding)}
    frames, seconds = [], {}
    for name, (kind, seed) in runs.items():
        t0 = time.perf_counter()
        ckpts = {e: variant(e, kind, seed) for e in regression.TARGETS}
        rows = regression.run(checkpoints=ckpts, episodes=args.episodes)
        frames.append(rows.assign(run=name))
        seconds[name] = time.perf_counter() - t0
        print(f"{name}: {seconds[name]:.0f} s", file=sys.stderr)
    episodes = pd.concat(frames, ignore_index=True)
    episodes.to_csv(OUT / "episodes.csv", index=False)
    by = {name: episodes[episodes["run"] == name].drop(columns="run") for name in runs}
    ref = by["untouched"]
    n = regression.EPISODES
    first = ref[ref["episode"] < n]
    reference = regression.make_reference(first, {}, "benchmark")
    checks = {}
    for name in runs:
        if name == "untouched":
            continue
        today = by[name][by[name]["episode"] < n]
        mode, lines, failed = regression.check(reference, today, {}, mode="statistical")
        checks[name] = {"failed": failed, "lines": lines}
    means = episodes.groupby(["run", "env", "target"])["normalized_score"].mean().round(2)
    report = {
        "command": f"python benchmarks/regression_power.py --episodes {args.episodes} --rounding {args.rounding}",
        "gate_episodes": n,
        "min_drop": regression.MIN_DROP,
        "cell_means": {f"{r}/{e}/{t:.0f}": v for (r, e, t), v in means.items()},
        "statistical_checks": checks,
        "false_alarm_rate_resampled": {m: resampled_rate(ref, ref, m, args.resamples, 1) for m in args.gate_episodes},
        "power_x0.97_resampled": {
            m: resampled_rate(ref, by["head-x0.97"], m, args.resamples, 2) for m in args.gate_episodes
        },
        "resamples": args.resamples,
        "seconds": seconds,
        "machine": machine(),
        "versions": versions(),
    }
    (OUT / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: report[k] for k in ("false_alarm_rate_resampled", "power_x0.97_resampled")}))
    print(json.dumps({k: v["failed"] for k, v in checks.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
