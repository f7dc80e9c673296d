/* Tokenizer tests against Hugging Face `tokenizers` reference ids.
 *
 * Fixtures (scripts/make_tokenizer_fixtures.py): tiny locally trained
 * tokenizers in the LLaMA (legacy and Metaspace), OPT and CLIP layouts, each
 * with expected.json holding HF's ids for a corpus of hard strings (with and
 * without special tokens, truncated), HF's decodes, and the ids of invalid
 * UTF-8 inputs after Python's errors="replace".
 * Checked here: exact id equality for every string and style; decode equal to
 * HF's; decode(encode(s)) == s where the layout is lossless (OPT: every
 * string except around lstrip/rstrip tokens; LLaMA legacy: strings without added tokens or U+2581; LLaMA
 * Metaspace: those and no leading space; CLIP is lossy by design: lowercase,
 * whitespace collapse); random valid strings round-trip through OPT and
 * LLaMA; NFC against Python's unicodedata; errors for malformed JSON, missing
 * files, unsupported component types; random invalid UTF-8 and random ids
 * never crash and always decode to valid UTF-8; long words stay fast. */
#include "../data/tok_internal.h"
#include "../data/tokenizer.h"
#include "testlib.h"
#include <cjson/cJSON.h>
#include <pthread.h>
#include <unistd.h>

static const char *fixture_root(void) {
    static const char *roots[] = {"tests/fixtures/tokenizers", "../tests/fixtures/tokenizers",
                                  "../../tests/fixtures/tokenizers"};
    for (int i = 0; i < 3; i++)
        if (access(roots[i], R_OK) == 0) return roots[i];
    return roots[0];
}

/* "48656c" -> bytes; returns the length. */
static size_t unhex(const char *hex, char *out) {
    size_t n = strlen(hex) / 2;
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        sscanf(hex + 2 * i, "%2x", &v);
        out[i] = (char)v;
    }
    return n;
}

static int ids_equal(const tok_ids *got, const cJSON *want) {
    if (!cJSON_IsArray(want) || cJSON_GetArraySize(want) != got->n) return 0;
    int64_t i = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, want) if (got->ids[i++] != (int32_t)v->valuedouble) return 0;
    return 1;
}

static void print_ids_diff(const char *what, const tok_ids *got, const cJSON *want) {
    printf("  %s: got %lld ids:", what, (long long)got->n);
    for (int64_t i = 0; i < got->n && i < 24; i++) printf(" %d", got->ids[i]);
    printf("\n  want %d ids:", cJSON_GetArraySize(want));
    int k = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, want) if (k++ < 24) printf(" %d", (int)v->valuedouble);
    printf("\n");
}

typedef struct fixture {
    const char *name;
    int lossless; /* 0 none, 1 all strings, 2 no added tokens / U+2581, 3 also no leading space */
    const char *eos;
} fixture;

/* Whether s contains an added token (only those that strip spaces when strip_only). */
static int has_added_token(const tokenizer *tok, const char *s, size_t n, int strip_only) {
    for (int i = 0; i < tok->nadded; i++) {
        const tok_added *a = &tok->added[i];
        if ((!strip_only || a->lstrip || a->rstrip) && memmem(s, n, a->content, a->len)) return 1;
    }
    return 0;
}

static int round_trip_applies(const fixture *fx, const tokenizer *tok, const char *s, size_t n) {
    if (fx->lossless == 1) return !has_added_token(tok, s, n, 1); /* lstrip/rstrip eat spaces */
    if (!fx->lossless || has_added_token(tok, s, n, 0) || memmem(s, n, "\xE2\x96\x81", 3)) return 0;
    return fx->lossless == 2 || n == 0 || s[0] != ' ';
}

