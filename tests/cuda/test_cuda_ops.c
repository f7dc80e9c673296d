/* test_cuda_ops: every op of the cuda backend against the cpu reference.
 *
 * Each case draws fresh random inputs on the host, rounds them to the dtype
 * the gpu side stores (so both backends see exactly the same values), runs
 * the op on backend_cpu() in f32 and on backend_cuda() (f32 storage, then
 * bf16 storage for activations), and compares:
 *   ||gpu - cpu|| / ||cpu|| <= 1e-5 for f32 paths, <= 1e-2 for bf16 paths;
 *   a NaN anywhere fails; infinities must match exactly (lse = -inf rows).
 * gpu outputs are poisoned with NaN before every run (unwritten values fail),
 * and every gpu op runs twice: the two results must be bitwise identical
 * (determinism). Shapes include odd sizes, misaligned row views, GQA,
 * causal with Tq != Tk, masks, biases, fully masked rows and the head dims
 * aimc uses (64, 80, 88, 128, plus 8, 32 and 36).
 *
 * Without a usable GPU this prints "cuda tests: no GPU (reason)" and fails:
 * `make test-cuda` is only run where a GPU is expected, or on the CPU
 * emulator (`make test-cuda-emu`, tests/cuda/emu/README.md). */
#include "../../host/ops.h"
#include "../../kernels/check.h"
#include "../testlib.h"
#include "cuda_test.h"

static const backend *CPU, *GPU;

#define TOL_F32 1e-5
#define TOL_BF16 1e-2
static double tol_for(dtype dt) { return dt == DT_F32 ? TOL_F32 : TOL_BF16; }

/* ---- tensors on both backends ------------------------------------------------ */

/* One logical tensor: c is f32 on the cpu, g has the dtype under test on the
 * gpu; both hold the same values (g's dtype can represent them). */
typedef struct dual {
    tensor c, g;
    int64_t n;
} dual;

static tensor new_on(const backend *be, dtype dt, int ndim, const int64_t *shape) {
    tensor t = tensor_wrap(NULL, dt, be, ndim, shape);
    t.data = be->alloc(tensor_bytes(&t));
    return t;
}

/* x (f32 values) stored into t, whatever t's dtype and backend. */
static void put(const tensor *t, const float *x) {
    int64_t n = tensor_numel(t);
    void *bytes = tl_alloc(tensor_bytes(t));
    for (int64_t i = 0; i < n; i++) store_from_f32(bytes, t->dt, i, x[i]);
    t->be->upload(t->data, bytes, tensor_bytes(t));
    free(bytes);
}

/* t's values as f32 into x. */
static void get(float *x, const tensor *t) {
    int64_t n = tensor_numel(t);
    void *bytes = tl_alloc(tensor_bytes(t));
    t->be->download(bytes, t->data, tensor_bytes(t));
    for (int64_t i = 0; i < n; i++) x[i] = load_as_f32(bytes, t->dt, i);
    free(bytes);
}

/* v as the dtype stores it. */
static float round_to(float v, dtype dt) {
    unsigned char buf[4];
    store_from_f32(buf, dt, 0, v);
    return load_as_f32(buf, dt, 0);
}

static dual dual_new(dtype gdt, int ndim, const int64_t *shape) {
    dual d = {new_on(CPU, DT_F32, ndim, shape), new_on(GPU, gdt, ndim, shape), 0};
    d.n = tensor_numel(&d.c);
    return d;
}
#define DUAL(dt, ...)                                                                              \
    dual_new((dt), (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)),                      \
             (int64_t[]){__VA_ARGS__})

/* The same values (rounded to the gpu dtype) on both sides. */
static void dual_set(const dual *d, const float *x) {
    float *r = tl_alloc((size_t)d->n * sizeof(float));
    for (int64_t i = 0; i < d->n; i++) r[i] = round_to(x[i], d->g.dt);
    put(&d->c, r);
    put(&d->g, r);
    free(r);
}

/* Fresh uniform values in [lo, hi); returns the host copy (caller frees). */
static float *dual_fill(const dual *d, double lo, double hi) {
    float *x = tl_alloc((size_t)d->n * sizeof(float));
    fill_uniform(x, d->n, lo, hi);
    for (int64_t i = 0; i < d->n; i++) x[i] = round_to(x[i], d->g.dt);
    dual_set(d, x);
    return x;
}
static void dual_rand(const dual *d, double lo, double hi) { free(dual_fill(d, lo, hi)); }

static void poison_tensor(const tensor *t) {
    float *x = tl_alloc((size_t)tensor_numel(t) * sizeof(float));
    poison(x, tensor_numel(t));
    put(t, x);
    free(x);
}
static void dual_poison(const dual *d) {
    poison_tensor(&d->c);
    poison_tensor(&d->g);
}

static void dual_free(dual *d) {
    CPU->release(d->c.data);
    GPU->release(d->g.data);
}

/* Rows [r0, r0 + n) of d (a view: not freed separately). */
static dual dual_rows(const dual *d, int64_t r0, int64_t n) {
    dual v = {tensor_slice0(&d->c, r0, n), tensor_slice0(&d->g, r0, n), 0};
    v.n = tensor_numel(&v.c);
    return v;
}

