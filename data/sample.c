/* Shard samples -> documents (MMC4-style JSON or LAION-style pairs); see sample.h. */
#include "sample.h"
#include "base64.h"
#include "utf8.h"
#include "../kernels/check.h"
#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- UTF-8 ------------------------------------------------------------ */

/* utf8_seq_len, except that NUL counts as invalid (C strings end there). */
static size_t utf8_seq(const uint8_t *s, size_t n, size_t *bad) {
    if (s[0] != 0) return utf8_seq_len(s, n, bad);
    *bad = 1;
    return 0;
}

int sample_utf8_valid(const char *s, size_t n) {
    const uint8_t *p = (const uint8_t *)s;
    size_t i = 0, bad;
    while (i < n) {
        size_t k = utf8_seq(p + i, n - i, &bad);
        if (!k) return 0;
        i += k;
    }
    return 1;
}

char *sample_utf8_replace(const char *s, size_t n, size_t *out_len) {
    const uint8_t *p = (const uint8_t *)s;
    char *out = malloc(3 * n + 1); /* each bad byte at most becomes 3 bytes */
    if (!out) return NULL;
    size_t i = 0, o = 0, bad;
    while (i < n) {
        size_t k = utf8_seq(p + i, n - i, &bad);
        if (k) {
            memcpy(out + o, p + i, k);
            o += k, i += k;
        } else {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3, i += bad;
        }
    }
    out[o] = 0;
    if (out_len) *out_len = o;
    return out;
}

