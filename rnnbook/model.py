r"""A whole sequence model: [embedding] -> recurrent core -> linear read-out.

    x_t = E[i_t]                     (only for token inputs)        (T, B, D)
    h   = Core(x)                    any registered architecture    (T, B, H)
    o_t = h_t W^T + b                read-out                       (T, B, O)

Parameters live in one flat dict with prefixes (``"embed.E"``, ``"core.<name>"``,
``"readout.W"``, ``"readout.b"``) so optimisers, clipping and gradient checks
treat the model like any other parameter dict.  The core runs on the model's
backend through ``rnnbook.dispatch``; the embedding and read-out are written with
array operations that NumPy and CuPy share, and run under the setting the backend
asks for between its calls (``dispatch.host_blas``: with the Numba backend, NumPy's
BLAS on the calling thread).
"""
from __future__ import annotations

import numpy as np

from . import dispatch
from .arrays import array_module, to_numpy
from .layers import embedding, linear


class SequenceModel:
    """Embedding (for token inputs) + recurrent core + read-out.

    Give ``vocab_size`` (and optionally ``embed_dim``) for integer token inputs
    ``(T, B)``, or ``input_size`` for float inputs ``(T, B, D)``.  ``num_layers > 1``
    or ``bidirectional=True`` uses the ``stacked`` composite around ``cell``.
    """

    def __init__(self, cell="lstm", hidden_size=128, output_size=None, input_size=None, vocab_size=None,
                 embed_dim=None, num_layers=1, residual=False, bidirectional=False, backend=None,
                 **cell_options):
        if (input_size is None) == (vocab_size is None):
            raise ValueError("give exactly one of input_size (float inputs) or vocab_size (token inputs)")
        self.cell = cell
        self.hidden_size = hidden_size
        self.vocab_size = vocab_size
        self.embed_dim = (embed_dim or hidden_size) if vocab_size else None
        self.input_size = self.embed_dim if vocab_size else input_size
        self.output_size = output_size if output_size is not None else vocab_size
        if self.output_size is None:
            raise ValueError("output_size is required when the inputs are not tokens")
        self.backend = dispatch.current_backend(backend)
        if num_layers == 1 and not bidirectional:
            self.core, self.core_options = cell, dict(cell_options)
        else:
            self.core = "stacked"
            self.core_options = dict(cell=cell, residual=residual, bidirectional=bidirectional, **cell_options)
        self.num_layers = num_layers
        self.core_out = hidden_size * (2 if bidirectional else 1)

    # ------------------------------------------------------------------ parameters
    def init_params(self, seed=0, dtype=np.float64) -> dict:
        init_opts = dict(self.core_options)
        if self.core == "stacked":
            init_opts["num_layers"] = self.num_layers
        core = dispatch.init_params(self.core, self.input_size, self.hidden_size, seed=seed, dtype=dtype,
                                    backend=self.backend, **init_opts)
        xp = array_module(next(iter(core.values())))
        params = {}
        if self.vocab_size:
            params.update({f"embed.{k}": v for k, v in
                           embedding.init_params(self.vocab_size, self.embed_dim, seed + 101, dtype, xp).items()})
        params.update({f"core.{k}": v for k, v in core.items()})
        params.update({f"readout.{k}": v for k, v in
                       linear.init_params(self.core_out, self.output_size, seed + 202, dtype, xp).items()})
        return params

    @staticmethod
    def _part(params, prefix):
        n = len(prefix) + 1
        return {k[n:]: v for k, v in params.items() if k.startswith(prefix + ".")}

    # ------------------------------------------------------------------ forward / backward
    @dispatch.with_host_blas
    def forward(self, params, inputs, state0=None):
        """``inputs (T, B)`` tokens or ``(T, B, D)`` floats -> ``(outputs (T, B, O), state, cache)``."""
        xp = array_module(params["readout.W"])
        cache = {}
        if self.vocab_size:
            x, cache["embed"] = embedding.forward(self._part(params, "embed"), xp.asarray(inputs))
        else:
            x = inputs
        h, state, cache["core"] = dispatch.forward(self.core, self._part(params, "core"), x, state0,
                                                   backend=self.backend, **self.core_options)
        out, cache["readout"] = linear.forward(self._part(params, "readout"), h)
        return out, state, cache

    @dispatch.with_host_blas
    def backward(self, params, cache, dout, dstate=None) -> dict:
        """Gradients for every parameter (and ``"inputs"`` for float inputs)."""
        g_out = linear.backward(self._part(params, "readout"), cache["readout"], dout)
        g_core = dispatch.backward(self.core, self._part(params, "core"), cache["core"], g_out["h"], dstate)
        grads = {}
        if self.vocab_size:
            grads.update({f"embed.{k}": v for k, v in
                          embedding.backward(self._part(params, "embed"), cache["embed"], g_core["x"]).items()})
        grads.update({f"core.{k}": v for k, v in g_core.items() if k not in ("x", "state0")})
        grads["readout.W"], grads["readout.b"] = g_out["W"], g_out["b"]
        grads = {k: grads[k] for k in params}
        if not self.vocab_size:
            grads["inputs"] = g_core["x"]
        return grads

    # ------------------------------------------------------------------ generation
    def sample(self, params, start, length, temperature=1.0, seed=0, state0=None):
        """Draw ``length`` tokens one step at a time, feeding each sample back in.

        ``start`` is a sequence of token ids that primes the state.  Returns a NumPy
        array of the sampled ids (without the primer).
        """
        if not self.vocab_size:
            raise ValueError("sampling needs a token model (vocab_size)")
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature!r}")
        rng = np.random.default_rng(seed)
        start = np.asarray(start, dtype=np.int64).reshape(-1, 1)          # (T0, 1)
        logits, state, _ = self.forward(params, start, state0)
        out = []
        last = to_numpy(logits[-1, 0]).astype(np.float64)
        for _ in range(length):
            z = last / temperature
            p = np.exp(z - z.max())
            nxt = int(rng.choice(len(p), p=p / p.sum()))
            out.append(nxt)
            logits, state, _ = self.forward(params, np.array([[nxt]]), state)
            last = to_numpy(logits[-1, 0]).astype(np.float64)
        return np.array(out, dtype=np.int64)
