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
# # Chapter 3 — Long short-term memory and its variants
#
# Chapter 1 measured why an Elman network cannot learn long dependencies: the
# error sent back from the loss is multiplied, at every step, by
# $\operatorname{diag}(\varphi'(a_t))\,W_{hh}$, and a product of such matrices shrinks
# (or grows) geometrically with the lag. Hochreiter and Schmidhuber's answer
# (*Long Short-Term Memory*, 1997) was to build a unit whose error *cannot* decay:
# a linear memory cell that feeds itself with weight exactly 1, the **constant
# error carousel**, guarded by multiplicative gates that decide what is written into
# it and what is read out. Gers, Schmidhuber and Cummins (*Learning to Forget:
# Continual Prediction with LSTM*, 2000) added a third gate that lets the cell
# *forget* — the self-weight becomes a learned $f_t \in (0, 1)$ — and Gers and
# Schmidhuber (*Recurrent Nets that Time and Count*, 2000) let the gates look at
# the cell through **peephole** connections.
#
# Which of these pieces matter? Greff et al. (*LSTM: A Search Space Odyssey*, 2017)
# changed them one at a time — eight variants, thousands of runs on speech,
# handwriting and music — and found that none of the variants beat the full LSTM
# clearly, and that two pieces matter most: the **forget gate** and the **output
# activation** (the $\tanh$ between cell and output).
#
# This chapter
#
# 1. writes the cell in the code's symbols and shows why $\partial c_t / \partial c_{t-1} = f_t$
#    lets the error through, measured against the tanh network of Chapter 1;
# 2. derives the backward pass of one step — **Exercise 3.1** — and the extra
#    terms of the peepholes — **Exercise 3.2**;
# 3. builds all eight variants as options of one cell, derives the coupled gate —
#    **Exercise 3.3** — and checks every variant against finite differences and RTRL;
# 4. trains the nine cells on the same character-level task and asks whether a
#    small run reproduces the paper's finding;
# 5. reads the cell state of a trained model over Shakespeare, looking for cells
#    that count (*Visualizing and Understanding Recurrent Networks*).
#
# With `RNNBOOK_SMALL=1` (what CI does) every size shrinks so that the chapter runs
# in seconds; the prose describes the full-size run, whose numbers are printed
# next to it when you run it.

# %%
import inspect
import warnings

import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Markdown, display
from matplotlib.patches import Rectangle

import rnnbook as rb
from rnnbook.book import SMALL, ImplementMe, check, pick
from rnnbook.book.timing import backend_timings
from rnnbook.numpy_ref import lstm
from rnnbook.numpy_ref.lstm import ODYSSEY

warnings.filterwarnings("ignore", message="IProgress not found")   # tqdm in a kernel without ipywidgets
print(f"small size: {SMALL}; backends usable here: {rb.available_backends()}")

# %% [markdown]
# ## 3.1 The cell
#
# Parameters follow PyTorch's `nn.LSTM`, with its two biases folded into one:
# `W_ih` $(4H, D)$, `W_hh` $(4H, H)$ and `b` $(4H,)$, each stacked in the gate order
# **i, f, g, o** — rows $0..H-1$ belong to the input gate, $H..2H-1$ to the forget
# gate, $2H..3H-1$ to the candidate, $3H..4H-1$ to the output gate. One step, for a
# batch $x_t$ of shape $(B, D)$ and a state $(h_{t-1}, c_{t-1})$ of shapes $(B, H)$:
#
# $$z = x_t W_{ih}^\top + h_{t-1} W_{hh}^\top + b = [\,z_i \mid z_f \mid z_g \mid z_o\,] \qquad (B, 4H),$$
# $$i_t = \sigma(z_i), \quad f_t = \sigma(z_f), \quad g_t = \tanh(z_g), \quad o_t = \sigma(z_o),$$
# $$c_t = f_t \odot c_{t-1} + i_t \odot g_t, \qquad h_t = o_t \odot \tanh(c_t).$$
#
# Read it as a memory with three valves: the **input gate** $i$ decides how much
# of the candidate $g$ is written, the **forget gate** $f$ how much of the old
# content stays, the **output gate** $o$ how much of the (squashed) content is
# shown to the rest of the network and to the next step. The output is $y_t = h_t$;
# the state that travels is the pair $(h_t, c_t)$.
#
# The reference implementation carries all the variants of Section 3.5 as options
# (`peepholes`, `input_gate`, `forget_gate`, `output_gate`, `input_activation`,
# `output_activation`, `coupled`, `gate_recurrence`); with the defaults it is
# exactly the cell above. Its cache keeps what the backward pass needs: the
# inputs, the four gate activations, $c_t$ and $\tanh(c_t)$.

# %%
print(inspect.getsource(lstm.step_forward))

# %% [markdown]
# ## 3.2 The constant error carousel
#
# Take the state $s_t = (h_t, c_t)$. The Jacobian of one step has four blocks; the
# one that matters is the cell's dependence on its own past. Holding $h_{t-1}$
# fixed, $c_{t-1}$ enters $c_t = f_t \odot c_{t-1} + i_t \odot g_t$ only through the
# first product (the gates are computed from $x_t$ and $h_{t-1}$), so
#
# $$\frac{\partial c_t}{\partial c_{t-1}} = \operatorname{diag}(f_t).$$
#
# No weight matrix, no squashing derivative: along the cell, the error from step
# $t$ reaches step $t - k$ multiplied by $\prod_{s=t-k+1}^{t} f_s$, unit by unit. In the
# 1997 LSTM there was no forget gate — $f \equiv 1$ — and the error travelled along
# the cell *unchanged*, however long the lag: the constant error carousel. The
# other blocks (through $h_{t-1}$, which feeds every gate) pass through $W_{hh}$ and
# the gates' squashing derivatives, like the Elman network's, with no such
# guarantee.
#
# The forget gate trades this guarantee for the ability to reset the memory, and
# its *initialisation* decides where training starts. With the usual
# $\mathcal U(-1/\sqrt H, 1/\sqrt H)$ bias, $f \approx \sigma(0) = 1/2$ and the carousel halves
# the error at every step — no better than a tanh network. A positive forget-gate
# bias opens it: $b_f = 1$ gives $f \approx 0.73$ (the recommendation of Jozefowicz et
# al., *An Empirical Exploration of Recurrent Network Architectures*, 2015), $b_f = 3$
# gives $f \approx 0.95$.
#
# We measure what learning sees: the gradient of a loss placed at the *last* step
# with respect to the *input* $k$ steps earlier, $\|\partial L / \partial x_{T-1-k}\|$, at
# initialisation, for a tanh network and for LSTMs with the forget gate closed,
# half-open, open, and absent. The right panel looks inside: the error at the
# cell, $\|\partial L / \partial c_{T-1-k}\|$, against what the carousel alone would
# carry, $\|\,dc_{T-1} \odot \prod f\,\|$ (dashed).

