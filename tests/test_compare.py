"""python -m harness.compare: matching, paired/unpaired statistics, verdicts, exit codes."""

import numpy as np
import pandas as pd
import pytest

from harness.analysis.comparison import probability_of_improvement
from harness.commands import compare as compare_cli
from harness.commands import sweep
from harness.core.schema import EPISODE_COLUMNS
from harness.core.stats import bootstrap_difference_ci as difference_ci

R_RANDOM, R_EXPERT = -20.272305, 3234.3  # D4RL hopper


def write_sweep(folder, scores: dict, checkpoint="c", seeds=None, status=None) -> None:
    """episodes.csv of a hopper sweep: ``scores[target]`` is a list of normalised scores."""
    rows = []
    for target, values in scores.items():
        for k, s in enumerate(values):
            seed = seeds[k] if seeds is not None else k
            ret = R_RANDOM + s / 100 * (R_EXPERT - R_RANDOM)
            rows.append(
                dict(env="hopper", env_id="Hopper-v4", checkpoint=checkpoint, target=target, episode=k, seed=seed)
                | {"return": ret, "length": 100, "terminated": True, "truncated": False, "normalized_score": s}
                | {"status": (status or {}).get((target, k), "ok"), "wall_time_s": 0.1, "error": "", "video": ""}
            )
    folder.mkdir(parents=True, exist_ok=True)
    old = folder / "episodes.csv"
    frame = pd.DataFrame(rows, columns=EPISODE_COLUMNS)
    if old.exists():
        frame = pd.concat([pd.read_csv(old, keep_default_na=False), frame])
    frame.to_csv(old, index=False)


@pytest.fixture
def base_scores():
    rng = np.random.default_rng(0)
    return {1000.0: list(30 + 8 * rng.standard_normal(16)), 3000.0: list(70 + 10 * rng.standard_normal(16))}