/* i32 tensor on both backends with the same values. */
typedef struct ipair {
    tensor c, g;
} ipair;

static ipair ipair_new(const int32_t *v, int ndim, const int64_t *shape) {
    ipair p = {new_on(CPU, DT_I32, ndim, shape), new_on(GPU, DT_I32, ndim, shape)};
    CPU->upload(p.c.data, v, tensor_bytes(&p.c));
    GPU->upload(p.g.data, v, tensor_bytes(&p.g));
    return p;
}
static void ipair_free(ipair *p) {
    CPU->release(p->c.data);
    GPU->release(p->g.data);
}

/* ---- comparison ---------------------------------------------------------------- */

/* ||gpu - cpu|| / ||cpu|| over finite reference values. NaN on either side
 * gives NaN (fails every bound); an infinity must be matched exactly. */
static double dual_err(const dual *d) {
    float *a = tl_alloc((size_t)d->n * sizeof(float)), *b = tl_alloc((size_t)d->n * sizeof(float));
    get(a, &d->g);
    get(b, &d->c);
    double num = 0, den = 0;
    int bad = 0;
    for (int64_t i = 0; i < d->n; i++) {
        if (isnan(a[i]) || isnan(b[i]))
            bad = 1;
        else if (isinf(a[i]) || isinf(b[i]))
            bad |= a[i] != b[i];
        else
            num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]), den += (double)b[i] * b[i];
    }
    free(a);
    free(b);
    if (bad) return NAN;
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static void expect_close(const char *case_name, const char *what, const dual *d, double tol) {
    double e = dual_err(d);
    CHECK(e <= tol, "%s: %s: rel err %.3g > %.0e", case_name, what, e, tol);
}

/* ---- determinism: two gpu runs, bitwise ---------------------------------------- */

enum { MAX_OUTS = 8 };
typedef struct snap {
    void *bytes[MAX_OUTS];
} snap;

static void snap_take(snap *s, dual *const *outs, int n) {
    for (int i = 0; i < n; i++) {
        size_t bytes = tensor_bytes(&outs[i]->g);
        s->bytes[i] = tl_alloc(bytes);
        GPU->download(s->bytes[i], outs[i]->g.data, bytes);
    }
}

static int snap_same(snap *s, dual *const *outs, int n) {
    int same = 1;
    for (int i = 0; i < n; i++) {
        size_t bytes = tensor_bytes(&outs[i]->g);
        void *now = tl_alloc(bytes);
        GPU->download(now, outs[i]->g.data, bytes);
        same &= memcmp(now, s->bytes[i], bytes) == 0;
        free(now);
        free(s->bytes[i]);
    }
    return same;
}

/* Runs `call` on the gpu twice, each time with the outputs poisoned and then
 * `reset` (re-uploading inputs that the op overwrites); the two runs must
 * agree bit for bit. The second run's outputs are left for comparison. */
#define GPU_TWICE(case_name, outs, reset, call)                                                    \
    do {                                                                                           \
        int n_outs_ = (int)(sizeof(outs) / sizeof((outs)[0]));                                     \
        snap s_;                                                                                   \
        for (int run_ = 0; run_ < 2; run_++) {                                                     \
            for (int o_ = 0; o_ < n_outs_; o_++) poison_tensor(&(outs)[o_]->g);                    \
            reset;                                                                                 \
            call;                                                                                  \
            GPU->sync();                                                                           \
            if (run_ == 0) snap_take(&s_, (outs), n_outs_);                                        \
        }                                                                                          \
        CHECK(snap_same(&s_, (outs), n_outs_), "%s: two gpu runs differ", case_name);              \
    } while (0)

#define NOTHING ((void)0)

/* ---- matmul, bias_grad ----------------------------------------------------------- */

typedef struct mm_case {
    int64_t m, n, k;
    int trans_a, trans_b;
    dtype a_dt, b_dt, out_dt;
    int bias; /* 0 none, else its dtype + 1 */
    float beta;
    int misaligned; /* a is a row view starting one row in (odd K: unaligned pointer) */
} mm_case;

static void test_matmul(const mm_case *t) {
    char name[160];
    snprintf(name, sizeof name, "matmul m%lld n%lld k%lld ta%d tb%d %s.%s->%s bias%d beta%g%s",
             (long long)t->m, (long long)t->n, (long long)t->k, t->trans_a, t->trans_b,
             dtype_name(t->a_dt), dtype_name(t->b_dt), dtype_name(t->out_dt), t->bias,
             (double)t->beta, t->misaligned ? " misaligned" : "");
    int64_t extra = t->misaligned ? 1 : 0;
    dual a_full =
        t->trans_a ? DUAL(t->a_dt, t->k + extra, t->m) : DUAL(t->a_dt, t->m + extra, t->k);
    dual a = dual_rows(&a_full, extra, a_full.c.shape[0] - extra);
    dual b = t->trans_b ? DUAL(t->b_dt, t->n, t->k) : DUAL(t->b_dt, t->k, t->n);
    dual out = DUAL(t->out_dt, t->m, t->n),
         bias_full = DUAL(t->bias ? (dtype)(t->bias - 1) : DT_F32, t->n + extra);
    dual bias = dual_rows(&bias_full, extra, t->n); /* misaligned too: no bias epilogue */
    dual_rand(&a_full, -1, 1);
    dual_rand(&b, -1, 1);
    dual_rand(&bias_full, -1, 1);
    float *out0 = dual_fill(&out, -1, 1);
    const tensor *bc = t->bias ? &bias.c : NULL, *bg = t->bias ? &bias.g : NULL;
    op_matmul(&out.c, &a.c, &b.c, bc, t->trans_a, t->trans_b, t->beta);
    dual *outs[] = {&out};
    GPU_TWICE(name, outs, put(&out.g, out0),
              op_matmul(&out.g, &a.g, &b.g, bg, t->trans_a, t->trans_b, t->beta));
    int all_f32 = t->a_dt == DT_F32 && t->b_dt == DT_F32 && t->out_dt == DT_F32;
    expect_close(name, "out", &out, all_f32 ? TOL_F32 : TOL_BF16);
    free(out0);
    dual_free(&a_full), dual_free(&b), dual_free(&out), dual_free(&bias_full);
}

