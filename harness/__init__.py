"""Batched evaluation and benchmarking of Decision Transformer policies."""

import ctypes.util
import os

# Offscreen MuJoCo rendering (--video) on machines without a display: MuJoCo picks its GL
# backend when it is first imported, so the default must be set before any env is built. Only
# when libEGL is there: a backend whose library is missing must not get in the way of the rest.
if "MUJOCO_GL" not in os.environ and not os.environ.get("DISPLAY") and ctypes.util.find_library("EGL"):
    os.environ["MUJOCO_GL"] = "egl"
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
