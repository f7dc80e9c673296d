/* adamw and sumsq on the cpu backend, through the checked wrappers, against
 * float64 references written here. */
#include "../host/ops.h"
#include "testlib.h"
#include <omp.h>

#define TOL 1e-5 /* f32 op vs float64 reference (relative, vector norm) */

static const backend *be;

static tensor f32_1d(float *p, int64_t n) { return tensor_wrap(p, DT_F32, be, 1, (int64_t[]){n}); }
static float *falloc(int64_t n) { return tl_alloc((size_t)n * sizeof(float)); }
static double *dalloc(int64_t n) { return tl_alloc((size_t)n * sizeof(double)); }

/* ===== adamw ============================================================ */

/* Optimiser state in f32 (what the op updates) and its float64 twin. */
typedef struct adam_state {
    int64_t n;
    float *p, *m, *v;
    double *rp, *rm, *rv;
} adam_state;

static adam_state adam_state_new(int64_t n, int warm) {
    adam_state s = {n, falloc(n), falloc(n), falloc(n), dalloc(n), dalloc(n), dalloc(n)};
    fill_normal(s.p, n, 1.0);
    for (int64_t i = 0; i < n; i++) {
        s.m[i] = warm ? (float)(0.01 * rng_normal()) : 0.0f;
        s.v[i] = warm ? (float)rng_uniform(0.0, 1e-3) : 0.0f;
        s.rp[i] = s.p[i], s.rm[i] = s.m[i], s.rv[i] = s.v[i];
    }
    return s;
}
static void adam_state_free(adam_state *s) {
    free(s->p), free(s->m), free(s->v), free(s->rp), free(s->rm), free(s->rv);
}

/* torch.optim.AdamW's update order, written out in float64:
 * p *= 1 - lr wd; m, v moments; p -= (lr / bc1) m / (sqrt(v) / sqrt(bc2) + eps). */
static void ref_adamw_step(adam_state *s, const float *grad, const adamw_opts *o) {
    double bc1 = 1.0 - pow(o->beta1, (double)o->step), bc2 = 1.0 - pow(o->beta2, (double)o->step);
    for (int64_t i = 0; i < s->n; i++) {
        double g = (double)grad[i] * o->grad_scale;
        s->rp[i] *= 1.0 - (double)o->lr * o->weight_decay;
        s->rm[i] = o->beta1 * s->rm[i] + (1.0 - o->beta1) * g;
        s->rv[i] = o->beta2 * s->rv[i] + (1.0 - o->beta2) * g * g;
        double denom = sqrt(s->rv[i]) / sqrt(bc2) + o->eps;
        s->rp[i] -= (o->lr / bc1) * s->rm[i] / denom;
    }
}

/* Several steps of fresh gradients (a few exactly zero: pure weight decay),
 * comparing p, m, v after every step. */
static void check_adamw(int64_t n, adamw_opts o, int steps, int warm) {
    adam_state s = adam_state_new(n, warm);
    float *grad = falloc(n);
    tensor tp = f32_1d(s.p, n), tg = f32_1d(grad, n), tm = f32_1d(s.m, n), tv = f32_1d(s.v, n);
    double worst = 0;
    for (int k = 0; k < steps; k++, o.step++) {
        fill_normal(grad, n, 0.1);
        for (int64_t i = 0; i < n; i += 17) grad[i] = 0.0f;
        ref_adamw_step(&s, grad, &o);
        op_adamw(&tp, &tg, &tm, &tv, &o);
        worst = fmax(worst, rel_err(s.p, s.rp, n));
        worst = fmax(worst, rel_err(s.m, s.rm, n));
        worst = fmax(worst, rel_err(s.v, s.rv, n));
    }
    CHECK(worst <= TOL,
          "adamw n=%lld lr=%g wd=%g grad_scale=%g from step %lld: worst rel err of p/m/v %.3g",
          (long long)n, o.lr, o.weight_decay, o.grad_scale, (long long)(o.step - steps), worst);
    free(grad);
    adam_state_free(&s);
}

/* The update must actually move the parameters by the documented amount
 * (guards against a reference and op that are both no-ops): with zero
 * moments at step 1, p_new = p - lr (sign(g) + wd p) up to eps. */
static void check_adamw_first_step(void) {
    float p[3] = {1.0f, -2.0f, 0.5f}, g[3] = {0.3f, -0.1f, 0.0f}, m[3] = {0}, v[3] = {0};
    adamw_opts o = {.lr = 0.1f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f,
                    .weight_decay = 0.01f, .step = 1, .grad_scale = 2.0f};
    tensor tp = f32_1d(p, 3), tg = f32_1d(g, 3), tm = f32_1d(m, 3), tv = f32_1d(v, 3);
    op_adamw(&tp, &tg, &tm, &tv, &o);
    double want[3] = {1.0 - 0.1 * (1 + 0.01), -2.0 - 0.1 * (-1 - 0.02), 0.5 - 0.1 * 0.005};
    CHECK(rel_err(p, want, 3) <= TOL, "adamw first step: got [%g %g %g], want [%g %g %g]",
          p[0], p[1], p[2], want[0], want[1], want[2]);
}

static void test_adamw(void) {
    adamw_opts typical = {.lr = 1e-2f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f,
                          .weight_decay = 0.1f, .step = 1, .grad_scale = 0.5f};
    adamw_opts no_decay = {.lr = 3e-3f, .beta1 = 0.8f, .beta2 = 0.95f, .eps = 1e-6f,
                           .weight_decay = 0.0f, .step = 1, .grad_scale = 1.0f};
    adamw_opts late = typical;
    late.step = 5000; /* bias corrections near 1 */
    check_adamw(1003, typical, 6, 0);
    check_adamw(1, typical, 4, 0);
    check_adamw(70001, no_decay, 5, 0);
    check_adamw(513, late, 5, 1);
    check_adamw_first_step();
}

/* ===== sumsq ============================================================ */

static void check_sumsq(int64_t n) {
    float *x = falloc(n), out = NAN, again = NAN;
    fill_normal(x, n, 0.7);
    double ref = 0;
    for (int64_t i = 0; i < n; i++) ref += (double)x[i] * x[i];
    tensor tx = f32_1d(x, n), to = f32_1d(&out, 1), ta = f32_1d(&again, 1);
    op_sumsq(&to, &tx);
    /* one thread must give bitwise the same sum (ordered reduction) */
    int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    op_sumsq(&ta, &tx);
    omp_set_num_threads(threads);
    double e = rel_err(&out, &ref, 1);
    CHECK(e <= TOL, "sumsq n=%lld: %.9g vs float64 %.9g (rel err %.3g)", (long long)n, out, ref, e);
    CHECK(memcmp(&out, &again, sizeof out) == 0, "sumsq n=%lld: %.9g with 1 thread, %.9g with %d",
          (long long)n, again, out, threads);
    free(x);
}

static void test_sumsq(void) {
    const int64_t sizes[6] = {1, 7, 65536, 65537, 300001, (1 << 20) + 3};
    for (int k = 0; k < 6; k++) check_sumsq(sizes[k]);
    float zero = 0.0f, out = NAN;
    tensor tz = f32_1d(&zero, 1), to = f32_1d(&out, 1);
    op_sumsq(&to, &tz);
    CHECK(out == 0.0f, "sumsq of [0]: %g", out);
}

int main(void) {
    tests_begin("test_optim");
    be = backend_cpu();
    test_adamw();
    test_sumsq();
    return tests_done();
}
