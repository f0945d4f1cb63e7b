"""rnnbook: an executable textbook of recurrent neural networks.

The public API (re-exports only; see ``dispatch`` for the logic)::

    params = rb.init_params("lstm", input_size=D, hidden_size=H, seed=0)
    y, state, cache = rb.forward("lstm", params, x)          # x: (T, B, D)
    grads = rb.backward("lstm", params, cache, dy)          # dict: params, "x", "state0"
    grads = rb.rtrl("lstm", params, x, dy)                  # same dict, forward in time
    with rb.use_backend("numba"): ...
    with rb.host_blas("numba"): ...                         # array code between the backend's calls
"""
from . import gradcheck
from .dispatch import (architectures, available_backends, backward, coverage, coverage_table,
                       current_backend, forward, host_blas, init_params, rtrl, unavailable_backends,
                       use_backend)
from . import layers  # noqa: F401  (registers the composite architectures)

__all__ = ["architectures", "available_backends", "backward", "coverage", "coverage_table",
           "current_backend", "forward", "gradcheck", "host_blas", "init_params", "rtrl",
           "unavailable_backends", "use_backend"]
__version__ = "0.1.0"
