/* Image preprocessing: transformers' PIL-backend pipeline (see preprocess.h). */
#include "preprocess.h"
#include "../kernels/check.h"
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const double CLIP_MEAN[3] = {0.48145466, 0.4578275, 0.40821073};
static const double CLIP_STD[3] = {0.26862954, 0.26130258, 0.27577711};

/* ------------------------------------------------------------- presets -- */

/* CLIPImageProcessor's class defaults. */
static void defaults_clip(preprocess_config *c, int64_t side) {
    memset(c, 0, sizeof *c);
    c->do_resize = 1;
    c->size_mode = PREPROCESS_SHORTEST_EDGE;
    c->shortest_edge = side;
    c->resample = PREPROCESS_RESAMPLE_BICUBIC;
    c->do_center_crop = 1;
    c->crop_height = c->crop_width = side;
    c->do_rescale = 1;
    c->rescale_factor = 1.0 / 255.0;
    c->do_normalize = 1;
    memcpy(c->mean, CLIP_MEAN, sizeof c->mean);
    memcpy(c->std, CLIP_STD, sizeof c->std);
    c->do_convert_rgb = 1;
}

/* BlipImageProcessor's: exact square resize, no crop. */
static void defaults_blip(preprocess_config *c, int64_t side) {
    defaults_clip(c, side);
    c->size_mode = PREPROCESS_EXACT_SIZE;
    c->height = c->width = side;
    c->do_center_crop = 0;
}

int preprocess_preset(preprocess_config *c, const char *name) {
    if (!strcmp(name, "clip")) defaults_clip(c, 224);
    else if (!strcmp(name, "llava")) defaults_clip(c, 336);
    else if (!strcmp(name, "llava_pad")) defaults_clip(c, 336), c->do_pad_square = 1;
    else if (!strcmp(name, "blip2")) defaults_blip(c, 224);
    else return -1;
    return 0;
}

/* --------------------------------------------------------- JSON config -- */

typedef struct json_ctx {
    const char *where;
    char *err;
    size_t errlen;
} json_ctx;

static int read_flag(const cJSON *root, const char *key, int *dst, const json_ctx *j) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!v || cJSON_IsNull(v)) return 0;
    if (cJSON_IsBool(v)) *dst = cJSON_IsTrue(v);
    else if (cJSON_IsNumber(v)) *dst = v->valuedouble != 0;
    else {
        aimc_set_err(j->err, j->errlen, "%s: \"%s\" must be true or false", j->where, key);
        return -1;
    }
    return 0;
}

static int read_side(const cJSON *v, const char *key, int64_t *dst, const json_ctx *j) {
    if (!cJSON_IsNumber(v) || v->valuedouble < 1 || v->valuedouble > PREPROCESS_MAX_SIDE ||
        v->valuedouble != floor(v->valuedouble)) {
        aimc_set_err(j->err, j->errlen, "%s: \"%s\" must be an integer from 1 to %d", j->where, key,
                     PREPROCESS_MAX_SIDE);
        return -1;
    }
    *dst = (int64_t)v->valuedouble;
    return 0;
}

/* "size": {"shortest_edge": N} | {"height": H, "width": W} | N (a bare number
 * means the short side for CLIP-like processors, a square for BLIP's, as their
 * default_to_square says). */
static int read_size(const cJSON *root, preprocess_config *c, int square_default, const json_ctx *j) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "size");
    if (!v || cJSON_IsNull(v)) return 0;
    if (cJSON_IsNumber(v)) {
        int64_t s;
        if (read_side(v, "size", &s, j)) return -1;
        c->size_mode = square_default ? PREPROCESS_EXACT_SIZE : PREPROCESS_SHORTEST_EDGE;
        c->shortest_edge = c->height = c->width = s;
        return 0;
    }
    const cJSON *se = cJSON_GetObjectItemCaseSensitive(v, "shortest_edge");
    const cJSON *h = cJSON_GetObjectItemCaseSensitive(v, "height");
    const cJSON *w = cJSON_GetObjectItemCaseSensitive(v, "width");
    const cJSON *le = cJSON_GetObjectItemCaseSensitive(v, "longest_edge");
    if (le && !cJSON_IsNull(le)) {
        aimc_set_err(j->err, j->errlen, "%s: \"size\" with \"longest_edge\" is not supported", j->where);
        return -1;
    }
    if (se && !cJSON_IsNull(se)) {
        c->size_mode = PREPROCESS_SHORTEST_EDGE;
        return read_side(se, "size.shortest_edge", &c->shortest_edge, j);
    }
    if (h && w) {
        c->size_mode = PREPROCESS_EXACT_SIZE;
        return read_side(h, "size.height", &c->height, j) || read_side(w, "size.width", &c->width, j) ? -1 : 0;
    }
    aimc_set_err(j->err, j->errlen, "%s: \"size\" needs \"shortest_edge\" or \"height\" and \"width\"", j->where);
    return -1;
}

