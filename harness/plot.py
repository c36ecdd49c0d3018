"""Figures from the result CSV files alone: ``python -m harness.plot results/<run>``.

The return-conditioning figure (Chen et al. 2021, Fig. 4): one panel per env, target return on
x and achieved return on y, both D4RL-normalised; the mean over episodes with its 95% bootstrap
band per checkpoint; the oracle line y = x; and a marker at the best trajectory return of the
checkpoint's training data where it is known.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from harness.errors import HarnessError  # noqa: E402

FIGURE_NAME = "return_conditioning"
ENV_ORDER = ("hopper", "walker2d", "halfcheetah")


def checkpoint_colors(labels: list[str]) -> dict[str, str]:
    """One colour per checkpoint label, stable for the same set of labels."""
    cmap = plt.get_cmap("tab10")
    return {label: matplotlib.colors.to_hex(cmap(i % 10)) for i, label in enumerate(sorted(set(labels)))}


def return_conditioning_figure(summary: pd.DataFrame) -> Figure:
    """Draw the return-conditioning figure from a ``summary.csv`` table.

    Args:
        summary: one row per env × checkpoint × target with the columns ``env``, ``env_id``,
            ``checkpoint``, ``target_score``, ``score_mean``, ``score_ci_low``,
            ``score_ci_high`` and ``dataset_best_score`` (NaN where unknown).

    Returns:
        The figure (one panel per env).
    """
    envs = sorted(summary["env"].unique(), key=lambda e: (ENV_ORDER.index(e) if e in ENV_ORDER else 99, e))
    colors = checkpoint_colors(list(summary["checkpoint"]))
    fig, axes = plt.subplots(1, len(envs), figsize=(4.2 * len(envs), 4.0), squeeze=False)
    for ax, env in zip(axes[0], envs, strict=True):
        rows = summary[summary["env"] == env]
        cols = ["target_score", "score_mean", "dataset_best_score"]
        lo = float(np.nanmin(rows[[*cols, "score_ci_low"]].to_numpy()))
        hi = float(np.nanmax(rows[[*cols, "score_ci_high"]].to_numpy()))
        hi += 0.03 * (hi - lo)
        lo, hi = min(lo, 0.0), max(hi, 100.0)
        ax.plot([lo, hi], [lo, hi], color="0.55", ls="--", lw=1, label="oracle (y = x)")
        for label, cell in rows.groupby("checkpoint", sort=True):
            cell = cell.sort_values("target_score")
            color = colors[label]
            x = cell["target_score"].to_numpy()
            ax.plot(x, cell["score_mean"], "o-", color=color, ms=3.5, lw=1.5, label=label)
            ax.fill_between(x, cell["score_ci_low"], cell["score_ci_high"], color=color, alpha=0.2, lw=0)
            best = cell["dataset_best_score"].dropna()
            if len(best):
                b = float(best.iloc[0])
                ax.axvline(b, color=color, ls=":", lw=1)
                ax.plot([b], [b], marker="*", ms=11, color=color, ls="none", label=f"best in data ({label})")
        env_ids = ", ".join(sorted(rows["env_id"].unique()))
        ax.set_title(f"{env} ({env_ids})")
        ax.set_xlabel("target return (D4RL-normalised)")
        ax.set_ylabel("achieved return (D4RL-normalised)")
        ax.set_xlim(lo, hi)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle("Return conditioning (mean, 95% bootstrap CI)", fontsize=10)
    fig.tight_layout()
    return fig


def save_figures(out: Path) -> list[Path]:
    """Redraw every figure of a result folder from its CSV files; returns the files written."""
    summary_path = out / "summary.csv"
    if not summary_path.is_file():
        raise HarnessError(f"no summary.csv in {out}; pass a folder written by python -m harness.sweep")
    try:
        summary = pd.read_csv(summary_path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise HarnessError(f"{summary_path} is not a readable CSV ({exc}); rerun the sweep") from None
    needed = {
        "env",
        "env_id",
        "checkpoint",
        "target_score",
        "score_mean",
        "score_ci_low",
        "score_ci_high",
        "dataset_best_score",
    }
    missing = sorted(needed - set(summary.columns))
    if missing:
        raise HarnessError(f"{summary_path} lacks columns {', '.join(missing)}; rerun the sweep")
    if summary.empty:
        raise HarnessError(f"{summary_path} has no rows; rerun the sweep")
    fig = return_conditioning_figure(summary)
    written = []
    for ext in ("png", "svg"):
        path = out / f"{FIGURE_NAME}.{ext}"
        tmp = path.with_suffix(f".tmp.{ext}")
        fig.savefig(tmp, dpi=150)
        tmp.replace(path)
        written.append(path)
    plt.close(fig)
    return written


def main(argv: list[str] | None = None) -> int:
    """Command line: redraw the figures of one or more result folders."""
    parser = argparse.ArgumentParser(
        prog="python -m harness.plot", description="Redraw the figures of a sweep from its CSV files."
    )
    parser.add_argument("dirs", nargs="+", type=Path, help="result folders (results/<run>)")
    args = parser.parse_args(argv)
    try:
        for d in args.dirs:
            for path in save_figures(d):
                print(path)
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
