/* Image decoding and preprocessing against Pillow / transformers references
 * (tests/fixtures/images, written by scripts/make_image_fixtures.py):
 * - decoded RGB equals Pillow's `Image.open(f).convert("RGB")` (and
 *   transformers' white compositing for images with transparency);
 * - pixel_values for the clip / llava / llava_pad / blip2 presets: bit-exact
 *   against transformers (CRC-32 of the float32 bytes, sum and sum of squares
 *   for every image x preset; max abs diff <= 1e-3 where the whole reference
 *   is stored), for Pillow 13 and, where recorded, Pillow 12's pass order;
 * - custom preprocessor_config.json folders (tiny sizes, crop larger than the
 *   image, pad-to-square, exact size) against stored float32 values;
 * - truncated, bit-flipped and oversized-header files give an error, never a
 *   crash; config errors give messages. */
#include "../data/image.h"
#include "../data/preprocess.h"
#include "testlib.h"
#include "fixture_path.h"
#include <cjson/cJSON.h>
#include <zlib.h>

#define PIXEL_TOL 1e-3 /* on normalised pixel_values; one uint8 level is ~0.015 */

static char fixture_dir[512];

typedef struct blob {
    uint8_t *data;
    size_t size;
} blob;

static uint8_t *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = tl_alloc((size_t)len + 1);
    *n = fread(buf, 1, (size_t)len, f);
    buf[*n] = 0;
    fclose(f);
    return buf;
}

static uint8_t *read_fixture(const char *name, size_t *n) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", fixture_dir, name);
    return read_all(path, n);
}

static cJSON *read_json(const char *name) {
    size_t n = 0;
    char *text = (char *)read_fixture(name, &n);
    cJSON *root = text ? cJSON_ParseWithLength(text, n) : NULL;
    free(text);
    return root;
}

static int64_t jint(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? (int64_t)v->valuedouble : -1;
}

