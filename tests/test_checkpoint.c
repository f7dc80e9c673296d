/* Flat binary checkpoints (host/checkpoint.h) and `aimc export`:
 *  - save -> load round trip, bitwise (tensors of several dtypes and sizes,
 *    step, texts, the opaque extra blob); the projector's state restored into
 *    a fresh projector continues training bitwise like the original;
 *  - truncation at many points, flipped bytes, wrong magic/version, a
 *    checkpoint for another backbone or projector: each refused with one
 *    clear line, and nothing on disk changes;
 *  - keep-last-N and the latest pointer;
 *  - a writer SIGKILLed in the middle of a large checkpoint
 *    (AIMC_TEST_CKPT_SLOW_WRITE) leaves the previous checkpoint intact and
 *    latest pointing at it; a full disk (RLIMIT_FSIZE) gives a clear error,
 *    removes the temporary file and leaves latest unchanged;
 *  - export: safetensors read back with aimc's reader (names, shapes,
 *    values) and, when python3 has safetensors + torch, with PyTorch; the
 *    JSON description; --format bin. */
#include "../host/checkpoint.h"
#include "../host/commands.h"
#include "../host/safetensors.h"
#include "testlib.h"
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>

static const backend *be;
static char root[256]; /* a fresh temporary directory for the whole run */

static const char *BACKBONE = "name=tiny-llava hidden=32 layers=2 vocab=96";
static const char *OTHER_BACKBONE = "name=tiny-blip2 hidden=32 layers=2 vocab=96";

/* ===== files ================================================================ */

static const char *at(const char *name) {
    static char buf[8][512];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", root, name);
    return buf[k];
}

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, n, f) != n || fclose(f)) {
        printf("FAIL: cannot write %s\n", path);
        exit(1);
    }
}

static int file_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* A fingerprint of a directory: every name, size and content hash. */
static uint64_t dir_fingerprint(const char *dir) {
    DIR *d = opendir(dir);
    uint64_t h = 1469598103934665603ull;
    if (!d) return 0;
    for (struct dirent *de; (de = readdir(d));) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        struct stat sb;
        if (stat(path, &sb) || !S_ISREG(sb.st_mode)) continue;
        size_t n = 0;
        unsigned char *data = tl_read_file(path, &n);
        uint64_t fh = ckpt_hash_text(de->d_name) ^ (uint64_t)sb.st_mtim.tv_nsec;
        for (size_t i = 0; data && i < n; i++) fh = (fh ^ data[i]) * 1099511628211ull;
        h ^= fh + (uint64_t)n; /* order independent */
        free(data);
    }
    closedir(d);
    return h;
}

static int count_entries(const char *dir, const char *prefix) {
    DIR *d = opendir(dir);
    int n = 0;
    if (!d) return -1;
    for (struct dirent *de; (de = readdir(d));) n += !strncmp(de->d_name, prefix, strlen(prefix));
    closedir(d);
    return n;
}

static void make_dir(const char *path) {
    if (mkdir(path, 0755) && errno != EEXIST) {
        printf("FAIL: mkdir %s\n", path);
        exit(1);
    }
}

/* ===== synthetic contents ====================================================== */

#define MAX_T 24

typedef struct sample {
    ckpt_tensor t[MAX_T];
    char names[MAX_T][CKPT_NAME_MAX];
    void *data[MAX_T];
    int n;
    unsigned char *extra;
    size_t extra_len;
    ckpt_contents c;
} sample;

static void add_tensor(sample *s, const char *name, uint32_t role, dtype dt, int ndim,
                       const int64_t *shape) {
    ckpt_tensor *t = &s->t[s->n];
    snprintf(s->names[s->n], CKPT_NAME_MAX, "%s", name);
    *t = (ckpt_tensor){.name = s->names[s->n], .role = role, .dt = dt, .ndim = ndim};
    size_t bytes = dtype_size(dt);
    for (int d = 0; d < ndim; d++) t->shape[d] = shape[d], bytes *= (size_t)shape[d];
    unsigned char *p = tl_alloc(bytes);
    for (size_t i = 0; i < bytes; i++) p[i] = (unsigned char)rng_u64();
    t->data = s->data[s->n] = p;
    t->nbytes = bytes;
    s->n++;
}

