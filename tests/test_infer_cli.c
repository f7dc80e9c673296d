/* `aimc infer` and `aimc bank` end to end on the tiny LLaVA and BLIP-2
 * fixtures (the aimc binary next to this test's folder, run as a child
 * process), against the same computation done in this process through the
 * library (host/infer.h + host/generate.h):
 *  - zero-shot, icl (2 demonstrations) and aim (2 demonstrations, a
 *    projector checkpoint written here) on both models print the ids the
 *    library generates, and the same output on a second run;
 *  - an exported projector (aimc export -> .safetensors + .json, and the
 *    .json itself) answers like its checkpoint;
 *  - aimc bank build from a JSONL (one image path relative to the JSONL),
 *    bank info lists it, and infer --bank --demo-ids answers like --demo
 *    with the same demonstrations (aim and icl);
 *  - beam search with a stop string and the vqa template matches the
 *    library; configs/templates.conf equals the built-in templates, and a
 *    templates file can add one that --template then uses;
 *  - --help exits 0; an unknown flag, a bad --mode, missing --query-image,
 *    --demo with one value exit 2; a bank of another layer or backbone,
 *    an unknown demonstration id and aim demonstrations without a projector
 *    exit 1 with a line saying so. */
#include "testlib.h"
#include "model_fixture.h"
#include "cli_fixture.h"
#include "../host/checkpoint.h"
#include "../host/generate.h"
#include "../host/infer.h"
#include "../host/mllm.h"
#include <fcntl.h>
#include <limits.h>

static const backend *be;
static char tmpdir[] = "/tmp/aimc-test-infer-XXXXXX";
static char aimc[PATH_MAX + 16];

typedef struct path {
    char s[PATH_MAX + 128];
} path;

static path fixture(const char *rel) {
    path p;
    snprintf(p.s, sizeof p.s, "%s/tests/fixtures/%s", fx_repo_root(), rel);
    return p;
}

static path tmp(const char *name) {
    path p;
    snprintf(p.s, sizeof p.s, "%s/%s", tmpdir, name);
    return p;
}

/* ---- running aimc ------------------------------------------------------------------ */

typedef cli_out run_out;

/* aimc ARGS... (NULL-terminated) with stdout and stderr captured. */
static void run(run_out *r, const char *const *args) { cli_run(r, aimc, tmpdir, args); }

#define RUN(r, ...) run((r), (const char *const[]){__VA_ARGS__, NULL})

static const char *ids_line(const run_out *r) {
    const char *s = strstr(r->out, "\nids:");
    return s ? s + 1 : "(no ids line)";
}

/* ---- the library's answer ------------------------------------------------------------ */

typedef struct lib_model {
    const char *name;
    path dir;
    mllm *m;
    tokenizer *tok;
    preprocess_config pp;
} lib_model;

static void lib_load(lib_model *lm, const char *name) {
    char err[1024];
    lm->name = name;
    lm->dir = fixture(name);
    lm->m = mllm_load(lm->dir.s, be, DT_F32);
    lm->tok = tokenizer_load(lm->dir.s, err, sizeof err);
    if (!lm->tok || preprocess_config_load(&lm->pp, lm->dir.s, err, sizeof err)) printf("FAIL: %s\n", err), exit(1);
}

typedef struct lib_query {
    infer_mode mode;
    int k;
    const char *images[4], *texts[4]; /* k demonstrations */
    const char *query_image, *query_text;
    int beams;
    const char *stop;
    projector *proj;
    int64_t layer;
} lib_query;

