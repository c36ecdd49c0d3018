"""An exact, cheaper forward pass of a stock ``DecisionTransformerModel`` for acting.

Acting needs one vector per slot: the action predicted at the newest state token. The stock
forward computes far more: all ``3K`` tokens in every layer, the state and return heads, and the
newest action token (a zero placeholder that no state token attends to). This module computes
the same action from the same weights with less work:

- ``3K - 1`` tokens: the trailing placeholder action token is dropped (causal attention: no
  earlier token sees it);
- the last layer only for the newest state token: keys and values are still computed for every
  token, but the query, attention output, MLP and final layer norm for one token only;
- the action head for one token; no state or return heads;
- tokens laid out by kind (all returns, all states, all actions) so that every buffer is
  contiguous; the stock model has no positional information but the timestep embeddings (its
  GPT-2 position ids are all 0), so token order in memory only matters through the causal
  mask, which is built for the interleaved order ``R_1, s_1, a_1, R_2, ...``;
- residual updates, biases and activations in place into buffers kept between calls (one set
  per batch size): per-step allocation and page faults were a third of the time before.

Results equal the stock forward up to float rounding (``tests/test_fast.py``: within 1e-5 on
random padded windows and along whole episodes).

Batch invariance by construction: every kernel runs on a block of exactly ``block`` windows (the
policy's default: 16 in fp32, 64 in bf16 on CPU, 256 on CUDA), the last block padded by
repeating its last window. No matrix multiply, attention or layer norm ever sees a shape that
depends on how many windows share the call, so the library's choice of kernel, tiling and
reduction order for a window's rows is the same whether it is acted for alone or among 500
others. (The hazard is real: BLAS libraries take other paths for small M — MKL's rounding for M
= 1..3 differs from M >= 4 on AMD EPYC, and cuBLAS picks kernels and split-K by shape.) Blocks
alone are not enough: a row's rounding can also depend on its position inside a fixed-shape
GEMM (on AMD EPYC with AVX-512, MKL rounds odd rows of a block differently), which
no layout of ours can rule out when a BLAS computes the products. Under pinned numerics
(:mod:`harness.core.numerics`) they are not the BLAS's: ``products="fixed"`` runs every matrix
product as :mod:`harness.kernels.fixedgemm`'s fixed-order FMA chain, every layer norm and the
attention (scores, scale, mask, softmax, weighted sum, one window's head at a time) as its
fixed-order kernels, exact by construction on every CPU; the layer norms before the q/k/v product
and the MLP are fused into those kernels by row block. What is left to torch (the timestep
lookup, additions) is exact element by element on every CPU; the action head's tanh is the
kernel's too (torch's CPU tanh is MKL's VML, whose bits differ between Intel and AMD).
``tests/test_fast.py`` checks every batch size and row position, and ``batch_invariant``
re-checks every position of a block at start-up on the machine that runs the sweep. With the
fixed-order products no padding is needed: a row's bits are the kernel's definition whatever its
M, and the kernels left to torch (element-wise) work element by element, so
``block`` windows are only a chunk size there (16 by default: the policy's) and the last chunk
runs as it is (one window alone costs one window).

``dtype=torch.bfloat16`` runs the whole stack on a bf16 copy of the weights (embeddings in
fp32, then cast): faster on CPUs with bf16 matrix units, not exact (``--precision bf16``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import torch
import torch.nn.functional as F
from transformers import DecisionTransformerModel

from harness.core import numerics
from harness.engine.context import Window
from harness.kernels import fixedgemm


class _Layer:
    """One GPT-2 block's parameters in the layout the fast path multiplies with.

    transformers' ``Conv1D`` stores its weight as ``(in, out)``: ``y = x @ W + b``.
    """

    def __init__(self, block: torch.nn.Module, dtype: torch.dtype) -> None:
        attn, mlp = block.attn, block.mlp
        h = int(attn.embed_dim)

        def cast(t: torch.Tensor) -> torch.Tensor:
            return t.detach().to(dtype).contiguous()

        self.ln_1 = (cast(block.ln_1.weight), cast(block.ln_1.bias), float(block.ln_1.eps))
        self.ln_2 = (cast(block.ln_2.weight), cast(block.ln_2.bias), float(block.ln_2.eps))
        w, bias = attn.c_attn.weight, attn.c_attn.bias  # (h, 3h), (3h,): query, key, value
        self.qkv = [(cast(w[:, i * h : (i + 1) * h]), cast(bias[i * h : (i + 1) * h])) for i in range(3)]
        self.w_qkv, self.b_qkv = cast(w), cast(bias)  # (h, 3h), (3h,): the fixed-order path's one product
        self.w_kv, self.b_kv = cast(w[:, h:]), cast(bias[h:])  # (h, 2h): keys and values of the last layer
        self.w_o, self.b_o = cast(attn.c_proj.weight), cast(attn.c_proj.bias)  # (h, h)
        self.w_fc, self.b_fc = cast(mlp.c_fc.weight), cast(mlp.c_fc.bias)  # (h, inner)
        self.w_proj, self.b_proj = cast(mlp.c_proj.weight), cast(mlp.c_proj.bias)  # (inner, h)
        self.act = mlp.act
        self.relu = isinstance(mlp.act, torch.nn.ReLU)
        self.scaling = _attention_scale(attn)
        self.heads = int(attn.num_heads)
        self.hidden = h

    def act_(self, x: torch.Tensor) -> torch.Tensor:
        """The MLP activation, in place when it is ReLU."""
        return x.relu_() if self.relu else self.act(x)


def _attention_scale(attn: torch.nn.Module) -> float:
    """The factor GPT-2 multiplies attention scores by, whatever the transformers version.

    Recent versions store it (``attn.scaling``); older ones (4.40) apply ``1 / sqrt(head_dim)``
    when ``scale_attn_weights`` and ``1 / (layer_idx + 1)`` when ``scale_attn_by_inverse_layer_idx``.
    """
    scaling = getattr(attn, "scaling", None)
    if scaling is not None:
        return float(scaling)
    scale = float(attn.head_dim) ** -0.5 if attn.scale_attn_weights else 1.0
    if getattr(attn, "scale_attn_by_inverse_layer_idx", False):
        scale /= float(attn.layer_idx + 1)
    return scale


def _heads(x: torch.Tensor, n: int, heads: int) -> torch.Tensor:
    """``(n * t, h)`` → ``(n, heads, t, h / heads)`` (a view when there is one head)."""
    return x.view(n, -1, heads, x.shape[-1] // heads).transpose(1, 2)


def _merge(x: torch.Tensor) -> torch.Tensor:
    """``(n, heads, t, d)`` → ``(n * t, heads * d)``."""
    n, heads, t, d = x.shape
    return x.reshape(n * t, d) if heads == 1 else x.transpose(1, 2).reshape(n * t, heads * d)


def _ln(x: torch.Tensor, p: tuple[torch.Tensor, torch.Tensor, float]) -> torch.Tensor:
    return F.layer_norm(x, x.shape[-1:], p[0], p[1], p[2])


def _ln_fixed(
    x: torch.Tensor, p: tuple[torch.Tensor, torch.Tensor, float], out: torch.Tensor | None = None
) -> torch.Tensor:
    """:func:`_ln` as :func:`harness.kernels.fixedgemm.layer_norm` (fixed order: the same bits on every CPU)."""
    return fixedgemm.layer_norm(x, p[0], p[1], p[2], out=out)


class FastActionHead:
    """Action at the newest state token of every window, from a stock model's weights.

    Args:
        model: a ``DecisionTransformerModel`` in eval mode. Its embeddings are used in place;
            the block weights are copied once into the layout above (a few MB).
        dtype: ``torch.float32`` (exact) or ``torch.bfloat16``.
        block: windows per kernel call. Every call is exactly this many windows (the last block
            padded by repetition), which makes each window's action independent of its batch.
            None runs the whole batch in one pass (shapes then depend on the batch: faster on
            some hardware, not batch invariant; kept for measuring what invariance costs).
        products: ``fixed`` runs every matrix product (embeddings, projections, MLP, attention
            scores and weighted sums, action head) as :mod:`harness.kernels.fixedgemm`'s fixed-order
            chain: the same bits on every CPU (fp32 on CPU only); ``torch`` uses torch's
            ``addmm`` and ``scaled_dot_product_attention`` (MKL / oneDNN / cuBLAS); None (default)
            takes ``fixed`` where :func:`default_products` says so.
    """

    def __init__(
        self,
        model: DecisionTransformerModel,
        dtype: torch.dtype = torch.float32,
        block: int | None = 16,
        products: str | None = None,
    ) -> None:
        cfg = model.config
        if getattr(cfg, "add_cross_attention", False):
            raise ValueError("the fast path does not support cross-attention models")
        if dtype not in (torch.float32, torch.bfloat16):
            raise ValueError(f"dtype must be float32 or bfloat16, got {dtype}")
        self.model = model
        self.dtype = dtype
        if block is not None and block < 1:
            raise ValueError(f"block must be a positive number of windows or None, got {block}")
        self.block = block
        device = next(model.parameters()).device
        self.products = products if products is not None else default_products(dtype, device)
        if self.products not in ("fixed", "torch"):
            raise ValueError(f"products must be fixed or torch, got {self.products!r}")
        if self.products == "fixed" and (dtype != torch.float32 or device.type != "cpu"):
            raise ValueError(f"fixed-order products are fp32 on CPU only, got {dtype} on {device}")
        if self.products == "fixed" and fixedgemm.library() is None:
            raise RuntimeError(fixedgemm.unavailable() or "fixed-order kernel unavailable")
        enc = model.encoder
        self.layers = [_Layer(b, dtype) for b in enc.h]
        self.pos0 = enc.wpe.weight[0].detach()  # every stock token has position id 0: (h,)
        self.ln_f = (enc.ln_f.weight.detach().to(dtype), enc.ln_f.bias.detach().to(dtype), float(enc.ln_f.eps))
        self.embed_ln = model.embed_ln
        self.embed_timestep = model.embed_timestep
        self.embed_state = model.embed_state
        self.embed_action = model.embed_action
        self.embed_return = model.embed_return
        head = model.predict_action  # Sequential(Linear, Tanh?) or Linear
        linear = head[0] if isinstance(head, torch.nn.Sequential) else head
        self.w_act = linear.weight.detach().t().to(dtype).contiguous()  # (h, act_dim)
        self.b_act = linear.bias.detach().to(dtype)
        self.tanh = isinstance(head, torch.nn.Sequential) and any(isinstance(m, torch.nn.Tanh) for m in head)
        # the embeddings' weights as (in, out) views for the fixed-order path
        self.embeds: dict[str, tuple[fixedgemm.Packed, torch.Tensor]] = {}
        self.packed: list[dict[str, fixedgemm.Packed]] = []
        if self.products == "fixed":  # weights packed once into the kernel's panels
            embeds = (("return", model.embed_return), ("state", model.embed_state), ("action", model.embed_action))
            self.embeds = {
                name: (fixedgemm.Packed(lin.weight.detach().t().contiguous()), lin.bias.detach().contiguous())
                for name, lin in embeds
            }
            self.packed = [
                {name: fixedgemm.Packed(getattr(layer, name)) for name in ("w_qkv", "w_kv", "w_o", "w_fc", "w_proj")}
                | {"w_q": fixedgemm.Packed(layer.qkv[0][0])}
                for layer in self.layers
            ]
            self.packed_act = fixedgemm.Packed(self.w_act)
        self._masks: dict[tuple[int, torch.device], tuple[torch.Tensor, torch.Tensor]] = {}
        self._full_masks: dict[tuple[int, int, torch.device], torch.Tensor] = {}
        self._local = threading.local()  # scratch buffers per thread: pipelines share one head
        self.tap: Callable[[str, torch.Tensor], None] | None = None
        """Called with each stage's output (``embed``, ``layer0``.., ``final``, ``logits``; first dim: the
        windows) when set: ``harness trace`` fingerprints them. Reads only: the floats are the same."""

    def _order(self, k: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Causal mask ``(3K-1, 3K-1)`` in the by-kind layout, and each token's timestep ``(3K-1,)``."""
        key = (k, device)
        if key not in self._masks:
            step = torch.cat([torch.arange(k), torch.arange(k), torch.arange(k - 1)]).to(device)
            kind = torch.cat([torch.zeros(k), torch.ones(k), torch.full((k - 1,), 2.0)]).to(device)
            order = 3 * step + kind  # position in the stock interleaved sequence
            self._masks[key] = (order[None, :] <= order[:, None], step)
        return self._masks[key]

    def _mask(self, valid: torch.Tensor, k: int, device: torch.device) -> torch.Tensor:
        """Additive attention mask ``(n, 1, 3K-1, 3K-1)`` (sdpa's fastest form) from ``valid`` ``(n, K)``:
        causal and not padding; a padded query also sees itself so that its (unused) row is finite."""
        full = bool(valid.all())  # most steps: every window full; its mask is built once
        key = (n := valid.shape[0], k, device)
        cached = self._full_masks.get(key) if full else None  # one lookup: pipelines share the cache
        if cached is not None:
            return cached
        causal, step = self._order(k, device)
        t = 3 * k - 1
        allowed = causal & valid.bool()[:, step][:, None, :]
        allowed |= torch.eye(t, dtype=torch.bool, device=device)
        mask = torch.zeros(n, 1, t, t, dtype=self.dtype, device=device)
        mask.masked_fill_(~allowed.unsqueeze(1), float("-inf"))
        if full:  # read only from here on (sdpa and the fixed path add it, never write it)
            if len(self._full_masks) > 8:
                self._full_masks.clear()  # (not pop(next(iter())): another pipeline may insert meanwhile)
            self._full_masks[key] = mask
        return mask

    def _buf(self, n: int, k: int, device: torch.device) -> dict[str, torch.Tensor]:
        key = (n, k, device)
        buffers: dict[tuple[int, int, torch.device], dict[str, torch.Tensor]] = self._local.__dict__.setdefault(
            "buffers", {}
        )
        if key not in buffers:
            if len(buffers) > 8:  # batch sizes change as episodes run out; keep a few
                buffers.pop(next(iter(buffers)))
            t, h = 3 * k - 1, self.layers[0].hidden
            inner = self.layers[0].w_fc.shape[1]
            z = dict(device=device, dtype=self.dtype)
            buffers[key] = {
                "x": torch.empty(n * t, h, **z),
                "q": torch.empty(n * t, h, **z),
                "k": torch.empty(n * t, h, **z),
                "v": torch.empty(n * t, h, **z),
                "mlp": torch.empty(n * t, inner, **z),
            }
            if self.products == "fixed":
                buffers[key] |= {
                    "qkv": torch.empty(n * t, 3 * h, **z),
                    "att": torch.empty(n * t, h, **z),
                }
        return buffers[key]

    @torch.inference_mode()
    def __call__(self, window: Window, raw: bool = False) -> torch.Tensor:
        """``window`` (see :class:`harness.engine.context.Window`; n slots, K steps) → ``(n, act_dim)`` float32 actions.

        ``raw=True`` returns ``(n, hidden + act_dim)`` float32: the newest state token's final hidden
        state and the action before the tanh, the many bits a rounding change shows in first (the
        self-check's probe, :func:`harness.engine.policy.batch_invariance_check`; a saturated tanh hides them).
        """
        n = window.timesteps.shape[0]
        if self.block is None:
            return self._forward(window, raw)
        b = self.block
        if self.products == "fixed":  # chunks, not padded blocks: see the module's docstring
            out = [self._forward(Window(*(x[i : i + b] for x in window)), raw) for i in range(0, n, b)]
            return torch.cat(out) if len(out) > 1 else out[0]
        padded = -(-n // b) * b
        if padded != n:  # repeat the last window: every call has exactly `block` windows
            idx = torch.cat([torch.arange(n), torch.full((padded - n,), n - 1)]).to(window.timesteps.device)
            window = Window(*(x.index_select(0, idx) for x in window))
        out = [self._forward(Window(*(x[i : i + b] for x in window)), raw) for i in range(0, padded, b)]
        return torch.cat(out)[:n] if len(out) > 1 or padded != n else out[0]

    def _forward(self, window: Window, raw: bool = False) -> torch.Tensor:
        if self.products == "fixed":
            return self._forward_fixed(window, raw)
        # contiguous inputs: a strided view (the ring buffer's window) can take another kernel
        # path in the embedding matmuls, whose rounding would then depend on the batch
        states, actions, rtg = (
            window.states.contiguous(),
            window.actions.contiguous(),
            window.returns_to_go.contiguous(),
        )
        timesteps, valid = window.timesteps.contiguous(), window.attention_mask
        n, k = timesteps.shape
        t = 3 * k - 1
        dev = states.device
        b = self._buf(n, k, dev)
        h = self.layers[0].hidden

        time = self.embed_timestep(timesteps)  # (n, K, h) fp32
        emb = torch.cat(
            [
                self.embed_return(rtg) + time,
                self.embed_state(states) + time,
                self.embed_action(actions[:, : k - 1]) + time[:, : k - 1],
            ],
            dim=1,
        )  # (n, 3K-1, h): R_1..R_K, s_1..s_K, a_1..a_{K-1}
        x3 = b["x"].view(n, t, h)
        x3.copy_(self.embed_ln(emb).add_(self.pos0))
        x = b["x"]  # (n*t, h) residual stream
        tap = self.tap
        if tap is not None:
            tap("embed", x3)

        mask = self._mask(valid, k, dev)

        for i, layer in enumerate(self.layers[:-1]):
            y = _ln(x, layer.ln_1)
            q, kk, v = (
                _heads(torch.addmm(bias, y, w, out=b[name]), n, layer.heads)
                for (w, bias), name in zip(layer.qkv, "qkv", strict=True)
            )
            att = F.scaled_dot_product_attention(q, kk, v, attn_mask=mask, scale=layer.scaling)
            x.addmm_(_merge(att), layer.w_o).add_(layer.b_o)
            y = _ln(x, layer.ln_2)
            hid = layer.act_(torch.addmm(layer.b_fc, y, layer.w_fc, out=b["mlp"]))
            x.addmm_(hid, layer.w_proj).add_(layer.b_proj)
            if tap is not None:
                tap(f"layer{i}", x3)

        last = self.layers[-1]
        newest = 2 * k - 1  # s_K in the by-kind layout
        y = _ln(x, last.ln_1)
        (wq, bq), (wk, bk), (wv, bv) = last.qkv
        kk = _heads(torch.addmm(bk, y, wk, out=b["k"]), n, last.heads)
        v = _heads(torch.addmm(bv, y, wv, out=b["v"]), n, last.heads)
        q = _heads(torch.addmm(bq, y.view(n, t, h)[:, newest], wq), n, last.heads)
        att = F.scaled_dot_product_attention(q, kk, v, attn_mask=mask[:, :, newest : newest + 1], scale=last.scaling)
        hl = x3[:, newest].addmm(_merge(att), last.w_o).add_(last.b_o)  # (n, h)
        y = _ln(hl, last.ln_2)
        hl.addmm_(last.act_(torch.addmm(last.b_fc, y, last.w_fc)), last.w_proj).add_(last.b_proj)
        final = _ln(hl, self.ln_f)
        out = torch.addmm(self.b_act, final, self.w_act)
        if tap is not None:
            tap(f"layer{len(self.layers) - 1}", hl)
            tap("final", final)
            tap("logits", out)
        if raw:
            return torch.cat([final, out], dim=1).float()
        if self.tanh:
            out = out.tanh_()
        return out.float()

    def _embed_fixed(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """``(n, K', d)`` → ``(n, K', h)``: an embedding ``Linear`` as a fixed-order product."""
        w, bias = self.embeds[name]
        return fixedgemm.gemm(x.reshape(-1, x.shape[-1]), w, bias).view(*x.shape[:-1], w.shape[1])

    def _forward_fixed(self, window: Window, raw: bool = False) -> torch.Tensor:
        """:meth:`_forward` with every matrix product in fixed order (fp32, CPU)."""
        states, actions, rtg = window.states, window.actions, window.returns_to_go
        timesteps, valid = window.timesteps.contiguous(), window.attention_mask
        n, k = timesteps.shape
        t = 3 * k - 1
        dev = states.device
        h = self.layers[0].hidden
        heads = self.layers[0].heads
        d = h // heads
        b = self._buf(n, k, dev)

        time = self.embed_timestep(timesteps)  # (n, K, h): a lookup
        emb = torch.cat(
            [
                self._embed_fixed("return", rtg).add_(time),
                self._embed_fixed("state", states).add_(time),
                self._embed_fixed("action", actions[:, : k - 1]).add_(time[:, : k - 1]),
            ],
            dim=1,
        )  # (n, 3K-1, h): R_1..R_K, s_1..s_K, a_1..a_{K-1}
        x3 = b["x"].view(n, t, h)
        ln = self.embed_ln
        fixedgemm.layer_norm(emb, ln.weight, ln.bias, ln.eps, out=x3).add_(self.pos0)
        x = b["x"]  # (n*t, h) residual stream
        tap = self.tap
        if tap is not None:
            tap("embed", x3)

        mask = self._mask(valid, k, dev)
        att = b["att"]  # merged heads: (n*t, heads * d)
        att_heads = att.view(n, t, heads, d).transpose(1, 2)  # (n, heads, t, d) view

        def split(qkv: torch.Tensor, i: int) -> torch.Tensor:
            """Part ``i`` of a ``(n*t, parts*h)`` product as ``(n, heads, t, d)``."""
            return qkv[:, i * h : (i + 1) * h].view(n, -1, heads, d).transpose(1, 2)

        for i, (layer, pw) in enumerate(zip(self.layers[:-1], self.packed, strict=False)):
            # ln_1 then the q/k/v product, fused by row block in the kernel (the same bits)
            qkv = fixedgemm.ln_gemm(x, layer.ln_1, pw["w_qkv"], layer.b_qkv, out=b["qkv"])  # (n*t, 3h)
            q, kk, v = split(qkv, 0), split(qkv, 1), split(qkv, 2)
            fixedgemm.attention(q, kk, v, mask, layer.scaling, out=att_heads)
            fixedgemm.gemm(att, pw["w_o"], layer.b_o, out=x, accumulate=True)
            _mlp(layer, pw, x, x, b["mlp"], ln=layer.ln_2)
            if tap is not None:
                tap(f"layer{i}", x3)

        last, pw = self.layers[-1], self.packed[-1]
        newest = 2 * k - 1  # s_K in the by-kind layout
        kv = fixedgemm.ln_gemm(x, last.ln_1, pw["w_kv"], last.b_kv, out=b["qkv"][:, : 2 * h])  # (n*t, 2h)
        y = _ln_fixed(x3[:, newest], last.ln_1)  # (n, h): the same rows' bits (rows are independent)
        q = fixedgemm.gemm(y, pw["w_q"], last.qkv[0][1])  # (n, h)
        att1 = torch.empty(n, 1, h, device=dev)
        fixedgemm.attention(
            q.view(n, 1, heads, d).transpose(1, 2),
            split(kv, 0),
            split(kv, 1),
            mask[:, :, newest : newest + 1],
            last.scaling,
            out=att1.view(n, 1, heads, d).transpose(1, 2),
        )
        hl = x3[:, newest].contiguous()  # (n, h)
        fixedgemm.gemm(att1.view(n, h), pw["w_o"], last.b_o, out=hl, accumulate=True)
        _mlp(last, pw, hl, hl, ln=last.ln_2)
        final = _ln_fixed(hl, self.ln_f)
        out = fixedgemm.gemm(final, self.packed_act, self.b_act)
        if tap is not None:
            tap(f"layer{len(self.layers) - 1}", hl)
            tap("final", final)
            tap("logits", out)
        if raw:
            return torch.cat([final, out], dim=1)
        if self.tanh:  # the kernel's tanh: torch's is MKL's VML, whose bits depend on the CPU vendor
            out = fixedgemm.tanh_(out)
        return out


def _mlp(
    layer: _Layer,
    packed: dict[str, fixedgemm.Packed],
    y: torch.Tensor,
    x: torch.Tensor,
    hid: torch.Tensor | None = None,
    ln: fixedgemm.LayerNormParams | None = None,
) -> None:
    """The block's MLP into the residual stream ``x`` ``(rows, h)`` from ``y``, fixed-order; with ``ln``
    (``ln_2``'s parameters), ``y`` is ``layer_norm(x)`` (pass ``y=x``), normalised in the kernel.

    ReLU models: one fused kernel call (:func:`harness.kernels.fixedgemm.mlp`; the layer norm by row
    block, the ReLU in the product's epilogue, the ``(rows, inner)`` activations never in memory);
    other activations run torch's kernel between the two products (``hid``: an optional
    ``(rows, inner)`` buffer). Same bits either way.
    """
    if layer.relu:
        fixedgemm.mlp(y, packed["w_fc"], layer.b_fc, packed["w_proj"], layer.b_proj, out=x, relu=True, ln=ln)
        return
    if ln is not None:
        y = fixedgemm.layer_norm(x, *ln)
    act = layer.act_(fixedgemm.gemm(y, packed["w_fc"], layer.b_fc, out=hid))
    fixedgemm.gemm(act, packed["w_proj"], layer.b_proj, out=x, accumulate=True)


def default_products(dtype: torch.dtype, device: torch.device | str = "cpu") -> str:
    """``fixed`` for fp32 on CPU under pinned numerics where the kernel builds, else ``torch``."""
    if dtype != torch.float32 or torch.device(device).type != "cpu":
        return "torch"
    if numerics.requested() is not numerics.Numerics.PINNED or not numerics.kernel()[0]:
        return "torch"  # the kernel missing or failing its self-check: numerics.state() says so
    return "fixed"
