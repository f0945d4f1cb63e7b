r"""A regularised token language model, and a small training run to switch each tool on and off.

:class:`RegularizedLM` is ``SequenceModel``'s token model (embedding -> ``L``
layers of a cell -> read-out) written layer by layer so that dropout can sit
*between* the pieces, in the places Zaremba et al. (2014) and AWD-LSTM put it::

    Ẽ        = m^E ⊙ E                                   embedding dropout (rows)      m^E (V, 1)
    x^(0)    = Ẽ[i] ⊙ m^in                               input dropout                 (T, B, D)
    u^(l)    = Cell(x^(l); W_ih, M^(l) ⊙ W_hh, …)        DropConnect on W_hh           (T, B, H)
    x^(l+1)  = u^(l) ⊙ m^(l)          l < L-1            dropout between layers
    o        = (u^(L-1) ⊙ m^out) W^T + b                 output dropout, read-out      (T, B, V)

Activation masks ``m`` are per time step (``variational=False``, Zaremba) or tied
across time (``variational=True``, one mask per sequence).  The recurrent
connection ``h_{t-1} -> h_t`` is only ever touched by DropConnect.  Backward runs
the same chain in reverse, each mask multiplying the gradient that passes it.

Parameters are laid out exactly as ``SequenceModel(cell, hidden_size,
vocab_size=…, embed_dim=…, num_layers=…)`` lays them out (``embed.E``,
``core.W_hh`` or ``core.layer<l>.W_hh``, ``readout.W``, ``readout.b``), so in
``eval()`` mode the two models compute the same function, and
:meth:`RegularizedLM.sequence_model` hands back the plain model for sampling.

:func:`train_char_lm` trains a small character model on the bundled text with
any combination of the tools of this chapter -- dropout (standard or
variational), embedding dropout, DropConnect, an L2 penalty, NT-ASGD, gradual
pruning -- and records the validation loss as it goes.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from .. import dispatch
from ..arrays import array_module, to_numpy, tree_map
from ..data import CharVocab, char_batches, load_text
from ..layers import embedding, linear
from ..losses import softmax_cross_entropy
from ..model import SequenceModel
from ..optim import SGD, Adam
from ..train import History, train
from . import dropconnect, dropout
from .l2 import add_grads, l2_penalty
from .ntasgd import NTASGD
from .pruning import GradualPruner, PrunedOptimizer, count_nonzero


class RegularizedLM:
    """Embedding -> ``num_layers`` × ``cell`` -> read-out, with dropout in the Zaremba/AWD-LSTM places.

    ``dropout_embedding`` drops rows of ``E``; ``dropout_input`` the embedded
    inputs; ``dropout_hidden`` the outputs of every layer but the last;
    ``dropout_output`` the last layer's output before the read-out; ``weight_drop``
    is DropConnect on every layer's ``W_hh``.  ``variational=True`` ties the
    activation masks across time.  All probabilities default to 0 (no dropout).
    """

    def __init__(self, cell="lstm", hidden_size=128, vocab_size=None, embed_dim=None, num_layers=1,
                 dropout_input=0.0, dropout_hidden=0.0, dropout_output=0.0, dropout_embedding=0.0,
                 weight_drop=0.0, variational=False, seed=0, backend=None, **cell_options):
        if vocab_size is None:
            raise ValueError("RegularizedLM is a token model: give vocab_size")
        if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 1:
            raise ValueError(f"num_layers must be a positive integer, got {num_layers!r}")
        if variational not in (False, True):
            raise TypeError(f"variational must be True or False, got {variational!r}")
        for key in ("residual", "bidirectional"):
            if key in cell_options:
                raise TypeError(f"RegularizedLM does not support {key}=; it builds a plain stack")
        self.base = SequenceModel(cell, hidden_size=hidden_size, vocab_size=vocab_size, embed_dim=embed_dim,
                                  num_layers=num_layers, backend=backend, **cell_options)
        self.cell, self.num_layers, self.cell_options = cell, num_layers, dict(cell_options)
        self.backend = self.base.backend
        kind = "variational" if variational else "standard"
        self.variational = variational
        self.drop_embedding = dropout.Dropout(dropout_embedding, "embedding", seed=seed + 1)
        self.drop_input = dropout.Dropout(dropout_input, kind, seed=seed + 2)
        self.drop_hidden = dropout.Dropout(dropout_hidden, kind, seed=seed + 3)
        self.drop_output = dropout.Dropout(dropout_output, kind, seed=seed + 4)
        self.weight_drop = dropconnect.DropConnect(weight_drop, names=["W_hh"], seed=seed + 5)
        self.training = True

    # ------------------------------------------------------------------ mode and parameters
    def _parts(self):
        return (self.drop_embedding, self.drop_input, self.drop_hidden, self.drop_output, self.weight_drop)

    def train(self) -> "RegularizedLM":
        self.training = True
        for d in self._parts():
            d.train()
        return self

    def eval(self) -> "RegularizedLM":
        self.training = False
        for d in self._parts():
            d.eval()
        return self

    def init_params(self, seed=0, dtype=np.float64) -> dict:
        return self.base.init_params(seed=seed, dtype=dtype)

    def sequence_model(self) -> SequenceModel:
        """The plain model with the same parameter layout (for sampling and evaluation)."""
        return self.base

    def _layer_prefix(self, l):
        return "core." if self.num_layers == 1 else f"core.layer{l}."

    def _layer_params(self, params, l):
        pre = self._layer_prefix(l)
        return {k[len(pre):]: v for k, v in params.items() if k.startswith(pre)}

    # ------------------------------------------------------------------ masks
    def sample_masks(self, params, T, B) -> dict:
        """Fresh masks for a batch of ``T × B`` tokens (``None`` where a dropout is off)."""
        E = params["embed.E"]
        xp, dtype = array_module(E), E.dtype
        H, D = self.base.hidden_size, self.base.embed_dim
        return {"embedding": self.drop_embedding.mask(E),
                "input": self.drop_input.sample((T, B, D), dtype, xp),
                "hidden": [self.drop_hidden.sample((T, B, H), dtype, xp) for _ in range(self.num_layers - 1)],
                "output": self.drop_output.sample((T, B, H), dtype, xp),
                "weights": [self.weight_drop.masks(self._layer_params(params, l)) for l in range(self.num_layers)]}

    # ------------------------------------------------------------------ forward / backward
    @dispatch.with_host_blas
    def forward(self, params, tokens, state0=None, masks=None):
        """``tokens (T, B)`` -> ``(logits (T, B, V), state, cache)``.

        ``masks=None`` draws fresh masks (training mode) or none (evaluation mode);
        passing the ``cache["masks"]`` of an earlier call replays them exactly.
        The state is the layers' states in layer order, as in the ``stacked`` core.
        """
        xp = array_module(params["readout.W"])
        tokens = xp.asarray(tokens)
        if getattr(tokens, "ndim", None) != 2:
            raise ValueError(f"tokens must have shape (T, B), got {getattr(tokens, 'shape', type(tokens).__name__)}")
        T, B = tokens.shape
        if masks is None:
            masks = self.sample_masks(params, T, B)
        L = self.num_layers
        if state0 is not None and (not isinstance(state0, (tuple, list)) or len(state0) % L):
            raise ValueError(f"state0 must be a tuple of the {L} layers' states in order")
        n = None if state0 is None else len(state0) // L
        cache = {"masks": masks, "layers": []}
        E_dropped, cache["embed_mask"] = dropout.forward(params["embed.E"], masks["embedding"])    # Ẽ = m^E ⊙ E
        x, cache["embed"] = embedding.forward({"E": E_dropped}, tokens)                             # x = Ẽ[i]
        x, _ = dropout.forward(x, masks["input"])                                                    # ⊙ m^in
        states = []
        for l in range(L):
            s0 = None if state0 is None else tuple(state0[l * n:(l + 1) * n])
            u, s, c = dropconnect.forward(self.cell, self._layer_params(params, l), x, s0,
                                          masks["weights"][l], backend=self.backend, **self.cell_options)
            cache["layers"].append(c)
            states.extend(s)
            x = dropout.forward(u, masks["hidden"][l])[0] if l < L - 1 else u                       # ⊙ m^(l)
        h, _ = dropout.forward(x, masks["output"])                                                   # ⊙ m^out
        logits, cache["readout"] = linear.forward({"W": params["readout.W"], "b": params["readout.b"]}, h)
        return logits, tuple(states), cache

    @dispatch.with_host_blas
    def backward(self, params, cache, dlogits, dstate=None) -> dict:
        """Gradients for every parameter, by the chain of ``forward`` in reverse."""
        masks, L = cache["masks"], self.num_layers
        if dstate is not None and (not isinstance(dstate, (tuple, list)) or len(dstate) % L):
            raise ValueError(f"dstate must be a tuple of the {L} layers' final-state gradients in order")
        n = None if dstate is None else len(dstate) // L                                             # arrays per layer
        g_out = linear.backward({"W": params["readout.W"], "b": params["readout.b"]}, cache["readout"], dlogits)
        grads = {"readout.W": g_out["W"], "readout.b": g_out["b"]}
        d_x = dropout.backward(masks["output"], g_out["h"])                                          # h = u ⊙ m^out
        for l in reversed(range(L)):
            if l < L - 1:
                d_x = dropout.backward(masks["hidden"][l], d_x)                                      # x = u ⊙ m^(l)
            ds = None if dstate is None else tuple(dstate[l * n:(l + 1) * n])
            g = dropconnect.backward(self.cell, self._layer_params(params, l), cache["layers"][l], d_x, ds)
            pre = self._layer_prefix(l)
            grads.update({pre + k: v for k, v in g.items() if k not in ("x", "state0")})
            d_x = g["x"]
        d_x = dropout.backward(masks["input"], d_x)                                                  # ⊙ m^in
        dE_dropped = embedding.backward({"E": params["embed.E"]}, cache["embed"], d_x)["E"]          # x = Ẽ[i]
        grads["embed.E"] = dropout.backward(cache["embed_mask"], dE_dropped)                         # Ẽ = m^E ⊙ E
        return {k: grads[k] for k in params}


# ============================================================================ training run
@dataclass
class LMRun:
    """What :func:`train_char_lm` returns."""
    config: dict
    model: RegularizedLM
    vocab: CharVocab
    params: dict                       # the parameters to evaluate (averaged once NT-ASGD triggered)
    raw_params: dict                   # the last SGD/Adam iterate
    history: History                   # training loss per step (with dropout on)
    val_steps: list = field(default_factory=list)      # step counts at which validation ran (0 = before training)
    val_loss: list = field(default_factory=list)       # validation cross-entropy (nats/char) at those steps
    trigger_step: int | None = None    # NT-ASGD: step count when averaging began
    sparsity: dict = field(default_factory=dict)       # pruning: achieved sparsity per matrix and in total
    nonzeros: int = 0                  # non-zero parameters of ``params``
    seconds: float = 0.0

    @property
    def initial_val_loss(self) -> float:
        return self.val_loss[0]

    @property
    def final_val_loss(self) -> float:
        return self.val_loss[-1]


LM_DEFAULTS = dict(cell="lstm", hidden_size=64, embed_dim=32, num_layers=1, seq_len=32, batch_size=16,
                   steps=100, max_chars=60_000, val_fraction=0.1, val_chars=None,
                   dropout_input=0.0, dropout_hidden=0.0, dropout_output=0.0, dropout_embedding=0.0,
                   weight_drop=0.0, variational=False, optimizer="adam", lr=None, weight_decay=0.0, l2=0.0,
                   nonmono=5, eval_every=10, prune=None, clip_norm=1.0, seed=0, dtype="float64",
                   backend=None, progress=False)
LR_DEFAULTS = {"adam": 1e-2, "sgd": 1.0, "ntasgd": 1.0}


def split_text(ids: np.ndarray, val_fraction: float):
    """The first ``1 - val_fraction`` of the tokens for training, the rest for validation."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction!r}")
    cut = int(round(len(ids) * (1.0 - val_fraction)))
    return ids[:cut], ids[cut:]


