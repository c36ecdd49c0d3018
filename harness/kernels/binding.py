"""The kernels' C entry points, bound by name: every argument is passed as a keyword.

:data:`SIGNATURES` names each entry point's parameters as the C sources do, with their C types;
:class:`Kernel` loads a built library and exposes each entry point as a method that takes exactly
those names (``kernel.gemm(b0=1, b1=1, M=m, ...)``), so two swapped ints are a ``TypeError`` of a
wrong name, not wrong numbers. ``tests/test_kernels.py`` reads the C definitions and checks that
they have these names, in this order, with these types.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from pathlib import Path
from typing import Any

_P = ctypes.c_void_p
_L = ctypes.c_long
_I = ctypes.c_int
_F = ctypes.c_float


def _params(spec: str) -> tuple[tuple[str, Any], ...]:
    """``"M:i N:i A:p eps:f"`` → ``(("M", c_int), ...)`` (i int, l long, p pointer, f float)."""
    kinds = {"i": _I, "l": _L, "p": _P, "f": _F}
    return tuple((name, kinds[kind]) for name, kind in (part.split(":") for part in spec.split()))


_ROWS4 = "{0}:p {0}s0:l {0}s1:l ld{0}:l"
SIGNATURES: dict[str, tuple[Any, tuple[tuple[str, Any], ...]]] = {
    "fx_gemm": (
        _I,
        _params(
            "b0:i b1:i M:i N:i K:i A:p sa0:l sa1:l lda:l B:p sb0:l sb1:l rsb:l csb:l bias:p C:p sc0:l sc1:l "
            "ldc:l flags:i threads:i bp:p"
        ),
    ),
    "fx_gemm_scalar": (None, _params("M:i N:i K:i A:p lda:l B:p rsb:l csb:l bias:p C:p ldc:l flags:i")),
    "fx_packed_size": (_L, _params("N:i K:i")),
    "fx_pack_b": (_I, _params("N:i K:i B:p rsb:l csb:l dst:p")),
    "fx_mlp": (
        _I,
        _params("M:i H:i I:i Y:p ldy:l p1:p b1:p p2:p b2:p X:p ldx:l relu:i threads:i lnw:p lnb:p eps:f"),
    ),
    "fx_ln_gemm": (
        _I,
        _params("M:i N:i K:i X:p ldx:l lnw:p lnb:p eps:f bp:p bias:p C:p ldc:l flags:i threads:i"),
    ),
    "fx_layernorm": (_I, _params("M:i N:i X:p ldx:l w:p b:p eps:f Y:p ldy:l threads:i")),
    "fx_layernorm_scalar": (None, _params("M:i N:i X:p ldx:l w:p b:p eps:f Y:p ldy:l")),
    "fx_attention": (
        _I,
        _params(
            "windows:i heads:i Tq:i T:i D:i q:p sq0:l sq1:l ldq:l k:p sk0:l sk1:l ldk:l v:p sv0:l sv1:l ldv:l "
            "mask:p sm0:l ldm:l scale:f o:p so0:l so1:l ldo:l threads:i"
        ),
    ),
    "fx_softmax_scalar": (None, _params("M:i N:i s:p lds:l scale:f mask:p ldm:l")),
    "fx_exp_vector": (None, _params("n:i x:p y:p")),
    "fx_tanh_vector": (None, _params("n:i x:p y:p")),
    "fx_tanh_scalar_vector": (None, _params("n:i x:p y:p")),
    "fx_openmp": (_I, ()),
    "fx_isa_in_use": (_I, ()),
    "fx_set_isa": (None, _params("isa:i")),
    "fx_version": (_I, ()),
}
"""Entry point → (return type, ``(parameter name, C type)`` in the C order)."""


def _named(fn: Any, name: str, names: tuple[str, ...]) -> Callable[..., Any]:
    """``fn`` called with keywords only: exactly ``names``, none missing, none extra."""
    expected = frozenset(names)

    def call(**kwargs: Any) -> Any:
        if kwargs.keys() != expected:
            missing, extra = sorted(expected - kwargs.keys()), sorted(kwargs.keys() - expected)
            raise TypeError(f"{name}: missing {missing}, unknown {extra}")
        return fn(*[kwargs[n] for n in names])

    call.__name__ = name
    return call


class Kernel:
    """A loaded kernel library: ``kernel.gemm(**named)`` calls ``fx_gemm`` (every entry point of
    :data:`SIGNATURES`, ``fx_`` dropped)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.cdll = ctypes.CDLL(str(path))
        for name, (restype, params) in SIGNATURES.items():
            fn = getattr(self.cdll, name)
            fn.argtypes, fn.restype = [t for _, t in params], restype
            setattr(self, name[3:], _named(fn, name, tuple(n for n, _ in params)))

    def __getattr__(self, name: str) -> Callable[..., Any]:  # the entry points are set in __init__
        raise AttributeError(f"the kernel has no entry point fx_{name}")
