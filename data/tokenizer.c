/* The tokenizer pipeline, as HF tokenizers runs it:
 *   text -> split out non-normalized added tokens -> normalize each remaining
 *   piece -> split out normalized added tokens -> pre-tokenize -> BPE per
 *   piece -> truncate -> post-process (special tokens).
 * Decoding maps ids to token strings and runs the decoder chain. */
#include "tok_internal.h"
#include "../kernels/check.h"
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

void ctx_init(tok_ctx *c) {
    memset(c, 0, sizeof *c);
    c->md = pcre2_match_data_create(16, NULL);
    AIMC_CHECK(c->md, "tokenizer: pcre2_match_data_create failed (out of memory)");
}

void ctx_free(tok_ctx *c) {
    tstr_free(&c->text);
    tstr_free(&c->work);
    tstr_free(&c->scratch);
    tstr_free(&c->scratch2);
    free(c->cur.v);
    free(c->next.v);
    free(c->found.v);
    free(c->spans.v);
    free(c->spans2.v);
    pcre2_match_data_free(c->md);
    free(c->syms);
    free(c->heap);
}

static void swap_pieces(tok_ctx *c) {
    piece_list t = c->cur;
    c->cur = c->next;
    c->next = t;
    c->next.n = 0;
}

/* ======================================================== added tokens */

static int32_t trie_new_node(tok_trie *t) {
    if (t->nnodes == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 64;
        t->terminal = tok_xrealloc(t->terminal, (size_t)t->cap * sizeof *t->terminal);
    }
    t->terminal[t->nnodes] = -1;
    return (int32_t)t->nnodes++;
}

static void trie_insert(tok_trie *t, const char *p, size_t n, int32_t idx) {
    if (!n) return;
    if (!t->nnodes) trie_new_node(t);
    uint64_t node = 0;
    for (size_t k = 0; k < n; k++) {
        uint64_t key = node << 8 | (unsigned char)p[k];
        const uint64_t *child = u64map_get(&t->children, key);
        if (child) {
            node = *child;
        } else {
            int32_t fresh = trie_new_node(t);
            u64map_set(&t->children, key, (uint64_t)fresh);
            node = (uint64_t)fresh;
        }
    }
    t->terminal[node] = idx;
    t->first[(unsigned char)p[0]] = 1;
    t->npatterns++;
}

/* Longest pattern starting at s[i]: returns 1 with its end and added index. */
static int trie_longest_at(const tok_trie *t, const char *s, size_t n, size_t i, size_t *end, int32_t *idx) {
    uint64_t node = 0;
    int found = 0;
    for (size_t j = i; j < n; j++) {
        const uint64_t *child = u64map_get(&t->children, node << 8 | (unsigned char)s[j]);
        if (!child) break;
        node = *child;
        if (t->terminal[node] >= 0) {
            found = 1;
            *end = j + 1;
            *idx = t->terminal[node];
        }
    }
    return found;
}

static void trie_free(tok_trie *t) {
    u64map_free(&t->children);
    free(t->terminal);
    memset(t, 0, sizeof *t);
}

static int32_t next_added_id(const tokenizer *tok) {
    int64_t vocab_size = tok->bpe.vocab_count, max = -1;
    for (int i = 0; i < tok->nadded; i++)
        if (tok->added[i].id > max) max = tok->added[i].id;
    if (max < 0) return (int32_t)vocab_size;
    return (int32_t)(max >= vocab_size || vocab_size == 0 ? max + 1 : vocab_size);
}

static int same_flags(const tok_added *a, const tok_added *b) {
    return a->special == b->special && a->lstrip == b->lstrip && a->rstrip == b->rstrip &&
           a->single_word == b->single_word && a->normalized == b->normalized;
}

/* One added_tokens entry, as HF's AddedVocabulary::add_tokens: the id is the
 * token's existing id (added or model vocabulary), else the next free one.
 * Takes t->content (kept or freed). */
