"""The fast action head against the stock ``transformers`` forward (the exact-path contract)."""

import numpy as np
import pytest
import torch
from transformers import DecisionTransformerConfig, DecisionTransformerModel

from harness.engine.context import Window
from harness.engine.fast import FastActionHead, default_products
from harness.engine.policy import DTPolicy
from harness.engine.rollout import EpisodeSpec, run_episodes
from harness.io.checkpoints import load_checkpoint

from .conftest import make_checkpoint


def model(**kw) -> DecisionTransformerModel:
    torch.manual_seed(kw.pop("seed", 0))
    cfg = dict(state_dim=5, act_dim=3, hidden_size=32, n_layer=2, n_head=1, max_ep_len=100) | kw
    return DecisionTransformerModel(DecisionTransformerConfig(**cfg)).eval()


def windows(m: DecisionTransformerModel, n: int, k: int, seed: int = 1) -> Window:
    """Random windows with random left padding (zeros under mask 0, as the context buffer holds)."""
    g = torch.Generator().manual_seed(seed)
    pad = torch.randint(0, k, (n,), generator=g)
    pad[0] = 0  # one full window
    mask = (torch.arange(k)[None, :] >= pad[:, None]).long()  # (n, k)
    m3 = mask[..., None].float()
    states = torch.randn(n, k, m.config.state_dim, generator=g) * m3
    actions = torch.randn(n, k, m.config.act_dim, generator=g) * m3
    actions[:, -1] = 0.0  # the newest action is the placeholder
    rtg = torch.randn(n, k, 1, generator=g) * m3
    steps = torch.randint(0, m.config.max_ep_len, (n, k), generator=g) * mask
    return Window(states, actions, rtg, steps, mask)


def stock(m: DecisionTransformerModel, w: Window) -> torch.Tensor:
    with torch.inference_mode():
        out = m(
            states=w.states,
            actions=w.actions,
            returns_to_go=w.returns_to_go,
            timesteps=w.timesteps,
            attention_mask=w.attention_mask,
        )
    return out.action_preds[:, -1]


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"n_layer": 1},  # the last layer is the only layer
        {"n_layer": 3, "hidden_size": 64},
        {"n_head": 4},
        {"activation_function": "gelu_new"},
        {"action_tanh": False},
        {"scale_attn_by_inverse_layer_idx": True},
        {"n_inner": 48},
    ],
)
@pytest.mark.parametrize("k", [1, 2, 7])
@pytest.mark.parametrize("products", ["fixed", "torch"])
def test_fp32_equals_stock_forward(kw, k, products):
    m = model(**kw)
    w = windows(m, 23, k)
    np.testing.assert_allclose(FastActionHead(m, products=products)(w).numpy(), stock(m, w).numpy(), atol=1e-5, rtol=0)


def test_pinned_fp32_uses_the_fixed_order_products():
    """Under pinned numerics (the tests' mode) fp32 on CPU runs the fixed-order kernel; bf16 never does."""
    from harness.core import numerics

    m = model()
    assert numerics.requested() is numerics.Numerics.PINNED
    assert FastActionHead(m).products == "fixed" and FastActionHead(m, torch.bfloat16).products == "torch"
    with pytest.raises(ValueError, match="fp32 on CPU only"):
        FastActionHead(m, torch.bfloat16, products="fixed")


def test_blocks_and_buffer_reuse_do_not_change_results():
    m = model()
    w = windows(m, 150, 6)
    whole = FastActionHead(m, block=None)(w)  # one pass over all 150
    head = FastActionHead(m)  # blocks of 16, the last padded
    for _ in range(2):  # second call reuses the buffers
        np.testing.assert_allclose(head(w).numpy(), whole.numpy(), atol=1e-6, rtol=0)
    small = Window(*(x[:10] for x in w))  # another batch size in between
    np.testing.assert_allclose(head(small).numpy(), whole[:10].numpy(), atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="block"):
        FastActionHead(m, block=0)


