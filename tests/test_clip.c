/* CLIP and the shared vision transformer against transformers' own outputs
 * (tests/fixtures/models/{clip,llava,blip2}: tiny random-weight models made by
 * scripts/make_model_fixtures.py): every output of the CLIP fixture, the
 * LLaVA vision tower's hidden states (vision_feature_layer -2 included) and
 * BLIP-2's EVA tower, within rel err 1e-4 per tensor (loss 1e-5). Also a
 * sub-batch (batch independence), LLaVA's tower in the transformers v4 key
 * layout (vision_tower.vision_model.*, sharded), BLIP-2 weights rewritten with separate
 * q_bias / v_bias, and bad inputs (missing config key, wrong-shaped weight,
 * wrong pixel size, out-of-vocabulary id, layer out of range), each of which
 * must be one error line and exit status 1. */
#include "../host/clip.h"
#include "../host/vit.h"
#include "../kernels/check.h"
#include "testlib.h"
#include <cjson/cJSON.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define FIXTURES "tests/fixtures/models"
#define TOL 1e-4
#define LOSS_TOL 1e-5
#define ARENA_BYTES ((size_t)16 << 20)

static const backend *be;

/* ---- fixture files ------------------------------------------------------ */

static st_file *open_st(const char *dir, const char *file) {
    char path[512], err[512];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    st_file *f = st_open(path, err, sizeof err);
    if (!f) {
        printf("FAIL: %s\n", err);
        exit(1);
    }
    return f;
}

/* A named tensor of a fixture file as f32 (NULL when absent); numel in *n. */
static float *read_f32(const st_file *f, const char *name, int64_t *n) {
    const st_tensor *t = st_find(f, name);
    if (!t) return NULL;
    int64_t count = 1;
    for (int i = 0; i < t->ndim; i++) count *= t->shape[i];
    float *v = tl_alloc((size_t)count * sizeof *v);
    char err[256];
    if (t->dtype == ST_I64 || t->dtype == ST_I32) {
        int32_t *iv = tl_alloc((size_t)count * sizeof *iv);
        if (st_read_i32(t, iv, err, sizeof err)) printf("FAIL: %s\n", err), exit(1);
        for (int64_t i = 0; i < count; i++) v[i] = (float)iv[i];
        free(iv);
    } else if (st_read_f32(t, v, err, sizeof err)) {
        printf("FAIL: %s\n", err);
        exit(1);
    }
    if (n) *n = count;
    return v;
}

static int32_t *read_i32(const st_file *f, const char *name, int64_t *shape2) {
    const st_tensor *t = st_find(f, name);
    if (!t || t->ndim != 2) printf("FAIL: fixture tensor %s missing or not 2-D\n", name), exit(1);
    int32_t *v = tl_alloc((size_t)(t->shape[0] * t->shape[1]) * sizeof *v);
    char err[256];
    if (st_read_i32(t, v, err, sizeof err)) printf("FAIL: %s\n", err), exit(1);
    shape2[0] = t->shape[0];
    shape2[1] = t->shape[1];
    return v;
}

static model_dir *open_model(const char *dir) {
    char err[512];
    model_dir *md = model_dir_open(dir, err, sizeof err);
    if (!md) printf("FAIL: %s\n", err), exit(1);
    return md;
}

/* Host f32 copy of a backend tensor (caller frees). */
static float *download(const tensor *t) {
    int64_t n = tensor_numel(t);
    float *v = tl_alloc((size_t)n * sizeof *v);
    if (t->dt == DT_F32) {
        t->be->download(v, t->data, (size_t)n * sizeof *v);
        return v;
    }
    uint16_t *h = tl_alloc((size_t)n * 2);
    t->be->download(h, t->data, (size_t)n * 2);
    for (int64_t i = 0; i < n; i++) v[i] = load_as_f32(h, t->dt, i);
    free(h);
    return v;
}

/* Arena whose memory starts as NaN: a value the model forgets to write fails. */
static void fresh_arena(arena *a) {
    a->used = 0;
    memset(a->base, 0xff, a->cap);
}

