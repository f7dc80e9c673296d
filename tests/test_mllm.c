/* The multimodal models (host/mllm.h, host/qformer.h) and `aimc forward`
 * against transformers' outputs in tests/fixtures/models (written by
 * scripts/make_model_fixtures.py), on the cpu backend in f32:
 *  - LLaVA from three folders with the same numbers: llava/ (newer keys,
 *    F16, v5 config), a copy with config_v4.json as its config (v4
 *    spellings), llava_oldkeys/ (older keys, BF16, two shards, a minimal v4
 *    config whose absent keys must take transformers' defaults); also
 *    bf16 weight storage. BLIP-2 from blip2/.
 *  - the image path: vision tower output (BLIP-2: post_layernorm'd sequence),
 *    Q-Former output, image tokens (LLaVA image_features, BLIP-2
 *    language_projection_output), all rel err <= 1e-4; inputs_embeds;
 *  - the LM on the built inputs: every hidden_states[i] and the logits at
 *    the non-pad positions (rel <= 1e-4 per tensor), the loss (rel <= 1e-5),
 *    and d loss / d image tokens gathered from the decoder's input gradient
 *    (rel <= 1e-3);
 *  - `aimc forward` (cmd_forward called with an argv) on each fixture, the
 *    output file read back: logits, hidden_states (default and
 *    --hidden-layer), loss, image_features; CLIP's logits, embeds and loss;
 *    I32 input_ids; a BLIP-2 config without image_token_index (queries
 *    prepended; transformers' numbers for the same layout); a plain
 *    LlamaForCausalLM folder made from the LLaVA weights;
 *  - bad input ends with one "aimc: error:" line and exit status 1:
 *    truncated inputs, an unknown architecture, a config missing a
 *    required key, the wrong number of image tokens (run first, in forked
 *    children, before any OpenMP region starts in this process). */
#include "testlib.h"
#include "model_fixture.h"
#include "../host/commands.h"
#include "../host/mllm.h"
#include "../host/safetensors.h"
#include <cjson/cJSON.h>
#include <limits.h>
#include <sys/stat.h>

#define ARENA_BYTES ((size_t)64 << 20)

static const backend *be;
static char tmp_dir[64];

/* ---- files -------------------------------------------------------------- */

static fx_path fixture(const char *name) {
    return fx_join(fx_repo_dir("tests/fixtures/models").s, name);
}
static fx_path tmp_path(const char *name) { return fx_join(tmp_dir, name); }

static cJSON *read_json(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) printf("FAIL: cannot open %s\n", path), exit(1);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = tl_alloc((size_t)n + 1);
    text[fread(text, 1, (size_t)n, f)] = 0;
    fclose(f);
    cJSON *j = cJSON_Parse(text);
    free(text);
    if (!j) printf("FAIL: %s is not JSON\n", path), exit(1);
    return j;
}

/* dir/ as a copy of a fixture folder: config.json written from cfg, every
 * other file (weights) a symlink. */
static void make_model_copy(const char *dir, const char *from, const cJSON *cfg) {
    fx_link_weights(dir, fixture(from).s);
    fx_write_json(fx_join(dir, "config.json").s, cfg);
}

/* A fixture's config.json (or another json in its folder), parsed. */
static cJSON *fixture_json(const char *folder, const char *file) {
    return read_json(fx_join(fixture(folder).s, file).s);
}

/* ---- comparisons ------------------------------------------------------------ */

/* A tensor (f32) against an expected fixture tensor of the same size. */
static double vs_expected(const tensor *t, st_file *ex, const char *name, const int32_t *mask) {
    int64_t n;
    float *ref = fx_read_f32(ex, name, &n), *got = fx_download_f32(t);
    double err = n == tensor_numel(t)
                     ? fx_rel_rows(got, ref, mask, n / tensor_cols(t), tensor_cols(t))
                     : INFINITY;
    free(ref), free(got);
    return err;
}

