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
# # Chapter 4 — The gated recurrent unit
#
# Chapter 1 ended on a measurement: in an Elman network the error sent back from
# the loss shrinks by a roughly constant factor per step, so nothing learned by
# gradient descent connects an output to an input a few dozen steps earlier. The
# LSTM of Chapter 3 cures this with a separate cell state and three gates. The
# *gated recurrent unit* (Cho et al., 2014, *Learning Phrase Representations using
# RNN Encoder–Decoder for Statistical Machine Translation*) does it with one state
# and two gates:
#
# * the **update gate** $z$ decides, unit by unit, whether to keep the old state or
#   replace it by a candidate: $h_t = (1 - z_t) \odot n_t + z_t \odot h_{t-1}$. With
#   $z \approx 1$ a unit copies itself, and so does its error on the way back;
# * the **reset gate** $r$ decides how much of the old state goes into that candidate.
#
# Chung et al. (2014, *Empirical Evaluation of Gated Recurrent Neural Networks on
# Sequence Modeling*) found the GRU on a par with the LSTM and both far ahead of
# tanh units. Two versions of the cell are in use, differing only in *where* the
# reset gate acts; this chapter derives the backward pass of both (**Exercises 4.1
# and 4.2**), checks them, trains both, and then reads what the update gates of a
# trained character model do.

# %%
import inspect
import warnings

import matplotlib.pyplot as plt
import numpy as np
from IPython.display import display
from matplotlib.patches import Rectangle

import rnnbook as rb
from rnnbook.book import SMALL, ImplementMe, check, pick  # noqa: F401 (ImplementMe: the student edition)
from rnnbook.book.timing import backend_timings
from rnnbook.numpy_ref import gru

warnings.filterwarnings("ignore", message="IProgress not found")   # tqdm in a kernel without ipywidgets
print(f"small size: {SMALL}; backends usable here: {rb.available_backends()}")

# %% [markdown]
# ## 4.1 The cell, in both forms
#
# Parameters follow PyTorch's `nn.GRU`: `W_ih` $(3H, D)$, `W_hh` $(3H, H)$, `b_ih` and
# `b_hh` $(3H,)$, each stacked in the gate order **r, z, n** — rows $0..H-1$ belong to the
# reset gate, $H..2H-1$ to the update gate, $2H..3H-1$ to the candidate. The input part
# is shared by both forms:
#
# $$gi = x_t W_{ih}^\top + b_{ih} = [\,gi_r \mid gi_z \mid gi_n\,] \qquad (B, 3H).$$
#
# **Reset after the product** (`reset_after=True`, the default here, in PyTorch and cuDNN):
#
# $$gh = h_{t-1} W_{hh}^\top + b_{hh} = [\,gh_r \mid gh_z \mid gh_n\,], \qquad
#   r_t = \sigma(gi_r + gh_r), \qquad z_t = \sigma(gi_z + gh_z),$$
# $$n_t = \tanh\big(gi_n + r_t \odot gh_n\big), \qquad h_t = (1 - z_t) \odot n_t + z_t \odot h_{t-1}.$$
#
# **Reset before the product** (`reset_after=False`, the original of Cho et al.),
# with $W_{hr}, W_{hz}, W_{hn}$ the three row blocks of `W_hh` and $b_{hn}$ the last block of `b_hh`:
#
# $$n_t = \tanh\big(gi_n + (r_t \odot h_{t-1})\, W_{hn}^\top + b_{hn}\big),$$
#
# with $r_t$, $z_t$ and $h_t$ as before. The difference looks cosmetic but is not.
# In the original form the reset gate multiplies the *state* before it is mixed
# by $W_{hn}$, so the product for $n$ cannot start until $r$ is known: each step needs
# two dependent matrix products. Resetting after the product lets all three
# hidden products $h_{t-1} W_{hh}^\top$ run as one matrix multiplication — the reason
# cuDNN (and therefore PyTorch) adopted it. It also puts $b_{hn}$ under the reset
# gate.

