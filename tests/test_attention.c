/* attention and attention_backward on the cpu backend, through the checked
 * wrappers.
 *
 * Forward: compared with a float64 reference written here (out and lse,
 * rel err <= 1e-5 each; rows that see no key must give out = 0 exactly and
 * lse = -inf).
 *
 * Backward, in two steps:
 *  1. the float64 reference gradient (the analytic formulas) is checked
 *     against central finite differences of L = sum(dout * out) computed
 *     with the float64 reference forward, on small problems that use every
 *     feature (GQA, causal with Tq != Tk, padding mask, bias, fully masked
 *     rows); agreement <= 1e-6;
 *  2. the op's f32 gradients are compared with that reference at <= 1e-5.
 * Why not finite differences through the op itself: its forward is f32, so
 * with a step h the difference quotient carries an error near 1e-7 / h on
 * top of the O(h^2) truncation; no h makes that better than ~1e-3, too
 * loose to catch a wrong mask or a missing GQA sum on small gradients. The
 * float64 FD pins down the reference; the reference pins down the op. */
#include "../host/ops.h"
#include "testlib.h"

static const backend *be;

typedef struct attn_case {
    const char *name;
    int64_t batch, tq, tk, hq, hkv, hd;
    int causal, with_mask, with_bias;
    int empty_batch0; /* batch 0's key mask is all zeros: every row fully masked */
    dtype dt;         /* storage of q, k, v, out, dout and the gradients */
} attn_case;

/* One problem in float64. The values are exactly representable in c.dt. */
typedef struct problem {
    attn_case c;
    double scale;
    double *q, *k, *v, *dout; /* q, dout [B, Tq, Hq, hd]; k, v [B, Tk, Hkv, hd] */
    double *mask, *bias;      /* [B, Tk], [B, Tq, Tk], NULL when absent */
} problem;

static int64_t q_numel(const attn_case *c) { return c->batch * c->tq * c->hq * c->hd; }
static int64_t kv_numel(const attn_case *c) { return c->batch * c->tk * c->hkv * c->hd; }
static int64_t lse_numel(const attn_case *c) { return c->batch * c->hq * c->tq; }

static int64_t q_at(const attn_case *c, int64_t b, int64_t t, int64_t h) {
    return ((b * c->tq + t) * c->hq + h) * c->hd;
}
static int64_t kv_at(const attn_case *c, int64_t b, int64_t t, int64_t h) {
    return ((b * c->tk + t) * c->hkv + h) * c->hd;
}

/* ---- inputs ---------------------------------------------------------------- */

/* n normal values rounded to dt (so the op and the reference see the same numbers). */
static double *random_values(int64_t n, dtype dt) {
    double *x = tl_alloc((size_t)(n ? n : 1) * sizeof(double));
    for (int64_t i = 0; i < n; i++) {
        float f = (float)rng_normal(), slot; /* slot: room for any float dtype */
        store_from_f32(&slot, dt, 0, f);
        f = load_as_f32(&slot, dt, 0);
        x[i] = f;
    }
    return x;
}

/* Right padding with a random length per batch (0 for batch 0 when asked). */
static double *random_key_mask(const attn_case *c) {
    double *m = tl_alloc((size_t)(c->batch * c->tk) * sizeof(double));
    for (int64_t b = 0; b < c->batch; b++) {
        int64_t len = (b == 0 && c->empty_batch0) ? 0 : 1 + rng_int(c->tk);
        for (int64_t j = 0; j < c->tk; j++) m[b * c->tk + j] = j < len;
    }
    return m;
}

static problem make_problem(const attn_case *c) {
    problem p = {.c = *c, .scale = 1.0 / sqrt((double)c->hd)};
    p.scale = (float)p.scale; /* the op gets it as f32 */
    p.q = random_values(q_numel(c), c->dt);
    p.k = random_values(kv_numel(c), c->dt);
    p.v = random_values(kv_numel(c), c->dt);
    p.dout = random_values(q_numel(c), c->dt);
    p.mask = c->with_mask || c->empty_batch0 ? random_key_mask(c) : NULL;
    if (c->with_bias) {
        int64_t n = c->batch * c->tq * c->tk;
        p.bias = tl_alloc((size_t)n * sizeof(double));
        for (int64_t i = 0; i < n; i++) p.bias[i] = (float)rng_uniform(-1.0, 1.0);
    }
    return p;
}

