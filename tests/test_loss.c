/* cross_entropy, l2norm(+backward) and infonce on the cpu backend, through
 * the checked wrappers, against float64 references written here and
 * finite differences; plus the user-facing error paths. */
#include "../host/ops.h"
#include "../kernels/check.h"
#include "testlib.h"

#define TOL 1e-5        /* f32 op vs float64 reference (relative, vector norm) */
#define FD_TOL_F32 1e-3 /* central differences of the f32 op itself */

static const backend *be;

static tensor f32_2d(float *p, int64_t rows, int64_t cols) {
    return tensor_wrap(p, DT_F32, be, 2, (int64_t[]){rows, cols});
}
static tensor f32_1d(float *p, int64_t n) { return tensor_wrap(p, DT_F32, be, 1, (int64_t[]){n}); }
static tensor i32_1d(int32_t *p, int64_t n) {
    return tensor_wrap(p, DT_I32, be, 1, (int64_t[]){n});
}
static float *falloc(int64_t n) { return tl_alloc((size_t)n * sizeof(float)); }
static double *dalloc(int64_t n) { return tl_alloc((size_t)n * sizeof(double)); }

/* ===== cross-entropy ==================================================== */

/* float64 loss of one row (two-pass max, then log-sum-exp) and, when grad is
 * not NULL, dscale * (softmax - onehot). Ignored rows: 0 and a zero grad. */
static double ref_ce_row(const float *x, int64_t V, int32_t target, double dscale, double *grad) {
    if (target == -100) {
        for (int64_t j = 0; grad && j < V; j++) grad[j] = 0.0;
        return 0.0;
    }
    double m = -INFINITY, s = 0.0;
    for (int64_t j = 0; j < V; j++) m = fmax(m, (double)x[j]);
    for (int64_t j = 0; j < V; j++) s += exp((double)x[j] - m);
    double lse = m + log(s);
    for (int64_t j = 0; grad && j < V; j++)
        grad[j] = dscale * (exp((double)x[j] - lse) - (j == target ? 1.0 : 0.0));
    return lse - (double)x[target];
}

/* Targets: uniform classes, each row ignored with probability p_ignore. */
static void random_targets(int32_t *t, int64_t N, int64_t V, double p_ignore) {
    for (int64_t i = 0; i < N; i++)
        t[i] = rng_uniform(0, 1) < p_ignore ? -100 : (int32_t)rng_int(V);
}

/* logits: N(0, 3^2) when range == 0, else uniform in [-range, range]; plus
 * shift (exp(shift) overflows unless the row max is subtracted). */
static void check_ce_case(int64_t N, int64_t V, double range, double shift, double p_ignore) {
    float *x = falloc(N * V), *work = falloc(N * V), *loss = falloc(N);
    int32_t *t = tl_alloc((size_t)N * sizeof(int32_t));
    double *ref_loss = dalloc(N), *ref_grad = dalloc(N * V);
    if (range > 0) fill_uniform(x, N * V, -range, range);
    else fill_normal(x, N * V, 3.0);
    for (int64_t k = 0; k < N * V; k++) x[k] += (float)shift;
    random_targets(t, N, V, p_ignore);
    float dscale = (float)rng_uniform(0.1, 2.0);
    for (int64_t i = 0; i < N; i++)
        ref_loss[i] = ref_ce_row(x + i * V, V, t[i], dscale, ref_grad + i * V);

    memcpy(work, x, (size_t)(N * V) * sizeof(float));
    poison(loss, N);
    tensor tl = f32_1d(loss, N), tx = f32_2d(work, N, V), tt = i32_1d(t, N);
    op_cross_entropy(&tl, &tx, &tt, dscale);
    double el = rel_err(loss, ref_loss, N), eg = rel_err(work, ref_grad, N * V);
    CHECK(el <= TOL, "cross_entropy N=%lld V=%lld range=%g shift=%g: loss rel err %.3g",
          (long long)N, (long long)V, range, shift, el);
    CHECK(eg <= TOL, "cross_entropy N=%lld V=%lld range=%g shift=%g: dlogits rel err %.3g",
          (long long)N, (long long)V, range, shift, eg);
    free(x), free(work), free(loss), free(t), free(ref_loss), free(ref_grad);
}

