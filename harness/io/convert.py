"""Checkpoints of other Decision Transformer code bases, converted exactly into this project's format.

Two sources, both the same family as ``transformers.DecisionTransformerModel`` (pre-LN GPT blocks
over interleaved return / state / action tokens plus timestep embeddings, a tanh action head):

- **CORL** (``algorithms/offline/dt.py``): ``torch.save({"model_state", "state_mean", "state_std"})``
  (``dt_checkpoint.pt``), its ``config.yaml`` beside it where present. Its blocks are
  ``nn.MultiheadAttention`` (packed ``in_proj``, ``out_proj``) and a GELU MLP; its embeddings have
  no position embedding; ``timestep_emb`` has ``episode_len + seq_len`` rows; its causal mask buffer
  holds ``3 * seq_len``. It pads on the right and evaluates unpadded prefixes; the tutorial pads
  on the left with a mask: with causal attention, masked padding and no position embedding, both
  give the same action (``tests/test_convert.py`` checks both conventions).
- **The paper's code** (``gym/decision_transformer/models/decision_transformer.py``): a state dict
  whose ``transformer.*`` is GPT-2 without position embeddings; the rest is named as in
  ``transformers`` (its ancestor). It carries no statistics: pass the training data.

Loaded without executing code: ``torch.load(weights_only=True)`` with only numpy's array
reconstruction allowed (CORL stores its statistics as arrays); a pickle that wants anything else is
refused in one line. What the target format cannot express (``max_action`` other than 1, another
activation, a head without tanh) is refused with the reason.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import DecisionTransformerConfig, DecisionTransformerModel

from harness.core.errors import HarnessError
from harness.io.checkpoints import save_checkpoint
from harness.io.data import DatasetSummary

SOURCES = ("corl", "paper")


def _numpy_globals() -> list[Any]:
    """The globals a pickled numpy array needs (numpy 1.x and 2.x spellings)."""
    out: list[Any] = [np.ndarray, np.dtype]
    for mod in ("numpy._core.multiarray", "numpy.core.multiarray"):
        try:
            out.append(__import__(mod, fromlist=["_reconstruct"])._reconstruct)
        except (ImportError, AttributeError):
            pass
    out += [type(np.dtype(t)) for t in ("float32", "float64", "int64", "int32", "bool")]
    return out


def safe_load(path: Path) -> Any:
    """``torch.load`` that executes nothing: weights-only, numpy arrays allowed, anything else refused."""
    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unsupported global"
        raise HarnessError(
            f"{path} wants pickle globals beyond tensors and numpy arrays ({first[:160]}); refused without "
            "running it: save the state dict and statistics as plain tensors or arrays"
        ) from None
    except (OSError, RuntimeError, EOFError) as exc:
        raise HarnessError(f"{path} is not a readable torch checkpoint ({type(exc).__name__}: {exc})") from None


def _yaml(path: Path) -> dict[str, Any]:
    """CORL's ``config.yaml`` (flat ``key: value`` lines) without a YAML dependency."""
    out: dict[str, Any] = {}
    for line in path.read_text().splitlines():
        if ":" not in line or line.startswith((" ", "#", "-")):
            continue
        key, value = (x.strip() for x in line.split(":", 1))
        value = value.strip("'\"")
        for kind in (int, float):
            try:
                out[key] = kind(value)
                break
            except ValueError:
                continue
        else:
            out[key] = {"true": True, "false": False, "null": None}.get(value.lower(), value)
    return out


def _gpt2_config(state_dim: int, act_dim: int, hidden: int, layers: int, heads: int, max_ep_len: int, act: str):
    return DecisionTransformerConfig(
        state_dim=state_dim,
        act_dim=act_dim,
        hidden_size=hidden,
        n_layer=layers,
        n_head=heads,
        n_inner=4 * hidden,
        activation_function=act,
        max_ep_len=max_ep_len,
        action_tanh=True,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )


def corl_to_model(
    state: dict[str, torch.Tensor], heads: int, max_action: float = 1.0
) -> tuple[DecisionTransformerModel, int]:
    """A ``DecisionTransformerModel`` with CORL's weights; returns it and CORL's ``seq_len`` (K).

    Args:
        state: CORL's ``model_state`` (keys ``timestep_emb``, ``state_emb``, ``action_emb``,
            ``return_emb``, ``emb_norm``, ``blocks.i.{norm1,norm2,attention,mlp}``, ``out_norm``,
            ``action_head``).
        heads: attention heads (not recoverable from the weights: CORL's ``num_heads``).
        max_action: CORL scales the tanh by it; only 1 is expressible here.
    """
    if max_action != 1.0:
        raise HarnessError(
            f"this CORL checkpoint scales actions by max_action={max_action}; DecisionTransformerModel's head is a "
            "plain tanh, so it cannot be converted exactly (the MuJoCo tasks here use max_action 1)"
        )
    need = ["timestep_emb.weight", "state_emb.weight", "action_emb.weight", "return_emb.weight", "out_norm.weight"]
    missing = [k for k in need if k not in state]
    if missing or "action_head.0.weight" not in state:
        raise HarnessError(f"not a CORL DT state dict: lacks {', '.join(missing or ['action_head.0.weight'])}")
    hidden = state["state_emb.weight"].shape[0]
    layers = len({k.split(".")[1] for k in state if k.startswith("blocks.")})
    mask = next((v for k, v in state.items() if k.endswith("causal_mask")), None)
    if mask is None:
        raise HarnessError("the CORL state dict has no causal_mask buffer, so its seq_len (K) is unknown")
    seq_len = mask.shape[0] // 3
    if hidden % heads:
        raise HarnessError(f"num_heads={heads} does not divide the embedding size {hidden}; pass CORL's num_heads")
    cfg = _gpt2_config(
        state["state_emb.weight"].shape[1],
        state["action_emb.weight"].shape[1],
        hidden,
        layers,
        heads,
        state["timestep_emb.weight"].shape[0],
        "gelu",  # nn.GELU(): the exact erf form
    )
    model = DecisionTransformerModel(cfg).eval()
    new = {k: v.clone() for k, v in model.state_dict().items()}
    new["embed_timestep.weight"] = state["timestep_emb.weight"]
    for ours, theirs in (("embed_state", "state_emb"), ("embed_action", "action_emb"), ("embed_return", "return_emb")):
        new[f"{ours}.weight"], new[f"{ours}.bias"] = state[f"{theirs}.weight"], state[f"{theirs}.bias"]
    new["embed_ln.weight"], new["embed_ln.bias"] = state["emb_norm.weight"], state["emb_norm.bias"]
    new["encoder.wpe.weight"] = torch.zeros_like(new["encoder.wpe.weight"])  # CORL has no position embedding
    new["encoder.ln_f.weight"], new["encoder.ln_f.bias"] = state["out_norm.weight"], state["out_norm.bias"]
    for i in range(layers):
        b, h = f"blocks.{i}.", f"encoder.h.{i}."
        new[h + "ln_1.weight"], new[h + "ln_1.bias"] = state[b + "norm1.weight"], state[b + "norm1.bias"]
        new[h + "ln_2.weight"], new[h + "ln_2.bias"] = state[b + "norm2.weight"], state[b + "norm2.bias"]
        new[h + "attn.c_attn.weight"] = state[b + "attention.in_proj_weight"].t().contiguous()  # Conv1D: (in, out)
        new[h + "attn.c_attn.bias"] = state[b + "attention.in_proj_bias"]
        new[h + "attn.c_proj.weight"] = state[b + "attention.out_proj.weight"].t().contiguous()
        new[h + "attn.c_proj.bias"] = state[b + "attention.out_proj.bias"]
        new[h + "mlp.c_fc.weight"] = state[b + "mlp.0.weight"].t().contiguous()
        new[h + "mlp.c_fc.bias"] = state[b + "mlp.0.bias"]
        new[h + "mlp.c_proj.weight"] = state[b + "mlp.2.weight"].t().contiguous()
        new[h + "mlp.c_proj.bias"] = state[b + "mlp.2.bias"]
    new["predict_action.0.weight"], new["predict_action.0.bias"] = (
        state["action_head.0.weight"],
        state["action_head.0.bias"],
    )
    for k in ("predict_state.weight", "predict_state.bias", "predict_return.weight", "predict_return.bias"):
        new[k] = torch.zeros_like(new[k])  # CORL predicts actions only; these heads are unused here
    model.load_state_dict(new)
    return model, seq_len


