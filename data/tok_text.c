/* Text stages before the model: regex/literal patterns (PCRE2 with Oniguruma's
 * class meanings), normalizers, pre-tokenizers and the GPT-2 byte map. */
#include "tok_internal.h"
#include "../kernels/check.h"
#include <stdlib.h>
#include <string.h>

/* Oniguruma's Unicode \w (what HF's Rust regexes mean) and Rust regex's \w
 * (what HF's added-token single_word test means). */
#define ONIG_WORD "\\p{L}\\p{M}\\p{N}\\p{Pc}"
#define RUST_WORD "[\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\p{Join_Control}]"

char tok_byte_chars[256][3];
uint8_t tok_byte_char_len[256];
static int16_t char_to_byte[0x144];
static pthread_once_t byte_map_once = PTHREAD_ONCE_INIT;
static pthread_once_t word_re_once = PTHREAD_ONCE_INIT;
static pcre2_code *word_re;

/* ------------------------------------------------------------- spans */

static void spans_push(span_list *l, size_t s, size_t e, int is_match) {
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 64;
        l->v = tok_xrealloc(l->v, (size_t)l->cap * sizeof *l->v);
    }
    l->v[l->n++] = (tok_span){s, e, is_match};
}

void pieces_push(piece_list *l, size_t off, size_t len, int32_t id, int at_start) {
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 64;
        l->v = tok_xrealloc(l->v, (size_t)l->cap * sizeof *l->v);
    }
    l->v[l->n++] = (tok_piece){off, len, id, (uint8_t)(at_start != 0)};
}

/* ---------------------------------------------------------- patterns */

/* Copies a regex, rewriting \s \S \w \W \h \H to Oniguruma's meanings (PCRE2's
 * UCP \s also matches U+180E, its \w lacks marks, its \h is horizontal space). */
static int rewrite_regex(const char *src, size_t n, tstr *out, char *err, size_t errlen) {
    int in_class = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = src[i];
        if (ch == '\\' && i + 1 < n) {
            char e = src[++i];
            const char *rep = e == 's' ? "\\p{White_Space}" : e == 'S' ? "\\P{White_Space}"
                            : e == 'w' ? (in_class ? ONIG_WORD : "[" ONIG_WORD "]")
                            : e == 'h' ? (in_class ? "0-9a-fA-F" : "[0-9a-fA-F]")
                            : e == 'W' ? "[^" ONIG_WORD "]" : e == 'H' ? "[^0-9a-fA-F]" : NULL;
            if (in_class && (e == 'W' || e == 'H')) {
                aimc_set_err(err, errlen, "regex '%.*s': \\%c inside a character class is not supported", (int)n, src,
                             e);
                return -1;
            }
            if (rep) tstr_put(out, rep, strlen(rep));
            else tstr_putc(out, ch), tstr_putc(out, e);
            continue;
        }
        if (in_class && ch == '[' && i + 1 < n && src[i + 1] == ':') { /* POSIX [:name:] */
            const char *end = strstr(src + i, ":]");
            size_t stop = end && (size_t)(end - src) < n ? (size_t)(end - src) + 2 : n;
            tstr_put(out, src + i, stop - i);
            i = stop - 1;
            continue;
        }
        tstr_putc(out, ch);
        if (!in_class && ch == '[') {
            in_class = 1;
            if (i + 1 < n && src[i + 1] == '^') tstr_putc(out, src[++i]);
            if (i + 1 < n && src[i + 1] == ']') tstr_putc(out, src[++i]); /* a leading ] is literal */
        } else if (in_class && ch == ']') {
            in_class = 0;
        }
    }
    return 0;
}

int pattern_compile(tok_pattern *p, const char *src, size_t n, int is_regex, char *err, size_t errlen) {
    memset(p, 0, sizeof *p);
    p->is_regex = is_regex;
    if (!is_regex) {
        tstr_put(&p->literal, src, n);
        return 0;
    }
    tstr rx = {0};
    if (rewrite_regex(src, n, &rx, err, errlen)) {
        tstr_free(&rx);
        return -1;
    }
    int code;
    PCRE2_SIZE at;
    p->re = pcre2_compile((PCRE2_SPTR)rx.p, rx.n, PCRE2_UTF | PCRE2_UCP, &code, &at, NULL);
    tstr_free(&rx);
    if (!p->re) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(code, msg, sizeof msg);
        aimc_set_err(err, errlen, "regex '%.*s' does not compile: %s", (int)n, src, (const char *)msg);
        return -1;
    }
    pcre2_jit_compile(p->re, PCRE2_JIT_COMPLETE); /* falls back to the interpreter if unavailable */
    return 0;
}

