"""Dropout (standard, variational, embedding) and DropConnect on W_hh: gradients, statistics, modes, errors."""
import numpy as np
import pytest

import rnnbook as rb
from rnnbook import gradcheck
from rnnbook.layers import embedding
from rnnbook.regularize import dropconnect, dropout
from rnnbook.regularize.dropconnect import DropConnect
from rnnbook.regularize.dropout import Dropout

from conftest import CELL_CONFIGS, CELL_IDS, random_problem


def binomial_ok(kept, n, q, z=5.0):
    """``kept`` successes of ``n`` Bernoulli(q) draws lie within ``z`` standard deviations of ``n q``."""
    return abs(kept - n * q) <= z * np.sqrt(n * q * (1 - q))


# ----------------------------------------------------------------------------- dropout: gradients
@pytest.mark.parametrize("kind", ["standard", "variational"])
def test_dropout_gradcheck_fixed_mask(kind, rng):
    x = rng.standard_normal((5, 3, 4))
    mask = dropout.sample_mask(x.shape, 0.4, np.random.default_rng(1), kind)
    assert (mask == 0).any() and (mask > 0).any()
    gradcheck.check_function(lambda inp: dropout.forward(inp["x"], mask)[0], {"x": x},
                             lambda inp, G: {"x": dropout.backward(dropout.forward(inp["x"], mask)[1], G)}
                             ).assert_ok(1e-6)


def test_embedding_dropout_gradcheck_fixed_mask(rng):
    E = rng.standard_normal((6, 3))
    tokens = np.array([[0, 5, 2], [5, 5, 1], [3, 0, 2]])              # repeated tokens share a row
    mask = dropout.sample_mask(E.shape, 0.5, np.random.default_rng(3), "embedding")
    assert mask.shape == (6, 1) and (mask[np.unique(tokens)] == 0).any() and (mask[np.unique(tokens)] > 0).any()

    def f(inp):
        E_dropped, _ = dropout.forward(inp["E"], mask)
        return embedding.forward({"E": E_dropped}, tokens)[0]

    def g(inp, G):
        E_dropped, cache = dropout.forward(inp["E"], mask)
        dE_dropped = embedding.backward({"E": E_dropped}, tokens, G)["E"]
        return {"E": dropout.backward(cache, dE_dropped)}

    gradcheck.check_function(f, {"E": E}, g).assert_ok(1e-6)
    # a dropped row reads zeros wherever its token occurs, a kept row its scaled vector
    x = f({"E": E})
    for (t, b), tok in np.ndenumerate(tokens):
        np.testing.assert_array_equal(x[t, b], E[tok] * mask[tok, 0])


# ----------------------------------------------------------------------------- dropout: statistics
@pytest.mark.parametrize("kind,p", [("standard", 0.3), ("variational", 0.5), ("embedding", 0.1)])
def test_mask_values_and_keep_rate(kind, p):
    shape = (40, 50, 60) if kind != "embedding" else (20000, 8)
    m = dropout.sample_mask(shape, p, np.random.default_rng(7), kind)
    assert set(np.unique(m)) == {0.0, 1.0 / (1.0 - p)}                # inverted scaling
    draws = m.size                                                    # independent draws = mask entries
    assert m.shape == dropout.mask_shape(kind, shape)
    assert binomial_ok(int((m > 0).sum()), draws, 1.0 - p)


def test_standard_mask_is_fresh_per_time_step():
    d = Dropout(0.5, "standard", seed=0)
    y, mask = d.forward(np.ones((6, 4, 30)))
    assert mask.shape == (6, 4, 30)
    for t in range(1, 6):
        assert not np.array_equal(y[t], y[0])


def test_variational_mask_tied_across_time_and_different_across_sequences():
    d = Dropout(0.5, "variational", seed=0)
    T, B, D = 7, 6, 40
    y, mask = d.forward(np.ones((T, B, D)))
    assert mask.shape == (1, B, D)
    for t in range(T):
        np.testing.assert_array_equal(y[t], y[0])                    # same mask at every step
    for b in range(B):
        for c in range(b + 1, B):
            assert not np.array_equal(y[0, b], y[0, c])              # each sequence its own mask
    y2, _ = d.forward(np.ones((T, B, D)))
    assert not np.array_equal(y, y2)                                  # a new batch, a new mask


