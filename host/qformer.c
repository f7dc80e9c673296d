/* BLIP-2 Q-Former forward (layout, weights and config: qformer.h). */
#include "qformer.h"
#include "vit.h"
#include "../kernels/check.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- config ------------------------------------------------------------- */

static int64_t positive_or(const model_dir *md, const char *cfg_prefix, const char *key,
                           int64_t dflt) {
    const char *k = vit_key(cfg_prefix, key);
    int64_t v = cfg_int_or(md, k, dflt);
    if (v <= 0)
        aimc_die("%s/config.json: '%s' is %lld, expected a positive number", model_dir_path(md),
                 k, (long long)v);
    return v;
}

/* Blip2QFormerConfig's defaults fill absent keys. */
static qformer_config read_config(const model_dir *md, const char *p, int64_t enc_dim) {
    qformer_config c = {.enc_dim = enc_dim};
    c.dim = positive_or(md, p, "hidden_size", 768);
    c.layers = positive_or(md, p, "num_hidden_layers", 12);
    c.heads = positive_or(md, p, "num_attention_heads", 12);
    c.mlp_dim = positive_or(md, p, "intermediate_size", 3072);
    c.cross_freq = positive_or(md, p, "cross_attention_frequency", 2);
    if (c.dim % c.heads)
        aimc_die("%s/config.json: '%s' = %lld is not a multiple of '%s' = %lld",
                 model_dir_path(md), vit_key(p, "hidden_size"), (long long)c.dim,
                 vit_key(p, "num_attention_heads"), (long long)c.heads);
    c.head_dim = c.dim / c.heads;
    const char *act_key = vit_key(p, "hidden_act");
    const char *act = cfg_str_or(md, act_key, "gelu");
    int kind = act_parse(act);
    if (kind < 0)
        aimc_die("%s/config.json: '%s' is \"%s\", not an activation aimc knows",
                 model_dir_path(md), act_key, act);
    c.act = (act_kind)kind;
    c.eps = (float)cfg_double_or(md, vit_key(p, "layer_norm_eps"), 1e-12);
    /* relative position types add a distance embedding to the scores */
    const char *pos_key = vit_key(p, "position_embedding_type");
    const char *pos = cfg_str_or(md, pos_key, "absolute");
    if (strcmp(pos, "absolute"))
        aimc_die("%s/config.json: '%s' is \"%s\"; aimc's Q-Former implements only \"absolute\"",
                 model_dir_path(md), pos_key, pos);
    return c;
}

/* ---- loading ------------------------------------------------------------ */

/* "<p>.attention.*" / "<p>.crossattention.*": kv_dim is the key/value input width. */
static qformer_attn load_attn(const nn_loader *ld, const qformer_config *c, const char *p,
                              int64_t kv_dim) {
    char base[300];
    vit_copy_name(base, sizeof base, p);
    qformer_attn at;
    at.q = nn_linear_load(ld, nn_name("%s.attention.query", base), c->dim, c->dim, 1);
    at.k = nn_linear_load(ld, nn_name("%s.attention.key", base), kv_dim, c->dim, 1);
    at.v = nn_linear_load(ld, nn_name("%s.attention.value", base), kv_dim, c->dim, 1);
    at.out = nn_linear_load(ld, nn_name("%s.output.dense", base), c->dim, c->dim, 1);
    at.ln = nn_norm_load(ld, nn_name("%s.output.LayerNorm", base), c->dim, c->eps, NN_LAYERNORM,
                         1);
    return at;
}

