/* Error reporting, error strings and checked allocations (see kernels/check.h). */
#include "../kernels/check.h"
#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

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

/* The stream read, starting with first_cap bytes of buffer (a regular file's
 * size + 2 reads it without a realloc: the last byte shows the end). */
static char *read_stream(FILE *f, const char *name, size_t max_bytes, int64_t first_cap, size_t *len, char *err,
                         size_t errlen) {
    int64_t cap = 0;
    size_t n = 0, got;
    char *buf = aimc_grow(NULL, &cap, 1, 1, first_cap);
    do {
        if (n + 1 == (size_t)cap) buf = aimc_grow(buf, &cap, cap + 1, 1, cap);
        got = fread(buf + n, 1, (size_t)cap - n - 1, f);
        n += got;
    } while (got > 0 && n <= max_bytes);
    if (ferror(f) || n > max_bytes) {
        if (ferror(f)) aimc_fail_path(err, errlen, name, "read error: %s", strerror(errno));
        else aimc_fail_path(err, errlen, name, "more than the %zu bytes allowed", max_bytes);
        free(buf);
        return NULL;
    }
    buf[n] = 0;
    if (len) *len = n;
    return buf;
}

char *aimc_read_stream(FILE *f, const char *name, size_t max_bytes, size_t *len, char *err, size_t errlen) {
    return read_stream(f, name, max_bytes, 1 << 16, len, err, errlen);
}

char *aimc_read_file(const char *path, size_t max_bytes, size_t *len, char *err, size_t errlen) {
    struct stat st; /* before fopen: opening a FIFO would block */
    if (stat(path, &st)) {
        aimc_fail_path(err, errlen, path, "cannot open: %s", strerror(errno));
        return NULL;
    }
    if (!S_ISREG(st.st_mode)) {
        aimc_fail_path(err, errlen, path, "%s", S_ISDIR(st.st_mode) ? "is a folder, not a file" : "not a regular file");
        return NULL;
    }
    if ((uint64_t)st.st_size > max_bytes) {
        aimc_fail_path(err, errlen, path, "%lld bytes, more than the %zu allowed", (long long)st.st_size, max_bytes);
        return NULL;
    }
    FILE *f = fopen(path, "rb");
    if (!f) {
        aimc_fail_path(err, errlen, path, "cannot open: %s", strerror(errno));
        return NULL;
    }
    char *buf = read_stream(f, path, max_bytes, (int64_t)st.st_size + 2, len, err, errlen);
    fclose(f);
    return buf;
}

double aimc_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}
