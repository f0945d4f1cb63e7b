"""NT-ASGD (trigger logic, averaging) and the explicit L2 penalty."""
import numpy as np
import pytest

from rnnbook import gradcheck
from rnnbook.optim import SGD, Adam
from rnnbook.regularize.l2 import add_grads, l2_penalty
from rnnbook.regularize.ntasgd import NTASGD, nonmonotone_trigger

# A scripted validation curve: improves, wanders for two checks, then stalls.
#   check:  0    1    2    3    4    5     6     7
CURVE = [5.0, 4.0, 3.0, 3.5, 3.2, 3.1, 3.05, 2.9]


def first_trigger(curve, n):
    logs = []
    for t, v in enumerate(curve):
        if nonmonotone_trigger(logs, v, n):
            return t
        logs.append(v)
    return None


def test_trigger_on_a_scripted_curve():
    # n = 2: check 3 (3.5) and 4 (3.2) are worse than the best 3.0 but inside the
    # non-monotone window; check 5 (3.1) is worse than min(logs[0..2]) = 3.0 -> trigger.
    assert first_trigger(CURVE, 2) == 5
    # n = 3: at check 5 the old values are logs[0..1] (best 4.0), 3.1 beats it; at check 6
    # the old best is min(logs[0..2]) = 3.0 and 3.05 is worse -> trigger.
    assert first_trigger(CURVE, 3) == 6
    # n = 1: check 3 (3.5) is compared with min(logs[0..1]) = 4.0 only and passes; check 4
    # (3.2) is worse than min(logs[0..2]) = 3.0 -> trigger.  (A monotone rule, "worse than
    # the best so far", would already have fired at check 3.)
    assert first_trigger(CURVE, 1) == 4
    # a curve that keeps improving never triggers, however small the window
    assert first_trigger([5 - 0.1 * k for k in range(30)], 1) is None
    # the first n checks can never trigger (t > n is required)
    assert first_trigger([1.0, 9.0, 9.0], 2) is None and first_trigger([1.0, 9.0, 9.0, 9.0], 2) == 3


def test_trigger_matches_the_awd_lstm_expression():
    rng = np.random.default_rng(0)
    for _ in range(200):
        logs = list(rng.uniform(0, 1, rng.integers(0, 12)))
        v, n = float(rng.uniform(0, 1)), int(rng.integers(1, 6))
        want = len(logs) > n and v > min(logs[:-n])             # as in the authors' training script
        assert nonmonotone_trigger(logs, v, n) == want


def _noisy_quadratic(steps_before, steps_after, seed=0):
    """NT-ASGD on L = ½‖θ - θ*‖² with noisy gradients; trigger forced by the scripted curve."""
    rng = np.random.default_rng(seed)
    target = {"W": rng.standard_normal((3, 4)), "b": rng.standard_normal(4)}
    params = {k: np.zeros_like(v) for k, v in target.items()}
    opt = NTASGD(lr=0.3, nonmono=2)
    iterates, checks = [], iter(CURVE)
    fired_at = None
    for k in range(steps_before + steps_after):
        grads = {n: params[n] - target[n] + 0.5 * rng.standard_normal(v.shape) for n, v in params.items()}
        opt.step(params, grads)
        if opt.averaging:
            iterates.append({n: v.copy() for n, v in params.items()})
        if k < steps_before:
            if opt.check(next(checks), params):
                fired_at = k
                iterates.append({n: v.copy() for n, v in params.items()})   # θ_K, the validated iterate
    return opt, params, target, iterates, fired_at


def test_averaging_is_the_mean_of_the_iterates_since_the_trigger():
    opt, params, _, iterates, fired_at = _noisy_quadratic(steps_before=6, steps_after=40)
    assert fired_at == 5 and opt.trigger_step == 6 and opt.trigger_check == 5
    assert opt.num_averaged == len(iterates) == 1 + 40
    avg = opt.averaged_params(params)
    for n in params:
        want = np.mean([it[n] for it in iterates], axis=0)
        np.testing.assert_allclose(avg[n], want, rtol=1e-12, atol=1e-14)
        assert not np.allclose(avg[n], params[n])                  # the average is not the last iterate
    avg[n] += 1.0                                                   # a copy: changing it changes nothing
    np.testing.assert_allclose(opt.averaged_params(params)[n], np.mean([it[n] for it in iterates], axis=0),
                               rtol=1e-12, atol=1e-14)


