"""The linear-chain CRF against brute force, its NLL gradient, the tagging data and the BiLSTM-CRF."""
import itertools

import numpy as np
import pytest
from hypothesis import given, strategies as st

import rnnbook as rb
from rnnbook import crf, gradcheck
from rnnbook.bilstm_crf import BiLSTMCRF, reverse_within_lengths
from rnnbook.data import tagging_task
from rnnbook.data.tagging import TAG_NAMES, VOCAB_SIZE
from rnnbook.optim import Adam
from rnnbook.train import train


def random_crf(T, B, K, rng, lengths=None, scale=1.0):
    params = {k: scale * rng.standard_normal(v.shape) for k, v in crf.init_params(K).items()}
    emissions = scale * rng.standard_normal((T, B, K))
    lengths = rng.integers(1, T + 1, B) if lengths is None else np.asarray(lengths)
    mask = (np.arange(T)[:, None] < lengths[None, :]).astype(np.float64)
    return params, emissions, mask, lengths


def all_paths(params, emissions, b, L):
    """Every tag sequence of length L for sequence b, with its score s(y) written out term by term."""
    A, start, end = params["transitions"], params["start"], params["end"]
    K = emissions.shape[2]
    for y in itertools.product(range(K), repeat=int(L)):
        s = start[y[0]] + end[y[-1]]
        s += sum(emissions[t, b, y[t]] for t in range(L))
        s += sum(A[y[t - 1], y[t]] for t in range(1, L))
        yield y, s


