/* The decoder shared by LLaMA and OPT (see decoder.h): loading helpers, the
 * pre-norm block forward and its activation-only backward, the layer loop,
 * masks and positions, the LM head and loss, and the KV cache. The
 * architecture files (llama.c, opt.c) only read their config and weights
 * into a decoder; everything numeric lives here, written once. */
#include "decoder.h"
#include "../kernels/check.h"
#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- loading helpers -------------------------------------------------------- */

const char *decoder_cfg_key(const char *prefix, const char *alternatives) {
    static char ring[8][512];
    static int next;
    char *buf = ring[next++ & 7];
    size_t used = 0;
    const char *s = alternatives;
    while (1) {
        const char *bar = strchr(s, '|');
        size_t n = bar ? (size_t)(bar - s) : strlen(s);
        int w = snprintf(buf + used, sizeof ring[0] - used, "%s%s%s%.*s", used ? "|" : "",
                         prefix, prefix[0] ? "." : "", (int)n, s);
        AIMC_CHECK(w >= 0 && (size_t)w < sizeof ring[0] - used,
                   "decoder_cfg_key: '%s' under '%s' is too long", alternatives, prefix);
        used += (size_t)w;
        if (!bar) break;
        s = bar + 1;
    }
    return buf;
}

void decoder_weight_name(char *buf, size_t n, const char *prefix, const char *name) {
    int w = snprintf(buf, n, "%s%s%s", prefix, prefix[0] ? "." : "", name);
    if (w < 0 || (size_t)w >= n) aimc_die("weights prefix '%s' is too long", prefix);
}

decoder *decoder_alloc(const nn_loader *ld, const decoder_config *cfg) {
    decoder *m = calloc(1, sizeof *m);
    AIMC_CHECK(m, "decoder: out of memory");
    m->cfg = *cfg;
    m->be = ld->be;
    m->layer = calloc((size_t)cfg->layers, sizeof *m->layer);
    AIMC_CHECK(m->layer, "decoder: out of memory for %lld layers", (long long)cfg->layers);
    return m;
}

static void config_die(const model_dir *md, const char *cfg_prefix, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 3, 4)));
static void config_die(const model_dir *md, const char *cfg_prefix, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    aimc_die("%s/config.json%s%s: %s", model_dir_path(md), cfg_prefix[0] ? " " : "", cfg_prefix,
             msg);
}

void decoder_config_check(const decoder_config *c, const model_dir *md, const char *cfg_prefix) {
    const struct { const char *name; int64_t v; } sizes[] = {
        {"vocab_size", c->vocab},          {"hidden_size", c->hidden},
        {"num_hidden_layers", c->layers},  {"num_attention_heads", c->heads},
        {"num_key_value_heads", c->kv_heads}, {"head_dim", c->head_dim},
        {"intermediate_size / ffn_dim", c->ffn},
    };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        if (sizes[i].v <= 0)
            config_die(md, cfg_prefix, "%s is %lld, expected a positive size", sizes[i].name,
                       (long long)sizes[i].v);
    if (c->heads % c->kv_heads)
        config_die(md, cfg_prefix,
                   "num_attention_heads (%lld) is not a multiple of num_key_value_heads (%lld)",
                   (long long)c->heads, (long long)c->kv_heads);
    if (c->rope_theta > 0 && c->head_dim % 2)
        config_die(md, cfg_prefix, "head_dim %lld is odd; rotary embeddings need an even size",
                   (long long)c->head_dim);
    if (c->arch == DEC_OPT && c->pos_rows < 3)
        config_die(md, cfg_prefix, "max_position_embeddings is %lld, expected >= 1",
                   (long long)c->pos_rows - 2);
}

void decoder_load_head(decoder *m, const nn_loader *ld, const char *head_name) {
    if (m->cfg.tied_head) {
        m->head = m->embed; /* the same memory; decoder_free releases it once */
        return;
    }
    m->head = nn_tensor_load(ld, nn_name("%s.weight", head_name), ld->wdt, 2,
                             (int64_t[]){m->cfg.vocab, m->cfg.hidden});
}

decoder *decoder_load(const nn_loader *ld, const char *weights_prefix, const char *cfg_prefix) {
    const char *key = decoder_cfg_key(cfg_prefix, "model_type");
    const char *type = cfg_need_str(ld->md, key);
    if (!strcmp(type, "llama")) return llama_load(ld, weights_prefix, cfg_prefix);
    if (!strcmp(type, "opt")) return opt_load(ld, weights_prefix, cfg_prefix);
    aimc_die("%s/config.json: %s is '%s'; the language models aimc runs are 'llama' and 'opt'",
             model_dir_path(ld->md), key, type);
}

void decoder_free(decoder *m) {
    if (!m) return;
    const backend *be = m->be;
    for (int64_t l = 0; l < m->cfg.layers; l++) {
        decoder_layer *w = &m->layer[l];
        nn_norm_free(be, &w->attn_norm);
        nn_norm_free(be, &w->mlp_norm);
        nn_linear *lin[] = {&w->q, &w->k, &w->v, &w->o, &w->gate, &w->up, &w->down};
        for (size_t i = 0; i < sizeof lin / sizeof lin[0]; i++) nn_linear_free(be, lin[i]);
    }
    if (!m->cfg.tied_head) nn_tensor_free(be, &m->head);
    nn_tensor_free(be, &m->embed);
    nn_tensor_free(be, &m->pos_embed);
    nn_norm_free(be, &m->final_norm);
    free(m->layer);
    free(m);
}

