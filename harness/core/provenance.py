"""How an artefact was made: git state, package versions, and the machine (CPU, ISA, GPU).

Every metadata.json and benchmark record carries these, so a number always names its machine:
the CPU model and the instruction-set features that change both speed and float rounding
(AVX-512, AVX512-BF16, AMX on x86; the architecture elsewhere).
"""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

PACKAGES = ("harness", "torch", "transformers", "gymnasium", "mujoco", "numpy", "pandas", "scipy")
ISA_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def git_state() -> dict[str, Any]:
    """``{"sha", "dirty"}`` of the checkout the package runs from (None outside git)."""
    root = Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        return {"sha": sha, "dirty": bool(dirty)}
    except (OSError, subprocess.SubprocessError):
        return {"sha": None, "dirty": None}


def versions() -> dict[str, str | None]:
    """Python and the versions of the packages that shape results."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for pkg in PACKAGES:
        try:
            out[pkg] = importlib_metadata.version(pkg)
        except importlib_metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def cpu() -> dict[str, Any]:
    """CPU model and the ISA features that matter here (x86 flags from /proc/cpuinfo)."""
    model: str | None = None
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model is None:
                model = line.split(":", 1)[1].strip()
            elif line.startswith(("flags", "Features")) and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    model = model or platform.processor() or None
    return {"cpu": model, "arch": platform.machine(), "isa": [f for f in ISA_FLAGS if f in flags]}


def machine() -> dict[str, Any]:
    """Platform, CPU (model and ISA), core count, torch threads and BLAS, GPU name."""
    import torch

    return {
        "platform": platform.platform(),
        **cpu(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "blas": "mkl" if torch.backends.mkl.is_available() else "other",
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def machine_line(m: dict[str, Any] | None = None) -> str:
    """One line naming the machine, for benchmark tables and README."""
    m = m or machine()
    isa = ", ".join(m.get("isa") or []) or "no AVX-512/AMX"
    gpu = f"; GPU {m['cuda']}" if m.get("cuda") else ""
    return f"{m.get('cpu')} ({m.get('arch')}; {isa}; {m.get('cpu_count')} cores, {m.get('torch_threads')} threads){gpu}"
