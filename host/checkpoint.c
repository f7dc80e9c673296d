/* Flat binary checkpoints: writer, validating reader, the checkpoint
 * directory (latest pointer, keep-last-N) and the projector's state.
 * Format: checkpoint.h and docs/checkpoint.md. */
#include "checkpoint.h"
#include "../kernels/check.h"
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "checkpoint.c stores tensors in host byte order: a little-endian host is required"
#endif

#define CKPT_TRAILER_SIZE 8u
#define CKPT_END_MAGIC "AEND"
#define CKPT_DTYPE_MIXED 0xffffffffu

/* Header field offsets (docs/checkpoint.md). */
enum {
    H_MAGIC = 0, H_VERSION = 8, H_HEADER_SIZE = 12, H_FILE_SIZE = 16, H_STEP = 24,
    H_BACKBONE_HASH = 32, H_PROJECTOR_HASH = 40, H_N_TENSORS = 48, H_DTYPE = 52, H_KIND = 56,
    H_RESERVED0 = 60, H_BACKBONE_LEN = 64, H_PROJECTOR_LEN = 72, H_CONFIG_LEN = 80,
    H_EXTRA_LEN = 88, H_TABLE_OFFSET = 96, H_DATA_OFFSET = 104, H_DATA_LEN = 112,
    H_RESERVED1 = 120
};
/* Table entry field offsets. */
enum {
    E_NAME = 0, E_DTYPE = 64, E_NDIM = 68, E_SHAPE = 72, E_OFFSET = 104, E_NBYTES = 112,
    E_ROLE = 120, E_RESERVED = 124
};

uint64_t ckpt_hash_text(const char *text) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (const unsigned char *s = (const unsigned char *)text; *s; s++) {
        h ^= *s;
        h *= 0x100000001b3ull;
    }
    return h;
}

/* ---- little-endian fields ---------------------------------------------------- */

static void put_u32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static void put_u64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static uint32_t get_u32(const unsigned char *p) {
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--) v = v << 8 | p[i];
    return v;
}
static uint64_t get_u64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

/* ---- layout ---------------------------------------------------------------------- */

/* Where each section starts, from the section lengths; shared by writer and
 * reader so that both agree byte for byte. */
typedef struct ckpt_layout {
    uint64_t len[4]; /* backbone text, projector text, config text, extra */
    uint64_t off[4];
    uint64_t n_tensors, table_off, data_off, data_len, file_size;
} ckpt_layout;

/* x rounded up to a multiple of a (a power of two); 0 on overflow of *ok. */
static uint64_t align_up(uint64_t x, uint64_t a, int *ok) {
    uint64_t r;
    if (__builtin_add_overflow(x, a - 1, &r)) *ok = 0;
    return r & ~(a - 1);
}
static uint64_t add(uint64_t a, uint64_t b, int *ok) {
    uint64_t r;
    if (__builtin_add_overflow(a, b, &r)) *ok = 0;
    return r;
}

/* Fills the offsets from l->len, n_tensors and data_len; 0, or -1 when a
 * size overflows 64 bits (only possible for a crafted header). */
static int layout_compute(ckpt_layout *l) {
    int ok = 1;
    uint64_t at = CKPT_HEADER_SIZE;
    for (int i = 0; i < 4; i++) {
        l->off[i] = at;
        at = align_up(add(at, l->len[i], &ok), 8, &ok);
    }
    l->table_off = at;
    uint64_t table_len = 0;
    if (__builtin_mul_overflow(l->n_tensors, (uint64_t)CKPT_ENTRY_SIZE, &table_len)) ok = 0;
    l->data_off = align_up(add(at, table_len, &ok), CKPT_DATA_ALIGN, &ok);
    l->file_size = add(add(l->data_off, l->data_len, &ok), CKPT_TRAILER_SIZE, &ok);
    return ok && l->file_size <= (uint64_t)INT64_MAX ? 0 : -1;
}

/* ---- writer ---------------------------------------------------------------------- */

/* A FILE that keeps the running CRC and the first error. */
typedef struct ckpt_sink {
    FILE *f;
    uLong crc;
    int errnum; /* 0 while every write succeeded */
} ckpt_sink;

static void sink_put(ckpt_sink *s, const void *p, size_t n) {
    if (s->errnum || !n) return;
    errno = 0;
    if (fwrite(p, 1, n, s->f) != n) s->errnum = errno ? errno : EIO;
    s->crc = crc32_z(s->crc, p, n);
}

static void sink_zeros(ckpt_sink *s, uint64_t n) {
    static const unsigned char zeros[CKPT_DATA_ALIGN];
    while (n) {
        size_t k = n < sizeof zeros ? (size_t)n : sizeof zeros;
        sink_put(s, zeros, k);
        n -= k;
    }
}

static size_t tensor_nbytes(const ckpt_tensor *t) {
    size_t n = dtype_size(t->dt);
    for (int d = 0; d < t->ndim; d++) n *= (size_t)t->shape[d];
    return n;
}

