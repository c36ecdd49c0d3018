"""Figures from the result CSV files alone (the library under ``python -m harness.plot``).

- ``return_conditioning``: the paper's figure (Chen et al. 2021, Fig. 4): one panel per env,
  target return on x and achieved return on y, both D4RL-normalised; the mean over episodes
  with its 95% bootstrap band per checkpoint; the oracle line y = x; and a marker at the best
  trajectory return of the checkpoint's training data where it is known.
- ``return_distributions``: every episode's achieved return per target (box: quartiles,
  whiskers 5-95%, dots beyond), per checkpoint; beside it, when the checkpoint's dataset summary
  is known, the training data's return distribution (min, p10, median, p90, max) and a shaded
  region where targets exceed the best return in the data (extrapolation).
- ``episode_length``: mean episode length (95% bootstrap band) against target, per checkpoint.
- ``learning_curve`` (only when an env has checkpoints of several training steps, e.g.
  ``--checkpoint hopper=run/trainer/checkpoint-*``): normalised score against the Trainer's step,
  one line per target with its 95% band, and the mean over targets.
- ``return_conditioning_shift`` (only for a sweep with ``--shift`` or several ``--env-version``):
  one panel per env x checkpoint, one line per condition (the unshifted one in black), each
  labelled with the score it retains (``robustness.csv``).

In a sweep with shifted conditions every figure facets by them: each (checkpoint, condition) is a
line or box group of its own, labelled ``checkpoint [condition]``.

Each is written as PNG and SVG; a checkpoint has the same colour in every figure.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from harness.analysis.robustness import condition_tag, with_shift  # noqa: E402
from harness.core.errors import HarnessError  # noqa: E402
from harness.core.schema import (  # noqa: E402
    CALIBRATION,
    EPISODES,
    FIGURE_EPISODE_LENGTH,
    FIGURE_FORMATS,
    FIGURE_LEARNING_CURVE,
    FIGURE_RETURN_CONDITIONING,
    FIGURE_RETURN_DISTRIBUTIONS,
    FIGURE_SHIFT,
    METADATA,
    NO_SHIFT,
    READ_OPTIONS,
    ROBUSTNESS,
    SUMMARY,
    Status,
)

ENV_ORDER = ("hopper", "walker2d", "halfcheetah")
TITLE_SIZE = 10
LEGEND_SIZE = 7


def _panels(ncols: int, width: float, height: float, nrows: int = 1, **kw) -> tuple[Figure, np.ndarray]:
    """A figure of ``nrows x ncols`` panels of about ``width x height`` inches with constrained layout
    (which makes room for the suptitle, labels and the figure legend below, so no text is cut)."""
    fig = plt.figure(figsize=(max(width * ncols, 5.0), height), layout="constrained")
    return fig, fig.subplots(nrows, ncols, squeeze=False, **kw)


def _suptitle(fig: Figure, text: str) -> None:
    """The figure title, wrapped to the figure's width (a 1-panel figure is narrow)."""
    per_line = max(20, int(fig.get_figwidth() * 72 / (0.58 * TITLE_SIZE)))
    fig.suptitle("\n".join(textwrap.wrap(text, per_line)), fontsize=TITLE_SIZE)


LABEL_WIDTH = 34
"""Characters per line of a legend label (longer ones, such as a Trainer checkpoint's path, wrap)."""


def _wrap_label(label: str, width: int = LABEL_WIDTH) -> str:
    """A legend label broken after ``/``, ``-``, ``_`` or a space into lines of at most ``width``.

    >>> print(_wrap_label("runs/walker2d-medium-replay-seed0/trainer/checkpoint-1000", 20))
    runs/walker2d-
    medium-replay-seed0/
    trainer/checkpoint-
    1000
    """
    lines, line = [], ""
    for token in re.findall(r"[^/\-_ ]*[/\-_ ]?", label):
        if line and len(line) + len(token) > width:
            lines.append(line)
            line = ""
        line += token
    return "\n".join([*lines, line] if line else lines)