# %%
T_lag, B_lag, D_lag, H_lag = pick(full=(100, 16, 8, 64), small=(30, 4, 4, 16))
rng = np.random.default_rng(0)
x_lag = rng.standard_normal((T_lag, B_lag, D_lag))
g_lag = rng.standard_normal((B_lag, H_lag))            # dL/dh at the last step


def lstm_params(forget_bias=None, seed=1, **options):
    p = rb.init_params("lstm", D_lag, H_lag, seed=seed, **options)
    if forget_bias is not None:
        p["b"][H_lag:2 * H_lag] = forget_bias
    return p


def input_gradient_norms(arch, params, **options):
    """‖∂L/∂x_t‖ (mean over the batch) against the lag T-1-t, for L = <g, h_{T-1}>."""
    y, _, cache = rb.forward(arch, params, x_lag, **options)
    dy = np.zeros_like(y)
    dy[-1] = g_lag
    return np.linalg.norm(rb.backward(arch, params, cache, dy)["x"], axis=2).mean(axis=1)[::-1]


def cell_error_norms(params, **options):
    """‖∂L/∂c_t‖ against the lag (walking the step backward by hand), and the carousel alone: dc_{T-1} ⊙ Π f."""
    _, _, cache = lstm.forward(params, x_lag, **options)
    steps = cache["steps"]
    *_, o_last, _, tc_last, _ = steps[-1]
    dc_carousel = g_lag * o_last * (1 - tc_last ** 2)       # the error that enters the cell at the last step
    delta = (g_lag, np.zeros_like(g_lag))
    measured, carousel = [np.linalg.norm(dc_carousel, axis=1).mean()], [np.linalg.norm(dc_carousel, axis=1).mean()]
    for t in reversed(range(1, T_lag)):
        _, delta, _ = lstm.step_backward(params, steps[t], delta)      # delta = (dh_{t-1}, dc_{t-1})
        dc_carousel = dc_carousel * steps[t][5]                         # × f_t
        measured.append(np.linalg.norm(delta[1], axis=1).mean())
        carousel.append(np.linalg.norm(dc_carousel, axis=1).mean())
    return np.array(measured), np.array(carousel)


cases = {
    "tanh RNN": ("rnn", rb.init_params("rnn", D_lag, H_lag, seed=1), {}),
    "LSTM, b_f ≈ 0 (f ≈ 0.5)": ("lstm", lstm_params(), {}),
    "LSTM, b_f = 1 (f ≈ 0.73)": ("lstm", lstm_params(1.0), {}),
    "LSTM, b_f = 3 (f ≈ 0.95)": ("lstm", lstm_params(3.0), {}),
    "LSTM, no forget gate (f = 1)": ("lstm", lstm_params(forget_gate=False), {"forget_gate": False}),
}
fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
for k, (label, (arch, p, opts)) in enumerate(cases.items()):
    axes[0].semilogy(input_gradient_norms(arch, p, **opts) + 1e-30, color=f"C{k}", label=label)
    if arch == "lstm":
        measured, carousel = cell_error_norms(p, **opts)
        axes[1].semilogy(measured + 1e-30, color=f"C{k}", label=label)
        axes[1].semilogy(carousel + 1e-30, color=f"C{k}", ls="--", lw=0.9)
axes[0].set(xlabel="lag k (steps back from the loss)", ylabel="‖∂L/∂x_{T-1-k}‖",
            title="what learning sees: the error reaching an input")
axes[1].set(xlabel="lag k", ylabel="‖∂L/∂c_{T-1-k}‖", title="inside the cell: measured (solid), carousel alone (dashed)")
for ax in axes:
    ax.set_ylim(1e-14, 1e2)
    ax.grid(alpha=0.3)
axes[0].legend(fontsize=8)
plt.show()
for label, (arch, p, opts) in cases.items():
    n = input_gradient_norms(arch, p, **opts)
    print(f"{label:>30}: ‖∂L/∂x‖ at lag 0 {n[0]:.2e}, at lag {T_lag - 1} {n[-1]:.2e}")

# %% [markdown]
# The tanh network and the LSTM at its default initialisation lose the error at
# about the same geometric rate: the LSTM is *not* automatically better, its
# forget gates must be open. With $b_f = 1$ the decay is slower; with $b_f = 3$, and
# without a forget gate, the error that reaches an input a hundred steps back is as
# large as at a lag of a few steps (it even grows a little towards the start of the
# sequence, where the cells are still small and their $\tanh$ unsaturated).
#
# The right panel separates the carousel from the rest. The dashed lines are what
# the carousel alone would deliver, $\|dc_{T-1} \odot \prod f\|$. With the gate half
# closed ($f \approx 0.5$ or $0.73$) the carousel forgets *faster* than the
# measurement: the error that survives there has travelled the other way, through
# $h_{t-1}$ and the gates' weight matrices, and decays like the tanh network's.
# With the gate open, the carousel alone keeps the error of order one over all
# hundred steps (exactly constant where $f = 1$), and the other paths add to it.
# Either way, a gradient that survives a long lag needs $f$ close to 1 on the one
# path that has no weight matrix and no squashing derivative.
#
# Without a forget gate the price is paid elsewhere: $c_t = c_{t-1} + i_t \odot g_t$ only
# accumulates, so over a long stream the cell grows without bound, $\tanh(c_t)$
# saturates and the unit stops responding. That is the problem the forget gate
# was invented for, and Section 3.7 shows it happening.

# %% [markdown]
# ## 3.3 The backward pass of one step
#
# BPTT (Chapter 1) needs one function: given the error arriving at the state of
# step $t$ — `dh` $= \partial L / \partial h_t$ (from the output $y_t$ *and* from step $t+1$)
# and `dc_next` $= \partial L / \partial c_t$ through step $t+1$ — return the errors at
# $x_t$, $h_{t-1}$, $c_{t-1}$ and the parameter gradients of this step. Walk the
# equations backwards, one line each:
#
# | forward | backward |
# |---|---|
# | $h = o \odot \tanh(c)$ | $do = dh \odot \tanh(c)$, $\quad dc = dc_{\text{next}} + dh \odot o \odot (1 - \tanh^2 c)$ |
# | $c = f \odot c_{t-1} + i \odot g$ | $di = dc \odot g$, $\quad df = dc \odot c_{t-1}$, $\quad dg = dc \odot i$, $\quad dc_{t-1} = dc \odot f$ |
# | $i, f, o = \sigma(z_{i,f,o})$ | $dz_i = di \odot i(1-i)$, $\quad dz_f = df \odot f(1-f)$, $\quad dz_o = do \odot o(1-o)$ |
# | $g = \tanh(z_g)$ | $dz_g = dg \odot (1 - g^2)$ |
#
# Two lines deserve a second look. The cell $c_t$ is used twice — by $h_t$ and by
# $c_{t+1}$ — so its error is the *sum* of the two contributions: that is the $+$ in
# $dc$. And $dc_{t-1} = dc \odot f$ is the carousel of Section 3.2, in code.
#
# The four pre-activation errors are stacked in gate order,
# $dz = [\,dz_i \mid dz_f \mid dz_g \mid dz_o\,]$ of shape $(B, 4H)$, and the matrix product
# $z = x_t W_{ih}^\top + h_{t-1} W_{hh}^\top + b$ gives, exactly as in Chapter 1,
#
# $$dW_{ih} = dz^\top x_t, \quad dW_{hh} = dz^\top h_{t-1}, \quad db = \textstyle\sum_{\text{batch}} dz,
#   \quad dx_t = dz\, W_{ih}, \quad dh_{t-1} = dz\, W_{hh}.$$
#
# Because every gate has its own block of rows, an error in one gate's local
# gradient shows up in exactly that gate's rows of `dW_ih`, `dW_hh` and `db` — the
# grader uses this to name the gate.

