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
  20 ms pause 62 without and 39 with it (``benchmarks/README.md``);
* a helper that has just finished a job *spins* for up to :data:`SPIN_SECONDS` (200 µs)
  watching for the next one before it goes to sleep, and the caller spins as long for its
  helpers to finish, both in compiled code without the GIL.  Waking a sleeping thread
  costs tens of microseconds (about 100 µs on the development VM, whose idle virtual CPU
  the hypervisor must wake), and a training step hands work over half a dozen times, with
  a little Python between the hand-offs.  Measured back to back, µs per step, no spin /
  200 µs / 1 ms: RNN B=8 H=128 training 14.5 / 13.6 / 13.6, GRU B=32 T=64 D=H=64 59.1 /
  54.9 / 54.6, LSTM B=8 H=128 35.7 / 34.7 / 34.5.  OpenMP runtimes do the same between
  parallel regions (PyTorch's libgomp spins for a few milliseconds); a longer spin only
  takes more time from other processes on a busy machine.

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
import time

import numba
import numpy as np
from numba import njit

from .sync import PAD, cpu_relax, load_acquire, store_release

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


@njit(nogil=True, cache=True)
def spin_until(counters, i, target, spins):
    """Spin (with ``pause``) until ``counters[i] >= target`` or ``spins`` rounds have passed;
    whether it got there.  Compiled without the GIL, so the other threads run meanwhile."""
    for _ in range(spins):
        if load_acquire(counters, i) >= target:
            return True
        cpu_relax()
    return load_acquire(counters, i) >= target


@njit(nogil=True, cache=True)
def store_release_py(counters, i, value):
    """``counters[i] = value`` with release order, callable from Python."""
    store_release(counters, i, value)


#: how long a helper keeps watching for its next job after one, and the caller for its
#: helpers to finish, before either goes to sleep (seconds; environment variable
#: ``RNNBOOK_SPIN_US`` in microseconds, 0 to sleep at once)
def _spin_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise ValueError(f"RNNBOOK_SPIN_US must be a number of microseconds >= 0, got {text!r}")
    return value * 1e-6


SPIN_SECONDS = _spin_seconds(os.environ.get("RNNBOOK_SPIN_US", "200"))


def _spins_per_second() -> float:
    """Rounds of :func:`spin_until` per second on this machine (``pause`` takes 10-150 cycles
    depending on the CPU), measured once."""
    counters = np.zeros(PAD, np.int64)
    spin_until(counters, 0, 1, 1)                   # compile, or load from the cache
    n = 20000
    t0 = time.perf_counter()
    spin_until(counters, 0, 1, n)
    return n / max(time.perf_counter() - t0, 1e-9)


class Helpers:
    """``n`` helper threads, each with its own job queue; daemon threads, started at once.

    Two counters per helper, each on cache lines of its own (``sync.PAD``): ``bells[k·PAD]``,
    the jobs queued for helper ``k`` (:meth:`submit` rings it after queueing the job), and
    ``done[k·PAD]``, the jobs it has finished.  After each job a helper spins on its bell
    for up to ``spins`` rounds before it blocks on its queue; the caller spins as long on
    ``done`` before it blocks on the job's future (see the module docstring for why).
    """

    def __init__(self, n: int):
        self.spins = max(1, int(SPIN_SECONDS * _spins_per_second()))
        self.bells = np.zeros(n * PAD, np.int64)      # jobs queued for helper k, at k·PAD
        self.done = np.zeros(n * PAD, np.int64)       # jobs helper k has finished
        self.queues = [queue.SimpleQueue() for _ in range(n)]
        self.lock = threading.Lock()                   # numbering and queueing go together
        self.threads = [threading.Thread(target=self._serve, args=(k,), daemon=True, name=f"rnnbook-numba-{k}")
                        for k in range(n)]
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

    def submit(self, k: int, fn, args):
        """Queue ``fn(*args)`` on helper ``k`` and ring its bell; returns ``(future, number)``,
        the number being what helper ``k``'s ``done`` counter reaches when the job is over."""
        future = concurrent.futures.Future()
        with self.lock:
            number = int(self.bells[k * PAD]) + 1
            self.queues[k].put((future, fn, args))
            store_release_py(self.bells, k * PAD, number)
        return future, number

    def wait(self, k: int, number: int, future: concurrent.futures.Future):
        """Return once job ``number`` of helper ``k`` is over (spin first, then sleep); its exception if any."""
        spin_until(self.done, k * PAD, number, self.spins)
        return future.exception()

    def close(self):
        """Let every helper finish what it holds, then end."""
        with self.lock:
            for k, q in enumerate(self.queues):
                q.put(None)
                store_release_py(self.bells, k * PAD, int(self.bells[k * PAD]) + 1)

    def _serve(self, k: int):
        """Helper ``k``'s loop: watch the bell, take a job, run it, report; ``None`` ends it."""
        jobs, taken = self.queues[k], 0
        while True:
            spin_until(self.bells, k * PAD, taken + 1, self.spins)    # returns at once if one is queued
            job = jobs.get()                                           # sleeps if none came meanwhile
            taken += 1
            if job is None:
                return
            future, fn, args = job
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args))
                except BaseException as exc:  # noqa: BLE001 - handed to the caller, which re-raises it
                    future.set_exception(exc)
            store_release_py(self.done, k * PAD, taken)


_helpers: Helpers | None = None
_helpers_lock = threading.Lock()


def _forget_helpers():
    """In a child made by ``fork``: the parent's helper threads do not exist here (only the
    thread that forked does), so the first parallel part starts a pool of its own."""
    global _helpers, _helpers_lock
    _helpers, _helpers_lock = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_helpers)


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
    pool, waits = None, []
    if others:
        pool = helpers(len(others))
        if KEEP_OFF_CALLER:
            pool.keep_off(current_cpu(), len(others))
        waits = [(k, *pool.submit(k, fn, job)) for k, job in enumerate(others)]
    try:
        fn(*jobs[0])
    finally:
        errors = [pool.wait(k, number, future) for k, future, number in waits]   # all of them, even if this part raised
    for exc in errors:
        if exc is not None:
            raise exc