/* rel err of out against the fixture tensor `name` (which must exist and
 * have out's numel); rows_keep (may be NULL) selects rows of width `cols`. */
static double compare(const st_file *exp, const char *name, const tensor *out,
                      const float *rows_keep, int64_t cols) {
    int64_t n = 0;
    float *ref = read_f32(exp, name, &n);
    if (!ref) {
        printf("FAIL: expected tensor %s missing from the fixture\n", name);
        return INFINITY;
    }
    if (n != tensor_numel(out)) {
        printf("FAIL: %s: %lld values expected, aimc gave %lld\n", name, (long long)n,
               (long long)tensor_numel(out));
        free(ref);
        return INFINITY;
    }
    float *got = download(out);
    int64_t kept = 0;
    if (rows_keep) { /* compact the kept rows to the front of both arrays */
        for (int64_t r = 0; r < n / cols; r++)
            if (rows_keep[r] != 0) {
                memmove(ref + kept * cols, ref + r * cols, (size_t)cols * sizeof *ref);
                memmove(got + kept * cols, got + r * cols, (size_t)cols * sizeof *got);
                kept++;
            }
        n = kept * cols;
    }
    double e = rel_err_f32(got, ref, n);
    free(ref);
    free(got);
    return e;
}

static void check_tensor(const char *model, const st_file *exp, const char *name,
                         const tensor *out, const float *rows_keep, int64_t cols, double tol) {
    double e = compare(exp, name, out, rows_keep, cols);
    printf("  %-6s %-28s rel err %.2e\n", model, name, e);
    CHECK(e <= tol, "%s %s: rel err %.3e > %.0e", model, name, e, tol);
}

/* ---- CLIP --------------------------------------------------------------- */

typedef struct clip_inputs {
    float *pixels, *mask;
    int32_t *ids;
    int64_t n_img, n_txt, n_tok, px_shape[4];
} clip_inputs;

static clip_inputs read_clip_inputs(const char *dir) {
    clip_inputs in = {0};
    st_file *f = open_st(dir, "inputs.safetensors");
    const st_tensor *px = st_find(f, "pixel_values");
    if (!px || px->ndim != 4) printf("FAIL: pixel_values missing\n"), exit(1);
    for (int i = 0; i < 4; i++) in.px_shape[i] = px->shape[i];
    in.n_img = px->shape[0];
    in.pixels = read_f32(f, "pixel_values", NULL);
    int64_t s[2];
    in.ids = read_i32(f, "input_ids", s);
    in.n_txt = s[0];
    in.n_tok = s[1];
    in.mask = read_f32(f, "attention_mask", NULL);
    st_close(f);
    return in;
}

static void free_clip_inputs(clip_inputs *in) {
    free(in->pixels);
    free(in->mask);
    free(in->ids);
}

/* Host-memory tensors over images [i0, i0+ni) and texts [t0, t0+nt). */
static tensor pixels_tensor(const clip_inputs *in, int64_t i0, int64_t ni) {
    int64_t per = in->px_shape[1] * in->px_shape[2] * in->px_shape[3];
    return tensor_wrap(in->pixels + i0 * per, DT_F32, backend_cpu(), 4,
                       (int64_t[]){ni, in->px_shape[1], in->px_shape[2], in->px_shape[3]});
}
static tensor ids_tensor(const clip_inputs *in, int64_t t0, int64_t nt) {
    return tensor_wrap(in->ids + t0 * in->n_tok, DT_I32, backend_cpu(), 2,
                       (int64_t[]){nt, in->n_tok});
}
static tensor mask_tensor(const clip_inputs *in, int64_t t0, int64_t nt) {
    return tensor_wrap(in->mask + t0 * in->n_tok, DT_F32, backend_cpu(), 2,
                       (int64_t[]){nt, in->n_tok});
}