int64_t decoder_hidden_index(const decoder *m, int64_t index) {
    int64_t n = m->cfg.layers + 1;
    if (index < -n || index >= n)
        aimc_die("hidden layer %lld is out of range: this language model has %lld hidden states "
                 "(valid indices %lld .. %lld)",
                 (long long)index, (long long)n, (long long)-n, (long long)(n - 1));
    return index < 0 ? index + n : index;
}

/* ---- small tensor helpers ----------------------------------------------------- */

static dtype act_dt(const decoder *m) { return m->be->act_dtype; }

static tensor new_act(const decoder *m, arena *a, int64_t b, int64_t t, int64_t cols) {
    return arena_new(a, act_dt(m), b, t, cols);
}

static tensor upload_i32(arena *a, const int32_t *host, int64_t n) {
    tensor t = arena_new(a, DT_I32, n);
    a->be->upload(t.data, host, (size_t)n * sizeof *host);
    return t;
}

/* [B, T, H * hd] <-> [B, T, H, hd] views of the same memory. */
static tensor as_heads(const tensor *x, int64_t heads) {
    return tensor_reshape(x, 4, (int64_t[]){x->shape[0], x->shape[1], heads, x->shape[2] / heads});
}
static tensor as_rows(const tensor *x) {
    return tensor_reshape(x, 3, (int64_t[]){x->shape[0], x->shape[1], x->shape[2] * x->shape[3]});
}

static int32_t *host_i32(int64_t n) {
    int32_t *p = malloc((size_t)(n > 0 ? n : 1) * sizeof *p);
    AIMC_CHECK(p, "decoder: out of host memory for %lld ints", (long long)n);
    return p;
}

/* embeds is [B, T, hidden] in the activation dtype on the model's backend. */
static void check_embeds(const decoder *m, const tensor *e, const char *what) {
    char s[80];
    AIMC_CHECK(e && e->ndim == 3 && e->shape[2] == m->cfg.hidden && e->shape[0] > 0 &&
                   e->shape[1] > 0,
               "%s: inputs_embeds has shape %s, expected [batch, tokens, %lld]", what,
               e ? tensor_shape_str(e, s, sizeof s) : "NULL", (long long)m->cfg.hidden);
    AIMC_CHECK(e->dt == act_dt(m) && e->be == m->be,
               "%s: inputs_embeds must be %s on backend %s (got %s on %s)", what,
               dtype_name(act_dt(m)), m->be->name, dtype_name(e->dt), e->be ? e->be->name : "none");
}

/* Dies unless every mask entry is 0 or 1. Returns whether any is 0. */
static int check_mask(const int32_t *mask, int64_t batch, int64_t len) {
    int any_pad = 0;
    for (int64_t i = 0; i < batch * len; i++) {
        if (mask[i] != 0 && mask[i] != 1)
            aimc_die("attention_mask[%lld][%lld] is %d, expected 0 or 1", (long long)(i / len),
                     (long long)(i % len), (int)mask[i]);
        any_pad |= mask[i] == 0;
    }
    return any_pad;
}

/* ---- positions -------------------------------------------------------------- */

/* Positions of tokens [start, start + len) of every row, given each row's
 * mask over [0, start + len) (row stride `stride`; NULL: no padding):
 *   OPT:   cumsum(mask) * mask - 1 (pads -1, i.e. table row 1);
 *   LLaMA: start + t (DEC_POS_ARANGE) or cumsum(mask) - 1, pads 0
 *          (DEC_POS_FROM_MASK, as generate() computes position_ids). */
static void compute_positions(const decoder *m, decoder_pos_mode mode, const int32_t *mask,
                              int64_t stride, int64_t batch, int64_t start, int64_t len,
                              int32_t *pos) {
    for (int64_t b = 0; b < batch; b++) {
        int64_t cum = 0;
        for (int64_t j = 0; j < start + len; j++) {
            int64_t mj = mask ? mask[b * stride + j] : 1, p;
            cum += mj;
            if (j < start) continue;
            if (m->cfg.arch == DEC_OPT)
                p = cum * mj - 1;
            else
                p = mode == DEC_POS_ARANGE ? j : (mj ? cum - 1 : 0);
            pos[b * len + (j - start)] = (int32_t)p;
        }
    }
}

/* OPT adds the learned position embeddings (row pos + 2) to the input:
 * returns a new x0 [B, T, D]. LLaMA's input is the embeddings themselves. */
static tensor input_stream(const decoder *m, arena *a, const tensor *embeds, const int32_t *pos) {
    if (m->cfg.arch != DEC_OPT) return *embeds;
    int64_t n = embeds->shape[0] * embeds->shape[1];
    tensor x0 = new_act(m, a, embeds->shape[0], embeds->shape[1], m->cfg.hidden);
    int32_t *rows = host_i32(n);
    for (int64_t i = 0; i < n; i++) {
        if ((int64_t)pos[i] + 2 >= m->cfg.pos_rows)
            aimc_die("OPT: position %d is beyond max_position_embeddings (%lld)", (int)pos[i],
                     (long long)(m->cfg.pos_rows - 2));
        rows[i] = pos[i] + 2;
    }
    size_t mark = a->used;
    tensor idx = upload_i32(a, rows, n);
    op_gather_rows(&x0, &m->pos_embed, &idx);
    op_add(&x0, &x0, embeds);
    a->used = mark;
    free(rows);
    return x0;
}

