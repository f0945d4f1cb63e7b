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
# # Chapter 1 — The Elman network: backpropagation through time, RTRL, and why gradients vanish
#
# A feed-forward network maps one input to one output. Text, speech, prices and
# sensor readings arrive as *sequences*, and what a sequence means at step $t$
# depends on what came before. The Elman network (Elman, 1990) is the smallest
# model that carries the past along: a hidden state $h_t$ that is computed from
# the current input *and the previous state*, with the same weights at every step.
#
# This chapter builds the whole toolkit on that one cell:
#
# 1. the cell and its forward pass, in the code's own symbols;
# 2. backpropagation through time (BPTT), derived step by step — **Exercise 1.1**;
# 3. a numerical gradient check, the habit every later chapter relies on;
# 4. truncated BPTT, and real-time recurrent learning (RTRL), which computes the
#    same gradient forward in time — **Exercise 1.2**;
# 5. why gradients vanish or explode over long lags (Jacobian products, the
#    spectral radius), and gradient clipping — **Exercise 1.3**;
# 6. a character-level language model trained on Shakespeare, and the same code
#    on every backend installed on this machine.
#
# Every number below is computed when the notebook runs. With `RNNBOOK_SMALL=1`
# (what CI does) the sizes shrink so that the chapter runs in seconds; the prose
# describes the full-size run.

# %%
import inspect
import warnings
import time

import matplotlib.pyplot as plt
import numpy as np
from IPython.display import display

import rnnbook as rb
from rnnbook.book import SMALL, ImplementMe, check, pick  # noqa: F401 (ImplementMe: the student edition)
from rnnbook.book.timing import backend_timings
from rnnbook.numpy_ref import lstm, rnn

warnings.filterwarnings("ignore", message="IProgress not found")   # tqdm in a kernel without ipywidgets
print(f"small size: {SMALL}; backends usable here: {rb.available_backends()}")

# %% [markdown]
# ## 1.1 The cell
#
# For a batch of $B$ sequences, with input size $D$ and hidden size $H$, one step is
#
# $$a_t = x_t W_{ih}^\top + h_{t-1} W_{hh}^\top + b, \qquad h_t = \varphi(a_t),$$
#
# with $x_t$ of shape $(B, D)$, $h_{t-1}$ and $h_t$ of shape $(B, H)$, and the
# parameters `W_ih` $(H, D)$, `W_hh` $(H, H)$ and `b` $(H,)$ — PyTorch's layout,
# with its two biases folded into one. The nonlinearity $\varphi$ is $\tanh$ or
# ReLU. The output at step $t$ is the state itself, $y_t = h_t$; a read-out layer
# on top turns it into predictions. The sequence is *time-major*: `x` has shape
# $(T, B, D)$.
#
# Here is the reference implementation, exactly as the library runs it. The
# cache it returns holds what the backward pass will need: the input, the previous
# state and $\varphi'(a_t)$, written through the output ($1 - h_t^2$ for tanh,
# $[h_t > 0]$ for ReLU).

# %%
print(inspect.getsource(rnn.step_forward))

# %% [markdown]
# Unrolling the cell over a sequence is a loop over `step_forward`, which
# `rb.forward` does for us. Parameters get PyTorch's initialisation,
# $\mathcal U(-1/\sqrt H, 1/\sqrt H)$ for every entry.

# %%
T, B, D, H = 12, 4, 3, 8
rng = np.random.default_rng(0)
params = rb.init_params("rnn", input_size=D, hidden_size=H, seed=0)
x = rng.standard_normal((T, B, D))
y, (h_T,), cache = rb.forward("rnn", params, x)
print({k: v.shape for k, v in params.items()}, "x", x.shape, "-> y", y.shape, "h_T", h_T.shape)

