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
# # Chapter 6 — Regularisation and optimisation
#
# The character models of Chapters 1 and 4 read a million characters of
# Shakespeare and never ran out of text to learn from. Give the same kind of
# model a *small* text and a large hidden state and it does something else: it
# learns the training text by heart. The training loss keeps falling while the
# loss on held-out text turns round and rises. This chapter is about the tools that
# stop that, and about the optimiser settings that recurrent language models
# were tuned with:
#
# 1. **dropout on the non-recurrent connections** (Zaremba, Sutskever & Vinyals,
#    2014, *Recurrent Neural Network Regularization*): noise between the layers,
#    never on the memory;
# 2. **variational dropout**, one mask per sequence tied over time (Gal &
#    Ghahramani, 2016, *A Theoretically Grounded Application of Dropout in
#    Recurrent Neural Networks*), and dropout of whole embedding rows —
#    **Exercise 6.1**;
# 3. **DropConnect on the recurrent weights** $W_{hh}$, the "weight-dropped LSTM" of
#    Merity, Keskar & Socher (2017, *Regularizing and Optimizing LSTM Language
#    Models*), with its gradient derived — **Exercise 6.2**;
# 4. the **L2 penalty**, and why it is not the same as weight decay once the
#    optimiser is Adam;
# 5. **gradual magnitude pruning** with the cubic schedule of Zhu & Gupta (2017,
#    *To prune, or not to prune*), and the comparison that paper made: a large
#    sparse model against a small dense one of the same size in memory —
#    **Exercises 6.3 and 6.4**;
# 6. **gradient clipping** by norm and by value, drawn in two dimensions;
# 7. **NT-ASGD**, averaged SGD started by a non-monotone trigger on the
#    validation curve (Merity et al.) — **Exercise 6.5**.
#
# Everything runs on the library's `rnnbook.regularize`: a language model with
# every dropout in place (`RegularizedLM`) and `train_char_lm`, which trains it on
# the bundled text with any combination of these tools switched on and records the
# validation loss as it goes. With `RNNBOOK_SMALL=1` the runs shrink to a few
# seconds; the prose describes the full-size runs (a few minutes on two cores).

# %%
import inspect
import warnings

import matplotlib.pyplot as plt
import numpy as np
from IPython.display import display

warnings.filterwarnings("ignore", message="IProgress not found")   # tqdm in a kernel without ipywidgets
import rnnbook as rb
from rnnbook.book import SMALL, ImplementMe, check, pick
from rnnbook.book.timing import backend_timings
from rnnbook.clipping import clip_by_global_norm, clip_by_value
from rnnbook.optim import SGD, Adam
from rnnbook.regularize import (NTASGD, Dropout, GradualPruner, RegularizedLM, dropconnect, pruning,
                                small_dense_hidden_size, train_char_lm)
from rnnbook.regularize.l2 import add_grads, l2_penalty

print(f"small size: {SMALL}; backends usable here: {rb.available_backends()}")

# %% [markdown]
# ## 6.1 Overfitting: a large model on a small text
#
# The model is the token language model of the earlier chapters — an embedding
# $E$ of width 32, one LSTM layer, a linear read-out — with $H = 128$ hidden units:
# about 92,000 parameters. The text is the first 20,000 characters of Shakespeare;
# the last tenth is held out for validation, leaving 18,000 characters for
# training. One pass over the training text takes about 35 steps of 16 streams of
# 32 characters, so 1000 steps are almost 30 passes. `train_char_lm` trains with
# Adam and stateful truncated BPTT (as in Chapter 1) and, every `eval_every`
# steps, measures the cross-entropy on the held-out text with the model in
# evaluation mode.

# %%
base = dict(hidden_size=pick(full=128, small=32), embed_dim=pick(full=32, small=16),
            batch_size=pick(full=16, small=8), seq_len=pick(full=32, small=16), max_chars=20_000,
            steps=pick(full=1000, small=40), eval_every=pick(full=100, small=10), lr=5e-3, clip_norm=5.0)
runs = {"none": train_char_lm(**base)}
plain = runs["none"]
V = len(plain.vocab)
n_params = sum(v.size for v in plain.params.values())
n_train = round(0.9 * base["max_chars"])                     # train_char_lm holds out the last tenth
print(f"{n_params:,} parameters, {n_train:,} training characters, {V} symbols (chance is log V = {np.log(V):.2f}); "
      f"{base['steps']} steps in {plain.seconds:.0f} s")


def plot_run(ax, run, label, color, train=True):
    """Validation loss (solid, at its checks) and the smoothed training loss (dashed) of one run."""
    ax.plot(run.val_steps, run.val_loss, "o-", color=color, ms=3, label=f"{label}: validation")
    if train:
        ax.plot(np.arange(1, len(run.history.loss) + 1), run.history.smoothed(), "--", color=color, lw=1,
                alpha=0.8, label=f"{label}: training")


fig, ax = plt.subplots(figsize=(7, 4))
plot_run(ax, plain, "no regularisation", "C0")
best = int(np.argmin(plain.val_loss))
ax.axvline(plain.val_steps[best], color="k", ls=":", lw=1)
ax.annotate(f"best validation loss\n{plain.val_loss[best]:.3f} at step {plain.val_steps[best]}",
            (plain.val_steps[best], plain.val_loss[best]), xytext=(10, 30), textcoords="offset points", fontsize=8)
ax.set_ylim(0.5, np.log(V) + 0.3)
ax.set(xlabel="step", ylabel="cross-entropy (nats/char)", title=f"A {n_params / 1e3:.0f}k-parameter LSTM on {n_train / 1e3:.0f}k characters")
ax.grid(alpha=0.3)
ax.legend()
plt.show()

# %% [markdown]
# At the full size the validation loss bottoms out at about 1.83 near step 400 and
# then climbs back above 2.1, while the training loss goes on down, to below 0.9
# nats per character. Everything the model learns after the
# turn is about *these* 18,000 characters, not about English. (At the small size
# the run is too short to overfit.) Stopping at the best check ("early stopping") is
# one cure; the rest of the chapter is about cures that let the model keep learning.

# %% [markdown]
# ## 6.2 Dropout where it does no harm: the non-recurrent connections
#
# Dropout multiplies an activation by a random mask. The library uses *inverted*
# dropout: with drop probability $p$ every entry of the mask is
#
# $$m = \frac{\xi}{1 - p}, \qquad \xi \sim \text{Bernoulli}(1 - p), \qquad \text{so } m \in \Big\{0, \tfrac{1}{1-p}\Big\}
#   \text{ and } \mathbb E[m] = 1.$$
#
# Because $\mathbb E[m] = 1$, a layer's output has the same expectation with and
# without dropout, and evaluation simply switches the masks off (no rescaling at
# test time). With the mask held fixed, $y = x \odot m$ is linear in $x$, so the
# backward pass is one line: $dx = dy \odot m$.
#
# Where should the masks go in a recurrent network? A fresh mask on $h_{t-1}$ at
# every step would multiply the memory by $T$ independent masks: a fact stored at
# step $t$ survives to step $t+k$ only if its units escape $k$ draws in a row,
# probability $(1-p)^k$. Zaremba et al. therefore drop only on the *non-recurrent*
# connections — into the first layer, between layers, and before the read-out —
# and leave $h_{t-1} \to h_t$ alone. Information travelling from step $t$ to step
# $t+k$ then meets dropout $L + 1$ times however large $k$ is. With the layer
# outputs $u^{(l)}_t$, the embedding $E$ and input token $i_t$:
#
# $$x^{(0)}_t = E[i_t] \odot m^{\text{in}}_t, \qquad
#   x^{(l+1)}_t = u^{(l)}_t \odot m^{(l)}_t, \qquad
#   o_t = \big(u^{(L-1)}_t \odot m^{\text{out}}_t\big) W^\top + b,$$
#
# with a **new mask at every step**: $m^{\text{in}}$ has shape $(T, B, D)$, one draw per
# step, sequence and unit (`Dropout(p, "standard")`).

