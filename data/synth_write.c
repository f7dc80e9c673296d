/* Writing synthetic shards (see synth.h): a compressed output sink, a tar
 * writer that lays members out as Python's tarfile does in PAX format, and
 * the LAION and MMC4 sample layouts, and the raw MMC4 layout (.jsonl lines
 * + an image folder). */
#include "base64.h"
#include "synth.h"
#include "../kernels/check.h"
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>
#include <zstd.h>

#define TAR_BLOCK 512
#define TAR_RECORD (20 * TAR_BLOCK) /* tarfile pads the archive to whole records */
#define SINK_CHUNK (64 * 1024)

/* ---- output sink: plain, gzip or zstd ---- */

typedef struct out_sink {
    FILE *f;
    synth_compress codec;
    z_stream z;
    ZSTD_CCtx *zc;
    uint8_t *chunk;
    int failed;
    uint64_t tar_bytes; /* uncompressed bytes written (tar offsets) */
} out_sink;

static void sink_emit(out_sink *s, const uint8_t *d, size_t n) {
    if (n && fwrite(d, 1, n, s->f) != n) s->failed = 1;
}

static void sink_gzip(out_sink *s, const uint8_t *d, size_t n, int finish) {
    s->z.next_in = (Bytef *)d;
    s->z.avail_in = (uInt)n;
    int rc;
    do {
        s->z.next_out = s->chunk;
        s->z.avail_out = SINK_CHUNK;
        rc = deflate(&s->z, finish ? Z_FINISH : Z_NO_FLUSH);
        if (rc == Z_STREAM_ERROR) s->failed = 1;
        sink_emit(s, s->chunk, SINK_CHUNK - s->z.avail_out);
    } while (!s->failed && (s->z.avail_in > 0 || s->z.avail_out == 0 || (finish && rc != Z_STREAM_END)));
}

static void sink_zstd(out_sink *s, const uint8_t *d, size_t n, int finish) {
    ZSTD_inBuffer in = {d, n, 0};
    size_t left;
    do {
        ZSTD_outBuffer out = {s->chunk, SINK_CHUNK, 0};
        left = ZSTD_compressStream2(s->zc, &out, &in, finish ? ZSTD_e_end : ZSTD_e_continue);
        if (ZSTD_isError(left)) s->failed = 1;
        sink_emit(s, s->chunk, out.pos);
    } while (!s->failed && (in.pos < in.size || (finish && left)));
}

static void sink_write(out_sink *s, const void *d, size_t n) {
    s->tar_bytes += n;
    if (s->codec == SYNTH_COMPRESS_GZIP) sink_gzip(s, d, n, 0);
    else if (s->codec == SYNTH_COMPRESS_ZSTD) sink_zstd(s, d, n, 0);
    else sink_emit(s, d, n);
}

static int sink_open(out_sink *s, const char *path, synth_compress codec) {
    memset(s, 0, sizeof *s);
    s->codec = codec;
    if (!(s->f = fopen(path, "wb")) || !(s->chunk = malloc(SINK_CHUNK))) return -1;
    if (codec == SYNTH_COMPRESS_GZIP) /* 15 + 16: a gzip wrapper, as tarfile's "w:gz" writes */
        return deflateInit2(&s->z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) == Z_OK ? 0 : -1;
    if (codec == SYNTH_COMPRESS_ZSTD) {
        if (!(s->zc = ZSTD_createCCtx())) return -1;
        ZSTD_CCtx_setParameter(s->zc, ZSTD_c_compressionLevel, 3);
        ZSTD_CCtx_setParameter(s->zc, ZSTD_c_checksumFlag, 1);
    }
    return 0;
}

/* Finishes the compressed stream and closes; returns -1 if anything failed. */
static int sink_close(out_sink *s) {
    if (s->f && s->codec == SYNTH_COMPRESS_GZIP) sink_gzip(s, NULL, 0, 1);
    if (s->f && s->codec == SYNTH_COMPRESS_ZSTD) sink_zstd(s, NULL, 0, 1);
    if (s->codec == SYNTH_COMPRESS_GZIP) deflateEnd(&s->z);
    ZSTD_freeCCtx(s->zc);
    if (s->f && fclose(s->f)) s->failed = 1;
    free(s->chunk);
    return s->failed || !s->f ? -1 : 0;
}

