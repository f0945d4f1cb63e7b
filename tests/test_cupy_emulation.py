"""Whole GPU kernels run on the CPU through the host emulation, against numpy_ref.

The backend's own driver (rnnbook/cupy_gpu/engine.py) runs with NumPy arrays and
the emulated kernels in place of CuPy and the GPU: the same kernel source, the
same launch configuration logic, the same cache layout.  Shapes are tiny
(every CUDA thread is an OS thread).  The persistent kernels are planned with
several blocks per head, so the inter-block barrier is exercised.
"""
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rnnbook import gradcheck
from rnnbook.numpy_ref import gru, lstm, rnn

emulation = pytest.importorskip("rnnbook.cupy_gpu.emulation")
from rnnbook.cupy_gpu import engine  # noqa: E402

TOL = {np.float64: 1e-10, np.float32: 1e-5}
CELLS = [(rnn, {"nonlinearity": "tanh"}), (rnn, {"nonlinearity": "relu"}), (lstm, {}),
         (gru, {"reset_after": True}), (gru, {"reset_after": False})]
CELL_IDS = ["rnn-tanh", "rnn-relu", "lstm", "gru-after", "gru-before"]


@pytest.fixture(scope="module")
def launcher():
    try:
        return emulation.EmulatedLauncher()
    except emulation.EmulationUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(str(exc))
        pytest.skip(str(exc))


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def problem(cell, opts, T, B, D, H, seed, dtype=np.float64, heads=1):
    rng = np.random.default_rng(seed)
    p = {k: rng.uniform(-0.6, 0.6, s) for k, s in cell.param_shapes(D, H, **opts).items()}
    if heads > 1:
        G = p["W_hh"].shape[0] // H
        p["W_hh"] = p["W_hh"] * engine.head_mask(np, G, H, heads, np.float64)
    x = rng.standard_normal((T, B, D))
    s0 = tuple(0.5 * rng.standard_normal((B, H)) for _ in cell.STATE_NAMES)
    dy = rng.standard_normal((T, B, H))
    ds = tuple(rng.standard_normal((B, H)) for _ in cell.STATE_NAMES)
    cast = lambda a: a.astype(dtype)  # noqa: E731
    return ({k: cast(v) for k, v in p.items()}, cast(x), tuple(map(cast, s0)), cast(dy), tuple(map(cast, ds)))


