/* Inference prompts, templates, projector loading and the commands' session (infer.h). */
#include "infer.h"
#include "../kernels/check.h"
#include "aim.h"
#include "backend.h"
#include "bank.h"
#include "checkpoint.h"
#include "config.h"
#include "mllm.h"
#include "safetensors.h"
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A copy of s, or of "" when s is NULL. */
static char *dup_str(const char *s) { return aimc_strdup(s ? s : ""); }

/* ---- modes ---------------------------------------------------------------------- */

int infer_mode_parse(const char *s) {
    if (!strcmp(s, "aim")) return INFER_AIM;
    if (!strcmp(s, "icl")) return INFER_ICL;
    if (!strcmp(s, "zero-shot") || !strcmp(s, "zero_shot") || !strcmp(s, "zeroshot")) return INFER_ZERO_SHOT;
    return -1;
}

const char *infer_mode_name(infer_mode mode) {
    switch (mode) {
    case INFER_AIM: return "aim";
    case INFER_ICL: return "icl";
    default: return "zero-shot";
    }
}

/* ---- templates -------------------------------------------------------------------- */

#define HATEFUL_QUERY "is an image with: '{prompt}' written on it. Is it hateful? Answer:"

static const char *const builtin_templates[][3] = {
    {"caption", "Output:", "Output:{answer}"},
    {"vqa", "Question:{prompt} Short answer:", "Question:{prompt} Short answer:{answer}"},
    {"hateful", HATEFUL_QUERY, HATEFUL_QUERY " {answer}"},
    {"raw", "{prompt}", "{answer}"},
};

static infer_template *template_slot(infer_templates *ts, const char *name) {
    for (int i = 0; i < ts->n; i++)
        if (!strcmp(ts->t[i].name, name)) return &ts->t[i];
    ts->t = realloc(ts->t, (size_t)(ts->n + 1) * sizeof *ts->t);
    AIMC_CHECK(ts->t, "infer: out of host memory");
    infer_template *t = &ts->t[ts->n++];
    t->name = dup_str(name);
    t->query = dup_str("{prompt}");
    t->demo = dup_str("{answer}");
    return t;
}

static void set_text(char **dst, const char *value) {
    free(*dst);
    *dst = dup_str(value);
}

void infer_templates_default(infer_templates *ts) {
    memset(ts, 0, sizeof *ts);
    for (size_t i = 0; i < sizeof builtin_templates / sizeof builtin_templates[0]; i++) {
        infer_template *t = template_slot(ts, builtin_templates[i][0]);
        set_text(&t->query, builtin_templates[i][1]);
        set_text(&t->demo, builtin_templates[i][2]);
    }
}

int infer_templates_load(infer_templates *ts, const char *path, char *err, size_t errlen) {
    config_file cf;
    if (config_load(path, &cf, err, errlen)) return -1;
    for (int i = 0; i < cf.n; i++) {
        char name[256];
        snprintf(name, sizeof name, "%s", cf.entries[i].key);
        for (char *c = name; *c; c++)
            if (*c == '-') *c = '_';
        size_t n = strlen(name);
        int demo = n > 5 && !strcmp(name + n - 5, "_demo");
        if (demo) name[n - 5] = 0;
        infer_template *t = template_slot(ts, name);
        set_text(demo ? &t->demo : &t->query, cf.entries[i].value);
    }
    config_free(&cf);
    return 0;
}

void infer_templates_free(infer_templates *ts) {
    for (int i = 0; i < ts->n; i++) free(ts->t[i].name), free(ts->t[i].query), free(ts->t[i].demo);
    free(ts->t);
    memset(ts, 0, sizeof *ts);
}

const infer_template *infer_template_find(const infer_templates *ts, const char *name) {
    for (int i = 0; i < ts->n; i++)
        if (!strcmp(ts->t[i].name, name)) return &ts->t[i];
    return NULL;
}

