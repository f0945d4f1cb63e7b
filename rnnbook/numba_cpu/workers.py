r"""The backend's helper threads: run jobs side by side, with the helpers kept off the caller's core.

Every parallel part of the backend -- the row blocks of the recurrence (``bptt.run``,
``bptt.run_tiles``) and the row blocks of the big GEMMs (``bptt.on_threads``) -- is one
call ``in_parallel(fn, jobs)``: the calling thread runs ``fn(*jobs[0])`` itself, helper
thread ``k - 1`` runs ``fn(*jobs[k])``, and the call returns when all are done.  The compiled
kernels release the GIL (``nogil=True``) and BLAS does too, so the jobs really run at once.

Why the pool is not ``concurrent.futures.ThreadPoolExecutor``:

* job ``k`` always goes to helper ``k - 1``.  The unit split of ``run_tiles`` has a per-step
  barrier, so its blocks must all be running at the same time, each on a thread of its own;
* before the helpers are woken they are told to stay off the CPU the calling thread is on
  (``os.sched_setaffinity`` on their thread ids: the caller's allowed CPUs minus its
  current one).  Without that, Linux may wake a helper *on the caller's own CPU* and leave
  it there: the two blocks then take turns on one core while the other core idles, for the
  rest of the call.  It happens after the process has been idle for a few tens of
  milliseconds -- the scheduler's load estimate for the caller's CPU has decayed by then,
  so putting the helper next to it looks cheap -- which is every first call after a pause
  (a notebook cell, an evaluation, data loading).  Measured on the 2-vCPU development VM,
  LSTM B=8 H=128 T=256, µs per step: training step 32 back to back; after a 0.1 s pause
  and one untimed call, 54 without the affinity and 34 with it; forward pass after the
  same, 24 without and 15 with (``benchmarks/results/placement-*.md``);
* a helper that has just finished a job *spins* for up to :data:`SPIN_SECONDS` (1 ms)
  watching for the next one before it goes to sleep, and the caller spins as long for its
  helpers to finish, both in compiled code without the GIL.  Waking a sleeping thread
  costs tens of microseconds (about 100 µs on the development VM, whose idle virtual CPU
  the hypervisor must wake), and a training step hands work over several times, with a
  little Python between the hand-offs (since ``bptt.together``, four times).  Measured back
  to back, µs per step, no spin / 200 µs / 1 ms: RNN B=8 H=128 training 14.5 / 13.6 / 13.6,
  GRU B=32 T=64 D=H=64 59.1 / 54.9 / 54.6, LSTM B=8 H=128 35.7 / 34.7 / 34.5.  The spin
  was 200 µs until a single sequence's helper started to work in the backward pass only
  (``bptt.BEHIND_MIN_MACS``): between two of its jobs lies a forward pass of 0.3-0.4 ms,
  which 1 ms covers and 200 µs does not.  Paired in one process
  (``benchmarks/spin_time.py``), 1 ms against 200 µs: training step LSTM B=1 H=32 0.95-0.97,
  RNN B=1 H=64 0.94-0.97, and 0.99-1.01 where the helper works in both passes or the batch
  is on two row blocks.  OpenMP runtimes do the same between parallel regions (PyTorch's
  libgomp spins for a few milliseconds, OpenBLAS's threads for ~0.1 s); a longer spin only
  takes more time from other processes on a busy machine.

The affinity only ever narrows the helpers to CPUs the caller may use itself (a caller
allowed a single CPU shares it with them), and is left alone where the platform has no
``sched_setaffinity``/``sched_getcpu`` or refuses it: the helpers then go wherever the OS
puts them.

Jobs must not call :func:`in_parallel` themselves (a helper would wait for itself).  A
child made by ``fork`` starts helpers of its own (the parent's threads do not exist there).
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

from .sync import PAD, address, counters, cpu_relax, load_acquire, load_acquire_at, store_release

try:  # glibc: the CPU this thread is running on right now
    _sched_getcpu = ctypes.CDLL(None).sched_getcpu
    _sched_getcpu.restype = ctypes.c_int
    _sched_getcpu.argtypes = []
except (OSError, AttributeError):  # not Linux/glibc
    _sched_getcpu = None

#: whether the helpers' CPU sets are managed at all (``sched_setaffinity``/``sched_getcpu``
#: exist, and the platform has not refused once)
AFFINITY = _sched_getcpu is not None and hasattr(os, "sched_setaffinity")
#: whether helpers are kept off the caller's CPU (see the module docstring); switch off to
#: compare, or where a scheduler of your own places the threads: they then get every CPU
#: the caller may use
KEEP_OFF_CALLER = True


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
def await_job(bell, target, gate, spins):
    """A helper's wait for its next job, compiled without the GIL: spin until ``bell[0] >=
    target`` (the job is queued) or ``spins`` rounds have passed; whether it got there.  Then,
    if ``gate[0]`` holds an address (the job's gate, :meth:`Helper.submit`), spin up to
    ``spins`` rounds more until the int64 there is non-zero: the caller's own part has let go
    of the GIL, so that the helper takes it without waiting (a wait for the GIL sleeps, and
    the caller's next release of it wakes the sleeper: tens of µs on the development VM)."""
    if not spin_until(bell, 0, target, spins):
        return False
    watched = load_acquire(gate, 0)
    if watched != 0:
        for _ in range(spins):
            if load_acquire_at(watched) != 0:
                break
            cpu_relax()
    return True


@njit(nogil=True, cache=True)
def store_release_py(counters, i, value):
    """``counters[i] = value`` with release order, callable from Python."""
    store_release(counters, i, value)


def wait_for(counters, i, target):
    """Return once ``counters[i] >= target`` (another thread stores it with release order):
    spin in compiled code without the GIL, and let other threads have the core between rounds
    of spinning (a waiting thread on a busy machine must not keep the one it waits for off)."""
    while not spin_until(counters, i, target, 20000):
        os.sched_yield()


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


SPIN_SECONDS = _spin_seconds(os.environ.get("RNNBOOK_SPIN_US", "1000"))


def _spins_per_second() -> float:
    """Rounds of :func:`spin_until` per second on this machine (``pause`` takes 10-150 cycles
    depending on the CPU), measured once."""
    slots = counters(1)
    spin_until(slots, 0, 1, 1)                      # compile, or load from the cache
    n = 20000
    t0 = time.perf_counter()
    spin_until(slots, 0, 1, n)
    return n / max(time.perf_counter() - t0, 1e-9)


class Helper:
    """One helper thread (a daemon), its job queue and three slots, each on cache lines of
    its own (``sync.PAD``): ``bell[0]``, the jobs queued for it (:meth:`submit` rings it
    after queueing the job), ``done[0]``, the jobs it has finished, and ``gate[0]``, the
    address of the queued job's gate or 0 (:meth:`submit`).  After each job it
    spins on its bell for up to ``spins`` rounds before it blocks on its queue; the caller
    spins as long on ``done`` before it blocks on the job's future (see the module
    docstring for why)."""

    def __init__(self, k: int, spins: int):
        self.spins = spins
        self.bell = counters(1)
        self.done = counters(1)
        self.gate = counters(1)                        # the address of the queued job's gate, or 0
        self.jobs = queue.SimpleQueue()
        self.lock = threading.Lock()                   # numbering and queueing go together
        self.cpus = None                               # the CPU set last given to it (None: never)
        self.thread = threading.Thread(target=self._serve, daemon=True, name=f"rnnbook-numba-{k}")
        self.thread.start()

    def place(self, cpus: set):
        """Let the thread run on ``cpus`` only (``sched_setaffinity`` on its thread id), unless
        that is what it has."""
        if self.cpus != cpus:
            os.sched_setaffinity(self.thread.native_id, cpus)
            self.cpus = cpus

    def submit(self, fn, args, gate=None):
        """Queue ``fn(*args)`` and ring the bell; returns ``(future, number)``, the number being
        what ``done`` reaches when the job is over.

        ``gate``: an int64 array whose first element the caller's own part sets non-zero from
        compiled code once it has let go of the GIL (``bptt._gradients_alongside``: the loop's
        barrier count).  A spinning helper then takes the GIL only after that (:func:`await_job`;
        for at most its spin, so a gate that stays shut costs time, never a hang).  The queued
        job holds the array, so it lives as long as the helper may read it: every job writes
        the gate's slot before its bell, and a helper reads it only for a job it has not run."""
        future = concurrent.futures.Future()
        with self.lock:
            number = int(self.bell[0]) + 1
            self.jobs.put((future, fn, args, gate))
            self.gate[0] = 0 if gate is None else address(gate)
            store_release_py(self.bell, 0, number)
        return future, number

    def wait(self, number: int, future: concurrent.futures.Future):
        """Return once job ``number`` is over (spin first, then sleep): its exception, if any."""
        spin_until(self.done, 0, number, self.spins)
        return future.exception()

    def _serve(self):
        """The thread's loop: watch the bell, take a job, run it, report."""
        taken = 0
        while True:
            await_job(self.bell, taken + 1, self.gate, self.spins)  # returns at once if one is queued
            future, fn, args, _ = self.jobs.get()                   # sleeps if none came meanwhile
            taken += 1
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args))
                except BaseException as exc:  # noqa: BLE001 - handed to the caller, which re-raises it
                    future.set_exception(exc)
            store_release_py(self.done, 0, taken)


