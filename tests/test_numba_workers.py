"""The Numba backend's helper threads (``numba_cpu/workers.py``): who runs which job, errors,
and the CPUs the helpers are allowed before they are woken."""
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

pytest.importorskip("numba")
from rnnbook.numba_cpu import workers  # noqa: E402

HAS_AFFINITY = hasattr(os, "sched_getaffinity") and workers.current_cpu() is not None


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 5), seed=st.integers(0, 2**31 - 1))
def test_every_job_runs_once_each_on_its_own_thread(n, seed):
    jobs = [(k, seed + k) for k in range(n)]
    ran, lock = [], threading.Lock()

    def fn(k, value):
        time.sleep(0.001 * (seed % 3))          # helpers must all be running at once, not take turns
        with lock:
            ran.append((k, value, threading.get_ident()))

    workers.in_parallel(fn, jobs)
    assert sorted((k, v) for k, v, _ in ran) == jobs
    threads = {k: tid for k, _, tid in ran}
    assert threads[0] == threading.get_ident()                 # the caller takes the first job
    assert len(set(threads.values())) == n                     # the others one helper each
    pool = workers.helpers(n - 1)
    assert all(threads[k] == pool[k - 1].thread.ident for k in range(1, n))   # job k on helper k - 1


def test_jobs_that_wait_for_each_other_do_not_deadlock():
    """The unit split's barrier needs every block running at once: job k waits for all."""
    n = 4
    barrier = threading.Barrier(n, timeout=10)
    workers.in_parallel(lambda k: barrier.wait(), [(k,) for k in range(n)])


@pytest.mark.parametrize("failing", [0, 2])
def test_an_error_in_any_job_reaches_the_caller_after_all_have_ended(failing):
    finished = []

    def fn(k):
        if k == failing:
            raise ValueError(f"job {k}")
        time.sleep(0.02)
        finished.append(k)

    with pytest.raises(ValueError, match=f"job {failing}"):
        workers.in_parallel(fn, [(k,) for k in range(3)])
    assert sorted(finished) == [k for k in range(3) if k != failing]
    workers.in_parallel(lambda k: None, [(k,) for k in range(3)])    # the helpers still serve


def test_the_pool_grows_by_adding_helpers():
    first = workers.helpers(1)
    more = workers.helpers(len(workers._helpers) + 2)
    assert more[:1] == first                          # the same helper objects, still serving
    assert all(h.thread.is_alive() for h in more)
    assert len({h.thread.ident for h in more}) == len(more)


def test_a_caller_holding_helpers_while_another_thread_grows_the_pool():
    """Thread A has taken its helpers and not yet queued its jobs when thread B asks for more:
    A's jobs must still run (a pool replaced under A's feet would never run them)."""
    import threading as th
    taken, grown, out = th.Event(), th.Event(), []
    real = workers.helpers

    def slow_helpers(n):
        pool = real(n)
        if th.current_thread().name == "A":
            taken.set()
            grown.wait(10)
        return pool

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(workers, "helpers", slow_helpers)
        a = th.Thread(name="A", target=lambda: workers.in_parallel(lambda k: out.append(k), [(0,), (1,)]))
        a.start()
        assert taken.wait(10)
        real(len(workers._helpers) + 3)              # thread B (this one) grows the pool
        grown.set()
        a.join(20)
    assert not a.is_alive() and sorted(out) == [0, 1]


@pytest.mark.skipif(not HAS_AFFINITY or len(os.sched_getaffinity(0)) < 2,
                    reason="needs sched_getcpu/sched_setaffinity and two CPUs")
def test_helpers_are_kept_off_the_callers_cpu(monkeypatch):
    seen = []
    real = workers.current_cpu
    monkeypatch.setattr(workers, "current_cpu", lambda: seen.append(real()) or seen[-1])
    allowed = os.sched_getaffinity(0)
    got = {}

    def fn(k):
        if k:
            got[k] = os.sched_getaffinity(0)

    workers.in_parallel(fn, [(k,) for k in range(3)])
    assert len(seen) == 1 and seen[0] in allowed
    assert got == {1: allowed - {seen[0]}, 2: allowed - {seen[0]}}


