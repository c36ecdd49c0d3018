"""Claims across tasks and seeds: aggregate statistics of many sweeps, and honest selection.

**Aggregate** (``harness aggregate``, :func:`aggregate`). A *run* is one checkpoint of one sweep
folder (a training seed, or one of a Trainer run's checkpoints); a *task* is an env; a *group*
is a method, its runs the sweeps matched by ``--group NAME=GLOB``. Each run's score on a task is
its mean D4RL-normalised score over ``ok`` episodes at one target, chosen explicitly by ``at``:

- ``best``: the target whose mean is highest in that run (chosen on the episodes it reports,
  so optimistic: see :func:`select`);
- a raw target (``3600``) or per env (``hopper=3600``): that target, which every run must have;
- ``paper``: the paper's (higher) target per env (hopper 3600, walker2d 5000, halfcheetah 12000).

The score matrices ``(runs, tasks)`` per group give rliable's statistics (Agarwal et al. 2021):
IQM, median of task means, mean and optimality gap (below 100, the D4RL expert) with stratified
bootstrap CIs (runs resampled with replacement within each task, percentile intervals),
performance profiles (share of run-task scores above tau, with bands) and the probability of
improvement of every ordered pair of groups (per task P(X > Y) + P(X = Y) / 2, the Mann-Whitney
U over ``nx * ny``, averaged over tasks; X's and Y's runs resampled independently). They are
written here with numpy and scipy, not imported from ``rliable``: rliable 1.2.0 requires
``arch<8``, and arch 7.2 does not import with the pinned pandas 3.1 (``deprecate_kwarg()``
TypeError), so rliable does not install cleanly with this stack (manual, "Claims across tasks and
seeds"). Each bootstrap draws from ``numpy.random.default_rng(seed)``: resample r of a group is
one ``integers(0, runs, (runs, tasks))`` draw.

**Select** (``harness select``, :func:`select`): a sweep's episodes split by reset seed into a
selection set (episodes ``k < n``) and a disjoint report set (the rest). Per env, the best
(checkpoint, target) cell on the selection seeds is reported on the report seeds; the optimism
gap is selected-on minus held-out, with a bootstrap CI (the two seed sets resampled
independently). The usual practice (pick and report on the same episodes) is printed beside it.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from harness.analysis.comparison import read_sweep
from harness.analysis.robustness import with_shift
from harness.core.errors import HarnessError
from harness.core.schema import NO_SHIFT, Status

OPTIMAL = 100.0
"""The optimality gap's threshold gamma: the D4RL expert's normalised score."""
METRICS = ("IQM", "median", "mean", "optimality gap")
TAUS = np.linspace(0.0, 120.0, 25)
"""Performance profile thresholds (normalised score)."""
PAPER_TARGETS = {"hopper": 3600.0, "walker2d": 5000.0, "halfcheetah": 12000.0}
"""The paper's higher target per env (``harness/resources/published_scores.json``)."""
AGGREGATE_COLUMNS = ["group", "metric", "value", "ci_low", "ci_high", "runs", "tasks", "at", "reps", "seed"]
PROFILE_COLUMNS = ["group", "tau", "share", "ci_low", "ci_high"]
IMPROVEMENT_COLUMNS = ["x", "y", "probability", "ci_low", "ci_high"]
SCORE_COLUMNS = ["group", "run", "checkpoint", "task", "target", "score", "episodes"]


@dataclass(frozen=True)
class Aggregate:
    """What :func:`aggregate` returns (each also a CSV of ``harness aggregate``)."""

    scores: pd.DataFrame  # SCORE_COLUMNS: one row per group x run x task
    metrics: pd.DataFrame  # AGGREGATE_COLUMNS
    profiles: pd.DataFrame  # PROFILE_COLUMNS
    improvement: pd.DataFrame  # IMPROVEMENT_COLUMNS

    def matrices(self) -> dict[str, np.ndarray]:
        """``{group: (runs, tasks)}`` score matrices, tasks in sorted order."""
        out = {}
        for group, rows in self.scores.groupby("group", sort=False):
            out[str(group)] = rows.pivot(index="run", columns="task", values="score").sort_index(axis=1).to_numpy()
        return out