static void test_matmuls(void) {
    const mm_case cases[] = {
        {37, 29, 53, 0, 1, DT_F32, DT_F32, DT_F32, 0, 0.0f, 0},
        {37, 29, 53, 0, 1, DT_F32, DT_F32, DT_F32, 1, 0.0f, 1},
        {64, 48, 80, 0, 0, DT_F32, DT_F32, DT_F32, 0, 1.0f, 0},
        {33, 17, 65, 1, 0, DT_F32, DT_F32, DT_F32, 0, 0.5f, 0},
        {20, 70, 31, 1, 1, DT_F32, DT_F32, DT_F32, 1, 0.0f, 0},
        {37, 29, 53, 0, 1, DT_BF16, DT_BF16, DT_BF16, DT_BF16 + 1, 0.0f, 1},
        {64, 96, 128, 0, 1, DT_BF16, DT_BF16, DT_BF16, DT_F32 + 1, 0.0f, 0},
        {64, 96, 128, 0, 0, DT_BF16, DT_BF16, DT_F32, DT_F32 + 1, 1.0f, 0},
        {45, 32, 77, 1, 0, DT_BF16, DT_BF16, DT_F32, 0, 1.0f, 0},
        {45, 32, 77, 0, 1, DT_BF16, DT_F32, DT_F32, DT_F32 + 1, 0.0f,
         0}, /* mixed: f32 master weights */
        {45, 32, 77, 0, 1, DT_BF16, DT_F32, DT_BF16, DT_F32 + 1, 0.5f,
         1}, /* mixed, bf16 out, beta */
        {16, 24, 40, 0, 1, DT_F16, DT_F16, DT_F16, DT_F16 + 1, 0.0f, 0},
        {5, 7, 0, 0, 1, DT_F32, DT_F32, DT_F32, 1, 0.5f, 0}, /* K = 0: out = beta out + bias */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) test_matmul(&cases[i]);
}

static void test_bias_grad(dtype dt, int64_t rows, int64_t cols, float beta) {
    char name[96];
    snprintf(name, sizeof name, "bias_grad %s rows%lld cols%lld beta%g", dtype_name(dt),
             (long long)rows, (long long)cols, (double)beta);
    dual dy = DUAL(dt, rows, cols), db = DUAL(DT_F32, cols);
    dual_rand(&dy, -1, 1);
    float *db0 = dual_fill(&db, -1, 1);
    op_bias_grad(&db.c, &dy.c, beta);
    dual *outs[] = {&db};
    GPU_TWICE(name, outs, put(&db.g, db0), op_bias_grad(&db.g, &dy.g, beta));
    expect_close(name, "db", &db, TOL_F32); /* same inputs, f64 sums on both */
    free(db0);
    dual_free(&dy), dual_free(&db);
}

/* ---- attention --------------------------------------------------------------- */

typedef struct attn_case {
    int64_t b, tq, tk, hq, hkv, hd;
    int causal, mask, bias, masked_batch; /* masked_batch: batch 1 sees no key */
} attn_case;

/* bf16 attention (forward and backward) runs on tensor cores
 * (attention_mma.cu) unless AIMC_ATTN_SIMT is set; both are tested. */
static const char *attn_path(dtype dt) {
    if (dt != DT_BF16) return "";
    return getenv("AIMC_ATTN_SIMT") ? " simt" : " mma";
}

static void attn_case_name(char *name, size_t n, const attn_case *t, dtype dt) {
    snprintf(name, n, "attention %s%s B%lld Tq%lld Tk%lld Hq%lld Hkv%lld hd%lld%s%s%s%s",
             dtype_name(dt), attn_path(dt), (long long)t->b, (long long)t->tq, (long long)t->tk, (long long)t->hq,
             (long long)t->hkv, (long long)t->hd, t->causal ? " causal" : "",
             t->mask ? " mask" : "", t->bias ? " bias" : "",
             t->masked_batch ? " masked-batch" : "");
}

/* Key mask [B, Tk]: about 80% ones (key 0 always visible), batch 1 all zero
 * when asked. */