static void free_problem(problem *p) {
    free(p->q), free(p->k), free(p->v), free(p->dout), free(p->mask), free(p->bias);
}

/* ---- float64 reference --------------------------------------------------------- */

/* Softmax probabilities of query row (b, h, i) into pr[Tk]; returns the
 * row's log-sum-exp, -inf when no key is visible (pr all zero then). */
static double ref_probs(const problem *p, int64_t b, int64_t h, int64_t i, double *pr) {
    const attn_case *c = &p->c;
    int64_t hk = h / (c->hq / c->hkv), last = c->causal ? i + c->tk - c->tq : c->tk - 1;
    double max = -INFINITY, sum = 0;
    for (int64_t j = 0; j < c->tk; j++) {
        pr[j] = -INFINITY;
        if (j > last || (p->mask && p->mask[b * c->tk + j] == 0)) continue;
        double s = 0;
        for (int64_t e = 0; e < c->hd; e++)
            s += p->q[q_at(c, b, i, h) + e] * p->k[kv_at(c, b, j, hk) + e];
        pr[j] = p->scale * s + (p->bias ? p->bias[(b * c->tq + i) * c->tk + j] : 0);
        if (pr[j] > max) max = pr[j];
    }
    for (int64_t j = 0; j < c->tk; j++) {
        pr[j] = max == -INFINITY ? 0 : exp(pr[j] - max);
        sum += pr[j];
    }
    for (int64_t j = 0; j < c->tk && sum > 0; j++) pr[j] /= sum;
    return sum > 0 ? max + log(sum) : -INFINITY;
}

static void ref_forward(const problem *p, double *out, double *lse) {
    const attn_case *c = &p->c;
    double *pr = tl_alloc((size_t)c->tk * sizeof(double) + 1);
    for (int64_t b = 0; b < c->batch; b++)
        for (int64_t h = 0; h < c->hq; h++)
            for (int64_t i = 0; i < c->tq; i++) {
                double l = ref_probs(p, b, h, i, pr);
                if (lse) lse[(b * c->hq + h) * c->tq + i] = l;
                double *o = out + q_at(c, b, i, h);
                for (int64_t e = 0; e < c->hd; e++) o[e] = 0;
                for (int64_t j = 0; j < c->tk; j++)
                    for (int64_t e = 0; e < c->hd; e++)
                        o[e] += pr[j] * p->v[kv_at(c, b, j, h / (c->hq / c->hkv)) + e];
            }
    free(pr);
}

static double dot64(const double *x, const double *y, int64_t n) {
    double s = 0;
    for (int64_t e = 0; e < n; e++) s += x[e] * y[e];
    return s;
}

/* Analytic gradients of L = sum(dout * out): with P the softmax,
 * dP_ij = dout_i . v_j, dS_ij = P_ij (dP_ij - sum_j' P_ij' dP_ij'),
 * dq_i = scale sum_j dS_ij k_j, dk_j = scale sum_i dS_ij q_i,
 * dv_j = sum_i P_ij dout_i; kv gradients sum over the heads of their group. */
static void ref_backward(const problem *p, double *dq, double *dk, double *dv) {
    const attn_case *c = &p->c;
    int64_t hd = c->hd;
    double *pr = tl_alloc((size_t)c->tk * sizeof(double) + 1),
           *dp = tl_alloc((size_t)c->tk * sizeof(double) + 1);
    memset(dq, 0, (size_t)q_numel(c) * sizeof(double));
    memset(dk, 0, (size_t)kv_numel(c) * sizeof(double));
    memset(dv, 0, (size_t)kv_numel(c) * sizeof(double));
    for (int64_t b = 0; b < c->batch; b++)
        for (int64_t h = 0; h < c->hq; h++)
            for (int64_t i = 0; i < c->tq; i++) {
                int64_t hk = h / (c->hq / c->hkv), qi = q_at(c, b, i, h);
                ref_probs(p, b, h, i, pr);
                double mean_dp = 0;
                for (int64_t j = 0; j < c->tk; j++) {
                    dp[j] = dot64(p->dout + qi, p->v + kv_at(c, b, j, hk), hd);
                    mean_dp += pr[j] * dp[j];
                }
                for (int64_t j = 0; j < c->tk; j++) {
                    double ds = pr[j] * (dp[j] - mean_dp);
                    int64_t kj = kv_at(c, b, j, hk);
                    for (int64_t e = 0; e < hd; e++) {
                        dq[qi + e] += p->scale * ds * p->k[kj + e];
                        dk[kj + e] += p->scale * ds * p->q[qi + e];
                        dv[kj + e] += pr[j] * p->dout[qi + e];
                    }
                }
            }
    free(pr), free(dp);
}

