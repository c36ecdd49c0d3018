"""Checkpoints of CORL and of the paper's code convert exactly.

The tests carry their own minimal implementation of each source architecture, written from the
descriptions in those code bases: CORL's ``DecisionTransformer`` (``nn.MultiheadAttention`` blocks,
GELU MLP, no position embedding, right padding with a key-padding mask in training and unpadded
prefixes at evaluation) and the paper's (GPT-2 blocks without position embeddings, left padding with
an attention mask, as the tutorial). Checkpoints are made from them with random weights, saved as
each code base saves them, converted with ``harness convert`` and compared action for action.
"""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch
from torch import nn

from harness.commands import convert as convert_cli
from harness.core.errors import HarnessError
from harness.engine.context import Window
from harness.engine.policy import DTPolicy
from harness.engine.rollout import EpisodeSpec, run_episodes
from harness.io.checkpoints import load_checkpoint

STATE, ACT = 11, 3


# --- CORL (algorithms/offline/dt.py), minimal ------------------------------------------------------
class CorlBlock(nn.Module):
    def __init__(self, seq_len: int, dim: int, heads: int) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.drop = nn.Dropout(0.0)
        self.attention = nn.MultiheadAttention(dim, heads, 0.0, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim), nn.Dropout(0.0))
        self.register_buffer("causal_mask", ~torch.tril(torch.ones(seq_len, seq_len)).to(bool))

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        causal = self.causal_mask[: x.shape[1], : x.shape[1]]
        h = self.norm1(x)
        x = x + self.drop(
            self.attention(h, h, h, attn_mask=causal, key_padding_mask=padding_mask, need_weights=False)[0]
        )
        return x + self.mlp(self.norm2(x))


class CorlDT(nn.Module):
    def __init__(self, seq_len=8, episode_len=1000, dim=32, layers=2, heads=2, max_action=1.0) -> None:
        super().__init__()
        self.emb_norm, self.out_norm = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.timestep_emb = nn.Embedding(episode_len + seq_len, dim)
        self.state_emb, self.action_emb, self.return_emb = nn.Linear(STATE, dim), nn.Linear(ACT, dim), nn.Linear(1, dim)
        self.blocks = nn.ModuleList([CorlBlock(3 * seq_len, dim, heads) for _ in range(layers)])
        self.action_head = nn.Sequential(nn.Linear(dim, ACT), nn.Tanh())
        self.seq_len, self.max_action = seq_len, max_action

    def forward(self, states, actions, returns_to_go, time_steps, padding_mask=None):  # noqa: ANN001, ANN201
        b, t = states.shape[:2]
        time = self.timestep_emb(time_steps)
        seq = (
            torch.stack(
                [
                    self.return_emb(returns_to_go.unsqueeze(-1)) + time,
                    self.state_emb(states) + time,
                    self.action_emb(actions) + time,
                ],
                dim=1,
            )
            .permute(0, 2, 1, 3)
            .reshape(b, 3 * t, -1)
        )
        if padding_mask is not None:
            padding_mask = torch.stack([padding_mask] * 3, dim=1).permute(0, 2, 1).reshape(b, 3 * t)
        out = self.emb_norm(seq)
        for block in self.blocks:
            out = block(out, padding_mask=padding_mask)
        return self.action_head(self.out_norm(out)[:, 1::3]) * self.max_action


