/* Shared parts of the fuzz targets (tests/fuzz/README.md).
 *
 * Each tests/fuzz/fuzz_NAME.c defines
 *     int  fuzz_NAME_one(const uint8_t *data, size_t size);  one input
 *     void fuzz_NAME_seeds(const char *dir);                 writes its seed corpus
 * and ends with FUZZ_MAIN(NAME). Built for libFuzzer (clang, make fuzz),
 * FUZZ_MAIN defines LLVMFuzzerTestOneInput and LLVMFuzzerInitialize (which,
 * with AIMC_FUZZ_MAKE_SEEDS=DIR in the environment, writes the seeds into DIR
 * and exits). Built with -DFUZZ_REGRESS (tests/test_fuzz_regress.c includes
 * every target into one gcc test binary) it defines nothing more, so helpers
 * in the targets need names unique across all of them.
 *
 * What counts as a finding:
 *   - a crash or sanitizer report; FUZZ_ASSERT(cond), the harness's own
 *     oracles (abort);
 *   - aimc_fail_at (an internal check reached from input);
 *   - aimc_die, except inside FUZZ_CATCH_DIE(...), which wraps the APIs whose
 *     documented answer to bad input is a one-line exit (cfg_need_int,
 *     mllm_load, ...).
 * In the libFuzzer build this file defines aimc_die and aimc_fail_at (the
 * Makefile links the targets against a copy of libaimc.a whose definitions
 * are weak): a caught aimc_die jumps back silently, everything else aborts.
 * In the regression test the library's own functions stay (they exit 1):
 * each input runs in a child process, and FUZZ_CATCH_DIE raises a flag in
 * memory shared with the parent that marks an exit inside it as expected. */
#ifndef AIMC_FUZZ_H
#define AIMC_FUZZ_H
#include "../../kernels/check.h"
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- failures ----------------------------------------------------------- */

static void fuzz_fail_now(void) __attribute__((noreturn));
static void fuzz_fail_now(void) {
    fflush(stderr);
    abort();
}

#ifdef FUZZ_REGRESS
/* Shared with the replaying parent: 1 while an exit is the expected outcome. */
static volatile int *fuzz_die_expected;

#define FUZZ_CATCH_DIE(died, stmt)                         \
    do {                                                   \
        (died) = 0;                                        \
        if (fuzz_die_expected) *fuzz_die_expected = 1;     \
        stmt;                                              \
        if (fuzz_die_expected) *fuzz_die_expected = 0;     \
    } while (0)
#else
static jmp_buf *fuzz_die_jmp; /* armed by FUZZ_CATCH_DIE */

void aimc_die(const char *fmt, ...) {
    if (fuzz_die_jmp) longjmp(*fuzz_die_jmp, 1);
    va_list ap;
    va_start(ap, fmt);
    fputs("aimc: error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs("\nfuzz: aimc_die reached where the API promises an error return\n", stderr);
    va_end(ap);
    fuzz_fail_now();
}

void aimc_fail_at(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "aimc: %s:%d: ", file, line);
    vfprintf(stderr, fmt, ap);
    fputs("\nfuzz: internal check failed on fuzz input\n", stderr);
    va_end(ap);
    fuzz_fail_now();
}

/* Runs stmt; an aimc_die inside it jumps back out and sets died to 1.
 * Locals that stmt assigns and that are read afterwards must be volatile. */
#define FUZZ_CATCH_DIE(died, stmt)                    \
    do {                                              \
        jmp_buf fuzz_jb_;                             \
        jmp_buf *fuzz_prev_ = fuzz_die_jmp;           \
        (died) = 0;                                   \
        if (setjmp(fuzz_jb_) == 0) {                  \
            fuzz_die_jmp = &fuzz_jb_;                 \
            stmt;                                     \
        } else {                                      \
            (died) = 1;                               \
        }                                             \
        fuzz_die_jmp = fuzz_prev_;                    \
    } while (0)
#endif

#define FUZZ_ASSERT(cond, ...)                                                      \
    do {                                                                            \
        if (!(cond)) {                                                              \
            fprintf(stderr, "fuzz: %s:%d: oracle failed: %s: ", __FILE__, __LINE__, \
                    #cond);                                                         \
            fprintf(stderr, __VA_ARGS__);                                           \
            fputc('\n', stderr);                                                    \
            fuzz_fail_now();                                                        \
        }                                                                           \
    } while (0)

/* ---- leaks on purpose -------------------------------------------------- */

/* Around calls that may end in a caught aimc_die (which leaves what they
 * allocated so far, as the real exit would), LeakSanitizer ignores the
 * allocations; everything else stays leak-checked. */
#if defined(__SANITIZE_ADDRESS__)
#define FUZZ_HAVE_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FUZZ_HAVE_LSAN 1
#endif
#endif
#ifdef FUZZ_HAVE_LSAN
#include <sanitizer/lsan_interface.h>
#define FUZZ_LEAKS_IGNORED_BEGIN() __lsan_disable()
#define FUZZ_LEAKS_IGNORED_END() __lsan_enable()
#else
#define FUZZ_LEAKS_IGNORED_BEGIN() ((void)0)
#define FUZZ_LEAKS_IGNORED_END() ((void)0)
#endif

/* ---- temporary files ---------------------------------------------------- */

static char fuzz_tmp_root[4096];
static pid_t fuzz_tmp_owner; /* forked children must not remove it */

static inline int fuzz_rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    remove(path);
    return 0;
}