/* ---- the block ------------------------------------------------------------------ */

/* How a layer's attention sees its keys: the whole sequence (causal, with a
 * key mask), or a KV cache that it appends its keys and values to. */
typedef struct attn_ctx {
    const tensor *pos;    /* [B, T] i32 */
    const tensor *mask;   /* [B, T] f32 key mask, NULL: none (full sequence only) */
    decoder_cache *cache; /* NULL: full sequence */
    int64_t layer;
    int keep_lse;         /* the backward will need lse */
} attn_ctx;

static attn_opts attention_opts(const decoder *m, const tensor *key_mask) {
    attn_opts o = {.scale = 1.0f / sqrtf((float)m->cfg.head_dim), .causal = 1,
                   .key_mask = key_mask};
    return o;
}

/* Norm statistics for `rows` rows: rstd always, mean for LayerNorm only. */
static void norm_stats(arena *a, const nn_norm *n, int64_t rows, tensor *mean, tensor *rstd) {
    *rstd = arena_new(a, DT_F32, rows);
    *mean = n->kind == NN_LAYERNORM ? arena_new(a, DT_F32, rows) : (tensor){0};
}

static tensor *opt_mean(tensor *mean) { return mean->data ? mean : NULL; }

/* Writes this step's keys and values into the cache, then attends each
 * sequence to its cached prefix plus the new tokens: a sequence's first n
 * cache rows are contiguous, and the causal rule (query i sees keys
 * j <= i + Tk - Tq) lines the new queries up with the end of the prefix. */
static void cache_attention(const decoder *m, const attn_ctx *ctx, const tensor *q,
                            const tensor *k, const tensor *v, tensor *att) {
    decoder_cache *c = ctx->cache;
    int64_t batch = q->shape[0], len = q->shape[1], n = c->len + len;
    int64_t hkv = m->cfg.kv_heads, hd = m->cfg.head_dim;
    tensor k_rows = tensor_reshape(k, 3, (int64_t[]){batch * len, hkv, hd});
    tensor v_rows = tensor_reshape(v, 3, (int64_t[]){batch * len, hkv, hd});
    tensor *ck = &c->k[ctx->layer], *cv = &c->v[ctx->layer];
    for (int64_t b = 0; b < batch; b++) {
        tensor dst_k = tensor_slice0(ck, b * c->cap + c->len, len);
        tensor dst_v = tensor_slice0(cv, b * c->cap + c->len, len);
        tensor src_k = tensor_slice0(&k_rows, b * len, len);
        tensor src_v = tensor_slice0(&v_rows, b * len, len);
        op_convert(&dst_k, &src_k);
        op_convert(&dst_v, &src_v);
    }
    for (int64_t b = 0; b < batch; b++) {
        tensor kb = tensor_slice0(ck, b * c->cap, n), vb = tensor_slice0(cv, b * c->cap, n);
        kb = tensor_reshape(&kb, 4, (int64_t[]){1, n, hkv, hd});
        vb = tensor_reshape(&vb, 4, (int64_t[]){1, n, hkv, hd});
        tensor mb = tensor_slice0(&c->mask, b * c->cap, n);
        mb = tensor_reshape(&mb, 2, (int64_t[]){1, n});
        tensor qb = tensor_slice0(q, b, 1), ob = tensor_slice0(att, b, 1);
        attn_opts o = attention_opts(m, &mb);
        op_attention(&ob, NULL, &qb, &kb, &vb, &o);
    }
}

/* Allocates what a layer keeps for its backward (q, k, v, att, lse, x2,
 * the MLP pre-activations, norm statistics), before the layer's
 * temporaries, so that those can be released right after it. */
static void layer_acts_alloc(const decoder *m, arena *a, const nn_norm *n1, const nn_norm *n2,
                             int64_t batch, int64_t len, int keep_lse, decoder_layer_acts *s) {
    const decoder_config *c = &m->cfg;
    dtype dt = act_dt(m);
    norm_stats(a, n1, batch * len, &s->mean1, &s->rstd1);
    s->q = arena_new(a, dt, batch, len, c->heads, c->head_dim);
    s->k = arena_new(a, dt, batch, len, c->kv_heads, c->head_dim);
    s->v = arena_new(a, dt, batch, len, c->kv_heads, c->head_dim);
    s->att = arena_new(a, dt, batch, len, c->heads, c->head_dim);
    s->lse = keep_lse ? arena_new(a, DT_F32, batch, c->heads, len) : (tensor){0};
    s->x2 = new_act(m, a, batch, len, c->hidden);
    norm_stats(a, n2, batch * len, &s->mean2, &s->rstd2);
    s->up = new_act(m, a, batch, len, c->ffn);
    s->gate = c->gated_mlp ? new_act(m, a, batch, len, c->ffn) : (tensor){0};
}

/* q, k, v from the normed input h; rotary positions; attention into s->att
 * (and s->lse when the backward needs it). */
