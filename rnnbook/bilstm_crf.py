r"""BiLSTM-CRF sequence tagger: embedding -> bidirectional LSTM -> linear emissions -> CRF.

Huang, Xu & Yu (2015), *Bidirectional LSTM-CRF Models for Sequence Tagging*::

    x_t  = E[w_t]                                   (T, B, D)   embedding
    →h   = LSTM_fwd(x_0 … x_{L-1})                  (T, B, H)   reads left to right
    ←h   = reverse(LSTM_bwd(x_{L-1} … x_0))         (T, B, H)   reads right to left
    f_t  = [→h_t | ←h_t] W^T + c                    (T, B, K)   emission scores, W (K, 2H)
    p(y | w) = CRF(f; A, π, ω)                      see ``rnnbook.crf``

The loss is the CRF negative log-likelihood of the gold tags, averaged over the
``B`` sentences; decoding is Viterbi over the emissions.  Backward runs the
chain in reverse: ``crf.nll_backward`` gives ``∂ℓ/∂f``, the linear layer turns it
into ``∂ℓ/∂h``, its halves go back through the two LSTMs (``rnnbook.dispatch``,
on the model's backend), and the input gradients scatter into the embedding.

**Variable lengths.**  Sentences are padded at the end (``mask``).  The backward
LSTM must start at each sentence's *own* last word, not at the padding, or the
tag scores of a sentence would depend on how much padding its batch happens to
have.  So each sentence is reversed within its length (``reverse_within_lengths``,
padding left in place after it) before the backward LSTM reads it, and its
outputs are put back the same way.  With no padding this is exactly the
``bidirectional`` composite of ``rnnbook.layers`` (same parameter names, under
``core.``), which the tests check.

Parameters live in one flat dict: ``embed.E``, ``core.fwd.<name>``,
``core.bwd.<name>``, ``emit.W``, ``emit.b``, ``crf.transitions``, ``crf.start``,
``crf.end``.
"""
from __future__ import annotations

import numpy as np

from . import crf, dispatch
from .layers import embedding, linear


def reverse_within_lengths(a, lengths):
    """Reverse each column ``b`` of ``a (T, B, …)`` in its first ``lengths[b]`` steps; leave the rest.

    The map is its own inverse, and (being a permutation per column) so is its backward pass.
    """
    T = a.shape[0]
    t = np.arange(T)[:, None]
    L = np.asarray(lengths)[None, :]
    index = np.where(t < L, L - 1 - t, t)                          # (T, B)
    index = index.reshape(index.shape + (1,) * (a.ndim - 2))
    return np.take_along_axis(a, np.broadcast_to(index, a.shape), axis=0)


