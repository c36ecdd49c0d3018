"""Results where people keep them: a sweep folder logged to MLflow, TensorBoard or W&B, and the
checkpoint's model card with the sweep's results in the Hub's ``model-index``.

- :func:`log_mlflow`: one MLflow run per sweep folder (``mlflow-skinny``; a local file store,
  ``file:DIR``, works offline: MLflow 3 keeps that store in maintenance mode behind
  ``MLFLOW_ALLOW_FILE_STORE``, which this sets for a ``file:`` URI; a server or database URI works
  as MLflow takes it): the resolved sweep arguments as params; per cell
  ``score_mean``, ``score_ci_low``, ``score_ci_high``, ``return_mean``, ``n``, ``n_failed`` as
  metrics named ``<metric>.<env>.<checkpoint>.<shift>.t<target>``; per env x checkpoint the
  calibration numbers (``rho``, ``slope``, ...); the robustness ratios; every file of the folder
  (CSVs, figures, report, metadata) as artifacts.
- :func:`log_tensorboard`: an event file with, per env x checkpoint x shift, the mean score as a
  scalar whose step is the target return (TensorBoard then draws the return-conditioning curve),
  and the sweep's arguments as text.
- :func:`log_wandb`: one W&B run per sweep folder, offline by default (``wandb sync`` uploads it
  later; ``WANDB_MODE=online`` logs straight to the server): the sweep's arguments as the run's
  config, every number :func:`sweep_metrics` gives in its summary, the return-conditioning curves
  as history (``score/<env>.<checkpoint>[/<shift>]`` against the ``target`` metric, W&B's custom
  x-axis) and a copy of every file of the folder saved with the run.
- :func:`model_card`: ``huggingface_hub``'s ``ModelCardData`` with one ``EvalResult`` per env of
  the checkpoint: the env id as the dataset type, the training data's name, the D4RL-normalised
  score and the mean return at the target ``at`` chooses (named in the metric), and a body that
  says how they were measured.

Metric names keep ``[A-Za-z0-9_.-/ ]`` (MLflow's rule); other characters become ``_``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pandas as pd

from harness.analysis.aggregate import PAPER_TARGETS
from harness.analysis.robustness import with_shift
from harness.core.errors import HarnessError
from harness.core.schema import CALIBRATION, METADATA, NO_SHIFT, READ_OPTIONS, ROBUSTNESS, SUMMARY

TRACKERS = ("mlflow", "tensorboard", "wandb")
CELL_METRICS = ("score_mean", "score_ci_low", "score_ci_high", "return_mean", "n", "n_failed")
CALIBRATION_METRICS = ("rho", "slope", "tracking_error", "best_score", "stuck_share", "above_ratio")
_READ = READ_OPTIONS


def _name(*parts: object) -> str:
    return ".".join(re.sub(r"[^A-Za-z0-9_\-/ ]", "_", str(p)) for p in parts)


def _target(t: float) -> str:
    return f"t{t:g}"


def sweep_metrics(folder: Path) -> dict[str, float]:
    """Every number :func:`log_mlflow` logs, by metric name (finite values only)."""
    folder = Path(folder)
    if not (folder / SUMMARY).is_file():
        raise HarnessError(f"{folder} is not a sweep folder (no {SUMMARY}); pass a folder written by harness sweep")
    summary = with_shift(pd.read_csv(folder / SUMMARY, **_READ))
    out: dict[str, float] = {}
    for r in summary.to_dict("records"):
        for m in CELL_METRICS:
            out[_name(m, r["env_id"], r["checkpoint"], r["shift"], _target(r["target"]))] = float(r[m])
    if (folder / CALIBRATION).is_file():
        for r in with_shift(pd.read_csv(folder / CALIBRATION, **_READ)).to_dict("records"):
            for m in CALIBRATION_METRICS:
                out[_name(m, r.get("env_id", r["env"]), r["checkpoint"], r["shift"])] = float(r[m])
    if (folder / ROBUSTNESS).is_file():
        for r in pd.read_csv(folder / ROBUSTNESS, **_READ).to_dict("records"):
            out[_name("retained", r["env_id"], r["checkpoint"], r["shift"])] = float(r["retained"])
    return {k: v for k, v in out.items() if pd.notna(v) and abs(v) != float("inf")}


def _params(folder: Path) -> dict[str, str]:
    meta_path = Path(folder) / METADATA
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    args = meta.get("arguments", {})
    return {k: json.dumps(v) if not isinstance(v, str) else v for k, v in args.items()} | {
        "command": str(meta.get("command")),
        "git_commit": str(meta.get("git", {}).get("commit", "")),
        "numerics": str(meta.get("numerics", {}).get("mode", "")),
    }


def log_mlflow(folder: Path, uri: str, experiment: str = "harness") -> str:
    """Log a sweep folder as one MLflow run; returns the run id."""
    try:
        import mlflow
    except ImportError:
        raise HarnessError("MLflow is not installed; pip install 'harness[track]' (mlflow-skinny)") from None
    folder = Path(folder)
    metrics = sweep_metrics(folder)
    if uri.startswith("file:") or "://" not in uri and ":" not in uri:
        # a local file store, asked for by name: MLflow 3 keeps it in maintenance mode behind this opt-in
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(experiment)
    with mlflow.start_run(run_name=folder.name) as run:
        mlflow.log_params(_params(folder))
        mlflow.log_metrics(metrics)
        mlflow.set_tag("harness.folder", str(folder.resolve()))
        for path in sorted(folder.iterdir()):
            if path.is_file() and not path.name.startswith("."):
                mlflow.log_artifact(str(path))
        return str(run.info.run_id)


def log_tensorboard(folder: Path, logdir: Path) -> Path:
    """Write the sweep's return-conditioning curves as TensorBoard scalars into ``logdir``; returns it."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise HarnessError("TensorBoard is not installed; pip install 'harness[track]' (tensorboard)") from None
    folder = Path(folder)
    sweep_metrics(folder)  # the folder check
    writer = SummaryWriter(log_dir=str(logdir))
    for target, values in _curves(folder).items():
        for tag, score in values.items():
            writer.add_scalar(tag, score, global_step=int(round(target)))
    writer.add_text("sweep/arguments", "\n".join(f"    {k}: {v}" for k, v in _params(folder).items()))
    writer.flush()
    writer.close()
    return Path(logdir)


