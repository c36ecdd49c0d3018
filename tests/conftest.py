"""Shared fixtures: tiny random-init checkpoints written by the project's own save function."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import DecisionTransformerConfig, DecisionTransformerModel
from transformers.utils import logging as hf_logging

# importing harness pins the numerics (harness/core/numerics.py); torch has run no kernel before this line
from harness.io.checkpoints import DatasetSummary, save_checkpoint

torch.set_num_threads(1)
hf_logging.set_verbosity_error()
hf_logging.disable_progress_bar()
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SIZES = {"Hopper-v4": (11, 3), "Walker2d-v4": (17, 6), "HalfCheetah-v4": (17, 6)}


def make_checkpoint(
    folder: Path,
    env_id: str = "Hopper-v4",
    *,
    dims: tuple[int, int] | None = None,
    hidden: int = 16,
    n_layer: int = 1,
    context_length: int = 5,
    max_ep_len: int = 1000,
    dataset: DatasetSummary | None = None,
    seed: int = 0,
) -> Path:
    """A tiny random-init DT checkpoint with non-trivial statistics."""
    state_dim, act_dim = dims or SIZES[env_id]
    torch.manual_seed(seed)
    model = DecisionTransformerModel(
        DecisionTransformerConfig(
            state_dim=state_dim, act_dim=act_dim, hidden_size=hidden, n_layer=n_layer, n_head=1, max_ep_len=max_ep_len
        )
    )
    rng = np.random.default_rng(seed)
    return save_checkpoint(
        model,
        folder,
        state_mean=rng.normal(size=state_dim) * 0.1,
        state_std=rng.uniform(0.5, 2.0, size=state_dim),
        env_id=env_id,
        context_length=context_length,
        dataset=dataset,
    )


TINY_DATASET = DatasetSummary("tiny", 10, 5000, -10.0, 50.0, 300.0, 800.0, 1000.0, 100.0)


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory) -> dict[str, Path]:
    """One tiny checkpoint per env (hopper's carries a dataset summary)."""
    root = tmp_path_factory.mktemp("ckpts")
    return {
        "hopper": make_checkpoint(root / "hopper", "Hopper-v4", dataset=TINY_DATASET),
        "walker2d": make_checkpoint(root / "walker2d", "Walker2d-v4"),
        "halfcheetah": make_checkpoint(root / "halfcheetah", "HalfCheetah-v4"),
    }


@pytest.fixture(scope="session")
def kernel_mutant(tmp_path_factory):
    """``kernel_mutant(name)``: the folder of that mutant's kernel sources (``tests/kernel_mutants.py``)."""
    from tests.kernel_mutants import source

    root = tmp_path_factory.mktemp("kernel-mutants")
    return lambda name: source(name, root)


@pytest.fixture(scope="session", autouse=True)
def _run_outside_the_checkout(tmp_path_factory):
    """Tests run with a scratch folder as the working directory: MuJoCo writes MUJOCO_LOG.TXT
    into the current folder on warnings, and nothing a test does may land in the checkout."""
    before = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("cwd"))
    yield
    os.chdir(before)
