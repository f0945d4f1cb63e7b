"""The ``dense=True`` option of the ``stacked`` composite (densely connected recurrent layers):
layer l reads [x | y^(0) | … | y^(l-1)].  Gradient checks, and an equivalence with the plain
stack that needs no outside library: zero the columns of W_ih that read x and all but the
previous layer's output, and the dense stack *is* the plain stack."""
import numpy as np
import pytest

import rnnbook as rb
from rnnbook import gradcheck
from rnnbook.model import SequenceModel

from conftest import N_STATE, assert_grads_close, random_params

TOL = 1e-6
CELLS = [("lstm", {}), ("gru", {"reset_after": False}), ("rnn", {"nonlinearity": "tanh"})]


@pytest.mark.parametrize("cell,options", CELLS, ids=[c for c, _ in CELLS])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_dense_stacked_gradcheck(cell, options, bidirectional, rng):
    T, B, D, H, L = (3, 2, 2, 2, 3) if bidirectional else (4, 2, 3, 4, 3)     # small: 4 evaluations per entry
    params = random_params(rb.init_params("stacked", D, H, cell=cell, num_layers=L, dense=True,
                                          bidirectional=bidirectional, **options), rng)
    x = rng.standard_normal((T, B, D))
    n_state = N_STATE[cell] * (2 if bidirectional else 1)
    s0 = tuple(0.5 * rng.standard_normal((B, H)) for _ in range(L * n_state))
    report = gradcheck.check_architecture("stacked", params, x, s0, cell=cell, dense=True,
                                          bidirectional=bidirectional, **options)
    report.assert_ok(TOL)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_dense_layer_input_sizes(bidirectional):
    D, H, L = 3, 5, 4
    params = rb.init_params("stacked", D, H, cell="gru", num_layers=L, dense=True, bidirectional=bidirectional)
    out = 2 * H if bidirectional else H
    key = "fwd.W_ih" if bidirectional else "W_ih"
    assert [params[f"layer{l}.{key}"].shape for l in range(L)] == [(3 * H, D + l * out) for l in range(L)]
    y, state, _ = rb.forward("stacked", params, np.ones((6, 2, D)), cell="gru", dense=True,
                             bidirectional=bidirectional)
    assert y.shape == (6, 2, out)                               # the last layer's output, not the concatenation
    assert len(state) == L * (2 if bidirectional else 1)


def _plain_from_dense(dense_params, plain_params, D, out, L, bidirectional):
    """Dense parameters that read only the previous layer: W_ih's other columns zero, the rest copied."""
    p = {}
    for key, v in plain_params.items():
        p[key] = v.copy()
        l = int(key.split(".")[0][5:])
        if key.endswith("W_ih") and l >= 1:
            wide = np.zeros_like(dense_params[key])
            start = D + (l - 1) * out                           # the columns that read y^(l-1)
            wide[:, start:start + out] = v
            p[key] = wide
    return p


@pytest.mark.parametrize("cell,options", CELLS, ids=[c for c, _ in CELLS])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_dense_with_zeroed_extra_columns_is_the_plain_stack(cell, options, bidirectional, rng):
    T, B, D, H, L = 5, 3, 3, 4, 3
    out = 2 * H if bidirectional else H
    plain = random_params(rb.init_params("stacked", D, H, cell=cell, num_layers=L, bidirectional=bidirectional,
                                         **options), rng)
    dense = _plain_from_dense(rb.init_params("stacked", D, H, cell=cell, num_layers=L, dense=True,
                                             bidirectional=bidirectional, **options),
                              plain, D, out, L, bidirectional)
    x = rng.standard_normal((T, B, D))
    n_state = N_STATE[cell] * (2 if bidirectional else 1)
    s0 = tuple(0.5 * rng.standard_normal((B, H)) for _ in range(L * n_state))
    opts = dict(cell=cell, bidirectional=bidirectional, **options)
    y_p, s_p, c_p = rb.forward("stacked", plain, x, s0, **opts)
    y_d, s_d, c_d = rb.forward("stacked", dense, x, s0, dense=True, **opts)
    np.testing.assert_allclose(y_d, y_p, rtol=0, atol=1e-13)
    for a, b in zip(s_d, s_p):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-13)
    # the gradients agree too: every plain parameter, the kept columns of the wide W_ih, x and state0
    dy = rng.standard_normal(y_p.shape)
    dstate = tuple(rng.standard_normal(s.shape) for s in s_p)
    g_p = rb.backward("stacked", plain, c_p, dy, dstate)
    g_d = rb.backward("stacked", dense, c_d, dy, dstate)
    narrowed = dict(g_d)
    for key in plain:
        l = int(key.split(".")[0][5:])
        if key.endswith("W_ih") and l >= 1:
            start = D + (l - 1) * out
            narrowed[key] = g_d[key][:, start:start + out]
    assert_grads_close(narrowed, g_p, 1e-12)