# %% [markdown]
# ### Exercise 3.1 — the step backward
#
# Write `lstm_step_backward(params, cache, dstate)` for the cache of
# `lstm.step_forward` with the default options,
# `cache = (x_t, h_prev, c_prev, a_prev, i, f, g, o, c, tanh_c, options)` (`a_prev` is
# `None` and `options` a dict; neither is needed here), and `dstate = (dh, dc)`.
# Return `(dx_t, (dh_prev, dc_prev), dparams)` with `dparams` holding `W_ih`, `W_hh`
# and `b` — the library's contract, so that your step can run inside its BPTT.
#
# The check compares every gate's block of every parameter gradient, then
# isolates paths by zeroing everything but one term: one block of `W_ih` (or
# `W_hh`) alive leaves one gate's path into `dx_t` (or `dh_prev`); `dh = 0` leaves
# the carousel alone in `dc_prev`, `dc = 0` the path from $h_t$. It names the
# intermediate quantity whose error explains the wrong terms.

# %%
def lstm_step_backward(params, cache, dstate):
    """Backward of one LSTM step (PyTorch form: forget gate, no peepholes).

    cache  = (x_t (B, D), h_prev (B, H), c_prev (B, H), a_prev (None), i, f, g, o, c, tanh_c (B, H) each, options)
    dstate = (dh (B, H), dc (B, H)), the errors arriving at h_t and (through step t+1) at c_t
    returns (dx_t (B, D), (dh_prev (B, H), dc_prev (B, H)), {"W_ih": (4H, D), "W_hh": (4H, H), "b": (4H,)})
    """
    # BEGIN SOLUTION 3.1
    x_t, h_prev, c_prev, _, i, f, g, o, c, tanh_c, _ = cache
    dh, dc_next = dstate
    do = dh * tanh_c                               # h = o ⊙ tanh(c)
    dc = dc_next + dh * o * (1 - tanh_c ** 2)      # c_t feeds h_t and c_{t+1}
    di = dc * g                                    # c = f ⊙ c_prev + i ⊙ g
    df = dc * c_prev
    dg = dc * i
    dc_prev = dc * f                               # the carousel
    dz = np.concatenate([di * i * (1 - i),         # i = σ(z_i)
                         df * f * (1 - f),         # f = σ(z_f)
                         dg * (1 - g ** 2),        # g = tanh(z_g)
                         do * o * (1 - o)],        # o = σ(z_o)
                        axis=1)
    dparams = {"W_ih": dz.T @ x_t,                 # z = x_t W_ihᵀ + h_prev W_hhᵀ + b
               "W_hh": dz.T @ h_prev,
               "b": dz.sum(axis=0)}
    dx_t = dz @ params["W_ih"]
    dh_prev = dz @ params["W_hh"]
    return dx_t, (dh_prev, dc_prev), dparams
    # END SOLUTION


# %%
check("3.1", lstm_step_backward)

# %% [markdown]
# ## 3.4 Peepholes
#
# In the cell above the gates never see the cell they control: they are computed
# from $x_t$ and $h_{t-1} = o_{t-1} \odot \tanh(c_{t-1})$, and when the output gate is shut,
# $h_{t-1} \approx 0$ hides the cell completely. Gers and Schmidhuber gave each gate
# a direct, diagonal view of the cell — a **peephole** vector per gate, `p_i`, `p_f`,
# `p_o` of shape $(H,)$ (option `peepholes=True`):
#
# $$z_i \mathrel{+}= p_i \odot c_{t-1}, \qquad z_f \mathrel{+}= p_f \odot c_{t-1}, \qquad z_o \mathrel{+}= p_o \odot c_t .$$
#
# Note the asymmetry: the input and forget gates look at the *old* cell (they
# decide what becomes of it), the output gate at the *new* one (it decides what of
# it to show). Each peephole adds paths to the backward pass:
#
# * $c_t$ now also feeds $z_o$, so its error gains a term **before** it is passed on:
#   $dc = dc_{\text{next}} + dh \odot o \odot (1 - \tanh^2 c) + dz_o \odot p_o$;
# * $c_{t-1}$ now also feeds $z_i$ and $z_f$:
#   $dc_{t-1} = dc \odot f + dz_i \odot p_i + dz_f \odot p_f$;
# * the peepholes' own gradients, summed over the batch (each is shared by every row):
#   $dp_i = \sum dz_i \odot c_{t-1}$, $\quad dp_f = \sum dz_f \odot c_{t-1}$, $\quad dp_o = \sum dz_o \odot c_t$.
#
# The order matters: $dz_o$ must be known before $dc$ is complete, and $dc$ before
# $dz_i$ and $dz_f$, which in turn complete $dc_{t-1}$. The carousel is no longer
# exactly diagonal-$f$ either: $\partial c_t / \partial c_{t-1} = \operatorname{diag}\big(f + c_{t-1} \odot f(1-f) \odot p_f + g \odot i(1-i) \odot p_i\big)$.

# %% [markdown]
# ### Exercise 3.2 — the peephole terms
#
# Write `lstm_step_backward_peephole(params, cache, dstate)` for
# `lstm.step_forward(..., peepholes=True)` (same cache layout as in Exercise 3.1),
# returning also `dp_i`, `dp_f`, `dp_o` in `dparams`. Besides the checks of
# Exercise 3.1, the grader runs the step with all three peepholes zero (the
# default form must come out), then with only one of them alive at a time, so
# that a wrong peephole term is caught in isolation.

