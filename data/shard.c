/* Tar shards read as samples (see shard.h): a tar member reader over the
 * byte stream of data/byte_stream.h (ustar, PAX, GNU long names, base-256
 * sizes, checksum validation, resynchronisation after a damaged header);
 * samples = runs of consecutive members sharing a key. Raw MMC4 .jsonl files
 * are handed to data/shard_jsonl.c behind the same interface. */
#include "shard.h"
#include "byte_stream.h"
#include "shard_jsonl.h"
#include "../kernels/check.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TAR_BLOCK 512
#define MAX_PAX_BYTES (1 << 20)      /* a PAX record block larger than this is damage */
#define MAX_LONGNAME_BYTES (1 << 16) /* same for a GNU long name */
#define DEFAULT_MAX_MEMBER_BYTES ((size_t)64 << 20)
#define DEFAULT_MAX_MEMBERS 256

/* ------------------------------------------------------------------------
 * Tar headers. */

typedef struct tar_header {
    char type;
    uint64_t size;
    char name[256 + 2]; /* ustar prefix + '/' + name */
} tar_header;

static int all_zero(const uint8_t *b, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (b[i]) return 0;
    return 1;
}

/* An octal field: optional leading spaces, octal digits, then NULs or
 * spaces up to the end. An empty field is 0 (as Python's tarfile reads it). */
static int parse_octal(const uint8_t *f, size_t n, uint64_t *out) {
    size_t i = 0;
    uint64_t v = 0;
    while (i < n && f[i] == ' ') i++;
    for (; i < n && f[i] >= '0' && f[i] <= '7'; i++) {
        if (v >> 60) return -1;
        v = v << 3 | (uint64_t)(f[i] - '0');
    }
    for (; i < n; i++)
        if (f[i] != 0 && f[i] != ' ') return -1;
    *out = v;
    return 0;
}

/* Numeric field in octal or, with the high bit of the first byte set, GNU
 * base-256 (big-endian; negative values are refused). */
static int parse_number(const uint8_t *f, size_t n, uint64_t *out) {
    if (!(f[0] & 0x80)) return parse_octal(f, n, out);
    if (f[0] != 0x80) return -1; /* 0xff: negative; other values: malformed */
    uint64_t v = 0;
    for (size_t i = 1; i < n; i++) {
        if (v >> 55) return -1;
        v = v << 8 | f[i];
    }
    *out = v;
    return 0;
}

/* The stored checksum must equal the byte sum with the checksum field read
 * as spaces, summed unsigned or (as some old writers did) signed. */
static int checksum_ok(const uint8_t *b) {
    uint64_t stored;
    if (parse_octal(b + 148, 8, &stored)) return 0;
    int64_t sum_u = 0, sum_s = 0;
    for (int i = 0; i < TAR_BLOCK; i++) {
        uint8_t c = i >= 148 && i < 156 ? ' ' : b[i];
        sum_u += c;
        sum_s += (int8_t)c;
    }
    return (int64_t)stored == sum_u || (int64_t)stored == sum_s;
}

static void field_string(char *dst, const uint8_t *f, size_t n) {
    size_t len = strnlen((const char *)f, n);
    memcpy(dst, f, len);
    dst[len] = 0;
}

/* Validates and decodes one header block; -1 when it is damaged. */
static int parse_header(const uint8_t *b, tar_header *h) {
    if (!checksum_ok(b) || parse_number(b + 124, 12, &h->size)) return -1;
    h->type = (char)b[156];
    char name[101], prefix[156];
    field_string(name, b, 100);
    field_string(prefix, b + 345, 155);
    if (!memcmp(b + 257, "ustar\0", 6) && prefix[0]) /* POSIX ustar; GNU's "ustar  " uses the space otherwise */
        snprintf(h->name, sizeof h->name, "%s/%s", prefix, name);
    else
        snprintf(h->name, sizeof h->name, "%s", name);
    return 0;
}

/* ------------------------------------------------------------------------
 * PAX extended headers: records "LEN key=value\n". */

