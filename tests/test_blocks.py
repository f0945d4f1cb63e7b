"""Read-out, embedding, losses, clipping, optimisers, the model and the training loop."""
import numpy as np
import pytest

import rnnbook as rb
from rnnbook import gradcheck
from rnnbook.clipping import clip_by_global_norm, clip_by_value, global_norm
from rnnbook.data import CharVocab, adding_task, char_batches, copy_task, load_text, one_hot
from rnnbook.layers import embedding, linear
from rnnbook.losses import mse, softmax_cross_entropy
from rnnbook.model import SequenceModel
from rnnbook.optim import SGD, Adam
from rnnbook.train import train


def test_linear_gradcheck(rng):
    p = {k: rng.standard_normal(v.shape) for k, v in linear.init_params(4, 3).items()}
    h = rng.standard_normal((5, 2, 4))

    def f(inp):
        return linear.forward({"W": inp["W"], "b": inp["b"]}, inp["h"])[0]

    def g(inp, G):
        _, c = linear.forward({"W": inp["W"], "b": inp["b"]}, inp["h"])
        return linear.backward({"W": inp["W"], "b": inp["b"]}, c, G)

    gradcheck.check_function(f, {**p, "h": h}, g).assert_ok(1e-6)


def test_embedding_gradcheck_with_repeated_tokens(rng):
    E = rng.standard_normal((5, 3))
    tokens = np.array([[0, 4], [4, 4], [2, 0]])                 # repeats must add up

    def f(inp):
        return embedding.forward({"E": inp["E"]}, tokens)[0]

    def g(inp, G):
        return embedding.backward({"E": inp["E"]}, tokens, G)

    gradcheck.check_function(f, {"E": E}, g).assert_ok(1e-6)
    with pytest.raises(ValueError, match=r"\[0, 5\)"):
        embedding.forward({"E": E}, np.array([[5]]))
    with pytest.raises(TypeError, match="integer"):
        embedding.forward({"E": E}, np.array([[1.0]]))


@pytest.mark.parametrize("use_mask", [False, True])
def test_cross_entropy_gradcheck(use_mask, rng):
    z = rng.standard_normal((4, 3, 6)) * 3
    k = rng.integers(0, 6, (4, 3))
    mask = (rng.uniform(size=(4, 3)) > 0.4).astype(float) if use_mask else None
    gradcheck.check_function(lambda inp: np.array(softmax_cross_entropy(inp["z"], k, mask)[0]),
                             {"z": z}, lambda inp, G: {"z": G * softmax_cross_entropy(inp["z"], k, mask)[1]}
                             ).assert_ok(1e-6)
    # against the direct formula
    p = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    nll = -np.log(np.take_along_axis(p, k[..., None], -1)[..., 0])
    want = nll.mean() if mask is None else (nll * mask).sum() / mask.sum()
    assert softmax_cross_entropy(z, k, mask)[0] == pytest.approx(want, rel=1e-12)
    # stable for huge logits
    big = np.array([[1000.0, 0.0]])
    loss, d = softmax_cross_entropy(big, np.array([1]))
    assert loss == pytest.approx(1000.0) and np.all(np.isfinite(d))


def test_mse_gradcheck(rng):
    pred, target = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    gradcheck.check_function(lambda inp: np.array(mse(inp["p"], target)[0]), {"p": pred},
                             lambda inp, G: {"p": G * mse(inp["p"], target)[1]}).assert_ok(1e-6)
    assert mse(pred, target)[0] == pytest.approx(np.mean((pred - target) ** 2))
    with pytest.raises(ValueError, match="same shape"):
        mse(pred, target[:2])


def test_loss_input_errors():
    with pytest.raises(TypeError, match="integer"):
        softmax_cross_entropy(np.zeros((2, 3)), np.zeros(2))
    with pytest.raises(ValueError, match="shape"):
        softmax_cross_entropy(np.zeros((2, 3)), np.zeros(3, np.int64))
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 3]))


def test_clipping(rng):
    g = {"a": rng.standard_normal((3, 4)), "b": rng.standard_normal(5)}
    n = global_norm(g)
    assert n == pytest.approx(np.sqrt(sum((v ** 2).sum() for v in g.values())))
    c, before = clip_by_global_norm(g, n / 2)
    assert before == pytest.approx(n) and global_norm(c) == pytest.approx(n / 2)
    for k in g:                                             # direction kept
        np.testing.assert_allclose(c[k], g[k] / 2)
    c2, _ = clip_by_global_norm(g, 2 * n)
    for k in g:
        np.testing.assert_array_equal(c2[k], g[k])
    v = clip_by_value(g, 0.3)
    for k in g:
        np.testing.assert_array_equal(v[k], np.clip(g[k], -0.3, 0.3))
    with pytest.raises(ValueError):
        clip_by_global_norm(g, 0)


def test_sgd_momentum_matches_hand_computation():
    p = {"w": np.array([1.0, -2.0])}
    opt = SGD(lr=0.1, momentum=0.9)
    g1, g2 = np.array([0.5, 1.0]), np.array([-1.0, 2.0])
    opt.step(p, {"w": g1})
    opt.step(p, {"w": g2})
    v2 = 0.9 * g1 + g2
    np.testing.assert_allclose(p["w"], np.array([1.0, -2.0]) - 0.1 * g1 - 0.1 * v2)


