/* safetensors reader/writer and Hugging Face model folders.
 * - round trip of every dtype and odd shapes (0-d, zero-size dims, 8-d);
 * - dtype conversions against decoders written here in double precision,
 *   over every bit pattern of the 8- and 16-bit float formats;
 * - a file written by the Python `safetensors` package, with values computed
 *   in numpy (tests/fixtures/safetensors, scripts/make_safetensors_fixtures.py);
 * - malformed files (truncated at every byte, lying header length, bad
 *   offsets, shapes, dtypes, JSON, duplicate names): an error naming the
 *   file and the problem, never a crash;
 * - the writer's failure paths (file size limit -> no file left behind);
 * - model folders: shards, aliases, ties, shape errors, dtype-converting
 *   loads, config paths and their errors (dying calls run in a fork). */
#include "testlib.h"
#include "../host/model_dir.h"
#include "../host/safetensors.h"
#include <cjson/cJSON.h>
#include <dirent.h>
#include <ftw.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

static char g_tmp[256];

/* "<tmpdir>/<name>" in one of a few rotating buffers. */
static const char *tmp_path(const char *name) {
    static char bufs[8][512];
    static int next;
    char *b = bufs[next++ % 8];
    snprintf(b, sizeof bufs[0], "%s/%s", g_tmp, name);
    return b;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static void write_bytes(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, n, f) != n || fclose(f)) {
        printf("FAIL: cannot write %s\n", path);
        exit(1);
    }
}

static int file_exists(const char *path) { return access(path, F_OK) == 0; }

static void fill_random_bytes(void *p, size_t n) {
    unsigned char *b = p;
    for (size_t i = 0; i < n; i++) b[i] = (unsigned char)rng_u64();
}

/* ---- independent decoders (double precision, from the format specs) ---- */

static double ref_minifloat(unsigned bits, int exp_bits, int man_bits, int bias, int has_inf) {
    unsigned sign = bits >> (exp_bits + man_bits) & 1,
             e = bits >> man_bits & ((1u << exp_bits) - 1);
    unsigned m = bits & ((1u << man_bits) - 1), emax = (1u << exp_bits) - 1;
    double s = sign ? -1.0 : 1.0;
    if (has_inf && e == emax) return m ? NAN : s * INFINITY;
    if (!has_inf && e == emax && m == (1u << man_bits) - 1) return NAN; /* E4M3fn */
    if (e == 0) return s * ldexp((double)m, 1 - bias - man_bits);
    return s * ldexp(1.0 + ldexp((double)m, -man_bits), (int)e - bias);
}
static double ref_f16(unsigned h) { return ref_minifloat(h, 5, 10, 15, 1); }
static double ref_bf16(unsigned h) { return ref_minifloat(h, 8, 7, 127, 1); }
static double ref_e4m3(unsigned b) { return ref_minifloat(b, 4, 3, 7, 0); }
static double ref_e5m2(unsigned b) { return ref_minifloat(b, 5, 2, 15, 1); }

static int same_float(float a, double ref) { return isnan(ref) ? isnan(a) : a == (float)ref; }

/* ---- round trip ---------------------------------------------------------- */

typedef struct shape_case {
    int ndim;
    int64_t shape[ST_MAX_DIMS];
} shape_case;

static const shape_case round_trip_shapes[] = {
    {0, {0}},
    {1, {0}},
    {3, {3, 0, 2}},
    {1, {1}},
    {1, {7}},
    {3, {2, 3, 5}},
    {8, {1, 1, 1, 1, 1, 1, 2, 3}},
    {2, {0, 0}},
};
#define NSHAPES (int)(sizeof round_trip_shapes / sizeof round_trip_shapes[0])

static size_t case_bytes(const shape_case *s, st_dtype dt) {
    size_t n = st_dtype_size(dt);
    for (int i = 0; i < s->ndim; i++) n *= (size_t)s->shape[i];
    return n;
}

static void check_tensor_equal(const st_file *f, const char *name, st_dtype dt, const shape_case *s,
                               const void *data) {
    const st_tensor *t = st_find(f, name);
    CHECK(t != NULL, "round trip: '%s' missing", name);
    if (!t) return;
    int same_shape = t->ndim == s->ndim;
    for (int i = 0; same_shape && i < s->ndim; i++) same_shape = t->shape[i] == s->shape[i];
    size_t n = case_bytes(s, dt);
    CHECK(t->dtype == dt && same_shape && t->nbytes == n,
          "round trip: '%s' dtype/shape/size differ", name);
    CHECK(n == 0 || memcmp(t->data, data, n) == 0, "round trip: '%s' data differ", name);
    CHECK((uintptr_t)t->data % st_dtype_size(dt) == 0, "round trip: '%s' misaligned", name);
}

static void check_header_layout(const char *path) {
    size_t n;
    unsigned char *raw = tl_read_file(path, &n);
    uint64_t hl;
    memcpy(&hl, raw, 8);
    CHECK((8 + hl) % 8 == 0, "header length %llu leaves the data unaligned",
          (unsigned long long)hl);
    char *json = tl_alloc(hl + 1);
    memcpy(json, raw + 8, hl);
    json[hl] = '\0';
    cJSON *root = cJSON_Parse(json);
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(root, "__metadata__");
    const cJSON *q = cJSON_GetObjectItemCaseSensitive(meta, "quote\"back\\slash");
    CHECK(cJSON_IsString(q) && !strcmp(q->valuestring, "line1\nline2\t\x01 caf\xc3\xa9"),
          "metadata with escapes did not survive");
    cJSON_Delete(root);
    free(json);
    free(raw);
}

static int no_tmp_files_left(void) {
    DIR *d = opendir(g_tmp);
    struct dirent *e;
    int clean = 1;
    while (d && (e = readdir(d))) clean &= strstr(e->d_name, ".tmp.") == NULL;
    if (d) closedir(d);
    return clean;
}