def test_bf16_is_close_not_exact():
    m = model(hidden_size=128, n_layer=3)
    w = windows(m, 32, 20)
    diff = (FastActionHead(m, torch.bfloat16)(w) - stock(m, w)).abs().max().item()
    assert 1e-6 < diff < 0.05  # bf16 has an 8-bit mantissa: a few 1e-3 on tanh-squashed actions


def test_rejects_unsupported():
    with pytest.raises(ValueError, match="dtype"):
        FastActionHead(model(), torch.float16)


class _Checking(DTPolicy):
    """Acts with the fast head and records its gap to the stock forward on the same window."""

    def __init__(self, ckpt):
        super().__init__(ckpt)
        self.max_gap = 0.0
        self.calls = 0

    def act(self, window, rows=None):
        fast = super().act(window, rows)
        w = window if rows is None else Window(*(t.index_select(0, rows) for t in window))
        gap = (fast - stock(self.model, w)).abs().max().item()
        self.max_gap, self.calls = max(self.max_gap, gap), self.calls + 1
        return fast


@pytest.mark.parametrize("env_id", ["Hopper-v4", "Walker2d-v4"])
def test_fast_path_at_every_step_of_real_episodes(tmp_path, env_id):
    """On every window a real batched rollout meets (padding, slot refills, idle slots,
    clamped timesteps), the fast action is within 1e-5 of the stock forward's."""
    ckpt = load_checkpoint(
        str(make_checkpoint(tmp_path / "m", env_id, hidden=32, n_layer=2, context_length=8, max_ep_len=40))
    )
    policy = _Checking(ckpt)
    eps = [EpisodeSpec(t, 40 + k, k) for k, t in enumerate([100.0, 1800.0, 3600.0, 500.0, 2500.0, 7.0, 900.0])]
    results = run_episodes(policy, env_id, eps, num_envs=4)
    assert len(results) == 7 and policy.calls > 20
    assert policy.max_gap < 1e-5


SIZES = [*range(1, 21), 33, 64, 100]


def batch_dependence(act, pool: Window, sizes=SIZES) -> list[tuple[int, int]]:
    """``(n, row)`` pairs where a window's action in a batch of n differs from its action alone.

    Every window of ``pool`` is acted for alone (one thread); then, for every n, batches of n
    windows taken cyclically from two offsets, so every row position of every n is compared.
    """
    total = pool.timesteps.shape[0]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        alone = torch.cat([act(Window(*(x[i : i + 1] for x in pool))) for i in range(total)])
    finally:
        torch.set_num_threads(threads)
    bad = []
    for n in sizes:
        for offset in (0, 37):
            idx = (offset + torch.arange(n)) % total
            got = act(Window(*(x.index_select(0, idx) for x in pool)))
            bad += [(n, int(r)) for r in torch.nonzero((got != alone[idx]).any(dim=1)).flatten()]
    return bad


@pytest.mark.slow
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rows_do_not_depend_on_their_batch(dtype, threads):
    """Each window's action is bit-equal whatever else shares its batch, at every batch size and
    row position, in fp32 and bf16, with 1 and 2 threads (against the window alone on 1 thread):
    resumed, re-sliced and parallel sweeps give the same returns as uninterrupted ones."""
    m = model(hidden_size=64, n_layer=3, n_head=2)
    head = FastActionHead(m, dtype)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        assert batch_dependence(head, windows(m, 100, 8)) == []
    finally:
        torch.set_num_threads(before)


def test_batch_dependence_is_caught():
    """The check above fails for a head whose rounding depends on the batch size the way MKL's
    does for M < 4 on some CPUs (mutation: the invariance test must be able to fail)."""
    m = model()
    head = FastActionHead(m)

    def small_m_path(w: Window) -> torch.Tensor:
        out = head(w)
        return out * (1 + 2**-20) if w.timesteps.shape[0] < 4 else out

    bad = batch_dependence(small_m_path, windows(m, 100, 4), sizes=[2, 3, 4, 16])
    assert {n for n, _ in bad} == {4, 16}  # alone (M = 1) is the odd one out: every larger batch differs


