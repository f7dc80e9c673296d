/* Activations (op_act, op_act_backward) and SwiGLU against float64 textbook
 * formulas written here; the reference derivatives are checked against
 * central finite differences of the reference forward. */
#include "../host/ops.h"
#include "testlib.h"

#define TOL 1e-5    /* f32 kernel vs float64 reference, per output */
#define FD_TOL 1e-6 /* finite differences vs the analytic float64 derivative */

static const double GELU_K = 0.7978845608028654; /* sqrt(2/pi) */

static double sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }

static double ref_act(act_kind kind, double x) {
    switch (kind) {
    case ACT_GELU: return 0.5 * x * (1.0 + erf(x / sqrt(2.0)));
    case ACT_GELU_TANH: return 0.5 * x * (1.0 + tanh(GELU_K * (x + 0.044715 * x * x * x)));
    case ACT_QUICK_GELU: return x * sigmoid(1.702 * x);
    case ACT_SILU: return x * sigmoid(x);
    case ACT_RELU: return x > 0 ? x : 0.0;
    default: return NAN;
    }
}

static double ref_slope(act_kind kind, double x) {
    switch (kind) {
    case ACT_GELU:
        return 0.5 * (1.0 + erf(x / sqrt(2.0))) + x * exp(-0.5 * x * x) / sqrt(2.0 * M_PI);
    case ACT_GELU_TANH: {
        double t = tanh(GELU_K * (x + 0.044715 * x * x * x));
        return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * GELU_K * (1.0 + 3 * 0.044715 * x * x);
    }
    case ACT_QUICK_GELU: {
        double s = sigmoid(1.702 * x);
        return s + 1.702 * x * s * (1.0 - s);
    }
    case ACT_SILU: {
        double s = sigmoid(x);
        return s * (1.0 + x * (1.0 - s));
    }
    case ACT_RELU: return x > 0 ? 1.0 : 0.0;
    default: return NAN;
    }
}

static double fd_slope(act_kind kind, double x) {
    double h = 1e-4 * (fabs(x) > 1 ? fabs(x) : 1);
    return (ref_act(kind, x + h) - ref_act(kind, x - h)) / (2 * h);
}

static tensor wrap(void *p, dtype dt, int64_t n) {
    return tensor_wrap(p, dt, backend_cpu(), 1, (int64_t[]){n});
}

/* Random inputs whose first entries are fixed edge values (saturation, 0). */
static void fill_inputs(float *x, int64_t n) {
    static const float edges[] = {0.0f,  1e-3f,  -1e-3f, 0.5f,   -0.5f,  3.0f,    -3.0f,
                                  10.0f, -10.0f, 30.0f,  -30.0f, 100.0f, -100.0f, 1e-30f};
    for (int64_t i = 0; i < n; i++)
        x[i] =
            i < (int64_t)(sizeof edges / sizeof edges[0]) ? edges[i] : (float)(3.0 * rng_normal());
}

static void check_act(act_kind kind, int64_t n) {
    float *x = tl_alloc((size_t)n * 4), *y = tl_alloc((size_t)n * 4), *dy = tl_alloc((size_t)n * 4),
          *dx = tl_alloc((size_t)n * 4);
    double *yr = tl_alloc((size_t)n * 8), *dxr = tl_alloc((size_t)n * 8),
           *fd = tl_alloc((size_t)n * 8);
    fill_inputs(x, n);
    fill_normal(dy, n, 1.0);
    int64_t nfd = 0;
    for (int64_t i = 0; i < n; i++) {
        yr[i] = ref_act(kind, x[i]);
        dxr[i] = dy[i] * ref_slope(kind, x[i]);
        if (kind == ACT_RELU && fabs(x[i]) < 1e-2) continue; /* the kink */
        fd[nfd++] = dy[i] * fd_slope(kind, x[i]) - dxr[i];
    }
    tensor tx = wrap(x, DT_F32, n), ty = wrap(y, DT_F32, n), tdy = wrap(dy, DT_F32, n),
           tdx = wrap(dx, DT_F32, n);
    poison(y, n);
    op_act(kind, &ty, &tx);
    double e = rel_err(y, yr, n);
    CHECK(e <= TOL, "%s n=%lld: y rel err %.3g", act_name(kind), (long long)n, e);
    poison(dx, n);
    op_act_backward(kind, &tdx, &tdy, &tx);
    e = rel_err(dx, dxr, n);
    CHECK(e <= TOL, "%s n=%lld: dx rel err %.3g", act_name(kind), (long long)n, e);

    double num = 0, den = 0;
    for (int64_t i = 0; i < nfd; i++) num += fd[i] * fd[i];
    for (int64_t i = 0; i < n; i++) den += dxr[i] * dxr[i];
    e = den > 0 ? sqrt(num / den) : sqrt(num);
    CHECK(e <= FD_TOL, "%s n=%lld: finite differences vs analytic slope: %.3g", act_name(kind),
          (long long)n, e);
    free(x), free(y), free(dy), free(dx), free(yr), free(dxr), free(fd);
}

