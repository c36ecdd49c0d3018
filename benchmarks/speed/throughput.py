"""Env-steps per second: the tutorial loop, the lockstep design, and the harness, in one run.

All methods run the same checkpoint (random init at the Hub checkpoints' size: hidden 128,
3 layers, 1 head, K 20) on HalfCheetah-v4 with the same episodes (target 6000, seeds 0..E-1).
HalfCheetah never terminates, so every episode lasts ``--episode-steps`` steps (200 by default,
a time-limit override that keeps the whole sweep to minutes; the window is full after 20) and
every method does the same work per episode:

1. ``reference``: the tutorial loop (``harness/engine/reference.py``), one episode at a time;
2. ``lockstep``: today's batched peers (online-dt, torchrl): N episodes reset together, the full
   padded window through the stock ``transformers`` forward every step, finished episodes idle
   until the whole wave is done (``benchmarks/speed/lockstep.py``);
3. ``harness-stock``: the harness's rollout with the stock forward (isolates the fast path);
4. ``harness``: the harness as shipped (exact fast path, fp32: the fixed-order kernel under the
   default pinned numerics; on 2+ torch threads the rollout runs one pipeline per thread,
   ``harness.engine.rollout.auto_pipelines``);
5. ``harness-loop``: the same with the slots' physics on the ``mj_step`` loop
   (``HARNESS_STEPPER=loop``) instead of ``mujoco.batch``: what MuJoCo's own batch changes;
6. ``harness-native``: the same under ``--numerics native`` (MKL's own products): what the
   fixed-order kernel costs against the BLAS on this machine, measured beside it;
7. ``harness-bf16``: ``--precision bf16``.

Every measurement runs in a fresh subprocess (its peak RSS is its own). Ratios are against the
reference loop measured in the same run. The FLOP floor of a method is the floating-point work
per env-step of the computation it does (counted from the model config) over this machine's
matrix-multiply rate (MKL's default GEMM, hot in cache), measured at the model's largest GEMM
shape in the method's dtype by the worker itself, in bursts just before and just after its
rollout (this machine's speed drifts by tens of percent within a minute: a rate measured
elsewhere in the run would say more about the drift than about the method): ``pct_of_floor``
says how close a method gets to doing only matrix multiplies at full speed. Also measured: peak
RSS against episode length (reference loop vs harness, one episode) and wall time against the
number of episodes.

    python -m benchmarks.speed.throughput                 # full (about 15 minutes here)
    python -m benchmarks.speed.throughput --quick  # harness, harness-loop, harness-native: 32 slots, 3 rounds (3 min)

``--quick`` interleaves the two methods over ``--rounds`` rounds and reports the median of each.

Writes ``results/benchmarks/throughput{,_memory,_scaling}.csv``, ``throughput.json`` (machine,
versions, floors) and ``throughput.png``/``.svg``; ``--quick`` writes ``throughput_quick.*``.
The CI gate is ``benchmarks/speed/gate.py`` (CPU-time ratios over interleaved rounds, against the
tutorial loop and against the stock forward, with mutations that make it fail).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ENV_ID = "HalfCheetah-v4"
TARGET = 6000.0
ROOT = Path(__file__).resolve().parents[2]
METHODS = ["lockstep", "harness-stock", "harness", "harness-loop", "harness-native", "harness-bf16"]
NATIVE_ENV = {"HARNESS_NUMERICS": "native"}
"""The environment of a ``harness-native`` worker (the variables pinned numerics set are dropped)."""


# ----------------------------------------------------------------------------- model and FLOPs


def hub_size_checkpoint(folder: Path, seed: int = 0) -> Path:
    """Write a random-init checkpoint of the published checkpoints' architecture."""
    from transformers import DecisionTransformerConfig, DecisionTransformerModel

    from harness.io.checkpoints import save_checkpoint

    torch.manual_seed(seed)
    cfg = DecisionTransformerConfig(state_dim=17, act_dim=6, hidden_size=128, n_layer=3, n_head=1, max_ep_len=1000)
    rng = np.random.default_rng(seed)
    return save_checkpoint(
        DecisionTransformerModel(cfg),
        folder,
        state_mean=rng.normal(size=17) * 0.1,
        state_std=rng.uniform(0.5, 2.0, size=17),
        env_id=ENV_ID,
        context_length=20,
    )