static void attention_forward(const decoder *m, const decoder_layer *w, const attn_ctx *ctx,
                              const tensor *h, decoder_layer_acts *s) {
    const decoder_config *c = &m->cfg;
    tensor q = as_rows(&s->q), k = as_rows(&s->k), v = as_rows(&s->v);
    nn_linear_forward(&q, h, &w->q);
    nn_linear_forward(&k, h, &w->k);
    nn_linear_forward(&v, h, &w->v);
    if (c->rope_theta > 0) {
        op_rope(&s->q, ctx->pos, c->rope_theta, 0);
        op_rope(&s->k, ctx->pos, c->rope_theta, 0);
    }
    if (ctx->cache) {
        cache_attention(m, ctx, &s->q, &s->k, &s->v, &s->att);
        return;
    }
    attn_opts o = attention_opts(m, ctx->mask);
    op_attention(&s->att, s->lse.data ? &s->lse : NULL, &s->q, &s->k, &s->v, &o);
}

/* act [B, T, F] (a temporary) from the normed input h; keeps the
 * pre-activations in s->up (and s->gate). */
static tensor mlp_forward(const decoder *m, const decoder_layer *w, arena *a, const tensor *h,
                          decoder_layer_acts *s) {
    tensor act = new_act(m, a, h->shape[0], h->shape[1], m->cfg.ffn);
    nn_linear_forward(&s->up, h, &w->up);
    if (!m->cfg.gated_mlp) {
        op_act(m->cfg.act, &act, &s->up);
        return act;
    }
    nn_linear_forward(&s->gate, h, &w->gate);
    op_swiglu(&act, &s->gate, &s->up);
    return act;
}

/* out = block(x): x2 = x + o(attn(n1(x))); out = x2 + down(mlp(n2(x2))).
 * out must not alias x. What the backward needs lands in s (allocated from
 * a); the normed inputs and the MLP activation are released before the
 * return. */
static void layer_forward(const decoder *m, const decoder_layer *w, arena *a,
                          const attn_ctx *ctx, const tensor *x, tensor *out,
                          decoder_layer_acts *s) {
    int64_t batch = x->shape[0], len = x->shape[1];
    s->x = *x;
    layer_acts_alloc(m, a, &w->attn_norm, &w->mlp_norm, batch, len, ctx->keep_lse, s);
    size_t mark = a->used;
    tensor h = new_act(m, a, batch, len, m->cfg.hidden);
    nn_norm_forward(&h, opt_mean(&s->mean1), &s->rstd1, x, &w->attn_norm);
    attention_forward(m, w, ctx, &h, s);
    tensor att_rows = as_rows(&s->att);
    nn_linear_forward(&s->x2, &att_rows, &w->o);
    op_add(&s->x2, &s->x2, x);
    nn_norm_forward(&h, opt_mean(&s->mean2), &s->rstd2, &s->x2, &w->mlp_norm);
    tensor act = mlp_forward(m, w, a, &h, s);
    nn_linear_forward(out, &act, &w->down);
    op_add(out, out, &s->x2);
    a->used = mark;
}

/* d x2 = g + n2'(mlp'(g)) where g = d out. */
static void mlp_backward(const decoder *m, const decoder_layer *w, arena *a,
                         const decoder_layer_acts *s, const tensor *g, tensor *dx2) {
    int64_t batch = g->shape[0], len = g->shape[1], f = m->cfg.ffn;
    tensor dact = new_act(m, a, batch, len, f), dh = new_act(m, a, batch, len, m->cfg.hidden);
    nn_linear_backward_input(&dact, g, &w->down, 0);
    tensor dup = new_act(m, a, batch, len, f);
    if (m->cfg.gated_mlp) {
        tensor dgate = new_act(m, a, batch, len, f);
        op_swiglu_backward(&dgate, &dup, &dact, &s->gate, &s->up);
        nn_linear_backward_input(&dh, &dgate, &w->gate, 0);
        nn_linear_backward_input(&dh, &dup, &w->up, 1);
    } else {
        op_act_backward(m->cfg.act, &dup, &dact, &s->up);
        nn_linear_backward_input(&dh, &dup, &w->up, 0);
    }
    nn_norm_backward_input(dx2, &dh, &s->x2, s->mean2.data ? &s->mean2 : NULL, &s->rstd2,
                           &w->mlp_norm);
    op_add(dx2, dx2, g);
}

/* d x = dx2 + n1'(attn'(dx2)). */
static void attention_backward(const decoder *m, const decoder_layer *w, arena *a,
                               const decoder_pass *p, const decoder_layer_acts *s,
                               const tensor *dx2, tensor *dx) {
    const decoder_config *c = &m->cfg;
    int64_t batch = dx2->shape[0], len = dx2->shape[1];
    tensor datt = new_act(m, a, batch, len, c->heads * c->head_dim);
    nn_linear_backward_input(&datt, dx2, &w->o, 0);
    tensor dq = new_act(m, a, batch, len, c->heads * c->head_dim);
    tensor dk = new_act(m, a, batch, len, c->kv_heads * c->head_dim);
    tensor dv = new_act(m, a, batch, len, c->kv_heads * c->head_dim);
    tensor datt_h = as_heads(&datt, c->heads), dq_h = as_heads(&dq, c->heads);
    tensor dk_h = as_heads(&dk, c->kv_heads), dv_h = as_heads(&dv, c->kv_heads);
    attn_opts o = attention_opts(m, p->mask.data ? &p->mask : NULL);
    op_attention_backward(&dq_h, &dk_h, &dv_h, &datt_h, &s->q, &s->k, &s->v, &s->att, &s->lse, &o);
    if (c->rope_theta > 0) { /* rotation is orthogonal: its backward rotates back */
        op_rope(&dq_h, &p->pos, c->rope_theta, 1);
        op_rope(&dk_h, &p->pos, c->rope_theta, 1);
    }
    tensor dh = new_act(m, a, batch, len, c->hidden);
    nn_linear_backward_input(&dh, &dq, &w->q, 0);
    nn_linear_backward_input(&dh, &dk, &w->k, 1);
    nn_linear_backward_input(&dh, &dv, &w->v, 1);
    nn_norm_backward_input(dx, &dh, &s->x, s->mean1.data ? &s->mean1 : NULL, &s->rstd1,
                           &w->attn_norm);
    op_add(dx, dx, dx2);
}