/* Pointwise checks of saturation: no NaN, exact limits far out. */
static void check_act_limits(void) {
    for (int k = 0; k < ACT_COUNT; k++) {
        float x[2] = {-1000.0f, 1000.0f}, y[2], dx[2], dy[2] = {1, 1};
        tensor tx = wrap(x, DT_F32, 2), ty = wrap(y, DT_F32, 2), tdx = wrap(dx, DT_F32, 2),
               tdy = wrap(dy, DT_F32, 2);
        op_act((act_kind)k, &ty, &tx);
        op_act_backward((act_kind)k, &tdx, &tdy, &tx);
        CHECK(y[0] == 0.0f && y[1] == 1000.0f, "%s(+-1000) = %g, %g (want 0, 1000)",
              act_name((act_kind)k), y[0], y[1]);
        CHECK(dx[0] == 0.0f && dx[1] == 1.0f, "%s'(+-1000) = %g, %g (want 0, 1)",
              act_name((act_kind)k), dx[0], dx[1]);
    }
    float x = NAN, y = 0;
    tensor tx = wrap(&x, DT_F32, 1), ty = wrap(&y, DT_F32, 1);
    for (int k = 0; k < ACT_COUNT; k++) {
        op_act((act_kind)k, &ty, &tx);
        CHECK(isnan(y), "%s(NaN) = %g, want NaN", act_name((act_kind)k), y);
    }
}

static double ref_swiglu_loss_grad(double g, double u, double dy, double *dg, double *du) {
    double s = sigmoid(g);
    *dg = dy * u * s * (1.0 + g * (1.0 - s));
    *du = dy * g * s;
    return g * s * u;
}

static void check_swiglu(int64_t n) {
    float *g = tl_alloc((size_t)n * 4), *u = tl_alloc((size_t)n * 4), *dy = tl_alloc((size_t)n * 4),
          *y = tl_alloc((size_t)n * 4), *dg = tl_alloc((size_t)n * 4),
          *du = tl_alloc((size_t)n * 4);
    double *yr = tl_alloc((size_t)n * 8), *dgr = tl_alloc((size_t)n * 8),
           *dur = tl_alloc((size_t)n * 8);
    fill_inputs(g, n);
    fill_normal(u, n, 2.0);
    fill_normal(dy, n, 1.0);
    double fd_num = 0, fd_den = 0;
    for (int64_t i = 0; i < n; i++) {
        yr[i] = ref_swiglu_loss_grad(g[i], u[i], dy[i], &dgr[i], &dur[i]);
        double h = 1e-4 * (fabs(g[i]) > 1 ? fabs(g[i]) : 1), t0, t1;
        double fdg = dy[i] *
                     (ref_swiglu_loss_grad(g[i] + h, u[i], 1, &t0, &t1) -
                      ref_swiglu_loss_grad(g[i] - h, u[i], 1, &t0, &t1)) /
                     (2 * h);
        double fdu = dy[i] *
                     (ref_swiglu_loss_grad(g[i], u[i] + 1e-4, 1, &t0, &t1) -
                      ref_swiglu_loss_grad(g[i], u[i] - 1e-4, 1, &t0, &t1)) /
                     2e-4;
        fd_num += (fdg - dgr[i]) * (fdg - dgr[i]) + (fdu - dur[i]) * (fdu - dur[i]);
        fd_den += dgr[i] * dgr[i] + dur[i] * dur[i];
    }
    tensor tg = wrap(g, DT_F32, n), tu = wrap(u, DT_F32, n), tdy = wrap(dy, DT_F32, n),
           ty = wrap(y, DT_F32, n), tdg = wrap(dg, DT_F32, n), tdu = wrap(du, DT_F32, n);
    poison(y, n);
    op_swiglu(&ty, &tg, &tu);
    double e = rel_err(y, yr, n);
    CHECK(e <= TOL, "swiglu n=%lld: y rel err %.3g", (long long)n, e);
    poison(dg, n), poison(du, n);
    op_swiglu_backward(&tdg, &tdu, &tdy, &tg, &tu);
    double eg = rel_err(dg, dgr, n), eu = rel_err(du, dur, n);
    CHECK(eg <= TOL, "swiglu n=%lld: dgate rel err %.3g", (long long)n, eg);
    CHECK(eu <= TOL, "swiglu n=%lld: dup rel err %.3g", (long long)n, eu);
    e = sqrt(fd_num / fd_den);
    CHECK(e <= FD_TOL, "swiglu n=%lld: finite differences vs analytic: %.3g", (long long)n, e);
    free(g), free(u), free(dy), free(y), free(dg), free(du), free(yr), free(dgr), free(dur);
}

