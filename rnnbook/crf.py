r"""Linear-chain conditional random field over per-step tag scores (the CRF of a BiLSTM-CRF).

Huang, Xu & Yu (2015), *Bidirectional LSTM-CRF Models for Sequence Tagging*: a
network scores every tag at every position (the *emissions*), and a transition
matrix scores every pair of neighbouring tags, so the tags are decoded jointly
instead of one position at a time.

Notation (batch of ``B`` sequences, ``K`` tags; sequence ``b`` has length ``L_b``)::

    E    (T, B, K)   emissions, E[t, b, k] = score of tag k at position t
    A    (K, K)      transitions, A[i, j] = score of tag j following tag i     params["transitions"]
    π    (K,)        score of starting with a tag                              params["start"]
    ω    (K,)        score of ending with a tag                                params["end"]
    mask (T, B)      1 on the first L_b positions of sequence b, 0 after (every L_b >= 1)

The score of a tag sequence ``y = y_0 … y_{L-1}`` and its probability::

    s(y) = π[y_0] + Σ_{t<L} E[t, y_t] + Σ_{1<=t<L} A[y_{t-1}, y_t] + ω[y_{L-1}]
    p(y) = exp(s(y)) / Z,        Z = Σ_{y'} exp(s(y'))       (a sum over K^L sequences)

**Forward algorithm** (log space, so nothing overflows): ``log α_t[j]`` is the
log of the summed ``exp`` score of every prefix that ends in tag ``j`` at ``t``::

    log α_0[j] = π[j] + E[0, j]
    log α_t[j] = logsumexp_i (log α_{t-1}[i] + A[i, j]) + E[t, j]        1 <= t < L
    log Z      = logsumexp_j (log α_{L-1}[j] + ω[j])

and the **backward algorithm** runs the same recursion from the other end::

    log β_{L-1}[i] = ω[i]
    log β_t[i]     = logsumexp_j (A[i, j] + E[t+1, j] + log β_{t+1}[j])   0 <= t < L-1

Padding: at a masked step both recursions carry their value over unchanged, so
``log α_{T-1} = log α_{L-1}`` and ``log β_t = ω`` for ``t >= L-1``.

**Marginals** (forward–backward)::

    P(y_t = k)                 = exp(log α_t[k] + log β_t[k] - log Z)
    P(y_{t-1} = i, y_t = j)    = exp(log α_{t-1}[i] + A[i, j] + E[t, j] + log β_t[j] - log Z)

**Gradient of the negative log-likelihood** ``ℓ = log Z - s(y*)`` of the gold tags
``y*``.  ``log Z`` is a log-sum-exp of scores that are *linear* in ``E``, ``A``, ``π``
and ``ω``; the derivative of a log-sum-exp is the softmax weight of each term, so
``∂ log Z/∂θ`` is the expected number of times ``θ`` is used under ``p``; the
derivative of ``s(y*)`` counts the times the gold path uses it::

    ∂ℓ/∂E[t, k] = P(y_t = k) - [y*_t = k]                     (t < L; 0 on padding)
    ∂ℓ/∂A[i, j] = Σ_{1<=t<L} P(y_{t-1} = i, y_t = j) - #{t: y*_{t-1} = i, y*_t = j}
    ∂ℓ/∂π[k]    = P(y_0 = k) - [y*_0 = k]
    ∂ℓ/∂ω[k]    = P(y_{L-1} = k) - [y*_{L-1} = k]

**Viterbi decoding** replaces ``logsumexp`` by ``max`` and remembers the argmax
(a back-pointer per tag and step), then follows the pointers back from the best
final tag: the most probable tag sequence in O(T K²).

Every function takes ``params = {"transitions", "start", "end"}`` first, as
layers in this package do; :func:`init_params` makes them.
"""
from __future__ import annotations

import numpy as np

from .checks import check_float_array

PARAM_NAMES = ("transitions", "start", "end")


