/* CIDEr-D (pycocoevalcap's Cider) and the PTB-style caption tokenizer it is
 * fed with. Definitions, and where the tokenizer differs from Stanford's
 * PTBTokenizer: metrics.h. */
#include "metrics.h"
#include "../data/tok_internal.h"
#include "../kernels/check.h"
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ========================================================== tokenizer */

/* Lowercases and reads the Unicode quotes, dashes, ellipsis and spaces that
 * PTB normalises as their ASCII forms. */
static void ascii_forms(const char *text, tstr *out) {
    tstr clean = {0}, low = {0};
    utf8_sanitize(text, strlen(text), &clean);
    uni_lowercase(clean.p ? clean.p : "", clean.n, &low);
    for (size_t i = 0; i < low.n;) {
        size_t at = i;
        uint32_t cp = utf8_next(low.p, low.n, &i);
        if (cp == 0x2018 || cp == 0x2019) tstr_putc(out, '\'');
        else if (cp == 0x201C || cp == 0x201D) tstr_putc(out, '"');
        else if (cp == 0x2013 || cp == 0x2014) tstr_put(out, " -- ", 4);
        else if (cp == 0x2026) tstr_put(out, " ... ", 5);
        else if (uni_is_white_space(cp)) tstr_putc(out, ' ');
        else tstr_put(out, low.p + at, i - at);
    }
    tstr_free(&clean);
    tstr_free(&low);
}

static int is_digit_at(const char *s, size_t n, size_t i) {
    return i < n && s[i] >= '0' && s[i] <= '9';
}

static size_t run_of(const char *s, size_t n, size_t i, char c) {
    size_t j = i;
    while (j < n && s[j] == c) j++;
    return j - i;
}

/* Separates what PTB always splits off: brackets, $ % & and a '#' before a
 * digit become words of their own; " ` ; runs of 2+ '-', and ',' ':'
 * outside numbers become spaces (PTB's tokens for them are deleted later);
 * a run of 2+ '.' ends the word with a single '.', which the word keeps
 * only if it is an abbreviation. */
static void space_out(const char *s, size_t n, tstr *out) {
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if ((c && strchr("()[]{}$%&", c)) || (c == '#' && is_digit_at(s, n, i + 1))) {
            tstr_putc(out, ' ');
            tstr_putc(out, c);
            tstr_putc(out, ' ');
        } else if ((c == '"' || c == '`' || c == ';') ||
                   ((c == ',' || c == ':') && !(i > 0 && is_digit_at(s, n, i - 1) && is_digit_at(s, n, i + 1)))) {
            tstr_putc(out, ' ');
        } else if ((c == '.' || c == '-') && run_of(s, n, i, c) >= 2) {
            if (c == '.') tstr_putc(out, '.'); /* PTB gives an abbreviation its period: "mr...." -> mr. ... */
            i += run_of(s, n, i, c) - 1;
            tstr_putc(out, ' ');
        } else {
            tstr_putc(out, c);
        }
    }
}

/* pycocoevalcap deletes these tokens (its upper-case -LRB- etc. never match). */
static int is_deleted_token(const char *w, size_t n) {
    static const char *const deleted[] = {"''", "'", "``", "`", ".", "?", "!", ",", ":", "-", "--", "...", ";", "\""};
    for (size_t i = 0; i < sizeof deleted / sizeof deleted[0]; i++)
        if (strlen(deleted[i]) == n && !memcmp(deleted[i], w, n)) return 1;
    return 0;
}

static void emit(tstr *out, const char *w, size_t n) {
    static const char brackets[] = "()[]{}";
    static const char *const names[] = {"-lrb-", "-rrb-", "-lsb-", "-rsb-", "-lcb-", "-rcb-"};
    if (n == 0 || is_deleted_token(w, n)) return;
    const char *b = n == 1 && w[0] ? strchr(brackets, w[0]) : NULL;
    if (b) w = names[b - brackets], n = 5;
    if (out->n) tstr_putc(out, ' ');
    tstr_put(out, w, n);
}

static int word_is(const char *w, size_t n, const char *s) {
    return strlen(s) == n && !memcmp(w, s, n);
}

static int ends_with(const char *w, size_t n, const char *s) {
    size_t k = strlen(s);
    return n >= k && !memcmp(w + n - k, s, k);
}

