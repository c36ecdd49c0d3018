"""Wall time of one sweep with 1 and 2 jobs per backend, and each backend's overhead.

Runs the same sweep (embedded hopper and walker2d, ``--num-targets 4 --episodes 6``) in a
fresh process per setting: sequential (``--jobs 1``), and ``--jobs 2`` on loky, Dask (local
cluster) and Ray. Every run's rows must equal the sequential run's. Overhead of a backend is its
wall time minus the best wall time of any backend, per row.

    python -m benchmarks.speed.scaleout       # writes results/benchmarks/scaleout.csv

On two cores, two jobs compete with each other (each gets one torch thread), so a speed-up
only comes from overlapping the simulator with the model and from worker start-up costs.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

SETTINGS = [("sequential", ["--jobs", "1"]), ("loky", ["--jobs", "2"]), ("dask", ["--jobs", "2", "--backend", "dask"])]
SETTINGS.append(("ray", ["--jobs", "2", "--backend", "ray"]))


def main() -> int:
    base = ["--envs", "hopper", "walker2d", "--num-targets", "4", "--episodes", "6", "--no-progress"]
    tmp = Path(tempfile.mkdtemp())
    rows, reference = [], None
    for name, extra in SETTINGS:
        out = tmp / name
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "harness.commands.sweep", *base, *extra, "--out", str(out)],
            capture_output=True,
            text=True,
        )
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            print(f"{name}: failed\n{proc.stderr[-1500:]}", file=sys.stderr)
            rows.append({"setting": name, "wall_s": wall, "rows": 0, "same_rows_as_sequential": False})
            continue
        df = pd.read_csv(out / "episodes.csv").drop(columns="wall_time_s")
        if reference is None:
            reference = df
        same = df.equals(reference)
        rows.append({"setting": name, "wall_s": wall, "rows": len(df), "same_rows_as_sequential": same})
        print(f"{name:10} {wall:6.1f} s  {len(df)} rows  same rows: {same}", file=sys.stderr)
    res = pd.DataFrame(rows)
    best = res.loc[res["rows"] > 0, "wall_s"].min()
    res["overhead_s_per_row"] = (res["wall_s"] - best) / res["rows"].where(res["rows"] > 0)
    Path("results/benchmarks").mkdir(parents=True, exist_ok=True)
    res.to_csv("results/benchmarks/scaleout.csv", index=False)
    print(res.to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