static void check_clip_outputs(const clip_output *o, const st_file *exp, const clip_inputs *in,
                               int64_t text_dim) {
    check_tensor("clip", exp, "vision_last_hidden_state", &o->vision_last_hidden, NULL, 1, TOL);
    check_tensor("clip", exp, "vision_pooled", &o->vision_pooled, NULL, 1, TOL);
    check_tensor("clip", exp, "text_last_hidden_state", &o->text_last_hidden, in->mask, text_dim,
                 TOL);
    check_tensor("clip", exp, "text_pooled", &o->text_pooled, NULL, 1, TOL);
    check_tensor("clip", exp, "image_embeds", &o->image_embeds, NULL, 1, TOL);
    check_tensor("clip", exp, "text_embeds", &o->text_embeds, NULL, 1, TOL);
    check_tensor("clip", exp, "logits_per_image", &o->logits_per_image, NULL, 1, TOL);
    check_tensor("clip", exp, "logits_per_text", &o->logits_per_text, NULL, 1, TOL);
    CHECK(o->loss.data != NULL, "clip: no loss for a square batch");
    if (o->loss.data) check_tensor("clip", exp, "loss", &o->loss, NULL, 1, LOSS_TOL);
}

/* Every hidden_states index of both towers, by positive and negative index. */
static void check_clip_hidden_states(const clip_model *m, arena *a, const st_file *exp,
                                     const clip_inputs *in) {
    tensor px = pixels_tensor(in, 0, in->n_img), ids = ids_tensor(in, 0, in->n_txt),
           mask = mask_tensor(in, 0, in->n_txt);
    int64_t nv = m->vision->enc.layers, nt = m->text.enc.layers;
    for (int64_t i = 0; i <= nv; i++) {
        fresh_arena(a);
        int64_t layer = i % 2 ? i - nv - 1 : i; /* odd ones by their negative index */
        tensor h = vit_forward(m->vision, a, &px, layer, 0);
        check_tensor("clip", exp, nn_name("vision_hidden_states.%lld", (long long)i), &h, NULL, 1,
                     TOL);
    }
    for (int64_t i = 0; i <= nt; i++) {
        fresh_arena(a);
        int64_t layer = i % 2 ? i : i - nt - 1;
        tensor h = clip_text_forward(&m->text, a, &ids, &mask, layer, 0);
        check_tensor("clip", exp, nn_name("text_hidden_states.%lld", (long long)i), &h, in->mask,
                     m->text.enc.dim, TOL);
    }
}

/* Images [1, 3) against texts [1, 3): logits must be the matching block of
 * the full batch's (each row depends on its own image / text only). */
static void check_clip_sub_batch(const clip_model *m, arena *a, const st_file *exp,
                                 const clip_inputs *in) {
    if (in->n_img < 3 || in->n_txt < 3) return;
    fresh_arena(a);
    tensor px = pixels_tensor(in, 1, 2), ids = ids_tensor(in, 1, 2), mask = mask_tensor(in, 1, 2);
    clip_output o;
    clip_forward(m, a, &px, &ids, &mask, &o);
    float *full = read_f32(exp, "logits_per_image", NULL), *got = download(&o.logits_per_image);
    float ref[4];
    for (int r = 0; r < 2; r++)
        for (int c = 0; c < 2; c++) ref[r * 2 + c] = full[(r + 1) * in->n_txt + c + 1];
    double e = rel_err_f32(got, ref, 4);
    printf("  clip   logits_per_image[1:3,1:3]    rel err %.2e (batch of 2)\n", e);
    CHECK(e <= TOL, "clip sub-batch logits: rel err %.3e", e);
    free(full);
    free(got);
}