# %% [markdown]
# ## 1.2 Backpropagation through time
#
# Every gradient in this book is of the scalar
#
# $$L = \sum_t \langle dy_t, h_t\rangle \;(+\; \langle dstate, h_{T-1}\rangle),$$
#
# where `dy` $= \partial L/\partial y$ is whatever the loss above the network sends
# down. Unrolled in time the network is a deep feed-forward graph whose layers
# share their weights, so the chain rule applies as usual, with two twists:
#
# * **the error at a state has two sources.** $h_t$ is an output (it receives
#   $dy_t$) and it feeds step $t+1$. Write $\delta_t = \partial L / \partial h_t$ for the
#   *total* error arriving at $h_t$:
#   $$\delta_t = dy_t + \frac{\partial L}{\partial h_t}\Big|_{\text{through } a_{t+1}}.$$
# * **shared weights sum their gradients.** $W_{hh}$ is used at every step, so
#   $\partial L/\partial W_{hh} = \sum_t (\text{the gradient of step } t)$.
#
# So BPTT is a loop backwards in time: add $dy_t$ to the error carried in from the
# future, run the step backward, carry $\partial L/\partial h_{t-1}$ on. The step
# backward is the chain rule through the two lines of the cell. With
# `dh` $= \delta_t$:
#
# $$da = dh \odot \varphi'(a_t) \qquad (h_t = \varphi(a_t))$$
#
# and, from $a_t = x_t W_{ih}^\top + h_{t-1} W_{hh}^\top + b$ (a matrix product
# $Z = X W^\top$ has $\partial L/\partial W = (\partial L/\partial Z)^\top X$ and
# $\partial L/\partial X = (\partial L/\partial Z)\, W$):
#
# $$dW_{ih} = da^\top x_t, \quad dW_{hh} = da^\top h_{t-1}, \quad db = \textstyle\sum_{\text{batch}} da,
# \quad dx_t = da\, W_{ih}, \quad dh_{t-1} = da\, W_{hh}.$$
#
# A gradient always has the shape of what it differentiates: `dW_ih` is $(H, D)$
# like `W_ih`, `db` is $(H,)$ because every row of the batch uses the same bias.

# %% [markdown]
# ### Exercise 1.1 — the step backward
#
# Write `rnn_step_backward(params, cache, dstate)` for the cache that
# `rnn.step_forward` returns, `cache = (x_t, h_prev, dphi_a)`, and
# `dstate = (dh,)`. Return `(dx_t, (dh_prev,), dparams)` with
# `dparams = {"W_ih": ..., "W_hh": ..., "b": ...}` — the same contract as the
# library, so your function can replace the library's inside its BPTT loop.
#
# The check below compares every output with the reference and says *which*
# term is wrong and how (a sign, a transpose, a missing factor), then runs your
# step inside the library's BPTT over a whole sequence against finite differences.

# %%
def rnn_step_backward(params, cache, dstate):
    """Backward of one Elman step.

    cache  = (x_t (B, D), h_prev (B, H), dphi_a (B, H)) where dphi_a = φ'(a_t)
    dstate = (dh (B, H),), the total error arriving at h_t
    returns (dx_t (B, D), (dh_prev (B, H),), {"W_ih": (H, D), "W_hh": (H, H), "b": (H,)})
    """
    # BEGIN SOLUTION 1.1
    x_t, h_prev, dphi_a = cache
    (dh,) = dstate
    da = dh * dphi_a                        # h = φ(a)
    dparams = {
        "W_ih": da.T @ x_t,                 # a = x_t W_ihᵀ + …
        "W_hh": da.T @ h_prev,              # a = … + h_prev W_hhᵀ + …
        "b": da.sum(axis=0),                # a = … + b, the same b for every row
    }
    dx_t = da @ params["W_ih"]
    dh_prev = da @ params["W_hh"]
    return dx_t, (dh_prev,), dparams
    # END SOLUTION


# %%
check("1.1", rnn_step_backward)

# %% [markdown]
# ## 1.3 Checking gradients numerically
#
# A hand-derived backward pass is only as good as its check. `rnnbook.gradcheck`
# perturbs every entry of every parameter, of the input and of the initial state,
# and compares the analytic gradient with centred finite differences of
# $L = \langle G, f(\theta)\rangle$ for a *random* upstream $G$ (with $G = 1$ a backward
# pass that swaps two outputs can still pass). The relative error per entry is
# $|a - n| / (|a| + |n|)$; float64 and a fourth-order difference put a correct
# gradient near $10^{-8}$ or below, far from the $\sim 1$ of a wrong one (the column
# "beyond η" discounts the rounding noise of the numerical estimate itself, which
# dominates for tiny entries; it is what the check judges).
#
# Two habits matter: **randomise every parameter, biases included** — a zero bias
# hides a mix-up between two terms that differ only by it — and check the
# *sequence*, not only one step, so the carried error $\delta_t$ is exercised.

