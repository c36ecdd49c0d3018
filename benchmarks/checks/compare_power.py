"""Does ``harness.commands.compare`` see a real drop, and only a real one?

The embedded walker2d at targets 2500 and 4500 (the issue's grid), ``--episodes`` each (16):

1. baseline: ``--num-envs 16``;
2. the same checkpoint with ``--num-envs 7``: must exit 0 (same rows: every difference 0);
3. ``actions-x0.95``: every action the policy takes multiplied by 0.95 after the tanh (a
   slightly weaker policy, as the issue states the mutation): must exit 1;
4. ``head-x0.95``: the action head (weights and bias of the last linear layer, before the tanh)
   scaled by 0.95: a milder mutation, since saturated actions hardly move.

With ``--power-episodes N`` (e.g. 64) it also runs the baseline and both mutants with N episodes
(seeds 0..N-1) and measures how often ``compare`` exits 1 on paired resamples of 16, 32, ... N
seeds (the same seeds drawn for both sides, as two sweeps with equal seeds are paired): the
power at each size, and the effect on all N episodes.

    python -m benchmarks.checks.compare_power [--power-episodes 64]   # writes results/benchmarks/compare_power/
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file

from harness.analysis.comparison import compare as compare_frames
from harness.analysis.comparison import pair_checkpoints
from harness.commands import compare, sweep
from harness.core.provenance import machine, versions
from harness.engine.policy import DTPolicy
from harness.io.checkpoints import EMBEDDED_DIR

OUT = Path(__file__).resolve().parents[2] / "results" / "benchmarks" / "compare_power"
HEAD = "predict_action.0"
TARGETS = ["2500", "4500"]


def scaled_checkpoint(folder: Path, factor: float) -> Path:
    """A copy of the embedded walker2d whose action head (pre-tanh) is multiplied by ``factor``."""
    shutil.copytree(EMBEDDED_DIR / "walker2d", folder)
    weights = load_file(folder / "model.safetensors")
    for name in (f"{HEAD}.weight", f"{HEAD}.bias"):
        weights[name] = weights[name] * factor
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    return folder


@contextmanager
def scaled_actions(factor: float):
    """Every action of every DTPolicy multiplied by ``factor`` (after the tanh) while inside."""
    act = DTPolicy.act

    def weaker(self: DTPolicy, *args, **kwargs) -> torch.Tensor:  # noqa: ANN002, ANN003
        return act(self, *args, **kwargs) * factor

    DTPolicy.act = weaker  # type: ignore[method-assign]
    try:
        yield
    finally:
        DTPolicy.act = act  # type: ignore[method-assign]


def run_sweeps(tmp: Path, episodes: int, names: list[str], suffix: str = "") -> dict[str, Path]:
    """Sweep folders of the named variants at ``episodes`` per target."""
    weak = tmp / "walker2d-head-x0.95"
    if not weak.exists():
        scaled_checkpoint(weak, 0.95)
    grid = ["--envs", "walker2d", "--targets", *TARGETS, "--episodes", str(episodes), "--no-progress", "--overwrite"]
    argv = {
        "baseline": [*grid, "--num-envs", "16"],
        "same-7-slots": [*grid, "--num-envs", "7"],
        "actions-x0.95": [*grid, "--num-envs", "16"],
        "head-x0.95": [*grid, "--num-envs", "16", "--checkpoint", f"walker2d={weak}"],
    }
    out = {}
    for name in names:
        folder = tmp / f"{name}{suffix}"
        if name == "actions-x0.95":
            with scaled_actions(0.95):
                assert sweep.main([*argv[name], "--out", str(folder)]) == 0
        else:
            assert sweep.main([*argv[name], "--out", str(folder)]) == 0
        out[name] = folder
    return out


def power(base: pd.DataFrame, cand: pd.DataFrame, sizes: list[int], resamples: int, seed: int = 0) -> dict:
    """Share of paired resamples (``n`` seeds drawn with replacement, the same for both) where
    ``compare`` finds a drop, per ``n``; plus the full-sample comparison."""
    rng = np.random.default_rng(seed)
    seeds = np.array(sorted(set(base["seed"])))
    rates = {}
    for n in sizes:
        hits = 0
        for _ in range(resamples):
            pick = rng.choice(seeds, n, replace=True)
            parts_b, parts_c = [], []
            for k, s in enumerate(pick):  # each draw becomes its own seed k, paired across the two
                parts_b.append(base[base["seed"] == s].assign(seed=k, episode=k))
                parts_c.append(cand[cand["seed"] == s].assign(seed=k, episode=k))
            b, c = pd.concat(parts_b), pd.concat(parts_c)
            table = compare_frames(b, c, pair_checkpoints(b, c, []), seed=int(rng.integers(1 << 30)))
            hits += bool((table["verdict"] == "drop").any())
        rates[str(n)] = hits / resamples
    full = compare_frames(base, cand, pair_checkpoints(base, cand, []))
    cols = ["level", "target", "baseline_mean", "candidate_mean", "diff", "diff_ci_low", "diff_ci_high", "verdict"]
    return {"power": rates, "full_sample": full[cols].to_dict(orient="records")}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--episodes", type=int, default=16)
    p.add_argument("--power-episodes", type=int, default=0, help="also measure power on N-episode sweeps")
    p.add_argument("--resamples", type=int, default=200)
    args = p.parse_args()
    torch.set_num_threads(2)
    tmp = Path(tempfile.mkdtemp())
    OUT.mkdir(parents=True, exist_ok=True)
    names = ["baseline", "same-7-slots", "actions-x0.95", "head-x0.95"]
    runs = run_sweeps(tmp, args.episodes, names)
    codes = {
        name: compare.main([str(runs["baseline"]), str(runs[name]), "--out", str(OUT / f"compare-{name}")])
        for name in names[1:]
    }
    report: dict = {
        "command": "python -m benchmarks.checks.compare_power"
        + (f" --power-episodes {args.power_episodes}" if args.power_episodes else ""),
        "episodes": args.episodes,
        "exit_codes": codes,
        "expected": {"same-7-slots": 0, "actions-x0.95": 1},
    }
    if args.power_episodes:
        big = run_sweeps(tmp, args.power_episodes, ["baseline", "actions-x0.95", "head-x0.95"], "-big")
        base = pd.read_csv(big["baseline"] / "episodes.csv")
        sizes = sorted({16, 32, 48, args.power_episodes} & set(range(1, args.power_episodes + 1)))
        report["power_episodes"] = args.power_episodes
        report["resamples"] = args.resamples
        for name in ("actions-x0.95", "head-x0.95"):
            cand = pd.read_csv(big[name] / "episodes.csv")
            report[name] = power(base, cand, sizes, args.resamples)
    report |= {"machine": machine(), "versions": versions()}
    (OUT / "compare_power.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k not in ("machine", "versions")}, indent=2))
    shutil.rmtree(tmp)
    return 0 if all(codes[k] == v for k, v in report["expected"].items()) else 1


if __name__ == "__main__":
    sys.exit(main())