/* "ids: 1 2 3\n" of the library's generation. */
static void lib_ids(const lib_model *lm, const lib_query *q, char *out, size_t n) {
    episode_item items[5];
    infer_demo demos[4];
    char err[1024];
    for (int i = 0; i <= q->k; i++) {
        const char *img = i < q->k ? q->images[i] : q->query_image, *text = i < q->k ? q->texts[i] : q->query_text;
        if (infer_item_load(&items[i], img, text, lm->tok, &lm->pp, "lib", err, sizeof err)) printf("FAIL: %s\n", err), exit(1);
        if (i < q->k) demos[i] = (infer_demo){.item = &items[i]};
    }
    arena a;
    arena_init(&a, be, (size_t)64 << 20);
    infer_model im = {.m = lm->m, .proj = q->proj, .layer = q->layer};
    tensor prompt = infer_build_prompt(&im, &a, q->mode, demos, q->k, &items[q->k]);
    gen_config c;
    gen_config_default(&c);
    c.max_new_tokens = 6, c.num_beams = q->beams ? q->beams : 1, c.tok = lm->tok;
    c.eos_id = tokenizer_special_id(lm->tok, "eos_token");
    const char *stops[1] = {q->stop};
    if (q->stop) c.stop = stops, c.n_stop = 1;
    gen_result r;
    if (gen_generate(mllm_decoder(lm->m), &a, &prompt, &c, &r, err, sizeof err)) printf("FAIL: %s\n", err), exit(1);
    size_t at = (size_t)snprintf(out, n, "ids:");
    for (int64_t i = 0; i < r.n && at < n; i++) at += (size_t)snprintf(out + at, n - at, " %d", r.ids[i]);
    snprintf(out + at, n - at, "\n");
    gen_result_free(&r);
    arena_free(&a);
    for (int i = 0; i <= q->k; i++) episode_item_free(&items[i]);
}

/* ---- a projector checkpoint ------------------------------------------------------------ */

static void write_checkpoint(const lib_model *lm, projector *p, const char *file, int64_t layer) {
    int64_t d = mllm_d_model(lm->m);
    projector_config pc = {.type = PROJ_MLP, .d_in = d, .d_out = d, .d_hidden = 24, .seed = rng_u64()};
    projector_init(p, be, &pc);
    const decoder *dec = mllm_decoder(lm->m);
    char backbone[512], desc[160], config[64], err[512];
    snprintf(backbone, sizeof backbone,
             "name=%s arch=%s lm=%s d_model=%lld layers=%lld vocab=%lld image_tokens=%lld layer=%lld", lm->name,
             lm->m->arch == MLLM_LLAVA ? "llava" : "blip2", dec->cfg.arch == DEC_LLAMA ? "llama" : "opt", (long long)d,
             (long long)dec->cfg.layers, (long long)dec->cfg.vocab, (long long)mllm_tokens_per_image(lm->m),
             (long long)layer);
    snprintf(config, sizeof config, "layer = %lld\n", (long long)layer);
    ckpt_tensor t[CKPT_PROJECTOR_MAX_TENSORS];
    int n = ckpt_projector_tensors(p, 0, t);
    ckpt_contents c = {.kind = CKPT_KIND_PARAMS, .step = 7, .backbone_text = backbone,
                       .projector_text = projector_describe(&pc, desc, sizeof desc), .config_text = config,
                       .tensors = t, .n_tensors = n};
    if (ckpt_write(file, &c, err, sizeof err)) printf("FAIL: %s\n", err), exit(1);
    ckpt_tensors_free(t, n);
}

/* ---- the cases ------------------------------------------------------------------------------ */

static path img1, img2, img3, qimg;

static void expect_same(const char *what, const run_out *r, const char *want_ids) {
    CHECK(r->rc == 0, "%s: exit %d: %s", what, r->rc, r->err);
    CHECK(!strcmp(ids_line(r), want_ids), "%s: CLI printed '%s', the library generates '%s'", what, ids_line(r), want_ids);
}

static void test_usage(const lib_model *llava) {
    run_out r;
    RUN(&r, "infer", "--help");
    CHECK(r.rc == 0 && strstr(r.out, "usage: aimc infer") && strstr(r.out, "--demo"), "infer --help: %d '%s'", r.rc, r.out);
    RUN(&r, "infer", "--model", llava->dir.s, "--bogus");
    CHECK(r.rc == 2 && strstr(r.err, "unknown option '--bogus'"), "bad flag: %d '%s'", r.rc, r.err);
    RUN(&r, "infer", "--model", llava->dir.s, "--query-image", qimg.s, "--mode", "fewshot");
    CHECK(r.rc == 2 && strstr(r.err, "--mode"), "bad mode: %d '%s'", r.rc, r.err);
    RUN(&r, "infer", "--model", llava->dir.s);
    CHECK(r.rc == 2 && strstr(r.err, "--query-image"), "no query: %d '%s'", r.rc, r.err);
    RUN(&r, "infer", "--model", llava->dir.s, "--query-image", qimg.s, "--demo", img1.s);
    CHECK(r.rc == 2 && strstr(r.err, "IMAGE TEXT"), "--demo with one value: %d '%s'", r.rc, r.err);
    RUN(&r, "bank", "--help");
    CHECK(r.rc == 0 && strstr(r.out, "aimc bank build"), "bank --help: %d", r.rc);
    RUN(&r, "bank", "frobnicate");
    CHECK(r.rc == 2, "bank frobnicate: exit %d", r.rc);
    RUN(&r, "bank", "build", "--bogus");
    CHECK(r.rc == 2 && strstr(r.err, "aimc bank build: error"), "bank build --bogus: %d '%s'", r.rc, r.err);
    RUN(&r, "infer", "--model", llava->dir.s, "--query-image", qimg.s, "--demo", img1.s, "a cat");
    CHECK(r.rc == 1 && strstr(r.err, "needs a trained projector"), "aim without projector: %d '%s'", r.rc, r.err);
}

