// cells.cuh -- the pointwise part of every cell, for one hidden unit of one batch row.
//
// These __host__ __device__ functions are the arithmetic the GPU kernels run per
// element.  They are shared by the "alternating" kernels (alternating.cu) and the
// persistent kernels (persistent.cu), and are compiled with g++ for the host and
// called directly from the tests (see rnnbook/cupy_gpu/emulation.py), so a wrong
// sign or a swapped gate fails CI without a GPU.
//
// Notation follows rnnbook/numpy_ref: pre-activations are sums of the input part
// (x_t W_ih^T + bias, computed for all t by one matrix product) and the recurrent
// part (h_{t-1} W_hh^T); derivatives are written through the outputs
// (sigma' = s(1-s), tanh' = 1 - t^2).
#pragma once
#include "common.cuh"

// ------------------------------------------------------------------ math
// Overloads so that one template body serves float (expf, tanhf: single
// precision on the GPU) and double.
RNN_HD float  rnn_exp(float z)  { return expf(z); }
RNN_HD double rnn_exp(double z) { return exp(z); }
RNN_HD float  rnn_tanh(float z)  { return tanhf(z); }
RNN_HD double rnn_tanh(double z) { return tanh(z); }

// Logistic sigmoid without overflow: exp is only ever taken of -|z|.
template <typename T>
RNN_HD T rnn_sigmoid(T z) {
    T e = rnn_exp(z >= T(0) ? -z : z);
    return z >= T(0) ? T(1) / (T(1) + e) : e / (T(1) + e);
}

// ------------------------------------------------------------------ Elman RNN
//   h = phi(a),   a = x W_ih^T + h_prev W_hh^T + b
template <typename T, bool RELU>
RNN_HD T rnn_cell_forward(T a) {
    if (RELU) return a > T(0) ? a : T(0);
    return rnn_tanh(a);
}

// da = dh * phi'(a), with phi' written through h = phi(a)
template <typename T, bool RELU>
RNN_HD T rnn_cell_backward(T dh, T h) {
    if (RELU) return h > T(0) ? dh : T(0);
    return dh * (T(1) - h * h);
}

// ------------------------------------------------------------------ LSTM
// Forward, gate order i, f, g, o.  z_* are full pre-activations.
//   i = s(z_i)  f = s(z_f)  g = tanh(z_g)  o = s(z_o)
//   c = f c_prev + i g      h = o tanh(c)
// Outputs the four activations, tanh(c), c and h.
template <typename T>
RNN_HD void lstm_cell_forward(T z_i, T z_f, T z_g, T z_o, T c_prev,
                              T& i, T& f, T& g, T& o, T& tc, T& c, T& h) {
    i = rnn_sigmoid(z_i);
    f = rnn_sigmoid(z_f);
    g = rnn_tanh(z_g);
    o = rnn_sigmoid(z_o);
    c = f * c_prev + i * g;
    tc = rnn_tanh(c);
    h = o * tc;
}

// Backward of one LSTM unit, given dh (all error reaching h_t) and dc_next (error
// reaching c_t from step t+1).  Returns the pre-activation errors and dc_prev.
template <typename T>
RNN_HD void lstm_cell_backward(T dh, T dc_next, T i, T f, T g, T o, T tc, T c_prev,
                               T& dz_i, T& dz_f, T& dz_g, T& dz_o, T& dc_prev) {
    T d_o = dh * tc;                                   // h = o tanh(c)
    T dc  = dc_next + dh * o * (T(1) - tc * tc);       // ... and c also feeds t+1
    T d_i = dc * g;                                    // c = f c_prev + i g
    T d_g = dc * i;
    T d_f = dc * c_prev;
    dc_prev = dc * f;
    dz_i = d_i * i * (T(1) - i);                       // i = s(z_i)
    dz_f = d_f * f * (T(1) - f);                       // f = s(z_f)
    dz_g = d_g * (T(1) - g * g);                       // g = tanh(z_g)
    dz_o = d_o * o * (T(1) - o);                       // o = s(z_o)
}