_helpers: list[Helper] = []
_helpers_lock = threading.Lock()
_place_lock = threading.Lock()
_spins = None                  # spin rounds in SPIN_SECONDS, measured with the first helper


def _forget_helpers():
    """In a child made by ``fork``: the parent's helper threads do not exist here (only the
    thread that forked does), so the first parallel part starts helpers of its own."""
    global _helpers, _helpers_lock, _place_lock
    _helpers, _helpers_lock, _place_lock = [], threading.Lock(), threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_helpers)


def helpers(n: int) -> list[Helper]:
    """The process's first ``n`` helpers, started as needed (at least one per Numba thread
    besides the caller's).  Helpers are only ever added, never replaced, so a caller
    holding some of them can always use them."""
    global _spins
    with _helpers_lock:
        if len(_helpers) < n:
            if _spins is None:
                _spins = max(1, int(SPIN_SECONDS * _spins_per_second()))
            for k in range(len(_helpers), max(n, numba.get_num_threads() - 1)):
                _helpers.append(Helper(k, _spins))
        return _helpers[:n]


def place(pool: list[Helper]):
    """Narrow the helpers to the calling thread's allowed CPUs, minus the one it is on when
    :data:`KEEP_OFF_CALLER` (when that leaves nothing, the allowed set as it is).  Where the
    platform refuses, :data:`AFFINITY` is switched off for good and the OS places them."""
    global AFFINITY
    allowed = os.sched_getaffinity(0)
    cpus = allowed - {current_cpu()} if KEEP_OFF_CALLER else allowed
    try:
        with _place_lock:                   # callers in several Python threads: one at a time
            for helper in pool:
                helper.place(cpus or allowed)
    except OSError:
        AFFINITY = False


def in_parallel(fn, jobs, gate=None):
    """``fn(*job)`` for every job at the same time: this thread takes ``jobs[0]``, helper
    ``k - 1`` takes ``jobs[k]``; returns when all are done and raises what any of them raised.
    ``gate``: the helpers start their jobs once ``gate[0]`` is non-zero (:meth:`Helper.submit`).

    The jobs of one call are queued one helper after another: two Python threads whose
    jobs wait for each other (``run_tiles``' unit blocks) must not call at the same time
    (``bptt.run_tiles`` holds a lock for that)."""
    pool = helpers(len(jobs) - 1)
    if pool and AFFINITY:
        place(pool)
    waits = [(helper, *helper.submit(fn, job, gate)) for helper, job in zip(pool, jobs[1:])]
    try:
        fn(*jobs[0])
    finally:
        errors = [helper.wait(number, future) for helper, future, number in waits]   # all, even if this part raised
    for exc in errors:
        if exc is not None:
            raise exc
