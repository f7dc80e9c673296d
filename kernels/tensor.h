/* Tensors: a typed, shaped view of memory owned by one backend.
 * Tensors are always contiguous (row-major). A "view" of a contiguous range
 * of leading rows is a tensor too (tensor_rows); fused projections such as
 * BLIP-2's qkv are split by viewing row ranges of the weight. */
#ifndef AIMC_TENSOR_H
#define AIMC_TENSOR_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { DT_F32 = 0, DT_BF16, DT_F16, DT_I32, DT_COUNT } dtype;

struct backend;

typedef struct tensor {
    void *data;
    dtype dt;
    int ndim;                 /* 1..4 */
    int64_t shape[4];
    const struct backend *be; /* who owns data (cpu or cuda) */
} tensor;

#define TENSOR_MAX_DIMS 4

size_t dtype_size(dtype dt);
const char *dtype_name(dtype dt);
int64_t tensor_numel(const tensor *t);
size_t tensor_bytes(const tensor *t);
/* Size of the last dimension, and the number of rows (numel / last dim). */
int64_t tensor_cols(const tensor *t);
int64_t tensor_rows_count(const tensor *t);
/* A tensor describing caller-owned memory. */
tensor tensor_wrap(void *data, dtype dt, const struct backend *be, int ndim, const int64_t *shape);
/* View of rows [r0, r0+n) of the leading dimension. */
tensor tensor_slice0(const tensor *t, int64_t r0, int64_t n);
/* Same data, new shape with the same numel (aborts otherwise). */
tensor tensor_reshape(const tensor *t, int ndim, const int64_t *shape);
int tensor_same_shape(const tensor *a, const tensor *b);
/* "[2, 3, 4]" into buf; returns buf. */
const char *tensor_shape_str(const tensor *t, char *buf, size_t n);

/* bf16 / f16 <-> f32. Rounding: nearest even; NaN stays NaN. */
static inline float bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static inline uint16_t f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}
float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);

/* Element i of a float-typed tensor (f32/bf16/f16) read as f32. */
static inline float load_as_f32(const void *p, dtype dt, int64_t i) {
    switch (dt) {
    case DT_BF16: return bf16_to_f32(((const uint16_t *)p)[i]);
    case DT_F16: return f16_to_f32(((const uint16_t *)p)[i]);
    default: return ((const float *)p)[i];
    }
}
static inline void store_from_f32(void *p, dtype dt, int64_t i, float v) {
    switch (dt) {
    case DT_BF16: ((uint16_t *)p)[i] = f32_to_bf16(v); break;
    case DT_F16: ((uint16_t *)p)[i] = f32_to_f16(v); break;
    default: ((float *)p)[i] = v; break;
    }
}
#ifdef __cplusplus
}
#endif
#endif
