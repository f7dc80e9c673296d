/* Shared pieces of the cuda backend: error-checking macros, the one stream
 * every op is queued on, stream-ordered temporaries, typed element access
 * and warp/block reductions.
 *
 * Dtypes. Every kernel reads and writes float tensors through ld/st (one
 * element) or load8/store8 (eight consecutive elements, one 16-byte access
 * when the address allows), which switch on the tensor's dtype at run time:
 * f32, bf16 or f16. The switch is the same for every thread of a launch (no
 * divergence) and costs a few instructions next to a memory access, so one
 * kernel serves every dtype combination the op wrappers allow (bf16
 * activations with f32 weights, f32 everywhere, ...). All math is f32. */
#ifndef AIMC_CUDA_COMMON_CUH
#define AIMC_CUDA_COMMON_CUH
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "../tensor.h"
#include "../backend.h"
#include "../check.h"

/* A failed CUDA runtime / cuBLAS call aborts, naming the call, file, line and
 * the library's error string. */
#define CUDA_CHECK(call)                                                                           \
    do {                                                                                           \
        cudaError_t cuda_err_ = (call);                                                            \
        if (cuda_err_ != cudaSuccess)                                                              \
            aimc_fail_at(__FILE__, __LINE__, "%s failed: %s (%s)", #call,                          \
                         cudaGetErrorString(cuda_err_), cudaGetErrorName(cuda_err_));              \
    } while (0)

#define CUBLAS_CHECK(call)                                                                         \
    do {                                                                                           \
        cublasStatus_t cublas_st_ = (call);                                                        \
        if (cublas_st_ != CUBLAS_STATUS_SUCCESS)                                                   \
            aimc_fail_at(__FILE__, __LINE__, "%s failed: %s (status %d)", #call,                   \
                         cublasLtGetStatusString(cublas_st_), (int)cublas_st_);                    \
    } while (0)

/* After every kernel launch: catches bad launch configurations at once. */
#define CUDA_LAUNCH_CHECK() CUDA_CHECK(cudaGetLastError())

/* ---- backend state (backend_cuda.cu) ------------------------------------ */

cudaStream_t cuda_stream(void);
int cuda_sm_count(void);
/* Largest dynamic shared memory one block may opt into, in bytes. */
size_t cuda_smem_optin(void);
/* Stream-ordered temporaries (cudaMallocAsync from a pool that keeps its
 * memory): valid for kernels queued on cuda_stream() until cuda_tmp_free. */
void *cuda_tmp_alloc(size_t bytes);
void cuda_tmp_free(void *p);
cublasLtHandle_t cuda_lt_handle(void);
void *cuda_lt_workspace(size_t *bytes);

/* Kernels cannot abort the process; a bad index seen on the device sets a bit
 * in this device word, and the next sync / download reports it. */
enum {
    CUDA_ERR_GATHER_INDEX = 1,
    CUDA_ERR_SCATTER_INDEX = 2,
    CUDA_ERR_CE_TARGET = 4,
};
int *cuda_error_flag(void);

/* ---- op families: each fills its part of the table ---------------------- */

void cuda_fill_matmul(backend *b);     /* matmul.cu: matmul, bias_grad */
void cuda_fill_attention(backend *b);  /* attention.cu */
void cuda_fill_norm(backend *b);       /* norm.cu: layernorm, rmsnorm, l2norm (+ backward) */
void cuda_fill_activation(backend *b); /* activation.cu: act, swiglu (+ backward) */
void cuda_fill_rope(backend *b);       /* rope.cu */
void cuda_fill_rows(backend *b);       /* rows.cu: gather/scatter rows, convert, add, scale */
void cuda_fill_loss(backend *b);       /* loss.cu: cross_entropy, infonce */
void cuda_fill_optim(backend *b);      /* optim.cu: adamw, sumsq */

/* Shared helpers between families. */
/* Row-major out[M,N] = alpha op(a) op(b) (+ bias[N]) + beta out (matmul.cu). */
void cuda_gemm(void *out, dtype out_dt, const void *a, dtype a_dt, const void *b, dtype b_dt,
               const void *bias, dtype bias_dt, int64_t m, int64_t n, int64_t k, int trans_a,
               int trans_b, float alpha, float beta);
/* dst[i] = src[i] for n elements with dtype conversion (rows.cu). */
void cuda_convert_raw(void *dst, dtype dst_dt, const void *src, dtype src_dt, int64_t n);

/* What a column reduction sums over the rows (reduce.cu). */
typedef enum {
    COLSUM_DY = 0, /* dy[r, c]                          (bias, layernorm b) */
    COLSUM_LN_DW,  /* dy[r, c] (x[r, c] - mean[r]) rstd[r]  (layernorm w) */
    COLSUM_RMS_DW, /* dy[r, c] x[r, c] rstd[r]              (rmsnorm w) */
} colsum_kind;
/* out[c] = sum over rows of the term above (+ beta out[c]); deterministic:
 * fixed row chunks summed in a fixed order, no atomics. */
