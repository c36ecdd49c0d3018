"""The paper table (benchmarks/tools/paper_table.py) on a tiny sweep: our cells beside the paper's and
CORL's numbers for the checkpoint's dataset name."""

import importlib.util

import pytest

from harness.commands import sweep
from harness.io.data import DatasetSummary

from .conftest import make_checkpoint


@pytest.fixture(scope="module")
def paper_table():
    return importlib.import_module("benchmarks.tools.paper_table")


def test_table_sets_our_cells_beside_the_papers(tmp_path, paper_table):
    data = DatasetSummary("hopper-medium-replay", 10, 5000, -10.0, 50.0, 300.0, 800.0, 1000.0, 100.0)
    ckpt = make_checkpoint(tmp_path / "hmr", "Hopper-v4", dataset=data)
    out = tmp_path / "sweep"
    args = ["--envs", "hopper", "--checkpoint", f"hopper={ckpt}", "--targets", "3600", "1800"]
    assert sweep.main([*args, "--episodes", "2", "--no-progress", "--out", str(out)]) == 0
    df = paper_table.table([out])
    assert list(df["target"]) == [1800.0, 3600.0] and set(df["dataset"]) == {"hopper-medium-replay"}
    assert set(df["paper_dt"]) == {82.7} and set(df["corl_dt"]) == {81.77}
    assert list(df["paper_target"]) == [False, True]
    assert (df["diff_vs_paper"] == (df["score_mean"] - 82.7).round(1)).all()
    md = paper_table.markdown(df)
    assert md.count("\n") == 4 and "3600 (paper's target)" in md and "82.7 ± 7.0" in md
