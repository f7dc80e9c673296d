/* The AIM step (aim.h, docs/aim-step.md): aggregation, projection, the
 * query sequence with the fused tokens in place, the LM loss and its
 * backward into the projector.
 *
 * Every sequence (a demonstration's native(image, text) and a query's
 * sequence) is built the same way: the token embeddings of a host id row
 * (BOS and the text at their rows, BOS as a filler elsewhere), then the
 * image tokens and the fused tokens scattered over their rows. A
 * demonstration is a query sequence without fused rows. */
#include "aim.h"
#include "../kernels/check.h"
#include "infer.h" /* infer_download_f32 */
#include "mllm.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- one sequence's layout ---------------------------------------------------- */

/* Row offsets of the parts of one sequence (docs/aim-step.md step 3):
 * LLaVA [BOS][fused][image][text], BLIP-2 [fused][image][BOS][text]. */
typedef struct seq_rows {
    int64_t fused_at, img_at, bos_at, text_at, len;
} seq_rows;

static seq_rows layout_rows(const mllm *m, int64_t n_fused, int64_t n_text) {
    int64_t n_img = mllm_tokens_per_image(m);
    seq_rows r;
    if (mllm_native_layout(m) == MLLM_LAYOUT_BOS_IMAGE) {
        r.bos_at = 0;
        r.fused_at = 1;
        r.img_at = r.fused_at + n_fused;
        r.text_at = r.img_at + n_img;
    } else {
        r.fused_at = 0;
        r.img_at = n_fused;
        r.bos_at = r.img_at + n_img;
        r.text_at = r.bos_at + 1;
    }
    r.len = r.text_at + n_text;
    return r;
}

typedef enum { PART_FUSED, PART_IMAGE, PART_TEXT } seq_part;

/* First row and row count of one part of a sequence. */
static void part_span(const mllm *m, const seq_rows *r, seq_part part, int64_t *start,
                      int64_t *n) {
    switch (part) {
    case PART_FUSED: *start = r->fused_at, *n = r->img_at - r->fused_at; break;
    case PART_IMAGE: *start = r->img_at, *n = mllm_tokens_per_image(m); break;
    default: *start = r->text_at, *n = r->len - r->text_at; break;
    }
}

/* ---- a right-padded batch of sequences ---------------------------------------- */

typedef struct seq_batch {
    const mllm *m;
    int64_t batch, len;             /* the padded shape [batch, len] */
    const episode_item *const *items; /* each sequence's image and text (borrowed) */
    seq_rows *rows;                 /* per sequence */
    int32_t *ids;                   /* host [batch * len] */
    int32_t *mask;                  /* host [batch * len]: 1 on real rows */
} seq_batch;

/* Lays out `batch` sequences; n_fused[b] fused rows in sequence b (NULL:
 * none). */
static void seq_batch_init(seq_batch *sb, const mllm *m, const episode_item *const *items,
                           int64_t batch, const int64_t *n_fused) {
    sb->m = m;
    sb->batch = batch;
    sb->items = items;
    sb->rows = aimc_xcalloc((size_t)batch, sizeof *sb->rows);
    sb->len = 0;
    for (int64_t b = 0; b < batch; b++) {
        sb->rows[b] = layout_rows(m, n_fused ? n_fused[b] : 0, items[b]->n_tokens);
        if (sb->rows[b].len > sb->len) sb->len = sb->rows[b].len;
    }
    sb->ids = aimc_xcalloc((size_t)(batch * sb->len), sizeof *sb->ids);
    sb->mask = aimc_xcalloc((size_t)(batch * sb->len), sizeof *sb->mask);
    int32_t bos = mllm_bos_id(m);
    for (int64_t b = 0; b < batch; b++) {
        int32_t *ids = sb->ids + b * sb->len;
        const seq_rows *r = &sb->rows[b];
        for (int64_t t = 0; t < sb->len; t++) ids[t] = bos; /* filler under image / fused / pad rows */
        memcpy(ids + r->text_at, items[b]->tokens, (size_t)items[b]->n_tokens * sizeof *ids);
        for (int64_t t = 0; t < r->len; t++) sb->mask[b * sb->len + t] = 1;
    }
}