# %%
print(inspect.getsource(gru.step_forward))

# %% [markdown]
# The update gate makes the cell a learned *leaky integrator*. Differentiating
# $h_t = (1 - z_t) \odot n_t + z_t \odot h_{t-1}$ with respect to $h_{t-1}$ gives
#
# $$\frac{\partial h_t}{\partial h_{t-1}} = \operatorname{diag}(z_t) + (\text{terms through } r_t, z_t, n_t),$$
#
# a *direct path* $\operatorname{diag}(z_t)$ that involves no weight matrix and no squashing
# derivative. Where $z \approx 1$, the error passes back nearly unchanged — the same
# trick as the LSTM's forget gate, without a second state.

# %% [markdown]
# ## 4.2 The backward pass, gate by gate
#
# Given `dh` $= \partial L/\partial h_t$ (the total error at $h_t$), walk the cell's
# equations backwards, one line each:
#
# | forward | backward |
# |---|---|
# | $h = (1 - z) \odot n + z \odot h_{t-1}$ | $dn = dh \odot (1 - z)$, $\;dz = dh \odot (h_{t-1} - n)$, $\;dh_{t-1} \mathrel{+}= dh \odot z$ |
# | $n = \tanh(a_n)$ | $da_n = dn \odot (1 - n^2)$ |
# | $z = \sigma(a_z)$ | $da_z = dz \odot z \odot (1 - z)$ |
# | $a_n = gi_n + r \odot gh_n$ (reset after) | $dgh_n = da_n \odot r$, $\;dr = da_n \odot gh_n$ |
# | $r = \sigma(a_r)$ | $da_r = dr \odot r \odot (1 - r)$ |
#
# The three pre-activation gradients are stacked in gate order. Every gate sees
# the input through $gi$, so $dgi = [\,da_r \mid da_z \mid da_n\,]$; the hidden part
# differs in the candidate's block, $dgh = [\,da_r \mid da_z \mid dgh_n\,]$. The
# matrix products then give, as in Chapter 1,
#
# $$dW_{ih} = dgi^\top x_t, \quad db_{ih} = \textstyle\sum_{\text{batch}} dgi, \quad
#   dW_{hh} = dgh^\top h_{t-1}, \quad db_{hh} = \textstyle\sum_{\text{batch}} dgh,$$
# $$dx_t = dgi\, W_{ih}, \qquad dh_{t-1} = dh \odot z + dgh\, W_{hh}.$$
#
# **Reset before the product.** Write $u = r \odot h_{t-1}$, so that
# $a_n = gi_n + u W_{hn}^\top + b_{hn}$. Then
#
# $$du = da_n W_{hn}, \qquad dr = du \odot h_{t-1}, \qquad
#   dW_{hn} = da_n^\top u, \qquad db_{hn} = \textstyle\sum_{\text{batch}} da_n,$$
#
# the $r$ and $z$ blocks of $dW_{hh}$ are $da_r^\top h_{t-1}$ and $da_z^\top h_{t-1}$, and $h_{t-1}$
# now reaches the candidate through $u$ as well:
# $dh_{t-1} = dh \odot z + da_r W_{hr} + da_z W_{hz} + du \odot r$.
#
# Mind the asymmetry the reset gate creates: an error in $da_n$ spoils the
# candidate's gradients *and* the reset gate's (through $dr$), while an error in
# $dz$ stays within the update gate's rows. The grader uses exactly this to say
# where a mistake sits.

# %% [markdown]
# ### Exercise 4.1 — the step backward, reset after the product
#
# Write `gru_step_backward(params, cache, dstate)` for the cache of
# `gru.step_forward(..., reset_after=True)`,
# `cache = (x_t, h_prev, r, z, n, gh_n, reset_after)`, and `dstate = (dh,)`.
# Return `(dx_t, (dh_prev,), dparams)` with `dparams` holding `W_ih`, `W_hh`,
# `b_ih`, `b_hh`. The check compares every gate's block of every parameter
# gradient, then isolates each path into `dx_t` and `dh_prev` by zeroing all blocks
# of `W_ih` (or `W_hh`) but one, and names the quantity whose error explains the
# wrong terms.