# %% [markdown]
# ## 6.3 One mask per sequence: variational dropout
#
# Gal & Ghahramani read dropout as approximate Bayesian inference: each mask is one
# sampled network. That reading asks for the *same* sampled network for a whole
# sequence, so the mask is drawn once per sequence and **tied over time**:
# $m^{\text{in}}$ has shape $(1, B, D)$ and broadcasts over the $T$ steps
# (`Dropout(p, "variational")`; the "locked dropout" of AWD-LSTM). A unit is then
# either off for the whole sequence or on for the whole sequence.
#
# They also drop whole **word types**: a mask of shape $(V, 1)$ on the rows of the
# embedding matrix, $\tilde E = m^E \odot E$, so that every occurrence of a dropped
# symbol in the batch reads a zero vector (`Dropout(p, "embedding")`; one mask per
# batch, shared by every sequence in it, as in AWD-LSTM). The model cannot lean on
# one symbol's embedding; it has to predict from the context.
#
# The pictures below are the masks themselves (dropout applied to an array of
# ones), for one sequence of $T = 24$ steps and $D = 40$ units, $p = 0.5$.

# %%
T_m, D_m, V_m = 24, 40, 30
ones = np.ones((T_m, 1, D_m))
masks_shown = {
    "standard (Zaremba): a new mask every step": Dropout(0.5, "standard", seed=0).forward(ones)[0][:, 0],
    "variational: one mask, tied over time": Dropout(0.5, "variational", seed=0).forward(ones)[0][:, 0],
    "embedding: whole rows of E (p = 0.3)": Dropout(0.3, "embedding", seed=0).forward(np.ones((V_m, D_m)))[0],
}
fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
for ax, (title, m) in zip(axes, masks_shown.items()):
    ax.imshow(m, aspect="auto", cmap="Greys", vmin=0, vmax=2, interpolation="nearest")
    ax.set(title=title, xlabel="unit d")
    ax.title.set_fontsize(9)
axes[0].set_ylabel("time step t")
axes[1].set_ylabel("time step t")
axes[2].set_ylabel("symbol (row of E)")
plt.show()
values = np.unique(masks_shown["standard (Zaremba): a new mask every step"])
print(f"values in the masks: {values.tolist()} = {{0, 1/(1 - p)}} for p = 0.5")

# %% [markdown]
# Salt and pepper on the left; vertical stripes in the middle — a dropped unit
# stays dropped for the whole sequence; horizontal stripes on the right — a
# dropped symbol is gone wherever it occurs. The library's `RegularizedLM` puts
# every one of these masks in its place (plus DropConnect, Section 6.4); here is its
# forward pass, one line per equation of Section 6.2:

# %%
print(inspect.getsource(RegularizedLM.forward))

# %% [markdown]
# One departure from Gal & Ghahramani, said plainly: they also drop $h_{t-1}$
# *inside* the recurrence with a tied mask. That needs a change to every cell's
# step. The library follows AWD-LSTM instead: tied masks on the non-recurrent
# connections, and DropConnect on $W_{hh}$ for the recurrent one (Section 6.4 shows
# that a column mask on $W_{hh}$ *is* a tied mask on $h_{t-1}$).
#
# ### Exercise 6.1 — variational dropout, forward and backward
#
# Write `variational_dropout(x, dy, p, rng)` for a time-major `x` of shape
# $(T, B, D)$: draw **one** mask $m$ of shape $(1, B, D)$ from the generator `rng`,
# with entries $\xi/(1-p)$, and return `(y, dx)` $= (x \odot m,\; dy \odot m)$ — the
# forward pass and, for the upstream gradient `dy`, the backward pass with the
# same mask. The check reads the mask back out of your answer ($y / x$ and
# $dx / dy$) and tests each property on its own: tied over time, a different
# mask for every sequence and unit, kept entries equal to $1/(1-p)$, about a
# fraction $p$ dropped, the same mask in the backward pass, drawn from `rng`.

# %%
def variational_dropout(x, dy, p, rng):
    """Variational (tied) inverted dropout of x (T, B, D), forward and backward.

    One mask m (1, B, D), m = ξ / (1 − p) with ξ ~ Bernoulli(1 − p), drawn from rng and
    shared by every time step.  Returns (y, dx) = (x ⊙ m, dy ⊙ m), both (T, B, D).
    """
    # BEGIN SOLUTION 6.1
    keep = rng.random((1,) + x.shape[1:]) >= p          # ξ = 1 with probability 1 − p, one draw per (b, d)
    mask = keep / (1.0 - p)                             # inverted: E[m] = 1
    return x * mask, dy * mask                          # y = x ⊙ m;  dx = dy ⊙ m (m held fixed)
    # END SOLUTION


# %%
check("6.1", variational_dropout)

# %% [markdown]
# **Checking the whole model.** A gradient check of a model with dropout needs the
# masks held fixed: with a fresh draw at every evaluation the loss is not even a
# function of the parameters. `RegularizedLM.forward` takes the masks of an
# earlier call (`masks=`) and replays them exactly. Below, a two-layer LSTM model
# with *every* dropout switched on — embedding, input, between the layers,
# output, tied masks, and DropConnect on both $W_{hh}$ — every parameter random,
# biases included, and a random initial state, is checked against finite
# differences (Chapter 1 explains the columns).

# %%
rng = np.random.default_rng(0)
lm_check = RegularizedLM("lstm", hidden_size=4, vocab_size=7, embed_dim=3, num_layers=2, dropout_input=0.3,
                         dropout_hidden=0.3, dropout_output=0.3, dropout_embedding=0.3, weight_drop=0.4,
                         variational=True, seed=1)
p_check = {k: 0.6 * rng.standard_normal(v.shape) for k, v in lm_check.init_params(seed=0).items()}
tokens_check = rng.integers(0, 7, size=(5, 2))
state_check = tuple(0.5 * rng.standard_normal((2, 4)) for _ in range(4))      # (h, c) of both layers
fixed = lm_check.sample_masks(p_check, 5, 2)                                     # drawn once, then replayed


def shapes(v):
    """The shapes in a nest of masks (None where a dropout is off)."""
    if isinstance(v, dict):
        return {k: shapes(a) for k, a in v.items()}
    if isinstance(v, list):
        return [shapes(a) for a in v]
    return None if v is None else v.shape


