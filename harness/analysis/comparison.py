"""Two sweeps compared cell by cell: differences of D4RL-normalised means with CIs, P(improvement).

The library under ``python -m harness.compare``. A sweep folder is read from its ``episodes.csv``
alone (``ok`` episodes; statuses other than ``ok`` are counted, not scored). Cells are matched
by env, target and a pairing of checkpoints. For each matched cell:

- ``baseline_mean``, ``candidate_mean``: mean normalised score (each with its 95% bootstrap CI);
- ``diff`` = candidate - baseline, with a percentile-bootstrap CI (``scipy.stats.bootstrap``,
  seeded). **Paired** by seed when both sweeps ran the same seeds (the difference of each
  seed's two episodes, resampled together: the same start state, so much of the episode-to-
  episode spread cancels); else **unpaired** (the two samples resampled independently);
- ``prob_improvement``: P(candidate > baseline) for a random episode of each (ties count half):
  rliable's "probability of improvement", the Mann-Whitney U statistic over ``n m``;
- ``verdict``: ``drop`` when the CI lies wholly below 0 and the drop exceeds ``min_drop``
  points, ``gain`` when the CI lies wholly above 0 and the gain exceeds ``min_drop``,
  ``no change`` (CI below/above 0 but within ``min_drop``: significant yet too small to count), or
  ``inconclusive``.

Per env, the same over all of its matched cells pooled (paired by (target, seed) pairs when every
cell is paired). Multiple comparisons: Bonferroni over all cells and envs of the comparison:
each CI is at confidence ``1 - alpha / m``, so the chance that any "drop" is a false alarm is at
most ``alpha`` (5%) when nothing changed.

>>> probability_of_improvement(np.array([1.0, 2.0]), np.array([0.0, 2.0]))
0.625
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from harness.analysis.robustness import condition_tag, with_shift
from harness.core.errors import HarnessError
from harness.core.schema import EPISODE_COLUMNS, EPISODES, NO_SHIFT, READ_OPTIONS, Status
from harness.core.stats import bootstrap_ci, bootstrap_difference_ci

DEFAULT_MIN_DROP = 5.0
"""Normalised points. The DT paper's seed-to-seed spread is 0.1-7.0 points (Table 2) and CORL's
numbers differ from the paper's by 2-7 points: a smaller drop is within what retraining alone
moves a checkpoint, so it is reported as significant but not failed on."""
ALPHA = 0.05
COMPARE_COLUMNS = [
    "level",
    "env",
    "target",
    "baseline_checkpoint",
    "candidate_checkpoint",
    "n_baseline",
    "n_candidate",
    "failed_baseline",
    "failed_candidate",
    "paired",
    "baseline_mean",
    "baseline_ci_low",
    "baseline_ci_high",
    "candidate_mean",
    "candidate_ci_low",
    "candidate_ci_high",
    "diff",
    "diff_ci_low",
    "diff_ci_high",
    "confidence",
    "prob_improvement",
    "verdict",
    "shift",
]


def read_sweep(folder: Path) -> pd.DataFrame:
    """The episode rows of a sweep folder (its ``episodes.csv``).

    Raises:
        HarnessError: not a folder, no episodes.csv, or a file of other columns.
    """
    path = Path(folder) / EPISODES
    if not Path(folder).is_dir() or not path.is_file():
        raise HarnessError(
            f"{folder} is not a sweep folder (no {EPISODES}); pass folders written by harness.commands.sweep"
        )
    try:
        df = pd.read_csv(path, **READ_OPTIONS)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise HarnessError(f"{path} is not a readable CSV ({type(exc).__name__}); rerun that sweep") from None
    missing = [c for c in EPISODE_COLUMNS if c not in df.columns and c not in ("video", "shift")]
    if missing or df.empty:
        raise HarnessError(f"{path} is not a harness episodes file (missing {missing or 'rows'}); rerun that sweep")
    return df


def probability_of_improvement(candidate: np.ndarray, baseline: np.ndarray) -> float:
    """P(X > Y) for X drawn from ``candidate`` ``(n,)`` and Y from ``baseline`` ``(m,)``; ties count 1/2."""
    x, y = np.asarray(candidate, float)[:, None], np.asarray(baseline, float)[None, :]
    return float(np.mean((x > y) + 0.5 * (x == y)))


def verdict(low: float, high: float, diff: float, min_drop: float) -> str:
    """``drop``/``gain``: the CI excludes 0 and the difference exceeds ``min_drop``; ``no change``:
    a significant difference smaller than that, or a CI inside (-min_drop, +min_drop);
    ``inconclusive``: the CI holds 0 and reaches beyond ``min_drop``."""
    if high < 0:
        return "drop" if -diff > min_drop else "no change"
    if low > 0:
        return "gain" if diff > min_drop else "no change"
    if -min_drop < low and high < min_drop:
        return "no change"
    return "inconclusive"


@dataclass(frozen=True)
class Pairing:
    """Which checkpoint of the baseline is compared with which of the candidate, per env."""

    pairs: dict[str, list[tuple[str, str]]]


def pair_checkpoints(base: pd.DataFrame, cand: pd.DataFrame, explicit: list[str]) -> Pairing:
    """Pair checkpoints per env: ``A=B`` entries; else the same label; else the only one of each.

    Raises:
        HarnessError: an env in one sweep only, or several checkpoints that cannot be paired.
    """
    envs_b, envs_c = set(base["env"]), set(cand["env"])
    if envs_b != envs_c:
        raise HarnessError(
            f"the sweeps cover other envs (baseline {sorted(envs_b)}, candidate {sorted(envs_c)}); "
            "compare sweeps of the same envs"
        )
    given: dict[str, str] = {}
    for entry in explicit:
        if "=" not in entry:
            raise HarnessError(f"--pair {entry!r}: write BASELINE_CHECKPOINT=CANDIDATE_CHECKPOINT")
        a, b = entry.split("=", 1)
        given[a] = b
    pairs: dict[str, list[tuple[str, str]]] = {}
    for env in sorted(envs_b):
        lb = sorted(set(base.loc[base["env"] == env, "checkpoint"]))
        lc = sorted(set(cand.loc[cand["env"] == env, "checkpoint"]))
        if any(a in lb for a in given):
            chosen = [(a, given[a]) for a in lb if a in given]
            bad = [b for _, b in chosen if b not in lc]
            if bad:
                raise HarnessError(f"--pair names {bad[0]!r}, not a checkpoint of the candidate's {env} ({lc})")
        elif lb == lc:
            chosen = list(zip(lb, lc, strict=True))
        elif len(lb) == 1 and len(lc) == 1:
            chosen = [(lb[0], lc[0])]
        else:
            raise HarnessError(
                f"{env}: the baseline has checkpoints {lb} and the candidate {lc}; say which pairs with --pair A=B"
            )
        pairs[env] = chosen
    return Pairing(pairs)


def _scores(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["status"] == Status.OK.value]


def compare(
    base: pd.DataFrame,
    cand: pd.DataFrame,
    pairing: Pairing,
    min_drop: float = DEFAULT_MIN_DROP,
    alpha: float = ALPHA,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per matched cell and per env (columns :data:`COMPARE_COLUMNS`).

    Raises:
        HarnessError: the two sweeps' targets differ for a pair of checkpoints.
    """
    base, cand = (with_shift(df if "env_id" in df else df.assign(env_id=df["env"])) for df in (base, cand))
    jobs = []
    for env, pairs in pairing.pairs.items():
        for a, b in pairs:
            pb = base[(base["env"] == env) & (base["checkpoint"] == a)]
            pc = cand[(cand["env"] == env) & (cand["checkpoint"] == b)]
            # shifted conditions (env version x shift) pair with the same condition of the other sweep
            conds = list(dict.fromkeys(zip(pb["env_id"], pb["shift"], strict=True)))
            other = set(zip(pc["env_id"], pc["shift"], strict=True))
            if set(conds) != other:
                raise HarnessError(
                    f"{env}: the baseline ran conditions {sorted(set(conds))} (env id, shift) and the candidate "
                    f"{sorted(other)}; compare sweeps of the same versions and shifts"
                )
            for env_id, shift in conds:
                cb = pb[(pb["env_id"] == env_id) & (pb["shift"] == shift)]
                cc = pc[(pc["env_id"] == env_id) & (pc["shift"] == shift)]
                tb, tc = sorted(set(cb["target"])), sorted(set(cc["target"]))
                if tb != tc:
                    raise HarnessError(
                        f"{env}: the baseline ran targets {tb} and the candidate {tc}; compare sweeps of the same grid"
                    )
                tag = condition_tag(env_id, shift, len({c[0] for c in conds}) > 1)
                la, lb = (f"{a} [{tag}]", f"{b} [{tag}]") if tag else (a, b)
                jobs.append((env, la, lb, cb, cc, tb, shift))
    m = sum(len(job[5]) for job in jobs) + len(jobs)
    confidence = 1 - alpha / m
    rows = []
    for env, a, b, cb, cc, targets, shift in jobs:
        first = len(rows)
        pooled_b, pooled_c, all_paired = [], [], True
        for t in targets:
            xb, xc = cb[cb["target"] == t], cc[cc["target"] == t]
            ob, oc = _scores(xb), _scores(xc)
            sb, sc = ob.set_index("seed")["normalized_score"], oc.set_index("seed")["normalized_score"]
            paired = set(xb["seed"]) == set(xc["seed"]) and set(sb.index) == set(sc.index) and len(sb) > 0
            if paired:
                order = sorted(sb.index)
                vb, vc = sb.loc[order].to_numpy(), sc.loc[order].to_numpy()
            else:
                vb, vc = sb.to_numpy(), sc.to_numpy()
            all_paired &= paired
            pooled_b.append(vb)
            pooled_c.append(vc)
            rows.append(_row("cell", env, t, a, b, vb, vc, paired, confidence, min_drop, seed, xb, xc))
        vb, vc = np.concatenate(pooled_b), np.concatenate(pooled_c)
        rows.append(_row("env", env, float("nan"), a, b, vb, vc, all_paired, confidence, min_drop, seed, cb, cc))
        for r in rows[first:]:
            r["shift"] = shift
    return pd.DataFrame(rows, columns=COMPARE_COLUMNS)


