/* Vision transformer (CLIP / EVA layouts) and the shared pre-LN encoder.
 * Layouts, indexing and config keys: vit.h. */
#include "vit.h"
#include "../kernels/check.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- config ------------------------------------------------------------- */

const char *vit_key(const char *prefix, const char *key) {
    return *prefix ? nn_name("%s.%s", prefix, key) : key;
}

void vit_copy_name(char *dst, size_t n, const char *src) {
    int len = snprintf(dst, n, "%s", src);
    AIMC_CHECK(len >= 0 && (size_t)len < n, "tensor name prefix '%s' longer than %zu bytes", src,
               n - 1);
}

/* A required positive size; dies naming the key when absent or not positive. */
static int64_t need_positive(const model_dir *md, const char *prefix, const char *key) {
    const char *k = vit_key(prefix, key);
    int64_t v = cfg_need_int(md, k);
    if (v <= 0)
        aimc_die("%s/config.json: '%s' is %lld, expected a positive size", model_dir_path(md), k,
                 (long long)v);
    return v;
}

enc_config enc_config_read(const model_dir *md, const char *cfg_prefix, const char *default_act,
                           double default_eps) {
    enc_config c = {0};
    c.dim = need_positive(md, cfg_prefix, "hidden_size");
    c.mlp_dim = need_positive(md, cfg_prefix, "intermediate_size");
    c.layers = need_positive(md, cfg_prefix, "num_hidden_layers");
    c.heads = need_positive(md, cfg_prefix, "num_attention_heads");
    if (c.dim % c.heads)
        aimc_die("%s/config.json: '%s' = %lld is not a multiple of '%s' = %lld", model_dir_path(md),
                 vit_key(cfg_prefix, "hidden_size"), (long long)c.dim,
                 vit_key(cfg_prefix, "num_attention_heads"), (long long)c.heads);
    c.head_dim = c.dim / c.heads;
    const char *act_key = vit_key(cfg_prefix, "hidden_act");
    const char *act = cfg_str_or(md, act_key, default_act);
    int kind = act_parse(act);
    if (kind < 0)
        aimc_die("%s/config.json: '%s' is \"%s\", not an activation aimc knows", model_dir_path(md),
                 act_key, act);
    c.act = (act_kind)kind;
    c.eps = (float)cfg_double_or(md, vit_key(cfg_prefix, "layer_norm_eps"), default_eps);
    return c;
}

/* ---- encoder ------------------------------------------------------------ */

/* A [3D] f32 bias cat(q_bias, 0, v_bias) on the backend, from the two
 * stored halves of older BLIP-2 checkpoints. */
static tensor fused_qv_bias(const nn_loader *ld, const char *prefix, int64_t d) {
    const st_tensor *qb = model_dir_need(ld->md, nn_name("%s.q_bias", prefix), 1, (int64_t[]){d});
    const st_tensor *vb = model_dir_need(ld->md, nn_name("%s.v_bias", prefix), 1, (int64_t[]){d});
    float *host = aimc_xcalloc((size_t)(3 * d), sizeof *host);
    char err[256];
    if (st_read_f32(qb, host, err, sizeof err) || st_read_f32(vb, host + 2 * d, err, sizeof err))
        aimc_die("%s: %s.{q,v}_bias: %s", model_dir_path(ld->md), prefix, err);
    tensor b = tensor_wrap(ld->be->alloc((size_t)(3 * d) * sizeof *host), DT_F32, ld->be, 1,
                           (int64_t[]){3 * d});
    ld->be->upload(b.data, host, (size_t)(3 * d) * sizeof *host);
    free(host);
    return b;
}

/* Row range [r0, r0 + n) of a fused Linear as a Linear of its own (a view). */
static nn_linear linear_rows(const nn_linear *l, int64_t r0, int64_t n) {
    nn_linear v = {.w = tensor_slice0(&l->w, r0, n)};
    if (l->b.data) v.b = tensor_slice0(&l->b, r0, n);
    return v;
}

/* EVA attention: one qkv Linear [3D, D], bias stored whole, split, or absent
 * (qkv_bias = false in the config). */
