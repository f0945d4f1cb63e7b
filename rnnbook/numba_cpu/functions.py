r"""Pointwise nonlinearities for compiled kernels: fast and vectorisable in float32, exact in float64.

The cells call ``sigmoid``, ``tanh`` and ``relu`` on one scalar at a time inside
their fused loops.  Numba compiles those loops to SIMD code only when every call
in the body can be vectorised; ``math.tanh``/``math.exp`` are calls into libm and
stop that (there is no vector libm here).  So float32 gets its own ``tanh``, made
of multiplies, adds, one division and two clamps -- all of which vectorise::

    tanh(z) ≈ u · P(u²) / Q(u²),    u = clamp(z, -9, 9)
    P(s) = p0 + p1 s + p2 s² + p3 s³ + p4 s⁴       Q(s) = q0 + q1 s + q2 s² + q3 s³ + q4 s⁴
    result clamped to [-1, 1]

The coefficients below were fitted for this project: minimise the maximum
*relative* error of ``P(s)/Q(s)`` against ``tanh(z)/z`` on ``0 < z ≤ 9`` by
iteratively re-weighted least squares (Lawson's algorithm) in float64, then
rounded to float32.  At ``|z| = 9``, ``tanh`` is within 3e-8 of ±1, below half
an ulp of float32 at 1, so clamping the argument there loses nothing.

Measured over every float32 in [0, 12] (odd symmetry covers the negatives),
evaluated in float32 exactly as compiled here, against float64 ``tanh``:

* ``tanh``:    max relative error 3.7e-7 (about 6 ulp), max absolute error 3.7e-7
* ``sigmoid``: computed as ``0.5 + 0.5·tanh(z/2)``; max absolute error 2.5e-7.
  Its *relative* error is large only where σ(z) itself is below ~1e-6 (z < -14),
  where the result is a few 1e-8 absolute off; a gate that small multiplies its
  partner by zero either way.

``tests/test_numba_functions.py`` re-measures both bounds.  float64 uses
``math.tanh`` and an overflow-free ``1/(1+exp(-z))`` (scalar libm calls, exact to
an ulp), which is what keeps the float64 backend within 1e-10 of ``numpy_ref``.

The derivatives are written through the outputs, as in ``numpy_ref.functions``:
``σ' = s(1-s)``, ``tanh' = 1 - t²``, ``relu' = [r > 0]``.
"""
import math

import numpy as np
from numba import njit, types
from numba.extending import overload

#: fast-math flags for every kernel of this backend: allow re-association (so reductions
#: vectorise), contraction into FMA, reciprocal multiplies and ignoring the sign of zero.
#: NaN and Inf keep their IEEE meaning (no ``nnan``/``ninf``), so bad input still shows.
FASTMATH = {"reassoc", "contract", "arcp", "nsz"}
#: options of every compiled kernel.  ``error_model="numpy"`` drops Python's ZeroDivisionError
#: check on each division: that check is a branch in the loop body, and it alone stops LLVM
#: from vectorising the rational ``tanh`` below (division by zero gives inf/nan, as in NumPy).
KERNEL_OPTIONS = dict(fastmath=FASTMATH, error_model="numpy")

# tanh(z)/z ≈ P(z²)/Q(z²) on 0 < z ≤ 9 (float32 coefficients, see the module docstring)
_P = (1.0, 0.1338101327419281, 0.0034955732990056276, 2.0608838894986548e-05, 1.3354325645309473e-08)
_Q = (1.0, 0.46714329719543457, 0.025876926258206367, 0.000328561058267951, 7.776420716254506e-07)
TANH_CLAMP = 9.0
#: documented bounds (re-measured by the tests)
TANH_F32_MAX_REL_ERROR = 3.7e-7
SIGMOID_F32_MAX_ABS_ERROR = 2.5e-7