static void seq_batch_free(seq_batch *sb) {
    free(sb->rows);
    free(sb->ids);
    free(sb->mask);
    memset(sb, 0, sizeof *sb);
}

/* Rows (of the flattened [batch * len]) of one part of every sequence. */
static int64_t part_count(const seq_batch *sb, seq_part part) {
    int64_t total = 0, start, n;
    for (int64_t b = 0; b < sb->batch; b++) {
        part_span(sb->m, &sb->rows[b], part, &start, &n);
        total += n;
    }
    return total;
}

/* Those rows as an i32 index on the backend, in sequence order (count > 0). */
static tensor part_index(const seq_batch *sb, arena *a, seq_part part) {
    int64_t count = part_count(sb, part), at = 0, start, n;
    int32_t *host = aimc_xcalloc((size_t)count, sizeof *host);
    for (int64_t b = 0; b < sb->batch; b++) {
        part_span(sb->m, &sb->rows[b], part, &start, &n);
        for (int64_t j = 0; j < n; j++) host[at++] = (int32_t)(b * sb->len + start + j);
    }
    tensor idx = arena_new(a, DT_I32, count);
    a->be->upload(idx.data, host, (size_t)count * sizeof *host);
    free(host);
    return idx;
}

/* [batch * len, D] view of a [batch, len, D] tensor. */
static tensor flat_rows(const tensor *x) {
    return tensor_reshape(x, 2, (int64_t[]){tensor_rows_count(x), tensor_cols(x)});
}

/* ---- image tokens and inputs_embeds ------------------------------------------- */

static int same_image_size(const episode_item *x, const episode_item *y) {
    return x->height == y->height && x->width == y->width;
}

/* Image tokens of the runs items[i0 .. i0 + n) of equal image size into
 * out rows [i0, i0 + n). */
static void run_image_tokens(const mllm *m, arena *a, const episode_item *const *items,
                             int64_t i0, int64_t n, tensor *out) {
    size_t mark = a->used;
    int64_t h = items[i0]->height, w = items[i0]->width, plane = 3 * h * w;
    tensor px = arena_new(a, DT_F32, n, 3, h, w);
    for (int64_t i = 0; i < n; i++)
        a->be->upload((float *)px.data + i * plane, items[i0 + i]->pixels,
                      (size_t)plane * sizeof(float));
    tensor tok = mllm_image_tokens(m, a, &px);
    tensor dst = tensor_slice0(out, i0, n);
    op_convert(&dst, &tok);
    a->used = mark;
}

/* Image tokens [n, tokens_per_image, D] of n items (act dtype, from a); the
 * vision model runs once per run of consecutive same-size images. */
static tensor items_image_tokens(const mllm *m, arena *a, const episode_item *const *items,
                                 int64_t n) {
    tensor out = arena_new(a, a->be->act_dtype, n, mllm_tokens_per_image(m), mllm_d_model(m));
    for (int64_t i0 = 0, i1; i0 < n; i0 = i1) {
        for (i1 = i0 + 1; i1 < n && same_image_size(items[i0], items[i1]); i1++) {}
        run_image_tokens(m, a, items, i0, i1 - i0, &out);
    }
    return out;
}

/* inputs_embeds [batch, len, D]: token embeddings with the image tokens and
 * the fused rows (fused [n, D] in sequence order, or NULL) written in. */
