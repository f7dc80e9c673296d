/* The contrastive objective for CLIP (contrastive.h). */
#include "contrastive.h"
#include "../kernels/check.h"
#include "dist.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- parameters --------------------------------------------------------------- */

/* dst (f32 on its backend) = src (any float dtype, same backend, same numel). */
static void copy_as_f32(tensor *dst, const tensor *src) {
    int64_t n = tensor_numel(src);
    AIMC_CHECK(n == tensor_numel(dst), "contrastive: head of %lld values into %lld", (long long)n,
               (long long)tensor_numel(dst));
    void *raw = malloc(tensor_bytes(src) + 1);
    float *f = malloc((size_t)n * sizeof *f + 1);
    AIMC_CHECK(raw && f, "contrastive: out of host memory");
    src->be->download(raw, src->data, tensor_bytes(src));
    for (int64_t i = 0; i < n; i++) f[i] = load_as_f32(raw, src->dt, i);
    dst->be->upload(dst->data, f, (size_t)n * sizeof *f);
    free(raw);
    free(f);
}

static float read_scalar(const tensor *t) {
    float v;
    t->be->download(&v, t->data, sizeof v);
    return v;
}

void contrastive_init(contrastive_heads *h, const clip_model *m) {
    memset(h, 0, sizeof *h);
    h->dv = m->vision->enc.dim;
    h->dt = m->text.enc.dim;
    h->p = m->proj_dim;
    h->logit_scale_max = (float)CONTRASTIVE_LOGIT_SCALE_MAX;
    projector *p = &h->params;
    p->be = m->be;
    projector_param *wv =
        projector_add_param(p, "visual_projection.weight", 2, (int64_t[]){h->p, h->dv}, 1);
    projector_param *wt = projector_add_param(p, "text_projection.weight", 2, (int64_t[]){h->p, h->dt}, 1);
    projector_param *ls = projector_add_param(p, "logit_scale", 1, (int64_t[]){1}, 0);
    copy_as_f32(&wv->value, &m->visual_proj.w);
    copy_as_f32(&wt->value, &m->text_proj.w);
    p->be->upload(ls->value.data, &m->logit_scale, sizeof(float));
    p->sumsq = projector_alloc_f32(p->be, 1, (int64_t[]){CONTRASTIVE_N_PARAMS});
    h->logit_scale = m->logit_scale;
}

void contrastive_free(contrastive_heads *h) {
    if (h->params.be) projector_free(&h->params);
    memset(h, 0, sizeof *h);
}

const char *contrastive_describe(const contrastive_heads *h, char *buf, size_t n) {
    int k = snprintf(buf, n, "type=clip_heads d_vision=%lld d_text=%lld d_proj=%lld",
                     (long long)h->dv, (long long)h->dt, (long long)h->p);
    AIMC_CHECK(k >= 0 && (size_t)k < n, "contrastive_describe: %zu-byte buffer too small", n);
    return buf;
}

void contrastive_sync_scale(contrastive_heads *h) {
    h->logit_scale = read_scalar(&h->params.params[CONTRASTIVE_SCALE].value);
}

/* ---- collectives on backend tensors ------------------------------------------- */
/* cpu tensors go through the host collectives, device tensors through NCCL,
 * or through host memory when a device build has no NCCL communicator (as the
 * LM trainer's gradient all-reduce does). */

static int on_cpu(const tensor *t) { return t->be == backend_cpu(); }
static int device_direct(void) { return dist_nccl_ready() || dist_world() == 1; }

static void *host_copy(const tensor *t) {
    void *h = malloc(tensor_bytes(t) + 1);
    AIMC_CHECK(h, "contrastive: out of host memory (%zu bytes)", tensor_bytes(t));
    t->be->download(h, t->data, tensor_bytes(t));
    return h;
}

/* t = its sum over ranks: the same bits on every rank (host transports sum
 * in rank order; NCCL in its own order, identical on every rank). */
static void allreduce_f32(tensor *t, int64_t step) {
    if (on_cpu(t) || device_direct()) {
        dist_allreduce_tensor(t, step);
        return;
    }
    float *h = host_copy(t);
    dist_allreduce_sum(h, tensor_numel(t), DIST_F32, step);
    t->be->upload(t->data, h, tensor_bytes(t));
    free(h);
}

