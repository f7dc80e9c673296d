/* Pillow's bicubic resize and the preprocessing pipeline on random images of
 * shapes the Pillow fixtures (test_image.c) do not reach: widths below and
 * around the resampler's 32-pixel blocks, a few rows, heavy downscales with
 * hundreds of taps, upscales, both pass orders, crops larger and smaller
 * than the image. The reference is Pillow's algorithm written out here in
 * the plainest form (per output pixel: float64 weights, normalised, rounded
 * to 22-bit fixed point, integer sums, uint8 rounding after each pass), then
 * the centre crop and transformers' float32 rescale + normalise per pixel.
 * Results must be bit-exact. */
#include "../data/image.h"
#include "../data/preprocess.h"
#include "testlib.h"

/* ------------------------------------------------------------ reference -- */

static double ref_cubic(double x) {
    const double a = -0.5;
    x = fabs(x);
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
    if (x < 2.0) return (((x - 5.0) * x + 8.0) * x - 4.0) * a;
    return 0.0;
}

/* Pillow's precompute_coeffs for output index i: first input index, count,
 * and the fixed-point weights in k (at most kmax). */
static void ref_weights(int64_t in, int64_t out, int64_t i, int64_t *first, int64_t *count, int32_t *k) {
    double scale = (double)(float)in / (double)out, fscale = scale < 1.0 ? 1.0 : scale;
    double support = 2.0 * fscale, center = (i + 0.5) * scale, ss = 1.0 / fscale, w[4096], sum = 0.0;
    int64_t lo = (int64_t)(center - support + 0.5), hi = (int64_t)(center + support + 0.5);
    if (lo < 0) lo = 0;
    if (hi > in) hi = in;
    for (int64_t x = lo; x < hi; x++) sum += w[x - lo] = ref_cubic((x - center + 0.5) * ss);
    for (int64_t x = lo; x < hi; x++) {
        double v = sum != 0.0 ? w[x - lo] / sum : w[x - lo];
        k[x - lo] = (int32_t)(v < 0 ? -0.5 + v * (1 << 22) : 0.5 + v * (1 << 22));
    }
    *first = lo;
    *count = hi - lo;
}

static uint8_t ref_clip(int64_t s) { return (uint8_t)(s < 0 ? 0 : (s >> 22) > 255 ? 255 : (s >> 22)); }

/* One pass along x (horizontal) or y: src is w x h RGB, dst is the new size. */
static void ref_pass(const uint8_t *src, int64_t w, int64_t h, int horizontal, int64_t out, uint8_t *dst) {
    int64_t in = horizontal ? w : h, ow = horizontal ? out : w, first, count;
    int32_t k[4096];
    for (int64_t i = 0; i < out; i++) {
        ref_weights(in, out, i, &first, &count, k);
        for (int64_t j = 0; j < (horizontal ? h : w); j++)
            for (int c = 0; c < 3; c++) {
                int64_t s = 1 << 21;
                for (int64_t t = 0; t < count; t++) {
                    int64_t x = horizontal ? first + t : j, y = horizontal ? j : first + t;
                    s += src[(y * w + x) * 3 + c] * (int64_t)k[t];
                }
                int64_t x = horizontal ? i : j, y = horizontal ? j : i;
                dst[(y * ow + x) * 3 + c] = ref_clip(s);
            }
    }
}

/* Pillow's resize: the passes a changed side needs; Pillow 13 goes vertical
 * first when the height loses more than twice as many pixels as the width. */
static uint8_t *ref_resize(const uint8_t *src, int64_t w, int64_t h, int64_t ow, int64_t oh, int pillow13) {
    uint8_t *tmp = tl_alloc((size_t)((w > ow ? w : ow) * (h > oh ? h : oh) * 3));
    uint8_t *dst = tl_alloc((size_t)(ow * oh * 3));
    int vfirst = pillow13 && oh < h && h - oh > 2 * (w - ow);
    if (ow == w && oh == h) memcpy(dst, src, (size_t)(w * h * 3));
    else if (ow == w) ref_pass(src, w, h, 0, oh, dst);
    else if (oh == h) ref_pass(src, w, h, 1, ow, dst);
    else if (vfirst) ref_pass(src, w, h, 0, oh, tmp), ref_pass(tmp, w, oh, 1, ow, dst);
    else ref_pass(src, w, h, 1, ow, tmp), ref_pass(tmp, ow, h, 0, oh, dst);
    free(tmp);
    return dst;
}

/* transformers' pipeline on the reference resize: LLaVA pad to square,
 * resize, centre crop (zero-padded), float32(v * factor), (x - mean) / std. */