# %%
def random_like(params, rng, scale=0.6):
    """Fresh random values for every parameter, biases included."""
    return {k: scale * rng.standard_normal(v.shape) for k, v in params.items()}


rng = np.random.default_rng(1)
for nonlinearity in ("tanh", "relu"):
    p = random_like(rb.init_params("rnn", 3, 4), rng)
    x_small = rng.standard_normal((5, 2, 3))
    h0 = (0.5 * rng.standard_normal((2, 4)),)
    report = rb.gradcheck.check_architecture("rnn", p, x_small, h0, nonlinearity=nonlinearity)
    print(f"--- {nonlinearity}: worst relative error {max(e.raw_error for e in report.entries):.1e}")
    print(report)
    report.assert_ok()

# %% [markdown]
# ## 1.4 Truncated BPTT
#
# Full BPTT stores every step of the sequence and walks all of it backwards. On a
# long stream (a book, a year of prices) that is impossible, so training cuts the
# stream into chunks and carries the *state* from one chunk to the next but not
# the *gradient*. Inside a chunk, BPTT($k$) (Williams & Peng, 1990) lets the error
# injected at step $s$ flow back through at most $k$ steps:
#
# $$\frac{\partial L}{\partial \theta}\Big|_{\text{BPTT}(k)} = \sum_s \sum_{t = s-k+1}^{s}
#   \Big(\text{the part of step } t\text{'s gradient caused by } dy_s\Big).$$
#
# It is biased: dependencies longer than $k$ steps do not contribute. How much the
# truncated gradient differs from the full one depends on how fast the error
# decays on its way back — which is the subject of Section 1.6.

# %%
T_trunc = pick(full=60, small=16)
p = rb.init_params("rnn", 3, 16, seed=2)
x_long = np.random.default_rng(2).standard_normal((T_trunc, 4, 3))
_, _, cache_long = rb.forward("rnn", p, x_long)
dy_long = np.random.default_rng(3).standard_normal((T_trunc, 4, 16))
full = rb.backward("rnn", p, cache_long, dy_long)
print(f"{'window k':>9}  relative difference of dW_hh from full BPTT")
for k in (1, 2, 4, 8, 16, T_trunc):
    g = rb.backward("rnn", p, cache_long, dy_long, window=k)
    diff = np.abs(g["W_hh"] - full["W_hh"]).max() / np.abs(full["W_hh"]).max()
    print(f"{k:>9}  {diff:.2e}")

# %% [markdown]
# ## 1.5 Real-time recurrent learning
#
# BPTT needs the whole past before it can compute anything. RTRL (Williams &
# Zipser, 1989) instead carries the *influence* of every parameter on the current
# state forward in time, alongside the state:
#
# $$M_t = \frac{\partial h_t}{\partial \theta} \quad\text{(per sample: } H \times |\theta|\text{)}.$$
#
# Differentiating $h_t = \varphi(x_t W_{ih}^\top + h_{t-1} W_{hh}^\top + b)$ with the
# chain rule gives, with $D_t = \varphi'(a_t)$ (one number per unit),
#
# $$M_t = D_t \odot \Big( W_{hh}\, M_{t-1} + \frac{\partial a_t}{\partial \theta}\Big|_{\text{immediate}} \Big),
#   \qquad M_{-1} = 0,$$
#
# where the product with $W_{hh}$ acts on the unit axis ($\sum_j W_{hh}[i, j]\, M_{t-1}[j, \dots]$)
# and the immediate term is where $\theta$ enters step $t$ directly:
#
# $$\frac{\partial a_i}{\partial W_{ih}[k, j]} = \delta_{ik}\, x_t[j], \qquad
#   \frac{\partial a_i}{\partial W_{hh}[k, j]} = \delta_{ik}\, h_{t-1}[j], \qquad
#   \frac{\partial a_i}{\partial b_k} = \delta_{ik}.$$
#
# The gradient then accumulates online, as soon as the error of a step is known:
# $\partial L/\partial \theta \mathrel{+}= dy_t \cdot M_t$. Nothing is stored about the past
# — but $M_t$ for $W_{hh}$ has $H \cdot H^2$ entries per sample and multiplying it by
# $W_{hh}$ costs $O(H^4)$ per step, against $O(H^2)$ for BPTT. That is why exact
# RTRL is for small networks, and for the element-wise recurrences of later
# chapters where the Jacobian is diagonal.