/* ---- bad input (forked children) ---------------------------------------------- */

static const char *child_argv[12];

static void run_forward_child(void) {
    int argc = 0;
    while (child_argv[argc]) argc++;
    char *argv[12];
    for (int i = 0; i < argc; i++) argv[i] = (char *)child_argv[i];
    argv[argc] = NULL;
    exit(cmd_forward(argc, argv));
}

/* aimc forward --model model --inputs inputs must exit 1 with exactly one
 * line, "aimc: error: ..." containing want. */
static void expect_forward_error(const char *what, const char *model, const char *inputs,
                                 const char *want) {
    const char *argv[] = {"forward", "--model", model, "--inputs", inputs,
                          "--out", tmp_path("never.safetensors").s, NULL};
    memcpy(child_argv, argv, sizeof argv);
    char msg[2048];
    int rc = tl_run_child(run_forward_child, msg, sizeof msg);
    char *nl = strchr(msg, '\n');
    int one_line = nl && nl[1] == 0 && !strncmp(msg, "aimc: error: ", 13);
    CHECK(rc == 1 && one_line && strstr(msg, want),
          "%s: want exit 1 and one error line with '%s', got %d: %s", what, want, rc, msg);
    printf("bad input (%s): %s", what, msg);
}

static void copy_prefix(const char *src, const char *dst, double fraction) {
    FILE *f = fopen(src, "rb"), *g = fopen(dst, "wb");
    if (!f || !g) printf("FAIL: copying %s\n", src), exit(1);
    fseek(f, 0, SEEK_END);
    long n = ftell(f), keep = (long)((double)n * fraction);
    fseek(f, 0, SEEK_SET);
    char *buf = tl_alloc((size_t)n);
    if (fread(buf, 1, (size_t)n, f) != (size_t)n || fwrite(buf, 1, (size_t)keep, g) != (size_t)keep)
        printf("FAIL: copying %s\n", src), exit(1);
    free(buf);
    fclose(f), fclose(g);
}

/* Changes to a fixture's inputs: new input_ids (NULL: keep), `skip`
 * leading tokens dropped from every row tensor, input_ids stored as I32,
 * pixel_values left out. */
typedef struct input_edit {
    const int32_t *ids;
    int64_t skip;
    int ids32, no_pixels;
} input_edit;

static void write_inputs(const char *dst, const char *folder, const input_edit *e) {
    const int32_t *ids = e->ids;
    int64_t skip = e->skip;
    int ids32 = e->ids32;
    st_file *in = fx_open_st(fx_join(fixture(folder).s, "inputs.safetensors").s);
    st_writer *w = st_writer_new();
    for (int i = 0; i < st_count(in); i++) {
        const st_tensor *t = st_at(in, i);
        if (t->ndim != 2) { /* pixel_values */
            if (!e->no_pixels) st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data);
            continue;
        }
        int64_t b = t->shape[0], len = t->shape[1], n = len - skip;
        int32_t *v = fx_read_i32(in, t->name, NULL);
        if (ids && !strcmp(t->name, "input_ids")) memcpy(v, ids, (size_t)(b * len) * sizeof *v);
        int is_ids32 = ids32 && !strcmp(t->name, "input_ids");
        int64_t *v64 = tl_alloc((size_t)(b * n) * sizeof *v64);
        int32_t *v32 = tl_alloc((size_t)(b * n) * sizeof *v32);
        for (int64_t r = 0; r < b; r++)
            for (int64_t j = 0; j < n; j++) v64[r * n + j] = v32[r * n + j] = v[r * len + skip + j];
        st_writer_add(w, t->name, is_ids32 ? ST_I32 : ST_I64, 2, (int64_t[]){b, n},
                      is_ids32 ? (void *)v32 : (void *)v64);
        free(v), free(v64), free(v32);
    }
    char err[512];
    st_writer_metadata(w, "format", "pt");
    if (st_writer_save(w, dst, err, sizeof err)) printf("FAIL: %s\n", err), exit(1);
    st_writer_free(w);
    st_close(in);
}

