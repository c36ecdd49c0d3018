"""Same rows whatever ``--num-envs``: the embedded hopper at 2 targets x 12 episodes, fp32 and bf16.

Runs :func:`harness.engine.evaluate.evaluate` with ``num_envs`` 4, 7 and 24 (the case an AMD EPYC
reported 20 of 24 episodes differing for before batch invariance was built in) and counts the
episodes whose return or length differ from the ``num_envs=4`` run, bit for bit.

    python benchmarks/num_envs_equality.py        # prints, writes results/benchmarks/num_envs_equality.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from harness.core.provenance import machine, machine_line, versions
from harness.engine.evaluate import evaluate
from harness.io.checkpoints import load_checkpoint

OUT = Path(__file__).resolve().parents[1] / "results" / "benchmarks" / "num_envs_equality.json"


def main() -> int:
    ckpt = load_checkpoint("hopper")
    report = {"command": "python benchmarks/num_envs_equality.py", "machine": machine(), "versions": versions()}
    ok = True
    for precision in ("fp32", "bf16"):
        runs = {
            n: evaluate(ckpt, "hopper", [1000.0, 2500.0], episodes=12, seed=3, num_envs=n, precision=precision)
            for n in (4, 7, 24)
        }
        base = runs[4][["return", "length"]].to_numpy()
        differ = {n: int((df[["return", "length"]].to_numpy() != base).any(axis=1).sum()) for n, df in runs.items()}
        report[precision] = {"episodes": len(base), "differing_from_num_envs_4": differ}
        ok &= not any(differ.values())
        print(f"{precision}: episodes differing from num_envs=4: {differ} of {len(base)}")
    report["all_equal"] = ok
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(report, indent=2) + "\n")
    print(f"machine: {machine_line()}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
