# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Chapter 5 — Deep, bidirectional and dense recurrent networks; the BiLSTM-CRF
#
# The cells of Chapters 1–4 read a sequence once, left to right, and leave one
# state per step. Real systems rarely stop there. A speech recogniser or a
# translation system *stacks* several recurrent layers, each re-reading the
# sequence of states below it; it reads the sequence in *both directions*, so that
# the representation of a word knows what comes after it; and when the outputs are
# labels that constrain each other — a tag that may only follow certain tags — it
# decodes them *jointly* instead of one position at a time. This chapter builds
# each of these from the cells we already have, derives their backward passes, and
# measures what each one buys:
#
# 1. a tagging task whose answers depend on the past, on the future, and on the
#    neighbouring answers — the running example;
# 2. the **bidirectional layer** (Schuster & Paliwal, 1997; Graves & Schmidhuber,
#    2005), its backward pass — **Exercise 5.1** — and a measurement of what the
#    backward direction adds;
# 3. **depth**: stacked layers (up to eight bidirectional LSTM layers in *A
#    Comprehensive Study of Deep Bidirectional LSTM RNNs for Acoustic Modeling in
#    Speech Recognition*, Zeyer et al., 2017), the residual connections of Google's
#    translation system (Wu et al., 2016, *Google's Neural Machine Translation
#    System*), and how the error travels down a stack with and without them;
# 4. **dense connections** (Ding et al., 2018, *Densely Connected Bidirectional LSTM
#    with Applications to Sentence Classification*): every layer reads the input and
#    all the layers below it;
# 5. the **linear-chain CRF** on top of a BiLSTM (Huang, Xu & Yu, 2015,
#    *Bidirectional LSTM-CRF Models for Sequence Tagging*): the forward algorithm in
#    log space — **Exercise 5.2** — Viterbi decoding — **Exercise 5.3** — the
#    gradient of its likelihood, and a comparison with a softmax tagger;
# 6. the same layers on every backend installed here.
#
# Every number is computed when the notebook runs; with `RNNBOOK_SMALL=1` the
# training runs shrink to a few dozen steps and the prose describes the full-size run.

# %%
import inspect
import itertools
import time
import warnings

import matplotlib.pyplot as plt
import numpy as np
from IPython.display import display

import rnnbook as rb
from rnnbook import crf
from rnnbook.book import SMALL, ImplementMe, check, pick
from rnnbook.book.timing import backend_timings
from rnnbook.layers import bidirectional, stacked

warnings.filterwarnings("ignore", message="IProgress not found")   # tqdm in a kernel without ipywidgets
print(f"small size: {SMALL}; backends usable here: {rb.available_backends()}")

# %% [markdown]
# ## 5.1 The running example: tagging words
#
# *Sequence tagging* gives every word of a sentence a label. In named-entity
# recognition the labels follow the **BIO** scheme: `B-PER` opens a person's name,
# `I-PER` continues it, `B-LOC` and `I-LOC` do the same for places, `O` is outside
# any name. The scheme has a grammar: `I-PER` may only follow `B-PER` or `I-PER`.
#
# `rnnbook.data.tagging_task` generates sentences from a small Markov chain that
# respects this grammar. Most words belong to one tag, but two are **ambiguous**:
# word 15 can open either kind of name and word 16 can continue either kind. Their
# tags are settled only by the neighbours: word 16 after an opening `B-LOC` word is
# `I-LOC` (the answer is in the *past*); word 15 followed by an unambiguous `I-PER`
# word is `B-PER` (the answer is in the *future*). That makes the task small enough
# to train in seconds and sharp enough to show what each architecture adds.

# %%
from rnnbook.data import tagging_task
from rnnbook.data.tagging import AMBIGUOUS_B, AMBIGUOUS_I, TAG_NAMES, TRANSITION_PROBS, VOCAB_SIZE

K = len(TAG_NAMES)
tokens, tags, mask = tagging_task(3, max_length=12, seed=4)
for b in range(3):
    L = int(mask[:, b].sum())
    print("  ".join(f"{w:>2}:{TAG_NAMES[t]:<5}" for w, t in zip(tokens[:L, b], tags[:L, b])))
print(f"\n{K} tags, {VOCAB_SIZE - 1} words (+ padding id 0); ambiguous words: {AMBIGUOUS_B} (B-?) and {AMBIGUOUS_I} (I-?)")
print("allowed moves (P(next tag | tag) > 0):")
print("\n".join(f"  {TAG_NAMES[i]:>5} -> " + ", ".join(TAG_NAMES[j] for j in range(K) if TRANSITION_PROBS[i, j] > 0)
                for i in range(K)))

# %% [markdown]
# ## 5.2 Reading both ways: the bidirectional layer
#
# A recurrent layer's state $h_t$ has seen $x_0, \dots, x_t$ and nothing after. A
# bidirectional layer runs **two** cells with their own parameters, one over the
# sequence and one over the reversed sequence, and concatenates their states at each
# position:
#
# $$\overrightarrow{y} = \mathrm{Cell}_{\text{fwd}}(x_0, \dots, x_{T-1}), \qquad
#   \overleftarrow{y}_t = \big[\mathrm{Cell}_{\text{bwd}}(x_{T-1}, \dots, x_0)\big]_{T-1-t}, \qquad
#   y_t = [\,\overrightarrow{y}_t \mid \overleftarrow{y}_t\,] \quad (B, 2H).$$
#
# The backward cell's step $s$ reads $x_{T-1-s}$, so its output at step $s$ belongs
# to position $t = T-1-s$: it is reversed again before the concatenation. Then
# $\overleftarrow{y}_t$ has seen $x_t, \dots, x_{T-1}$, and $y_t$ the whole sentence.
# Parameters are the two cells' under the prefixes `fwd.` and `bwd.`; in the library
# the layer is the architecture `"bidirectional"` (any registered cell inside):

# %%
print(inspect.getsource(bidirectional.forward))

# %% [markdown]
# **Backward.** Nothing new is needed beyond the chain rule through the two
# reversals. With `dy` $= \partial L/\partial y$ of shape $(T, B, 2H)$:
#
# * the first $H$ columns are $\partial L/\partial \overrightarrow{y}$; the forward cell's BPTT
#   takes them as they are;
# * the last $H$ columns are $\partial L/\partial \overleftarrow{y}$, indexed by position $t$.
#   The backward cell produced position $t$ at its step $T-1-t$, so its BPTT must
#   receive them **reversed in time**;
# * the input gradient adds both paths; the backward cell's $dx$ comes out indexed
#   by *its* steps, i.e. reversed, and is reversed back before the sum:
#
# $$dx_t = dx^{\text{fwd}}_t + dx^{\text{bwd}}_{T-1-t}.$$
#
# A reversal is a permutation of the time axis, so its backward pass is the same
# reversal.

# %% [markdown]
# ### Exercise 5.1 — the backward pass of a bidirectional layer
#
# Write `bidirectional_backward(params, cache, dy)` for the cache that
# `rb.forward("bidirectional", params, x, cell=...)` returns: `cache["fwd"]` and
# `cache["bwd"]` are the two cells' caches, `cache["cell"]` the cell's name and
# `cache["H"]` its hidden size. Use `rb.backward(cell, p, cell_cache, dy_half)` for
# each cell (with `p` the parameters without their `fwd.`/`bwd.` prefix) and return
# one dict with every `fwd.<name>`, every `bwd.<name>` and `"x"`. The check compares
# every parameter gradient, then isolates each path into `dx` by zeroing one half of
# `dy`, and finally checks the whole layer against finite differences.

