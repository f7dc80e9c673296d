/* cuda-emu, device side: what a kernel file of kernels/cuda/ sees when it is
 * compiled as C++ by the host compiler for `make test-cuda-emu`
 * (tests/cuda/emu/README.md). Force-included before the file; the file's
 * `k<<<grid, block, smem, stream>>>(args)` launches and `extern __shared__`
 * arrays were rewritten by tests/cuda/emu/cu2cpp.sed.
 *
 * Every GPU thread is a fiber (runtime.cpp). A fiber runs until it reaches a
 * barrier (__syncthreads, or a warp shuffle, which is a warp-wide exchange)
 * or returns; the scheduler resumes the fibers in a random order after each
 * barrier and runs the blocks of a grid in a random order, so a kernel whose
 * result depends on the order of its threads between barriers gives
 * different results run to run (the determinism checks of the tests see it).
 * The emulator stops the process with a one-line report on what CUDA leaves
 * undefined: __syncthreads reached at different places by the threads of a
 * block, a full-mask shuffle in a warp with missing lanes, a deadlock. */
#ifndef AIMC_CUDA_EMU_DEVICE_H
#define AIMC_CUDA_EMU_DEVICE_H
#include <cuda_runtime_api.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <tuple>
#include <type_traits>
#include <utility>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
/* One block runs at a time (one OS thread), so a function-local static is
 * the block's shared variable. */
#define __shared__ static

/* ---- thread geometry: set by the scheduler before it resumes a fiber ---- */
struct uint3 {
    unsigned x, y, z;
};
extern uint3 emu_thread_idx, emu_block_idx;
extern dim3 emu_block_dim, emu_grid_dim;
#define threadIdx emu_thread_idx
#define blockIdx emu_block_idx
#define blockDim emu_block_dim
#define gridDim emu_grid_dim

/* ---- vector types -------------------------------------------------------- */
struct alignas(16) float4 {
    float x, y, z, w;
};
struct alignas(16) uint4 {
    unsigned x, y, z, w;
};
static inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
static inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) {
    return {x, y, z, w};
}

/* ---- 16-bit floats: the bit patterns, converted by the compiler's
 * _Float16 (IEEE binary16) and a round-to-nearest-even bfloat16 ---------- */
struct __half {
    unsigned short x;
};
struct __nv_bfloat16 {
    unsigned short x;
};
static inline __half __ushort_as_half(unsigned short u) { return {u}; }
static inline unsigned short __half_as_ushort(__half h) { return h.x; }
static inline float __half2float(__half h) {
    _Float16 f;
    memcpy(&f, &h.x, 2);
    return (float)f;
}
static inline __half __float2half_rn(float v) {
    _Float16 f = (_Float16)v;
    __half h;
    memcpy(&h.x, &f, 2);
    return h;
}
static inline unsigned __float_as_uint(float v) {
    unsigned u;
    memcpy(&u, &v, 4);
    return u;
}
static inline float __uint_as_float(unsigned u) {
    float v;
    memcpy(&v, &u, 4);
    return v;
}
static inline __nv_bfloat16 __float2bfloat16_rn(float v) {
    unsigned u = __float_as_uint(v);
    if (isnan(v)) return {(unsigned short)((u >> 16) | 0x40)}; /* stays a (quiet) NaN */
    u += 0x7fffu + ((u >> 16) & 1u);                            /* ties to even */
    return {(unsigned short)(u >> 16)};
}
static inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 b) { return b.x; }

/* ---- math that CUDA has and the host's libm lacks ------------------------- */
template <typename T> static inline T min(T a, T b) { return b < a ? b : a; }
template <typename T> static inline T max(T a, T b) { return a < b ? b : a; }

/* ---- atomics: blocks and threads never run at the same time --------------- */
static inline int atomicOr(int *p, int v) {
    int old = *p;
    *p = old | v;
    return old;
}
static inline int atomicMax(int *p, int v) {
    int old = *p;
    if (v > old) *p = v;
    return old;
}

