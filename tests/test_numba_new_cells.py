"""The Numba backend for SCRN, the leaky RNN and every LSTM variant option, against ``numpy_ref``.

Same error measure and bounds as ``test_numba_parity.py``: normwise relative error
``max|a - b| / max|b|`` per array against ``numpy_ref`` in the same dtype, at most 1e-10
in float64 and 1e-5 in float32, for the outputs, every final-state array and every
gradient (parameters, ``x``, every initial-state array), with full BPTT and BPTT(k).
Every parameter is random (biases, ``τ``/``ρ``, peepholes and ``R`` included), and so are
the initial state and the error on the final state.
"""
import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import rnnbook as rb
from rnnbook import gradcheck, numpy_ref
from rnnbook.checks import state_names

numba_cpu = pytest.importorskip("rnnbook.numba_cpu")
from rnnbook.numba_cpu import bptt  # noqa: E402

TOL = {np.float64: 1e-10, np.float32: 1e-5}
STRATEGIES = ["loops", "blas"] if numba_cpu.gemm.HAVE_BLAS else ["loops"]
LSTM_OPTIONS = numpy_ref.lstm.OPTIONS


def lstm_combinations():
    """Every option combination ``numpy_ref.lstm`` accepts (``coupled`` needs both gates it couples)."""
    out = []
    for values in itertools.product(*LSTM_OPTIONS.values()):
        opts = dict(zip(LSTM_OPTIONS, values))
        if not opts["coupled"] or (opts["input_gate"] and opts["forget_gate"]):
            out.append(opts)
    return out


ALL_LSTM = lstm_combinations()


def lstm_id(opts):
    """A short name: the options that differ from the defaults."""
    changed = [k if v is True else f"no_{k}" for k, v in opts.items() if v != LSTM_OPTIONS[k][0]]
    return "-".join(changed) or "default"


def names_of(arch, opts):
    return state_names(getattr(numpy_ref, arch), {**{k: v[0] for k, v in getattr(numpy_ref, arch).OPTIONS.items()},
                                                   **opts})