# %%
def bidirectional_backward(params, cache, dy):
    """Backward of a bidirectional layer (no gradient on the final states).

    params = {"fwd.<name>": …, "bwd.<name>": …}; cache from rb.forward("bidirectional", …)
    dy (T, B, 2H) = dL/dy, the forward direction's half first
    returns {"fwd.<name>": …, "bwd.<name>": …, "x": (T, B, D)}
    """
    # BEGIN SOLUTION 5.1
    H, cell = cache["H"], cache["cell"]
    p_f = {k[len("fwd."):]: v for k, v in params.items() if k.startswith("fwd.")}
    p_b = {k[len("bwd."):]: v for k, v in params.items() if k.startswith("bwd.")}
    g_f = rb.backward(cell, p_f, cache["fwd"], np.ascontiguousarray(dy[:, :, :H]))
    g_b = rb.backward(cell, p_b, cache["bwd"], np.ascontiguousarray(dy[::-1, :, H:]))   # its step s made ←y_{T-1-s}
    grads = {**{f"fwd.{k}": g_f[k] for k in p_f}, **{f"bwd.{k}": g_b[k] for k in p_b}}
    grads["x"] = g_f["x"] + g_b["x"][::-1]          # its step s read x_{T-1-s}
    return grads
    # END SOLUTION


# %%
check("5.1", bidirectional_backward)

# %% [markdown]
# ### What the backward direction adds
#
# Three taggers of about the same size, each an embedding, a recurrent core and a
# softmax read-out, trained on the same batches with a cross-entropy per word:
# an LSTM reading left to right, the same LSTM fed the *reversed* sentence (its
# outputs reversed back: it reads right to left), and a bidirectional LSTM. All
# sentences have the same length here, so no padding is involved (Exercise 5.4 is
# about what padding does to the backward direction). We score each on held-out
# sentences, separately for the two ambiguous words and for all the others.

# %%
from rnnbook.losses import softmax_cross_entropy
from rnnbook.model import SequenceModel
from rnnbook.optim import Adam
from rnnbook.train import train

SENT = 12                                                    # every sentence has 12 words in this section
test_tokens, test_tags, test_mask = tagging_task(pick(full=512, small=128), min_length=SENT, max_length=SENT,
                                                 seed=10**6)
steps_dir = pick(full=400, small=20)
BATCH = pick(full=32, small=16)


def train_tagger(model, steps, lr=0.03, reverse=False, callback=None, every=25):
    """Softmax tagger on fixed-length sentences; ``reverse`` feeds each sentence right to left."""
    flip = (lambda a: np.ascontiguousarray(a[::-1])) if reverse else (lambda a: a)
    p = model.init_params(seed=0)

    def step_fn(p, step):
        tok, tg, _ = tagging_task(BATCH, min_length=SENT, max_length=SENT, seed=step + 1)
        logits, _, cache = model.forward(p, flip(tok))
        loss, dlogits = softmax_cross_entropy(logits, flip(tg))
        return loss, model.backward(p, cache, dlogits)

    hist = train(step_fn, p, Adam(lr), steps, clip_norm=5.0, progress=False, callback=callback, callback_every=every)
    predict = lambda p, tok: flip(model.forward(p, flip(tok))[0].argmax(axis=-1))   # noqa: E731
    return p, hist, predict


word_kinds = {f"ambiguous B-? (word {AMBIGUOUS_B})": test_tokens == AMBIGUOUS_B,
              f"ambiguous I-? (word {AMBIGUOUS_I})": test_tokens == AMBIGUOUS_I,
              "every other word": (test_tokens != AMBIGUOUS_B) & (test_tokens != AMBIGUOUS_I)}
readers = {
    "left to right": (SequenceModel("lstm", hidden_size=12, vocab_size=VOCAB_SIZE, embed_dim=8, output_size=K), False),
    "right to left": (SequenceModel("lstm", hidden_size=12, vocab_size=VOCAB_SIZE, embed_dim=8, output_size=K), True),
    "bidirectional": (SequenceModel("lstm", hidden_size=8, vocab_size=VOCAB_SIZE, embed_dim=8, output_size=K,
                                    bidirectional=True), False),
}
accuracy_by_kind = {}
for name, (model, reverse) in readers.items():
    p, hist, predict = train_tagger(model, steps_dir, reverse=reverse)
    pred = predict(p, test_tokens)
    accuracy_by_kind[name] = {kind: float(np.mean(pred[sel] == test_tags[sel])) for kind, sel in word_kinds.items()}
    print(f"{name:>14}: {sum(v.size for v in p.values())} parameters, {hist.seconds:.1f} s, "
          + ", ".join(f"{kind}: {acc:.1%}" for kind, acc in accuracy_by_kind[name].items()))

fig, ax = plt.subplots(figsize=(8, 3.6))
width = 0.26
for i, (name, accs) in enumerate(accuracy_by_kind.items()):
    ax.bar(np.arange(3) + (i - 1) * width, list(accs.values()), width, label=name)
ax.set_xticks(range(3))
ax.set_xticklabels(list(word_kinds))
ax.set(ylim=(0, 1.05), ylabel="held-out accuracy", title="What each reading direction can resolve")
ax.legend(loc="lower left")
ax.grid(axis="y", alpha=0.3)
plt.show()

# %% [markdown]
# At the full size the picture is sharp. Every tagger gets the unambiguous words
# right. The left-to-right tagger resolves the ambiguous *continuation* word (the
# opening word came before it) but guesses on the ambiguous *opening* word, whose
# type is announced only by the word after it; the right-to-left tagger has exactly
# the opposite profile. The bidirectional tagger gets both. Neither reaches 100% on
# the opening word: when a name is one word long, or its second word is ambiguous
# too, nothing in the sentence says whether it was a person or a place.

# %% [markdown]
# ## 5.3 Going deep: stacked layers and residual connections
#
# A **stack** of $L$ recurrent layers feeds the output sequence of each layer to the
# next as its input sequence. With $y^{(-1)} = x$,
#
# $$u^{(l)} = \mathrm{Cell}_l\big(y^{(l-1)}\big), \qquad
#   y^{(l)} = \begin{cases} u^{(l)} + y^{(l-1)} & \text{residual, } l \ge 1\\ u^{(l)} & \text{otherwise}\end{cases}
#   \qquad l = 0, \dots, L-1,$$
#
# and the output is $y^{(L-1)}$. The parameters of layer $l$ carry the prefix
# `layer{l}.` (so `layer2.W_ih`), its state sits in the stack's state tuple after
# those of the layers below. Layer 0 reads $D$ features, the others $H$ (or $2H$
# when each layer is bidirectional, `bidirectional=True`). The **residual** form is
# GNMT's: from the second layer on, a layer learns a *correction* $u^{(l)}$ to its
# input rather than a replacement, which needs equal widths in and out.
#
# **Backward**, from the top layer down: each layer's BPTT turns
# $\partial L/\partial y^{(l)}$ into its parameter gradients and
# $\partial L/\partial(\text{its input})$; for a residual layer the identity path adds the
# error from above unchanged:
#
# $$\frac{\partial L}{\partial y^{(l-1)}} = dx\big(\mathrm{Cell}_l\big) \;\Big[+\; \frac{\partial L}{\partial y^{(l)}}\ \text{if residual}\Big].$$
#
# That bracket is the whole point. Without it, the error that reaches layer 0 is a
# product of $L$ per-layer Jacobians $\partial u^{(l)}/\partial y^{(l-1)}$ — the same
# vanishing product as Chapter 1's, taken across *depth* instead of time. With it,
# every Jacobian becomes $I + \partial u^{(l)}/\partial y^{(l-1)}$, and the product contains
# the identity as one of its terms. The LSTM's constant error carousel runs along
# time, not depth: going *up* a layer, an LSTM unit's output $o \odot \tanh(c)$ passes
# through two gates, and at initialisation gates sit near $1/2$.
#
# The measurement: a 16-layer stack at initialisation, an error on every output of
# the top layer, and the norm of the gradient that each layer's parameters receive.