static void add_token(tokenizer *tok, const tok_added *t) {
    const int32_t *existing = strmap_get(&tok->added_by_content, t->content, t->len);
    if (existing && same_flags(&tok->added[*existing], t)) { /* a repeat: nothing new */
        free(t->content);
        return;
    }
    const int32_t *in_vocab = strmap_get(&tok->bpe.vocab, t->content, t->len);
    int32_t id = existing ? tok->added[*existing].id : in_vocab ? *in_vocab : next_added_id(tok);
    if (existing) {
        tok_added *old = &tok->added[*existing];
        free(old->content);
        *old = *t;
        old->id = id;
        return;
    }
    tok->added = tok_xrealloc(tok->added, sizeof *tok->added * (size_t)(tok->nadded + 1));
    tok->added[tok->nadded] = *t;
    tok->added[tok->nadded].id = id;
    strmap_set(&tok->added_by_content, t->content, t->len, tok->nadded);
    tok->nadded++;
}

static int parse_added(const cJSON *it, int index, tok_added *t, char *err, size_t errlen) {
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(it, "content");
    if (!cJSON_IsString(content)) {
        aimc_set_err(err, errlen, "added_tokens[%d]: field \"content\" must be a string", index);
        return -1;
    }
#define FLAG(name, dflt)                                                          \
    (cJSON_IsBool(cJSON_GetObjectItemCaseSensitive(it, name))                      \
         ? cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(it, name)) : (dflt))
    t->special = FLAG("special", 0);
    t->lstrip = FLAG("lstrip", 0);
    t->rstrip = FLAG("rstrip", 0);
    t->single_word = FLAG("single_word", 0);
    t->normalized = FLAG("normalized", !t->special);
#undef FLAG
    t->len = strlen(content->valuestring);
    if (!utf8_valid(content->valuestring, t->len)) {
        aimc_set_err(err, errlen, "added_tokens[%d]: field \"content\" is not valid UTF-8", index);
        return -1;
    }
    t->content = t->len ? aimc_strdup(content->valuestring) : NULL;
    return 0;
}

/* The normalized trie matches normalized text, so its patterns are the
 * normalized token contents (HF normalizes them the same way). */
static void build_tries(tokenizer *tok) {
    tok_ctx c;
    ctx_init(&c);
    for (int i = 0; i < tok->nadded; i++) {
        const tok_added *a = &tok->added[i];
        tok->added[i].shown = NULL;
        u64map_set(&tok->added_by_id, (uint64_t)a->id, (uint64_t)i);
        if (!a->normalized) {
            trie_insert(&tok->raw_trie, a->content, a->len, i);
            continue;
        }
        tstr_clear(&c.work);
        tstr_put(&c.work, a->content, a->len);
        if (tok->normalizer) norm_apply(tok->normalizer, &c, &c.work);
        trie_insert(&tok->norm_trie, c.work.p, c.work.n, i);
        tok->added[i].shown = aimc_strdup(c.work.p);
    }
    ctx_free(&c);
}

int tok_load_added(tokenizer *tok, const cJSON *list, char *err, size_t errlen) {
    if (list && !cJSON_IsNull(list) && !cJSON_IsArray(list)) {
        aimc_set_err(err, errlen, "added_tokens must be a list");
        return -1;
    }
    const cJSON *it;
    int index = 0;
    cJSON_ArrayForEach(it, list) {
        tok_added t = {0};
        if (parse_added(it, index++, &t, err, errlen)) return -1;
        if (t.len) add_token(tok, &t);
        else free(t.content);
    }
    build_tries(tok);
    return 0;
}

static const tok_added *added_by_id(const tokenizer *tok, int32_t id) {
    const uint64_t *i = id >= 0 ? u64map_get(&tok->added_by_id, (uint64_t)id) : NULL;
    return i ? &tok->added[*i] : NULL;
}

/* --------------------------------------------- matching added tokens */

/* Start of the run of White_Space characters that ends at s[end]. */
static size_t space_run_start(const char *s, size_t end) {
    while (end > 0) {
        size_t st = end - 1;
        while (st > 0 && ((unsigned char)s[st] & 0xC0) == 0x80) st--;
        size_t i = st;
        if (!uni_is_white_space(utf8_next(s, end, &i))) break;
        end = st;
    }
    return end;
}

