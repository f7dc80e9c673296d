/* Checked op calls: every model and training step goes through these.
 * Each wrapper validates backends, dtypes and shapes (a mismatch aborts with
 * the op name and both shapes) and then calls the backend's implementation
 * documented in kernels/backend.h. */
#ifndef AIMC_OPS_H
#define AIMC_OPS_H
#include "../kernels/backend.h"

void op_matmul(tensor *out, const tensor *a, const tensor *b, const tensor *bias, int trans_a,
               int trans_b, float beta);
void op_bias_grad(tensor *db, const tensor *dy, float beta);
void op_attention(tensor *out, tensor *lse, const tensor *q, const tensor *k, const tensor *v,
                  const attn_opts *o);
void op_attention_backward(tensor *dq, tensor *dk, tensor *dv, const tensor *dout,
                           const tensor *q, const tensor *k, const tensor *v,
                           const tensor *out, const tensor *lse, const attn_opts *o);

void op_layernorm(tensor *y, tensor *mean, tensor *rstd, const tensor *x, const tensor *w,
                  const tensor *b, float eps);
void op_layernorm_backward(tensor *dx, tensor *dw, tensor *db, const tensor *dy,
                           const tensor *x, const tensor *w, const tensor *mean,
                           const tensor *rstd);
void op_rmsnorm(tensor *y, tensor *rstd, const tensor *x, const tensor *w, float eps);
void op_rmsnorm_backward(tensor *dx, tensor *dw, const tensor *dy, const tensor *x,
                         const tensor *w, const tensor *rstd);
void op_act(act_kind kind, tensor *y, const tensor *x);
void op_act_backward(act_kind kind, tensor *dx, const tensor *dy, const tensor *x);
void op_swiglu(tensor *y, const tensor *gate, const tensor *up);
void op_swiglu_backward(tensor *dgate, tensor *dup, const tensor *dy, const tensor *gate,
                        const tensor *up);
void op_rope(tensor *x, const tensor *pos, float theta, int inverse);
void op_gather_rows(tensor *out, const tensor *src, const tensor *idx);
void op_scatter_rows(tensor *dst, const tensor *src, const tensor *idx);
void op_convert(tensor *dst, const tensor *src);
void op_add(tensor *out, const tensor *a, const tensor *b);
void op_scale(tensor *out, const tensor *x, float s);

void op_cross_entropy(tensor *loss, tensor *logits, const tensor *targets, float dscale);
void op_l2norm(tensor *y, tensor *rnorm, const tensor *x);
void op_l2norm_backward(tensor *dx, const tensor *dy, const tensor *y, const tensor *rnorm);
void op_infonce(tensor *loss, tensor *d_img, tensor *d_txt, tensor *d_img_all,
                tensor *d_txt_all, tensor *d_logit_scale, const tensor *img,
                const tensor *txt, const tensor *img_all, const tensor *txt_all,
                int64_t offset, float logit_scale, float dscale);
void op_adamw(tensor *param, const tensor *grad, tensor *m, tensor *v, const adamw_opts *o);
void op_sumsq(tensor *out, const tensor *x);

const char *act_name(act_kind kind);
/* Parses "gelu", "gelu_tanh" (also "gelu_pytorch_tanh", "gelu_new"),
 * "quick_gelu", "silu", "relu" (HF hidden_act spellings); -1 if unknown. */
int act_parse(const char *name);

/* Shared validation helpers for the wrappers (ops_check.c). Each aborts with
 * "op: what" and the shapes involved. */
void ops_need_same_backend(const char *op, const tensor *a, const tensor *b);
void ops_need_dtype(const char *op, const char *arg, const tensor *t, dtype dt);
void ops_need_float(const char *op, const char *arg, const tensor *t);
void ops_need_shape(const char *op, const char *arg, const tensor *t, int ndim,
                    const int64_t *shape);
void ops_need_same_shape(const char *op, const tensor *a, const tensor *b);
#endif