static void load_fused_qkv(enc_layer *l, const nn_loader *ld, const char *attn, int64_t d,
                           int want_bias) {
    const char *qkv = nn_name("%s.qkv", attn);
    int whole_bias = model_dir_find(ld->md, nn_name("%s.bias", qkv)) != NULL;
    int split_bias = model_dir_find(ld->md, nn_name("%s.q_bias", attn)) != NULL;
    l->qkv = nn_linear_load(ld, qkv, d, 3 * d, whole_bias);
    if (!whole_bias && (split_bias || want_bias)) /* absent q_bias: dies naming it */
        l->qkv.b = fused_qv_bias(ld, attn, d);
    l->q = linear_rows(&l->qkv, 0, d);
    l->k = linear_rows(&l->qkv, d, d);
    l->v = linear_rows(&l->qkv, 2 * d, d);
    l->out = nn_linear_load(ld, nn_name("%s.projection", attn), d, d, 1);
}

static void load_separate_qkv(enc_layer *l, const nn_loader *ld, const char *attn, int64_t d) {
    l->q = nn_linear_load(ld, nn_name("%s.q_proj", attn), d, d, 1);
    l->k = nn_linear_load(ld, nn_name("%s.k_proj", attn), d, d, 1);
    l->v = nn_linear_load(ld, nn_name("%s.v_proj", attn), d, d, 1);
    l->out = nn_linear_load(ld, nn_name("%s.out_proj", attn), d, d, 1);
}

static void load_layer(enc_layer *l, const nn_loader *ld, const char *p, const enc_config *c,
                       vit_style style) {
    char attn[300]; /* p is shorter than 256 (encoder_load) */
    snprintf(attn, sizeof attn, "%s.self_attn", p);
    if (style == VIT_EVA)
        load_fused_qkv(l, ld, attn, c->dim, c->qkv_bias);
    else
        load_separate_qkv(l, ld, attn, c->dim);
    l->ln1 = nn_norm_load(ld, nn_name("%s.layer_norm1", p), c->dim, c->eps, NN_LAYERNORM, 1);
    l->ln2 = nn_norm_load(ld, nn_name("%s.layer_norm2", p), c->dim, c->eps, NN_LAYERNORM, 1);
    l->fc1 = nn_linear_load(ld, nn_name("%s.mlp.fc1", p), c->dim, c->mlp_dim, 1);
    l->fc2 = nn_linear_load(ld, nn_name("%s.mlp.fc2", p), c->mlp_dim, c->dim, 1);
}

void encoder_load(encoder *e, const nn_loader *ld, const char *prefix_arg,
                  const enc_config *cfg, vit_style style) {
    char prefix[256]; /* prefix_arg may sit in nn_name's ring, which loading overwrites */
    vit_copy_name(prefix, sizeof prefix, prefix_arg);
    e->cfg = *cfg;
    e->layers = aimc_xcalloc((size_t)cfg->layers, sizeof *e->layers);
    for (int64_t i = 0; i < cfg->layers; i++) {
        char p[256];
        int n = snprintf(p, sizeof p, "%s.layers.%lld", prefix, (long long)i);
        AIMC_CHECK(n > 0 && n < (int)sizeof p, "encoder_load: prefix '%s' too long", prefix);
        load_layer(&e->layers[i], ld, p, cfg, style);
    }
}

void encoder_free(encoder *e, const backend *be) {
    for (int64_t i = 0; e->layers && i < e->cfg.layers; i++) {
        enc_layer *l = &e->layers[i];
        if (l->qkv.w.data) {
            nn_linear_free(be, &l->qkv); /* q, k, v are views of it */
        } else {
            nn_linear_free(be, &l->q);
            nn_linear_free(be, &l->k);
            nn_linear_free(be, &l->v);
        }
        nn_linear_free(be, &l->out);
        nn_linear_free(be, &l->fc1);
        nn_linear_free(be, &l->fc2);
        nn_norm_free(be, &l->ln1);
        nn_norm_free(be, &l->ln2);
    }
    free(e->layers);
    e->layers = NULL;
}

