/* Attention on tensor cores, flash style, for bf16 q, k, v (what the frozen
 * backbones run in): the same function as attention.cu's SIMT kernels
 * (masking, bias, GQA, causal aligned to the end of the keys, rows that see
 * nothing give 0 and lse = -inf), with every product of a tile as mma.sync
 * m16n8k16 bf16 -> f32 (mma.cuh has the fragment layouts).
 *
 * Tiles. A block has 4 warps; each warp owns 16 rows (queries, or keys in
 * the dK/dV kernel) of a 64-row tile. The head dim is padded with zeros to
 * HDP = 16 KD (KD = 1, 2, 4, 5, 6 or 8: head dims up to 16, 32, 64, 80,
 * 96 and 128; EVA ViT-g's 88 runs padded to 96). Tiles are staged in shared memory as bf16, row-major
 * ([row][d], stride HDP + 8) when a product reads them along d, and
 * transposed ([d][row], stride 64 + 8) when it reads them along the rows,
 * so that every fragment register is one aligned 32-bit load; the 8-element
 * padding puts the 8 x 4 lanes of a fragment load in 32 different banks.
 * An f32 accumulator pair of n8 tiles is the A fragment of one k16 step
 * (repacked to bf16 in registers), so P and dS never go through memory.
 *
 * Forward (one block per 64 queries of one head): per key tile of 64,
 * S = Q K^T, scale, bias, mask, online softmax per row (a row's values of a
 * tile live in the 4 lanes of a group: 2 shuffles), O += P V.
 *
 * Backward, deterministic (each output element summed by one lane in one
 * order, no atomics), after attention.cu's delta = rowsum(dO * O):
 *  - dK, dV: one block per 64 keys of one kv head walks the query heads of
 *    its GQA group and their query tiles, 32 queries at a time:
 *    S^T = K Q^T, P^T = exp(S^T - lse), dV += P^T dO, dP^T = V dO^T,
 *    dS^T = P^T (dP^T - delta), dK += dS^T Q;
 *  - dQ: one block per 64 queries of one head walks the key tiles, 32 keys
 *    at a time: S, P, dP = dO V^T, dS, dQ += dS K.
 * P is rounded to bf16 for the products while softmax sums stay f32, as
 * FlashAttention-2 does.
 *
 * Not yet done (unmeasured today): cp.async double buffering, ldmatrix,
 * wgmma on sm_90a. */
#include "attention.cuh"
#include "mma.cuh"
#include <stdlib.h>

enum { MMA_WARPS = 4, MMA_THREADS = 32 * MMA_WARPS, PAD = 8, HALF = 32 };
static_assert(BQ == 16 * MMA_WARPS && BK == BQ, "a warp owns 16 rows of a 64-row tile");

/* Shared-memory strides (bf16 elements): row-major tiles of a padded head
 * dim, and transposed tiles of 64 rows. */
static __host__ __device__ constexpr int row_stride(int hdp) { return hdp + PAD; }
static __host__ __device__ constexpr int tr_stride() { return BK + PAD; }

static __device__ __forceinline__ uint32_t ld_u32(const uint16_t *p) {
    return *(const uint32_t *)p;
}

/* ---- fragments (see mma.cuh; g = lane / 4, t = lane % 4) ------------------- */

/* A fragment of rows r0..r0+15, columns k0..k0+15 of a [row][k] tile. */
static __device__ __forceinline__ void load_a(uint32_t f[4], const uint16_t *tile, int stride,
                                              int r0, int k0, int g, int t) {
    const uint16_t *p = tile + (r0 + g) * stride + k0 + 2 * t;
    f[0] = ld_u32(p), f[1] = ld_u32(p + 8 * stride), f[2] = ld_u32(p + 8),
    f[3] = ld_u32(p + 8 * stride + 8);
}

/* B fragment for columns n0..n0+7 and k0..k0+15 of a tile stored [n][k]. */
static __device__ __forceinline__ void load_b(uint32_t f[2], const uint16_t *tile, int stride,
                                              int n0, int k0, int g, int t) {
    const uint16_t *p = tile + (n0 + g) * stride + k0 + 2 * t;
    f[0] = ld_u32(p), f[1] = ld_u32(p + 8);
}

