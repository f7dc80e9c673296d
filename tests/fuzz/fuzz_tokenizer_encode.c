/* Fuzz target: tokenizer_encode (data/tokenizer.h) on arbitrary bytes with
 * the committed fixture tokenizers (tests/fixtures/tokenizers/NAME).
 * Input: byte 0 picks the tokenizer (% 5: llama, llama_meta, opt, clip,
 * misc); byte 1 the options (bit 0 add_special; bits 1-2 max_length: the
 * file's setting, none, (byte 1 >> 3), 77); the rest is the text.
 * Oracles: ids inside the vocabulary, at most max_length of them, the same ids
 * on a second encode (the word cache must not change results), decoding
 * succeeds; for OPT (lossless byte-level BPE) and valid UTF-8 without added
 * tokens, decode(encode(text)) == text. */
#include "../../data/sample.h"
#include "../../data/tokenizer.h"
#include "fuzz.h"

#define TEFZ_COUNT 5
static const char *const tefz_names[TEFZ_COUNT] = {"llama", "llama_meta", "opt", "clip", "misc"};

/* The fixture tokenizers, loaded once. */
static const tokenizer *tefz_get(int i) {
    static tokenizer *toks[TEFZ_COUNT];
    if (!toks[i]) {
        char path[256], err[1024];
        snprintf(path, sizeof path, "tests/fixtures/tokenizers/%s", tefz_names[i]);
        toks[i] = tokenizer_load(path, err, sizeof err);
        if (!toks[i]) {
            fprintf(stderr, "fuzz: %s\n", err);
            abort();
        }
    }
    return toks[i];
}

static int64_t tefz_max_length(uint8_t opts) {
    switch ((opts >> 1) & 3) {
    case 0: return 0;
    case 1: return -1;
    case 2: return opts >> 3;
    default: return 77;
    }
}

/* The OPT round trip (only for text the byte-level BPE must keep exactly). */
static void tefz_check_roundtrip(const tokenizer *tok, const uint8_t *text, size_t n, const tok_ids *ids) {
    if (!sample_utf8_valid((const char *)text, n) || memchr(text, '<', n) || memmem(text, n, "qux", 3)) return;
    char err[512];
    size_t len;
    char *back = tokenizer_decode(tok, ids->ids, ids->n, 0, &len, err, sizeof err);
    FUZZ_ASSERT(back && len == n && !memcmp(back, text, n), "OPT decode(encode(text)) differs: '%s'",
                back ? back : err);
    free(back);
}

int fuzz_tokenizer_encode_one(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    int which = data[0] % TEFZ_COUNT;
    const tokenizer *tok = tefz_get(which);
    const uint8_t *text = data + 2;
    size_t n = size - 2;
    tokenizer_encode_opts o = {data[1] & 1, tefz_max_length(data[1])};
    tok_ids a = {0}, b = {0};
    char err[512];
    int rc = tokenizer_encode(tok, (const char *)text, n, &o, &a, err, sizeof err);
    if (rc == 0) {
        int64_t vocab = tokenizer_vocab_size(tok);
        for (int64_t i = 0; i < a.n; i++)
            FUZZ_ASSERT(a.ids[i] >= 0 && a.ids[i] < vocab, "id %d outside the vocabulary", a.ids[i]);
        FUZZ_ASSERT(o.max_length <= 0 || a.n <= o.max_length, "%lld ids, max_length %lld", (long long)a.n,
                    (long long)o.max_length);
        FUZZ_ASSERT(tokenizer_encode(tok, (const char *)text, n, &o, &b, err, sizeof err) == 0 && b.n == a.n &&
                        (!a.n || !memcmp(a.ids, b.ids, sizeof *a.ids * (size_t)a.n)),
                    "a second encode gave other ids");
        size_t len;
        char *dec = tokenizer_decode(tok, a.ids, a.n, data[1] & 1, &len, err, sizeof err);
        FUZZ_ASSERT(dec && dec[len] == 0, "decode of encoded ids failed: %s", err);
        free(dec);
        if (which == 2 && !o.add_special && o.max_length <= 0) tefz_check_roundtrip(tok, text, n, &a);
    }
    tok_ids_free(&a);
    tok_ids_free(&b);
    return 0;
}

void fuzz_tokenizer_encode_seeds(const char *dir) {
    static const char *const texts[] = {
        "A photo of a cat sitting on a mat.", "<s>[INST] Hello <image>\nWhat is this? [/INST]",
        "  leading and trailing   ", "caf\xc3\xa9 na\xc3\xafve \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e \xf0\x9f\x98\x80",
        "\xff\xfe\xc3(\xe2\x82", "<|startoftext|>a red circle<|endoftext|>", "Hello World [CLS] [SEP]",
        "qux quxqux it's don't 1234567", "\t\n\r\v\f\xc2\xa0\xe3\x80\x80",
    };
    for (int t = 0; t < TEFZ_COUNT; t++)
        for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
            uint8_t prefix[2] = {(uint8_t)t, (uint8_t)((i % 4) << 1 | (i & 1))};
            char name[64];
            snprintf(name, sizeof name, "%s_%zu", tefz_names[t], i);
            fuzz_seed(dir, name, prefix, 2, texts[i], strlen(texts[i]));
        }
}

FUZZ_MAIN(tokenizer_encode)