print("masks held fixed:", shapes(fixed))


def lm_logits(inp):
    return lm_check.forward(inp, tokens_check, state_check, masks=fixed)[0]


def lm_grads(inp, dlogits):
    _, _, cache = lm_check.forward(inp, tokens_check, state_check, masks=fixed)
    return lm_check.backward(inp, cache, dlogits)


report = rb.gradcheck.check_function(lm_logits, p_check, lm_grads)
print(report)
report.assert_ok()

# %% [markdown]
# ## 6.4 DropConnect on the recurrent weights
#
# To regularise the recurrent connection itself without touching the cell,
# Merity et al. drop *weights* instead of activations (DropConnect, Wan et al.,
# 2013, *Regularization of Neural Networks using DropConnect*). Once per batch they
# draw a mask $M$ of the shape of $W_{hh}$ and run the unchanged cell with
#
# $$\tilde W_{hh} = M \odot W_{hh}, \qquad M_{ij} = \frac{\xi_{ij}}{1-p}, \quad \xi_{ij} \sim \text{Bernoulli}(1-p).$$
#
# The same $\tilde W_{hh}$ serves every time step and every sequence of the batch:
# a dropped connection $j \to i$ stays dropped for the whole batch, so the
# recurrence is perturbed consistently over time — and the cell, on any backend,
# however fused its kernel, never knows: it just receives different weights.
# As in AWD-LSTM's code the mask is inverted and evaluation uses $W_{hh}$ as it is
# (Wan et al.'s moment-matching inference is not used).
#
# **The gradient.** The loss depends on $W_{hh}$ only through $\tilde W_{hh}$, entry by
# entry. The chain rule gives
#
# $$\frac{\partial L}{\partial W_{hh}[i,j]} = \sum_{k,l} \frac{\partial L}{\partial \tilde W_{hh}[k,l]}\,
#   \frac{\partial \tilde W_{hh}[k,l]}{\partial W_{hh}[i,j]}
#   = \sum_{k,l} \frac{\partial L}{\partial \tilde W_{hh}[k,l]}\, M_{kl}\,\delta_{ik}\delta_{jl}
#   = M_{ij}\, \frac{\partial L}{\partial \tilde W_{hh}[i,j]},$$
#
# that is, $dW_{hh} = M \odot d\tilde W_{hh}$: run the cell's ordinary backward pass
# *with the masked weights* (they are the weights the forward pass used; the error
# travels back through $\tilde W_{hh}$, not $W_{hh}$) and multiply its `W_hh` gradient by
# the mask. A dropped weight gets no gradient in that batch. Every other gradient
# — `W_ih`, the biases, $x$, the initial state — is the cell's own, unchanged.
#
# **The link with a tied recurrent mask.** Zero *column* $j$ of $W_{hh}$ for a whole
# batch and unit $j$ of $h_{t-1}$ no longer reaches any gate at any step: that is
# Gal & Ghahramani's tied dropout of $h_{t-1}$ (with one mask for the batch).
# DropConnect drops single connections instead of whole columns.
#
# ### Exercise 6.2 — DropConnect's forward pass and weight gradient
#
# Write `dropconnect_forward_backward(architecture, params, x, mask, dy, **options)`
# for any architecture the dispatcher knows (the check uses `"rnn"` and `"lstm"`):
# run `rb.forward` with $\tilde W_{hh}$ = `mask * params["W_hh"]`, run `rb.backward`
# with the same masked parameters, and return `(y, grads)` with `grads` the
# dictionary `rb.backward` returns, its `"W_hh"` entry replaced by
# $M \odot d\tilde W_{hh}$. The check isolates the two steps by running your function
# with $M = 1$ (it must then be the plain cell), with $M = 0$ (the recurrence is
# cut and `dW_hh` must be zero) and with a random mask.

# %%
def dropconnect_forward_backward(architecture, params, x, mask, dy, **options):
    """DropConnect on W_hh: forward with W̃_hh = mask ⊙ W_hh, backward to the unmasked parameters.

    params: the cell's parameters (W_hh among them); x (T, B, D); mask of W_hh's shape; dy (T, B, H).
    Returns (y (T, B, H), grads) with grads as rb.backward returns them and grads["W_hh"] = mask ⊙ dW̃_hh.
    """
    # BEGIN SOLUTION 6.2
    masked = {**params, "W_hh": mask * params["W_hh"]}              # W̃_hh = M ⊙ W_hh
    y, _, cache = rb.forward(architecture, masked, x, **options)
    grads = rb.backward(architecture, masked, cache, dy)          # the cell's own backward, through W̃_hh
    grads["W_hh"] = mask * grads["W_hh"]                          # dW_hh = M ⊙ dW̃_hh
    return y, grads
    # END SOLUTION


# %%
check("6.2", dropconnect_forward_backward)

# %% [markdown]
# The library's `rnnbook.regularize.dropconnect` does the same for every matrix
# named `W_hh` (every layer of a stacked core too), and passes a
# finite-difference check with the mask held fixed. Then a check of the link with
# tied recurrent dropout: an Elman network whose $W_{hh}$ has a *column* mask
# ($M_{ij} = m_j$) computes exactly what the same network computes when each unit of
# $h_{t-1}$ is multiplied by $m_j$ before every step.

# %%
rng = np.random.default_rng(2)
p_dc = {k: 0.6 * rng.standard_normal(v.shape) for k, v in rb.init_params("lstm", 3, 4).items()}
x_dc = rng.standard_normal((5, 2, 3))
s0_dc = (0.5 * rng.standard_normal((2, 4)), 0.5 * rng.standard_normal((2, 4)))
M_dc = dropconnect.sample_masks(p_dc, 0.5, np.random.default_rng(3))            # {"W_hh": (16, 4)}


def dc_out(inp):
    params = {k[2:]: v for k, v in inp.items() if k.startswith("p.")}
    y, state, _ = dropconnect.forward("lstm", params, inp["x"], (inp["h0"], inp["c0"]), M_dc)
    return (y,) + tuple(state)


def dc_grads(inp, G):
    params = {k[2:]: v for k, v in inp.items() if k.startswith("p.")}
    _, _, cache = dropconnect.forward("lstm", params, inp["x"], (inp["h0"], inp["c0"]), M_dc)
    g = dropconnect.backward("lstm", params, cache, G[0], tuple(G[1:]))
    return {**{f"p.{k}": g[k] for k in params}, "x": g["x"], "h0": g["state0"][0], "c0": g["state0"][1]}


inputs_dc = {**{f"p.{k}": v for k, v in p_dc.items()}, "x": x_dc, "h0": s0_dc[0], "c0": s0_dc[1]}
report = rb.gradcheck.check_function(dc_out, inputs_dc, dc_grads)
report.assert_ok()
print(f"DropConnect on an LSTM's W_hh, mask fixed: worst relative error "
      f"{max(e.raw_error for e in report.entries):.1e} "
      f"over {len(report.entries)} arrays; {int((M_dc['W_hh'] == 0).sum())} of {M_dc['W_hh'].size} weights dropped")

from rnnbook.numpy_ref import rnn