/* A checkpoint-like sample: odd shapes, an empty tensor, bf16 and i32
 * tensors, an extra blob of extra_len random bytes; big adds large tensors. */
static sample *make_sample(uint64_t step, size_t extra_len, int64_t big) {
    sample *s = calloc(1, sizeof *s);
    add_tensor(s, "linear.weight", CKPT_ROLE_PARAM, DT_F32, 2, (int64_t[]){7, 5});
    add_tensor(s, "linear.bias", CKPT_ROLE_PARAM, DT_F32, 1, (int64_t[]){7});
    add_tensor(s, "exp_avg.linear.weight", CKPT_ROLE_ADAM_M, DT_F32, 2, (int64_t[]){7, 5});
    add_tensor(s, "exp_avg_sq.linear.weight", CKPT_ROLE_ADAM_V, DT_F32, 2, (int64_t[]){7, 5});
    add_tensor(s, "empty", CKPT_ROLE_OTHER, DT_F32, 1, (int64_t[]){0});
    add_tensor(s, "half", CKPT_ROLE_OTHER, DT_BF16, 3, (int64_t[]){3, 1, 3});
    add_tensor(s, "ids", CKPT_ROLE_OTHER, DT_I32, 4, (int64_t[]){1, 2, 3, 1});
    for (int64_t k = 0; k < big && s->n < MAX_T; k++) {
        char name[32];
        snprintf(name, sizeof name, "big.%lld", (long long)k);
        add_tensor(s, name, CKPT_ROLE_OTHER, DT_F32, 2, (int64_t[]){256, 1024}); /* 1 MiB */
    }
    s->extra_len = extra_len;
    s->extra = tl_alloc(extra_len + 1);
    for (size_t i = 0; i < extra_len; i++) s->extra[i] = (unsigned char)rng_u64();
    s->c = (ckpt_contents){.kind = CKPT_KIND_TRAIN, .step = step, .backbone_text = BACKBONE,
                           .projector_text = "type=linear d_in=5 d_out=7",
                           .config_text = "backbone = tiny-llava\nlayer = -1\nlr = 0.0001\n",
                           .extra = s->extra, .extra_len = extra_len, .tensors = s->t, .n_tensors = s->n};
    return s;
}

static void sample_free(sample *s) {
    for (int i = 0; i < s->n; i++) free(s->data[i]);
    free(s->extra);
    free(s);
}

static ckpt_expect expect_of(const sample *s) {
    return (ckpt_expect){s->c.backbone_text, s->c.projector_text};
}

/* Every field of f equals s, bitwise. */
static int matches(const ckpt_file *f, const sample *s, char *why, size_t n) {
    const ckpt_contents *c = &s->c;
    if (f->step != c->step || f->kind != c->kind) return snprintf(why, n, "step/kind"), 0;
    if (strcmp(f->backbone_text, c->backbone_text) || strcmp(f->projector_text, c->projector_text) ||
        strcmp(f->config_text, c->config_text))
        return snprintf(why, n, "texts"), 0;
    if (f->extra_len != c->extra_len || (c->extra_len && memcmp(f->extra, c->extra, c->extra_len)))
        return snprintf(why, n, "extra blob"), 0;
    if (f->n_tensors != c->n_tensors) return snprintf(why, n, "tensor count %d", f->n_tensors), 0;
    for (int i = 0; i < c->n_tensors; i++) {
        const ckpt_tensor *a = ckpt_find(f, c->tensors[i].name), *b = &c->tensors[i];
        if (!a || a->role != b->role || a->dt != b->dt || a->ndim != b->ndim || a->nbytes != b->nbytes ||
            memcmp(a->shape, b->shape, sizeof(int64_t) * (size_t)b->ndim) ||
            (b->nbytes && memcmp(a->data, b->data, b->nbytes)))
            return snprintf(why, n, "tensor '%s'", b->name), 0;
    }
    return 1;
}

/* ===== round trip =============================================================== */