/* End of the run of White_Space characters that starts at s[from]. */
static size_t space_run_end(const char *s, size_t n, size_t from) {
    while (from < n) {
        size_t i = from;
        if (!uni_is_white_space(utf8_next(s, n, &i))) break;
        from = i;
    }
    return from;
}

static int ends_with_word(tok_ctx *c, const char *s, size_t end) {
    size_t st = end - 1;
    while (st > 0 && ((unsigned char)s[st] & 0xC0) == 0x80) st--;
    return tok_is_word_char(c, s, end, st);
}

/* Splits one plain piece on the trie's tokens into c->next, following HF's
 * AddedVocabulary::find_matches (leftmost-longest, non-overlapping; a
 * discarded single_word match still consumes its text). */
static void split_on_added(const tokenizer *tok, const tok_trie *t, tok_ctx *c, tok_piece pc) {
    const char *s = c->text.p + pc.off;
    size_t n = pc.len, done = 0, i = 0, end;
    int32_t idx;
    while (t->npatterns && i < n) {
        if (!t->first[(unsigned char)s[i]] || !trie_longest_at(t, s, n, i, &end, &idx)) {
            i++;
            continue;
        }
        const tok_added *a = &tok->added[idx];
        size_t start = i, stop = end;
        i = end;
        if (a->single_word && ((start > 0 && ends_with_word(c, s, start)) ||
                               (stop < n && tok_is_word_char(c, s, n, stop))))
            continue;
        if (a->lstrip) {
            size_t ns = space_run_start(s, start);
            start = ns > done ? ns : done;
        }
        if (a->rstrip) stop = space_run_end(s, n, stop);
        if (done < start) pieces_push(&c->next, pc.off + done, start - done, -1, pc.at_start && done == 0);
        pieces_push(&c->next, pc.off + start, stop - start, a->id, pc.at_start && start == 0);
        done = stop;
    }
    if (done < n) pieces_push(&c->next, pc.off + done, n - done, -1, pc.at_start && done == 0);
}

/* HF's extract_and_normalize. */
static void extract_added(const tokenizer *tok, tok_ctx *c) {
    for (int64_t i = 0; i < c->cur.n; i++) split_on_added(tok, &tok->raw_trie, c, c->cur.v[i]);
    swap_pieces(c);
    for (int64_t i = 0; i < c->cur.n; i++) {
        tok_piece pc = c->cur.v[i];
        if (pc.id >= 0) {
            pieces_push(&c->next, pc.off, pc.len, pc.id, pc.at_start);
            continue;
        }
        if (tok->normalizer) {
            tstr_clear(&c->work);
            tstr_put(&c->work, c->text.p + pc.off, pc.len);
            norm_apply(tok->normalizer, c, &c->work);
            pc.off = c->text.n;
            pc.len = c->work.n;
            tstr_put(&c->text, c->work.p, c->work.n);
        }
        if (pc.len) split_on_added(tok, &tok->norm_trie, c, pc);
    }
    swap_pieces(c);
}

/* ============================================================== encode */

static int64_t post_added(const tok_post *p) {
    if (!p) return 0;
    if (p->kind != PP_SEQUENCE) return p->nbefore + p->nafter;
    int64_t n = 0;
    for (int i = 0; i < p->nitems; i++) n += post_added(&p->items[i]);
    return n;
}

static void post_apply(const tok_post *p, tok_ids *ids) {
    if (p->kind == PP_SEQUENCE) {
        for (int i = 0; i < p->nitems; i++) post_apply(&p->items[i], ids);
        return;
    }
    if (!p->nbefore && !p->nafter) return;
    for (int k = 0; k < p->nbefore + p->nafter; k++) ids_push(ids, 0); /* room */
    int64_t body = ids->n - p->nbefore - p->nafter;
    memmove(ids->ids + p->nbefore, ids->ids, (size_t)body * sizeof *ids->ids);
    for (int k = 0; k < p->nbefore; k++) ids->ids[k] = p->before[k];
    for (int k = 0; k < p->nafter; k++) ids->ids[p->nbefore + body + k] = p->after[k];
}