/* Every row ignored: loss and dlogits exactly zero. */
static void check_ce_all_ignored(void) {
    int64_t N = 4, V = 1000;
    float *x = falloc(N * V), *loss = falloc(N);
    int32_t t[4] = {-100, -100, -100, -100};
    fill_normal(x, N * V, 3.0);
    poison(loss, N);
    tensor tl = f32_1d(loss, N), tx = f32_2d(x, N, V), tt = i32_1d(t, N);
    op_cross_entropy(&tl, &tx, &tt, 1.0f);
    int zero = 1;
    for (int64_t i = 0; i < N * V; i++) zero &= x[i] == 0.0f;
    for (int64_t i = 0; i < N; i++) zero &= loss[i] == 0.0f;
    CHECK(zero, "cross_entropy with every row ignored: loss and dlogits not all zero");
    free(x), free(loss);
}

/* Loss of one row computed by the op (dlogits discarded). */
static float op_ce_loss_of_row(const float *row, int64_t V, int32_t target, float *scratch) {
    float loss;
    memcpy(scratch, row, (size_t)V * sizeof(float));
    tensor tl = f32_1d(&loss, 1), tx = f32_2d(scratch, 1, V), tt = i32_1d(&target, 1);
    op_cross_entropy(&tl, &tx, &tt, 1.0f);
    return loss;
}

/* Central difference of the op's own loss w.r.t. x[j], using the step the
 * float perturbation actually made. */
static double op_ce_fd(float *row, int64_t V, int32_t target, int64_t j, float *scratch) {
    float x0 = row[j], xp = x0 + 1e-2f, xm = x0 - 1e-2f;
    row[j] = xp;
    double lp = op_ce_loss_of_row(row, V, target, scratch);
    row[j] = xm;
    double lm = op_ce_loss_of_row(row, V, target, scratch);
    row[j] = x0;
    return (lp - lm) / ((double)xp - (double)xm);
}

/* float64 loss of a float64 row. */
static double ref_ce_loss_f64(const double *x, int64_t V, int32_t target) {
    double m = -INFINITY, s = 0.0;
    for (int64_t j = 0; j < V; j++) m = fmax(m, x[j]);
    for (int64_t j = 0; j < V; j++) s += exp(x[j] - m);
    return m + log(s) - x[target];
}

/* Central difference of the float64 reference loss (validates the
 * reference's analytic gradient). */
static double ref_ce_fd(const float *row, int64_t V, int32_t target, int64_t j) {
    double *xd = dalloc(V), h = 1e-5;
    for (int64_t k = 0; k < V; k++) xd[k] = row[k];
    xd[j] += h;
    double lp = ref_ce_loss_f64(xd, V, target);
    xd[j] -= 2 * h;
    double lm = ref_ce_loss_f64(xd, V, target);
    free(xd);
    return (lp - lm) / (2 * h);
}

/* The coordinates probed: all of a small row, else the target, the argmax
 * and a few random classes. */
static int64_t fd_coords(const float *row, int64_t V, int32_t target, int64_t *js) {
    if (V <= 16) {
        for (int64_t j = 0; j < V; j++) js[j] = j;
        return V;
    }
    int64_t amax = 0;
    for (int64_t j = 1; j < V; j++)
        if (row[j] > row[amax]) amax = j;
    js[0] = target, js[1] = amax;
    for (int k = 2; k < 8; k++) js[k] = rng_int(V);
    return 8;
}