# %% [markdown]
# ### Exercise 1.2 — the influence update
#
# Write `rnn_rtrl_step(params, x_t, h_prev, M_prev, nonlinearity="tanh")` that
# returns `(h, M)`: the new state and the new influence matrices
# `M = {"W_ih": (B, H, H, D), "W_hh": (B, H, H, H), "b": (B, H, H)}`, where
# `M[k][b, i, ...]` $= \partial h_t[b, i] / \partial \theta_k[\dots]$.
# The check separates the two terms by "zeroing everything but one": with
# `M_prev = 0` only the immediate term survives, and the difference of two calls is
# the carried term $D_t \odot (W_{hh} M_{t-1})$. It then runs your step over a whole
# sequence and compares the accumulated gradient with BPTT.

# %%
def rnn_rtrl_step(params, x_t, h_prev, M_prev, nonlinearity="tanh"):
    """One step of exact RTRL for the Elman cell.

    x_t (B, D), h_prev (B, H), M_prev {"W_ih": (B, H, H, D), "W_hh": (B, H, H, H), "b": (B, H, H)}
    returns (h (B, H), M) with M[k] = ∂h_t/∂θ_k, the same shapes as M_prev
    """
    # BEGIN SOLUTION 1.2
    a = x_t @ params["W_ih"].T + h_prev @ params["W_hh"].T + params["b"]
    if nonlinearity == "tanh":
        h = np.tanh(a)
        D_t = 1 - h * h                               # φ'(a) through the output
    elif nonlinearity == "relu":
        h = np.maximum(a, 0)
        D_t = (a > 0).astype(a.dtype)
    else:
        raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
    eye = np.eye(h.shape[1])
    immediate = {
        "W_ih": eye[None, :, :, None] * x_t[:, None, None, :],      # ∂a_i/∂W_ih[k, j] = δ_ik x_j
        "W_hh": eye[None, :, :, None] * h_prev[:, None, None, :],   # ∂a_i/∂W_hh[k, j] = δ_ik h_prev_j
        "b": np.broadcast_to(eye, (h.shape[0],) + eye.shape),       # ∂a_i/∂b_k = δ_ik
    }
    M = {}
    for name, M_k in M_prev.items():
        carried = np.einsum("ij,bj...->bi...", params["W_hh"], M_k)   # W_hh M_prev on the unit axis
        D_b = D_t.reshape(D_t.shape + (1,) * (M_k.ndim - 2))           # broadcast D over θ's axes
        M[name] = D_b * (carried + immediate[name])
    return h, M
    # END SOLUTION


# %%
check("1.2", rnn_rtrl_step)

# %% [markdown]
# The library's `rb.rtrl` does the same for every cell (through each cell's
# per-step Jacobians) and must agree with BPTT to rounding error — an oracle that
# needs no finite differences. Its cost is another matter:

# %%
p = random_like(rb.init_params("rnn", 3, 6), np.random.default_rng(4))
x_r = np.random.default_rng(5).standard_normal((10, 2, 3))
dy_r = np.random.default_rng(6).standard_normal((10, 2, 6))
_, _, c_r = rb.forward("rnn", p, x_r)
g_bptt, g_rtrl = rb.backward("rnn", p, c_r, dy_r), rb.rtrl("rnn", p, x_r, dy_r)
print("RTRL vs BPTT, largest difference:", max(np.abs(g_rtrl[k] - g_bptt[k]).max() for k in p))

print(f"\n{'H':>4} {'BPTT (ms)':>10} {'RTRL (ms)':>10} {'ratio':>7}")
for H_cost in pick(full=(4, 8, 16, 32), small=(4, 8)):
    p = rb.init_params("rnn", 4, H_cost)
    x_c = np.random.default_rng(7).standard_normal((20, 2, 4))
    dy_c = np.ones((20, 2, H_cost))
    t0 = time.perf_counter()
    rb.backward("rnn", p, rb.forward("rnn", p, x_c)[2], dy_c)
    t1 = time.perf_counter()
    rb.rtrl("rnn", p, x_c, dy_c)
    t2 = time.perf_counter()
    print(f"{H_cost:>4} {1e3 * (t1 - t0):>10.2f} {1e3 * (t2 - t1):>10.2f} {(t2 - t1) / (t1 - t0):>7.0f}")