static int truncate_ids(const tokenizer *tok, const tokenizer_encode_opts *o, tok_ids *ids, char *err,
                        size_t errlen) {
    int64_t max = o->max_length > 0 ? o->max_length : o->max_length == 0 ? tok->trunc_length : 0;
    if (max <= 0) return 0;
    int64_t added = o->add_special ? post_added(tok->post) : 0;
    if (max < added) {
        aimc_set_err(err, errlen, "max_length %lld is smaller than the %lld special tokens this tokenizer adds",
                     (long long)max, (long long)added);
        return -1;
    }
    int64_t keep = max - added;
    if (ids->n <= keep) return 0;
    if (tok->trunc_left) memmove(ids->ids, ids->ids + ids->n - keep, (size_t)keep * sizeof *ids->ids);
    ids->n = keep;
    return 0;
}

static int encode_pieces(const tokenizer *tok, tok_ctx *c, tok_ids *out, char *err, size_t errlen) {
    for (int64_t i = 0; i < c->cur.n; i++) {
        tok_piece pc = c->cur.v[i];
        if (pc.id >= 0) ids_push(out, pc.id);
        else if (bpe_tokenize(&tok->bpe, c, c->text.p + pc.off, pc.len, out, err, errlen)) return -1;
    }
    return 0;
}

int tokenizer_encode(const tokenizer *tok, const char *text, size_t len, const tokenizer_encode_opts *opts,
                     tok_ids *out, char *err, size_t errlen) {
    tokenizer_encode_opts o = opts ? *opts : (tokenizer_encode_opts){1, 0};
    out->n = 0;
    if (len > TOKENIZER_MAX_TEXT_BYTES)
        return aimc_set_err(err, errlen, "a text of %zu bytes, more than the %zu one encode takes", len,
                            TOKENIZER_MAX_TEXT_BYTES);
    tok_ctx c;
    ctx_init(&c);
    utf8_sanitize(text ? text : "", text ? len : 0, &c.text);
    if (c.text.n) pieces_push(&c.cur, 0, c.text.n, -1, 1);
    extract_added(tok, &c);
    if (tok->pretok) pre_apply(tok->pretok, &c);
    int rc = encode_pieces(tok, &c, out, err, errlen);
    if (!rc) rc = truncate_ids(tok, &o, out, err, errlen);
    if (!rc && o.add_special && tok->post) post_apply(tok->post, out);
    ctx_free(&c);
    return rc;
}

/* ============================================================== decode */

static int is_special_content(const tokenizer *tok, const char *s) {
    const int32_t *i = strmap_get(&tok->added_by_content, s, strlen(s));
    return i && tok->added[*i].special;
}

static int has_bpe_decoder(const tok_dec *d) {
    if (!d) return 0;
    if (d->kind == D_BPE) return 1;
    for (int i = 0; i < d->nitems; i++)
        if (has_bpe_decoder(&d->items[i])) return 1;
    return 0;
}

/* transformers' CLIPTokenizerFast.decode: end_of_word_suffix -> " ", strip. */
static void clip_suffix_cleanup(const tokenizer *tok, tstr *s) {
    const tstr *suf = &tok->bpe.suffix;
    tstr out = {0};
    for (size_t k = 0; k < s->n;) {
        if (k + suf->n <= s->n && !memcmp(s->p + k, suf->p, suf->n)) {
            tstr_putc(&out, ' ');
            k += suf->n;
        } else {
            tstr_putc(&out, s->p[k++]);
        }
    }
    size_t a = 0, b = out.n, i;
    while (a < b && (i = a, uni_is_python_space(utf8_next(out.p, out.n, &i)))) a = i;
    while (b > a) {
        size_t st = b - 1;
        while (st > a && ((unsigned char)out.p[st] & 0xC0) == 0x80) st--;
        i = st;
        if (!uni_is_python_space(utf8_next(out.p, out.n, &i))) break;
        b = st;
    }
    tstr_clear(s);
    tstr_put(s, out.p ? out.p + a : "", b - a);
    tstr_free(&out);
}