static void check_ce_finite_differences(int64_t V) {
    float *row = falloc(V), *grad = falloc(V), *scratch = falloc(V), op_grad[16];
    double *ref_grad = dalloc(V), fd_op[16], fd_ref[16], an_ref[16];
    int64_t js[16];
    fill_normal(row, V, 2.0);
    int32_t target = (int32_t)rng_int(V);
    ref_ce_row(row, V, target, 1.0, ref_grad);
    memcpy(grad, row, (size_t)V * sizeof(float));
    float loss;
    tensor tl = f32_1d(&loss, 1), tx = f32_2d(grad, 1, V), tt = i32_1d(&target, 1);
    op_cross_entropy(&tl, &tx, &tt, 1.0f);
    int64_t n = fd_coords(row, V, target, js);
    for (int64_t k = 0; k < n; k++) {
        fd_op[k] = op_ce_fd(row, V, target, js[k], scratch);
        fd_ref[k] = ref_ce_fd(row, V, target, js[k]);
        op_grad[k] = grad[js[k]];
        an_ref[k] = ref_grad[js[k]];
    }
    double e_op = rel_err(op_grad, fd_op, n), num = 0, den = 0;
    for (int64_t k = 0; k < n; k++) {
        num += pow(an_ref[k] - fd_ref[k], 2);
        den += pow(fd_ref[k], 2);
    }
    double e_ref = sqrt(num / den);
    CHECK(e_op <= FD_TOL_F32, "cross_entropy V=%lld: dlogits vs finite differences of the op %.3g",
          (long long)V, e_op);
    CHECK(e_ref <= 1e-7,
          "cross_entropy V=%lld: float64 reference grad vs its finite differences %.3g",
          (long long)V, e_ref);
    free(row), free(grad), free(scratch), free(ref_grad);
}

static void test_cross_entropy(void) {
    const int64_t vocab[4] = {5, 1000, 32064, 50272};
    for (int k = 0; k < 4; k++) {
        int64_t N = k == 0 ? 13 : 7;
        check_ce_case(N, vocab[k], 0.0, 0.0, 0.3);
        check_ce_case(N, vocab[k], 80.0, 0.0, 0.3); /* large logits: stability */
    }
    check_ce_case(5, 32064, 0.0, 1000.0, 0.2);
    check_ce_case(9, 5, 0.0, -1000.0, 0.2);
    check_ce_case(1, 3, 0.0, 0.0, 0.0);
    check_ce_all_ignored();
    check_ce_finite_differences(5);
    check_ce_finite_differences(1000);
}

/* ===== l2norm =========================================================== */

/* y = x / |x|, and rnorm = 1 / |x|, in float64. */
static void ref_l2norm(const float *x, int64_t rows, int64_t D, double *y, double *rnorm) {
    for (int64_t i = 0; i < rows; i++) {
        double ss = 0;
        for (int64_t j = 0; j < D; j++) ss += (double)x[i * D + j] * x[i * D + j];
        rnorm[i] = 1.0 / sqrt(ss);
        for (int64_t j = 0; j < D; j++) y[i * D + j] = x[i * D + j] * rnorm[i];
    }
}

/* sum(w * normalize(x)) in float64: a scalar whose gradient w.r.t. x is
 * l2norm_backward with dy = w. */
static double ref_weighted_norm_sum(const double *x, const float *w, int64_t D) {
    double ss = 0, dot = 0;
    for (int64_t j = 0; j < D; j++) ss += x[j] * x[j], dot += w[j] * x[j];
    return dot / sqrt(ss);
}

static void check_l2norm_shape(int64_t rows, int64_t D) {
    int64_t n = rows * D;
    float *x = falloc(n), *y = falloc(n), *rn = falloc(rows), *dy = falloc(n), *dx = falloc(n);
    double *ry = dalloc(n), *rrn = dalloc(rows), *fd = dalloc(n), *xd = dalloc(D);
    fill_normal(x, n, 1.5);
    fill_normal(dy, n, 1.0);
    ref_l2norm(x, rows, D, ry, rrn);
    poison(y, n), poison(rn, rows), poison(dx, n);
    tensor tx = f32_2d(x, rows, D), ty = f32_2d(y, rows, D), tr = f32_1d(rn, rows);
    tensor tdy = f32_2d(dy, rows, D), tdx = f32_2d(dx, rows, D);
    op_l2norm(&ty, &tr, &tx);
    op_l2norm_backward(&tdx, &tdy, &ty, &tr);
    for (int64_t i = 0; i < rows; i++) {
        const double h = 1e-6;
        for (int64_t j = 0; j < D; j++) xd[j] = x[i * D + j];
        for (int64_t j = 0; j < D; j++) {
            xd[j] += h;
            double lp = ref_weighted_norm_sum(xd, dy + i * D, D);
            xd[j] -= 2 * h;
            double lm = ref_weighted_norm_sum(xd, dy + i * D, D);
            xd[j] += h;
            fd[i * D + j] = (lp - lm) / (2 * h);
        }
    }
    double ey = rel_err(y, ry, n), er = rel_err(rn, rrn, rows), ed = rel_err(dx, fd, n);
    if (D == 1) { /* y = sign(x): the true gradient is zero, so compare absolutely */
        double zero[1] = {0};
        ed = 0;
        for (int64_t i = 0; i < n; i++) ed = fmax(ed, rel_err(dx + i, zero, 1));
    }
    CHECK(ey <= TOL, "l2norm [%lld, %lld]: y rel err %.3g", (long long)rows, (long long)D, ey);
    CHECK(er <= TOL, "l2norm [%lld, %lld]: rnorm rel err %.3g", (long long)rows, (long long)D, er);
    CHECK(ed <= TOL, "l2norm_backward [%lld, %lld]: dx vs float64 finite differences %.3g",
          (long long)rows, (long long)D, ed);
    free(x), free(y), free(rn), free(dy), free(dx), free(ry), free(rrn), free(fd), free(xd);
}