def _curves(folder: Path) -> dict[float, dict[str, float]]:
    """The return-conditioning curves by target, ascending: ``{target: {series: score_mean}}``, each
    series ``score/<env id>.<checkpoint>[/<shift>]`` (TensorBoard's tags, W&B's history keys)."""
    summary = with_shift(pd.read_csv(Path(folder) / SUMMARY, **_READ))
    out: dict[int, dict[str, float]] = {}
    for (env_id, label, shift), rows in summary.groupby(["env_id", "checkpoint", "shift"], sort=False):
        tag = "score/" + _name(env_id, label) + ("" if shift == NO_SHIFT else "/" + _name(shift))
        for r in rows.itertuples():
            out.setdefault(float(r.target), {})[tag] = float(r.score_mean)
    return dict(sorted(out.items()))


def log_wandb(folder: Path, directory: Path, project: str = "harness") -> tuple[str, Path]:
    """Log a sweep folder as one W&B run under ``directory`` (offline unless ``WANDB_MODE`` says
    otherwise); returns the run id and the run's folder (``directory/wandb/offline-run-*``)."""
    try:
        import wandb
    except ImportError:
        raise HarnessError("W&B is not installed; pip install 'harness[track]' (wandb)") from None
    folder = Path(folder)
    metrics = sweep_metrics(folder)  # the folder check
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    settings = wandb.Settings(silent=True, console="off", x_disable_stats=True, save_code=False)
    run = wandb.init(
        project=project,
        name=folder.name,
        dir=str(directory),
        mode=os.environ.get("WANDB_MODE") or "offline",
        job_type="evaluation",
        config=_params(folder),
        settings=settings,
    )
    try:
        # the curves against the target return (W&B's custom x-axis: targets may be negative)
        run.define_metric("target")
        run.define_metric("score/*", step_metric="target")
        for target, values in _curves(folder).items():
            run.log({"target": target} | values)
        run.summary.update(metrics)
        run.summary["harness.folder"] = str(folder.resolve())
        for path in sorted(folder.iterdir()):  # copies in the run's folder: it outlives the sweep folder
            if path.is_file() and not path.name.startswith("."):
                dest = Path(run.dir) / path.name
                shutil.copy2(path, dest)
                run.save(str(dest), base_path=run.dir, policy="now")
        run_dir = Path(run.dir).parent
        run_id = str(run.id)
    finally:
        run.finish()
    if wandb.run is None:  # no other run of this process is open: stop W&B's service, which writes the
        wandb.teardown()  # rest of the log (finish() can return before the summary is on disk)
    return run_id, run_dir


