/* Synthetic scenes, their captions and image encodings (see synth.h). The
 * shard writing (tar, compression, LAION / MMC4 layouts) is in
 * synth_write.c. */
#include "synth.h"
#include "../kernels/check.h"
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>
#include <webp/encode.h>

const char *const synth_colour_names[SYNTH_NCOLOURS] = {"red",    "green", "blue",  "yellow", "orange",
                                                       "purple", "white", "black", "pink",   "cyan"};
const uint8_t synth_colour_rgb[SYNTH_NCOLOURS][3] = {
    {220, 30, 30},  {30, 170, 50},   {30, 60, 220},   {240, 220, 40}, {245, 140, 20},
    {130, 40, 170}, {245, 245, 245}, {15, 15, 15},    {245, 150, 200}, {40, 210, 220},
};
const char *const synth_shape_names[SYNTH_NSHAPES] = {"circle", "square", "triangle", "diamond", "cross"};

int synth_parse_layout(const char *name, synth_layout *out) {
    if (!strcmp(name, "laion")) *out = SYNTH_LAION;
    else if (!strcmp(name, "mmc4")) *out = SYNTH_MMC4;
    else if (!strcmp(name, "mmc4-jsonl")) *out = SYNTH_MMC4_JSONL;
    else return -1;
    return 0;
}

int synth_parse_compress(const char *name, synth_compress *out) {
    if (!strcmp(name, "none")) *out = SYNTH_COMPRESS_NONE;
    else if (!strcmp(name, "gzip")) *out = SYNTH_COMPRESS_GZIP;
    else if (!strcmp(name, "zstd")) *out = SYNTH_COMPRESS_ZSTD;
    else return -1;
    return 0;
}

int synth_parse_image_format(const char *name, synth_image_format *out) {
    if (!strcmp(name, "webp")) *out = SYNTH_IMG_WEBP;
    else if (!strcmp(name, "jpeg") || !strcmp(name, "jpg")) *out = SYNTH_IMG_JPEG;
    else if (!strcmp(name, "png")) *out = SYNTH_IMG_PNG;
    else if (!strcmp(name, "mixed")) *out = SYNTH_IMG_MIXED;
    else return -1;
    return 0;
}

const char *synth_image_ext(synth_image_format f) {
    return f == SYNTH_IMG_WEBP ? "webp" : f == SYNTH_IMG_JPEG ? "jpg" : "png";
}