_p0, _p1, _p2, _p3, _p4 = (np.float32(c) for c in _P)
_q0, _q1, _q2, _q3, _q4 = (np.float32(c) for c in _Q)
_clamp32 = np.float32(TANH_CLAMP)
_one32 = np.float32(1.0)
_half32 = np.float32(0.5)


@njit(inline="always", **KERNEL_OPTIONS)
def tanh_f32(z):
    """Rational float32 ``tanh`` (vectorisable; max relative error 3.7e-7)."""
    # clamps as comparisons, not min/max: each builtin costs a compilation of its own on a
    # kernel's first call (~25 ms per type), and a NaN falls through both tests unchanged
    u = -_clamp32 if z < -_clamp32 else (_clamp32 if z > _clamp32 else z)
    s = u * u
    p = (((_p4 * s + _p3) * s + _p2) * s + _p1) * s + _p0
    q = (((_q4 * s + _q3) * s + _q2) * s + _q1) * s + _q0
    t = u * p / q
    return -_one32 if t < -_one32 else (_one32 if t > _one32 else t)


@njit(inline="always", **KERNEL_OPTIONS)
def sigmoid_f32(z):
    """``σ(z) = (1 + tanh(z/2)) / 2`` through the rational ``tanh``."""
    return _half32 + _half32 * tanh_f32(_half32 * z)


@njit(inline="always")
def tanh_f64(z):
    return math.tanh(z)


@njit(inline="always")
def sigmoid_f64(z):
    """``1 / (1 + exp(-z))`` without overflow for large ``|z|`` (as ``numpy_ref.functions.sigmoid``)."""
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


# ----------------------------------------------------------------------------------------------
# Generic names used by the kernels: the overloads pick the float32 or float64 version when a
# kernel is compiled for one dtype.  Called from Python they behave like the compiled ones.
def tanh(z):
    """``tanh`` for compiled code: rational in float32, ``math.tanh`` in float64."""
    return tanh_array(np.asarray(z))


def sigmoid(z):
    """``σ`` for compiled code: through the rational ``tanh`` in float32, exact in float64."""
    return sigmoid_array(np.asarray(z))


@overload(tanh)
def _tanh_overload(z):
    if isinstance(z, types.Float):
        return _tanh_f32_impl if z.bitwidth == 32 else _tanh_f64_impl


@overload(sigmoid)
def _sigmoid_overload(z):
    if isinstance(z, types.Float):
        return _sigmoid_f32_impl if z.bitwidth == 32 else _sigmoid_f64_impl


def _tanh_f32_impl(z):
    return tanh_f32(z)


def _tanh_f64_impl(z):
    return tanh_f64(z)


def _sigmoid_f32_impl(z):
    return sigmoid_f32(z)


def _sigmoid_f64_impl(z):
    return sigmoid_f64(z)


@njit(inline="always")
def relu(z):
    return max(z, 0)


@njit(inline="always")
def dsigmoid_from_output(s):
    """``σ'(z)`` given ``s = σ(z)``."""
    return s * (1 - s)


@njit(inline="always")
def dtanh_from_output(t):
    """``tanh'(z)`` given ``t = tanh(z)``."""
    return 1 - t * t


@njit(inline="always")
def drelu_from_output(r):
    """``relu'(z)`` given ``r = relu(z)`` (0 at ``z = 0``, as in ``numpy_ref``)."""
    return 1 if r > 0 else 0


# Array versions, for tests, notebooks and measuring the error bounds.
@njit(cache=True, **KERNEL_OPTIONS)
def tanh_array(z):
    out = np.empty_like(z)
    zf, of = z.ravel(), out.ravel()
    for i in range(zf.size):
        of[i] = tanh(zf[i])
    return out


@njit(cache=True, **KERNEL_OPTIONS)
def sigmoid_array(z):
    out = np.empty_like(z)
    zf, of = z.ravel(), out.ravel()
    for i in range(zf.size):
        of[i] = sigmoid(zf[i])
    return out
