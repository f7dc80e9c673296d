/* LayerNorm and RMSNorm (op_layernorm*, op_rmsnorm*) against float64
 * references written here, with finite-difference checks of the reference
 * gradients, over odd widths and eps 1e-5 / 1e-6 / 1e-12. */
#include "../host/ops.h"
#include "testlib.h"

#define TOL 1e-5    /* f32 kernel vs float64 reference, per output */
#define FD_TOL 1e-6 /* finite differences vs the analytic float64 gradient */
#define FD_SAMPLES 24

typedef struct norm_case {
    int rms;      /* 0: layernorm, 1: rmsnorm */
    int has_bias; /* layernorm only */
    int ndim;
    int64_t shape[3];
    int64_t rows, n;
    double eps;
} norm_case;

/* Inputs as f32 (what the kernel sees) and the same values in double. */
typedef struct norm_data {
    float *x, *w, *b, *dy;
    double *xd, *wd, *bd, *dyd;
    double *row_scale; /* rows range from O(1) to O(1e-6) so that eps matters */
} norm_data;

/* ---- float64 reference ---- */

static void ref_stats(const norm_case *c, const double *x, int64_t r, double *mean, double *rstd) {
    double mu = 0, ss = 0;
    if (!c->rms) {
        for (int64_t j = 0; j < c->n; j++) mu += x[r * c->n + j];
        mu /= (double)c->n;
    }
    for (int64_t j = 0; j < c->n; j++) ss += (x[r * c->n + j] - mu) * (x[r * c->n + j] - mu);
    *mean = mu;
    *rstd = 1.0 / sqrt(ss / (double)c->n + c->eps);
}

static void ref_forward(const norm_case *c, const double *x, const double *w, const double *b,
                        double *y, double *mean, double *rstd) {
    for (int64_t r = 0; r < c->rows; r++) {
        double mu, rs;
        ref_stats(c, x, r, &mu, &rs);
        for (int64_t j = 0; j < c->n; j++) {
            int64_t i = r * c->n + j;
            y[i] = (x[i] - mu) * rs * w[j] + (b ? b[j] : 0.0);
        }
        if (mean) mean[r] = mu;
        if (rstd) rstd[r] = rs;
    }
}

static double ref_loss(const norm_case *c, const double *dy, const double *x, const double *w,
                       const double *b) {
    int64_t total = c->rows * c->n;
    double *y = tl_alloc((size_t)total * sizeof(double)), l = 0;
    ref_forward(c, x, w, b, y, NULL, NULL);
    for (int64_t i = 0; i < total; i++) l += dy[i] * y[i];
    free(y);
    return l;
}

/* Analytic gradients of sum(dy * y). dx_scale[i] = rstd * |dy w|, the size of
 * the terms that cancel in dx (width 1 rmsnorm cancels almost completely). */
/* dw and db are sums over rows, whose terms can cancel (a [3 x 1] input sums
 * three terms): their errors are judged against the sums of the terms'
 * magnitudes (dw_scale, db_scale), as dx's against dx_scale. */
static void ref_backward(const norm_case *c, const double *dy, const double *x, const double *w,
                         double *dx, double *dw, double *db, double *dx_scale, double *dw_scale,
                         double *db_scale) {
    memset(dw, 0, (size_t)c->n * sizeof(double));
    memset(db, 0, (size_t)c->n * sizeof(double));
    memset(dw_scale, 0, (size_t)c->n * sizeof(double));
    memset(db_scale, 0, (size_t)c->n * sizeof(double));
    for (int64_t r = 0; r < c->rows; r++) {
        double mu, rs, sum_g = 0, sum_gx = 0;
        ref_stats(c, x, r, &mu, &rs);
        for (int64_t j = 0; j < c->n; j++) {
            int64_t i = r * c->n + j;
            double xhat = (x[i] - mu) * rs, g = dy[i] * w[j];
            sum_g += g;
            sum_gx += g * xhat;
            dw[j] += dy[i] * xhat;
            db[j] += dy[i];
            dw_scale[j] += fabs(dy[i] * xhat);
            db_scale[j] += fabs(dy[i]);
        }
        if (c->rms) sum_g = 0;
        for (int64_t j = 0; j < c->n; j++) {
            int64_t i = r * c->n + j;
            double xhat = (x[i] - mu) * rs, g = dy[i] * w[j];
            dx[i] = rs * (g - sum_g / (double)c->n - xhat * sum_gx / (double)c->n);
            dx_scale[i] = rs * fabs(g);
        }
    }
}