# %%
T_d, B_d, H_d, L_d = pick(full=(20, 8, 16, 16), small=(8, 4, 16, 8))
rng = np.random.default_rng(0)
x_d = rng.standard_normal((T_d, B_d, H_d))
dy_d = rng.standard_normal((T_d, B_d, H_d))
modes = {"plain": {}, "residual (GNMT)": {"residual": True}, "dense": {"dense": True}}


def layer_grad_norms(cell, L, options, **cell_options):
    """‖∂L/∂θ_l‖ for each layer l of an L-layer stack at initialisation, for L = <dy, y>."""
    p = rb.init_params("stacked", H_d, H_d, cell=cell, num_layers=L, **options, **cell_options)
    _, _, cache = rb.forward("stacked", p, x_d, cell=cell, **options, **cell_options)
    g = rb.backward("stacked", p, cache, dy_d)
    return [np.sqrt(sum(np.sum(g[k] ** 2) for k in p if k.startswith(f"layer{l}."))) for l in range(L)]


fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), sharey=True)
for ax, (cell, opts, title) in zip(axes, [("rnn", {"nonlinearity": "tanh"}, "Elman (tanh)"), ("gru", {}, "GRU"),
                                          ("lstm", {}, "LSTM")]):
    for label, options in modes.items():
        ax.semilogy(layer_grad_norms(cell, L_d, options, **opts), "o-", ms=3, label=label)
    ax.set(title=f"{title}, {L_d} layers", xlabel="layer l (0 = bottom)")
    ax.grid(alpha=0.3)
axes[0].set_ylabel("‖∂L/∂θ_l‖ at initialisation")
axes[0].legend()
plt.show()

# %% [markdown]
# In the plain LSTM stack the bottom layer's gradient is about eight orders of
# magnitude smaller than the top layer's: gradient descent would leave it where it
# started. The tanh stack loses a few hundredfold over the sixteen layers, the GRU
# stack about four orders of magnitude. With residual connections every layer
# receives a gradient of about the same size. This is what GNMT's authors ran into:
# they report that plain LSTM stacks trained well up to four layers, barely with
# six and poorly beyond eight, and the residual connections let them use eight in
# the encoder and eight in the decoder. Zeyer et al. met the same obstacle in their
# eight-layer speech models and found that building the stack layer by layer
# (pretraining each new layer on top of the trained ones) helps deep LSTMs. The third
# curve, flat as well, is the subject of the next section.
#
# ## 5.4 Dense connections
#
# A residual layer *adds* its input to its output. Densely connected layers
# (DenseNet in vision; for recurrent layers the DC-Bi-LSTM of Ding et al.)
# *concatenate* instead: layer $l$ reads the input and the outputs of every layer
# below it,
#
# $$y^{(l)} = \mathrm{Cell}_l\big([\,x \mid y^{(0)} \mid \dots \mid y^{(l-1)}\,]\big),$$
#
# so layer $l$ reads $D + l \cdot O$ features ($O = H$, or $2H$ for bidirectional
# layers) and its `W_ih` grows accordingly. Every layer sees the raw words and every
# earlier representation, and the top layer is *one* Jacobian away from each of them.
# Ding et al. train such stacks up to twenty layers deep and find them better than a
# plain bidirectional LSTM with the same number of parameters or fewer — each layer
# can be narrow, since its output is only a small addition to a wide concatenation.
# In the paper the top layer's states are averaged over the sentence for a
# classifier; here the stack's output is, as for every stack, the **last layer's
# output** $y^{(L-1)}$ — the concatenation would be the input of a layer $L$, and a
# reader who wants it can concatenate the outputs themselves. Residual and dense
# connections exclude each other (`ValueError` if both are asked for).
#
# **Backward.** The input of layer $l$ is a concatenation, so the gradient
# `dx` of its cell is split by columns exactly as the input was assembled, and each
# block is *added* to the gradient of the sequence it came from. Going from the top
# layer down, by the time layer $l$ runs its BPTT every layer above has delivered
# its share of $\partial L/\partial y^{(l)}$:
#
# $$\Big[\tfrac{\partial L}{\partial x} \,\Big|\, \tfrac{\partial L}{\partial y^{(0)}} \,\Big|\, \dots \,\Big|\,
#   \tfrac{\partial L}{\partial y^{(l-1)}}\Big] \mathrel{+}= dx\big(\mathrm{Cell}_l\big).$$
#
# This is the option `dense=True` of the library's `stacked` composite; here is its
# backward pass, residual and dense branches side by side:

# %%
print(inspect.getsource(stacked.backward))

# %% [markdown]
# Two checks, each an oracle of a different kind. **Finite differences** with every
# parameter random (biases included) and a random initial state, for a three-layer
# dense stack of GRUs (the tests do the same with bidirectional layers); and an
# **equivalence** that needs no numerical derivative: set to zero the columns of each
# `W_ih` that read $x$ and all but the previous layer's output, and the dense stack
# *is* the plain stack — outputs, final states and gradients.

# %%
def random_like(params, rng, scale=0.6):
    """Fresh random values for every parameter, biases included."""
    return {k: scale * rng.standard_normal(v.shape) for k, v in params.items()}


rng = np.random.default_rng(1)
p_dense = random_like(rb.init_params("stacked", 2, 3, cell="gru", num_layers=3, dense=True), rng)
print({k: v.shape for k, v in p_dense.items() if k.endswith("W_ih")})
x_small = rng.standard_normal((3, 2, 2))
s0 = tuple(0.5 * rng.standard_normal((2, 3)) for _ in range(3))     # one (h,) per layer
report = rb.gradcheck.check_architecture("stacked", p_dense, x_small, s0, cell="gru", dense=True)
print(f"finite differences, worst relative error {max(e.raw_error for e in report.entries):.1e}")
report.assert_ok()

p_plain = random_like(rb.init_params("stacked", 3, 4, cell="lstm", num_layers=3), rng)
p_wide = {k: v.copy() for k, v in p_plain.items()}
for l in (1, 2):                                             # layer l reads [x | y0 | … | y^(l-1)]: keep y^(l-1)
    wide = np.zeros((16, 3 + 4 * l))
    wide[:, 3 + 4 * (l - 1):] = p_plain[f"layer{l}.W_ih"]
    p_wide[f"layer{l}.W_ih"] = wide
