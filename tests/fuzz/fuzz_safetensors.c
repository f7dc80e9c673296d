/* Fuzz target: st_open (host/safetensors.h) on an arbitrary file.
 * Input: the file's bytes. Oracles for a file that opens: the tensors tile
 * the data buffer exactly (sum of sizes = file - 8 - header, contiguous
 * span), st_find finds every name, every byte lies inside the data buffer,
 * the f32 / i32 readers fill exactly numel elements, and writing the tensors
 * back with st_writer and reopening gives the same names, shapes and bytes. */
#include "../../host/safetensors.h"
#include "fuzz.h"

#define STFZ_MAX_CONVERT ((int64_t)1 << 20) /* elements converted per tensor */

/* Elements of an opened tensor (which st_open promises fit in 63 bits). */
static int64_t stfz_numel(const st_tensor *t) {
    int64_t n = 1;
    for (int d = 0; d < t->ndim; d++)
        if (t->shape[d] == 0) return 0;
    for (int d = 0; d < t->ndim; d++)
        FUZZ_ASSERT(!__builtin_mul_overflow(n, t->shape[d], &n), "'%s': numel overflows", t->name);
    return n;
}

/* Exact tiling: the data pointers span exactly the data buffer. */
static void stfz_check_layout(const st_file *f, const uint8_t *data, size_t size) {
    uint64_t header_len = 0;
    for (int i = 0; i < 8; i++) header_len |= (uint64_t)data[i] << (8 * i);
    size_t data_size = size - 8 - (size_t)header_len, total = 0;
    const char *lo = NULL, *hi = NULL;
    for (int i = 0; i < st_count(f); i++) {
        const st_tensor *t = st_at(f, i);
        FUZZ_ASSERT(t->ndim >= 0 && t->ndim <= ST_MAX_DIMS, "ndim %d", t->ndim);
        for (int d = 0; d < t->ndim; d++) FUZZ_ASSERT(t->shape[d] >= 0, "negative dim");
        FUZZ_ASSERT(t->nbytes == (size_t)stfz_numel(t) * st_dtype_size(t->dtype),
                    "'%s': %zu bytes for %lld elements", t->name, t->nbytes, (long long)stfz_numel(t));
        const st_tensor *found = st_find(f, t->name);
        FUZZ_ASSERT(found && !strcmp(found->name, t->name), "st_find misses '%s'", t->name);
        if (i) FUZZ_ASSERT(strcmp(st_at(f, i - 1)->name, t->name) < 0, "names not sorted/unique");
        total += t->nbytes;
        if (!t->nbytes) continue;
        const char *b = t->data, *e = b + t->nbytes;
        if (!lo || b < lo) lo = b;
        if (!hi || e > hi) hi = e;
        fuzz_touch(t->data, t->nbytes);
    }
    FUZZ_ASSERT(total == data_size, "tensors hold %zu bytes, data buffer %zu", total, data_size);
    FUZZ_ASSERT(!lo || (size_t)(hi - lo) == total, "tensors do not tile the buffer");
}

/* The converting readers on every tensor up to STFZ_MAX_CONVERT elements. */
static void stfz_check_readers(const st_file *f) {
    char err[512];
    for (int i = 0; i < st_count(f); i++) {
        const st_tensor *t = st_at(f, i);
        int64_t n = stfz_numel(t);
        if (n > STFZ_MAX_CONVERT) continue;
        float *fo = malloc((size_t)n * sizeof *fo + 1);
        int32_t *io = malloc((size_t)n * sizeof *io + 1);
        if (!fo || !io) abort();
        st_read_f32(t, fo, err, sizeof err);
        st_read_i32(t, io, err, sizeof err);
        free(fo);
        free(io);
    }
}