static void test_round_trip(void) {
    char err[1024], why[128];
    const size_t extras[3] = {0, 1, 1001};
    for (int k = 0; k < 3; k++) {
        sample *s = make_sample(1000 + (uint64_t)k, extras[k], k);
        if (k == 1) s->c.config_text = "";
        const char *path = at("round.aimc");
        int rc = ckpt_write(path, &s->c, err, sizeof err);
        CHECK(rc == 0, "ckpt_write: %s", err);
        ckpt_expect x = expect_of(s);
        ckpt_file *f = ckpt_open(path, &x, err, sizeof err);
        CHECK(f && matches(f, s, why, sizeof why), "round trip %d: %s", k, f ? why : err);
        if (f) {
            int aligned = 1;
            for (int i = 0; i < f->n_tensors; i++) aligned &= ((uintptr_t)f->tensors[i].data % 64) == 0;
            CHECK(aligned, "tensor data not 64-byte aligned in the mapping");
        }
        ckpt_close(f);
        sample_free(s);
    }
    CHECK(count_entries(root, ".round") == 0, "a temporary file was left behind");
}

/* Projector state: save, restore into a projector with another seed, then
 * both take the same steps: bitwise the same parameters and moments. */
static void set_grads(projector *p, uint64_t seed) {
    uint64_t keep = tl_state;
    tl_state = seed;
    for (int i = 0; i < p->n_params; i++) {
        int64_t n = tensor_numel(&p->params[i].grad);
        float *g = tl_alloc((size_t)n * sizeof(float));
        fill_normal(g, n, 1.0);
        be->upload(p->params[i].grad.data, g, (size_t)n * sizeof(float));
        free(g);
    }
    tl_state = keep;
}

static int same_state(const projector *a, const projector *b) {
    ckpt_tensor ta[CKPT_PROJECTOR_MAX_TENSORS], tb[CKPT_PROJECTOR_MAX_TENSORS];
    int na = ckpt_projector_tensors(a, 1, ta), nb = ckpt_projector_tensors(b, 1, tb), same = na == nb;
    for (int i = 0; same && i < na; i++)
        same = !strcmp(ta[i].name, tb[i].name) && ta[i].nbytes == tb[i].nbytes &&
               !memcmp(ta[i].data, tb[i].data, ta[i].nbytes);
    ckpt_tensors_free(ta, na);
    ckpt_tensors_free(tb, nb);
    return same;
}

static void take_steps(projector *p, int64_t first, int n) {
    adamw_opts o = {.beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .weight_decay = 0.1f, .grad_scale = 0.5f};
    for (int64_t s = first; s < first + n; s++) {
        o.step = s;
        set_grads(p, 77 + (uint64_t)s);
        projector_step(p, &o, 1e-3f, 1.0f);
    }
}

static void test_projector_resume(void) {
    projector_config cfg = {PROJ_LINEAR_LN, 12, 10, 0, 1e-5f, 5};
    char desc[160], err[1024];
    projector_describe(&cfg, desc, sizeof desc);
    projector a, b;
    projector_init(&a, be, &cfg);
    take_steps(&a, 1, 3);
    ckpt_tensor t[CKPT_PROJECTOR_MAX_TENSORS];
    int n = ckpt_projector_tensors(&a, 1, t);
    const char rng_state[] = "rng:0123456789abcdef cursor:rank0=17,rank1=19";
    ckpt_contents c = {.kind = CKPT_KIND_TRAIN, .step = 3, .backbone_text = BACKBONE, .projector_text = desc,
                       .config_text = "", .extra = rng_state, .extra_len = sizeof rng_state, .tensors = t,
                       .n_tensors = n};
    CHECK(n == 12, "projector tensors: %d, want 12", n);
    int rc = ckpt_write(at("proj.aimc"), &c, err, sizeof err);
    ckpt_tensors_free(t, n);
    ckpt_expect x = {BACKBONE, desc};
    ckpt_file *f = rc ? NULL : ckpt_open(at("proj.aimc"), &x, err, sizeof err);
    cfg.seed = 6;
    projector_init(&b, be, &cfg);
    rc = f ? ckpt_projector_restore(f, &b, 1, err, sizeof err) : -1;
    CHECK(rc == 0 && same_state(&a, &b), "projector restore: %s", rc ? err : "state differs");
    CHECK(f && f->step == 3 && f->extra_len == sizeof rng_state && !memcmp(f->extra, rng_state, sizeof rng_state),
          "step / extra blob not restored");
    take_steps(&a, 4, 3);
    take_steps(&b, 4, 3);
    CHECK(same_state(&a, &b), "resumed projector diverged from the uninterrupted one");
    /* a projector of another shape: a clear error, nothing changed */
    projector_config other = {PROJ_LINEAR_LN, 12, 11, 0, 1e-5f, 5};
    projector o;
    projector_init(&o, be, &other);
    rc = f ? ckpt_projector_restore(f, &o, 1, err, sizeof err) : 0;
    CHECK(rc == -1 && strstr(err, "'linear.weight' is f32 [10, 12], expected f32 [11, 12]"),
          "restore into another shape: rc %d, '%s'", rc, err);
    ckpt_close(f);
    projector_free(&a), projector_free(&b), projector_free(&o);
}

