/* The pieces of aimc eval (eval.h). */
#include "eval.h"
#include "../kernels/check.h"
#include "clip.h"
#include "generate.h"
#include "safetensors.h"
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- selection ------------------------------------------------------------------ */

static uint64_t splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

uint64_t eval_query_seed(uint64_t seed, const char *query_id) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a of the id */
    for (const unsigned char *s = (const unsigned char *)query_id; *s; s++) h = (h ^ *s) * 1099511628211ull;
    uint64_t state = seed ^ h;
    return splitmix64(&state);
}

/* Train items other than the query: n, minus the one with the query's id. */
static int64_t available(const eval_set *train, const char *query_id, int64_t *excluded) {
    *excluded = -1;
    for (int64_t i = 0; i < train->n && *excluded < 0; i++)
        if (!strcmp(train->items[i].id, query_id)) *excluded = i;
    return train->n - (*excluded >= 0);
}

static int too_few(int k, int64_t avail, const char *query_id, char *err, size_t errlen) {
    return aimc_set_err(err, errlen,
                        "%d demonstrations asked for, but the train split has only %lld item%s besides query '%s'", k,
                        (long long)avail, avail == 1 ? "" : "s", query_id);
}

static int chosen(const int64_t *out, int n, int64_t j) {
    for (int i = 0; i < n; i++)
        if (out[i] == j) return 1;
    return 0;
}

int eval_select_random(const eval_set *train, const char *query_id, int k, uint64_t seed, int64_t *out, char *err,
                       size_t errlen) {
    int64_t excluded, avail = available(train, query_id, &excluded);
    if (k > avail) return too_few(k, avail, query_id, err, errlen);
    uint64_t state = eval_query_seed(seed, query_id);
    /* rejection sampling: k is small next to the split (it never exceeds
     * the available items, so this ends; coupon-collector time at worst) */
    for (int got = 0; got < k;) {
        int64_t j = (int64_t)(splitmix64(&state) % (uint64_t)train->n);
        if (j != excluded && !chosen(out, got, j)) out[got++] = j;
    }
    return 0;
}

static double dot(const float *a, const float *b, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

int eval_select_nearest(const eval_set *train, const float *train_emb, const float *query_emb, int64_t dim,
                        const char *query_id, int k, int64_t *out, char *err, size_t errlen) {
    int64_t excluded, avail = available(train, query_id, &excluded);
    if (k > avail) return too_few(k, avail, query_id, err, errlen);
    if (k == 0) return 0;
    double *best = aimc_xcalloc((size_t)k, sizeof *best); /* best[0] the most similar */
    int n = 0;
    for (int64_t i = 0; i < train->n; i++) {
        if (i == excluded) continue;
        double s = dot(train_emb + i * dim, query_emb, dim);
        if (n == k && !(s > best[k - 1])) continue; /* ties keep the lower index */
        int at = n < k ? n++ : k - 1;
        while (at > 0 && s > best[at - 1]) best[at] = best[at - 1], out[at] = out[at - 1], at--;
        best[at] = s, out[at] = i;
    }
    for (int i = 0; i < k / 2; i++) { /* least similar first */
        int64_t t = out[i];
        out[i] = out[k - 1 - i], out[k - 1 - i] = t;
    }
    free(best);
    return 0;
}

/* ---- texts ----------------------------------------------------------------------- */

const char *eval_hateful_answer(int label) { return label == 1 ? "yes" : "no"; }

char *eval_strip(const char *s) {
    while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r') s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r')) n--;
    char *out = aimc_xmalloc(n + 1);
    memcpy(out, s, n);
    out[n] = 0;
    return out;
}

char *eval_demo_text(eval_task task, const infer_template *t, const eval_item *it) {
    if (task == EVAL_TASK_HATEFUL) return infer_template_fill(t->demo, it->text, eval_hateful_answer(it->label));
    if (task == EVAL_TASK_VQA) return infer_template_fill(t->demo, it->text, it->n_answers ? it->answers[0] : "");
    char *caption = eval_strip(it->n_answers ? it->answers[0] : "");
    char *text = infer_template_fill(t->demo, NULL, caption);
    free(caption);
    return text;
}

char *eval_query_text(eval_task task, const infer_template *t, const eval_item *it) {
    return infer_template_fill(t->query, task == EVAL_TASK_CAPTION ? NULL : it->text, NULL);
}

/* s cut before the earliest occurrence of any of the n words. */
static void cut_before(char *s, const char *const *words, int n) {
    char *first = NULL;
    for (int i = 0; i < n; i++) {
        char *p = strstr(s, words[i]);
        if (p && (!first || p < first)) first = p;
    }
    if (first) *first = 0;
}

char *eval_postprocess(eval_task task, const char *generated) {
    char *s = aimc_strdup(generated ? generated : "");
    if (task == EVAL_TASK_VQA) {
        static const char *const stops[] = {"Question", "Answer", "Short"}, *const comma[] = {", "};
        cut_before(s, stops, 3);
        cut_before(s, comma, 1);
    } else if (task == EVAL_TASK_CAPTION) {
        static const char *const stops[] = {"Output"};
        cut_before(s, stops, 1);
        char *o = s;
        for (const char *p = s; *p; p++)
            if (*p != '"') *o++ = *p;
        *o = 0;
    }
    char *out = eval_strip(s);
    free(s);
    return out;
}

