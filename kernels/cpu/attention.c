/* cpu scaled dot-product attention and its backward (f32 math).
 * Layouts and semantics: kernels/backend.h (attn_opts).
 *
 * Each task copies the heads it needs into contiguous f32 scratch ([T, hd]
 * per head; the tensors interleave heads, and may be stored bf16/f16), then
 * works on plain rows. The forward runs one task per (batch, query head).
 * The backward runs one task per (batch, kv head) and walks every query head
 * of that kv head's group, so the dk/dv sums over the group stay in one
 * thread (no races, a fixed summation order). */
#include "cpu.h"
#include <math.h>
#include <stdlib.h>

typedef struct attn_dims {
    int64_t batch, tq, tk, hq, hkv, hd;
} attn_dims;

/* Multiply-adds of the score and value products: below CPU_PARALLEL_MIN_FLOPS
 * the call runs on one thread (OpenMP start-up costs more). */
static int64_t attn_work(const attn_dims *d) { return d->batch * d->hq * d->tq * d->tk * d->hd; }

static attn_dims attn_dims_of(const tensor *q, const tensor *k) {
    attn_dims d = {.batch = q->shape[0], .tq = q->shape[1], .hq = q->shape[2], .hd = q->shape[3]};
    d.tk = k->shape[1];
    d.hkv = k->shape[2];
    return d;
}

static float *scratch(int64_t n) {
    float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    AIMC_CHECK(p, "attention: out of memory for %lld floats of scratch", (long long)n);
    return p;
}

/* dst[t, :] = x[b, t, h, :] as f32, for x [B, T, H, hd]. */
static void gather_head(float *dst, const tensor *x, int64_t b, int64_t h) {
    int64_t t_len = x->shape[1], heads = x->shape[2], hd = x->shape[3];
    for (int64_t t = 0; t < t_len; t++) {
        int64_t base = ((b * t_len + t) * heads + h) * hd;
        for (int64_t e = 0; e < hd; e++) dst[t * hd + e] = load_as_f32(x->data, x->dt, base + e);
    }
}

/* x[b, t, h, :] = src[t, :], the inverse of gather_head. */
static void scatter_head(tensor *x, const float *src, int64_t b, int64_t h) {
    int64_t t_len = x->shape[1], heads = x->shape[2], hd = x->shape[3];
    for (int64_t t = 0; t < t_len; t++) {
        int64_t base = ((b * t_len + t) * heads + h) * hd;
        for (int64_t e = 0; e < hd; e++) store_from_f32(x->data, x->dt, base + e, src[t * hd + e]);
    }
}

static float dot(const float *x, const float *y, int64_t n) {
    float s = 0.0f;
    for (int64_t e = 0; e < n; e++) s += x[e] * y[e];
    return s;
}

/* y += a * x */
static void axpy(float *restrict y, float a, const float *restrict x, int64_t n) {
    for (int64_t e = 0; e < n; e++) y[e] += a * x[e];
}

/* Last key that query i may see: causal attention aligns the queries with
 * the end of the keys (a KV cache holds Tk - Tq earlier positions). */
static int64_t last_visible_key(const attn_dims *d, const attn_opts *o, int64_t i) {
    return o->causal ? i + (d->tk - d->tq) : d->tk - 1;
}

/* s[j] = scale * q_i . k_j + bias[b, i, j] for every key j, -inf where the
 * key is masked; returns the row's maximum (-inf when nothing is visible). */
static float score_row(float *s, const float *qi, const float *kh, const attn_dims *d,
                       const attn_opts *o, int64_t b, int64_t i) {
    const float *mask = o->key_mask ? (const float *)o->key_mask->data + b * d->tk : NULL;
    const float *bias = o->bias ? (const float *)o->bias->data + (b * d->tq + i) * d->tk : NULL;
    int64_t last = last_visible_key(d, o, i);
    float max = -INFINITY;
    for (int64_t j = 0; j < d->tk; j++) {
        if (j > last || (mask && mask[j] == 0.0f)) {
            s[j] = -INFINITY;
            continue;
        }
        s[j] = o->scale * dot(qi, kh + j * d->hd, d->hd) + (bias ? bias[j] : 0.0f);
        if (s[j] > max) max = s[j];
    }
    return max;
}

/* out_i = softmax(s) . v for one query row; returns its log-sum-exp.
 * A row with no visible key gives out_i = 0 and -inf. */
static float forward_row(float *oi, float *s, const float *qi, const float *kh, const float *vh,
                         const attn_dims *d, const attn_opts *o, int64_t b, int64_t i) {
    for (int64_t e = 0; e < d->hd; e++) oi[e] = 0.0f;
    float max = score_row(s, qi, kh, d, o, b, i);
    if (max == -INFINITY) return -INFINITY;
    float sum = 0.0f;
    for (int64_t j = 0; j < d->tk; j++) {
        float p = expf(s[j] - max); /* masked keys: exp(-inf) = 0 */
        sum += p;
        if (p != 0.0f) axpy(oi, p, vh + j * d->hd, d->hd);
    }
    for (int64_t e = 0; e < d->hd; e++) oi[e] /= sum;
    return max + logf(sum);
}

