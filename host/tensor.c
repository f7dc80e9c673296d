#include "../kernels/tensor.h"
#include "../kernels/check.h"
#include <math.h>
#include <stdio.h>

static const size_t dtype_sizes[DT_COUNT] = {4, 2, 2, 4};
static const char *const dtype_names[DT_COUNT] = {"f32", "bf16", "f16", "i32"};

size_t dtype_size(dtype dt) { return (unsigned)dt < DT_COUNT ? dtype_sizes[dt] : 0; }
const char *dtype_name(dtype dt) { return (unsigned)dt < DT_COUNT ? dtype_names[dt] : "?"; }

int64_t tensor_numel(const tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

size_t tensor_bytes(const tensor *t) { return (size_t)tensor_numel(t) * dtype_size(t->dt); }
int64_t tensor_cols(const tensor *t) { return t->shape[t->ndim - 1]; }

int64_t tensor_rows_count(const tensor *t) {
    int64_t c = tensor_cols(t);
    return c ? tensor_numel(t) / c : 0;
}

tensor tensor_wrap(void *data, dtype dt, const struct backend *be, int ndim, const int64_t *shape) {
    AIMC_CHECK(ndim >= 1 && ndim <= TENSOR_MAX_DIMS, "tensor: %d dimensions (1..4 allowed)", ndim);
    tensor t = {.data = data, .dt = dt, .ndim = ndim, .be = be};
    for (int i = 0; i < ndim; i++) {
        AIMC_CHECK(shape[i] >= 0, "tensor: negative size %lld in dim %d", (long long)shape[i], i);
        t.shape[i] = shape[i];
    }
    return t;
}

tensor tensor_slice0(const tensor *t, int64_t r0, int64_t n) {
    AIMC_CHECK(r0 >= 0 && n >= 0 && r0 + n <= t->shape[0],
               "tensor_slice0: rows [%lld, %lld) outside dim 0 of size %lld", (long long)r0,
               (long long)(r0 + n), (long long)t->shape[0]);
    tensor v = *t;
    size_t row_bytes = n ? tensor_bytes(t) / (size_t)t->shape[0] : 0;
    v.data = (char *)t->data + (size_t)r0 * row_bytes;
    v.shape[0] = n;
    return v;
}

tensor tensor_reshape(const tensor *t, int ndim, const int64_t *shape) {
    tensor v = tensor_wrap(t->data, t->dt, t->be, ndim, shape);
    char a[64], b[64];
    AIMC_CHECK(tensor_numel(&v) == tensor_numel(t), "tensor_reshape: %s -> %s changes numel",
               tensor_shape_str(t, a, sizeof a), tensor_shape_str(&v, b, sizeof b));
    return v;
}

int tensor_same_shape(const tensor *a, const tensor *b) {
    if (a->ndim != b->ndim) return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return 0;
    return 1;
}

const char *tensor_shape_str(const tensor *t, char *buf, size_t n) {
    size_t used = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < t->ndim && used < n; i++)
        used += (size_t)snprintf(buf + used, n - used, i ? ", %lld" : "%lld", (long long)t->shape[i]);
    if (used < n) snprintf(buf + used, n - used, "]");
    return buf;
}

/* IEEE half: 1 sign, 5 exponent (bias 15), 10 mantissa bits. */
float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    float f;
    if (exp == 0) { /* zero or subnormal: man * 2^-24 */
        f = ldexpf((float)man, -24);
        return sign ? -f : f;
    }
    uint32_t u = exp == 31 ? sign | 0x7f800000u | (man << 13) : sign | ((exp + 112) << 23) | (man << 13);
    memcpy(&f, &u, 4);
    return f;
}

uint16_t f32_to_f16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    uint32_t absu = u & 0x7fffffffu;
    if (absu > 0x7f800000u) return sign | 0x7e00; /* NaN */
    if (absu >= 0x477ff000u) return sign | 0x7c00; /* overflow (>= 65520 rounds to inf) */
    if (absu < 0x38800000u) { /* below the smallest normal: round to a subnormal */
        float a;
        memcpy(&a, &absu, 4);
        return sign | (uint16_t)lrintf(a * 16777216.0f); /* a / 2^-24, nearest even */
    }
    uint32_t r = absu + 0xfffu + ((absu >> 13) & 1u); /* round mantissa to 10 bits, nearest even */
    return sign | (uint16_t)((r - 0x38000000u) >> 13);
}