static void fill_key_mask(const dual *m, const attn_case *t) {
    float *x = tl_alloc((size_t)m->n * sizeof(float));
    for (int64_t b = 0; b < t->b; b++)
        for (int64_t j = 0; j < t->tk; j++)
            x[b * t->tk + j] =
                (t->masked_batch && b == 1) ? 0.0f : (j == 0 || rng_uniform(0, 1) < 0.8);
    dual_set(m, x);
    free(x);
}

static void test_attention(const attn_case *t, dtype dt) {
    char name[200];
    attn_case_name(name, sizeof name, t, dt);
    dual q = DUAL(dt, t->b, t->tq, t->hq, t->hd), k = DUAL(dt, t->b, t->tk, t->hkv, t->hd);
    dual v = DUAL(dt, t->b, t->tk, t->hkv, t->hd), out = DUAL(dt, t->b, t->tq, t->hq, t->hd);
    dual lse = DUAL(DT_F32, t->b, t->hq, t->tq), mask = DUAL(DT_F32, t->b, t->tk);
    dual bias = DUAL(DT_F32, t->b, t->tq, t->tk);
    dual_rand(&q, -2, 2), dual_rand(&k, -2, 2), dual_rand(&v, -1, 1), dual_rand(&bias, -1, 1);
    fill_key_mask(&mask, t);
    attn_opts oc = {.scale = 1.0f / sqrtf((float)t->hd),
                    .causal = t->causal,
                    .key_mask = t->mask ? &mask.c : NULL,
                    .bias = t->bias ? &bias.c : NULL};
    attn_opts og = oc;
    og.key_mask = t->mask ? &mask.g : NULL, og.bias = t->bias ? &bias.g : NULL;
    dual_poison(&out), dual_poison(&lse);
    op_attention(&out.c, &lse.c, &q.c, &k.c, &v.c, &oc);
    dual *fwd_outs[] = {&out, &lse};
    GPU_TWICE(name, fwd_outs, NOTHING, op_attention(&out.g, &lse.g, &q.g, &k.g, &v.g, &og));
    expect_close(name, "out", &out, tol_for(dt));
    expect_close(name, "lse", &lse, TOL_F32); /* f32 from identical inputs */

    /* Backward from the same forward results on both sides: the cpu's out
     * (rounded to dt) and lse, so only the backward kernels are compared. */
    float *host = tl_alloc((size_t)out.n * sizeof(float));
    get(host, &out.c);
    dual_set(&out, host);
    free(host);
    host = tl_alloc((size_t)lse.n * sizeof(float));
    get(host, &lse.c);
    put(&lse.g, host);
    free(host);
    dual dout = DUAL(dt, t->b, t->tq, t->hq, t->hd), dq = DUAL(dt, t->b, t->tq, t->hq, t->hd);
    dual dk = DUAL(dt, t->b, t->tk, t->hkv, t->hd), dv = DUAL(dt, t->b, t->tk, t->hkv, t->hd);
    dual_rand(&dout, -1, 1);
    dual_poison(&dq), dual_poison(&dk), dual_poison(&dv);
    op_attention_backward(&dq.c, &dk.c, &dv.c, &dout.c, &q.c, &k.c, &v.c, &out.c, &lse.c, &oc);
    dual *bwd_outs[] = {&dq, &dk, &dv};
    GPU_TWICE(
        name, bwd_outs, NOTHING,
        op_attention_backward(&dq.g, &dk.g, &dv.g, &dout.g, &q.g, &k.g, &v.g, &out.g, &lse.g, &og));
    expect_close(name, "dq", &dq, tol_for(dt));
    expect_close(name, "dk", &dk, tol_for(dt));
    expect_close(name, "dv", &dv, tol_for(dt));
    dual *all[] = {&q, &k, &v, &out, &lse, &mask, &bias, &dout, &dq, &dk, &dv};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) dual_free(all[i]);
}

static void test_attentions(void) {
    const attn_case cases[] = {
        /* b  tq   tk  hq hkv hd  causal mask bias masked_batch */
        {2, 37, 37, 4, 2, 64, 1, 0, 0, 0},    {2, 77, 77, 2, 2, 80, 0, 1, 0, 1},
        {1, 33, 70, 4, 1, 88, 1, 0, 1, 0}, /* causal aligned to the end of the keys */
        {2, 130, 130, 2, 1, 128, 1, 1, 1, 1}, {1, 65, 129, 2, 2, 128, 0, 0, 0, 0},
        {1, 70, 33, 2, 2, 64, 1, 0, 0, 0}, /* Tq > Tk: early queries see nothing */
        {3, 9, 9, 4, 4, 8, 1, 0, 0, 0},    /* the selfcheck's tiny head */
        {1, 50, 17, 3, 1, 32, 0, 1, 1, 0},
        {2, 21, 40, 2, 1, 36, 1, 1, 0, 0}, /* hd not a multiple of 8: 32-bit tile loads */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        test_attention(&cases[i], DT_F32);
        test_attention(&cases[i], DT_BF16);
        setenv("AIMC_ATTN_SIMT", "1", 1);
        test_attention(&cases[i], DT_BF16);
        unsetenv("AIMC_ATTN_SIMT");
    }
}

/* ---- norms ------------------------------------------------------------------- */

