/* Checked wrappers for the pointwise family: norms, activations, rope, row
 * moves, convert, add, scale. Each validates its tensors, then calls the
 * backend that owns them (semantics in kernels/backend.h).
 *
 * Dtype rules: activation-like tensors (x, y, dx, dy, gate, up, ...) are any
 * float dtype but all the same within one call; norm weights and biases are
 * any float dtype, shape [cols]; row statistics (mean, rstd) are f32 with one
 * value per row; indices and positions are i32. */
#include "../kernels/check.h"
#include "ops.h"
#include <math.h>

/* t is present and owned by some backend. */
static void need_tensor(const char *op, const char *arg, const tensor *t) {
    AIMC_CHECK(t != NULL, "%s: %s is required but NULL", op, arg);
    AIMC_CHECK(t->be != NULL, "%s: %s is owned by no backend", op, arg);
}

/* The backend that runs the op; exits when it lacks an implementation. */
static const backend *backend_for(const char *op, const tensor *t, int implemented) {
    if (!implemented) aimc_die("op %s is not implemented on backend %s", op, t->be->name);
    return t->be;
}

/* t is shaped like ref: same backend, dtype and shape (numel and columns). */
static void need_like(const char *op, const char *arg, const tensor *t, const tensor *ref) {
    need_tensor(op, arg, t);
    ops_need_same_backend(op, t, ref);
    ops_need_dtype(op, arg, t, ref->dt);
    ops_need_same_shape(op, t, ref);
}

/* A float activation tensor that the others in the call are compared with. */
static void need_activation(const char *op, const char *arg, const tensor *t) {
    need_tensor(op, arg, t);
    ops_need_float(op, arg, t);
}

/* A norm parameter: float, shape [cols of x], on x's backend. */
static void need_param(const char *op, const char *arg, const tensor *p, const tensor *x) {
    need_tensor(op, arg, p);
    ops_need_same_backend(op, p, x);
    ops_need_float(op, arg, p);
    ops_need_shape(op, arg, p, 1, (int64_t[]){tensor_cols(x)});
}

/* Row statistics: f32, one value per row of x (any shape with that numel). */
static void need_row_stats(const char *op, const char *arg, const tensor *s, const tensor *x) {
    char a[80], b[80];
    need_tensor(op, arg, s);
    ops_need_same_backend(op, s, x);
    ops_need_dtype(op, arg, s, DT_F32);
    AIMC_CHECK(tensor_numel(s) == tensor_rows_count(x),
               "%s: %s has shape %s, expected one value per row of x %s (%lld)", op, arg,
               tensor_shape_str(s, a, sizeof a), tensor_shape_str(x, b, sizeof b),
               (long long)tensor_rows_count(x));
}

static void need_eps(const char *op, float eps) {
    AIMC_CHECK(isfinite(eps) && eps >= 0.0f, "%s: eps = %g, expected a finite value >= 0", op,
               (double)eps);
}

void op_layernorm(tensor *y, tensor *mean, tensor *rstd, const tensor *x, const tensor *w,
                  const tensor *b, float eps) {
    const char *op = "layernorm";
    need_activation(op, "x", x);
    need_like(op, "y", y, x);
    need_param(op, "w", w, x);
    if (b) need_param(op, "b", b, x);
    if (mean) need_row_stats(op, "mean", mean, x);
    if (rstd) need_row_stats(op, "rstd", rstd, x);
    need_eps(op, eps);
    backend_for(op, x, x->be->layernorm != NULL)->layernorm(y, mean, rstd, x, w, b, eps);
}

