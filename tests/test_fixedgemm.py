"""The fixed-order GEMM (harness/kernels/fixedgemm.py): the definition, bit for bit, on every path.

The definition: ``acc = 0; acc = fma(a[i, k], b[k, j], acc) for k in order; c = acc + bias[j]``
(``c = old + (acc + bias[j])`` when accumulating). The oracle here is exact rational arithmetic
with one round-to-nearest-even to float32 per step, written independently of the C code.
"""

from __future__ import annotations

import struct
from fractions import Fraction

import numpy as np
import pytest
import torch

from harness.kernels import fixedgemm

pytestmark = pytest.mark.skipif(fixedgemm.library() is None, reason="no C compiler: fixed-order kernel not built")


def f32(x: Fraction) -> Fraction:
    """``x`` rounded to the nearest float32 (ties to even), as a Fraction (finite values only)."""
    if x == 0:
        return Fraction(0)
    guess = np.float32(float(x))  # within one float32 ulp of the answer
    candidates = {guess, np.nextafter(guess, np.float32(np.inf)), np.nextafter(guess, np.float32(-np.inf))}
    best = sorted(candidates, key=lambda c: (abs(Fraction(float(c)) - x), struct.unpack("<I", c.tobytes())[0] & 1))
    return Fraction(float(best[0]))


def oracle(
    a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None, old: torch.Tensor | None = None
) -> torch.Tensor:
    """The definition in exact arithmetic: each FMA is ``round(a * b + acc)``, each add ``round(x + y)``."""
    m, k = a.shape
    n = b.shape[1]
    A = [[Fraction(float(v)) for v in row] for row in a.tolist()]
    B = [[Fraction(float(v)) for v in row] for row in b.tolist()]
    out = torch.empty(m, n)
    for i in range(m):
        for j in range(n):
            acc = Fraction(0)
            for kk in range(k):
                acc = f32(A[i][kk] * B[kk][j] + acc)
            if bias is not None:
                acc = f32(acc + Fraction(float(bias[j])))
            if old is not None:
                acc = f32(Fraction(float(old[i, j])) + acc)
            out[i, j] = float(acc)
    return out


def levels() -> list[int]:
    """Every kernel path this CPU can run (0 scalar, 1 AVX2+FMA, 2 AVX-512)."""
    best = {v: k for k, v in fixedgemm.ISAS.items()}[fixedgemm.isa()]
    return list(range(best + 1))


@pytest.fixture(autouse=True)
def _restore():
    threads = torch.get_num_threads()
    yield
    fixedgemm.set_isa(None)
    torch.set_num_threads(threads)


def test_the_scalar_chain_is_the_definition_and_the_known_answer_holds():
    for m, k, n in ((1, 1, 1), (3, 7, 5), (2, 40, 3)):
        a, b, bias = fixedgemm.probe_inputs(m, k, n, seed=m + k)
        assert torch.equal(fixedgemm.gemm_scalar(a, b, bias), oracle(a, b, bias))
    (m, k, n), digest = fixedgemm.KNOWN_ANSWER
    a, b, bias = fixedgemm.probe_inputs(m, k, n)
    assert fixedgemm.answer_digest(oracle(a, b, bias)) == digest
    assert fixedgemm.answer_digest(fixedgemm.gemm(a, b, bias)) == digest


@pytest.mark.parametrize("shape", [(1, 1, 1), (7, 13, 19), (9, 33, 17), (17, 5, 47), (6, 64, 32)])
def test_every_path_equals_the_exact_oracle_on_odd_shapes(shape):
    m, k, n = shape
    a, b, bias = fixedgemm.probe_inputs(m, k, n, seed=sum(shape))
    old = torch.linspace(-3, 3, m * n).view(m, n)
    want = oracle(a, b, bias)
    want_acc = oracle(a, b, bias, old)
    for level in levels():
        fixedgemm.set_isa(level)
        for threads in (1, 2):
            torch.set_num_threads(threads)
            assert torch.equal(fixedgemm.gemm(a, b, bias), want), (level, threads)
            acc = old.clone()
            fixedgemm.gemm(a, b, bias, out=acc, accumulate=True)
            assert torch.equal(acc, want_acc), (level, threads)
            assert torch.equal(fixedgemm.gemm(a, b), oracle(a, b, None)), (level, threads)


