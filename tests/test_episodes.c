/* Documents and episodes from in-memory shard samples (data/sample.h,
 * data/episode.h):
 * - MMC4 JSON documents with base64 images and with member images, LAION
 *   pairs; pair selection (threshold, one image per sentence, document
 *   order, max_images, min_pairs) against hand-worked expectations;
 * - every item's image identified by its solid colour, whose pixel_values
 *   are checked against (c / 255 - mean) / std computed here in double;
 * - tokens against the tokenizer run on the expected text, target marks,
 *   templates, truncation, EOS;
 * - every skip reason triggered by a crafted sample and counted exactly;
 * - UTF-8 validation / replacement against Python's decode("utf-8",
 *   "replace") results written out by hand. */
#include "../data/episode.h"
#include "../data/sample.h"
#include "testlib.h"
#include "fixture_path.h"
#include <turbojpeg.h>
#include <webp/encode.h>

static const double CLIP_MEAN[3] = {0.48145466, 0.4578275, 0.40821073};
static const double CLIP_STD[3] = {0.26862954, 0.26130258, 0.27577711};
#define PIX_TOL 1e-5

static tokenizer *tok;
static preprocess_config pp;

/* ---- inputs ------------------------------------------------------------ */

typedef struct bytes {
    uint8_t *data;
    size_t size;
} bytes;

static void colour_of(int id, uint8_t rgb[3]) {
    rgb[0] = (uint8_t)(37 * id + 20), rgb[1] = (uint8_t)(91 * id + 50), rgb[2] = (uint8_t)(53 * id + 200);
}

static uint8_t *solid_rgb(int64_t w, int64_t h, int id) {
    uint8_t c[3], *px = tl_alloc((size_t)(w * h * 3));
    colour_of(id, c);
    for (int64_t i = 0; i < w * h; i++) memcpy(px + 3 * i, c, 3);
    return px;
}

/* Lossless WebP: the colour survives exactly. */
static bytes webp_solid(int64_t w, int64_t h, int id) {
    uint8_t *px = solid_rgb(w, h, id), *enc = NULL;
    size_t n = WebPEncodeLosslessRGB(px, (int)w, (int)h, (int)(w * 3), &enc);
    free(px);
    bytes b = {tl_alloc(n), n};
    memcpy(b.data, enc, n);
    WebPFree(enc);
    return b;
}

static bytes jpeg_solid(int64_t w, int64_t h, int id) {
    uint8_t *px = solid_rgb(w, h, id), *enc = NULL;
    unsigned long n = 0;
    tjhandle tj = tjInitCompress();
    int rc = tjCompress2(tj, px, (int)w, (int)(w * 3), (int)h, TJPF_RGB, &enc, &n, TJSAMP_444, 100, 0);
    tjDestroy(tj);
    free(px);
    CHECK(rc == 0, "tjCompress2 failed");
    bytes b = {tl_alloc(n), n};
    memcpy(b.data, enc, n);
    tjFree(enc);
    return b;
}

/* A JPEG whose SOF0 header claims w x h (the decoder must refuse it from the header). */
static bytes jpeg_claiming(unsigned w, unsigned h) {
    bytes b = jpeg_solid(24, 24, 1);
    for (size_t i = 2; i + 9 < b.size; i++)
        if (b.data[i] == 0xFF && b.data[i + 1] == 0xC0) {
            b.data[i + 5] = (uint8_t)(h >> 8), b.data[i + 6] = (uint8_t)h;
            b.data[i + 7] = (uint8_t)(w >> 8), b.data[i + 8] = (uint8_t)w;
            break;
        }
    return b;
}

/* Base64 written here (independent of data/base64.c). */
static char *b64(const bytes *b) {
    static const char *A = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *out = tl_alloc(4 * (b->size / 3 + 1) + 1), *o = out;
    for (size_t i = 0; i < b->size; i += 3) {
        uint32_t v = (uint32_t)b->data[i] << 16;
        if (i + 1 < b->size) v |= (uint32_t)b->data[i + 1] << 8;
        if (i + 2 < b->size) v |= b->data[i + 2];
        *o++ = A[v >> 18], *o++ = A[(v >> 12) & 63];
        *o++ = i + 1 < b->size ? A[(v >> 6) & 63] : '=';
        *o++ = i + 2 < b->size ? A[v & 63] : '=';
    }
    *o = 0;
    return out;
}

static void sample_init(shard_sample *s, const char *key) {
    memset(s, 0, sizeof *s);
    s->key = strdup(key);
    s->members = tl_alloc(16 * sizeof *s->members);
}