@pytest.mark.slow
def test_episodes_are_bit_equal_across_num_envs(tmp_path):
    ckpt = load_checkpoint(str(make_checkpoint(tmp_path / "m", "Hopper-v4", hidden=32, n_layer=2, context_length=8)))
    targets = [100.0, 1800.0, 3600.0, 500.0, 2500.0, 900.0, 3000.0] * 4
    eps = [EpisodeSpec(t, 7 + k, k) for k, t in enumerate(targets)]
    for precision in ("fp32", "bf16"):
        policy = DTPolicy(ckpt, precision=precision)
        runs = [run_episodes(policy, "Hopper-v4", eps, num_envs=n, record_actions=True) for n in (1, 2, 5, 7, 24)]
        for other in runs[1:]:
            for a, b in zip(runs[0], other, strict=True):
                np.testing.assert_array_equal(a.actions, b.actions)
                assert (a.ret, a.length) == (b.ret, b.length)


def test_start_up_self_check(tmp_path):
    """metadata.json's batch_invariant comes from this check: True for the shipped policy, False
    for one whose small batches round differently (the mutation it exists to catch)."""
    from harness.engine.policy import batch_invariance_check

    ckpt = load_checkpoint(str(make_checkpoint(tmp_path / "m", "Hopper-v4", hidden=32, n_layer=2, context_length=8)))

    class SmallBatchesDiffer(DTPolicy):
        def act(self, window, rows=None, raw=False):
            out = super().act(window, rows, raw)
            return out * (1 + 2**-20) if window.timesteps.shape[0] < 4 else out

    assert batch_invariance_check(DTPolicy(ckpt))
    assert batch_invariance_check(DTPolicy(ckpt, precision="bf16"))
    assert not batch_invariance_check(SmallBatchesDiffer(ckpt))


