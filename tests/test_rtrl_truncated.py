"""Structural oracles: RTRL == BPTT, BPTT(k >= T) == BPTT, BPTT(k) == detached sub-sequences."""
import numpy as np
import pytest

import rnnbook as rb

from conftest import CELL_CONFIGS, CELL_IDS, N_STATE, assert_grads_close, random_problem


@pytest.mark.parametrize("arch,options", CELL_CONFIGS, ids=CELL_IDS)
@pytest.mark.parametrize("with_dstate", [False, True])
def test_rtrl_equals_bptt(arch, options, with_dstate, rng):
    T, B, D, H = 6, 3, 4, 5
    p, x, s0 = random_problem(arch, T, B, D, H, rng, **options)
    y, s, cache = rb.forward(arch, p, x, s0, **options)
    dy = rng.standard_normal(y.shape)
    ds = tuple(rng.standard_normal(a.shape) for a in s) if with_dstate else None
    bptt = rb.backward(arch, p, cache, dy, ds)
    rtrl = rb.rtrl(arch, p, x, dy, s0, ds, **options)
    assert_grads_close(rtrl, bptt, 1e-10)


@pytest.mark.parametrize("arch,options", CELL_CONFIGS, ids=CELL_IDS)
@pytest.mark.parametrize("extra", [0, 3])
def test_window_at_least_T_is_full_bptt(arch, options, extra, rng):
    T, B, D, H = 5, 2, 3, 4
    p, x, s0 = random_problem(arch, T, B, D, H, rng, **options)
    y, s, cache = rb.forward(arch, p, x, s0, **options)
    dy = rng.standard_normal(y.shape)
    ds = tuple(rng.standard_normal(a.shape) for a in s)
    full = rb.backward(arch, p, cache, dy, ds)
    windowed = rb.backward(arch, p, cache, dy, ds, window=T + extra)
    assert_grads_close(windowed, full, 1e-12)


@pytest.mark.parametrize("arch,options", CELL_CONFIGS, ids=CELL_IDS)
@pytest.mark.parametrize("k", [1, 2, 4])
def test_window_equals_detached_subsequences(arch, options, k, rng):
    """BPTT(k) == Σ_s full BPTT of the k-step sub-sequence ending at s, started from the
    (constant) state reached before it, with the error injected at s only."""
    T, B, D, H = 6, 2, 3, 4
    p, x, s0 = random_problem(arch, T, B, D, H, rng, **options)
    y, s_T, cache = rb.forward(arch, p, x, s0, **options)
    dy = rng.standard_normal(y.shape)
    got = rb.backward(arch, p, cache, dy, None, window=k)

    # states before each step: states[t] is the state entering step t
    states = [s0]
    for t in range(T):
        _, st, _ = rb.forward(arch, p, x[: t + 1], s0, **options)
        states.append(st)
    want = {n: np.zeros_like(v) for n, v in p.items()}
    want_x = np.zeros_like(x)
    want_s0 = [np.zeros((B, H)) for _ in range(N_STATE[arch])]
    for s in range(T):
        start = max(0, s - k + 1)
        sub_x = x[start: s + 1]
        _, _, c = rb.forward(arch, p, sub_x, states[start], **options)
        sub_dy = np.zeros((len(sub_x), B, H))
        sub_dy[-1] = dy[s]
        g = rb.backward(arch, p, c, sub_dy)
        for n in want:
            want[n] += g[n]
        want_x[start: s + 1] += g["x"]
        if start == 0:
            want_s0 = [a + b for a, b in zip(want_s0, g["state0"])]
    assert_grads_close(got, {**want, "x": want_x, "state0": tuple(want_s0)}, 1e-12)


def test_window_one_differs_from_full(rng):
    """Truncation really truncates: with k = 1 the W_hh gradient changes."""
    p, x, s0 = random_problem("rnn", 6, 2, 3, 4, rng)
    y, s, cache = rb.forward("rnn", p, x, s0)
    dy = rng.standard_normal(y.shape)
    full = rb.backward("rnn", p, cache, dy)
    one = rb.backward("rnn", p, cache, dy, window=1)
    assert np.max(np.abs(full["W_hh"] - one["W_hh"])) > 1e-3