char *infer_template_fill(const char *tpl, const char *prompt, const char *answer) {
    const char *keys[2] = {"{prompt}", "{answer}"}, *vals[2] = {prompt ? prompt : "", answer ? answer : ""};
    size_t cap = strlen(tpl) + 1;
    for (const char *s = tpl; *s; s++)
        for (int k = 0; k < 2; k++)
            if (!strncmp(s, keys[k], strlen(keys[k]))) cap += strlen(vals[k]);
    char *out = aimc_xcalloc(cap, 1), *o = out;
    for (const char *s = tpl; *s;) {
        int k = !strncmp(s, keys[0], strlen(keys[0])) ? 0 : !strncmp(s, keys[1], strlen(keys[1])) ? 1 : -1;
        if (k < 0) {
            *o++ = *s++;
            continue;
        }
        memcpy(o, vals[k], strlen(vals[k]));
        o += strlen(vals[k]);
        s += strlen(keys[k]);
    }
    *o = 0;
    return out;
}

/* ---- items -------------------------------------------------------------------------- */

static int load_pixels(episode_item *it, const char *path, const preprocess_config *pp, char *err, size_t errlen) {
    image_rgb img;
    if (image_load(path, NULL, &img, err, errlen)) return -1;
    int64_t h, w;
    char why[512];
    int rc = preprocess_output_size(pp, img.width, img.height, &h, &w, why, sizeof why);
    if (!rc) {
        it->pixels = aimc_xcalloc((size_t)(3 * h * w), sizeof *it->pixels);
        it->height = h, it->width = w;
        rc = preprocess_image(pp, &img, it->pixels, why, sizeof why);
    }
    image_free(&img);
    return rc ? aimc_set_err(err, errlen, "%s: %s", path, why) : 0;
}

static int tokenize(episode_item *it, const char *text, const tokenizer *tok, char *err, size_t errlen) {
    tok_ids ids = {0};
    tokenizer_encode_opts o = {.add_special = 0, .max_length = -1};
    if (tokenizer_encode(tok, text, strlen(text), &o, &ids, err, errlen)) return -1;
    it->tokens = aimc_xcalloc((size_t)ids.n, sizeof *it->tokens);
    if (ids.n) memcpy(it->tokens, ids.ids, (size_t)ids.n * sizeof *ids.ids);
    it->n_tokens = ids.n;
    tok_ids_free(&ids);
    return 0;
}

int infer_item_load(episode_item *it, const char *image_path, const char *text, const tokenizer *tok,
                    const preprocess_config *pp, const char *source, char *err, size_t errlen) {
    memset(it, 0, sizeof *it);
    it->source = dup_str(source);
    if ((image_path && load_pixels(it, image_path, pp, err, errlen)) || tokenize(it, text ? text : "", tok, err, errlen)) {
        episode_item_free(it);
        return -1;
    }
    return 0;
}

/* ---- prompt layout ----------------------------------------------------------------------- */

typedef enum { SEG_BOS, SEG_IMAGE, SEG_TEXT, SEG_FUSED } seg_kind;

typedef struct seg {
    seg_kind kind;
    const infer_demo *demo;   /* SEG_FUSED */
    const episode_item *item; /* SEG_IMAGE, SEG_TEXT */
    int64_t n;                /* positions */
} seg;

/* unit(x): LLaVA [IMG][text], BLIP-2 [IMG][BOS][text]. */
static int plan_unit(const mllm *m, const episode_item *it, seg *s) {
    int n = 0;
    s[n++] = (seg){.kind = SEG_IMAGE, .item = it, .n = mllm_tokens_per_image(m)};
    if (mllm_native_layout(m) == MLLM_LAYOUT_IMAGE_BOS) s[n++] = (seg){.kind = SEG_BOS, .n = 1};
    s[n++] = (seg){.kind = SEG_TEXT, .item = it, .n = it->n_tokens};
    return n;
}

/* The segments of a prompt (at most 1 + 3 (k + 1)). */
static int plan_prompt(const mllm *m, infer_mode mode, const infer_demo *demos, int k, const episode_item *query,
                       seg *s) {
    int n = 0;
    if (mllm_native_layout(m) == MLLM_LAYOUT_BOS_IMAGE) s[n++] = (seg){.kind = SEG_BOS, .n = 1};
    for (int i = 0; mode != INFER_ZERO_SHOT && i < k; i++) {
        if (mode == INFER_AIM) s[n++] = (seg){.kind = SEG_FUSED, .demo = &demos[i], .n = demos[i].item->n_tokens};
        else n += plan_unit(m, demos[i].item, s + n);
    }
    return n + plan_unit(m, query, s + n);
}

