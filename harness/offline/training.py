"""Training a Decision Transformer on offline data with the ``transformers`` Trainer (the tutorial's
recipe, windows anchored as evaluation sees them): :class:`TrainConfig`, :func:`train`, :func:`export`.

The command line is ``harness train`` (:mod:`harness.commands.train`); ``harness paper`` trains
with it too.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from transformers import DecisionTransformerConfig, DecisionTransformerModel

from harness.core.errors import HarnessError
from harness.io.checkpoints import (
    DEFAULT_RETURN_SCALE,
    Checkpoint,
    evaluation_metadata,
    load_checkpoint,
    save_checkpoint,
)
from harness.io.data import OfflineDataset, load_source
from harness.world.envs import EnvSpec, resolve_env

ANCHORS = ("end", "start")


class WindowCollator:
    """Samples training windows from an :class:`OfflineDataset` with numpy gathers.

    Sampling a trajectory in proportion to its length and then a timestep uniformly inside it
    is the same as sampling a transition uniformly over the whole dataset, which is what this
    does. By default the window *ends* at that transition (left padding only near a
    trajectory's start, as in evaluation); ``anchor="start"`` reproduces the tutorial's
    collator, whose window *starts* there and is left-padded when cut by the trajectory's end.
    That puts padded windows at small timesteps only in short (failed or random) episodes, and
    a model trained on data with many of them falls at once in evaluation, whose first steps
    are padded windows at small timesteps (measured: README, "Embedded checkpoints").

    Args:
        data: the dataset.
        context_length: K.
        scale: return scale.
        max_ep_len: timesteps are clamped to ``max_ep_len - 1``.
        seed: seed of the sampling generator.
        anchor: ``end`` or ``start``, see above.
        statistics: ``(mean, std)``, each ``(state_dim,)``, to normalise states with; default:
            the dataset's own (mean, std + 1e-6), as the tutorial.
    """

    def __init__(
        self,
        data: OfflineDataset,
        context_length: int = 20,
        scale: float = DEFAULT_RETURN_SCALE,
        max_ep_len: int = 1000,
        seed: int = 0,
        anchor: str = "end",
        statistics: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        if anchor not in ANCHORS:
            raise ValueError(f"anchor must be one of {ANCHORS}, got {anchor!r}")
        self.anchor = anchor
        self.k = context_length
        self.rng = np.random.default_rng(seed)
        if statistics is None:
            self.state_mean, self.state_std = data.state_stats()
        else:
            self.state_mean = np.asarray(statistics[0], dtype=np.float64).reshape(-1)
            self.state_std = np.asarray(statistics[1], dtype=np.float64).reshape(-1)
        n = data.num_transitions
        traj = np.repeat(np.arange(data.num_trajectories), data.lengths())  # (N,) trajectory of each transition
        self.end = data.starts[1:][traj]  # (N,) one past the last transition of its trajectory
        self.first = data.starts[:-1][traj]  # (N,) first transition of its trajectory
        self.timestep = np.minimum(np.arange(n) - data.starts[:-1][traj], max_ep_len - 1)  # (N,)
        # undiscounted suffix sums within each trajectory: total from here to the trajectory's end
        csum = np.concatenate([[0.0], np.cumsum(data.rewards.astype(np.float64))])
        self.rtg = ((csum[self.end] - csum[np.arange(n)]) / scale).astype(np.float32)  # (N,)
        self.states = ((data.observations - self.state_mean) / self.state_std).astype(np.float32)  # (N, S)
        self.actions = data.actions.astype(np.float32)  # (N, A)
        self.n = n

    def sample(self, batch_size: int) -> dict[str, torch.Tensor]:
        """A batch of ``(batch_size, K, ·)`` windows at uniformly drawn transitions."""
        return self.windows(self.rng.integers(0, self.n, size=batch_size))

    def windows(self, anchor: np.ndarray) -> dict[str, torch.Tensor]:
        """The windows anchored at the transitions ``anchor`` ``(B,)`` (the model's keyword arguments).

        ``anchor="end"``: the window ends at the anchor and holds up to K timesteps before it,
        left-padded near the trajectory's start, exactly as evaluation builds its context.
        ``anchor="start"`` (the tutorial's collator): the window starts at the anchor and is cut
        at the trajectory's end, then left-padded.
        """
        k = self.k
        batch_size = len(anchor)
        if self.anchor == "end":
            tlen = np.minimum(k, anchor - self.first[anchor] + 1)  # (B,) valid timesteps
            start = anchor - tlen + 1
        else:
            start = anchor
            tlen = np.minimum(k, self.end[start] - start)
        pos = np.arange(k)[None, :]  # (1, K)
        pad = (k - tlen)[:, None]  # (B, 1)
        valid = pos >= pad  # (B, K), padding on the left
        idx = np.where(valid, start[:, None] + pos - pad, 0)  # (B, K) transition index (0 on padding)
        states = np.where(valid[..., None], self.states[idx], 0.0)
        actions = np.where(valid[..., None], self.actions[idx], -10.0)
        rtg = np.where(valid, self.rtg[idx], 0.0)[..., None]
        timesteps = np.where(valid, self.timestep[idx], 0)
        return {
            "states": torch.from_numpy(states.astype(np.float32)),
            "actions": torch.from_numpy(actions.astype(np.float32)),
            "rewards": torch.zeros(batch_size, k, 1),
            "returns_to_go": torch.from_numpy(rtg.astype(np.float32)),
            "timesteps": torch.from_numpy(timesteps.astype(np.int64)),
            "attention_mask": torch.from_numpy(valid.astype(np.int64)),
        }

    def __call__(self, features: list[Any]) -> dict[str, torch.Tensor]:
        """Trainer interface: the features only give the batch size."""
        return self.sample(len(features))


class TrainableDT(DecisionTransformerModel):
    """The tutorial's model class: the loss is the masked MSE of the predicted actions."""

    def forward(self, **kwargs: Any) -> dict[str, torch.Tensor]:  # type: ignore[override]
        output = super().forward(**kwargs, return_dict=True)
        preds = output.action_preds
        act_dim = preds.shape[2]
        keep = kwargs["attention_mask"].reshape(-1) > 0
        preds = preds.reshape(-1, act_dim)[keep]
        targets = kwargs["actions"].reshape(-1, act_dim)[keep]
        return {"loss": torch.mean((preds.float() - targets) ** 2)}


class _Steps(torch.utils.data.Dataset):
    """A stand-in dataset: the collator samples windows itself."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, int]:
        return {"i": i}


@dataclass
class TrainConfig:
    """One training run (``python -m harness.train``: one flag per field, help from these docstrings)."""

    data: str
    """Offline data: a parquet file in the tutorial's schema (harness collect), a D4RL .hdf5 file,
    minari:DATASET_ID (local Minari root) or a Hub dataset id."""
    env: str
    """Env the data comes from: hopper, walker2d, halfcheetah or a full Gymnasium id."""
    out: str
    """Checkpoint folder to write (Trainer checkpoints go to OUT/trainer/checkpoint-N)."""
    steps: int = 15_000
    """Optimizer steps (gradient updates), each on one batch of --batch-size windows."""
    batch_size: int = 64
    """Windows (trajectory segments of --context-length steps) per optimizer step."""
    lr: float = 1e-4
    """Peak learning rate of AdamW, reached after the warm-up, then decayed linearly to 0."""
    weight_decay: float = 1e-4
    """AdamW weight decay (decoupled, per step)."""
    warmup_ratio: float = 0.1
    """Linear warm-up length as a fraction of --steps (0.1 of 15,000 = 1,500 steps)."""
    max_grad_norm: float = 0.25
    """Gradients are clipped to this global L2 norm."""
    hidden_size: int = 128
    """Width of the GPT-2 blocks and embeddings (ignored with --init)."""
    n_layer: int = 3
    """GPT-2 blocks (ignored with --init)."""
    n_head: int = 1
    """Attention heads per block; must divide --hidden-size (ignored with --init)."""
    context_length: int = 20
    """K: timesteps per training window, and the window the evaluator uses (ignored with --init)."""
    window: str = "end"
    """Where a training window is anchored: end (at the sampled step, as evaluation sees it) or
    start (the tutorial's)."""
    bf16: bool = False
    """bf16 autocast on the CPU (fp32 weights and optimizer state); faster on CPUs with bf16 units."""
    seed: int = 0
    """Seed of the model's initialisation and of the window sampling."""
    save_steps: int = 2000
    """Write a Trainer checkpoint every N optimizer steps (with optimizer state, for --resume, and the
    evaluation metadata, so a sweep reads it as it is)."""
    keep_checkpoints: int = 2
    """Trainer checkpoints kept (the newest N); 0 keeps all, for a learning curve:
    --checkpoint 'ENV=OUT/trainer/checkpoint-*'."""
    threads: int = 0
    """Torch CPU threads (0: torch's default, all cores); use 1 per run when runs share the cores."""
    resume: bool = False
    """Resume from the last Trainer checkpoint under OUT/trainer."""
    name: str | None = None
    """Dataset name stored in the checkpoint's summary (default: the data file's stem)."""
    init: str | None = None
    """Checkpoint to fine-tune (embedded name, folder or Hub id): its architecture, K, return
    scale and state statistics replace --hidden-size, --n-layer, --n-head and --context-length."""
    return_blind: bool = False
    """Ablation: zero the return embedding's weight and keep it frozen, so the model cannot read its
    return-to-go tokens (the DT architecture trained as behaviour cloning); harness probe reads it as
    exactly 0 action change, and its target sweep is flat."""


FLAGS = [f for f in TrainConfig.__dataclass_fields__ if f not in ("data", "env", "out", "window", "init")]
"""TrainConfig fields that become plain flags (the others get choices, metavars or are required)."""


def blind_returns(model: DecisionTransformerModel) -> None:
    """Zero the return embedding's weight ``(hidden, 1)`` and freeze it: every return-to-go token
    then embeds to the same vector (its bias, plus the timestep embedding), whatever the target."""
    model.embed_return.weight.data.zero_()
    model.embed_return.weight.requires_grad_(False)


def _load_init(spec: str, env: EnvSpec) -> Checkpoint:
    """The ``--init`` checkpoint (embedded name, folder or Hub id), refused in one line if made for another env."""
    start = load_checkpoint(spec)
    start.check_env(env)
    return start


def train(cfg: TrainConfig) -> Path:
    """Train and write the checkpoint; returns its folder."""
    from transformers import Trainer, TrainingArguments, set_seed

    env = resolve_env(cfg.env)
    data = load_source(cfg.data)
    if (data.state_dim, data.act_dim) != (env.state_dim, env.act_dim):
        raise HarnessError(
            f"dataset {cfg.data} has state/action sizes {data.state_dim}/{data.act_dim} but {env.env_id} has "
            f"{env.state_dim}/{env.act_dim}; pass the env the data was collected on"
        )
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    set_seed(cfg.seed)
    init_info: dict[str, Any] = {}
    if cfg.init is not None:
        start = _load_init(cfg.init, env)
        config = DecisionTransformerConfig.from_dict(start.model.config.to_dict())
        # the Trainer's checkpoint-N folders carry this config: the init's statistics (the ones
        # these weights use) and the summary of the data they are trained on now
        config.dataset = asdict(data.summary(cfg.name or Path(cfg.data).stem))
        model = TrainableDT(config)
        model.load_state_dict(start.model.state_dict())
        context_length, scale = start.context_length, start.return_scale
        stats: tuple[np.ndarray, np.ndarray] | None = (start.state_mean, start.state_std)
        init_info = {
            "init_fingerprint": start.fingerprint(),
            "hidden_size": int(config.hidden_size),
            "n_layer": int(config.n_layer),
            "n_head": int(config.n_head),
            "context_length": context_length,
        }
    else:
        config = DecisionTransformerConfig(
            state_dim=env.state_dim,
            act_dim=env.act_dim,
            hidden_size=cfg.hidden_size,
            n_layer=cfg.n_layer,
            n_head=cfg.n_head,
            max_ep_len=1000,
        )
        model = TrainableDT(config)
        context_length, scale, stats = cfg.context_length, DEFAULT_RETURN_SCALE, None
    if cfg.return_blind:
        blind_returns(model)
    collator = WindowCollator(data, context_length, scale, int(config.max_ep_len), cfg.seed, cfg.window, stats)
    # every Trainer checkpoint-N carries what the evaluator needs (the Trainer saves model.config
    # with its weights): a learning-curve sweep reads them as they are, no --data
    evaluation_metadata(
        model.config,
        collator.state_mean,
        collator.state_std,
        env.env_id,
        scale,
        context_length,
        data.summary(cfg.name or Path(cfg.data).stem),
    )
    out = Path(cfg.out)
    args = TrainingArguments(
        output_dir=str(out / "trainer"),
        max_steps=cfg.steps,
        per_device_train_batch_size=cfg.batch_size,
        learning_rate=cfg.lr,
        weight_decay=cfg.weight_decay,
        warmup_steps=int(cfg.warmup_ratio * cfg.steps),
        optim="adamw_torch",
        max_grad_norm=cfg.max_grad_norm,
        bf16=cfg.bf16,
        use_cpu=not torch.cuda.is_available(),
        logging_steps=max(1, min(100, cfg.steps // 20)),
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=cfg.keep_checkpoints or None,
        remove_unused_columns=False,
        dataloader_num_workers=0,
        report_to=[],
        seed=cfg.seed,
        disable_tqdm=False,
    )
    trainer = Trainer(model=model, args=args, train_dataset=_Steps(cfg.steps * cfg.batch_size), data_collator=collator)
    t0 = time.perf_counter()
    trainer.train(resume_from_checkpoint=cfg.resume or None)
    elapsed = time.perf_counter() - t0

    plain = DecisionTransformerModel(config)
    plain.load_state_dict(model.state_dict())
    summary = data.summary(cfg.name or Path(cfg.data).stem)
    save_checkpoint(
        plain,
        out,
        state_mean=collator.state_mean,
        state_std=collator.state_std,
        env_id=env.env_id,
        return_scale=scale,
        context_length=context_length,
        dataset=summary,
    )
    log = pd.DataFrame([r for r in trainer.state.log_history if "loss" in r])
    log.to_csv(out / "train_log.csv", index=False)
    (out / "train_config.json").write_text(
        json.dumps(asdict(cfg) | init_info | {"train_seconds": elapsed}, indent=2) + "\n"
    )
    return out


def export(trainer_checkpoint: str | Path, cfg: TrainConfig) -> Path:
    """Write the evaluator checkpoint of an intermediate Trainer checkpoint (``OUT/trainer/checkpoint-N``).

    The statistics and summary come from ``cfg.data``, as at the end of training, or, for a run
    started with ``--init``, the statistics from that checkpoint (pass the same ``--init``).
    """
    from safetensors.torch import load_file

    env = resolve_env(cfg.env)
    data = load_source(cfg.data)
    folder = Path(trainer_checkpoint)
    if not (folder / "model.safetensors").is_file():
        raise HarnessError(f"no model.safetensors in {folder}; pass a Trainer checkpoint folder (checkpoint-N)")
    config = DecisionTransformerConfig.from_pretrained(folder)
    model = DecisionTransformerModel(config)
    model.load_state_dict(load_file(folder / "model.safetensors"))
    mean, std = data.state_stats()
    scale, context_length = DEFAULT_RETURN_SCALE, cfg.context_length
    if cfg.init is not None:
        start = _load_init(cfg.init, env)
        mean, std = start.state_mean, start.state_std
        scale, context_length = start.return_scale, start.context_length
    return save_checkpoint(
        model,
        cfg.out,
        state_mean=mean,
        state_std=std,
        env_id=env.env_id,
        return_scale=scale,
        context_length=context_length,
        dataset=data.summary(cfg.name or Path(cfg.data).stem),
    )