/* ---- tar writer (Python tarfile's PAX layout) ---- */

/* width-1 zero-padded octal digits and a NUL (values here always fit). */
static void put_octal(uint8_t *field, size_t width, uint64_t v) {
    for (size_t i = width - 1; i-- > 0; v >>= 3) field[i] = (uint8_t)('0' + (v & 7));
    field[width - 1] = 0;
}

static void ustar_header(uint8_t *b, const char *name, char type, uint64_t size, uint64_t mtime) {
    memset(b, 0, TAR_BLOCK);
    snprintf((char *)b, 100, "%s", name); /* names longer than 99 bytes travel in the PAX record */
    put_octal(b + 100, 8, 0644);
    put_octal(b + 108, 8, 0);
    put_octal(b + 116, 8, 0);
    put_octal(b + 124, 12, size);
    put_octal(b + 136, 12, mtime);
    memset(b + 148, ' ', 8);
    b[156] = (uint8_t)type;
    memcpy(b + 257, "ustar\0" "00", 8);
    put_octal(b + 329, 8, 0);
    put_octal(b + 337, 8, 0);
    unsigned sum = 0;
    for (int i = 0; i < TAR_BLOCK; i++) sum += b[i];
    snprintf((char *)b + 148, 7, "%06o", sum); /* "%06o\0" then the space that was there */
}

static void tar_data(out_sink *s, const void *d, size_t n) {
    static const uint8_t zeros[TAR_BLOCK];
    sink_write(s, d, n);
    if (n % TAR_BLOCK) sink_write(s, zeros, TAR_BLOCK - n % TAR_BLOCK);
}

/* Appends "LEN key=value\n", where LEN counts the whole record itself. */
static size_t pax_record(char *buf, size_t cap, const char *key, const char *value) {
    size_t body = strlen(key) + strlen(value) + 3, len = body;
    for (;;) {
        char digits[24];
        size_t total = body + (size_t)snprintf(digits, sizeof digits, "%zu", len);
        if (total == len) break;
        len = total;
    }
    return (size_t)snprintf(buf, cap, "%zu %s=%s\n", len, key, value);
}

/* One member: a "././@PaxHeader" 'x' entry (fractional mtime, and path
 * when the name does not fit the 100-byte field), then the file. */
static void tar_member(out_sink *s, const char *name, const void *data, size_t n, uint64_t mtime_ms) {
    char pax[1024], mtime[48];
    uint8_t hdr[TAR_BLOCK];
    snprintf(mtime, sizeof mtime, "%llu.%03llu", (unsigned long long)(mtime_ms / 1000),
             (unsigned long long)(mtime_ms % 1000));
    size_t plen = pax_record(pax, sizeof pax, "mtime", mtime);
    if (strlen(name) > 99) plen += pax_record(pax + plen, sizeof pax - plen, "path", name);
    ustar_header(hdr, "././@PaxHeader", 'x', plen, 0);
    sink_write(s, hdr, TAR_BLOCK);
    tar_data(s, pax, plen);
    ustar_header(hdr, name, '0', n, (mtime_ms + 500) / 1000);
    sink_write(s, hdr, TAR_BLOCK);
    tar_data(s, data, n);
}

static void tar_finish(out_sink *s) {
    static const uint8_t zeros[TAR_BLOCK];
    sink_write(s, zeros, TAR_BLOCK);
    sink_write(s, zeros, TAR_BLOCK);
    while (s->tar_bytes % TAR_RECORD) sink_write(s, zeros, TAR_BLOCK);
}

/* ---- sample layouts ---- */

typedef struct shard_ctx {
    const synth_options *o;
    out_sink sink;
    uint64_t rng;
    int64_t shard;
    int key_digits; /* digits for the index within the shard */
    const char *image_dir; /* MMC4_JSONL: where image files go */
    char err[256];
} shard_ctx;

static void make_key(const shard_ctx *c, int64_t doc, char *key, size_t n) {
    snprintf(key, n, "%05lld%0*lld", (long long)c->shard, c->key_digits, (long long)doc);
}

static synth_image_format pick_format(shard_ctx *c) {
    return c->o->image_format == SYNTH_IMG_MIXED ? (synth_image_format)(synth_rand(&c->rng) % 3) : c->o->image_format;
}

