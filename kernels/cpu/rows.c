/* Row moves (gather / scatter by index), dtype conversion, add and scale;
 * and the assembly of the pointwise family's part of the cpu op table.
 * Indices are validated on every call before anything is written: a bad
 * token id or position is a user-facing error, never a wild read. */
#include "cpu.h"
#include <string.h>

/* Exits with the first index outside [0, rows), naming it, its position and
 * the size of the table it indexes. */
static void check_row_indices(const char *op, const char *table, const tensor *idx, int64_t rows) {
    const int32_t *ix = (const int32_t *)idx->data;
    int64_t n = tensor_numel(idx);
    for (int64_t i = 0; i < n; i++)
        if (ix[i] < 0 || ix[i] >= rows)
            aimc_die("%s: index %d (position %lld) is outside the %s of %lld rows", op, ix[i],
                     (long long)i, table, (long long)rows);
}

/* dst row dr = src row sr, converting the dtype when they differ. */
static void copy_row(tensor *dst, int64_t dr, const tensor *src, int64_t sr, int64_t cols) {
    if (dst->dt == src->dt) {
        size_t bytes = (size_t)cols * dtype_size(src->dt);
        memcpy((char *)dst->data + (size_t)dr * bytes, (const char *)src->data + (size_t)sr * bytes,
               bytes);
        return;
    }
    for (int64_t j = 0; j < cols; j++)
        store_from_f32(dst->data, dst->dt, dr * cols + j,
                       load_as_f32(src->data, src->dt, sr * cols + j));
}

static void cpu_gather_rows(tensor *out, const tensor *src, const tensor *idx) {
    int64_t n = tensor_numel(idx), cols = tensor_cols(src);
    check_row_indices("gather_rows", "table", idx, tensor_rows_count(src));
    const int32_t *ix = (const int32_t *)idx->data;
#pragma omp parallel for schedule(static) if (n * cols >= CPU_PARALLEL_MIN)
    for (int64_t i = 0; i < n; i++) copy_row(out, i, src, ix[i], cols);
}

/* Serial on purpose: with repeated indices the last row written wins, as in
 * a plain loop, on every run. */
static void cpu_scatter_rows(tensor *dst, const tensor *src, const tensor *idx) {
    int64_t n = tensor_numel(idx), cols = tensor_cols(dst);
    check_row_indices("scatter_rows", "destination", idx, tensor_rows_count(dst));
    const int32_t *ix = (const int32_t *)idx->data;
    for (int64_t i = 0; i < n; i++) copy_row(dst, ix[i], src, i, cols);
}

static void cpu_convert(tensor *dst, const tensor *src) {
    int64_t n = tensor_numel(src);
    if (dst->dt == src->dt) {
        memmove(dst->data, src->data, tensor_bytes(src));
        return;
    }
#pragma omp parallel for schedule(static) if (n >= CPU_PARALLEL_MIN)
    for (int64_t i = 0; i < n; i++)
        store_from_f32(dst->data, dst->dt, i, load_as_f32(src->data, src->dt, i));
}

/* Elementwise, each element read before it is written: out may alias a or b. */
static void cpu_add(tensor *out, const tensor *a, const tensor *b) {
    int64_t n = tensor_numel(out);
#pragma omp parallel for schedule(static) if (n >= CPU_PARALLEL_MIN)
    for (int64_t i = 0; i < n; i++)
        store_from_f32(out->data, out->dt, i,
                       load_as_f32(a->data, a->dt, i) + load_as_f32(b->data, b->dt, i));
}

static void cpu_scale(tensor *out, const tensor *x, float s) {
    int64_t n = tensor_numel(out);
#pragma omp parallel for schedule(static) if (n >= CPU_PARALLEL_MIN)
    for (int64_t i = 0; i < n; i++)
        store_from_f32(out->data, out->dt, i, load_as_f32(x->data, x->dt, i) * s);
}

void cpu_fill_rows(backend *b) {
    b->gather_rows = cpu_gather_rows;
    b->scatter_rows = cpu_scatter_rows;
    b->convert = cpu_convert;
    b->add = cpu_add;
    b->scale = cpu_scale;
}