static void test_clip(arena *a) {
    const char *dir = FIXTURES "/clip";
    model_dir *md = open_model(dir);
    nn_loader ld = {md, be, DT_F32};
    clip_model *m = clip_load(&ld, "");
    st_file *exp = open_st(dir, "expected.safetensors");
    clip_inputs in = read_clip_inputs(dir);
    CHECK(in.n_img == in.n_txt && in.n_txt > 1, "clip fixture: want a square batch > 1");
    tensor px = pixels_tensor(&in, 0, in.n_img), ids = ids_tensor(&in, 0, in.n_txt),
           mask = mask_tensor(&in, 0, in.n_txt);
    fresh_arena(a);
    clip_output o;
    clip_forward(m, a, &px, &ids, &mask, &o);
    check_clip_outputs(&o, exp, &in, m->text.enc.dim);
    check_clip_hidden_states(m, a, exp, &in);
    check_clip_sub_batch(m, a, exp, &in);
    free_clip_inputs(&in);
    st_close(exp);
    clip_free(m);
    model_dir_close(md);
}

/* ---- vision towers of LLaVA and BLIP-2 ---------------------------------- */

static tensor fixture_pixels(const char *dir, float **host) {
    st_file *f = open_st(dir, "inputs.safetensors");
    const st_tensor *t = st_find(f, "pixel_values");
    if (!t || t->ndim != 4) printf("FAIL: %s: pixel_values missing\n", dir), exit(1);
    *host = read_f32(f, "pixel_values", NULL);
    tensor px = tensor_wrap(*host, DT_F32, backend_cpu(), 4, t->shape);
    st_close(f);
    return px;
}

/* The tower loaded from `weights` against the fixture in `dir`:
 * hidden_states.{i} of the tower for every i (post_layernorm on none), then
 * `last_name` (may be NULL) with post_layernorm over the whole sequence. */
static void check_tower(const char *model, const char *weights, const char *dir, const char *prefix,
                        vit_style style, const char *last_name, int64_t extra_layer) {
    model_dir *md = open_model(weights);
    nn_loader ld = {md, be, DT_F32};
    vit_model *m = vit_load(&ld, prefix, "vision_config", style);
    st_file *exp = open_st(dir, "expected.safetensors");
    float *host;
    tensor px = fixture_pixels(dir, &host);
    arena a;
    arena_init(&a, be, ARENA_BYTES);
    for (int64_t i = 0; i <= m->enc.layers; i++) {
        fresh_arena(&a);
        tensor h = vit_forward(m, &a, &px, i, 0);
        check_tensor(model, exp, nn_name("vision_hidden_states.%lld", (long long)i), &h, NULL, 1,
                     TOL);
    }
    if (extra_layer) { /* e.g. LLaVA's vision_feature_layer -2 */
        fresh_arena(&a);
        tensor h = vit_forward(m, &a, &px, extra_layer, 0);
        printf("  (layer %lld:)\n", (long long)extra_layer);
        const char *name =
            nn_name("vision_hidden_states.%lld", (long long)vit_layer_index(m, extra_layer));
        check_tensor(model, exp, name, &h, NULL, 1, TOL);
        /* the same without CLS rows (LLaVA's "default" feature strategy) */
        tensor patches = vit_drop_cls(&a, &h);
        int64_t n = h.shape[0], t = h.shape[1], d = m->enc.dim, kept = 0;
        float *got = download(&patches), *ref = read_f32(exp, name, NULL);
        for (int64_t r = 0; r < n * t; r++)
            if (r % t) memcpy(ref + kept++ * d, ref + r * d, (size_t)d * sizeof *ref);
        CHECK(tensor_numel(&patches) == kept * d, "%s: drop_cls gave %lld values, expected %lld",
              model, (long long)tensor_numel(&patches), (long long)(kept * d));
        double e = rel_err_f32(got, ref, kept * d);
        printf("  %-6s %-28s rel err %.2e (CLS dropped)\n", model, name, e);
        CHECK(e <= TOL, "%s %s without CLS: rel err %.3e", model, name, e);
        free(got);
        free(ref);
    }
    if (last_name) {
        fresh_arena(&a);
        tensor h = vit_forward(m, &a, &px, -1, 1);
        check_tensor(model, exp, last_name, &h, NULL, 1, TOL);
    }
    arena_free(&a);
    free(host);
    st_close(exp);
    vit_free(m);
    model_dir_close(md);
}

