"""The real command lines: a smoke test of the sweep, the Hub code path, and bad input."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from harness.commands import plot, sweep
from harness.core.schema import EPISODE_COLUMNS, SUMMARY_COLUMNS
from harness.engine.evaluate import evaluate

from .conftest import make_checkpoint

HUB_ID = "edbeeching/decision-transformer-gym-hopper-medium"


def run_cli(*args, env=None, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "harness.sweep", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=cwd,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
    )


@pytest.mark.slow
def test_smoke_three_envs(tmp_path, tiny_checkpoints):
    out = tmp_path / "run"
    ck = tiny_checkpoints
    proc = run_cli(
        "--envs",
        "hopper",
        "walker2d",
        "halfcheetah",
        "--checkpoint",
        f"hopper={ck['hopper']}",
        "--checkpoint",
        f"walker2d={ck['walker2d']}",
        "--checkpoint",
        f"halfcheetah={ck['halfcheetah']}",
        "--num-targets",
        "2",
        "--episodes",
        "3",
        "--num-envs",
        "4",
        "--seed",
        "7",
        "--out",
        out,
    )
    assert proc.returncode == 0, proc.stderr
    episodes = pd.read_csv(out / "episodes.csv")
    assert list(episodes.columns) == EPISODE_COLUMNS
    assert len(episodes) == 3 * 2 * 3
    assert sorted(episodes["seed"].unique()) == [7, 8, 9]
    assert set(episodes["env_id"]) == {"Hopper-v4", "Walker2d-v4", "HalfCheetah-v4"}
    assert (episodes["terminated"] ^ episodes["truncated"]).all()
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary.columns) == SUMMARY_COLUMNS and len(summary) == 6
    assert (summary["n"] == 3).all()
    # hopper's checkpoint has a dataset summary: targets from -10 to 1.2 x 1000; others: D4RL range
    assert sorted(summary.loc[summary.env == "hopper", "target"]) == [-10.0, 1200.0]
    assert sorted(summary.loc[summary.env == "walker2d", "target"]) == [2.0, 5511.0]
    assert summary.loc[summary.env == "hopper", "dataset_best_return"].eq(1000.0).all()
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["arguments"]["episodes"] == 3 and meta["versions"]["torch"]
    assert meta["env_steps"] == episodes["length"].sum() and meta["env_steps_per_s"] > 0
    assert {"sha", "dirty"} <= set(meta["git"]) and meta["machine"]["cpu_count"]
    assert meta["command"].startswith("harness sweep --envs hopper")
    for ext in ("png", "svg"):
        assert (out / f"return_conditioning.{ext}").stat().st_size > 1000
    assert "hopper" in proc.stdout and "score" in proc.stdout
    assert "Traceback" not in proc.stderr


def fake_hub_cache(root: Path, source: Path) -> Path:
    """A Hugging Face cache holding HUB_ID the way snapshot_download leaves it (no statistics)."""
    repo = root / ("models--" + HUB_ID.replace("/", "--"))
    snap = repo / "snapshots" / "0123abcd"
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    cfg = json.loads((source / "config.json").read_text())
    for key in ("state_mean", "state_std", "env_id", "context_length", "return_scale", "dataset"):
        cfg.pop(key, None)
    (snap / "config.json").write_text(json.dumps(cfg))
    (snap / "model.safetensors").write_bytes((source / "model.safetensors").read_bytes())
    return root


@pytest.mark.slow
def test_hub_id_uses_published_statistics(tmp_path, tiny_checkpoints):
    cache = fake_hub_cache(tmp_path / "hub", tiny_checkpoints["hopper"])
    out = tmp_path / "run"
    proc = run_cli(
        "--envs",
        "hopper",
        "--checkpoint",
        f"hopper={HUB_ID}",
        "--targets",
        "3600",
        "--episodes",
        "2",
        "--out",
        out,
        env={"HF_HUB_CACHE": str(cache)},
    )
    assert proc.returncode == 0, proc.stderr
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["checkpoints"][0]["source"] == HUB_ID
    assert pd.read_csv(out / "episodes.csv")["checkpoint"].eq(HUB_ID).all()


@pytest.mark.slow
def test_unreachable_hub_id(tmp_path):
    proc = run_cli(
        "--envs",
        "hopper",
        "--checkpoint",
        "hopper=someone/not-cached",
        "--out",
        tmp_path / "o",
        env={"HF_HUB_CACHE": str(tmp_path / "empty")},
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "could not be fetched from the Hugging Face Hub" in proc.stderr
    assert not (tmp_path / "o").exists()


def call_main(args, capsys):
    """Run the command line in-process; returns (exit code, stderr)."""
    try:
        code = sweep.main([str(a) for a in args])
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


BAD = [
    (["--envs", "ant"], "unknown env 'ant'; use one of: hopper, walker2d, halfcheetah"),
    (["--envs", "hopper", "--env-version", "v9"], "--env-version: invalid choice: 'v9' (choose from 'v4', 'v5')"),
    (["--envs", "Hopper-v3"], "version v3 is not supported"),
    (["--envs", "hopper", "hopper"], "names hopper twice"),
    (["--envs", "hopper", "--checkpoint", "{hopper}"], "lacks the env; write it as ENV=FOLDER_OR_HUB_ID"),
    (["--envs", "hopper", "--checkpoint", "walker2d={walker2d}"], "is for walker2d, which is not in --envs"),
    (["--envs", "hopper", "--checkpoint", "hopper={missing}"], "does not exist"),
    (["--envs", "hopper", "--checkpoint", "hopper={walker2d}"], "but Hopper-v4 has 11 and 3"),
    (["--envs", "halfcheetah", "--checkpoint", "halfcheetah={walker2d}"], "was trained on Walker2d-v4"),
    (["--envs", "hopper", "--checkpoint", "hopper={hopper}", "--targets", "abc"], "'abc' is not a number"),
    (["--envs", "hopper", "--checkpoint", "hopper={hopper}", "--targets", "nan"], "'nan' is not a finite number"),
    (["--envs", "hopper", "--checkpoint", "hopper={hopper}", "--targets", "inf"], "'inf' is not a finite number"),
    (["--envs", "hopper", "--checkpoint", "hopper={hopper}", "--targets"], "expected at least one argument"),
    (["--envs", "hopper", "--checkpoint", "hopper={hopper}", "--episodes", "0"], "--episodes must be between 1"),
    (["--envs", "hopper", "--checkpoint", "hopper={hopper}", "--episodes", "-3"], "--episodes must be between 1"),
    (["--envs", "hopper", "--checkpoint", "hopper={hopper}", "--episodes", "10000000"], "between 1 and 100,000"),
    (["--envs", "hopper", "--checkpoint", "hopper={hopper}", "--num-envs", "0"], "--num-envs must be between 1"),
    (["--envs", "hopper", "--checkpoint", "hopper={hopper}", "--episodes", "2.5"], "'2.5' is not a whole number"),
    (["--envs", "hopper", "--checkpoint", "hopper={hopper}", "--device", "tpu"], "unknown --device 'tpu'"),
    (["--envs", "hopper", "--checkpoint", "hopper={hopper}", "--seed", "-1"], "--seed must be between 0"),
    (["--envs", "hopper", "--checkpoint", "hopper={hopper}", "--num-envs", "100000"], "--num-envs must be between 1"),
    (["--envs", "hopper", "--checkpoint", "hopper={hopper}", "--num-targets", "0"], "--num-targets must be between"),
    (["--envs", "hopper", "--checkpoint", "hopper="], "names no folder or Hub id"),
    (["--envs", "hopper", "--checkpoint", "hopper={hopper}", "--precision", "fp16"], "invalid choice: 'fp16'"),
    (["--envs", "hopper", "--checkpoint", "hopper={noconfig}"], "no config.json"),
    (["--envs", "hopper", "--checkpoint", "hopper={badjson}"], "is not valid JSON"),
    (["--envs", "hopper", "--checkpoint", "hopper={truncated}"], "unreadable or truncated"),
    (["--envs", "hopper", "--checkpoint", "hopper={noweights}"], "no weights"),
    (["--envs", "hopper", "--checkpoint", "hopper={shapes}"], "weights do not match config.json"),
    (["--envs", "hopper", "--checkpoint", "hopper={nostats}"], "has no state statistics"),
    (["--envs", "hopper", "--checkpoint", "hopper={shortstats}"], "state_std has 5 values but the state size is 11"),
    (["--envs", "hopper", "--checkpoint", "hopper={hopper}", "--num-envs", "-2"], "--num-envs must be between 1"),
]


@pytest.fixture(scope="module")
def broken(tmp_path_factory) -> dict[str, str]:
    """Checkpoint folders broken in the ways users break them."""
    root = tmp_path_factory.mktemp("broken")
    out = {}

    def fresh(name: str) -> Path:
        folder = make_checkpoint(root / name, "Hopper-v4")
        out[name] = str(folder)
        return folder

    (fresh("noconfig") / "config.json").unlink()
    (fresh("badjson") / "config.json").write_text("{not json")
    weights = fresh("truncated") / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    (fresh("noweights") / "model.safetensors").unlink()
    for name, change in (
        ("shapes", {"hidden_size": 32}),
        ("nostats", {"state_mean": None}),
        ("shortstats", {"state_std": [1.0] * 5}),
    ):
        path = fresh(name) / "config.json"
        cfg = json.loads(path.read_text())
        for k, v in change.items():
            cfg.pop(k) if v is None else cfg.__setitem__(k, v)
        path.write_text(json.dumps(cfg))
    return out


@pytest.mark.parametrize(("args", "needle"), BAD)
def test_bad_input_is_one_line_exit_2(tmp_path, tiny_checkpoints, broken, capsys, args, needle):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    fill = {k: str(v) for k, v in tiny_checkpoints.items()} | {"missing": str(tmp_path / "nope")} | broken
    code, err = call_main([a.format(**fill) for a in args] + ["--out", out, "--no-progress"], capsys)
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert needle in err
    assert "Traceback" not in err
    assert [p.name for p in out.iterdir()] == ["keep.txt"] and (out / "keep.txt").read_text() == "precious"


def test_no_checkpoint_says_which_option(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr("harness.running.runner.embedded_names", lambda: [])
    code, err = call_main(["--envs", "hopper", "--out", tmp_path / "o"], capsys)
    assert code == 2 and "pass --checkpoint hopper=FOLDER_OR_HUB_ID" in err


@pytest.mark.slow
def test_main_command_uses_the_embedded_checkpoints(tmp_path):
    """The README's main command, offline, with small settings."""
    out = tmp_path / "run"
    proc = run_cli("--envs", "hopper", "walker2d", "halfcheetah", "--num-targets", "2", "--episodes", "1", "--out", out)
    assert proc.returncode == 0, proc.stderr
    summary = pd.read_csv(out / "summary.csv")
    assert sorted(summary["checkpoint"].unique()) == ["halfcheetah", "hopper", "walker2d"]
    # targets from each embedded dataset's range, and its best trajectory drawn in the figure
    assert summary["dataset_best_return"].notna().all()