static int read_crop(const cJSON *root, preprocess_config *c, const json_ctx *j) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "crop_size");
    if (!v || cJSON_IsNull(v)) return 0;
    if (cJSON_IsNumber(v)) {
        if (read_side(v, "crop_size", &c->crop_height, j)) return -1;
        c->crop_width = c->crop_height;
        return 0;
    }
    const cJSON *h = cJSON_GetObjectItemCaseSensitive(v, "height");
    const cJSON *w = cJSON_GetObjectItemCaseSensitive(v, "width");
    if (!h || !w) {
        aimc_set_err(j->err, j->errlen, "%s: \"crop_size\" needs \"height\" and \"width\"", j->where);
        return -1;
    }
    return read_side(h, "crop_size.height", &c->crop_height, j) || read_side(w, "crop_size.width", &c->crop_width, j)
               ? -1 : 0;
}

/* A list of 3 numbers, or one number for all channels. */
#define PP_MAX_MEAN_STD 1e6
#define PP_MIN_STD 1e-6

static int read_triple(const cJSON *root, const char *key, double dst[3], int positive, const json_ctx *j) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!v || cJSON_IsNull(v)) return 0;
    double t[3] = {0, 0, 0};
    int ok = 1;
    if (cJSON_IsNumber(v)) {
        t[0] = t[1] = t[2] = v->valuedouble;
    } else if (cJSON_IsArray(v) && cJSON_GetArraySize(v) == 3) {
        for (int i = 0; i < 3; i++) {
            const cJSON *e = cJSON_GetArrayItem(v, i);
            ok &= cJSON_IsNumber(e);
            t[i] = ok ? e->valuedouble : 0;
        }
    } else {
        ok = 0;
    }
    /* Bounded so that (pixel - mean) / std stays a finite float for every pixel. */
    for (int i = 0; i < 3; i++)
        ok &= fabs(t[i]) <= PP_MAX_MEAN_STD && (!positive || t[i] >= PP_MIN_STD);
    if (!ok) {
        aimc_set_err(j->err, j->errlen, "%s: \"%s\" must be 3 numbers in %s", j->where, key,
                     positive ? "[1e-6, 1e6]" : "[-1e6, 1e6]");
        return -1;
    }
    memcpy(dst, t, sizeof t);
    return 0;
}

static int read_scalars(const cJSON *root, preprocess_config *c, const json_ctx *j) {
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(root, "resample");
    if (r && !cJSON_IsNull(r)) {
        if (!cJSON_IsNumber(r) || r->valuedouble != PREPROCESS_RESAMPLE_BICUBIC) {
            aimc_set_err(j->err, j->errlen, "%s: \"resample\" %g is not supported (only 3 = bicubic, Pillow's id)",
                         j->where, cJSON_IsNumber(r) ? r->valuedouble : NAN);
            return -1;
        }
        c->resample = r->valueint;
    }
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(root, "rescale_factor");
    if (f && !cJSON_IsNull(f)) {
        if (!cJSON_IsNumber(f) || !(f->valuedouble > 0) || f->valuedouble > PP_MAX_MEAN_STD) {
            aimc_set_err(j->err, j->errlen, "%s: \"rescale_factor\" must be a number in (0, 1e6]", j->where);
            return -1;
        }
        c->rescale_factor = f->valuedouble;
    }
    return 0;
}

static int class_is(const cJSON *root, const char *needle) {
    const char *keys[] = {"image_processor_type", "feature_extractor_type"};
    for (int i = 0; i < 2; i++) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(root, keys[i]);
        if (cJSON_IsString(t) && strstr(t->valuestring, needle)) return 1;
    }
    return 0;
}

