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
# # Chapter 2 — Long memory without gates: slow context units and trainable time constants
#
# Chapter 1 ended on a measurement: in an Elman network the error sent back from
# the loss shrinks by a roughly constant factor per step, because every step
# multiplies it by $\operatorname{diag}(\varphi'(a_t))\, W_{hh}$. The gated cells of
# Chapters 3 and 4 cure this with a learned switch that can hold a unit's value.
# This chapter looks at two simpler cures that need no gate at all. Both
# give the per-step Jacobian a *diagonal part close to the identity* that involves
# no squashing derivative and no weight matrix:
#
# * the **structurally constrained recurrent network** (SCRN) of *Learning Longer
#   Memory in Recurrent Neural Networks* (Mikolov et al., 2015) sets aside a layer
#   of *context units* whose recurrent matrix is fixed to $\alpha I$ with $\alpha$ close
#   to 1. They are an exponential moving average of the input, the error travels
#   back along them with a factor $\alpha$ per step, and an ordinary fast layer reads them;
# * **leaky units with a trainable time constant** $\tau_i$ per neuron, as studied in
#   *Emergent mechanisms for long timescales depend on training curriculum and
#   affect performance in memory tasks* (Khajehabdollahi et al., 2024): each unit
#   keeps a fraction $1 - 1/\tau_i$ of its previous value, and $\tau_i$ is learned with
#   the weights. That paper asks *where* a network puts its memory — in the
#   single-neuron timescales or in the recurrent weights — and finds that the
#   answer depends on the training curriculum.
#
# The plan:
#
# 1. the SCRN cell, and why its context carries the error over long lags
#    (a measurement against the Elman network);
# 2. its backward pass — **Exercise 2.1** — and the gradient checks;
# 3. the leaky unit as a discretised differential equation with a clock per neuron;
#    its backward pass through the time constant — **Exercise 2.2** — and its RTRL
#    update, where the time constants enter through a diagonal — **Exercise 2.3**;
# 4. N-parity and N-delayed-match-to-sample, trained with a single-N and a multi-N
#    curriculum: how far each gets, what the single head forgets, and where the
#    learned time constants end up;
# 5. the same cells on every backend installed here.
#
# Every number below is computed when the notebook runs. With `RNNBOOK_SMALL=1`
# (what CI does) the sizes shrink so that the chapter runs in seconds; the prose
# describes the full-size run.

# %%
import inspect
import warnings

import matplotlib.pyplot as plt
import numpy as np
from IPython.display import display

import rnnbook as rb
from rnnbook.book import SMALL, ImplementMe, check, pick
from rnnbook.book.timing import backend_timings
from rnnbook.numpy_ref import leaky, rnn, scrn

warnings.filterwarnings("ignore", message="IProgress not found")   # tqdm in a kernel without ipywidgets
print(f"small size: {SMALL}; backends usable here: {rb.available_backends()}")

# %% [markdown]
# ## 2.1 The SCRN cell: a slow context next to a fast layer
#
# For a batch of rows (one per sequence), input size $D$ and hidden size $H$, one
# step of the SCRN is
#
# $$s_t = (1 - \alpha)\, x_t B^\top + \alpha\, s_{t-1}, \qquad
#   a_t = s_t P^\top + x_t A^\top + h_{t-1} R^\top + b, \qquad h_t = \sigma(a_t).$$
#
# The **context** $s_t$ $(\cdot, H)$ is a leaky average of the projected input $x_t B^\top$:
# its recurrent matrix is not learned but fixed to $\alpha I$. The **hidden layer**
# $h_t$ is an ordinary recurrent layer of logistic units ($\sigma$; `nonlinearity="tanh"`
# swaps it) that reads the input, its own past and the context. The parameters keep
# the paper's names: `A` $(H, D)$ input → hidden, `B` $(H, D)$ input → context, `P` $(H, H)$
# context → hidden, `R` $(H, H)$ hidden → hidden, and a bias `b` $(H,)$ that the paper
# does not have. The paper writes column vectors ($s_t = (1-\alpha) B x_t + \alpha s_{t-1}$);
# the code uses one row per sequence, hence the transposes. The state is the pair
# $(h, s)$ and the output is $y_t = h_t$; the paper's output layer also reads the context,
# $f(h_t U^\top + s_t V^\top)$, which `scrn.context_sequence` makes possible (Section 2.4).
# In the paper the context layer is smaller than the hidden layer; here both have
# $H$ units, and a smaller context is had by zeroing rows of `B` and columns of `P`.

# %%
print(inspect.getsource(scrn.step_forward))

# %% [markdown]
# The context is linear and its update does not depend on anything learned but
# `B`: after a single input pulse $x_0$ and nothing afterwards, $s_t = \alpha^t (1-\alpha)\, x_0 B^\top$.
# It *remembers* the pulse for about $1/(1 - \alpha)$ steps (20 steps for the library's
# default $\alpha = 0.95$). The hidden units forget quickly on their own — each step
# multiplies their deviation by $\sigma'(a) R$, and $\sigma' \le 1/4$ — but they keep
# reading the context, so their response to the pulse inherits its slow decay. The
# figure sends one pulse through the cell and plots the response of one unit of each
# layer (the change caused by the pulse, against the same run without it), with
# the context-to-hidden matrix $P$ in place and with $P = 0$.

# %%
T_pulse, H_pulse = pick(full=120, small=60), 8
x_pulse = np.zeros((T_pulse, 1, 1))
x_pulse[0] = 1.0
x_none = np.zeros_like(x_pulse)
p_pulse = rb.init_params("scrn", 1, H_pulse, seed=3)
p_pulse["B"][:] = 1.0                                              # every context unit sees the pulse
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
for i, alpha in enumerate((0.5, 0.9, 0.95, 0.99)):
    y1, _, c1 = rb.forward("scrn", p_pulse, x_pulse, alpha=alpha)
    y0, _, c0 = rb.forward("scrn", p_pulse, x_none, alpha=alpha)
    s_resp = np.abs(scrn.context_sequence(c1) - scrn.context_sequence(c0))[:, 0, 0]
    h_resp = np.abs(y1 - y0)[:, 0, 0]
    t = np.arange(T_pulse)
    axes[0].semilogy(t, s_resp + 1e-30, color=f"C{i}", label=f"α = {alpha}")
    axes[0].semilogy(t, (1 - alpha) * alpha ** t, color="k", ls=":", lw=0.8)
    axes[1].semilogy(t, h_resp + 1e-30, color=f"C{i}", label=f"α = {alpha}, reads the context")