static tensor seq_embeds(const seq_batch *sb, arena *a, const tensor *fused) {
    const mllm *m = sb->m;
    tensor x = decoder_embed_tokens(mllm_decoder(m), a, sb->ids, sb->batch, sb->len);
    tensor rows = flat_rows(&x);
    size_t mark = a->used;
    tensor img = items_image_tokens(m, a, sb->items, sb->batch);
    tensor img_rows = flat_rows(&img);
    tensor idx = part_index(sb, a, PART_IMAGE);
    op_scatter_rows(&rows, &img_rows, &idx);
    if (fused) {
        idx = part_index(sb, a, PART_FUSED);
        op_scatter_rows(&rows, fused, &idx);
    }
    a->used = mark;
    return x;
}

/* ---- input checks --------------------------------------------------------------- */

static const char *item_name(const episode_item *it) { return it->source ? it->source : "?"; }

/* "episode E: " for messages; "" for a demonstration on its own (e < 0). */
static const char *episode_prefix(int e, char *buf, size_t n) {
    if (e < 0) return "";
    snprintf(buf, n, "episode %d: ", e);
    return buf;
}

static void check_image(const episode_item *it, int e, const char *role) {
    char where[32];
    if (!it->pixels || it->height < 1 || it->width < 1)
        aimc_die("%sthe %s (%s) has no image (%lld x %lld)", episode_prefix(e, where, sizeof where),
                 role, item_name(it), (long long)it->height, (long long)it->width);
}

static void check_demo(const episode_item *it, int e) {
    char where[32];
    check_image(it, e, "demonstration");
    if (it->n_tokens < 1 || !it->tokens)
        aimc_die("%sdemonstration %s has no text tokens", episode_prefix(e, where, sizeof where),
                 item_name(it));
}

/* The query's target flags must agree with its n_target. */
static void check_query(const episode_item *it, int e) {
    check_image(it, e, "query");
    if (it->n_tokens < 1 || !it->tokens)
        aimc_die("episode %d: query %s has no tokens", e, item_name(it));
    int64_t flagged = 0;
    for (int64_t j = 0; it->target && j < it->n_tokens; j++) flagged += it->target[j] != 0;
    if (flagged != it->n_target)
        aimc_die("episode %d: query %s has %lld target flags set but n_target %lld", e,
                 item_name(it), (long long)flagged, (long long)it->n_target);
}

static void check_model(const aim_model *am, const arena *a) {
    const mllm *m = am->mllm;
    AIMC_CHECK(a->be == m->be && am->proj->be == m->be,
               "aim: arena (%s), projector (%s) and model (%s) on different backends",
               a->be->name, am->proj->be->name, m->be->name);
    int64_t d = mllm_d_model(m);
    if (am->proj->cfg.d_in != d || am->proj->cfg.d_out != d)
        aimc_die("the projector maps %lld -> %lld but the model's hidden size is %lld",
                 (long long)am->proj->cfg.d_in, (long long)am->proj->cfg.d_out, (long long)d);
    decoder_hidden_index(mllm_decoder(m), am->layer); /* dies with the valid range */
}

static void check_episodes(const episode *eps, int n_eps) {
    AIMC_CHECK(n_eps >= 1 && eps, "aim_batch_step: %d episodes", n_eps);
    for (int e = 0; e < n_eps; e++) {
        AIMC_CHECK(eps[e].k >= 0 && eps[e].items, "aim_batch_step: episode %d has k %d, items %p",
                   e, eps[e].k, (void *)eps[e].items);
        for (int i = 0; i < eps[e].k; i++) check_demo(&eps[e].items[i], e);
        check_query(&eps[e].items[eps[e].k], e);
    }
}

/* ---- aggregation ------------------------------------------------------------------ */

/* hidden_states[layer] at the text rows of n demonstrations, each in its
 * own native sequence (one right-padded no-grad forward): [n_rows, D]. */
