r"""Memory tasks with a dial ``N`` for how far back the answer lies, and two curricula over ``N``.

The setting of Khajehabdollahi, Zeraati, Giannakakis, Schäfer, Martius & Levina
(2024), *Emergent mechanisms for long timescales depend on training curriculum
and affect performance in memory tasks*.  The input is a stream of random bits
``u_t ∈ {0, 1}`` (fed to a network as one channel, see :func:`bits_to_inputs`).

**N-parity**: the answer at step ``t`` is the parity of the last ``N`` bits,

    target_t = (u_{t-N+1} + … + u_t) mod 2,          defined for t >= N-1.

**N-delayed match-to-sample (N-DMS)**: the answer is whether the bit now matches
the bit ``N`` steps ago,

    target_t = [u_t = u_{t-N}],                      defined for t >= N.

``readout="last"`` asks for the answer at the last step only, as the paper does
(one label per sequence, sequence lengths drawn from ``[N+2, 4N+2)`` so that a
network cannot count from the start); ``readout="every"`` asks at every step
where the answer is defined (more labels per sequence, faster to learn).  The
generators return ``(bits (T, B) int64, targets (T, B) int64, mask (T, B) float64)``
with ``mask`` marking the steps that are scored, in the style of ``copy_task``.

**Curricula.**  Training a network directly on a large ``N`` fails; the paper
grows ``N`` instead, in one of two ways:

- :class:`SingleNCurriculum` (*single-head*): one read-out head, trained on the
  current ``N``; when its accuracy passes the threshold (98% in the paper), ``N``
  grows by one and the same head is trained on the new ``N``.  Old ``N`` are no
  longer trained (and are forgotten).
- :class:`MultiNCurriculum` (*multi-head*): one head per ``N' = n_start … N``, all
  trained together on the same input stream (the loss is the sum over heads);
  when the mean accuracy over heads *and* the newest head's accuracy pass the
  threshold, a head for ``N + 1`` is added.

Both are objects whose ``step_fn`` and ``callback`` plug into ``rnnbook.train.train``::

    cur = MultiNCurriculum(task="parity", cell="leaky", hidden_size=32)
    params = cur.init_params(seed=0)
    train(cur.step_fn, params, Adam(1e-2), steps=2000, callback=cur.callback, callback_every=50)
    cur.log        # one record per evaluation: step, the Ns trained, their accuracies, advanced?

The recurrent core is any architecture registered with ``rnnbook.dispatch``
(``"leaky"`` by default, whose per-neuron ``τ`` the paper studies).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from .. import dispatch
from ..layers import linear
from ..losses import softmax_cross_entropy

TASKS = ("parity", "dms")
READOUTS = ("last", "every")


# ------------------------------------------------------------------ checks
def _check_positive_int(value, name, minimum=1):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_choice(value, name, choices):
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def _check_bits(bits):
    if not hasattr(bits, "dtype") or bits.dtype.kind not in "iub" or bits.ndim != 2:
        raise TypeError(f"bits must be a (T, B) integer array, got "
                        f"{getattr(bits, 'dtype', type(bits).__name__)} of shape {getattr(bits, 'shape', None)}")
    if bits.size and (bits.min() < 0 or bits.max() > 1):
        raise ValueError("bits must hold only 0 and 1")


def first_answer_step(task, n):
    """The first step ``t`` at which the answer is defined: ``N - 1`` for parity, ``N`` for DMS."""
    return n - 1 if task == "parity" else n


def default_length_range(n):
    """Sequence lengths the paper draws from, for a largest trained ``N``: ``[N + 2, 4N + 2)``."""
    return n + 2, 4 * n + 2


# ------------------------------------------------------------------ targets of a bit stream
def parity_targets(bits, n, readout="last"):
    """``(targets (T, B) int64, mask (T, B) float64)`` of N-parity for a bit stream ``bits (T, B)``.

    ``targets[t] = Σ_{k < N} bits[t-k] mod 2`` where defined (0 elsewhere, masked out).
    """
    _check_bits(bits)
    n = _check_positive_int(n, "n")
    _check_choice(readout, "readout", READOUTS)
    T = bits.shape[0]
    if T < n:
        raise ValueError(f"N-parity with N={n} needs sequences of length >= {n}, got T={T}")
    csum = np.concatenate([np.zeros((1,) + bits.shape[1:], np.int64), np.cumsum(bits, axis=0, dtype=np.int64)])
    targets = np.zeros(bits.shape, np.int64)
    targets[n - 1:] = (csum[n:] - csum[:T - n + 1]) % 2             # window sums u_{t-N+1..t}
    return targets, _mask(bits.shape, n - 1, readout)


def dms_targets(bits, n, readout="last"):
    """``(targets (T, B) int64, mask (T, B) float64)`` of N-DMS: ``targets[t] = [bits[t] == bits[t-N]]``."""
    _check_bits(bits)
    n = _check_positive_int(n, "n")
    _check_choice(readout, "readout", READOUTS)
    T = bits.shape[0]
    if T < n + 1:
        raise ValueError(f"N-DMS with N={n} needs sequences of length >= {n + 1}, got T={T}")
    targets = np.zeros(bits.shape, np.int64)
    targets[n:] = (bits[n:] == bits[:-n]).astype(np.int64)
    return targets, _mask(bits.shape, n, readout)


def task_targets(task, bits, n, readout="last"):
    """Targets and mask of ``task`` (``"parity"`` or ``"dms"``) for a bit stream."""
    _check_choice(task, "task", TASKS)
    return (parity_targets if task == "parity" else dms_targets)(bits, n, readout)


def _mask(shape, first, readout):
    mask = np.zeros(shape)
    if readout == "last":
        mask[-1] = 1.0
    else:
        mask[first:] = 1.0
    return mask


# ------------------------------------------------------------------ generators
def random_bits(batch_size, length, seed=0):
    """Independent fair bits ``(length, batch_size)`` int64."""
    batch_size = _check_positive_int(batch_size, "batch_size")
    length = _check_positive_int(length, "length")
    return np.random.default_rng(seed).integers(0, 2, size=(length, batch_size), dtype=np.int64)


def _generate(task, batch_size, n, length, readout, seed):
    n = _check_positive_int(n, "n")
    rng = np.random.default_rng(seed)
    if length is None:
        low, high = default_length_range(n)
        length = int(rng.integers(low, high))
    length = _check_positive_int(length, "length")
    bits = random_bits(batch_size, length, seed=rng.integers(2**63))
    return (bits,) + task_targets(task, bits, n, readout)


def parity_task(batch_size: int, n: int, length: int | None = None, readout: str = "last", seed: int = 0):
    """N-parity: ``(bits (T, B), targets (T, B), mask (T, B))``.  ``length=None`` draws ``T`` from ``[N+2, 4N+2)``."""
    return _generate("parity", batch_size, n, length, readout, seed)


def dms_task(batch_size: int, n: int, length: int | None = None, readout: str = "last", seed: int = 0):
    """N-delayed match-to-sample: ``(bits, targets, mask)``, each ``(T, B)``."""
    return _generate("dms", batch_size, n, length, readout, seed)


def bits_to_inputs(bits, dtype=np.float64):
    """Bits ``(T, B)`` -> network input ``(T, B, 1)``: the bit itself, 0.0 or 1.0, as the paper feeds it."""
    _check_bits(bits)
    return bits.astype(dtype)[:, :, None]


# ------------------------------------------------------------------ curricula
@dataclass
class CurriculumRecord:
    """One evaluation of a curriculum: when, which ``N`` were trained, how well, and whether it advanced."""
    step: int
    ns: tuple
    accuracy: dict
    advanced: bool


class _Curriculum(ABC):
    """What both curricula share: the model (core + linear heads), the loss, evaluation and the log."""

    def __init__(self, task="parity", cell="leaky", hidden_size=32, n_start=2, n_max=None, threshold=0.98,
                 batch_size=64, readout="last", eval_size=512, seed=0, backend=None, **cell_options):
        self.task = _check_choice(task, "task", TASKS)
        self.readout = _check_choice(readout, "readout", READOUTS)
        self.n_start = _check_positive_int(n_start, "n_start")
        self.n_max = None if n_max is None else _check_positive_int(n_max, "n_max", self.n_start)
        if not isinstance(threshold, (int, float)) or isinstance(threshold, bool):
            raise TypeError(f"threshold must be a number (an accuracy in [0, 1]), got {threshold!r}")
        self.threshold = float(threshold)
        self.batch_size = _check_positive_int(batch_size, "batch_size")
        self.eval_size = _check_positive_int(eval_size, "eval_size")
        self.hidden_size = _check_positive_int(hidden_size, "hidden_size")
        self.cell, self.cell_options, self.seed = cell, dict(cell_options), int(seed)
        self.backend = dispatch.current_backend(backend)
        if self.backend == "cupy":
            raise ValueError("the curricula build their batches, heads and loss in NumPy; "
                             "use backend 'numpy' or 'numba' for the recurrent core")
        self.n = self.n_start                     # the largest N trained now
        self.log: list[CurriculumRecord] = []
        self._dtype = np.float64

    # -------------------------------------------------------------- what differs between the two
    @property
    @abstractmethod
    def ns(self) -> tuple:
        """The ``N`` trained right now, one per head."""

    @abstractmethod
    def head_name(self, n) -> str:
        """The parameter prefix of the head that answers for ``N = n``."""

    @abstractmethod
    def _passed(self, accuracy: dict) -> bool:
        """Whether the accuracies ``{N: accuracy}`` of one evaluation pass the threshold."""

    @abstractmethod
    def _advance(self, params) -> None:
        """Move on to the next ``N`` (adding parameters to ``params`` in place if needed)."""

    # -------------------------------------------------------------- parameters
    def _new_head(self, seed):
        return linear.init_params(self.hidden_size, 2, seed=seed, dtype=self._dtype)

    def init_params(self, seed=0, dtype=np.float64) -> dict:
        """Core parameters under ``"core."`` and one ``linear`` head per trained ``N``."""
        self._dtype = dtype
        core = dispatch.init_params(self.cell, 1, self.hidden_size, seed=seed, dtype=dtype,
                                    backend=self.backend, **self.cell_options)
        params = {f"core.{k}": v for k, v in core.items()}
        for n in self.ns:
            params.update({f"{self.head_name(n)}.{k}": v for k, v in self._new_head(seed + 1000 + n).items()})
        return params

    # -------------------------------------------------------------- loss and gradients
    def batch(self, seed, size=None, ns=None):
        """A bit stream long enough for the current ``N``: ``(bits (T, B), {N: (targets, mask)})``.

        ``ns`` chooses the ``N`` to answer (default: the trained ones, ``self.ns``).
        """
        ns = self.ns if ns is None else tuple(ns)
        rng = np.random.default_rng(seed)
        low, high = default_length_range(max((self.n,) + ns))
        bits = random_bits(size or self.batch_size, int(rng.integers(low, high)), seed=rng.integers(2**63))
        return bits, {n: task_targets(self.task, bits, n, self.readout) for n in ns}

    @dispatch.with_host_blas
    def _forward(self, params, bits, ns=None):
        core = {k[5:]: v for k, v in params.items() if k.startswith("core.")}
        x = bits_to_inputs(bits, self._dtype)
        h, _, cache = dispatch.forward(self.cell, core, x, backend=self.backend, **self.cell_options)
        logits = {}
        for n in self.ns if ns is None else ns:
            head = self.head_name(n)
            logits[n] = linear.forward({"W": params[f"{head}.W"], "b": params[f"{head}.b"]}, h)
        return core, h, cache, logits

    @dispatch.with_host_blas
    def loss_and_grads(self, params, bits, answers):
        """Sum over heads of the masked mean cross-entropy, and its gradient for every parameter."""
        core, h, cache, logits = self._forward(params, bits)
        loss, dh, grads = 0.0, np.zeros_like(h), {}
        for n in self.ns:
            head = self.head_name(n)
            out, head_cache = logits[n]
            targets, mask = answers[n]
            loss_n, dout = softmax_cross_entropy(out, targets, mask)
            g = linear.backward({"W": params[f"{head}.W"], "b": params[f"{head}.b"]}, head_cache, dout)
            loss += loss_n
            dh += g["h"]                                    # every head reads the same h
            grads[f"{head}.W"], grads[f"{head}.b"] = g["W"], g["b"]
        g_core = dispatch.backward(self.cell, core, cache, dh)
        grads.update({f"core.{k}": g_core[k] for k in core})
        return loss, grads

    def step_fn(self, params, step):
        """For ``rnnbook.train.train``: a fresh batch for the current ``N`` (seeded by the step)."""
        bits, answers = self.batch(seed=(self.seed, step))
        return self.loss_and_grads(params, bits, answers)

    # -------------------------------------------------------------- evaluation and growth
    def evaluate(self, params, seed=None, ns=None) -> dict:
        """Accuracy on ``eval_size`` fresh sequences: ``{N: accuracy}`` for every trained head.

        ``ns`` asks about other ``N`` instead: the single head answers for any ``N``
        (what it still knows of an earlier ``N`` shows the forgetting); a multi-head
        network can be asked only about ``N`` that have a head.
        """
        ns = self.ns if ns is None else tuple(ns)
        missing = [n for n in ns if f"{self.head_name(n)}.W" not in params]
        if missing:
            raise ValueError(f"no read-out head for N = {missing}; heads exist for N = {list(self.ns)}")
        bits, answers = self.batch(seed=(self.seed, 10**9, len(self.log)) if seed is None else seed,
                                   size=self.eval_size, ns=ns)
        _, _, _, logits = self._forward(params, bits, ns)
        accuracy = {}
        for n in ns:
            targets, mask = answers[n]
            predicted = logits[n][0].argmax(axis=-1)
            accuracy[n] = float(((predicted == targets) * mask).sum() / mask.sum())
        return accuracy

    def callback(self, step, params, history=None):
        """For ``rnnbook.train.train``: evaluate, log, and grow ``N`` when the threshold is passed."""
        accuracy = self.evaluate(params)
        advance = self._passed(accuracy) and (self.n_max is None or self.n < self.n_max)
        self.log.append(CurriculumRecord(int(step), self.ns, accuracy, bool(advance)))
        if advance:
            self._advance(params)
        return advance

    @property
    def solved(self) -> int | None:
        """The largest ``N`` whose threshold has been passed so far (``None`` before the first)."""
        done = [max(r.ns) for r in self.log if r.advanced]
        return max(done) if done else None


class SingleNCurriculum(_Curriculum):
    """Single-head curriculum: one head trained on the current ``N``; ``N += 1`` when its accuracy
    exceeds ``threshold``.  See the module docstring for the arguments' meaning."""

    @property
    def ns(self):
        return (self.n,)

    def head_name(self, n):
        return "head"

    def _passed(self, accuracy):
        return accuracy[self.n] > self.threshold

    def _advance(self, params):
        self.n += 1                                   # the same head now answers for the new N


class MultiNCurriculum(_Curriculum):
    """Multi-head curriculum: heads for ``N' = n_start … N`` trained together; a head for ``N + 1`` is
    added when both the mean accuracy and the newest head's accuracy exceed ``threshold``."""

    @property
    def ns(self):
        return tuple(range(self.n_start, self.n + 1))

    def head_name(self, n):
        return f"head{n}"

    def _passed(self, accuracy):
        return float(np.mean(list(accuracy.values()))) > self.threshold and accuracy[self.n] > self.threshold

    def _advance(self, params):
        self.n += 1
        head = self._new_head(self.seed + 1000 + self.n)
        for k, v in head.items():                     # the optimiser meets a new parameter and starts its state
            params[f"{self.head_name(self.n)}.{k}"] = v