typedef struct pax_values {
    char *path;
    uint64_t size;
    int has_size;
} pax_values;

static void pax_clear(pax_values *p) {
    free(p->path);
    memset(p, 0, sizeof *p);
}

static int pax_set(pax_values *p, const char *key, size_t klen, const char *val, size_t vlen) {
    if (klen == 4 && !memcmp(key, "path", 4)) {
        char *s = malloc(vlen + 1);
        if (!s) return -1;
        memcpy(s, val, vlen);
        s[vlen] = 0;
        free(p->path);
        p->path = s;
    } else if (klen == 4 && !memcmp(key, "size", 4)) {
        uint64_t v = 0;
        if (vlen == 0) return -1;
        for (size_t i = 0; i < vlen; i++) {
            if (val[i] < '0' || val[i] > '9' || v > (UINT64_MAX >> 4)) return -1;
            v = v * 10 + (uint64_t)(val[i] - '0');
        }
        p->size = v;
        p->has_size = 1;
    }
    return 0; /* mtime, uid, linkpath, ...: not needed */
}

/* Parses one record at d[*pos..n); -1 when malformed. */
static int pax_record(pax_values *p, const char *d, size_t n, size_t *pos) {
    size_t i = *pos, len = 0;
    for (; i < n && d[i] >= '0' && d[i] <= '9'; i++) {
        if (len > n) return -1;
        len = len * 10 + (size_t)(d[i] - '0');
    }
    if (i == *pos || i >= n || d[i] != ' ' || len == 0 || len > n - *pos || d[*pos + len - 1] != '\n') return -1;
    const char *kv = d + i + 1, *end = d + *pos + len - 1;
    const char *eq = memchr(kv, '=', (size_t)(end - kv));
    if (!eq || eq == kv) return -1;
    *pos += len;
    return pax_set(p, kv, (size_t)(eq - kv), eq + 1, (size_t)(end - eq - 1));
}

static int pax_parse(pax_values *p, const char *d, size_t n) {
    size_t pos = 0;
    while (pos < n && d[pos] != 0) /* some writers pad the block with NULs */
        if (pax_record(p, d, n, &pos)) return -1;
    return 0;
}

/* ------------------------------------------------------------------------
 * Reader. */

typedef struct tar_member {
    char *key, *ext;
    uint8_t *data;
    size_t size;
} tar_member;

typedef enum { MEMBER_OK, MEMBER_END, MEMBER_TRUNCATED } member_status;

struct shard_reader {
    jsonl_reader *jsonl; /* a raw MMC4 .jsonl file: everything below is unused */
    byte_stream s;
    shard_limits lim;
    uint8_t first_block[TAR_BLOCK];
    int first_block_pending;
    pax_values global, local; /* 'g' records apply to all later members, 'x' to the next one */
    char *long_name;          /* GNU 'L' */
    tar_member ahead;         /* read ahead: the first member of the next sample */
    char *truncated_key;      /* key of a member the shard ended inside, if known */
    int have_ahead, done, ended_cleanly;
    int64_t groups_seen;
};

static void member_free(tar_member *m) {
    free(m->key);
    free(m->ext);
    free(m->data);
    memset(m, 0, sizeof *m);
}

static int read_block(shard_reader *r, uint8_t *b) {
    if (r->first_block_pending) {
        memcpy(b, r->first_block, TAR_BLOCK);
        r->first_block_pending = 0;
        return 1;
    }
    return stream_read(&r->s, b, TAR_BLOCK) == TAR_BLOCK;
}

static uint64_t padded(uint64_t size) { return (size + TAR_BLOCK - 1) / TAR_BLOCK * TAR_BLOCK; }

/* Reads a member's data into a new NUL-terminated buffer and skips its
 * padding; -1 when the shard ends first. */
static int read_data(shard_reader *r, uint64_t size, uint8_t **out) {
    uint8_t *d = malloc((size_t)size + 1);
    if (!d) return -1;
    if (stream_read(&r->s, d, (size_t)size) != size || stream_skip(&r->s, padded(size) - size)) {
        free(d);
        return -1;
    }
    d[size] = 0;
    *out = d;
    return 0;
}

