/* UTF-8 handling, whitespace classes, lowercasing and NFC for the tokenizer. */
#include "tok_internal.h"
#include "utf8.h"
#include "../kernels/check.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void *tok_xrealloc(void *p, size_t bytes) {
    void *q = realloc(p, bytes ? bytes : 1);
    AIMC_CHECK(q, "tokenizer: out of memory (%zu bytes)", bytes);
    return q;
}

void tstr_reserve(tstr *s, size_t extra) {
    if (s->n + extra + 1 <= s->cap) return;
    size_t cap = s->cap ? s->cap : 64;
    while (cap < s->n + extra + 1) cap *= 2;
    s->p = tok_xrealloc(s->p, cap);
    s->cap = cap;
}

void tstr_put(tstr *s, const char *p, size_t n) {
    tstr_reserve(s, n);
    if (n) memcpy(s->p + s->n, p, n);
    s->n += n;
    s->p[s->n] = 0;
}

void tstr_putc(tstr *s, char c) {
    tstr_reserve(s, 1);
    s->p[s->n++] = c;
    s->p[s->n] = 0;
}

void tstr_put_cp(tstr *s, uint32_t cp) {
    char b[4];
    tstr_put(s, b, (size_t)utf8_encode(cp, b));
}

void tstr_free(tstr *s) {
    free(s->p);
    s->p = NULL;
    s->n = s->cap = 0;
}

void ids_push(tok_ids *v, int32_t id) {
    if (v->n == v->cap) {
        v->cap = v->cap ? v->cap * 2 : 64;
        v->ids = tok_xrealloc(v->ids, (size_t)v->cap * sizeof *v->ids);
    }
    v->ids[v->n++] = id;
}

void tok_ids_free(tok_ids *ids) {
    free(ids->ids);
    ids->ids = NULL;
    ids->n = ids->cap = 0;
}

/* ---------------------------------------------------------------- UTF-8 */

uint32_t utf8_next(const char *str, size_t n, size_t *i) {
    const unsigned char *s = (const unsigned char *)str;
    size_t k = *i;
    uint32_t c = s[k];
    if (c < 0x80 || k + 1 >= n) {
        *i = k + 1;
        return c;
    }
    if (c < 0xE0) {
        *i = k + 2;
        return ((c & 0x1F) << 6) | (s[k + 1] & 0x3F);
    }
    if (c < 0xF0) {
        *i = k + 3;
        return ((c & 0x0F) << 12) | ((uint32_t)(s[k + 1] & 0x3F) << 6) | (s[k + 2] & 0x3F);
    }
    *i = k + 4;
    return ((c & 0x07) << 18) | ((uint32_t)(s[k + 1] & 0x3F) << 12) | ((uint32_t)(s[k + 2] & 0x3F) << 6) |
           (s[k + 3] & 0x3F);
}

int utf8_encode(uint32_t cp, char out[4]) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

void utf8_sanitize(const char *in, size_t n, tstr *out) {
    const unsigned char *s = (const unsigned char *)in;
    size_t i = 0, run = 0; /* run: start of the pending valid bytes */
    tstr_reserve(out, n);
    while (i < n) {
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        size_t bad = 0, len = utf8_seq_len(s + i, n - i, &bad);
        if (len) {
            i += len;
            continue;
        }
        tstr_put(out, in + run, i - run);
        tstr_put(out, "\xEF\xBF\xBD", 3);
        i += bad;
        run = i;
    }
    tstr_put(out, in + run, n - run);
}

int utf8_valid(const char *in, size_t n) {
    const unsigned char *s = (const unsigned char *)in;
    for (size_t i = 0; i < n;) {
        size_t bad = 0, len = s[i] < 0x80 ? 1 : utf8_seq_len(s + i, n - i, &bad);
        if (!len) return 0;
        i += len;
    }
    return 1;
}

/* ------------------------------------------------------ character classes */

int uni_is_white_space(uint32_t c) {
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
           c == 0x3000;
}

int uni_is_python_space(uint32_t c) {
    return uni_is_white_space(c) || (c >= 0x1C && c <= 0x1F);
}

/* ------------------------------------------------------------- lowercase */

static uint32_t lower_simple(uint32_t cp) {
    int lo = 0, hi = tok_n_lower_runs - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        const tok_case_run *r = &tok_lower_runs[mid];
        if (cp < r->start) hi = mid - 1;
        else if (cp > r->end) lo = mid + 1;
        else return (cp - r->start) % (uint32_t)r->stride == 0 ? (uint32_t)((int32_t)cp + r->delta) : cp;
    }
    return cp;
}

void uni_lowercase(const char *s, size_t n, tstr *out) {
    tstr_reserve(out, n);
    for (size_t i = 0; i < n;) {
        unsigned char b = (unsigned char)s[i];
        if (b < 0x80) {
            tstr_putc(out, (char)(b >= 'A' && b <= 'Z' ? b + 32 : b));
            i++;
            continue;
        }
        uint32_t cp = utf8_next(s, n, &i);
        if (cp == 0x130) { /* the one multi-char lowercase: İ -> i + combining dot above */
            tstr_put(out, "i\xCC\x87", 3);
            continue;
        }
        tstr_put_cp(out, lower_simple(cp));
    }
}

