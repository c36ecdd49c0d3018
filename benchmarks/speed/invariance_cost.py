"""What batch invariance costs: the fast forward in fixed blocks against one pass over the batch.

For 8, 64 and 512 windows (embedded hopper checkpoint, K 20, full random windows) times
``FastActionHead(block=None)`` (one pass whose shapes depend on the batch: what the harness ran
before blocks) against ``block=16`` (the default: batch invariant) and other block sizes,
interleaved in one run, median of ``--repeats`` rounds. Prints and writes
``results/benchmarks/invariance_cost.csv`` / ``.json`` (machine and versions).

    python -m benchmarks.speed.invariance_cost
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from harness.core.provenance import machine, versions
from harness.engine.context import Window
from harness.engine.fast import FastActionHead
from harness.io.checkpoints import load_checkpoint

OUT = Path(__file__).resolve().parents[2] / "results" / "benchmarks"


def random_windows(state_dim: int, act_dim: int, n: int, k: int = 20, seed: int = 0) -> Window:
    g = torch.Generator().manual_seed(seed)
    steps = torch.arange(k).expand(n, k).contiguous() + torch.randint(0, 900, (n, 1), generator=g)
    return Window(
        torch.randn(n, k, state_dim, generator=g),
        torch.randn(n, k, act_dim, generator=g).clamp(-1, 1),
        torch.rand(n, k, 1, generator=g) * 3,
        steps,
        torch.ones(n, k, dtype=torch.long),
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[8, 64, 512])
    p.add_argument("--blocks", type=int, nargs="+", default=[8, 16, 32, 64])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    ckpt = load_checkpoint("hopper")
    dtype = torch.float32 if args.precision == "fp32" else torch.bfloat16
    heads = {"none": FastActionHead(ckpt.model, dtype, block=None)}
    heads |= {str(b): FastActionHead(ckpt.model, dtype, block=b) for b in args.blocks}
    rows = []
    for n in args.sizes:
        w = random_windows(ckpt.state_dim, ckpt.act_dim, n)
        calls = max(3, 2000 // n)
        times: dict[str, list[float]] = {name: [] for name in heads}
        for head in heads.values():  # warm-up
            head(w)
        for _ in range(args.repeats):
            for name, head in heads.items():
                t0 = time.perf_counter()
                for _ in range(calls):
                    head(w)
                times[name].append((time.perf_counter() - t0) / calls)
        base = float(np.median(times["none"]))
        for name, ts in times.items():
            med = float(np.median(ts))
            rows.append(
                {
                    "windows": n,
                    "block": name,
                    "ms_per_call": 1e3 * med,
                    "cost_vs_unblocked": med / base - 1.0,
                    "spread": (max(ts) - min(ts)) / med,
                }
            )
    df = pd.DataFrame(rows)
    print(df.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"invariance_cost_{args.precision}"
    df.to_csv(stem.with_suffix(".csv"), index=False)
    meta = {"command": "python -m benchmarks.speed.invariance_cost " + " ".join(argv or []), "machine": machine()}
    meta |= {"versions": versions(), "threads": args.threads, "checkpoint": "embedded hopper (K 20, h 128, 3 layers)"}
    stem.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
