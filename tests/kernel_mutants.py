"""Deliberately wrong kernels for the mutation tests: the shipped sources with one edit, built apart.

Each mutant is a list of ``(source, old, new, count)`` edits applied to a copy of
``harness/kernels/`` (``old`` must occur exactly ``count`` times, so a change to the kernels that
moves a mutation's target fails here loudly instead of building the real kernel under a mutant's
name). The product ships no trace of them: :func:`source` writes the copy, and
``fixedgemm.library(source)`` or ``HARNESS_KERNEL_SOURCE`` builds it.

- ``reversed-k``: every fast path's chain runs over k from K-1 down to 0 (the definition's
  scalar loop left as it is): the order of a sum, which a BLAS is free to choose;
- ``unfused``: every FMA of the products (vector and scalar, the definition's too) is a multiply
  then an add (two roundings): only the known answer and an outside oracle can catch it;
- ``avx2-tanh``: the AVX2 path's tanh multiplies by a reciprocal instead of dividing (that path
  alone: what only an AVX2-only CPU would see).
"""

from __future__ import annotations

import shutil
from pathlib import Path

KERNELS = Path(__file__).resolve().parents[1] / "harness" / "kernels"

UNFUSED = """#include "fx.h"
#undef _mm512_fmadd_ps
#define _mm512_fmadd_ps(a, b, c) _mm512_add_ps(_mm512_mul_ps((a), (b)), (c))
#define _mm256_fmadd_ps(a, b, c) _mm256_add_ps(_mm256_mul_ps((a), (b)), (c))
#define fmaf(a, b, c) ((a) * (b) + (c))
"""

MUTANTS: dict[str, list[tuple[str, str, str, int]]] = {
    "reversed-k": [("products.c", "for (int k = 0; k < K; k++) {", "for (int k = K - 1; k >= 0; k--) {", 5)],
    "unfused": [("products.c", '#include "fx.h"\n', UNFUSED, 1)],
    "avx2-tanh": [
        (
            "activations.c",
            "__m256 big = _mm256_div_ps(_mm256_sub_ps(one, t), _mm256_add_ps(one, t));",
            "__m256 big = _mm256_mul_ps(_mm256_sub_ps(one, t), _mm256_div_ps(one, _mm256_add_ps(one, t)));",
            1,
        )
    ],
}


def source(name: str, root: Path) -> Path:
    """Write mutant ``name``'s sources into ``root/name`` (once) and return that folder."""
    folder = root / name
    if folder.is_dir():
        return folder
    tmp = root / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(KERNELS, tmp, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    for file, old, new, count in MUTANTS[name]:
        text = (tmp / file).read_text()
        found = text.count(old)
        if found != count:
            raise AssertionError(f"mutant {name}: {old!r} occurs {found} times in {file}, not {count}")
        (tmp / file).write_text(text.replace(old, new))
    tmp.rename(folder)
    return folder
