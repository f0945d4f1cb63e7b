"""The one dispatch interface: choose a backend, route a call to it.

Every architecture is implemented once per backend behind the same signatures
(see ``shared/DESIGN.md``).  This module keeps a registry

    (architecture, operation) -> {backend: implementation}

and the public functions ``forward``, ``backward``, ``rtrl`` and ``init_params``
look an implementation up and call it.  Backends register themselves when their
package is imported; an optional backend whose dependency is missing registers
nothing and records *why* instead, so that asking for it gives a useful error.

Choosing a backend, strongest first::

    rb.forward("lstm", params, x, backend="numba")   # 1. explicit argument
    with rb.use_backend("numba"): ...                 # 2. context manager
    RNNBOOK_BACKEND=numba python ...                  # 3. environment variable
                                                      # 4. "numpy"

Composite architectures (``stacked``, ``bidirectional``) are written once on top
of this interface; they are registered for the backend ``"*"`` and run on
whichever backend the call chose, as long as that backend has their inner cell.

A model mixes a backend's calls with array code of its own (an embedding, a
read-out, a loss).  ``host_blas(backend)`` is the setting that code should run
under between the backend's calls: a backend that runs its own threads registers
one (``register_host_blas``); for the others it does nothing::

    with rb.host_blas("numba"):                      # NumPy's BLAS on the calling thread
        h, state, cache = rb.forward("lstm", params, x, backend="numba")
        logits = h @ W_out.T
"""
from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import os
import threading
from typing import Callable, Iterator

#: Backends the project knows about, with the package that implements each.
BACKEND_PACKAGES = {
    "numpy": "rnnbook.numpy_ref",
    "numba": "rnnbook.numba_cpu",
    "cupy": "rnnbook.cupy_gpu",
}
#: Operations every architecture may implement.
OPERATIONS = ("init_params", "forward", "backward", "rtrl")
#: Backend key for implementations written on top of dispatch (run anywhere).
ANY = "*"

_registry: dict[tuple[str, str], dict[str, Callable]] = {}
_unavailable: dict[str, str] = {}      # backend -> why it cannot run here
_loaded: set[str] = set()
_loading: set[str] = set()             # being imported now (by the thread holding _load_lock)
_host_blas: dict[str, Callable] = {}   # backend -> context manager factory for the code around its calls
_context = threading.local()
_load_lock = threading.RLock()


class BackendUnavailableError(RuntimeError):
    """The requested backend cannot run on this machine (the message says why)."""


class NotImplementedForBackendError(NotImplementedError):
    """The architecture exists but this backend does not implement the operation."""


# --------------------------------------------------------------------------- registry
def register(architecture: str, operation: str, backend: str, fn: Callable) -> Callable:
    """Register ``fn`` as ``backend``'s implementation of ``operation`` for ``architecture``."""
    if operation not in OPERATIONS:
        raise ValueError(f"unknown operation {operation!r}; expected one of {OPERATIONS}")
    if backend != ANY and backend not in BACKEND_PACKAGES:
        raise ValueError(f"unknown backend {backend!r}; expected one of {tuple(BACKEND_PACKAGES)}")
    _registry.setdefault((architecture, operation), {})[backend] = fn
    return fn


def register_module(architecture: str, backend: str, module, operations=OPERATIONS) -> None:
    """Register every function of ``module`` named after an operation."""
    for op in operations:
        fn = getattr(module, op, None)
        if fn is not None:
            register(architecture, op, backend, fn)


def mark_unavailable(backend: str, reason: str) -> None:
    """Record that ``backend`` cannot run here and why (called by a backend package on import)."""
    _unavailable[backend] = reason


def register_host_blas(backend: str, context: Callable) -> None:
    """Register ``context()``, a context manager, as ``backend``'s setting for the array code
    that runs between its calls (see :func:`host_blas`)."""
    _check_backend_name(backend)
    if not callable(context):
        raise TypeError(f"context must be callable (it makes the context manager), got {context!r}")
    _host_blas[backend] = context