static seg *plan_alloc(int k) { return aimc_xcalloc((size_t)(4 + 3 * (k > 0 ? k : 0)), sizeof(seg)); }

static int64_t plan_len(const seg *s, int n) {
    int64_t len = 0;
    for (int i = 0; i < n; i++) len += s[i].n;
    return len;
}

int64_t infer_prompt_len(const mllm *m, infer_mode mode, const infer_demo *demos, int k, const episode_item *query) {
    seg *s = plan_alloc(k);
    int64_t len = plan_len(s, plan_prompt(m, mode, demos, k, query, s));
    free(s);
    return len;
}

/* ---- segment embeddings ---------------------------------------------------------------------- */

static tensor as_rows(const tensor *x) {
    return tensor_reshape(x, 2, (int64_t[]){tensor_rows_count(x), tensor_cols(x)});
}

static tensor image_rows(const mllm *m, arena *a, const episode_item *it) {
    if (!it->pixels || it->height < 1 || it->width < 1)
        aimc_die("%s: no image (an ICL demonstration and the query need one)", it->source ? it->source : "item");
    tensor px = tensor_wrap(it->pixels, DT_F32, backend_cpu(), 4, (int64_t[]){1, 3, it->height, it->width});
    tensor img = mllm_image_tokens(m, a, &px);
    return as_rows(&img);
}

/* A bank's host f32 rows on the backend in the act dtype. */
static tensor upload_rows(arena *a, const float *rows, int64_t n, int64_t d) {
    tensor f = arena_new(a, DT_F32, n, d);
    a->be->upload(f.data, rows, (size_t)(n * d) * sizeof *rows);
    if (a->be->act_dtype == DT_F32) return f;
    tensor x = arena_new(a, a->be->act_dtype, n, d);
    op_convert(&x, &f);
    return x;
}

static tensor fused_rows(const infer_model *im, arena *a, const infer_demo *d) {
    if (!im->proj) aimc_die("aim mode with demonstrations needs a projector (--projector)");
    if (d->item->n_tokens < 1)
        aimc_die("demonstration %s has no text tokens", d->item->source ? d->item->source : "?");
    if (d->hidden) {
        tensor h = upload_rows(a, d->hidden, d->item->n_tokens, mllm_d_model(im->m));
        return projector_forward(im->proj, a, &h, NULL);
    }
    aim_model am = {.mllm = im->m, .proj = im->proj, .layer = im->layer};
    return aim_fuse_demo(&am, a, d->item, NULL);
}

static tensor segment_rows(const infer_model *im, arena *a, const seg *s) {
    const decoder *lm = mllm_decoder(im->m);
    switch (s->kind) {
    case SEG_BOS: {
        int32_t bos = mllm_bos_id(im->m);
        tensor e = decoder_embed_tokens(lm, a, &bos, 1, 1);
        return as_rows(&e);
    }
    case SEG_TEXT: {
        tensor e = decoder_embed_tokens(lm, a, s->item->tokens, 1, s->n);
        return as_rows(&e);
    }
    case SEG_IMAGE: return image_rows(im->m, a, s->item);
    default: return fused_rows(im, a, s->demo);
    }
}

/* Embeddings of the planned segments, [1, T, D]. */
static tensor build_segments(const infer_model *im, arena *a, const seg *s, int n) {
    int64_t len = plan_len(s, n), at = 0;
    tensor x = arena_new(a, a->be->act_dtype, 1, len, mllm_d_model(im->m));
    tensor rows = as_rows(&x);
    for (int i = 0; i < n; i++) {
        if (s[i].n == 0) continue;
        size_t mark = a->used;
        tensor src = segment_rows(im, a, &s[i]);
        AIMC_CHECK(tensor_rows_count(&src) == s[i].n, "infer: segment %d has %lld rows, planned %lld", i,
                   (long long)tensor_rows_count(&src), (long long)s[i].n);
        tensor dst = tensor_slice0(&rows, at, s[i].n);
        op_convert(&dst, &src);
        a->used = mark;
        at += s[i].n;
    }
    return x;
}

