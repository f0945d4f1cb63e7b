"""How the Numba backend puts threads on a recurrence: tilings, unit blocks and the step barrier.

Parity of every cell under every split is in ``test_numba_parity.py``; here are the
pieces: the unit-block edges, the planner's choice, and the barrier itself, run by
real threads that check after every step that nobody has run ahead.
"""
import concurrent.futures

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

numba = pytest.importorskip("numba")
from rnnbook.numba_cpu import bptt, sync  # noqa: E402
from test_numba_parity import CELLS, compare, poison_empty  # noqa: E402


@given(H=st.integers(1, 600), n=st.integers(1, 8))
def test_unit_bounds_cover_the_units_once(H, n):
    if n > H:
        n = H
    bounds = bptt.unit_bounds(H, n)
    assert len(bounds) == n
    assert bounds[0][0] == 0 and bounds[-1][1] == H
    for (a0, a1), (b0, b1) in zip(bounds, bounds[1:]):
        assert a1 == b0
    assert all(j1 > j0 for j0, j1 in bounds)                   # no empty block
    if H >= 16 * n:
        assert all(j0 % 16 == 0 for j0, _ in bounds)          # edges on whole SIMD vectors
        sizes = [j1 - j0 for j0, j1 in bounds]
        assert max(sizes) - min(sizes) <= 16 + H % 16