static int parse_root(const cJSON *root, preprocess_config *c, const json_ctx *j) {
    int blip = class_is(root, "Blip");
    if (blip) defaults_blip(c, 384);
    else defaults_clip(c, 224);
    /* do_pad means pad-to-square only for LLaVA's processor. */
    if (class_is(root, "Llava") && read_flag(root, "do_pad", &c->do_pad_square, j)) return -1;
    return read_flag(root, "do_resize", &c->do_resize, j) || read_size(root, c, blip, j) ||
                   read_flag(root, "do_center_crop", &c->do_center_crop, j) || read_crop(root, c, j) ||
                   read_flag(root, "do_rescale", &c->do_rescale, j) ||
                   read_flag(root, "do_normalize", &c->do_normalize, j) ||
                   read_flag(root, "do_convert_rgb", &c->do_convert_rgb, j) ||
                   read_triple(root, "image_mean", c->mean, 0, j) || read_triple(root, "image_std", c->std, 1, j) ||
                   read_scalars(root, c, j)
               ? -1 : 0;
}

int preprocess_config_parse(preprocess_config *c, const char *json_text, const char *where, char *err,
                            size_t errlen) {
    json_ctx j = {where, err, errlen};
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(json_text, &end, 0);
    if (!cJSON_IsObject(root)) {
        if (root) aimc_set_err(err, errlen, "%s: expected a JSON object", where);
        else aimc_set_err(err, errlen, "%s: malformed JSON near byte %td", where, end ? end - json_text : (ptrdiff_t)0);
        cJSON_Delete(root);
        return -1;
    }
    int rc = parse_root(root, c, &j);
    cJSON_Delete(root);
    return rc;
}

int preprocess_config_load(preprocess_config *c, const char *model_dir, char *err, size_t errlen) {
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/preprocessor_config.json", model_dir) >= sizeof path) {
        aimc_set_err(err, errlen, "%s: path too long", model_dir);
        return -1;
    }
    char *text = aimc_read_file(path, AIMC_MAX_CONFIG_BYTES, NULL, err, errlen);
    if (!text) return -1;
    int rc = preprocess_config_parse(c, text, path, err, errlen);
    free(text);
    return rc;
}

/* ------------------------------------------------------ Pillow resample -- */

#define FIXED_BITS 22 /* Pillow's PRECISION_BITS for 8-bit images: 32 - 8 - 2 */

/* Both passes work on blocks of LANES bytes that share their weights: the
 * vertical pass on LANES consecutive bytes of a row, the horizontal pass on
 * a column block (LANES / 3 rows of one column, transposed so that they are
 * contiguous). The inner loops are then the same multiply-add on every lane,
 * with no per-pixel branches and a constant trip count, which -O2's cheap
 * vectoriser takes. Integer sums are exact in any order, so the result is
 * Pillow's bit for bit. 96 bytes = 32 RGB pixels. */
#define LANES 96

/* On x86-64 the two passes are also compiled for AVX2, picked at load time
 * when the CPU has it: SSE2 (the baseline) has no 32-bit vector multiply,
 * AVX2 does, which halves the time of the whole preprocessing of a photo.
 * Same C, same results. */
#if defined(__x86_64__) && (defined(__clang__) ? __clang_major__ >= 14 : defined(__GNUC__))
#define RESAMPLE_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define RESAMPLE_CLONES
#endif

/* Per output index: the first input index, how many follow, and their
 * fixed-point weights (taps per row, zero-filled). */
typedef struct resample_axis {
    int64_t taps;
    int32_t *first, *count, *weight;
} resample_axis;