# %% [markdown]
# ## 1.6 Vanishing and exploding gradients
#
# How much does the loss at the end of a sequence care about the state $k$ steps
# earlier? By the chain rule through $h_{t+1} = \varphi(x_{t+1} W_{ih}^\top + h_t W_{hh}^\top + b)$,
#
# $$\frac{\partial h_T}{\partial h_t} = \prod_{s=t+1}^{T} \operatorname{diag}\big(\varphi'(a_s)\big)\, W_{hh},
# \qquad
# \Big\|\frac{\partial h_T}{\partial h_t}\Big\| \le \big(\gamma\, \sigma_{\max}(W_{hh})\big)^{T-t},$$
#
# where $\gamma$ bounds $|\varphi'|$ ($\gamma = 1$ for tanh and ReLU) and $\sigma_{\max}$ is
# the largest singular value. A product of $T - t$ matrices behaves like a power:
# if the factors shrink vectors the error dies exponentially with the lag (the
# network cannot learn long dependencies), if they stretch them it blows up
# (Bengio et al., 1994; Pascanu et al., 2013). The measurement is direct: send an
# error $g$ into the last state and walk BPTT back by hand, recording
# $\|\partial L / \partial h_t\|$ at every step.

# %%
def error_norms(module, params, x, g, **options):
    """‖∂L/∂h_t‖ (mean over the batch) against the lag T-1-t, for L = <g, h_{T-1}>."""
    _, state, cache = module.forward(params, x, **options)
    delta = (g,) + tuple(np.zeros_like(s) for s in state[1:])      # the error arrives at h_{T-1} only
    norms = []
    for t in reversed(range(x.shape[0])):
        norms.append(np.linalg.norm(delta[0], axis=1).mean())
        _, delta, _ = module.step_backward(params, cache["steps"][t], delta)
    return np.array(norms)                                         # index = lag


T_lag, B_lag, D_lag, H_lag = pick(full=(100, 16, 8, 64), small=(30, 4, 4, 16))
rng = np.random.default_rng(0)
x_lag = rng.standard_normal((T_lag, B_lag, D_lag))
g_lag = rng.standard_normal((B_lag, H_lag))
lstm_open = rb.init_params("lstm", D_lag, H_lag, seed=1)
lstm_open["b"][H_lag:2 * H_lag] = 3.0                             # forget gate f = σ(3 + …) ≈ 0.95
cases = {
    "tanh": (rnn, rb.init_params("rnn", D_lag, H_lag, seed=1), {"nonlinearity": "tanh"}),
    "ReLU": (rnn, rb.init_params("rnn", D_lag, H_lag, seed=1), {"nonlinearity": "relu"}),
    "ReLU, identity init (IRNN)": (rnn, rb.init_params("rnn", D_lag, H_lag, seed=1, init="identity"),
                                   {"nonlinearity": "relu"}),
    "LSTM, random init": (lstm, rb.init_params("lstm", D_lag, H_lag, seed=1), {}),
    "LSTM, forget bias 3": (lstm, lstm_open, {}),
}
fig, ax = plt.subplots(figsize=(7, 4))
for label, (module, p, opts) in cases.items():
    ax.semilogy(error_norms(module, p, x_lag, g_lag, **opts) + 1e-30, label=label)
ax.set_ylim(1e-12, 1e3)
ax.set(xlabel="lag T-1-t (steps back from the loss)", ylabel="‖∂L/∂h_t‖",
       title="How far back does the error reach? (at initialisation)")
ax.grid(alpha=0.3)
ax.legend()
plt.show()

# %% [markdown]
# The tanh and ReLU networks with the usual initialisation lose ten orders of
# magnitude within a few dozen steps: nothing learned by gradient descent can
# connect an output to an input that far back. Two cures keep the product near
# the identity. The IRNN (Le et al., 2015) starts ReLU units from $W_{hh} = I$,
# $b = 0$, so that active units copy their state. The LSTM of Chapter 3 routes
# the error through the cell state $c_t = f_t \odot c_{t-1} + \dots$, whose Jacobian is
# the diagonal $\operatorname{diag}(f_t)$ — the *constant error carousel* — but only
# when the forget gate is open: at a random initialisation $f \approx \sigma(0) = 1/2$
# and the LSTM forgets as fast as the tanh network; a forget-gate bias of 3
# ($f \approx 0.95$) lets the error travel.
#
# The *spectral radius* $\rho(W_{hh})$ (the largest $|\lambda|$) decides between
# vanishing and exploding in the linear regime. Take $W_{hh} = \rho\, Q$ with $Q$
# orthogonal, so every singular value is exactly $\rho$, and keep the inputs small so
# that $\tanh$ starts out nearly linear ($\varphi' \approx 1$). A linear network would
# scale the error by exactly $\rho$ per step: the dashed lines $\rho^{\text{lag}}$.