/* A zero row must not produce NaN: it maps to zero. */
static void check_l2norm_zero_row(void) {
    float x[6] = {0, 0, 0, 3, 4, 0}, y[6], rn[2];
    poison(y, 6), poison(rn, 2);
    tensor tx = f32_2d(x, 2, 3), ty = f32_2d(y, 2, 3), tr = f32_1d(rn, 2);
    op_l2norm(&ty, &tr, &tx);
    CHECK(y[0] == 0 && y[1] == 0 && y[2] == 0 && isfinite(rn[0]),
          "l2norm of a zero row: got [%g %g %g], rnorm %g", y[0], y[1], y[2], rn[0]);
    CHECK(fabsf(y[3] - 0.6f) < 1e-7f && fabsf(y[4] - 0.8f) < 1e-7f && fabsf(rn[1] - 0.2f) < 1e-7f,
          "l2norm of [3 4 0]: got [%g %g %g], rnorm %g", y[3], y[4], y[5], rn[1]);
}

static void test_l2norm(void) {
    check_l2norm_shape(1, 1);
    check_l2norm_shape(3, 1);
    check_l2norm_shape(1, 2);
    check_l2norm_shape(5, 7);
    check_l2norm_shape(3, 768);
    check_l2norm_shape(17, 33);
    check_l2norm_zero_row();
}

/* ===== InfoNCE ========================================================== */

/* float64 CLIP loss of a global batch of N pairs: normalise (when asked),
 * logits = exp(ls) img txt^T, mean over both directions of the CE against
 * the diagonal: (sum_i CE_i2t(i) + sum_i CE_t2i(i)) / (2N). */
static double ref_clip_loss(const double *img, const double *txt, int64_t N, int64_t D,
                            double ls, int normalize) {
    double *a = dalloc(N * D), *b = dalloc(N * D), *row = dalloc(N), s = exp(ls), total = 0;
    for (int64_t i = 0; i < N; i++) {
        double na = 0, nb = 0;
        for (int64_t k = 0; k < D; k++) na += img[i * D + k] * img[i * D + k];
        for (int64_t k = 0; k < D; k++) nb += txt[i * D + k] * txt[i * D + k];
        na = normalize ? 1 / sqrt(na) : 1, nb = normalize ? 1 / sqrt(nb) : 1;
        for (int64_t k = 0; k < D; k++) {
            a[i * D + k] = img[i * D + k] * na;
            b[i * D + k] = txt[i * D + k] * nb;
        }
    }
    for (int dir = 0; dir < 2; dir++) {
        const double *r = dir ? b : a, *c = dir ? a : b;
        for (int64_t i = 0; i < N; i++) {
            double m = -INFINITY, sum = 0;
            for (int64_t j = 0; j < N; j++) {
                double d = 0;
                for (int64_t k = 0; k < D; k++) d += r[i * D + k] * c[j * D + k];
                row[j] = s * d, m = fmax(m, row[j]);
            }
            for (int64_t j = 0; j < N; j++) sum += exp(row[j] - m);
            total += m + log(sum) - row[i];
        }
    }
    free(a), free(b), free(row);
    return total / (2.0 * N);
}

