// common.cuh -- portability layer shared by every kernel of rnnbook's GPU backend.
//
// The same source files are compiled three ways:
//
//   1. by NVRTC (through cupy.RawModule) for the GPU -- the real thing;
//   2. by NVRTC or nvcc in CI, for sm_80 and sm_90, only to prove they compile;
//   3. by g++ on the host, with RNNBOOK_HOST_EMULATION defined and
//      host_emulation.h included first.  That header maps threadIdx, blockIdx,
//      __syncthreads(), atomicAdd(), ... onto std::thread, so the *same*
//      kernels run on the CPU (one OS thread per CUDA thread) and the tests can
//      compare them with numpy_ref without a GPU.
//
// This file holds the few things whose spelling differs between (1) and (3).
// Everything else in the kernels is plain CUDA C++.
#pragma once

#ifdef RNNBOOK_HOST_EMULATION
#  define RNN_HD inline                     // a function callable from host and device
#  define RNN_DYNAMIC_SHARED(name) unsigned char* name = rnn_emu::dynamic_shared_memory()
#else
#  define RNN_HD __host__ __device__ __forceinline__
// Dynamic shared memory: the size is given at launch (shared_mem=...).
#  define RNN_DYNAMIC_SHARED(name) extern __shared__ __align__(16) unsigned char name[]
#endif

// Cell identifiers: template arguments of the persistent kernels.
#define RNN_CELL_RNN_TANH   0
#define RNN_CELL_RNN_RELU   1
#define RNN_CELL_LSTM       2
#define RNN_CELL_GRU_AFTER  3   // n = tanh(gi_n + r * (W_hn h + b_hn))   (PyTorch, cuDNN)
#define RNN_CELL_GRU_BEFORE 4   // n = tanh(gi_n + (r * h) W_hn^T + b_hn) (Cho et al. 2014)

// Number of gate rows per hidden unit: W_hh has GATES*H rows.
RNN_HD constexpr int rnn_gates(int cell) {
    return cell == RNN_CELL_LSTM ? 4 : (cell >= RNN_CELL_GRU_AFTER ? 3 : 1);
}

// ---------------------------------------------------------------- memory helpers
// Read a value that another *block* wrote during this launch.  On the GPU the
// per-SM L1 cache is not coherent between blocks, so we load with .cg ("cache
// global": served from L2, which every SM shares).  On the host a plain load is
// right: the barrier below orders it with an acquire operation.
template <typename T>
RNN_HD T rnn_load_shared_state(const T* p) {
#ifdef RNNBOOK_HOST_EMULATION
    return *p;
#else
    return __ldcg(p);
#endif
}

// Spin-read of a barrier counter (volatile on the GPU, an atomic acquire load on the host).
RNN_HD unsigned int rnn_spin_load(const unsigned int* p) {
#ifdef RNNBOOK_HOST_EMULATION
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
#else
    return *(const volatile unsigned int*)p;
#endif
}

// Politely wait inside a spin loop (the GPU sleeps a few ns; the host yields its core).
RNN_HD void rnn_pause() {
#ifdef RNNBOOK_HOST_EMULATION
    std::this_thread::yield();
#else
    __nanosleep(32);
#endif
}

RNN_HD int rnn_min(int a, int b) { return a < b ? a : b; }
