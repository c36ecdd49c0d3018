"""Run a list of episodes on a vector env of N slots with one batched forward pass per step.

Each episode is a (target return, reset seed) pair. Slots start on the first N episodes; a slot
whose episode ends records it and takes the next pending episode (reset with ``reset_mask`` and
that episode's own seed), so every episode runs to its end, whatever its length, and results do
not depend on N. No step of a reset ever leaks into a return. When no episode is pending, a finished slot
idles: it is neither reset nor stepped again (:class:`harness.world.vector.SlotVectorEnv`), and the
model runs on the live slots only.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

import numpy as np
import torch

from harness.core.schema import Status
from harness.engine.context import ContextWindow
from harness.engine.policy import DTPolicy
from harness.world.envs import STATUS_KEY, render_kwargs, slot_info
from harness.world.shift import Shift, noise_generators
from harness.world.vector import ShardedVectorEnv, make_slots


@dataclass(frozen=True)
class EpisodeSpec:
    """One episode to run.

    Attributes:
        target: target return, raw (the model sees ``target / return_scale``).
        seed: reset seed.
        index: the episode's index k within its cell (seed = base seed + k in a sweep).
        shift: see below.
    """

    target: float
    seed: int
    index: int = 0
    shift: Shift | None = None
    """The episode's own shift condition (None: the rollout's ``shift``): one rollout can hold
    episodes of every condition of a sweep, each slot simulating its episode's dynamics."""


@dataclass(frozen=True)
class EpisodeResult:
    """What one episode did.

    Attributes:
        spec: the episode that was run.
        ret: undiscounted return (up to the failure for a failed episode).
        length: env steps (a step whose action was not finite is not counted).
        terminated: ended by the env's termination condition.
        truncated: ended by the time limit.
        wall_time_s: seconds from its reset to its end (shared batch time).
        status: how it ended (:class:`harness.core.schema.Status`: ``ok`` or why it failed).
        error: the exception text for ``env_error``, else empty.
        actions: ``(length, act_dim)`` actions taken, only when asked for.
    """

    spec: EpisodeSpec
    ret: float
    length: int
    terminated: bool
    truncated: bool
    wall_time_s: float
    status: Status = Status.OK
    error: str = ""
    actions: np.ndarray | None = field(default=None, repr=False, compare=False)


ProgressFn = Callable[[int, int], None]
"""Called after every step with (episodes finished in this step, env steps in this step)."""
FinishFn = Callable[[list[EpisodeResult]], None]
"""Called with the episodes that finished in a step (to write them out as they finish)."""


