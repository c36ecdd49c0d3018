"""Print the Markdown table of the embedded checkpoints (data summary, training) for README.md.

python -m benchmarks.tools.embedded_table
"""

from __future__ import annotations

import json

from harness.io.checkpoints import EMBEDDED_DIR, embedded_names
from harness.world.envs import resolve_env


def main() -> None:
    print(
        "| checkpoint | env | trajectories | transitions | return min / p10 / median / p90 / max "
        "(normalised max) | training |"
    )
    print("|---|---|---|---|---|---|")
    for name in embedded_names():
        cfg = json.loads((EMBEDDED_DIR / name / "config.json").read_text())
        train = json.loads((EMBEDDED_DIR / name / "train_config.json").read_text())
        d = cfg["dataset"]
        env = resolve_env(cfg["env_id"])
        rets = " / ".join(
            f"{d[k]:,.0f}" for k in ("return_min", "return_p10", "return_median", "return_p90", "return_max")
        )
        init = train.get("init")
        start = f" fine-tuning `{init}` (weights {train['init_fingerprint']})" if init else ""
        print(
            f"| `{name}` | {cfg['env_id']} | {d['trajectories']:,} | {d['transitions']:,} | {rets} "
            f"({env.normalized_score(d['return_max']):.0f}) | {train['steps']:,} steps{start}, batch "
            f"{train['batch_size']}, {'bf16' if train['bf16'] else 'fp32'}, windows "
            f"{train.get('window', 'start')}, {train['train_seconds'] / 60:.0f} min (last run) |"
        )


if __name__ == "__main__":
    main()