def test_averaging_beats_the_last_iterate_on_a_noisy_quadratic():
    opt, params, target, _, _ = _noisy_quadratic(steps_before=6, steps_after=400, seed=3)
    avg = opt.averaged_params(params)
    err = lambda p: np.sqrt(sum(((p[n] - target[n]) ** 2).sum() for n in p))  # noqa: E731
    assert err(avg) < 0.3 * err(params)


def test_before_the_trigger_ntasgd_is_plain_sgd(rng):
    p1 = {"W": rng.standard_normal((3, 3))}
    p2 = {"W": p1["W"].copy()}
    a, b = NTASGD(lr=0.1, nonmono=3, weight_decay=0.01), SGD(lr=0.1, weight_decay=0.01)
    for _ in range(5):
        g = {"W": rng.standard_normal((3, 3))}
        a.step(p1, g)
        b.step(p2, g)
        assert a.check(1.0, p1) is False                            # a flat curve within the window
    np.testing.assert_array_equal(p1["W"], p2["W"])
    got = a.averaged_params(p1)
    assert got["W"] is not p1["W"] and np.array_equal(got["W"], p1["W"])


def test_checks_after_the_trigger_are_recorded_only():
    opt = NTASGD(lr=0.1, nonmono=1)
    p = {"W": np.ones(2)}
    curve = [3.0, 2.0, 2.5, 2.4, 9.0, 1.0]   # check 3: 2.4 > min(logs[0..1]) = 2.0 -> trigger
    fired = [opt.check(v, p) for v in curve]
    assert fired == [False, False, False, True, False, False]
    assert opt.logs == curve and opt.trigger_check == 3 and opt.trigger_step == 0


def test_ntasgd_errors():
    with pytest.raises(ValueError, match="nonmono"):
        NTASGD(lr=0.1, nonmono=0)
    with pytest.raises(ValueError, match="nonmono"):
        NTASGD(lr=0.1, nonmono=2.5)
    with pytest.raises(ValueError, match="lr"):
        NTASGD(lr=0.0)
    with pytest.raises(ValueError, match="finite"):
        NTASGD(lr=0.1).check(float("nan"), {})


# ----------------------------------------------------------------------------- L2
def test_l2_penalty_gradcheck_and_default_names(rng):
    params = {"W": rng.standard_normal((3, 4)), "b": rng.standard_normal(3), "core.W_hh": rng.standard_normal((2, 2))}
    lam = 0.3
    value, grads = l2_penalty(params, lam)
    assert value == pytest.approx(0.5 * lam * ((params["W"] ** 2).sum() + (params["core.W_hh"] ** 2).sum()))
    assert np.all(grads["b"] == 0)                                  # biases are left alone by default
    gradcheck.check_function(lambda inp: np.array(l2_penalty(inp, lam)[0]), params,
                             lambda inp, G: {k: G * v for k, v in l2_penalty(inp, lam)[1].items()}).assert_ok(1e-6)
    value_all, grads_all = l2_penalty(params, lam, names=list(params))
    np.testing.assert_array_equal(grads_all["b"], lam * params["b"])


def test_l2_with_sgd_is_weight_decay_but_not_with_adam(rng):
    lam, lr = 0.05, 0.1
    start = {"W": rng.standard_normal((4, 4))}
    data_grads = [{"W": rng.standard_normal((4, 4))} for _ in range(10)]

    def run(make, use_penalty):
        p = {"W": start["W"].copy()}
        opt = make(0.0 if use_penalty else lam)
        for g in data_grads:
            opt.step(p, add_grads(g, l2_penalty(p, lam)[1]) if use_penalty else g)
        return p["W"]

    sgd = lambda wd: SGD(lr=lr, weight_decay=wd)  # noqa: E731
    np.testing.assert_allclose(run(sgd, True), run(sgd, False), rtol=1e-13, atol=1e-15)
    adam = lambda wd: Adam(lr=lr, weight_decay=wd)  # noqa: E731
    assert np.max(np.abs(run(adam, True) - run(adam, False))) > 1e-3


def test_l2_errors():
    with pytest.raises(ValueError, match="non-negative"):
        l2_penalty({"W": np.ones((2, 2))}, -1.0)
    with pytest.raises(ValueError, match="not parameters"):
        l2_penalty({"W": np.ones((2, 2))}, 0.1, names=["V"])
    with pytest.raises(ValueError, match="not in grads"):
        add_grads({"W": np.ones(2)}, {"V": np.ones(2)})