static double jnum(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static const char *jstr(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : "";
}

/* ------------------------------------------------ reference unpacking -- */

static uint8_t paeth(int a, int b, int c) {
    int p = a + b - c, pa = abs(p - a), pb = abs(p - b), pc = abs(p - c);
    return (uint8_t)(pa <= pb && pa <= pc ? a : pb <= pc ? b : c);
}

/* Undoes the script's PNG row filters (one byte per sample, each plane
 * starting from a zero row above). Returns 0 or -1 on a bad filter byte. */
static int unfilter(const uint8_t *in, int64_t planes, int64_t rows, int64_t cols, uint8_t *out) {
    for (int64_t p = 0; p < planes; p++) {
        for (int64_t r = 0; r < rows; r++) {
            const uint8_t *src = in + (p * rows + r) * (cols + 1);
            uint8_t *row = out + (p * rows + r) * cols;
            const uint8_t *up = r ? row - cols : NULL;
            for (int64_t x = 0; x < cols; x++) {
                int a = x ? row[x - 1] : 0, b = up ? up[x] : 0, c = (x && up) ? up[x - 1] : 0, pred;
                switch (src[0]) {
                case 0: pred = 0; break;
                case 1: pred = a; break;
                case 2: pred = b; break;
                case 3: pred = (a + b) / 2; break;
                case 4: pred = paeth(a, b, c); break;
                default: return -1;
                }
                row[x] = (uint8_t)(src[1 + x] + pred);
            }
        }
    }
    return 0;
}

/* A uint8 [planes, rows, cols] array from refs.bin; NULL if it is absent or
 * does not unpack. */
static uint8_t *ref_u8(const blob *refs, const cJSON *rec, int64_t planes, int64_t rows, int64_t cols) {
    int64_t off = jint(rec, "offset"), len = jint(rec, "bytes");
    if (off < 0 || len < 0 || (size_t)(off + len) > refs->size) return NULL;
    uLongf raw_len = (uLongf)(planes * rows * (cols + 1));
    uint8_t *raw = tl_alloc(raw_len), *out = tl_alloc((size_t)(planes * rows * cols));
    int ok = uncompress(raw, &raw_len, refs->data + off, (uLong)len) == Z_OK &&
             raw_len == (uLongf)(planes * rows * (cols + 1)) && unfilter(raw, planes, rows, cols, out) == 0;
    free(raw);
    if (!ok) free(out);
    return ok ? out : NULL;
}

static float *ref_f32(const blob *refs, const cJSON *rec, int64_t n) {
    int64_t off = jint(rec, "offset"), len = jint(rec, "bytes");
    if (off < 0 || len < 0 || (size_t)(off + len) > refs->size) return NULL;
    float *out = tl_alloc((size_t)n * sizeof(float));
    uLongf got = (uLongf)(n * sizeof(float));
    if (uncompress((Bytef *)out, &got, refs->data + off, (uLong)len) != Z_OK || got != n * sizeof(float)) {
        free(out);
        return NULL;
    }
    return out;
}

/* --------------------------------------------------------- decoding -- */

/* HWC image vs CHW planes. */
static double max_abs_vs_planes(const image_rgb *img, const uint8_t *planes) {
    int m = 0;
    int64_t hw = img->width * img->height;
    for (int64_t i = 0; i < hw; i++)
        for (int c = 0; c < 3; c++) {
            int d = abs(img->data[i * 3 + c] - planes[c * hw + i]);
            m = d > m ? d : m;
        }
    return m;
}

/* Decoded pixels must equal Pillow's: every decoder here is the same
 * library family Pillow bundles (libjpeg-turbo ISLOW + fancy upsampling,
 * libpng-equivalent unpacking, libwebp), so no tolerance is allowed. */
#define DECODE_TOL 0

static void check_decode(const cJSON *e, const blob *refs, image_alpha alpha, const char *key, double *worst) {
    const cJSON *rec = cJSON_GetObjectItemCaseSensitive(e, key);
    if (!rec) return;
    const char *file = jstr(e, "file");
    int64_t w = jint(e, "width"), h = jint(e, "height");
    size_t n = 0;
    uint8_t *bytes = read_fixture(file, &n);
    CHECK(bytes != NULL, "%s: cannot read the fixture", file);
    if (!bytes) return;
    image_decode_opts o = {.alpha = alpha};
    image_rgb img;
    char err[256] = "";
    int rc = image_decode(bytes, n, &o, &img, err, sizeof err);
    CHECK(rc == 0 && img.width == w && img.height == h, "%s: decode rc %d (%s), %lldx%lld vs %lldx%lld", file, rc,
          err, (long long)img.width, (long long)img.height, (long long)w, (long long)h);
    uint8_t *ref = ref_u8(refs, rec, 3, h, w);
    CHECK(ref != NULL, "%s: reference %s does not unpack", file, key);
    if (rc == 0 && ref && img.width == w && img.height == h) {
        double d = max_abs_vs_planes(&img, ref);
        CHECK(d <= DECODE_TOL, "%s (%s): decoded RGB differs from Pillow's by up to %g", file, key, d);
        if (d > *worst) *worst = d;
        printf("  decode %-26s %-6s %-14s max |diff| %g\n", file, jstr(e, "format"), key, d);
    }
    if (rc == 0) image_free(&img);
    free(ref);
    free(bytes);
}

/* ----------------------------------------------------- preprocessing -- */

typedef struct preset_stats {
    double max_diff; /* over the fully stored references */
    int exact, total;
} preset_stats;

static void sums(const float *x, int64_t n, double *s, double *s2) {
    *s = *s2 = 0;
    for (int64_t i = 0; i < n; i++) *s += x[i], *s2 += (double)x[i] * x[i];
}

/* Our pixel_values for one image and config, or NULL (with a failed check). */
static float *run_preprocess(const char *file, const preprocess_config *c, int64_t *n, int64_t *oh, int64_t *ow) {
    size_t len = 0;
    uint8_t *bytes = read_fixture(file, &len);
    image_rgb img;
    char err[256] = "";
    int rc = bytes ? image_decode(bytes, len, NULL, &img, err, sizeof err) : -1;
    free(bytes);
    CHECK(rc == 0, "%s: %s", file, err);
    if (rc) return NULL;
    float *out = NULL;
    rc = preprocess_output_size(c, img.width, img.height, oh, ow, err, sizeof err);
    if (rc == 0) {
        *n = 3 * *oh * *ow;
        out = tl_alloc((size_t)*n * sizeof(float));
        poison(out, *n);
        rc = preprocess_image(c, &img, out, err, sizeof err);
    }
    CHECK(rc == 0, "%s: preprocess: %s", file, err);
    image_free(&img);
    if (rc) free(out);
    return rc ? NULL : out;
}

/* float32(u8 / 255) then (x - mean) / std in float32, as the script verified
 * reproduces transformers bit for bit. */
static void u8_to_pixel_values(const uint8_t *u8, int64_t hw, double factor, const preprocess_config *c, float *out) {
    for (int ch = 0; ch < 3; ch++)
        for (int64_t i = 0; i < hw; i++) {
            float x = (float)((double)u8[ch * hw + i] * factor);
            out[ch * hw + i] = (x - (float)c->mean[ch]) / (float)c->std[ch];
        }
}

static void check_preset(const char *file, const char *preset, const cJSON *rec, const blob *refs,
                         image_resize_order order, double factor, preset_stats *st) {
    preprocess_config c;
    CHECK(preprocess_preset(&c, preset) == 0, "preset %s missing", preset);
    c.resize_order = order;
    int64_t n = 0, oh = 0, ow = 0;
    float *ours = run_preprocess(file, &c, &n, &oh, &ow);
    if (!ours) return;
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(rec, "shape");
    int64_t rh = (int64_t)cJSON_GetArrayItem(shape, 1)->valuedouble;
    int64_t rw = (int64_t)cJSON_GetArrayItem(shape, 2)->valuedouble;
    CHECK(oh == rh && ow == rw, "%s %s: output %lldx%lld, transformers %lldx%lld", file, preset, (long long)ow,
          (long long)oh, (long long)rw, (long long)rh);
    if (oh != rh || ow != rw) {
        free(ours);
        return;
    }
    uint32_t crc = (uint32_t)crc32(0, (const Bytef *)ours, (uInt)(n * sizeof(float)));
    double s, s2;
    sums(ours, n, &s, &s2);
    int exact = crc == (uint32_t)jnum(rec, "crc32");
    CHECK(exact, "%s %s: pixel_values differ from transformers' (sum %.9g vs %.9g, sum sq %.9g vs %.9g)", file,
          preset, s, jnum(rec, "sum"), s2, jnum(rec, "sumsq"));
    CHECK(fabs(s - jnum(rec, "sum")) <= 1e-6 * (1 + fabs(s)) && fabs(s2 - jnum(rec, "sumsq")) <= 1e-6 * s2,
          "%s %s: sums %.9g / %.9g vs transformers %.9g / %.9g", file, preset, s, s2, jnum(rec, "sum"),
          jnum(rec, "sumsq"));
    st->exact += exact;
    st->total++;
    const cJSON *full = cJSON_GetObjectItemCaseSensitive(rec, "u8");
    if (full) {
        uint8_t *u8 = ref_u8(refs, full, 3, oh, ow);
        CHECK(u8 != NULL, "%s %s: stored reference does not unpack", file, preset);
        if (u8) {
            float *ref = tl_alloc((size_t)n * sizeof(float));
            u8_to_pixel_values(u8, oh * ow, factor, &c, ref);
            double rs, rs2, d = 0;
            sums(ref, n, &rs, &rs2); /* the reconstruction itself must match transformers' sums */
            CHECK(fabs(rs - jnum(rec, "sum")) <= 1e-6 * (1 + fabs(rs)), "%s %s: reference sum %.9g vs %.9g", file,
                  preset, rs, jnum(rec, "sum"));
            for (int64_t i = 0; i < n; i++) d = fmax(d, fabs((double)ours[i] - ref[i]));
            if (isnan(ours[0])) d = NAN;
            CHECK(d <= PIXEL_TOL, "%s %s: max |diff| %g > %g", file, preset, d, PIXEL_TOL);
            st->max_diff = fmax(st->max_diff, d);
            free(ref);
            free(u8);
        }
    }
    free(ours);
}

static const char *PRESETS[] = {"clip", "llava", "llava_pad", "blip2"};

static void test_references(const cJSON *index, const blob *refs) {
    const cJSON *images = cJSON_GetObjectItemCaseSensitive(index, "images");
    double decode_worst = 0;
    preset_stats st[4] = {{0}};
    CHECK(cJSON_GetArraySize(images) >= 10, "index.json lists %d images", cJSON_GetArraySize(images));
    const cJSON *e;
    cJSON_ArrayForEach(e, images) {
        check_decode(e, refs, IMAGE_ALPHA_DROP, "decoded", &decode_worst);
        check_decode(e, refs, IMAGE_ALPHA_WHITE, "decoded_white", &decode_worst);
        const cJSON *prefs = cJSON_GetObjectItemCaseSensitive(e, "refs");
        for (int p = 0; p < 4; p++) {
            const cJSON *rec = cJSON_GetObjectItemCaseSensitive(prefs, PRESETS[p]);
            double factor = jnum(cJSON_GetObjectItemCaseSensitive(
                                     cJSON_GetObjectItemCaseSensitive(index, "presets"), PRESETS[p]),
                                 "rescale_factor");
            CHECK(rec != NULL && factor > 0, "%s: no %s reference", jstr(e, "file"), PRESETS[p]);
            if (rec) check_preset(jstr(e, "file"), PRESETS[p], rec, refs, IMAGE_RESIZE_PILLOW13, factor, &st[p]);
        }
    }
    printf("  decode: max |diff| vs Pillow over all images %g\n", decode_worst);
    for (int p = 0; p < 4; p++)
        printf("  preset %-9s: %d/%d bit-exact vs transformers (Pillow 13); max |diff| on stored arrays %g\n",
               PRESETS[p], st[p].exact, st[p].total, st[p].max_diff);
}

/* References from Pillow 12 (horizontal pass always first), CRCs only. */
static void test_pillow12(const blob *refs) {
    cJSON *index = read_json("index_pillow12.json");
    if (!index) {
        printf("  (no index_pillow12.json: Pillow 12 order not checked)\n");
        return;
    }
    preset_stats st = {0};
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(index, "images")) {
        const cJSON *prefs = cJSON_GetObjectItemCaseSensitive(e, "refs");
        for (int p = 0; p < 4; p++) {
            const cJSON *rec = cJSON_GetObjectItemCaseSensitive(prefs, PRESETS[p]);
            if (rec) check_preset(jstr(e, "file"), PRESETS[p], rec, refs, IMAGE_RESIZE_PILLOW12, 1.0 / 255, &st);
        }
    }
    printf("  Pillow %s order: %d/%d image x preset pixel_values bit-exact\n", jstr(index, "pillow"), st.exact,
           st.total);
    cJSON_Delete(index);
}

