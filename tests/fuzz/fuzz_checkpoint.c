/* Fuzz target: the checkpoint reader (host/checkpoint.h).
 * Input: one flag byte, then the payload.
 *   flags & 4: the payload is the text of a checkpoint folder's "latest"
 *              file; ckpt_latest and ckpt_resolve read it (the folder holds
 *              one valid checkpoint, ckpt-0000000001.aimc).
 *   otherwise: the payload is a checkpoint file for ckpt_open. With
 *              flags & 1 the harness first repairs what random mutation
 *              almost never keeps right (file_size field, the two text
 *              hashes, the CRC-32 and the end marker), so the fuzzer gets past
 *              the checksum into the table; flags & 2 passes an expectation
 *              (hash check against other texts).
 * Oracles for a checkpoint that opens: every tensor is findable by name, has
 * numel * dtype size bytes inside the file, and writing the contents back
 * with ckpt_write and reopening gives the same texts, extra blob and tensors. */
#include "../../host/checkpoint.h"
#include "fuzz.h"
#include <zlib.h>

static uint64_t ckfz_get64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static void ckfz_put64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* Stores the hash of the text at [off, off + len) into header field at. */
static void ckfz_fix_hash(uint8_t *b, size_t body, uint64_t off, uint64_t len, size_t at) {
    if (off > body || len > body - off) return;
    char *text = fuzz_cstr(b + off, (size_t)len);
    ckfz_put64(b + at, ckpt_hash_text(text));
    free(text);
}

/* Header file_size, text hashes, CRC-32 and "AEND" made consistent. */
static void ckfz_repair(uint8_t *b, size_t size) {
    if (size < CKPT_HEADER_SIZE + 8) return;
    size_t body = size - 8;
    ckfz_put64(b + 16, size);
    uint64_t blen = ckfz_get64(b + 64), plen = ckfz_get64(b + 72);
    ckfz_fix_hash(b, body, CKPT_HEADER_SIZE, blen, 32);
    if (blen < body) ckfz_fix_hash(b, body, (CKPT_HEADER_SIZE + blen + 7) & ~(uint64_t)7, plen, 40);
    uint32_t crc = (uint32_t)crc32_z(crc32_z(0, NULL, 0), b, body);
    for (int i = 0; i < 4; i++) b[body + (size_t)i] = (uint8_t)(crc >> (8 * i));
    memcpy(b + body + 4, "AEND", 4);
}

static int64_t ckfz_numel(const ckpt_tensor *t) {
    int64_t n = 1;
    for (int d = 0; d < t->ndim; d++)
        if (t->shape[d] == 0) return 0;
    for (int d = 0; d < t->ndim; d++)
        FUZZ_ASSERT(!__builtin_mul_overflow(n, t->shape[d], &n), "'%s': numel overflows", t->name);
    return n;
}

static void ckfz_check_tensors(const ckpt_file *f, size_t size) {
    FUZZ_ASSERT(f->n_tensors >= 0, "n_tensors %d", f->n_tensors);
    size_t total = 0;
    for (int i = 0; i < f->n_tensors; i++) {
        const ckpt_tensor *t = &f->tensors[i];
        FUZZ_ASSERT(t->name[0] && strlen(t->name) < CKPT_NAME_MAX, "bad name");
        FUZZ_ASSERT(ckpt_find(f, t->name) == t, "'%s' not found or not unique", t->name);
        FUZZ_ASSERT((unsigned)t->dt < DT_COUNT && t->ndim >= 1 && t->ndim <= 4, "'%s' dt/ndim", t->name);
        FUZZ_ASSERT(t->nbytes == (size_t)ckfz_numel(t) * dtype_size(t->dt), "'%s' nbytes", t->name);
        total += t->nbytes;
        FUZZ_ASSERT(total <= size, "tensors hold more bytes than the file");
        fuzz_touch(t->data, t->nbytes);
    }
    fuzz_touch(f->extra, f->extra_len);
}

/* ckpt_write of what was read, reopened: the same contents. */
static void ckfz_check_rewrite(const ckpt_file *f) {
    static char *path;
    if (!path) path = fuzz_tmp_path("rewrite.aimc");
    ckpt_contents c = {f->kind, f->step, f->backbone_text, f->projector_text, f->config_text,
                       f->extra, f->extra_len, f->tensors, f->n_tensors};
    char err[1024];
    FUZZ_ASSERT(ckpt_write(path, &c, err, sizeof err) == 0, "rewrite failed: %s", err);
    ckpt_expect x = {f->backbone_text, f->projector_text};
    ckpt_file *g = ckpt_open(path, &x, err, sizeof err);
    FUZZ_ASSERT(g, "rewritten checkpoint refused: %s", err);
    FUZZ_ASSERT(g->kind == f->kind && g->step == f->step && !strcmp(g->config_text, f->config_text) &&
                    g->extra_len == f->extra_len && (!f->extra_len || !memcmp(g->extra, f->extra, f->extra_len)) &&
                    g->n_tensors == f->n_tensors,
                "header or texts changed in the rewrite");
    for (int i = 0; i < f->n_tensors; i++) {
        const ckpt_tensor *a = &f->tensors[i], *b = &g->tensors[i];
        FUZZ_ASSERT(!strcmp(a->name, b->name) && a->role == b->role && a->dt == b->dt && a->ndim == b->ndim &&
                        !memcmp(a->shape, b->shape, sizeof a->shape) && a->nbytes == b->nbytes &&
                        (!a->nbytes || !memcmp(a->data, b->data, a->nbytes)),
                    "tensor '%s' changed in the rewrite", a->name);
    }
    ckpt_close(g);
}

