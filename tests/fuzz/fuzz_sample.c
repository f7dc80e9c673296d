/* Fuzz target: MMC4 / LAION sample parsing (data/sample.h) and the episode
 * built from the parsed document (data/episode.h: pair selection, image
 * decoding + preprocessing, tokenization), as the loader's workers run them.
 * Input: one flag byte, then the payload, which becomes the sample's .json
 * member (and its .txt member with flags & 8). Flags: bits 0-1 format
 * (auto, mmc4, laion, auto); bit 2 replace invalid UTF-8 (else skip);
 * bit 3 a .txt member; bit 4 a .jpg member (a valid 20x16 JPEG); bit 5 a
 * member named "img0.jpg" (a 17x17 PNG) that MMC4 image_info can name;
 * bits 6-7 k, the demonstrations per episode (3 means 1).
 * Oracles: a parse failure names a skip reason and a message; a parsed
 * document's sentences are valid UTF-8, image text indices are inside
 * text_list; an episode has k + 1 items whose token counts respect
 * max_text_tokens, whose ids are inside the vocabulary, whose pixels are
 * finite, and whose query has at least one target token. */
#include "../../data/episode.h"
#include "../../data/synth.h"
#include "fuzz.h"
#include <math.h>

#define SPFZ_MAX_TOKENS 24

/* The .jpg and img0.jpg members' bytes: small synthetic images. */
static const uint8_t *spfz_image(int png, size_t *size) {
    static uint8_t *file[2];
    static size_t n[2];
    if (!file[png]) {
        int64_t w = png ? 17 : 20, h = png ? 17 : 16;
        uint8_t rgb[20 * 17 * 3];
        for (size_t i = 0; i < sizeof rgb; i++) rgb[i] = (uint8_t)(i * 13);
        char err[256];
        if (synth_encode(rgb, w, h, png ? SYNTH_IMG_PNG : SYNTH_IMG_JPEG, &file[png], &n[png], err, sizeof err)) {
            fprintf(stderr, "fuzz: %s\n", err);
            abort();
        }
    }
    *size = n[png];
    return file[png];
}

static const tokenizer *spfz_tokenizer(void) {
    static tokenizer *tok;
    if (!tok) {
        char err[1024];
        tok = tokenizer_load("tests/fixtures/tokenizers/llama", err, sizeof err);
        if (!tok) {
            fprintf(stderr, "fuzz: %s\n", err);
            abort();
        }
    }
    return tok;
}

/* The sample: members in a fixed order, the payload shared by json and txt. */
static int spfz_members(uint8_t flags, const uint8_t *payload, size_t size, shard_member *m) {
    int n = 0;
    m[n++] = (shard_member){"json", (uint8_t *)payload, size};
    if (flags & 8) m[n++] = (shard_member){"txt", (uint8_t *)payload, size};
    if (flags & 16) {
        size_t k;
        const uint8_t *img = spfz_image(0, &k);
        m[n++] = (shard_member){"jpg", (uint8_t *)img, k};
    }
    if (flags & 32) {
        size_t k;
        const uint8_t *img = spfz_image(1, &k);
        m[n++] = (shard_member){"img0.jpg", (uint8_t *)img, k};
    }
    return n;
}

static void spfz_check_document(const document *doc) {
    FUZZ_ASSERT(doc->format == SAMPLE_FORMAT_MMC4 || doc->format == SAMPLE_FORMAT_LAION, "format %d", doc->format);
    for (int64_t i = 0; i < doc->n_texts; i++)
        FUZZ_ASSERT(sample_utf8_valid(doc->texts[i], strlen(doc->texts[i])), "sentence %lld not UTF-8", (long long)i);
    for (int64_t i = 0; i < doc->n_images; i++) {
        const doc_image *im = &doc->images[i];
        FUZZ_ASSERT(im->text_index >= 0 && im->text_index < doc->n_texts, "image %lld text index %lld",
                    (long long)i, (long long)im->text_index);
        FUZZ_ASSERT(im->data || im->missing == SKIP_MISSING_MEMBER || im->missing == SKIP_BAD_IMAGE,
                    "image %lld without data or reason", (long long)i);
        if (im->data) fuzz_touch(im->data, im->size);
    }
}

static void spfz_check_item(const episode_item *it, int is_query, int64_t vocab) {
    FUZZ_ASSERT(it->n_tokens >= 1 && it->n_tokens <= SPFZ_MAX_TOKENS, "%lld tokens", (long long)it->n_tokens);
    for (int64_t i = 0; i < it->n_tokens; i++)
        FUZZ_ASSERT(it->tokens[i] >= 0 && it->tokens[i] < vocab, "token id %d", it->tokens[i]);
    size_t npx = (size_t)(3 * it->height * it->width);
    FUZZ_ASSERT(npx > 0, "empty image");
    for (size_t i = 0; i < npx; i++) FUZZ_ASSERT(isfinite(it->pixels[i]), "pixel %zu is %g", i, it->pixels[i]);
    if (!is_query) return;
    int64_t targets = 0;
    for (int64_t i = 0; i < it->n_tokens; i++) targets += it->target[i] != 0;
    FUZZ_ASSERT(targets == it->n_target && targets >= 1, "%lld target flags, n_target %lld", (long long)targets,
                (long long)it->n_target);
}

