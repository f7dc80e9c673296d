/* RoPE (op_rope), row gather / scatter, add and scale against references
 * written here. RoPE is checked twice: near the origin against angles in
 * float64, and at long positions against angles rounded to f32 the way
 * transformers computes them (the op's documented semantics); its backward
 * (the inverse rotation) against the float64 transpose and finite
 * differences. */
#include "../host/ops.h"
#include "testlib.h"

#define TOL 1e-5        /* f32 kernel vs float64 reference, per output */
#define FD_TOL 1e-6     /* finite differences vs the analytic float64 gradient */
#define ROUND_TRIP 1e-6 /* rope then inverse rope vs the input */

/* ---- RoPE reference ---- */

typedef struct rope_case {
    int64_t B, T, H, hd;
    float theta;
    int f32_angles; /* 1: angle = (float)pos * (f32 inv_freq), as transformers */
} rope_case;

static double rope_angle(const rope_case *c, int32_t pos, int64_t i) {
    if (!c->f32_angles)
        return (double)pos * pow((double)c->theta, -2.0 * (double)i / (double)c->hd);
    float inv_freq = 1.0f / powf(c->theta, (float)(2 * i) / (float)c->hd);
    return (double)((float)pos * inv_freq);
}

static void ref_rope(const rope_case *c, double *y, const double *x, const int32_t *pos,
                     int inverse) {
    int64_t half = c->hd / 2;
    for (int64_t t = 0; t < c->B * c->T; t++)
        for (int64_t h = 0; h < c->H; h++)
            for (int64_t i = 0; i < half; i++) {
                double a = rope_angle(c, pos[t], i), cs = cos(a), sn = inverse ? -sin(a) : sin(a);
                int64_t o = (t * c->H + h) * c->hd;
                double x1 = x[o + i], x2 = x[o + half + i];
                y[o + i] = x1 * cs - x2 * sn;
                y[o + half + i] = x2 * cs + x1 * sn;
            }
}

static tensor wrap4(float *p, const rope_case *c) {
    return tensor_wrap(p, DT_F32, backend_cpu(), 4, (int64_t[]){c->B, c->T, c->H, c->hd});
}

static void run_rope(const rope_case *c, float *x, int32_t *pos, int inverse) {
    tensor tx = wrap4(x, c);
    tensor tp = tensor_wrap(pos, DT_I32, backend_cpu(), 2, (int64_t[]){c->B, c->T});
    op_rope(&tx, &tp, c->theta, inverse);
}

static void to_double(double *d, const float *f, int64_t n) {
    for (int64_t i = 0; i < n; i++) d[i] = f[i];
}

/* L(x) = sum dy * rope(x) by central differences at a few entries, against
 * the analytic gradient g = rope^-1(dy). */
static double rope_fd_error(const rope_case *c, double *x, const double *dy, const int32_t *pos,
                            const double *g, int64_t n) {
    double *y = tl_alloc((size_t)n * 8), num = 0, den = 0;
    for (int s = 0; s < 16; s++) {
        int64_t i = rng_int(n);
        double keep = x[i], l[2];
        for (int k = 0; k < 2; k++) {
            x[i] = keep + (k ? -1e-3 : 1e-3);
            ref_rope(c, y, x, pos, 0);
            l[k] = 0;
            for (int64_t j = 0; j < n; j++) l[k] += dy[j] * y[j];
        }
        x[i] = keep;
        double fd = (l[0] - l[1]) / 2e-3;
        num += (fd - g[i]) * (fd - g[i]);
        den += g[i] * g[i];
    }
    free(y);
    return sqrt(num / den);
}

