"""The regularised language model (gradients with fixed masks, eval == SequenceModel) and short training runs."""
import math

import numpy as np
import pytest

from rnnbook import gradcheck
from rnnbook.regularize import RegularizedLM, train_char_lm

ALL_ON = dict(dropout_input=0.3, dropout_hidden=0.4, dropout_output=0.3, dropout_embedding=0.3, weight_drop=0.5)


def _model_and_params(cell, num_layers, variational, rng, **options):
    model = RegularizedLM(cell, hidden_size=4, vocab_size=7, embed_dim=3, num_layers=num_layers,
                          variational=variational, seed=3, **ALL_ON, **options)
    params = {k: 0.6 * rng.standard_normal(v.shape) for k, v in model.init_params(seed=1).items()}
    return model, params


@pytest.mark.parametrize("cell,layers,variational,options", [
    ("lstm", 2, False, {}), ("lstm", 2, True, {}), ("gru", 3, True, {"reset_after": False}), ("rnn", 1, False, {})])
def test_regularized_lm_gradcheck_with_fixed_masks(cell, layers, variational, options, rng):
    model, params = _model_and_params(cell, layers, variational, rng, **options)
    tokens = rng.integers(0, 7, (4, 2))
    n_state = {"lstm": 2, "gru": 1, "rnn": 1}[cell] * layers
    state0 = tuple(0.5 * rng.standard_normal((2, 4)) for _ in range(n_state))
    _, _, cache = model.forward(params, tokens, state0)
    masks = cache["masks"]
    # every dropout is really on, and the masks have the documented shapes
    assert masks["input"].shape == ((1, 2, 3) if variational else (4, 2, 3))
    assert masks["embedding"].shape == (7, 1) and len(masks["hidden"]) == layers - 1
    assert all(list(w) == ["W_hh"] and (w["W_hh"] == 0).any() for w in masks["weights"])

    def f(inp):
        logits, state, _ = model.forward(inp, tokens, state0, masks=masks)
        return (logits,) + tuple(state)

    def g(inp, G):
        _, _, c = model.forward(inp, tokens, state0, masks=masks)
        return model.backward(inp, c, G[0], tuple(G[1:]))

    gradcheck.check_function(f, params, g).assert_ok(1e-6)


def test_masks_replay_and_fresh_masks_per_call(rng):
    model, params = _model_and_params("lstm", 2, True, rng)
    tokens = rng.integers(0, 7, (5, 3))
    a, _, cache = model.forward(params, tokens)
    b, _, _ = model.forward(params, tokens)
    c, _, _ = model.forward(params, tokens, masks=cache["masks"])
    assert not np.allclose(a, b)
    np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize("layers", [1, 2])
def test_eval_mode_is_the_plain_sequence_model(layers, rng):
    model, params = _model_and_params("gru", layers, False, rng)
    base = model.sequence_model()
    tokens = rng.integers(0, 7, (6, 3))
    model.eval()
    logits, state, cache = model.forward(params, tokens)
    ref, ref_state, ref_cache = base.forward(params, tokens)
    np.testing.assert_array_equal(logits, ref)
    for s, r in zip(state, ref_state):
        np.testing.assert_array_equal(s, r)
    dlogits = rng.standard_normal(logits.shape)
    g, g_ref = model.backward(params, cache, dlogits), base.backward(params, ref_cache, dlogits)
    assert list(g) == list(params)
    for k in params:
        np.testing.assert_allclose(g[k], g_ref[k], rtol=1e-13, atol=1e-15)
    model.train()
    assert not np.allclose(model.forward(params, tokens)[0], ref)


def test_regularized_lm_errors():
    with pytest.raises(ValueError, match="vocab_size"):
        RegularizedLM("lstm", 4)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        RegularizedLM("lstm", 4, vocab_size=5, dropout_hidden=1.0)
    with pytest.raises(TypeError, match="bidirectional"):
        RegularizedLM("lstm", 4, vocab_size=5, bidirectional=True)
    model = RegularizedLM("lstm", 4, vocab_size=5, num_layers=2)
    params = model.init_params()
    with pytest.raises(ValueError, match=r"\(T, B\)"):
        model.forward(params, np.zeros(3, np.int64))
    logits, state, cache = model.forward(params, np.zeros((3, 2), np.int64))
    with pytest.raises(ValueError, match="dstate"):
        model.backward(params, cache, np.zeros_like(logits), dstate=state[:3])
    with pytest.raises(ValueError, match="state0"):
        model.forward(params, np.zeros((3, 2), np.int64), state0=state[:3])
    with pytest.raises(TypeError, match="unknown option"):
        train_char_lm(hiden_size=8)
    with pytest.raises(ValueError, match="optimizer"):
        train_char_lm(optimizer="rmsprop")


# ----------------------------------------------------------------------------- training runs
SMALL = dict(steps=30, hidden_size=32, embed_dim=16, batch_size=8, seq_len=24, max_chars=30_000, val_chars=2_000,
             eval_every=10)
RUNS = {
    "baseline": {},
    "zaremba-dropout": dict(dropout_input=0.2, dropout_hidden=0.2, dropout_output=0.2, num_layers=2),
    "variational+embedding": dict(dropout_input=0.2, dropout_output=0.2, dropout_embedding=0.1, variational=True),
    "weight-drop": dict(weight_drop=0.3),
    "l2": dict(l2=1e-4),
    "ntasgd": dict(optimizer="ntasgd", lr=4.0, nonmono=1, eval_every=5, steps=120),
    "pruning": dict(prune=dict(final_sparsity=0.6, begin_step=5, frequency=4, n_updates=4)),
}


@pytest.mark.parametrize("name", list(RUNS))
def test_each_tool_trains_end_to_end(name):
    run = train_char_lm(**{**SMALL, **RUNS[name]})
    assert all(math.isfinite(v) for v in run.val_loss) and all(math.isfinite(v) for v in run.history.loss)
    assert len(run.val_loss) == 1 + run.config["steps"] // run.config["eval_every"]
    assert run.initial_val_loss == pytest.approx(math.log(len(run.vocab)), abs=0.3)   # an untrained model
    assert run.final_val_loss < run.initial_val_loss - 0.4                            # it learned
    if name == "ntasgd":
        assert run.trigger_step is not None                       # this curve stalls: averaging started
        assert run.params is not run.raw_params
        assert not np.allclose(run.params["readout.W"], run.raw_params["readout.W"])
    if name == "pruning":
        assert run.sparsity["total"] == pytest.approx(0.6, abs=1e-3)
        total = sum(v.size for v in run.params.values())
        assert run.nonzeros < 0.5 * total