/* Two f32 accumulator tiles (columns 16j..16j+7 and 16j+8..16j+15) as the
 * bf16 A fragment of k step j. */
static __device__ __forceinline__ void acc_to_a(uint32_t f[4], const float lo[4],
                                                const float hi[4]) {
    f[0] = pack_bf16x2(lo[0], lo[1]), f[1] = pack_bf16x2(lo[2], lo[3]);
    f[2] = pack_bf16x2(hi[0], hi[1]), f[3] = pack_bf16x2(hi[2], hi[3]);
}

template <int N> static __device__ __forceinline__ void zero(float acc[N][4]) {
#pragma unroll
    for (int n = 0; n < N; n++) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;
}

/* acc[n] += A B^T over KD k steps, for N column tiles: A rows r0.. of a
 * [row][d] tile, B rows n_base + 8n of another [row][d] tile. */
template <int KD, int N>
static __device__ __forceinline__ void dots(float acc[N][4], const uint16_t *A, const uint16_t *Bt,
                                            int stride, int r0, int n_base, int g, int t) {
#pragma unroll
    for (int kk = 0; kk < KD; kk++) {
        uint32_t a[4];
        load_a(a, A, stride, r0, 16 * kk, g, t);
#pragma unroll
        for (int n = 0; n < N; n++) {
            uint32_t bf[2];
            load_b(bf, Bt, stride, n_base + 8 * n, 16 * kk, g, t);
            mma_m16n8k16_bf16(acc[n], a, bf);
        }
    }
}

/* out[c] += W X over a k range of 16 * KS: W is in accumulator tiles w[0..2KS)
 * (repacked), X is a transposed tile [d][k] read from column k_base. */
template <int KS, int KD>
static __device__ __forceinline__ void accum(float out[2 * KD][4], const float w[2 * KS][4],
                                             const uint16_t *Xt, int k_base, int g, int t) {
#pragma unroll
    for (int ks = 0; ks < KS; ks++) {
        uint32_t a[4];
        acc_to_a(a, w[2 * ks], w[2 * ks + 1]);
#pragma unroll
        for (int c = 0; c < 2 * KD; c++) {
            uint32_t bf[2];
            load_b(bf, Xt, tr_stride(), 8 * c, k_base + 16 * ks, g, t);
            mma_m16n8k16_bf16(out[c], a, bf);
        }
    }
}

/* W consecutive bf16 as one access: 32 bits (W = 2) or 16 bytes (W = 8). */
template <int W> struct chunk_of {
    typedef uint32_t type;
};
template <> struct chunk_of<8> {
    typedef uint4 type;
};

template <int W>
static __device__ void stage_chunks(uint16_t *tile, const uint16_t *x, int64_t b, int64_t t0,
                                    int64_t T, int64_t H, int64_t h, int hd, int hdp,
                                    bool transpose) {
    typedef typename chunk_of<W>::type chunk;
    const int per_row = hdp / W;
    for (int e = threadIdx.x; e < BK * per_row; e += blockDim.x) {
        int r = e / per_row, d = W * (e % per_row);
        int64_t t = t0 + r;
        union {
            chunk c;
            uint16_t e[W];
        } u;
        memset(&u, 0, sizeof u);
        if (t < T && d < hd) u.c = *(const chunk *)(x + ((b * T + t) * H + h) * hd + d);
        if (transpose) {
#pragma unroll
            for (int j = 0; j < W; j++) tile[(d + j) * tr_stride() + r] = u.e[j];
        } else {
            *(chunk *)(tile + r * row_stride(hdp) + d) = u.c;
        }
    }
}

/* rows [t0, t0 + 64) of x[b, :, h, :] as bf16 into tile: [row][d] with
 * row_stride(hdp), or transposed ([d][row], tr_stride()); zero past T and
 * for d in [hd, hdp). 16-byte loads when every row allows them (hd a
 * multiple of 8, x 16-byte aligned: all of aimc's models), else 32-bit ones
 * (hd is even). Every tile and row stride is a multiple of 16 bytes. */