def host_blas(backend: str | None = None):
    """A context manager for array code that runs between calls of ``backend`` (default: the
    current one), as a model's embedding, read-out and loss do.

    The Numba backend runs every product on threads of its own, one per core, and keeps
    NumPy's OpenBLAS on the calling thread inside its calls.  Between them NumPy would
    thread its products again, and OpenBLAS's idle workers then spin for about 0.1 s
    after each threaded call, on the cores the backend's threads need next: the demo's
    character model (LSTM H=128, B=32, T=64) took 18-22 ms per training step on two cores
    instead of 9-13 (``benchmarks/host_blas.py``).  So for ``"numba"`` this is
    ``numba_cpu.gemm.single_threaded_blas()``: inside it NumPy's OpenBLAS runs every call
    on the calling thread (process-wide, and restored at the end).  For the NumPy and CuPy
    backends it does nothing.  The models (``SequenceModel``, ``BiLSTMCRF``,
    ``RegularizedLM``, the timing-task curricula) use it around their ``forward`` and
    ``backward`` (:func:`with_host_blas`).
    """
    backend = current_backend(backend)
    _load(backend)
    context = _host_blas.get(backend)
    return context() if context is not None else contextlib.nullcontext()


def with_host_blas(method: Callable) -> Callable:
    """Decorator for a model's methods that mix its backend's calls with array code: runs
    ``method(self, ...)`` under ``host_blas(self.backend)``.  Not for generator functions,
    whose body runs only after the call has returned (and the block has closed)."""
    if inspect.isgeneratorfunction(method):
        raise TypeError(f"with_host_blas cannot wrap the generator function {method.__qualname__}")

    @functools.wraps(method)
    def run(self, *args, **kwargs):
        with host_blas(self.backend):
            return method(self, *args, **kwargs)
    return run


def _load(backend: str) -> None:
    """Import a backend package once; it registers itself or marks itself unavailable.

    Under a lock, and marked loaded only once imported: a second thread asking while the
    first still imports waits for the registrations instead of finding none.  (The lock is
    re-entrant and ``_loading`` ends the recursion when a package, while it is imported,
    asks for its own backend.)"""
    if backend in _loaded:
        return
    with _load_lock:
        if backend in _loaded or backend in _loading:
            return
        _loading.add(backend)
        try:
            importlib.import_module(BACKEND_PACKAGES[backend])
        except ImportError as exc:  # the package itself is absent (e.g. not written yet)
            _unavailable.setdefault(backend, f"could not import {BACKEND_PACKAGES[backend]}: {exc}")
        finally:
            _loading.discard(backend)
            _loaded.add(backend)


def _load_all() -> None:
    for name in BACKEND_PACKAGES:
        _load(name)


# --------------------------------------------------------------------------- choosing
def _check_backend_name(name: str) -> str:
    if not isinstance(name, str) or name not in BACKEND_PACKAGES:
        raise ValueError(
            f"unknown backend {name!r}; expected one of {sorted(BACKEND_PACKAGES)}")
    return name


def current_backend(backend: str | None = None) -> str:
    """The backend a call would use: explicit > ``use_backend`` > ``RNNBOOK_BACKEND`` > numpy."""
    if backend is not None:
        return _check_backend_name(backend)
    stack = getattr(_context, "stack", None)
    if stack:
        return stack[-1]
    env = os.environ.get("RNNBOOK_BACKEND")
    if env:
        try:
            return _check_backend_name(env)
        except ValueError as exc:
            raise ValueError(f"environment variable RNNBOOK_BACKEND: {exc}") from None
    return "numpy"


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[str]:
    """Context manager: calls inside use ``name`` unless they pass ``backend=`` themselves."""
    require_available(_check_backend_name(name))
    stack = getattr(_context, "stack", None)
    if stack is None:
        stack = _context.stack = []
    stack.append(name)
    try:
        yield name
    finally:
        stack.pop()


def require_available(backend: str) -> None:
    """Raise ``BackendUnavailableError`` (saying why) unless ``backend`` can run here."""
    _load(backend)
    if backend in _unavailable:
        raise BackendUnavailableError(f"backend {backend!r} cannot run here: {_unavailable[backend]}")


def available_backends() -> list[str]:
    """Backends that can run on this machine, in preference order."""
    _load_all()
    return [b for b in BACKEND_PACKAGES if b not in _unavailable]


def unavailable_backends() -> dict[str, str]:
    """Backends that cannot run here, each with the reason."""
    _load_all()
    return dict(_unavailable)


def architectures() -> list[str]:
    """Names of every registered architecture (across all backends)."""
    _load_all()
    return sorted({arch for arch, _ in _registry})