/* Adds a member (data copied). */
static void sample_add(shard_sample *s, const char *ext, const void *data, size_t n) {
    shard_member *m = &s->members[s->n_members++];
    m->ext = strdup(ext);
    m->data = tl_alloc(n + 1);
    memcpy(m->data, data, n);
    m->size = n;
}

static void sample_add_str(shard_sample *s, const char *ext, const char *text) { sample_add(s, ext, text, strlen(text)); }

static void sample_clear(shard_sample *s) {
    for (int i = 0; i < s->n_members; i++) free(s->members[i].ext), free(s->members[i].data);
    free(s->members);
    free(s->key);
    memset(s, 0, sizeof *s);
}

/* ---- expectations ------------------------------------------------------ */

/* The solid colour an item shows (from pixel 0 of each channel), after
 * checking every pixel of the item against the expected value of colour id. */
static void check_item_colour(const episode_item *it, int id, const char *what) {
    uint8_t c[3];
    colour_of(id, c);
    int64_t plane = it->height * it->width;
    double worst = 0;
    for (int ch = 0; ch < 3; ch++) {
        double want = ((double)c[ch] / 255.0 - CLIP_MEAN[ch]) / CLIP_STD[ch];
        for (int64_t i = 0; i < plane; i++) {
            double d = fabs((double)it->pixels[ch * plane + i] - want);
            if (!(d <= worst)) worst = d;
        }
    }
    CHECK(it->height == 16 && it->width == 16 && worst <= PIX_TOL, "%s: image of colour %d: %lldx%lld, max error %g",
          what, id, (long long)it->height, (long long)it->width, worst);
}

static tok_ids encode_text(const char *text) {
    tok_ids ids = {0};
    tokenizer_encode_opts o = {.add_special = 0, .max_length = -1};
    char err[256];
    CHECK(tokenizer_encode(tok, text, strlen(text), &o, &ids, err, sizeof err) == 0, "encode: %s", err);
    return ids;
}

static int ids_equal(const int32_t *a, int64_t na, const int32_t *b, int64_t nb) {
    return na == nb && (na == 0 || !memcmp(a, b, (size_t)na * sizeof *a));
}

static void check_demo_tokens(const episode_item *it, const char *text, const char *what) {
    tok_ids want = encode_text(text);
    CHECK(ids_equal(it->tokens, it->n_tokens, want.ids, want.n) && !it->target && it->n_target == 0,
          "%s: demonstration tokens of '%s' (%lld tokens, want %lld)", what, text, (long long)it->n_tokens,
          (long long)want.n);
    tok_ids_free(&want);
}

/* prompt tokens (no target) + target tokens + EOS (targets). */
static void check_query_tokens(const episode_item *it, const char *prompt, const char *target, const char *what) {
    tok_ids p = encode_text(prompt), t = encode_text(target);
    int32_t eos = tokenizer_special_id(tok, "eos_token");
    int64_t n = p.n + t.n + 1;
    int ok = it->n_tokens == n && it->target && it->n_target == t.n + 1 && eos == 2;
    for (int64_t i = 0; ok && i < n; i++) {
        int32_t want = i < p.n ? p.ids[i] : i < p.n + t.n ? t.ids[i - p.n] : eos;
        ok = it->tokens[i] == want && it->target[i] == (i >= p.n);
    }
    CHECK(ok, "%s: query '%s' + '%s' (%lld tokens, %lld targets; want %lld, %lld)", what, prompt, target,
          (long long)it->n_tokens, (long long)it->n_target, (long long)n, (long long)(t.n + 1));
    tok_ids_free(&p);
    tok_ids_free(&t);
}

/* ---- the pipeline as the loader runs it, for skip counting ---------------- */

/* Parses + builds (LAION: one pair for both roles; MMC4: an episode).
 * 0 when usable, else the reason. */
static int run_sample(const shard_sample *s, const episode_config *cfg, skip_reason *why, char *err, size_t n) {
    episode_ctx ctx = {cfg, tok, &pp};
    document doc;
    if (document_parse(s, &cfg->sample, &doc, why, err, n)) return -1;
    int rc;
    if (doc.format == SAMPLE_FORMAT_LAION) {
        episode_pair p;
        rc = episode_pair_build(&ctx, doc.images[0].data, doc.images[0].size, doc.texts[0], "t", EPISODE_ROLE_BOTH,
                                &p, why, err, n);
        if (!rc) episode_pair_free(&p);
    } else {
        episode ep;
        rc = episode_from_document(&ctx, &doc, "t", &ep, why, err, n);
        if (!rc) episode_free(&ep);
    }
    document_free(&doc);
    return rc;
}

