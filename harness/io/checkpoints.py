"""Decision Transformer checkpoints: loading (folder, Hub id, embedded name), metadata, saving.

A checkpoint is a folder that plain ``DecisionTransformerModel.from_pretrained`` loads
(``config.json`` + ``model.safetensors``). What evaluation needs beyond the model lives in the
same ``config.json`` as extra keys:

=================  ==========================================================================
key                meaning
=================  ==========================================================================
``state_mean``     list of ``state_dim`` floats: mean of the training states
``state_std``      list of ``state_dim`` floats: their std (already including any epsilon)
``return_scale``   float, default 1000: returns-to-go are fed to the model divided by it
``context_length`` int, default 20: timesteps in the model's context window (K)
``env_id``         str: the Gymnasium id the checkpoint was trained for (``Hopper-v4``)
``dataset``        optional summary of the training data (see :class:`DatasetSummary`)
=================  ==========================================================================

The nine published ``edbeeching/decision-transformer-gym-*`` checkpoints carry no statistics;
the package ships the table from their model cards and uses it for those Hub ids.

Weights are loaded without executing code: safetensors, or ``torch.load(weights_only=True)``
for a legacy ``pytorch_model.bin``. ``trust_remote_code`` is never used.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import pickle
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import DecisionTransformerConfig, DecisionTransformerModel

from harness.core.errors import HarnessError
from harness.io.data import DatasetSummary, Statistics
from harness.world.envs import FAMILIES, EnvSpec

DEFAULT_RETURN_SCALE = 1000.0
DEFAULT_CONTEXT_LENGTH = 20
EMBEDDED_DIR = Path(__file__).resolve().parents[1] / "embedded"
HUB_TABLE = Path(__file__).resolve().parents[1] / "resources" / "hub_checkpoints.json"
WEIGHTS_FILES = ("model.safetensors", "pytorch_model.bin")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# Buffers that old GPT-2 state dicts carry and current transformers no longer has.
_LEGACY_BUFFERS = (".attn.bias", ".attn.masked_bias")


@dataclass
class Checkpoint:
    """A loaded checkpoint: the model (eval mode) and its evaluation metadata.

    Attributes:
        model: the stock ``DecisionTransformerModel``.
        label: the name results use (embedded name, Hub id or folder as given).
        source: where it was loaded from (folder path or Hub id).
        state_mean: ``(state_dim,)`` float32.
        state_std: ``(state_dim,)`` float32, all > 0.
        return_scale: returns-to-go are divided by it.
        context_length: K, timesteps in the context window.
        env_id: Gymnasium id it was trained for, if recorded.
        env_name: short env name it was trained for (``hopper``), if known.
        dataset: training-data summary, if recorded.
        statistics: where ``state_mean``/``state_std`` came from: ``config.json``, ``published``
            (the Hub table) or ``data:<source>`` (computed from a dataset, ``--data``).
        train_step: the Trainer's global step of a ``checkpoint-N`` folder, else None.
    """

    model: DecisionTransformerModel
    label: str
    source: str
    state_mean: np.ndarray
    state_std: np.ndarray
    return_scale: float
    context_length: int
    env_id: str | None
    env_name: str | None
    dataset: DatasetSummary | None
    statistics: str = "config.json"
    train_step: int | None = None

    @property
    def state_dim(self) -> int:
        return int(self.model.config.state_dim)

    @property
    def act_dim(self) -> int:
        return int(self.model.config.act_dim)

    @property
    def max_ep_len(self) -> int:
        return int(self.model.config.max_ep_len)

    def fingerprint(self) -> str:
        """A short hash of everything that determines actions: weights, statistics, scale, K."""
        h = hashlib.sha256()
        for name, tensor in sorted(self.model.state_dict().items()):
            h.update(name.encode())
            h.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
        for arr in (self.state_mean, self.state_std):
            h.update(np.asarray(arr, dtype=np.float64).tobytes())
        h.update(f"{self.return_scale!r}/{self.context_length}".encode())
        return h.hexdigest()[:16]

    def describe(self) -> dict[str, Any]:
        """Metadata for ``metadata.json`` (no weights)."""
        cfg = self.model.config
        return {
            "label": self.label,
            "source": self.source,
            "env_id": self.env_id,
            "state_dim": self.state_dim,
            "act_dim": self.act_dim,
            "hidden_size": cfg.hidden_size,
            "n_layer": cfg.n_layer,
            "n_head": cfg.n_head,
            "max_ep_len": self.max_ep_len,
            "context_length": self.context_length,
            "return_scale": self.return_scale,
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "dataset": asdict(self.dataset) if self.dataset else None,
            "statistics": self.statistics,
            "train_step": self.train_step,
        }

    def check_env(self, env: EnvSpec) -> None:
        """Fail with a clear message if this checkpoint cannot drive ``env``."""
        if (self.state_dim, self.act_dim) != (env.state_dim, env.act_dim):
            raise HarnessError(
                f"checkpoint {self.label} has state size {self.state_dim} and action size "
                f"{self.act_dim} but {env.env_id} has {env.state_dim} and {env.act_dim}; "
                f"pass a checkpoint trained on {env.name}"
            )
        if self.env_name is not None and self.env_name != env.name:
            raise HarnessError(
                f"checkpoint {self.label} was trained on {self.env_id or self.env_name}, not "
                f"{env.name}; pass it as --checkpoint {self.env_name}=... or use a {env.name} checkpoint"
            )


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Mute transformers' notices (e.g. GPT-2's unused bos/eos token ids) for one call."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


@cache
def hub_table() -> dict[str, dict[str, Any]]:
    """Published statistics of the Hub checkpoints, keyed by Hub id."""
    table = json.loads(HUB_TABLE.read_text())
    return {k: v for k, v in table.items() if not k.startswith("_")}


def embedded_names() -> list[str]:
    """Names of the checkpoints shipped inside the package."""
    if not EMBEDDED_DIR.is_dir():
        return []
    return sorted(p.name for p in EMBEDDED_DIR.iterdir() if (p / "config.json").is_file())


def _download(hub_id: str) -> Path:
    """Fetch a Hub checkpoint's config and weights (cached by huggingface_hub)."""
    from huggingface_hub import snapshot_download

    try:
        folder = snapshot_download(hub_id, allow_patterns=["config.json", *WEIGHTS_FILES])
    except Exception as exc:  # network, auth, missing repo: all end the same way for the user
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise HarnessError(
            f"checkpoint {hub_id!r} is not a local folder and could not be fetched from the "
            f"Hugging Face Hub ({type(exc).__name__}: {first}); check the path or id and "
            "your connection"
        ) from None
    return Path(folder)