@pytest.mark.parametrize("shape", [(944, 128, 128), (97, 512, 131), (61, 131, 517)])
def test_every_path_equals_the_scalar_chain_at_acting_sizes(shape):
    m, k, n = shape
    g = torch.Generator().manual_seed(m)
    a, b, bias = torch.randn(m, k, generator=g), torch.randn(k, n, generator=g), torch.randn(n, generator=g)
    want = fixedgemm.gemm_scalar(a, b, bias)
    for level in levels():
        fixedgemm.set_isa(level)
        for threads in (1, 2):
            torch.set_num_threads(threads)
            assert torch.equal(fixedgemm.gemm(a, b, bias), want), (level, threads)


@pytest.mark.parametrize("shape", [(7, 13, 19), (944, 128, 512), (16, 128, 33)])
def test_the_relu_epilogue_is_torch_relu_bit_for_bit(shape):
    """``relu=True`` equals ``torch.relu`` of the product on every path, packed or not, bit for bit:
    zero chains plus a -0 or +0 bias, a NaN (kept, as torch keeps it), negatives set to +0."""
    m, k, n = shape
    g = torch.Generator().manual_seed(n)
    a, b, bias = torch.randn(m, k, generator=g), torch.randn(k, n, generator=g), torch.randn(n, generator=g)
    a[:, :] = a.where(torch.arange(k) != 0, 0.0)  # column 0 of a is zero ...
    b[:, :3] = 0.0  # ... and three columns of b: their chains are exactly +0
    bias[:4] = torch.tensor([-0.0, 0.0, float("nan"), -1.0])  # -0, +0, NaN, negative after the bias
    want = torch.relu(fixedgemm.gemm_scalar(a, b, bias))
    assert torch.equal(fixedgemm.gemm_scalar(a, b, bias, relu=True).view(torch.int32), want.view(torch.int32))
    assert torch.isnan(want[:, 2]).all() and (want[:, :2] == 0).all() and (want >= 0).sum() > want.numel() // 3
    for level in levels():
        fixedgemm.set_isa(level)
        packed = fixedgemm.Packed(b)
        for threads in (1, 2):
            torch.set_num_threads(threads)
            for operand in (b, packed):
                got = fixedgemm.gemm(a, operand, bias, relu=True)
                assert torch.equal(got.view(torch.int32), want.view(torch.int32)), (level, threads, type(operand))


@pytest.mark.parametrize("shape", [(1, 5, 7), (13, 19, 37), (70, 33, 130), (944, 128, 512)])
def test_the_fused_mlp_is_the_two_products_bit_for_bit(shape):
    """``mlp`` equals ``gemm(gemm(y, w1, b1, relu), w2, b2, accumulate)`` on every path and thread count,
    with and without the ReLU, on odd shapes; a packing made for another path falls back, same bits."""
    m, h, inner = shape
    g = torch.Generator().manual_seed(m)
    y, w1, b1 = torch.randn(m, h, generator=g), torch.randn(h, inner, generator=g), torch.randn(inner, generator=g)
    w2, b2, x0 = torch.randn(inner, h, generator=g), torch.randn(h, generator=g), torch.randn(m, h, generator=g)
    for relu in (True, False):
        hid = fixedgemm.gemm_scalar(y, w1, b1, relu=relu)
        want = x0 + fixedgemm.gemm_scalar(hid, w2, b2)
        for level in levels():
            fixedgemm.set_isa(level)
            p1, p2 = fixedgemm.Packed(w1), fixedgemm.Packed(w2)
            for threads in (1, 2):
                torch.set_num_threads(threads)
                x = x0.clone()
                fixedgemm.mlp(y, p1, b1, p2, b2, out=x, relu=relu)
                assert torch.equal(x, want), (relu, level, threads)
            if level > 0:  # packed for this path, run on a lower one: the unfused products
                fixedgemm.set_isa(level - 1)
                x = x0.clone()
                fixedgemm.mlp(y, p1, b1, p2, b2, out=x, relu=relu)
                assert torch.equal(x, want), (relu, level, "stale packing")


