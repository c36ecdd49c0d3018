"""The regression gate: exact on the reference's platform, statistical elsewhere, with its
mutations (a 0.97-scaled action head must fail; untouched weights must pass), and the rule that a
reference changes only with a cause and a reason (checked over the git history)."""

import copy
import json
import os
import subprocess

import numpy as np
import pandas as pd
import pytest

from harness.commands import regression
from harness.io.checkpoints import embedded_names, load_checkpoint

SHIPPED = not (set(regression.TARGETS) - set(embedded_names()))
needs_embedded = pytest.mark.skipif(not SHIPPED, reason="embedded checkpoints not shipped")


@pytest.fixture
def all_cores():
    """The gate's sweeps on every core (results do not depend on the thread count: batch and
    thread invariant by construction, and the reference was written on another count)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    yield
    torch.set_num_threads(before)


def rows(scores: dict[tuple[str, float], list[float]]) -> pd.DataFrame:
    out = []
    for (env, target), values in scores.items():
        for k, v in enumerate(values):
            out.append(
                {
                    "env": env,
                    "target": target,
                    "episode": k,
                    "seed": 1000 + k,
                    "return": 10.0 * v,
                    "length": 1000,
                    "normalized_score": v,
                    "status": "ok",
                }
            )
    return pd.DataFrame(out)


def reference_of(df: pd.DataFrame, prints=None) -> dict:
    return regression.make_reference(df, prints or {"hopper": "f0"}, "test")


def test_exact_mode_flags_any_changed_episode():
    rng = np.random.default_rng(0)
    df = rows({("hopper", 800.0): list(50 + rng.normal(size=8)), ("hopper", 2000.0): list(70 + rng.normal(size=8))})
    ref = reference_of(df)
    mode, lines, failed = regression.check(ref, df, {"hopper": "f0"}, mode="exact")
    assert (mode, failed) == ("exact", False)
    one_ulp = df.copy()
    one_ulp.loc[3, "return"] = np.nextafter(one_ulp.loc[3, "return"], np.inf)
    _, lines, failed = regression.check(ref, one_ulp, {"hopper": "f0"}, mode="exact")
    assert failed and sum(line.startswith("FAIL") for line in lines) == 1 and "episode 3" in lines[0]
    _, lines, failed = regression.check(ref, df.drop(index=5), {"hopper": "f0"}, mode="exact")
    assert failed and "in the reference only" in lines[0]
    # auto picks exact only on the reference's own platform
    assert regression.check(ref, df, {"hopper": "f0"})[0] == "exact"
    other = copy.deepcopy(ref)
    other["platform"]["cpu"] = "another CPU"
    assert regression.check(other, df, {"hopper": "f0"})[0] == "statistical"


def test_auto_runs_the_exact_subset_first_whatever_the_package_versions():
    """Newer packages than the reference's: auto still runs the exact subset first; equal rows pass
    and name what changed; rows that differ name what changed, then the statistical check decides;
    with unchanged packages a differing row is a failure with no second chance."""
    rng = np.random.default_rng(2)
    cells = {("hopper", 800.0): list(50 + rng.normal(size=24)), ("hopper", 2000.0): list(70 + rng.normal(size=24))}
    df = rows(cells)
    ref = reference_of(df)
    ref["episodes"] = 24
    newer = copy.deepcopy(ref["platform"])
    newer["versions"]["transformers"] = "99.0.0"
    asked = []

    def run_rows(frame):
        def run(n):
            asked.append(n)
            return frame[frame["episode"] < n].reset_index(drop=True)

        return run

    lines, failed = regression.gate(ref, run_rows(df), {"hopper": "f0"}, now=newer)
    assert not failed and lines[0] == "mode: exact" and asked == [regression.EXACT_EPISODES]
    assert lines[-1].startswith("packages changed since the reference without effect: transformers")
    assert "-> 99.0.0" in lines[-1]
    # rows differ (one ulp) and a package changed: say so, then the statistical check (all episodes)
    nudged = df.copy()
    nudged.loc[0, "return"] = np.nextafter(nudged.loc[0, "return"], np.inf)
    asked.clear()
    lines, failed = regression.gate(ref, run_rows(nudged), {"hopper": "f0"}, now=newer)
    assert asked == [regression.EXACT_EPISODES, 24] and not failed
    assert any(line.startswith("packages changed: transformers") for line in lines)
    assert "mode: statistical" in lines
    # the same packages: a differing row fails, no statistical rerun
    asked.clear()
    lines, failed = regression.gate(ref, run_rows(nudged), {"hopper": "f0"}, now=ref["platform"])
    assert failed and asked == [regression.EXACT_EPISODES] and "mode: statistical" not in lines
    # another CPU model where the numerics are not portable: statistical from the start
    other = copy.deepcopy(ref["platform"]) | {"cpu": "another CPU"}
    asked.clear()
    lines, _ = regression.gate(ref, run_rows(df), {"hopper": "f0"}, now=other)
    assert lines[0] == "mode: statistical" and asked == [24]


def test_statistical_mode_fails_on_a_real_drop_only():
    rng = np.random.default_rng(1)
    base = {
        ("hopper", 800.0): list(50 + 5 * rng.normal(size=24)),
        ("hopper", 2000.0): list(70 + 5 * rng.normal(size=24)),
    }
    ref = reference_of(rows(base))
    fresh = rows({k: list(np.mean(v) + 5 * rng.normal(size=24)) for k, v in base.items()})
    assert regression.check(ref, fresh, {"hopper": "f0"}, mode="statistical")[2] is False
    dropped = rows({k: list(np.asarray(v) - 12) for k, v in base.items()})
    _, lines, failed = regression.check(ref, dropped, {"hopper": "f0"}, mode="statistical")
    assert failed and any(line.startswith("FAIL hopper/all") for line in lines)
    # a drop smaller than MIN_DROP is reported but does not fail
    small = rows({k: list(np.asarray(v) - 0.5 * regression.MIN_DROP) for k, v in base.items()})
    assert regression.check(ref, small, {"hopper": "f0"}, mode="statistical")[2] is False


def test_statistical_mode_fails_when_the_target_stops_steering():
    """A checkpoint whose mean holds but whose response to the target goes flat fails on
    rho and slope (it would pass the mean check alone: no cell drops by more than MIN_DROP)."""
    rng = np.random.default_rng(2)
    means = {800.0: 46.0, 2000.0: 50.0, 3600.0: 54.0}
    ref = reference_of(rows({("hopper", t): list(m + 2 * rng.normal(size=48)) for t, m in means.items()}))
    flat = rows({("hopper", t): list(50 + 2 * rng.normal(size=48)) for t in means})
    _, lines, failed = regression.check(ref, flat, {"hopper": "f0"}, mode="statistical")
    assert failed and {"hopper/rho", "hopper/slope"} <= {line.split()[1] for line in lines if line.startswith("FAIL")}
    assert not any(line.startswith("FAIL hopper/") and "/rho" not in line and "/slope" not in line for line in lines)
    assert regression.check(ref, flat, {"hopper": "f0"}, mode="statistical", calibration=False)[2] is False
    same = rows({("hopper", t): list(m + 2 * rng.normal(size=48)) for t, m in means.items()})
    _, lines, failed = regression.check(ref, same, {"hopper": "f0"}, mode="statistical")
    assert not failed and any(line.split()[1] == "hopper/slope" for line in lines)


def test_a_changed_checkpoint_fails_in_either_mode():
    df = rows({("hopper", 800.0): [50.0, 51.0, 49.0]})
    ref = reference_of(df)
    for mode in ("exact", "statistical"):
        _, lines, failed = regression.check(ref, df, {"hopper": "f1"}, mode=mode)
        assert failed and "checkpoint changed" in lines[0]


def test_reference_change_rule():
    df = rows({("hopper", 800.0): [50.0, 51.0, 49.0], ("walker2d", 1000.0): [30.0, 31.0, 29.0]})
    old = regression.make_reference(df, {"hopper": "a", "walker2d": "b"}, "first")
    moved = df.copy()
    moved.loc[moved["env"] == "hopper", "normalized_score"] -= 3.0
    same_weights = regression.make_reference(moved, {"hopper": "a", "walker2d": "b"}, "lowered hopper")
    assert regression.unexplained_changes(old, same_weights) == [
        "hopper: reference rows changed but its weights, the platform and the revision did not"
    ]
    new_weights = regression.make_reference(moved, {"hopper": "c", "walker2d": "b"}, "retrained hopper")
    assert regression.unexplained_changes(old, new_weights) == []
    no_reason = regression.make_reference(moved, {"hopper": "c", "walker2d": "b"}, "first")
    assert regression.unexplained_changes(old, no_reason) == [
        "hopper: reference rows changed (weights) without a new reason"
    ]
    revised = copy.deepcopy(same_weights)
    revised["platform"]["evaluation_revision"] += 1
    assert regression.unexplained_changes(old, revised) == []


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=regression.REFERENCE.parents[2], capture_output=True, text=True, check=True
    ).stdout


def test_committed_references_change_only_with_a_cause():
    """Every committed version of regression.json (and the working copy) against the one before."""
    rel = regression.REFERENCE.relative_to(regression.REFERENCE.parents[2]).as_posix()
    try:
        commits = _git("log", "--format=%H", "--", rel).split()
    except (subprocess.CalledProcessError, FileNotFoundError):
        pytest.skip("no git history here")
    versions = []
    for sha in reversed(commits):
        try:
            versions.append((sha[:8], json.loads(_git("show", f"{sha}:{rel}"))))
        except (subprocess.CalledProcessError, ValueError):
            continue
    versions.append(("working copy", json.loads(regression.REFERENCE.read_text())))
    findings = []
    for (_, old), (name, new) in zip(versions, versions[1:], strict=False):
        findings += [f"{name}: {f}" for f in regression.unexplained_changes(old, new)]
    assert not findings, "\n".join(findings)


def test_write_needs_a_reason(capsys):
    assert regression.main(["--write"]) == 2
    err = capsys.readouterr().err
    assert "--reason" in err and "Traceback" not in err


@pytest.mark.slow
@needs_embedded
def test_embedded_checkpoints_pass_the_gate(all_cores):
    """The gate as CI runs it (auto: exact on the reference's platform, else statistical)."""
    reference = regression.read_reference()
    mode = regression.resolve_mode(reference)
    rows = regression.run_embedded(episodes=regression.gate_episodes(reference, mode))
    mode, lines, failed = regression.check(reference, rows, regression.fingerprints(), mode)
    print(mode, "\n".join(lines), sep="\n")
    assert not failed, "\n".join(lines)


def _scaled_head(env: str, factor: float):
    ckpt = load_checkpoint(env)
    for name, p in ckpt.model.named_parameters():
        if name.startswith("predict_action.0"):
            p.data.mul_(factor)
    return ckpt


@pytest.mark.slow
@needs_embedded
def test_gate_fails_at_a_0_97_action_head(all_cores):
    """The mutation: the embedded action heads scaled by 0.97. Only halfcheetah's scores move at
    that scale (hopper and walker2d hold theirs: benchmarks/checks/regression_power.py measured every
    env), so the test runs the gate's halfcheetah cells with the other two untouched. Exact mode
    fails on the changed episodes; the statistical mode (what another machine runs) fails on the
    drop. That is deterministic on the reference's platform; elsewhere it is one draw of a test
    whose measured power is 1.0 at 48 episodes (0.92 at 16), so a rare miss there skips."""
    reference = regression.read_reference()
    weak = _scaled_head("halfcheetah", 0.97)
    today = regression.run(checkpoints={"halfcheetah": weak}, episodes=reference["episodes"], envs=["halfcheetah"])
    untouched = regression.reference_rows(reference).assign(status="ok")  # the others as they were
    today = pd.concat([untouched[untouched["env"] != "halfcheetah"], today], ignore_index=True)
    prints = reference["fingerprints"]  # the weights' hash unchanged: the gate must see the results
    _, lines, failed = regression.check(reference, today, prints, mode="exact")
    assert failed and all("halfcheetah" in line for line in lines)
    _, lines, failed = regression.check(reference, today, prints, mode="statistical")
    print("\n".join(lines))
    if not failed and reference["platform"] != regression.platform():
        pytest.skip("statistical gate missed the 0.97 mutation on this platform (measured power: 1.0 at 48 episodes)")
    assert failed, "\n".join(lines)


@pytest.mark.slow
@needs_embedded
@pytest.mark.xfail(strict=False, reason="revision 6: walker2d/4500 bf16 vs fp32 +16.5, CI 16.3; to revisit")
def test_bf16_scores_like_fp32(all_cores):
    """--precision bf16 on the embedded checkpoints: same seeds (the gate's exact episodes),
    every cell's mean normalised score within the episode-to-episode 95% CI of fp32's."""
    n = regression.EXACT_EPISODES
    lines = regression.compare_precisions(regression.run_embedded("fp32", n), regression.run_embedded("bf16", n))
    print("\n".join(lines))
    assert not [line for line in lines if line.startswith("FAIL")], "\n".join(lines)


def test_precision_check_sees_a_real_shift_and_not_noise():
    """compare_precisions (Bonferroni over cells): passes a second sample of the same scores,
    fails a 15-point drop in one cell (mutation)."""
    rng = np.random.default_rng(0)
    cells = [("hopper", 800.0), ("hopper", 2000.0), ("walker2d", 1000.0)]
    frame = lambda shift: pd.DataFrame(  # noqa: E731
        [
            {"env": e, "target": t, "normalized_score": 50 + 5 * rng.normal() - (shift if (e, t) == cells[1] else 0)}
            for e, t in cells
            for _ in range(12)
        ]
    )
    a = frame(0.0)
    assert not any(line.startswith("FAIL") for line in regression.compare_precisions(a, frame(0.0)))
    lines = regression.compare_precisions(a, frame(15.0))
    assert [line.split()[1] for line in lines if line.startswith("FAIL")] == ["hopper/2000"]
