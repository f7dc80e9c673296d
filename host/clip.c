/* CLIP: text tower, projections, logits and contrastive loss (clip.h). */
#include "clip.h"
#include "../kernels/check.h"
#include <math.h>
#include <stdlib.h>

/* ---- text tower --------------------------------------------------------- */

void clip_text_load(clip_text *t, const nn_loader *ld, const char *prefix_arg,
                    const char *cfg_prefix) {
    char prefix[256]; /* prefix_arg may sit in nn_name's ring, which loading overwrites */
    vit_copy_name(prefix, sizeof prefix, prefix_arg);
    const model_dir *md = ld->md;
    t->be = ld->be;
    t->enc = enc_config_read(md, cfg_prefix, "quick_gelu", 1e-5);
    t->vocab = cfg_int_or(md, vit_key(cfg_prefix, "vocab_size"), 49408);
    t->max_pos = cfg_int_or(md, vit_key(cfg_prefix, "max_position_embeddings"), 77);
    t->eos_token_id = cfg_int_or(md, vit_key(cfg_prefix, "eos_token_id"), 49407);
    int64_t d = t->enc.dim;
    const char *e = vit_key(prefix, "embeddings");
    t->tok_emb = nn_tensor_load(ld, nn_name("%s.token_embedding.weight", e), ld->wdt, 2,
                                (int64_t[]){t->vocab, d});
    t->pos_emb = nn_tensor_load(ld, nn_name("%s.position_embedding.weight", e), ld->be->act_dtype,
                                2, (int64_t[]){t->max_pos, d});
    encoder_load(&t->encoder, ld, vit_key(prefix, "encoder"), &t->enc, VIT_CLIP);
    t->final_ln = nn_norm_load(ld, vit_key(prefix, "final_layer_norm"), d, t->enc.eps,
                               NN_LAYERNORM, 1);
}

void clip_text_free(clip_text *t) {
    encoder_free(&t->encoder, t->be);
    nn_tensor_free(t->be, &t->tok_emb);
    nn_tensor_free(t->be, &t->pos_emb);
    nn_norm_free(t->be, &t->final_ln);
}

/* Host copy of input_ids [B, T] i32 (any backend), validated against the
 * tower: ids in [0, vocab), T <= max_position_embeddings. Caller frees. */
static int32_t *host_ids(const clip_text *t, const tensor *ids) {
    char s[80];
    if (ids->ndim != 2 || ids->dt != DT_I32)
        aimc_die("input_ids has shape %s (%s), expected [batch, tokens] i32",
                 tensor_shape_str(ids, s, sizeof s), dtype_name(ids->dt));
    if (ids->shape[1] > t->max_pos)
        aimc_die("input_ids has %lld tokens per sequence, more than the text tower's "
                 "max_position_embeddings %lld",
                 (long long)ids->shape[1], (long long)t->max_pos);
    int64_t n = tensor_numel(ids);
    int32_t *h = aimc_xmalloc((size_t)(n ? n : 1) * sizeof *h);
    ids->be->download(h, ids->data, tensor_bytes(ids));
    for (int64_t i = 0; i < n; i++)
        if (h[i] < 0 || h[i] >= t->vocab)
            aimc_die("input_ids[%lld][%lld] = %d is outside the vocabulary (0..%lld)",
                     (long long)(i / ids->shape[1]), (long long)(i % ids->shape[1]), h[i],
                     (long long)(t->vocab - 1));
    return h;
}

/* An i32 tensor on a's backend holding n host values. */
static tensor upload_i32(arena *a, const int32_t *v, int64_t n) {
    tensor host = tensor_wrap((void *)v, DT_I32, backend_cpu(), 1, (int64_t[]){n});
    return vit_to_backend(a, &host, DT_I32);
}

/* x [B, T, D] = token_embedding[ids] + position_embedding[0..T). */
static tensor embed_tokens(const clip_text *t, arena *a, const int32_t *ids, int64_t b,
                           int64_t n_tok) {
    int64_t d = t->enc.dim, rows = b * n_tok;
    dtype act = a->be->act_dtype;
    tensor x = arena_new(a, act, b, n_tok, d);
    tensor x2d = tensor_reshape(&x, 2, (int64_t[]){rows, d});
    size_t mark = a->used;
    tensor idx = upload_i32(a, ids, rows);
    if (t->tok_emb.dt == act || act == DT_F32) {
        op_gather_rows(&x2d, &t->tok_emb, &idx);
    } else { /* gather reads any table into f32 or the table's own dtype */
        tensor f = arena_new(a, DT_F32, rows, d);
        op_gather_rows(&f, &t->tok_emb, &idx);
        op_convert(&x2d, &f);
    }
    tensor pos = tensor_slice0(&t->pos_emb, 0, n_tok);
    for (int64_t i = 0; i < b; i++) {
        tensor seq = tensor_slice0(&x2d, i * n_tok, n_tok);
        op_add(&seq, &seq, &pos);
    }
    a->used = mark;
    return x;
}