static void load_unknown_arch(void) {
    mllm_load(tmp_path("unknown_arch").s, backend_cpu(), DT_F32);
}

static void check_bad_inputs(void) {
    fx_path llava_dir = fixture("llava"), inputs_file = fixture("llava/inputs.safetensors");
    const char *llava = llava_dir.s, *inputs = inputs_file.s;
    copy_prefix(inputs, tmp_path("truncated.safetensors").s, 0.6);
    expect_forward_error("truncated inputs", llava, tmp_path("truncated.safetensors").s,
                         "truncated.safetensors");

    cJSON *cfg = fixture_json("llava", "config.json");
    cJSON_ReplaceItemInObject(cfg, "model_type", cJSON_CreateString("llava_next"));
    make_model_copy(tmp_path("unknown_arch").s, "llava", cfg);
    cJSON_Delete(cfg);
    expect_forward_error("unknown architecture", tmp_path("unknown_arch").s, inputs, "llava_next");
    EXPECT_DIES(load_unknown_arch, 1, "model_type 'llava_next' is not a multimodal model");

    cfg = fixture_json("llava", "config.json");
    cJSON_DeleteItemFromObject(cJSON_GetObjectItem(cfg, "vision_config"), "hidden_size");
    make_model_copy(tmp_path("missing_key").s, "llava", cfg);
    cJSON_Delete(cfg);
    expect_forward_error("config missing a key", tmp_path("missing_key").s, inputs,
                         "vision_config.hidden_size");

    st_file *in = fx_open_st(inputs);
    int32_t *ids = fx_read_i32(in, "input_ids", NULL);
    ids[10] = 100; /* one <image> (1739, positions 6..21) replaced by a word */
    write_inputs(tmp_path("one_image_token_less.safetensors").s, "llava",
                 &(input_edit){.ids = ids});
    free(ids);
    st_close(in);
    expect_forward_error("wrong number of image tokens", llava,
                         tmp_path("one_image_token_less.safetensors").s, "image tokens");
    expect_forward_error("missing inputs file", llava, tmp_path("absent.safetensors").s,
                         "absent.safetensors");
}

/* ---- parity through the API ------------------------------------------------------ */

typedef struct parity_case {
    const char *name;
    fx_path dir;      /* the model folder */
    const char *data; /* the fixture folder with inputs / expected */
    dtype wdt;
} parity_case;

typedef struct batch {
    st_file *in, *ex;
    int64_t B, T;
    int32_t *ids, *mask, *labels;
    tensor px; /* host f32 */
} batch;

static void batch_open(batch *b, const char *data) {
    b->in = fx_open_st(fx_join(fixture(data).s, "inputs.safetensors").s);
    b->ex = fx_open_st(fx_join(fixture(data).s, "expected.safetensors").s);
    const st_tensor *ids = st_find(b->in, "input_ids");
    b->B = ids->shape[0];
    b->T = ids->shape[1];
    b->ids = fx_read_i32(b->in, "input_ids", NULL);
    b->mask = fx_read_i32(b->in, "attention_mask", NULL);
    b->labels = fx_read_i32(b->in, "labels", NULL);
    const st_tensor *px = st_find(b->in, "pixel_values");
    float *pix = fx_read_f32(b->in, "pixel_values", NULL);
    b->px = tensor_wrap(pix, DT_F32, backend_cpu(), 4, px->shape);
}

static void batch_close(batch *b) {
    free(b->ids), free(b->mask), free(b->labels), free(b->px.data);
    st_close(b->in), st_close(b->ex);
}

