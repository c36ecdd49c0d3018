"""Write tiny random-init checkpoints (one per env) with the project's save function.

They exercise the whole pipeline offline (tests, the example figure); they are untrained and
their returns mean nothing.

    python -m benchmarks.tools.tiny_checkpoints /tmp/tiny   # writes /tmp/tiny/{hopper,walker2d,halfcheetah}
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from transformers import DecisionTransformerConfig, DecisionTransformerModel
from transformers.utils import logging as hf_logging

from harness.io.checkpoints import save_checkpoint
from harness.world.envs import FAMILIES, resolve_env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--hidden", type=int, default=16)
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    hf_logging.set_verbosity_error()
    for name in FAMILIES:
        env = resolve_env(name)
        torch.manual_seed(args.seed)
        rng = np.random.default_rng(args.seed)
        cfg = DecisionTransformerConfig(
            state_dim=env.state_dim,
            act_dim=env.act_dim,
            hidden_size=args.hidden,
            n_layer=args.layers,
            n_head=1,
            max_ep_len=1000,
        )
        folder = save_checkpoint(
            DecisionTransformerModel(cfg),
            args.out / name,
            state_mean=rng.normal(size=env.state_dim) * 0.1,
            state_std=rng.uniform(0.5, 2.0, size=env.state_dim),
            env_id=env.env_id,
        )
        print(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
