"""The Numba CPU backend: the ``numpy_ref`` cells with the time loop compiled and fused.

Importing this package registers ``rnn``, ``lstm`` and ``gru`` with
``rnnbook.dispatch`` under the backend name ``"numba"``.  If Numba cannot be
imported, the backend marks itself unavailable with the reason instead.

Compiled functions are cached on disk (``cache=True``) next to their source, so
only the first call of a (function, dtype) pair in a fresh environment compiles.
"""
from .. import dispatch

try:
    import numba  # noqa: F401
except ImportError as exc:  # pragma: no cover - numba is a project dependency
    dispatch.mark_unavailable(
        "numba", f"Numba is not importable ({exc}); install it with `pip install numba` "
                 "(it is a dependency of rnnbook: `pip install -e .`)")
else:
    from . import gru, lstm, rnn

    CELLS = {m.NAME: m for m in (rnn, lstm, gru)}
    for _name, _module in CELLS.items():
        dispatch.register_module(_name, "numba", _module, ("init_params", "forward", "backward"))