p_rnn = rb.init_params("rnn", 3, 6, seed=4)
x_rnn = rng.standard_normal((8, 2, 3))
m_units = (rng.random(6) >= 0.5) / 0.5                         # one draw per unit of h_{t-1}
column_mask = np.broadcast_to(m_units, (6, 6)).copy()           # M[i, j] = m_j
y_columns, _, _ = dropconnect.forward("rnn", p_rnn, x_rnn, None, {"W_hh": column_mask})
h, ys = np.zeros((2, 6)), []
for t in range(8):
    (h,), _ = rnn.step_forward(p_rnn, x_rnn[t], (h * m_units,))  # the same mask on h_{t-1} at every step
    ys.append(h)
print("column mask on W_hh vs tied mask on h_{t-1}: largest difference", np.abs(y_columns - np.stack(ys)).max())

# %% [markdown]
# ## 6.5 Every regulariser against overfitting
#
# Back to the overfitting model of Section 6.1, now with each tool switched on in
# turn, everything else (data, initial weights, batches, Adam) the same:
#
# * **dropout (Zaremba)**: $p = 0.3$ on the embedded input and on the LSTM's output,
#   a new mask every step;
# * **variational + embedding**: the same with tied masks, plus $p = 0.1$ on the rows of $E$;
# * **DropConnect** with $p = 0.3$ on $W_{hh}$ and no activation dropout;
# * an **L2 penalty** $\frac{\lambda}{2}\sum \|W\|^2$ on the weight matrices, $\lambda = 10^{-4}$
#   (Section 6.6).
#
# The validation losses are on the left, the training losses on the right. A
# training loss under dropout is measured with the masks on: it is the loss of a
# noisier model, and it can sit above the validation loss of the same weights.

# %%
settings = {
    "dropout (Zaremba)": dict(dropout_input=0.3, dropout_output=0.3),
    "variational + embedding": dict(dropout_input=0.3, dropout_output=0.3, variational=True, dropout_embedding=0.1),
    "DropConnect on W_hh": dict(weight_drop=0.3),
    "L2 penalty": dict(l2=1e-4),
}
for label, extra in settings.items():
    runs[label] = train_char_lm(**base, **extra)

fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
for i, (label, run) in enumerate(runs.items()):
    axes[0].plot(run.val_steps, run.val_loss, "o-", ms=3, color=f"C{i}", label=label)
    axes[1].plot(np.arange(1, len(run.history.loss) + 1), run.history.smoothed(), color=f"C{i}", lw=1, label=label)
lowest = min(min(min(r.val_loss), min(r.history.smoothed())) for r in runs.values())
axes[0].set_ylim(max(0.0, lowest - 0.1), min(np.log(V), max(r.val_loss[1] for r in runs.values())) + 0.2)
axes[0].set(xlabel="step", ylabel="cross-entropy (nats/char)", title="validation (dropout off)")
axes[1].set(xlabel="step", title="training, smoothed (with the regulariser on)")
for a in axes:
    a.grid(alpha=0.3)
axes[0].legend(fontsize=8)
plt.show()
print(f"{'run':>24} {'best val':>9} {'at step':>8} {'val at end':>11} {'train at end':>13} {'seconds':>8}")
for label, run in runs.items():
    b = int(np.argmin(run.val_loss))
    print(f"{label:>24} {run.val_loss[b]:>9.3f} {run.val_steps[b]:>8} {run.final_val_loss:>11.3f} "
          f"{np.mean(run.history.loss[-50:]):>13.3f} {run.seconds:>8.1f}")

# %% [markdown]
# At the full size every dropout stops the turn: the validation loss of the
# Zaremba run is still at its best (about 1.77) after 1000 steps, below the best the
# unregularised model ever reached (about 1.83), and its training loss sits next to
# it instead of a full nat below. Tied masks with embedding dropout end in the
# same place (about 1.79); DropConnect alone regularises less (its training loss
# still runs ahead, to about 1.34) but also ends near 1.80. The L2 penalty at this
# strength only slows the overfitting down (its best, about 1.85, comes at step 400
# as without it, and it ends near 2.06). It pulls every weight towards zero alike,
# whether the weight encodes English or the quirks of these 18,000 characters; a
# ten times stronger pull, $\lambda = 10^{-3}$, removes the turn but under-fits (about
# 1.95 after 1000 steps, still falling).
#
# ## 6.6 An L2 penalty is not weight decay (with Adam)
#
# The L2 penalty adds $R(\theta) = \frac{\lambda}{2}\sum_W \|W\|_F^2$ to the loss, so its
# gradient $\lambda W$ joins the data gradient *before* the optimiser sees it.
# Weight decay instead shrinks the parameters directly next to the update,
# $\theta \leftarrow \theta - \eta\lambda\theta$. For plain SGD the two are the same step:
#
# $$\text{penalty: } \theta - \eta(g + \lambda\theta) \qquad = \qquad \text{decay: } (\theta - \eta\lambda\theta) - \eta g.$$
#
# With Adam they are not: the penalty's $\lambda\theta$ is divided by $\sqrt{\hat v}$ like
# every other gradient, so weights that receive large gradients are barely
# decayed. That is why Loshchilov & Hutter (*Decoupled Weight Decay
# Regularization*) moved the decay out of the gradient (AdamW; the library's
# `weight_decay=` option). Ten steps from one start with the same gradients:

# %%
rng = np.random.default_rng(5)
start = {"W": rng.standard_normal((4, 4))}
data_grads = [{"W": rng.standard_normal((4, 4))} for _ in range(10)]
lam, lr = 0.05, 0.1


def ten_steps(make_optimizer, use_penalty):
    p = {"W": start["W"].copy()}
    opt = make_optimizer(weight_decay=0.0 if use_penalty else lam)
    for g in data_grads:
        opt.step(p, add_grads(g, l2_penalty(p, lam)[1]) if use_penalty else g)
    return p["W"]


for name, make in (("SGD", lambda weight_decay: SGD(lr=lr, weight_decay=weight_decay)),
                   ("Adam", lambda weight_decay: Adam(lr=lr, weight_decay=weight_decay))):
    diff = np.abs(ten_steps(make, True) - ten_steps(make, False)).max()
    print(f"{name:>4}: L2 penalty vs weight decay, largest difference after 10 steps: {diff:.1e}")

# %% [markdown]
# ## 6.7 Gradual magnitude pruning
#
# Regularisation limits what a large model can do with its parameters. Pruning
# takes parameters away. Zhu & Gupta prune *during* training: each pruned matrix
# $W$ carries a 0/1 mask $P$ of its shape, the network uses $P \odot W$, and the
# target sparsity (the fraction of zeros) rises from $s_i$ to $s_f$ in $n$ pruning
# steps, $\Delta t$ training steps apart, starting at step $t_0$:
#
# $$s_t = s_f + (s_i - s_f)\Big(1 - \frac{t - t_0}{n\,\Delta t}\Big)^3
#   \qquad t \in \{t_0,\; t_0 + \Delta t,\; \dots,\; t_0 + n\Delta t\},$$
#
# held at $s_i$ before $t_0$ and at $s_f$ after $t_0 + n\Delta t$. The cube prunes fast
# while there are many redundant weights and slowly as the target nears, giving
# the network time to recover between cuts. At each pruning step, in each matrix
# separately, the $k = \operatorname{round}(s_t N)$ entries of smallest magnitude
# $|W|$ get $P = 0$. Pruned weights stay zero: their gradients are masked before
# every step ($dW \leftarrow P \odot dW$) and $W \leftarrow P \odot W$ after it, so a pruned
# weight, being zero, is again among the smallest at the next pruning step.