static int is_space(uint8_t c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

/* A trimmed, checked copy of text (NULL with SKIP_BAD_TEXT when invalid
 * under the skip policy; *why tells). */
static char *clean_text(const char *text, size_t n, sample_utf8_policy policy, skip_reason *why) {
    while (n && is_space((uint8_t)text[0])) text++, n--;
    while (n && is_space((uint8_t)text[n - 1])) n--;
    *why = SKIP_BAD_TEXT;
    if (sample_utf8_valid(text, n)) {
        char *d = aimc_xmalloc(n + 1);
        memcpy(d, text, n), d[n] = 0;
        return d;
    }
    if (policy != SAMPLE_UTF8_REPLACE) return NULL;
    char *d = sample_utf8_replace(text, n, NULL);
    AIMC_CHECK(d, "out of memory");
    return d;
}

/* ---- formats ---------------------------------------------------------- */

static const char *const image_exts[] = {"jpg", "jpeg", "png", "webp"};

static const shard_member *laion_image_member(const shard_sample *s) {
    for (size_t i = 0; i < sizeof image_exts / sizeof image_exts[0]; i++) {
        const shard_member *m = shard_sample_member(s, image_exts[i]);
        if (m) return m;
    }
    return NULL;
}

sample_format sample_detect_format(const shard_sample *s) {
    return shard_sample_member(s, "txt") || laion_image_member(s) ? SAMPLE_FORMAT_LAION : SAMPLE_FORMAT_MMC4;
}

const char *sample_format_name(sample_format f) {
    switch (f) {
    case SAMPLE_FORMAT_MMC4: return "mmc4";
    case SAMPLE_FORMAT_LAION: return "laion";
    default: return "auto";
    }
}

int sample_format_parse(const char *name, sample_format *out) {
    static const sample_format all[] = {SAMPLE_FORMAT_AUTO, SAMPLE_FORMAT_MMC4, SAMPLE_FORMAT_LAION};
    for (int i = 0; i < 3; i++)
        if (!strcmp(name, sample_format_name(all[i]))) return *out = all[i], 0;
    return -1;
}

void document_free(document *doc) {
    if (!doc) return;
    for (int64_t i = 0; i < doc->n_texts; i++) free(doc->texts[i]);
    for (int64_t i = 0; i < doc->n_images; i++) {
        free(doc->images[i].name);
        free(doc->images[i].owned);
    }
    free(doc->texts);
    free(doc->images);
    free(doc->key);
    memset(doc, 0, sizeof *doc);
}

/* Sets *why and err and returns -1: the one way parsing fails. */
static int fail(skip_reason *why, skip_reason r, char *err, size_t errlen, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
static int fail(skip_reason *why, skip_reason r, char *err, size_t errlen, const char *key, const char *fmt, ...) {
    char msg[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    *why = r;
    aimc_set_err(err, errlen, "sample '%s': %s", key ? key : "?", msg);
    return -1;
}

/* ---- LAION ------------------------------------------------------------ */

static int parse_laion(const shard_sample *s, const sample_opts *o, document *doc, skip_reason *why, char *err,
                       size_t errlen) {
    const shard_member *img = laion_image_member(s), *txt = shard_sample_member(s, "txt");
    if (!img) return fail(why, SKIP_MISSING_MEMBER, err, errlen, s->key, "no image member (.jpg/.jpeg/.png/.webp)");
    if (!txt) return fail(why, SKIP_MISSING_MEMBER, err, errlen, s->key, "no caption member (.txt)");
    skip_reason r;
    char *caption = clean_text((const char *)txt->data, txt->size, o->invalid_utf8, &r);
    if (!caption) return fail(why, r, err, errlen, s->key, "caption is not valid UTF-8 (or holds a NUL byte)");
    if (!caption[0]) {
        free(caption);
        return fail(why, SKIP_BAD_TEXT, err, errlen, s->key, "empty caption");
    }
    doc->texts = calloc(1, sizeof *doc->texts);
    doc->images = calloc(1, sizeof *doc->images);
    AIMC_CHECK(doc->texts && doc->images, "out of memory");
    doc->n_texts = doc->n_images = 1;
    doc->texts[0] = caption;
    doc->images[0] = (doc_image){.name = aimc_strdup(img->ext), .data = img->data, .size = img->size, .sim = 1.0};
    return 0;
}

/* ---- MMC4 ------------------------------------------------------------- */

static const cJSON *field(const cJSON *o, const char *name) { return cJSON_GetObjectItemCaseSensitive(o, name); }

static int parse_texts(const cJSON *list, const sample_opts *o, document *doc, skip_reason *why, char *err,
                       size_t errlen) {
    if (!cJSON_IsArray(list)) return fail(why, SKIP_BAD_JSON, err, errlen, doc->key, "text_list is not an array");
    int64_t n = cJSON_GetArraySize(list);
    doc->texts = calloc((size_t)(n ? n : 1), sizeof *doc->texts);
    AIMC_CHECK(doc->texts, "out of memory for %lld sentences", (long long)n);
    const cJSON *t;
    cJSON_ArrayForEach(t, list) {
        if (!cJSON_IsString(t))
            return fail(why, SKIP_BAD_JSON, err, errlen, doc->key, "text_list[%lld] is not a string",
                        (long long)doc->n_texts);
        skip_reason r;
        char *clean = clean_text(t->valuestring, strlen(t->valuestring), o->invalid_utf8, &r);
        if (!clean)
            return fail(why, r, err, errlen, doc->key, "text_list[%lld] is not valid UTF-8", (long long)doc->n_texts);
        doc->texts[doc->n_texts++] = clean;
    }
    return 0;
}

/* matched_sim, or similarity_matrix[i][t] when it is absent; NAN if neither. */
static double image_sim(const cJSON *info, const cJSON *matrix, int64_t i, int64_t t) {
    const cJSON *sim = field(info, "matched_sim");
    if (cJSON_IsNumber(sim)) return sim->valuedouble;
    const cJSON *row = cJSON_IsArray(matrix) ? cJSON_GetArrayItem(matrix, (int)i) : NULL;
    const cJSON *v = cJSON_IsArray(row) ? cJSON_GetArrayItem(row, (int)t) : NULL;
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

/* The image's bytes: its base64 field, else the member "{key}.{image_name}". */
static void resolve_image_bytes(const shard_sample *s, const cJSON *info, doc_image *im) {
    const cJSON *b64 = field(info, "image_base64");
    if (cJSON_IsString(b64)) {
        size_t len = 0;
        if (base64_decode(b64->valuestring, strlen(b64->valuestring), &im->owned, &len) == 0) {
            im->data = im->owned, im->size = len;
        } else {
            im->missing = SKIP_BAD_IMAGE;
        }
        return;
    }
    const shard_member *m = im->name ? shard_sample_member(s, im->name) : NULL;
    if (m) im->data = m->data, im->size = m->size;
    else im->missing = SKIP_MISSING_MEMBER;
}

static int parse_image(const shard_sample *s, const cJSON *info, const cJSON *matrix, int64_t i, document *doc,
                       skip_reason *why, char *err, size_t errlen) {
    if (!cJSON_IsObject(info)) return fail(why, SKIP_BAD_JSON, err, errlen, doc->key, "image_info[%lld] is not an object", (long long)i);
    const cJSON *name = field(info, "image_name"), *idx = field(info, "matched_text_index");
    if (!cJSON_IsNumber(idx) || idx->valuedouble != floor(idx->valuedouble) || idx->valuedouble < 0 ||
        idx->valuedouble >= (double)doc->n_texts)
        return fail(why, SKIP_BAD_JSON, err, errlen, doc->key,
                    "image_info[%lld].matched_text_index is missing or not an index into text_list (%lld sentences)",
                    (long long)i, (long long)doc->n_texts);
    if (name && !cJSON_IsString(name))
        return fail(why, SKIP_BAD_JSON, err, errlen, doc->key, "image_info[%lld].image_name is not a string", (long long)i);
    doc_image *im = &doc->images[i];
    im->text_index = (int64_t)idx->valuedouble;
    im->sim = image_sim(info, matrix, i, im->text_index);
    if (isnan(im->sim))
        return fail(why, SKIP_BAD_JSON, err, errlen, doc->key,
                    "image_info[%lld] has no matched_sim and similarity_matrix has no entry for it", (long long)i);
    im->name = aimc_strdup(name ? name->valuestring : "");
    resolve_image_bytes(s, info, im);
    return 0;
}

static int parse_mmc4_json(const shard_sample *s, const cJSON *root, const sample_opts *o, document *doc,
                           skip_reason *why, char *err, size_t errlen) {
    if (!cJSON_IsObject(root)) return fail(why, SKIP_BAD_JSON, err, errlen, s->key, "the .json member is not an object");
    if (parse_texts(field(root, "text_list"), o, doc, why, err, errlen)) return -1;
    const cJSON *infos = field(root, "image_info"), *matrix = field(root, "similarity_matrix");
    if (!cJSON_IsArray(infos)) return fail(why, SKIP_BAD_JSON, err, errlen, s->key, "image_info is not an array");
    if (matrix && !cJSON_IsArray(matrix))
        return fail(why, SKIP_BAD_JSON, err, errlen, s->key, "similarity_matrix is not an array");
    int64_t n = cJSON_GetArraySize(infos);
    doc->images = calloc((size_t)(n ? n : 1), sizeof *doc->images);
    AIMC_CHECK(doc->images, "out of memory for %lld images", (long long)n);
    const cJSON *info;
    cJSON_ArrayForEach(info, infos) {
        if (parse_image(s, info, matrix, doc->n_images, doc, why, err, errlen)) return -1;
        doc->n_images++;
    }
    return 0;
}

static int parse_mmc4(const shard_sample *s, const sample_opts *o, document *doc, skip_reason *why, char *err,
                      size_t errlen) {
    const shard_member *js = shard_sample_member(s, "json");
    if (!js) return fail(why, SKIP_MISSING_MEMBER, err, errlen, s->key, "no document member (.json)");
    cJSON *root = cJSON_ParseWithLength((const char *)js->data, js->size);
    if (!root) return fail(why, SKIP_BAD_JSON, err, errlen, s->key, "the .json member is not valid JSON");
    int rc = parse_mmc4_json(s, root, o, doc, why, err, errlen);
    cJSON_Delete(root);
    return rc;
}

int document_parse(const shard_sample *s, const sample_opts *opts, document *doc, skip_reason *why, char *err,
                   size_t errlen) {
    static const sample_opts defaults = {0};
    const sample_opts *o = opts ? opts : &defaults;
    memset(doc, 0, sizeof *doc);
    doc->format = o->format == SAMPLE_FORMAT_AUTO ? sample_detect_format(s) : o->format;
    doc->key = aimc_strdup(s->key ? s->key : "");
    int rc = doc->format == SAMPLE_FORMAT_LAION ? parse_laion(s, o, doc, why, err, errlen)
                                                : parse_mmc4(s, o, doc, why, err, errlen);
    if (rc) document_free(doc);
    return rc;
}
