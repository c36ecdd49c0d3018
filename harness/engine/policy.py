"""The batched Decision Transformer policy: normalisation, forward pass, one action per slot."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from harness.engine.context import Window
from harness.engine.fast import FastActionHead
from harness.io.checkpoints import Checkpoint

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16}
"""``--precision`` choices and their torch dtypes."""
DEFAULT_BLOCK_CPU = {"fp32": 16, "bf16": 64}
"""Windows per fast-path kernel call on CPU, per precision (bf16's matrix units want larger M;
measured against one unblocked pass by ``benchmarks/speed/invariance_cost.py``: README, Speed). Under
the fixed-order products (fp32, pinned) the 16 is a chunk, not a padded block; chunks of 32 and
64 measured within ±5% of 16 on the Intel Xeon, either way from run to run."""
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
        fast: use :class:`harness.engine.fast.FastActionHead` (same actions, less work, batch invariant
            by construction); False runs the stock ``transformers`` forward (under bf16 autocast
            for ``bf16``), whose actions may depend on the batch.
        block: windows per kernel call of the fast path (see :class:`harness.engine.fast.FastActionHead`);
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
    def act(self, window: Window, rows: torch.Tensor | None = None, raw: bool = False) -> torch.Tensor:
        """Predict the action at the newest state token.

        Args:
            window: the context of every slot (see :class:`harness.engine.context.Window`).
            rows: ``(n,)`` long indices of the slots to act for; all slots when None.
            raw: return what the self-check compares instead: ``(n, hidden + act_dim)``, the final
                hidden state and the pre-tanh action (fast path; the stock forward returns its actions).

        Returns:
            ``(n, act_dim)`` float32 actions (``n = num_envs`` when rows is None).
        """
        if rows is not None:
            window = Window(*(t.index_select(0, rows) for t in window))
        if self.fast is not None:
            return self.fast(window, raw=raw)
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


@dataclass(frozen=True)
class InvarianceCheck:
    """The outcome of :func:`batch_invariance_check` (true when ``invariant``).

    Attributes:
        invariant: every probe's output was bit-equal at every position and thread count.
        checked: probe outputs compared (probes × placements).
        differing: how many of them were not bit-equal to the probe alone.
        positions: the positions inside a block where some probe differed (sorted).
        threads: the thread count of the batched calls (the alone calls use one thread).
    """

    invariant: bool
    checked: int
    differing: int
    positions: tuple[int, ...]
    threads: int

    def __bool__(self) -> bool:
        return self.invariant


def batch_invariance_check(policy: DTPolicy, probes: int = 8, seed: int = 0) -> InvarianceCheck:
    """Whether a window's output is bit-equal alone and at every position of a block, here and now.

    The start-up self-check on the machine that runs the sweep. ``probes`` random windows are
    acted for alone with one torch thread; then each is placed at every position ``0..B-1`` of a
    block of ``B`` (the fast path's block, 16 in fp32) among fixed random windows, all of those
    blocks in one call with the current thread count; then once more at the end of a batch of
    ``B + 3`` (a part-filled block) with one thread. The compared output is
    :meth:`DTPolicy.act`'s ``raw`` one (the final hidden state and the pre-tanh action: a
    saturated tanh would hide a rounding change). Costs ``probes × B`` block forwards.
    """
    b = policy.fast.block if policy.fast is not None and policy.fast.block else 16
    probe = random_windows(policy, probes, seed)
    filler = random_windows(policy, b + 3, seed + 1)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        alone = torch.cat([policy.act(Window(*(x[i : i + 1] for x in probe)), raw=True) for i in range(probes)])
        tail = Window(*(torch.cat([f[:b], p]) for f, p in zip(filler, probe, strict=True)))
        late = policy.act(tail, raw=True)[b:]
    finally:
        torch.set_num_threads(threads)
    dev = policy.device
    pos = torch.arange(b, device=dev).repeat(probes)  # placement i: probe i // b at position i % b
    which = torch.arange(probes, device=dev).repeat_interleave(b)
    blocks = [f[:b].repeat(probes * b, *([1] * (f.dim() - 1))) for f in filler]  # (probes * b * b, ...)
    rows = torch.arange(probes * b, device=dev) * b + pos
    for x, p in zip(blocks, probe, strict=True):
        x[rows] = p[which]
    placed = policy.act(Window(*blocks), raw=True)[rows]
    differ = (placed != alone[which]).any(dim=1)
    late_differ = (late != alone).any(dim=1)
    positions = sorted({int(q) for q in pos[differ]} | ({b} if bool(late_differ.any()) else set()))
    bad = int(differ.sum()) + int(late_differ.sum())
    return InvarianceCheck(bad == 0, probes * b + probes, bad, tuple(positions), threads)
