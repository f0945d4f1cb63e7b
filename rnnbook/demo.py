"""The main job: a character-level language model on the bundled Shakespeare.

    python -m rnnbook demo [--cell lstm|gru|rnn] [--backend numpy|numba|cupy]

Trains an embedding -> cell -> read-out model by stateful truncated BPTT (the
final state of one chunk starts the next), prints samples as it learns, and
writes the loss curve to a PNG.  The defaults finish in about a minute on two
cores with the NumPy reference.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from . import dispatch
from .arrays import array_module, tree_map
from .data import CharVocab, char_batches, load_text
from .losses import softmax_cross_entropy
from .model import SequenceModel
from .optim import Adam
from .plots import plot_loss
from .train import train

DEFAULTS = dict(cell="lstm", backend=None, steps=2000, hidden=128, embed=32, seq_len=64, batch=32, lr=5e-3,
                clip=5.0, seed=0, sample_every=500, sample_len=160, temperature=0.7, out="rnnbook-demo",
                max_chars=None, progress=True, dtype="float32")


def run_demo(**kwargs) -> dict:
    """Train the demo model.  Returns a summary dict (losses, samples, paths, timing)."""
    unknown = set(kwargs) - set(DEFAULTS)
    if unknown:
        raise TypeError(f"unknown demo option(s) {sorted(unknown)}; options: {sorted(DEFAULTS)}")
    cfg = {**DEFAULTS, **kwargs}
    backend = dispatch.current_backend(cfg["backend"])
    dispatch.require_available(backend)
    dtype = np.dtype(cfg["dtype"])

    text = load_text("tinyshakespeare", cfg["max_chars"])
    vocab = CharVocab(text)
    ids = vocab.encode(text)
    model = SequenceModel(cfg["cell"], hidden_size=cfg["hidden"], vocab_size=len(vocab), embed_dim=cfg["embed"],
                          backend=backend)
    params = model.init_params(seed=cfg["seed"], dtype=dtype)
    n_params = sum(int(v.size) for v in params.values())
    print(f"rnnbook demo: {cfg['cell'].upper()} character model on tiny Shakespeare "
          f"({len(text):,} characters, {len(vocab)} symbols), backend={backend}, dtype={dtype}")
    print(f"  hidden {cfg['hidden']}, {n_params:,} parameters, batch {cfg['batch']} x {cfg['seq_len']} steps, "
          f"Adam lr {cfg['lr']}, clip {cfg['clip']}, {cfg['steps']} steps")
    print(f"  a model that knows nothing scores log({len(vocab)}) = {math.log(len(vocab)):.2f} nats/char")

    batches = char_batches(ids, cfg["batch"], cfg["seq_len"])
    carry = {"state": None}
    primer = vocab.encode("\n")
    samples = []

    def step_fn(p, step):
        inputs, targets = next(batches)
        logits, state, cache = model.forward(p, inputs, carry["state"])
        loss, dlogits = softmax_cross_entropy(logits, array_module(logits).asarray(targets))
        grads = model.backward(p, cache, dlogits)
        carry["state"] = tree_map(lambda a: a.copy(), state)   # truncated BPTT: keep the state, not the graph
        return loss, grads

    def show_sample(step, p, history):
        s = vocab.decode(model.sample(p, primer, cfg["sample_len"], cfg["temperature"], seed=step))
        samples.append((step + 1, s))
        bar = "-" * 70
        tqdm.write(f"\n{bar}\nstep {step + 1}, loss {history.smoothed()[-1]:.3f}:\n{s}\n{bar}")

    t0 = time.perf_counter()
    history = train(
        step_fn, params, Adam(lr=cfg["lr"]), cfg["steps"], clip_norm=cfg["clip"], progress=cfg["progress"],
        desc=f"{cfg['cell']} on {backend}", callback=show_sample, callback_every=cfg["sample_every"])
    seconds = time.perf_counter() - t0

    out = Path(cfg["out"])
    out.mkdir(parents=True, exist_ok=True)
    png = out / f"demo_loss_{cfg['cell']}_{backend}.png"
    plot_loss(history, png, title=f"{cfg['cell'].upper()} on tiny Shakespeare ({backend})",
              ylabel="cross-entropy (nats/char)")
    first = float(np.mean(history.loss[:20]))
    last = float(np.mean(history.loss[-20:]))
    print(f"\nloss: first 20 steps {first:.3f} -> last 20 steps {last:.3f} nats/char "
          f"({seconds:.1f} s, {1000 * seconds / cfg['steps']:.1f} ms/step)")
    print(f"loss curve written to {png}")
    return {"history": history, "first_loss": first, "last_loss": last, "samples": samples,
            "png": str(png), "seconds": seconds, "config": cfg}
