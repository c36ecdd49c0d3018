"""Pinned numerics (harness/core/numerics.py): in force before torch runs, switchable, said when too late.

Each case runs in a fresh interpreter: MKL and torch fix their paths when they first run, which in
this test process happened long ago.
"""

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from harness.core import numerics

ROOT = Path(__file__).resolve().parents[1]
X86_AVX2 = platform.machine() in ("x86_64", "AMD64") and "avx2" in Path("/proc/cpuinfo").read_text()
needs_x86 = pytest.mark.skipif(not X86_AVX2, reason="pinned numerics are defined for x86-64 CPUs with AVX2")


def fresh(code: str, **env: str) -> dict:
    """Run ``code`` in a new interpreter (its last line prints JSON); returns that JSON."""
    clean = {k: v for k, v in os.environ.items() if k not in ("MKL_CBWR", "ATEN_CPU_CAPABILITY", numerics.ENV_VAR)}
    clean.pop("_HARNESS_NUMERICS_SET", None)
    out = subprocess.run(
        [sys.executable, "-c", code], env=clean | env, capture_output=True, text=True, check=True, cwd=ROOT, timeout=120
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


STATE = "import json; from harness.core import numerics; print(json.dumps(numerics.state()))"


@pytest.mark.slow
@needs_x86
def test_import_harness_pins_by_default():
    s = fresh("import harness\n" + STATE)
    assert s["mode"] == "pinned" and s["in_force"] and s["portable"]
    assert (s["mkl_cbwr"], s["torch_cpu_capability"]) == ("AUTO,STRICT", "AVX2")
    assert s["products"].startswith("fixed-order products") and s["note"] is None


@pytest.mark.slow
@needs_x86
def test_modes_from_the_environment_and_switched_before_the_first_kernel():
    s = fresh("import harness\n" + STATE, HARNESS_NUMERICS="native")
    assert s["mode"] == "native" and s["in_force"] and not s["portable"] and s["mkl_cbwr"] == "OFF"
    # the command line's --numerics: applied after the imports, before any kernel
    code = "import harness.running.runner, json; from harness.core import numerics; "
    s = fresh(code + "print(json.dumps(numerics.apply('local')))")
    assert (s["mode"], s["in_force"], s["mkl_cbwr"]) == ("local", True, "AUTO,STRICT")
    assert s["torch_cpu_capability"] != "AVX2" or "avx512" not in Path("/proc/cpuinfo").read_text()
    s = fresh("import harness, json; from harness.core import numerics; print(json.dumps(numerics.apply('pinned')))")
    assert s["in_force"] and s["portable"] and s["torch_cpu_capability"] == "AVX2"


@needs_x86
def test_too_late_is_said_in_one_line_and_recorded():
    """torch multiplied before ``import harness``: where pinned rests on MKL (no kernel), the mode cannot
    hold and the state says why; with the fixed-order kernel the acting path never calls MKL or a torch
    kernel whose floats depend on the CPU, so it holds whatever ran before (on every CPU, AVX2-only ones
    included, where torch's own choice already is AVX2)."""
    early = "import torch; torch.ones(4, 4) @ torch.ones(4, 4)\nimport harness\n" + STATE
    s = fresh(early, HARNESS_FIXED_GEMM="off")
    assert s["mode"] == "pinned" and not s["in_force"] and not s["portable"]
    assert "import harness first" in s["why_not"] and "\n" not in s["why_not"]
    assert numerics.describe(s).startswith("warning: numerics: pinned requested but not in force")
    s = fresh(early)
    assert s["mode"] == "pinned" and s["in_force"] and s["portable"] and s["definition"] >= 4


@pytest.mark.slow
@needs_x86
def test_children_inherit_the_mode():
    """loky, Dask and Ray workers on this machine start from this process's environment."""
    code = (
        "import harness, json, subprocess, sys\n"
        "from harness.core import numerics\nnumerics.apply('local')\n"
        "print(subprocess.run([sys.executable, '-c', 'import json, torch; from harness.core import numerics; "
        "print(json.dumps(numerics.state()))'], capture_output=True, text=True).stdout.strip())"
    )
    s = fresh(code)
    assert (s["mode"], s["in_force"], s["mkl_cbwr"]) == ("local", True, "AUTO,STRICT")


def test_a_worker_that_cannot_hold_the_mode_refuses(monkeypatch, tiny_checkpoints):
    """A worker on another architecture (or whose torch ran first) raises instead of returning rows
    that could differ from the other workers'; ``--allow-batch-dependence`` lets it run."""
    from harness.core.errors import HarnessError
    from harness.running import parallel

    ckpt = str(tiny_checkpoints["hopper"])
    from harness.io.checkpoints import load_checkpoint

    fp = load_checkpoint(ckpt).fingerprint()
    cell = dict(env_id="Hopper-v4", checkpoint=ckpt, fingerprint=fp, target=100.0, episodes=(0,), seed=0)
    cell |= dict(num_envs=1, precision="fp32", device="cpu", threads=1)
    away = {"mode": "pinned", "in_force": False, "why_not": "pinned numerics need an x86-64 CPU with AVX2"}
    monkeypatch.setattr(parallel.numerics, "apply", lambda mode: away)
    with pytest.raises(HarnessError, match="AVX2.*--allow-batch-dependence"):
        parallel.run_cell(parallel.Cell(**cell))
    assert len(parallel.run_cell(parallel.Cell(**cell, allow_batch_dependence=True))) == 1


def test_regression_platform_names_the_mode_not_the_cpu(monkeypatch):
    """Under pinned numerics the exact gate's platform holds no CPU model (it runs on any x86-64
    CPU with AVX2); in any other mode it names the CPU again."""
    from harness.commands import regression

    pinned = {"mode": "pinned", "mkl_cbwr": "AUTO,STRICT", "torch_cpu_capability": "AVX2", "definition": 4}
    pinned |= {"products": "fixed-order products (AVX2+FMA kernel)"}
    monkeypatch.setattr(regression.numerics, "state", lambda: pinned | {"in_force": True, "portable": True})
    p = regression.platform()
    assert "cpu" not in p and "blas" not in p and p["numerics"] == "pinned (fixed-order kernel, definition 4)"
    other = pinned | {"products": "fixed-order products (AVX-512 kernel)", "torch_cpu_capability": "AVX512"}
    monkeypatch.setattr(regression.numerics, "state", lambda: other | {"in_force": True, "portable": True})
    assert regression.platform() == p  # which ISA ran the definition is not part of the platform
    assert p["evaluation_revision"] == regression.EVALUATION_REVISION
    monkeypatch.setattr(
        regression.numerics, "state", lambda: pinned | {"mode": "native", "in_force": True} | {"portable": False}
    )
    assert regression.platform()["cpu"] and regression.platform()["numerics"] == "native"


@pytest.mark.slow
@needs_x86
def test_pinned_without_its_kernel_says_so_in_one_line_and_still_runs():
    """No C compiler (or HARNESS_FIXED_GEMM=off): pinned runs torch's products, not portable, one line."""
    s = fresh("import harness\n" + STATE, HARNESS_FIXED_GEMM="off")
    assert s["mode"] == "pinned" and s["in_force"] and not s["portable"]
    assert s["products"].startswith("torch products") and "\n" not in s["note"] and "switched off" in s["note"]
    assert numerics.describe(s).startswith("warning: numerics: pinned")


@pytest.mark.slow
@needs_x86
@pytest.mark.parametrize("mutant", ["reversed-k", "unfused"])
def test_a_kernel_that_fails_its_self_check_is_not_used(mutant, kernel_mutant):
    """The start-up self-check catches a kernel that sums k in another order or does not fuse: pinned
    is then not portable, says why in one line, and the policy runs torch's products instead."""
    code = (
        "import harness, json, torch\nfrom harness.core import numerics\n"
        "from harness.engine.fast import default_products\n"
        "s = numerics.state(); s['default'] = default_products(torch.float32); print(json.dumps(s))"
    )
    s = fresh(code, HARNESS_KERNEL_SOURCE=str(kernel_mutant(mutant)))
    assert not s["portable"] and s["default"] == "torch"
    assert "does not compute the definition" in s["note"] or "known answer" in s["note"]


def test_bf16_without_bf16_arithmetic_is_refused_in_one_line(monkeypatch, tmp_path, capsys):
    """No avx512_bf16/amx_bf16: torch would emulate bf16 (an AVX2-only EPYC ran no episode in 21 min):
    exit 2, one line naming the flag that allows it, nothing written; with the flag, it is allowed."""
    from harness.commands import sweep
    from harness.running import runner

    monkeypatch.setattr(numerics, "cpu_has_bf16", lambda: False)
    out = tmp_path / "run"
    argv = ["--envs", "hopper", "--precision", "bf16", "--episodes", "1", "--targets", "100", "--out", str(out)]
    assert sweep.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no bf16 arithmetic" in err and "--allow-emulated-bf16" in err
    assert not out.exists()
    config = runner.SweepConfig(envs=["hopper"], precision="bf16", allow_emulated_bf16=True, device="cpu")
    assert runner.validate(config)
    monkeypatch.setattr(numerics, "cpu_has_bf16", lambda: True)
    assert runner.validate(runner.SweepConfig(envs=["hopper"], precision="bf16", device="cpu"))


def test_bf16_flags_are_read_from_the_cpu(monkeypatch):
    monkeypatch.setattr(numerics, "cpu_flags", lambda: {"avx2", "fma"})
    assert not numerics.cpu_has_bf16()
    for flag in ("avx512_bf16", "amx_bf16"):
        monkeypatch.setattr(numerics, "cpu_flags", lambda flag=flag: {"avx2", flag})
        assert numerics.cpu_has_bf16()
