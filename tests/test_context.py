"""The mirrored ring buffer against a naive left-padded window built from full histories."""

import numpy as np
import torch

from harness.engine.context import ContextWindow


def naive_window(history: list[tuple[np.ndarray, float, int, np.ndarray]], k: int, sd: int, ad: int):
    """The tutorial's padding: last k entries, zeros on the left, mask 0 there."""
    last = history[-k:]
    pad = k - len(last)
    states = np.zeros((k, sd), np.float32)
    actions = np.zeros((k, ad), np.float32)
    rtg = np.zeros((k, 1), np.float32)
    ts = np.zeros(k, np.int64)
    mask = np.zeros(k, np.int64)
    for j, (s, r, t, a) in enumerate(last):
        states[pad + j], rtg[pad + j, 0], ts[pad + j], actions[pad + j], mask[pad + j] = s, r, t, a, 1
    return states, actions, rtg, ts, mask


def test_matches_naive_window_with_resets():
    rng = np.random.default_rng(0)
    n, k, sd, ad = 4, 3, 2, 1
    w = ContextWindow(n, k, sd, ad)
    hist: list[list] = [[] for _ in range(n)]
    for step in range(40):
        if step and rng.random() < 0.3:
            rows = np.flatnonzero(rng.random(n) < 0.5)
            if rows.size:
                w.clear(torch.as_tensor(rows))
                for i in rows:
                    hist[i] = []
        s = rng.normal(size=(n, sd)).astype(np.float32)
        r = rng.normal(size=n).astype(np.float32)
        t = rng.integers(0, 100, size=n)
        w.append(torch.from_numpy(s), torch.from_numpy(r), torch.from_numpy(t))
        for i in range(n):
            hist[i].append([s[i], r[i], t[i], np.zeros(ad, np.float32)])
        # the placeholder action is zero until set; set it for a subset of rows
        view = w.view()
        assert torch.all(view.actions[:, -1] == 0)
        rows = torch.as_tensor([0, 2])
        a = rng.normal(size=(2, ad)).astype(np.float32)
        w.set_last_action(torch.from_numpy(a), rows)
        hist[0][-1][3], hist[2][-1][3] = a[0], a[1]
        view = w.view()
        for i in range(n):
            want = naive_window([tuple(h) for h in hist[i]], k, sd, ad)
            got = (view.states[i], view.actions[i], view.returns_to_go[i], view.timesteps[i], view.attention_mask[i])
            for g, e in zip(got, want, strict=True):
                np.testing.assert_array_equal(g.numpy(), e)


def test_memory_is_allocated_once():
    w = ContextWindow(2, 4, 3, 1)
    ptrs = [t.data_ptr() for t in (w._states, w._actions, w._rtg, w._timesteps, w._mask)]
    for _ in range(100):
        w.append(torch.ones(2, 3), torch.ones(2), torch.ones(2, dtype=torch.long))
        w.set_last_action(torch.ones(2, 1))
    assert ptrs == [t.data_ptr() for t in (w._states, w._actions, w._rtg, w._timesteps, w._mask)]
    assert w.view().states.shape == (2, 4, 3)
