/* The raw MMC4 layout (.jsonl documents + an image folder; data/shard.h)
 * read through the shard interface, document_parse and the loader exactly
 * as tar shards are:
 * - a file written here line by line (documents whose images are made by
 *   data/synth.h, blank lines, a malformed line, an over-long line, images
 *   missing / unreadable / oversized / unsafely named / named twice /
 *   embedded, more images than max_members, a last line without '\n'),
 *   plain, as two gzip members and as two zstd frames: every sample's key,
 *   index, document bytes and image members, every skip count, and
 *   document_parse on each sample, against what the test wrote;
 * - the compressed files cut at many points: exactly the lines that the
 *   test's own zlib / libzstd decoding of the cut bytes completes, and one
 *   truncated_shard when the cut falls inside a member / frame;
 * - shard_skip passes over exactly what shard_next delivers; files that
 *   cannot be opened (missing, empty, a folder, xz) are refused with a reason;
 * - synth's raw layout through the loader: the same episodes as synth's tar
 *   layout of the same seed (plain, gzip, zstd); after damage (deleted
 *   images, a malformed line, an over-long line) two ranks see disjoint
 *   documents whose union is every usable one, with the query image, its
 *   tokens and every skip count worked out here from the files; a cursor
 *   saved mid-file resumes to the identical sequence and counters; a
 *   missing image folder is a clear error, a vanished file a counted skip;
 * - aimc shards inspect on .jsonl files, with and without --mmc4-images. */
#include "../data/base64.h"
#include "../data/loader.h"
#include "../data/sample.h"
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
static tokenizer *tok;
static preprocess_config pp;

/* ---- files ------------------------------------------------------------------- */

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite(data, 1, n, f) == n, "cannot write %s", path);
    if (f) fclose(f);
}

static void append_file(const char *path, const char *text) {
    FILE *f = fopen(path, "ab");
    CHECK(f && fputs(text, f) >= 0, "cannot append to %s", path);
    if (f) fclose(f);
}

/* ======================================================================
 * Part 1: a hand-written file and its model. */

#define MAX_LINES 16
#define MAX_INFOS 12
#define MAX_BYTES 8192 /* shard_limits.max_member_bytes of this part */
#define MAX_MEMBERS 4

typedef struct want_image { /* one image_info entry as document_parse must see it */
    const uint8_t *data;     /* NULL: missing */
    size_t size;
} want_image;

typedef struct want_member {
    char name[48];
    const uint8_t *data;
    size_t size;
} want_member;

typedef struct line_model {
    size_t start, end;       /* the line's bytes: text[start, end); end = its '\n' (or the end of the text) */
    int terminated, doc;     /* doc: delivered as a sample */
    int64_t index;           /* documents before it (over-long lines included) */
    skip_counts skips;       /* what reading it counts */
    int bad_json;            /* document_parse must say SKIP_BAD_JSON */
    int n_members;
    want_member members[MAX_MEMBERS];
    int n_texts, n_images;
    const char *texts[4];
    want_image images[MAX_INFOS];
} line_model;

typedef struct corpus {
    char *text;
    size_t len;
    line_model lines[MAX_LINES];
    int n_lines;
    int64_t docs;
    char images[400];
    uint8_t *owned[32];
    int n_owned;
} corpus;

static void append_text(corpus *c, const char *s, size_t n) {
    c->text = realloc(c->text, c->len + n + 1);
    if (!c->text) exit(1);
    memcpy(c->text + c->len, s, n);
    c->len += n;
    c->text[c->len] = 0;
}

/* Appends one line; returns its model (to be completed for documents). */
static line_model *add_line(corpus *c, const char *s, int terminated, int doc, int too_long) {
    line_model *l = &c->lines[c->n_lines++];
    memset(l, 0, sizeof *l);
    l->start = c->len;
    append_text(c, s, strlen(s));
    l->end = c->len;
    l->terminated = terminated;
    if (terminated) append_text(c, "\n", 1);
    l->index = c->docs;
    if (doc || too_long) c->docs++;
    if (too_long) l->skips.n[SKIP_MEMBER_TOO_LARGE]++;
    l->doc = doc;
    if (doc) {
        snprintf(l->members[0].name, sizeof l->members[0].name, "json");
        l->members[0].data = (const uint8_t *)c->text + l->start; /* fixed up after the last append */
        l->members[0].size = l->end - l->start;
        l->n_members = 1;
    }
    return l;
}

/* An image file made by data/synth.h in the folder; returns its bytes. */
static const uint8_t *image_file(corpus *c, const char *name, synth_image_format f, size_t *n) {
    uint64_t st = rng_u64();
    synth_scene sc;
    synth_scene_random(&st, &sc);
    int64_t w = 18 + rng_int(10), h = 18 + rng_int(10);
    uint8_t *rgb = tl_alloc((size_t)(w * h * 3)), *enc = NULL;
    synth_render(&sc, w, h, rgb);
    char err[256], path[600];
    CHECK(!synth_encode(rgb, w, h, f, &enc, n, err, sizeof err), "synth_encode: %s", err);
    free(rgb);
    snprintf(path, sizeof path, "%s/%s", c->images, name);
    write_file(path, enc, *n);
    c->owned[c->n_owned++] = enc;
    return enc;
}

static cJSON *new_doc(int n_texts, const char *const *texts) {
    cJSON *d = cJSON_CreateObject(), *list = cJSON_AddArrayToObject(d, "text_list");
    for (int i = 0; i < n_texts; i++) cJSON_AddItemToArray(list, cJSON_CreateString(texts[i]));
    cJSON_AddArrayToObject(d, "image_info");
    cJSON_AddStringToObject(d, "url", "https://example.com/page");
    return d;
}

/* name NULL: no image_name field; b64: an image_base64 field. */
static void add_info(cJSON *doc, const char *name, int text_index, double sim, const char *b64) {
    cJSON *info = cJSON_CreateObject();
    if (name) cJSON_AddStringToObject(info, "image_name", name);
    cJSON_AddNumberToObject(info, "matched_text_index", text_index);
    cJSON_AddNumberToObject(info, "matched_sim", sim);
    if (b64) cJSON_AddStringToObject(info, "image_base64", b64);
    cJSON_AddItemToArray(cJSON_GetObjectItem(doc, "image_info"), info);
}

