/* Internals shared by the tokenizer's source files (data/tok_*.c and
 * data/tokenizer.c). Not a public interface: use data/tokenizer.h. */
#ifndef AIMC_TOK_INTERNAL_H
#define AIMC_TOK_INTERNAL_H
#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer.h"
#include <pcre2.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

/* ---- growable byte string (always NUL-terminated once anything is put) ---- */
typedef struct tstr {
    char *p;
    size_t n, cap;
} tstr;
void tstr_reserve(tstr *s, size_t extra);
void tstr_put(tstr *s, const char *p, size_t n);
void tstr_putc(tstr *s, char c);
void tstr_put_cp(tstr *s, uint32_t cp);
void tstr_free(tstr *s);
static inline void tstr_clear(tstr *s) {
    s->n = 0;
    if (s->p) s->p[0] = 0;
}
/* Exchanges the two strings' contents (and storage). */
static inline void tstr_swap(tstr *a, tstr *b) {
    tstr t = *a;
    *a = *b;
    *b = t;
}
void ids_push(tok_ids *v, int32_t id);
void *tok_xrealloc(void *p, size_t bytes);

/* ---- Unicode (tok_unicode.c, tables in tok_unicode_tables.c) ---- */
typedef struct { uint32_t start, end, ccc; } tok_ccc_run;
typedef struct { uint32_t cp, off, len; } tok_decomp;
typedef struct { uint32_t a, b, c; } tok_comp;
typedef struct { uint32_t start, end; int32_t delta, stride; } tok_case_run;
extern const tok_ccc_run tok_ccc_runs[];
extern const int tok_n_ccc_runs;
extern const tok_decomp tok_decomps[];
extern const int tok_n_decomps;
extern const uint32_t tok_decomp_cps[];
extern const tok_comp tok_comps[];
extern const int tok_n_comps;
extern const tok_case_run tok_lower_runs[];
extern const int tok_n_lower_runs;

/* Decodes the code point at s[*i] (valid UTF-8 assumed) and advances *i. */
uint32_t utf8_next(const char *s, size_t n, size_t *i);
/* Writes cp as UTF-8 into out; returns its length (1..4). */
int utf8_encode(uint32_t cp, char out[4]);
/* Appends `in` to out with every maximal invalid subsequence replaced by U+FFFD. */
void utf8_sanitize(const char *in, size_t n, tstr *out);
/* 1 when s[0..n) is valid UTF-8. */
int utf8_valid(const char *s, size_t n);
int uni_is_white_space(uint32_t cp);  /* Unicode White_Space (Rust char::is_whitespace) */
int uni_is_python_space(uint32_t cp); /* Python str.isspace */
void uni_lowercase(const char *s, size_t n, tstr *out); /* per char, Rust char::to_lowercase */
void uni_nfc(const char *s, size_t n, tstr *out);

/* ---- hash maps (tok_bpe.c) ---- */
typedef struct strmap_entry {
    uint64_t hash;
    uint32_t off, len;
    int32_t value;
} strmap_entry;
typedef struct strmap { /* string -> int32 */
    tstr keys;
    strmap_entry *entries;
    int64_t n, cap;
    int32_t *slots;
    uint64_t mask;
} strmap;
const int32_t *strmap_get(const strmap *m, const char *k, size_t n);
void strmap_set(strmap *m, const char *k, size_t n, int32_t value);
void strmap_clear(strmap *m);
void strmap_free(strmap *m);
uint64_t tok_hash(const char *p, size_t n);

typedef struct u64map { /* uint64 key (never UINT64_MAX) -> uint64 value */
    uint64_t *keys, *vals;
    uint64_t mask;
    int64_t n;
} u64map;
const uint64_t *u64map_get(const u64map *m, uint64_t key);
void u64map_set(u64map *m, uint64_t key, uint64_t value);
void u64map_free(u64map *m);

/* ---- regex and literal patterns (tok_text.c) ---- */
typedef struct tok_span {
    size_t s, e;
    int is_match;
} tok_span;
typedef struct span_list {
    tok_span *v;
    int64_t n, cap;
} span_list;
typedef struct tok_pattern {
    int is_regex;
    tstr literal;
    pcre2_code *re;
} tok_pattern;

