/* tokenizer.json -> component structs. Every unsupported or malformed part is
 * one error line naming its JSON location and, for components, its type. */
#include "tok_internal.h"
#include "../kernels/check.h"
#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GPT2_REGEX "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"

typedef struct where {
    char s[160];
} where;

static where at(const char *parent, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static where at(const char *parent, const char *fmt, ...) {
    where w;
    char tail[96];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tail, sizeof tail, fmt, ap);
    va_end(ap);
    snprintf(w.s, sizeof w.s, "%s%s", parent, tail);
    return w;
}

static int is_null(const cJSON *j) {
    return !j || cJSON_IsNull(j);
}

static const char *jstr(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int jbool(const cJSON *o, const char *key, int dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : dflt;
}

/* A non-negative integer field (default when absent); -1 on a bad value. */
static int64_t jint(const cJSON *o, const char *key, int64_t dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (is_null(v)) return dflt;
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 9.0e15 ||
        v->valuedouble != floor(v->valuedouble))
        return -1;
    return (int64_t)v->valuedouble;
}

static int unsupported(char *err, size_t errlen, const char *where, const char *type, const char *supported) {
    if (type) aimc_set_err(err, errlen, "%s: type '%s' is not supported (supported: %s)", where, type, supported);
    else aimc_set_err(err, errlen, "%s: missing \"type\" (supported: %s)", where, supported);
    return -1;
}

static int bad_field(char *err, size_t errlen, const char *where, const char *field, const char *want) {
    aimc_set_err(err, errlen, "%s: field \"%s\" must be %s", where, field, want);
    return -1;
}

/* {"String": "..."} or {"Regex": "..."} */
static int load_pattern(const cJSON *o, const char *key, tok_pattern *p, const char *w, char *err, size_t errlen) {
    const cJSON *pat = cJSON_GetObjectItemCaseSensitive(o, key);
    const char *lit = jstr(pat, "String"), *rx = jstr(pat, "Regex");
    if (!lit && !rx) return bad_field(err, errlen, w, key, "{\"String\": ...} or {\"Regex\": ...}");
    const char *src = lit ? lit : rx;
    return pattern_compile(p, src, strlen(src), rx != NULL, err, errlen);
}

static int load_string_field(const cJSON *o, const char *key, tstr *out, const char *w, char *err, size_t errlen) {
    const char *s = jstr(o, key);
    if (!s) return bad_field(err, errlen, w, key, "a string");
    tstr_put(out, s, strlen(s));
    return 0;
}

/* ---------------------------------------------------------- normalizer */

#define NORM_TYPES "Sequence, Prepend, Replace, NFC, Lowercase, Strip"

