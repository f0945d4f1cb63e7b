"""The LSTM variants of *LSTM: A Search Space Odyssey* as options of the one LSTM cell."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import rnnbook as rb
from rnnbook import gradcheck
from rnnbook.numpy_ref.lstm import ODYSSEY, OPTIONS

from conftest import assert_grads_close, random_params

VARIANTS = list(ODYSSEY.items()) + [
    ("FGR-NP", dict(gate_recurrence=True)),
    ("NIG-FGR", dict(input_gate=False, gate_recurrence=True)),
    ("CIFG-NOAF", dict(coupled=True, output_activation=False)),
]
IDS = [name for name, _ in VARIANTS]


def problem(options, rng, T=4, B=2, D=3, H=4):
    params = random_params(rb.init_params("lstm", D, H, **options), rng)
    x = rng.standard_normal((T, B, D))
    n = 5 if options.get("gate_recurrence") else 2
    s0 = tuple(0.5 * rng.standard_normal((B, H)) for _ in range(n))
    if options.get("gate_recurrence"):            # previous gates lie in (0, 1)
        s0 = s0[:2] + tuple(rng.uniform(0.05, 0.95, (B, H)) for _ in range(3))
    return params, x, s0


@pytest.mark.parametrize("name,options", VARIANTS, ids=IDS)
def test_variant_gradcheck(name, options, rng):
    params, x, s0 = problem(options, rng)
    report = gradcheck.check_architecture("lstm", params, x, s0, **options)
    report.assert_ok(1e-6)
    assert max(e.raw_error for e in report.entries) < 1e-6, str(report)


@pytest.mark.parametrize("name,options", VARIANTS, ids=IDS)
def test_variant_rtrl_and_window(name, options, rng):
    params, x, s0 = problem(options, rng, T=5)
    y, s, cache = rb.forward("lstm", params, x, s0, **options)
    dy = rng.standard_normal(y.shape)
    ds = tuple(rng.standard_normal(a.shape) for a in s)
    full = rb.backward("lstm", params, cache, dy, ds)
    assert_grads_close(rb.rtrl("lstm", params, x, dy, s0, ds, **options), full, 1e-10)
    assert_grads_close(rb.backward("lstm", params, cache, dy, ds, window=5), full, 1e-12)


def test_variants_change_what_they_say(rng):
    base, x, s0 = problem({"peepholes": True}, rng)
    H = 4
    _, _, cache = rb.forward("lstm", base, x, s0[:2], peepholes=True, input_gate=False)
    assert np.all(cache["steps"][0][4] == 1)                       # i = 1
    _, _, cache = rb.forward("lstm", base, x, s0[:2], peepholes=True, coupled=True)
    i, f = cache["steps"][2][4], cache["steps"][2][5]
    np.testing.assert_allclose(f, 1 - i)
    # gate blocks that a variant does not use get exactly zero gradient
    y, _, cache = rb.forward("lstm", base, x, s0[:2], peepholes=True, forget_gate=False)
    g = rb.backward("lstm", base, cache, np.ones_like(y))
    assert np.all(g["W_ih"][H:2 * H] == 0) and np.all(g["p_f"] == 0)
    assert np.any(g["W_ih"][:H] != 0)
    # no output activation: h = o * c
    y, s, cache = rb.forward("lstm", base, x, s0[:2], peepholes=True, output_activation=False)
    np.testing.assert_allclose(y[-1], cache["steps"][-1][7] * s[1])


def test_default_is_pytorch_form_and_variant_params():
    assert set(rb.init_params("lstm", 3, 4)) == {"W_ih", "W_hh", "b"}
    p = rb.init_params("lstm", 3, 4, **ODYSSEY["FGR"])
    assert p["R"].shape == (12, 12) and p["p_o"].shape == (4,)
    with pytest.raises(ValueError, match="coupled"):
        rb.init_params("lstm", 3, 4, coupled=True, input_gate=False)
    with pytest.raises(ValueError, match="missing"):
        rb.forward("lstm", rb.init_params("lstm", 3, 4), np.zeros((2, 1, 3)), peepholes=True)
    with pytest.raises(ValueError, match="5 arrays"):
        p = rb.init_params("lstm", 3, 4, gate_recurrence=True)
        rb.forward("lstm", p, np.zeros((2, 1, 3)), (np.zeros((1, 4)),) * 2, gate_recurrence=True)


@given(opts=st.fixed_dictionaries({k: st.sampled_from(v) for k, v in OPTIONS.items()}),
       T=st.integers(1, 4), B=st.integers(1, 3), D=st.integers(1, 3), H=st.integers(1, 3),
       seed=st.integers(0, 2**16))
def test_any_option_combination_rtrl_equals_bptt(opts, T, B, D, H, seed):
    if opts["coupled"] and not (opts["input_gate"] and opts["forget_gate"]):
        return                                          # refused combination (tested above)
    rng = np.random.default_rng(seed)
    params, x, s0 = problem(opts, rng, T, B, D, H)
    y, s, cache = rb.forward("lstm", params, x, s0, **opts)
    dy = rng.standard_normal(y.shape)
    assert_grads_close(rb.rtrl("lstm", params, x, dy, s0, **opts), rb.backward("lstm", params, cache, dy), 1e-9)