static tensor aggregate(const aim_model *am, arena *a, const episode_item *const *demos,
                        int64_t n, int64_t n_rows) {
    const decoder *lm = mllm_decoder(am->mllm);
    tensor h = arena_new(a, a->be->act_dtype, n_rows, mllm_d_model(am->mllm));
    size_t mark = a->used;
    seq_batch sb;
    seq_batch_init(&sb, am->mllm, demos, n, NULL);
    AIMC_CHECK(part_count(&sb, PART_TEXT) == n_rows, "aim: %lld demonstration rows, expected %lld",
               (long long)part_count(&sb, PART_TEXT), (long long)n_rows);
    tensor x = seq_embeds(&sb, a, NULL);
    decoder_fwd_opts o = {.want_hidden = 1, .hidden_layer = am->layer,
                          .pos_mode = DEC_POS_ARANGE};
    decoder_pass p;
    decoder_forward(lm, a, &x, sb.mask, &o, &p);
    tensor hid = flat_rows(&p.hidden), idx = part_index(&sb, a, PART_TEXT);
    op_gather_rows(&h, &hid, &idx);
    decoder_pass_release(&p);
    seq_batch_free(&sb);
    a->used = mark;
    return h;
}

int64_t aim_count_targets(const episode *eps, int n_eps) {
    int64_t n = 0;
    for (int e = 0; e < n_eps; e++) n += eps[e].items[eps[e].k].n_target;
    return n;
}

tensor aim_demo_hidden(const aim_model *am, arena *a, const episode_item *demo) {
    check_model(am, a);
    check_demo(demo, -1);
    return aggregate(am, a, &demo, 1, demo->n_tokens);
}

tensor aim_fuse_demo(const aim_model *am, arena *a, const episode_item *demo,
                     projector_saved *saved) {
    tensor h = aim_demo_hidden(am, a, demo);
    return projector_forward(am->proj, a, &h, saved);
}

/* ---- the batch step -------------------------------------------------------------- */

/* The batch's items by role, in episode order (host arrays). */
typedef struct step_items {
    const episode_item **demos, **queries;
    int64_t n_demos, n_fused; /* demonstrations; their text tokens = fused rows */
    int64_t *fused_per_query;
} step_items;

static void step_items_init(step_items *s, const episode *eps, int n_eps) {
    s->n_demos = s->n_fused = 0;
    for (int e = 0; e < n_eps; e++) s->n_demos += eps[e].k;
    s->demos = aimc_xcalloc((size_t)s->n_demos, sizeof *s->demos);
    s->queries = aimc_xcalloc((size_t)n_eps, sizeof *s->queries);
    s->fused_per_query = aimc_xcalloc((size_t)n_eps, sizeof *s->fused_per_query);
    for (int e = 0, d = 0; e < n_eps; e++) {
        for (int i = 0; i < eps[e].k; i++, d++) {
            s->demos[d] = &eps[e].items[i];
            s->fused_per_query[e] += eps[e].items[i].n_tokens;
        }
        s->queries[e] = &eps[e].items[eps[e].k];
        s->n_fused += s->fused_per_query[e];
    }
}

static void step_items_free(step_items *s) {
    free(s->demos);
    free(s->queries);
    free(s->fused_per_query);
}

/* Labels [batch * len]: the target ids at their rows, -100 elsewhere;
 * *count gets how many count. */
static int32_t *query_labels(const seq_batch *q, int64_t *count) {
    int32_t *labels = aimc_xcalloc((size_t)(q->batch * q->len), sizeof *labels);
    *count = 0;
    for (int64_t i = 0; i < q->batch * q->len; i++) labels[i] = -100;
    for (int64_t b = 0; b < q->batch; b++) {
        const episode_item *it = q->items[b];
        /* text_at >= 1 (BOS comes first), so the shift never drops a label */
        int32_t *row = labels + b * q->len + q->rows[b].text_at;
        for (int64_t j = 0; j < it->n_tokens; j++)
            if (it->target && it->target[j]) row[j] = it->tokens[j], ++*count;
    }
    return labels;
}

/* d (dscale * loss sum) / d fused rows, from the pass whose logits hold
 * d mean / d logits (decoder_lm_loss over `count` targets), into the
 * projector's gradients (accumulated). */
