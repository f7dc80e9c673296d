/* Fixture helpers shared by the model tests (test_decoder, test_mllm,
 * test_aim): finding the fixture folders, reading fixture tensors into host
 * buffers, comparing rows, and scratch model folders that reuse a fixture's
 * weights. A missing or broken fixture ends the test binary with one FAIL
 * line and status 1: nothing after it could be checked. */
#ifndef AIMC_MODEL_FIXTURE_H
#define AIMC_MODEL_FIXTURE_H
#include "testlib.h"
#include "../host/arena.h"
#include "../host/safetensors.h"
#include "../kernels/backend.h"
#include <cjson/cJSON.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

/* Paths by value, so that no caller holds a pointer into a shared buffer. */
typedef struct fx_path {
    char s[PATH_MAX + 64];
} fx_path;

/* "<dir>/<name>" */
static inline fx_path fx_join(const char *dir, const char *name) {
    fx_path p;
    int n = snprintf(p.s, sizeof p.s, "%s/%s", dir, name);
    if (n < 0 || n >= (int)sizeof p.s) printf("FAIL: path %s/%s too long\n", dir, name), exit(1);
    return p;
}

/* The absolute path of the repository folder rel (e.g. "tests/fixtures/models"),
 * found from the repository root or from one or two folders below it. */
static inline fx_path fx_repo_dir(const char *rel) {
    static const char *ups[] = {".", "..", "../.."};
    fx_path p;
    for (int i = 0; i < 3; i++)
        if (realpath(fx_join(ups[i], rel).s, p.s)) return p;
    printf("FAIL: %s not found (run from the repository root)\n", rel);
    exit(1);
}

/* The absolute path of the repository root (the folder that holds
 * tests/fixtures/models/llava), found from it or one or two folders below it. */
static inline const char *fx_repo_root(void) {
    static char root[PATH_MAX];
    static const char *ups[] = {".", "..", "../.."};
    for (int i = 0; i < 3; i++)
        if (access(fx_join(ups[i], "tests/fixtures/models/llava").s, R_OK) == 0 && realpath(ups[i], root))
            return root;
    printf("FAIL: tests/fixtures not found (run from the repository root)\n");
    exit(1);
}

static inline st_file *fx_open_st(const char *path) {
    char err[1024] = "";
    st_file *f = st_open(path, err, sizeof err);
    if (!f) printf("FAIL: %s\n", err), exit(1);
    return f;
}