static void test_round_trip(void) {
    st_writer *w = st_writer_new();
    void *data[ST_DTYPE_COUNT][NSHAPES];
    char name[64];
    for (int dt = 0; dt < ST_DTYPE_COUNT; dt++)
        for (int s = 0; s < NSHAPES; s++) {
            size_t n = case_bytes(&round_trip_shapes[s], (st_dtype)dt);
            data[dt][s] = tl_alloc(n);
            fill_random_bytes(data[dt][s], n);
            snprintf(name, sizeof name, "%s.\"weird\"\\name.%d", st_dtype_name((st_dtype)dt), s);
            st_writer_add(w, name, (st_dtype)dt, round_trip_shapes[s].ndim,
                          round_trip_shapes[s].shape, data[dt][s]);
        }
    st_writer_metadata(w, "format", "pt");
    st_writer_metadata(w, "quote\"back\\slash", "overwritten");
    st_writer_metadata(w, "quote\"back\\slash", "line1\nline2\t\x01 caf\xc3\xa9");
    char err[512] = "";
    const char *path = tmp_path("round_trip.safetensors");
    CHECK(st_writer_save(w, path, err, sizeof err) == 0, "save failed: %s", err);
    st_writer_free(w);
    st_file *f = st_open(path, err, sizeof err);
    CHECK(f != NULL, "reopen failed: %s", err);
    if (!f) return;
    CHECK(st_count(f) == ST_DTYPE_COUNT * NSHAPES, "count %d", st_count(f));
    for (int i = 1; i < st_count(f); i++)
        CHECK(strcmp(st_at(f, i - 1)->name, st_at(f, i)->name) < 0, "st_at not in name order at %d",
              i);
    for (int dt = 0; dt < ST_DTYPE_COUNT; dt++)
        for (int s = 0; s < NSHAPES; s++) {
            snprintf(name, sizeof name, "%s.\"weird\"\\name.%d", st_dtype_name((st_dtype)dt), s);
            check_tensor_equal(f, name, (st_dtype)dt, &round_trip_shapes[s], data[dt][s]);
            free(data[dt][s]);
        }
    CHECK(st_find(f, "absent") == NULL, "st_find found an absent name");
    st_close(f);
    check_header_layout(path);
    CHECK(no_tmp_files_left(), "a temporary file was left behind");
}

/* An empty writer gives a valid file with no tensors. */
static void test_empty_file(void) {
    st_writer *w = st_writer_new();
    char err[512] = "";
    const char *path = tmp_path("empty.safetensors");
    CHECK(st_writer_save(w, path, err, sizeof err) == 0, "empty save: %s", err);
    st_writer_free(w);
    st_file *f = st_open(path, err, sizeof err);
    CHECK(f && st_count(f) == 0, "empty file: %s", err);
    st_close(f);
}

/* ---- conversions --------------------------------------------------------- */

static st_file *save_one(const char *file, st_dtype dt, int64_t n, const void *data) {
    st_writer *w = st_writer_new();
    st_writer_add(w, "t", dt, 1, &n, data);
    char err[512] = "";
    const char *path = tmp_path(file);
    if (st_writer_save(w, path, err, sizeof err)) printf("FAIL: save %s: %s\n", file, err);
    st_writer_free(w);
    st_file *f = st_open(path, err, sizeof err);
    if (!f) printf("FAIL: open %s: %s\n", file, err);
    return f;
}

/* Every bit pattern of a 16-bit float format against the reference decoder. */
static void check_all_16bit(st_dtype dt, double (*ref)(unsigned)) {
    uint16_t *bits = tl_alloc(65536 * 2);
    float *out = tl_alloc(65536 * 4);
    for (unsigned i = 0; i < 65536; i++) bits[i] = (uint16_t)i;
    st_file *f = save_one("conv16.safetensors", dt, 65536, bits);
    char err[256] = "";
    poison(out, 65536);
    int rc = f ? st_read_f32(st_find(f, "t"), out, err, sizeof err) : -1;
    int bad = -1;
    for (unsigned i = 0; i < 65536 && bad < 0 && !rc; i++)
        if (!same_float(out[i], ref(i))) bad = (int)i;
    CHECK(rc == 0 && bad < 0, "%s -> f32: pattern 0x%04x gives %g, expected %g (%s)",
          st_dtype_name(dt), bad < 0 ? 0 : bad, bad < 0 ? 0.0 : out[bad],
          bad < 0 ? 0.0 : ref((unsigned)bad), err);
    st_close(f);
    free(bits);
    free(out);
}

static void check_all_8bit(st_dtype dt, double (*ref)(unsigned)) {
    uint8_t bits[256];
    float out[256];
    for (unsigned i = 0; i < 256; i++) bits[i] = (uint8_t)i;
    st_file *f = save_one("conv8.safetensors", dt, 256, bits);
    char err[256] = "";
    poison(out, 256);
    int rc = f ? st_read_f32(st_find(f, "t"), out, err, sizeof err) : -1;
    int bad = -1;
    for (unsigned i = 0; i < 256 && bad < 0 && !rc; i++)
        if (!same_float(out[i], ref(i))) bad = (int)i;
    CHECK(rc == 0 && bad < 0, "%s -> f32: pattern 0x%02x wrong (%s)", st_dtype_name(dt), bad, err);
    st_close(f);
}

static void check_f64_and_f32(void) {
    double d[64];
    float fv[64], out[64];
    for (int i = 0; i < 64; i++) {
        d[i] = rng_normal() * pow(10.0, (double)rng_int(60) - 30);
        fv[i] = (float)rng_normal();
    }
    d[0] = 1e300; /* beyond f32: inf */
    char err[256] = "";
    st_file *f = save_one("f64.safetensors", ST_F64, 64, d);
    poison(out, 64);
    int rc = st_read_f32(st_find(f, "t"), out, err, sizeof err), bad = -1;
    for (int i = 0; i < 64 && !rc; i++)
        if (out[i] != (float)d[i]) bad = i;
    CHECK(rc == 0 && bad < 0 && isinf(out[0]), "F64 -> f32 wrong at %d (%s)", bad, err);
    st_close(f);
    f = save_one("f32.safetensors", ST_F32, 64, fv);
    poison(out, 64);
    rc = st_read_f32(st_find(f, "t"), out, err, sizeof err);
    CHECK(rc == 0 && !memcmp(out, fv, sizeof fv), "F32 -> f32 not identical (%s)", err);
    st_close(f);
}