/* The float64 loss and its gradients by central differences: g_img, g_txt
 * [N, D] and *g_ls (w.r.t. logit_scale). */
typedef struct clip_ref {
    double loss, g_ls, *g_img, *g_txt;
} clip_ref;

static clip_ref ref_clip_fd(const float *img, const float *txt, int64_t N, int64_t D, double ls,
                            int normalize) {
    clip_ref r = {0, 0, dalloc(N * D), dalloc(N * D)};
    double *a = dalloc(N * D), *b = dalloc(N * D), h = 1e-6;
    for (int64_t k = 0; k < N * D; k++) a[k] = img[k], b[k] = txt[k];
    r.loss = ref_clip_loss(a, b, N, D, ls, normalize);
    for (int side = 0; side < 2; side++) {
        double *v = side ? b : a, *g = side ? r.g_txt : r.g_img;
        for (int64_t k = 0; k < N * D; k++) {
            double v0 = v[k];
            v[k] = v0 + h;
            double lp = ref_clip_loss(a, b, N, D, ls, normalize);
            v[k] = v0 - h;
            double lm = ref_clip_loss(a, b, N, D, ls, normalize);
            v[k] = v0;
            g[k] = (lp - lm) / (2 * h);
        }
    }
    r.g_ls = (ref_clip_loss(a, b, N, D, ls + h, normalize) -
              ref_clip_loss(a, b, N, D, ls - h, normalize)) / (2 * h);
    free(a), free(b);
    return r;
}
static void clip_ref_free(clip_ref *r) { free(r->g_img), free(r->g_txt); }

/* The op's outputs for one rank. */
typedef struct infonce_out {
    float *d_img, *d_txt, *d_img_all, *d_txt_all, loss, d_ls;
} infonce_out;

static infonce_out infonce_out_new(int64_t b, int64_t N, int64_t D) {
    infonce_out o = {falloc(b * D), falloc(b * D), falloc(N * D), falloc(N * D), NAN, NAN};
    poison(o.d_img, b * D), poison(o.d_txt, b * D);
    poison(o.d_img_all, N * D), poison(o.d_txt_all, N * D);
    return o;
}
static void infonce_out_free(infonce_out *o) {
    free(o->d_img), free(o->d_txt), free(o->d_img_all), free(o->d_txt_all);
}

/* Runs the op for local rows [offset, offset + b) of the global batch
 * img_all, txt_all [N, D]. */
static infonce_out run_infonce(float *img_all, float *txt_all, int64_t N, int64_t D,
                               int64_t offset, int64_t b, float ls, float dscale) {
    infonce_out o = infonce_out_new(b, N, D);
    tensor img = f32_2d(img_all + offset * D, b, D), txt = f32_2d(txt_all + offset * D, b, D);
    tensor ia = f32_2d(img_all, N, D), ta = f32_2d(txt_all, N, D);
    tensor di = f32_2d(o.d_img, b, D), dt = f32_2d(o.d_txt, b, D);
    tensor dia = f32_2d(o.d_img_all, N, D), dta = f32_2d(o.d_txt_all, N, D);
    tensor tl = f32_1d(&o.loss, 1), tls = f32_1d(&o.d_ls, 1);
    op_infonce(&tl, &di, &dt, &dia, &dta, &tls, &img, &txt, &ia, &ta, offset, ls, dscale);
    return o;
}

/* Single process (the whole batch is this rank's): its full feature gradient
 * is the rows' part plus the columns' part. */
static infonce_out run_infonce_global(float *img, float *txt, int64_t N, int64_t D, float ls) {
    infonce_out o = run_infonce(img, txt, N, D, 0, N, ls, 1.0f / (2.0f * N));
    for (int64_t k = 0; k < N * D; k++) {
        o.d_img[k] += o.d_img_all[k];
        o.d_txt[k] += o.d_txt_all[k];
    }
    return o;
}

