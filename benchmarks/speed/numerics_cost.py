"""What pinned numerics cost: the same sweep under ``--numerics native``, ``local`` and ``pinned``.

The mode is fixed when MKL and torch first run, so each run is its own process (the real command
line); rounds interleave the modes, and the order of the modes rotates from round to round, so
that a slow patch of a shared machine hits all alike. Time is the child process's CPU time (user
+ system, all its threads); the ratios are ``pinned`` and ``local`` against ``native`` and
``pinned`` against ``local``, each within its round; the median over rounds is reported with its
spread, and the wall times beside them. The sweep: the three embedded checkpoints, 2 targets x 4
episodes each, fp32, the default slots and threads. ``pinned`` is the default mode; the issue's
bars: default within 1.10x of ``native``, ``pinned`` within 1.30x of ``local``.

    python -m benchmarks.speed.numerics_cost              # writes results/benchmarks/numerics_cost.{csv,json}
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from harness.core.provenance import machine, machine_line, versions

OUT = Path(__file__).resolve().parents[2] / "results" / "benchmarks"
MODES = ("native", "local", "pinned")
SWEEP = ["--envs", "hopper", "walker2d", "halfcheetah", "--num-targets", "2", "--episodes", "4", "--no-progress"]


def one_run(mode: str, out: Path) -> tuple[float, float]:
    """CPU seconds and wall seconds of one sweep in a child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "harness.commands.sweep", *SWEEP, "--numerics", mode, "--out", str(out)],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), wall


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for mode in MODES[r % len(MODES) :] + MODES[: r % len(MODES)]:
                cpu, wall = one_run(mode, Path(tmp) / f"{mode}-{r}")
                rows.append({"round": r, "mode": mode, "cpu_s": cpu, "wall_s": wall})
                print(f"round {r} {mode}: {cpu:.1f} s CPU, {wall:.1f} s wall", flush=True)
    df = pd.DataFrame(rows)
    cpu = df.pivot(index="round", columns="mode", values="cpu_s")
    ratios = {m: (cpu[m] / cpu["native"]) for m in MODES}
    summary = {
        m: {"median_vs_native": float(ratios[m].median()), "min": float(ratios[m].min()), "max": float(ratios[m].max())}
        for m in MODES
    }
    vs_local = cpu["pinned"] / cpu["local"]
    wall = df.groupby("mode")["wall_s"].median()
    args.out.mkdir(parents=True, exist_ok=True)
    df.to_csv(args.out / "numerics_cost.csv", index=False)
    meta = {
        "command": "python -m benchmarks.speed.numerics_cost " + " ".join(argv if argv is not None else sys.argv[1:]),
        "sweep": "python -m harness.sweep " + " ".join(SWEEP) + " --numerics MODE",
        "cpu_time_vs_native": summary,
        "pinned_vs_local": {
            "median": float(vs_local.median()),
            "min": float(vs_local.min()),
            "max": float(vs_local.max()),
        },
        "median_wall_s": {m: float(wall[m]) for m in MODES},
        "default_mode": "pinned",
        "machine": machine(),
        "versions": versions(),
    }
    (args.out / "numerics_cost.json").write_text(json.dumps(meta, indent=2) + "\n")
    for m in MODES:
        s = summary[m]
        print(f"{m}: {s['median_vs_native']:.2f}x native's CPU time (rounds {s['min']:.2f}-{s['max']:.2f})")
    print(f"pinned: {vs_local.median():.2f}x local's CPU time (rounds {vs_local.min():.2f}-{vs_local.max():.2f})")
    print(f"machine: {machine_line()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