/* preprocessor_config.json folders with tiny outputs, float32 stored. */
static void test_custom_configs(const cJSON *index, const blob *refs) {
    const cJSON *cu;
    cJSON_ArrayForEach(cu, cJSON_GetObjectItemCaseSensitive(index, "custom")) {
        char dir[1024], err[256] = "";
        snprintf(dir, sizeof dir, "%s/%s", fixture_dir, jstr(cu, "dir"));
        preprocess_config c;
        int rc = preprocess_config_load(&c, dir, err, sizeof err);
        CHECK(rc == 0, "%s", err);
        if (rc) continue;
        double worst = 0;
        const cJSON *cs;
        cJSON_ArrayForEach(cs, cJSON_GetObjectItemCaseSensitive(cu, "cases")) {
            int64_t n = 0, oh = 0, ow = 0;
            float *ours = run_preprocess(jstr(cs, "image"), &c, &n, &oh, &ow);
            const cJSON *shape = cJSON_GetObjectItemCaseSensitive(cs, "shape");
            int64_t rn = 3 * (int64_t)cJSON_GetArrayItem(shape, 1)->valuedouble *
                         (int64_t)cJSON_GetArrayItem(shape, 2)->valuedouble;
            float *ref = ref_f32(refs, cs, rn);
            CHECK(ours && ref && n == rn, "%s / %s: output size %lld vs %lld", jstr(cu, "dir"), jstr(cs, "image"),
                  (long long)n, (long long)rn);
            if (ours && ref && n == rn) {
                double d = 0;
                for (int64_t i = 0; i < n; i++) d = fmax(d, fabs((double)ours[i] - ref[i]));
                if (isnan(ours[n - 1])) d = NAN;
                CHECK(d <= PIXEL_TOL, "%s / %s: max |diff| %g", jstr(cu, "dir"), jstr(cs, "image"), d);
                worst = fmax(worst, d);
            }
            free(ours);
            free(ref);
        }
        printf("  config %-17s: max |diff| %g over %d images\n", jstr(cu, "dir"), worst,
               cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(cu, "cases")));
    }
}

