/* The demonstration bank (host/bank.h) and the inference prompts that use it
 * (host/infer.h), on the cpu backend:
 *  - write -> read back: every header field, entry and row bit for bit, for
 *    several d_model (1, 7, 32) and counts (0, 1, 5), ids and texts with
 *    UTF-8; lookups by id; writer errors (repeated id, id with a comma,
 *    empty id, no rows, unwritable path);
 *  - damaged files: every truncation point class, a foreign file, another
 *    magic or version, a flipped byte in the text or index, extra bytes ->
 *    NULL with a clear message; a bank for another backbone or layer is
 *    refused by bank_check_model;
 *  - on the tiny LLaVA and BLIP-2 models: the rows a bank stores
 *    (infer_demo_hidden, aggregation through infer.c's own layout code) equal
 *    aim_demo_hidden's (host/aim.c) hidden states for layers 0, 1 and the
 *    last, rel <= 1e-5, and come back bit for bit from the file;
 *  - AIM inference from the bank (demonstrations WITHOUT images, so no
 *    aggregation can run, and again WITH their images loaded) builds the
 *    same prompt (rel <= 1e-5) and generates the same ids as AIM inference
 *    from the raw demonstrations; counted passes (decoder_counts_now,
 *    mllm_image_passes): from the bank 0 LM forwards and 1 vision pass (the
 *    query's), raw k forwards and k + 1 vision passes, and one decode step
 *    per generated token either way;
 *  - the backbone description: the same weights stored as F16 (llava/) and
 *    BF16 (llava_oldkeys/) give the same text, BLIP-2 another, and changing
 *    one sampled weight changes it. */
#include "testlib.h"
#include "model_fixture.h"
#include "../host/aim.h"
#include "../host/bank.h"
#include "../host/generate.h"
#include "../host/infer.h"
#include "../host/mllm.h"
#include <limits.h>

static const backend *be;
static char tmpdir[] = "/tmp/aimc-test-bank-XXXXXX";

static void fixture(const char *rel, char *out, size_t n) {
    int k = snprintf(out, n, "%s/tests/fixtures/%s", fx_repo_root(), rel);
    if (k < 0 || (size_t)k >= n) printf("FAIL: fixture path for %s too long\n", rel), exit(1);
}
static void tmp_path(const char *name, char *out, size_t n) { snprintf(out, n, "%s/%s", tmpdir, name); }

/* ---- file round trip ------------------------------------------------------------------ */

typedef struct demo_rows {
    char id[64], image[64], text[128];
    int64_t n;
    float *rows;
} demo_rows;

static const char *const texts[] = {"a cat on a mat", "deux chiens \xc3\xa0 la plage", "\xe6\x97\xa5\xe6\x9c\xac \"quoted\"",
                                    "", "tab\there"};

static demo_rows *random_demos(int count, int64_t d) {
    demo_rows *ds = tl_alloc((size_t)(count + 1) * sizeof *ds);
    for (int i = 0; i < count; i++) {
        snprintf(ds[i].id, sizeof ds[i].id, "demo-%d-%llu", i, (unsigned long long)(rng_u64() % 1000));
        snprintf(ds[i].image, sizeof ds[i].image, "%s", i % 2 ? "" : "/img/\xe5\x9b\xbe.png");
        snprintf(ds[i].text, sizeof ds[i].text, "%s", texts[i % 5]);
        ds[i].n = 1 + rng_int(6);
        ds[i].rows = tl_alloc((size_t)(ds[i].n * d) * sizeof(float));
        fill_normal(ds[i].rows, ds[i].n * d, 1.0);
    }
    return ds;
}

static int write_bank(const char *path, const char *backbone, int64_t layer, int64_t d, const demo_rows *ds, int count) {
    char err[512];
    bank_writer *w = bank_writer_open(path, backbone, layer, d, err, sizeof err);
    if (!w) return printf("FAIL: bank_writer_open: %s\n", err), -1;
    for (int i = 0; i < count; i++)
        if (bank_writer_add(w, ds[i].id, ds[i].image, ds[i].text, ds[i].rows, ds[i].n, err, sizeof err))
            return printf("FAIL: bank_writer_add: %s\n", err), bank_writer_abort(w), -1;
    if (bank_writer_finish(w, err, sizeof err)) return printf("FAIL: bank_writer_finish: %s\n", err), -1;
    return 0;
}