# ------------------------------------------------------------------ parameters and checks
def init_params(num_tags, seed=0, dtype=np.float64) -> dict:
    """Small random scores ``U(-0.1, 0.1)`` for transitions, start and end."""
    if isinstance(num_tags, bool) or not isinstance(num_tags, (int, np.integer)) or num_tags < 1:
        raise ValueError(f"num_tags must be a positive integer, got {num_tags!r}")
    rng = np.random.default_rng(seed)
    K = int(num_tags)
    return {"transitions": rng.uniform(-0.1, 0.1, (K, K)).astype(dtype),
            "start": rng.uniform(-0.1, 0.1, K).astype(dtype),
            "end": rng.uniform(-0.1, 0.1, K).astype(dtype)}


def _check_params(params, K=None):
    if not isinstance(params, dict):
        raise TypeError(f"CRF params must be a dict {{'transitions', 'start', 'end'}}, got {type(params).__name__}")
    missing = [k for k in PARAM_NAMES if k not in params]
    extra = [k for k in params if k not in PARAM_NAMES]
    if missing or extra:
        raise ValueError(f"CRF params must hold exactly {list(PARAM_NAMES)}; missing {missing}, unexpected {extra}")
    A = check_float_array(params["transitions"], "params['transitions']", ndim=2)
    K = A.shape[0] if K is None else K
    if A.shape != (K, K):
        raise ValueError(f"params['transitions'] must have shape {(K, K)} (one row and column per tag), got {A.shape}")
    for name in ("start", "end"):
        check_float_array(params[name], f"params[{name!r}]", ndim=1, dtype=A.dtype)
        if params[name].shape != (K,):
            raise ValueError(f"params[{name!r}] must have shape {(K,)}, got {params[name].shape}")
    return A.dtype


def lengths_from_mask(mask, shape):
    """Check a ``(T, B)`` mask of leading ones and return the lengths ``(B,)`` int64."""
    T, B = shape
    if not hasattr(mask, "shape") or not hasattr(mask, "dtype"):
        raise TypeError(f"mask must be a (T, B) array of 0/1, got {type(mask).__name__}")
    if tuple(mask.shape) != (T, B):
        raise ValueError(f"mask must have shape {(T, B)} (the emissions without the tag axis), got {tuple(mask.shape)}")
    if mask.dtype.kind not in "biuf":
        raise TypeError(f"mask must be boolean or numeric 0/1, got dtype {mask.dtype}")
    m = np.asarray(mask)
    if not np.all((m == 0) | (m == 1)):
        raise ValueError("mask must hold only 0 and 1")
    m = m.astype(bool)
    if not np.all(m[0]):
        raise ValueError("every sequence needs length >= 1: mask[0] must be 1 in every column")
    if np.any(m[1:] & ~m[:-1]):
        raise ValueError("mask must be a prefix of ones in every column (1 … 1 0 … 0): "
                         "padding goes after the sequence")
    return m.sum(axis=0).astype(np.int64)


def _check_inputs(params, emissions, mask):
    check_float_array(emissions, "emissions", ndim=3)
    T, B, K = emissions.shape
    if min(T, B, K) < 1:
        raise ValueError(f"emissions must have shape (T, B, K) with every size >= 1, got {emissions.shape}")
    dtype = _check_params(params, K)
    check_float_array(emissions, "emissions", dtype=dtype)
    if mask is None:
        mask = np.ones((T, B), bool)
    lengths = lengths_from_mask(mask, (T, B))
    return np.asarray(mask).astype(bool), lengths


def _check_tags(tags, mask, K):
    if not hasattr(tags, "dtype") or tags.dtype.kind not in "iu":
        raise TypeError(f"tags must be an integer array, got {getattr(tags, 'dtype', type(tags).__name__)}")
    if tuple(tags.shape) != mask.shape:
        raise ValueError(f"tags must have shape {mask.shape} (the emissions without the tag axis), "
                         f"got {tuple(tags.shape)}")
    used = tags[mask]
    if used.size and (used.min() < 0 or used.max() >= K):
        raise ValueError(f"tags must lie in [0, {K}) on the unmasked positions, got [{used.min()}, {used.max()}]")
    return np.where(mask, tags, 0)                     # padding positions: any valid index, never used


