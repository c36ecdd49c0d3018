"""Figures a person can read: every figure the harness draws, for 1, 2 and 3 envs and 1 to
8 checkpoints per env, keeps every piece of text on the canvas and no two text boxes overlap
(entries of one legend aside), measured from matplotlib's own text extents after a draw."""

from __future__ import annotations

import itertools

import matplotlib
import matplotlib.pyplot
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from matplotlib.text import Text

from harness.analysis import figures
from harness.analysis.summary import summarize
from harness.io.data import DatasetSummary
from harness.world.envs import resolve_env

ENVS = ["hopper", "walker2d", "halfcheetah"]


def episodes_for(n_envs: int, n_ckpts: int, long_labels: bool = True) -> tuple[pd.DataFrame, dict]:
    """Synthetic ``episodes.csv`` rows (5 targets x 4 episodes per checkpoint) and dataset summaries."""
    rng = np.random.default_rng(0)
    rows, datasets = [], {}
    for env in ENVS[:n_envs]:
        spec = resolve_env(env)
        for c in range(n_ckpts):
            label = f"runs/{env}-medium-replay-seed{c}/trainer/checkpoint-{1000 * (c + 1)}" if long_labels else f"c{c}"
            datasets[(env, label)] = DatasetSummary("d", 100, 50_000, 100.0, 500.0, 1500.0, 2500.0, 3200.0)
            for target in np.linspace(500, 4000, 5):
                for k in range(4):
                    ret = float(min(target, 3000) * rng.uniform(0.7, 1.1))
                    rows.append(
                        {
                            "env": env,
                            "env_id": spec.env_id,
                            "checkpoint": label,
                            "target": float(target),
                            "episode": k,
                            "seed": k,
                            "return": ret,
                            "length": int(rng.integers(100, 1000)),
                            "terminated": True,
                            "truncated": False,
                            "status": "ok",
                            "normalized_score": float(spec.normalized_score(ret)),
                            "wall_time_s": 1.0,
                            "error": "",
                            "video": "",
                        }
                    )
    return pd.DataFrame(rows), datasets


def drawn_texts(fig: Figure) -> list[tuple[str, Text]]:
    """``(group, text)`` for every non-empty text the draw put on the canvas; ``group`` is the legend
    a text belongs to (entries of one legend may touch), else a unique name."""
    fig.canvas.draw()
    out: list[tuple[str, Text]] = []
    singles = itertools.count()
    if fig._suptitle is not None:
        out.append((f"t{next(singles)}", fig._suptitle))
    out += [(f"t{next(singles)}", t) for t in fig.texts]
    for i, leg in enumerate([*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend())]):
        out += [(f"legend{i}", t) for t in [*leg.get_texts(), leg.get_title()]]
    for ax in fig.axes:
        plain = [ax.title, ax._left_title, ax._right_title, ax.xaxis.label, ax.yaxis.label, *ax.texts]
        plain += [ax.xaxis.get_offset_text(), ax.yaxis.get_offset_text()]
        for axis, (lo, hi) in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
            lo, hi = min(lo, hi), max(lo, hi)
            pad = 1e-9 * max(1.0, abs(hi - lo))
            for loc, label in zip(axis.get_majorticklocs(), axis.get_majorticklabels(), strict=False):
                if lo - pad <= loc <= hi + pad:
                    plain.append(label)
        out += [(f"t{next(singles)}", t) for t in plain]
    seen: set[int] = set()
    unique = [(g, t) for g, t in out if not (id(t) in seen or seen.add(id(t)))]
    return [(g, t) for g, t in unique if t.get_visible() and t.get_text().strip()]


def text_problems(fig: Figure) -> list[str]:
    """Texts that leave the canvas, and pairs of texts (not of one legend) whose boxes overlap."""
    renderer = fig.canvas.get_renderer()
    canvas = fig.bbox
    boxes = [(g, t, t.get_window_extent(renderer)) for g, t in drawn_texts(fig)]
    problems = []
    for _, t, b in boxes:
        if b.x0 < canvas.x0 - 1 or b.y0 < canvas.y0 - 1 or b.x1 > canvas.x1 + 1 or b.y1 > canvas.y1 + 1:
            problems.append(f"off the canvas: {t.get_text()!r}")
    for (g1, t1, b1), (g2, t2, b2) in itertools.combinations(boxes, 2):
        if g1 == g2 and g1.startswith("legend"):
            continue
        w = min(b1.x1, b2.x1) - max(b1.x0, b2.x0)
        h = min(b1.y1, b2.y1) - max(b1.y0, b2.y0)
        if w > 0.5 and h > 0.5:
            problems.append(f"overlap: {t1.get_text()!r} and {t2.get_text()!r}")
    return problems


def comparison_table(n_envs: int, n_ckpts: int) -> pd.DataFrame:
    rows = []
    for env in ENVS[:n_envs]:
        for c in range(n_ckpts):
            for target in np.linspace(500, 4000, 4):
                rows.append(
                    {
                        "level": "cell",
                        "env": env,
                        "baseline_checkpoint": f"{env}-baseline-{c}",
                        "candidate_checkpoint": f"{env}-candidate-{c}",
                        "target": float(target),
                        **{
                            f"{w}_{s}": 50.0 + d
                            for w in ("baseline", "candidate")
                            for s, d in (("mean", 0), ("ci_low", -5), ("ci_high", 5))
                        },
                        "diff": 1.0,
                        "diff_ci_low": -2.0,
                        "diff_ci_high": 4.0,
                        "confidence": 1 - 0.05 / (3 * n_envs * n_ckpts),
                    }
                )
    return pd.DataFrame(rows)