/* st_writer round trip: same names, dtypes, shapes and bytes. */
static void stfz_check_rewrite(const st_file *f, size_t size) {
    if (size > (1u << 20)) return;
    st_writer *w = st_writer_new();
    for (int i = 0; i < st_count(f); i++) {
        const st_tensor *t = st_at(f, i);
        st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data);
    }
    static char *path;
    if (!path) path = fuzz_tmp_path("rewrite.safetensors");
    char err[512];
    FUZZ_ASSERT(st_writer_save(w, path, err, sizeof err) == 0, "rewrite failed: %s", err);
    st_writer_free(w);
    st_file *g = st_open(path, err, sizeof err);
    FUZZ_ASSERT(g, "rewritten file refused: %s", err);
    FUZZ_ASSERT(st_count(g) == st_count(f), "%d tensors became %d", st_count(f), st_count(g));
    for (int i = 0; i < st_count(f); i++) {
        const st_tensor *a = st_at(f, i), *b = st_at(g, i);
        FUZZ_ASSERT(!strcmp(a->name, b->name) && a->dtype == b->dtype && a->ndim == b->ndim &&
                        !memcmp(a->shape, b->shape, sizeof(int64_t) * (size_t)a->ndim) &&
                        a->nbytes == b->nbytes && (!a->nbytes || !memcmp(a->data, b->data, a->nbytes)),
                    "tensor '%s' changed in the rewrite", a->name);
    }
    st_close(g);
}

int fuzz_safetensors_one(const uint8_t *data, size_t size) {
    static char *path;
    if (!path) path = fuzz_tmp_path("input.safetensors");
    fuzz_write_file(path, data, size);
    char err[512] = "";
    st_file *f = st_open(path, err, sizeof err);
    if (!f) {
        FUZZ_ASSERT(err[0], "st_open failed without a message");
        return 0;
    }
    FUZZ_ASSERT(size >= 8, "a %zu-byte file opened", size);
    stfz_check_layout(f, data, size);
    stfz_check_readers(f);
    stfz_check_rewrite(f, size);
    st_close(f);
    return 0;
}

/* A small file with one tensor of every dtype, and the committed fixtures. */
static void stfz_write_all_dtypes(const char *dir) {
    st_writer *w = st_writer_new();
    uint8_t bytes[64];
    for (int i = 0; i < 64; i++) bytes[i] = (uint8_t)(i * 37 + 11);
    for (int dt = 0; dt < ST_DTYPE_COUNT; dt++) {
        int64_t shape[2] = {2, 8 / (int64_t)st_dtype_size((st_dtype)dt)};
        char name[32];
        snprintf(name, sizeof name, "t.%s", st_dtype_name((st_dtype)dt));
        st_writer_add(w, name, (st_dtype)dt, 2, shape, bytes);
    }
    int64_t none[1] = {0};
    st_writer_add(w, "empty", ST_F32, 1, none, bytes);
    st_writer_add(w, "scalar", ST_F32, 0, NULL, bytes);
    st_writer_metadata(w, "format", "pt");
    char path[4096], err[512];
    snprintf(path, sizeof path, "%s/all_dtypes.safetensors", dir);
    if (st_writer_save(w, path, err, sizeof err)) fprintf(stderr, "fuzz: %s\n", err);
    st_writer_free(w);
}

void fuzz_safetensors_seeds(const char *dir) {
    stfz_write_all_dtypes(dir);
    fuzz_seed_fixture(dir, "python", NULL, 0, "tests/fixtures/safetensors/python.safetensors");
    fuzz_seed_fixture(dir, "clip_inputs", NULL, 0, "tests/fixtures/models/clip/inputs.safetensors");
    fuzz_seed_fixture(dir, "aim_llava_k1", NULL, 0, "tests/fixtures/aim/llava_k1_linear_L1.safetensors");
    fuzz_seed_fixture(dir, "llava_shard2", NULL, 0,
                      "tests/fixtures/models/llava_oldkeys/model-00002-of-00002.safetensors");
    static const char tiny[] = "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
    uint8_t len[8] = {sizeof tiny - 1};
    uint8_t *file = malloc(sizeof tiny - 1 + 4);
    memcpy(file, tiny, sizeof tiny - 1);
    memset(file + sizeof tiny - 1, 0x3f, 4);
    fuzz_seed(dir, "tiny", len, 8, file, sizeof tiny - 1 + 4);
    free(file);
}

FUZZ_MAIN(safetensors)