# %%
schedule_demo = dict(final_sparsity=0.9, begin_step=100, frequency=25, n_updates=12)
pruner_demo = GradualPruner(**schedule_demo)
t_axis = np.arange(500)
fig, ax = plt.subplots(figsize=(7, 3.5))
ax.plot(t_axis, [pruning.cubic_sparsity(t, **schedule_demo) for t in t_axis], label="target sparsity $s_t$")
prune_steps = [t for t in t_axis if pruner_demo.is_pruning_step(t)]
ax.plot(prune_steps, [pruner_demo.sparsity_at(t) for t in prune_steps], "o", ms=4, label="pruning steps")
ax.set(xlabel="training step t", ylabel="fraction of weights pruned",
       title="The cubic schedule: $s_f$ = 0.9, $t_0$ = 100, Δt = 25, n = 12")
ax.grid(alpha=0.3)
ax.legend()
plt.show()

# %% [markdown]
# ### Exercise 6.3 — the cubic schedule
#
# Write `sparsity_schedule(step, final_sparsity, begin_step, frequency, n_updates, initial_sparsity=0.0)`
# returning $s_t$: the cubic ramp between $t_0$ = `begin_step` and
# $t_0 + n\Delta t$ (with $\Delta t$ = `frequency`, $n$ = `n_updates`), $s_i$ before and
# $s_f$ after. The check evaluates it before $t_0$, at $t_0$, along the ramp, at its end
# and after, for two schedules (one with $s_i > 0$), and recognises the usual slips
# (another exponent, the cube on the wrong side, a ramp one update too long or
# too short, no clamping at the ends).

# %%
def sparsity_schedule(step, final_sparsity, begin_step, frequency, n_updates, initial_sparsity=0.0):
    """Target sparsity s_t of gradual pruning: s_f + (s_i − s_f)(1 − (t − t_0)/(nΔt))³ on [t_0, t_0 + nΔt]."""
    # BEGIN SOLUTION 6.3
    span = n_updates * frequency                                   # n Δt: the length of the ramp
    if step <= begin_step:
        return float(initial_sparsity)
    if step >= begin_step + span:
        return float(final_sparsity)
    frac = (step - begin_step) / span                              # (t − t_0)/(nΔt) in (0, 1)
    return final_sparsity + (initial_sparsity - final_sparsity) * (1.0 - frac) ** 3
    # END SOLUTION


# %%
check("6.3", sparsity_schedule)

# %% [markdown]
# ### Exercise 6.4 — the magnitude mask
#
# Write `magnitude_prune_mask(W, sparsity)`: a 0/1 array of `W`'s shape with zeros
# at the $k = \operatorname{round}(s N)$ entries of smallest magnitude $|W|$ ($N$ =
# `W.size`; break ties by position, as a stable sort does) and ones elsewhere.
# Do not change `W`. The check uses a non-square `W`, several sparsities, and a
# matrix that was pruned before (its zeros must stay pruned).

# %%
def magnitude_prune_mask(W, sparsity):
    """0 at the round(sparsity · W.size) entries of smallest |W|, 1 elsewhere; same shape as W."""
    # BEGIN SOLUTION 6.4
    k = int(np.floor(sparsity * W.size + 0.5))                     # round half up
    order = np.argsort(np.abs(W).ravel(), kind="stable")           # smallest magnitude first
    mask = np.ones(W.size)
    mask[order[:k]] = 0.0
    return mask.reshape(W.shape)
    # END SOLUTION


# %%
check("6.4", magnitude_prune_mask)

# %% [markdown]
# **Large-sparse or small-dense?** Zhu & Gupta's question: given a budget of
# non-zero parameters, is it better to train a large model and prune it to the
# budget, or to train a small dense model that fits the budget from the start?
# `train_char_lm(prune=...)` trains the $H = 128$ model with a `GradualPruner` on
# every weight matrix (embedding, `W_ih`, `W_hh`, read-out; biases are not pruned);
# `small_dense_hidden_size` finds the largest dense hidden size $H'$ whose
# parameter count does not exceed the pruned model's non-zeros,
#
# $$N(H') = V E + 4H'(E + H') + 4H' + V H' + V \;\le\; \text{nnz},$$
#
# and that dense model is trained with the same data and steps. The text is longer
# here (200,000 characters), so that this comparison is about capacity rather
# than overfitting.

# %%
pbase = dict(embed_dim=pick(full=32, small=16), batch_size=pick(full=16, small=8), seq_len=pick(full=32, small=16),
             max_chars=pick(full=200_000, small=20_000), steps=pick(full=600, small=40),
             eval_every=pick(full=100, small=10), lr=5e-3, clip_norm=5.0)
H_big = pick(full=128, small=32)
schedule = dict(begin_step=pick(full=100, small=5), frequency=pick(full=25, small=2), n_updates=pick(full=12, small=10))
dense_big = train_char_lm(hidden_size=H_big, **pbase)
pairs = []
for s_f in pick(full=(0.5, 0.75, 0.9), small=(0.75,)):
    sparse = train_char_lm(hidden_size=H_big, prune=dict(final_sparsity=s_f, **schedule), **pbase)
    H_small = small_dense_hidden_size(sparse.model.sequence_model(), sparse.params)
    small = train_char_lm(hidden_size=H_small, **pbase)
    pairs.append((s_f, sparse, H_small, small))

print(f"dense H={H_big}: {dense_big.nonzeros:,} parameters, validation {dense_big.final_val_loss:.3f} "
      f"({dense_big.seconds:.0f} s)")
print(f"{'s_f':>5} {'sparse: nnz':>12} {'val':>7} {'achieved (W_hh)':>16} | {'dense H':>8} {'params':>8} {'val':>7}")
for s_f, sparse, H_small, small in pairs:
    print(f"{s_f:>5} {sparse.nonzeros:>12,} {sparse.final_val_loss:>7.3f} {sparse.sparsity['core.W_hh']:>16.3f} | "
          f"{H_small:>8} {small.nonzeros:>8,} {small.final_val_loss:>7.3f}")

fig, axes = plt.subplots(1, 2, figsize=(12, 4))
ax = axes[0]
ax.plot([r.nonzeros for _, r, _, _ in pairs], [r.final_val_loss for _, r, _, _ in pairs], "o-",
        label=f"large-sparse (H = {H_big}, pruned)")
ax.plot([r.nonzeros for _, _, _, r in pairs], [r.final_val_loss for _, _, _, r in pairs], "s-",
        label="small-dense (H' from the budget)")