/* ------------------------------------------------------- robustness -- */

/* Decoding must fail cleanly or give a sane image; either way no crash. */
static int decode_sane(const uint8_t *d, size_t n, const char *what) {
    image_rgb img;
    char err[256] = "";
    int rc = image_decode(d, n, NULL, &img, err, sizeof err);
    if (rc == 0) {
        CHECK(img.data && img.width > 0 && img.height > 0 && img.width * img.height <= IMAGE_DEFAULT_MAX_PIXELS,
              "%s: success with a bad image", what);
        /* touch every byte so a short buffer would show under sanitizers */
        unsigned acc = 0;
        for (int64_t i = 0; i < img.width * img.height * 3; i++) acc += img.data[i];
        (void)acc;
        image_free(&img);
    } else {
        CHECK(err[0] != 0 && img.data == NULL, "%s: failure without a message", what);
    }
    return rc;
}

static void test_truncation(const cJSON *images) {
    const cJSON *e;
    int cases = 0;
    cJSON_ArrayForEach(e, images) {
        size_t n = 0;
        const char *file = jstr(e, "file");
        uint8_t *full = read_fixture(file, &n);
        if (!full) continue;
        /* Cut anywhere before the last 12 bytes (PNG's IEND chunk, which
         * Pillow does not need either): the image data is incomplete. */
        size_t cuts[24];
        int nc = 0;
        for (int k = 0; k < 8; k++) cuts[nc++] = n * k / 8;
        size_t fixed[] = {1, 2, 3, 7, 8, 11, 12, 15, 16, 20, 30, 40};
        for (int k = 0; k < 12; k++) cuts[nc++] = fixed[k];
        for (int k = 0; k < 4; k++) cuts[nc++] = (size_t)rng_int((int64_t)n - 12);
        for (int k = 0; k < nc; k++) {
            if (cuts[k] + 12 >= n) continue;
            uint8_t *part = tl_alloc(cuts[k]);
            memcpy(part, full, cuts[k]);
            char what[128];
            snprintf(what, sizeof what, "%s cut at %zu of %zu", file, cuts[k], n);
            int rc = decode_sane(part, cuts[k], what);
            CHECK(rc != 0, "%s: decoded without an error", what);
            free(part);
            cases++;
        }
        for (size_t tail = 1; tail <= 12 && tail < n; tail++) { /* either way, but no crash */
            char what[128];
            snprintf(what, sizeof what, "%s without its last %zu bytes", file, tail);
            decode_sane(full, n - tail, what);
        }
        free(full);
    }
    printf("  %d truncated files refused\n", cases);
}