// ------------------------------------------------------------------ GRU
// gi_* = x W_ih^T + b_ih (per gate), gh_* = h_prev W_hh^T + b_hh (per gate).
//
// Reset after the product (PyTorch):
//   r = s(gi_r + gh_r)  z = s(gi_z + gh_z)  n = tanh(gi_n + r gh_n)
//   h = (1 - z) n + z h_prev
template <typename T>
RNN_HD void gru_cell_forward_after(T gi_r, T gi_z, T gi_n, T gh_r, T gh_z, T gh_n, T h_prev,
                                   T& r, T& z, T& n, T& h) {
    r = rnn_sigmoid(gi_r + gh_r);
    z = rnn_sigmoid(gi_z + gh_z);
    n = rnn_tanh(gi_n + r * gh_n);
    h = (T(1) - z) * n + z * h_prev;
}

// Backward (reset after).  Outputs the errors of the pre-activations
// a_r = gi_r + gh_r, a_z = gi_z + gh_z, a_n = gi_n + r gh_n, the error of gh_n
// (which is da_n * r: the only place gi and gh differ) and dh_prev's direct part.
template <typename T>
RNN_HD void gru_cell_backward_after(T dh, T h_prev, T r, T z, T n, T gh_n,
                                    T& da_r, T& da_z, T& da_n, T& dgh_n, T& dh_prev_direct) {
    T dn = dh * (T(1) - z);                            // h = (1-z) n + z h_prev
    T dz = dh * (h_prev - n);
    dh_prev_direct = dh * z;
    da_n = dn * (T(1) - n * n);                        // n = tanh(a_n)
    da_z = dz * z * (T(1) - z);                        // z = s(a_z)
    dgh_n = da_n * r;                                  // a_n = gi_n + r gh_n
    T dr = da_n * gh_n;
    da_r = dr * r * (T(1) - r);                        // r = s(a_r)
}

// Reset before the product (Cho et al.), in two phases because n needs the
// matrix product of the *whole* vector r * h_prev:
//   phase 1:  r = s(gi_r + gh_r)  z = s(gi_z + gh_z)  rh = r h_prev
//   phase 2:  n = tanh(gi_n + rh W_hn^T + b_hn)      h = (1-z) n + z h_prev
template <typename T>
RNN_HD void gru_cell_forward_before_gates(T gi_r, T gi_z, T gh_r, T gh_z, T h_prev,
                                          T& r, T& z, T& rh) {
    r = rnn_sigmoid(gi_r + gh_r);
    z = rnn_sigmoid(gi_z + gh_z);
    rh = r * h_prev;
}

template <typename T>
RNN_HD void gru_cell_forward_before_output(T gi_n, T ghn_rh, T z, T h_prev, T& n, T& h) {
    // ghn_rh = (r h_prev) W_hn^T + b_hn for this unit
    n = rnn_tanh(gi_n + ghn_rh);
    h = (T(1) - z) * n + z * h_prev;
}

// Backward phase 1 (reset before): everything that needs only this unit.
template <typename T>
RNN_HD void gru_cell_backward_before_gates(T dh, T h_prev, T z, T n,
                                           T& da_z, T& da_n, T& dh_prev_direct) {
    T dn = dh * (T(1) - z);                            // h = (1-z) n + z h_prev
    T dz = dh * (h_prev - n);
    dh_prev_direct = dh * z;
    da_n = dn * (T(1) - n * n);                        // n = tanh(a_n)
    da_z = dz * z * (T(1) - z);                        // z = s(a_z)
}

// Backward phase 2: given d_rh = (da_n W_hn)[unit], the error of rh = r h_prev.
template <typename T>
RNN_HD void gru_cell_backward_before_reset(T d_rh, T h_prev, T r, T& da_r, T& dh_prev_via_rh) {
    T dr = d_rh * h_prev;                              // rh = r h_prev
    da_r = dr * r * (T(1) - r);                        // r = s(a_r)
    dh_prev_via_rh = d_rh * r;
}