static void check_queries(const parity_case *c, const mllm *m) {
    int llava = m->arch == MLLM_LLAVA;
    int ok = llava ? mllm_d_model(m) == 32 && mllm_tokens_per_image(m) == 16 &&
                         mllm_image_token_id(m) == 1739 && mllm_bos_id(m) == 1 &&
                         mllm_native_layout(m) == MLLM_LAYOUT_BOS_IMAGE && m->pad_id == 1740
                   : mllm_d_model(m) == 40 && mllm_tokens_per_image(m) == 8 &&
                         mllm_image_token_id(m) == 1501 && mllm_bos_id(m) == 2 &&
                         mllm_native_layout(m) == MLLM_LAYOUT_IMAGE_BOS && m->pad_id == 1;
    ok = ok && m->lm->embed.dt == c->wdt && m->vision->patch_w.dt == c->wdt;
    CHECK(ok && mllm_decoder(m) == m->lm,
          "%s: queries d_model %lld, tokens/image %lld, image id %d, bos %d, pad %d, layout %d",
          c->name, (long long)mllm_d_model(m), (long long)mllm_tokens_per_image(m),
          (int)mllm_image_token_id(m), (int)mllm_bos_id(m), (int)m->pad_id,
          (int)mllm_native_layout(m));
}

/* Vision tower, Q-Former and image tokens; returns the image tokens. */
static tensor check_image_path(const parity_case *c, const mllm *m, arena *a, batch *b) {
    double e_vis, e_q = 0;
    size_t mark = a->used;
    if (m->arch == MLLM_LLAVA) {
        tensor h = vit_forward(m->vision, a, &b->px, -2, 0);
        e_vis = vs_expected(&h, b->ex, "vision_hidden_states.2", NULL);
    } else {
        tensor h = vit_forward(m->vision, a, &b->px, -1, 1);
        e_vis = vs_expected(&h, b->ex, "vision_last_hidden_state", NULL);
        tensor q = qformer_forward(m->qformer, a, &h);
        e_q = vs_expected(&q, b->ex, "qformer_last_hidden_state", NULL);
    }
    a->used = mark;
    tensor img = mllm_image_tokens(m, a, &b->px);
    const char *key = m->arch == MLLM_LLAVA ? "image_features" : "language_projection_output";
    double e_img = vs_expected(&img, b->ex, key, NULL);
    CHECK(e_vis <= 1e-4 && e_q <= 1e-4 && e_img <= 1e-4,
          "%s: vision rel err %.2e, qformer %.2e, %s %.2e", c->name, e_vis, e_q, key, e_img);
    printf("%s: vision tower rel err %.2e, %s%.2e%s %s %.2e\n", c->name, e_vis,
           m->arch == MLLM_BLIP2 ? "qformer_last_hidden_state " : "", e_q,
           m->arch == MLLM_BLIP2 ? "," : " (no Q-Former),", key, e_img);
    return img;
}

static void check_hidden_states(const parity_case *c, const mllm *m, arena *a, batch *b,
                                const tensor *embeds) {
    int64_t L = m->lm->cfg.layers;
    double worst = 0;
    for (int64_t i = 0; i <= L; i++) {
        size_t mark = a->used;
        decoder_pass p;
        decoder_fwd_opts o = {.want_hidden = 1, .hidden_layer = i};
        decoder_forward(m->lm, a, embeds, b->mask, &o, &p);
        char key[40];
        snprintf(key, sizeof key, "hidden_states.%lld", (long long)i);
        double e = vs_expected(&p.hidden, b->ex, key, b->mask);
        CHECK(e <= 1e-4, "%s: %s rel err %.2e", c->name, key, e);
        worst = fmax(worst, e);
        decoder_pass_release(&p);
        a->used = mark;
    }
    printf("%s: hidden_states[0..%lld] at non-pad positions: max rel err %.2e\n", c->name,
           (long long)L, worst);
}

/* Logits, loss and d loss / d image tokens (from the decoder's input
 * gradient, gathered at the image rows). */
