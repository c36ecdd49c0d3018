"""Training cost: the collator per batch against the model step, and bf16 autocast against fp32.

Trains the same seed for ``--steps`` steps twice with ``harness.commands.train`` (fp32, then bf16 autocast)
on one dataset, and times ``WindowCollator.sample(64)`` alone. Ratios are measured in one run.

    python -m benchmarks.speed.train_speed --data data/hopper-handover.parquet --env hopper --steps 300

Writes ``results/benchmarks/train_speed.csv`` (per-step losses of both runs) and
``train_speed.json`` (times, ratios, machine, versions).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
from transformers.utils import logging as hf_logging

from harness.core.provenance import machine as _machine
from harness.io.data import OfflineDataset
from harness.offline.training import TrainConfig, WindowCollator, train


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--env", required=True)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("results/benchmarks"))
    args = p.parse_args(argv)
    hf_logging.set_verbosity_error()

    collator = WindowCollator(OfflineDataset.from_parquet(args.data))
    collator.sample(64)
    t0 = time.perf_counter()
    for _ in range(200):
        collator.sample(64)
    collate_ms = (time.perf_counter() - t0) / 200 * 1000

    runs, logs = {}, []
    for precision in ("fp32", "bf16"):
        with tempfile.TemporaryDirectory() as tmp:
            cfg = TrainConfig(
                data=args.data,
                env=args.env,
                out=tmp,
                steps=args.steps,
                bf16=precision == "bf16",
                threads=args.threads,
                save_steps=10**9,
            )
            out = train(cfg)
            seconds = json.loads((out / "train_config.json").read_text())["train_seconds"]
            log = pd.read_csv(out / "train_log.csv")
        runs[precision] = seconds / args.steps * 1000
        logs.append(log[["step", "loss"]].assign(precision=precision))
        print(f"{precision}: {runs[precision]:.1f} ms/step", file=sys.stderr)
    losses = pd.concat(logs).pivot(index="step", columns="precision", values="loss").reset_index()
    rel = (losses["bf16"] - losses["fp32"]).abs() / losses["fp32"]
    result = {
        "command": " ".join(["python -m benchmarks.speed.train_speed", *(sys.argv[1:] if argv is None else argv)]),
        "collate_ms_per_batch": collate_ms,
        "fp32_ms_per_step": runs["fp32"],
        "bf16_ms_per_step": runs["bf16"],
        "bf16_speedup": runs["fp32"] / runs["bf16"],
        "collate_share_of_bf16_step": collate_ms / runs["bf16"],
        "loss_relative_difference_median": float(np.median(rel)),
        "loss_relative_difference_max": float(rel.max()),
        "machine": _machine(),
        "versions": {k: metadata.version(k) for k in ("torch", "transformers", "accelerate")},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    losses.to_csv(args.out / "train_speed.csv", index=False)
    (args.out / "train_speed.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k not in ("machine", "versions")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
