/* cpu matmul and bias_grad (f32 math), plus the linear family's table entry.
 *
 * matmul works block by block so it stays cache friendly on big shapes:
 * a KC x NC block of op(b) is converted once to f32 ("packed", which also
 * undoes trans_b and bf16/f16 storage), then every group of MR output rows
 * streams through that block, the threads splitting the rows. The packed
 * block (512 KB) stays in L2, and each loaded b value feeds MR rows. Output
 * rows accumulate in f32: directly in out when it is f32, else in a scratch
 * copy stored once at the end. */
#include "cpu.h"
#include <stdlib.h>

enum { KC = 256, NC = 512, MR = 4 }; /* block of op(b): KC x NC floats; output rows per group */

/* Shapes of one call, with the leading dims of a and out flattened. */
typedef struct mm_dims {
    int64_t m, n, k;
} mm_dims;

/* op(a)[i, p] as f32: a is [m, k], or [k, m] when transposed. */
static inline float a_elem(const tensor *a, int trans_a, const mm_dims *d, int64_t i, int64_t p) {
    return load_as_f32(a->data, a->dt, trans_a ? p * d->m + i : i * d->k + p);
}

/* dst[kk * NC + jj] = op(b)[k0 + kk, n0 + jj] as f32, for the kc x nc block. */
static void pack_b_block(float *dst, const tensor *b, int trans_b, const mm_dims *d, int64_t k0,
                         int64_t kc, int64_t n0, int64_t nc) {
#pragma omp parallel for schedule(static) if (kc * nc >= CPU_PARALLEL_MIN)
    for (int64_t kk = 0; kk < kc; kk++) {
        float *row = dst + kk * NC;
        for (int64_t jj = 0; jj < nc; jj++) {
            int64_t p = k0 + kk, j = n0 + jj;
            row[jj] = load_as_f32(b->data, b->dt, trans_b ? j * d->k + p : p * d->n + j);
        }
    }
}

/* c_r[0..nc) += sum over kk of a_r[kk] * bp[kk, 0..nc) for MR rows at once, so
 * each value of the packed block is loaded once per MR rows. */
static void block_rows4(float *restrict c0, float *restrict c1, float *restrict c2,
                        float *restrict c3, const float a[MR][KC], const float *restrict bp,
                        int64_t kc, int64_t nc) {
    for (int64_t kk = 0; kk < kc; kk++) {
        const float *restrict brow = bp + kk * NC;
        float a0 = a[0][kk], a1 = a[1][kk], a2 = a[2][kk], a3 = a[3][kk];
#pragma omp simd
        for (int64_t jj = 0; jj < nc; jj++) {
            float bv = brow[jj];
            c0[jj] += a0 * bv;
            c1[jj] += a1 * bv;
            c2[jj] += a2 * bv;
            c3[jj] += a3 * bv;
        }
    }
}

/* One output row against the packed block (the rows left over after groups of MR). */
static void block_row1(float *restrict c, const float *a, const float *restrict bp, int64_t kc,
                       int64_t nc) {
    for (int64_t kk = 0; kk < kc; kk++) {
        const float *restrict brow = bp + kk * NC;
        float av = a[kk];
#pragma omp simd
        for (int64_t jj = 0; jj < nc; jj++) c[jj] += av * brow[jj];
    }
}

/* Accumulates rows [i0, i0+rows) of acc (f32 [m, n]) with op(a) times the
 * packed block at (k0, n0). rows is MR or 1. */
static void accumulate_rows(float *acc, const tensor *a, int trans_a, const mm_dims *d,
                            const float *bp, int64_t i0, int rows, int64_t k0, int64_t kc,
                            int64_t n0, int64_t nc) {
    float av[MR][KC];
    for (int r = 0; r < rows; r++)
        for (int64_t kk = 0; kk < kc; kk++) av[r][kk] = a_elem(a, trans_a, d, i0 + r, k0 + kk);
    float *c = acc + i0 * d->n + n0;
    if (rows == MR)
        block_rows4(c, c + d->n, c + 2 * d->n, c + 3 * d->n, (const float(*)[KC])av, bp, kc, nc);
    else
        block_row1(c, av[0], bp, kc, nc);
}

