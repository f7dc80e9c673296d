/* Scaled dot-product attention, forward and backward, flash style: the
 * Tq x Tk score matrix is never stored; it is produced and consumed one
 * 64 x 64 tile at a time in shared memory. Semantics: kernels/backend.h
 * (attn_opts): causal aligned to the end of the keys, key_mask, additive
 * f32 bias, GQA, rows that see no key give out = 0 and lse = -inf.
 *
 * Tiles and threads. A block has 256 threads seen as a 16 x 16 grid
 * (tx = thread % 16, ty = thread / 16). In every 64 x 64 tile a thread owns
 * rows ty + 16i and columns tx + 16j (i, j < 4): the 16 threads of a row
 * are one half-warp, so row maxima and sums are 4 shuffles. In a 64 x hd
 * accumulator a thread owns rows ty + 16i and head-dim columns tx + 16c
 * (c < NC = ceil(hd / 16), the template parameter: 2, 4, 5, 6 or 8, i.e.
 * head dims up to 32, 64, 80, 96 (88) and 128). Shared tiles hold f32 rows
 * padded to an odd stride, so a half-warp walking 16 different rows at the
 * same column hits 16 different banks. Inputs of any float dtype are
 * converted to f32 when a tile is loaded; all math is f32 (SIMT FMA, no
 * tensor cores: exact f32 results, the first goal; see the note at the end).
 *
 * Forward (one block per 64 queries of one head): for each key tile,
 * S = scale Q K^T + bias (masked to -inf), online softmax per row (running
 * max m, running sum l, the accumulator rescaled by exp(m_old - m_new)),
 * O += P V with P staged in shared memory. At the end O / l and
 * lse = m + log l. Causal blocks stop at their last visible key tile.
 *
 * Backward, deterministic (no float atomics), three kernels:
 *  1. delta_i = dout_i . out_i (one warp per row);
 *  2. dk, dv: one block per 64 keys of one kv head walks every query head
 *     of its GQA group and every query tile in a fixed order, recomputing
 *     P = exp(S - lse), and accumulates dV += P^T dO and
 *     dK += dS^T Q, dS = P (dO V^T - delta), in registers;
 *  3. dq: one block per 64 queries of one head walks the key tiles and
 *     accumulates dQ += dS K.
 * Each output element is summed by one thread in one order: bitwise
 * reproducible.
 *
 * Which runs: bf16 attention goes to the tensor-core kernels in
 * attention_mma.cu (attn_fwd_mma, attn_bwd_mma); these SIMT kernels do f32
 * and f16 inputs, odd head dims and misaligned rows, and everything under
 * AIMC_ATTN_SIMT=1. The delta kernel below serves both. */
#include "attention.cuh"

enum { ATT_THREADS = 256, PSTRIDE = BK + 1 };
static_assert(BQ == BK && BQ == 4 * 16 && ATT_THREADS == 16 * 16,
              "tiles are 64 x 64, covered by a 16 x 16 thread grid with 4 x 4 elements each");

/* tile[r][d] = x[b, t0 + r, h, d] as f32 for r < 64 (rows past T are 0).
 * Neighbouring threads read neighbouring d: coalesced. */
static __device__ void load_tile(float *tile, const void *x, dtype dt, int64_t b, int64_t t0,
                                 int64_t T, int64_t H, int64_t h, int64_t hd, int stride) {
    for (int e = threadIdx.x; e < BQ * hd; e += blockDim.x) {
        int r = e / (int)hd, d = e % (int)hd;
        int64_t t = t0 + r;
        tile[r * stride + d] = t < T ? ld(x, dt, ((b * T + t) * H + h) * hd + d) : 0.0f;
    }
}

/* s[i][j] = A[ty + 16i] . Bm[tx + 16j] over hd, for two shared tiles. */
static __device__ __forceinline__ void tile_dots(float s[4][4], const float *A, const float *Bm,
                                                 int stride, int hd, int tx, int ty) {
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) s[i][j] = 0.0f;
#pragma unroll 4
    for (int d = 0; d < hd; d++) {
        float av[4], bv[4];
#pragma unroll
        for (int i = 0; i < 4; i++) av[i] = A[(ty + 16 * i) * stride + d];
#pragma unroll
        for (int j = 0; j < 4; j++) bv[j] = Bm[(tx + 16 * j) * stride + d];
#pragma unroll
        for (int i = 0; i < 4; i++)
#pragma unroll
            for (int j = 0; j < 4; j++) s[i][j] = fmaf(av[i], bv[j], s[i][j]);
    }
}