static line_model *add_doc_line(corpus *c, cJSON *doc, int terminated, int n_texts, const char *const *texts) {
    char *s = cJSON_PrintUnformatted(doc);
    line_model *l = add_line(c, s, terminated, 1, 0);
    free(s);
    cJSON_Delete(doc);
    l->n_texts = n_texts;
    for (int i = 0; i < n_texts; i++) l->texts[i] = texts[i];
    return l;
}

static void expect_member(line_model *l, const char *name, const uint8_t *d, size_t n) {
    want_member *m = &l->members[l->n_members++];
    snprintf(m->name, sizeof m->name, "%s", name);
    m->data = d, m->size = n;
}

static void expect_image(line_model *l, const uint8_t *d, size_t n) { l->images[l->n_images++] = (want_image){d, n}; }

static const char *const texts_a[] = {"A red square on a white background.", "Thanks for reading."};
static const char *const texts_b[] = {"First sentence.", "Second sentence.", "Third sentence."};
static const char *const texts_c[] = {"Five pictures of one thing."};
static const char *const texts_d[] = {"Un caf\xc3\xa9 \"noir\" \xe2\x98\x95 on a table.", "Fin."};

/* Document A: two images, both present. */
static void line_a(corpus *c) {
    size_t n1, n2;
    const uint8_t *a1 = image_file(c, "a1.png", SYNTH_IMG_PNG, &n1), *a2 = image_file(c, "a2.jpg", SYNTH_IMG_JPEG, &n2);
    cJSON *d = new_doc(2, texts_a);
    add_info(d, "a1.png", 0, 0.31, NULL);
    add_info(d, "a2.jpg", 1, 0.27, NULL);
    line_model *l = add_doc_line(c, d, 1, 2, texts_a);
    expect_member(l, "a1.png", a1, n1), expect_member(l, "a2.jpg", a2, n2);
    expect_image(l, a1, n1), expect_image(l, a2, n2);
}

/* A line longer than MAX_BYTES (valid JSON, an image that exists). */
static void line_long(corpus *c) {
    char *big = tl_alloc(MAX_BYTES + 2);
    memset(big, 'x', MAX_BYTES + 1);
    big[MAX_BYTES + 1] = 0;
    const char *texts[1] = {big};
    cJSON *d = new_doc(1, texts);
    add_info(d, "a1.png", 0, 0.3, NULL);
    char *s = cJSON_PrintUnformatted(d);
    add_line(c, s, 1, 0, 1);
    free(s), free(big);
    cJSON_Delete(d);
}

/* Document B: every per-image problem, and two images that are fine. */
static void line_b(corpus *c) {
    char path[600];
    size_t n_ok, n_emb, n_hidden;
    const uint8_t *ok = image_file(c, "b_ok.png", SYNTH_IMG_PNG, &n_ok);
    const uint8_t *emb = image_file(c, "b_emb_source.png", SYNTH_IMG_PNG, &n_emb);
    image_file(c, ".hidden.png", SYNTH_IMG_PNG, &n_hidden);
    snprintf(path, sizeof path, "%s/b_dir.png", c->images);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/b_fifo.png", c->images);
    CHECK(mkfifo(path, 0644) == 0, "mkfifo %s", path);
    uint8_t *big = tl_alloc(MAX_BYTES + 1);
    memset(big, 0x42, MAX_BYTES + 1);
    snprintf(path, sizeof path, "%s/b_big.png", c->images);
    write_file(path, big, MAX_BYTES + 1);
    free(big);
    snprintf(path, sizeof path, "%s/../escape.png", c->images);
    write_file(path, ok, n_ok); /* exists outside the folder: must not be read */
    char *b64 = base64_encode(emb, n_emb, NULL);
    cJSON *d = new_doc(3, texts_b);
    add_info(d, "b_missing.png", 0, 0.3, NULL); /* missing_image */
    add_info(d, "b_dir.png", 0, 0.3, NULL);     /* bad_image: a folder */
    add_info(d, "b_fifo.png", 1, 0.3, NULL);    /* bad_image: a FIFO */
    add_info(d, "b_big.png", 1, 0.3, NULL);     /* member_too_large */
    add_info(d, "../escape.png", 2, 0.3, NULL); /* missing_image: unsafe name */
    add_info(d, ".hidden.png", 2, 0.3, NULL);   /* missing_image: unsafe name */
    add_info(d, "", 2, 0.3, NULL);              /* missing_image: empty name */
    add_info(d, "b_ok.png", 0, 0.25, NULL);     /* read */
    add_info(d, "b_ok.png", 1, 0.26, NULL);     /* the same file: read once, nothing counted */
    add_info(d, "b_emb.png", 2, 0.2, b64);      /* embedded: not looked up */
    add_info(d, NULL, 2, 0.3, NULL);            /* no image_name: left to document_parse */
    free(b64);
    line_model *l = add_doc_line(c, d, 1, 3, texts_b);
    l->skips.n[SKIP_MISSING_IMAGE] = 4, l->skips.n[SKIP_BAD_IMAGE] = 2, l->skips.n[SKIP_MEMBER_TOO_LARGE] = 1;
    expect_member(l, "b_ok.png", ok, n_ok);
    for (int i = 0; i < 7; i++) expect_image(l, NULL, 0);
    expect_image(l, ok, n_ok), expect_image(l, ok, n_ok), expect_image(l, emb, n_emb), expect_image(l, NULL, 0);
}

/* Document C: five images, room for MAX_MEMBERS - 1 of them. */
static void line_c(corpus *c) {
    cJSON *d = new_doc(1, texts_c);
    const uint8_t *img[5];
    size_t n[5];
    for (int i = 0; i < 5; i++) {
        char name[32];
        snprintf(name, sizeof name, "c%d.webp", i);
        img[i] = image_file(c, name, SYNTH_IMG_WEBP, &n[i]);
        add_info(d, name, 0, 0.3, NULL);
    }
    line_model *l = add_doc_line(c, d, 1, 1, texts_c);
    l->skips.n[SKIP_MEMBER_TOO_LARGE] = 2;
    for (int i = 0; i < 5; i++) {
        char name[32];
        snprintf(name, sizeof name, "c%d.webp", i);
        if (i < MAX_MEMBERS - 1) expect_member(l, name, img[i], n[i]);
        expect_image(l, i < MAX_MEMBERS - 1 ? img[i] : NULL, i < MAX_MEMBERS - 1 ? n[i] : 0);
    }
}

