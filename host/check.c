/* Error reporting, error strings and checked allocations (see kernels/check.h). */
#include "../kernels/check.h"
#include <stdarg.h>
#include <string.h>

void aimc_die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("aimc: error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

void aimc_fail_at(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "aimc: %s:%d: ", file, line);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

int aimc_set_err(char *err, size_t errlen, const char *fmt, ...) {
    if (!err || !errlen) return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

int aimc_fail_path(char *err, size_t errlen, const char *path, const char *fmt, ...) {
    if (!err || !errlen) return -1;
    int used = snprintf(err, errlen, "%s: ", path);
    if (used < 0 || (size_t)used >= errlen) return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err + used, errlen - (size_t)used, fmt, ap);
    va_end(ap);
    return -1;
}

void *aimc_xmalloc_at(const char *file, int line, size_t bytes) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p) aimc_fail_at(file, line, "out of memory (%zu bytes)", bytes);
    return p;
}

void *aimc_xcalloc_at(const char *file, int line, size_t count, size_t size) {
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) aimc_fail_at(file, line, "out of memory (%zu x %zu bytes)", count, size);
    return p;
}

void *aimc_xrealloc_at(const char *file, int line, void *p, size_t bytes) {
    void *q = realloc(p, bytes ? bytes : 1);
    if (!q) aimc_fail_at(file, line, "out of memory (%zu bytes)", bytes);
    return q;
}

char *aimc_strdup_at(const char *file, int line, const char *s) {
    size_t n = strlen(s) + 1;
    char *d = aimc_xmalloc_at(file, line, n);
    memcpy(d, s, n);
    return d;
}

void *aimc_grow_at(const char *file, int line, void *p, int64_t *cap, int64_t need, size_t elem,
                   int64_t first_cap) {
    if (need <= *cap) return p;
    int64_t nc = *cap ? *cap * 2 : first_cap;
    while (nc < need) nc *= 2;
    void *q = (uint64_t)nc <= SIZE_MAX / elem ? realloc(p, (size_t)nc * elem) : NULL;
    if (!q)
        aimc_fail_at(file, line, "out of memory growing a table to %lld entries", (long long)nc);
    *cap = nc;
    return q;
}
