"""SCRN and the leaky RNN: gradient checks, RTRL == BPTT, BPTT(k), shapes and dtypes, semantics, errors."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import rnnbook as rb
from rnnbook import gradcheck
from rnnbook.numpy_ref import leaky, scrn

from conftest import assert_grads_close, rel_err

TOL = 1e-6

#: every configuration of the two cells, as (architecture, options)
LONG_MEMORY_CONFIGS = [
    ("scrn", {}),
    ("scrn", {"alpha": 0.5, "nonlinearity": "tanh"}),
    ("scrn", {"alpha": 0.0}),
    ("leaky", {}),
    ("leaky", {"nonlinearity": "tanh"}),
    ("leaky", {"nonlinearity": "relu"}),
    ("leaky", {"tau_param": "direct"}),
    ("leaky", {"tau_param": "direct", "nonlinearity": "tanh"}),
]
LONG_MEMORY_IDS = ["scrn", "scrn-a0.5-tanh", "scrn-a0", "leaky", "leaky-tanh", "leaky-relu",
                   "leaky-direct", "leaky-direct-tanh"]
N_STATE = {"scrn": 2, "leaky": 1}


def random_params(arch, D, H, rng, dtype=np.float64, **options):
    """Every entry random (biases and time constants included); ``τ`` kept in [1.2, 3] when trained directly."""
    p = {k: (0.6 * rng.standard_normal(v.shape)).astype(dtype)
         for k, v in rb.init_params(arch, D, H, dtype=dtype, **options).items()}
    if "tau" in p:
        p["tau"] = rng.uniform(1.2, 3.0, p["tau"].shape).astype(dtype)
    return p


def random_problem(arch, T, B, D, H, rng, dtype=np.float64, **options):
    p = random_params(arch, D, H, rng, dtype, **options)
    x = rng.standard_normal((T, B, D)).astype(dtype)
    s0 = tuple((0.5 * rng.standard_normal((B, H))).astype(dtype) for _ in range(N_STATE[arch]))
    return p, x, s0


def test_registered():
    assert {"scrn", "leaky"} <= set(rb.architectures())
    rows = set(rb.coverage())
    for arch in ("scrn", "leaky"):
        for op in ("init_params", "forward", "backward", "rtrl"):
            assert (arch, op, "numpy") in rows


# ------------------------------------------------------------------ finite differences
@pytest.mark.parametrize("arch,options", LONG_MEMORY_CONFIGS, ids=LONG_MEMORY_IDS)
@pytest.mark.parametrize("shape", [(4, 3, 5, 6), (1, 1, 1, 1), (7, 2, 3, 4)])
def test_gradcheck(arch, options, shape, rng):
    T, B, D, H = shape
    p, x, s0 = random_problem(arch, T, B, D, H, rng, **options)
    report = gradcheck.check_architecture(arch, p, x, s0, seed=1, **options)
    names = {e.name for e in report.entries}
    assert names == {f"params.{k}" for k in p} | {"x"} | {f"state0[{i}]" for i in range(N_STATE[arch])}
    report.assert_ok(TOL)
    assert max(e.raw_error for e in report.entries) < TOL, str(report)


@pytest.mark.parametrize("cell,options", [("scrn", {}), ("leaky", {"nonlinearity": "tanh"})])
def test_composites_gradcheck(cell, options, rng):
    """The new cells run inside the stacked and bidirectional composites."""
    T, B, D, H = 4, 2, 3, 3
    p = {k: 0.6 * rng.standard_normal(v.shape) for k, v in
         rb.init_params("stacked", D, H, cell=cell, num_layers=2, bidirectional=True, **options).items()}
    x = rng.standard_normal((T, B, D))
    gradcheck.check_architecture("stacked", p, x, cell=cell, bidirectional=True, **options).assert_ok(TOL)


# ------------------------------------------------------------------ structural oracles
@pytest.mark.parametrize("arch,options", LONG_MEMORY_CONFIGS, ids=LONG_MEMORY_IDS)
@pytest.mark.parametrize("with_dstate", [False, True])
def test_rtrl_equals_bptt(arch, options, with_dstate, rng):
    T, B, D, H = 6, 3, 4, 5
    p, x, s0 = random_problem(arch, T, B, D, H, rng, **options)
    y, s, cache = rb.forward(arch, p, x, s0, **options)
    dy = rng.standard_normal(y.shape)
    ds = tuple(rng.standard_normal(a.shape) for a in s) if with_dstate else None
    assert_grads_close(rb.rtrl(arch, p, x, dy, s0, ds, **options), rb.backward(arch, p, cache, dy, ds), 1e-10)


@pytest.mark.parametrize("arch,options", LONG_MEMORY_CONFIGS, ids=LONG_MEMORY_IDS)
@pytest.mark.parametrize("extra", [0, 3])
def test_window_at_least_T_is_full_bptt(arch, options, extra, rng):
    T, B, D, H = 5, 2, 3, 4
    p, x, s0 = random_problem(arch, T, B, D, H, rng, **options)
    y, s, cache = rb.forward(arch, p, x, s0, **options)
    dy = rng.standard_normal(y.shape)
    ds = tuple(rng.standard_normal(a.shape) for a in s)
    assert_grads_close(rb.backward(arch, p, cache, dy, ds, window=T + extra), rb.backward(arch, p, cache, dy, ds),
                       1e-12)


@pytest.mark.parametrize("arch,options", [("scrn", {}), ("leaky", {})])
def test_window_one_truncates(arch, options, rng):
    """BPTT(1) really truncates: the recurrent and slow parameters get a different gradient."""
    p, x, s0 = random_problem(arch, 6, 2, 3, 4, rng, **options)
    y, _, cache = rb.forward(arch, p, x, s0, **options)
    dy = rng.standard_normal(y.shape)
    full, one = rb.backward(arch, p, cache, dy), rb.backward(arch, p, cache, dy, window=1)
    for name in ("R", "B") if arch == "scrn" else ("W_hh", "rho"):
        assert np.max(np.abs(full[name] - one[name])) > 1e-3, name


# ------------------------------------------------------------------ Hypothesis: shapes, dtypes, options
dims = st.integers(1, 5)
configs = st.one_of(
    st.sampled_from(LONG_MEMORY_CONFIGS),
    st.builds(lambda a, nl: ("scrn", {"alpha": a, "nonlinearity": nl}),
              st.floats(0.0, 1.0), st.sampled_from(["sigmoid", "tanh"])),
)
dtypes = st.sampled_from([np.float32, np.float64])


@given(cfg=configs, T=dims, B=dims, D=dims, H=dims, dtype=dtypes, seed=st.integers(0, 2**16))
def test_shapes_and_dtypes(cfg, T, B, D, H, dtype, seed):
    arch, options = cfg
    rng = np.random.default_rng(seed)
    p, x, s0 = random_problem(arch, T, B, D, H, rng, dtype=dtype, **options)
    y, s, cache = rb.forward(arch, p, x, s0, **options)
    assert y.shape == (T, B, H) and y.dtype == dtype
    assert len(s) == N_STATE[arch] and all(a.shape == (B, H) and a.dtype == dtype for a in s)
    np.testing.assert_array_equal(y[-1], s[0])
    g = rb.backward(arch, p, cache, np.ones_like(y), tuple(np.ones_like(a) for a in s))
    for k, v in p.items():
        assert g[k].shape == v.shape and g[k].dtype == dtype, k
    assert g["x"].shape == x.shape and g["x"].dtype == dtype
    assert all(a.shape == (B, H) and a.dtype == dtype for a in g["state0"])
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
    to32 = lambda a: a.astype(np.float32)  # noqa: E731
    y64, _, c64 = rb.forward(arch, p, x, s0, **options)
    p32 = {k: to32(v) for k, v in p.items()}
    y32, _, c32 = rb.forward(arch, p32, to32(x), tuple(map(to32, s0)), **options)
    assert rel_err(y32, y64) < 1e-5
    dy = rng.standard_normal(y64.shape)
    g64, g32 = rb.backward(arch, p, c64, dy), rb.backward(arch, p32, c32, to32(dy))
    for k in p:
        assert rel_err(g32[k], g64[k]) < 1e-4, k


# ------------------------------------------------------------------ SCRN semantics
def test_scrn_context_is_an_exponential_moving_average(rng):
    """s_T = α^T s_0 + (1-α) Σ_t α^{T-1-t} B x_t, whatever the hidden layer does."""
    T, B, D, H, alpha = 6, 2, 3, 4, 0.8
    p, x, (h0, s0) = random_problem("scrn", T, B, D, H, rng, alpha=alpha)
    _, (_, s_T), cache = rb.forward("scrn", p, x, (h0, s0), alpha=alpha)
    want = alpha ** T * s0 + (1 - alpha) * sum(alpha ** (T - 1 - t) * x[t] @ p["B"].T for t in range(T))
    np.testing.assert_allclose(s_T, want, rtol=1e-12, atol=1e-12)
    seq = scrn.context_sequence(cache)
    assert seq.shape == (T, B, H)
    np.testing.assert_array_equal(seq[-1], s_T)


def test_scrn_alpha_one_freezes_context(rng):
    p, x, s0 = random_problem("scrn", 5, 2, 3, 4, rng, alpha=1.0)
    y, (_, s_T), cache = rb.forward("scrn", p, x, s0, alpha=1.0)
    np.testing.assert_array_equal(s_T, s0[1])
    g = rb.backward("scrn", p, cache, rng.standard_normal(y.shape))
    assert np.all(g["B"] == 0)                             # (1 - α) = 0: B never reaches the output


def test_scrn_with_zero_context_weights_is_an_elman_rnn(rng):
    """P = 0 cuts the context out: h follows an Elman RNN with W_ih = A, W_hh = R."""
    p, x, (h0, s0) = random_problem("scrn", 5, 2, 3, 4, rng, nonlinearity="tanh")
    p["P"][:] = 0
    y, _, _ = rb.forward("scrn", p, x, (h0, s0), nonlinearity="tanh")
    y_rnn, _, _ = rb.forward("rnn", {"W_ih": p["A"], "W_hh": p["R"], "b": p["b"]}, x, (h0,))
    np.testing.assert_allclose(y, y_rnn, rtol=1e-13, atol=1e-13)


def test_scrn_paper_readout_gradcheck(rng):
    """The paper's output layer reads h_t and s_t: the gradient of Σ <G_h, h_t> + <G_s, s_t> is
    ``backward`` (for G_h) plus ``context_backward`` (for G_s)."""
    T, B, D, H = 5, 2, 3, 4
    p, x, s0 = random_problem("scrn", T, B, D, H, rng, alpha=0.7)
    inputs = {**{f"p.{k}": v for k, v in p.items()}, "x": x, "h0": s0[0], "s0": s0[1]}

    def unpack(inp):
        return {k[2:]: v for k, v in inp.items() if k.startswith("p.")}, inp["x"], (inp["h0"], inp["s0"])

    def f(inp):
        params, xx, state0 = unpack(inp)
        y, _, cache = rb.forward("scrn", params, xx, state0, alpha=0.7)
        return y, scrn.context_sequence(cache)

    def grad_fn(inp, upstream):
        params, xx, state0 = unpack(inp)
        _, _, cache = rb.forward("scrn", params, xx, state0, alpha=0.7)
        g = rb.backward("scrn", params, cache, upstream[0])
        gc = scrn.context_backward(params, cache, upstream[1])
        out = {f"p.{k}": g[k] + (gc[k] if k in gc else 0) for k in params}
        out["x"] = g["x"] + gc["x"]
        out["h0"] = g["state0"][0] + gc["state0"][0]
        out["s0"] = g["state0"][1] + gc["state0"][1]
        return out

    gradcheck.check_function(f, inputs, grad_fn).assert_ok(TOL)


# ------------------------------------------------------------------ leaky semantics
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_leaky_with_tau_one_is_an_elman_rnn(nonlinearity, rng):
    p, x, s0 = random_problem("leaky", 5, 2, 3, 4, rng, tau_param="direct", nonlinearity=nonlinearity)
    p["tau"][:] = 1.0
    y, _, _ = rb.forward("leaky", p, x, s0, tau_param="direct", nonlinearity=nonlinearity)
    y_rnn, _, _ = rb.forward("rnn", {"W_ih": p["W_ih"], "W_hh": p["W_hh"], "b": p["b"]}, x, s0,
                             nonlinearity=nonlinearity)
    np.testing.assert_allclose(y, y_rnn, rtol=1e-13, atol=1e-13)


def test_leaky_update_by_hand(rng):
    p, x, (h0,) = random_problem("leaky", 1, 3, 2, 4, rng)
    tau = 1 + np.log1p(np.exp(p["rho"]))
    a = x[0] @ p["W_ih"].T + h0 @ p["W_hh"].T + p["b"]
    want = (1 - 1 / tau) * h0 + np.where(a > 0, a, 0.01 * a) / tau
    y, _, _ = rb.forward("leaky", p, x, (h0,))
    np.testing.assert_allclose(y[0], want, rtol=1e-13, atol=1e-13)


def test_leaky_large_tau_remembers(rng):
    """A unit with τ = 10⁴ barely moves in 10 steps; one with τ ≈ 1 follows its input."""
    p, x, (h0,) = random_problem("leaky", 10, 2, 3, 2, rng, tau_param="direct")
    p["tau"][:] = [1e4, 1.0]
    y, _, _ = rb.forward("leaky", p, x, (h0,), tau_param="direct")
    assert np.max(np.abs(y[-1, :, 0] - h0[:, 0])) < 1e-2
    assert np.max(np.abs(y[-1, :, 1] - h0[:, 1])) > 1e-2


def test_leaky_tau_parameterisations():
    p = rb.init_params("leaky", 3, 50, seed=3)
    tau, dtau = leaky.time_constants(p)
    assert np.all(tau > 1) and np.all(tau <= 2 + 1e-12)          # 1 + U(0.05, 1)
    np.testing.assert_allclose(tau, 1 + np.log1p(np.exp(p["rho"])), rtol=1e-13)
    np.testing.assert_allclose(dtau, 1 / (1 + np.exp(-p["rho"])), rtol=1e-13)
    assert np.all(np.isfinite(leaky.time_constants({"rho": np.array([-800.0, 0.0, 800.0])})[0]))
    pd = rb.init_params("leaky", 3, 50, seed=3, tau_param="direct")
    assert set(pd) == {"W_ih", "W_hh", "b", "tau"} and np.all(pd["tau"] > 1)
    np.testing.assert_allclose(leaky.softplus(leaky.softplus_inverse(np.array([0.05, 0.5, 3.0]))),
                               [0.05, 0.5, 3.0], rtol=1e-13)


def test_leaky_softplus_keeps_tau_above_one_during_training(rng):
    """A long, fast descent on a loss that wants short timescales never breaks τ > 1."""
    p, x, s0 = random_problem("leaky", 6, 4, 3, 5, rng)
    for _ in range(200):
        y, _, cache = rb.forward("leaky", p, x, s0)
        g = rb.backward("leaky", p, cache, y - x[..., :1])       # pull h towards the first input channel
        p["rho"] -= 5.0 * g["rho"]
    assert np.all(leaky.time_constants(p)[0] > 1)


def test_leaky_direct_tau_below_one_is_an_error_and_clip_tau_fixes_it(rng):
    p, x, s0 = random_problem("leaky", 3, 2, 3, 4, rng, tau_param="direct")
    p["tau"][1] = 0.5
    with pytest.raises(ValueError, match=r"params\['tau'\] must be >= 1.*clip_tau"):
        rb.forward("leaky", p, x, s0, tau_param="direct")
    leaky.clip_tau(p)
    assert p["tau"][1] == 1.0
    rb.forward("leaky", p, x, s0, tau_param="direct")
    with pytest.raises(ValueError, match="'tau'"):
        leaky.clip_tau({"rho": np.zeros(3)})


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize("alpha", [-0.1, 1.5, "0.9", True, None, np.array([0.5])])
def test_scrn_bad_alpha(alpha):
    p = rb.init_params("scrn", 2, 3)
    with pytest.raises(ValueError, match=r"alpha.*\[0, 1\]"):
        rb.forward("scrn", p, np.zeros((2, 1, 2)), alpha=alpha)
    with pytest.raises(ValueError, match="alpha"):
        rb.init_params("scrn", 2, 3, alpha=alpha)


def test_bad_options_and_params():
    p = rb.init_params("scrn", 2, 3)
    with pytest.raises(ValueError, match="nonlinearity"):
        rb.forward("scrn", p, np.zeros((2, 1, 2)), nonlinearity="relu")
    with pytest.raises(TypeError, match=r"unknown option.*tau_param.*\['alpha', 'nonlinearity'\]"):
        rb.forward("scrn", p, np.zeros((2, 1, 2)), tau_param="direct")
    with pytest.raises(ValueError, match=r"params\['P'\].*\(3, 3\)"):
        rb.forward("scrn", {**p, "P": np.zeros((3, 2))}, np.zeros((2, 1, 2)))
    q = rb.init_params("leaky", 2, 3)                                   # softplus: has rho, not tau
    with pytest.raises(ValueError, match=r"missing \['tau'\]"):
        rb.forward("leaky", q, np.zeros((2, 1, 2)), tau_param="direct")
    with pytest.raises(TypeError, match="float32"):
        rb.forward("leaky", {**q, "rho": q["rho"].astype(np.float32)}, np.zeros((2, 1, 2)))


def test_bad_state():
    p = rb.init_params("scrn", 2, 3)
    x = np.zeros((2, 4, 2))
    with pytest.raises(ValueError, match=r"2 arrays \('h', 's'\)"):
        rb.forward("scrn", p, x, (np.zeros((4, 3)),))
    with pytest.raises(ValueError, match=r"state0 s must have shape \(4, 3\)"):
        rb.forward("scrn", p, x, (np.zeros((4, 3)), np.zeros((4, 2))))
    y, s, cache = rb.forward("scrn", p, x)
    with pytest.raises(ValueError, match=r"dstate s must have shape \(4, 3\)"):
        rb.backward("scrn", p, cache, np.zeros_like(y), (np.zeros((4, 3)), np.zeros((3, 3))))


def test_context_helpers_reject_bad_input():
    p = rb.init_params("scrn", 2, 3)
    _, _, cache = rb.forward("scrn", p, np.zeros((2, 4, 2)))
    with pytest.raises(ValueError, match=r"ds_seq.*\(2, 4, 3\)"):
        scrn.context_backward(p, cache, np.zeros((2, 4, 2)))
    _, _, rnn_cache = rb.forward("rnn", rb.init_params("rnn", 2, 3), np.zeros((2, 4, 2)))
    with pytest.raises(TypeError, match="'scrn'"):
        scrn.context_sequence(rnn_cache)