/* ---- answer scoring ---------------------------------------------------------------- */

static int encode(const tokenizer *tok, const char *text, tok_ids *out, char *err, size_t errlen) {
    tokenizer_encode_opts o = {.add_special = 0, .max_length = -1};
    return tokenizer_encode(tok, text, strlen(text), &o, out, err, errlen);
}

/* The demo form's text after its query form ("demo" minus the query text
 * when that is its prefix, else the answer with a space in front). */
static char *answer_suffix(const char *query, const char *demo, const char *answer) {
    size_t n = strlen(query);
    if (!strncmp(demo, query, n)) return aimc_strdup(demo + n);
    size_t len = strlen(answer) + 2;
    char *s = aimc_xmalloc(len);
    snprintf(s, len, " %s", answer);
    return s;
}

int eval_answer_tokens(const tokenizer *tok, const infer_template *t, const eval_item *query, const char *answer,
                       tok_ids *out, char *err, size_t errlen) {
    char *q = infer_template_fill(t->query, query->text, NULL), *d = infer_template_fill(t->demo, query->text, answer);
    tok_ids qi = {0}, di = {0};
    int rc = encode(tok, q, &qi, err, errlen) || encode(tok, d, &di, err, errlen) ? -1 : 0;
    int prefix = !rc && di.n > qi.n && !memcmp(di.ids, qi.ids, (size_t)qi.n * sizeof *qi.ids);
    out->n = 0;
    if (!rc && prefix) { /* the usual case: the answer's tokens as they follow the prompt */
        for (int64_t i = qi.n; i < di.n; i++) {
            out->ids = aimc_grow(out->ids, &out->cap, out->n + 1, sizeof *out->ids, 8);
            out->ids[out->n++] = di.ids[i];
        }
    } else if (!rc) { /* the tokenizer merged across the boundary: the suffix alone */
        char *suffix = answer_suffix(q, d, answer);
        rc = encode(tok, suffix, out, err, errlen);
        free(suffix);
    }
    if (!rc && out->n == 0) rc = aimc_set_err(err, errlen, "the answer '%s' has no tokens after the prompt", answer);
    free(q), free(d), tok_ids_free(&qi), tok_ids_free(&di);
    return rc;
}

static size_t cache_bytes(const decoder_cache *c) {
    size_t n = tensor_bytes(&c->mask);
    for (int64_t l = 0; l < c->layers; l++) n += tensor_bytes(&c->k[l]) + tensor_bytes(&c->v[l]);
    return n;
}

/* log p(id) under the logits row [1, 1, V] on the backend. */
static double token_logprob(const tensor *logits, int32_t id, float *row, double *lp) {
    int64_t vocab = logits->shape[2];
    logits->be->download(row, logits->data, (size_t)vocab * sizeof *row);
    gen_log_softmax(row, vocab, NULL, lp);
    return lp[id];
}

void eval_answer_logprobs(const decoder *m, arena *a, const tensor *prompt, const tok_ids *answers, int n_answers,
                          double *sum_out, size_t *cache_bytes_out) {
    int64_t longest = 1, T = prompt->shape[1], vocab = m->cfg.vocab;
    for (int j = 0; j < n_answers; j++) longest = answers[j].n > longest ? answers[j].n : longest;
    size_t mark = a->used;
    decoder_cache cache;
    decoder_cache_init(&cache, m, 1, T + longest, DEC_POS_ARANGE);
    if (cache_bytes_out) *cache_bytes_out = cache_bytes(&cache);
    float *row = aimc_xmalloc((size_t)vocab * sizeof *row);
    double *lp = aimc_xmalloc((size_t)vocab * sizeof *lp);
    tensor prompt_logits = arena_new(a, DT_F32, 1, 1, vocab), logits = arena_new(a, DT_F32, 1, 1, vocab);
    size_t step_mark = a->used;
    decoder_step(m, &cache, a, prompt, NULL, &prompt_logits);
    for (int j = 0; j < n_answers; j++) {
        const tok_ids *ans = &answers[j];
        sum_out[j] = token_logprob(&prompt_logits, ans->ids[0], row, lp);
        for (int64_t i = 1; i < ans->n; i++) {
            tensor e = decoder_embed_tokens(m, a, &ans->ids[i - 1], 1, 1);
            decoder_step(m, &cache, a, &e, NULL, &logits);
            sum_out[j] += token_logprob(&logits, ans->ids[i], row, lp);
            a->used = step_mark;
        }
        /* back to the prompt alone for the next answer: attention reads
         * cache rows [0, len) only, and the next step overwrites the rest */
        cache.len = T;
    }
    free(row), free(lp);
    decoder_cache_free(&cache);
    a->used = mark;
}