/* ---- MMC4 documents ------------------------------------------------------ */

static const char *const sentences[6] = {
    "The first sentence is about a red kite.", "A small dog runs across the green field.",
    "Filler text without any picture.", "The old bridge crosses the river at dawn.",
    "Two cats sleep on a blue sofa.", "A bowl of fruit sits on the wooden table."};

/* image i: (sentence, sim); images 1 and 2 share sentence 1 (2 is better),
 * 3 is below the threshold, 5 sits exactly on it. Selection by sentence
 * order: sentence 1 -> image 2, 3 -> 0, 4 -> 4, 5 -> 5. */
static const int doc_text_index[6] = {3, 1, 1, 0, 4, 5};
static const double doc_sim[6] = {0.30, 0.26, 0.28, 0.20, 0.25, 0.24};
static const int64_t doc_selection[4] = {2, 0, 4, 5};

typedef enum { IMG_BASE64, IMG_MEMBER, IMG_MEMBER_MISSING, IMG_BAD_BASE64, IMG_MATRIX_SIM } img_mode;

/* JSON of the test document; image i has colour 10 + i. modes[i] says how
 * its bytes travel; members are added to s. */
static char *mmc4_json(shard_sample *s, const img_mode *modes) {
    size_t cap = 1 << 16, n = 0;
    char *js = tl_alloc(cap);
    n += (size_t)snprintf(js + n, cap - n, "{\"url\": \"http://x\", \"text_list\": [");
    for (int t = 0; t < 6; t++) n += (size_t)snprintf(js + n, cap - n, "%s\"%s\"", t ? ", " : "", sentences[t]);
    n += (size_t)snprintf(js + n, cap - n, "], \"image_info\": [");
    for (int i = 0; i < 6; i++) {
        char name[32];
        snprintf(name, sizeof name, "img%d.webp", i);
        n += (size_t)snprintf(js + n, cap - n, "%s{\"image_name\": \"%s\", \"matched_text_index\": %d", i ? ", " : "",
                              name, doc_text_index[i]);
        if (modes[i] != IMG_MATRIX_SIM) n += (size_t)snprintf(js + n, cap - n, ", \"matched_sim\": %.2f", doc_sim[i]);
        bytes img = webp_solid(32, 24, 10 + i);
        if (modes[i] == IMG_BASE64 || modes[i] == IMG_MATRIX_SIM) {
            char *enc = b64(&img);
            n += (size_t)snprintf(js + n, cap - n, ", \"image_base64\": \"%s\"", enc);
            free(enc);
        } else if (modes[i] == IMG_BAD_BASE64) {
            n += (size_t)snprintf(js + n, cap - n, ", \"image_base64\": \"@@not base64@@\"");
        } else if (modes[i] == IMG_MEMBER) {
            sample_add(s, name, img.data, img.size);
        }
        free(img.data);
        n += (size_t)snprintf(js + n, cap - n, "}");
    }
    n += (size_t)snprintf(js + n, cap - n, "], \"similarity_matrix\": [");
    for (int i = 0; i < 6; i++) {
        n += (size_t)snprintf(js + n, cap - n, "%s[", i ? ", " : "");
        for (int t = 0; t < 6; t++)
            n += (size_t)snprintf(js + n, cap - n, "%s%.2f", t ? ", " : "", t == doc_text_index[i] ? doc_sim[i] : 0.1);
        n += (size_t)snprintf(js + n, cap - n, "]");
    }
    snprintf(js + n, cap - n, "]}");
    CHECK(n + 4 < cap, "JSON buffer too small");
    return js;
}

static void make_mmc4(shard_sample *s, const char *key, const img_mode *modes) {
    sample_init(s, key);
    char *js = mmc4_json(s, modes);
    sample_add_str(s, "json", js);
    free(js);
}

/* Builds the episode and checks demonstrations = selection[0..k), query = selection[k]. */
static void check_mmc4_episode(const shard_sample *s, episode_config *cfg, const int64_t *selection, const char *what) {
    episode_ctx ctx = {cfg, tok, &pp};
    document doc;
    skip_reason why = SKIP_REASON_COUNT;
    char err[512] = "";
    int rc = document_parse(s, &cfg->sample, &doc, &why, err, sizeof err);
    CHECK(rc == 0 && doc.format == SAMPLE_FORMAT_MMC4 && doc.n_texts == 6 && doc.n_images == 6,
          "%s: parse: %s", what, err);
    if (rc) return;
    episode ep;
    rc = episode_from_document(&ctx, &doc, "doc", &ep, &why, err, sizeof err);
    CHECK(rc == 0 && ep.k == cfg->k, "%s: episode: %s", what, err);
    if (!rc) {
        for (int i = 0; i <= cfg->k; i++) {
            int64_t img = selection[i];
            const char *sent = sentences[doc_text_index[img]];
            char label[128], src[64];
            snprintf(label, sizeof label, "%s item %d", what, i);
            snprintf(src, sizeof src, "doc#%lld", (long long)img);
            check_item_colour(&ep.items[i], 10 + (int)img, label);
            CHECK(!strcmp(ep.items[i].source, src), "%s: source '%s', want '%s'", label, ep.items[i].source, src);
            if (i < cfg->k) check_demo_tokens(&ep.items[i], sent, label);
            else check_query_tokens(&ep.items[i], "", sent, label);
        }
        episode_free(&ep);
    }
    document_free(&doc);
}

