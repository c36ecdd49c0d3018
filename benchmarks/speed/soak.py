"""Soak test: thousands of short episodes through the real sweep; memory stays flat, none is lost.

A tiny random-init hopper checkpoint (it falls within a few dozen steps) runs
``--episodes`` episodes at each of ``--targets`` targets through :func:`harness.commands.sweep.run_sweep`
(crash-safe log included). A thread samples the process's resident memory every 0.1 s. The run
passes when, over the phase that runs episodes (until ``episodes.csv`` holds them all), the
peak RSS of its last quarter exceeds that of its first quarter by less than 5%, and
``episodes.csv`` holds every episode exactly once. The finishing phase (summary, bootstrap,
figures: matplotlib's import alone is tens of MB) is a one-time cost, reported separately.

    python -m benchmarks.speed.soak                       # 4 targets x 1000 episodes
    python -m benchmarks.speed.soak --episodes 250        # shorter

Writes ``results/benchmarks/soak.json`` (and ``soak_rss.csv``, the samples).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from transformers import DecisionTransformerConfig, DecisionTransformerModel
from transformers.utils import logging as hf_logging

from harness.core.provenance import machine as _machine
from harness.core.provenance import versions as _versions
from harness.io.checkpoints import save_checkpoint
from harness.running.runner import SweepConfig, run_sweep


def rss_mb() -> float:
    """Current resident set size of this process in MB (Linux)."""
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * 4096 / 2**20


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--episodes", type=int, default=1000, help="episodes per target")
    p.add_argument("--targets", type=float, nargs="+", default=[100.0, 1000.0, 2000.0, 3600.0])
    p.add_argument("--num-envs", type=int, default=32)
    p.add_argument("--out", type=Path, default=Path("results/benchmarks"))
    args = p.parse_args(argv)
    hf_logging.set_verbosity_error()
    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp())
    torch.manual_seed(0)
    cfg = DecisionTransformerConfig(state_dim=11, act_dim=3, hidden_size=32, n_layer=2, n_head=1, max_ep_len=1000)
    rng = np.random.default_rng(0)
    ckpt = save_checkpoint(
        DecisionTransformerModel(cfg),
        tmp / "tiny",
        state_mean=rng.normal(size=11) * 0.1,
        state_std=rng.uniform(0.5, 2.0, size=11),
        env_id="Hopper-v4",
        context_length=20,
    )
    samples: list[tuple[float, float, int]] = []
    stop = threading.Event()
    log = tmp / "run" / "episodes.csv"
    expected = len(args.targets) * args.episodes

    def rows_written() -> int:
        try:
            with open(log, "rb") as fh:
                return max(fh.read().count(b"\n") - 1, 0)
        except OSError:
            return 0

    def sample() -> None:
        t0 = time.perf_counter()
        while not stop.is_set():
            samples.append((time.perf_counter() - t0, rss_mb(), rows_written()))
            time.sleep(0.1)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    t0 = time.perf_counter()
    config = SweepConfig(
        envs=["hopper"],
        checkpoints=[f"hopper={ckpt}"],
        targets=args.targets,
        episodes=args.episodes,
        num_envs=args.num_envs,
        out=str(tmp / "run"),
        progress=False,
    )
    episodes = run_sweep(config)
    elapsed = time.perf_counter() - t0
    stop.set()
    thread.join()

    rss = pd.DataFrame(samples, columns=["t_s", "rss_mb", "rows_written"])
    running = rss[(rss["rows_written"] > 0) & (rss["rows_written"] < expected)]
    quarter = (running["t_s"].max() - running["t_s"].min()) / 4
    start = running["t_s"].min()
    first = float(running.loc[running["t_s"] <= start + quarter, "rss_mb"].max())
    last = float(running.loc[running["t_s"] >= start + 3 * quarter, "rss_mb"].max())
    written = pd.read_csv(log)
    unique = len(written.drop_duplicates(["target", "episode"]))
    growth = 100 * (last / first - 1)
    ok = growth < 5.0 and len(written) == unique == expected
    report = {
        "command": " ".join(["python -m benchmarks.speed.soak", *(sys.argv[1:] if argv is None else argv)]),
        "episodes_expected": expected,
        "episodes_written": len(written),
        "episodes_unique": unique,
        "env_steps": int(episodes["length"].sum()),
        "mean_length": float(episodes["length"].mean()),
        "elapsed_s": elapsed,
        "episodes_per_s": expected / elapsed,
        "peak_rss_first_quarter_mb": first,
        "peak_rss_last_quarter_mb": last,
        "peak_rss_whole_run_mb": float(rss["rss_mb"].max()),
        "episode_phase_s": float(running["t_s"].max() - start),
        "rss_growth_pct": growth,
        "passed": ok,
        "machine": _machine(),
        "versions": _versions(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "soak.json").write_text(json.dumps(report, indent=2) + "\n")
    rss.to_csv(args.out / "soak_rss.csv", index=False)
    print(json.dumps({k: v for k, v in report.items() if k not in ("machine", "versions")}, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