/* Words that start with an apostrophe and stay whole ('90s too). */
static int is_apostrophe_word(const char *w, size_t n) {
    static const char *const words[] = {"'em", "'cause", "'til", "'n'", "'tis", "'twas"};
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        if (word_is(w, n, words[i])) return 1;
    size_t d = 1;
    while (d < n && isdigit((unsigned char)w[d])) d++;
    return n >= 3 && w[0] == '\'' && d > 1 && d == n - 1 && w[n - 1] == 's';
}

/* Abbreviations that keep their period in PTB whatever follows (found by
 * running PTBTokenizer on each in three contexts). */
static const char *const ptb_abbreviations[] = {
    "mr",   "mrs",  "ms",   "dr",    "st",   "jr",   "sr",   "etc",  "vs",   "mt",   "prof", "inc",  "co",
    "ltd",  "ave",  "jan",  "feb",   "mar",  "apr",  "jun",  "jul",  "aug",  "sep",  "sept", "oct",  "nov",
    "dec",  "gen",  "gov",  "sen",   "rep",  "lt",   "col",  "sgt",  "capt", "dept", "univ", "corp", "bros",
    "ft",   "est",  "blvd", "rd",    "cf",   "al",   "calif", "fla", "ariz", "mich", "minn", "penn", "va",
    "wis",  "mon",  "tue",  "wed",   "thu",  "fri",  "adm",  "maj",  "messrs", "rev", "hon", "pres", "supt",
    "assn", "adj",  "esq",  "mo",    "tel",  "ext",  "intl", "natl", "ph.d",
};

/* w[0..n) ends with '.' and keeps it: a letter ("a."), an acronym of single
 * letters ("u.s.", "e.g.") or an abbreviation from the list. */
static int is_abbreviation(const char *w, size_t n) {
    size_t b = n - 1; /* the body before the final '.' */
    int acronym = b % 2 == 1;
    for (size_t i = 0; i < b && acronym; i++) /* letter, '.', letter, ... */
        acronym = i % 2 ? w[i] == '.' : isalpha((unsigned char)w[i]) != 0;
    if (acronym) return 1;
    for (size_t i = 0; i < sizeof ptb_abbreviations / sizeof ptb_abbreviations[0]; i++)
        if (strlen(ptb_abbreviations[i]) == b && !memcmp(ptb_abbreviations[i], w, b)) return 1;
    return 0;
}

/* Splits clitics off the end, innermost first: "can't've" -> ca n't 've. */
static void emit_with_clitics(tstr *out, const char *w, size_t n) {
    static const char *const clitics[] = {"n't", "'s", "'m", "'d", "'ll", "'re", "'ve"};
    for (size_t i = 0; i < sizeof clitics / sizeof clitics[0]; i++) {
        size_t k = strlen(clitics[i]);
        if (n > k && ends_with(w, n, clitics[i])) {
            emit_with_clitics(out, w, n - k);
            emit(out, w + n - k, k);
            return;
        }
    }
    emit(out, w, n);
}

/* The word left after peeling: PTB's two-part words, then clitics. */
static void emit_stem(tstr *out, const char *w, size_t n) {
    static const char *const split[][3] = {{"cannot", "can", "not"}, {"gonna", "gon", "na"}, {"wanna", "wan", "na"},
                                           {"gotta", "got", "ta"},   {"lemme", "lem", "me"}, {"gimme", "gim", "me"},
                                           {"'tis", "'t", "is"},     {"'twas", "'t", "was"}};
    for (size_t i = 0; i < sizeof split / sizeof split[0]; i++) {
        if (word_is(w, n, split[i][0])) {
            emit(out, split[i][1], strlen(split[i][1]));
            emit(out, split[i][2], strlen(split[i][2]));
            return;
        }
    }
    emit_with_clitics(out, w, n);
}

/* Peels what PTB splits off the front: quotes, hyphens before letters,
 * periods before letters (all deleted) and runs of ? and ! (emitted; emit
 * deletes a lone one). */
static void peel_prefix(tstr *out, const char **w, size_t *n) {
    while (*n > 1) {
        const char *s = *w;
        size_t k = 0;
        while (k < *n && (s[k] == '?' || s[k] == '!')) k++;
        if (k > 0 && k < *n) {
            emit(out, s, k);
        } else {
            int quote = s[0] == '\'' && !is_apostrophe_word(s, *n);
            int hyphen = s[0] == '-' && !isdigit((unsigned char)s[1]);
            int period = s[0] == '.' && isalpha((unsigned char)s[1]);
            if (!quote && !hyphen && !period) return;
            k = 1;
        }
        *w += k, *n -= k;
    }
}