ax.plot([dense_big.nonzeros], [dense_big.final_val_loss], "k*", ms=10, label=f"dense H = {H_big}")
for s_f, sparse, H_small, small in pairs:
    ax.annotate(f"{s_f:.0%} pruned", (sparse.nonzeros, sparse.final_val_loss), xytext=(6, 4),
                textcoords="offset points", fontsize=8, color="C0")
    ax.annotate(f"H' = {H_small}", (small.nonzeros, small.final_val_loss), xytext=(-48, -4),
                textcoords="offset points", fontsize=8, color="C1")
ax.set_xscale("log")
ax.set(xlabel="non-zero parameters (memory)", ylabel="validation loss at the end (nats/char)",
       title="Equal memory: large-sparse vs small-dense")
ax.grid(alpha=0.3)
ax.legend(fontsize=8)
ax = axes[1]
s_f, sparse, H_small, small = pairs[len(pairs) // 2]
plot_run(ax, sparse, f"H = {H_big}, pruned to {s_f:.0%}", "C0", train=False)
plot_run(ax, small, f"dense H' = {H_small}", "C1", train=False)
end = schedule["begin_step"] + schedule["n_updates"] * schedule["frequency"]
ax.axvspan(schedule["begin_step"], end, color="grey", alpha=0.15, label="pruning in progress")
ax.set(xlabel="step", ylabel="validation cross-entropy", title=f"the {s_f:.0%} pair over training")
ax.grid(alpha=0.3)
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# At the full size the unpruned $H = 128$ model reaches about 1.83. At 50 % and 75 %
# sparsity the pattern of the paper appears, with a small margin at this size and
# length: the pruned model keeps about 46,500 non-zeros and reaches about 1.88
# against 1.90 for the dense $H' = 83$; at 75 % it keeps about 23,500 and reaches
# about 1.97 against 2.02 for the dense $H' = 52$ (about 23,000 parameters). At 90 %
# the order flips (about 2.22 pruned against 2.19 for $H' = 25$). The pruner takes
# 90 % of *every* weight matrix, the embedding ($58 \times 32$) and the read-out
# ($58 \times 128$) included: the matrices that every symbol passes through lose nine
# weights in ten, while the small dense model keeps them whole. (Training twice as
# long does not change the order; pruning only the recurrent core does —
# Exercise 6.8.)
#
# The achieved sparsity of each matrix is the target exactly,
# $\operatorname{round}(s N)/N$. Mind what is saved: NumPy multiplies the zeros too,
# so the sparse model costs the full dense compute here. The saving is memory,
# and compute only with sparse kernels.
#
# ## 6.8 Clipping: by norm or by value
#
# Chapter 1 introduced clipping by global norm against exploding gradients
# (Pascanu et al., 2013), and Exercise 1.4 asked about clipping by value. In two
# dimensions the difference is a picture. Clipping by norm,
# $g \leftarrow g \min(1, c/\|g\|)$, pulls a long gradient back onto the circle of radius
# $c$ *along its own direction*. Clipping by value, $g_k \leftarrow \operatorname{clip}(g_k, -c, c)$,
# pulls it into the square $[-c, c]^2$ coordinate by coordinate, and every gradient
# whose components both exceed $c$ lands on the same corner: its direction is lost.

# %%
c = 1.0
angles = np.deg2rad(np.arange(5, 90, 10))
fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
ax = axes[0]
ax.add_patch(plt.Circle((0, 0), c, fill=False, color="C0", ls="--"))
ax.add_patch(plt.Rectangle((-c, -c), 2 * c, 2 * c, fill=False, color="C1", ls="--"))
for a in angles:
    g = {"g": 2.5 * c * np.array([np.cos(a), np.sin(a)])}
    by_norm, _ = clip_by_global_norm(g, c)
    by_value = clip_by_value(g, c)
    ax.annotate("", g["g"], (0, 0), arrowprops=dict(arrowstyle="->", color="grey", lw=0.8))
    ax.annotate("", by_norm["g"], (0, 0), arrowprops=dict(arrowstyle="->", color="C0", lw=1.5))
    ax.annotate("", by_value["g"], (0, 0), arrowprops=dict(arrowstyle="->", color="C1", lw=1.0, ls="--"))
    ax.plot(*by_value["g"], "o", color="C1", ms=5)
corner = sum(bool(np.all(np.abs(2.5 * c * np.array([np.cos(a), np.sin(a)])) >= c)) for a in angles)
ax.annotate(f"{corner} of the {len(angles)} gradients\nland on this corner", (c, c), xytext=(1.25, 1.05), fontsize=8,
            color="C1")
ax.plot([], [], color="grey", label="gradient g, ‖g‖ = 2.5c")
ax.plot([], [], color="C0", label="clipped by norm: onto the circle, same direction")
ax.plot([], [], "o--", color="C1", label="clipped by value: into the square")
ax.set_aspect("equal")
ax.set(xlim=(-0.1, 2.6), ylim=(-0.1, 2.6), title="clipping at c = 1")
ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1))
ax = axes[1]
theta = np.linspace(0, np.pi / 2, 181)
for length in (1.2, 2.0, 5.0):
    turned = []
    for a in theta:
        g = length * c * np.array([np.cos(a), np.sin(a)])
        v = clip_by_value({"g": g}, c)["g"]
        turned.append(np.degrees(np.arccos(np.clip(v @ g / (np.linalg.norm(v) * np.linalg.norm(g)), -1, 1))))
    ax.plot(np.degrees(theta), turned, label=f"by value, ‖g‖ = {length}c")
ax.axhline(0, color="k", lw=1.5, ls="--", label="by norm (any ‖g‖)")
ax.set(xlabel="direction of g (degrees)", ylabel="angle between g and clipped g (degrees)",
       title="how far clipping turns the step")
ax.grid(alpha=0.3)
ax.legend(fontsize=8)
plt.show()
grad_norms = np.array(plain.history.grad_norm)
print(f"the unregularised Adam run of Section 6.1: largest global gradient norm {grad_norms.max():.2f}, "
      f"clipped (at {base['clip_norm']}) on {np.mean(grad_norms > base['clip_norm']):.0%} of the steps")