def resolve_source(spec: str) -> tuple[Path, str | None]:
    """Map a checkpoint spec to a local folder and, if it came from the Hub, the Hub id.

    Order: embedded name, existing local path, Hub id (``owner/name``).
    """
    if spec in embedded_names():
        return EMBEDDED_DIR / spec, None
    path = Path(spec).expanduser()
    if path.exists():
        if not path.is_dir():
            raise HarnessError(
                f"checkpoint {spec!r} is a file; pass the folder that holds config.json and model.safetensors"
            )
        return path, None
    looks_local = spec.startswith((".", "/", "~")) or spec.count("/") != 1
    if looks_local or not _HUB_ID.match(spec):
        names = ", ".join(embedded_names()) or "none yet"
        raise HarnessError(
            f"checkpoint folder {spec!r} does not exist; pass an existing folder, a Hugging Face "
            f"Hub id (owner/name) or an embedded name ({names})"
        )
    return _download(spec), spec


def _read_config(folder: Path, label: str) -> dict[str, Any]:
    path = folder / "config.json"
    if not path.is_file():
        raise HarnessError(
            f"checkpoint {label}: no config.json in {folder}; a checkpoint folder holds "
            "config.json and model.safetensors (see README, 'Checkpoint format')"
        )
    try:
        cfg = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise HarnessError(
            f"checkpoint {label}: {path} is not valid JSON ({exc}); restore or re-save the checkpoint"
        ) from None
    if not isinstance(cfg, dict):
        raise HarnessError(f"checkpoint {label}: {path} must hold a JSON object")
    if cfg.get("model_type") != "decision_transformer":
        raise HarnessError(
            f"checkpoint {label}: config.json has model_type {cfg.get('model_type')!r}, "
            "expected 'decision_transformer'; pass a DecisionTransformerModel checkpoint"
        )
    return cfg