def model_card(folder: Path, env: str | None = None, checkpoint: str | None = None, at: str = "best") -> Any:
    """``huggingface_hub.ModelCard`` of one checkpoint of a sweep, its results in ``model-index``.

    ``at``: ``best`` (the best target's mean, chosen on the same episodes: said in the metric's
    name), ``paper`` or a raw target. Raises HarnessError when the sweep has several checkpoints
    and none is named, or the target is missing.
    """
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    folder = Path(folder)
    sweep_metrics(folder)
    summary = with_shift(pd.read_csv(folder / SUMMARY, **_READ))
    summary = summary[summary["shift"] == NO_SHIFT]
    if env is not None:
        summary = summary[summary["env"] == env]
    labels = list(dict.fromkeys(summary["checkpoint"]))
    if checkpoint is None:
        if len(labels) != 1:
            raise HarnessError(f"{folder} has checkpoints {labels}; name one with --checkpoint LABEL (and --env)")
        checkpoint = labels[0]
    rows = summary[summary["checkpoint"] == checkpoint]
    if rows.empty:
        raise HarnessError(f"{folder} has no checkpoint {checkpoint!r}; it has {labels}")
    meta = json.loads((folder / METADATA).read_text()) if (folder / METADATA).is_file() else {}
    described = {(c.get("env"), c.get("label")): c for c in meta.get("checkpoints", [])}
    results = []
    lines = []
    for (env_name, env_id), cells in rows.groupby(["env", "env_id"], sort=False):
        if at == "best":
            r = cells.loc[cells["score_mean"].idxmax()]
            how = "best target of the sweep, chosen on the same episodes"
        else:
            want = PAPER_TARGETS.get(str(env_name)) if at == "paper" else float(at)
            hit = cells[cells["target"] == want]
            if hit.empty:
                raise HarnessError(
                    f"--at {at}: the sweep has no target {want:g} for {env_name}; pass best or a target it ran"
                )
            r = hit.iloc[0]
            how = f"target {want:g}"
        data = (described.get((env_name, checkpoint)) or {}).get("dataset") or {}
        dataset = data.get("name") or f"{env_name} offline data"
        common = {
            "task_type": "reinforcement-learning",
            "task_name": "Offline reinforcement learning (return-conditioned)",
            "dataset_type": str(env_id),
            "dataset_name": str(dataset),
        }
        n = int(r["n"])
        results.append(
            EvalResult(
                **common,
                metric_type="normalized_score",
                metric_name=f"D4RL normalised score, {how} ({r['target']:g}), mean of {n} episodes",
                metric_value=round(float(r["score_mean"]), 2),
            )
        )
        results.append(
            EvalResult(
                **common,
                metric_type="mean_reward",
                metric_name=f"mean return at target {r['target']:g} ({n} episodes)",
                metric_value=round(float(r["return_mean"]), 1),
            )
        )
        lines.append(
            f"| {env_id} | {dataset} | {r['target']:g} | {n} | {r['score_mean']:.1f} "
            f"[{r['score_ci_low']:.1f}, {r['score_ci_high']:.1f}] | {r['return_mean']:.0f} |"
        )
    data = ModelCardData(
        library_name="transformers",
        tags=["reinforcement-learning", "decision-transformer", "offline-rl", "harness"],
        model_name=str(checkpoint),
        eval_results=results,
    )
    body = "\n".join(
        [
            f"# {checkpoint}",
            "",
            "A Decision Transformer checkpoint, evaluated by harness "
            f"(`{meta.get('command') or 'harness sweep'}`; results in `{folder}`).",
            "",
            "| env | training data | target | episodes | D4RL-normalised score [95% CI] | mean return |",
            "|---|---|---|---|---|---|",
            *lines,
        ]
    )
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}\n")
