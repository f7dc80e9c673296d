/* Decoders: turn token strings back into text, one HF decoder at a time
 * (each works on the whole list of token strings, like decode_chain). */
#include "tok_internal.h"
#include <stdlib.h>
#include <string.h>

tstr *toks_push(tok_list *l) {
    if (l->n == l->cap) {
        int64_t cap = l->cap ? l->cap * 2 : 16;
        l->v = tok_xrealloc(l->v, (size_t)cap * sizeof *l->v);
        memset(l->v + l->cap, 0, (size_t)(cap - l->cap) * sizeof *l->v);
        l->cap = cap;
    }
    tstr *t = &l->v[l->n++];
    tstr_clear(t);
    return t;
}

void toks_free(tok_list *l) {
    for (int64_t i = 0; i < l->cap; i++) tstr_free(&l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

/* Every token becomes its bytes (through the GPT-2 byte map when all its
 * characters are byte characters, else its raw UTF-8); one lossy UTF-8 string. */
static void dec_bytelevel(tok_ctx *c, tok_list *l) {
    tstr_clear(&c->work);
    for (int64_t i = 0; i < l->n; i++) {
        const tstr *t = &l->v[i];
        size_t start = c->work.n, k = 0;
        int all = 1;
        while (k < t->n) {
            int b = tok_char_to_byte(utf8_next(t->p, t->n, &k));
            if (b < 0) {
                all = 0;
                break;
            }
            tstr_putc(&c->work, (char)b);
        }
        if (!all) {
            c->work.n = start;
            tstr_put(&c->work, t->p, t->n);
        }
    }
    l->n = 0;
    tstr *out = toks_push(l);
    utf8_sanitize(c->work.p ? c->work.p : "", c->work.n, out);
}

static void dec_metaspace(const tok_dec *d, tok_ctx *c, tok_list *l) {
    for (int64_t i = 0; i < l->n; i++) {
        tstr *t = &l->v[i];
        tstr_clear(&c->work);
        for (size_t k = 0; k < t->n;) {
            if (d->content.n && k + d->content.n <= t->n && !memcmp(t->p + k, d->content.p, d->content.n)) {
                if (i != 0 || d->prepend_never) tstr_putc(&c->work, ' ');
                k += d->content.n;
            } else {
                tstr_putc(&c->work, t->p[k++]);
            }
        }
        tstr_swap(t, &c->work);
    }
}

static void dec_replace(const tok_dec *d, tok_ctx *c, tok_list *l) {
    for (int64_t i = 0; i < l->n; i++) pattern_replace(&d->pat, c, &l->v[i], &d->content, &c->work);
}

static int hex_digit(char ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

/* "<0xHH>" -> byte value, else -1. */
static int byte_token(const tstr *t) {
    if (t->n != 6 || memcmp(t->p, "<0x", 3) || t->p[5] != '>') return -1;
    int hi = hex_digit(t->p[3]), lo = hex_digit(t->p[4]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

/* Runs of <0xHH> tokens become their UTF-8 string, or one U+FFFD per byte when
 * the run is not valid UTF-8. */
static void flush_bytes(tok_list *out, tstr *bytes) {
    if (!bytes->n) return;
    if (utf8_valid(bytes->p, bytes->n)) {
        tstr_put(toks_push(out), bytes->p, bytes->n);
    } else {
        for (size_t k = 0; k < bytes->n; k++) tstr_put(toks_push(out), "\xEF\xBF\xBD", 3);
    }
    tstr_clear(bytes);
}

static void dec_bytefallback(tok_ctx *c, tok_list *l) {
    tok_list out = {0};
    tstr_clear(&c->work);
    for (int64_t i = 0; i < l->n; i++) {
        int b = byte_token(&l->v[i]);
        if (b >= 0) {
            tstr_putc(&c->work, (char)b);
            continue;
        }
        flush_bytes(&out, &c->work);
        tstr_swap(toks_push(&out), &l->v[i]);
    }
    flush_bytes(&out, &c->work);
    toks_free(l);
    *l = out;
}

static void dec_fuse(tok_ctx *c, tok_list *l) {
    tstr_clear(&c->work);
    for (int64_t i = 0; i < l->n; i++) tstr_put(&c->work, l->v[i].p, l->v[i].n);
    l->n = 0;
    tstr_swap(toks_push(l), &c->work);
}

/* Removes up to `start` leading and `stop` trailing copies of strip_char. */
static void dec_strip(const tok_dec *d, tok_list *l) {
    char ch[4];
    size_t w = (size_t)utf8_encode(d->strip_char, ch);
    for (int64_t i = 0; i < l->n; i++) {
        tstr *t = &l->v[i];
        size_t a = 0, b = t->n;
        for (int k = 0; k < d->start && a + w <= b && !memcmp(t->p + a, ch, w); k++) a += w;
        for (int k = 0; k < d->stop && b >= a + w && !memcmp(t->p + b - w, ch, w); k++) b -= w;
        if (t->p) memmove(t->p, t->p + a, b - a);
        t->n = b - a;
        if (t->p) t->p[t->n] = 0;
    }
}

static void dec_bpe(const tok_dec *d, tok_ctx *c, tok_list *l) {
    for (int64_t i = 0; i < l->n; i++) {
        tstr *t = &l->v[i];
        const char *rep = i == l->n - 1 ? "" : " ";
        tstr_clear(&c->work);
        for (size_t k = 0; k < t->n;) {
            if (d->content.n && k + d->content.n <= t->n && !memcmp(t->p + k, d->content.p, d->content.n)) {
                tstr_put(&c->work, rep, strlen(rep));
                k += d->content.n;
            } else {
                tstr_putc(&c->work, t->p[k++]);
            }
        }
        tstr_swap(t, &c->work);
    }
}

void dec_apply(const tok_dec *d, tok_ctx *c, tok_list *l) {
    switch (d->kind) {
    case D_SEQUENCE:
        for (int i = 0; i < d->nitems; i++) dec_apply(&d->items[i], c, l);
        break;
    case D_BYTELEVEL: dec_bytelevel(c, l); break;
    case D_METASPACE: dec_metaspace(d, c, l); break;
    case D_REPLACE: dec_replace(d, c, l); break;
    case D_BYTEFALLBACK: dec_bytefallback(c, l); break;
    case D_FUSE: dec_fuse(c, l); break;
    case D_STRIP: dec_strip(d, l); break;
    case D_BPE: dec_bpe(d, c, l); break;
    }
}

void dec_free(tok_dec *d) {
    if (!d) return;
    for (int i = 0; i < d->nitems; i++) dec_free(&d->items[i]);
    free(d->items);
    pattern_free(&d->pat);
    tstr_free(&d->content);
}
