/* Fuzz target: base64_decode (data/base64.h) on arbitrary text, with two
 * oracles: text that decodes re-encodes to itself (whitespace dropped,
 * padding completed), and any bytes survive encode -> decode unchanged. */
#include "../../data/base64.h"
#include "fuzz.h"

/* The text without whitespace, '=' padded to a multiple of 4. */
static char *b64fz_canonical(const uint8_t *text, size_t n, size_t *out_len) {
    char *c = malloc(n + 4);
    if (!c) abort();
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (text[i] != ' ' && text[i] != '\t' && text[i] != '\r' && text[i] != '\n')
            c[k++] = (char)text[i];
    while (k % 4) c[k++] = '=';
    c[k] = 0;
    *out_len = k;
    return c;
}

static void b64fz_check_decoded(const uint8_t *data, size_t size, const uint8_t *dec, size_t dec_len) {
    FUZZ_ASSERT(dec[dec_len] == 0, "no NUL after the decoded bytes");
    size_t enc_len, canon_len;
    char *enc = base64_encode(dec, dec_len, &enc_len);
    char *canon = b64fz_canonical(data, size, &canon_len);
    FUZZ_ASSERT(enc, "encode failed");
    FUZZ_ASSERT(enc_len == canon_len && !memcmp(enc, canon, enc_len),
                "decoded text does not re-encode to itself ('%s' vs '%s')", enc, canon);
    free(enc);
    free(canon);
}

static void b64fz_check_roundtrip(const uint8_t *data, size_t size) {
    size_t enc_len, dec_len;
    char *enc = base64_encode(data, size, &enc_len);
    FUZZ_ASSERT(enc, "encode failed");
    FUZZ_ASSERT(enc_len == base64_encoded_len(size) && strlen(enc) == enc_len,
                "encoded length %zu, expected %zu", enc_len, base64_encoded_len(size));
    uint8_t *dec = NULL;
    FUZZ_ASSERT(base64_decode(enc, enc_len, &dec, &dec_len) == 0, "own encoding refused");
    FUZZ_ASSERT(dec_len == size && (!size || !memcmp(dec, data, size)), "roundtrip changed the bytes");
    free(dec);
    free(enc);
}

int fuzz_base64_one(const uint8_t *data, size_t size) {
    uint8_t *dec = (uint8_t *)"x";
    size_t dec_len = 0;
    int rc = base64_decode((const char *)data, size, &dec, &dec_len);
    if (rc == 0) {
        b64fz_check_decoded(data, size, dec, dec_len);
        free(dec);
    } else {
        FUZZ_ASSERT(rc == -1 && dec == NULL, "failed decode returned %d with out set", rc);
    }
    b64fz_check_roundtrip(data, size);
    return 0;
}

void fuzz_base64_seeds(const char *dir) {
    static const char *const texts[] = {
        "", "Zg==", "Zm8=", "Zm9v", "Zm9vYg", "Zm9v\r\nYmFy", " aGVsbG8gd29ybGQ= ", "////++++", "Zh==",
        "Zm9v=", "=Zm9", "Zm9vY", "Zm9v!A==",
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        char name[32];
        snprintf(name, sizeof name, "text%02zu", i);
        fuzz_seed(dir, name, NULL, 0, texts[i], strlen(texts[i]));
    }
    size_t n;
    uint8_t *png = fuzz_read_file("tests/fixtures/images/tiny.png", &n);
    if (png) {
        char *enc = base64_encode(png, n, NULL);
        fuzz_seed(dir, "tiny_png", NULL, 0, enc, strlen(enc));
        free(enc);
        free(png);
    }
}

FUZZ_MAIN(base64)
