"""Other CPUs on this one: the exact regression subset under an emulated AVX2-only CPU and the scalar path.

Every library in an fp32 episode that picks code by the CPU it runs on is masked, in a fresh
interpreter (each reads its mask once, at start-up):

- the fixed-order kernel's path: ``HARNESS_KERNEL_ISA`` (avx2 or scalar);
- numpy's run-time SIMD dispatch: ``NPY_DISABLE_CPU_FEATURES`` (numpy 2.4's AVX-512 groups);
- glibc's CPU features (string functions, libm's variants, ``ld.so``'s hwcaps): ``GLIBC_TUNABLES``;
- torch's kernels: ``ATEN_CPU_CAPABILITY=avx2``; MKL and oneDNN: ``MKL_ENABLE_INSTRUCTIONS``,
  ``ONEDNN_MAX_CPU_ISA`` (the acting path calls neither: ``tests/test_fast.py`` shows it).

Under each, the first episode of every cell of ``harness regression``'s sweep must return the
committed reference's floats (written on another CPU) bit for bit. The mask is what makes this
a test of another CPU: a kernel whose AVX2 path alone computes something else (the ``avx2-tanh``
mutant, its start-up self-check switched off here) fails it under the emulation and, on a machine
with AVX-512, passes unseen with the kernel's mask switched off.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.kernels import fixedgemm

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(fixedgemm.library() is None, reason="no C compiler: fixed-order kernel not built")

NO_AVX512_GLIBC = "glibc.cpu.hwcaps=" + ",".join(
    f"-{f}" for f in ("AVX512F", "AVX512CD", "AVX512BW", "AVX512DQ", "AVX512VL", "AVX512_BF16", "AVX512_VNNI")
)
AVX2_ONLY = {
    "HARNESS_KERNEL_ISA": "avx2",
    "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR",
    "GLIBC_TUNABLES": NO_AVX512_GLIBC,
    "ATEN_CPU_CAPABILITY": "avx2",
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
}
"""An AMD EPYC Zen 3 / Intel before Sapphire Rapids, as far as every library here can tell."""
SCALAR = AVX2_ONLY | {"HARNESS_KERNEL_ISA": "scalar"}
"""The kernel's scalar ``fmaf`` path (what a CPU without AVX2 or an ARM CPU runs) on the same machine."""
CPUS = {"avx2-only": AVX2_ONLY, "scalar": SCALAR}
PLAYED = {"avx2-only": ["hopper", "walker2d", "halfcheetah"], "scalar": ["hopper"]}
"""The cells each emulation plays (the scalar path is about 15x slower: hopper's three cells only)."""

HAS_AVX512 = "avx512f" in (Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else "")
X86 = fixedgemm.isa() in ("AVX2+FMA", "AVX-512")

PLAY = """
import json, sys
import harness
from harness.core import numerics
from harness.kernels import fixedgemm
if {no_self_check}:
    numerics._KERNEL = (True, "self-check switched off by the test")  # let a mutant kernel run
from harness.commands import regression
import numpy as np, torch
envs = {envs!r}
ref = regression.read_reference()
ref["rows"] = [r for r in ref["rows"] if r["env"] in envs]
rows = regression.run(episodes={episodes}, envs=envs)
prints = {{e: fp for e, fp in regression.fingerprints().items() if e in envs}}
_, lines, failed = regression.check(ref, rows, prints, mode="exact")
feats = np._core._multiarray_umath.__cpu_features__
print(json.dumps({{"failed": failed, "lines": lines, "isa": fixedgemm.isa(),
    "numpy_avx512": bool(feats.get("AVX512F")), "torch": str(torch.backends.cpu.get_cpu_capability()),
    "platform": regression.platform()}}))
"""


ENVS = ["hopper", "walker2d", "halfcheetah"]


def play(env: dict[str, str], episodes: int = 1, no_self_check: bool = False, envs: list[str] = ENVS) -> dict:
    """The exact check of the first ``episodes`` of every cell of ``envs`` in a fresh interpreter under ``env``."""
    base = {k: v for k, v in os.environ.items() if k not in {*AVX2_ONLY, "HARNESS_KERNEL_SOURCE"}}
    code = PLAY.format(episodes=episodes, no_self_check=no_self_check, envs=list(envs))
    done = subprocess.run(
        [sys.executable, "-c", code], env=base | env, capture_output=True, text=True, cwd=ROOT, timeout=900
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.skipif(not X86, reason="the emulated CPUs are x86-64 ones")
@pytest.mark.parametrize("cpu", sorted(CPUS))
def test_the_exact_subset_is_the_reference_on_other_cpus(cpu):
    got = play(CPUS[cpu], envs=PLAYED[cpu])
    assert got["isa"] == {"avx2-only": "AVX2+FMA", "scalar": "scalar fmaf"}[cpu]  # the masks took hold
    assert got["torch"] == "AVX2"  # (numpy's __cpu_features__ lists the hardware, not its masked dispatch)
    assert got["platform"]["numerics"].startswith("pinned (fixed-order kernel, definition")  # not the ISA
    assert not got["failed"], "\n".join(got["lines"])


@pytest.mark.slow
@pytest.mark.skipif(not X86, reason="the emulated CPUs are x86-64 ones")
def test_an_avx2_only_divergence_is_caught_under_the_mask_and_only_there(kernel_mutant):
    """A kernel whose AVX2 tanh differs: the emulated AVX2-only CPU sees it; with the kernel's mask
    switched off a machine with AVX-512 runs its AVX-512 path and the divergence goes unseen."""
    mutant = {"HARNESS_KERNEL_SOURCE": str(kernel_mutant("avx2-tanh"))}
    got = play(AVX2_ONLY | mutant, no_self_check=True)
    assert got["isa"] == "AVX2+FMA" and got["failed"]
    assert any("actions changed" in line for line in got["lines"])
    if HAS_AVX512:
        unmasked = {k: v for k, v in AVX2_ONLY.items() if k != "HARNESS_KERNEL_ISA"} | mutant
        got = play(unmasked, no_self_check=True)
        assert got["isa"] == "AVX-512" and not got["failed"], "\n".join(got["lines"])


def test_a_bad_kernel_isa_mask_is_refused_in_one_line(monkeypatch):
    monkeypatch.setenv(fixedgemm.ISA_ENV, "avx9")
    with pytest.raises(ValueError, match="HARNESS_KERNEL_ISA must be one of scalar, avx2, avx512, got 'avx9'"):
        fixedgemm.isa_cap()
    monkeypatch.setenv(fixedgemm.ISA_ENV, "AVX2")
    assert fixedgemm.isa_cap() == 1
