/* Checked wrappers for the linear family: matmul, bias_grad, attention and
 * its backward. Semantics: kernels/backend.h. A shape, dtype or backend
 * mismatch is a bug in the calling model, so it aborts with file:line, the
 * op's name and the shapes involved; an op the backend lacks is reported as
 * a plain error. */
#include "../kernels/check.h"
#include "ops.h"
#include <math.h>

static void need_tensor(const char *op, const char *arg, const tensor *t) {
    AIMC_CHECK(t != NULL, "%s: %s is NULL", op, arg);
    AIMC_CHECK(t->be != NULL, "%s: %s has no backend", op, arg);
}

static void need_impl(const char *op, const backend *be, int implemented) {
    if (!implemented) aimc_die("op %s is not implemented on backend %s", op, be->name);
}

/* ---- matmul ---------------------------------------------------------------- */

/* Product of every dim but the last (unlike tensor_rows_count, right when
 * the last dim is 0, as in a matmul with K = 0). */
static int64_t leading_rows(const tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim - 1; i++) n *= t->shape[i];
    return n;
}

/* out[M,N] = op(a)[M,K] . op(b)[K,N]: a, b and out are read as 2-D
 * [rows, cols] with their leading dims flattened. */
static void matmul_check_shapes(const tensor *out, const tensor *a, const tensor *b,
                                const tensor *bias, int trans_a, int trans_b) {
    int64_t m = trans_a ? tensor_cols(a) : leading_rows(a);
    int64_t ka = trans_a ? leading_rows(a) : tensor_cols(a);
    int64_t kb = trans_b ? tensor_cols(b) : leading_rows(b);
    int64_t n = trans_b ? leading_rows(b) : tensor_cols(b);
    char sa[80], sb[80], so[80];
    tensor_shape_str(a, sa, sizeof sa);
    tensor_shape_str(b, sb, sizeof sb);
    tensor_shape_str(out, so, sizeof so);
    AIMC_CHECK(ka == kb,
               "op_matmul: a %s (trans_a=%d) and b %s (trans_b=%d) disagree on K (%lld vs %lld)",
               sa, trans_a, sb, trans_b, (long long)ka, (long long)kb);
    AIMC_CHECK(leading_rows(out) == m && tensor_cols(out) == n,
               "op_matmul: out %s should be [%lld rows, %lld cols] for a %s (trans_a=%d) and b %s "
               "(trans_b=%d)",
               so, (long long)m, (long long)n, sa, trans_a, sb, trans_b);
    if (bias) {
        int64_t want[1] = {n};
        ops_need_shape("op_matmul", "bias", bias, 1, want);
    }
}

void op_matmul(tensor *out, const tensor *a, const tensor *b, const tensor *bias, int trans_a,
               int trans_b, float beta) {
    const char *op = "op_matmul";
    need_tensor(op, "out", out);
    need_tensor(op, "a", a);
    need_tensor(op, "b", b);
    ops_need_same_backend(op, out, a);
    ops_need_same_backend(op, out, b);
    ops_need_float(op, "out", out);
    ops_need_float(op, "a", a);
    ops_need_float(op, "b", b);
    if (bias) {
        need_tensor(op, "bias", bias);
        ops_need_same_backend(op, out, bias);
        ops_need_float(op, "bias", bias);
    }
    AIMC_CHECK(isfinite(beta), "op_matmul: beta is %g", (double)beta);
    matmul_check_shapes(out, a, b, bias, trans_a, trans_b);
    need_impl("matmul", out->be, out->be->matmul != NULL);
    out->be->matmul(out, a, b, bias, trans_a, trans_b, beta);
}

void op_bias_grad(tensor *db, const tensor *dy, float beta) {
    const char *op = "op_bias_grad";
    need_tensor(op, "db", db);
    need_tensor(op, "dy", dy);
    ops_need_same_backend(op, db, dy);
    ops_need_float(op, "db", db);
    ops_need_float(op, "dy", dy);
    int64_t want[1] = {tensor_cols(dy)};
    ops_need_shape(op, "db", db, 1, want);
    AIMC_CHECK(isfinite(beta), "op_bias_grad: beta is %g", (double)beta);
    need_impl("bias_grad", db->be, db->be->bias_grad != NULL);
    db->be->bias_grad(db, dy, beta);
}

/* ---- attention ------------------------------------------------------------- */

