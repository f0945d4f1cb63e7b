"""N-parity, N-DMS and the single-N / multi-N curricula."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from rnnbook import gradcheck
from rnnbook.data import (MultiNCurriculum, SingleNCurriculum, bits_to_inputs, dms_targets, dms_task,
                          parity_targets, parity_task)
from rnnbook.data.timing_tasks import default_length_range, random_bits, task_targets
from rnnbook.optim import Adam
from rnnbook.train import train


# ------------------------------------------------------------------ the tasks, against loops
@given(T=st.integers(1, 12), B=st.integers(1, 4), n=st.integers(1, 6), seed=st.integers(0, 2**16))
def test_parity_and_dms_against_loops(T, B, n, seed):
    bits = random_bits(B, T, seed)
    if T >= n:
        targets, mask = parity_targets(bits, n, readout="every")
        for t in range(T):
            for b in range(B):
                if t >= n - 1:
                    assert targets[t, b] == sum(bits[t - k, b] for k in range(n)) % 2
                assert mask[t, b] == (1.0 if t >= n - 1 else 0.0)
    if T >= n + 1:
        targets, mask = dms_targets(bits, n, readout="every")
        for t in range(T):
            for b in range(B):
                if t >= n:
                    assert targets[t, b] == int(bits[t, b] == bits[t - n, b])
                assert mask[t, b] == (1.0 if t >= n else 0.0)


def test_readout_last_scores_the_last_step_only():
    bits, targets, mask = parity_task(5, 3, length=9, readout="last", seed=1)
    assert bits.shape == targets.shape == mask.shape == (9, 5)
    assert mask[-1].tolist() == [1.0] * 5 and mask[:-1].sum() == 0
    np.testing.assert_array_equal(targets[-1], bits[-3:].sum(axis=0) % 2)
    _, targets, mask = dms_task(5, 4, length=9, readout="last", seed=1)
    assert mask.sum() == 5


def test_generators_are_seeded_and_draw_the_papers_lengths():
    a, b = parity_task(8, 5, seed=3), parity_task(8, 5, seed=3)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(parity_task(8, 5, seed=3)[0][:7], parity_task(8, 5, seed=4)[0][:7])
    low, high = default_length_range(5)
    assert (low, high) == (7, 22)
    lengths = {dms_task(2, 5, seed=s)[0].shape[0] for s in range(60)}
    assert min(lengths) >= low and max(lengths) < high and len(lengths) > 5
    bits = parity_task(4, 2, seed=0)[0]
    assert bits.dtype == np.int64 and set(np.unique(bits)) <= {0, 1}


def test_bits_to_inputs():
    bits = np.array([[0, 1], [1, 1]])
    x = bits_to_inputs(bits, np.float32)
    assert x.shape == (2, 2, 1) and x.dtype == np.float32
    np.testing.assert_array_equal(x[..., 0], bits)


@pytest.mark.parametrize("call,exc,words", [
    (lambda: parity_task(4, 0), ValueError, ["n", ">= 1"]),
    (lambda: parity_task(0, 2), ValueError, ["batch_size"]),
    (lambda: parity_task(4, 5, length=4), ValueError, ["N=5", "length >= 5", "T=4"]),
    (lambda: dms_task(4, 3, length=3), ValueError, ["N=3", "length >= 4"]),
    (lambda: parity_task(4, 2, readout="first"), ValueError, ["readout", "'last'"]),
    (lambda: task_targets("copy", np.zeros((3, 2), np.int64), 1), ValueError, ["task", "'parity'"]),
    (lambda: parity_targets(np.zeros((3, 2)), 1), TypeError, ["bits", "integer"]),
    (lambda: parity_targets(np.full((3, 2), 2), 1), ValueError, ["0 and 1"]),
    (lambda: SingleNCurriculum(task="xor"), ValueError, ["task"]),
    (lambda: MultiNCurriculum(n_start=3, n_max=2), ValueError, ["n_max", ">= 3"]),
    (lambda: SingleNCurriculum(threshold="high"), TypeError, ["threshold"]),
    (lambda: MultiNCurriculum(backend="cupy"), ValueError, ["NumPy", "'numba'"]),
])
def test_bad_input(call, exc, words):
    with pytest.raises(exc) as info:
        call()
    for w in words:
        assert w in str(info.value)


# ------------------------------------------------------------------ the curricula's mechanics
def test_curricula_heads_and_growth():
    single = SingleNCurriculum(hidden_size=4, eval_size=16, threshold=-1.0)     # always passes
    p = single.init_params(seed=0)
    assert sorted(k for k in p if not k.startswith("core.")) == ["head.W", "head.b"]
    for step in range(3):
        assert single.callback(step, p) is True
    assert single.n == 5 and single.ns == (5,) and single.solved == 4
    assert sorted(k for k in p if not k.startswith("core.")) == ["head.W", "head.b"]   # still one head
    acc = single.evaluate(p, ns=(2, 3, 5))                          # the one head answers for any N
    assert set(acc) == {2, 3, 5} and all(0 <= a <= 1 for a in acc.values())

    multi = MultiNCurriculum(hidden_size=4, eval_size=16, threshold=-1.0, n_max=4)
    p = multi.init_params(seed=0)
    for step in range(5):
        multi.callback(step, p)
    assert multi.n == 4 and multi.ns == (2, 3, 4)                                  # n_max caps the growth
    assert {k.split(".")[0] for k in p if not k.startswith("core.")} == {"head2", "head3", "head4"}
    assert [r.advanced for r in multi.log] == [True, True, False, False, False]
    with pytest.raises(ValueError, match=r"no read-out head for N = \[5\]"):
        multi.evaluate(p, ns=(2, 5))
    loss, grads = multi.step_fn(p, 0)
    assert set(grads) == set(p) and np.isfinite(loss)

    never = MultiNCurriculum(hidden_size=4, eval_size=16, threshold=1.0)          # accuracy never exceeds 1
    p = never.init_params(seed=0)
    assert never.callback(0, p) is False and never.n == 2 and never.solved is None


@pytest.mark.parametrize("curriculum", [SingleNCurriculum, MultiNCurriculum])
@pytest.mark.parametrize("readout", ["last", "every"])
def test_curriculum_loss_gradcheck(curriculum, readout):
    """The heads' losses add up and the gradient reaches every parameter (τ included)."""
    cur = curriculum(task="dms", hidden_size=3, n_start=2, batch_size=3, readout=readout, seed=5,
                     nonlinearity="tanh")
    if curriculum is MultiNCurriculum:
        cur.n = 3                                               # two heads: N = 2 and N = 3
    rng = np.random.default_rng(0)
    params = {k: rng.standard_normal(v.shape) for k, v in cur.init_params(seed=1).items()}
    if curriculum is MultiNCurriculum:
        params.update({f"head3.{k}": rng.standard_normal(v.shape) for k, v in cur._new_head(0).items()})
    bits, answers = cur.batch(seed=7)

    def f(inp):
        return np.array(cur.loss_and_grads(inp, bits, answers)[0])

    def grad_fn(inp, upstream):
        return {k: upstream * v for k, v in cur.loss_and_grads(inp, bits, answers)[1].items()}

    report = gradcheck.check_function(f, params, grad_fn)
    assert {e.name for e in report.entries} == set(params) and "core.rho" in params
    report.assert_ok(1e-6)


# ------------------------------------------------------------------ a short run makes progress
@pytest.mark.parametrize("task", ["parity", "dms"])
@pytest.mark.parametrize("curriculum,reach", [(SingleNCurriculum, 2), (MultiNCurriculum, 3)])
def test_short_run_makes_progress(task, curriculum, reach):
    """From chance-level N = 2 the paper's setting (leaky units, trainable τ, last-step read-out, 98%
    threshold) passes the threshold within 400 Adam steps and the curriculum moves on."""
    cur = curriculum(task=task, hidden_size=16, batch_size=32, eval_size=256, seed=0)
    params = cur.init_params(seed=0)
    assert cur.evaluate(params)[2] < 0.8                            # untrained: near chance (0.5)
    train(cur.step_fn, params, Adam(0.01), steps=400, callback=cur.callback, callback_every=25,
                    progress=False, clip_norm=2.0)
    assert cur.solved is not None and cur.solved >= reach, [(r.step, r.accuracy) for r in cur.log]
    for record in cur.log:
        if record.advanced:                                         # it moved on only past the threshold
            assert record.accuracy[max(record.ns)] > 0.98
    assert cur.n == cur.solved + 1 and max(cur.ns) == cur.n          # training went on at the next N