typedef struct {
    /* kept suffix tokens, in peeling order (?! runs past 16 after one word
     * are dropped: no text PTB tokenizes sensibly has them) */
    size_t off[16], len[16];
    int n;
} suffixes;

/* Peels trailing quotes, hyphens, periods (not an abbreviation's) and runs
 * of ? and ! (kept unless a lone one); returns the stem's length. */
static size_t peel_suffix(const char *w, size_t n, suffixes *kept) {
    while (n > 0 && !is_apostrophe_word(w, n)) {
        char last = w[n - 1];
        if (last == '\'' || last == '-' || (last == '.' && !is_abbreviation(w, n))) {
            n--;
        } else if (last == '?' || last == '!') {
            size_t k = n;
            while (k > 0 && (w[k - 1] == '?' || w[k - 1] == '!')) k--;
            if (n - k > 1 && kept->n < 16) kept->off[kept->n] = k, kept->len[kept->n++] = n - k;
            n = k;
        } else {
            break;
        }
    }
    return n;
}

static void tokenize_word(tstr *out, const char *w, size_t n) {
    peel_prefix(out, &w, &n);
    suffixes kept = {.n = 0};
    size_t stem = peel_suffix(w, n, &kept);
    if (stem) emit_stem(out, w, stem);
    for (int i = kept.n - 1; i >= 0; i--) emit(out, w + kept.off[i], kept.len[i]);
}

char *metric_caption_tokenize(const char *text) {
    tstr forms = {0}, spaced = {0}, out = {0};
    ascii_forms(text, &forms);
    space_out(forms.p ? forms.p : "", forms.n, &spaced);
    for (size_t i = 0; i < spaced.n;) {
        while (i < spaced.n && spaced.p[i] == ' ') i++;
        size_t start = i;
        while (i < spaced.n && spaced.p[i] != ' ') i++;
        if (i > start) tokenize_word(&out, spaced.p + start, i - start);
    }
    tstr_free(&forms);
    tstr_free(&spaced);
    return out.p ? out.p : strdup("");
}

/* ============================================================ CIDEr-D */

enum { CIDER_N = 4 };
static const double cider_sigma = 6.0;

typedef struct {
    int32_t gram, count;
} gram_count;

typedef struct {
    int64_t off, n;  /* entries in counts, sorted by gram id */
    int64_t bigrams; /* pycocoevalcap's "length": the number of 2-grams */
} sentence;

typedef struct {
    int64_t cand, ref0; /* sentence indices; refs are ref0 .. ref0 + nref - 1 */
    int32_t nref;
} cider_item;

struct cider_scorer {
    strmap words;      /* token -> word id */
    strmap grams;      /* word ids (4 bytes each) -> n-gram id */
    int8_t *gram_len;  /* n of each n-gram id */
    gram_count *counts;
    sentence *sents;
    cider_item *items;
    int64_t n_grams, cap_grams, n_counts, cap_counts, n_sents, cap_sents, n_items, cap_items;
};

cider_scorer *cider_new(void) {
    cider_scorer *s = calloc(1, sizeof *s);
    AIMC_CHECK(s, "cider_new: out of memory");
    return s;
}

void cider_free(cider_scorer *s) {
    if (!s) return;
    strmap_free(&s->words);
    strmap_free(&s->grams);
    free(s->gram_len);
    free(s->counts);
    free(s->sents);
    free(s->items);
    free(s);
}

int64_t cider_count(const cider_scorer *s) {
    return s->n_items;
}

static int32_t intern(strmap *m, const char *key, size_t n, int64_t next_id) {
    const int32_t *id = strmap_get(m, key, n);
    if (id) return *id;
    AIMC_CHECK(next_id < INT32_MAX, "cider: too many distinct words or n-grams");
    strmap_set(m, key, n, (int32_t)next_id);
    return (int32_t)next_id;
}

static void push_word(cider_scorer *s, int32_t **ids, int64_t *n, int64_t *cap, const char *w, size_t len) {
    *ids = aimc_grow(*ids, cap, *n + 1, sizeof **ids, 16);
    (*ids)[(*n)++] = intern(&s->words, w, len, (int64_t)s->words.n);
}