/* q [B, Tq, Hq, hd], k and v [B, Tk, Hkv, hd] with Hq a multiple of Hkv, one
 * float dtype for the three; the optional mask [B, Tk] and bias [B, Tq, Tk]
 * are f32 on the same backend. */
static void attention_check_inputs(const char *op, const tensor *q, const tensor *k,
                                   const tensor *v, const attn_opts *o) {
    AIMC_CHECK(o != NULL, "%s: attn_opts is NULL", op);
    need_tensor(op, "q", q);
    need_tensor(op, "k", k);
    need_tensor(op, "v", v);
    ops_need_same_backend(op, q, k);
    ops_need_same_backend(op, q, v);
    ops_need_float(op, "q", q);
    ops_need_dtype(op, "k", k, q->dt);
    ops_need_dtype(op, "v", v, q->dt);
    char sq[80], sk[80];
    tensor_shape_str(q, sq, sizeof sq);
    tensor_shape_str(k, sk, sizeof sk);
    AIMC_CHECK(q->ndim == 4 && k->ndim == 4, "%s: q %s and k %s must be [B, T, H, head_dim]", op,
               sq, sk);
    int64_t b = q->shape[0], tq = q->shape[1], hq = q->shape[2], hd = q->shape[3];
    int64_t tk = k->shape[1], hkv = k->shape[2];
    AIMC_CHECK(
        k->shape[0] == b && k->shape[3] == hd && hkv > 0 && hq % hkv == 0,
        "%s: k %s does not fit q %s (same batch and head_dim, query heads a multiple of kv heads)",
        op, sk, sq);
    ops_need_shape(op, "v", v, 4, k->shape);
    AIMC_CHECK(isfinite(o->scale), "%s: scale is %g", op, (double)o->scale);
    if (o->key_mask) {
        int64_t want[2] = {b, tk};
        need_tensor(op, "key_mask", o->key_mask);
        ops_need_same_backend(op, q, o->key_mask);
        ops_need_dtype(op, "key_mask", o->key_mask, DT_F32);
        ops_need_shape(op, "key_mask", o->key_mask, 2, want);
    }
    if (o->bias) {
        int64_t want[3] = {b, tq, tk};
        need_tensor(op, "bias", o->bias);
        ops_need_same_backend(op, q, o->bias);
        ops_need_dtype(op, "bias", o->bias, DT_F32);
        ops_need_shape(op, "bias", o->bias, 3, want);
    }
}

/* A tensor shaped like ref: same backend, shape and dtype. */
static void need_like(const char *op, const char *arg, const tensor *t, const tensor *ref) {
    need_tensor(op, arg, t);
    ops_need_same_backend(op, t, ref);
    ops_need_dtype(op, arg, t, ref->dt);
    ops_need_shape(op, arg, t, ref->ndim, ref->shape);
}

/* lse [B, Hq, Tq] f32 for q [B, Tq, Hq, hd]. */
static void need_lse(const char *op, const tensor *lse, const tensor *q) {
    int64_t want[3] = {q->shape[0], q->shape[2], q->shape[1]};
    need_tensor(op, "lse", lse);
    ops_need_same_backend(op, lse, q);
    ops_need_dtype(op, "lse", lse, DT_F32);
    ops_need_shape(op, "lse", lse, 3, want);
}

void op_attention(tensor *out, tensor *lse, const tensor *q, const tensor *k, const tensor *v,
                  const attn_opts *o) {
    const char *op = "op_attention";
    attention_check_inputs(op, q, k, v, o);
    need_like(op, "out", out, q);
    if (lse) need_lse(op, lse, q);
    need_impl("attention", q->be, q->be->attention != NULL);
    q->be->attention(out, lse, q, k, v, o);
}

void op_attention_backward(tensor *dq, tensor *dk, tensor *dv, const tensor *dout, const tensor *q,
                           const tensor *k, const tensor *v, const tensor *out, const tensor *lse,
                           const attn_opts *o) {
    const char *op = "op_attention_backward";
    attention_check_inputs(op, q, k, v, o);
    need_like(op, "dout", dout, q);
    need_like(op, "out", out, q);
    need_lse(op, lse, q);
    need_like(op, "dq", dq, q);
    need_like(op, "dk", dk, k);
    need_like(op, "dv", dv, k);
    need_impl("attention_backward", q->be, q->be->attention_backward != NULL);
    q->be->attention_backward(dq, dk, dv, dout, q, k, v, out, lse, o);
}
