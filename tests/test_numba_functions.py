"""The fast nonlinearities of the Numba backend keep their documented error bounds."""
import numpy as np
import pytest

F = pytest.importorskip("rnnbook.numba_cpu.functions")


def float32_grid(lo, hi, step=251):
    """Every ``step``-th float32 in ``[lo, hi]`` (lo >= 0), plus the ends."""
    a, b = np.float32(lo).view(np.int32), np.float32(hi).view(np.int32)
    return np.concatenate([np.arange(a, b, step, dtype=np.int32).view(np.float32),
                           np.array([lo, hi], np.float32)])


def test_tanh_float32_max_error():
    z = float32_grid(0.0, 12.0)
    ref = np.tanh(z.astype(np.float64))
    got = F.tanh(np.concatenate([z, -z])).astype(np.float64)
    pos, neg = got[:z.size], got[z.size:]
    np.testing.assert_array_equal(neg, -pos)                    # odd, exactly
    rel = np.abs(pos - ref)[z > 0] / ref[z > 0]
    assert rel.max() <= F.TANH_F32_MAX_REL_ERROR
    assert rel.max() > F.TANH_F32_MAX_REL_ERROR / 10           # the documented bound is tight
    assert np.abs(got).max() <= 1.0


def test_sigmoid_float32_max_error():
    z = float32_grid(0.0, 40.0)
    z = np.concatenate([z, -z])
    ref = 1 / (1 + np.exp(-z.astype(np.float64)))
    got = F.sigmoid(z).astype(np.float64)
    assert np.abs(got - ref).max() <= F.SIGMOID_F32_MAX_ABS_ERROR
    assert got.min() >= 0 and got.max() <= 1


def test_float64_is_exact_to_rounding():
    z = np.linspace(-40, 40, 20001)
    np.testing.assert_allclose(F.tanh(z), np.tanh(z), rtol=4e-16, atol=0)
    ref = np.where(z >= 0, 1 / (1 + np.exp(-z)), np.exp(z) / (1 + np.exp(z)))
    np.testing.assert_allclose(F.sigmoid(z), ref, rtol=4e-16, atol=0)


def test_special_values():
    z = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0], np.float32)
    t = F.tanh(z)
    assert np.isnan(t[0]) and t[1] == 1 and t[2] == -1 and t[3] == 0
    s = F.sigmoid(z)
    assert np.isnan(s[0]) and s[1] == 1 and s[2] == 0 and s[3] == 0.5
    assert F.tanh(z).dtype == np.float32 and F.sigmoid(z.astype(np.float64)).dtype == np.float64