static void check_int_reads(void) {
    int64_t ok64[5] = {INT32_MIN, INT32_MAX, 0, -7, 32000};
    int32_t out[8];
    char err[256] = "";
    st_file *f = save_one("i64.safetensors", ST_I64, 5, ok64);
    int rc = st_read_i32(st_find(f, "t"), out, err, sizeof err), bad = 0;
    for (int i = 0; i < 5 && !rc; i++) bad |= out[i] != ok64[i];
    CHECK(rc == 0 && !bad, "I64 -> i32 wrong (%s)", err);
    st_close(f);
    int64_t big[3] = {1, 2, (int64_t)1 << 31};
    f = save_one("i64big.safetensors", ST_I64, 3, big);
    rc = st_read_i32(st_find(f, "t"), out, err, sizeof err);
    CHECK(rc == -1 && strstr(err, "'t'") && strstr(err, "element 2") && strstr(err, "2147483648") &&
              strstr(err, "does not fit"),
          "I64 out of range not reported: %s", err);
    st_close(f);
    int16_t s16[3] = {-32768, 32767, -1};
    f = save_one("i16.safetensors", ST_I16, 3, s16);
    rc = st_read_i32(st_find(f, "t"), out, err, sizeof err);
    CHECK(rc == 0 && out[0] == -32768 && out[1] == 32767 && out[2] == -1, "I16 -> i32 wrong");
    st_close(f);
    int8_t s8[2] = {-128, 127};
    f = save_one("i8.safetensors", ST_I8, 2, s8);
    rc = st_read_i32(st_find(f, "t"), out, err, sizeof err);
    CHECK(rc == 0 && out[0] == -128 && out[1] == 127, "I8 -> i32 wrong");
    st_close(f);
    uint8_t u8[3] = {255, 0, 2};
    f = save_one("u8.safetensors", ST_U8, 3, u8);
    rc = st_read_i32(st_find(f, "t"), out, err, sizeof err);
    CHECK(rc == 0 && out[0] == 255 && out[2] == 2, "U8 -> i32 wrong");
    st_close(f);
    f = save_one("bool.safetensors", ST_BOOL, 3, u8);
    rc = st_read_i32(st_find(f, "t"), out, err, sizeof err);
    CHECK(rc == 0 && out[0] == 1 && out[1] == 0 && out[2] == 1, "BOOL -> i32 wrong");
    float fl[1] = {1};
    rc = st_read_f32(st_find(f, "t"), fl, err, sizeof err);
    CHECK(rc == -1 && strstr(err, "BOOL") && strstr(err, "f32"), "BOOL read as f32 not refused: %s",
          err);
    st_close(f);
    f = save_one("f32i.safetensors", ST_F32, 1, fl);
    rc = st_read_i32(st_find(f, "t"), out, err, sizeof err);
    CHECK(rc == -1 && strstr(err, "F32") && strstr(err, "i32"), "F32 read as i32 not refused: %s",
          err);
    st_close(f);
}

static void test_conversions(void) {
    check_all_16bit(ST_F16, ref_f16);
    check_all_16bit(ST_BF16, ref_bf16);
    check_all_8bit(ST_F8_E4M3, ref_e4m3);
    check_all_8bit(ST_F8_E5M2, ref_e5m2);
    check_f64_and_f32();
    check_int_reads();
}

/* ---- a file written by Python's safetensors ------------------------------ */

static int json_shape_matches(const st_tensor *t, const cJSON *shape) {
    if (cJSON_GetArraySize(shape) != t->ndim) return 0;
    int i = 0;
    for (const cJSON *d = shape->child; d; d = d->next, i++)
        if (d->valuedouble != (double)t->shape[i]) return 0;
    return 1;
}

static int is_int_dtype(st_dtype dt) {
    return dt == ST_I64 || dt == ST_I32 || dt == ST_I16 || dt == ST_I8 || dt == ST_U8 ||
           dt == ST_BOOL;
}

static void check_python_tensor(const st_tensor *t, const cJSON *exp) {
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(exp, "dtype");
    const cJSON *vals = cJSON_GetObjectItemCaseSensitive(exp, "values");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(exp, "shape");
    CHECK(!strcmp(st_dtype_name(t->dtype), dt->valuestring) && json_shape_matches(t, shape),
          "python '%s': dtype %s or shape differs", t->name, st_dtype_name(t->dtype));
    int n = cJSON_GetArraySize(vals), bad = -1;
    float *f = tl_alloc((size_t)n * 4 + 4);
    int32_t *iv = tl_alloc((size_t)n * 4 + 4);
    char err[256] = "";
    poison(f, n);
    int rc = is_int_dtype(t->dtype) ? st_read_i32(t, iv, err, sizeof err)
                                    : st_read_f32(t, f, err, sizeof err);
    if (!strcmp(t->name, "i64_too_big")) {
        CHECK(rc == -1 && strstr(err, "does not fit"), "python i64_too_big not refused: %s", err);
    } else {
        int i = 0;
        for (const cJSON *v = vals->child; v && !rc; v = v->next, i++)
            if (is_int_dtype(t->dtype) ? iv[i] != (int32_t)v->valuedouble
                                       : f[i] != (float)v->valuedouble)
                bad = i;
        CHECK(rc == 0 && bad < 0, "python '%s': value %d differs from numpy (%s)", t->name, bad,
              err);
    }
    free(f);
    free(iv);
}

static void test_python_fixture(void) {
    /* the fixtures sit beside this source file (tests/ when built from the repo root) */
    char dir[400], path[512], epath[512], err[512] = "";
    snprintf(dir, sizeof dir, "%s", __FILE__);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    else
        snprintf(dir, sizeof dir, ".");
    snprintf(path, sizeof path, "%s/fixtures/safetensors/python.safetensors", dir);
    snprintf(epath, sizeof epath, "%s/fixtures/safetensors/python_expected.json", dir);
    size_t n = 0;
    char *text = tl_read_file(epath, &n);
    CHECK(text != NULL, "cannot read %s", epath);
    if (!text) return;
    cJSON *root = cJSON_ParseWithLength(text, n);
    const cJSON *tensors = cJSON_GetObjectItemCaseSensitive(root, "tensors");
    st_file *f = st_open(path, err, sizeof err);
    CHECK(f != NULL, "python fixture: %s", err);
    if (f) {
        CHECK(st_count(f) == cJSON_GetArraySize(tensors), "python fixture: %d tensors, expected %d",
              st_count(f), cJSON_GetArraySize(tensors));
        for (const cJSON *e = tensors->child; e; e = e->next) {
            const st_tensor *t = st_find(f, e->string);
            CHECK(t != NULL, "python fixture: '%s' missing", e->string);
            if (t) check_python_tensor(t, e);
        }
    }
    st_close(f);
    cJSON_Delete(root);
    free(text);
}

/* ---- malformed files ----------------------------------------------------- */

/* Writes a file with the given header length field, header text and data. */
static void write_raw(const char *path, uint64_t len_field, const char *header, size_t data_len) {
    size_t hl = strlen(header), n = 8 + hl + data_len;
    unsigned char *b = tl_alloc(n);
    memcpy(b, &len_field, 8);
    memcpy(b + 8, header, hl);
    fill_random_bytes(b + 8 + hl, data_len);
    write_bytes(path, b, n);
    free(b);
}

static void expect_error(const char *label, const char *path, const char *needle) {
    char err[512] = "";
    st_file *f = st_open(path, err, sizeof err);
    CHECK(!f && strstr(err, path) && strstr(err, needle) && !strchr(err, '\n'),
          "%s: expected an error mentioning '%s', got %s: '%s'", label, needle,
          f ? "success" : "error", err);
    st_close(f);
}