def test_inverted_scaling_keeps_the_expectation(rng):
    p, n = 0.4, 20000
    x = rng.standard_normal(10)
    d = Dropout(p, seed=11)
    ys = np.stack([d.forward(x[None, :])[0][0] for _ in range(n)])   # (n, 10)
    se = np.abs(x) * np.sqrt(p / (1 - p)) / np.sqrt(n)               # sd of x·m over sqrt(n)
    assert np.all(np.abs(ys.mean(axis=0) - x) <= 5 * se)


def test_seed_reproduces_masks():
    a, b = Dropout(0.3, seed=5), Dropout(0.3, seed=5)
    x = np.ones((3, 2, 4))
    np.testing.assert_array_equal(a.forward(x)[1], b.forward(x)[1])
    assert not np.array_equal(a.forward(x)[1], Dropout(0.3, seed=6).forward(x)[1])


@pytest.mark.parametrize("kind", ["standard", "variational", "embedding"])
def test_eval_mode_and_zero_probability_are_identity(kind, rng):
    x = rng.standard_normal((4, 3) if kind == "embedding" else (4, 3, 5))
    for d in (Dropout(0.5, kind).eval(), Dropout(0.0, kind)):
        y, cache = d.forward(x)
        assert y is x and cache is None
        dy = rng.standard_normal(x.shape)
        assert d.backward(cache, dy) is dy
    d = Dropout(0.5, kind).eval().train()
    assert d.forward(x)[1] is not None


def test_float32_mask_keeps_dtype(rng):
    x = rng.standard_normal((3, 2, 4)).astype(np.float32)
    y, m = Dropout(0.5).forward(x)
    assert y.dtype == np.float32 and m.dtype == np.float32


@pytest.mark.parametrize("p,exc", [(1.0, ValueError), (-0.1, ValueError), (1.5, ValueError),
                                   (float("nan"), ValueError), ("0.5", TypeError), (True, TypeError)])
def test_bad_probability(p, exc):
    with pytest.raises(exc, match=r"\[0, 1\)"):
        Dropout(p)
    with pytest.raises(exc, match=r"\[0, 1\)"):
        DropConnect(p)


def test_dropout_errors(rng):
    with pytest.raises(ValueError, match="kind"):
        Dropout(0.1, kind="spatial")
    with pytest.raises(ValueError, match="time-major"):
        Dropout(0.1, "variational").forward(np.ones(5))
    with pytest.raises(ValueError, match="embedding matrix"):
        Dropout(0.1, "embedding").forward(np.ones((2, 3, 4)))
    with pytest.raises(TypeError, match="Generator"):
        dropout.sample_mask((2, 3), 0.1, np.random.RandomState(0))
    with pytest.raises(ValueError, match="broadcast"):
        dropout.forward(np.ones((3, 2, 4)), np.ones((3, 2, 5)))
    with pytest.raises(TypeError, match="float32 or float64"):
        Dropout(0.1).forward(np.ones((3, 2), np.int64))


# ----------------------------------------------------------------------------- DropConnect
def _dropconnect_inputs(arch, options, rng, T=3, B=2, D=3, H=3):
    p, x, s0 = random_problem(arch, T, B, D, H, rng, **options)      # every parameter random, biases too
    masks = dropconnect.sample_masks(p, 0.5, np.random.default_rng(2))
    assert list(masks) == ["W_hh"] and (masks["W_hh"] == 0).any()
    return p, x, s0, masks


def _check_dropconnect(arch, p, x, s0, masks, **options):
    inputs = {**{f"p.{k}": v for k, v in p.items()}, "x": x, **{f"s{i}": s for i, s in enumerate(s0)}}

    def unpack(inp):
        return ({k[2:]: v for k, v in inp.items() if k.startswith("p.")}, inp["x"],
                tuple(inp[f"s{i}"] for i in range(len(s0))))

    def f(inp):
        params, x_, s0_ = unpack(inp)
        y, state, _ = dropconnect.forward(arch, params, x_, s0_, masks, **options)
        return (y,) + tuple(state)

    def g(inp, G):
        params, x_, s0_ = unpack(inp)
        _, _, cache = dropconnect.forward(arch, params, x_, s0_, masks, **options)
        grads = dropconnect.backward(arch, params, cache, G[0], tuple(G[1:]))
        out = {f"p.{k}": grads[k] for k in params}
        out["x"] = grads["x"]
        out.update({f"s{i}": s for i, s in enumerate(grads["state0"])})
        return out

    gradcheck.check_function(f, inputs, g).assert_ok(1e-6)