static void test_modes(const lib_model *lm, projector *proj, const char *ckpt, int64_t layer) {
    char want[1024], what[128];
    run_out r, again;
    lib_query q = {.mode = INFER_ZERO_SHOT, .query_image = qimg.s, .query_text = "Output:", .layer = layer};
    lib_ids(lm, &q, want, sizeof want);
    RUN(&r, "infer", "--model", lm->dir.s, "--mode", "zero-shot", "--query-image", qimg.s, "--template", "caption",
        "--max-new-tokens", "6", "--show-ids");
    snprintf(what, sizeof what, "%s zero-shot", lm->name);
    expect_same(what, &r, want);
    RUN(&again, "infer", "--model", lm->dir.s, "--mode", "zero-shot", "--query-image", qimg.s, "--template", "caption",
        "--max-new-tokens", "6", "--show-ids");
    CHECK(!strcmp(r.out, again.out), "%s: a second run printed something else", what);
    CHECK(strstr(r.err, "mode zero-shot, 0 demonstrations"), "%s: stats line '%s'", what, r.err);

    q = (lib_query){.mode = INFER_ICL, .k = 2, .images = {img1.s, img2.s}, .texts = {"Output: a cat", "Output: the sea"},
                    .query_image = qimg.s, .query_text = "Output:", .layer = layer};
    lib_ids(lm, &q, want, sizeof want);
    RUN(&r, "infer", "--model", lm->dir.s, "--mode", "icl", "--demo", img1.s, "Output: a cat", "--demo", img2.s,
        "Output: the sea", "--query-image", qimg.s, "--template", "caption", "--max-new-tokens", "6", "--show-ids");
    snprintf(what, sizeof what, "%s icl", lm->name);
    expect_same(what, &r, want);

    q.mode = INFER_AIM, q.proj = proj;
    lib_ids(lm, &q, want, sizeof want);
    RUN(&r, "infer", "--model", lm->dir.s, "--projector", ckpt, "--demo", img1.s, "Output: a cat", "--demo", img2.s,
        "Output: the sea", "--query-image", qimg.s, "--template", "caption", "--max-new-tokens", "6", "--show-ids");
    snprintf(what, sizeof what, "%s aim (checkpoint)", lm->name);
    expect_same(what, &r, want);
    CHECK(strstr(r.err, "mode aim, 2 demonstrations"), "%s: stats line '%s'", what, r.err);
}