# %%
def gru_step_backward(params, cache, dstate):
    """Backward of one GRU step with the reset gate after the product (PyTorch form).

    cache  = (x_t (B, D), h_prev (B, H), r, z, n, gh_n (B, H) each, reset_after=True)
    dstate = (dh (B, H),)
    returns (dx_t (B, D), (dh_prev (B, H),), {"W_ih": (3H, D), "W_hh": (3H, H), "b_ih": (3H,), "b_hh": (3H,)})
    """
    # BEGIN SOLUTION 4.1
    x_t, h_prev, r, z, n, gh_n, _ = cache
    (dh,) = dstate
    dn = dh * (1 - z)                          # h = (1 - z) n + z h_prev
    dz = dh * (h_prev - n)
    da_n = dn * (1 - n * n)                    # n = tanh(a_n)
    da_z = dz * z * (1 - z)                    # z = σ(a_z)
    dgh_n = da_n * r                           # a_n = gi_n + r ⊙ gh_n
    dr = da_n * gh_n
    da_r = dr * r * (1 - r)                    # r = σ(a_r)
    dgi = np.concatenate([da_r, da_z, da_n], axis=1)     # gi = x W_ihᵀ + b_ih feeds every gate
    dgh = np.concatenate([da_r, da_z, dgh_n], axis=1)    # gh = h_prev W_hhᵀ + b_hh
    dparams = {"W_ih": dgi.T @ x_t, "W_hh": dgh.T @ h_prev,
               "b_ih": dgi.sum(axis=0), "b_hh": dgh.sum(axis=0)}
    dx_t = dgi @ params["W_ih"]
    dh_prev = dh * z + dgh @ params["W_hh"]
    return dx_t, (dh_prev,), dparams
    # END SOLUTION


# %%
check("4.1", gru_step_backward)

# %% [markdown]
# ### Exercise 4.2 — the step backward, reset before the product
#
# Write `gru_step_backward_original(params, cache, dstate)` for
# `gru.step_forward(..., reset_after=False)`, whose cache is
# `(x_t, h_prev, r, z, n, None, reset_after)` (there is no $gh_n$ in this form).

# %%
def gru_step_backward_original(params, cache, dstate):
    """Backward of one GRU step with the reset gate before the product (Cho et al. 2014).

    cache  = (x_t (B, D), h_prev (B, H), r, z, n (B, H) each, None, reset_after=False)
    dstate = (dh (B, H),)
    returns (dx_t, (dh_prev,), {"W_ih", "W_hh", "b_ih", "b_hh"}) as in Exercise 4.1
    """
    # BEGIN SOLUTION 4.2
    x_t, h_prev, r, z, n, _, _ = cache
    (dh,) = dstate
    H = h_prev.shape[1]
    W_hr, W_hz, W_hn = params["W_hh"][:H], params["W_hh"][H:2 * H], params["W_hh"][2 * H:]
    dn = dh * (1 - z)                          # h = (1 - z) n + z h_prev
    dz = dh * (h_prev - n)
    da_n = dn * (1 - n * n)                    # n = tanh(a_n)
    da_z = dz * z * (1 - z)                    # z = σ(a_z)
    u = r * h_prev                             # a_n = gi_n + u W_hnᵀ + b_hn
    du = da_n @ W_hn
    dr = du * h_prev                           # u = r ⊙ h_prev
    da_r = dr * r * (1 - r)                    # r = σ(a_r)
    dgi = np.concatenate([da_r, da_z, da_n], axis=1)
    dparams = {"W_ih": dgi.T @ x_t,
               "W_hh": np.concatenate([da_r.T @ h_prev, da_z.T @ h_prev, da_n.T @ u], axis=0),
               "b_ih": dgi.sum(axis=0),
               "b_hh": dgi.sum(axis=0)}         # each hidden bias sits beside its gate's input bias
    dx_t = dgi @ params["W_ih"]
    dh_prev = dh * z + da_r @ W_hr + da_z @ W_hz + du * r
    return dx_t, (dh_prev,), dparams
    # END SOLUTION