static void check_read_back(const char *path, const char *backbone, int64_t layer, int64_t d, const demo_rows *ds,
                            int count) {
    char err[512];
    bank *b = bank_open(path, err, sizeof err);
    CHECK(b != NULL, "bank_open: %s", err);
    if (!b) return;
    int64_t rows = 0;
    for (int i = 0; i < count; i++) rows += ds[i].n;
    CHECK(b->version == BANK_VERSION && b->layer == layer && b->d_model == d && b->count == count &&
              b->total_rows == rows && !strcmp(b->backbone_text, backbone),
          "header: version %u layer %lld d %lld count %lld rows %lld text '%s'", b->version, (long long)b->layer,
          (long long)b->d_model, (long long)b->count, (long long)b->total_rows, b->backbone_text);
    for (int i = 0; i < count && b->count == count; i++) {
        const bank_entry *e = bank_find(b, ds[i].id);
        CHECK(e == &b->entries[i] && e->n_rows == ds[i].n && !strcmp(e->image, ds[i].image) &&
                  !strcmp(e->text, ds[i].text),
              "entry %d ('%s') differs after reading back", i, ds[i].id);
        if (e) CHECK(!memcmp(bank_entry_rows(b, e), ds[i].rows, (size_t)(ds[i].n * d) * sizeof(float)),
                     "entry %d: rows differ after reading back", i);
    }
    CHECK(bank_find(b, "no-such-id") == NULL, "bank_find of an absent id");
    CHECK(bank_check_model(b, backbone, layer, err, sizeof err) == 0, "bank_check_model refuses its own model: %s", err);
    CHECK(bank_check_model(b, "arch=other", layer, err, sizeof err) == -1 && strstr(err, "another backbone"),
          "another backbone: '%s'", err);
    CHECK(bank_check_model(b, backbone, layer + 1, err, sizeof err) == -1 && strstr(err, "layer"),
          "another layer: '%s'", err);
    bank_close(b);
}

static void test_round_trip(void) {
    static const int64_t dims[] = {1, 7, 32};
    static const int counts[] = {0, 1, 5};
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) {
            char path[PATH_MAX];
            tmp_path("rt.bank", path, sizeof path);
            demo_rows *ds = random_demos(counts[j], dims[i]);
            const char *backbone = "arch=llava lm=llama d_model=7 weights=0123456789abcdef";
            if (write_bank(path, backbone, 1 + i, dims[i], ds, counts[j]) == 0)
                check_read_back(path, backbone, 1 + i, dims[i], ds, counts[j]);
            for (int k = 0; k < counts[j]; k++) free(ds[k].rows);
            free(ds);
        }
}

static void expect_add_error(bank_writer *w, const char *id, int64_t n, const float *rows, const char *want) {
    char err[512] = "";
    int rc = bank_writer_add(w, id, "", "t", rows, n, err, sizeof err);
    CHECK(rc == -1 && strstr(err, want), "bank_writer_add('%s', %lld rows): want '%s', got %d '%s'", id, (long long)n,
          want, rc, err);
}

static void test_writer_errors(void) {
    char path[PATH_MAX], err[512];
    tmp_path("errors.bank", path, sizeof path);
    float rows[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    bank_writer *w = bank_writer_open(path, "x", 0, 4, err, sizeof err);
    CHECK(w != NULL, "bank_writer_open: %s", err);
    if (!w) return;
    CHECK(bank_writer_add(w, "a", "", "t", rows, 2, err, sizeof err) == 0, "add: %s", err);
    expect_add_error(w, "a", 1, rows, "twice");
    expect_add_error(w, "b,c", 1, rows, "comma");
    expect_add_error(w, "", 1, rows, "1 to");
    expect_add_error(w, "b", 0, rows, "no rows");
    CHECK(bank_writer_finish(w, err, sizeof err) == 0, "finish after refused adds: %s", err);
    bank *b = bank_open(path, err, sizeof err);
    CHECK(b && b->count == 1 && b->total_rows == 2, "the refused adds left traces (%s)", b ? "" : err);
    bank_close(b);
    w = bank_writer_open("/nonexistent-dir-aimc/x.bank", "x", 0, 4, err, sizeof err);
    CHECK(!w && strstr(err, "/nonexistent-dir-aimc/x.bank"), "unwritable path: '%s'", err);
}

/* ---- damaged files ------------------------------------------------------------------------ */

static uint8_t *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *p = tl_alloc(*n);
    if (fread(p, 1, *n, f) != *n) *n = 0;
    fclose(f);
    return p;
}

