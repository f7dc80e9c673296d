/* LLaVA-1.5 and BLIP-2 behind one interface (mllm.h): loading, image
 * tokens, and the LM input with the image tokens in place. */
#include "mllm.h"
#include "../kernels/check.h"
#include <cjson/cJSON.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* ---- architecture ------------------------------------------------------- */

int mllm_detect(const model_dir *md, char *what, size_t n) {
    const char *type, *arch;
    if (cfg_str(md, "model_type", &type)) {
        if (!strcmp(type, "llava")) return MLLM_LLAVA;
        if (!strcmp(type, "blip-2") || !strcmp(type, "blip_2")) return MLLM_BLIP2;
        snprintf(what, n, "model_type '%s'", type);
        return -1;
    }
    if (cfg_str(md, "architectures.0", &arch)) {
        if (!strcmp(arch, "LlavaForConditionalGeneration")) return MLLM_LLAVA;
        if (!strcmp(arch, "Blip2ForConditionalGeneration")) return MLLM_BLIP2;
        snprintf(what, n, "architecture '%s'", arch);
        return -1;
    }
    snprintf(what, n, "a model without model_type or architectures");
    return -1;
}

/* ---- LLaVA -------------------------------------------------------------- */

static act_kind config_act(const model_dir *md, const char *key, const char *dflt) {
    const char *name = cfg_str_or(md, key, dflt);
    int kind = act_parse(name);
    if (kind < 0)
        aimc_die("%s/config.json: '%s' is \"%s\", not an activation aimc knows",
                 model_dir_path(md), key, name);
    return (act_kind)kind;
}

/* vision_feature_layer (one index; newer configs may list several, whose
 * features transformers concatenates: not supported). */
static int64_t llava_feature_layer(const model_dir *md, const vit_model *v) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(model_dir_config(md),
                                                         "vision_feature_layer");
    if (cJSON_IsArray(item))
        aimc_die("%s/config.json: vision_feature_layer is a list; aimc supports one layer",
                 model_dir_path(md));
    int64_t layer = cfg_int_or(md, "vision_feature_layer", -2), n = v->enc.layers;
    if (layer < -(n + 1) || layer > n)
        aimc_die("%s/config.json: vision_feature_layer %lld is out of range for a %lld-layer "
                 "vision tower (use -%lld..%lld)",
                 model_dir_path(md), (long long)layer, (long long)n, (long long)(n + 1),
                 (long long)n);
    return vit_layer_index(v, layer);
}

static int llava_keep_cls(const model_dir *md) {
    const char *s = cfg_str_or(md, "vision_feature_select_strategy", "default");
    if (!strcmp(s, "default")) return 0;
    if (!strcmp(s, "full")) return 1;
    aimc_die("%s/config.json: vision_feature_select_strategy is \"%s\", expected \"default\" "
             "or \"full\"",
             model_dir_path(md), s);
}

static void llava_load(mllm *m, const nn_loader *ld) {
    const model_dir *md = ld->md;
    const char *vtype = cfg_str_or(md, "vision_config.model_type", "clip_vision_model");
    if (strcmp(vtype, "clip_vision_model"))
        aimc_die("%s/config.json: vision_config.model_type is '%s'; aimc's LLaVA runs a CLIP "
                 "vision tower ('clip_vision_model')",
                 model_dir_path(md), vtype);
    m->vision = vit_load(ld, "vision_tower", "vision_config", VIT_CLIP);
    m->feature_layer = llava_feature_layer(md, m->vision);
    m->keep_cls = llava_keep_cls(md);
    m->lm = decoder_load(ld, "language_model", "text_config");
    m->d_model = m->lm->cfg.hidden;
    m->proj_act = config_act(md, "projector_hidden_act", "gelu");
    int bias = cfg_bool_or(md, "multimodal_projector_bias", 1);
    m->proj1 = nn_linear_load(ld, "multi_modal_projector.linear_1", m->vision->enc.dim,
                              m->d_model, bias);
    m->proj2 = nn_linear_load(ld, "multi_modal_projector.linear_2", m->d_model, m->d_model, bias);
    m->tokens_per_image = m->vision->grid * m->vision->grid + m->keep_cls;
    m->image_token_id = (int32_t)cfg_int_or(md, "image_token_index|image_token_id", 32000);
    m->bos_id = (int32_t)cfg_int_or(md, "text_config.bos_token_id", 1);
    m->pad_id = (int32_t)cfg_int_or(md, "pad_token_id|text_config.pad_token_id", -1);
    m->layout = MLLM_LAYOUT_BOS_IMAGE;
}