static void test_bit_flips(const cJSON *images) {
    const cJSON *e;
    int ok = 0, failed = 0;
    cJSON_ArrayForEach(e, images) {
        size_t n = 0;
        const char *file = jstr(e, "file");
        uint8_t *full = read_fixture(file, &n);
        if (!full) continue;
        uint8_t *copy = tl_alloc(n);
        for (int trial = 0; trial < 24; trial++) {
            memcpy(copy, full, n);
            int flips = 1 + (int)rng_int(8);
            /* half the trials hit the first 64 bytes, where the headers are */
            for (int f = 0; f < flips; f++) {
                size_t at = (size_t)rng_int(trial % 2 ? (int64_t)n : (n < 64 ? (int64_t)n : 64));
                copy[at] ^= (uint8_t)(1 + rng_int(255));
            }
            char what[128];
            snprintf(what, sizeof what, "%s with %d flipped bytes (trial %d)", file, flips, trial);
            if (decode_sane(copy, n, what) == 0) ok++;
            else failed++;
        }
        free(copy);
        free(full);
    }
    printf("  bit flips: %d decoded (as Pillow would: libjpeg tolerates corrupt entropy data), %d refused\n", ok,
           failed);
}

static void put_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

/* A PNG's IHDR rewritten with new dimensions and a valid CRC. */
static void expect_png_dims_refused(uint32_t w, uint32_t h) {
    size_t n = 0;
    uint8_t *d = read_fixture("gray.png", &n);
    if (!d) return;
    put_be32(d + 16, w);
    put_be32(d + 20, h);
    put_be32(d + 29, (uint32_t)crc32(0, d + 12, 17));
    image_rgb img;
    char err[256] = "";
    int rc = image_decode(d, n, NULL, &img, err, sizeof err);
    CHECK(rc != 0 && err[0], "PNG claiming %ux%u: rc %d", w, h, rc);
    if (rc == 0) image_free(&img);
    else printf("  PNG %ux%u: %s\n", w, h, err);
    free(d);
}