static void check_loss_and_grad(const parity_case *c, const mllm *m, arena *a, batch *b,
                                const tensor *embeds) {
    size_t mark = a->used;
    decoder_pass p;
    decoder_fwd_opts o = {.want_logits = 1, .for_backward = 1};
    decoder_forward(m->lm, a, embeds, b->mask, &o, &p);
    double e_logits = vs_expected(&p.logits, b->ex, "logits", b->mask);
    tensor dlogits = arena_tensor(a, DT_F32, 3, p.logits.shape);
    fx_poison_tensor(&dlogits);
    double loss = decoder_lm_loss(a, &p.logits, b->labels, b->T, &dlogits);
    tensor d_embeds = arena_tensor(a, DT_F32, 3, embeds->shape);
    fx_poison_tensor(&d_embeds);
    decoder_backward(m->lm, a, &p, &dlogits, NULL, &d_embeds);
    tensor d_img = mllm_gather_image_rows(m, a, b->ids, b->B, b->T, &d_embeds);
    const char *key = m->arch == MLLM_LLAVA ? "image_features_grad"
                                            : "language_projection_output_grad";
    double e_grad = vs_expected(&d_img, b->ex, key, NULL);
    float *ref_loss = fx_read_f32(b->ex, "loss", NULL);
    double e_loss = fabs(loss - ref_loss[0]) / fabs(ref_loss[0]);
    CHECK(e_logits <= 1e-4, "%s: logits rel err %.2e", c->name, e_logits);
    CHECK(e_loss <= 1e-5, "%s: loss %.8f vs %.8f (rel %.2e)", c->name, loss, ref_loss[0], e_loss);
    CHECK(e_grad <= 1e-3 && d_img.shape[0] == b->B, "%s: %s rel err %.2e", c->name, key, e_grad);
    printf("%s: logits rel err %.2e, loss %.7f vs %.7f (rel %.2e), %s rel err %.2e\n", c->name,
           e_logits, loss, ref_loss[0], e_loss, key, e_grad);
    free(ref_loss);
    decoder_pass_release(&p);
    a->used = mark;
}

static void check_parity(const parity_case *c) {
    mllm *m = mllm_load(c->dir.s, be, c->wdt);
    check_queries(c, m);
    arena a;
    arena_init(&a, be, ARENA_BYTES);
    batch b;
    batch_open(&b, c->data);
    tensor img = check_image_path(c, m, &a, &b);
    tensor embeds = mllm_build_inputs(m, &a, b.ids, b.B, b.T, &img);
    double e_in = vs_expected(&embeds, b.ex, "inputs_embeds", NULL);
    CHECK(e_in <= 1e-4 && mllm_input_len(m, b.T) == b.T, "%s: inputs_embeds rel err %.2e",
          c->name, e_in);
    check_hidden_states(c, m, &a, &b, &embeds);
    check_loss_and_grad(c, m, &a, &b, &embeds);
    batch_close(&b);
    arena_free(&a);
    mllm_free(m);
}

/* ---- aimc forward end to end ------------------------------------------------------- */

static void run_cli(const char *model, const char *inputs, const char *out, const char *layer) {
    char *argv[12];
    int argc = 0;
    const char *args[] = {"forward", "--model", model, "--inputs", inputs, "--out", out};
    for (size_t i = 0; i < sizeof args / sizeof args[0]; i++) argv[argc++] = (char *)args[i];
    if (layer) argv[argc++] = "--hidden-layer", argv[argc++] = (char *)layer;
    argv[argc] = NULL;
    int rc = cmd_forward(argc, argv);
    CHECK(rc == 0, "aimc forward --model %s: exit %d", model, rc);
}

