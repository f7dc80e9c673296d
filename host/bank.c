/* The demonstration bank file (bank.h, docs/bank.md). */
#include "bank.h"
#include "../kernels/check.h"
#include "checkpoint.h"
#include "mllm.h"
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "aimc's bank rows are little-endian f32: a big-endian host is not supported"
#endif

/* Header field offsets (docs/bank.md). */
enum {
    H_MAGIC = 0, H_VERSION = 8, H_HEADER_SIZE = 12, H_FILE_SIZE = 16, H_BACKBONE_HASH = 24,
    H_LAYER = 32, H_D_MODEL = 40, H_COUNT = 48, H_TOTAL_ROWS = 56, H_ROWS_OFFSET = 64,
    H_TEXT_OFFSET = 72, H_TEXT_LEN = 80, H_INDEX_OFFSET = 88, H_POOL_LEN = 96, H_META_CRC = 104
};
#define BANK_MAX_D_MODEL ((int64_t)1 << 20)
#define BANK_MAX_LAYER ((int64_t)1 << 20)

static void put_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put_u64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get_u32(const uint8_t *p) {
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}
static uint64_t get_u64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static uint64_t align8(uint64_t x) { return (x + 7) & ~(uint64_t)7; }

/* ---- the backbone description ----------------------------------------------------- */