/* Word ids of a tokenized sentence (split on Python whitespace, as str.split). */
static int32_t *word_ids(cider_scorer *s, const char *text, int64_t *count) {
    tstr t = {0};
    utf8_sanitize(text, strlen(text), &t);
    int64_t n = 0, cap = 0;
    int32_t *ids = NULL;
    size_t i = 0, start = 0;
    int in_word = 0;
    while (i < t.n) {
        size_t at = i;
        int space = uni_is_python_space(utf8_next(t.p, t.n, &i));
        if (!space && !in_word) start = at, in_word = 1;
        else if (space && in_word) push_word(s, &ids, &n, &cap, t.p + start, at - start), in_word = 0;
    }
    if (in_word) push_word(s, &ids, &n, &cap, t.p + start, t.n - start);
    tstr_free(&t);
    *count = n;
    return ids;
}

static int by_int32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

static int32_t gram_id(cider_scorer *s, const int32_t *ids, int k) {
    int64_t before = s->grams.n;
    int32_t g = intern(&s->grams, (const char *)ids, (size_t)k * sizeof *ids, before);
    if (s->grams.n > before) {
        s->gram_len = aimc_grow(s->gram_len, &s->cap_grams, s->grams.n, sizeof *s->gram_len, 16);
        s->gram_len[g] = (int8_t)k;
        s->n_grams = s->grams.n;
    }
    return g;
}

/* Appends one sentence's n-gram counts (n = 1..4); returns its index. */
static int64_t add_sentence(cider_scorer *s, const char *text) {
    int64_t nw;
    int32_t *ids = word_ids(s, text, &nw);
    int64_t total = 0, cap = 0;
    int32_t *grams = NULL;
    for (int k = 1; k <= CIDER_N; k++)
        for (int64_t i = 0; i + k <= nw; i++) {
            grams = aimc_grow(grams, &cap, total + 1, sizeof *grams, 16);
            grams[total++] = gram_id(s, ids + i, k);
        }
    if (total) qsort(grams, (size_t)total, sizeof *grams, by_int32);
    sentence sent = {s->n_counts, 0, nw > 1 ? nw - 1 : 0};
    for (int64_t i = 0; i < total;) {
        int64_t j = i;
        while (j < total && grams[j] == grams[i]) j++;
        s->counts = aimc_grow(s->counts, &s->cap_counts, s->n_counts + 1, sizeof *s->counts, 16);
        s->counts[s->n_counts++] = (gram_count){grams[i], (int32_t)(j - i)};
        sent.n++;
        i = j;
    }
    free(grams);
    free(ids);
    s->sents = aimc_grow(s->sents, &s->cap_sents, s->n_sents + 1, sizeof *s->sents, 16);
    s->sents[s->n_sents] = sent;
    return s->n_sents++;
}

void cider_add_tokenized(cider_scorer *s, const char *candidate, const char *const *refs, int n_refs) {
    AIMC_CHECK(n_refs >= 1 && refs, "cider_add: an item needs at least one reference (got %d)", n_refs);
    cider_item it = {add_sentence(s, candidate), s->n_sents, n_refs};
    for (int r = 0; r < n_refs; r++) add_sentence(s, refs[r]);
    s->items = aimc_grow(s->items, &s->cap_items, s->n_items + 1, sizeof *s->items, 16);
    s->items[s->n_items++] = it;
}

void cider_add(cider_scorer *s, const char *candidate, const char *const *refs, int n_refs) {
    AIMC_CHECK(n_refs >= 1 && refs, "cider_add: an item needs at least one reference (got %d)", n_refs);
    char **tok = malloc((size_t)n_refs * sizeof *tok);
    AIMC_CHECK(tok, "cider_add: out of memory");
    for (int r = 0; r < n_refs; r++) tok[r] = metric_caption_tokenize(refs[r]);
    char *cand = metric_caption_tokenize(candidate);
    cider_add_tokenized(s, cand, (const char *const *)tok, n_refs);
    for (int r = 0; r < n_refs; r++) free(tok[r]);
    free(tok);
    free(cand);
}

/* idf of every n-gram: log(#items) - log(max(1, df)), df = the number of
 * items whose references contain it. */