def parse_at(spec: str) -> str | float | dict[str, float]:
    """``best``, ``paper``, a raw target, or ``ENV=TARGET[,ENV=TARGET...]``."""
    spec = spec.strip()
    if spec in ("best", "paper"):
        return spec
    try:
        if "=" in spec:
            return {k.strip(): float(v) for k, v in (part.split("=", 1) for part in spec.split(","))}
        return float(spec)
    except ValueError:
        raise HarnessError(f"--at {spec!r}: use best, paper, a target return (3600) or ENV=TARGET") from None


def _base(df: pd.DataFrame) -> pd.DataFrame:
    """Unshifted episodes on each env's first version (the sweep's plain cells)."""
    df = with_shift(df)
    df = df[df["shift"] == NO_SHIFT]
    first = df.groupby("env")["env_id"].transform("first")
    return df[df["env_id"] == first]


def run_scores(folder: Path, at: str | float | dict[str, float]) -> pd.DataFrame:
    """One row per checkpoint x env of a sweep folder: ``run``, ``checkpoint``, ``task``, ``target``,
    ``score`` (mean normalised score of ``ok`` episodes at the target ``at`` chooses), ``episodes``."""
    df = _base(read_sweep(folder))
    ok = df[df["status"] == Status.OK.value]
    rows = []
    for (env, label), cell in ok.groupby(["env", "checkpoint"], sort=True):
        means = cell.groupby("target")["normalized_score"].mean()
        if at == "best":
            target = float(means.idxmax())
        else:
            want = PAPER_TARGETS.get(str(env)) if at == "paper" else (at.get(str(env)) if isinstance(at, dict) else at)
            if want is None:
                raise HarnessError(f"--at {at}: no target given for {env}; add {env}=TARGET")
            if float(want) not in means.index:
                ran = ", ".join(f"{t:g}" for t in means.index)
                raise HarnessError(
                    f"--at: {folder} has no target {want:g} for {env} (it ran {ran}); pass one of those, or best"
                )
            target = float(want)
        rows.append(
            {
                "run": f"{folder}" + (f":{label}" if df[df["env"] == env]["checkpoint"].nunique() > 1 else ""),
                "checkpoint": str(label),
                "task": str(env),
                "target": target,
                "score": float(means.loc[target]),
                "episodes": int((cell["target"] == target).sum()),
            }
        )
    return pd.DataFrame(rows)


def group_runs(runs: Sequence[str | Path], groups: Sequence[str]) -> dict[str, list[Path]]:
    """``--group NAME=GLOB`` entries: ``{name: [run folders]}``, each run in exactly one group."""
    parsed: dict[str, str] = {}
    for entry in groups:
        name, sep, pattern = entry.partition("=")
        if not sep or not name or not pattern:
            raise HarnessError(f"--group {entry!r}: write NAME=GLOB, e.g. --group dt='results/dt-seed*'")
        if name in parsed:
            raise HarnessError(f"--group names {name} twice; give each group one glob")
        parsed[name] = pattern
    out: dict[str, list[Path]] = {name: [] for name in parsed}
    for run in runs:
        hits = [name for name, pattern in parsed.items() if fnmatch.fnmatch(str(run), pattern)]
        if len(hits) != 1:
            raise HarnessError(
                f"run {run} matches {'no' if not hits else 'several'} --group globs ({', '.join(hits) or 'none'}); "
                "make each run match exactly one group"
            )
        out[hits[0]].append(Path(run))
    return out


def stratified_resamples(m: np.ndarray, reps: int, rng: np.random.Generator) -> np.ndarray:
    """``(reps, runs, tasks)``: each resample draws every task's runs with replacement (stratified by task)."""
    runs, tasks = m.shape
    idx = rng.integers(0, runs, size=(reps, runs, tasks))
    return np.take_along_axis(np.broadcast_to(m, (reps, runs, tasks)), idx, axis=1)


