"""The batched Decision Transformer policy: normalisation, forward pass, one action per slot."""

from __future__ import annotations

import numpy as np
import torch

from harness.checkpoints import Checkpoint
from harness.context import Window
from harness.fast import FastActionHead

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16}
"""``--precision`` choices and their torch dtypes."""


class DTPolicy:
    """Acts for a batch of slots from their context windows.

    States are normalised once, when they enter the window, exactly as the tutorial does it:
    the float32 observation minus the float64 mean, over the float64 std, cast to float32.

    Args:
        checkpoint: the loaded checkpoint (model in eval mode).
        device: where the model and buffers live.
        precision: ``fp32`` (exact) or ``bf16`` (bf16 weights and matrix multiplies).
        fast: use :class:`harness.fast.FastActionHead` (same actions, less work); False runs the
            stock ``transformers`` forward (under bf16 autocast for ``bf16``).
    """

    def __init__(
        self, checkpoint: Checkpoint, device: str | torch.device = "cpu", precision: str = "fp32", fast: bool = True
    ) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
        self.checkpoint = checkpoint
        self.device = torch.device(device)
        self.precision = precision
        self.model = checkpoint.model.to(self.device).eval()
        self.fast = FastActionHead(self.model, PRECISIONS[precision]) if fast else None
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