def test_plan_tiles_splits_rows_unless_told(monkeypatch):
    monkeypatch.setattr(numba, "get_num_threads", lambda: 2)
    LOOPS, BLAS, PANELS = bptt.gemm.LOOPS, bptt.gemm.BLAS, bptt.gemm.PANELS
    few = BLAS if bptt.gemm.HAVE_BLAS else LOOPS       # a product too small per block for panels
    # automatic: rows on threads; panels once every block has PANEL_MIN_ROWS rows
    assert bptt.plan_tiles(32, 256, 1024, 128, 256)[:3] == (PANELS, 2, 1)        # 2 blocks of 16 rows
    assert bptt.plan_tiles(64, 1024, 4096, 128, 1024)[:3] == (PANELS, 2, 1)      # large products too
    assert bptt.plan_tiles(8, 256, 1024, 256, 256)[:3] == (few, 2, 1)            # 2 blocks of 4 rows
    assert bptt.plan_tiles(1, 128, 512, 1024, 128)[:3] == (few, 1, 1)            # one row: one block
    assert bptt.plan_tiles(1, 64, 256, 1024, 64)[:3] == (PANELS, 1, 1)           # one row, W_hh in L2
    assert bptt.plan_tiles(1, 32, 128, 1024, 32)[:3] == (PANELS, 1, 1)           # one row, W_hh in L1
    most = bptt.PANEL_ROW_MAX_MACS                                                # panels up to the limit
    assert bptt.plan_tiles(1, most // 128, 128, 1024, 32)[:3] == (PANELS, 1, 1)
    assert bptt.plan_tiles(1, most // 128 + 1, 128, 1024, 32)[:3] == (few, 1, 1)
    assert bptt.plan_tiles(2, 32, 128, 1024, 32)[:3] == (few, 1, 1)              # two rows: BLAS
    assert bptt.plan_tiles(1, 8, 16, 1024, 8)[:3] == (LOOPS, 1, 1)                # tiny product: loops
    assert bptt.plan_tiles(3, 8, 16, 1024, 8).macs == 1024 * 3 * 8 * 16       # the loop's work, T·B·K·N
    # behind a full-BPTT backward loop: one block of all the rows, the gradients on the other thread
    assert bptt.plan_tiles(8, 256, 1024, 256, 256, behind=True)[:3] == (PANELS, 1, 1)
    assert bptt.plan_tiles(4, 256, 64, 256, 64, behind=True)[:3] == (few, 1, 1)  # 4 rows: BLAS
    largest = bptt.BEHIND_ONE_BLOCK_MAX_MACS                                     # up to the limit
    assert bptt.plan_tiles(64, largest // (64 * 512), 512, 128, 512, behind=True)[1] == 1
    assert bptt.plan_tiles(64, 2 * largest // (64 * 512), 512, 128, 512, behind=True)[1] == 2
    with monkeypatch.context() as m:                         # rows split at any length, but one block
        m.setattr(bptt, "MIN_MACS_FOR_THREADS", 0)           # only from the length the gradients stream at
        enough = -(-bptt.BEHIND_MIN_MACS // (8 * 256 * 64))
        assert bptt.plan_tiles(8, 256, 64, enough, 64, behind=True)[1] == 1
        assert bptt.plan_tiles(8, 256, 64, enough - 1, 64, behind=True)[1] == 2
    with bptt.split("rows", 2):                                                   # forced: as told
        assert bptt.plan_tiles(8, 256, 1024, 256, 256, behind=True)[1] == 2
    monkeypatch.setattr(numba, "get_num_threads", lambda: 1)
    assert bptt.plan_tiles(8, 256, 1024, 256, 256)[:3] == (PANELS, 1, 1)         # one thread, 8 rows
    assert bptt.plan_tiles(8, 256, 1024, 256, 256, behind=True)[:3] == (PANELS, 1, 1)
    monkeypatch.setattr(numba, "get_num_threads", lambda: 4)                     # more threads: rows
    assert bptt.plan_tiles(8, 256, 1024, 256, 256, behind=True)[:3] == (few, 4, 1)
    monkeypatch.setattr(numba, "get_num_threads", lambda: 2)
    with bptt.strategy("blas" if bptt.gemm.HAVE_BLAS else "loops"):
        forced = BLAS if bptt.gemm.HAVE_BLAS else LOOPS
        assert bptt.plan_tiles(32, 256, 1024, 128, 256)[:3] == (forced, 2, 1)
        assert bptt.plan_tiles(1, 128, 512, 1024, 128)[:3] == (forced, 1, 1)
        with bptt.split("units", 3):
            assert bptt.plan_tiles(64, 256, 1024, 128, 256)[:3] == (forced, 1, 3)
            assert bptt.plan_tiles(1, 2, 2, 5, 2)[:3] == (forced, 1, 2)              # never more blocks than units
        with bptt.split("units"):
            assert bptt.plan_tiles(1, 128, 512, 1024, 128)[:3] == (forced, 1, 2)     # one per thread
        with bptt.split("rows", 4):
            assert bptt.plan_tiles(3, 8, 8, 5, 8)[:3] == (forced, 3, 1)              # never more blocks than rows
        assert bptt.plan_tiles(1, 128, 512, 1024, 128)[:3] == (forced, 1, 1)         # restored on exit
    with bptt.strategy("panels"), bptt.split("units", 2):
        assert bptt.plan_tiles(1, 128, 512, 1024, 128)[:3] == (PANELS, 1, 2)
    with pytest.raises(ValueError, match="strategy must be"):
        with bptt.strategy("tiles"):
            pass
    with pytest.raises(ValueError, match="split must be"):
        with bptt.split("columns"):
            pass
    with pytest.raises(ValueError, match="at least 1"):
        with bptt.split("units", 0):
            pass


def test_plan_tiles_splits_the_units_of_a_forward_loop_of_few_rows(monkeypatch):
    """A forward loop (``ahead``) of one row with ``K·N >= UNITS_AHEAD_MIN_MACS``, or of 2 to
    ``UNITS_AHEAD_MAX_ROWS`` rows with ``K·N >= UNITS_AHEAD_ROWS_MIN_MACS``, on exactly two
    threads and long enough: two unit blocks, on the panels for one row, on BLAS for more."""
    monkeypatch.setattr(numba, "get_num_threads", lambda: 2)
    BLAS, PANELS = bptt.gemm.BLAS, bptt.gemm.PANELS
    few = BLAS if bptt.gemm.HAVE_BLAS else bptt.gemm.LOOPS
    least, rows_least, most_rows = (bptt.UNITS_AHEAD_MIN_MACS, bptt.UNITS_AHEAD_ROWS_MIN_MACS,
                                    bptt.UNITS_AHEAD_MAX_ROWS)
    assert bptt.plan_tiles(1, 256, 1024, 512, 256, ahead=True)[:3] == (PANELS, 1, 2)   # LSTM H=256
    assert bptt.plan_tiles(1, 128, least // 128, 1024, 128, ahead=True)[:3] == (PANELS, 1, 2)  # at the limit
    assert bptt.plan_tiles(1, 127, least // 128, 1024, 128, ahead=True)[:3] == (few, 1, 1)    # below it
    assert bptt.plan_tiles(1, 256, 1024, 512, 256)[:3] == (few, 1, 1)                   # not a forward loop
    assert bptt.plan_tiles(1, 256, 1024, 512, 256, behind=True)[:3] == (few, 1, 1)      # nor the backward
    for B in range(2, most_rows + 1):                                                    # a few rows: BLAS
        assert bptt.plan_tiles(B, 256, rows_least // 256, 256, 256, ahead=True)[:3] == (few, 1, 2), B
        assert bptt.plan_tiles(B, 255, rows_least // 256, 256, 256, ahead=True)[1:3] == (B // 2, 1), B
    assert bptt.plan_tiles(most_rows + 1, 512, 2048, 256, 512, ahead=True)[1:3] == (2, 1)  # more rows: rows
    long_enough = -(-bptt.MIN_MACS_FOR_THREADS // least)                                 # T·K·N over the hand-off
    assert bptt.plan_tiles(1, 256, 256, long_enough, 256, ahead=True)[2] == 2
    assert bptt.plan_tiles(1, 256, 256, long_enough - 1, 256, ahead=True)[2] == 1
    with bptt.split("rows"):                                                             # forced: as told
        assert bptt.plan_tiles(1, 256, 1024, 512, 256, ahead=True)[1:3] == (1, 1)
    with bptt.strategy("blas" if bptt.gemm.HAVE_BLAS else "loops"):
        assert bptt.plan_tiles(1, 256, 1024, 512, 256, ahead=True)[:3] == (few, 1, 2)
    for threads in (1, 4):                                                               # only on two threads
        monkeypatch.setattr(numba, "get_num_threads", lambda: threads)
        assert bptt.plan_tiles(1, 256, 1024, 512, 256, ahead=True)[2] == 1, threads


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("B", [1, 3])
@pytest.mark.parametrize("arch,opts", CELLS)
def test_a_forward_loop_with_its_units_split_by_the_plan_matches_the_reference(arch, opts, B, dtype, monkeypatch):
    """Unforced, on two threads: the smallest ``H`` (a multiple of 16) at which the plan splits
    a forward loop's units gives the reference's outputs, final states and gradients
    (``test_numba_parity.compare``).  The weights keep their initial scale (noise of ``0.1/√H``
    on every entry, ``0.3`` on the biases): at this ``H`` and length, the parity tests' noise of
    0.3 on every weight makes the recurrence chaotic, and the two backends' rounding grows
    apart whatever the split."""
    monkeypatch.setattr(numba, "get_num_threads", lambda: 2)
    gates = {"rnn": 1, "gru": 3, "lstm": 4}[arch]
    least = bptt.UNITS_AHEAD_MIN_MACS if B == 1 else bptt.UNITS_AHEAD_ROWS_MIN_MACS
    H = 16 * -(-int(np.ceil(np.sqrt(least / gates))) // 16)
    T = -(-bptt.MIN_MACS_FOR_THREADS // (B * gates * H * H))
    tilings = []
    monkeypatch.setattr(bptt, "plan_tiles", lambda *a, real=bptt.plan_tiles, **k: tilings.append(real(*a, **k)) or tilings[-1])
    compare(arch, opts, T, B, 24, H, dtype, "auto", None, seed=B + 7 * H, weight_noise=0.1 / np.sqrt(H))
    assert [t.unit_blocks for t in tilings] == [2, 1], tilings        # the forward split, the backward not


@numba.njit(nogil=True)
def _barrier_walk(flags, me, n, steps, seen, delay):
    """Each step: write my step number, pass the barrier, then record everybody's number.

    After barrier ``t`` every thread must see all others at step ``t`` or later -- never
    earlier (that would be a thread that ran ahead of the barrier)."""
    for t in range(1, steps + 1):
        x = 0.0
        for _ in range(delay[me, t - 1]):     # uneven work, so that the threads drift apart
            x += 1e-9
        seen[me, t - 1, me] = t + (x > 1e9)
        sync.arrive_and_wait(flags, me, n, t)
        for k in range(n):
            seen[me, t - 1, k] = min(seen[me, t - 1, k], sync.load_acquire(flags, k * sync.PAD))


@settings(max_examples=5, deadline=None)
@given(n=st.integers(2, 3), seed=st.integers(0, 2**16))
def test_barrier_lets_no_thread_run_ahead(n, seed):
    steps = 300
    rng = np.random.default_rng(seed)
    delay = rng.integers(0, 3000, size=(n, steps))
    flags = sync.new_flags(n)
    seen = np.full((n, steps, n), 10**9, np.int64)
    with concurrent.futures.ThreadPoolExecutor(n - 1) as pool:
        others = [pool.submit(_barrier_walk, flags, k, n, steps, seen, delay) for k in range(1, n)]
        _barrier_walk(flags, 0, n, steps, seen, delay)
        for f in others:
            f.result(timeout=60)
    # seen[me, t-1, k] = the counter of thread k as thread me saw it right after barrier t
    for t in range(1, steps + 1):
        assert (seen[:, t - 1, :] >= t).all(), f"a thread passed barrier {t} before all others reached it"
    assert (flags[:n * sync.PAD:sync.PAD] == steps).all()
    assert not flags[:n * sync.PAD].reshape(n, sync.PAD)[:, 1:].any()         # padding never written
    assert flags[n * sync.PAD] == sync.ALL_READY and not flags[n * sync.PAD + 1:].any()   # the inputs' count


def test_barrier_of_one_thread_only_announces():
    """A single thread never waits, but its count says how far it has come (what a thread
    working alongside the loop reads, ``bptt.run_tiles(..., stream=T)``)."""
    flags = sync.new_flags(1)
    seen = np.zeros((1, 3, 1), np.int64)
    _barrier_walk(flags, 0, 1, 3, seen, np.zeros((1, 3), np.int64))
    assert flags[0] == 3 and not flags[1:sync.PAD].any()
    assert (seen[0, :, 0] == [1, 2, 3]).all()                   # the count right after each barrier


@settings(max_examples=25, deadline=None)
@given(R=st.integers(1, 40), K=st.integers(1, 30), N=st.integers(1, 30), threads=st.integers(1, 3),
       dtype=st.sampled_from([np.float32, np.float64]), with_bias=st.booleans(), through_panels=st.booleans(),
       seed=st.integers(0, 2**16))
def test_phase_gemms_on_threads_match_numpy(R, K, N, threads, dtype, with_bias, through_panels, seed):
    """``bptt.matmul``/``input_projection``/``weight_gradient``/``input_gradient``, rows split over
    up to three threads (forced at any size), against NumPy in float64; the input projection's
    blocks through the packed panels (``gemm.project_block``) or NumPy (``INPUT_PANELS_MIN_MACS``
    forced either way)."""
    calls = []
    real = bptt.gemm.project_block
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(bptt, "GEMM_MIN_MACS_FOR_THREADS", 0)
        mp.setattr(bptt, "INPUT_PANELS_MIN_MACS", 0 if through_panels else 1 << 62)
        mp.setattr(bptt.gemm, "project_block", lambda *a: calls.append(a[4:]) or real(*a))
        mp.setattr(numba, "get_num_threads", lambda: threads)
        _check_phase_gemms(R, K, N, dtype, with_bias, seed)
    blocks = sorted(calls)                     # each row of the projection (T·B = 2R) in exactly one block
    if through_panels:
        assert blocks[0][0] == 0 and blocks[-1][1] == 2 * R
        assert all(a1 == b0 for (_, a1), (b0, _) in zip(blocks, blocks[1:]))
    else:
        assert calls == []


def _check_phase_gemms(R, K, N, dtype, with_bias, seed):
    rng = np.random.default_rng(seed)
    A, M = rng.standard_normal((R, K)).astype(dtype), rng.standard_normal((K, N)).astype(dtype)
    tol = 1e-12 if dtype == np.float64 else 2e-5
    ref = A.astype(np.float64) @ M
    np.testing.assert_allclose(bptt.matmul(A, M), ref, rtol=tol, atol=tol * np.abs(ref).max())
    x = rng.standard_normal((R, 2, K)).astype(dtype)           # (T, B, D) with T = R, B = 2
    W, b = rng.standard_normal((N, K)).astype(dtype), rng.standard_normal(N).astype(dtype)
    got = bptt.input_projection(x, W, b if with_bias else None)
    ref = x.astype(np.float64) @ W.T.astype(np.float64) + (b if with_bias else 0)
    assert got.shape == (R, 2, N) and got.dtype == dtype and got.flags.c_contiguous
    np.testing.assert_allclose(got, ref, rtol=tol, atol=tol * np.abs(ref).max())
    dZ = rng.standard_normal((R, 2, N)).astype(dtype)
    ref = np.einsum("tbg,tbk->gk", dZ.astype(np.float64), x.astype(np.float64))
    np.testing.assert_allclose(bptt.weight_gradient(dZ, x), ref, rtol=tol, atol=tol * np.abs(ref).max())
    ref = dZ.astype(np.float64) @ W.astype(np.float64)
    np.testing.assert_allclose(bptt.input_gradient(dZ, W), ref, rtol=tol, atol=tol * np.abs(ref).max())
    got, ref = bptt.bias_gradient(dZ), dZ.astype(np.float64).sum(axis=(0, 1))
    assert got.shape == (N,) and got.dtype == dtype
    np.testing.assert_allclose(got, ref, rtol=tol, atol=tol * np.abs(dZ).sum(axis=(0, 1)).max())


@settings(max_examples=20, deadline=None)
@given(T=st.integers(1, 30), B=st.integers(1, 3), D=st.integers(1, 20), G=st.integers(1, 40),
       threads=st.integers(1, 3), with_bias=st.booleans(), through_panels=st.booleans(),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**16))
def test_input_projection_writes_every_row_it_adds_into(T, B, D, G, threads, with_bias, through_panels, dtype,
                                                         seed):
    """Each thread writes the bias (or zero) into its own rows before adding its product into
    them: with ``np.empty`` filled with NaN, a row that no thread wrote first would stay NaN.
    Rows on up to three threads (forced at any size), through the panels or NumPy."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((T, B, D)).astype(dtype)
    W, b = rng.standard_normal((G, D)).astype(dtype), rng.standard_normal(G).astype(dtype)
    with pytest.MonkeyPatch.context() as mp:
        poison_empty(mp)
        mp.setattr(bptt, "GEMM_MIN_MACS_FOR_THREADS", 0)
        mp.setattr(bptt, "INPUT_PANELS_MIN_MACS", 0 if through_panels else 1 << 62)
        mp.setattr(numba, "get_num_threads", lambda: threads)
        got = bptt.input_projection(x, W, b if with_bias else None)
    ref = x.astype(np.float64) @ W.T.astype(np.float64) + (b if with_bias else 0)
    tol = 1e-12 if dtype == np.float64 else 2e-5
    assert got.shape == (T, B, G) and not np.isnan(got).any()
    np.testing.assert_allclose(got, ref, rtol=tol, atol=tol * np.abs(ref).max())


def test_phase_gemms_leave_blas_threads_as_they_were():
    """``on_threads`` runs BLAS single-threaded inside and restores the process's setting."""
    if bptt.gemm._threads is None:
        pytest.skip("no OpenBLAS thread control here")
    get, put = bptt.gemm._threads
    old = get()
    seen = []
    bptt.on_threads(lambda r0, r1: seen.append((r0, r1, get())), 10, 1 << 30)
    assert get() == old
    assert all(n == 1 for _, _, n in seen)
    blocks = sorted((r0, r1) for r0, r1, _ in seen)
    assert blocks[0][0] == 0 and blocks[-1][1] == 10                     # every row once:
    assert all(a1 == b0 for (_, a1), (b0, _) in zip(blocks, blocks[1:]))    # no gap, no overlap


@pytest.fixture
def two_blas_threads():
    """OpenBLAS's thread control ``(get, put)``, set to two threads for the test and restored."""
    if bptt.gemm._threads is None:
        pytest.skip("no OpenBLAS thread control here")
    get, put = bptt.gemm._threads
    old = get()
    put(2)
    yield get, put
    put(old)


def _model_runs():
    """Each model that mixes a backend's calls with NumPy code, as ``run(backend, rng)`` ->
    its outputs and gradients (a flat list of arrays), from parameters drawn by ``rng``."""
    from rnnbook import bilstm_crf
    from rnnbook.data import timing_tasks
    from rnnbook.losses import softmax_cross_entropy
    from rnnbook.model import SequenceModel
    from rnnbook.regularize.lm import RegularizedLM

    def shaken(params, rng):                  # every parameter off its init, biases included
        return {k: v + 0.1 * rng.standard_normal(v.shape) for k, v in params.items()}

    def sequence_model(backend, rng):
        model = SequenceModel("gru", hidden_size=6, vocab_size=7, embed_dim=4, backend=backend)
        params = shaken(model.init_params(seed=1), rng)
        tokens, targets = rng.integers(0, 7, (5, 3)), rng.integers(0, 7, (5, 3))
        logits, _, cache = model.forward(params, tokens)
        grads = model.backward(params, cache, softmax_cross_entropy(logits, targets)[1])
        return [logits, *grads.values()]

    def bilstm_crf_model(backend, rng):
        model = bilstm_crf.BiLSTMCRF(vocab_size=7, num_tags=3, embed_dim=4, hidden_size=5, backend=backend)
        params = shaken(model.init_params(seed=2), rng)
        loss, grads = model.loss_and_grads(params, rng.integers(0, 7, (5, 3)), rng.integers(0, 3, (5, 3)))
        return [np.array(loss), *grads.values()]

    def regularized_lm(backend, rng):
        model = RegularizedLM("lstm", hidden_size=5, vocab_size=6, embed_dim=3, num_layers=2, dropout_output=0.3,
                              dropout_hidden=0.2, weight_drop=0.2, seed=5, backend=backend)
        params = shaken(model.init_params(seed=3), rng)
        tokens = rng.integers(0, 6, (4, 2))
        logits, _, cache = model.forward(params, tokens)
        grads = model.backward(params, cache, rng.standard_normal(logits.shape))
        return [logits, *grads.values()]

    def curriculum(backend, rng):
        task = timing_tasks.SingleNCurriculum(cell="lstm", hidden_size=4, batch_size=3, backend=backend)
        params = shaken(task.init_params(seed=4), rng)
        bits, answers = task.batch(seed=int(rng.integers(2**31)))
        loss, grads = task.loss_and_grads(params, bits, answers)
        return [np.array(loss), *grads.values()]
    return {"SequenceModel": sequence_model, "BiLSTMCRF": bilstm_crf_model, "RegularizedLM": regularized_lm,
            "SingleNCurriculum": curriculum}


@pytest.mark.parametrize("model", ["SequenceModel", "BiLSTMCRF", "RegularizedLM", "SingleNCurriculum"])
@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_models_run_their_array_code_with_blas_as_the_backend_asks(two_blas_threads, backend, model, monkeypatch):
    """The models run their read-out (NumPy code) under ``dispatch.host_blas``: with the
    Numba backend OpenBLAS is single-threaded in their forward and backward (its idle
    workers would otherwise spin on the cores the backend needs next), and as it was after
    them; with NumPy's backend it is never touched.  The results do not depend on the
    setting: the same as the NumPy backend's, from the same draws."""
    from rnnbook.layers import linear
    get, _ = two_blas_threads
    seen = []
    for name in ("forward", "backward"):
        real = getattr(linear, name)
        monkeypatch.setattr(linear, name, lambda *a, _real=real: seen.append(get()) or _real(*a))
    run = _model_runs()[model]
    got = run(backend, np.random.default_rng(7))
    assert seen and set(seen) == {1 if backend == "numba" else 2} and get() == 2
    for g, r in zip(got, run("numpy", np.random.default_rng(7)), strict=True):
        np.testing.assert_allclose(g, r, rtol=1e-9, atol=1e-12)


def test_the_backends_own_calls_nest_inside_host_blas(two_blas_threads):
    """A backend call inside ``rb.host_blas`` (a loop of one's own, as in docs/numba.md)
    leaves OpenBLAS single-threaded for the rest of the block, and the block restores it.
    (That the count is restored only by the last of overlapping blocks is the test of
    nesting across threads below.)"""
    from rnnbook import dispatch
    from rnnbook.model import SequenceModel
    get, _ = two_blas_threads
    tokens = np.random.default_rng(8).integers(0, 4, (6, 2))
    with dispatch.host_blas("numba"):
        assert get() == 1
        model = SequenceModel("lstm", hidden_size=3, vocab_size=4, backend="numba")
        model.forward(model.init_params(seed=3), tokens)
        assert get() == 1                         # the backend's block left the outer one's setting
    assert get() == 2


def test_single_threaded_blas_nests_across_threads(two_blas_threads):
    """Blocks that overlap in several Python threads restore OpenBLAS's setting only when the
    last one leaves (A enters, B enters, A leaves, B leaves)."""
    import threading
    get, put = two_blas_threads
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def a():
        with bptt.gemm.single_threaded_blas():
            a_in.set()
            b_in.wait(10)
        a_out.set()

    def b():
        a_in.wait(10)
        with bptt.gemm.single_threaded_blas():
            b_in.set()
            a_out.wait(10)
            seen["inside after A left"] = get()
    threads = [threading.Thread(target=f) for f in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert seen["inside after A left"] == 1
    assert get() == 2


@settings(max_examples=20, deadline=None)
@given(R=st.integers(1, 30), K=st.integers(1, 20), N=st.integers(1, 20), threads=st.integers(1, 3),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**16))
def test_gemms_queued_together_run_once_at_the_end(R, K, N, threads, dtype, seed):
    """Inside ``bptt.together()`` the phase GEMMs are only queued: their arrays are filled when the
    block ends, all with one hand-off, and equal what the same calls give one by one."""
    rng = np.random.default_rng(seed)
    dZ = rng.standard_normal((R, 2, N)).astype(dtype)
    x = rng.standard_normal((R, 2, K)).astype(dtype)
    W = rng.standard_normal((N, K)).astype(dtype)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(bptt, "GEMM_MIN_MACS_FOR_THREADS", 0)
        mp.setattr(numba, "get_num_threads", lambda: threads)
        alone = (bptt.weight_gradient(dZ, x), bptt.bias_gradient(dZ), bptt.input_gradient(dZ, W))
        calls = []
        real = bptt.in_parallel
        mp.setattr(bptt, "in_parallel", lambda fn, jobs: calls.append(len(jobs)) or real(fn, jobs))
        with bptt.together():
            queued = (bptt.weight_gradient(dZ, x), bptt.bias_gradient(dZ), bptt.input_gradient(dZ, W))
            with bptt.together():                        # a block inside a block runs its own queue
                inner = bptt.weight_gradient(dZ, x)
            hand_off = [threads] if threads > 1 else []  # (one thread runs its parts without one)
            assert calls == hand_off                     # ... when it ends, and the outer one's waits
            inner_then = inner.copy()
        assert calls == hand_off * 2                     # then all of it, one hand-off
    tol = 1e-12 if dtype == np.float64 else 1e-5
    for got, ref in zip(queued + (inner_then,), alone + (alone[0],)):
        np.testing.assert_allclose(got, ref, rtol=tol, atol=tol * max(1.0, np.abs(ref).max()))


def test_together_runs_nothing_after_an_error():
    ran = []
    with pytest.raises(RuntimeError, match="stop"):
        with bptt.together():
            bptt.on_threads(lambda r0, r1: ran.append((r0, r1)), 4, 1)
            raise RuntimeError("stop")
    assert ran == []
    bptt.on_threads(lambda r0, r1: ran.append((r0, r1)), 4, 1)      # and nothing stays queued
    assert ran == [(0, 4)]


def test_together_is_per_python_thread():
    """A block in one Python thread does not queue another thread's GEMMs."""
    import threading
    done = []
    with bptt.together():
        t = threading.Thread(target=lambda: bptt.on_threads(lambda r0, r1: done.append(r1), 3, 1))
        t.start()
        t.join(20)
        assert done == [3]


def test_a_forked_child_restores_blas_threads_left_single_by_a_parent_thread(two_blas_threads):
    """A fork while another thread is inside ``single_threaded_blas``: the child never sees
    that thread leave, so its at-fork hook restores OpenBLAS's count and the count of threads inside."""
    import threading
    get, put = two_blas_threads
    gemm = bptt.gemm
    inside, leave = threading.Event(), threading.Event()

    def other():
        with gemm.single_threaded_blas():
            inside.set()
            leave.wait(10)
    t = threading.Thread(target=other)
    t.start()
    try:
        assert inside.wait(10) and get() == 1
        gemm._reset_in_child()                     # what the child runs right after fork
        assert get() == 2 and gemm._blas_holders == 0
        with gemm.single_threaded_blas():          # and the child's own blocks work as usual
            assert get() == 1
        assert get() == 2
        gemm._blas_holders = 1                     # back to the parent's state, for the other
        put(1)                                     # thread's way out
    finally:
        leave.set()
        t.join(10)
    assert get() == 2 and gemm._blas_holders == 0


def test_a_child_forked_inside_a_block_keeps_it(two_blas_threads):
    """A fork by a thread that is itself inside ``single_threaded_blas`` (``rb.host_blas``
    around code that forks): the child keeps that block, and leaving it there restores
    OpenBLAS's count; the blocks after it work as usual."""
    get, _ = two_blas_threads
    gemm = bptt.gemm
    with gemm.single_threaded_blas():
        with gemm.single_threaded_blas():
            gemm._reset_in_child()                 # what the child runs right after fork
            assert get() == 1 and gemm._blas_holders == 1 and gemm._blas_mine.depth == 2
        assert get() == 1
    assert get() == 2 and gemm._blas_holders == 0 and gemm._blas_mine.depth == 0
    with gemm.single_threaded_blas():
        assert get() == 1
    assert get() == 2


@pytest.mark.parametrize("T,through_panels", [(1023, False), (1024, True)])
def test_input_projection_goes_to_the_panels_from_its_threshold(T, through_panels, monkeypatch):
    """With the default ``INPUT_PANELS_MIN_MACS`` (2^22): T·B·D·G = 1024·1·32·128 on one thread
    goes to ``gemm.project_block``, one row less to NumPy; both give the product plus the bias."""
    assert bptt.INPUT_PANELS_MIN_MACS == 1 << 22
    calls = []
    real = bptt.gemm.project_block
    monkeypatch.setattr(bptt.gemm, "project_block", lambda *a: calls.append(a[4:]) or real(*a))
    monkeypatch.setattr(numba, "get_num_threads", lambda: 1)
    rng = np.random.default_rng(T)
    x = rng.standard_normal((T, 1, 32)).astype(np.float32)
    W, b = rng.standard_normal((128, 32)).astype(np.float32), rng.standard_normal(128).astype(np.float32)
    got = bptt.input_projection(x, W, b)
    ref = x.astype(np.float64) @ W.T.astype(np.float64) + b
    np.testing.assert_allclose(got, ref, rtol=2e-5, atol=2e-5 * np.abs(ref).max())
    assert calls == ([(0, T)] if through_panels else [])


@settings(max_examples=25, deadline=None)
@given(R=st.integers(1, 100), K=st.integers(1, 40), N=st.integers(1, 70), data=st.data(),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**16))
def test_project_block_fills_its_rows_the_same_however_cut(R, K, N, data, dtype, seed):
    """``gemm.project_block`` writes ``b + X[r] @ M`` into rows ``r0 .. r1-1`` only (steps of
    ``PROJECTION_ROWS`` rows and the rest), against float64 NumPy; cut into two blocks at any
    row, the result equals the one of a single block bit for bit, unless a block is one row
    (the single-row kernel adds in another order)."""
    rng = np.random.default_rng(seed)
    gemm = bptt.gemm
    X, W = rng.standard_normal((R, K)).astype(dtype), rng.standard_normal((N, K)).astype(dtype)
    b = rng.standard_normal(N).astype(dtype)
    M = gemm.operand(W.T, gemm.PANELS)
    r0 = data.draw(st.integers(0, R))
    r1 = data.draw(st.integers(r0, R))
    out = np.full((R, N), np.nan, dtype)
    gemm.project_block(X, M, b, out, r0, r1)
    ref = X.astype(np.float64) @ W.T.astype(np.float64) + b
    tol = 1e-12 if dtype == np.float64 else 2e-5
    np.testing.assert_allclose(out[r0:r1], ref[r0:r1], rtol=tol, atol=tol * np.abs(ref).max())
    assert np.isnan(out[:r0]).all() and np.isnan(out[r1:]).all()
    whole, cut = np.empty((R, N), dtype), np.empty((R, N), dtype)
    gemm.project_block(X, M, b, whole, 0, R)
    gemm.project_block(X, M, b, cut, 0, r0)
    gemm.project_block(X, M, b, cut, r0, R)
    if 1 in (r0, R - r0, R):
        np.testing.assert_allclose(cut, whole, rtol=tol, atol=tol * np.abs(ref).max())
    else:
        np.testing.assert_array_equal(cut, whole)


@given(r0=st.integers(0, 200), n=st.integers(0, 300), rows=st.sampled_from([6, 8]))
def test_projection_steps_cover_the_block_and_leave_no_row_alone(r0, n, rows):
    """``gemm.projection_steps`` cuts ``r0 .. r0+n-1`` into consecutive steps, each a whole
    number of its rows, and (for blocks of more than one row) none with a row alone in a
    panel block of ``rows`` rows (8 with 64-byte vectors, else 6)."""
    gemm = bptt.gemm
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(gemm, "ROWS", rows)
        steps = gemm.projection_steps(r0, r0 + n)
    assert [s0 for s0, _, _ in steps] == ([r0] if n else []) + [s1 for _, s1, _ in steps[:-1]]
    assert (steps[-1][1] if steps else r0) == r0 + n
    assert all(s1 > s0 and (s1 - s0) % size == 0 for s0, s1, size in steps)
    assert all(size <= gemm.PROJECTION_ROWS for _, _, size in steps)
    if n > 1:
        assert all(size % rows != 1 for _, _, size in steps)
    assert all(a[2] != b[2] for a, b in zip(steps, steps[1:]))      # equal steps are one call


@pytest.mark.skipif(not bptt.gemm.HAVE_BLAS, reason="no usable BLAS in NumPy here")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_add_product_rows_adds_into_its_rows_only(dtype):
    """``gemm.add_product_rows`` (the BLAS form that ``benchmarks/input_bias.py`` times) adds
    ``X[r] @ W^T`` into rows ``r0 .. r1-1`` of ``out`` and leaves the others as they were."""
    rng = np.random.default_rng(7)
    X, W = rng.standard_normal((37, 19)).astype(dtype), rng.standard_normal((23, 19)).astype(dtype)
    start = rng.standard_normal((37, 23)).astype(dtype)
    out = start.copy()
    bptt.gemm.add_product_rows(X, W, out, 5, 30)
    ref = start.astype(np.float64)
    ref[5:30] += X[5:30].astype(np.float64) @ W.T.astype(np.float64)
    tol = 1e-12 if dtype == np.float64 else 2e-5
    np.testing.assert_allclose(out, ref, rtol=tol, atol=tol * np.abs(ref).max())
    np.testing.assert_array_equal(out[:5], start[:5])
    np.testing.assert_array_equal(out[30:], start[30:])


def test_single_threaded_blas_survives_an_error_and_counts_without_openblas(two_blas_threads, monkeypatch):
    """An exception inside nested blocks leaves OpenBLAS's count, the threads inside and this
    thread's depth as they were; leaving a block on a thread that never entered it raises; with
    no OpenBLAS thread control the blocks still nest (and touch nothing)."""
    import threading
    get, _ = two_blas_threads
    gemm = bptt.gemm
    with pytest.raises(KeyError):
        with gemm.single_threaded_blas():
            with gemm.single_threaded_blas():
                assert get() == 1 and gemm._blas_holders == 1 and gemm._blas_mine.depth == 2
                raise KeyError("inside")
    assert get() == 2 and gemm._blas_holders == 0 and gemm._blas_mine.depth == 0
    block = gemm.single_threaded_blas()
    block.__enter__()
    errors = []

    def leave_elsewhere():
        try:
            block.__exit__(None, None, None)
        except RuntimeError as exc:
            errors.append(exc)
    t = threading.Thread(target=leave_elsewhere)
    t.start()
    t.join(10)
    assert len(errors) == 1 and "did not enter" in str(errors[0]) and get() == 1
    block.__exit__(None, None, None)                       # left where it was entered
    assert get() == 2 and gemm._blas_holders == 0
    monkeypatch.setattr(gemm, "_threads", None)
    with gemm.single_threaded_blas():
        with gemm.single_threaded_blas():
            assert gemm._blas_mine.depth == 2 and gemm._blas_holders == 0 and get() == 2
    assert gemm._blas_mine.depth == 0


@settings(max_examples=25, deadline=None)
@given(T=st.integers(1, 6), B=st.integers(1, 20), D=st.integers(1, 40), N=st.integers(1, 70),
       dtype=st.sampled_from([np.float32, np.float64]), with_bias=st.booleans(),
       product=st.sampled_from(["loops", "blas", "panels"]), cut=st.integers(0, 20), seed=st.integers(0, 2**16))
def test_input_projection_by_batch_rows_matches_numpy(T, B, D, N, dtype, with_bias, product, cut, seed):
    """``Product.batch_rows`` of ``input_projection``: two row blocks ``0 .. cut`` and ``cut .. B``
    (an empty one included), each computing its rows of every step through the given product
    (``gemm.project_rows``), fill exactly the projection ``X W^T + b``, against NumPy in float64."""
    kind = {"loops": bptt.gemm.LOOPS, "blas": bptt.gemm.BLAS, "panels": bptt.gemm.PANELS}[product]
    if kind == bptt.gemm.BLAS and not bptt.gemm.HAVE_BLAS:
        kind = bptt.gemm.LOOPS
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((T, B, D)).astype(dtype)
    W, b = rng.standard_normal((N, D)).astype(dtype), rng.standard_normal(N).astype(dtype)
    with bptt.deferred() as jobs:                    # recorded, not run: the result is still empty
        got = bptt.input_projection(x, W, b if with_bias else None)
    got[...] = np.nan                                # so that a row no block writes shows
    (job,) = jobs
    rows = job.batch_rows(kind)
    cut = min(cut, B)
    rows(cut, B)
    rows(0, cut)
    ref = x.astype(np.float64) @ W.T.astype(np.float64) + (b if with_bias else 0)
    tol = 1e-12 if dtype == np.float64 else 2e-5
    assert got.shape == (T, B, N) and got.dtype == dtype
    np.testing.assert_allclose(got, ref, rtol=tol, atol=tol * np.abs(ref).max())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("arch,opts", CELLS)
def test_row_blocks_on_panels_compute_their_own_input_rows(arch, opts, dtype, monkeypatch):
    """A forward loop on row blocks through the panels: each block computes its own batch rows of
    the input projection (``bptt._own_inputs``), once, and the whole step matches the reference.
    On plain loops or BLAS the projection runs whole before the loop instead."""
    calls = []
    real = bptt.gemm.project_rows
    monkeypatch.setattr(bptt.gemm, "project_rows", lambda *a: calls.append((a[4], a[5], a[6])) or real(*a))
    compare(arch, opts, 6, 11, 7, 9, dtype, "panels", None, seed=3, split=("rows", 2))
    assert sorted(calls) == [(0, 5, bptt.gemm.PANELS), (5, 11, bptt.gemm.PANELS)]   # the forward's two blocks
    calls.clear()
    compare(arch, opts, 6, 11, 7, 9, dtype, "loops", None, seed=4, split=("rows", 2))
    assert calls == []
    compare(arch, opts, 6, 11, 7, 9, dtype, "panels", None, seed=5, split=("units", 2))
    assert calls == []                               # unit blocks all read every row
