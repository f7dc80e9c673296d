/* Tar shards (data/shard.h), base64 (data/base64.h), synthetic shards
 * (data/synth.h) and `aimc shards inspect`:
 * - archives written here by a tar writer of the test's own (ustar with
 *   prefix, PAX 'x' path/size records, GNU 'L' long names, base-256 sizes;
 *   random keys, extensions, sizes around block edges, member order, stray
 *   directories and dot-less files) read back member by member, byte-exact,
 *   plain, gzip and zstd;
 * - every cut point class of a truncated shard: exactly the samples whose
 *   closing header lies before the cut, one truncated_shard count; for
 *   compressed shards the cut is mapped through zlib / libzstd;
 * - damaged headers (checksum, bad octal, negative base-256, bad PAX
 *   records), members over the size limit, samples over the member limit:
 *   the exact skip counts, and every other sample intact;
 * - files that are no shard: empty, a directory, text, xz, missing;
 * - fixtures written by Python's tarfile (scripts/make_shard_fixtures.py):
 *   keys, extensions, sizes and CRC-32 of every member;
 * - shard_expand on lists, globs, brace ranges and their errors;
 * - synth -> read back: every image decodes, its size matches the JSON, its
 *   colours match the caption (centre = shape colour, corners = background),
 *   MMC4 similarity rows peak at the matched sentence; same seed, same bytes;
 * - inspect's report on synthetic, truncated and unreadable shards. */
#include "../data/base64.h"
#include "../data/image.h"
#include "../data/shard.h"
#include "../data/synth.h"
#include "../host/commands.h"
#include "testlib.h"
#include "fixture_path.h"
#include <cjson/cJSON.h>
#include <sys/stat.h>
#include <zlib.h>
#include <zstd.h>

static char tmp_dir[256];
static char fixture_dir[512];

/* ======================================================================
 * Small helpers. */

typedef struct tbuf {
    uint8_t *d;
    size_t n, cap;
} tbuf;

static void tb_put(tbuf *b, const void *p, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 4096;
        b->d = realloc(b->d, b->cap);
        if (!b->d) exit(1);
    }
    if (n) memcpy(b->d + b->n, p, n);
    b->n += n;
}

static void tb_pad(tbuf *b) {
    static const uint8_t z[512];
    if (b->n % 512) tb_put(b, z, 512 - b->n % 512);
}

static void write_file(const char *path, const void *d, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(d, 1, n, f) != n) {
        printf("FAIL: cannot write %s\n", path);
        exit(1);
    }
    fclose(f);
}

static void tmp_path(char *buf, size_t n, const char *name) { snprintf(buf, n, "%s/%s", tmp_dir, name); }

/* ======================================================================
 * A tar writer of the test's own. */

enum { ST_USTAR, ST_PAX, ST_GNU, ST_B256, ST_COUNT };

static void put_oct(uint8_t *f, int width, uint64_t v) {
    char tmp[32];
    snprintf(tmp, sizeof tmp, "%0*llo", width - 1, (unsigned long long)v);
    memcpy(f, tmp, (size_t)width - 1);
    f[width - 1] = 0;
}

static void finish_checksum(uint8_t *h) {
    unsigned sum = 0;
    memset(h + 148, ' ', 8);
    for (int i = 0; i < 512; i++) sum += h[i];
    char tmp[8];
    snprintf(tmp, sizeof tmp, "%06o", sum);
    memcpy(h + 148, tmp, 7); /* 6 digits, NUL, and the space stays */
}

/* ustar name: the whole name when it fits, else split at a '/' into
 * prefix (<= 155) + name (<= 100); other styles just truncate. */
static void set_name(uint8_t *h, const char *name, int style) {
    size_t len = strlen(name);
    if (len <= 100) {
        memcpy(h, name, len);
        return;
    }
    if (style == ST_USTAR || style == ST_B256) {
        for (size_t i = len - 1; i > 0; i--)
            if (name[i] == '/' && len - i - 1 <= 100 && i <= 155) {
                memcpy(h, name + i + 1, len - i - 1);
                memcpy(h + 345, name, i);
                return;
            }
        printf("FAIL: test bug: name %s cannot be split for ustar\n", name);
        exit(1);
    }
    memcpy(h, name, 100);
}

static void make_header(uint8_t *h, const char *name, char type, uint64_t size, int style) {
    memset(h, 0, 512);
    set_name(h, name, style);
    put_oct(h + 100, 8, 0644);
    put_oct(h + 108, 8, 1000);
    put_oct(h + 116, 8, 1000);
    if (style == ST_B256) {
        h[124] = 0x80;
        for (int i = 0; i < 8; i++) h[135 - i] = (uint8_t)(size >> (8 * i)); /* bytes 125..127 stay 0 */
    } else {
        put_oct(h + 124, 12, size);
    }
    put_oct(h + 136, 12, 1700000000);
    h[156] = (uint8_t)type;
    if (style == ST_GNU) memcpy(h + 257, "ustar  ", 8);
    else memcpy(h + 257, "ustar\0" "00", 8);
    finish_checksum(h);
}

static size_t pax_rec(char *out, const char *key, const char *val) {
    size_t body = strlen(key) + strlen(val) + 3, n = body + 1;
    while (body + (size_t)snprintf(NULL, 0, "%zu", n) != n) n = body + (size_t)snprintf(NULL, 0, "%zu", n);
    return (size_t)sprintf(out, "%zu %s=%s\n", n, key, val);
}

/* Off where a test damages the PAX record and the ustar size must carry on. */
static int pax_may_zero_size = 1;

/* An entry, preceded by its PAX or GNU long-name entry for those styles.
 * Returns the offset just after the entry's own header. */
static size_t tw_entry(tbuf *b, const char *name, char type, const void *data, size_t size, int style) {
    uint8_t h[512];
    if (style == ST_PAX) {
        char recs[1024], sz[32];
        snprintf(sz, sizeof sz, "%zu", size);
        size_t n = pax_rec(recs, "path", name);
        n += pax_rec(recs + n, "size", sz);
        n += pax_rec(recs + n, "mtime", "1700000000.5");
        make_header(h, "./PaxHeaders/x", 'x', n, ST_PAX);
        tb_put(b, h, 512);
        tb_put(b, recs, n);
        tb_pad(b);
        /* as tarfile does for sizes that do not fit: 0 in the ustar field, the
         * real size in the record (half of the time here) */
        make_header(h, name, type, pax_may_zero_size && rng_int(2) ? 0 : size, style);
        tb_put(b, h, 512);
        size_t after = b->n;
        tb_put(b, data, size);
        tb_pad(b);
        return after;
    } else if (style == ST_GNU && strlen(name) > 100) {
        make_header(h, "././@LongLink", 'L', strlen(name) + 1, ST_GNU);
        tb_put(b, h, 512);
        tb_put(b, name, strlen(name) + 1);
        tb_pad(b);
    }
    make_header(h, name, type, size, style);
    tb_put(b, h, 512);
    size_t after = b->n;
    tb_put(b, data, size);
    tb_pad(b);
    return after;
}

