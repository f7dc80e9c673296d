/* safetensors reader and writer (format: host/safetensors.h).
 *
 * Reader: the file is memory-mapped and nothing in it is trusted until it is
 * checked: the header length against the file, the JSON syntax, every entry's
 * dtype, shape and offsets, and that the entries tile the data buffer exactly
 * (no overlap, no hole, no trailing bytes), as the reference implementation
 * requires. Numbers are read from cJSON's double (exact below 2^53), never
 * from its 32-bit valueint. After st_open, st_at(i) lists the tensors in
 * name order (strcmp), and st_find is a binary search.
 *
 * Writer: tensors are laid out in the data buffer by element size (largest
 * first) and then by name, so every tensor starts at a multiple of its
 * element size; the header lists them by name and is padded with spaces so
 * the data starts at an 8-byte boundary. It goes to PATH.tmp.PID, is
 * fsync'ed, and renamed over PATH. */
#include "safetensors.h"
#include "../kernels/check.h"
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c reads little-endian data in place: a little-endian host is required"
#endif

#define ST_MAX_HEADER 100000000ull        /* the reference implementation's limit */
#define ST_EXACT_LIMIT 9007199254740992.0 /* 2^53: doubles hold integers exactly below it */

struct st_file {
    char *path;
    void *map;
    size_t map_size;
    const unsigned char *data; /* the data buffer: byte 8 + header length */
    size_t data_size;
    int count;
    st_tensor *tensors; /* sorted by name; names owned here */
};

static const struct {
    const char *name;
    size_t size;
} st_dtypes[ST_DTYPE_COUNT] = {
    [ST_F64] = {"F64", 8},   [ST_F32] = {"F32", 4},         [ST_F16] = {"F16", 2},
    [ST_BF16] = {"BF16", 2}, [ST_I64] = {"I64", 8},         [ST_I32] = {"I32", 4},
    [ST_I16] = {"I16", 2},   [ST_I8] = {"I8", 1},           [ST_U8] = {"U8", 1},
    [ST_BOOL] = {"BOOL", 1}, [ST_F8_E4M3] = {"F8_E4M3", 1}, [ST_F8_E5M2] = {"F8_E5M2", 1},
};

const char *st_dtype_name(st_dtype dt) {
    return (unsigned)dt < ST_DTYPE_COUNT ? st_dtypes[dt].name : "?";
}
size_t st_dtype_size(st_dtype dt) { return (unsigned)dt < ST_DTYPE_COUNT ? st_dtypes[dt].size : 0; }

int st_to_dtype(st_dtype dt) {
    switch (dt) {
    case ST_F32: return DT_F32;
    case ST_BF16: return DT_BF16;
    case ST_F16: return DT_F16;
    case ST_I32: return DT_I32;
    default: return -1;
    }
}

static int dtype_from_name(const char *s, st_dtype *out) {
    for (int i = 0; i < ST_DTYPE_COUNT; i++)
        if (!strcmp(s, st_dtypes[i].name)) {
            *out = (st_dtype)i;
            return 1;
        }
    return 0;
}

static const char *shape_str(int ndim, const int64_t *shape, char *buf, size_t n) {
    size_t used = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < ndim && used < n; i++)
        used += (size_t)snprintf(buf + used, n - used, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (used < n) snprintf(buf + used, n - used, "]");
    return buf;
}

/* numel * elem_size, or 0 with *overflow set when it does not fit in 63 bits. */
static uint64_t checked_bytes(int ndim, const int64_t *shape, size_t elem_size, int *overflow) {
    uint64_t total = elem_size;
    *overflow = 0;
    for (int i = 0; i < ndim; i++) {
        if (__builtin_mul_overflow(total, (uint64_t)shape[i], &total) ||
            total > (uint64_t)INT64_MAX) {
            *overflow = 1;
            return 0;
        }
    }
    return total;
}