static float *ref_preprocess(const preprocess_config *c, const image_rgb *img, int64_t *oh, int64_t *ow) {
    int64_t w = img->width, h = img->height, side = w > h ? w : h;
    uint8_t *cur = tl_alloc((size_t)(side * side * 3));
    if (c->do_pad_square) {
        for (int64_t i = 0; i < side * side; i++)
            for (int ch = 0; ch < 3; ch++) cur[i * 3 + ch] = (uint8_t)(int)(c->mean[ch] * 255);
        for (int64_t y = 0; y < h; y++)
            memcpy(cur + (((side - h) / 2 + y) * side + (side - w) / 2) * 3, img->data + y * w * 3, (size_t)w * 3);
        w = h = side;
    } else {
        memcpy(cur, img->data, (size_t)(w * h * 3));
    }
    int64_t rw = w, rh = h;
    if (c->do_resize && c->size_mode == PREPROCESS_SHORTEST_EDGE) {
        int64_t s = c->shortest_edge, l = (int64_t)((double)(s * (w > h ? w : h)) / (double)(w < h ? w : h));
        rw = w <= h ? s : l;
        rh = w <= h ? l : s;
    } else if (c->do_resize) {
        rw = c->width, rh = c->height;
    }
    uint8_t *res = ref_resize(cur, w, h, rw, rh, c->resize_order == IMAGE_RESIZE_PILLOW13);
    *oh = c->do_center_crop ? c->crop_height : rh;
    *ow = c->do_center_crop ? c->crop_width : rw;
    int64_t top = c->do_center_crop ? (int64_t)floor((rh - *oh) / 2.0) : 0;
    int64_t left = c->do_center_crop ? (int64_t)floor((rw - *ow) / 2.0) : 0;
    float *out = tl_alloc((size_t)(3 * *oh * *ow) * sizeof(float));
    for (int ch = 0; ch < 3; ch++)
        for (int64_t y = 0; y < *oh; y++)
            for (int64_t x = 0; x < *ow; x++) {
                int64_t sy = y + top, sx = x + left;
                uint8_t v = sy >= 0 && sy < rh && sx >= 0 && sx < rw ? res[(sy * rw + sx) * 3 + ch] : 0;
                float f = c->do_rescale ? (float)((double)v * c->rescale_factor) : (float)v;
                out[(ch * *oh + y) * *ow + x] = c->do_normalize ? (f - (float)c->mean[ch]) / (float)c->std[ch] : f;
            }
    free(cur);
    free(res);
    return out;
}

/* ---------------------------------------------------------------- tests -- */

/* Random pixels, with runs of 0 and 255 so that the clipping is exercised. */
static image_rgb random_image(int64_t w, int64_t h) {
    image_rgb img = {w, h, tl_alloc((size_t)(w * h * 3))};
    int64_t i = 0;
    while (i < w * h * 3) {
        int64_t run = 1 + rng_int(8), kind = rng_int(4);
        for (; run > 0 && i < w * h * 3; run--, i++)
            img.data[i] = kind == 0 ? 0 : kind == 1 ? 255 : (uint8_t)rng_int(256);
    }
    return img;
}

/* A side length: mostly small, sometimes around the 32-pixel blocks, rarely large. */
static int64_t random_side(void) {
    int64_t r = rng_int(10);
    if (r < 4) return 1 + rng_int(40);
    if (r < 8) return 1 + rng_int(200);
    return 200 + rng_int(500);
}

static void check_resize(int64_t w, int64_t h, int64_t ow, int64_t oh, image_resize_order order, int *bad) {
    image_rgb src = random_image(w, h), dst;
    char err[256] = "";
    int rc = image_resize_bicubic(&src, ow, oh, order, &dst, err, sizeof err);
    CHECK(rc == 0, "resize %lldx%lld -> %lldx%lld: %s", (long long)w, (long long)h, (long long)ow, (long long)oh, err);
    if (rc == 0) {
        uint8_t *ref = ref_resize(src.data, w, h, ow, oh, order == IMAGE_RESIZE_PILLOW13);
        int64_t diff = 0;
        for (int64_t i = 0; i < ow * oh * 3; i++) diff += dst.data[i] != ref[i];
        CHECK(diff == 0, "resize %lldx%lld -> %lldx%lld (Pillow %s order): %lld values differ from the reference",
              (long long)w, (long long)h, (long long)ow, (long long)oh, order == IMAGE_RESIZE_PILLOW13 ? "13" : "12",
              (long long)diff);
        *bad += diff != 0;
        free(ref);
        image_free(&dst);
    }
    free(src.data);
}