/* acc[i, :] = beta * out[i, :] + bias (beta == 0 ignores out, which may hold garbage). */
static void init_acc(float *acc, const tensor *out, const tensor *bias, float beta,
                     const mm_dims *d) {
#pragma omp parallel for schedule(static) if (d->m * d->n >= CPU_PARALLEL_MIN)
    for (int64_t i = 0; i < d->m; i++) {
        for (int64_t j = 0; j < d->n; j++) {
            float v = bias ? load_as_f32(bias->data, bias->dt, j) : 0.0f;
            if (beta != 0.0f) v += beta * load_as_f32(out->data, out->dt, i * d->n + j);
            acc[i * d->n + j] = v;
        }
    }
}

static void cpu_matmul(tensor *out, const tensor *a, const tensor *b, const tensor *bias,
                       int trans_a, int trans_b, float beta) {
    mm_dims d = {.m = tensor_rows_count(out), .n = tensor_cols(out)};
    d.k = trans_a ? tensor_rows_count(a) : tensor_cols(a);
    size_t acc_bytes = (size_t)(d.m * d.n) * sizeof(float);
    float *acc = out->dt == DT_F32 ? (float *)out->data : malloc(acc_bytes ? acc_bytes : 1);
    float *bp = malloc((size_t)KC * NC * sizeof(float));
    AIMC_CHECK(acc && bp, "matmul: out of memory for %lld x %lld scratch", (long long)d.m,
               (long long)d.n);
    init_acc(acc, out, bias, beta, &d);
    int64_t groups = d.m / MR; /* full groups of MR rows; the rest go one by one */
    for (int64_t n0 = 0; n0 < d.n; n0 += NC) {
        int64_t nc = d.n - n0 < NC ? d.n - n0 : NC;
        for (int64_t k0 = 0; k0 < d.k; k0 += KC) {
            int64_t kc = d.k - k0 < KC ? d.k - k0 : KC;
            pack_b_block(bp, b, trans_b, &d, k0, kc, n0, nc);
#pragma omp parallel for schedule(static) if (d.m * kc * nc >= CPU_PARALLEL_MIN_FLOPS)
            for (int64_t g = 0; g < groups + d.m % MR; g++) {
                int64_t i0 = g < groups ? g * MR : groups * MR + (g - groups);
                accumulate_rows(acc, a, trans_a, &d, bp, i0, g < groups ? MR : 1, k0, kc, n0, nc);
            }
        }
    }
    if (acc != out->data) {
        for (int64_t i = 0; i < d.m * d.n; i++) store_from_f32(out->data, out->dt, i, acc[i]);
        free(acc);
    }
    free(bp);
}

/* db[j] = sum over rows of dy[:, j] (+ beta * db[j]); threads split the
 * columns, and each column sums its rows in order in f64 (deterministic). */
static void cpu_bias_grad(tensor *db, const tensor *dy, float beta) {
    int64_t rows = tensor_rows_count(dy), n = tensor_cols(dy);
    enum { COLS = 64 };
#pragma omp parallel for schedule(static) if (rows * n >= CPU_PARALLEL_MIN)
    for (int64_t j0 = 0; j0 < n; j0 += COLS) {
        int64_t nc = n - j0 < COLS ? n - j0 : COLS;
        double sum[COLS] = {0};
        for (int64_t r = 0; r < rows; r++)
            for (int64_t jj = 0; jj < nc; jj++)
                sum[jj] += load_as_f32(dy->data, dy->dt, r * n + j0 + jj);
        for (int64_t jj = 0; jj < nc; jj++) {
            double v = sum[jj];
            if (beta != 0.0f) v += (double)beta * load_as_f32(db->data, db->dt, j0 + jj);
            store_from_f32(db->data, db->dt, j0 + jj, (float)v);
        }
    }
}

void cpu_fill_matmul(backend *b) {
    b->matmul = cpu_matmul;
    b->bias_grad = cpu_bias_grad;
}