def _read_weights(folder: Path, label: str) -> dict[str, torch.Tensor]:
    safetensors_path, bin_path = (folder / name for name in WEIGHTS_FILES)
    if safetensors_path.is_file():
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(safetensors_path, device="cpu")
        except (SafetensorError, OSError, ValueError) as exc:
            raise HarnessError(
                f"checkpoint {label}: {safetensors_path.name} is unreadable or truncated ({exc}); "
                "re-save or re-download the checkpoint"
            ) from None
    if bin_path.is_file():
        try:
            state = torch.load(bin_path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            first = str(exc).strip().splitlines()[0]
            raise HarnessError(
                f"checkpoint {label}: refused to load {bin_path.name}: it holds more than plain "
                f"tensors ({first}); convert it to model.safetensors from a trusted source"
            ) from None
        except (RuntimeError, EOFError, OSError) as exc:
            raise HarnessError(
                f"checkpoint {label}: {bin_path.name} is unreadable or truncated ({exc}); "
                "re-save or re-download the checkpoint"
            ) from None
        if not isinstance(state, dict):
            raise HarnessError(f"checkpoint {label}: {bin_path.name} does not hold a state dict")
        return state
    raise HarnessError(f"checkpoint {label}: no weights in {folder}; expected model.safetensors (or pytorch_model.bin)")


def _stats_vector(value: Any, key: str, dim: int, label: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError):
        raise HarnessError(f"checkpoint {label}: {key} must be a list of {dim} numbers") from None
    if arr.shape != (dim,):
        raise HarnessError(
            f"checkpoint {label}: {key} has {arr.size} values but the state size is {dim}; "
            f"store the {dim} per-dimension statistics of the training states"
        )
    if not np.all(np.isfinite(arr)):
        raise HarnessError(f"checkpoint {label}: {key} contains NaN or infinite values")
    return arr


def _positive(value: Any, key: str, label: str, kind: type) -> Any:
    try:
        out = kind(value)
    except (TypeError, ValueError):
        raise HarnessError(f"checkpoint {label}: {key} must be a positive number, got {value!r}") from None
    if not (math.isfinite(out) and out > 0):
        raise HarnessError(f"checkpoint {label}: {key} must be a positive number, got {value!r}")
    return out


def _model_config(cfg: dict[str, Any], label: str) -> DecisionTransformerConfig:
    """``config.json`` as a checked ``DecisionTransformerConfig``."""
    try:
        with _quiet_transformers():
            config = DecisionTransformerConfig.from_dict(cfg)
    except (TypeError, ValueError) as exc:
        raise HarnessError(
            f"checkpoint {label}: config.json is not a valid DecisionTransformerConfig ({exc})"
        ) from None
    for key in ("state_dim", "act_dim", "hidden_size", "n_layer", "max_ep_len"):
        _positive(getattr(config, key, None), key, label, int)
    return config


def _build_model(
    config: DecisionTransformerConfig, state: dict[str, torch.Tensor], label: str
) -> DecisionTransformerModel:
    """The model of ``config`` with ``state`` loaded, every tensor checked against it."""
    model = DecisionTransformerModel(config)
    expected = model.state_dict()
    state = {k: v for k, v in state.items() if k in expected or not k.endswith(_LEGACY_BUFFERS)}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(
        f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}"
        for k in set(state) & set(expected)
        if state[k].shape != expected[k].shape
    )
    if missing or unexpected or wrong:
        parts = []
        if wrong:
            parts.append(f"shapes differ from config.json: {', '.join(wrong[:3])}")
        if missing:
            parts.append(f"missing {len(missing)} tensors (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unknown tensors (e.g. {unexpected[0]})")
        raise HarnessError(
            f"checkpoint {label}: weights do not match config.json ({'; '.join(parts)}); "
            "use the config.json saved with these weights"
        )
    model.load_state_dict(state, strict=True)
    return model