p_fast = {**p_pulse, "P": np.zeros_like(p_pulse["P"])}            # cut the context off the hidden layer
y1, _, _ = rb.forward("scrn", p_fast, x_pulse)
y0, _, _ = rb.forward("scrn", p_fast, x_none)
axes[1].semilogy(np.abs(y1 - y0)[:, 0, 0] + 1e-30, color="k", lw=2, label="P = 0 (the fast layer alone)")
axes[0].set(xlabel="steps after the pulse", ylabel="|response|", title="context unit s (dotted: (1−α) α^t)")
axes[1].set(xlabel="steps after the pulse", title="hidden unit h")
axes[0].set_ylim(1e-12, 1)
for a in axes:
    a.grid(alpha=0.3)
    a.legend(fontsize=8)
plt.show()

# %% [markdown]
# ## 2.2 Why the context carries the gradient
#
# Differentiate one step with respect to the previous state. Writing
# $D_t = \operatorname{diag}(\sigma'(a_t))$ (per row of the batch),
#
# $$\frac{\partial s_t}{\partial s_{t-1}} = \alpha I, \qquad
#   \frac{\partial h_t}{\partial h_{t-1}} = D_t R, \qquad
#   \frac{\partial h_t}{\partial s_{t-1}} = \alpha D_t P, \qquad
#   \frac{\partial s_t}{\partial h_{t-1}} = 0 .$$
#
# The error that arrives at the context therefore goes back as
# $\delta^s_{t-1} = \alpha\,(\delta^s_t + \delta^a_t P)$ with $\delta^a_t = \delta^h_t \odot \sigma'(a_t)$:
# whatever the hidden layer sends into the context is afterwards only scaled by $\alpha$
# per step. Along the hidden path the error is multiplied by $D_t R$ at every step,
# exactly the Elman product of Chapter 1, made worse by $\sigma' \le 1/4$. So we expect
# $\|\partial L/\partial s_{T-1-k}\| \approx c\,\alpha^k$, while $\|\partial L/\partial h_{T-1-k}\|$
# falls off a cliff.
#
# The measurement: send a random error into the last hidden state only and walk
# the library's step backward back in time (as `error_norms` did in Chapter 1),
# recording the size of the error that reaches each state. The Elman network with
# tanh units and the same sizes is the baseline.

# %%
def error_norms(module, params, x, g, **options):
    """Mean ‖∂L/∂state_t‖ over the batch, for L = <g, h_{T-1}>, against the lag; one column per state array."""
    _, state, cache = module.forward(params, x, **options)
    delta = (g,) + tuple(np.zeros_like(s) for s in state[1:])      # the error arrives at h_{T-1} only
    norms = []
    for t in reversed(range(x.shape[0])):
        norms.append([np.linalg.norm(d, axis=1).mean() for d in delta])
        _, delta, _ = module.step_backward(params, cache["steps"][t], delta)
    return np.array(norms)                                         # (lag, number of state arrays)


T_lag, B_lag, D_lag, H_lag = pick(full=(150, 16, 8, 32), small=(40, 4, 4, 8))
rng = np.random.default_rng(0)
x_lag = rng.standard_normal((T_lag, B_lag, D_lag))
g_lag = rng.standard_normal((B_lag, H_lag))
lags = np.arange(T_lag)
p_scrn = rb.init_params("scrn", D_lag, H_lag, seed=1)
fig, ax = plt.subplots(figsize=(8, 4.5))
for i, alpha in enumerate((0.9, 0.95, 0.99)):
    n = error_norms(scrn, p_scrn, x_lag, g_lag, alpha=alpha)
    ax.semilogy(lags[1:], n[1:, 1] + 1e-300, color=f"C{i}", label=f"SCRN context s, α = {alpha}")
    ax.semilogy(lags[1:], n[1, 1] * alpha ** (lags[1:] - 1.0), color="k", ls=":", lw=0.8)
    if alpha == 0.95:
        ax.semilogy(lags, n[:, 0] + 1e-300, color=f"C{i}", ls="--", label="SCRN hidden h, α = 0.95")
n_elman = error_norms(rnn, rb.init_params("rnn", D_lag, H_lag, seed=1), x_lag, g_lag, nonlinearity="tanh")
ax.semilogy(lags, n_elman[:, 0] + 1e-300, color="k", label="Elman, tanh")
ax.set_ylim(1e-16, 10)
ax.set(xlabel="lag k (steps back from the loss)", ylabel="mean ‖∂L/∂state‖",
       title="How far back does the error reach? (dotted: α^k)")
ax.grid(alpha=0.3)
ax.legend(fontsize=8)
plt.show()
n95 = error_norms(scrn, p_scrn, x_lag, g_lag, alpha=0.95)
for k in sorted({k for k in (5, 20, 50, 100) if k < T_lag} | {T_lag - 1}):
    print(f"lag {k:>3}: SCRN context {n95[k, 1]:.1e}   SCRN hidden {n95[k, 0]:.1e}   Elman {n_elman[k, 0]:.1e}")

# %% [markdown]
# The context lines lie on their dotted $\alpha^k$ references: 20 steps back the
# context of the $\alpha = 0.95$ network still carries about a third of the error it
# received, and with $\alpha = 0.99$ the error survives the whole sequence. The
# hidden layer's error vanishes within a few steps, faster even than the tanh
# Elman network's. This is the paper's argument in one picture: the context units
# give gradient descent a path to inputs far back, at the price that what they
# remember is fixed — a blurred, exponentially weighted *bag* of recent inputs,
# not a precise record. (The hidden path is not useless: it models what
# changes quickly, the context what changes slowly.)

# %% [markdown]
# ## 2.3 The SCRN backward pass
#
# Given `dh` $=\partial L/\partial h_t$ and `ds_next` $=\partial L/\partial s_t$ as it arrives
# from step $t+1$ (the two parts of `dstate`), walk the three lines of the cell
# backwards. The hidden line is the Elman step of Chapter 1 with one more input,
# the context:
#
# $$da = dh \odot \sigma'(a_t), \qquad dA = da^\top x_t, \quad dP = da^\top s_t, \quad
#   dR = da^\top h_{t-1}, \quad db = \textstyle\sum_{\text{batch}} da, \qquad dh_{t-1} = da\, R .$$
#
# The context $s_t$ is used twice — by $a_t$ (through $P$) and by $s_{t+1}$ — so its total
# error is the sum of the two, and only then goes back through the context line:
#
# $$ds = ds_{\text{next}} + da\, P, \qquad dB = (1 - \alpha)\, ds^\top x_t, \qquad
#   ds_{t-1} = \alpha\, ds .$$
#
# The input too is used twice, directly and through the context:
# $dx_t = da\, A + (1 - \alpha)\, ds\, B$. Mind the order: `dP` uses the *new* context
# $s_t$ (stored in the cache), because $a_t$ reads $s_t$, not $s_{t-1}$.