static inline int64_t fx_numel(const st_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

static inline const st_tensor *fx_need(st_file *f, const char *name) {
    const st_tensor *t = st_find(f, name);
    if (!t) printf("FAIL: fixture tensor %s missing\n", name), exit(1);
    return t;
}

/* Tensor `name` of f converted to f32 in a new buffer; *n (when not NULL)
 * gets its number of values. */
static inline float *fx_read_f32(st_file *f, const char *name, int64_t *n) {
    const st_tensor *t = fx_need(f, name);
    char err[256] = "";
    float *out = tl_alloc((size_t)fx_numel(t) * sizeof *out);
    if (st_read_f32(t, out, err, sizeof err)) printf("FAIL: %s\n", err), exit(1);
    if (n) *n = fx_numel(t);
    return out;
}

static inline int32_t *fx_read_i32(st_file *f, const char *name, int64_t *n) {
    const st_tensor *t = fx_need(f, name);
    char err[256] = "";
    int32_t *out = tl_alloc((size_t)fx_numel(t) * sizeof *out);
    if (st_read_i32(t, out, err, sizeof err)) printf("FAIL: %s\n", err), exit(1);
    if (n) *n = fx_numel(t);
    return out;
}

static inline void fx_expect_numel(st_file *f, const char *name, int64_t numel) {
    int64_t n = fx_numel(fx_need(f, name));
    if (n != numel)
        printf("FAIL: fixture tensor %s has %lld values, expected %lld\n", name, (long long)n,
               (long long)numel), exit(1);
}

/* "<name>.<e>": a per-episode tensor name of the AIM fixtures (four
 * rotating buffers, so a call can take several). */
static inline const char *fx_per_ep(const char *name, int e) {
    static char buf[4][64];
    static int at;
    char *s = buf[at++ & 3];
    snprintf(s, sizeof buf[0], "%s.%d", name, e);
    return s;
}

/* The same as fx_read_f32 / fx_read_i32 for a tensor of exactly numel values. */
static inline float *fx_read_f32_n(st_file *f, const char *name, int64_t numel) {
    fx_expect_numel(f, name, numel);
    return fx_read_f32(f, name, NULL);
}

static inline int32_t *fx_read_i32_n(st_file *f, const char *name, int64_t numel) {
    fx_expect_numel(f, name, numel);
    return fx_read_i32(f, name, NULL);
}

/* rel err over the rows (of cols values) whose mask entry is 1 (mask NULL: all rows). */
static inline double fx_rel_rows(const float *out, const float *ref, const int32_t *mask,
                                 int64_t rows, int64_t cols) {
    double num = 0, den = 0;
    for (int64_t r = 0; r < rows; r++) {
        if (mask && !mask[r]) continue;
        for (int64_t j = 0; j < cols; j++) {
            double d = (double)out[r * cols + j] - ref[r * cols + j];
            num += d * d;
            den += (double)ref[r * cols + j] * ref[r * cols + j];
        }
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* Tensor `name` of an output file against `ex_name` of an expected one, by
 * fx_rel_rows over `rows` rows of equal width (mask: only rows whose entry
 * is 1; NULL: all); INFINITY when either is missing or the sizes differ. */
static inline double fx_out_vs(st_file *out, const char *name, st_file *ex, const char *ex_name,
                               const int32_t *mask, int64_t rows) {
    const st_tensor *t = st_find(out, name), *r = st_find(ex, ex_name);
    if (!t || !r || fx_numel(t) != fx_numel(r)) return INFINITY;
    float *got = fx_read_f32(out, name, NULL), *ref = fx_read_f32(ex, ex_name, NULL);
    double e = fx_rel_rows(got, ref, mask, rows, fx_numel(r) / rows);
    free(got), free(ref);
    return e;
}

/* A float tensor (f32, bf16 or f16, any backend) copied to a new host f32 buffer. */
static inline float *fx_download_f32(const tensor *t) {
    int64_t n = tensor_numel(t);
    float *h = tl_alloc((size_t)n * sizeof *h);
    if (t->dt == DT_F32) {
        t->be->download(h, t->data, (size_t)n * sizeof *h);
        return h;
    }
    if (t->dt != DT_BF16 && t->dt != DT_F16)
        printf("FAIL: download of a %s tensor as f32\n", dtype_name(t->dt)), exit(1);
    void *raw = tl_alloc(tensor_bytes(t));
    t->be->download(raw, t->data, tensor_bytes(t));
    for (int64_t i = 0; i < n; i++) h[i] = load_as_f32(raw, t->dt, i);
    free(raw);
    return h;
}

/* NaN into every value of an f32 tensor. */
static inline void fx_poison_tensor(tensor *t) {
    int64_t n = tensor_numel(t);
    float *h = tl_alloc((size_t)n * sizeof *h);
    poison(h, n);
    t->be->upload(t->data, h, (size_t)n * sizeof *h);
    free(h);
}

/* Every byte of the arena's memory set to 0xff: a NaN in f32, bf16 and f16
 * alike, so values a step reads before writing poison its results. */
static inline void fx_poison_arena(const arena *a) {
    size_t chunk = (size_t)1 << 20;
    unsigned char *ones = tl_alloc(chunk);
    memset(ones, 0xff, chunk);
    for (size_t at = 0; at < a->cap; at += chunk)
        a->be->upload((char *)a->base + at, ones, a->cap - at < chunk ? a->cap - at : chunk);
    free(ones);
}

static inline void fx_write_json(const char *path, const cJSON *j) {
    char *text = cJSON_Print(j);
    FILE *f = fopen(path, "wb");
    if (!f || fputs(text, f) < 0) printf("FAIL: cannot write %s\n", path), exit(1);
    fclose(f);
    free(text);
}

/* Makes the folder dir and links into it the weight files (single or
 * sharded) of the model folder `from`; dir gets no config. */
static inline void fx_link_weights(const char *dir, const char *from) {
    static const char *files[] = {"model.safetensors", "model.safetensors.index.json",
                                  "model-00001-of-00002.safetensors",
                                  "model-00002-of-00002.safetensors"};
    mkdir(dir, 0755);
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        fx_path src = fx_join(from, files[i]), dst = fx_join(dir, files[i]);
        if (access(src.s, R_OK) == 0 && symlink(src.s, dst.s))
            printf("FAIL: symlink %s\n", dst.s), exit(1);
    }
}

#endif
