"""Evaluation under shift: noisy observations and actions, changed dynamics (``--shift NAME=V1,V2``).

A :class:`Shift` is one cell of the shift axis: six numbers, each at its neutral value unless
set. Two act on what the policy sees and does, four on the simulator:

- ``obs_noise``: Gaussian noise added to every observation the policy sees (not to the
  simulator's state), std = value x the checkpoint's state std, per state entry;
- ``act_noise``: Gaussian noise added to every action the env receives, std = value x half the
  action range, then clipped to the action bounds (the context keeps the action the policy chose);
- ``mass``: every body's mass and rotational inertia scaled (``MjModel.body_mass``,
  ``body_inertia``; the world body has none);
- ``friction``: every geom's sliding friction scaled (``MjModel.geom_friction[:, 0]``);
- ``gravity``: ``MjModel.opt.gravity`` scaled;
- ``reset_noise``: the env's reset noise (``reset_noise_scale``) scaled.

After a mass change MuJoCo's derived constants are recomputed (``mj_setConst``). The batched
simulator and Gymnasium's envs apply a shift through the same :func:`apply_dynamics`, so they
stay bit-equal (``tests/test_shift.py``). Noise is drawn from a generator seeded by the episode's
reset seed and the shift (:func:`noise_generators`), one draw per step in the episode's own
order: an episode's noise does not depend on its batch, slot, worker or a resume.

>>> Shift(mass=0.8, obs_noise=0.05).label
'obs_noise=0.05,mass=0.8'
>>> Shift.from_label("mass=0.8,obs_noise=0.05") == Shift(mass=0.8, obs_noise=0.05), Shift().label
(True, 'none')
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np

from harness.core.errors import HarnessError

NONE = "none"
"""The ``shift`` label of an unshifted cell."""
NOISES = ("obs_noise", "act_noise")
DYNAMICS = ("mass", "friction", "gravity", "reset_noise")
HELP = {
    "obs_noise": "Gaussian observation noise, std in units of the checkpoint's state std (0: none)",
    "act_noise": "Gaussian action noise, std in units of half the action range, clipped to the bounds (0: none)",
    "mass": "scale of every body's mass and inertia (1: none)",
    "friction": "scale of every geom's sliding friction (1: none)",
    "gravity": "scale of gravity (1: none)",
    "reset_noise": "scale of the env's reset noise (1: none; 0: every episode starts at the same state)",
}


@dataclass(frozen=True)
class Shift:
    """One shift cell (neutral values: no shift). See the module docstring for each field."""

    obs_noise: float = 0.0
    act_noise: float = 0.0
    mass: float = 1.0
    friction: float = 1.0
    gravity: float = 1.0
    reset_noise: float = 1.0

    @property
    def label(self) -> str:
        """``name=value`` of the fields that differ from neutral, in field order; ``none`` if none."""
        parts = [f"{f.name}={_fmt(getattr(self, f.name))}" for f in fields(self) if getattr(self, f.name) != f.default]
        return ",".join(parts) or NONE

    @classmethod
    def from_label(cls, label: str) -> Shift:
        """The inverse of :attr:`label` (``none``, empty or missing: no shift)."""
        if not isinstance(label, str) or label in ("", NONE):
            return cls()
        values: dict[str, float] = {}
        for part in label.split(","):
            name, _, value = part.partition("=")
            values[name] = float(value)
        return cls(**values)

    @property
    def dynamics(self) -> Shift:
        """The simulator's part (noise fields neutral)."""
        return replace(self, obs_noise=0.0, act_noise=0.0)

    @property
    def neutral(self) -> bool:
        return self == Shift()

    def values(self) -> dict[str, float]:
        return {f.name: float(getattr(self, f.name)) for f in fields(self)}


def _fmt(value: float) -> str:
    return f"{value:g}"


def parse_shifts(entries: Sequence[str]) -> list[Shift]:
    """``--shift NAME=V1,V2,...`` entries (repeatable) as their grid: every combination, the
    neutral one first where it is in the grid.

    Raises:
        HarnessError: an unknown name, a name given twice, a value that is not a number, a
            negative scale or noise std, an empty list.
    """
    names = [f.name for f in fields(Shift)]
    axes: dict[str, list[float]] = {}
    for entry in entries:
        name, sep, spec = entry.partition("=")
        name = name.strip()
        if name not in names:
            raise HarnessError(
                f"unknown --shift {name!r}; use one of: {', '.join(names)} (e.g. --shift mass=0.8,1,1.2)"
            )
        if not sep or not spec.strip():
            raise HarnessError(f"--shift {entry!r} has no values; write {name}=V1,V2,... (e.g. {name}=0.8,1,1.2)")
        if name in axes:
            raise HarnessError(f"--shift names {name} twice; give all its values in one --shift {name}=V1,V2")
        values = []
        for text in spec.split(","):
            try:
                v = float(text)
            except ValueError:
                raise HarnessError(f"--shift {name}: {text!r} is not a number; write {name}=V1,V2,...") from None
            if not math.isfinite(v) or v < 0:
                what = "noise std" if name in NOISES else "scale"
                raise HarnessError(f"--shift {name}: {text} is not a valid {what}; use finite values >= 0")
            if name == "mass" and v == 0:
                raise HarnessError("--shift mass: 0 would make every body massless; use a positive scale such as 0.5")
            if v not in values:
                values.append(v)
        axes[name] = values
    if not axes:
        return [Shift()]
    grid = [Shift(**dict(zip(axes, combo, strict=True))) for combo in itertools.product(*axes.values())]
    return sorted(grid, key=lambda s: not s.neutral)  # stable: the rest keep the product's order


def apply_dynamics(env: Any, shift: Shift) -> None:
    """Apply ``shift``'s dynamics to a fresh Gymnasium MuJoCo env (``env.unwrapped``): its ``MjModel``
    fields, then MuJoCo's derived constants, and its reset noise scale. The batched simulator
    takes its model and reset noise from such an env, so both simulators run the same numbers."""
    import mujoco

    if shift.dynamics.neutral:
        return
    model, data = env.model, env.data
    if shift.mass != 1.0:
        model.body_mass[:] = model.body_mass * shift.mass
        model.body_inertia[:] = model.body_inertia * shift.mass
    if shift.friction != 1.0:
        model.geom_friction[:, 0] = model.geom_friction[:, 0] * shift.friction
    if shift.gravity != 1.0:
        model.opt.gravity[:] = model.opt.gravity * shift.gravity
    mujoco.mj_setConst(model, data)
    if shift.reset_noise != 1.0:
        env._reset_noise_scale = env._reset_noise_scale * shift.reset_noise


def _key(shift: Shift) -> int:
    return int.from_bytes(hashlib.sha256(shift.label.encode()).digest()[:8], "little")


def noise_generators(seed: int, shift: Shift) -> tuple[np.random.Generator, np.random.Generator]:
    """The ``(observation, action)`` noise generators of the episode reset with ``seed`` under ``shift``."""
    obs, act = np.random.SeedSequence([seed, _key(shift)]).spawn(2)
    return np.random.default_rng(obs), np.random.default_rng(act)
