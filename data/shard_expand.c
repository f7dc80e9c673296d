/* shard_expand: "a.tar,dir/s-[0-9]*.tar,shards/{00000..00099}.tar" -> paths. */
#include "shard.h"
#include "../kernels/check.h"
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_EXPANDED_PATHS 100000000 /* a range this large is a typo */

typedef struct path_list {
    char **v;
    int64_t n, cap;
} path_list;

static int list_push(path_list *l, const char *s, size_t len, char *err, size_t errlen) {
    if (l->n >= MAX_EXPANDED_PATHS)
        return aimc_set_err(err, errlen, "shard spec expands to more than %d paths", MAX_EXPANDED_PATHS);
    if (l->n == l->cap) {
        int64_t cap = l->cap ? l->cap * 2 : 16;
        char **v = realloc(l->v, (size_t)cap * sizeof *v);
        if (!v) return aimc_set_err(err, errlen, "out of memory expanding the shard spec");
        l->v = v;
        l->cap = cap;
    }
    if (!(l->v[l->n] = strndup(s, len))) return aimc_set_err(err, errlen, "out of memory expanding the shard spec");
    l->n++;
    return 0;
}

/* Index of the '}' matching the '{' at s[open], or -1. */
static ptrdiff_t matching_brace(const char *s, size_t len, size_t open) {
    int depth = 0;
    for (size_t i = open; i < len; i++) {
        if (s[i] == '{') depth++;
        if (s[i] == '}' && --depth == 0) return (ptrdiff_t)i;
    }
    return -1;
}

/* Next top-level comma in s[from..len) (or len). */
static size_t next_comma(const char *s, size_t from, size_t len) {
    int depth = 0;
    for (size_t i = from; i < len; i++) {
        if (s[i] == '{') depth++;
        else if (s[i] == '}') depth--;
        else if (s[i] == ',' && depth == 0) return i;
    }
    return len;
}

static int expand_braces(const char *s, size_t len, path_list *out, char *err, size_t errlen);

/* prefix + middle + suffix, brace-expanded further. */
static int expand_joined(const char *pre, size_t npre, const char *mid, size_t nmid, const char *suf, size_t nsuf,
                         path_list *out, char *err, size_t errlen) {
    char *joined = malloc(npre + nmid + nsuf + 1);
    if (!joined) return aimc_set_err(err, errlen, "out of memory expanding the shard spec");
    memcpy(joined, pre, npre);
    memcpy(joined + npre, mid, nmid);
    memcpy(joined + npre + nmid, suf, nsuf);
    int rc = expand_braces(joined, npre + nmid + nsuf, out, err, errlen);
    free(joined);
    return rc;
}

/* Parses "A..B" with decimal A and B; 0 on success. */
static int parse_range(const char *s, size_t len, size_t *dots, long long *a, long long *b) {
    const char *d = NULL;
    for (size_t i = 0; i + 1 < len; i++)
        if (s[i] == '.' && s[i + 1] == '.') {
            d = s + i;
            break;
        }
    if (!d || d == s || (size_t)(d - s) + 2 >= len) return -1;
    *dots = (size_t)(d - s);
    for (size_t i = 0; i < len; i++)
        if (i != *dots && i != *dots + 1 && (s[i] < '0' || s[i] > '9')) return -1;
    if (*dots > 18 || len - *dots - 2 > 18) return -1;
    *a = strtoll(s, NULL, 10);
    *b = strtoll(d + 2, NULL, 10);
    return 0;
}

/* {A..B}: zero padding to the wider end when either end has a leading zero
 * (as bash and Python's braceexpand do); descending ranges count down. */
static int expand_range(const char *s, size_t open, size_t close, size_t len, path_list *out, char *err,
                        size_t errlen) {
    const char *body = s + open + 1;
    size_t blen = close - open - 1, dots;
    long long a, b;
    if (parse_range(body, blen, &dots, &a, &b))
        return aimc_set_err(err, errlen,
                            "bad brace range '{%.*s}': expected {FIRST..LAST} with decimal numbers or {a,b,...}",
                            (int)blen, body);
    size_t wa = dots, wb = blen - dots - 2;
    int pad = (wa > 1 && body[0] == '0') || (wb > 1 && body[dots + 2] == '0');
    int width = pad ? (int)(wa > wb ? wa : wb) : 0;
    long long step = a <= b ? 1 : -1, count = (a <= b ? b - a : a - b) + 1;
    if (count > MAX_EXPANDED_PATHS)
        return aimc_set_err(err, errlen, "brace range '{%.*s}' has %lld values, more than %d", (int)blen, body, count,
                            MAX_EXPANDED_PATHS);
    for (long long v = a;; v += step) {
        char num[32];
        int k = snprintf(num, sizeof num, "%0*lld", width, v);
        if (expand_joined(s, open, num, (size_t)k, s + close + 1, len - close - 1, out, err, errlen)) return -1;
        if (v == b) return 0;
    }
}