/* The caller's contents are a program invariant: bad ones abort. */
static void check_contents(const ckpt_contents *c) {
    AIMC_CHECK(c->kind == CKPT_KIND_TRAIN || c->kind == CKPT_KIND_PARAMS, "ckpt: kind %d",
               (int)c->kind);
    AIMC_CHECK(c->backbone_text && c->projector_text && c->config_text, "ckpt: NULL text");
    AIMC_CHECK(c->extra || !c->extra_len, "ckpt: extra is NULL with length %zu", c->extra_len);
    AIMC_CHECK(c->n_tensors >= 0 && (c->tensors || !c->n_tensors), "ckpt: bad tensor list");
    for (int i = 0; i < c->n_tensors; i++) {
        const ckpt_tensor *t = &c->tensors[i];
        AIMC_CHECK(t->name && *t->name && strlen(t->name) < CKPT_NAME_MAX,
                   "ckpt: tensor %d has an empty or too long name", i);
        AIMC_CHECK((unsigned)t->dt < DT_COUNT && t->ndim >= 1 && t->ndim <= 4 &&
                       t->role <= CKPT_ROLE_OTHER,
                   "ckpt: tensor '%s' has dtype %d, ndim %d, role %u", t->name, (int)t->dt,
                   t->ndim, t->role);
        for (int d = 0; d < t->ndim; d++)
            AIMC_CHECK(t->shape[d] >= 0, "ckpt: tensor '%s' dim %d is negative", t->name, d);
        for (int j = 0; j < i; j++)
            AIMC_CHECK(strcmp(t->name, c->tensors[j].name), "ckpt: tensor '%s' twice", t->name);
    }
}

/* Tensor offsets within the data section (each 64-aligned); returns data_len. */
static uint64_t assign_offsets(const ckpt_contents *c, uint64_t *offsets) {
    uint64_t at = 0;
    for (int i = 0; i < c->n_tensors; i++) {
        at = (at + CKPT_DATA_ALIGN - 1) / CKPT_DATA_ALIGN * CKPT_DATA_ALIGN;
        offsets[i] = at;
        at += tensor_nbytes(&c->tensors[i]);
    }
    return at;
}

static uint32_t common_dtype(const ckpt_contents *c) {
    uint32_t dt = c->n_tensors ? (uint32_t)c->tensors[0].dt : (uint32_t)DT_F32;
    for (int i = 1; i < c->n_tensors; i++)
        if ((uint32_t)c->tensors[i].dt != dt) return CKPT_DTYPE_MIXED;
    return dt;
}

static void encode_header(unsigned char *h, const ckpt_contents *c, const ckpt_layout *l) {
    memset(h, 0, CKPT_HEADER_SIZE);
    memcpy(h + H_MAGIC, CKPT_MAGIC, 8);
    put_u32(h + H_VERSION, CKPT_VERSION);
    put_u32(h + H_HEADER_SIZE, CKPT_HEADER_SIZE);
    put_u64(h + H_FILE_SIZE, l->file_size);
    put_u64(h + H_STEP, c->step);
    put_u64(h + H_BACKBONE_HASH, ckpt_hash_text(c->backbone_text));
    put_u64(h + H_PROJECTOR_HASH, ckpt_hash_text(c->projector_text));
    put_u32(h + H_N_TENSORS, (uint32_t)c->n_tensors);
    put_u32(h + H_DTYPE, common_dtype(c));
    put_u32(h + H_KIND, (uint32_t)c->kind);
    put_u64(h + H_BACKBONE_LEN, l->len[0]);
    put_u64(h + H_PROJECTOR_LEN, l->len[1]);
    put_u64(h + H_CONFIG_LEN, l->len[2]);
    put_u64(h + H_EXTRA_LEN, l->len[3]);
    put_u64(h + H_TABLE_OFFSET, l->table_off);
    put_u64(h + H_DATA_OFFSET, l->data_off);
    put_u64(h + H_DATA_LEN, l->data_len);
}

static void encode_entry(unsigned char *e, const ckpt_tensor *t, uint64_t offset) {
    memset(e, 0, CKPT_ENTRY_SIZE);
    memcpy(e + E_NAME, t->name, strlen(t->name));
    put_u32(e + E_DTYPE, (uint32_t)t->dt);
    put_u32(e + E_NDIM, (uint32_t)t->ndim);
    for (int d = 0; d < t->ndim; d++) put_u64(e + E_SHAPE + 8 * d, (uint64_t)t->shape[d]);
    put_u64(e + E_OFFSET, offset);
    put_u64(e + E_NBYTES, tensor_nbytes(t));
    put_u32(e + E_ROLE, t->role);
}

/* Milliseconds from AIMC_TEST_CKPT_SLOW_WRITE (0 when unset). */
static long slow_write_ms(void) {
    const char *s = getenv("AIMC_TEST_CKPT_SLOW_WRITE");
    return s ? strtol(s, NULL, 10) : 0;
}

static void pause_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) && errno == EINTR) {
    }
}

