"""harness trace: one episode's floats step by step, and the first step and component where two traces part."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.engine.policy import DTPolicy
from harness.engine.rollout import EpisodeSpec, run_episodes
from harness.engine.trace import describe_difference, first_difference, trace_episode
from harness.io.checkpoints import load_checkpoint
from harness.world.envs import resolve_env

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def hopper_trace() -> dict:
    return trace_episode(load_checkpoint("hopper"), resolve_env("hopper"), 3600.0, 1000, max_steps=40)


def test_a_trace_is_the_sweeps_episode(hopper_trace):
    """Its return and length are the rollout's for the same seed and target, bit for bit, and every
    step holds every component in computing order."""
    (row,) = run_episodes(
        DTPolicy(load_checkpoint("hopper")),
        "Hopper-v4",
        [EpisodeSpec(3600.0, 1000, 0)],
        num_envs=1,
        max_episode_steps=40,
    )
    assert (hopper_trace["return"], hopper_trace["length"]) == (row.ret, row.length)
    assert len(hopper_trace["steps"]) == row.length
    layers = [f"layer{i}" for i in range(load_checkpoint("hopper").model.config.n_layer)]
    assert hopper_trace["components"] == [
        "observation",
        "state",
        "embed",
        *layers,
        "final",
        "logits",
        "action",
        "reward",
    ]
    assert all(set(hopper_trace["components"]) <= set(s) for s in hopper_trace["steps"])
    assert sum(s["reward_value"] for s in hopper_trace["steps"]) == pytest.approx(row.ret)


def test_the_diff_names_the_first_step_and_component(hopper_trace):
    assert first_difference(hopper_trace, copy.deepcopy(hopper_trace)) is None
    assert describe_difference(hopper_trace, hopper_trace).startswith("identical: 40 steps")
    other = copy.deepcopy(hopper_trace)
    other["steps"][17]["layer1"] = "0" * 16
    other["steps"][18]["state"] = "0" * 16  # later differences are consequences
    assert first_difference(hopper_trace, other) == (17, "layer1")
    line = describe_difference(hopper_trace, other)
    assert line.startswith("first difference: step 17, component layer1 (observation, state, embed, layer0 equal)")
    shorter = copy.deepcopy(hopper_trace)
    del shorter["steps"][30:]
    assert first_difference(hopper_trace, shorter) == (30, "length")


def harness(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("HARNESS_NUMERICS", "MKL_CBWR", "ATEN_CPU_CAPABILITY")}
    return subprocess.run(
        [sys.executable, "-m", "harness.commands.main", "trace", *args],
        capture_output=True, text=True, cwd=cwd, env=env, timeout=300,
    )  # fmt: skip


@pytest.mark.slow
def test_trace_against_native_numerics_names_a_step_and_component(tmp_path):
    """The real command line: a pinned trace against itself is identical (exit 0); against the same
    episode under --numerics native it names a step and a component (exit 1)."""
    ep = ["--env", "hopper", "--target", "3600", "--seed", "1000", "--max-steps", "60"]
    for name, extra in (("a.json", []), ("b.json", []), ("native.json", ["--numerics", "native"])):
        done = harness(*ep, *extra, "--out", name, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(f"wrote {name}: Hopper-v4")
    same = harness("--diff", "a.json", "b.json", cwd=tmp_path)
    assert same.returncode == 0 and "identical: 60 steps" in same.stdout
    differ = harness("--diff", "a.json", "native.json", cwd=tmp_path)
    assert differ.returncode == 1, differ.stderr
    assert "first difference: step 0, component " in differ.stdout and "numerics:" in differ.stdout
    trace = json.loads((tmp_path / "native.json").read_text())
    assert trace["numerics"]["mode"] == "native" and trace["machine"] and trace["versions"]["torch"]


def test_bad_input_is_one_line_and_exit_2(tmp_path):
    (tmp_path / "a.json").write_text("{}")
    done = harness("--diff", "a.json", "missing.json", cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "a.json is not a trace" in done.stderr
    done = harness("--env", "hopper", "--target", "100", "--out", "a.json", cwd=tmp_path)
    assert done.returncode == 2 and "a.json exists" in done.stderr and (tmp_path / "a.json").read_text() == "{}"
    done = harness("--env", "hopper", cwd=tmp_path)
    assert done.returncode == 2 and "--target" in done.stderr