# %% [markdown]
# ### Exercise 2.1 — the SCRN step backward
#
# Write `scrn_step_backward(params, cache, dstate)` for the cache of
# `scrn.step_forward`, `cache = (x_t, h_prev, s, dphi_a, alpha)` where `s` is the new
# context $s_t$ and `dphi_a` $=\sigma'(a_t)$, and `dstate = (dh, ds_next)`. Return
# `(dx_t, (dh_prev, ds_prev), dparams)` with `dparams` holding `A`, `B`, `P`, `R`, `b`.
#
# The check compares every gradient with the reference, then isolates the paths
# by zeroing everything but one: `dh = 0` leaves only the error carried in on the
# context, `ds_next = 0` only the error that reaches the context from the hidden layer
# through $P$, and `B = 0` only the input's direct path. It names the quantity
# whose error explains what is wrong, then runs your step inside the library's
# BPTT over a sequence against finite differences.

# %%
def scrn_step_backward(params, cache, dstate):
    """Backward of one SCRN step.

    cache  = (x_t (B, D), h_prev (B, H), s (B, H) the new context s_t, dphi_a (B, H) = σ'(a_t), alpha)
    dstate = (dh (B, H), ds_next (B, H)): the errors arriving at h_t and at s_t
    returns (dx_t (B, D), (dh_prev (B, H), ds_prev (B, H)),
             {"A": (H, D), "B": (H, D), "P": (H, H), "R": (H, H), "b": (H,)})
    """
    # BEGIN SOLUTION 2.1
    x_t, h_prev, s, dphi_a, alpha = cache
    dh, ds_next = dstate
    da = dh * dphi_a                              # h = σ(a)
    ds = ds_next + da @ params["P"]               # s_t feeds a_t (through P) and s_{t+1}
    dparams = {
        "A": da.T @ x_t,                          # a = s Pᵀ + x Aᵀ + h_prev Rᵀ + b
        "P": da.T @ s,
        "R": da.T @ h_prev,
        "b": da.sum(axis=0),
        "B": (1 - alpha) * (ds.T @ x_t),          # s = (1 − α) x Bᵀ + α s_prev
    }
    dx_t = da @ params["A"] + (1 - alpha) * (ds @ params["B"])
    dh_prev = da @ params["R"]
    ds_prev = alpha * ds
    return dx_t, (dh_prev, ds_prev), dparams
    # END SOLUTION


# %%
check("2.1", scrn_step_backward)

# %% [markdown]
# ## 2.4 Checking the SCRN, and the paper's read-out
#
# The library's SCRN passes a finite-difference check over a sequence, with every
# parameter random (the bias too) and a random initial state, in both
# nonlinearities; and RTRL, carrying the influence of every parameter forward in
# time, reproduces BPTT to rounding error. The SCRN's RTRL Jacobian has the block
# structure of Section 2.2: the context block is the constant $\alpha I$, the easy part.

# %%
def random_like(params, rng, scale=0.6):
    """Fresh random values for every parameter, biases included."""
    return {k: scale * rng.standard_normal(v.shape) for k, v in params.items()}


rng = np.random.default_rng(1)
for opts in ({"alpha": 0.95, "nonlinearity": "sigmoid"}, {"alpha": 0.7, "nonlinearity": "tanh"}):
    p = random_like(rb.init_params("scrn", 3, 4), rng)
    x_small = rng.standard_normal((5, 2, 3))
    state0 = (0.5 * rng.standard_normal((2, 4)), 0.5 * rng.standard_normal((2, 4)))
    report = rb.gradcheck.check_architecture("scrn", p, x_small, state0, **opts)
    report.assert_ok()
    dy = rng.standard_normal((5, 2, 4))
    _, _, cache = rb.forward("scrn", p, x_small, state0, **opts)
    g_bptt = rb.backward("scrn", p, cache, dy)
    g_rtrl = rb.rtrl("scrn", p, x_small, dy, state0, **opts)
    print(f"{opts}: finite differences worst {max(e.raw_error for e in report.entries):.1e}; "
          f"RTRL vs BPTT {max(np.abs(g_rtrl[k] - g_bptt[k]).max() for k in p):.1e}")
print(report)

# %% [markdown]
# The paper's output layer reads both layers, $y_t = f(h_t U^\top + s_t V^\top)$. The cell's
# output is $h$ only, so a read-out that wants the context takes the whole context
# sequence from the cache (`scrn.context_sequence`) and sends the error it gets back
# through `scrn.context_backward`, a short linear recursion of its own
# ($\delta_t = ds_t + \alpha\,\delta_{t+1}$, $dB \mathrel{+}= (1-\alpha)\,\delta_t^\top x_t$). Gradients of a sum
# add up, so the total is `backward` on the error at $h$ plus `context_backward` on the
# error at $s$ — checked here against finite differences for
# $L = \langle G_h, h \rangle + \langle G_s, s \rangle$ over the whole sequence.

# %%
p = random_like(rb.init_params("scrn", 3, 4), rng)
x_small = rng.standard_normal((6, 2, 3))


def both_layers(inputs):
    """(h_0 … h_{T-1}, s_0 … s_{T-1}): what the paper's output layer reads."""
    y, _, c = rb.forward("scrn", {k: inputs[k] for k in p}, inputs["x"], alpha=0.9)
    return y, scrn.context_sequence(c)


def both_layers_grad(inputs, upstream):
    G_h, G_s = upstream
    params_ = {k: inputs[k] for k in p}
    _, _, c = rb.forward("scrn", params_, inputs["x"], alpha=0.9)
    g = rb.backward("scrn", params_, c, G_h)
    g_ctx = scrn.context_backward(params_, c, G_s)
    out = {k: g[k] for k in p}
    out["B"] = out["B"] + g_ctx["B"]
    out["x"] = g["x"] + g_ctx["x"]
    return out


print(rb.gradcheck.check_function(both_layers, {**p, "x": x_small}, both_layers_grad, seed=2).assert_ok())