def run_episodes(
    policy: DTPolicy,
    env_id: str,
    episodes: Sequence[EpisodeSpec],
    num_envs: int,
    progress: ProgressFn | None = None,
    record_actions: bool = False,
    max_episode_steps: int | None = None,
    on_finish: FinishFn | None = None,
    env_workers: int = 1,
    on_frame: Callable[[np.ndarray], None] | None = None,
    render_size: tuple[int, int] = (480, 480),
    simulator: str = "batched",
    pipelines: int | None = None,
    shift: Shift | None = None,
    on_step: Callable[[np.ndarray], None] | None = None,
) -> list[EpisodeResult]:
    """Run ``episodes`` with ``policy`` on ``min(num_envs, len(episodes))`` slots.

    Args:
        policy: the batched policy.
        env_id: Gymnasium id of the env.
        episodes: what to run, in order of assignment to slots.
        num_envs: slots of the vector env.
        progress: optional per-step callback.
        record_actions: keep every episode's actions (for tests and debugging).
        max_episode_steps: override of the env's time limit (benchmarks).
        on_finish: optional callback with each step's finished episodes.
        env_workers: processes that step the slots (:class:`harness.world.vector.ShardedVectorEnv`);
            1 steps them in this process.
        on_frame: with ``num_envs`` 1, called with each rendered ``(height, width, 3)`` uint8
            frame (after the reset and after every step): video recording. Rendering reads the
            simulator's state only, so the episode is the same as without it.
        render_size: ``(width, height)`` of the frames.
        simulator: ``batched`` (:class:`harness.world.mjbatch.MujocoBatch` for the locomotion tasks,
            bit-equal to Gymnasium's envs; other ids and rendering use Gymnasium's) or
            ``gymnasium`` (Gymnasium's envs always).
        pipelines: independent rollouts in threads, each with ``num_envs // pipelines`` slots and
            every ``pipelines``-th episode, so that one steps its simulator (MuJoCo releases the
            GIL) while another computes its actions (torch and the fixed-order kernel release it
            too): Sample Factory's double-buffered sampling. Each pipeline gets its share of
            torch's threads for the call (``torch.get_num_threads() // pipelines``, at least 1;
            restored afterwards), so a core runs one pipeline's products without fork/join.
            Callbacks are serialised. None (default): :func:`auto_pipelines` (one per torch thread
            where the forward is batch invariant by construction, else 1). The episodes are the
            same as with one pipeline wherever the forward is batch invariant (tested); see
            ``benchmarks/speed/overlap.py``.
        shift: a :class:`harness.world.shift.Shift` of every episode (dynamics on the slots'
            simulator, observation and action noise from each episode's own generators).
        on_step: optional callback with each env step's rewards ``(n,)`` float64 (one pipeline
            only: ``harness trace``).

    Returns:
        One result per episode, in the order of ``episodes``. An episode whose env raised is
        run once more from its reset on a fresh env before it is recorded as ``env_error``.
    """
    if num_envs < 1:
        raise ValueError(f"num_envs must be >= 1, got {num_envs}")
    if not episodes:
        return []
    if pipelines is None:
        one = on_frame is not None or on_step is not None
        pipelines = 1 if one else auto_pipelines(policy, min(num_envs, len(episodes)), env_workers)
    if pipelines < 1:
        raise ValueError(f"pipelines must be >= 1, got {pipelines}")
    pipelines = min(pipelines, num_envs, len(episodes))
    if pipelines > 1 and on_frame is None:
        return _pipelined(
            policy, env_id, episodes, num_envs, pipelines, progress, record_actions, max_episode_steps,
            on_finish, env_workers, simulator, shift,
        )  # fmt: skip
    n = min(num_envs, len(episodes))
    if on_frame is not None and (n != 1 or env_workers != 1):
        raise ValueError("on_frame records one episode at a time: num_envs and env_workers must be 1")
    shift = shift or Shift()
    dynamics = None if shift.dynamics.neutral else shift.dynamics
    if env_workers > 1:
        envs = ShardedVectorEnv(env_id, n, env_workers, max_episode_steps, simulator, dynamics)
    else:
        render = render_kwargs(env_id, render_size) if on_frame is not None else None
        envs = make_slots(env_id, n, max_episode_steps, simulator, render, dynamics=dynamics)
    try:
        run = _Run(policy, envs, episodes, n, progress, record_actions, on_finish, shift)
        run.on_frame, run.on_step = on_frame, on_step
        return run.run()
    finally:
        envs.close()