def _legend(fig: Figure, axes) -> None:  # noqa: ANN001
    """One legend for the whole figure, below the panels, entries deduplicated by label, long labels
    wrapped; as many columns as fit the figure's width, and the figure made taller by the legend's
    height so the panels keep their size (a legend inside a panel covers data and, with 8
    checkpoints, outgrows the panel)."""
    handles: dict[str, object] = {}
    for ax in np.ravel(axes):
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, h)
    if not handles:
        return
    labels = [_wrap_label(label) for label in handles]
    longest = max(len(line) for label in labels for line in label.split("\n"))
    entry = 40 + longest * 0.62 * LEGEND_SIZE  # points: handle, gaps and text
    ncol = max(1, min(len(labels), int(fig.get_figwidth() * 72 * 0.95 // entry)))
    lines = [label.count("\n") + 1 for label in labels]
    rows = [max(lines[i : i + ncol]) for i in range(0, len(lines), ncol)]
    # legend fills row by row only with ncol=1; with more columns matplotlib fills column-major, so
    # count rows as ceil(n / ncol) of the tallest entries
    tall = max(lines)
    height_pt = max(sum(rows), -(-len(labels) // ncol) * tall) * LEGEND_SIZE * 1.45 + 14
    fig.set_figheight(fig.get_figheight() + height_pt / 72)
    fig.legend(
        list(handles.values()), labels, loc="outside lower center", ncol=ncol, fontsize=LEGEND_SIZE, frameon=False
    )


def checkpoint_colors(labels: list[str]) -> dict[str, str]:
    """One colour per checkpoint label, stable for the same set of labels."""
    cmap = plt.get_cmap("tab10")
    return {label: matplotlib.colors.to_hex(cmap(i % 10)) for i, label in enumerate(sorted(set(labels)))}


def return_conditioning_figure(summary: pd.DataFrame, calibration: pd.DataFrame | None = None) -> Figure:
    """Draw the return-conditioning figure from a ``summary.csv`` table.

    Args:
        summary: one row per env × checkpoint × target with the columns ``env``, ``env_id``,
            ``checkpoint``, ``target_score``, ``score_mean``, ``score_ci_low``,
            ``score_ci_high`` and ``dataset_best_score`` (NaN where unknown).
        calibration: the sweep's ``calibration.csv`` (optional): each checkpoint's rho and slope
            are written in its panel (up to three checkpoints per env) and the target where it
            saturates is marked with a triangle.

    Returns:
        The figure (one panel per env).
    """
    envs = _env_order(summary["env"])
    colors = checkpoint_colors(list(summary["checkpoint"]))
    fig, axes = _panels(len(envs), 4.2, 4.6)
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
                ax.plot([b], [b], marker="*", ms=11, color=color, ls="none")
                ax.plot([], [], marker="*", ms=9, color="0.45", ls="none", label="best return in its data (its colour)")
        if calibration is not None:
            _annotate_calibration(ax, env, rows, calibration, colors)
        env_ids = ", ".join(sorted(rows["env_id"].unique()))
        ax.set_title(f"{env} ({env_ids})")
        ax.set_xlabel("target return (D4RL-normalised)")
        ax.set_ylabel("achieved return (D4RL-normalised)")
        ax.set_xlim(lo, hi)
        ax.grid(alpha=0.3)
    _legend(fig, axes)
    _suptitle(fig, "Return conditioning (mean, 95% bootstrap CI)")
    return fig


def _annotate_calibration(ax, env: str, rows: pd.DataFrame, cal: pd.DataFrame, colors: dict) -> None:  # noqa: ANN001
    """Mark where each checkpoint saturates; write rho and slope in the panel (up to 3 checkpoints)."""
    cal = cal[cal["env"] == env]
    lines = []
    for label, cell in rows.groupby("checkpoint", sort=True):
        c = cal[cal["checkpoint"] == label]
        if c.empty:
            continue
        c = c.iloc[0]
        at = cell[cell["target"] == c["saturation_target"]] if "target" in cell else cell.iloc[0:0]
        if len(at):
            ax.plot(at["target_score"], at["score_mean"], marker="v", ms=9, color=colors[label], ls="none", mec="k")
            ax.plot([], [], marker="v", ms=8, color="0.45", mec="k", ls="none", label="saturates (calibration.csv)")
        lines.append((colors[label], f"rho {c['rho']:.2f}, slope {c['slope']:.2f}"))
    if 0 < len(lines) <= 3:
        for i, (color, text) in enumerate(lines):
            ax.text(0.03, 0.97 - 0.07 * i, text, transform=ax.transAxes, va="top", ha="left", fontsize=8, color=color)


def _env_order(envs) -> list[str]:
    return sorted(set(envs), key=lambda e: (ENV_ORDER.index(e) if e in ENV_ORDER else 99, e))


def return_distributions_figure(episodes: pd.DataFrame, summary: pd.DataFrame) -> Figure:
    """Per-target distributions of achieved normalised return, with the training data's beside.

    Args:
        episodes: ``episodes.csv`` rows (``env``, ``checkpoint``, ``target``, ``status``,
            ``normalized_score``); failed episodes are left out.
        summary: ``summary.csv`` rows (for ``target_score`` and the dataset return quantiles).
    """
    ok = episodes[episodes["status"] == Status.OK.value] if "status" in episodes else episodes
    envs = _env_order(summary["env"])
    colors = checkpoint_colors(list(summary["checkpoint"]))
    fig, axes = _panels(len(envs), 4.6, 4.8)
    for ax, env in zip(axes[0], envs, strict=True):
        rows = summary[summary["env"] == env]
        labels = sorted(rows["checkpoint"].unique())
        data_xs: list[float] = []
        best_xs: list[float] = []
        span = rows["target_score"].max() - rows["target_score"].min()
        step = span / max(len(rows["target_score"].unique()) - 1, 1) if span > 0 else 10.0
        width = 0.5 * step / len(labels)
        right = float(rows["target_score"].max())
        for j, label in enumerate(labels):
            cell = rows[rows["checkpoint"] == label].sort_values("target_score")
            color = colors[label]
            xs, data = [], []
            for target, tscore in zip(cell["target"], cell["target_score"], strict=True):
                sel = ok[(ok["env"] == env) & (ok["checkpoint"] == label) & np.isclose(ok["target"], target)]
                if len(sel):
                    xs.append(tscore + (j - (len(labels) - 1) / 2) * width)
                    data.append(sel["normalized_score"].to_numpy())
            if data:
                box = ax.boxplot(
                    data,
                    positions=xs,
                    widths=width * 0.9,
                    whis=(5, 95),
                    patch_artist=True,
                    manage_ticks=False,
                    flierprops={"marker": ".", "ms": 3, "markerfacecolor": color, "markeredgecolor": color},
                    medianprops={"color": "k", "lw": 1},
                )
                for patch in box["boxes"]:
                    patch.set(facecolor=color, alpha=0.45, edgecolor=color)
                for part in ("whiskers", "caps"):
                    for line in box[part]:
                        line.set(color=color)
                ax.plot([], [], "s", color=color, alpha=0.6, label=label)
            q = cell.iloc[0]
            if "dataset_return_median" in cell and np.isfinite(q.get("dataset_return_median", np.nan)):
                env_id = q["env_id"]
                norm = _normalizer(env_id)
                stats5 = [norm(q[c]) for c in ("dataset_return_min", "dataset_return_p10", "dataset_return_median")]
                stats5 += [norm(q["dataset_return_p90"]), q["dataset_best_score"]]
                x = right + step * (0.9 + 0.6 * j)
                ax.vlines(x, stats5[0], stats5[4], color=color, lw=1)
                ax.add_patch(
                    matplotlib.patches.Rectangle(
                        (x - width / 2, stats5[1]),
                        width,
                        stats5[3] - stats5[1],
                        facecolor="white",
                        edgecolor=color,
                        hatch="///",
                    )
                )
                ax.hlines(stats5[2], x - width / 2, x + width / 2, color="k", lw=1)
                ax.plot([], [], "s", mfc="white", mec="0.3", label="hatched box: its training data's returns")
                best = float(q["dataset_best_score"])
                ax.axvspan(best, right + step * 0.5, color=color, alpha=0.07, lw=0)
                ax.axvline(best, color=color, ls=":", lw=1)
                data_xs.append(x)
                best_xs.append(best)
        # one vertical label per group, inside the panel: beside the first data line, and over the
        # data boxes (each box is also in the legend); vertical text is narrow, so neither runs into
        # the other nor out of the panel, however many checkpoints there are
        if best_xs:
            ax.annotate(
                "targets beyond the data",
                (min(best_xs), 0.03),
                xycoords=("data", "axes fraction"),
                xytext=(-2, 0),
                textcoords="offset points",
                rotation=90,
                ha="right",
                va="bottom",
                fontsize=LEGEND_SIZE,
                color="0.3",
            )
        if data_xs:
            ax.annotate(
                "training data",
                (max(data_xs), 0.97),
                xycoords=("data", "axes fraction"),
                xytext=(4, 0),
                textcoords="offset points",
                rotation=90,
                ha="left",
                va="top",
                fontsize=LEGEND_SIZE,
                color="0.3",
            )
            ax.set_xlim(right=max(data_xs) + step * 0.6)
        lo, hi = ax.get_ylim()
        ax.plot([lo, hi], [lo, hi], color="0.55", ls="--", lw=1, label="oracle (y = x)")
        ax.set_ylim(lo, hi)
        env_ids = ", ".join(sorted(rows["env_id"].unique()))
        ax.set_title(f"{env} ({env_ids})")
        ax.set_xlabel("target return (D4RL-normalised); data at right")
        ax.set_ylabel("achieved return per episode (D4RL-normalised)")
        ax.grid(alpha=0.3)
    _legend(fig, axes)
    _suptitle(fig, "Achieved return per episode (box: quartiles, whiskers: 5-95%)")
    return fig


def _normalizer(env_id: str):
    from harness.world.envs import resolve_env

    return resolve_env(env_id).normalized_score


def episode_length_figure(episodes: pd.DataFrame, summary: pd.DataFrame) -> Figure:
    """Mean episode length (95% bootstrap band) against target, per env and checkpoint."""
    from harness.core.stats import bootstrap_ci

    ok = episodes[episodes["status"] == Status.OK.value] if "status" in episodes else episodes
    envs = _env_order(summary["env"])
    colors = checkpoint_colors(list(summary["checkpoint"]))
    fig, axes = _panels(len(envs), 4.2, 4.2)
    for ax, env in zip(axes[0], envs, strict=True):
        rows = summary[summary["env"] == env]
        for label, cell in rows.groupby("checkpoint", sort=True):
            cell = cell.sort_values("target_score")
            mean, lo, hi = [], [], []
            for target in cell["target"]:
                sel = ok[(ok["env"] == env) & (ok["checkpoint"] == label) & np.isclose(ok["target"], target)]
                x = sel["length"].to_numpy(dtype=float)
                mean.append(x.mean() if len(x) else np.nan)
                a, b = bootstrap_ci(x) if len(x) else (np.nan, np.nan)
                lo.append(a)
                hi.append(b)
            xs = cell["target_score"].to_numpy()
            ax.plot(xs, mean, "o-", color=colors[label], ms=3.5, lw=1.5, label=label)
            ax.fill_between(xs, lo, hi, color=colors[label], alpha=0.2, lw=0)
        ax.set_title(f"{env} ({', '.join(sorted(rows['env_id'].unique()))})")
        ax.set_xlabel("target return (D4RL-normalised)")
        ax.set_ylabel("episode length (env steps)")
        ax.grid(alpha=0.3)
    _legend(fig, axes)
    _suptitle(fig, "Episode length against target (mean, 95% bootstrap CI)")
    return fig


def train_steps(out: Path) -> dict[tuple[str, str], int]:
    """``{(env, checkpoint label): Trainer step}`` from a sweep's metadata.json (empty without one)."""
    import json

    path = out / METADATA
    if not path.is_file():
        return {}
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    steps = {}
    for c in meta.get("checkpoints", []) if isinstance(meta, dict) else []:
        if isinstance(c, dict) and isinstance(c.get("train_step"), int):
            steps[(str(c.get("env")), str(c.get("label")))] = c["train_step"]
    return steps


def learning_condition(summary: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The summary rows a learning curve is drawn from, and their condition's label: the unshifted
    cells of each env's first version where the sweep has them (label ``""``), else the sweep's first
    condition (a shifted-only sweep; label such as ``"mass=0.8"``)."""
    rows = with_shift(summary)
    if "env_id" in rows:
        first = rows.groupby("env")["env_id"].transform(lambda ids: sorted(ids)[0])
        rows = rows[rows["env_id"] == first]
    versions = "env_id" in summary and summary.groupby("env")["env_id"].nunique().max() > 1
    plain = rows[rows["shift"] == NO_SHIFT]
    if len(plain) or rows.empty:
        return plain, condition_tag(rows["env_id"].iloc[0], NO_SHIFT, True) if versions and len(plain) else ""
    first_shift = rows["shift"].iloc[0]
    chosen = rows[rows["shift"] == first_shift]
    return chosen, condition_tag(chosen["env_id"].iloc[0] if "env_id" in chosen else "", first_shift, versions)


def learning_curve_figure(
    summary: pd.DataFrame, steps: dict[tuple[str, str], int], condition: str = ""
) -> Figure | None:
    """Score against training step per target, one panel per env with >= 2 steps; None if none has.

    Args:
        summary: summary.csv rows of one condition (:func:`learning_condition`).
        steps: ``{(env, checkpoint): step}`` (:func:`train_steps`); other checkpoints are left out.
        condition: the condition's label, in each panel's title when not empty.
    """
    rows = summary[[(e, c) in steps for e, c in zip(summary["env"], summary["checkpoint"], strict=True)]].copy()
    rows["step"] = [steps[(e, c)] for e, c in zip(rows["env"], rows["checkpoint"], strict=True)]
    envs = [e for e in _env_order(rows["env"]) if rows.loc[rows["env"] == e, "step"].nunique() >= 2]
    if not envs:
        return None
    fig, axes = _panels(len(envs), 4.6, 4.4)
    for ax, env in zip(axes[0], envs, strict=True):
        cell = rows[rows["env"] == env]
        cmap = plt.get_cmap("viridis")
        targets = sorted(cell["target"].unique())
        for i, t in enumerate(targets):
            line = cell[cell["target"] == t].sort_values("step")
            color = cmap(i / max(1, len(targets) - 1))
            ax.plot(line["step"], line["score_mean"], "o-", ms=3, lw=1.2, color=color, label=f"target {t:.0f}")
            ax.fill_between(line["step"], line["score_ci_low"], line["score_ci_high"], color=color, alpha=0.15, lw=0)
        mean = cell.groupby("step")["score_mean"].mean()
        ax.plot(mean.index, mean.to_numpy(), "k--", lw=1.8, label="mean over targets")
        best = int(mean.idxmax())
        ax.axvline(best, color="0.5", lw=0.8, ls=":")
        ax.set_title(f"{env}{f' [{condition}]' if condition else ''} (best mean at step {best})")
        ax.set_xlabel("training step")
        ax.set_ylabel("achieved return (normalised)")
        ax.grid(alpha=0.3)
    _legend(fig, axes)
    _suptitle(fig, "Learning curve: score of each Trainer checkpoint (mean, 95% CI)")
    return fig


def condition_labels(frame: pd.DataFrame, several_versions: bool) -> pd.Series:
    """Each row's condition: its env version (when the sweep has several) and shift label;
    ``""`` for the unshifted cell of the first version."""
    shift = frame["shift"].fillna(NO_SHIFT).astype(str) if "shift" in frame else pd.Series(NO_SHIFT, frame.index)
    ids = frame.get("env_id", pd.Series("", frame.index))
    parts = [condition_tag(env_id, s, several_versions) for env_id, s in zip(ids, shift, strict=True)]
    return pd.Series(parts, index=frame.index)


def facet_conditions(*frames: pd.DataFrame | None) -> tuple[pd.DataFrame | None, ...]:
    """The frames with ``checkpoint`` relabelled ``checkpoint [condition]`` where a sweep has shifted
    conditions (unchanged otherwise), so that every figure draws each condition as its own group."""
    present = [f for f in frames if f is not None and len(f)]
    several = any("env_id" in f and f.groupby("env")["env_id"].nunique().max() > 1 for f in present)
    shifted = any("shift" in f and (f["shift"].fillna(NO_SHIFT).astype(str) != NO_SHIFT).any() for f in present)
    if not (several or shifted):
        return frames
    out = []
    for f in frames:
        if f is None or "checkpoint" not in f:
            out.append(f)
            continue
        cond = condition_labels(f, several)
        label = [c if not k else f"{c} [{k}]" for c, k in zip(f["checkpoint"].astype(str), cond, strict=True)]
        out.append(f.assign(checkpoint=label))
    return tuple(out)


def shift_figure(summary: pd.DataFrame, robust: pd.DataFrame | None = None) -> Figure | None:
    """Return conditioning under each shift level: one panel per env x checkpoint, one line per
    condition (unshifted in black, the others in a sequential colour map), mean score with its 95%
    bootstrap band; the legend gives each condition's retained score (``robustness.csv``).
    None when the summary has a single condition."""
    several = summary.groupby("env")["env_id"].nunique().max() > 1
    cond = condition_labels(summary, several)
    if cond.nunique() < 2:
        return None
    summary = summary.assign(_cond=cond)
    panels = list(dict.fromkeys(zip(summary["env"], summary["checkpoint"], strict=True)))
    panels.sort(key=lambda p: ENV_ORDER.index(p[0]) if p[0] in ENV_ORDER else len(ENV_ORDER))
    conds = [c for c in dict.fromkeys(summary["_cond"]) if c]
    cmap = plt.get_cmap("viridis")
    colors = {"": "k"} | {
        c: matplotlib.colors.to_hex(cmap(0.9 * i / max(len(conds) - 1, 1))) for i, c in enumerate(conds)
    }
    fig, axes = _panels(len(panels), 4.4, 4.6)
    for ax, (env, label) in zip(axes[0], panels, strict=True):
        rows = summary[(summary["env"] == env) & (summary["checkpoint"] == label)]
        lo = float(np.nanmin(rows[["target_score", "score_ci_low"]].to_numpy()))
        hi = float(np.nanmax(rows[["target_score", "score_ci_high"]].to_numpy()))
        lo, hi = min(lo, 0.0), max(hi, 100.0)
        ax.plot([lo, hi], [lo, hi], color="0.55", ls="--", lw=1, label="oracle (y = x)")
        for c in dict.fromkeys(rows["_cond"]):
            cell = rows[rows["_cond"] == c].sort_values("target_score")
            name = f"{env}, {c}" if c else "unshifted"  # one legend for all panels: say whose line it is
            if c and robust is not None and len(robust):
                r = robust[(robust["env"] == env) & (robust["checkpoint"] == label)]
                r = r[condition_labels(r, several) == c]
                if len(r):
                    x = r.iloc[0]
                    name += f": keeps {x['retained']:.2f} [{x['retained_ci_low']:.2f}, {x['retained_ci_high']:.2f}]"
            xs = cell["target_score"].to_numpy()
            ax.plot(xs, cell["score_mean"], "o-", color=colors[c], ms=3, lw=1.3, label=name)
            ax.fill_between(xs, cell["score_ci_low"], cell["score_ci_high"], color=colors[c], alpha=0.15, lw=0)
        ax.set_title(_wrap_label(f"{env}: {label}", 40))
        ax.set_xlabel("target return (D4RL-normalised)")
        ax.set_ylabel("achieved return (D4RL-normalised)")
        ax.set_xlim(lo, hi)
        ax.grid(alpha=0.3)
    _legend(fig, axes)
    _suptitle(fig, "Return conditioning under shift (mean, 95% bootstrap CI; share of the unshifted score kept)")
    return fig


def _save(fig: Figure, out: Path, name: str) -> list[Path]:
    written = []
    for ext in FIGURE_FORMATS:
        path = out / f"{name}.{ext}"
        tmp = path.with_suffix(f".tmp.{ext}")
        fig.savefig(tmp, dpi=150)
        tmp.replace(path)
        written.append(path)
    plt.close(fig)
    return written


def save_figures(out: Path) -> list[Path]:
    """Redraw every figure of a result folder from its CSV files; returns the files written."""
    summary_path = out / SUMMARY
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
    read = READ_OPTIONS
    summary = pd.read_csv(summary_path, **read)
    cal_path = out / CALIBRATION
    calibration = pd.read_csv(cal_path, **read) if cal_path.is_file() else None
    robust_path = out / ROBUSTNESS
    robust = pd.read_csv(robust_path, **read) if robust_path.is_file() else None
    written: list[Path] = []
    shifted = shift_figure(summary, robust)
    if shifted is not None:
        written += _save(shifted, out, FIGURE_SHIFT)
    learning, condition = learning_condition(summary)
    (summary, calibration) = facet_conditions(summary, calibration)
    written += _save(return_conditioning_figure(summary, calibration), out, FIGURE_RETURN_CONDITIONING)
    episodes_path = out / EPISODES
    if episodes_path.is_file():
        try:
            episodes = pd.read_csv(episodes_path, **read)
            (episodes,) = facet_conditions(episodes) if "shift" in episodes else (episodes,)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise HarnessError(f"{episodes_path} is not a readable CSV ({exc}); rerun the sweep") from None
        lacking = sorted({"env", "checkpoint", "target", "normalized_score", "length"} - set(episodes.columns))
        if lacking:
            raise HarnessError(f"{episodes_path} lacks columns {', '.join(lacking)}; rerun the sweep")
        written += _save(return_distributions_figure(episodes, summary), out, FIGURE_RETURN_DISTRIBUTIONS)
        written += _save(episode_length_figure(episodes, summary), out, FIGURE_EPISODE_LENGTH)
    curve = learning_curve_figure(learning, train_steps(out), condition)
    if curve is not None:
        written += _save(curve, out, FIGURE_LEARNING_CURVE)
    return written


def comparison_figure(table: pd.DataFrame, baseline: str, candidate: str) -> Figure:
    """Both return-conditioning curves per env (top) and their difference with its band (bottom).

    Args:
        table: the cell rows of ``compare.csv`` (``level == "cell"``; see :mod:`harness.analysis.comparison`).
        baseline: name of the baseline side for the legend.
        candidate: name of the candidate side for the legend.
    """
    cells = table[table["level"] == "cell"]
    envs = _env_order(cells["env"])
    fig, axes = _panels(len(envs), 4.2, 7.0, nrows=2, sharex="col")
    for col, env in enumerate(envs):
        rows = cells[cells["env"] == env]
        top, bottom = axes[0][col], axes[1][col]
        for (a, b), pair in rows.groupby(["baseline_checkpoint", "candidate_checkpoint"], sort=True):
            pair = pair.sort_values("target")
            x = _normalizer_for(env)(pair["target"].to_numpy(float))
            for who, label, color in (
                ("baseline", f"{baseline}: {a}", "tab:blue"),
                ("candidate", f"{candidate}: {b}", "tab:orange"),
            ):
                top.plot(x, pair[f"{who}_mean"], "o-", color=color, ms=3.5, lw=1.5, label=label)
                top.fill_between(x, pair[f"{who}_ci_low"], pair[f"{who}_ci_high"], color=color, alpha=0.2, lw=0)
            bottom.plot(x, pair["diff"], "o-", color="0.2", ms=3.5, lw=1.5, label=f"{b} - {a}")
            bottom.fill_between(x, pair["diff_ci_low"], pair["diff_ci_high"], color="0.5", alpha=0.3, lw=0)
        lo, hi = top.get_xlim()
        top.plot([lo, hi], [lo, hi], color="0.55", ls="--", lw=1, label="oracle (y = x)")
        top.set_title(env)
        top.set_ylabel("achieved return (normalised)")
        top.grid(alpha=0.3)
        bottom.axhline(0.0, color="0.55", ls="--", lw=1)
        bottom.set_xlabel("target return (D4RL-normalised)")
        bottom.set_ylabel("candidate - baseline (points)")
        bottom.grid(alpha=0.3)
    _legend(fig, axes)
    conf = float(cells["confidence"].iloc[0]) if len(cells) else 0.95
    _suptitle(fig, f"Comparison (means with 95% CI; difference with its {100 * conf:.2f}% Bonferroni CI)")
    return fig


def probe_figure(curves: pd.DataFrame, attention: pd.DataFrame) -> Figure:
    """The return probe (``harness probe``): action change against counterfactual target (left) and
    the newest state token's attention to return tokens by layer and head (right).

    Args:
        curves: ``probe_curve.csv`` rows (``checkpoint``, ``target_score``, ``action_distance`` and its CI).
        attention: ``probe_attention.csv`` rows (``checkpoint``, ``layer``, ``head``, ``attention_to_returns``, CI).
    """
    fig, axes = _panels(2, 4.6, 4.2)
    left, right = axes[0]
    labels = list(dict.fromkeys(curves["checkpoint"]))
    colors = checkpoint_colors(labels)
    for label in labels:
        c = curves[curves["checkpoint"] == label].sort_values("target_score")
        left.plot(c["target_score"], c["action_distance"], "o-", color=colors[label], ms=3.5, lw=1.5, label=label)
        left.fill_between(
            c["target_score"], c["action_distance_ci_low"], c["action_distance_ci_high"], color=colors[label],
            alpha=0.2, lw=0,
        )  # fmt: skip
    left.set_xlabel("counterfactual target return (D4RL-normalised)")
    left.set_ylabel("action distance from the lowest target's (L2)")
    left.set_title("action change")
    left.grid(alpha=0.3)
    width = 0.8 / max(len(labels), 1)
    for i, label in enumerate(labels):
        a = attention[attention["checkpoint"] == label].reset_index(drop=True)
        x = np.arange(len(a)) + i * width
        err = np.vstack([a["attention_to_returns"] - a["ci_low"], a["ci_high"] - a["attention_to_returns"]])
        right.bar(x, a["attention_to_returns"], width, yerr=err, color=colors[label], capsize=2)
        if i == 0:
            right.set_xticks(x + 0.4 - width / 2, [f"L{r.layer} H{r.head}" for r in a.itertuples()])
    right.set_xlabel("layer, head")
    right.set_ylabel("attention share on return tokens")
    right.set_title("newest state token's attention")
    right.grid(alpha=0.3, axis="y")
    _legend(fig, axes)
    _suptitle(fig, "Return probe: same windows, only the return tokens changed (means with 95% bootstrap CIs)")
    return fig


def _normalizer_for(env: str):
    from harness.world.envs import resolve_env

    return resolve_env(env).normalized_score


def save_figure(fig: Figure, out: Path, name: str) -> list[Path]:
    """Write ``fig`` as ``out/name.png`` and ``.svg`` (through temporary names); closes it."""
    return _save(fig, out, name)


def aggregate_figure(metrics: pd.DataFrame, profiles: pd.DataFrame) -> Figure:
    """rliable's two plots of ``harness aggregate``: each metric as a point with its stratified
    bootstrap CI per group (one panel per metric), and the performance profiles (share of run x
    task scores above tau, with its band)."""
    groups = list(dict.fromkeys(metrics["group"]))
    colors = checkpoint_colors(groups)
    names = list(dict.fromkeys(metrics["metric"]))
    fig, axes = _panels(len(names) + 1, 3.0, 2.4 + 0.35 * len(groups))
    for ax, name in zip(axes[0][:-1], names, strict=True):
        rows = metrics[metrics["metric"] == name]
        for i, g in enumerate(groups):
            r = rows[rows["group"] == g].iloc[0]
            ax.barh(i, r["ci_high"] - r["ci_low"], left=r["ci_low"], height=0.6, color=colors[g], alpha=0.6)
            ax.plot([r["value"]] * 2, [i - 0.3, i + 0.3], color="k", lw=1.5)
        ax.set_yticks(range(len(groups)), [_wrap_label(g, 14) for g in groups] if ax is axes[0][0] else [])
        ax.set_title(name + (" (lower is better)" if name == "optimality gap" else ""), fontsize=TITLE_SIZE)
        ax.set_xlabel("normalised score")
        ax.grid(alpha=0.3, axis="x")
    ax = axes[0][-1]
    for g in groups:
        p = profiles[profiles["group"] == g]
        ax.plot(p["tau"], p["share"], color=colors[g], lw=1.5, label=g)
        ax.fill_between(p["tau"], p["ci_low"], p["ci_high"], color=colors[g], alpha=0.2, lw=0)
    ax.set_title("performance profile", fontsize=TITLE_SIZE)
    ax.set_xlabel("normalised score tau")
    ax.set_ylabel("share of runs above tau")
    ax.grid(alpha=0.3)
    _legend(fig, axes)
    _suptitle(fig, "Aggregate over tasks and runs (rliable's statistics; 95% stratified bootstrap CIs)")
    return fig