x_eq = rng.standard_normal((5, 2, 3))
y_plain, _, c_plain = rb.forward("stacked", p_plain, x_eq, cell="lstm")
y_wide, _, c_wide = rb.forward("stacked", p_wide, x_eq, cell="lstm", dense=True)
dy_eq = rng.standard_normal(y_plain.shape)
g_plain = rb.backward("stacked", p_plain, c_plain, dy_eq)
g_wide = rb.backward("stacked", p_wide, c_wide, dy_eq)
print("dense stack with zeroed extra columns vs plain stack: outputs differ by",
      np.abs(y_wide - y_plain).max(), "| dx by", np.abs(g_wide["x"] - g_plain["x"]).max(),
      "| dW_ih of layer 2 (kept columns) by", np.abs(g_wide["layer2.W_ih"][:, 7:] - g_plain["layer2.W_ih"]).max())

# %% [markdown]
# The columns we zeroed still receive gradients (`g_wide["layer2.W_ih"][:, :7]` is
# not zero): training would switch those connections on. The gradient-flow figure
# of Section 5.3 already showed the consequence: in a dense stack every layer's
# parameters receive a gradient of the same size, because the error reaches each
# layer through the top layer's input directly.
#
# ## 5.5 Training deep stacks
#
# Does the flat gradient profile matter for training? Three taggers with the same
# six bidirectional LSTM layers (two at the small size) — plain, residual and
# dense — trained from the same start on the same batches.

# %%
L_train, steps_deep = pick(full=(6, 240), small=(2, 15))
deep_runs = {}
for label, options in modes.items():
    model = SequenceModel("lstm", hidden_size=8, vocab_size=VOCAB_SIZE, embed_dim=16, output_size=K,
                          num_layers=L_train, bidirectional=True, **options)
    p, hist, predict = train_tagger(model, steps_deep, lr=0.01)
    accuracy = float(np.mean(predict(p, test_tokens) == test_tags))
    deep_runs[label] = (hist, accuracy, sum(v.size for v in p.values()))

fig, ax = plt.subplots(figsize=(7, 4))
for label, (hist, accuracy, n) in deep_runs.items():
    ax.semilogy(hist.smoothed(0.9), label=f"{label}: {n} parameters, held-out accuracy {accuracy:.1%}")
ax.set(xlabel="step", ylabel="cross-entropy per word (smoothed)",
       title=f"{L_train} bidirectional LSTM layers on the tagging task")
ax.grid(alpha=0.3)
ax.legend()
plt.show()

# %% [markdown]
# At the full size the residual and the dense stacks are down to a cross-entropy
# of about 0.05 within a hundred steps. The plain six-layer stack, with exactly as
# many parameters as the residual one, descends far more slowly, stalls on a plateau, and
# is still several times higher after 240 steps (about 95% of the held-out words
# right, against 97% for the other two). The dense stack gets there with two and a
# half times the parameters — its upper layers read ever wider inputs — so the fair
# comparison for the shortcut itself is plain against residual. Depth without a
# shortcut is a handicap before it is an asset. (On a task this small one layer does
# as well as six; the point is *trainability*, which is what limits depth on real data.)
#
# ## 5.6 Tags that constrain each other: the linear-chain CRF
#
# A softmax tagger chooses each tag independently given the network's features.
# Nothing stops it from emitting `O I-PER` — an impossible pair — when the features
# at the two positions point different ways; Section 5.9 counts how often it
# happens. A **conditional random field** over the tag sequence scores whole
# sequences instead. The network supplies *emissions* $E[t, k]$, the score of tag $k$
# at position $t$; the CRF adds a *transition* score $A[i, j]$ for tag $j$ following
# tag $i$, a start score $\pi[k]$ and an end score $\omega[k]$ (`crf.transitions`,
# `crf.start`, `crf.end`). For a sentence of length $L$ and tags $y = y_0 \dots y_{L-1}$,
#
# $$s(y) = \pi[y_0] + \sum_{t=0}^{L-1} E[t, y_t] + \sum_{t=1}^{L-1} A[y_{t-1}, y_t] + \omega[y_{L-1}],
#   \qquad p(y) = \frac{\exp s(y)}{Z}, \qquad Z = \sum_{y'} \exp s(y').$$
#
# Training maximises $\log p(y^*) = s(y^*) - \log Z$ for the gold tags $y^*$; decoding
# finds $\arg\max_y s(y)$. Both look like sums or maxima over $K^L$ sequences; the
# chain structure brings them down to $O(L K^2)$.
#
# **A worked lattice.** Three tags O, B, I (one kind of name), a four-word sentence,
# and scores chosen by hand: `O → I` is nearly forbidden ($A = -4$), and the emissions
# of the second word lean towards `I`, so that the best tag *per position* is the
# invalid `O I I O`. With $3^4 = 81$ sequences we can still list them all.

# %%
small_tags = ("O", "B", "I")
words = ("in", "new", "york", "today")
E_demo = np.array([[2.0, 0.5, 0.0],          # in
                   [1.0, 1.2, 1.4],          # new   (leans to I)
                   [0.2, 0.3, 2.0],          # york
                   [2.0, 0.1, 0.3]])[:, None, :]                 # (T, B=1, K)
demo = {"transitions": np.array([[0.5, 0.0, -4.0],              # from O:  O→O, O→B, O→I
                                 [0.0, -1.0, 1.5],               # from B
                                 [0.2, -1.0, 0.5]]),             # from I
        "start": np.array([0.5, 0.0, -4.0]), "end": np.array([0.3, -1.0, 0.3])}
T_demo, K_demo = E_demo.shape[0], E_demo.shape[2]


def path_score(params, E, y, b=0):
    """s(y) written out term by term (the definition, for checking)."""
    s = params["start"][y[0]] + params["end"][y[-1]] + sum(E[t, b, y[t]] for t in range(len(y)))
    return s + sum(params["transitions"][y[t - 1], y[t]] for t in range(1, len(y)))


paths = list(itertools.product(range(K_demo), repeat=T_demo))
scores = np.array([path_score(demo, E_demo, y) for y in paths])
log_Z_brute = np.log(np.exp(scores).sum())
print(f"{len(paths)} paths; log Z by enumeration = {log_Z_brute:.4f}")
for i in np.argsort(-scores)[:4]:
    print(f"  {' '.join(small_tags[k] for k in paths[i]):<8} s = {scores[i]:5.2f}   p = {np.exp(scores[i] - log_Z_brute):.3f}")
greedy = E_demo[:, 0].argmax(axis=1)
print("best tag per position (emissions alone):", " ".join(small_tags[k] for k in greedy),
      f"— s = {path_score(demo, E_demo, greedy):.2f}")

