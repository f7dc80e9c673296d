/* Matmul through cuBLASLt, and the bias gradient.
 *
 * Layout trick: aimc's matrices are row-major and cuBLASLt's are
 * column-major. A row-major [M,N] matrix is the column-major [N,M] one, so
 * out^T = op(b)^T op(a)^T is computed with b as cuBLASLt's A operand and a as
 * its B operand; no data moves.
 *
 * Precision: compute type CUBLAS_COMPUTE_32F (f32 accumulation; f32 inputs
 * get true f32 math, never TF32), f32 alpha/beta. Type combinations run
 * directly: a, b f32 -> out f32; a, b bf16 (or both f16) -> out of that type
 * or f32. Any other combination (e.g. bf16 activations times f32 master
 * weights), and any call for which cuBLASLt finds no algorithm (odd pointer
 * alignment of a row view), goes through f32 copies in aligned temporaries:
 * exact, slower, and rare in aimc (the trainable projector is small).
 * The bias is fused as cuBLASLt's BIAS epilogue when its dtype equals out's
 * and it is 16-byte aligned (and cuBLASLt has an algorithm with it), else
 * added by a small kernel after the product.
 *
 * Plans (descriptors, layouts and the heuristic's algorithm) are cached per
 * shape, type, transpose and pointer-alignment key, so steady-state calls
 * cost one cublasLtMatmul. The heuristic is told the real alignment of each
 * pointer (row views of a tensor need not be 256-byte aligned).
 *
 * bias_grad: reduce.cu's deterministic column sum. */
#include "cuda_common.cuh"
#include <string.h>

/* ---- plan cache ---------------------------------------------------------- */

typedef struct gemm_key {
    int64_t m, n, k;
    int trans_a, trans_b;
    cudaDataType_t ab_type, out_type;
    int bias_epilogue;
    unsigned align_a, align_b, align_out, align_bias;
} gemm_key;

typedef struct gemm_plan {
    gemm_key key;
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t lay_a, lay_b, lay_out; /* cuBLASLt's A (= our b), B (= our a), C/D */
    cublasLtMatmulAlgo_t algo;
    int used;
    int no_algo; /* the heuristic found nothing for this key (cached so it is asked once) */
} gemm_plan;

enum { PLAN_CACHE = 64 };
static gemm_plan g_plans[PLAN_CACHE];
static int g_next_evict;

static cudaDataType_t cuda_type(dtype dt) {
    switch (dt) {
    case DT_BF16:
        return CUDA_R_16BF;
    case DT_F16:
        return CUDA_R_16F;
    default:
        return CUDA_R_32F;
    }
}

/* Largest power of two (up to 256) dividing the address. */
static unsigned ptr_alignment(const void *p) {
    uintptr_t u = (uintptr_t)p;
    unsigned a = 1;
    while (a < 256 && (u & (2 * a - 1)) == 0) a *= 2;
    return a;
}

static void destroy_plan(gemm_plan *p) {
    if (!p->used) return;
    CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(p->lay_a));
    CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(p->lay_b));
    CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(p->lay_out));
    CUBLAS_CHECK(cublasLtMatmulDescDestroy(p->desc));
    p->used = 0;
}

/* Column-major layout of a stored matrix with `rows` rows (its leading
 * dimension, since the data is contiguous) and `cols` columns. */
static cublasLtMatrixLayout_t make_layout(cudaDataType_t t, int64_t rows, int64_t cols) {
    cublasLtMatrixLayout_t l;
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&l, t, (uint64_t)rows, (uint64_t)cols, rows));
    return l;
}

/* Asks the heuristic for the best algorithm under the real pointer
 * alignments; returns 0 when there is none. */
static int pick_algo(gemm_plan *p, const gemm_key *k) {
    cublasLtMatmulPreference_t pref;
    CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    size_t ws_bytes;
    cuda_lt_workspace(&ws_bytes);
    uint64_t ws = ws_bytes;
    uint32_t al_a = k->align_b, al_b = k->align_a, al_c = k->align_out; /* cuBLASLt's A is our b */
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_a, sizeof al_a));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_b, sizeof al_b));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_c, sizeof al_c));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_c, sizeof al_c));
    cublasLtMatmulHeuristicResult_t res;
    int found = 0;
    cublasStatus_t st =
        cublasLtMatmulAlgoGetHeuristic(cuda_lt_handle(), p->desc, p->lay_a, p->lay_b, p->lay_out,
                                       p->lay_out, pref, 1, &res, &found);
    CUBLAS_CHECK(cublasLtMatmulPreferenceDestroy(pref));
    if (st == CUBLAS_STATUS_NOT_SUPPORTED) return 0; /* how it reports "no algorithm" */
    CUBLAS_CHECK(st);
    if (found < 1) return 0;
    p->algo = res.algo;
    return 1;
}

/* bias: the call's bias pointer (or NULL; 16-byte aligned, see cuda_gemm).
 * Returns 0 when cuBLASLt has no algorithm. */
