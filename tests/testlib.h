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
#include <time.h>

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
#endif
