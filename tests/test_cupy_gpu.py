"""The cupy backend on a real GPU: parity with numpy_ref, gradient checks, registration.

Marked ``gpu`` and skipped, with the reason, where CuPy or a CUDA device is
missing (CI, most development machines).  Run on a lent GPU with
``pytest -m gpu tests/test_cupy_gpu.py``.
"""
import numpy as np
import pytest

import rnnbook as rb
from rnnbook import dispatch, gradcheck
from rnnbook.cupy_gpu import engine, gpu
from rnnbook.numpy_ref import gru, lstm, rnn

_OK, _WHY = gpu.device_status()
requires_gpu = pytest.mark.skipif(not _OK, reason=f"no CUDA device for the cupy backend: {_WHY}")

TOL = {np.float64: 1e-10, np.float32: 1e-5}
CELLS = [("rnn", rnn, {"nonlinearity": "tanh"}), ("rnn", rnn, {"nonlinearity": "relu"}), ("lstm", lstm, {}),
         ("gru", gru, {"reset_after": True}), ("gru", gru, {"reset_after": False})]
IDS = ["rnn-tanh", "rnn-relu", "lstm", "gru-after", "gru-before"]


def test_unavailable_backend_says_why_and_how():
    """Without a device the backend is not registered, and asking for it explains why (no GPU needed)."""
    if _OK:
        assert "cupy" in rb.available_backends()
        return
    assert "cupy" not in rb.available_backends()
    why = rb.unavailable_backends()["cupy"]
    assert "rnnbook[gpu]" in why or "CUDA device" in why
    with pytest.raises(dispatch.BackendUnavailableError, match="cannot run here"):
        rb.forward("lstm", {}, np.zeros((1, 1, 1)), backend="cupy")


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def _problem(cell, opts, T, B, D, H, seed, heads=1):
    rng = np.random.default_rng(seed)
    # weights at PyTorch's scale U(-1/sqrt(H), 1/sqrt(H)) keep the recurrence contractive, so that
    # float32 rounding of the inputs is not amplified over many steps; biases large and nonzero
    scale = {k: (0.5 if k.startswith("b") else 1 / np.sqrt(H)) for k in cell.param_shapes(D, H, **opts)}
    p = {k: rng.uniform(-scale[k], scale[k], s) for k, s in cell.param_shapes(D, H, **opts).items()}
    if heads > 1:
        p["W_hh"] = p["W_hh"] * engine.head_mask(np, p["W_hh"].shape[0] // H, H, heads, np.float64)
    x = rng.standard_normal((T, B, D))
    s0 = tuple(0.5 * rng.standard_normal((B, H)) for _ in cell.STATE_NAMES)
    dy = rng.standard_normal((T, B, H))
    ds = tuple(rng.standard_normal((B, H)) for _ in cell.STATE_NAMES)
    return p, x, s0, dy, ds


@pytest.mark.gpu
@requires_gpu
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("impl", engine.IMPLS)
@pytest.mark.parametrize("heads", [1, 4])
@pytest.mark.parametrize("arch,cell,opts", CELLS, ids=IDS)
def test_parity_on_gpu(arch, cell, opts, impl, heads, dtype):
    import cupy as cp
    T, B, D, H = 40, 5, 8, 64
    p, x, s0, dy, ds = _problem(cell, opts, T, B, D, H, seed=1, heads=heads)
    y_ref, st_ref, c_ref = cell.forward(p, x, s0, **opts)
    g_ref = cell.backward(p, c_ref, dy, ds)
    dev = lambda a: cp.asarray(a, dtype=dtype)  # noqa: E731
    y, st, cache = rb.forward(arch, {k: dev(v) for k, v in p.items()}, dev(x), tuple(map(dev, s0)),
                              backend="cupy", impl=impl, heads=heads, **opts)
    assert isinstance(y, cp.ndarray) and y.dtype == dtype
    g = rb.backward(arch, {k: dev(v) for k, v in p.items()}, cache, dev(dy), tuple(map(dev, ds)))
    errs = {"y": rel(y.get(), y_ref), **{f"state{i}": rel(a.get(), b) for i, (a, b) in enumerate(zip(st, st_ref))}}
    for k in p:
        want = g_ref[k]
        if k == "W_hh" and heads > 1:
            want = want * engine.head_mask(np, want.shape[0] // H, H, heads, np.float64)
        errs[k] = rel(g[k].get(), want)
    errs["x"] = rel(g["x"].get(), g_ref["x"])
    errs.update({f"dstate0[{i}]": rel(a.get(), b) for i, (a, b) in enumerate(zip(g["state0"], g_ref["state0"]))})
    bad = {k: f"{v:.2e}" for k, v in errs.items() if not v <= TOL[dtype]}
    assert not bad, bad


@pytest.mark.gpu
@requires_gpu
@pytest.mark.parametrize("arch,cell,opts", CELLS, ids=IDS)
def test_persistent_equals_alternating_at_size(arch, cell, opts):
    """At a realistic size (several blocks per head, many steps) the two implementations agree."""
    import cupy as cp
    T, B, D, H = 256, 16, 64, 512
    p, x, s0, dy, ds = _problem(cell, opts, T, B, D, H, seed=2)
    p = {k: cp.asarray(v) for k, v in p.items()}
    x, dy = cp.asarray(x), cp.asarray(dy)
    out = {}
    for impl in engine.IMPLS:
        y, st, cache = rb.forward(arch, p, x, backend="cupy", impl=impl, **opts)
        out[impl] = (y, rb.backward(arch, p, cache, dy))
    (ya, ga), (yp, gp) = out["alternating"], out["persistent"]
    assert rel(yp.get(), ya.get()) < 1e-10
    for k in list(p) + ["x"]:
        assert rel(gp[k].get(), ga[k].get()) < 1e-10, k


@pytest.mark.gpu
@requires_gpu
@pytest.mark.parametrize("impl", engine.IMPLS)
@pytest.mark.parametrize("arch,cell,opts", CELLS, ids=IDS)
def test_gradient_check_through_the_backend(arch, cell, opts, impl):
    import cupy as cp
    p, x, s0, _, _ = _problem(cell, opts, 4, 2, 3, 5, seed=3)
    if opts.get("nonlinearity") == "relu":
        p["b"] = p["b"] + 0.3
    n = len(s0)
    inputs = {**{f"p.{k}": v for k, v in p.items()}, "x": x, **{f"s{i}": s for i, s in enumerate(s0)}}

    def split(inp):
        return ({k[2:]: cp.asarray(v) for k, v in inp.items() if k.startswith("p.")}, cp.asarray(inp["x"]),
                tuple(cp.asarray(inp[f"s{i}"]) for i in range(n)))

    def f(inp):
        pp, xx, ss = split(inp)
        y, st, _ = rb.forward(arch, pp, xx, ss, backend="cupy", impl=impl, **opts)
        return (y.get(),) + tuple(s.get() for s in st)

    def grad_fn(inp, upstream):
        pp, xx, ss = split(inp)
        _, _, cache = rb.forward(arch, pp, xx, ss, backend="cupy", impl=impl, **opts)
        g = rb.backward(arch, pp, cache, cp.asarray(upstream[0]), tuple(cp.asarray(u) for u in upstream[1:]))
        out = {f"p.{k}": g[k].get() for k in pp}
        out["x"] = g["x"].get()
        out.update({f"s{i}": s.get() for i, s in enumerate(g["state0"])})
        return out

    gradcheck.check_function(f, inputs, grad_fn, seed=5).assert_ok()


@pytest.mark.gpu
@requires_gpu
@pytest.mark.parametrize("window", [1, 3, 100])
def test_truncated_bptt_on_gpu(window):
    import cupy as cp
    p, x, s0, dy, ds = _problem(lstm, {}, 6, 2, 3, 8, seed=4)
    _, _, c_ref = lstm.forward(p, x, s0)
    g_ref = lstm.backward(p, c_ref, dy, ds, window=window)
    for impl in engine.IMPLS:
        _, _, cache = rb.forward("lstm", {k: cp.asarray(v) for k, v in p.items()}, cp.asarray(x),
                                 tuple(map(cp.asarray, s0)), backend="cupy", impl=impl)
        g = rb.backward("lstm", {k: cp.asarray(v) for k, v in p.items()}, cache, cp.asarray(dy),
                        tuple(map(cp.asarray, ds)), window=window)
        for k in list(p) + ["x"]:
            assert rel(g[k].get(), g_ref[k]) < 1e-10, (impl, k)


@pytest.mark.gpu
@requires_gpu
def test_kernels_compile_once():
    import cupy as cp
    L = gpu.launcher()
    p = rb.init_params("gru", 4, 16, backend="cupy")
    x = cp.random.standard_normal((5, 2, 4))
    for impl in engine.IMPLS:
        rb.forward("gru", p, x, backend="cupy", impl=impl)
    modules = dict(L._modules)
    kernels = dict(L._kernels)
    for impl in engine.IMPLS:
        rb.forward("gru", p, x, backend="cupy", impl=impl)
    assert L._modules == modules and all(L._kernels[k] is v for k, v in kernels.items())
