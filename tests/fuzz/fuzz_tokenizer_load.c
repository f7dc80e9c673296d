/* Fuzz target: tokenizer_load (data/tokenizer.h) on arbitrary files.
 * Input: one flag byte, then the payload; (flags & 3) says what it is:
 *   0  tokenizer.json, loaded as a file;
 *   1  tokenizer.json in a model folder (beside CLIP's special_tokens_map.json
 *      and tokenizer_config.json);
 *   2  special_tokens_map.json beside CLIP's tokenizer.json and config;
 *   3  tokenizer_config.json beside CLIP's tokenizer.json and special map.
 * A tokenizer that loads then encodes and decodes a few fixed texts; every id
 * must lie inside its vocabulary and decode back without error; every
 * token string must map back to an id, except a normalized added token's
 * (see tlfz_normalized_added). */
#include "../../data/tok_internal.h"
#include "../../data/tokenizer.h"
#include "fuzz.h"

/* HF's id_to_token gives a normalized added token's *normalized* content,
 * which its token_to_id does not know (tokenizers 0.23.3: with a Lowercase
 * normalizer, id_to_token(4) = '<removed s>' for the added '<Removed s>',
 * token_to_id('<removed s>') = None); aimc does the same, so such ids are
 * exempt from the round trip. */
static int tlfz_normalized_added(const tokenizer *tok, int32_t id) {
    for (int i = 0; i < tok->nadded; i++)
        if (tok->added[i].id == id && tok->added[i].shown) return 1;
    return 0;
}

#define TLFZ_CLIP "tests/fixtures/tokenizers/clip/"

static const char *const tlfz_files[3] = {"tokenizer.json", "special_tokens_map.json", "tokenizer_config.json"};

/* The model folder: the three files, the fuzzed one replaced per input. */
static const char *tlfz_folder(void) {
    static char *dir;
    if (dir) return dir;
    dir = fuzz_tmp_path("tokdir");
    mkdir(dir, 0777);
    for (int i = 0; i < 3; i++) {
        char src[512], dst[4096];
        snprintf(src, sizeof src, TLFZ_CLIP "%s", tlfz_files[i]);
        snprintf(dst, sizeof dst, "%s/%s", dir, tlfz_files[i]);
        size_t n;
        uint8_t *data = fuzz_read_file(src, &n);
        if (!data) {
            fprintf(stderr, "fuzz: fixture %s is missing\n", src);
            abort();
        }
        fuzz_write_file(dst, data, n);
        free(data);
    }
    return dir;
}

/* Rewrites one of the folder's files (which = 0..2) with data, or restores the fixture. */
static void tlfz_put(int which, const uint8_t *data, size_t size, int restore) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", tlfz_folder(), tlfz_files[which]);
    if (!restore) {
        fuzz_write_file(path, data, size);
        return;
    }
    char src[512];
    snprintf(src, sizeof src, TLFZ_CLIP "%s", tlfz_files[which]);
    size_t n;
    uint8_t *orig = fuzz_read_file(src, &n);
    fuzz_write_file(path, orig, n);
    free(orig);
}

static void tlfz_exercise(const tokenizer *tok) {
    static const char *const texts[] = {
        "Hello world! A photo of a cat.", "  <s> </s> <image> <|endoftext|> [CLS]", "caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac 123\n\t",
        "\xff\xfe invalid \xc3", "",
    };
    int64_t vocab = tokenizer_vocab_size(tok);
    FUZZ_ASSERT(vocab >= 0, "vocab size %lld", (long long)vocab);
    char err[512];
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        for (int special = 0; special < 2; special++) {
            tok_ids ids = {0};
            tokenizer_encode_opts o = {special, special ? 16 : 0};
            if (tokenizer_encode(tok, texts[i], strlen(texts[i]), &o, &ids, err, sizeof err) == 0) {
                for (int64_t k = 0; k < ids.n; k++)
                    FUZZ_ASSERT(ids.ids[k] >= 0 && ids.ids[k] < vocab, "id %d outside [0, %lld)",
                                ids.ids[k], (long long)vocab);
                size_t len;
                char *text = tokenizer_decode(tok, ids.ids, ids.n, special, &len, err, sizeof err);
                FUZZ_ASSERT(text, "decoding encoded ids failed: %s", err);
                FUZZ_ASSERT(text[len] == 0, "decoded text not terminated");
                free(text);
            }
            tok_ids_free(&ids);
        }
    }
    for (int32_t id = -1; id < 40; id++) {
        const char *s = tokenizer_id_to_token(tok, id);
        if (s && !tlfz_normalized_added(tok, id))
            FUZZ_ASSERT(tokenizer_token_to_id(tok, s) >= 0, "token '%s' of id %d has no id", s, id);
    }
    static const char *const names[] = {"bos_token", "eos_token", "unk_token", "pad_token", "x"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        int32_t id = tokenizer_special_id(tok, names[i]);
        FUZZ_ASSERT(id >= -1 && id < vocab, "special id %d", id);
    }
    FUZZ_ASSERT(tokenizer_model_max_length(tok) >= 0, "negative model_max_length");
}

int fuzz_tokenizer_load_one(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int mode = data[0] & 3;
    const char *path;
    static char *file;
    if (mode == 0) {
        if (!file) file = fuzz_tmp_path("tokenizer.json");
        fuzz_write_file(file, data + 1, size - 1);
        path = file;
    } else {
        tlfz_put(mode - 1, data + 1, size - 1, 0);
        path = tlfz_folder();
    }
    char err[1024] = "";
    tokenizer *tok = tokenizer_load(path, err, sizeof err);
    if (mode) tlfz_put(mode - 1, NULL, 0, 1);
    if (!tok) {
        FUZZ_ASSERT(err[0], "tokenizer_load failed without a message");
        return 0;
    }
    tlfz_exercise(tok);
    tokenizer_free(tok);
    return 0;
}

void fuzz_tokenizer_load_seeds(const char *dir) {
    static const char *const names[] = {"llama", "llama_meta", "opt", "clip", "misc"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char fixture[256], seed[64];
        snprintf(fixture, sizeof fixture, "tests/fixtures/tokenizers/%s/tokenizer.json", names[i]);
        uint8_t mode = (uint8_t)(i % 2);
        snprintf(seed, sizeof seed, "%s_%u", names[i], mode);
        fuzz_seed_fixture(dir, seed, &mode, 1, fixture);
    }
    uint8_t mode = 2;
    fuzz_seed_fixture(dir, "clip_special_map", &mode, 1, TLFZ_CLIP "special_tokens_map.json");
    mode = 3;
    fuzz_seed_fixture(dir, "clip_config", &mode, 1, TLFZ_CLIP "tokenizer_config.json");
    static const char mini[] =
        "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2,\"<unk>\":3},"
        "\"merges\":[\"a b\"],\"unk_token\":\"<unk>\"},\"added_tokens\":[{\"id\":4,\"content\":\"<s>\","
        "\"special\":true,\"normalized\":false,\"lstrip\":false,\"rstrip\":false,\"single_word\":false}],"
        "\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"\\\\s+\"},\"behavior\":\"Isolated\","
        "\"invert\":false},\"decoder\":null,\"normalizer\":{\"type\":\"Lowercase\"},\"post_processor\":null}";
    mode = 0;
    fuzz_seed(dir, "mini_bpe", &mode, 1, mini, sizeof mini - 1);
}

FUZZ_MAIN(tokenizer_load)