static void test_mmc4_selection(void) {
    episode_config cfg;
    episode_config_default(&cfg);
    const img_mode b64_all[6] = {0}, members[6] = {IMG_MEMBER, IMG_MEMBER, IMG_MEMBER, IMG_MEMBER, IMG_MEMBER, IMG_MEMBER};
    const img_mode matrix[6] = {IMG_MATRIX_SIM, IMG_MATRIX_SIM, IMG_MATRIX_SIM, IMG_MATRIX_SIM, IMG_MATRIX_SIM, IMG_MATRIX_SIM};
    shard_sample s;

    make_mmc4(&s, "doc-b64", b64_all);
    check_mmc4_episode(&s, &cfg, doc_selection, "base64 k=2");
    cfg.k = 3;
    check_mmc4_episode(&s, &cfg, doc_selection, "base64 k=3");
    cfg.k = 0;
    check_mmc4_episode(&s, &cfg, doc_selection, "base64 k=0");

    document doc;
    skip_reason why;
    char err[256];
    if (!document_parse(&s, NULL, &doc, &why, err, sizeof err)) {
        int64_t sel[6];
        episode_config c2;
        episode_config_default(&c2);
        int64_t n = episode_select_pairs(&doc, &c2, sel);
        CHECK(n == 4 && !memcmp(sel, doc_selection, sizeof doc_selection), "selection: %lld pairs", (long long)n);
        c2.max_images = 3;
        n = episode_select_pairs(&doc, &c2, sel);
        CHECK(n == 3 && !memcmp(sel, doc_selection, 3 * sizeof *sel), "max_images 3: %lld pairs", (long long)n);
        c2.max_images = 6, c2.sim_threshold = 0.27;
        n = episode_select_pairs(&doc, &c2, sel);
        CHECK(n == 2 && sel[0] == 2 && sel[1] == 0, "threshold 0.27: %lld pairs", (long long)n);
        c2.sim_threshold = 0.241; /* image 5 (0.24) drops out */
        n = episode_select_pairs(&doc, &c2, sel);
        CHECK(n == 3 && sel[2] == 4, "threshold 0.241: %lld pairs", (long long)n);
        c2.sim_threshold = 0.0; /* image 3 (sentence 0) comes first */
        n = episode_select_pairs(&doc, &c2, sel);
        CHECK(n == 5 && sel[0] == 3 && sel[1] == 2, "threshold 0: %lld pairs", (long long)n);
        document_free(&doc);
    }
    sample_clear(&s);

    cfg.k = 2;
    make_mmc4(&s, "doc-members", members);
    check_mmc4_episode(&s, &cfg, doc_selection, "member images");
    sample_clear(&s);
    make_mmc4(&s, "doc-matrix", matrix);
    check_mmc4_episode(&s, &cfg, doc_selection, "similarity from the matrix");
    sample_clear(&s);

    /* image 0 (second pair) missing: the pairs move up to 2, 4, 5 */
    const img_mode miss0[6] = {IMG_MEMBER_MISSING, IMG_MEMBER, IMG_MEMBER, IMG_MEMBER, IMG_MEMBER, IMG_MEMBER};
    const int64_t sel_miss0[3] = {2, 4, 5};
    make_mmc4(&s, "doc-miss0", miss0);
    check_mmc4_episode(&s, &cfg, sel_miss0, "missing member image dropped");
    sample_clear(&s);
}

/* ---- LAION pairs ---------------------------------------------------------- */

