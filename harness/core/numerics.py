"""Pinned numerics: the same fp32 floats for the same episode on every x86-64 CPU with AVX2, at native speed.

Three things round differently from one CPU to another, and from one row of a batch to the next,
unless told not to:

- **matrix products**. A BLAS picks a kernel per CPU vendor and instruction set, splits the
  reduction over k by shape, and on AMD EPYC with AVX-512 MKL rounds odd rows of a block
  differently. Under ``pinned`` the acting forward does not use the BLAS: every
  product is :mod:`harness.kernels.fixedgemm`'s fixed-order chain (one FMA chain over k in order,
  bias added once after), which is a function of its inputs alone on every CPU, whatever the
  vector width, tiling, row position or thread count, at close to MKL's speed. (Until 0.3 this
  was MKL's ``COMPATIBLE`` CNR branch: one SSE2 code path, 3.5-4.3x slower sweeps on Intel.)
- **torch's own vectorised kernels** (layer norm, softmax, tanh, GELU) are compiled for AVX2
  and AVX-512 and chosen at run time; ``ATEN_CPU_CAPABILITY=avx2`` makes every x86-64 CPU with
  AVX2 run the AVX2 ones.
- **MKL** still serves every product outside the acting forward (the stock ``transformers``
  forward, training); ``MKL_CBWR=AUTO,STRICT`` makes those independent of the thread count and
  alignment on this kind of CPU.

The settings are read once, when MKL first multiplies and when torch first dispatches a kernel,
so they must be in force before that: ``import harness`` sets them (unless ``HARNESS_NUMERICS``
says otherwise) before anything of the project imports torch, and child processes (loky, Dask and
Ray workers on this machine) inherit them. Later, :func:`apply` can still switch modes as long as
no kernel ran; where it is too late (torch used before ``import harness``), :func:`state` says so
in one line and the results record it. Where the fixed-order kernel cannot be built (no C
compiler), ``pinned`` runs torch's products, exact on this kind of CPU only, and says so.

What is not pinned because it needs no pinning: MuJoCo (one compiled code path; its libm calls
take glibc's FMA variants on every CPU with AVX2) and the numpy arithmetic of rewards and returns
(element-wise IEEE operations and fixed-order sums, no transcendentals). bf16 (oneDNN) and GPUs
are outside the guarantee.

Modes (``--numerics``):

- ``pinned`` (default): fixed-order products and torch's AVX2 kernels: bit-identical fp32
  episodes on every x86-64 CPU with AVX2, whatever the batch, slots, threads or workers;
- ``local``: MKL ``AUTO,STRICT``, torch's kernels as the CPU likes them: the same rows whatever
  the batch, threads or workers on this kind of CPU, not across CPUs;
- ``native``: nothing pinned (rows may depend on the batch on some CPUs).

This module imports only :mod:`harness.kernels.fixedgemm` of the project (in functions), and does
not import torch at module level.
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys
from enum import Enum
from pathlib import Path
from typing import Any

ENV_VAR = "HARNESS_NUMERICS"
"""Carries the mode to this process (read by ``import harness``) and to its child processes."""
_OWNED = "_HARNESS_NUMERICS_SET"
"""The library settings this package put into the environment (so a mode switch can undo them)."""


class Numerics(str, Enum):
    """How much of the floating-point path is pinned (see the module docstring)."""

    PINNED = "pinned"
    LOCAL = "local"
    NATIVE = "native"

    def __str__(self) -> str:
        return self.value


MKL_CBWR = {Numerics.PINNED: "AUTO,STRICT", Numerics.LOCAL: "AUTO,STRICT", Numerics.NATIVE: None}
"""``MKL_CBWR`` per mode (None: MKL's default, no CNR)."""
ATEN_CPU_CAPABILITY = {Numerics.PINNED: "avx2", Numerics.LOCAL: None, Numerics.NATIVE: None}
"""``ATEN_CPU_CAPABILITY`` per mode (None: the best the CPU has)."""

_STRICT = 0x10000
_BRANCHES = {1: "OFF", 2: "AUTO", 3: "COMPATIBLE"}
_CODES = {"COMPATIBLE,STRICT": 3 | _STRICT, "AUTO,STRICT": 2 | _STRICT, None: 1}
"""``mkl_cbwr_set`` codes (MKL_CBWR_COMPATIBLE = 3, MKL_CBWR_AUTO = 2, MKL_CBWR_BRANCH_OFF = 1)."""

DEFAULT = Numerics.PINNED


def parse(value: str | Numerics | None) -> Numerics:
    """``"pinned"`` → :attr:`Numerics.PINNED`; None → the default.

    >>> parse("local"), parse(None)
    (<Numerics.LOCAL: 'local'>, <Numerics.PINNED: 'pinned'>)
    >>> parse("fast")
    Traceback (most recent call last):
    ValueError: numerics must be one of pinned, local, native, got 'fast'
    """
    if value is None or value == "":
        return DEFAULT
    try:
        return Numerics(value)
    except ValueError:
        raise ValueError(f"numerics must be one of {', '.join(m.value for m in Numerics)}, got {value!r}") from None


def requested() -> Numerics:
    """The mode ``HARNESS_NUMERICS`` asks for (the default when unset or not a mode)."""
    try:
        return parse(os.environ.get(ENV_VAR))
    except ValueError:
        return DEFAULT


def prepare_environment(mode: Numerics) -> None:
    """Put ``mode``'s library settings into ``os.environ`` (this process, if its torch has not
    started yet, and every child process); undo the ones this package set for another mode."""
    os.environ[ENV_VAR] = mode.value
    owned = set(filter(None, os.environ.get(_OWNED, "").split(",")))
    for var, setting in (("MKL_CBWR", MKL_CBWR[mode]), ("ATEN_CPU_CAPABILITY", ATEN_CPU_CAPABILITY[mode])):
        if setting is not None:
            os.environ[var] = setting
            owned.add(var)
        elif var in owned:
            os.environ.pop(var, None)
            owned.discard(var)
    os.environ[_OWNED] = ",".join(sorted(owned))


def _mkl_functions() -> tuple[Any, Any] | None:
    """MKL's ``cbwr_get`` and ``cbwr_set`` as linked into this torch, or None (no MKL, other build)."""
    import torch

    if not torch.backends.mkl.is_available():
        return None
    candidates = [Path(torch.__file__).parent / "lib" / "libtorch_cpu.so"]
    for path in candidates:
        try:
            lib = ctypes.CDLL(str(path))
        except OSError:
            continue
        for get_name, set_name in (("mkl_serv_cbwr_get", "mkl_serv_cbwr_set"), ("mkl_cbwr_get", "mkl_cbwr_set")):
            get, put = getattr(lib, get_name, None), getattr(lib, set_name, None)
            if get is not None and put is not None:
                get.argtypes, get.restype = [ctypes.c_int], ctypes.c_int
                put.argtypes, put.restype = [ctypes.c_int], ctypes.c_int
                return get, put
    return None


def _mkl_mode() -> str | None:
    """MKL's CNR mode in force (``COMPATIBLE,STRICT``, ``AUTO,STRICT``, ``OFF``...), None if unreadable."""
    fns = _mkl_functions()
    if fns is None:
        return None
    code = int(fns[0](-1))  # MKL_CBWR_ALL
    branch = _BRANCHES.get(code & 0xFFFF, f"branch {code & 0xFFFF}")
    return f"{branch},STRICT" if code & _STRICT else branch


def _has_avx2() -> bool:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return "avx2" in line.split(":", 1)[1].split()
    except OSError:
        pass
    return False


def cpu_flags() -> set[str]:
    """This CPU's feature flags as Linux lists them (``/proc/cpuinfo``'s ``flags`` or ``Features``;
    empty if unreadable)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")
"""CPU flags of bf16 arithmetic (x86: AVX512-BF16, AMX-BF16; ARM: BF16). Without one, torch emulates bf16."""


def cpu_has_bf16() -> bool:
    """Whether this CPU does bf16 arithmetic in hardware (one of :data:`BF16_FLAGS`)."""
    return bool(cpu_flags() & set(BF16_FLAGS))


def apply(mode: str | Numerics | None = None) -> dict[str, Any]:
    """Make ``mode`` (default: :func:`requested`) the one in force, as far as it still can be.

    Sets the environment (:func:`prepare_environment`); if torch is already imported, also sets
    MKL's CNR mode directly (possible until MKL's first multiply). Returns :func:`state`.
    """
    mode = parse(mode) if mode is not None else requested()
    prepare_environment(mode)
    if "torch" in sys.modules:
        fns = _mkl_functions()
        if fns is not None and _mkl_mode() != (MKL_CBWR[mode] or "OFF"):
            fns[1](_CODES[MKL_CBWR[mode]])  # fails (and changes nothing) once MKL has run
    return state()


def kernel() -> tuple[bool, str]:
    """Whether the fixed-order kernel is built and computes its definition here (cached per process):
    ``(ok, one line)`` from :func:`harness.kernels.fixedgemm.self_check`."""
    global _KERNEL
    if _KERNEL is None:
        from harness.kernels import fixedgemm  # imports torch: not at module level

        _KERNEL = fixedgemm.self_check()
    return _KERNEL


_KERNEL: tuple[bool, str] | None = None


def state() -> dict[str, Any]:
    """What is in force in this process: ``{"mode", "mkl_cbwr", "torch_cpu_capability", "products",
    "definition", "kernel", "in_force", "why_not", "portable", "note"}``.

    ``definition``: the fixed-order kernel's numerics definition
    (:func:`harness.kernels.fixedgemm.definition`) where it runs; ``in_force``: whether the requested
    mode really holds; ``why_not``: the one line that says why not; ``portable``: whether fp32
    results are the same on every x86-64 CPU with AVX2; ``products``: what the acting forward's
    matrix products run on; ``note``: a one-line caveat (pinned without its kernel). Reading
    torch's capability fixes it for this process."""
    import torch

    mode = requested()
    mkl = _mkl_mode()
    capability = str(torch.backends.cpu.get_cpu_capability())
    why: str | None = None
    note: str | None = None
    fixed = False
    kernel_line = None
    if mode is Numerics.PINNED:
        ok, kernel_line = kernel()
        fixed = ok
        if not ok:
            note = (
                f"{kernel_line}; pinned falls back to torch's products (MKL {MKL_CBWR[mode]}): exact on this kind "
                "of CPU only"
            )
    if mode is not Numerics.NATIVE:
        if platform.machine() not in ("x86_64", "AMD64") or not _has_avx2():
            why = (
                f"{mode} numerics need an x86-64 CPU with AVX2 and this is {platform.machine()}: "
                "results are exact only on this kind of machine (run with --numerics native to silence this)"
            )
        elif mkl is None and not fixed:
            why = f"{mode} numerics need torch built with MKL (this torch's BLAS cannot be pinned)"
        elif mkl != MKL_CBWR[mode] and not fixed:
            why = (
                f"MKL runs in CNR mode {mkl}, not {MKL_CBWR[mode]}: torch multiplied before harness was imported; "
                f"import harness first, or set {ENV_VAR}={mode} MKL_CBWR={MKL_CBWR[mode]}"
                + (f" ATEN_CPU_CAPABILITY={ATEN_CPU_CAPABILITY[mode]}" if ATEN_CPU_CAPABILITY[mode] else "")
                + " in the environment"
            )
        elif ATEN_CPU_CAPABILITY[mode] and capability.lower() != ATEN_CPU_CAPABILITY[mode] and not fixed:
            why = (
                f"torch runs its {capability} kernels, not {ATEN_CPU_CAPABILITY[mode].upper()}: torch ran a kernel "
                f"before harness was imported; import harness first, or set ATEN_CPU_CAPABILITY="
                f"{ATEN_CPU_CAPABILITY[mode]} MKL_CBWR={MKL_CBWR[mode]} in the environment"
            )
    if fixed:
        from harness.kernels import fixedgemm

        products = f"fixed-order products ({fixedgemm.isa()} kernel)"
        definition = fixedgemm.definition()
    else:
        products = f"torch products (MKL {mkl or 'n/a'})"
        definition = None
    return {
        "mode": mode.value,
        "mkl_cbwr": mkl,
        "torch_cpu_capability": capability,
        "products": products,
        "definition": definition,
        "kernel": kernel_line,
        "in_force": why is None,
        "why_not": why,
        "portable": why is None and mode is Numerics.PINNED and fixed,
        "note": note,
    }