def paper_to_model(
    state: dict[str, torch.Tensor], heads: int = 1, activation: str = "relu"
) -> DecisionTransformerModel:
    """A ``DecisionTransformerModel`` with the paper code's weights (its ``transformer.*`` is GPT-2
    without position embeddings: ``wpe`` is set to zeros; everything else keeps its name)."""
    if "embed_timestep.weight" not in state or not any(k.startswith("transformer.h.") for k in state):
        raise HarnessError(
            "not a state dict of the paper code's DecisionTransformer (no embed_timestep / transformer.h)"
        )
    if "predict_action.1.weight" in state or "predict_action.0.weight" not in state:
        raise HarnessError(
            "this checkpoint's action head is not Linear + Tanh (action_tanh=False); it cannot be converted"
        )
    hidden = state["embed_state.weight"].shape[0]
    layers = len({k.split(".")[2] for k in state if k.startswith("transformer.h.")})
    cfg = _gpt2_config(
        state["embed_state.weight"].shape[1],
        state["embed_action.weight"].shape[1],
        hidden,
        layers,
        heads,
        state["embed_timestep.weight"].shape[0],
        activation,
    )
    cfg.n_inner = state["transformer.h.0.mlp.c_fc.weight"].shape[1]
    model = DecisionTransformerModel(cfg).eval()
    new = {k: v.clone() for k, v in model.state_dict().items()}
    for k, v in state.items():
        if k.startswith("transformer.wte") or k.endswith((".attn.bias", ".attn.masked_bias")):
            continue  # unused token embedding; causal-mask buffers
        target = "encoder." + k[len("transformer.") :] if k.startswith("transformer.") else k
        if target not in new:
            raise HarnessError(f"the paper checkpoint has {k}, which DecisionTransformerModel cannot hold")
        new[target] = v
    new["encoder.wpe.weight"] = torch.zeros_like(new["encoder.wpe.weight"])
    model.load_state_dict(new)
    return model


def convert(
    source: str,
    path: str | Path,
    out: str | Path,
    env_id: str,
    *,
    heads: int | None = None,
    context_length: int = 20,
    activation: str = "relu",
    return_scale: float = 1000.0,
    statistics: tuple[np.ndarray, np.ndarray] | None = None,
    dataset: DatasetSummary | None = None,
) -> Path:
    """Convert ``path`` (a CORL ``dt_checkpoint.pt`` or a paper-code state dict) into a checkpoint folder.

    CORL: heads, K, the return scale and the env come from its ``config.yaml`` when it lies beside
    the file (``num_heads``, ``seq_len``, ``reward_scale``); the statistics from the checkpoint.
    Paper code: ``heads``, ``context_length``, ``activation`` as trained; ``statistics`` (state mean
    and std) from the training data.
    """
    path = Path(path)
    if source not in SOURCES:
        raise HarnessError(f"unknown source {source!r}; use one of: {', '.join(SOURCES)}")
    if not path.is_file():
        raise HarnessError(f"{path} does not exist; pass the checkpoint file to convert")
    blob = safe_load(path)
    if source == "corl":
        if not isinstance(blob, dict) or "model_state" not in blob:
            raise HarnessError(f"{path} is not a CORL DT checkpoint (a dict with model_state, state_mean, state_std)")
        yaml = _yaml(path.parent / "config.yaml") if (path.parent / "config.yaml").is_file() else {}
        heads = heads or yaml.get("num_heads")
        if heads is None:
            raise HarnessError(
                f"{path}: CORL's num_heads is not in the weights and there is no config.yaml; pass --heads"
            )
        model, k = corl_to_model(blob["model_state"], int(heads), float(yaml.get("max_action", 1.0)))
        if "seq_len" in yaml and int(yaml["seq_len"]) != k:
            raise HarnessError(f"config.yaml says seq_len {yaml['seq_len']} but the weights were built for {k}")
        mean = np.asarray(blob["state_mean"], np.float64).reshape(-1)
        std = np.asarray(blob["state_std"], np.float64).reshape(-1)
        scale = 1.0 / float(yaml["reward_scale"]) if "reward_scale" in yaml else return_scale
        return save_checkpoint(
            model,
            out,
            state_mean=mean,
            state_std=std,
            env_id=env_id,
            return_scale=scale,
            context_length=k,
            dataset=dataset,
        )
    state = blob.get("model_state", blob) if isinstance(blob, dict) else None
    if not isinstance(state, dict):
        raise HarnessError(f"{path} is not a state dict of the paper code's model")
    if statistics is None:
        raise HarnessError("the paper code's checkpoints carry no state statistics; pass the training data (--data)")
    model = paper_to_model(state, heads or 1, activation)
    return save_checkpoint(
        model,
        out,
        state_mean=statistics[0],
        state_std=statistics[1],
        env_id=env_id,
        return_scale=return_scale,
        context_length=context_length,
        dataset=dataset,
    )