@pytest.mark.parametrize("arch,options", CELL_CONFIGS, ids=CELL_IDS)
def test_dropconnect_gradcheck_fixed_mask(arch, options, rng):
    p, x, s0, masks = _dropconnect_inputs(arch, options, rng)
    _check_dropconnect(arch, p, x, s0, masks, **options)


def test_dropconnect_gradcheck_stacked_masks_every_layer(rng):
    rng_p = np.random.default_rng(4)
    p = {k: 0.6 * rng_p.standard_normal(v.shape)
         for k, v in rb.init_params("stacked", 3, 3, cell="gru", num_layers=2).items()}
    masks = dropconnect.sample_masks(p, 0.5, np.random.default_rng(2))
    assert sorted(masks) == ["layer0.W_hh", "layer1.W_hh"]
    x = rng.standard_normal((3, 2, 3))
    s0 = tuple(0.5 * rng.standard_normal((2, 3)) for _ in range(2))
    _check_dropconnect("stacked", p, x, s0, masks, cell="gru")


@pytest.mark.parametrize("arch,options", CELL_CONFIGS, ids=CELL_IDS)
def test_dropconnect_is_the_cell_with_masked_weights(arch, options, rng):
    p, x, s0, masks = _dropconnect_inputs(arch, options, rng, T=4, B=3, D=2, H=4)
    y, state, cache = dropconnect.forward(arch, p, x, s0, masks, **options)
    masked = {**p, "W_hh": masks["W_hh"] * p["W_hh"]}
    y_ref, state_ref, cache_ref = rb.forward(arch, masked, x, s0, **options)
    np.testing.assert_array_equal(y, y_ref)
    dy = rng.standard_normal(y.shape)
    g = dropconnect.backward(arch, p, cache, dy)
    g_ref = rb.backward(arch, masked, cache_ref, dy)
    np.testing.assert_array_equal(g["W_hh"], masks["W_hh"] * g_ref["W_hh"])   # dW = M ⊙ dW̃
    assert np.all(g["W_hh"][masks["W_hh"] == 0] == 0)                          # a dropped weight learns nothing
    for k in p:
        if k != "W_hh":
            np.testing.assert_array_equal(g[k], g_ref[k])
    np.testing.assert_array_equal(g["x"], g_ref["x"])
    assert p["W_hh"] is not masked["W_hh"] and not np.array_equal(p["W_hh"], masked["W_hh"])  # p untouched


def test_dropconnect_masks_statistics_and_modes(rng):
    params = rb.init_params("lstm", 5, 100)
    wd = DropConnect(0.3, seed=0)
    m1, m2 = wd.masks(params), wd.masks(params)
    assert list(m1) == ["W_hh"] and m1["W_hh"].shape == (400, 100)
    assert set(np.unique(m1["W_hh"])) == {0.0, 1 / 0.7}
    assert binomial_ok(int((m1["W_hh"] > 0).sum()), m1["W_hh"].size, 0.7)
    assert not np.array_equal(m1["W_hh"], m2["W_hh"])                           # one mask per forward pass
    x = rng.standard_normal((3, 2, 5))
    wd.eval()
    assert wd.masks(params) == {}
    y, _, _ = wd.forward("lstm", params, x)
    np.testing.assert_array_equal(y, rb.forward("lstm", params, x)[0])         # eval: the plain cell
    wd.train()
    y_train, _, cache = wd.forward("lstm", params, x)
    assert not np.allclose(y_train, y) and "W_hh" in cache["masks"]


def test_dropconnect_errors(rng):
    params = rb.init_params("lstm", 3, 4)
    with pytest.raises(ValueError, match="not parameters"):
        dropconnect.sample_masks(params, 0.5, np.random.default_rng(0), names=["W_xx"])
    with pytest.raises(ValueError, match="none is named W_hh"):
        dropconnect.sample_masks({"W": np.ones((2, 2))}, 0.5, np.random.default_rng(0))
    with pytest.raises(ValueError, match="shape"):
        dropconnect.apply_masks(params, {"W_hh": np.ones((4, 4))})
    with pytest.raises(TypeError, match="dropconnect.forward"):
        dropconnect.backward("lstm", params, {}, np.zeros((2, 1, 4)))
    _, _, cache = dropconnect.forward("lstm", params, rng.standard_normal((2, 1, 3)), masks={})
    with pytest.raises(ValueError, match="'gru'"):
        dropconnect.backward("gru", params, cache, np.zeros((2, 1, 4)))
