"""The simulator alone: cost per env-step of each way of stepping N slots, against mj_step alone.

64 slots of one task (default Hopper-v4), uniform random actions in [-0.3, 0.3] (episodes last),
finished slots reset at once, in one process, interleaved over ``--rounds`` rounds; CPU time:

- ``mj_step``: MuJoCo's physics alone (``mj_step`` with the frame skip + ``mj_rnePostConstraint``
  on each ``MjData`` in a Python loop): the floor;
- ``gymnasium``: the slots as Gymnasium envs (``--simulator gymnasium``: wrappers, checker,
  GuardedEnv, per-env observation and reward);
- ``loop``: :class:`harness.world.mjbatch.MujocoBatch` on the mj_step loop (the stepper before
  ``mujoco.batch``), on one thread and on ``--threads``;
- ``mujoco.batch``: the same on MuJoCo's own batch (``mujoco.batch.Batch``: the default stepper),
  on one thread and on ``--threads`` (its C thread pool; wall time: threads only pay with free cores).

Then a shift sweep's wall time (``--shift-conditions`` 6 cells: mass 0.8/1/1.2 x friction 0.8/1.2 on
the embedded Hopper checkpoint, 3 targets x 4 episodes each), in interleaved rounds:

- ``per-condition, loop``: one batch of slots per condition on the mj_step loop (before);
- ``per-condition, mujoco.batch``: one batch per condition on MuJoCo's batch;
- ``one batch, mujoco.batch``: every condition in one batch (per-slot dynamics; the default).

The rows of all three must be equal (checked; the run fails otherwise).

    python -m benchmarks.speed.simulator [--env-id Hopper-v4] [--slots 64] [--threads 2] [--shift-rounds 3]

Writes ``results/benchmarks/simulator.csv``, ``simulator_shift.csv`` and ``simulator.json``
(machine, versions).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import mujoco
import numpy as np
import pandas as pd

from harness.core.provenance import machine, machine_line, versions
from harness.world.mjbatch import MujocoBatch
from harness.world.vector import SlotVectorEnv

OUT = Path(__file__).resolve().parents[2] / "results" / "benchmarks"


def drive(envs, steps: int, act_dim: int, rng: np.random.Generator) -> int:  # noqa: ANN001
    """Step all slots ``steps`` times, resetting finished ones; returns env steps."""
    n = envs.num_envs
    envs.reset(seed=list(range(n)))
    seed = n
    for _ in range(steps):
        _, _, term, trunc, _ = envs.step(rng.uniform(-0.3, 0.3, (n, act_dim)).astype(np.float32), np.ones(n, bool))
        done = term | trunc
        if done.any():
            seeds = [None] * n
            for i in np.flatnonzero(done):
                seeds[i], seed = seed, seed + 1
            envs.reset(seed=seeds, options={"reset_mask": done})
    return n * steps


def mj_alone(batch: MujocoBatch, steps: int, act_dim: int, rng: np.random.Generator) -> int:
    batch.reset(seed=list(range(batch.num_envs)))
    for _ in range(steps):
        acts = rng.uniform(-0.3, 0.3, (batch.num_envs, act_dim))
        for d, a in zip(batch.physics.data, acts, strict=True):
            d.ctrl[:] = a
            mujoco.mj_step(batch.model, d, nstep=batch.frame_skip)
            mujoco.mj_rnePostConstraint(batch.model, d)
    return batch.num_envs * steps


SHIFT_CELLS = ["mass=0.8,1,1.2", "friction=0.8,1.2"]
SHIFT_TARGETS = (1200.0, 2400.0, 3600.0)


def shift_sweep(mode: str, episodes: int) -> tuple[float, pd.DataFrame]:
    """One shift sweep in this process (wall seconds, rows); ``mode`` as in the module docstring."""
    from harness.engine.evaluate import evaluate
    from harness.io.checkpoints import load_checkpoint
    from harness.world.shift import parse_shifts

    ckpt = load_checkpoint("hopper")
    cells = parse_shifts(SHIFT_CELLS)
    os.environ["HARNESS_STEPPER"] = "loop" if mode.endswith("loop") else "mujoco.batch"
    t0 = time.perf_counter()
    if mode.startswith("per-condition"):
        rows = pd.concat([evaluate(ckpt, "hopper", SHIFT_TARGETS, episodes, shifts=[c]) for c in cells])
    else:
        rows = evaluate(ckpt, "hopper", SHIFT_TARGETS, episodes, shifts=cells)
    wall = time.perf_counter() - t0
    del os.environ["HARNESS_STEPPER"]
    key = ["shift", "target", "episode"]
    return wall, rows.sort_values(key).reset_index(drop=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--env-id", default="Hopper-v4")
    p.add_argument("--slots", type=int, default=64)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--shift-rounds", type=int, default=3, help="rounds of the shift sweep timing (0: skip it)")
    p.add_argument("--shift-episodes", type=int, default=4, help="episodes per target and condition")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    gym_envs = SlotVectorEnv(args.env_id, args.slots)
    act_dim = gym_envs.single_action_space.shape[0]
    loop = MujocoBatch(args.env_id, args.slots, stepper="loop")
    sims = {
        f"{stepper}{'' if t == 1 else f'-{t}-threads'}": MujocoBatch(
            args.env_id, args.slots, threads=t, stepper=stepper
        )
        for stepper in ("loop", "mujoco.batch")
        for t in (1, args.threads)
    }
    methods = {
        "mj_step": lambda rng: mj_alone(loop, args.steps, act_dim, rng),
        "gymnasium": lambda rng: drive(gym_envs, args.steps, act_dim, rng),
    } | {name: (lambda rng, sim=sim: drive(sim, args.steps, act_dim, rng)) for name, sim in sims.items()}
    rows = []
    for r in range(args.rounds):
        for name, fn in methods.items():
            c0, w0 = time.process_time(), time.perf_counter()
            steps = fn(np.random.default_rng(r))
            cpu, wall = time.process_time() - c0, time.perf_counter() - w0
            rows.append(
                {
                    "round": r,
                    "method": name,
                    "env_steps": steps,
                    "cpu_us_per_step": 1e6 * cpu / steps,
                    "wall_us_per_step": 1e6 * wall / steps,
                }
            )
    df = pd.DataFrame(rows).groupby("method", sort=False)[["cpu_us_per_step", "wall_us_per_step"]].median()
    floor = df.loc["mj_step", "cpu_us_per_step"]
    df["cpu_vs_mj_step"] = df["cpu_us_per_step"] / floor
    df["wall_vs_mj_step"] = df["wall_us_per_step"] / df.loc["mj_step", "wall_us_per_step"]
    df["cpu_vs_loop"] = df["cpu_us_per_step"] / df.loc["loop", "cpu_us_per_step"]
    print(df.round(2).to_string())
    print(f"machine: {machine_line()}")
    args.out.mkdir(parents=True, exist_ok=True)
    df.to_csv(args.out / "simulator.csv")
    shift_rows = []
    first: pd.DataFrame | None = None
    for r in range(args.shift_rounds):
        for mode in ("per-condition, loop", "per-condition, mujoco.batch", "one batch, mujoco.batch"):
            wall, rows = shift_sweep(mode, args.shift_episodes)
            cols = ["shift", "target", "episode", "return", "length", "status"]
            if first is None:
                first = rows[cols]
            elif not rows[cols].equals(first):
                raise SystemExit(f"shift sweep rows differ under {mode!r}: the one-batch path changed a result")
            shift_rows.append({"round": r, "mode": mode, "episodes": len(rows), "wall_s": wall})
    if shift_rows:
        sdf = pd.DataFrame(shift_rows).groupby("mode", sort=False)[["episodes", "wall_s"]].median()
        sdf["vs_before"] = sdf["wall_s"] / sdf.loc["per-condition, loop", "wall_s"]
        print(sdf.round(3).to_string())
        sdf.to_csv(args.out / "simulator_shift.csv")
    meta = {
        "command": "python -m benchmarks.speed.simulator " + " ".join(argv or []),
        "env_id": args.env_id,
        "slots": args.slots,
        "rounds": args.rounds,
        "threads": args.threads,
        "shift": {
            "cells": SHIFT_CELLS,
            "targets": SHIFT_TARGETS,
            "episodes": args.shift_episodes,
            "rounds": args.shift_rounds,
            "checkpoint": "hopper (embedded)",
        },
        "mujoco": mujoco.__version__,
        "machine": machine(),
        "versions": versions(),
    }
    (args.out / "simulator.json").write_text(json.dumps(meta, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