def test_adam_matches_hand_computation():
    p = {"w": np.array([1.0, -2.0])}
    opt = Adam(lr=0.01, betas=(0.9, 0.99), eps=1e-8)
    g1, g2 = np.array([0.5, 1.0]), np.array([-1.0, 2.0])
    opt.step(p, {"w": g1})
    opt.step(p, {"w": g2})
    w = np.array([1.0, -2.0])
    m = v = 0
    for t, g in enumerate([g1, g2], 1):
        m = 0.9 * m + 0.1 * g
        v = 0.99 * v + 0.01 * g * g
        w = w - 0.01 * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.99 ** t)) + 1e-8)
    np.testing.assert_allclose(p["w"], w, rtol=1e-12)
    with pytest.raises(KeyError, match="w"):
        opt.step(p, {})


@pytest.mark.parametrize("core", [dict(cell="lstm"), dict(cell="gru", num_layers=2, residual=True),
                                  dict(cell="rnn", bidirectional=True)])
def test_token_model_gradcheck(core, rng):
    """Embedding -> core -> read-out -> cross-entropy, end to end."""
    model = SequenceModel(hidden_size=4, vocab_size=6, embed_dim=3, **core)
    params = {k: 0.5 * rng.standard_normal(v.shape) for k, v in model.init_params().items()}
    tokens = rng.integers(0, 6, (5, 2))
    targets = rng.integers(0, 6, (5, 2))

    def f(inp):
        return np.array(softmax_cross_entropy(model.forward(inp, tokens)[0], targets)[0])

    def g(inp, G):
        logits, _, cache = model.forward(inp, tokens)
        _, d = softmax_cross_entropy(logits, targets)
        return model.backward(inp, cache, G * d)

    gradcheck.check_function(f, params, g).assert_ok(1e-6)


def test_float_model_gradcheck_and_adding_task_learns(rng):
    model = SequenceModel("gru", hidden_size=4, input_size=2, output_size=1)
    params = {k: 0.5 * rng.standard_normal(v.shape) for k, v in model.init_params().items()}
    x, y = adding_task(3, T=6, seed=1)

    def f(inp):
        return model.forward({k: v for k, v in inp.items() if k != "inputs"}, inp["inputs"])[0][-1, :, 0]

    def g(inp, G):
        p = {k: v for k, v in inp.items() if k != "inputs"}
        out, _, cache = model.forward(p, inp["inputs"])
        dout = np.zeros_like(out)
        dout[-1, :, 0] = G
        return model.backward(p, cache, dout)

    gradcheck.check_function(f, {**params, "inputs": x}, g).assert_ok(1e-6)

    # a short run on the adding task beats the constant predictor (MSE ~ 0.167)
    model = SequenceModel("lstm", hidden_size=16, input_size=2, output_size=1)
    params = model.init_params(seed=0)

    def step(p, i):
        xb, yb = adding_task(32, T=10, seed=i)
        out, _, cache = model.forward(p, xb)
        loss, dlast = mse(out[-1, :, 0], yb)
        dout = np.zeros_like(out)
        dout[-1, :, 0] = dlast
        return loss, model.backward(p, cache, dout)

    hist = train(step, params, Adam(lr=1e-2), 300, clip_norm=1.0, progress=False)
    assert np.mean(hist.loss[:20]) > 0.1 and np.mean(hist.loss[-30:]) < 0.05, (hist.loss[:3], hist.loss[-3:])
    assert len(hist.grad_norm) == 300 and hist.seconds > 0


def test_train_stops_on_nan():
    def step(p, i):
        return float("nan"), {"w": np.zeros(1)}
    with pytest.raises(FloatingPointError, match="step 0"):
        train(step, {"w": np.zeros(1)}, SGD(lr=0.1), 3, progress=False)


def test_data():
    text = load_text()
    assert len(text) > 1_000_000 and text.startswith("First Citizen")
    vocab = CharVocab(text)
    assert len(vocab) == 65
    ids = vocab.encode("To be, or not")
    assert vocab.decode(ids) == "To be, or not"
    with pytest.raises(ValueError, match="not in the vocabulary"):
        vocab.encode("€")
    batches = char_batches(vocab.encode(text[:5001]), batch_size=4, seq_len=10)
    x1, y1 = next(batches)
    x2, _ = next(batches)
    assert x1.shape == (10, 4)
    np.testing.assert_array_equal(x1[1:], y1[:-1])              # targets are the next characters
    np.testing.assert_array_equal(x2[0], y1[-1])                # chunks continue each stream
    with pytest.raises(ValueError, match="unknown corpus"):
        load_text("war-and-peace")

    inp, tgt, mask = copy_task(5, length=3, delay=4, n_symbols=6, seed=2)
    assert inp.shape == tgt.shape == mask.shape == (10, 5)
    np.testing.assert_array_equal(tgt[7:], inp[:3])
    assert np.all(inp[7] == 7) and mask.sum() == 15
    x, y = adding_task(8, T=20, seed=3)
    assert np.all(x[:, :, 1].sum(0) == 2)
    np.testing.assert_allclose(y, (x[:, :, 0] * x[:, :, 1]).sum(0))
    assert one_hot(np.array([1, 0]), 3).tolist() == [[0, 1, 0], [1, 0, 0]]
    np.testing.assert_array_equal(copy_task(2, seed=9)[0], copy_task(2, seed=9)[0])


def test_sampling_is_reproducible():
    model = SequenceModel("gru", hidden_size=8, vocab_size=5)
    p = model.init_params()
    a = model.sample(p, [1, 2], 10, temperature=0.8, seed=3)
    b = model.sample(p, [1, 2], 10, temperature=0.8, seed=3)
    assert a.shape == (10,) and np.array_equal(a, b) and a.max() < 5
