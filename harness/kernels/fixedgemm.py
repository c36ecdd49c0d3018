"""Fixed-order fp32 matrix products: the same bits on every CPU, at close to the BLAS's speed.

Each output element is one chain of fused multiply-adds over ``k = 0..K-1`` in order, starting
from zero, with the bias added once after (and, for a residual update, the old value added last):

    acc = 0;  acc = fma(a[i, k], b[k, j], acc) for k = 0..K-1;  c[i, j] = acc + bias[j]   (or c + (acc + bias))

An FMA rounds once (IEEE 754) and vector lanes do not interact, so this is a function of the
inputs alone: AVX-512, AVX2 and scalar code, Intel, AMD and ARM, any tiling, batch, row position
or thread count give the same floats. The C sources of this folder hold the register-blocked
micro-kernels (8 x 32 accumulators with AVX-512, 6 x 16 with AVX2+FMA, a scalar ``fmaf`` loop
elsewhere), chosen at run time; :mod:`harness.kernels.build` compiles them on first use with the
machine's C compiler (about a second) into a per-user cache, and :mod:`harness.kernels.binding`
loads them with :mod:`ctypes`, every argument by name (no torch headers, no ninja). Where it
cannot be built, :func:`library` returns None and :func:`unavailable` says why
in one line; the caller falls back to torch's products (exact on this machine, not portable).

>>> import torch
>>> if library() is not None:
...     a, b = torch.randn(5, 7), torch.randn(7, 3)
...     assert torch.allclose(gemm(a, b), a @ b, atol=1e-5)

This module imports nothing of the project outside :mod:`harness.kernels`.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import threading
from pathlib import Path

import torch

from harness.kernels.binding import Kernel
from harness.kernels.build import build

ISAS = {0: "scalar fmaf", 1: "AVX2+FMA", 2: "AVX-512"}
"""The kernel paths (:func:`isa`)."""
SOURCE_ENV = "HARNESS_KERNEL_SOURCE"
"""A folder of kernel sources to build in place of the shipped ones for a whole process (the
mutation runs of the real command line build deliberately wrong copies this way)."""

_lock = threading.Lock()
_libs: dict[str | None, Kernel | None] = {}
_why: dict[str | None, str] = {}


def library(source: Path | None = None) -> Kernel | None:
    """The loaded kernel library (built on first use), or None where it cannot be built or loaded.

    ``source``: a folder with another copy of the kernel sources, built and loaded beside the
    shipped one (tests). ``HARNESS_FIXED_GEMM=off`` disables the default library;
    ``$HARNESS_KERNEL_SOURCE`` builds the default from that folder.
    """
    if source is None and _DEFAULT:
        return _DEFAULT[0]
    if source is None:
        if os.environ.get("HARNESS_FIXED_GEMM", "").lower() in ("0", "off", "no"):
            _DEFAULT.append(None)
            _why[None] = "the fixed-order kernel is switched off (HARNESS_FIXED_GEMM=off)"
            return None
        env_source = os.environ.get(SOURCE_ENV) or None
        _DEFAULT.append(_load(Path(env_source)) if env_source else _load(None))
        if env_source:
            _why[None] = _why.get(str(Path(env_source)), "")
        return _DEFAULT[0]
    return _load(Path(source))


_DEFAULT: list[Kernel | None] = []
"""The library :func:`library` returns for ``source=None``, resolved once per process (the
environment variables are read then)."""


def _load(source: Path | None) -> Kernel | None:
    """Build (or find) and load the library of ``source`` (None: the shipped sources); None where it cannot be."""
    key = None if source is None else str(source)
    with _lock:
        if key in _libs:
            return _libs[key]
        lib: Kernel | None = None
        try:
            lib = Kernel(build(source))
        except (OSError, RuntimeError, subprocess.SubprocessError) as e:
            _why[key] = f"the fixed-order kernel could not be built here ({e}); fp32 products fall back to torch's"
        if lib is not None:
            cap = isa_cap()
            lib.set_isa(isa=-1 if cap is None else cap)
        _libs[key] = lib
        return lib


def unavailable(source: Path | None = None) -> str | None:
    """One line saying why :func:`library` is None (None when it loaded)."""
    key = None if source is None else str(source)
    return None if library(source) is not None else _why.get(key, "the fixed-order kernel is unavailable")


def definition(source: Path | None = None) -> int | None:
    """The version of the kernel's numerics definition (``FX_VERSION`` in ``fx.h``: bumped when a
    definition changes its floats, whichever ISA runs it), None if unavailable."""
    lib = library(source)
    return None if lib is None else int(lib.version())


def isa(source: Path | None = None) -> str | None:
    """The kernel path this CPU takes (``AVX-512``, ``AVX2+FMA`` or ``scalar fmaf``), None if unavailable."""
    lib = library(source)
    return None if lib is None else ISAS[int(lib.isa_in_use())]


ISA_ENV = "HARNESS_KERNEL_ISA"
"""Caps the kernel's path for a whole process (``avx512``, ``avx2`` or ``scalar``): how a machine with
AVX-512 plays what an AVX2-only CPU computes (the emulation tests; :func:`set_isa` ``None`` returns here)."""
ISA_NAMES = {"scalar": 0, "avx2": 1, "avx512": 2}


def isa_cap() -> int | None:
    """The path cap :data:`ISA_ENV` asks for (None: the CPU's best); a bad value raises ValueError."""
    value = os.environ.get(ISA_ENV, "").strip().lower()
    if not value:
        return None
    if value not in ISA_NAMES:
        raise ValueError(f"{ISA_ENV} must be one of {', '.join(ISA_NAMES)}, got {value!r}")
    return ISA_NAMES[value]


def set_isa(level: int | None, source: Path | None = None) -> None:
    """Cap the path at ``level`` (0 scalar, 1 AVX2, 2 AVX-512; None: :data:`ISA_ENV`'s cap, else the
    CPU's best). Tests use it to run every path this CPU has on the same inputs."""
    lib = library(source)
    if lib is not None:
        if level is None:
            level = isa_cap()
        lib.set_isa(isa=-1 if level is None else int(level))
        _LEVELS.pop(id(lib), None)


class Packed:
    """A ``(K, N)`` operand packed once into the kernel's panels (a layer's weight), for :func:`gemm`.

    ``b`` is kept: where the kernel path changed since packing (:func:`set_isa`), :func:`gemm`
    packs afresh from it, so a stale packing can never be used.
    """

    def __init__(self, b: torch.Tensor, source: Path | None = None) -> None:
        lib = library(source)
        if lib is None:
            raise RuntimeError(unavailable(source) or "fixed-order kernel unavailable")
        _check("b", b)
        if b.dim() != 2:
            raise ValueError(f"a packed operand is (K, N), got {tuple(b.shape)}")
        self.b = b
        self.shape = (int(b.shape[0]), int(b.shape[1]))
        self.level = int(lib.isa_in_use())
        self.data = torch.empty(int(lib.packed_size(N=self.shape[1], K=self.shape[0])))
        lib.pack_b(
            N=self.shape[1], K=self.shape[0], B=b.data_ptr(), rsb=b.stride(0), csb=b.stride(1), dst=self.data.data_ptr()
        )


_LEVELS: dict[int, int] = {}


def _level(lib: Kernel) -> int:
    """The path ``lib`` takes now (cached; :func:`set_isa` clears it)."""
    key = id(lib)
    if key not in _LEVELS:
        _LEVELS[key] = int(lib.isa_in_use())
    return _LEVELS[key]


def _broadcast(x: tuple[int, ...], y: tuple[int, ...]) -> tuple[int, ...]:
    """Broadcast two batch shapes (what ``torch.broadcast_shapes`` does, without its overhead)."""
    if x == y:
        return x
    n = max(len(x), len(y))
    x, y = (1,) * (n - len(x)) + x, (1,) * (n - len(y)) + y
    if any(p != q and 1 not in (p, q) for p, q in zip(x, y, strict=True)):
        raise ValueError(f"batch dims {x} and {y} do not broadcast")
    return tuple(max(p, q) for p, q in zip(x, y, strict=True))


def _check(name: str, t: torch.Tensor) -> None:
    if t.dtype != torch.float32 or t.device.type != "cpu":
        raise ValueError(f"{name} must be a float32 CPU tensor, got {t.dtype} on {t.device}")


def gemm(
    a: torch.Tensor,
    b: torch.Tensor | Packed,
    bias: torch.Tensor | None = None,
    out: torch.Tensor | None = None,
    accumulate: bool = False,
    source: Path | None = None,
    relu: bool = False,
) -> torch.Tensor:
    """``a @ b (+ bias)`` in fixed order: ``(..., M, K) @ (..., K, N) → (..., M, N)``.

    ``b`` may be a :class:`Packed` weight (``a`` then 2-D): the same result, without packing per call.

    Leading (batch) dims: at most two, broadcast between ``a`` and ``b`` by stride 0 (``b`` of
    shape ``(K, N)`` serves every batch item). ``a``'s last dim and ``out``'s last dim must be
    contiguous (stride 1); ``b`` may have any strides (``k.transpose(-1, -2)`` for attention scores).
    ``bias``: ``(N,)``, added once after the chain. ``relu``: then ``x < 0 ? 0 : x``, bit for bit
    what ``torch.relu`` gives (a NaN or a -0 passes). ``accumulate``: ``out += a @ b + bias``
    (``out``'s old value added last). Returns ``out`` (allocated when None).
    """
    lib = library(source)
    if lib is None:
        raise RuntimeError(unavailable(source) or "fixed-order kernel unavailable")
    if isinstance(b, Packed):
        if a.dim() == 2 and b.level == _level(lib):
            return _gemm_packed(lib, a, b, bias, out, accumulate, relu)
        b = b.b
    for name, t in (("a", a), ("b", b)) + ((("bias", bias),) if bias is not None else ()):
        _check(name, t)
    if a.dim() < 2 or b.dim() < 2 or a.dim() > 4 or b.dim() > 4:
        raise ValueError(f"a and b must have 2 to 4 dims, got {tuple(a.shape)} and {tuple(b.shape)}")
    m, k = a.shape[-2:]
    k2, n = b.shape[-2:]
    if k != k2:
        raise ValueError(f"a is (..., {m}, {k}) and b is (..., {k2}, {n}): inner dims differ")
    batch = _broadcast(tuple(a.shape[:-2]), tuple(b.shape[:-2]))
    if out is None:
        if accumulate:
            raise ValueError("accumulate needs out")
        out = torch.empty(*batch, m, n)
    _check("out", out)
    if tuple(out.shape) != (*batch, m, n):
        raise ValueError(f"out must be {(*batch, m, n)}, got {tuple(out.shape)}")
    if bias is not None and tuple(bias.shape) != (n,):
        raise ValueError(f"bias must be ({n},), got {tuple(bias.shape)}")
    if bias is not None and bias.stride(0) != 1:
        bias = bias.contiguous()
    if a.stride(-1) != 1 and k > 1:
        a = a.contiguous()
    if out.stride(-1) != 1 and n > 1:
        raise ValueError("out's last dim must be contiguous")
    if batch:
        a = a.expand(*batch, m, k)
        b = b.expand(*batch, k, n)

    def lead(t: torch.Tensor) -> tuple[int, int]:
        s = t.stride()[:-2]
        return (0, 0) if len(s) == 0 else ((0, s[0]) if len(s) == 1 else (s[0], s[1]))

    b0, b1 = (1, 1) if not batch else ((1, batch[0]) if len(batch) == 1 else (batch[0], batch[1]))
    (sa0, sa1), (sb0, sb1), (sc0, sc1) = lead(a), lead(b), lead(out)
    rc = lib.gemm(
        b0=b0, b1=b1, M=m, N=n, K=k,
        A=a.data_ptr(), sa0=sa0, sa1=sa1, lda=a.stride(-2),
        B=b.data_ptr(), sb0=sb0, sb1=sb1, rsb=b.stride(-2), csb=b.stride(-1),
        bias=bias.data_ptr() if bias is not None else None,
        C=out.data_ptr(), sc0=sc0, sc1=sc1, ldc=out.stride(-2),
        flags=_flags(accumulate, relu), threads=torch.get_num_threads(), bp=None,
    )  # fmt: skip
    if rc != 0:
        raise MemoryError("fixed-order kernel: out of memory for its packing buffer")
    return out


def _rows_out_and_bias(
    m: int, n: int, out: torch.Tensor | None, bias: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A product's ``(m, n)`` output (allocated when None; else checked: float32, contiguous rows)
    and its ``(n,)`` bias (checked, made contiguous), for the packed-weight entry points."""
    if out is None:
        out = torch.empty(m, n)
    elif out.shape != (m, n) or out.dtype != torch.float32 or (out.stride(1) != 1 and n > 1):
        raise ValueError(f"out must be a float32 ({m}, {n}) tensor with contiguous rows, got {tuple(out.shape)}")
    if bias is not None:
        if bias.shape != (n,) or bias.dtype != torch.float32:
            raise ValueError(f"bias must be ({n},) float32, got {tuple(bias.shape)}")
        bias = bias if bias.stride(0) == 1 else bias.contiguous()
    return out, bias


def _gemm_packed(
    lib: Kernel,
    a: torch.Tensor,
    b: Packed,
    bias: torch.Tensor | None,
    out: torch.Tensor | None,
    accumulate: bool,
    relu: bool = False,
) -> torch.Tensor:
    """:func:`gemm`'s path for ``(M, K) @ packed (K, N)``: the acting forward's weights (fewer checks)."""
    _check("a", a)
    m, k = a.shape
    k2, n = b.shape
    if k != k2:
        raise ValueError(f"a is ({m}, {k}) and b is ({k2}, {n}): inner dims differ")
    if a.stride(1) != 1 and k > 1:
        a = a.contiguous()
    if out is None and accumulate:
        raise ValueError("accumulate needs out")
    out, bias = _rows_out_and_bias(m, n, out, bias)
    rc = lib.gemm(
        b0=1, b1=1, M=m, N=n, K=k, A=a.data_ptr(), sa0=0, sa1=0, lda=a.stride(0),
        B=b.b.data_ptr(), sb0=0, sb1=0, rsb=b.b.stride(0), csb=b.b.stride(1),
        bias=bias.data_ptr() if bias is not None else None, C=out.data_ptr(), sc0=0, sc1=0, ldc=out.stride(0),
        flags=_flags(accumulate, relu), threads=torch.get_num_threads(), bp=b.data.data_ptr(),
    )  # fmt: skip
    if rc != 0:
        raise MemoryError("fixed-order kernel: out of memory for its packing buffer")
    return out


def mlp(
    y: torch.Tensor,
    w1: Packed,
    b1: torch.Tensor,
    w2: Packed,
    b2: torch.Tensor,
    out: torch.Tensor,
    relu: bool = True,
    source: Path | None = None,
    ln: LayerNormParams | None = None,
) -> torch.Tensor:
    """A block's MLP into its residual stream: ``out += act(y @ w1 + b1) @ w2 + b2`` (act: ReLU or none).

    ``y``: ``(M, H)``; ``w1``: packed ``(H, I)``; ``w2``: packed ``(I, H)``; ``out``: ``(M, H)``.
    The same bits as ``gemm(gemm(y, w1, b1, relu=relu), w2, b2, out=out, accumulate=True)`` (each
    element is the same chain), fused by row block in the kernel: the ``(M, I)`` activations never
    go to memory. ``ln``: ``(weight, bias, eps)``: ``y`` is then ``layer_norm(out, *ln)`` (pass
    ``y=out``), computed by row block in the kernel, the same bits as :func:`layer_norm` first.
    Falls back to the separate calls where the packing is stale (:func:`set_isa`).
    """
    lib = library(source)
    if lib is None:
        raise RuntimeError(unavailable(source) or "fixed-order kernel unavailable")
    m, h = y.shape
    if w1.shape[0] != h or w2.shape != (w1.shape[1], h) or tuple(out.shape) != (m, h):
        raise ValueError(f"mlp shapes: y {tuple(y.shape)}, w1 {w1.shape}, w2 {w2.shape}, out {tuple(out.shape)}")
    level = _level(lib)
    if w1.level != level or w2.level != level:
        if ln is not None:
            y = layer_norm(out, *ln, source=source)
        hid = gemm(y, w1, b1, relu=relu, source=source)
        return gemm(hid, w2, b2, out=out, accumulate=True, source=source)
    for name, t in (("y", y), ("b1", b1), ("b2", b2), ("out", out)):
        _check(name, t)
    if y.stride(1) != 1:
        y = y.contiguous()
    if out.stride(1) != 1 or b1.stride(0) != 1 or b2.stride(0) != 1:
        raise ValueError("mlp: out's rows and the biases must be contiguous")
    lw, lb, eps = _ln_args(ln, h)
    rc = lib.mlp(
        M=m, H=h, I=w1.shape[1], Y=y.data_ptr(), ldy=y.stride(0), p1=w1.data.data_ptr(), b1=b1.data_ptr(),
        p2=w2.data.data_ptr(), b2=b2.data_ptr(), X=out.data_ptr(), ldx=out.stride(0), relu=int(relu),
        threads=torch.get_num_threads(), lnw=lw, lnb=lb, eps=eps,
    )  # fmt: skip
    if rc != 0:
        raise MemoryError("fixed-order kernel: out of memory for its activation buffer")
    return out


LayerNormParams = tuple[torch.Tensor, torch.Tensor, float]
"""A layer norm's ``(weight (N,), bias (N,), eps)``."""


def _ln_args(ln: LayerNormParams | None, n: int) -> tuple[int | None, int | None, float]:
    """Pointers and eps of ``ln`` for the kernel (None, None, 0 when there is none)."""
    if ln is None:
        return None, None, 0.0
    w, b, eps = ln
    for name, t in (("layer norm weight", w), ("layer norm bias", b)):
        _check(name, t)
        if tuple(t.shape) != (n,) or t.stride(0) != 1:
            raise ValueError(f"{name} must be a contiguous ({n},) tensor, got {tuple(t.shape)}")
    return w.data_ptr(), b.data_ptr(), float(eps)


def ln_gemm(
    x: torch.Tensor,
    ln: LayerNormParams,
    b: Packed,
    bias: torch.Tensor | None = None,
    out: torch.Tensor | None = None,
    source: Path | None = None,
) -> torch.Tensor:
    """``layer_norm(x, *ln) @ b + bias``: ``(M, K)`` rows, ``b`` packed ``(K, N)`` → ``(M, N)``.

    The same bits as :func:`layer_norm` then :func:`gemm`, fused by row block in the kernel (the
    normalised ``(M, K)`` matrix never goes to memory). Falls back to the two calls where the
    packing is stale (:func:`set_isa`).
    """
    lib = library(source)
    if lib is None:
        raise RuntimeError(unavailable(source) or "fixed-order kernel unavailable")
    m, k = x.shape
    n = b.shape[1]
    if b.shape[0] != k:
        raise ValueError(f"x is ({m}, {k}) and b is {b.shape}: inner dims differ")
    if b.level != _level(lib):
        return gemm(layer_norm(x, *ln, source=source), b, bias, out=out, source=source)
    _check("x", x)
    if x.stride(1) != 1 and k > 1:
        x = x.contiguous()
    out, bias = _rows_out_and_bias(m, n, out, bias)
    lw, lb, eps = _ln_args(ln, k)
    rc = lib.ln_gemm(
        M=m, N=n, K=k, X=x.data_ptr(), ldx=x.stride(0), lnw=lw, lnb=lb, eps=eps, bp=b.data.data_ptr(),
        bias=bias.data_ptr() if bias is not None else None, C=out.data_ptr(), ldc=out.stride(0), flags=0,
        threads=torch.get_num_threads(),
    )  # fmt: skip
    if rc != 0:
        raise MemoryError("fixed-order kernel: out of memory for its layer norm buffer")
    return out


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None,
    scale: float,
    out: torch.Tensor | None = None,
    source: Path | None = None,
) -> torch.Tensor:
    """``softmax((q @ k^T) * scale + mask) @ v`` in fixed order, one window's head at a time in the kernel.

    ``q``: ``(n, heads, tq, d)``; ``k``, ``v``: ``(n, heads, t, d)``; ``mask``: additive ``(n, 1, tq, t)``
    (shared by the heads) or None; ``out``: ``(n, heads, tq, d)`` (may be a view of a merged buffer).
    Any strides with a contiguous last dim. Each score is the defining chain over ``d``; then
    ``(s * scale) + mask`` rounded twice (torch's ``mul_``, ``add_``); the softmax is defined lane by
    lane (``attention.c``: a fixed ``exp`` within 2 ulp, 16 lane sums in order and a fixed tree,
    a division); the weighted sum is the chain over all ``t`` keys. The scores stay in the thread's
    buffer. Within float rounding of ``scaled_dot_product_attention``.
    """
    lib = library(source)
    if lib is None:
        raise RuntimeError(unavailable(source) or "fixed-order kernel unavailable")
    for name, x in (("q", q), ("k", k), ("v", v)) + ((("mask", mask),) if mask is not None else ()):
        _check(name, x)
        if x.dim() != 4 or (x.stride(-1) != 1 and x.shape[-1] > 1):
            raise ValueError(f"{name} must be 4-D with a contiguous last dim, got {tuple(x.shape)}")
    n, heads, tq, d = q.shape
    t = k.shape[2]
    if tuple(k.shape) != (n, heads, t, d) or tuple(v.shape) != (n, heads, t, d):
        raise ValueError(f"attention shapes: q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}")
    if mask is not None and tuple(mask.shape) != (n, 1, tq, t):
        raise ValueError(f"mask must be {(n, 1, tq, t)}, got {tuple(mask.shape)}")
    if out is None:
        out = torch.empty(n, heads, tq, d)
    _check("out", out)
    if tuple(out.shape) != (n, heads, tq, d) or (out.stride(-1) != 1 and d > 1):
        raise ValueError(f"out must be {(n, heads, tq, d)} with a contiguous last dim, got {tuple(out.shape)}")

    def rows4(name: str, x: torch.Tensor) -> dict[str, int]:
        return {name: x.data_ptr(), f"s{name}0": x.stride(0), f"s{name}1": x.stride(1), f"ld{name}": x.stride(2)}

    rc = lib.attention(
        windows=n, heads=heads, Tq=tq, T=t, D=d, **rows4("q", q), **rows4("k", k), **rows4("v", v),
        mask=mask.data_ptr() if mask is not None else None,
        sm0=mask.stride(0) if mask is not None else 0, ldm=mask.stride(2) if mask is not None else 0,
        scale=float(scale), **rows4("o", out), threads=torch.get_num_threads(),
    )  # fmt: skip
    if rc != 0:
        raise MemoryError("fixed-order kernel: out of memory for its attention buffer")
    return out


def softmax_scalar(
    scores: torch.Tensor, scale: float, mask: torch.Tensor | None = None, source: Path | None = None
) -> torch.Tensor:
    """:func:`attention`'s softmax in scalar code (the definition): ``(M, N)`` raw scores → weights of
    ``(scores * scale) + mask`` (``mask``: ``(M, N)`` or None), row by row."""
    lib = library(source)
    if lib is None:
        raise RuntimeError(unavailable(source) or "fixed-order kernel unavailable")
    out = scores.contiguous().clone()
    mask = mask.contiguous() if mask is not None else None
    lib.softmax_scalar(
        M=out.shape[0], N=out.shape[1], s=out.data_ptr(), lds=out.stride(0), scale=float(scale),
        mask=mask.data_ptr() if mask is not None else None, ldm=mask.stride(0) if mask is not None else 0,
    )  # fmt: skip
    return out


def exp_nonpositive(x: torch.Tensor, source: Path | None = None) -> torch.Tensor:
    """The softmax's ``exp`` (for ``x <= 0``) on this CPU's path (:func:`set_isa` picks it): tests."""
    lib = library(source)
    if lib is None:
        raise RuntimeError(unavailable(source) or "fixed-order kernel unavailable")
    x = x.contiguous()
    out = torch.empty_like(x)
    lib.exp_vector(n=x.numel(), x=x.data_ptr(), y=out.data_ptr())
    return out


def tanh_(x: torch.Tensor, source: Path | None = None) -> torch.Tensor:
    """``x.tanh_()`` in fixed order (``activations.c``'s definition): the same bits on every CPU.

    torch's CPU tanh is MKL's VML, whose bits depend on the CPU's vendor and on MKL's code path
    for it (an Intel Xeon and an AMD EPYC give different actions from the same logits), so the
    acting forward's action head uses this one. ``x``: a contiguous float32 CPU tensor of any
    shape, changed in place and returned. Within 3 ulp of the exact tanh.
    """
    lib = library(source)
    if lib is None:
        raise RuntimeError(unavailable(source) or "fixed-order kernel unavailable")
    _check("x", x)
    if not x.is_contiguous():
        raise ValueError(f"x must be contiguous, got strides {x.stride()} for shape {tuple(x.shape)}")
    lib.tanh_vector(n=x.numel(), x=x.data_ptr(), y=x.data_ptr())
    return x


def tanh_scalar(x: torch.Tensor, source: Path | None = None) -> torch.Tensor:
    """:func:`tanh_`'s definition one element at a time (scalar C): a new tensor like ``x``."""
    lib = library(source)
    if lib is None:
        raise RuntimeError(unavailable(source) or "fixed-order kernel unavailable")
    x = x.contiguous()
    out = torch.empty_like(x)
    lib.tanh_scalar_vector(n=x.numel(), x=x.data_ptr(), y=out.data_ptr())
    return out


def _rows(name: str, t: torch.Tensor, n: int) -> torch.Tensor:
    """``t`` as ``(M, n)`` rows with unit column stride (a view where it can be)."""
    _check(name, t)
    if t.shape[-1] != n:
        raise ValueError(f"{name}'s last dim must be {n}, got {tuple(t.shape)}")
    if t.dim() == 2 and (t.stride(1) == 1 or n == 1):
        return t
    try:
        return t.view(-1, n)
    except RuntimeError:
        return t.reshape(-1, n)


def layer_norm(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    eps: float,
    out: torch.Tensor | None = None,
    source: Path | None = None,
) -> torch.Tensor:
    """Layer norm over the last dim in fixed order: ``(..., N) → (..., N)``, the same bits on every CPU.

    Defined lane by lane (``norms.c``): 16 partial sums ``s[j % 16]`` over the features in order,
    a fixed tree over the 16, ``mean = s / N``; the same for ``fma(d, d, q)`` with ``d = x - mean``;
    ``rstd = 1 / sqrt(var + eps)``; ``y = ((x - mean) * rstd) * weight + bias``. Within float
    rounding of ``torch.nn.functional.layer_norm`` (which sums by Welford's method in torch's
    own order, one that changes with torch's vector width). ``weight``/``bias``: ``(N,)``.
    ``out`` may be ``x`` (in place). Returns ``out`` (allocated like ``x`` when None).
    """
    lib = library(source)
    if lib is None:
        raise RuntimeError(unavailable(source) or "fixed-order kernel unavailable")
    n = int(x.shape[-1])
    for name, t in (("weight", weight), ("bias", bias)):
        _check(name, t)
        if tuple(t.shape) != (n,):
            raise ValueError(f"{name} must be ({n},), got {tuple(t.shape)}")
    weight, bias = weight.contiguous(), bias.contiguous()
    rows = _rows("x", x, n)
    if out is None:
        out = torch.empty(x.shape)
    if tuple(out.shape) != tuple(x.shape):
        raise ValueError(f"out must be {tuple(x.shape)}, got {tuple(out.shape)}")
    dst = _rows("out", out, n)
    if dst.data_ptr() != out.data_ptr():  # a copy: the rows written would not be out's
        raise ValueError("out must be viewable as (rows, N) with contiguous rows")
    lib.layernorm(
        M=rows.shape[0], N=n, X=rows.data_ptr(), ldx=rows.stride(0), w=weight.data_ptr(), b=bias.data_ptr(),
        eps=float(eps), Y=dst.data_ptr(), ldy=dst.stride(0), threads=torch.get_num_threads(),
    )  # fmt: skip
    return out


def layer_norm_scalar(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float, source: Path | None = None
) -> torch.Tensor:
    """:func:`layer_norm`'s definition in scalar code, row by row (``fx_layernorm_scalar``): ``(M, N) → (M, N)``."""
    lib = library(source)
    if lib is None:
        raise RuntimeError(unavailable(source) or "fixed-order kernel unavailable")
    x = x.contiguous()
    out = torch.empty(x.shape)
    lib.layernorm_scalar(
        M=x.shape[0], N=x.shape[1], X=x.data_ptr(), ldx=x.stride(0), w=weight.contiguous().data_ptr(),
        b=bias.contiguous().data_ptr(), eps=float(eps), Y=out.data_ptr(), ldy=out.stride(0),
    )  # fmt: skip
    return out


def _flags(accumulate: bool, relu: bool) -> int:
    """The kernel's epilogue flags (``FX_ACCUMULATE`` 1, ``FX_RELU`` 2)."""
    return int(accumulate) | (2 if relu else 0)


def gemm_scalar(
    a: torch.Tensor,
    b: torch.Tensor,
    bias: torch.Tensor | None = None,
    source: Path | None = None,
    relu: bool = False,
) -> torch.Tensor:
    """The definition, one ``fmaf`` at a time (``fx_gemm_scalar``): ``(M, K) @ (K, N) → (M, N)``,
    then ``relu`` if asked. It is what the fast paths are checked against."""
    lib = library(source)
    if lib is None:
        raise RuntimeError(unavailable(source) or "fixed-order kernel unavailable")
    a, b = a.contiguous(), b.contiguous()
    out = torch.empty(a.shape[0], b.shape[1])
    bias = bias.contiguous() if bias is not None else None
    lib.gemm_scalar(
        M=a.shape[0], N=b.shape[1], K=a.shape[1], A=a.data_ptr(), lda=a.stride(0), B=b.data_ptr(),
        rsb=b.stride(0), csb=1, bias=bias.data_ptr() if bias is not None else None, C=out.data_ptr(),
        ldc=out.stride(0), flags=_flags(False, relu),
    )  # fmt: skip
    return out


def probe_inputs(m: int, k: int, n: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inputs that are the same on every machine (an integer hash, no RNG library): ``a (m, k)``,
    ``b (k, n)``, ``bias (n,)``, float32 in [-1, 1) with full 24-bit mantissas."""

    def values(count: int, salt: int) -> torch.Tensor:
        i = torch.arange(count, dtype=torch.int64)
        u = ((i + salt * 1_000_003 + seed * 7_919) * 2654435761 + 40503) % (1 << 32)
        u = (u ^ (u >> 15)) * 2246822519 % (1 << 32)
        return ((u >> 8).to(torch.float64) / float(1 << 23) - 1.0).to(torch.float32)

    return values(m * k, 1).view(m, k), values(k * n, 2).view(k, n), values(n, 3)


KNOWN_ANSWER = (
    (13, 131, 37),
    "d09d27d7f10617a1",
)
"""Shape ``(M, K, N)`` of :func:`probe_inputs` and the first 16 hex digits of the SHA-256 of
``a @ b + bias`` under the definition (computed by the exact rational oracle in
``tests/test_fixedgemm.py``): what every CPU's kernel must give."""


def answer_digest(out: torch.Tensor) -> str:
    """First 16 hex digits of the SHA-256 of a float32 tensor's bytes (little-endian)."""
    return hashlib.sha256(out.contiguous().numpy().astype("<f4").tobytes()).hexdigest()[:16]


def self_check(source: Path | None = None) -> tuple[bool, str]:
    """Whether this machine's kernel computes the definition: ``(ok, one line)``.

    Every path this CPU has (AVX-512, AVX2+FMA, scalar), 1 and 2 threads, odd shapes (M, N, K
    not multiples of any tile), bias and residual accumulation, against the scalar ``fmaf``
    chain (the ReLU epilogue against ``torch.relu``, the fused MLP against its two chains, the layer
    norm and the layer norm fused into a product against the scalar layer norm, the fused attention
    against the chains around the scalar softmax, the tanh against the scalar tanh); and the known answer
    (:data:`KNOWN_ANSWER`). A kernel that sums K in another order or does not fuse fails it. Takes milliseconds.
    """
    lib = library(source)
    if lib is None:
        return False, unavailable(source) or "fixed-order kernel unavailable"
    best = int(lib.isa_in_use())
    threads = torch.get_num_threads()
    try:
        for level in range(best, -1, -1):
            set_isa(level, source)
            for t in (1, 2):
                torch.set_num_threads(t)
                for m, kk, n in ((1, 1, 1), (5, 19, 37), (13, 131, 70), (67, 130, 33)):
                    a, b, bias = probe_inputs(m, kk, n)
                    want = gemm_scalar(a, b, bias, source=source)
                    got = gemm(a, b, bias, source=source)
                    acc = torch.ones(m, n)
                    gemm(a, b, bias, out=acc, accumulate=True, source=source)
                    relu = gemm(a, b, bias, relu=True, source=source)
                    fused = torch.ones(m, kk)  # the MLP kernel: a (m, kk) stream through n hidden units
                    mlp(a, Packed(b, source), bias, Packed(b.t().contiguous(), source), a[0], fused, source=source)
                    unfused = torch.ones(m, kk) + gemm_scalar(torch.relu(want), b.t(), a[0], source=source)
                    ln = (b[:, 0].contiguous(), a[0].contiguous(), 1e-5)  # a layer norm of a's kk features
                    normed = layer_norm_scalar(a, *ln, source=source)
                    keys = b.t().contiguous()  # attention: m queries of a against n keys (and values) of b
                    hidden = torch.arange(m)[:, None] + torch.arange(n) % 3 == 1
                    mask = torch.zeros(m, n).masked_fill_(hidden, float("-inf"))
                    mask[:, 0] = 0.0
                    weights = softmax_scalar(gemm_scalar(a, b, source=source), 0.125, mask, source=source)
                    kv = keys[None, None]
                    attended = attention(a[None, None], kv, kv, mask[None, None], 0.125, source=source)
                    if not (
                        torch.equal(got, want)
                        and torch.equal(acc, torch.ones(m, n) + want)
                        and torch.equal(relu, torch.relu(want))
                        and torch.equal(fused, unfused)
                        and torch.equal(layer_norm(a, *ln, source=source), normed)
                        and torch.equal(ln_gemm(a, ln, Packed(b, source), bias, source=source), gemm(normed, b, bias))
                        and torch.equal(attended[0, 0], gemm_scalar(weights, keys, source=source))
                        and torch.equal(tanh_(want.clone(), source=source), tanh_scalar(want, source=source))
                    ):
                        return False, (
                            f"fixed-order kernel ({ISAS[level]}, {t} threads) differs from the fmaf chain or the "
                            f"scalar layer norm, softmax or tanh at M={m} K={kk} N={n}: "
                            "it does not compute the definition"
                        )
        set_isa(None, source)
        (m, kk, n), digest = KNOWN_ANSWER
        a, b, bias = probe_inputs(m, kk, n)
        got_digest = answer_digest(gemm(a, b, bias, source=source))
        if got_digest != digest:
            return False, f"fixed-order kernel gives known answer {got_digest}, not {digest}"
    finally:
        set_isa(None, source)
        torch.set_num_threads(threads)
    what = "the fmaf chain, the scalar layer norm, softmax and tanh, and the known answer"
    return True, f"fixed-order kernel ({ISAS[best]}) equals {what}"