def describe(s: dict[str, Any]) -> str:
    """One line for the start of a sweep.

    >>> describe({"mode": "pinned", "mkl_cbwr": "AUTO,STRICT", "torch_cpu_capability": "AVX2",
    ...           "products": "fixed-order products (AVX-512 kernel)", "in_force": True, "why_not": None,
    ...           "portable": True, "note": None})  # doctest: +ELLIPSIS
    'numerics: pinned (fixed-order products (AVX-512 kernel), torch AVX2 kernels): fp32 episodes bit-identical...'
    """
    products = s.get("products") or f"MKL {s['mkl_cbwr'] or 'n/a'}"
    what = f"{products}, torch {s['torch_cpu_capability']} kernels"
    if not s["in_force"]:
        return f"warning: numerics: {s['mode']} requested but not in force ({what}): {s['why_not']}"
    if s.get("note"):
        return f"warning: numerics: {s['mode']} ({what}): {s['note']}"
    claim = {
        "pinned": "fp32 episodes bit-identical on every x86-64 CPU with AVX2",
        "local": "fp32 episodes independent of batch, threads and workers on this kind of CPU only",
        "native": "nothing pinned: episodes may depend on their batch on some CPUs (--numerics pinned to fix)",
    }[s["mode"]]
    return f"numerics: {s['mode']} ({what}): {claim}"