/* [rows, D] <-> [B, T, H, hd] views of the same memory (attention's layout). */
static tensor as_heads(const tensor *x, const enc_config *c, int64_t b, int64_t t) {
    return tensor_reshape(x, 4, (int64_t[]){b, t, c->heads, c->head_dim});
}

/* x += out_proj(attention(q, k, v)) with q, k, v projected from h = ln1(x). */
static void attention_block(const enc_layer *l, const enc_config *c, arena *a, tensor *x2d,
                            int64_t b, int64_t t, const attn_opts *o) {
    dtype dt = x2d->dt;
    int64_t rows = b * t;
    tensor h = arena_new(a, dt, rows, c->dim);
    nn_norm_forward(&h, NULL, NULL, x2d, &l->ln1);
    tensor q = arena_new(a, dt, rows, c->dim), k = arena_new(a, dt, rows, c->dim),
           v = arena_new(a, dt, rows, c->dim);
    nn_linear_forward(&q, &h, &l->q);
    nn_linear_forward(&k, &h, &l->k);
    nn_linear_forward(&v, &h, &l->v);
    tensor qh = as_heads(&q, c, b, t), kh = as_heads(&k, c, b, t), vh = as_heads(&v, c, b, t);
    tensor att = arena_new(a, dt, b, t, c->heads, c->head_dim);
    op_attention(&att, NULL, &qh, &kh, &vh, o);
    tensor att2d = tensor_reshape(&att, 2, (int64_t[]){rows, c->dim});
    nn_linear_forward(&h, &att2d, &l->out); /* h is free again: reuse it */
    op_add(x2d, x2d, &h);
}

/* x += fc2(act(fc1(ln2(x)))). */
static void mlp_block(const enc_layer *l, const enc_config *c, arena *a, tensor *x2d) {
    dtype dt = x2d->dt;
    int64_t rows = x2d->shape[0];
    tensor h = arena_new(a, dt, rows, c->dim);
    nn_norm_forward(&h, NULL, NULL, x2d, &l->ln2);
    tensor f = arena_new(a, dt, rows, c->mlp_dim), g = arena_new(a, dt, rows, c->mlp_dim);
    nn_linear_forward(&f, &h, &l->fc1);
    op_act(c->act, &g, &f);
    nn_linear_forward(&h, &g, &l->fc2);
    op_add(x2d, x2d, &h);
}

void encoder_run(const encoder *e, arena *a, tensor *x, int64_t first, int64_t last,
                 const attn_opts *o) {
    const enc_config *c = &e->cfg;
    AIMC_CHECK(x->ndim == 3 && x->shape[2] == c->dim, "encoder_run: x must be [B, T, %lld]",
               (long long)c->dim);
    AIMC_CHECK(first >= 0 && first <= last && last <= c->layers,
               "encoder_run: layers [%lld, %lld) outside 0..%lld", (long long)first,
               (long long)last, (long long)c->layers);
    int64_t b = x->shape[0], t = x->shape[1];
    tensor x2d = tensor_reshape(x, 2, (int64_t[]){b * t, c->dim});
    for (int64_t i = first; i < last; i++) {
        size_t mark = a->used; /* each layer's temporaries die with it */
        attention_block(&e->layers[i], c, a, &x2d, b, t, o);
        mlp_block(&e->layers[i], c, a, &x2d);
        a->used = mark;
    }
}

/* ---- vision tower ------------------------------------------------------- */

/* image_size / patch_size may be ints or [h, w] lists (square only). */
static int64_t need_square_size(const model_dir *md, const char *cfg_prefix, const char *key) {
    char paths[512];
    snprintf(paths, sizeof paths, "%s|%s", vit_key(cfg_prefix, nn_name("%s.0", key)),
             vit_key(cfg_prefix, key));
    int64_t v = cfg_need_int(md, paths);
    if (v <= 0)
        aimc_die("%s/config.json: '%s' is %lld, expected a positive size", model_dir_path(md),
                 vit_key(cfg_prefix, key), (long long)v);
    return v;
}