double eval_two_class_prob(double lp_first, double lp_second) {
    double hi = lp_first > lp_second ? lp_first : lp_second;
    double lse = hi + log(exp(lp_first - hi) + exp(lp_second - hi));
    return exp(lp_first - lse);
}

/* ---- statistics --------------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double eval_quantile(const double *x, int64_t n, double q) {
    if (n <= 0) return NAN;
    double *s = aimc_xmalloc((size_t)n * sizeof *s);
    memcpy(s, x, (size_t)n * sizeof *s);
    qsort(s, (size_t)n, sizeof *s, cmp_double);
    double pos = q * (double)(n - 1);
    int64_t lo = (int64_t)floor(pos);
    if (lo >= n - 1) lo = n - 1;
    double v = lo + 1 < n ? s[lo] + (s[lo + 1] - s[lo]) * (pos - (double)lo) : s[lo];
    free(s);
    return v;
}

/* ---- retrieval ------------------------------------------------------------------------- */

/* An image decoded and preprocessed into *pixels (malloc'd CHW f32). */
static int load_pixels(const char *path, const preprocess_config *pp, float **pixels, int64_t *h, int64_t *w,
                       char *err, size_t errlen) {
    image_rgb img;
    if (image_load(path, NULL, &img, err, errlen)) return -1;
    char why[512];
    int rc = preprocess_output_size(pp, img.width, img.height, h, w, why, sizeof why);
    if (!rc) {
        *pixels = aimc_xmalloc((size_t)(3 * *h * *w) * sizeof **pixels);
        rc = preprocess_image(pp, &img, *pixels, why, sizeof why);
        if (rc) free(*pixels);
    }
    image_free(&img);
    return rc ? aimc_fail_path(err, errlen, path, "%s", why) : 0;
}

/* One image's unit CLIP embedding into out[proj_dim]. */
static int clip_embed_image(const clip_model *m, arena *a, const preprocess_config *pp, const char *path, float *out,
                            char *err, size_t errlen) {
    float *pixels = NULL;
    int64_t h = 0, w = 0;
    if (load_pixels(path, pp, &pixels, &h, &w, err, errlen)) return -1;
    size_t mark = a->used;
    tensor px = tensor_wrap(pixels, DT_F32, backend_cpu(), 4, (int64_t[]){1, 3, h, w});
    tensor hidden = vit_forward(m->vision, a, &px, -1, 0);
    tensor pooled = vit_pool(m->vision, a, &hidden);
    tensor emb = clip_embed(a, &pooled, &m->visual_proj);
    a->be->download(out, emb.data, (size_t)m->proj_dim * sizeof *out);
    a->used = mark;
    free(pixels);
    return 0;
}

float *eval_clip_embed(const char *clip_dir, const backend *be, const eval_set *set, int64_t *dim, char *err,
                       size_t errlen) {
    preprocess_config pp;
    model_dir *md = model_dir_open(clip_dir, err, errlen);
    if (!md) return NULL;
    if (preprocess_config_load(&pp, clip_dir, err, errlen)) return model_dir_close(md), NULL;
    nn_loader ld = {md, be, be->act_dtype};
    clip_model *m = clip_load(&ld, "");
    *dim = m->proj_dim;
    float *emb = aimc_xmalloc((size_t)(set->n * m->proj_dim) * sizeof *emb);
    const vit_model *v = m->vision;
    arena a;
    arena_init(&a, be, (size_t)(v->seq_len * (12 * v->enc.dim + 3 * v->enc.mlp_dim) * 4 * 2) + ((size_t)32 << 20));
    int rc = 0;
    for (int64_t i = 0; i < set->n && !rc; i++)
        rc = clip_embed_image(m, &a, &pp, set->items[i].image, emb + i * m->proj_dim, err, errlen);
    arena_free(&a);
    clip_free(m);
    model_dir_close(md);
    if (rc) free(emb);
    return rc ? NULL : emb;
}

/* ---- memory ------------------------------------------------------------------------------ */

static size_t file_weight_bytes(const char *path, dtype dt) {
    char err[512];
    st_file *f = st_open(path, err, sizeof err);
    if (!f) return 0;
    size_t total = 0;
    for (int i = 0; i < st_count(f); i++) {
        const st_tensor *t = st_at(f, i);
        int ours = st_to_dtype(t->dtype);
        size_t numel = t->nbytes / st_dtype_size(t->dtype);
        total += numel * (ours == DT_I32 || ours < 0 ? 4 : dtype_size(dt));
    }
    st_close(f);
    return total;
}

size_t eval_weights_bytes(const char *model_dir, dtype dt) {
    DIR *d = opendir(model_dir);
    if (!d) return 0;
    size_t total = 0;
    for (struct dirent *e; (e = readdir(d));) {
        size_t n = strlen(e->d_name), k = strlen(".safetensors");
        /* model.safetensors or model-0000i-of-0000n.safetensors: the weights, not other files */
        if (n <= k || strcmp(e->d_name + n - k, ".safetensors") || strncmp(e->d_name, "model", 5)) continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", model_dir, e->d_name);
        total += file_weight_bytes(path, dt);
    }
    closedir(d);
    return total;
}
