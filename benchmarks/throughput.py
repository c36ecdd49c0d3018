"""Env-steps per second of the harness against the tutorial loop, measured in one run.

Both run the same checkpoint (random init at the Hub checkpoints' size: hidden 128, 3 layers,
1 head, K 20) on HalfCheetah-v4, whose episodes always last 1000 steps, so that every method
does the same work per episode. The reference loop runs ``--reference-episodes`` episodes; the
harness runs ``max(num_envs, --min-episodes)`` episodes at each ``--num-envs``. Speeds are
reported as ratios against the reference measured in the same run (machines are noisy).

    python benchmarks/throughput.py                 # full: num_envs 1..256
    python benchmarks/throughput.py --quick         # a short check

Writes ``results/benchmarks/throughput.csv`` and ``throughput.json`` (machine, versions).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from transformers import DecisionTransformerConfig, DecisionTransformerModel
from transformers.utils import logging as hf_logging

from harness.checkpoints import load_checkpoint, save_checkpoint
from harness.policy import DTPolicy
from harness.reference import run_reference_episode
from harness.rollout import EpisodeSpec, run_episodes
from harness.sweep import _machine

ENV_ID = "HalfCheetah-v4"


def hub_size_checkpoint(folder: Path, seed: int = 0):
    """A random-init checkpoint of the published checkpoints' architecture."""
    torch.manual_seed(seed)
    cfg = DecisionTransformerConfig(state_dim=17, act_dim=6, hidden_size=128, n_layer=3, n_head=1, max_ep_len=1000)
    rng = np.random.default_rng(seed)
    save_checkpoint(
        DecisionTransformerModel(cfg),
        folder,
        state_mean=rng.normal(size=17) * 0.1,
        state_std=rng.uniform(0.5, 2.0, size=17),
        env_id=ENV_ID,
        context_length=20,
    )
    return load_checkpoint(str(folder))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="few episodes, num_envs 16 and 64 only")
    parser.add_argument("--num-envs", type=int, nargs="+", default=[1, 4, 16, 32, 64, 128, 256])
    parser.add_argument("--reference-episodes", type=int, default=3)
    parser.add_argument("--min-episodes", type=int, default=8)
    parser.add_argument("--out", type=Path, default=Path("results/benchmarks"))
    args = parser.parse_args(argv)
    if args.quick:
        args.num_envs, args.reference_episodes, args.min_episodes = [16, 64], 1, 16
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()

    with tempfile.TemporaryDirectory() as tmp:
        ckpt = hub_size_checkpoint(Path(tmp) / "ckpt")
    rows = []
    t0 = time.perf_counter()
    ref_steps = 0
    for k in range(args.reference_episodes):
        ref_steps += run_reference_episode(ckpt, ENV_ID, 6000.0, seed=k).length
    ref_rate = ref_steps / (time.perf_counter() - t0)
    rows.append(
        {
            "method": "reference",
            "num_envs": 1,
            "episodes": args.reference_episodes,
            "env_steps": ref_steps,
            "steps_per_s": ref_rate,
            "ratio_vs_reference": 1.0,
        }
    )
    print(f"reference: {ref_rate:,.0f} env-steps/s", file=sys.stderr)
    policy = DTPolicy(ckpt)
    for n in args.num_envs:
        episodes = [EpisodeSpec(6000.0, k, k) for k in range(max(n, args.min_episodes))]
        t0 = time.perf_counter()
        results = run_episodes(policy, ENV_ID, episodes, n)
        steps = sum(r.length for r in results)
        rate = steps / (time.perf_counter() - t0)
        rows.append(
            {
                "method": "harness",
                "num_envs": n,
                "episodes": len(episodes),
                "env_steps": steps,
                "steps_per_s": rate,
                "ratio_vs_reference": rate / ref_rate,
            }
        )
        print(f"harness num_envs={n}: {rate:,.0f} env-steps/s ({rate / ref_rate:.1f}x)", file=sys.stderr)

    df = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    name = "throughput_quick" if args.quick else "throughput"
    df.to_csv(args.out / f"{name}.csv", index=False)
    meta = {
        "command": " ".join(["python benchmarks/throughput.py", *(sys.argv[1:] if argv is None else argv)]),
        "env_id": ENV_ID,
        "model": ckpt.describe(),
        "machine": _machine(),
        "versions": {p: metadata.version(p) for p in ("torch", "transformers", "gymnasium", "mujoco", "numpy")}
        | {"python": platform.python_version()},
    }
    (args.out / f"{name}.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(df.to_string(index=False))
    print(markdown(df, meta))
    return 0


def markdown(df: pd.DataFrame, meta: dict) -> str:
    """The README's table: env-steps/s and ratio against the reference loop, per method and num_envs."""
    m = meta["machine"]
    lines = [
        f"{m['cpu']}, {m['cpu_count']} cores, {m['torch_threads']} torch thread(s); torch "
        f"{meta['versions']['torch']}, transformers {meta['versions']['transformers']}, "
        f"mujoco {meta['versions']['mujoco']}.",
        "",
        "| method | num_envs | env-steps/s | × reference loop |",
        "|---|---|---|---|",
    ]
    for r in df.itertuples():
        lines.append(f"| {r.method} | {r.num_envs} | {r.steps_per_s:,.0f} | {r.ratio_vs_reference:.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