/* y = l2norm(x) for [N, D]; rnorm [N]. */
static void op_normalize_rows(float *y, float *rnorm, float *x, int64_t N, int64_t D) {
    tensor tx = f32_2d(x, N, D), ty = f32_2d(y, N, D), tr = f32_1d(rnorm, N);
    poison(y, N * D), poison(rnorm, N);
    op_l2norm(&ty, &tr, &tx);
}
static void op_normalize_backward(float *dx, float *dy, float *y, float *rnorm, int64_t N,
                                  int64_t D) {
    tensor tdx = f32_2d(dx, N, D), tdy = f32_2d(dy, N, D), ty = f32_2d(y, N, D),
           tr = f32_1d(rnorm, N);
    poison(dx, N * D);
    op_l2norm_backward(&tdx, &tdy, &ty, &tr);
}

/* Single process, whole batch: raw features -> l2norm -> infonce -> back
 * through l2norm, against the float64 CLIP loss and its finite differences
 * w.r.t. the raw features and logit_scale. */
static void check_infonce_single(int64_t N, int64_t D, float ls) {
    float *raw_i = falloc(N * D), *raw_t = falloc(N * D), *ni = falloc(N * D), *nt = falloc(N * D);
    float *ri = falloc(N), *rt = falloc(N), *gi = falloc(N * D), *gt = falloc(N * D);
    fill_normal(raw_i, N * D, 1.0), fill_normal(raw_t, N * D, 1.0);
    op_normalize_rows(ni, ri, raw_i, N, D), op_normalize_rows(nt, rt, raw_t, N, D);
    infonce_out o = run_infonce_global(ni, nt, N, D, ls);
    op_normalize_backward(gi, o.d_img, ni, ri, N, D);
    op_normalize_backward(gt, o.d_txt, nt, rt, N, D);

    clip_ref ref = ref_clip_fd(raw_i, raw_t, N, D, ls, 1);
    float mean = o.loss / (2.0f * N);
    double el = rel_err(&mean, &ref.loss, 1), es = rel_err(&o.d_ls, &ref.g_ls, 1);
    double ei = rel_err(gi, ref.g_img, N * D), et = rel_err(gt, ref.g_txt, N * D);
    char what[80];
    snprintf(what, sizeof what, "infonce N=%lld D=%lld ls=%g", (long long)N, (long long)D, ls);
    CHECK(el <= TOL, "%s: mean loss %.8g vs float64 %.8g", what, mean, ref.loss);
    CHECK(ei <= TOL, "%s: d raw img vs float64 finite differences %.3g", what, ei);
    CHECK(et <= TOL, "%s: d raw txt vs float64 finite differences %.3g", what, et);
    CHECK(es <= TOL, "%s: d logit_scale %.8g vs float64 %.8g", what, o.d_ls, ref.g_ls);
    infonce_out_free(&o);
    clip_ref_free(&ref);
    free(raw_i), free(raw_t), free(ni), free(nt), free(ri), free(rt), free(gi), free(gt);
}

/* Unit rows in f32 (normalised in float64 first). */
static void random_unit_rows(float *x, int64_t N, int64_t D) {
    double *v = dalloc(D);
    for (int64_t i = 0; i < N; i++) {
        double ss = 0;
        for (int64_t k = 0; k < D; k++) v[k] = rng_normal(), ss += v[k] * v[k];
        for (int64_t k = 0; k < D; k++) x[i * D + k] = (float)(v[k] / sqrt(ss));
    }
    free(v);
}

/* What an all-reduce over the ranks would produce: summed loss and
 * d logit_scale, and every rank's full feature gradient
 * d_rows + (columns' gradients summed over ranks)[own slice], concatenated. */
typedef struct rank_sum {
    double loss, d_ls;
    float *g_img, *g_txt; /* [N, D] */
} rank_sum;

#define MAX_RANKS 8