void op_layernorm_backward(tensor *dx, tensor *dw, tensor *db, const tensor *dy, const tensor *x,
                           const tensor *w, const tensor *mean, const tensor *rstd) {
    const char *op = "layernorm_backward";
    need_activation(op, "x", x);
    need_like(op, "dx", dx, x);
    need_like(op, "dy", dy, x);
    need_param(op, "w", w, x);
    if (dw) need_param(op, "dw", dw, x);
    if (db) need_param(op, "db", db, x);
    need_row_stats(op, "mean", mean, x);
    need_row_stats(op, "rstd", rstd, x);
    backend_for(op, x, x->be->layernorm_backward != NULL)
        ->layernorm_backward(dx, dw, db, dy, x, w, mean, rstd);
}

void op_rmsnorm(tensor *y, tensor *rstd, const tensor *x, const tensor *w, float eps) {
    const char *op = "rmsnorm";
    need_activation(op, "x", x);
    need_like(op, "y", y, x);
    need_param(op, "w", w, x);
    if (rstd) need_row_stats(op, "rstd", rstd, x);
    need_eps(op, eps);
    backend_for(op, x, x->be->rmsnorm != NULL)->rmsnorm(y, rstd, x, w, eps);
}

void op_rmsnorm_backward(tensor *dx, tensor *dw, const tensor *dy, const tensor *x, const tensor *w,
                         const tensor *rstd) {
    const char *op = "rmsnorm_backward";
    need_activation(op, "x", x);
    need_like(op, "dx", dx, x);
    need_like(op, "dy", dy, x);
    need_param(op, "w", w, x);
    if (dw) need_param(op, "dw", dw, x);
    need_row_stats(op, "rstd", rstd, x);
    backend_for(op, x, x->be->rmsnorm_backward != NULL)->rmsnorm_backward(dx, dw, dy, x, w, rstd);
}

static void need_act_kind(const char *op, act_kind kind) {
    AIMC_CHECK((unsigned)kind < ACT_COUNT, "%s: unknown activation kind %d", op, (int)kind);
}

void op_act(act_kind kind, tensor *y, const tensor *x) {
    const char *op = "act";
    need_act_kind(op, kind);
    need_activation(op, "x", x);
    need_like(op, "y", y, x);
    backend_for(op, x, x->be->act != NULL)->act(kind, y, x);
}

void op_act_backward(act_kind kind, tensor *dx, const tensor *dy, const tensor *x) {
    const char *op = "act_backward";
    need_act_kind(op, kind);
    need_activation(op, "x", x);
    need_like(op, "dx", dx, x);
    need_like(op, "dy", dy, x);
    backend_for(op, x, x->be->act_backward != NULL)->act_backward(kind, dx, dy, x);
}

void op_swiglu(tensor *y, const tensor *gate, const tensor *up) {
    const char *op = "swiglu";
    need_activation(op, "gate", gate);
    need_like(op, "up", up, gate);
    need_like(op, "y", y, gate);
    backend_for(op, gate, gate->be->swiglu != NULL)->swiglu(y, gate, up);
}

void op_swiglu_backward(tensor *dgate, tensor *dup, const tensor *dy, const tensor *gate,
                        const tensor *up) {
    const char *op = "swiglu_backward";
    need_activation(op, "gate", gate);
    need_like(op, "up", up, gate);
    need_like(op, "dy", dy, gate);
    need_like(op, "dgate", dgate, gate);
    need_like(op, "dup", dup, gate);
    backend_for(op, gate, gate->be->swiglu_backward != NULL)
        ->swiglu_backward(dgate, dup, dy, gate, up);
}

void op_rope(tensor *x, const tensor *pos, float theta, int inverse) {
    const char *op = "rope";
    char a[80];
    need_activation(op, "x", x);
    AIMC_CHECK(x->ndim == 4, "rope: x has shape %s, expected [B, T, heads, head_dim]",
               tensor_shape_str(x, a, sizeof a));
    AIMC_CHECK(x->shape[3] % 2 == 0, "rope: head_dim %lld is odd, expected an even size",
               (long long)x->shape[3]);
    need_tensor(op, "pos", pos);
    ops_need_same_backend(op, pos, x);
    ops_need_dtype(op, "pos", pos, DT_I32);
    ops_need_shape(op, "pos", pos, 2, (int64_t[]){x->shape[0], x->shape[1]});
    AIMC_CHECK(isfinite(theta) && theta > 0.0f, "rope: theta = %g, expected a finite value > 0",
               (double)theta);
    backend_for(op, x, x->be->rope != NULL)->rope(x, pos, theta, inverse ? 1 : 0);
}