static inline void fuzz_tmp_cleanup(void) {
    if (fuzz_tmp_root[0] && getpid() == fuzz_tmp_owner) nftw(fuzz_tmp_root, fuzz_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* This process's scratch folder, removed at normal exit: under
 * $AIMC_FUZZ_TMP when set (run.sh points it at a folder it removes after
 * each target, as crashing processes leave theirs behind), else in /dev/shm
 * (RAM: the writers' fsync costs nothing) when there is one, else /tmp. */
static inline const char *fuzz_tmpdir(void) {
    if (fuzz_tmp_root[0]) return fuzz_tmp_root;
    struct stat sb;
    const char *base = getenv("AIMC_FUZZ_TMP");
    if (!base || !*base) base = stat("/dev/shm", &sb) == 0 && S_ISDIR(sb.st_mode) ? "/dev/shm" : "/tmp";
    snprintf(fuzz_tmp_root, sizeof fuzz_tmp_root, "%s/aimc-fuzz-XXXXXX", base);
    if (!mkdtemp(fuzz_tmp_root)) {
        perror("fuzz: mkdtemp");
        abort();
    }
    fuzz_tmp_owner = getpid();
    atexit(fuzz_tmp_cleanup);
    return fuzz_tmp_root;
}

/* fuzz_tmpdir()/name, malloc'd (callers keep it for the process's life). */
static inline char *fuzz_tmp_path(const char *name) {
    const char *dir = fuzz_tmpdir();
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (!p) abort();
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

/* Writes a whole file; a harness failure (not a finding) aborts. */
static inline void fuzz_write_file(const char *path, const void *data, size_t size) {
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f)) {
        fprintf(stderr, "fuzz: cannot write %s: %s\n", path, strerror(errno));
        abort();
    }
}

/* A whole file, malloc'd with a NUL after it; NULL (and *size 0) if unreadable. */
static inline uint8_t *fuzz_read_file(const char *path, size_t *size) {
    *size = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    uint8_t *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n + 65536 + 1 > cap) {
            cap = (n + 65536 + 1) * 2;
            uint8_t *nb = realloc(buf, cap);
            if (!nb) abort();
            buf = nb;
        }
        size_t got = fread(buf + n, 1, 65536, f);
        n += got;
        if (got < 65536) break;
    }
    fclose(f);
    buf[n] = 0;
    *size = n;
    return buf;
}

/* A NUL-terminated copy of the input (for text APIs). */
static inline char *fuzz_cstr(const uint8_t *data, size_t size) {
    char *s = malloc(size + 1);
    if (!s) abort();
    if (size) memcpy(s, data, size);
    s[size] = 0;
    return s;
}

/* ---- seeds -------------------------------------------------------------- */

/* Writes DIR/name = prefix[0..plen) + data[0..size). */
static inline void fuzz_seed(const char *dir, const char *name, const void *prefix, size_t plen,
                             const void *data, size_t size) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    uint8_t *buf = malloc(plen + size + 1);
    if (!buf) abort();
    if (plen) memcpy(buf, prefix, plen);
    if (size) memcpy(buf + plen, data, size);
    fuzz_write_file(path, buf, plen + size);
    free(buf);
}

/* A seed from a committed fixture (skipped with a note when it is missing). */
static inline void fuzz_seed_fixture(const char *dir, const char *name, const void *prefix,
                                     size_t plen, const char *fixture) {
    size_t n;
    uint8_t *data = fuzz_read_file(fixture, &n);
    if (!data) {
        fprintf(stderr, "fuzz: seed fixture %s is missing; skipped\n", fixture);
        return;
    }
    fuzz_seed(dir, name, prefix, plen, data, n);
    free(data);
}

/* Touches every byte (so ASan checks the range) and returns a checksum the
 * compiler cannot drop. */
static inline uint64_t fuzz_touch(const void *p, size_t n) {
    const volatile uint8_t *b = p;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

static inline int fuzz_initialize(void (*seeds)(const char *dir)) {
    const char *dir = getenv("AIMC_FUZZ_MAKE_SEEDS");
    if (dir) {
        mkdir(dir, 0777);
        seeds(dir);
        exit(0);
    }
    return 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#ifdef FUZZ_REGRESS
#define FUZZ_MAIN(name)
#else
#define FUZZ_MAIN(name)                                                  \
    int LLVMFuzzerInitialize(int *argc, char ***argv) {                  \
        (void)argc, (void)argv;                                          \
        return fuzz_initialize(fuzz_##name##_seeds);                     \
    }                                                                    \
    int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {       \
        return fuzz_##name##_one(data, size);                            \
    }
#endif
#endif