def _state_statistics(
    cfg: dict[str, Any], published: dict[str, Any], state_dim: int, label: str, given: Statistics | None
) -> tuple[np.ndarray, np.ndarray, str]:
    """``(state_dim,)`` mean and std and where they came from: config.json, the Hub table or ``given``."""
    if "state_mean" in cfg or "state_std" in cfg:
        mean, std, origin = cfg.get("state_mean"), cfg.get("state_std"), "config.json"
    elif published:
        mean, std, origin = published.get("state_mean"), published.get("state_std"), "published"
    elif given is not None:
        mean, std, origin = given.state_mean, given.state_std, f"data:{given.source}"
    else:
        mean = std = None
        origin = ""
    if given is not None and not origin.startswith("data:"):
        raise HarnessError(
            f"checkpoint {label} already has state statistics ({origin}); --data is for checkpoints saved "
            "without them (e.g. by the tutorial's Trainer): drop --data for this env"
        )
    if mean is None or std is None:
        raise HarnessError(
            f"checkpoint {label} has no state statistics; pass the data it was trained on with --data "
            "ENV=path.parquet or ENV=owner/name:subset (statistics computed as the tutorial's collator does), "
            f"or add 'state_mean' and 'state_std' ({state_dim} numbers each) to its config.json"
        )
    state_mean = _stats_vector(mean, "state_mean", state_dim, label)
    state_std = _stats_vector(std, "state_std", state_dim, label)
    if np.any(state_std <= 0):
        raise HarnessError(f"checkpoint {label}: state_std must be > 0 in every dimension")
    return state_mean, state_std, origin


_STEP_DIR = re.compile(r"^checkpoint-(\d+)$")


def train_step(folder: Path) -> int | None:
    """The Trainer's global step of a checkpoint folder (``trainer_state.json``, else ``checkpoint-N``)."""
    state = folder / "trainer_state.json"
    if state.is_file():
        try:
            step = json.loads(state.read_text()).get("global_step")
            if isinstance(step, int):
                return step
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            pass
    m = _STEP_DIR.match(folder.name)
    return int(m.group(1)) if m else None


def expand_spec(spec: str) -> list[str]:
    """One checkpoint spec as the checkpoints it names, in training-step order.

    A glob (``run/trainer/checkpoint-*``) names the folders it matches; a folder without
    ``config.json`` that holds Trainer ``checkpoint-N`` folders names those; anything else names
    itself.

    Raises:
        HarnessError: a glob that matches no checkpoint folder.
    """
    if any(ch in spec for ch in "*?["):
        import glob

        found = [p for p in (Path(m) for m in glob.glob(str(Path(spec).expanduser()))) if (p / "config.json").is_file()]
        if not found:
            raise HarnessError(
                f"checkpoint pattern {spec!r} matches no checkpoint folder (config.json + weights); check the path"
            )
    else:
        path = Path(spec).expanduser()
        if not path.is_dir() or (path / "config.json").is_file():
            return [spec]
        found = [p for p in path.iterdir() if _STEP_DIR.match(p.name) and (p / "config.json").is_file()]
        if not found:
            return [spec]  # load_checkpoint names what is missing
    steps = {p: train_step(p) for p in found}
    found.sort(key=lambda p: (steps[p] is None, steps[p] or 0, str(p)))
    return [str(p) for p in found]