/* Document D: non-ASCII text, a WebP image, no '\n' at the end of the file. */
static void line_d(corpus *c) {
    size_t n;
    const uint8_t *img = image_file(c, "d.webp", SYNTH_IMG_WEBP, &n);
    cJSON *d = new_doc(2, texts_d);
    add_info(d, "d.webp", 0, 0.29, NULL);
    line_model *l = add_doc_line(c, d, 0, 2, texts_d);
    expect_member(l, "d.webp", img, n);
    expect_image(l, img, n);
}

static void build_corpus(corpus *c) {
    memset(c, 0, sizeof *c);
    snprintf(c->images, sizeof c->images, "%s/hand/images", tmp_dir);
    char dir[400];
    snprintf(dir, sizeof dir, "%s/hand", tmp_dir);
    mkdir(dir, 0755), mkdir(c->images, 0755);
    line_a(c);
    add_line(c, "", 1, 0, 0);
    add_line(c, "  \t\r", 1, 0, 0);
    line_model *bad = add_line(c, "{\"text_list\": [\"cut\"], \"image_info\": [{\"image_name\": \"a1.png\"", 1, 1, 0);
    bad->bad_json = 1;
    line_long(c);
    line_b(c);
    line_c(c);
    line_d(c);
    for (int i = 0; i < c->n_lines; i++) /* the text moved while it grew */
        if (c->lines[i].doc) c->lines[i].members[0].data = (const uint8_t *)c->text + c->lines[i].start;
}

static void free_corpus(corpus *c) {
    for (int i = 0; i < c->n_owned; i++) free(c->owned[i]);
    free(c->text);
}

/* ---- reading it back ---------------------------------------------------------- */

static int same_sample(const line_model *l, const shard_sample *s, int line_no, int with_images, char *why, size_t n) {
    char key[32];
    snprintf(key, sizeof key, "%d", line_no);
    int members = with_images ? l->n_members : 1;
    if (!s->key || strcmp(s->key, key) || s->index != l->index || s->n_members != members)
        return snprintf(why, n, "key '%s' (want %s), index %lld (want %lld), %d members (want %d)",
                        s->key ? s->key : "", key, (long long)s->index, (long long)l->index, s->n_members, members),
               0;
    for (int i = 0; i < members; i++) {
        const want_member *w = &l->members[i];
        const shard_member *m = &s->members[i];
        if (strcmp(m->ext, w->name) || m->size != w->size || memcmp(m->data, w->data, w->size) || m->data[m->size])
            return snprintf(why, n, "member %d: '%s' %zu bytes, want '%s' %zu bytes", i, m->ext, m->size, w->name,
                            w->size),
                   0;
    }
    return 1;
}

/* document_parse on a sample against the model. */
static void check_document(const line_model *l, const shard_sample *s, const char *what) {
    sample_opts o = {.format = SAMPLE_FORMAT_MMC4};
    document doc;
    skip_reason why = SKIP_REASON_COUNT;
    char err[512] = "";
    int rc = document_parse(s, &o, &doc, &why, err, sizeof err);
    if (l->bad_json) {
        CHECK(rc == -1 && why == SKIP_BAD_JSON, "%s: malformed line: rc %d, %s", what, rc, err);
        return;
    }
    int ok = rc == 0 && doc.n_texts == l->n_texts && doc.n_images == l->n_images;
    for (int i = 0; ok && i < l->n_texts; i++) ok = !strcmp(doc.texts[i], l->texts[i]);
    for (int i = 0; ok && i < l->n_images; i++) {
        const want_image *w = &l->images[i];
        const doc_image *im = &doc.images[i];
        ok = w->data ? im->data && im->size == w->size && !memcmp(im->data, w->data, w->size)
                     : !im->data && im->missing == SKIP_MISSING_MEMBER;
        if (!ok) printf("  %s: image %d of line %s differs\n", what, i, s->key);
    }
    CHECK(ok, "%s: document_parse of line %s: rc %d (%s), %lld texts, %lld images", what, s->key, rc, err,
          (long long)doc.n_texts, (long long)doc.n_images);
    if (rc == 0) document_free(&doc);
}

/* Reads path; the expected samples are the model's lines that end within
 * avail decoded bytes (the unterminated last line only when the data is
 * whole), plus one truncated_shard when truncated. */
static void check_reading(const corpus *c, const char *path, size_t avail, int truncated, int with_images,
                          const char *what) {
    char err[512];
    shard_limits lim = {MAX_BYTES, MAX_MEMBERS};
    shard_reader *r = shard_open_mmc4(path, &lim, with_images ? c->images : NULL, err, sizeof err);
    CHECK(r != NULL, "%s: open: %s", what, err);
    if (!r) return;
    skip_counts got = {0}, want = {0};
    int n_ok = 0, n_want = 0, ln = 0;
    for (int i = 0; i < c->n_lines; i++) {
        const line_model *l = &c->lines[i];
        if (!(l->terminated ? l->end < avail : !truncated && l->end == avail)) break;
        ln = i + 1;
        for (int k = 0; k < SKIP_REASON_COUNT; k++)
            want.n[k] += with_images || (k == SKIP_MEMBER_TOO_LARGE && !l->doc) ? l->skips.n[k] : 0;
        if (!l->doc) continue;
        n_want++;
        shard_sample s;
        char why[256] = "no sample";
        int same = shard_next(r, &s, &got) && same_sample(l, &s, ln, with_images, why, sizeof why);
        CHECK(same, "%s: line %d: %s", what, ln, why);
        n_ok += same;
        if (same && avail == c->len && with_images) check_document(l, &s, what);
        shard_sample_free(&s);
    }
    shard_sample s;
    CHECK(shard_next(r, &s, &got) == 0 && shard_next(r, &s, &got) == 0, "%s: a sample after line %d", what, ln);
    if (truncated) want.n[SKIP_TRUNCATED_SHARD]++;
    char a[256], b[256];
    CHECK(n_ok == n_want && !memcmp(&got, &want, sizeof want),
          "%s (%zu of %zu bytes): %d/%d samples, skips %s, want %s", what, avail, c->len, n_ok, n_want,
          skip_counts_str(&got, a, sizeof a), skip_counts_str(&want, b, sizeof b));
    shard_close(r);
}