static void test_export(const lib_model *lm, const char *ckpt) {
    run_out ref, r;
    path st = tmp("exported.safetensors"), js = tmp("exported.json");
    RUN(&r, "export", ckpt, "--out", st.s);
    CHECK(r.rc == 0, "aimc export: %d %s", r.rc, r.err);
    const char *common[] = {"--demo", img1.s, "Output: a cat", "--query-image", qimg.s, "--max-new-tokens", "6", "--show-ids"};
    RUN(&ref, "infer", "--model", lm->dir.s, "--projector", ckpt, common[0], common[1], common[2], common[3], common[4],
        common[5], common[6], common[7]);
    RUN(&r, "infer", "--model", lm->dir.s, "--projector", st.s, common[0], common[1], common[2], common[3], common[4],
        common[5], common[6], common[7]);
    CHECK(ref.rc == 0 && r.rc == 0 && !strcmp(ref.out, r.out), "exported .safetensors answers '%s' (%s), checkpoint '%s'",
          r.out, r.err, ref.out);
    RUN(&r, "infer", "--model", lm->dir.s, "--projector", js.s, common[0], common[1], common[2], common[3], common[4],
        common[5], common[6], common[7]);
    CHECK(r.rc == 0 && !strcmp(ref.out, r.out), "exported .json answers '%s' (%s), checkpoint '%s'", r.out, r.err, ref.out);
    path bin = tmp("exported.aimc"), bjs = tmp("exported_bin.json");
    RUN(&r, "export", ckpt, "--out", bin.s, "--format", "bin");
    CHECK(r.rc == 0, "aimc export --format bin: %d %s", r.rc, r.err);
    rename(tmp("exported.json").s, bjs.s); /* the bin export's JSON replaced the safetensors one: keep it apart */
    RUN(&r, "infer", "--model", lm->dir.s, "--projector", bjs.s, common[0], common[1], common[2], common[3], common[4],
        common[5], common[6], common[7]);
    CHECK(r.rc == 0 && !strcmp(ref.out, r.out), "bin export's .json answers '%s' (%s), checkpoint '%s'", r.out, r.err,
          ref.out);
    RUN(&r, "infer", "--model", lm->dir.s, "--projector", ckpt, "--layer", "2", common[0], common[1], common[2],
        common[3], common[4], common[5], common[6], common[7]);
    CHECK(r.rc == 1 && strstr(r.err, "trained on layer 1"), "--layer against the projector's: %d '%s'", r.rc, r.err);
}

static void write_jsonl(const char *file) {
    FILE *f = fopen(file, "w");
    if (!f) printf("FAIL: cannot write %s\n", file), exit(1);
    fprintf(f, "{\"id\": \"d1\", \"image\": \"%s\", \"text\": \"Output: a cat\"}\n\n", img1.s);
    fprintf(f, "{\"id\": \"d2\", \"image\": \"linked.png\", \"text\": \"Output: the sea\"}\n"); /* relative */
    fprintf(f, "{\"id\": \"d3\", \"image\": \"%s\", \"text\": \"Output: hills\"}\n", img3.s);
    fclose(f);
    path link = tmp("linked.png");
    if (symlink(img2.s, link.s)) printf("FAIL: symlink %s\n", link.s), exit(1);
}

