"""The Numba CPU backend: the ``numpy_ref`` cells with the time loop compiled and fused.

Importing this package registers ``rnn``, ``lstm`` (every variant option), ``gru``,
``scrn`` and ``leaky`` with
``rnnbook.dispatch`` under the backend name ``"numba"``.  If Numba cannot be
imported, the backend marks itself unavailable with the reason instead.

Compiled functions are cached on disk (``cache=True``) next to their source, so
only the first call of a (function, dtype) pair in a fresh environment compiles.
Numba checks only the source file of each cached function, not the helpers it
compiled in from other files (``functions.py``, ``gemm.py``); so that editing a
helper (an exercise, say) never runs stale machine code, this package keeps a hash
of all its sources and clears its own cache files when that hash changes.

Importing it also keeps large freed blocks in the C heap for the next call
(``memory.keep_large_blocks``): without that, every call would fault in its big
arrays page by page; and it registers ``gemm.single_threaded_blas`` as the
setting for the array code around its calls (``dispatch.host_blas``).
"""
import glob
import hashlib
import os

from .. import dispatch


def _clear_stale_cache():
    here = os.path.dirname(os.path.abspath(__file__))
    digest = hashlib.sha256()
    for path in sorted(glob.glob(os.path.join(here, "*.py"))):
        with open(path, "rb") as fh:
            digest.update(fh.read())
    cache_dir = os.path.join(here, "__pycache__")
    stamp = os.path.join(cache_dir, "numba-sources.sha256")
    try:
        with open(stamp) as fh:
            if fh.read() == digest.hexdigest():
                return
    except OSError:
        pass
    try:
        for path in glob.glob(os.path.join(cache_dir, "*.nbi")) + glob.glob(os.path.join(cache_dir, "*.nbc")):
            os.remove(path)
        os.makedirs(cache_dir, exist_ok=True)
        with open(stamp, "w") as fh:
            fh.write(digest.hexdigest())
    except OSError:  # read-only install: Numba then caches elsewhere or not at all
        pass

try:
    import numba  # noqa: F401
except ImportError as exc:  # pragma: no cover - numba is a project dependency
    dispatch.mark_unavailable(
        "numba", f"Numba is not importable ({exc}); install it with `pip install numba` "
                 "(it is a dependency of rnnbook: `pip install -e .`)")
else:
    _clear_stale_cache()
    from . import gemm, gru, leaky, lstm, memory, rnn, scrn

    memory.keep_large_blocks()
    dispatch.register_host_blas("numba", gemm.single_threaded_blas)

    CELLS = {m.NAME: m for m in (rnn, lstm, gru, scrn, leaky)}
    for _name, _module in CELLS.items():
        dispatch.register_module(_name, "numba", _module, ("init_params", "forward", "backward"))
