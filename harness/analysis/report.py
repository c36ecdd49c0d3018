"""``report.html``: a sweep folder (or a comparison) as one self-contained page.

Made from the folder's files alone (like the figures): the PNG figures inline as data URIs, the
summary table, the provenance from ``metadata.json`` (command, git sha, versions, machine,
numerics mode, batch invariance) and relative links to the CSV files and videos. It opens from a
CI artifact or a mail attachment with nothing else beside it (the links need the folder).
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

import pandas as pd

from harness.core.schema import (
    CALIBRATION,
    EPISODES,
    FIGURE_FORMATS,
    FIGURES,
    METADATA,
    NO_SHIFT,
    READ_OPTIONS,
    ROBUSTNESS,
    SUMMARY,
    VIDEO_DIR,
)

REPORT = "report.html"
SUMMARY_VIEW = {
    "env": "env",
    "checkpoint": "checkpoint",
    "target": "target",
    "n": "n",
    "n_failed": "failed",
    "return_mean": "return",
    "return_ci_low": "CI low",
    "return_ci_high": "CI high",
    "score_mean": "score",
    "score_ci_low": "score CI low",
    "score_ci_high": "score CI high",
    "length_mean": "length",
}
STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;padding:0 1em;color:#222}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.85em}td,th{padding:.25em .6em;border-bottom:1px solid #eee;text-align:right}
th{background:#f6f6f6}td:nth-child(-n+2),th:nth-child(-n+2){text-align:left}
img{max-width:100%;border:1px solid #eee;margin:.5em 0}code,pre{background:#f6f6f6;padding:.1em .3em}
pre{padding:.6em;overflow-x:auto;white-space:pre-wrap}.warn{color:#a40}
"""


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def _provenance(meta: dict[str, Any]) -> str:
    numerics = meta.get("numerics") or {}
    machine = meta.get("machine") or {}
    versions = meta.get("versions") or {}
    git = meta.get("git") or {}
    rows = [
        ("command", f"<code>{html.escape(str(meta.get('command') or ''))}</code>"),
        ("git", html.escape(f"{git.get('sha')}{' (dirty)' if git.get('dirty') else ''}")),
        (
            "machine",
            html.escape(f"{machine.get('cpu')} ({machine.get('arch')}; {', '.join(machine.get('isa') or [])})"),
        ),
        ("versions", html.escape(", ".join(f"{k} {v}" for k, v in versions.items() if v))),
        (
            "numerics",
            html.escape(
                f"{numerics.get('mode')} (MKL {numerics.get('mkl_cbwr')}, torch {numerics.get('torch_cpu_capability')})"
            ),
        ),
        ("batch invariant", html.escape(str(meta.get("batch_invariant")))),
        (
            "episodes",
            html.escape(
                f"{meta.get('episodes')} ({meta.get('failed_episodes')} failed, {meta.get('resumed_episodes')} resumed)"
            ),
        ),
        ("time", html.escape(f"{meta.get('started_at')} to {meta.get('ended_at')}")),
    ]
    warn = ""
    if numerics and not numerics.get("in_force", True):
        warn = f'<p class="warn">numerics not in force: {html.escape(str(numerics.get("why_not")))}</p>'
    if meta.get("batch_invariant") is False:
        warn += '<p class="warn">batch_invariant: false: rows may depend on --num-envs, --jobs or a resume.</p>'
    body = "".join(f"<tr><th>{k}</th><td style='text-align:left'>{v}</td></tr>" for k, v in rows)
    return f"{warn}<table>{body}</table>"


def _links(folder: Path) -> str:
    files = (EPISODES, SUMMARY, CALIBRATION, ROBUSTNESS, METADATA, "compare.csv", "best_vs_last.csv")
    names = [n for n in files if (folder / n).is_file()]
    names += [f"{name}.{ext}" for name in FIGURES for ext in FIGURE_FORMATS if (folder / f"{name}.{ext}").is_file()]
    videos = sorted((folder / VIDEO_DIR).glob("*.mp4")) if (folder / VIDEO_DIR).is_dir() else []
    items = [f'<li><a href="{html.escape(n)}">{html.escape(n)}</a></li>' for n in names]
    items += [
        f'<li><a href="{VIDEO_DIR}/{html.escape(v.name)}">{VIDEO_DIR}/{html.escape(v.name)}</a></li>' for v in videos
    ]
    return f"<ul>{''.join(items)}</ul>"


def _table(df: pd.DataFrame, columns: dict[str, str]) -> str:
    view = df[[c for c in columns if c in df.columns]].rename(columns=columns)
    return view.to_html(index=False, float_format=lambda x: f"{x:.1f}", border=0, na_rep="")


def _calibration_table(cal: pd.DataFrame) -> str:
    """calibration.csv as a table: each number with its CI in one cell."""

    def ci(name: str, digits: int) -> pd.Series:
        return pd.Series(
            [
                f"{r[name]:.{digits}f} [{r[name + '_ci_low']:.{digits}f}, {r[name + '_ci_high']:.{digits}f}]"
                for _, r in cal.iterrows()
            ],
            index=cal.index,
            dtype=object,
        )

    view = pd.DataFrame(
        {
            "env": cal["env"],
            "checkpoint": cal["checkpoint"],
            **(
                {"env id": cal["env_id"], "shift": cal["shift"]}
                if "shift" in cal and (cal["shift"].astype(str) != NO_SHIFT).any()
                else {}
            ),
            "Spearman rho": ci("rho", 2),
            "slope": ci("slope", 2),
            "tracking error": ci("tracking_error", 1),
            "best score": ci("best_score", 1),
            "best at": cal["best_target"].map("{:.0f}".format),
            "saturates from": cal["saturation_target"].map("{:.0f}".format),
            "stuck": cal["stuck_share"].map("{:.0%}".format),
            "above the data": cal["above"],
            "above / best": ci("above_ratio", 2),
        }
    )
    return view.to_html(index=False, border=0, na_rep="")