# %%
Q, _ = np.linalg.qr(np.random.default_rng(3).standard_normal((H_lag, H_lag)))
fig, ax = plt.subplots(figsize=(7, 4))
lags = np.arange(T_lag)
for i, rho in enumerate((0.5, 0.9, 1.0, 1.1, 1.5)):
    p = rb.init_params("rnn", D_lag, H_lag, seed=1)
    p["W_hh"] = rho * Q
    norms = error_norms(rnn, p, 0.1 * x_lag, g_lag, nonlinearity="tanh")
    ax.semilogy(lags, norms + 1e-30, color=f"C{i}", label=f"ρ = {rho}")
    ax.semilogy(lags, norms[0] * rho ** lags, color=f"C{i}", ls="--", lw=0.8)
ax.set_ylim(1e-8, 1e8)
ax.set(xlabel="lag", ylabel="‖∂L/∂h_t‖", title="Spectral radius of W_hh: vanishing (ρ < 1) or exploding (ρ > 1)")
ax.grid(alpha=0.3)
ax.legend()
plt.show()

# %% [markdown]
# Below $\rho = 1$ the error dies geometrically, on the dashed line. Above it the
# error grows — but with $\rho > 1$ the *state* grows too, until the units saturate,
# and a saturated tanh unit has $\varphi' \approx 0$: saturation holds the growth far
# below $\rho^{\text{lag}}$ (nothing holds it for ReLU units). Exploding gradients are
# the easier problem: they come as rare spikes, and a spike can simply be cut.
#
# ## 1.7 Gradient clipping
#
# Clipping by global norm (Pascanu et al., 2013) rescales the whole gradient —
# every array $g_k$ together — when its norm exceeds a threshold $c$:
#
# $$\|g\| = \sqrt{\textstyle\sum_k \sum g_k^2}, \qquad g_k \leftarrow g_k \cdot \min\!\Big(1, \frac{c}{\|g\|}\Big).$$
#
# It keeps the *direction* of the step and only bounds its length. Clipping by
# value, $g \leftarrow \operatorname{clip}(g, -c, c)$ entry by entry, changes the direction.
#
# ### Exercise 1.3 — clipping by global norm
#
# Write `clip_global_norm(grads, max_norm)` returning `(clipped, norm)`: a *new*
# dict of arrays and the global norm before clipping. Leave `grads` unchanged,
# do not scale small gradients up, and mind the all-zero gradient.

# %%
def clip_global_norm(grads, max_norm):
    """Scale every array of ``grads`` by min(1, max_norm / ‖g‖); returns (clipped, ‖g‖)."""
    # BEGIN SOLUTION 1.3
    norm = float(np.sqrt(sum(float(np.sum(g * g)) for g in grads.values())))
    scale = min(1.0, max_norm / norm) if norm > 0 else 1.0
    return {name: g * scale for name, g in grads.items()}, norm
    # END SOLUTION


# %%
check("1.3", clip_global_norm)

# %% [markdown]
# What clipping buys is visible on the *adding task* (Hochreiter & Schmidhuber,
# 1997): two channels per step, a value $u_t \sim \mathcal U(0,1)$ and a marker that is 1
# at two steps; the target is the sum of the two marked values. We train the same
# tanh network twice — $W_{hh}$ orthogonal ($\rho = 1$), SGD with momentum and a
# learning rate on the high side — once without and once with clipping at
# $c = 1$ (the library's `rnnbook.clipping.clip_by_global_norm`, applied by
# `rnnbook.train.train(clip_norm=...)`). Predicting 1 every time scores an MSE of
# about 0.167.

# %%
from rnnbook.data import adding_task
from rnnbook.losses import mse
from rnnbook.model import SequenceModel
from rnnbook.optim import SGD
from rnnbook.train import train

steps_clip = pick(full=400, small=40)