/* The attention mask as attention's key mask: [B, T] f32 on a's backend. */
static tensor key_mask(arena *a, const tensor *mask, const tensor *ids) {
    char s[80], u[80];
    if (!tensor_same_shape(mask, ids) || mask->dt == DT_I32)
        aimc_die("attention_mask has shape %s (%s), expected %s floats like input_ids",
                 tensor_shape_str(mask, s, sizeof s), dtype_name(mask->dt),
                 tensor_shape_str(ids, u, sizeof u));
    return vit_to_backend(a, mask, DT_F32);
}

tensor clip_text_forward(const clip_text *t, arena *a, const tensor *input_ids,
                         const tensor *attention_mask, int64_t layer, int apply_final_ln) {
    AIMC_CHECK(a->be == t->be, "clip_text_forward: arena on %s, model on %s", a->be->name,
               t->be->name);
    int64_t n = t->enc.layers, last = layer < 0 ? n + 1 + layer : layer;
    if (last < 0 || last > n)
        aimc_die("text hidden-state layer %lld is out of range for a %lld-layer tower",
                 (long long)layer, (long long)n);
    int32_t *ids = host_ids(t, input_ids);
    int64_t b = input_ids->shape[0], n_tok = input_ids->shape[1];
    tensor x = embed_tokens(t, a, ids, b, n_tok);
    free(ids);
    tensor mask = {0};
    if (attention_mask) mask = key_mask(a, attention_mask, input_ids);
    attn_opts o = {.scale = 1.0f / sqrtf((float)t->enc.head_dim), .causal = 1,
                   .key_mask = attention_mask ? &mask : NULL};
    encoder_run(&t->encoder, a, &x, 0, last, &o);
    if (!apply_final_ln) return x;
    tensor y = arena_tensor(a, x.dt, x.ndim, x.shape);
    nn_norm_forward(&y, NULL, NULL, &x, &t->final_ln);
    return y;
}

/* Row of each sequence that CLIP pools (clip.h). */
static int64_t eos_position(const int32_t *ids, int64_t n_tok, int64_t eos_token_id) {
    int64_t best = 0;
    for (int64_t j = 0; j < n_tok; j++) {
        if (eos_token_id == 2) { /* legacy configs: the largest id (first on ties) */
            if (ids[j] > ids[best]) best = j;
        } else if (ids[j] == eos_token_id) {
            return j;
        }
    }
    return best;
}

tensor clip_text_pool(const clip_text *t, arena *a, const tensor *last_hidden,
                      const tensor *input_ids) {
    int64_t b = input_ids->shape[0], n_tok = input_ids->shape[1], d = t->enc.dim;
    AIMC_CHECK(last_hidden->ndim == 3 && last_hidden->shape[0] == b &&
                   last_hidden->shape[1] == n_tok && last_hidden->shape[2] == d,
               "clip_text_pool: hidden states do not match input_ids");
    int32_t *ids = host_ids(t, input_ids);
    int32_t *rows = aimc_xmalloc((size_t)b * sizeof *rows);
    for (int64_t i = 0; i < b; i++)
        rows[i] = (int32_t)(i * n_tok + eos_position(ids + i * n_tok, n_tok, t->eos_token_id));
    tensor pooled = arena_new(a, last_hidden->dt, b, d);
    size_t mark = a->used;
    tensor idx = upload_i32(a, rows, b);
    tensor h2d = tensor_reshape(last_hidden, 2, (int64_t[]){b * n_tok, d});
    op_gather_rows(&pooled, &h2d, &idx);
    a->used = mark;
    free(ids);
    free(rows);
    return pooled;
}

/* ---- the whole model ---------------------------------------------------- */

/* logit_scale: a scalar (stored 0-d, or with one element). */
static float read_logit_scale(const model_dir *md, const char *name) {
    const st_tensor *st = model_dir_need(md, name, MD_ANY_SHAPE, NULL);
    int64_t n = 1;
    for (int i = 0; i < st->ndim; i++) n *= st->shape[i];
    if (n != 1)
        aimc_die("%s: tensor '%s' has %lld elements, expected a scalar", model_dir_path(md), name,
                 (long long)n);
    float v;
    char err[256];
    if (st_read_f32(st, &v, err, sizeof err)) aimc_die("%s: %s", model_dir_path(md), err);
    return v;
}