# %%
def lstm_step_backward_peephole(params, cache, dstate):
    """Backward of one LSTM step with peepholes: z_i += p_i ⊙ c_prev, z_f += p_f ⊙ c_prev, z_o += p_o ⊙ c_t.

    cache and dstate as in Exercise 3.1 (cache from lstm.step_forward(..., peepholes=True))
    returns (dx_t, (dh_prev, dc_prev), {"W_ih", "W_hh", "b", "p_i", "p_f", "p_o"}), each p of shape (H,)
    """
    # BEGIN SOLUTION 3.2
    x_t, h_prev, c_prev, _, i, f, g, o, c, tanh_c, _ = cache
    dh, dc_next = dstate
    do = dh * tanh_c                               # h = o ⊙ tanh(c)
    dz_o = do * o * (1 - o)                        # o = σ(z_o)
    dc = dc_next + dh * o * (1 - tanh_c ** 2)      # c_t feeds h_t and c_{t+1} ...
    dc = dc + dz_o * params["p_o"]                 # ... and z_o = … + p_o ⊙ c_t
    dz_i = dc * g * i * (1 - i)                    # c = f ⊙ c_prev + i ⊙ g, i = σ(z_i)
    dz_f = dc * c_prev * f * (1 - f)               # f = σ(z_f)
    dz_g = dc * i * (1 - g ** 2)                   # g = tanh(z_g)
    dc_prev = dc * f + dz_i * params["p_i"] + dz_f * params["p_f"]   # z_i, z_f = … + p ⊙ c_prev
    dz = np.concatenate([dz_i, dz_f, dz_g, dz_o], axis=1)
    dparams = {"W_ih": dz.T @ x_t, "W_hh": dz.T @ h_prev, "b": dz.sum(axis=0),
               "p_i": (dz_i * c_prev).sum(axis=0),
               "p_f": (dz_f * c_prev).sum(axis=0),
               "p_o": (dz_o * c).sum(axis=0)}
    return dz @ params["W_ih"], (dz @ params["W_hh"], dc_prev), dparams
    # END SOLUTION


# %%
check("3.2", lstm_step_backward_peephole)

# %% [markdown]
# ## 3.5 The variants of the search space odyssey
#
# Greff et al. take as "vanilla" LSTM (V) the cell with forget gate *and* peepholes,
# and derive eight variants, each changing one thing. All of them are options of
# the one cell in `rnnbook.numpy_ref.lstm`, collected in `ODYSSEY`; the parameter
# layout stays the same (a disabled gate keeps its rows, which get zero gradient),
# so every variant can be trained, checked and compared with the same code.
#
# | name | what changes | option |
# |---|---|---|
# | V | forget gate and peepholes (the reference) | `peepholes=True` |
# | NIG | no input gate: $i = 1$ | `input_gate=False` |
# | NFG | no forget gate: $f = 1$ (the 1997 cell, plus peepholes) | `forget_gate=False` |
# | NOG | no output gate: $o = 1$ | `output_gate=False` |
# | NIAF | no input activation: $g = z_g$ | `input_activation=False` |
# | NOAF | no output activation: $h = o \odot c$ | `output_activation=False` |
# | NP | no peepholes (PyTorch's LSTM, this library's default) | — |
# | CIFG | coupled input and forget gate: $f = 1 - i$ | `coupled=True` |
# | FGR | full gate recurrence: $[z_i \mid z_f \mid z_o] \mathrel{+}= [\,i \mid f \mid o\,]_{t-1} R^\top$ | `gate_recurrence=True` |
#
# All but NP keep the peepholes. Two of them change the backward pass in an
# instructive way:
#
# * **CIFG** writes only as much as it forgets: $c_t = (1 - i_t) \odot c_{t-1} + i_t \odot g_t$,
#   a convex combination, like the GRU's update of Chapter 4. The forget gate has
#   no pre-activation of its own; its error $df = dc \odot c_{t-1}$ flows into the input
#   gate with a minus sign, $di = dc \odot g - df = dc \odot (g - c_{t-1})$, and the rows of
#   $z_f$ get zero gradient.
# * **FGR** feeds the previous step's gates back into all three gates through a
#   $3H \times 3H$ matrix $R$. The gates then become part of the state
#   — `state = (h, c, i, f, o)` — and their errors are carried back in time like
#   $h$ and $c$: the step backward returns `(dh_prev, dc_prev, di_prev, df_prev, do_prev)`.
#   $R$ alone has $9H^2$ parameters, more than `W_hh`'s $4H^2$.

# %%
for name, options in ODYSSEY.items():
    shapes = lstm.param_shapes(32, 64, **options)
    n = sum(int(np.prod(s)) for s in shapes.values())
    print(f"{name:>5}: {str(options) if options else '(defaults)':<50} {n:>7,} parameters at D=32, H=64, "
          f"state {lstm.state_names(**options)}")

# %% [markdown]
# ### Exercise 3.3 — the coupled input and forget gate
#
# Write `lstm_step_backward_cifg(params, cache, dstate)` for
# `lstm.step_forward(..., coupled=True)` (without peepholes, to keep the change in
# view): as Exercise 3.1, with $f = 1 - i$. The forget gate's rows of `dW_ih`,
# `dW_hh` and `db` must be zero.

# %%
def lstm_step_backward_cifg(params, cache, dstate):
    """Backward of one LSTM step with coupled gates, f = 1 − i (no peepholes).

    cache and dstate as in Exercise 3.1 (cache from lstm.step_forward(..., coupled=True))
    returns (dx_t, (dh_prev, dc_prev), {"W_ih", "W_hh", "b"}) with zero rows H..2H-1 (the unused z_f)
    """
    # BEGIN SOLUTION 3.3
    x_t, h_prev, c_prev, _, i, f, g, o, c, tanh_c, _ = cache
    dh, dc_next = dstate
    do = dh * tanh_c
    dc = dc_next + dh * o * (1 - tanh_c ** 2)
    df = dc * c_prev                               # c = f ⊙ c_prev + i ⊙ g
    di = dc * g - df                               # f = 1 − i: the forget gate's error goes to i
    dg = dc * i
    dc_prev = dc * f
    dz = np.concatenate([di * i * (1 - i),
                         np.zeros_like(df),        # no z_f: f has no parameters of its own
                         dg * (1 - g ** 2),
                         do * o * (1 - o)], axis=1)
    dparams = {"W_ih": dz.T @ x_t, "W_hh": dz.T @ h_prev, "b": dz.sum(axis=0)}
    return dz @ params["W_ih"], (dz @ params["W_hh"], dc_prev), dparams
    # END SOLUTION


# %%
check("3.3", lstm_step_backward_cifg)

# %% [markdown]
# ## 3.6 Checking every variant
#
# The library's step backward handles every combination of options. Three oracles
# check it over a whole sequence, for each of the nine cells, with **every
# parameter random** — biases and peepholes included (a zero peephole hides a
# missing peephole term, a zero bias a gate mix-up) — and a random initial state:
#
# * centred finite differences of $L = \langle G, (y, \text{final state})\rangle$ for a random $G$
#   (`rb.gradcheck.check_architecture`), entry by entry;
# * real-time recurrent learning (Chapter 1), which carries $\partial s_t / \partial \theta$
#   forward in time through the cell's per-step Jacobians — a computation that
#   shares nothing with BPTT but the forward pass;
# * truncated BPTT with a window as long as the sequence, which must equal full BPTT.
#
# Under FGR the initial gates are part of the state; they are drawn in $(0, 1)$.