/* Renders and encodes a scene at a random size: longest side image_size,
 * the other 3/4 to 1 of it, landscape or portrait. */
static int make_image(shard_ctx *c, const synth_scene *sc, synth_image_format f, uint8_t **enc, size_t *n,
                      int64_t *w, int64_t *h) {
    int64_t side = c->o->image_size, other = side - (int64_t)(synth_rand(&c->rng) % (uint64_t)(side / 4 + 1));
    int landscape = (int)(synth_rand(&c->rng) & 1);
    *w = landscape ? side : other;
    *h = landscape ? other : side;
    uint8_t *rgb = malloc((size_t)(*w * *h * 3));
    if (!rgb) {
        aimc_set_err(c->err, sizeof c->err, "out of memory for a %lldx%lld image", (long long)*w, (long long)*h);
        return -1;
    }
    synth_render(sc, *w, *h, rgb);
    int rc = synth_encode(rgb, *w, *h, f, enc, n, c->err, sizeof c->err);
    free(rgb);
    return rc;
}

static uint64_t member_mtime(const shard_ctx *c, int64_t doc) {
    return (1700000000ull + (uint64_t)c->shard * 86400 + (uint64_t)doc) * 1000 + (uint64_t)(doc * 37 % 1000);
}

static void write_json_member(shard_ctx *c, const char *name, cJSON *j, uint64_t mtime) {
    char *text = cJSON_PrintUnformatted(j);
    if (!text) {
        aimc_set_err(c->err, sizeof c->err, "out of memory printing JSON");
        c->sink.failed = 1;
        return;
    }
    tar_member(&c->sink, name, text, strlen(text), mtime);
    free(text);
}

static cJSON *laion_meta(const char *key, const char *caption, int64_t w, int64_t h, const char *ext) {
    char url[128];
    snprintf(url, sizeof url, "https://example.com/synth/%s.%s", key, ext);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "url", url);
    cJSON_AddStringToObject(j, "caption", caption);
    cJSON_AddStringToObject(j, "key", key);
    cJSON_AddStringToObject(j, "status", "success");
    cJSON_AddNullToObject(j, "error_message");
    cJSON_AddNumberToObject(j, "width", (double)w);
    cJSON_AddNumberToObject(j, "height", (double)h);
    cJSON_AddNumberToObject(j, "original_width", (double)(w * 2));
    cJSON_AddNumberToObject(j, "original_height", (double)(h * 2));
    return j;
}

/* {key}.{img} {key}.json {key}.txt, in sorted-extension order as webdataset
 * writes them (so the image may come after the text). */
static int laion_sample(shard_ctx *c, int64_t doc) {
    char key[64], name[96], caption[160];
    synth_scene sc;
    uint8_t *img;
    size_t n;
    int64_t w, h;
    synth_image_format f = pick_format(c);
    make_key(c, doc, key, sizeof key);
    synth_scene_random(&c->rng, &sc);
    if (make_image(c, &sc, f, &img, &n, &w, &h)) return -1;
    synth_caption(&sc, caption, sizeof caption);
    const char *ext = synth_image_ext(f);
    cJSON *meta = laion_meta(key, caption, w, h, ext);
    uint64_t mt = member_mtime(c, doc);
    int img_first = strcmp(ext, "json") < 0; /* "jpg" sorts before "json", "png" and "webp" after */
    snprintf(name, sizeof name, "%s.%s", key, ext);
    if (img_first) tar_member(&c->sink, name, img, n, mt);
    snprintf(name, sizeof name, "%s.json", key);
    write_json_member(c, name, meta, mt);
    snprintf(name, sizeof name, "%s.%s", key, ext);
    if (!img_first && strcmp(ext, "txt") < 0) tar_member(&c->sink, name, img, n, mt);
    snprintf(name, sizeof name, "%s.txt", key);
    tar_member(&c->sink, name, caption, strlen(caption), mt);
    snprintf(name, sizeof name, "%s.%s", key, ext);
    if (!img_first && strcmp(ext, "txt") > 0) tar_member(&c->sink, name, img, n, mt);
    cJSON_Delete(meta);
    free(img);
    return c->sink.failed ? -1 : 0;
}

