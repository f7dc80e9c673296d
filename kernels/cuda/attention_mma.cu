/* Attention forward on tensor cores, flash style, for bf16 q, k, v (what the
 * frozen backbones run in): the same function as attention.cu's SIMT
 * forward (masking, bias, GQA, causal aligned to the end of the keys, rows
 * that see nothing give 0 and lse = -inf), with both products of each tile
 * as mma.sync m16n8k16 bf16 -> f32 (mma.cuh).
 *
 * A block has 4 warps and 64 queries of one head; warp w owns queries
 * 16w..16w+15. The head dim is padded with zeros to HDP = 16 KD (KD = 1, 2,
 * 4, 5, 6 or 8: head dims up to 16, 32, 64, 80, 96 (88), 128). Per key tile
 * of 64:
 *  - K is staged in shared memory as [key][d] and V transposed, [d][key], so
 *    that every B fragment register is one aligned 32-bit load; rows are
 *    padded by 8 bf16 (16 bytes), so the 8 x 4 lanes of a fragment load hit
 *    32 different banks;
 *  - S = Q K^T: KD x 8 mmas, Q's A fragments kept in registers for the
 *    whole block;
 *  - scale, bias and mask, then the online softmax per row (each row's 16
 *    values of a tile live in the 4 lanes of a group: 2 shuffles);
 *  - O += P V: the f32 S accumulators, exponentiated, are repacked as bf16
 *    A fragments in registers (the accumulator layout of two n8 tiles is
 *    the A layout of one k16 step), 4 x 2KD mmas.
 * P is rounded to bf16 for the second product while the row sums l use the
 * f32 values, as FlashAttention-2 does. The backward stays on the SIMT
 * kernels (attention.cu), which recompute P from this lse.
 *
 * Not yet done (unmeasured today): cp.async double buffering of K and V,
 * 16-byte global loads, ldmatrix, and wgmma on sm_90a. */
#include "attention.cuh"
#include "mma.cuh"
#include <stdlib.h>

enum { MMA_WARPS = 4, MMA_THREADS = 32 * MMA_WARPS, PAD = 8 };
static_assert(BQ == 16 * MMA_WARPS && BK == 64, "a warp owns 16 queries; a key tile is 64 keys");

/* Shared-memory row strides (bf16 elements) for a padded head dim. */
static __host__ __device__ constexpr int qk_stride(int hdp) { return hdp + PAD; }
static __host__ __device__ constexpr int vt_stride() { return BK + PAD; }

static __device__ __forceinline__ uint32_t ld_u32(const uint16_t *p) {
    return *(const uint32_t *)p;
}

/* rows [t0, t0 + 64) of x[b, :, h, :] as bf16 into tile: [row][d] with
 * stride `stride`, or transposed ([d][row], stride vt_stride()) when
 * `transpose`; zero past T and for d in [hd, hdp). Two elements per access
 * (hd is even). */
static __device__ void stage_tile(uint16_t *tile, const uint16_t *x, int64_t b, int64_t t0,
                                  int64_t T, int64_t H, int64_t h, int hd, int hdp, int stride,
                                  bool transpose) {
    const int pairs = hdp / 2;
    for (int e = threadIdx.x; e < BK * pairs; e += blockDim.x) {
        int r = e / pairs, d = 2 * (e % pairs);
        int64_t t = t0 + r;
        uint32_t v = 0;
        if (t < T && d < hd) v = ld_u32(x + ((b * T + t) * H + h) * hd + d);
        if (transpose) {
            tile[d * vt_stride() + r] = (uint16_t)(v & 0xffffu);
            tile[(d + 1) * vt_stride() + r] = (uint16_t)(v >> 16);
        } else {
            *(uint32_t *)(tile + r * stride + d) = v;
        }
    }
}

/* Scale, bias and mask on a warp's 16 x 64 score tile (s[n] is key tile n of
 * 8; see mma.cuh for which elements a lane holds). */