def position_dependence(act, probes: Window, fill: Window, block: int) -> list[tuple[int, int]]:
    """``(probe, position)`` pairs where a probe window placed at ``position`` of a block (the
    other rows from ``fill``) gets another output than alone on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        alone = [act(Window(*(x[i : i + 1] for x in probes))) for i in range(probes.timesteps.shape[0])]
    finally:
        torch.set_num_threads(threads)
    bad = []
    for i, ref in enumerate(alone):
        for pos in range(block):
            w = Window(*(f[:block].clone() for f in fill))
            for x, p in zip(w, probes, strict=True):
                x[pos] = p[i]
            if not torch.equal(act(w)[pos : pos + 1], ref):
                bad.append((i, pos))
    return bad


def _odd_rows_off_by_one_ulp(monkeypatch) -> None:
    """Mutation: products whose rounding depends on the row's position (every odd output row of every
    ``addmm`` and every fixed-order product one ulp up), what MKL does on AMD EPYC with AVX-512
    outside its strict CNR mode."""
    from harness.kernels import fixedgemm

    original, fixed = torch.addmm, fixedgemm.gemm

    def nudge(out: torch.Tensor) -> torch.Tensor:
        odd = out[..., 1::2, :]
        odd.copy_(torch.nextafter(odd, torch.full_like(odd, float("inf"))))
        return out

    monkeypatch.setattr(torch, "addmm", lambda *a, **kw: nudge(original(*a, **kw)))
    monkeypatch.setattr(fixedgemm, "gemm", lambda *a, **kw: nudge(fixed(*a, **kw)))


@pytest.mark.parametrize("threads", [1, 2])
def test_every_position_of_a_block(threads):
    """Several probe windows at every position of a 16-window block, other windows around them, on
    1 and 2 threads: each gets the output it gets alone, bit for bit (raw output: final hidden state
    and pre-tanh action). Under the pinned numerics of harness/core/numerics.py this holds on every
    x86-64 CPU; without them it fails on AMD EPYC with AVX-512."""
    m = model(hidden_size=64, n_layer=3, n_head=2, state_dim=11)
    head = FastActionHead(m)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        act = lambda w: head(w, raw=True)  # noqa: E731
        assert position_dependence(act, windows(m, 6, 20, seed=3), windows(m, 16, 20, seed=4), 16) == []
    finally:
        torch.set_num_threads(before)


def test_position_dependence_is_caught(monkeypatch):
    """Mutation: with odd GEMM rows one ulp off, the position test above and the start-up
    self-check both fail."""
    m = model(hidden_size=64, n_layer=3, n_head=2, state_dim=11)
    head = FastActionHead(m)
    _odd_rows_off_by_one_ulp(monkeypatch)
    bad = position_dependence(lambda w: head(w, raw=True), windows(m, 3, 20, seed=3), windows(m, 16, 20, seed=4), 16)
    assert {pos for _, pos in bad} == set(range(1, 16, 2))


def test_start_up_self_check_sees_row_positions(tmp_path, monkeypatch):
    """The self-check puts probes at every position of a block: it fails under the odd-row mutation
    (which leaves every window's action alone unchanged: the old check of 6 scattered rows passed
    whenever the probes happened to land on even rows) and names the positions."""
    from harness.engine.policy import batch_invariance_check

    ckpt = load_checkpoint(str(make_checkpoint(tmp_path / "m", "Hopper-v4", hidden=32, n_layer=2, context_length=8)))
    policy = DTPolicy(ckpt)
    assert batch_invariance_check(policy).invariant
    _odd_rows_off_by_one_ulp(monkeypatch)
    check = batch_invariance_check(policy)
    assert not check and check.differing > 0 and set(check.positions) & set(range(1, 16, 2))


# fmt: off
EXACT_ATEN = {
    # element by element, one IEEE operation (or none) per element: the same bits at every vector
    # width, on every CPU; no transcendental, no reduction whose order a kernel picks
    "_to_copy", "add", "add_", "sub", "sub_", "div", "mul", "copy_", "clamp", "where", "isfinite",
    "bitwise_not", "masked_fill_", "fill_", "le", "eq", "all", "is_nonzero", "__and__", "__ior__",
    "_local_scalar_dense",
    # moving floats without arithmetic
    "embedding", "cat", "index", "index_select", "index_put_", "select", "slice", "view", "reshape",
    "transpose", "unsqueeze", "expand", "contiguous", "detach", "lift_fresh", "alias", "to",
    "resolve_conj", "resolve_neg", "clone", "t", "as_strided", "unbind", "split", "chunk",
    # making tensors
    "empty", "zeros", "ones", "full", "arange", "eye", "zeros_like", "empty_like", "scalar_tensor",
}
# fmt: on
"""torch ops whose floats do not depend on the CPU; anything else in an fp32 episode is a finding."""


def cpu_dependent_ops(episodes: int = 2, steps: int = 25) -> set[str]:
    """The torch ops of pinned fp32 episodes of the embedded hopper outside :data:`EXACT_ATEN`."""
    from torch.utils._python_dispatch import TorchDispatchMode

    seen: set[str] = set()

    class Record(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            seen.add(func._schema.name.split("::")[-1])
            return func(*args, **(kwargs or {}))

    policy = DTPolicy(load_checkpoint("hopper"))
    assert policy.fast.products == "fixed"
    specs = [EpisodeSpec(target=3000.0, index=i, seed=7 + i) for i in range(episodes)]
    with Record():
        run_episodes(policy, "Hopper-v4", specs, num_envs=episodes, pipelines=1, max_episode_steps=steps)
    return seen - EXACT_ATEN


@pytest.mark.skipif(default_products(torch.float32) != "fixed", reason="pinned numerics without their kernel")
def test_the_exact_path_runs_no_torch_kernel_whose_floats_depend_on_the_cpu():
    """Every torch op of a pinned fp32 episode (normalising, the context, the forward, the returns)
    is exact element by element; the products, layer norms, softmax and tanh are the kernel's. torch's
    tanh is MKL's VML, which rounds differently on Intel and AMD: it must not come back."""
    assert cpu_dependent_ops() == set()


def test_the_op_check_sees_torchs_tanh(monkeypatch):
    """The check above fails when the action head's tanh is torch's again (the bug it guards)."""
    from harness.kernels import fixedgemm

    monkeypatch.setattr(fixedgemm, "tanh_", lambda x, source=None: x.tanh_())
    assert cpu_dependent_ops(episodes=1, steps=3) == {"tanh_"}