/* A header with the right length field and data_len bytes of data. */
static void expect_bad_header(const char *label, const char *header, size_t data_len,
                              const char *needle) {
    const char *path = tmp_path("bad.safetensors");
    write_raw(path, strlen(header), header, data_len);
    expect_error(label, path, needle);
}

static void expect_good_header(const char *label, const char *header, size_t data_len) {
    const char *path = tmp_path("good.safetensors");
    write_raw(path, strlen(header), header, data_len);
    char err[512] = "";
    st_file *f = st_open(path, err, sizeof err);
    CHECK(f != NULL, "%s: valid file refused: %s", label, err);
    st_close(f);
}

static void test_truncation(void) {
    st_writer *w = st_writer_new();
    float a[6] = {1, 2, 3, 4, 5, 6};
    int8_t b[5] = {1, 2, 3, 4, 5};
    uint16_t c[4] = {1, 2, 3, 4};
    st_writer_add(w, "a", ST_F32, 2, (int64_t[]){2, 3}, a);
    st_writer_add(w, "b", ST_I8, 1, (int64_t[]){5}, b);
    st_writer_add(w, "c", ST_BF16, 1, (int64_t[]){4}, c);
    char err[512] = "";
    const char *full = tmp_path("whole.safetensors");
    CHECK(st_writer_save(w, full, err, sizeof err) == 0, "save: %s", err);
    st_writer_free(w);
    size_t n;
    unsigned char *bytes = tl_read_file(full, &n);
    const char *cut = tmp_path("cut.safetensors");
    int accepted = -1, unnamed = -1;
    for (size_t k = 0; k < n; k++) {
        write_bytes(cut, bytes, k);
        err[0] = '\0';
        st_file *f = st_open(cut, err, sizeof err);
        if (f && accepted < 0) accepted = (int)k;
        if (!f && !strstr(err, cut) && unnamed < 0) unnamed = (int)k;
        st_close(f);
    }
    CHECK(accepted < 0 && unnamed < 0,
          "truncation of a %zu-byte file: accepted at %d, unnamed error at %d", n, accepted,
          unnamed);
    write_bytes(cut, bytes, 7);
    expect_error("7-byte file", cut, "shorter than the 8-byte");
    free(bytes);
}

static volatile unsigned g_sink; /* keeps the reads of every tensor byte */

/* Random byte changes anywhere in a small file: each open either fails with
 * a message naming the file or gives tensors that lie inside the file. */
static void test_mutations(void) {
    size_t n;
    unsigned char *orig = tl_read_file(tmp_path("whole.safetensors"), &n);
    unsigned char *b = tl_alloc(n);
    const char *path = tmp_path("mutated.safetensors");
    int unnamed = 0, outside = 0, opened = 0;
    for (int trial = 0; trial < 3000; trial++) {
        memcpy(b, orig, n);
        for (int k = 0, nk = 1 + (int)rng_int(3); k < nk; k++) {
            size_t at = (size_t)rng_int((int64_t)n);
            b[at] = rng_int(2) ? (unsigned char)rng_u64()
                               : (unsigned char)"0123456789[],\"{}: "[rng_int(18)];
        }
        write_bytes(path, b, n);
        char err[512] = "";
        st_file *f = st_open(path, err, sizeof err);
        unnamed += !f && !strstr(err, path);
        opened += f != NULL;
        size_t total = 0;
        unsigned sum = 0;
        for (int i = 0; f && i < st_count(f); i++) {
            const st_tensor *t = st_at(f, i);
            total += t->nbytes;
            for (size_t k = 0; k < t->nbytes; k++)
                sum += ((const unsigned char *)t->data)[k]; /* touch */
        }
        g_sink += sum;
        outside += total + 8 > n; /* the tensors tile part of the file */
        st_close(f);
    }
    CHECK(unnamed == 0 && outside == 0,
          "mutations: %d unnamed errors, %d files whose tensors exceed them (%d opened)", unnamed,
          outside, opened);
    free(orig);
    free(b);
}

static void test_lying_lengths(void) {
    const char *path = tmp_path("lying.safetensors");
    const char *hdr = "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}";
    write_raw(path, (uint64_t)1 << 63, hdr, 4);
    expect_error("header length 2^63", path,
                 "header length 9223372036854775808 exceeds the 100000000-byte limit");
    write_raw(path, 100000001, hdr, 4);
    expect_error("header length 100 MB + 1", path, "exceeds the 100000000-byte limit");
    write_raw(path, strlen(hdr) + 5, hdr, 4);
    expect_error("header length past the end", path, "exceeds the");
    write_raw(path, 0, hdr, 4);
    expect_error("header length 0", path, "not valid JSON");
    write_raw(path, strlen(hdr) - 1, hdr, 4);
    expect_error("header length one short", path, "not valid JSON");
}

static void test_bad_offsets(void) {
    expect_bad_header("out of range",
                      "{\"x\":{\"dtype\":\"U8\",\"shape\":[10],\"data_offsets\":[10,20]}}", 16,
                      "tensor 'x' data_offsets [10, 20] exceed the data size 16");
    expect_bad_header(
        "offset above 4 GB",
        "{\"x\":{\"dtype\":\"U8\",\"shape\":[4294967300],\"data_offsets\":[0,4294967300]}}", 16,
        "[0, 4294967300] exceed the data size 16");
    expect_bad_header("overlap",
                      "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                      "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                      12, "overlap");
    expect_bad_header("same range twice",
                      "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                      "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                      8, "overlap");
    expect_bad_header("hole",
                      "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                      "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
                      12, "data bytes [4, 8) belong to no tensor");
    expect_bad_header("hole at the start",
                      "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8,
                      "belong to no tensor");
    expect_bad_header("trailing bytes",
                      "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8,
                      "trailing");
    expect_bad_header("reversed", "{\"a\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[8,4]}}",
                      8, "end before they begin");
    expect_bad_header("one offset", "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4]}}",
                      4, "data_offsets");
    expect_bad_header("negative offset",
                      "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[-4,0]}}", 4,
                      "data_offsets");
    expect_bad_header("fractional offset",
                      "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4.5]}}", 4,
                      "data_offsets");
    expect_bad_header(
        "offset 2^53",
        "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,9007199254740992]}}", 4,
        "data_offsets");
    expect_bad_header("string offset",
                      "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[\"0\",4]}}", 4,
                      "data_offsets");
}

