"""Compare two sweeps: ``python -m harness.compare BASELINE CANDIDATE``.

Cells are matched by env, target and checkpoint (one checkpoint per env pairs by itself; the
same labels pair by label; otherwise ``--pair A=B``). For each cell and each env: both means in
D4RL-normalised points, the difference with a bootstrap CI (paired by seed when both sweeps ran
the same seeds), the probability of improvement and a verdict; Bonferroni over all of them (see
:mod:`harness.analysis.comparison`). Writes ``compare.csv`` and ``compare.png``/``.svg`` into ``--out``
(default ``CANDIDATE/compare``) and prints a table (``--markdown``: a Markdown table for a CI log
or a pull request).

With one folder (a sweep of a Trainer run's checkpoints, ``--checkpoint ENV='run/trainer/checkpoint-*'``):
which training step scores best, and whether the last step is worse than it (the last step
against every earlier one, paired by seed, Bonferroni over all; ``best_vs_last.csv``).

Return conditioning too (:func:`harness.analysis.calibration.compare_calibration`): Spearman rho
and the slope of achieved on target inside the baseline's data range, paired by seed; a
significant drop in either fails (``calibration_compare.csv``).

Exit codes: 0 no significant drop beyond ``--min-drop``; 1 such a drop in a cell or an env, or in
rho or slope (one
folder: the last step significantly below an earlier one); 2 bad input (a folder that is not a
sweep, grids that do not match, unpaired checkpoints).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from harness.analysis.calibration import compare_calibration
from harness.analysis.comparison import (
    ALPHA,
    DEFAULT_MIN_DROP,
    best_vs_last,
    compare,
    compare_selected,
    pair_checkpoints,
    read_sweep,
)
from harness.analysis.figures import comparison_figure, save_figure, train_steps
from harness.analysis.report import write_comparison_report
from harness.commands.cli import Parser, run
from harness.core.errors import HarnessError
from harness.core.schema import SUMMARY
from harness.io.results import write_atomic

EXIT_DROP = 1


def render(view: pd.DataFrame, markdown: bool) -> str:
    """``view`` as aligned text, or as a Markdown table (``markdown``) for a CI log or a pull request."""
    if not markdown:
        return view.to_string(index=False)
    lines = ["| " + " | ".join(view.columns) + " |", "|" + "---|" * len(view.columns)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in view.itertuples(index=False)]
    return "\n".join(lines)


def table(df: pd.DataFrame, markdown: bool) -> str:
    """The printed table of a two-sweep comparison (one line per cell and per env)."""
    view = pd.DataFrame(
        {
            "env": df["env"],
            "target": ["all" if lvl == "env" else f"{t:.0f}" for lvl, t in zip(df["level"], df["target"], strict=True)],
            "pair": df["baseline_checkpoint"] + " -> " + df["candidate_checkpoint"],
            "baseline": df["baseline_mean"].map("{:.1f}".format),
            "candidate": df["candidate_mean"].map("{:.1f}".format),
            "diff [CI]": [
                f"{d:+.1f} [{lo:+.1f}, {hi:+.1f}]"
                for d, lo, hi in zip(df["diff"], df["diff_ci_low"], df["diff_ci_high"], strict=True)
            ],
            "P(cand > base)": df["prob_improvement"].map("{:.2f}".format),
            "paired": df["paired"].map({True: "yes", False: "no"}),
            "verdict": df["verdict"],
        }
    )
    return render(view, markdown)


def main(argv: list[str] | None = None) -> int:
    """Command line; exit 0 (no significant drop), 1 (a drop beyond --min-drop), 2 (bad input)."""
    p = Parser(prog="harness compare", description=__doc__.split("\n\n")[0])
    p.add_argument("baseline", type=Path, help="sweep folder of the baseline")
    p.add_argument(
        "candidate", type=Path, nargs="?", default=None, help="sweep folder of the candidate; omit it for best vs last"
    )
    p.add_argument("--pair", action="append", default=[], metavar="A=B", help="baseline checkpoint A vs candidate B")
    p.add_argument(
        "--min-drop",
        type=float,
        default=DEFAULT_MIN_DROP,
        help="normalised points: a significant drop larger than this fails (exit 1)",
    )
    p.add_argument("--alpha", type=float, default=ALPHA, help="family-wise error rate (Bonferroni)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--out", type=Path, default=None, help="folder for compare.csv and the figure")
    p.add_argument("--markdown", action="store_true", help="print a Markdown table")
    p.add_argument(
        "--selection-episodes",
        type=int,
        default=None,
        metavar="N",
        help="also compare each side at the target it selects on episodes k < N, on the other episodes "
        "(disjoint seeds: honest selection, harness select); compare_selected.csv",
    )
    args = p.parse_args(argv)

    def body() -> int:
        if not 0 < args.alpha < 1 or args.min_drop < 0:
            raise HarnessError(f"--alpha must lie in (0, 1) and --min-drop be >= 0, got {args.alpha}, {args.min_drop}")
        if args.candidate is None:
            return _best_vs_last(args)
        base, cand = read_sweep(args.baseline), read_sweep(args.candidate)
        pairing = pair_checkpoints(base, cand, args.pair)
        df = compare(base, cand, pairing, args.min_drop, args.alpha, args.seed)
        out = args.out or args.candidate / "compare"
        out.mkdir(parents=True, exist_ok=True)
        write_atomic(out / "compare.csv", df.to_csv(index=False))
        save_figure(comparison_figure(df, "baseline", "candidate"), out, "compare")
        print(table(df, args.markdown))
        drops = df[df["verdict"] == "drop"]
        conf = df["confidence"].iloc[0]
        note = (
            f"{len(drops)} significant drops beyond {args.min_drop:g} points "
            f"(CIs at {100 * conf:.2f}%: Bonferroni over {len(df)} comparisons)"
        )
        write_comparison_report(out, df, f"{args.baseline} (baseline) vs {args.candidate} (candidate): {note}")
        print(f"\n{note}; wrote {out}/compare.csv, compare.png/.svg, report.html")
        cal_drops = _calibration(args, base, cand, pairing.pairs, out)
        sel_drops = _selected(args, base, cand, pairing, out) if args.selection_episodes is not None else 0
        return EXIT_DROP if len(drops) or cal_drops or sel_drops else 0

    return run(body)


def _selected(args, base: pd.DataFrame, cand: pd.DataFrame, pairing, out: Path) -> int:  # noqa: ANN001
    """Each side at the target it selects on episodes k < N, compared on the rest (disjoint seeds);
    prints, writes ``compare_selected.csv``; returns the number of significant drops."""
    sel = compare_selected(base, cand, pairing, args.selection_episodes, args.min_drop, args.alpha, args.seed)
    write_atomic(out / "compare_selected.csv", sel.to_csv(index=False))
    print(
        f"\neach side at its best target on episodes k < {args.selection_episodes}, compared on the others "
        f"(disjoint seeds; CIs at {100 * sel['confidence'].iloc[0]:.2f}%):"
    )
    for r in sel.itertuples():
        print(
            f"  {r.env}: {r.baseline_checkpoint} {r.baseline_mean:.1f} vs {r.candidate_checkpoint} "
            f"{r.candidate_mean:.1f}: diff {r.diff:+.1f} [{r.diff_ci_low:+.1f}, {r.diff_ci_high:+.1f}] {r.verdict}"
        )
    return int((sel["verdict"] == "drop").sum())


def _calibration(args, base: pd.DataFrame, cand: pd.DataFrame, pairs: dict, out: Path) -> int:  # noqa: ANN001
    """Return conditioning (rho and slope inside the data's range) of both sweeps, paired by seed;
    prints the table, writes ``calibration_compare.csv``; returns the number of significant drops."""
    summary = args.baseline / SUMMARY
    if not summary.is_file():
        print(f"(no {SUMMARY} in {args.baseline}: return conditioning not compared)")
        return 0
    cal = compare_calibration(base, pd.read_csv(summary), cand, pairs, args.alpha, seed=args.seed)
    if cal.empty:
        print("(return conditioning not compared: fewer than 3 shared targets inside the data's range)")
        return 0
    write_atomic(out / "calibration_compare.csv", cal.to_csv(index=False))
    view = pd.DataFrame(
        {
            "env": cal["env"],
            "number": cal["number"],
            "baseline": cal["baseline_value"].map("{:.2f}".format),
            "candidate": cal["candidate_value"].map("{:.2f}".format),
            "diff [CI]": [
                f"{d:+.2f} [{lo:+.2f}, {hi:+.2f}]"
                for d, lo, hi in zip(cal["diff"], cal["diff_ci_low"], cal["diff_ci_high"], strict=True)
            ],
            "verdict": cal["verdict"],
        }
    )
    drops = int((cal["verdict"] == "drop").sum())
    print(
        f"\nreturn conditioning inside the baseline's data range, paired by seed "
        f"(CIs at {100 * cal['confidence'].iloc[0]:.2f}%):"
    )
    print(render(view, args.markdown))
    print(f"{drops} significant drops in rho or slope; wrote {out}/calibration_compare.csv")
    return drops


def _best_vs_last(args) -> int:  # noqa: ANN001
    """One sweep of a Trainer run: the best step and whether the last one is worse."""
    episodes = read_sweep(args.baseline)
    table_, rows = best_vs_last(episodes, train_steps(args.baseline), args.min_drop, args.alpha, args.seed)
    out = args.out or args.baseline / "compare"
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "best_vs_last.csv", table_.to_csv(index=False))
    write_atomic(out / "compare.csv", rows.to_csv(index=False))
    view = pd.DataFrame(
        {
            "env": table_["env"],
            "best step": table_["best_step"],
            "best": table_["best_mean"].map("{:.1f}".format),
            "last step": table_["last_step"],
            "last": table_["last_mean"].map("{:.1f}".format),
            "last - best [CI]": [
                f"{d:+.1f} [{lo:+.1f}, {hi:+.1f}]"
                for d, lo, hi in zip(table_["diff"], table_["diff_ci_low"], table_["diff_ci_high"], strict=True)
            ],
            "verdict": table_["verdict"],
        }
    )
    print(render(view, args.markdown))
    drops = rows[(rows["level"] == "env") & (rows["verdict"] == "drop")]
    conf = rows["confidence"].iloc[0]
    print(
        f"\nthe last step is significantly below {len(drops)} earlier steps by more than {args.min_drop:g} points "
        f"(CIs at {100 * conf:.2f}%: Bonferroni over {len(rows)} comparisons); wrote {out}/best_vs_last.csv"
    )
    return EXIT_DROP if len(drops) else 0


if __name__ == "__main__":
    sys.exit(main())