/* ---- pieces of text flowing through the pipeline ---- */
typedef struct tok_piece {
    size_t off, len;  /* bytes in ctx->text */
    int32_t id;       /* >= 0: an added token, already final */
    uint8_t at_start; /* starts at offset 0 of the original text (Metaspace "first") */
} tok_piece;
typedef struct piece_list {
    tok_piece *v;
    int64_t n, cap;
} piece_list;
void pieces_push(piece_list *l, size_t off, size_t len, int32_t id, int at_start);

typedef struct bpe_sym {
    int32_t id, prev, next, len;
} bpe_sym;
typedef struct bpe_merge_item {
    uint32_t rank;
    int32_t pos, new_id;
} bpe_merge_item;

/* Per-call scratch state of one encode or decode. */
typedef struct tok_ctx {
    tstr text;                  /* backing store of every piece */
    piece_list cur, next;
    tstr work, scratch, scratch2;
    span_list found, spans, spans2;
    pcre2_match_data *md;
    bpe_sym *syms;
    int64_t nsyms, cap_syms;
    bpe_merge_item *heap;
    int64_t nheap, cap_heap;
} tok_ctx;
void ctx_init(tok_ctx *c);
void ctx_free(tok_ctx *c);

/* ---- components ---- */
enum { N_SEQUENCE, N_PREPEND, N_REPLACE, N_NFC, N_LOWERCASE, N_STRIP };
typedef struct tok_norm {
    int kind;
    struct tok_norm *items;
    int nitems;
    tstr content; /* Prepend / Replace */
    tok_pattern pat;
    int left, right;
} tok_norm;

enum { P_SEQUENCE, P_BYTELEVEL, P_SPLIT, P_METASPACE };
enum { SPLIT_REMOVED, SPLIT_ISOLATED, SPLIT_MERGED_PREV, SPLIT_MERGED_NEXT, SPLIT_CONTIGUOUS };
enum { PREPEND_ALWAYS, PREPEND_FIRST, PREPEND_NEVER };
typedef struct tok_pre {
    int kind;
    struct tok_pre *items;
    int nitems;
    tok_pattern pat; /* Split */
    int behavior, invert;
    int add_prefix_space, use_regex; /* ByteLevel */
    tstr repl;                       /* Metaspace replacement */
    int prepend_scheme, split;
} tok_pre;

enum { PP_TEMPLATE, PP_ROBERTA, PP_BYTELEVEL, PP_SEQUENCE };
typedef struct tok_post {
    int kind;
    struct tok_post *items;
    int nitems;
    int32_t *before, *after; /* ids around the sequence */
    int nbefore, nafter;
} tok_post;

enum { D_SEQUENCE, D_BYTELEVEL, D_METASPACE, D_REPLACE, D_BYTEFALLBACK, D_FUSE, D_STRIP, D_BPE };
typedef struct tok_dec {
    int kind;
    struct tok_dec *items;
    int nitems;
    tok_pattern pat; /* Replace */
    tstr content;    /* Replace content, Metaspace replacement, BPEDecoder suffix */
    uint32_t strip_char;
    int start, stop, prepend_never;
} tok_dec;

typedef struct tok_bpe {
    strmap vocab;
    char **id_to_tok; /* NULL holes allowed */
    int64_t nids;     /* 1 + largest vocab id */
    int64_t vocab_count;
    u64map merges; /* (a << 32 | b) -> (rank << 32 | new_id) */
    char *unk_token;
    int fuse_unk, byte_fallback, ignore_merges;
    tstr prefix, suffix; /* continuing_subword_prefix, end_of_word_suffix */
    int32_t byte_ids[256]; /* <0xXX> tokens for byte fallback; -1 absent */
    /* word cache: word -> slice of cache_ids; cleared when it grows past a bound */
    strmap cache;
    int32_t *cache_ids;
    int64_t ncache_ids, cap_cache_ids;
    pthread_mutex_t cache_lock;
    int lock_ready;
} tok_bpe;

