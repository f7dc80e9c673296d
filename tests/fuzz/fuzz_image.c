/* Fuzz target: image decoding (data/image.h: JPEG, PNG, WebP, told apart by
 * magic) followed by preprocessing (data/preprocess.h), as the data loader
 * runs them on every image of a shard.
 * Input: an image file. Its last byte XOR the low byte of its length picks
 * the options (so a plain image file is a valid input; the XOR because every
 * PNG ends in the same byte):
 *   bit 0     alpha composited onto white (else dropped);
 *   bits 1-2  JPEG min_side: 0, 16, 64, 1;
 *   bits 3-4  preset: clip, llava, llava_pad, blip2;
 *   bit 5     Pillow 12's resize order;
 *   bit 6     a 256-pixel limit, else 16 Kpx (aimc's default, 64 Mpx, only
 *             makes each input slower: the decoders are not instrumented,
 *             the resize loops are, heavily).
 * The presets' output sizes (224, 336) are replaced by small ones (24 +
 * byte % 17, crop up to 4 smaller): the same code, many times faster.
 * Oracles: a decoded image has sides >= 1 within the pixel limit and
 * width * height * 3 readable bytes; preprocessing it succeeds (for an output
 * size the config accepts) and gives finite values only. */
#include "../../data/preprocess.h"
#include "../../data/synth.h"
#include "fuzz.h"
#include <math.h>

static const char *const imfz_presets[4] = {"clip", "llava", "llava_pad", "blip2"};

static void imfz_preprocess(const image_rgb *img, uint8_t opts) {
    preprocess_config pc;
    FUZZ_ASSERT(preprocess_preset(&pc, imfz_presets[(opts >> 3) & 3]) == 0, "preset");
    pc.resize_order = opts & 32 ? IMAGE_RESIZE_PILLOW12 : IMAGE_RESIZE_PILLOW13;
    int64_t side = 24 + opts % 17;
    pc.shortest_edge = pc.height = pc.width = side;
    pc.crop_height = pc.crop_width = side - opts % 5;
    int64_t oh, ow;
    char err[512];
    if (preprocess_output_size(&pc, img->width, img->height, &oh, &ow, err, sizeof err)) return;
    FUZZ_ASSERT(oh > 0 && ow > 0 && oh <= PREPROCESS_MAX_SIDE && ow <= PREPROCESS_MAX_SIDE, "output %lldx%lld",
                (long long)oh, (long long)ow);
    size_t n = (size_t)(3 * oh * ow);
    float *out = malloc(n * sizeof *out);
    if (!out) abort();
    for (size_t i = 0; i < n; i++) out[i] = NAN;
    FUZZ_ASSERT(preprocess_image(&pc, img, out, err, sizeof err) == 0, "preprocess failed: %s", err);
    for (size_t i = 0; i < n; i++) FUZZ_ASSERT(isfinite(out[i]), "pixel value %zu is %g", i, out[i]);
    free(out);
}

int fuzz_image_one(const uint8_t *data, size_t size) {
    uint8_t opts = size ? data[size - 1] ^ (uint8_t)size : 0;
    static const int64_t min_sides[4] = {0, 16, 64, 1};
    image_decode_opts o = {opts & 64 ? 1 << 8 : 1 << 14, min_sides[(opts >> 1) & 3],
                           opts & 1 ? IMAGE_ALPHA_WHITE : IMAGE_ALPHA_DROP};
    image_rgb img = {0};
    char err[512] = "";
    if (image_decode(data, size, &o, &img, err, sizeof err)) {
        FUZZ_ASSERT(err[0] && !img.data, "failed decode without a message, or with pixels");
        return 0;
    }
    FUZZ_ASSERT(image_detect(data, size) != IMAGE_FORMAT_UNKNOWN, "decoded an unknown format");
    FUZZ_ASSERT(img.width >= 1 && img.height >= 1 && img.width * img.height <= o.max_pixels,
                "decoded %lldx%lld with a limit of %lld pixels", (long long)img.width, (long long)img.height,
                (long long)o.max_pixels);
    fuzz_touch(img.data, (size_t)(img.width * img.height * 3));
    imfz_preprocess(&img, opts);
    image_free(&img);
    return 0;
}

/* Small synthetic images in every format, then the committed fixtures. */
static void imfz_seed_synth(const char *dir) {
    const int64_t w = 13, h = 9;
    uint8_t rgb[13 * 9 * 3];
    for (size_t i = 0; i < sizeof rgb; i++) rgb[i] = (uint8_t)(i * 29 + (i / 39) * 7);
    const synth_image_format fmts[3] = {SYNTH_IMG_WEBP, SYNTH_IMG_JPEG, SYNTH_IMG_PNG};
    for (int i = 0; i < 3; i++) {
        uint8_t *file;
        size_t n;
        char err[256], name[64];
        if (synth_encode(rgb, w, h, fmts[i], &file, &n, err, sizeof err)) {
            fprintf(stderr, "fuzz: %s\n", err);
            continue;
        }
        snprintf(name, sizeof name, "synth.%s", synth_image_ext(fmts[i]));
        fuzz_seed(dir, name, NULL, 0, file, n);
        free(file);
    }
}

void fuzz_image_seeds(const char *dir) {
    imfz_seed_synth(dir);
    static const char *const files[] = {
        "tiny.png", "bilevel.png", "gray.png", "gray16.png", "palette4_trns.png", "wide.png", "alpha.png",
        "gray.jpg", "cmyk.jpg", "landscape.jpg", "portrait_progressive.jpg", "lossy.webp", "lossy_alpha.webp",
        "lossless_alpha.webp", "rgb16_interlaced.png",
    };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char path[256];
        snprintf(path, sizeof path, "tests/fixtures/images/%s", files[i]);
        fuzz_seed_fixture(dir, files[i], NULL, 0, path);
    }
}

FUZZ_MAIN(image)