/* The first SOFn marker's height / width fields rewritten. */
static void expect_jpeg_dims_refused(const char *file, unsigned w, unsigned h) {
    size_t n = 0;
    uint8_t *d = read_fixture(file, &n);
    if (!d) return;
    size_t i = 2;
    while (i + 9 < n && !(d[i] == 0xFF && (d[i + 1] == 0xC0 || d[i + 1] == 0xC1 || d[i + 1] == 0xC2))) i++;
    CHECK(i + 9 < n, "%s: no SOF marker", file);
    d[i + 5] = (uint8_t)(h >> 8), d[i + 6] = (uint8_t)h, d[i + 7] = (uint8_t)(w >> 8), d[i + 8] = (uint8_t)w;
    image_rgb img;
    char err[256] = "";
    int rc = image_decode(d, n, NULL, &img, err, sizeof err);
    CHECK(rc != 0 && err[0], "JPEG claiming %ux%u: rc %d", w, h, rc);
    if (rc == 0) image_free(&img);
    else printf("  JPEG %ux%u: %s\n", w, h, err);
    free(d);
}

/* Lossy WebP: the VP8 frame header's 14-bit width / height (after the
 * 3-byte frame tag and the 9d 01 2a start code). */
static void expect_webp_dims_refused(unsigned w, unsigned h) {
    size_t n = 0;
    uint8_t *d = read_fixture("lossy.webp", &n);
    if (!d) return;
    CHECK(n > 30 && !memcmp(d + 12, "VP8 ", 4) && d[23] == 0x9d, "lossy.webp is not a simple VP8 file");
    d[26] = (uint8_t)w, d[27] = (uint8_t)(w >> 8), d[28] = (uint8_t)h, d[29] = (uint8_t)(h >> 8);
    image_rgb img;
    char err[256] = "";
    int rc = image_decode(d, n, NULL, &img, err, sizeof err);
    CHECK(rc != 0 && err[0], "WebP claiming %ux%u: rc %d", w, h, rc);
    if (rc == 0) image_free(&img);
    else printf("  WebP %ux%u: %s\n", w, h, err);
    free(d);
}

