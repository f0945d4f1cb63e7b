"""Experiments that several chapters run, written once: a character-level language model."""
from __future__ import annotations

import numpy as np

from ..arrays import tree_map
from ..data import char_batches
from ..losses import softmax_cross_entropy
from ..model import SequenceModel
from ..optim import Adam
from ..train import train


def train_char_model(cell: str, ids, vocab_size: int, hidden_size: int, steps: int, seq_len: int = 64,
                     batch: int = 32, embed_dim: int = 32, lr: float = 3e-3, clip_norm: float = 5.0, seed: int = 0,
                     dtype=np.float32, **cell_options):
    """Train embedding → ``cell`` → read-out to predict the next token of ``ids``.

    Stateful truncated BPTT: the token stream is read as ``batch`` parallel streams
    in chunks of ``seq_len``; the final state of one chunk is the initial state of
    the next, but no gradient crosses the chunk boundary.  Adam, clipping by global
    norm.  Returns ``(model, params, history)`` (``history.loss`` in nats per token).
    """
    model = SequenceModel(cell, hidden_size=hidden_size, vocab_size=vocab_size, embed_dim=embed_dim, **cell_options)
    params = model.init_params(seed=seed, dtype=dtype)
    batches = char_batches(np.asarray(ids), batch, seq_len)
    carry = {"state": None}

    def step_fn(p, step):
        inputs, targets = next(batches)
        logits, state, cache = model.forward(p, inputs, carry["state"])
        loss, dlogits = softmax_cross_entropy(logits, targets)
        carry["state"] = tree_map(np.copy, state)            # keep the state, drop the graph
        return loss, model.backward(p, cache, dlogits)

    history = train(step_fn, params, Adam(lr=lr), steps, clip_norm=clip_norm, progress=False,
                    desc=f"{cell} language model")
    return model, params, history
