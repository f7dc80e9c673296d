/* aimc preprocess: images -> pixel_values [N, 3, H, W] f32 in a safetensors
 * file, exactly as the model's image processor would compute them. */
#include "../data/image.h"
#include "../data/preprocess.h"
#include "../kernels/check.h"
#include "args.h"
#include "commands.h"
#include "safetensors.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct preprocess_args {
    const char *model, *preset, *out, *alpha;
    int pad_square;
    int64_t max_pixels, jpeg_min_side, pillow;
} preprocess_args;

static void load_config(const preprocess_args *a, preprocess_config *c) {
    char err[512];
    if (!!a->model == !!a->preset) aimc_die("preprocess: give exactly one of --model DIR and --preset NAME");
    if (a->preset && preprocess_preset(c, a->preset))
        aimc_die("preprocess: unknown --preset '%s' (one of %s)", a->preset, PREPROCESS_PRESET_NAMES);
    if (a->model && preprocess_config_load(c, a->model, err, sizeof err)) aimc_die("%s", err);
    if (a->pad_square) c->do_pad_square = 1;
    if (a->pillow != 12 && a->pillow != 13)
        aimc_die("preprocess: --pillow must be 12 or 13, got %lld", (long long)a->pillow);
    c->resize_order = a->pillow == 12 ? IMAGE_RESIZE_PILLOW12 : IMAGE_RESIZE_PILLOW13;
}

static image_decode_opts decode_opts(const preprocess_args *a) {
    image_decode_opts o = {.max_pixels = a->max_pixels, .min_side = a->jpeg_min_side};
    if (!strcmp(a->alpha, "white")) o.alpha = IMAGE_ALPHA_WHITE;
    else if (strcmp(a->alpha, "drop")) aimc_die("preprocess: --alpha must be drop or white, got '%s'", a->alpha);
    if (a->max_pixels <= 0) aimc_die("preprocess: --max-pixels must be positive, got %lld", (long long)a->max_pixels);
    if (a->jpeg_min_side < 0)
        aimc_die("preprocess: --jpeg-min-side must be >= 0, got %lld", (long long)a->jpeg_min_side);
    return o;
}

/* Decodes and preprocesses one image into its slot of the batch; the first
 * image fixes H and W (a run without centre crop needs equal sizes). */
static void process_one(const char *path, const preprocess_config *c, const image_decode_opts *o, int64_t idx,
                        int64_t *h, int64_t *w, float **batch, int64_t n) {
    char err[512];
    image_rgb img;
    int64_t oh, ow;
    if (image_load(path, o, &img, err, sizeof err)) aimc_die("%s", err);
    if (preprocess_output_size(c, img.width, img.height, &oh, &ow, err, sizeof err)) aimc_die("%s: %s", path, err);
    if (idx == 0) {
        *h = oh;
        *w = ow;
        size_t bytes = (size_t)n * 3 * (size_t)(oh * ow) * sizeof(float);
        if (!(*batch = malloc(bytes))) aimc_die("preprocess: out of memory for %zu bytes of pixel_values", bytes);
    } else if (oh != *h || ow != *w) {
        aimc_die("%s: preprocesses to %lldx%lld but the first image gave %lldx%lld (use a config with a centre "
                 "crop or an exact size)", path, (long long)ow, (long long)oh, (long long)*w, (long long)*h);
    }
    if (preprocess_image(c, &img, *batch + idx * 3 * oh * ow, err, sizeof err)) aimc_die("%s: %s", path, err);
    image_free(&img);
}

static void save(const char *path, const float *batch, int64_t n, int64_t h, int64_t w, const preprocess_args *a) {
    char err[512];
    int64_t shape[4] = {n, 3, h, w};
    st_writer *sw = st_writer_new();
    st_writer_add(sw, "pixel_values", ST_F32, 4, shape, batch);
    st_writer_metadata(sw, "format", "pt");
    st_writer_metadata(sw, a->model ? "model" : "preset", a->model ? a->model : a->preset);
    if (st_writer_save(sw, path, err, sizeof err)) aimc_die("%s", err);
    st_writer_free(sw);
}

int cmd_preprocess(int argc, char **argv) {
    preprocess_args a = {.alpha = "drop", .max_pixels = IMAGE_DEFAULT_MAX_PIXELS, .pillow = 13};
    arg_opt opts[] = {
        {"--model", ARG_STR, &a.model, "model folder whose preprocessor_config.json gives the settings"},
        {"--preset", ARG_STR, &a.preset, "instead of --model: " PREPROCESS_PRESET_NAMES},
        {"--out", ARG_STR, &a.out, "output .safetensors file: pixel_values [N,3,H,W] f32"},
        {"--pad-square", ARG_FLAG, &a.pad_square, "first pad to a square with the mean colour (original LLaVA)"},
        {"--alpha", ARG_STR, &a.alpha,
         "transparency: drop (Pillow's convert(\"RGB\"), transformers 4) or white (transformers 5)"},
        {"--max-pixels", ARG_INT, &a.max_pixels, "refuse images with more pixels than this"},
        {"--pillow", ARG_INT, &a.pillow, "resize as Pillow 13 does, or 12 (pass order differs; see preprocess.h)"},
        {"--jpeg-min-side", ARG_INT, &a.jpeg_min_side,
         "let JPEG decoding shrink by DCT scaling while both sides stay >= this; 0 = full decode as Pillow"},
    };
    int n = args_parse(argc, argv, "aimc preprocess (--model DIR | --preset NAME) IMAGE... --out OUT.safetensors",
                       "Decodes JPEG/PNG/WebP images and writes the pixel_values the model's image processor "
                       "would give.", opts, (int)(sizeof opts / sizeof opts[0]));
    if (n < 1) aimc_die("preprocess: no images given (see 'aimc preprocess --help')");
    if (!a.out) aimc_die("preprocess: --out OUT.safetensors is required");
    preprocess_config c;
    load_config(&a, &c);
    image_decode_opts o = decode_opts(&a);
    float *batch = NULL;
    int64_t h = 0, w = 0;
    for (int i = 0; i < n; i++) process_one(argv[1 + i], &c, &o, i, &h, &w, &batch, n);
    save(a.out, batch, n, h, w, &a);
    printf("aimc preprocess: wrote pixel_values [%d, 3, %lld, %lld] to %s\n", n, (long long)h, (long long)w, a.out);
    free(batch);
    return 0;
}