static void test_bad_shapes(void) {
    expect_bad_header("size mismatch",
                      "{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8,
                      "tensor 'w' shape [3] of F32 needs 12 bytes but data_offsets [0, 8] span 8");
    expect_bad_header("shape overflow",
                      "{\"w\":{\"dtype\":\"F32\",\"shape\":[1099511627776,1099511627776],\"data_"
                      "offsets\":[0,4]}}",
                      4, "overflows");
    expect_bad_header(
        "shape overflow with a zero dim",
        "{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,0],\"data_offsets\":[0,0]}}", 0,
        "overflows");
    expect_bad_header("negative dim",
                      "{\"w\":{\"dtype\":\"U8\",\"shape\":[-1],\"data_offsets\":[0,0]}}", 0,
                      "shape[0]");
    expect_bad_header("fractional dim",
                      "{\"w\":{\"dtype\":\"U8\",\"shape\":[2,1.5],\"data_offsets\":[0,3]}}", 3,
                      "shape[1]");
    expect_bad_header(
        "nine dims",
        "{\"w\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 1,
        "9 dimensions");
    expect_bad_header("no shape", "{\"w\":{\"dtype\":\"U8\",\"data_offsets\":[0,1]}}", 1,
                      "\"shape\"");
    expect_good_header("scalar and empty tensors",
                       "{\"s\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]},"
                       "\"e\":{\"dtype\":\"F32\",\"shape\":[0,5],\"data_offsets\":[4,4]},"
                       "\"z\":{\"dtype\":\"F64\",\"shape\":[0],\"data_offsets\":[0,0]}}",
                       4);
}

static void test_bad_json(void) {
    expect_bad_header("unknown dtype",
                      "{\"w\":{\"dtype\":\"Q4\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
                      "tensor 'w' has unknown dtype 'Q4'");
    expect_bad_header("lower-case dtype",
                      "{\"w\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
                      "unknown dtype 'f32'");
    expect_bad_header("numeric dtype", "{\"w\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}",
                      4, "dtype");
    expect_bad_header("not JSON", "{not json at all", 0, "not valid JSON");
    expect_bad_header("garbage after the object", "{}x", 0, "not valid JSON");
    expect_bad_header("array header", "[1, 2]", 0, "not an object");
    expect_bad_header("entry not an object", "{\"w\":5}", 0,
                      "entry for tensor 'w' is not a JSON object");
    expect_bad_header("duplicate names",
                      "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                      "\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}",
                      2, "tensor 'w' appears more than once");
    expect_bad_header("metadata not strings", "{\"__metadata__\":{\"format\":3}}", 0,
                      "__metadata__");
    expect_bad_header("metadata not an object", "{\"__metadata__\":[]}", 0, "__metadata__");
    const char nul_header[] = "{\"a\":1}\0  ";
    const char *path = tmp_path("nul.safetensors");
    unsigned char b[8 + sizeof nul_header - 1];
    uint64_t hl = sizeof nul_header - 1;
    memcpy(b, &hl, 8);
    memcpy(b + 8, nul_header, hl);
    write_bytes(path, b, sizeof b);
    expect_error("NUL in header", path, "NUL byte at offset 7");
    expect_good_header("padded and metadata",
                       "  {\"__metadata__\":{\"format\":\"pt\"},"
                       "\"a\":{\"dtype\":\"BOOL\",\"shape\":[2],\"data_offsets\":[0,2]}}    ",
                       2);
    expect_good_header("no tensors", "{}", 0);
}

static void test_bad_paths(void) {
    expect_error("missing file", tmp_path("does_not_exist.safetensors"), "cannot open");
    expect_error("directory", g_tmp, "not a regular file");
}

/* ---- writer failures ----------------------------------------------------- */

static void save_under_size_limit(void) {
    struct rlimit rl = {64, 64};
    signal(SIGXFSZ, SIG_IGN);
    if (setrlimit(RLIMIT_FSIZE, &rl)) _exit(3);
    st_writer *w = st_writer_new();
    float big[1024] = {0};
    st_writer_add(w, "big", ST_F32, 1, (int64_t[]){1024}, big);
    char err[512] = "";
    int rc = st_writer_save(w, tmp_path("limited.safetensors"), err, sizeof err);
    fprintf(stderr, "%s\n", err);
    _exit(rc == -1 ? 0 : 2);
}

static void test_writer_failures(void) {
    char out[2048];
    int code = tl_run_child(save_under_size_limit, out, sizeof out);
    CHECK(code == 0 && strstr(out, "writing") && strstr(out, "File too large"),
          "size-limited save: exit %d, message '%s'", code, out);
    CHECK(!file_exists(tmp_path("limited.safetensors")) && no_tmp_files_left(),
          "a failed save left a file behind");
    st_writer *w = st_writer_new();
    char err[512] = "";
    int rc = st_writer_save(w, tmp_path("no/such/dir/x.safetensors"), err, sizeof err);
    CHECK(rc == -1 && strstr(err, "cannot create") && strstr(err, "No such file"),
          "save into a missing folder: %s", err);
    st_writer_free(w);
}

/* ---- model folders ------------------------------------------------------- */

static void make_dir(const char *name) { mkdir(tmp_path(name), 0755); }

static void write_text(const char *dir, const char *file, const char *text) {
    char p[600];
    snprintf(p, sizeof p, "%s/%s", tmp_path(dir), file);
    write_bytes(p, text, strlen(text));
}

static void save_writer(st_writer *w, const char *dir, const char *file) {
    char p[600], err[512] = "";
    snprintf(p, sizeof p, "%s/%s", tmp_path(dir), file);
    if (st_writer_save(w, p, err, sizeof err)) printf("FAIL: %s\n", err);
    st_writer_free(w);
}

#define BIG_N 1500000 /* > one conversion chunk of 2^20 elements */
static float g_embed[15], g_head[15];
static uint16_t g_embed_bits[15], *g_big_bits;
static int64_t g_ids[4] = {3, -4, 2147483647, 0};