/* Reductions over the 16 threads (one half-warp) that share a tile row. */
static __device__ __forceinline__ float row_max16(float v) {
#pragma unroll
    for (int o = 8; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
static __device__ __forceinline__ float row_sum16(float v) {
#pragma unroll
    for (int o = 8; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* acc[i][c] += sum over r < 64 of W[r][row(i)] * X[r][tx + 16c], where W is a
 * 64 x 64 shared tile read by column (transposed) and row(i) = ty + 16i:
 * dV += P^T dO and dK += dS^T Q. */
template <int NC>
static __device__ __forceinline__ void accum_transposed(float acc[4][NC], const float *W,
                                                        const float *X, int stride, int hd, int tx,
                                                        int ty) {
#pragma unroll 4
    for (int r = 0; r < BQ; r++) {
        float w[4];
#pragma unroll
        for (int i = 0; i < 4; i++) w[i] = W[r * PSTRIDE + ty + 16 * i];
#pragma unroll
        for (int c = 0; c < NC; c++) {
            int d = tx + 16 * c;
            if (d < hd) {
                float xv = X[r * stride + d];
#pragma unroll
                for (int i = 0; i < 4; i++) acc[i][c] = fmaf(w[i], xv, acc[i][c]);
            }
        }
    }
}

/* acc[i][c] += sum over j < 64 of W[ty + 16i][j] * X[j][tx + 16c]:
 * O += P V and dQ += dS K. */
template <int NC>
static __device__ __forceinline__ void accum_rows(float acc[4][NC], const float *W, const float *X,
                                                  int stride, int hd, int tx, int ty) {
#pragma unroll 4
    for (int j = 0; j < BK; j++) {
        float w[4];
#pragma unroll
        for (int i = 0; i < 4; i++) w[i] = W[(ty + 16 * i) * PSTRIDE + j];
#pragma unroll
        for (int c = 0; c < NC; c++) {
            int d = tx + 16 * c;
            if (d < hd) {
                float xv = X[j * stride + d];
#pragma unroll
                for (int i = 0; i < 4; i++) acc[i][c] = fmaf(w[i], xv, acc[i][c]);
            }
        }
    }
}

/* Writes rows ty + 16i of a 64 x hd accumulator (times mul[i]) to
 * x[b, t0 + row, h, :] for rows inside T. */
template <int NC>
static __device__ __forceinline__ void
store_rows(void *x, dtype dt, const float acc[4][NC], const float mul[4], int64_t b, int64_t t0,
           int64_t T, int64_t H, int64_t h, int hd, int tx, int ty) {
#pragma unroll
    for (int i = 0; i < 4; i++) {
        int64_t t = t0 + ty + 16 * i;
        if (t >= T) continue;
#pragma unroll
        for (int c = 0; c < NC; c++) {
            int d = tx + 16 * c;
            if (d < hd) st(x, dt, ((b * T + t) * H + h) * hd + d, acc[i][c] * mul[i]);
        }
    }
}

/* ---- forward -------------------------------------------------------------- */

template <int NC>
static __global__ void __launch_bounds__(ATT_THREADS) attn_fwd_kernel(attn_args a) {
    extern __shared__ float smem[];
    const int stride = a.stride, hd = (int)a.hd, tx = threadIdx.x % 16, ty = threadIdx.x / 16;
    float *Qs = smem, *Ks = Qs + BQ * stride, *Vs = Ks + BK * stride, *Ps = Vs + BK * stride;
    const int64_t q0 = (int64_t)blockIdx.x * BQ, h = blockIdx.y, b = blockIdx.z;
    const int64_t hk = h / (a.Hq / a.Hkv);
    load_tile(Qs, a.q, a.qkv_dt, b, q0, a.Tq, a.Hq, h, a.hd, stride);

    float m[4], l[4], acc[4][NC];
#pragma unroll
    for (int i = 0; i < 4; i++) {
        m[i] = -INFINITY, l[i] = 0.0f;
#pragma unroll
        for (int c = 0; c < NC; c++) acc[i][c] = 0.0f;
    }
    const int64_t kend = key_end(a, q0);
    for (int64_t k0 = 0; k0 < kend; k0 += BK) {
        __syncthreads(); /* the previous tile's readers are done (first pass: Qs is written) */
        load_tile(Ks, a.k, a.qkv_dt, b, k0, a.Tk, a.Hkv, hk, a.hd, stride);
        load_tile(Vs, a.v, a.qkv_dt, b, k0, a.Tk, a.Hkv, hk, a.hd, stride);
        __syncthreads();
        float s[4][4];
        tile_dots(s, Qs, Ks, stride, hd, tx, ty);
#pragma unroll
        for (int i = 0; i < 4; i++) {
            int64_t qi = q0 + ty + 16 * i;
            float rmax = -INFINITY;
#pragma unroll
            for (int j = 0; j < 4; j++) {
                s[i][j] = masked_score(a, b, qi, k0 + tx + 16 * j, s[i][j]);
                rmax = fmaxf(rmax, s[i][j]);
            }
            float m_new = fmaxf(m[i], row_max16(rmax));
            float m_ref = m_new == -INFINITY ? 0.0f : m_new; /* nothing visible yet: p = 0 */
            float corr = expf(m[i] - m_ref), psum = 0.0f;
#pragma unroll
            for (int j = 0; j < 4; j++) {
                float p = expf(s[i][j] - m_ref);
                Ps[(ty + 16 * i) * PSTRIDE + tx + 16 * j] = p;
                psum += p;
            }
            l[i] = l[i] * corr + row_sum16(psum);
            m[i] = m_new;
#pragma unroll
            for (int c = 0; c < NC; c++) acc[i][c] *= corr;
        }
        __syncthreads();
        accum_rows<NC>(acc, Ps, Vs, stride, hd, tx, ty);
    }

    float inv_l[4];
#pragma unroll
    for (int i = 0; i < 4; i++) inv_l[i] = l[i] > 0.0f ? 1.0f / l[i] : 0.0f;
    store_rows<NC>(a.out, a.out_dt, acc, inv_l, b, q0, a.Tq, a.Hq, h, hd, tx, ty);
    if (a.lse_out && tx == 0) {
#pragma unroll
        for (int i = 0; i < 4; i++) {
            int64_t qi = q0 + ty + 16 * i;
            if (qi < a.Tq)
                a.lse_out[(b * a.Hq + h) * a.Tq + qi] = l[i] > 0.0f ? m[i] + logf(l[i]) : -INFINITY;
        }
    }
}

/* ---- backward --------------------------------------------------------------- */

/* delta[b, h, i] = dout[b, i, h, :] . out[b, i, h, :], one warp per row. */
static __global__ void attn_delta_kernel(attn_args a, float *delta) {
    int64_t rows = a.B * a.Tq * a.Hq;
    int lane = threadIdx.x & 31;
    for (int64_t r = (int64_t)blockIdx.x * (blockDim.x / 32) + (threadIdx.x >> 5); r < rows;
         r += (int64_t)gridDim.x * (blockDim.x / 32)) {
        float s = 0.0f;
        for (int64_t d = lane; d < a.hd; d += 32)
            s += ld(a.dout, a.dout_dt, r * a.hd + d) * ld(a.fwd_out, a.fwd_out_dt, r * a.hd + d);
        s = warp_sum(s);
        int64_t h = r % a.Hq, i = (r / a.Hq) % a.Tq, b = r / (a.Hq * a.Tq);
        if (lane == 0) delta[(b * a.Hq + h) * a.Tq + i] = s;
    }
}

/* p[i][j] = exp(S - lse) for rows ty + 16i (queries from q0) and columns
 * tx + 16j (keys from k0), 0 where masked or the row saw nothing. */
static __device__ __forceinline__ void recompute_p(float p[4][4], const attn_args &a,
                                                   const float *Qs, const float *Ks,
                                                   const float *lse_s, int64_t b, int64_t q0,
                                                   int64_t k0, int tx, int ty) {
    tile_dots(p, Qs, Ks, a.stride, (int)a.hd, tx, ty);
#pragma unroll
    for (int i = 0; i < 4; i++) {
        float row_lse = lse_s[ty + 16 * i];
#pragma unroll
        for (int j = 0; j < 4; j++) {
            float sc = masked_score(a, b, q0 + ty + 16 * i, k0 + tx + 16 * j, p[i][j]);
            p[i][j] = sc == -INFINITY || row_lse == -INFINITY ? 0.0f : expf(sc - row_lse);
        }
    }
}

/* ds = p (dp - delta) where dp = dO V^T for the same tile positions. */
static __device__ __forceinline__ void p_to_ds(float p[4][4], const float *dOs, const float *Vs,
                                               const float *delta_s, int stride, int hd, int tx,
                                               int ty) {
    float dp[4][4];
    tile_dots(dp, dOs, Vs, stride, hd, tx, ty);
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) p[i][j] = p[i][j] * (dp[i][j] - delta_s[ty + 16 * i]);
}

static __device__ __forceinline__ void store_tile16(float *Ps, const float v[4][4], int tx,
                                                    int ty) {
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) Ps[(ty + 16 * i) * PSTRIDE + tx + 16 * j] = v[i][j];
}

template <int NC>
static __global__ void __launch_bounds__(ATT_THREADS) attn_bwd_dkdv_kernel(attn_args a) {
    extern __shared__ float smem[];
    const int stride = a.stride, hd = (int)a.hd, tx = threadIdx.x % 16, ty = threadIdx.x / 16;
    float *Ks = smem, *Vs = Ks + BK * stride, *Qs = Vs + BK * stride, *dOs = Qs + BQ * stride;
    float *Ps = dOs + BQ * stride, *lse_s = Ps + BQ * PSTRIDE, *delta_s = lse_s + BQ;
    const int64_t k0 = (int64_t)blockIdx.x * BK, hk = blockIdx.y, b = blockIdx.z;
    const int64_t group = a.Hq / a.Hkv;
    load_tile(Ks, a.k, a.qkv_dt, b, k0, a.Tk, a.Hkv, hk, a.hd, stride);
    load_tile(Vs, a.v, a.qkv_dt, b, k0, a.Tk, a.Hkv, hk, a.hd, stride);

    float dk[4][NC], dv[4][NC]; /* rows: keys k0 + ty + 16i; columns: tx + 16c */
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int c = 0; c < NC; c++) dk[i][c] = dv[i][c] = 0.0f;
    /* causal: queries before this one see none of these keys */
    const int64_t q_first = first_query_tile(a, k0);
    for (int64_t h = hk * group; h < (hk + 1) * group; h++) {
        for (int64_t q0 = q_first; q0 < a.Tq; q0 += BQ) {
            __syncthreads(); /* the previous tile's readers are done */
            load_tile(Qs, a.q, a.qkv_dt, b, q0, a.Tq, a.Hq, h, a.hd, stride);
            load_tile(dOs, a.dout, a.dout_dt, b, q0, a.Tq, a.Hq, h, a.hd, stride);
            load_row_stats(lse_s, delta_s, a, b, h, q0);
            __syncthreads();
            float p[4][4]; /* rows: queries q0 + ty + 16i; columns: keys k0 + tx + 16j */
            recompute_p(p, a, Qs, Ks, lse_s, b, q0, k0, tx, ty);
            store_tile16(Ps, p, tx, ty);
            __syncthreads();
            accum_transposed<NC>(dv, Ps, dOs, stride, hd, tx, ty); /* dV += P^T dO */
            p_to_ds(p, dOs, Vs, delta_s, stride, hd, tx, ty);
            __syncthreads(); /* everyone has read P */
            store_tile16(Ps, p, tx, ty);
            __syncthreads();
            accum_transposed<NC>(dk, Ps, Qs, stride, hd, tx, ty); /* dK += dS^T Q */
        }
    }
    float ones[4] = {1.0f, 1.0f, 1.0f, 1.0f}, scales[4] = {a.scale, a.scale, a.scale, a.scale};
    store_rows<NC>(a.dk, a.dk_dt, dk, scales, b, k0, a.Tk, a.Hkv, hk, hd, tx, ty);
    store_rows<NC>(a.dv, a.dv_dt, dv, ones, b, k0, a.Tk, a.Hkv, hk, hd, tx, ty);
}

template <int NC>
static __global__ void __launch_bounds__(ATT_THREADS) attn_bwd_dq_kernel(attn_args a) {
    extern __shared__ float smem[];
    const int stride = a.stride, hd = (int)a.hd, tx = threadIdx.x % 16, ty = threadIdx.x / 16;
    float *Qs = smem, *dOs = Qs + BQ * stride, *Ks = dOs + BQ * stride, *Vs = Ks + BK * stride;
    float *Ps = Vs + BK * stride, *lse_s = Ps + BQ * PSTRIDE, *delta_s = lse_s + BQ;
    const int64_t q0 = (int64_t)blockIdx.x * BQ, h = blockIdx.y, b = blockIdx.z;
    const int64_t hk = h / (a.Hq / a.Hkv);
    load_tile(Qs, a.q, a.qkv_dt, b, q0, a.Tq, a.Hq, h, a.hd, stride);
    load_tile(dOs, a.dout, a.dout_dt, b, q0, a.Tq, a.Hq, h, a.hd, stride);
    load_row_stats(lse_s, delta_s, a, b, h, q0);

    float dq[4][NC];
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int c = 0; c < NC; c++) dq[i][c] = 0.0f;
    const int64_t kend = key_end(a, q0);
    for (int64_t k0 = 0; k0 < kend; k0 += BK) {
        __syncthreads();
        load_tile(Ks, a.k, a.qkv_dt, b, k0, a.Tk, a.Hkv, hk, a.hd, stride);
        load_tile(Vs, a.v, a.qkv_dt, b, k0, a.Tk, a.Hkv, hk, a.hd, stride);
        __syncthreads();
        float p[4][4];
        recompute_p(p, a, Qs, Ks, lse_s, b, q0, k0, tx, ty);
        p_to_ds(p, dOs, Vs, delta_s, stride, hd, tx, ty);
        store_tile16(Ps, p, tx, ty);
        __syncthreads();
        accum_rows<NC>(dq, Ps, Ks, stride, hd, tx, ty); /* dQ += dS K */
    }
    float scales[4] = {a.scale, a.scale, a.scale, a.scale};
    store_rows<NC>(a.dq, a.dq_dt, dq, scales, b, q0, a.Tq, a.Hq, h, hd, tx, ty);
}