static double bicubic(double x) {
    const double a = -0.5; /* Pillow's (and Keys') choice; torch/OpenCV use -0.75 */
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

static int32_t to_fixed(double k) {
    return k < 0 ? (int32_t)(-0.5 + k * (1 << FIXED_BITS)) : (int32_t)(0.5 + k * (1 << FIXED_BITS));
}

static void axis_free(resample_axis *ax) {
    free(ax->first);
    free(ax->count);
    free(ax->weight);
    ax->first = ax->count = ax->weight = NULL;
}

/* Weights for one output index, as Pillow's precompute_coeffs computes them
 * (same operations in the same order: the rounding of the fixed-point
 * weights depends on it). */
static void axis_row(resample_axis *ax, int64_t xx, int64_t in_size, double scale, double filterscale,
                     double support, double *w) {
    double center = (xx + 0.5) * scale, ss = 1.0 / filterscale, ww = 0.0;
    int64_t xmin = (int64_t)(center - support + 0.5), xmax = (int64_t)(center + support + 0.5);
    if (xmin < 0) xmin = 0;
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    for (int64_t x = 0; x < xmax; x++) {
        w[x] = bicubic(((double)(x + xmin) - center + 0.5) * ss);
        ww += w[x];
    }
    int32_t *k = ax->weight + xx * ax->taps;
    for (int64_t x = 0; x < ax->taps; x++) k[x] = x < xmax ? to_fixed(ww != 0.0 ? w[x] / ww : w[x]) : 0;
    ax->first[xx] = (int32_t)xmin;
    ax->count[xx] = (int32_t)xmax;
}

static int axis_build(resample_axis *ax, int64_t in_size, int64_t out_size) {
    /* Pillow takes the source extent as a float box: (float)in_size - 0.0f. */
    double scale = (double)(float)in_size / (double)out_size;
    double filterscale = scale < 1.0 ? 1.0 : scale;
    double support = 2.0 * filterscale; /* bicubic support 2, widened when shrinking (antialias) */
    ax->taps = (int64_t)ceil(support) * 2 + 1;
    ax->first = malloc(sizeof(int32_t) * out_size);
    ax->count = malloc(sizeof(int32_t) * out_size);
    ax->weight = malloc(sizeof(int32_t) * out_size * ax->taps);
    double *w = malloc(sizeof(double) * ax->taps);
    if (!ax->first || !ax->count || !ax->weight || !w) {
        free(w);
        axis_free(ax);
        return -1;
    }
    for (int64_t xx = 0; xx < out_size; xx++) axis_row(ax, xx, in_size, scale, filterscale, support, w);
    free(w);
    return 0;
}

/* The input indices [*lo, *hi) that output indices [o0, o1) read. Both ends
 * of an output's span grow with the output index. */
static void axis_span(const resample_axis *ax, int64_t o0, int64_t o1, int64_t *lo, int64_t *hi) {
    *lo = ax->first[o0];
    *hi = (int64_t)ax->first[o1 - 1] + ax->count[o1 - 1];
}

/* dst[j] = Pillow's clip8(2^21 + sum over t < count of src[t * stride + j] * k[t])
 * for every lane j: floor(s / 2^22) clamped to 0..255. Four taps per step
 * cut the loads and stores of the sums; no partial sum can overflow, since
 * each is bounded by 255 * sum |k| + 2^21 < 2^31 (sum |k| is about 1.1 * 2^22)
 * as Pillow's own are. */
__attribute__((always_inline)) static inline void convolve_lanes(const uint8_t *restrict src, int64_t stride,
                                                                 const int32_t *restrict k, int32_t count,
                                                                 uint8_t *restrict dst) {
    int32_t acc[LANES];
    for (int j = 0; j < LANES; j++) acc[j] = 1 << (FIXED_BITS - 1);
    int32_t t = 0;
    for (; t + 3 < count; t += 4) {
        const uint8_t *r0 = src + t * stride, *r1 = r0 + stride, *r2 = r1 + stride, *r3 = r2 + stride;
        int32_t k0 = k[t], k1 = k[t + 1], k2 = k[t + 2], k3 = k[t + 3];
        for (int j = 0; j < LANES; j++) acc[j] += r0[j] * k0 + r1[j] * k1 + r2[j] * k2 + r3[j] * k3;
    }
    for (; t < count; t++) {
        const uint8_t *r0 = src + t * stride;
        int32_t k0 = k[t];
        for (int j = 0; j < LANES; j++) acc[j] += r0[j] * k0;
    }
    for (int j = 0; j < LANES; j++) {
        int32_t v = acc[j] >> FIXED_BITS; /* arithmetic shift (GCC and Clang define it): negative stays negative */
        v = v < 0 ? 0 : v;
        dst[j] = (uint8_t)(v > 255 ? 255 : v);
    }
}

/* Copies pixel (3 bytes) src to dst as one 4-byte move: the caller makes
 * sure that src has a byte more and that the byte written past dst is
 * written again later (or never read). */
static inline void copy_pixel4(uint8_t *dst, const uint8_t *src) {
    uint32_t v;
    memcpy(&v, src, 4);
    memcpy(dst, &v, 4);
}

/* cols[c * LANES + i * 3 + ch] = pixel (i, c) of the nrows x ncols RGB block
 * at src (rows src_w pixels apart): each column's rows become contiguous.
 * cols is written in order, with 4-byte moves whose spilled byte the next
 * move overwrites; the last column, whose source may end the image, is
 * copied 3 bytes at a time. */
static void transpose_block(const uint8_t *src, int64_t src_w, int64_t nrows, int64_t ncols, uint8_t *cols) {
    const uint8_t *rows[LANES / 3];
    for (int64_t i = 0; i < nrows; i++) rows[i] = src + i * src_w * 3;
    for (int64_t c = 0; c + 1 < ncols; c++)
        for (int64_t i = 0; i < nrows; i++) copy_pixel4(cols + c * LANES + i * 3, rows[i] + c * 3);
    for (int64_t i = 0; i < nrows; i++) memcpy(cols + (ncols - 1) * LANES + i * 3, rows[i] + (ncols - 1) * 3, 3);
}

/* Horizontal pass: output columns [x0, x1) of nrows rows of src (src_w
 * pixels per row, src column 0 being input column col0) into dst, x1 - x0
 * pixels per row; 32 rows at a time, transposed into column blocks.
 * 0, or -1 (out of memory). */
RESAMPLE_CLONES static int horizontal_pass(const uint8_t *src, int64_t src_w, int64_t col0, int64_t nrows,
                                           const resample_axis *ax, int64_t x0, int64_t x1, uint8_t *dst) {
    const int64_t block = LANES / 3, dw = x1 - x0;
    int64_t c0, c1;
    axis_span(ax, x0, x1, &c0, &c1);
    uint8_t lanes[LANES + 1] = {0}, *cols = calloc((size_t)(c1 - c0), LANES); /* + 1: copy_pixel4 reads a byte more */
    if (!cols) return -1;
    for (int64_t r = 0; r < nrows; r += block) {
        int64_t nr = nrows - r < block ? nrows - r : block;
        transpose_block(src + (r * src_w + c0 - col0) * 3, src_w, nr, c1 - c0, cols);
        for (int64_t x = x0; x < x1; x++) {
            convolve_lanes(cols + (ax->first[x] - c0) * LANES, LANES, ax->weight + x * ax->taps, ax->count[x], lanes);
            uint8_t *out = dst + (r * dw + x - x0) * 3;
            if (x + 1 < x1) /* the spilled byte is pixel x + 1's, written next */
                for (int64_t i = 0; i < nr; i++) copy_pixel4(out + i * dw * 3, lanes + i * 3);
            else
                for (int64_t i = 0; i < nr; i++) memcpy(out + i * dw * 3, lanes + i * 3, 3);
        }
    }
    free(cols);
    return 0;
}

/* Vertical pass: output rows [y0, y1), row_bytes (>= LANES) bytes each, from
 * src (rows src_stride apart, src row 0 being input row row0) into dst. The
 * last block of a row overlaps the one before it rather than running past
 * the end. */
RESAMPLE_CLONES static void vertical_rows(const uint8_t *src, int64_t src_stride, int64_t row0, int64_t row_bytes,
                                          const resample_axis *ax, int64_t y0, int64_t y1, uint8_t *dst) {
    for (int64_t y = y0; y < y1; y++) {
        const uint8_t *base = src + (ax->first[y] - row0) * src_stride;
        const int32_t *k = ax->weight + y * ax->taps;
        uint8_t *out = dst + (y - y0) * row_bytes;
        for (int64_t i = 0; i < row_bytes; i += LANES) {
            int64_t at = i + LANES <= row_bytes ? i : row_bytes - LANES;
            convolve_lanes(base + at, src_stride, k, ax->count[y], out + at);
        }
    }
}

/* vertical_rows for any row width: rows narrower than LANES go through a
 * zero-padded copy. */
static int vertical_pass(const uint8_t *src, int64_t src_stride, int64_t row0, int64_t row_bytes,
                         const resample_axis *ax, int64_t y0, int64_t y1, uint8_t *dst) {
    if (row_bytes >= LANES) {
        vertical_rows(src, src_stride, row0, row_bytes, ax, y0, y1, dst);
        return 0;
    }
    int64_t lo, hi;
    axis_span(ax, y0, y1, &lo, &hi);
    uint8_t *in = calloc((size_t)(hi - lo), LANES), *out = malloc((size_t)(y1 - y0) * LANES);
    if (in && out) {
        for (int64_t r = lo; r < hi; r++)
            memcpy(in + (r - lo) * LANES, src + (r - row0) * src_stride, (size_t)row_bytes);
        vertical_rows(in, LANES, lo, LANES, ax, y0, y1, out);
        for (int64_t y = 0; y < y1 - y0; y++) memcpy(dst + y * row_bytes, out + y * LANES, (size_t)row_bytes);
    }
    free(in);
    free(out);
    return in && out ? 0 : -1;
}

/* Pillow 13 runs the vertical pass first when the height shrinks by more
 * than twice as many pixels as the width does (python-pillow/Pillow#9549,
 * found to hold exactly by probing Pillow 13.0); earlier versions always
 * go horizontal first. The uint8 rounding between the passes makes the two
 * orders differ by a few levels on some pixels. */
static int vertical_first(image_resize_order order, int64_t in_w, int64_t in_h, int64_t out_w, int64_t out_h) {
    return order == IMAGE_RESIZE_PILLOW13 && out_h < in_h && in_h - out_h > 2 * (in_w - out_w);
}

/* A window [x0, x1) x [y0, y1) of an output image. */
typedef struct resize_window {
    int64_t x0, y0, x1, y1;
} resize_window;

/* Both passes through an intermediate uint8 image holding only what the
 * window needs: the input rows it reads (horizontal pass first) or the input
 * columns it reads (vertical pass first). */
static int resample_two_pass(const image_rgb *src, const resample_axis *hx, const resample_axis *vy, int vfirst,
                             const resize_window *win, uint8_t *dst) {
    int64_t lo, hi, ww = win->x1 - win->x0, wh = win->y1 - win->y0;
    axis_span(vfirst ? hx : vy, vfirst ? win->x0 : win->y0, vfirst ? win->x1 : win->y1, &lo, &hi);
    uint8_t *tmp = malloc((size_t)((hi - lo) * (vfirst ? wh : ww) * 3));
    int rc = -1;
    if (tmp && vfirst) {
        rc = vertical_pass(src->data + lo * 3, src->width * 3, 0, (hi - lo) * 3, vy, win->y0, win->y1, tmp);
        if (!rc) rc = horizontal_pass(tmp, hi - lo, lo, wh, hx, win->x0, win->x1, dst);
    } else if (tmp) {
        rc = horizontal_pass(src->data + lo * src->width * 3, src->width, 0, hi - lo, hx, win->x0, win->x1, tmp);
        if (!rc) rc = vertical_pass(tmp, ww * 3, lo, ww * 3, vy, win->y0, win->y1, dst);
    }
    free(tmp);
    return rc;
}

/* Resizes src to out_w x out_h as Pillow does, computing only the window of
 * the output: every output pixel depends on the input alone, so the window
 * equals that part of the full resize. dst gets its (x1 - x0) x (y1 - y0)
 * pixels. 0, or -1 (out of memory). */
static int resize_into(const image_rgb *src, int64_t out_w, int64_t out_h, image_resize_order order,
                       const resize_window *win, uint8_t *dst) {
    resample_axis hx = {0}, vy = {0};
    int need_h = out_w != src->width, need_v = out_h != src->height, rc = -1;
    int64_t ww = win->x1 - win->x0, wh = win->y1 - win->y0;
    int built = !(need_h && axis_build(&hx, src->width, out_w)) && !(need_v && axis_build(&vy, src->height, out_h));
    if (!built) {
        rc = -1;
    } else if (need_h && need_v) {
        rc = resample_two_pass(src, &hx, &vy, vertical_first(order, src->width, src->height, out_w, out_h), win, dst);
    } else if (need_h) { /* Pillow skips the pass an unchanged side needs; so does this */
        rc = horizontal_pass(src->data + win->y0 * src->width * 3, src->width, 0, wh, &hx, win->x0, win->x1, dst);
    } else if (need_v) {
        rc = vertical_pass(src->data + win->x0 * 3, src->width * 3, 0, ww * 3, &vy, win->y0, win->y1, dst);
    } else {
        for (int64_t y = 0; y < wh; y++)
            memcpy(dst + y * ww * 3, src->data + ((win->y0 + y) * src->width + win->x0) * 3, (size_t)ww * 3);
        rc = 0;
    }
    axis_free(&hx);
    axis_free(&vy);
    return rc;
}

int image_resize_bicubic(const image_rgb *src, int64_t out_w, int64_t out_h, image_resize_order order,
                         image_rgb *dst, char *err, size_t errlen) {
    memset(dst, 0, sizeof *dst);
    resize_window all = {0, 0, out_w, out_h};
    dst->data = malloc((size_t)(out_w * out_h * 3));
    dst->width = out_w;
    dst->height = out_h;
    if (!dst->data || resize_into(src, out_w, out_h, order, &all, dst->data)) {
        image_free(dst);
        return aimc_set_err(err, errlen, "out of memory resizing to %lldx%lld", (long long)out_w, (long long)out_h);
    }
    return 0;
}

/* ------------------------------------------------------------ pipeline -- */

/* transformers' get_resize_output_image_size(default_to_square=False): the
 * long side is int(size * long / short) with Python's true division. */
static void shortest_edge_size(int64_t size, int64_t w, int64_t h, int64_t *ow, int64_t *oh) {
    int64_t s = w <= h ? w : h, l = w <= h ? h : w;
    int64_t nl = (int64_t)((double)(size * l) / (double)s);
    *ow = w <= h ? size : nl;
    *oh = w <= h ? nl : size;
}

static void resized_size(const preprocess_config *c, int64_t w, int64_t h, int64_t *ow, int64_t *oh) {
    *ow = w;
    *oh = h;
    if (c->do_pad_square) *ow = *oh = w > h ? w : h;
    if (!c->do_resize) return;
    if (c->size_mode == PREPROCESS_SHORTEST_EDGE) shortest_edge_size(c->shortest_edge, *ow, *oh, ow, oh);
    else *ow = c->width, *oh = c->height;
}

int preprocess_output_size(const preprocess_config *c, int64_t w, int64_t h, int64_t *out_h, int64_t *out_w,
                           char *err, size_t errlen) {
    int64_t rw, rh;
    if (w <= 0 || h <= 0) {
        aimc_set_err(err, errlen, "preprocess: empty %lldx%lld image", (long long)w, (long long)h);
        return -1;
    }
    resized_size(c, w, h, &rw, &rh);
    if (rw < 1 || rh < 1 || rw > PREPROCESS_MAX_SIDE || rh > PREPROCESS_MAX_SIDE) {
        aimc_set_err(err, errlen, "preprocess: a %lldx%lld image becomes %lldx%lld before cropping (limit %d per side)",
                     (long long)w, (long long)h, (long long)rw, (long long)rh, PREPROCESS_MAX_SIDE);
        return -1;
    }
    *out_w = c->do_center_crop ? c->crop_width : rw;
    *out_h = c->do_center_crop ? c->crop_height : rh;
    return 0;
}

/* LLaVA's expand2square: the image centred (offset floored) on a square of
 * colour int(mean * 255). */
static int pad_square(const preprocess_config *c, const image_rgb *img, image_rgb *dst, char *err, size_t errlen) {
    int64_t side = img->width > img->height ? img->width : img->height;
    dst->data = malloc((size_t)(side * side * 3));
    if (!dst->data) {
        aimc_set_err(err, errlen, "out of memory padding a %lldx%lld image", (long long)side, (long long)side);
        return -1;
    }
    dst->width = dst->height = side;
    uint8_t fill[3];
    for (int ch = 0; ch < 3; ch++) {
        int v = (int)(c->mean[ch] * 255); /* Python's int(): truncation */
        fill[ch] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
    }
    for (int64_t i = 0; i < side * side; i++) memcpy(dst->data + i * 3, fill, 3);
    int64_t top = (side - img->height) / 2, left = (side - img->width) / 2;
    for (int64_t y = 0; y < img->height; y++)
        memcpy(dst->data + ((top + y) * side + left) * 3, img->data + y * img->width * 3, (size_t)img->width * 3);
    return 0;
}

static int64_t floor_half(int64_t a) { return a >= 0 ? a / 2 : -((-a + 1) / 2); }

static int64_t clamp64(int64_t v, int64_t lo, int64_t hi) { return v < lo ? lo : v > hi ? hi : v; }

/* The oh x ow crop of the rw x rh resized image: its top-left corner
 * (negative where the crop is larger than the image, which transformers pads
 * with zeros) and the part of it inside the image, the only pixels the resize
 * has to compute. Without a centre crop the whole image is kept. */
static void crop_window(const preprocess_config *c, int64_t rw, int64_t rh, int64_t oh, int64_t ow, int64_t *top,
                        int64_t *left, resize_window *win) {
    *top = c->do_center_crop ? floor_half(rh - oh) : 0;
    *left = c->do_center_crop ? floor_half(rw - ow) : 0;
    win->x0 = clamp64(*left, 0, rw);
    win->x1 = clamp64(*left + ow, win->x0, rw);
    win->y0 = clamp64(*top, 0, rh);
    win->y1 = clamp64(*top + oh, win->y0, rh);
}

/* The pixel_value of every uint8 level, per channel: float32(v *
 * rescale_factor) computed in double, then (x - mean) / std in float32, the
 * operations transformers does per pixel. */
static void level_table(const preprocess_config *c, float lut[3][256]) {
    for (int ch = 0; ch < 3; ch++) {
        float mean = (float)c->mean[ch], std = (float)c->std[ch];
        for (int v = 0; v < 256; v++) {
            float f = c->do_rescale ? (float)((double)v * c->rescale_factor) : (float)v;
            lut[ch][v] = c->do_normalize ? (f - mean) / std : f;
        }
    }
}

/* Rescale, normalise, HWC uint8 -> CHW float32 for the oh x ow crop whose
 * top-left corner is pixel (top, left) of img; outside img the level is 0
 * (transformers zero-pads before rescaling). */
static void crop_normalise(const preprocess_config *c, const image_rgb *img, int64_t top, int64_t left, int64_t oh,
                           int64_t ow, float *out) {
    float lut[3][256];
    level_table(c, lut);
    int64_t xa = clamp64(-left, 0, ow), xb = clamp64(img->width - left, xa, ow); /* crop columns inside img */
    for (int64_t y = 0; y < oh; y++) {
        int64_t sy = y + top, inside = sy >= 0 && sy < img->height;
        const uint8_t *row = inside ? img->data + sy * img->width * 3 : NULL;
        for (int ch = 0; ch < 3; ch++) {
            const float *level = lut[ch];
            float *o = out + (ch * oh + y) * ow;
            int64_t a = inside ? xa : ow, b = inside ? xb : ow;
            for (int64_t x = 0; x < a; x++) o[x] = level[0];
            for (int64_t x = a; x < b; x++) o[x] = level[row[(x + left) * 3 + ch]];
            for (int64_t x = b; x < ow; x++) o[x] = level[0];
        }
    }
}

int preprocess_image(const preprocess_config *c, const image_rgb *img, float *out, char *err, size_t errlen) {
    int64_t oh, ow, rw, rh, top, left;
    if (c->resample != PREPROCESS_RESAMPLE_BICUBIC) {
        aimc_set_err(err, errlen, "preprocess: resample %d is not supported (only 3 = bicubic)", c->resample);
        return -1;
    }
    if (preprocess_output_size(c, img->width, img->height, &oh, &ow, err, errlen)) return -1;
    resized_size(c, img->width, img->height, &rw, &rh);
    image_rgb padded = {0}, kept = {0};
    const image_rgb *cur = img;
    if (c->do_pad_square && img->width != img->height) {
        if (pad_square(c, img, &padded, err, errlen)) return -1;
        cur = &padded;
    }
    resize_window win;
    crop_window(c, rw, rh, oh, ow, &top, &left, &win);
    if (c->do_resize && (rw != cur->width || rh != cur->height)) { /* resize only the part the crop keeps */
        kept.width = win.x1 - win.x0;
        kept.height = win.y1 - win.y0;
        kept.data = malloc((size_t)(kept.width * kept.height * 3));
        if (!kept.data || resize_into(cur, rw, rh, c->resize_order, &win, kept.data)) {
            image_free(&padded);
            image_free(&kept);
            return aimc_set_err(err, errlen, "out of memory resizing to %lldx%lld", (long long)rw, (long long)rh);
        }
        cur = &kept;
        top -= win.y0;
        left -= win.x0;
    }
    crop_normalise(c, cur, top, left, oh, ow, out);
    image_free(&padded);
    image_free(&kept);
    return 0;
}
