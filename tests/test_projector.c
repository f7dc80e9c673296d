/* The AIM projector (host/projector.h) and the learning-rate schedule
 * (host/schedule.h) against float64 references written here:
 *  - forward of linear / linear_ln / mlp on several shapes (odd sizes,
 *    leading dims, one row);
 *  - weight/bias gradients: the float64 analytic gradient is checked by
 *    central finite differences, the C backward against it; accumulation
 *    over micro-batches (overwrite, then add) against the concatenated batch;
 *  - projector_step: global-norm clipping + AdamW (decay on matrices only)
 *    against a float64 reference over several steps; a NaN gradient changes
 *    nothing;
 *  - initialisation: the documented generator reproduced bit for bit,
 *    bounds and moments, reproducibility by seed;
 *  - schedule values at key steps against hand-derived numbers. */
#include "../host/arena.h"
#include "../host/projector.h"
#include "../host/schedule.h"
#include "testlib.h"

#define TOL 1e-5    /* f32 projector vs float64 reference (relative, vector norm) */
#define FD_TOL 1e-6 /* central finite differences vs the float64 analytic gradient */
#define FD_SAMPLES 16

static const backend *be;

/* ===== host <-> backend helpers ========================================== */

static double *dalloc(int64_t n) { return tl_alloc((size_t)(n ? n : 1) * sizeof(double)); }
static float *falloc(int64_t n) { return tl_alloc((size_t)(n ? n : 1) * sizeof(float)); }