static void test_laion_pair(void) {
    episode_config cfg;
    episode_config_default(&cfg);
    episode_ctx ctx = {&cfg, tok, &pp};
    shard_sample s;
    sample_init(&s, "000000017");
    bytes img = jpeg_solid(40, 30, 3);
    sample_add_str(&s, "txt", "  A red kite over the sea.\n");
    sample_add(&s, "jpg", img.data, img.size);
    sample_add_str(&s, "json", "{\"url\": \"http://x\", \"caption\": \"ignored\"}");
    free(img.data);
    document doc;
    skip_reason why;
    char err[256] = "";
    int rc = document_parse(&s, NULL, &doc, &why, err, sizeof err);
    CHECK(rc == 0 && doc.format == SAMPLE_FORMAT_LAION && doc.n_images == 1 && doc.n_texts == 1 &&
              !strcmp(doc.texts[0], "A red kite over the sea.") && !strcmp(doc.images[0].name, "jpg"),
          "LAION parse: %s", err);
    if (rc) return;
    episode_pair pairs[2];
    rc = episode_pair_build(&ctx, doc.images[0].data, doc.images[0].size, doc.texts[0], "shard:000000017",
                            EPISODE_ROLE_BOTH, &pairs[0], &why, err, sizeof err);
    CHECK(rc == 0, "LAION pair: %s", err);
    if (!rc) {
        rc = episode_pair_build(&ctx, doc.images[0].data, doc.images[0].size, doc.texts[0], "other",
                                EPISODE_ROLE_BOTH, &pairs[1], &why, err, sizeof err);
        CHECK(rc == 0, "second LAION pair: %s", err);
        episode ep;
        episode_from_pairs(pairs, 1, &ep);
        /* JPEG quality 100 4:4:4 of a solid colour: within one level */
        uint8_t c[3];
        colour_of(3, c);
        double worst = 0;
        for (int i = 0; i < 2; i++) {
            int64_t plane = ep.items[i].height * ep.items[i].width;
            for (int ch = 0; ch < 3; ch++)
                for (int64_t j = 0; j < plane; j++) {
                    double want = ((double)c[ch] / 255.0 - CLIP_MEAN[ch]) / CLIP_STD[ch];
                    double d = fabs(ep.items[i].pixels[ch * plane + j] - want);
                    if (!(d <= worst)) worst = d;
                }
        }
        CHECK(worst <= 1.01 / 255.0 / CLIP_STD[1], "JPEG solid colour: max error %g", worst);
        check_demo_tokens(&ep.items[0], "A red kite over the sea.", "LAION demonstration");
        check_query_tokens(&ep.items[1], "", "A red kite over the sea.", "LAION query");
        CHECK(!strcmp(ep.items[0].source, "shard:000000017") && !strcmp(ep.items[1].source, "other"), "sources");
        episode_free(&ep);
    }
    document_free(&doc);
    sample_clear(&s);
}

/* ---- templates, truncation, targets --------------------------------------- */

static void build_text_pair(episode_config *cfg, const char *caption, episode_pair *p, int *rc, skip_reason *why) {
    episode_ctx ctx = {cfg, tok, &pp};
    bytes img = webp_solid(20, 20, 4);
    char err[256] = "";
    *rc = episode_pair_build(&ctx, img.data, img.size, caption, "x", EPISODE_ROLE_BOTH, p, why, err, sizeof err);
    free(img.data);
}