# %%
check("4.2", gru_step_backward_original)

# %% [markdown]
# ## 4.3 Checking the whole cell
#
# The library's GRU passes the same finite-difference check over a sequence, in
# both forms, with every parameter random (biases included: a zero `b_hn` would
# hide the difference between the two placements of $r$). Real-time recurrent
# learning (Chapter 1) gives a second, independent oracle: the GRU's per-step
# Jacobians carried forward in time must reproduce BPTT to rounding error. In the
# original form the reset gate mixes units through $W_{hn}$, so even
# $\partial h/\partial a_r$ is a dense matrix there.

# %%
rng = np.random.default_rng(0)


def random_like(params, rng, scale=0.6):
    """Fresh random values for every parameter, biases included."""
    return {k: scale * rng.standard_normal(v.shape) for k, v in params.items()}


for reset_after in (True, False):
    p = random_like(rb.init_params("gru", 3, 4), rng)
    x_small = rng.standard_normal((5, 2, 3))
    h0 = (0.5 * rng.standard_normal((2, 4)),)
    report = rb.gradcheck.check_architecture("gru", p, x_small, h0, reset_after=reset_after)
    report.assert_ok()
    dy = rng.standard_normal((5, 2, 4))
    _, _, cache = rb.forward("gru", p, x_small, h0, reset_after=reset_after)
    g_bptt = rb.backward("gru", p, cache, dy)
    g_rtrl = rb.rtrl("gru", p, x_small, dy, h0, reset_after=reset_after)
    print(f"reset_after={reset_after}: finite differences worst {max(e.raw_error for e in report.entries):.1e}; "
          f"RTRL vs BPTT {max(np.abs(g_rtrl[k] - g_bptt[k]).max() for k in p):.1e}")

# %% [markdown]
# ## 4.4 Does the placement of the reset gate matter?
#
# Train both forms on the same task, from the same initial parameters, with the
# same batches: a character-level language model of Shakespeare, as in Chapter 1
# (embedding → GRU → read-out, Adam, stateful truncated BPTT; the loop is
# `rnnbook.book.experiments.train_char_model`).

# %%
from rnnbook.book.experiments import train_char_model
from rnnbook.data import CharVocab, load_text

text = load_text(max_chars=pick(full=None, small=20_000))
vocab = CharVocab(text)
ids = vocab.encode(text)
steps, hidden, seq_len, batch = pick(full=(1000, 128, 64, 32), small=(30, 32, 16, 8))
print(f"{len(text):,} characters, {len(vocab)} symbols; chance is log V = {np.log(len(vocab)):.2f} nats/char")


def train_gru(reset_after):
    return train_char_model("gru", ids, len(vocab), hidden, steps, seq_len, batch, reset_after=reset_after)


runs = {"reset after (PyTorch)": train_gru(True), "reset before (Cho et al.)": train_gru(False)}
fig, ax = plt.subplots(figsize=(7, 4))
for label, (_, _, hist) in runs.items():
    ax.plot(hist.smoothed(), label=f"{label}: {hist.seconds:.0f} s")
ax.axhline(np.log(len(vocab)), color="k", ls=":", lw=1, label="chance (log V)")
ax.set_ylim(top=np.log(len(vocab)) + 0.5)
ax.set(xlabel="step", ylabel="cross-entropy (nats/char, smoothed)", title="GRU on tiny Shakespeare: reset placement")
ax.grid(alpha=0.3)
ax.legend()
plt.show()
for label, (_, _, hist) in runs.items():
    print(f"{label:>26}: last 50 steps {np.mean(hist.loss[-50:]):.3f} nats/char, "
          f"{1e3 * hist.seconds / steps:.1f} ms/step")