static void check_rope(rope_case c, int32_t max_pos) {
    int64_t n = c.B * c.T * c.H * c.hd;
    float *x = tl_alloc((size_t)n * 4), *y = tl_alloc((size_t)n * 4), *dy = tl_alloc((size_t)n * 4);
    double *xd = tl_alloc((size_t)n * 8), *yr = tl_alloc((size_t)n * 8),
           *dyd = tl_alloc((size_t)n * 8), *gr = tl_alloc((size_t)n * 8);
    int32_t *pos = tl_alloc((size_t)(c.B * c.T) * 4);
    for (int64_t t = 0; t < c.B * c.T; t++) pos[t] = (int32_t)rng_int(max_pos);
    pos[0] = 0;
    fill_normal(x, n, 1.0);
    fill_normal(dy, n, 1.0);
    to_double(xd, x, n), to_double(dyd, dy, n);
    char name[96];
    snprintf(name, sizeof name, "rope hd %lld theta %g pos < %d%s", (long long)c.hd, c.theta,
             max_pos, c.f32_angles ? " (f32 angles)" : "");

    ref_rope(&c, yr, xd, pos, 0);
    memcpy(y, x, (size_t)n * 4);
    run_rope(&c, y, pos, 0);
    double e = rel_err(y, yr, n);
    CHECK(e <= TOL, "%s: rel err %.3g", name, e);
    run_rope(&c, y, pos, 1);
    e = rel_err_f32(y, x, n);
    CHECK(e <= ROUND_TRIP, "%s: rope then inverse rope differs from the input by %.3g", name, e);

    ref_rope(&c, gr, dyd, pos, 1); /* the gradient: the transposed rotation */
    run_rope(&c, dy, pos, 1);
    e = rel_err(dy, gr, n);
    CHECK(e <= TOL, "%s: backward (inverse) rel err %.3g", name, e);
    e = rope_fd_error(&c, xd, dyd, pos, gr, n);
    CHECK(e <= FD_TOL, "%s: finite differences vs analytic gradient: %.3g", name, e);
    free(x), free(y), free(dy), free(xd), free(yr), free(dyd), free(gr), free(pos);
}

/* Position 0 is the identity; a lone pair rotates by exactly pos radians. */
static void check_rope_small(void) {
    rope_case c = {1, 2, 1, 2, 10000.0f, 0};
    float x[4] = {1.0f, 0.0f, 0.25f, -2.0f};
    int32_t pos[2] = {0, 1};
    run_rope(&c, x, pos, 0);
    CHECK(x[0] == 1.0f && x[1] == 0.0f, "rope at position 0 changed (1, 0) to (%g, %g)", x[0],
          x[1]);
    double want0 = 0.25 * cos(1.0) + 2.0 * sin(1.0), want1 = -2.0 * cos(1.0) + 0.25 * sin(1.0);
    CHECK(fabs(x[2] - want0) < 1e-6 && fabs(x[3] - want1) < 1e-6,
          "rope of (0.25, -2) at position 1: (%g, %g), want (%g, %g)", x[2], x[3], want0, want1);
}

/* ---- gather / scatter ---- */

/* Independent decoders (float64 arithmetic from the bit fields). */
static double decode_bits(uint16_t h, int exp_bits, int man_bits) {
    int bias = (1 << (exp_bits - 1)) - 1, e = (h >> man_bits) & ((1 << exp_bits) - 1);
    int man = h & ((1 << man_bits) - 1);
    double sign = (h & 0x8000) ? -1.0 : 1.0;
    if (e == (1 << exp_bits) - 1) return man ? NAN : sign * INFINITY;
    if (e == 0) return sign * ldexp(man, 1 - bias - man_bits);
    return sign * ldexp(man + (1 << man_bits), e - bias - man_bits);
}

static double table_value(const void *p, dtype dt, int64_t i) {
    if (dt == DT_BF16) return decode_bits(((const uint16_t *)p)[i], 8, 7);
    if (dt == DT_F16) return decode_bits(((const uint16_t *)p)[i], 5, 10);
    return ((const float *)p)[i];
}

static void *random_table(dtype dt, int64_t n) {
    void *p = tl_alloc((size_t)n * dtype_size(dt));
    for (int64_t i = 0; i < n; i++) store_from_f32(p, dt, i, (float)rng_normal());
    return p;
}

static void poison_any(void *p, dtype dt, int64_t n) {
    if (dt == DT_F32)
        poison(p, n);
    else
        for (int64_t i = 0; i < n; i++) ((uint16_t *)p)[i] = 0x7fff; /* NaN in bf16 and f16 */
}

/* n indices in [0, rows), out of order, with at least one repeat. */
static int32_t *random_indices(int64_t n, int64_t rows) {
    int32_t *ix = tl_alloc((size_t)n * 4);
    for (int64_t i = 0; i < n; i++) ix[i] = (int32_t)rng_int(rows);
    if (n > 2) ix[n - 1] = ix[0], ix[1] = (int32_t)(rows - 1), ix[2] = 0;
    return ix;
}