static uint64_t fnv1a(uint64_t h, const void *data, size_t n) {
    const uint8_t *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

/* Adds `rows` rows spread evenly over t ([R, C] float, any backend) to h,
 * each element as its bf16 rounding. */
static uint64_t hash_rows(uint64_t h, const tensor *t, int64_t rows) {
    if (!t->data) return h;
    int64_t r_all = tensor_rows_count(t), cols = tensor_cols(t);
    size_t es = dtype_size(t->dt);
    uint8_t *host = malloc((size_t)cols * es);
    AIMC_CHECK(host, "bank: out of host memory");
    for (int64_t i = 0; i < rows; i++) {
        int64_t r = rows > 1 ? i * (r_all - 1) / (rows - 1) : 0;
        t->be->download(host, (const char *)t->data + (size_t)r * (size_t)cols * es, (size_t)cols * es);
        for (int64_t j = 0; j < cols; j++) {
            uint16_t b = f32_to_bf16(load_as_f32(host, t->dt, j));
            h = fnv1a(h, &b, sizeof b);
        }
    }
    free(host);
    return h;
}

const char *bank_backbone_text(const mllm *m, char *buf, size_t n) {
    const decoder *lm = mllm_decoder(m);
    uint64_t h = 0xcbf29ce484222325ull;
    h = hash_rows(h, &lm->embed, 64);
    h = hash_rows(h, &lm->final_norm.w, 1);
    h = hash_rows(h, m->arch == MLLM_LLAVA ? &m->proj2.w : &m->lang_proj.w, 64);
    int len = snprintf(buf, n, "arch=%s lm=%s d_model=%lld layers=%lld vocab=%lld image_tokens=%lld weights=%016llx",
                       m->arch == MLLM_LLAVA ? "llava" : "blip2", lm->cfg.arch == DEC_LLAMA ? "llama" : "opt",
                       (long long)mllm_d_model(m), (long long)lm->cfg.layers, (long long)lm->cfg.vocab,
                       (long long)mllm_tokens_per_image(m), (unsigned long long)h);
    AIMC_CHECK(len > 0 && (size_t)len < n, "bank_backbone_text: buffer of %zu bytes too small", n);
    return buf;
}

/* ---- writing ------------------------------------------------------------------------ */

typedef struct pending_entry {
    int64_t row, n_rows;
    char *id, *image, *text;
} pending_entry;

struct bank_writer {
    char *path, *tmp;
    FILE *f;
    char *backbone_text;
    int64_t layer, d_model, total_rows;
    pending_entry *entries;
    int64_t count, cap;
};

/* A copy of s, or of "" when s is NULL. */
static char *dup_str(const char *s) { return aimc_strdup(s ? s : ""); }

static int io_fail(const char *path, const char *what, char *err, size_t errlen) {
    return aimc_set_err(err, errlen, "%s: %s: %s", path, what, strerror(errno));
}

bank_writer *bank_writer_open(const char *path, const char *backbone_text, int64_t layer,
                              int64_t d_model, char *err, size_t errlen) {
    if (d_model < 1 || d_model > BANK_MAX_D_MODEL || layer < 0 || layer > BANK_MAX_LAYER) {
        aimc_set_err(err, errlen, "%s: bad bank shape (d_model %lld, layer %lld)", path, (long long)d_model,
                     (long long)layer);
        return NULL;
    }
    bank_writer *w = calloc(1, sizeof *w);
    AIMC_CHECK(w, "bank: out of host memory");
    w->path = dup_str(path);
    size_t n = strlen(path) + 32;
    w->tmp = malloc(n);
    AIMC_CHECK(w->tmp, "bank: out of host memory");
    snprintf(w->tmp, n, "%s.tmp.%ld", path, (long)getpid());
    w->backbone_text = dup_str(backbone_text);
    w->layer = layer, w->d_model = d_model;
    int fd = open(w->tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    w->f = fd >= 0 ? fdopen(fd, "wb") : NULL;
    uint8_t zero[BANK_HEADER_SIZE] = {0};
    if (!w->f || fwrite(zero, 1, sizeof zero, w->f) != sizeof zero) {
        io_fail(w->tmp, "cannot write", err, errlen);
        if (!w->f && fd >= 0) close(fd);
        bank_writer_abort(w);
        return NULL;
    }
    return w;
}

/* An id usable in --demo-ids lists: 1..BANK_ID_MAX bytes, no ',', no control characters. */
static int check_id(const char *id, char *err, size_t errlen) {
    size_t n = id ? strlen(id) : 0;
    if (n < 1 || n > BANK_ID_MAX)
        return aimc_set_err(err, errlen, "demonstration id '%s' must have 1 to %d bytes", id ? id : "",
                            BANK_ID_MAX);
    for (size_t i = 0; i < n; i++)
        if (id[i] == ',' || (unsigned char)id[i] < 0x20 || id[i] == 0x7f)
            return aimc_set_err(err, errlen, "demonstration id '%s' contains a comma or a control character",
                                id);
    return 0;
}

int bank_writer_add(bank_writer *w, const char *id, const char *image, const char *text,
                    const float *rows, int64_t n_rows, char *err, size_t errlen) {
    if (check_id(id, err, errlen)) return -1;
    if (n_rows < 1) return aimc_set_err(err, errlen, "demonstration '%s' has no rows (no text tokens)", id);
    for (int64_t i = 0; i < w->count; i++)
        if (!strcmp(w->entries[i].id, id)) return aimc_set_err(err, errlen,
                                                               "demonstration id '%s' appears twice", id);
    size_t n = (size_t)(n_rows * w->d_model);
    if (fwrite(rows, sizeof *rows, n, w->f) != n) return io_fail(w->tmp, "cannot write", err, errlen);
    if (w->count == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 64;
        w->entries = realloc(w->entries, (size_t)w->cap * sizeof *w->entries);
        AIMC_CHECK(w->entries, "bank: out of host memory");
    }
    w->entries[w->count++] = (pending_entry){.row = w->total_rows, .n_rows = n_rows, .id = dup_str(id),
                                             .image = dup_str(image), .text = dup_str(text)};
    w->total_rows += n_rows;
    return 0;
}

/* The index entries and the string pool, as they go into the file. */
static void build_index(const bank_writer *w, uint8_t **index, uint8_t **pool, uint64_t *pool_len) {
    uint64_t len = 0;
    for (int64_t i = 0; i < w->count; i++)
        len += strlen(w->entries[i].id) + strlen(w->entries[i].image) + strlen(w->entries[i].text);
    *index = calloc((size_t)w->count + 1, BANK_ENTRY_SIZE);
    *pool = malloc(len + 1);
    AIMC_CHECK(*index && *pool, "bank: out of host memory");
    uint64_t at = 0;
    for (int64_t i = 0; i < w->count; i++) {
        const pending_entry *e = &w->entries[i];
        uint8_t *p = *index + i * BANK_ENTRY_SIZE;
        const char *s[3] = {e->id, e->image, e->text};
        put_u64(p, (uint64_t)e->row);
        put_u64(p + 8, (uint64_t)e->n_rows);
        for (int k = 0; k < 3; k++) {
            size_t n = strlen(s[k]);
            put_u64(p + 16 + 16 * k, at);
            put_u64(p + 24 + 16 * k, n);
            memcpy(*pool + at, s[k], n);
            at += n;
        }
    }
    *pool_len = len;
}

static void fill_header(const bank_writer *w, uint8_t *h, uint64_t text_offset, uint64_t index_offset,
                        uint64_t pool_len) {
    memset(h, 0, BANK_HEADER_SIZE);
    memcpy(h + H_MAGIC, BANK_MAGIC, 8);
    put_u32(h + H_VERSION, BANK_VERSION);
    put_u32(h + H_HEADER_SIZE, BANK_HEADER_SIZE);
    put_u64(h + H_FILE_SIZE, index_offset + (uint64_t)w->count * BANK_ENTRY_SIZE + pool_len);
    put_u64(h + H_BACKBONE_HASH, ckpt_hash_text(w->backbone_text));
    put_u64(h + H_LAYER, (uint64_t)w->layer);
    put_u64(h + H_D_MODEL, (uint64_t)w->d_model);
    put_u64(h + H_COUNT, (uint64_t)w->count);
    put_u64(h + H_TOTAL_ROWS, (uint64_t)w->total_rows);
    put_u64(h + H_ROWS_OFFSET, BANK_HEADER_SIZE);
    put_u64(h + H_TEXT_OFFSET, text_offset);
    put_u64(h + H_TEXT_LEN, strlen(w->backbone_text));
    put_u64(h + H_INDEX_OFFSET, index_offset);
    put_u64(h + H_POOL_LEN, pool_len);
}

/* CRC-32 of the header's first H_META_CRC bytes, the text, the index and the pool. */
static uint32_t meta_crc(const uint8_t *h, const void *text, size_t text_len, const void *index,
                         size_t index_len, const void *pool, size_t pool_len) {
    uLong c = crc32_z(0, NULL, 0);
    c = crc32_z(c, h, H_META_CRC);
    c = crc32_z(c, text, text_len);
    c = crc32_z(c, index, index_len);
    c = crc32_z(c, pool, pool_len);
    return (uint32_t)c;
}

static int write_pad(FILE *f, uint64_t from, uint64_t to) {
    static const uint8_t zero[8] = {0};
    return to > from && fwrite(zero, 1, (size_t)(to - from), f) != (size_t)(to - from);
}

/* Everything after the rows, then the header. */
static int write_tail(bank_writer *w) {
    uint64_t rows_end = BANK_HEADER_SIZE + (uint64_t)w->total_rows * (uint64_t)w->d_model * 4;
    uint64_t text_offset = align8(rows_end), text_len = strlen(w->backbone_text);
    uint64_t index_offset = align8(text_offset + text_len), pool_len;
    uint8_t *index, *pool, h[BANK_HEADER_SIZE];
    build_index(w, &index, &pool, &pool_len);
    size_t index_len = (size_t)w->count * BANK_ENTRY_SIZE;
    fill_header(w, h, text_offset, index_offset, pool_len);
    put_u32(h + H_META_CRC, meta_crc(h, w->backbone_text, text_len, index, index_len, pool, pool_len));
    int bad = write_pad(w->f, rows_end, text_offset) ||
              fwrite(w->backbone_text, 1, text_len, w->f) != text_len ||
              write_pad(w->f, text_offset + text_len, index_offset) ||
              fwrite(index, 1, index_len, w->f) != index_len ||
              fwrite(pool, 1, (size_t)pool_len, w->f) != pool_len || fseek(w->f, 0, SEEK_SET) ||
              fwrite(h, 1, sizeof h, w->f) != sizeof h || fflush(w->f) || fsync(fileno(w->f));
    free(index);
    free(pool);
    return bad ? -1 : 0;
}

static void sync_dir(const char *path) {
    char *copy = dup_str(path);
    int fd = open(dirname(copy), O_RDONLY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(copy);
}

static void writer_free(bank_writer *w) {
    for (int64_t i = 0; i < w->count; i++) {
        free(w->entries[i].id);
        free(w->entries[i].image);
        free(w->entries[i].text);
    }
    free(w->entries);
    free(w->path);
    free(w->tmp);
    free(w->backbone_text);
    free(w);
}

int bank_writer_finish(bank_writer *w, char *err, size_t errlen) {
    int rc = write_tail(w) ? io_fail(w->tmp, "cannot write", err, errlen) : 0;
    if (fclose(w->f) && !rc) rc = io_fail(w->tmp, "cannot close", err, errlen);
    w->f = NULL;
    if (!rc && rename(w->tmp, w->path)) rc = io_fail(w->path, "cannot rename the finished bank into place", err, errlen);
    if (rc) unlink(w->tmp);
    else sync_dir(w->path);
    writer_free(w);
    return rc;
}

void bank_writer_abort(bank_writer *w) {
    if (!w) return;
    if (w->f) fclose(w->f);
    unlink(w->tmp);
    writer_free(w);
}

/* ---- reading ------------------------------------------------------------------------ */

void bank_close(bank *b) {
    if (!b) return;
    if (b->map) munmap(b->map, b->map_size);
    free(b->path);
    free(b->backbone_text);
    free(b->entries);
    free(b->pool);
    free(b);
}

static int map_file(bank *b, char *err, size_t errlen) {
    int fd = open(b->path, O_RDONLY);
    if (fd < 0) return io_fail(b->path, "cannot open", err, errlen);
    struct stat st;
    if (fstat(fd, &st)) {
        close(fd);
        return io_fail(b->path, "cannot stat", err, errlen);
    }
    b->map_size = (size_t)st.st_size;
    if (b->map_size < BANK_HEADER_SIZE) {
        close(fd);
        return aimc_set_err(err, errlen,
                            "%s: not a demonstration bank (%zu bytes, shorter than the %u-byte header)",
                            b->path, b->map_size, BANK_HEADER_SIZE);
    }
    void *p = mmap(NULL, b->map_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED) return io_fail(b->path, "cannot map", err, errlen);
    b->map = p;
    return 0;
}

/* Section geometry from the header, checked against the file length. */
typedef struct bank_geom {
    uint64_t file_size, rows_len, text_offset, text_len, index_offset, index_len, pool_offset, pool_len;
} bank_geom;

static int read_header(bank *b, bank_geom *g, char *err, size_t errlen) {
    const uint8_t *h = b->map;
    if (memcmp(h + H_MAGIC, BANK_MAGIC, 8))
        return aimc_set_err(err, errlen, "%s: not a demonstration bank (no %s magic)", b->path, BANK_MAGIC);
    b->version = get_u32(h + H_VERSION);
    if (b->version != BANK_VERSION || get_u32(h + H_HEADER_SIZE) != BANK_HEADER_SIZE)
        return aimc_set_err(err, errlen, "%s: bank version %u (header %u bytes); this aimc reads version %u",
                            b->path,
                            b->version, get_u32(h + H_HEADER_SIZE), BANK_VERSION);
    g->file_size = get_u64(h + H_FILE_SIZE);
    if (g->file_size != b->map_size)
        return aimc_set_err(err, errlen,
                            "%s: truncated or damaged bank: the header says %llu bytes, the file has %zu",
                            b->path, (unsigned long long)g->file_size, b->map_size);
    b->backbone_hash = get_u64(h + H_BACKBONE_HASH);
    b->layer = (int64_t)get_u64(h + H_LAYER);
    b->d_model = (int64_t)get_u64(h + H_D_MODEL);
    b->count = (int64_t)get_u64(h + H_COUNT);
    b->total_rows = (int64_t)get_u64(h + H_TOTAL_ROWS);
    g->text_offset = get_u64(h + H_TEXT_OFFSET);
    g->text_len = get_u64(h + H_TEXT_LEN);
    g->index_offset = get_u64(h + H_INDEX_OFFSET);
    g->pool_len = get_u64(h + H_POOL_LEN);
    return 0;
}

/* Every size and offset, in an order that never overflows. */
static int check_geometry(const bank *b, bank_geom *g, char *err, size_t errlen) {
    const uint8_t *h = b->map;
    uint64_t size = g->file_size, body = size - BANK_HEADER_SIZE;
    if (b->d_model < 1 || b->d_model > BANK_MAX_D_MODEL || b->layer < 0 || b->layer > BANK_MAX_LAYER ||
        b->count < 0 || b->total_rows < 0 || get_u64(h + H_ROWS_OFFSET) != BANK_HEADER_SIZE)
        return aimc_set_err(err, errlen,
                            "%s: corrupt bank header (d_model %lld, layer %lld, count %lld, rows %lld)",
                            b->path, (long long)b->d_model, (long long)b->layer, (long long)b->count,
                            (long long)b->total_rows);
    if ((uint64_t)b->total_rows > body / 4 / (uint64_t)b->d_model || (uint64_t)b->count > body / BANK_ENTRY_SIZE)
        return aimc_set_err(err, errlen,
                            "%s: truncated bank: %lld rows of %lld floats and %lld entries do not fit in %llu bytes",
                            b->path, (long long)b->total_rows, (long long)b->d_model, (long long)b->count,
                            (unsigned long long)size);
    g->rows_len = (uint64_t)b->total_rows * (uint64_t)b->d_model * 4;
    g->index_len = (uint64_t)b->count * BANK_ENTRY_SIZE;
    int ok = g->text_offset == align8(BANK_HEADER_SIZE + g->rows_len) && g->text_len <= size &&
             g->text_offset <= size - g->text_len && g->index_offset == align8(g->text_offset + g->text_len) &&
             g->index_offset <= size && g->index_len <= size - g->index_offset &&
             g->pool_len == size - g->index_offset - g->index_len;
    if (!ok)
        return aimc_set_err(err, errlen,
                            "%s: truncated or corrupt bank: its sections do not add up to the %llu-byte file",
                            b->path, (unsigned long long)size);
    g->pool_offset = g->index_offset + g->index_len;
    return 0;
}

static int check_crc(const bank *b, const bank_geom *g, char *err, size_t errlen) {
    const uint8_t *m = b->map;
    uint32_t want = get_u32(m + H_META_CRC);
    uint32_t got = meta_crc(m, m + g->text_offset, (size_t)g->text_len, m + g->index_offset, (size_t)g->index_len,
                            m + g->pool_offset, (size_t)g->pool_len);
    if (want != got)
        return aimc_set_err(err, errlen, "%s: corrupt bank: header/index checksum %08x, expected %08x",
                            b->path, got, want);
    return 0;
}

/* Bytes of b->pool: the pool plus a NUL for each of an entry's 3 strings. */
static uint64_t pool_capacity(const bank *b, const bank_geom *g) {
    return g->pool_len + 3 * (uint64_t)b->count + 1;
}

/* A string of the pool as a NUL-terminated copy in b->pool at *at. */
static int pool_string(bank *b, const bank_geom *g, const uint8_t *p, uint64_t *at, const char **out,
                       char *err, size_t errlen) {
    uint64_t off = get_u64(p), len = get_u64(p + 8);
    const char *src = (const char *)b->map + g->pool_offset;
    if (off > g->pool_len || len > g->pool_len - off || memchr(src + off, 0, (size_t)len))
        return aimc_set_err(err, errlen,
                            "%s: corrupt bank index: a string at %llu (+%llu) is outside the pool or holds NUL",
                            b->path, (unsigned long long)off, (unsigned long long)len);
    /* Entries may point at overlapping pool bytes: bound the copies by the
     * copy buffer read_index allocated, not by the pool. */
    if (*at + len + 1 > pool_capacity(b, g))
        return aimc_set_err(err, errlen, "%s: corrupt bank index: the strings are longer than the pool",
                            b->path);
    memcpy(b->pool + *at, src + off, (size_t)len);
    b->pool[*at + len] = 0;
    *out = b->pool + *at;
    *at += len + 1;
    return 0;
}

static int cmp_entry_id(const void *x, const void *y) {
    return strcmp((*(const bank_entry *const *)x)->id, (*(const bank_entry *const *)y)->id);
}

static int check_unique_ids(const bank *b, char *err, size_t errlen) {
    if (b->count < 2) return 0;
    const bank_entry **sorted = malloc((size_t)b->count * sizeof *sorted);
    AIMC_CHECK(sorted, "bank: out of host memory");
    for (int64_t i = 0; i < b->count; i++) sorted[i] = &b->entries[i];
    qsort(sorted, (size_t)b->count, sizeof *sorted, cmp_entry_id);
    int rc = 0;
    for (int64_t i = 1; i < b->count && !rc; i++)
        if (!strcmp(sorted[i]->id, sorted[i - 1]->id))
            rc = aimc_set_err(err, errlen, "%s: corrupt bank index: id '%s' appears twice", b->path,
                              sorted[i]->id);
    free(sorted);
    return rc;
}

static int read_index(bank *b, const bank_geom *g, char *err, size_t errlen) {
    b->entries = calloc((size_t)b->count + 1, sizeof *b->entries);
    b->pool = malloc((size_t)pool_capacity(b, g));
    AIMC_CHECK(b->entries && b->pool, "bank: out of host memory");
    uint64_t at = 0;
    int64_t next_row = 0;
    for (int64_t i = 0; i < b->count; i++) {
        const uint8_t *p = (const uint8_t *)b->map + g->index_offset + i * BANK_ENTRY_SIZE;
        bank_entry *e = &b->entries[i];
        e->row = (int64_t)get_u64(p);
        e->n_rows = (int64_t)get_u64(p + 8);
        if (e->row != next_row || e->n_rows < 1 || e->n_rows > b->total_rows - next_row)
            return aimc_set_err(err, errlen,
                                "%s: corrupt bank index: entry %lld has rows [%lld, +%lld), expected to start at %lld within %lld rows",
                                b->path, (long long)i, (long long)e->row, (long long)e->n_rows,
                                (long long)next_row,
                                (long long)b->total_rows);
        next_row += e->n_rows;
        if (pool_string(b, g, p + 16, &at, &e->id, err, errlen) || pool_string(b, g, p + 32, &at, &e->image, err, errlen) ||
            pool_string(b, g, p + 48, &at, &e->text, err, errlen))
            return -1;
        char why[512];
        if (check_id(e->id, why, sizeof why)) return aimc_set_err(err, errlen, "%s: corrupt bank index: %s",
                                                                  b->path, why);
    }
    if (next_row != b->total_rows)
        return aimc_set_err(err, errlen, "%s: corrupt bank index: entries cover %lld of %lld rows", b->path,
                            (long long)next_row, (long long)b->total_rows);
    return check_unique_ids(b, err, errlen);
}

static int read_text(bank *b, const bank_geom *g, char *err, size_t errlen) {
    const char *src = (const char *)b->map + g->text_offset;
    if (memchr(src, 0, (size_t)g->text_len))
        return aimc_set_err(err, errlen, "%s: corrupt bank: the backbone text holds a NUL byte", b->path);
    b->backbone_text = malloc((size_t)g->text_len + 1);
    AIMC_CHECK(b->backbone_text, "bank: out of host memory");
    memcpy(b->backbone_text, src, (size_t)g->text_len);
    b->backbone_text[g->text_len] = 0;
    if (ckpt_hash_text(b->backbone_text) != b->backbone_hash)
        return aimc_set_err(err, errlen, "%s: corrupt bank: the backbone text does not match its hash",
                            b->path);
    return 0;
}

bank *bank_open(const char *path, char *err, size_t errlen) {
    bank *b = calloc(1, sizeof *b);
    AIMC_CHECK(b, "bank: out of host memory");
    b->path = dup_str(path);
    bank_geom g = {0};
    if (map_file(b, err, errlen) || read_header(b, &g, err, errlen) || check_geometry(b, &g, err, errlen) ||
        check_crc(b, &g, err, errlen) || read_text(b, &g, err, errlen) || read_index(b, &g, err, errlen)) {
        bank_close(b);
        return NULL;
    }
    b->rows = (const float *)((const char *)b->map + BANK_HEADER_SIZE);
    return b;
}

const bank_entry *bank_find(const bank *b, const char *id) {
    for (int64_t i = 0; i < b->count; i++)
        if (!strcmp(b->entries[i].id, id)) return &b->entries[i];
    return NULL;
}

const float *bank_entry_rows(const bank *b, const bank_entry *e) {
    return b->rows + e->row * b->d_model;
}

int bank_check_model(const bank *b, const char *backbone_text, int64_t layer, char *err, size_t errlen) {
    if (ckpt_hash_text(backbone_text) != b->backbone_hash)
        return aimc_set_err(err, errlen,
                            "%s: this bank was built from another backbone (bank: %s; model: %s)", b->path,
                            b->backbone_text, backbone_text);
    if (layer != b->layer)
        return aimc_set_err(err, errlen,
                            "%s: this bank holds hidden states of layer %lld, but layer %lld is in use "
                            "(rebuild the bank with --layer %lld)", b->path, (long long)b->layer,
                            (long long)layer,
                            (long long)layer);
    return 0;
}