def coverage() -> list[tuple[str, str, str]]:
    """Rows ``(architecture, operation, backend)`` that are implemented.

    Backend ``"*"`` marks a composite written on top of dispatch: it runs on any
    backend that implements its inner cell.
    """
    _load_all()
    return sorted((arch, op, be) for (arch, op), impls in _registry.items() for be in impls)


def coverage_table() -> str:
    """``coverage()`` as a Markdown table: one row per architecture, one column per backend,
    each cell listing the operations implemented (``init_params`` left out)."""
    ops: dict[tuple[str, str], list[str]] = {}
    for arch, op, be in coverage():
        if op != "init_params":
            ops.setdefault((arch, be), []).append(op)
    backends = list(BACKEND_PACKAGES) + [ANY]
    header = [b if b != ANY else "any backend (composite)" for b in backends]
    lines = ["| architecture | " + " | ".join(header) + " |", "|---|" + "---|" * len(backends)]
    for arch in sorted({a for a, _ in ops}):
        cells = [", ".join(sorted(ops.get((arch, b), []), key=OPERATIONS.index)) for b in backends]
        lines.append(f"| {arch} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- lookup
def lookup(architecture: str, operation: str, backend: str | None = None) -> tuple[Callable, str]:
    """Return ``(implementation, backend_name)`` or raise a clear error."""
    name = current_backend(backend)
    _load_all()
    if not isinstance(architecture, str) or not any(a == architecture for a, _ in _registry):
        raise ValueError(
            f"unknown architecture {architecture!r}; registered architectures: {architectures()}")
    require_available(name)
    impls = _registry.get((architecture, operation), {})
    if name in impls:
        return impls[name], name
    if ANY in impls:
        return impls[ANY], name
    have = sorted(b for b in impls)
    raise NotImplementedForBackendError(
        f"{architecture!r} has no {operation!r} on backend {name!r}; "
        + (f"backends that have it: {have}" if have else "no backend implements it"))


# --------------------------------------------------------------------------- public calls
def _call(architecture, operation, backend, *args, **kwargs):
    fn, name = lookup(architecture, operation, backend)
    if _registry[(architecture, operation)].get(name) is not fn:  # composite: tell it the backend
        kwargs["backend"] = name
    return fn(*args, **kwargs), name


def init_params(architecture: str, input_size: int, hidden_size: int, seed: int = 0,
                dtype=None, backend: str | None = None, **options) -> dict:
    """Fresh parameters ``dict[str, array]`` for ``architecture`` (see each module's ``init_params``)."""
    import numpy as np
    kwargs = dict(seed=seed, dtype=np.float64 if dtype is None else dtype, **options)
    params, _ = _call(architecture, "init_params", backend, input_size, hidden_size, **kwargs)
    return params


def forward(architecture: str, params: dict, x, state0=None, backend: str | None = None, **options):
    """Run ``architecture`` over the sequence ``x`` of shape ``(T, B, D)``.

    Returns ``(y, state, cache)``: outputs ``(T, B, H)``, the final state (a tuple
    of arrays) and whatever ``backward`` needs.  ``cache["backend"]`` records the
    backend that made it.
    """
    (y, state, cache), name = _call(architecture, "forward", backend, params, x, state0, **options)
    cache["backend"] = name
    return y, state, cache


def backward(architecture: str, params: dict, cache: dict, dy, dstate=None,
             backend: str | None = None, window: int | None = None) -> dict:
    """Gradients of ``sum(dy * y) + sum(dstate * state)`` by backpropagation through time.

    ``window=k`` truncates BPTT: the error injected at step ``t`` flows back through
    at most ``k`` steps (``k >= T`` is full BPTT).  The backend defaults to the one
    that produced ``cache``; naming a different one is an error.
    """
    if not isinstance(cache, dict) or "backend" not in cache:
        raise TypeError("cache must be the third value returned by rnnbook.forward")
    made_by = cache["backend"]
    if backend is not None and _check_backend_name(backend) != made_by:
        raise ValueError(f"cache was produced by backend {made_by!r} but backward was asked "
                         f"to run on {backend!r}; run forward and backward on the same backend")
    grads, _ = _call(architecture, "backward", made_by, params, cache, dy, dstate, window=window)
    return grads


def rtrl(architecture: str, params: dict, x, dy, state0=None, dstate=None,
         backend: str | None = None, **options) -> dict:
    """The same gradients as ``backward``, computed forward in time by real-time recurrent learning."""
    grads, _ = _call(architecture, "rtrl", backend, params, x, dy, state0, dstate, **options)
    return grads
