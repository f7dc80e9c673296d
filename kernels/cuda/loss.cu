/* Fused softmax cross-entropy (dlogits written in place) and the symmetric
 * InfoNCE (CLIP) loss.
 *
 * Cross-entropy strategy: one block per row of f32 logits. Pass 1 reads the
 * row once keeping, per thread, a running max m and s = sum exp(x - m)
 * (rescaled when m grows: "online softmax"); the (m, s) pairs are merged
 * across the block in a fixed order. Pass 2 re-reads the row (from L2) and
 * writes (softmax - onehot) * dscale over it. The target's logit is read by
 * thread 0 before the merge barrier, i.e. before any thread overwrites the
 * row. s is kept in f64 (as the cpu reference does); exp is f32.
 *
 * InfoNCE is composed: two cuBLASLt products give the logit blocks
 * s img txt_all^T and s txt img_all^T ([b, N] each, one [2b, N] temporary),
 * the same row kernel turns them into gradients in place (also summing
 * g * logit per row for d logit_scale), a one-block kernel adds the per-row
 * losses and those sums in a fixed order, and four more products give the
 * feature gradients. Deterministic: no atomics anywhere. */
#include "cuda_common.cuh"

enum { CE_THREADS = 256, IGNORE_INDEX = -100 };

/* Merges (m2, s2) into (m, s): both describe sum exp(x - m) over a subset. */
static __device__ __forceinline__ void merge_ms(float &m, double &s, float m2, double s2) {
    float mm = fmaxf(m, m2);
    if (mm == -INFINITY) return; /* both empty: s stays 0 */
    s = (m == -INFINITY ? 0.0 : s * (double)expf(m - mm)) +
        (m2 == -INFINITY ? 0.0 : s2 * (double)expf(m2 - mm));
    m = mm;
}

/* Adds one logit to a thread's running (m, s). NaN makes s NaN. */
static __device__ __forceinline__ void online_add(float &m, double &s, float v) {
    if (v > m) {
        s = s * (double)expf(m - v) + 1.0; /* m = -inf at first: 0 * 0 + 1 */
        m = v;
    } else if (v != -INFINITY) { /* -inf adds nothing (and -inf - -inf would be NaN) */
        s += (double)expf(v - m);
    }
}

/* Block-wide (m, s) of the row; every thread gets the same values. */
static __device__ void block_merge_ms(float &m, double &s) {
    __shared__ float sm_m[32];
    __shared__ double sm_s[32];
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        float m2 = __shfl_xor_sync(0xffffffffu, m, o);
        double s2 = __shfl_xor_sync(0xffffffffu, s, o);
        merge_ms(m, s, m2, s2); /* symmetric, so both lanes of a pair agree */
    }
    int warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    __syncthreads(); /* a previous row's readers are done with sm_m / sm_s */
    if ((threadIdx.x & 31) == 0) sm_m[warp] = m, sm_s[warp] = s;
    __syncthreads();
    m = -INFINITY, s = 0.0;
    for (int w = 0; w < nwarps; w++) merge_ms(m, s, sm_m[w], sm_s[w]); /* same order everywhere */
}

/* Rows of f32 logits [rows, V] -> dlogits in place, loss[row]. The target of
 * a row is targets[row], or offset + row % period when targets is NULL
 * (InfoNCE). gl_sum (optional) gets sum_j dlogit_j * logit_j per row. */
static __global__ void __launch_bounds__(CE_THREADS)
    ce_rows_kernel(float *logits, int64_t V, int64_t rows, const int32_t *targets, int64_t period,
                   int64_t offset, float dscale, float *loss, float *gl_sum, int *err) {
    __shared__ float sm_target_logit;
    __shared__ double sm_red[32];
    for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
        float *x = logits + row * V;
        int64_t t = targets ? (int64_t)targets[row] : offset + row % period;
        if (t == IGNORE_INDEX || t < 0 || t >= V) { /* same branch for the whole block */
            float fill = t == IGNORE_INDEX ? 0.0f : NAN;
            if (t != IGNORE_INDEX && threadIdx.x == 0) atomicOr(err, CUDA_ERR_CE_TARGET);
            for (int64_t j = threadIdx.x; j < V; j += blockDim.x) x[j] = fill;
            if (threadIdx.x == 0) {
                loss[row] = fill;
                if (gl_sum) gl_sum[row] = fill;
            }
            continue;
        }
        float m = -INFINITY;
        double s = 0.0;
        for (int64_t j = (int64_t)threadIdx.x * 8; j < V; j += (int64_t)blockDim.x * 8) {
            float v[8];
            load8(x, DT_F32, j, V, v);
#pragma unroll
            for (int k = 0; k < 8; k++)
                if (j + k < V) online_add(m, s, v[k]);
        }
        if (threadIdx.x == 0) sm_target_logit = x[t]; /* read before the barrier in the merge */
        block_merge_ms(m, s);
        float xt = sm_target_logit, p_scale = (float)(1.0 / s) * dscale;
        double gl = 0.0;
        for (int64_t j = (int64_t)threadIdx.x * 8; j < V; j += (int64_t)blockDim.x * 8) {
            float v[8], g[8];
            load8(x, DT_F32, j, V, v);
#pragma unroll
            for (int k = 0; k < 8; k++) {
                g[k] = expf(v[k] - m) * p_scale;
                /* p - 1 in f64: when the target dominates, p rounds to 1 in f32 */
                if (j + k == t) g[k] = (float)(((double)expf(v[k] - m) / s - 1.0) * (double)dscale);
                if (gl_sum && j + k < V) gl += (double)g[k] * v[k];
            }
            store8(x, DT_F32, j, V, g);
        }
        if (gl_sum) gl = block_sum(gl, sm_red);
        if (threadIdx.x == 0) {
            loss[row] = (float)(log(s) + (double)m - (double)xt);
            if (gl_sum) gl_sum[row] = (float)gl;
        }
        __syncthreads(); /* sm_target_logit is rewritten for the next row */
    }
}