static const char *token_of(const tokenizer *tok, int32_t id) {
    const tok_added *a = added_by_id(tok, id);
    if (a) return a->shown ? a->shown : a->content;
    return id >= 0 && id < tok->bpe.nids ? tok->bpe.id_to_tok[id] : NULL;
}

char *tokenizer_decode(const tokenizer *tok, const int32_t *ids, int64_t n, int skip_special, size_t *out_len,
                       char *err, size_t errlen) {
    tok_list l = {0};
    for (int64_t i = 0; i < n; i++) {
        const char *s = token_of(tok, ids[i]);
        if (!s) {
            aimc_set_err(err, errlen, "id %d is not in the vocabulary (size %lld)", ids[i],
                         (long long)tokenizer_vocab_size(tok));
            toks_free(&l);
            return NULL;
        }
        if (!skip_special || !is_special_content(tok, s)) tstr_put(toks_push(&l), s, strlen(s));
    }
    tok_ctx c;
    ctx_init(&c);
    if (tok->decoder) dec_apply(tok->decoder, &c, &l);
    tstr out = {0};
    tstr_reserve(&out, 0);
    for (int64_t i = 0; i < l.n; i++) {
        if (i && !tok->decoder) tstr_putc(&out, ' ');
        tstr_put(&out, l.v[i].p, l.v[i].n);
    }
    if (tok->bpe.suffix.n && !has_bpe_decoder(tok->decoder)) clip_suffix_cleanup(tok, &out);
    toks_free(&l);
    ctx_free(&c);
    if (out_len) *out_len = out.n;
    out.p[out.n] = 0;
    return out.p;
}

/* ============================================================ loading */

static void add_special_name(tokenizer *tok, const char *name, const char *value) {
    for (int i = 0; i < tok->nspecial_names; i++)
        if (!strcmp(tok->special_names[i], name)) return; /* the first file wins */
    int k = tok->nspecial_names++;
    tok->special_names = tok_xrealloc(tok->special_names, sizeof(char *) * (size_t)(k + 1));
    tok->special_values = tok_xrealloc(tok->special_values, sizeof(char *) * (size_t)(k + 1));
    tok->special_names[k] = aimc_strdup(name);
    tok->special_values[k] = aimc_strdup(value);
}

/* special_tokens_map.json / tokenizer_config.json: "x_token": "..." or {"content": "..."}. */
static void read_companion(tokenizer *tok, const char *dir, const char *file) {
    char path[4096], err[8];
    size_t n;
    snprintf(path, sizeof path, "%s/%s", dir, file);
    struct stat st;
    if (stat(path, &st) || !S_ISREG(st.st_mode)) return;
    char *text = aimc_read_file(path, AIMC_MAX_CONFIG_BYTES, &n, err, sizeof err);
    cJSON *root = text ? cJSON_ParseWithLength(text, n) : NULL;
    const cJSON *it;
    cJSON_ArrayForEach(it, root) {
        const char *v = cJSON_IsString(it) ? it->valuestring : NULL;
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(it, "content");
        if (!v && cJSON_IsString(content)) v = content->valuestring;
        if (v && it->string) add_special_name(tok, it->string, v);
        if (it->string && !strcmp(it->string, "model_max_length") && cJSON_IsNumber(it) && it->valuedouble > 0 &&
            it->valuedouble < 1e9)
            tok->model_max_length = (int64_t)it->valuedouble;
    }
    cJSON_Delete(root);
    free(text);
}

/* DIR -> DIR/tokenizer.json; a file path is used as is. dir receives the folder. */
static void resolve_paths(const char *path, char *file, size_t nfile, char *dir, size_t ndir) {
    struct stat st;
    if (!stat(path, &st) && S_ISDIR(st.st_mode)) {
        snprintf(file, nfile, "%s/tokenizer.json", path);
        snprintf(dir, ndir, "%s", path);
        return;
    }
    snprintf(file, nfile, "%s", path);
    const char *slash = strrchr(path, '/');
    if (slash) snprintf(dir, ndir, "%.*s", (int)(slash - path), path);
    else snprintf(dir, ndir, ".");
}