def compare_selected(
    base: pd.DataFrame,
    cand: pd.DataFrame,
    pairing: Pairing,
    selection_episodes: int,
    min_drop: float = DEFAULT_MIN_DROP,
    alpha: float = ALPHA,
    seed: int = 0,
) -> pd.DataFrame:
    """Each side at its own best target, chosen on episodes ``k < selection_episodes`` and compared
    on the others (disjoint reset seeds; paired by seed), one row per env pair (``level`` =
    ``selected``; the checkpoints read ``label@target``). Unshifted cells only. Bonferroni over
    the rows.

    Raises:
        HarnessError: a split that leaves a side without episodes.
    """
    base, cand = (with_shift(df if "env_id" in df else df.assign(env_id=df["env"])) for df in (base, cand))
    base, cand = base[base["shift"] == NO_SHIFT], cand[cand["shift"] == NO_SHIFT]
    n = int(min(base["episode"].max(), cand["episode"].max())) + 1
    if not 1 <= selection_episodes < n:
        raise HarnessError(
            f"--selection-episodes must leave episodes on both sides: between 1 and {n - 1}, got {selection_episodes}"
        )
    jobs = [(env, a, b) for env, pairs in pairing.pairs.items() for a, b in pairs]
    confidence = 1 - alpha / max(len(jobs), 1)
    rows = []
    for env, a, b in jobs:
        sides = []
        for df, label in ((base, a), (cand, b)):
            cell = df[(df["env"] == env) & (df["checkpoint"] == label)]
            pick = _scores(cell[cell["episode"] < selection_episodes])
            target = float(pick.groupby("target")["normalized_score"].mean().idxmax())
            sides.append((target, cell[(cell["episode"] >= selection_episodes) & (cell["target"] == target)]))
        (tb, xb), (tc, xc) = sides
        sb = _scores(xb).set_index("seed")["normalized_score"]
        sc = _scores(xc).set_index("seed")["normalized_score"]
        paired = set(sb.index) == set(sc.index) and len(sb) > 0
        vb, vc = (sb.sort_index().to_numpy(), sc.sort_index().to_numpy()) if paired else (sb.to_numpy(), sc.to_numpy())
        row = _row("selected", env, float("nan"), f"{a}@{tb:g}", f"{b}@{tc:g}", vb, vc, paired, confidence,
                   min_drop, seed, xb, xc)  # fmt: skip
        rows.append(row | {"shift": NO_SHIFT})
    return pd.DataFrame(rows, columns=COMPARE_COLUMNS)