static void tw_end(tbuf *b) {
    static const uint8_t z[1024];
    tb_put(b, z, 1024);
}

/* ======================================================================
 * Random archives with their expected samples. */

#define MAX_SAMPLES 64
#define MAX_MEMBERS 6

typedef struct exp_member {
    char ext[32];
    uint8_t *data;
    size_t size;
    size_t header_at; /* offset of its own header block */
    int style;
} exp_member;

typedef struct exp_sample {
    char key[300];
    int n;
    exp_member m[MAX_MEMBERS];
    size_t closed_at; /* the reader knows the sample is complete from this offset on */
} exp_sample;

typedef struct archive {
    tbuf tar;
    exp_sample s[MAX_SAMPLES];
    int n;
    size_t end_block; /* offset just after the first end-of-archive block */
} archive;

static size_t random_size(void) {
    static const size_t edges[] = {0, 1, 511, 512, 513, 1024, 1500};
    return rng_int(3) ? (size_t)rng_int(1200) : edges[rng_int(7)];
}

static void random_key(char *key, size_t n, int i) {
    static const char *const dirs[] = {"", "", "", "train/", "v1.2/part-07/"};
    if (rng_int(5) == 0) { /* > 100 bytes in all: a long-name mechanism is needed */
        char pad[80];
        memset(pad, 'a' + (char)rng_int(26), 70);
        pad[70] = 0;
        snprintf(key, n, "long_%s/%s/s%04d", pad, pad + 40, i);
    } else {
        snprintf(key, n, "%ss%04d_%llx", dirs[rng_int(5)], i, (unsigned long long)(rng_u64() & 0xffff));
    }
}

