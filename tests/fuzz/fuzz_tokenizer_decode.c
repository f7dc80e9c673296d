/* Fuzz target: tokenizer_decode (data/tokenizer.h) on arbitrary ids with
 * the committed fixture tokenizers.
 * Input: byte 0 picks the tokenizer (% 5: llama, llama_meta, opt, clip,
 * misc), byte 1 bit 0 is skip_special; then 2 bytes per id (little-endian
 * u16 v: 0xffff is -1, else v % (vocab + 1), so vocab itself is out of range).
 * Oracles: decoding succeeds exactly when every id has a token
 * (tokenizer_id_to_token), with a NUL-terminated result of the reported length. */
#include "../../data/tokenizer.h"
#include "fuzz.h"

#define TDFZ_COUNT 5
static const char *const tdfz_names[TDFZ_COUNT] = {"llama", "llama_meta", "opt", "clip", "misc"};

static const tokenizer *tdfz_get(int i) {
    static tokenizer *toks[TDFZ_COUNT];
    if (!toks[i]) {
        char path[256], err[1024];
        snprintf(path, sizeof path, "tests/fixtures/tokenizers/%s", tdfz_names[i]);
        toks[i] = tokenizer_load(path, err, sizeof err);
        if (!toks[i]) {
            fprintf(stderr, "fuzz: %s\n", err);
            abort();
        }
    }
    return toks[i];
}

int fuzz_tokenizer_decode_one(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    const tokenizer *tok = tdfz_get(data[0] % TDFZ_COUNT);
    int64_t vocab = tokenizer_vocab_size(tok), n = (int64_t)(size - 2) / 2;
    int32_t *ids = malloc(sizeof *ids * (size_t)(n ? n : 1));
    if (!ids) abort();
    int all_valid = 1;
    for (int64_t i = 0; i < n; i++) {
        unsigned v = data[2 + 2 * i] | (unsigned)data[3 + 2 * i] << 8;
        ids[i] = v == 0xffff ? -1 : (int32_t)(v % (unsigned)(vocab + 1));
        all_valid &= tokenizer_id_to_token(tok, ids[i]) != NULL;
    }
    char err[512] = "";
    size_t len = 12345;
    char *text = tokenizer_decode(tok, ids, n, data[1] & 1, &len, err, sizeof err);
    if (all_valid) FUZZ_ASSERT(text, "decode of valid ids failed: %s", err);
    if (!all_valid) FUZZ_ASSERT(!text && err[0], "decode of an out-of-range id succeeded");
    if (text) FUZZ_ASSERT(text[len] == 0, "decoded text not terminated at its length");
    free(text);
    free(ids);
    return 0;
}

/* Every tokenizer: ascending ids, its special tokens, byte-fallback ranges. */
void fuzz_tokenizer_decode_seeds(const char *dir) {
    for (int t = 0; t < TDFZ_COUNT; t++) {
        for (int skip = 0; skip < 2; skip++) {
            uint8_t buf[2 + 2 * 64] = {(uint8_t)t, (uint8_t)skip};
            int start = skip ? 0 : 250;
            for (int i = 0; i < 64; i++) {
                buf[2 + 2 * i] = (uint8_t)(start + i * 3);
                buf[3 + 2 * i] = (uint8_t)((start + i * 3) >> 8);
            }
            char name[64];
            snprintf(name, sizeof name, "%s_%d", tdfz_names[t], skip);
            fuzz_seed(dir, name, NULL, 0, buf, sizeof buf);
        }
    }
}

FUZZ_MAIN(tokenizer_decode)
