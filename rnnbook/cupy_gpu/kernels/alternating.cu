// alternating.cu -- the teaching version of a recurrent layer on the GPU.
//
// One time step of any of our cells is "a matrix product, then a pointwise
// function":
//
//     gh_t = h_{t-1} W_hh^T                       (B, G*H)  -- cuBLAS, via cupy's @
//     h_t, c_t, cache_t = cell(xproj_t + gh_t)    (B, H)    -- one kernel below
//
// where xproj = x W_ih^T + b was computed for *all* t by one big matrix product
// before the loop.  The Python driver (rnnbook/cupy_gpu/engine.py) alternates
// the two kernels T times: 2 launches per step (4 for the reset-before GRU,
// whose candidate needs a second product of r*h).  Simple, and exactly the
// structure of the equations -- but every step reads W_hh from device memory
// again and pays two kernel launches.  persistent.cu removes both costs.
//
// Every kernel here is elementwise: one thread per (batch row b, hidden unit j),
// idx = b*H + j.  The cell arithmetic itself lives in cells.cuh.
//
// Layouts (row-major, one time step):
//   xproj_t, gh      (B, G*H)  gate g of unit j at column g*H + j (PyTorch order)
//   gates_t          (B, S*H)  the activations the backward pass needs, slot s at s*H + j
//                              LSTM: i, f, g, o   GRU(after): r, z, n, gh_n   GRU(before): r, z, n
#include "common.cuh"
#include "cells.cuh"

// Index of this thread's element; false when it is past the end (the last block
// is usually only partly used).
__device__ inline bool element_index(int B, int H, int& b, int& j) {
    int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= B * H) return false;
    b = idx / H;
    j = idx % H;
    return true;
}

// ------------------------------------------------------------------ Elman RNN
// h = phi(xproj + gh)
template <typename T, bool RELU>
__global__ void rnn_pointwise_forward(const T* __restrict__ xproj_t, const T* __restrict__ gh,
                                      T* __restrict__ h, int B, int H) {
    int b, j;
    if (!element_index(B, H, b, j)) return;
    int e = b * H + j;
    h[e] = rnn_cell_forward<T, RELU>(xproj_t[e] + gh[e]);
}

// da = dh * phi'(a), phi' from the output h
template <typename T, bool RELU>
__global__ void rnn_pointwise_backward(const T* __restrict__ dh, const T* __restrict__ h,
                                       T* __restrict__ da, int B, int H) {
    int b, j;
    if (!element_index(B, H, b, j)) return;
    int e = b * H + j;
    da[e] = rnn_cell_backward<T, RELU>(dh[e], h[e]);
}

// ------------------------------------------------------------------ LSTM
template <typename T>
__global__ void lstm_pointwise_forward(const T* __restrict__ xproj_t, const T* __restrict__ gh,
                                       const T* __restrict__ c_prev, T* __restrict__ h,
                                       T* __restrict__ c, T* __restrict__ gates_t, int B, int H) {
    int b, j;
    if (!element_index(B, H, b, j)) return;
    const T* xp = xproj_t + b * 4 * H;          // this row's four gate blocks
    const T* hp = gh + b * 4 * H;
    T i, f, g, o, tc, c_new, h_new;
    lstm_cell_forward(xp[0 * H + j] + hp[0 * H + j], xp[1 * H + j] + hp[1 * H + j],
                      xp[2 * H + j] + hp[2 * H + j], xp[3 * H + j] + hp[3 * H + j],
                      c_prev[b * H + j], i, f, g, o, tc, c_new, h_new);
    T* cache = gates_t + b * 4 * H;
    cache[0 * H + j] = i; cache[1 * H + j] = f; cache[2 * H + j] = g; cache[3 * H + j] = o;
    c[b * H + j] = c_new;
    h[b * H + j] = h_new;
}

// From the error on h_t and c_t to the error on the pre-activations dz_t
// (B, 4H) and on c_{t-1}.  dh_{t-1} = dz_t W_hh is the next matrix product.
template <typename T>
__global__ void lstm_pointwise_backward(const T* __restrict__ dh, const T* __restrict__ dc_next,
                                        const T* __restrict__ gates_t, const T* __restrict__ c,
                                        const T* __restrict__ c_prev, T* __restrict__ dz_t,
                                        T* __restrict__ dc_prev, int B, int H) {
    int b, j;
    if (!element_index(B, H, b, j)) return;
    const T* cache = gates_t + b * 4 * H;
    T tc = rnn_tanh(c[b * H + j]);               // recomputed rather than stored
    T dzi, dzf, dzg, dzo, dcp;
    lstm_cell_backward(dh[b * H + j], dc_next[b * H + j], cache[0 * H + j], cache[1 * H + j],
                       cache[2 * H + j], cache[3 * H + j], tc, c_prev[b * H + j],
                       dzi, dzf, dzg, dzo, dcp);
    T* dz = dz_t + b * 4 * H;
    dz[0 * H + j] = dzi; dz[1 * H + j] = dzf; dz[2 * H + j] = dzg; dz[3 * H + j] = dzo;
    dc_prev[b * H + j] = dcp;
}

