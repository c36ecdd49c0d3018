"""The batched, padded context window of the last K timesteps, updated in place.

Every quantity lives in one tensor of shape ``(num_envs, 2K, ·)`` allocated once: a mirrored
ring buffer. Appending a timestep writes it at ring position ``h`` and at ``h + K``; the window,
oldest to newest, is then the contiguous slice ``[h + 1, h + K]`` of dim 1, a view (no copy).
Each step costs O(num_envs) writes, whatever the episode length, and memory is flat.

All slots advance together (the vector env steps them together); a slot whose episode ends is
cleared to zeros with mask 0, which is exactly the tutorial's left padding, and its next
episode's first timestep is written by the next :meth:`ContextWindow.append`.

>>> w = ContextWindow(num_envs=2, context_length=3, state_dim=1, act_dim=1)
>>> for t in range(4):
...     w.append(torch.full((2, 1), float(t)), torch.zeros(2), torch.full((2,), t))
>>> w.view().states[0, :, 0].tolist()
[1.0, 2.0, 3.0]
>>> w.clear(torch.tensor([1]))
>>> w.append(torch.full((2, 1), 9.0), torch.zeros(2), torch.zeros(2, dtype=torch.long))
>>> w.view().states[1, :, 0].tolist(), w.view().attention_mask[1].tolist()
([0.0, 0.0, 9.0], [0, 0, 1])
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class Window(NamedTuple):
    """The model's inputs for every slot, oldest timestep first (views into the ring).

    Attributes:
        states: ``(num_envs, K, state_dim)`` float, normalised.
        actions: ``(num_envs, K, act_dim)`` float; the newest position holds 0 until set.
        returns_to_go: ``(num_envs, K, 1)`` float, already divided by the return scale.
        timesteps: ``(num_envs, K)`` long, clamped by the caller.
        attention_mask: ``(num_envs, K)`` long, 0 on left padding.
    """

    states: torch.Tensor
    actions: torch.Tensor
    returns_to_go: torch.Tensor
    timesteps: torch.Tensor
    attention_mask: torch.Tensor


class ContextWindow:
    """Fixed-size ``(num_envs, K, ·)`` context buffers with O(1) in-place updates per step.

    Args:
        num_envs: slots.
        context_length: K, timesteps kept.
        state_dim: state size.
        act_dim: action size.
        device: where the buffers live.
        dtype: float dtype of states, actions and returns-to-go.
    """

    def __init__(
        self,
        num_envs: int,
        context_length: int,
        state_dim: int,
        act_dim: int,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        if num_envs < 1 or context_length < 1:
            raise ValueError(f"num_envs and context_length must be >= 1, got {num_envs} and {context_length}")
        n, k2 = num_envs, 2 * context_length
        self.num_envs = num_envs
        self.context_length = context_length
        self._states = torch.zeros(n, k2, state_dim, device=device, dtype=dtype)
        self._actions = torch.zeros(n, k2, act_dim, device=device, dtype=dtype)
        self._rtg = torch.zeros(n, k2, 1, device=device, dtype=dtype)
        self._timesteps = torch.zeros(n, k2, device=device, dtype=torch.long)
        self._mask = torch.zeros(n, k2, device=device, dtype=torch.long)
        self._head = context_length - 1  # ring position of the newest timestep

    def _positions(self) -> tuple[int, int]:
        return self._head, self._head + self.context_length

    def append(self, states: torch.Tensor, returns_to_go: torch.Tensor, timesteps: torch.Tensor) -> None:
        """Push one timestep for every slot, with a zero placeholder action.

        Args:
            states: ``(num_envs, state_dim)`` normalised states.
            returns_to_go: ``(num_envs,)`` scaled returns-to-go.
            timesteps: ``(num_envs,)`` long timesteps (already clamped).
        """
        self._head = (self._head + 1) % self.context_length
        for pos in self._positions():
            self._states[:, pos] = states
            self._actions[:, pos] = 0.0
            self._rtg[:, pos, 0] = returns_to_go
            self._timesteps[:, pos] = timesteps
            self._mask[:, pos] = 1

    def set_last_action(self, actions: torch.Tensor, rows: torch.Tensor | None = None) -> None:
        """Replace the newest placeholder action of ``rows`` (all slots if None).

        Args:
            actions: ``(len(rows), act_dim)``, or ``(num_envs, act_dim)`` when rows is None.
            rows: ``(n,)`` long slot indices.
        """
        for pos in self._positions():
            if rows is None:
                self._actions[:, pos] = actions
            else:
                self._actions[rows, pos] = actions

    def clear(self, rows: torch.Tensor) -> None:
        """Forget everything of the slots ``rows`` (``(n,)`` long): all padding, mask 0."""
        for buf in (self._states, self._actions, self._rtg, self._timesteps, self._mask):
            buf[rows] = 0

    def view(self) -> Window:
        """The current window of every slot, oldest first; views, valid until the next append."""
        lo, hi = self._head + 1, self._head + 1 + self.context_length
        return Window(
            self._states[:, lo:hi],
            self._actions[:, lo:hi],
            self._rtg[:, lo:hi],
            self._timesteps[:, lo:hi],
            self._mask[:, lo:hi],
        )
