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

/* Pillow's clip8: floor(s / 2^22) clamped to 0..255. */
static uint8_t clip8(int32_t s) {
    if (s < 0) return 0;
    s >>= FIXED_BITS;
    return (uint8_t)(s > 255 ? 255 : s);
}

/* Horizontal pass: nrows rows of src (in_w pixels wide) into dst (out_w wide). */
static void resample_rows(const uint8_t *src, int64_t in_w, int64_t nrows, const resample_axis *ax, int64_t out_w,
                          uint8_t *dst) {
    for (int64_t y = 0; y < nrows; y++) {
        const uint8_t *in = src + y * in_w * 3;
        for (int64_t x = 0; x < out_w; x++) {
            const int32_t *k = ax->weight + x * ax->taps;
            const uint8_t *p = in + (int64_t)ax->first[x] * 3;
            int32_t s0 = 1 << (FIXED_BITS - 1), s1 = s0, s2 = s0;
            for (int32_t t = 0; t < ax->count[x]; t++, p += 3) {
                s0 += p[0] * k[t];
                s1 += p[1] * k[t];
                s2 += p[2] * k[t];
            }
            uint8_t *o = dst + (y * out_w + x) * 3;
            o[0] = clip8(s0), o[1] = clip8(s1), o[2] = clip8(s2);
        }
    }
}

/* Vertical pass: src (width pixels wide) holds input rows from row0 on; dst
 * gets out_h rows. */
static void resample_cols(const uint8_t *src, int64_t width, int64_t row0, const resample_axis *ax,
                          int64_t out_h, uint8_t *dst) {
    int64_t stride = width * 3;
    for (int64_t y = 0; y < out_h; y++) {
        const int32_t *k = ax->weight + y * ax->taps;
        const uint8_t *base = src + (ax->first[y] - row0) * stride;
        for (int64_t i = 0; i < stride; i++) {
            int32_t s = 1 << (FIXED_BITS - 1);
            for (int32_t t = 0; t < ax->count[y]; t++) s += base[t * stride + i] * k[t];
            dst[y * stride + i] = clip8(s);
        }
    }
}

/* Pillow 13 runs the vertical pass first when the height shrinks by more
 * than twice as many pixels as the width does (python-pillow/Pillow#9549,
 * found to hold exactly by probing Pillow 13.0); earlier versions always
 * go horizontal first. The uint8 rounding between the passes makes the two
 * orders differ by a few levels on some pixels. */
static int vertical_first(image_resize_order order, int64_t in_w, int64_t in_h, int64_t out_w, int64_t out_h) {
    return order == IMAGE_RESIZE_PILLOW13 && out_h < in_h && in_h - out_h > 2 * (in_w - out_w);
}

/* Both passes through an intermediate uint8 image (the rows / columns the
 * second pass reads). */
static int resample_two_pass(const image_rgb *src, const resample_axis *hx, const resample_axis *vy, int vfirst,
                             image_rgb *dst) {
    int64_t out_w = dst->width, out_h = dst->height;
    if (vfirst) {
        uint8_t *tmp = malloc((size_t)(src->width * out_h * 3));
        if (!tmp) return -1;
        resample_cols(src->data, src->width, 0, vy, out_h, tmp);
        resample_rows(tmp, src->width, out_h, hx, out_w, dst->data);
        free(tmp);
        return 0;
    }
    int64_t row0 = vy->first[0], row1 = (int64_t)vy->first[out_h - 1] + vy->count[out_h - 1];
    uint8_t *tmp = malloc((size_t)((row1 - row0) * out_w * 3));
    if (!tmp) return -1;
    resample_rows(src->data + row0 * src->width * 3, src->width, row1 - row0, hx, out_w, tmp);
    resample_cols(tmp, out_w, row0, vy, out_h, dst->data);
    free(tmp);
    return 0;
}

int image_resize_bicubic(const image_rgb *src, int64_t out_w, int64_t out_h, image_resize_order order,
                         image_rgb *dst, char *err, size_t errlen) {
    memset(dst, 0, sizeof *dst);
    resample_axis hx = {0}, vy = {0};
    int need_h = out_w != src->width, need_v = out_h != src->height, rc = -1;
    dst->data = malloc((size_t)(out_w * out_h * 3));
    dst->width = out_w;
    dst->height = out_h;
    int built = dst->data && !(need_h && axis_build(&hx, src->width, out_w)) &&
                !(need_v && axis_build(&vy, src->height, out_h));
    if (built) {
        rc = 0;
        if (need_h && need_v)
            rc = resample_two_pass(src, &hx, &vy, vertical_first(order, src->width, src->height, out_w, out_h), dst);
        else if (need_h) resample_rows(src->data, src->width, out_h, &hx, out_w, dst->data);
        else if (need_v) resample_cols(src->data, out_w, 0, &vy, out_h, dst->data);
        else memcpy(dst->data, src->data, (size_t)(out_w * out_h * 3));
    }
    axis_free(&hx);
    axis_free(&vy);
    if (rc) {
        image_free(dst);
        aimc_set_err(err, errlen, "out of memory resizing to %lldx%lld", (long long)out_w, (long long)out_h);
    }
    return rc;
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

/* Centre crop (zero outside the image, as transformers pads), rescale,
 * normalise, HWC uint8 -> CHW float32. */
static void crop_normalise(const preprocess_config *c, const image_rgb *img, int64_t oh, int64_t ow, float *out) {
    int64_t top = c->do_center_crop ? floor_half(img->height - oh) : 0;
    int64_t left = c->do_center_crop ? floor_half(img->width - ow) : 0;
    for (int ch = 0; ch < 3; ch++) {
        float mean = (float)c->mean[ch], std = (float)c->std[ch];
        for (int64_t y = 0; y < oh; y++) {
            int64_t sy = y + top;
            for (int64_t x = 0; x < ow; x++) {
                int64_t sx = x + left;
                int inside = sy >= 0 && sy < img->height && sx >= 0 && sx < img->width;
                uint8_t v = inside ? img->data[(sy * img->width + sx) * 3 + ch] : 0;
                float f = c->do_rescale ? (float)((double)v * c->rescale_factor) : (float)v;
                if (c->do_normalize) f = (f - mean) / std;
                out[(ch * oh + y) * ow + x] = f;
            }
        }
    }
}

int preprocess_image(const preprocess_config *c, const image_rgb *img, float *out, char *err, size_t errlen) {
    int64_t oh, ow, rw, rh;
    if (c->resample != PREPROCESS_RESAMPLE_BICUBIC) {
        aimc_set_err(err, errlen, "preprocess: resample %d is not supported (only 3 = bicubic)", c->resample);
        return -1;
    }
    if (preprocess_output_size(c, img->width, img->height, &oh, &ow, err, errlen)) return -1;
    resized_size(c, img->width, img->height, &rw, &rh);
    image_rgb padded = {0}, resized = {0};
    const image_rgb *cur = img;
    if (c->do_pad_square && img->width != img->height) {
        if (pad_square(c, img, &padded, err, errlen)) return -1;
        cur = &padded;
    }
    if (c->do_resize && (rw != cur->width || rh != cur->height)) {
        if (image_resize_bicubic(cur, rw, rh, c->resize_order, &resized, err, errlen)) {
            image_free(&padded);
            return -1;
        }
        cur = &resized;
    }
    crop_normalise(c, cur, oh, ow, out);
    image_free(&padded);
    image_free(&resized);
    return 0;
}
