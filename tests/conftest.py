"""Shared helpers for the test-suite."""
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=25, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow], derandomize=True)
settings.register_profile("dev", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

#: every cell configuration of the reference, as (architecture, options)
CELL_CONFIGS = [
    ("rnn", {"nonlinearity": "tanh"}),
    ("rnn", {"nonlinearity": "relu"}),
    ("lstm", {}),
    ("gru", {"reset_after": True}),
    ("gru", {"reset_after": False}),
]
CELL_IDS = ["rnn-tanh", "rnn-relu", "lstm", "gru-after", "gru-before"]
N_STATE = {"rnn": 1, "lstm": 2, "gru": 1}


def random_params(params, rng, scale=0.6):
    """Replace every entry (biases included) by a fresh random value: a zero or
    shared-seed bias can hide a gate mix-up."""
    return {k: (scale * rng.standard_normal(v.shape)).astype(v.dtype) for k, v in params.items()}


def random_problem(arch, T, B, D, H, rng, dtype=np.float64, **options):
    """Random parameters, input and initial state for ``arch`` (a cell)."""
    import rnnbook as rb
    p = random_params(rb.init_params(arch, D, H, dtype=dtype, **options), rng)
    x = rng.standard_normal((T, B, D)).astype(dtype)
    s0 = tuple((0.5 * rng.standard_normal((B, H))).astype(dtype) for _ in range(N_STATE[arch]))
    return p, x, s0


def rel_err(a, b):
    """Norm-wise relative difference ``max|a - b| / max(max|b|, tiny)``."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.max(np.abs(a - b), initial=0.0) / max(np.max(np.abs(b), initial=0.0), 1e-300))


def assert_grads_close(g, ref, tol):
    """Every entry of two gradient dicts (``state0`` a tuple) agrees to ``tol`` relative."""
    assert set(g) == set(ref), (sorted(g), sorted(ref))
    for k in ref:
        if k == "state0":
            assert len(g[k]) == len(ref[k])
            for i, (a, b) in enumerate(zip(g[k], ref[k])):
                assert rel_err(a, b) <= tol, f"state0[{i}]: {rel_err(a, b):.2e}"
        else:
            assert rel_err(g[k], ref[k]) <= tol, f"{k}: {rel_err(g[k], ref[k]):.2e}"


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