def ln_oracle(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, eps: float) -> torch.Tensor:
    """The layer norm's definition in exact arithmetic, one rounding per step: 16 lane sums over the
    features in order, the tree h = 8, 4, 2, 1, mean = s / N; fma(d, d, q) likewise; rstd = 1 / sqrt(var + eps)
    (the square root rounded once: float64's correctly rounded sqrt of a float32, then float32, is
    exact rounding for float32); y = ((x - mean) * rstd) * w + b."""
    m, n = x.shape
    out = torch.empty(m, n)
    F32 = lambda v: Fraction(float(v))  # noqa: E731

    def tree(s: list[Fraction]) -> Fraction:
        for h in (8, 4, 2, 1):
            for lane in range(h):
                s[lane] = f32(s[lane] + s[lane + h])
        return s[0]

    for i in range(m):
        row = [F32(v) for v in x[i].tolist()]
        s = [Fraction(0)] * 16
        for j, v in enumerate(row):
            s[j % 16] = f32(s[j % 16] + v)
        mean = f32(tree(s) / n)
        q = [Fraction(0)] * 16
        for j, v in enumerate(row):
            d = f32(v - mean)
            q[j % 16] = f32(d * d + q[j % 16])
        var = f32(tree(q) / n)
        root = f32(Fraction(float(np.sqrt(np.float64(float(f32(var + F32(np.float32(eps)))))))))
        rstd = f32(1 / root)
        for j, v in enumerate(row):
            out[i, j] = float(f32(f32(f32(f32(v - mean) * rstd) * F32(w[j])) + F32(b[j])))
    return out


@pytest.mark.parametrize("n", [1, 7, 16, 37, 130])
def test_layer_norm_is_its_definition_on_every_path(n):
    """Every path (AVX-512, AVX2, scalar), 1 and 2 threads, equals the exact-arithmetic oracle bit for
    bit on odd widths (tails of 16-lane vectors), rows at any scale; in place too; and it is within
    float rounding of torch's layer norm (which sums in another order)."""
    g = torch.Generator().manual_seed(n)
    x = torch.randn(67, n, generator=g) * torch.logspace(-3, 3, 67)[:, None] + torch.randn(67, 1, generator=g)
    w, b = torch.randn(n, generator=g), torch.randn(n, generator=g)
    want = ln_oracle(x[:5], w, b, 1e-5)
    assert torch.equal(fixedgemm.layer_norm_scalar(x[:5], w, b, 1e-5), want)
    full = fixedgemm.layer_norm_scalar(x, w, b, 1e-5)
    for level in levels():
        fixedgemm.set_isa(level)
        for threads in (1, 2):
            torch.set_num_threads(threads)
            assert torch.equal(fixedgemm.layer_norm(x, w, b, 1e-5), full), (level, threads)
            inplace = x.clone()
            fixedgemm.layer_norm(inplace, w, b, 1e-5, out=inplace)
            assert torch.equal(inplace, full)
    # as accurate as torch's against float64 (rows of tiny spread around an offset lose digits in both)
    exact = torch.nn.functional.layer_norm(x.double(), (n,), w.double(), b.double(), 1e-5)
    theirs = torch.nn.functional.layer_norm(x, (n,), w, b, 1e-5)
    assert (full.double() - exact).abs().max() <= 3 * (theirs.double() - exact).abs().max() + 1e-6
    well = torch.randn(9, n, generator=g) * 3 + 1
    theirs = torch.nn.functional.layer_norm(well, (n,), w, b, 1e-5)
    torch.testing.assert_close(fixedgemm.layer_norm(well, w, b, 1e-5), theirs, atol=1e-5, rtol=1e-5)