def flops_per_step(cfg, k: int, exact: bool) -> float:
    """Floating-point operations of one action (one env-step) for a window of ``k`` timesteps.

    ``exact=False``: the stock forward (3K tokens in every layer, three prediction heads on K
    tokens, full attention matrices). ``exact=True``: the fast path (3K-1 tokens, the last
    layer's keys/values for all of them but the rest for the newest state token, the action
    head once). A multiply-add counts 2; layer norms, softmax and activations are not counted.
    """
    h, s, a = cfg.hidden_size, cfg.state_dim, cfg.act_dim
    inner = cfg.n_inner or 4 * h
    per_token = 2 * (3 * h * h + h * h + 2 * h * inner)  # qkv, output projection, MLP
    if not exact:
        t = 3 * k
        embed = 2 * k * h * (s + a + 1)
        layers = cfg.n_layer * (t * per_token + 2 * 2 * t * t * h)  # + scores and weighted sum
        heads = 2 * k * h * (s + a + 1)
        return float(embed + layers + heads)
    t = 3 * k - 1
    embed = 2 * h * (k * (s + 1) + (k - 1) * a)
    full = (cfg.n_layer - 1) * (t * per_token + 2 * 2 * t * t * h)
    last = t * 2 * (2 * h * h) + per_token - 2 * 2 * h * h + 2 * 2 * t * h  # k/v of all; q, o, MLP of one
    return float(embed + full + last + 2 * h * a)


def matmul_rate(dtype: torch.dtype, rows: int = 64 * 59, h: int = 128, inner: int = 512, seconds: float = 1.0) -> float:
    """FLOP/s of ``(rows, h) @ (h, inner)``, the model's largest GEMM shape, in ``dtype``."""
    x, w = torch.randn(rows, h, dtype=dtype), torch.randn(h, inner, dtype=dtype)
    for _ in range(3):
        x @ w
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        x @ w
        n += 1
    return 2 * rows * h * inner * n / (time.perf_counter() - t0)


# ----------------------------------------------------------------------------- one measurement


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(job: dict) -> dict:
    """Run one job in this process; returns env-steps, seconds and peak RSS."""
    from transformers.utils import logging as hf_logging

    from benchmarks.speed.lockstep import run_lockstep
    from harness.engine.policy import DTPolicy
    from harness.engine.reference import run_reference_episode
    from harness.engine.rollout import EpisodeSpec, run_episodes
    from harness.io.checkpoints import load_checkpoint

    hf_logging.set_verbosity_error()
    if job.get("threads"):
        torch.set_num_threads(job["threads"])
    ckpt = load_checkpoint(job["checkpoint"])
    method, n, episodes, steps = job["method"], job["num_envs"], job["episodes"], job["episode_steps"]
    specs = [EpisodeSpec(TARGET, k, k) for k in range(episodes)]
    dtype = torch.bfloat16 if method == "harness-bf16" else torch.float32
    rates = [matmul_rate(dtype, seconds=0.3)]
    t0 = time.perf_counter()
    if method == "reference":
        done = sum(run_reference_episode(ckpt, ENV_ID, TARGET, k, steps).length for k in range(episodes))
    elif method == "lockstep":
        done = sum(run_lockstep(DTPolicy(ckpt, fast=False), ENV_ID, specs, n, steps))
    else:
        policy = DTPolicy(
            ckpt, precision="bf16" if method == "harness-bf16" else "fp32", fast=method != "harness-stock"
        )
        done = sum(r.length for r in run_episodes(policy, ENV_ID, specs, n, max_episode_steps=steps))
    seconds = time.perf_counter() - t0
    rates.append(matmul_rate(dtype, seconds=0.3))
    return {
        "env_steps": int(done),
        "seconds": seconds,
        "peak_rss_mb": _peak_rss_mb(),
        "matmul_flops_per_s": float(np.mean(rates)),
    }


