"""Our D4RL-recipe data beside D4RL's, through the state statistics of the Hub checkpoints.

D4RL's datasets cannot be downloaded here, but the Hub's ``edbeeching/decision-transformer-gym-*``
checkpoints were trained on them and their state mean/std (``harness/resources/hub_checkpoints.json``)
are the per-step statistics of D4RL's data. For each env, the mean and std over every step of the
torso's forward velocity and height (the reward is mostly forward velocity, plus an alive bonus
for hopper and walker2d) in: our ``<env>-medium-replay`` and ``<env>-medium`` where embedded
(the checkpoints' statistics), D4RL's ``medium-replay`` and D4RL's ``medium``.

    python -m benchmarks.checks.data_vs_d4rl          # prints a Markdown table
"""

from __future__ import annotations

import json

from harness.io.checkpoints import HUB_TABLE, embedded_names, load_checkpoint

# observation index of the torso's forward velocity and height (Gymnasium v4, positions without x)
VELOCITY = {"hopper": 5, "walker2d": 8, "halfcheetah": 8}
HEIGHT = {"hopper": 0, "walker2d": 0}


def main() -> None:
    hub = json.loads(HUB_TABLE.read_text())
    print("| env | data | mean forward velocity (std) | mean torso height (std) |")
    print("|---|---|---|---|")
    for env, i in VELOCITY.items():
        rows = []
        for kind in ("medium-replay", "medium"):
            if f"{env}-{kind}" in embedded_names():
                ours = load_checkpoint(f"{env}-{kind}")
                rows.append((f"ours, {kind}", ours.state_mean.tolist(), ours.state_std.tolist()))
            h = hub[f"edbeeching/decision-transformer-gym-{env}-{kind}"]
            rows.append((f"D4RL {kind}", h["state_mean"], h["state_std"]))
        for name, mean, std in rows:
            j = HEIGHT.get(env)
            height = f"{mean[j]:.2f} ({std[j]:.2f})" if j is not None else "n/a"
            print(f"| {env} | {name} | {mean[i]:.2f} ({std[i]:.2f}) | {height} |")


if __name__ == "__main__":
    main()
