"""The gradient products alongside the backward loop (``bptt.run_tiles(..., stream=T)``).

When the backward loop runs on a single block (the latency regime), a helper computes the
weight, bias and input gradients block of steps by block of steps while the loop is still
producing the gate gradients of earlier steps.  Checked here: the blocks cover every step
once; each cell gives the reference's gradients through that path (which the tests force
at small sizes, and confirm was taken); the weight sums do not depend on timing; the
helper never reads a block before the loop has announced it; a loop that raises does not
leave the helper waiting -- all of it both as compiled calls (``alongside.py``) and through
Python; the compiled products and shares match NumPy's and the Python path's, and two
threads sharing the blocks left leave none out.  And the forward loop's inputs computed
ahead of it: the loop waits for them, and a block that raises (on either thread, however
late the helper starts) does not leave it waiting; the sums read inputs of any memory layout.
"""
import threading
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

numba_cpu = pytest.importorskip("rnnbook.numba_cpu")
from numba import njit  # noqa: E402

from rnnbook.numba_cpu import alongside, bptt, workers  # noqa: E402
from rnnbook.numba_cpu.alongside import _take_share  # noqa: E402
from rnnbook.numba_cpu.gemm import run_block  # noqa: E402

import rnnbook as rb  # noqa: E402
from test_numba_parity import CELLS, STRATEGIES, compare, poison_empty, rel_error  # noqa: E402