/* Every id a post-processor adds must decode: a file whose template names an
 * id that neither the vocabulary nor added_tokens has is refused at load. */
static int check_post_ids(const tokenizer *tok, const tok_post *p, char *err, size_t errlen) {
    if (!p) return 0;
    for (int i = 0; i < p->nitems; i++)
        if (check_post_ids(tok, &p->items[i], err, errlen)) return -1;
    for (int i = 0; i < p->nbefore + p->nafter; i++) {
        int32_t id = i < p->nbefore ? p->before[i] : p->after[i - p->nbefore];
        if (!token_of(tok, id))
            return aimc_set_err(err, errlen, "post_processor: special token id %d is neither in the vocabulary nor in "
                                "added_tokens", id);
    }
    return 0;
}

tokenizer *tokenizer_load(const char *path, char *err, size_t errlen) {
    char file[4096], dir[4096], msg[512] = "";
    size_t n;
    resolve_paths(path, file, sizeof file, dir, sizeof dir);
    char *json = aimc_read_file(file, AIMC_MAX_TOKENIZER_BYTES, &n, err, errlen);
    if (!json) return NULL;
    tokenizer *tok = tok_xrealloc(NULL, sizeof *tok);
    memset(tok, 0, sizeof *tok);
    tok->path = aimc_strdup(file);
    int rc = tok_load_components(tok, json, n, msg, sizeof msg);
    if (!rc) rc = check_post_ids(tok, tok->post, msg, sizeof msg);
    free(json);
    if (rc) {
        aimc_set_err(err, errlen, "%s: %s", file, msg);
        tokenizer_free(tok);
        return NULL;
    }
    read_companion(tok, dir, "special_tokens_map.json");
    read_companion(tok, dir, "tokenizer_config.json");
    return tok;
}

void tokenizer_free(tokenizer *tok) {
    if (!tok) return;
    free(tok->path);
    bpe_free(&tok->bpe);
    for (int i = 0; i < tok->nadded; i++) free(tok->added[i].content), free(tok->added[i].shown);
    free(tok->added);
    strmap_free(&tok->added_by_content);
    u64map_free(&tok->added_by_id);
    trie_free(&tok->raw_trie);
    trie_free(&tok->norm_trie);
    norm_free(tok->normalizer);
    free(tok->normalizer);
    pre_free(tok->pretok);
    free(tok->pretok);
    post_free(tok->post);
    free(tok->post);
    dec_free(tok->decoder);
    free(tok->decoder);
    for (int i = 0; i < tok->nspecial_names; i++) free(tok->special_names[i]), free(tok->special_values[i]);
    free(tok->special_names);
    free(tok->special_values);
    free(tok);
}

/* ========================================================== accessors */

int32_t tokenizer_token_to_id(const tokenizer *tok, const char *token) {
    const int32_t *i = strmap_get(&tok->added_by_content, token, strlen(token));
    if (i) return tok->added[*i].id;
    const int32_t *v = strmap_get(&tok->bpe.vocab, token, strlen(token));
    return v ? *v : -1;
}

const char *tokenizer_id_to_token(const tokenizer *tok, int32_t id) {
    return token_of(tok, id);
}

int64_t tokenizer_vocab_size(const tokenizer *tok) {
    int64_t n = tok->bpe.nids;
    for (int i = 0; i < tok->nadded; i++)
        if (tok->added[i].id + 1 > n) n = tok->added[i].id + 1;
    return n;
}

int32_t tokenizer_special_id(const tokenizer *tok, const char *name) {
    for (int i = 0; i < tok->nspecial_names; i++)
        if (!strcmp(tok->special_names[i], name)) return tokenizer_token_to_id(tok, tok->special_values[i]);
    return -1;
}

int64_t tokenizer_model_max_length(const tokenizer *tok) {
    return tok->model_max_length;
}