# %% [markdown]
# A gradient that is long because one coordinate exploded is, after clipping by
# value, dominated by the *other* coordinates, which were never the problem.
# Clipping by norm keeps the direction the gradient computed and only bounds the
# step. That is why the language models here (and AWD-LSTM) clip by norm. In the
# Adam runs above it is only a safety net: the global gradient norm of the
# unregularised run never came near the threshold of 5.
#
# ## 6.9 NT-ASGD: averaging, started when validation stalls
#
# Constant-step SGD does not converge to a minimum; it ends up bouncing around
# one, at a distance set by the step size and the gradient noise. Averaged SGD
# (Polyak & Juditsky, 1992) runs the same SGD and reports the *mean* of the
# iterates from some step $K$ on, which smooths the bouncing away:
#
# $$\theta_{k+1} = \theta_k - \eta\, g_k, \qquad \bar\theta = \frac{1}{k - K + 1}\sum_{i=K}^{k} \theta_i.$$
#
# Start averaging too early and the mean drags in iterates from far away; too
# late and it wastes steps. Merity et al.'s *non-monotonically triggered* ASGD
# decides from the validation curve. Every $L$ steps the validation loss $v$ is
# computed; with `logs` the values of the $t$ earlier checks, averaging starts at
# the first check with
#
# $$t > n \quad\text{and}\quad v > \min_{l \in \{0, \dots, t-n-1\}} \text{logs}[l],$$
#
# i.e. when $v$ is worse than the best value recorded *before the last $n$ checks*
# ($n = 5$ in the paper). The last $n$ checks are left out of the comparison, so a
# curve may wander for a while without triggering it; averaging begins once the
# current value is worse than the best reached more than $n$ checks ago — no net
# progress over the last $n + 1$ checks. It is not "worse than the best so far"
# (that would fire at the first blip of a noisy curve) and not "worse than the
# best of the last $n$".
#
# Take the curve 5.0, 4.0, 3.0, 3.5, 3.2, 3.1, 3.05, 2.9 with $n = 2$. At check
# 3 ($v = 3.5$) the window is $\{0\}$, best 5.0: no trigger, although 3.5 is worse than
# the best so far. At check 4 ($v = 3.2$) the window is $\{0, 1\}$, best 4.0: no
# trigger. At check 5 ($v = 3.1$) the window is $\{0, 1, 2\}$, best 3.0: averaging starts.
#
# ### Exercise 6.5 — the trigger
#
# Write `nt_asgd_trigger(logs, value, nonmono)`: `logs` holds the earlier checks'
# values (not `value`), $t$ = `len(logs)`, $n$ = `nonmono`; return `True` exactly when
# the condition above holds. Do not append to `logs` (the caller does that).

# %%
def nt_asgd_trigger(logs, value, nonmono):
    """NT-ASGD's condition for a new check: t > n and value > min(logs[:t − n]), with t = len(logs)."""
    # BEGIN SOLUTION 6.5
    t = len(logs)
    return t > nonmono and value > min(logs[:t - nonmono])
    # END SOLUTION


# %%
check("6.5", nt_asgd_trigger)

# %% [markdown]
# The library's `NTASGD` is plain SGD with this trigger in its `check` method and
# a running mean $\bar\theta \leftarrow \bar\theta + (\theta - \bar\theta)/m$ after it.
# First a toy where the answer is known: $L(\theta) = \frac12\|\theta - \theta^*\|^2$ with
# noisy gradients $g = \theta - \theta^* + \varepsilon$, a validation check every 10
# steps that measures the loss of the (averaged, once it has started) parameters,
# $n = 5$.

# %%
rng = np.random.default_rng(0)
target = {"w": rng.standard_normal(50)}
theta = {"w": np.zeros(50)}
opt = NTASGD(lr=0.2, nonmono=5)
last, mean = [], []
for k in range(pick(full=2000, small=400)):
    opt.step(theta, {"w": theta["w"] - target["w"] + rng.standard_normal(50)})
    if (k + 1) % 10 == 0:
        evaluated = opt.averaged_params(theta)
        opt.check(0.5 * float(np.sum((evaluated["w"] - target["w"]) ** 2)), theta)
    last.append(np.linalg.norm(theta["w"] - target["w"]))
    mean.append(np.linalg.norm(opt.averaged_params(theta)["w"] - target["w"]))

fig, ax = plt.subplots(figsize=(7, 3.5))
ax.semilogy(np.arange(1, len(last) + 1), last, lw=0.7, label="last iterate θ_k (constant-step SGD)")
ax.semilogy(np.arange(1, len(mean) + 1), mean, lw=1.5, label="what NT-ASGD evaluates (the mean after the trigger)")
if opt.trigger_step is not None:
    ax.axvline(opt.trigger_step, color="k", ls=":", label=f"trigger at step {opt.trigger_step}")
ax.set(xlabel="step", ylabel="‖θ − θ*‖", title="Noisy quadratic: the average settles, the iterate bounces")
ax.grid(alpha=0.3)
ax.legend(fontsize=8)
plt.show()
print(f"at the end: last iterate {last[-1]:.3f} from θ*, average {mean[-1]:.3f}")

# %% [markdown]
# Before the trigger the two curves are one: NT-ASGD evaluates the iterate itself.
# Once the validation loss has stopped falling, averaging starts, and the mean
# keeps approaching $\theta^*$ while the iterate goes on bouncing at the distance
# set by the step size and the noise.
#
# Then the language model: the $H = 128$ LSTM on the small text, trained with
# constant-step SGD (learning rate 2, clipping at 5, a check every 20 steps), once
# with NT-ASGD ($n = 5$) and once without.

# %%
ntbase = dict(hidden_size=pick(full=128, small=32), embed_dim=pick(full=32, small=16),
              batch_size=pick(full=16, small=8), seq_len=pick(full=32, small=16), max_chars=20_000,
              steps=pick(full=1000, small=60), eval_every=pick(full=20, small=5), lr=2.0, clip_norm=5.0,
              nonmono=pick(full=5, small=1))
nt_runs = {"SGD": train_char_lm(optimizer="sgd", **ntbase), "NT-ASGD": train_char_lm(optimizer="ntasgd", **ntbase)}
nt = nt_runs["NT-ASGD"]
n_nt = ntbase["nonmono"]
fig, axes = plt.subplots(1, 2, figsize=(12, 4))
axes[1].set_title("(no trigger in this run)")
for ax in axes:
    for i, (label, run) in enumerate(nt_runs.items()):
        plot_run(ax, run, label, f"C{i}", train=False)
    if nt.trigger_step is not None:
        ax.axvline(nt.trigger_step, color="k", ls=":", lw=1, label=f"trigger at step {nt.trigger_step}")
    ax.set(xlabel="step", ylabel="validation cross-entropy (nats/char)")
    ax.grid(alpha=0.3)
axes[0].set(title="SGD with and without NT-ASGD", ylim=(None, np.log(V) + 0.3))
axes[0].legend(fontsize=8)
if nt.trigger_step is not None:
    # the checks NTASGD.check saw are val_loss[1:] (val_loss[0] is before training); t is the triggering one
    logs, steps_at = nt.val_loss[1:], nt.val_steps[1:]
    t = steps_at.index(nt.trigger_step)
    old = int(np.argmin(logs[:t - n_nt]))
    ax = axes[1]
    ax.axvspan(steps_at[t - n_nt] - ntbase["eval_every"] / 2, steps_at[t - 1] + ntbase["eval_every"] / 2,
               color="C2", alpha=0.15, label=f"the last n = {n_nt} checks (exempt)")
    ax.hlines(logs[old], steps_at[old], steps_at[t], color="C3", lw=1.5,
              label=f"old best, min(logs[:t − n]) = {logs[old]:.3f}")
    ax.plot([steps_at[t]], [logs[t]], "o", color="C3", ms=8, mfc="none")
    lo = max(0, t - 3 * n_nt)
    ax.set_xlim(steps_at[lo] - ntbase["eval_every"], nt.val_steps[-1] + ntbase["eval_every"])
    shown = logs[lo:] + nt_runs["SGD"].val_loss[1 + lo:]
    ax.set_ylim(min(shown) - 0.02, max(shown) + 0.4 * (max(shown) - min(shown)))
    ax.set(title=f"the trigger: check {t} ({logs[t]:.3f}) is worse than the old best")
    ax.legend(fontsize=7, ncol=2, loc="upper center")
