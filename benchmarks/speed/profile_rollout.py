"""Where a rollout's time goes: cProfile of one ``run_episodes`` call, grouped.

Embedded hopper by default, ``--episodes`` episodes at one target on as many slots, fp32, torch on
``--threads`` threads (the issue's setup: 48 episodes, 48 slots, 2 threads). Groups (cumulative
time of the call that enters each): the forward pass (``FastActionHead.__call__``), the simulator
(the slots' ``step``), resets (the slots' ``reset``), and the rest of the loop (context buffers,
bookkeeping). Also MuJoCo's ``mj_step`` alone inside the simulator. Writes
``results/benchmarks/profile_rollout.json``.

    python -m benchmarks.speed.profile_rollout [--env hopper] [--episodes 48] [--threads 2]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
from pathlib import Path

import torch

from harness.core.provenance import machine, machine_line, versions
from harness.engine.policy import DTPolicy
from harness.engine.rollout import EpisodeSpec, run_episodes
from harness.io.checkpoints import load_checkpoint
from harness.world.envs import resolve_env

OUT = Path(__file__).resolve().parents[2] / "results" / "benchmarks" / "profile_rollout.json"


def cumulative(stats: pstats.Stats, file_part: str, name: str) -> float:
    """Cumulative seconds of the functions called ``name`` in files containing ``file_part``."""
    total = 0.0
    for (filename, _, func), (_, _, _, ct, _) in stats.stats.items():  # type: ignore[attr-defined]
        if func == name and file_part in filename:
            total += ct
    return total


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--env", default="hopper")
    p.add_argument("--target", type=float, default=3000.0)
    p.add_argument("--episodes", type=int, default=48)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    env = resolve_env(args.env)
    policy = DTPolicy(load_checkpoint(args.env))
    specs = [EpisodeSpec(args.target, k, k) for k in range(args.episodes)]
    run_episodes(policy, env.env_id, specs[:2], 2)  # warm-up (kernels, buffers)
    prof = cProfile.Profile()
    prof.enable()
    results = run_episodes(policy, env.env_id, specs, args.episodes)
    prof.disable()
    stats = pstats.Stats(prof)
    total = cumulative(stats, "rollout.py", "run_episodes")
    groups = {
        "forward (FastActionHead)": cumulative(stats, "fast.py", "__call__"),
        "simulator step (MujocoBatch.step)": cumulative(stats, "mjbatch.py", "step"),
        "  of which mj_step": sum(
            v[3]
            for k, v in stats.stats.items()  # type: ignore[attr-defined]
            if k[0] == "~" and "mj_step" in k[2]
        ),
        "resets": cumulative(stats, "mjbatch.py", "reset"),
    }
    groups["rest of the loop"] = total - sum(v for k, v in groups.items() if not k.startswith("  "))
    steps = sum(r.length for r in results)
    report = {
        "command": f"python -m benchmarks.speed.profile_rollout --env {args.env} --episodes {args.episodes} "
        f"--threads {args.threads}",
        "env_steps": steps,
        "profiled_s": total,
        "seconds": groups,
        "share": {k: v / total for k, v in groups.items()},
        "us_per_env_step": {k: 1e6 * v / steps for k, v in groups.items()},
        "machine": machine(),
        "versions": versions(),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(report, indent=2) + "\n")
    print(machine_line())
    print(f"{steps} env-steps in {total:.1f} s (under cProfile)")
    for k, v in groups.items():
        print(f"{k:36} {v:6.2f} s  {100 * v / total:5.1f}%  {1e6 * v / steps:6.0f} us/env-step")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