static void write_all(const char *path, const uint8_t *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, n, f) != n) printf("FAIL: cannot write %s\n", path), exit(1);
    fclose(f);
}

static void expect_open_error(const char *what, const uint8_t *bytes, size_t n, const char *want1, const char *want2) {
    char path[PATH_MAX], err[1024] = "";
    tmp_path("damaged.bank", path, sizeof path);
    write_all(path, bytes, n);
    bank *b = bank_open(path, err, sizeof err);
    CHECK(!b && strstr(err, path) && (strstr(err, want1) || (want2 && strstr(err, want2))),
          "%s: want '%s', got '%s'", what, want1, b ? "(opened)" : err);
    bank_close(b);
}

static uint64_t le64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static void test_damaged(void) {
    char path[PATH_MAX];
    tmp_path("good.bank", path, sizeof path);
    demo_rows *ds = random_demos(3, 5);
    if (write_bank(path, "arch=llava weights=1", 2, 5, ds, 3)) return;
    size_t n;
    uint8_t *good = read_all(path, &n), *bad = tl_alloc(n + 16);
    uint64_t text_at = le64(good + 72), index_at = le64(good + 88);
    size_t cuts[] = {0, 7, 64, 127, 128, 131, (size_t)text_at + 2, (size_t)index_at + 10, n - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        char what[64];
        snprintf(what, sizeof what, "truncated at %zu of %zu", cuts[i], n);
        expect_open_error(what, good, cuts[i], "truncated", cuts[i] < 128 ? "not a demonstration bank" : NULL);
    }
    memcpy(bad, good, n);
    memset(bad + n, 0, 16);
    expect_open_error("16 extra bytes", bad, n + 16, "truncated or damaged", NULL);
    memcpy(bad, good, n), bad[0] = 'X';
    expect_open_error("another magic", bad, n, "not a demonstration bank", NULL);
    memcpy(bad, good, n), bad[8] = 2;
    expect_open_error("version 2", bad, n, "version 2", NULL);
    memcpy(bad, good, n), bad[text_at + 3] ^= 0x20;
    expect_open_error("a flipped text byte", bad, n, "corrupt", NULL);
    memcpy(bad, good, n), bad[index_at + 8] ^= 1;
    expect_open_error("a flipped index byte", bad, n, "corrupt", NULL);
    memcpy(bad, good, n), bad[index_at + 3 * 64 + 2] ^= 1; /* a character of an id in the pool: only the CRC sees it */
    expect_open_error("a flipped pool byte", bad, n, "checksum", NULL);
    memcpy(bad, good, n), bad[48] ^= 4; /* count */
    expect_open_error("another count", bad, n, "corrupt", "truncated");
    char png[PATH_MAX];
    fixture("images/wide.png", png, sizeof png);
    size_t pn;
    uint8_t *foreign = read_all(png, &pn);
    expect_open_error("a PNG file", foreign, pn, "not a demonstration bank", NULL);
    char err[512];
    CHECK(!bank_open("/nonexistent-aimc.bank", err, sizeof err) && strstr(err, "cannot open"), "missing file: '%s'", err);
    /* rows are not checksummed: a flipped row byte still opens (documented) */
    memcpy(bad, good, n), bad[128 + 5] ^= 1;
    write_all(path, bad, n);
    bank *b = bank_open(path, err, sizeof err);
    CHECK(b != NULL, "a flipped row byte is refused: %s", err);
    bank_close(b);
    free(foreign), free(good), free(bad);
    for (int i = 0; i < 3; i++) free(ds[i].rows);
    free(ds);
}

/* ---- on the models ------------------------------------------------------------------------- */