# --- the paper's code (gym/decision_transformer/models), minimal ------------------------------------
class PaperBlock(nn.Module):
    """GPT-2's block: weights as Conv1D (in, out), pre-LN, causal attention with an additive mask."""

    def __init__(self, dim: int, heads: int, n_ctx: int) -> None:
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = nn.Module()
        self.attn.c_attn_w, self.attn.c_attn_b = (
            nn.Parameter(torch.randn(dim, 3 * dim) * 0.1),
            nn.Parameter(torch.randn(3 * dim) * 0.1),
        )
        self.attn.c_proj_w, self.attn.c_proj_b = (
            nn.Parameter(torch.randn(dim, dim) * 0.1),
            nn.Parameter(torch.randn(dim) * 0.1),
        )
        self.mlp_fc_w, self.mlp_fc_b = (
            nn.Parameter(torch.randn(dim, 4 * dim) * 0.1),
            nn.Parameter(torch.randn(4 * dim) * 0.1),
        )
        self.mlp_proj_w, self.mlp_proj_b = (
            nn.Parameter(torch.randn(4 * dim, dim) * 0.1),
            nn.Parameter(torch.randn(dim) * 0.1),
        )
        self.heads = heads
        self.register_buffer("bias", torch.tril(torch.ones(n_ctx, n_ctx)).view(1, 1, n_ctx, n_ctx))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = (self.ln_1(x) @ self.attn.c_attn_w + self.attn.c_attn_b).split(d, dim=2)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        w = q @ k.transpose(-1, -2) / math.sqrt(d // self.heads)
        w = torch.where(self.bias[:, :, :t, :t].bool(), w, torch.tensor(-1e4)) + (1.0 - mask[:, None, None, :]) * -1e4
        a = (w.softmax(-1) @ v).transpose(1, 2).reshape(b, t, d)
        x = x + a @ self.attn.c_proj_w + self.attn.c_proj_b
        return x + torch.relu(self.ln_2(x) @ self.mlp_fc_w + self.mlp_fc_b) @ self.mlp_proj_w + self.mlp_proj_b

    def to_state(self, prefix: str) -> dict[str, torch.Tensor]:
        """The names the paper's GPT-2 (transformers 3.x layout) saves."""
        return {
            prefix + "ln_1.weight": self.ln_1.weight, prefix + "ln_1.bias": self.ln_1.bias,
            prefix + "attn.bias": self.bias, prefix + "attn.masked_bias": torch.tensor(-1e4),
            prefix + "attn.c_attn.weight": self.attn.c_attn_w, prefix + "attn.c_attn.bias": self.attn.c_attn_b,
            prefix + "attn.c_proj.weight": self.attn.c_proj_w, prefix + "attn.c_proj.bias": self.attn.c_proj_b,
            prefix + "ln_2.weight": self.ln_2.weight, prefix + "ln_2.bias": self.ln_2.bias,
            prefix + "mlp.c_fc.weight": self.mlp_fc_w, prefix + "mlp.c_fc.bias": self.mlp_fc_b,
            prefix + "mlp.c_proj.weight": self.mlp_proj_w, prefix + "mlp.c_proj.bias": self.mlp_proj_b,
        }  # fmt: skip


class PaperDT(nn.Module):
    def __init__(self, dim=32, layers=2, heads=1, max_ep_len=1000) -> None:
        super().__init__()
        self.embed_timestep = nn.Embedding(max_ep_len, dim)
        self.embed_return, self.embed_state, self.embed_action = (
            nn.Linear(1, dim),
            nn.Linear(STATE, dim),
            nn.Linear(ACT, dim),
        )
        self.embed_ln, self.ln_f = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.wte = nn.Embedding(1, dim)
        self.blocks = nn.ModuleList([PaperBlock(dim, heads, 1024) for _ in range(layers)])
        for p in [*self.embed_ln.parameters(), *self.ln_f.parameters()]:
            nn.init.normal_(p, 1.0 if p.dim() == 1 and p is self.embed_ln.weight else 0.0, 0.1)
        self.predict_state, self.predict_return = nn.Linear(dim, STATE), nn.Linear(dim, 1)
        self.predict_action = nn.Sequential(nn.Linear(dim, ACT), nn.Tanh())

    def forward(self, states, actions, returns_to_go, timesteps, attention_mask):  # noqa: ANN001, ANN201
        b, t = states.shape[:2]
        time = self.embed_timestep(timesteps)
        x = (
            torch.stack(
                [
                    self.embed_return(returns_to_go) + time,
                    self.embed_state(states) + time,
                    self.embed_action(actions) + time,
                ],
                dim=1,
            )
            .permute(0, 2, 1, 3)
            .reshape(b, 3 * t, -1)
        )
        x = self.embed_ln(x)
        mask = torch.stack([attention_mask] * 3, dim=1).permute(0, 2, 1).reshape(b, 3 * t).float()
        for block in self.blocks:
            x = block(x, mask)
        x = self.ln_f(x).reshape(b, t, 3, -1).permute(0, 2, 1, 3)
        return self.predict_action(x[:, 1])[:, -1]

    def paper_state_dict(self) -> dict[str, torch.Tensor]:
        out = {k: v for k, v in self.state_dict().items() if not k.startswith(("blocks.", "wte.", "ln_f."))}
        out["transformer.wte.weight"] = self.wte.weight
        out["transformer.ln_f.weight"], out["transformer.ln_f.bias"] = self.ln_f.weight, self.ln_f.bias
        for i, block in enumerate(self.blocks):
            out |= block.to_state(f"transformer.h.{i}.")
        return {k: v.detach().clone() for k, v in out.items()}


# --- helpers --------------------------------------------------------------------------------------
def windows(n: int, k: int, seed: int = 0) -> Window:
    """Left-padded random windows (the tutorial's convention), with the newest action 0."""
    g = torch.Generator().manual_seed(seed)
    pad = torch.randint(0, k, (n,), generator=g)
    pad[0] = 0
    mask = (torch.arange(k)[None, :] >= pad[:, None]).long()
    m3 = mask[..., None].float()
    actions = torch.rand(n, k, ACT, generator=g) * 2 - 1
    actions[:, -1] = 0
    steps = ((torch.randint(0, 900, (n, 1), generator=g) + torch.arange(k)) * mask).long()
    return Window(
        torch.randn(n, k, STATE, generator=g) * m3, actions * m3, torch.rand(n, k, 1, generator=g) * 4 * m3, steps, mask
    )


def corl_actions_unpadded(model: CorlDT, w: Window) -> torch.Tensor:
    """CORL's evaluation: each window without its padding (an unpadded prefix), the last action."""
    out = []
    with torch.inference_mode():
        for i in range(w.timesteps.shape[0]):
            keep = w.attention_mask[i].bool()
            s, a, r, t = (x[i][keep][None] for x in (w.states, w.actions, w.returns_to_go[..., 0], w.timesteps))
            out.append(model(s, a, r, t)[0, -1])
    return torch.stack(out)


def corl_actions_right_padded(model: CorlDT, w: Window) -> torch.Tensor:
    """CORL's training convention: real steps first, padding on the right with a key-padding mask."""
    n, k = w.timesteps.shape
    lengths = w.attention_mask.sum(1)
    order = torch.argsort(1 - w.attention_mask, dim=1, stable=True)  # real steps first, in order
    s, a, r, t = (
        torch.gather(x, 1, order.view(n, k, *([1] * (x.dim() - 2))).expand_as(x))
        for x in (w.states, w.actions, w.returns_to_go[..., 0], w.timesteps)
    )
    pad = torch.arange(k)[None, :] >= lengths[:, None]
    with torch.inference_mode():
        out = model(s, a, r, t, padding_mask=pad)
    return out[torch.arange(n), lengths - 1]


def save_corl(tmp_path, model: CorlDT, heads: int, yaml: bool = True, max_action: float = 1.0):
    folder = tmp_path / "corl"
    folder.mkdir(exist_ok=True)
    mean = np.random.default_rng(0).normal(size=(1, STATE)).astype(np.float32)
    std = np.random.default_rng(1).uniform(0.5, 2, size=(1, STATE)).astype(np.float32)
    torch.save({"model_state": model.state_dict(), "state_mean": mean, "state_std": std}, folder / "dt_checkpoint.pt")
    if yaml:
        (folder / "config.yaml").write_text(
            f"env_name: hopper-medium-v2\nnum_heads: {heads}\nseq_len: {model.seq_len}\nreward_scale: 0.001\n"
            f"max_action: {max_action}\nembedding_dim: 32\n"
        )
    return folder / "dt_checkpoint.pt", mean, std


# --- tests ----------------------------------------------------------------------------------------
def test_corl_converts_exactly_in_both_padding_conventions(tmp_path):
    torch.manual_seed(0)
    src = CorlDT(seq_len=8, heads=2).eval()
    path, mean, std = save_corl(tmp_path, src, heads=2)
    assert convert_cli.main(["corl", str(path), "--env", "hopper", "--out", str(tmp_path / "out")]) == 0
    ckpt = load_checkpoint(str(tmp_path / "out"))
    assert (ckpt.context_length, ckpt.return_scale, ckpt.env_id) == (8, 1000.0, "Hopper-v4")
    np.testing.assert_array_equal(ckpt.state_std, std.reshape(-1).astype(np.float64))
    w = windows(40, 8)
    for fast in (True, False):
        ours = DTPolicy(ckpt, fast=fast).act(w)
        assert (ours - corl_actions_unpadded(src, w)).abs().max() < 1e-5
        assert (ours - corl_actions_right_padded(src, w)).abs().max() < 1e-5


def test_paper_code_converts_exactly(tmp_path):
    torch.manual_seed(1)
    src = PaperDT(heads=2).eval()
    path = tmp_path / "dt_hopper.pt"
    torch.save(src.paper_state_dict(), path)
    data = tmp_path / "d.parquet"
    from harness.io.data import OfflineDataset

    rng = np.random.default_rng(0)
    OfflineDataset.from_trajectories(
        [
            dict(
                observations=rng.normal(size=(30, STATE)),
                actions=rng.uniform(-1, 1, (30, ACT)),
                rewards=np.ones(30),
                dones=np.r_[np.zeros(29), 1],
            )
        ]
        * 3
    ).to_parquet(data)
    argv = ["paper", str(path), "--env", "hopper", "--heads", "2", "--context-length", "8", "--data", str(data)]
    assert convert_cli.main([*argv, "--out", str(tmp_path / "out")]) == 0
    ckpt = load_checkpoint(str(tmp_path / "out"))
    w = windows(40, 8, seed=3)
    with torch.inference_mode():
        theirs = src(w.states, w.actions, w.returns_to_go, w.timesteps, w.attention_mask)
    for fast in (True, False):
        assert (DTPolicy(ckpt, fast=fast).act(w) - theirs).abs().max() < 1e-5


class _Compare(DTPolicy):
    """Acts with the converted checkpoint and records the gap to the source model on every window."""

    def __init__(self, ckpt, source) -> None:  # noqa: ANN001
        super().__init__(ckpt)
        self.source, self.gap, self.calls = source, 0.0, 0

    def act(self, window, rows=None, raw=False):  # noqa: ANN001, ANN201
        out = super().act(window, rows, raw)
        w = window if rows is None else Window(*(t.index_select(0, rows) for t in window))
        self.gap = max(self.gap, float((out - self.source(w)).abs().max()))
        self.calls += 1
        return out


def test_converted_corl_along_whole_episodes(tmp_path):
    """Every window a real rollout meets (padding, refills, clamped steps): the converted model acts
    as CORL's own evaluation does on the unpadded prefix, within 1e-5."""
    torch.manual_seed(2)
    src = CorlDT(seq_len=6, heads=2).eval()
    path, _, _ = save_corl(tmp_path, src, heads=2)
    assert convert_cli.main(["corl", str(path), "--env", "hopper", "--out", str(tmp_path / "out")]) == 0
    policy = _Compare(load_checkpoint(str(tmp_path / "out")), lambda w: corl_actions_unpadded(src, w))
    eps = [EpisodeSpec(t, 10 + i, i) for i, t in enumerate([300.0, 1500.0, 3000.0, 800.0, 2200.0])]
    run_episodes(policy, "Hopper-v4", eps, num_envs=3, max_episode_steps=60)
    assert policy.calls > 20 and policy.gap < 1e-5


def test_what_cannot_be_expressed_is_refused(tmp_path, capsys):
    torch.manual_seed(0)
    path, _, _ = save_corl(tmp_path, CorlDT(heads=2), heads=2, max_action=2.0)
    assert convert_cli.main(["corl", str(path), "--env", "hopper", "--out", str(tmp_path / "o1")]) == 2
    err = capsys.readouterr().err
    assert "max_action=2.0" in err and err.count("\n") == 1 and not (tmp_path / "o1").exists()
    path, _, _ = save_corl(tmp_path, CorlDT(heads=2), heads=2, yaml=False)
    (tmp_path / "corl" / "config.yaml").unlink()
    assert convert_cli.main(["corl", str(path), "--env", "hopper", "--out", str(tmp_path / "o2")]) == 2
    assert "pass --heads" in capsys.readouterr().err


class _Boom:
    def __reduce__(self):  # noqa: ANN204
        return (print, ("executed",))


def test_a_pickle_that_wants_more_is_refused_and_runs_nothing(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as fh:
        pickle.dump({"model_state": {}, "state_mean": _Boom(), "state_std": None}, fh)
    assert convert_cli.main(["corl", str(path), "--env", "hopper", "--heads", "1", "--out", str(tmp_path / "o")]) == 2
    captured = capsys.readouterr()
    assert "executed" not in captured.out and "refused without running it" in captured.err
    with pytest.raises(HarnessError):
        from harness.io.convert import safe_load

        safe_load(path)