# %% [markdown]
# On this task the two curves lie close together, in line with the small
# differences reported between the two forms. The choice between them is made on
# speed, on hardware that can use it: resetting after the product needs one matrix
# product per step for all three gates instead of two dependent ones, which is
# what cuDNN exploits. (The seconds in the legend come from the NumPy reference,
# which fuses nothing, on a machine shared with other work; the backend table at
# the end times both forms side by side.) What does differ is *what the gate can
# do*. After the product, $r = 0$ silences the recurrent contribution to the
# candidate, bias $b_{hn}$ included; before the product, $r$ picks which units of
# the old state enter the mix $W_{hn}$ at all. The histograms show how the trained
# models use their gates over a passage of text.

# %%
passage = text[pick(full=5000, small=1000):][:pick(full=400, small=120)]
fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
gates = {}
for (label, (model, p, _)), ax in zip(runs.items(), axes):
    core = {k[len("core."):]: v.astype(np.float64) for k, v in p.items() if k.startswith("core.")}
    x_emb = p["embed.E"].astype(np.float64)[vocab.encode(passage)][:, None, :]      # (T, 1, 32)
    _, _, cache = rb.forward("gru", core, x_emb, reset_after=model.core_options["reset_after"])
    r = np.stack([s[2][0] for s in cache["steps"]])                                  # (T, H)
    z = np.stack([s[3][0] for s in cache["steps"]])
    gates[label] = (r, z)
    ax.hist([r.ravel(), z.ravel()], bins=20, range=(0, 1), label=["reset r", "update z"])
    ax.set(title=label, xlabel="gate value over a passage", ylabel="count")
    ax.legend()
plt.show()

# %% [markdown]
# ## 4.5 Reading the update gate
#
# An update gate near 1 means "keep what you have", near 0 "overwrite with the
# candidate". The histograms above say that most of the time most units rewrite
# themselves ($z \approx 0$), while a minority hold their value ($z \approx 1$) for
# stretches of text; the reset gates are mostly either shut or open. Following
# *Visualizing and Understanding Recurrent Networks* (Karpathy et al., 2015), we
# run the trained model over the passage and colour each character by a unit's
# **update activity** $1 - z_t$ (dark: the unit rewrote itself on reading this
# character). We pick the units whose activity correlates most with "this
# character ends a word" (a space, a line break or punctuation): such units hold
# their value inside a word and rewrite it at its end.

# %%
r, z = gates["reset after (PyTorch)"]
activity = 1 - z                                                      # (T, H)
boundary = np.array([c in " \n.,;:!?" for c in passage], dtype=float)
corr = np.array([np.corrcoef(activity[:, j], boundary)[0, 1] if activity[:, j].std() > 1e-9 else 0.0
                 for j in range(activity.shape[1])])
units = np.argsort(-np.abs(corr))[:3]