/* ===== refusals =================================================================== */

/* ckpt_open fails with one line containing want (and the path). */
static void expect_refused(const char *path, const ckpt_expect *x, const char *want, const char *what) {
    char err[2048] = "";
    uint64_t before = dir_fingerprint(root);
    ckpt_file *f = ckpt_open(path, x, err, sizeof err);
    CHECK(!f && strstr(err, want) && strstr(err, path) && !strchr(err, '\n'),
          "%s: want an error with '%s', got %s '%s'", what, want, f ? "success" : "", err);
    CHECK(dir_fingerprint(root) == before, "%s: a refused load changed files on disk", what);
    ckpt_close(f);
}

static void test_truncated(void) {
    sample *s = make_sample(7, 33, 0);
    char err[1024];
    ckpt_write(at("good.aimc"), &s->c, err, sizeof err);
    size_t n;
    unsigned char *good = tl_read_file(at("good.aimc"), &n);
    size_t cuts[40] = {0, 1, 7, 8, 12, 100, 127, 128, 135, 136, 137, 200, n / 2, n - 9, n - 8, n - 5, n - 1};
    int ncuts = 17;
    while (ncuts < 40) cuts[ncuts++] = (size_t)rng_int((int64_t)n);
    for (int i = 0; i < ncuts; i++) {
        write_file(at("cut.aimc"), good, cuts[i]);
        char what[64];
        snprintf(what, sizeof what, "truncated at %zu of %zu", cuts[i], n);
        expect_refused(at("cut.aimc"), NULL, cuts[i] < 136 ? "shorter than" : "truncated", what);
    }
    unsigned char *longer = tl_alloc(n + 3);
    memcpy(longer, good, n);
    memset(longer + n, 0, 3);
    write_file(at("cut.aimc"), longer, n + 3);
    expect_refused(at("cut.aimc"), NULL, "trailing bytes", "3 bytes appended");
    free(longer);
    free(good);
    sample_free(s);
}

static void test_corrupt(void) {
    sample *s = make_sample(8, 40, 0);
    char err[1024];
    ckpt_write(at("good.aimc"), &s->c, err, sizeof err);
    size_t n;
    unsigned char *good = tl_read_file(at("good.aimc"), &n), *bad = tl_alloc(n);
    /* bytes inside texts, table and data and the stored CRC: only the checksum can tell */
    size_t body[6] = {130, 200, n / 2, n - 20, n - 9, n - 8};
    for (int i = 0; i < 6; i++) {
        memcpy(bad, good, n);
        bad[body[i]] ^= 0x10;
        write_file(at("bad.aimc"), bad, n);
        char what[64];
        snprintf(what, sizeof what, "byte %zu of %zu flipped", body[i], n);
        expect_refused(at("bad.aimc"), NULL, "checksum mismatch", what);
    }
    memcpy(bad, good, n);
    bad[n - 1] ^= 1;
    write_file(at("bad.aimc"), bad, n);
    expect_refused(at("bad.aimc"), NULL, "end marker missing", "end marker flipped");
    memcpy(bad, good, n);
    memcpy(bad, "GGUF\3\0\0\0", 8);
    write_file(at("bad.aimc"), bad, n);
    expect_refused(at("bad.aimc"), NULL, "not an aimc checkpoint (starts with 'GGUF....'", "foreign magic");
    memcpy(bad, good, n);
    bad[8] = 2;
    write_file(at("bad.aimc"), bad, n);
    expect_refused(at("bad.aimc"), NULL, "checkpoint format version 2; this aimc reads version 1", "version 2");
    memcpy(bad, good, n);
    bad[64] ^= 0x40; /* backbone text length: the layout no longer adds up */
    write_file(at("bad.aimc"), bad, n);
    expect_refused(at("bad.aimc"), NULL, "inconsistent header", "text length changed");
    write_file(at("bad.aimc"), "hello", 5);
    expect_refused(at("bad.aimc"), NULL, "shorter than", "5-byte file");
    expect_refused(at("missing.aimc"), NULL, "cannot open checkpoint: No such file", "missing file");
    expect_refused(root, NULL, "not a regular file", "a directory");
    free(good), free(bad);
    sample_free(s);
}