def _logsumexp(a, axis):
    """``log Σ exp(a)`` along ``axis``, shifted by the maximum so that nothing overflows."""
    m = a.max(axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    return (np.log(np.exp(a - m).sum(axis=axis, keepdims=True)) + m).squeeze(axis)


# ------------------------------------------------------------------ forward–backward
def forward_backward(params, emissions, mask=None):
    """``(log_alpha (T, B, K), log_beta (T, B, K), log_Z (B,))`` by the forward and backward algorithms."""
    mask, _ = _check_inputs(params, emissions, mask)
    A, start, end = params["transitions"], params["start"], params["end"]
    T, B, K = emissions.shape
    log_alpha = np.empty_like(emissions)
    log_alpha[0] = start + emissions[0]                                          # π + E_0
    for t in range(1, T):
        nxt = _logsumexp(log_alpha[t - 1][:, :, None] + A, axis=1) + emissions[t]  # (B, K)
        log_alpha[t] = np.where(mask[t][:, None], nxt, log_alpha[t - 1])        # padding: carry over
    log_Z = _logsumexp(log_alpha[T - 1] + end, axis=1)
    log_beta = np.empty_like(emissions)
    log_beta[T - 1] = end
    for t in range(T - 2, -1, -1):
        nxt = _logsumexp(A + (emissions[t + 1] + log_beta[t + 1])[:, None, :], axis=2)
        log_beta[t] = np.where(mask[t + 1][:, None], nxt, log_beta[t + 1])
    return log_alpha, log_beta, log_Z


def log_partition(params, emissions, mask=None):
    """``log Z`` per sequence, ``(B,)``, by the forward algorithm alone."""
    mask, _ = _check_inputs(params, emissions, mask)
    A = params["transitions"]
    log_alpha = params["start"] + emissions[0]
    for t in range(1, emissions.shape[0]):
        nxt = _logsumexp(log_alpha[:, :, None] + A, axis=1) + emissions[t]
        log_alpha = np.where(mask[t][:, None], nxt, log_alpha)
    return _logsumexp(log_alpha + params["end"], axis=1)


def marginals(params, emissions, mask=None):
    """``(unary (T, B, K), pairwise (T, B, K, K))``: ``P(y_t = k)`` and ``P(y_{t-1} = i, y_t = j)``.

    Both are 0 on padding; ``pairwise[0]`` is 0 (no transition into the first position).
    """
    log_alpha, log_beta, log_Z = forward_backward(params, emissions, mask)
    m = (np.ones(emissions.shape[:2], bool) if mask is None else np.asarray(mask).astype(bool))
    unary = np.exp(log_alpha + log_beta - log_Z[None, :, None]) * m[:, :, None]
    pairwise = np.zeros(emissions.shape + (emissions.shape[2],), emissions.dtype)
    pairwise[1:] = np.exp(log_alpha[:-1, :, :, None] + params["transitions"]
                          + (emissions[1:] + log_beta[1:])[:, :, None, :]
                          - log_Z[None, :, None, None]) * m[1:, :, None, None]
    return unary, pairwise


# ------------------------------------------------------------------ scores and the loss
def sequence_score(params, emissions, tags, mask=None):
    """``s(y)`` per sequence, ``(B,)``, for integer ``tags (T, B)`` (padding entries are ignored)."""
    mask, lengths = _check_inputs(params, emissions, mask)
    y = _check_tags(tags, mask, emissions.shape[2])
    cols = np.arange(emissions.shape[1])
    e = np.take_along_axis(emissions, y[:, :, None], axis=2)[:, :, 0]           # E[t, y_t]  (T, B)
    a = params["transitions"][y[:-1], y[1:]]                                     # A[y_{t-1}, y_t]  (T-1, B)
    last = y[lengths - 1, cols]
    return (params["start"][y[0]] + (e * mask).sum(axis=0) + (a * mask[1:]).sum(axis=0)
            + params["end"][last])


def nll_forward(params, emissions, tags, mask=None):
    """Negative log-likelihood ``log Z - s(y)`` per sequence, ``(B,)``, and the cache for :func:`nll_backward`."""
    mask, lengths = _check_inputs(params, emissions, mask)
    y = _check_tags(tags, mask, emissions.shape[2])
    log_Z = forward_backward(params, emissions, mask)[2]
    nll = log_Z - sequence_score(params, emissions, tags, mask)
    cache = {"emissions": emissions, "tags": y, "mask": mask, "lengths": lengths}
    return nll, cache


def nll_backward(params, cache, dnll):
    """Gradients of ``Σ_b dnll[b] · ℓ_b`` for ``emissions`` and each CRF parameter (see the module docstring)."""
    E, y, mask, lengths = cache["emissions"], cache["tags"], cache["mask"], cache["lengths"]
    T, B, K = E.shape
    check_float_array(dnll, "dnll", ndim=1)
    if dnll.shape != (B,):
        raise ValueError(f"dnll must have shape {(B,)} (one entry per sequence), got {dnll.shape}")
    unary, pairwise = marginals(params, E, mask)
    gold = np.eye(K, dtype=E.dtype)[y] * mask[:, :, None]                        # [y*_t = k]  (T, B, K)
    w = dnll[None, :, None]
    d_emissions = w * (unary - gold)                                             # ∂ℓ/∂E = P(y_t=k) - [y*_t=k]
    gold_pairs = np.zeros((K, K), E.dtype)
    np.add.at(gold_pairs, (y[:-1], y[1:]), (mask[1:] * dnll[None, :]))           # dnll-weighted gold counts
    d_transitions = np.einsum("tbij,b->ij", pairwise, dnll) - gold_pairs
    cols = np.arange(B)
    last = lengths - 1
    d_start = dnll @ (unary[0] - gold[0])
    d_end = dnll @ (unary[last, cols] - gold[last, cols])
    return {"emissions": d_emissions, "transitions": d_transitions, "start": d_start, "end": d_end}


def nll_loss(params, emissions, tags, mask=None):
    """Mean negative log-likelihood over the ``B`` sequences, and its gradients (a dict as :func:`nll_backward`)."""
    nll, cache = nll_forward(params, emissions, tags, mask)
    B = emissions.shape[1]
    grads = nll_backward(params, cache, np.full(B, 1.0 / B, emissions.dtype))
    return float(nll.mean()), grads


# ------------------------------------------------------------------ decoding
def viterbi(params, emissions, mask=None):
    """Most probable tags ``(T, B)`` int64 (``-1`` on padding) and their scores ``(B,)``."""
    mask, _ = _check_inputs(params, emissions, mask)
    A = params["transitions"]
    T, B, K = emissions.shape
    delta = params["start"] + emissions[0]                      # best score of a prefix ending in each tag
    backpointer = np.zeros((T, B, K), np.int64)
    keep = np.broadcast_to(np.arange(K), (B, K))                # on padding a tag points to itself
    for t in range(1, T):
        candidates = delta[:, :, None] + A                      # (B, K_prev, K)
        best_prev = candidates.argmax(axis=1)
        nxt = candidates.max(axis=1) + emissions[t]
        delta = np.where(mask[t][:, None], nxt, delta)
        backpointer[t] = np.where(mask[t][:, None], best_prev, keep)
    final = delta + params["end"]
    tags = np.empty((T, B), np.int64)
    tags[T - 1] = final.argmax(axis=1)
    best_score = final.max(axis=1)
    cols = np.arange(B)
    for t in range(T - 1, 0, -1):
        tags[t - 1] = backpointer[t, cols, tags[t]]
    return np.where(mask, tags, -1), best_score