static void test_templates(void) {
    episode_config cfg;
    episode_config_default(&cfg);
    cfg.demo_template = "Caption: {caption}";
    cfg.query_prompt = "Output:";
    cfg.target_template = "{caption} ({caption})";
    episode_pair p;
    skip_reason why;
    int rc;
    build_text_pair(&cfg, "a blue sofa", &p, &rc, &why);
    CHECK(rc == 0, "templated pair");
    if (!rc) {
        episode ep;
        episode_from_pairs(&p, 0, &ep);
        check_query_tokens(&ep.items[0], "Output:", "a blue sofa (a blue sofa)", "templated query");
        episode_free(&ep);
    }
    build_text_pair(&cfg, "a blue sofa", &p, &rc, &why);
    if (!rc) {
        episode_pair two[2] = {p, {0}};
        build_text_pair(&cfg, "x", &two[1], &rc, &why);
        episode ep;
        episode_from_pairs(two, 1, &ep);
        check_demo_tokens(&ep.items[0], "Caption: a blue sofa", "templated demonstration");
        episode_free(&ep);
    }

    /* truncation: demonstrations keep their first tokens; queries keep
     * prompt + EOS and shorten the target */
    const char *caption = "a very long caption about many different things in a big old house";
    tok_ids full = encode_text(caption), prompt = encode_text("Output:");
    episode_config_default(&cfg);
    cfg.query_prompt = "Output:";
    cfg.max_text_tokens = prompt.n + 3;
    build_text_pair(&cfg, caption, &p, &rc, &why);
    CHECK(rc == 0 && full.n > 8, "truncated pair (%lld tokens)", (long long)full.n);
    if (!rc) {
        int ok = p.demo.n == cfg.max_text_tokens && !memcmp(p.demo.ids, full.ids, (size_t)p.demo.n * 4);
        CHECK(ok, "demonstration truncated to %lld tokens: got %lld", (long long)cfg.max_text_tokens, (long long)p.demo.n);
        ok = p.query.n == cfg.max_text_tokens && p.n_target == 3 && p.query.ids[p.query.n - 1] == 2 &&
             !memcmp(p.query.ids, prompt.ids, (size_t)prompt.n * 4) &&
             !memcmp(p.query.ids + prompt.n, full.ids, 2 * 4) && !p.target[prompt.n - 1] && p.target[prompt.n];
        CHECK(ok, "query truncated: %lld tokens, %lld targets", (long long)p.query.n, (long long)p.n_target);
        episode_pair_free(&p);
    }
    /* no room for a target token: SKIP_NO_TARGET */
    cfg.max_text_tokens = prompt.n + 1;
    build_text_pair(&cfg, caption, &p, &rc, &why);
    CHECK(rc != 0 && why == SKIP_NO_TARGET, "prompt + EOS fill max_text_tokens: rc %d why %s", rc, skip_reason_name(why));
    cfg.target_eos = 0;
    build_text_pair(&cfg, caption, &p, &rc, &why);
    CHECK(rc == 0 && p.n_target == 1 && p.query.ids[prompt.n] == full.ids[0], "without EOS one target token fits");
    if (!rc) episode_pair_free(&p);
    tok_ids_free(&full);
    tok_ids_free(&prompt);

    char err[256];
    episode_config_default(&cfg);
    cfg.max_images = 2;
    CHECK(episode_config_check(&cfg, err, sizeof err) && strstr(err, "max_images"), "max_images < k+1 refused");
    episode_config_default(&cfg);
    cfg.target_template = "no slot";
    CHECK(episode_config_check(&cfg, err, sizeof err) && strstr(err, "target_template"), "target without {caption}");
    episode_config_default(&cfg);
    cfg.query_prompt = "{caption}";
    CHECK(episode_config_check(&cfg, err, sizeof err) && strstr(err, "query_prompt"), "prompt with {caption}");
    episode_config_default(&cfg);
    CHECK(episode_config_check(&cfg, err, sizeof err) == 0, "defaults are valid");
}

/* ---- skip reasons ----------------------------------------------------------- */

typedef struct crafted {
    const char *name;
    shard_sample s;
    int expect;             /* a skip_reason, or -1 for usable */
    int64_t max_text_tokens; /* 0: the default */
} crafted;

static void laion(crafted *c, const char *name, int expect, const char *caption, const bytes *img, const char *ext) {
    c->name = name, c->expect = expect;
    sample_init(&c->s, name);
    if (caption) sample_add(&c->s, "txt", caption, strlen(caption));
    if (img) sample_add(&c->s, ext, img->data, img->size);
}

static void mmc4_raw(crafted *c, const char *name, int expect, const char *json) {
    c->name = name, c->expect = expect;
    sample_init(&c->s, name);
    sample_add_str(&c->s, "json", json);
}

static void mmc4_modes(crafted *c, const char *name, int expect, const img_mode *modes) {
    c->name = name, c->expect = expect;
    make_mmc4(&c->s, name, modes);
}