tensor infer_build_prompt(const infer_model *im, arena *a, infer_mode mode, const infer_demo *demos, int k,
                          const episode_item *query) {
    seg *s = plan_alloc(k);
    int n = plan_prompt(im->m, mode, demos, k, query, s);
    tensor x = build_segments(im, a, s, n);
    free(s);
    return x;
}

tensor infer_demo_hidden(const infer_model *im, arena *a, const episode_item *demo) {
    if (demo->n_tokens < 1) aimc_die("demonstration %s has no text tokens", demo->source ? demo->source : "?");
    int64_t d = mllm_d_model(im->m), n = demo->n_tokens;
    tensor out = arena_new(a, a->be->act_dtype, n, d);
    size_t mark = a->used;
    seg s[4];
    int ns = plan_prompt(im->m, INFER_ZERO_SHOT, NULL, 0, demo, s);
    tensor x = build_segments(im, a, s, ns);
    decoder_fwd_opts o = {.want_hidden = 1, .hidden_layer = im->layer, .pos_mode = DEC_POS_ARANGE};
    decoder_pass p;
    decoder_forward(mllm_decoder(im->m), a, &x, NULL, &o, &p);
    tensor h = as_rows(&p.hidden);
    tensor text = tensor_slice0(&h, tensor_rows_count(&h) - n, n); /* the text is last in native() */
    op_convert(&out, &text);
    decoder_pass_release(&p);
    a->used = mark;
    return out;
}

float *infer_download_f32(arena *a, const tensor *t) {
    size_t mark = a->used;
    tensor f = *t;
    if (t->dt != DT_F32) {
        f = arena_tensor(a, DT_F32, t->ndim, t->shape);
        op_convert(&f, t);
    }
    float *host = aimc_xcalloc((size_t)tensor_numel(t), sizeof *host);
    a->be->download(host, f.data, (size_t)tensor_numel(t) * sizeof *host);
    a->used = mark;
    return host;
}

/* ---- memory ------------------------------------------------------------------------------------ */

size_t infer_arena_bytes(const mllm *m, int64_t prompt_len, int64_t max_new, int num_beams) {
    const decoder_config *c = &mllm_decoder(m)->cfg;
    int64_t width = 12 * c->hidden + 4 * c->ffn + 4 * c->heads * c->head_dim;
    size_t lm = (size_t)(prompt_len * width) * 4 * 2;
    size_t beams = (size_t)num_beams * ((size_t)c->vocab * 8 + (size_t)width * 4 +
                                        (size_t)((prompt_len + max_new) * c->kv_heads * c->head_dim) * 4);
    size_t vision = 0;
    if (m->vision) {
        const vit_model *v = m->vision;
        vision = (size_t)(v->seq_len * (12 * v->enc.dim + 3 * v->enc.mlp_dim +
                                        2 * v->channels * v->patch_size * v->patch_size)) * 4;
    }
    size_t need = lm + beams + 2 * vision + (size_t)(prompt_len * c->hidden) * 8;
    return need + need / 2 + ((size_t)64 << 20);
}

/* ---- projectors ------------------------------------------------------------------------------------ */

/* The value of a `key=value` word of a one-line description. */
static int word_value(const char *text, const char *key, char *out, size_t n) {
    size_t klen = strlen(key);
    for (const char *s = text; *s;) {
        s += strspn(s, " \t\n");
        size_t len = strcspn(s, " \t\n");
        if (len > klen && !strncmp(s, key, klen) && s[klen] == '=') {
            snprintf(out, n, "%.*s", (int)(len - klen - 1), s + klen + 1);
            return 1;
        }
        s += len;
    }
    return 0;
}

static int parse_i64(const char *s, int64_t *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end) return 0;
    *out = v;
    return 1;
}