def compare_folders(
    baseline: str | Path,
    candidate: str | Path,
    pairs: Sequence[str] = (),
    min_drop: float = DEFAULT_MIN_DROP,
    alpha: float = ALPHA,
    seed: int = 0,
) -> pd.DataFrame:
    """Compare two sweep folders, paired by seed: :func:`compare` of their ``episodes.csv``.

    Args:
        baseline: folder written by a sweep (the reference side).
        candidate: folder written by a sweep (the side under test).
        pairs: ``"A=B"`` entries pairing baseline checkpoint A with candidate checkpoint B (default:
            the same label, or the only checkpoint of an env on each side).
        min_drop: normalised points; a significant drop larger than this is a ``drop`` verdict.
        alpha: family-wise error rate (Bonferroni over every row).
        seed: bootstrap seed.

    Returns:
        One row per matched cell and per env (columns :data:`COMPARE_COLUMNS`).
    """
    base, cand = read_sweep(Path(baseline)), read_sweep(Path(candidate))
    return compare(base, cand, pair_checkpoints(base, cand, list(pairs)), min_drop, alpha, seed)


def _row(level, env, target, a, b, vb, vc, paired, confidence, min_drop, seed, xb, xc) -> dict:  # noqa: ANN001
    mb = float(vb.mean()) if len(vb) else float("nan")
    mc = float(vc.mean()) if len(vc) else float("nan")
    lo, hi = bootstrap_difference_ci(vc, vb, paired, confidence, seed=seed)
    bl, bh = bootstrap_ci(vb, seed=seed)
    cl, ch = bootstrap_ci(vc, seed=seed)
    return {
        "level": level,
        "env": env,
        "target": target,
        "baseline_checkpoint": a,
        "candidate_checkpoint": b,
        "n_baseline": len(vb),
        "n_candidate": len(vc),
        "failed_baseline": int((xb["status"] != Status.OK.value).sum()),
        "failed_candidate": int((xc["status"] != Status.OK.value).sum()),
        "paired": bool(paired),
        "baseline_mean": mb,
        "baseline_ci_low": bl,
        "baseline_ci_high": bh,
        "candidate_mean": mc,
        "candidate_ci_low": cl,
        "candidate_ci_high": ch,
        "diff": mc - mb,
        "diff_ci_low": lo,
        "diff_ci_high": hi,
        "confidence": confidence,
        "prob_improvement": probability_of_improvement(vc, vb) if len(vb) and len(vc) else float("nan"),
        "verdict": verdict(lo, hi, mc - mb, min_drop),
    }


