"""Gradual magnitude pruning: the cubic schedule, per-matrix masks, pruned weights staying zero, equal memory."""
import math

import numpy as np
import pytest

from rnnbook.data import char_batches
from rnnbook.losses import softmax_cross_entropy
from rnnbook.model import SequenceModel
from rnnbook.optim import Adam
from rnnbook.regularize.pruning import (GradualPruner, PrunedOptimizer, count_nonzero, cubic_sparsity,
                                        equal_memory_hidden_size, magnitude_mask, sequence_model_param_count,
                                        small_dense_hidden_size)

S_I, S_F, T0, DT, N = 0.1, 0.9, 50, 20, 8          # schedule of the tests: t_0 = 50, end = 50 + 8·20 = 210


def formula(t):
    return S_F + (S_I - S_F) * (1 - (t - T0) / (N * DT)) ** 3


# ----------------------------------------------------------------------------- schedule
def test_cubic_schedule_against_the_formula():
    s = lambda t: cubic_sparsity(t, S_F, T0, DT, N, S_I)  # noqa: E731
    assert s(T0) == pytest.approx(S_I, abs=1e-15)                             # starts at s_i
    assert s(T0 + N * DT) == pytest.approx(S_F, abs=1e-15)                    # ends at s_f
    mid = T0 + N * DT // 2
    assert s(mid) == pytest.approx(S_F + (S_I - S_F) / 8, abs=1e-15)          # (1 - 1/2)³ = 1/8
    for t in range(T0, T0 + N * DT + 1, DT):
        assert s(t) == pytest.approx(formula(t), abs=1e-15)
    assert s(0) == S_I and s(T0 - 1) == S_I and s(10 ** 6) == S_F             # held outside [t_0, end]
    values = [s(t) for t in range(0, 300)]
    assert all(b >= a for a, b in zip(values, values[1:]))                     # never decreases
    steps = np.diff([s(t) for t in range(T0, T0 + N * DT + 1, DT)])
    assert all(b < a for a, b in zip(steps, steps[1:]))                        # fast first, slow at the end


def test_pruning_steps():
    pr = GradualPruner(S_F, T0, DT, N, S_I)
    assert [t for t in range(400) if pr.is_pruning_step(t)] == list(range(T0, T0 + N * DT + 1, DT))
    assert pr.end_step == 210


# ----------------------------------------------------------------------------- masks
@pytest.mark.parametrize("s", [0.0, 0.137, 0.5, 0.8, 0.999])
def test_achieved_sparsity_equals_target_per_matrix(s, rng):
    params = {"embed.E": rng.standard_normal((13, 7)), "core.W_hh": rng.standard_normal((32, 8)),
              "core.W_ih": rng.standard_normal((32, 5)), "core.b": rng.standard_normal(32),
              "readout.W": rng.standard_normal((13, 8))}
    before = {k: v.copy() for k, v in params.items()}
    pr = GradualPruner(0.9)
    pr.prune(params, s)
    assert sorted(pr.masks) == ["core.W_hh", "core.W_ih", "embed.E", "readout.W"]   # matrices, not biases
    rep = pr.report(params)
    for k, mask in pr.masks.items():
        n = params[k].size
        k_pruned = math.floor(s * n + 0.5)
        assert int((params[k] == 0).sum()) == k_pruned                        # exactly round(s·N) zeros
        assert rep[k] == k_pruned / n and abs(rep[k] - s) <= 0.5 / n
        pruned, kept = np.abs(before[k][mask == 0]), np.abs(before[k][mask == 1])
        if pruned.size and kept.size:
            assert pruned.max() <= kept.min()                                  # the smallest magnitudes go
        np.testing.assert_array_equal(params[k][mask == 1], before[k][mask == 1])
    np.testing.assert_array_equal(params["core.b"], before["core.b"])


def test_selection_by_names_and_predicate(rng):
    params = {"a.W": rng.standard_normal((4, 4)), "b.W_hh": rng.standard_normal((4, 4)), "c": rng.standard_normal(4)}
    assert GradualPruner(0.5, names=["b.W_hh"]).selected(params) == ["b.W_hh"]
    assert GradualPruner(0.5, names=lambda k, v: k.endswith("W_hh")).selected(params) == ["b.W_hh"]
    assert GradualPruner(0.5).selected(params) == ["a.W", "b.W_hh"]
    with pytest.raises(ValueError, match="not parameters"):
        GradualPruner(0.5, names=["zz"]).selected(params)


def test_magnitude_mask_breaks_ties_to_exact_count():
    W = np.zeros((4, 5))                                                       # every entry ties
    assert int((magnitude_mask(W, 0.3) == 0).sum()) == 6