static __device__ void stage_tile(uint16_t *tile, const void *xv, int64_t b, int64_t t0,
                                  int64_t T, int64_t H, int64_t h, int hd, int hdp,
                                  bool transpose) {
    const uint16_t *x = (const uint16_t *)xv;
    if (hd % 8 == 0 && ((uintptr_t)x & 15) == 0)
        stage_chunks<8>(tile, x, b, t0, T, H, h, hd, hdp, transpose);
    else
        stage_chunks<2>(tile, x, b, t0, T, H, h, hd, hdp, transpose);
}

/* Element e of accumulator tile n (row r0 + g (+ 8), column c0 + 8n + 2t (+ 1)). */
static __device__ __forceinline__ int acc_row(int e, int g) { return g + (e >= 2 ? 8 : 0); }
static __device__ __forceinline__ int acc_col(int n, int e, int t) { return 8 * n + 2 * t + (e & 1); }

/* Writes a warp's 16 x hd accumulator (rows row0 + ...) times mul to
 * x[b, row, h, :] for rows inside T. */
template <int KD>
static __device__ __forceinline__ void store_acc(void *x, dtype dt, const float acc[2 * KD][4],
                                                 float mul, int64_t b, int64_t row0, int64_t T,
                                                 int64_t H, int64_t h, int hd, int g, int t) {
#pragma unroll
    for (int c = 0; c < 2 * KD; c++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            int64_t r = row0 + acc_row(e, g);
            int d = acc_col(c, e, t);
            if (r < T && d < hd) st(x, dt, ((b * T + r) * H + h) * hd + d, acc[c][e] * mul);
        }
}

/* ---- forward ------------------------------------------------------------------ */

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
    constexpr int HDP = 16 * KD, RS = row_stride(HDP);
    extern __shared__ uint16_t tiles[];
    uint16_t *Qs = tiles, *Ks = Qs + BQ * RS, *Vt = Ks + BK * RS;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    const int hd = (int)a.hd;
    const int64_t q0 = (int64_t)blockIdx.x * BQ, h = blockIdx.y, b = blockIdx.z;
    const int64_t hk = h / (a.Hq / a.Hkv), qrow = q0 + 16 * warp;

    stage_tile(Qs, a.q, b, q0, a.Tq, a.Hq, h, hd, HDP, false);
    float o[2 * KD][4], m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
    zero<2 * KD>(o);
    const int64_t kend = key_end(a, q0);
    for (int64_t k0 = 0; k0 < kend; k0 += BK) {
        __syncthreads(); /* the previous tile's readers are done (first pass: Qs is written) */
        stage_tile(Ks, a.k, b, k0, a.Tk, a.Hkv, hk, hd, HDP, false);
        stage_tile(Vt, a.v, b, k0, a.Tk, a.Hkv, hk, hd, HDP, true);
        __syncthreads();
        float s[8][4];
        zero<8>(s);
        dots<KD, 8>(s, Qs, Ks, RS, 16 * warp, 0, g, t); /* S = Q K^T */
#pragma unroll
        for (int n = 0; n < 8; n++)
#pragma unroll
            for (int e = 0; e < 4; e++)
                s[n][e] = masked_score(a, b, qrow + acc_row(e, g), k0 + acc_col(n, e, t), s[n][e]);
        softmax_step<KD>(s, m, l, o);
        accum<BK / 16, KD>(o, s, Vt, 0, g, t); /* O += P V */
    }

    float inv_l[2];
#pragma unroll
    for (int rr = 0; rr < 2; rr++) {
        inv_l[rr] = l[rr] > 0.0f ? 1.0f / l[rr] : 0.0f;
        int64_t qi = qrow + g + 8 * rr;
        if (a.lse_out && t == 0 && qi < a.Tq)
            a.lse_out[(b * a.Hq + h) * a.Tq + qi] = l[rr] > 0.0f ? m[rr] + logf(l[rr]) : -INFINITY;
    }