def test_layer_norm_rows_do_not_depend_on_their_neighbours():
    """A row's bits are its own: alone, at any position among others, any batch size (3-D input too)."""
    g = torch.Generator().manual_seed(3)
    x, w, b = torch.randn(70, 128, generator=g), torch.randn(128, generator=g), torch.randn(128, generator=g)
    full = fixedgemm.layer_norm(x, w, b, 1e-5)
    for i in (0, 1, 31, 32, 69):
        assert torch.equal(fixedgemm.layer_norm(x[i : i + 1], w, b, 1e-5), full[i : i + 1])
    assert torch.equal(fixedgemm.layer_norm(x.view(7, 10, 128), w, b, 1e-5), full.view(7, 10, 128))


@pytest.mark.parametrize("shape", [(1, 5, 7), (13, 19, 37), (70, 33, 130), (944, 128, 384)])
def test_layer_norm_fused_into_products_is_the_separate_calls_bit_for_bit(shape):
    """``ln_gemm`` is ``gemm(layer_norm(x), w, bias)`` and ``mlp(..., ln=)`` is ``mlp(layer_norm(x), ...)``
    on every path and thread count (and with a packing made for another path: the separate calls)."""
    m, h, n = shape
    g = torch.Generator().manual_seed(m + n)
    x0, w, bias = torch.randn(m, h, generator=g), torch.randn(h, n, generator=g), torch.randn(n, generator=g)
    ln = (torch.randn(h, generator=g), torch.randn(h, generator=g), 1e-5)
    w2, b2 = torch.randn(n, h, generator=g), torch.randn(h, generator=g)
    normed = fixedgemm.layer_norm_scalar(x0, *ln)
    want = fixedgemm.gemm_scalar(normed, w, bias)
    want_mlp = x0 + fixedgemm.gemm_scalar(fixedgemm.gemm_scalar(normed, w, bias, relu=True), w2, b2)
    for level in levels():
        fixedgemm.set_isa(level)
        p, p2 = fixedgemm.Packed(w), fixedgemm.Packed(w2)
        for threads in (1, 2):
            torch.set_num_threads(threads)
            assert torch.equal(fixedgemm.ln_gemm(x0, ln, p, bias), want), (level, threads)
            x = x0.clone()
            fixedgemm.mlp(x, p, bias, p2, b2, out=x, ln=ln)
            assert torch.equal(x, want_mlp), (level, threads)
        if level > 0:
            fixedgemm.set_isa(level - 1)
            assert torch.equal(fixedgemm.ln_gemm(x0, ln, p, bias), want), (level, "stale packing")
            x = x0.clone()
            fixedgemm.mlp(x, p, bias, p2, b2, out=x, ln=ln)
            assert torch.equal(x, want_mlp), (level, "stale packing")


def test_the_softmax_exp_is_the_same_on_every_path_and_within_2_ulp():
    """The softmax's exp: AVX-512, AVX2 and scalar give the same bits on [-100, 0] (vector bodies and
    scalar tails), 0 below -87 and at -inf, NaN stays NaN, exp(-0) = exp(0) = 1; within 2 ulp of exp."""
    x = torch.cat(
        [-torch.rand(50_000, generator=torch.Generator().manual_seed(0)) * 100, torch.linspace(-87.5, 0, 4001)]
    )
    edges = torch.tensor([0.0, -0.0, -87.0, -86.99999, -87.00001, float("-inf"), float("nan"), -1e-30, -1e-45, -0.5])
    x = torch.cat([x, edges])
    outs = []
    for level in levels():
        fixedgemm.set_isa(level)
        outs.append(fixedgemm.exp_nonpositive(x))
    for y in outs[1:]:
        assert torch.equal(torch.isnan(y), torch.isnan(outs[0]))
        assert torch.equal(torch.nan_to_num(y), torch.nan_to_num(outs[0]))
    y = outs[0]
    assert y[-10:-4].tolist() == [1.0, 1.0, y[-8].item(), y[-7].item(), 0.0, 0.0] and y[-8] > 0 and y[-7] > 0
    assert torch.isnan(y[-4]) and y[-3] == 1.0 and y[-2] == 1.0
    ok = x >= -87
    exact = torch.exp(x[ok].double())
    assert ((y[ok].double() - exact).abs() / exact).max() < 2 * 2.0**-24
    assert (y[x < -87] == 0).all()