static void layer_backward(const decoder *m, const decoder_layer *w, arena *a,
                           const decoder_pass *p, const decoder_layer_acts *s, const tensor *g,
                           tensor *dx) {
    tensor dx2 = new_act(m, a, g->shape[0], g->shape[1], m->cfg.hidden);
    mlp_backward(m, w, a, s, g, &dx2);
    attention_backward(m, w, a, p, s, &dx2, dx);
}

/* ---- forward ------------------------------------------------------------------ */

/* f32 [B, T] key mask on the backend; data NULL when nothing is padded. */
static tensor upload_mask(arena *a, const int32_t *mask, int64_t batch, int64_t len) {
    if (!mask || !check_mask(mask, batch, len)) return (tensor){0};
    tensor t = arena_new(a, DT_F32, batch, len);
    float *host = malloc((size_t)(batch * len) * sizeof *host);
    AIMC_CHECK(host, "decoder: out of host memory");
    for (int64_t i = 0; i < batch * len; i++) host[i] = (float)mask[i];
    a->be->upload(t.data, host, (size_t)(batch * len) * sizeof *host);
    free(host);
    return t;
}

/* How many layers must run for what was asked. */
static int64_t layers_needed(const decoder *m, const decoder_fwd_opts *o, int64_t hidden) {
    if (o->want_logits) return m->cfg.layers;
    return hidden;
}

/* The layers with every activation kept for the backward. */
static tensor run_layers_saved(const decoder *m, arena *a, const attn_ctx *ctx, tensor x,
                               decoder_pass *p) {
    p->acts = calloc((size_t)(p->layers_run > 0 ? p->layers_run : 1), sizeof *p->acts);
    AIMC_CHECK(p->acts, "decoder: out of host memory");
    p->saved = 1;
    for (int64_t l = 0; l < p->layers_run; l++) {
        tensor out = new_act(m, a, p->batch, p->len, m->cfg.hidden);
        layer_forward(m, &m->layer[l], a, ctx, &x, &out, &p->acts[l]);
        x = out;
        if (p->hidden_layer == l + 1 && l + 1 < m->cfg.layers) p->hidden = x;
    }
    return x;
}

/* The layers on two alternating stream buffers; each layer's temporaries
 * are released as soon as it is done. */
static tensor run_layers_streaming(const decoder *m, arena *a, const attn_ctx *ctx, tensor x,
                                   int64_t layers, int64_t keep_hidden, tensor *hidden) {
    if (layers == 0) return x;
    int64_t batch = x.shape[0], len = x.shape[1];
    tensor buf[2] = {new_act(m, a, batch, len, m->cfg.hidden),
                     new_act(m, a, batch, len, m->cfg.hidden)};
    for (int64_t l = 0; l < layers; l++) {
        size_t mark = a->used;
        decoder_layer_acts scratch;
        attn_ctx c = *ctx;
        c.layer = l;
        layer_forward(m, &m->layer[l], a, &c, &x, &buf[l & 1], &scratch);
        a->used = mark;
        x = buf[l & 1];
        if (keep_hidden == l + 1 && hidden) op_convert(hidden, &x);
    }
    return x;
}

/* Final norm, then the logits and/or the last hidden state. */
static void run_head(const decoder *m, arena *a, const tensor *x, const decoder_fwd_opts *o,
                     decoder_pass *p) {
    tensor mean, rstd, y = new_act(m, a, p->batch, p->len, m->cfg.hidden);
    norm_stats(a, &m->final_norm, p->batch * p->len, &mean, &rstd);
    nn_norm_forward(&y, opt_mean(&mean), &rstd, x, &m->final_norm);
    if (p->saved) {
        p->final_x = *x;
        p->final_mean = mean;
        p->final_rstd = rstd;
    }
    if (p->hidden_layer == m->cfg.layers) p->hidden = y;
    if (o->want_logits) {
        p->logits = arena_new(a, DT_F32, p->batch, p->len, m->cfg.vocab);
        op_matmul(&p->logits, &y, &m->head, NULL, 0, 1, 0);
    }
}

/* decoder_counts_now: process-wide, relaxed (a count, not a synchronisation point). */
static atomic_uint_fast64_t forward_count, step_count;

decoder_counts decoder_counts_now(void) {
    return (decoder_counts){.forwards = atomic_load_explicit(&forward_count, memory_order_relaxed),
                            .steps = atomic_load_explicit(&step_count, memory_order_relaxed)};
}