/* idx is i32 with one entry per row of rows_of (out for gather, src for scatter). */
static void need_row_index(const char *op, const tensor *idx, const tensor *rows_of,
                           const char *rows_arg) {
    char a[80], b[80];
    need_tensor(op, "idx", idx);
    ops_need_same_backend(op, idx, rows_of);
    ops_need_dtype(op, "idx", idx, DT_I32);
    AIMC_CHECK(tensor_numel(idx) == tensor_rows_count(rows_of),
               "%s: idx has shape %s (%lld entries) but %s %s has %lld rows", op,
               tensor_shape_str(idx, a, sizeof a), (long long)tensor_numel(idx), rows_arg,
               tensor_shape_str(rows_of, b, sizeof b), (long long)tensor_rows_count(rows_of));
}

static void need_same_cols(const char *op, const tensor *a, const tensor *b) {
    char x[80], y[80];
    AIMC_CHECK(tensor_cols(a) == tensor_cols(b), "%s: rows of %s and %s differ in width", op,
               tensor_shape_str(a, x, sizeof x), tensor_shape_str(b, y, sizeof y));
}

void op_gather_rows(tensor *out, const tensor *src, const tensor *idx) {
    const char *op = "gather_rows";
    need_activation(op, "src", src);
    need_tensor(op, "out", out);
    ops_need_same_backend(op, out, src);
    AIMC_CHECK(out->dt == src->dt || out->dt == DT_F32,
               "gather_rows: out has dtype %s, expected f32 or the table's %s", dtype_name(out->dt),
               dtype_name(src->dt));
    need_same_cols(op, out, src);
    need_row_index(op, idx, out, "out");
    backend_for(op, src, src->be->gather_rows != NULL)->gather_rows(out, src, idx);
}

void op_scatter_rows(tensor *dst, const tensor *src, const tensor *idx) {
    const char *op = "scatter_rows";
    need_activation(op, "dst", dst);
    need_tensor(op, "src", src);
    ops_need_same_backend(op, src, dst);
    ops_need_dtype(op, "src", src, dst->dt);
    need_same_cols(op, dst, src);
    need_row_index(op, idx, src, "src");
    backend_for(op, dst, dst->be->scatter_rows != NULL)->scatter_rows(dst, src, idx);
}

void op_convert(tensor *dst, const tensor *src) {
    const char *op = "convert";
    char a[80], b[80];
    need_tensor(op, "src", src);
    need_tensor(op, "dst", dst);
    ops_need_same_backend(op, dst, src);
    if (src->dt == DT_I32) {
        ops_need_dtype(op, "dst", dst, DT_I32);
    } else {
        ops_need_float(op, "src", src);
        ops_need_float(op, "dst", dst);
    }
    AIMC_CHECK(tensor_numel(dst) == tensor_numel(src), "convert: dst %s and src %s differ in size",
               tensor_shape_str(dst, a, sizeof a), tensor_shape_str(src, b, sizeof b));
    backend_for(op, src, src->be->convert != NULL)->convert(dst, src);
}

void op_add(tensor *out, const tensor *a, const tensor *b) {
    const char *op = "add";
    need_activation(op, "a", a);
    need_like(op, "b", b, a);
    need_like(op, "out", out, a);
    backend_for(op, a, a->be->add != NULL)->add(out, a, b);
}

void op_scale(tensor *out, const tensor *x, float s) {
    const char *op = "scale";
    need_activation(op, "x", x);
    need_like(op, "out", out, x);
    backend_for(op, x, x->be->scale != NULL)->scale(out, x, s);
}