static void test_wrong_hashes(void) {
    sample *s = make_sample(9, 0, 0);
    char err[1024];
    ckpt_write(at("good.aimc"), &s->c, err, sizeof err);
    ckpt_expect x = {OTHER_BACKBONE, s->c.projector_text};
    char want[512];
    snprintf(want, sizeof want, "written for backbone '%s' (hash %016llx), but this run's backbone is '%s' (hash %016llx)",
             BACKBONE, (unsigned long long)ckpt_hash_text(BACKBONE), OTHER_BACKBONE,
             (unsigned long long)ckpt_hash_text(OTHER_BACKBONE));
    expect_refused(at("good.aimc"), &x, want, "another backbone");
    x = (ckpt_expect){BACKBONE, "type=mlp d_in=5 d_hidden=7 d_out=7"};
    expect_refused(at("good.aimc"), &x, "written for projector 'type=linear d_in=5 d_out=7'", "another projector");
    x = (ckpt_expect){NULL, NULL};
    ckpt_file *f = ckpt_open(at("good.aimc"), &x, err, sizeof err);
    CHECK(f != NULL, "open without expectations: %s", err);
    ckpt_close(f);
    sample_free(s);
}

/* ===== directory: latest and keep-last-N ============================================== */

static int64_t latest_step(const char *dir) {
    char path[1024], err[1024];
    if (ckpt_latest(dir, path, sizeof path, err, sizeof err) != 1) return -1;
    ckpt_file *f = ckpt_open(path, NULL, err, sizeof err);
    int64_t step = f ? (int64_t)f->step : -2;
    ckpt_close(f);
    return step;
}

static void save_step(const char *dir, uint64_t step, int keep, int64_t big) {
    sample *s = make_sample(step, 16, big);
    char err[1024], path[1024];
    int rc = ckpt_save_dir(dir, &s->c, keep, path, sizeof path, err, sizeof err);
    CHECK(rc == 0 && strstr(path, "ckpt-00000000"), "save step %llu: %s", (unsigned long long)step, err);
    sample_free(s);
}

static void test_keep_last(void) {
    char dir[512], path[1024], err[1024];
    snprintf(dir, sizeof dir, "%s", at("run1"));
    CHECK(ckpt_latest(dir, path, sizeof path, err, sizeof err) == 0, "latest of a missing dir");
    for (uint64_t step = 10; step <= 50; step += 10) save_step(dir, step, 3, 0);
    CHECK(count_entries(dir, "ckpt-") == 3 && file_exists(at("run1/ckpt-0000000030.aimc")) &&
              file_exists(at("run1/ckpt-0000000050.aimc")) && !file_exists(at("run1/ckpt-0000000020.aimc")),
          "keep 3 of 5: %d checkpoints left", count_entries(dir, "ckpt-"));
    CHECK(latest_step(dir) == 50, "latest: step %lld, want 50", (long long)latest_step(dir));
    /* saving an older step (a resume from 35): kept, and latest points at it */
    save_step(dir, 35, 2, 0);
    CHECK(latest_step(dir) == 35 && count_entries(dir, "ckpt-") == 2 && file_exists(at("run1/ckpt-0000000050.aimc")),
          "older step: latest %lld, %d files", (long long)latest_step(dir), count_entries(dir, "ckpt-"));
    CHECK(ckpt_resolve(dir, path, sizeof path, err, sizeof err) == 0 && strstr(path, "ckpt-0000000035.aimc"),
          "resolve dir: %s", path);
    CHECK(ckpt_resolve(at("run1/ckpt-0000000050.aimc"), path, sizeof path, err, sizeof err) == 0 &&
              strstr(path, "ckpt-0000000050.aimc"),
          "resolve file");
    make_dir(at("empty"));
    CHECK(ckpt_resolve(at("empty"), path, sizeof path, err, sizeof err) == -1 && strstr(err, "no checkpoint"),
          "resolve empty dir: %s", err);
    write_file(at("run1/latest"), "ckpt-0000000099.aimc\n", 21);
    CHECK(ckpt_latest(dir, path, sizeof path, err, sizeof err) == -1 && strstr(err, "missing"),
          "latest naming a missing file: %s", err);
    write_file(at("run1/latest"), "../../etc/passwd\n", 17);
    CHECK(ckpt_latest(dir, path, sizeof path, err, sizeof err) == -1 && strstr(err, "does not name"),
          "latest naming a path: %s", err);
    CHECK(count_entries(dir, ".") == 2, "temporary files left in %s", dir); /* only . and .. */
}