def compare(launcher, cell, opts, impl, T, B, D, H, seed, dtype=np.float64, heads=1, tuning=None, window=None,
            dstate=True):
    p, x, s0, dy, ds = problem(cell, opts, T, B, D, H, seed, dtype, heads)
    p64, x64, s064 = ({k: v.astype(np.float64) for k, v in p.items()}, x.astype(np.float64),
                      tuple(s.astype(np.float64) for s in s0))
    y_ref, st_ref, c_ref = cell.forward(p64, x64, s064, **opts)
    ds64 = tuple(d.astype(np.float64) for d in ds) if dstate else None
    g_ref = cell.backward(p64, c_ref, dy.astype(np.float64), ds64, window=window)
    y, st, cache = engine.forward(launcher, cell, p, x, s0, dict(opts, impl=impl, heads=heads, tuning=tuning))
    assert y.dtype == dtype and y.shape == (T, B, H)
    g = engine.backward(launcher, cell, p, cache, dy, ds if dstate else None, window)
    tol = TOL[dtype]
    errs = {"y": rel(y, y_ref)}
    errs.update({f"state[{i}]": rel(a, b) for i, (a, b) in enumerate(zip(st, st_ref))})
    for k in p:
        want = g_ref[k]
        if k == "W_hh" and heads > 1:     # off-block entries are not parameters of the head-wise model
            want = want * engine.head_mask(np, want.shape[0] // H, H, heads, np.float64)
        errs[f"d{k}"] = rel(g[k], want)
    errs["dx"] = rel(g["x"], g_ref["x"])
    errs.update({f"dstate0[{i}]": rel(a, b) for i, (a, b) in enumerate(zip(g["state0"], g_ref["state0"]))})
    bad = {k: f"{v:.2e}" for k, v in errs.items() if not v <= tol}
    assert not bad, f"{cell.NAME} {opts} impl={impl} {np.dtype(dtype)}: errors above {tol}: {bad}"
    return y, g


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("impl", engine.IMPLS)
@pytest.mark.parametrize("cell,opts", CELLS, ids=CELL_IDS)
def test_parity_with_numpy_ref(launcher, cell, opts, impl, dtype):
    # H = 7 over blocks of 3 units: three blocks per head, the last one partly used;
    # chunk 4: the recurrent product is staged in two chunks of h (and more of dz)
    compare(launcher, cell, opts, impl, T=5, B=3, D=4, H=7, seed=11, dtype=dtype,
            tuning={"units_per_block": 3, "chunk": 4})


@pytest.mark.parametrize("cell,opts", CELLS, ids=CELL_IDS)
def test_persistent_heads_and_batch_tiles(launcher, cell, opts):
    # 2 heads of 4 units, 2 blocks per head, batch of 5 in tiles of 2 (3 tiles): 12 blocks,
    # 6 independent barrier groups
    compare(launcher, cell, opts, "persistent", T=4, B=5, D=3, H=8, seed=12, heads=2,
            tuning={"units_per_block": 2, "batch_tile": 2, "chunk": 3, "threads": 16})


@pytest.mark.parametrize("cell,opts", CELLS, ids=CELL_IDS)
def test_alternating_heads(launcher, cell, opts):
    compare(launcher, cell, opts, "alternating", T=3, B=2, D=3, H=6, seed=13, heads=3)


@pytest.mark.parametrize("cell,opts", CELLS, ids=CELL_IDS)
def test_default_plan_single_block_heads(launcher, cell, opts):
    """The default plan (3 'multiprocessors'); with 4 heads every head fits one block."""
    compare(launcher, cell, opts, "persistent", T=6, B=2, D=2, H=8, seed=14)
    compare(launcher, cell, opts, "persistent", T=6, B=2, D=2, H=8, seed=15, heads=4)


@pytest.mark.parametrize("impl", engine.IMPLS)
@pytest.mark.parametrize("cell,opts", CELLS, ids=CELL_IDS)
@pytest.mark.parametrize("window", [1, 2, 10])
def test_truncated_bptt(launcher, cell, opts, impl, window):
    compare(launcher, cell, opts, impl, T=4, B=2, D=2, H=3, seed=16, window=window,
            tuning={"units_per_block": 2})


@pytest.mark.parametrize("cell,opts", CELLS, ids=CELL_IDS)
def test_no_dstate_and_zero_state(launcher, cell, opts):
    p, x, _, dy, _ = problem(cell, opts, 3, 2, 2, 4, seed=17)
    y_ref, _, c_ref = cell.forward(p, x, None, **opts)
    g_ref = cell.backward(p, c_ref, dy)
    for impl in engine.IMPLS:
        y, _, cache = engine.forward(launcher, cell, p, x, None, dict(opts, impl=impl))
        g = engine.backward(launcher, cell, p, cache, dy, None, None)
        assert rel(y, y_ref) < 1e-12
        for k in list(p) + ["x"]:
            assert rel(g[k], g_ref[k]) < 1e-10, (impl, k)


@pytest.mark.parametrize("cell,opts", CELLS, ids=CELL_IDS)
def test_every_output_is_written(launcher, cell, opts):
    """Poison the buffers the kernels fill: a missed element would surface as NaN."""
    p, x, s0, dy, ds = problem(cell, opts, 4, 3, 2, 5, seed=18)

    class PoisonedNumPy:                      # engine allocates its outputs with xp.empty
        def __getattr__(self, name):
            return getattr(np, name)

        @staticmethod
        def empty(shape, dtype=np.float64):
            return np.full(shape, np.nan, dtype)

    poisoned = emulation.EmulatedLauncher()
    poisoned.xp = PoisonedNumPy()
    for impl in engine.IMPLS:
        y, st, cache = engine.forward(poisoned, cell, p, x, s0, dict(opts, impl=impl, tuning={"units_per_block": 2}))
        g = engine.backward(poisoned, cell, p, cache, dy, ds, None)
        arrays = [y, *st, *(a for a in (cache["c"], cache["gates"], cache["rh"]) if a is not None),
                  *(v for k, v in g.items() if k != "state0"), *g["state0"]]
        assert all(np.all(np.isfinite(a)) for a in arrays), impl


@pytest.mark.parametrize("impl", engine.IMPLS)
@pytest.mark.parametrize("cell,opts", CELLS, ids=CELL_IDS)
def test_gradient_check_through_the_kernels(launcher, cell, opts, impl):
    """Finite differences of the emulated forward kernels against the emulated backward kernels."""
    p, x, s0, _, _ = problem(cell, opts, 3, 2, 2, 3, seed=19)
    if opts.get("nonlinearity") == "relu":          # keep pre-activations away from the kink
        p["b"] = p["b"] + 0.3
    options = dict(opts, impl=impl, tuning={"units_per_block": 2})
    inputs = {**{f"p.{k}": v for k, v in p.items()}, "x": x, **{f"s{i}": s for i, s in enumerate(s0)}}
    n_state = len(s0)

    def split(inp):
        return ({k[2:]: v for k, v in inp.items() if k.startswith("p.")}, inp["x"],
                tuple(inp[f"s{i}"] for i in range(n_state)))

    def f(inp):
        pp, xx, ss = split(inp)
        y, st, _ = engine.forward(launcher, cell, pp, xx, ss, options)
        return (y,) + tuple(st)

    def grad_fn(inp, upstream):
        pp, xx, ss = split(inp)
        _, _, cache = engine.forward(launcher, cell, pp, xx, ss, options)
        g = engine.backward(launcher, cell, pp, cache, upstream[0], tuple(upstream[1:]), None)
        out = {f"p.{k}": g[k] for k in pp}
        out["x"] = g["x"]
        out.update({f"s{i}": s for i, s in enumerate(g["state0"])})
        return out

    gradcheck.check_function(f, inputs, grad_fn, seed=3).assert_ok()


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(T=st.integers(1, 4), B=st.integers(1, 3), D=st.integers(1, 3), H=st.integers(1, 6),
       cell_index=st.integers(0, 4), impl=st.sampled_from(engine.IMPLS), U=st.integers(1, 4),
       chunk=st.integers(1, 5), seed=st.integers(0, 1000))
def test_property_shapes(launcher, T, B, D, H, cell_index, impl, U, chunk, seed):
    cell, opts = CELLS[cell_index]
    compare(launcher, cell, opts, impl, T, B, D, H, seed, tuning={"units_per_block": U, "chunk": chunk})


# --------------------------------------------------------------------------- errors
def test_bad_options_and_weights_are_refused(launcher):
    p, x, s0, _, _ = problem(lstm, {}, 2, 2, 2, 4, seed=20)
    with pytest.raises(ValueError, match="impl"):
        engine.forward(launcher, lstm, p, x, s0, {"impl": "fused"})
    with pytest.raises(ValueError, match="heads=3 must divide"):
        engine.forward(launcher, lstm, p, x, s0, {"heads": 3})
    with pytest.raises(ValueError, match="outside the 2 diagonal head blocks"):
        engine.forward(launcher, lstm, p, x, s0, {"heads": 2})
    with pytest.raises(TypeError, match="unknown option"):
        engine.forward(launcher, lstm, p, x, s0, {"reset_after": True})
    with pytest.raises(ValueError, match="x must have 3 dimensions"):
        engine.forward(launcher, lstm, p, x[0], s0, {})


def test_weights_that_do_not_fit_on_chip_name_the_alternative(launcher):
    small = emulation.EmulatedLauncher(max_shared_bytes=1024)
    p, x, s0, _, _ = problem(lstm, {}, 2, 2, 2, 40, seed=21)
    with pytest.raises(ValueError, match="impl='alternating'"):
        engine.forward(small, lstm, p, x, s0, {"impl": "persistent"})


def test_init_params_heads(launcher):
    p = engine.init_params(np, gru, 3, 8, seed=0, heads=2)
    off = p["W_hh"] * (1 - engine.head_mask(np, 3, 8, 2, np.float64))
    assert np.all(off == 0) and np.any(p["W_hh"] != 0)
    ref = gru.init_params(3, 8, seed=0)
    assert np.array_equal(p["W_ih"], ref["W_ih"])


def test_kernel_arguments_are_type_checked(launcher):
    from rnnbook.cupy_gpu import sources
    k = launcher.kernel(sources.kernel_name("rnn_pointwise_forward", np.float64, False))
    a = np.zeros((2, 3))
    with pytest.raises(TypeError, match="numpy.int32"):
        k((1,), (32,), (a, a, a, 2, 3))                        # Python ints would be 64-bit on the GPU
    with pytest.raises(TypeError, match="float64"):
        k((1,), (32,), (a.astype(np.float32), a, a, np.int32(2), np.int32(3)))
