/* cuda-emu: cuBLASLt's matmul as a float64 loop, following the semantics
 * cuBLASLt documents (column-major matrices, element (r, c) of a layout at
 * r + c * ld):
 *     D = alpha op(A) op(B) + beta C (+ bias[r] with CUBLASLT_EPILOGUE_BIAS),
 * op(A) m x k, op(B) k x n, C and D m x n, the bias of D's type, alpha and
 * beta f32 host values, C not read when beta is 0, C and D may be the same
 * matrix. Inconsistent shapes are CUBLAS_STATUS_INVALID_VALUE.
 *
 * The heuristic refuses (CUBLAS_STATUS_NOT_SUPPORTED) a pointer aligned to
 * less than AIMC_CUDA_EMU_LT_ALIGN bytes (default 16), so aimc's fallback
 * path is exercised; `make test-cuda-emu` also runs test_cuda_ops with 2,
 * where every element-aligned pointer gets an algorithm, as on a GPU. The
 * algorithm remembers the alignments it was chosen for, and a matmul handed
 * less aligned pointers stops the process, as does a bias epilogue whose
 * bias is aligned to less than 16 bytes (its vector loads may fault on a
 * GPU). */
#include "emu_internal.h"
#include <stdlib.h>

struct emu_lt {
    int unused;
};
struct emu_lt_desc {
    cublasOperation_t trans_a, trans_b;
    cublasLtEpilogue_t epilogue;
    const void *bias;
};
struct emu_lt_layout {
    cudaDataType_t type;
    uint64_t rows, cols;
    int64_t ld;
};
struct emu_lt_pref {
    uint32_t align[4]; /* A, B, C, D */
};

static size_t type_size(cudaDataType_t t) { return t == CUDA_R_32F ? 4 : 2; }

static double load(const void *p, cudaDataType_t t, uint64_t i) {
    if (t == CUDA_R_32F) return ((const float *)p)[i];
    unsigned short bits = ((const unsigned short *)p)[i];
    return t == CUDA_R_16F ? __half2float(__ushort_as_half(bits)) : __uint_as_float((unsigned)bits << 16);
}

static void store(void *p, cudaDataType_t t, uint64_t i, double v) {
    float f = (float)v;
    if (t == CUDA_R_32F)
        ((float *)p)[i] = f;
    else
        ((unsigned short *)p)[i] = t == CUDA_R_16F ? __half_as_ushort(__float2half_rn(f))
                                                   : __bfloat16_as_ushort(__float2bfloat16_rn(f));
}

static bool known_type(cudaDataType_t t) {
    return t == CUDA_R_32F || t == CUDA_R_16F || t == CUDA_R_16BF;
}

/* The product's m, n, k from the layouts, or false when they disagree. */
static bool shapes(const emu_lt_desc *d, const emu_lt_layout *a, const emu_lt_layout *b,
                   const emu_lt_layout *c, const emu_lt_layout *dd, uint64_t *m, uint64_t *n,
                   uint64_t *k) {
    const emu_lt_layout *all[4] = {a, b, c, dd};
    for (const emu_lt_layout *l : all)
        if (!l || !known_type(l->type) || l->ld < (int64_t)l->rows || !l->rows || !l->cols)
            return false;
    *m = dd->rows, *n = dd->cols;
    uint64_t a_rows = d->trans_a == CUBLAS_OP_N ? a->rows : a->cols;
    *k = d->trans_a == CUBLAS_OP_N ? a->cols : a->rows;
    uint64_t b_rows = d->trans_b == CUBLAS_OP_N ? b->rows : b->cols;
    uint64_t b_cols = d->trans_b == CUBLAS_OP_N ? b->cols : b->rows;
    return a_rows == *m && b_rows == *k && b_cols == *n && c->rows == *m && c->cols == *n &&
           a->type == b->type && c->type == dd->type;
}

static uint64_t span(const emu_lt_layout *l) { return (l->cols - 1) * (uint64_t)l->ld + l->rows; }

