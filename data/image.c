/* Image decoding to RGB8, matching Pillow's pixels (see image.h). */
#include "image.h"
#include "../kernels/check.h"
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>
#include <webp/decode.h>

image_format image_detect(const uint8_t *d, size_t n) {
    static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (n >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF) return IMAGE_FORMAT_JPEG;
    if (n >= 8 && !memcmp(d, png_sig, 8)) return IMAGE_FORMAT_PNG;
    if (n >= 12 && !memcmp(d, "RIFF", 4) && !memcmp(d + 8, "WEBP", 4)) return IMAGE_FORMAT_WEBP;
    return IMAGE_FORMAT_UNKNOWN;
}

const char *image_format_name(image_format f) {
    switch (f) {
    case IMAGE_FORMAT_JPEG: return "JPEG";
    case IMAGE_FORMAT_PNG: return "PNG";
    case IMAGE_FORMAT_WEBP: return "WebP";
    default: return "unknown";
    }
}

void image_free(image_rgb *img) {
    if (!img) return;
    free(img->data);
    img->data = NULL;
    img->width = img->height = 0;
}

static int64_t pixel_limit(const image_decode_opts *o) {
    return o && o->max_pixels > 0 ? o->max_pixels : IMAGE_DEFAULT_MAX_PIXELS;
}

/* Refuses empty images and ones over the pixel budget before any large
 * allocation (headers can claim anything). */
static int check_dims(const char *fmt, int64_t w, int64_t h, int64_t limit, char *err, size_t errlen) {
    if (w <= 0 || h <= 0) {
        aimc_set_err(err, errlen, "%s: invalid dimensions %lldx%lld", fmt, (long long)w, (long long)h);
        return -1;
    }
    if (w > limit || h > limit || w * h > limit) {
        aimc_set_err(err, errlen, "%s: %lldx%lld is %lld pixels, over the limit of %lld", fmt, (long long)w,
                     (long long)h, (long long)(w * h), (long long)limit);
        return -1;
    }
    return 0;
}

static int alloc_image(image_rgb *img, int64_t w, int64_t h, char *err, size_t errlen) {
    img->data = malloc((size_t)(w * h * 3));
    if (!img->data) {
        aimc_set_err(err, errlen, "out of memory for a %lldx%lld image", (long long)w, (long long)h);
        return -1;
    }
    img->width = w;
    img->height = h;
    return 0;
}

/* Pillow's Image.alpha_composite of a pixel over opaque white, in its integer
 * form (7 extra bits of precision, rounded division by 255). */
static uint8_t over_white(uint32_t v, uint32_t a) {
    if (a == 0) return 255;
    uint32_t coef1 = a * 128, coef2 = 255 * 128 - coef1;
    uint32_t t = v * coef1 + 255 * coef2 + (0x80 << 7);
    return (uint8_t)((((t >> 8) + t) >> 8) >> 7);
}

static void rgba_to_rgb(const uint8_t *rgba, int64_t npix, image_alpha mode, uint8_t *rgb) {
    for (int64_t i = 0; i < npix; i++, rgba += 4, rgb += 3) {
        for (int c = 0; c < 3; c++) rgb[c] = mode == IMAGE_ALPHA_WHITE ? over_white(rgba[c], rgba[3]) : rgba[c];
    }
}

/* ---------------------------------------------------------------- JPEG -- */

/* Strongest DCT down-scaling that keeps both sides >= min_side. */
static void jpeg_pick_scale(int w, int h, int64_t min_side, int *sw, int *sh) {
    *sw = w;
    *sh = h;
    if (min_side <= 0) return;
    int n = 0;
    tjscalingfactor *f = tjGetScalingFactors(&n);
    for (int i = 0; f && i < n; i++) {
        if (f[i].num >= f[i].denom) continue;
        int cw = TJSCALED(w, f[i]), ch = TJSCALED(h, f[i]);
        if (cw >= min_side && ch >= min_side && (int64_t)cw * ch < (int64_t)*sw * *sh) {
            *sw = cw;
            *sh = ch;
        }
    }
}

/* True when no EOI marker follows the last start-of-scan, i.e. the data ends
 * inside a scan. Entropy-coded data cannot contain FF DA or FF D9 (a 0xFF
 * byte there is stuffed as FF 00), so the last SOS found is the image's own
 * final scan even when an EXIF thumbnail precedes it. */