static __device__ __forceinline__ void mask_scores(float s[8][4], const attn_args &a, int64_t b,
                                                   int64_t qrow, int64_t k0, int g, int t) {
#pragma unroll
    for (int n = 0; n < 8; n++)
#pragma unroll
        for (int e = 0; e < 4; e++)
            s[n][e] = masked_score(a, b, qrow + g + (e >= 2 ? 8 : 0), k0 + 8 * n + 2 * t + (e & 1),
                                   s[n][e]);
}

/* The online softmax step for the lane's two rows (rr = 0: row g, elements
 * 0, 1; rr = 1: row g + 8, elements 2, 3): s becomes P = exp(s - m_new), the
 * running max m and sum l advance, and o is rescaled. */
template <int KD>
static __device__ __forceinline__ void softmax_step(float s[8][4], float m[2], float l[2],
                                                    float o[2 * KD][4]) {
#pragma unroll
    for (int rr = 0; rr < 2; rr++) {
        float rmax = -INFINITY;
#pragma unroll
        for (int n = 0; n < 8; n++) rmax = fmaxf(rmax, fmaxf(s[n][2 * rr], s[n][2 * rr + 1]));
        rmax = fmaxf(rmax, __shfl_xor_sync(0xffffffffu, rmax, 1));
        rmax = fmaxf(rmax, __shfl_xor_sync(0xffffffffu, rmax, 2));
        float m_new = fmaxf(m[rr], rmax);
        float m_ref = m_new == -INFINITY ? 0.0f : m_new; /* nothing visible yet: p = 0 */
        float corr = expf(m[rr] - m_ref), psum = 0.0f;
#pragma unroll
        for (int n = 0; n < 8; n++)
#pragma unroll
            for (int e = 2 * rr; e < 2 * rr + 2; e++) {
                s[n][e] = expf(s[n][e] - m_ref);
                psum += s[n][e];
            }
        psum += __shfl_xor_sync(0xffffffffu, psum, 1);
        psum += __shfl_xor_sync(0xffffffffu, psum, 2);
        l[rr] = l[rr] * corr + psum;
        m[rr] = m_new;
#pragma unroll
        for (int c = 0; c < 2 * KD; c++) o[c][2 * rr] *= corr, o[c][2 * rr + 1] *= corr;
    }
}