# %% [markdown]
# ## 2.5 Leaky units: a differential equation with a clock per neuron
#
# A neuron in continuous time is often modelled as a leaky integrator: left alone
# its activity $h$ relaxes towards its drive $\varphi(a)$ with a time constant $\tau$,
#
# $$\tau\, \frac{dh}{dt} = -h + \varphi(a(t)), \qquad a = x W_{ih}^\top + h W_{hh}^\top + b .$$
#
# One forward-Euler step of length $\Delta t = 1$ gives
# $h_t = h_{t-1} + \tfrac{1}{\tau}\big(\varphi(a_t) - h_{t-1}\big)$, that is
#
# $$h_t = \Big(1 - \frac{1}{\tau}\Big) \odot h_{t-1} + \frac{1}{\tau} \odot \varphi(a_t),
#   \qquad a_t = x_t W_{ih}^\top + h_{t-1} W_{hh}^\top + b,$$
#
# with one $\tau_i \ge 1$ per unit (the vector `τ` of shape $(H,)$, broadcast over the
# batch). With $\tau = 1$ it is the Elman cell of Chapter 1; with a large $\tau_i$ unit $i$
# keeps most of its value and moves only slowly towards its new drive. The paper
# trains $\tau$ together with the weights, starting from $\tau = 1 + \mathcal U(0, 1)$, with
# leaky-ReLU units $\varphi(a) = \max(a, 0.01\,a)$. To keep $\tau \ge 1$ under any optimiser step,
# the library trains $\rho$ with
#
# $$\tau = 1 + \operatorname{softplus}(\rho) = 1 + \log(1 + e^{\rho}), \qquad \frac{d\tau}{d\rho} = \operatorname{sigmoid}(\rho)$$
#
# (`tau_param="softplus"`, the default; `tau_param="direct"` trains $\tau$ itself, as the
# paper does, and `leaky.clip_tau` projects it back onto $\tau \ge 1$ after each step).

# %%
print(inspect.getsource(leaky.time_constants))
print(inspect.getsource(leaky.step_forward))

# %% [markdown]
# With $W_{hh} = 0$ and no input after a pulse, a unit decays as $(1 - 1/\tau)^t$, the
# discrete version of the ODE's $e^{-t/\tau}$. The two agree for large $\tau$ and part
# ways for small $\tau$ — with $\tau = 1$ the Euler step forgets everything at once,
# where the ODE would still remember $e^{-1}$ of the pulse one time unit later. The
# unit's memory in steps is $-1/\log(1 - 1/\tau) \approx \tau - \tfrac12$.
#
# Note also that **the SCRN context is a leaky unit**: linear, with
# $W_{hh} = 0$ and a fixed $\tau = 1/(1 - \alpha)$ — the paper's $\alpha = 0.95$ is $\tau = 20$.
# The leaky network makes $\tau$ trainable, per unit, and keeps the nonlinearity and
# the recurrent weights inside the leak.

# %%
T_imp = pick(full=80, small=40)
fig, ax = plt.subplots(figsize=(7, 4))
t = np.arange(T_imp)
for i, tau in enumerate((1.0, 2.0, 5.0, 20.0)):
    p_imp = {"W_ih": np.ones((1, 1)), "W_hh": np.zeros((1, 1)), "b": np.zeros(1), "tau": np.array([tau])}
    x_imp = np.zeros((T_imp, 1, 1))
    x_imp[0] = 1.0                                                # drive the unit once, at t = 0
    y_imp, _, _ = rb.forward("leaky", p_imp, x_imp, tau_param="direct")
    ax.semilogy(t, y_imp[:, 0, 0] / y_imp[0, 0, 0] + 1e-30, color=f"C{i}", label=f"τ = {tau:g}: (1 − 1/τ)^t")
    ax.semilogy(t, np.exp(-t / tau), color=f"C{i}", ls=":", lw=1)
ax.set_ylim(1e-6, 1.5)
ax.set(xlabel="steps after the pulse", ylabel="h_t / h_0",
       title="Impulse response of a leaky unit (dotted: the ODE's e^(−t/τ))")
ax.grid(alpha=0.3)
ax.legend()
plt.show()

p_one = rb.init_params("leaky", 3, 5, seed=0, tau_param="direct")
p_one["tau"][:] = 1.0
x_one = np.random.default_rng(0).standard_normal((7, 2, 3))
y_leaky, _, _ = rb.forward("leaky", p_one, x_one, tau_param="direct", nonlinearity="tanh")
y_elman, _, _ = rb.forward("rnn", {k: p_one[k] for k in ("W_ih", "W_hh", "b")}, x_one, nonlinearity="tanh")
print("τ = 1 is the Elman cell: largest difference", np.abs(y_leaky - y_elman).max())

# %% [markdown]
# The Jacobian of one step shows where the long memory comes from:
#
# $$\frac{\partial h_t}{\partial h_{t-1}} = \operatorname{diag}\Big(1 - \frac{1}{\tau}\Big)
#   + \operatorname{diag}\Big(\frac{\varphi'(a_t)}{\tau}\Big) W_{hh} .$$
#
# The first term is the **leak**: a diagonal close to the identity for large $\tau$,
# which neither saturates nor depends on the weights. The second is the Elman
# Jacobian of Chapter 1 damped by $1/\tau$. A network can hold information for long
# either by giving some units a large $\tau$ or by shaping $W_{hh}$ so that the whole
# product stays near 1 — the two mechanisms the curriculum experiment below tells apart.
#
# ## 2.6 The backward pass through the time constant
#
# Write $\kappa = 1/\tau$ and $f = \varphi(a_t)$, so that $h_t = (1 - \kappa) \odot h_{t-1} + \kappa \odot f$.
# Given `dh` $=\partial L/\partial h_t$:
#
# | forward | backward |
# |---|---|
# | $h = (1-\kappa) h_{t-1} + \kappa f$ | $df = dh \odot \kappa$, $\;dh_{t-1} \mathrel{+}= dh \odot (1 - \kappa)$ (the leak), $\;d\kappa = \sum_{\text{batch}} dh \odot (f - h_{t-1})$ |
# | $f = \varphi(a)$ | $da = df \odot \varphi'(a)$ |
# | $a = x_t W_{ih}^\top + h_{t-1} W_{hh}^\top + b$ | $dW_{ih} = da^\top x_t$, $dW_{hh} = da^\top h_{t-1}$, $db = \sum_{\text{batch}} da$, $dx_t = da\, W_{ih}$, $dh_{t-1} \mathrel{+}= da\, W_{hh}$ |
# | $\kappa = 1/\tau$ | $d\tau = -d\kappa / \tau^2$ |
# | $\tau = 1 + \operatorname{softplus}(\rho)$ | $d\rho = d\tau \odot \operatorname{sigmoid}(\rho)$ |
#
# Two things to notice. $\tau$ sits in *both* terms of the update — in the leak
# $1 - \kappa$ and in the input share $\kappa$ — so its gradient contains the difference
# $f - h_{t-1}$: a unit's time constant is pushed only where its drive and its
# current value disagree. And $\tau$ is one number per unit shared by every row of
# the batch (and every step), so $d\kappa$ is summed over the batch, like a bias.