# %%
def random_like(params, rng, scale=0.6):
    """Fresh random values for every parameter, biases and peepholes included."""
    return {k: scale * rng.standard_normal(v.shape) for k, v in params.items()}


def random_problem(options, rng, T=4, B=2, D=3, H=3):
    params = random_like(rb.init_params("lstm", D, H, **options), rng)
    x = rng.standard_normal((T, B, D))
    state0 = (0.5 * rng.standard_normal((B, H)), rng.standard_normal((B, H)))
    if options.get("gate_recurrence"):
        state0 += tuple(rng.uniform(0.05, 0.95, (B, H)) for _ in range(3))
    return params, x, state0


rng = np.random.default_rng(3)
rows = ["| variant | parameters checked | worst rel. error (finite differences) | RTRL vs BPTT | BPTT(T) vs BPTT |",
        "|---|---|---|---|---|"]
for name, options in ODYSSEY.items():
    p, x_c, s0 = random_problem(options, rng)
    report = rb.gradcheck.check_architecture("lstm", p, x_c, s0, **options)
    report.assert_ok()
    y_c, s_c, cache_c = rb.forward("lstm", p, x_c, s0, **options)
    dy_c = rng.standard_normal(y_c.shape)
    ds_c = tuple(rng.standard_normal(s.shape) for s in s_c)
    full = rb.backward("lstm", p, cache_c, dy_c, ds_c)
    g_rtrl = rb.rtrl("lstm", p, x_c, dy_c, s0, ds_c, **options)
    g_win = rb.backward("lstm", p, cache_c, dy_c, ds_c, window=x_c.shape[0])
    rtrl_diff = max(np.abs(g_rtrl[k] - full[k]).max() for k in p)
    win_diff = max(np.abs(g_win[k] - full[k]).max() for k in p)
    rows.append(f"| {name} | {', '.join(p)} | {max(e.raw_error for e in report.entries):.1e} | "
                f"{rtrl_diff:.1e} | {win_diff:.1e} |")
display(Markdown("\n".join(rows)))

# %% [markdown]
# ## 3.7 Which parts matter? The nine cells on one task
#
# Greff et al. trained each variant with a random search over its
# hyperparameters on three tasks — speech (TIMIT), online handwriting (IAM) and
# polyphonic music (JSB Chorales) — and compared the best runs. Their summary: no
# variant improves on V significantly; coupling the gates (CIFG) or dropping the
# peepholes (NP) costs nothing, and so saves parameters and time; removing the
# **forget gate** (NFG) or the **output activation** (NOAF) hurts on every data set;
# the other removals hurt on some data sets and not on others.
#
# We cannot repeat that study on two cores. What we *can* do is train all nine
# cells on one task under identical conditions — same data, same batches, same
# optimiser, same learning rate, several seeds — and see which differences are
# larger than the seed-to-seed spread. The task is the character model of
# Chapters 1 and 4: tiny Shakespeare, embedding → LSTM → read-out, Adam, stateful
# truncated BPTT (the final state of one chunk starts the next, so each of the
# $B$ streams is one long, continual input). We hold out the last 5% of the text
# and report the cross-entropy on it, read from a zero state.

# %%
from rnnbook.arrays import tree_map
from rnnbook.data import CharVocab, char_batches, load_text
from rnnbook.losses import softmax_cross_entropy
from rnnbook.model import SequenceModel
from rnnbook.optim import Adam
from rnnbook.train import train

text = load_text(max_chars=pick(full=None, small=20_000))
vocab = CharVocab(text)
ids = vocab.encode(text)
split = int(0.95 * len(ids))
train_ids = ids[:split]
n_streams, val_len = pick(full=(16, 1000), small=(4, 100))
val = ids[split:split + n_streams * val_len + 1]
val_x, val_y = val[:-1].reshape(n_streams, -1).T, val[1:].reshape(n_streams, -1).T      # (val_len, n_streams)
chance = np.log(len(vocab))
print(f"{len(text):,} characters, {len(vocab)} symbols; chance is log V = {chance:.2f} nats/char; "
      f"held out: {n_streams} streams of {val_len}")


def train_char_lstm(options, seed=0, hidden=64, steps=300, seq_len=32, batch=16, lr=3e-3):
    """Train a character LSTM with the cell ``options``; returns (model, params, history, carried state)."""
    model = SequenceModel("lstm", hidden_size=hidden, vocab_size=len(vocab), embed_dim=32, **options)
    p = model.init_params(seed=seed, dtype=np.float32)          # float32: training speed, not checking
    batches = char_batches(train_ids, batch, seq_len)
    carry = {"state": None}

    def step_fn(p, step):
        inputs, targets = next(batches)
        logits, state, cache = model.forward(p, inputs, carry["state"])
        loss, dlogits = softmax_cross_entropy(logits, targets)
        carry["state"] = tree_map(np.copy, state)                # keep the state, drop the graph
        return loss, model.backward(p, cache, dlogits)

    hist = train(step_fn, p, Adam(lr=lr), steps, clip_norm=5.0, progress=False)
    return model, p, hist, carry["state"]


def held_out_loss(model, p):
    logits, _, _ = model.forward(p, val_x)
    return float(softmax_cross_entropy(logits, val_y)[0])


seeds = pick(full=3, small=1)
var_steps, var_hidden, var_seq, var_batch = pick(full=(300, 64, 32, 16), small=(12, 16, 16, 4))
results = {}
for name, options in ODYSSEY.items():
    results[name] = []
    for seed in range(seeds):
        model, p, hist, state = train_char_lstm(options, seed, var_hidden, var_steps, var_seq, var_batch)
        results[name].append(dict(loss=held_out_loss(model, p), hist=hist, c_max=float(np.abs(state[1]).max()),
                                  params=p, model=model))
print(f"{len(ODYSSEY)} variants × {seeds} seed(s) × {var_steps} steps, "
      f"{sum(r['hist'].seconds for rs in results.values() for r in rs):.0f} s of training")

# %%
names = list(ODYSSEY)
losses = np.array([[r["loss"] for r in results[n]] for n in names])          # (variants, seeds)
top = chance + 0.3
fig, axes = plt.subplots(1, 2, figsize=(13, 4.2), gridspec_kw={"width_ratios": [1.1, 1]})
ax = axes[0]
means = losses.mean(axis=1)
colors = ["C3" if n in ("NFG", "NOAF") else ("C7" if n == "V" else "C0") for n in names]
ax.bar(names, np.minimum(means, top), color=colors, alpha=0.75)
for k, n in enumerate(names):
    ax.plot([k] * seeds, np.minimum(losses[k], top), "k.", ms=6)
    if means[k] > top:
        ax.annotate(f"mean {means[k]:.3g}", (k, top), ha="center", va="bottom", fontsize=8)
ax.axhline(means[0], color="C7", ls="--", lw=1, label="V (vanilla, with peepholes)")
ax.axhline(chance, color="k", ls=":", lw=1, label="chance (log V)")
finite = losses[np.isfinite(losses) & (losses < top)]
ax.set_ylim(max(0.0, finite.min() - 0.3) if finite.size else 0, top + 0.15)
ax.set(ylabel="held-out cross-entropy (nats/char)",
       title=f"nine LSTM cells, {seeds} seed(s) each (dots; clipped at the top)")