/* ---- barriers --------------------------------------------------------------- */
void emu_syncthreads(const char *file, int line);
/* Lane l gets the 8 bytes lane l ^ lane_mask put in. */
uint64_t emu_shfl_xor(unsigned mask, uint64_t bits, int lane_mask, int width, const char *file,
                      int line);
#define __syncthreads() emu_syncthreads(__FILE__, __LINE__)
#define __shfl_xor_sync(...) emu_shfl_xor_typed(__FILE__, __LINE__, __VA_ARGS__)
template <typename T>
static inline T emu_shfl_xor_typed(const char *file, int line, unsigned mask, T v, int lane_mask,
                                   int width = 32) {
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "shuffle of 1-8 bytes");
    uint64_t bits = 0;
    memcpy(&bits, &v, sizeof v);
    bits = emu_shfl_xor(mask, bits, lane_mask, width, file, line);
    memcpy(&v, &bits, sizeof v);
    return v;
}

/* mma.sync m16n8k16 bf16 -> f32 (kernels/cuda/mma.cuh gives the fragment
 * layouts): every lane hands in its fragments, and gets d += A B for its
 * own four elements of D. */
void emu_mma_m16n8k16_bf16(float d[4], const uint32_t a[4], const uint32_t b[2], const char *file,
                           int line);

/* The dynamic shared memory of the running block (poisoned with 0xff bytes,
 * NaN as floats, at the start of every block). */
void *emu_dynamic_smem(void);

/* ---- launches --------------------------------------------------------------- */
struct emu_cfg {
    dim3 grid, block;
    size_t smem;
    cudaStream_t stream;
};
static inline emu_cfg emu_make_cfg(dim3 grid, dim3 block, size_t smem = 0,
                                   cudaStream_t stream = 0) {
    return {grid, block, smem, stream};
}
/* Runs body(ctx) as every thread of the grid; a bad configuration sets the
 * error cudaGetLastError returns, as on a GPU. */
void emu_run(const char *name, const void *kernel, const emu_cfg &cfg, void (*body)(void *),
             void *ctx);

/* A launch argument as the kernel's parameter type, converted as a call
 * would (NULL arrives as an integer: only a zero becomes a pointer). */
template <typename To, typename From> static inline To emu_param(From &&v) {
    if constexpr (std::is_pointer<To>::value && std::is_integral<std::decay_t<From>>::value)
        return v == 0 ? (To) nullptr : throw "a non-zero integer passed as a pointer";
    else
        return static_cast<To>(std::forward<From>(v));
}

template <typename... P, typename... A>
void emu_launch(const char *name, const emu_cfg &cfg, void (*kernel)(P...), A &&...args) {
    static_assert(sizeof...(P) == sizeof...(A), "kernel launched with the wrong argument count");
    /* Parameters are converted once, as the launch copies them. */
    std::tuple<std::decay_t<P>...> params(emu_param<std::decay_t<P>>(std::forward<A>(args))...);
    struct call {
        void (*kernel)(P...);
        std::tuple<std::decay_t<P>...> *params;
    } c = {kernel, &params};
    emu_run(name, (const void *)kernel, cfg,
            [](void *p) {
                call *cp = (call *)p;
                std::apply(cp->kernel, *cp->params); /* each thread gets its own copies */
            },
            &c);
}

/* C++ forms of the runtime calls that take a kernel or a typed pointer. */
template <typename T> cudaError_t cudaMalloc(T **p, size_t bytes) {
    return cudaMalloc((void **)p, bytes);
}
template <typename T> cudaError_t cudaMallocAsync(T **p, size_t bytes, cudaStream_t s) {
    return cudaMallocAsync((void **)p, bytes, s);
}
template <typename F> cudaError_t cudaFuncSetAttribute(F *kernel, cudaFuncAttribute attr, int v) {
    return cudaFuncSetAttribute((const void *)kernel, attr, v);
}
template <typename F> cudaError_t cudaFuncGetAttributes(cudaFuncAttributes *a, F *kernel) {
    return cudaFuncGetAttributes(a, (const void *)kernel);
}
#endif