def test_one_dense_layer_is_one_plain_layer(rng):
    p = random_params(rb.init_params("stacked", 3, 4, cell="lstm", num_layers=1, dense=True), rng)
    x = rng.standard_normal((4, 2, 3))
    y_d, s_d, c_d = rb.forward("stacked", p, x, cell="lstm", dense=True)
    y_p, s_p, c_p = rb.forward("stacked", p, x, cell="lstm")
    np.testing.assert_array_equal(y_d, y_p)
    dy = rng.standard_normal(y_d.shape)
    assert_grads_close(rb.backward("stacked", p, c_d, dy), rb.backward("stacked", p, c_p, dy), 0)


def test_dense_reaches_the_input_directly(rng):
    """The top layer of a dense stack reads x itself: with every lower layer's W_ih = 0, x still
    changes the output (in a plain stack it could not)."""
    p = random_params(rb.init_params("stacked", 3, 4, cell="rnn", num_layers=3, dense=True), rng)
    for l in (0, 1):
        p[f"layer{l}.W_ih"][:] = 0.0
    x = rng.standard_normal((4, 2, 3))
    _, _, cache = rb.forward("stacked", p, x, cell="rnn", dense=True)
    g = rb.backward("stacked", p, cache, np.ones((4, 2, 4)))
    assert np.abs(g["x"]).max() > 1e-3
    plain = random_params(rb.init_params("stacked", 3, 4, cell="rnn", num_layers=3), rng)
    plain["layer0.W_ih"][:] = 0.0
    _, _, cache = rb.forward("stacked", plain, x, cell="rnn")
    assert np.all(rb.backward("stacked", plain, cache, np.ones((4, 2, 4)))["x"] == 0)


def test_dense_errors():
    with pytest.raises(ValueError, match="residual=True or dense=True, not both"):
        rb.init_params("stacked", 3, 4, cell="gru", residual=True, dense=True)
    p = rb.init_params("stacked", 3, 4, cell="gru", dense=True)
    with pytest.raises(ValueError, match="residual=True or dense=True, not both"):
        rb.forward("stacked", p, np.zeros((2, 1, 3)), cell="gru", residual=True, dense=True)
    with pytest.raises(ValueError, match="dense"):
        rb.forward("stacked", p, np.zeros((2, 1, 3)), cell="gru", dense="yes")
    with pytest.raises(ValueError, match="shape"):                  # a dense stack's params read by a plain one
        rb.forward("stacked", p, np.zeros((2, 1, 3)), cell="gru")


def test_sequence_model_with_a_dense_core(rng):
    model = SequenceModel("lstm", hidden_size=3, input_size=2, output_size=2, num_layers=3, dense=True)
    params = random_params(model.init_params(), rng)
    x = rng.standard_normal((4, 2, 2))
    out, _, cache = model.forward(params, x)
    assert out.shape == (4, 2, 2) and params["core.layer2.W_ih"].shape == (12, 2 + 2 * 3)
    dout = rng.standard_normal(out.shape)
    grads = model.backward(params, cache, dout)

    def f(inp):
        return model.forward({k: inp[k] for k in params}, x)[0]

    gradcheck.check_function(f, params, lambda inp, G: model.backward(inp, model.forward(inp, x)[2], G),
                             names=list(params)).assert_ok(TOL)
    assert set(grads) == set(params) | {"inputs"}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dense_on_every_backend_matches_numpy(dtype, rng):
    D, H = 3, 4
    params = {k: v.astype(dtype) for k, v in
              random_params(rb.init_params("stacked", D, H, cell="lstm", num_layers=3, dense=True,
                                           bidirectional=True), rng).items()}
    x = rng.standard_normal((5, 2, D)).astype(dtype)
    y_ref, _, c_ref = rb.forward("stacked", params, x, cell="lstm", dense=True, bidirectional=True)
    dy = rng.standard_normal(y_ref.shape).astype(dtype)
    g_ref = rb.backward("stacked", params, c_ref, dy)
    tol = 1e-4 if dtype == np.float32 else 1e-10
    for backend in rb.available_backends():
        if backend == "numpy":
            continue
        from rnnbook.arrays import to_numpy
        if backend == "cupy":
            import cupy
            to = cupy.asarray
        else:
            def to(a):
                return a
        p_b = {k: to(v) for k, v in params.items()}
        y, _, c = rb.forward("stacked", p_b, to(x), cell="lstm", dense=True, bidirectional=True, backend=backend)
        g = rb.backward("stacked", p_b, c, to(dy))
        np.testing.assert_allclose(to_numpy(y), y_ref, rtol=tol, atol=tol)
        for k in params:
            np.testing.assert_allclose(to_numpy(g[k]), g_ref[k], rtol=tol, atol=tol * 10)
        np.testing.assert_allclose(to_numpy(g["x"]), g_ref["x"], rtol=tol, atol=tol * 10)