/* ---- BLIP-2 ------------------------------------------------------------- */

static void blip2_load(mllm *m, const nn_loader *ld) {
    const model_dir *md = ld->md;
    m->vision = vit_load(ld, "vision_model", "vision_config", VIT_EVA);
    m->qformer = qformer_load(ld, "qformer", "qformer_config", "query_tokens", m->vision->enc.dim);
    int64_t nq = cfg_int_or(md, "num_query_tokens", 32);
    if (nq != m->qformer->cfg.n_query)
        aimc_die("%s: num_query_tokens is %lld in config.json but query_tokens holds %lld",
                 model_dir_path(md), (long long)nq, (long long)m->qformer->cfg.n_query);
    m->lm = decoder_load(ld, "language_model", "text_config");
    m->d_model = m->lm->cfg.hidden;
    m->lang_proj = nn_linear_load(ld, "language_projection", m->qformer->cfg.dim, m->d_model, 1);
    m->tokens_per_image = nq;
    int64_t id;
    m->image_token_id = cfg_int(md, "image_token_index|image_token_id", &id) ? (int32_t)id : -1;
    int opt = m->lm->cfg.arch == DEC_OPT;
    m->bos_id = (int32_t)cfg_int_or(md, "text_config.bos_token_id", opt ? 2 : 1);
    m->pad_id = (int32_t)cfg_int_or(md, "text_config.pad_token_id|pad_token_id", opt ? 1 : -1);
    m->layout = MLLM_LAYOUT_IMAGE_BOS;
}

/* ---- load / free / queries ---------------------------------------------- */

mllm *mllm_load(const char *dir, const backend *be, dtype wdt) {
    char err[1024], what[256];
    model_dir *md = model_dir_open(dir, err, sizeof err);
    if (!md) aimc_die("%s", err);
    int arch = mllm_detect(md, what, sizeof what);
    if (arch < 0)
        aimc_die("%s/config.json: %s is not a multimodal model aimc runs (llava, blip-2)", dir,
                 what);
    mllm *m = aimc_xcalloc(1, sizeof *m);
    m->arch = (mllm_arch)arch;
    m->be = be;
    nn_loader ld = {.md = md, .be = be, .wdt = wdt};
    if (m->arch == MLLM_LLAVA)
        llava_load(m, &ld);
    else
        blip2_load(m, &ld);
    model_dir_close(md); /* every tensor is a copy in backend memory */
    return m;
}

void mllm_free(mllm *m) {
    if (!m) return;
    vit_free(m->vision);
    decoder_free(m->lm);
    qformer_free(m->qformer);
    nn_linear_free(m->be, &m->proj1);
    nn_linear_free(m->be, &m->proj2);
    nn_linear_free(m->be, &m->lang_proj);
    free(m);
}

int64_t mllm_d_model(const mllm *m) { return m->d_model; }
int64_t mllm_tokens_per_image(const mllm *m) { return m->tokens_per_image; }
int32_t mllm_image_token_id(const mllm *m) { return m->image_token_id; }
int32_t mllm_bos_id(const mllm *m) { return m->bos_id; }
mllm_layout mllm_native_layout(const mllm *m) { return m->layout; }
const decoder *mllm_decoder(const mllm *m) { return m->lm; }

/* ---- image tokens ------------------------------------------------------- */

/* out [rows, D] = linear_2(act(linear_1(feat))) */
static void llava_project(const mllm *m, arena *a, const tensor *feat, tensor *out) {
    int64_t rows = feat->shape[0];
    tensor h = arena_new(a, a->be->act_dtype, rows, m->d_model);
    tensor g = arena_new(a, a->be->act_dtype, rows, m->d_model);
    nn_linear_forward(&h, feat, &m->proj1);
    op_act(m->proj_act, &g, &h);
    nn_linear_forward(out, &g, &m->proj2);
}

static void llava_image_tokens(const mllm *m, arena *a, const tensor *px, tensor *out2d) {
    tensor h = vit_forward(m->vision, a, px, m->feature_layer, 0);
    tensor f = m->keep_cls ? h : vit_drop_cls(a, &h);
    tensor f2d = tensor_reshape(&f, 2, (int64_t[]){out2d->shape[0], m->vision->enc.dim});
    llava_project(m, a, &f2d, out2d);
}