/* ===== crashes and full disks ========================================================== */

static char child_dir[512];

/* A slow write of a large checkpoint (about 16 MiB at one 1-MiB tensor per 100 ms). */
static void slow_writer(void) {
    setenv("AIMC_TEST_CKPT_SLOW_WRITE", "100", 1);
    sample *s = make_sample(20, 16, 16);
    char err[1024];
    ckpt_save_dir(child_dir, &s->c, 3, NULL, 0, err, sizeof err);
    _exit(0);
}

/* The size of a temporary file in dir of the checkpoint being written. */
static long long temp_size(const char *dir) {
    DIR *d = opendir(dir);
    long long size = -1;
    for (struct dirent *de; d && (de = readdir(d));) {
        if (strncmp(de->d_name, ".ckpt-0000000020.aimc.tmp.", 26)) continue;
        char path[1024];
        struct stat sb;
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        if (!stat(path, &sb)) size = sb.st_size;
    }
    if (d) closedir(d);
    return size;
}

static void test_killed_mid_write(void) {
    snprintf(child_dir, sizeof child_dir, "%s", at("run2"));
    save_step(child_dir, 10, 3, 0);
    char path[1024], err[1024];
    ckpt_latest(child_dir, path, sizeof path, err, sizeof err);
    size_t n;
    unsigned char *before = tl_read_file(path, &n);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) slow_writer();
    long long size = -1;
    for (int i = 0; i < 2000 && size < (4 << 20); i++) { /* up to 10 s for 4 MiB to land */
        usleep(5000);
        size = temp_size(child_dir);
    }
    kill(pid, SIGKILL);
    int status;
    waitpid(pid, &status, 0);
    CHECK(WIFSIGNALED(status) && size >= (4 << 20), "writer not killed mid-write (temp size %lld)", size);
    size_t n2;
    unsigned char *after = tl_read_file(path, &n2);
    CHECK(latest_step(child_dir) == 10, "after the kill latest names step %lld, want 10",
          (long long)latest_step(child_dir));
    CHECK(after && n2 == n && !memcmp(before, after, n), "the previous checkpoint changed");
    CHECK(!file_exists(at("run2/ckpt-0000000020.aimc")), "a half-written checkpoint is in place");
    CHECK(temp_size(child_dir) > 0, "the killed writer's temporary file should still be there");
    save_step(child_dir, 30, 3, 0); /* the next save removes the dead writer's temporary */
    CHECK(temp_size(child_dir) < 0 && latest_step(child_dir) == 30, "stale temporary not removed");
    free(before), free(after);
}

