/* LayerNorm and RMSNorm over the last dimension, forward and backward.
 * Storage may be any float dtype; math is f32 except the row reductions,
 * which accumulate in double so that long rows (and tiny eps) lose nothing.
 * Parameter gradients are reduced over rows in a fixed order (one column
 * block per thread), so results do not depend on the thread count. */
#include "cpu.h"
#include <math.h>

#define PARAM_BLOCK 64 /* columns per thread in the parameter-gradient reduction */

typedef struct row_stats {
    float mean, rstd;
} row_stats;

static float ld(const tensor *t, int64_t i) { return load_as_f32(t->data, t->dt, i); }
static void st(tensor *t, int64_t i, float v) { store_from_f32(t->data, t->dt, i, v); }
/* 0 for an absent tensor (layernorm without bias, rmsnorm without mean). */
static float ld_or_zero(const tensor *t, int64_t i) { return t ? ld(t, i) : 0.0f; }

/* Mean and 1/sqrt(var + eps) of one row, two-pass in double. */
static row_stats layernorm_row_stats(const tensor *x, int64_t off, int64_t n, float eps) {
    double sum = 0, ss = 0;
    for (int64_t j = 0; j < n; j++) sum += ld(x, off + j);
    double mean = sum / (double)n;
    for (int64_t j = 0; j < n; j++) {
        double d = ld(x, off + j) - mean;
        ss += d * d;
    }
    return (row_stats){(float)mean, (float)(1.0 / sqrt(ss / (double)n + eps))};
}

/* 1/sqrt(mean(x^2) + eps) of one row, in double. */
static float rms_row_rstd(const tensor *x, int64_t off, int64_t n, float eps) {
    double ss = 0;
    for (int64_t j = 0; j < n; j++) {
        double v = ld(x, off + j);
        ss += v * v;
    }
    return (float)(1.0 / sqrt(ss / (double)n + eps));
}

/* y = (x - mean) * rstd * w (+ b) for one row; shared by both norms. */
static void normalize_row(tensor *y, const tensor *x, const tensor *w, const tensor *b, int64_t off,
                          int64_t n, row_stats s) {
    for (int64_t j = 0; j < n; j++) {
        float xhat = (ld(x, off + j) - s.mean) * s.rstd;
        st(y, off + j, xhat * ld(w, j) + ld_or_zero(b, j));
    }
}

static void cpu_layernorm(tensor *y, tensor *mean, tensor *rstd, const tensor *x, const tensor *w,
                          const tensor *b, float eps) {
    int64_t rows = tensor_rows_count(x), n = tensor_cols(x);
#pragma omp parallel for schedule(static) if (rows * n >= CPU_PARALLEL_MIN)
    for (int64_t r = 0; r < rows; r++) {
        row_stats s = layernorm_row_stats(x, r * n, n, eps);
        normalize_row(y, x, w, b, r * n, n, s);
        if (mean) ((float *)mean->data)[r] = s.mean;
        if (rstd) ((float *)rstd->data)[r] = s.rstd;
    }
}

static void cpu_rmsnorm(tensor *y, tensor *rstd, const tensor *x, const tensor *w, float eps) {
    int64_t rows = tensor_rows_count(x), n = tensor_cols(x);
#pragma omp parallel for schedule(static) if (rows * n >= CPU_PARALLEL_MIN)
    for (int64_t r = 0; r < rows; r++) {
        row_stats s = {0.0f, rms_row_rstd(x, r * n, n, eps)};
        normalize_row(y, x, w, NULL, r * n, n, s);
        if (rstd) ((float *)rstd->data)[r] = s.rstd;
    }
}

/* dw[j] = sum_r dy[r,j] * xhat[r,j] and db[j] = sum_r dy[r,j] (each may be
 * NULL). mean is NULL for rmsnorm (xhat = x * rstd). */