/* shard_skip(k) then shard_next gives the sample shard_next gave k-th. */
static void check_skip(const corpus *c, const char *path) {
    int doc_lines[MAX_LINES], n = 0;
    for (int i = 0; i < c->n_lines; i++)
        if (c->lines[i].doc) doc_lines[n++] = i;
    shard_limits lim = {MAX_BYTES, MAX_MEMBERS};
    for (int k = 0; k <= n; k++) {
        char err[256], why[256] = "no sample";
        shard_reader *r = shard_open_mmc4(path, &lim, c->images, err, sizeof err);
        if (!r) continue;
        int64_t passed = shard_skip(r, k);
        shard_sample s;
        skip_counts sk = {0};
        int got = shard_next(r, &s, &sk);
        int ok = passed == k && (k == n ? got == 0
                                        : got && same_sample(&c->lines[doc_lines[k]], &s, doc_lines[k] + 1, 1, why,
                                                             sizeof why));
        CHECK(ok, "shard_skip(%d) passed %lld, then: %s", k, (long long)passed, why);
        if (got) shard_sample_free(&s);
        CHECK(shard_skip(r, 100) == (k < n ? n - k - 1 : 0), "shard_skip to the end after %d", k);
        shard_close(r);
    }
}

/* ---- compression ------------------------------------------------------------------ */

/* [0, split) and [split, n) as two gzip members (or zstd frames), flushed
 * every 200 bytes so that a cut file still holds decodable data. */
static size_t gzip_member(const char *t, size_t n, uint8_t *out, size_t cap) {
    z_stream z = {0};
    deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
    z.next_out = out, z.avail_out = (uInt)cap;
    for (size_t p = 0; p <= n; p += 200) {
        size_t k = n - p < 200 ? n - p : 200;
        z.next_in = (Bytef *)t + p, z.avail_in = (uInt)k;
        deflate(&z, p + k == n ? Z_FINISH : Z_SYNC_FLUSH);
        if (p + k == n) break;
    }
    size_t used = cap - z.avail_out;
    deflateEnd(&z);
    return used;
}

static size_t zstd_frame(const char *t, size_t n, uint8_t *out, size_t cap) {
    ZSTD_CCtx *z = ZSTD_createCCtx();
    ZSTD_CCtx_setParameter(z, ZSTD_c_checksumFlag, 1); /* a cut inside the checksum still yields all the data */
    ZSTD_outBuffer ob = {out, cap, 0};
    for (size_t p = 0; p <= n; p += 200) {
        size_t k = n - p < 200 ? n - p : 200;
        ZSTD_inBuffer ib = {t + p, k, 0};
        int last = p + k == n;
        size_t left;
        do left = ZSTD_compressStream2(z, &ob, &ib, last ? ZSTD_e_end : ZSTD_e_flush);
        while (!ZSTD_isError(left) && left);
        if (last) break;
    }
    ZSTD_freeCCtx(z);
    return ob.pos;
}

/* Bytes a decoder of the test's own recovers from a (cut) file, and
 * whether it stopped inside a member / frame. */
static size_t gunzip_len(const uint8_t *d, size_t n, int *truncated) {
    z_stream z = {0};
    uint8_t out[4096];
    size_t total = 0;
    int rc = Z_OK;
    inflateInit2(&z, 15 + 32);
    z.next_in = (Bytef *)d, z.avail_in = (uInt)n;
    *truncated = 1;
    for (;;) {
        z.next_out = out, z.avail_out = sizeof out;
        rc = inflate(&z, Z_NO_FLUSH);
        total += sizeof out - z.avail_out;
        if (rc == Z_STREAM_END) {
            *truncated = 0;
            if (z.avail_in == 0) break;
            inflateReset(&z);
            *truncated = 1;
        } else if (rc != Z_OK || (z.avail_out == sizeof out && z.avail_in == 0)) {
            break;
        }
    }
    inflateEnd(&z);
    return total;
}

static size_t unzstd_len(const uint8_t *d, size_t n, int *truncated) {
    ZSTD_DStream *z = ZSTD_createDStream();
    ZSTD_initDStream(z);
    uint8_t out[4096];
    ZSTD_inBuffer ib = {d, n, 0};
    size_t total = 0, last = 1; /* the last step that moved: 0 = a frame ended there */
    for (;;) {
        ZSTD_outBuffer ob = {out, sizeof out, 0};
        size_t before = ib.pos, rc = ZSTD_decompressStream(z, &ob, &ib);
        total += ob.pos;
        if (ZSTD_isError(rc)) {
            last = rc;
            break;
        }
        if (ob.pos == 0 && ib.pos == before) break;
        last = rc;
    }
    *truncated = ZSTD_isError(last) || last != 0;
    ZSTD_freeDStream(z);
    return total;
}

static void test_compressed(const corpus *c) {
    size_t split = c->lines[3].end + 1; /* after the malformed line: a line boundary */
    size_t cap = 2 * c->len + 4096;
    for (int codec = 0; codec < 2; codec++) {
        uint8_t *buf = tl_alloc(cap);
        size_t (*comp)(const char *, size_t, uint8_t *, size_t) = codec ? zstd_frame : gzip_member;
        size_t first = comp(c->text, split, buf, cap);
        size_t n = first + comp(c->text + split, c->len - split, buf + first, cap - first);
        char path[600], what[64];
        snprintf(path, sizeof path, "%s/hand/docs.jsonl.%s", tmp_dir, codec ? "zst" : "gz");
        write_file(path, buf, n);
        snprintf(what, sizeof what, "%s, whole", codec ? "zstd" : "gzip");
        check_reading(c, path, c->len, 0, 1, what);
        /* cuts: tenths, the member boundary, one byte short of the end */
        size_t cuts[12];
        int n_cuts = 0;
        for (int k = 1; k < 10; k++) cuts[n_cuts++] = n * (size_t)k / 10;
        cuts[n_cuts++] = first;
        cuts[n_cuts++] = n - 1;
        for (int k = 0; k < n_cuts; k++) {
            snprintf(path, sizeof path, "%s/hand/cut.jsonl.%s", tmp_dir, codec ? "zst" : "gz");
            write_file(path, buf, cuts[k]);
            int truncated;
            size_t avail = codec ? unzstd_len(buf, cuts[k], &truncated) : gunzip_len(buf, cuts[k], &truncated);
            snprintf(what, sizeof what, "%s cut at %zu of %zu", codec ? "zstd" : "gzip", cuts[k], n);
            check_reading(c, path, avail, truncated, 1, what);
            if (k == n_cuts - 2) CHECK(!truncated && avail == split, "%s: the member boundary is a clean end", what);
            if (k == n_cuts - 1) CHECK(truncated && avail == c->len, "%s: all data, no trailer", what);
        }
        free(buf);
    }
}