@given(T=st.integers(1, 3000), B=st.integers(1, 300), rows=st.integers(1, 512), ramp=st.booleans())
def test_step_blocks_cover_every_step_once_from_the_top(T, B, rows, ramp):
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(bptt, "STREAM_BLOCK_ROWS", rows)
        blocks = bptt.step_blocks(T, B, ramp=ramp)
        upward = bptt.step_blocks(T, B, upward=True, ramp=ramp)
    size = max(1, rows // B)
    assert blocks[0][1] == T and blocks[-1][0] == 0
    assert all(b[1] == a[0] for a, b in zip(blocks, blocks[1:]))       # downwards, no gap, no overlap
    assert all(0 < t1 - t0 <= size for t0, t1 in blocks)
    assert all(t1 - t0 >= min(max(size // 4, 1), t1) for t0, t1 in blocks)  # none tiny but what is left
    if T > 2 * size:
        assert blocks[-1][1] - blocks[-1][0] <= max(size // 4, 1)    # the block left after the loop is short
        first = blocks[0][1] - blocks[0][0]
        assert first == (max(1, size // 4) if ramp else size)         # the helper starts after a short block
    assert upward == [(T - t1, T - t0) for t0, t1 in blocks]         # the same blocks, from step 0 up


@given(T=st.integers(1, 3000), B=st.integers(1, 40), rows=st.integers(1, 512), data=st.data(),
       busy=st.floats(0, 1e9), per_step=st.floats(1e-3, 1e6))
def test_a_free_thread_takes_a_run_of_blocks_that_evens_out_the_work(T, B, rows, data, busy, per_step):
    """``_share_of_what_is_left``: consecutive blocks from the first left, at least one, and no
    more than make this thread's share reach half of the work left (the other thread's
    ``busy`` multiply-adds plus the per-step results left); the rest stay in ``left``."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(bptt, "STREAM_BLOCK_ROWS", rows)
        blocks = bptt.step_blocks(T, B)
    left = sorted(data.draw(st.sets(st.integers(0, len(blocks) - 1))))
    before = list(left)
    run = bptt._share_of_what_is_left(blocks, left, busy, per_step)
    if not before:
        assert run == [] and left == []
        return
    assert run == before[:len(run)] and left == before[len(run):] and run      # taken from the front
    assert run == list(range(run[0], run[0] + len(run)))                       # one range of steps

    def steps(idx):
        return sum(blocks[i][1] - blocks[i][0] for i in idx)
    want = (busy + steps(before) * per_step) / 2
    assert steps(run[:-1]) * per_step < want                                   # none past the share
    if left and left[0] == run[-1] + 1:                                        # stopped with more in reach:
        assert steps(run) * per_step >= want                                   # the share is reached
    if busy >= steps(before) * per_step and before == list(range(before[0], before[-1] + 1)):
        assert left == []                                                      # all, while the other is busy


@pytest.mark.parametrize("extra, ramps", [(0, True), (1, True), (-1, False)])
def test_first_blocks_are_short_once_the_loop_reads_a_large_weight(extra, ramps):
    """``K · N`` multiply-adds per row and step: from ``RAMP_MIN_MACS / STREAM_BLOCK_ROWS`` on
    (``W_hh`` of 2^15 entries with the defaults) the first blocks of steps are short."""
    T, B = 1000, 3
    KN = bptt.RAMP_MIN_MACS // bptt.STREAM_BLOCK_ROWS + extra
    assert bptt._ramps(bptt.Tiling(bptt.gemm.BLAS, 1, 1, T * B * KN), T, B) == ramps


class Spy:
    """Counts the calls of ``bptt._gradients_alongside`` (the path that runs the gradients with
    the backward loop), or of another function of ``bptt`` named by ``name``."""

    def __init__(self, mp, name="_gradients_alongside"):
        self.calls = 0
        real = getattr(bptt, name)

        def spy(*args, **kwargs):
            self.calls += 1
            return real(*args, **kwargs)
        mp.setattr(bptt, name, spy)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cell=st.sampled_from(CELLS), T=st.integers(1, 12), B=st.integers(1, 3), D=st.integers(1, 6),
       H=st.integers(1, 9), dtype=st.sampled_from([np.float64, np.float32]),
       strategy=st.sampled_from(STRATEGIES), window=st.one_of(st.none(), st.integers(1, 4)),
       rows=st.integers(1, 6), ramp=st.booleans(), use_state=st.booleans(), compiled=st.booleans(),
       seed=st.integers(0, 2**16))
def test_gradients_alongside_the_loop_match_the_reference(cell, T, B, D, H, dtype, strategy, window, rows,
                                                           ramp, use_state, compiled, seed):
    """Forced at every size (blocks of 1-6 rows, short first blocks or not), as compiled calls
    (``alongside.py``) or through Python: the reference's gradients, float64 to 1e-10 and
    float32 to 1e-5; taken for full BPTT only (BPTT(k) runs several chains over each step)."""
    arch, opts = cell
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(bptt, "AHEAD_MIN_MACS", 0)
        mp.setattr(bptt, "BEHIND_MIN_MACS", 0)
        mp.setattr(bptt, "STREAM_BLOCK_ROWS", rows)
        mp.setattr(bptt, "RAMP_MIN_MACS", 0 if ramp else 1 << 62)
        mp.setattr(bptt, "COMPILED_ALONGSIDE", compiled)
        mp.setattr(bptt.numba, "get_num_threads", lambda: 2)
        spy, ahead, python = Spy(mp), Spy(mp, "_inputs_alongside"), Spy(mp, "_python_way")
        compare(arch, opts, T, B, D, H, dtype, strategy, window, seed, use_state, split=("rows", 1))
    assert spy.calls == (1 if window is None else 0)
    assert python.calls == (spy.calls if not (compiled and bptt.gemm.HAVE_BLAS) else 0)
    assert ahead.calls == 1


def _long_sequence(arch, opts, T, B, seed):
    """A stable long problem (weights at their initial scale, so that 1000 steps of an RNN do
    not overflow; biases randomised) on both backends: the worst relative error."""
    rng = np.random.default_rng(seed)
    D, H = 32, 96                                # at least AHEAD_MIN_MACS in each cell's loop
    params = rb.init_params(arch, D, H, seed=seed, dtype=np.float32, **opts)
    params = {k: (v + (0.3 * rng.standard_normal(v.shape) if k.startswith("b") else 0)).astype(np.float32)
              for k, v in params.items()}
    x = rng.standard_normal((T, B, D)).astype(np.float32)
    dy = rng.standard_normal((T, B, H)).astype(np.float32)
    out = []
    for backend in ("numpy", "numba"):
        y, state, cache = rb.forward(arch, params, x, backend=backend, **opts)
        out.append(rb.backward(arch, params, cache, dy))
    return max(rel_error(out[1][k], out[0][k]) for k in list(params) + ["x"])


@pytest.mark.parametrize("arch,opts", CELLS)
def test_taken_at_b1_by_itself_and_not_with_one_thread(arch, opts, monkeypatch):
    """Unforced: a long single sequence goes alongside the loop; with one thread, with the batch
    on two row blocks, or for a short sequence, the products run before and after it.  The
    weight sums' BLAS calls are prepared only where they run by blocks (preparing costs ~10 µs
    a sum, wasted in every other call; so does making a product's row for the compiled path)."""
    spy, ahead = Spy(monkeypatch), Spy(monkeypatch, "_inputs_alongside")
    prepared = []
    for name in ("sum_of_products_by_blocks", "block_product"):      # the Python path's, the compiled one's
        monkeypatch.setattr(bptt.gemm, name, lambda *a, real=getattr(bptt.gemm, name): prepared.append(1) or real(*a))
    monkeypatch.setattr(bptt.numba, "get_num_threads", lambda: 2)
    assert _long_sequence(arch, opts, 1000, 1, seed=1) <= 1e-5
    assert spy.calls == ahead.calls == 1
    sums = len(prepared)
    assert sums >= 2                                                # W_ih's and W_hh's at least
    monkeypatch.setattr(bptt.numba, "get_num_threads", lambda: 1)
    assert _long_sequence(arch, opts, 1000, 1, seed=2) <= 1e-5
    assert spy.calls == ahead.calls == 1
    monkeypatch.setattr(bptt.numba, "get_num_threads", lambda: 2)
    with bptt.split("rows", 2):
        assert _long_sequence(arch, opts, 1000, 4, seed=3) <= 1e-5
    assert spy.calls == ahead.calls == 1
    assert _long_sequence(arch, opts, 40, 1, seed=4) <= 1e-5      # a short loop: not worth a hand-off
    assert spy.calls == ahead.calls == 1
    assert len(prepared) == sums                                    # none in the calls not alongside


@pytest.mark.parametrize("arch,opts", CELLS)
def test_a_batch_backward_loop_keeps_one_block_and_the_gradients_beside_it(arch, opts, monkeypatch):
    """Unforced, B=4 on two threads: the forward loop runs as two row blocks (the input
    projection before them), the backward loop as one block with the gradients alongside it
    (``bptt.BEHIND_ONE_BLOCK_MAX_MACS``); above that limit, two row blocks both ways."""
    spy, ahead = Spy(monkeypatch), Spy(monkeypatch, "_inputs_alongside")
    monkeypatch.setattr(bptt.numba, "get_num_threads", lambda: 2)
    assert _long_sequence(arch, opts, 1000, 4, seed=5) <= 1e-5
    assert (spy.calls, ahead.calls) == (1, 0)
    monkeypatch.setattr(bptt, "BEHIND_ONE_BLOCK_MAX_MACS", 0)         # above the limit: two blocks
    assert _long_sequence(arch, opts, 1000, 4, seed=6) <= 1e-5
    assert (spy.calls, ahead.calls) == (1, 0)


@pytest.mark.parametrize("T,behind,ahead", [(1023, 0, 0), (1024, 1, 0), (2047, 1, 0), (2048, 1, 1)])
def test_gradients_go_behind_the_loop_from_half_the_inputs_threshold(T, behind, ahead, monkeypatch):
    """Unforced, LSTM B=1 D=H=32 (a loop of ``T·32·128`` multiply-adds): the gradients run
    alongside the backward loop from ``BEHIND_MIN_MACS`` (2^22, T=1024), the input projection
    alongside the forward loop only from ``AHEAD_MIN_MACS`` (2^23, T=2048); the gradients match
    the reference either way."""
    assert (bptt.BEHIND_MIN_MACS, bptt.AHEAD_MIN_MACS) == (1 << 22, 1 << 23)
    spy, spy_ahead = Spy(monkeypatch), Spy(monkeypatch, "_inputs_alongside")
    monkeypatch.setattr(bptt.numba, "get_num_threads", lambda: 2)
    rng = np.random.default_rng(T)
    params = {k: (v + 0.1 * rng.standard_normal(v.shape)).astype(np.float32)
              for k, v in rb.init_params("lstm", 32, 32, seed=T, dtype=np.float32).items()}
    x = rng.standard_normal((T, 1, 32)).astype(np.float32)
    dy = rng.standard_normal((T, 1, 32)).astype(np.float32)
    grads = []
    for backend in ("numpy", "numba"):
        _, _, cache = rb.forward("lstm", params, x, backend=backend)
        grads.append(rb.backward("lstm", params, cache, dy))
    assert (spy.calls, spy_ahead.calls) == (behind, ahead)
    for k in list(params) + ["x"]:
        assert rel_error(grads[1][k], grads[0][k]) <= 1e-5, k


@pytest.mark.parametrize("compiled", [True, False])
def test_no_block_is_read_before_the_loop_announces_it(compiled, monkeypatch):
    """A stand-in loop fills ``dZ`` one step at a time, from the last, with pauses, and
    announces each step on the barrier counter as the kernels do; ``dZ`` starts as NaN, so
    a block read too early leaves NaN in the gradients (compiled calls and Python alike)."""
    monkeypatch.setattr(bptt, "COMPILED_ALONGSIDE", compiled)
    monkeypatch.setattr(bptt, "AHEAD_MIN_MACS", 0)
    monkeypatch.setattr(bptt, "BEHIND_MIN_MACS", 0)
    monkeypatch.setattr(bptt, "STREAM_BLOCK_ROWS", 4)
    monkeypatch.setattr(bptt.numba, "get_num_threads", lambda: 2)
    rng = np.random.default_rng(5)
    T, B, G, D = 40, 2, 6, 3
    values = rng.standard_normal((T, B, G))
    x, W_ih = rng.standard_normal((T, B, D)), rng.standard_normal((G, D))
    dZ = np.full((T, B, G), np.nan)

    def loop(r0, r1, j0, j1, product, flags, me):
        for k, t in enumerate(range(T - 1, -1, -1)):
            dZ[t] = values[t]
            time.sleep(0.0005 * (t % 3))                        # uneven steps; lets the helper run
            workers.store_release_py(flags, me * bptt.sync.PAD, 2 * (k + 1))   # two barriers per step
    with bptt.deferred() as after_loop:
        dW, db, dX = bptt.weight_gradient(dZ, x), bptt.bias_gradient(dZ), bptt.input_gradient(dZ, W_ih)
    spy = Spy(monkeypatch)
    bptt.run_tiles(loop, (), B, 5, bptt.Tiling(0, 1, 1), then=after_loop, stream=T, barriers_per_step=2)
    assert spy.calls == 1
    np.testing.assert_allclose(dW, np.einsum("tbg,tbd->gd", values, x), rtol=1e-12)
    np.testing.assert_allclose(db, values.sum(axis=(0, 1)), rtol=1e-12)
    np.testing.assert_allclose(dX, values @ W_ih, rtol=1e-12)


@pytest.mark.parametrize("route", ["compiled", "prepared", "blas", "numpy"])
def test_weight_sums_do_not_depend_on_timing(route, monkeypatch):
    """The sums are added block after block on one thread: bit for bit the same, however fast
    the loop goes, whichever way a block is added (compiled, ``alongside.py``; or from Python:
    one BLAS call prepared for all blocks, ``gemm.sum_of_products_by_blocks``, or block by
    block through ``add_sum_of_products``, by BLAS's β = 1 adds or NumPy's products) -- and
    the right sums."""
    monkeypatch.setattr(bptt, "COMPILED_ALONGSIDE", route == "compiled")
    monkeypatch.setattr(bptt, "AHEAD_MIN_MACS", 0)
    monkeypatch.setattr(bptt, "BEHIND_MIN_MACS", 0)
    monkeypatch.setattr(bptt, "STREAM_BLOCK_ROWS", 8)
    if route == "compiled" and bptt.gemm.HAVE_BLAS:
        monkeypatch.setattr(bptt, "_python_way", lambda *a: pytest.fail("took the Python path"))
    if route not in ("compiled", "prepared"):
        monkeypatch.setattr(bptt.gemm, "sum_of_products_by_blocks", lambda A, X, C: (
            lambda r0, r1, first: bptt.gemm.add_sum_of_products(A[r0:r1], X[r0:r1], C, first)))
        monkeypatch.setattr(bptt.gemm, "CTYPES_MIN_MACS", 0 if route == "blas" else 1 << 62)
    monkeypatch.setattr(bptt.numba, "get_num_threads", lambda: 2)
    rng = np.random.default_rng(6)
    T, B, G, D = 64, 1, 8, 5
    values = rng.standard_normal((T, B, G)).astype(np.float32)
    x = rng.standard_normal((T, B, D)).astype(np.float32)
    results = []
    for pause in (0.0, 0.0003):
        dZ = np.empty((T, B, G), np.float32)

        def loop(r0, r1, j0, j1, product, flags, me):
            for k, t in enumerate(range(T - 1, -1, -1)):
                dZ[t] = values[t]
                if pause and t % 5 == 0:
                    time.sleep(pause)
                workers.store_release_py(flags, 0, k + 1)
        with bptt.deferred() as after_loop:
            out = (bptt.weight_gradient(dZ, x), bptt.bias_gradient(dZ))
        bptt.run_tiles(loop, (), B, 5, bptt.Tiling(0, 1, 1), then=after_loop, stream=T)
        results.append(out)
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)
    v64 = values.astype(np.float64)
    np.testing.assert_allclose(results[0][0], np.einsum("tbg,tbk->gk", v64, x.astype(np.float64)), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(results[0][1], v64.sum(axis=(0, 1)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("compiled", [True, False])
def test_a_loop_that_raises_does_not_leave_the_helper_waiting(compiled, monkeypatch):
    monkeypatch.setattr(bptt, "COMPILED_ALONGSIDE", compiled)
    monkeypatch.setattr(bptt, "AHEAD_MIN_MACS", 0)
    monkeypatch.setattr(bptt, "BEHIND_MIN_MACS", 0)
    monkeypatch.setattr(bptt.numba, "get_num_threads", lambda: 2)
    dZ, x = np.zeros((50, 1, 4)), np.zeros((50, 1, 3))

    def loop(r0, r1, j0, j1, product, flags, me):
        workers.store_release_py(flags, 0, 3)                    # three steps, then a failure
        raise FloatingPointError("step 46 failed")
    with bptt.deferred() as after_loop:
        bptt.weight_gradient(dZ, x)
    error = _raised_in_time(lambda: bptt.run_tiles(loop, (), 1, 4, bptt.Tiling(0, 1, 1), then=after_loop,
                                                   stream=50), "the helper kept waiting for steps that never came")
    assert isinstance(error, FloatingPointError) and "step 46" in str(error)


def _raised_in_time(call, hang_message, seconds=30):
    """What ``call()`` raised, run on a thread of its own; fails if it is still running after
    ``seconds`` (a thread waiting for another that will never come)."""
    outcome = []

    def run():
        try:
            call()
        except BaseException as exc:  # noqa: BLE001 - returned to the test
            outcome.append(exc)
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), hang_message
    assert outcome, "it did not raise"
    return outcome[0]


def test_results_need_no_zeroing_alongside_the_loop(monkeypatch):
    """The first block of a sum stores, the later ones add: with every ``np.empty`` of the cells
    and of ``bptt`` filled with NaN, a sum that added into its fresh result would be NaN."""
    poison_empty(monkeypatch)
    monkeypatch.setattr(bptt, "AHEAD_MIN_MACS", 0)
    monkeypatch.setattr(bptt, "BEHIND_MIN_MACS", 0)
    monkeypatch.setattr(bptt, "STREAM_BLOCK_ROWS", 3)
    monkeypatch.setattr(bptt.numba, "get_num_threads", lambda: 2)
    spy = Spy(monkeypatch)
    for n, (arch, opts) in enumerate(CELLS):
        compare(arch, opts, 9, 2, 4, 7, np.float64, STRATEGIES[n % len(STRATEGIES)], None, seed=n,
                split=("rows", 1))
    assert spy.calls == len(CELLS)


def _slow(mp, helper_pause=0.0, caller_pause=0.0, helper_fails_from=None, caller_fails_from=None,
          helper_late=0.0, caller_waits_from=None):
    """Make every block of the input projection slow on a helper thread (``helper_pause``
    seconds) or on the calling thread, and fail from a row on: the forward loop must wait
    for each block, or see it fail.  ``helper_late`` seconds pass before the helper starts
    (as on a loaded machine); the calling thread's blocks from row ``caller_waits_from`` on
    wait until the helper's block has failed (for up to 10 s).  Helpers are the threads that
    ``workers.py`` names ``rnnbook-numba-k``."""
    real, real_in_parallel = bptt.gemm.project_block, bptt.in_parallel
    helper_failed = threading.Event()
    mp.setattr(bptt, "INPUT_PANELS_MIN_MACS", 0)        # every block through project_block

    def on_helper():
        return threading.current_thread().name.startswith("rnnbook-numba")

    def late(fn, jobs):
        def part(*job):
            if on_helper():
                time.sleep(helper_late)
            return fn(*job)
        return real_in_parallel(part, jobs)
    if helper_late:
        mp.setattr(bptt, "in_parallel", late)

    def slow(X, M, b, out, r0, r1):
        helper = on_helper()
        time.sleep(helper_pause if helper else caller_pause)
        if not helper and caller_waits_from is not None and r0 >= caller_waits_from:
            helper_failed.wait(10)
        fails_from = helper_fails_from if helper else caller_fails_from
        if fails_from is not None and r0 >= fails_from:
            if helper:
                helper_failed.set()
            raise MemoryError(f"block at row {r0}")
        real(X, M, b, out, r0, r1)
    mp.setattr(bptt.gemm, "project_block", slow)


@pytest.mark.parametrize("arch,opts", CELLS)
def test_the_forward_loop_waits_for_its_inputs(arch, opts, monkeypatch):
    """The helper computing ``G = X W_ihᵀ + b`` ahead of the loop is made slow (2 ms a block of
    4 steps): a loop that did not wait would read ``G[t]`` with only the bias in it."""
    monkeypatch.setattr(bptt, "AHEAD_MIN_MACS", 0)
    monkeypatch.setattr(bptt, "BEHIND_MIN_MACS", 0)
    monkeypatch.setattr(bptt, "STREAM_BLOCK_ROWS", 4)
    monkeypatch.setattr(bptt.numba, "get_num_threads", lambda: 2)
    compare(arch, opts, 24, 1, 5, 7, np.float64, "auto", None, seed=10, split=("rows", 1))  # compiled first:
    ahead = Spy(monkeypatch, "_inputs_alongside")          # a compiling loop would give the helper all the time
    _slow(monkeypatch, helper_pause=0.002, caller_pause=0.01)      # the helper is up after one block
    compare(arch, opts, 24, 1, 5, 7, np.float64, "auto", None, seed=11, split=("rows", 1))
    assert ahead.calls == 1


def _streamed_lstm(mp):
    """An LSTM problem (T=40, B=1) whose input projection runs alongside the loop in blocks
    of 4 steps on two threads, compiled before a test sets its trap: ``(params, x)``."""
    mp.setattr(bptt, "AHEAD_MIN_MACS", 0)
    mp.setattr(bptt, "BEHIND_MIN_MACS", 0)
    mp.setattr(bptt, "STREAM_BLOCK_ROWS", 4)
    mp.setattr(bptt.numba, "get_num_threads", lambda: 2)
    params = rb.init_params("lstm", 3, 5, seed=0)
    x = np.random.default_rng(0).standard_normal((40, 1, 3))
    rb.forward("lstm", params, x, backend="numba")
    return params, x


@pytest.mark.parametrize("helper_late", [0.0, 0.05])
def test_a_failing_input_block_does_not_leave_the_loop_waiting(helper_late, monkeypatch):
    """The helper fails from row 8 on.  The calling thread's second block (rows 4-7) waits
    for that failure, so that -- when the helper starts late and the calling thread has taken
    that block -- its announcement comes after the helper's release, and must not undo it."""
    params, x = _streamed_lstm(monkeypatch)
    _slow(monkeypatch, helper_pause=0.001, helper_fails_from=8, helper_late=helper_late, caller_waits_from=4)
    error = _raised_in_time(lambda: rb.forward("lstm", params, x, backend="numba"),
                            "the loop kept waiting for inputs that never came")
    assert isinstance(error, MemoryError) and "block at row" in str(error)


def test_a_failing_first_block_does_not_leave_the_helper_waiting(monkeypatch):
    """The calling thread computes the first block itself; when that fails, the helper (which
    announces its blocks only after the one before) must not wait for it."""
    params, x = _streamed_lstm(monkeypatch)
    _slow(monkeypatch, caller_fails_from=0)
    error = _raised_in_time(lambda: rb.forward("lstm", params, x, backend="numba"),
                            "the helper kept waiting for the first block")
    assert isinstance(error, MemoryError) and "row 0" in str(error)


def _laid_out(rng, shape, dtype, layout):
    """A random array of ``shape`` as a view NumPy may hand over: ``"wide"`` a column slice of a
    wider array, ``"reversed"`` rows in reverse (a negative row stride), ``"broadcast"`` one row
    repeated (a row stride of 0), ``"overlapping"`` rows that share elements (stride of one),
    ``"record"`` a field of a packed record array (rows an odd number of bytes apart, and
    unaligned), ``"unaligned"`` C-contiguous but one byte off its elements' alignment."""
    R, K = shape
    itemsize = np.dtype(dtype).itemsize
    if layout == "record":
        records = np.zeros(R, np.dtype([("tag", "u1"), ("v", dtype, (K,))]))   # packed: 1 + K·itemsize bytes
        records["v"] = rng.standard_normal((R, K))
        return records["v"]
    if layout == "unaligned":
        raw = np.zeros(R * K * itemsize + 1, np.uint8)
        out = raw[1:].view(dtype).reshape(R, K)
        out[...] = rng.standard_normal((R, K))
        return out
    if layout == "wide":
        return rng.standard_normal((R, K + 3)).astype(dtype)[:, 2:2 + K]
    if layout == "reversed":
        return rng.standard_normal((R, K)).astype(dtype)[::-1]
    if layout == "broadcast":
        return np.broadcast_to(rng.standard_normal(K).astype(dtype), (R, K))
    base = rng.standard_normal(R + K).astype(dtype)
    return np.lib.stride_tricks.as_strided(base, (R, K), (base.itemsize, base.itemsize), writeable=False)


LAYOUTS = ["wide", "reversed", "broadcast", "overlapping", "record", "unaligned"]


@settings(max_examples=60, deadline=None)
@given(R=st.integers(1, 40), G=st.integers(1, 20), K=st.integers(1, 20),
       dtype=st.sampled_from([np.float32, np.float64]), through_blas=st.booleans(),
       a_layout=st.sampled_from(LAYOUTS), x_layout=st.sampled_from(LAYOUTS), seed=st.integers(0, 2**16))
def test_add_sum_of_products(R, G, K, dtype, through_blas, a_layout, x_layout, seed):
    """``gemm.add_sum_of_products``: stores ``AᵀX`` for the first block and adds the next ones,
    through BLAS with β = 1 or through NumPy, for ``A`` and ``X`` laid out as any view may be
    (a row stride of their own, reversed, broadcast, overlapping rows: the last three are
    what BLAS cannot read, and must still give the sum; so are a packed record's field and
    unaligned data)."""
    rng = np.random.default_rng(seed)
    A, X = _laid_out(rng, (2 * R, G), dtype, a_layout), _laid_out(rng, (2 * R, K), dtype, x_layout)
    C = np.full((G, K), np.nan, dtype)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(bptt.gemm, "CTYPES_MIN_MACS", 0 if through_blas else 1 << 62)
        bptt.gemm.add_sum_of_products(A[:R], X[:R], C, True)
        bptt.gemm.add_sum_of_products(A[R:], X[R:], C, False)
    ref = A.astype(np.float64).T @ X.astype(np.float64)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(C, ref, rtol=tol, atol=tol * np.abs(ref).max())


@settings(max_examples=80, deadline=None)
@given(R=st.integers(1, 60), G=st.integers(1, 20), K=st.integers(1, 20),
       dtype=st.sampled_from([np.float32, np.float64]), a_layout=st.sampled_from(["plain"] + LAYOUTS),
       x_layout=st.sampled_from(["plain"] + LAYOUTS), data=st.data(), seed=st.integers(0, 2**16))
def test_sum_of_products_by_blocks(R, G, K, dtype, a_layout, x_layout, data, seed):
    """``gemm.sum_of_products_by_blocks``: blocks of rows in any sizes, taken from the last rows
    up as a backward loop gives them, sum to ``AᵀX`` in ``C`` (which starts as NaN: the first
    block must not read it).  Where BLAS can read both arrays (``plain``, ``wide``) each block
    is one BLAS call made here, none through ``add_sum_of_products`` (so may other layouts
    where a dimension is 1); otherwise every block goes through ``add_sum_of_products``."""
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((R, G)).astype(dtype) if a_layout == "plain" else _laid_out(rng, (R, G), dtype, a_layout)
    X = rng.standard_normal((R, K)).astype(dtype) if x_layout == "plain" else _laid_out(rng, (R, K), dtype, x_layout)
    cuts = sorted(data.draw(st.sets(st.integers(1, R - 1), max_size=8)) if R > 1 else [])
    blocks = list(zip([0] + cuts, cuts + [R]))[::-1]
    C = np.full((G, K), np.nan, dtype)
    calls = []
    with pytest.MonkeyPatch.context() as mp:
        real = bptt.gemm.add_sum_of_products
        mp.setattr(bptt.gemm, "add_sum_of_products", lambda *a: calls.append(a[3]) or real(*a))
        add = bptt.gemm.sum_of_products_by_blocks(A, X, C)
        for n, (r0, r1) in enumerate(blocks):
            add(r0, r1, n == 0)
    blas = bptt.gemm.HAVE_BLAS and bptt.gemm._blas_rows(A) and bptt.gemm._blas_rows(X)
    if a_layout in ("plain", "wide") and x_layout in ("plain", "wide"):
        assert blas == bptt.gemm.HAVE_BLAS
    assert calls == ([] if blas else [n == 0 for n in range(len(blocks))])
    ref = A.astype(np.float64).T @ X.astype(np.float64)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(C, ref, rtol=tol, atol=tol * max(np.abs(ref).max(), 1))


def test_sum_of_products_by_blocks_keeps_its_arrays_alive():
    """The prepared BLAS call reads ``A``, ``X`` and ``C`` by address: the sum it returns must
    keep them alive after the caller has dropped them, and still add the right terms."""
    import gc
    import weakref
    rng = np.random.default_rng(3)
    A, X = rng.standard_normal((8, 3)).astype(np.float32), rng.standard_normal((8, 2)).astype(np.float32)
    C = np.full((3, 2), np.nan, np.float32)
    ref = A.astype(np.float64).T @ X.astype(np.float64)
    refs = [weakref.ref(a) for a in (A, X, C)]
    add = bptt.gemm.sum_of_products_by_blocks(A, X, C)
    del A, X, C
    gc.collect()
    assert all(r() is not None for r in refs)
    add(0, 5, True)
    add(5, 8, False)
    np.testing.assert_allclose(refs[2](), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("rows", [(-1, 2), (3, 3), (2, 9), (5, 4)])
def test_sum_of_products_by_blocks_refuses_rows_outside_the_arrays(rows):
    A = np.ones((8, 3), np.float32)
    for X in (np.ones((8, 2), np.float32), np.ones((8, 2), np.float64)):   # BLAS, or add_sum_of_products
        add = bptt.gemm.sum_of_products_by_blocks(A, X, np.zeros((3, 2), X.dtype))
        with pytest.raises(ValueError, match="not a block"):
            add(*rows, False)


@settings(max_examples=60, deadline=None)
@given(R=st.integers(0, 4), G=st.integers(1, 20), K=st.integers(1, 20),
       dtypes=st.sampled_from([(np.float32,) * 3, (np.float64,) * 3, (np.float32, np.float64, np.float64)]),
       a_layout=st.sampled_from(["plain"] + LAYOUTS), x_layout=st.sampled_from(["plain"] + LAYOUTS),
       into=st.sampled_from(["new", "array", "rows of a larger one"]), through_blas=st.booleans(),
       seed=st.integers(0, 2**16))
def test_transposed_product(R, G, K, dtypes, a_layout, x_layout, into, through_blas, seed):
    """``gemm.transposed_product``: ``AᵀX`` for any layout of ``A`` and ``X``, into a new array
    or a given one (also the rows of a larger one, as ``bptt.weight_gradient`` gives it).
    With one row (an outer product, which NumPy's ``matmul`` computes without BLAS, and so
    goes to BLAS or ``multiply`` instead) every element is a single product: exact."""
    rng = np.random.default_rng(seed)
    a_dtype, x_dtype, out_dtype = dtypes
    A = rng.standard_normal((R, G)).astype(a_dtype) if a_layout == "plain" else _laid_out(rng, (R, G), a_dtype, a_layout)
    X = rng.standard_normal((R, K)).astype(x_dtype) if x_layout == "plain" else _laid_out(rng, (R, K), x_dtype, x_layout)
    ref = A.astype(np.float64).T @ X.astype(np.float64)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(bptt.gemm, "OUTER_BLAS_MIN_SIZE", 0 if through_blas else 1 << 62)
        big = np.full((G + 5, K), np.nan, out_dtype)
        if into == "new":
            got = bptt.gemm.transposed_product(A, X)
        else:
            out = np.full((G, K), np.nan, out_dtype) if into == "array" else big[2:2 + G]
            got = bptt.gemm.transposed_product(A, X, out)
            assert got is out
        assert np.isnan(big[:2]).all() and np.isnan(big[2 + G:]).all()      # nothing written outside
    assert got.shape == (G, K) and got.dtype == np.result_type(out_dtype, a_dtype, x_dtype)
    if R <= 1:
        np.testing.assert_array_equal(got, ref.astype(got.dtype))
    else:
        tol = 1e-12 if got.dtype == np.float64 and a_dtype == np.float64 else 1e-5
        np.testing.assert_allclose(got, ref, rtol=tol, atol=tol * max(np.abs(ref).max(), 1))


def test_a_single_rows_transposed_product_skips_numpys_loop(monkeypatch):
    """With one row, arrays BLAS can read and ``OUTER_BLAS_MIN_SIZE`` elements (``W_hh`` of an
    LSTM with H = 128 has 2^16), the outer product goes to BLAS (``_gemm_tn``)."""
    done = []
    real = bptt.gemm._gemm_tn
    monkeypatch.setattr(bptt.gemm, "_gemm_tn", lambda *a: done.append(real(*a)) or done[-1])
    rng = np.random.default_rng(3)
    A, X = rng.standard_normal((1, 512)).astype(np.float32), rng.standard_normal((1, 128)).astype(np.float32)
    np.testing.assert_array_equal(bptt.gemm.transposed_product(A, X), np.outer(A[0], X[0]))
    assert done == ([True] if bptt.gemm.HAVE_BLAS else [False])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cell=st.sampled_from(CELLS), layout=st.sampled_from(LAYOUTS[1:]), T=st.integers(9, 60),
       D=st.integers(1, 6), H=st.integers(1, 9), seed=st.integers(0, 2**16))
def test_inputs_of_any_layout_alongside_the_loop(cell, layout, T, D, H, seed):
    """A user's ``x`` at B = 1 stays a view in the weight gradient's sum (``(T, 1, D)`` to
    ``(T, D)`` needs no copy): read backwards in time, broadcast, overlapping, a field of a
    packed record or unaligned, through the BLAS sums by blocks (of 8 steps), it still
    gives the reference's gradients to 1e-10.  float64: a lost or misread block is what this
    checks, and float32's rounding over up to 60 steps would need a tolerance of its own
    (the float32 sums in every layout: ``test_add_sum_of_products``, ``test_sum_of_products_by_blocks``)."""
    arch, opts = cell
    dtype = np.float64
    rng = np.random.default_rng(seed)
    params = {k: (v + 0.1 * rng.standard_normal(v.shape)).astype(dtype)        # biases included
              for k, v in rb.init_params(arch, D, H, seed=seed, **opts).items()}
    x = _laid_out(rng, (T, D), dtype, layout)[:, None, :]
    dy = rng.standard_normal((T, 1, H)).astype(dtype)
    grads = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(bptt, "AHEAD_MIN_MACS", 0)
        mp.setattr(bptt, "BEHIND_MIN_MACS", 0)
        mp.setattr(bptt, "STREAM_BLOCK_ROWS", 8)
        mp.setattr(bptt.gemm, "CTYPES_MIN_MACS", 0)
        mp.setattr(bptt.numba, "get_num_threads", lambda: 2)
        spy = Spy(mp)
        for backend in ("numpy", "numba"):
            _, _, cache = rb.forward(arch, params, x, backend=backend, **opts)
            grads[backend] = rb.backward(arch, params, cache, dy, backend=backend)
    assert spy.calls == 1
    for name, ref in grads["numpy"].items():
        if ref is not None:
            assert rel_error(grads["numba"][name], ref) <= 1e-10, name


def test_transposed_product_refuses_shapes_that_do_not_fit():
    rng = np.random.default_rng(9)
    A, X = rng.standard_normal((1, 256)), rng.standard_normal((1, 128))
    with pytest.raises(ValueError, match="do not fit"):
        bptt.gemm.transposed_product(A, X, np.empty((128, 256)))           # the wrong layout
    with pytest.raises(ValueError, match="do not fit"):
        bptt.gemm.transposed_product(A, rng.standard_normal((5, 128)))     # rows that differ


@njit
def _run_blocks(product, blocks):
    """``gemm.run_block`` over ``blocks`` (n, 2), in order; the first stores a sum's terms."""
    for n in range(blocks.shape[0]):
        run_block(product, blocks[n, 0], blocks[n, 1], n == 0)


@settings(max_examples=80, deadline=None)
@given(R=st.integers(1, 50), P=st.integers(1, 20), Q=st.integers(1, 20), sum_over_rows=st.booleans(),
       dtype=st.sampled_from([np.float32, np.float64]), a_layout=st.sampled_from(["plain"] + LAYOUTS),
       b_layout=st.sampled_from(["plain"] + LAYOUTS), data=st.data(), seed=st.integers(0, 2**16))
def test_block_product_by_blocks_of_rows(R, P, Q, sum_over_rows, dtype, a_layout, b_layout, data, seed):
    """``gemm.block_product`` and ``run_block``, the compiled path's products: blocks of rows in
    any sizes, from the last rows up, give ``Σ_r A[r]ᵀ B[r]`` (``C`` starts as NaN: the first
    block must not read it) or ``C[r] = A[r] B`` for every row.  Arrays that BLAS cannot read
    as they are get no row (``None``: the caller takes the Python path)."""
    rng = np.random.default_rng(seed)
    gemm = bptt.gemm

    def operand(shape, layout):
        return rng.standard_normal(shape).astype(dtype) if layout == "plain" else _laid_out(rng, shape, dtype, layout)
    A = operand((R, P), a_layout)
    Bm = operand((R, Q) if sum_over_rows else (P, Q), b_layout)
    C = np.full((P, Q) if sum_over_rows else (R, Q), np.nan, dtype)
    kind = gemm.SUM_OF_PRODUCTS if sum_over_rows else gemm.PRODUCT_ROWS
    product = gemm.block_product(kind, A, Bm, C)
    if not (gemm.HAVE_BLAS and gemm._blas_rows(A) and gemm._blas_rows(Bm)):
        assert product is None
        return
    if a_layout in ("plain", "wide") and b_layout in ("plain", "wide"):
        assert product is not None
    cuts = sorted(data.draw(st.sets(st.integers(1, R - 1), max_size=8)) if R > 1 else [])
    _run_blocks(product, np.array(list(zip([0] + cuts, cuts + [R]))[::-1], np.int64).reshape(-1, 2))
    A64, B64 = A.astype(np.float64), Bm.astype(np.float64)
    ref = A64.T @ B64 if sum_over_rows else A64 @ B64
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(C, ref, rtol=tol, atol=tol * max(np.abs(ref).max(), 1))


def test_block_product_refuses_what_blas_cannot_take():
    """No row for operands of different dtypes or one BLAS has not, shapes that do not fit, or a
    result BLAS may not write: read-only, not C-contiguous, or overlapping an operand."""
    gemm = bptt.gemm
    rng = np.random.default_rng(8)
    A, M = rng.standard_normal((6, 3)), rng.standard_normal((3, 4))
    C = np.zeros((6, 4))
    if not gemm.HAVE_BLAS:
        assert gemm.block_product(gemm.PRODUCT_ROWS, A, M, C) is None
        return
    assert gemm.block_product(gemm.PRODUCT_ROWS, A, M, C) is not None
    read_only = C.copy()
    read_only.flags.writeable = False
    big = np.zeros((6, 8))
    for a, m, c in [(A.astype(np.float32), M, C), (A, M, C.astype(np.float32)),
                    (A.astype(np.int64), M.astype(np.int64), C.astype(np.int64)),
                    (A, M[:2], C), (A, M, C[:5]), (A, M, read_only), (A, M, big[:, ::2]),
                    (A, M, big[:, :4])]:
        assert gemm.block_product(gemm.PRODUCT_ROWS, a, m, c) is None
    shared = np.zeros((6, 7))
    assert gemm.block_product(gemm.PRODUCT_ROWS, shared[:, :3], M, shared[:, 3:]) is None   # C over A
    assert gemm.block_product(gemm.SUM_OF_PRODUCTS, A, C, np.zeros((3, 4))) is not None
    assert gemm.block_product(gemm.SUM_OF_PRODUCTS, A, C[:5], np.zeros((3, 4))) is None     # rows differ
    assert gemm.block_product(gemm.SUM_OF_PRODUCTS, A, C, np.zeros((4, 3))) is None


@njit
def _take_once(T, B, blocks, state, left, sums_macs, per_step_macs):
    per_step = np.empty((0, bptt.gemm.BLOCK_PRODUCT_SIZE), np.int64)
    return _take_share(T, B, blocks, per_step, state, left, sums_macs, per_step_macs)


@settings(max_examples=100, deadline=None)
@given(T=st.integers(1, 3000), B=st.integers(1, 8), rows=st.integers(1, 512), data=st.data(),
       busy=st.floats(0, 1e7), per_step=st.floats(1, 1e5), summed=st.floats(0, 1))
def test_compiled_share_is_the_python_share(T, B, rows, data, busy, per_step, summed):
    """One call of the compiled path's ``_take_share`` claims the same run of blocks as
    ``bptt._share_of_what_is_left`` takes, for any blocks left and any work on the other
    thread (its sums not added yet: ``(T - summed) · sums_macs``)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(bptt, "STREAM_BLOCK_ROWS", rows)
        blocks = bptt.step_blocks(T, B)
    n = len(blocks)
    left = sorted(data.draw(st.sets(st.integers(0, n - 1), max_size=n)))
    done = int(summed * T)
    sums_macs = busy / max(T - done, 1)
    state = bptt.sync.counters(1)
    state[alongside.SUMMED] = done
    flags = np.full(n, alongside.TAKEN, np.int64)
    flags[left] = alongside.LEFT
    took = _take_once(T, B, np.array(blocks, np.int64).reshape(-1, 2), state, flags, sums_macs, per_step)
    python_left = list(left)
    run = bptt._share_of_what_is_left(blocks, python_left, (T - done) * sums_macs, per_step)
    assert took == bool(left)
    assert sorted(set(left) - set(np.flatnonzero(flags == alongside.LEFT))) == run


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_two_threads_share_what_is_left_without_gaps_or_twice(dtype):
    """Both threads in ``alongside.share_left`` at once (compiled, without the GIL), five times:
    every block's rows are computed (``C`` starts as NaN: a gap stays NaN), all blocks end up
    taken, and each row holds its product."""
    rng = np.random.default_rng(9)
    T, B, P, Q = 2000, 3, 24, 16
    A, M = rng.standard_normal((T * B, P)).astype(dtype), rng.standard_normal((P, Q)).astype(dtype)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(bptt, "STREAM_BLOCK_ROWS", 6)
        blocks = np.array(bptt.step_blocks(T, B), np.int64).reshape(-1, 2)
    for _ in range(5):
        C = np.full((T * B, Q), np.nan, dtype)
        per_step = bptt.gemm.block_product(bptt.gemm.PRODUCT_ROWS, A, M, C)
        if per_step is None:
            pytest.skip("no usable BLAS: the compiled path is not taken")
        per_step = per_step.reshape(1, -1)
        left = np.full(len(blocks), alongside.LEFT, np.int64)
        state = bptt.sync.counters(1)
        state[alongside.SUMMED] = T
        go = threading.Barrier(2)

        def share():
            go.wait()
            alongside.share_left(T, B, blocks, per_step, state, left, 0.0, float(P * Q * B))
        threads = [threading.Thread(target=share) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert not any(thread.is_alive() for thread in threads)
        assert (left == alongside.TAKEN).all()
        tol = 1e-12 if dtype == np.float64 else 1e-5
        np.testing.assert_allclose(C, A.astype(np.float64) @ M.astype(np.float64), rtol=tol, atol=tol)