static void norm_param_grads(tensor *dw, tensor *db, const tensor *dy, const tensor *x,
                             const tensor *mean, const tensor *rstd) {
    int64_t rows = tensor_rows_count(x), n = tensor_cols(x);
    const float *mu = mean ? (const float *)mean->data : NULL, *rs = (const float *)rstd->data;
#pragma omp parallel for schedule(static) if (rows * n >= CPU_PARALLEL_MIN)
    for (int64_t j0 = 0; j0 < n; j0 += PARAM_BLOCK) {
        int64_t nb = n - j0 < PARAM_BLOCK ? n - j0 : PARAM_BLOCK;
        double acc_w[PARAM_BLOCK] = {0}, acc_b[PARAM_BLOCK] = {0};
        for (int64_t r = 0; r < rows; r++)
            for (int64_t j = 0; j < nb; j++) {
                int64_t i = r * n + j0 + j;
                float g = ld(dy, i), xhat = (ld(x, i) - (mu ? mu[r] : 0.0f)) * rs[r];
                acc_w[j] += (double)g * xhat;
                acc_b[j] += g;
            }
        for (int64_t j = 0; j < nb; j++) {
            if (dw) st(dw, j0 + j, (float)acc_w[j]);
            if (db) st(db, j0 + j, (float)acc_b[j]);
        }
    }
}

/* dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) with g = dy * w, one row.
 * center = 0 drops the mean(g) term (rmsnorm has no mean subtraction). */
static void norm_dx_row(tensor *dx, const tensor *dy, const tensor *x, const tensor *w, int64_t off,
                        int64_t n, row_stats s, int center) {
    double sum_g = 0, sum_gx = 0;
    for (int64_t j = 0; j < n; j++) {
        float g = ld(dy, off + j) * ld(w, j), xhat = (ld(x, off + j) - s.mean) * s.rstd;
        sum_g += g;
        sum_gx += (double)g * xhat;
    }
    float mean_g = center ? (float)(sum_g / (double)n) : 0.0f;
    float mean_gx = (float)(sum_gx / (double)n);
    for (int64_t j = 0; j < n; j++) {
        float g = ld(dy, off + j) * ld(w, j), xhat = (ld(x, off + j) - s.mean) * s.rstd;
        st(dx, off + j, s.rstd * (g - mean_g - xhat * mean_gx));
    }
}

/* Parameter gradients go first: dx may then safely alias dy. */
static void cpu_layernorm_backward(tensor *dx, tensor *dw, tensor *db, const tensor *dy,
                                   const tensor *x, const tensor *w, const tensor *mean,
                                   const tensor *rstd) {
    int64_t rows = tensor_rows_count(x), n = tensor_cols(x);
    if (dw || db) norm_param_grads(dw, db, dy, x, mean, rstd);
    const float *mu = (const float *)mean->data, *rs = (const float *)rstd->data;
#pragma omp parallel for schedule(static) if (rows * n >= CPU_PARALLEL_MIN)
    for (int64_t r = 0; r < rows; r++)
        norm_dx_row(dx, dy, x, w, r * n, n, (row_stats){mu[r], rs[r]}, 1);
}

static void cpu_rmsnorm_backward(tensor *dx, tensor *dw, const tensor *dy, const tensor *x,
                                 const tensor *w, const tensor *rstd) {
    int64_t rows = tensor_rows_count(x), n = tensor_cols(x);
    if (dw) norm_param_grads(dw, NULL, dy, x, NULL, rstd);
    const float *rs = (const float *)rstd->data;
#pragma omp parallel for schedule(static) if (rows * n >= CPU_PARALLEL_MIN)
    for (int64_t r = 0; r < rows; r++)
        norm_dx_row(dx, dy, x, w, r * n, n, (row_stats){0.0f, rs[r]}, 0);
}

void cpu_fill_norm(backend *b) {
    b->layernorm = cpu_layernorm;
    b->layernorm_backward = cpu_layernorm_backward;
    b->rmsnorm = cpu_rmsnorm;
    b->rmsnorm_backward = cpu_rmsnorm_backward;
}