def test_a_single_allowed_cpu_is_shared_not_emptied():
    """A caller pinned to one CPU (``taskset -c 0``): the helpers get that CPU, nothing else."""
    if not HAS_AFFINITY:
        pytest.skip("needs sched_getcpu/sched_setaffinity")
    cpu = min(os.sched_getaffinity(0))
    code = (
        "import os\n"
        "from rnnbook.numba_cpu import workers\n"
        "workers.helpers(1)\n"                                # started with every CPU ...
        f"os.sched_setaffinity(0, {{{cpu}}})\n"               # ... then the caller is pinned
        "got = {}\n"
        "def fn(k):\n"
        "    got[k] = os.sched_getaffinity(0)\n"
        "workers.in_parallel(fn, [(0,), (1,)])\n"
        f"assert got == {{0: {{{cpu}}}, 1: {{{cpu}}}}}, got\n"
        "assert workers.AFFINITY\n"
        "print('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


@pytest.mark.skipif(not HAS_AFFINITY, reason="needs sched_getcpu/sched_setaffinity")
def test_not_keeping_off_gives_the_helpers_every_allowed_cpu_again(monkeypatch):
    workers.in_parallel(lambda k: None, [(k,) for k in range(3)])        # pinned off the caller
    monkeypatch.setattr(workers, "KEEP_OFF_CALLER", False)
    got = {}
    workers.in_parallel(lambda k: got.__setitem__(k, os.sched_getaffinity(0)), [(k,) for k in range(3)])
    assert got[1] == got[2] == os.sched_getaffinity(0)


def test_without_affinity_the_jobs_still_run(monkeypatch):
    monkeypatch.setattr(workers, "AFFINITY", False)
    out = []
    workers.in_parallel(lambda k: out.append(k), [(k,) for k in range(3)])
    assert sorted(out) == [0, 1, 2]


@settings(max_examples=30, deadline=None)
@given(value=st.integers(-5, 5), target=st.integers(-5, 5), spins=st.integers(1, 50))
def test_spin_until_reports_whether_the_counter_got_there(value, target, spins):
    counters = np.zeros(3 * workers.PAD, np.int64)
    counters[workers.PAD] = value
    assert workers.spin_until(counters, workers.PAD, target, spins) == (value >= target)


@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_spin_counters_have_their_cache_lines_to_themselves(n):
    """``sync.counters`` (and so the barrier's flags and every helper's bell and done): zeros,
    ``PAD`` slots a counter, starting and ending on a 64-byte line, whatever ``malloc`` gave
    the arrays allocated just before (a few odd sizes are allocated first)."""
    from rnnbook.numba_cpu import sync
    keep = [np.empty(k, np.uint8) for k in (1, 17, 40, 100)]       # move malloc's next address
    arrays = [sync.counters(n), sync.new_flags(n)]
    arrays += [a for h in workers.helpers(2) for a in (h.bell, h.done)]
    for a in arrays:
        assert a.dtype == np.int64 and a.flags.c_contiguous
        assert a.ctypes.data % 64 == 0 and a.nbytes % 64 == 0
    assert arrays[0].shape == (n * sync.PAD,) and not arrays[0].any()
    assert arrays[1].shape == ((n + 1) * sync.PAD,) and arrays[1][n * sync.PAD] == sync.ALL_READY
    assert not arrays[1][:n * sync.PAD].any()                     # the barrier's own slots
    del keep


@pytest.mark.parametrize("spins", ["one round", "long"])
def test_helpers_take_jobs_whether_spinning_or_asleep(spins):
    """A job queued while its helper spins is seen at the bell; one queued after the helper
    has gone to sleep wakes it through the queue.  Either way the counters end equal."""
    pool = workers.helpers(2)
    saved = pool[0].spins
    for helper in pool:
        helper.spins = 1 if spins == "one round" else 10 * saved
    try:
        for pause in (0.0, 0.03):
            time.sleep(pause)                      # with one round the helpers are asleep by now
            out = []
            workers.in_parallel(lambda k: out.append(k), [(k,) for k in range(3)])
            assert sorted(out) == [0, 1, 2]
    finally:
        for helper in pool:
            helper.spins = saved
    for helper in pool:                            # done is stored just after the job's result:
        assert workers.spin_until(helper.done, 0, int(helper.bell[0]), 10**9)   # it may trail a little
        assert helper.done[0] == helper.bell[0] > 0


@settings(max_examples=20, deadline=None)
@given(shape=st.tuples(st.integers(1, 6), st.integers(1, 6)), dtype=st.sampled_from([np.int64, np.float32, np.float64]),
       step=st.integers(1, 3), seed=st.integers(0, 2**31 - 1))
def test_address_and_load_at_an_address_read_what_numpy_says(shape, dtype, step, seed):
    """``sync.address`` is ``ctypes.data`` (views with a start, strides and layouts of their own
    included); ``sync.load_acquire_at`` reads the int64 stored there."""
    from numba import njit

    from rnnbook.numba_cpu import sync

    @njit
    def load_at(addr):
        return sync.load_acquire_at(addr)

    rng = np.random.default_rng(seed)
    a = rng.integers(-10**12, 10**12, size=shape).astype(dtype)
    for view in (a, a[::step], a[:, ::step], a.T, a[shape[0] // 2:]):
        assert sync.address(view) == view.ctypes.data
    words = rng.integers(-2**62, 2**62, size=shape[0] * shape[1])
    for i in range(words.size):
        assert load_at(sync.address(words) + 8 * i) == words[i]


def _spinning_helper(spins):
    """The first helper, made to spin ``spins`` rounds on its bell and its gate; the spin it had
    (give it back with :func:`_restore_spin`)."""
    helper = workers.helpers(1)[0]
    saved, helper.spins = helper.spins, spins
    workers.in_parallel(lambda k: None, [(0,), (1,)])      # it spins with the new count from here
    return helper, saved


def _restore_spin(helper, saved):
    """Give ``helper`` its spin back, and one more job, so that it stops spinning with the
    test's count (a helper left spinning 10¹⁰ rounds would hold a core for the rest of the run)."""
    helper.spins = saved
    workers.in_parallel(lambda k: None, [(0,), (1,)])


def test_a_gated_job_starts_only_once_the_gate_opens():
    """``in_parallel(..., gate=g)``: a spinning helper takes its job only once ``g[0]`` is non-zero
    (the caller's part opens it from compiled code after letting go of the GIL; here, after
    sleeping, from Python).  Five times, with a gate left shut 5-25 ms."""
    helper, saved = _spinning_helper(10**10)                # far longer than the gate stays shut
    try:
        for pause in (0.005, 0.01, 0.025, 0.005, 0.015):
            gate = np.zeros(3, np.int64)
            opened, started = [], []

            def fn(k):
                if k == 0:
                    time.sleep(pause)
                    opened.append(time.perf_counter())
                    workers.store_release_py(gate, 0, 7)
                else:
                    started.append(time.perf_counter())
            workers.in_parallel(fn, [(0,), (1,)], gate=gate)
            assert started[0] >= opened[0]
    finally:
        _restore_spin(helper, saved)


def test_a_gate_that_stays_shut_delays_the_job_but_never_hangs_it():
    """A gate that nobody opens holds the helper back for its spin, then the job runs; the
    next job, without a gate, runs at once."""
    helper, saved = _spinning_helper(2000)
    try:
        gate, ran = np.zeros(1, np.int64), []
        workers.in_parallel(lambda k: ran.append(k), [(0,), (1,)], gate=gate)
        workers.in_parallel(lambda k: ran.append(k + 2), [(0,), (1,)])
        assert sorted(ran) == [0, 1, 2, 3] and not gate.any()
        assert helper.gate[0] == 0                  # the last job had no gate
    finally:
        _restore_spin(helper, saved)


def test_spin_time_comes_from_the_environment():
    code = ("from rnnbook.numba_cpu import workers\n"
            "print(workers.SPIN_SECONDS, workers.helpers(1)[0].spins)\n")
    env = dict(os.environ, RNNBOOK_SPIN_US="0")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0.0", "1"]
    env["RNNBOOK_SPIN_US"] = "-3"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode != 0 and "RNNBOOK_SPIN_US must be a number of microseconds >= 0" in out.stderr


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_starts_helpers_of_its_own():
    """After ``fork`` only the forking thread exists in the child: a pool inherited from the
    parent would take jobs and never run them."""
    import multiprocessing
    workers.in_parallel(lambda k: None, [(k,) for k in range(3)])       # the parent has helpers
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(1) as pool:
        got = pool.apply_async(_in_parallel_in_child).get(timeout=60)
    assert got == [0, 1, 2]


def _in_parallel_in_child():
    out = []
    workers.in_parallel(lambda k: out.append(k), [(k,) for k in range(3)])
    return sorted(out)
