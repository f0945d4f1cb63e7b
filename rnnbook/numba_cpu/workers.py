r"""The backend's helper threads: run jobs side by side, with the helpers kept off the caller's core.

Every parallel part of the backend -- the row blocks of the recurrence (``bptt.run``,
``bptt.run_tiles``) and the row blocks of the big GEMMs (``bptt.on_threads``) -- is one
call ``in_parallel(fn, jobs)``: the calling thread runs ``fn(*jobs[0])`` itself, helper
thread ``k`` runs ``fn(*jobs[k])``, and the call returns when all are done.  The compiled
kernels release the GIL (``nogil=True``) and BLAS does too, so the jobs really run at once.

Why the pool is not ``concurrent.futures.ThreadPoolExecutor``:

* job ``k`` always goes to helper ``k``.  The unit split of ``run_tiles`` has a per-step
  barrier, so its blocks must all be running at the same time, each on a thread of its own;
* before the helpers are woken they are told to stay off the CPU the calling thread is on
  (``os.sched_setaffinity`` on their thread ids: the caller's allowed CPUs minus its
  current one).  Without that, Linux may wake a helper *on the caller's own CPU* and leave
  it there: the two blocks then take turns on one core while the other core idles, for the
  rest of the call.  It happens after the process has been idle for a few tens of
  milliseconds -- the scheduler's load estimate for the caller's CPU has decayed by then,
  so putting the helper next to it looks cheap -- which is every first call after a pause
  (a notebook cell, an evaluation, data loading).  Measured on the 2-vCPU development VM,
  LSTM B=8 H=128 T=256 training step, µs per step: 35 back to back; after a 0.1 s pause
  and one untimed call, 60 without the affinity and 36 with it; the first call after a
  20 ms pause 62 without and 39 with it (``benchmarks/README.md``).

The affinity only ever narrows the helpers to CPUs the caller may use itself, and is
left alone where the platform has no ``sched_setaffinity``/``sched_getcpu`` (then the
helpers go wherever the OS puts them) or where the caller may run on a single CPU.

Jobs must not call :func:`in_parallel` themselves (a helper would wait for itself).
"""
from __future__ import annotations

import concurrent.futures
import ctypes
import os
import queue
import threading

import numba

try:  # glibc: the CPU this thread is running on right now
    _sched_getcpu = ctypes.CDLL(None).sched_getcpu
    _sched_getcpu.restype = ctypes.c_int
    _sched_getcpu.argtypes = []
except (OSError, AttributeError):  # not Linux/glibc
    _sched_getcpu = None

#: whether helpers are moved off the caller's CPU (see the module docstring); switch off
#: to compare, or where a scheduler of your own already places the threads
KEEP_OFF_CALLER = _sched_getcpu is not None and hasattr(os, "sched_setaffinity")


def current_cpu() -> int | None:
    """The CPU the calling thread is on now (``None`` where that cannot be asked)."""
    if _sched_getcpu is None:
        return None
    cpu = _sched_getcpu()
    return cpu if cpu >= 0 else None


class Helpers:
    """``n`` helper threads, each with its own job queue; daemon threads, started at once."""

    def __init__(self, n: int):
        self.queues = [queue.SimpleQueue() for _ in range(n)]
        self.threads = [threading.Thread(target=_serve, args=(q,), daemon=True, name=f"rnnbook-numba-{k}")
                        for k, q in enumerate(self.queues)]
        for t in self.threads:
            t.start()
        self.cpus = [None] * n        # the CPU set each helper was last given (None: never set)

    def __len__(self):
        return len(self.threads)

    def keep_off(self, cpu: int | None, n: int):
        """Allow helpers ``0 .. n-1`` every CPU the caller may use except ``cpu``.

        A no-op when that set would be empty or is what they already have; on an error
        (a sandbox that forbids it) :data:`KEEP_OFF_CALLER` is switched off for good.
        """
        global KEEP_OFF_CALLER
        allowed = os.sched_getaffinity(0)      # the calling thread's own set
        wanted = allowed - {cpu} or allowed
        try:
            for k in range(n):
                if self.cpus[k] != wanted:
                    os.sched_setaffinity(self.threads[k].native_id, wanted)
                    self.cpus[k] = wanted
        except OSError:
            KEEP_OFF_CALLER = False

    def submit(self, k: int, fn, args) -> concurrent.futures.Future:
        """Queue ``fn(*args)`` on helper ``k``; its future holds the result or the exception."""
        future = concurrent.futures.Future()
        self.queues[k].put((future, fn, args))
        return future


    def close(self):
        """Let every helper finish what it holds, then end."""
        for q in self.queues:
            q.put(None)


def _serve(jobs: queue.SimpleQueue):
    """A helper thread's loop: take a job, run it, report how it ended; ``None`` ends it."""
    while (job := jobs.get()) is not None:
        future, fn, args = job
        if not future.set_running_or_notify_cancel():
            continue
        try:
            future.set_result(fn(*args))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, which re-raises it
            future.set_exception(exc)


_helpers: Helpers | None = None
_helpers_lock = threading.Lock()


def helpers(n: int) -> Helpers:
    """The process's helper threads: at least ``n``, and one per Numba thread besides the caller's."""
    global _helpers
    with _helpers_lock:
        if _helpers is None or len(_helpers) < n:
            if _helpers is not None:
                _helpers.close()
            _helpers = Helpers(max(n, numba.get_num_threads() - 1))
        return _helpers


def in_parallel(fn, jobs):
    """``fn(*job)`` for every job at the same time: this thread takes the first, helper ``k``
    job ``k``; returns when all are done and raises what any of them raised."""
    others = jobs[1:]
    if others:
        pool = helpers(len(others))
        if KEEP_OFF_CALLER:
            pool.keep_off(current_cpu(), len(others))
        futures = [pool.submit(k, fn, job) for k, job in enumerate(others)]
    else:
        futures = []
    try:
        fn(*jobs[0])
    finally:
        for f in futures:        # wait for all of them even if this thread's part raised
            f.exception()
    for f in futures:
        f.result()