/* Everything but the trailer: header, texts, extra, table, data. */
static void write_body(ckpt_sink *s, const ckpt_contents *c, const ckpt_layout *l,
                       const uint64_t *offsets) {
    unsigned char block[CKPT_HEADER_SIZE > CKPT_ENTRY_SIZE ? CKPT_HEADER_SIZE : CKPT_ENTRY_SIZE];
    encode_header(block, c, l);
    sink_put(s, block, CKPT_HEADER_SIZE);
    const void *sections[4] = {c->backbone_text, c->projector_text, c->config_text, c->extra};
    for (int i = 0; i < 4; i++) {
        sink_put(s, sections[i], l->len[i]);
        uint64_t end = l->off[i] + l->len[i], next = i < 3 ? l->off[i + 1] : l->table_off;
        sink_zeros(s, next - end);
    }
    for (int i = 0; i < c->n_tensors; i++) {
        encode_entry(block, &c->tensors[i], offsets[i]);
        sink_put(s, block, CKPT_ENTRY_SIZE);
    }
    sink_zeros(s, l->data_off - (l->table_off + (uint64_t)c->n_tensors * CKPT_ENTRY_SIZE));
    long slow = slow_write_ms();
    uint64_t at = 0;
    for (int i = 0; i < c->n_tensors; i++) {
        sink_zeros(s, offsets[i] - at);
        size_t n = tensor_nbytes(&c->tensors[i]);
        sink_put(s, c->tensors[i].data, n);
        at = offsets[i] + n;
        if (slow > 0 && !s->errnum) {
            if (fflush(s->f)) s->errnum = errno;
            pause_ms(slow);
        }
    }
}

static void write_trailer(ckpt_sink *s) {
    unsigned char t[CKPT_TRAILER_SIZE];
    put_u32(t, (uint32_t)s->crc);
    memcpy(t + 4, CKPT_END_MAGIC, 4);
    sink_put(s, t, sizeof t);
}

/* "DIR" of "DIR/name" ("." for a bare name, "/" for "/name"). */
static void parent_dir(const char *path, char *dir, size_t n) {
    const char *slash = strrchr(path, '/');
    if (!slash) snprintf(dir, n, ".");
    else if (slash == path) snprintf(dir, n, "/");
    else snprintf(dir, n, "%.*s", (int)(slash - path), path);
}

/* fsync of a directory, making renames in it durable. Filesystems that
 * cannot sync a directory (EINVAL) are accepted. */
static int sync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -1;
    int rc = fsync(fd) && errno != EINVAL ? -1 : 0;
    int e = errno;
    close(fd);
    errno = e;
    return rc;
}

/* "DIR/.NAME.tmp.PID" for path "DIR/NAME": same directory, so rename is atomic. */
static int temp_path(const char *path, char *tmp, size_t n) {
    const char *slash = strrchr(path, '/');
    int k = slash ? snprintf(tmp, n, "%.*s/.%s.tmp.%ld", (int)(slash - path), path, slash + 1,
                             (long)getpid())
                  : snprintf(tmp, n, ".%s.tmp.%ld", path, (long)getpid());
    return k > 0 && (size_t)k < n ? 0 : -1;
}

/* fflush + fsync + fclose, keeping the first error in s->errnum. */
static void sink_close(ckpt_sink *s) {
    if (!s->errnum && fflush(s->f)) s->errnum = errno;
    if (!s->errnum && fsync(fileno(s->f))) s->errnum = errno;
    if (fclose(s->f) && !s->errnum) s->errnum = errno;
    s->f = NULL;
}

/* Creates tmp and writes the whole checkpoint into it; 0 or an errno value. */
static int write_temp(const char *tmp, const ckpt_contents *c) {
    uint64_t *offsets = malloc(sizeof *offsets * (size_t)(c->n_tensors ? c->n_tensors : 1));
    AIMC_CHECK(offsets != NULL, "ckpt: out of memory");
    ckpt_layout l = {.len = {strlen(c->backbone_text), strlen(c->projector_text),
                             strlen(c->config_text), c->extra_len},
                     .n_tensors = (uint64_t)c->n_tensors};
    l.data_len = assign_offsets(c, offsets);
    AIMC_CHECK(layout_compute(&l) == 0, "ckpt: sizes overflow 64 bits");
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    ckpt_sink s = {.f = fd >= 0 ? fdopen(fd, "wb") : NULL, .crc = crc32_z(0, NULL, 0)};
    if (!s.f) {
        int e = errno;
        if (fd >= 0) close(fd);
        free(offsets);
        return e;
    }
    write_body(&s, c, &l, offsets);
    write_trailer(&s);
    sink_close(&s);
    free(offsets);
    return s.errnum;
}

int ckpt_write(const char *path, const ckpt_contents *c, char *err, size_t errlen) {
    char tmp[4096], dir[4096];
    check_contents(c);
    if (temp_path(path, tmp, sizeof tmp)) return aimc_fail_path(err, errlen, path, "path too long");
    int e = write_temp(tmp, c);
    if (e) {
        unlink(tmp);
        return aimc_fail_path(err, errlen, path,
                              "writing the checkpoint failed (%s); temporary %s removed",
                              strerror(e), tmp);
    }
    if (rename(tmp, path)) {
        e = errno;
        unlink(tmp);
        return aimc_fail_path(err, errlen, path, "renaming %s into place failed: %s", tmp,
                              strerror(e));
    }
    parent_dir(path, dir, sizeof dir);
    if (sync_dir(dir))
        return aimc_fail_path(err, errlen, path, "fsync of directory %s failed: %s", dir,
                              strerror(errno));
    return 0;
}

