/* What the attention kernels share (attention.cu: the f32 SIMT kernels for
 * every dtype, forward and backward; attention_mma.cu: the bf16 tensor-core
 * forward): the launch arguments, the masking rule and the 64 x 64 tiling of
 * queries and keys. */
#ifndef AIMC_CUDA_ATTENTION_CUH
#define AIMC_CUDA_ATTENTION_CUH
#include "cuda_common.cuh"

enum { BQ = 64, BK = 64 }; /* queries per block, keys per tile */

struct attn_args {
    const void *q, *k, *v; /* q [B,Tq,Hq,hd]; k, v [B,Tk,Hkv,hd]; one dtype */
    dtype qkv_dt;
    const float *key_mask; /* [B,Tk] or NULL */
    const float *bias;     /* [B,Tq,Tk] or NULL */
    int64_t B, Tq, Tk, Hq, Hkv, hd;
    int stride; /* f32 row stride of the shared q/k/v tiles: hd rounded up to odd */
    float scale;
    int causal;
    /* forward */
    void *out;
    dtype out_dt;
    float *lse_out;
    /* backward */
    const void *dout, *fwd_out;
    dtype dout_dt, fwd_out_dt;
    const float *lse, *delta;
    void *dq, *dk, *dv;
    dtype dq_dt, dk_dt, dv_dt;
};

/* Score of query i against key j after scaling, bias and masking. */
static __device__ __forceinline__ float masked_score(const attn_args &a, int64_t b, int64_t i,
                                                     int64_t j, float dot) {
    if (i >= a.Tq || j >= a.Tk) return -INFINITY;
    if (a.causal && j > i + (a.Tk - a.Tq)) return -INFINITY;
    if (a.key_mask && a.key_mask[b * a.Tk + j] == 0.0f) return -INFINITY;
    return a.scale * dot + (a.bias ? a.bias[(b * a.Tq + i) * a.Tk + j] : 0.0f);
}

/* One past the last key any query of [q0, q0 + 64) may see. */
static __device__ __forceinline__ int64_t key_end(const attn_args &a, int64_t q0) {
    if (!a.causal) return a.Tk;
    int64_t last_q = min(q0 + BQ, a.Tq) - 1;
    return max((int64_t)0, min(a.Tk, last_q + (a.Tk - a.Tq) + 1));
}

/* Raises the kernel's dynamic shared memory limit to what a call needs (dies
 * naming the head dim when the GPU allows less). */
void attn_allow_smem(const void *kernel, size_t bytes, int64_t hd);

/* The forward on tensor cores when it applies (bf16 q, k, v; even head dim
 * <= 128; 4-byte aligned rows): returns 1 when it ran, 0 to use the SIMT
 * kernel. AIMC_ATTN_SIMT=1 in the environment always says 0 (benchmarks). */
int attn_fwd_mma(const attn_args &a);
#endif