#pragma unroll
    for (int c = 0; c < 2 * KD; c++)
#pragma unroll
        for (int e = 0; e < 4; e++) o[c][e] *= inv_l[e >= 2];
    store_acc<KD>(a.out, a.out_dt, o, 1.0f, b, qrow, a.Tq, a.Hq, h, hd, g, t);
}

/* ---- backward ------------------------------------------------------------------ */

/* On a warp's 16 x 32 tile of scores s and dp = dO V^T (both in accumulator
 * layout): s becomes P = exp(score - lse) (0 where masked or the query saw
 * nothing) and dp becomes dS = P (dp - delta). keys_are_rows: the dK/dV
 * kernel's transposed tile (rows keys from row0, columns queries from col0,
 * each column's lse / delta in shared memory at col_stats); else rows are
 * queries (lse / delta of the lane's two rows) and columns keys. */
struct tile_stats {
    bool keys_are_rows;
    float row_lse[2], row_delta[2]; /* queries as rows */
    const float *col_lse, *col_delta; /* queries as columns, indexed from col0 */
};

static __device__ __forceinline__ void scores_to_ds(float s[4][4], float dp[4][4],
                                                    const attn_args &a, int64_t b, int64_t row0,
                                                    int64_t col0, const tile_stats &ts, int g,
                                                    int t) {
#pragma unroll
    for (int n = 0; n < 4; n++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            int64_t r = row0 + acc_row(e, g), c = col0 + acc_col(n, e, t);
            float lse = ts.keys_are_rows ? ts.col_lse[acc_col(n, e, t)] : ts.row_lse[e >= 2];
            float delta = ts.keys_are_rows ? ts.col_delta[acc_col(n, e, t)] : ts.row_delta[e >= 2];
            float sc = ts.keys_are_rows ? masked_score(a, b, c, r, s[n][e])
                                        : masked_score(a, b, r, c, s[n][e]);
            float p = sc == -INFINITY || lse == -INFINITY ? 0.0f : expf(sc - lse);
            s[n][e] = p;
            dp[n][e] = p * (dp[n][e] - delta);
        }
}

/* dK, dV for 64 keys of one kv head (see the top of the file). */
template <int KD>
static __global__ void __launch_bounds__(MMA_THREADS) attn_bwd_dkdv_mma_kernel(attn_args a) {
    constexpr int HDP = 16 * KD, RS = row_stride(HDP), TS = tr_stride();
    extern __shared__ uint16_t tiles[];
    uint16_t *Ks = tiles, *Vs = Ks + BK * RS, *Qs = Vs + BK * RS, *dOs = Qs + BQ * RS;
    uint16_t *Qt = dOs + BQ * RS, *dOt = Qt + HDP * TS;
    float *lse_s = (float *)(dOt + HDP * TS), *delta_s = lse_s + BQ;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    const int hd = (int)a.hd;
    const int64_t k0 = (int64_t)blockIdx.x * BK, hk = blockIdx.y, b = blockIdx.z;
    const int64_t group = a.Hq / a.Hkv, krow = k0 + 16 * warp;
    stage_tile(Ks, a.k, b, k0, a.Tk, a.Hkv, hk, hd, HDP, false);
    stage_tile(Vs, a.v, b, k0, a.Tk, a.Hkv, hk, hd, HDP, false);

    float dk[2 * KD][4], dv[2 * KD][4];
    zero<2 * KD>(dk), zero<2 * KD>(dv);
    const int64_t q_first = first_query_tile(a, k0);
    for (int64_t h = hk * group; h < (hk + 1) * group; h++)
        for (int64_t q0 = q_first; q0 < a.Tq; q0 += BQ) {
            __syncthreads(); /* the previous tile's readers are done */
            stage_tile(Qs, a.q, b, q0, a.Tq, a.Hq, h, hd, HDP, false);
            stage_tile(Qt, a.q, b, q0, a.Tq, a.Hq, h, hd, HDP, true);
            stage_tile(dOs, a.dout, b, q0, a.Tq, a.Hq, h, hd, HDP, false);
            stage_tile(dOt, a.dout, b, q0, a.Tq, a.Hq, h, hd, HDP, true);
            load_row_stats(lse_s, delta_s, a, b, h, q0);
            __syncthreads();
#pragma unroll 1
            for (int half = 0; half < BQ / HALF; half++) { /* queries 32 half .. + 31 */
                const int c0 = HALF * half;
                float s[4][4], dp[4][4];
                zero<4>(s), zero<4>(dp);
                dots<KD, 4>(s, Ks, Qs, RS, 16 * warp, c0, g, t);   /* S^T = K Q^T */
                dots<KD, 4>(dp, Vs, dOs, RS, 16 * warp, c0, g, t); /* dP^T = V dO^T */
                tile_stats ts = {true, {0, 0}, {0, 0}, lse_s + c0, delta_s + c0};
                scores_to_ds(s, dp, a, b, krow, q0 + c0, ts, g, t);
                accum<HALF / 16, KD>(dv, s, dOt, c0, g, t); /* dV += P^T dO */
                accum<HALF / 16, KD>(dk, dp, Qt, c0, g, t); /* dK += dS^T Q */
            }
        }
    store_acc<KD>(a.dk, a.dk_dt, dk, a.scale, b, krow, a.Tk, a.Hkv, hk, hd, g, t);
    store_acc<KD>(a.dv, a.dv_dt, dv, 1.0f, b, krow, a.Tk, a.Hkv, hk, hd, g, t);
}