ax.legend(fontsize=8, loc="upper left")
ax.grid(alpha=0.3, axis="y")
ax = axes[1]
for k, n in enumerate(names):
    curve = np.array(results[n][0]["hist"].smoothed())
    line, = ax.plot(np.minimum(curve, top + 0.1), color=f"C{k}", lw=2.2 if n in ("NFG", "NOAF") else 1, label=n)
    if curve.max() > top:
        ax.annotate(f"{n}: up to {curve.max():.3g}", (int(np.argmax(curve)), top + 0.1), color=line.get_color(),
                    fontsize=8, ha="right", va="top")
ax.axhline(chance, color="k", ls=":", lw=1)
ax.set_ylim(ax.get_ylim()[0], top + 0.15)
ax.set(xlabel="step", ylabel="training loss (smoothed)", title="training curves (seed 0; clipped at the top)")
ax.legend(fontsize=7, ncol=3, loc="center right")
ax.grid(alpha=0.3)
plt.show()

print(f"{'variant':>8} {'mean':>8} {'Δ vs V':>8}   {'held-out loss per seed':<26} {'largest |c| carried':>20}")
for k, n in enumerate(names):
    per_seed = " ".join(f"{v:.3f}" if v < 100 else f"{v:.0f}" for v in losses[k])
    c_max = np.median([r["c_max"] for r in results[n]])
    print(f"{n:>8} {means[k]:>8.3f} {means[k] - means[0]:>+8.3f}   {per_seed:<26} {c_max:>20,.1f}")

# %% [markdown]
# At the full size (three seeds, 300 steps of 16 × 32 characters, $H = 64$) the
# picture is the paper's, in an exaggerated form:
#
# * **NFG** ends far behind the rest (around 2.6 nats against about 2.2 for V), and
# * **NOAF** fails outright: within a few dozen steps its training loss shoots far
#   above chance, and its held-out loss ends anywhere between a nat worse than
#   every other cell and a hundred nats, depending on the seed.
# * Six of the other seven cells — V, NIG, NOG, NIAF, NP, CIFG — end within a few
#   hundredths of a nat of each other, comparable to the spread between seeds.
#   FGR, with two and a half times the parameters, ends about 0.1 nat behind
#   them, more than its seed-to-seed spread; the paper found no benefit from full
#   gate recurrence either.
#
# The last column tells *why* the two outliers fail here, and it is the mechanism
# *Learning to Forget* was written about. In a continual stream the cell is never
# reset. Without a forget gate it can only accumulate: $c$ grows with the number of
# characters read (the carried cells reach thousands), $\tanh(c)$ saturates at $\pm 1$,
# and a saturated unit neither responds to its input nor passes an error back
# through $h$. Without the output activation the same growth reaches $h = o \odot c$
# itself, and through the read-out the logits: the loss explodes.
#
# Something the column also shows, and the paper's summary does not: even the
# cells *with* a forget gate and peepholes (V, NIG, NOG, NIAF, FGR) grow a few
# cells to the size of the stream, while NP stays near 10–20 and CIFG below 1. The
# forget peephole is a feedback loop: where $p_f$ and $c$ have the same sign, a
# larger $|c|$ opens the forget gate further, which keeps $|c|$ large — a unit caught
# in it saturates at $f = 1$ and becomes a counter of characters (harmless while its
# $\tanh$ hides it, fatal for NOAF). CIFG cannot
# do this: $c_t = (1 - i) \odot c_{t-1} + i \odot g$ is a convex combination, so $|c_t| \le 1$
# whenever $|c_0| \le 1$ (Exercise 3.5).
#
# How far does this small run support the paper? The *ranking* of the two critical
# components reproduces, and so does "CIFG and NP cost nothing". But the effect
# sizes do not transfer: our task rewards bounded states more than the paper's
# sequence-labelling tasks (which reset the state for every sequence), and with
# 300 steps, one learning rate and no hyperparameter search we are comparing
# cells early in training, where the paper compared the best of many tuned runs.
# That NIG, NOG and NIAF look harmless here says little about them; a longer run
# or a task with long lags might separate them.

# %% tags=["solution"]
# A look at one runaway cell of V (instructor's edition: the numbers quoted in the prose above)
model_v, p_v = results["V"][0]["model"], results["V"][0]["params"]
core_v = {k[len("core."):]: v.astype(np.float64) for k, v in p_v.items() if k.startswith("core.")}
x_v = p_v["embed.E"].astype(np.float64)[train_ids[:pick(full=3000, small=300)]][:, None, :]    # (T, 1, 32)
_, (h_v, c_v), cache_v = rb.forward("lstm", core_v, x_v, **ODYSSEY["V"])
j = int(np.argmax(np.abs(c_v[0])))
print(f"V, seed 0, after {x_v.shape[0]} characters from a zero state: unit {j} has c = {c_v[0, j]:+.1f}, "
      f"f = {cache_v['steps'][-1][5][0, j]:.4f}, p_f = {core_v['p_f'][j]:+.2f}")

# %% [markdown]
# ## 3.8 Reading the cells
#
# Karpathy, Johnson and Fei-Fei (*Visualizing and Understanding Recurrent
# Networks*, 2015) ran character LSTMs over text and coloured each character by
# the value of one cell. A few cells turned out to be readable: one tracked the
# position in the line, one switched on inside quotes, one followed the depth of
# nested brackets in C code. Tiny Shakespeare has few quotes, but it has verse
# lines of similar length and speaker names in capitals before every speech.
#
# We train a somewhat larger default LSTM (NP, the PyTorch cell) for longer, run it
# over a held-out passage, and look for the unit whose cell state $c_t$ correlates
# best with two features of the text: the **position in the line** (characters
# since the last newline) and **being inside a speaker's name** (a line such as
# `GLOUCESTER:`). The correlation picks the unit; the picture shows what it does.

# %%
lm_steps, lm_hidden, lm_seq, lm_batch = pick(full=(1000, 96, 64, 32), small=(30, 32, 16, 8))
model_lm, p_lm, hist_lm, _ = train_char_lstm({}, seed=0, hidden=lm_hidden, steps=lm_steps, seq_len=lm_seq,
                                             batch=lm_batch)
print(f"H = {lm_hidden}, {lm_steps} steps: last 50 steps {np.mean(hist_lm.loss[-50:]):.3f} nats/char "
      f"(held out {held_out_loss(model_lm, p_lm):.3f}), {hist_lm.seconds:.0f} s")
print(vocab.decode(model_lm.sample(p_lm, vocab.encode("\n"), pick(full=300, small=60), temperature=0.7, seed=1)))