/* ------------------------------------------------------------------- NFC */

enum { S_BASE = 0xAC00, L_BASE = 0x1100, V_BASE = 0x1161, T_BASE = 0x11A7, L_COUNT = 19, V_COUNT = 21,
       T_COUNT = 28, N_COUNT = V_COUNT * T_COUNT, S_COUNT = L_COUNT * N_COUNT };

static uint32_t ccc_of(uint32_t cp) {
    int lo = 0, hi = tok_n_ccc_runs - 1;
    if (cp < 0x300) return 0;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (cp < tok_ccc_runs[mid].start) hi = mid - 1;
        else if (cp > tok_ccc_runs[mid].end) lo = mid + 1;
        else return tok_ccc_runs[mid].ccc;
    }
    return 0;
}

static const tok_decomp *decomp_of(uint32_t cp) {
    int lo = 0, hi = tok_n_decomps - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (cp < tok_decomps[mid].cp) hi = mid - 1;
        else if (cp > tok_decomps[mid].cp) lo = mid + 1;
        else return &tok_decomps[mid];
    }
    return NULL;
}

/* The primary composite of a + b, or 0. */
static uint32_t compose_pair(uint32_t a, uint32_t b) {
    if (a >= L_BASE && a < L_BASE + L_COUNT && b >= V_BASE && b < V_BASE + V_COUNT)
        return S_BASE + ((a - L_BASE) * V_COUNT + (b - V_BASE)) * T_COUNT;
    if (a >= S_BASE && a < S_BASE + S_COUNT && (a - S_BASE) % T_COUNT == 0 && b > T_BASE &&
        b < T_BASE + T_COUNT)
        return a + (b - T_BASE);
    int lo = 0, hi = tok_n_comps - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        const tok_comp *c = &tok_comps[mid];
        if (a < c->a || (a == c->a && b < c->b)) hi = mid - 1;
        else if (a > c->a || b > c->b) lo = mid + 1;
        else return c->c;
    }
    return 0;
}

typedef struct cp_buf {
    uint32_t *v;
    size_t n, cap;
} cp_buf;

static void cp_push(cp_buf *b, uint32_t cp) {
    if (b->n == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 64;
        b->v = tok_xrealloc(b->v, b->cap * sizeof *b->v);
    }
    b->v[b->n++] = cp;
}

static void decompose_into(cp_buf *b, uint32_t cp) {
    if (cp < 0xC0) { /* nothing below U+00C0 decomposes */
        cp_push(b, cp);
        return;
    }
    if (cp >= S_BASE && cp < S_BASE + S_COUNT) {
        uint32_t s = cp - S_BASE;
        cp_push(b, L_BASE + s / N_COUNT);
        cp_push(b, V_BASE + (s % N_COUNT) / T_COUNT);
        if (s % T_COUNT) cp_push(b, T_BASE + s % T_COUNT);
        return;
    }
    const tok_decomp *d = decomp_of(cp);
    if (!d) {
        cp_push(b, cp);
        return;
    }
    for (uint32_t k = 0; k < d->len; k++) cp_push(b, tok_decomp_cps[d->off + k]);
}

/* Canonical ordering: stable insertion sort of each run of non-starters. */
static void reorder_marks(cp_buf *b) {
    for (size_t i = 1; i < b->n; i++) {
        uint32_t c = b->v[i], cc = ccc_of(c);
        if (!cc) continue;
        size_t j = i;
        while (j > 0 && ccc_of(b->v[j - 1]) > cc) {
            b->v[j] = b->v[j - 1];
            j--;
        }
        b->v[j] = c;
    }
}

/* Canonical composition in place; returns the new length. */
static size_t compose_all(cp_buf *b) {
    size_t out = 0;
    int64_t starter = -1;
    uint32_t last_cc = 0;
    for (size_t i = 0; i < b->n; i++) {
        uint32_t c = b->v[i], cc = ccc_of(c);
        if (starter >= 0) {
            int adjacent = (int64_t)out - 1 == starter;
            int blocked = !adjacent && (last_cc == 0 || last_cc >= cc);
            /* every second element of a composition is >= U+0300 */
            uint32_t comp = blocked || c < 0x300 ? 0 : compose_pair(b->v[starter], c);
            if (comp) {
                b->v[starter] = comp;
                continue;
            }
        }
        if (cc == 0) starter = (int64_t)out;
        last_cc = cc;
        b->v[out++] = c;
    }
    return out;
}

void uni_nfc(const char *s, size_t n, tstr *out) {
    size_t i = 0;
    while (i < n && (unsigned char)s[i] < 0xCC) i++; /* every code point below U+0300 is NFC-stable */
    if (i == n) {
        tstr_put(out, s, n);
        return;
    }
    cp_buf b = {0};
    for (i = 0; i < n;) decompose_into(&b, utf8_next(s, n, &i));
    reorder_marks(&b);
    size_t m = compose_all(&b);
    tstr_reserve(out, n);
    for (size_t k = 0; k < m; k++) tstr_put_cp(out, b.v[k]);
    free(b.v);
}