static void test_limits(void) {
    expect_png_dims_refused(100000, 100000);
    expect_png_dims_refused(0x7fffffff, 3);
    expect_png_dims_refused(0, 10);
    expect_jpeg_dims_refused("landscape.jpg", 65000, 65000);
    expect_jpeg_dims_refused("portrait_progressive.jpg", 0, 0);
    expect_webp_dims_refused(16383, 16383);
    size_t n = 0;
    uint8_t *d = read_fixture("landscape.jpg", &n);
    image_rgb img;
    char err[256] = "";
    image_decode_opts tight = {.max_pixels = 397 * 263 - 1}, exact = {.max_pixels = 397 * 263};
    CHECK(d && image_decode(d, n, &tight, &img, err, sizeof err) != 0 && strstr(err, "limit"),
          "max_pixels one below the size: '%s'", err);
    CHECK(d && image_decode(d, n, &exact, &img, err, sizeof err) == 0, "max_pixels = size: %s", err);
    if (d) image_free(&img);
    static const uint8_t junk[] = "GIF89a....";
    CHECK(image_decode(junk, sizeof junk, NULL, &img, err, sizeof err) != 0 && strstr(err, "not a JPEG"), "GIF: %s",
          err);
    CHECK(image_decode(junk, 0, NULL, &img, err, sizeof err) != 0, "empty buffer accepted");
    CHECK(image_load("/nonexistent/x.png", NULL, &img, err, sizeof err) != 0 && strstr(err, "/nonexistent/x.png"),
          "missing file: %s", err);
    free(d);
}

/* DCT-scaled JPEG decoding: the strongest 1/8-step reduction that keeps both
 * sides >= min_side, and pixels close to an area-average of the full decode. */
static void test_jpeg_min_side(void) {
    size_t n = 0;
    uint8_t *d = read_fixture("landscape.jpg", &n);
    if (!d) return;
    image_rgb full, half;
    char err[256] = "";
    image_decode_opts o = {.min_side = 120};
    int rc = image_decode(d, n, NULL, &full, err, sizeof err);
    if (rc == 0 && image_decode(d, n, &o, &half, err, sizeof err)) {
        image_free(&full);
        rc = -1;
    }
    free(d);
    CHECK(rc == 0, "min_side decode: %s", err);
    if (rc) return;
    /* 397x263: 4/8 gives 199x132 (>= 120), 3/8 would give 149x99 */
    CHECK(half.width == 199 && half.height == 132, "min_side 120: %lldx%lld, want 199x132", (long long)half.width,
          (long long)half.height);
    double sum = 0;
    int64_t cnt = 0;
    for (int64_t y = 0; y < half.height && 2 * y + 1 < full.height; y++)
        for (int64_t x = 0; x < half.width && 2 * x + 1 < full.width; x++)
            for (int c = 0; c < 3; c++) {
                const uint8_t *p = full.data + ((2 * y) * full.width + 2 * x) * 3 + c;
                double avg = (p[0] + p[3] + p[full.width * 3] + p[full.width * 3 + 3]) / 4.0;
                sum += fabs(avg - half.data[(y * half.width + x) * 3 + c]), cnt++;
            }
    CHECK(sum / cnt < 4.0, "DCT-scaled decode far from a 2x2 average: mean |diff| %g", sum / cnt);
    image_free(&full);
    image_free(&half);
}

