"""Why do some halfcheetah episodes get stuck? Replays the low-return ones and measures the pose.

Runs a halfcheetah checkpoint (``--checkpoint``, default the embedded one) at ``--target`` for
``--episodes`` episodes (seeds 500+k), then replays every episode below ``--below`` return in
Gymnasium with its recorded actions and reports the root pitch angle (``qpos[2]``, radians; 0 =
level, beyond pi/2 = on its back), the forward velocity over the last 500 steps and how much the
actions still vary there (std per dimension, averaged). Writes
``results/diagnostics/stuck_halfcheetah-<weights fingerprint>.json``, so the diagnosis of a
replaced checkpoint stays beside the new one's.

    python -m benchmarks.checks.stuck_episodes [--checkpoint halfcheetah] [--target 10000] [--episodes 30]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from harness.core.provenance import machine, versions
from harness.engine.policy import DTPolicy
from harness.engine.rollout import EpisodeSpec, run_episodes
from harness.io.checkpoints import load_checkpoint
from harness.world.envs import quiet_construction

OUT = Path(__file__).resolve().parents[2] / "results" / "diagnostics"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default="halfcheetah", help="embedded name, folder or Hub id")
    p.add_argument("--target", type=float, default=10000.0)
    p.add_argument("--episodes", type=int, default=30)
    p.add_argument("--below", type=float, default=2000.0)
    args = p.parse_args()
    torch.set_num_threads(2)
    ckpt = load_checkpoint(args.checkpoint)
    policy = DTPolicy(ckpt)
    specs = [EpisodeSpec(args.target, 500 + k, k) for k in range(args.episodes)]
    results = run_episodes(policy, "HalfCheetah-v4", specs, args.episodes, record_actions=True)
    stuck = []
    for r in results:
        if r.ret >= args.below:
            continue
        with quiet_construction():
            env = gym.make("HalfCheetah-v4")
        env.reset(seed=r.spec.seed)
        pitch, speed = [], []
        for a in r.actions:
            obs, *_ = env.step(a)
            pitch.append(float(env.unwrapped.data.qpos[2]))
            speed.append(float(obs[8]))
        pitch_a = np.array(pitch)
        over = np.flatnonzero(np.abs(pitch_a) > np.pi / 2)
        stuck.append(
            {
                "seed": r.spec.seed,
                "return": r.ret,
                "pitch_at_100_300_999": [pitch[100], pitch[300], pitch[-1]],
                "first_step_beyond_pi_2": int(over[0]) if len(over) else None,
                "forward_velocity_last_500": float(np.mean(speed[-500:])),
                "action_std_last_500": float(r.actions[-500:].std(axis=0).mean()),
                "action_std_first_500": float(r.actions[:500].std(axis=0).mean()),
            }
        )
    report = {
        "command": "python -m benchmarks.checks.stuck_episodes "
        f"--checkpoint {args.checkpoint} --target {args.target:.0f} "
        f"--episodes {args.episodes}",
        "checkpoint_fingerprint": ckpt.fingerprint(),
        "returns": sorted(round(r.ret, 1) for r in results),
        "stuck": stuck,
        "machine": machine(),
        "versions": versions(),
    }
    OUT.mkdir(parents=True, exist_ok=True)
    out = OUT / f"stuck_halfcheetah-{ckpt.fingerprint()}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{len(stuck)} of {len(results)} episodes below {args.below:.0f} return; wrote {out}")
    for s in stuck:
        print(s)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