def run_job(job: dict) -> dict:
    """``measure`` in a fresh interpreter (own peak RSS, no allocator state carried over)."""
    env = dict(os.environ)
    if job["method"] == "harness-native":
        for var in ("ATEN_CPU_CAPABILITY", "MKL_CBWR"):
            env.pop(var, None)
        env |= NATIVE_ENV
    env.pop("HARNESS_STEPPER", None)
    if job["method"] == "harness-loop":
        env["HARNESS_STEPPER"] = "loop"
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.speed.throughput", "--worker", json.dumps(job)],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        cwd=ROOT,
    )
    if out.returncode != 0:
        raise RuntimeError(f"worker failed for {job}:\n{out.stderr[-2000:]}")
    return job | json.loads(out.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- the benchmark


def _versions() -> dict[str, str]:
    return {p: metadata.version(p) for p in ("torch", "transformers", "gymnasium", "mujoco", "numpy")} | {
        "python": platform.python_version()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--quick", action="store_true", help="reference vs harness, harness-loop, harness-native at 32 slots only"
    )
    parser.add_argument("--num-envs", type=int, nargs="+", default=[1, 4, 16, 32, 64, 128, 256, 512])
    parser.add_argument("--episode-steps", type=int, default=200, help="time limit of every episode")
    parser.add_argument("--reference-episodes", type=int, default=5)
    parser.add_argument("--min-episodes", type=int, default=16, help="episodes per run: max(num_envs, this)")
    parser.add_argument("--memory-steps", type=int, nargs="+", default=[1000, 4000, 16000], help="episode lengths")
    parser.add_argument("--scaling-episodes", type=int, nargs="+", default=[32, 64, 128, 256])
    parser.add_argument("--threads", type=int, default=None, help="torch threads per worker (default: torch's)")
    parser.add_argument("--rounds", type=int, default=3, help="--quick: interleaved rounds of each method")
    parser.add_argument("--out", type=Path, default=Path("results/benchmarks"))
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(measure(json.loads(args.worker))))
        return 0
    from transformers import DecisionTransformerConfig

    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    tmp = tempfile.TemporaryDirectory()
    ckpt_dir = str(hub_size_checkpoint(Path(tmp.name) / "ckpt"))
    cfg = DecisionTransformerConfig.from_pretrained(ckpt_dir)
    base = {"checkpoint": ckpt_dir, "threads": threads, "episode_steps": args.episode_steps}
    rates = {"fp32": matmul_rate(torch.float32), "bf16": matmul_rate(torch.bfloat16)}
    flops = {"stock": flops_per_step(cfg, 20, exact=False), "exact": flops_per_step(cfg, 20, exact=True)}
    floor_of = {
        "reference": ("stock", "fp32"),
        "lockstep": ("stock", "fp32"),
        "harness-stock": ("stock", "fp32"),
        "harness": ("exact", "fp32"),
        "harness-loop": ("exact", "fp32"),
        "harness-native": ("exact", "fp32"),
        "harness-bf16": ("exact", "bf16"),
    }
    rounds = 1
    if args.quick:
        methods, num_envs, args.reference_episodes, rounds = (
            ["harness", "harness-loop", "harness-native"],
            [32],
            3,
            args.rounds,
        )
    else:
        methods, num_envs = METHODS, args.num_envs

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    rows = []

    def record(res: dict) -> dict:
        fl, dt = floor_of[res["method"]]
        res["steps_per_s"] = res["env_steps"] / res["seconds"]
        res["flops_per_step"] = flops[fl]
        res["floor_steps_per_s"] = res.get("matmul_flops_per_s", rates[dt]) / flops[fl]
        res["pct_of_floor"] = 100 * res["steps_per_s"] / res["floor_steps_per_s"]
        rows.append(res)
        return res

    ref = record(run_job(base | {"method": "reference", "num_envs": 1, "episodes": args.reference_episodes}))
    log(f"reference: {ref['steps_per_s']:,.0f} env-steps/s")
    for r in range(rounds):
        for n in num_envs:
            for m in methods:
                res = record(run_job(base | {"method": m, "num_envs": n, "episodes": max(n, args.min_episodes)}))
                res["round"] = r
                x = res["steps_per_s"] / ref["steps_per_s"]
                pct = res["pct_of_floor"]
                log(f"{m:14} num_envs={n:4}: {res['steps_per_s']:7,.0f} env-steps/s ({x:.1f}x, {pct:.0f}% of floor)")
    # the reference again at the end: the machine's speed may drift during the run
    ref2 = record(run_job(base | {"method": "reference", "num_envs": 1, "episodes": args.reference_episodes}))
    ref_rate = (ref["steps_per_s"] + ref2["steps_per_s"]) / 2
    df = pd.DataFrame(rows)
    df["ratio_vs_reference"] = df["steps_per_s"] / ref_rate
    cols = ["method", "num_envs", "episodes", "episode_steps", "env_steps", "seconds", "steps_per_s"]
    cols += ["ratio_vs_reference", "peak_rss_mb", "flops_per_step", "matmul_flops_per_s", "floor_steps_per_s"]
    cols += ["pct_of_floor", "threads", "round"]
    df["round"] = df["round"].fillna(0).astype(int) if "round" in df else 0
    df = df[cols]
    args.out.mkdir(parents=True, exist_ok=True)
    name = "throughput_quick" if args.quick else "throughput"
    df.to_csv(args.out / f"{name}.csv", index=False)

    extra: dict = {}
    if not args.quick:
        extra = _memory_and_scaling(base, args.out, log, args.memory_steps, args.scaling_episodes)
    from harness.core.provenance import machine as _machine

    meta = {
        "command": " ".join(["python -m benchmarks.speed.throughput", *(sys.argv[1:] if argv is None else argv)]),
        "env_id": ENV_ID,
        "target": TARGET,
        "model": {"hidden_size": cfg.hidden_size, "n_layer": cfg.n_layer, "n_head": cfg.n_head, "context_length": 20},
        "flops_per_step": flops,
        "matmul_flops_per_s": rates,
        "reference_steps_per_s": [ref["steps_per_s"], ref2["steps_per_s"]],
        "machine": _machine() | {"torch_threads": threads},
        "versions": _versions(),
        "load_average_at_end": os.getloadavg(),
    } | extra
    (args.out / f"{name}.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(df.to_string(index=False))
    if not args.quick:
        figure(df, meta, args.out / name)
        print(markdown(df))
        return 0
    for m in methods:
        sub = df[df["method"] == m]
        print(
            f"{m} fp32 at 32 slots, median of {len(sub)} rounds: {sub['pct_of_floor'].median():.0f}% of its FLOP floor "
            f"(rounds {sub['pct_of_floor'].min():.0f}-{sub['pct_of_floor'].max():.0f}%), "
            f"{sub['ratio_vs_reference'].median():.2f}x the reference loop (wall clock; not a gate)"
        )
    return 0


def _memory_and_scaling(base: dict, out: Path, log, lengths: list[int], counts: list[int]) -> dict:
    """Peak RSS against episode length, and wall time against the number of episodes."""
    mem = []
    for steps in lengths:
        for m in ("reference", "harness"):
            res = run_job(base | {"method": m, "num_envs": 1, "episodes": 1, "episode_steps": steps})
            res["steps_per_s"] = res["env_steps"] / res["seconds"]
            mem.append(res)
            rss, rate = res["peak_rss_mb"], res["steps_per_s"]
            log(f"memory {m:9} {steps:6} steps: peak RSS {rss:.0f} MB, {rate:,.0f} steps/s")
    pd.DataFrame(mem)[["method", "episode_steps", "env_steps", "seconds", "steps_per_s", "peak_rss_mb"]].to_csv(
        out / "throughput_memory.csv", index=False
    )
    scale = []
    for episodes in counts:
        res = run_job(base | {"method": "harness", "num_envs": 32, "episodes": episodes})
        scale.append(res)
        log(f"scaling {episodes} episodes: {res['seconds']:.1f} s")
    sdf = pd.DataFrame(scale)[["method", "num_envs", "episodes", "env_steps", "seconds", "peak_rss_mb"]]
    sdf.to_csv(out / "throughput_scaling.csv", index=False)
    slope, intercept = np.polyfit(sdf["episodes"], sdf["seconds"], 1)
    resid = sdf["seconds"] - (slope * sdf["episodes"] + intercept)
    return {
        "scaling_fit": {
            "seconds_per_episode": slope,
            "intercept_s": intercept,
            "max_relative_residual": float((resid.abs() / sdf["seconds"]).max()),
        }
    }


def figure(df: pd.DataFrame, meta: dict, stem: Path) -> None:
    """Steps/s against num_envs per method (log-log), the reference as a line, the floors dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"lockstep": "C1", "harness-stock": "C2", "harness": "C0", "harness-native": "C3", "harness-bf16": "C4"}
    fig, ax = plt.subplots(figsize=(7, 4.5), constrained_layout=True)
    for m, c in colors.items():
        sub = df[df["method"] == m].sort_values("num_envs")
        if len(sub):
            ax.plot(sub["num_envs"], sub["steps_per_s"], "o-", color=c, label=m)
    ref = df[df["method"] == "reference"]["steps_per_s"].mean()
    ax.axhline(ref, color="k", lw=1, label="reference loop (tutorial)")
    floors = {
        "floor fp32, stock forward": (meta["matmul_flops_per_s"]["fp32"] / meta["flops_per_step"]["stock"], "C2"),
        "floor fp32, fast path": (meta["matmul_flops_per_s"]["fp32"] / meta["flops_per_step"]["exact"], "C0"),
        "floor bf16, fast path": (meta["matmul_flops_per_s"]["bf16"] / meta["flops_per_step"]["exact"], "C4"),
    }
    for label, (y, c) in floors.items():
        ax.axhline(y, color=c, ls="--", lw=1, label=label)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("num_envs (episodes stepped together)")
    ax.set_ylabel("env-steps per second")
    m = meta["machine"]
    title = f"{ENV_ID}, DT h128/3 layers/K20; {m['cpu_count']} cores, {m['torch_threads']} torch threads"
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    for ext in ("png", "svg"):
        fig.savefig(stem.with_suffix(f".{ext}"), dpi=120)
    plt.close(fig)


def markdown(df: pd.DataFrame) -> str:
    """README table: each method at its best num_envs."""
    lines = ["| method | best num_envs | env-steps/s | x reference loop | % of its FLOP floor | peak RSS MB |"]
    lines.append("|---|---|---|---|---|---|")
    for m in ["reference", *METHODS]:
        sub = df[df["method"] == m]
        if not len(sub):
            continue
        r = sub.loc[sub["steps_per_s"].idxmax()]
        lines.append(
            f"| {m} | {int(r.num_envs)} | {r.steps_per_s:,.0f} | {r.ratio_vs_reference:.1f} | "
            f"{r.pct_of_floor:.0f} | {r.peak_rss_mb:.0f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