static void check_round_trip(const char *name, const tokenizer *tok, const char *s, size_t n) {
    tok_ids ids = {0};
    char err[256] = "";
    tokenizer_encode_opts raw = {0, -1};
    CHECK(tokenizer_encode(tok, s, n, &raw, &ids, err, sizeof err) == 0, "%s: encode failed: %s", name, err);
    size_t m = 0;
    char *back = tokenizer_decode(tok, ids.ids, ids.n, 0, &m, err, sizeof err);
    CHECK(back && m == n && !memcmp(back, s, n), "%s: decode(encode(s)) != s for '%.60s' (got '%.60s')", name,
          s, back ? back : "(null)");
    free(back);
    tok_ids_free(&ids);
}

static void check_decodes(const char *name, const tokenizer *tok, const tok_ids *ids, const cJSON *c) {
    const char *want = cJSON_GetStringValue(cJSON_GetObjectItem(c, "decode"));
    const char *want_skip = cJSON_GetStringValue(cJSON_GetObjectItem(c, "decode_skip"));
    char err[256] = "";
    char *got = tokenizer_decode(tok, ids->ids, ids->n, 0, NULL, err, sizeof err);
    char *got_skip = tokenizer_decode(tok, ids->ids, ids->n, 1, NULL, err, sizeof err);
    CHECK(got && want && !strcmp(got, want), "%s: decode '%.60s' != HF '%.60s'", name, got ? got : err,
          want ? want : "");
    CHECK(got_skip && want_skip && !strcmp(got_skip, want_skip), "%s: decode(skip) '%.60s' != HF '%.60s'", name,
          got_skip ? got_skip : err, want_skip ? want_skip : "");
    free(got);
    free(got_skip);
}

/* One corpus string: ids with/without specials and truncated, decodes, round trip. */
static void check_case(const fixture *fx, const tokenizer *tok, const cJSON *c, int64_t trunc, char *buf) {
    size_t n = unhex(cJSON_GetStringValue(cJSON_GetObjectItem(c, "hex")), buf);
    char label[128], err[256] = "";
    snprintf(label, sizeof label, "%s '%.*s'", fx->name, (int)(n < 40 ? n : 40), buf);
    tok_ids ids = {0};
    tokenizer_encode_opts with = {1, -1}, without = {0, -1}, cut = {1, trunc};
    const char *fields[3] = {"ids", "ids_nospecial", "ids_trunc"};
    const tokenizer_encode_opts *opts[3] = {&with, &without, &cut};
    for (int k = 2; k >= 0; k--) { /* ids last: it stays in `ids` for the decode checks */
        int rc = tokenizer_encode(tok, buf, n, opts[k], &ids, err, sizeof err);
        int ok = rc == 0 && ids_equal(&ids, cJSON_GetObjectItem(c, fields[k]));
        CHECK(ok, "%s: %s differ from HF (%s)", label, fields[k], err);
        if (!ok) print_ids_diff(fields[k], &ids, cJSON_GetObjectItem(c, fields[k]));
    }
    check_decodes(label, tok, &ids, c);
    if (round_trip_applies(fx, tok, buf, n)) check_round_trip(label, tok, buf, n);
    tok_ids_free(&ids);
}

static void check_invalid_utf8_cases(const fixture *fx, const tokenizer *tok, const cJSON *list) {
    const cJSON *c;
    char buf[256], err[256] = "";
    cJSON_ArrayForEach(c, list) {
        size_t n = unhex(cJSON_GetStringValue(cJSON_GetObjectItem(c, "hex")), buf);
        tok_ids ids = {0};
        int rc = tokenizer_encode(tok, buf, n, NULL, &ids, err, sizeof err);
        int ok = rc == 0 && ids_equal(&ids, cJSON_GetObjectItem(c, "ids"));
        CHECK(ok, "%s: invalid UTF-8 %s: ids differ from HF of the U+FFFD-replaced text", fx->name,
              cJSON_GetStringValue(cJSON_GetObjectItem(c, "hex")));
        tok_ids_free(&ids);
    }
}