static rank_sum simulate_ranks(float *img, float *txt, int64_t N, int64_t D,
                               const int64_t *sizes, int R, float ls) {
    rank_sum rs = {0, 0, falloc(N * D), falloc(N * D)};
    double *ci = dalloc(N * D), *ct = dalloc(N * D);
    memset(ci, 0, (size_t)(N * D) * sizeof(double));
    memset(ct, 0, (size_t)(N * D) * sizeof(double));
    infonce_out o[MAX_RANKS];
    int64_t off[MAX_RANKS + 1] = {0};
    for (int r = 0; r < R; r++) {
        off[r + 1] = off[r] + sizes[r];
        o[r] = run_infonce(img, txt, N, D, off[r], sizes[r], ls, 1.0f / (2.0f * N));
        rs.loss += o[r].loss, rs.d_ls += o[r].d_ls;
        for (int64_t k = 0; k < N * D; k++) ci[k] += o[r].d_img_all[k], ct[k] += o[r].d_txt_all[k];
    }
    for (int r = 0; r < R; r++) {
        for (int64_t k = 0; k < sizes[r] * D; k++) {
            rs.g_img[off[r] * D + k] = (float)(o[r].d_img[k] + ci[off[r] * D + k]);
            rs.g_txt[off[r] * D + k] = (float)(o[r].d_txt[k] + ct[off[r] * D + k]);
        }
        infonce_out_free(&o[r]);
    }
    free(ci), free(ct);
    return rs;
}

/* R ranks with different local batch sizes on one process: summed losses and
 * gradients equal the single-process global result and the float64 reference
 * (the latter w.r.t. the normalised features the op takes; its finite
 * differences only for small batches, they cost O(N^3 D^2)). */
static void check_infonce_ranks(const int64_t *sizes, int R, int64_t D, float ls) {
    AIMC_CHECK(R <= MAX_RANKS, "test: %d ranks (at most %d)", R, MAX_RANKS);
    int64_t N = 0;
    for (int r = 0; r < R; r++) N += sizes[r];
    float *img = falloc(N * D), *txt = falloc(N * D);
    random_unit_rows(img, N, D), random_unit_rows(txt, N, D);
    infonce_out g = run_infonce_global(img, txt, N, D, ls);
    rank_sum rs = simulate_ranks(img, txt, N, D, sizes, R, ls);
    int with_fd = N * D <= 4096;
    clip_ref ref = {0, 0, NULL, NULL};
    if (with_fd) ref = ref_clip_fd(img, txt, N, D, ls, 0);
    double *di = dalloc(N * D), *dt = dalloc(N * D);
    for (int64_t k = 0; k < N * D; k++) di[k] = img[k], dt[k] = txt[k];
    double sum_ref = ref_clip_loss(di, dt, N, D, ls, 0) * 2.0 * N; /* op: sum, not mean */

    float rank_loss = (float)rs.loss, rank_ls = (float)rs.d_ls;
    double e_rank_i = rel_err_f32(rs.g_img, g.d_img, N * D);
    double e_rank_t = rel_err_f32(rs.g_txt, g.d_txt, N * D);
    CHECK(rel_err(&rank_loss, &sum_ref, 1) <= TOL && rel_err(&g.loss, &sum_ref, 1) <= TOL,
          "infonce %d ranks N=%lld: summed loss %.8g, global %.8g, float64 %.8g", R,
          (long long)N, rank_loss, g.loss, sum_ref);
    CHECK(e_rank_i <= TOL && e_rank_t <= TOL,
          "infonce %d ranks N=%lld: feature grads vs the global run (%.3g, %.3g)", R,
          (long long)N, e_rank_i, e_rank_t);
    CHECK(rel_err_f32(&rank_ls, &g.d_ls, 1) <= TOL,
          "infonce %d ranks N=%lld: d logit_scale summed %.8g, global %.8g", R, (long long)N,
          rank_ls, g.d_ls);
    if (with_fd) {
        double e_ref_i = rel_err(g.d_img, ref.g_img, N * D);
        double e_ref_t = rel_err(g.d_txt, ref.g_txt, N * D);
        CHECK(e_ref_i <= TOL && e_ref_t <= TOL,
              "infonce N=%lld: feature grads vs float64 finite differences (%.3g, %.3g)",
              (long long)N, e_ref_i, e_ref_t);
        CHECK(rel_err(&g.d_ls, &ref.g_ls, 1) <= TOL,
              "infonce N=%lld: d logit_scale %.8g vs float64 finite differences %.8g",
              (long long)N, g.d_ls, ref.g_ls);
        clip_ref_free(&ref);
    }
    infonce_out_free(&g);
    free(rs.g_img), free(rs.g_txt), free(img), free(txt), free(di), free(dt);
}