/* dQ for 64 queries of one head (see the top of the file). */
template <int KD>
static __global__ void __launch_bounds__(MMA_THREADS) attn_bwd_dq_mma_kernel(attn_args a) {
    constexpr int HDP = 16 * KD, RS = row_stride(HDP);
    extern __shared__ uint16_t tiles[];
    uint16_t *Qs = tiles, *dOs = Qs + BQ * RS, *Ks = dOs + BQ * RS, *Vs = Ks + BK * RS;
    uint16_t *Kt = Vs + BK * RS;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    const int hd = (int)a.hd;
    const int64_t q0 = (int64_t)blockIdx.x * BQ, h = blockIdx.y, b = blockIdx.z;
    const int64_t hk = h / (a.Hq / a.Hkv), qrow = q0 + 16 * warp;
    stage_tile(Qs, a.q, b, q0, a.Tq, a.Hq, h, hd, HDP, false);
    stage_tile(dOs, a.dout, b, q0, a.Tq, a.Hq, h, hd, HDP, false);
    tile_stats ts = {false, {-INFINITY, -INFINITY}, {0.0f, 0.0f}, NULL, NULL};
#pragma unroll
    for (int rr = 0; rr < 2; rr++) {
        int64_t qi = qrow + g + 8 * rr, at = (b * a.Hq + h) * a.Tq + qi;
        if (qi < a.Tq) ts.row_lse[rr] = a.lse[at], ts.row_delta[rr] = a.delta[at];
    }

    float dq[2 * KD][4];
    zero<2 * KD>(dq);
    const int64_t kend = key_end(a, q0);
    for (int64_t k0 = 0; k0 < kend; k0 += BK) {
        __syncthreads(); /* the previous tile's readers are done (first pass: Qs, dOs written) */
        stage_tile(Ks, a.k, b, k0, a.Tk, a.Hkv, hk, hd, HDP, false);
        stage_tile(Vs, a.v, b, k0, a.Tk, a.Hkv, hk, hd, HDP, false);
        stage_tile(Kt, a.k, b, k0, a.Tk, a.Hkv, hk, hd, HDP, true);
        __syncthreads();
#pragma unroll 1
        for (int half = 0; half < BK / HALF; half++) { /* keys 32 half .. + 31 */
            const int c0 = HALF * half;
            float s[4][4], dp[4][4];
            zero<4>(s), zero<4>(dp);
            dots<KD, 4>(s, Qs, Ks, RS, 16 * warp, c0, g, t);   /* S = Q K^T */
            dots<KD, 4>(dp, dOs, Vs, RS, 16 * warp, c0, g, t); /* dP = dO V^T */
            scores_to_ds(s, dp, a, b, qrow, k0 + c0, ts, g, t);
            accum<HALF / 16, KD>(dq, dp, Kt, c0, g, t); /* dQ += dS K */
        }
    }
    store_acc<KD>(a.dq, a.dq_dt, dq, a.scale, b, qrow, a.Tq, a.Hq, h, hd, g, t);
}