/* ||out - ref|| / max(||ref||, ||scale||). */
static double scaled_err(const float *out, const double *ref, const double *scale, int64_t n) {
    double num = 0, den_ref = 0, den_scale = 0;
    for (int64_t i = 0; i < n; i++) {
        num += ((double)out[i] - ref[i]) * ((double)out[i] - ref[i]);
        den_ref += ref[i] * ref[i];
        den_scale += scale[i] * scale[i];
    }
    double den = den_ref > den_scale ? den_ref : den_scale;
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* Central differences of ref_loss w.r.t. FD_SAMPLES random entries of p
 * (one of the double inputs in d), compared with the analytic grad. */
static double fd_error(const norm_case *c, norm_data *d, double *p, int64_t count,
                       const double *grad, const double *scale) {
    double num = 0, den = 0;
    for (int s = 0; s < FD_SAMPLES; s++) {
        int64_t i = rng_int(count);
        double keep = p[i], h = 1e-4 * (fabs(keep) > 1 ? fabs(keep) : 1);
        if (p == d->xd) { /* the row's own length scale, sqrt(var + eps) */
            double mu, rs;
            ref_stats(c, d->xd, i / c->n, &mu, &rs);
            h = 1e-4 / rs;
        }
        p[i] = keep + h;
        double lp = ref_loss(c, d->dyd, d->xd, d->wd, c->has_bias ? d->bd : NULL);
        p[i] = keep - h;
        double lm = ref_loss(c, d->dyd, d->xd, d->wd, c->has_bias ? d->bd : NULL);
        p[i] = keep;
        double fd = (lp - lm) / (2 * h), sc = scale ? scale[i] : fabs(grad[i]);
        num += (fd - grad[i]) * (fd - grad[i]);
        den += grad[i] * grad[i] > sc * sc ? grad[i] * grad[i] : sc * sc;
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* ---- data ---- */

static void f32_copy_to(double *dst, const float *src, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = src[i];
}

static void data_init(norm_data *d, const norm_case *c) {
    int64_t total = c->rows * c->n;
    d->x = tl_alloc((size_t)total * 4);
    d->dy = tl_alloc((size_t)total * 4);
    d->w = tl_alloc((size_t)c->n * 4);
    d->b = tl_alloc((size_t)c->n * 4);
    d->xd = tl_alloc((size_t)total * 8);
    d->dyd = tl_alloc((size_t)total * 8);
    d->wd = tl_alloc((size_t)c->n * 8);
    d->bd = tl_alloc((size_t)c->n * 8);
    d->row_scale = tl_alloc((size_t)c->rows * 8);
    static const double scales[] = {1, 1e-3, 1e-6};
    for (int64_t r = 0; r < c->rows; r++) d->row_scale[r] = scales[r % 3];
    for (int64_t i = 0; i < total; i++)
        d->x[i] = (float)(d->row_scale[i / c->n] * (0.7 + 2.0 * rng_normal()));
    fill_normal(d->dy, total, 1.0);
    for (int64_t j = 0; j < c->n; j++) d->w[j] = (float)(1.0 + 0.3 * rng_normal());
    fill_normal(d->b, c->n, 0.5);
    f32_copy_to(d->xd, d->x, total);
    f32_copy_to(d->dyd, d->dy, total);
    f32_copy_to(d->wd, d->w, c->n);
    f32_copy_to(d->bd, d->b, c->n);
}

static void data_free(norm_data *d) {
    free(d->x), free(d->w), free(d->b), free(d->dy);
    free(d->xd), free(d->wd), free(d->bd), free(d->dyd), free(d->row_scale);
}

static tensor wrap_f32(float *p, int ndim, const int64_t *shape) {
    return tensor_wrap(p, DT_F32, backend_cpu(), ndim, shape);
}
static tensor wrap_vec(float *p, int64_t n) { return wrap_f32(p, 1, (int64_t[]){n}); }

static const char *case_name(const norm_case *c, char *buf, size_t len) {
    snprintf(buf, len, "%s%s [%lld x %lld] eps %g", c->rms ? "rmsnorm" : "layernorm",
             !c->rms && !c->has_bias ? " (no bias)" : "", (long long)c->rows, (long long)c->n,
             c->eps);
    return buf;
}

/* ---- the checks for one case ---- */

static void check_forward(const norm_case *c, norm_data *d, const char *name) {
    int64_t total = c->rows * c->n;
    float *y = tl_alloc((size_t)total * 4), *mean = tl_alloc((size_t)c->rows * 4),
          *rstd = tl_alloc((size_t)c->rows * 4);
    double *yr = tl_alloc((size_t)total * 8), *mr = tl_alloc((size_t)c->rows * 8),
           *rr = tl_alloc((size_t)c->rows * 8);
    ref_forward(c, d->xd, d->wd, c->has_bias ? d->bd : NULL, yr, mr, rr);
    tensor tx = wrap_f32(d->x, c->ndim, c->shape), ty = wrap_f32(y, c->ndim, c->shape);
    tensor tw = wrap_vec(d->w, c->n), tb = wrap_vec(d->b, c->n);
    tensor tm = wrap_vec(mean, c->rows), ts = wrap_vec(rstd, c->rows);
    for (int with_stats = 1; with_stats >= 0; with_stats--) {
        poison(y, total), poison(mean, c->rows), poison(rstd, c->rows);
        tensor *pm = with_stats ? &tm : NULL, *ps = with_stats ? &ts : NULL;
        if (c->rms)
            op_rmsnorm(&ty, ps, &tx, &tw, (float)c->eps);
        else
            op_layernorm(&ty, pm, ps, &tx, &tw, c->has_bias ? &tb : NULL, (float)c->eps);
        double e = rel_err(y, yr, total);
        CHECK(e <= TOL, "%s: y rel err %.3g (stats %s)", name, e, with_stats ? "on" : "off");
    }
    poison(mean, c->rows), poison(rstd, c->rows);
    if (c->rms) {
        op_rmsnorm(&ty, &ts, &tx, &tw, (float)c->eps);
    } else {
        op_layernorm(&ty, &tm, &ts, &tx, &tw, c->has_bias ? &tb : NULL, (float)c->eps);
        double em = rel_err(mean, mr, c->rows);
        CHECK(em <= TOL, "%s: mean rel err %.3g", name, em);
    }
    double es = rel_err(rstd, rr, c->rows);
    CHECK(es <= TOL, "%s: rstd rel err %.3g", name, es);
    free(y), free(mean), free(rstd), free(yr), free(mr), free(rr);
}

/* Row stats from the kernel's own forward (the backward consumes those). */
static void kernel_stats(const norm_case *c, norm_data *d, float *mean, float *rstd) {
    int64_t total = c->rows * c->n;
    float *y = tl_alloc((size_t)total * 4);
    tensor tx = wrap_f32(d->x, c->ndim, c->shape), ty = wrap_f32(y, c->ndim, c->shape);
    tensor tw = wrap_vec(d->w, c->n), tm = wrap_vec(mean, c->rows), ts = wrap_vec(rstd, c->rows);
    if (c->rms)
        op_rmsnorm(&ty, &ts, &tx, &tw, (float)c->eps);
    else
        op_layernorm(&ty, &tm, &ts, &tx, &tw, NULL, (float)c->eps);
    free(y);
}

static void run_backward(const norm_case *c, norm_data *d, const float *mean, const float *rstd,
                         float *dx, float *dw, float *db) {
    tensor tx = wrap_f32(d->x, c->ndim, c->shape), tdy = wrap_f32(d->dy, c->ndim, c->shape);
    tensor tdx = wrap_f32(dx, c->ndim, c->shape), tw = wrap_vec(d->w, c->n);
    tensor tdw = wrap_vec(dw, c->n), tdb = wrap_vec(db, c->n);
    tensor tm = wrap_vec((float *)mean, c->rows), ts = wrap_vec((float *)rstd, c->rows);
    if (c->rms)
        op_rmsnorm_backward(&tdx, dw ? &tdw : NULL, &tdy, &tx, &tw, &ts);
    else
        op_layernorm_backward(&tdx, dw ? &tdw : NULL, db ? &tdb : NULL, &tdy, &tx, &tw, &tm, &ts);
}

static void check_backward(const norm_case *c, norm_data *d, const char *name) {
    int64_t total = c->rows * c->n, n = c->n;
    double *dxr = tl_alloc((size_t)total * 8), *scale = tl_alloc((size_t)total * 8);
    double *dwr = tl_alloc((size_t)n * 8), *dbr = tl_alloc((size_t)n * 8);
    double *dw_scale = tl_alloc((size_t)n * 8), *db_scale = tl_alloc((size_t)n * 8);
    float *dx = tl_alloc((size_t)total * 4), *dw = tl_alloc((size_t)n * 4),
          *db = tl_alloc((size_t)n * 4);
    float *mean = tl_alloc((size_t)c->rows * 4), *rstd = tl_alloc((size_t)c->rows * 4);
    ref_backward(c, d->dyd, d->xd, d->wd, dxr, dwr, dbr, scale, dw_scale, db_scale);
    kernel_stats(c, d, mean, rstd);

    poison(dx, total), poison(dw, n), poison(db, n);
    run_backward(c, d, mean, rstd, dx, dw, db);
    double ex = scaled_err(dx, dxr, scale, total), ew = scaled_err(dw, dwr, dw_scale, n);
    CHECK(ex <= TOL, "%s: dx err %.3g", name, ex);
    CHECK(ew <= TOL, "%s: dw rel err %.3g", name, ew);
    if (!c->rms) {
        double eb = scaled_err(db, dbr, db_scale, n);
        CHECK(eb <= TOL, "%s: db rel err %.3g", name, eb);
    }
    poison(dx, total);
    run_backward(c, d, mean, rstd, dx, NULL, NULL); /* frozen parameters */
    ex = scaled_err(dx, dxr, scale, total);
    CHECK(ex <= TOL, "%s: dx err %.3g with dw, db NULL", name, ex);

    double fx = fd_error(c, d, d->xd, total, dxr, scale), fw = fd_error(c, d, d->wd, n, dwr, NULL);
    CHECK(fx <= FD_TOL, "%s: finite differences vs analytic dx: %.3g", name, fx);
    CHECK(fw <= FD_TOL, "%s: finite differences vs analytic dw: %.3g", name, fw);
    if (c->has_bias) {
        double fb = fd_error(c, d, d->bd, n, dbr, NULL);
        CHECK(fb <= FD_TOL, "%s: finite differences vs analytic db: %.3g", name, fb);
    }
    free(dxr), free(scale), free(dwr), free(dbr), free(dw_scale), free(db_scale), free(dx), free(dw), free(db), free(mean),
        free(rstd);
}

static void run_case(norm_case c) {
    c.rows = 1;
    for (int i = 0; i < c.ndim - 1; i++) c.rows *= c.shape[i];
    c.n = c.shape[c.ndim - 1];
    if (c.rms) c.has_bias = 0;
    char name[96];
    case_name(&c, name, sizeof name);
    norm_data d;
    data_init(&d, &c);
    check_forward(&c, &d, name);
    check_backward(&c, &d, name);
    data_free(&d);
}

/* ---- bf16 storage (the cuda activation dtype) through the same op ---- */

static void check_bf16_layernorm(void) {
    enum { R = 6, N = 88 };
    uint16_t x[R * N], y[R * N];
    float w[N], b[N];
    double xd[R * N], wd[N], bd[N], yr[R * N], yd[R * N];
    norm_case c = {.has_bias = 1, .rows = R, .n = N, .eps = 1e-5};
    for (int i = 0; i < R * N; i++) {
        x[i] = f32_to_bf16((float)rng_normal());
        xd[i] = bf16_to_f32(x[i]);
        y[i] = 0x7fc0; /* NaN */
    }
    for (int j = 0; j < N; j++) wd[j] = w[j] = (float)(1 + 0.3 * rng_normal());
    for (int j = 0; j < N; j++) bd[j] = b[j] = (float)(0.3 * rng_normal());
    ref_forward(&c, xd, wd, bd, yr, NULL, NULL);
    const backend *be = backend_cpu();
    tensor tx = tensor_wrap(x, DT_BF16, be, 2, (int64_t[]){R, N});
    tensor ty = tensor_wrap(y, DT_BF16, be, 2, (int64_t[]){R, N});
    tensor tw = wrap_vec(w, N), tb = wrap_vec(b, N);
    op_layernorm(&ty, NULL, NULL, &tx, &tw, &tb, 1e-5f);
    double num = 0, den = 0;
    for (int i = 0; i < R * N; i++) {
        yd[i] = bf16_to_f32(y[i]);
        num += (yd[i] - yr[i]) * (yd[i] - yr[i]);
        den += yr[i] * yr[i];
    }
    double e = sqrt(num / den);
    CHECK(e <= 4e-3, "layernorm bf16 storage: rel err %.3g (bf16 rounding allows 4e-3)", e);
}

/* ---- wrapper errors (in a child process: they exit) ---- */

static void layernorm_wrong_weight(void) {
    float x[12], y[12], w[5];
    tensor tx = wrap_f32(x, 2, (int64_t[]){3, 4}), ty = wrap_f32(y, 2, (int64_t[]){3, 4});
    tensor tw = wrap_vec(w, 5);
    op_layernorm(&ty, NULL, NULL, &tx, &tw, NULL, 1e-5f);
}

static void rmsnorm_on_bare_backend(void) {
    static backend bare;
    bare = *backend_cpu();
    bare.name = "bare";
    bare.rmsnorm = NULL;
    float x[4] = {1, 2, 3, 4}, y[4], w[4] = {1, 1, 1, 1};
    tensor tx = tensor_wrap(x, DT_F32, &bare, 1, (int64_t[]){4});
    tensor ty = tensor_wrap(y, DT_F32, &bare, 1, (int64_t[]){4});
    tensor tw = tensor_wrap(w, DT_F32, &bare, 1, (int64_t[]){4});
    op_rmsnorm(&ty, NULL, &tx, &tw, 1e-6f);
}

static void rmsnorm_wrong_stats(void) {
    float x[12], y[12], w[4], rstd[4];
    tensor tx = wrap_f32(x, 2, (int64_t[]){3, 4}), ty = wrap_f32(y, 2, (int64_t[]){3, 4});
    tensor tw = wrap_vec(w, 4), ts = wrap_vec(rstd, 4);
    op_rmsnorm(&ty, &ts, &tx, &tw, 1e-6f);
}

static void check_wrapper_errors(void) {
    char msg[512];
    int rc = tl_run_child(layernorm_wrong_weight, msg, sizeof msg);
    CHECK(rc == 1 && strstr(msg, "layernorm") && strstr(msg, "w has shape [5]"),
          "layernorm with a [5] weight for width 4: exit %d, message '%s'", rc, msg);
    EXPECT_DIES(rmsnorm_on_bare_backend, 1, "op rmsnorm is not implemented on backend bare");
    EXPECT_DIES(rmsnorm_wrong_stats, 1, "rstd");
}

int main(void) {
    tests_begin("test_norm");
    static const int64_t shapes[][4] = {
        /* ndim, sizes */
        {2, 3, 1}, {2, 5, 7}, {2, 4, 80}, {2, 3, 88}, {2, 2, 1000}, {3, 2, 3, 80}, {2, 33, 256},
    };
    static const double eps[] = {1e-5, 1e-6, 1e-12};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int e = 0; e < 3; e++)
            for (int rms = 0; rms < 2; rms++) {
                norm_case c = {.rms = rms,
                               .has_bias = (int)((s + (size_t)e) % 2 == 0),
                               .ndim = (int)shapes[s][0],
                               .eps = eps[e]};
                for (int i = 0; i < c.ndim; i++) c.shape[i] = shapes[s][1 + i];
                run_case(c);
            }
    check_bf16_layernorm();
    check_wrapper_errors();
    return tests_done();
}