static void check_specials(const fixture *fx, const tokenizer *tok, const cJSON *exp) {
    int32_t eos_id = tokenizer_token_to_id(tok, fx->eos);
    CHECK(eos_id >= 0 && tokenizer_special_id(tok, "eos_token") == eos_id, "%s: eos_token id %d, want %d",
          fx->name, tokenizer_special_id(tok, "eos_token"), eos_id);
    CHECK(tokenizer_special_id(tok, "no_such_token") == -1, "%s: unknown special name should give -1", fx->name);
    int64_t vs = (int64_t)cJSON_GetNumberValue(cJSON_GetObjectItem(exp, "vocab_size"));
    CHECK(tokenizer_vocab_size(tok) == vs, "%s: vocab size %lld, HF %lld", fx->name,
          (long long)tokenizer_vocab_size(tok), (long long)vs);
    int32_t image = tokenizer_token_to_id(tok, "<image>");
    const char *back = tokenizer_id_to_token(tok, image);
    CHECK(image >= 0 && back && !strcmp(back, "<image>"), "%s: <image> id/token lookup", fx->name);
    CHECK(tokenizer_id_to_token(tok, -5) == NULL && tokenizer_id_to_token(tok, 1 << 30) == NULL,
          "%s: out-of-range ids must give NULL", fx->name);
    if (!strcmp(fx->name, "clip"))
        CHECK(tokenizer_model_max_length(tok) == 77, "clip: model_max_length %lld",
              (long long)tokenizer_model_max_length(tok));
    tok_ids ids = {0};
    char err[256] = "";
    tokenizer_encode_opts too_short = {1, 1};
    int64_t nspecial = 0;
    tokenizer_encode(tok, "", 0, NULL, &ids, err, sizeof err);
    nspecial = ids.n;
    int rc = tokenizer_encode(tok, "hello", 5, &too_short, &ids, err, sizeof err);
    CHECK(nspecial > 1 ? rc == -1 && strstr(err, "max_length") : rc == 0,
          "%s: max_length 1 with %lld specials: rc %d '%s'", fx->name, (long long)nspecial, rc, err);
    tok_ids_free(&ids);
}

static void check_nfc(const cJSON *list) {
    const cJSON *pair;
    char in[128], want[128];
    cJSON_ArrayForEach(pair, list) {
        size_t n = unhex(cJSON_GetArrayItem(pair, 0)->valuestring, in);
        size_t m = unhex(cJSON_GetArrayItem(pair, 1)->valuestring, want);
        tstr out = {0};
        uni_nfc(in, n, &out);
        CHECK(out.n == m && !memcmp(out.p, want, m), "NFC of %s differs from Python's unicodedata",
              cJSON_GetArrayItem(pair, 0)->valuestring);
        tstr_free(&out);
    }
}

static tokenizer *load_fixture(const char *name) {
    char path[512], err[512] = "";
    snprintf(path, sizeof path, "%s/%s", fixture_root(), name);
    tokenizer *tok = tokenizer_load(path, err, sizeof err);
    CHECK(tok != NULL, "load %s: %s", path, err);
    return tok;
}

static void check_fixture(const fixture *fx) {
    char path[512];
    size_t n;
    tokenizer *tok = load_fixture(fx->name);
    snprintf(path, sizeof path, "%s/%s/expected.json", fixture_root(), fx->name);
    char *text = tl_read_file(path, &n);
    cJSON *exp = text ? cJSON_Parse(text) : NULL;
    CHECK(exp != NULL, "cannot read %s", path);
    if (!tok || !exp) goto done;
    int64_t trunc = (int64_t)cJSON_GetNumberValue(cJSON_GetObjectItem(exp, "trunc_length"));
    char *buf = tl_alloc(1 << 16);
    const cJSON *c;
    int before = tl_failed;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(exp, "cases")) check_case(fx, tok, c, trunc, buf);
    printf("%s: %d corpus strings checked, %d failures\n", fx->name,
           cJSON_GetArraySize(cJSON_GetObjectItem(exp, "cases")), tl_failed - before);
    check_invalid_utf8_cases(fx, tok, cJSON_GetObjectItem(exp, "invalid_utf8"));
    check_specials(fx, tok, exp);
    if (cJSON_GetObjectItem(exp, "nfc")) check_nfc(cJSON_GetObjectItem(exp, "nfc"));
    free(buf);