typedef struct model_case {
    const char *name;
    mllm *m;
    tokenizer *tok;
    preprocess_config pp;
} model_case;

static void load_case(model_case *mc, const char *name) {
    char path[PATH_MAX], err[1024];
    fixture(name, path, sizeof path);
    mc->name = name;
    mc->m = mllm_load(path, be, DT_F32);
    mc->tok = tokenizer_load(path, err, sizeof err);
    if (!mc->tok || preprocess_config_load(&mc->pp, path, err, sizeof err)) printf("FAIL: %s\n", err), exit(1);
}

static const char *const demo_images[] = {"images/tiny.png", "images/wide.png", "images/landscape.jpg"};
static const char *const demo_texts[] = {"a small red square", "a wide picture of the sea", "hills at dusk, quiet"};

static void load_item(const model_case *mc, episode_item *it, int i, int with_image) {
    char path[PATH_MAX], err[1024];
    fixture(demo_images[i], path, sizeof path);
    if (infer_item_load(it, with_image ? path : NULL, demo_texts[i], mc->tok, &mc->pp, demo_texts[i], err, sizeof err))
        printf("FAIL: %s\n", err), exit(1);
}

/* Host rows of a demonstration, by infer.c (what banks store) or aim.c. */
static float *hidden_rows(const model_case *mc, arena *a, const episode_item *it, int64_t layer, int by_aim) {
    size_t mark = a->used;
    projector dummy; /* aim_demo_hidden's model carries a projector; it is not run */
    projector_config pc = {.type = PROJ_LINEAR, .d_in = mllm_d_model(mc->m), .d_out = mllm_d_model(mc->m), .seed = 1};
    projector_init(&dummy, be, &pc);
    aim_model am = {.mllm = mc->m, .proj = &dummy, .layer = layer};
    infer_model im = {.m = mc->m, .layer = layer};
    tensor h = by_aim ? aim_demo_hidden(&am, a, it) : infer_demo_hidden(&im, a, it);
    float *host = infer_download_f32(a, &h);
    projector_free(&dummy);
    a->used = mark;
    return host;
}

static void test_rows_match_aim(const model_case *mc, arena *a) {
    int64_t layers = mllm_decoder(mc->m)->cfg.layers, d = mllm_d_model(mc->m);
    int64_t tries[3] = {0, 1, -1};
    for (int li = 0; li < 3; li++)
        for (int i = 0; i < 3; i++) {
            episode_item it;
            load_item(mc, &it, i, 1);
            float *mine = hidden_rows(mc, a, &it, tries[li], 0), *ref = hidden_rows(mc, a, &it, tries[li], 1);
            double e = rel_err_f32(mine, ref, it.n_tokens * d);
            CHECK(e <= 1e-5, "%s layer %lld/%lld demo %d: bank rows vs aim_demo_hidden rel %.3g", mc->name,
                  (long long)tries[li], (long long)layers, i, e);
            free(mine), free(ref);
            episode_item_free(&it);
        }
}

/* One k-shot AIM answer (prompt + greedy generation) and the passes it ran. */
typedef struct aim_run {
    int32_t *ids;
    int64_t n;
    float *prompt;               /* host copy of the prompt embeddings */
    uint64_t forwards, steps;    /* decoder_forward / decoder_step calls */
    uint64_t image_passes;       /* vision-tower passes */
} aim_run;

static aim_run run_aim(const model_case *mc, arena *a, const infer_model *im, const infer_demo *demos, int k,
                       const episode_item *q) {
    aim_run run = {0};
    size_t mark = a->used;
    decoder_counts c0 = decoder_counts_now();
    uint64_t img0 = mllm_image_passes();
    tensor prompt = infer_build_prompt(im, a, INFER_AIM, demos, k, q);
    gen_config c;
    gen_config_default(&c);
    c.max_new_tokens = 8;
    gen_result r;
    char err[256];
    if (gen_greedy(mllm_decoder(mc->m), a, &prompt, &c, &r, err, sizeof err)) printf("FAIL: %s\n", err), exit(1);
    decoder_counts c1 = decoder_counts_now();
    run.forwards = c1.forwards - c0.forwards, run.steps = c1.steps - c0.steps;
    run.image_passes = mllm_image_passes() - img0;
    run.prompt = infer_download_f32(a, &prompt);
    run.ids = tl_alloc((size_t)r.n * sizeof *run.ids);
    memcpy(run.ids, r.ids, (size_t)r.n * sizeof *run.ids);
    run.n = r.n;
    gen_result_free(&r);
    a->used = mark;
    return run;
}