static const char *const filler_sentences[] = {
    "Thanks for stopping by and reading this page.",  "The weather was pleasant all week.",
    "We posted these pictures after the workshop.",   "Drawing simple figures is a good way to practise.",
    "Let us know in the comments what you think.",    "More examples will follow in the next post.",
    "Everything here was made with a few lines of code.",
};
static const char *const describe_templates[] = {
    "The picture shows %s.", "Here we see %s.", "Below is %s.", "This image contains %s.",
};
#define NFILLERS (int)(sizeof filler_sentences / sizeof *filler_sentences)
#define NTEMPLATES (int)(sizeof describe_templates / sizeof *describe_templates)

static double rand_unit(shard_ctx *c) { return (double)(synth_rand(&c->rng) >> 11) / 9007199254740992.0; }

/* Rounded to 4 decimals, as similarity values usually are printed. */
static double round4(double v) { return (double)(int64_t)(v * 10000.0 + 0.5) / 10000.0; }

/* At most one filler before each image sentence plus one at the end. */
#define MMC4_MAX_SENTENCES (2 * SYNTH_MAX_DOC_IMAGES + 1)

typedef struct mmc4_doc {
    int n_images, n_sentences;
    int image_sentence[SYNTH_MAX_DOC_IMAGES]; /* sentence index describing image i */
    char sentences[MMC4_MAX_SENTENCES][192];
    double sim[SYNTH_MAX_DOC_IMAGES][MMC4_MAX_SENTENCES];
} mmc4_doc;

/* Sentences: each image's description, with filler sentences between. */
static void mmc4_text(shard_ctx *c, mmc4_doc *d, const synth_scene *scenes) {
    d->n_sentences = 0;
    for (int i = 0; i < d->n_images; i++) {
        char cap[160];
        if (synth_rand(&c->rng) & 1)
            snprintf(d->sentences[d->n_sentences++], 192, "%s", filler_sentences[synth_rand(&c->rng) % NFILLERS]);
        synth_caption(&scenes[i], cap, sizeof cap);
        snprintf(d->sentences[d->n_sentences], 192, describe_templates[synth_rand(&c->rng) % NTEMPLATES], cap);
        d->image_sentence[i] = d->n_sentences++;
    }
    snprintf(d->sentences[d->n_sentences++], 192, "%s", filler_sentences[synth_rand(&c->rng) % NFILLERS]);
}

/* Matched pairs mostly 0.25-0.35, one in seven weak (0.15-0.23); every
 * other pair 0.05-0.14, so the match is always its row's maximum. */
static void mmc4_similarities(shard_ctx *c, mmc4_doc *d) {
    for (int i = 0; i < d->n_images; i++)
        for (int j = 0; j < d->n_sentences; j++) {
            double v = 0.05 + 0.09 * rand_unit(c);
            if (j == d->image_sentence[i])
                v = synth_rand(&c->rng) % 7 == 0 ? 0.15 + 0.08 * rand_unit(c) : 0.25 + 0.10 * rand_unit(c);
            d->sim[i][j] = round4(v);
        }
}

static cJSON *mmc4_image_info(shard_ctx *c, const mmc4_doc *d, int i, const char *ext, const char *b64) {
    char name[64], url[128];
    snprintf(name, sizeof name, "%012llx.%s", (unsigned long long)(synth_rand(&c->rng) >> 16), ext);
    snprintf(url, sizeof url, "https://example.com/synth/img/%s", name);
    cJSON *info = cJSON_CreateObject();
    cJSON_AddStringToObject(info, "image_name", name);
    cJSON_AddStringToObject(info, "raw_url", url);
    cJSON_AddNumberToObject(info, "matched_text_index", d->image_sentence[i]);
    cJSON_AddNumberToObject(info, "matched_sim", d->sim[i][d->image_sentence[i]]);
    cJSON_AddNullToObject(info, "face_detections");
    if (b64) cJSON_AddStringToObject(info, "image_base64", b64);
    return info;
}

static cJSON *mmc4_json(const mmc4_doc *d, const char *key, cJSON *infos) {
    char url[128];
    snprintf(url, sizeof url, "https://example.com/synth/%s.html", key);
    cJSON *j = cJSON_CreateObject(), *texts = cJSON_AddArrayToObject(j, "text_list");
    cJSON_AddStringToObject(j, "url", url);
    for (int s = 0; s < d->n_sentences; s++) cJSON_AddItemToArray(texts, cJSON_CreateString(d->sentences[s]));
    cJSON_AddItemToObject(j, "image_info", infos);
    cJSON *matrix = cJSON_AddArrayToObject(j, "similarity_matrix");
    for (int i = 0; i < d->n_images; i++) {
        cJSON *row = cJSON_CreateArray();
        for (int s = 0; s < d->n_sentences; s++) cJSON_AddItemToArray(row, cJSON_CreateNumber(d->sim[i][s]));
        cJSON_AddItemToArray(matrix, row);
    }
    cJSON_AddNumberToObject(j, "could_have_url_duplicate", 0);
    return j;
}