static void expect_refused(const char *path, const char *why) {
    char err[512] = "";
    shard_reader *r = shard_open_mmc4(path, NULL, tmp_dir, err, sizeof err);
    CHECK(!r && strstr(err, why), "%s: want '%s', got '%s'", path, why, err);
    shard_close(r);
}

static void test_hand_file(void) {
    corpus c;
    build_corpus(&c);
    char path[600];
    snprintf(path, sizeof path, "%s/hand/docs.jsonl", tmp_dir);
    write_file(path, c.text, c.len);
    CHECK(shard_is_jsonl(path) && !shard_is_jsonl("a.tar") && !shard_is_jsonl("jsonl") &&
              shard_is_jsonl("x.jsonl.zst") && shard_is_jsonl("x.jsonl.gz") && !shard_is_jsonl("x.json"),
          "shard_is_jsonl");
    check_reading(&c, path, c.len, 0, 1, "plain");
    check_reading(&c, path, c.len, 0, 0, "plain, no image folder");
    check_skip(&c, path);
    test_compressed(&c);

    snprintf(path, sizeof path, "%s/hand/none.jsonl", tmp_dir);
    expect_refused(path, "cannot open");
    snprintf(path, sizeof path, "%s/hand/empty.jsonl", tmp_dir);
    write_file(path, "", 0);
    expect_refused(path, "empty file");
    snprintf(path, sizeof path, "%s/hand/folder.jsonl", tmp_dir);
    mkdir(path, 0755);
    expect_refused(path, "directory");
    snprintf(path, sizeof path, "%s/hand/x.jsonl", tmp_dir);
    write_file(path, "\xfd" "7zXZ\0\0\0", 8);
    expect_refused(path, "xz");
    free_corpus(&c);
}

/* ======================================================================
 * Part 2: synth's raw layout through the loader. */

#define NFILES 4
#define DOCS 9
#define LONG_LINE (1100 * 1024) /* over inspect's smallest limit (1 MiB) too */
#define LOADER_MAX_BYTES (64 * 1024)

static const synth_options synth_base = {.shards = NFILES, .docs = DOCS, .seed = 7, .image_size = 32,
                                         .image_format = SYNTH_IMG_MIXED, .min_images = 1, .max_images = 4};

typedef struct doc_model {
    int delivered, bad_json;
    int usable, query_image, query_text; /* usable: the k = 0 episode's query image / sentence */
    skip_reason reason;                  /* when delivered and not usable */
    char *query_sentence;
    int present_images;                  /* image files read (distinct, present) */
    int missing_images;
} doc_model;

typedef struct file_model {
    char path[600];
    int n_lines;
    doc_model lines[DOCS + 4];
} file_model;

static char raw_dir[400], images_dir[450];

static void synth_into(const char *sub, synth_layout layout, synth_compress compress, char paths[NFILES][600]) {
    synth_options o = synth_base;
    o.layout = layout, o.compress = compress;
    char dir[500], err[256], name[64];
    snprintf(dir, sizeof dir, "%s/%s", tmp_dir, sub);
    CHECK(synth_write(&o, dir, err, sizeof err) == NFILES, "synth_write %s: %s", sub, err);
    for (int i = 0; i < NFILES; i++) {
        synth_shard_name(&o, i, name, sizeof name);
        snprintf(paths[i], 600, "%s/%s", dir, name);
    }
}

/* ---- running the loader ---- */

typedef struct run {
    uint64_t hash[512], hash_src[512]; /* per episode: without / with the sources */
    char query[512][160];
    int64_t n;
    loader_cursor cursor;
    int rc;
    char err[512];
} run;

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

static void run_loader(const loader_config *cfg, const loader_cursor *resume, int64_t max, run *r) {
    memset(r, 0, sizeof *r);
    loader *l = loader_open(cfg, resume, r->err, sizeof r->err);
    if (!l) {
        r->rc = -2;
        return;
    }
    while (max < 0 || r->n < max) {
        episode ep;
        r->rc = loader_next(l, &ep, r->err, sizeof r->err);
        if (r->rc != 1) break;
        uint64_t h = 0xcbf29ce484222325ull, hs;
        for (int i = 0; i <= ep.k; i++) {
            const episode_item *it = &ep.items[i];
            h = fnv(h, it->pixels, (size_t)(3 * it->height * it->width) * sizeof(float));
            h = fnv(h, it->tokens, (size_t)it->n_tokens * sizeof(int32_t));
            if (it->target) h = fnv(h, it->target, (size_t)it->n_tokens);
        }
        hs = h;
        for (int i = 0; i <= ep.k; i++) hs = fnv(hs, ep.items[i].source, strlen(ep.items[i].source));
        if (r->n < 512) {
            r->hash[r->n] = h, r->hash_src[r->n] = hs;
            snprintf(r->query[r->n], sizeof r->query[0], "%s", ep.items[ep.k].source);
        }
        r->n++;
        episode_free(&ep);
    }
    loader_cursor_get(l, &r->cursor);
    loader_close(l);
}

static void base_config(loader_config *c, char **paths, int64_t n) {
    loader_config_default(c);
    c->shards = paths, c->n_shards = n;
    c->tok = tok, c->pp = &pp;
    c->quiet = 1;
    c->seed = 4321;
    c->episode.k = 1;
    c->episode.sample.format = SAMPLE_FORMAT_MMC4;
    c->limits.max_member_bytes = LOADER_MAX_BYTES;
}

static int same_counters(const loader_cursor *a, const loader_cursor *b) {
    return a->episodes == b->episodes && a->samples == b->samples && a->shards_done == b->shards_done &&
           !memcmp(&a->skips, &b->skips, sizeof a->skips);
}