int infer_check_backbone(const char *recorded, const mllm *m, const char *what, char *err, size_t errlen) {
    static const char *const keys[] = {"arch", "lm", "d_model", "layers", "vocab", "image_tokens", "weights"};
    char mine[512], want[256], have[256];
    bank_backbone_text(m, mine, sizeof mine);
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        if (!word_value(recorded, keys[i], want, sizeof want) || !word_value(mine, keys[i], have, sizeof have)) continue;
        if (strcmp(want, have))
            return aimc_set_err(err, errlen,
                                "%s was made for another backbone: %s=%s there, %s=%s in this model (%s)",
                                what,
                                keys[i], want, keys[i], have, recorded);
    }
    return 0;
}

/* The recorded aggregation layer: the backbone's "layer=" word, else a
 * "layer" line of the run configuration. */
static void ckpt_layer(const ckpt_file *f, infer_projector_meta *meta) {
    char v[64];
    if (word_value(f->backbone_text, "layer", v, sizeof v) && parse_i64(v, &meta->layer)) {
        meta->has_layer = 1;
        return;
    }
    config_file cf;
    char err[256];
    if (config_parse(f->config_text, "config", &cf, err, sizeof err)) return;
    const config_entry *e = config_find(&cf, "layer");
    if (e && parse_i64(e->value, &meta->layer)) meta->has_layer = 1;
    config_free(&cf);
}