void decoder_forward(const decoder *m, arena *a, const tensor *embeds, const int32_t *mask,
                     const decoder_fwd_opts *o, decoder_pass *p) {
    check_embeds(m, embeds, "decoder_forward");
    atomic_fetch_add_explicit(&forward_count, 1, memory_order_relaxed);
    AIMC_CHECK(o->want_logits || o->want_hidden,
               "decoder_forward: asked for neither logits nor a hidden state");
    memset(p, 0, sizeof *p);
    p->batch = embeds->shape[0];
    p->len = embeds->shape[1];
    p->hidden_layer = o->want_hidden ? decoder_hidden_index(m, o->hidden_layer) : -1;
    p->layers_run = layers_needed(m, o, o->want_hidden ? p->hidden_layer : 0);
    p->mask = upload_mask(a, mask, p->batch, p->len);
    int32_t *pos = host_i32(p->batch * p->len);
    compute_positions(m, o->pos_mode, mask, p->len, p->batch, 0, p->len, pos);
    p->pos = upload_i32(a, pos, p->batch * p->len);
    p->pos = tensor_reshape(&p->pos, 2, (int64_t[]){p->batch, p->len});
    tensor x = input_stream(m, a, embeds, pos);
    free(pos);
    attn_ctx ctx = {.pos = &p->pos, .mask = p->mask.data ? &p->mask : NULL,
                    .keep_lse = o->for_backward};
    if (o->for_backward) {
        if (p->hidden_layer == 0) p->hidden = x;
        x = run_layers_saved(m, a, &ctx, x, p);
    } else {
        int keep = p->hidden_layer >= 0 && p->hidden_layer < m->cfg.layers;
        if (keep) p->hidden = new_act(m, a, p->batch, p->len, m->cfg.hidden);
        if (keep && p->hidden_layer == 0) op_convert(&p->hidden, &x);
        x = run_layers_streaming(m, a, &ctx, x, p->layers_run, keep ? p->hidden_layer : -1,
                                 keep ? &p->hidden : NULL);
    }
    if (p->layers_run == m->cfg.layers && (o->want_logits || p->hidden_layer == m->cfg.layers))
        run_head(m, a, &x, o, p);
}

void decoder_pass_release(decoder_pass *p) {
    free(p->acts);
    p->acts = NULL;
    p->saved = 0;
}

/* ---- backward --------------------------------------------------------------------- */

static void check_backward_inputs(const decoder *m, const decoder_pass *p, const tensor *dlogits,
                                  const tensor *d_hidden, const tensor *d_embeds) {
    char s[80];
    AIMC_CHECK(p->saved, "decoder_backward: the forward pass ran without for_backward");
    AIMC_CHECK(dlogits || d_hidden, "decoder_backward: neither dlogits nor d_hidden given");
    int64_t want_e[3] = {p->batch, p->len, m->cfg.hidden};
    ops_need_shape("decoder_backward", "d_embeds", d_embeds, 3, want_e);
    ops_need_dtype("decoder_backward", "d_embeds", d_embeds, act_dt(m));
    if (dlogits) {
        AIMC_CHECK(p->logits.data, "decoder_backward: dlogits given but the pass has no logits");
        int64_t want[3] = {p->batch, p->len, m->cfg.vocab};
        ops_need_shape("decoder_backward", "dlogits", dlogits, 3, want);
        ops_need_dtype("decoder_backward", "dlogits", dlogits, DT_F32);
    }
    if (d_hidden) {
        AIMC_CHECK(p->hidden.data, "decoder_backward: d_hidden given but the pass kept no hidden "
                   "state");
        AIMC_CHECK(tensor_same_shape(d_hidden, &p->hidden) && d_hidden->dt == act_dt(m),
                   "decoder_backward: d_hidden has shape %s, expected the hidden state's",
                   tensor_shape_str(d_hidden, s, sizeof s));
    }
}

/* d final-norm output from dlogits (through the head) and/or d_hidden at
 * the last index; returns 0 when neither applies. */
static int head_backward(const decoder *m, arena *a, const decoder_pass *p, const tensor *dlogits,
                         const tensor *d_hidden, tensor *dy) {
    int top_hidden = d_hidden && p->hidden_layer == m->cfg.layers;
    if (!dlogits && !top_hidden) return 0;
    *dy = new_act(m, a, p->batch, p->len, m->cfg.hidden);
    if (dlogits) {
        tensor dl = *dlogits;
        if (act_dt(m) != DT_F32) { /* keep the head product in the weights' fast path */
            dl = arena_new(a, act_dt(m), p->batch, p->len, m->cfg.vocab);
            op_convert(&dl, dlogits);
        }
        op_matmul(dy, &dl, &m->head, NULL, 0, 0, 0);
        if (top_hidden) op_add(dy, dy, d_hidden);
    } else {
        op_convert(dy, d_hidden);
    }
    return 1;
}

void decoder_backward(const decoder *m, arena *a, const decoder_pass *p, const tensor *dlogits,
                      const tensor *d_hidden, tensor *d_embeds) {
    check_backward_inputs(m, p, dlogits, d_hidden, d_embeds);
    size_t mark0 = a->used;
    tensor g[2] = {new_act(m, a, p->batch, p->len, m->cfg.hidden),
                   new_act(m, a, p->batch, p->len, m->cfg.hidden)};
    int cur = 0, have = 0;
    tensor dy;
    if (head_backward(m, a, p, dlogits, d_hidden, &dy)) {
        nn_norm_backward_input(&g[0], &dy, &p->final_x,
                               p->final_mean.data ? &p->final_mean : NULL, &p->final_rstd,
                               &m->final_norm);
        have = 1;
    }
    for (int64_t l = p->layers_run - 1; l >= -1; l--) {
        /* d_hidden enters as the gradient of hidden_states[l + 1] */
        if (d_hidden && p->hidden_layer == l + 1 && l + 1 < m->cfg.layers) {
            if (have) op_add(&g[cur], &g[cur], d_hidden);
            else op_convert(&g[cur], d_hidden);
            have = 1;
        }
        if (l < 0 || !have) continue;
        size_t mark = a->used;
        layer_backward(m, &m->layer[l], a, p, &p->acts[l], &g[cur], &g[cur ^ 1]);
        a->used = mark;
        cur ^= 1;
    }
    AIMC_CHECK(have, "decoder_backward: no gradient reached the input");
    /* OPT: x0 = embeds + positions, so d embeds = d x0 */
    op_convert(d_embeds, &g[cur]);
    a->used = mark0;
}