def load_checkpoint(
    spec: str | os.PathLike[str], device: str | torch.device = "cpu", statistics: Statistics | None = None
) -> Checkpoint:
    """Load a checkpoint from an embedded name, a local folder or a Hugging Face Hub id.

    Args:
        spec: ``hopper`` (embedded), ``path/to/folder`` (a string or a path) or ``owner/name`` on the Hub.
        device: where the model lives.
        statistics: state statistics for a checkpoint saved without them (the tutorial's
            Trainer output); refused for one that has its own.

    Returns:
        The model in eval mode with its metadata.

    Raises:
        HarnessError: the folder is missing or malformed, weights are unreadable or do not
            match the config, or statistics are missing or have the wrong length.
    """
    spec = os.fspath(spec)
    label = spec.rstrip("/") or spec
    folder, hub_id = resolve_source(spec)
    cfg = _read_config(folder, label)
    config = _model_config(cfg, label)
    model = _build_model(config, _read_weights(folder, label), label)
    model.to(device).eval()
    published = hub_table().get(hub_id or "", {})
    env_name = published.get("env")
    state_mean, state_std, origin = _state_statistics(cfg, published, model.config.state_dim, label, statistics)
    env_id = cfg.get("env_id")
    if env_id is not None:
        base = str(env_id).split("-")[0].lower()
        env_name = base if base in FAMILIES else env_name
    dataset = cfg.get("dataset")
    summary = DatasetSummary.from_dict(dataset, f"checkpoint {label}") if dataset is not None else None
    if summary is None and statistics is not None:
        summary = statistics.dataset
    return Checkpoint(
        model=model,
        label=label,
        source=hub_id or str(folder),
        state_mean=state_mean,
        state_std=state_std,
        return_scale=float(_positive(cfg.get("return_scale", DEFAULT_RETURN_SCALE), "return_scale", label, float)),
        context_length=int(_positive(cfg.get("context_length", DEFAULT_CONTEXT_LENGTH), "context_length", label, int)),
        env_id=str(env_id) if env_id is not None else None,
        env_name=env_name,
        dataset=summary,
        statistics=origin,
        train_step=train_step(folder) if hub_id is None else None,
    )


def evaluation_metadata(
    config: DecisionTransformerConfig,
    state_mean: np.ndarray,
    state_std: np.ndarray,
    env_id: str,
    return_scale: float = DEFAULT_RETURN_SCALE,
    context_length: int = DEFAULT_CONTEXT_LENGTH,
    dataset: DatasetSummary | None = None,
) -> DecisionTransformerConfig:
    """Write what :func:`load_checkpoint` reads besides the weights into ``config``, in place.

    ``state_mean``/``state_std``: ``(state_dim,)``. A model saved with this config (by
    :func:`save_checkpoint` or by the Trainer's own checkpoints) loads with its statistics.
    """
    dim = int(config.state_dim)
    mean = np.asarray(state_mean, dtype=np.float64).reshape(-1)
    std = np.asarray(state_std, dtype=np.float64).reshape(-1)
    if mean.shape != (dim,) or std.shape != (dim,):
        raise HarnessError(f"state_mean and state_std must have shape ({dim},), got {mean.shape} and {std.shape}")
    config.state_mean = [float(x) for x in mean]
    config.state_std = [float(x) for x in std]
    config.return_scale = float(return_scale)
    config.context_length = int(context_length)
    config.env_id = env_id
    if dataset is not None:
        config.dataset = asdict(dataset)
    elif hasattr(config, "dataset"):
        del config.dataset
    return config


def save_checkpoint(
    model: DecisionTransformerModel,
    folder: str | Path,
    *,
    state_mean: np.ndarray,
    state_std: np.ndarray,
    env_id: str,
    return_scale: float = DEFAULT_RETURN_SCALE,
    context_length: int = DEFAULT_CONTEXT_LENGTH,
    dataset: DatasetSummary | None = None,
) -> Path:
    """Write ``model`` and its evaluation metadata as a checkpoint folder.

    Args:
        model: a ``DecisionTransformerModel``.
        folder: created if needed; an existing config.json/model.safetensors is replaced.
        state_mean: ``(state_dim,)`` mean of the training states.
        state_std: ``(state_dim,)`` their std (include any epsilon you normalise with).
        env_id: Gymnasium id the model was trained for.
        return_scale: returns-to-go are divided by it.
        context_length: K.
        dataset: training-data summary.

    Returns:
        The folder, loadable by :func:`load_checkpoint` and by
        ``DecisionTransformerModel.from_pretrained``.
    """
    config = copy.deepcopy(model.config)  # the caller's model is left as it was
    evaluation_metadata(config, state_mean, state_std, env_id, return_scale, context_length, dataset)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    original = model.config
    model.config = config
    try:
        with _quiet_transformers():
            model.save_pretrained(folder)
    finally:
        model.config = original
    return folder