# %% [markdown]
# **The forward algorithm.** Let $\alpha_t[j]$ be the summed $\exp$-score of every
# *prefix* $y_0 \dots y_t$ that ends in tag $j$ (scores up to and including $E[t, j]$).
# Every prefix ending in $j$ at $t$ is a prefix ending in some $i$ at $t-1$, followed by
# the move $i \to j$ and the emission $E[t, j]$; since $\exp$ turns the sum of scores into
# a product, the sum over prefixes factorises:
#
# $$\alpha_0[j] = e^{\pi[j] + E[0, j]}, \qquad
#   \alpha_t[j] = \sum_i \alpha_{t-1}[i]\, e^{A[i, j]}\, e^{E[t, j]}, \qquad
#   Z = \sum_j \alpha_{L-1}[j]\, e^{\omega[j]}.$$
#
# A path's score adds up over its words, and $e^{s}$ overflows float64 once $s$ passes
# about 709 (and underflows to 0 below about $-745$): a long sentence with confident
# emissions gets there. So we keep $\log \alpha$ and replace each sum of products by a
# **log-sum-exp**:
#
# $$\log\alpha_t[j] = \operatorname{logsumexp}_i\big(\log\alpha_{t-1}[i] + A[i, j]\big) + E[t, j], \qquad
#   \log Z = \operatorname{logsumexp}_j\big(\log\alpha_{L-1}[j] + \omega[j]\big),$$
#
# computed stably as $\operatorname{logsumexp}(a) = m + \log \sum e^{a - m}$ with $m = \max a$, so that
# the largest term is $e^0 = 1$. Mind the orientation: $A[i, j]$ is *from* $i$ *to* $j$,
# and the new $\log\alpha[j]$ reduces over the **first** index.
#
# **Padding.** A batch holds sentences of different lengths, padded at the end and
# marked by `mask` $(T, B)$. At a padded step the recursion must do nothing:
# $\log\alpha_t = \log\alpha_{t-1}$. Then $\log\alpha_{T-1}$ equals each sentence's own
# $\log\alpha_{L-1}$, and $\omega$ is added after its last real word.
#
# Here are the $\log\alpha$ of the worked example, computed from their *definition* —
# a log-sum over the enumerated prefixes — on its lattice (node: a tag at a
# position; edge: a move from one tag to the next, dashed for the nearly forbidden
# `O → I`).

# %%
def prefix_tables(params, E):
    """log α_t[j] (log-sum) and δ_t[j] (max) over every prefix that ends in tag j at position t,
    and the previous tag of the best such prefix — by enumeration, for the worked example."""
    T, _, K = E.shape
    log_alpha, delta, back = np.full((T, K), -np.inf), np.full((T, K), -np.inf), np.zeros((T, K), int)
    for t in range(T):
        for prefix in itertools.product(range(K), repeat=t + 1):
            s = path_score({**params, "end": np.zeros(K)}, E[: t + 1], prefix)   # score so far: no ω yet
            j = prefix[-1]
            log_alpha[t, j] = np.logaddexp(log_alpha[t, j], s)
            if s > delta[t, j]:
                delta[t, j], back[t, j] = s, prefix[-2] if t else -1
    return log_alpha, delta, back


def draw_lattice(ax, values, title, path=None, back=None):
    """The T × K lattice: nodes carry ``values``; grey edges are all moves (dashed: A <= -4);
    blue arrows are ``back`` pointers, the red line is ``path``."""
    T, Kn = values.shape
    A = demo["transitions"]
    for t in range(1, T):
        for i in range(Kn):
            for j in range(Kn):
                ax.plot([t - 1, t], [-i, -j], color="0.8", lw=0.8, ls="--" if A[i, j] <= -4 else "-", zorder=1)
    if back is not None:
        for t in range(1, T):
            for j in range(Kn):
                ax.annotate("", xy=(t - 1 + 0.12, -back[t, j]), xytext=(t - 0.12, -j),
                            arrowprops=dict(arrowstyle="->", color="C0", lw=1.2), zorder=2)
    if path is not None:
        ax.plot(range(T), [-k for k in path], color="C3", lw=3, alpha=0.6, zorder=2)
    for t in range(T):
        for k in range(Kn):
            ax.scatter(t, -k, s=900, color="white", edgecolor="k", zorder=3)
            ax.text(t, -k, f"{values[t, k]:.2f}", ha="center", va="center", fontsize=8, zorder=4)
    ax.set_xticks(range(T))
    ax.set_xticklabels([f"t={t}\n{w}" for t, w in enumerate(words)])
    ax.set_yticks([-k for k in range(Kn)])
    ax.set_yticklabels(small_tags)
    ax.set_xlim(-0.5, T - 0.5)
    ax.set_ylim(-Kn + 0.5, 0.5)
    ax.set_title(title, fontsize=10)


log_alpha_demo, delta_demo, back_demo = prefix_tables(demo, E_demo)
fig, ax = plt.subplots(figsize=(7, 3.2))
draw_lattice(ax, log_alpha_demo, "log α_t[j]: log-sum over the prefixes ending in j at t")
plt.show()
print("log Z = logsumexp_j(log α_3[j] + ω[j]) =", np.logaddexp.reduce(log_alpha_demo[-1] + demo["end"]).round(4),
      " (enumeration:", round(log_Z_brute, 4), ")")

# %% [markdown]
# ### Exercise 5.2 — the forward algorithm in log space
#
# Write `crf_log_partition(params, emissions, mask)` that returns $\log Z$, shape $(B,)$,
# for `params = {"transitions": A (K, K), "start": π (K,), "end": ω (K,)}`,
# `emissions` $(T, B, K)$ and `mask` $(T, B)$ of 0/1 (ones first, at least one per
# column). Work in log space with a stable log-sum-exp, carry $\log\alpha$ over on
# padded steps, and loop over time only (vectorise over the batch and the tags:
# `log_alpha[:, :, None] + A` has shape $(B, K_{\text{prev}}, K)$).
#
# The check switches the score types on one at a time — emissions only, then
# emissions with $\pi$, with $\omega$, with $A$ — so that a misplaced start or end score,
# a transposed $A$ or a `max` where a log-sum-exp belongs is named by the problem on
# which it alone shows; then it counts paths (all scores zero gives $\log Z = L \log K$),
# pads a batch, and shifts every emission by 1000 to catch an overflowing $\exp$.

# %%
def crf_log_partition(params, emissions, mask):
    """log Z of a linear-chain CRF by the forward algorithm in log space.

    params = {"transitions": A (K, K), A[i, j] = score of tag j after tag i,
              "start": π (K,), "end": ω (K,)}
    emissions (T, B, K); mask (T, B) of 0/1, 1 on the first L_b steps of column b
    returns log Z (B,)
    """
    # BEGIN SOLUTION 5.2
    A, start, end = params["transitions"], params["start"], params["end"]
    T = emissions.shape[0]
    log_alpha = start + emissions[0]                                  # (B, K): π + E_0
    for t in range(1, T):
        scores = log_alpha[:, :, None] + A                            # (B, K_prev, K): log α_{t-1}[i] + A[i, j]
        m = scores.max(axis=1, keepdims=True)                         # shift: the largest term is exp(0)
        nxt = np.log(np.exp(scores - m).sum(axis=1)) + m[:, 0, :] + emissions[t]
        log_alpha = np.where(mask[t][:, None] > 0, nxt, log_alpha)    # padding: carry over
    final = log_alpha + end                                           # (B, K)
    m = final.max(axis=1, keepdims=True)
    return np.log(np.exp(final - m).sum(axis=1)) + m[:, 0]
    # END SOLUTION


# %%
check("5.2", crf_log_partition)

# %% [markdown]
# The library's `crf.log_partition` is the same recursion. Against enumeration,
# on random scores and lengths $1 \dots 8$, the two agree to rounding error — and the
# enumeration's cost grows as $K^L$ while the recursion's grows as $L K^2$:

# %%
rng = np.random.default_rng(2)
print(f"{'L':>3} {'paths':>7} {'|log Z − enumeration|':>22} {'enumeration (ms)':>17} {'forward (ms)':>13}")
for L in range(1, pick(full=9, small=6)):
    p = {k: rng.standard_normal(v.shape) for k, v in crf.init_params(3).items()}
    E_r = rng.standard_normal((L, 1, 3))
    times = []
    for _ in range(3):                                        # the best of three: the machine is shared
        t0 = time.perf_counter()
        brute = np.logaddexp.reduce([path_score(p, E_r, y) for y in itertools.product(range(3), repeat=L)])
        t1 = time.perf_counter()
        fast = crf.log_partition(p, E_r)[0]
        times.append((t1 - t0, time.perf_counter() - t1))
    t_brute, t_fast = np.min(times, axis=0)
    print(f"{L:>3} {3 ** L:>7} {abs(fast - brute):>22.1e} {1e3 * t_brute:>17.2f} {1e3 * t_fast:>13.3f}")

# %% [markdown]
# ## 5.7 Decoding: the Viterbi algorithm
#
# The most probable tag sequence maximises $s(y)$, and the same factorisation works
# with $\max$ in place of the sum (max distributes over addition as sum does over
# products). Let $\delta_t[j]$ be the best score of a prefix ending in $j$ at $t$:
#
# $$\delta_0[j] = \pi[j] + E[0, j], \qquad
#   \delta_t[j] = \max_i\big(\delta_{t-1}[i] + A[i, j]\big) + E[t, j], \qquad
#   \text{bp}_t[j] = \arg\max_i\big(\delta_{t-1}[i] + A[i, j]\big).$$
#
# The best sequence ends in $y_{L-1} = \arg\max_j(\delta_{L-1}[j] + \omega[j])$, its score is
# that maximum, and the **backpointers** recover the rest backwards:
# $y_{t-1} = \text{bp}_t[y_t]$ — the pointer stored at step $t$ names the tag at $t-1$.
# With padding, a padded step keeps $\delta$ and points every tag to itself, so the
# back-tracking walks through the padding unchanged to each sentence's own last
# tag; padded positions get the tag $-1$.
#
# On the worked example, again by enumeration of the prefixes: each node carries
# $\delta_t[j]$, each blue arrow is its backpointer, and the red line is the path that
# the library's `crf.viterbi` returns. The transition scores route it round the
# forbidden `O → I`:

# %%
vit_tags, vit_score = crf.viterbi(demo, E_demo)
fig, ax = plt.subplots(figsize=(7, 3.2))
draw_lattice(ax, delta_demo, "δ_t[j] with backpointers; red: the Viterbi path", path=vit_tags[:, 0],
             back=back_demo)
plt.show()
print("Viterbi:", " ".join(small_tags[k] for k in vit_tags[:, 0]), f"score {vit_score[0]:.2f};",
      f"best path by enumeration: {' '.join(small_tags[k] for k in paths[int(np.argmax(scores))])} "
      f"score {scores.max():.2f}")

# %% [markdown]
# ### Exercise 5.3 — Viterbi decoding
#
# Write `crf_viterbi(params, emissions, mask)` returning `(tags, best_score)`: `tags`
# $(T, B)$ integers with $-1$ on padding, `best_score` $(B,)$. Store a backpointer
# array $(T, B, K)$, mind which index of $A$ the argmax runs over, include $\omega$ when
# you choose the last tag, and make padded steps point each tag to itself. The check
# isolates the score types as in Exercise 5.2, compares tags and scores separately,
# and scores the path you return with the library's `crf.sequence_score`: a path that
# does not score your best score points at the back-tracking.

# %%
def crf_viterbi(params, emissions, mask):
    """Most probable tag sequence of a linear-chain CRF.

    params, emissions (T, B, K), mask (T, B) as in crf_log_partition
    returns (tags (T, B) int with -1 on padding, best_score (B,))
    """
    # BEGIN SOLUTION 5.3
    A, start, end = params["transitions"], params["start"], params["end"]
    T, B, K = emissions.shape
    delta = start + emissions[0]                                      # (B, K)
    backpointer = np.zeros((T, B, K), np.int64)
    for t in range(1, T):
        scores = delta[:, :, None] + A                                # (B, K_prev, K)
        real = mask[t][:, None] > 0
        backpointer[t] = np.where(real, scores.argmax(axis=1), np.arange(K))   # padding: point to itself
        delta = np.where(real, scores.max(axis=1) + emissions[t], delta)
    final = delta + end
    tags = np.empty((T, B), np.int64)
    tags[T - 1] = final.argmax(axis=1)
    for t in range(T - 1, 0, -1):
        tags[t - 1] = backpointer[t, np.arange(B), tags[t]]          # bp_t names the tag at t-1
    return np.where(mask > 0, tags, -1), final.max(axis=1)
    # END SOLUTION


# %%
check("5.3", crf_viterbi)

# %% [markdown]
# ## 5.8 Learning the CRF: marginals minus counts
#
# The loss of one sentence is $\ell = \log Z - s(y^*)$. Its gradient needs no new
# machinery. $s(y^*)$ is linear in the scores: $\partial s(y^*)/\partial E[t, k] = [y^*_t = k]$,
# and $\partial s(y^*)/\partial A[i, j]$ counts the moves $i \to j$ on the gold path. $\log Z$ is a
# log-sum-exp of such linear functions, and the derivative of a log-sum-exp is the
# softmax weight of each term — here the probability $p(y)$ of each path. So
#
# $$\frac{\partial \ell}{\partial E[t, k]} = P(y_t = k) - [y^*_t = k], \qquad
#   \frac{\partial \ell}{\partial A[i, j]} = \sum_{t \ge 1} P(y_{t-1} = i, y_t = j) - \#\{t : y^*_{t-1} = i,\ y^*_t = j\},$$
#
# and likewise for $\pi$ and $\omega$: **expected counts under the model minus the
# counts of the gold path**. The marginals come from running the same recursion
# from the other end as well ($\log\beta$, the *backward algorithm*) and combining,
# $P(y_t = k) = \exp(\log\alpha_t[k] + \log\beta_t[k] - \log Z)$ — the forward–backward
# algorithm, `crf.marginals`. The library's gradient passes a finite-difference
# check with random scores, a padded batch and random gold tags:

# %%
rng = np.random.default_rng(3)
p_crf = {k: rng.standard_normal(v.shape) for k, v in crf.init_params(4).items()}
E_g = rng.standard_normal((5, 3, 4))
mask_g = (np.arange(5)[:, None] < np.array([5, 3, 1])[None, :]).astype(float)
gold = rng.integers(0, 4, (5, 3))


def nll(inp):
    return crf.nll_forward({k: inp[k] for k in crf.PARAM_NAMES}, inp["emissions"], gold, mask_g)[0]


def nll_grads(inp, dnll):
    p = {k: inp[k] for k in crf.PARAM_NAMES}
    return crf.nll_backward(p, crf.nll_forward(p, inp["emissions"], gold, mask_g)[1], dnll)


report = rb.gradcheck.check_function(nll, {**p_crf, "emissions": E_g}, nll_grads)
print(report)
report.assert_ok()