/* The same documents as tar shards and as .jsonl (plain, gzip, zstd): the
 * same episodes (pixels, tokens, targets) and counters. */
static void test_same_as_tar(void) {
    char tar[NFILES][600], raw[NFILES][600], gz[NFILES][600], zst[NFILES][600];
    synth_into("tar", SYNTH_MMC4, SYNTH_COMPRESS_NONE, tar);
    synth_into("raw", SYNTH_MMC4_JSONL, SYNTH_COMPRESS_NONE, raw);
    synth_into("rawgz", SYNTH_MMC4_JSONL, SYNTH_COMPRESS_GZIP, gz);
    synth_into("rawzst", SYNTH_MMC4_JSONL, SYNTH_COMPRESS_ZSTD, zst);
    char (*sets[4])[600] = {tar, raw, gz, zst};
    const char *names[4] = {"tar", "raw", "rawgz", "rawzst"};
    static run runs[4];
    for (int s = 0; s < 4; s++) {
        char *paths[NFILES], images[500];
        for (int i = 0; i < NFILES; i++) paths[i] = sets[s][i];
        loader_config c;
        base_config(&c, paths, NFILES);
        snprintf(images, sizeof images, "%s/%s/images", tmp_dir, names[s]);
        c.mmc4_images = s ? images : NULL;
        c.max_epochs = 1, c.shuffle_block = 4;
        run_loader(&c, NULL, -1, &runs[s]);
        CHECK(runs[s].rc == 0 && runs[s].n > 4, "%s: %lld episodes, rc %d: %s", names[s], (long long)runs[s].n,
              runs[s].rc, runs[s].err);
    }
    for (int s = 1; s < 4; s++)
        CHECK(runs[s].n == runs[0].n && !memcmp(runs[s].hash, runs[0].hash, (size_t)runs[0].n * sizeof(uint64_t)) &&
                  same_counters(&runs[s].cursor, &runs[0].cursor) && runs[s].cursor.samples == NFILES * DOCS,
              "%s gives the tar shards' episodes: %lld vs %lld", names[s], (long long)runs[s].n, (long long)runs[0].n);
    snprintf(raw_dir, sizeof raw_dir, "%s/raw", tmp_dir);
    snprintf(images_dir, sizeof images_dir, "%s/images", raw_dir);
}

/* ---- damage and the model worked out from the files ---- */

/* Deletes images: every image of document 2 of file 0 and of document 5
 * of file 1, and about one in six of the others. */
static void delete_images(cJSON *doc, int file, int line) {
    const cJSON *info;
    cJSON_ArrayForEach(info, cJSON_GetObjectItem(doc, "image_info")) {
        int all = (file == 0 && line == 2) || (file == 1 && line == 5);
        if (!all && rng_int(6)) continue;
        char path[700];
        snprintf(path, sizeof path, "%s/%s", images_dir, cJSON_GetObjectItem(info, "image_name")->valuestring);
        unlink(path);
    }
}

static int file_exists(const char *name) {
    char path[700];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", images_dir, name);
    return stat(path, &st) == 0;
}

/* k = 0 (episode.h): the query is the best image of the first sentence
 * with a candidate pair (sim >= 0.24) whose file is present; without one,
 * missing_member when a candidate exists only without its file, else
 * too_few_pairs. */
static void model_document(doc_model *m, const cJSON *doc) {
    const cJSON *texts = cJSON_GetObjectItem(doc, "text_list"), *info;
    int n_texts = cJSON_GetArraySize(texts), best_t = n_texts, any_candidate = 0, i = 0;
    double best_sim = -1;
    cJSON_ArrayForEach(info, cJSON_GetObjectItem(doc, "image_info")) {
        const char *name = cJSON_GetObjectItem(info, "image_name")->valuestring;
        int t = cJSON_GetObjectItem(info, "matched_text_index")->valueint, present = file_exists(name);
        double sim = cJSON_GetObjectItem(info, "matched_sim")->valuedouble;
        m->present_images += present, m->missing_images += !present;
        if (sim >= 0.24) any_candidate = 1;
        if (sim >= 0.24 && present && (t < best_t || (t == best_t && sim > best_sim)))
            best_t = t, best_sim = sim, m->query_image = i;
        i++;
    }
    m->usable = best_t < n_texts;
    if (m->usable) {
        m->query_text = best_t;
        m->query_sentence = strdup(cJSON_GetArrayItem(texts, best_t)->valuestring);
    }
    m->reason = m->usable ? SKIP_REASON_COUNT : any_candidate ? SKIP_MISSING_MEMBER : SKIP_TOO_FEW_PAIRS;
}

static void damage_and_model(file_model *files) {
    for (int f = 0; f < NFILES; f++) {
        file_model *fm = &files[f];
        snprintf(fm->path, sizeof fm->path, "%s/%09d.jsonl", raw_dir, f);
        size_t n;
        char *text = (char *)tl_read_file(fm->path, &n), *save = NULL;
        int line = 0;
        for (char *s = strtok_r(text, "\n", &save); s; s = strtok_r(NULL, "\n", &save), line++) {
            cJSON *doc = cJSON_Parse(s);
            delete_images(doc, f, line);
            doc_model *m = &fm->lines[line];
            m->delivered = 1;
            model_document(m, doc);
            cJSON_Delete(doc);
        }
        free(text);
        fm->n_lines = line;
        if (f == 0) { /* a malformed line */
            append_file(fm->path, "{\"text_list\": [\"no end\"], \"image_info\": [\n");
            fm->lines[fm->n_lines++] = (doc_model){.delivered = 1, .bad_json = 1, .reason = SKIP_BAD_JSON};
        }
        if (f == 1) { /* a blank line, then an over-long line */
            char *big = tl_alloc(LONG_LINE + 64);
            snprintf(big, LONG_LINE + 64, "\n{\"text_list\": [\"%0*d\"], \"image_info\": []}\n", LONG_LINE, 0);
            append_file(fm->path, big);
            free(big);
            fm->lines[fm->n_lines++] = (doc_model){0};
            fm->lines[fm->n_lines++] = (doc_model){0};
        }
    }
}

/* ---- ranks ---- */