static void test_bank(const lib_model *llava, const lib_model *blip2, const char *ckpt) {
    path jsonl = tmp("demos.jsonl"), bank1 = tmp("l1.bank"), bank2 = tmp("l2.bank"), bankb = tmp("blip2.bank");
    write_jsonl(jsonl.s);
    run_out r, ref;
    RUN(&r, "bank", "build", "--model", llava->dir.s, "--layer", "1", "--demos", jsonl.s, "--out", bank1.s);
    CHECK(r.rc == 0 && strstr(r.out, "3 demonstrations"), "bank build: %d '%s' '%s'", r.rc, r.out, r.err);
    RUN(&r, "bank", "info", bank1.s);
    CHECK(r.rc == 0 && strstr(r.out, "layer 1") && strstr(r.out, "d2\t") && strstr(r.out, "Output: hills"),
          "bank info: %d '%s'", r.rc, r.out);
    const char *tail[] = {"--query-image", qimg.s, "--template", "caption", "--max-new-tokens", "6", "--show-ids"};
    for (int icl = 0; icl < 2; icl++) {
        const char *mode = icl ? "icl" : "aim";
        RUN(&ref, "infer", "--model", llava->dir.s, "--projector", ckpt, "--mode", mode, "--demo", img3.s,
            "Output: hills", "--demo", img2.s, "Output: the sea", tail[0], tail[1], tail[2], tail[3], tail[4], tail[5],
            tail[6]);
        RUN(&r, "infer", "--model", llava->dir.s, "--projector", ckpt, "--mode", mode, "--bank", bank1.s, "--demo-ids",
            "d3,d2", tail[0], tail[1], tail[2], tail[3], tail[4], tail[5], tail[6]);
        CHECK(ref.rc == 0 && r.rc == 0 && !strcmp(ref.out, r.out), "%s from the bank '%s' (%s) vs raw '%s' (%s)", mode,
              r.out, r.err, ref.out, ref.err);
    }
    RUN(&r, "bank", "build", "--model", llava->dir.s, "--layer", "-1", "--demos", jsonl.s, "--out", bank2.s);
    CHECK(r.rc == 0, "bank build --layer -1: %d %s", r.rc, r.err);
    RUN(&r, "infer", "--model", llava->dir.s, "--projector", ckpt, "--bank", bank2.s, "--demo-ids", "d1", tail[0],
        tail[1]);
    CHECK(r.rc == 1 && strstr(r.err, "layer 2") && strstr(r.err, "layer 1"), "bank of another layer: %d '%s'", r.rc,
          r.err);
    RUN(&r, "bank", "build", "--model", blip2->dir.s, "--layer", "1", "--demos", jsonl.s, "--out", bankb.s);
    CHECK(r.rc == 0, "bank build (blip2): %d %s", r.rc, r.err);
    RUN(&r, "infer", "--model", llava->dir.s, "--projector", ckpt, "--bank", bankb.s, "--demo-ids", "d1", tail[0],
        tail[1]);
    CHECK(r.rc == 1 && strstr(r.err, "another backbone"), "bank of another backbone: %d '%s'", r.rc, r.err);
    RUN(&r, "infer", "--model", llava->dir.s, "--projector", ckpt, "--bank", bank1.s, "--demo-ids", "d1,nope", tail[0],
        tail[1]);
    CHECK(r.rc == 1 && strstr(r.err, "'nope'"), "unknown id: %d '%s'", r.rc, r.err);
    path badl = tmp("bad.jsonl"), badb = tmp("bad.bank");
    FILE *f = fopen(badl.s, "w");
    fprintf(f, "{\"id\": \"a\", \"image\": \"%s\", \"text\": \"x\"}\n{\"id\": \"b\", \"image\": \"%s\"}\n", img1.s, img1.s);
    fclose(f);
    RUN(&r, "bank", "build", "--model", llava->dir.s, "--demos", badl.s, "--out", badb.s);
    CHECK(r.rc == 1 && strstr(r.err, "bad.jsonl:2") && strstr(r.err, "\"text\"") && access(badb.s, F_OK) != 0,
          "a JSONL line without text: %d '%s'", r.rc, r.err);
    f = fopen(badl.s, "w");
    fprintf(f, "{\"id\": \"a\", \"image\": \"%s\", \"text\": \"x\"}\n{\"id\": \"a\", \"image\": \"%s\", \"text\": \"y\"}\n",
            img1.s, img2.s);
    fclose(f);
    RUN(&r, "bank", "build", "--model", llava->dir.s, "--demos", badl.s, "--out", badb.s);
    CHECK(r.rc == 1 && strstr(r.err, "appears twice") && access(badb.s, F_OK) != 0, "a repeated id: %d '%s'", r.rc, r.err);
    RUN(&r, "bank", "info", jsonl.s);
    CHECK(r.rc == 1 && strstr(r.err, "not a demonstration bank"), "bank info on a JSONL: %d '%s'", r.rc, r.err);
}

static void test_beam_vqa(const lib_model *lm) {
    char want[1024];
    lib_query q = {.mode = INFER_ZERO_SHOT, .query_image = qimg.s,
                   .query_text = "Question:What is in the picture? Short answer:", .beams = 3, .stop = "e", .layer = -1};
    lib_ids(lm, &q, want, sizeof want);
    run_out r, again;
    RUN(&r, "infer", "--model", lm->dir.s, "--mode", "zero-shot", "--query-image", qimg.s, "--template", "vqa",
        "--prompt", "What is in the picture?", "--beams", "3", "--stop", "e", "--max-new-tokens", "6", "--show-ids");
    expect_same("beam search + vqa + stop", &r, want);
    RUN(&again, "infer", "--model", lm->dir.s, "--mode", "zero-shot", "--query-image", qimg.s, "--template", "vqa",
        "--prompt", "What is in the picture?", "--beams", "3", "--stop", "e", "--max-new-tokens", "6", "--show-ids");
    CHECK(!strcmp(r.out, again.out), "beam search: a second run printed something else");
    CHECK(!strchr(strtok(r.out, "\n") ? r.out : "", 'e'), "the answer '%s' still holds the stop string", r.out);
}

/* configs/templates.conf holds exactly the built-ins; a file can add a
 * template that the CLI then uses; filling replaces every placeholder. */