# %% [markdown]
# ## 5.9 The BiLSTM-CRF against a softmax tagger
#
# The BiLSTM-CRF of Huang, Xu & Yu is the bidirectional tagger of Section 5.2 with the
# softmax replaced by a CRF: the read-out's outputs become the emissions $E$, the loss
# is the CRF's negative log-likelihood, and decoding is Viterbi. Its backward pass
# chains what this chapter derived: `crf.nll_backward` gives $\partial\ell/\partial E$ (marginals
# minus gold), the linear read-out turns it into $\partial\ell/\partial h$, and its two halves go
# back through the two LSTMs — the backward one reversed, as in Exercise 5.1:

# %%
from rnnbook.bilstm_crf import BiLSTMCRF

print(inspect.getsource(BiLSTMCRF.loss_and_grads))

# %% [markdown]
# We train it and the bidirectional softmax tagger (same embedding and LSTM sizes,
# same batches) and follow, on the held-out sentences, the tag accuracy and the number
# of **BIO violations** in the predictions: an `I-X` at the start of a sentence or after
# anything but `B-X` or `I-X`.

# %%
def bio_violations(pred):
    """Number of positions whose tag I-X does not continue a B-X or I-X (or starts the sentence)."""
    names = np.array(TAG_NAMES)[pred]                                     # (T, B) of strings
    inside = np.char.startswith(names, "I-")
    kind = np.array([n[2:] for n in names.ravel()]).reshape(names.shape)
    prev_ok = np.zeros_like(inside)
    prev_ok[1:] = (np.char.startswith(names[:-1], "B-") | np.char.startswith(names[:-1], "I-")) & (kind[:-1] == kind[1:])
    return int(np.sum(inside & ~prev_ok))


steps_crf, every = pick(full=(400, 20), small=(20, 10))
curves = {}


def monitor(name, predict):
    curves[name] = {"step": [], "accuracy": [], "violations": []}

    def callback(step, p, hist):
        pred = predict(p, test_tokens)
        curves[name]["step"].append(step + 1)
        curves[name]["accuracy"].append(float(np.mean(pred == test_tags)))
        curves[name]["violations"].append(bio_violations(pred))
    return callback


softmax_model = SequenceModel("lstm", hidden_size=8, vocab_size=VOCAB_SIZE, embed_dim=8, output_size=K,
                              bidirectional=True)
softmax_predict = lambda p, tok: softmax_model.forward(p, tok)[0].argmax(axis=-1)   # noqa: E731
p_soft, hist_soft, _ = train_tagger(softmax_model, steps_crf, callback=monitor("BiLSTM + softmax", softmax_predict),
                                    every=every)

crf_model = BiLSTMCRF(VOCAB_SIZE, K, embed_dim=8, hidden_size=8)
p_crf_model = crf_model.init_params(seed=0)


def crf_step(p, step):
    tok, tg, m = tagging_task(BATCH, min_length=SENT, max_length=SENT, seed=step + 1)
    return crf_model.loss_and_grads(p, tok, tg, m)


hist_crf = train(crf_step, p_crf_model, Adam(0.03), steps_crf, clip_norm=5.0, progress=False,
                 callback=monitor("BiLSTM-CRF", lambda p, tok: crf_model.decode(p, tok)), callback_every=every)

fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
axes[0].semilogy(hist_soft.smoothed(0.9), label="BiLSTM + softmax (cross-entropy per word)")
axes[0].semilogy(hist_crf.smoothed(0.9), label="BiLSTM-CRF (NLL per sentence)")
axes[0].set(xlabel="step", ylabel="training loss (smoothed)", title="training")
for name, c in curves.items():
    axes[1].plot(c["step"], c["accuracy"], "o-", ms=3, label=name)
    axes[2].plot(c["step"], c["violations"], "o-", ms=3, label=name)
axes[1].axhline(np.mean(test_tags == 0), color="k", ls=":", lw=1, label="always O")
axes[1].set(xlabel="step", ylabel="held-out tag accuracy", ylim=(0.4, 1.0), title="accuracy")
axes[2].set(xlabel="step", ylabel="BIO violations", title=f"invalid tags in {test_tokens.shape[1]} held-out sentences")
for a in axes:
    a.grid(alpha=0.3)
    a.legend(fontsize=8)
plt.show()
for name, c in curves.items():
    print(f"{name:>17}: accuracy {c['accuracy'][-1]:.1%}, BIO violations {c['violations'][-1]}")

# %% [markdown]
# At the full size both taggers end near 97% of the words right — the ambiguous
# opening word of a one-word name caps them both. The softmax tagger's predictions
# contain dozens of impossible tags early on and still a handful to a few dozen
# (the count jumps from one evaluation to the next) after hundreds of steps; the
# CRF's contain some at the first evaluation, while its transition scores are still
# small, and none once it has learned them. On this task the CRF's gain is
# *structural validity* more than raw accuracy. Where did it learn the grammar? In
# its transition matrix:

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
im = axes[0].imshow(p_crf_model["crf.transitions"], cmap="RdBu_r", vmin=-3, vmax=3)
axes[0].set_xticks(range(K))
axes[0].set_xticklabels(TAG_NAMES)
axes[0].set_yticks(range(K))
axes[0].set_yticklabels(TAG_NAMES)
axes[0].set(xlabel="next tag j", ylabel="tag i", title="learned transitions A[i, j]")
for i in range(K):
    for j in range(K):
        axes[0].text(j, i, f"{p_crf_model['crf.transitions'][i, j]:.1f}", ha="center", va="center", fontsize=8,
                     color="0.3" if TRANSITION_PROBS[i, j] > 0 else "k", fontweight="normal" if TRANSITION_PROBS[i, j] > 0 else "bold")
plt.colorbar(im, ax=axes[0], fraction=0.046)

# the held-out sentence the model is least sure about: its marginals P(y_t = k) and the two decodings
crf_params = {k: p_crf_model[f"crf.{k}"] for k in crf.PARAM_NAMES}
marg_all, _ = crf.marginals(crf_params, crf_model.emissions(p_crf_model, test_tokens)[0])      # (T, B, K)
entropy = -np.sum(marg_all * np.log(np.maximum(marg_all, 1e-300)), axis=(0, 2))
b = int(np.argmax(entropy))
unary = marg_all[:, b:b + 1]
axes[1].imshow(unary[:, 0].T, cmap="Blues", vmin=0, vmax=1, aspect="auto")
axes[1].set_yticks(range(K))
axes[1].set_yticklabels(TAG_NAMES)
axes[1].set_xticks(range(SENT))
axes[1].set_xticklabels([("*" if w in (AMBIGUOUS_B, AMBIGUOUS_I) else "") + str(w) for w in test_tokens[:, b]])
decoded = crf_model.decode(p_crf_model, test_tokens[:, b:b + 1])[:, 0]
axes[1].plot(range(SENT), test_tags[:, b], "s", mfc="none", mec="C2", ms=14, mew=2, label="gold")
axes[1].plot(range(SENT), decoded, "r.", ms=12, label="Viterbi")
axes[1].set(xlabel="word id (* = ambiguous)", title="marginals P(y_t = k) of one sentence")
axes[1].legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
plt.show()

posterior = marg_all.argmax(axis=-1)
print(f"best tag per position from the marginals: accuracy {np.mean(posterior == test_tags):.1%}, "
      f"BIO violations {bio_violations(posterior)}; Viterbi: {np.mean(crf_model.decode(p_crf_model, test_tokens) == test_tags):.1%}, "
      f"{bio_violations(crf_model.decode(p_crf_model, test_tokens))}")

