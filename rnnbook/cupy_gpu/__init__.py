"""The CuPy GPU backend: RNN, LSTM and GRU as CUDA C kernels launched through CuPy.

Layout::

    kernels/common.cuh       portability macros (GPU / host emulation)
    kernels/cells.cuh        the per-element cell arithmetic, shared by every kernel
    kernels/alternating.cu   teaching version: GEMM + one pointwise kernel per step
    kernels/persistent.cu    one launch per sequence, W_hh on chip, inter-block barrier
    kernels/host_emulation.h CUDA built-ins on std::thread, to run the kernels on a CPU
    sources.py               catalogue of every kernel specialisation
    engine.py                the Python driver of both implementations (xp-agnostic)
    gpu.py                   CuPy launcher (RawModule, compiled once and cached)
    emulation.py             host launcher (g++ build, ctypes)
    compile_check.py         NVRTC/nvcc compile of every kernel for sm_80 and sm_90
    rnn.py, lstm.py, gru.py  the per-architecture modules registered with dispatch

Importing this package registers the cells under the backend name ``"cupy"``
when CuPy imports and a CUDA device is present; otherwise it records why not
(``rnnbook.unavailable_backends()``).  The kernel sources, the compile check
and the host emulation work without CuPy.
"""
from .. import dispatch
from . import gpu

CELLS = {}

_ok, _why = gpu.device_status()
if _ok:
    from . import gru, lstm, rnn

    CELLS = {m.NAME: m for m in (rnn, lstm, gru)}
    for _name, _module in CELLS.items():
        dispatch.register_module(_name, "cupy", _module)
    DEVICE = _why
else:
    DEVICE = None
    dispatch.mark_unavailable("cupy", _why)