static void read_vision_config(vit_model *m, const model_dir *md, const char *cfg_prefix) {
    int eva = m->style == VIT_EVA;
    m->enc = enc_config_read(md, cfg_prefix, eva ? "gelu" : "quick_gelu", eva ? 1e-6 : 1e-5);
    m->enc.qkv_bias = eva && cfg_bool_or(md, vit_key(cfg_prefix, "qkv_bias"), 1);
    m->channels = cfg_int_or(md, vit_key(cfg_prefix, "num_channels"), 3);
    m->image_size = need_square_size(md, cfg_prefix, "image_size");
    m->patch_size = need_square_size(md, cfg_prefix, "patch_size");
    if (m->image_size % m->patch_size)
        aimc_die("%s/config.json: image_size %lld is not a multiple of patch_size %lld",
                 model_dir_path(md), (long long)m->image_size, (long long)m->patch_size);
    m->grid = m->image_size / m->patch_size;
    m->seq_len = m->grid * m->grid + 1;
}

/* Patch, class and position embeddings (layouts differ by style). */
static void load_embeddings(vit_model *m, const nn_loader *ld, const char *prefix) {
    int eva = m->style == VIT_EVA;
    int64_t d = m->enc.dim, p = m->patch_size, kk = m->channels * p * p;
    dtype act = ld->be->act_dtype;
    const char *e = vit_key(prefix, "embeddings");
    tensor w = nn_tensor_load(ld, nn_name("%s.patch_embedding.weight", e), ld->wdt, 4,
                              (int64_t[]){d, m->channels, p, p});
    m->patch_w = tensor_reshape(&w, 2, (int64_t[]){d, kk});
    if (eva)
        m->patch_b = nn_tensor_load(ld, nn_name("%s.patch_embedding.bias", e), DT_F32, 1,
                                    (int64_t[]){d});
    m->class_emb = eva ? nn_tensor_load(ld, nn_name("%s.class_embedding", e), act, 3,
                                        (int64_t[]){1, 1, d})
                       : nn_tensor_load(ld, nn_name("%s.class_embedding", e), act, 1,
                                        (int64_t[]){d});
    m->class_emb = tensor_reshape(&m->class_emb, 1, (int64_t[]){d});
    m->pos_emb = eva ? nn_tensor_load(ld, nn_name("%s.position_embedding", e), act, 3,
                                      (int64_t[]){1, m->seq_len, d})
                     : nn_tensor_load(ld, nn_name("%s.position_embedding.weight", e), act, 2,
                                      (int64_t[]){m->seq_len, d});
    m->pos_emb = tensor_reshape(&m->pos_emb, 2, (int64_t[]){m->seq_len, d});
}

/* prefix, or prefix + ".vision_model" when the weights sit one level deeper
 * (transformers v4's CLIPVisionModel wrapper; v5 saves without it). */
static const char *resolve_prefix(const model_dir *md, const char *prefix) {
    if (model_dir_find(md, vit_key(prefix, "embeddings.class_embedding"))) return prefix;
    const char *deeper = vit_key(prefix, "vision_model");
    if (model_dir_find(md, nn_name("%s.embeddings.class_embedding", deeper))) return deeper;
    return prefix; /* loading names the missing tensor */
}

vit_model *vit_load(const nn_loader *ld, const char *prefix, const char *cfg_prefix,
                    vit_style style) {
    char where[256];
    vit_copy_name(where, sizeof where, resolve_prefix(ld->md, prefix));
    prefix = where;
    vit_model *m = aimc_xcalloc(1, sizeof *m);
    m->style = style;
    m->be = ld->be;
    read_vision_config(m, ld->md, cfg_prefix);
    load_embeddings(m, ld, prefix);
    if (style == VIT_CLIP)
        m->pre_ln = nn_norm_load(ld, vit_key(prefix, "pre_layrnorm"), m->enc.dim, m->enc.eps,
                                 NN_LAYERNORM, 1);
    encoder_load(&m->encoder, ld, vit_key(prefix, "encoder"), &m->enc, style);
    m->post_ln = nn_norm_load(ld, vit_key(prefix, "post_layernorm"), m->enc.dim, m->enc.eps,
                              NN_LAYERNORM, 1);
    return m;
}