/* ---- embedding and loss --------------------------------------------------------- */

tensor decoder_embed_tokens(const decoder *m, arena *a, const int32_t *ids, int64_t batch,
                            int64_t len) {
    AIMC_CHECK(batch > 0 && len > 0, "decoder_embed_tokens: empty batch [%lld, %lld]",
               (long long)batch, (long long)len);
    for (int64_t i = 0; i < batch * len; i++)
        if (ids[i] < 0 || ids[i] >= m->cfg.vocab)
            aimc_die("input_ids[%lld][%lld] is %d, outside the vocabulary [0, %lld)",
                     (long long)(i / len), (long long)(i % len), (int)ids[i],
                     (long long)m->cfg.vocab);
    tensor out = new_act(m, a, batch, len, m->cfg.hidden);
    size_t mark = a->used;
    tensor idx = upload_i32(a, ids, batch * len);
    op_gather_rows(&out, &m->embed, &idx);
    a->used = mark;
    return out;
}

/* Row targets for the shifted labels (see decoder_lm_loss); returns how
 * many count. */
static int64_t shifted_targets(const int32_t *labels, int64_t n_labels, int64_t batch,
                               int64_t len, int64_t vocab, int32_t *targets) {
    int64_t count = 0, first = len - n_labels;
    for (int64_t b = 0; b < batch; b++)
        for (int64_t t = 0; t < len; t++) {
            int64_t i = t + 1 - first; /* label index predicted at position t */
            int32_t y = i >= 1 && i < n_labels ? labels[b * n_labels + i] : -100;
            if (y != -100 && (y < 0 || y >= vocab))
                aimc_die("labels[%lld][%lld] is %d, outside the vocabulary [0, %lld) and not "
                         "-100",
                         (long long)b, (long long)i, (int)y, (long long)vocab);
            targets[b * len + t] = y;
            count += y != -100;
        }
    return count;
}

double decoder_lm_loss(arena *a, const tensor *logits, const int32_t *labels, int64_t n_labels,
                       tensor *dlogits) {
    char s[80];
    AIMC_CHECK(logits->ndim == 3 && logits->dt == DT_F32,
               "decoder_lm_loss: logits %s must be [B, T, V] f32",
               tensor_shape_str(logits, s, sizeof s));
    int64_t batch = logits->shape[0], len = logits->shape[1], vocab = logits->shape[2];
    if (n_labels < 1 || n_labels > len)
        aimc_die("labels have %lld positions; expected 1 .. %lld (the sequence length)",
                 (long long)n_labels, (long long)len);
    if (dlogits) ops_need_same_shape("decoder_lm_loss", dlogits, logits);
    size_t mark = a->used;
    int32_t *targets = host_i32(batch * len);
    int64_t count = shifted_targets(labels, n_labels, batch, len, vocab, targets);
    tensor tgt = upload_i32(a, targets, batch * len);
    free(targets);
    tensor work = dlogits ? *dlogits : arena_new(a, DT_F32, batch, len, vocab);
    if (work.data != logits->data) op_convert(&work, logits);
    tensor rows = arena_new(a, DT_F32, batch * len);
    op_cross_entropy(&rows, &work, &tgt, count ? 1.0f / (float)count : 0.0f);
    float *host = malloc((size_t)(batch * len) * sizeof *host);
    AIMC_CHECK(host, "decoder: out of host memory");
    a->be->download(host, rows.data, (size_t)(batch * len) * sizeof *host);
    double sum = 0;
    for (int64_t i = 0; i < batch * len; i++) sum += host[i];
    free(host);
    a->used = mark;
    return count ? sum / (double)count : 0.0;
}

/* ---- KV cache --------------------------------------------------------------------- */

void decoder_cache_init(decoder_cache *c, const decoder *m, int64_t batch, int64_t cap,
                        decoder_pos_mode pos_mode) {
    AIMC_CHECK(batch > 0 && cap > 0, "decoder_cache_init: batch %lld, capacity %lld",
               (long long)batch, (long long)cap);
    memset(c, 0, sizeof *c);
    c->layers = m->cfg.layers;
    c->batch = batch;
    c->cap = cap;
    c->pos_mode = pos_mode;
    c->be = m->be;
    int64_t layers = m->cfg.layers, shape[3] = {batch * cap, m->cfg.kv_heads, m->cfg.head_dim};
    c->k = calloc((size_t)layers, sizeof *c->k);
    c->v = calloc((size_t)layers, sizeof *c->v);
    c->host_mask = calloc((size_t)(batch * cap), sizeof *c->host_mask);
    AIMC_CHECK(c->k && c->v && c->host_mask, "decoder_cache_init: out of host memory");
    for (int64_t l = 0; l < layers; l++) {
        c->k[l] = tensor_wrap(NULL, act_dt(m), m->be, 3, shape);
        c->v[l] = tensor_wrap(NULL, act_dt(m), m->be, 3, shape);
        c->k[l].data = m->be->alloc(tensor_bytes(&c->k[l]));
        c->v[l].data = m->be->alloc(tensor_bytes(&c->v[l]));
    }
    c->mask = tensor_wrap(NULL, DT_F32, m->be, 1, (int64_t[]){batch * cap});
    c->mask.data = m->be->alloc(tensor_bytes(&c->mask));
    m->be->zero(c->mask.data, tensor_bytes(&c->mask));
}