static double *inverse_doc_freq(const cider_scorer *s) {
    int64_t n = s->n_grams ? s->n_grams : 1;
    int32_t *df = calloc((size_t)n, sizeof *df);
    int64_t *seen_in = malloc((size_t)n * sizeof *seen_in);
    double *idf = malloc((size_t)n * sizeof *idf);
    AIMC_CHECK(df && seen_in && idf, "cider: out of memory");
    for (int64_t g = 0; g < n; g++) seen_in[g] = -1;
    for (int64_t it = 0; it < s->n_items; it++)
        for (int32_t r = 0; r < s->items[it].nref; r++) {
            const sentence *ref = &s->sents[s->items[it].ref0 + r];
            for (int64_t e = ref->off; e < ref->off + ref->n; e++) {
                int32_t g = s->counts[e].gram;
                if (seen_in[g] != it) seen_in[g] = it, df[g]++;
            }
        }
    double ref_len = log((double)s->n_items);
    for (int64_t g = 0; g < n; g++) idf[g] = ref_len - log(fmax(1.0, (double)df[g]));
    free(df);
    free(seen_in);
    return idf;
}

/* TF-IDF weights of a sentence's entries, and their norm per n. */
static void tfidf(const cider_scorer *s, const sentence *x, const double *idf, double *w, double norm[CIDER_N]) {
    for (int k = 0; k < CIDER_N; k++) norm[k] = 0;
    for (int64_t e = 0; e < x->n; e++) {
        const gram_count *c = &s->counts[x->off + e];
        w[e] = (double)c->count * idf[c->gram];
        norm[s->gram_len[c->gram] - 1] += w[e] * w[e];
    }
    for (int k = 0; k < CIDER_N; k++) norm[k] = sqrt(norm[k]);
}

/* Per n: the clipped cosine of candidate and reference times the Gaussian
 * length penalty, added into val. */
static void add_similarity(const cider_scorer *s, const sentence *c, const double *wc, const double nc[CIDER_N],
                           const sentence *r, const double *wr, const double nr[CIDER_N], double val[CIDER_N]) {
    double dot[CIDER_N] = {0};
    for (int64_t i = 0, j = 0; i < c->n && j < r->n;) { /* merge the sorted gram lists */
        int32_t gc = s->counts[c->off + i].gram, gr = s->counts[r->off + j].gram;
        if (gc < gr) i++;
        else if (gr < gc) j++;
        else dot[s->gram_len[gc] - 1] += fmin(wc[i], wr[j]) * wr[j], i++, j++;
    }
    double delta = (double)(c->bigrams - r->bigrams);
    double penalty = exp(-(delta * delta) / (2 * cider_sigma * cider_sigma));
    for (int k = 0; k < CIDER_N; k++) {
        if (nc[k] != 0 && nr[k] != 0) dot[k] /= nc[k] * nr[k];
        val[k] += dot[k] * penalty;
    }
}

static int64_t longest_sentence(const cider_scorer *s) {
    int64_t m = 1;
    for (int64_t i = 0; i < s->n_sents; i++)
        if (s->sents[i].n > m) m = s->sents[i].n;
    return m;
}

static double item_score(const cider_scorer *s, const cider_item *it, const double *idf, double *wc, double *wr) {
    const sentence *c = &s->sents[it->cand];
    double nc[CIDER_N], nr[CIDER_N], val[CIDER_N] = {0};
    tfidf(s, c, idf, wc, nc);
    for (int32_t r = 0; r < it->nref; r++) {
        const sentence *ref = &s->sents[it->ref0 + r];
        tfidf(s, ref, idf, wr, nr);
        add_similarity(s, c, wc, nc, ref, wr, nr, val);
    }
    double mean = 0;
    for (int k = 0; k < CIDER_N; k++) mean += val[k];
    return mean / CIDER_N / it->nref * 10.0;
}

double cider_compute(cider_scorer *s, double *per_item) {
    if (s->n_items == 0) return NAN;
    double *idf = inverse_doc_freq(s);
    int64_t longest = longest_sentence(s);
    double *wc = malloc((size_t)longest * sizeof *wc), *wr = malloc((size_t)longest * sizeof *wr);
    AIMC_CHECK(wc && wr, "cider: out of memory");
    double sum = 0;
    for (int64_t i = 0; i < s->n_items; i++) {
        double score = item_score(s, &s->items[i], idf, wc, wr);
        if (per_item) per_item[i] = score;
        sum += score;
    }
    free(wc);
    free(wr);
    free(idf);
    return sum / (double)s->n_items;
}