static void forward_head(tensor *out, tensor *lse, const tensor *q, const tensor *k,
                         const tensor *v, const attn_opts *o, const attn_dims *d, int64_t b,
                         int64_t h) {
    int64_t hk = h / (d->hq / d->hkv);
    float *qh = scratch(d->tq * d->hd), *oh = scratch(d->tq * d->hd);
    float *kh = scratch(d->tk * d->hd), *vh = scratch(d->tk * d->hd), *s = scratch(d->tk);
    gather_head(qh, q, b, h);
    gather_head(kh, k, b, hk);
    gather_head(vh, v, b, hk);
    for (int64_t i = 0; i < d->tq; i++) {
        float l = forward_row(oh + i * d->hd, s, qh + i * d->hd, kh, vh, d, o, b, i);
        if (lse) ((float *)lse->data)[(b * d->hq + h) * d->tq + i] = l;
    }
    scatter_head(out, oh, b, h);
    free(qh), free(oh), free(kh), free(vh), free(s);
}

static void cpu_attention(tensor *out, tensor *lse, const tensor *q, const tensor *k, const tensor *v,
                   const attn_opts *o) {
    attn_dims d = attn_dims_of(q, k);
#pragma omp parallel for schedule(dynamic) if (attn_work(&d) >= CPU_PARALLEL_MIN_FLOPS)
    for (int64_t bh = 0; bh < d.batch * d.hq; bh++)
        forward_head(out, lse, q, k, v, o, &d, bh / d.hq, bh % d.hq);
}

/* The f32 copies one backward task works on: one kv head (k, v and their
 * gradient sums) and the query head of the group being processed. */
typedef struct bwd_heads {
    float *k, *v, *dk, *dv;     /* [tk, hd] */
    float *q, *dout, *out, *dq; /* [tq, hd] */
    float *s;                   /* [tk] scores of one query row */
} bwd_heads;

/* Gradients from one query row i, given its lse from the forward:
 *   p_j = exp(s_j - lse), dp_j = dout_i . v_j, D = dout_i . out_i,
 *   ds_j = p_j (dp_j - D); dq_i = scale sum_j ds_j k_j,
 *   dk_j += scale ds_j q_i, dv_j += p_j dout_i.
 * A row that saw no key (lse = -inf) contributes nothing. */
static void backward_row(bwd_heads *w, float row_lse, const attn_dims *d, const attn_opts *o,
                         int64_t b, int64_t i) {
    int64_t hd = d->hd;
    const float *qi = w->q + i * hd, *doi = w->dout + i * hd;
    float *dqi = w->dq + i * hd;
    for (int64_t e = 0; e < hd; e++) dqi[e] = 0.0f;
    if (row_lse == -INFINITY) return;
    score_row(w->s, qi, w->k, d, o, b, i);
    float big_d = dot(doi, w->out + i * hd, hd);
    for (int64_t j = 0; j < d->tk; j++) {
        float p = expf(w->s[j] - row_lse);
        if (p == 0.0f) continue; /* masked (or underflowed): no gradient */
        float ds = p * (dot(doi, w->v + j * hd, hd) - big_d);
        axpy(dqi, o->scale * ds, w->k + j * hd, hd);
        axpy(w->dk + j * hd, o->scale * ds, qi, hd);
        axpy(w->dv + j * hd, p, doi, hd);
    }
}

static void backward_query_head(bwd_heads *w, tensor *dq, const tensor *dout, const tensor *q,
                                const tensor *out, const tensor *lse, const attn_dims *d,
                                const attn_opts *o, int64_t b, int64_t h) {
    gather_head(w->q, q, b, h);
    gather_head(w->dout, dout, b, h);
    gather_head(w->out, out, b, h);
    const float *row_lse = (const float *)lse->data + (b * d->hq + h) * d->tq;
    for (int64_t i = 0; i < d->tq; i++) backward_row(w, row_lse[i], d, o, b, i);
    scatter_head(dq, w->dq, b, h);
}

static void backward_kv_head(tensor *dq, tensor *dk, tensor *dv, const tensor *dout,
                             const tensor *q, const tensor *k, const tensor *v, const tensor *out,
                             const tensor *lse, const attn_opts *o, const attn_dims *d, int64_t b,
                             int64_t hk) {
    int64_t kv_n = d->tk * d->hd, q_n = d->tq * d->hd, group = d->hq / d->hkv;
    bwd_heads w = {scratch(kv_n), scratch(kv_n), scratch(kv_n), scratch(kv_n), scratch(q_n),
                   scratch(q_n),  scratch(q_n),  scratch(q_n),  scratch(d->tk)};
    gather_head(w.k, k, b, hk);
    gather_head(w.v, v, b, hk);
    for (int64_t e = 0; e < kv_n; e++) w.dk[e] = w.dv[e] = 0.0f;
    for (int64_t h = hk * group; h < (hk + 1) * group; h++)
        backward_query_head(&w, dq, dout, q, out, lse, d, o, b, h);
    scatter_head(dk, w.dk, b, hk);
    scatter_head(dv, w.dv, b, hk);
    free(w.k), free(w.v), free(w.dk), free(w.dv);
    free(w.q), free(w.dout), free(w.out), free(w.dq), free(w.s);
}

static void cpu_attention_backward(tensor *dq, tensor *dk, tensor *dv, const tensor *dout, const tensor *q,
                            const tensor *k, const tensor *v, const tensor *out, const tensor *lse,
                            const attn_opts *o) {
    attn_dims d = attn_dims_of(q, k);
#pragma omp parallel for schedule(dynamic) if (attn_work(&d) >= CPU_PARALLEL_MIN_FLOPS)
    for (int64_t bk = 0; bk < d.batch * d.hkv; bk++)
        backward_kv_head(dq, dk, dv, dout, q, k, v, out, lse, o, &d, bk / d.hkv, bk % d.hkv);
}

void cpu_fill_attention(backend *b) {
    b->attention = cpu_attention;
    b->attention_backward = cpu_attention_backward;
}