static void spfz_episode(const document *doc, int k) {
    episode_config cfg;
    episode_config_default(&cfg);
    cfg.k = doc->format == SAMPLE_FORMAT_LAION ? 0 : k;
    cfg.max_text_tokens = SPFZ_MAX_TOKENS;
    cfg.min_image_side = 4;
    cfg.max_image_pixels = 1 << 20;
    preprocess_config pp;
    preprocess_preset(&pp, "clip");
    pp.shortest_edge = pp.crop_height = pp.crop_width = 16;
    episode_ctx ctx = {&cfg, spfz_tokenizer(), &pp};
    char err[512] = "";
    FUZZ_ASSERT(episode_ctx_check(&ctx, err, sizeof err) == 0, "context: %s", err);
    episode ep;
    skip_reason why = SKIP_REASON_COUNT;
    if (episode_from_document(&ctx, doc, "fuzz", &ep, &why, err, sizeof err)) {
        FUZZ_ASSERT(why < SKIP_REASON_COUNT && err[0], "episode failed without reason or message");
        return;
    }
    FUZZ_ASSERT(ep.k == cfg.k, "episode k %d, asked %d", ep.k, cfg.k);
    for (int i = 0; i <= ep.k; i++) spfz_check_item(&ep.items[i], i == ep.k, tokenizer_vocab_size(ctx.tok));
    episode_free(&ep);
}

int fuzz_sample_one(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    uint8_t flags = data[0];
    shard_member members[4];
    shard_sample s = {"doc", 0, members, 0};
    s.n_members = spfz_members(flags, data + 1, size - 1, members);
    static const sample_format formats[4] = {SAMPLE_FORMAT_AUTO, SAMPLE_FORMAT_MMC4, SAMPLE_FORMAT_LAION,
                                             SAMPLE_FORMAT_AUTO};
    sample_opts o = {formats[flags & 3], flags & 4 ? SAMPLE_UTF8_REPLACE : SAMPLE_UTF8_SKIP};
    document doc;
    skip_reason why = SKIP_REASON_COUNT;
    char err[512] = "";
    if (document_parse(&s, &o, &doc, &why, err, sizeof err)) {
        FUZZ_ASSERT(why < SKIP_REASON_COUNT && err[0], "parse failed without reason or message");
        return 0;
    }
    spfz_check_document(&doc);
    int k = flags >> 6;
    spfz_episode(&doc, k == 3 ? 1 : k);
    document_free(&doc);
    return 0;
}

/* Documents of synthetic MMC4 shards (base64 images inside), plus
 * hand-written MMC4 and LAION samples. */
static void spfz_seed_synth(const char *dir) {
    char *tmp = fuzz_tmp_path("synth");
    synth_options o = {.layout = SYNTH_MMC4, .shards = 1, .docs = 4, .image_format = SYNTH_IMG_MIXED,
                       .seed = 11, .image_size = 16, .min_images = 2, .max_images = 3};
    char err[512], name[256], path[4096];
    if (synth_write(&o, tmp, err, sizeof err) < 1) {
        fprintf(stderr, "fuzz: synth_write: %s\n", err);
        free(tmp);
        return;
    }
    synth_shard_name(&o, 0, name, sizeof name);
    snprintf(path, sizeof path, "%s/%s", tmp, name);
    shard_reader *r = shard_open(path, NULL, err, sizeof err);
    shard_sample s;
    skip_counts skips = {{0}};
    for (int i = 0; r && shard_next(r, &s, &skips); i++) {
        const shard_member *js = shard_sample_member(&s, "json");
        char seed[64];
        uint8_t flags = (uint8_t)(1 | (i % 3) << 6);
        snprintf(seed, sizeof seed, "synth_mmc4_%d", i);
        if (js) fuzz_seed(dir, seed, &flags, 1, js->data, js->size);
        shard_sample_free(&s);
    }
    shard_close(r);
    remove(path);
    rmdir(tmp);
    free(tmp);
}

void fuzz_sample_seeds(const char *dir) {
    spfz_seed_synth(dir);
    static const char mmc4[] =
        "{\"text_list\": [\"A red circle.\", \"  filler text  \", \"A blue square on green.\"],"
        " \"image_info\": [{\"image_name\": \"img0.jpg\", \"matched_text_index\": 0, \"matched_sim\": 0.3},"
        " {\"image_name\": \"img0.jpg\", \"matched_text_index\": 2}, {\"image_name\": \"gone.jpg\","
        " \"matched_text_index\": 1, \"matched_sim\": 0.5}],"
        " \"similarity_matrix\": [[0.3, 0.1, 0.2], [0.1, 0.2, 0.28], [0.1, 0.5, 0.1]]}";
    uint8_t flags = 1 | 32 | 1 << 6;
    fuzz_seed(dir, "mmc4_members", &flags, 1, mmc4, sizeof mmc4 - 1);
    static const char caption[] = "  a yellow triangle on a background fading from green to black \n";
    flags = 2 | 8 | 16;
    fuzz_seed(dir, "laion", &flags, 1, caption, sizeof caption - 1);
    static const char bad_utf8[] = "caf\xc3 au lait \xff";
    flags = 8 | 16 | 4;
    fuzz_seed(dir, "laion_replace", &flags, 1, bad_utf8, sizeof bad_utf8 - 1);
}

FUZZ_MAIN(sample)
