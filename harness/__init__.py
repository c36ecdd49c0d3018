"""Batched evaluation and benchmarking of Decision Transformer policies.

The public API, one import away (loaded on first use, so ``import harness`` stays cheap)::

    import harness
    df = harness.evaluate("hopper", "hopper", targets=[1000, 3600], episodes=10)  # one row per episode
    rows = harness.run_sweep(harness.SweepConfig(envs=["hopper"], out="results/mine"))
    table = harness.compare("results/a", "results/b")

- :func:`evaluate` (:func:`harness.engine.evaluate.evaluate`): one checkpoint's episodes as a DataFrame;
- :func:`run_sweep` and :class:`SweepConfig` (:mod:`harness.running.runner`): a whole sweep folder;
- :func:`compare` (:func:`harness.analysis.comparison.compare_folders`): two sweep folders, paired by seed;
- :func:`load_checkpoint` (:func:`harness.io.checkpoints.load_checkpoint`): a folder, Hub id or embedded name;
- :class:`Shift` (:mod:`harness.world.shift`): a shift cell, for ``evaluate(..., shifts=[...])``;
- :func:`aggregate` and :func:`select` (:mod:`harness.analysis.aggregate`): claims over tasks and
  runs of many sweeps, and selection on disjoint seeds;
- ``__version__``.
"""

from __future__ import annotations

import ctypes.util
import importlib
import os
from importlib import metadata as _metadata
from typing import TYPE_CHECKING, Any

from harness.core import numerics as _numerics

# Pinned numerics (harness/core/numerics.py): MKL's and torch's CPU paths are chosen when they first
# run, so the settings go into the environment here, before any module of the project imports
# torch; child processes (loky, Dask, Ray workers) inherit them.
_numerics.prepare_environment(_numerics.requested())

# Offscreen MuJoCo rendering (--video) on machines without a display: MuJoCo picks its GL
# backend when it is first imported, so the default must be set before any env is built. Only
# when libEGL is there: a backend whose library is missing must not get in the way of the rest.
if "MUJOCO_GL" not in os.environ and not os.environ.get("DISPLAY") and ctypes.util.find_library("EGL"):
    os.environ["MUJOCO_GL"] = "egl"
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

try:
    __version__ = _metadata.version("harness")
except _metadata.PackageNotFoundError:  # running from a checkout that was not installed
    __version__ = "0+unknown"

_API = {
    "evaluate": ("harness.engine.evaluate", "evaluate"),
    "run_sweep": ("harness.running.runner", "run_sweep"),
    "SweepConfig": ("harness.running.runner", "SweepConfig"),
    "compare": ("harness.analysis.comparison", "compare_folders"),
    "load_checkpoint": ("harness.io.checkpoints", "load_checkpoint"),
    "Shift": ("harness.world.shift", "Shift"),
    "aggregate": ("harness.analysis.aggregate", "aggregate"),
    "select": ("harness.analysis.aggregate", "select"),
}
__all__ = [
    "Shift",
    "SweepConfig",
    "__version__",
    "aggregate",
    "compare",
    "evaluate",
    "load_checkpoint",
    "run_sweep",
    "select",
]

if TYPE_CHECKING:
    from harness.analysis.aggregate import aggregate, select
    from harness.analysis.comparison import compare_folders as compare
    from harness.engine.evaluate import evaluate
    from harness.io.checkpoints import load_checkpoint
    from harness.running.runner import SweepConfig, run_sweep
    from harness.world.shift import Shift


def __getattr__(name: str) -> Any:
    if name in _API:
        module, attr = _API[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'harness' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