static int jpeg_truncated(const uint8_t *d, size_t n) {
    int have_sos = 0, eoi_after = 0;
    for (size_t i = 0; i + 1 < n; i++) {
        if (d[i] != 0xFF) continue;
        if (d[i + 1] == 0xDA) have_sos = 1, eoi_after = 0;
        else if (d[i + 1] == 0xD9) eoi_after = 1;
    }
    return !have_sos || !eoi_after;
}

/* Pillow reads CMYK JPEGs as Adobe-inverted ("CMYK;I") and converts with
 * r = (255 - k) - (c * (255 - k)) / 255, rounded its way. */
static uint8_t cmyk_channel(uint32_t inv_c, uint32_t inv_k) {
    uint32_t c = 255 - inv_c, nk = inv_k;
    uint32_t t = c * nk + 128;
    int v = (int)nk - (int)(((t >> 8) + t) >> 8);
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

static void cmyk_to_rgb(const uint8_t *cmyk, int64_t npix, uint8_t *rgb) {
    for (int64_t i = 0; i < npix; i++, cmyk += 4, rgb += 3)
        for (int c = 0; c < 3; c++) rgb[c] = cmyk_channel(cmyk[c], cmyk[3]);
}

/* tjDecompress2 returns -1 for warnings too; only fatal errors and a
 * truncated scan make the image unusable. */
static int jpeg_failed(tjhandle tj, const uint8_t *data, size_t size, char *err, size_t errlen) {
    const char *msg = tjGetErrorStr2(tj);
    if (tjGetErrorCode(tj) == TJERR_FATAL) {
        aimc_set_err(err, errlen, "JPEG: corrupt data: %s", msg);
        return 1;
    }
    if (jpeg_truncated(data, size) || strstr(msg, "Premature end")) {
        aimc_set_err(err, errlen, "JPEG: truncated data (%s)", msg);
        return 1;
    }
    return 0;
}

static int jpeg_decompress(tjhandle tj, const uint8_t *data, size_t size, int sw, int sh, int cmyk,
                           image_rgb *out, char *err, size_t errlen) {
    if (alloc_image(out, sw, sh, err, errlen)) return -1;
    uint8_t *buf = out->data;
    if (cmyk && !(buf = malloc((size_t)sw * sh * 4))) {
        aimc_set_err(err, errlen, "out of memory for a %dx%d CMYK image", sw, sh);
        image_free(out);
        return -1;
    }
    int rc = tjDecompress2(tj, data, (unsigned long)size, buf, sw, 0, sh, cmyk ? TJPF_CMYK : TJPF_RGB, 0);
    if (rc != 0 && jpeg_failed(tj, data, size, err, errlen)) {
        if (cmyk) free(buf);
        image_free(out);
        return -1;
    }
    if (cmyk) {
        cmyk_to_rgb(buf, (int64_t)sw * sh, out->data);
        free(buf);
    }
    return 0;
}

static int decode_jpeg(const uint8_t *data, size_t size, const image_decode_opts *o, image_rgb *out,
                       char *err, size_t errlen) {
    tjhandle tj = tjInitDecompress();
    if (!tj) {
        aimc_set_err(err, errlen, "JPEG: cannot start the decoder: %s", tjGetErrorStr2(NULL));
        return -1;
    }
    int w = 0, h = 0, subsamp = 0, cs = 0, rc = -1;
    if (tjDecompressHeader3(tj, data, (unsigned long)size, &w, &h, &subsamp, &cs) != 0) {
        aimc_set_err(err, errlen, "JPEG: bad header: %s", tjGetErrorStr2(tj));
    } else if (w <= 0 || h <= 0) { /* the header parser stopped before a frame header */
        aimc_set_err(err, errlen, "JPEG: truncated data or no frame header");
    } else if (!check_dims("JPEG", w, h, pixel_limit(o), err, errlen)) {
        int sw, sh;
        jpeg_pick_scale(w, h, o ? o->min_side : 0, &sw, &sh);
        rc = jpeg_decompress(tj, data, size, sw, sh, cs == TJCS_CMYK || cs == TJCS_YCCK, out, err, errlen);
    }
    tjDestroy(tj);
    return rc;
}

/* ----------------------------------------------------------------- PNG -- */

/* Everything the decoder allocates lives here, on the heap, so that it
 * survives libpng's longjmp out of a failed read. */
typedef struct png_job {
    const uint8_t *data;
    size_t size, pos;
    char msg[160];
    uint8_t *raw;     /* decoded rows: RGBA8, or big-endian 16-bit gray */
    png_bytep *rows;
} png_job;

static void png_on_error(png_structp png, png_const_charp msg) {
    png_job *job = png_get_error_ptr(png);
    snprintf(job->msg, sizeof job->msg, "%s", msg);
    png_longjmp(png, 1);
}

static void png_on_warning(png_structp png, png_const_charp msg) {
    (void)png; /* benign (bad ancillary chunk CRC, ...): Pillow ignores these too */
    (void)msg;
}

static void png_read_mem(png_structp png, png_bytep out, png_size_t n) {
    png_job *job = png_get_io_ptr(png);
    if (n > job->size - job->pos) png_error(png, "truncated data");
    memcpy(out, job->data + job->pos, n);
    job->pos += n;
}

/* Everything but 16-bit gray becomes RGBA8: palette and low bit depths
 * expanded, tRNS turned into alpha, 16-bit samples cut to their high byte
 * (Pillow's ";16B" raw modes keep the high byte too). */
static void png_request_rgba8(png_structp png, png_infop info, int ctype, int depth) {
    int has_trns = png_get_valid(png, info, PNG_INFO_tRNS) != 0;
    if (ctype == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (ctype == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (has_trns) png_set_tRNS_to_alpha(png);
    if (depth == 16) png_set_strip_16(png);
    if (!(ctype & PNG_COLOR_MASK_COLOR)) png_set_gray_to_rgb(png);
    if (!(ctype & PNG_COLOR_MASK_ALPHA) && !has_trns) png_set_add_alpha(png, 0xFF, PNG_FILLER_AFTER);
}

/* Pillow opens 16-bit gray as "I;16"; its conversion to RGB clips each value
 * to 255 rather than scaling it. */
static void gray16_to_rgb(const uint8_t *be16, int64_t npix, uint8_t *rgb) {
    for (int64_t i = 0; i < npix; i++, be16 += 2, rgb += 3) {
        unsigned v = (unsigned)be16[0] << 8 | be16[1];
        rgb[0] = rgb[1] = rgb[2] = (uint8_t)(v > 255 ? 255 : v);
    }
}

static int png_read_pixels(png_structp png, png_infop info, png_job *job, const image_decode_opts *o,
                           image_rgb *out, char *err, size_t errlen) {
    png_uint_32 w, h;
    int depth, ctype, interlace;
    png_read_info(png, info);
    png_get_IHDR(png, info, &w, &h, &depth, &ctype, &interlace, NULL, NULL);
    if (check_dims("PNG", w, h, pixel_limit(o), err, errlen)) return -1;
    int gray16 = ctype == PNG_COLOR_TYPE_GRAY && depth == 16;
    if (!gray16) png_request_rgba8(png, info, ctype, depth);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    size_t rowbytes = png_get_rowbytes(png, info), want = (size_t)w * (gray16 ? 2 : 4);
    if (rowbytes != want) {
        aimc_set_err(err, errlen, "PNG: unsupported layout (%zu bytes per row, expected %zu)", rowbytes, want);
        return -1;
    }
    job->raw = malloc(rowbytes * h);
    job->rows = malloc(sizeof(png_bytep) * h);
    if (!job->raw || !job->rows) {
        aimc_set_err(err, errlen, "PNG: out of memory for a %ux%u image", (unsigned)w, (unsigned)h);
        return -1;
    }
    for (png_uint_32 y = 0; y < h; y++) job->rows[y] = job->raw + rowbytes * y;
    png_read_image(png, job->rows);
    if (alloc_image(out, w, h, err, errlen)) return -1;
    if (gray16) gray16_to_rgb(job->raw, (int64_t)w * h, out->data);
    else rgba_to_rgb(job->raw, (int64_t)w * h, o ? o->alpha : IMAGE_ALPHA_DROP, out->data);
    return 0;
}

static int decode_png(const uint8_t *data, size_t size, const image_decode_opts *o, image_rgb *out,
                      char *err, size_t errlen) {
    png_job *job = calloc(1, sizeof *job);
    png_structp png = job ? png_create_read_struct(PNG_LIBPNG_VER_STRING, job, png_on_error, png_on_warning)
                          : NULL;
    png_infop info = png ? png_create_info_struct(png) : NULL;
    volatile int rc = -1; /* read after a longjmp */
    if (!info) {
        aimc_set_err(err, errlen, "PNG: cannot start the decoder (out of memory)");
    } else if (setjmp(png_jmpbuf(png))) {
        aimc_set_err(err, errlen, "PNG: corrupt data: %s", job->msg);
        image_free(out);
    } else {
        job->data = data;
        job->size = size;
        png_set_read_fn(png, job, png_read_mem);
        rc = png_read_pixels(png, info, job, o, out, err, errlen);
        if (rc) image_free(out);
    }
    if (png) png_destroy_read_struct(&png, info ? &info : NULL, NULL);
    if (job) {
        free(job->raw);
        free(job->rows);
        free(job);
    }
    return rc;
}

/* ---------------------------------------------------------------- WebP -- */

static const char *webp_status_name(VP8StatusCode s) {
    switch (s) {
    case VP8_STATUS_OUT_OF_MEMORY: return "out of memory";
    case VP8_STATUS_INVALID_PARAM: return "invalid parameter";
    case VP8_STATUS_BITSTREAM_ERROR: return "bitstream error";
    case VP8_STATUS_UNSUPPORTED_FEATURE: return "unsupported feature";
    case VP8_STATUS_SUSPENDED: return "suspended";
    case VP8_STATUS_USER_ABORT: return "aborted";
    case VP8_STATUS_NOT_ENOUGH_DATA: return "truncated data";
    default: return "error";
    }
}

static int decode_webp(const uint8_t *data, size_t size, const image_decode_opts *o, image_rgb *out,
                       char *err, size_t errlen) {
    WebPBitstreamFeatures f;
    VP8StatusCode s = WebPGetFeatures(data, size, &f);
    if (s != VP8_STATUS_OK) {
        aimc_set_err(err, errlen, "WebP: bad header: %s", webp_status_name(s));
        return -1;
    }
    if (f.has_animation) {
        aimc_set_err(err, errlen, "WebP: animated images are not supported");
        return -1;
    }
    if (check_dims("WebP", f.width, f.height, pixel_limit(o), err, errlen)) return -1;
    if (alloc_image(out, f.width, f.height, err, errlen)) return -1;
    size_t npix = (size_t)f.width * f.height;
    int ok;
    if (f.has_alpha && o && o->alpha == IMAGE_ALPHA_WHITE) { /* dropping alpha needs no RGBA: RGB below does it */
        uint8_t *rgba = malloc(npix * 4);
        ok = rgba && WebPDecodeRGBAInto(data, size, rgba, npix * 4, f.width * 4) != NULL;
        if (ok) rgba_to_rgb(rgba, (int64_t)npix, IMAGE_ALPHA_WHITE, out->data);
        free(rgba);
    } else {
        ok = WebPDecodeRGBInto(data, size, out->data, npix * 3, f.width * 3) != NULL;
    }
    if (!ok) {
        aimc_set_err(err, errlen, "WebP: corrupt or truncated data");
        image_free(out);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */

int image_decode(const uint8_t *data, size_t size, const image_decode_opts *opts, image_rgb *out,
                 char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    switch (image_detect(data, size)) {
    case IMAGE_FORMAT_JPEG: return decode_jpeg(data, size, opts, out, err, errlen);
    case IMAGE_FORMAT_PNG: return decode_png(data, size, opts, out, err, errlen);
    case IMAGE_FORMAT_WEBP: return decode_webp(data, size, opts, out, err, errlen);
    default: break;
    }
    if (size < 4) return aimc_set_err(err, errlen, "not an image (%zu bytes)", size);
    return aimc_set_err(err, errlen, "not a JPEG, PNG or WebP file (starts with %02x %02x %02x %02x)", data[0],
                        data[1], data[2], data[3]);
}

int image_load(const char *path, const image_decode_opts *opts, image_rgb *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    size_t size = 0;
    uint8_t *buf = (uint8_t *)aimc_read_file(path, IMAGE_MAX_FILE_BYTES, &size, err, errlen);
    if (!buf) return -1;
    char why[256] = "";
    int rc = image_decode(buf, size, opts, out, why, sizeof why);
    free(buf);
    if (rc) aimc_set_err(err, errlen, "%s: %s", path, why);
    return rc;
}