/* all [N, cols] = every rank's mine [counts[r], cols], in rank order. */
static void gather_rows(const tensor *mine, tensor *all, const int64_t *counts, int64_t step) {
    int world = dist_world();
    int64_t cols = tensor_cols(all), *el = malloc(sizeof *el * (size_t)world);
    AIMC_CHECK(el, "contrastive: out of memory");
    for (int r = 0; r < world; r++) el[r] = counts[r] * cols;
    if (on_cpu(all)) {
        dist_allgatherv(mine->data, all->data, el, DIST_F32, step);
    } else if (device_direct()) {
        dist_dev_allgatherv(mine->data, all->data, el, DIST_F32, step);
    } else {
        float *h_mine = host_copy(mine), *h_all = malloc(tensor_bytes(all) + 1);
        AIMC_CHECK(h_all, "contrastive: out of host memory");
        dist_allgatherv(h_mine, h_all, el, DIST_F32, step);
        all->be->upload(all->data, h_all, tensor_bytes(all));
        free(h_mine), free(h_all);
    }
    free(el);
}

static void zero_tensor(tensor *t) { t->be->zero(t->data, tensor_bytes(t)); }

/* ---- the loss and its gradients ------------------------------------------------ */

/* Where this rank's rows sit in the global batch. */
typedef struct global_rows {
    int64_t *counts; /* [world] rows per rank */
    int64_t n, offset;
} global_rows;

static global_rows global_rows_get(int64_t mine, int64_t step) {
    global_rows g = {0};
    int world = dist_world(), rank = dist_rank();
    g.counts = malloc(sizeof *g.counts * (size_t)world);
    AIMC_CHECK(g.counts, "contrastive: out of memory");
    dist_allgather_counts(mine, g.counts, step);
    for (int r = 0; r < world; r++) {
        if (r < rank) g.offset += g.counts[r];
        g.n += g.counts[r];
    }
    return g;
}

/* One side of the model: features, head, unit embeddings and what the
 * backward needs. */
typedef struct side {
    tensor x;     /* pooled features [b, D] f32 */
    tensor emb;   /* l2norm(x W^T) [b, P] */
    tensor rnorm; /* [b] */
    tensor d_emb; /* [b, P]: gradient of the loss w.r.t. emb */
} side;

static side side_forward(arena *a, const tensor *pooled, const projector_param *w) {
    int64_t b = pooled->shape[0], p = w->value.shape[0];
    side s = {0};
    s.x = pooled->dt == DT_F32 ? *pooled : arena_new(a, DT_F32, b, pooled->shape[1]);
    if (pooled->dt != DT_F32 && b > 0) op_convert(&s.x, pooled);
    tensor y = arena_new(a, DT_F32, b, p);
    s.emb = arena_new(a, DT_F32, b, p);
    s.rnorm = arena_new(a, DT_F32, b);
    s.d_emb = arena_new(a, DT_F32, b, p);
    if (b == 0) return s;
    op_matmul(&y, &s.x, &w->value, NULL, 0, 1, 0);
    op_l2norm(&s.emb, &s.rnorm, &y);
    return s;
}

/* d_emb += rows [first, first + b) of d_all (this rank's slice of the column
 * gradients, already summed over ranks); then w's gradient =
 * (l2norm backward of d_emb)^T x. */
static void side_backward(arena *a, side *s, const tensor *d_all, int64_t first,
                          projector_param *w) {
    int64_t b = s->x.shape[0];
    if (b == 0) {
        zero_tensor(&w->grad);
        return;
    }
    tensor mine = tensor_slice0(d_all, first, b);
    op_add(&s->d_emb, &s->d_emb, &mine);
    tensor dy = arena_new(a, DT_F32, b, s->emb.shape[1]);
    op_l2norm_backward(&dy, &s->d_emb, &s->emb, &s->rnorm);
    op_matmul(&w->grad, &dy, &s->x, NULL, 1, 0, 0);
}