/* The raw layout's image file image_dir/<image_name>. */
static int write_image_file(shard_ctx *c, const cJSON *info, const uint8_t *img, size_t n) {
    char path[4096 + 80];
    snprintf(path, sizeof path, "%s/%s", c->image_dir, cJSON_GetObjectItem(info, "image_name")->valuestring);
    FILE *f = fopen(path, "wb");
    int ok = f && fwrite(img, 1, n, f) == n;
    if (f && fclose(f)) ok = 0;
    if (!ok) aimc_set_err(c->err, sizeof c->err, "cannot write %s: %s", path, strerror(errno));
    return ok ? 0 : -1;
}

/* Encodes image i of the document and appends its image_info entry (with
 * image_base64, or for the raw layout with the image written as a file; the
 * generator advances the same way in both, so both hold the same documents). */
static int mmc4_add_image(shard_ctx *c, const mmc4_doc *d, int i, const synth_scene *scene, cJSON *infos) {
    uint8_t *img;
    size_t n;
    int64_t w, h;
    synth_image_format f = pick_format(c);
    if (make_image(c, scene, f, &img, &n, &w, &h)) return -1;
    char *b64 = c->image_dir ? NULL : base64_encode(img, n, NULL);
    if (!c->image_dir && !b64) {
        free(img);
        aimc_set_err(c->err, sizeof c->err, "out of memory encoding base64");
        return -1;
    }
    cJSON *info = mmc4_image_info(c, d, i, synth_image_ext(f), b64);
    cJSON_AddItemToArray(infos, info);
    int rc = c->image_dir ? write_image_file(c, info, img, n) : 0;
    free(img);
    free(b64);
    return rc;
}

/* The raw layout: the document as one line. */
static void write_json_line(shard_ctx *c, cJSON *j) {
    char *text = cJSON_PrintUnformatted(j);
    if (!text) {
        aimc_set_err(c->err, sizeof c->err, "out of memory printing JSON");
        c->sink.failed = 1;
        return;
    }
    sink_write(&c->sink, text, strlen(text));
    sink_write(&c->sink, "\n", 1);
    free(text);
}

static int mmc4_document(shard_ctx *c, int64_t doc) {
    mmc4_doc *d = calloc(1, sizeof *d);
    synth_scene scenes[SYNTH_MAX_DOC_IMAGES];
    char key[64], name[96];
    if (!d) {
        aimc_set_err(c->err, sizeof c->err, "out of memory");
        return -1;
    }
    int64_t span = c->o->max_images - c->o->min_images + 1;
    d->n_images = (int)(c->o->min_images + (int64_t)(synth_rand(&c->rng) % (uint64_t)span));
    for (int i = 0; i < d->n_images; i++) synth_scene_random(&c->rng, &scenes[i]);
    mmc4_text(c, d, scenes);
    mmc4_similarities(c, d);
    cJSON *infos = cJSON_CreateArray();
    int rc = 0;
    for (int i = 0; i < d->n_images && !rc; i++) rc = mmc4_add_image(c, d, i, &scenes[i], infos);
    make_key(c, doc, key, sizeof key);
    snprintf(name, sizeof name, "%s.json", key);
    cJSON *j = mmc4_json(d, key, infos);
    if (!rc && c->image_dir) write_json_line(c, j);
    else if (!rc) write_json_member(c, name, j, member_mtime(c, doc));
    cJSON_Delete(j);
    free(d);
    return rc || c->sink.failed ? -1 : 0;
}

/* ---- shards ---- */