# %% [markdown]
# The bold entries of the matrix are the moves the grammar forbids; at the full
# size they have the most negative scores (`B-LOC → I-PER` and `B-PER → I-LOC` near
# $-2$, `O → I-*` near $-1$), and the allowed continuations `B-X → I-X` the most
# positive. The sentence on the right is the held-out one with the most uncertain
# marginals. Its uncertain positions are ambiguous words that no neighbour settles —
# a name made of the two ambiguous words, or an ambiguous opening word that ends the
# sentence — where the probability splits between the person and the place reading
# and any decoder must guess. The last line shows that taking
# the most probable tag at each position *from the CRF's own marginals* can still
# produce violations: it is the joint decoding, not the CRF's probabilities alone,
# that guarantees a valid sequence.
#
# ## 5.10 Swapping the backend
#
# The stack, dense or not, is written on top of the dispatch interface, so it runs
# wherever its cell runs; each row is checked against the NumPy reference. The CRF
# and the BiLSTM-CRF's read-out are NumPy code (their recurrent part follows the
# model's backend).

# %%
T_t, B_t, D_t, H_t = pick(full=(50, 32, 64, 128), small=(8, 4, 8, 8))
for options in ({}, {"residual": True}, {"dense": True}):
    display(backend_timings("stacked", D_t, H_t, T_t, B_t, cell="lstm", num_layers=3, bidirectional=True,
                            repeats=pick(full=3, small=1), **options))

# %% [markdown]
# ## Exercises
#
# ### Exercise 5.1 — the backward pass of a bidirectional layer (graded, above)
# ### Exercise 5.2 — the forward algorithm in log space (graded, above)
# ### Exercise 5.3 — Viterbi decoding (graded, above)
#
# ### Exercise 5.4 — padding and the backward direction
# Take a batch of two sentences of lengths 12 and 5, padded to 12 (`tagging_task`
# with `min_length=5`), and run the plain `bidirectional` composite over it. Does the
# short sentence get the same outputs as when it runs alone? Which direction is
# affected, and why? How does `rnnbook.bilstm_crf.reverse_within_lengths` fix it,
# and why is that map its own backward pass?
#
# ### Exercise 5.5 — expected counts
# On the worked example of Section 5.6, compute $\partial \log Z/\partial A[i, j]$ by finite
# differences and compare it with $\sum_t P(y_{t-1} = i, y_t = j)$ from `crf.marginals`.
# Which move has the largest expected count, and why is the count of `O → I` tiny?
#
# ### Exercise 5.6 — what density costs
# Count the parameters of a stack of $L$ bidirectional LSTM layers with $H$ units per
# direction on $D$ inputs, plain and dense, as a function of $L$. How does the
# dense stack's count grow with $L$, and how do densely connected networks keep it
# in check? Check your formula with `rb.init_params`.

# %% tags=["solution"]
from rnnbook.bilstm_crf import reverse_within_lengths

tok_p, _, mask_p = tagging_task(2, min_length=5, max_length=12, seed=3)
lengths_p = mask_p.sum(axis=0).astype(int)
short = int(np.argmin(lengths_p))
p_bi = rb.init_params("bidirectional", 6, 4, cell="lstm", seed=0)
E_words = np.random.default_rng(0).standard_normal((VOCAB_SIZE, 6))            # a fixed random embedding
y_batch, _, _ = rb.forward("bidirectional", p_bi, E_words[tok_p], cell="lstm")
n = lengths_p[short]
y_alone, _, _ = rb.forward("bidirectional", p_bi, E_words[tok_p[:n, short:short + 1]], cell="lstm")
print(f"lengths {lengths_p.tolist()}; short sentence, padded vs alone: forward half differs by "
      f"{np.abs(y_batch[:n, short, :4] - y_alone[:, 0, :4]).max():.1e}, backward half by "
      f"{np.abs(y_batch[:n, short, 4:] - y_alone[:, 0, 4:]).max():.1e}")
x_fixed = reverse_within_lengths(E_words[tok_p], lengths_p)
y_b_rev, _, _ = rb.forward("lstm", {k[4:]: v for k, v in p_bi.items() if k.startswith("bwd.")}, x_fixed)
y_b = reverse_within_lengths(y_b_rev, lengths_p)
print(f"reversed within lengths: backward half differs by {np.abs(y_b[:n, short] - y_alone[:, 0, 4:]).max():.1e}")

# %% tags=["solution"]
T4 = E_demo.shape[0]
_, pairwise = crf.marginals(demo, E_demo)
expected = pairwise[:, 0].sum(axis=0)                                           # Σ_t P(y_{t-1}=i, y_t=j)
numeric = np.zeros((3, 3))
for i in range(3):
    for j in range(3):
        up, down = {k: v.copy() for k, v in demo.items()}, {k: v.copy() for k, v in demo.items()}
        up["transitions"][i, j] += 1e-6
        down["transitions"][i, j] -= 1e-6
        numeric[i, j] = (crf.log_partition(up, E_demo)[0] - crf.log_partition(down, E_demo)[0]) / 2e-6
print("expected counts of each move i → j (rows: from O, B, I):\n", expected.round(4))
print("largest difference from finite differences:", np.abs(expected - numeric).max())


# %% tags=["solution"]
def count(L, D=16, H=8, dense=False):
    p = rb.init_params("stacked", D, H, cell="lstm", num_layers=L, bidirectional=True, dense=dense)
    return sum(v.size for v in p.values())


for L in (1, 2, 4, 8):
    print(f"L = {L}: plain {count(L):>6}, dense {count(L, dense=True):>6}")

# %% [markdown] tags=["solution"]
# **Answer 5.4.** The forward half is identical: the forward cell reads the sentence
# first and the padding only afterwards. The backward half differs: the backward
# cell starts at position $T-1$, so it reads the padding words *before* the sentence
# and enters the sentence with a state that is no longer zero.
# `reverse_within_lengths` reverses each column only over its first $L_b$ steps and
# leaves the padding after it, so the backward cell starts at each sentence's own last
# word; the outputs are put back with the same map. It is a permutation of the time
# axis that is its own inverse, so its backward pass (the transposed permutation) is
# the map itself.
#
# **Answer 5.5.** The finite differences agree with the summed pairwise marginals to
# about $10^{-9}$: $\partial\log Z/\partial A[i, j]$ *is* the expected number of moves $i \to j$. The
# largest counts follow the likely paths (`B → I` of "new york", `I → O`, `O → B`);
# `O → I` gets only about 0.01, because its transition score of $-4$ multiplies the
# weight of every path through it by $e^{-4} \approx 0.018$.
#
# **Answer 5.6.** A bidirectional LSTM layer reading $d$ features has
# $2 \cdot 4H(d + H + 1)$ parameters. Plain: layer 0 reads $D$, the others $2H$, so the
# count grows linearly in $L$ with slope $8H(3H + 1)$. Dense: layer $l$ reads
# $D + 2Hl$, so the count is $8H\big(L(D + H + 1) + 2H \cdot L(L-1)/2\big)$ — quadratic
# in $L$. Densely connected networks keep the per-layer width (the growth of the
# concatenation) small, so that many layers stay affordable; DC-Bi-LSTM uses small
# hidden sizes for its many layers for exactly this reason.