/* The older LLaVA layout, in two shards with an index. */
static void build_llava_old(void) {
    make_dir("llava_old");
    for (int i = 0; i < 15; i++) {
        float v = (float)rng_normal();
        uint32_t u;
        memcpy(&u, &v, 4);
        g_embed_bits[i] = (uint16_t)(u >> 16);
        u &= 0xffff0000u;
        memcpy(&g_embed[i], &u, 4); /* exactly representable in bf16 */
        g_head[i] = (float)rng_normal();
    }
    g_big_bits = tl_alloc(BIG_N * 2);
    for (int i = 0; i < BIG_N; i++)
        g_big_bits[i] = (uint16_t)(rng_u64() & 0x7bff); /* finite halves */
    st_writer *w = st_writer_new();
    st_writer_add(w, "language_model.model.embed_tokens.weight", ST_BF16, 2, (int64_t[]){5, 3},
                  g_embed_bits);
    st_writer_add(w, "vision_tower.vision_model.post_layernorm.weight", ST_F32, 1, (int64_t[]){3},
                  g_head);
    save_writer(w, "llava_old", "model-00001-of-00002.safetensors");
    w = st_writer_new();
    st_writer_add(w, "multi_modal_projector.linear_1.weight", ST_F16, 1, (int64_t[]){BIG_N},
                  g_big_bits);
    st_writer_add(w, "language_model.lm_head.weight", ST_F32, 2, (int64_t[]){5, 3}, g_head);
    st_writer_add(w, "logit_scale", ST_F32, 0, NULL, &g_head[0]);
    st_writer_add(w, "ids", ST_I64, 2, (int64_t[]){2, 2}, g_ids);
    st_writer_add(w, "five_d", ST_F32, 5, (int64_t[]){1, 1, 1, 1, 2}, g_head);
    save_writer(w, "llava_old", "model-00002-of-00002.safetensors");
    write_text(
        "llava_old", "model.safetensors.index.json",
        "{\"metadata\":{\"total_size\":3000000},\"weight_map\":{"
        "\"language_model.model.embed_tokens.weight\":\"model-00001-of-00002.safetensors\","
        "\"vision_tower.vision_model.post_layernorm.weight\":\"model-00001-of-00002.safetensors\","
        "\"multi_modal_projector.linear_1.weight\":\"model-00002-of-00002.safetensors\","
        "\"language_model.lm_head.weight\":\"model-00002-of-00002.safetensors\","
        "\"logit_scale\":\"model-00002-of-00002.safetensors\","
        "\"ids\":\"model-00002-of-00002.safetensors\","
        "\"five_d\":\"model-00002-of-00002.safetensors\"}}");
    write_text(
        "llava_old", "config.json",
        "{\"architectures\":[\"LlavaForConditionalGeneration\"],\"image_token_index\":32000,"
        "\"vision_feature_layer\":-2,\"nullable\":null,\"str_as_int\":\"12\",\"eps\":1e-05,"
        "\"text_config\":{\"hidden_size\":3,\"rope_theta\":10000.0,\"tie_word_embeddings\":false,"
        "\"model_type\":\"llama\"},\"vision_config\":{\"image_size\":336}}");
}

/* The newer layout (transformers v5 key names and config spellings). */
static void build_llava_new(void) {
    make_dir("llava_new");
    st_writer *w = st_writer_new();
    st_writer_add(w, "model.language_model.embed_tokens.weight", ST_F32, 2, (int64_t[]){5, 3},
                  g_head);
    st_writer_add(w, "lm_head.weight", ST_F32, 2, (int64_t[]){5, 3}, g_head);
    st_writer_add(w, "model.vision_tower.vision_model.post_layernorm.weight", ST_F32, 1,
                  (int64_t[]){3}, g_head);
    st_writer_add(w, "model.multi_modal_projector.linear_2.bias", ST_F32, 1, (int64_t[]){3},
                  g_head);
    save_writer(w, "llava_new", "model.safetensors");
    write_text(
        "llava_new", "config.json",
        "{\"image_token_id\":32001,\"text_config\":{\"rope_parameters\":{\"rope_theta\":500000.0,"
        "\"rope_type\":\"default\"}}}");
}

/* BLIP-2 style: OPT inside language_model.*, lm_head absent (tied). */
static void build_blip2(void) {
    make_dir("blip2");
    st_writer *w = st_writer_new();
    st_writer_add(w, "language_model.model.decoder.embed_tokens.weight", ST_F32, 2,
                  (int64_t[]){5, 3}, g_head);
    save_writer(w, "blip2", "model.safetensors");
    write_text("blip2", "config.json", "{\"text_config\":{\"model_type\":\"opt\"}}");
}

static model_dir *open_md(const char *name) {
    char err[512] = "";
    model_dir *md = model_dir_open(tmp_path(name), err, sizeof err);
    CHECK(md != NULL, "model_dir_open(%s): %s", name, err);
    return md;
}

static void check_aliases(model_dir *old, model_dir *nw) {
    const st_tensor *e = model_dir_find(old, "language_model.model.embed_tokens.weight");
    CHECK(e && model_dir_find(old, "model.language_model.embed_tokens.weight") == e,
          "old layout: new name");
    CHECK(model_dir_find(old, "lm_head.weight") ==
                  model_dir_find(old, "language_model.lm_head.weight") &&
              model_dir_find(old, "lm_head.weight"),
          "old layout: lm_head.weight");
    CHECK(model_dir_find(old, "model.vision_tower.vision_model.post_layernorm.weight") != NULL,
          "old: vision");
    CHECK(model_dir_find(old, "model.multi_modal_projector.linear_1.weight") != NULL,
          "old: projector");
    CHECK(model_dir_find(old, "language_model.model.absent") == NULL, "old: absent name found");
    CHECK(model_dir_find(nw, "language_model.model.embed_tokens.weight") ==
              model_dir_find(nw, "model.language_model.embed_tokens.weight"),
          "new layout: old name");
    CHECK(model_dir_find(nw, "language_model.lm_head.weight") != NULL,
          "new: language_model.lm_head");
    CHECK(model_dir_find(nw, "vision_tower.vision_model.post_layernorm.weight") != NULL,
          "new: vision");
    CHECK(model_dir_find(nw, "multi_modal_projector.linear_2.bias") != NULL, "new: projector");
    CHECK(model_dir_find(nw, "text.embed_tokens.weight") == NULL,
          "custom alias active before added");
    model_dir_alias(nw, "text.", "model.language_model.");
    CHECK(model_dir_find(nw, "text.embed_tokens.weight") != NULL, "custom alias");
}

static model_dir *g_md;
static const char *g_name;
static int g_ndim;
static const int64_t *g_shape;
static dtype g_want;
static void need_child(void) { model_dir_need(g_md, g_name, g_ndim, g_shape); }
static void load_child(void) {
    model_dir_load(g_md, g_name, backend_cpu(), g_want, g_ndim, g_shape);
}

static void expect_death(void (*fn)(void), const char *label, const char *n1, const char *n2,
                         const char *n3) {
    char out[4096];
    int code = tl_run_child(fn, out, sizeof out);
    CHECK(code == 1 && strstr(out, "aimc: error: ") && strstr(out, n1) &&
              (!n2 || strstr(out, n2)) && (!n3 || strstr(out, n3)) &&
              strchr(out, '\n') == out + strlen(out) - 1,
          "%s: exit %d, stderr '%s'", label, code, out);
}