static void test_layernorm(dtype dt, int64_t rows, int64_t cols, int with_bias) {
    char name[96];
    snprintf(name, sizeof name, "layernorm %s rows%lld cols%lld%s", dtype_name(dt), (long long)rows,
             (long long)cols, with_bias ? " bias" : "");
    dual x = DUAL(dt, rows, cols), y = DUAL(dt, rows, cols), w = DUAL(DT_F32, cols),
         b = DUAL(DT_F32, cols);
    dual mean = DUAL(DT_F32, rows), rstd = DUAL(DT_F32, rows);
    dual_rand(&x, -2, 3), dual_rand(&w, 0.5, 1.5), dual_rand(&b, -0.5, 0.5);
    op_layernorm(&y.c, &mean.c, &rstd.c, &x.c, &w.c, with_bias ? &b.c : NULL, 1e-5f);
    dual *outs[] = {&y, &mean, &rstd};
    GPU_TWICE(name, outs, NOTHING,
              op_layernorm(&y.g, &mean.g, &rstd.g, &x.g, &w.g, with_bias ? &b.g : NULL, 1e-5f));
    expect_close(name, "y", &y, tol_for(dt));
    expect_close(name, "mean", &mean, TOL_F32);
    expect_close(name, "rstd", &rstd, TOL_F32);

    dual dy = DUAL(dt, rows, cols), dx = DUAL(dt, rows, cols), dw = DUAL(DT_F32, cols),
         db = DUAL(DT_F32, cols);
    dual_rand(&dy, -1, 1);
    op_layernorm_backward(&dx.c, &dw.c, &db.c, &dy.c, &x.c, &w.c, &mean.c, &rstd.c);
    dual *bouts[] = {&dx, &dw, &db};
    GPU_TWICE(name, bouts, NOTHING,
              op_layernorm_backward(&dx.g, &dw.g, &db.g, &dy.g, &x.g, &w.g, &mean.g, &rstd.g));
    expect_close(name, "dx", &dx, tol_for(dt));
    expect_close(name, "dw", &dw,
                 dt == DT_F32 ? TOL_F32 : 1e-4); /* stats differ in their last bits */
    expect_close(name, "db", &db, TOL_F32);
    dual *all[] = {&x, &y, &w, &b, &mean, &rstd, &dy, &dx, &dw, &db};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) dual_free(all[i]);
}

static void test_rmsnorm(dtype dt, int64_t rows, int64_t cols) {
    char name[96];
    snprintf(name, sizeof name, "rmsnorm %s rows%lld cols%lld", dtype_name(dt), (long long)rows,
             (long long)cols);
    dual x = DUAL(dt, rows, cols), y = DUAL(dt, rows, cols), w = DUAL(DT_F32, cols),
         rstd = DUAL(DT_F32, rows);
    dual_rand(&x, -2, 2), dual_rand(&w, 0.5, 1.5);
    op_rmsnorm(&y.c, &rstd.c, &x.c, &w.c, 1e-6f);
    dual *outs[] = {&y, &rstd};
    GPU_TWICE(name, outs, NOTHING, op_rmsnorm(&y.g, &rstd.g, &x.g, &w.g, 1e-6f));
    expect_close(name, "y", &y, tol_for(dt));
    expect_close(name, "rstd", &rstd, TOL_F32);

    dual dy = DUAL(dt, rows, cols), dx = DUAL(dt, rows, cols), dw = DUAL(DT_F32, cols);
    dual_rand(&dy, -1, 1);
    op_rmsnorm_backward(&dx.c, &dw.c, &dy.c, &x.c, &w.c, &rstd.c);
    dual *bouts[] = {&dx, &dw};
    GPU_TWICE(name, bouts, NOTHING, op_rmsnorm_backward(&dx.g, &dw.g, &dy.g, &x.g, &w.g, &rstd.g));
    expect_close(name, "dx", &dx, tol_for(dt));
    expect_close(name, "dw", &dw, dt == DT_F32 ? TOL_F32 : 1e-4);
    dual *all[] = {&x, &y, &w, &rstd, &dy, &dx, &dw};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) dual_free(all[i]);
}

static void test_l2norm(int64_t rows, int64_t cols) {
    char name[64];
    snprintf(name, sizeof name, "l2norm rows%lld cols%lld", (long long)rows, (long long)cols);
    dual x = DUAL(DT_F32, rows, cols), y = DUAL(DT_F32, rows, cols), rn = DUAL(DT_F32, rows);
    float *xs = dual_fill(&x, -1, 1);
    for (int64_t j = 0; j < cols; j++) xs[j] = 0.0f; /* a zero row: clamped norm, y = 0 */
    dual_set(&x, xs);
    free(xs);
    op_l2norm(&y.c, &rn.c, &x.c);
    dual *outs[] = {&y, &rn};
    GPU_TWICE(name, outs, NOTHING, op_l2norm(&y.g, &rn.g, &x.g));
    expect_close(name, "y", &y, TOL_F32);
    expect_close(name, "rnorm", &rn, TOL_F32);
    dual dy = DUAL(DT_F32, rows, cols), dx = DUAL(DT_F32, rows, cols);
    dual_rand(&dy, -1, 1);
    op_l2norm_backward(&dx.c, &dy.c, &y.c, &rn.c);
    dual *bouts[] = {&dx};
    GPU_TWICE(name, bouts, NOTHING, op_l2norm_backward(&dx.g, &dy.g, &y.g, &rn.g));
    expect_close(name, "dx", &dx, TOL_F32);
    dual *all[] = {&x, &y, &rn, &dy, &dx};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) dual_free(all[i]);
}