def test_tanh_is_the_same_on_every_path_and_within_3_ulp():
    """The action head's tanh: AVX-512, AVX2 and scalar give the definition's bits (vector bodies and
    masked tails of every length), odd, -0 stays -0, NaN stays NaN, +-inf gives +-1; within 3 ulp."""
    g = torch.Generator().manual_seed(1)
    x = torch.cat(
        [torch.randn(60_000, generator=g) * 3, torch.linspace(-0.3, 0.3, 20_001), torch.linspace(-12, 12, 4001)]
    )
    edges = [
        0.0,
        -0.0,
        0.25,
        -0.25,
        0.24999999,
        1e-30,
        -1e-45,
        9.0,
        9.5,
        100.0,
        float("inf"),
        float("-inf"),
        float("nan"),
    ]
    x = torch.cat([x, torch.tensor(edges)])
    want = fixedgemm.tanh_scalar(x)
    for level in levels():
        fixedgemm.set_isa(level)
        for n in (len(x), 1, 7, 15, 17, 33):  # tails of every kind
            got = fixedgemm.tanh_(x[:n].clone())
            assert torch.equal(got.view(torch.int32), want[:n].view(torch.int32)), (fixedgemm.isa(), n)
    fin = torch.isfinite(x)
    exact = torch.tanh(x[fin].double())
    ulp = (torch.nextafter(exact.abs().float(), torch.tensor(2.0)) - exact.abs().float()).double()
    assert ((want[fin].double() - exact).abs() / ulp).max() <= 3
    tail = want[-len(edges) :]
    assert tail[0] == 0 and not torch.signbit(tail[0]) and torch.signbit(tail[1])
    assert tail[-3:-1].tolist() == [1.0, -1.0] and torch.isnan(tail[-1])
    assert torch.equal(fixedgemm.tanh_scalar(-x[fin]), -want[fin])


def test_a_tanh_that_differs_on_one_path_fails_the_self_check(kernel_mutant):
    """A kernel whose AVX2 tanh multiplies by a reciprocal (only that path) fails the start-up check."""
    if max(levels()) < 1:
        pytest.skip("this CPU has no AVX2 path")
    ok, line = fixedgemm.self_check(kernel_mutant("avx2-tanh"))
    assert not ok and "AVX2" in line and "tanh" in line and "\n" not in line


def attention_definition(q, k, v, mask, scale):
    """The fused attention's definition from the separately checked pieces: the scalar chains of
    the two products around the scalar softmax, one window's head at a time."""
    n, heads, tq, _ = q.shape
    out = torch.empty(q.shape)
    for w in range(n):
        for h in range(heads):
            scores = fixedgemm.gemm_scalar(q[w, h], k[w, h].t())
            weights = fixedgemm.softmax_scalar(scores, scale, mask[w, 0] if mask is not None else None)
            out[w, h] = fixedgemm.gemm_scalar(weights, v[w, h])
    return out