static void forget_member_headers(shard_reader *r) {
    pax_clear(&r->local);
    free(r->long_name);
    r->long_name = NULL;
}

/* After a damaged header: the next block that is a valid header. Returns 0
 * when the data ends first (the damage was counted already, so the shard
 * simply ends there). */
static int resync(shard_reader *r, uint8_t *b, tar_header *h) {
    forget_member_headers(r);
    while (read_block(r, b))
        if (!all_zero(b, TAR_BLOCK) && !parse_header(b, h)) return 1;
    return 0;
}

/* Name and size of a regular member after PAX / GNU overrides. */
static const char *effective_name(const shard_reader *r, const tar_header *h) {
    if (r->local.path) return r->local.path;
    if (r->long_name) return r->long_name;
    if (r->global.path) return r->global.path;
    return h->name;
}

static uint64_t effective_size(const shard_reader *r, const tar_header *h) {
    if (r->local.has_size) return r->local.size;
    if (r->global.has_size) return r->global.size;
    return h->size;
}

/* Splits "dir/abc.seg.jpg" into key "dir/abc" and ext "seg.jpg". Returns -1
 * for names that are no sample member (directories, no dot, a basename
 * starting with a dot). */
static int split_name(const char *name, tar_member *m) {
    while (name[0] == '.' && name[1] == '/') name += 2;
    size_t len = strlen(name);
    if (len == 0 || name[len - 1] == '/') return -1;
    const char *base = strrchr(name, '/');
    base = base ? base + 1 : name;
    const char *dot = strchr(base, '.');
    if (!dot || dot == base) return -1;
    m->key = strndup(name, (size_t)(dot - name));
    m->ext = strdup(dot + 1);
    if (!m->key || !m->ext) {
        member_free(m);
        return -1;
    }
    return 0;
}

/* Reads the data of an 'x', 'g' or 'L' entry (small, NUL-terminated). -1:
 * the shard ended; 1: too large (skipped over, counted as damage). */
static int read_meta(shard_reader *r, uint64_t size, uint64_t cap, char **out) {
    *out = NULL;
    if (size > cap) return stream_skip(&r->s, padded(size)) ? -1 : 1;
    return read_data(r, size, (uint8_t **)out);
}

/* Handles one metadata entry; returns -1 when the shard ended inside it. */
static int handle_meta(shard_reader *r, const tar_header *h, skip_counts *skips) {
    char *d;
    int rc = read_meta(r, h->size, h->type == 'L' ? MAX_LONGNAME_BYTES : MAX_PAX_BYTES, &d);
    if (rc < 0) return -1;
    if (rc > 0) {
        skip_count(skips, SKIP_BAD_HEADER);
        return 0;
    }
    if (h->type == 'L') {
        free(r->long_name);
        r->long_name = d;
        return 0;
    }
    pax_values *p = h->type == 'g' ? &r->global : &r->local;
    if (pax_parse(p, d, (size_t)h->size)) { /* damaged records: fall back to the ustar fields */
        skip_count(skips, SKIP_BAD_HEADER);
        pax_clear(p);
    }
    free(d);
    return 0;
}

/* Remembers the key of the member the shard ended in: a sample with
 * another key before it was complete. */
static member_status truncated_in(shard_reader *r, tar_member *m) {
    free(r->truncated_key);
    r->truncated_key = m->key;
    m->key = NULL;
    member_free(m);
    return MEMBER_TRUNCATED;
}

/* A regular file entry: MEMBER_OK with *m filled, or 1 when it was skipped
 * (not a sample member, or too large), or MEMBER_TRUNCATED. */
static int handle_file(shard_reader *r, const tar_header *h, tar_member *m, skip_counts *skips) {
    uint64_t size = effective_size(r, h);
    int usable = split_name(effective_name(r, h), m) == 0;
    forget_member_headers(r);
    if (usable && size > r->lim.max_member_bytes) {
        skip_count(skips, SKIP_MEMBER_TOO_LARGE);
        usable = 0;
    }
    if (!usable) {
        if (stream_skip(&r->s, padded(size))) return (int)truncated_in(r, m);
        member_free(m);
        return 1;
    }
    if (read_data(r, size, &m->data)) return (int)truncated_in(r, m);
    m->size = (size_t)size;
    return MEMBER_OK;
}