# %% [markdown]
# ### Exercise 2.2 — the leaky step backward, time constants included
#
# Write `leaky_step_backward(params, cache, dstate)` for the cache of
# `leaky.step_forward`, `cache = (x_t, h_prev, f, dphi_a, tau, dtau_dparam, tau_param)`,
# where `f` $=\varphi(a_t)$, `dphi_a` $=\varphi'(a_t)$, `tau` is $\tau$ $(H,)$ and `dtau_dparam`
# is $d\tau/d\rho = \operatorname{sigmoid}(\rho)$ (or 1 when `tau_param == "direct"`). With
# `dstate = (dh,)`, return `(dx_t, (dh_prev,), dparams)` with `dparams` holding `W_ih`,
# `W_hh`, `b` and `rho` (`tau` instead of `rho` when `tau_param == "direct"`).
#
# The check separates the terms: with $W_{hh} = 0$ (and the same cache) `dh_prev` is
# the leak term alone; the difference is the recurrent term; and the same step
# with `tau_param="direct"` gives $d\tau$ without the softplus chain factor, so that a
# mistake in that factor is told apart from a mistake in $d\tau$ itself.

# %%
def leaky_step_backward(params, cache, dstate):
    """Backward of one leaky step.

    cache  = (x_t (B, D), h_prev (B, H), f (B, H) = φ(a_t), dphi_a (B, H) = φ'(a_t),
              tau (H,), dtau_dparam (H,) = dτ/dρ, tau_param "softplus" or "direct")
    dstate = (dh (B, H),)
    returns (dx_t (B, D), (dh_prev (B, H),), {"W_ih": (H, D), "W_hh": (H, H), "b": (H,), "rho" or "tau": (H,)})
    """
    # BEGIN SOLUTION 2.2
    x_t, h_prev, f, dphi_a, tau, dtau_dparam, tau_param = cache
    (dh,) = dstate
    da = dh / tau * dphi_a                                  # h = (1 − 1/τ) h_prev + φ(a)/τ
    dtau = -(dh * (f - h_prev)).sum(axis=0) / tau ** 2      # dκ = Σ dh ⊙ (φ(a) − h_prev), κ = 1/τ
    dparams = {
        "W_ih": da.T @ x_t,                                 # a = x W_ihᵀ + h_prev W_hhᵀ + b
        "W_hh": da.T @ h_prev,
        "b": da.sum(axis=0),
    }
    if tau_param == "softplus":
        dparams["rho"] = dtau * dtau_dparam                 # τ = 1 + softplus(ρ): dτ/dρ = sigmoid(ρ)
    else:
        dparams["tau"] = dtau
    dx_t = da @ params["W_ih"]
    dh_prev = dh * (1 - 1 / tau) + da @ params["W_hh"]     # the leak, and the path through a
    return dx_t, (dh_prev,), dparams
    # END SOLUTION


# %%
check("2.2", leaky_step_backward)

# %% [markdown]
# ## 2.7 RTRL for the leaky unit: the time constants enter through a diagonal
#
# Real-time recurrent learning (Chapter 1) carries $M_t = \partial h_t / \partial\theta$ forward:
#
# $$M_t = J_t\, M_{t-1} + \frac{\partial h_t}{\partial \theta}\Big|_{\text{immediate}}, \qquad
#   J_t = \operatorname{diag}\Big(1 - \frac1\tau\Big) + \operatorname{diag}(g_t)\, W_{hh}, \qquad g_t = \frac{\varphi'(a_t)}{\tau},$$
#
# with the immediate terms ($\delta_{ik}$ is 1 when $i = k$)
#
# $$\frac{\partial h_i}{\partial W_{ih}[k, j]} = \delta_{ik}\, g_i\, x_t[j], \quad
#   \frac{\partial h_i}{\partial W_{hh}[k, j]} = \delta_{ik}\, g_i\, h_{t-1}[j], \quad
#   \frac{\partial h_i}{\partial b_k} = \delta_{ik}\, g_i, \quad
#   \frac{\partial h_i}{\partial \rho_k} = \delta_{ik}\, \frac{h_{t-1}[i] - \varphi(a_i)}{\tau_i^2}\, \operatorname{sigmoid}(\rho_i).$$
#
# $\rho_k$ acts on unit $k$ only, so its immediate term is **diagonal**. Per sample
# the influence of the $H$ time constants is an $H \times H$ matrix, against $H^3$ for
# $W_{hh}$. And if the recurrence itself is element-wise ($W_{hh} = 0$, or diagonal),
# $J_t$ is diagonal too and $M_t[\rho]$ stays diagonal forever: $H$ numbers per sample,
# updated in $O(H)$ per step — exact RTRL as cheap as the forward pass. That is the
# property the element-wise linear recurrences of Part V build on.

# %% [markdown]
# ### Exercise 2.3 — the leaky unit's influence update
#
# Write `leaky_rtrl_step(params, x_t, h_prev, M_prev, nonlinearity="leaky_relu")` for
# `tau_param="softplus"` (parameters `W_ih`, `W_hh`, `b`, `rho`). Return `(h, M)` with
# `M = {"W_ih": (B, H, H, D), "W_hh": (B, H, H, H), "b": (B, H, H), "rho": (B, H, H)}`, where
# `M[k][b, i, ...]` $=\partial h_t[b, i]/\partial\theta_k[\dots]$. Support `nonlinearity` `"tanh"` and
# `"leaky_relu"` (slope 0.01 below zero). The check splits your answer into the
# immediate term (`M_prev = 0`), the leak part of the carried term ($W_{hh} = 0$) and
# its recurrent part, then accumulates $dL/d\theta \mathrel{+}= dy_t \cdot M_t$ over a sequence
# and compares it with BPTT.

