"""Batched evaluation and benchmarking of Decision Transformer policies."""

import ctypes.util
import os

from harness import numerics as _numerics

# Pinned numerics (harness/numerics.py): MKL's and torch's CPU paths are chosen when they first
# run, so the settings go into the environment here, before any module of the project imports
# torch; child processes (loky, Dask, Ray workers) inherit them.
_numerics.prepare_environment(_numerics.requested())

# Offscreen MuJoCo rendering (--video) on machines without a display: MuJoCo picks its GL
# backend when it is first imported, so the default must be set before any env is built. Only
# when libEGL is there: a backend whose library is missing must not get in the way of the rest.
if "MUJOCO_GL" not in os.environ and not os.environ.get("DISPLAY") and ctypes.util.find_library("EGL"):
    os.environ["MUJOCO_GL"] = "egl"
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
