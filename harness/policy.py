"""The batched Decision Transformer policy: normalisation, forward pass, one action per slot."""

from __future__ import annotations

import numpy as np
import torch

from harness.checkpoints import Checkpoint
from harness.context import Window
from harness.fast import FastActionHead

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16}
"""``--precision`` choices and their torch dtypes."""
DEFAULT_BLOCK_CPU = {"fp32": 16, "bf16": 64}
"""Windows per fast-path kernel call on CPU, per precision (bf16's matrix units want larger M;
measured against one unblocked pass by ``benchmarks/invariance_cost.py``: README, Speed)."""
DEFAULT_BLOCK_CUDA = 256
"""On a GPU: larger blocks keep the device busy; invariance holds for any fixed block."""


class DTPolicy:
    """Acts for a batch of slots from their context windows.

    States are normalised once, when they enter the window, exactly as the tutorial does it:
    the float32 observation minus the float64 mean, over the float64 std, cast to float32.

    Args:
        checkpoint: the loaded checkpoint (model in eval mode).
        device: where the model and buffers live.
        precision: ``fp32`` (exact) or ``bf16`` (bf16 weights and matrix multiplies).
        fast: use :class:`harness.fast.FastActionHead` (same actions, less work, batch invariant
            by construction); False runs the stock ``transformers`` forward (under bf16 autocast
            for ``bf16``), whose actions may depend on the batch.
        block: windows per kernel call of the fast path (see :class:`harness.fast.FastActionHead`);
            default 16 (fp32) or 64 (bf16) on CPU, 256 on CUDA.
    """

    def __init__(
        self,
        checkpoint: Checkpoint,
        device: str | torch.device = "cpu",
        precision: str = "fp32",
        fast: bool = True,
        block: int | None = None,
    ) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
        self.checkpoint = checkpoint
        self.device = torch.device(device)
        self.precision = precision
        self.model = checkpoint.model.to(self.device).eval()
        if block is None:
            block = DEFAULT_BLOCK_CUDA if self.device.type == "cuda" else DEFAULT_BLOCK_CPU[precision]
        self.fast = FastActionHead(self.model, PRECISIONS[precision], block=block) if fast else None
        self.state_mean = torch.as_tensor(np.asarray(checkpoint.state_mean, np.float64), device=self.device)
        self.state_std = torch.as_tensor(np.asarray(checkpoint.state_std, np.float64), device=self.device)
        self.scale = float(checkpoint.return_scale)
        self.max_timestep = checkpoint.max_ep_len - 1

    def normalize(self, observations: np.ndarray) -> torch.Tensor:
        """``(n, state_dim)`` raw observations → ``(n, state_dim)`` float32 normalised states."""
        obs = torch.as_tensor(observations, device=self.device).to(torch.float32)
        return ((obs - self.state_mean) / self.state_std).to(torch.float32)

    @torch.inference_mode()
    def act(self, window: Window, rows: torch.Tensor | None = None) -> torch.Tensor:
        """Predict the action at the newest state token.

        Args:
            window: the context of every slot (see :class:`harness.context.Window`).
            rows: ``(n,)`` long indices of the slots to act for; all slots when None.

        Returns:
            ``(n, act_dim)`` float32 actions (``n = num_envs`` when rows is None).
        """
        if rows is not None:
            window = Window(*(t.index_select(0, rows) for t in window))
        if self.fast is not None:
            return self.fast(window)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            out = self.model(
                states=window.states,
                actions=window.actions,
                returns_to_go=window.returns_to_go,
                timesteps=window.timesteps,
                attention_mask=window.attention_mask,
                return_dict=True,
            )
        return out.action_preds[:, -1].float()


def random_windows(policy: DTPolicy, n: int, seed: int = 0) -> Window:
    """``n`` random windows for ``policy``'s checkpoint, with random left padding (as rollouts see).

    Shapes: ``(n, K, state_dim)``, ``(n, K, act_dim)``, ``(n, K, 1)``, ``(n, K)``, ``(n, K)``.
    """
    ckpt, dev = policy.checkpoint, policy.device
    k = ckpt.context_length
    g = torch.Generator().manual_seed(seed)
    pad = torch.randint(0, k, (n,), generator=g)
    mask = (torch.arange(k)[None, :] >= pad[:, None]).long()
    m3 = mask[..., None].float()
    actions = torch.rand(n, k, ckpt.act_dim, generator=g) * 2 - 1
    actions[:, -1] = 0.0
    start = torch.randint(0, ckpt.max_ep_len, (n, 1), generator=g)
    steps = (start + torch.arange(k)).clamp(max=ckpt.max_ep_len - 1) * mask
    return Window(
        (torch.randn(n, k, ckpt.state_dim, generator=g) * m3).to(dev),
        (actions * m3).to(dev),
        (torch.rand(n, k, 1, generator=g) * 4 * m3).to(dev),
        steps.to(dev),
        mask.to(dev),
    )


def batch_invariance_check(policy: DTPolicy, windows: int = 6, batch: int = 37, seed: int = 0) -> bool:
    """Whether each window's action is bit-equal alone and inside a larger batch, here and now.

    A start-up self-check on the machine that runs the sweep: ``windows`` random windows are
    acted for one at a time with one torch thread, then all together inside a batch of
    ``batch`` (at scattered rows, other random windows around them) with the current thread
    count, and in reverse order. True when every action matches bit for bit. Costs a few
    forward passes.
    """
    probe = random_windows(policy, windows, seed)
    filler = random_windows(policy, batch, seed + 1)
    rows = torch.linspace(0, batch - 1, windows).round().long().to(policy.device)
    mixed = Window(*(f.index_copy(0, rows, p) for f, p in zip(filler, probe, strict=True)))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        alone = torch.cat([policy.act(Window(*(x[i : i + 1] for x in probe))) for i in range(windows)])
    finally:
        torch.set_num_threads(threads)
    together = policy.act(mixed).index_select(0, rows)
    backwards = policy.act(Window(*(x.flip(0) for x in probe))).flip(0)
    return bool(torch.equal(alone, together) and torch.equal(alone, backwards))