def aggregate_metrics(x: np.ndarray) -> np.ndarray:
    """``(reps, 4)``: IQM, median of task means, mean, optimality gap of each ``(runs, tasks)`` of ``x``."""
    flat = x.reshape(len(x), -1)
    return np.stack(
        [
            scipy_stats.trim_mean(flat, 0.25, axis=1),
            np.median(x.mean(axis=1), axis=1),
            flat.mean(axis=1),
            OPTIMAL - np.minimum(flat, OPTIMAL).mean(axis=1),
        ],
        axis=1,
    )


def profile(x: np.ndarray) -> np.ndarray:
    """``(reps, len(TAUS))``: the share of run x task scores above each tau."""
    return (x.reshape(len(x), -1)[:, :, None] > TAUS[None, None, :]).mean(axis=1)


def improvement(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``(reps,)``: P(X > Y) + P(X = Y) / 2 per task, averaged over tasks; ``x`` ``(reps, nx, tasks)``,
    ``y`` ``(reps, ny, tasks)``."""
    a, b = x[:, :, None, :], y[:, None, :, :]
    return ((a > b) + 0.5 * (a == b)).mean(axis=(1, 2)).mean(axis=1)


def aggregate(
    groups: dict[str, Sequence[str | Path]],
    at: str | float | dict[str, float] = "best",
    reps: int = 2000,
    seed: int = 0,
) -> Aggregate:
    """Aggregate statistics of the runs of each group over their shared tasks (see the module doc).

    Raises:
        HarnessError: fewer than two groups, a group without runs, runs whose tasks differ, a
            target ``at`` asks for that a run lacks.
    """
    if len(groups) < 2:
        raise HarnessError(
            f"aggregate needs at least two groups to compare, got {len(groups)}; pass --group NAME=GLOB twice or more"
        )
    frames = []
    for name, runs in groups.items():
        if not runs:
            raise HarnessError(f"group {name} has no runs; check its --group glob")
        for run in runs:
            frames.append(run_scores(Path(run), at).assign(group=name))
    scores = pd.concat(frames, ignore_index=True)[SCORE_COLUMNS]
    tasks = {run: frozenset(rows["task"]) for run, rows in scores.groupby("run")}
    shared = frozenset.intersection(*tasks.values())
    if any(t != shared for t in tasks.values()) or not shared:
        odd = next(run for run, t in tasks.items() if t != shared) if shared else next(iter(tasks))
        raise HarnessError(
            f"runs do not share their tasks (run {odd} has {sorted(tasks[odd])}, all share {sorted(shared)}); "
            "aggregate runs of the same envs"
        )
    result = Aggregate(scores, pd.DataFrame(), pd.DataFrame(), pd.DataFrame())
    mats = result.matrices()
    boot = {g: stratified_resamples(m, reps, np.random.default_rng([seed, i])) for i, (g, m) in enumerate(mats.items())}
    rows = []
    for g, m in mats.items():
        point, draws = aggregate_metrics(m[None]), aggregate_metrics(boot[g])
        for i, name in enumerate(METRICS):
            lo, hi = np.percentile(draws[:, i], [2.5, 97.5])
            rows.append(
                {
                    "group": g, "metric": name, "value": float(point[0, i]), "ci_low": float(lo),
                    "ci_high": float(hi), "runs": m.shape[0], "tasks": m.shape[1], "at": str(at), "reps": reps,
                    "seed": seed,
                }
            )  # fmt: skip
    prof = []
    for g, m in mats.items():
        point, draws = profile(m[None]), profile(boot[g])
        lo, hi = np.percentile(draws, [2.5, 97.5], axis=0)
        prof += [
            {"group": g, "tau": float(t), "share": float(point[0, j]), "ci_low": float(lo[j]), "ci_high": float(hi[j])}
            for j, t in enumerate(TAUS)
        ]
    imp = []
    for x in mats:
        for y in mats:
            if x != y:
                p = improvement(mats[x][None], mats[y][None])[0]
                lo, hi = np.percentile(improvement(boot[x], boot[y]), [2.5, 97.5])
                imp.append({"x": x, "y": y, "probability": float(p), "ci_low": float(lo), "ci_high": float(hi)})
    return Aggregate(
        scores,
        pd.DataFrame(rows, columns=AGGREGATE_COLUMNS),
        pd.DataFrame(prof, columns=PROFILE_COLUMNS),
        pd.DataFrame(imp, columns=IMPROVEMENT_COLUMNS),
    )


SELECT_COLUMNS = [
    "env", "checkpoint", "target", "selection_episodes", "report_episodes", "selection_seeds", "report_seeds",
    "selected_score", "selected_ci_low", "selected_ci_high", "heldout_score", "heldout_ci_low", "heldout_ci_high",
    "optimism_gap", "gap_ci_low", "gap_ci_high", "same_episodes_best_score", "candidates",
]  # fmt: skip


def _seeds(values: Sequence[int]) -> str:
    v = sorted(set(int(x) for x in values))
    return f"{v[0]}..{v[-1]}" if v == list(range(v[0], v[-1] + 1)) else " ".join(map(str, v))


def select(episodes: pd.DataFrame, selection_episodes: int, reps: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Per env: choose the best (checkpoint, target) cell on episodes ``k < selection_episodes``,
    report it on the others (disjoint reset seeds). Columns :data:`SELECT_COLUMNS`.

    Raises:
        HarnessError: a split that leaves either side empty, or seeds shared by the two sides.
    """
    df = _base(episodes)
    ok = df[df["status"] == Status.OK.value]
    n = int(df["episode"].max()) + 1
    if not 1 <= selection_episodes < n:
        raise HarnessError(
            f"--selection-episodes must leave episodes on both sides: between 1 and {n - 1} for this sweep "
            f"({n} per target), got {selection_episodes}"
        )
    rng = np.random.default_rng(seed)
    rows = []
    for env, rows_env in ok.groupby("env", sort=False):
        pick = rows_env[rows_env["episode"] < selection_episodes]
        report = rows_env[rows_env["episode"] >= selection_episodes]
        shared = set(pick["seed"]) & set(report["seed"])
        if shared:
            raise HarnessError(
                f"{env}: selection and report episodes share reset seeds ({sorted(shared)[:3]}); "
                "sweep with one --seed so that episode k has seed SEED + k"
            )
        means = pick.groupby(["checkpoint", "target"])["normalized_score"].mean()
        label, target = means.idxmax()
        a = pick[(pick["checkpoint"] == label) & (pick["target"] == target)]["normalized_score"].to_numpy()
        b = report[(report["checkpoint"] == label) & (report["target"] == target)]["normalized_score"].to_numpy()
        if len(b) == 0:
            raise HarnessError(f"{env}: the selected cell has no ok report episodes; use more --episodes")
        ba = a[rng.integers(0, len(a), (reps, len(a)))].mean(axis=1)
        bb = b[rng.integers(0, len(b), (reps, len(b)))].mean(axis=1)
        q = [2.5, 97.5]
        same = rows_env.groupby(["checkpoint", "target"])["normalized_score"].mean().max()
        rows.append(
            {
                "env": env, "checkpoint": label, "target": float(target),
                "selection_episodes": len(a), "report_episodes": len(b),
                "selection_seeds": _seeds(pick["seed"]), "report_seeds": _seeds(report["seed"]),
                "selected_score": float(a.mean()), "selected_ci_low": float(np.percentile(ba, q[0])),
                "selected_ci_high": float(np.percentile(ba, q[1])),
                "heldout_score": float(b.mean()), "heldout_ci_low": float(np.percentile(bb, q[0])),
                "heldout_ci_high": float(np.percentile(bb, q[1])),
                "optimism_gap": float(a.mean() - b.mean()), "gap_ci_low": float(np.percentile(ba - bb, q[0])),
                "gap_ci_high": float(np.percentile(ba - bb, q[1])),
                "same_episodes_best_score": float(same), "candidates": int(len(means)),
            }
        )  # fmt: skip
    return pd.DataFrame(rows, columns=SELECT_COLUMNS)
