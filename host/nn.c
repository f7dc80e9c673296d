#include "nn.h"
#include "../kernels/check.h"
#include <stdarg.h>
#include <stdio.h>

const char *nn_name(const char *fmt, ...) {
    static char ring[8][256];
    static int next;
    char *buf = ring[next++ & 7];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof ring[0], fmt, ap);
    va_end(ap);
    AIMC_CHECK(n >= 0 && n < (int)sizeof ring[0], "nn_name: tensor name longer than %zu bytes",
               sizeof ring[0] - 1);
    return buf;
}

tensor nn_tensor_load(const nn_loader *ld, const char *name, dtype want, int ndim,
                      const int64_t *shape) {
    return model_dir_load(ld->md, name, ld->be, want, ndim, shape);
}

nn_linear nn_linear_load(const nn_loader *ld, const char *prefix, int64_t in, int64_t out, int bias) {
    nn_linear l = {0};
    l.w = nn_tensor_load(ld, nn_name("%s.weight", prefix), ld->wdt, 2, (int64_t[]){out, in});
    if (bias) l.b = nn_tensor_load(ld, nn_name("%s.bias", prefix), DT_F32, 1, (int64_t[]){out});
    return l;
}

nn_norm nn_norm_load(const nn_loader *ld, const char *prefix, int64_t dim, float eps,
                     nn_norm_kind kind, int bias) {
    nn_norm n = {.eps = eps, .kind = kind};
    n.w = nn_tensor_load(ld, nn_name("%s.weight", prefix), DT_F32, 1, (int64_t[]){dim});
    if (bias) n.b = nn_tensor_load(ld, nn_name("%s.bias", prefix), DT_F32, 1, (int64_t[]){dim});
    return n;
}

void nn_tensor_free(const backend *be, tensor *t) {
    if (t->data) be->release(t->data);
    t->data = NULL;
}

void nn_linear_free(const backend *be, nn_linear *l) {
    nn_tensor_free(be, &l->w);
    nn_tensor_free(be, &l->b);
}

void nn_norm_free(const backend *be, nn_norm *n) {
    nn_tensor_free(be, &n->w);
    nn_tensor_free(be, &n->b);
}

void nn_linear_forward(tensor *y, const tensor *x, const nn_linear *l) {
    op_matmul(y, x, &l->w, l->b.data ? &l->b : NULL, 0, 1, 0);
}

void nn_linear_backward_input(tensor *dx, const tensor *dy, const nn_linear *l, float beta) {
    op_matmul(dx, dy, &l->w, NULL, 0, 0, beta);
}

void nn_norm_forward(tensor *y, tensor *mean, tensor *rstd, const tensor *x, const nn_norm *n) {
    if (n->kind == NN_RMSNORM)
        op_rmsnorm(y, rstd, x, &n->w, n->eps);
    else
        op_layernorm(y, mean, rstd, x, &n->w, n->b.data ? &n->b : NULL, n->eps);
}

void nn_norm_backward_input(tensor *dx, const tensor *dy, const tensor *x, const tensor *mean,
                            const tensor *rstd, const nn_norm *n) {
    if (n->kind == NN_RMSNORM)
        op_rmsnorm_backward(dx, NULL, dy, x, &n->w, rstd);
    else
        op_layernorm_backward(dx, NULL, NULL, dy, x, &n->w, mean, rstd);
}