# %%
passage = text[split:][:pick(full=5000, small=600)]
core = {k[len("core."):]: v.astype(np.float64) for k, v in p_lm.items() if k.startswith("core.")}
x_passage = p_lm["embed.E"].astype(np.float64)[vocab.encode(passage)][:, None, :]      # (T, 1, 32)
_, _, cache_passage = rb.forward("lstm", core, x_passage)
cells = np.stack([s[8][0] for s in cache_passage["steps"]])                            # c_t, (T, H)

position = np.zeros(len(passage))
in_name = np.zeros(len(passage))
k = 0
for t, ch in enumerate(passage):
    position[t] = k
    k = 0 if ch == "\n" else k + 1
start = 0
for line in passage.split("\n"):
    if line.endswith(":") and len(line) < 30:                 # a speaker's name on a line of its own
        in_name[start:start + len(line)] = 1
    start += len(line) + 1


def best_unit(values, feature):
    r = np.array([np.corrcoef(values[:, j], feature)[0, 1] if values[:, j].std() > 1e-9 else 0.0
                  for j in range(values.shape[1])])
    j = int(np.argmax(np.abs(r)))
    return j, r[j], np.sort(np.abs(r))[-2]


unit_pos, r_pos, second_pos = best_unit(cells, position)
unit_name, r_name, second_name = best_unit(np.tanh(cells), in_name)
print(f"position in line: unit {unit_pos}, correlation {r_pos:+.2f} (next best |r| {second_pos:.2f})")
print(f"speaker's name:   unit {unit_name}, correlation of tanh(c) {r_name:+.2f} (next best |r| {second_name:.2f})")