static void check_need(model_dir *old) {
    int64_t ok[2] = {5, 3}, wild[2] = {MD_ANY_SIZE, 3};
    CHECK(model_dir_need(old, "model.language_model.embed_tokens.weight", 2, ok) != NULL,
          "need exact shape");
    CHECK(model_dir_need(old, "language_model.model.embed_tokens.weight", 2, wild) != NULL,
          "need wildcard");
    CHECK(model_dir_need(old, "logit_scale", 0, NULL) != NULL, "need scalar");
    CHECK(model_dir_need(old, "ids", MD_ANY_SHAPE, NULL) != NULL, "need any shape");
    g_md = old;
    g_name = "model.language_model.embed_tokens.weight";
    g_ndim = 2;
    g_shape = (int64_t[]){5, 4};
    expect_death(need_child, "wrong shape",
                 "tensor 'model.language_model.embed_tokens.weight' (stored as "
                 "'language_model.model.embed_tokens.weight') has shape [5, 3], expected [5, 4]",
                 tmp_path("llava_old"), NULL);
    g_ndim = 1;
    g_shape = (int64_t[]){15};
    expect_death(need_child, "wrong rank", "has shape [5, 3], expected [15]", NULL, NULL);
    g_name = "model.language_model.layers.0.mlp.up_proj.weight";
    expect_death(need_child, "missing tensor",
                 "tensor 'model.language_model.layers.0.mlp.up_proj.weight' not found",
                 "also tried 'language_model.model.layers.0.mlp.up_proj.weight'", NULL);
    g_name = "logit_scale";
    g_ndim = 1;
    g_shape = (int64_t[]){1};
    expect_death(need_child, "scalar vs [1]", "tensor 'logit_scale' has shape [], expected [1]",
                 NULL, NULL);
}

static void check_ties(model_dir *blip) {
    CHECK(model_dir_find(blip, "language_model.lm_head.weight") == NULL,
          "tie active before registration");
    g_md = blip;
    g_name = "lm_head.weight";
    g_ndim = MD_ANY_SHAPE;
    model_dir_tie(blip, "language_model.lm_head.weight",
                  "language_model.model.decoder.embed_tokens.weight");
    const st_tensor *e = model_dir_find(blip, "language_model.model.decoder.embed_tokens.weight");
    CHECK(e && model_dir_find(blip, "language_model.lm_head.weight") == e, "tied lm_head");
    CHECK(model_dir_find(blip, "lm_head.weight") == e, "tied lm_head through the alias");
    model_dir_tie(blip, "language_model.model.decoder.embed_positions.weight",
                  "language_model.model.nothing");
    g_name = "language_model.model.decoder.embed_positions.weight";
    expect_death(need_child, "tie to a missing tensor", "not found",
                 "tied to 'language_model.model.nothing'", NULL);
}

static void check_loads(model_dir *old) {
    const backend *be = backend_cpu();
    tensor t = model_dir_load(old, "model.language_model.embed_tokens.weight", be, DT_F32, 2,
                              (int64_t[]){5, 3});
    CHECK(t.dt == DT_F32 && t.ndim == 2 && !memcmp(t.data, g_embed, sizeof g_embed),
          "BF16 -> f32 load");
    be->release(t.data);
    t = model_dir_load(old, "lm_head.weight", be, DT_BF16, 2, (int64_t[]){5, 3});
    int bad = 0;
    for (int i = 0; i < 15; i++)
        bad |=
            fabs(bf16_to_f32(((uint16_t *)t.data)[i]) - g_head[i]) > fabs(g_head[i]) * (1.0 / 256);
    CHECK(t.dt == DT_BF16 && !bad, "F32 -> bf16 load beyond 2^-8 relative");
    be->release(t.data);
    bad = 0;
    t = model_dir_load(old, "lm_head.weight", be, DT_F16, 2, (int64_t[]){5, 3});
    for (int i = 0; i < 15; i++)
        bad |= fabs(ref_f16(((uint16_t *)t.data)[i]) - g_head[i]) >
               fabs(g_head[i]) * (1.0 / 2048) + 1e-7;
    CHECK(t.dt == DT_F16 && !bad, "F32 -> f16 load beyond 2^-11 relative");
    be->release(t.data);
    bad = 0;
    t = model_dir_load(old, "multi_modal_projector.linear_1.weight", be, DT_F32, 1,
                       (int64_t[]){BIG_N});
    for (int i = 0; i < BIG_N && !bad; i++)
        bad |= ((float *)t.data)[i] != (float)ref_f16(g_big_bits[i]);
    CHECK(!bad, "F16 -> f32 load of %d elements (chunked) differs", BIG_N);
    be->release(t.data);
    t = model_dir_load(old, "multi_modal_projector.linear_1.weight", be, DT_F16, 1,
                       (int64_t[]){BIG_N});
    CHECK(!memcmp(t.data, g_big_bits, BIG_N * 2), "F16 -> f16 load not bit-identical");
    be->release(t.data);
    t = model_dir_load(old, "logit_scale", be, DT_F32, 0, NULL);
    CHECK(t.ndim == 1 && t.shape[0] == 1 && ((float *)t.data)[0] == g_head[0],
          "scalar load as [1]");
    be->release(t.data);
    t = model_dir_load(old, "ids", be, DT_I32, 2, (int64_t[]){2, 2});
    int32_t *ids = t.data;
    CHECK(ids[0] == 3 && ids[1] == -4 && ids[2] == 2147483647 && ids[3] == 0, "I64 -> i32 load");
    be->release(t.data);
}

static void check_load_errors(model_dir *old) {
    g_md = old;
    g_name = "ids";
    g_ndim = MD_ANY_SHAPE;
    g_want = DT_F32;
    expect_death(load_child, "int as float",
                 "tensor 'ids' is I64 in the checkpoint and cannot be loaded as f32", NULL, NULL);
    g_name = "lm_head.weight";
    g_want = DT_I32;
    expect_death(load_child, "float as int", "cannot be loaded as i32", NULL, NULL);
    g_name = "five_d";
    g_want = DT_F32;
    expect_death(load_child, "five dims", "tensor 'five_d' has 5 dimensions", NULL, NULL);
}