typedef struct tok_added {
    char *content;
    size_t len;
    char *shown; /* decode/id_to_token form: the normalized content when normalized (as HF) */
    int32_t id;
    int special, lstrip, rstrip, single_word, normalized;
} tok_added;

typedef struct tok_trie {
    u64map children; /* node << 8 | byte -> child node */
    int32_t *terminal; /* node -> index into tok->added, or -1 */
    int64_t nnodes, cap;
    uint8_t first[256];
    int npatterns;
} tok_trie;

struct tokenizer {
    char *path;
    tok_bpe bpe;
    tok_added *added;
    int nadded;
    strmap added_by_content;
    tok_trie raw_trie, norm_trie;
    tok_norm *normalizer;
    tok_pre *pretok;
    tok_post *post;
    tok_dec *decoder;
    int64_t trunc_length; /* tokenizer.json "truncation" (0: none) */
    int trunc_left;
    int64_t model_max_length;
    u64map added_by_id; /* id -> index into added */
    char **special_names, **special_values; /* special_tokens_map / tokenizer_config */
    int nspecial_names;
};

/* ---- tok_text.c: patterns, normalizers, pre-tokenizers ---- */
int pattern_compile(tok_pattern *p, const char *src, size_t n, int is_regex, char *err, size_t errlen);
void pattern_free(tok_pattern *p);
/* All matches of p in s[0..n), with the gaps between them as non-matches. */
void pattern_spans(const tok_pattern *p, tok_ctx *c, const char *s, size_t n, span_list *out);
/* Oniguruma-style find_iter: matches only (is_match = 1). */
void pattern_find(const tok_pattern *p, tok_ctx *c, const char *s, size_t n, span_list *out);
/* Replaces every match of p in s with `with`: the result is built in tmp and
 * swapped in (tmp keeps s's old storage). s is untouched when nothing matches. */
void pattern_replace(const tok_pattern *p, tok_ctx *c, tstr *s, const tstr *with, tstr *tmp);
void norm_apply(const tok_norm *nm, tok_ctx *c, tstr *s);
void norm_free(tok_norm *nm);
void pre_apply(const tok_pre *p, tok_ctx *c);
void pre_free(tok_pre *p);
void bytelevel_init(void);
extern char tok_byte_chars[256][3]; /* GPT-2 bytes_to_unicode as UTF-8 */
extern uint8_t tok_byte_char_len[256];
int tok_char_to_byte(uint32_t cp); /* inverse map; -1 when cp is not a byte char */
int tok_is_word_char(tok_ctx *c, const char *s, size_t n, size_t at);

/* ---- tok_bpe.c: the model ---- */
/* After the vocabulary is in m->vocab: reverse map, <0xXX> ids, cache lock. */
void bpe_load_vocab_done(tok_bpe *m);
int bpe_add_merge(tok_bpe *m, const char *a, size_t na, const char *b, size_t nb, uint32_t rank,
                  char *err, size_t errlen);
int bpe_tokenize(const tok_bpe *m, tok_ctx *c, const char *w, size_t n, tok_ids *out, char *err,
                 size_t errlen);
void bpe_free(tok_bpe *m);

/* ---- tok_decode.c ---- */
typedef struct tok_list {
    tstr *v;
    int64_t n, cap;
} tok_list;
tstr *toks_push(tok_list *l);
void toks_free(tok_list *l);
/* Runs one decoder (chain) over the token strings, in place. */
void dec_apply(const tok_dec *d, tok_ctx *c, tok_list *l);
void dec_free(tok_dec *d);

/* ---- tok_load.c ---- */
int tok_load_components(tokenizer *tok, const char *json, size_t n, char *err, size_t errlen);
void post_free(tok_post *p);

/* ---- tokenizer.c ---- */
struct cJSON;
/* Registers tokenizer.json's added_tokens (ids assigned as HF does) and builds
 * the two matching tries. Needs the model and normalizer loaded. */
int tok_load_added(tokenizer *tok, const struct cJSON *list, char *err, size_t errlen);
#endif