void pattern_free(tok_pattern *p) {
    tstr_free(&p->literal);
    if (p->re) pcre2_code_free(p->re);
    p->re = NULL;
}

static size_t char_len_at(const char *s, size_t n, size_t at) {
    size_t i = at;
    utf8_next(s, n, &i);
    return i - at;
}

static int regex_match_at(const pcre2_code *re, tok_ctx *c, const char *s, size_t n, size_t from,
                          size_t *ms, size_t *me) {
    int rc = pcre2_match(re, (PCRE2_SPTR)s, n, from, PCRE2_NO_UTF_CHECK, c->md, NULL);
    if (rc < 0 && rc != PCRE2_ERROR_NOMATCH) /* JIT stack or match limits: retry interpreted */
        rc = pcre2_match(re, (PCRE2_SPTR)s, n, from, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, c->md, NULL);
    if (rc < 0) return 0;
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(c->md);
    *ms = ov[0];
    *me = ov[1];
    return 1;
}

/* rust-onig's find_iter: an empty match right where the previous match ended
 * is skipped by stepping one character. */
static void regex_find(const pcre2_code *re, tok_ctx *c, const char *s, size_t n, span_list *out) {
    size_t from = 0, last_match_end = 0, ms, me;
    int have_last = 0;
    while (from <= n && regex_match_at(re, c, s, n, from, &ms, &me)) {
        if (ms == me && have_last && last_match_end == me) {
            if (from >= n) break;
            from += char_len_at(s, n, from);
            continue;
        }
        spans_push(out, ms, me, 1);
        from = last_match_end = me;
        have_last = 1;
    }
}

void pattern_find(const tok_pattern *p, tok_ctx *c, const char *s, size_t n, span_list *out) {
    out->n = 0;
    if (p->is_regex) {
        regex_find(p->re, c, s, n, out);
        return;
    }
    size_t k = p->literal.n;
    if (!k) return;
    for (size_t i = 0; i + k <= n;) {
        const char *hit = memmem(s + i, n - i, p->literal.p, k);
        if (!hit) break;
        size_t at = (size_t)(hit - s);
        spans_push(out, at, at + k, 1);
        i = at + k;
    }
}

void pattern_spans(const tok_pattern *p, tok_ctx *c, const char *s, size_t n, span_list *out) {
    out->n = 0;
    if (!n) {
        spans_push(out, 0, 0, 0);
        return;
    }
    pattern_find(p, c, s, n, &c->found);
    size_t prev = 0;
    for (int64_t i = 0; i < c->found.n; i++) {
        tok_span m = c->found.v[i];
        if (prev != m.s) spans_push(out, prev, m.s, 0);
        spans_push(out, m.s, m.e, 1);
        prev = m.e;
    }
    if (prev != n) spans_push(out, prev, n, 0);
}

/* --------------------------------------------------------- normalizers */

void pattern_replace(const tok_pattern *p, tok_ctx *c, tstr *s, const tstr *with, tstr *tmp) {
    pattern_find(p, c, s->p ? s->p : "", s->n, &c->spans);
    if (!c->spans.n) return;
    tstr_clear(tmp);
    size_t prev = 0;
    for (int64_t i = 0; i < c->spans.n; i++) {
        tstr_put(tmp, s->p + prev, c->spans.v[i].s - prev);
        tstr_put(tmp, with->p, with->n);
        prev = c->spans.v[i].e;
    }
    tstr_put(tmp, s->p + prev, s->n - prev);
    tstr_swap(s, tmp);
}

static void strip_white(const tok_norm *nm, tstr *s) {
    size_t a = 0, b = s->n;
    while (nm->left && a < b) {
        size_t i = a;
        if (!uni_is_white_space(utf8_next(s->p, s->n, &i))) break;
        a = i;
    }
    while (nm->right && b > a) {
        size_t st = b - 1;
        while (st > a && ((unsigned char)s->p[st] & 0xC0) == 0x80) st--;
        size_t i = st;
        if (!uni_is_white_space(utf8_next(s->p, s->n, &i))) break;
        b = st;
    }
    memmove(s->p, s->p + a, b - a);
    s->n = b - a;
    s->p[s->n] = 0;
}