static void check_pooled(const contrastive_heads *h, const tensor *pv, const tensor *pt) {
    AIMC_CHECK(pv->ndim == 2 && pt->ndim == 2 && pv->shape[0] == pt->shape[0] &&
                   pv->shape[1] == h->dv && pt->shape[1] == h->dt,
               "contrastive: pooled features [%lld, %lld] and [%lld, %lld] do not fit heads "
               "d_vision %lld, d_text %lld",
               (long long)pv->shape[0], (long long)pv->shape[1], (long long)pt->shape[0],
               (long long)pt->shape[1], (long long)h->dv, (long long)h->dt);
}

/* Steps 3-4: gathers every rank's embeddings, runs InfoNCE on this rank's
 * rows and sums the column gradients over ranks into d_all [2N, P] (images,
 * then texts). The rows' own gradients go to img->d_emb, txt->d_emb and
 * logit_scale's local share to its grad buffer. Returns this rank's loss
 * sum (before the 1 / 2N). */
static double infonce_global(contrastive_heads *h, arena *a, side *img, side *txt,
                             const global_rows *g, tensor *d_all, int64_t step) {
    int64_t b = img->x.shape[0], n = g->n;
    tensor img_all = arena_new(a, DT_F32, n, h->p), txt_all = arena_new(a, DT_F32, n, h->p);
    gather_rows(&img->emb, &img_all, g->counts, step);
    gather_rows(&txt->emb, &txt_all, g->counts, step);
    tensor d_img_all = tensor_slice0(d_all, 0, n), d_txt_all = tensor_slice0(d_all, n, n);
    tensor loss = arena_new(a, DT_F32, 1);
    tensor *d_scale = &h->params.params[CONTRASTIVE_SCALE].grad;
    if (b > 0) {
        op_infonce(&loss, &img->d_emb, &txt->d_emb, &d_img_all, &d_txt_all, d_scale, &img->emb,
                   &txt->emb, &img_all, &txt_all, g->offset, h->logit_scale,
                   (float)(0.5 / (double)n));
    } else { /* this rank adds nothing to the sums */
        zero_tensor(d_all), zero_tensor(&loss), zero_tensor(d_scale);
    }
    allreduce_f32(d_all, step); /* both directions' columns in one all-reduce */
    return read_scalar(&loss);
}

contrastive_result contrastive_loss_grads(contrastive_heads *h, arena *a, const tensor *pooled_v,
                                          const tensor *pooled_t, int64_t step) {
    check_pooled(h, pooled_v, pooled_t);
    projector_param *ps = h->params.params;
    global_rows g = global_rows_get(pooled_v->shape[0], step);
    contrastive_result r = {.loss = NAN, .grad_norm = NAN, .n_global = g.n};
    if (g.n == 0) { /* nothing to learn from; every rank takes this branch */
        projector_zero_grad(&h->params);
        free(g.counts);
        return r;
    }
    size_t mark = a->used;
    side img = side_forward(a, pooled_v, &ps[CONTRASTIVE_VISUAL]);
    side txt = side_forward(a, pooled_t, &ps[CONTRASTIVE_TEXT]);
    tensor d_all = arena_new(a, DT_F32, 2 * g.n, h->p);
    double total = infonce_global(h, a, &img, &txt, &g, &d_all, step);
    side_backward(a, &img, &d_all, g.offset, &ps[CONTRASTIVE_VISUAL]);
    side_backward(a, &txt, &d_all, g.n + g.offset, &ps[CONTRASTIVE_TEXT]);
    for (int i = 0; i < CONTRASTIVE_N_PARAMS; i++) allreduce_f32(&ps[i].grad, step);
    dist_allreduce_sum(&total, 1, DIST_F64, step);
    r.loss = total * 0.5 / (double)g.n;
    a->used = mark;
    free(g.counts);
    return r;
}

/* ---- the frozen towers --------------------------------------------------------- */

/* out [n, Dv] f32 = the vision tower's pooler_output. */
static void vision_pooled(const clip_model *m, arena *a, const contrastive_batch *b, tensor *out) {
    size_t mark = a->used;
    tensor px = tensor_wrap((void *)b->pixels, DT_F32, backend_cpu(), 4,
                            (int64_t[]){b->n, b->channels, b->height, b->width});
    tensor hidden = vit_forward(m->vision, a, &px, -1, 0);
    tensor pooled = vit_pool(m->vision, a, &hidden);
    op_convert(out, &pooled);
    a->used = mark;
}

