"""Launching the kernels on a real GPU with CuPy.

:class:`CupyLauncher` compiles each ``.cu`` file once per dtype-independent
module (all specialisations of a file in one ``cupy.RawModule``, through NVRTC
with ``name_expressions``), caches the module for the life of the process (and
CuPy caches the binary on disk), and hands out ``RawKernel`` objects by name
expression.  Every launch checks its arguments against the catalogue in
``sources.py`` (arrays of the right dtype, scalars as ``numpy.int32``).
"""
from __future__ import annotations

import threading

import numpy as np

from . import sources

COMPILE_OPTIONS = ("-std=c++17",)


class CheckedKernel:
    """A ``cupy.RawKernel`` whose arguments are checked before every launch."""

    def __init__(self, raw, spec: sources.KernelSpec):
        self.raw = raw
        self.spec = spec
        self.name = spec.name
        self._smem_limit = 0

    def __call__(self, grid, block, args, shared_mem=0):
        sources.check_args(self.spec, args)
        if shared_mem > 48 * 1024 and shared_mem > self._smem_limit:
            # above 48 KiB a kernel must opt in to more dynamic shared memory
            self.raw.max_dynamic_shared_size_bytes = int(shared_mem)
            self._smem_limit = int(shared_mem)
        self.raw(tuple(grid), tuple(block), tuple(args), shared_mem=int(shared_mem))


class CupyLauncher:
    """Kernels and device limits for the current CuPy device (see engine.py for the protocol)."""
    name = "cupy"

    def __init__(self):
        import cupy
        self.xp = cupy
        dev = cupy.cuda.Device()
        attrs = dev.attributes
        self.multiprocessors = int(attrs["MultiProcessorCount"])
        # the opt-in limit per block (e.g. 227 KiB on H100), less a little for the runtime
        self.max_shared_bytes = int(attrs.get("MaxSharedMemoryPerBlockOptin",
                                              attrs.get("MaxSharedMemoryPerBlock", 48 * 1024)))
        self.pointwise_threads = 256
        self.persistent_threads = 256
        self._modules = {}
        self._kernels = {}
        self._lock = threading.Lock()

    def _module(self, source):
        if source not in self._modules:
            self._modules[source] = self.xp.RawModule(
                code=sources.read_source(source), options=COMPILE_OPTIONS,
                name_expressions=sources.names_in(source))
        return self._modules[source]

    def kernel(self, name: str) -> CheckedKernel:
        with self._lock:
            if name not in self._kernels:
                spec = sources.KERNELS[name]
                self._kernels[name] = CheckedKernel(self._module(spec.source).get_function(name), spec)
            return self._kernels[name]

    def max_resident_blocks(self, kernel: CheckedKernel, threads: int, shared_bytes: int) -> int:
        """How many blocks of ``kernel`` can be on the GPU at once (occupancy x multiprocessors)."""
        from cupy.cuda import driver
        if shared_bytes > 48 * 1024:
            kernel.raw.max_dynamic_shared_size_bytes = int(shared_bytes)
            kernel._smem_limit = max(kernel._smem_limit, int(shared_bytes))
        per_sm = driver.occupancyMaxActiveBlocksPerMultiprocessor(kernel.raw.kernel.ptr, threads, shared_bytes)
        return int(per_sm) * self.multiprocessors

    def synchronize(self):
        self.xp.cuda.get_current_stream().synchronize()


_launcher = None
_launcher_lock = threading.Lock()


def launcher() -> CupyLauncher:
    """The process-wide launcher (modules compile once, on first use)."""
    global _launcher
    with _launcher_lock:
        if _launcher is None:
            _launcher = CupyLauncher()
        return _launcher


def device_status():
    """``(True, description)`` when CuPy imports and sees a CUDA device, else ``(False, why)``."""
    try:
        import cupy
    except Exception as exc:  # ImportError, or a broken CUDA install raising at import
        return False, (f"CuPy is not installed or does not import ({type(exc).__name__}: {exc}); "
                       "install it with pip install 'rnnbook[gpu]' (CUDA 12) or 'rnnbook[gpu13]' (CUDA 13)")
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        return False, (f"CuPy imports but finds no usable CUDA device ({type(exc).__name__}: {exc}); "
                       "the cupy backend needs an NVIDIA GPU with a working driver")
    if n < 1:
        return False, "CuPy imports but there is no CUDA device; the cupy backend needs an NVIDIA GPU"
    name = cupy.cuda.runtime.getDeviceProperties(0)["name"]
    return True, name.decode() if isinstance(name, bytes) else str(name)


def to_device(a, dtype=None):
    import cupy
    return cupy.asarray(a) if dtype is None else cupy.asarray(a, dtype=np.dtype(dtype))