static void full_disk_writer(void) {
    signal(SIGXFSZ, SIG_IGN); /* write() then fails with EFBIG instead of killing us */
    struct rlimit lim = {2 << 20, 2 << 20};
    setrlimit(RLIMIT_FSIZE, &lim);
    sample *s = make_sample(20, 16, 6);
    char err[1024];
    if (ckpt_save_dir(child_dir, &s->c, 3, NULL, 0, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        _exit(1);
    }
    _exit(0);
}

static void test_full_disk(void) {
    snprintf(child_dir, sizeof child_dir, "%s", at("run3"));
    save_step(child_dir, 10, 3, 0);
    uint64_t before = dir_fingerprint(child_dir);
    char msg[1024];
    int rc = tl_run_child(full_disk_writer, msg, sizeof msg);
    CHECK(rc == 1 && strstr(msg, "writing the checkpoint failed (File too large); temporary") &&
              strstr(msg, "removed"),
          "full disk: exit %d, '%s'", rc, msg);
    CHECK(dir_fingerprint(child_dir) == before && latest_step(child_dir) == 10 && count_entries(child_dir, ".ckpt") == 0,
          "full disk: the directory changed (latest %lld)", (long long)latest_step(child_dir));
}

/* ===== export ============================================================================ */

static projector export_proj;
static char export_ckpt[512];

static int run_export(const char *ckpt, const char *out, const char *format) {
    char *argv[] = {"export", (char *)ckpt, "--out", (char *)out, "--format", (char *)format, NULL};
    return cmd_export(6, argv);
}

static void check_safetensors_values(const char *path) {
    char err[1024];
    st_file *f = st_open(path, err, sizeof err);
    CHECK(f != NULL, "export: %s", err);
    if (!f) return;
    int ok = st_count(f) == export_proj.n_params;
    for (int i = 0; ok && i < export_proj.n_params; i++) {
        const projector_param *pp = &export_proj.params[i];
        const st_tensor *t = st_find(f, pp->name);
        ok = t && t->dtype == ST_F32 && t->ndim == pp->value.ndim &&
             !memcmp(t->shape, pp->value.shape, sizeof(int64_t) * (size_t)t->ndim);
        if (!ok) break;
        float *want = tl_alloc(tensor_bytes(&pp->value));
        be->download(want, pp->value.data, tensor_bytes(&pp->value));
        ok = t->nbytes == tensor_bytes(&pp->value) && !memcmp(t->data, want, t->nbytes);
        free(want);
    }
    CHECK(ok, "export: names, shapes or values differ from the projector's");
    st_close(f);
}

static void check_json(const char *path) {
    size_t n;
    char *text = (char *)tl_read_file(path, &n);
    cJSON *j = text ? (text[n] = 0, cJSON_Parse(text)) : NULL;
    const cJSON *sd = cJSON_GetObjectItem(j, "state_dict"), *w = cJSON_GetObjectItem(sd, "fc1.weight");
    CHECK(j && !strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(j, "projector_type")), "mlp") &&
              cJSON_GetNumberValue(cJSON_GetObjectItem(j, "d_in")) == 6 &&
              cJSON_GetNumberValue(cJSON_GetObjectItem(j, "d_hidden")) == 9 &&
              cJSON_GetNumberValue(cJSON_GetObjectItem(j, "d_out")) == 5 &&
              cJSON_GetNumberValue(cJSON_GetObjectItem(j, "step")) == 42 &&
              cJSON_GetNumberValue(cJSON_GetObjectItem(j, "layer")) == -2 &&
              !strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(j, "backbone")), "tiny-llava") &&
              cJSON_GetArraySize(sd) == 4 && cJSON_GetArraySize(w) == 2 &&
              cJSON_GetNumberValue(cJSON_GetArrayItem(w, 0)) == 9 &&
              cJSON_GetNumberValue(cJSON_GetArrayItem(w, 1)) == 6,
          "export JSON %s: %s", path, text ? text : "(missing)");
    cJSON_Delete(j);
    free(text);
}

/* PyTorch's view of the file, when python3 has safetensors and torch (one
 * python run: importing torch takes seconds). */
static void check_with_pytorch(const char *path) {
    char cmd[2048], out[1024] = "";
    snprintf(cmd, sizeof cmd,
             "python3 -c \"\n"
             "try:\n import safetensors.torch as st, torch\n"
             "except Exception:\n print('SKIP'); raise SystemExit(0)\n"
             "sd = st.load_file('%s')\n"
             "m = torch.nn.Sequential(); m.fc1 = torch.nn.Linear(6, 9); m.act = torch.nn.GELU()\n"
             "m.fc2 = torch.nn.Linear(9, 5); m.load_state_dict(sd)\n"
             "print(' '.join(k + ':' + 'x'.join(map(str, v.shape)) + ':' + str(v.dtype) for k, v in sorted(sd.items())))\n"
             "\" 2>&1",
             path);
    FILE *p = popen(cmd, "r");
    if (p && !fgets(out, sizeof out, p)) out[0] = 0;
    int rc = p ? pclose(p) : -1;
    out[strcspn(out, "\n")] = 0;
    if (rc != 0 && strstr(out, "not found")) strcpy(out, "SKIP"); /* no python3 at all */
    if (!strcmp(out, "SKIP")) {
        printf("skip: python3 with safetensors.torch is not available; PyTorch load not checked\n");
        return;
    }
    CHECK(rc == 0 && !strcmp(out, "fc1.bias:9:torch.float32 fc1.weight:9x6:torch.float32 "
                                  "fc2.bias:5:torch.float32 fc2.weight:5x9:torch.float32"),
          "PyTorch load_state_dict of the export: rc %d, '%s'", rc, out);
    printf("PyTorch loaded the exported state_dict into nn.Linear/GELU/nn.Linear: %s\n", out);
}