/* Distinct extensions in random order. */
static int random_exts(char exts[][32]) {
    static const char *const pool[] = {"jpg", "txt", "json", "png", "seg.0.png", "cls", "webp"};
    int order[7] = {0, 1, 2, 3, 4, 5, 6}, n = 1 + (int)rng_int(4);
    for (int i = 6; i > 0; i--) {
        int j = (int)rng_int(i + 1), t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    for (int i = 0; i < n; i++) snprintf(exts[i], 32, "%s", pool[order[i]]);
    return n;
}

/* Directories, symlinks and dot-less names between samples: ignored. */
static void maybe_noise(tbuf *b, int i) {
    char name[64];
    int r = (int)rng_int(6);
    if (r == 0) {
        snprintf(name, sizeof name, "dir%d/", i);
        tw_entry(b, name, '5', NULL, 0, ST_USTAR);
    } else if (r == 1) {
        snprintf(name, sizeof name, "README%d", i);
        tw_entry(b, name, '0', "no dot here", 11, (int)rng_int(ST_COUNT));
    } else if (r == 2) {
        uint8_t h[512];
        make_header(h, "link.txt", '2', 0, ST_USTAR);
        tb_put(b, h, 512);
    } else if (r == 3) { /* a basename starting with a dot: no key */
        snprintf(name, sizeof name, "%s.meta%d.json", rng_int(2) ? "" : "train/", i);
        tw_entry(b, name, '0', "{}", 2, (int)rng_int(ST_COUNT));
    }
}

static void make_archive(archive *a, int n_samples, int style) {
    memset(a, 0, sizeof *a);
    a->n = n_samples;
    for (int i = 0; i < n_samples; i++) {
        exp_sample *s = &a->s[i];
        char exts[MAX_MEMBERS][32];
        random_key(s->key, sizeof s->key, i);
        maybe_noise(&a->tar, i);
        s->n = random_exts(exts);
        for (int k = 0; k < s->n; k++) {
            exp_member *m = &s->m[k];
            char name[400];
            snprintf(m->ext, sizeof m->ext, "%s", exts[k]);
            m->size = random_size();
            m->data = tl_alloc(m->size);
            for (size_t j = 0; j < m->size; j++) m->data[j] = (uint8_t)rng_u64();
            m->style = style >= 0 ? style : (int)rng_int(ST_COUNT);
            /* "./" in front, as `tar cf x.tar ./dir` writes: not part of the key */
            snprintf(name, sizeof name, "%s%s.%s", i % 3 == 1 ? "./" : "", s->key, m->ext);
            size_t before = a->tar.n;
            size_t after = tw_entry(&a->tar, name, '0', m->data, m->size, m->style);
            m->header_at = after - 512;
            (void)before;
            if (k == 0 && i > 0) a->s[i - 1].closed_at = after;
        }
    }
    tw_end(&a->tar);
    a->end_block = a->tar.n - 512;
    a->s[n_samples - 1].closed_at = a->end_block;
    /* some writers pad to 10 KiB records, as tarfile does */
    static const uint8_t zero_block[512];
    while (a->tar.n % 10240) tb_put(&a->tar, zero_block, 512);
}

static void free_archive(archive *a) {
    for (int i = 0; i < a->n; i++)
        for (int k = 0; k < a->s[i].n; k++) free(a->s[i].m[k].data);
    free(a->tar.d);
}

/* ======================================================================
 * Reading back and comparing. */

typedef struct read_result {
    int opened, n;
    shard_sample s[MAX_SAMPLES];
    skip_counts skips;
    char err[512];
} read_result;

static void read_shard(const char *path, const shard_limits *lim, read_result *r) {
    memset(r, 0, sizeof *r);
    shard_reader *rd = shard_open(path, lim, r->err, sizeof r->err);
    if (!rd) return;
    r->opened = 1;
    shard_sample s;
    while (shard_next(rd, &s, &r->skips)) {
        if (r->n < MAX_SAMPLES) r->s[r->n] = s;
        else shard_sample_free(&s);
        r->n++;
    }
    shard_sample s2;
    CHECK(shard_next(rd, &s2, &r->skips) == 0 && s2.n_members == 0, "%s: shard_next after the end", path);
    shard_close(rd);
}

static void free_result(read_result *r) {
    for (int i = 0; i < r->n && i < MAX_SAMPLES; i++) shard_sample_free(&r->s[i]);
}

/* Sample got equals expected (key, members in tar order, bytes). */
static int same_sample(const shard_sample *got, const exp_sample *want, int64_t want_index, char *why, size_t n) {
    if (strcmp(got->key, want->key)) return snprintf(why, n, "key '%s', want '%s'", got->key, want->key), 0;
    if (got->index != want_index)
        return snprintf(why, n, "%s: index %lld, want %lld", want->key, (long long)got->index,
                        (long long)want_index), 0;
    if (got->n_members != want->n)
        return snprintf(why, n, "%s: %d members, want %d", want->key, got->n_members, want->n), 0;
    for (int k = 0; k < want->n; k++) {
        const shard_member *g = &got->members[k];
        const exp_member *w = &want->m[k];
        if (strcmp(g->ext, w->ext) || g->size != w->size || (w->size && memcmp(g->data, w->data, w->size)) ||
            g->data[g->size] != 0)
            return snprintf(why, n, "%s member %d: ext '%s' size %zu, want '%s' size %zu (or bytes differ)",
                            want->key, k, g->ext, g->size, w->ext, w->size), 0;
        if (shard_sample_member(got, w->ext) != g) return snprintf(why, n, "%s: lookup of '%s'", want->key, w->ext), 0;
    }
    return 1;
}

/* The first `count` expected samples, with their positions as indices. */
static void check_prefix(const char *what, const read_result *r, const archive *a, int count) {
    char why[512];
    CHECK(r->opened, "%s: open failed: %s", what, r->err);
    CHECK(r->n == count, "%s: %d samples, want %d", what, r->n, count);
    for (int i = 0; i < r->n && i < count; i++)
        CHECK(same_sample(&r->s[i], &a->s[i], i, why, sizeof why), "%s: sample %d: %s", what, i, why);
}

static int64_t total_skips(const skip_counts *c) {
    int64_t t = 0;
    for (int i = 0; i < SKIP_REASON_COUNT; i++) t += c->n[i];
    return t;
}

/* ======================================================================
 * Compression for the tests (independent of synth's writer). */

static void gzip_buf(const tbuf *in, tbuf *out) {
    z_stream z = {0};
    uLong bound;
    deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
    bound = deflateBound(&z, (uLong)in->n) + 64;
    out->d = tl_alloc(bound);
    z.next_in = in->d;
    z.avail_in = (uInt)in->n;
    z.next_out = out->d;
    z.avail_out = (uInt)bound;
    CHECK(deflate(&z, Z_FINISH) == Z_STREAM_END, "test gzip failed");
    out->n = bound - z.avail_out;
    deflateEnd(&z);
}

static void zstd_buf(const tbuf *in, tbuf *out) {
    size_t bound = ZSTD_compressBound(in->n);
    out->d = tl_alloc(bound);
    out->n = ZSTD_compress(out->d, bound, in->d, in->n, 3);
    CHECK(!ZSTD_isError(out->n), "test zstd failed");
}

/* How many bytes a decoder recovers from the first `cut` compressed bytes. */
static size_t recoverable(const uint8_t *d, size_t cut, int is_zstd, size_t full) {
    uint8_t *out = tl_alloc(full + 1);
    size_t got = 0;
    if (is_zstd) {
        ZSTD_DStream *zs = ZSTD_createDStream();
        ZSTD_inBuffer ib = {d, cut, 0};
        ZSTD_outBuffer ob = {out, full, 0};
        for (int i = 0; i < 1000; i++) {
            size_t before = ob.pos, in_before = ib.pos;
            if (ZSTD_isError(ZSTD_decompressStream(zs, &ob, &ib))) break;
            if (ob.pos == before && ib.pos == in_before) break;
        }
        got = ob.pos;
        ZSTD_freeDStream(zs);
    } else {
        z_stream z = {0};
        inflateInit2(&z, 15 + 32);
        z.next_in = (Bytef *)d;
        z.avail_in = (uInt)cut;
        z.next_out = out;
        z.avail_out = (uInt)full;
        inflate(&z, Z_SYNC_FLUSH);
        got = full - z.avail_out;
        inflateEnd(&z);
    }
    free(out);
    return got;
}

/* ======================================================================
 * Tests. */

static void test_roundtrip(void) {
    const char *names[] = {"rt.tar", "rt.tar.gz", "rt.tar.zst"};
    for (int style = -1; style < ST_COUNT; style++) {
        archive a;
        make_archive(&a, 12 + (int)rng_int(10), style);
        for (int c = 0; c < 3; c++) {
            char path[512], what[64];
            tbuf z = {0};
            if (c == 1) gzip_buf(&a.tar, &z);
            if (c == 2) zstd_buf(&a.tar, &z);
            tmp_path(path, sizeof path, names[c]);
            write_file(path, c ? z.d : a.tar.d, c ? z.n : a.tar.n);
            free(z.d);
            read_result r;
            read_shard(path, NULL, &r);
            snprintf(what, sizeof what, "roundtrip style %d %s", style, names[c]);
            check_prefix(what, &r, &a, a.n);
            char sk[256];
            CHECK(total_skips(&r.skips) == 0, "%s: skips counted on a clean shard: %s", what,
                  skip_counts_str(&r.skips, sk, sizeof sk));
            free_result(&r);
        }
        free_archive(&a);
    }
}

/* Expected after a cut at `avail` bytes: samples closed by then. */
static int closed_before(const archive *a, size_t avail) {
    int k = 0;
    while (k < a->n && a->s[k].closed_at <= avail) k++;
    return k;
}

static void check_cut(const archive *a, const char *path, size_t avail, const char *what) {
    read_result r;
    read_shard(path, NULL, &r);
    if (avail < 512) {
        CHECK(!r.opened && strstr(r.err, path), "%s: a shard of %zu bytes opened (err '%s')", what, avail, r.err);
        return;
    }
    int want = closed_before(a, avail);
    int64_t want_trunc = avail < a->end_block;
    check_prefix(what, &r, a, want);
    CHECK(r.skips.n[SKIP_TRUNCATED_SHARD] == want_trunc && total_skips(&r.skips) == want_trunc,
          "%s: %zu bytes: truncated_shard=%lld (want %lld), %lld skips in all", what, avail,
          (long long)r.skips.n[SKIP_TRUNCATED_SHARD], (long long)want_trunc, (long long)total_skips(&r.skips));
    free_result(&r);
}

static void test_truncation(void) {
    archive a;
    char path[512], what[96];
    make_archive(&a, 10, -1);
    tmp_path(path, sizeof path, "cut.tar");
    /* every block edge, an offset inside every block, and each sample's closing offset +-1 */
    for (size_t cut = 0; cut <= a.end_block + 512; cut += 512) {
        size_t cuts[2] = {cut, cut + 1 + (size_t)rng_int(511)};
        for (int k = 0; k < 2; k++) {
            if (cuts[k] > a.tar.n) continue;
            write_file(path, a.tar.d, cuts[k]);
            snprintf(what, sizeof what, "plain cut at %zu", cuts[k]);
            check_cut(&a, path, cuts[k], what);
        }
    }
    for (int i = 0; i < a.n; i++)
        for (int d = -1; d <= 0; d++) {
            size_t cut = a.s[i].closed_at + (size_t)d;
            write_file(path, a.tar.d, cut);
            snprintf(what, sizeof what, "plain cut at sample %d's end %+d", i, d);
            check_cut(&a, path, cut, what);
        }
    for (int c = 0; c < 2; c++) {
        tbuf z = {0};
        c ? zstd_buf(&a.tar, &z) : gzip_buf(&a.tar, &z);
        tmp_path(path, sizeof path, c ? "cut.tar.zst" : "cut.tar.gz");
        for (int t = 0; t < 40; t++) {
            size_t cut = t < 4 ? (size_t)t * 7 : (size_t)rng_int((int64_t)z.n);
            write_file(path, z.d, cut);
            size_t avail = recoverable(z.d, cut, c, a.tar.n);
            snprintf(what, sizeof what, "%s cut at %zu of %zu (%zu bytes recoverable)", c ? "zstd" : "gzip", cut, z.n,
                     avail);
            check_cut(&a, path, avail, what);
        }
        free(z.d);
    }
    free_archive(&a);
}

/* Removes member k of sample i from the expectation (and the sample when it
 * becomes empty). */
static void drop_member(archive *a, int i, int k) {
    exp_sample *s = &a->s[i];
    free(s->m[k].data);
    memmove(&s->m[k], &s->m[k + 1], (size_t)(s->n - k - 1) * sizeof s->m[0]);
    if (--s->n == 0) {
        memmove(&a->s[i], &a->s[i + 1], (size_t)(a->n - i - 1) * sizeof a->s[0]);
        a->n--;
    }
}

static void expect_damage(archive *a, const char *what, skip_reason reason, int64_t count) {
    char path[512];
    read_result r;
    tmp_path(path, sizeof path, "damaged.tar");
    write_file(path, a->tar.d, a->tar.n);
    read_shard(path, NULL, &r);
    check_prefix(what, &r, a, a->n);
    CHECK(r.skips.n[reason] == count && total_skips(&r.skips) == count, "%s: %s=%lld (want %lld), %lld skips", what,
          skip_reason_name(reason), (long long)r.skips.n[reason], (long long)count, (long long)total_skips(&r.skips));
    free_result(&r);
}

/* A member's header damaged in one of several ways: that member is lost,
 * one bad_header counted, everything else read. */
static void test_bad_headers(void) {
    for (int kind = 0; kind < 4; kind++) {
        archive a;
        make_archive(&a, 10, kind == 2 ? ST_B256 : -1);
        int i = 1 + (int)rng_int(a.n - 1), k = (int)rng_int(a.s[i].n);
        uint8_t *h = a.tar.d + a.s[i].m[k].header_at;
        const char *what = "";
        if (kind == 0) { /* a flipped name byte: checksum mismatch */
            h[3] ^= 0x20;
            what = "checksum mismatch";
        } else if (kind == 1) { /* '9' in the octal size, checksum fixed */
            if (h[124] & 0x80) make_header(h, "x.txt", '0', 1, ST_USTAR);
            h[130] = '9';
            finish_checksum(h);
            what = "invalid octal size";
        } else if (kind == 2) { /* negative base-256 size */
            h[124] = 0xff;
            finish_checksum(h);
            what = "negative base-256 size";
        } else { /* a checksum that is not even octal */
            memcpy(h + 148, "12x4567", 7);
            what = "garbage checksum field";
        }
        drop_member(&a, i, k);
        expect_damage(&a, what, SKIP_BAD_HEADER, 1);
        free_archive(&a);
    }
}

/* A damaged PAX header or malformed PAX records: bad_header, and the member
 * is then read by its ustar fields (a short name keeps it intact). */
static void test_bad_pax(void) {
    pax_may_zero_size = 0;
    for (int kind = 0; kind < 2; kind++) {
        archive a;
        memset(&a, 0, sizeof a);
        a.n = 3;
        for (int i = 0; i < 3; i++) {
            exp_sample *s = &a.s[i];
            snprintf(s->key, sizeof s->key, "p%d", i);
            s->n = 1;
            snprintf(s->m[0].ext, 32, "txt");
            s->m[0].size = 5;
            s->m[0].data = (uint8_t *)strdup("hello");
            size_t pax_at = a.tar.n;
            char name[32];
            snprintf(name, sizeof name, "p%d.txt", i);
            tw_entry(&a.tar, name, '0', "hello", 5, ST_PAX);
            if (i != 1) continue;
            uint8_t *ph = a.tar.d + pax_at, *rec = ph + 512;
            if (kind == 0) ph[0] ^= 1; /* checksum */
            else memcpy(rec, "99 path", 7); /* record length past the data */
        }
        tw_end(&a.tar);
        expect_damage(&a, kind ? "malformed PAX record" : "PAX header checksum", SKIP_BAD_HEADER, 1);
        free_archive(&a);
    }
    pax_may_zero_size = 1;
}

static void test_limits(void) {
    archive a;
    char path[512];
    make_archive(&a, 16, -1);
    tmp_path(path, sizeof path, "limits.tar");
    write_file(path, a.tar.d, a.tar.n);
    /* members over 600 bytes */
    shard_limits lim = {600, 0};
    read_result r;
    read_shard(path, &lim, &r);
    int64_t too_large = 0;
    archive b = a; /* shallow: expectations only */
    for (int i = b.n - 1; i >= 0; i--)
        for (int k = b.s[i].n - 1; k >= 0; k--)
            if (b.s[i].m[k].size > 600) {
                too_large++;
                exp_sample *s = &b.s[i];
                memmove(&s->m[k], &s->m[k + 1], (size_t)(s->n - k - 1) * sizeof s->m[0]);
                if (--s->n == 0) {
                    memmove(&b.s[i], &b.s[i + 1], (size_t)(b.n - i - 1) * sizeof b.s[0]);
                    b.n--;
                }
            }
    check_prefix("max_member_bytes 600", &r, &b, b.n);
    CHECK(r.skips.n[SKIP_MEMBER_TOO_LARGE] == too_large && total_skips(&r.skips) == too_large,
          "member_too_large=%lld, want %lld", (long long)r.skips.n[SKIP_MEMBER_TOO_LARGE], (long long)too_large);
    free_result(&r);
    /* samples with more than 2 members: dropped whole, one count each, positions kept */
    shard_limits lim2 = {0, 2};
    read_shard(path, &lim2, &r);
    int got = 0, dropped = 0;
    char why[512];
    for (int i = 0; i < a.n; i++) {
        if (a.s[i].n > 2) {
            dropped++;
            continue;
        }
        CHECK(got < r.n && same_sample(&r.s[got], &a.s[i], i, why, sizeof why), "max_members 2: sample %d: %s", i,
              got < r.n ? why : "missing");
        got++;
    }
    CHECK(r.n == got && r.skips.n[SKIP_MEMBER_TOO_LARGE] == dropped && total_skips(&r.skips) == dropped,
          "max_members 2: %d samples (want %d), member_too_large=%lld (want %d)", r.n, got,
          (long long)r.skips.n[SKIP_MEMBER_TOO_LARGE], dropped);
    free_result(&r);
    free_archive(&a);
}

/* A base-256 size of 2^40 near the end: skipped as too large, then the
 * shard ends inside it (truncated); the samples before it are delivered. */
static void test_absurd_size(void) {
    archive a;
    char path[512];
    make_archive(&a, 5, ST_USTAR);
    a.tar.n = a.end_block - 512; /* drop the end blocks and padding */
    uint8_t h[512];
    make_header(h, "zz_huge.bin", '0', 0, ST_USTAR);
    h[124] = 0x80;
    memset(h + 125, 0, 11);
    h[130] = 1; /* 2^40 */
    finish_checksum(h);
    tb_put(&a.tar, h, 512);
    tb_put(&a.tar, "only a little data", 18);
    tmp_path(path, sizeof path, "absurd.tar");
    write_file(path, a.tar.d, a.tar.n);
    read_result r;
    read_shard(path, NULL, &r);
    check_prefix("absurd size", &r, &a, a.n);
    CHECK(r.skips.n[SKIP_MEMBER_TOO_LARGE] == 1 && r.skips.n[SKIP_TRUNCATED_SHARD] == 1 && total_skips(&r.skips) == 2,
          "absurd size: too_large=%lld truncated=%lld", (long long)r.skips.n[SKIP_MEMBER_TOO_LARGE],
          (long long)r.skips.n[SKIP_TRUNCATED_SHARD]);
    free_result(&r);
    free_archive(&a);
}

static void expect_unreadable(const char *path, const char *what, const char *want_msg) {
    char err[512] = "";
    shard_reader *r = shard_open(path, NULL, err, sizeof err);
    CHECK(!r && strstr(err, path) && strstr(err, want_msg), "%s: want an error with '%s', got '%s'", what, want_msg,
          err);
    shard_close(r);
}

static void test_not_shards(void) {
    char path[512];
    tmp_path(path, sizeof path, "empty.tar");
    write_file(path, "", 0);
    expect_unreadable(path, "zero-byte file", "empty");
    tmp_path(path, sizeof path, "text.tar");
    char text[2000];
    memset(text, 'x', sizeof text);
    write_file(path, text, sizeof text);
    expect_unreadable(path, "text file", "not a tar");
    write_file(path, "tiny", 4);
    expect_unreadable(path, "4-byte file", "not a tar");
    tmp_path(path, sizeof path, "a.tar.xz");
    write_file(path, "\xfd" "7zXZ\0rest", 10);
    expect_unreadable(path, "xz file", "xz");
    tmp_path(path, sizeof path, "garbage.tar.gz");
    write_file(path, "\x1f\x8b\x08\x00garbage garbage garbage", 27);
    expect_unreadable(path, "corrupt gzip", "gzip");
    expect_unreadable(tmp_dir, "directory", "directory");
    tmp_path(path, sizeof path, "missing.tar");
    expect_unreadable(path, "missing file", "cannot open");
    /* an empty archive (end blocks only): opens, no samples, nothing counted */
    static const uint8_t zeros[10240];
    tmp_path(path, sizeof path, "empty_archive.tar");
    write_file(path, zeros, sizeof zeros);
    read_result r;
    read_shard(path, NULL, &r);
    CHECK(r.opened && r.n == 0 && total_skips(&r.skips) == 0, "empty archive: opened %d, %d samples", r.opened, r.n);
}

/* ---- Python tarfile fixtures ---- */

static void check_fixture(const char *name, const cJSON *samples) {
    char path[700], what[128];
    snprintf(path, sizeof path, "%s/%s", fixture_dir, name);
    read_result r;
    read_shard(path, NULL, &r);
    int n = cJSON_GetArraySize(samples);
    CHECK(r.opened && r.n == n, "fixture %s: %d samples, want %d (%s)", name, r.n, n, r.err);
    CHECK(total_skips(&r.skips) == 0, "fixture %s: skips counted", name);
    for (int i = 0; i < n && i < r.n; i++) {
        const cJSON *s = cJSON_GetArrayItem(samples, i), *ms = cJSON_GetObjectItem(s, "members");
        const char *key = cJSON_GetObjectItem(s, "key")->valuestring;
        snprintf(what, sizeof what, "fixture %s sample %d (%s)", name, i, key);
        CHECK(!strcmp(r.s[i].key, key) && r.s[i].index == i, "%s: key '%s' index %lld", what, r.s[i].key,
              (long long)r.s[i].index);
        CHECK(r.s[i].n_members == cJSON_GetArraySize(ms), "%s: %d members", what, r.s[i].n_members);
        for (int k = 0; k < r.s[i].n_members && k < cJSON_GetArraySize(ms); k++) {
            const cJSON *m = cJSON_GetArrayItem(ms, k);
            const shard_member *g = &r.s[i].members[k];
            uLong crc = crc32(0, g->data, (uInt)g->size);
            CHECK(!strcmp(g->ext, cJSON_GetObjectItem(m, "ext")->valuestring) &&
                      (double)g->size == cJSON_GetObjectItem(m, "size")->valuedouble &&
                      (double)crc == cJSON_GetObjectItem(m, "crc32")->valuedouble,
                  "%s member %d: ext %s size %zu crc %lu", what, k, g->ext, g->size, (unsigned long)crc);
        }
    }
    free_result(&r);
}

static void test_fixtures(void) {
    char path[700];
    size_t n;
    snprintf(path, sizeof path, "%s/expected.json", fixture_dir);
    char *text = (char *)tl_read_file(path, &n);
    CHECK(text != NULL, "cannot read %s", path);
    if (!text) return;
    cJSON *j = cJSON_Parse(text), *f;
    CHECK(j && cJSON_GetArraySize(j) == 4, "expected.json: 4 fixtures");
    cJSON_ArrayForEach(f, j) check_fixture(f->string, f);
    cJSON_Delete(j);
    free(text);
}

/* ---- shard_expand ---- */

static void expect_paths(const char *spec, const char *const *want, int n) {
    char **paths, err[512] = "";
    int64_t got = shard_expand(spec, &paths, err, sizeof err);
    int ok = got == n;
    for (int i = 0; ok && i < n; i++) ok = !strcmp(paths[i], want[i]);
    CHECK(ok, "shard_expand('%s'): %lld paths%s%s (first '%s', want '%s')", spec, (long long)got, err[0] ? ": " : "",
          err, got > 0 ? paths[0] : "", n ? want[0] : "");
    if (got > 0) shard_paths_free(paths, got);
}

static void expect_expand_error(const char *spec, const char *want_msg) {
    char **paths = (char **)1, err[512] = "";
    int64_t got = shard_expand(spec, &paths, err, sizeof err);
    CHECK(got == -1 && paths == NULL && strstr(err, want_msg), "shard_expand('%s'): %lld, err '%s' (want '%s')", spec,
          (long long)got, err, want_msg);
}

static void test_expand(void) {
    char dir[300], spec[600], p[12][400];
    const char *files[] = {"x9.tar", "b.tar", "x10.tar", "a.tar", "c.tgz"};
    snprintf(dir, sizeof dir, "%s/globdir", tmp_dir);
    mkdir(dir, 0755);
    for (int i = 0; i < 5; i++) {
        snprintf(p[0], sizeof p[0], "%s/%s", dir, files[i]);
        write_file(p[0], "x", 1);
    }
    const char *sorted[] = {"a.tar", "b.tar", "x10.tar", "x9.tar"};
    const char *want[12];
    for (int i = 0; i < 4; i++) snprintf(p[i], sizeof p[i], "%s/%s", dir, sorted[i]), want[i] = p[i];
    snprintf(spec, sizeof spec, "%s/*.tar", dir);
    expect_paths(spec, want, 4);
    snprintf(p[4], sizeof p[4], "%s/x10.tar", dir);
    snprintf(p[5], sizeof p[5], "%s/x9.tar", dir);
    const char *want_x[] = {p[4], p[5], "plain/path.tar"};
    snprintf(spec, sizeof spec, "%s/x?*.tar,plain/path.tar", dir);
    expect_paths(spec, want_x, 3);
    snprintf(spec, sizeof spec, "%s/{a,x1}*.tar", dir);
    const char *want_ax[] = {p[0], p[4]};
    expect_paths(spec, want_ax, 2);
    const char *r1[] = {"s/00008.tar", "s/00009.tar", "s/00010.tar", "s/00011.tar"};
    expect_paths("s/{00008..00011}.tar", r1, 4);
    const char *r2[] = {"8", "9", "10"};
    expect_paths("{8..10}", r2, 3);
    const char *r3[] = {"01", "02", "03"};
    expect_paths("{1..03}", r3, 3);
    const char *r4[] = {"a3", "a2", "a1", "b"};
    expect_paths("a{3..1},b", r4, 4);
    const char *r5[] = {"x/0.tar", "x/1.tar", "y/0.tar", "y/1.tar", "z.tar"};
    expect_paths("{x,y}/{0..1}.tar,z.tar", r5, 5);
    const char *r6[] = {"a.tar", "b.tar"};
    expect_paths("a.tar,b.tar", r6, 2);
    char **paths, err[256];
    int64_t n = shard_expand("big/{000000..099999}.tar", &paths, err, sizeof err);
    CHECK(n == 100000 && !strcmp(paths[0], "big/000000.tar") && !strcmp(paths[99999], "big/099999.tar"),
          "large range: %lld", (long long)n);
    if (n > 0) shard_paths_free(paths, n);
    snprintf(spec, sizeof spec, "%s/*.nothing", dir);
    expect_expand_error(spec, "matches no files");
    expect_expand_error("s/{1..}.tar", "bad brace range");
    expect_expand_error("s/{a..c}.tar", "bad brace range");
    expect_expand_error("s/{1..2.tar", "unbalanced");
    expect_expand_error("s/1..2}.tar", "unbalanced");
    expect_expand_error("a.tar,,b.tar", "empty item");
    expect_expand_error("", "empty");
    expect_expand_error("{0..999999999999}", "more than");
}

/* ---- base64 ---- */

static void test_base64(void) {
    const char *plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    const char *coded[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    for (int i = 0; i < 7; i++) { /* RFC 4648 test vectors */
        size_t n;
        char *e = base64_encode((const uint8_t *)plain[i], strlen(plain[i]), &n);
        CHECK(e && !strcmp(e, coded[i]) && n == strlen(coded[i]) && base64_encoded_len(strlen(plain[i])) == n,
              "base64_encode('%s') = '%s'", plain[i], e);
        free(e);
        uint8_t *d;
        CHECK(!base64_decode(coded[i], strlen(coded[i]), &d, &n) && n == strlen(plain[i]) && !memcmp(d, plain[i], n),
              "base64_decode('%s')", coded[i]);
        free(d);
    }
    for (int t = 0; t < 50; t++) { /* random round trips, with whitespace and missing padding */
        size_t n = (size_t)rng_int(300), m, k;
        uint8_t *src = tl_alloc(n), *back;
        for (size_t i = 0; i < n; i++) src[i] = (uint8_t)rng_u64();
        char *e = base64_encode(src, n, &m);
        char *spaced = tl_alloc(2 * m + 2);
        size_t o = 0;
        for (size_t i = 0; i < m; i++) {
            if (t % 2 && e[i] == '=') break;
            spaced[o++] = e[i];
            if (i % 76 == 75) spaced[o++] = '\n';
        }
        CHECK(!base64_decode(spaced, o, &back, &k) && k == n && (n == 0 || !memcmp(back, src, n)),
              "base64 round trip of %zu bytes", n);
        free(back);
        free(e);
        free(spaced);
        free(src);
    }
    const char *bad[] = {"Zg=", "Z", "Zm9v!", "Zg==Zg==", "=Zg=", "Zh==", "Zm9vYmF=x", "Zg==="};
    for (int i = 0; i < 8; i++) {
        uint8_t *d = (uint8_t *)1;
        size_t n;
        CHECK(base64_decode(bad[i], strlen(bad[i]), &d, &n) == -1 && d == NULL, "base64_decode('%s') accepted",
              bad[i]);
    }
}

/* ---- synthetic shards ---- */

static const struct {
    const char *name;
    uint8_t rgb[3];
} palette[] = {
    {"red", {220, 30, 30}},     {"green", {30, 170, 50}},    {"blue", {30, 60, 220}},  {"yellow", {240, 220, 40}},
    {"orange", {245, 140, 20}}, {"purple", {130, 40, 170}},  {"white", {245, 245, 245}}, {"black", {15, 15, 15}},
    {"pink", {245, 150, 200}},  {"cyan", {40, 210, 220}},
};

static const uint8_t *colour(const char *name) {
    for (size_t i = 0; i < sizeof palette / sizeof *palette; i++)
        if (!strcmp(palette[i].name, name)) return palette[i].rgb;
    return NULL;
}

/* Mean of a 3x3 patch around (x, y) within tol of the colour. */
static int patch_is(const image_rgb *img, int64_t x, int64_t y, const uint8_t *want, int tol) {
    for (int c = 0; c < 3; c++) {
        int sum = 0;
        for (int dy = -1; dy <= 1; dy++)
            for (int dx = -1; dx <= 1; dx++) sum += img->data[((y + dy) * img->width + x + dx) * 3 + c];
        if (abs(sum / 9 - want[c]) > tol) return 0;
    }
    return 1;
}

/* Finds "a FG SHAPE on a BG background" or "... background fading from BG
 * to BG2" in text and checks the image's centre and corners. */
static int image_matches_caption(const image_rgb *img, const char *text, char *why, size_t n) {
    const char *p = strstr(text, "a ");
    char fg[16], shape[16], bg[16], bg2[16] = "";
    while (p && sscanf(p, "a %15s %15s on a", fg, shape) != 2) p = strstr(p + 1, "a ");
    const char *on = p ? strstr(p, " on a ") : NULL;
    if (!on) return snprintf(why, n, "no caption in '%s'", text), 0;
    if (sscanf(on, " on a background fading from %15s to %15[a-z]", bg, bg2) != 2 &&
        sscanf(on, " on a %15s background", bg) != 1)
        return snprintf(why, n, "cannot parse '%s'", text), 0;
    const uint8_t *cf = colour(fg), *cb = colour(bg), *cb2 = bg2[0] ? colour(bg2) : cb;
    if (!cf || !cb || !cb2) return snprintf(why, n, "unknown colour in '%s'", text), 0;
    int64_t w = img->width, h = img->height;
    int ok = patch_is(img, w / 2, h / 2, cf, 40) && patch_is(img, 2, 2, cb, 40) && patch_is(img, w - 3, 2, cb, 40) &&
             patch_is(img, 2, h - 3, cb2, 40) && patch_is(img, w - 3, h - 3, cb2, 40);
    if (!ok) snprintf(why, n, "%lldx%lld image does not look like '%s'", (long long)w, (long long)h, text);
    return ok;
}

static void check_laion_sample(const shard_sample *s, const char *what) {
    const shard_member *img = NULL, *txt = shard_sample_member(s, "txt"), *js = shard_sample_member(s, "json");
    const char *exts[] = {"jpg", "png", "webp"};
    for (int i = 0; i < 3 && !img; i++) img = shard_sample_member(s, exts[i]);
    CHECK(img && txt && js && s->n_members == 3, "%s %s: members", what, s->key);
    if (!img || !txt || !js) return;
    image_rgb im;
    char err[256], why[300];
    int dec = image_decode(img->data, img->size, NULL, &im, err, sizeof err);
    CHECK(dec == 0, "%s %s: image does not decode: %s", what, s->key, err);
    cJSON *j = cJSON_ParseWithLength((const char *)js->data, js->size);
    CHECK(j && !strcmp(cJSON_GetObjectItem(j, "caption")->valuestring, (const char *)txt->data) &&
              !strcmp(cJSON_GetObjectItem(j, "key")->valuestring, s->key),
          "%s %s: json caption/key differ from the txt member", what, s->key);
    if (dec == 0) {
        CHECK(j && cJSON_GetObjectItem(j, "width")->valuedouble == (double)im.width &&
                  cJSON_GetObjectItem(j, "height")->valuedouble == (double)im.height,
              "%s %s: json size differs from the image's %lldx%lld", what, s->key, (long long)im.width,
              (long long)im.height);
        CHECK(image_matches_caption(&im, (const char *)txt->data, why, sizeof why), "%s %s: %s", what, s->key, why);
        image_free(&im);
    }
    cJSON_Delete(j);
}

static void check_mmc4_image(const cJSON *doc, const cJSON *info, int i, const char *what) {
    const cJSON *texts = cJSON_GetObjectItem(doc, "text_list"), *matrix = cJSON_GetObjectItem(doc, "similarity_matrix");
    const char *b64 = cJSON_GetObjectItem(info, "image_base64")->valuestring;
    int t = cJSON_GetObjectItem(info, "matched_text_index")->valueint;
    double sim = cJSON_GetObjectItem(info, "matched_sim")->valuedouble;
    const cJSON *row = cJSON_GetArrayItem(matrix, i);
    uint8_t *d;
    size_t n;
    image_rgb im;
    char err[256], why[300];
    CHECK(cJSON_GetArraySize(row) == cJSON_GetArraySize(texts) && cJSON_GetArrayItem(row, t)->valuedouble == sim,
          "%s image %d: similarity row", what, i);
    for (int j = 0; j < cJSON_GetArraySize(row); j++)
        CHECK(j == t || cJSON_GetArrayItem(row, j)->valuedouble < sim, "%s image %d: row max not at the match", what,
              i);
    CHECK(!base64_decode(b64, strlen(b64), &d, &n), "%s image %d: base64", what, i);
    int dec = image_decode(d, n, NULL, &im, err, sizeof err);
    CHECK(dec == 0, "%s image %d: %s", what, i, err);
    if (dec == 0) {
        const char *sentence = cJSON_GetArrayItem(texts, t)->valuestring;
        CHECK(image_matches_caption(&im, sentence, why, sizeof why), "%s image %d: %s", what, i, why);
        image_free(&im);
    }
    free(d);
}

static void check_mmc4_sample(const shard_sample *s, const char *what) {
    const shard_member *js = shard_sample_member(s, "json");
    CHECK(js && s->n_members == 1, "%s %s: one json member", what, s->key);
    cJSON *doc = js ? cJSON_ParseWithLength((const char *)js->data, js->size) : NULL, *info;
    CHECK(doc != NULL, "%s %s: json parses", what, s->key);
    if (!doc) return;
    int n = cJSON_GetArraySize(cJSON_GetObjectItem(doc, "image_info")), i = 0;
    CHECK(n >= 2 && n <= 3 && cJSON_GetArraySize(cJSON_GetObjectItem(doc, "similarity_matrix")) == n,
          "%s %s: %d images", what, s->key, n);
    cJSON_ArrayForEach(info, cJSON_GetObjectItem(doc, "image_info")) check_mmc4_image(doc, info, i++, what);
    cJSON_Delete(doc);
}

static void test_synth(void) {
    synth_options o = {.shards = 2, .docs = 5, .seed = 7, .image_size = 40, .min_images = 2, .max_images = 3};
    const synth_image_format fmts[] = {SYNTH_IMG_MIXED, SYNTH_IMG_WEBP, SYNTH_IMG_JPEG, SYNTH_IMG_PNG};
    for (int layout = 0; layout < 2; layout++)
        for (int c = 0; c < 3; c++) {
            char dir[400], name[64], path[500], what[520], err[256];
            o.layout = (synth_layout)layout;
            o.compress = (synth_compress)c;
            o.image_format = fmts[(layout * 3 + c) % 4];
            snprintf(dir, sizeof dir, "%s/synth_%d_%d", tmp_dir, layout, c);
            CHECK(synth_write(&o, dir, err, sizeof err) == 2, "synth_write: %s", err);
            for (int64_t sh = 0; sh < 2; sh++) {
                synth_shard_name(&o, sh, name, sizeof name);
                snprintf(path, sizeof path, "%s/%s", dir, name);
                read_result r;
                read_shard(path, NULL, &r);
                snprintf(what, sizeof what, "synth %s", path);
                CHECK(r.opened && r.n == 5 && total_skips(&r.skips) == 0, "%s: %d samples (%s)", what, r.n, r.err);
                for (int i = 0; i < r.n && i < MAX_SAMPLES; i++)
                    layout ? check_mmc4_sample(&r.s[i], what) : check_laion_sample(&r.s[i], what);
                free_result(&r);
            }
        }
    /* deterministic: the same seed gives the same bytes, another seed not */
    char d1[400], d2[400], d3[400], p[500], err[256];
    o.layout = SYNTH_MMC4;
    o.compress = SYNTH_COMPRESS_GZIP;
    o.image_format = SYNTH_IMG_MIXED;
    snprintf(d1, sizeof d1, "%s/det1", tmp_dir);
    snprintf(d2, sizeof d2, "%s/det2", tmp_dir);
    snprintf(d3, sizeof d3, "%s/det3", tmp_dir);
    synth_write(&o, d1, err, sizeof err);
    synth_write(&o, d2, err, sizeof err);
    o.seed = 8;
    synth_write(&o, d3, err, sizeof err);
    size_t n1, n2, n3;
    snprintf(p, sizeof p, "%s/000000001.tar.gz", d1);
    uint8_t *b1 = tl_read_file(p, &n1);
    snprintf(p, sizeof p, "%s/000000001.tar.gz", d2);
    uint8_t *b2 = tl_read_file(p, &n2);
    snprintf(p, sizeof p, "%s/000000001.tar.gz", d3);
    uint8_t *b3 = tl_read_file(p, &n3);
    CHECK(b1 && b2 && b3 && n1 == n2 && !memcmp(b1, b2, n1), "synth: same seed, different bytes");
    CHECK(b1 && b3 && (n1 != n3 || memcmp(b1, b3, n1)), "synth: another seed, same bytes");
    free(b1);
    free(b2);
    free(b3);
    o.image_size = 2;
    CHECK(synth_write(&o, d1, err, sizeof err) == -1 && strstr(err, "image-size"), "synth: bad size accepted");
}

/* ---- aimc shards inspect ---- */

/* `aimc shards ARGS...` in a child; its stdout and stderr into out. */
static int run_shards_cmd(int argc, char **argv, char *out, size_t len) {
    return tl_run_command(cmd_shards, argc, argv, out, len);
}

static void test_inspect(void) {
    char dir[400], spec[600], out[8192], path[500];
    snprintf(dir, sizeof dir, "%s/inspect", tmp_dir);
    char *synth_argv[] = {"shards", "synth", "--out", dir, "--docs", "4", "--shards", "2", "--image-size", "24",
                          "--image-format", "png"};
    CHECK(run_shards_cmd(12, synth_argv, out, sizeof out) == 0 && strstr(out, "wrote 2 laion shards"),
          "aimc shards synth: %s", out);
    /* a truncated copy of shard 0 and an unreadable file */
    size_t n;
    snprintf(path, sizeof path, "%s/00000.tar", dir);
    uint8_t *d = tl_read_file(path, &n);
    snprintf(path, sizeof path, "%s/00002.tar", dir);
    write_file(path, d, n / 2);
    snprintf(path, sizeof path, "%s/00003.tar", dir);
    write_file(path, "", 0);
    free(d);
    read_result r;
    snprintf(path, sizeof path, "%s/00002.tar", dir);
    read_shard(path, NULL, &r); /* how many samples survive the cut */
    int cut_n = r.n;
    free_result(&r);
    snprintf(spec, sizeof spec, "%s/{00000..00003}.tar", dir);
    char *inspect_argv[] = {"shards", "inspect", spec, "--decode"};
    int rc = run_shards_cmd(4, inspect_argv, out, sizeof out);
    CHECK(rc == 0, "inspect exit %d: %s", rc, out);
    char cut_line[300], cut_members[64], total_line[64], total_formats[64];
    snprintf(cut_line, sizeof cut_line, "00002.tar: %d samples\n  formats: laion=%d\n", cut_n, cut_n);
    snprintf(cut_members, sizeof cut_members, "members: json=%d png=%d txt=%d\n  skips: truncated_shard=1\n",
             cut_n, cut_n, cut_n);
    snprintf(total_line, sizeof total_line, "total: 4 shards (1 unreadable), %d samples\n", 8 + cut_n);
    snprintf(total_formats, sizeof total_formats, "formats: laion=%d\n", 8 + cut_n);
    const char *want[] = {"00000.tar: 4 samples\n  formats: laion=4\n  members: json=4 png=4 txt=4\n  skips: none\n",
                          cut_line, cut_members, "00003.tar: unreadable: ", "empty file", total_line, total_formats,
                          "skips: shard_unreadable=1 truncated_shard=1\n"};
    CHECK(cut_n >= 1 && cut_n < 4, "the cut shard keeps %d samples", cut_n);
    for (int i = 0; i < 8; i++) CHECK(strstr(out, want[i]), "inspect output lacks '%s':\n%s", want[i], out);
    snprintf(spec, sizeof spec, "%s/*.none", dir);
    char *bad_argv[] = {"shards", "inspect", spec};
    CHECK(run_shards_cmd(3, bad_argv, out, sizeof out) == 1 && strstr(out, "matches no files"),
          "inspect of a glob matching nothing: %s", out);
}

/* aimc shards bench --loader (host/bench_loader.c) on the shards test_inspect
 * wrote: one line per worker count, images/s = episodes/s x (k + 1) (both
 * printed to 0.1), and one-line errors for a bad --workers list and a
 * missing --model. */
static void test_loader_bench(void) {
    char spec[600], model[512], out[8192];
    snprintf(spec, sizeof spec, "%s/inspect/{00000..00001}.tar", tmp_dir);
    FIXTURE_PATH("models/llava", model, sizeof model);
    char *argv[] = {"shards", "bench", "--loader", spec, "--model", model, "--workers", "1,2", "--episodes", "3",
                    "--k", "1"};
    int rc = run_shards_cmd(12, argv, out, sizeof out);
    CHECK(rc == 0 && strstr(out, "k = 1, 3 episodes per worker count"), "loader bench exit %d: %s", rc, out);
    const char *lines[] = {"  1 worker :", "  2 workers:"};
    for (int i = 0; i < 2; i++) {
        const char *at = strstr(out, lines[i]);
        double eps = -1, ips = -1;
        if (at) sscanf(at + strlen(lines[i]), "%lf episodes/s, %lf images/s", &eps, &ips);
        CHECK(eps > 0 && fabs(ips - 2 * eps) <= 0.16, "'%s': %g episodes/s, %g images/s:\n%s", lines[i], eps, ips,
              out);
    }
    char *bad_workers[] = {"shards", "bench", "--loader", spec, "--model", model, "--workers", "1,x"};
    CHECK(run_shards_cmd(8, bad_workers, out, sizeof out) == 1 && strstr(out, "--workers must be a list"),
          "bad --workers: %s", out);
    char *no_model[] = {"shards", "bench", "--loader", spec};
    CHECK(run_shards_cmd(4, no_model, out, sizeof out) == 1 && strstr(out, "needs --model"), "no --model: %s", out);
}

static void find_fixture_dir(void) { FIXTURE_PATH("shards", fixture_dir, sizeof fixture_dir); }

int main(void) {
    tests_begin("test_shards");
    snprintf(tmp_dir, sizeof tmp_dir, "/tmp/aimc_test_shards_XXXXXX");
    if (!mkdtemp(tmp_dir)) return 1;
    find_fixture_dir();
    test_base64();
    test_roundtrip();
    test_truncation();
    test_bad_headers();
    test_bad_pax();
    test_limits();
    test_absurd_size();
    test_not_shards();
    test_fixtures();
    test_expand();
    test_synth();
    test_inspect();
    test_loader_bench();
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_dir);
    if (getenv("AIMC_TEST_KEEP")) printf("kept %s\n", tmp_dir); /* for debugging */
    else if (system(cmd)) printf("note: could not remove %s\n", tmp_dir);
    return tests_done();
}