template <int KD>
static __global__ void __launch_bounds__(MMA_THREADS) attn_fwd_mma_kernel(attn_args a) {
    constexpr int HDP = 16 * KD, QK = qk_stride(HDP), VT = vt_stride();
    extern __shared__ uint16_t tiles[];
    uint16_t *Qs = tiles, *Ks = Qs + BQ * QK, *Vt = Ks + BK * QK;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    const int hd = (int)a.hd;
    const int64_t q0 = (int64_t)blockIdx.x * BQ, h = blockIdx.y, b = blockIdx.z;
    const int64_t hk = h / (a.Hq / a.Hkv), qrow = q0 + 16 * warp;
    const uint16_t *q = (const uint16_t *)a.q, *k = (const uint16_t *)a.k, *v = (const uint16_t *)a.v;

    stage_tile(Qs, q, b, q0, a.Tq, a.Hq, h, hd, HDP, QK, false);
    __syncthreads();
    uint32_t qf[KD][4]; /* this warp's 16 query rows as A fragments */
    const uint16_t *qr = Qs + (16 * warp + g) * QK + 2 * t;
#pragma unroll
    for (int kk = 0; kk < KD; kk++) {
        qf[kk][0] = ld_u32(qr + 16 * kk);
        qf[kk][1] = ld_u32(qr + 8 * QK + 16 * kk);
        qf[kk][2] = ld_u32(qr + 16 * kk + 8);
        qf[kk][3] = ld_u32(qr + 8 * QK + 16 * kk + 8);
    }
    float o[2 * KD][4], m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
#pragma unroll
    for (int c = 0; c < 2 * KD; c++) o[c][0] = o[c][1] = o[c][2] = o[c][3] = 0.0f;

    const int64_t kend = key_end(a, q0);
    for (int64_t k0 = 0; k0 < kend; k0 += BK) {
        __syncthreads(); /* the previous tile's readers are done */
        stage_tile(Ks, k, b, k0, a.Tk, a.Hkv, hk, hd, HDP, QK, false);
        stage_tile(Vt, v, b, k0, a.Tk, a.Hkv, hk, hd, HDP, VT, true);
        __syncthreads();
        float s[8][4];
#pragma unroll
        for (int n = 0; n < 8; n++) {
            s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
            const uint16_t *kr = Ks + (8 * n + g) * QK + 2 * t;
#pragma unroll
            for (int kk = 0; kk < KD; kk++) {
                uint32_t bf[2] = {ld_u32(kr + 16 * kk), ld_u32(kr + 16 * kk + 8)};
                mma_m16n8k16_bf16(s[n], qf[kk], bf);
            }
        }
        mask_scores(s, a, b, qrow, k0, g, t);
        softmax_step<KD>(s, m, l, o);
#pragma unroll
        for (int kk = 0; kk < BK / 16; kk++) { /* keys 16kk .. 16kk + 15 */
            uint32_t pf[4] = {pack_bf16x2(s[2 * kk][0], s[2 * kk][1]),
                              pack_bf16x2(s[2 * kk][2], s[2 * kk][3]),
                              pack_bf16x2(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                              pack_bf16x2(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
            for (int c = 0; c < 2 * KD; c++) { /* head-dim columns 8c .. 8c + 7 */
                const uint16_t *vr = Vt + (8 * c + g) * VT + 16 * kk + 2 * t;
                uint32_t bf[2] = {ld_u32(vr), ld_u32(vr + 8)};
                mma_m16n8k16_bf16(o[c], pf, bf);
            }
        }
    }

#pragma unroll
    for (int rr = 0; rr < 2; rr++) {
        int64_t qi = qrow + g + 8 * rr;
        if (qi >= a.Tq) continue;
        float inv_l = l[rr] > 0.0f ? 1.0f / l[rr] : 0.0f;
#pragma unroll
        for (int c = 0; c < 2 * KD; c++)
#pragma unroll
            for (int e = 0; e < 2; e++) {
                int d = 8 * c + 2 * t + e;
                if (d < hd) st(a.out, a.out_dt, ((b * a.Tq + qi) * a.Hq + h) * hd + d, o[c][2 * rr + e] * inv_l);
            }
        if (a.lse_out && t == 0)
            a.lse_out[(b * a.Hq + h) * a.Tq + qi] = l[rr] > 0.0f ? m[rr] + logf(l[rr]) : -INFINITY;
    }
}

static size_t mma_smem_bytes(int hdp) {
    return ((size_t)(BQ + BK) * qk_stride(hdp) + (size_t)hdp * vt_stride()) * sizeof(uint16_t);
}

template <int KD> static void launch_fwd_mma(const attn_args &a) {
    size_t smem = mma_smem_bytes(16 * KD);
    attn_allow_smem((const void *)attn_fwd_mma_kernel<KD>, smem, a.hd);
    dim3 grid((unsigned)((a.Tq + BQ - 1) / BQ), (unsigned)a.Hq, (unsigned)a.B);
    attn_fwd_mma_kernel<KD><<<grid, MMA_THREADS, smem, cuda_stream()>>>(a);
    CUDA_LAUNCH_CHECK();
}

static bool aligned4(const void *p) { return ((uintptr_t)p & 3) == 0; }

int attn_fwd_mma(const attn_args &a) {
    const char *simt = getenv("AIMC_ATTN_SIMT"); /* read per call: the benchmark flips it */
    if ((simt && *simt && strcmp(simt, "0") != 0) || a.qkv_dt != DT_BF16 || a.hd % 2 || a.hd > 128) return 0;
    if (!aligned4(a.q) || !aligned4(a.k) || !aligned4(a.v)) return 0;
    int kd = (int)((a.hd + 15) / 16);
    switch (kd) {
    case 1: launch_fwd_mma<1>(a); break;
    case 2: launch_fwd_mma<2>(a); break;
    case 3:
    case 4: launch_fwd_mma<4>(a); break;
    case 5: launch_fwd_mma<5>(a); break;
    case 6: launch_fwd_mma<6>(a); break;
    default: launch_fwd_mma<8>(a); break;
    }
    return 1;
}