/* The next regular-file member with a usable name. */
static member_status next_member(shard_reader *r, tar_member *m, skip_counts *skips) {
    uint8_t b[TAR_BLOCK];
    tar_header h;
    for (;;) {
        if (!read_block(r, b)) return MEMBER_TRUNCATED;
        if (all_zero(b, TAR_BLOCK)) return MEMBER_END;
        if (parse_header(b, &h)) {
            skip_count(skips, SKIP_BAD_HEADER);
            if (!resync(r, b, &h)) return MEMBER_END;
        }
        if (h.type == 'x' || h.type == 'g' || h.type == 'L') {
            if (handle_meta(r, &h, skips)) return MEMBER_TRUNCATED;
        } else if (h.type == '0' || h.type == '\0' || h.type == '7') {
            int rc = handle_file(r, &h, m, skips);
            if (rc != 1) return (member_status)rc;
        } else { /* directories, links, devices, GNU 'K', ...: not data */
            /* like Python's tarfile: links, devices, directories and FIFOs carry no data */
            uint64_t size = h.type >= '1' && h.type <= '6' ? 0 : effective_size(r, &h);
            forget_member_headers(r);
            if (stream_skip(&r->s, padded(size))) return MEMBER_TRUNCATED;
        }
    }
}

static shard_limits resolve_limits(const shard_limits *l) {
    shard_limits out = {DEFAULT_MAX_MEMBER_BYTES, DEFAULT_MAX_MEMBERS};
    if (l && l->max_member_bytes > 0) out.max_member_bytes = l->max_member_bytes;
    if (l && l->max_members > 0) out.max_members = l->max_members;
    return out;
}

/* The first block must be a valid header or the end-of-archive block. */
static int check_first_block(shard_reader *r, const char *path, char *err, size_t errlen) {
    tar_header h;
    size_t got = stream_read(&r->s, r->first_block, TAR_BLOCK);
    if (got == 0 && r->s.codec != CODEC_PLAIN) {
        aimc_set_err(err, errlen, "%s: %s data is corrupt, empty or cut short before its first 512 bytes", path,
                     r->s.codec == CODEC_GZIP ? "gzip" : "zstd");
        return -1;
    }
    if (got != TAR_BLOCK || (!all_zero(r->first_block, TAR_BLOCK) && parse_header(r->first_block, &h))) {
        aimc_set_err(err, errlen, "%s: not a tar archive (%s)", path,
                     got != TAR_BLOCK ? "shorter than one 512-byte header" : "first header fails its checksum");
        return -1;
    }
    r->first_block_pending = 1;
    return 0;
}

shard_reader *shard_open(const char *path, const shard_limits *limits, char *err, size_t errlen) {
    return shard_open_mmc4(path, limits, NULL, err, errlen);
}

shard_reader *shard_open_mmc4(const char *path, const shard_limits *limits, const char *mmc4_images, char *err,
                              size_t errlen) {
    shard_reader *r = calloc(1, sizeof *r);
    if (!r) {
        aimc_set_err(err, errlen, "%s: out of memory", path);
        return NULL;
    }
    r->lim = resolve_limits(limits);
    if (shard_is_jsonl(path)) {
        if ((r->jsonl = jsonl_open(path, &r->lim, mmc4_images, err, errlen))) return r;
        free(r);
        return NULL;
    }
    if (stream_open(&r->s, path, err, errlen) || check_first_block(r, path, err, errlen)) {
        shard_close(r);
        return NULL;
    }
    return r;
}

int shard_is_jsonl(const char *path) {
    static const char *const suffixes[] = {".jsonl", ".jsonl.gz", ".jsonl.zst"};
    size_t n = strlen(path);
    for (int i = 0; i < 3; i++) {
        size_t k = strlen(suffixes[i]);
        if (n > k && !strcmp(path + n - k, suffixes[i])) return 1;
    }
    return 0;
}