static double *download_d(const tensor *t) {
    int64_t n = tensor_numel(t);
    float *f = falloc(n);
    double *d = dalloc(n);
    t->be->download(f, t->data, (size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++) d[i] = f[i];
    free(f);
    return d;
}

static float *download_f(const tensor *t) {
    float *f = falloc(tensor_numel(t));
    t->be->download(f, t->data, tensor_bytes(t));
    return f;
}

static void upload_f(tensor *t, const float *src) { t->be->upload(t->data, src, tensor_bytes(t)); }

static void fill_tensor_normal(tensor *t, double std, double offset) {
    int64_t n = tensor_numel(t);
    float *f = falloc(n);
    for (int64_t i = 0; i < n; i++) f[i] = (float)(offset + std * rng_normal());
    upload_f(t, f);
    free(f);
}

static void poison_tensor(tensor *t) {
    float *f = falloc(tensor_numel(t));
    poison(f, tensor_numel(t));
    upload_f(t, f);
    free(f);
}

/* ===== float64 reference of the projector =================================== */

typedef struct ref_proj {
    projector_config cfg;
    int64_t hidden; /* mlp hidden size */
    int n;
    double *p[PROJECTOR_MAX_PARAMS]; /* the projector's parameters, same order */
    int64_t numel[PROJECTOR_MAX_PARAMS];
} ref_proj;

static ref_proj ref_from(const projector *pr) {
    ref_proj r = {.cfg = pr->cfg, .n = pr->n_params};
    r.hidden = pr->cfg.d_hidden > 0 ? pr->cfg.d_hidden : pr->cfg.d_out;
    for (int i = 0; i < r.n; i++) {
        r.p[i] = download_d(&pr->params[i].value);
        r.numel[i] = tensor_numel(&pr->params[i].value);
    }
    return r;
}

static void ref_free(ref_proj *r) {
    for (int i = 0; i < r->n; i++) free(r->p[i]);
}

/* y[n, out] = x[n, in] W^T + b */
static void ref_linear(double *y, const double *x, const double *w, const double *b, int64_t n,
                       int64_t in, int64_t out) {
    for (int64_t r = 0; r < n; r++)
        for (int64_t o = 0; o < out; o++) {
            double s = b[o];
            for (int64_t i = 0; i < in; i++) s += x[r * in + i] * w[o * in + i];
            y[r * out + o] = s;
        }
}

/* dW += dy^T x, db += column sums of dy */
static void ref_linear_grads(double *dw, double *db, const double *dy, const double *x, int64_t n,
                             int64_t in, int64_t out) {
    for (int64_t r = 0; r < n; r++)
        for (int64_t o = 0; o < out; o++) {
            db[o] += dy[r * out + o];
            for (int64_t i = 0; i < in; i++) dw[o * in + i] += dy[r * out + o] * x[r * in + i];
        }
}

static double gelu(double h) { return 0.5 * h * (1.0 + erf(h / sqrt(2.0))); }
static double gelu_grad(double h) {
    return 0.5 * (1.0 + erf(h / sqrt(2.0))) + h * exp(-0.5 * h * h) / sqrt(2.0 * M_PI);
}

/* LayerNorm of each row of pre [n, d] in place into y; xhat kept for backward. */
static void ref_layernorm(double *y, double *xhat, double *rstd, const double *pre, const double *g,
                          const double *b, int64_t n, int64_t d, double eps) {
    for (int64_t r = 0; r < n; r++) {
        double mu = 0, var = 0;
        for (int64_t j = 0; j < d; j++) mu += pre[r * d + j];
        mu /= (double)d;
        for (int64_t j = 0; j < d; j++) var += (pre[r * d + j] - mu) * (pre[r * d + j] - mu);
        rstd[r] = 1.0 / sqrt(var / (double)d + eps);
        for (int64_t j = 0; j < d; j++) {
            xhat[r * d + j] = (pre[r * d + j] - mu) * rstd[r];
            y[r * d + j] = xhat[r * d + j] * g[j] + b[j];
        }
    }
}

static void ref_forward(const ref_proj *r, const double *x, int64_t n, double *y) {
    const projector_config *c = &r->cfg;
    if (c->type == PROJ_LINEAR) {
        ref_linear(y, x, r->p[0], r->p[1], n, c->d_in, c->d_out);
    } else if (c->type == PROJ_LINEAR_LN) {
        double *pre = dalloc(n * c->d_out), *xhat = dalloc(n * c->d_out), *rs = dalloc(n);
        ref_linear(pre, x, r->p[0], r->p[1], n, c->d_in, c->d_out);
        ref_layernorm(y, xhat, rs, pre, r->p[2], r->p[3], n, c->d_out, c->ln_eps);
        free(pre), free(xhat), free(rs);
    } else {
        double *h = dalloc(n * r->hidden);
        ref_linear(h, x, r->p[0], r->p[1], n, c->d_in, r->hidden);
        for (int64_t i = 0; i < n * r->hidden; i++) h[i] = gelu(h[i]);
        ref_linear(y, h, r->p[2], r->p[3], n, r->hidden, c->d_out);
        free(h);
    }
}

static double ref_loss(const ref_proj *r, const double *x, const double *dy, int64_t n) {
    double *y = dalloc(n * r->cfg.d_out), l = 0;
    ref_forward(r, x, n, y);
    for (int64_t i = 0; i < n * r->cfg.d_out; i++) l += dy[i] * y[i];
    free(y);
    return l;
}

/* d pre from d y through LayerNorm (and the norm's own gradients). */
static void ref_layernorm_backward(double *dpre, double *dg, double *db, const double *dy,
                                   const double *xhat, const double *rstd, const double *g,
                                   int64_t n, int64_t d) {
    for (int64_t r = 0; r < n; r++) {
        double m1 = 0, m2 = 0;
        for (int64_t j = 0; j < d; j++) {
            double dxh = dy[r * d + j] * g[j];
            m1 += dxh;
            m2 += dxh * xhat[r * d + j];
            dg[j] += dy[r * d + j] * xhat[r * d + j];
            db[j] += dy[r * d + j];
        }
        m1 /= (double)d, m2 /= (double)d;
        for (int64_t j = 0; j < d; j++)
            dpre[r * d + j] = rstd[r] * (dy[r * d + j] * g[j] - m1 - xhat[r * d + j] * m2);
    }
}

/* Adds the analytic gradients of sum(dy * y) to grads (one array per parameter). */
static void ref_backward(const ref_proj *r, const double *x, const double *dy, int64_t n,
                         double **grads) {
    const projector_config *c = &r->cfg;
    if (c->type == PROJ_LINEAR) {
        ref_linear_grads(grads[0], grads[1], dy, x, n, c->d_in, c->d_out);
    } else if (c->type == PROJ_LINEAR_LN) {
        int64_t m = n * c->d_out;
        double *pre = dalloc(m), *y = dalloc(m), *xhat = dalloc(m), *rs = dalloc(n), *dpre = dalloc(m);
        ref_linear(pre, x, r->p[0], r->p[1], n, c->d_in, c->d_out);
        ref_layernorm(y, xhat, rs, pre, r->p[2], r->p[3], n, c->d_out, c->ln_eps);
        ref_layernorm_backward(dpre, grads[2], grads[3], dy, xhat, rs, r->p[2], n, c->d_out);
        ref_linear_grads(grads[0], grads[1], dpre, x, n, c->d_in, c->d_out);
        free(pre), free(y), free(xhat), free(rs), free(dpre);
    } else {
        int64_t m = n * r->hidden;
        double *h = dalloc(m), *a = dalloc(m), *dh = dalloc(m);
        ref_linear(h, x, r->p[0], r->p[1], n, c->d_in, r->hidden);
        for (int64_t i = 0; i < m; i++) a[i] = gelu(h[i]);
        ref_linear_grads(grads[2], grads[3], dy, a, n, r->hidden, c->d_out);
        for (int64_t row = 0; row < n; row++)
            for (int64_t k = 0; k < r->hidden; k++) {
                double s = 0;
                for (int64_t o = 0; o < c->d_out; o++)
                    s += dy[row * c->d_out + o] * r->p[2][o * r->hidden + k];
                dh[row * r->hidden + k] = s * gelu_grad(h[row * r->hidden + k]);
            }
        ref_linear_grads(grads[0], grads[1], dh, x, n, c->d_in, r->hidden);
        free(h), free(a), free(dh);
    }
}

/* Central differences of ref_loss w.r.t. random entries of parameter k. */
static double fd_error(ref_proj *r, int k, const double *x, const double *dy, int64_t n,
                       const double *grad) {
    double num = 0, den = 0, gmax = 0;
    for (int64_t i = 0; i < r->numel[k]; i++) gmax = fmax(gmax, fabs(grad[i]));
    for (int s = 0; s < FD_SAMPLES; s++) {
        int64_t i = rng_int(r->numel[k]);
        double keep = r->p[k][i], h = 1e-4 * fmax(1.0, fabs(keep));
        r->p[k][i] = keep + h;
        double lp = ref_loss(r, x, dy, n);
        r->p[k][i] = keep - h;
        double lm = ref_loss(r, x, dy, n);
        r->p[k][i] = keep;
        double fd = (lp - lm) / (2 * h);
        num += (fd - grad[i]) * (fd - grad[i]);
        den += fmax(grad[i] * grad[i], 1e-6 * gmax * gmax);
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* ===== forward and gradients ============================================ */

typedef struct batch {
    int ndim;
    int64_t shape[3]; /* leading dims then d_in */
    int64_t rows;
    float *x, *dy;
    double *xd, *dyd;
} batch;

static batch make_batch(int ndim, const int64_t *lead, int64_t d_in, int64_t d_out) {
    batch b = {.ndim = ndim, .rows = 1};
    for (int i = 0; i < ndim - 1; i++) b.shape[i] = lead[i], b.rows *= lead[i];
    b.shape[ndim - 1] = d_in;
    b.x = falloc(b.rows * d_in), b.dy = falloc(b.rows * d_out);
    b.xd = dalloc(b.rows * d_in), b.dyd = dalloc(b.rows * d_out);
    fill_normal(b.x, b.rows * d_in, 1.0);
    fill_normal(b.dy, b.rows * d_out, 1.0);
    for (int64_t i = 0; i < b.rows * d_in; i++) b.xd[i] = b.x[i];
    for (int64_t i = 0; i < b.rows * d_out; i++) b.dyd[i] = b.dy[i];
    return b;
}

static void batch_free(batch *b) { free(b->x), free(b->dy), free(b->xd), free(b->dyd); }

/* Runs forward (+ backward) on the cpu backend through an arena poisoned with NaN. */
static tensor run_forward(projector *p, arena *ar, batch *b, projector_saved *s) {
    tensor tx = tensor_wrap(b->x, DT_F32, be, b->ndim, b->shape);
    return projector_forward(p, ar, &tx, s);
}

static void run_backward(projector *p, arena *ar, batch *b, const projector_saved *s, int acc) {
    tensor dy = tensor_wrap(b->dy, DT_F32, be, 2, (int64_t[]){b->rows, p->cfg.d_out});
    projector_backward(p, ar, s, &dy, acc);
}

static const char *cfg_str(const projector_config *c) {
    static char buf[160];
    return projector_describe(c, buf, sizeof buf);
}

static void check_forward(projector *p, ref_proj *r, arena *ar, batch *b) {
    projector_saved s;
    tensor y = run_forward(p, ar, b, &s);
    double *yref = dalloc(b->rows * p->cfg.d_out);
    ref_forward(r, b->xd, b->rows, yref);
    CHECK(y.ndim == b->ndim && y.shape[b->ndim - 1] == p->cfg.d_out && tensor_rows_count(&y) == b->rows,
          "%s: forward output has the wrong shape", cfg_str(&p->cfg));
    double e = rel_err(y.data, yref, b->rows * p->cfg.d_out);
    CHECK(e <= TOL, "%s rows=%lld: forward rel err %.3g", cfg_str(&p->cfg), (long long)b->rows, e);
    free(yref);
}

/* Gradients of one micro-batch (overwrite), then of a second (accumulate),
 * against the float64 analytic gradient of both; that gradient against
 * finite differences. */
static void check_gradients(projector *p, ref_proj *r, arena *ar, batch *b1, batch *b2) {
    double *ref[PROJECTOR_MAX_PARAMS];
    for (int k = 0; k < r->n; k++) ref[k] = calloc((size_t)r->numel[k], sizeof(double));
    ref_backward(r, b1->xd, b1->dyd, b1->rows, ref);
    for (int k = 0; k < r->n; k++) {
        double fe = fd_error(r, k, b1->xd, b1->dyd, b1->rows, ref[k]);
        CHECK(fe <= FD_TOL, "%s: finite differences vs analytic d%s: %.3g", cfg_str(&p->cfg),
              p->params[k].name, fe);
        poison_tensor(&p->params[k].grad); /* accumulate = 0 must overwrite */
    }
    projector_saved s1, s2;
    run_forward(p, ar, b1, &s1);
    run_backward(p, ar, b1, &s1, 0);
    for (int k = 0; k < r->n; k++) {
        float *g = download_f(&p->params[k].grad);
        double e = rel_err(g, ref[k], r->numel[k]);
        CHECK(e <= TOL, "%s: d%s rel err %.3g", cfg_str(&p->cfg), p->params[k].name, e);
        free(g);
    }
    ref_backward(r, b2->xd, b2->dyd, b2->rows, ref);
    run_forward(p, ar, b2, &s2);
    run_backward(p, ar, b2, &s2, 1);
    for (int k = 0; k < r->n; k++) {
        float *g = download_f(&p->params[k].grad);
        double e = rel_err(g, ref[k], r->numel[k]);
        CHECK(e <= TOL, "%s: accumulated d%s rel err %.3g", cfg_str(&p->cfg), p->params[k].name, e);
        free(g);
        free(ref[k]);
    }
}

static void check_type(projector_config cfg, int ndim, const int64_t *lead, const int64_t *lead2) {
    projector p;
    cfg.seed = rng_u64();
    projector_init(&p, be, &cfg);
    if (cfg.type == PROJ_LINEAR_LN) { /* away from the trivial 1 / 0 init */
        fill_tensor_normal(&p.params[2].value, 0.3, 1.0);
        fill_tensor_normal(&p.params[3].value, 0.3, 0.0);
    }
    ref_proj r = ref_from(&p);
    batch b1 = make_batch(ndim, lead, cfg.d_in, cfg.d_out), b2 = make_batch(2, lead2, cfg.d_in, cfg.d_out);
    arena ar;
    arena_init(&ar, be, 8u << 20);
    memset(ar.base, 0xff, ar.cap); /* NaN everywhere: unwritten outputs fail */
    check_forward(&p, &r, &ar, &b1);
    check_forward(&p, &r, &ar, &b2);
    check_gradients(&p, &r, &ar, &b1, &b2);
    arena_free(&ar);
    batch_free(&b1), batch_free(&b2);
    ref_free(&r);
    projector_free(&p);
}

static void test_forward_backward(void) {
    projector_config lin = {PROJ_LINEAR, 7, 5, 0, 0, 0}, lin_sq = {PROJ_LINEAR, 48, 48, 0, 0, 0};
    projector_config ln = {PROJ_LINEAR_LN, 9, 13, 0, 1e-5f, 0}, ln_eps = {PROJ_LINEAR_LN, 32, 24, 0, 1e-6f, 0};
    projector_config mlp = {PROJ_MLP, 6, 11, 17, 0, 0}, mlp_default = {PROJ_MLP, 16, 8, 0, 0, 0};
    check_type(lin, 2, (int64_t[]){5}, (int64_t[]){3});
    check_type(lin, 2, (int64_t[]){1}, (int64_t[]){1});
    check_type(lin_sq, 3, (int64_t[]){2, 9}, (int64_t[]){31});
    check_type(ln, 2, (int64_t[]){6}, (int64_t[]){2});
    check_type(ln_eps, 3, (int64_t[]){3, 7}, (int64_t[]){1});
    check_type(mlp, 2, (int64_t[]){4}, (int64_t[]){9});
    check_type(mlp_default, 3, (int64_t[]){2, 3}, (int64_t[]){5});
}

/* ===== optimiser step ===================================================== */

/* torch: g = grad * scale; clip_grad_norm_; AdamW with decay on matrices. */
static double ref_step(ref_proj *r, double **m, double **v, double **grads, const adamw_opts *o,
                       double lr, double clip, const projector *p) {
    double ss = 0;
    for (int k = 0; k < r->n; k++)
        for (int64_t i = 0; i < r->numel[k]; i++) ss += grads[k][i] * grads[k][i];
    double norm = sqrt(ss) * fabs(o->grad_scale), scale = o->grad_scale;
    if (clip > 0 && clip / (norm + 1e-6) < 1.0) scale *= clip / (norm + 1e-6);
    double bc1 = 1.0 - pow(o->beta1, (double)o->step), bc2 = 1.0 - pow(o->beta2, (double)o->step);
    for (int k = 0; k < r->n; k++) {
        double wd = p->params[k].decay ? o->weight_decay : 0.0;
        for (int64_t i = 0; i < r->numel[k]; i++) {
            double g = grads[k][i] * scale;
            r->p[k][i] *= 1.0 - lr * wd;
            m[k][i] = o->beta1 * m[k][i] + (1 - o->beta1) * g;
            v[k][i] = o->beta2 * v[k][i] + (1 - o->beta2) * g * g;
            r->p[k][i] -= lr / bc1 * m[k][i] / (sqrt(v[k][i]) / sqrt(bc2) + o->eps);
        }
    }
    return norm;
}

static double state_err(const tensor *t, const double *ref) {
    float *f = download_f(t);
    double e = rel_err(f, ref, tensor_numel(t));
    free(f);
    return e;
}

/* Fresh gradients each step; compares norm, p, m, v after every step. */
static void check_step(projector_config cfg, float grad_scale, float clip, float wd, int steps) {
    projector p;
    cfg.seed = rng_u64();
    projector_init(&p, be, &cfg);
    ref_proj r = ref_from(&p);
    double *m[PROJECTOR_MAX_PARAMS], *v[PROJECTOR_MAX_PARAMS], *g[PROJECTOR_MAX_PARAMS];
    for (int k = 0; k < r.n; k++) {
        m[k] = calloc((size_t)r.numel[k], sizeof(double));
        v[k] = calloc((size_t)r.numel[k], sizeof(double));
    }
    adamw_opts o = {.lr = 123.0f /* ignored */, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f,
                    .weight_decay = wd, .step = 1, .grad_scale = grad_scale};
    double worst = 0, worst_norm = 0;
    for (int s = 0; s < steps; s++, o.step++) {
        for (int k = 0; k < r.n; k++) {
            fill_tensor_normal(&p.params[k].grad, 0.5, 0.0);
            g[k] = download_d(&p.params[k].grad);
        }
        float lr = (float)(1e-2 / (s + 1));
        double want = ref_step(&r, m, v, g, &o, lr, clip, &p);
        double got = projector_step(&p, &o, lr, clip);
        worst_norm = fmax(worst_norm, fabs(got - want) / want);
        for (int k = 0; k < r.n; k++) {
            worst = fmax(worst, state_err(&p.params[k].value, r.p[k]));
            worst = fmax(worst, state_err(&p.params[k].m, m[k]));
            worst = fmax(worst, state_err(&p.params[k].v, v[k]));
            free(g[k]);
        }
    }
    CHECK(worst_norm <= 1e-6, "%s step: grad norm rel err %.3g", cfg_str(&cfg), worst_norm);
    CHECK(worst <= TOL, "%s step (scale %g, clip %g, wd %g): worst rel err of p/m/v %.3g",
          cfg_str(&cfg), grad_scale, clip, wd, worst);
    for (int k = 0; k < r.n; k++) free(m[k]), free(v[k]);
    ref_free(&r);
    projector_free(&p);
}

/* A NaN gradient: NaN norm returned, parameters and moments untouched. */
static void check_step_nan(void) {
    projector p;
    projector_config cfg = {PROJ_LINEAR, 4, 3, 0, 0, 7};
    projector_init(&p, be, &cfg);
    fill_tensor_normal(&p.params[0].grad, 1.0, 0.0);
    fill_tensor_normal(&p.params[1].grad, 1.0, 0.0);
    float *grad = download_f(&p.params[1].grad), *before = download_f(&p.params[0].value);
    grad[1] = NAN;
    upload_f(&p.params[1].grad, grad);
    adamw_opts o = {.beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.1f, .step = 1,
                    .grad_scale = 1.0f};
    double norm = projector_step(&p, &o, 1e-2f, 1.0f);
    float *after = download_f(&p.params[0].value), *m = download_f(&p.params[0].m);
    CHECK(isnan(norm), "NaN gradient: step returned norm %g", norm);
    CHECK(!memcmp(before, after, 12 * sizeof(float)) && m[0] == 0.0f,
          "NaN gradient: the step changed the parameters or moments");
    free(grad), free(before), free(after), free(m);
    projector_free(&p);
}

/* The clip must bite: with clip far below the norm, the first AdamW step
 * still moves each weight by about lr (Adam normalises), but the moment m
 * equals (1 - beta1) * g * clip / norm. */
static void check_clip_scales_moments(void) {
    projector p;
    projector_config cfg = {PROJ_LINEAR, 3, 2, 0, 0, 9};
    projector_init(&p, be, &cfg);
    float gw[6] = {3, 0, 0, 0, 0, 0}, gb[2] = {0, 4};
    upload_f(&p.params[0].grad, gw);
    upload_f(&p.params[1].grad, gb);
    adamw_opts o = {.beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .step = 1, .grad_scale = 2.0f};
    double norm = projector_step(&p, &o, 1e-3f, 1.0f); /* ||2 g|| = 10 -> scale 2 * 0.1 */
    float *m = download_f(&p.params[0].m), *mb = download_f(&p.params[1].m);
    CHECK(fabs(norm - 10.0) < 1e-6, "clip: norm %g, want 10", norm);
    CHECK(fabs(m[0] - 0.1 * 3 * 2 / (10 + 1e-6)) < 1e-6 && fabs(mb[1] - 0.1 * 4 * 2 / (10 + 1e-6)) < 1e-6,
          "clip: moments %g %g, want %g %g", m[0], mb[1], 0.06, 0.08);
    free(m), free(mb);
    projector_free(&p);
}

static void test_step(void) {
    projector_config lin = {PROJ_LINEAR, 13, 9, 0, 0, 0}, ln = {PROJ_LINEAR_LN, 8, 12, 0, 1e-5f, 0};
    projector_config mlp = {PROJ_MLP, 10, 7, 21, 0, 0};
    check_step(lin, 1.0f, 0.0f, 0.0f, 3);   /* no clip, no decay */
    check_step(lin, 0.25f, 0.5f, 0.1f, 4);  /* clip active (norm ~ 0.25 * 0.5 * sqrt(126) ~ 1.4) */
    check_step(ln, 0.5f, 1e3f, 0.05f, 3);   /* clip inactive */
    check_step(mlp, 1.0f, 1.0f, 0.01f, 3);
    check_step_nan();
    check_clip_scales_moments();
}

/* ===== initialisation ===================================================== */

/* The generator of projector.h, via testlib's splitmix64 (same algorithm). */
static float documented_uniform(double bound) {
    double u = (double)(rng_u64() >> 40) / 16777216.0;
    return (float)(bound * (2.0 * u - 1.0));
}

static void check_init_formula(projector_config cfg) {
    projector p;
    projector_init(&p, be, &cfg);
    uint64_t saved = tl_state;
    tl_state = cfg.seed;
    int ok = 1;
    for (int k = 0; k < p.n_params; k++) {
        const tensor *t = &p.params[k].value;
        float *got = download_f(t);
        int is_norm = !strncmp(p.params[k].name, "norm.", 5);
        int64_t fan_in = !strcmp(p.params[k].name, "fc2.weight") || !strcmp(p.params[k].name, "fc2.bias")
                             ? (cfg.d_hidden ? cfg.d_hidden : cfg.d_out)
                             : cfg.d_in;
        for (int64_t i = 0; i < tensor_numel(t); i++) {
            float want = is_norm ? (strstr(p.params[k].name, "weight") ? 1.0f : 0.0f)
                                 : documented_uniform(1.0 / sqrt((double)fan_in));
            ok &= memcmp(&want, &got[i], sizeof want) == 0;
        }
        free(got);
    }
    tl_state = saved;
    CHECK(ok, "%s seed %llu: values differ from the documented generator", cfg_str(&cfg),
          (unsigned long long)cfg.seed);
    projector_free(&p);
}

static void check_init_stats(void) {
    projector_config cfg = {PROJ_LINEAR, 256, 200, 0, 0, 12345};
    projector a, b, c;
    projector_init(&a, be, &cfg);
    projector_init(&b, be, &cfg);
    cfg.seed = 12346;
    projector_init(&c, be, &cfg);
    float *wa = download_f(&a.params[0].value), *wb = download_f(&b.params[0].value),
          *wc = download_f(&c.params[0].value);
    int64_t n = 256 * 200;
    double bound = 1.0 / 16.0, mean = 0, var = 0, maxabs = 0;
    for (int64_t i = 0; i < n; i++) mean += wa[i], maxabs = fmax(maxabs, fabs(wa[i]));
    mean /= (double)n;
    for (int64_t i = 0; i < n; i++) var += (wa[i] - mean) * (wa[i] - mean);
    var /= (double)n;
    double want_var = bound * bound / 3.0;
    CHECK(maxabs <= bound, "init: max |w| %g exceeds 1/sqrt(fan_in) = %g", maxabs, bound);
    CHECK(fabs(mean) < 5 * sqrt(want_var / (double)n), "init: mean %g not near 0", mean);
    CHECK(fabs(var / want_var - 1) < 0.03, "init: variance %g, want %g", var, want_var);
    CHECK(!memcmp(wa, wb, (size_t)n * sizeof(float)), "init: same seed gave different weights");
    CHECK(memcmp(wa, wc, (size_t)n * sizeof(float)), "init: different seeds gave the same weights");
    free(wa), free(wb), free(wc);
    projector_free(&a), projector_free(&b), projector_free(&c);
}

static void check_names(projector_config cfg, const char *const *want, int n) {
    projector p;
    projector_init(&p, be, &cfg);
    int ok = p.n_params == n;
    for (int i = 0; ok && i < n; i++) ok = !strcmp(p.params[i].name, want[i]) && projector_find(&p, want[i]) == &p.params[i];
    CHECK(ok, "%s: parameter names differ from the PyTorch state_dict names", cfg_str(&cfg));
    projector_free(&p);
}

static void test_init(void) {
    projector_config lin = {PROJ_LINEAR, 5, 3, 0, 0, 42}, ln = {PROJ_LINEAR_LN, 4, 6, 0, 1e-5f, 43};
    projector_config mlp = {PROJ_MLP, 5, 4, 9, 0, 44};
    check_init_formula(lin);
    check_init_formula(ln);
    check_init_formula(mlp);
    check_init_stats();
    check_names(lin, (const char *const[]){"linear.weight", "linear.bias"}, 2);
    check_names(ln, (const char *const[]){"linear.weight", "linear.bias", "norm.weight", "norm.bias"}, 4);
    check_names(mlp, (const char *const[]){"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}, 4);
    projector p;
    projector_init(&p, be, &mlp);
    CHECK(projector_numel(&p) == 9 * 5 + 9 + 4 * 9 + 4, "mlp numel %lld", (long long)projector_numel(&p));
    CHECK(p.params[0].decay && !p.params[1].decay && p.params[2].decay && !p.params[3].decay,
          "weight decay flags: matrices only");
    projector_free(&p);
}

/* ===== descriptions ======================================================== */

static void check_round_trip(projector_config cfg, const char *want) {
    char buf[160], err[200];
    projector_describe(&cfg, buf, sizeof buf);
    projector_config back;
    int rc = projector_config_parse(buf, &back, err, sizeof err);
    CHECK(!strcmp(buf, want), "describe: '%s', want '%s'", buf, want);
    CHECK(rc == 0 && back.type == cfg.type && back.d_in == cfg.d_in && back.d_out == cfg.d_out &&
              (cfg.type != PROJ_MLP || back.d_hidden == (cfg.d_hidden ? cfg.d_hidden : cfg.d_out)) &&
              (cfg.type != PROJ_LINEAR_LN || back.ln_eps == cfg.ln_eps),
          "parse('%s') did not give the config back (rc %d: %s)", buf, rc, rc ? err : "");
}

static void check_parse_error(const char *text, const char *want) {
    char err[200] = "";
    projector_config c;
    int rc = projector_config_parse(text, &c, err, sizeof err);
    CHECK(rc == -1 && strstr(err, want), "parse('%s'): rc %d, '%s', want '%s'", text, rc, err, want);
}

static void test_describe(void) {
    check_round_trip((projector_config){PROJ_LINEAR, 4096, 4096, 0, 0, 1}, "type=linear d_in=4096 d_out=4096");
    check_round_trip((projector_config){PROJ_LINEAR_LN, 32, 64, 0, 1e-5f, 1},
                     "type=linear_ln d_in=32 d_out=64 ln_eps=1e-05");
    check_round_trip((projector_config){PROJ_LINEAR_LN, 3, 5, 0, 1.2345678e-7f, 1},
                     "type=linear_ln d_in=3 d_out=5 ln_eps=1.2345679e-07");
    check_round_trip((projector_config){PROJ_MLP, 8, 16, 0, 0, 1}, "type=mlp d_in=8 d_hidden=16 d_out=16");
    check_round_trip((projector_config){PROJ_MLP, 8, 16, 40, 0, 1}, "type=mlp d_in=8 d_hidden=40 d_out=16");
    check_parse_error("type=conv d_in=3 d_out=3", "unknown projector type 'conv'");
    check_parse_error("type=linear d_in=3", "d_out = 0 must be > 0");
    check_parse_error("type=linear d_in=x3 d_out=3", "d_in has a bad value 'x3'");
    check_parse_error("type=linear d_in=3 d_out=3 depth=2", "unknown projector field 'depth'");
    check_parse_error("linear 3 3", "has no '='");
    CHECK(projector_type_parse("linear+layernorm") == PROJ_LINEAR_LN && projector_type_parse("mlp") == PROJ_MLP &&
              projector_type_parse("MLP") == -1,
          "projector_type_parse spellings");
}

/* ===== schedule ============================================================= */

static void check_lr(const lr_schedule *s, int64_t step, double want) {
    double got = lr_at(s, step);
    CHECK(fabs(got - want) <= 1e-12 * fmax(1.0, fabs(want)) + 1e-15,
          "%s warmup %lld total %lld: lr at step %lld = %.12g, want %.12g", lr_kind_name(s->kind),
          (long long)s->warmup_steps, (long long)s->total_steps, (long long)step, got, want);
}

static void test_schedule(void) {
    lr_schedule cos = {LR_COSINE, 1e-3, 1e-5, 10, 110};
    check_lr(&cos, 1, 1e-4);          /* warmup: peak * 1/10 */
    check_lr(&cos, 5, 5e-4);
    check_lr(&cos, 10, 1e-3);         /* end of warmup: peak */
    check_lr(&cos, 60, 5.05e-4);      /* halfway: (peak + min) / 2 */
    check_lr(&cos, 35, 1e-5 + 0.99e-3 * (1 + sqrt(0.5)) / 2); /* quarter: cos(pi/4) */
    check_lr(&cos, 85, 1e-5 + 0.99e-3 * (1 - sqrt(0.5)) / 2);
    check_lr(&cos, 110, 1e-5);        /* end: min */
    check_lr(&cos, 500, 1e-5);        /* after the end: min */
    lr_schedule no_warm = {LR_COSINE, 2e-4, 0, 0, 4};
    check_lr(&no_warm, 1, 2e-4 * (1 + sqrt(0.5)) / 2);
    check_lr(&no_warm, 2, 1e-4);
    check_lr(&no_warm, 4, 0);
    lr_schedule cst = {LR_CONSTANT, 3e-4, 0, 4, 0};
    check_lr(&cst, 1, 0.75e-4);
    check_lr(&cst, 4, 3e-4);
    check_lr(&cst, 1000000, 3e-4);
    char err[200];
    lr_schedule bad = {LR_COSINE, 1e-3, 2e-3, 0, 10};
    CHECK(lr_schedule_check(&bad, err, sizeof err) && strstr(err, "min_lr"), "min_lr > lr accepted");
    bad = (lr_schedule){LR_COSINE, 1e-3, 0, 20, 10};
    CHECK(lr_schedule_check(&bad, err, sizeof err) && strstr(err, "warmup"), "total < warmup accepted");
    CHECK(!lr_schedule_check(&cos, err, sizeof err), "a valid schedule rejected: %s", err);
    CHECK(lr_kind_parse("cosine") == LR_COSINE && lr_kind_parse("constant") == LR_CONSTANT &&
              lr_kind_parse("linear") == -1,
          "lr_kind_parse");
}

int main(void) {
    tests_begin("test_projector");
    be = backend_cpu();
    test_forward_backward();
    test_step();
    test_init();
    test_describe();
    test_schedule();
    return tests_done();
}