/* ---- host side ------------------------------------------------------------------ */

static size_t fwd_smem(int hdp) {
    return ((size_t)(BQ + BK) * row_stride(hdp) + (size_t)hdp * tr_stride()) * sizeof(uint16_t);
}
static size_t dkdv_smem(int hdp) {
    return ((size_t)(BK + BK + BQ + BQ) * row_stride(hdp) + 2 * (size_t)hdp * tr_stride()) *
               sizeof(uint16_t) +
           2 * BQ * sizeof(float);
}
static size_t dq_smem(int hdp) {
    return ((size_t)(BQ + BQ + BK + BK) * row_stride(hdp) + (size_t)hdp * tr_stride()) *
           sizeof(uint16_t);
}

/* kernel over (rows / 64) x heads x batch blocks with smem bytes. */
static void launch(void (*kernel)(attn_args), int64_t rows, int64_t heads, size_t smem,
                   const attn_args &a) {
    attn_allow_smem((const void *)kernel, smem, a.hd);
    dim3 grid((unsigned)((rows + BQ - 1) / BQ), (unsigned)heads, (unsigned)a.B);
    kernel<<<grid, MMA_THREADS, smem, cuda_stream()>>>(a);
    CUDA_LAUNCH_CHECK();
}

template <int KD> static void fwd_kd(const attn_args &a) {
    launch(attn_fwd_mma_kernel<KD>, a.Tq, a.Hq, fwd_smem(16 * KD), a);
}

template <int KD> static void bwd_kd(const attn_args &a) {
    if (a.Tk > 0) launch(attn_bwd_dkdv_mma_kernel<KD>, a.Tk, a.Hkv, dkdv_smem(16 * KD), a);
    if (a.Tq > 0) launch(attn_bwd_dq_mma_kernel<KD>, a.Tq, a.Hq, dq_smem(16 * KD), a);
}

static bool aligned4(const void *p) { return ((uintptr_t)p & 3) == 0; }

/* The kernels' variants by padded head dim (KD = 1, 2, 4, 5, 6, 8). */
typedef void (*launcher)(const attn_args &);
static const launcher FWD[] = {fwd_kd<1>, fwd_kd<2>, fwd_kd<4>, fwd_kd<5>, fwd_kd<6>, fwd_kd<8>};
static const launcher BWD[] = {bwd_kd<1>, bwd_kd<2>, bwd_kd<4>, bwd_kd<5>, bwd_kd<6>, bwd_kd<8>};

/* The variant (index into FWD / BWD) when the tensor-core kernels apply,
 * else -1. */
static int mma_variant(const attn_args &a, bool backward) {
    const char *simt = getenv("AIMC_ATTN_SIMT"); /* read per call: the benchmark flips it */
    if (simt && *simt && strcmp(simt, "0") != 0) return -1;
    if (a.qkv_dt != DT_BF16 || a.hd % 2 || a.hd > 128) return -1;
    if (!aligned4(a.q) || !aligned4(a.k) || !aligned4(a.v)) return -1;
    if (backward && (a.dout_dt != DT_BF16 || !aligned4(a.dout))) return -1;
    static const int by_steps[9] = {-1, 0, 1, 2, 2, 3, 4, 5, 5}; /* by ceil(hd / 16) */
    return by_steps[(a.hd + 15) / 16];
}

int attn_fwd_mma(const attn_args &a) {
    int v = mma_variant(a, false);
    if (v >= 0) FWD[v](a);
    return v >= 0;
}

int attn_bwd_mma(const attn_args &a) {
    int v = mma_variant(a, true);
    if (v >= 0) BWD[v](a);
    return v >= 0;
}
