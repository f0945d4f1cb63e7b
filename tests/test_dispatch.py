"""Choosing and routing backends."""
import numpy as np
import pytest

import rnnbook as rb
from rnnbook import dispatch


def test_architectures_and_coverage():
    archs = rb.architectures()
    for a in ("rnn", "lstm", "gru", "stacked", "bidirectional"):
        assert a in archs
    rows = set(rb.coverage())
    for a in ("rnn", "lstm", "gru"):
        for op in ("init_params", "forward", "backward", "rtrl"):
            assert (a, op, "numpy") in rows
    assert ("stacked", "forward", "*") in rows
    table = rb.coverage_table()
    assert table.splitlines()[0].startswith("| architecture | numpy | numba | cupy |")
    assert "| lstm | forward, backward, rtrl |" in table


def test_precedence(monkeypatch):
    monkeypatch.delenv("RNNBOOK_BACKEND", raising=False)
    assert rb.current_backend() == "numpy"
    monkeypatch.setenv("RNNBOOK_BACKEND", "numba")
    assert rb.current_backend() == "numba"
    with rb.use_backend("numpy"):
        assert rb.current_backend() == "numpy"                 # context beats the environment
        assert rb.current_backend("numba") == "numba"          # explicit beats the context
    assert rb.current_backend() == "numba"


def test_missing_implementation_names_the_alternatives():
    with pytest.raises(dispatch.NotImplementedForBackendError, match="'stacked' has no 'rtrl'"):
        rb.rtrl("stacked", {}, np.zeros((1, 1, 1)), np.zeros((1, 1, 1)), cell="lstm")
    dispatch.register("_test_only", "forward", "numpy", lambda p, x, s, **o: (x, (), {}))
    try:
        if "numba" in rb.available_backends():
            with pytest.raises(dispatch.NotImplementedForBackendError, match=r"backends that have it: \['numpy'\]"):
                rb.forward("_test_only", {}, np.zeros((1, 1, 1)), backend="numba")
        y, _, cache = rb.forward("_test_only", {}, np.ones((1, 1, 1)))
        assert cache["backend"] == "numpy" and y.sum() == 1
    finally:
        dispatch._registry.pop(("_test_only", "forward"))


def test_backward_uses_the_backend_of_the_cache():
    p = rb.init_params("gru", 2, 3)
    y, _, cache = rb.forward("gru", p, np.ones((2, 1, 2)), backend="numpy")
    assert cache["backend"] == "numpy"
    with rb.use_backend("numpy"):
        rb.backward("gru", p, cache, np.ones_like(y))
    with pytest.raises(ValueError, match="same backend"):
        rb.backward("gru", p, cache, np.ones_like(y), backend="numba" if cache["backend"] != "numba" else "numpy")


def test_register_rejects_nonsense():
    with pytest.raises(ValueError, match="operation"):
        dispatch.register("x", "fly", "numpy", print)
    with pytest.raises(ValueError, match="backend"):
        dispatch.register("x", "forward", "tpu", print)


class _Recorded:
    """A stand-in setting: notes when it is entered and left."""

    def __init__(self, events):
        self.events = events

    def __enter__(self):
        self.events.append("enter")

    def __exit__(self, *exc):
        self.events.append("exit")


def test_host_blas_is_a_plain_context_where_no_backend_registered_one(monkeypatch):
    """``host_blas`` for the NumPy backend (which registers nothing) changes nothing; a
    registered setting is entered and left around the block, for the current backend by
    default; unknown backend names are refused."""
    with rb.host_blas("numpy") as inside:
        assert inside is None
    events = []
    monkeypatch.setitem(dispatch._host_blas, "numpy", lambda: _Recorded(events))
    with rb.use_backend("numpy"):
        with rb.host_blas():
            events.append("body")
    assert events == ["enter", "body", "exit"]
    with pytest.raises(ValueError, match="unknown backend"):
        rb.host_blas("fortran")
    with pytest.raises(ValueError, match="unknown backend"):
        dispatch.register_host_blas("fortran", lambda: _Recorded(events))


def test_with_host_blas_wraps_a_method_of_an_object_with_a_backend(monkeypatch):
    seen = []
    monkeypatch.setitem(dispatch._host_blas, "numpy", lambda: _Recorded(seen))

    class Model:
        backend = "numpy"

        @dispatch.with_host_blas
        def step(self, a, b=1):
            """Doc."""
            seen.append((a, b))
            return a + b
    assert Model().step(2, b=3) == 5 and Model.step.__doc__ == "Doc."
    assert seen == ["enter", (2, 3), "exit"]


def test_host_blas_waits_for_a_backend_that_another_thread_is_importing(tmp_path, monkeypatch):
    """Two threads ask for the same backend's setting at once: the second waits for the
    first one's import to finish and gets the registered setting, not a plain context."""
    import sys
    import threading
    import types
    signal = types.SimpleNamespace(started=threading.Event())
    monkeypatch.setitem(sys.modules, "slow_backend_signal", signal)
    (tmp_path / "slow_backend_pkg.py").write_text(
        "import time\n"
        "import slow_backend_signal\n"
        "from rnnbook import dispatch\n"
        "slow_backend_signal.started.set()\n"
        "time.sleep(0.3)\n"
        "dispatch.register_host_blas('slowtest', lambda: slow_backend_signal)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(dispatch.BACKEND_PACKAGES, "slowtest", "slow_backend_pkg")
    monkeypatch.delitem(sys.modules, "slow_backend_pkg", raising=False)
    seen = {}
    first = threading.Thread(target=lambda: seen.update(first=dispatch.host_blas("slowtest")))
    first.start()
    try:
        assert signal.started.wait(10)
        seen["second"] = dispatch.host_blas("slowtest")   # while the first thread imports
    finally:
        first.join(10)
        dispatch._loaded.discard("slowtest")
        dispatch._host_blas.pop("slowtest", None)
    assert seen == {"first": signal, "second": signal}


def test_host_blas_registration_and_decorator_refuse_what_cannot_work():
    with pytest.raises(TypeError, match="callable"):
        dispatch.register_host_blas("numpy", "not a context")
    with pytest.raises(TypeError, match="generator"):
        @dispatch.with_host_blas
        def steps(self):
            yield 1
