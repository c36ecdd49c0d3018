"""Offline datasets in the tutorial's schema: one row per trajectory.

Each trajectory has ``observations`` ``(T, state_dim)``, ``actions`` ``(T, act_dim)``,
``rewards`` ``(T,)`` and ``dones`` ``(T,)``, all float32. In memory the trajectories are kept
concatenated, with offsets, so that training can gather windows with numpy indexing:

>>> import numpy as np
>>> trajs = [dict(observations=np.zeros((3, 2)), actions=np.zeros((3, 1)), rewards=np.ones(3),
...               dones=np.array([0, 0, 1])) for _ in range(2)]
>>> ds = OfflineDataset.from_trajectories(trajs)
>>> ds.num_trajectories, ds.num_transitions, ds.returns().tolist(), ds.lengths().tolist()
(2, 6, [3.0, 3.0], [3, 3])

Sources: local parquet files written by ``python -m harness.collect`` (:meth:`from_parquet`)
and, for users who are online, the Hugging Face Hub (:meth:`from_hub`, e.g.
``edbeeching/decision_transformer_gym_replay`` with config ``halfcheetah-expert-v2``).
:func:`load_source` reads either from one string (``path.parquet`` or ``owner/name:subset``) and
:func:`statistics_from` turns a dataset into the state statistics a checkpoint needs.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.core.errors import HarnessError

HUB_PARQUET_REVISION = "refs/convert/parquet"
"""The Hub's automatic parquet conversion of a dataset: ``<subset>/<split>/NNNN.parquet``."""

COLUMNS = ("observations", "actions", "rewards", "dones")
D4RL_KEYS = ("observations", "actions", "rewards", "terminals", "timeouts")
"""Datasets of a D4RL HDF5 file that the harness reads (one row per transition)."""


@dataclass(frozen=True)
class DatasetSummary:
    """What a checkpoint was trained on: size and return distribution (raw returns)."""

    name: str
    trajectories: int
    transitions: int
    return_min: float
    return_p10: float
    return_median: float
    return_p90: float
    return_max: float
    mean_length: float | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str) -> DatasetSummary:
        """Build from a config.json ``dataset`` entry; unknown keys are ignored."""
        required = [f.name for f in fields(cls) if f.name != "mean_length"]
        if not isinstance(data, dict):
            raise HarnessError(f"{where}: 'dataset' must be an object with keys {', '.join(required)}")
        missing = [k for k in required if k not in data]
        if missing:
            raise HarnessError(f"{where}: 'dataset' lacks {', '.join(missing)}; add them or remove 'dataset'")
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def _matrix(rows: object) -> np.ndarray:
    """A ``(T, d)`` float32 array from a 2-D array or a sequence of rows (lists or arrays)."""
    seq = list(rows)  # type: ignore[call-overload]
    return np.stack([np.asarray(r, dtype=np.float32) for r in seq]) if seq else np.zeros((0, 0), np.float32)