static void load_layer(qformer_layer *l, const nn_loader *ld, const qformer_config *c,
                       const char *prefix, int64_t i) {
    char p[300];
    int n = snprintf(p, sizeof p, "%s.encoder.layer.%lld", prefix, (long long)i);
    AIMC_CHECK(n > 0 && n < (int)sizeof p, "qformer_load: prefix '%s' too long", prefix);
    l->self_attn = load_attn(ld, c, nn_name("%s.attention", p), c->dim);
    l->has_cross = i % c->cross_freq == 0;
    if (l->has_cross) l->cross = load_attn(ld, c, nn_name("%s.crossattention", p), c->enc_dim);
    l->ffn_in =
        nn_linear_load(ld, nn_name("%s.intermediate_query.dense", p), c->dim, c->mlp_dim, 1);
    l->ffn_out = nn_linear_load(ld, nn_name("%s.output_query.dense", p), c->mlp_dim, c->dim, 1);
    l->ffn_ln = nn_norm_load(ld, nn_name("%s.output_query.LayerNorm", p), c->dim, c->eps,
                             NN_LAYERNORM, 1);
}

/* query_tokens [1, n_query, D] as [n_query, D] in the activation dtype. */
static tensor load_queries(const nn_loader *ld, const char *name, int64_t dim) {
    const st_tensor *t = model_dir_need(ld->md, name, 3, (int64_t[]){1, MD_ANY_SIZE, dim});
    int64_t n = t->shape[1];
    if (n <= 0) aimc_die("%s: tensor '%s' holds no queries", model_dir_path(ld->md), name);
    tensor q = nn_tensor_load(ld, name, ld->be->act_dtype, 3, (int64_t[]){1, n, dim});
    return tensor_reshape(&q, 2, (int64_t[]){n, dim});
}

qformer *qformer_load(const nn_loader *ld, const char *prefix_arg, const char *cfg_prefix,
                      const char *query_name, int64_t enc_dim) {
    char prefix[256];
    vit_copy_name(prefix, sizeof prefix, prefix_arg);
    AIMC_CHECK(enc_dim > 0, "qformer_load: image feature width %lld", (long long)enc_dim);
    qformer *q = aimc_xcalloc(1, sizeof *q);
    q->be = ld->be;
    q->cfg = read_config(ld->md, cfg_prefix, enc_dim);
    q->queries = load_queries(ld, query_name, q->cfg.dim);
    q->cfg.n_query = q->queries.shape[0];
    q->ln = nn_norm_load(ld, nn_name("%s.layernorm", prefix), q->cfg.dim, q->cfg.eps,
                         NN_LAYERNORM, 1);
    q->layers = aimc_xcalloc((size_t)q->cfg.layers, sizeof *q->layers);
    for (int64_t i = 0; i < q->cfg.layers; i++) load_layer(&q->layers[i], ld, &q->cfg, prefix, i);
    return q;
}

static void free_attn(const backend *be, qformer_attn *at) {
    nn_linear_free(be, &at->q);
    nn_linear_free(be, &at->k);
    nn_linear_free(be, &at->v);
    nn_linear_free(be, &at->out);
    nn_norm_free(be, &at->ln);
}

void qformer_free(qformer *q) {
    if (!q) return;
    for (int64_t i = 0; q->layers && i < q->cfg.layers; i++) {
        qformer_layer *l = &q->layers[i];
        free_attn(q->be, &l->self_attn);
        if (l->has_cross) free_attn(q->be, &l->cross);
        nn_linear_free(q->be, &l->ffn_in);
        nn_linear_free(q->be, &l->ffn_out);
        nn_norm_free(q->be, &l->ffn_ln);
    }
    free(q->layers);
    nn_tensor_free(q->be, &q->queries);
    nn_norm_free(q->be, &q->ln);
    free(q);
}

/* ---- forward ------------------------------------------------------------ */

/* x [N * nq, D] = LN(x + r) (the post-LN residual; r is overwritten). */
static void add_norm(tensor *x, tensor *r, const nn_norm *ln) {
    op_add(r, r, x);
    nn_norm_forward(x, NULL, NULL, r, ln);
}

/* x = LN(out(attention(q(x), k(kv), v(kv))) + x); kv [N * T_kv, kv_dim] is x
 * itself for self-attention, the image features for cross-attention. */