static void ce_rows(float *logits, int64_t V, int64_t rows, const int32_t *targets, int64_t period,
                    int64_t offset, float dscale, float *loss, float *gl_sum) {
    if (rows <= 0) return;
    int64_t blocks = rows < 65535 * 16 ? rows : 65535 * 16; /* the kernel loops over the rest */
    ce_rows_kernel<<<(unsigned)blocks, CE_THREADS, 0, cuda_stream()>>>(
        logits, V, rows, targets, period, offset, dscale, loss, gl_sum, cuda_error_flag());
    CUDA_LAUNCH_CHECK();
}

static void cuda_cross_entropy(tensor *loss, tensor *logits, const tensor *targets, float dscale) {
    AIMC_CHECK(logits->dt == DT_F32 && loss->dt == DT_F32,
               "cuda cross_entropy: logits and loss must be f32");
    int64_t V = tensor_cols(logits), rows = V ? tensor_numel(logits) / V : 0;
    ce_rows((float *)logits->data, V, rows, (const int32_t *)targets->data, 1, 0, dscale,
            (float *)loss->data, NULL);
}

/* ---- InfoNCE ---------------------------------------------------------------- */

/* out[0] = sum of a[0..n), out2[0] = sum of b[0..n): one block, fixed order. */
static __global__ void sum_two_kernel(float *out, const float *a, float *out2, const float *b,
                                      int64_t n) {
    __shared__ double red[32];
    double sa = 0.0, sb = 0.0;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) sa += a[i], sb += b[i];
    sa = block_sum(sa, red);
    sb = block_sum(sb, red);
    if (threadIdx.x == 0) {
        if (out) out[0] = (float)sa;
        if (out2) out2[0] = (float)sb;
    }
}

/* out [rows of r, rows of c] f32 = s r c^T: one block of logits. */
static void logit_block(float *out, const tensor *r, const tensor *c, float s) {
    cuda_gemm(out, DT_F32, r->data, r->dt, c->data, c->dt, NULL, DT_F32, r->shape[0], c->shape[0],
              tensor_cols(r), 0, 1, s, 0.0f);
}

/* out = s op(g) x for f32 logit gradients g [b, N]: g x gives the rows'
 * gradients [b, D] (x = the columns' features), g^T x (trans_g) the
 * columns' gradients [N, D] (x = the rows' features). */
static void feature_grad(tensor *out, const float *g, int trans_g, const tensor *x, float s) {
    if (!out) return;
    int64_t m = tensor_rows_count(out), k = x->shape[0];
    cuda_gemm(out->data, out->dt, g, DT_F32, x->data, x->dt, NULL, DT_F32, m, tensor_cols(x), k,
              trans_g, 0, s, 0.0f);
}

static void cuda_infonce(tensor *loss, tensor *d_img, tensor *d_txt, tensor *d_img_all,
                         tensor *d_txt_all, tensor *d_logit_scale, const tensor *img,
                         const tensor *txt, const tensor *img_all, const tensor *txt_all,
                         int64_t offset, float logit_scale, float dscale) {
    int64_t b = img->shape[0], N = img_all->shape[0];
    AIMC_CHECK(offset >= 0 && offset + b <= N,
               "cuda infonce: local rows [%lld, %lld) fall outside the %lld gathered columns",
               (long long)offset, (long long)(offset + b), (long long)N);
    if (b <= 0) return;
    float s = expf(logit_scale);
    float *logits = (float *)cuda_tmp_alloc((size_t)(2 * b * N) * sizeof(float));
    float *row_loss = (float *)cuda_tmp_alloc((size_t)(2 * b) * sizeof(float));
    float *row_gl = (float *)cuda_tmp_alloc((size_t)(2 * b) * sizeof(float));
    float *i2t = logits, *t2i = logits + b * N;
    logit_block(i2t, img, txt_all, s); /* image -> text */
    logit_block(t2i, txt, img_all, s); /* text -> image */
    /* both blocks at once: row r's positive is column offset + r % b */
    ce_rows(logits, N, 2 * b, NULL, b, offset, dscale, row_loss, row_gl);
    sum_two_kernel<<<1, 1024, 0, cuda_stream()>>>(
        loss ? (float *)loss->data : NULL, row_loss,
        d_logit_scale ? (float *)d_logit_scale->data : NULL, row_gl, 2 * b);
    CUDA_LAUNCH_CHECK();
    feature_grad(d_img, i2t, 0, txt_all, s);
    feature_grad(d_txt_all, i2t, 1, img, s);
    feature_grad(d_txt, t2i, 0, img_all, s);
    feature_grad(d_img_all, t2i, 1, txt, s);
    cuda_tmp_free(logits);
    cuda_tmp_free(row_loss);
    cuda_tmp_free(row_gl);
}

void cuda_fill_loss(backend *b) {
    b->cross_entropy = cuda_cross_entropy;
    b->infonce = cuda_infonce;
}
