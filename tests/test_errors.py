"""Bad input fails early with a message that names the problem."""
import numpy as np
import pytest

import rnnbook as rb
from rnnbook import dispatch


@pytest.fixture
def lstm():
    return rb.init_params("lstm", 3, 4, seed=1)


def x_ok(T=2, B=2, D=3):
    return np.zeros((T, B, D))


@pytest.mark.parametrize("x,exc,words", [
    (np.zeros((2, 3)), ValueError, ["x", "3 dimensions", "(2, 3)"]),
    (np.zeros((2, 2, 5)), ValueError, ["W_ih", "(16, 5)"]),
    (np.zeros((2, 2, 3), np.int64), TypeError, ["x", "float32 or float64", "int64"]),
    (np.zeros((2, 2, 3), np.float32), TypeError, ["x", "float32", "float64"]),
    (np.zeros((0, 2, 3)), ValueError, ["x", ">= 1"]),
    ([[[0.0, 0.0, 0.0]]], TypeError, ["x", "array", "list"]),
])
def test_bad_x(lstm, x, exc, words):
    with pytest.raises(exc) as info:
        rb.forward("lstm", lstm, x)
    for w in words:
        assert w in str(info.value)


def test_missing_and_extra_params(lstm):
    p = dict(lstm)
    del p["b"]
    with pytest.raises(ValueError, match=r"missing \['b'\]"):
        rb.forward("lstm", p, x_ok())
    with pytest.raises(ValueError, match="unexpected entries"):
        rb.forward("lstm", {**lstm, "b_hh": lstm["b"]}, x_ok())
    with pytest.raises(ValueError, match="missing 'W_hh'"):
        rb.forward("lstm", {"W_ih": lstm["W_ih"]}, x_ok())
    with pytest.raises(TypeError, match="dict"):
        rb.forward("lstm", [lstm["W_ih"]], x_ok())


def test_wrong_param_shape_and_dtype(lstm):
    with pytest.raises(ValueError, match=r"params\['b'\].*\(16,\)"):
        rb.forward("lstm", {**lstm, "b": np.zeros(15)}, x_ok())
    with pytest.raises(TypeError, match="float32"):
        rb.forward("lstm", {**lstm, "b": lstm["b"].astype(np.float32)}, x_ok())
    with pytest.raises(TypeError, match="int64"):
        rb.forward("lstm", {**lstm, "W_hh": np.zeros((16, 4), np.int64)}, x_ok())


def test_bad_state(lstm):
    with pytest.raises(ValueError, match="2 arrays"):
        rb.forward("lstm", lstm, x_ok(), (np.zeros((2, 4)),))
    with pytest.raises(ValueError, match=r"state0 c must have shape \(2, 4\)"):
        rb.forward("lstm", lstm, x_ok(), (np.zeros((2, 4)), np.zeros((3, 4))))
    with pytest.raises(TypeError, match="tuple"):
        rb.forward("lstm", lstm, x_ok(), np.zeros((2, 4)))


def test_bad_dy_dstate_window(lstm):
    y, s, cache = rb.forward("lstm", lstm, x_ok())
    with pytest.raises(ValueError, match=r"dy must have the shape of the outputs \(2, 2, 4\)"):
        rb.backward("lstm", lstm, cache, np.zeros((2, 2, 5)))
    with pytest.raises(ValueError, match="dstate"):
        rb.backward("lstm", lstm, cache, np.zeros_like(y), (np.zeros((2, 4)),))
    for w in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="window"):
            rb.backward("lstm", lstm, cache, np.zeros_like(y), window=w)
    with pytest.raises(TypeError, match="cache"):
        rb.backward("lstm", lstm, {"x": 1}, np.zeros_like(y))


def test_unknown_architecture_backend_option(lstm, monkeypatch):
    with pytest.raises(ValueError, match="unknown architecture 'lstn'.*'lstm'"):
        rb.forward("lstn", lstm, x_ok())
    with pytest.raises(ValueError, match="unknown backend 'tpu'"):
        rb.forward("lstm", lstm, x_ok(), backend="tpu")
    with pytest.raises(TypeError, match="unknown option.*peephole"):
        rb.forward("lstm", lstm, x_ok(), peephole=True)
    with pytest.raises(ValueError, match="nonlinearity='sigmoid'"):
        rb.init_params("rnn", 3, 4, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="hidden_size"):
        rb.init_params("gru", 3, 0)
    monkeypatch.setenv("RNNBOOK_BACKEND", "fortran")
    with pytest.raises(ValueError, match="RNNBOOK_BACKEND.*fortran"):
        rb.forward("lstm", lstm, x_ok())


def test_unavailable_backend_says_why(lstm):
    if "cupy" in rb.available_backends():
        pytest.skip("cupy is usable on this machine")
    with pytest.raises(dispatch.BackendUnavailableError, match="cupy.*cannot run here: .+"):
        rb.forward("lstm", lstm, x_ok(), backend="cupy")
    assert "cupy" in rb.unavailable_backends()


def test_composites_need_a_cell():
    with pytest.raises(TypeError, match="cell="):
        rb.init_params("stacked", 3, 4)
    p = rb.init_params("stacked", 3, 4, cell="gru")
    with pytest.raises(TypeError, match="cell="):
        rb.forward("stacked", p, x_ok())
    with pytest.raises(ValueError, match="layer<l>"):
        rb.forward("stacked", {"W_ih": p["layer0.W_ih"]}, x_ok(), cell="gru")
    with pytest.raises(ValueError, match="multiple of 2"):
        rb.forward("stacked", p, x_ok(), (np.zeros((2, 4)),) * 3, cell="gru")
