"""Sweep cells on an existing engine: joblib's loky processes, a Dask cluster, or Ray.

A sweep is a grid of independent cells: one (env, checkpoint, target) with the episode indices
still to run. A :class:`Cell` is small and picklable; a worker loads its own checkpoint (by the
same spec string the command line got: an embedded name, a folder the worker can read, or a
Hub id) and its own envs, checks that the weights are the ones the sweep started with (their
fingerprint), runs the batched evaluator on the cell, and returns the cell's episode rows.
Because each episode's actions do not depend on which other episodes share its batch
(``tests/test_fast.py``), the rows equal those of a sequential run.

Backends go through ``joblib.parallel_config``:

- ``loky`` (default): local worker processes;
- ``dask``: a ``dask.distributed.Client`` on ``--scheduler ADDRESS``, or a ``LocalCluster`` of
  ``--jobs`` single-threaded worker processes when no address is given;
- ``ray``: ``ray.util.joblib.register_ray()``; ``ray.init`` honours ``RAY_ADDRESS``.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import pandas as pd

from harness.core import numerics
from harness.core.errors import HarnessError
from harness.core.schema import NO_SHIFT
from harness.engine.evaluate import evaluate
from harness.io.checkpoints import load_checkpoint
from harness.io.data import Statistics
from harness.world.envs import resolve_env
from harness.world.shift import Shift

BACKENDS = ("loky", "dask", "ray")


@dataclass(frozen=True, kw_only=True)
class Cell:
    """One (env, checkpoint, target) cell of a sweep and the episodes of it still to run.

    Attributes:
        env_id: Gymnasium id (``Hopper-v4``).
        checkpoint: the spec to load (embedded name, folder, or Hub id).
        fingerprint: :meth:`harness.io.checkpoints.Checkpoint.fingerprint` the sweep started with.
        target: raw target return.
        episodes: episode indices k to run (reset seed ``seed + k``).
        seed: base seed.
        num_envs: vector-env slots (None: all the cell's episodes, at most the default cap).
        precision: ``fp32`` or ``bf16``.
        device: torch device in the worker.
        threads: torch threads in the worker.
        env_workers: processes stepping the cell's slots.
        simulator: ``batched`` or ``gymnasium`` (see :func:`harness.engine.rollout.run_episodes`).
        statistics: state statistics for a checkpoint saved without them (``--data``).
        numerics: :class:`harness.core.numerics.Numerics` mode the worker must run in (``pinned``...).
        allow_batch_dependence: run even where that mode is not in force on the worker.
        shift: the cell's :class:`harness.world.shift.Shift` label (``none``: unshifted).
    """

    env_id: str
    checkpoint: str
    fingerprint: str
    target: float
    episodes: tuple[int, ...]
    seed: int
    num_envs: int | None
    precision: str
    device: str
    threads: int
    env_workers: int = 1
    simulator: str = "batched"
    statistics: Statistics | None = None
    numerics: str = "pinned"
    allow_batch_dependence: bool = False
    shift: str = NO_SHIFT

    def __post_init__(self) -> None:
        if not self.episodes or min(self.episodes) < 0:
            raise ValueError(f"Cell.episodes must be non-negative episode indices, got {self.episodes}")
        if self.threads < 1 or self.env_workers < 1:
            raise ValueError(f"Cell.threads and env_workers must be >= 1, got {self.threads} and {self.env_workers}")


def run_cell(cell: Cell) -> pd.DataFrame:
    """Run one cell in this process; returns its episode rows (columns of EPISODE_COLUMNS)."""
    import torch

    # `import harness` already put the mode this process inherited into force; the cell's mode is
    # applied (possible until torch's first kernel) and checked, so a worker that cannot hold it
    # (another architecture, torch used before harness) refuses rather than returns other floats
    state = numerics.apply(cell.numerics)
    if not state["in_force"] and not cell.allow_batch_dependence and cell.precision == "fp32":
        raise HarnessError(
            f"worker {platform.node()}: {state['why_not']}; its rows could differ from the other workers' "
            "(pass --allow-batch-dependence to run anyway)"
        )
    torch.set_num_threads(cell.threads)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    ckpt = load_checkpoint(cell.checkpoint, device=cell.device, statistics=cell.statistics)
    if ckpt.fingerprint() != cell.fingerprint:
        raise HarnessError(
            f"checkpoint {cell.checkpoint} on this worker has other weights than the sweep started with; "
            "make the same checkpoint reachable from every worker"
        )
    env = resolve_env(cell.env_id)
    wanted = set(cell.episodes)
    n = max(cell.episodes) + 1
    shift = Shift.from_label(cell.shift)
    done = {(shift.label, float(cell.target), k) for k in range(n) if k not in wanted}
    return evaluate(
        ckpt,
        env,
        [cell.target],
        episodes=n,
        num_envs=cell.num_envs,
        seed=cell.seed,
        device=cell.device,
        precision=cell.precision,
        done=done,
        env_workers=cell.env_workers,
        simulator=cell.simulator,
        shifts=[shift],
    )


def threads_per_job(jobs: int, cores: int | None = None) -> int:
    """Torch threads per worker so that ``jobs * threads`` does not exceed the cores."""
    cores = cores or os.cpu_count() or 1
    return max(1, cores // max(jobs, 1))


@contextmanager
def engine(backend: str, jobs: int, scheduler: str | None) -> Iterator[None]:
    """Enter ``joblib.parallel_config`` for ``backend`` (starting what it needs).

    Raises:
        HarnessError: unknown backend, its package missing, or no cluster at ``scheduler``.
    """
    from joblib import parallel_config

    if backend not in BACKENDS:
        raise HarnessError(f"unknown --backend {backend!r}; use one of: {', '.join(BACKENDS)}")
    if scheduler is not None and backend != "dask":
        raise HarnessError("--scheduler is the address of a Dask cluster; pass it with --backend dask")
    if backend == "loky":
        with parallel_config(backend="loky", n_jobs=jobs):
            yield
        return
    if backend == "dask":
        try:
            from dask.distributed import Client, LocalCluster
        except ImportError:
            raise HarnessError("--backend dask needs dask.distributed: pip install 'harness[dask]'") from None
        if scheduler:
            try:
                client = Client(scheduler, timeout="5s")
            except (OSError, TimeoutError) as exc:
                raise HarnessError(
                    f"no Dask scheduler answered at {scheduler} ({type(exc).__name__}); start one "
                    "(dask scheduler) or drop --scheduler for a local cluster"
                ) from None
            cluster = None
        else:
            cluster = LocalCluster(
                n_workers=jobs, threads_per_worker=1, processes=True, dashboard_address=None, host="127.0.0.1"
            )
            client = Client(cluster)
        try:
            with parallel_config(backend="dask", n_jobs=jobs):
                yield
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
        return
    try:
        import ray
        from ray.util.joblib import register_ray
    except ImportError:
        raise HarnessError("--backend ray needs ray: pip install 'harness[ray]' (or 'ray[default]')") from None
    register_ray()
    started = not ray.is_initialized()
    if started:
        ray.init(address=os.environ.get("RAY_ADDRESS"), log_to_driver=False, include_dashboard=False)
    try:
        with parallel_config(backend="ray", n_jobs=jobs):
            yield
    finally:
        if started:
            ray.shutdown()


def run_cells(cells: Sequence[Cell], on_cell: Callable[[pd.DataFrame], None]) -> None:
    """Run ``cells`` on the active joblib engine; ``on_cell`` gets each cell's rows as it finishes.

    Backends that cannot stream results (joblib's Ray backend) run the cells in waves of
    ``n_jobs``, so finished cells still reach ``on_cell`` (and disk) during the sweep.
    """
    from joblib import Parallel, delayed
    from joblib.parallel import get_active_backend

    backend, n_jobs = get_active_backend()
    if getattr(backend, "supports_return_generator", False):
        for rows in Parallel(return_as="generator_unordered")(delayed(run_cell)(c) for c in cells):
            on_cell(rows)
        return
    wave = max(int(n_jobs or 1), 1)
    for start in range(0, len(cells), wave):
        for rows in Parallel()(delayed(run_cell)(c) for c in cells[start : start + wave]):
            on_cell(rows)