def adding_run(clip_norm, T_add=30, hidden=32, seed=0):
    model = SequenceModel("rnn", hidden_size=hidden, input_size=2, output_size=1)
    p = model.init_params(seed=seed)
    Q_add, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((hidden, hidden)))
    p["core.W_hh"] = Q_add                                       # ρ = 1

    def step_fn(p, step):
        x_add, target = adding_task(32, T=T_add, seed=1000 + step)
        out, _, cache = model.forward(p, x_add)
        loss, dlast = mse(out[-1, :, 0], target)                # only the last step is scored
        dout = np.zeros_like(out)
        dout[-1, :, 0] = dlast
        return loss, model.backward(p, cache, dout)

    return train(step_fn, p, SGD(lr=0.05, momentum=0.9), steps_clip, clip_norm=clip_norm, progress=False)


runs = {"no clipping": adding_run(None), "clipped at ‖g‖ = 1": adding_run(1.0)}
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
for label, hist in runs.items():
    axes[0].semilogy(hist.loss, lw=0.8, label=label)
    axes[1].semilogy(hist.grad_norm, lw=0.8, label=label)
axes[0].axhline(1 / 6, color="k", ls=":", lw=1, label="predict 1 (MSE ≈ 0.167)")
axes[0].set(xlabel="step", ylabel="MSE", title="adding task: loss")
axes[1].set(xlabel="step", ylabel="‖g‖ before clipping", title="gradient norm")
for a in axes:
    a.grid(alpha=0.3)
    a.legend()
plt.show()
for label, hist in runs.items():
    print(f"{label:>20}: largest loss {max(hist.loss):8.2f}, largest ‖g‖ {max(hist.grad_norm):8.1f}")

# %% [markdown]
# Without clipping the rare huge gradient throws the weights far away and the loss
# jumps by orders of magnitude; with clipping the same gradients only set the
# direction of a bounded step.
#
# ## 1.8 A character-level Elman network
#
# Now a real task: predict the next character of Shakespeare. The model is an
# embedding, the recurrent core and a linear read-out (`rnnbook.model.SequenceModel`),
# trained with Adam by *stateful truncated BPTT*: the text is read as $B$ parallel
# streams in chunks of `seq_len` characters, and the final state of one chunk
# starts the next (Section 1.4). The loop is `rnnbook.book.experiments.train_char_model`,
# printed below; later chapters reuse it. We compare tanh and ReLU units, both with the
# usual initialisation. (The IRNN of Section 1.6 does badly here: with $W_{hh} = I$
# and the state carried from chunk to chunk, the activity of ReLU units piles up
# without bound.) A model that knows nothing scores $\log V$ nats per character.

# %%
from rnnbook.book.experiments import train_char_model
from rnnbook.data import CharVocab, load_text

text = load_text(max_chars=pick(full=None, small=20_000))
vocab = CharVocab(text)
ids = vocab.encode(text)
steps_lm, hidden_lm, seq_len, batch = pick(full=(1000, 128, 64, 32), small=(30, 32, 16, 8))
print(f"{len(text):,} characters, {len(vocab)} symbols: chance is log V = {np.log(len(vocab)):.2f} nats/char")
print(inspect.getsource(train_char_model))

# %%
lm_settings = dict(ids=ids, vocab_size=len(vocab), hidden_size=hidden_lm, steps=steps_lm, seq_len=seq_len,
                   batch=batch)
lm_runs = {"tanh": train_char_model("rnn", nonlinearity="tanh", **lm_settings),
           "ReLU": train_char_model("rnn", nonlinearity="relu", **lm_settings)}
fig, ax = plt.subplots(figsize=(7, 4))
for label, (_, _, hist) in lm_runs.items():
    ax.plot(hist.smoothed(), label=f"{label} ({hist.seconds:.0f} s)")
ax.axhline(np.log(len(vocab)), color="k", ls=":", lw=1, label="chance (log V)")
ax.set_ylim(top=np.log(len(vocab)) + 0.5)
ax.set(xlabel="step", ylabel="cross-entropy (nats/char, smoothed)", title="Elman networks on tiny Shakespeare")
ax.grid(alpha=0.3)
ax.legend()
plt.show()
model, p_lm, _ = lm_runs["tanh"]
print(vocab.decode(model.sample(p_lm, vocab.encode("\n"), pick(full=300, small=40), temperature=0.7, seed=1)))