/* ---- reader ------------------------------------------------------------------------ */

static int map_file(ckpt_file *f, char *err, size_t errlen) {
    int fd = open(f->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return aimc_fail_path(err, errlen, f->path, "cannot open checkpoint: %s", strerror(errno));
    struct stat sb;
    int rc = 0;
    if (fstat(fd, &sb))
        rc = aimc_fail_path(err, errlen, f->path, "cannot stat: %s", strerror(errno));
    else if (!S_ISREG(sb.st_mode)) rc = aimc_fail_path(err, errlen, f->path, "not a regular file");
    else if ((uint64_t)sb.st_size < CKPT_HEADER_SIZE + CKPT_TRAILER_SIZE)
        rc = aimc_fail_path(
            err, errlen, f->path,
            "file is %lld bytes, shorter than a checkpoint's %u-byte header and %u-byte "
            "trailer (truncated, or not an aimc checkpoint)",
            (long long)sb.st_size, CKPT_HEADER_SIZE, CKPT_TRAILER_SIZE);
    if (!rc) {
        f->map_size = (size_t)sb.st_size;
        f->map = mmap(NULL, f->map_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (f->map == MAP_FAILED) {
            f->map = NULL;
            rc = aimc_fail_path(err, errlen, f->path, "mmap of %zu bytes failed: %s", f->map_size,
                                strerror(errno));
        }
    }
    close(fd);
    return rc;
}

/* Printable form of the first 8 bytes (for "not a checkpoint" messages). */
static const char *magic_str(const unsigned char *p, char *buf) {
    for (int i = 0; i < 8; i++) buf[i] = isprint(p[i]) ? (char)p[i] : '.';
    buf[8] = 0;
    return buf;
}

/* Magic, version, header size and the file size the header declares. */
static int check_identity(const ckpt_file *f, char *err, size_t errlen) {
    const unsigned char *h = f->map;
    char m[9];
    if (memcmp(h + H_MAGIC, CKPT_MAGIC, 8))
        return aimc_fail_path(err, errlen, f->path,
                              "not an aimc checkpoint (starts with '%s', expected magic '%s')",
                              magic_str(h, m), CKPT_MAGIC);
    uint32_t version = get_u32(h + H_VERSION), hsize = get_u32(h + H_HEADER_SIZE);
    if (version != CKPT_VERSION)
        return aimc_fail_path(err, errlen, f->path,
                              "checkpoint format version %u; this aimc reads version %u", version,
                              CKPT_VERSION);
    if (hsize != CKPT_HEADER_SIZE)
        return aimc_fail_path(err, errlen, f->path, "header size %u, expected %u for version %u",
                              hsize, CKPT_HEADER_SIZE, CKPT_VERSION);
    uint64_t want = get_u64(h + H_FILE_SIZE);
    if (want > f->map_size)
        return aimc_fail_path(err, errlen, f->path,
                              "truncated: the header declares %llu bytes but the file has %zu",
                              (unsigned long long)want, f->map_size);
    if (want < f->map_size)
        return aimc_fail_path(
            err, errlen, f->path,
            "the header declares %llu bytes but the file has %zu (trailing bytes)",
            (unsigned long long)want, f->map_size);
    return 0;
}

/* The section layout the header declares must be the one its lengths give. */
static int check_layout(ckpt_file *f, ckpt_layout *l, char *err, size_t errlen) {
    const unsigned char *h = f->map;
    const int len_fields[4] = {H_BACKBONE_LEN, H_PROJECTOR_LEN, H_CONFIG_LEN, H_EXTRA_LEN};
    for (int i = 0; i < 4; i++) l->len[i] = get_u64(h + len_fields[i]);
    l->n_tensors = get_u32(h + H_N_TENSORS);
    l->data_len = get_u64(h + H_DATA_LEN);
    uint32_t kind = get_u32(h + H_KIND);
    if (kind != CKPT_KIND_TRAIN && kind != CKPT_KIND_PARAMS)
        return aimc_fail_path(err, errlen, f->path, "unknown checkpoint kind %u", kind);
    if (get_u32(h + H_RESERVED0) || get_u64(h + H_RESERVED1))
        return aimc_fail_path(err, errlen, f->path, "reserved header fields are not zero");
    if (layout_compute(l) || l->file_size != f->map_size ||
        l->table_off != get_u64(h + H_TABLE_OFFSET) || l->data_off != get_u64(h + H_DATA_OFFSET))
        return aimc_fail_path(
            err, errlen, f->path,
            "inconsistent header: sections of %llu, %llu, %llu, %llu bytes, %llu tensors "
            "(table at %llu, data at %llu, %llu bytes) do not add up to the file's %zu bytes",
            (unsigned long long)l->len[0], (unsigned long long)l->len[1],
            (unsigned long long)l->len[2], (unsigned long long)l->len[3],
            (unsigned long long)l->n_tensors, (unsigned long long)get_u64(h + H_TABLE_OFFSET),
            (unsigned long long)get_u64(h + H_DATA_OFFSET), (unsigned long long)l->data_len,
            f->map_size);
    f->kind = (ckpt_kind)kind;
    return 0;
}

/* CRC-32 of everything before the trailer, and the end marker. */
static int check_checksum(const ckpt_file *f, char *err, size_t errlen) {
    const unsigned char *p = f->map;
    size_t body = f->map_size - CKPT_TRAILER_SIZE;
    if (memcmp(p + body + 4, CKPT_END_MAGIC, 4))
        return aimc_fail_path(err, errlen, f->path,
                              "end marker missing (incomplete or corrupt file)");
    uint32_t want = get_u32(p + body);
    uint32_t got = (uint32_t)crc32_z(crc32_z(0, NULL, 0), p, body);
    if (got != want)
        return aimc_fail_path(
            err, errlen, f->path,
            "checksum mismatch (CRC-32 0x%08x stored, 0x%08x computed): the file is "
            "corrupt",
            want, got);
    return 0;
}

/* A text section as a NUL-terminated copy; texts may not contain NUL. */
static int copy_text(const ckpt_file *f, const ckpt_layout *l, int i, const char *what, char **out,
                     char *err, size_t errlen) {
    const char *src = (const char *)f->map + l->off[i];
    if (memchr(src, 0, (size_t)l->len[i]))
        return aimc_fail_path(err, errlen, f->path, "the %s text contains a NUL byte", what);
    *out = malloc((size_t)l->len[i] + 1);
    AIMC_CHECK(*out != NULL, "ckpt: out of memory");
    memcpy(*out, src, (size_t)l->len[i]);
    (*out)[l->len[i]] = 0;
    return 0;
}

static int read_texts(ckpt_file *f, const ckpt_layout *l, char *err, size_t errlen) {
    const unsigned char *h = f->map;
    if (copy_text(f, l, 0, "backbone", &f->backbone_text, err, errlen) ||
        copy_text(f, l, 1, "projector", &f->projector_text, err, errlen) ||
        copy_text(f, l, 2, "config", &f->config_text, err, errlen))
        return -1;
    f->backbone_hash = get_u64(h + H_BACKBONE_HASH);
    f->projector_hash = get_u64(h + H_PROJECTOR_HASH);
    if (f->backbone_hash != ckpt_hash_text(f->backbone_text) ||
        f->projector_hash != ckpt_hash_text(f->projector_text))
        return aimc_fail_path(err, errlen, f->path,
                              "stored config hashes do not match the stored texts");
    f->extra = (const unsigned char *)f->map + l->off[3];
    f->extra_len = (size_t)l->len[3];
    f->step = get_u64(h + H_STEP);
    f->version = get_u32(h + H_VERSION);
    return 0;
}

/* Name, dtype, ndim, shape and role of one table entry. */
static int decode_entry_meta(const ckpt_file *f, const unsigned char *e, int i, ckpt_tensor *t,
                             char *err, size_t errlen) {
    if (!memchr(e + E_NAME, 0, CKPT_NAME_MAX) || !e[E_NAME])
        return aimc_fail_path(err, errlen, f->path, "tensor %d has an empty or unterminated name",
                              i);
    t->name = (const char *)e + E_NAME;
    uint32_t dt = get_u32(e + E_DTYPE), nd = get_u32(e + E_NDIM);
    t->role = get_u32(e + E_ROLE);
    if (dt >= DT_COUNT || nd < 1 || nd > 4 || t->role > CKPT_ROLE_OTHER || get_u32(e + E_RESERVED))
        return aimc_fail_path(
            err, errlen, f->path,
            "tensor '%s' has dtype %u, ndim %u, role %u (or a non-zero reserved field)", t->name,
            dt, nd, t->role);
    t->dt = (dtype)dt;
    t->ndim = (int)nd;
    for (int d = 0; d < 4; d++) {
        uint64_t v = get_u64(e + E_SHAPE + 8 * d);
        if (v > (uint64_t)INT64_MAX || (d >= t->ndim && v))
            return aimc_fail_path(err, errlen, f->path, "tensor '%s' has a bad shape field %d",
                                  t->name, d);
        if (d < t->ndim) t->shape[d] = (int64_t)v;
    }
    return 0;
}

/* Size and place of one tensor: nbytes = numel * dtype size, 64-aligned,
 * after the previous tensor, inside the data section. */
static int decode_entry_data(const ckpt_file *f, const ckpt_layout *l, const unsigned char *e,
                             uint64_t prev_end, ckpt_tensor *t, char *err, size_t errlen) {
    uint64_t off = get_u64(e + E_OFFSET), nbytes = get_u64(e + E_NBYTES), need = dtype_size(t->dt);
    int overflow = 0;
    for (int d = 0; d < t->ndim; d++)
        overflow |= __builtin_mul_overflow(need, (uint64_t)t->shape[d], &need);
    if (overflow || need != nbytes)
        return aimc_fail_path(err, errlen, f->path,
                              "tensor '%s' declares %llu bytes, its shape needs %llu", t->name,
                              (unsigned long long)nbytes, (unsigned long long)need);
    if (off % CKPT_DATA_ALIGN || off < prev_end || off > l->data_len ||
        nbytes > l->data_len - off)
        return aimc_fail_path(
            err, errlen, f->path,
            "tensor '%s' at data offset %llu (+%llu bytes) lies outside the %llu-byte "
            "data section or overlaps the previous tensor",
            t->name, (unsigned long long)off, (unsigned long long)nbytes,
            (unsigned long long)l->data_len);
    t->data = (const unsigned char *)f->map + l->data_off + off;
    t->nbytes = (size_t)nbytes;
    return 0;
}

static int read_table(ckpt_file *f, const ckpt_layout *l, char *err, size_t errlen) {
    f->n_tensors = (int)l->n_tensors;
    f->tensors = calloc(l->n_tensors ? l->n_tensors : 1, sizeof *f->tensors);
    AIMC_CHECK(f->tensors != NULL, "ckpt: out of memory");
    uint64_t prev_end = 0;
    for (int i = 0; i < f->n_tensors; i++) {
        const unsigned char *e = (const unsigned char *)f->map + l->table_off + (uint64_t)i * CKPT_ENTRY_SIZE;
        ckpt_tensor *t = &f->tensors[i];
        if (decode_entry_meta(f, e, i, t, err, errlen) ||
            decode_entry_data(f, l, e, prev_end, t, err, errlen))
            return -1;
        prev_end = get_u64(e + E_OFFSET) + t->nbytes;
        for (int j = 0; j < i; j++)
            if (!strcmp(f->tensors[j].name, t->name))
                return aimc_fail_path(err, errlen, f->path, "tensor '%s' appears twice", t->name);
    }
    return 0;
}

/* One description against the run's: a mismatch names both. */
static int check_one_hash(const ckpt_file *f, const char *what, const char *stored,
                          uint64_t stored_hash, const char *want, char *err, size_t errlen) {
    if (!want || ckpt_hash_text(want) == stored_hash) return 0;
    return aimc_fail_path(
        err, errlen, f->path,
        "checkpoint was written for %s '%s' (hash %016llx), but this run's %s is '%s' "
        "(hash %016llx)",
        what, stored, (unsigned long long)stored_hash, what, want,
        (unsigned long long)ckpt_hash_text(want));
}

static int check_expect(const ckpt_file *f, const ckpt_expect *x, char *err, size_t errlen) {
    if (!x) return 0;
    if (check_one_hash(f, "backbone", f->backbone_text, f->backbone_hash, x->backbone_text, err,
                       errlen))
        return -1;
    return check_one_hash(f, "projector", f->projector_text, f->projector_hash, x->projector_text,
                          err, errlen);
}

ckpt_file *ckpt_open(const char *path, const ckpt_expect *expect, char *err, size_t errlen) {
    ckpt_file *f = calloc(1, sizeof *f);
    AIMC_CHECK(f != NULL, "ckpt: out of memory");
    f->path = aimc_strdup(path);
    ckpt_layout l = {0};
    if (map_file(f, err, errlen) || check_identity(f, err, errlen) ||
        check_layout(f, &l, err, errlen) || check_checksum(f, err, errlen) ||
        read_texts(f, &l, err, errlen) || read_table(f, &l, err, errlen) ||
        check_expect(f, expect, err, errlen)) {
        ckpt_close(f);
        return NULL;
    }
    return f;
}

void ckpt_close(ckpt_file *f) {
    if (!f) return;
    if (f->map) munmap(f->map, f->map_size);
    free(f->backbone_text);
    free(f->projector_text);
    free(f->config_text);
    free(f->tensors);
    free(f->path);
    free(f);
}

const ckpt_tensor *ckpt_find(const ckpt_file *f, const char *name) {
    for (int i = 0; i < f->n_tensors; i++)
        if (!strcmp(f->tensors[i].name, name)) return &f->tensors[i];
    return NULL;
}

/* ---- checkpoint directory ------------------------------------------------------------ */

#define CKPT_LATEST "latest"

/* The step of "ckpt-<digits>.aimc"; -1 for any other name. */
static int64_t ckpt_name_step(const char *name) {
    if (strncmp(name, "ckpt-", 5) || !isdigit((unsigned char)name[5])) return -1;
    char *end;
    errno = 0;
    unsigned long long step = strtoull(name + 5, &end, 10);
    if (errno || strcmp(end, ".aimc") || step > (unsigned long long)INT64_MAX) return -1;
    return (int64_t)step;
}

/* The pid of a temporary ".<name>.tmp.<pid>" from ckpt_write or the latest
 * pointer; 0 for any other name. */
static long temp_owner(const char *name) {
    if (name[0] != '.' || (strncmp(name, ".ckpt-", 6) && strncmp(name, ".latest.tmp.", 12)))
        return 0;
    const char *t = strstr(name, ".tmp.");
    if (!t || !isdigit((unsigned char)t[5])) return 0;
    char *end;
    long pid = strtol(t + 5, &end, 10);
    return *end ? 0 : pid;
}

static int write_latest(const char *dir, const char *name, char *err, size_t errlen) {
    char path[4096], tmp[4096];
    if (snprintf(path, sizeof path, "%s/%s", dir, CKPT_LATEST) >= (int)sizeof path ||
        temp_path(path, tmp, sizeof tmp))
        return aimc_fail_path(err, errlen, dir, "path too long");
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    ckpt_sink s = {.f = fd >= 0 ? fdopen(fd, "w") : NULL};
    if (!s.f) {
        int e = errno;
        if (fd >= 0) close(fd);
        unlink(tmp);
        return aimc_fail_path(err, errlen, path, "cannot create %s: %s", tmp, strerror(e));
    }
    sink_put(&s, name, strlen(name));
    sink_put(&s, "\n", 1);
    sink_close(&s);
    if (s.errnum || rename(tmp, path)) {
        int e = s.errnum ? s.errnum : errno;
        unlink(tmp);
        return aimc_fail_path(err, errlen, path, "updating the latest pointer failed: %s",
                              strerror(e));
    }
    if (sync_dir(dir))
        return aimc_fail_path(err, errlen, dir, "fsync of the directory failed: %s",
                              strerror(errno));
    return 0;
}

typedef struct step_name {
    int64_t step;
    char name[sizeof(((struct dirent *)0)->d_name)];
} step_name;

static int by_step_desc(const void *a, const void *b) {
    int64_t x = ((const step_name *)a)->step, y = ((const step_name *)b)->step;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* Checkpoints in dir (other than keep), by step, newest first; count in *n. */
static step_name *list_checkpoints(DIR *d, const char *keep, int *n) {
    int cap = 16;
    step_name *v = malloc(sizeof *v * (size_t)cap);
    AIMC_CHECK(v != NULL, "ckpt: out of memory");
    *n = 0;
    for (struct dirent *de; (de = readdir(d));) {
        int64_t step = ckpt_name_step(de->d_name);
        if (step < 0 || !strcmp(de->d_name, keep)) continue;
        if (*n == cap) {
            v = realloc(v, sizeof *v * (size_t)(cap *= 2));
            AIMC_CHECK(v != NULL, "ckpt: out of memory");
        }
        v[*n].step = step;
        memcpy(v[(*n)++].name, de->d_name, sizeof v->name);
    }
    qsort(v, (size_t)*n, sizeof *v, by_step_desc);
    return v;
}

static void unlink_in(const char *dir, const char *name) {
    char path[4096];
    if (snprintf(path, sizeof path, "%s/%s", dir, name) < (int)sizeof path) unlink(path);
}

/* Temporaries whose writer is gone (killed mid-write) are removed. */
static void remove_stale_temps(const char *dir, DIR *d) {
    for (struct dirent *de; (de = readdir(d));) {
        long pid = temp_owner(de->d_name);
        if (pid > 0 && pid != (long)getpid() && kill((pid_t)pid, 0) && errno == ESRCH)
            unlink_in(dir, de->d_name);
    }
}

/* Deletion failures are not errors: the files stay and the next save retries. */
static void prune(const char *dir, const char *keep, int keep_last) {
    DIR *d = opendir(dir);
    if (!d) return;
    remove_stale_temps(dir, d);
    if (keep_last > 0) {
        rewinddir(d);
        int n;
        step_name *v = list_checkpoints(d, keep, &n);
        for (int i = keep_last - 1; i < n; i++) unlink_in(dir, v[i].name);
        free(v);
    }
    closedir(d);
    sync_dir(dir);
}

int ckpt_save_dir(const char *dir, const ckpt_contents *c, int keep_last, char *path_out,
                  size_t path_len, char *err, size_t errlen) {
    char name[64], path[4096];
    if (mkdir(dir, 0755) && errno != EEXIST)
        return aimc_fail_path(err, errlen, dir, "cannot create the checkpoint directory: %s",
                              strerror(errno));
    snprintf(name, sizeof name, "ckpt-%010llu.aimc", (unsigned long long)c->step);
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path)
        return aimc_fail_path(err, errlen, dir, "path too long");
    if (ckpt_write(path, c, err, errlen) || write_latest(dir, name, err, errlen)) return -1;
    prune(dir, name, keep_last);
    if (path_out) snprintf(path_out, path_len, "%s", path);
    return 0;
}

/* The first line of DIR/latest; 1, 0 when absent, -1 on error. */
static int read_latest_name(const char *latest, char *name, size_t n, char *err, size_t errlen) {
    FILE *f = fopen(latest, "r");
    if (!f)
        return errno == ENOENT
                   ? 0
                   : aimc_fail_path(err, errlen, latest, "cannot read: %s", strerror(errno));
    char *got = fgets(name, (int)n, f);
    fclose(f);
    if (got) name[strcspn(name, "\r\n")] = 0;
    if (!got || !*name || strchr(name, '/') || ckpt_name_step(name) < 0)
        return aimc_fail_path(err, errlen, latest,
                              "does not name a checkpoint file (ckpt-<step>.aimc)");
    return 1;
}

int ckpt_latest(const char *dir, char *path, size_t path_len, char *err, size_t errlen) {
    char latest[4096], name[256];
    if (snprintf(latest, sizeof latest, "%s/%s", dir, CKPT_LATEST) >= (int)sizeof latest)
        return aimc_fail_path(err, errlen, dir, "path too long");
    int rc = read_latest_name(latest, name, sizeof name, err, errlen);
    if (rc <= 0) return rc;
    if (snprintf(path, path_len, "%s/%s", dir, name) >= (int)path_len)
        return aimc_fail_path(err, errlen, dir, "path too long");
    struct stat sb;
    if (stat(path, &sb) || !S_ISREG(sb.st_mode))
        return aimc_fail_path(err, errlen, latest, "names '%s', which is missing or not a file",
                              name);
    return 1;
}

int ckpt_resolve(const char *path_or_dir, char *out, size_t out_len, char *err, size_t errlen) {
    struct stat sb;
    if (stat(path_or_dir, &sb))
        return aimc_fail_path(err, errlen, path_or_dir, "cannot open checkpoint: %s",
                              strerror(errno));
    if (!S_ISDIR(sb.st_mode)) {
        if (snprintf(out, out_len, "%s", path_or_dir) >= (int)out_len)
            return aimc_fail_path(err, errlen, path_or_dir, "path too long");
        return 0;
    }
    int rc = ckpt_latest(path_or_dir, out, out_len, err, errlen);
    if (rc == 0)
        return aimc_fail_path(err, errlen, path_or_dir,
                              "no checkpoint in this directory (no '%s' file)", CKPT_LATEST);
    return rc < 0 ? -1 : 0;
}

/* ---- the projector's state ------------------------------------------------------------ */

static const char *const role_prefix[3] = {"", "exp_avg.", "exp_avg_sq."};

static void slot_name(char *buf, size_t n, int role, const char *param) {
    int k = snprintf(buf, n, "%s%s", role_prefix[role], param);
    AIMC_CHECK(k > 0 && (size_t)k < n, "ckpt: name '%s%s' too long", role_prefix[role], param);
}

static const tensor *param_slot(const projector_param *pp, int role) {
    return role == CKPT_ROLE_PARAM ? &pp->value : role == CKPT_ROLE_ADAM_M ? &pp->m : &pp->v;
}

int ckpt_projector_tensors(const projector *p, int with_optim, ckpt_tensor *out) {
    int n = 0;
    for (int role = 0; role < (with_optim ? 3 : 1); role++)
        for (int i = 0; i < p->n_params; i++) {
            const tensor *src = param_slot(&p->params[i], role);
            char name[CKPT_NAME_MAX];
            slot_name(name, sizeof name, role, p->params[i].name);
            size_t bytes = tensor_bytes(src);
            void *host = malloc(bytes ? bytes : 1);
            char *owned = strdup(name);
            AIMC_CHECK(host && owned, "ckpt: out of memory (%zu bytes)", bytes);
            p->be->download(host, src->data, bytes);
            ckpt_tensor t = {.name = owned, .role = (uint32_t)role, .dt = DT_F32,
                             .ndim = src->ndim, .data = host, .nbytes = bytes};
            for (int d = 0; d < src->ndim; d++) t.shape[d] = src->shape[d];
            out[n++] = t;
        }
    return n;
}

void ckpt_tensors_free(ckpt_tensor *t, int n) {
    for (int i = 0; i < n; i++) {
        free((void *)t[i].name);
        free((void *)t[i].data);
    }
}

/* The tensor for (role, param) in f, checked against dst's shape. */
static const ckpt_tensor *find_slot(const ckpt_file *f, int role, const char *param,
                                    const tensor *dst, char *err, size_t errlen) {
    char name[CKPT_NAME_MAX], want[80];
    slot_name(name, sizeof name, role, param);
    const ckpt_tensor *t = ckpt_find(f, name);
    if (!t) {
        aimc_fail_path(err, errlen, f->path, "tensor '%s' is missing", name);
        return NULL;
    }
    tensor got = tensor_wrap(NULL, t->dt, dst->be, t->ndim, t->shape);
    if (t->dt != DT_F32 || !tensor_same_shape(&got, dst)) {
        char have[80];
        aimc_fail_path(err, errlen, f->path, "tensor '%s' is %s %s, expected f32 %s", name,
                       dtype_name(t->dt), tensor_shape_str(&got, have, sizeof have),
                       tensor_shape_str(dst, want, sizeof want));
        return NULL;
    }
    return t;
}

int ckpt_projector_restore(const ckpt_file *f, projector *p, int with_optim, char *err,
                           size_t errlen) {
    const ckpt_tensor *src[CKPT_PROJECTOR_MAX_TENSORS];
    int nroles = with_optim ? 3 : 1;
    for (int role = 0; role < nroles; role++)
        for (int i = 0; i < p->n_params; i++) {
            const tensor *dst = param_slot(&p->params[i], role);
            src[role * p->n_params + i] = find_slot(f, role, p->params[i].name, dst, err, errlen);
            if (!src[role * p->n_params + i]) return -1;
        }
    for (int role = 0; role < nroles; role++)
        for (int i = 0; i < p->n_params; i++) {
            const tensor *dst = param_slot(&p->params[i], role);
            p->be->upload(dst->data, src[role * p->n_params + i]->data, tensor_bytes(dst));
        }
    return 0;
}