static void test_infonce(void) {
    check_infonce_single(7, 9, 2.6592600f); /* CLIP's initial ln(1/0.07) */
    check_infonce_single(5, 16, 4.6051702f); /* trained ln 100: logits up to +-100 */
    check_infonce_single(1, 3, 0.5f);
    const int64_t sizes[3] = {3, 5, 2};
    check_infonce_ranks(sizes, 3, 12, 2.6592600f);
    check_infonce_ranks(sizes, 3, 7, 4.6051702f);
    const int64_t one_empty[3] = {4, 0, 3};
    check_infonce_ranks(one_empty, 3, 5, 1.0f);
    const int64_t five[5] = {1, 6, 2, 4, 3};
    check_infonce_ranks(five, 5, 8, 3.0f);
    const int64_t large[3] = {40, 17, 31};
    check_infonce_ranks(large, 3, 128, 4.6051702f);
}

/* ===== error paths ====================================================== */

static void ce_with_targets(const int32_t *targets, const backend *on) {
    float x[15] = {0}, loss[3];
    int32_t t[3];
    memcpy(t, targets, sizeof t);
    tensor tl = tensor_wrap(loss, DT_F32, on, 1, (int64_t[]){3});
    tensor tx = tensor_wrap(x, DT_F32, on, 2, (int64_t[]){3, 5});
    tensor tt = tensor_wrap(t, DT_I32, on, 1, (int64_t[]){3});
    op_cross_entropy(&tl, &tx, &tt, 1.0f);
}
static void ce_target_too_big(void) { ce_with_targets((int32_t[]){1, -100, 7}, be); }
static void ce_target_negative(void) { ce_with_targets((int32_t[]){-1, 0, 0}, be); }
static void ce_on_backend_without_it(void) {
    static backend fake;
    fake = *be;
    fake.name = "fake";
    fake.cross_entropy = NULL;
    ce_with_targets((int32_t[]){0, 1, 2}, &fake);
}
static void ce_loss_wrong_size(void) {
    float x[10] = {0}, loss[3];
    int32_t t[2] = {0, 1};
    tensor tl = f32_1d(loss, 3), tx = f32_2d(x, 2, 5), tt = i32_1d(t, 2);
    op_cross_entropy(&tl, &tx, &tt, 1.0f);
}
static void infonce_offset_outside(void) {
    float f[12] = {0}, g[12], l, s;
    tensor r = f32_2d(f, 2, 3), a = f32_2d(f, 4, 3), dr = f32_2d(g, 2, 3), da = f32_2d(g, 4, 3);
    tensor tl = f32_1d(&l, 1), ts = f32_1d(&s, 1);
    op_infonce(&tl, &dr, &dr, &da, &da, &ts, &r, &r, &a, &a, 3, 1.0f, 1.0f);
}

static void expect_death(void (*fn)(void), const char *what, const char *want1,
                         const char *want2) {
    char err[512];
    int code = tl_run_child(fn, err, sizeof err);
    CHECK(code == 1 && strstr(err, want1) && strstr(err, want2),
          "%s: want exit 1 with \"%s\" and \"%s\", got exit %d: %s", what, want1, want2, code, err);
}

static void test_errors(void) {
    expect_death(ce_target_too_big, "target 7 of 5 classes", "row 2", "target 7");
    expect_death(ce_target_negative, "target -1", "row 0", "target -1");
    expect_death(ce_on_backend_without_it, "missing op",
                 "op cross_entropy is not implemented on backend fake", "fake");
    expect_death(ce_loss_wrong_size, "loss of the wrong size", "cross_entropy", "loss");
    expect_death(infonce_offset_outside, "offset past the columns", "infonce", "[3, 5)");
}

int main(void) {
    tests_begin("test_loss");
    be = backend_cpu();
    test_errors();
    test_cross_entropy();
    test_l2norm();
    test_infonce();
    return tests_done();
}