void decoder_cache_free(decoder_cache *c) {
    for (int64_t l = 0; c->k && l < c->layers; l++) {
        nn_tensor_free(c->be, &c->k[l]);
        nn_tensor_free(c->be, &c->v[l]);
    }
    if (c->mask.data) nn_tensor_free(c->be, &c->mask);
    free(c->k);
    free(c->v);
    free(c->host_mask);
    memset(c, 0, sizeof *c);
}

void decoder_cache_reset(decoder_cache *c) {
    c->len = 0;
    memset(c->host_mask, 0, (size_t)(c->batch * c->cap) * sizeof *c->host_mask);
    c->be->zero(c->mask.data, tensor_bytes(&c->mask));
}

/* Records the new tokens' mask (host and backend copies) at [len, len + T). */
static void cache_append_mask(decoder_cache *c, const int32_t *mask, int64_t len) {
    if (mask) check_mask(mask, c->batch, len);
    float *row = malloc((size_t)len * sizeof *row);
    AIMC_CHECK(row, "decoder: out of host memory");
    for (int64_t b = 0; b < c->batch; b++) {
        int64_t at = b * c->cap + c->len;
        for (int64_t t = 0; t < len; t++) {
            c->host_mask[at + t] = mask ? mask[b * len + t] : 1;
            row[t] = (float)c->host_mask[at + t];
        }
        c->be->upload((float *)c->mask.data + at, row, (size_t)len * sizeof *row);
    }
    free(row);
}

/* logits [B, T or 1, V] from the final hidden states y [B, T, D]. */
static void step_logits(const decoder *m, arena *a, const tensor *y, tensor *logits) {
    int64_t batch = y->shape[0], len = y->shape[1];
    if (logits->shape[1] == len) {
        op_matmul(logits, y, &m->head, NULL, 0, 1, 0);
        return;
    }
    int32_t *last = host_i32(batch);
    for (int64_t b = 0; b < batch; b++) last[b] = (int32_t)(b * len + len - 1);
    tensor idx = upload_i32(a, last, batch), rows = new_act(m, a, batch, 1, m->cfg.hidden);
    free(last);
    op_gather_rows(&rows, y, &idx);
    op_matmul(logits, &rows, &m->head, NULL, 0, 1, 0);
}

static void check_step(const decoder *m, const decoder_cache *c, const tensor *embeds,
                       const tensor *logits) {
    char s[80];
    check_embeds(m, embeds, "decoder_step");
    int64_t batch = embeds->shape[0], len = embeds->shape[1];
    AIMC_CHECK(batch == c->batch, "decoder_step: batch %lld, but the cache holds %lld sequences",
               (long long)batch, (long long)c->batch);
    AIMC_CHECK(logits->ndim == 3 && logits->dt == DT_F32 && logits->shape[0] == batch &&
                   (logits->shape[1] == len || logits->shape[1] == 1) &&
                   logits->shape[2] == m->cfg.vocab,
               "decoder_step: logits %s must be f32 [%lld, %lld or 1, %lld]",
               tensor_shape_str(logits, s, sizeof s), (long long)batch, (long long)len,
               (long long)m->cfg.vocab);
    if (c->len + len > c->cap)
        aimc_die("KV cache full: %lld cached + %lld new tokens exceed its capacity of %lld",
                 (long long)c->len, (long long)len, (long long)c->cap);
}

void decoder_step(const decoder *m, decoder_cache *c, arena *a, const tensor *embeds,
                  const int32_t *mask, tensor *logits) {
    check_step(m, c, embeds, logits);
    atomic_fetch_add_explicit(&step_count, 1, memory_order_relaxed);
    int64_t batch = embeds->shape[0], len = embeds->shape[1];
    size_t mark = a->used;
    cache_append_mask(c, mask, len);
    int32_t *pos = host_i32(batch * len);
    compute_positions(m, c->pos_mode, c->host_mask, c->cap, batch, c->len, len, pos);
    tensor pos_t = upload_i32(a, pos, batch * len);
    pos_t = tensor_reshape(&pos_t, 2, (int64_t[]){batch, len});
    tensor x = input_stream(m, a, embeds, pos);
    free(pos);
    attn_ctx ctx = {.pos = &pos_t, .cache = c};
    x = run_layers_streaming(m, a, &ctx, x, m->cfg.layers, -1, NULL);
    tensor mean, rstd, y = new_act(m, a, batch, len, m->cfg.hidden);
    norm_stats(a, &m->final_norm, batch * len, &mean, &rstd);
    nn_norm_forward(&y, opt_mean(&mean), &rstd, &x, &m->final_norm);
    step_logits(m, a, &y, logits);
    c->len += len;
    a->used = mark;
}