void synth_shard_name(const synth_options *o, int64_t shard, char *buf, size_t n) {
    const char *suffix = o->compress == SYNTH_COMPRESS_GZIP ? ".gz" : o->compress == SYNTH_COMPRESS_ZSTD ? ".zst" : "";
    if (o->layout == SYNTH_MMC4) snprintf(buf, n, "%09lld.tar%s", (long long)shard, suffix);
    else if (o->layout == SYNTH_MMC4_JSONL) snprintf(buf, n, "%09lld.jsonl%s", (long long)shard, suffix);
    else snprintf(buf, n, "%05lld.tar%s", (long long)shard, suffix);
}

static int digits_for(int64_t n) {
    int d = 1;
    for (int64_t v = n - 1; v >= 10; v /= 10) d++;
    return d < 4 ? 4 : d;
}

/* Writes one shard to path.tmp, then renames it into place. */
static int write_shard(const synth_options *o, int64_t shard, const char *path, const char *image_dir, char *err,
                       size_t errlen) {
    char tmp[4096 + 8];
    shard_ctx c = {.o = o, .shard = shard, .key_digits = digits_for(o->docs), .image_dir = image_dir};
    c.rng = o->seed * 0x9e3779b97f4a7c15ull + (uint64_t)shard * 0xd1b54a32d192ed03ull + 1;
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int rc = sink_open(&c.sink, tmp, o->compress);
    if (rc) aimc_set_err(c.err, sizeof c.err, "cannot write: %s", strerror(errno));
    for (int64_t d = 0; d < o->docs && !rc; d++)
        rc = o->layout == SYNTH_LAION ? laion_sample(&c, d) : mmc4_document(&c, d);
    if (!rc && o->layout != SYNTH_MMC4_JSONL) tar_finish(&c.sink);
    if (sink_close(&c.sink) && !rc) {
        rc = -1;
        aimc_set_err(c.err, sizeof c.err, "write failed (disk full?)");
    }
    if (!rc && rename(tmp, path)) {
        rc = -1;
        aimc_set_err(c.err, sizeof c.err, "cannot rename %s: %s", tmp, strerror(errno));
    }
    if (rc) {
        remove(tmp);
        aimc_set_err(err, errlen, "synth: %s: %s", path, c.err);
    }
    return rc;
}

static int check_options(const synth_options *o, char *err, size_t errlen) {
    if (o->shards < 1 || o->docs < 1) aimc_set_err(err, errlen, "synth: --shards and --docs must be >= 1");
    else if (o->image_size < 8 || o->image_size > 4096)
        aimc_set_err(err, errlen, "synth: --image-size must be in 8..4096, got %lld", (long long)o->image_size);
    else if (o->layout != SYNTH_LAION &&
             (o->min_images < 1 || o->max_images < o->min_images || o->max_images > SYNTH_MAX_DOC_IMAGES))
        aimc_set_err(err, errlen, "synth: images per document must satisfy 1 <= min <= max <= %d",
                     SYNTH_MAX_DOC_IMAGES);
    else return 0;
    return -1;
}

/* mkdir -p */
static int make_dirs(const char *dir, char *err, size_t errlen) {
    char path[4096];
    snprintf(path, sizeof path, "%s", dir);
    for (char *p = path + 1;; p++) {
        int last = *p == 0;
        if (*p != '/' && !last) continue;
        *p = 0;
        if (mkdir(path, 0755) && errno != EEXIST) {
            aimc_set_err(err, errlen, "synth: cannot create folder %s: %s", path, strerror(errno));
            return -1;
        }
        if (last) return 0;
        *p = '/';
    }
}

int64_t synth_write(const synth_options *o_in, const char *dir, char *err, size_t errlen) {
    synth_options o = *o_in;
    if (o.min_images == 0 && o.max_images == 0) {
        o.min_images = 2;
        o.max_images = 5;
    }
    char images[4096];
    if (snprintf(images, sizeof images, "%s/images", dir) >= (int)sizeof images)
        return aimc_set_err(err, errlen, "synth: folder name too long: %s", dir);
    int raw = o.layout == SYNTH_MMC4_JSONL;
    if (check_options(&o, err, errlen) || make_dirs(raw ? images : dir, err, errlen)) return -1;
    for (int64_t s = 0; s < o.shards; s++) {
        char name[64], path[4096];
        synth_shard_name(&o, s, name, sizeof name);
        snprintf(path, sizeof path, "%s/%s", dir, name);
        if (write_shard(&o, s, path, raw ? images : NULL, err, errlen)) return -1;
    }
    return o.shards;
}