/* out [n, Dt] f32 = the text tower's pooler_output. */
static void text_pooled(const clip_model *m, arena *a, const contrastive_batch *b, tensor *out) {
    size_t mark = a->used;
    int64_t shape[2] = {b->n, b->len}, numel = b->n * b->len;
    tensor ids = tensor_wrap((void *)b->ids, DT_I32, backend_cpu(), 2, shape);
    float *mask_f = NULL;
    tensor mask = {0};
    if (b->mask) {
        mask_f = malloc((size_t)numel * sizeof *mask_f + 1);
        AIMC_CHECK(mask_f, "contrastive: out of memory");
        for (int64_t i = 0; i < numel; i++) mask_f[i] = b->mask[i] ? 1.0f : 0.0f;
        mask = tensor_wrap(mask_f, DT_F32, backend_cpu(), 2, shape);
    }
    tensor last = clip_text_forward(&m->text, a, &ids, b->mask ? &mask : NULL, -1, 1);
    tensor pooled = clip_text_pool(&m->text, a, &last, &ids);
    op_convert(out, &pooled);
    a->used = mark;
    free(mask_f);
}

contrastive_result contrastive_grads(contrastive_heads *h, const clip_model *m, arena *a,
                                     const contrastive_batch *b, int64_t step) {
    AIMC_CHECK(b->n >= 0 && (b->n == 0 || (b->pixels && b->ids && b->len > 0)),
               "contrastive_grads: incomplete batch");
    size_t mark = a->used;
    tensor pv = arena_new(a, DT_F32, b->n, h->dv), pt = arena_new(a, DT_F32, b->n, h->dt);
    if (b->n > 0) {
        vision_pooled(m, a, b, &pv);
        text_pooled(m, a, b, &pt);
    }
    contrastive_result r = contrastive_loss_grads(h, a, &pv, &pt, step);
    a->used = mark;
    return r;
}

/* ---- the update ------------------------------------------------------------------ */

/* logit_scale into [0, logit_scale_max] (open_clip's clamp_ after each step). */
static void clamp_scale(contrastive_heads *h) {
    tensor *v = &h->params.params[CONTRASTIVE_SCALE].value;
    float s = read_scalar(v), c = s;
    if (c > h->logit_scale_max) c = h->logit_scale_max;
    if (c < 0.0f) c = 0.0f;
    if (c != s) v->be->upload(v->data, &c, sizeof c);
    h->logit_scale = c;
}

double contrastive_update(contrastive_heads *h, const contrastive_opts *o) {
    adamw_opts ao = {.lr = o->lr, .beta1 = o->beta1, .beta2 = o->beta2, .eps = o->eps,
                     .weight_decay = o->weight_decay, .step = o->step, .grad_scale = 1.0f};
    double norm = projector_step(&h->params, &ao, o->lr, o->clip);
    if (isfinite(norm)) clamp_scale(h);
    return norm;
}

contrastive_result contrastive_step(contrastive_heads *h, const clip_model *m, arena *a,
                                    const contrastive_batch *b, const contrastive_opts *o) {
    contrastive_result r = contrastive_grads(h, m, a, b, o->step);
    if (!isfinite(r.loss)) return r;
    r.grad_norm = contrastive_update(h, o);
    r.updated = isfinite(r.grad_norm);
    return r;
}

/* ---- text and batches ------------------------------------------------------------ */

int contrastive_text_spec_get(const tokenizer *tok, const clip_model *m,
                              contrastive_text_spec *spec, char *err, size_t errlen) {
    int32_t bos = tokenizer_special_id(tok, "bos_token"), eos = tokenizer_special_id(tok, "eos_token");
    int32_t pad = tokenizer_special_id(tok, "pad_token");
    if (bos < 0 || eos < 0) {
        snprintf(err, errlen, "the tokenizer has no %s token; CLIP texts need <|startoftext|> and "
                 "<|endoftext|>", bos < 0 ? "bos" : "eos");
        return -1;
    }
    /* eos_token_id 2 is the legacy config, whose pooling takes the largest id */
    if (m->text.eos_token_id != 2 && eos != m->text.eos_token_id) {
        snprintf(err, errlen, "the tokenizer's eos_token is id %d but text_config.eos_token_id is "
                 "%lld: the text tower would pool the wrong position", eos,
                 (long long)m->text.eos_token_id);
        return -1;
    }
    *spec = (contrastive_text_spec){.bos = bos, .eos = eos, .pad = pad >= 0 ? pad : eos,
                                    .max_len = m->text.max_pos};
    return 0;
}