static void test_templates(const lib_model *lm) {
    infer_templates def, file;
    infer_templates_default(&def);
    infer_templates_default(&file);
    char conf[PATH_MAX + 64], err[512];
    snprintf(conf, sizeof conf, "%s/configs/templates.conf", fx_repo_root());
    CHECK(infer_templates_load(&file, conf, err, sizeof err) == 0, "configs/templates.conf: %s", err);
    CHECK(file.n == def.n, "configs/templates.conf has %d templates, the built-ins %d", file.n, def.n);
    for (int i = 0; i < def.n; i++) {
        const infer_template *t = infer_template_find(&file, def.t[i].name);
        CHECK(t && !strcmp(t->query, def.t[i].query) && !strcmp(t->demo, def.t[i].demo),
              "template %s in configs/templates.conf differs from the built-in", def.t[i].name);
    }
    const infer_template *v = infer_template_find(&def, "vqa");
    char *q = infer_template_fill(v->query, "Why?", NULL), *d = infer_template_fill(v->demo, "Why?", "because");
    CHECK(!strcmp(q, "Question:Why? Short answer:") && !strcmp(d, "Question:Why? Short answer:because"),
          "vqa filled: '%s' / '%s'", q, d);
    char *h = infer_template_fill(infer_template_find(&def, "hateful")->query, "{answer} x", NULL);
    CHECK(!strcmp(h, "is an image with: '{answer} x' written on it. Is it hateful? Answer:"),
          "a placeholder inside the prompt is not expanded again: '%s'", h);
    free(q), free(d), free(h);
    path custom = tmp("custom.conf");
    FILE *f = fopen(custom.s, "w");
    fprintf(f, "# mine\nshort-q = \"Q: {prompt} A:\"\nshort_q_demo = \"Q: {prompt} A: {answer}\"\n");
    fclose(f);
    CHECK(infer_templates_load(&file, custom.s, err, sizeof err) == 0 && infer_template_find(&file, "short_q") &&
              !strcmp(infer_template_find(&file, "short_q")->demo, "Q: {prompt} A: {answer}"),
          "custom template file: %s", err);
    infer_templates_free(&def), infer_templates_free(&file);
    char want[1024];
    lib_query lq = {.mode = INFER_ZERO_SHOT, .query_image = qimg.s, .query_text = "Q: what? A:", .layer = -1};
    lib_ids(lm, &lq, want, sizeof want);
    run_out r;
    RUN(&r, "infer", "--model", lm->dir.s, "--mode", "zero-shot", "--query-image", qimg.s, "--templates", custom.s,
        "--template", "short_q", "--prompt", "what?", "--max-new-tokens", "6", "--show-ids");
    expect_same("custom template", &r, want);
    RUN(&r, "infer", "--model", lm->dir.s, "--query-image", qimg.s, "--template", "nope");
    CHECK(r.rc == 2 && strstr(r.err, "--template nope"), "unknown template: %d '%s'", r.rc, r.err);
}

int main(void) {
    tests_begin("test_infer_cli");
    be = backend_cpu();
    cli_find_aimc(aimc, sizeof aimc);
    if (!mkdtemp(tmpdir)) printf("FAIL: mkdtemp\n"), exit(1);
    img1 = fixture("images/tiny.png"), img2 = fixture("images/wide.png"), img3 = fixture("images/landscape.jpg");
    qimg = fixture("images/gray.png");
    lib_model llava, blip2;
    lib_load(&llava, "models/llava");
    lib_load(&blip2, "models/blip2");
    projector pl, pb;
    path ckpt_l = tmp("llava.aimc"), ckpt_b = tmp("blip2.aimc");
    write_checkpoint(&llava, &pl, ckpt_l.s, 1);
    write_checkpoint(&blip2, &pb, ckpt_b.s, 1);

    test_usage(&llava);
    test_modes(&llava, &pl, ckpt_l.s, 1);
    test_modes(&blip2, &pb, ckpt_b.s, 1);
    test_export(&llava, ckpt_l.s);
    test_bank(&llava, &blip2, ckpt_l.s);
    test_beam_vqa(&llava);
    test_templates(&llava);

    projector_free(&pl), projector_free(&pb);
    for (int i = 0; i < 2; i++) {
        lib_model *lm = i ? &blip2 : &llava;
        tokenizer_free(lm->tok);
        mllm_free(lm->m);
    }
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd)) printf("note: could not remove %s\n", tmpdir);
    return tests_done();
}
