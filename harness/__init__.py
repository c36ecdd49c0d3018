"""Batched evaluation and benchmarking of Decision Transformer policies."""

import os

# Offscreen MuJoCo rendering (--video) on machines without a display: MuJoCo picks its GL
# backend when it is first imported, so the default must be set before any env is built.
if "MUJOCO_GL" not in os.environ and not os.environ.get("DISPLAY"):
    os.environ["MUJOCO_GL"] = "egl"
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
