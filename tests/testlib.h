/* A tiny test harness shared by every tests/test_*.c (one binary each).
 * - CHECK(cond, fmt, ...) records one passed or failed check;
 * - rng: fresh inputs each run (seed printed; AIMC_TEST_SEED=N repeats one);
 * - rel_err: ||out - ref|| / ||ref|| against a float64 reference;
 * - poison: fill outputs with NaN before each run so unwritten values fail;
 * - tests_done() prints "N passed, M failed" and returns the exit status. */
#ifndef AIMC_TESTLIB_H
#define AIMC_TESTLIB_H
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int tl_passed, tl_failed;
static uint64_t tl_state;

#define CHECK(cond, ...)                                             \
    do {                                                             \
        if (cond) {                                                  \
            tl_passed++;                                             \
        } else {                                                     \
            tl_failed++;                                             \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);              \
            printf(__VA_ARGS__);                                     \
            printf("\n");                                            \
        }                                                            \
    } while (0)

/* Seeds the generator from AIMC_TEST_SEED or the clock and prints the seed. */
static inline void tests_begin(const char *name) {
    const char *s = getenv("AIMC_TEST_SEED");
    uint64_t seed = s ? strtoull(s, NULL, 10) : (uint64_t)time(NULL) ^ ((uint64_t)clock() << 20);
    tl_state = seed ? seed : 1;
    printf("%s: seed %llu (AIMC_TEST_SEED=%llu repeats this run)\n", name,
           (unsigned long long)seed, (unsigned long long)seed);
}

static inline int tests_done(void) {
    printf("%d passed, %d failed\n", tl_passed, tl_failed);
    return tl_failed ? 1 : 0;
}

/* splitmix64 */
static inline uint64_t rng_u64(void) {
    uint64_t z = (tl_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
/* uniform in [lo, hi) */
static inline double rng_uniform(double lo, double hi) {
    return lo + (hi - lo) * (double)(rng_u64() >> 11) * (1.0 / 9007199254740992.0);
}
static inline int64_t rng_int(int64_t n) { return (int64_t)(rng_u64() % (uint64_t)n); }
static inline double rng_normal(void) {
    double u = rng_uniform(1e-12, 1.0), v = rng_uniform(0.0, 1.0);
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}
static inline void fill_uniform(float *x, int64_t n, double lo, double hi) {
    for (int64_t i = 0; i < n; i++) x[i] = (float)rng_uniform(lo, hi);
}
static inline void fill_normal(float *x, int64_t n, double std) {
    for (int64_t i = 0; i < n; i++) x[i] = (float)(std * rng_normal());
}
static inline void poison(float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] = NAN;
}

/* ||out - ref|| / ||ref|| (absolute error when ref is all zeros). NaN in out
 * gives NaN, which fails every "<= tol" comparison. */
static inline double rel_err(const float *out, const double *ref, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)out[i] - ref[i];
        num += d * d;
        den += ref[i] * ref[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}
static inline double rel_err_f32(const float *out, const float *ref, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)out[i] - (double)ref[i];
        num += d * d;
        den += (double)ref[i] * ref[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}
static inline void *tl_alloc(size_t bytes) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p) {
        printf("FAIL: out of memory (%zu bytes)\n", bytes);
        exit(1);
    }
    return p;
}

/* Runs fn in a child process with stderr captured into msg; returns its exit
 * status (128 + signal when killed). For calls that must die with a clear
 * error. The call must fail before any OpenMP region starts: libgomp's
 * thread pool does not survive fork. */
static int tl_in_child;
/* LeakSanitizer asks this before its exit-time check: a child that dies on
 * purpose through an error exit leaves its allocations behind by design. */
int __lsan_is_turned_off(void);
int __lsan_is_turned_off(void) { return tl_in_child; }

/* Runs fn(arg) in a child with its stderr (and stdout too when
 * with_stdout) captured into msg; returns its exit status, or 128 + the
 * signal that ended it. fn returning counts as exit 0. */
static inline int tl_fork_capture(void (*fn)(void *), void *arg, int with_stdout, char *msg, size_t len) {
    int fd[2];
    if (pipe(fd)) return -1;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        tl_in_child = 1;
        dup2(fd[1], 2);
        if (with_stdout) dup2(fd[1], 1);
        close(fd[0]);
        fn(arg);
        fflush(stdout);
        _exit(0);
    }
    close(fd[1]);
    size_t got = 0;
    ssize_t k;
    while (got + 1 < len && (k = read(fd[0], msg + got, len - 1 - got)) > 0) got += (size_t)k;
    msg[got] = 0;
    char drain[4096]; /* read the rest so a long message never kills the child with SIGPIPE */
    while (read(fd[0], drain, sizeof drain) > 0) {
    }
    close(fd[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

typedef struct tl_void_fn {
    void (*fn)(void);
} tl_void_fn;

static inline void tl_call_void(void *f) { ((tl_void_fn *)f)->fn(); }

/* fn() in a child, its stderr into msg: its exit status. */
static inline int tl_run_child(void (*fn)(void), char *msg, size_t len) {
    tl_void_fn f = {fn};
    return tl_fork_capture(tl_call_void, &f, 0, msg, len);
}

typedef struct tl_command {
    int (*cmd)(int, char **);
    int argc;
    char **argv;
} tl_command;

static inline void tl_call_command(void *c) {
    const tl_command *tc = c;
    int rc = tc->cmd(tc->argc, tc->argv);
    fflush(stdout);
    _exit(rc);
}

/* An aimc subcommand (e.g. cmd_shards) run in a child with ARGV, its stdout
 * and stderr into out: its exit status. */
static inline int tl_run_command(int (*cmd)(int, char **), int argc, char **argv, char *out, size_t len) {
    tl_command c = {cmd, argc, argv};
    return tl_fork_capture(tl_call_command, &c, 1, out, len);
}

/* One check: fn exits with `status` and its stderr contains `want`. */
#define EXPECT_DIES(fn, status, want)                                                      \
    do {                                                                                   \
        char tl_msg_[1024];                                                                \
        int tl_rc_ = tl_run_child((fn), tl_msg_, sizeof tl_msg_);                          \
        CHECK(tl_rc_ == (status) && strstr(tl_msg_, (want)) != NULL,                       \
              "%s: want exit %d with '%s', got %d: %s", #fn, (status), (want), tl_rc_, tl_msg_); \
    } while (0)
/* A TCP port on the loopback that was free a moment ago (for rank launches). */
static inline int tl_free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) || getsockname(fd, (struct sockaddr *)&a, &len)) {
        printf("FAIL: no free port: %s\n", strerror(errno));
        exit(1);
    }
    close(fd);
    return ntohs(a.sin_port);
}

/* A child's exit status, or 128 + its signal. */
static inline int tl_wait_status(pid_t pid) {
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* A whole file (malloc'd, with a NUL after its bytes; its length in *n when
 * n is given), or NULL when it cannot be opened. */
static inline void *tl_read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = (char *)tl_alloc((size_t)(len > 0 ? len : 0) + 1);
    size_t got = len > 0 ? fread(s, 1, (size_t)len, f) : 0;
    s[got] = 0;
    fclose(f);
    if (n) *n = got;
    return s;
}

/* A whole text file as a string (malloc'd), or NULL. */
static inline char *tl_read_text(const char *path) { return (char *)tl_read_file(path, NULL); }

#endif