# ------------------------------------------------------------------ brute force
@given(T=st.integers(1, 4), B=st.integers(1, 3), K=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_log_partition_and_viterbi_against_enumeration(T, B, K, seed):
    rng = np.random.default_rng(seed)
    params, E, mask, lengths = random_crf(T, B, K, rng)
    log_Z = crf.log_partition(params, E, mask)
    tags, best = crf.viterbi(params, E, mask)
    for b in range(B):
        paths = list(all_paths(params, E, b, lengths[b]))
        scores = np.array([s for _, s in paths])
        assert abs(log_Z[b] - np.log(np.exp(scores).sum())) < 1e-12 * max(1.0, abs(log_Z[b]))
        assert abs(best[b] - scores.max()) < 1e-12 * max(1.0, abs(best[b]))
        # the decoded path scores the maximum (ties allowed) and padding is -1
        decoded = tuple(tags[: lengths[b], b])
        assert abs(dict(paths)[decoded] - scores.max()) < 1e-12 * max(1.0, abs(best[b]))
        assert np.all(tags[lengths[b]:, b] == -1)


def test_marginals_against_enumeration(rng):
    T, B, K = 4, 3, 3
    params, E, mask, lengths = random_crf(T, B, K, rng, lengths=[4, 2, 1])
    unary, pairwise = crf.marginals(params, E, mask)
    for b in range(B):
        L = lengths[b]
        paths = list(all_paths(params, E, b, L))
        w = np.exp(np.array([s for _, s in paths]))
        w /= w.sum()
        want_u = np.zeros((T, K))
        want_p = np.zeros((T, K, K))
        for (y, _), p in zip(paths, w):
            for t in range(L):
                want_u[t, y[t]] += p
                if t:
                    want_p[t, y[t - 1], y[t]] += p
        np.testing.assert_allclose(unary[:, b], want_u, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(pairwise[:, b], want_p, rtol=1e-12, atol=1e-14)


def test_marginals_sum_to_one_and_agree(rng):
    params, E, mask, lengths = random_crf(7, 5, 4, rng)
    unary, pairwise = crf.marginals(params, E, mask)
    np.testing.assert_allclose(unary.sum(axis=2), mask, atol=1e-12)                  # 1 on real steps, 0 on padding
    np.testing.assert_allclose(pairwise[1:].sum(axis=(2, 3)), mask[1:], atol=1e-12)
    np.testing.assert_allclose(pairwise[1:].sum(axis=3), unary[:-1] * mask[1:, :, None], atol=1e-12)
    np.testing.assert_allclose(pairwise[1:].sum(axis=2), unary[1:], atol=1e-12)
    assert np.all(pairwise[0] == 0)


def test_forward_and_backward_give_the_same_partition(rng):
    params, E, mask, lengths = random_crf(6, 4, 3, rng)
    log_alpha, log_beta, log_Z = crf.forward_backward(params, E, mask)
    np.testing.assert_allclose(log_Z, crf.log_partition(params, E, mask), rtol=1e-14)
    from_beta = np.log(np.exp(params["start"] + E[0] + log_beta[0]).sum(axis=1))
    np.testing.assert_allclose(from_beta, log_Z, rtol=1e-12)
    for t in range(6):                                       # Σ_k α_t β_t = Z at every real step
        real = mask[t] == 1
        np.testing.assert_allclose(np.log(np.exp(log_alpha[t] + log_beta[t]).sum(axis=1))[real], log_Z[real],
                                   rtol=1e-12)


def test_large_scores_do_not_overflow(rng):
    params, E, mask, lengths = random_crf(5, 3, 4, rng, scale=400.0)
    log_Z = crf.log_partition(params, E, mask)
    assert np.all(np.isfinite(log_Z))
    shifted = crf.log_partition(params, E + 1000.0, mask)                           # each step adds 1000
    np.testing.assert_allclose(shifted - log_Z, 1000.0 * lengths, rtol=1e-12)
    nll, _ = crf.nll_forward(params, E, crf.viterbi(params, E, mask)[0] % 4, mask)
    assert np.all(np.isfinite(nll)) and np.all(nll >= -1e-9)


# ------------------------------------------------------------------ the loss and its gradient
@pytest.mark.parametrize("lengths", [[4, 4, 4], [4, 2, 1]])
def test_nll_gradcheck(lengths, rng):
    T, B, K = 4, 3, 3
    params, E, mask, _ = random_crf(T, B, K, rng, lengths=lengths)
    tags = rng.integers(0, K, (T, B))

    def f(inp):
        return crf.nll_forward({k: inp[k] for k in crf.PARAM_NAMES}, inp["emissions"], tags, mask)[0]

    def grad_fn(inp, dnll):
        p = {k: inp[k] for k in crf.PARAM_NAMES}
        _, cache = crf.nll_forward(p, inp["emissions"], tags, mask)
        return crf.nll_backward(p, cache, dnll)

    report = gradcheck.check_function(f, {**params, "emissions": E}, grad_fn)
    assert {e.name for e in report.entries} == {"emissions", "transitions", "start", "end"}
    report.assert_ok(1e-6)
    g = grad_fn({**params, "emissions": E}, np.ones(B))
    assert np.all(g["emissions"][mask == 0] == 0)                                   # padding gets nothing


def test_nll_is_a_negative_log_probability(rng):
    params, E, mask, lengths = random_crf(3, 2, 3, rng, lengths=[3, 2])
    tags = np.array([[0, 1], [2, 2], [1, 0]])
    nll, _ = crf.nll_forward(params, E, tags, mask)
    np.testing.assert_allclose(nll, crf.log_partition(params, E, mask) - crf.sequence_score(params, E, tags, mask))
    for b in range(2):
        paths = dict(all_paths(params, E, b, lengths[b]))
        total = np.log(np.exp(list(paths.values())).sum())
        np.testing.assert_allclose(nll[b], total - paths[tuple(tags[: lengths[b], b])], rtol=1e-12)
    loss, grads = crf.nll_loss(params, E, tags, mask)
    assert loss == pytest.approx(nll.mean())
    _, cache = crf.nll_forward(params, E, tags, mask)
    np.testing.assert_allclose(grads["transitions"], crf.nll_backward(params, cache, np.full(2, 0.5))["transitions"])


def test_float32_works(rng):
    params, E, mask, _ = random_crf(5, 2, 3, rng)
    p32 = {k: v.astype(np.float32) for k, v in params.items()}
    log_Z = crf.log_partition(p32, E.astype(np.float32), mask)
    assert log_Z.dtype == np.float32
    np.testing.assert_allclose(log_Z, crf.log_partition(params, E, mask), rtol=1e-5)


@pytest.mark.parametrize("call,exc,words", [
    (lambda p, E, m: crf.log_partition(p, E[..., :2], m), ValueError, ["transitions", "(2, 2)"]),
    (lambda p, E, m: crf.log_partition(p, E.astype(np.float32), m), TypeError, ["float64"]),
    (lambda p, E, m: crf.log_partition(p, E[:, :, :, None], m), ValueError, ["emissions", "3 dimensions"]),
    (lambda p, E, m: crf.log_partition({**p, "end": p["end"][:2]}, E, m), ValueError, ["end", "(3,)"]),
    (lambda p, E, m: crf.log_partition({"transitions": p["transitions"]}, E, m), ValueError, ["missing"]),
    (lambda p, E, m: crf.log_partition(p, E, m[:2]), ValueError, ["mask", "(4, 2)"]),
    (lambda p, E, m: crf.log_partition(p, E, np.array([[1, 1], [0, 1], [1, 1], [0, 0]])), ValueError,
     ["prefix"]),
    (lambda p, E, m: crf.log_partition(p, E, np.zeros((4, 2))), ValueError, ["length >= 1"]),
    (lambda p, E, m: crf.log_partition(p, E, m * 2), ValueError, ["0 and 1"]),
    (lambda p, E, m: crf.nll_forward(p, E, np.full((4, 2), 3), m), ValueError, ["tags", "[0, 3)"]),
    (lambda p, E, m: crf.nll_forward(p, E, np.zeros((4, 2)), m), TypeError, ["tags", "integer"]),
    (lambda p, E, m: crf.viterbi([p], E, m), TypeError, ["dict"]),
    (lambda p, E, m: crf.init_params(0), ValueError, ["num_tags"]),
])
def test_bad_input(call, exc, words, rng):
    params, E, mask, _ = random_crf(4, 2, 3, rng, lengths=[4, 2])
    with pytest.raises(exc) as info:
        call(params, E, mask)
    for w in words:
        assert w in str(info.value)


def test_tags_on_padding_are_ignored(rng):
    params, E, mask, _ = random_crf(4, 2, 3, rng, lengths=[4, 2])
    tags = np.array([[0, 1], [2, 2], [1, -1], [0, 99]])
    a = crf.nll_forward(params, E, tags, mask)[0]
    b = crf.nll_forward(params, E, np.where(mask == 1, tags, 0), mask)[0]
    np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------ the tagging data
def test_tagging_task():
    tokens, tags, mask = tagging_task(64, max_length=10, min_length=3, seed=2)
    assert tokens.shape == tags.shape == mask.shape == (10, 64)
    lengths = crf.lengths_from_mask(mask, mask.shape)
    assert lengths.min() >= 3 and lengths.max() <= 10
    real = mask == 1
    assert tokens[real].min() >= 1 and tokens[real].max() < VOCAB_SIZE and np.all(tokens[~real] == 0)
    # the BIO grammar: I-PER (2) only after B-PER/I-PER, I-LOC (4) only after B-LOC/I-LOC, never first
    assert not np.any(np.isin(tags[0], (2, 4)))
    prev, cur = tags[:-1][real[1:]], tags[1:][real[1:]]
    assert np.all(np.isin(prev[cur == 2], (1, 2))) and np.all(np.isin(prev[cur == 4], (3, 4)))
    for u, v in zip(tagging_task(8, seed=5), tagging_task(8, seed=5)):
        np.testing.assert_array_equal(u, v)
    with pytest.raises(ValueError, match="min_length"):
        tagging_task(4, max_length=3, min_length=5)


# ------------------------------------------------------------------ the BiLSTM-CRF
def test_reverse_within_lengths_is_an_involution(rng):
    a = rng.standard_normal((5, 3, 2))
    lengths = np.array([5, 2, 1])
    r = reverse_within_lengths(a, lengths)
    np.testing.assert_array_equal(r[:, 0], a[::-1, 0])
    np.testing.assert_array_equal(r[:2, 1], a[1::-1, 1])
    np.testing.assert_array_equal(r[2:, 1], a[2:, 1])
    np.testing.assert_array_equal(reverse_within_lengths(r, lengths), a)


def test_bilstm_equals_bidirectional_composite_without_padding(rng):
    model = BiLSTMCRF(vocab_size=6, num_tags=3, embed_dim=4, hidden_size=5)
    params = model.init_params(seed=1)
    tokens = rng.integers(0, 6, (7, 3))
    scores, cache = model.emissions(params, tokens)
    core = {k[5:]: v for k, v in params.items() if k.startswith("core.")}
    h, _, _ = rb.forward("bidirectional", core, params["embed.E"][tokens], cell="lstm")
    np.testing.assert_allclose(scores, h @ params["emit.W"].T + params["emit.b"], rtol=1e-13, atol=1e-13)


def test_padding_does_not_change_a_sentence(rng):
    """A sentence scores the same alone and padded in a batch with a longer one."""
    model = BiLSTMCRF(vocab_size=6, num_tags=3, embed_dim=4, hidden_size=5)
    params = model.init_params(seed=2)
    short = rng.integers(1, 6, (3, 1))
    batch = np.concatenate([np.vstack([short, np.zeros((4, 1), np.int64)]), rng.integers(1, 6, (7, 1))], axis=1)
    mask = np.ones((7, 2))
    mask[3:, 0] = 0
    alone, _ = model.emissions(params, short)
    padded, _ = model.emissions(params, batch, mask)
    np.testing.assert_allclose(padded[:3, 0], alone[:, 0], rtol=1e-13, atol=1e-13)
    tags = rng.integers(0, 3, (7, 2))
    np.testing.assert_allclose(model.nll(params, batch, tags, mask)[0], model.nll(params, short, tags[:3, :1])[0],
                               rtol=1e-12)


def test_bilstm_crf_gradcheck(rng):
    model = BiLSTMCRF(vocab_size=5, num_tags=3, embed_dim=3, hidden_size=2)
    params = {k: 0.6 * rng.standard_normal(v.shape) for k, v in model.init_params(seed=3).items()}
    tokens = rng.integers(0, 5, (4, 3))
    tags = rng.integers(0, 3, (4, 3))
    mask = (np.arange(4)[:, None] < np.array([4, 2, 3])[None, :]).astype(float)

    def f(inp):
        return np.array(model.loss_and_grads(inp, tokens, tags, mask)[0])

    def grad_fn(inp, upstream):
        return {k: upstream * v for k, v in model.loss_and_grads(inp, tokens, tags, mask)[1].items()}

    report = gradcheck.check_function(f, params, grad_fn)
    assert {e.name for e in report.entries} == set(params)
    assert {"embed.E", "core.fwd.W_hh", "core.bwd.b", "emit.W", "crf.transitions", "crf.end"} <= set(params)
    report.assert_ok(1e-6)


def test_bilstm_crf_bad_input():
    model = BiLSTMCRF(vocab_size=5, num_tags=3)
    params = model.init_params()
    with pytest.raises(ValueError, match=r"tokens must lie in \[0, 5\)"):
        model.decode(params, np.full((3, 2), 7))
    with pytest.raises(TypeError, match="integer"):
        model.decode(params, np.zeros((3, 2)))
    with pytest.raises(ValueError, match="prefix"):
        model.decode(params, np.zeros((3, 2), np.int64), np.array([[1, 1], [0, 1], [1, 1]]))
    with pytest.raises(ValueError, match="num_tags"):
        BiLSTMCRF(vocab_size=5, num_tags=0)
    with pytest.raises(ValueError, match="backend 'numpy' or 'numba'"):
        BiLSTMCRF(vocab_size=5, num_tags=3, backend="cupy")


def test_bilstm_crf_learns_to_tag():
    """A short run takes Viterbi accuracy from chance to well above the majority tag."""
    model = BiLSTMCRF(VOCAB_SIZE, len(TAG_NAMES), embed_dim=8, hidden_size=8)
    params = model.init_params(seed=0)
    tokens, tags, mask = tagging_task(256, seed=10**6)
    real = mask == 1
    majority = np.mean(tags[real] == 0)

    def accuracy():
        return np.mean(model.decode(params, tokens, mask)[real] == tags[real])

    before = accuracy()

    def step_fn(p, step):
        tok, tg, m = tagging_task(16, seed=step + 1)
        return model.loss_and_grads(p, tok, tg, m)

    history = train(step_fn, params, Adam(0.03), steps=150, progress=False, clip_norm=5.0)
    after = accuracy()
    assert majority < 0.6 and before < 0.4
    assert after > 0.9, (before, after, majority)
    assert np.mean(history.loss[-20:]) < 0.25 * np.mean(history.loss[:20])