# %%
def leaky_rtrl_step(params, x_t, h_prev, M_prev, nonlinearity="leaky_relu"):
    """One step of exact RTRL for the leaky unit with τ = 1 + softplus(ρ).

    x_t (B, D), h_prev (B, H),
    M_prev {"W_ih": (B, H, H, D), "W_hh": (B, H, H, H), "b": (B, H, H), "rho": (B, H, H)}
    returns (h (B, H), M) with M[k] = ∂h_t/∂θ_k, the same shapes as M_prev
    """
    # BEGIN SOLUTION 2.3
    rho = params["rho"]
    tau = 1 + np.logaddexp(0, rho)                # τ = 1 + softplus(ρ)
    dtau_drho = 1 / (1 + np.exp(-rho))            # sigmoid(ρ)
    a = x_t @ params["W_ih"].T + h_prev @ params["W_hh"].T + params["b"]
    if nonlinearity == "tanh":
        f = np.tanh(a)
        dphi = 1 - f * f
    elif nonlinearity == "leaky_relu":
        f = np.where(a > 0, a, 0.01 * a)
        dphi = np.where(a > 0, 1.0, 0.01)
    else:
        raise ValueError(f"nonlinearity must be 'tanh' or 'leaky_relu', got {nonlinearity!r}")
    h = (1 - 1 / tau) * h_prev + f / tau
    g = dphi / tau                                # ∂h_i/∂a_i
    eye = np.eye(h.shape[1])
    J = (1 - 1 / tau)[None, :, None] * eye + g[:, :, None] * params["W_hh"]     # (B, H, H)
    immediate = {
        "W_ih": g[:, :, None, None] * eye[None, :, :, None] * x_t[:, None, None, :],
        "W_hh": g[:, :, None, None] * eye[None, :, :, None] * h_prev[:, None, None, :],
        "b": g[:, :, None] * eye,
        "rho": ((h_prev - f) / tau ** 2 * dtau_drho)[:, :, None] * eye,        # diagonal: ρ_k moves unit k only
    }
    M = {k: np.einsum("bij,bj...->bi...", J, M_prev[k]) + immediate[k] for k in M_prev}
    return h, M
    # END SOLUTION


# %%
check("2.3", leaky_rtrl_step)

# %% [markdown]
# The library's leaky cell passes the same checks as the SCRN — finite differences
# with every parameter random, in both parameterisations of $\tau$, and RTRL equal to
# BPTT. The last lines run RTRL by hand with the library's per-step Jacobians on
# an element-wise network ($W_{hh} = 0$) and confirm that the influence of the time
# constants never leaves the diagonal.

# %%
rng = np.random.default_rng(2)
for opts in ({"nonlinearity": "leaky_relu", "tau_param": "softplus"}, {"nonlinearity": "tanh", "tau_param": "direct"}):
    p = random_like(rb.init_params("leaky", 3, 4, **opts), rng)
    if "tau" in p:
        p["tau"] = rng.uniform(1.2, 3.0, 4)                       # τ ≥ 1 when trained directly
    x_small = rng.standard_normal((5, 2, 3))
    h0 = (0.5 * rng.standard_normal((2, 4)),)
    report = rb.gradcheck.check_architecture("leaky", p, x_small, h0, **opts)
    report.assert_ok()
    dy = rng.standard_normal((5, 2, 4))
    _, _, cache = rb.forward("leaky", p, x_small, h0, **opts)
    g_bptt, g_rtrl = rb.backward("leaky", p, cache, dy), rb.rtrl("leaky", p, x_small, dy, h0, **opts)
    print(f"{opts}: finite differences worst {max(e.raw_error for e in report.entries):.1e}; "
          f"RTRL vs BPTT {max(np.abs(g_rtrl[k] - g_bptt[k]).max() for k in p):.1e}")

p_diag = random_like(rb.init_params("leaky", 3, 6), rng)
p_diag["W_hh"][:] = 0.0                                           # an element-wise recurrence
h_t, M_rho = (0.5 * rng.standard_normal((2, 6)),), np.zeros((2, 6, 6))
for x_t in rng.standard_normal((10, 2, 3)):
    h_t, J_state, _, J_params = leaky.step_jacobians(p_diag, x_t, h_t)
    M_rho = np.einsum("bij,bjk->bik", J_state, M_rho) + J_params["rho"]
off_diagonal = M_rho - np.einsum("bii->bi", M_rho)[:, :, None] * np.eye(6)
print("W_hh = 0: largest off-diagonal entry of ∂h_T/∂ρ after 10 steps:", np.abs(off_diagonal).max())

# %% [markdown]
# ## 2.8 Timing tasks and two curricula
#
# Khajehabdollahi et al. train leaky networks on two tasks whose answer lies $N$
# steps back in a stream of random bits $u_t \in \{0, 1\}$:
#
# * **N-parity**: the parity of the last $N$ bits, $(u_{t-N+1} + \dots + u_t) \bmod 2$. Every
#   one of the $N$ bits matters, and flipping any one flips the answer: the network
#   must hold a running XOR over a window of $N$ steps.
# * **N-delayed match-to-sample (N-DMS)**: is the bit now the same as the bit $N$
#   steps ago, $[u_t = u_{t-N}]$? Only two bits matter, but one of them must be held
#   for exactly $N$ steps.
#
# Each sequence is scored at its last step only, with lengths drawn from
# $[N + 2, 4N + 2)$ so that a network cannot count from the start
# (`rnnbook.data.parity_task`, `dms_task`). Training straight on a large $N$ fails, so
# the paper grows $N$ during training, in one of two ways:
#
# * **single-N** (`SingleNCurriculum`): one read-out head, trained on the current $N$;
#   when its accuracy passes 98 %, $N$ grows by one and the same head is trained on
#   the new $N$ (the old $N$ are no longer asked for);
# * **multi-N** (`MultiNCurriculum`): one head per $N' = 2, \dots, N$, all trained together
#   on the same stream (the loss is the sum over heads); a head for $N + 1$ is added
#   when the newest head and the mean over heads both pass 98 %.
#
# Here is one stream, with its targets for $N = 3$ at every step (the tasks score
# only the last one):

# %%
from rnnbook.data import MultiNCurriculum, SingleNCurriculum, dms_targets, parity_targets
from rnnbook.data.timing_tasks import random_bits

bits = random_bits(1, 16, seed=4)
print("bits u_t        ", "".join(map(str, bits[:, 0])))
print("3-parity target ", "".join("." if m == 0 else str(v)
                                  for v, m in zip(*[a[:, 0] for a in parity_targets(bits, 3, readout="every")])))
print("3-DMS target    ", "".join("." if m == 0 else str(v)
                                  for v, m in zip(*[a[:, 0] for a in dms_targets(bits, 3, readout="every")])))

# %% [markdown]
# Both curricula plug into the training loop of Chapter 1 (`rnnbook.train.train`):
# `cur.step_fn` draws a batch for the current $N$ and returns the loss and gradients,
# `cur.callback` evaluates on fresh sequences every 25 steps and grows $N$. The core is
# the leaky network with leaky-ReLU units and trainable $\tau = 1 + \operatorname{softplus}(\rho)$,
# trained with Adam and clipping, identical initial parameters for both curricula.
# We train each curriculum on each task for the same number of steps.

# %%
from rnnbook.optim import Adam
from rnnbook.train import train

hidden_cur, steps_cur, batch_cur = pick(full=(32, 3000, 32), small=(16, 150, 16))
eval_every = 25