void norm_apply(const tok_norm *nm, tok_ctx *c, tstr *s) {
    switch (nm->kind) {
    case N_SEQUENCE:
        for (int i = 0; i < nm->nitems; i++) norm_apply(&nm->items[i], c, s);
        return;
    case N_PREPEND:
        if (!s->n) return;
        tstr_clear(&c->scratch);
        tstr_put(&c->scratch, nm->content.p, nm->content.n);
        tstr_put(&c->scratch, s->p, s->n);
        break;
    case N_REPLACE: pattern_replace(&nm->pat, c, s, &nm->content, &c->scratch); return;
    case N_NFC:
        tstr_clear(&c->scratch);
        uni_nfc(s->p, s->n, &c->scratch);
        break;
    case N_LOWERCASE:
        tstr_clear(&c->scratch);
        uni_lowercase(s->p, s->n, &c->scratch);
        break;
    case N_STRIP:
        if (s->n) strip_white(nm, s);
        return;
    }
    tstr_swap(s, &c->scratch);
}

void norm_free(tok_norm *nm) {
    if (!nm) return;
    for (int i = 0; i < nm->nitems; i++) norm_free(&nm->items[i]);
    free(nm->items);
    tstr_free(&nm->content);
    pattern_free(&nm->pat);
}

/* ------------------------------------------------------ GPT-2 byte map */

static void build_byte_map(void) {
    int n = 0;
    for (int i = 0; i < 0x144; i++) char_to_byte[i] = -1;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        uint32_t cp = printable ? (uint32_t)b : 256u + (uint32_t)n++;
        tok_byte_char_len[b] = (uint8_t)utf8_encode(cp, tok_byte_chars[b]);
        char_to_byte[cp] = (int16_t)b;
    }
}

void bytelevel_init(void) {
    pthread_once(&byte_map_once, build_byte_map);
}

int tok_char_to_byte(uint32_t cp) {
    return cp < 0x144 ? char_to_byte[cp] : -1;
}

/* ------------------------------------------------------ word characters */

static void build_word_re(void) {
    int code;
    PCRE2_SIZE at;
    word_re = pcre2_compile((PCRE2_SPTR)RUST_WORD, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &code, &at, NULL);
}

int tok_is_word_char(tok_ctx *c, const char *s, size_t n, size_t at) {
    pthread_once(&word_re_once, build_word_re);
    if (!word_re || at >= n) return 0;
    return pcre2_match(word_re, (PCRE2_SPTR)s, n, at, PCRE2_NO_UTF_CHECK | PCRE2_ANCHORED, c->md, NULL) >= 0;
}

/* ------------------------------------------------------- pre-tokenizers */

/* Appends the byte-level image of text[off..off+len) as a new piece. */
static void map_bytes(tok_ctx *c, size_t off, size_t len, int at_start) {
    size_t start = c->text.n;
    tstr_reserve(&c->text, 2 * len); /* no realloc below: reading and writing c->text */
    for (size_t k = 0; k < len; k++) {
        unsigned char b = (unsigned char)c->text.p[off + k];
        memcpy(c->text.p + c->text.n, tok_byte_chars[b], tok_byte_char_len[b]);
        c->text.n += tok_byte_char_len[b];
    }
    c->text.p[c->text.n] = 0;
    pieces_push(&c->next, start, c->text.n - start, -1, at_start);
}

/* Appends work to ctx->text and returns its offset there. */
static size_t stash(tok_ctx *c, const tstr *work) {
    size_t off = c->text.n;
    tstr_put(&c->text, work->p, work->n);
    return off;
}

static void bytelevel_piece(const tok_pre *p, tok_ctx *c, tok_piece pc) {
    if (p->add_prefix_space && c->text.p[pc.off] != ' ') {
        tstr_clear(&c->work);
        tstr_putc(&c->work, ' ');
        tstr_put(&c->work, c->text.p + pc.off, pc.len);
        pc.off = stash(c, &c->work);
        pc.len++;
    }
    if (!p->use_regex) {
        map_bytes(c, pc.off, pc.len, pc.at_start);
        return;
    }
    pattern_spans(&p->pat, c, c->text.p + pc.off, pc.len, &c->spans);
    for (int64_t i = 0; i < c->spans.n; i++) {
        tok_span s = c->spans.v[i];
        if (s.e > s.s) map_bytes(c, pc.off + s.s, s.e - s.s, pc.at_start && s.s == 0);
    }
}