static int load_norm(const cJSON *j, tok_norm *nm, const char *w, char *err, size_t errlen) {
    const char *type = jstr(j, "type");
    if (!type) return unsupported(err, errlen, w, NULL, NORM_TYPES);
    if (!strcmp(type, "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(j, "normalizers");
        if (!cJSON_IsArray(list)) return bad_field(err, errlen, w, "normalizers", "a list");
        nm->kind = N_SEQUENCE;
        nm->items = tok_xrealloc(NULL, sizeof *nm->items * (size_t)(cJSON_GetArraySize(list) + 1));
        const cJSON *it;
        cJSON_ArrayForEach(it, list) {
            memset(&nm->items[nm->nitems], 0, sizeof *nm->items);
            where sub = at(w, ".normalizers[%d]", nm->nitems);
            if (load_norm(it, &nm->items[nm->nitems++], sub.s, err, errlen)) return -1;
        }
        return 0;
    }
    if (!strcmp(type, "Prepend")) {
        nm->kind = N_PREPEND;
        return load_string_field(j, "prepend", &nm->content, w, err, errlen);
    }
    if (!strcmp(type, "Replace")) {
        nm->kind = N_REPLACE;
        if (load_string_field(j, "content", &nm->content, w, err, errlen)) return -1;
        return load_pattern(j, "pattern", &nm->pat, w, err, errlen);
    }
    if (!strcmp(type, "NFC") || !strcmp(type, "Lowercase")) {
        nm->kind = !strcmp(type, "NFC") ? N_NFC : N_LOWERCASE;
        return 0;
    }
    if (!strcmp(type, "Strip")) {
        nm->kind = N_STRIP;
        nm->left = jbool(j, "strip_left", 1);
        nm->right = jbool(j, "strip_right", 1);
        return 0;
    }
    return unsupported(err, errlen, w, type, NORM_TYPES);
}

/* ------------------------------------------------------- pre_tokenizer */

#define PRE_TYPES "Sequence, ByteLevel, Split, Metaspace"

static int load_behavior(const cJSON *j, tok_pre *p, const char *w, char *err, size_t errlen) {
    static const char *names[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"};
    const char *b = jstr(j, "behavior");
    for (int k = 0; b && k < 5; k++) {
        if (strcmp(b, names[k])) continue;
        p->behavior = k;
        return 0;
    }
    return bad_field(err, errlen, w, "behavior",
                     "one of Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous");
}

static int load_metaspace(const cJSON *j, tok_pre *p, const char *w, char *err, size_t errlen) {
    p->kind = P_METASPACE;
    if (load_string_field(j, "replacement", &p->repl, w, err, errlen)) return -1;
    if (!p->repl.n) return bad_field(err, errlen, w, "replacement", "one character");
    const char *scheme = jstr(j, "prepend_scheme");
    if (scheme) {
        if (!strcmp(scheme, "always")) p->prepend_scheme = PREPEND_ALWAYS;
        else if (!strcmp(scheme, "first")) p->prepend_scheme = PREPEND_FIRST;
        else if (!strcmp(scheme, "never")) p->prepend_scheme = PREPEND_NEVER;
        else return bad_field(err, errlen, w, "prepend_scheme", "always, first or never");
    } else { /* older files */
        p->prepend_scheme = jbool(j, "add_prefix_space", 1) ? PREPEND_ALWAYS : PREPEND_NEVER;
    }
    p->split = jbool(j, "split", 1);
    return pattern_compile(&p->pat, p->repl.p, p->repl.n, 0, err, errlen);
}

static int load_pre(const cJSON *j, tok_pre *p, const char *w, char *err, size_t errlen) {
    const char *type = jstr(j, "type");
    if (!type) return unsupported(err, errlen, w, NULL, PRE_TYPES);
    if (!strcmp(type, "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(j, "pretokenizers");
        if (!cJSON_IsArray(list)) return bad_field(err, errlen, w, "pretokenizers", "a list");
        p->kind = P_SEQUENCE;
        p->items = tok_xrealloc(NULL, sizeof *p->items * (size_t)(cJSON_GetArraySize(list) + 1));
        const cJSON *it;
        cJSON_ArrayForEach(it, list) {
            memset(&p->items[p->nitems], 0, sizeof *p->items);
            where sub = at(w, ".pretokenizers[%d]", p->nitems);
            if (load_pre(it, &p->items[p->nitems++], sub.s, err, errlen)) return -1;
        }
        return 0;
    }
    if (!strcmp(type, "ByteLevel")) {
        p->kind = P_BYTELEVEL;
        p->add_prefix_space = jbool(j, "add_prefix_space", 1);
        p->use_regex = jbool(j, "use_regex", 1);
        bytelevel_init();
        return p->use_regex ? pattern_compile(&p->pat, GPT2_REGEX, strlen(GPT2_REGEX), 1, err, errlen) : 0;
    }
    if (!strcmp(type, "Split")) {
        p->kind = P_SPLIT;
        p->invert = jbool(j, "invert", 0);
        if (load_behavior(j, p, w, err, errlen)) return -1;
        return load_pattern(j, "pattern", &p->pat, w, err, errlen);
    }
    if (!strcmp(type, "Metaspace")) return load_metaspace(j, p, w, err, errlen);
    return unsupported(err, errlen, w, type, PRE_TYPES);
}

/* ------------------------------------------------------ post_processor */

#define POST_TYPES "TemplateProcessing, RobertaProcessing, BertProcessing, ByteLevel, Sequence"

static void ids_append(int32_t **v, int *n, int32_t id) {
    *v = tok_xrealloc(*v, sizeof **v * (size_t)(*n + 1));
    (*v)[(*n)++] = id;
}

/* ["<s>", 0] -> 0 */
static int token_pair_id(const cJSON *j, const char *key, int32_t *id, const char *w, char *err, size_t errlen) {
    const cJSON *pair = cJSON_GetObjectItemCaseSensitive(j, key);
    const cJSON *v = cJSON_GetArrayItem(pair, 1);
    if (!cJSON_IsArray(pair) || !cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > INT32_MAX)
        return bad_field(err, errlen, w, key, "[token, id]");
    *id = (int32_t)v->valuedouble;
    return 0;
}

static int template_special(const cJSON *j, const char *name, tok_post *pp, int after, const char *w, char *err,
                            size_t errlen) {
    const cJSON *specials = cJSON_GetObjectItemCaseSensitive(j, "special_tokens");
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(specials, name), "ids");
    if (!cJSON_IsArray(ids)) {
        aimc_set_err(err, errlen, "%s: special token '%s' of the template is not in \"special_tokens\"", w, name);
        return -1;
    }
    const cJSON *v;
    cJSON_ArrayForEach(v, ids) {
        if (!cJSON_IsNumber(v) || v->valuedouble < 0) return bad_field(err, errlen, w, "special_tokens", "ids >= 0");
        if (after) ids_append(&pp->after, &pp->nafter, (int32_t)v->valuedouble);
        else ids_append(&pp->before, &pp->nbefore, (int32_t)v->valuedouble);
    }
    return 0;
}

/* The "single" template: special tokens before and after the one $A. */
static int load_template(const cJSON *j, tok_post *pp, const char *w, char *err, size_t errlen) {
    const cJSON *single = cJSON_GetObjectItemCaseSensitive(j, "single"), *it;
    if (!cJSON_IsArray(single)) return bad_field(err, errlen, w, "single", "a list of template pieces");
    int seen_a = 0;
    pp->kind = PP_TEMPLATE;
    cJSON_ArrayForEach(it, single) {
        const cJSON *sp = cJSON_GetObjectItemCaseSensitive(it, "SpecialToken");
        const cJSON *sq = cJSON_GetObjectItemCaseSensitive(it, "Sequence");
        if (sq) {
            seen_a = 1;
            continue;
        }
        const char *name = jstr(sp, "id");
        if (!name) return bad_field(err, errlen, w, "single", "SpecialToken / Sequence pieces");
        if (template_special(j, name, pp, seen_a, w, err, errlen)) return -1;
    }
    return 0;
}

static int load_post(const cJSON *j, tok_post *pp, const char *w, char *err, size_t errlen) {
    const char *type = jstr(j, "type");
    if (!type) return unsupported(err, errlen, w, NULL, POST_TYPES);
    if (!strcmp(type, "TemplateProcessing")) return load_template(j, pp, w, err, errlen);
    if (!strcmp(type, "RobertaProcessing") || !strcmp(type, "BertProcessing")) {
        int32_t cls, sep;
        pp->kind = PP_ROBERTA;
        if (token_pair_id(j, "cls", &cls, w, err, errlen) || token_pair_id(j, "sep", &sep, w, err, errlen)) return -1;
        ids_append(&pp->before, &pp->nbefore, cls);
        ids_append(&pp->after, &pp->nafter, sep);
        return 0;
    }
    if (!strcmp(type, "ByteLevel")) { /* offsets only: ids unchanged */
        pp->kind = PP_BYTELEVEL;
        return 0;
    }
    if (!strcmp(type, "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(j, "processors"), *it;
        if (!cJSON_IsArray(list)) return bad_field(err, errlen, w, "processors", "a list");
        pp->kind = PP_SEQUENCE;
        pp->items = tok_xrealloc(NULL, sizeof *pp->items * (size_t)(cJSON_GetArraySize(list) + 1));
        cJSON_ArrayForEach(it, list) {
            memset(&pp->items[pp->nitems], 0, sizeof *pp->items);
            where sub = at(w, ".processors[%d]", pp->nitems);
            if (load_post(it, &pp->items[pp->nitems++], sub.s, err, errlen)) return -1;
        }
        return 0;
    }
    return unsupported(err, errlen, w, type, POST_TYPES);
}

void post_free(tok_post *p) {
    if (!p) return;
    for (int i = 0; i < p->nitems; i++) post_free(&p->items[i]);
    free(p->items);
    free(p->before);
    free(p->after);
}

/* ------------------------------------------------------------- decoder */

#define DEC_TYPES "Sequence, ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip, BPEDecoder"

static int load_dec_list(const cJSON *j, tok_dec *d, const char *w, char *err, size_t errlen);

static int load_dec(const cJSON *j, tok_dec *d, const char *w, char *err, size_t errlen) {
    const char *type = jstr(j, "type");
    if (!type) return unsupported(err, errlen, w, NULL, DEC_TYPES);
    if (!strcmp(type, "Sequence")) return load_dec_list(j, d, w, err, errlen);
    if (!strcmp(type, "ByteLevel") || !strcmp(type, "ByteFallback") || !strcmp(type, "Fuse")) {
        d->kind = !strcmp(type, "ByteLevel") ? D_BYTELEVEL : !strcmp(type, "Fuse") ? D_FUSE : D_BYTEFALLBACK;
        bytelevel_init();
        return 0;
    }
    if (!strcmp(type, "Replace")) {
        d->kind = D_REPLACE;
        if (load_string_field(j, "content", &d->content, w, err, errlen)) return -1;
        return load_pattern(j, "pattern", &d->pat, w, err, errlen);
    }
    if (!strcmp(type, "Metaspace")) {
        const char *scheme = jstr(j, "prepend_scheme");
        d->kind = D_METASPACE;
        d->prepend_never = scheme ? !strcmp(scheme, "never") : !jbool(j, "add_prefix_space", 1);
        return load_string_field(j, "replacement", &d->content, w, err, errlen);
    }
    if (!strcmp(type, "Strip")) {
        const char *content = jstr(j, "content");
        int64_t start = jint(j, "start", 0), stop = jint(j, "stop", 0);
        if (!content || !*content) return bad_field(err, errlen, w, "content", "one character");
        if (start < 0 || stop < 0 || start > 1 << 20 || stop > 1 << 20)
            return bad_field(err, errlen, w, "start/stop", "small non-negative integers");
        size_t k = 0;
        d->kind = D_STRIP;
        d->strip_char = utf8_next(content, strlen(content), &k);
        d->start = (int)start, d->stop = (int)stop;
        return 0;
    }
    if (!strcmp(type, "BPEDecoder")) {
        const char *suffix = jstr(j, "suffix");
        d->kind = D_BPE;
        tstr_put(&d->content, suffix ? suffix : "</w>", strlen(suffix ? suffix : "</w>"));
        return 0;
    }
    return unsupported(err, errlen, w, type, DEC_TYPES);
}

static int load_dec_list(const cJSON *j, tok_dec *d, const char *w, char *err, size_t errlen) {
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(j, "decoders"), *it;
    if (!cJSON_IsArray(list)) return bad_field(err, errlen, w, "decoders", "a list");
    d->kind = D_SEQUENCE;
    d->items = tok_xrealloc(NULL, sizeof *d->items * (size_t)(cJSON_GetArraySize(list) + 1));
    cJSON_ArrayForEach(it, list) {
        memset(&d->items[d->nitems], 0, sizeof *d->items);
        where sub = at(w, ".decoders[%d]", d->nitems);
        if (load_dec(it, &d->items[d->nitems++], sub.s, err, errlen)) return -1;
    }
    return 0;
}

/* --------------------------------------------------------------- model */

static int load_vocab(const cJSON *model, tok_bpe *m, char *err, size_t errlen) {
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab"), *it;
    double max_id = -1;
    if (!cJSON_IsObject(vocab)) return bad_field(err, errlen, "model", "vocab", "an object {token: id}");
    cJSON_ArrayForEach(it, vocab) {
        double v = it->valuedouble;
        if (!cJSON_IsNumber(it) || v < 0 || v > INT32_MAX - 1 || v != floor(v)) {
            aimc_set_err(err, errlen, "model.vocab: token '%s' has an invalid id", it->string);
            return -1;
        }
        strmap_set(&m->vocab, it->string, strlen(it->string), (int32_t)v);
        if (v > max_id) max_id = v;
    }
    if (max_id >= 4.0 * (double)m->vocab.n + 65536) { /* the reverse map is an array */
        aimc_set_err(err, errlen, "model.vocab: ids reach %.0f for only %lld tokens", max_id, (long long)m->vocab.n);
        return -1;
    }
    bpe_load_vocab_done(m);
    return 0;
}

static int load_merges(const cJSON *model, tok_bpe *m, char *err, size_t errlen) {
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges"), *it;
    if (is_null(merges)) return 0;
    if (!cJSON_IsArray(merges)) return bad_field(err, errlen, "model", "merges", "a list");
    uint32_t rank = 0;
    cJSON_ArrayForEach(it, merges) {
        const char *a = NULL, *b = NULL;
        size_t na = 0, nb = 0;
        if (cJSON_IsString(it)) { /* "a b": exactly one space */
            const char *sp = strchr(it->valuestring, ' ');
            if (sp && !strchr(sp + 1, ' ')) a = it->valuestring, na = (size_t)(sp - a), b = sp + 1, nb = strlen(b);
        } else if (cJSON_IsArray(it) && cJSON_GetArraySize(it) == 2 && cJSON_IsString(it->child) &&
                   cJSON_IsString(it->child->next)) {
            a = it->child->valuestring, na = strlen(a), b = it->child->next->valuestring, nb = strlen(b);
        }
        if (!a) {
            aimc_set_err(err, errlen, "model.merges[%u]: expected \"a b\" or [\"a\", \"b\"]", rank);
            return -1;
        }
        if (bpe_add_merge(m, a, na, b, nb, rank++, err, errlen)) return -1;
    }
    return 0;
}

static int load_model(const cJSON *model, tok_bpe *m, char *err, size_t errlen) {
    const char *type = jstr(model, "type");
    if (!cJSON_IsObject(model)) return bad_field(err, errlen, "tokenizer.json", "model", "an object");
    if (!type && cJSON_GetObjectItemCaseSensitive(model, "merges")) type = "BPE"; /* untagged old files */
    if (!type || strcmp(type, "BPE")) {
        if (type) aimc_set_err(err, errlen, "model: type '%s' is not supported (aimc supports BPE)", type);
        else aimc_set_err(err, errlen, "model: missing \"type\" (aimc supports BPE)");
        return -1;
    }
    const cJSON *dropout = cJSON_GetObjectItemCaseSensitive(model, "dropout");
    if (!is_null(dropout) && (!cJSON_IsNumber(dropout) || dropout->valuedouble > 0)) {
        aimc_set_err(err, errlen, "model: BPE dropout is not supported (it makes encoding random); set it to null");
        return -1;
    }
    const char *unk = jstr(model, "unk_token"), *prefix = jstr(model, "continuing_subword_prefix");
    const char *suffix = jstr(model, "end_of_word_suffix");
    m->unk_token = unk ? aimc_strdup(unk) : NULL;
    if (prefix) tstr_put(&m->prefix, prefix, strlen(prefix));
    if (suffix) tstr_put(&m->suffix, suffix, strlen(suffix));
    m->fuse_unk = jbool(model, "fuse_unk", 0);
    m->byte_fallback = jbool(model, "byte_fallback", 0);
    m->ignore_merges = jbool(model, "ignore_merges", 0);
    if (load_vocab(model, m, err, errlen)) return -1;
    return load_merges(model, m, err, errlen);
}

/* ------------------------------------------------------------ top level */

static void *zalloc(size_t n) {
    void *p = tok_xrealloc(NULL, n);
    memset(p, 0, n);
    return p;
}

static int load_truncation(const cJSON *root, tokenizer *tok, char *err, size_t errlen) {
    const cJSON *tr = cJSON_GetObjectItemCaseSensitive(root, "truncation");
    if (is_null(tr)) return 0;
    int64_t len = jint(tr, "max_length", 0);
    if (len <= 0) return bad_field(err, errlen, "truncation", "max_length", "a positive integer");
    const char *dir = jstr(tr, "direction");
    tok->trunc_length = len;
    tok->trunc_left = dir && !strcmp(dir, "Left");
    return 0;
}

int tok_load_components(tokenizer *tok, const char *json, size_t n, char *err, size_t errlen) {
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, n, &end, 0);
    if (!root || !cJSON_IsObject(root)) {
        size_t off = end && end >= json ? (size_t)(end - json) : 0;
        if (root) aimc_set_err(err, errlen, "not a JSON object");
        else aimc_set_err(err, errlen, "invalid JSON near byte %zu", off);
        cJSON_Delete(root);
        return -1;
    }
    const cJSON *norm = cJSON_GetObjectItemCaseSensitive(root, "normalizer");
    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    const cJSON *post = cJSON_GetObjectItemCaseSensitive(root, "post_processor");
    const cJSON *dec = cJSON_GetObjectItemCaseSensitive(root, "decoder");
    int rc = load_model(cJSON_GetObjectItemCaseSensitive(root, "model"), &tok->bpe, err, errlen);
    if (!rc && !is_null(norm)) {
        tok->normalizer = zalloc(sizeof *tok->normalizer);
        rc = load_norm(norm, tok->normalizer, "normalizer", err, errlen);
    }
    if (!rc && !is_null(pre)) {
        tok->pretok = zalloc(sizeof *tok->pretok);
        rc = load_pre(pre, tok->pretok, "pre_tokenizer", err, errlen);
    }
    if (!rc && !is_null(post)) {
        tok->post = zalloc(sizeof *tok->post);
        rc = load_post(post, tok->post, "post_processor", err, errlen);
    }
    if (!rc && !is_null(dec)) {
        tok->decoder = zalloc(sizeof *tok->decoder);
        rc = load_dec(dec, tok->decoder, "decoder", err, errlen);
    }
    if (!rc) rc = load_truncation(root, tok, err, errlen);
    if (!rc) rc = tok_load_added(tok, cJSON_GetObjectItemCaseSensitive(root, "added_tokens"), err, errlen);
    cJSON_Delete(root);
    return rc;
}