int64_t contrastive_pack_text(const int32_t *tokens, int64_t n_tokens,
                              const contrastive_text_spec *spec, int64_t len, int32_t *ids,
                              int32_t *mask) {
    AIMC_CHECK(len >= 2, "contrastive_pack_text: length %lld < 2", (long long)len);
    int64_t k = 0;
    ids[k++] = spec->bos;
    for (int64_t i = 0; i < n_tokens && k < len - 1; i++)
        if (tokens[i] != spec->bos && tokens[i] != spec->eos) ids[k++] = tokens[i];
    ids[k++] = spec->eos;
    for (int64_t j = 0; j < len; j++) {
        if (j >= k) ids[j] = spec->pad;
        if (mask) mask[j] = j < k;
    }
    return k;
}

/* Tokens of an item that pack_text keeps, before truncation. */
static int64_t plain_tokens(const episode_item *it, const contrastive_text_spec *spec) {
    int64_t n = 0;
    for (int64_t i = 0; i < it->n_tokens; i++)
        n += it->tokens[i] != spec->bos && it->tokens[i] != spec->eos;
    return n;
}

static int check_episodes(const episode *eps, int64_t n, char *err, size_t errlen) {
    for (int64_t i = 0; i < n; i++) {
        const episode_item *it = &eps[i].items[eps[i].k], *first = &eps[0].items[eps[0].k];
        if (eps[i].k != 0) {
            snprintf(err, errlen, "episode %s has %d demonstrations; the contrastive objective "
                     "takes image-caption pairs (k = 0)", it->source ? it->source : "?", eps[i].k);
            return -1;
        }
        if (it->height != first->height || it->width != first->width) {
            snprintf(err, errlen, "image %s is %lldx%lld but %s is %lldx%lld; a batch needs one "
                     "image size", it->source ? it->source : "?", (long long)it->width,
                     (long long)it->height, first->source ? first->source : "?",
                     (long long)first->width, (long long)first->height);
            return -1;
        }
    }
    return 0;
}

int contrastive_batch_from_episodes(const episode *eps, int64_t n,
                                    const contrastive_text_spec *spec,
                                    contrastive_owned_batch *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    if (n > 0 && check_episodes(eps, n, err, errlen)) return -1;
    int64_t len = 2, h = n ? eps[0].items[0].height : 0, w = n ? eps[0].items[0].width : 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t want = plain_tokens(&eps[i].items[0], spec) + 2;
        if (want > len) len = want;
    }
    if (len > spec->max_len) len = spec->max_len;
    size_t per_image = (size_t)(3 * h * w);
    out->pixels = malloc(per_image * (size_t)n * sizeof(float) + 1);
    out->ids = malloc((size_t)(n * len) * sizeof(int32_t) + 1);
    out->mask = malloc((size_t)(n * len) * sizeof(int32_t) + 1);
    AIMC_CHECK(out->pixels && out->ids && out->mask, "contrastive: out of memory");
    for (int64_t i = 0; i < n; i++) {
        const episode_item *it = &eps[i].items[0];
        memcpy(out->pixels + (size_t)i * per_image, it->pixels, per_image * sizeof(float));
        contrastive_pack_text(it->tokens, it->n_tokens, spec, len, out->ids + i * len,
                              out->mask + i * len);
    }
    out->b = (contrastive_batch){.pixels = out->pixels, .ids = out->ids, .mask = out->mask,
                                 .n = n, .len = len, .channels = 3, .height = h, .width = w};
    return 0;
}

void contrastive_owned_batch_free(contrastive_owned_batch *b) {
    free(b->pixels);
    free(b->ids);
    free(b->mask);
    memset(b, 0, sizeof *b);
}
