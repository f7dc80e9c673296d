/* What the attention kernels share (attention.cu: the f32 SIMT kernels for
 * every dtype, forward and backward; attention_mma.cu: the bf16 tensor-core
 * forward and backward): the launch arguments, the masking rule and the
 * 64 x 64 tiling of queries and keys. */
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

/* The first 64-query tile that may see keys from k0 on (causal: query i
 * sees keys up to i + Tk - Tq). */
static __device__ __forceinline__ int64_t first_query_tile(const attn_args &a, int64_t k0) {
    int64_t q = a.causal ? max((int64_t)0, k0 - (a.Tk - a.Tq)) : 0;
    return q / BQ * BQ;
}

/* lse and delta of rows [q0, q0 + 64) of head h into shared memory;
 * rows past Tq get lse = -inf (so P = 0). */
static __device__ void load_row_stats(float *lse_s, float *delta_s, const attn_args &a, int64_t b,
                                      int64_t h, int64_t q0) {
    for (int r = threadIdx.x; r < BQ; r += blockDim.x) {
        int64_t i = q0 + r, at = (b * a.Hq + h) * a.Tq + i;
        lse_s[r] = i < a.Tq ? a.lse[at] : -INFINITY;
        delta_s[r] = i < a.Tq ? a.delta[at] : 0.0f;
    }
}

/* Raises the kernel's dynamic shared memory limit to what a call needs (dies
 * naming the head dim when the GPU allows less). */
void attn_allow_smem(const void *kernel, size_t bytes, int64_t hd);

/* The forward / backward on tensor cores when they apply (bf16 q, k, v and,
 * backward, dout; even head dim <= 128; 4-byte aligned rows): return 1 when
 * they ran, 0 to use the SIMT kernels. AIMC_ATTN_SIMT=1 in the environment
 * always says 0 (benchmarks, tests). The backward needs delta computed. */
int attn_fwd_mma(const attn_args &a);
int attn_bwd_mma(const attn_args &a);
#endif