def rel_error(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape
    scale = np.abs(b).max()
    diff = np.abs(a - b).max()
    return diff / scale if scale > 0 else diff


def random_problem(arch, opts, T, B, D, H, dtype, seed):
    """Every parameter random; ``τ`` in [1.2, 3] when trained directly; previous gates in (0, 1)."""
    rng = np.random.default_rng(seed)
    params = rb.init_params(arch, D, H, seed=seed, dtype=dtype, **opts)
    params = {k: (v + 0.3 * rng.standard_normal(v.shape)).astype(dtype) for k, v in params.items()}
    if "tau" in params:
        params["tau"] = rng.uniform(1.2, 3.0, H).astype(dtype)
    names = names_of(arch, opts)
    x = rng.standard_normal((T, B, D)).astype(dtype)
    state0 = [rng.standard_normal((B, H)).astype(dtype) for _ in names]
    for k, n in enumerate(names):
        if n in ("i", "f", "o"):
            state0[k] = rng.uniform(0.05, 0.95, (B, H)).astype(dtype)
    dy = rng.standard_normal((T, B, H)).astype(dtype)
    dstate = tuple(rng.standard_normal((B, H)).astype(dtype) for _ in names)
    return params, x, tuple(state0), dy, dstate


def compare(arch, opts, T, B, D, H, dtype, strategy="loops", window=None, seed=0, use_state=True):
    params, x, state0, dy, dstate = random_problem(arch, opts, T, B, D, H, dtype, seed)
    if not use_state:
        state0 = dstate = None
    y0, s0, c0 = rb.forward(arch, params, x, state0, backend="numpy", **opts)
    g0 = rb.backward(arch, params, c0, dy, dstate, window=window)
    with bptt.strategy(strategy):
        y1, s1, c1 = rb.forward(arch, params, x, state0, backend="numba", **opts)
        g1 = rb.backward(arch, params, c1, dy, dstate, window=window)
    assert c1["backend"] == "numba"
    assert y1.dtype == dtype and all(s.dtype == dtype for s in s1)
    assert len(s1) == len(s0) and len(g1["state0"]) == len(g0["state0"])
    assert set(g1) == set(g0)
    errors = {"y": rel_error(y1, y0)}
    errors.update({f"state[{i}]": rel_error(a, b) for i, (a, b) in enumerate(zip(s1, s0))})
    for k in list(params) + ["x"]:
        assert g1[k].dtype == dtype, k
        errors[f"d{k}"] = rel_error(g1[k], g0[k])
    errors.update({f"dstate0[{i}]": rel_error(a, b) for i, (a, b) in enumerate(zip(g1["state0"], g0["state0"]))})
    # a NaN error compares False with everything: make it the worst, so that it fails the check
    worst = max(errors, key=lambda k: np.inf if np.isnan(errors[k]) else errors[k])
    assert errors[worst] <= TOL[dtype], (f"{arch} {opts} T,B,D,H={T, B, D, H} {np.dtype(dtype)} {strategy} "
                                         f"window={window}: {worst} off by {errors[worst]:.2e}\n{errors}")
    return errors


# ------------------------------------------------------------------ Hypothesis parity
dims = st.integers(1, 6)
new_cells = st.one_of(
    st.builds(lambda a, nl: ("scrn", {"alpha": a, "nonlinearity": nl}),
              st.floats(0.0, 1.0), st.sampled_from(numpy_ref.scrn.OPTIONS["nonlinearity"])),
    st.builds(lambda nl, tp: ("leaky", {"nonlinearity": nl, "tau_param": tp}),
              st.sampled_from(numpy_ref.leaky.OPTIONS["nonlinearity"]),
              st.sampled_from(numpy_ref.leaky.OPTIONS["tau_param"])),
    st.sampled_from(ALL_LSTM).map(lambda o: ("lstm", o)),
)
common = dict(T=dims, B=dims, D=dims, H=st.integers(1, 7), dtype=st.sampled_from([np.float64, np.float32]),
              strategy=st.sampled_from(STRATEGIES), window=st.one_of(st.none(), st.integers(1, 8)),
              use_state=st.booleans(), seed=st.integers(0, 2**16))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cell=new_cells, **common)
def test_parity_with_numpy_reference(cell, T, B, D, H, dtype, strategy, window, use_state, seed):
    arch, opts = cell
    compare(arch, opts, T, B, D, H, dtype, strategy, window, seed, use_state)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(opts=st.fixed_dictionaries({k: st.sampled_from(v) for k, v in LSTM_OPTIONS.items()}), **common)
def test_lstm_any_options_parity(opts, T, B, D, H, dtype, strategy, window, use_state, seed):
    """Options drawn one by one; a combination the reference refuses is refused on numba too."""
    if opts["coupled"] and not (opts["input_gate"] and opts["forget_gate"]):
        params = rb.init_params("lstm", D, H, peepholes=opts["peepholes"], gate_recurrence=opts["gate_recurrence"])
        with pytest.raises(ValueError, match="coupled"):
            rb.forward("lstm", params, np.zeros((T, B, D)), backend="numba", **opts)
        return
    compare("lstm", opts, T, B, D, H, dtype, strategy, window, seed, use_state)


@pytest.mark.parametrize("opts", ALL_LSTM, ids=[lstm_id(o) for o in ALL_LSTM])
def test_every_lstm_option_combination(opts):
    """All 160 accepted combinations, each in both dtypes, full BPTT and a window."""
    assert len(ALL_LSTM) == 160
    compare("lstm", opts, 4, 3, 2, 3, np.float64, STRATEGIES[-1], None, seed=1)
    compare("lstm", opts, 5, 2, 3, 4, np.float32, "loops", 2, seed=2)


SCRN_LEAKY = [("scrn", {}), ("scrn", {"alpha": 0.5, "nonlinearity": "tanh"}), ("scrn", {"alpha": 0.0}),
              ("scrn", {"alpha": 1.0}), ("leaky", {}), ("leaky", {"nonlinearity": "tanh"}),
              ("leaky", {"nonlinearity": "relu"}), ("leaky", {"tau_param": "direct"}),
              ("leaky", {"tau_param": "direct", "nonlinearity": "tanh"})]