static void check_config(model_dir *old, model_dir *nw) {
    int64_t v = -99;
    double d = 0;
    const char *s = NULL;
    CHECK(cfg_need_int(old, "text_config.hidden_size") == 3, "text_config.hidden_size");
    CHECK(cfg_need_int(old, "image_token_index|image_token_id") == 32000,
          "image_token_index (old)");
    CHECK(cfg_need_int(nw, "image_token_index|image_token_id") == 32001, "image_token_id (new)");
    const char *theta = "text_config.rope_theta|text_config.rope_parameters.rope_theta";
    CHECK(cfg_need_double(old, theta) == 10000.0 && cfg_need_double(nw, theta) == 500000.0,
          "rope_theta both spellings");
    CHECK(!strcmp(cfg_need_str(old, "architectures.0"), "LlavaForConditionalGeneration"),
          "architectures.0");
    CHECK(cfg_str(old, "architectures.1", &s) == 0 && s == NULL, "architectures.1 absent");
    CHECK(cfg_int(old, "vision_feature_layer", &v) == 1 && v == -2, "negative int");
    v = -99;
    CHECK(cfg_int(old, "text_config.num_hidden_layers", &v) == 0 && v == -99,
          "absent optional int");
    CHECK(cfg_int_or(old, "nullable", 7) == 7 && !cfg_has(old, "nullable"),
          "null counts as absent");
    CHECK(cfg_int_or(old, "vision_config.image_size", 224) == 336, "int_or present");
    CHECK(cfg_bool_or(old, "text_config.tie_word_embeddings", 1) == 0, "bool false");
    CHECK(cfg_bool_or(nw, "text_config.tie_word_embeddings", 1) == 1, "bool default");
    CHECK(cfg_double(old, "eps", &d) == 1 && d == 1e-5, "double");
    CHECK(!strcmp(cfg_str_or(nw, "text_config.model_type", "llama"), "llama"), "str default");
    CHECK(cfg_has(old, "text_config") && !cfg_has(old, "text_config.hidden_size.x"), "cfg_has");
}

static const char *g_key;
static void cfg_int_child(void) { cfg_need_int(g_md, g_key); }
static void cfg_str_child(void) { cfg_need_str(g_md, g_key); }

static void check_config_errors(model_dir *old, model_dir *nw) {
    char cfg[600];
    snprintf(cfg, sizeof cfg, "%s/config.json", tmp_path("llava_old"));
    g_md = old;
    g_key = "text_config.num_hidden_layers";
    expect_death(cfg_int_child, "missing key",
                 "missing required key 'text_config.num_hidden_layers'", cfg, NULL);
    g_key = "str_as_int";
    expect_death(cfg_int_child, "string as int",
                 "key 'str_as_int' is a string, expected an integer", NULL, NULL);
    g_key = "eps";
    expect_death(cfg_int_child, "fraction as int", "key 'eps' is a number, expected an integer",
                 NULL, NULL);
    g_key = "text_config";
    expect_death(cfg_str_child, "object as string",
                 "key 'text_config' is an object, expected a string", NULL, NULL);
    g_md = nw;
    g_key = "image_token_index|vision_config.image_token_id";
    expect_death(cfg_int_child, "missing alternatives",
                 "missing required key 'image_token_index' or 'vision_config.image_token_id'", NULL,
                 NULL);
}

static void expect_open_error(const char *label, const char *dir, const char *n1, const char *n2) {
    char err[1024] = "";
    model_dir *md = model_dir_open(tmp_path(dir), err, sizeof err);
    CHECK(!md && strstr(err, n1) && (!n2 || strstr(err, n2)), "%s: got %s '%s'", label,
          md ? "success" : "error", err);
    model_dir_close(md);
}

static const char *one_shard_index(const char *tensor, const char *file) {
    static char buf[512];
    snprintf(buf, sizeof buf, "{\"weight_map\":{\"%s\":\"%s\"}}", tensor, file);
    return buf;
}

static void test_model_dir_open_errors(void) {
    expect_open_error("missing folder", "no_such_model", "cannot open the model folder", NULL);
    make_dir("m_noconfig");
    expect_open_error("no config", "m_noconfig", "config.json: cannot open", NULL);
    make_dir("m_badconfig");
    write_text("m_badconfig", "config.json", "{\"a\": 1,");
    expect_open_error("bad config", "m_badconfig", "config.json: not valid JSON", NULL);
    make_dir("m_noweights");
    write_text("m_noweights", "config.json", "{}");
    expect_open_error("no weights", "m_noweights",
                      "no model.safetensors or model.safetensors.index.json", NULL);
    write_text("m_noweights", "pytorch_model.bin", "x");
    expect_open_error("bin only", "m_noweights", "only PyTorch .bin weights", NULL);
    make_dir("m_index");
    write_text("m_index", "config.json", "{}");
    write_text("m_index", "model.safetensors.index.json",
               one_shard_index("a", "missing.safetensors"));
    expect_open_error("missing shard", "m_index", "missing.safetensors: cannot open", NULL);
    write_text("m_index", "model.safetensors.index.json",
               one_shard_index("a", "../escape.safetensors"));
    expect_open_error("shard outside", "m_index", "not a file name in the folder", "'a'");
    write_text("m_index", "model.safetensors.index.json", "{\"metadata\":{}}");
    expect_open_error("no weight_map", "m_index", "no \"weight_map\"", NULL);
    st_writer *w = st_writer_new();
    st_writer_add(w, "b", ST_F32, 0, NULL, g_head);
    save_writer(w, "m_index", "s1.safetensors");
    write_text("m_index", "model.safetensors.index.json", one_shard_index("a", "s1.safetensors"));
    expect_open_error("tensor not in shard", "m_index",
                      "tensor 'a' is mapped to shard 's1.safetensors', which does not contain it",
                      NULL);
    char s2[600];
    snprintf(s2, sizeof s2, "%s/s2.safetensors", tmp_path("m_index"));
    write_bytes(s2, "\x10\0\0\0\0\0\0\0{}", 10);
    write_text("m_index", "model.safetensors.index.json", one_shard_index("a", "s2.safetensors"));
    expect_open_error("corrupt shard", "m_index", "s2.safetensors: header length 16 exceeds", NULL);
}

static void test_model_dirs(void) {
    build_llava_old();
    build_llava_new();
    build_blip2();
    model_dir *old = open_md("llava_old"), *nw = open_md("llava_new"), *blip = open_md("blip2");
    if (old && nw && blip) {
        CHECK(model_dir_shard_count(old) == 2 && model_dir_shard_count(nw) == 1, "shard counts");
        check_aliases(old, nw);
        check_need(old);
        check_ties(blip);
        check_loads(old);
        check_load_errors(old);
        check_config(old, nw);
        check_config_errors(old, nw);
    }
    model_dir_close(old);
    model_dir_close(nw);
    model_dir_close(blip);
    free(g_big_bits);
    test_model_dir_open_errors();
}

int main(void) {
    tests_begin("safetensors");
    snprintf(g_tmp, sizeof g_tmp, "%s/aimc_st_XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(g_tmp)) {
        printf("FAIL: mkdtemp %s\n", g_tmp);
        return 1;
    }
    test_round_trip();
    test_empty_file();
    test_conversions();
    test_python_fixture();
    test_truncation();
    test_mutations();
    test_lying_lengths();
    test_bad_offsets();
    test_bad_shapes();
    test_bad_json();
    test_bad_paths();
    test_writer_failures();
    test_model_dirs();
    nftw(g_tmp, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return tests_done();
}
