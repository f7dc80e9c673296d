/* Image decoding: JPEG (libturbojpeg), PNG (libpng) and WebP (libwebp), told
 * apart by their magic bytes, never by the file name. Every decoder returns
 * 8-bit RGB with the pixels Pillow's `Image.open(f).convert("RGB")` gives:
 *   - alpha is dropped (Pillow's RGBA -> RGB keeps the colour as it is; so do
 *     the original CLIP / LLaVA pipelines and transformers 4.x's
 *     convert_to_rgb), or, with IMAGE_ALPHA_WHITE, composited onto white with
 *     Pillow's integer rounding, as transformers 5.x's convert_to_rgb does
 *     when handed an image with transparency;
 *   - 16-bit PNG samples keep their high byte, except 16-bit grayscale, which
 *     Pillow opens as mode "I;16" and clips to 255 on conversion (so such an
 *     image comes out mostly white: reproduced on purpose);
 *   - CMYK / YCCK JPEGs are read as Adobe-inverted CMYK and converted with
 *     Pillow's formula; EXIF orientation is not applied (Pillow does not
 *     either unless asked).
 * Corrupt or truncated data gives an error message, never a crash. A JPEG
 * whose data ends before its last scan is complete counts as truncated (Pillow
 * refuses those too); libjpeg's other warnings (extraneous bytes, ...) are
 * accepted as Pillow accepts them. */
#ifndef AIMC_IMAGE_H
#define AIMC_IMAGE_H
#include <stddef.h>
#include <stdint.h>

typedef struct image_rgb {
    int64_t width, height;
    uint8_t *data; /* height rows of width RGB triples, no padding */
} image_rgb;

typedef enum { IMAGE_FORMAT_UNKNOWN, IMAGE_FORMAT_JPEG, IMAGE_FORMAT_PNG, IMAGE_FORMAT_WEBP } image_format;

typedef enum {
    IMAGE_ALPHA_DROP,  /* Pillow's .convert("RGB"), transformers 4.x: the default */
    IMAGE_ALPHA_WHITE, /* composite onto white (transformers 5.x's convert_to_rgb) */
} image_alpha;

#define IMAGE_DEFAULT_MAX_PIXELS ((int64_t)1 << 26) /* 64 Mpx */
#define IMAGE_MAX_FILE_BYTES ((size_t)1 << 30)

typedef struct image_decode_opts {
    int64_t max_pixels; /* images with more pixels are refused; <= 0: the default */
    /* JPEG only: when > 0, the decoder may shrink by libjpeg's DCT scaling
     * (1/2, 1/4, 1/8, ...), taking the strongest reduction that keeps both
     * sides >= min_side. Much faster for big photos, but the pixels then
     * differ from Pillow's full decode + resize; 0 (the default) decodes at
     * full size. */
    int64_t min_side;
    image_alpha alpha;
} image_decode_opts;

/* Zero-initialised options are the defaults. */
image_format image_detect(const uint8_t *data, size_t size);
const char *image_format_name(image_format f); /* "JPEG", "PNG", "WebP", "unknown" */

/* Decodes an in-memory file into out (out->data is malloc'ed; free with
 * image_free). Returns 0, or -1 with one line in err saying what is wrong;
 * out is then empty. opts may be NULL. */
int image_decode(const uint8_t *data, size_t size, const image_decode_opts *opts, image_rgb *out,
                 char *err, size_t errlen);
/* Reads and decodes a file; error messages start with the path. */
int image_load(const char *path, const image_decode_opts *opts, image_rgb *out, char *err, size_t errlen);
void image_free(image_rgb *img);
#endif