/* ---- scratch model folders for the split-bias and bad-input cases ------- */

static char scratch[64];

static void copy_file(const char *src, const char *dst) {
    FILE *in = fopen(src, "rb"), *out = fopen(dst, "wb");
    if (!in || !out) printf("FAIL: cannot copy %s to %s\n", src, dst), exit(1);
    char buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0) fwrite(buf, 1, n, out);
    fclose(in);
    fclose(out);
}

/* A scratch folder "name" with src's config.json (or `config` when not NULL). */
static const char *scratch_model(const char *name, const char *src, const char *config) {
    static char dir[256];
    char a[512], b[512];
    snprintf(dir, sizeof dir, "%s/%s", scratch, name);
    mkdir(dir, 0755);
    snprintf(b, sizeof b, "%s/config.json", dir);
    if (config) {
        FILE *f = fopen(b, "w");
        fputs(config, f);
        fclose(f);
    } else {
        snprintf(a, sizeof a, "%s/config.json", src);
        copy_file(a, b);
    }
    return dir;
}

typedef enum { EDIT_SPLIT_QKV_BIAS, EDIT_SHRINK, EDIT_DROP } edit_kind;

/* Writes dst/model.safetensors from src's, changing tensor `target`:
 * SPLIT_QKV_BIAS replaces "<attn>.qkv.bias" by "<attn>.q_bias" and
 * "<attn>.v_bias" (the layout of pre-v5 checkpoints); SHRINK drops the last
 * row of target; DROP leaves target out. */
static void rewrite_weights(const char *src, const char *dst, edit_kind edit, const char *target) {
    char path[512], err[512];
    st_file *in = open_st(src, "model.safetensors");
    st_writer *w = st_writer_new();
    for (int i = 0; i < st_count(in); i++) {
        const st_tensor *t = st_at(in, i);
        size_t nl = strlen(t->name);
        if (edit == EDIT_SPLIT_QKV_BIAS && nl > 9 && !strcmp(t->name + nl - 9, ".qkv.bias")) {
            int64_t d = t->shape[0] / 3;
            char name[512];
            snprintf(name, sizeof name, "%.*s.q_bias", (int)(nl - 9), t->name);
            st_writer_add(w, name, t->dtype, 1, &d, t->data);
            snprintf(name, sizeof name, "%.*s.v_bias", (int)(nl - 9), t->name);
            st_writer_add(w, name, t->dtype, 1, &d,
                          (const char *)t->data + 2 * d * (int64_t)st_dtype_size(t->dtype));
        } else if (edit == EDIT_DROP && !strcmp(t->name, target)) {
            continue;
        } else if (edit == EDIT_SHRINK && !strcmp(t->name, target)) {
            int64_t shape[ST_MAX_DIMS];
            memcpy(shape, t->shape, sizeof shape);
            shape[0]--;
            st_writer_add(w, t->name, t->dtype, t->ndim, shape, t->data);
        } else {
            st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data);
        }
    }
    snprintf(path, sizeof path, "%s/model.safetensors", dst);
    if (st_writer_save(w, path, err, sizeof err)) printf("FAIL: %s\n", err), exit(1);
    st_writer_free(w);
    st_close(in);
}

/* config.json of src without the dotted key path (object members only). */
static char *config_without(const char *src, const char *path) {
    char file[512];
    snprintf(file, sizeof file, "%s/config.json", src);
    FILE *f = fopen(file, "rb");
    static char text[1 << 16];
    size_t n = f ? fread(text, 1, sizeof text - 1, f) : 0;
    if (f) fclose(f);
    text[n] = '\0';
    cJSON *root = cJSON_Parse(text), *obj = root;
    char key[256];
    snprintf(key, sizeof key, "%s", path);
    char *last = key, *dot;
    while ((dot = strchr(last, '.'))) {
        *dot = '\0';
        obj = cJSON_GetObjectItemCaseSensitive(obj, last);
        last = dot + 1;
    }
    cJSON_DeleteItemFromObjectCaseSensitive(obj, last);
    char *out = cJSON_Print(root);
    cJSON_Delete(root);
    return out;
}

