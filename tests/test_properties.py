"""Hypothesis over shapes (T, B, D, H from 1 up), both dtypes and the cell options."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import rnnbook as rb

from conftest import CELL_CONFIGS, N_STATE, assert_grads_close, random_problem, rel_err

dims = st.integers(1, 5)
configs = st.sampled_from(CELL_CONFIGS)
dtypes = st.sampled_from([np.float32, np.float64])


@given(cfg=configs, T=dims, B=dims, D=dims, H=dims, dtype=dtypes, seed=st.integers(0, 2**16))
def test_shapes_and_dtypes(cfg, T, B, D, H, dtype, seed):
    arch, options = cfg
    rng = np.random.default_rng(seed)
    p, x, s0 = random_problem(arch, T, B, D, H, rng, dtype=dtype, **options)
    y, s, cache = rb.forward(arch, p, x, s0, **options)
    assert y.shape == (T, B, H) and y.dtype == dtype
    assert len(s) == N_STATE[arch] and all(a.shape == (B, H) and a.dtype == dtype for a in s)
    np.testing.assert_array_equal(y[-1], s[0])                       # y_t = h_t
    g = rb.backward(arch, p, cache, np.ones_like(y))
    for k, v in p.items():
        assert g[k].shape == v.shape and g[k].dtype == dtype
    assert g["x"].shape == x.shape and g["x"].dtype == dtype
    # zero initial state == state0=None
    y0, _, _ = rb.forward(arch, p, x, None, **options)
    y1, _, _ = rb.forward(arch, p, x, tuple(np.zeros_like(a) for a in s0), **options)
    np.testing.assert_array_equal(y0, y1)


@given(cfg=configs, T=dims, B=dims, D=dims, H=dims, seed=st.integers(0, 2**16))
def test_rtrl_equals_bptt_any_shape(cfg, T, B, D, H, seed):
    arch, options = cfg
    rng = np.random.default_rng(seed)
    p, x, s0 = random_problem(arch, T, B, D, H, rng, **options)
    y, s, cache = rb.forward(arch, p, x, s0, **options)
    dy = rng.standard_normal(y.shape)
    ds = tuple(rng.standard_normal(a.shape) for a in s)
    assert_grads_close(rb.rtrl(arch, p, x, dy, s0, ds, **options), rb.backward(arch, p, cache, dy, ds), 1e-9)


@given(cfg=configs, T=dims, B=dims, D=dims, H=dims, seed=st.integers(0, 2**16))
def test_float32_tracks_float64(cfg, T, B, D, H, seed):
    arch, options = cfg
    rng = np.random.default_rng(seed)
    p, x, s0 = random_problem(arch, T, B, D, H, rng, **options)
    y64, _, c64 = rb.forward(arch, p, x, s0, **options)
    to32 = lambda a: a.astype(np.float32)  # noqa: E731
    y32, _, c32 = rb.forward(arch, {k: to32(v) for k, v in p.items()}, to32(x), tuple(map(to32, s0)), **options)
    assert rel_err(y32, y64) < 1e-5
    dy = rng.standard_normal(y64.shape)
    g64 = rb.backward(arch, p, c64, dy)
    g32 = rb.backward(arch, {k: to32(v) for k, v in p.items()}, c32, to32(dy))
    for k in p:
        assert rel_err(g32[k], g64[k]) < 1e-4, k


@given(T=dims, B=dims, D=dims, H=dims, seed=st.integers(0, 2**16), arch=st.sampled_from(["lstm", "gru", "rnn"]))
def test_torch_parity_any_shape(T, B, D, H, seed, arch):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(seed)
    p, x, s0 = random_problem(arch, T, B, D, H, rng)
    y, s, cache = rb.forward(arch, p, x, s0)
    m = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[arch](D, H, dtype=torch.float64)
    with torch.no_grad():
        m.weight_ih_l0.copy_(torch.from_numpy(p["W_ih"]))
        m.weight_hh_l0.copy_(torch.from_numpy(p["W_hh"]))
        m.bias_ih_l0.copy_(torch.from_numpy(p["b_ih"] if arch == "gru" else p["b"]))
        m.bias_hh_l0.copy_(torch.from_numpy(p["b_hh"]) if arch == "gru" else torch.zeros(m.bias_hh_l0.shape,
                                                                                        dtype=torch.float64))
        st0 = tuple(torch.from_numpy(a[None]) for a in s0)
        ty, _ = m(torch.from_numpy(x), st0 if arch == "lstm" else st0[0])
    assert rel_err(y, ty.numpy()) <= 1e-10