static void rank_expectation(const file_model *files, int rank, skip_counts *want, int64_t *samples,
                             int64_t *episodes) {
    memset(want, 0, sizeof *want);
    *samples = *episodes = 0;
    for (int f = rank; f < NFILES; f += 2)
        for (int i = 0; i < files[f].n_lines; i++) {
            const doc_model *m = &files[f].lines[i];
            want->n[SKIP_MISSING_IMAGE] += m->missing_images;
            if (f == 1 && i == files[f].n_lines - 1) want->n[SKIP_MEMBER_TOO_LARGE]++;
            if (!m->delivered) continue;
            (*samples)++;
            if (m->usable) (*episodes)++;
            else skip_count(want, m->reason);
        }
}

/* The query's sentence tokens + EOS, all targets (target_template "{caption}"). */
static int query_tokens_ok(const episode_item *it, const char *sentence) {
    tok_ids ids = {0};
    tokenizer_encode_opts o = {.add_special = 0, .max_length = -1};
    char err[128];
    tokenizer_encode(tok, sentence, strlen(sentence), &o, &ids, err, sizeof err);
    int ok = it->n_tokens == ids.n + 1 && !memcmp(it->tokens, ids.ids, (size_t)ids.n * sizeof(int32_t)) &&
             it->tokens[ids.n] == tokenizer_special_id(tok, "eos_token") && it->n_target == it->n_tokens;
    tok_ids_free(&ids);
    return ok;
}

static void test_ranks(const file_model *files) {
    int seen[NFILES][DOCS + 4] = {{0}};
    char *paths[NFILES];
    for (int i = 0; i < NFILES; i++) paths[i] = (char *)files[i].path;
    for (int rank = 0; rank < 2; rank++) {
        loader_config c;
        base_config(&c, paths, NFILES);
        c.world = 2, c.rank = rank, c.episode.k = 0, c.max_epochs = 1, c.shuffle_block = 4;
        c.mmc4_images = images_dir;
        char err[256];
        loader *l = loader_open(&c, NULL, err, sizeof err);
        CHECK(l != NULL, "rank %d: %s", rank, err);
        if (!l) continue;
        episode ep;
        int rc, ok = 1;
        while ((rc = loader_next(l, &ep, err, sizeof err)) == 1) {
            const char *src = ep.items[0].source, *colon = strrchr(src, ':'), *hash = strrchr(src, '#');
            int f = -1, line = colon ? atoi(colon + 1) - 1 : -1, img = hash ? atoi(hash + 1) : -1;
            size_t plen = colon ? (size_t)(colon - src) : 0;
            for (int i = 0; i < NFILES; i++)
                if (colon && plen == strlen(files[i].path) && !strncmp(src, files[i].path, plen)) f = i;
            const doc_model *m = f >= 0 && line >= 0 && line < files[f].n_lines ? &files[f].lines[line] : NULL;
            int good = m && f % 2 == rank && m->usable && img == m->query_image &&
                       query_tokens_ok(&ep.items[0], m->query_sentence);
            CHECK(good, "rank %d: query %s is not a usable document's query of this rank", rank, src);
            ok &= good;
            if (m) seen[f][line]++;
            episode_free(&ep);
        }
        loader_cursor cur;
        loader_cursor_get(l, &cur);
        loader_close(l);
        skip_counts want;
        int64_t samples, episodes;
        rank_expectation(files, rank, &want, &samples, &episodes);
        char a[256], b[256];
        CHECK(rc == 0 && ok && !memcmp(&cur.skips, &want, sizeof want) && cur.samples == samples &&
                  cur.episodes == episodes && cur.shards_done == NFILES / 2,
              "rank %d: %lld episodes (want %lld), %lld samples (want %lld), skips %s (want %s): %s", rank,
              (long long)cur.episodes, (long long)episodes, (long long)cur.samples, (long long)samples,
              skip_counts_str(&cur.skips, a, sizeof a), skip_counts_str(&want, b, sizeof b), err);
    }
    int union_ok = 1;
    for (int f = 0; f < NFILES; f++)
        for (int i = 0; i < files[f].n_lines; i++) union_ok &= seen[f][i] == files[f].lines[i].usable;
    CHECK(union_ok, "the two ranks' documents are disjoint and cover every usable one once");
    int missing_member = 0;
    for (int f = 0; f < NFILES; f++)
        for (int i = 0; i < files[f].n_lines; i++) missing_member += files[f].lines[i].reason == SKIP_MISSING_MEMBER;
    CHECK(missing_member >= 1, "the damage left a document short of images (%d)", missing_member);
}

/* ---- resume ---- */

static void test_resume(const file_model *files) {
    char *paths[NFILES];
    for (int i = 0; i < NFILES; i++) paths[i] = (char *)files[i].path;
    loader_config c;
    base_config(&c, paths, NFILES);
    c.world = 2, c.rank = 1, c.max_epochs = 2, c.shuffle_block = 5, c.n_workers = 1;
    c.mmc4_images = images_dir;
    static run full, first, rest;
    run_loader(&c, NULL, -1, &full);
    CHECK(full.rc == 0 && full.n >= 8, "resume: full run %lld episodes: %s", (long long)full.n, full.err);
    const int64_t cuts[] = {1, 2, 3, 5, full.n / 2, full.n / 2 + 1, full.n - 1};
    int mid_file = 0;
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        int64_t m = cuts[i];
        c.n_workers = 2;
        run_loader(&c, NULL, m, &first);
        uint8_t bytes[LOADER_CURSOR_BYTES];
        loader_cursor_encode(&first.cursor, bytes);
        loader_cursor back;
        char err[256] = "";
        CHECK(loader_cursor_decode(bytes, sizeof bytes, &back, err, sizeof err) == 0, "cursor bytes: %s", err);
        mid_file |= back.start_sample > 0 && back.start_sample < DOCS;
        c.n_workers = 1 + (int)(i % 3);
        run_loader(&c, &back, -1, &rest);
        int ok = first.n == m && rest.rc == 0 && rest.n == full.n - m &&
                 !memcmp(first.hash_src, full.hash_src, (size_t)m * sizeof(uint64_t)) &&
                 !memcmp(rest.hash_src, full.hash_src + m, (size_t)(full.n - m) * sizeof(uint64_t)) &&
                 same_counters(&rest.cursor, &full.cursor);
        CHECK(ok, "resume after %lld episodes (epoch %lld block %lld file %lld line-sample %lld item %lld): "
                  "%lld + %lld episodes, want %lld (%s)",
              (long long)m, (long long)back.epoch, (long long)back.block, (long long)back.start_shard,
              (long long)back.start_sample, (long long)back.in_block, (long long)first.n, (long long)rest.n,
              (long long)full.n, rest.err);
    }
    CHECK(mid_file, "a cursor was saved in the middle of a file");
}