static void remove_scratch(void) {
    DIR *d = opendir(scratch);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char sub[512];
        snprintf(sub, sizeof sub, "%s/%s", scratch, e->d_name);
        DIR *s = opendir(sub);
        struct dirent *f;
        while (s && (f = readdir(s))) {
            if (f->d_name[0] == '.') continue;
            char file[1024];
            snprintf(file, sizeof file, "%s/%s", sub, f->d_name);
            unlink(file);
        }
        if (s) closedir(s);
        rmdir(sub);
    }
    if (d) closedir(d);
    rmdir(scratch);
}

static pid_t atexit_parent;
/* Forked children exit through the same handlers: only the parent cleans. */
static void remove_scratch_at_exit(void) {
    if (getpid() == atexit_parent) remove_scratch();
}

/* BLIP-2 weights with q_bias / v_bias instead of the fused qkv.bias must
 * give the same numbers (the fixture's k bias is zero, as in EVA). */
static void test_blip2_split_bias(void) {
    const char *src = FIXTURES "/blip2";
    const char *dir = scratch_model("blip2_split", src, NULL);
    rewrite_weights(src, dir, EDIT_SPLIT_QKV_BIAS, NULL);
    check_tower("blip2s", dir, src, "vision_model", VIT_EVA, "vision_last_hidden_state", 0);
}

/* ---- bad inputs: one error line, exit status 1 -------------------------- */

typedef void (*bad_case)(const void *arg);

static bad_case bad_fn;
static const void *bad_arg;

static void run_bad_case(void) {
    int devnull = open("/dev/null", O_WRONLY);
    dup2(devnull, 1);
    bad_fn(bad_arg);
}

/* Runs fn(arg) in a child; the child must exit with status 1 after writing
 * exactly one line to stderr that contains `want`. */
static void expect_error(const char *what, bad_case fn, const void *arg, const char *want) {
    char buf[4096];
    bad_fn = fn;
    bad_arg = arg;
    int code = tl_run_child(run_bad_case, buf, sizeof buf);
    int lines = 0;
    for (size_t i = 0; buf[i]; i++) lines += buf[i] == '\n';
    printf("  bad input: %-30s exit %d: %s", what, code, buf[0] ? buf : "(no message)\n");
    CHECK(code == 1, "%s: exit status %d, expected 1", what, code);
    CHECK(lines == 1, "%s: %d lines on stderr, expected 1", what, lines);
    CHECK(strstr(buf, want) != NULL, "%s: message lacks '%s'", what, want);
}

static void load_clip_dir(const void *dir) {
    model_dir *md = open_model(dir);
    nn_loader ld = {md, be, DT_F32};
    clip_load(&ld, "");
}

static void load_eva_dir(const void *dir) {
    model_dir *md = open_model(dir);
    nn_loader ld = {md, be, DT_F32};
    vit_load(&ld, "vision_model", "vision_config", VIT_EVA);
}

typedef struct run_case {
    int what; /* 0: pixels of the wrong size, 1: id out of vocabulary, 2: layer out of range */
} run_case;

static void run_clip_badly(const void *arg) {
    const run_case *c = arg;
    model_dir *md = open_model(FIXTURES "/clip");
    nn_loader ld = {md, be, DT_F32};
    clip_model *m = clip_load(&ld, "");
    clip_inputs in = read_clip_inputs(FIXTURES "/clip");
    arena a;
    arena_init(&a, be, ARENA_BYTES);
    tensor px = pixels_tensor(&in, 0, in.n_img), ids = ids_tensor(&in, 0, in.n_txt);
    if (c->what == 0) {
        px = tensor_reshape(&px, 4, (int64_t[]){in.n_img, 1, 3, in.px_shape[2] * in.px_shape[3]});
        vit_forward(m->vision, &a, &px, -1, 0);
    } else if (c->what == 1) {
        in.ids[in.n_tok + 2] = (int32_t)m->text.vocab;
        clip_text_forward(&m->text, &a, &ids, NULL, -1, 1);
    } else {
        vit_forward(m->vision, &a, &px, m->vision->enc.layers + 1, 0);
    }
}