def build(kind: str, n_envs: int, n_ckpts: int) -> Figure:
    episodes, datasets = episodes_for(n_envs, n_ckpts)
    summary = summarize(episodes, datasets=datasets)
    if kind == "return_conditioning":  # annotated with the calibration numbers (up to 3 per panel)
        from harness.analysis.calibration import calibration

        return figures.return_conditioning_figure(summary, calibration(episodes, summary, n_resamples=50))
    if kind == "return_distributions":
        return figures.return_distributions_figure(episodes, summary)
    if kind == "episode_length":
        return figures.episode_length_figure(episodes, summary)
    if kind == "learning_curve":
        steps = {(e, c): 1000 * (i + 1) for (e, c), i in zip(datasets, itertools.cycle(range(n_ckpts)), strict=False)}
        fig = figures.learning_curve_figure(summary, steps)
        assert fig is not None or n_ckpts == 1
        return fig
    if kind == "shift":  # three conditions per checkpoint, long shift labels, robustness in the legend
        from harness.analysis.robustness import robustness

        parts = []
        for i, label in enumerate(["none", "obs_noise=0.05,mass=0.8", "friction=1.3,gravity=0.9,reset_noise=2"]):
            part = episodes.assign(shift=label)
            part["normalized_score"] = part["normalized_score"] * (1 - 0.2 * i)
            parts.append(part)
        shifted = pd.concat(parts, ignore_index=True)
        fig = figures.shift_figure(summarize(shifted, datasets=datasets), robustness(shifted, n_resamples=50))
        assert fig is not None
        return fig
    if kind == "aggregate":  # n_envs x 2 groups, long group names
        groups = [f"method-{i}-with-a-long-name" for i in range(n_envs * 2)]
        metrics = pd.DataFrame(
            [{"group": g, "metric": m, "value": 50.0 + i, "ci_low": 45.0 + i, "ci_high": 55.0 + i}
             for i, g in enumerate(groups) for m in ("IQM", "median", "mean", "optimality gap")]
        )  # fmt: skip
        taus = np.linspace(0, 120, 25)
        profiles = pd.DataFrame(
            [{"group": g, "tau": t, "share": max(0.0, 1 - t / 100), "ci_low": 0.0, "ci_high": 1.0}
             for g in groups for t in taus]
        )  # fmt: skip
        return figures.aggregate_figure(metrics, profiles)
    if kind == "compare":
        return figures.comparison_figure(comparison_table(n_envs, n_ckpts), "baseline", "candidate")
    if kind == "probe":  # n_envs heads per layer, 3 layers, n_ckpts checkpoints (long Trainer-style labels)
        labels = [f"run/trainer/checkpoint-{1000 * (c + 1)}" for c in range(n_ckpts)]
        curves = pd.DataFrame(
            [
                {"checkpoint": label, "target_score": s, "action_distance": s / 200}
                | {"action_distance_ci_low": s / 250, "action_distance_ci_high": s / 150}
                for label in labels
                for s in np.linspace(0, 120, 8)
            ]
        )
        attention = pd.DataFrame(
            [
                {"checkpoint": label, "layer": layer, "head": head, "attention_to_returns": 0.2}
                | {"ci_low": 0.15, "ci_high": 0.25}
                for label in labels
                for layer in range(3)
                for head in range(n_envs)
            ]
        )
        return figures.probe_figure(curves, attention)
    raise AssertionError(kind)


KINDS = [
    "return_conditioning",
    "return_distributions",
    "episode_length",
    "learning_curve",
    "compare",
    "probe",
    "shift",
    "aggregate",
]


# the quick subset draws the smallest and the most crowded figure of each kind; the full suite all nine
SIZES = [
    pytest.param(n_envs, n_ckpts, marks=() if (n_envs, n_ckpts) in ((1, 1), (3, 8)) else pytest.mark.slow)
    for n_envs in (1, 2, 3)
    for n_ckpts in (1, 2, 8)
]


@pytest.mark.parametrize(("n_envs", "n_ckpts"), SIZES)
@pytest.mark.parametrize("kind", KINDS)
def test_every_figure_reads_whole(kind, n_envs, n_ckpts):
    fig = build(kind, n_envs, n_ckpts)
    if fig is None:  # a learning curve needs two steps of one env
        return
    try:
        assert text_problems(fig) == []
    finally:
        matplotlib.pyplot.close(fig)


def test_the_check_sees_clipped_and_overlapping_text():
    """Mutation: the check must fail on a title wider than the canvas and on two labels drawn on
    top of each other (the two defects once seen: clipped and overlapping labels)."""
    fig = matplotlib.pyplot.figure(figsize=(4, 3))
    ax = fig.subplots()
    fig.suptitle("x" * 200)
    ax.annotate("targets beyond the data", (0.5, 0.1), xycoords="axes fraction")
    ax.annotate("training data", (0.55, 0.1), xycoords="axes fraction")
    problems = text_problems(fig)
    assert any(p.startswith("off the canvas: 'xxx") for p in problems)
    assert "overlap: 'targets beyond the data' and 'training data'" in problems
    matplotlib.pyplot.close(fig)