static double ref_loss(const problem *p) {
    int64_t n = q_numel(&p->c);
    double *out = tl_alloc((size_t)n * sizeof(double));
    ref_forward(p, out, NULL);
    double l = dot64(out, p->dout, n);
    free(out);
    return l;
}

/* Central differences of ref_loss w.r.t. every element of x (one of p's inputs). */
static void finite_diff(problem *p, double *x, int64_t n, double *grad) {
    const double h = 1e-5;
    for (int64_t i = 0; i < n; i++) {
        double keep = x[i];
        x[i] = keep + h;
        double up = ref_loss(p);
        x[i] = keep - h;
        double down = ref_loss(p);
        x[i] = keep;
        grad[i] = (up - down) / (2 * h);
    }
}

static double rel_err64(const double *x, const double *ref, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        num += (x[i] - ref[i]) * (x[i] - ref[i]);
        den += ref[i] * ref[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* Step 1: the reference gradient against float64 finite differences. */
static void test_reference_gradient(const attn_case *c) {
    problem p = make_problem(c);
    int64_t nq = q_numel(c), nkv = kv_numel(c);
    double *dq = tl_alloc((size_t)nq * 8), *dk = tl_alloc((size_t)nkv * 8),
           *dv = tl_alloc((size_t)nkv * 8);
    double *fd = tl_alloc((size_t)(nq > nkv ? nq : nkv) * 8);
    ref_backward(&p, dq, dk, dv);
    finite_diff(&p, p.q, nq, fd);
    double eq = rel_err64(dq, fd, nq);
    finite_diff(&p, p.k, nkv, fd);
    double ek = rel_err64(dk, fd, nkv);
    finite_diff(&p, p.v, nkv, fd);
    double ev = rel_err64(dv, fd, nkv);
    CHECK(eq <= 1e-6 && ek <= 1e-6 && ev <= 1e-6,
          "%s: float64 reference gradient vs finite differences: dq %.3g dk %.3g dv %.3g", c->name,
          eq, ek, ev);
    free(dq), free(dk), free(dv), free(fd);
    free_problem(&p);
}

/* ---- the op ---------------------------------------------------------------- */

/* x converted to dt in fresh memory. */
static void *stored(const double *x, int64_t n, dtype dt) {
    void *p = tl_alloc((size_t)(n ? n : 1) * dtype_size(dt));
    for (int64_t i = 0; i < n; i++) store_from_f32(p, dt, i, (float)x[i]);
    return p;
}

static void *poisoned(int64_t n, dtype dt) {
    void *p = tl_alloc((size_t)(n ? n : 1) * dtype_size(dt));
    for (int64_t i = 0; i < n; i++) store_from_f32(p, dt, i, NAN);
    return p;
}

static float *as_f32(const void *p, dtype dt, int64_t n) {
    float *f = tl_alloc((size_t)(n ? n : 1) * sizeof(float));
    for (int64_t i = 0; i < n; i++) f[i] = load_as_f32(p, dt, i);
    return f;
}

/* rel err over the finite entries; -inf in ref must be -inf in got exactly. */
static double lse_err(const float *got, const double *ref, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        if (ref[i] == -INFINITY) {
            if (got[i] != -INFINITY) return INFINITY;
            continue;
        }
        num += ((double)got[i] - ref[i]) * ((double)got[i] - ref[i]);
        den += ref[i] * ref[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* Whether every row (b, i, h, :) of x whose lse is -inf is exactly zero. */
static int masked_rows_zero(const attn_case *c, const float *x, const double *lse) {
    for (int64_t b = 0; b < c->batch; b++)
        for (int64_t h = 0; h < c->hq; h++)
            for (int64_t i = 0; i < c->tq; i++) {
                if (lse[(b * c->hq + h) * c->tq + i] != -INFINITY) continue;
                for (int64_t e = 0; e < c->hd; e++)
                    if (x[q_at(c, b, i, h) + e] != 0.0f) return 0;
            }
    return 1;
}

/* The op's buffers for one problem (stored in c.dt). */
typedef struct op_run {
    tensor q, k, v, dout, out, lse, dq, dk, dv, mask, bias;
    attn_opts o;
} op_run;

/* Fills r in place: r->o points at r's own mask and bias. */
static void make_op_run(op_run *r, const problem *p) {
    const attn_case *c = &p->c;
    int64_t sq[4] = {c->batch, c->tq, c->hq, c->hd}, skv[4] = {c->batch, c->tk, c->hkv, c->hd};
    int64_t sl[3] = {c->batch, c->hq, c->tq}, sm[2] = {c->batch, c->tk},
            sb[3] = {c->batch, c->tq, c->tk};
    int64_t nq = q_numel(c), nkv = kv_numel(c);
    r->q = tensor_wrap(stored(p->q, nq, c->dt), c->dt, be, 4, sq);
    r->k = tensor_wrap(stored(p->k, nkv, c->dt), c->dt, be, 4, skv);
    r->v = tensor_wrap(stored(p->v, nkv, c->dt), c->dt, be, 4, skv);
    r->dout = tensor_wrap(stored(p->dout, nq, c->dt), c->dt, be, 4, sq);
    r->out = tensor_wrap(poisoned(nq, c->dt), c->dt, be, 4, sq);
    r->dq = tensor_wrap(poisoned(nq, c->dt), c->dt, be, 4, sq);
    r->dk = tensor_wrap(poisoned(nkv, c->dt), c->dt, be, 4, skv);
    r->dv = tensor_wrap(poisoned(nkv, c->dt), c->dt, be, 4, skv);
    r->lse = tensor_wrap(poisoned(lse_numel(c), DT_F32), DT_F32, be, 3, sl);
    r->mask =
        tensor_wrap(p->mask ? stored(p->mask, c->batch * c->tk, DT_F32) : NULL, DT_F32, be, 2, sm);
    r->bias = tensor_wrap(p->bias ? stored(p->bias, c->batch * c->tq * c->tk, DT_F32) : NULL,
                          DT_F32, be, 3, sb);
    r->o = (attn_opts){.scale = (float)p->scale,
                       .causal = c->causal,
                       .key_mask = p->mask ? &r->mask : NULL,
                       .bias = p->bias ? &r->bias : NULL};
}

static void free_op_run(op_run *r) {
    tensor *all[] = {&r->q,  &r->k,  &r->v,  &r->dout, &r->out, &r->lse,
                     &r->dq, &r->dk, &r->dv, &r->mask, &r->bias};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]->data);
}

/* rel err of op tensor t (any float dtype) against ref. */
static double tensor_err(const tensor *t, const double *ref) {
    float *f = as_f32(t->data, t->dt, tensor_numel(t));
    double e = rel_err(f, ref, tensor_numel(t));
    free(f);
    return e;
}

/* Step 2 (and the forward): the op against the float64 reference. */
static void test_op_against_reference(const attn_case *c) {
    problem p = make_problem(c);
    op_run r;
    make_op_run(&r, &p);
    int64_t nq = q_numel(c), nkv = kv_numel(c), nl = lse_numel(c);
    double *out = tl_alloc((size_t)nq * 8), *lse = tl_alloc((size_t)(nl ? nl : 1) * 8);
    double *dq = tl_alloc((size_t)nq * 8), *dk = tl_alloc((size_t)nkv * 8),
           *dv = tl_alloc((size_t)nkv * 8);
    ref_forward(&p, out, lse);
    ref_backward(&p, dq, dk, dv);
    /* f32 storage leaves only accumulation error; bf16 storage rounds every
     * output to 8 bits (relative 2^-9 per element). */
    double tol = c->dt == DT_F32 ? 1e-5 : 8e-3;

    op_attention(&r.out, &r.lse, &r.q, &r.k, &r.v, &r.o);
    float *got_out = as_f32(r.out.data, c->dt, nq);
    double e_out = tensor_err(&r.out, out), e_lse = lse_err(r.lse.data, lse, nl);
    CHECK(e_out <= tol && e_lse <= 1e-5, "%s: forward rel err out %.3g lse %.3g", c->name, e_out,
          e_lse);
    CHECK(masked_rows_zero(c, got_out, lse), "%s: fully masked rows must give out = 0", c->name);

    op_attention_backward(&r.dq, &r.dk, &r.dv, &r.dout, &r.q, &r.k, &r.v, &r.out, &r.lse, &r.o);
    double e_dq = tensor_err(&r.dq, dq), e_dk = tensor_err(&r.dk, dk), e_dv = tensor_err(&r.dv, dv);
    CHECK(e_dq <= tol && e_dk <= tol && e_dv <= tol, "%s: backward rel err dq %.3g dk %.3g dv %.3g",
          c->name, e_dq, e_dk, e_dv);
    float *got_dq = as_f32(r.dq.data, c->dt, nq);
    CHECK(masked_rows_zero(c, got_dq, lse), "%s: fully masked rows must give dq = 0", c->name);

    free(got_out), free(got_dq), free(out), free(lse), free(dq), free(dk), free(dv);
    free_op_run(&r);
    free_problem(&p);
}

/* The forward without lse (inference) gives the same out. */
static void test_forward_without_lse(void) {
    attn_case c = {"no lse", 2, 5, 7, 4, 2, 32, 1, 1, 1, 0, DT_F32};
    problem p = make_problem(&c);
    op_run r;
    make_op_run(&r, &p);
    double *out = tl_alloc((size_t)q_numel(&c) * 8);
    ref_forward(&p, out, NULL);
    op_attention(&r.out, NULL, &r.q, &r.k, &r.v, &r.o);
    double e = tensor_err(&r.out, out);
    CHECK(e <= 1e-5, "forward with lse = NULL: rel err %.3g", e);
    free(out);
    free_op_run(&r);
    free_problem(&p);
}

/* name, B, Tq, Tk, Hq, Hkv, hd, causal, mask, bias, empty batch 0, dtype */
static const attn_case op_cases[] = {
    {"bidirectional hd64", 2, 7, 7, 2, 2, 64, 0, 0, 0, 0, DT_F32},
    {"causal GQA2 hd80", 2, 13, 13, 4, 2, 80, 1, 0, 0, 0, DT_F32},
    {"kv-cache Tq<Tk GQA4 hd88 mask", 3, 3, 11, 8, 2, 88, 1, 1, 0, 0, DT_F32},
    {"hd128 mask bias", 2, 9, 9, 2, 1, 128, 0, 1, 1, 0, DT_F32},
    {"odd hd37 causal mask bias GQA4", 2, 5, 5, 4, 1, 37, 1, 1, 1, 0, DT_F32},
    {"decode Tq=1", 2, 1, 17, 4, 4, 64, 1, 1, 0, 0, DT_F32},
    {"fully masked batch", 2, 4, 6, 2, 1, 16, 0, 1, 1, 1, DT_F32},
    {"causal Tq>Tk (rows with no key)", 1, 6, 4, 2, 2, 8, 1, 0, 0, 0, DT_F32},
    {"bidirectional Tq!=Tk GQA2 bias", 2, 7, 3, 6, 3, 24, 0, 0, 1, 0, DT_F32},
    {"longer odd T causal mask", 1, 65, 65, 4, 2, 64, 1, 1, 0, 0, DT_F32},
    {"bf16 storage", 2, 6, 9, 4, 2, 40, 1, 1, 1, 0, DT_BF16},
};

/* Small problems for the finite-difference check of the reference. */
static const attn_case fd_cases[] = {
    {"fd: causal kv-cache GQA2 mask bias", 2, 3, 5, 4, 2, 3, 1, 1, 1, 0, DT_F32},
    {"fd: bidirectional GQA2 mask bias, empty batch", 2, 4, 3, 2, 1, 5, 0, 1, 1, 1, DT_F32},
    {"fd: causal Tq>Tk", 1, 4, 2, 2, 2, 4, 1, 0, 0, 0, DT_F32},
};

/* ---- the wrappers refuse bad calls ----------------------------------------- */

static const attn_case small = {"small", 1, 2, 3, 4, 2, 8, 1, 1, 1, 0, DT_F32};

/* Builds a valid small call, lets edit break one thing, then runs the
 * forward (backward = 0) or the backward. In the child processes of
 * EXPECT_DIES the call must fail in the wrapper: libgomp's thread pool does
 * not survive fork, so a kernel's parallel region there would hang. */
static void call_with(void (*edit)(op_run *, backend *), int backward) {
    static backend copy;
    copy = *be;
    problem p = make_problem(&small);
    op_run r;
    make_op_run(&r, &p);
    tensor *all[] = {&r.q,  &r.k,  &r.v,  &r.dout, &r.out, &r.lse,
                     &r.dq, &r.dk, &r.dv, &r.mask, &r.bias};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) all[i]->be = &copy;
    edit(&r, &copy);
    if (!backward)
        op_attention(&r.out, &r.lse, &r.q, &r.k, &r.v, &r.o);
    else
        op_attention_backward(&r.dq, &r.dk, &r.dv, &r.dout, &r.q, &r.k, &r.v, &r.out, &r.lse, &r.o);
    free_op_run(&r);
    free_problem(&p);
}
static void no_edit(op_run *r, backend *b) { (void)r, (void)b; }
static void heads_not_multiple(op_run *r, backend *b) {
    (void)b;
    r->k.shape[2] = r->v.shape[2] = 3;
}
static void lse_transposed(op_run *r, backend *b) {
    (void)b;
    int64_t s[3] = {1, 2, 4};
    r->lse = tensor_reshape(&r->lse, 3, s);
}
static void mask_wrong(op_run *r, backend *b) {
    (void)b;
    r->mask.shape[1] = 2;
}
static void v_other_dtype(op_run *r, backend *b) {
    (void)b;
    r->v.dt = DT_BF16;
}
static void dk_wrong(op_run *r, backend *b) {
    (void)b;
    r->dk.shape[1] = 2;
}
static void no_attention(op_run *r, backend *b) { (void)r, b->attention = NULL; }
static void no_attention_backward(op_run *r, backend *b) { (void)r, b->attention_backward = NULL; }

static void run_heads(void) { call_with(heads_not_multiple, 0); }
static void run_lse(void) { call_with(lse_transposed, 0); }
static void run_mask(void) { call_with(mask_wrong, 1); }
static void run_v_dtype(void) { call_with(v_other_dtype, 0); }
static void run_dk(void) { call_with(dk_wrong, 1); }
static void run_no_fwd(void) { call_with(no_attention, 0); }
static void run_no_bwd(void) { call_with(no_attention_backward, 1); }

static void test_wrapper_errors(void) {
    call_with(no_edit, 0); /* the valid calls the variations start from */
    call_with(no_edit, 1);
    CHECK(1, "valid calls");
    EXPECT_DIES(run_heads, 1, "does not fit q [1, 2, 4, 8]");
    EXPECT_DIES(run_lse, 1, "lse has shape [1, 2, 4], expected [1, 4, 2]");
    EXPECT_DIES(run_mask, 1, "key_mask has shape [1, 2], expected [1, 3]");
    EXPECT_DIES(run_v_dtype, 1, "v has dtype bf16, expected f32");
    EXPECT_DIES(run_dk, 1, "op_attention_backward: dk has shape");
    EXPECT_DIES(run_no_fwd, 1, "op attention is not implemented on backend cpu");
    EXPECT_DIES(run_no_bwd, 1, "op attention_backward is not implemented on backend cpu");
}

int main(void) {
    tests_begin("test_attention");
    be = backend_cpu();
    for (size_t i = 0; i < sizeof fd_cases / sizeof fd_cases[0]; i++)
        test_reference_gradient(&fd_cases[i]);
    for (size_t i = 0; i < sizeof op_cases / sizeof op_cases[0]; i++)
        test_op_against_reference(&op_cases[i]);
    test_forward_without_lse();
    test_wrapper_errors();
    return tests_done();
}