static void test_config_errors(void) {
    preprocess_config c;
    char err[256];
    struct {
        const char *json, *want;
    } bad[] = {
        {"{\"size\": {\"shortest_edge\": 224", "malformed"},
        {"[1, 2]", "object"},
        {"{\"resample\": 2}", "resample"},
        {"{\"size\": {\"longest_edge\": 100}}", "longest_edge"},
        {"{\"size\": {\"height\": 0, \"width\": 3}}", "size.height"},
        {"{\"crop_size\": {\"height\": 3}}", "crop_size"},
        {"{\"image_std\": [0.2, 0, 0.3]}", "image_std"},
        {"{\"image_mean\": [0.2, 0.3]}", "image_mean"},
        {"{\"do_resize\": \"yes\"}", "do_resize"},
        {"{\"rescale_factor\": -1}", "rescale_factor"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = 0;
        int rc = preprocess_config_parse(&c, bad[i].json, "cfg.json", err, sizeof err);
        CHECK(rc != 0 && strstr(err, bad[i].want) && strstr(err, "cfg.json"), "config %s: rc %d, '%s'", bad[i].json,
              rc, err);
    }
    /* legacy bare-number sizes: CLIP short side, BLIP square */
    CHECK(preprocess_config_parse(&c, "{\"size\": 300, \"crop_size\": 256}", "x", err, sizeof err) == 0 &&
              c.size_mode == PREPROCESS_SHORTEST_EDGE && c.shortest_edge == 300 && c.crop_height == 256 &&
              c.crop_width == 256,
          "CLIP bare sizes: %s", err);
    CHECK(preprocess_config_parse(&c, "{\"image_processor_type\": \"BlipImageProcessor\", \"size\": 364}", "x", err,
                                  sizeof err) == 0 &&
              c.size_mode == PREPROCESS_EXACT_SIZE && c.height == 364 && c.width == 364 && !c.do_center_crop,
          "BLIP bare size: %s", err);
    CHECK(preprocess_config_parse(&c, "{\"image_processor_type\": \"BlipImageProcessor\"}", "x", err, sizeof err) ==
                  0 && c.height == 384,
          "BLIP class default 384");
    CHECK(preprocess_preset(&c, "siglip") == -1, "unknown preset accepted");
    CHECK(preprocess_config_load(&c, "/nonexistent", err, sizeof err) != 0 && strstr(err, "preprocessor_config.json"),
          "missing config: %s", err);
    int64_t oh, ow;
    preprocess_preset(&c, "clip");
    c.do_center_crop = 0;
    CHECK(preprocess_output_size(&c, 1, 60000, &oh, &ow, err, sizeof err) != 0,
          "1x60000 resized to 224x13440000 accepted");
}

static void test_detect(void) {
    static const uint8_t jpg[] = {0xFF, 0xD8, 0xFF, 0xE0}, png[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    static const uint8_t webp[] = "RIFF\x10\0\0\0WEBPVP8 ";
    CHECK(image_detect(jpg, 4) == IMAGE_FORMAT_JPEG, "JPEG magic");
    CHECK(image_detect(png, 8) == IMAGE_FORMAT_PNG, "PNG magic");
    CHECK(image_detect(png, 7) == IMAGE_FORMAT_UNKNOWN, "short PNG magic");
    CHECK(image_detect(webp, 16) == IMAGE_FORMAT_WEBP, "WebP magic");
    CHECK(image_detect((const uint8_t *)"RIFF\0\0\0\0WAVE", 12) == IMAGE_FORMAT_UNKNOWN, "RIFF WAVE");
}

static void find_fixture_dir(void) { FIXTURE_PATH("images", fixture_dir, sizeof fixture_dir); }

int main(void) {
    tests_begin("test_image");
    find_fixture_dir();
    cJSON *index = read_json("index.json");
    blob refs = {0};
    refs.data = read_fixture("refs.bin", &refs.size);
    CHECK(index && refs.data, "cannot read %s/index.json and refs.bin", fixture_dir);
    test_detect();
    if (index && refs.data) {
        test_references(index, &refs);
        test_pillow12(&refs);
        test_custom_configs(index, &refs);
        test_truncation(cJSON_GetObjectItemCaseSensitive(index, "images"));
        test_bit_flips(cJSON_GetObjectItemCaseSensitive(index, "images"));
    }
    test_limits();
    test_jpeg_min_side();
    test_config_errors();
    cJSON_Delete(index);
    free(refs.data);
    return tests_done();
}