def test_cuda_without_gpu(capsys, tmp_path, tiny_checkpoints, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    code, err = call_main(
        [
            "--envs",
            "hopper",
            "--checkpoint",
            f"hopper={tiny_checkpoints['hopper']}",
            "--device",
            "cuda",
            "--out",
            tmp_path / "o",
        ],
        capsys,
    )
    assert code == 2 and "no CUDA GPU is visible" in err


def test_output_paths(capsys, tmp_path, tiny_checkpoints):
    base = ["--envs", "hopper", "--checkpoint", f"hopper={tiny_checkpoints['hopper']}", "--no-progress"]
    (tmp_path / "file").write_text("x")
    code, err = call_main(base + ["--out", tmp_path / "file"], capsys)
    assert code == 2 and "is a file; pass a folder path" in err
    code, err = call_main(base + ["--out", tmp_path / "file" / "sub"], capsys)
    assert code == 2 and "is a file" in err
    code, err = call_main(base + ["--out", "/proc/harness-test-out"], capsys)
    assert code == 2 and "is not writable" in err
    done = tmp_path / "done"
    done.mkdir()
    (done / "episodes.csv").write_text("old results")
    code, err = call_main(base + ["--out", done], capsys)
    assert code == 2 and "already holds results (episodes.csv)" in err
    assert (done / "episodes.csv").read_text() == "old results"


def test_help_documents_every_option_with_default(capsys):
    with pytest.raises(SystemExit) as info:
        sweep.build_parser().parse_args(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for opt in (
        "--envs",
        "--checkpoint",
        "--targets",
        "--num-targets",
        "--episodes",
        "--num-envs",
        "--seed",
        "--env-version",
        "--device",
        "--out",
    ):
        assert opt in text
    assert text.count("(default:") >= 9


def test_python_api_and_redraw(tmp_path, tiny_checkpoints, capsys):
    df = evaluate(str(tiny_checkpoints["hopper"]), "hopper", [100.0, 2000.0], episodes=2, seed=3)
    assert list(df.columns) == EPISODE_COLUMNS and len(df) == 4
    assert list(df["seed"]) == [3, 4, 3, 4]
    out = tmp_path / "run"
    code = sweep.main(
        [
            "--envs",
            "hopper",
            "--checkpoint",
            f"hopper={tiny_checkpoints['hopper']}",
            "--targets",
            "100",
            "2000",
            "--episodes",
            "2",
            "--seed",
            "3",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert code == 0
    rows = pd.read_csv(out / "episodes.csv", keep_default_na=False)
    pd.testing.assert_frame_equal(
        rows.drop(columns="wall_time_s").assign(checkpoint=0),
        df.drop(columns="wall_time_s").assign(checkpoint=0),
        check_dtype=False,
    )
    for ext in ("png", "svg"):
        (out / f"return_conditioning.{ext}").unlink()
    assert plot.main([str(out)]) == 0
    assert (out / "return_conditioning.png").exists() and (out / "return_conditioning.svg").exists()
    assert plot.main([str(tmp_path / "nothing")]) == 2