plt.show()
for label, run in nt_runs.items():
    print(f"{label:>8}: validation at the end {run.final_val_loss:.3f}, best {min(run.val_loss):.3f}; "
          f"trigger step {run.trigger_step}")

# %% [markdown]
# At the full size plain SGD reaches its best validation loss, about 1.875, near
# step 680, and then drifts up as the model begins to overfit. NT-ASGD runs the
# very same iterates; its check at step 740 is worse than the best value from
# before the last five checks, and averaging starts there. The loss it reports
# drops at once, to about 1.83 — below anything the SGD iterate ever reached — and
# creeps up only slowly afterwards, since each later (more overfitted) iterate
# enters the mean with weight $1/m$. At step 1000 the two stand at about 1.84 and
# 1.95. Averaging does here what it did on the quadratic: it removes the part of
# the loss that is due to the bouncing of a constant-step SGD. (At the small size
# nothing overfits and the trigger does not fire.)
#
# ## 6.10 Swapping the backend
#
# Nothing in this chapter touches a cell's internals: dropout multiplies the
# arrays between the cells, DropConnect hands the cell masked weights, and
# pruning edits the parameters between steps. So every tool runs on every backend
# that has the cell, through `rnnbook.dispatch`
# (`train_char_lm(backend=...)`, `RegularizedLM(backend=...)`). The table times the
# LSTM used throughout on each backend usable here and checks it against NumPy;
# below it, a few training steps of the fully regularised model on each backend.

# %%
T_t, B_t, D_t, H_t = pick(full=(64, 16, 32, 128), small=(10, 4, 8, 16))
display(backend_timings("lstm", D_t, H_t, T_t, B_t, repeats=pick(full=5, small=2)))

every_tool = dict(dropout_input=0.3, dropout_output=0.3, variational=True, dropout_embedding=0.1, weight_drop=0.3,
                  hidden_size=H_t, embed_dim=32, batch_size=B_t, seq_len=T_t, max_chars=20_000,
                  steps=pick(full=20, small=3), eval_every=pick(full=20, small=3), dtype="float32")
print(f"{'backend':>8} {'ms per step':>12} {'validation':>11}")
for b in rb.available_backends():
    try:
        r = train_char_lm(backend=b, **every_tool)
    except (rb.dispatch.NotImplementedForBackendError, rb.dispatch.BackendUnavailableError) as exc:
        print(f"{b:>8}  {exc}")
        continue
    print(f"{b:>8} {1e3 * r.seconds / every_tool['steps']:>12.1f} {r.final_val_loss:>11.4f}")

# %% [markdown]
# ## Exercises
#
# ### Exercise 6.1 — variational dropout, forward and backward (graded, above)
# ### Exercise 6.2 — DropConnect's forward pass and weight gradient (graded, above)
# ### Exercise 6.3 — the cubic sparsity schedule (graded, above)
# ### Exercise 6.4 — the magnitude mask (graded, above)
# ### Exercise 6.5 — NT-ASGD's trigger (graded, above)
#
# ### Exercise 6.6 — everything at once
# Switch on every regulariser of Section 6.5 together (Zaremba's dropout with tied
# masks, embedding dropout and DropConnect) on the same model and the same 1000
# steps. Is the result better than the best single regulariser? Look at the
# training loss as well as the validation loss, and explain what you see.
#
# ### Exercise 6.7 — why not a fresh mask on $h_{t-1}$?
# A unit has to carry a fact for $k$ steps, and dropout with $p = 0.5$ acts on
# $h_{t-1}$ before every step. With a new mask at every step, what fraction of the
# units is kept at all $k$ steps, for $k = 1, 5, 20$? With a tied mask? Confirm by
# sampling masks with `Dropout(0.5, "standard")` and `Dropout(0.5, "variational")`.
#
# ### Exercise 6.8 — what to prune
# At 90 % sparsity the pruned model of Section 6.7 lost to its small dense partner.
# Prune only the recurrent core instead — `prune=dict(..., names=["core.W_ih", "core.W_hh"])`
# — at the same 90 %, find its equal-memory dense partner with `small_dense_hidden_size`
# and train both as in Section 6.7. Who wins now, and why?

# %% tags=["solution"]
together = train_char_lm(**base, dropout_input=0.3, dropout_output=0.3, variational=True, dropout_embedding=0.1,
                         weight_drop=0.3)
best_single = min((min(r.val_loss), label) for label, r in runs.items() if label != "none")
print(f"everything together: validation at the end {together.final_val_loss:.3f} (best {min(together.val_loss):.3f}), "
      f"training loss at the end {np.mean(together.history.loss[-50:]):.3f}; "
      f"best single regulariser: {best_single[1]} at {best_single[0]:.3f}")

# %% tags=["solution"]
core_only = train_char_lm(hidden_size=H_big, prune=dict(final_sparsity=0.9, names=["core.W_ih", "core.W_hh"],
                                                        **schedule), **pbase)
H_core = small_dense_hidden_size(core_only.model.sequence_model(), core_only.params)
core_partner = train_char_lm(hidden_size=H_core, **pbase)
print(f"W_ih and W_hh pruned to {core_only.sparsity['total']:.0%}: {core_only.nonzeros:,} non-zeros, "
      f"validation {core_only.final_val_loss:.3f}; dense H' = {H_core}: {core_partner.nonzeros:,} parameters, "
      f"validation {core_partner.final_val_loss:.3f}")

# %% tags=["solution"]
for kind in ("standard", "variational"):
    m = Dropout(0.5, kind, seed=0).forward(np.ones((20, 1, 10_000)))[0][:, 0] > 0     # kept?  (T, units)
    print(f"{kind:>11}: kept at all k steps, k = 1, 5, 20:",
          [round(float(np.mean(np.all(m[:k], axis=0))), 4) for k in (1, 5, 20)])

# %% [markdown] tags=["solution"]
# **Answer 6.6.** At the full size all of them together end at about 1.82 — worse
# than dropout alone (about 1.77) — with the training loss *above* the validation
# loss (about 1.97) and both still falling at step 1000. That is under-fitting: so
# much noise is injected that 1000 steps are not enough to fit even the training
# text. Regularisers add up; their strengths must be tuned together (AWD-LSTM
# trains for hundreds of epochs with them all on), or the model made larger.
#
# **Answer 6.7.** With a fresh mask at every step a unit is kept at all $k$ steps
# with probability $(1-p)^k$: 0.5, 0.03 and $10^{-6}$ for $k = 1, 5, 20$ — a long
# dependency is cut almost surely. With a tied mask the kept half is kept at every
# step, so half the units can carry information over any lag: the noise no longer
# grows with the distance it has to bridge.
#
# **Answer 6.8.** At the full size, pruning only `W_ih` and `W_hh` to 90 % leaves
# about 18,700 non-zeros (the embedding, the read-out and the biases stay dense) and
# reaches about 1.98, against about 2.03 for its partner, the dense $H' = 44$ (about
# 18,300 parameters): large-sparse wins again, by more than at 50 % or 75 %. The
# recurrent matrices hold most of the parameters and most of the redundancy; the
# embedding and read-out are small, and every symbol depends on its own rows
# there.
