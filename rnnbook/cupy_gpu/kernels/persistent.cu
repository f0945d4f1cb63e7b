// persistent.cu -- the whole sequence in one launch, W_hh held on chip.
//
// The alternating version (alternating.cu) reads all of W_hh from device memory
// at every step and launches two kernels per step.  Here one launch runs all T
// steps.  The hidden units of each head are split over a group of thread blocks
// ("blocks_per_head" of them, U units each); block k of a group copies *its*
// rows of W_hh -- the G gate rows of its U units, restricted to the head's
// columns -- into shared memory once, before the time loop, and keeps them
// there for all T steps.  Per step every block
//
//   1. reads h_{t-1} of its head (written by all blocks of the group at step
//      t-1) from global memory, in chunks of KC columns staged in shared memory,
//   2. multiplies it with its on-chip slice of W_hh      (block_matvec),
//   3. applies the cell to its units (cells.cuh) and writes h_t, c_t and the
//      activations the backward pass needs,
//   4. waits at a barrier until every block of the group has written h_t.
//
// Heads (FlashRNN's "head-wise" option): with heads > 1, W_hh is block
// diagonal -- unit j of head m only sees h_{t-1} of the same head -- so each head
// is an independent recurrence and its group of blocks synchronises only among
// itself (grid.y = head).  Small heads fit into a single block, and then the
// "barrier" is just __syncthreads().  The batch can also be split into tiles
// (grid.z), each tile with its own group: W_hh is then held once per tile.
//
// The group barrier is an arrival counter in global memory.  It needs every
// block of a group to be resident on the GPU at the same time; the Python side
// checks the occupancy before launching and refuses configurations that do not
// fit (see rnnbook/cupy_gpu/engine.py: plan_persistent).
//
// The backward kernel is the mirror image: it runs t = T-1 .. 0, holds the
// *columns* of W_hh that belong to its units (dh_{t-1} = dz_t W_hh), and
// writes the pre-activation errors dz_t for all t.  The weight gradients
// (dW_ih = dz^T x, dW_hh = dz^T h_prev, ...) are then large parallel matrix
// products done by cuBLAS after the kernel.
//
// Shared-memory layout (in elements of T; engine.py computes the same sizes):
//   forward : Ws [G*U][Hh+1] | vbuf [Bt][KC] | pre [Bt][G*U]
//   backward: Wt [U][G*Hh+1] | vbuf [Bt][KC] | rec [Bt][U] | carry_h [Bt][U] | carry_c [Bt][U]
// (the +1 pads every row so that threads reading consecutive rows hit
// different shared-memory banks).
#include "common.cuh"
#include "cells.cuh"

// ------------------------------------------------------------------ building blocks
// Wait until every block of this group has arrived here (for the `epoch`-th time).
// *counter starts at 0 (the host zeroes it) and only ever grows, so no reset is needed.
__device__ inline void group_barrier(unsigned int* counter, unsigned int nblocks, unsigned int& epoch) {
    __syncthreads();                             // every thread of this block has written its outputs
    if (nblocks > 1) {
        if (threadIdx.x == 0) {
            __threadfence();                     // ... make them visible to the whole GPU
            atomicAdd(counter, 1u);              // announce: this block has arrived
            unsigned int target = (epoch + 1) * nblocks;
            while (rnn_spin_load(counter) < target) rnn_pause();
            __threadfence();                     // see what the other blocks wrote
        }
        __syncthreads();                         // release the rest of the block
    }
    ++epoch;
}

