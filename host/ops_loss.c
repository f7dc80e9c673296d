/* Checked wrappers of the loss and optimiser ops: cross_entropy, l2norm(+bwd),
 * infonce, adamw, sumsq. Every tensor of this family is f32 (losses, their
 * gradients and optimiser state stay f32 on every backend). */
#include "ops.h"
#include "../kernels/check.h"

/* The backend that runs the op: the one owning `first`; every other tensor
 * must live there too. */
static const backend *op_backend(const char *op, const tensor *first) {
    AIMC_CHECK(first->be != NULL, "%s: tensor has no backend", op);
    return first->be;
}

static void need_impl(const char *op, int present, const backend *be) {
    if (!present) aimc_die("op %s is not implemented on backend %s", op, be->name);
}

/* Same backend and dtype f32 for each of n tensors (NULL entries skipped). */
static void need_f32_on(const char *op, const tensor *first, const char *const *names,
                        const tensor *const *ts, int n) {
    for (int i = 0; i < n; i++) {
        if (!ts[i]) continue;
        ops_need_same_backend(op, first, ts[i]);
        ops_need_dtype(op, names[i], ts[i], DT_F32);
    }
}

static void need_numel(const char *op, const char *arg, const tensor *t, int64_t n) {
    char s[80];
    AIMC_CHECK(tensor_numel(t) == n, "%s: %s has shape %s (%lld elements), expected %lld", op,
               arg, tensor_shape_str(t, s, sizeof s), (long long)tensor_numel(t), (long long)n);
}

void op_cross_entropy(tensor *loss, tensor *logits, const tensor *targets, float dscale) {
    const char *op = "cross_entropy";
    const backend *be = op_backend(op, logits);
    need_f32_on(op, logits, (const char *const[]){"logits", "loss"},
                (const tensor *const[]){logits, loss}, 2);
    ops_need_same_backend(op, logits, targets);
    ops_need_dtype(op, "targets", targets, DT_I32);
    int64_t rows = tensor_rows_count(logits);
    AIMC_CHECK(tensor_cols(logits) >= 1, "%s: logits have no classes (last dim 0)", op);
    need_numel(op, "loss", loss, rows);
    need_numel(op, "targets", targets, rows);
    need_impl(op, be->cross_entropy != NULL, be);
    be->cross_entropy(loss, logits, targets, dscale);
}

void op_l2norm(tensor *y, tensor *rnorm, const tensor *x) {
    const char *op = "l2norm";
    const backend *be = op_backend(op, x);
    need_f32_on(op, x, (const char *const[]){"x", "y", "rnorm"},
                (const tensor *const[]){x, y, rnorm}, 3);
    ops_need_same_shape(op, y, x);
    need_numel(op, "rnorm", rnorm, tensor_rows_count(x));
    need_impl(op, be->l2norm != NULL, be);
    be->l2norm(y, rnorm, x);
}

void op_l2norm_backward(tensor *dx, const tensor *dy, const tensor *y, const tensor *rnorm) {
    const char *op = "l2norm_backward";
    const backend *be = op_backend(op, y);
    need_f32_on(op, y, (const char *const[]){"y", "dy", "dx", "rnorm"},
                (const tensor *const[]){y, dy, dx, rnorm}, 4);
    ops_need_same_shape(op, dy, y);
    ops_need_same_shape(op, dx, y);
    need_numel(op, "rnorm", rnorm, tensor_rows_count(y));
    need_impl(op, be->l2norm_backward != NULL, be);
    be->l2norm_backward(dx, dy, y, rnorm);
}

/* img, txt, d_img, d_txt [b, D]; img_all, txt_all, d_img_all, d_txt_all
 * [N, D]; loss, d_logit_scale [1]; this rank's rows are columns
 * [offset, offset + b) of the global batch. */
static void infonce_check_shapes(const char *op, const tensor *img, const tensor *txt,
                                 const tensor *img_all, const tensor *txt_all,
                                 const tensor *d_img, const tensor *d_txt,
                                 const tensor *d_img_all, const tensor *d_txt_all,
                                 const tensor *loss, const tensor *d_logit_scale,
                                 int64_t offset) {
    AIMC_CHECK(img->ndim == 2 && img_all->ndim == 2, "%s: img and img_all must be 2-D [rows, D]",
               op);
    int64_t b = img->shape[0], D = img->shape[1], N = img_all->shape[0];
    const int64_t local[2] = {b, D}, global[2] = {N, D}, one[1] = {1};
    ops_need_shape(op, "txt", txt, 2, local);
    ops_need_shape(op, "d_img", d_img, 2, local);
    ops_need_shape(op, "d_txt", d_txt, 2, local);
    ops_need_shape(op, "img_all", img_all, 2, global);
    ops_need_shape(op, "txt_all", txt_all, 2, global);
    ops_need_shape(op, "d_img_all", d_img_all, 2, global);
    ops_need_shape(op, "d_txt_all", d_txt_all, 2, global);
    ops_need_shape(op, "loss", loss, 1, one);
    ops_need_shape(op, "d_logit_scale", d_logit_scale, 1, one);
    AIMC_CHECK(offset >= 0 && offset + b <= N,
               "%s: local rows [%lld, %lld) fall outside the %lld gathered columns", op,
               (long long)offset, (long long)(offset + b), (long long)N);
}

void op_infonce(tensor *loss, tensor *d_img, tensor *d_txt, tensor *d_img_all,
                tensor *d_txt_all, tensor *d_logit_scale, const tensor *img,
                const tensor *txt, const tensor *img_all, const tensor *txt_all,
                int64_t offset, float logit_scale, float dscale) {
    const char *op = "infonce";
    const backend *be = op_backend(op, img);
    need_f32_on(op, img,
                (const char *const[]){"img", "txt", "img_all", "txt_all", "d_img", "d_txt",
                                      "d_img_all", "d_txt_all", "loss", "d_logit_scale"},
                (const tensor *const[]){img, txt, img_all, txt_all, d_img, d_txt, d_img_all,
                                        d_txt_all, loss, d_logit_scale},
                10);
    infonce_check_shapes(op, img, txt, img_all, txt_all, d_img, d_txt, d_img_all, d_txt_all,
                         loss, d_logit_scale, offset);
    need_impl(op, be->infonce != NULL, be);
    be->infonce(loss, d_img, d_txt, d_img_all, d_txt_all, d_logit_scale, img, txt, img_all,
                txt_all, offset, logit_scale, dscale);
}

void op_adamw(tensor *param, const tensor *grad, tensor *m, tensor *v, const adamw_opts *o) {
    const char *op = "adamw";
    const backend *be = op_backend(op, param);
    need_f32_on(op, param, (const char *const[]){"param", "grad", "m", "v"},
                (const tensor *const[]){param, grad, m, v}, 4);
    ops_need_same_shape(op, param, grad);
    ops_need_same_shape(op, param, m);
    ops_need_same_shape(op, param, v);
    AIMC_CHECK(o != NULL, "%s: no options", op);
    AIMC_CHECK(o->step >= 1, "%s: step %lld (steps count from 1 for bias correction)", op,
               (long long)o->step);
    need_impl(op, be->adamw != NULL, be);
    be->adamw(param, grad, m, v, o);
}

void op_sumsq(tensor *out, const tensor *x) {
    const char *op = "sumsq";
    const backend *be = op_backend(op, x);
    need_f32_on(op, x, (const char *const[]){"x", "out"}, (const tensor *const[]){x, out}, 2);
    need_numel(op, "out", out, 1);
    need_impl(op, be->sumsq != NULL, be);
    be->sumsq(out, x);
}