void cuda_colsum(void *out, dtype out_dt, float beta, colsum_kind kind, const void *dy, dtype dy_dt,
                 const void *x, dtype x_dt, const float *mean, const float *rstd, int64_t rows,
                 int64_t cols);

/* ---- launch geometry ---------------------------------------------------- */

/* Blocks for a grid-stride loop over `items` work items of `per_block` each,
 * capped (the loop covers the rest). */
static inline unsigned grid_blocks(int64_t items, int64_t per_block) {
    int64_t blocks = (items + per_block - 1) / per_block;
    int64_t cap = (int64_t)cuda_sm_count() * 32;
    if (blocks > cap) blocks = cap;
    return (unsigned)(blocks < 1 ? 1 : blocks);
}

/* ---- typed element access (device) -------------------------------------- */

__device__ __forceinline__ int dt_size(dtype dt) { return dt == DT_F32 || dt == DT_I32 ? 4 : 2; }

__device__ __forceinline__ float half_bits_to_f32(uint32_t bits, dtype dt) {
    if (dt == DT_BF16) return __uint_as_float(bits << 16);
    return __half2float(__ushort_as_half((unsigned short)bits));
}

__device__ __forceinline__ uint32_t f32_to_half_bits(float v, dtype dt) {
    if (dt == DT_BF16) return __bfloat16_as_ushort(__float2bfloat16_rn(v));
    return __half_as_ushort(__float2half_rn(v));
}

/* Element i of a float tensor, as f32. */
__device__ __forceinline__ float ld(const void *p, dtype dt, int64_t i) {
    if (dt == DT_F32) return ((const float *)p)[i];
    return half_bits_to_f32(((const unsigned short *)p)[i], dt);
}

__device__ __forceinline__ void st(void *p, dtype dt, int64_t i, float v) {
    if (dt == DT_F32)
        ((float *)p)[i] = v;
    else
        ((unsigned short *)p)[i] = (unsigned short)f32_to_half_bits(v, dt);
}

__device__ __forceinline__ bool is_aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }

/* v[0..8) = elements i..i+8 of p, 0 for those at or past n. One or two
 * 16-byte loads when all eight exist and the address is 16-byte aligned. */
__device__ __forceinline__ void load8(const void *p, dtype dt, int64_t i, int64_t n, float v[8]) {
    const char *addr = (const char *)p + i * dt_size(dt);
    if (i + 8 <= n && is_aligned16(addr)) {
        if (dt == DT_F32) {
            float4 a = ((const float4 *)addr)[0], b = ((const float4 *)addr)[1];
            v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w;
            v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
        } else {
            uint4 u = *(const uint4 *)addr;
            uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
            for (int k = 0; k < 4; k++) { /* little endian: low half is the lower element */
                v[2 * k] = half_bits_to_f32(w[k] & 0xffffu, dt);
                v[2 * k + 1] = half_bits_to_f32(w[k] >> 16, dt);
            }
        }
        return;
    }
#pragma unroll
    for (int k = 0; k < 8; k++) v[k] = i + k < n ? ld(p, dt, i + k) : 0.0f;
}

/* Elements i..i+8 of p = v, skipping those at or past n. */
__device__ __forceinline__ void store8(void *p, dtype dt, int64_t i, int64_t n, const float v[8]) {
    char *addr = (char *)p + i * dt_size(dt);
    if (i + 8 <= n && is_aligned16(addr)) {
        if (dt == DT_F32) {
            ((float4 *)addr)[0] = make_float4(v[0], v[1], v[2], v[3]);
            ((float4 *)addr)[1] = make_float4(v[4], v[5], v[6], v[7]);
        } else {
            uint32_t w[4];
#pragma unroll
            for (int k = 0; k < 4; k++)
                w[k] = f32_to_half_bits(v[2 * k], dt) | (f32_to_half_bits(v[2 * k + 1], dt) << 16);
            *(uint4 *)addr = make_uint4(w[0], w[1], w[2], w[3]);
        }
        return;
    }
#pragma unroll
    for (int k = 0; k < 8; k++)
        if (i + k < n) st(p, dt, i + k, v[k]);
}

/* Row r of a [rows, cols] tensor, as a byte pointer. */
__device__ __forceinline__ const void *row_ptr(const void *p, dtype dt, int64_t r, int64_t cols) {
    return (const char *)p + r * cols * dt_size(dt);
}
__device__ __forceinline__ void *row_ptr_mut(void *p, dtype dt, int64_t r, int64_t cols) {
    return (char *)p + r * cols * dt_size(dt);
}

/* ---- reductions (device) ------------------------------------------------ */

template <typename T> __device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* Sum over a block of up to 1024 threads (blockDim.x a multiple of 32);
 * every thread gets the result. The order of additions depends only on the
 * block size, so it is deterministic. `scratch` holds 32 values. */
template <typename T> __device__ T block_sum(T v, T *scratch) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads(); /* scratch may still be read by a previous call */
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = lane < nwarps ? scratch[lane] : (T)0;
    return warp_sum(v);
}

#endif