uint64_t synth_rand(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static int rand_below(uint64_t *state, int n) { return (int)(synth_rand(state) % (uint64_t)n); }

/* A colour index different from every index in avoid[0..n). */
static int distinct_colour(uint64_t *state, const int *avoid, int n) {
    for (;;) {
        int c = rand_below(state, SYNTH_NCOLOURS), clash = 0;
        for (int i = 0; i < n; i++) clash |= c == avoid[i];
        if (!clash) return c;
    }
}

void synth_scene_random(uint64_t *state, synth_scene *s) {
    int used[3];
    s->shape = rand_below(state, SYNTH_NSHAPES);
    used[0] = s->fg = rand_below(state, SYNTH_NCOLOURS);
    used[1] = s->bg = distinct_colour(state, used, 1);
    s->bg2 = rand_below(state, 2) ? distinct_colour(state, used, 2) : -1;
    s->radius = 0.25 + 0.15 * (double)(synth_rand(state) >> 11) / 9007199254740992.0;
}

/* Whether (x, y), relative to the centre in units of the shape's half-size,
 * lies inside the shape. */
static int inside_shape(int shape, double x, double y) {
    switch (shape) {
    case 0: return x * x + y * y <= 1.0;
    case 1: return fabs(x) <= 1.0 && fabs(y) <= 1.0;
    case 2: return y <= 0.8 && y >= -1.0 + 2.0 * fabs(x); /* apex up, base at y = 0.8 */
    case 3: return fabs(x) + fabs(y) <= 1.0;
    default: return (fabs(x) <= 0.3 && fabs(y) <= 1.0) || (fabs(y) <= 0.3 && fabs(x) <= 1.0);
    }
}

static void background_at(const synth_scene *s, int64_t y, int64_t h, uint8_t *px) {
    const uint8_t *top = synth_colour_rgb[s->bg];
    if (s->bg2 < 0) {
        memcpy(px, top, 3);
        return;
    }
    const uint8_t *bot = synth_colour_rgb[s->bg2];
    double t = h > 1 ? (double)y / (double)(h - 1) : 0.0;
    for (int c = 0; c < 3; c++) px[c] = (uint8_t)lround(top[c] + t * (bot[c] - top[c]));
}

void synth_render(const synth_scene *s, int64_t w, int64_t h, uint8_t *rgb) {
    double half = s->radius * (double)(w < h ? w : h), cx = (double)w / 2.0, cy = (double)h / 2.0;
    for (int64_t y = 0; y < h; y++) {
        uint8_t bg[3];
        background_at(s, y, h, bg);
        for (int64_t x = 0; x < w; x++) {
            uint8_t *px = rgb + (y * w + x) * 3;
            double u = ((double)x + 0.5 - cx) / half, v = ((double)y + 0.5 - cy) / half;
            memcpy(px, inside_shape(s->shape, u, v) ? synth_colour_rgb[s->fg] : bg, 3);
        }
    }
}

int synth_caption(const synth_scene *s, char *buf, size_t n) {
    const char *fg = synth_colour_names[s->fg], *shape = synth_shape_names[s->shape];
    if (s->bg2 < 0)
        return snprintf(buf, n, "a %s %s on a %s background", fg, shape, synth_colour_names[s->bg]);
    return snprintf(buf, n, "a %s %s on a background fading from %s to %s", fg, shape, synth_colour_names[s->bg],
                    synth_colour_names[s->bg2]);
}

/* ---- encoders ---- */

static int encode_webp(const uint8_t *rgb, int64_t w, int64_t h, uint8_t **out, size_t *n, char *err,
                       size_t errlen) {
    uint8_t *enc = NULL;
    size_t len = WebPEncodeRGB(rgb, (int)w, (int)h, (int)(w * 3), 85.0f, &enc);
    if (!len) {
        aimc_set_err(err, errlen, "WebP encoding of a %lldx%lld image failed", (long long)w, (long long)h);
        return -1;
    }
    /* WebP's buffer must be released with WebPFree; hand back a malloc'd copy */
    *out = malloc(len);
    if (*out) memcpy(*out, enc, len);
    WebPFree(enc);
    *n = len;
    return *out ? 0 : -1;
}

static int encode_jpeg(const uint8_t *rgb, int64_t w, int64_t h, uint8_t **out, size_t *n, char *err,
                       size_t errlen) {
    tjhandle tj = tjInitCompress();
    unsigned char *enc = NULL;
    unsigned long len = 0;
    int rc = tj ? tjCompress2(tj, rgb, (int)w, (int)(w * 3), (int)h, TJPF_RGB, &enc, &len, TJSAMP_420, 90, 0) : -1;
    if (rc) aimc_set_err(err, errlen, "JPEG encoding failed: %s", tj ? tjGetErrorStr2(tj) : "no turbojpeg handle");
    else if ((*out = malloc(len))) memcpy(*out, enc, len);
    *n = len;
    tjFree(enc);
    if (tj) tjDestroy(tj);
    return rc || !*out ? -1 : 0;
}

typedef struct mem_buf {
    uint8_t *data;
    size_t len, cap;
    int oom;
} mem_buf;

static void png_write_mem(png_structp png, png_bytep data, size_t len) {
    mem_buf *b = png_get_io_ptr(png);
    if (b->len + len > b->cap) {
        size_t cap = (b->len + len) * 2;
        uint8_t *d = realloc(b->data, cap);
        if (!d) {
            b->oom = 1;
            png_error(png, "out of memory");
        }
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, len);
    b->len += len;
}

static void png_flush_mem(png_structp png) { (void)png; }

static int encode_png(const uint8_t *rgb, int64_t w, int64_t h, uint8_t **out, size_t *n, char *err,
                      size_t errlen) {
    mem_buf b = {0};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info || setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        free(b.data);
        aimc_set_err(err, errlen, "PNG encoding of a %lldx%lld image failed", (long long)w, (long long)h);
        return -1;
    }
    png_set_write_fn(png, &b, png_write_mem, png_flush_mem);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int64_t y = 0; y < h; y++) png_write_row(png, rgb + y * w * 3);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    *out = b.data;
    *n = b.len;
    return 0;
}

int synth_encode(const uint8_t *rgb, int64_t w, int64_t h, synth_image_format f, uint8_t **out, size_t *n,
                 char *err, size_t errlen) {
    *out = NULL;
    *n = 0;
    switch (f) {
    case SYNTH_IMG_WEBP: return encode_webp(rgb, w, h, out, n, err, errlen);
    case SYNTH_IMG_JPEG: return encode_jpeg(rgb, w, h, out, n, err, errlen);
    case SYNTH_IMG_PNG: return encode_png(rgb, w, h, out, n, err, errlen);
    default: aimc_set_err(err, errlen, "synth_encode: pick one image format, not 'mixed'"); return -1;
    }
}