/* HF's SplitDelimiterBehavior applied to spans (is_match set) -> kept ranges. */
static void apply_behavior(const span_list *in, int behavior, span_list *out) {
    out->n = 0;
    int prev_match = 0;
    if (behavior == SPLIT_MERGED_NEXT) { /* folds right to left */
        for (int64_t i = in->n - 1; i >= 0; i--) {
            tok_span s = in->v[i];
            if (s.is_match && !prev_match && out->n) out->v[out->n - 1].s = s.s;
            else spans_push(out, s.s, s.e, 0);
            prev_match = s.is_match;
        }
        for (int64_t i = 0; i < out->n / 2; i++) {
            tok_span t = out->v[i];
            out->v[i] = out->v[out->n - 1 - i];
            out->v[out->n - 1 - i] = t;
        }
        return;
    }
    for (int64_t i = 0; i < in->n; i++) {
        tok_span s = in->v[i];
        int extend = behavior == SPLIT_MERGED_PREV ? s.is_match && !prev_match
                   : behavior == SPLIT_CONTIGUOUS ? s.is_match == prev_match : 0;
        if (behavior == SPLIT_REMOVED && s.is_match) {
            prev_match = 1;
            continue;
        }
        if (extend && out->n) out->v[out->n - 1].e = s.e;
        else spans_push(out, s.s, s.e, 0);
        prev_match = s.is_match;
    }
}

static void push_kept(tok_ctx *c, const span_list *kept, tok_piece pc) {
    for (int64_t i = 0; i < kept->n; i++) {
        tok_span s = kept->v[i];
        if (s.e > s.s) pieces_push(&c->next, pc.off + s.s, s.e - s.s, -1, pc.at_start && s.s == 0);
    }
}

static void split_piece(const tok_pre *p, tok_ctx *c, tok_piece pc) {
    pattern_spans(&p->pat, c, c->text.p + pc.off, pc.len, &c->spans);
    if (p->invert)
        for (int64_t i = 0; i < c->spans.n; i++) c->spans.v[i].is_match = !c->spans.v[i].is_match;
    apply_behavior(&c->spans, p->behavior, &c->spans2);
    push_kept(c, &c->spans2, pc);
}

static void metaspace_piece(const tok_pre *p, tok_ctx *c, tok_piece pc) {
    tstr_clear(&c->work);
    for (size_t k = 0; k < pc.len; k++) {
        char ch = c->text.p[pc.off + k];
        if (ch == ' ') tstr_put(&c->work, p->repl.p, p->repl.n);
        else tstr_putc(&c->work, ch);
    }
    int want = p->prepend_scheme == PREPEND_ALWAYS || (p->prepend_scheme == PREPEND_FIRST && pc.at_start);
    if (want && (c->work.n < p->repl.n || memcmp(c->work.p, p->repl.p, p->repl.n))) {
        tstr_clear(&c->scratch);
        tstr_put(&c->scratch, p->repl.p, p->repl.n);
        tstr_put(&c->scratch, c->work.p, c->work.n);
        tstr_swap(&c->work, &c->scratch);
    }
    pc.off = stash(c, &c->work);
    pc.len = c->work.n;
    if (!p->split) {
        pieces_push(&c->next, pc.off, pc.len, -1, pc.at_start);
        return;
    }
    pattern_spans(&p->pat, c, c->text.p + pc.off, pc.len, &c->spans);
    apply_behavior(&c->spans, SPLIT_MERGED_NEXT, &c->spans2);
    push_kept(c, &c->spans2, pc);
}

void pre_apply(const tok_pre *p, tok_ctx *c) {
    if (p->kind == P_SEQUENCE) {
        for (int i = 0; i < p->nitems; i++) pre_apply(&p->items[i], c);
        return;
    }
    c->next.n = 0;
    for (int64_t i = 0; i < c->cur.n; i++) {
        tok_piece pc = c->cur.v[i];
        if (pc.id >= 0) pieces_push(&c->next, pc.off, pc.len, pc.id, pc.at_start);
        else if (p->kind == P_BYTELEVEL) bytelevel_piece(p, c, pc);
        else if (p->kind == P_SPLIT) split_piece(p, c, pc);
        else metaspace_piece(p, c, pc);
    }
    piece_list t = c->cur;
    c->cur = c->next;
    c->next = t;
}

void pre_free(tok_pre *p) {
    if (!p) return;
    for (int i = 0; i < p->nitems; i++) pre_free(&p->items[i]);
    free(p->items);
    pattern_free(&p->pat);
    tstr_free(&p->repl);
}
