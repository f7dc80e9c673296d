/* Error reporting. Internal failures (a failed library call, a broken
 * invariant) abort the process with file:line; they never continue. */
#ifndef AIMC_CHECK_H
#define AIMC_CHECK_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#ifdef __cplusplus
extern "C" {
#endif
/* Prints "aimc: error: <msg>" and exits with status 1. For user-facing errors. */
void aimc_die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
/* Prints "aimc: <file>:<line>: <msg>" and exits with status 1. */
void aimc_fail_at(const char *file, int line, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 3, 4)));

/* Error strings for functions that report bad input through (err, errlen).
 * Both write nothing when err is NULL or errlen is 0, and both return -1 so
 * that a caller can `return aimc_set_err(err, errlen, ...);`. */
int aimc_set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Writes "PATH: message"; when PATH alone fills err, err holds no message. */
int aimc_fail_path(char *err, size_t errlen, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Checked allocations: out of memory is an internal failure (AIMC_CHECK with
 * the caller's file:line and the size). A zero size or count counts as 1, so
 * a NULL result always means out of memory. Use the macros below. */
void *aimc_xmalloc_at(const char *file, int line, size_t bytes);
void *aimc_xcalloc_at(const char *file, int line, size_t count, size_t size);
void *aimc_xrealloc_at(const char *file, int line, void *p, size_t bytes);
char *aimc_strdup_at(const char *file, int line, const char *s);
/* Grows an array of *cap elements of elem bytes to hold at least need,
 * doubling from first_cap; returns p unchanged when it is big enough. */
void *aimc_grow_at(const char *file, int line, void *p, int64_t *cap, int64_t need, size_t elem,
                   int64_t first_cap);

/* Reads a whole file that aimc reads at once (configs, JSON, tokenizers,
 * annotations, images, text to tokenize) into a malloc'ed buffer with a NUL
 * after the data; *len (when not NULL) gets the byte count. A file larger than
 * max_bytes is refused before anything is allocated for it, so a hostile or
 * mistaken file cannot make aimc allocate without bound. NULL with
 * "PATH: problem" in err on failure (also for anything but a regular file).
 * The stream form reads f to its end (stdin, pipes), naming it `name` in
 * messages. */
char *aimc_read_file(const char *path, size_t max_bytes, size_t *len, char *err, size_t errlen);
char *aimc_read_stream(FILE *f, const char *name, size_t max_bytes, size_t *len, char *err, size_t errlen);
/* Monotonic wall-clock seconds (timings, ETAs, deadlines). */
double aimc_now(void);

/* Size limits for whole-file reads: far above any real file of the kind. */
#define AIMC_MAX_CONFIG_BYTES ((size_t)64 << 20)     /* config.json, run configs, processor configs */
#define AIMC_MAX_TOKENIZER_BYTES ((size_t)256 << 20) /* tokenizer.json (real ones: up to ~35 MB) */
#define AIMC_MAX_DATASET_BYTES ((size_t)2 << 30)     /* benchmark annotation files, text to tokenize */
#ifdef __cplusplus
}
#endif

#define AIMC_CHECK(cond, ...)                                   \
    do {                                                        \
        if (!(cond)) aimc_fail_at(__FILE__, __LINE__, __VA_ARGS__); \
    } while (0)

#define aimc_xmalloc(bytes) aimc_xmalloc_at(__FILE__, __LINE__, (bytes))
#define aimc_xcalloc(count, size) aimc_xcalloc_at(__FILE__, __LINE__, (count), (size))
#define aimc_xrealloc(p, bytes) aimc_xrealloc_at(__FILE__, __LINE__, (p), (bytes))
#define aimc_strdup(s) aimc_strdup_at(__FILE__, __LINE__, (s))
#define aimc_grow(p, cap, need, elem, first_cap) \
    aimc_grow_at(__FILE__, __LINE__, (p), (cap), (need), (elem), (first_cap))

#endif
