"""The gradient checker itself: it must catch wrong gradients and point at them."""
import numpy as np
import pytest

import rnnbook as rb
from rnnbook import gradcheck
from rnnbook.numpy_ref import lstm


def test_relative_error_floor_no_nan():
    err = gradcheck.relative_error(np.zeros(3), np.zeros(3))
    assert np.all(err == 0) and not np.any(np.isnan(err))
    assert gradcheck.relative_error(np.array([1.0]), np.array([-1.0]))[0] == pytest.approx(1.0)
    # the noise allowance only forgives differences below it
    a, n = np.array([1e-8, 1.0]), np.array([1e-8 + 1e-13, 1.0 + 1e-5])
    err = gradcheck.relative_error(a, n, noise=1e-12)
    assert err[0] == 0 and err[1] == pytest.approx((1e-5 - 1e-12) / (2 + 1e-5))


def test_tiny_wrong_entry_is_still_caught():
    """A gradient that is wrong only in one tiny entry (well above the noise) fails."""
    z = np.array([[9.0, -9.0, 0.5]])
    k = np.array([0])
    from rnnbook.losses import softmax_cross_entropy

    def bad(inp, G):
        d = softmax_cross_entropy(inp["z"], k)[1].copy()
        d[0, 1] *= -1                              # an entry of size ~1e-8: sign flipped
        return {"z": G * d}

    rep = gradcheck.check_function(lambda inp: np.array(softmax_cross_entropy(inp["z"], k)[0]), {"z": z}, bad)
    assert rep.noise < 1e-11
    assert not rep.ok() and rep["z"].index == (0, 1)


def test_check_function_plain_function():
    rng = np.random.default_rng(0)
    W = rng.standard_normal((3, 4))
    v = rng.standard_normal(4)

    def f(inp):
        return np.tanh(inp["W"] @ inp["v"])

    def good(inp, G):
        a = np.tanh(inp["W"] @ inp["v"])
        da = G * (1 - a ** 2)
        return {"W": np.outer(da, inp["v"]), "v": inp["W"].T @ da}

    def bad(inp, G):
        g = good(inp, G)
        g["v"] = g["v"] * 1.001
        return g

    assert gradcheck.check_function(f, {"W": W, "v": v}, good).ok()
    rep = gradcheck.check_function(f, {"W": W, "v": v}, bad)
    assert not rep.ok()
    assert [e.name for e in rep.failing()] == ["v"]
    with pytest.raises(AssertionError, match="v"):
        rep.assert_ok()


def test_order2_rule_agrees_but_is_coarser():
    f = lambda inp: np.sin(inp["a"]) * inp["a"] ** 3                                 # noqa: E731
    g = lambda inp, G: {"a": G * (np.cos(inp["a"]) * inp["a"] ** 3 + 3 * np.sin(inp["a"]) * inp["a"] ** 2)}  # noqa
    a = np.linspace(0.1, 2, 7)
    e4 = gradcheck.check_function(f, {"a": a}, g)["a"].raw_error
    e2 = gradcheck.check_function(f, {"a": a}, g, order=2)["a"].raw_error
    assert e4 < 1e-7 and e2 < 1e-5 and 10 * e4 < e2, (e4, e2)


def test_detects_planted_gate_bug(monkeypatch, rng=np.random.default_rng(3)):
    """A wrong sign in the forget-gate derivative is reported on W_hh/W_ih/b, not elsewhere."""
    params = {k: rng.standard_normal(v.shape) * 0.5 for k, v in rb.init_params("lstm", 3, 4).items()}
    x = rng.standard_normal((4, 2, 3))
    original = lstm.step_backward

    def buggy(p, cache, dstate):
        x_t, h_prev, c_prev, a_prev, *rest = cache
        return original(p, (x_t, h_prev, -c_prev, a_prev, *rest), dstate)   # df = dc * (-c_prev)

    monkeypatch.setattr(lstm, "step_backward", buggy)
    rep = gradcheck.check_architecture("lstm", params, x)
    bad = {e.name for e in rep.failing()}
    assert {"params.W_ih", "params.W_hh", "params.b"} <= bad
    worst = rep["params.b"]
    H = 4
    assert H <= worst.index[0] < 2 * H, "the worst bias entry must lie in the forget-gate block"


def test_report_str_names_every_array():
    params = rb.init_params("gru", 2, 3)
    rep = gradcheck.check_architecture("gru", params, np.ones((2, 1, 2)))
    text = str(rep)
    for name in ["params.W_ih", "params.W_hh", "params.b_ih", "params.b_hh", "x", "state0[0]"]:
        assert name in text


def test_numerical_gradient_requires_float64():
    with pytest.raises(TypeError, match="float64"):
        gradcheck.numerical_gradient(lambda: 0.0, np.zeros(3, np.float32))