done:
    cJSON_Delete(exp);
    free(text);
    tokenizer_free(tok);
}

/* --------------------------------------------------------- random input */

static size_t random_valid_utf8(char *out, size_t max_chars, int avoid_lt) {
    static const uint32_t ranges[][2] = {{0x20, 0x7E}, {0x09, 0x0D}, {0xA0, 0x24F}, {0x400, 0x4FF}, {0x600, 0x6FF},
                                         {0x900, 0x97F}, {0x3040, 0x30FF}, {0x4E00, 0x4FFF}, {0xAC00, 0xAD00},
                                         {0x1F300, 0x1F6FF}, {0x300, 0x36F}, {0x2000, 0x206F}};
    size_t n = 0, len = (size_t)rng_int((int64_t)max_chars + 1);
    for (size_t k = 0; k < len; k++) {
        int r = rng_int(10) < 5 ? 0 : (int)rng_int(12);
        uint32_t cp = ranges[r][0] + (uint32_t)rng_int(ranges[r][1] - ranges[r][0] + 1);
        if ((avoid_lt && cp == '<') || cp == 0x2581) cp = 'x';
        n += (size_t)utf8_encode(cp, out + n);
    }
    return n;
}

static void fuzz_round_trips(void) {
    tokenizer *opt = load_fixture("opt"), *llama = load_fixture("llama");
    if (!opt || !llama) goto done;
    char buf[4 * 80];
    int bad = 0;
    for (int it = 0; it < 1500 && bad < 5; it++) {
        size_t n = random_valid_utf8(buf, 60, it % 2);
        int before = tl_failed;
        check_round_trip(it % 2 ? "llama fuzz" : "opt fuzz", it % 2 ? llama : opt, buf, n);
        bad += tl_failed > before;
    }
done:
    tokenizer_free(opt);
    tokenizer_free(llama);
}

/* Random bytes (mostly invalid UTF-8) and random ids: never crash, decode is valid UTF-8. */
static void fuzz_invalid(const char *name, int iters) {
    tokenizer *tok = load_fixture(name);
    if (!tok) return;
    char buf[96], err[256];
    int failures = 0;
    int64_t vs = tokenizer_vocab_size(tok);
    for (int it = 0; it < iters; it++) {
        size_t n = (size_t)rng_int(sizeof buf);
        for (size_t k = 0; k < n; k++) buf[k] = (char)(rng_int(4) ? rng_int(256) : "<image> a"[rng_int(9)]);
        tok_ids ids = {0};
        int rc = tokenizer_encode(tok, buf, n, NULL, &ids, err, sizeof err);
        int32_t rand_ids[16];
        for (int k = 0; k < 16; k++) rand_ids[k] = (int32_t)rng_int(vs);
        size_t m1 = 0, m2 = 0;
        char *d1 = rc ? NULL : tokenizer_decode(tok, ids.ids, ids.n, 0, &m1, err, sizeof err);
        char *d2 = tokenizer_decode(tok, rand_ids, 16, it % 2, &m2, err, sizeof err);
        int ok = rc == 0 && d1 && d2 && utf8_valid(d1, m1) && utf8_valid(d2, m2);
        for (int64_t k = 0; ok && k < ids.n; k++) ok = ids.ids[k] >= 0 && ids.ids[k] < vs;
        failures += !ok;
        free(d1);
        free(d2);
        tok_ids_free(&ids);
    }
    CHECK(failures == 0, "%s: %d of %d random byte strings failed (encode error, bad id or invalid UTF-8 decode)",
          name, failures, iters);
    tokenizer_free(tok);
}

/* ---------------------------------------------------------------- errors */

