/* matmul and bias_grad on the cpu backend, through the checked wrappers,
 * against float64 loops written here. Weights stored bf16/f16 are compared
 * with a reference built from the same rounded values, so only the f32
 * accumulation error remains: rel err <= 1e-5 per output tensor. */
#include "../host/ops.h"
#include "testlib.h"

static const backend *be;

/* ---- inputs ---------------------------------------------------------------- */

/* n normal values stored as dt; rounded[i] gets the stored value exactly. */
static void *random_stored(dtype dt, int64_t n, double *rounded) {
    void *p = tl_alloc((size_t)n * dtype_size(dt));
    for (int64_t i = 0; i < n; i++) {
        store_from_f32(p, dt, i, (float)rng_normal());
        rounded[i] = load_as_f32(p, dt, i);
    }
    return p;
}

static void poison_stored(void *p, dtype dt, int64_t n) {
    for (int64_t i = 0; i < n; i++) store_from_f32(p, dt, i, NAN);
}

static float *as_f32(const void *p, dtype dt, int64_t n) {
    float *f = tl_alloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++) f[i] = load_as_f32(p, dt, i);
    return f;
}

/* ---- matmul ---------------------------------------------------------------- */

typedef struct mm_case {
    int64_t m, k, n;
    int trans_a, trans_b, with_bias;
    float beta;
    dtype a_dt, b_dt, out_dt;
} mm_case;

/* ref[i, j] = sum_p op(a)[i, p] op(b)[p, j] + bias[j] + beta * old[i, j], in f64. */
static void matmul_ref(double *ref, const mm_case *c, const double *a, const double *b,
                       const double *bias, const double *old) {
    for (int64_t i = 0; i < c->m; i++)
        for (int64_t j = 0; j < c->n; j++) {
            double s = 0;
            for (int64_t p = 0; p < c->k; p++) {
                double av = c->trans_a ? a[p * c->m + i] : a[i * c->k + p];
                double bv = c->trans_b ? b[j * c->k + p] : b[p * c->n + j];
                s += av * bv;
            }
            if (bias) s += bias[j];
            if (c->beta != 0.0f) s += (double)c->beta * old[i * c->n + j];
            ref[i * c->n + j] = s;
        }
}

/* Runs one case; returns the relative error of out against the f64 reference. */
static double run_matmul_case(const mm_case *c) {
    int64_t m = c->m, k = c->k, n = c->n;
    double *a64 = tl_alloc((size_t)(m * k) * 8), *b64 = tl_alloc((size_t)(k * n) * 8);
    double *bias64 = tl_alloc((size_t)n * 8), *old64 = tl_alloc((size_t)(m * n) * 8);
    double *ref = tl_alloc((size_t)(m * n) * 8);
    void *a = random_stored(c->a_dt, m * k, a64), *b = random_stored(c->b_dt, k * n, b64);
    void *bias = random_stored(DT_F32, n, bias64);
    void *out = random_stored(c->out_dt, m * n, old64);
    if (c->beta == 0.0f) poison_stored(out, c->out_dt, m * n); /* beta 0 must not read out */
    matmul_ref(ref, c, a64, b64, c->with_bias ? bias64 : NULL, old64);

    int64_t sa[2] = {c->trans_a ? k : m, c->trans_a ? m : k};
    int64_t sb[2] = {c->trans_b ? n : k, c->trans_b ? k : n}, sn[1] = {n}, so[2] = {m, n};
    tensor ta = tensor_wrap(a, c->a_dt, be, 2, sa), tb = tensor_wrap(b, c->b_dt, be, 2, sb);
    tensor tbias = tensor_wrap(bias, DT_F32, be, 1, sn),
           to = tensor_wrap(out, c->out_dt, be, 2, so);
    op_matmul(&to, &ta, &tb, c->with_bias ? &tbias : NULL, c->trans_a, c->trans_b, c->beta);

    float *got = as_f32(out, c->out_dt, m * n);
    double err = rel_err(got, ref, m * n);
    free(got), free(a), free(b), free(bias), free(out);
    free(a64), free(b64), free(bias64), free(old64), free(ref);
    return err;
}

static const int64_t mm_shapes[][3] = {
    /* m, k, n: tiny, odd, row counts that leave a remainder after groups of
     * 4, k over one 256 block, n over one 512 block */
    {1, 1, 1}, {3, 5, 7}, {17, 33, 65}, {64, 257, 130}, {6, 300, 513}, {1, 70, 9},
};

/* Every transpose combination, with and without bias, beta 0 and 1, weights
 * b stored f32, bf16 and f16. */