static uint32_t min_alignment(void) {
    const char *s = getenv("AIMC_CUDA_EMU_LT_ALIGN");
    long v = s && *s ? strtol(s, NULL, 10) : 16;
    return v > 0 ? (uint32_t)v : 16;
}

/* Largest power of two (up to 256) dividing the address. */
static uint64_t alignment_of(const void *p) {
    uint64_t u = (uintptr_t)p, a = 1;
    while (a < 256 && (u & (2 * a - 1)) == 0) a *= 2;
    return a;
}

/* Dies when an operand is less aligned than the algorithm was chosen for. */
static void check_promised(const cublasLtMatmulAlgo_t *algo, const void *const ptrs[4]) {
    static const char *const names[4] = {"A", "B", "C", "D"};
    for (int i = 0; i < 4; i++)
        if (algo && ptrs[i] && alignment_of(ptrs[i]) < algo->data[i])
            emu_die("cublasLtMatmul: %s at %p is aligned to %llu bytes; its algorithm was chosen "
                    "for %llu",
                    names[i], ptrs[i], (unsigned long long)alignment_of(ptrs[i]),
                    (unsigned long long)algo->data[i]);
}

extern "C" {

const char *cublasLtGetStatusString(cublasStatus_t st) {
    switch (st) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    }
    return "CUBLAS_STATUS_UNKNOWN";
}

cublasStatus_t cublasLtCreate(cublasLtHandle_t *h) {
    static emu_lt handle;
    *h = &handle;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t *d, cublasComputeType_t compute,
                                        cudaDataType_t scale) {
    if (compute != CUBLAS_COMPUTE_32F || scale != CUDA_R_32F) return CUBLAS_STATUS_NOT_SUPPORTED;
    *d = new emu_lt_desc{CUBLAS_OP_N, CUBLAS_OP_N, CUBLASLT_EPILOGUE_DEFAULT, NULL};
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t d) {
    delete d;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t d,
                                              cublasLtMatmulDescAttributes_t attr,
                                              const void *buf, size_t size) {
    switch (attr) {
    case CUBLASLT_MATMUL_DESC_TRANSA:
    case CUBLASLT_MATMUL_DESC_TRANSB: {
        int32_t op;
        if (size != sizeof op) return CUBLAS_STATUS_INVALID_VALUE;
        memcpy(&op, buf, sizeof op);
        if (op != CUBLAS_OP_N && op != CUBLAS_OP_T) return CUBLAS_STATUS_INVALID_VALUE;
        (attr == CUBLASLT_MATMUL_DESC_TRANSA ? d->trans_a : d->trans_b) = (cublasOperation_t)op;
        return CUBLAS_STATUS_SUCCESS;
    }
    case CUBLASLT_MATMUL_DESC_EPILOGUE: {
        uint32_t e;
        if (size != sizeof e) return CUBLAS_STATUS_INVALID_VALUE;
        memcpy(&e, buf, sizeof e);
        if (e != CUBLASLT_EPILOGUE_DEFAULT && e != CUBLASLT_EPILOGUE_BIAS)
            return CUBLAS_STATUS_NOT_SUPPORTED;
        d->epilogue = (cublasLtEpilogue_t)e;
        return CUBLAS_STATUS_SUCCESS;
    }
    case CUBLASLT_MATMUL_DESC_BIAS_POINTER:
        if (size != sizeof d->bias) return CUBLAS_STATUS_INVALID_VALUE;
        memcpy(&d->bias, buf, sizeof d->bias);
        return CUBLAS_STATUS_SUCCESS;
    }
    return CUBLAS_STATUS_INVALID_VALUE;
}

cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t *l, cudaDataType_t type,
                                          uint64_t rows, uint64_t cols, int64_t ld) {
    if (!known_type(type)) return CUBLAS_STATUS_NOT_SUPPORTED;
    *l = new emu_lt_layout{type, rows, cols, ld};
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t l) {
    delete l;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t *p) {
    *p = new emu_lt_pref{{256, 256, 256, 256}};
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t p) {
    delete p;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t p,
                                                    cublasLtMatmulPreferenceAttributes_t attr,
                                                    const void *buf, size_t size) {
    if (attr == CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES)
        return size == sizeof(uint64_t) ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_INVALID_VALUE;
    int which = attr - CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES;
    if (which < 0 || which > 3 || size != sizeof(uint32_t)) return CUBLAS_STATUS_INVALID_VALUE;
    memcpy(&p->align[which], buf, sizeof(uint32_t));
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t h, cublasLtMatmulDesc_t d,
                                              cublasLtMatrixLayout_t a, cublasLtMatrixLayout_t b,
                                              cublasLtMatrixLayout_t c, cublasLtMatrixLayout_t dd,
                                              cublasLtMatmulPreference_t pref, int requested,
                                              cublasLtMatmulHeuristicResult_t *results,
                                              int *found) {
    uint64_t m, n, k;
    *found = 0;
    if (!h || !d || !pref || requested < 1 || !shapes(d, a, b, c, dd, &m, &n, &k))
        return CUBLAS_STATUS_INVALID_VALUE;
    for (uint32_t al : pref->align)
        if (al < min_alignment()) return CUBLAS_STATUS_NOT_SUPPORTED;
    memset(&results[0], 0, sizeof results[0]);
    for (int i = 0; i < 4; i++) results[0].algo.data[i] = pref->align[i]; /* A, B, C, D */
    *found = 1;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmul(cublasLtHandle_t h, cublasLtMatmulDesc_t d, const void *alpha,
                              const void *a, cublasLtMatrixLayout_t la, const void *b,
                              cublasLtMatrixLayout_t lb, const void *beta, const void *c,
                              cublasLtMatrixLayout_t lc, void *dd, cublasLtMatrixLayout_t ld,
                              const cublasLtMatmulAlgo_t *algo, void *workspace,
                              size_t workspace_bytes, cudaStream_t s) {
    (void)workspace, (void)workspace_bytes, (void)s;
    uint64_t m, n, k;
    if (!h || !d || !shapes(d, la, lb, lc, ld, &m, &n, &k)) return CUBLAS_STATUS_INVALID_VALUE;
    float al, be;
    memcpy(&al, alpha, sizeof al);
    memcpy(&be, beta, sizeof be);
    emu_require_device(a, span(la) * type_size(la->type), "cublasLtMatmul A");
    emu_require_device(b, span(lb) * type_size(lb->type), "cublasLtMatmul B");
    emu_require_device(dd, span(ld) * type_size(ld->type), "cublasLtMatmul D");
    if (be != 0.0f) emu_require_device(c, span(lc) * type_size(lc->type), "cublasLtMatmul C");
    if (d->epilogue == CUBLASLT_EPILOGUE_BIAS) {
        emu_require_device(d->bias, m * type_size(ld->type), "cublasLtMatmul bias");
        if (alignment_of(d->bias) < 16)
            emu_die("cublasLtMatmul: the BIAS epilogue's bias at %p is aligned to %llu bytes "
                    "(its vector loads may fault on a GPU: 16 needed)",
                    d->bias, (unsigned long long)alignment_of(d->bias));
    }
    const void *const ptrs[4] = {a, b, be != 0.0f ? c : NULL, dd};
    check_promised(algo, ptrs);
    for (uint64_t j = 0; j < n; j++)
        for (uint64_t i = 0; i < m; i++) {
            double acc = 0.0;
            for (uint64_t p = 0; p < k; p++) {
                uint64_t ai = d->trans_a == CUBLAS_OP_N ? i + p * la->ld : p + i * la->ld;
                uint64_t bi = d->trans_b == CUBLAS_OP_N ? p + j * lb->ld : j + p * lb->ld;
                acc += load(a, la->type, ai) * load(b, lb->type, bi);
            }
            double v = (double)al * acc;
            if (be != 0.0f) v += (double)be * load(c, lc->type, i + j * lc->ld);
            if (d->epilogue == CUBLASLT_EPILOGUE_BIAS) v += load(d->bias, ld->type, i);
            store(dd, ld->type, i + j * ld->ld, v);
        }
    return CUBLAS_STATUS_SUCCESS;
}

} /* extern "C" */