def _train_pruned_lm(steps, pruner):
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 11, 4000)
    model = SequenceModel("lstm", hidden_size=12, vocab_size=11, embed_dim=6)
    params = model.init_params(seed=1)
    opt = PrunedOptimizer(Adam(lr=3e-2), pruner)          # Adam's moments would move pruned weights
    batches = char_batches(ids, 4, 8)
    seen = []
    for t in range(steps):
        x, y = next(batches)
        logits, _, cache = model.forward(params, x)
        _, dlogits = softmax_cross_entropy(logits, y)
        opt.step(params, model.backward(params, cache, dlogits))
        seen.append(({k: (params[k] == 0).copy() for k in pruner.masks}, pruner.report(params) if pruner.masks else {}))
    return params, seen


def test_pruned_weights_stay_zero_through_optimizer_steps():
    pr = GradualPruner(0.8, begin_step=4, frequency=3, n_updates=4, initial_sparsity=0.2)
    params, seen = _train_pruned_lm(30, pr)
    assert [t for t, _ in pr.history] == [4, 7, 10, 13, 16]
    for t, (zeros, report) in enumerate(seen):
        if t < 4:
            assert zeros == {} and report == {}
            continue
        # the sparsity in effect after step t is the target of the last pruning step
        last = max(u for u in (4, 7, 10, 13, 16) if u <= t)
        for k in pr.masks:
            n = params[k].size
            assert report[k] == math.floor(pr.sparsity_at(last) * n + 0.5) / n
        if t > 4:
            for k in zeros:
                assert np.all(zeros[k][seen[t - 1][0][k]])                      # once pruned, pruned for good
    for k, m in pr.masks.items():
        assert np.all(params[k][m == 0] == 0)
        assert np.count_nonzero(params[k][m == 1]) == int(m.sum())             # the kept weights still learn
    assert pr.report(params)["total"] == pytest.approx(0.8, abs=1e-3)


def test_gradients_of_pruned_weights_are_masked(rng):
    pr = GradualPruner(0.5)
    params = {"W": rng.standard_normal((4, 6)), "b": rng.standard_normal(4)}
    pr.prune(params, 0.5)
    grads = pr.mask_grads({"W": np.ones((4, 6)), "b": np.ones(4)})
    np.testing.assert_array_equal(grads["W"], pr.masks["W"])
    np.testing.assert_array_equal(grads["b"], np.ones(4))


# ----------------------------------------------------------------------------- equal memory
@pytest.mark.parametrize("cell,layers,embed", [("lstm", 1, 16), ("gru", 2, None), ("rnn", 3, 5), ("lstm", 2, None)])
def test_param_count_matches_the_model(cell, layers, embed):
    model = SequenceModel(cell, hidden_size=9, vocab_size=13, embed_dim=embed, num_layers=layers)
    want = sum(v.size for v in model.init_params().values())
    assert sequence_model_param_count(cell, 9, 13, embed, layers) == want


def test_equal_memory_hidden_size_against_the_closed_form():
    V, E = 65, 32

    def count(H):                                        # one LSTM layer: V E + 4H(E + H) + 4H + V H + V
        return sequence_model_param_count("lstm", H, V, E, 1)

    for nnz in (5_000, 60_000, 123_457, 1_000_000):
        H = equal_memory_hidden_size(nnz, count)
        assert count(H) <= nnz < count(H + 1)
        # 4H² + (4E + 4 + V) H + (V E + V - nnz) = 0, positive root
        a, b, c = 4, 4 * E + 4 + V, V * E + V - nnz
        assert H == math.floor((-b + math.sqrt(b * b - 4 * a * c)) / (2 * a))
    with pytest.raises(ValueError, match="hidden size 1"):
        equal_memory_hidden_size(100, count)


def test_small_dense_for_a_large_sparse_model(rng):
    model = SequenceModel("lstm", hidden_size=96, vocab_size=40, embed_dim=16, num_layers=2)
    params = model.init_params()
    pr = GradualPruner(0.75)
    pr.prune(params, 0.75)
    nnz = count_nonzero(params)
    H = small_dense_hidden_size(model, params)
    count = lambda h: sequence_model_param_count("lstm", h, 40, 16, 2)  # noqa: E731
    assert count(H) <= nnz < count(H + 1) and H < 96
    assert small_dense_hidden_size(model, model.init_params()) == 96    # dense: itself


def test_pruning_errors():
    with pytest.raises(ValueError, match="final_sparsity"):
        GradualPruner(1.0)
    with pytest.raises(ValueError, match="initial_sparsity"):
        GradualPruner(0.5, initial_sparsity=0.6)
    with pytest.raises(ValueError, match="frequency"):
        GradualPruner(0.5, frequency=0)
    with pytest.raises(ValueError, match="begin_step"):
        cubic_sparsity(3, 0.5, begin_step=-1)
    with pytest.raises(TypeError, match="names"):
        GradualPruner(0.5, names="W_hh")
    with pytest.raises(ValueError, match="unknown cell"):
        sequence_model_param_count("tcn", 4, 5)
    with pytest.raises(ValueError, match="sparsity"):
        magnitude_mask(np.ones(3), 1.5)