@pytest.mark.parametrize(
    ("n", "heads", "tq", "t", "d"), [(3, 1, 59, 59, 128), (2, 3, 7, 37, 19), (4, 2, 1, 59, 64), (2, 1, 2, 17, 33)]
)
def test_fused_attention_is_its_definition_on_every_path(n, heads, tq, t, d):
    """Every path and thread count equals the scalar definition bit for bit (full, odd, one- and
    two-query shapes; strided views of merged q/k/v buffers as the forward passes them; masked keys
    weigh exactly 0); the softmax's rows sum to 1 within rounding; within 2e-6 of torch's sdpa."""
    g = torch.Generator().manual_seed(n * t + d)
    qkv = torch.randn(n, t, 3, heads, d, generator=g)
    q = qkv[:, t - tq :, 0].transpose(1, 2)  # (n, heads, tq, d) views with a contiguous last dim
    k, v = qkv[:, :, 1].transpose(1, 2), qkv[:, :, 2].transpose(1, 2)
    mask = torch.zeros(n, 1, tq, t).masked_fill_(torch.rand(n, 1, tq, t, generator=g) < 0.4, float("-inf"))
    mask[..., 0] = 0.0  # every query sees at least one key
    scale = d**-0.5
    want = attention_definition(q, k, v, mask, scale)
    for level in levels():
        fixedgemm.set_isa(level)
        for threads in (1, 2):
            torch.set_num_threads(threads)
            merged = torch.full((n, tq, heads, d), float("nan"))
            out = fixedgemm.attention(q, k, v, mask, scale, out=merged.transpose(1, 2))
            assert torch.equal(out, want), (level, threads)
            assert torch.equal(merged.transpose(1, 2), want)
    weights = fixedgemm.softmax_scalar(fixedgemm.gemm_scalar(q[0, 0], k[0, 0].t()), scale, mask[0, 0])
    assert (weights[mask[0, 0] == float("-inf")] == 0).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(tq), atol=1e-6, rtol=0)
    sdpa = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
    torch.testing.assert_close(want, sdpa, atol=2e-6, rtol=1e-5)
    assert torch.equal(fixedgemm.attention(q, k, v, None, scale), attention_definition(q, k, v, None, scale))


def test_a_window_attends_the_same_whatever_its_neighbours():
    """Items are independent: a window's output alone equals its output among others."""
    g = torch.Generator().manual_seed(5)
    q, k, v = (torch.randn(6, 1, 59, 128, generator=g) for _ in range(3))
    mask = torch.zeros(6, 1, 59, 59).masked_fill_(torch.ones(59, 59).triu(1).bool(), float("-inf"))
    torch.set_num_threads(2)
    full = fixedgemm.attention(q, k, v, mask, 0.088)
    for i in (0, 3, 5):
        alone = fixedgemm.attention(q[i : i + 1], k[i : i + 1], v[i : i + 1], mask[i : i + 1], 0.088)
        assert torch.equal(alone, full[i : i + 1])


@pytest.mark.slow
def test_a_row_is_the_same_at_every_position_and_batch_size():
    """Batch 1..64, the probe row at every position: its output never changes (any path, 1 and 2 threads)."""
    g = torch.Generator().manual_seed(5)
    k, n = 131, 45
    b, bias, probe = torch.randn(k, n, generator=g), torch.randn(n, generator=g), torch.randn(1, k, generator=g)
    alone = fixedgemm.gemm_scalar(probe, b, bias)
    filler = torch.randn(64, k, generator=g)
    for level in levels():
        fixedgemm.set_isa(level)
        for threads in (1, 2):
            torch.set_num_threads(threads)
            for m in range(1, 65):
                batch = filler[:m].clone()
                for pos in range(m):
                    batch[pos] = probe[0]
                    out = fixedgemm.gemm(batch, b, bias)
                    assert torch.equal(out[pos : pos + 1], alone), (level, threads, m, pos)
                    batch[pos] = filler[pos]


def test_batched_and_strided_operands_as_attention_uses_them():
    """Scores ``q @ k^T`` per (window, head) with k transposed by strides; weighted sums into a merged layout."""
    g = torch.Generator().manual_seed(2)
    n, heads, t, d = 3, 2, 11, 8
    qkv = torch.randn(n * t, 3 * heads * d, generator=g)
    q, k, v = (qkv[:, i * heads * d : (i + 1) * heads * d].view(n, t, heads, d).transpose(1, 2) for i in range(3))
    scores = fixedgemm.gemm(q, k.transpose(-1, -2))
    for i in range(n):
        for h in range(heads):
            assert torch.equal(scores[i, h], fixedgemm.gemm_scalar(q[i, h], k[i, h].t()))
    p = torch.softmax(scores, dim=-1)
    merged = torch.empty(n, t, heads * d)
    fixedgemm.gemm(p, v, out=merged.view(n, t, heads, d).transpose(1, 2))
    for i in range(n):
        for h in range(heads):
            assert torch.equal(merged[i, :, h * d : (h + 1) * d], fixedgemm.gemm_scalar(p[i, h], v[i, h]))