def _robustness_table(rob: pd.DataFrame) -> str:
    """robustness.csv as a table: the score each shifted condition keeps, with its CI."""
    view = pd.DataFrame(
        {
            "env": rob["env"],
            "checkpoint": rob["checkpoint"],
            "env id": rob["env_id"],
            "shift": rob["shift"],
            "episodes (paired)": rob["episodes"],
            "unshifted score": rob["base_score"].map("{:.1f}".format),
            "shifted score": rob["score"].map("{:.1f}".format),
            "retained [95% CI]": [
                f"{r.retained:.2f} [{r.retained_ci_low:.2f}, {r.retained_ci_high:.2f}]" for r in rob.itertuples()
            ],
        }
    )
    return view.to_html(index=False, border=0, na_rep="")


def write_report(folder: Path, title: str | None = None) -> Path:
    """Write ``folder/report.html`` from a sweep folder's files; returns its path.

    Needs ``summary.csv``; uses ``metadata.json``, the figures' PNGs and the videos when present.
    """
    folder = Path(folder)
    read = READ_OPTIONS
    summary = pd.read_csv(folder / SUMMARY, **read)
    view = dict(SUMMARY_VIEW)
    if "shift" in summary and (summary["shift"] != NO_SHIFT).any():  # facet: the shift and what it keeps
        view = {"env": "env", "env_id": "env id", "checkpoint": "checkpoint", "shift": "shift"} | view
        view |= {"retained": "retained", "retained_ci_low": "retained CI low", "retained_ci_high": "retained CI high"}
    elif summary.groupby("env")["env_id"].nunique().max() > 1:
        view = {"env": "env", "env_id": "env id"} | view
    meta_path = folder / METADATA
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    figures = "".join(_img(folder / f"{name}.png") for name in FIGURES if (folder / f"{name}.png").is_file())
    envs = ", ".join(dict.fromkeys(summary["env"]))
    page = _page(
        title or f"Sweep: {envs}",
        [
            ("Figures", figures or "<p>no figures</p>"),
            (
                "Summary (mean over ok episodes, 95% bootstrap CI; score = D4RL-normalised)",
                _table(summary, view),
            ),
            *(
                [
                    (
                        "Return conditioning (calibration.csv; inside the data's p10-p90 return range; "
                        "95% bootstrap CIs over episodes)",
                        _calibration_table(pd.read_csv(folder / CALIBRATION, **read)),
                    )
                ]
                if (folder / CALIBRATION).is_file()
                else []
            ),
            *(
                [
                    (
                        "Robustness (robustness.csv): the mean score each shifted condition keeps, as a share "
                        "of the unshifted cell's over the same reset seeds (95% paired bootstrap CI)",
                        _robustness_table(pd.read_csv(folder / ROBUSTNESS, **read)),
                    )
                ]
                if (folder / ROBUSTNESS).is_file()
                else []
            ),
            ("Provenance", _provenance(meta)),
            ("Files", _links(folder)),
        ],
    )
    out = folder / REPORT
    out.write_text(page, encoding="utf-8")
    return out


def write_comparison_report(folder: Path, table: pd.DataFrame, note: str) -> Path:
    """Write ``folder/report.html`` for ``harness compare``: its figure, table and verdict line."""
    folder = Path(folder)
    figure = _img(folder / "compare.png") if (folder / "compare.png").is_file() else ""
    cols = {c: c for c in table.columns if c not in ("level",)}
    page = _page(
        "Comparison",
        [
            ("Figure", figure),
            ("Verdict", f"<pre>{html.escape(note)}</pre>"),
            ("Table", _table(table, cols)),
            ("Files", _links(folder)),
        ],
    )
    out = folder / REPORT
    out.write_text(page, encoding="utf-8")
    return out


def write_aggregate_report(folder: Path, result: Any, at: str) -> Path:
    """Write ``folder/report.html`` for ``harness aggregate``: figure, metrics, improvement, scores."""
    folder = Path(folder)
    figure = _img(folder / "aggregate.png") if (folder / "aggregate.png").is_file() else ""
    metrics = result.metrics.assign(
        estimate=[f"{r.value:.1f} [{r.ci_low:.1f}, {r.ci_high:.1f}]" for r in result.metrics.itertuples()]
    )
    improvement = result.improvement.assign(
        estimate=[f"{r.probability:.2f} [{r.ci_low:.2f}, {r.ci_high:.2f}]" for r in result.improvement.itertuples()]
    )
    page = _page(
        "Aggregate over tasks and runs",
        [
            ("Figure", figure),
            (
                f"Metrics (score at: {at}; 95% stratified bootstrap CIs, rliable)",
                _table(
                    metrics, {"group": "group", "metric": "metric", "estimate": "estimate [95% CI]", "runs": "runs"}
                ),
            ),
            (
                "Probability of improvement P(X > Y)",
                _table(improvement, {"x": "X", "y": "Y", "estimate": "P(X > Y) [95% CI]"}),
            ),
            (
                "Scores (one per run and task)",
                _table(result.scores, {c: c for c in result.scores.columns}),
            ),
        ],
    )
    out = folder / REPORT
    out.write_text(page, encoding="utf-8")
    return out


def _page(title: str, sections: list[tuple[str, str]]) -> str:
    body = "".join(f"<h2>{html.escape(h)}</h2>{content}" for h, content in sections)
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>{body}"
        "<p><small>Made by harness from this folder's files (harness plot redraws it).</small></p></body></html>\n"
    )