static void expect_load_error(const char *json, const char *needle) {
    char dir[] = "/tmp/aimc_tok_XXXXXX", path[600], err[512] = "";
    if (!mkdtemp(dir)) return;
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    FILE *f = fopen(path, "w");
    fputs(json, f);
    fclose(f);
    tokenizer *tok = tokenizer_load(dir, err, sizeof err);
    CHECK(tok == NULL && strstr(err, needle), "expected a load error mentioning '%s', got '%s'", needle, err);
    tokenizer_free(tok);
    unlink(path);
    rmdir(dir);
}

#define MINI_MODEL "\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}, \"merges\": [\"a b\"]}"

static void check_errors(void) {
    char err[512] = "";
    CHECK(tokenizer_load("/nonexistent/dir/for/aimc", err, sizeof err) == NULL && strstr(err, "cannot open"),
          "missing file: got '%s'", err);
    expect_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0,", "invalid JSON");
    expect_load_error("[1, 2, 3]", "not a JSON object");
    expect_load_error("{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}", "'Unigram' is not supported");
    expect_load_error("{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}}}", "WordPiece");
    expect_load_error("{" MINI_MODEL ", \"pre_tokenizer\": {\"type\": \"BertPreTokenizer\"}}",
                      "pre_tokenizer: type 'BertPreTokenizer' is not supported");
    expect_load_error("{" MINI_MODEL ", \"normalizer\": {\"type\": \"Sequence\", \"normalizers\": "
                      "[{\"type\": \"NFC\"}, {\"type\": \"NFKC\"}]}}",
                      "normalizer.normalizers[1]: type 'NFKC'");
    expect_load_error("{" MINI_MODEL ", \"decoder\": {\"type\": \"WordPiece\"}}", "decoder: type 'WordPiece'");
    expect_load_error("{" MINI_MODEL ", \"post_processor\": {\"type\": \"Mystery\"}}",
                      "post_processor: type 'Mystery'");
    expect_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"a c\"]}}",
                      "token 'c' is not in the vocabulary");
    expect_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"a\"]}}", "merges[0]");
    expect_load_error("{" MINI_MODEL ", \"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"(\"}, "
                      "\"behavior\": \"Isolated\"}}", "does not compile");
    expect_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 2000000000}, \"merges\": []}}", "ids reach");
    expect_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": -1}, \"merges\": []}}", "invalid id");
    expect_load_error("{\"model\": {\"type\": \"BPE\", \"dropout\": 0.1, \"vocab\": {}, \"merges\": []}}", "dropout");
}

/* One encode takes at most 64 MiB of text (a bound on its memory): one byte
 * more is refused with a message and no ids; the limit itself is accepted. */
static void check_text_limit(void) {
    tokenizer *tok = load_fixture("opt");
    size_t limit = (size_t)64 << 20;
    char *text = malloc(limit + 1), err[256] = "";
    memset(text, 'a', limit + 1);
    tok_ids ids = {0};
    tokenizer_encode_opts raw = {0, -1};
    CHECK(tokenizer_encode(tok, text, limit + 1, &raw, &ids, err, sizeof err) == -1 && ids.n == 0 &&
              strstr(err, "more than the 67108864"),
          "a text one byte over the limit: rc/ids %lld, '%s'", (long long)ids.n, err);
    for (size_t i = 1; i < limit; i += 64) text[i] = ' '; /* short words: the word cache keeps it fast */
    CHECK(tokenizer_encode(tok, text, limit, &raw, &ids, err, sizeof err) == 0 && ids.n > 0,
          "a text at the limit: %s", err);
    tok_ids_free(&ids);
    free(text);
    tokenizer_free(tok);
}

/* A normalized added token under a Lowercase normalizer: id_to_token gives
 * the normalized content, which token_to_id does not know, and decode shows
 * it too. The expected values are HF tokenizers 0.23.3's on the same JSON
 * (id_to_token(4) = '<removed s>', token_to_id('<Removed s>') = 4,
 * token_to_id('<removed s>') = None, decode([4]) = '<removed s>'). */