// ------------------------------------------------------------------ GRU, reset after
// gh = h_prev W_hh^T (no bias): b_hh is added here because gh_n is needed on its own.
template <typename T>
__global__ void gru_after_pointwise_forward(const T* __restrict__ xproj_t, const T* __restrict__ gh,
                                            const T* __restrict__ b_hh, const T* __restrict__ h_prev,
                                            T* __restrict__ h, T* __restrict__ gates_t, int B, int H) {
    int b, j;
    if (!element_index(B, H, b, j)) return;
    const T* xp = xproj_t + b * 3 * H;          // x W_ih^T + b_ih
    const T* hp = gh + b * 3 * H;
    T gh_n = hp[2 * H + j] + b_hh[2 * H + j];
    T r, z, n, h_new;
    gru_cell_forward_after(xp[j], xp[H + j], xp[2 * H + j],
                           hp[j] + b_hh[j], hp[H + j] + b_hh[H + j], gh_n,
                           h_prev[b * H + j], r, z, n, h_new);
    T* cache = gates_t + b * 4 * H;
    cache[j] = r; cache[H + j] = z; cache[2 * H + j] = n; cache[3 * H + j] = gh_n;
    h[b * H + j] = h_new;
}

// Writes dgi_t = [da_r | da_z | da_n] (error of x W_ih^T + b_ih), dgh_t = [da_r | da_z | da_n r]
// (error of h W_hh^T + b_hh), and the part of dh_{t-1} that skips the product (dh z).
template <typename T>
__global__ void gru_after_pointwise_backward(const T* __restrict__ dh, const T* __restrict__ h_prev,
                                             const T* __restrict__ gates_t, T* __restrict__ dgi_t,
                                             T* __restrict__ dgh_t, T* __restrict__ dh_prev_direct,
                                             int B, int H) {
    int b, j;
    if (!element_index(B, H, b, j)) return;
    const T* cache = gates_t + b * 4 * H;
    T da_r, da_z, da_n, dgh_n, direct;
    gru_cell_backward_after(dh[b * H + j], h_prev[b * H + j], cache[j], cache[H + j],
                            cache[2 * H + j], cache[3 * H + j], da_r, da_z, da_n, dgh_n, direct);
    T* gi = dgi_t + b * 3 * H;
    T* gg = dgh_t + b * 3 * H;
    gi[j] = da_r; gi[H + j] = da_z; gi[2 * H + j] = da_n;
    gg[j] = da_r; gg[H + j] = da_z; gg[2 * H + j] = dgh_n;
    dh_prev_direct[b * H + j] = direct;
}

// ------------------------------------------------------------------ GRU, reset before
// Phase 1 (after gh_rz = h_prev W_{hr,hz}^T, shape (B, 2H)): r, z and rh = r * h_prev.
template <typename T>
__global__ void gru_before_pointwise_gates(const T* __restrict__ xproj_t, const T* __restrict__ gh_rz,
                                           const T* __restrict__ b_hh, const T* __restrict__ h_prev,
                                           T* __restrict__ gates_t, T* __restrict__ rh, int B, int H) {
    int b, j;
    if (!element_index(B, H, b, j)) return;
    const T* xp = xproj_t + b * 3 * H;
    const T* hp = gh_rz + b * 2 * H;
    T r, z, rh_j;
    gru_cell_forward_before_gates(xp[j], xp[H + j], hp[j] + b_hh[j], hp[H + j] + b_hh[H + j],
                                  h_prev[b * H + j], r, z, rh_j);
    T* cache = gates_t + b * 3 * H;
    cache[j] = r; cache[H + j] = z;
    rh[b * H + j] = rh_j;
}

// Phase 2 (after ghn = rh W_hn^T, shape (B, H)): n and h.
template <typename T>
__global__ void gru_before_pointwise_output(const T* __restrict__ xproj_t, const T* __restrict__ ghn,
                                            const T* __restrict__ b_hh, const T* __restrict__ h_prev,
                                            T* __restrict__ gates_t, T* __restrict__ h, int B, int H) {
    int b, j;
    if (!element_index(B, H, b, j)) return;
    T* cache = gates_t + b * 3 * H;
    T n, h_new;
    gru_cell_forward_before_output(xproj_t[b * 3 * H + 2 * H + j], ghn[b * H + j] + b_hh[2 * H + j],
                                   cache[H + j], h_prev[b * H + j], n, h_new);
    cache[2 * H + j] = n;
    h[b * H + j] = h_new;
}

// Backward phase 1: da_z, da_n (into dg_t = [da_r | da_z | da_n], which is the error of
// both gi and gh in this form) and dh z.  Then the driver computes d_rh = da_n W_hn.
template <typename T>
__global__ void gru_before_pointwise_backward_gates(const T* __restrict__ dh, const T* __restrict__ h_prev,
                                                    const T* __restrict__ gates_t, T* __restrict__ dg_t,
                                                    T* __restrict__ dh_prev_direct, int B, int H) {
    int b, j;
    if (!element_index(B, H, b, j)) return;
    const T* cache = gates_t + b * 3 * H;
    T da_z, da_n, direct;
    gru_cell_backward_before_gates(dh[b * H + j], h_prev[b * H + j], cache[H + j], cache[2 * H + j],
                                   da_z, da_n, direct);
    dg_t[b * 3 * H + H + j] = da_z;
    dg_t[b * 3 * H + 2 * H + j] = da_n;
    dh_prev_direct[b * H + j] = direct;
}

// Backward phase 2: from d_rh (B, H) to da_r, and dh_{t-1} += d_rh * r.
template <typename T>
__global__ void gru_before_pointwise_backward_reset(const T* __restrict__ d_rh, const T* __restrict__ h_prev,
                                                    const T* __restrict__ gates_t, T* __restrict__ dg_t,
                                                    T* __restrict__ dh_prev_direct, int B, int H) {
    int b, j;
    if (!element_index(B, H, b, j)) return;
    T da_r, via_rh;
    gru_cell_backward_before_reset(d_rh[b * H + j], h_prev[b * H + j], gates_t[b * 3 * H + j],
                                   da_r, via_rh);
    dg_t[b * 3 * H + j] = da_r;
    dh_prev_direct[b * H + j] += via_rh;
}
