"""Compiling the fixed-order kernels: the machine's C compiler, on first use, into a per-user cache.

The sources (``*.c`` and ``fx.h`` in this folder, shipped as package data) build into one shared
library with ``cc -O3 -shared -fPIC -ffp-contract=off -fno-fast-math`` (and OpenMP where the
compiler has it: the runtime torch's CPU wheels load, so the products and torch share one thread
pool). No torch headers, no ninja: about a second. The cache key is every source's text, the
compiler and its version, the flags and the platform, so an edited source (or another copy of the
sources, :func:`build`'s ``source``) never loads a stale library.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

SOURCE_DIR = Path(__file__).resolve().parent
"""The shipped sources."""
SOURCES = ("products.c", "norms.c", "attention.c", "activations.c", "dispatch.c")
"""The C sources, one per operation (``fx.h`` holds what they share)."""
FLAGS = ["-O3", "-std=gnu11", "-shared", "-fPIC", "-ffp-contract=off", "-fno-fast-math"]
"""Compiler flags: no contraction or reassociation of the C code's arithmetic (the kernels' FMAs
are explicit: intrinsics and ``fmaf``)."""
OPENMP = ["-fopenmp"]
"""Threads: dropped (one thread) where they do not build."""


def cache_dir() -> Path:
    """Where built kernels are kept: ``$HARNESS_CACHE/kernels`` or ``~/.cache/harness/kernels``."""
    root = os.environ.get("HARNESS_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "harness"
    )
    return Path(root) / "kernels"


def compiler() -> str | None:
    """The C compiler to use: ``$CC``, Python's own, ``cc``, ``gcc`` or ``clang`` (None: none found)."""
    for name in (os.environ.get("CC"), sysconfig.get_config_var("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name.split()[0]):
            return name.split()[0]
    return None


def build(source: Path | None = None) -> Path:
    """Compile (or find in the cache) the library of the sources in ``source`` (None: the shipped
    ones; tests build deliberately wrong copies this way) and return its path.

    Raises:
        RuntimeError: no compiler, or the sources do not compile (its last error line).
    """
    folder = Path(source) if source is not None else SOURCE_DIR
    cc = compiler()
    if cc is None:
        raise RuntimeError("no C compiler found (install gcc, or set CC)")
    version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=60).stdout
    texts = [(folder / name).read_text() for name in (*SOURCES, "fx.h")]
    key = hashlib.sha256("\0".join([*texts, cc, version, *FLAGS, platform.machine(), sys.platform]).encode())
    target = cache_dir() / f"fx-{key.hexdigest()[:16]}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        for threads in (OPENMP, []):
            command = [cc, *FLAGS, *threads, *(str(folder / s) for s in SOURCES), "-o", tmp, "-lm"]
            done = subprocess.run(command, capture_output=True, text=True, timeout=300)
            if done.returncode == 0:
                break
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no message"])[-1]
            raise RuntimeError(f"{cc} could not build the kernels in {folder}: {last}")
        os.replace(tmp, target)  # atomic: workers building at once all load a whole file
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target
