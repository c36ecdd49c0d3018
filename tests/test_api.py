"""The public API, the one command, ``--config`` and ``report.html``."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

import harness
from harness.commands import main as harness_main
from harness.commands import sweep
from harness.core.errors import HarnessError

ROOT = Path(__file__).resolve().parents[1]


def test_the_api_is_exported_lazily_from_the_root():
    code = (
        "import sys, harness; before = 'torch' in sys.modules; f = harness.evaluate; "
        "print(before, f.__module__, harness.compare.__name__, harness.SweepConfig.__name__, harness.__version__ != '')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.split() == ["False", "harness.engine.evaluate", "compare_folders", "SweepConfig", "True"]
    assert set(harness.__all__) == {
        *("evaluate", "run_sweep", "SweepConfig", "compare", "load_checkpoint", "__version__"),
        *("Shift", "aggregate", "select"),
    }
    with pytest.raises(AttributeError):
        harness.nothing_here  # noqa: B018


def test_python_api_evaluate_and_errors_name_fields(tiny_checkpoints, tmp_path):
    df = harness.evaluate(str(tiny_checkpoints["hopper"]), "hopper", targets=[100.0], episodes=2)
    assert len(df) == 2 and df.attrs["numerics"]["mode"] == "pinned"
    with pytest.raises(HarnessError, match=r"^num_envs must be between"):
        harness.run_sweep(harness.SweepConfig(envs=["hopper"], num_envs=0, out=str(tmp_path / "x")))


def test_console_command_dispatches_and_refuses_unknown_commands(capsys):
    assert harness_main.main([]) == 2
    assert "sweep" in capsys.readouterr().out
    assert harness_main.main(["bogus"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown command 'bogus'") and err.count("\n") == 1
    with pytest.raises(SystemExit):
        harness_main.main(["sweep", "--help"])
    assert "--numerics" in capsys.readouterr().out


def args(ckpt: Path, out: Path, *extra: str) -> list[str]:
    return ["--envs", "hopper", "--checkpoint", f"hopper={ckpt}", "--out", str(out), "--no-progress", *extra]


@pytest.mark.slow
def test_console_script_and_python_m_give_the_same_rows(tiny_checkpoints, tmp_path):
    """``harness sweep`` (the installed script) and ``python -m harness.sweep``: the same rows."""
    exe = shutil.which("harness", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("the console script is not installed in this environment")
    common = ["--targets", "100", "900", "--episodes", "3"]
    a, b = tmp_path / "a", tmp_path / "b"
    subprocess.run([exe, "sweep", *args(tiny_checkpoints["hopper"], a, *common)], check=True, capture_output=True)
    subprocess.run(
        [sys.executable, "-m", "harness.sweep", *args(tiny_checkpoints["hopper"], b, *common)],
        check=True,
        capture_output=True,
    )
    cols = ["target", "episode", "return", "length"]
    pd.testing.assert_frame_equal(pd.read_csv(a / "episodes.csv")[cols], pd.read_csv(b / "episodes.csv")[cols])


def test_config_file_with_flags_overriding_it(tiny_checkpoints, tmp_path, capsys):
    cfg = tmp_path / "sweep.toml"
    cfg.write_text("targets = [100.0, 900.0]\nepisodes = 3\nseed = 7\nnum_envs = 2\n")
    out = tmp_path / "run"
    assert sweep.main([*args(tiny_checkpoints["hopper"], out), "--config", str(cfg), "--episodes", "2"]) == 0
    meta = json.loads((out / "metadata.json").read_text())
    resolved = meta["arguments"]
    assert (resolved["episodes"], resolved["seed"], resolved["num_envs"], resolved["targets"]) == (
        2,
        7,
        2,
        [100.0, 900.0],
    )
    assert "--config" in meta["command"]
    capsys.readouterr()
    bad = tmp_path / "bad.toml"
    bad.write_text("num_env = 3\n")
    assert sweep.main([*args(tiny_checkpoints["hopper"], tmp_path / "r2"), "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "unknown key 'num_env'" in err and err.count("\n") == 1 and not (tmp_path / "r2").exists()
    bad.write_text('episodes = "ten"\n')
    assert sweep.main([*args(tiny_checkpoints["hopper"], tmp_path / "r3"), "--config", str(bad)]) == 2
    assert "episodes = 'ten' is not a int" in capsys.readouterr().err
    assert sweep.main([*args(tiny_checkpoints["hopper"], tmp_path / "r4"), "--num-envs", "0"]) == 2
    assert capsys.readouterr().err.startswith("error: --num-envs must be between")


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.links: list[str] = []
        self.rows = 0
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):  # noqa: ANN001
        a = dict(attrs)
        if tag == "img":
            self.images.append(a.get("src", ""))
        elif tag == "a":
            self.links.append(a.get("href", ""))
        elif tag == "tr":
            self.rows += 1

    def handle_data(self, data):  # noqa: ANN001
        self.text.append(data)


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
INKED = 0.005  # share of a 1000x1400 screenshot darker than grey 200; a tiny sweep's report inks about 0.03


def inked_share(page: Path, tmp_path: Path) -> float | None:
    """Render ``page`` in headless Chromium (no scrollbars) and return the share of its pixels that
    are inked (darker than grey 200); None without Chromium. A blank page gives 0: the earlier check
    (pixel std > 5) passed a blank page, whose scrollbar alone has std 7."""
    if CHROMIUM is None:
        return None
    shot = tmp_path / f"{page.stem}.png"
    subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--no-first-run",
            "--hide-scrollbars",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={shot}",
            "--window-size=1000,1400",
            page.as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=False,
    )
    import numpy as np
    from PIL import Image

    return float((np.asarray(Image.open(shot).convert("L")) < 200).mean())


def test_report_html_is_one_self_contained_page(tiny_checkpoints, tmp_path):
    out = tmp_path / "run"
    assert sweep.main([*args(tiny_checkpoints["hopper"], out), "--targets", "100", "900", "--episodes", "2"]) == 0
    page = _Page()
    page.feed((out / "report.html").read_text())
    assert len(page.images) >= 3 and all(src.startswith("data:image/png;base64,") for src in page.images)
    assert {"episodes.csv", "summary.csv", "metadata.json"} <= set(page.links)
    assert all((out / link).is_file() for link in page.links)
    summary_rows = len(pd.read_csv(out / "summary.csv"))
    assert page.rows >= summary_rows + 1  # header + one row per cell (+ provenance rows)
    text = " ".join(page.text)
    assert "pinned" in text and "harness sweep" in text

    inked = inked_share(out / "report.html", tmp_path)
    if inked is None:
        return  # rendering check needs Chromium (CI installs it where apt is usable)
    assert inked > INKED, f"the rendered report is blank ({inked:.4f} of its pixels inked)"
    # the check's power: the same page with its body hidden (what a broken stylesheet or script
    # would show) must fail it
    hidden = out / "hidden.html"
    hidden.write_text((out / "report.html").read_text().replace("</style>", "body{visibility:hidden}</style>", 1))
    assert inked_share(hidden, tmp_path) <= INKED