/* LLaVA / BLIP-2 through the CLI, with the default and an explicit layer. */
static void check_cli_mllm(const char *name, const char *model, const char *data,
                           const char *inputs, const char *img_key) {
    batch b;
    batch_open(&b, data);
    fx_path out_file = tmp_path("out.safetensors");
    const char *out = out_file.s;
    const char *layers[] = {NULL, "1", "-3"}, *keys[] = {"hidden_states.2", "hidden_states.1",
                                                          "hidden_states.0"};
    for (int k = 0; k < 3; k++) {
        unlink(out);
        run_cli(model, inputs, out, layers[k]);
        st_file *o = fx_open_st(out);
        int64_t rows = b.B * b.T;
        double e_log = fx_out_vs(o, "logits", b.ex, "logits", b.mask, rows);
        double e_hid = fx_out_vs(o, "hidden_states", b.ex, keys[k], b.mask, rows);
        double e_img = fx_out_vs(o, "image_features", b.ex, img_key, NULL, 1);
        double e_loss = fx_out_vs(o, "loss", b.ex, "loss", NULL, 1);
        const st_tensor *lt = st_find(o, "loss");
        CHECK(e_log <= 1e-4 && e_hid <= 1e-4 && e_img <= 1e-4 && e_loss <= 1e-5 && lt &&
                  lt->ndim == 0,
              "%s: aimc forward (--hidden-layer %s): logits %.2e, %s %.2e, image %.2e, loss %.2e",
              name, layers[k] ? layers[k] : "default", e_log, keys[k], e_hid, e_img, e_loss);
        if (k == 0)
            printf("%s: aimc forward: logits rel err %.2e, hidden_states %.2e, image_features "
                   "%.2e, loss %.2e\n",
                   name, e_log, e_hid, e_img, e_loss);
        st_close(o);
    }
    batch_close(&b);
}

static void check_cli_clip(void) {
    fx_path out_file = tmp_path("clip_out.safetensors");
    const char *out = out_file.s;
    run_cli(fixture("clip").s, fixture("clip/inputs.safetensors").s, out, NULL);
    st_file *o = fx_open_st(out), *ex = fx_open_st(fixture("clip/expected.safetensors").s);
    static const char *names[][2] = {{"logits_per_image", "logits_per_image"},
                                     {"logits_per_text", "logits_per_text"},
                                     {"text_embeds", "text_embeds"},
                                     {"image_embeds", "image_embeds"},
                                     {"loss", "loss"},
                                     {"text_hidden_states", "text_hidden_states.2"},
                                     {"vision_hidden_states", "vision_hidden_states.2"}};
    double worst = 0;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        double e = fx_out_vs(o, names[i][0], ex, names[i][1], NULL, 1);
        CHECK(e <= 1e-4, "clip: aimc forward %s rel err %.2e", names[i][0], e);
        worst = fmax(worst, e);
    }
    printf("clip: aimc forward: logits, embeds, loss, hidden states: max rel err %.2e\n", worst);
    st_close(o), st_close(ex);
}

/* BLIP-2 without image_token_index: the 8 queries are prepended, so the
 * fixture's ids minus their 8 leading <image> tokens give the same logits. */
static void check_cli_blip2_prepend(void) {
    cJSON *cfg = fixture_json("blip2", "config.json");
    cJSON_DeleteItemFromObject(cfg, "image_token_index");
    make_model_copy(tmp_path("blip2_prepend").s, "blip2", cfg);
    cJSON_Delete(cfg);
    write_inputs(tmp_path("blip2_text.safetensors").s, "blip2",
                 &(input_edit){.skip = 8, .ids32 = 1});
    fx_path out_file = tmp_path("prepend_out.safetensors");
    const char *out = out_file.s;
    run_cli(tmp_path("blip2_prepend").s, tmp_path("blip2_text.safetensors").s, out, NULL);
    batch b;
    batch_open(&b, "blip2");
    st_file *o = fx_open_st(out);
    double e_log = fx_out_vs(o, "logits", b.ex, "logits", b.mask, b.B * b.T);
    double e_loss = fx_out_vs(o, "loss", b.ex, "loss", NULL, 1);
    CHECK(e_log <= 1e-4 && e_loss <= 1e-5,
          "blip2 (queries prepended): logits rel err %.2e, loss %.2e", e_log, e_loss);
    printf("blip2 without image_token_index (queries prepended, I32 ids): logits rel err %.2e, "
           "loss %.2e\n",
           e_log, e_loss);
    st_close(o);
    batch_close(&b);
}

