"""Does ``harness.compare`` see a real drop, and only a real one?

The embedded walker2d at targets 2500 and 4500, 16 episodes each (seeds 0..15):

1. baseline: ``--num-envs 16``;
2. the same checkpoint with ``--num-envs 7``: must exit 0 (same rows: every difference 0);
3. the checkpoint with its action head scaled by 0.95 (weights and bias of the last linear
   layer before the tanh: the actions of a slightly weaker policy): must exit 1.

    python benchmarks/compare_power.py      # writes results/benchmarks/compare_power/ (compare.csv, figures, JSON)
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

from safetensors.torch import load_file, save_file

from harness import compare, sweep
from harness.checkpoints import EMBEDDED_DIR
from harness.provenance import machine, versions

OUT = Path(__file__).resolve().parents[1] / "results" / "benchmarks" / "compare_power"
HEAD = "predict_action.0"


def scaled_checkpoint(folder: Path, factor: float) -> Path:
    """A copy of the embedded walker2d whose action head (pre-tanh) is multiplied by ``factor``."""
    shutil.copytree(EMBEDDED_DIR / "walker2d", folder)
    weights = load_file(folder / "model.safetensors")
    for name in (f"{HEAD}.weight", f"{HEAD}.bias"):
        weights[name] = weights[name] * factor
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    return folder


def main() -> int:
    tmp = Path(tempfile.mkdtemp())
    weak = scaled_checkpoint(tmp / "walker2d-x0.95", 0.95)
    grid = ["--envs", "walker2d", "--targets", "2500", "4500", "--episodes", "16", "--no-progress", "--overwrite"]
    runs = {
        "baseline": [*grid, "--num-envs", "16"],
        "same-7-slots": [*grid, "--num-envs", "7"],
        "head-x0.95": [*grid, "--num-envs", "16", "--checkpoint", f"walker2d={weak}"],
    }
    for name, argv in runs.items():
        assert sweep.main([*argv, "--out", str(tmp / name)]) == 0
    codes = {
        name: compare.main([str(tmp / "baseline"), str(tmp / name), "--out", str(OUT / f"compare-{name}")])
        for name in ("same-7-slots", "head-x0.95")
    }
    report = {
        "command": "python benchmarks/compare_power.py",
        "exit_codes": codes,
        "expected": {"same-7-slots": 0, "head-x0.95": 1},
        "machine": machine(),
        "versions": versions(),
    }
    (OUT / "compare_power.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(codes))
    shutil.rmtree(tmp)
    return 0 if codes == report["expected"] else 1


if __name__ == "__main__":
    sys.exit(main())