/* ---- activations, rope ---------------------------------------------------------- */

static void test_act(act_kind kind, dtype dt, int64_t n) {
    char name[64];
    snprintf(name, sizeof name, "act %s %s n%lld", act_name(kind), dtype_name(dt), (long long)n);
    dual x = DUAL(dt, n), y = DUAL(dt, n), dy = DUAL(dt, n), dx = DUAL(dt, n);
    dual_rand(&x, -6, 6), dual_rand(&dy, -1, 1);
    op_act(kind, &y.c, &x.c);
    op_act_backward(kind, &dx.c, &dy.c, &x.c);
    dual *outs[] = {&y, &dx};
    GPU_TWICE(name, outs, NOTHING,
              (op_act(kind, &y.g, &x.g), op_act_backward(kind, &dx.g, &dy.g, &x.g)));
    expect_close(name, "y", &y, tol_for(dt));
    expect_close(name, "dx", &dx, tol_for(dt));
    dual_free(&x), dual_free(&y), dual_free(&dy), dual_free(&dx);
}

static void test_swiglu(dtype dt, int64_t rows, int64_t cols) {
    char name[64];
    snprintf(name, sizeof name, "swiglu %s %lldx%lld", dtype_name(dt), (long long)rows,
             (long long)cols);
    dual g = DUAL(dt, rows, cols), u = DUAL(dt, rows, cols), y = DUAL(dt, rows, cols);
    dual dy = DUAL(dt, rows, cols), dg = DUAL(dt, rows, cols), du = DUAL(dt, rows, cols);
    dual_rand(&g, -6, 6), dual_rand(&u, -2, 2), dual_rand(&dy, -1, 1);
    op_swiglu(&y.c, &g.c, &u.c);
    op_swiglu_backward(&dg.c, &du.c, &dy.c, &g.c, &u.c);
    dual *outs[] = {&y, &dg, &du};
    GPU_TWICE(name, outs, NOTHING,
              (op_swiglu(&y.g, &g.g, &u.g), op_swiglu_backward(&dg.g, &du.g, &dy.g, &g.g, &u.g)));
    expect_close(name, "y", &y, tol_for(dt));
    expect_close(name, "dgate", &dg, tol_for(dt));
    expect_close(name, "dup", &du, tol_for(dt));
    dual *all[] = {&g, &u, &y, &dy, &dg, &du};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) dual_free(all[i]);
}

static void test_rope(dtype dt, int64_t b, int64_t t, int64_t h, int64_t hd, int inverse) {
    char name[80];
    snprintf(name, sizeof name, "rope %s B%lld T%lld H%lld hd%lld inverse%d", dtype_name(dt),
             (long long)b, (long long)t, (long long)h, (long long)hd, inverse);
    dual x = DUAL(dt, b, t, h, hd);
    float *x0 = dual_fill(&x, -1, 1);
    int32_t *pos = tl_alloc((size_t)(b * t) * sizeof(int32_t));
    for (int64_t i = 0; i < b * t; i++) pos[i] = (int32_t)rng_int(4096);
    ipair p = ipair_new(pos, 2, (int64_t[]){b, t});
    op_rope(&x.c, &p.c, 10000.0f, inverse);
    dual *outs[] = {&x};
    GPU_TWICE(name, outs, put(&x.g, x0), op_rope(&x.g, &p.g, 10000.0f, inverse));
    expect_close(name, "x", &x, tol_for(dt));
    free(x0), free(pos);
    dual_free(&x), ipair_free(&p);
}

/* ---- rows, convert, add, scale ------------------------------------------------- */

static void test_gather(dtype src_dt, dtype out_dt, int64_t vocab, int64_t n, int64_t cols) {
    char name[80];
    snprintf(name, sizeof name, "gather_rows %s->%s V%lld n%lld cols%lld", dtype_name(src_dt),
             dtype_name(out_dt), (long long)vocab, (long long)n, (long long)cols);
    dual src = DUAL(src_dt, vocab, cols), out = DUAL(out_dt, n, cols);
    dual_rand(&src, -1, 1);
    int32_t *idx = tl_alloc((size_t)n * sizeof(int32_t));
    for (int64_t i = 0; i < n; i++) idx[i] = (int32_t)rng_int(vocab);
    ipair ix = ipair_new(idx, 1, (int64_t[]){n});
    op_gather_rows(&out.c, &src.c, &ix.c);
    dual *outs[] = {&out};
    GPU_TWICE(name, outs, NOTHING, op_gather_rows(&out.g, &src.g, &ix.g));
    expect_close(name, "out", &out, 0.0); /* a copy: exact */
    free(idx);
    dual_free(&src), dual_free(&out), ipair_free(&ix);
}

