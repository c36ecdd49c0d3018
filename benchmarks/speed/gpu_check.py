"""GPU check: fp32 actions on CUDA against the CPU stock forward, then env-steps/s on a grid.

Run through ``benchmarks/speed/gpu_check.sh`` on a machine with an NVIDIA GPU (under 5 minutes):

1. exactness and determinism: the fast action head on CUDA (fp32, TF32 off) against the stock ``transformers``
   forward on CPU, on random padded windows of a Hub-size model; and the same episodes run on
   CUDA and on CPU (Hopper, 8 episodes: returns and lengths);
2. throughput: HalfCheetah-v4 episodes of ``--episode-steps`` steps, model on CUDA, for
   num_envs 64..4096 and env-workers 1..16 (``harness.world.vector.ShardedVectorEnv``), fp32 and bf16.

Writes ``<out>/gpu_check.csv`` (one row per grid point) and ``gpu_check.json`` (exactness,
device, versions).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from benchmarks.speed.throughput import hub_size_checkpoint


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num-envs", type=int, nargs="+", default=[64, 256, 1024, 4096])
    p.add_argument("--env-workers", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--episode-steps", type=int, default=100)
    p.add_argument("--out", type=Path, default=Path("results/benchmarks"))
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("error: no CUDA GPU is visible to torch; run this on a GPU machine", file=sys.stderr)
        return 2
    from transformers.utils import logging as hf_logging

    from harness.core.provenance import machine as _machine
    from harness.core.provenance import versions as _versions
    from harness.engine.context import Window
    from harness.engine.fast import FastActionHead
    from harness.engine.policy import DTPolicy
    from harness.engine.rollout import EpisodeSpec, run_episodes
    from harness.io.checkpoints import load_checkpoint

    hf_logging.set_verbosity_error()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    tmp = Path(tempfile.mkdtemp())
    ckpt_dir = hub_size_checkpoint(tmp / "ckpt")

    # 1. exactness on windows
    cpu = load_checkpoint(str(ckpt_dir))
    model = cpu.model
    g = torch.Generator().manual_seed(0)
    n, k = 256, 20
    mask = (torch.arange(k)[None, :] >= torch.randint(0, k, (n,), generator=g)[:, None]).long()
    m3 = mask[..., None].float()
    w = Window(
        torch.randn(n, k, 17, generator=g) * m3,
        torch.cat([torch.randn(n, k - 1, 6, generator=g), torch.zeros(n, 1, 6)], 1) * m3,
        torch.randn(n, k, 1, generator=g) * m3,
        torch.randint(0, 1000, (n, k), generator=g) * mask,
        mask,
    )
    with torch.inference_mode():
        ref = model(
            states=w.states,
            actions=w.actions,
            returns_to_go=w.returns_to_go,
            timesteps=w.timesteps,
            attention_mask=w.attention_mask,
        ).action_preds[:, -1]
    gpu_model = load_checkpoint(str(ckpt_dir), device="cuda").model
    gw = Window(*(x.cuda() for x in w))
    fast = FastActionHead(gpu_model)(gw).cpu()
    bf16 = FastActionHead(gpu_model, torch.bfloat16)(gw).cpu()
    exact = {
        "fp32_cuda_vs_cpu_stock_max_abs": float((fast - ref).abs().max()),
        "bf16_cuda_vs_cpu_stock_max_abs": float((bf16 - ref).abs().max()),
    }
    # same episodes on both devices (Hopper: the model's sizes differ, so a hopper-sized one)
    eps = [EpisodeSpec(t, 100 + i, i) for i, t in enumerate([500.0, 1500.0, 2500.0, 3500.0] * 2)]
    from transformers import DecisionTransformerConfig, DecisionTransformerModel

    from harness.io.checkpoints import save_checkpoint

    torch.manual_seed(1)
    hop = save_checkpoint(
        DecisionTransformerModel(
            DecisionTransformerConfig(state_dim=11, act_dim=3, hidden_size=128, n_layer=3, n_head=1)
        ),
        tmp / "hopper",
        state_mean=np.zeros(11),
        state_std=np.ones(11),
        env_id="Hopper-v4",
        context_length=20,
    )
    on_cpu = run_episodes(DTPolicy(load_checkpoint(str(hop))), "Hopper-v4", eps, 8)
    on_gpu = run_episodes(DTPolicy(load_checkpoint(str(hop), device="cuda"), device="cuda"), "Hopper-v4", eps, 8)
    exact["episodes_same_length"] = sum(a.length == b.length for a, b in zip(on_cpu, on_gpu, strict=True))
    exact["episodes_max_return_diff"] = max(abs(a.ret - b.ret) for a, b in zip(on_cpu, on_gpu, strict=True))
    exact["episodes"] = len(eps)

    # the GPU's own determinism: pinned numerics are a CPU guarantee; on CUDA the
    # harness states what holds with cuBLAS's fixed workspace (CUBLAS_WORKSPACE_CONFIG, set by
    # gpu_check.sh before CUDA starts) and deterministic algorithms: the same episodes twice, with
    # 8 and with 3 slots, and the start-up self-check (every position of a 256-window block)
    from harness.engine.policy import batch_invariance_check

    torch.use_deterministic_algorithms(True)
    gpol = DTPolicy(load_checkpoint(str(hop), device="cuda"), device="cuda")
    again = run_episodes(gpol, "Hopper-v4", eps, 8)
    fewer = run_episodes(gpol, "Hopper-v4", eps, 3)
    check = batch_invariance_check(gpol, probes=2)
    exact["gpu_determinism"] = {
        "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "same_episodes_run_twice_bit_equal": all(
            (a.ret, a.length) == (b.ret, b.length) for a, b in zip(on_gpu, again, strict=True)
        ),
        "same_episodes_8_vs_3_slots_bit_equal": all(
            (a.ret, a.length) == (b.ret, b.length) for a, b in zip(on_gpu, fewer, strict=True)
        ),
        "self_check": {"invariant": check.invariant, "differing": check.differing, "checked": check.checked},
    }
    torch.use_deterministic_algorithms(False)
    print(json.dumps(exact, indent=2), flush=True)

    # 2. throughput grid
    rows = []
    gpu = load_checkpoint(str(ckpt_dir), device="cuda")
    for precision in ("fp32", "bf16"):
        policy = DTPolicy(gpu, device="cuda", precision=precision)
        for num_envs in args.num_envs:
            for workers in args.env_workers:
                specs = [EpisodeSpec(6000.0, i, i) for i in range(num_envs)]
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                res = run_episodes(
                    policy, "HalfCheetah-v4", specs, num_envs, max_episode_steps=args.episode_steps, env_workers=workers
                )
                seconds = time.perf_counter() - t0
                steps = sum(r.length for r in res)
                rows.append(
                    {
                        "precision": precision,
                        "num_envs": num_envs,
                        "env_workers": workers,
                        "env_steps": steps,
                        "seconds": seconds,
                        "steps_per_s": steps / seconds,
                    }
                )
                print(
                    f"{precision} num_envs={num_envs:5} env_workers={workers:3}: {steps / seconds:10,.0f} env-steps/s",
                    flush=True,
                )
    args.out.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(args.out / "gpu_check.csv", index=False)
    meta = {"exactness": exact, "device": torch.cuda.get_device_name(0), "machine": _machine(), "versions": _versions()}
    (args.out / "gpu_check.json").write_text(json.dumps(meta, indent=2) + "\n")
    ok = exact["fp32_cuda_vs_cpu_stock_max_abs"] < 1e-4
    print("ok" if ok else "FAIL: fp32 CUDA actions differ from the CPU reference")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