def best_vs_last(
    episodes: pd.DataFrame,
    steps: dict[tuple[str, str], int],
    min_drop: float = DEFAULT_MIN_DROP,
    alpha: float = ALPHA,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Within one sweep of a Trainer run: which step is best, and is the last one worse?

    For each env with checkpoints of >= 2 training steps, the last step is compared with every
    earlier one (:func:`compare`, paired by seed, Bonferroni over all those comparisons: choosing
    the best step after the fact is one of them, so its CI is not optimistic). The best step is the
    one with the highest mean score over all targets.

    Args:
        episodes: the sweep's episodes.csv rows.
        steps: ``{(env, checkpoint): step}`` (see :func:`harness.analysis.figures.train_steps`).

    Returns:
        ``(table, rows)``: one row per env (``env, best_checkpoint, best_step, best_mean,
        last_checkpoint, last_step, last_mean, diff, diff_ci_low, diff_ci_high, verdict``), and
        every comparison row (columns :data:`COMPARE_COLUMNS`).

    Raises:
        HarnessError: no env has checkpoints of two training steps.
    """
    pairs: dict[str, list[tuple[str, str]]] = {}
    order: dict[str, list[tuple[int, str]]] = {}
    for env in sorted(set(episodes["env"])):
        labels = sorted(set(episodes.loc[episodes["env"] == env, "checkpoint"]))
        stepped = sorted((steps[(env, c)], c) for c in labels if (env, c) in steps)
        if len({s for s, _ in stepped}) < 2:
            continue
        last = stepped[-1][1]
        pairs[env] = [(c, last) for _, c in stepped[:-1]]
        order[env] = stepped
    if not pairs:
        raise HarnessError(
            "no env in this sweep has checkpoints of two training steps; sweep a Trainer run with "
            "--checkpoint ENV='run/trainer/checkpoint-*', or pass two sweeps to compare"
        )
    rows = compare(episodes, episodes, Pairing(pairs), min_drop, alpha, seed)
    env_rows = rows[rows["level"] == "env"]
    table = []
    for env, stepped in order.items():
        step_of = {c: s for s, c in stepped}
        last = stepped[-1][1]
        mine = env_rows[env_rows["env"] == env]
        means = {c: float(m) for c, m in zip(mine["baseline_checkpoint"], mine["baseline_mean"], strict=True)}
        means[last] = float(mine["candidate_mean"].iloc[0])
        best = max(means, key=lambda c: (means[c], step_of[c]))
        if best == last:
            diff, lo, hi, v = 0.0, 0.0, 0.0, "last is best"
        else:
            r = mine[mine["baseline_checkpoint"] == best].iloc[0]
            diff, lo, hi, v = float(r["diff"]), float(r["diff_ci_low"]), float(r["diff_ci_high"]), str(r["verdict"])
        table.append(
            {
                "env": env,
                "best_checkpoint": best,
                "best_step": step_of[best],
                "best_mean": means[best],
                "last_checkpoint": last,
                "last_step": step_of[last],
                "last_mean": means[last],
                "diff": diff,
                "diff_ci_low": lo,
                "diff_ci_high": hi,
                "verdict": v,
            }
        )
    return pd.DataFrame(table), rows
