/* key = value run configurations (format in config.h). */
#include "config.h"
#include "../kernels/check.h"
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static char *dup_range(const char *s, size_t n) {
    char *d = malloc(n + 1);
    AIMC_CHECK(d, "config: out of memory");
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

/* Keys compare with '-' and '_' equal; a leading "--" is ignored. */
static int key_equal(const char *a, const char *b) {
    if (!strncmp(a, "--", 2)) a += 2;
    if (!strncmp(b, "--", 2)) b += 2;
    for (; *a && *b; a++, b++) {
        char x = *a == '-' ? '_' : *a, y = *b == '-' ? '_' : *b;
        if (x != y) return 0;
    }
    return *a == *b;
}

static const char *skip_space(const char *s, const char *end) {
    while (s < end && isspace((unsigned char)*s)) s++;
    return s;
}

static const char *trim_end(const char *begin, const char *end) {
    while (end > begin && isspace((unsigned char)end[-1])) end--;
    return end;
}

/* The quote closing the one at *q: '...' is literal; inside "..." a backslash
 * escapes the next character (\" \\ and \n \r \t). NULL when unterminated. */
static const char *find_closing_quote(const char *q, const char *end) {
    for (const char *p = q + 1; p < end; p++) {
        if (*q == '"' && *p == '\\' && p + 1 < end) p++;
        else if (*p == *q) return p;
    }
    return NULL;
}

/* The text of a "..." value between begin and end with its escapes resolved. */
static char *unescape_range(const char *begin, const char *end) {
    char *d = dup_range(begin, (size_t)(end - begin)), *w = d;
    for (const char *p = begin; p < end; p++) {
        if (*p != '\\' || p + 1 == end) {
            *w++ = *p;
            continue;
        }
        p++;
        *w++ = *p == 'n' ? '\n' : *p == 'r' ? '\r' : *p == 't' ? '\t' : *p;
    }
    *w = 0;
    return d;
}

/* The value of one line from v (after '='): quoted, or up to a " #" comment. */
static int parse_value(const char *v, const char *end, const char *where, int line, char **out, char *err,
                       size_t errlen) {
    v = skip_space(v, end);
    if (v < end && (*v == '"' || *v == '\'')) {
        const char *close = find_closing_quote(v, end);
        if (!close) return aimc_set_err(err, errlen, "%s:%d: unterminated quote in value", where, line);
        const char *rest = skip_space(close + 1, end);
        if (rest < end && *rest != '#')
            return aimc_set_err(err, errlen, "%s:%d: text after the closing quote: '%.*s'", where, line,
                                (int)(end - rest), rest);
        *out = *v == '"' ? unescape_range(v + 1, close) : dup_range(v + 1, (size_t)(close - v - 1));
        return 0;
    }
    const char *stop = v;
    while (stop < end && !(*stop == '#' && (stop == v || isspace((unsigned char)stop[-1])))) stop++;
    *out = dup_range(v, (size_t)(trim_end(v, stop) - v));
    return 0;
}

static int valid_key(const char *k, size_t n) {
    if (!n) return 0;
    for (size_t i = 0; i < n; i++)
        if (!(isalnum((unsigned char)k[i]) || k[i] == '_' || k[i] == '-')) return 0;
    return 1;
}

/* One non-blank, non-comment line into an entry. */
static int parse_line(const char *s, const char *end, const char *where, int line, config_entry *e, char *err,
                      size_t errlen) {
    const char *eq = memchr(s, '=', (size_t)(end - s));
    if (!eq)
        return aimc_set_err(err, errlen, "%s:%d: expected 'key = value', got '%.*s'", where, line,
                            (int)(end - s), s);
    const char *kend = trim_end(s, eq);
    if (!valid_key(s, (size_t)(kend - s)))
        return aimc_set_err(err, errlen, "%s:%d: bad key '%.*s' (letters, digits, '_' and '-')", where, line,
                            (int)(kend - s), s);
    e->line = line;
    if (parse_value(eq + 1, end, where, line, &e->value, err, errlen)) return -1;
    e->key = dup_range(s, (size_t)(kend - s));
    return 0;
}

static int add_entry(config_file *c, const config_entry *e, char *err, size_t errlen) {
    for (int i = 0; i < c->n; i++)
        if (key_equal(c->entries[i].key, e->key))
            return aimc_set_err(err, errlen, "%s:%d: key '%s' repeats line %d", c->where, e->line, e->key,
                                c->entries[i].line);
    config_entry *grown = realloc(c->entries, (size_t)(c->n + 1) * sizeof *grown);
    AIMC_CHECK(grown, "config: out of memory");
    c->entries = grown;
    c->entries[c->n++] = *e;
    return 0;
}

int config_parse(const char *text, const char *where, config_file *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    out->where = dup_range(where, strlen(where));
    int line = 0;
    for (const char *s = text; *s;) {
        const char *end = s + strcspn(s, "\n");
        const char *next = *end ? end + 1 : end;
        line++;
        const char *b = skip_space(s, end), *e = trim_end(b, end);
        s = next;
        if (b == e || *b == '#') continue;
        config_entry entry = {0};
        if (parse_line(b, e, where, line, &entry, err, errlen) || add_entry(out, &entry, err, errlen)) {
            free(entry.key);
            free(entry.value);
            config_free(out);
            return -1;
        }
    }
    return 0;
}

int config_load(const char *path, config_file *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    size_t n;
    char *text = aimc_read_file(path, AIMC_MAX_CONFIG_BYTES, &n, err, errlen);
    if (!text) return -1;
    if (strlen(text) != n) {
        free(text);
        return aimc_set_err(err, errlen, "config %s: holds a NUL byte (not a text file)", path);
    }
    int rc = config_parse(text, path, out, err, errlen);
    free(text);
    return rc;
}

void config_free(config_file *c) {
    for (int i = 0; i < c->n; i++) {
        free(c->entries[i].key);
        free(c->entries[i].value);
    }
    free(c->entries);
    free(c->where);
    memset(c, 0, sizeof *c);
}

const config_entry *config_find(const config_file *c, const char *name) {
    for (int i = 0; i < c->n; i++)
        if (key_equal(c->entries[i].key, name)) return &c->entries[i];
    return NULL;
}

/* ---- applying values ---------------------------------------------------------- */

static int parse_flag(const char *v, int *out) {
    static const char *const yes[] = {"true", "yes", "on", "1"}, *const no[] = {"false", "no", "off", "0"};
    for (int i = 0; i < 4; i++) {
        if (!strcasecmp(v, yes[i])) return *out = 1, 0;
        if (!strcasecmp(v, no[i])) return *out = 0, 0;
    }
    return -1;
}

static int set_option(const config_file *c, const config_entry *e, const arg_opt *o, char *err,
                      size_t errlen) {
    char *end;
    errno = 0;
    switch (o->type) {
    case ARG_STR:
        *(const char **)o->dest = e->value;
        return 0;
    case ARG_INT: {
        long long v = strtoll(e->value, &end, 10);
        if (errno || *end || end == e->value) break;
        *(int64_t *)o->dest = v;
        return 0;
    }
    case ARG_FLOAT: {
        double v = strtod(e->value, &end);
        if (errno || *end || end == e->value) break;
        *(double *)o->dest = v;
        return 0;
    }
    case ARG_FLAG:
        if (!parse_flag(e->value, (int *)o->dest)) return 0;
        break;
    }
    static const char *const kinds[] = {"a string", "an integer", "a number", "true or false"};
    return aimc_set_err(err, errlen, "%s:%d: %s expects %s, got '%s'", c->where, e->line, e->key,
                        kinds[o->type],
                        e->value);
}

static int in_list(const char *name, const char *const *list) {
    for (int i = 0; list && list[i]; i++)
        if (key_equal(name, list[i])) return 1;
    return 0;
}

int config_apply(const config_file *c, const arg_opt *opts, int nopts, const char *const *skip, char *err,
                 size_t errlen) {
    for (int i = 0; i < c->n; i++) {
        const config_entry *e = &c->entries[i];
        const arg_opt *o = NULL;
        for (int j = 0; j < nopts && !o; j++)
            if (key_equal(opts[j].name, e->key) && !in_list(opts[j].name, skip)) o = &opts[j];
        if (!o) return aimc_set_err(err, errlen, "%s:%d: unknown key '%s'", c->where, e->line, e->key);
        if (set_option(c, e, o, err, errlen)) return -1;
    }
    return 0;
}

const char *config_find_arg(int argc, char **argv, const char *flag) {
    const char *found = NULL;
    size_t n = strlen(flag);
    for (int i = 1; i < argc; i++) {
        if (strncmp(argv[i], flag, n)) continue;
        if (argv[i][n] == '=')
            found = argv[i] + n + 1;
        else if (!argv[i][n] && i + 1 < argc)
            found = argv[++i];
    }
    return found;
}

/* ---- writing ------------------------------------------------------------------ */

typedef struct strbuf {
    char *s;
    size_t n, cap;
} strbuf;

static void sb_add(strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_add(strbuf *b, const char *fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(b->s ? b->s + b->n : NULL, b->s ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        AIMC_CHECK(k >= 0, "config: formatting failed");
        if (b->s && b->n + (size_t)k < b->cap) {
            b->n += (size_t)k;
            return;
        }
        b->cap = (b->cap + (size_t)k + 1) * 2;
        b->s = realloc(b->s, b->cap);
        AIMC_CHECK(b->s, "config: out of memory");
    }
}

/* The shortest %g form that reads back as the same double. */
static void format_double(double v, char *buf, size_t n) {
    for (int prec = 6; prec <= 17; prec++) {
        snprintf(buf, n, "%.*g", prec, v);
        if (strtod(buf, NULL) == v || isnan(v)) return;
    }
}

static int needs_quotes(const char *s) {
    if (!*s) return 0;
    if (isspace((unsigned char)s[0]) || isspace((unsigned char)s[strlen(s) - 1])) return 1;
    return strpbrk(s, "#\n\r\t") || s[0] == '"' || s[0] == '\'';
}

static void add_option(strbuf *b, const arg_opt *o) {
    char key[64], num[64];
    snprintf(key, sizeof key, "%s", o->name + (strncmp(o->name, "--", 2) ? 0 : 2));
    for (char *p = key; *p; p++)
        if (*p == '-') *p = '_';
    switch (o->type) {
    case ARG_STR: {
        const char *v = *(const char **)o->dest ? *(const char **)o->dest : "";
        if (!needs_quotes(v)) {
            sb_add(b, "%s = %s\n", key, v);
            break;
        }
        sb_add(b, "%s = \"", key); /* escaped so that config_parse reads back v exactly */
        for (const char *c = v; *c; c++) {
            if (*c == '\n' || *c == '\r' || *c == '\t')
                sb_add(b, "\\%c", *c == '\n' ? 'n' : *c == '\r' ? 'r' : 't');
            else
                sb_add(b, *c == '"' || *c == '\\' ? "\\%c" : "%c", *c);
        }
        sb_add(b, "\"\n");
        break;
    }
    case ARG_INT:
        sb_add(b, "%s = %lld\n", key, (long long)*(int64_t *)o->dest);
        break;
    case ARG_FLOAT:
        format_double(*(double *)o->dest, num, sizeof num);
        sb_add(b, "%s = %s\n", key, num);
        break;
    case ARG_FLAG:
        sb_add(b, "%s = %s\n", key, *(int *)o->dest ? "true" : "false");
        break;
    }
}

char *config_format(const arg_opt *opts, int nopts, const char *const *skip, const char *header) {
    strbuf b = {0};
    sb_add(&b, "%s", header ? header : "");
    for (int i = 0; i < nopts; i++)
        if (!in_list(opts[i].name, skip)) add_option(&b, &opts[i]);
    return b.s;
}

int config_diff(const char *old_text, const char *new_text, const char *const *ignore, char *buf, size_t n) {
    config_file a, b;
    char err[256];
    int count = 0;
    size_t used = 0;
    if (n) buf[0] = 0;
    if (config_parse(old_text, "old", &a, err, sizeof err)) return 0;
    if (config_parse(new_text, "new", &b, err, sizeof err)) return config_free(&a), 0;
    for (int i = 0; i < b.n; i++) {
        const config_entry *nb = &b.entries[i], *oa = config_find(&a, nb->key);
        if (in_list(nb->key, ignore) || (oa && !strcmp(oa->value, nb->value))) continue;
        if (used < n)
            used += (size_t)snprintf(buf + used, n - used, "%s%s: %s -> %s", count ? "; " : "", nb->key,
                                     oa ? oa->value : "(absent)", nb->value);
        count++;
    }
    config_free(&a);
    config_free(&b);
    return count;
}