static void blip2_image_tokens(const mllm *m, arena *a, const tensor *px, tensor *out2d) {
    tensor img = vit_forward(m->vision, a, px, -1, 1); /* post_layernorm over every row */
    tensor q = qformer_forward(m->qformer, a, &img);
    tensor q2d = tensor_reshape(&q, 2, (int64_t[]){out2d->shape[0], m->qformer->cfg.dim});
    nn_linear_forward(out2d, &q2d, &m->lang_proj);
}

static atomic_uint_fast64_t image_passes;

uint64_t mllm_image_passes(void) { return atomic_load_explicit(&image_passes, memory_order_relaxed); }

tensor mllm_image_tokens(const mllm *m, arena *a, const tensor *pixel_values) {
    AIMC_CHECK(a->be == m->be, "mllm_image_tokens: arena on %s, model on %s", a->be->name,
               m->be->name);
    if (pixel_values->ndim != 4 || pixel_values->shape[0] < 1)
        aimc_die("pixel_values has %d dimensions, expected [images, channels, height, width] "
                 "with at least one image",
                 pixel_values->ndim);
    atomic_fetch_add_explicit(&image_passes, 1, memory_order_relaxed);
    int64_t n = pixel_values->shape[0], k = m->tokens_per_image;
    tensor out = arena_new(a, a->be->act_dtype, n, k, m->d_model);
    tensor out2d = tensor_reshape(&out, 2, (int64_t[]){n * k, m->d_model});
    size_t mark = a->used; /* everything after `out` is temporary */
    if (m->arch == MLLM_LLAVA)
        llava_image_tokens(m, a, pixel_values, &out2d);
    else
        blip2_image_tokens(m, a, pixel_values, &out2d);
    a->used = mark;
    return out;
}

/* ---- the LM input ------------------------------------------------------- */

int64_t mllm_input_len(const mllm *m, int64_t len) {
    return m->image_token_id < 0 ? m->tokens_per_image + len : len;
}

int32_t *mllm_input_mask(const mllm *m, const int32_t *mask, int64_t batch, int64_t len) {
    int64_t pre = mllm_input_len(m, len) - len, full = pre + len;
    int32_t *out = aimc_xmalloc((size_t)(batch * full > 0 ? batch * full : 1) * sizeof *out);
    for (int64_t b = 0; b < batch; b++)
        for (int64_t t = 0; t < full; t++)
            out[b * full + t] = t < pre || !mask ? 1 : mask[b * len + t - pre];
    return out;
}

/* Row indices (into [batch * input_len, ...]) of the image positions, in
 * row-major order (host, malloc'd); their count in *count. */
static int32_t *image_rows(const mllm *m, const int32_t *ids, int64_t batch, int64_t len,
                           int64_t *count) {
    int64_t k = m->tokens_per_image, full = mllm_input_len(m, len);
    int32_t *rows = aimc_xmalloc((size_t)(batch * full) * sizeof *rows);
    int64_t n = 0;
    for (int64_t b = 0; b < batch; b++)
        for (int64_t t = 0; t < full; t++) {
            int is_image = m->image_token_id < 0 ? t < k : ids[b * len + t] == m->image_token_id;
            if (is_image) rows[n++] = (int32_t)(b * full + t);
        }
    *count = n;
    return rows;
}

static tensor upload_rows(arena *a, const int32_t *rows, int64_t n) {
    tensor t = arena_new(a, DT_I32, n);
    a->be->upload(t.data, rows, (size_t)n * sizeof *rows);
    return t;
}

static void check_image_tokens(const mllm *m, const tensor *img) {
    char s[80];
    if (img->ndim != 3 || img->shape[1] != m->tokens_per_image || img->shape[2] != m->d_model)
        aimc_die("image tokens have shape %s, expected [images, %lld, %lld]",
                 tensor_shape_str(img, s, sizeof s), (long long)m->tokens_per_image,
                 (long long)m->d_model);
    AIMC_CHECK(img->be == m->be && img->dt == m->be->act_dtype,
               "mllm_build_inputs: image tokens must be %s on %s", dtype_name(m->be->act_dtype),
               m->be->name);
}

/* The ids to embed: image ids replaced by 0 (their rows are overwritten;
 * as in transformers, the image id need not be inside the vocabulary). */
static int32_t *text_ids(const mllm *m, const int32_t *ids, int64_t n) {
    int32_t *out = aimc_xmalloc((size_t)n * sizeof *out);
    for (int64_t i = 0; i < n; i++) out[i] = ids[i] == m->image_token_id ? 0 : ids[i];
    return out;
}

