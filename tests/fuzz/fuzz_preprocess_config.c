/* Fuzz target: preprocess_config_parse (data/preprocess.h), the parser of a
 * model folder's preprocessor_config.json.
 * Input: the JSON text. Oracles for a config that parses: output sizes are
 * positive and at most PREPROCESS_MAX_SIDE (or refused with a message) for a
 * few input shapes; when the config's sizes are small (<= 64, for speed), the whole
 * pipeline runs on a 7x5 image and gives finite values only. */
#include "../../data/preprocess.h"
#include "fuzz.h"
#include <math.h>

static int ppfz_small(const preprocess_config *c) {
    const int64_t v[5] = {c->shortest_edge, c->height, c->width, c->crop_height, c->crop_width};
    for (int i = 0; i < 5; i++)
        if (v[i] > 64) return 0;
    return 1;
}

static void ppfz_run(const preprocess_config *c) {
    static uint8_t px[7 * 5 * 3];
    for (size_t i = 0; i < sizeof px; i++) px[i] = (uint8_t)(i * 53);
    image_rgb img = {7, 5, px};
    int64_t oh, ow;
    char err[512];
    if (preprocess_output_size(c, img.width, img.height, &oh, &ow, err, sizeof err)) return;
    size_t n = (size_t)(3 * oh * ow);
    float *out = malloc(n * sizeof *out + 1);
    if (!out) abort();
    for (size_t i = 0; i < n; i++) out[i] = NAN;
    if (preprocess_image(c, &img, out, err, sizeof err) == 0)
        for (size_t i = 0; i < n; i++)
            FUZZ_ASSERT(isfinite(out[i]), "value %zu is %g (mean %g %g %g, std %g %g %g)", i, out[i], c->mean[0], c->mean[1],
                        c->mean[2], c->std[0], c->std[1], c->std[2]);
    free(out);
}

int fuzz_preprocess_config_one(const uint8_t *data, size_t size) {
    char *text = fuzz_cstr(data, size);
    preprocess_config c;
    char err[512] = "";
    if (preprocess_config_parse(&c, text, "fuzz/preprocessor_config.json", err, sizeof err)) {
        FUZZ_ASSERT(err[0], "parse failed without a message");
        free(text);
        return 0;
    }
    static const int64_t shapes[][2] = {{1, 1}, {7, 5}, {5, 7}, {16384, 1}, {640, 480}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        int64_t oh, ow;
        if (preprocess_output_size(&c, shapes[i][0], shapes[i][1], &oh, &ow, err, sizeof err) == 0)
            FUZZ_ASSERT(oh >= 1 && ow >= 1 && oh <= PREPROCESS_MAX_SIDE && ow <= PREPROCESS_MAX_SIDE,
                        "output %lldx%lld", (long long)oh, (long long)ow);
        else
            FUZZ_ASSERT(err[0], "refused without a message");
    }
    if (ppfz_small(&c)) ppfz_run(&c);
    free(text);
    return 0;
}

void fuzz_preprocess_config_seeds(const char *dir) {
    static const char *const files[] = {
        "tests/fixtures/images/custom_clip/preprocessor_config.json",
        "tests/fixtures/images/custom_blip/preprocessor_config.json",
        "tests/fixtures/images/custom_crop_pads/preprocessor_config.json",
        "tests/fixtures/images/custom_llava_pad/preprocessor_config.json",
        "tests/fixtures/models/clip/preprocessor_config.json",
        "tests/fixtures/models/llava/preprocessor_config.json",
        "tests/fixtures/models/blip2/preprocessor_config.json",
    };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char name[32];
        snprintf(name, sizeof name, "config%zu", i);
        fuzz_seed_fixture(dir, name, NULL, 0, files[i]);
    }
}

FUZZ_MAIN(preprocess_config)