static void test_scatter(dtype dt, int64_t dst_rows, int64_t n, int64_t cols) {
    char name[80];
    snprintf(name, sizeof name, "scatter_rows %s dst%lld n%lld cols%lld", dtype_name(dt),
             (long long)dst_rows, (long long)n, (long long)cols);
    dual dst = DUAL(dt, dst_rows, cols), src = DUAL(dt, n, cols);
    float *dst0 = dual_fill(&dst, -1, 1);
    dual_rand(&src, -1, 1);
    int32_t *idx = tl_alloc((size_t)n * sizeof(int32_t));
    for (int64_t i = 0; i < n; i++) idx[i] = (int32_t)rng_int(dst_rows); /* repeats: last wins */
    ipair ix = ipair_new(idx, 1, (int64_t[]){n});
    op_scatter_rows(&dst.c, &src.c, &ix.c);
    dual *outs[] = {&dst};
    GPU_TWICE(name, outs, put(&dst.g, dst0), op_scatter_rows(&dst.g, &src.g, &ix.g));
    expect_close(name, "dst", &dst, 0.0);
    free(idx), free(dst0);
    dual_free(&dst), dual_free(&src), ipair_free(&ix);
}

static void test_convert(dtype from, dtype to, int64_t n) {
    char name[64];
    snprintf(name, sizeof name, "convert %s->%s n%lld", dtype_name(from), dtype_name(to),
             (long long)n);
    /* cpu side: f32 values already representable in `from`; its output is
     * rounded to `to` by hand for the reference */
    dual src = DUAL(from, n), dst = DUAL(to, n);
    float *x = dual_fill(&src, -100, 100);
    for (int64_t i = 0; i < n; i++) x[i] = round_to(x[i], to);
    put(&dst.c, x);
    dual *outs[] = {&dst};
    GPU_TWICE(name, outs, NOTHING, op_convert(&dst.g, &src.g));
    expect_close(name, "dst", &dst, 0.0); /* one rounding, the same on both */
    free(x);
    dual_free(&src), dual_free(&dst);
}

static void test_add_scale(dtype dt, int64_t n) {
    char name[64];
    snprintf(name, sizeof name, "add/scale %s n%lld", dtype_name(dt), (long long)n);
    dual a = DUAL(dt, n), b = DUAL(dt, n), out = DUAL(dt, n);
    float *a0 = dual_fill(&a, -1, 1);
    dual_rand(&b, -1, 1);
    op_add(&out.c, &a.c, &b.c);
    op_add(&a.c, &a.c, &b.c);   /* aliased: a += b */
    op_scale(&a.c, &a.c, 0.5f); /* aliased */
    dual *outs[] = {&out};
    GPU_TWICE(name, outs, put(&a.g, a0),
              (op_add(&out.g, &a.g, &b.g), op_add(&a.g, &a.g, &b.g), op_scale(&a.g, &a.g, 0.5f)));
    expect_close(name, "a + b", &out, tol_for(dt));
    expect_close(name, "(a + b) * 0.5 in place", &a, tol_for(dt));
    free(a0);
    dual_free(&a), dual_free(&b), dual_free(&out);
}

/* ---- losses, optimiser ---------------------------------------------------------- */

static void test_cross_entropy(int64_t rows, int64_t vocab) {
    char name[64];
    snprintf(name, sizeof name, "cross_entropy N%lld V%lld", (long long)rows, (long long)vocab);
    dual logits = DUAL(DT_F32, rows, vocab), loss = DUAL(DT_F32, rows);
    float *l0 = dual_fill(&logits, -8, 8);
    int32_t *tg = tl_alloc((size_t)rows * sizeof(int32_t));
    for (int64_t i = 0; i < rows; i++) tg[i] = i % 5 == 3 ? -100 : (int32_t)rng_int(vocab);
    ipair t = ipair_new(tg, 1, (int64_t[]){rows});
    float dscale = 1.0f / (float)rows;
    op_cross_entropy(&loss.c, &logits.c, &t.c, dscale);
    dual *outs[] = {&loss, &logits};
    GPU_TWICE(name, outs, put(&logits.g, l0), op_cross_entropy(&loss.g, &logits.g, &t.g, dscale));
    expect_close(name, "loss", &loss, TOL_F32);
    expect_close(name, "dlogits", &logits, TOL_F32);
    free(l0), free(tg);
    dual_free(&logits), dual_free(&loss), ipair_free(&t);
}

static void test_infonce(int64_t b, int64_t n, int64_t d, int64_t offset) {
    char name[64];
    snprintf(name, sizeof name, "infonce b%lld N%lld D%lld offset%lld", (long long)b, (long long)n,
             (long long)d, (long long)offset);
    dual img_all = DUAL(DT_F32, n, d), txt_all = DUAL(DT_F32, n, d);
    dual_rand(&img_all, -0.3, 0.3), dual_rand(&txt_all, -0.3, 0.3);
    dual img = dual_rows(&img_all, offset, b), txt = dual_rows(&txt_all, offset, b);
    dual loss = DUAL(DT_F32, 1), dls = DUAL(DT_F32, 1), d_img = DUAL(DT_F32, b, d),
         d_txt = DUAL(DT_F32, b, d);
    dual d_img_all = DUAL(DT_F32, n, d), d_txt_all = DUAL(DT_F32, n, d);
    float ls = logf(1.0f / 0.07f) * 0.5f, dscale = 1.0f / (float)(2 * b);
    op_infonce(&loss.c, &d_img.c, &d_txt.c, &d_img_all.c, &d_txt_all.c, &dls.c, &img.c, &txt.c,
               &img_all.c, &txt_all.c, offset, ls, dscale);
    dual *outs[] = {&loss, &dls, &d_img, &d_txt, &d_img_all, &d_txt_all};
    GPU_TWICE(name, outs, NOTHING,
              op_infonce(&loss.g, &d_img.g, &d_txt.g, &d_img_all.g, &d_txt_all.g, &dls.g, &img.g,
                         &txt.g, &img_all.g, &txt_all.g, offset, ls, dscale));
    const char *names[] = {"loss", "d_logit_scale", "d_img", "d_txt", "d_img_all", "d_txt_all"};
    for (int i = 0; i < 6; i++) expect_close(name, names[i], outs[i], TOL_F32);
    dual *all[] = {&img_all, &txt_all, &loss, &dls, &d_img, &d_txt, &d_img_all, &d_txt_all};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) dual_free(all[i]);
}