static int expand_alternatives(const char *s, size_t open, size_t close, size_t len, path_list *out, char *err,
                               size_t errlen) {
    for (size_t from = open + 1; from <= close;) {
        size_t to = next_comma(s, from, close);
        if (expand_joined(s, open, s + from, to - from, s + close + 1, len - close - 1, out, err, errlen)) return -1;
        from = to + 1;
    }
    return 0;
}

/* Expands the first brace group of s[0..len) (and, recursively, the rest). */
static int expand_braces(const char *s, size_t len, path_list *out, char *err, size_t errlen) {
    const char *open_p = memchr(s, '{', len);
    const char *close_p = memchr(s, '}', len);
    if (!open_p) {
        if (close_p) return aimc_set_err(err, errlen, "unbalanced '}' in shard spec item '%.*s'", (int)len, s);
        return list_push(out, s, len, err, errlen);
    }
    size_t open = (size_t)(open_p - s);
    ptrdiff_t close = matching_brace(s, len, open);
    if (close < 0) return aimc_set_err(err, errlen, "unbalanced '{' in shard spec item '%.*s'", (int)len, s);
    if (next_comma(s, open + 1, (size_t)close) < (size_t)close)
        return expand_alternatives(s, open, (size_t)close, len, out, err, errlen);
    return expand_range(s, open, (size_t)close, len, out, err, errlen);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* A path with *, ? or [ is a glob: its matches in byte order (not the
 * locale's), and an error when there are none. */
static int expand_glob(const char *pattern, path_list *out, char *err, size_t errlen) {
    if (!strpbrk(pattern, "*?[")) return list_push(out, pattern, strlen(pattern), err, errlen);
    glob_t g;
    int rc = glob(pattern, GLOB_NOSORT, NULL, &g);
    if (rc == GLOB_NOMATCH) return aimc_set_err(err, errlen, "shard glob '%s' matches no files", pattern);
    if (rc)
        return aimc_set_err(err, errlen, "shard glob '%s' failed (%s)", pattern,
                            rc == GLOB_NOSPACE ? "out of memory" : "read error");
    qsort(g.gl_pathv, g.gl_pathc, sizeof *g.gl_pathv, cmp_str);
    for (size_t i = 0; i < g.gl_pathc && !rc; i++)
        rc = list_push(out, g.gl_pathv[i], strlen(g.gl_pathv[i]), err, errlen);
    globfree(&g);
    return rc;
}

static int expand_item(const char *item, size_t len, path_list *out, char *err, size_t errlen) {
    if (len == 0)
        return aimc_set_err(err, errlen, "empty item in shard spec (two commas in a row, or a leading/trailing comma)");
    path_list braced = {0};
    int rc = expand_braces(item, len, &braced, err, errlen);
    for (int64_t i = 0; i < braced.n && !rc; i++) rc = expand_glob(braced.v[i], out, err, errlen);
    shard_paths_free(braced.v, braced.n);
    return rc;
}

int64_t shard_expand(const char *spec, char ***paths, char *err, size_t errlen) {
    path_list out = {0};
    size_t len = strlen(spec);
    *paths = NULL;
    if (len == 0) return aimc_set_err(err, errlen, "empty shard spec");
    for (size_t from = 0; from <= len;) {
        size_t to = next_comma(spec, from, len);
        if (expand_item(spec + from, to - from, &out, err, errlen)) {
            shard_paths_free(out.v, out.n);
            return -1;
        }
        from = to + 1;
    }
    *paths = out.v;
    return out.n;
}

void shard_paths_free(char **paths, int64_t n) {
    if (!paths) return;
    for (int64_t i = 0; i < n; i++) free(paths[i]);
    free(paths);
}