// out[b*out_stride + r] = sum_{c<C} W[r*w_stride + c] * v(b, c)      r < R, b < nb
//
// with v(b, c) = V[b*v_row + (c / seg)*seg_stride + c % seg] in global memory.  The
// "segments" let one call gather columns that are not contiguous: the backward
// pass multiplies by all gate rows of one head, which sit at g*H + head*Hh + k.
// V was written by other blocks, so it is read with rnn_load_shared_state, KC
// columns at a time, into the shared buffer vbuf (nb x KC).  W is in shared memory.
// Thread o computes outputs o, o + blockDim.x, ...; consecutive threads take
// consecutive rows r of the same batch row b, so the vbuf reads are broadcasts.
template <typename T>
__device__ void block_matvec(const T* W, int w_stride, int R, int C,
                             const T* V, size_t v_row, int seg, size_t seg_stride, int nb,
                             T* vbuf, int KC, T* out, int out_stride) {
    const int tid = threadIdx.x, nt = blockDim.x;
    for (int o = tid; o < nb * R; o += nt) out[(o / R) * out_stride + o % R] = T(0);
    for (int c0 = 0; c0 < C; c0 += KC) {
        const int kc = rnn_min(KC, C - c0);
        __syncthreads();                         // the previous chunk has been used up
        for (int e = tid; e < nb * kc; e += nt) {
            int b = e / kc, c = c0 + e % kc;
            vbuf[b * KC + e % kc] = rnn_load_shared_state(V + b * v_row + (c / seg) * seg_stride + c % seg);
        }
        __syncthreads();                         // the chunk is in shared memory
        for (int o = tid; o < nb * R; o += nt) {
            int b = o / R, r = o % R;
            const T* w = W + (size_t)r * w_stride + c0;
            const T* v = vbuf + b * KC;
            T acc = out[b * out_stride + r];
            for (int k = 0; k < kc; ++k) acc += w[k] * v[k];
            out[b * out_stride + r] = acc;
        }
    }
    __syncthreads();                             // every output is complete
}

// Number of activations cached per unit (the `gates` array has S*H columns).
__host__ __device__ constexpr int rnn_cache_slots(int cell) {
    return cell == RNN_CELL_LSTM ? 4 : (cell == RNN_CELL_GRU_AFTER ? 4 : (cell == RNN_CELL_GRU_BEFORE ? 3 : 0));
}