def test_same_results_pass_and_a_drop_fails(tmp_path, base_scores, capsys):
    write_sweep(tmp_path / "a", base_scores)
    write_sweep(tmp_path / "b", base_scores)
    assert compare_cli.main([str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    df = pd.read_csv(tmp_path / "b" / "compare" / "compare.csv")
    assert (df["diff"] == 0).all() and df["paired"].all() and set(df["verdict"]) == {"no change"}
    assert (tmp_path / "b" / "compare" / "compare.png").is_file() and (
        tmp_path / "b" / "compare" / "compare.svg"
    ).is_file()
    worse = {t: [s - 12 + np.sin(k) for k, s in enumerate(v)] for t, v in base_scores.items()}
    write_sweep(tmp_path / "c", worse)
    capsys.readouterr()
    assert compare_cli.main([str(tmp_path / "a"), str(tmp_path / "c"), "--markdown"]) == 1
    printed = capsys.readouterr().out
    assert printed.startswith("| env | target |") and "drop" in printed
    df = pd.read_csv(tmp_path / "c" / "compare" / "compare.csv")
    assert list(df["verdict"]) == ["drop", "drop", "drop"] and list(df["level"]) == ["cell", "cell", "env"]
    assert (df.loc[df["level"] == "cell", "prob_improvement"] < 0.2).all()
    # the same drop below --min-drop is significant but not a failure
    assert (
        compare_cli.main([str(tmp_path / "a"), str(tmp_path / "c"), "--min-drop", "15", "--out", str(tmp_path / "o")])
        == 0
    )
    assert set(pd.read_csv(tmp_path / "o" / "compare.csv")["verdict"]) == {"no change"}


def test_other_seeds_are_compared_unpaired(tmp_path, base_scores):
    write_sweep(tmp_path / "a", base_scores)
    write_sweep(tmp_path / "b", base_scores, seeds=list(range(100, 116)))
    assert compare_cli.main([str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    df = pd.read_csv(tmp_path / "b" / "compare" / "compare.csv")
    assert not df["paired"].any() and (df["diff_ci_low"] < 0).all() and (df["diff_ci_high"] > 0).all()


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda p, s: write_sweep(p / "b", {1000.0: s[1000.0]}), "the baseline ran targets [1000.0, 3000.0]"),
        (lambda p, s: (p / "b").mkdir(), "is not a sweep folder"),
        (
            lambda p, s: (write_sweep(p / "b", s), write_sweep(p / "b", s, checkpoint="d")),
            "say which pairs with --pair",
        ),
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path, base_scores, capsys, make, needle):
    write_sweep(tmp_path / "a", base_scores)
    make(tmp_path, base_scores)
    capsys.readouterr()
    assert compare_cli.main([str(tmp_path / "a"), str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1 and "Traceback" not in err


def test_pair_option(tmp_path, base_scores):
    write_sweep(tmp_path / "a", base_scores)
    write_sweep(tmp_path / "b", base_scores)
    write_sweep(tmp_path / "b", {t: [s - 30 for s in v] for t, v in base_scores.items()}, checkpoint="d")
    assert compare_cli.main([str(tmp_path / "a"), str(tmp_path / "b"), "--pair", "c=c"]) == 0
    assert compare_cli.main([str(tmp_path / "a"), str(tmp_path / "b"), "--pair", "c=d"]) == 1


def test_failed_episodes_are_counted_not_scored(tmp_path, base_scores):
    write_sweep(tmp_path / "a", base_scores)
    write_sweep(tmp_path / "b", base_scores, status={(1000.0, 3): "nan_action"})
    assert compare_cli.main([str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    cell = pd.read_csv(tmp_path / "b" / "compare" / "compare.csv").iloc[0]
    assert (cell["failed_candidate"], cell["n_candidate"], bool(cell["paired"])) == (1, 15, False)


def test_statistics_against_an_independent_computation():
    rng = np.random.default_rng(1)
    b, c = rng.normal(50, 10, 12), rng.normal(45, 10, 12)
    idx = np.random.default_rng(0).integers(0, 12, (2000, 12))
    d = (c - b)[idx].mean(axis=1)
    assert difference_ci(c, b, True, 0.9) == pytest.approx(tuple(np.percentile(d, [5, 95])), rel=1e-9)
    wins = sum((x > y) + 0.5 * (x == y) for x in c for y in b) / (12 * 12)
    assert probability_of_improvement(c, b) == pytest.approx(wins)


@pytest.mark.slow
def test_two_real_sweeps_of_one_checkpoint_differ_by_nothing(tmp_path, tiny_checkpoints):
    """Different --num-envs, same checkpoint and seeds: every paired difference is exactly 0."""
    common = ["--envs", "hopper", "--checkpoint", f"hopper={tiny_checkpoints['hopper']}", "--targets", "100", "900"]
    common += ["--episodes", "5", "--no-progress"]
    assert sweep.main([*common, "--num-envs", "2", "--out", str(tmp_path / "a")]) == 0
    assert sweep.main([*common, "--num-envs", "5", "--out", str(tmp_path / "b")]) == 0
    assert compare_cli.main([str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    df = pd.read_csv(tmp_path / "b" / "compare" / "compare.csv")
    assert df["paired"].all() and (df["diff"] == 0).all() and (df["diff_ci_high"] == 0).all()


def test_compare_at_each_sides_selected_target_on_held_out_seeds():
    """Each side picks its target on episodes k < 5 and is compared on k >= 5 only."""
    from harness.analysis.comparison import Pairing, compare_selected

    def sweep(scores: dict[float, list[float]], label: str) -> pd.DataFrame:
        return pd.DataFrame(
            [
                {"env": "hopper", "env_id": "Hopper-v4", "checkpoint": label, "target": t, "episode": k,
                 "seed": 100 + k, "normalized_score": v, "return": v, "length": 1, "status": "ok"}
                for t, values in scores.items()
                for k, v in enumerate(values)
            ]
        )  # fmt: skip

    # the candidate's 3000 is lucky on the first five episodes only; its 2000 is the honest best
    base = sweep({2000.0: [50.0] * 10, 3000.0: [60.0] * 10}, "b")
    cand = sweep({2000.0: [58.0] * 10, 3000.0: [90.0] * 5 + [20.0] * 5}, "c")
    table = compare_selected(base, cand, Pairing({"hopper": [("b", "c")]}), selection_episodes=5)
    r = table.iloc[0]
    assert (r["baseline_checkpoint"], r["candidate_checkpoint"]) == ("b@3000", "c@3000")
    assert (r["baseline_mean"], r["candidate_mean"], r["n_baseline"]) == (60.0, 20.0, 5) and r["paired"]
    assert r["verdict"] == "drop" and r["level"] == "selected"
    from harness.core.errors import HarnessError

    with pytest.raises(HarnessError, match="both sides"):
        compare_selected(base, cand, Pairing({"hopper": [("b", "c")]}), selection_episodes=10)
