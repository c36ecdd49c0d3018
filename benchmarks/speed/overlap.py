"""Does overlapping the simulator with the forward pass pay? (``run_episodes(pipelines=...)``)

One embedded checkpoint (default halfcheetah: every episode lasts 1000 steps, so the batch stays
full), ``--episodes`` episodes at one target on ``--slots`` slots, fp32, in one process, the
configurations interleaved over ``--rounds`` rounds; wall time (overlap is about idle cores):

- ``1 pipeline, T threads``: today's loop, torch on T threads (T = the machine's cores);
- ``P pipelines x 1 thread``: P rollouts in threads with slots/P slots each, torch on 1 thread:
  one steps MuJoCo (GIL released) while another computes actions (GIL released);
- ``1 pipeline, 1 thread``: the loop on one core (the baseline a second core should beat).

Every configuration must return the same episodes bit for bit (checked). Writes
``results/benchmarks/overlap.json`` (machine, versions).

    python -m benchmarks.speed.overlap [--env halfcheetah] [--episodes 64] [--slots 64] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

from harness.core.provenance import machine, machine_line, versions
from harness.engine.policy import DTPolicy
from harness.engine.rollout import EpisodeSpec, run_episodes
from harness.io.checkpoints import load_checkpoint
from harness.world.envs import resolve_env

OUT = Path(__file__).resolve().parents[2] / "results" / "benchmarks" / "overlap.json"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--env", default="halfcheetah")
    p.add_argument("--target", type=float, default=6000.0)
    p.add_argument("--episodes", type=int, default=64)
    p.add_argument("--slots", type=int, default=64)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--pipelines", type=int, nargs="+", default=[2])
    args = p.parse_args()
    cores = os.cpu_count() or 1
    env = resolve_env(args.env)
    policy = DTPolicy(load_checkpoint(args.env))
    specs = [EpisodeSpec(args.target, 100 + k, k) for k in range(args.episodes)]
    configs = {f"1 pipeline, {cores} threads": (1, cores), "1 pipeline, 1 thread": (1, 1)}
    configs |= {f"{n} pipelines x 1 thread": (n, 1) for n in args.pipelines}
    times: dict[str, list[float]] = {name: [] for name in configs}
    returns: dict[str, list[float]] = {}
    steps = 0
    for _ in range(args.rounds):
        for name, (pipes, threads) in configs.items():
            torch.set_num_threads(threads)
            t0 = time.perf_counter()
            res = run_episodes(policy, env.env_id, specs, args.slots, pipelines=pipes)
            times[name].append(time.perf_counter() - t0)
            returns[name] = [r.ret for r in res]
            steps = sum(r.length for r in res)
    first = next(iter(returns.values()))
    same = all(r == first for r in returns.values())
    base = statistics.median(times["1 pipeline, 1 thread"])
    report = {
        "command": "python -m benchmarks.speed.overlap "
        + f"--env {args.env} --episodes {args.episodes} --slots {args.slots} --rounds {args.rounds}",
        "env_steps_per_run": steps,
        "median_s": {k: statistics.median(v) for k, v in times.items()},
        "all_s": times,
        "env_steps_per_s": {k: steps / statistics.median(v) for k, v in times.items()},
        "speedup_vs_1_thread": {k: base / statistics.median(v) for k, v in times.items()},
        "same_episodes": same,
        "machine": machine(),
        "versions": versions(),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(report, indent=2) + "\n")
    print(machine_line())
    for k in configs:
        print(
            f"{k:28} {report['median_s'][k]:7.2f} s  {report['env_steps_per_s'][k]:7.0f} env-steps/s  "
            f"{report['speedup_vs_1_thread'][k]:.2f}x"
        )
    print("same episodes:", same)
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