static void check_normalized_added_token(void) {
    char dir[] = "/tmp/aimc_tok_XXXXXX", path[600], err[256] = "";
    if (!mkdtemp(dir)) return;
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    FILE *f = fopen(path, "w");
    fputs("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2, \"<unk>\": 3},"
          " \"merges\": [\"a b\"], \"unk_token\": \"<unk>\"}, \"normalizer\": {\"type\": \"Lowercase\"},"
          " \"added_tokens\": [{\"id\": 4, \"content\": \"<Removed s>\", \"special\": false, \"normalized\": true}]}",
          f);
    fclose(f);
    tokenizer *tok = tokenizer_load(path, err, sizeof err);
    CHECK(tok, "load: %s", err);
    if (tok) {
        const char *s = tokenizer_id_to_token(tok, 4);
        CHECK(s && !strcmp(s, "<removed s>"), "id_to_token(4) = '%s'", s ? s : "(null)");
        CHECK(tokenizer_token_to_id(tok, "<Removed s>") == 4 && tokenizer_token_to_id(tok, "<removed s>") == -1,
              "token_to_id: %d, %d", tokenizer_token_to_id(tok, "<Removed s>"),
              tokenizer_token_to_id(tok, "<removed s>"));
        size_t len;
        char *text = tokenizer_decode(tok, (int32_t[]){4}, 1, 0, &len, err, sizeof err);
        CHECK(text && !strcmp(text, "<removed s>"), "decode([4]) = '%s' (%s)", text ? text : "(null)", err);
        free(text);
        tokenizer_free(tok);
    }
    unlink(path);
    rmdir(dir);
}

/* A minimal file with merges in both encodings, no unk token: unknown
 * characters vanish (HF drops them), known ones merge. */
static void check_mini_model(void) {
    char dir[] = "/tmp/aimc_tok_XXXXXX", path[600], err[256] = "";
    if (!mkdtemp(dir)) return;
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    FILE *f = fopen(path, "w");
    fputs("{\"truncation\": {\"max_length\": 3, \"direction\": \"Left\"},"
          " \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2, \"c\": 3, \"abc\": 4},"
          " \"merges\": [\"a b\", [\"ab\", \"c\"]]}}", f);
    fclose(f);
    tokenizer *tok = tokenizer_load(path, err, sizeof err);
    CHECK(tok != NULL, "mini tokenizer: %s", err);
    if (tok) {
        tok_ids ids = {0};
        tokenizer_encode(tok, "abcxab", 6, NULL, &ids, err, sizeof err);
        CHECK(ids.n == 2 && ids.ids[0] == 4 && ids.ids[1] == 2, "mini: 'abcxab' -> %lld ids", (long long)ids.n);
        tokenizer_encode(tok, "cccab", 5, NULL, &ids, err, sizeof err); /* file truncation: 3, from the left */
        CHECK(ids.n == 3 && ids.ids[0] == 3 && ids.ids[2] == 2, "mini: left truncation to 3 gave %lld ids",
              (long long)ids.n);
        tokenizer_encode_opts none = {1, -1};
        tokenizer_encode(tok, "cccab", 5, &none, &ids, err, sizeof err);
        CHECK(ids.n == 4, "mini: max_length -1 must not truncate (%lld ids)", (long long)ids.n);
        int32_t bad = 99;
        CHECK(tokenizer_decode(tok, &bad, 1, 0, NULL, err, sizeof err) == NULL && strstr(err, "99"),
              "decoding an unknown id must fail naming it: '%s'", err);
        tokenizer_encode_opts tiny = {1, 0};
        CHECK(tokenizer_encode(tok, "ab", 2, &tiny, &ids, err, sizeof err) == 0, "no post-processor: %s", err);
        tok_ids_free(&ids);
    }
    tokenizer_free(tok);
    unlink(path);
    rmdir(dir);
}

/* Several threads encoding with one tokenizer (shared word cache) agree with
 * the single-threaded ids. */