static int load_checkpoint(projector *p, const backend *be, const char *path, infer_projector_meta *meta,
                           char *err, size_t errlen) {
    if (ckpt_resolve(path, meta->source, sizeof meta->source, err, errlen)) return -1;
    ckpt_file *f = ckpt_open(meta->source, NULL, err, errlen);
    if (!f) return -1;
    projector_config cfg;
    char why[512];
    int rc = projector_config_parse(f->projector_text, &cfg, why, sizeof why);
    if (rc) aimc_set_err(err, errlen, "%s: projector description '%s': %s", meta->source, f->projector_text,
                         why);
    if (!rc) {
        projector_init(p, be, &cfg);
        rc = ckpt_projector_restore(f, p, 0, err, errlen);
        if (rc) projector_free(p);
    }
    if (!rc) {
        snprintf(meta->backbone_text, sizeof meta->backbone_text, "%s", f->backbone_text);
        ckpt_layer(f, meta);
    }
    ckpt_close(f);
    return rc;
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

/* The projector configuration of an export JSON. */
static int json_projector_config(const cJSON *o, projector_config *cfg, const char *where, char *err, size_t errlen) {
    char why[512];
    const cJSON *desc = cJSON_GetObjectItemCaseSensitive(o, "projector_config");
    if (cJSON_IsString(desc)) {
        if (projector_config_parse(desc->valuestring, cfg, why, sizeof why))
            return aimc_set_err(err, errlen, "%s: projector_config '%s': %s", where, desc->valuestring, why);
        return 0;
    }
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(o, "projector_type");
    const cJSON *din = cJSON_GetObjectItemCaseSensitive(o, "d_in"), *dout = cJSON_GetObjectItemCaseSensitive(o, "d_out");
    if (!cJSON_IsString(type) || !cJSON_IsNumber(din) || !cJSON_IsNumber(dout))
        return aimc_set_err(err, errlen, "%s: needs projector_config, or projector_type, d_in and d_out",
                            where);
    int t = projector_type_parse(type->valuestring);
    if (t < 0) return aimc_set_err(err, errlen, "%s: unknown projector_type '%s'", where, type->valuestring);
    const cJSON *hid = cJSON_GetObjectItemCaseSensitive(o, "d_hidden"), *eps = cJSON_GetObjectItemCaseSensitive(o, "ln_eps");
    *cfg = (projector_config){.type = (projector_type)t, .d_in = (int64_t)din->valuedouble,
                             .d_out = (int64_t)dout->valuedouble,
                             .d_hidden = cJSON_IsNumber(hid) ? (int64_t)hid->valuedouble : 0,
                             .ln_eps = cJSON_IsNumber(eps) ? (float)eps->valuedouble : 1e-5f};
    if (projector_config_check(cfg, why, sizeof why)) return aimc_set_err(err, errlen, "%s: %s", where, why);
    return 0;
}

static void json_meta(const cJSON *o, infer_projector_meta *meta) {
    const cJSON *layer = cJSON_GetObjectItemCaseSensitive(o, "layer");
    if (cJSON_IsNumber(layer)) meta->has_layer = 1, meta->layer = (int64_t)layer->valuedouble;
    if (cJSON_IsString(layer)) meta->has_layer = parse_i64(layer->valuestring, &meta->layer);
    const cJSON *bb = cJSON_GetObjectItemCaseSensitive(o, "backbone_config");
    if (cJSON_IsString(bb)) snprintf(meta->backbone_text, sizeof meta->backbone_text, "%s", bb->valuestring);
}

/* Uploads every parameter of p from the safetensors file (shapes must match). */
static int upload_params(projector *p, const char *path, char *err, size_t errlen) {
    st_file *st = st_open(path, err, errlen);
    if (!st) return -1;
    int rc = 0;
    for (int i = 0; i < p->n_params && !rc; i++) {
        projector_param *pp = &p->params[i];
        const st_tensor *t = st_find(st, pp->name);
        int ok = t && t->ndim == pp->value.ndim;
        for (int d = 0; ok && d < t->ndim; d++) ok = t->shape[d] == pp->value.shape[d];
        char shape[80];
        if (!ok) {
            rc = aimc_set_err(err, errlen, "%s: tensor '%s' %s (the projector needs %s)", path, pp->name,
                              t ? "has another shape" : "is missing", tensor_shape_str(&pp->value, shape,
                              sizeof shape));
            break;
        }
        float *host = aimc_xcalloc((size_t)tensor_numel(&pp->value), sizeof *host);
        char why[256];
        if (st_read_f32(t, host, why, sizeof why)) rc = aimc_set_err(err, errlen, "%s: '%s': %s", path,
                                                                     pp->name, why);
        else p->be->upload(pp->value.data, host, tensor_bytes(&pp->value));
        free(host);
    }
    st_close(st);
    return rc;
}

/* dir of path + "/" + name (name as is when absolute). */
static void sibling_path(const char *path, const char *name, char *out, size_t n) {
    const char *slash = strrchr(path, '/');
    if (name[0] == '/' || !slash) snprintf(out, n, "%s", name);
    else snprintf(out, n, "%.*s/%s", (int)(slash - path), path, name);
}

/* An export: the JSON (json_path) and its weights (weights_path, or the JSON's "weights"). */
static int load_export(projector *p, const backend *be, const char *json_path, const char *weights_path,
                       infer_projector_meta *meta, char *err, size_t errlen) {
    char *text = aimc_read_file(json_path, AIMC_MAX_CONFIG_BYTES, NULL, err, errlen);
    if (!text) return aimc_set_err(err + strlen(err), errlen - strlen(err),
                                   " (an exported projector needs its JSON description)");
    cJSON *o = cJSON_Parse(text);
    free(text);
    if (!o) return aimc_set_err(err, errlen, "%s: not valid JSON", json_path);
    projector_config cfg;
    int rc = json_projector_config(o, &cfg, json_path, err, errlen);
    char weights[4096];
    const cJSON *w = cJSON_GetObjectItemCaseSensitive(o, "weights");
    if (weights_path) snprintf(weights, sizeof weights, "%s", weights_path);
    else if (cJSON_IsString(w)) sibling_path(json_path, w->valuestring, weights, sizeof weights);
    else if (!rc) rc = aimc_set_err(err, errlen, "%s: no \"weights\" file named", json_path);
    const cJSON *format = cJSON_GetObjectItemCaseSensitive(o, "weights_format");
    if (!rc && cJSON_IsString(format) && !strcmp(format->valuestring, "bin")) { /* aimc export --format bin */
        cJSON_Delete(o);
        return load_checkpoint(p, be, weights, meta, err, errlen);
    }
    if (!rc) {
        json_meta(o, meta);
        snprintf(meta->source, sizeof meta->source, "%s", weights);
        projector_init(p, be, &cfg);
        rc = upload_params(p, weights, err, errlen);
        if (rc) projector_free(p);
    }
    cJSON_Delete(o);
    return rc;
}

int infer_projector_load(projector *p, const backend *be, const char *path, infer_projector_meta *meta, char *err,
                         size_t errlen) {
    memset(meta, 0, sizeof *meta);
    if (ends_with(path, ".json")) return load_export(p, be, path, NULL, meta, err, errlen);
    if (ends_with(path, ".safetensors")) {
        char json[4200];
        snprintf(json, sizeof json, "%.*s.json", (int)(strlen(path) - strlen(".safetensors")), path);
        return load_export(p, be, json, path, meta, err, errlen);
    }
    return load_checkpoint(p, be, path, meta, err, errlen);
}

/* ---- sessions ------------------------------------------------------------------------------------ */

void infer_session_load_model(infer_session *s, const char *model_dir, const char *device) {
    char err[4096];
    s->model_dir = model_dir;
    s->be = backend_by_name(device);
    s->m = mllm_load(model_dir, s->be, s->be->act_dtype);
    s->tok = tokenizer_load(model_dir, err, sizeof err);
    if (!s->tok) aimc_die("%s", err);
    if (preprocess_config_load(&s->pp, model_dir, err, sizeof err)) aimc_die("%s", err);
}

void infer_session_load_projector(infer_session *s, const char *path) {
    char err[4096];
    if (infer_projector_load(&s->proj, s->be, path, &s->meta, err, sizeof err)) aimc_die("%s", err);
    s->has_proj = 1;
    int64_t d = mllm_d_model(s->m);
    if (s->proj.cfg.d_in != d || s->proj.cfg.d_out != d)
        aimc_die("%s: the projector maps %lld -> %lld, but %s has hidden size %lld", s->meta.source,
                 (long long)s->proj.cfg.d_in, (long long)s->proj.cfg.d_out, s->model_dir, (long long)d);
    if (s->meta.backbone_text[0] && infer_check_backbone(s->meta.backbone_text, s->m, s->meta.source, err, sizeof err))
        aimc_die("%s", err);
}

void infer_session_open_bank(infer_session *s, const char *path) {
    char err[4096];
    s->bk = bank_open(path, err, sizeof err);
    if (!s->bk) aimc_die("%s", err);
}

int infer_layer_arg_ok(const char *arg) {
    if (!strcmp(arg, "auto")) return 1;
    char *end;
    strtoll(arg, &end, 10); /* out of range is left to decoder_hidden_index's message */
    return end != arg && !*end;
}

void infer_session_resolve_layer(infer_session *s, const char *layer_arg, infer_mode mode) {
    const decoder *lm = mllm_decoder(s->m);
    int64_t layer = -1;
    if (strcmp(layer_arg, "auto")) layer = strtoll(layer_arg, NULL, 10);
    else if (s->has_proj && s->meta.has_layer) layer = s->meta.layer;
    else if (s->bk) layer = s->bk->layer;
    s->layer = decoder_hidden_index(lm, layer);
    if (s->has_proj && s->meta.has_layer && decoder_hidden_index(lm, s->meta.layer) != s->layer)
        aimc_die("%s was trained on layer %lld, but layer %lld is asked for", s->meta.source,
                 (long long)decoder_hidden_index(lm, s->meta.layer), (long long)s->layer);
    char err[4096], text[512];
    if (s->bk && mode == INFER_AIM &&
        bank_check_model(s->bk, bank_backbone_text(s->m, text, sizeof text), s->layer, err, sizeof err))
        aimc_die("%s", err);
}

infer_model infer_session_model(infer_session *s) {
    return (infer_model){.m = s->m, .proj = s->has_proj ? &s->proj : NULL, .layer = s->layer};
}

void infer_session_gen_config(const infer_session *s, gen_config *g) {
    gen_config_default(g);
    g->eos_id = tokenizer_special_id(s->tok, "eos_token");
    g->tok = s->tok;
}

void infer_session_arena(const infer_session *s, arena *a, int64_t arena_mb, int64_t prompt_len, int64_t max_new,
                         int num_beams) {
    size_t bytes = arena_mb > 0 ? (size_t)arena_mb << 20 : infer_arena_bytes(s->m, prompt_len, max_new, num_beams);
    arena_init(a, s->be, bytes);
}

void infer_session_free(infer_session *s) {
    if (s->has_proj) projector_free(&s->proj);
    bank_close(s->bk);
    tokenizer_free(s->tok);
    mllm_free(s->m);
    memset(s, 0, sizeof *s);
}
