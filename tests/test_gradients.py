"""Gradient checks (finite differences) for every reference cell and the composites."""
import numpy as np
import pytest

import rnnbook as rb
from rnnbook import gradcheck

from conftest import CELL_CONFIGS, CELL_IDS, N_STATE, random_params

TOL = 1e-6


@pytest.mark.parametrize("arch,options", CELL_CONFIGS, ids=CELL_IDS)
@pytest.mark.parametrize("shape", [(4, 3, 5, 6), (1, 1, 1, 1), (7, 2, 3, 4)])
def test_cell_gradcheck(arch, options, shape, rng):
    T, B, D, H = shape
    params = random_params(rb.init_params(arch, D, H, **options), rng)
    x = rng.standard_normal((T, B, D))
    s0 = tuple(0.5 * rng.standard_normal((B, H)) for _ in range(N_STATE[arch]))
    report = gradcheck.check_architecture(arch, params, x, s0, seed=1, **options)
    names = {e.name for e in report.entries}
    assert names == {f"params.{k}" for k in params} | {"x"} | {f"state0[{i}]" for i in range(N_STATE[arch])}
    report.assert_ok(TOL)
    # for the cells the check passes even without the rounding-noise allowance
    assert max(e.raw_error for e in report.entries) < TOL, str(report)


@pytest.mark.parametrize("cell,options", [("lstm", {}), ("gru", {"reset_after": False}),
                                          ("rnn", {"nonlinearity": "tanh"})])
@pytest.mark.parametrize("residual", [False, True])
def test_stacked_gradcheck(cell, options, residual, rng):
    T, B, D, H = 4, 2, 3, 4
    params = random_params(rb.init_params("stacked", D, H, cell=cell, num_layers=2, residual=residual,
                                          **options), rng)
    assert sorted({k.split(".")[0] for k in params}) == ["layer0", "layer1"]
    x = rng.standard_normal((T, B, D))
    s0 = tuple(0.5 * rng.standard_normal((B, H)) for _ in range(2 * N_STATE[cell]))
    gradcheck.check_architecture("stacked", params, x, s0, cell=cell, residual=residual, **options).assert_ok(TOL)


@pytest.mark.parametrize("cell,options", [("lstm", {}), ("gru", {}), ("rnn", {"nonlinearity": "relu"})])
def test_bidirectional_gradcheck(cell, options, rng):
    T, B, D, H = 5, 2, 3, 4
    params = random_params(rb.init_params("bidirectional", D, H, cell=cell, **options), rng)
    x = rng.standard_normal((T, B, D))
    s0 = tuple(0.5 * rng.standard_normal((B, H)) for _ in range(2 * N_STATE[cell]))
    gradcheck.check_architecture("bidirectional", params, x, s0, cell=cell, **options).assert_ok(TOL)


def test_stacked_bidirectional_residual_gradcheck(rng):
    params = random_params(rb.init_params("stacked", 3, 4, cell="lstm", num_layers=2, residual=True,
                                          bidirectional=True), rng)
    x = rng.standard_normal((3, 2, 3))
    gradcheck.check_architecture("stacked", params, x, cell="lstm", residual=True,
                                 bidirectional=True).assert_ok(TOL)


def test_residual_changes_output(rng):
    """The residual option is really wired in (outputs differ, by exactly the layer input)."""
    params = random_params(rb.init_params("stacked", 4, 4, cell="gru", num_layers=2), rng)
    x = rng.standard_normal((3, 2, 4))
    y0, _, c0 = rb.forward("stacked", params, x, cell="gru")
    y1, _, _ = rb.forward("stacked", params, x, cell="gru", residual=True)
    layer0 = {k[7:]: v for k, v in params.items() if k.startswith("layer0.")}
    h0, _, _ = rb.forward("gru", layer0, x)
    np.testing.assert_allclose(y1 - y0, h0, rtol=1e-12, atol=1e-12)