static void aim_run_free(aim_run *r) { free(r->ids), free(r->prompt); }

/* The work a k-shot AIM answer must do, worked out from the method: without
 * a bank, each demonstration is aggregated alone (one LM forward and one
 * vision pass of its image); the query always costs one vision pass and the
 * greedy loop one decoder_step per generated token (the prefill yields the
 * first, each further step one more). With every demonstration's rows
 * given, no demonstration costs anything. */
static void check_work(const model_case *mc, const char *what, const aim_run *r, int k, int aggregated) {
    uint64_t want_fwd = aggregated ? (uint64_t)k : 0, want_img = (aggregated ? (uint64_t)k : 0) + 1;
    CHECK(r->forwards == want_fwd && r->image_passes == want_img && r->steps == (uint64_t)r->n,
          "%s, %s: %llu LM forwards, %llu vision passes, %llu decode steps for %lld tokens; want %llu, %llu, %lld",
          mc->name, what, (unsigned long long)r->forwards, (unsigned long long)r->image_passes,
          (unsigned long long)r->steps, (long long)r->n, (unsigned long long)want_fwd, (unsigned long long)want_img,
          (long long)r->n);
}

static void check_same_answer(const model_case *mc, const char *what, const aim_run *r, const aim_run *ref,
                              int64_t prompt_values) {
    double e = rel_err_f32(r->prompt, ref->prompt, prompt_values);
    CHECK(e <= 1e-5, "%s: AIM prompt %s vs raw demonstrations rel %.3g", mc->name, what, e);
    CHECK(r->n == ref->n && !memcmp(r->ids, ref->ids, (size_t)ref->n * sizeof *ref->ids),
          "%s: AIM %s generated other ids", mc->name, what);
}