void shard_close(shard_reader *r) {
    if (!r) return;
    jsonl_close(r->jsonl);
    stream_close(&r->s);
    pax_clear(&r->global);
    forget_member_headers(r);
    if (r->have_ahead) member_free(&r->ahead);
    free(r->truncated_key);
    free(r);
}

void shard_sample_free(shard_sample *s) {
    if (!s) return;
    for (int i = 0; i < s->n_members; i++) {
        free(s->members[i].ext);
        free(s->members[i].data);
    }
    free(s->members);
    free(s->key);
    memset(s, 0, sizeof *s);
}

const shard_member *shard_sample_member(const shard_sample *s, const char *ext) {
    for (int i = 0; i < s->n_members; i++)
        if (!strcmp(s->members[i].ext, ext)) return &s->members[i];
    return NULL;
}

/* Moves the read-ahead member into the sample (or drops it once the sample
 * is over the member limit). */
static void take_ahead(shard_reader *r, shard_sample *s, int *overflow) {
    tar_member *m = &r->ahead;
    r->have_ahead = 0;
    if (!s->key) {
        s->key = m->key;
        m->key = NULL;
    }
    shard_member *grown = NULL;
    if (s->n_members < r->lim.max_members)
        grown = realloc(s->members, (size_t)(s->n_members + 1) * sizeof *s->members);
    if (!grown) {
        *overflow = 1;
        member_free(m);
        return;
    }
    s->members = grown;
    s->members[s->n_members++] = (shard_member){m->ext, m->data, m->size};
    free(m->key);
    memset(m, 0, sizeof *m);
}

/* Whether the run in s is complete although the shard ended: the header of
 * a member with another key was read before the data ran out. */
static int closed_by_truncated_key(const shard_reader *r, const shard_sample *s) {
    return r->truncated_key && s->key && strcmp(r->truncated_key, s->key) != 0;
}

/* Gathers the members of one key run into s. Returns 1 when the run was
 * closed by a member with another key or by the end-of-archive block, 0
 * when the shard ended (truncated) with the run possibly incomplete. */
static int gather_group(shard_reader *r, shard_sample *s, int *overflow, skip_counts *skips) {
    for (;;) {
        if (!r->have_ahead) {
            if (r->done) return r->ended_cleanly || closed_by_truncated_key(r, s);
            member_status st = next_member(r, &r->ahead, skips);
            if (st != MEMBER_OK) {
                r->done = 1;
                r->ended_cleanly = st == MEMBER_END;
                if (st == MEMBER_TRUNCATED) skip_count(skips, SKIP_TRUNCATED_SHARD);
                return r->ended_cleanly || closed_by_truncated_key(r, s);
            }
            r->have_ahead = 1;
        }
        if (s->key && strcmp(s->key, r->ahead.key)) return 1;
        take_ahead(r, s, overflow);
    }
}

int shard_next(shard_reader *r, shard_sample *s, skip_counts *skips) {
    if (r->jsonl) return jsonl_next(r->jsonl, s, skips);
    memset(s, 0, sizeof *s);
    for (;;) {
        int overflow = 0;
        int closed = gather_group(r, s, &overflow, skips);
        if (!s->key) return 0;
        if (!closed) { /* truncated: this sample may be missing members */
            shard_sample_free(s);
            return 0;
        }
        s->index = r->groups_seen++;
        if (!overflow) return 1;
        skip_count(skips, SKIP_MEMBER_TOO_LARGE);
        shard_sample_free(s);
    }
}

int64_t shard_skip(shard_reader *r, int64_t n) {
    if (r->jsonl) return jsonl_skip(r->jsonl, n);
    int64_t done = 0;
    shard_sample s;
    skip_counts ignored = {0};
    while (done < n && shard_next(r, &s, &ignored)) {
        shard_sample_free(&s);
        done++;
    }
    return done;
}