/* bf16 storage (the cuda activation dtype) goes through the same kernels. */
static void check_bf16_act(void) {
    enum { N = 500 };
    uint16_t x[N], y[N];
    double num = 0, den = 0;
    for (int i = 0; i < N; i++) x[i] = f32_to_bf16((float)(3 * rng_normal())), y[i] = 0x7fc0;
    tensor tx = wrap(x, DT_BF16, N), ty = wrap(y, DT_BF16, N);
    op_act(ACT_GELU, &ty, &tx);
    for (int i = 0; i < N; i++) {
        double r = ref_act(ACT_GELU, bf16_to_f32(x[i])), d = bf16_to_f32(y[i]) - r;
        num += d * d, den += r * r;
    }
    CHECK(sqrt(num / den) <= 4e-3, "gelu on bf16 storage: rel err %.3g (bf16 allows 4e-3)",
          sqrt(num / den));
}

/* ---- wrapper errors (in a child process: they exit) ---- */

static void act_mixed_dtypes(void) {
    float x[4] = {0};
    uint16_t y[4];
    tensor tx = wrap(x, DT_F32, 4), ty = wrap(y, DT_BF16, 4);
    op_act(ACT_SILU, &ty, &tx);
}

static void act_bad_kind(void) {
    float x[4] = {0}, y[4];
    tensor tx = wrap(x, DT_F32, 4), ty = wrap(y, DT_F32, 4);
    op_act((act_kind)17, &ty, &tx);
}

static void swiglu_shape_mismatch(void) {
    float g[6] = {0}, u[6] = {0}, y[6];
    tensor tg = wrap(g, DT_F32, 6), tu = wrap(u, DT_F32, 5), ty = wrap(y, DT_F32, 6);
    op_swiglu(&ty, &tg, &tu);
}

static void check_wrapper_errors(void) {
    EXPECT_DIES(act_mixed_dtypes, 1, "act: y has dtype bf16, expected f32");
    EXPECT_DIES(act_bad_kind, 1, "unknown activation kind 17");
    char msg[512];
    int rc = tl_run_child(swiglu_shape_mismatch, msg, sizeof msg);
    CHECK(rc == 1 && strstr(msg, "swiglu") && strstr(msg, "[5]"),
          "swiglu with [6] gate, [5] up: exit %d, '%s'", rc, msg);
    CHECK(act_parse("gelu_pytorch_tanh") == ACT_GELU_TANH &&
              act_parse("quick_gelu") == ACT_QUICK_GELU && act_parse("silu") == ACT_SILU &&
              act_parse("nope") == -1,
          "act_parse spellings");
}

int main(void) {
    tests_begin("test_activation");
    static const int64_t sizes[] = {1, 7, 80, 88, 1000, 40000};
    for (int k = 0; k < ACT_COUNT; k++)
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
            check_act((act_kind)k, sizes[s]);
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) check_swiglu(sizes[s]);
    check_act_limits();
    check_bf16_act();
    check_wrapper_errors();
    return tests_done();
}