static void test_matmul_combinations(void) {
    const dtype b_dts[3] = {DT_F32, DT_BF16, DT_F16};
    for (size_t s = 0; s < sizeof mm_shapes / sizeof mm_shapes[0]; s++)
        for (int t = 0; t < 4; t++)
            for (int flags = 0; flags < 4; flags++)
                for (int d = 0; d < 3; d++) {
                    mm_case c = {mm_shapes[s][0], mm_shapes[s][1], mm_shapes[s][2],     t & 1,
                                 t >> 1,          flags & 1,       (float)(flags >> 1), DT_F32,
                                 b_dts[d],        DT_F32};
                    double err = run_matmul_case(&c);
                    CHECK(err <= 1e-5,
                          "matmul m=%lld k=%lld n=%lld trans_a=%d trans_b=%d bias=%d beta=%g b=%s: "
                          "rel err %.3g",
                          (long long)c.m, (long long)c.k, (long long)c.n, c.trans_a, c.trans_b,
                          c.with_bias, (double)c.beta, dtype_name(c.b_dt), err);
                }
}

/* a stored bf16/f16 too, a bigger shape across several blocks in every
 * dimension, a beta other than 0/1, and a bf16 output (compared at bf16
 * rounding, 2^-8). */
static void test_matmul_other_dtypes(void) {
    mm_case cases[] = {
        {13, 40, 21, 0, 1, 1, 0.0f, DT_BF16, DT_BF16, DT_F32},
        {13, 40, 21, 1, 0, 0, 1.0f, DT_F16, DT_F32, DT_F32},
        {70, 600, 1100, 0, 1, 1, 0.0f, DT_F32, DT_BF16, DT_F32},
        {33, 530, 17, 1, 0, 0, 0.5f, DT_F32, DT_F32, DT_F32},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        double err = run_matmul_case(&cases[i]);
        CHECK(err <= 1e-5, "matmul case %zu (a %s, b %s): rel err %.3g", i,
              dtype_name(cases[i].a_dt), dtype_name(cases[i].b_dt), err);
    }
    mm_case bf16_out = {9, 31, 12, 0, 1, 1, 1.0f, DT_F32, DT_F32, DT_BF16};
    double err = run_matmul_case(&bf16_out);
    CHECK(err <= 4e-3, "matmul with bf16 out: rel err %.3g", err);
}

/* Leading dims flatten into rows: a Linear on [B, T, in] and its weight
 * gradient dW += dy^T x with dy [B, T, out], x [B, T, in]. */
static void test_matmul_leading_dims(void) {
    enum { B = 2, T = 5, IN = 11, OUT = 6 };
    double x64[B * T * IN], w64[OUT * IN], dy64[B * T * OUT], dw64[OUT * IN];
    double ref[B * T * OUT + OUT * IN]; /* holds y, then dW */
    float *x = random_stored(DT_F32, B * T * IN, x64), *w = random_stored(DT_F32, OUT * IN, w64);
    float *dy = random_stored(DT_F32, B * T * OUT, dy64),
          *dw = random_stored(DT_F32, OUT * IN, dw64);
    float y[B * T * OUT];
    poison(y, B * T * OUT);
    int64_t sx[3] = {B, T, IN}, sw[2] = {OUT, IN}, sy[3] = {B, T, OUT};
    tensor tx = tensor_wrap(x, DT_F32, be, 3, sx), tw = tensor_wrap(w, DT_F32, be, 2, sw);
    tensor ty = tensor_wrap(y, DT_F32, be, 3, sy), tdy = tensor_wrap(dy, DT_F32, be, 3, sy);
    tensor tdw = tensor_wrap(dw, DT_F32, be, 2, sw);

    op_matmul(&ty, &tx, &tw, NULL, 0, 1, 0.0f);
    mm_case fwd = {B * T, IN, OUT, 0, 1, 0, 0.0f, DT_F32, DT_F32, DT_F32};
    matmul_ref(ref, &fwd, x64, w64, NULL, NULL);
    double err = rel_err(y, ref, B * T * OUT);
    CHECK(err <= 1e-5, "linear on [B, T, in]: rel err %.3g", err);

    op_matmul(&tdw, &tdy, &tx, NULL, 1, 0, 1.0f);
    mm_case wgrad = {OUT, B * T, IN, 1, 0, 0, 1.0f, DT_F32, DT_F32, DT_F32};
    matmul_ref(ref, &wgrad, dy64, x64, NULL, dw64);
    err = rel_err(dw, ref, OUT * IN);
    CHECK(err <= 1e-5, "weight grad dW += dy^T x over [B, T]: rel err %.3g", err);
    free(x), free(w), free(dy), free(dw);
}