static int64_t st_numel(const st_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

/* ---- reader: mapping ---------------------------------------------------- */

static int map_file(st_file *f, char *err, size_t errlen) {
    int fd = open(f->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return aimc_fail_path(err, errlen, f->path, "cannot open: %s", strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return aimc_fail_path(err, errlen, f->path, "cannot stat: %s", strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return aimc_fail_path(err, errlen, f->path, "not a regular file");
    }
    if (sb.st_size < 8) {
        close(fd);
        return aimc_fail_path(err, errlen, f->path,
                              "file is %lld bytes, shorter than the 8-byte header length field",
                              (long long)sb.st_size);
    }
    f->map_size = (size_t)sb.st_size;
    f->map = mmap(NULL, f->map_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (f->map == MAP_FAILED) {
        f->map = NULL;
        return aimc_fail_path(err, errlen, f->path, "mmap of %zu bytes failed: %s", f->map_size,
                              strerror(e));
    }
    return 0;
}

/* Reads the header length and locates the data buffer. */
static int locate_header(st_file *f, uint64_t *header_len, char *err, size_t errlen) {
    uint64_t n;
    memcpy(&n, f->map, 8);
    if (n > ST_MAX_HEADER)
        return aimc_fail_path(err, errlen, f->path,
                              "header length %llu exceeds the %llu-byte limit",
                              (unsigned long long)n, ST_MAX_HEADER);
    if (n > f->map_size - 8)
        return aimc_fail_path(
            err, errlen, f->path,
            "header length %llu exceeds the %zu bytes that follow the length field "
            "(truncated file?)",
            (unsigned long long)n, f->map_size - 8);
    *header_len = n;
    f->data = (const unsigned char *)f->map + 8 + n;
    f->data_size = f->map_size - 8 - (size_t)n;
    return 0;
}

/* ---- reader: header JSON ------------------------------------------------ */

static cJSON *parse_header_json(const st_file *f, uint64_t n, char *err, size_t errlen) {
    const char *src = (const char *)f->map + 8;
    const char *nul = memchr(src, '\0', (size_t)n);
    if (nul) {
        aimc_fail_path(err, errlen, f->path, "header contains a NUL byte at offset %td", nul - src);
        return NULL;
    }
    char *text = malloc((size_t)n + 1);
    AIMC_CHECK(text, "out of memory copying a %llu-byte header", (unsigned long long)n);
    memcpy(text, src, (size_t)n);
    text[n] = '\0';
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(text, &end, 1);
    if (!root)
        aimc_fail_path(err, errlen, f->path, "header is not valid JSON (error at byte %td of %llu)",
                       end ? end - text : (ptrdiff_t)0, (unsigned long long)n);
    else if (!cJSON_IsObject(root)) {
        aimc_fail_path(err, errlen, f->path, "header is JSON but not an object");
        cJSON_Delete(root);
        root = NULL;
    }
    free(text);
    return root;
}

/* A JSON number that is an integer in [0, 2^53); returns 1 and stores it. */
static int json_u53(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return 0;
    double d = v->valuedouble;
    if (!(d >= 0 && d < ST_EXACT_LIMIT) || d != floor(d)) return 0;
    *out = (uint64_t)d;
    return 1;
}

static int check_metadata(const st_file *f, const cJSON *meta, char *err, size_t errlen) {
    if (!cJSON_IsObject(meta))
        return aimc_fail_path(err, errlen, f->path, "__metadata__ is not a JSON object");
    for (const cJSON *kv = meta->child; kv; kv = kv->next)
        if (!cJSON_IsString(kv))
            return aimc_fail_path(err, errlen, f->path,
                                  "__metadata__ value of '%s' is not a string", kv->string);
    return 0;
}

static int parse_dtype(const st_file *f, const char *name, const cJSON *e, st_tensor *t, char *err,
                       size_t errlen) {
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    if (!cJSON_IsString(dt))
        return aimc_fail_path(err, errlen, f->path, "tensor '%s' has no \"dtype\" string", name);
    if (!dtype_from_name(dt->valuestring, &t->dtype))
        return aimc_fail_path(err, errlen, f->path, "tensor '%s' has unknown dtype '%s'", name,
                              dt->valuestring);
    return 0;
}

static int parse_shape(const st_file *f, const char *name, const cJSON *e, st_tensor *t, char *err,
                       size_t errlen) {
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    if (!cJSON_IsArray(sh))
        return aimc_fail_path(err, errlen, f->path, "tensor '%s' has no \"shape\" array", name);
    int nd = cJSON_GetArraySize(sh);
    if (nd > ST_MAX_DIMS)
        return aimc_fail_path(err, errlen, f->path,
                              "tensor '%s' has %d dimensions (at most %d supported)", name, nd,
                              ST_MAX_DIMS);
    t->ndim = nd;
    int i = 0;
    for (const cJSON *d = sh->child; d; d = d->next, i++) {
        uint64_t v;
        if (!json_u53(d, &v))
            return aimc_fail_path(err, errlen, f->path,
                                  "tensor '%s' shape[%d] is not an integer in [0, 2^53)", name, i);
        t->shape[i] = (int64_t)v;
    }
    return 0;
}

/* Offsets within the data buffer and agreement with dtype * shape. */
static int parse_offsets(const st_file *f, const char *name, const cJSON *e, st_tensor *t,
                         char *err, size_t errlen) {
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    uint64_t b, en;
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2 || !json_u53(off->child, &b) ||
        !json_u53(off->child->next, &en))
        return aimc_fail_path(
            err, errlen, f->path,
            "tensor '%s' needs \"data_offsets\": [begin, end] with integers in [0, 2^53)", name);
    if (b > en)
        return aimc_fail_path(err, errlen, f->path,
                              "tensor '%s' data_offsets [%llu, %llu] end before they begin", name,
                              (unsigned long long)b, (unsigned long long)en);
    if (en > f->data_size)
        return aimc_fail_path(err, errlen, f->path,
                              "tensor '%s' data_offsets [%llu, %llu] exceed the data size %zu",
                              name, (unsigned long long)b, (unsigned long long)en, f->data_size);
    int overflow;
    char sbuf[200];
    uint64_t need = checked_bytes(t->ndim, t->shape, st_dtype_size(t->dtype), &overflow);
    if (overflow)
        return aimc_fail_path(
            err, errlen, f->path, "tensor '%s' shape %s of %s overflows 64-bit byte counts", name,
            shape_str(t->ndim, t->shape, sbuf, sizeof sbuf), st_dtype_name(t->dtype));
    if (need != en - b)
        return aimc_fail_path(
            err, errlen, f->path,
            "tensor '%s' shape %s of %s needs %llu bytes but data_offsets [%llu, %llu] "
            "span %llu",
            name, shape_str(t->ndim, t->shape, sbuf, sizeof sbuf), st_dtype_name(t->dtype),
            (unsigned long long)need, (unsigned long long)b, (unsigned long long)en,
            (unsigned long long)(en - b));
    t->data = f->data + b;
    t->nbytes = (size_t)(en - b);
    return 0;
}

static int parse_entry(const st_file *f, const cJSON *e, st_tensor *t, char *err, size_t errlen) {
    const char *name = e->string;
    if (!cJSON_IsObject(e))
        return aimc_fail_path(err, errlen, f->path, "entry for tensor '%s' is not a JSON object",
                              name);
    t->name = aimc_strdup(name);
    if (parse_dtype(f, name, e, t, err, errlen) || parse_shape(f, name, e, t, err, errlen) ||
        parse_offsets(f, name, e, t, err, errlen))
        return -1;
    return 0;
}

static int cmp_by_name(const void *a, const void *b) {
    return strcmp(((const st_tensor *)a)->name, ((const st_tensor *)b)->name);
}

/* qsort order by (begin, end): pointers into one mapping compare directly. */
static int cmp_by_offsets(const void *a, const void *b) {
    const st_tensor *x = *(const st_tensor *const *)a, *y = *(const st_tensor *const *)b;
    const char *bx = x->data, *by = y->data;
    if (bx != by) return bx < by ? -1 : 1;
    return x->nbytes < y->nbytes ? -1 : x->nbytes > y->nbytes;
}

static int check_unique_names(const st_file *f, char *err, size_t errlen) {
    for (int i = 1; i < f->count; i++)
        if (!strcmp(f->tensors[i - 1].name, f->tensors[i].name))
            return aimc_fail_path(err, errlen, f->path,
                                  "tensor '%s' appears more than once in the header",
                                  f->tensors[i].name);
    return 0;
}

/* The entries, in offset order, must cover [0, data_size) exactly once. */
static int check_tiling(const st_file *f, char *err, size_t errlen) {
    const st_tensor **order = aimc_xmalloc(sizeof *order * (size_t)(f->count ? f->count : 1));
    for (int i = 0; i < f->count; i++) order[i] = &f->tensors[i];
    qsort(order, (size_t)f->count, sizeof *order, cmp_by_offsets);
    size_t expect = 0;
    int rc = 0;
    for (int i = 0; i < f->count && !rc; i++) {
        size_t b = (size_t)((const unsigned char *)order[i]->data - f->data);
        size_t e = b + order[i]->nbytes;
        if (b < expect)
            rc = aimc_fail_path(
                err, errlen, f->path,
                "tensor '%s' data_offsets [%zu, %zu] overlap tensor '%s' (which ends at %zu)",
                order[i]->name, b, e, order[i - 1]->name, expect);
        else if (b > expect)
            rc = aimc_fail_path(
                err, errlen, f->path,
                "data bytes [%zu, %zu) belong to no tensor (hole before tensor '%s')", expect, b,
                order[i]->name);
        expect = e;
    }
    if (!rc && expect != f->data_size)
        rc = aimc_fail_path(err, errlen, f->path,
                            "tensors cover %zu bytes but the data buffer has %zu (trailing bytes)",
                            expect, f->data_size);
    free(order);
    return rc;
}

static int count_tensors(const cJSON *root) {
    int n = 0;
    for (const cJSON *e = root->child; e; e = e->next) n += strcmp(e->string, "__metadata__") != 0;
    return n;
}

static int read_entries(st_file *f, const cJSON *root, char *err, size_t errlen) {
    int n = count_tensors(root);
    f->tensors = calloc((size_t)(n ? n : 1), sizeof *f->tensors);
    AIMC_CHECK(f->tensors, "out of memory for %d tensor entries", n);
    for (const cJSON *e = root->child; e; e = e->next) {
        if (!strcmp(e->string, "__metadata__")) {
            if (check_metadata(f, e, err, errlen)) return -1;
            continue;
        }
        st_tensor *t = &f->tensors[f->count++];
        if (parse_entry(f, e, t, err, errlen)) return -1;
    }
    qsort(f->tensors, (size_t)f->count, sizeof *f->tensors, cmp_by_name);
    return check_unique_names(f, err, errlen) || check_tiling(f, err, errlen) ? -1 : 0;
}

st_file *st_open(const char *path, char *err, size_t errlen) {
    st_file *f = aimc_xcalloc(1, sizeof *f);
    f->path = aimc_strdup(path);
    uint64_t n = 0;
    if (map_file(f, err, errlen) || locate_header(f, &n, err, errlen)) {
        st_close(f);
        return NULL;
    }
    cJSON *root = parse_header_json(f, n, err, errlen);
    int rc = root ? read_entries(f, root, err, errlen) : -1;
    cJSON_Delete(root);
    if (rc) {
        st_close(f);
        return NULL;
    }
    return f;
}

void st_close(st_file *f) {
    if (!f) return;
    if (f->map) munmap(f->map, f->map_size);
    for (int i = 0; i < f->count; i++) free((char *)f->tensors[i].name);
    free(f->tensors);
    free(f->path);
    free(f);
}

int st_count(const st_file *f) { return f->count; }

const st_tensor *st_at(const st_file *f, int i) {
    AIMC_CHECK(i >= 0 && i < f->count, "st_at: index %d outside [0, %d)", i, f->count);
    return &f->tensors[i];
}

const st_tensor *st_find(const st_file *f, const char *name) {
    st_tensor key = {.name = name};
    return bsearch(&key, f->tensors, (size_t)f->count, sizeof key, cmp_by_name);
}

/* ---- conversions -------------------------------------------------------- */

/* FP8 E4M3 "fn" (no infinities): bias 7; S.1111.111 is NaN. */
static float f8_e4m3_to_f32(uint8_t b) {
    int sign = b >> 7, exp = (b >> 3) & 0xf, man = b & 7;
    float v;
    if (exp == 15 && man == 7) return NAN;
    if (exp == 0)
        v = ldexpf((float)man, -9); /* subnormal: man/8 * 2^-6 */
    else
        v = ldexpf(1.0f + (float)man / 8.0f, exp - 7);
    return sign ? -v : v;
}

/* FP8 E5M2 is the top byte of an IEEE half. */
static float f8_e5m2_to_f32(uint8_t b) { return f16_to_f32((uint16_t)(b << 8)); }

static int is_float_dtype(st_dtype dt) {
    return dt == ST_F64 || dt == ST_F32 || dt == ST_F16 || dt == ST_BF16 || dt == ST_F8_E4M3 ||
           dt == ST_F8_E5M2;
}

/* Element i of a float tensor as f32 (unaligned data is fine). */
static float load_float(const unsigned char *p, st_dtype dt, int64_t i) {
    uint16_t h;
    double d;
    float f;
    switch (dt) {
    case ST_F64: memcpy(&d, p + 8 * i, 8); return (float)d;
    case ST_F16: memcpy(&h, p + 2 * i, 2); return f16_to_f32(h);
    case ST_BF16: memcpy(&h, p + 2 * i, 2); return bf16_to_f32(h);
    case ST_F8_E4M3: return f8_e4m3_to_f32(p[i]);
    case ST_F8_E5M2: return f8_e5m2_to_f32(p[i]);
    default: memcpy(&f, p + 4 * i, 4); return f;
    }
}

int st_read_f32(const st_tensor *t, float *out, char *err, size_t errlen) {
    if (!is_float_dtype(t->dtype))
        return aimc_fail_path(err, errlen, "safetensors",
                              "tensor '%s' has dtype %s, which cannot be read as f32", t->name,
                              st_dtype_name(t->dtype));
    int64_t n = st_numel(t);
    if (t->dtype == ST_F32) {
        if (n) memcpy(out, t->data, (size_t)n * 4);
        return 0;
    }
    for (int64_t i = 0; i < n; i++) out[i] = load_float(t->data, t->dtype, i);
    return 0;
}

/* Element i of an integer tensor as int64; 0 for non-integer dtypes. */
static int64_t load_int(const unsigned char *p, st_dtype dt, int64_t i) {
    int64_t v64;
    int32_t v32;
    int16_t v16;
    switch (dt) {
    case ST_I64: memcpy(&v64, p + 8 * i, 8); return v64;
    case ST_I32: memcpy(&v32, p + 4 * i, 4); return v32;
    case ST_I16: memcpy(&v16, p + 2 * i, 2); return v16;
    case ST_I8: return (int8_t)p[i];
    case ST_U8: return p[i];
    case ST_BOOL: return p[i] != 0;
    default: return 0;
    }
}

int st_read_i32(const st_tensor *t, int32_t *out, char *err, size_t errlen) {
    switch (t->dtype) {
    case ST_I64:
    case ST_I32:
    case ST_I16:
    case ST_I8:
    case ST_U8:
    case ST_BOOL: break;
    default:
        return aimc_fail_path(err, errlen, "safetensors",
                              "tensor '%s' has dtype %s, which cannot be read as i32", t->name,
                              st_dtype_name(t->dtype));
    }
    int64_t n = st_numel(t);
    for (int64_t i = 0; i < n; i++) {
        int64_t v = load_int(t->data, t->dtype, i);
        if (v < INT32_MIN || v > INT32_MAX)
            return aimc_fail_path(err, errlen, "safetensors",
                                  "tensor '%s' element %lld = %lld does not fit in int32", t->name,
                                  (long long)i, (long long)v);
        out[i] = (int32_t)v;
    }
    return 0;
}

/* ---- writer ------------------------------------------------------------- */

typedef struct st_wentry {
    char *name;
    st_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    void *data;
    size_t nbytes;
    size_t offset; /* assigned by st_writer_save */
} st_wentry;

typedef struct st_kv {
    char *key, *value;
} st_kv;

struct st_writer {
    st_wentry *e;
    int n;
    int64_t cap;
    st_kv *meta;
    int nmeta;
    int64_t metacap;
};

st_writer *st_writer_new(void) {
    st_writer *w = aimc_xcalloc(1, sizeof *w);
    return w;
}

void st_writer_add(st_writer *w, const char *name, st_dtype dtype, int ndim, const int64_t *shape,
                   const void *data) {
    AIMC_CHECK(name && strcmp(name, "__metadata__"), "st_writer_add: invalid tensor name");
    AIMC_CHECK((unsigned)dtype < ST_DTYPE_COUNT, "st_writer_add: '%s' has dtype %d", name,
               (int)dtype);
    AIMC_CHECK(ndim >= 0 && ndim <= ST_MAX_DIMS, "st_writer_add: '%s' has %d dims", name, ndim);
    for (int i = 0; i < w->n; i++)
        AIMC_CHECK(strcmp(w->e[i].name, name), "st_writer_add: tensor '%s' added twice", name);
    w->e = aimc_grow(w->e, &w->cap, w->n + 1, sizeof *w->e, 16);
    st_wentry *e = &w->e[w->n++];
    memset(e, 0, sizeof *e);
    e->name = aimc_strdup(name);
    e->dtype = dtype;
    e->ndim = ndim;
    for (int i = 0; i < ndim; i++) {
        AIMC_CHECK(shape[i] >= 0, "st_writer_add: '%s' dim %d is %lld", name, i,
                   (long long)shape[i]);
        e->shape[i] = shape[i];
    }
    int overflow;
    e->nbytes = (size_t)checked_bytes(ndim, e->shape, st_dtype_size(dtype), &overflow);
    AIMC_CHECK(!overflow, "st_writer_add: '%s' is too large", name);
    e->data = malloc(e->nbytes ? e->nbytes : 1);
    AIMC_CHECK(e->data, "out of memory copying tensor '%s' (%zu bytes)", name, e->nbytes);
    if (e->nbytes) memcpy(e->data, data, e->nbytes);
}

void st_writer_metadata(st_writer *w, const char *key, const char *value) {
    for (int i = 0; i < w->nmeta; i++)
        if (!strcmp(w->meta[i].key, key)) {
            free(w->meta[i].value);
            w->meta[i].value = aimc_strdup(value);
            return;
        }
    w->meta = aimc_grow(w->meta, &w->metacap, w->nmeta + 1, sizeof *w->meta, 16);
    st_kv *kv = &w->meta[w->nmeta++];
    kv->key = aimc_strdup(key);
    kv->value = aimc_strdup(value);
}

void st_writer_free(st_writer *w) {
    if (!w) return;
    for (int i = 0; i < w->n; i++) {
        free(w->e[i].name);
        free(w->e[i].data);
    }
    for (int i = 0; i < w->nmeta; i++) {
        free(w->meta[i].key);
        free(w->meta[i].value);
    }
    free(w->e);
    free(w->meta);
    free(w);
}

/* A growing text buffer for the header. */
typedef struct strbuf {
    char *p;
    size_t n, cap;
} strbuf;

static void sb_put(strbuf *b, const char *s, size_t len) {
    if (b->n + len + 1 > b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 1024;
        while (nc < b->n + len + 1) nc *= 2;
        b->p = realloc(b->p, nc);
        AIMC_CHECK(b->p, "out of memory building a %zu-byte header", nc);
        b->cap = nc;
    }
    memcpy(b->p + b->n, s, len);
    b->n += len;
    b->p[b->n] = '\0';
}

static void sb_printf(strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(strbuf *b, const char *fmt, ...) {
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    AIMC_CHECK(len >= 0 && (size_t)len < sizeof tmp, "sb_printf: %d bytes", len);
    sb_put(b, tmp, (size_t)len);
}

/* A JSON string literal: quotes, backslashes and control bytes escaped;
 * other bytes (UTF-8) pass through. */
static void sb_json_string(strbuf *b, const char *s) {
    sb_put(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            sb_put(b, esc, 2);
        } else if (c < 0x20) {
            sb_printf(b, "\\u%04x", c);
        } else {
            sb_put(b, (const char *)&c, 1);
        }
    }
    sb_put(b, "\"", 1);
}

/* Data layout order: larger elements first, then by name. */
static int cmp_layout(const void *a, const void *b) {
    const st_wentry *x = *(const st_wentry *const *)a, *y = *(const st_wentry *const *)b;
    size_t sx = st_dtype_size(x->dtype), sy = st_dtype_size(y->dtype);
    if (sx != sy) return sx > sy ? -1 : 1;
    return strcmp(x->name, y->name);
}
static int cmp_entry_name(const void *a, const void *b) {
    return strcmp((*(const st_wentry *const *)a)->name, (*(const st_wentry *const *)b)->name);
}

/* The entries as pointers, sorted by cmp. */
static st_wentry **sorted_entries(const st_writer *w, int (*cmp)(const void *, const void *)) {
    st_wentry **v = aimc_xmalloc(sizeof *v * (size_t)(w->n ? w->n : 1));
    for (int i = 0; i < w->n; i++) v[i] = &w->e[i];
    qsort(v, (size_t)w->n, sizeof *v, cmp);
    return v;
}

/* Assigns data offsets in layout order and returns that order. */
static st_wentry **assign_offsets(st_writer *w) {
    st_wentry **order = sorted_entries(w, cmp_layout);
    size_t off = 0;
    for (int i = 0; i < w->n; i++) {
        order[i]->offset = off;
        off += order[i]->nbytes;
    }
    return order;
}

static void header_entry(strbuf *b, const st_wentry *e) {
    sb_json_string(b, e->name);
    sb_printf(b, ":{\"dtype\":\"%s\",\"shape\":[", st_dtype_name(e->dtype));
    for (int d = 0; d < e->ndim; d++) sb_printf(b, d ? ",%lld" : "%lld", (long long)e->shape[d]);
    sb_printf(b, "],\"data_offsets\":[%zu,%zu]}", e->offset, e->offset + e->nbytes);
}

/* The header JSON with the metadata first and tensors in name order, padded
 * with spaces so that 8 + its length is a multiple of 8. */
static strbuf build_header(const st_writer *w) {
    strbuf b = {0};
    sb_put(&b, "{", 1);
    if (w->nmeta) {
        sb_put(&b, "\"__metadata__\":{", 16);
        for (int i = 0; i < w->nmeta; i++) {
            if (i) sb_put(&b, ",", 1);
            sb_json_string(&b, w->meta[i].key);
            sb_put(&b, ":", 1);
            sb_json_string(&b, w->meta[i].value);
        }
        sb_put(&b, "}", 1);
    }
    st_wentry **by_name = sorted_entries(w, cmp_entry_name);
    for (int i = 0; i < w->n; i++) {
        if (i || w->nmeta) sb_put(&b, ",", 1);
        header_entry(&b, by_name[i]);
    }
    free(by_name);
    sb_put(&b, "}", 1);
    while (b.n % 8) sb_put(&b, " ", 1);
    return b;
}

/* write(2) until done; 0, or -1 with errno set (ENOSPC for a 0-byte write). */
static int write_all(int fd, const void *buf, size_t n) {
    const char *p = buf;
    while (n) {
        ssize_t k = write(fd, p, n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            if (k == 0) errno = ENOSPC;
            return -1;
        }
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

static int write_contents(int fd, const st_writer *w, const strbuf *hdr, st_wentry *const *order) {
    uint64_t len = hdr->n;
    if (write_all(fd, &len, 8) || write_all(fd, hdr->p, hdr->n)) return -1;
    for (int i = 0; i < w->n; i++) {
        const st_wentry *e = order[i];
        if (e->nbytes && write_all(fd, e->data, e->nbytes)) return -1;
    }
    return fsync(fd);
}

/* Makes the rename durable; best effort (some filesystems refuse fsync on a
 * directory, and the file is already complete under its final name). */
static void sync_parent_dir(const char *path) {
    char *dir = strdup(path);
    if (!dir) return;
    char *slash = strrchr(dir, '/');
    const char *d = slash ? (slash == dir ? "/" : (*slash = '\0', dir)) : ".";
    int fd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(dir);
}

int st_writer_save(st_writer *w, const char *path, char *err, size_t errlen) {
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return aimc_fail_path(err, errlen, path, "path too long");
    st_wentry **order = assign_offsets(w);
    strbuf hdr = build_header(w);
    int rc = 0;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc = aimc_fail_path(err, errlen, path, "cannot create %s: %s", tmp, strerror(errno));
    } else {
        int bad = write_contents(fd, w, &hdr, order);
        int e = errno;
        if (close(fd) && !bad) {
            bad = 1;
            e = errno;
        }
        if (bad)
            rc = aimc_fail_path(err, errlen, path, "writing %s failed: %s", tmp, strerror(e));
        else if (rename(tmp, path))
            rc = aimc_fail_path(err, errlen, path, "renaming %s into place failed: %s", tmp,
                                strerror(errno));
        if (rc)
            unlink(tmp);
        else
            sync_parent_dir(path);
    }
    free(hdr.p);
    free(order);
    return rc;
}