class BiLSTMCRF:
    """A BiLSTM-CRF tagger over integer tokens ``(T, B)`` and tags ``0 … num_tags-1``.

    ``cell`` may be any registered recurrent cell (``"lstm"`` is the paper's);
    ``backend`` chooses where the recurrent part runs (a CPU backend: the rest is NumPy).
    """

    def __init__(self, vocab_size, num_tags, embed_dim=16, hidden_size=16, cell="lstm", backend=None,
                 **cell_options):
        for name, v in (("vocab_size", vocab_size), ("num_tags", num_tags), ("embed_dim", embed_dim),
                        ("hidden_size", hidden_size)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        self.vocab_size, self.num_tags = int(vocab_size), int(num_tags)
        self.embed_dim, self.hidden_size = int(embed_dim), int(hidden_size)
        self.cell, self.cell_options = cell, dict(cell_options)
        self.backend = dispatch.current_backend(backend)
        if self.backend == "cupy":
            raise ValueError("BiLSTMCRF runs its embedding, emissions and CRF in NumPy; "
                             "use backend 'numpy' or 'numba' for the recurrent part")

    # ------------------------------------------------------------------ parameters
    def init_params(self, seed=0, dtype=np.float64) -> dict:
        params = {f"embed.{k}": v for k, v in
                  embedding.init_params(self.vocab_size, self.embed_dim, seed, dtype).items()}
        for i, direction in enumerate(("fwd", "bwd")):
            p = dispatch.init_params(self.cell, self.embed_dim, self.hidden_size, seed=2 * seed + 1 + i,
                                     dtype=dtype, backend=self.backend, **self.cell_options)
            params.update({f"core.{direction}.{k}": v for k, v in p.items()})
        params.update({f"emit.{k}": v for k, v in
                       linear.init_params(2 * self.hidden_size, self.num_tags, seed + 7, dtype).items()})
        params.update({f"crf.{k}": v for k, v in crf.init_params(self.num_tags, seed + 11, dtype).items()})
        return params

    @staticmethod
    def _part(params, prefix):
        n = len(prefix) + 1
        return {k[n:]: v for k, v in params.items() if k.startswith(prefix + ".")}

    def _mask(self, tokens, mask):
        embedding.check_tokens(tokens, self.vocab_size)
        if tokens.ndim != 2:
            raise ValueError(f"tokens must have shape (T, B), got {tokens.shape}")
        if mask is None:
            mask = np.ones(tokens.shape, bool)
        lengths = crf.lengths_from_mask(mask, tokens.shape)
        return np.asarray(mask).astype(bool), lengths

    # ------------------------------------------------------------------ forward / backward
    @dispatch.with_host_blas
    def emissions(self, params, tokens, mask=None):
        """Emission scores ``(T, B, K)`` for ``tokens (T, B)``, and the cache for the backward pass."""
        mask, lengths = self._mask(tokens, mask)
        x, embed_cache = embedding.forward(self._part(params, "embed"), tokens)
        h_f, _, c_f = dispatch.forward(self.cell, self._part(params, "core.fwd"), x, backend=self.backend,
                                       **self.cell_options)
        h_b_rev, _, c_b = dispatch.forward(self.cell, self._part(params, "core.bwd"),
                                           reverse_within_lengths(x, lengths), backend=self.backend,
                                           **self.cell_options)
        h = np.concatenate([h_f, reverse_within_lengths(h_b_rev, lengths)], axis=2)    # (T, B, 2H)
        scores, emit_cache = linear.forward(self._part(params, "emit"), h)
        cache = {"embed": embed_cache, "fwd": c_f, "bwd": c_b, "emit": emit_cache,
                 "mask": mask, "lengths": lengths}
        return scores, cache

    @dispatch.with_host_blas
    def _emissions_backward(self, params, cache, d_scores):
        H = self.hidden_size
        g_emit = linear.backward(self._part(params, "emit"), cache["emit"], d_scores)
        dh = g_emit["h"]
        g_f = dispatch.backward(self.cell, self._part(params, "core.fwd"), cache["fwd"],
                                np.ascontiguousarray(dh[:, :, :H]))
        g_b = dispatch.backward(self.cell, self._part(params, "core.bwd"), cache["bwd"],
                                reverse_within_lengths(dh[:, :, H:], cache["lengths"]))
        dx = g_f["x"] + reverse_within_lengths(g_b["x"], cache["lengths"])   # the backward LSTM read x reversed
        grads = {f"embed.{k}": v for k, v in
                 embedding.backward(self._part(params, "embed"), cache["embed"], dx).items()}
        for direction, g in (("fwd", g_f), ("bwd", g_b)):
            grads.update({f"core.{direction}.{k}": v for k, v in g.items() if k not in ("x", "state0")})
        grads["emit.W"], grads["emit.b"] = g_emit["W"], g_emit["b"]
        return grads

    @dispatch.with_host_blas
    def loss_and_grads(self, params, tokens, tags, mask=None):
        """Mean CRF negative log-likelihood over the sentences, and its gradient for every parameter."""
        scores, cache = self.emissions(params, tokens, mask)
        loss, g_crf = crf.nll_loss(self._part(params, "crf"), scores, tags, cache["mask"])
        grads = self._emissions_backward(params, cache, g_crf["emissions"])
        grads.update({f"crf.{k}": g_crf[k] for k in crf.PARAM_NAMES})
        return loss, {k: grads[k] for k in params}

    def nll(self, params, tokens, tags, mask=None):
        """Negative log-likelihood per sentence ``(B,)`` (for gradient checks and evaluation)."""
        scores, cache = self.emissions(params, tokens, mask)
        return crf.nll_forward(self._part(params, "crf"), scores, tags, cache["mask"])[0]

    def decode(self, params, tokens, mask=None):
        """Viterbi tags ``(T, B)`` (``-1`` on padding)."""
        scores, cache = self.emissions(params, tokens, mask)
        return crf.viterbi(self._part(params, "crf"), scores, cache["mask"])[0]