def run_curriculum(kind, task, seed=0):
    cls = SingleNCurriculum if kind == "single" else MultiNCurriculum
    cur = cls(task=task, cell="leaky", hidden_size=hidden_cur, batch_size=batch_cur,
              eval_size=pick(full=512, small=128), seed=seed)
    params = cur.init_params(seed=seed)
    tau_start = leaky.time_constants({"rho": params["core.rho"].copy()})[0]
    hist = train(cur.step_fn, params, Adam(1e-2), steps_cur, clip_norm=2.0, progress=False,
                 callback=cur.callback, callback_every=eval_every)
    return {"cur": cur, "params": params, "hist": hist, "tau_start": tau_start,
            "tau_end": leaky.time_constants({"rho": params["core.rho"]})[0]}


runs = {(task, kind): run_curriculum(kind, task) for task in ("parity", "dms") for kind in ("single", "multi")}
for (task, kind), r in runs.items():
    print(f"{task:>6} {kind:>6}-N: largest N passed {r['cur'].solved}, now training N = {r['cur'].n} "
          f"({r['hist'].seconds:.1f} s)")

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
for ax, task in zip(axes, ("parity", "dms")):
    for i, kind in enumerate(("single", "multi")):
        log = runs[task, kind]["cur"].log
        ax.step([0] + [r.step + 1 for r in log], [2] + [max(r.ns) + r.advanced for r in log], where="post",
                color=f"C{i}", lw=3 - 1.5 * i, label=f"{kind}-N")
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.set(xlabel="training step", title=f"{'N-parity' if task == 'parity' else 'N-DMS'}: the N being trained")
    ax.grid(alpha=0.3)
    ax.legend()
axes[0].set_ylabel("N")
plt.show()

# %% [markdown]
# The multi-N curriculum gets further in the same number of steps, on both tasks,
# although each of its steps also has to keep every earlier head right. At the full
# size (seed 0, 3000 steps, 32 units) we measured: largest $N$ passed 6 (single-N)
# against 13 (multi-N) on parity, 10 against 13 on DMS; the small CI run only shows
# the first steps. The paper reports that the multi-head curriculum trains faster,
# with larger networks trained far longer, to much larger $N$.
#
# What does the single head still know about the $N$ it passed on the way? The
# single-N network is now asked for every earlier $N$ (`cur.evaluate(params, ns=…)`),
# next to the accuracy of each head of the multi-N network.

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
for ax, task in zip(axes, ("parity", "dms")):
    single, multi = runs[task, "single"], runs[task, "multi"]
    acc_single = single["cur"].evaluate(single["params"], ns=range(2, single["cur"].n + 1))
    acc_multi = multi["cur"].evaluate(multi["params"])
    ax.plot(list(acc_single), list(acc_single.values()), "o-", label="single-N: the one head, asked for each N")
    ax.plot(list(acc_multi), list(acc_multi.values()), "s-", label="multi-N: the head for each N")
    ax.axhline(0.5, color="k", ls=":", lw=1, label="chance")
    ax.set(xlabel="N", title=f"{'N-parity' if task == 'parity' else 'N-DMS'} after training")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    print(f"{task:>6}: single head on N = 2…{single['cur'].n}:",
          " ".join(f"{v:.2f}" for v in acc_single.values()))
axes[0].set_ylabel("accuracy")
axes[0].set_ylim(0.0, 1.05)
plt.show()

# %% [markdown]
# The single head is at chance, or close to it, on every $N$ it has passed (at the
# full size between 0.44 and 0.57 on every earlier $N$ of either task); only the $N$ it
# is learning now can be above chance. It does not know a smaller $N$ any more — not
# even the $N - 1$ it passed shortly before. This is *catastrophic forgetting*,
# and it is not only the read-out that has moved on: a fresh linear read-out
# trained on the frozen network recovers little of the old answers (Exercise 2.6),
# so the recurrent state itself no longer holds them in a readable form. The multi-N network keeps every head it has
# passed near 100 % (only the newest head, still being learned, is lower), because
# it is trained to, and in doing so it builds a state that holds the last $N$ bits
# in a form from which every shorter window can be read.
#
# ## 2.9 Where the timescales live
#
# The time constants started at $1 + \mathcal U(0.05, 1)$ in both curricula (same seed).
# Where did training take them?

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), sharey=True)
for ax, task in zip(axes, ("parity", "dms")):
    start = runs[task, "single"]["tau_start"]
    top = max(max(r["tau_end"].max() for r in runs.values()), start.max())
    bins = np.linspace(1, top + 0.05, 24)
    ax.hist(start, bins=bins, color="0.7", label=f"start (mean {start.mean():.2f})")
    for i, kind in enumerate(("single", "multi")):
        tau_end = runs[task, kind]["tau_end"]
        ax.hist(tau_end, bins=bins, histtype="step", lw=2, color=f"C{i}",
                label=f"{kind}-N, N = {runs[task, kind]['cur'].n} (mean {tau_end.mean():.2f}, max {tau_end.max():.1f})")
    ax.set(xlabel="τ (steps)", title=f"{'N-parity' if task == 'parity' else 'N-DMS'}: learned time constants")
    ax.legend(fontsize=8)
axes[0].set_ylabel("units")
plt.show()

# %% [markdown]
# At the full size the multi-N networks pull most time constants down to within a
# few percent of 1 (mean 1.16 on both tasks, from 1.45 at the start, with a
# handful of slow units left), although they hold the longer memories. The
# single-N networks keep a broad spread: mean 1.32 on parity and 1.68 on DMS —
# above the starting value — with units up to $\tau \approx 3.5$. That is the paper's
# distinction at a small scale: a network trained on one $N$ at a time leans on
# *single-neuron timescales*, slow units that hold a bit for $N$ steps, while a
# network that must answer for every $N$ at once keeps $\tau$ small and builds its
# memory from the *recurrent weights* — fast units whose interactions pass
# information along, which serves every $N$ at once. (The paper also finds the
# multi-head networks more stable under ablations and perturbations, and better at
# generalising beyond the $N$ they were trained on.) With larger networks trained to
# much larger $N$, the paper sees the single-N time constants grow with $N$ far more
# clearly than a 32-unit network trained to $N \approx 10$ can show; Exercise 2.5 asks
# why a single slow unit is a poor memory for a *precise* delay anyway.

# %% [markdown]
# ## 2.10 Swapping the backend
#
# The same two cells on every backend this machine can run
# (`rb.available_backends()`), each row checked against the NumPy reference. The
# compiled backends do not have these two cells yet: where one is installed, its
# row says so, and the table fills in as the cells are added.