static void export_corrupt(void) { exit(run_export(at("bad.aimc"), at("never.safetensors"), "safetensors")); }
static void export_bad_format(void) { exit(run_export(export_ckpt, at("never.safetensors"), "onnx")); }

static void test_export(void) {
    projector_config cfg = {PROJ_MLP, 6, 5, 9, 0, 11};
    char desc[160], err[1024];
    projector_describe(&cfg, desc, sizeof desc);
    projector_init(&export_proj, be, &cfg);
    take_steps(&export_proj, 1, 2);
    ckpt_tensor t[CKPT_PROJECTOR_MAX_TENSORS];
    int n = ckpt_projector_tensors(&export_proj, 1, t);
    ckpt_contents c = {.kind = CKPT_KIND_TRAIN, .step = 42, .backbone_text = BACKBONE, .projector_text = desc,
                       .config_text = "# run\nbackbone = tiny-llava\nlayer = -2\n", .tensors = t, .n_tensors = n};
    make_dir(at("run4"));
    int rc = ckpt_save_dir(at("run4"), &c, 2, export_ckpt, sizeof export_ckpt, err, sizeof err);
    ckpt_tensors_free(t, n);
    CHECK(rc == 0, "export setup: %s", err);
    CHECK(run_export(at("run4"), at("projector.safetensors"), "safetensors") == 0, "aimc export failed");
    check_safetensors_values(at("projector.safetensors"));
    check_json(at("projector.json"));
    check_with_pytorch(at("projector.safetensors"));
    CHECK(run_export(export_ckpt, at("flat.bin"), "bin") == 0, "aimc export --format bin failed");
    ckpt_expect x = {BACKBONE, desc};
    ckpt_file *f = ckpt_open(at("flat.bin"), &x, err, sizeof err);
    projector back;
    projector_init(&back, be, &(projector_config){PROJ_MLP, 6, 5, 9, 0, 99});
    int ok = f && f->kind == CKPT_KIND_PARAMS && f->n_tensors == 4 && f->step == 42 &&
             ckpt_projector_restore(f, &back, 0, err, sizeof err) == 0;
    for (int i = 0; ok && i < 4; i++) {
        float a[64], b[64];
        size_t bytes = tensor_bytes(&back.params[i].value);
        be->download(a, back.params[i].value.data, bytes);
        be->download(b, export_proj.params[i].value.data, bytes);
        ok = !memcmp(a, b, bytes);
    }
    CHECK(ok, "export --format bin: %s", f ? "contents differ" : err);
    CHECK(file_exists(at("flat.json")), "export --format bin: no flat.json");
    ckpt_close(f);
    projector_free(&back);
    sample *s = make_sample(1, 0, 0);
    ckpt_write(at("bad.aimc"), &s->c, err, sizeof err);
    size_t len;
    unsigned char *bytes = tl_read_file(at("bad.aimc"), &len);
    bytes[len / 2] ^= 0x40;
    write_file(at("bad.aimc"), bytes, len);
    free(bytes);
    sample_free(s);
    EXPECT_DIES(export_corrupt, 1, "aimc export: error: ");
    EXPECT_DIES(export_corrupt, 1, "checksum mismatch");
    EXPECT_DIES(export_bad_format, 2, "--format 'onnx' is not safetensors or bin");
    CHECK(!file_exists(at("never.safetensors")) && !file_exists(at("never.json")),
          "a failed export wrote files");
    projector_free(&export_proj);
}

int main(void) {
    tests_begin("test_checkpoint");
    be = backend_cpu();
    snprintf(root, sizeof root, "/tmp/aimc-test-ckpt-XXXXXX");
    if (!mkdtemp(root)) {
        printf("FAIL: mkdtemp\n");
        return 1;
    }
    test_round_trip();
    test_projector_resume();
    test_truncated();
    test_corrupt();
    test_wrong_hashes();
    test_keep_last();
    test_killed_mid_write();
    test_full_disk();
    test_export();
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0) printf("note: could not remove %s\n", root);
    return tests_done();
}
