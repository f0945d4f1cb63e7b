"""The CuPy-facing Python layer (gpu.CupyLauncher, cupy_gpu.rnn/lstm/gru) run on the CPU.

A stand-in ``cupy`` module is installed for the duration of the test: NumPy for the
arrays, and a ``RawModule`` whose kernels are the host-emulated ones.  This checks
the code that only a GPU would otherwise run -- module creation with name
expressions, kernel lookup and caching, the opt-in for large shared memory, the
occupancy query, argument checking, the per-architecture modules -- against
numpy_ref.  It says nothing about CuPy itself; tests/test_cupy_gpu.py does that on a GPU.
"""
import sys
import types

import numpy as np
import pytest

emulation = pytest.importorskip("rnnbook.cupy_gpu.emulation")
from rnnbook.cupy_gpu import gpu, sources  # noqa: E402
from rnnbook.numpy_ref import gru as gru_ref, lstm as lstm_ref  # noqa: E402


class _Module:
    compiled = []

    def __init__(self, code, options, name_expressions):
        assert "#include" not in code.split("host_emulation")[0]           # headers are inlined
        assert set(name_expressions) == set(sources.names_in(
            "persistent.cu" if "persistent_forward" in code else "alternating.cu"))
        _Module.compiled.append(tuple(name_expressions))
        self._launcher = emulation.EmulatedLauncher()

    def get_function(self, name):
        kernel = self._launcher.kernel(name)

        class Raw:
            max_dynamic_shared_size_bytes = 0
            kernel = types.SimpleNamespace(ptr=12345)

            def __call__(self, grid, block, args, shared_mem=0):
                if shared_mem > 48 * 1024:
                    assert self.max_dynamic_shared_size_bytes >= shared_mem
                kernel(grid, block, args, shared_mem=shared_mem)
        return Raw()


@pytest.fixture
def standin(monkeypatch):
    try:
        emulation.load_library()
    except emulation.EmulationUnavailable as exc:
        pytest.skip(str(exc))
    cupy = types.ModuleType("cupy")
    for name in ("asarray", "ascontiguousarray", "zeros", "empty", "concatenate", "any", "array",
                 "float32", "float64", "ndarray"):
        setattr(cupy, name, getattr(np, name))
    cupy.RawModule = _Module
    cuda = types.ModuleType("cupy.cuda")
    driver = types.ModuleType("cupy.cuda.driver")
    driver.occupancyMaxActiveBlocksPerMultiprocessor = lambda ptr, threads, smem: 1 if ptr == 12345 else 0
    cuda.driver = driver
    cuda.Device = lambda: types.SimpleNamespace(attributes={"MultiProcessorCount": 4,
                                                            "MaxSharedMemoryPerBlockOptin": 100 * 1024})
    cuda.runtime = types.SimpleNamespace(getDeviceCount=lambda: 1,
                                         getDeviceProperties=lambda i: {"name": b"stand-in"})
    cuda.get_current_stream = lambda: types.SimpleNamespace(synchronize=lambda: None)
    cupy.cuda = cuda
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    monkeypatch.setitem(sys.modules, "cupy.cuda", cuda)
    monkeypatch.setitem(sys.modules, "cupy.cuda.driver", driver)
    monkeypatch.setattr(gpu, "_launcher", None)
    _Module.compiled.clear()
    launcher = gpu.launcher()
    launcher.pointwise_threads = 32        # every emulated CUDA thread is an OS thread
    launcher.persistent_threads = 32
    return launcher


def test_device_status_and_launcher(standin):
    assert gpu.device_status() == (True, "stand-in")
    assert standin.multiprocessors == 4 and standin.max_shared_bytes == 100 * 1024


@pytest.mark.parametrize("impl", ["alternating", "persistent"])
def test_cell_modules_through_the_cupy_launcher(standin, impl):
    from rnnbook.cupy_gpu import gru, lstm
    rng = np.random.default_rng(0)
    for mod, ref, opts in ((lstm, lstm_ref, {}), (gru, gru_ref, {"reset_after": False})):
        p = mod.init_params(3, 6, seed=1, **opts)
        assert all(np.array_equal(p[k], v) for k, v in ref.init_params(3, 6, seed=1).items())
        x = rng.standard_normal((4, 2, 3))
        dy = rng.standard_normal((4, 2, 6))
        y, st, cache = mod.forward(p, x, impl=impl, **opts)
        g = mod.backward(p, cache, dy)
        y_ref, _, c_ref = ref.forward(p, x, **opts)
        g_ref = ref.backward(p, c_ref, dy)
        assert np.max(np.abs(y - y_ref)) < 1e-12
        for k in list(p) + ["x"]:
            assert np.max(np.abs(g[k] - g_ref[k])) < 1e-12, k
    # each .cu file compiled once, with every specialisation it holds
    assert len(_Module.compiled) == len(set(_Module.compiled)) <= 2


def test_large_shared_memory_opt_in_and_occupancy(standin):
    """A plan above 48 KiB opts in before launching, and a grid larger than the occupancy is refused."""
    from rnnbook.cupy_gpu import lstm
    rng = np.random.default_rng(1)
    H = 64
    p = lstm.init_params(2, H, seed=0)
    x = rng.standard_normal((2, 2, 2))
    tuning = {"units_per_block": 32, "chunk": 4}      # 4*32*65*8 bytes of W_hh > 48 KiB per block
    from rnnbook.cupy_gpu import engine
    assert engine.shared_bytes("forward", 4, H, 32, 2, 4, 8) > 48 * 1024
    y, _, _ = lstm.forward(p, x, impl="persistent", tuning=tuning)
    assert np.max(np.abs(y - lstm_ref.forward(p, x)[0])) < 1e-12
    assert standin.kernel("persistent_forward<double, 2>").raw.max_dynamic_shared_size_bytes > 48 * 1024
    with pytest.raises(ValueError, match="cannot all be resident"):
        lstm.forward(p, x, impl="persistent", tuning={"units_per_block": 5})   # 8 blocks > 4 SMs x 1