/* ---- loader errors ---- */

static void test_loader_errors(const file_model *files) {
    char *paths[2] = {(char *)files[0].path, NULL}, gone[700], err[512] = "", file[700];
    loader_config c;
    base_config(&c, paths, 1);
    CHECK(!loader_open(&c, NULL, err, sizeof err) && strstr(err, "--mmc4-images") && strstr(err, files[0].path),
          "no image folder: %s", err);
    snprintf(gone, sizeof gone, "%s/no-such-folder", tmp_dir);
    c.mmc4_images = gone;
    CHECK(!loader_open(&c, NULL, err, sizeof err) && strstr(err, "no-such-folder") && strstr(err, "No such file"),
          "a missing image folder: %s", err);
    c.mmc4_images = files[0].path;
    CHECK(!loader_open(&c, NULL, err, sizeof err) && strstr(err, "not a folder"),
          "an image 'folder' that is a file: %s", err);
    /* a file that vanished: one shard_unreadable, the other file's documents all arrive */
    snprintf(file, sizeof file, "%s/vanished.jsonl", tmp_dir);
    paths[1] = file;
    base_config(&c, paths, 2);
    c.mmc4_images = images_dir, c.episode.k = 0, c.max_epochs = 1;
    run r;
    run_loader(&c, NULL, -1, &r);
    int64_t usable = 0;
    for (int i = 0; i < files[0].n_lines; i++) usable += files[0].lines[i].usable;
    CHECK(r.rc == 0 && r.n == usable && r.cursor.skips.n[SKIP_SHARD_UNREADABLE] == 1 && r.cursor.shards_done == 2,
          "a vanished file: %lld episodes (want %lld), unreadable %lld: %s", (long long)r.n, (long long)usable,
          (long long)r.cursor.skips.n[SKIP_SHARD_UNREADABLE], r.err);
}

/* ---- aimc shards inspect ---- */

/* `aimc shards ARGS...` in a child; its stdout and stderr into out. */
static int run_shards_cmd(int argc, char **argv, char *out, size_t len) {
    return tl_run_command(cmd_shards, argc, argv, out, len);
}

/* inspect counts reading skips and bad_json (no episodes). */
static void test_inspect(const file_model *files) {
    static char out[16384];
    char spec[600];
    snprintf(spec, sizeof spec, "%s/*.jsonl", raw_dir);
    for (int with = 0; with < 2; with++) {
        char *argv[] = {"shards", "inspect", spec, "--max-member-mb", "1", "--mmc4-images", images_dir};
        int rc = run_shards_cmd(with ? 7 : 5, argv, out, sizeof out);
        CHECK(rc == 0, "inspect exit %d: %s", rc, out);
        int64_t total = 0;
        for (int f = 0; f < NFILES; f++) {
            skip_counts want = {0};
            int64_t samples = 0, images = 0;
            for (int i = 0; i < files[f].n_lines; i++) {
                const doc_model *m = &files[f].lines[i];
                samples += m->delivered;
                images += m->present_images;
                if (with) want.n[SKIP_MISSING_IMAGE] += m->missing_images;
                if (m->bad_json) want.n[SKIP_BAD_JSON]++;
            }
            if (f == 1) want.n[SKIP_MEMBER_TOO_LARGE]++; /* the over-long line */
            total += samples;
            char line[400], members[200], sk[200], formats[64];
            if (with)
                snprintf(members, sizeof members, "image_file=%lld json=%lld", (long long)images, (long long)samples);
            else snprintf(members, sizeof members, "json=%lld", (long long)samples);
            /* the malformed line of file 0 is no mmc4 document */
            snprintf(formats, sizeof formats, "mmc4=%lld%s", (long long)(samples - (f == 0)), f == 0 ? " other=1" : "");
            snprintf(line, sizeof line, "%09d.jsonl: %lld samples\n  formats: %s\n  members: %s\n  skips: %s\n", f,
                     (long long)samples, formats, members, skip_counts_str(&want, sk, sizeof sk));
            CHECK(strstr(out, line), "inspect%s lacks:\n%s-- in --\n%s", with ? " --mmc4-images" : "", line, out);
        }
        char line[200];
        snprintf(line, sizeof line, "total: %d shards (0 unreadable), %lld samples\n", NFILES, (long long)total);
        CHECK(strstr(out, line), "inspect lacks '%s':\n%s", line, out);
    }
    char *bad[] = {"shards", "inspect", spec, "--mmc4-images", "/no/such/folder"};
    CHECK(run_shards_cmd(5, bad, out, sizeof out) == 1 && strstr(out, "not a folder"), "inspect, bad folder: %s", out);
}

static void test_loader_part(void) {
    test_same_as_tar();
    static file_model files[NFILES];
    damage_and_model(files);
    test_inspect(files); /* forks: before the loader's threads start OpenMP work in this process */
    test_ranks(files);
    test_resume(files);
    test_loader_errors(files);
    for (int f = 0; f < NFILES; f++)
        for (int i = 0; i < files[f].n_lines; i++) free(files[f].lines[i].query_sentence);
}

int main(void) {
    tests_begin("test_mmc4_jsonl");
    snprintf(tmp_dir, sizeof tmp_dir, "/tmp/aimc_test_mmc4_jsonl_XXXXXX");
    if (!mkdtemp(tmp_dir)) return 1;
    char path[1024], err[512];
    FIXTURE_PATH("tokenizers/llama", path, sizeof path);
    tok = tokenizer_load(path, err, sizeof err);
    CHECK(tok != NULL, "tokenizer: %s", err);
    CHECK(preprocess_preset(&pp, "clip") == 0, "clip preset");
    pp.shortest_edge = 16, pp.crop_height = pp.crop_width = 16;
    test_hand_file();
    if (tok) test_loader_part();
    tokenizer_free(tok);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_dir);
    if (getenv("AIMC_TEST_KEEP")) printf("kept %s\n", tmp_dir);
    else if (system(cmd)) printf("note: could not remove %s\n", tmp_dir);
    return tests_done();
}