# %% [markdown]
# ## 1.9 Swapping the backend
#
# Everything above ran on the NumPy reference. The same call runs on any other
# backend — `rb.forward(..., backend="numba")`, `with rb.use_backend("numba"):`, or
# `RNNBOOK_BACKEND=numba` — and `rb.available_backends()` says which ones this
# machine can run (Numba everywhere once installed, CuPy where there is a GPU).
# The table times forward and backward on each and checks each against the
# reference; a backend that is usable but has no Elman cell yet says so.

# %%
T_t, B_t, D_t, H_t = pick(full=(100, 32, 64, 256), small=(10, 4, 8, 16))
for nonlinearity in ("tanh", "relu"):
    display(backend_timings("rnn", D_t, H_t, T_t, B_t, nonlinearity=nonlinearity, repeats=pick(full=5, small=2)))

# %% [markdown]
# ## Exercises
#
# ### Exercise 1.1 — the step backward (graded, above)
# ### Exercise 1.2 — the RTRL influence update (graded, above)
# ### Exercise 1.3 — clipping by global norm (graded, above)
#
# ### Exercise 1.4 — clipping by value
# Clip the gradient $g = (3, 0.1)$ at $c = 1$ by value and by global norm. Which of
# the two preserves the direction of the step, and what happens to the small
# component under each? Use `rnnbook.clipping.clip_by_value` and your
# `clip_global_norm` to confirm.
#
# ### Exercise 1.5 — how long is long enough?
# Using the setup of Section 1.4, find the smallest window $k$ for which BPTT($k$)
# reproduces the full gradient of `W_hh` to 1% for tanh units, and again with
# `W_hh` scaled to spectral radius 0.5 and 1.0. Relate your three answers to the
# curves of Section 1.6.

# %% tags=["solution"]
from rnnbook.clipping import clip_by_value

g_demo = {"g": np.array([3.0, 0.1])}
by_value = clip_by_value(g_demo, 1.0)["g"]
by_norm, _ = clip_global_norm(g_demo, 1.0)
print("by value:", by_value, " direction", by_value / np.linalg.norm(by_value))
print("by norm: ", by_norm["g"], " direction", by_norm["g"] / np.linalg.norm(by_norm["g"]))

# %% tags=["solution"]
def smallest_window(p, tol=0.01):
    """The smallest k for which BPTT(k) gives dW_hh within tol (relative) of full BPTT."""
    _, _, c = rb.forward("rnn", p, x_long)
    reference = rb.backward("rnn", p, c, dy_long)["W_hh"]
    for k in range(1, T_trunc + 1):
        g = rb.backward("rnn", p, c, dy_long, window=k)["W_hh"]
        if np.abs(g - reference).max() <= tol * np.abs(reference).max():
            return k


Q16, _ = np.linalg.qr(np.random.default_rng(9).standard_normal((16, 16)))
for label, scale in (("default init", None), ("ρ = 0.5", 0.5), ("ρ = 1.0", 1.0)):
    p = rb.init_params("rnn", 3, 16, seed=2)
    if scale is not None:
        p["W_hh"] = scale * Q16
    rho = np.abs(np.linalg.eigvals(p["W_hh"])).max()
    print(f"{label:>13} (spectral radius {rho:.2f}): smallest window {smallest_window(p)} of {T_trunc}")

# %% [markdown] tags=["solution"]
# **Answer 1.4.** By value gives $(1, 0.1)$: the large component is cut and the
# small one kept, so the direction turns towards the small component (from 1.9° to
# 5.7° off the first axis). By norm gives $(0.9994, 0.0333)$: both shrink by the same
# factor $1/\|g\|$, so the direction is exactly that of $g$.
#
# **Answer 1.5.** At the full size (60 steps) the windows come out near 6 steps for
# $\rho = 0.5$, 8 for the default initialisation ($\rho \approx 0.67$) and 30 for
# $\rho = 1.0$. The truncation error is what the cut-off error would still have
# contributed, so $k$ must cover the lag over which the error falls about a
# hundredfold: roughly $\log 100 / |\log \rho_{\text{eff}}|$ steps, where saturation
# ($\varphi' < 1$) makes the effective factor per step smaller than $\rho$ — which is
# why $\rho = 1.0$ still needs only a finite window. These are the slopes of the
# curves in Section 1.6.
