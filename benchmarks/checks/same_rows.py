"""Same rows however a sweep is run, through the real command line, per numerics mode.

For each ``--numerics`` mode, the embedded hopper at 2 targets x 12 episodes (seed 3, fp32) is
swept with ``--num-envs 4``, ``7`` and ``24``, with ``--jobs 2``, and once killed with SIGKILL
after some episodes were written and then resumed (``--allow-batch-dependence`` so that native
mode may resume and use workers where its self-check fails). Counts the episodes whose return or
length differ, bit for bit, from the ``--num-envs 4`` run, and records each run's
``batch_invariant``. Writes ``results/benchmarks/same_rows.json`` (machine and versions).

    python -m benchmarks.checks.same_rows                       # native and pinned
    python -m benchmarks.checks.same_rows --modes pinned local
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from harness.core.provenance import machine, machine_line, versions

OUT = Path(__file__).resolve().parents[2] / "results" / "benchmarks" / "same_rows.json"
BASE = ["--envs", "hopper", "--targets", "1000", "2500", "--episodes", "12", "--seed", "3", "--no-progress"]


def sweep(out: Path, mode: str, *extra: str, kill_after: int | None = None) -> pd.DataFrame:
    cmd = [sys.executable, "-m", "harness.commands.sweep", *BASE, "--numerics", mode, "--out", str(out), *extra]
    env = os.environ | {"OMP_NUM_THREADS": "2"}
    if kill_after is not None:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        log = out / "episodes.csv"
        while proc.poll() is None:
            if log.is_file() and sum(1 for _ in log.open()) - 1 >= kill_after:
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.05)
        proc.wait()
        kept = sum(1 for _ in log.open()) - 1
        print(f"  killed with {kept} episodes written; resuming", flush=True)
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    rows = pd.read_csv(out / "episodes.csv").sort_values(["target", "episode"], ignore_index=True)
    rows.attrs["batch_invariant"] = json.loads((out / "metadata.json").read_text())["batch_invariant"]
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--modes", nargs="+", default=["native", "pinned"])
    args = p.parse_args(argv)
    report = {
        "command": "python -m benchmarks.checks.same_rows " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine(),
        "versions": versions(),
    }
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        for mode in args.modes:
            runs = {}
            for name, extra, kill in (
                ("num_envs=4", ["--num-envs", "4"], None),
                ("num_envs=7", ["--num-envs", "7"], None),
                ("num_envs=24", ["--num-envs", "24"], None),
                ("jobs=2", ["--jobs", "2", "--allow-batch-dependence"], None),
                ("kill -9 + resume", ["--num-envs", "4", "--allow-batch-dependence"], 7),
            ):
                print(f"{mode}: {name}", flush=True)
                runs[name] = sweep(Path(tmp) / f"{mode}-{len(runs)}", mode, *extra, kill_after=kill)
            base = runs["num_envs=4"][["return", "length"]].to_numpy()
            differ = {n: int((r[["return", "length"]].to_numpy() != base).any(axis=1).sum()) for n, r in runs.items()}
            inv = {n: bool(r.attrs["batch_invariant"]) for n, r in runs.items()}
            report[mode] = {"episodes": len(base), "differing_from_num_envs_4": differ, "batch_invariant": inv}
            ok &= mode == "native" or (not any(differ.values()) and all(inv.values()))
            print(f"{mode}: differing from --num-envs 4 (of {len(base)}): {differ}; batch_invariant: {inv}", flush=True)
    report["pinned_modes_all_equal"] = ok
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(report, indent=2) + "\n")
    print(f"machine: {machine_line()}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