// ------------------------------------------------------------------ forward
// xproj (T,B,G*H) = x W_ih^T + b (b_ih for GRU)   W_hh (G*H,H)   b_hh (G*H) [GRU only]
// h0, c0 (B,H)    y (T,B,H) = h_t: the output *and* the exchange buffer between blocks
// c_all (T,B,H) [LSTM]   gates (T,B,S*H)   rh_all (T,B,H) [GRU reset-before: r*h_prev]
// counters: heads*gridDim.z zeroed barrier counters.
// grid = (blocks_per_head, heads, batch tiles), any blockDim.x.
template <typename T, int CELL>
__global__ void persistent_forward(const T* __restrict__ xproj, const T* __restrict__ W_hh,
                                   const T* __restrict__ b_hh, const T* __restrict__ h0,
                                   const T* __restrict__ c0, T* y, T* c_all, T* gates, T* rh_all,
                                   unsigned int* counters, int T_, int B, int H, int heads,
                                   int U, int Bt, int KC) {
    constexpr int G = rnn_gates(CELL);
    constexpr int S = rnn_cache_slots(CELL);
    const int tid = threadIdx.x, nt = blockDim.x;
    const int Hh = H / heads, head = blockIdx.y;
    const int unit0 = blockIdx.x * U, Ue = rnn_min(U, Hh - unit0);   // this block's units
    const int b0 = blockIdx.z * Bt, nb = rnn_min(Bt, B - b0);          // this block's batch rows
    const size_t GH = (size_t)G * H, BH = (size_t)B * H;
    unsigned int* counter = counters + head * gridDim.z + blockIdx.z;
    unsigned int epoch = 0;

    RNN_DYNAMIC_SHARED(smem_raw);
    T* Ws = reinterpret_cast<T*>(smem_raw);          // [G*U][Hh+1]
    T* vbuf = Ws + G * U * (Hh + 1);                 // [Bt][KC]
    T* pre = vbuf + Bt * KC;                         // [Bt][G*U]

    // W_hh rows of our units (gate g, unit u) -> Ws row g*U + u, head's columns only.
    for (int e = tid; e < G * U * Hh; e += nt) {
        int row = e / Hh, k = e % Hh, g = row / U, u = row % U;
        Ws[row * (Hh + 1) + k] = u < Ue ? W_hh[((size_t)g * H + head * Hh + unit0 + u) * H + head * Hh + k] : T(0);
    }
    __syncthreads();

    for (int t = 0; t < T_; ++t) {
        const T* h_prev = t == 0 ? h0 : y + (t - 1) * BH;       // (B,H)
        const T* h_prev_head = h_prev + (size_t)b0 * H + head * Hh;
        // 1+2: pre[b][g*U+u] = (h_{t-1} W_hh^T) for our rows (only r, z rows for GRU-before)
        block_matvec(Ws, Hh + 1, (CELL == RNN_CELL_GRU_BEFORE ? 2 : G) * U, Hh,
                     h_prev_head, (size_t)H, Hh, (size_t)0, nb, vbuf, KC, pre, G * U);
        // 3: the cell, one thread per (batch row, unit)
        for (int p = tid; p < nb * Ue; p += nt) {
            const int b = p / Ue, u = p % Ue, bg = b0 + b, j = head * Hh + unit0 + u;
            const size_t row = (size_t)t * B + bg;
            const T* xp = xproj + row * GH;
            const T* acc = pre + b * G * U;
            T* cache = gates + row * S * H;
            if constexpr (CELL == RNN_CELL_RNN_TANH || CELL == RNN_CELL_RNN_RELU) {
                y[row * H + j] = rnn_cell_forward<T, CELL == RNN_CELL_RNN_RELU>(xp[j] + acc[u]);
            } else if constexpr (CELL == RNN_CELL_LSTM) {
                T c_prev = t == 0 ? c0[(size_t)bg * H + j] : c_all[(row - B) * H + j];
                T i, f, g, o, tc, c, h;
                lstm_cell_forward(xp[j] + acc[u], xp[H + j] + acc[U + u], xp[2 * H + j] + acc[2 * U + u],
                                  xp[3 * H + j] + acc[3 * U + u], c_prev, i, f, g, o, tc, c, h);
                cache[j] = i; cache[H + j] = f; cache[2 * H + j] = g; cache[3 * H + j] = o;
                c_all[row * H + j] = c;
                y[row * H + j] = h;
            } else if constexpr (CELL == RNN_CELL_GRU_AFTER) {
                T hp = rnn_load_shared_state(h_prev + (size_t)bg * H + j);
                T gh_n = acc[2 * U + u] + b_hh[2 * H + j];
                T r, z, n, h;
                gru_cell_forward_after(xp[j], xp[H + j], xp[2 * H + j], acc[u] + b_hh[j],
                                       acc[U + u] + b_hh[H + j], gh_n, hp, r, z, n, h);
                cache[j] = r; cache[H + j] = z; cache[2 * H + j] = n; cache[3 * H + j] = gh_n;
                y[row * H + j] = h;
            } else {   // GRU reset-before, phase 1: r, z, rh = r * h_prev
                T hp = rnn_load_shared_state(h_prev + (size_t)bg * H + j);
                T r, z, rh;
                gru_cell_forward_before_gates(xp[j], xp[H + j], acc[u] + b_hh[j], acc[U + u] + b_hh[H + j],
                                              hp, r, z, rh);
                cache[j] = r; cache[H + j] = z;
                rh_all[row * H + j] = rh;
            }
        }
        if constexpr (CELL == RNN_CELL_GRU_BEFORE) {
            // n needs (r*h_prev) W_hn^T over the whole head: wait for every block's rh.
            group_barrier(counter, gridDim.x, epoch);
            block_matvec(Ws + 2 * U * (Hh + 1), Hh + 1, U, Hh, rh_all + t * BH + (size_t)b0 * H + head * Hh,
                         (size_t)H, Hh, (size_t)0, nb, vbuf, KC, pre + 2 * U, G * U);
            for (int p = tid; p < nb * Ue; p += nt) {
                const int b = p / Ue, u = p % Ue, bg = b0 + b, j = head * Hh + unit0 + u;
                const size_t row = (size_t)t * B + bg;
                T* cache = gates + row * S * H;
                T hp = rnn_load_shared_state(h_prev + (size_t)bg * H + j);
                T n, h;
                gru_cell_forward_before_output(xproj[row * GH + 2 * H + j],
                                               pre[b * G * U + 2 * U + u] + b_hh[2 * H + j],
                                               cache[H + j], hp, n, h);
                cache[2 * H + j] = n;
                y[row * H + j] = h;
            }
        }
        // 4: h_t of the whole group is written before anyone starts step t+1
        group_barrier(counter, gridDim.x, epoch);
    }
}