static void fused_backward(const aim_model *am, arena *a, const seq_batch *q, decoder_pass *p,
                           const projector_saved *saved, double dlogit_scale, int64_t n_fused,
                           aim_trace *trace) {
    size_t mark = a->used;
    op_scale(&p->logits, &p->logits, (float)dlogit_scale);
    tensor dx = arena_new(a, a->be->act_dtype, q->batch, q->len, mllm_d_model(am->mllm));
    decoder_backward(mllm_decoder(am->mllm), a, p, &p->logits, NULL, &dx);
    tensor dx_rows = flat_rows(&dx), idx = part_index(q, a, PART_FUSED);
    tensor df = arena_new(a, a->be->act_dtype, n_fused, mllm_d_model(am->mllm));
    op_gather_rows(&df, &dx_rows, &idx);
    projector_backward(am->proj, a, saved, &df, 1);
    if (trace) trace->d_fused = infer_download_f32(a, &df);
    a->used = mark;
}

static void trace_inputs(aim_trace *t, arena *a, const seq_batch *q, const tensor *x,
                         int64_t n_fused) {
    memset(t, 0, sizeof *t);
    t->batch = q->batch;
    t->len = q->len;
    t->d_model = tensor_cols(x);
    t->n_fused = n_fused;
    t->embeds = infer_download_f32(a, x);
    t->mask = aimc_xcalloc((size_t)(q->batch * q->len), sizeof *t->mask);
    memcpy(t->mask, q->mask, (size_t)(q->batch * q->len) * sizeof *t->mask);
}

void aim_trace_free(aim_trace *t) {
    if (!t) return;
    free(t->embeds);
    free(t->mask);
    free(t->d_fused);
    memset(t, 0, sizeof *t);
}

double aim_batch_step_traced(const aim_model *am, arena *a, const episode *eps, int n_eps,
                             float dscale, int want_grad, aim_trace *trace) {
    check_model(am, a);
    check_episodes(eps, n_eps);
    size_t mark = a->used;
    step_items s;
    step_items_init(&s, eps, n_eps);
    projector_saved saved;
    tensor fused = {0};
    if (s.n_fused > 0) {
        tensor h = aggregate(am, a, s.demos, s.n_demos, s.n_fused);
        fused = projector_forward(am->proj, a, &h, want_grad ? &saved : NULL);
    }
    seq_batch q;
    seq_batch_init(&q, am->mllm, s.queries, n_eps, s.fused_per_query);
    int64_t count;
    int32_t *labels = query_labels(&q, &count);
    /* without fused rows or targets there is no gradient to compute */
    int backward = want_grad && s.n_fused > 0 && count > 0;
    tensor x = seq_embeds(&q, a, s.n_fused > 0 ? &fused : NULL);
    if (trace) trace_inputs(trace, a, &q, &x, s.n_fused);
    decoder_fwd_opts o = {.want_logits = 1, .for_backward = backward, .pos_mode = DEC_POS_ARANGE};
    decoder_pass p;
    decoder_forward(mllm_decoder(am->mllm), a, &x, q.mask, &o, &p);
    /* decoder_lm_loss gives the mean and d mean / d logits: rescale both to the sum */
    double mean = decoder_lm_loss(a, &p.logits, labels, q.len, backward ? &p.logits : NULL);
    if (backward)
        fused_backward(am, a, &q, &p, &saved, (double)dscale * (double)count, s.n_fused, trace);
    decoder_pass_release(&p);
    free(labels);
    seq_batch_free(&q);
    step_items_free(&s);
    a->used = mark;
    return mean * (double)count;
}

double aim_batch_step(const aim_model *am, arena *a, const episode *eps, int n_eps, float dscale,
                      int want_grad) {
    return aim_batch_step_traced(am, a, eps, n_eps, dscale, want_grad, NULL);
}
