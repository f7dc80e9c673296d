#include "ops.h"
#include "../kernels/check.h"
#include <string.h>

void ops_need_same_backend(const char *op, const tensor *a, const tensor *b) {
    AIMC_CHECK(a->be == b->be, "%s: tensors live on different backends (%s vs %s)", op,
               a->be ? a->be->name : "none", b->be ? b->be->name : "none");
}

void ops_need_dtype(const char *op, const char *arg, const tensor *t, dtype dt) {
    AIMC_CHECK(t->dt == dt, "%s: %s has dtype %s, expected %s", op, arg, dtype_name(t->dt),
               dtype_name(dt));
}

void ops_need_float(const char *op, const char *arg, const tensor *t) {
    AIMC_CHECK(t->dt == DT_F32 || t->dt == DT_BF16 || t->dt == DT_F16,
               "%s: %s has dtype %s, expected a float type", op, arg, dtype_name(t->dt));
}

void ops_need_shape(const char *op, const char *arg, const tensor *t, int ndim,
                    const int64_t *shape) {
    tensor want = tensor_wrap(NULL, t->dt, t->be, ndim, shape);
    char a[80], b[80];
    AIMC_CHECK(tensor_same_shape(t, &want), "%s: %s has shape %s, expected %s", op, arg,
               tensor_shape_str(t, a, sizeof a), tensor_shape_str(&want, b, sizeof b));
}

void ops_need_same_shape(const char *op, const tensor *a, const tensor *b) {
    char x[80], y[80];
    AIMC_CHECK(tensor_numel(a) == tensor_numel(b) && tensor_cols(a) == tensor_cols(b),
               "%s: shapes %s and %s differ", op, tensor_shape_str(a, x, sizeof x),
               tensor_shape_str(b, y, sizeof y));
}

static const char *const act_names[ACT_COUNT] = {"gelu", "gelu_tanh", "quick_gelu", "silu", "relu"};

const char *act_name(act_kind kind) { return (unsigned)kind < ACT_COUNT ? act_names[kind] : "?"; }

int act_parse(const char *name) {
    for (int i = 0; i < ACT_COUNT; i++)
        if (!strcmp(name, act_names[i])) return i;
    if (!strcmp(name, "gelu_pytorch_tanh") || !strcmp(name, "gelu_new")) return ACT_GELU_TANH;
    if (!strcmp(name, "swish")) return ACT_SILU;
    return -1;
}
