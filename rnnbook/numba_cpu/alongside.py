r"""The gradient products behind the backward loop, compiled: one call per thread, no Python between blocks.

While one thread runs the backward loop of a single sequence (``bptt.run_tiles``), a
second computes the products after it -- the weight and bias gradients, sums over the
steps, and the input gradient, one result per step -- block of steps by block of steps,
as the loop finishes them (``bptt._gradients_alongside``).  Each product comes as a row
of numbers (``gemm.block_product``)::

    sums      C (P, Q)  +=  A[rows]ᵀ B[rows]          dW = Σ_t dZ_tᵀ x_t,  db = Σ_t dZ_tᵀ 1
    per_step  C[rows]    =  A[rows] B                  dX_t = dZ_t W_ih

    blocks (n, 2)   steps t0 .. t1-1 of each block, in the order the loop finishes them
    flags           the loop's barrier count (``sync``): block n is ready at count·(T - t0)
    left (n,)       1 while nobody has taken block n's per-step rows, 0 once a thread has
    state           the steps whose sums the helper has added (slot ``SUMMED``)

The helper (:func:`follow`) takes every block in order: waits for it, adds its terms to
the sums (one thread, one order: the result does not depend on timing) and, when the
next block is not ready yet, computes this block's per-step rows too.  Once the loop is
over, both threads share what is left (:func:`share_left`).

Why compiled: the same work as Python calls (a BLAS call per product and block) made the
input gradient's blocks 2x slower once the loop was over (LSTM B=1 H=32, AMD VM: 43-47
against 22 µs per 128 steps, timed around the calls), while the BLAS calls themselves,
timed inside, took the same 10-13 µs: the difference is the two threads handing the GIL
back and forth between their calls, each hand-off waking a sleeping thread.  During the
loop only the helper holds the GIL and there is no such wait.
"""
from numba import njit

from .gemm import run_block
from .sync import compare_and_swap, load_acquire, store_release, wait_until

#: the slot of ``state`` that holds how many steps' sums the helper has added
SUMMED = 0
#: ``left[n]`` while block ``n``'s per-step rows are still to be taken, and once they are
LEFT, TAKEN = 1, 0


@njit(inline="always")
def _rows(per_step, r0, r1):
    """Rows ``r0 .. r1-1`` of every per-step product."""
    for k in range(per_step.shape[0]):
        run_block(per_step[k], r0, r1, True)


@njit(nogil=True, cache=True)
def follow(flags, count_per_step, T, B, blocks, sums, per_step, state, left, sums_macs, per_step_macs):
    """The helper's whole part: every block's sums as the loop finishes it, a block's per-step
    rows when it is ahead of the loop, then its share of what is left (:func:`share_left`).

    Block ``n`` (steps ``t0 .. t1-1``) is ready once the loop has passed
    ``count_per_step · (T - t0)`` barriers; a loop that raised stores a count past every block
    (``bptt._LOOP_OVER``), so this never waits for steps that will not come."""
    n_blocks = blocks.shape[0]
    summed = 0
    for n in range(n_blocks):
        t0, t1 = blocks[n, 0], blocks[n, 1]
        wait_until(flags, 0, count_per_step * (T - t0))
        for k in range(sums.shape[0]):
            run_block(sums[k], t0 * B, t1 * B, n == 0)
        summed += t1 - t0
        store_release(state, SUMMED, summed)
        ahead = n + 1 < n_blocks and load_acquire(flags, 0) < count_per_step * (T - blocks[n + 1, 0])
        if ahead and compare_and_swap(left, n, LEFT, TAKEN):
            _rows(per_step, t0 * B, t1 * B)
    share_left(T, B, blocks, per_step, state, left, sums_macs, per_step_macs)


@njit(nogil=True, cache=True)
def share_left(T, B, blocks, per_step, state, left, sums_macs, per_step_macs):
    """Take runs of the blocks whose per-step rows are left until none is (after the loop; the
    loop's thread calls it once the loop is over, the helper once its sums are added)."""
    while _take_share(T, B, blocks, per_step, state, left, sums_macs, per_step_macs):
        pass


@njit(inline="always")
def _take_share(T, B, blocks, per_step, state, left, sums_macs, per_step_macs):
    """Compute one run of blocks left -- this thread's share -- in one call; whether there was any.

    The share is what makes both threads finish together: the consecutive blocks from the
    first left, at least one, until they hold half of the work still to do, the other
    thread's sums not yet added (``sums_macs`` multiply-adds per step) and the per-step
    rows left (``per_step_macs`` per step)::

        steps taken · per_step_macs  ≥  ((T - summed) · sums_macs + steps left · per_step_macs) / 2

    All of it while the other thread is behind with its sums, about half when it is free,
    then half of the rest, and so on.  A run in one call: one BLAS call over many rows
    costs less than one per block.  Each block is claimed with a compare-and-swap, so two
    threads never take the same one; a run stops at a block the other thread took."""
    n = blocks.shape[0]
    first, steps_left = -1, 0
    for i in range(n):
        if load_acquire(left, i) == LEFT:
            if first < 0:
                first = i
            steps_left += blocks[i, 1] - blocks[i, 0]
    if first < 0:
        return False
    if not compare_and_swap(left, first, LEFT, TAKEN):
        return True                          # the other thread took it first: look again
    want = ((T - load_acquire(state, SUMMED)) * sums_macs + steps_left * per_step_macs) / 2
    last = first                             # blocks first .. last: steps blocks[last, 0] .. blocks[first, 1] - 1
    while (last + 1 < n and (blocks[first, 1] - blocks[last, 0]) * per_step_macs < want
           and compare_and_swap(left, last + 1, LEFT, TAKEN)):
        last += 1
    _rows(per_step, blocks[last, 0] * B, blocks[first, 1] * B)
    return True