typedef struct thread_job {
    const tokenizer *tok;
    const char **texts;
    const tok_ids *want;
    int ntexts, mismatches;
} thread_job;

static void *thread_main(void *arg) {
    thread_job *j = arg;
    char err[256];
    tok_ids ids = {0};
    for (int rep = 0; rep < 20; rep++)
        for (int i = 0; i < j->ntexts; i++) {
            tokenizer_encode(j->tok, j->texts[i], strlen(j->texts[i]), NULL, &ids, err, sizeof err);
            j->mismatches += ids.n != j->want[i].n || memcmp(ids.ids, j->want[i].ids, (size_t)ids.n * 4);
        }
    tok_ids_free(&ids);
    return NULL;
}

static void check_threads(void) {
    tokenizer *tok = load_fixture("opt");
    if (!tok) return;
    static const char *texts[] = {"Hello world, it's a test.", "The quick brown fox <image> jumps", "Привет мир 你好",
                                  "a  b\t\tc\n", "supercalifragilistic expialidocious", "😀 emoji 👍🏽 <|endofchunk|>"};
    enum { NT = 6, NTHREADS = 4 };
    tok_ids want[NT] = {{0}};
    char err[256];
    for (int i = 0; i < NT; i++) tokenizer_encode(tok, texts[i], strlen(texts[i]), NULL, &want[i], err, sizeof err);
    pthread_t th[NTHREADS];
    thread_job jobs[NTHREADS];
    for (int t = 0; t < NTHREADS; t++) {
        jobs[t] = (thread_job){tok, texts, want, NT, 0};
        pthread_create(&th[t], NULL, thread_main, &jobs[t]);
    }
    int bad = 0;
    for (int t = 0; t < NTHREADS; t++) pthread_join(th[t], NULL), bad += jobs[t].mismatches;
    CHECK(bad == 0, "threads: %d encodes differ from the single-threaded ids", bad);
    for (int i = 0; i < NT; i++) tok_ids_free(&want[i]);
    tokenizer_free(tok);
}

/* Long inputs: one 200k-character BPE word (LLaMA has no pre-tokenizer) must
 * encode in well under a second (a quadratic merge would take minutes). */
static void check_long_word_speed(void) {
    tokenizer *tok = load_fixture("llama");
    if (!tok) return;
    size_t n = 200000;
    char *s = tl_alloc(n);
    for (size_t i = 0; i < n; i++) s[i] = "thequickbrownfoxjumps"[rng_int(21)];
    tok_ids ids = {0};
    char err[256];
    clock_t t0 = clock();
    int rc = tokenizer_encode(tok, s, n, NULL, &ids, err, sizeof err);
    double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
    CHECK(rc == 0 && ids.n > 1000, "long word encode failed");
    CHECK(secs < 2.0, "200k-char word took %.2f s", secs);
    printf("200k-char single word: %lld ids in %.3f s\n", (long long)ids.n, secs);
    size_t m = 0;
    char *back = tokenizer_decode(tok, ids.ids + 1, ids.n - 1, 0, &m, err, sizeof err);
    CHECK(back && m == n && !memcmp(back, s, n), "long word round trip");
    free(back);
    free(s);
    tok_ids_free(&ids);
    tokenizer_free(tok);
}

int main(void) {
    tests_begin("test_tokenizer");
    static const fixture fixtures[] = {{"llama", 2, "</s>"}, {"llama_meta", 3, "</s>"}, {"opt", 1, "</s>"},
                                       {"clip", 0, "<|endoftext|>"}, {"misc", 0, "[SEP]"}};
    for (int i = 0; i < 5; i++) check_fixture(&fixtures[i]);
    check_errors();
    check_text_limit();
    check_normalized_added_token();
    check_mini_model();
    check_threads();
    fuzz_round_trips();
    for (int i = 0; i < 5; i++) fuzz_invalid(fixtures[i].name, 800);
    check_long_word_speed();
    return tests_done();
}