static void ckfz_open_file(const uint8_t *payload, size_t size, int flags) {
    static char *path;
    if (!path) path = fuzz_tmp_path("input.aimc");
    uint8_t *b = malloc(size + 1);
    if (!b) abort();
    if (size) memcpy(b, payload, size);
    if (flags & 1) ckfz_repair(b, size);
    fuzz_write_file(path, b, size);
    free(b);
    ckpt_expect other = {"name=other backbone", "other projector"};
    char err[1024] = "";
    ckpt_file *f = ckpt_open(path, flags & 2 ? &other : NULL, err, sizeof err);
    if (!f) {
        FUZZ_ASSERT(err[0], "ckpt_open failed without a message");
        return;
    }
    ckfz_check_tensors(f, size);
    ckfz_check_rewrite(f);
    ckpt_close(f);
}

/* A small valid checkpoint: three tensors of different dtypes, all texts. */
static int ckfz_write_sample(const char *path, ckpt_kind kind, int n_tensors) {
    static float w[6] = {1, -2, 3.5f, 0, 1e-3f, -7};
    static uint16_t h[4] = {0x3c00, 0xbc00, 0x7bff, 0x0001};
    static int32_t ids[3] = {7, -1, 2147483647};
    ckpt_tensor t[3] = {
        {"linear.weight", CKPT_ROLE_PARAM, DT_F32, 2, {2, 3}, w, 0},
        {"exp_avg.linear.weight", CKPT_ROLE_ADAM_M, DT_BF16, 2, {2, 2}, h, 0},
        {"cursor", CKPT_ROLE_OTHER, DT_I32, 1, {3}, ids, 0},
    };
    static const char extra[] = "rng=12345 cursor=0:17";
    ckpt_contents c = {kind, 42, "name=tiny-llava hidden=32", "linear 32->64", "lr = 0.001\nk = 2\n",
                       extra, sizeof extra, t, n_tensors};
    char err[1024];
    if (ckpt_write(path, &c, err, sizeof err)) {
        fprintf(stderr, "fuzz: %s\n", err);
        return -1;
    }
    return 0;
}

static void ckfz_latest(const uint8_t *payload, size_t size) {
    static char *dir;
    if (!dir) {
        dir = fuzz_tmp_path("ckdir");
        mkdir(dir, 0777);
        char path[4096];
        snprintf(path, sizeof path, "%s/ckpt-0000000001.aimc", dir);
        if (ckfz_write_sample(path, CKPT_KIND_TRAIN, 3)) abort();
    }
    char latest[4096], out[4096], err[1024];
    snprintf(latest, sizeof latest, "%s/latest", dir);
    fuzz_write_file(latest, payload, size);
    int rc = ckpt_latest(dir, out, sizeof out, err, sizeof err);
    FUZZ_ASSERT(rc >= -1 && rc <= 1, "ckpt_latest returned %d", rc);
    rc = ckpt_resolve(dir, out, sizeof out, err, sizeof err);
    FUZZ_ASSERT(rc == 0 || rc == -1, "ckpt_resolve returned %d", rc);
}

int fuzz_checkpoint_one(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    if (data[0] & 4)
        ckfz_latest(data + 1, size - 1);
    else
        ckfz_open_file(data + 1, size - 1, data[0]);
    return 0;
}

static void ckfz_seed_from(const char *dir, const char *name, ckpt_kind kind, int n_tensors) {
    char *tmp = fuzz_tmp_path("seed.aimc");
    if (ckfz_write_sample(tmp, kind, n_tensors) == 0) {
        size_t n;
        uint8_t *file = fuzz_read_file(tmp, &n);
        for (uint8_t flags = 0; flags < 4; flags++) {
            char seed[64];
            snprintf(seed, sizeof seed, "%s_%u", name, flags);
            fuzz_seed(dir, seed, &flags, 1, file, n);
        }
        free(file);
    }
    remove(tmp);
    free(tmp);
}

void fuzz_checkpoint_seeds(const char *dir) {
    ckfz_seed_from(dir, "train3", CKPT_KIND_TRAIN, 3);
    ckfz_seed_from(dir, "params1", CKPT_KIND_PARAMS, 1);
    ckfz_seed_from(dir, "empty", CKPT_KIND_PARAMS, 0);
    static const char *const latest[] = {"ckpt-0000000001.aimc\n", "ckpt-0000000002.aimc", "../x\n", ""};
    for (size_t i = 0; i < sizeof latest / sizeof latest[0]; i++) {
        char seed[32];
        uint8_t flag = 4;
        snprintf(seed, sizeof seed, "latest_%zu", i);
        fuzz_seed(dir, seed, &flag, 1, latest[i], strlen(latest[i]));
    }
}

FUZZ_MAIN(checkpoint)