static void test_resize_random(void) {
    int bad = 0, n = 300;
    for (int i = 0; i < n; i++) {
        int64_t w = random_side(), h = random_side(), ow = random_side(), oh = random_side();
        if (w * h > 200000 || ow * oh > 200000) ow = 1 + rng_int(64), oh = 1 + rng_int(64);
        if (rng_int(6) == 0) ow = w; /* one pass only */
        else if (rng_int(6) == 0) oh = h;
        check_resize(w, h, ow, oh, rng_int(2) ? IMAGE_RESIZE_PILLOW13 : IMAGE_RESIZE_PILLOW12, &bad);
    }
    /* fixed shapes: block edges (31/32/33 px, 95/96/97 bytes), hundreds of
     * taps, vertical-first and the shapes either side of Pillow 13's
     * order rule, one row / one column, upscale */
    static const int64_t shapes[][4] = {{31, 40, 33, 20}, {32, 64, 33, 31}, {33, 33, 32, 32}, {97, 65, 31, 33},
                                        {2000, 3, 7, 2},  {3, 2000, 2, 7},  {1, 50, 1, 9},   {50, 1, 9, 1},
                                        {640, 1500, 336, 787}, {1023, 700, 490, 336}, {5, 3, 300, 200},
                                        {100, 100, 80, 60},   {100, 100, 80, 59},   {101, 161, 51, 61}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        for (int o = 0; o < 2; o++)
            check_resize(shapes[i][0], shapes[i][1], shapes[i][2], shapes[i][3],
                         o ? IMAGE_RESIZE_PILLOW12 : IMAGE_RESIZE_PILLOW13, &bad);
    printf("  resize: %d random + %zu fixed shapes x 2 orders, %d differ from the reference\n", n,
           sizeof shapes / sizeof shapes[0], bad);
}

static void random_config(preprocess_config *c) {
    static const char *presets[] = {"clip", "llava", "llava_pad", "blip2"};
    preprocess_preset(c, presets[rng_int(4)]);
    c->resize_order = rng_int(2) ? IMAGE_RESIZE_PILLOW13 : IMAGE_RESIZE_PILLOW12;
    c->shortest_edge = 1 + rng_int(120);
    c->height = 1 + rng_int(120);
    c->width = 1 + rng_int(120);
    c->crop_height = 1 + rng_int(140);
    c->crop_width = 1 + rng_int(140);
    c->do_resize = rng_int(8) != 0;
    c->do_center_crop = rng_int(4) != 0;
    c->do_rescale = rng_int(6) != 0;
    c->do_normalize = rng_int(6) != 0;
}

static void test_preprocess_random(void) {
    int bad = 0, n = 300;
    for (int i = 0; i < n; i++) {
        preprocess_config c;
        random_config(&c);
        image_rgb img = random_image(1 + rng_int(rng_int(4) ? 120 : 700), 1 + rng_int(rng_int(4) ? 120 : 700));
        int64_t oh, ow, rh = 0, rw = 0;
        char err[256] = "";
        int rc = preprocess_output_size(&c, img.width, img.height, &oh, &ow, err, sizeof err);
        if (rc != 0) { /* a 1-pixel-wide image whose long side would pass the limit: not this test's business */
            free(img.data);
            continue;
        }
        float *ours = tl_alloc((size_t)(3 * oh * ow) * sizeof(float));
        poison(ours, 3 * oh * ow);
        rc = preprocess_image(&c, &img, ours, err, sizeof err);
        CHECK(rc == 0, "preprocess %lldx%lld: %s", (long long)img.width, (long long)img.height, err);
        float *ref = ref_preprocess(&c, &img, &rh, &rw);
        CHECK(rh == oh && rw == ow, "output %lldx%lld, reference %lldx%lld", (long long)ow, (long long)oh,
              (long long)rw, (long long)rh);
        if (rc == 0 && rh == oh && rw == ow) {
            int64_t diff = 0;
            for (int64_t j = 0; j < 3 * oh * ow; j++) diff += memcmp(&ours[j], &ref[j], sizeof(float)) != 0;
            CHECK(diff == 0,
                  "preprocess %lldx%lld (pad %d, resize %d mode %d edge %lld size %lldx%lld, crop %d %lldx%lld): "
                  "%lld values differ from the reference",
                  (long long)img.width, (long long)img.height, c.do_pad_square, c.do_resize, (int)c.size_mode,
                  (long long)c.shortest_edge, (long long)c.width, (long long)c.height, c.do_center_crop,
                  (long long)c.crop_width, (long long)c.crop_height, (long long)diff);
            bad += diff != 0;
        }
        free(ours);
        free(ref);
        free(img.data);
    }
    printf("  preprocess: %d random configs x images, %d differ from the reference\n", n, bad);
}

int main(void) {
    tests_begin("test_resample");
    test_resize_random();
    test_preprocess_random();
    return tests_done();
}