static int craft_all(crafted *c, bytes *good, bytes *tiny, bytes *big, bytes *claims_huge, bytes *empty,
                     bytes *garbage) {
    int n = 0;
    laion(&c[n++], "laion-ok", -1, "A red kite.", good, "webp");
    laion(&c[n++], "laion-png-ext-missing-txt", SKIP_MISSING_MEMBER, NULL, good, "jpg");
    laion(&c[n++], "laion-no-image", SKIP_MISSING_MEMBER, "A caption.", NULL, NULL);
    laion(&c[n++], "laion-blank-caption", SKIP_BAD_TEXT, " \t\n ", good, "webp");
    laion(&c[n++], "laion-bad-utf8", SKIP_BAD_TEXT, "caf\xc3 au lait", good, "webp");
    laion(&c[n++], "laion-zero-byte-image", SKIP_BAD_IMAGE, "A caption.", empty, "jpg");
    laion(&c[n++], "laion-garbage-image", SKIP_BAD_IMAGE, "A caption.", garbage, "jpg");
    laion(&c[n++], "laion-1x1", SKIP_BAD_IMAGE, "A caption.", tiny, "webp");
    laion(&c[n++], "laion-over-pixel-limit", SKIP_BAD_IMAGE, "A caption.", big, "webp");
    laion(&c[n++], "laion-claims-20000x20000", SKIP_BAD_IMAGE, "A caption.", claims_huge, "jpg");
    laion(&c[n++], "laion-no-room-for-target", SKIP_NO_TARGET, "A caption.", good, "png");
    c[n - 1].max_text_tokens = 1; /* EOS alone fills it */
    mmc4_raw(&c[n++], "mmc4-no-json", SKIP_MISSING_MEMBER, "");
    c[n - 1].s.members[0].ext[0] = 'x'; /* the member is "xson", not "json" */
    mmc4_raw(&c[n++], "mmc4-broken-json", SKIP_BAD_JSON, "{\"text_list\": [\"a\", ");
    mmc4_raw(&c[n++], "mmc4-not-object", SKIP_BAD_JSON, "[1, 2]");
    mmc4_raw(&c[n++], "mmc4-text-list-type", SKIP_BAD_JSON, "{\"text_list\": \"a\", \"image_info\": []}");
    mmc4_raw(&c[n++], "mmc4-text-item-type", SKIP_BAD_JSON, "{\"text_list\": [\"a\", 3], \"image_info\": []}");
    mmc4_raw(&c[n++], "mmc4-index-out-of-range", SKIP_BAD_JSON,
             "{\"text_list\": [\"a\"], \"image_info\": [{\"image_name\": \"x.jpg\", \"matched_text_index\": 1, "
             "\"matched_sim\": 0.3}]}");
    mmc4_raw(&c[n++], "mmc4-no-similarity", SKIP_BAD_JSON,
             "{\"text_list\": [\"a\"], \"image_info\": [{\"image_name\": \"x.jpg\", \"matched_text_index\": 0}]}");
    mmc4_raw(&c[n++], "mmc4-bad-utf8", SKIP_BAD_TEXT,
             "{\"text_list\": [\"fine\", \"bad \xff byte\"], \"image_info\": []}");
    mmc4_raw(&c[n++], "mmc4-no-images", SKIP_TOO_FEW_PAIRS, "{\"text_list\": [\"a\"], \"image_info\": []}");
    const img_mode ok[6] = {0};
    const img_mode missing[6] = {IMG_MEMBER_MISSING, IMG_MEMBER_MISSING, IMG_MEMBER_MISSING, IMG_MEMBER, IMG_MEMBER, IMG_MEMBER};
    const img_mode bad_b64[6] = {IMG_BAD_BASE64, IMG_BAD_BASE64, IMG_BAD_BASE64, 0, 0, 0};
    mmc4_modes(&c[n++], "mmc4-ok", -1, ok);
    mmc4_modes(&c[n++], "mmc4-missing-images", SKIP_MISSING_MEMBER, missing);
    mmc4_modes(&c[n++], "mmc4-bad-base64", SKIP_BAD_IMAGE, bad_b64);
    return n;
}

