// host_emulation.h -- run CUDA kernels on the CPU, one std::thread per CUDA thread.
//
// Include this *before* a .cu file and compile with g++ -std=c++20
// -DRNNBOOK_HOST_EMULATION.  It provides what the kernels use of CUDA:
//
//   threadIdx, blockIdx, blockDim, gridDim   thread_local variables set per thread
//   __syncthreads()                          a std::barrier shared by one block's threads
//   dynamic shared memory                    one zero-filled byte array per block
//   atomicAdd, __threadfence                 GCC atomics / a sequentially consistent fence
//   __global__, __device__, __restrict__ ... empty or host equivalents
//
// rnn_emu::launch(grid, block, shared_bytes, body) starts *every* thread of
// *every* block at once, so a kernel whose blocks wait for each other (the
// persistent kernels' group barrier) makes progress exactly as on a GPU where
// all blocks are resident.  This is slow -- use tiny shapes -- but it runs the
// real kernel source line by line, so a student can step through it in gdb and
// the tests can compare it with numpy_ref.
//
// What it does not model: warps (no lockstep, no shuffles -- our kernels use
// none), memory coalescing, caches, and speed.
#pragma once
#ifndef RNNBOOK_HOST_EMULATION
#define RNNBOOK_HOST_EMULATION 1
#endif

#include <atomic>
#include <barrier>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)

// expf, tanhf, exp and tanh come from <cmath> (glibc's math.h) on the host.

struct uint3 { unsigned int x, y, z; };
struct dim3 {
    unsigned int x, y, z;
    dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
};

inline thread_local uint3 threadIdx;
inline thread_local uint3 blockIdx;
inline thread_local dim3 blockDim;
inline thread_local dim3 gridDim;

namespace rnn_emu {
struct Block {
    explicit Block(std::ptrdiff_t nthreads, size_t shared_bytes)
        : barrier(nthreads), shared((shared_bytes + 15) / 16 + 1) {}
    std::barrier<> barrier;
    std::vector<long double> shared;   // 16-byte aligned storage for dynamic shared memory
};
inline thread_local Block* current_block = nullptr;

inline unsigned char* dynamic_shared_memory() {
    return reinterpret_cast<unsigned char*>(current_block->shared.data());
}

// Run `body` (a call of the kernel with its arguments) as grid x block threads.
// Returns 0, or -1 when a thread threw (the message is copied into `error`).
template <typename Body>
int launch(dim3 grid, dim3 block, size_t shared_bytes, Body body, std::string* error = nullptr) {
    const unsigned nblocks = grid.x * grid.y * grid.z, nthreads = block.x * block.y * block.z;
    std::vector<std::unique_ptr<Block>> blocks;
    for (unsigned i = 0; i < nblocks; ++i) blocks.emplace_back(new Block(nthreads, shared_bytes));
    std::mutex err_mutex;
    std::string first_error;
    std::vector<std::thread> threads;
    threads.reserve(size_t(nblocks) * nthreads);
    for (unsigned bz = 0; bz < grid.z; ++bz)
    for (unsigned by = 0; by < grid.y; ++by)
    for (unsigned bx = 0; bx < grid.x; ++bx)
    for (unsigned tz = 0; tz < block.z; ++tz)
    for (unsigned ty = 0; ty < block.y; ++ty)
    for (unsigned tx = 0; tx < block.x; ++tx) {
        Block* blk = blocks[(bz * grid.y + by) * grid.x + bx].get();
        threads.emplace_back([=, &body, &err_mutex, &first_error] {
            threadIdx = uint3{tx, ty, tz};
            blockIdx = uint3{bx, by, bz};
            blockDim = block;
            gridDim = grid;
            current_block = blk;
            try {
                body();
            } catch (const std::exception& e) {
                std::lock_guard<std::mutex> lock(err_mutex);
                if (first_error.empty()) first_error = e.what();
            }
        });
    }
    for (auto& th : threads) th.join();
    if (!first_error.empty()) {
        if (error) *error = first_error;
        return -1;
    }
    return 0;
}
}  // namespace rnn_emu

inline void __syncthreads() { rnn_emu::current_block->barrier.arrive_and_wait(); }
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline unsigned int atomicAdd(unsigned int* p, unsigned int v) {
    return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST);
}