static void test_adamw(int64_t n) {
    char name[48];
    snprintf(name, sizeof name, "adamw n%lld", (long long)n);
    dual p = DUAL(DT_F32, n), g = DUAL(DT_F32, n), m = DUAL(DT_F32, n), v = DUAL(DT_F32, n);
    float *p0 = dual_fill(&p, -1, 1), *m0 = dual_fill(&m, -0.1, 0.1), *v0 = dual_fill(&v, 0, 0.01);
    dual_rand(&g, -1, 1);
    adamw_opts o = {.lr = 1e-3f,
                    .beta1 = 0.9f,
                    .beta2 = 0.999f,
                    .eps = 1e-8f,
                    .weight_decay = 0.1f,
                    .step = 3,
                    .grad_scale = 0.5f};
    op_adamw(&p.c, &g.c, &m.c, &v.c, &o);
    dual *outs[] = {&p, &m, &v};
    GPU_TWICE(name, outs, (put(&p.g, p0), put(&m.g, m0), put(&v.g, v0)),
              op_adamw(&p.g, &g.g, &m.g, &v.g, &o));
    expect_close(name, "param", &p, TOL_F32);
    expect_close(name, "m", &m, TOL_F32);
    expect_close(name, "v", &v, TOL_F32);
    free(p0), free(m0), free(v0);
    dual_free(&p), dual_free(&g), dual_free(&m), dual_free(&v);
}

static void test_sumsq(dtype dt, int64_t n) {
    char name[48];
    snprintf(name, sizeof name, "sumsq %s n%lld", dtype_name(dt), (long long)n);
    dual x = DUAL(dt, n), out = DUAL(DT_F32, 1);
    dual_rand(&x, -1, 1);
    op_sumsq(&out.c, &x.c);
    dual *outs[] = {&out};
    GPU_TWICE(name, outs, NOTHING, op_sumsq(&out.g, &x.g));
    expect_close(name, "sum", &out, TOL_F32);
    dual_free(&x), dual_free(&out);
}

/* ---- driver ------------------------------------------------------------------- */

/* backend_cuda, or NULL with the reason; a build without CUDA has none. */

/* ---- the cases, by family -------------------------------------------------------- */

static void test_pointwise(void) {
    const dtype dts[] = {DT_F32, DT_BF16};
    for (int i = 0; i < 2; i++) {
        dtype dt = dts[i];
        test_layernorm(dt, 37, 1000, 1);
        test_layernorm(dt, 5, 4096, 0);
        test_layernorm(dt, 300, 77, 1); /* > 256 rows: two reduction chunks; odd cols */
        test_rmsnorm(dt, 37, 1000);
        test_rmsnorm(dt, 300, 4096);
        for (int k = 0; k < ACT_COUNT; k++) test_act((act_kind)k, dt, 1001);
        test_swiglu(dt, 7, 343);
        test_rope(dt, 2, 37, 3, 64, 0);
        test_rope(dt, 1, 19, 2, 80, 1);
        test_rope(dt, 2, 5, 4, 128, 0);
        test_gather(dt, dt, 50, 37, 67);
        test_gather(dt, DT_F32, 50, 37, 256);
        test_scatter(dt, 20, 33, 67);
        test_add_scale(dt, 1003);
        test_bias_grad(dt, 300, 70, 0.0f);
        test_bias_grad(dt, 41, 4096, 0.5f);
    }
    test_sumsq(DT_F32, 100003);
    test_sumsq(DT_F32, 5);
    test_convert(DT_F32, DT_BF16, 1001);
    test_convert(DT_BF16, DT_F32, 1001);
    test_convert(DT_F32, DT_F16, 1001);
    test_convert(DT_F16, DT_BF16, 1001);
    test_l2norm(9, 100);
    test_l2norm(33, 768);
}

static void test_losses(void) {
    test_cross_entropy(37, 1000);
    test_cross_entropy(5, 32064);
    test_cross_entropy(3, 7);
    test_infonce(6, 18, 32, 6);
    test_infonce(16, 16, 77, 0);
    test_adamw(1003);
    test_adamw(65);
}

int main(void) {
    tests_begin("test_cuda_ops");
    cuda_test_backends(&CPU, &GPU);
    test_matmuls();
    test_attentions();
    test_pointwise();
    test_losses();
    return tests_done();
}