static void test_bad_inputs(void) {
    const char *clip_src = FIXTURES "/clip";
    char *cfg = config_without(clip_src, "vision_config.hidden_size");
    char model_src[512], model_dst[512];
    const char *dir = scratch_model("clip_no_hidden", clip_src, cfg);
    free(cfg);
    snprintf(model_src, sizeof model_src, "%s/model.safetensors", clip_src);
    snprintf(model_dst, sizeof model_dst, "%s/model.safetensors", dir);
    copy_file(model_src, model_dst);
    expect_error("config without hidden_size", load_clip_dir, dir,
                 "missing required key 'vision_config.hidden_size'");

    dir = scratch_model("clip_bad_fc1", clip_src, NULL);
    const char *fc1 = "text_model.encoder.layers.1.mlp.fc1.weight";
    rewrite_weights(clip_src, dir, EDIT_SHRINK, fc1);
    st_file *orig = open_st(clip_src, "model.safetensors");
    const st_tensor *t = st_find(orig, fc1);
    char want[256];
    snprintf(want, sizeof want, "'%s' has shape [%lld, %lld], expected [%lld, %lld]", fc1,
             (long long)t->shape[0] - 1, (long long)t->shape[1], (long long)t->shape[0],
             (long long)t->shape[1]);
    st_close(orig);
    expect_error("wrong-shaped text fc1", load_clip_dir, dir, want);

    const char *blip_src = FIXTURES "/blip2";
    dir = scratch_model("blip2_bad_qkv", blip_src, NULL);
    rewrite_weights(blip_src, dir, EDIT_SHRINK,
                    "vision_model.encoder.layers.0.self_attn.qkv.weight");
    expect_error("wrong-shaped EVA qkv", load_eva_dir, dir, "self_attn.qkv.weight' has shape");

    dir = scratch_model("blip2_no_bias", blip_src, NULL); /* config says qkv_bias: true */
    rewrite_weights(blip_src, dir, EDIT_DROP, "vision_model.encoder.layers.1.self_attn.qkv.bias");
    expect_error("EVA qkv bias missing", load_eva_dir, dir,
                 "tensor 'vision_model.encoder.layers.1.self_attn.q_bias' not found");

    run_case px = {0}, vocab = {1}, layer = {2};
    expect_error("pixels of the wrong size", run_clip_badly, &px, "pixel_values has shape");
    expect_error("id outside the vocabulary", run_clip_badly, &vocab, "outside the vocabulary");
    expect_error("layer out of range", run_clip_badly, &layer, "out of range");
}

int main(void) {
    tests_begin("test_clip");
    be = backend_cpu();
    snprintf(scratch, sizeof scratch, "/tmp/aimc_test_clip_XXXXXX");
    if (!mkdtemp(scratch)) printf("FAIL: mkdtemp\n"), exit(1);
    atexit_parent = getpid();
    atexit(remove_scratch_at_exit);
    arena a;
    arena_init(&a, be, ARENA_BYTES);
    test_clip(&a);
    arena_free(&a);
    check_tower("llava", FIXTURES "/llava", FIXTURES "/llava", "vision_tower", VIT_CLIP, NULL, -2);
    /* transformers v4 layout: vision_tower.vision_model.*, two shards */
    check_tower("llava4", FIXTURES "/llava_oldkeys", FIXTURES "/llava", "vision_tower", VIT_CLIP,
                NULL, -2);
    check_tower("blip2", FIXTURES "/blip2", FIXTURES "/blip2", "vision_model", VIT_EVA,
                "vision_last_hidden_state", 0);
    test_blip2_split_bias();
    test_bad_inputs();
    return tests_done();
}