/* ---- host side ---------------------------------------------------------------- */

static size_t fwd_smem_bytes(int stride) {
    return (size_t)((BQ + 2 * BK) * stride + BQ * PSTRIDE) * sizeof(float);
}
static size_t bwd_smem_bytes(int stride) {
    return (size_t)((2 * BQ + 2 * BK) * stride + BQ * PSTRIDE + 2 * BQ) * sizeof(float);
}

void attn_allow_smem(const void *kernel, size_t bytes, int64_t hd) {
    AIMC_CHECK(bytes <= cuda_smem_optin(),
               "cuda attention: head dim %lld needs %zu bytes of shared memory per block, the GPU "
               "allows %zu",
               (long long)hd, bytes, cuda_smem_optin());
    CUDA_CHECK(
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
}

template <int NC> static void launch_fwd(const attn_args &a) {
    size_t smem = fwd_smem_bytes(a.stride);
    attn_allow_smem((const void *)attn_fwd_kernel<NC>, smem, a.hd);
    dim3 grid((unsigned)((a.Tq + BQ - 1) / BQ), (unsigned)a.Hq, (unsigned)a.B);
    attn_fwd_kernel<NC><<<grid, ATT_THREADS, smem, cuda_stream()>>>(a);
    CUDA_LAUNCH_CHECK();
}

template <int NC> static void launch_bwd(const attn_args &a) {
    size_t smem = bwd_smem_bytes(a.stride);
    if (a.Tk > 0) {
        attn_allow_smem((const void *)attn_bwd_dkdv_kernel<NC>, smem, a.hd);
        dim3 grid((unsigned)((a.Tk + BK - 1) / BK), (unsigned)a.Hkv, (unsigned)a.B);
        attn_bwd_dkdv_kernel<NC><<<grid, ATT_THREADS, smem, cuda_stream()>>>(a);
        CUDA_LAUNCH_CHECK();
    }
    if (a.Tq > 0) {
        attn_allow_smem((const void *)attn_bwd_dq_kernel<NC>, smem, a.hd);
        dim3 grid((unsigned)((a.Tq + BQ - 1) / BQ), (unsigned)a.Hq, (unsigned)a.B);
        attn_bwd_dq_kernel<NC><<<grid, ATT_THREADS, smem, cuda_stream()>>>(a);
        CUDA_LAUNCH_CHECK();
    }
}

/* Accumulator columns per thread for a head dim. */
static int head_dim_columns(int64_t hd) {
    if (hd <= 32) return 2;
    if (hd <= 64) return 4;
    if (hd <= 80) return 5;
    if (hd <= 96) return 6;
    if (hd <= 128) return 8;
    aimc_die("cuda attention: head dim %lld is not supported (at most 128)", (long long)hd);
}

/* Shapes and options shared by forward and backward. Returns 0 when there
 * is nothing to compute. */
static int attn_setup(attn_args *a, const tensor *q, const tensor *k, const tensor *v,
                      const attn_opts *o) {
    AIMC_CHECK(q->ndim == 4 && k->ndim == 4 && v->ndim == 4,
               "cuda attention: q, k, v must be [B, T, H, head_dim]");
    AIMC_CHECK(k->dt == q->dt && v->dt == q->dt, "cuda attention: q, k, v must share one dtype");
    memset(a, 0, sizeof *a);
    a->q = q->data, a->k = k->data, a->v = v->data, a->qkv_dt = q->dt;
    a->B = q->shape[0], a->Tq = q->shape[1], a->Hq = q->shape[2], a->hd = q->shape[3];
    a->Tk = k->shape[1], a->Hkv = k->shape[2];
    AIMC_CHECK(a->Hkv > 0 && a->Hq % a->Hkv == 0 && k->shape[3] == a->hd,
               "cuda attention: %lld query heads, %lld kv heads, head dims %lld / %lld",
               (long long)a->Hq, (long long)a->Hkv, (long long)a->hd, (long long)k->shape[3]);
    AIMC_CHECK(a->B <= 65535 && a->Hq <= 65535,
               "cuda attention: batch %lld or heads %lld above 65535", (long long)a->B,
               (long long)a->Hq);
    a->stride = (int)(a->hd % 2 == 0 ? a->hd + 1 : a->hd);
    a->scale = o->scale;
    a->causal = o->causal;
    a->key_mask = o->key_mask ? (const float *)o->key_mask->data : NULL;
    a->bias = o->bias ? (const float *)o->bias->data : NULL;
    return a->B > 0 && a->Hq > 0 && a->hd > 0;
}

#define DISPATCH_NC(hd, fn, args)                                                                  \
    switch (head_dim_columns(hd)) {                                                                \
    case 2:                                                                                        \
        fn<2>(args);                                                                               \
        break;                                                                                     \
    case 4:                                                                                        \
        fn<4>(args);                                                                               \
        break;                                                                                     \
    case 5:                                                                                        \
        fn<5>(args);                                                                               \
        break;                                                                                     \
    case 6:                                                                                        \
        fn<6>(args);                                                                               \
        break;                                                                                     \
    default:                                                                                       \
        fn<8>(args);                                                                               \
        break;                                                                                     \
    }

static void cuda_attention(tensor *out, tensor *lse, const tensor *q, const tensor *k,
                           const tensor *v, const attn_opts *o) {
    attn_args a;
    if (!attn_setup(&a, q, k, v, o) || a.Tq == 0) return;
    a.out = out->data, a.out_dt = out->dt;
    a.lse_out = lse ? (float *)lse->data : NULL;
    if (!attn_fwd_mma(a)) DISPATCH_NC(a.hd, launch_fwd, a);
}

static void cuda_attention_backward(tensor *dq, tensor *dk, tensor *dv, const tensor *dout,
                                    const tensor *q, const tensor *k, const tensor *v,
                                    const tensor *out, const tensor *lse, const attn_opts *o) {
    attn_args a;
    if (!attn_setup(&a, q, k, v, o)) return;
    AIMC_CHECK(lse && lse->dt == DT_F32,
               "cuda attention_backward: the forward's f32 lse is required");
    a.dout = dout->data, a.dout_dt = dout->dt;
    a.fwd_out = out->data, a.fwd_out_dt = out->dt;
    a.lse = (const float *)lse->data;
    a.dq = dq->data, a.dq_dt = dq->dt;
    a.dk = dk->data, a.dk_dt = dk->dt;
    a.dv = dv->data, a.dv_dt = dv->dt;
    int64_t rows = a.B * a.Tq * a.Hq;
    float *delta = (float *)cuda_tmp_alloc((size_t)(rows > 0 ? rows : 1) * sizeof(float));
    a.delta = delta;
    if (rows > 0) {
        attn_delta_kernel<<<grid_blocks(rows, 8), 256, 0, cuda_stream()>>>(a, delta);
        CUDA_LAUNCH_CHECK();
    }
    if (!attn_bwd_mma(a)) DISPATCH_NC(a.hd, launch_bwd, a);
    cuda_tmp_free(delta);
}

void cuda_fill_attention(backend *b) {
    b->attention = cuda_attention;
    b->attention_backward = cuda_attention_backward;
}