static void attn_block(const qformer *q, const qformer_attn *at, arena *a, tensor *x,
                       const tensor *kv, int64_t n) {
    const qformer_config *c = &q->cfg;
    dtype dt = x->dt;
    int64_t rows = x->shape[0], t_q = rows / n, kv_rows = kv->shape[0], t_kv = kv_rows / n;
    size_t mark = a->used;
    tensor qp = arena_new(a, dt, rows, c->dim), kp = arena_new(a, dt, kv_rows, c->dim),
           vp = arena_new(a, dt, kv_rows, c->dim), att = arena_new(a, dt, rows, c->dim);
    nn_linear_forward(&qp, x, &at->q);
    nn_linear_forward(&kp, kv, &at->k);
    nn_linear_forward(&vp, kv, &at->v);
    tensor qh = tensor_reshape(&qp, 4, (int64_t[]){n, t_q, c->heads, c->head_dim});
    tensor kh = tensor_reshape(&kp, 4, (int64_t[]){n, t_kv, c->heads, c->head_dim});
    tensor vh = tensor_reshape(&vp, 4, (int64_t[]){n, t_kv, c->heads, c->head_dim});
    tensor ah = tensor_reshape(&att, 4, (int64_t[]){n, t_q, c->heads, c->head_dim});
    attn_opts o = {.scale = 1.0f / sqrtf((float)c->head_dim)};
    op_attention(&ah, NULL, &qh, &kh, &vh, &o);
    nn_linear_forward(&qp, &att, &at->out); /* qp is free again */
    add_norm(x, &qp, &at->ln);
    a->used = mark;
}

/* x = LN(output_query(act(intermediate_query(x))) + x). */
static void ffn_block(const qformer_layer *l, const qformer_config *c, arena *a, tensor *x) {
    dtype dt = x->dt;
    int64_t rows = x->shape[0];
    size_t mark = a->used;
    tensor h = arena_new(a, dt, rows, c->mlp_dim), g = arena_new(a, dt, rows, c->mlp_dim);
    tensor r = arena_new(a, dt, rows, c->dim);
    nn_linear_forward(&h, x, &l->ffn_in);
    op_act(c->act, &g, &h);
    nn_linear_forward(&r, &g, &l->ffn_out);
    add_norm(x, &r, &l->ffn_ln);
    a->used = mark;
}

static void check_image(const qformer *q, const tensor *img) {
    char s[80];
    AIMC_CHECK(img->ndim == 3 && img->shape[0] > 0 && img->shape[1] > 0 &&
                   img->shape[2] == q->cfg.enc_dim,
               "qformer_forward: image features %s, expected [N, T, %lld]",
               tensor_shape_str(img, s, sizeof s), (long long)q->cfg.enc_dim);
    AIMC_CHECK(img->be == q->be && img->dt == q->be->act_dtype,
               "qformer_forward: image features must be %s on %s",
               dtype_name(q->be->act_dtype), q->be->name);
}

tensor qformer_forward(const qformer *q, arena *a, const tensor *image) {
    check_image(q, image);
    const qformer_config *c = &q->cfg;
    int64_t n = image->shape[0], nq = c->n_query;
    tensor out = arena_new(a, a->be->act_dtype, n, nq, c->dim);
    tensor x = tensor_reshape(&out, 2, (int64_t[]){n * nq, c->dim});
    tensor img = tensor_reshape(image, 2, (int64_t[]){n * image->shape[1], c->enc_dim});
    size_t mark = a->used;
    tensor raw = arena_new(a, a->be->act_dtype, n * nq, c->dim);
    for (int64_t i = 0; i < n; i++) { /* every image starts from the same queries */
        tensor dst = tensor_slice0(&raw, i * nq, nq);
        op_convert(&dst, &q->queries);
    }
    nn_norm_forward(&x, NULL, NULL, &raw, &q->ln);
    a->used = mark;
    for (int64_t i = 0; i < c->layers; i++) {
        const qformer_layer *l = &q->layers[i];
        attn_block(q, &l->self_attn, a, &x, &x, n);
        if (l->has_cross) attn_block(q, &l->cross, a, &x, &img, n);
        ffn_block(l, c, a, &x);
    }
    return out;
}