static int build_plan(gemm_plan *p, const gemm_key *k, const void *bias) {
    p->key = *k;
    CUBLAS_CHECK(cublasLtMatmulDescCreate(&p->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    /* cuBLASLt's A is our b: stored col-major [N,K] (not transposed) or [K,N]. */
    cublasOperation_t op_a = k->trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasOperation_t op_b = k->trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_a, sizeof op_a));
    CUBLAS_CHECK(
        cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_b, sizeof op_b));
    if (k->bias_epilogue) {
        cublasLtEpilogue_t epi =
            CUBLASLT_EPILOGUE_BIAS; /* bias has one entry per row of D = our N */
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi,
                                                    sizeof epi));
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                    &bias, sizeof bias));
    }
    p->lay_a =
        k->trans_b ? make_layout(k->ab_type, k->k, k->n) : make_layout(k->ab_type, k->n, k->k);
    p->lay_b =
        k->trans_a ? make_layout(k->ab_type, k->m, k->k) : make_layout(k->ab_type, k->k, k->m);
    p->lay_out = make_layout(k->out_type, k->n, k->m);
    p->used = 1;
    p->no_algo = !pick_algo(p, k);
    return !p->no_algo;
}

/* The cached plan for k (built on first use), or NULL when cuBLASLt has no
 * algorithm for it. */
static gemm_plan *get_plan(const gemm_key *k, const void *bias) {
    for (int i = 0; i < PLAN_CACHE; i++)
        if (g_plans[i].used && !memcmp(&g_plans[i].key, k, sizeof *k))
            return g_plans[i].no_algo ? NULL : &g_plans[i];
    gemm_plan *p = &g_plans[g_next_evict];
    g_next_evict = (g_next_evict + 1) % PLAN_CACHE;
    destroy_plan(p);
    return build_plan(p, k, bias) ? p : NULL;
}

/* ---- small kernels -------------------------------------------------------- */

/* out[i, j] = beta * out[i, j] + bias[j] (either part optional): the K = 0
 * product and the bias when it cannot be an epilogue. beta == 0 never reads
 * out (it may hold garbage). */
static __global__ void scale_add_bias_kernel(void *out, dtype out_dt, float beta, int read_out,
                                             const void *bias, dtype bias_dt, int64_t m,
                                             int64_t n) {
    int64_t total = m * n;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x) {
        float v = read_out ? beta * ld(out, out_dt, i) : 0.0f;
        if (bias) v += ld(bias, bias_dt, i % n);
        st(out, out_dt, i, v);
    }
}

static void scale_add_bias(void *out, dtype out_dt, float beta, int read_out, const void *bias,
                           dtype bias_dt, int64_t m, int64_t n) {
    scale_add_bias_kernel<<<grid_blocks(m * n, 256), 256, 0, cuda_stream()>>>(
        out, out_dt, beta, read_out, bias, bias_dt, m, n);
    CUDA_LAUNCH_CHECK();
}

/* ---- the product ----------------------------------------------------------- */

static gemm_key make_key(dtype out_dt, const void *out, const void *a, const void *b, dtype ab_dt,
                         const void *bias, int64_t m, int64_t n, int64_t k, int trans_a,
                         int trans_b) {
    gemm_key key;
    memset(&key, 0, sizeof key); /* padding bytes take part in the memcmp */
    key.m = m, key.n = n, key.k = k, key.trans_a = trans_a, key.trans_b = trans_b;
    key.ab_type = cuda_type(ab_dt), key.out_type = cuda_type(out_dt);
    key.bias_epilogue = bias != NULL;
    key.align_a = ptr_alignment(a), key.align_b = ptr_alignment(b),
    key.align_out = ptr_alignment(out);
    key.align_bias = bias ? ptr_alignment(bias) : 0;
    return key;
}

/* One cublasLtMatmul on a supported type combination, with the bias as an
 * epilogue when given and cuBLASLt has an algorithm for that. Returns 1 when
 * the bias was applied, 0 when the caller must add it, -1 (nothing done)
 * when cuBLASLt has no algorithm at all for these shapes and alignments. */
static int lt_matmul(void *out, dtype out_dt, const void *a, const void *b, dtype ab_dt,
                     const void *bias, int64_t m, int64_t n, int64_t k, int trans_a, int trans_b,
                     float alpha, float beta) {
    gemm_key key = make_key(out_dt, out, a, b, ab_dt, bias, m, n, k, trans_a, trans_b);
    gemm_plan *p = get_plan(&key, bias);
    if (!p && bias) { /* no algorithm with the epilogue: plain product, bias added after */
        bias = NULL;
        key = make_key(out_dt, out, a, b, ab_dt, NULL, m, n, k, trans_a, trans_b);
        p = get_plan(&key, NULL);
    }
    if (!p) return -1;
    if (bias)
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                    &bias, sizeof bias));
    size_t ws_bytes;
    void *ws = cuda_lt_workspace(&ws_bytes);
    CUBLAS_CHECK(cublasLtMatmul(cuda_lt_handle(), p->desc, &alpha, b, p->lay_a, a, p->lay_b, &beta,
                                out, p->lay_out, out, p->lay_out, &p->algo, ws, ws_bytes,
                                cuda_stream()));
    return bias != NULL;
}

