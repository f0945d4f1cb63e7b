"""The per-element cell functions of kernels/cells.cuh, compiled for the host with g++ and
compared with numpy_ref (no GPU needed).

Each numpy_ref step is run with B = 1, so that its bias gradient *is* the vector of
pre-activation errors (``db = sum_b dz``) the device functions compute.
"""
import numpy as np
import pytest

from rnnbook.numpy_ref import gru, lstm, rnn
from rnnbook.numpy_ref.functions import sigmoid

emulation = pytest.importorskip("rnnbook.cupy_gpu.emulation")

TOL = {np.float64: 1e-13, np.float32: 2e-6}


@pytest.fixture(scope="module", autouse=True)
def _library():
    try:
        emulation.load_library()
    except emulation.EmulationUnavailable as exc:
        import os
        if os.environ.get("CI"):
            pytest.fail(str(exc))
        pytest.skip(str(exc))


def close(a, b, dtype):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = max(np.max(np.abs(b)), 1e-30)
    assert np.max(np.abs(a - b)) / scale <= TOL[dtype], f"max rel err {np.max(np.abs(a - b)) / scale:.3e}"


def _params(cell, D, H, rng, dtype, **opts):
    return {k: rng.uniform(-0.7, 0.7, s).astype(dtype) for k, s in cell.param_shapes(D, H, **opts).items()}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_sigmoid_is_stable_and_right(dtype):
    z = np.array([-1000.0, -30.0, -1.0, 0.0, 0.5, 30.0, 1000.0], dtype)
    (s,) = emulation.cell_function("sigmoid", dtype)(z)
    assert np.all(np.isfinite(s))
    close(s, sigmoid(z.astype(np.float64)), dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_rnn_cell(nonlinearity, dtype):
    rng = np.random.default_rng(1)
    D, H = 3, 40
    p = _params(rnn, D, H, rng, dtype)
    x, h = rng.standard_normal((1, D)).astype(dtype), rng.standard_normal((1, H)).astype(dtype)
    a = x @ p["W_ih"].T + h @ p["W_hh"].T + p["b"]
    (h1,), cache = rnn.step_forward(p, x, (h,), nonlinearity=nonlinearity)
    (h_dev,) = emulation.cell_function(f"rnn_{nonlinearity}_forward", dtype)(a[0])
    close(h_dev, h1[0], dtype)
    dh = rng.standard_normal((1, H)).astype(dtype)
    _, _, dparams = rnn.step_backward(p, cache, (dh,))
    (da,) = emulation.cell_function(f"rnn_{nonlinearity}_backward", dtype)(dh[0], h1[0])
    close(da, dparams["b"], dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_lstm_cell(dtype):
    rng = np.random.default_rng(2)
    D, H = 3, 40
    p = _params(lstm, D, H, rng, dtype)
    x = rng.standard_normal((1, D)).astype(dtype)
    h, c = (rng.standard_normal((1, H)).astype(dtype) for _ in range(2))
    z = (x @ p["W_ih"].T + h @ p["W_hh"].T + p["b"])[0]
    (h1, c1), cache = lstm.step_forward(p, x, (h, c))
    _, _, _, _, i, f, g, o, _, tc, _ = cache          # (x, h_prev, c_prev, a_prev, i, f, g, o, c, tanh c, options)
    out = emulation.cell_function("lstm_forward", dtype)(z[:H], z[H:2 * H], z[2 * H:3 * H], z[3 * H:], c[0])
    for got, want in zip(out, (i[0], f[0], g[0], o[0], tc[0], c1[0], h1[0])):
        close(got, want, dtype)
    dh, dc = (rng.standard_normal((1, H)).astype(dtype) for _ in range(2))
    _, (_, dc_prev), dparams = lstm.step_backward(p, cache, (dh, dc))
    dzi, dzf, dzg, dzo, dcp = emulation.cell_function("lstm_backward", dtype)(
        dh[0], dc[0], i[0], f[0], g[0], o[0], tc[0], c[0])
    close(np.concatenate([dzi, dzf, dzg, dzo]), dparams["b"], dtype)
    close(dcp, dc_prev[0], dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_gru_cell_reset_after(dtype):
    rng = np.random.default_rng(3)
    D, H = 3, 40
    p = _params(gru, D, H, rng, dtype)
    x, h = rng.standard_normal((1, D)).astype(dtype), rng.standard_normal((1, H)).astype(dtype)
    gi = (x @ p["W_ih"].T + p["b_ih"])[0]
    gh = (h @ p["W_hh"].T + p["b_hh"])[0]
    (h1,), cache = gru.step_forward(p, x, (h,), reset_after=True)
    _, _, r, z, n, gh_n, _ = cache
    out = emulation.cell_function("gru_forward_after", dtype)(gi[:H], gi[H:2 * H], gi[2 * H:],
                                                              gh[:H], gh[H:2 * H], gh[2 * H:], h[0])
    for got, want in zip(out, (r[0], z[0], n[0], h1[0])):
        close(got, want, dtype)
    dh = rng.standard_normal((1, H)).astype(dtype)
    _, (dh_prev,), dparams = gru.step_backward(p, cache, (dh,))
    da_r, da_z, da_n, dgh_n, direct = emulation.cell_function("gru_backward_after", dtype)(
        dh[0], h[0], r[0], z[0], n[0], gh_n[0])
    close(np.concatenate([da_r, da_z, da_n]), dparams["b_ih"], dtype)
    dgh = np.concatenate([da_r, da_z, dgh_n])
    close(dgh, dparams["b_hh"], dtype)
    close(direct + dgh @ p["W_hh"], dh_prev[0], dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_gru_cell_reset_before(dtype):
    rng = np.random.default_rng(4)
    D, H = 3, 40
    p = _params(gru, D, H, rng, dtype)
    x, h = rng.standard_normal((1, D)).astype(dtype), rng.standard_normal((1, H)).astype(dtype)
    W_hh, b_hh = p["W_hh"], p["b_hh"]
    gi = (x @ p["W_ih"].T + p["b_ih"])[0]
    gh_rz = (h @ W_hh[:2 * H].T + b_hh[:2 * H])[0]
    (h1,), cache = gru.step_forward(p, x, (h,), reset_after=False)
    _, _, r, z, n, _, _ = cache
    r_d, z_d, rh = emulation.cell_function("gru_forward_before_gates", dtype)(
        gi[:H], gi[H:2 * H], gh_rz[:H], gh_rz[H:], h[0])
    close(r_d, r[0], dtype)
    close(z_d, z[0], dtype)
    ghn = rh @ W_hh[2 * H:].T + b_hh[2 * H:]
    n_d, h_d = emulation.cell_function("gru_forward_before_output", dtype)(gi[2 * H:], ghn, z_d, h[0])
    close(n_d, n[0], dtype)
    close(h_d, h1[0], dtype)
    dh = rng.standard_normal((1, H)).astype(dtype)
    _, (dh_prev,), dparams = gru.step_backward(p, cache, (dh,))
    da_z, da_n, direct = emulation.cell_function("gru_backward_before_gates", dtype)(dh[0], h[0], z[0], n[0])
    d_rh = da_n @ W_hh[2 * H:]
    da_r, via_rh = emulation.cell_function("gru_backward_before_reset", dtype)(d_rh, h[0], r[0])
    close(np.concatenate([da_r, da_z, da_n]), dparams["b_ih"], dtype)
    close(direct + via_rh + np.concatenate([da_r, da_z]) @ W_hh[:2 * H], dh_prev[0], dtype)