/* k = 0: out is just bias (+ beta * out). */
static void test_matmul_empty_k(void) {
    float a[1], b[1], bias[3] = {1, 2, 3}, out[6] = {1, 1, 1, 2, 2, 2};
    int64_t sa[2] = {2, 0}, sb[2] = {0, 3}, sn[1] = {3}, so[2] = {2, 3};
    tensor ta = tensor_wrap(a, DT_F32, be, 2, sa), tb = tensor_wrap(b, DT_F32, be, 2, sb);
    tensor tbias = tensor_wrap(bias, DT_F32, be, 1, sn), to = tensor_wrap(out, DT_F32, be, 2, so);
    op_matmul(&to, &ta, &tb, &tbias, 0, 0, 1.0f);
    double ref[6] = {2, 3, 4, 3, 4, 5};
    CHECK(rel_err(out, ref, 6) == 0.0, "matmul with k = 0");
}

/* ---- bias_grad ------------------------------------------------------------- */

static void test_bias_grad(void) {
    const int64_t shapes[][3] = {{1, 1, 1}, {1, 7, 3}, {1, 33, 130}, {2, 5, 70}, {3, 41, 200}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int beta = 0; beta <= 1; beta++) {
            int64_t rows = shapes[s][0] * shapes[s][1], n = shapes[s][2];
            double *dy64 = tl_alloc((size_t)(rows * n) * 8), *db64 = tl_alloc((size_t)n * 8);
            double *ref = tl_alloc((size_t)n * 8);
            float *dy = random_stored(DT_F32, rows * n, dy64), *db = random_stored(DT_F32, n, db64);
            if (!beta) poison(db, n);
            for (int64_t j = 0; j < n; j++) {
                ref[j] = beta ? db64[j] : 0.0;
                for (int64_t r = 0; r < rows; r++) ref[j] += dy64[r * n + j];
            }
            tensor tdy = tensor_wrap(dy, DT_F32, be, 3, shapes[s]);
            tensor tdb = tensor_wrap(db, DT_F32, be, 1, &n);
            op_bias_grad(&tdb, &tdy, (float)beta);
            double err = rel_err(db, ref, n);
            CHECK(err <= 1e-5, "bias_grad rows=%lld n=%lld beta=%d: rel err %.3g", (long long)rows,
                  (long long)n, beta, err);
            free(dy64), free(db64), free(ref), free(dy), free(db);
        }
}

/* ---- the wrappers refuse bad calls ----------------------------------------- */

static float scratch_a[64], scratch_b[64], scratch_out[64];

static void call_matmul(const backend *on, int64_t k_of_b, int64_t out_cols, int64_t bias_n,
                        dtype a_dt) {
    int64_t sa[2] = {2, 3}, sb[2] = {k_of_b, 4}, so[2] = {2, out_cols}, sn[1] = {bias_n};
    tensor a = tensor_wrap(scratch_a, a_dt, on, 2, sa),
           b = tensor_wrap(scratch_b, DT_F32, on, 2, sb);
    tensor out = tensor_wrap(scratch_out, DT_F32, on, 2, so);
    tensor bias = tensor_wrap(scratch_a, DT_F32, on, 1, sn);
    op_matmul(&out, &a, &b, &bias, 0, 0, 0.0f);
}
static void bad_k(void) { call_matmul(be, 5, 4, 4, DT_F32); }
static void bad_out(void) { call_matmul(be, 3, 5, 4, DT_F32); }
static void bad_bias(void) { call_matmul(be, 3, 4, 3, DT_F32); }
static void bad_dtype(void) { call_matmul(be, 3, 4, 4, DT_I32); }
static void missing_op(void) {
    static backend partial;
    partial = *be;
    partial.matmul = NULL;
    call_matmul(&partial, 3, 4, 4, DT_F32);
}
static void bad_bias_grad(void) {
    int64_t sdy[2] = {3, 4}, sdb[1] = {3};
    tensor dy = tensor_wrap(scratch_a, DT_F32, be, 2, sdy),
           db = tensor_wrap(scratch_b, DT_F32, be, 1, sdb);
    op_bias_grad(&db, &dy, 0.0f);
}

static void test_wrapper_errors(void) {
    call_matmul(be, 3, 4, 4, DT_F32); /* the valid call these variations start from */
    CHECK(1, "valid call");
    EXPECT_DIES(bad_k, 1, "disagree on K");
    EXPECT_DIES(bad_out, 1, "op_matmul: out [2, 5]");
    EXPECT_DIES(bad_bias, 1, "bias has shape [3], expected [4]");
    EXPECT_DIES(bad_dtype, 1, "a has dtype i32");
    EXPECT_DIES(missing_op, 1, "op matmul is not implemented on backend cpu");
    EXPECT_DIES(bad_bias_grad, 1, "op_bias_grad: db has shape [3]");
}

int main(void) {
    tests_begin("test_matmul");
    be = backend_cpu();
    test_matmul_combinations();
    test_matmul_other_dtypes();
    test_matmul_leading_dims();
    test_matmul_empty_k();
    test_bias_grad();
    test_wrapper_errors();
    return tests_done();
}