/* dir/model.safetensors: the tensors of a fixture's weights file renamed
 * by prefix rules {from, to} (the first that matches); others dropped. */
static void rewrite_weights(const char *dir, const char *src, const char *const (*rules)[2],
                            int n_rules) {
    mkdir(dir, 0755);
    st_file *in = fx_open_st(fixture(src).s);
    st_writer *w = st_writer_new();
    for (int i = 0; i < st_count(in); i++) {
        const st_tensor *t = st_at(in, i);
        for (int r = 0; r < n_rules; r++) {
            size_t n = strlen(rules[r][0]);
            if (strncmp(t->name, rules[r][0], n)) continue;
            char name[256];
            snprintf(name, sizeof name, "%s%s", rules[r][1], t->name + n);
            st_writer_add(w, name, t->dtype, t->ndim, t->shape, t->data);
            break;
        }
    }
    char err[512];
    if (st_writer_save(w, fx_join(dir, "model.safetensors").s, err, sizeof err))
        printf("FAIL: %s\n", err), exit(1);
    st_writer_free(w);
    st_close(in);
}

/* The layout transformers v5's save_pretrained writes for LLaVA: older
 * language_model.* names, the vision tower without ".vision_model". */
static void make_v5_layout_copy(void) {
    static const char *const rules[][2] = {
        {"model.vision_tower.vision_model.", "vision_tower."},
        {"model.language_model.", "language_model.model."},
        {"lm_head.", "language_model.lm_head."},
        {"model.multi_modal_projector.", "multi_modal_projector."},
    };
    fx_path dir = tmp_path("llava_v5_layout");
    rewrite_weights(dir.s, "llava/model.safetensors", rules, 4);
    cJSON *cfg = fixture_json("llava", "config.json");
    fx_write_json(fx_join(dir.s, "config.json").s, cfg);
    cJSON_Delete(cfg);
}

/* LLaVA's language model as a plain LlamaForCausalLM folder (model.*,
 * lm_head.weight). */
static void make_plain_llama(const char *dir) {
    static const char *const rules[][2] = {{"model.language_model.", "model."},
                                           {"lm_head.", "lm_head."}};
    rewrite_weights(dir, "llava/model.safetensors", rules, 2);
    cJSON *cfg = fixture_json("llava", "config.json");
    cJSON *text = cJSON_DetachItemFromObject(cfg, "text_config");
    cJSON_AddItemToObject(text, "architectures", cJSON_CreateStringArray(
                                                     (const char *[]){"LlamaForCausalLM"}, 1));
    fx_write_json(fx_join(dir, "config.json").s, text);
    cJSON_Delete(text), cJSON_Delete(cfg);
}

/* aimc forward on text-only ids against the same decoder run through the
 * API on the LLaVA folder. */