@pytest.mark.parametrize("m", [1, 2])
def test_one_or_two_rows_take_the_unpacked_path_with_the_same_bits(m):
    """A single query's attention (M = 1 or 2: B read in place, keys transposed by strides, no packing)
    equals the scalar chain on every path and thread count: odd N and K, batched, bias, ReLU, accumulate."""
    g = torch.Generator().manual_seed(m)
    n, heads, t, d = 5, 2, 37, 19
    q = torch.randn(n, heads, m, d, generator=g)
    kv = torch.randn(n * t, 2 * heads * d, generator=g)
    k, v = (kv[:, i * heads * d : (i + 1) * heads * d].view(n, t, heads, d).transpose(1, 2) for i in range(2))
    w = torch.softmax(torch.randn(n, heads, m, t, generator=g), dim=-1)
    a, b, bias = torch.randn(m, 45, generator=g), torch.randn(45, 33, generator=g), torch.randn(33, generator=g)
    for level in levels():
        fixedgemm.set_isa(level)
        for threads in (1, 2):
            torch.set_num_threads(threads)
            scores = fixedgemm.gemm(q, k.transpose(-1, -2))  # B transposed by strides: gathered
            sums = fixedgemm.gemm(w, v)  # B's rows contiguous: loaded
            for i in range(n):
                for h in range(heads):
                    assert torch.equal(scores[i, h], fixedgemm.gemm_scalar(q[i, h], k[i, h].t())), (level, threads)
                    assert torch.equal(sums[i, h], fixedgemm.gemm_scalar(w[i, h], v[i, h])), (level, threads)
            want = fixedgemm.gemm_scalar(a, b, bias)
            assert torch.equal(fixedgemm.gemm(a, b, bias), want)
            assert torch.equal(fixedgemm.gemm(a, b, bias, relu=True), torch.relu(want))
            acc = torch.ones(m, 33)
            fixedgemm.gemm(a, b, bias, out=acc, accumulate=True)
            assert torch.equal(acc, torch.ones(m, 33) + want), (level, threads)


def test_bad_operands_are_refused_with_their_shapes():
    with pytest.raises(ValueError, match=r"inner dims differ"):
        fixedgemm.gemm(torch.ones(2, 3), torch.ones(4, 5))
    with pytest.raises(ValueError, match=r"float32 CPU tensor"):
        fixedgemm.gemm(torch.ones(2, 3, dtype=torch.float64), torch.ones(3, 5))
    with pytest.raises(ValueError, match=r"bias must be \(5,\)"):
        fixedgemm.gemm(torch.ones(2, 3), torch.ones(3, 5), torch.ones(4))


@pytest.mark.parametrize("mutant", ["reversed-k", "unfused"])
def test_mutants_that_reorder_or_unfuse_the_chain_are_caught(mutant, kernel_mutant):
    """The same tests and the start-up self-check fail for a kernel that sums k in another order or
    rounds each product before adding it (built from ``tests/kernel_mutants.py``)."""
    source = kernel_mutant(mutant)
    ok, line = fixedgemm.self_check(source)
    assert not ok and "\n" not in line
    a, b, bias = fixedgemm.probe_inputs(9, 33, 17, seed=59)
    assert not torch.equal(fixedgemm.gemm(a, b, bias, source=source), oracle(a, b, bias))
    one = a[:1]  # the unpacked path of one row
    if max(levels()) >= 1:  # (the scalar ISA has no unpacked path)
        assert not torch.equal(fixedgemm.gemm(one, b, bias, source=source), oracle(one, b, bias))
    assert fixedgemm.self_check()[0]