static int direct_combination(dtype a_dt, dtype b_dt, dtype out_dt) {
    if (a_dt != b_dt) return 0;
    if (a_dt == DT_F32) return out_dt == DT_F32;
    return out_dt == a_dt || out_dt == DT_F32;
}

/* The product through f32 copies of every operand in fresh (256-byte
 * aligned) temporaries: for type combinations cuBLASLt lacks, and for
 * pointers whose alignment leaves it without an algorithm. Exact, slower. */
static void gemm_via_f32(void *out, dtype out_dt, const void *a, dtype a_dt, const void *b,
                         dtype b_dt, const void *bias, dtype bias_dt, int64_t m, int64_t n,
                         int64_t k, int trans_a, int trans_b, float alpha, float beta) {
    void *ta = cuda_tmp_alloc((size_t)(m * k) * sizeof(float));
    void *tb = cuda_tmp_alloc((size_t)(k * n) * sizeof(float));
    void *tout = cuda_tmp_alloc((size_t)(m * n) * sizeof(float));
    cuda_convert_raw(ta, DT_F32, a, a_dt, m * k);
    cuda_convert_raw(tb, DT_F32, b, b_dt, k * n);
    if (beta != 0.0f) cuda_convert_raw(tout, DT_F32, out, out_dt, m * n);
    int applied =
        lt_matmul(tout, DT_F32, ta, tb, DT_F32, NULL, m, n, k, trans_a, trans_b, alpha, beta);
    AIMC_CHECK(applied >= 0,
               "cuda matmul: cuBLASLt has no f32 algorithm for M=%lld N=%lld K=%lld "
               "trans_a=%d trans_b=%d",
               (long long)m, (long long)n, (long long)k, trans_a, trans_b);
    if (bias) scale_add_bias(tout, DT_F32, 1.0f, 1, bias, bias_dt, m, n);
    cuda_convert_raw(out, out_dt, tout, DT_F32, m * n);
    cuda_tmp_free(ta);
    cuda_tmp_free(tb);
    cuda_tmp_free(tout);
}

void cuda_gemm(void *out, dtype out_dt, const void *a, dtype a_dt, const void *b, dtype b_dt,
               const void *bias, dtype bias_dt, int64_t m, int64_t n, int64_t k, int trans_a,
               int trans_b, float alpha, float beta) {
    if (m <= 0 || n <= 0) return;
    if (k <= 0) { /* empty product: out = beta out + bias */
        scale_add_bias(out, out_dt, beta, beta != 0.0f, bias, bias_dt, m, n);
        return;
    }
    if (direct_combination(a_dt, b_dt, out_dt)) {
        /* The epilogue reads the bias with vector loads: only a 16-byte aligned
         * one (a sliced bias may be less, and the heuristic is not told: the
         * "misaligned address" fault of pytorch/pytorch#194497). */
        const void *epi_bias =
            bias && bias_dt == out_dt && ptr_alignment(bias) >= 16 ? bias : NULL;
        int applied =
            lt_matmul(out, out_dt, a, b, a_dt, epi_bias, m, n, k, trans_a, trans_b, alpha, beta);
        if (applied >= 0) {
            if (bias && !applied) scale_add_bias(out, out_dt, 1.0f, 1, bias, bias_dt, m, n);
            return;
        }
    }
    gemm_via_f32(out, out_dt, a, a_dt, b, b_dt, bias, bias_dt, m, n, k, trans_a, trans_b, alpha,
                 beta);
}

/* Product of every dim but the last. */
static int64_t leading_rows(const tensor *t) {
    int64_t r = 1;
    for (int i = 0; i < t->ndim - 1; i++) r *= t->shape[i];
    return r;
}

static void cuda_matmul(tensor *out, const tensor *a, const tensor *b, const tensor *bias,
                        int trans_a, int trans_b, float beta) {
    int64_t m = trans_a ? tensor_cols(a) : leading_rows(a);
    int64_t k = trans_a ? leading_rows(a) : tensor_cols(a);
    int64_t n = trans_b ? leading_rows(b) : tensor_cols(b);
    AIMC_CHECK(tensor_numel(out) == m * n,
               "cuda matmul: out has %lld elements, expected %lld x %lld",
               (long long)tensor_numel(out), (long long)m, (long long)n);
    cuda_gemm(out->data, out->dt, a->data, a->dt, b->data, b->dt, bias ? bias->data : NULL,
              bias ? bias->dt : DT_F32, m, n, k, trans_a, trans_b, 1.0f, beta);
}

static void cuda_bias_grad(tensor *db, const tensor *dy, float beta) {
    int64_t cols = tensor_cols(dy);
    int64_t rows = cols ? tensor_numel(dy) / cols : 0;
    cuda_colsum(db->data, db->dt, beta, COLSUM_DY, dy->data, dy->dt, NULL, DT_F32, NULL, NULL, rows,
                cols);
}

void cuda_fill_matmul(backend *b) {
    b->matmul = cuda_matmul;
    b->bias_grad = cuda_bias_grad;
}