static void check_cli_plain_llama(void) {
    make_plain_llama(tmp_path("llama_plain").s);
    batch b;
    batch_open(&b, "llava");
    for (int64_t i = 0; i < b.B * b.T; i++)
        if (b.ids[i] == 1739) b.ids[i] = (int32_t)(3 + i % 1000); /* text only */
    write_inputs(tmp_path("text_only.safetensors").s, "llava",
                 &(input_edit){.ids = b.ids, .no_pixels = 1});
    fx_path out_file = tmp_path("llama_out.safetensors");
    const char *out = out_file.s;
    run_cli(tmp_path("llama_plain").s, tmp_path("text_only.safetensors").s, out, "1");
    /* the reference: the LLaVA folder's decoder through the API */
    mllm *m = mllm_load(fixture("llava").s, be, DT_F32);
    arena a;
    arena_init(&a, be, ARENA_BYTES);
    tensor e = mllm_build_inputs(m, &a, b.ids, b.B, b.T, NULL);
    decoder_pass p;
    decoder_fwd_opts fo = {.want_logits = 1, .want_hidden = 1, .hidden_layer = 1};
    decoder_forward(m->lm, &a, &e, b.mask, &fo, &p);
    float *ref_l = fx_download_f32(&p.logits), *ref_h = fx_download_f32(&p.hidden);
    double ref_loss = decoder_lm_loss(&a, &p.logits, b.labels, b.T, NULL);
    st_file *o = fx_open_st(out);
    float *got_l = fx_read_f32(o, "logits", NULL), *got_h = fx_read_f32(o, "hidden_states", NULL);
    float *got_loss = fx_read_f32(o, "loss", NULL);
    double e_l = fx_rel_rows(got_l, ref_l, b.mask, b.B * b.T, m->lm->cfg.vocab);
    double e_h = fx_rel_rows(got_h, ref_h, b.mask, b.B * b.T, m->lm->cfg.hidden);
    double e_loss = fabs(got_loss[0] - ref_loss) / fabs(ref_loss);
    CHECK(e_l <= 1e-6 && e_h <= 1e-6 && e_loss <= 1e-6,
          "plain llama: logits %.2e, hidden_states.1 %.2e, loss %.2e", e_l, e_h, e_loss);
    printf("plain LlamaForCausalLM folder: aimc forward vs the LLaVA decoder: logits %.2e, "
           "hidden_states.1 %.2e, loss %.2e\n",
           e_l, e_h, e_loss);
    free(ref_l), free(ref_h), free(got_l), free(got_h), free(got_loss);
    st_close(o);
    decoder_pass_release(&p);
    arena_free(&a);
    mllm_free(m);
    batch_close(&b);
}

static void check_cli(void) {
    fx_path llava_in = fixture("llava/inputs.safetensors");
    check_cli_mllm("llava", fixture("llava").s, "llava", llava_in.s, "image_features");
    check_cli_mllm("llava_oldkeys", fixture("llava_oldkeys").s, "llava", llava_in.s,
                   "image_features");
    check_cli_mllm("blip2", fixture("blip2").s, "blip2", fixture("blip2/inputs.safetensors").s,
                   "language_projection_output");
    check_cli_clip();
    check_cli_blip2_prepend();
    check_cli_plain_llama();
}

/* ---- main --------------------------------------------------------------------------- */

static void make_v4_copy(void) {
    cJSON *cfg = fixture_json("llava", "config_v4.json");
    make_model_copy(tmp_path("llava_v4").s, "llava", cfg);
    cJSON_Delete(cfg);
}

int main(void) {
    tests_begin("mllm");
    be = backend_cpu();
    snprintf(tmp_dir, sizeof tmp_dir, "/tmp/aimc_test_mllm_XXXXXX");
    if (!mkdtemp(tmp_dir)) printf("FAIL: mkdtemp\n"), exit(1);
    check_bad_inputs(); /* forks: before any OpenMP region */
    make_v4_copy();
    make_v5_layout_copy();
    const parity_case cases[] = {
        {"llava", fixture("llava"), "llava", DT_F32},
        {"llava (config_v4)", tmp_path("llava_v4"), "llava", DT_F32},
        {"llava (v5 save layout)", tmp_path("llava_v5_layout"), "llava", DT_F32},
        {"llava_oldkeys", fixture("llava_oldkeys"), "llava", DT_F32},
        {"llava_oldkeys (bf16 weights)", fixture("llava_oldkeys"), "llava", DT_BF16},
        {"blip2", fixture("blip2"), "blip2", DT_F32},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_parity(&cases[i]);
    check_cli();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_dir);
    if (system(cmd)) printf("note: could not remove %s\n", tmp_dir);
    return tests_done();
}