static void check_gather(dtype src_dt, dtype out_dt, int64_t cols, int idx_2d) {
    const int64_t V = 10, N = 12;
    const backend *be = backend_cpu();
    void *table = random_table(src_dt, V * cols), *out = tl_alloc((size_t)(N * cols) * 4);
    int32_t *ix = random_indices(N, V);
    tensor ts = tensor_wrap(table, src_dt, be, 2, (int64_t[]){V, cols});
    tensor ti = idx_2d ? tensor_wrap(ix, DT_I32, be, 2, (int64_t[]){3, N / 3})
                       : tensor_wrap(ix, DT_I32, be, 1, (int64_t[]){N});
    tensor to = idx_2d ? tensor_wrap(out, out_dt, be, 3, (int64_t[]){3, N / 3, cols})
                       : tensor_wrap(out, out_dt, be, 2, (int64_t[]){N, cols});
    poison_any(out, out_dt, N * cols);
    op_gather_rows(&to, &ts, &ti);
    int64_t bad = 0;
    size_t row_bytes = (size_t)cols * dtype_size(src_dt);
    for (int64_t i = 0; i < N; i++) {
        if (out_dt == src_dt) { /* a plain copy: bit-exact */
            bad += memcmp((char *)out + i * row_bytes, (char *)table + ix[i] * row_bytes,
                          row_bytes) != 0;
            continue;
        }
        for (int64_t j = 0; j < cols; j++)
            bad += table_value(out, out_dt, i * cols + j) !=
                   table_value(table, src_dt, ix[i] * cols + j);
    }
    CHECK(bad == 0, "gather_rows %s -> %s, width %lld%s: %lld wrong rows/values",
          dtype_name(src_dt), dtype_name(out_dt), (long long)cols, idx_2d ? ", 2-D idx" : "",
          (long long)bad);
    free(table), free(out), free(ix);
}

static void check_scatter(dtype dt, int64_t cols) {
    const int64_t R = 9, N = 7;
    const backend *be = backend_cpu();
    void *dst = random_table(dt, R * cols), *src = random_table(dt, N * cols);
    void *want = tl_alloc((size_t)(R * cols) * dtype_size(dt));
    int32_t *ix = random_indices(N, R);
    size_t row_bytes = (size_t)cols * dtype_size(dt);
    memcpy(want, dst, (size_t)R * row_bytes);
    for (int64_t i = 0; i < N; i++) /* in order: a repeated index keeps its last row */
        memcpy((char *)want + ix[i] * row_bytes, (char *)src + i * row_bytes, row_bytes);
    tensor td = tensor_wrap(dst, dt, be, 2, (int64_t[]){R, cols});
    tensor ts = tensor_wrap(src, dt, be, 2, (int64_t[]){N, cols});
    tensor ti = tensor_wrap(ix, DT_I32, be, 1, (int64_t[]){N});
    op_scatter_rows(&td, &ts, &ti);
    CHECK(
        memcmp(dst, want, (size_t)R * row_bytes) == 0,
        "scatter_rows %s width %lld: rows differ from the in-order loop (untouched rows must stay)",
        dtype_name(dt), (long long)cols);
    free(dst), free(src), free(want), free(ix);
}

/* ---- add / scale ---- */

static void check_add_scale(int64_t n) {
    float *a = tl_alloc((size_t)n * 4), *b = tl_alloc((size_t)n * 4),
          *out = tl_alloc((size_t)n * 4);
    double *sum = tl_alloc((size_t)n * 8), *scaled = tl_alloc((size_t)n * 8);
    const float s = -2.5f;
    fill_normal(a, n, 1.0), fill_normal(b, n, 3.0);
    for (int64_t i = 0; i < n; i++) sum[i] = (double)a[i] + b[i], scaled[i] = (double)a[i] * s;
    const backend *be = backend_cpu();
    tensor ta = tensor_wrap(a, DT_F32, be, 1, (int64_t[]){n}), tb = ta, to = ta;
    tb.data = b, to.data = out;
    poison(out, n);
    op_add(&to, &ta, &tb);
    CHECK(rel_err(out, sum, n) <= TOL, "add n=%lld: rel err %.3g", (long long)n,
          rel_err(out, sum, n));
    poison(out, n);
    op_scale(&to, &ta, s);
    CHECK(rel_err(out, scaled, n) <= TOL, "scale n=%lld: rel err %.3g", (long long)n,
          rel_err(out, scaled, n));
    op_add(&tb, &ta, &tb); /* out aliases b */
    CHECK(rel_err(b, sum, n) <= TOL, "add n=%lld into b: rel err %.3g", (long long)n,
          rel_err(b, sum, n));
    op_scale(&ta, &ta, s); /* in place */
    CHECK(rel_err(a, scaled, n) <= TOL, "scale n=%lld in place: rel err %.3g", (long long)n,
          rel_err(a, scaled, n));
    for (int64_t i = 0; i < n; i++) sum[i] = 2.0 * a[i];
    op_add(&ta, &ta, &ta); /* out aliases both */
    CHECK(rel_err(a, sum, n) <= TOL, "add n=%lld a + a in place: rel err %.3g", (long long)n,
          rel_err(a, sum, n));
    free(a), free(b), free(out), free(sum), free(scaled);
}

/* ---- errors (in a child process: they exit) ---- */