@dataclass(frozen=True)
class OfflineDataset:
    """Concatenated trajectories.

    Attributes:
        observations: ``(N, state_dim)`` float32, N transitions in all.
        actions: ``(N, act_dim)`` float32.
        rewards: ``(N,)`` float32.
        dones: ``(N,)`` float32, 1 where the env terminated (not at the time limit).
        starts: ``(num_trajectories + 1,)`` int64 offsets; trajectory i is ``starts[i]:starts[i+1]``.
    """

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    dones: np.ndarray
    starts: np.ndarray

    @classmethod
    def from_trajectories(cls, trajectories: Iterable[Mapping[str, object]]) -> OfflineDataset:
        """Build from per-trajectory mappings with the four schema keys."""
        parts: dict[str, list[np.ndarray]] = {c: [] for c in COLUMNS}
        lengths = []
        for i, traj in enumerate(trajectories):
            missing = [c for c in COLUMNS if c not in traj]
            if missing:
                raise HarnessError(f"trajectory {i} lacks {', '.join(missing)}; each row needs {', '.join(COLUMNS)}")
            obs = _matrix(traj["observations"])
            act = _matrix(traj["actions"])
            rew = np.asarray(traj["rewards"], dtype=np.float32).reshape(-1)
            done = np.asarray(traj["dones"], dtype=np.float32).reshape(-1)
            n = len(rew)
            if n == 0 or not (len(obs) == len(act) == len(done) == n):
                raise HarnessError(
                    f"trajectory {i} has {len(obs)} observations, {len(act)} actions, {n} rewards and "
                    f"{len(done)} dones; they must be equal and non-zero"
                )
            for c, arr in zip(COLUMNS, (obs, act, rew, done), strict=True):
                parts[c].append(arr)
            lengths.append(n)
        if not lengths:
            raise HarnessError("the dataset holds no trajectories")
        starts = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        return cls(*(np.concatenate(parts[c]) for c in COLUMNS), starts=starts)

    @property
    def num_trajectories(self) -> int:
        return len(self.starts) - 1

    @property
    def num_transitions(self) -> int:
        return int(self.starts[-1])

    @property
    def state_dim(self) -> int:
        return int(self.observations.shape[1])

    @property
    def act_dim(self) -> int:
        return int(self.actions.shape[1])

    def lengths(self) -> np.ndarray:
        """``(num_trajectories,)`` int64 lengths."""
        return np.diff(self.starts)

    def returns(self) -> np.ndarray:
        """``(num_trajectories,)`` float64 undiscounted returns."""
        return np.add.reduceat(self.rewards.astype(np.float64), self.starts[:-1])

    def trajectory(self, i: int) -> dict[str, np.ndarray]:
        """Trajectory ``i`` as the four schema arrays."""
        sl = slice(self.starts[i], self.starts[i + 1])
        return {c: getattr(self, c)[sl] for c in COLUMNS}

    def state_stats(self, eps: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
        """``(state_dim,)`` mean and std + eps of all observations (the paper's normalisation)."""
        obs = self.observations.astype(np.float64)
        return obs.mean(axis=0), obs.std(axis=0) + eps

    def summary(self, name: str) -> DatasetSummary:
        """Size and return distribution, as stored with every checkpoint trained on it."""
        r = self.returns()
        p10, median, p90 = np.percentile(r, [10, 50, 90])
        return DatasetSummary(
            name=name,
            trajectories=self.num_trajectories,
            transitions=self.num_transitions,
            return_min=float(r.min()),
            return_p10=float(p10),
            return_median=float(median),
            return_p90=float(p90),
            return_max=float(r.max()),
            mean_length=float(self.lengths().mean()),
        )

    def to_frame(self) -> pd.DataFrame:
        """One row per trajectory with list-valued columns (the tutorial's schema)."""
        rows = [self.trajectory(i) for i in range(self.num_trajectories)]
        return pd.DataFrame(
            {
                "observations": [list(r["observations"]) for r in rows],
                "actions": [list(r["actions"]) for r in rows],
                "rewards": [r["rewards"] for r in rows],
                "dones": [r["dones"] for r in rows],
            }
        )

    def to_parquet(self, path: str | Path) -> Path:
        """Write the tutorial's schema as parquet (written to a temp name, then renamed)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        self.to_frame().to_parquet(tmp, index=False)
        tmp.replace(path)
        return path

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> OfflineDataset:
        missing = [c for c in COLUMNS if c not in frame.columns]
        if missing:
            raise HarnessError(f"dataset lacks the columns {', '.join(missing)}; expected {', '.join(COLUMNS)}")
        return cls.from_trajectories(frame[list(COLUMNS)].to_dict("records"))

    @classmethod
    def from_parquet(cls, path: str | Path) -> OfflineDataset:
        """Read a parquet file in the tutorial's schema."""
        path = Path(path)
        if not path.is_file():
            raise HarnessError(f"dataset {path} does not exist; write one with python -m harness.collect")
        try:
            frame = pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises several types for a bad file
            raise HarnessError(f"dataset {path} is not a readable parquet file ({type(exc).__name__}: {exc})") from None
        return cls.from_frame(frame)

    @classmethod
    def from_d4rl_hdf5(cls, path: str | Path) -> OfflineDataset:
        """Read a D4RL-layout HDF5 file (``observations``, ``actions``, ``rewards``, ``terminals``,
        ``timeouts``: one row per transition), split into episodes as D4RL's ``sequence_dataset``
        does: an episode ends where ``terminals`` or ``timeouts`` is set; the transitions after the
        last end (an unfinished episode) are left out. ``dones`` = ``terminals``. Needs ``h5py``."""
        path = Path(path)
        if not path.is_file():
            raise HarnessError(
                f"dataset {path} does not exist; pass a D4RL .hdf5 file (e.g. hopper_medium_replay-v2.hdf5)"
            )
        try:
            import h5py
        except ImportError:
            raise HarnessError("reading D4RL HDF5 files needs h5py: pip install 'harness[d4rl]'") from None
        try:
            with h5py.File(path, "r") as f:
                missing = [k for k in D4RL_KEYS if k not in f]
                if missing:
                    raise HarnessError(
                        f"{path} lacks {', '.join(missing)}; a D4RL file holds {', '.join(D4RL_KEYS)} (timeouts may be "
                        "absent only in very old files: add it)"
                    )
                obs, act, rew, term, tout = (np.asarray(f[k]) for k in D4RL_KEYS)
        except OSError as exc:
            raise HarnessError(f"dataset {path} is not a readable HDF5 file ({exc})") from None
        ends = np.flatnonzero(np.logical_or(term > 0, tout > 0)) + 1
        if len(ends) == 0:
            raise HarnessError(f"{path} holds no finished episode (no terminals or timeouts set)")
        bounds = np.concatenate([[0], ends])
        return cls.from_trajectories(
            {
                "observations": obs[a:b],
                "actions": act[a:b],
                "rewards": rew[a:b],
                "dones": term[a:b].astype(np.float32),
            }
            for a, b in zip(bounds[:-1], bounds[1:], strict=True)
        )

    def to_d4rl_hdf5(self, path: str | Path) -> Path:
        """Write the D4RL layout (one row per transition; ``timeouts`` set at the last step of every
        trajectory that did not terminate), so D4RL-reading tools (CORL, d3rlpy, the paper's code)
        read our data; :meth:`from_d4rl_hdf5` reads it back into the same trajectories."""
        import h5py

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        timeouts = np.zeros(self.num_transitions, dtype=bool)
        last = self.starts[1:] - 1
        timeouts[last] = self.dones[last] == 0
        tmp = path.with_name(f".{path.name}.tmp")
        with h5py.File(tmp, "w") as f:
            f["observations"] = self.observations
            f["actions"] = self.actions
            f["rewards"] = self.rewards
            f["terminals"] = self.dones > 0
            f["timeouts"] = timeouts
        tmp.replace(path)
        return path

    @classmethod
    def from_hub(cls, name: str, config: str, split: str = "train") -> OfflineDataset:
        """Load a dataset of the tutorial's schema from the Hugging Face Hub (needs ``datasets``)."""
        try:
            from datasets import load_dataset
        except ImportError:
            raise HarnessError("loading from the Hub needs the datasets package: pip install 'harness[data]'") from None
        try:
            ds = load_dataset(name, config, split=split)
        except Exception as exc:
            raise HarnessError(f"could not load {name} ({config}) from the Hugging Face Hub ({exc})") from None
        return cls.from_frame(ds.to_pandas())


def _hub_parquet_folder(repo_id: str, subset: str, split: str) -> Path:
    """Download the parquet shards of one subset of a Hub dataset; returns the snapshot folder."""
    from huggingface_hub import snapshot_download

    try:
        return Path(
            snapshot_download(
                repo_id,
                repo_type="dataset",
                revision=HUB_PARQUET_REVISION,
                allow_patterns=[f"{subset}/{split}/*.parquet"],
            )
        )
    except Exception as exc:  # network, auth, missing repo: all end the same way for the user
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise HarnessError(
            f"could not fetch dataset {repo_id}:{subset} from the Hugging Face Hub ({type(exc).__name__}: "
            f"{first}); check the id and your connection, or pass a local parquet file"
        ) from None


def from_minari(dataset_id: str) -> OfflineDataset:
    """A Minari dataset from the local root (``MINARI_DATASETS_PATH``, else ``~/.minari/datasets``),
    through the ``minari`` package (``pip install 'harness[minari]'``); never downloaded here.

    Minari keeps ``T + 1`` observations per episode (the last is the final next-observation); the
    tutorial's schema keeps the ``T`` states acted on, so the last is dropped. ``dones`` =
    ``terminations``."""
    try:
        import minari
    except ImportError:
        raise HarnessError("reading Minari datasets needs the minari package: pip install 'harness[minari]'") from None
    root = Path(os.environ.get("MINARI_DATASETS_PATH", Path.home() / ".minari" / "datasets"))
    try:
        ds = minari.load_dataset(dataset_id)
    except Exception as exc:  # minari raises several types for a dataset that is not there
        raise HarnessError(
            f"Minari dataset {dataset_id!r} is not in {root} ({type(exc).__name__}); get it where you are online with "
            f"`minari download {dataset_id}` (or set MINARI_DATASETS_PATH to the folder that holds it)"
        ) from None
    return OfflineDataset.from_trajectories(
        {
            "observations": np.asarray(ep.observations)[:-1],
            "actions": ep.actions,
            "rewards": ep.rewards,
            "dones": np.asarray(ep.terminations, dtype=np.float32),
        }
        for ep in ds.iterate_episodes()
    )


def to_minari(data: OfflineDataset, dataset_id: str, env_id: str) -> Path:
    """Write ``data`` as a Minari dataset in the local root with minari's own writer, so Minari
    users read our data. Minari wants ``T + 1`` observations per episode; the tutorial's schema has
    no final next-observation, so the last state is repeated (said in the dataset's description)."""
    try:
        import gymnasium as gym
        import minari
    except ImportError:
        raise HarnessError("writing Minari datasets needs the minari package: pip install 'harness[minari]'") from None
    from minari.data_collector import EpisodeBuffer

    buffer = []
    for i in range(data.num_trajectories):
        t = data.trajectory(i)
        n = len(t["rewards"])
        done = t["dones"] > 0
        buffer.append(
            EpisodeBuffer(
                id=i,
                observations=list(np.concatenate([t["observations"], t["observations"][-1:]])),
                actions=list(t["actions"]),
                rewards=list(t["rewards"]),
                terminations=list(done),
                truncations=list(~done & (np.arange(n) == n - 1)),
            )
        )
    spec = gym.spec(env_id)
    obs_space = gym.spaces.Box(-np.inf, np.inf, (data.state_dim,), np.float64)
    act_space = gym.spaces.Box(-1.0, 1.0, (data.act_dim,), np.float32)
    ds = minari.create_dataset_from_buffers(
        dataset_id,
        buffer,
        env=spec,
        observation_space=obs_space,
        action_space=act_space,
        algorithm_name="harness collect",
        author="harness",
        author_email="n/a",
        description="Written by harness (tutorial schema to Minari); the final observation of each episode "
        "repeats the last state acted on (the tutorial's schema keeps no next-observation).",
    )
    return Path(ds.spec.data_path).parent


def load_source(spec: str, split: str = "train") -> OfflineDataset:
    """A dataset from a local parquet file, a D4RL HDF5 file (``.hdf5``/``.h5``), a Minari dataset
    in the local root (``minari:<dataset id>``) or ``owner/name:subset`` on the Hugging Face Hub.

    The Hub path reads the dataset's parquet conversion (what ``datasets.load_dataset`` would
    load: the same rows), so the ``datasets`` package is not needed.

    Raises:
        HarnessError: no such file, not the tutorial's schema, or the Hub cannot be reached.
    """
    path = Path(spec).expanduser()
    if spec.startswith("minari:"):
        return from_minari(spec.split(":", 1)[1])
    if path.suffix in (".hdf5", ".h5"):
        return OfflineDataset.from_d4rl_hdf5(path)
    if path.exists() or spec.endswith(".parquet"):
        return OfflineDataset.from_parquet(path)
    if ":" not in spec or spec.count("/") != 1:
        raise HarnessError(
            f"dataset {spec!r} is neither a parquet file nor a Hub dataset; pass path/to/data.parquet or "
            "owner/name:subset (e.g. edbeeching/decision_transformer_gym_replay:halfcheetah-expert-v2)"
        )
    repo_id, subset = spec.split(":", 1)
    folder = _hub_parquet_folder(repo_id, subset, split)
    shards = sorted((folder / subset / split).glob("*.parquet"))
    if not shards:
        raise HarnessError(
            f"dataset {repo_id} has no subset {subset!r} (no {subset}/{split}/*.parquet); check the subset name"
        )
    frames = []
    for shard in shards:
        try:
            frames.append(pd.read_parquet(shard))
        except Exception as exc:  # pyarrow raises several types for a bad file
            raise HarnessError(f"dataset shard {shard} is unreadable ({type(exc).__name__}: {exc})") from None
    return OfflineDataset.from_frame(pd.concat(frames, ignore_index=True))


@dataclass(frozen=True)
class Statistics:
    """State statistics for a checkpoint that carries none, and where they came from.

    Attributes:
        source: the dataset as given (``path.parquet`` or ``owner/name:subset``).
        state_mean: ``(state_dim,)`` float64 mean of every state of the dataset.
        state_std: ``(state_dim,)`` float64 std + 1e-6 (the tutorial's collator).
        dataset: the dataset's summary (for target grids and the data range in figures).
    """

    source: str
    state_mean: np.ndarray
    state_std: np.ndarray
    dataset: DatasetSummary


def statistics_from(spec: str, name: str | None = None) -> Statistics:
    """:class:`Statistics` of a dataset, computed as the tutorial's collator computes them.

    The collator stacks every observation of every trajectory and takes
    ``np.mean(states, axis=0)`` and ``np.std(states, axis=0) + 1e-6`` in float64.
    """
    data = load_source(spec)
    mean, std = data.state_stats()
    label = name or (Path(spec).stem if spec.endswith((".parquet", ".hdf5", ".h5")) else spec.split(":", 1)[-1])
    return Statistics(source=spec, state_mean=mean, state_std=std, dataset=data.summary(label))
