"""Run the GPU kernels on the CPU: the host-emulation harness.

The ``.cu`` files are compiled with g++ (``-std=c++20 -DRNNBOOK_HOST_EMULATION``,
``kernels/host_emulation.h`` included first) into one shared library, loaded
with ctypes.  Two kinds of entry points are generated from the catalogue in
``sources.py``:

* ``rnnemu_<i>(grid, block, shared_bytes, args)`` launches kernel ``i`` with
  one ``std::thread`` per CUDA thread (``__syncthreads`` is a ``std::barrier``,
  shared memory a per-block array, the persistent kernels' inter-block barrier
  real atomics).  :class:`EmulatedLauncher` wraps them with the same call
  convention as a ``cupy.RawKernel`` -- ``kernel(grid, block, args,
  shared_mem=...)`` with NumPy arrays in place of CuPy arrays -- so the
  backend's Python driver (``engine.py``) runs unchanged on the host.
* ``rnncell_<name>_<f32|f64>(n, inputs, outputs)`` apply one ``__device__``
  cell function of ``cells.cuh`` elementwise over arrays
  (:func:`cell_function`), so the per-element arithmetic can be compared with
  ``numpy_ref`` directly.

Nothing here needs CuPy or a GPU; g++ >= 11 (C++20 ``<barrier>``) is required.
Builds are cached under ``$RNNBOOK_CACHE_DIR`` (default ``~/.cache/rnnbook``),
keyed by a hash of the sources.

Stepping through a kernel: build with ``build_library(debug=True)`` (``-O0 -g``)
and run Python under gdb; break on e.g. ``persistent_forward<double, 2>``.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import threading

import numpy as np

from . import sources

#: The ``__device__`` functions of cells.cuh exported for direct tests:
#: name -> (C++ expression with T, number of inputs, number of outputs, returns-a-value)
CELL_FUNCTIONS = {
    "sigmoid": ("rnn_sigmoid<T>", 1, 1, True),
    "rnn_tanh_forward": ("rnn_cell_forward<T, false>", 1, 1, True),
    "rnn_relu_forward": ("rnn_cell_forward<T, true>", 1, 1, True),
    "rnn_tanh_backward": ("rnn_cell_backward<T, false>", 2, 1, True),
    "rnn_relu_backward": ("rnn_cell_backward<T, true>", 2, 1, True),
    "lstm_forward": ("lstm_cell_forward<T>", 5, 7, False),
    "lstm_backward": ("lstm_cell_backward<T>", 8, 5, False),
    "gru_forward_after": ("gru_cell_forward_after<T>", 7, 4, False),
    "gru_backward_after": ("gru_cell_backward_after<T>", 6, 5, False),
    "gru_forward_before_gates": ("gru_cell_forward_before_gates<T>", 5, 3, False),
    "gru_forward_before_output": ("gru_cell_forward_before_output<T>", 4, 2, False),
    "gru_backward_before_gates": ("gru_cell_backward_before_gates<T>", 4, 3, False),
    "gru_backward_before_reset": ("gru_cell_backward_before_reset<T>", 3, 2, False),
}
_SUFFIX = {"float": "f32", "double": "f64"}


class EmulationUnavailable(RuntimeError):
    """No suitable host C++ compiler."""


def find_cxx():
    for cand in (os.environ.get("RNNBOOK_CXX"), os.environ.get("CXX"), shutil.which("g++")):
        if cand and shutil.which(cand):
            return shutil.which(cand)
    return None


def _kernel_list():
    return sorted(sources.KERNELS)


def wrapper_source() -> str:
    """The generated C++ file: includes the kernels and defines the extern "C" entry points."""
    lines = ['#include "host_emulation.h"']
    lines += [f'#include "{f}"' for f in sources.CU_FILES]
    lines.append("#include <cstdio>")
    for i, name in enumerate(_kernel_list()):
        spec = sources.KERNELS[name]
        args = ", ".join(f"*({p}*)args[{k}]" if p != "int" else f"*(int*)args[{k}]"
                         for k, p in enumerate(spec.params))
        lines.append(
            f'extern "C" int rnnemu_{i}(unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, '
            f'unsigned bz, unsigned long smem, void** args, char* err, int errlen) {{\n'
            f'    std::string e;\n'
            f'    int rc = rnn_emu::launch(dim3(gx, gy, gz), dim3(bx, by, bz), smem, [&] {{ {name}({args}); }}, &e);\n'
            f'    if (rc && err && errlen > 0) std::snprintf(err, errlen, "%s", e.c_str());\n'
            f'    return rc;\n}}')
    for fname, (expr, n_in, n_out, returns) in CELL_FUNCTIONS.items():
        for scalar, suffix in _SUFFIX.items():
            e = expr.replace("<T", f"<{scalar}")
            ins = ", ".join(f"in[{k}][i]" for k in range(n_in))
            outs = ", ".join(f"out[{k}][i]" for k in range(n_out))
            body = f"out[0][i] = {e}({ins});" if returns else f"{e}({ins}, {outs});"
            lines.append(f'extern "C" void rnncell_{fname}_{suffix}(long n, const {scalar}* const* in, '
                         f'{scalar}* const* out) {{ for (long i = 0; i < n; ++i) {{ {body} }} }}')
    return "\n".join(lines) + "\n"


def cache_dir() -> str:
    return os.environ.get("RNNBOOK_CACHE_DIR", os.path.join(os.path.expanduser("~"), ".cache", "rnnbook"))


def build_library(debug: bool = False, extra_flags=(), force: bool = False) -> str:
    """Compile the emulation library (cached); returns its path."""
    cxx = find_cxx()
    if cxx is None:
        raise EmulationUnavailable("host emulation needs g++ (>= 11, for C++20 <barrier>); "
                                   "install it (apt-get install g++) or set RNNBOOK_CXX")
    flags = ["-std=c++20", "-DRNNBOOK_HOST_EMULATION", "-fPIC", "-shared", "-pthread",
             "-O0" if debug else "-O1", "-g" if debug else "-g0", *extra_flags]
    src = wrapper_source()
    key = hashlib.sha256((sources.source_digest() + src + " ".join(flags) + cxx).encode()).hexdigest()[:16]
    out_dir = os.path.join(cache_dir(), "emulation")
    os.makedirs(out_dir, exist_ok=True)
    lib = os.path.join(out_dir, f"rnnbook_emu_{key}.so")
    if os.path.exists(lib) and not force:
        return lib
    cpp = os.path.join(out_dir, f"rnnbook_emu_{key}.cpp")
    with open(cpp, "w") as f:
        f.write(src)
    tmp = f"{lib}.{os.getpid()}.tmp"
    cmd = [cxx, *flags, "-I", sources.KERNEL_DIR, "-o", tmp, cpp]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"building the host emulation failed:\n{' '.join(cmd)}\n{p.stderr[-8000:]}")
    os.replace(tmp, lib)          # atomic: parallel test workers may build at once
    return lib


_lock = threading.Lock()
_libs: dict = {}


def load_library(**build_options) -> ctypes.CDLL:
    key = tuple(sorted(build_options.items()))
    with _lock:
        if key not in _libs:
            _libs[key] = ctypes.CDLL(build_library(**build_options))
        return _libs[key]


# --------------------------------------------------------------------------- cell functions
def cell_function(name: str, dtype=np.float64):
    """Call a ``__device__`` function of cells.cuh elementwise: ``f(*arrays) -> tuple of arrays``."""
    expr, n_in, n_out, _ = CELL_FUNCTIONS[name]
    dtype = np.dtype(dtype)
    suffix = _SUFFIX[sources.CTYPE_OF[dtype]]
    fn = getattr(load_library(), f"rnncell_{name}_{suffix}")
    ctype = ctypes.c_float if dtype == np.float32 else ctypes.c_double

    def call(*inputs):
        if len(inputs) != n_in:
            raise TypeError(f"{expr} takes {n_in} inputs, got {len(inputs)}")
        arrs = np.broadcast_arrays(*[np.asarray(a, dtype) for a in inputs])
        arrs = [np.ascontiguousarray(a) for a in arrs]
        outs = [np.empty(arrs[0].shape, dtype) for _ in range(n_out)]
        in_ptrs = (ctypes.POINTER(ctype) * n_in)(*[a.ctypes.data_as(ctypes.POINTER(ctype)) for a in arrs])
        out_ptrs = (ctypes.POINTER(ctype) * n_out)(*[o.ctypes.data_as(ctypes.POINTER(ctype)) for o in outs])
        fn(ctypes.c_long(arrs[0].size), in_ptrs, out_ptrs)
        return tuple(outs)
    return call


# --------------------------------------------------------------------------- kernel launcher
class EmulatedKernel:
    """Callable like a ``cupy.RawKernel``: ``k(grid, block, args, shared_mem=0)``, NumPy arrays."""

    def __init__(self, lib, index: int, spec: sources.KernelSpec):
        self._fn = getattr(lib, f"rnnemu_{index}")
        self._fn.restype = ctypes.c_int
        self.spec = spec
        self.name = spec.name

    def __call__(self, grid, block, args, shared_mem=0):
        sources.check_args(self.spec, args)
        grid = tuple(grid) + (1,) * (3 - len(grid))
        block = tuple(block) + (1,) * (3 - len(block))
        if np.prod(grid) * np.prod(block) > 4096:
            raise ValueError(f"{self.name}: {np.prod(grid) * np.prod(block)} emulated threads is too many "
                             "(one OS thread each); use smaller shapes or fewer threads per block")
        holders, ptrs = [], []
        for a in args:
            if isinstance(a, np.ndarray):
                h = ctypes.c_void_p(a.ctypes.data)
            else:
                h = ctypes.c_int32(int(a))
            holders.append(h)
            ptrs.append(ctypes.cast(ctypes.byref(h), ctypes.c_void_p))
        argv = (ctypes.c_void_p * len(ptrs))(*ptrs)
        err = ctypes.create_string_buffer(512)
        rc = self._fn(*[ctypes.c_uint(int(v)) for v in grid + block], ctypes.c_ulong(int(shared_mem)),
                      argv, err, ctypes.c_int(512))
        if rc != 0:
            raise RuntimeError(f"emulated kernel {self.name} failed: {err.value.decode()}")


class EmulatedLauncher:
    """The host-emulation counterpart of ``gpu.CupyLauncher`` (see engine.py for the protocol).

    ``xp`` is NumPy; ``pointwise_threads`` is small because every CUDA thread is an
    OS thread here; ``multiprocessors`` and ``max_shared_bytes`` pretend to be a small GPU
    so that the planner splits heads over several blocks and the inter-block
    barrier is exercised.
    """
    xp = np
    name = "emulation"

    def __init__(self, pointwise_threads=32, persistent_threads=32, multiprocessors=3,
                 max_shared_bytes=48 * 1024, **build_options):
        lib = load_library(**build_options)
        self._kernels = {n: EmulatedKernel(lib, i, sources.KERNELS[n]) for i, n in enumerate(_kernel_list())}
        self.pointwise_threads = pointwise_threads
        self.persistent_threads = persistent_threads
        self.multiprocessors = multiprocessors
        self.max_shared_bytes = max_shared_bytes

    def kernel(self, name: str) -> EmulatedKernel:
        return self._kernels[name]

    def max_resident_blocks(self, kernel, threads: int, shared_bytes: int) -> int:
        """Every emulated block runs concurrently, so any grid is 'resident'."""
        return 1 << 30

    def synchronize(self):
        pass
