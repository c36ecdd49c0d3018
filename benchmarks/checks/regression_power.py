"""Power and false-alarm rate of the regression gate's statistical mode (``harness.commands.regression``).

Runs the gate's fixed sweep (3 targets x 3 envs, ``--episodes`` per cell, seeds 1000+k) for:

- ``untouched``: the embedded checkpoints (the reference);
- ``rounding-<i>``: the same weights, each nudged by one float32 ulp in a random direction (what
  another CPU's rounding does to a forward pass: the same model, other last bits), ``--rounding``
  draws of it;
- ``head-x0.97``: every embedded checkpoint's action head (weights and bias of the last linear
  layer before the tanh) scaled by 0.97.

Then the gate's statistical check of each against ``untouched`` (what CI on another machine runs),
and, by resampling reset seeds within each cell (``--resamples`` paired samples of the gate's
size: the same seeds on both sides, as the gate pairs them), its false-alarm rate (untouched
against the ulp-nudged runs: the same policy on another CPU) and its power (untouched against
0.97). Writes ``results/benchmarks/regression_power/`` (episodes.csv, report.json).

    python -m benchmarks.checks.regression_power --episodes 48 --rounding 2
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

from harness.analysis.comparison import compare, pair_checkpoints
from harness.commands import regression
from harness.core.provenance import machine, versions
from harness.io.checkpoints import Checkpoint, load_checkpoint

OUT = Path(__file__).resolve().parents[2] / "results" / "benchmarks" / "regression_power"
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


def resampled_rate(a: pd.DataFrame, b: pd.DataFrame, n: int, resamples: int, seed: int, null: bool = False) -> float:
    """Fraction of ``resamples`` gate checks that find a drop, each on ``n`` reset seeds per cell
    drawn with replacement, the same seeds for ``a`` and ``b`` (the gate pairs episodes by seed:
    its reference and today's run use seeds 1000+k); draw k becomes seed k on both sides.

    ``null``: swap the two episodes of each drawn pair with probability 1/2, so both sides have
    the same distribution (what "the same policy, other rounding" means) while each pair keeps its
    correlation; the rate is then a false-alarm rate. Without it, a sample whose two sides differ
    by chance by nearly ``MIN_DROP`` in a cell is treated as a real difference."""
    rng = np.random.default_rng(seed)
    hits = 0
    cells = {
        (e, t): (ca.set_index("seed"), b[(b["env"] == e) & (b["target"] == t)].set_index("seed"))
        for (e, t), ca in a.groupby(["env", "target"])
    }
    for _ in range(resamples):
        xa, xb = [], []
        for ca, cb in cells.values():
            pick = rng.choice(np.intersect1d(ca.index, cb.index), n, replace=True)
            k = np.arange(n)
            sa = ca.loc[pick].reset_index(drop=True).assign(seed=k, episode=k)
            sb = cb.loc[pick].reset_index(drop=True).assign(seed=k, episode=k)
            if null:
                swap = rng.random(n) < 0.5
                for col in sa.columns:
                    x, y = sa[col].to_numpy(), sb[col].to_numpy()
                    sa[col], sb[col] = np.where(swap, y, x), np.where(swap, x, y)
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
    p.add_argument(
        "--reuse",
        action="store_true",
        help="analyse the episodes.csv an earlier run left in results/benchmarks/regression_power/ (the same "
        "checkpoints and --episodes/--rounding) instead of running the sweeps again",
    )
    args = p.parse_args()
    if args.rounding < 1:
        p.error("--rounding must be at least 1: the false-alarm rate is measured against the ulp-nudged runs")
    OUT.mkdir(parents=True, exist_ok=True)
    runs = {"untouched": ("untouched", 0), "head-x0.97": ("head", 0)}
    runs |= {f"rounding-{i}": ("rounding", i) for i in range(args.rounding)}
    if args.reuse:
        episodes = pd.read_csv(OUT / "episodes.csv")
        seconds = json.loads((OUT / "report.json").read_text())["seconds"]
        have = episodes.groupby("run")["episode"].max() + 1
        if set(have.index) != set(runs) or (have != args.episodes).any():
            p.error(f"{OUT / 'episodes.csv'} holds runs {dict(have)}; rerun without --reuse")
    else:
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
    rounding = [name for name in runs if name.startswith("rounding-")]
    means = episodes.groupby(["run", "env", "target"])["normalized_score"].mean().round(2)
    report = {
        "command": "python -m benchmarks.checks.regression_power "
        f"--episodes {args.episodes} --rounding {args.rounding} "
        f"--resamples {args.resamples} --gate-episodes {' '.join(map(str, args.gate_episodes))}"
        + (" --reuse" if args.reuse else ""),
        "gate_episodes": n,
        "min_drop": regression.MIN_DROP,
        "cell_means": {f"{r}/{e}/{t:.0f}": v for (r, e, t), v in means.items()},
        "statistical_checks": checks,
        "false_alarm_rate_resampled": {
            m: float(np.mean([resampled_rate(ref, by[r], m, args.resamples, 1, null=True) for r in rounding]))
            for m in args.gate_episodes
        },
        "rounding_drop_rate_resampled_as_measured": {
            m: float(np.mean([resampled_rate(ref, by[r], m, args.resamples, 3) for r in rounding]))
            for m in args.gate_episodes
        },
        "power_x0.97_resampled": {
            m: resampled_rate(ref, by["head-x0.97"], m, args.resamples, 2) for m in args.gate_episodes
        },
        "resamples": args.resamples,
        "seconds": seconds,
        "machine": machine(),
        "versions": versions(),
    }
    (OUT / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    keys = ("false_alarm_rate_resampled", "rounding_drop_rate_resampled_as_measured", "power_x0.97_resampled")
    print(json.dumps({k: report[k] for k in keys}))
    print(json.dumps({k: v["failed"] for k, v in checks.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