def show_text(text, values, title, width=80):
    """The characters of ``text`` on a grid, each on a background coloured by ``values`` in [0, 1]."""
    rows = -(-len(text) // width)
    fig, ax = plt.subplots(figsize=(width * 0.12, 0.32 * rows + 0.4))
    for i, (ch, v) in enumerate(zip(text, values)):
        row, col = divmod(i, width)
        ax.add_patch(Rectangle((col, -row - 1), 1, 1, color=plt.cm.Blues(0.1 + 0.8 * v)))
        ax.text(col + 0.5, -row - 0.5, "↵" if ch == "\n" else ch, ha="center", va="center",
                family="monospace", fontsize=8, color="white" if v > 0.6 else "black")
    ax.set_xlim(0, width)
    ax.set_ylim(-rows, 0)
    ax.axis("off")
    ax.set_title(title, fontsize=10, loc="left")
    plt.show()


for j in units:
    show_text(passage, activity[:, j], f"unit {j}: update activity 1 − z (correlation with word ends {corr[j]:+.2f})")

fig, ax = plt.subplots(figsize=(11, 3))
shown = min(len(passage), 120)
ax.imshow(activity[:shown, :24].T, aspect="auto", cmap="Blues", vmin=0, vmax=1)
ax.set_xticks(range(shown))
ax.set_xticklabels(["↵" if c == "\n" else c for c in passage[:shown]], fontsize=6, family="monospace")
ax.set(ylabel="unit", title="update activity 1 − z of the first 24 units, character by character")
plt.show()

# %% [markdown]
# ## 4.6 Swapping the backend
#
# The same GRU, in both forms, on every backend this machine can run
# (`rb.available_backends()`); each row is checked against the NumPy reference.

# %%
T_t, B_t, D_t, H_t = pick(full=(100, 32, 64, 256), small=(10, 4, 8, 16))
for reset_after in (True, False):
    display(backend_timings("gru", D_t, H_t, T_t, B_t, reset_after=reset_after, repeats=pick(full=5, small=2)))

# %% [markdown]
# ## Exercises
#
# ### Exercise 4.1 — the step backward, reset after the product (graded, above)
# ### Exercise 4.2 — the step backward, reset before the product (graded, above)
#
# ### Exercise 4.3 — the copying unit
# Suppose a unit's update gate is saturated at $z = 1$ for steps $t+1, \dots, T$.
# What is $\partial h_T / \partial h_t$ for that unit, and what does it say about the
# gradients that reach step $t$? Check your answer numerically: set the $z$ rows of
# `b_ih` to $+20$ in a small GRU and measure $\|\partial L/\partial h_t\|$ against the
# lag as in Chapter 1.
#
# ### Exercise 4.4 — a GRU without the past in its gates
# Drop $h_{t-1}$ from both gates and the candidate: $z_t = \sigma(gi_z)$,
# $n_t = \tanh(gi_n)$, $h_t = (1 - z_t) \odot n_t + z_t \odot h_{t-1}$ (the *minGRU* of Part V).
# Derive $\partial h_t / \partial h_{t-1}$. Why can this recurrence be computed for all
# $t$ at once by a parallel scan, and what did the GRU give up to allow it?

# %% tags=["solution"]
p_copy = random_like(rb.init_params("gru", 3, 4), np.random.default_rng(1))
p_copy["b_ih"][4:8] = 20.0                                   # z = σ(20 + …) ≈ 1 for every unit
x_copy = np.random.default_rng(2).standard_normal((30, 2, 3))
_, _, cache_copy = rb.forward("gru", p_copy, x_copy)
g_copy = np.random.default_rng(3).standard_normal((2, 4))
delta, norms = (g_copy,), []
for t in reversed(range(30)):
    norms.append(np.linalg.norm(delta[0], axis=1).mean())
    _, delta, _ = gru.step_backward(p_copy, cache_copy["steps"][t], delta)
print("‖∂L/∂h_t‖ at lags 0, 10, 20, 29:", np.round(np.array(norms)[[0, 10, 20, 29]], 4))

# %% [markdown] tags=["solution"]
# **Answer 4.3.** With $z = 1$ the unit's update is $h_t = h_{t-1}$ exactly, and
# $1 - z = 0$ and $z(1 - z) = 0$ switch off every other path, so
# $\partial h_T / \partial h_t = 1$: the error reaches step $t$ undiminished, however long
# the lag (the measured norms stay constant). The price is that the unit ignores
# its input for as long as the gate stays shut.
#
# **Answer 4.4.** $\partial h_t / \partial h_{t-1} = \operatorname{diag}(z_t)$, with $z_t$
# independent of the state. The recurrence $h_t = a_t \odot h_{t-1} + b_t$ with
# $a_t = z_t$, $b_t = (1 - z_t) \odot n_t$ is *linear* in $h$, and composing two such
# maps gives another one, $(a, b) \circ (a', b') = (a a', a b' + b)$ — an associative
# operator, so a parallel scan computes every $h_t$ in $O(\log T)$ depth. The GRU
# gave up gates and candidates that depend on the state: what to keep and what
# to write can no longer depend on what the unit already holds.