/* [B, k + T, D]: each sample's image tokens, then its text embeddings. */
static tensor prepend_images(const mllm *m, arena *a, const int32_t *ids, int64_t batch,
                             int64_t len, const tensor *img) {
    int64_t k = m->tokens_per_image, d = m->d_model, full = k + len;
    if (!img || img->shape[0] != batch)
        aimc_die("this BLIP-2 config has no image_token_index, so every sample takes its image "
                 "in front: %lld images for %lld samples",
                 (long long)(img ? img->shape[0] : 0), (long long)batch);
    tensor out = arena_new(a, a->be->act_dtype, batch, full, d);
    tensor o2d = tensor_reshape(&out, 2, (int64_t[]){batch * full, d});
    tensor i2d = tensor_reshape(img, 2, (int64_t[]){batch * k, d});
    size_t mark = a->used;
    tensor text = decoder_embed_tokens(m->lm, a, ids, batch, len);
    tensor t2d = tensor_reshape(&text, 2, (int64_t[]){batch * len, d});
    for (int64_t b = 0; b < batch; b++) {
        tensor dst_i = tensor_slice0(&o2d, b * full, k), src_i = tensor_slice0(&i2d, b * k, k);
        tensor dst_t = tensor_slice0(&o2d, b * full + k, len);
        tensor src_t = tensor_slice0(&t2d, b * len, len);
        op_convert(&dst_i, &src_i);
        op_convert(&dst_t, &src_t);
    }
    a->used = mark;
    return out;
}

tensor mllm_build_inputs(const mllm *m, arena *a, const int32_t *input_ids, int64_t batch,
                         int64_t len, const tensor *image_tokens) {
    AIMC_CHECK(batch > 0 && len > 0, "mllm_build_inputs: empty batch [%lld, %lld]",
               (long long)batch, (long long)len);
    if (image_tokens) check_image_tokens(m, image_tokens);
    if (m->image_token_id < 0) return prepend_images(m, a, input_ids, batch, len, image_tokens);
    int64_t k = m->tokens_per_image, n_img = image_tokens ? image_tokens->shape[0] : 0, count;
    int32_t *rows = image_rows(m, input_ids, batch, len, &count);
    if (count != n_img * k)
        aimc_die("input_ids hold %lld image tokens (id %d), but %lld image%s give %lld "
                 "(%lld per image)",
                 (long long)count, (int)m->image_token_id, (long long)n_img,
                 n_img == 1 ? "" : "s", (long long)(n_img * k), (long long)k);
    int32_t *ids = text_ids(m, input_ids, batch * len);
    tensor out = decoder_embed_tokens(m->lm, a, ids, batch, len);
    free(ids);
    if (count) {
        size_t mark = a->used;
        tensor idx = upload_rows(a, rows, count);
        tensor o2d = tensor_reshape(&out, 2, (int64_t[]){batch * len, m->d_model});
        tensor i2d = tensor_reshape(image_tokens, 2, (int64_t[]){count, m->d_model});
        op_scatter_rows(&o2d, &i2d, &idx);
        a->used = mark;
    }
    free(rows);
    return out;
}

tensor mllm_gather_image_rows(const mllm *m, arena *a, const int32_t *input_ids, int64_t batch,
                              int64_t len, const tensor *x) {
    char s[80];
    int64_t full = mllm_input_len(m, len), k = m->tokens_per_image, count;
    AIMC_CHECK(x->ndim == 3 && x->shape[0] == batch && x->shape[1] == full,
               "mllm_gather_image_rows: x has shape %s, expected [%lld, %lld, C]",
               tensor_shape_str(x, s, sizeof s), (long long)batch, (long long)full);
    int32_t *rows = image_rows(m, input_ids, batch, len, &count);
    if (count % k)
        aimc_die("input_ids hold %lld image tokens (id %d), not a multiple of %lld per image",
                 (long long)count, (int)m->image_token_id, (long long)k);
    int64_t c = x->shape[2], n_img = count / k;
    tensor out = arena_new(a, x->dt, n_img > 0 ? n_img : 1, k, c);
    if (count) {
        size_t mark = a->used;
        tensor idx = upload_rows(a, rows, count);
        tensor o2d = tensor_reshape(&out, 2, (int64_t[]){count, c});
        tensor x2d = tensor_reshape(x, 2, (int64_t[]){batch * full, c});
        op_gather_rows(&o2d, &x2d, &idx);
        a->used = mark;
    }
    free(rows);
    out.shape[0] = n_img;
    return out;
}