static int32_t bad_index;

static void gather_bad_index(void) {
    float table[10 * 3] = {0}, out[4 * 3];
    int32_t ix[4] = {1, 9, bad_index, 0};
    const backend *be = backend_cpu();
    tensor ts = tensor_wrap(table, DT_F32, be, 2, (int64_t[]){10, 3});
    tensor to = tensor_wrap(out, DT_F32, be, 2, (int64_t[]){4, 3});
    tensor ti = tensor_wrap(ix, DT_I32, be, 1, (int64_t[]){4});
    op_gather_rows(&to, &ts, &ti);
}

static void scatter_bad_index(void) {
    float dst[9 * 2] = {0}, src[3 * 2] = {0};
    int32_t ix[3] = {bad_index, 0, 1};
    const backend *be = backend_cpu();
    tensor td = tensor_wrap(dst, DT_F32, be, 2, (int64_t[]){9, 2});
    tensor ts = tensor_wrap(src, DT_F32, be, 2, (int64_t[]){3, 2});
    tensor ti = tensor_wrap(ix, DT_I32, be, 1, (int64_t[]){3});
    op_scatter_rows(&td, &ts, &ti);
}

static void rope_odd_head_dim(void) {
    float x[2 * 3] = {0};
    int32_t pos[1] = {0};
    const backend *be = backend_cpu();
    tensor tx = tensor_wrap(x, DT_F32, be, 4, (int64_t[]){1, 1, 2, 3});
    tensor tp = tensor_wrap(pos, DT_I32, be, 2, (int64_t[]){1, 1});
    op_rope(&tx, &tp, 10000.0f, 0);
}

static void gather_wrong_idx_count(void) {
    float table[10 * 3] = {0}, out[4 * 3];
    int32_t ix[5] = {0};
    const backend *be = backend_cpu();
    tensor ts = tensor_wrap(table, DT_F32, be, 2, (int64_t[]){10, 3});
    tensor to = tensor_wrap(out, DT_F32, be, 2, (int64_t[]){4, 3});
    tensor ti = tensor_wrap(ix, DT_I32, be, 1, (int64_t[]){5});
    op_gather_rows(&to, &ts, &ti);
}

static void check_errors(void) {
    char msg[512];
    bad_index = 10;
    int rc = tl_run_child(gather_bad_index, msg, sizeof msg);
    CHECK(rc == 1 && strstr(msg, "gather_rows: index 10 (position 2)") && strstr(msg, "10 rows"),
          "gather index 10 of 10 rows: exit %d, '%s'", rc, msg);
    bad_index = -1;
    rc = tl_run_child(gather_bad_index, msg, sizeof msg);
    CHECK(rc == 1 && strstr(msg, "index -1") && strstr(msg, "10 rows"),
          "gather index -1: exit %d, '%s'", rc, msg);
    bad_index = 9;
    rc = tl_run_child(scatter_bad_index, msg, sizeof msg);
    CHECK(rc == 1 && strstr(msg, "scatter_rows: index 9 (position 0)") && strstr(msg, "9 rows"),
          "scatter index 9 of 9 rows: exit %d, '%s'", rc, msg);
    EXPECT_DIES(rope_odd_head_dim, 1, "head_dim 3 is odd");
    EXPECT_DIES(gather_wrong_idx_count, 1, "idx has shape [5]");
}

int main(void) {
    tests_begin("test_rope_rows");
    static const int64_t head_dims[] = {64, 80, 88, 128};
    static const float thetas[] = {10000.0f, 1000000.0f};
    for (int h = 0; h < 4; h++)
        for (int t = 0; t < 2; t++) {
            check_rope((rope_case){2, 5, 3, head_dims[h], thetas[t], 0}, 64);
            check_rope((rope_case){2, 5, 3, head_dims[h], thetas[t], 1}, 8192);
        }
    check_rope((rope_case){3, 37, 4, 64, 10000.0f, 1}, 4096); /* the parallel path */
    check_rope_small();

    static const dtype float_types[] = {DT_F32, DT_BF16, DT_F16};
    static const int64_t widths[] = {1, 7, 80};
    for (int s = 0; s < 3; s++)
        for (int w = 0; w < 3; w++) {
            check_gather(float_types[s], float_types[s], widths[w], w == 1);
            if (float_types[s] != DT_F32) check_gather(float_types[s], DT_F32, widths[w], w == 2);
            check_scatter(float_types[s], widths[w]);
        }
    static const int64_t sizes[] = {1, 7, 1000, 40000};
    for (int i = 0; i < 4; i++) check_add_scale(sizes[i]);
    check_errors();
    return tests_done();
}