void vit_free(vit_model *m) {
    if (!m) return;
    encoder_free(&m->encoder, m->be);
    nn_tensor_free(m->be, &m->patch_w);
    nn_tensor_free(m->be, &m->patch_b);
    nn_tensor_free(m->be, &m->class_emb);
    nn_tensor_free(m->be, &m->pos_emb);
    nn_norm_free(m->be, &m->pre_ln);
    nn_norm_free(m->be, &m->post_ln);
    free(m);
}

int64_t vit_layer_index(const vit_model *m, int64_t layer) {
    int64_t n = m->enc.layers, i = layer < 0 ? n + 1 + layer : layer;
    if (i < 0 || i > n)
        aimc_die("vision hidden-state layer %lld is out of range for a %lld-layer tower "
                 "(use -%lld..%lld)",
                 (long long)layer, (long long)n, (long long)(n + 1), (long long)n);
    return i;
}

tensor vit_to_backend(arena *a, const tensor *t, dtype want) {
    tensor src = *t;
    if (t->be != a->be) { /* host round trip: backends share no memory */
        src = arena_tensor(a, t->dt, t->ndim, t->shape);
        size_t bytes = tensor_bytes(t);
        void *host = malloc(bytes ? bytes : 1);
        AIMC_CHECK(host, "out of memory (%zu bytes)", bytes);
        t->be->download(host, t->data, bytes);
        a->be->upload(src.data, host, bytes);
        free(host);
    }
    tensor out = arena_tensor(a, want, t->ndim, t->shape);
    op_convert(&out, &src);
    return out;
}

/* Host f32 copy of a float tensor on any backend (caller frees). */
static float *download_f32(const tensor *t) {
    int64_t n = tensor_numel(t);
    size_t bytes = tensor_bytes(t);
    void *raw = malloc(bytes ? bytes : 1);
    float *out = malloc((size_t)(n ? n : 1) * sizeof *out);
    AIMC_CHECK(raw && out, "out of memory (%zu bytes)", bytes);
    t->be->download(raw, t->data, bytes);
    for (int64_t i = 0; i < n; i++) out[i] = load_as_f32(raw, t->dt, i);
    free(raw);
    return out;
}

/* pixels [N, C, S, S] -> rows [N * g * g, C * p * p], each row one patch in
 * the conv kernel's (c, ky, kx) order, patches in row-major grid order (the
 * order of conv.flatten(2).transpose(1, 2)). */
static void unfold_patches(const vit_model *m, const float *px, float *rows, int64_t n_img) {
    int64_t c_n = m->channels, p = m->patch_size, g = m->grid, s = m->image_size;
    int64_t kk = c_n * p * p;
    for (int64_t n = 0; n < n_img; n++)
        for (int64_t gy = 0; gy < g; gy++)
            for (int64_t gx = 0; gx < g; gx++) {
                float *row = rows + ((n * g + gy) * g + gx) * kk;
                for (int64_t c = 0; c < c_n; c++)
                    for (int64_t ky = 0; ky < p; ky++) {
                        const float *src = px + ((n * c_n + c) * s + gy * p + ky) * s + gx * p;
                        memcpy(row + (c * p + ky) * p, src, (size_t)p * sizeof *src);
                    }
            }
}

static void check_pixels(const vit_model *m, const tensor *px) {
    char s[80];
    if (px->ndim != 4 || px->shape[1] != m->channels || px->shape[2] != m->image_size ||
        px->shape[3] != m->image_size || px->dt == DT_I32)
        aimc_die("pixel_values has shape %s (%s), expected [N, %lld, %lld, %lld] floats",
                 tensor_shape_str(px, s, sizeof s), dtype_name(px->dt), (long long)m->channels,
                 (long long)m->image_size, (long long)m->image_size);
}

/* Unfolded patches [N * g * g, C * p * p] in the activation dtype. */
static tensor patches_on_backend(const vit_model *m, arena *a, const tensor *px) {
    int64_t n = px->shape[0], rows = n * m->grid * m->grid, kk = tensor_cols(&m->patch_w);
    float *host_px = download_f32(px);
    float *host_rows = aimc_xmalloc((size_t)(rows * kk) * sizeof *host_rows);
    unfold_patches(m, host_px, host_rows, n);
    tensor f32 = tensor_wrap(host_rows, DT_F32, backend_cpu(), 2, (int64_t[]){rows, kk});
    tensor out = vit_to_backend(a, &f32, a->be->act_dtype);
    free(host_px);
    free(host_rows);
    return out;
}