static void test_bank_inference(const model_case *mc, arena *a) {
    int64_t d = mllm_d_model(mc->m), layer = decoder_hidden_index(mllm_decoder(mc->m), 1);
    char path[PATH_MAX], text[512], err[1024];
    tmp_path("model.bank", path, sizeof path);
    bank_backbone_text(mc->m, text, sizeof text);
    episode_item raw[4], bare[3];
    bank_writer *w = bank_writer_open(path, text, layer, d, err, sizeof err);
    float *fresh[3];
    for (int i = 0; i < 3; i++) {
        load_item(mc, &raw[i], i, 1);
        fresh[i] = hidden_rows(mc, a, &raw[i], layer, 0);
        char id[16];
        snprintf(id, sizeof id, "d%d", i);
        CHECK(w && bank_writer_add(w, id, demo_images[i], demo_texts[i], fresh[i], raw[i].n_tokens, err, sizeof err) == 0,
              "%s: adding to the bank: %s", mc->name, err);
    }
    CHECK(w && bank_writer_finish(w, err, sizeof err) == 0, "%s: finishing the bank: %s", mc->name, err);
    bank *b = bank_open(path, err, sizeof err);
    CHECK(b && bank_check_model(b, text, layer, err, sizeof err) == 0, "%s: reopening the bank: %s", mc->name, err);
    if (!b) return;
    /* demonstrations in the order d2, d0, d1: raw, from the bank without
     * images (no aggregation could run), and from the bank with their images
     * still loaded (only the pass counts show that none ran) */
    int order[3] = {2, 0, 1};
    infer_demo from_raw[3], from_bank[3], from_bank_img[3];
    for (int j = 0; j < 3; j++) {
        int i = order[j];
        char id[16];
        snprintf(id, sizeof id, "d%d", i);
        const bank_entry *e = bank_find(b, id);
        CHECK(e && !memcmp(bank_entry_rows(b, e), fresh[i], (size_t)(e->n_rows * d) * sizeof(float)),
              "%s: bank rows of %s differ from a fresh aggregation", mc->name, id);
        load_item(mc, &bare[j], i, 0);
        const float *rows = e ? bank_entry_rows(b, e) : fresh[i];
        from_raw[j] = (infer_demo){.item = &raw[i]};
        from_bank[j] = (infer_demo){.item = &bare[j], .hidden = rows};
        from_bank_img[j] = (infer_demo){.item = &raw[i], .hidden = rows};
    }
    char qpath[PATH_MAX];
    fixture("images/gray.png", qpath, sizeof qpath);
    if (infer_item_load(&raw[3], qpath, "Output:", mc->tok, &mc->pp, "query", err, sizeof err)) printf("FAIL: %s\n", err), exit(1);
    projector proj;
    projector_config pc = {.type = PROJ_LINEAR_LN, .d_in = d, .d_out = d, .ln_eps = 1e-5f, .seed = rng_u64()};
    projector_init(&proj, be, &pc);
    infer_model im = {.m = mc->m, .proj = &proj, .layer = layer};
    aim_run r_raw = run_aim(mc, a, &im, from_raw, 3, &raw[3]);
    aim_run r_bank = run_aim(mc, a, &im, from_bank, 3, &raw[3]);
    aim_run r_bank_img = run_aim(mc, a, &im, from_bank_img, 3, &raw[3]);
    int64_t values = infer_prompt_len(mc->m, INFER_AIM, from_raw, 3, &raw[3]) * d;
    check_work(mc, "raw demonstrations", &r_raw, 3, 1);
    check_work(mc, "bank", &r_bank, 3, 0);
    check_work(mc, "bank (images loaded)", &r_bank_img, 3, 0);
    check_same_answer(mc, "from the bank", &r_bank, &r_raw, values);
    check_same_answer(mc, "from the bank (images loaded)", &r_bank_img, &r_raw, values);
    aim_run_free(&r_raw), aim_run_free(&r_bank), aim_run_free(&r_bank_img);
    projector_free(&proj);
    bank_close(b);
    for (int i = 0; i < 3; i++) episode_item_free(&raw[i]), episode_item_free(&bare[i]), free(fresh[i]);
    episode_item_free(&raw[3]);
}

static void test_backbone_text(const model_case *llava, const model_case *blip2) {
    char a[512], b[512], c[512], path[PATH_MAX];
    bank_backbone_text(llava->m, a, sizeof a);
    bank_backbone_text(blip2->m, b, sizeof b);
    fixture("models/llava_oldkeys", path, sizeof path);
    mllm *old = mllm_load(path, be, DT_F32);
    bank_backbone_text(old, c, sizeof c);
    CHECK(!strcmp(a, c), "F16 and BF16 copies of the same weights: '%s' vs '%s'", a, c);
    CHECK(strcmp(a, b) && strstr(a, "arch=llava") && strstr(b, "arch=blip2") && strstr(a, "weights="),
          "LLaVA '%s' vs BLIP-2 '%s'", a, b);
    float *row0 = (float *)mllm_decoder(old)->embed.data; /* row 0 is always sampled */
    row0[3] += 0.5f;
    bank_backbone_text(old, c, sizeof c);
    CHECK(strcmp(a, c), "changing a sampled weight keeps the description '%s'", c);
    mllm_free(old);
}

int main(void) {
    tests_begin("test_bank");
    be = backend_cpu();
    if (!mkdtemp(tmpdir)) printf("FAIL: mkdtemp\n"), exit(1);
    test_round_trip();
    test_writer_errors();
    test_damaged();
    arena a;
    arena_init(&a, be, (size_t)64 << 20);
    model_case llava, blip2;
    load_case(&llava, "models/llava");
    load_case(&blip2, "models/blip2");
    test_backbone_text(&llava, &blip2);
    test_rows_match_aim(&llava, &a);
    test_rows_match_aim(&blip2, &a);
    test_bank_inference(&llava, &a);
    test_bank_inference(&blip2, &a);
    arena_free(&a);
    for (int i = 0; i < 2; i++) {
        model_case *mc = i ? &blip2 : &llava;
        tokenizer_free(mc->tok);
        mllm_free(mc->m);
    }
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd)) printf("note: could not remove %s\n", tmpdir);
    return tests_done();
}