def auto_pipelines(policy: DTPolicy, num_envs: int, env_workers: int = 1) -> int:
    """How many pipelines :func:`run_episodes` runs by default: one per torch thread, each with at
    least a chunk of windows (the fast path's block), where that cannot change an episode.

    Only the fixed-order products (fp32 on CPU under pinned numerics) make a window's action the
    same whichever slots share its forward, by construction and on every CPU; the BLAS paths'
    padded blocks are invariant where the self-check says so, and the stock forward is not at all,
    so they keep one pipeline (and their results do not depend on the thread count). With
    ``env_workers > 1`` the simulator already runs in other processes: one pipeline.
    """
    fast = policy.fast
    if fast is None or fast.products != "fixed" or env_workers > 1 or policy.device.type != "cpu":
        return 1
    chunk = fast.block or num_envs
    return max(1, min(torch.get_num_threads(), num_envs // max(chunk, 1)))


def _pipelined(
    policy: DTPolicy,
    env_id: str,
    episodes: Sequence[EpisodeSpec],
    num_envs: int,
    pipelines: int,
    progress: ProgressFn | None,
    record_actions: bool,
    max_episode_steps: int | None,
    on_finish: FinishFn | None,
    env_workers: int,
    simulator: str,
    shift: Shift | None = None,
) -> list[EpisodeResult]:
    """:func:`run_episodes` as ``pipelines`` rollouts in threads (episode j goes to j % pipelines).

    The first pipeline to fail, or Ctrl-C in the caller's thread, stops the others at their next
    step (what finished is already with ``on_finish``), and that exception is raised here.
    """
    lock = threading.Lock()
    stop = threading.Event()
    groups = [list(range(i, len(episodes), pipelines)) for i in range(pipelines)]
    shares = [num_envs // pipelines + (1 if i < num_envs % pipelines else 0) for i in range(pipelines)]

    def task(i: int) -> list[EpisodeResult]:
        def prog(done: int, steps: int) -> None:  # each pipeline's own step: (finished, env steps)
            if stop.is_set():
                raise _Stopped
            with lock:
                if progress is not None:
                    progress(done, steps)

        def fin(results: list[EpisodeResult]) -> None:
            with lock:
                if on_finish is not None:
                    on_finish(results)

        return run_episodes(
            policy,
            env_id,
            [episodes[j] for j in groups[i]],
            shares[i],
            prog,
            record_actions,
            max_episode_steps,
            fin,
            env_workers,
            simulator=simulator,
            pipelines=1,
            shift=shift,
        )

    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, threads // pipelines))  # a pipeline's share (the kernel reads it per call)
    try:
        with ThreadPoolExecutor(pipelines, thread_name_prefix="harness-pipeline") as pool:
            futures = [pool.submit(task, i) for i in range(pipelines)]
            try:  # short waits: the caller's thread sees Ctrl-C wherever the signal landed
                done, pending = wait(futures, timeout=0.2, return_when=FIRST_EXCEPTION)
                while pending and not any(f.exception() is not None for f in done):
                    done, pending = wait(futures, timeout=0.2, return_when=FIRST_EXCEPTION)
            except BaseException:  # Ctrl-C while waiting: the pipelines stop at their next step
                stop.set()
                raise
            if any(f.exception() is not None for f in done):
                stop.set()
        # every pipeline has ended here
        failures = [e for f in futures if (e := f.exception()) is not None and not isinstance(e, _Stopped)]
        if failures:
            raise failures[0]
        parts = [f.result() for f in futures]
    finally:
        torch.set_num_threads(threads)
    out: list[EpisodeResult | None] = [None] * len(episodes)
    for group, results in zip(groups, parts, strict=True):
        for j, r in zip(group, results, strict=True):  # each part is in the order of its episodes
            out[j] = r
    return [r for r in out if r is not None]


class _Stopped(Exception):
    """Raised inside a pipeline told to stop (another one failed, or the caller was interrupted)."""


def _statuses(info: dict, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-slot ``(status, error)`` object arrays from a vector env's merged info ("" = none)."""
    slots = slot_info(info, n)
    return slots[STATUS_KEY], slots["harness_error"]


class _Run:
    """The state of one ``run_episodes`` call (slots, pending queue, per-slot accumulators)."""

    def __init__(self, policy, envs, episodes, n, progress, record_actions, on_finish, shift=None) -> None:
        ckpt = policy.checkpoint
        self.shift = shift or Shift()
        # noise: per episode generators (set at its reset), so draws follow the episode, not the slot
        self.state_std = np.asarray(ckpt.state_std, dtype=np.float64)
        space = envs.single_action_space
        self.act_low, self.act_high = np.asarray(space.low, np.float64), np.asarray(space.high, np.float64)
        self.noise: list[tuple[np.random.Generator, np.random.Generator] | None] = [None] * n
        self.slot_shift: list[Shift] = [self.shift] * n  # the shift of each slot's episode
        self.per_slot_dynamics = any(e.shift is not None and e.shift.dynamics != self.shift.dynamics for e in episodes)
        if self.per_slot_dynamics and not hasattr(envs, "set_dynamics"):
            raise ValueError(
                "episodes of several dynamics shifts in one rollout need the batched simulator "
                "(MujocoBatch); run each condition on its own slots"
            )
        self.policy, self.envs, self.episodes, self.n = policy, envs, episodes, n
        self.progress, self.record_actions, self.on_finish = progress, record_actions, on_finish
        self.device = policy.device
        self.scale = policy.scale
        self.window = ContextWindow(n, ckpt.context_length, ckpt.state_dim, ckpt.act_dim, device=self.device)
        self.pending: deque[int] = deque(range(len(episodes)))
        self.attempts = np.zeros(len(episodes), dtype=np.int64)
        self.slot_episode = np.full(n, -1)  # index into `episodes` of each slot's episode; -1 when idle
        self.returns = np.zeros(n, dtype=np.float64)
        self.lengths = np.zeros(n, dtype=np.int64)
        self.started = np.zeros(n)
        self.rtg = torch.zeros(n, dtype=torch.float32, device=self.device)
        self.steps = torch.zeros(n, dtype=torch.long, device=self.device)
        self.traces: list[list[np.ndarray]] = [[] for _ in range(n)]
        self.results: list[EpisodeResult | None] = [None] * len(episodes)
        self.obs = np.zeros((n, *envs.single_observation_space.shape))
        self.finished_now: list[EpisodeResult] = []
        self.on_frame: Callable[[np.ndarray], None] | None = None
        self.on_step: Callable[[np.ndarray], None] | None = None

    def _frame(self) -> None:
        if self.on_frame is not None and self.slot_episode[0] >= 0:
            self.on_frame(np.asarray(self.envs.render()[0]))

    def _record(self, i: int, terminated: bool, truncated: bool, status: str, error: str, now: float) -> None:
        """Slot ``i``'s episode is over: store its result (or re-queue it once after an env error)."""
        k = int(self.slot_episode[i])
        status = Status(status or Status.OK)  # an unknown status string raises here
        if status is Status.ENV_ERROR and self.attempts[k] < 2:
            self.pending.appendleft(k)  # once more from its reset, on the fresh env
            return
        result = EpisodeResult(
            spec=self.episodes[k],
            ret=float(self.returns[i]),
            length=int(self.lengths[i]),
            terminated=terminated and status is Status.OK,
            truncated=truncated and not terminated and status is Status.OK,
            wall_time_s=float(now - self.started[i]),
            status=status,
            error=error,
            actions=(np.stack(self.traces[i]) if self.traces[i] else np.zeros((0, self.policy.checkpoint.act_dim)))
            if self.record_actions
            else None,
        )
        self.results[k] = result
        self.finished_now.append(result)

    def _assign(self, slots: np.ndarray) -> None:
        """Reset ``slots`` with the next pending episodes (idle when none are left).

        A reset that fails twice (GuardedEnv) records that episode as ``env_error`` and the
        slot takes the next one.
        """
        todo = np.asarray(slots)
        while len(todo):
            seeds: list[int | None] = [None] * self.n
            mask = np.zeros(self.n, dtype=bool)
            now = time.perf_counter()
            for i in todo:
                if self.pending:
                    k = self.pending.popleft()
                    self.attempts[k] += 1
                    self.slot_episode[i] = k
                    seeds[i] = self.episodes[k].seed
                    self.rtg[i] = self.episodes[k].target / self.scale
                    shift = self.slot_shift[i] = self.episodes[k].shift or self.shift
                    if shift.obs_noise or shift.act_noise:
                        self.noise[i] = noise_generators(self.episodes[k].seed, shift)
                    mask[i] = True
                else:
                    self.slot_episode[i] = -1  # idle for good: neither reset nor stepped again
                self.returns[i], self.lengths[i], self.started[i] = 0.0, 0, now
                self.traces[i] = []
            if not mask.any():
                return
            options: dict = {"reset_mask": mask}
            if self.per_slot_dynamics:
                options["dynamics"] = [self.slot_shift[i] for i in range(self.n)]
            new_obs, info = self.envs.reset(seed=seeds, options=options)
            self.obs = np.where(mask[:, None], new_obs, self.obs)
            rows = torch.as_tensor(todo, device=self.device)
            self.window.clear(rows)
            self.steps[rows] = 0
            status, error = _statuses(info, self.n)
            failed = [i for i in todo if status[i] and self.slot_episode[i] >= 0]
            for i in failed:
                self._record(i, False, False, str(status[i]), str(error[i]), time.perf_counter())
            todo = np.asarray(failed, dtype=np.int64)

    def run(self) -> list[EpisodeResult]:
        n, policy, window = self.n, self.policy, self.window
        self._assign(np.arange(n))
        self._frame()
        self._flush()
        act_dim = policy.checkpoint.act_dim
        while (self.slot_episode >= 0).any():
            live = self.slot_episode >= 0
            live_rows = None if live.all() else torch.as_tensor(np.flatnonzero(live), device=self.device)
            window.append(policy.normalize(self._seen(live)), self.rtg, self.steps)
            acts = policy.act(window.view(), live_rows)
            finite = torch.isfinite(acts).all(dim=1)
            if not bool(finite.all()):
                acts = torch.where(finite[:, None], acts, torch.zeros_like(acts))
            window.set_last_action(acts, live_rows)
            actions_np = np.zeros((n, act_dim), dtype=np.float32)
            nan_slot = np.zeros(n, dtype=bool)
            if live_rows is None:
                actions_np[:] = acts.cpu().numpy()
                nan_slot[:] = ~finite.cpu().numpy()
            else:
                idx = live_rows.cpu().numpy()
                actions_np[idx] = acts.cpu().numpy()
                nan_slot[idx] = ~finite.cpu().numpy()
            if any(self.slot_shift[i].act_noise for i in np.flatnonzero(live)):
                actions_np = self._noisy(actions_np, live & ~nan_slot)
            obs, reward, terminated, truncated, info = self.envs.step(actions_np, live)
            self._frame()
            if self.on_step is not None:
                self.on_step(reward)
            status, error = _statuses(info, n)
            status[nan_slot & live] = Status.NAN_ACTION.value

            counted = live & ~nan_slot  # a step taken on a placeholder action is not the episode's
            self.returns[counted] += reward[counted]
            self.lengths[counted] += 1
            if self.record_actions:
                for i in np.flatnonzero(counted):
                    self.traces[i].append(actions_np[i].copy())
            self.rtg -= torch.as_tensor(reward / self.scale, dtype=torch.float32, device=self.device)
            self.steps = torch.clamp(self.steps + 1, max=policy.max_timestep)
            self.obs = np.where(live[:, None], obs, self.obs)

            done = terminated | truncated | (status != "")
            now = time.perf_counter()
            ended = np.flatnonzero(done & live)
            for i in ended:
                self._record(i, bool(terminated[i]), bool(truncated[i]), str(status[i]), str(error[i]), now)
            if self.progress is not None:
                self.progress(len(self.finished_now), int(live.sum()))
            if done.any():
                self._assign(np.flatnonzero(done))
            self._flush()
        return [r for r in self.results if r is not None]

    def _seen(self, live: np.ndarray) -> np.ndarray:
        """The observations the policy sees ``(n, state_dim)``: with ``obs_noise``, each live slot's
        plus one draw of its episode's observation noise (the simulator's state is untouched)."""
        noisy = [i for i in np.flatnonzero(live) if self.slot_shift[i].obs_noise]
        if not noisy:
            return self.obs
        seen = np.array(self.obs, dtype=np.float64)
        for i in noisy:
            std = self.slot_shift[i].obs_noise * self.state_std
            seen[i] += std * self.noise[i][0].standard_normal(len(std))
        return seen

    def _noisy(self, actions: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """``actions`` ``(n, act_dim)`` float32 with each of ``rows``' plus one draw of its episode's
        action noise, clipped to the bounds (the policy's own action stays in its context)."""
        out = actions.copy()
        for i in np.flatnonzero(rows):
            scale = self.slot_shift[i].act_noise
            if not scale:
                continue
            std = scale * (self.act_high - self.act_low) / 2
            noisy = actions[i].astype(np.float64) + std * self.noise[i][1].standard_normal(len(std))
            out[i] = np.clip(noisy, self.act_low, self.act_high)
        return out

    def _flush(self) -> None:
        if self.finished_now:
            if self.on_finish is not None:
                self.on_finish(self.finished_now)
            self.finished_now = []