// ------------------------------------------------------------------ backward
// dy (T,B,H); dh_T, dc_T (B,H): error on the final state (zeros when none)
// h0, c0, y, c_all, gates: what the forward pass produced
// dgi (T,B,G*H): error of x W_ih^T + b_ih    dgh (T,B,G*H): error of h W_hh^T + b_hh
//   (the same buffer except for the reset-after GRU, where they differ in the n block;
//    dgh is the exchange buffer read by other blocks)
// dh0, dc0 (B,H): error on the initial state.
template <typename T, int CELL>
__global__ void persistent_backward(const T* __restrict__ W_hh, const T* __restrict__ dy,
                                    const T* __restrict__ dh_T, const T* __restrict__ dc_T,
                                    const T* __restrict__ h0, const T* __restrict__ c0,
                                    const T* __restrict__ y, const T* __restrict__ c_all,
                                    const T* __restrict__ gates, T* dgi, T* dgh, T* dh0, T* dc0,
                                    unsigned int* counters, int T_, int B, int H, int heads,
                                    int U, int Bt, int KC) {
    constexpr int G = rnn_gates(CELL);
    constexpr int S = rnn_cache_slots(CELL);
    const int tid = threadIdx.x, nt = blockDim.x;
    const int Hh = H / heads, head = blockIdx.y, GHh = G * Hh;
    const int unit0 = blockIdx.x * U, Ue = rnn_min(U, Hh - unit0);
    const int b0 = blockIdx.z * Bt, nb = rnn_min(Bt, B - b0);
    const size_t GH = (size_t)G * H;
    unsigned int* counter = counters + head * gridDim.z + blockIdx.z;
    unsigned int epoch = 0;
    // columns of the recurrent product: all G gate rows of our head (r,z only for GRU-before)
    const int C_rec = (CELL == RNN_CELL_GRU_BEFORE ? 2 : G) * Hh;

    RNN_DYNAMIC_SHARED(smem_raw);
    T* Wt = reinterpret_cast<T*>(smem_raw);          // [U][G*Hh+1]: Wt[u][g*Hh+k] = W_hh[g*H+head*Hh+k][our unit u]
    T* vbuf = Wt + U * (GHh + 1);                    // [Bt][KC]
    T* rec = vbuf + Bt * KC;                         // [Bt][U]  (dz_{t+1} W_hh)[our units]
    T* carry_h = rec + Bt * U;                       // [Bt][U]  part of dh_t that skips the product
    T* carry_c = carry_h + Bt * U;                   // [Bt][U]  dc_t (LSTM)

    for (int e = tid; e < U * GHh; e += nt) {
        int u = e / GHh, cc = e % GHh, g = cc / Hh, k = cc % Hh;
        Wt[u * (GHh + 1) + cc] = u < Ue ? W_hh[((size_t)g * H + head * Hh + k) * H + head * Hh + unit0 + u] : T(0);
    }
    for (int p = tid; p < nb * Ue; p += nt) {
        const int b = p / Ue, u = p % Ue, j = head * Hh + unit0 + u;
        carry_h[b * U + u] = dh_T[(size_t)(b0 + b) * H + j];
        carry_c[b * U + u] = CELL == RNN_CELL_LSTM ? dc_T[(size_t)(b0 + b) * H + j] : T(0);
    }
    __syncthreads();

    for (int t = T_ - 1; t >= 0; --t) {
        // rec = dz_{t+1} W_hh for our units (nothing flows back from beyond the last step)
        if (t < T_ - 1)
            block_matvec(Wt, GHh + 1, U, C_rec, dgh + (t + 1) * B * GH + (size_t)b0 * GH + head * Hh,
                         GH, Hh, (size_t)H, nb, vbuf, KC, rec, U);
        for (int p = tid; p < nb * Ue; p += nt) {
            const int b = p / Ue, u = p % Ue, bg = b0 + b, j = head * Hh + unit0 + u;
            const size_t row = (size_t)t * B + bg;
            const T* cache = gates + row * S * H;
            T dh = dy[row * H + j] + carry_h[b * U + u] + (t < T_ - 1 ? rec[b * U + u] : T(0));
            T* gi = dgi + row * GH;
            if constexpr (CELL == RNN_CELL_RNN_TANH || CELL == RNN_CELL_RNN_RELU) {
                gi[j] = rnn_cell_backward<T, CELL == RNN_CELL_RNN_RELU>(dh, y[row * H + j]);
                carry_h[b * U + u] = T(0);
            } else if constexpr (CELL == RNN_CELL_LSTM) {
                T c_prev = t == 0 ? c0[(size_t)bg * H + j] : c_all[(row - B) * H + j];
                T dzi, dzf, dzg, dzo, dcp;
                lstm_cell_backward(dh, carry_c[b * U + u], cache[j], cache[H + j], cache[2 * H + j],
                                   cache[3 * H + j], rnn_tanh(c_all[row * H + j]), c_prev,
                                   dzi, dzf, dzg, dzo, dcp);
                gi[j] = dzi; gi[H + j] = dzf; gi[2 * H + j] = dzg; gi[3 * H + j] = dzo;
                carry_c[b * U + u] = dcp;
                carry_h[b * U + u] = T(0);
            } else if constexpr (CELL == RNN_CELL_GRU_AFTER) {
                T hp = t == 0 ? h0[(size_t)bg * H + j] : y[(row - B) * H + j];
                T da_r, da_z, da_n, dgh_n, direct;
                gru_cell_backward_after(dh, hp, cache[j], cache[H + j], cache[2 * H + j], cache[3 * H + j],
                                        da_r, da_z, da_n, dgh_n, direct);
                gi[j] = da_r; gi[H + j] = da_z; gi[2 * H + j] = da_n;
                T* gg = dgh + row * GH;
                gg[j] = da_r; gg[H + j] = da_z; gg[2 * H + j] = dgh_n;
                carry_h[b * U + u] = direct;
            } else {   // GRU reset-before, phase 1: da_z, da_n
                T hp = t == 0 ? h0[(size_t)bg * H + j] : y[(row - B) * H + j];
                T da_z, da_n, direct;
                gru_cell_backward_before_gates(dh, hp, cache[H + j], cache[2 * H + j], da_z, da_n, direct);
                gi[H + j] = da_z; gi[2 * H + j] = da_n;
                carry_h[b * U + u] = direct;
            }
        }
        if constexpr (CELL == RNN_CELL_GRU_BEFORE) {
            // d_rh = da_n W_hn needs da_n of the whole head
            group_barrier(counter, gridDim.x, epoch);
            block_matvec(Wt + 2 * Hh, GHh + 1, U, Hh, dgi + t * B * GH + (size_t)b0 * GH + 2 * H + head * Hh,
                         GH, Hh, (size_t)0, nb, vbuf, KC, rec, U);
            for (int p = tid; p < nb * Ue; p += nt) {
                const int b = p / Ue, u = p % Ue, bg = b0 + b, j = head * Hh + unit0 + u;
                const size_t row = (size_t)t * B + bg;
                T hp = t == 0 ? h0[(size_t)bg * H + j] : y[(row - B) * H + j];
                T da_r, via_rh;
                gru_cell_backward_before_reset(rec[b * U + u], hp, gates[row * S * H + j], da_r, via_rh);
                dgi[row * GH + j] = da_r;
                carry_h[b * U + u] += via_rh;
            }
        }
        group_barrier(counter, gridDim.x, epoch);     // dz_t of the whole group is written
    }
    // the initial state: dh_0 = carry + dz_0 W_hh, dc_0 = carry
    block_matvec(Wt, GHh + 1, U, C_rec, dgh + (size_t)b0 * GH + head * Hh, GH, Hh, (size_t)H, nb,
                 vbuf, KC, rec, U);
    for (int p = tid; p < nb * Ue; p += nt) {
        const int b = p / Ue, u = p % Ue, j = head * Hh + unit0 + u;
        dh0[(size_t)(b0 + b) * H + j] = carry_h[b * U + u] + rec[b * U + u];
        if (CELL == RNN_CELL_LSTM) dc0[(size_t)(b0 + b) * H + j] = carry_c[b * U + u];
    }
}