# %%
def show_text(text, values, title, width=80, cmap="RdBu_r"):
    """The characters of ``text`` on a grid, each on a background coloured by ``values`` in [-1, 1]."""
    rows = -(-len(text) // width)
    fig, ax = plt.subplots(figsize=(width * 0.12, 0.3 * rows + 0.5))
    colormap = plt.get_cmap(cmap)
    for n, (ch, v) in enumerate(zip(text, values)):
        row, col = divmod(n, width)
        ax.add_patch(Rectangle((col, -row - 1), 1, 1, color=colormap(0.5 + 0.45 * v)))
        ax.text(col + 0.5, -row - 0.5, "↵" if ch == "\n" else ch, ha="center", va="center",
                family="monospace", fontsize=8, color="white" if abs(v) > 0.7 else "black")
    ax.set_xlim(0, width)
    ax.set_ylim(-rows, 0)
    ax.axis("off")
    ax.set_title(title, fontsize=10, loc="left")
    plt.show()


excerpt = slice(0, pick(full=640, small=160))
shown = passage[excerpt]
c_pos = cells[excerpt, unit_pos]
show_text(shown, c_pos / np.abs(c_pos).max(),
          f"unit {unit_pos}: c_t (red > 0 > blue), correlation with the position in the line {r_pos:+.2f}")
show_text(shown, np.tanh(cells[excerpt, unit_name]),
          f"unit {unit_name}: tanh(c_t), correlation with 'inside a speaker's name' {r_name:+.2f}")

fig, ax = plt.subplots(figsize=(12, 3))
span = slice(0, pick(full=400, small=200))
ax.plot(cells[span, unit_pos], label=f"c_t of unit {unit_pos}")
ax2 = ax.twinx()
ax2.plot(position[span], color="C1", lw=0.8, alpha=0.7, label="position in the line")
for t in np.flatnonzero(np.array(list(passage[span])) == "\n"):
    ax.axvline(t, color="0.8", lw=0.6, zorder=0)
ax.set(xlabel="character (grey lines: newlines)", ylabel="c_t")
ax2.set_ylabel("characters since the newline")
ax.set_title("a cell that counts: c_t against the position in the line")
ax.legend(handles=ax.get_lines()[:1] + ax2.get_lines(), loc="upper left", fontsize=8)
plt.show()

# %% [markdown]
# At the full size one unit's cell climbs steadily along each line and drops at
# the newline, with a correlation of about 0.8 with the position in the line: the
# model counts characters, which is what it needs to predict where a verse line
# ends. Another unit's $\tanh(c)$ switches to its other extreme at the start of a
# speaker's name, holds it through the name, the colon and the line break, and
# switches back with the first character of the speech — a one-bit memory "we are
# in a name", which is what predicts the capitals and the colon. (Several units do
# this almost equally well: the second-best correlation is nearly as high.) Both
# are the carousel at work: a cell
# that integrates ($f \approx 1$, a constant write) counts, a cell that is written
# once and then held remembers. Most other units are not this readable; at the
# small size, with a barely trained model, the correlations are weak and the
# pictures show little.

# %% [markdown]
# ## 3.9 Swapping the backend
#
# Everything above ran on the NumPy reference. The same call runs on every backend
# this machine has (`rb.available_backends()`); each row is checked against NumPy.
# The compiled backends implement the default cell (NP, PyTorch's LSTM); for a
# variant they say so in their row instead of running.

# %%
T_t, B_t, D_t, H_t = pick(full=(100, 32, 64, 256), small=(10, 4, 8, 16))
repeats = pick(full=5, small=2)
display(backend_timings("lstm", D_t, H_t, T_t, B_t, repeats=repeats))
display(backend_timings("lstm", D_t, H_t, T_t, B_t, repeats=repeats, **ODYSSEY["V"]))

# %% [markdown]
# **When is the compiled backend faster, and why?** Both backends do the same
# arithmetic: one GEMM for $X W_{ih}^\top$ over all steps, a product
# $h_{t-1} W_{hh}^\top$ per step, the gates, and after the loop the GEMMs of the
# gradients. What differs is everything around the matrix products.
#
# - **Per step.** The reference pays Python's price at every step: a few NumPy
#   calls, each allocating a temporary, each some µs. The Numba backend runs the
#   whole recurrence as one compiled loop. The gates are fused into one pass over
#   the hidden units, vectorised in float32 (16 lanes with AVX-512).
# - **So small batches gain most.** At $B = 1$ a compiled training step takes 1–8 µs,
#   and the reference's step takes 20–60 times as long, almost all of it overhead
#   (measured on 2 cores, $H = 32$–$128$). At $B = 64$, $H = 1024$ the matrix
#   products take about half of the reference's time, in the same BLAS GEMMs that
#   the compiled backend calls, so no implementation can be more than about twice as
#   fast there. `benchmarks/cpu.py` prints that limit as the "NP bound" column.
# - **What limits the compiled loop at $B = 1$.** Every step reads all of $W_{hh}$
#   ($4H \times H$ floats, 256 KB at $H = 128$) from the cache. One core does that
#   at its L2 bandwidth, and the next step cannot start earlier. From $H = 64$ on,
#   the second core helps by computing the input projection ahead of the loop and
#   the gradients behind it, rather than by sharing the step.
#
# The measurements, and where PyTorch's fused LSTM stays ahead, are in
# `benchmarks/README.md`.

# %% [markdown]
# What each variant costs on the reference (forward and backward): peepholes add
# three element-wise products per step, which hardly shows next to the matrix
# products; FGR adds a second matrix product per step, with $R$, and three more
# state arrays to carry, and costs about twice as much.

# %%
T_v, B_v, D_v, H_v = pick(full=(100, 32, 64, 128), small=(10, 4, 8, 16))
rows = [f"| variant | forward (ms) | backward (ms) | relative to NP |", "|---|---|---|---|"]
timed = {name: backend_timings("lstm", D_v, H_v, T_v, B_v, repeats=repeats, backends=["numpy"], **options).rows[0]
         for name, options in ODYSSEY.items()}
print(f"numpy, T={T_v}, B={B_v}, D={D_v}, H={H_v}, float32, median of {repeats}")
base = timed["NP"]["forward_ms"] + timed["NP"]["backward_ms"]
for name, row in timed.items():
    total = row["forward_ms"] + row["backward_ms"]
    rows.append(f"| {name} | {row['forward_ms']:.2f} | {row['backward_ms']:.2f} | {total / base:.2f} |")
display(Markdown("\n".join(rows)))

# %% [markdown]
# ## Exercises
#
# ### Exercise 3.1 — the step backward (graded, above)
# ### Exercise 3.2 — the peephole terms (graded, above)
# ### Exercise 3.3 — the coupled input and forget gate (graded, above)
#
# ### Exercise 3.4 — the carousel with peepholes
# With peepholes, $\partial c_t / \partial c_{t-1} = \operatorname{diag}\big(f + c_{t-1} f(1-f)\, p_f + g\, i(1-i)\, p_i\big)$
# (Section 3.4). Can a diagonal entry exceed 1? What does that mean for the error
# along the carousel, and how does it relate to the counters of Section 3.7?
# Check your formula numerically with `lstm.step_jacobians`, whose state Jacobian
# has this diagonal in its $(c, c)$ block.
#
# ### Exercise 3.5 — a bounded cell
# Show that in CIFG, $|c_t| \le \max(|c_{t-1}|, 1)$ for every unit, and hence
# $|c_t| \le 1$ for all $t$ when $|c_0| \le 1$. Does the same hold for NIAF with
# coupled gates? Which of the nine cells can have an unbounded $h_t$?
#
# ### Exercise 3.6 — an initialisation experiment
# Repeat the training of Section 3.7 for NP with the forget-gate bias set to 0,
# 1 and 3 at initialisation (rows $H..2H-1$ of `core.b`). Does the opening of the
# forget gate that Section 3.2 found so important for the gradient at
# initialisation help on this task? What would you expect on a task with long
# lags (the copy task of `rnnbook.data.copy_task` with a long delay)?

# %% tags=["solution"]
p4, x4, s4 = random_problem({"peepholes": True}, np.random.default_rng(7), H=3)
p4["p_f"] = np.array([3.0, 3.0, 3.0])                # a strong forget peephole
_, J_state, _, _ = lstm.step_jacobians(p4, x4[0], s4, peepholes=True)
_, cache4 = lstm.step_forward(p4, x4[0], s4, peepholes=True)
_, _, c_prev4, _, i4, f4, g4, _, _, _, _ = cache4
predicted = f4 + c_prev4 * f4 * (1 - f4) * p4["p_f"] + g4 * i4 * (1 - i4) * p4["p_i"]
H4 = 3
print("diagonal of ∂c_t/∂c_{t-1} (step_jacobians):", np.round(np.diagonal(J_state[:, H4:, H4:], axis1=1, axis2=2), 4))
print("formula:                                     ", np.round(predicted, 4))
print("c_prev:                                      ", np.round(c_prev4, 4))

# %% tags=["solution"]
for forget_bias in (0.0, 1.0, 3.0):
    model_b = SequenceModel("lstm", hidden_size=var_hidden, vocab_size=len(vocab), embed_dim=32)
    p_b = model_b.init_params(seed=0, dtype=np.float32)
    p_b["core.b"][var_hidden:2 * var_hidden] = forget_bias
    batches_b, carry_b = char_batches(train_ids, var_batch, var_seq), {"state": None}

    def step_b(p, step):
        inputs, targets = next(batches_b)
        logits, state, cache = model_b.forward(p, inputs, carry_b["state"])
        loss, dlogits = softmax_cross_entropy(logits, targets)
        carry_b["state"] = tree_map(np.copy, state)
        return loss, model_b.backward(p, cache, dlogits)

    train(step_b, p_b, Adam(lr=3e-3), var_steps, clip_norm=5.0, progress=False)
    print(f"NP with b_f = {forget_bias}: held-out loss {held_out_loss(model_b, p_b):.3f} after {var_steps} steps")

# %% [markdown] tags=["solution"]
# **Answer 3.4.** Yes. The extra terms have the signs of $c_{t-1} p_f$ and of $g\,p_i$;
# where $c_{t-1} p_f > 0$ and $f$ is not saturated, $f + c_{t-1} f (1-f) p_f$ can exceed 1,
# and where $c_{t-1} p_f < 0$ the entry can drop below $f$, even below zero (the cell
# above, with $p_f = 3$, shows both; compare the signs of `c_prev`). An entry above 1
# *amplifies* the error carried along the cell. In the forward direction the same
# term is the feedback loop of Section 3.7: a larger $|c|$ with the sign of $p_f$ opens
# the forget gate further, until $f$ saturates at 1. Then $f(1-f) \approx 0$, the entry
# returns to 1, and the counter's carousel is exactly constant, as in the 1997 LSTM.
#
# **Answer 3.5.** In CIFG, $c_t = (1 - i) c_{t-1} + i\, g$ with $i \in (0, 1)$ is a convex
# combination of $c_{t-1}$ and $g \in (-1, 1)$, so it lies between them:
# $|c_t| \le \max(|c_{t-1}|, |g|) \le \max(|c_{t-1}|, 1)$; by induction $|c_t| \le 1$ when
# $|c_0| \le 1$. Without the input activation, $g = z_g$ is unbounded and so is $c$.
# $h_t = o\, \tanh(c_t)$ is bounded by 1 in every cell that keeps the output
# activation; only NOAF ($h = o\, c$) can have an unbounded $h$, and does, as soon as
# its cell grows.
#
# **Answer 3.6.** On this task an open forget gate does *not* help, at least not
# within 300 steps: at the full size the held-out loss gets worse as $b_f$ grows
# (about 2.18, 2.23 and 2.30 nats for $b_f$ = 0, 1 and 3 in our runs). The
# model needs dependencies of a few dozen characters; a cell that starts out
# remembering everything in a continual stream fills with old content and must
# first learn to forget. The gradient argument of Section 3.2 matters when the
# signal to learn spans more steps than the error survives at initialisation: on
# the copy task with a delay of 100 steps a half-closed forget gate leaves
# essentially no gradient to start from (the orange curve of Section 3.2 is down
# by 20 orders of magnitude), while $b_f = 3$ carries it across — there one
# expects the opposite ranking.