def evaluate_lm(model: RegularizedLM, params: dict, ids: np.ndarray, batch_size: int, seq_len: int) -> float:
    """Mean cross-entropy (nats/token) of ``model`` in evaluation mode over one stateful pass of ``ids``."""
    was_training = model.training
    model.eval()
    try:
        batches = char_batches(ids, batch_size, seq_len)
        n_chunks = ((len(ids) - 1) // batch_size) // seq_len
        xp = array_module(params["readout.W"])
        total, count, state = 0.0, 0, None
        for _ in range(n_chunks):
            inputs, targets = next(batches)
            logits, state, _ = model.forward(params, inputs, state)
            loss, _ = softmax_cross_entropy(logits, xp.asarray(targets))
            total += loss * targets.size
            count += targets.size
        return total / count
    finally:
        if was_training:
            model.train()


def train_char_lm(**options) -> LMRun:
    """Train a small character language model on the bundled Shakespeare with the chapter's tools.

    Options (defaults in ``LM_DEFAULTS``): model size (``cell``, ``hidden_size``,
    ``embed_dim``, ``num_layers``), data (``max_chars``, ``val_fraction``,
    ``seq_len``, ``batch_size``), the dropouts of :class:`RegularizedLM`,
    ``optimizer`` in ``"adam" | "sgd" | "ntasgd"`` with ``lr``, ``weight_decay``
    (decoupled) and ``l2`` (an explicit penalty), ``nonmono`` (NT-ASGD's ``n``),
    ``eval_every`` (validation interval ``L``, in steps), ``prune`` (a dict of
    :class:`GradualPruner` arguments, e.g. ``dict(final_sparsity=0.8,
    begin_step=20, frequency=10, n_updates=5)``), ``clip_norm``, ``seed``,
    ``dtype``, ``backend``.

    Training is stateful truncated BPTT over ``batch_size`` parallel streams;
    validation is a stateful pass over the held-out tail of the text in
    evaluation mode (no dropout), with NT-ASGD's averaged parameters once it has
    triggered.
    """
    unknown = set(options) - set(LM_DEFAULTS)
    if unknown:
        raise TypeError(f"unknown option(s) {sorted(unknown)}; options: {sorted(LM_DEFAULTS)}")
    cfg = {**LM_DEFAULTS, **options}
    if cfg["optimizer"] not in LR_DEFAULTS:
        raise ValueError(f"optimizer must be one of {sorted(LR_DEFAULTS)}, got {cfg['optimizer']!r}")
    if cfg["lr"] is None:
        cfg["lr"] = LR_DEFAULTS[cfg["optimizer"]]
    backend = dispatch.current_backend(cfg["backend"])
    dtype = np.dtype(cfg["dtype"])

    text = load_text("tinyshakespeare", cfg["max_chars"])
    vocab = CharVocab(text)
    train_ids, val_ids = split_text(vocab.encode(text), cfg["val_fraction"])
    if cfg["val_chars"] is not None:
        val_ids = val_ids[:cfg["val_chars"]]
    model = RegularizedLM(cfg["cell"], cfg["hidden_size"], len(vocab), cfg["embed_dim"], cfg["num_layers"],
                          dropout_input=cfg["dropout_input"], dropout_hidden=cfg["dropout_hidden"],
                          dropout_output=cfg["dropout_output"], dropout_embedding=cfg["dropout_embedding"],
                          weight_drop=cfg["weight_drop"], variational=cfg["variational"], seed=cfg["seed"],
                          backend=backend)
    params = model.init_params(seed=cfg["seed"], dtype=dtype)

    if cfg["optimizer"] == "adam":
        optimizer = Adam(lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    elif cfg["optimizer"] == "sgd":
        optimizer = SGD(lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    else:
        optimizer = NTASGD(lr=cfg["lr"], nonmono=cfg["nonmono"], weight_decay=cfg["weight_decay"])
    ntasgd = optimizer if isinstance(optimizer, NTASGD) else None
    pruner = None
    if cfg["prune"] is not None:
        pruner = GradualPruner(**cfg["prune"])
        optimizer = PrunedOptimizer(optimizer, pruner)

    def eval_params(p):
        q = ntasgd.averaged_params(p) if ntasgd is not None else p
        if pruner is not None and q is not p:
            pruner.apply(q)        # the running mean may hold weights from before they were pruned
        return q

    run = LMRun(config=cfg, model=model, vocab=vocab, params=params, raw_params=params, history=History())
    B, T = cfg["batch_size"], cfg["seq_len"]
    run.val_steps.append(0)
    run.val_loss.append(evaluate_lm(model, params, val_ids, B, T))

    batches = char_batches(train_ids, B, T)
    carry = {"state": None}
    xp = array_module(params["readout.W"])

    def step_fn(p, step):
        inputs, targets = next(batches)
        model.train()
        logits, state, cache = model.forward(p, inputs, carry["state"])
        loss, dlogits = softmax_cross_entropy(logits, xp.asarray(targets))
        grads = model.backward(p, cache, dlogits)
        if cfg["l2"]:
            penalty, dpenalty = l2_penalty(p, cfg["l2"])
            loss, grads = loss + penalty, add_grads(grads, dpenalty)
        carry["state"] = tree_map(lambda a: a.copy(), state)    # truncated BPTT: keep the state, not the graph
        return loss, grads

    def validate(step, p, history):
        v = evaluate_lm(model, eval_params(p), val_ids, B, T)
        run.val_steps.append(step + 1)
        run.val_loss.append(v)
        if ntasgd is not None and ntasgd.check(v, p):
            run.trigger_step = ntasgd.trigger_step

    t0 = time.perf_counter()
    run.history = train(step_fn, params, optimizer, cfg["steps"], clip_norm=cfg["clip_norm"],
                        progress=cfg["progress"], desc="char LM", callback=validate,
                        callback_every=cfg["eval_every"])
    run.seconds = time.perf_counter() - t0
    run.raw_params = params
    run.params = eval_params(params)
    if not all(math.isfinite(v) for v in run.val_loss):
        raise FloatingPointError(f"validation loss became non-finite: {run.val_loss}")
    if pruner is not None:
        run.sparsity = pruner.report(run.params)
    run.nonzeros = count_nonzero({k: to_numpy(v) for k, v in run.params.items()})
    return run