/* x [N, T, D]: per image [CLS ; patches W^T + b] + position embeddings. */
static tensor embed_images(const vit_model *m, arena *a, const tensor *px) {
    int64_t n = px->shape[0], t = m->seq_len, np = t - 1, d = m->enc.dim;
    tensor x = arena_new(a, a->be->act_dtype, n, t, d);
    size_t mark = a->used;
    tensor patches = patches_on_backend(m, a, px);
    tensor x2d = tensor_reshape(&x, 2, (int64_t[]){n * t, d});
    for (int64_t i = 0; i < n; i++) {
        tensor cls = tensor_slice0(&x2d, i * t, 1), img = tensor_slice0(&x2d, i * t, t);
        tensor dst = tensor_slice0(&x2d, i * t + 1, np), src = tensor_slice0(&patches, i * np, np);
        op_matmul(&dst, &src, &m->patch_w, m->patch_b.data ? &m->patch_b : NULL, 0, 1, 0);
        op_convert(&cls, &m->class_emb);
        op_add(&img, &img, &m->pos_emb);
    }
    a->used = mark;
    return x;
}

/* norm(x) into a new tensor (the op interface promises nothing for y == x). */
static tensor norm_copy(arena *a, const tensor *x, const nn_norm *n) {
    tensor y = arena_tensor(a, x->dt, x->ndim, x->shape);
    nn_norm_forward(&y, NULL, NULL, x, n);
    return y;
}

tensor vit_forward(const vit_model *m, arena *a, const tensor *pixel_values, int64_t layer,
                   int apply_post_ln) {
    AIMC_CHECK(a->be == m->be, "vit_forward: arena on %s, model on %s", a->be->name, m->be->name);
    check_pixels(m, pixel_values);
    int64_t last = vit_layer_index(m, layer);
    tensor x = embed_images(m, a, pixel_values);
    if (m->pre_ln.w.data) x = norm_copy(a, &x, &m->pre_ln);
    attn_opts o = {.scale = 1.0f / sqrtf((float)m->enc.head_dim)};
    encoder_run(&m->encoder, a, &x, 0, last, &o);
    return apply_post_ln ? norm_copy(a, &x, &m->post_ln) : x;
}

tensor vit_pool(const vit_model *m, arena *a, const tensor *hidden) {
    int64_t n = hidden->shape[0], t = hidden->shape[1], d = m->enc.dim;
    AIMC_CHECK(hidden->ndim == 3 && hidden->shape[2] == d, "vit_pool: hidden must be [N, T, %lld]",
               (long long)d);
    tensor cls = arena_new(a, hidden->dt, n, d);
    tensor h2d = tensor_reshape(hidden, 2, (int64_t[]){n * t, d});
    for (int64_t i = 0; i < n; i++) {
        tensor dst = tensor_slice0(&cls, i, 1), src = tensor_slice0(&h2d, i * t, 1);
        op_convert(&dst, &src);
    }
    return norm_copy(a, &cls, &m->post_ln);
}

tensor vit_drop_cls(arena *a, const tensor *hidden) {
    AIMC_CHECK(hidden->ndim == 3 && hidden->shape[1] >= 1,
               "vit_drop_cls: hidden must be [N, T, D]");
    int64_t n = hidden->shape[0], t = hidden->shape[1], d = hidden->shape[2];
    tensor out = arena_new(a, hidden->dt, n, t - 1, d);
    tensor h2d = tensor_reshape(hidden, 2, (int64_t[]){n * t, d});
    tensor o2d = tensor_reshape(&out, 2, (int64_t[]){n * (t - 1), d});
    for (int64_t i = 0; i < n; i++) {
        tensor dst = tensor_slice0(&o2d, i * (t - 1), t - 1);
        tensor src = tensor_slice0(&h2d, i * t + 1, t - 1);
        op_convert(&dst, &src);
    }
    return out;
}