clip_model *clip_load(const nn_loader *ld, const char *prefix) {
    clip_model *m = aimc_xcalloc(1, sizeof *m);
    m->be = ld->be;
    m->proj_dim = cfg_int_or(ld->md, "projection_dim", 512);
    m->vision = vit_load(ld, vit_key(prefix, "vision_model"), "vision_config", VIT_CLIP);
    clip_text_load(&m->text, ld, vit_key(prefix, "text_model"), "text_config");
    m->visual_proj = nn_linear_load(ld, vit_key(prefix, "visual_projection"),
                                    m->vision->enc.dim, m->proj_dim, 0);
    m->text_proj = nn_linear_load(ld, vit_key(prefix, "text_projection"), m->text.enc.dim,
                                  m->proj_dim, 0);
    m->logit_scale = read_logit_scale(ld->md, vit_key(prefix, "logit_scale"));
    return m;
}

void clip_free(clip_model *m) {
    if (!m) return;
    vit_free(m->vision);
    clip_text_free(&m->text);
    nn_linear_free(m->be, &m->visual_proj);
    nn_linear_free(m->be, &m->text_proj);
    free(m);
}

tensor clip_embed(arena *a, const tensor *pooled, const nn_linear *proj) {
    int64_t n = pooled->shape[0], p = proj->w.shape[0];
    tensor out = arena_new(a, DT_F32, n, p);
    size_t mark = a->used;
    tensor y = arena_new(a, pooled->dt, n, p), rnorm = arena_new(a, DT_F32, n);
    nn_linear_forward(&y, pooled, proj);
    tensor y32 = y;
    if (y.dt != DT_F32) { /* l2norm and the logits run in f32 */
        y32 = arena_new(a, DT_F32, n, p);
        op_convert(&y32, &y);
    }
    op_l2norm(&out, &rnorm, &y32);
    a->used = mark;
    return out;
}

/* out [rows(a), rows(b)] = exp(logit_scale) a b^T. */
static tensor scaled_logits(arena *a, const tensor *x, const tensor *y, float logit_scale) {
    tensor out = arena_new(a, DT_F32, x->shape[0], y->shape[0]);
    op_matmul(&out, x, y, NULL, 0, 1, 0);
    op_scale(&out, &out, expf(logit_scale));
    return out;
}

/* (CE(logits_per_text, arange) + CE(logits_per_image, arange)) / 2, each
 * a mean over the batch. infonce sums both directions over the rows. */
static tensor contrastive_loss(arena *a, const tensor *img, const tensor *txt, float logit_scale) {
    int64_t n = img->shape[0], p = img->shape[1];
    tensor loss = arena_new(a, DT_F32, 1);
    size_t mark = a->used;
    tensor d_img = arena_new(a, DT_F32, n, p), d_txt = arena_new(a, DT_F32, n, p),
           d_img_all = arena_new(a, DT_F32, n, p), d_txt_all = arena_new(a, DT_F32, n, p),
           d_scale = arena_new(a, DT_F32, 1);
    op_infonce(&loss, &d_img, &d_txt, &d_img_all, &d_txt_all, &d_scale, img, txt, img, txt, 0,
               logit_scale, 0.0f);
    op_scale(&loss, &loss, 0.5f / (float)n);
    a->used = mark;
    return loss;
}

void clip_forward(const clip_model *m, arena *a, const tensor *pixel_values,
                  const tensor *input_ids, const tensor *attention_mask, clip_output *out) {
    *out = (clip_output){0};
    out->vision_last_hidden = vit_forward(m->vision, a, pixel_values, -1, 0);
    out->vision_pooled = vit_pool(m->vision, a, &out->vision_last_hidden);
    out->text_last_hidden = clip_text_forward(&m->text, a, input_ids, attention_mask, -1, 1);
    out->text_pooled = clip_text_pool(&m->text, a, &out->text_last_hidden, input_ids);
    out->image_embeds = clip_embed(a, &out->vision_pooled, &m->visual_proj);
    out->text_embeds = clip_embed(a, &out->text_pooled, &m->text_proj);
    out->logits_per_text = scaled_logits(a, &out->text_embeds, &out->image_embeds, m->logit_scale);
    out->logits_per_image = scaled_logits(a, &out->image_embeds, &out->text_embeds, m->logit_scale);
    if (out->image_embeds.shape[0] == out->text_embeds.shape[0])
        out->loss = contrastive_loss(a, &out->image_embeds, &out->text_embeds, m->logit_scale);
}