SCRN_LEAKY_IDS = ["scrn", "scrn-a0.5-tanh", "scrn-a0", "scrn-a1", "leaky", "leaky-tanh", "leaky-relu",
                  "leaky-direct", "leaky-direct-tanh"]


@pytest.mark.parametrize("arch,opts", SCRN_LEAKY, ids=SCRN_LEAKY_IDS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_parity_fixed_shapes(arch, opts, dtype, strategy):
    """Every configuration, dtype and product path at least once, full BPTT and two windows."""
    for window in (None, 1, 3):
        compare(arch, opts, 6, 5, 4, 7, dtype, strategy, window, seed=3)


# ------------------------------------------------------------------ structure
@pytest.mark.parametrize("arch,opts", [("scrn", {"alpha": 0.7}), ("leaky", {}),
                                       ("lstm", {"peepholes": True, "gate_recurrence": True, "coupled": True})])
def test_window_at_least_T_is_full_bptt_and_short_windows_truncate(arch, opts):
    params, x, state0, dy, dstate = random_problem(arch, opts, 5, 3, 2, 4, np.float64, 4)
    _, _, cache = rb.forward(arch, params, x, state0, backend="numba", **opts)
    full = rb.backward(arch, params, cache, dy, dstate)
    for k in (5, 9):
        win = rb.backward(arch, params, cache, dy, dstate, window=k)
        for name in list(params) + ["x"]:
            np.testing.assert_allclose(win[name], full[name], rtol=1e-12, atol=1e-13)
    short = rb.backward(arch, params, cache, dy, dstate, window=1)
    recurrent = {"scrn": "R", "leaky": "W_hh", "lstm": "R"}[arch]
    assert np.max(np.abs(short[recurrent] - full[recurrent])) > 1e-3


@pytest.mark.parametrize("arch,opts", [("scrn", {}), ("leaky", {"nonlinearity": "tanh"}),
                                       ("lstm", {"peepholes": True, "gate_recurrence": True})])
def test_threaded_row_blocks_agree(monkeypatch, arch, opts):
    """With two threads the rows are cut into blocks; results equal one thread's and the reference."""
    import numba
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs NUMBA_NUM_THREADS >= 2")
    params, x, state0, dy, dstate = random_problem(arch, opts, 5, 8, 3, 6, np.float64, 5)
    old = numba.get_num_threads()
    monkeypatch.setattr(bptt, "MIN_MACS_FOR_THREADS", 0)
    out = []
    try:
        for n in (2, 1):
            numba.set_num_threads(n)
            with bptt.strategy("loops"):
                assert bptt.plan(8, 6, 6, 5)[1] == n
                y, _, cache = rb.forward(arch, params, x, state0, backend="numba", **opts)
                out.append((y, rb.backward(arch, params, cache, dy, dstate, window=2)))
    finally:
        numba.set_num_threads(old)
    (y2, g2), (y1, g1) = out
    np.testing.assert_array_equal(y1, y2)
    for k in list(params) + ["x"]:
        np.testing.assert_allclose(g2[k], g1[k], rtol=1e-12, atol=1e-14)
    compare(arch, opts, 5, 8, 3, 6, np.float64, "loops", 2, seed=5)


@pytest.mark.parametrize("arch,opts", [("scrn", {"alpha": 0.6, "nonlinearity": "tanh"}),
                                       ("leaky", {"tau_param": "direct"}),
                                       ("lstm", numpy_ref.lstm.ODYSSEY["FGR"]),
                                       ("lstm", {"coupled": True, "output_activation": False})])
def test_step_functions_match_reference(arch, opts):
    """``step_forward``/``step_backward`` exist with the reference's signatures and results."""
    ref, mod = getattr(numpy_ref, arch), getattr(numba_cpu, arch)
    params, x, state0, dy, dstate = random_problem(arch, opts, 1, 3, 2, 5, np.float64, 6)
    s_ref, c_ref = ref.step_forward(params, x[0], state0, **opts)
    s_nb, c_nb = mod.step_forward(params, x[0], state0, **opts)
    assert len(s_nb) == len(s_ref)
    for a, b in zip(s_nb, s_ref):
        assert rel_error(a, b) < 1e-12
    dx_ref, ds_ref, dp_ref = ref.step_backward(params, c_ref, dstate)
    dx_nb, ds_nb, dp_nb = mod.step_backward(params, c_nb, dstate)
    assert rel_error(dx_nb, dx_ref) < 1e-12
    assert len(ds_nb) == len(ds_ref)
    for a, b in zip(ds_nb, ds_ref):
        assert rel_error(a, b) < 1e-12
    assert set(dp_nb) == set(params)
    for k in params:
        assert rel_error(dp_nb[k], dp_ref[k]) < 1e-12


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_scrn_context_helpers_match_reference(dtype):
    params, x, state0, dy, dstate = random_problem("scrn", {"alpha": 0.8}, 6, 3, 4, 5, dtype, 7)
    ds_seq = np.random.default_rng(8).standard_normal((6, 3, 5)).astype(dtype)
    _, _, c0 = rb.forward("scrn", params, x, state0, backend="numpy", alpha=0.8)
    _, _, c1 = rb.forward("scrn", params, x, state0, backend="numba", alpha=0.8)
    assert rel_error(numba_cpu.scrn.context_sequence(c1), numpy_ref.scrn.context_sequence(c0)) <= TOL[dtype]
    g0 = numpy_ref.scrn.context_backward(params, c0, ds_seq)
    g1 = numba_cpu.scrn.context_backward(params, c1, ds_seq)
    for k in ("B", "x"):
        assert g1[k].dtype == dtype and rel_error(g1[k], g0[k]) <= TOL[dtype], k
    for a, b in zip(g1["state0"], g0["state0"]):
        assert rel_error(a, b) <= TOL[dtype]
    with pytest.raises(TypeError, match="numba"):
        numba_cpu.scrn.context_sequence(c0)
    with pytest.raises(ValueError, match="ds_seq"):
        numba_cpu.scrn.context_backward(params, c1, ds_seq[:, :, :2])


# ------------------------------------------------------------------ gradient checks through numba
GRADCHECK = SCRN_LEAKY + [("lstm", o) for o in numpy_ref.lstm.ODYSSEY.values()] + [
    ("lstm", {"gate_recurrence": True}),
    ("lstm", {"input_gate": False, "gate_recurrence": True}),
    ("lstm", {"coupled": True, "output_activation": False}),
    ("lstm", {"peepholes": True, "coupled": True, "gate_recurrence": True, "input_activation": False}),
    ("lstm", {"forget_gate": False, "output_gate": False, "output_activation": False, "peepholes": True}),
]
GRADCHECK_IDS = SCRN_LEAKY_IDS + [f"lstm-{k}" for k in numpy_ref.lstm.ODYSSEY] + [
    "lstm-FGR-NP", "lstm-NIG-FGR", "lstm-CIFG-NOAF", "lstm-peep-CIFG-FGR-NIAF", "lstm-NFG-NOG-NOAF-peep"]


@pytest.mark.parametrize("arch,opts", GRADCHECK, ids=GRADCHECK_IDS)
def test_gradient_check_through_numba(arch, opts):
    """Centred differences of the Numba forward against the Numba backward (float64)."""
    params, x, state0, _, _ = random_problem(arch, opts, 4, 2, 3, 4, np.float64, 9)
    report = gradcheck.check_architecture(arch, params, x, state0, backend="numba", seed=1, **opts)
    names = {e.name for e in report.entries}
    assert names == {f"params.{k}" for k in params} | {"x"} | {f"state0[{i}]" for i in range(len(state0))}
    report.assert_ok(1e-6)
    assert max(e.raw_error for e in report.entries) < 1e-6, str(report)


# ------------------------------------------------------------------ composites
@pytest.mark.parametrize("cell,opts", [("scrn", {"alpha": 0.7}), ("leaky", {"nonlinearity": "tanh"}),
                                       ("lstm", {"peepholes": True, "gate_recurrence": True})])
def test_stacked_bidirectional_on_numba(cell, opts):
    """Two bidirectional layers of the new cells: numba equals numpy, and its gradient checks out."""
    rng = np.random.default_rng(10)
    T, B, D, H = 4, 2, 3, 3
    kw = dict(cell=cell, bidirectional=True, **opts)
    params = {k: v + 0.3 * rng.standard_normal(v.shape)
              for k, v in rb.init_params("stacked", D, H, num_layers=2, **kw).items()}
    x = rng.standard_normal((T, B, D))
    dy = rng.standard_normal((T, B, 2 * H))
    out = {}
    for be in ("numpy", "numba"):
        y, s, cache = rb.forward("stacked", params, x, backend=be, **kw)
        out[be] = (y, s, rb.backward("stacked", params, cache, dy, window=3))
    assert rel_error(out["numba"][0], out["numpy"][0]) < 1e-10
    for a, b in zip(out["numba"][1], out["numpy"][1]):
        assert rel_error(a, b) < 1e-10
    for k in list(params) + ["x"]:
        assert rel_error(out["numba"][2][k], out["numpy"][2][k]) < 1e-10, k
    gradcheck.check_architecture("stacked", params, x, backend="numba", **kw).assert_ok(1e-6)


# ------------------------------------------------------------------ registration and errors
def test_registered_on_numba():
    rows = set(rb.coverage())
    for arch in ("scrn", "leaky", "lstm"):
        for op in ("init_params", "forward", "backward"):
            assert (arch, op, "numba") in rows
    for arch in ("scrn", "leaky"):
        assert (arch, "rtrl", "numba") not in rows
    with rb.use_backend("numba"):
        _, _, cache = rb.forward("lstm", rb.init_params("lstm", 2, 3, peepholes=True),
                                 np.zeros((2, 1, 2)), peepholes=True)
    assert cache["backend"] == "numba" and cache["variant"] == numba_cpu.lstm.PEEPHOLES


def test_variant_flags_map_each_option_to_its_own_bit():
    lstm = numba_cpu.lstm
    defaults = {k: v[0] for k, v in LSTM_OPTIONS.items()}
    assert lstm.variant_flags(defaults) == 0
    bits = [lstm.variant_flags({**defaults, k: v[1]}) for k, v in LSTM_OPTIONS.items()]
    assert sorted(bits) == [1 << n for n in range(len(LSTM_OPTIONS))]
    assert len({lstm.variant_flags(o) for o in ALL_LSTM}) == len(ALL_LSTM)


def test_bad_input_is_rejected_on_numba():
    x = np.zeros((2, 3, 2))
    p = rb.init_params("leaky", 2, 4, tau_param="direct")
    p["tau"][1] = 0.5
    with pytest.raises(ValueError, match=r"params\['tau'\] must be >= 1.*clip_tau"):
        rb.forward("leaky", p, x, backend="numba", tau_param="direct")
    with pytest.raises(ValueError, match=r"alpha.*\[0, 1\]"):
        rb.forward("scrn", rb.init_params("scrn", 2, 4), x, backend="numba", alpha=1.5)
    with pytest.raises(ValueError, match="coupled"):
        rb.forward("lstm", rb.init_params("lstm", 2, 4), x, backend="numba", coupled=True, forget_gate=False)
    q = rb.init_params("lstm", 2, 4, gate_recurrence=True)
    with pytest.raises(ValueError, match="5 arrays"):
        rb.forward("lstm", q, x, (np.zeros((3, 4)),) * 2, backend="numba", gate_recurrence=True)
    y, _, cache = rb.forward("lstm", q, x, backend="numba", gate_recurrence=True)
    with pytest.raises(ValueError, match="5 arrays"):
        rb.backward("lstm", q, cache, np.zeros_like(y), (np.zeros((3, 4)),) * 2)
    with pytest.raises(ValueError, match="missing"):
        rb.forward("lstm", rb.init_params("lstm", 2, 4), x, backend="numba", peepholes=True)
    with pytest.raises(TypeError, match="float32"):
        rb.forward("scrn", rb.init_params("scrn", 2, 4, dtype=np.float32), x, backend="numba")