# %%
T_t, B_t, D_t, H_t = pick(full=(100, 32, 64, 256), small=(10, 4, 8, 16))
display(backend_timings("scrn", D_t, H_t, T_t, B_t, alpha=0.95, repeats=pick(full=5, small=2)))
display(backend_timings("leaky", D_t, H_t, T_t, B_t, nonlinearity="leaky_relu", repeats=pick(full=5, small=2)))

# %% [markdown]
# ## Exercises
#
# ### Exercise 2.1 — the SCRN step backward (graded, above)
# ### Exercise 2.2 — the leaky step backward, time constants included (graded, above)
# ### Exercise 2.3 — the leaky unit's RTRL update (graded, above)
#
# ### Exercise 2.4 — the context is a leaky unit
# Show that the SCRN context $s_t$ is the state of a layer of *linear* leaky units
# with $W_{hh} = 0$, input weights `B`, no bias and $\tau = 1/(1-\alpha)$. Confirm it
# numerically: run that recursion by hand and compare with `scrn.context_sequence`.
# What does the SCRN gain by fixing $\tau$ rather than learning it, and what does it lose?
#
# ### Exercise 2.5 — how long does a leaky unit remember?
# A unit with $W_{hh} = 0$ and time constant $\tau$ receives one pulse. After how many
# steps has its response fallen to 1 % — exactly, and by the ODE's $e^{-t/\tau}$? Which
# $\tau$ keeps 50 % of a pulse after $N = 10$ steps? Now think of N-DMS: the network must
# report the bit from *exactly* $N$ steps ago, not the bits from $N - 1$ or $N + 1$ steps
# ago. Why is a single slow unit a blurred memory of the past, and what can a
# network of fast units with recurrent weights do instead?

#
# ### Exercise 2.6 — is it only the read-out that forgets?
# Freeze the single-N networks of Section 2.8 and, for every earlier $N$, fit a fresh
# linear read-out on their last hidden state (least squares on targets $\pm 1$, plus a
# bias, is enough). Measure its accuracy on new sequences. If a fresh head answered
# the old $N$ well, the forgetting would be the head's alone; what do you find?

# %% tags=["solution"]
alpha_ex = 0.95
p_ex = rb.init_params("scrn", 3, 5, seed=7)
x_ex = np.random.default_rng(8).standard_normal((30, 2, 3))
_, _, c_ex = rb.forward("scrn", p_ex, x_ex, alpha=alpha_ex)
tau_ex = 1 / (1 - alpha_ex)
u = np.zeros((2, 5))
by_hand = []
for x_t in x_ex:
    u = (1 - 1 / tau_ex) * u + (1 / tau_ex) * (x_t @ p_ex["B"].T)     # linear leaky unit, φ = identity
    by_hand.append(u)
print("context vs linear leaky units with τ = 1/(1−α):", np.abs(np.stack(by_hand) - scrn.context_sequence(c_ex)).max())

for tau in (5.0, 20.0, 100.0):
    exact = np.log(0.01) / np.log(1 - 1 / tau)
    print(f"τ = {tau:5g}: 1 % after {exact:6.1f} steps (ODE: τ ln 100 = {tau * np.log(100):6.1f})")
print("50 % after 10 steps needs (1 − 1/τ)^10 = 0.5, τ =", 1 / (1 - 0.5 ** 0.1))

# %% tags=["solution"]
from rnnbook.data import bits_to_inputs


def fresh_head_accuracy(run, n, size=pick(full=1024, small=256)):
    """Accuracy on new sequences of a least-squares linear read-out fitted to the frozen network's last state."""
    cur, params = run["cur"], run["params"]
    core = {k[len("core."):]: v for k, v in params.items() if k.startswith("core.")}
    data = {}
    for split, seed in (("fit", 1), ("test", 2)):
        bits, answers = cur.batch(seed=(99, seed), size=size, ns=[n])
        h, _, _ = rb.forward("leaky", core, bits_to_inputs(bits))
        data[split] = (np.concatenate([h[-1], np.ones((size, 1))], axis=1), answers[n][0][-1])
    X, y = data["fit"]
    w = np.linalg.solve(X.T @ X + 1e-3 * np.eye(X.shape[1]), X.T @ (2.0 * y - 1))
    X_test, y_test = data["test"]
    return float(np.mean((X_test @ w > 0) == (y_test == 1)))


for task in ("parity", "dms"):
    run = runs[task, "single"]
    print(f"{task:>6}: fresh head on the frozen single-N network, N = 2…{run['cur'].n}:",
          " ".join(f"{fresh_head_accuracy(run, n):.2f}" for n in range(2, run["cur"].n + 1)))

# %% [markdown] tags=["solution"]
# **Answer 2.4.** With $\varphi$ the identity, $W_{hh} = 0$, $b = 0$ and $W_{ih} = B$, the leaky
# update reads $u_t = (1 - 1/\tau)\, u_{t-1} + (1/\tau)\, x_t B^\top$, which is the SCRN context
# line with $\alpha = 1 - 1/\tau$. Fixing $\tau$ keeps the Jacobian of the context exactly $\alpha I$
# whatever training does, so the long gradient path cannot be lost; the price is
# that every context unit has the same, hand-chosen timescale and cannot adapt it
# to the task ($\alpha$ becomes a hyperparameter to tune).
#
# **Answer 2.5.** The response decays as $(1 - 1/\tau)^t$, so 1 % is reached after
# $\log 0.01 / \log(1 - 1/\tau)$ steps: 20.6 for $\tau = 5$, 89.8 for $\tau = 20$, 458 for
# $\tau = 100$, close to the ODE's $\tau \ln 100$ (23.0, 92.1, 460.5) once $\tau$ is large.
# Keeping half a pulse for 10 steps needs $\tau \approx 14.9$. But a slow unit keeps
# *every* recent bit with a weight that varies smoothly with its age: after $N$
# steps the bit from $N$ steps ago and its neighbours are mixed with weights
# $(1 - 1/\tau)^{N}$, $(1 - 1/\tau)^{N \pm 1}$ that differ by only a factor $1 - 1/\tau$. Telling
# exactly which bit is which needs either many units with different $\tau$ or a
# recurrent circuit that passes the bit along from unit to unit — a delay line,
# built from the recurrent weights. That is the mechanism the multi-N curriculum
# pushes the network towards.
#
# **Answer 2.6.** At the full size a fresh head recovers the smallest $N$ only in part
# (0.79 and 0.72 for 2- and 3-parity, 0.52–0.74 on the earlier $N$ of DMS) and is near
# chance beyond, far from the 98 % those $N$ once passed. So the forgetting is not the
# head's alone: training on the new $N$ has reshaped the recurrent dynamics, and
# the state no longer carries the old answers in a linearly readable form.
