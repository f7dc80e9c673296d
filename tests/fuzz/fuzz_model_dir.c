/* Fuzz target: a Hugging Face model folder's JSON (host/model_dir.h), read
 * by model_dir_open, the cfg_* accessors and the real consumers: mllm_load
 * (LLaVA, BLIP-2) and clip_load, on the committed tiny fixture models.
 * Input: one byte picks the mode (% 4), the rest is the file:
 *   0  config.json beside the tiny LLaVA's model.safetensors
 *   1  config.json beside the tiny BLIP-2's model.safetensors
 *   2  config.json beside the tiny CLIP's model.safetensors (clip_load)
 *   3  model.safetensors.index.json beside llava_oldkeys' two shards and config.
 * A config that does not fit the weights must end in aimc_die (one line, the
 * documented answer: caught here) or load; anything else (a crash, an
 * internal check, a sanitizer report, model_dir_open failing without a
 * message) is a finding. Dying leaves the partly loaded model behind, so
 * LeakSanitizer ignores what the loaders allocate (model_dir_open and
 * model_dir_close stay leak-checked). */
#include "../../host/clip.h"
#include "../../host/mllm.h"
#include "../../host/model_dir.h"
#include "fuzz.h"

#define MDFZ_MODELS "tests/fixtures/models/"

static const char *const mdfz_fuzzed[4] = {"config.json", "config.json", "config.json",
                                           "model.safetensors.index.json"};

/* Links the fixture files (all but the fuzzed one) into a folder. */
static void mdfz_link(const char *dir, const char *model, const char *const *files, int n) {
    for (int i = 0; i < n; i++) {
        char src[512], abs[4096], dst[4096];
        snprintf(src, sizeof src, MDFZ_MODELS "%s/%s", model, files[i]);
        snprintf(dst, sizeof dst, "%s/%s", dir, files[i]);
        unlink(dst); /* a forked replay (test_fuzz_regress) may have made it already */
        if (!realpath(src, abs) || symlink(abs, dst)) {
            fprintf(stderr, "fuzz: cannot link %s: %s\n", src, strerror(errno));
            abort();
        }
    }
}

/* The four model folders, made once. */
static const char *mdfz_folder(int mode) {
    static char *dirs[4];
    if (dirs[mode]) return dirs[mode];
    char name[32];
    snprintf(name, sizeof name, "model%d", mode);
    dirs[mode] = fuzz_tmp_path(name);
    mkdir(dirs[mode], 0777);
    static const char *const weights[] = {"model.safetensors"};
    static const char *const oldkeys[] = {"config.json", "model-00001-of-00002.safetensors",
                                          "model-00002-of-00002.safetensors"};
    static const char *const models[3] = {"llava", "blip2", "clip"};
    if (mode < 3)
        mdfz_link(dirs[mode], models[mode], weights, 1);
    else
        mdfz_link(dirs[mode], "llava_oldkeys", oldkeys, 3);
    return dirs[mode];
}

/* Every accessor on keys the loaders read; a wrong type dies (caught). */
static void mdfz_accessors(const model_dir *md) {
    static const char *const keys[] = {
        "model_type", "architectures.0", "text_config.hidden_size", "vision_config.image_size",
        "image_token_index|image_token_id", "text_config.rope_parameters.rope_theta|text_config.rope_theta",
        "vision_feature_layer", "qformer_config.num_hidden_layers", "architectures.999999999", "a..b", "|",
        "text_config.vocab_size|vocab_size",
    };
    int died;
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        volatile int64_t iv = 0;
        volatile double dv = 0;
        volatile int bv = 0;
        const char *volatile sv = NULL;
        FUZZ_CATCH_DIE(died, iv = cfg_int_or(md, keys[i], -1));
        FUZZ_CATCH_DIE(died, dv = cfg_double_or(md, keys[i], 0.5));
        FUZZ_CATCH_DIE(died, bv = cfg_bool_or(md, keys[i], 0));
        FUZZ_CATCH_DIE(died, sv = cfg_str_or(md, keys[i], ""));
        FUZZ_CATCH_DIE(died, iv = cfg_need_int(md, keys[i]));
        FUZZ_CATCH_DIE(died, sv = cfg_need_str(md, keys[i]));
        FUZZ_CATCH_DIE(died, dv = cfg_need_double(md, keys[i]));
        if (sv) fuzz_touch((const void *)sv, strlen((const char *)sv));
        (void)iv, (void)dv, (void)bv, (void)died, (void)cfg_has(md, keys[i]);
    }
    char what[256];
    mllm_detect(md, what, sizeof what);
}

static void mdfz_load(int mode, const char *dir, const model_dir *md) {
    int died;
    FUZZ_LEAKS_IGNORED_BEGIN();
    if (mode == 2) {
        nn_loader ld = {md, backend_cpu(), DT_F32};
        clip_model *volatile m = NULL;
        FUZZ_CATCH_DIE(died, m = clip_load(&ld, ""));
        if (!died) clip_free(m);
    } else {
        mllm *volatile m = NULL;
        FUZZ_CATCH_DIE(died, m = mllm_load(dir, backend_cpu(), DT_F32));
        if (!died) mllm_free(m);
    }
    FUZZ_LEAKS_IGNORED_END();
}

int fuzz_model_dir_one(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int mode = data[0] % 4;
    const char *dir = mdfz_folder(mode);
    char path[4096], err[1024] = "";
    snprintf(path, sizeof path, "%s/%s", dir, mdfz_fuzzed[mode]);
    fuzz_write_file(path, data + 1, size - 1);
    model_dir *md = model_dir_open(dir, err, sizeof err);
    if (!md) {
        FUZZ_ASSERT(err[0], "model_dir_open failed without a message");
        return 0;
    }
    mdfz_accessors(md);
    mdfz_load(mode, dir, md);
    model_dir_close(md);
    return 0;
}

void fuzz_model_dir_seeds(const char *dir) {
    static const char *const files[4] = {"llava/config.json", "blip2/config.json", "clip/config.json",
                                         "llava_oldkeys/model.safetensors.index.json"};
    for (uint8_t mode = 0; mode < 4; mode++) {
        char path[256], name[32];
        snprintf(path, sizeof path, MDFZ_MODELS "%s", files[mode]);
        snprintf(name, sizeof name, "mode%u", mode);
        fuzz_seed_fixture(dir, name, &mode, 1, path);
    }
    uint8_t mode = 0;
    fuzz_seed_fixture(dir, "mode0_v4", &mode, 1, MDFZ_MODELS "llava/config_v4.json");
    mode = 1;
    fuzz_seed_fixture(dir, "mode1_llava_oldkeys", &mode, 1, MDFZ_MODELS "llava_oldkeys/config.json");
}

FUZZ_MAIN(model_dir)