static void test_skip_reasons(void) {
    bytes good = webp_solid(24, 24, 5), tiny = webp_solid(1, 1, 5), big = webp_solid(120, 100, 5);
    bytes claims_huge = jpeg_claiming(20000, 20000), empty = {tl_alloc(1), 0}, garbage = {tl_alloc(300), 300};
    for (size_t i = 0; i < garbage.size; i++) garbage.data[i] = (uint8_t)rng_u64();
    garbage.data[0] = 0xFF, garbage.data[1] = 0xD8, garbage.data[2] = 0xFF; /* looks like a JPEG */
    crafted c[40] = {0};
    int n = craft_all(c, &good, &tiny, &big, &claims_huge, &empty, &garbage);
    episode_config cfg;
    episode_config_default(&cfg);
    cfg.max_image_pixels = 10000; /* 120x100 is over, 24x24 and 32x24 are under */
    skip_counts got = {0}, want = {0};
    int usable = 0;
    for (int i = 0; i < n; i++) {
        skip_reason why = SKIP_REASON_COUNT;
        char err[512] = "";
        cfg.max_text_tokens = c[i].max_text_tokens ? c[i].max_text_tokens : 64;
        int rc = run_sample(&c[i].s, &cfg, &why, err, sizeof err);
        if (rc == 0) usable++;
        else skip_count(&got, why);
        if (c[i].expect >= 0) skip_count(&want, (skip_reason)c[i].expect);
        int ok = c[i].expect < 0 ? rc == 0 : rc != 0 && why == (skip_reason)c[i].expect && err[0];
        CHECK(ok, "%s: rc %d, reason %s (want %s): %s", c[i].name, rc, rc ? skip_reason_name(why) : "-",
              c[i].expect < 0 ? "usable" : skip_reason_name((skip_reason)c[i].expect), err);
        if (getenv("AIMC_TEST_VERBOSE") && rc) printf("  %s -> %s: %s\n", c[i].name, skip_reason_name(why), err);
    }
    CHECK(usable == 2 && !memcmp(&got, &want, sizeof got), "skip counts: %d usable", usable);
    char a[256], b[256];
    printf("  crafted samples: %d, counted: %s (expected %s)\n", n, skip_counts_str(&got, a, sizeof a),
           skip_counts_str(&want, b, sizeof b));

    /* the replace policy keeps the bad-UTF-8 caption, with U+FFFD */
    cfg.sample.invalid_utf8 = SAMPLE_UTF8_REPLACE;
    document doc;
    skip_reason why;
    char err[256];
    int rc = document_parse(&c[4].s, &cfg.sample, &doc, &why, err, sizeof err);
    CHECK(rc == 0 && !strcmp(doc.texts[0], "caf\xef\xbf\xbd au lait"), "replace policy: %s", rc ? err : doc.texts[0]);
    if (!rc) document_free(&doc);
    /* a 1x1 image passes with min_image_side 1 */
    cfg.min_image_side = 1;
    CHECK(run_sample(&c[7].s, &cfg, &why, err, sizeof err) == 0, "1x1 with min_image_side 1: %s", err);
    /* min_pairs above what the document has */
    episode_config_default(&cfg);
    cfg.min_pairs = 5;
    CHECK(run_sample(&c[20].s, &cfg, &why, err, sizeof err) != 0 && why == SKIP_TOO_FEW_PAIRS, "min_pairs 5: %s", err);
    cfg.min_pairs = 4;
    CHECK(run_sample(&c[20].s, &cfg, &why, err, sizeof err) == 0, "min_pairs 4: %s", err);
    /* format forced: a LAION sample read as MMC4 has no .json */
    cfg.sample.format = SAMPLE_FORMAT_MMC4;
    CHECK(run_sample(&c[0].s, &cfg, &why, err, sizeof err) != 0 && why == SKIP_MISSING_MEMBER, "LAION as MMC4: %s", err);

    for (int i = 0; i < n; i++) sample_clear(&c[i].s);
    free(good.data), free(tiny.data), free(big.data), free(claims_huge.data), free(empty.data), free(garbage.data);
}

/* ---- UTF-8 --------------------------------------------------------------- */

static void test_utf8(void) {
    /* expected outputs: Python's bytes.decode("utf-8", "replace") */
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"plain", "plain"},
        {"caf\xc3\xa9", "caf\xc3\xa9"},
        {"a\xff" "b", "a\xef\xbf\xbd" "b"},
        {"\xe2\x82", "\xef\xbf\xbd"},                                   /* truncated 3-byte: one */
        {"\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},       /* surrogate: three */
        {"\xf0\x9f\x98", "\xef\xbf\xbd"},                               /* truncated 4-byte: one */
        {"\xc0\xaf", "\xef\xbf\xbd\xef\xbf\xbd"},                       /* overlong: two */
        {"\xf4\x90\x80\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"}, /* > U+10FFFF */
        {"\xf0\x9f\x98\x80!", "\xf0\x9f\x98\x80!"},
        {"\xe2\x82x", "\xef\xbf\xbdx"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n = strlen(cases[i].in), len = 0;
        char *out = sample_utf8_replace(cases[i].in, n, &len);
        int valid = !strcmp(cases[i].in, cases[i].out);
        CHECK(out && len == strlen(cases[i].out) && !strcmp(out, cases[i].out), "utf8 case %zu", i);
        CHECK(sample_utf8_valid(cases[i].in, n) == valid, "sample_utf8_valid case %zu", i);
        free(out);
    }
    CHECK(!sample_utf8_valid("a\0b", 3), "NUL is refused");
}

static void find_tokenizer(void) {
    char path[1024];
    FIXTURE_PATH("tokenizers/llama", path, sizeof path);
    char err[512];
    tok = tokenizer_load(path, err, sizeof err);
    CHECK(tok != NULL, "tokenizer: %s", err);
}

int main(void) {
    tests_begin("test_episodes");
    find_tokenizer();
    CHECK(preprocess_preset(&pp, "clip") == 0, "clip preset");
    pp.shortest_edge = 16, pp.crop_height = pp.crop_width = 16;
    if (!tok) return tests_done();
    test_utf8();
    test_laion_pair();
    test_mmc4_selection();
    test_templates();
    test_skip_reasons();
    tokenizer_free(tok);
    return tests_done();
}
