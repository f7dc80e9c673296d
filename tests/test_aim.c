/* The AIM step (host/aim.h) against the PyTorch reference cases in
 * tests/fixtures/aim (scripts/make_aim_fixtures.py, an independent
 * implementation of docs/aim-step.md on the tiny LLaVA and BLIP-2 models),
 * on the cpu backend in f32. For every case file:
 *  - the batch loss (sum returned / n_targets) rel <= 1e-5, and the target
 *    count;
 *  - every projector gradient grad.<param> rel <= 1e-4 (k = 0: every
 *    gradient must stay exactly 0, |g| <= 1e-12);
 *  - the padded query inputs_embeds (query_embeds.<e>, real rows) rel
 *    <= 1e-5 and the mask, and d loss / d fused (fused_grad.<e>) rel <= 1e-4,
 *    from the step's trace;
 *  - hidden.<e> and fused.<e> from aim_demo_hidden / aim_fuse_demo, one
 *    demonstration at a time, rel <= 1e-4;
 *  - self-consistency: the two episodes as two micro-batches with the
 *    global dscale accumulate to the full batch's gradients and loss sum
 *    (rel <= 1e-5); want_grad = 0 leaves (random) gradient buffers
 *    bit-identical and gives the same loss; the arena is left as found.
 * Plus a batch mixing episodes with k = 1 and k = 3 equals the sum of its
 * episodes run alone, and bad input dies with one clear line (forked
 * children, run first). The arena is filled with NaN before every step so
 * that rows the step forgets to write show up. */
#include "testlib.h"
#include "model_fixture.h"
#include "../host/aim.h"
#include "../host/mllm.h"
#include "../host/safetensors.h"
#include "../kernels/check.h"
#include <limits.h>

#define ARENA_BYTES ((size_t)64 << 20)

static const backend *be;

/* ---- files ------------------------------------------------------------------- */

static int32_t scalar_i32(st_file *f, const char *name) {
    int32_t *v = fx_read_i32(f, name, NULL), x = v[0];
    free(v);
    return x;
}

static float scalar_f32(st_file *f, const char *name) {
    float *v = fx_read_f32(f, name, NULL), x = v[0];
    free(v);
    return x;
}

/* ---- models (loaded once) ------------------------------------------------------- */

static mllm *models[2];
static const char *model_names[2] = {"llava", "blip2"};

static mllm *model_named(const char *name) {
    for (int i = 0; i < 2; i++)
        if (!strcmp(name, model_names[i])) {
            if (!models[i]) {
                fx_path dir = fx_join(fx_repo_dir("tests/fixtures/models").s, name);
                models[i] = mllm_load(dir.s, be, DT_F32);
            }
            return models[i];
        }
    printf("FAIL: no model %s\n", name), exit(1);
}

/* ---- one case ------------------------------------------------------------------------ */

typedef struct aim_case {
    char name[96];
    st_file *f;
    int batch, k;
    int64_t n_targets, d;
    mllm *m;
    projector proj;
    aim_model am;
    episode *eps;
} aim_case;

/* The projector of the case: its type from the file and its parameters
 * loaded over the initialisation. */
static void case_projector(aim_case *c) {
    projector_config cfg = {.type = (projector_type)scalar_i32(c->f, "projector_type"),
                            .d_in = c->d, .d_out = c->d, .d_hidden = c->d, .ln_eps = 1e-5f};
    if (cfg.type == PROJ_LINEAR_LN) cfg.ln_eps = scalar_f32(c->f, "ln_eps");
    projector_init(&c->proj, be, &cfg);
    for (int i = 0; i < c->proj.n_params; i++) {
        projector_param *p = &c->proj.params[i];
        int64_t n;
        float *v = fx_read_f32(c->f, p->name, &n);
        if (n != tensor_numel(&p->value)) printf("FAIL: %s: %s size\n", c->name, p->name), exit(1);
        be->upload(p->value.data, v, (size_t)n * sizeof *v);
        free(v);
    }
}

static float *copy_floats(const float *src, int64_t n) {
    float *out = tl_alloc((size_t)n * sizeof *out);
    memcpy(out, src, (size_t)n * sizeof *out);
    return out;
}

static void set_image(episode_item *it, const float *pixels, const st_tensor *t) {
    it->height = t->shape[2];
    it->width = t->shape[3];
    it->pixels = copy_floats(pixels, 3 * it->height * it->width);
}

/* Demonstration items of episode e from demo_pixels / demo_ids / demo_lens. */
static void case_demos(aim_case *c, int e, episode *ep) {
    float *px = fx_read_f32(c->f, fx_per_ep("demo_pixels", e), NULL);
    int32_t *ids = fx_read_i32(c->f, fx_per_ep("demo_ids", e), NULL);
    int32_t *lens = fx_read_i32(c->f, fx_per_ep("demo_lens", e), NULL);
    const st_tensor *pt = fx_need(c->f, fx_per_ep("demo_pixels", e));
    int64_t plane = 3 * pt->shape[2] * pt->shape[3], at = 0;
    for (int i = 0; i < c->k; i++) {
        episode_item *it = &ep->items[i];
        set_image(it, px + i * plane, pt);
        it->n_tokens = lens[i];
        it->tokens = tl_alloc((size_t)lens[i] * sizeof *it->tokens);
        memcpy(it->tokens, ids + at, (size_t)lens[i] * sizeof *it->tokens);
        at += lens[i];
        it->source = aimc_strdup("demo");
    }
    free(px), free(ids), free(lens);
}

/* The query item: prompt then target ids, flags on the target. */
static void case_query(aim_case *c, int e, episode_item *it) {
    int64_t np, nt;
    float *px = fx_read_f32(c->f, fx_per_ep("query_pixels", e), NULL);
    int32_t *p = fx_read_i32(c->f, fx_per_ep("prompt_ids", e), &np);
    int32_t *t = fx_read_i32(c->f, fx_per_ep("target_ids", e), &nt);
    set_image(it, px, fx_need(c->f, fx_per_ep("query_pixels", e)));
    it->n_tokens = np + nt;
    it->tokens = tl_alloc((size_t)(np + nt) * sizeof *it->tokens);
    it->target = tl_alloc((size_t)(np + nt));
    memcpy(it->tokens, p, (size_t)np * sizeof *p);
    memcpy(it->tokens + np, t, (size_t)nt * sizeof *t);
    for (int64_t j = 0; j < np + nt; j++) it->target[j] = j >= np;
    it->n_target = nt;
    it->source = aimc_strdup("query");
    free(px), free(p), free(t);
}

static void case_open(aim_case *c, const char *file) {
    memset(c, 0, sizeof *c);
    snprintf(c->name, sizeof c->name, "%s", file);
    c->f = fx_open_st(fx_join(fx_repo_dir("tests/fixtures/aim").s, file).s);
    c->batch = scalar_i32(c->f, "batch");
    c->k = scalar_i32(c->f, "k");
    c->n_targets = scalar_i32(c->f, "n_targets");
    c->d = scalar_i32(c->f, "d_model");
    c->m = model_named(!strncmp(file, "llava", 5) ? "llava" : "blip2");
    CHECK(mllm_d_model(c->m) == c->d && mllm_bos_id(c->m) == scalar_i32(c->f, "bos_id"),
          "%s: model d %lld bos %d, file d %lld bos %d", c->name, (long long)mllm_d_model(c->m),
          (int)mllm_bos_id(c->m), (long long)c->d, (int)scalar_i32(c->f, "bos_id"));
    case_projector(c);
    c->am = (aim_model){.mllm = c->m, .proj = &c->proj, .layer = scalar_i32(c->f, "layer")};
    c->eps = tl_alloc((size_t)c->batch * sizeof *c->eps);
    for (int e = 0; e < c->batch; e++) {
        c->eps[e].k = c->k;
        c->eps[e].items = calloc((size_t)c->k + 1, sizeof *c->eps[e].items);
        if (c->k > 0) case_demos(c, e, &c->eps[e]); /* k = 0 files have no demo_* */
        case_query(c, e, &c->eps[e].items[c->k]);
    }
}

static void case_close(aim_case *c) {
    for (int e = 0; e < c->batch; e++) episode_free(&c->eps[e]);
    free(c->eps);
    projector_free(&c->proj);
    st_close(c->f);
}

/* ---- helpers -------------------------------------------------------------------------- */

/* Every gradient buffer of p, concatenated on the host (*n values). */
static float *grads_of(projector *p, int64_t *n) {
    int64_t total = 0;
    for (int i = 0; i < p->n_params; i++) total += tensor_numel(&p->params[i].grad);
    float *out = tl_alloc((size_t)total * sizeof *out);
    int64_t at = 0;
    for (int i = 0; i < p->n_params; i++) {
        tensor *g = &p->params[i].grad;
        be->download(out + at, g->data, tensor_bytes(g));
        at += tensor_numel(g);
    }
    *n = total;
    return out;
}

static void set_grads(projector *p, const float *values) {
    int64_t at = 0;
    for (int i = 0; i < p->n_params; i++) {
        tensor *g = &p->params[i].grad;
        be->upload(g->data, values + at, tensor_bytes(g));
        at += tensor_numel(g);
    }
}

static double rel_scalar(double got, double ref) { return fabs(got - ref) / fabs(ref); }

/* One step with zeroed gradients and a poisoned arena; the loss sum. */
static double fresh_step(aim_case *c, arena *a, const episode *eps, int n, int want_grad,
                         aim_trace *trace) {
    projector_zero_grad(&c->proj);
    fx_poison_arena(a);
    return aim_batch_step_traced(&c->am, a, eps, n, (float)(1.0 / (double)c->n_targets),
                                 want_grad, trace);
}

/* ---- checks against the reference --------------------------------------------------------- */

static void check_grads(aim_case *c) {
    for (int i = 0; i < c->proj.n_params; i++) {
        projector_param *p = &c->proj.params[i];
        char name[64];
        snprintf(name, sizeof name, "grad.%s", p->name);
        int64_t n;
        float *ref = fx_read_f32(c->f, name, &n), *got = fx_download_f32(&p->grad);
        if (c->k == 0) {
            double worst = 0;
            for (int64_t j = 0; j < n; j++) worst = fmax(worst, fabs((double)got[j]));
            CHECK(worst <= 1e-12, "%s: k = 0 but %s has |g| up to %g", c->name, p->name, worst);
        } else {
            double err = rel_err_f32(got, ref, n);
            printf("  %-34s %-18s rel %.2e\n", c->name, name, err);
            CHECK(err <= 1e-4, "%s: %s rel err %g", c->name, name, err);
        }
        free(ref), free(got);
    }
}

/* query_embeds.<e> against the trace's padded rows, and the mask. */
static void check_embeds(aim_case *c, const aim_trace *t) {
    for (int e = 0; e < c->batch; e++) {
        int64_t n;
        float *ref = fx_read_f32(c->f, fx_per_ep("query_embeds", e), &n);
        int64_t rows = n / c->d, real = 0;
        for (int64_t j = 0; j < t->len; j++) real += t->mask[e * t->len + j];
        const float *got = t->embeds + (int64_t)e * t->len * c->d;
        double err = rows <= t->len ? rel_err_f32(got, ref, n) : INFINITY;
        CHECK(real == rows && err <= 1e-5, "%s: episode %d: %lld real rows (want %lld), embeds "
              "rel err %g", c->name, e, (long long)real, (long long)rows, err);
        free(ref);
    }
}

/* fused_grad.<e> (d mean loss / d fused) against the trace's rows. */
static void check_fused_grad(aim_case *c, const aim_trace *t) {
    int64_t at = 0;
    for (int e = 0; e < c->batch && c->k > 0; e++) {
        int64_t n;
        float *ref = fx_read_f32(c->f, fx_per_ep("fused_grad", e), &n);
        double err = t->d_fused && at + n <= t->n_fused * c->d
                         ? rel_err_f32(t->d_fused + at, ref, n) : INFINITY;
        printf("  %-34s fused_grad.%d       rel %.2e\n", c->name, e, err);
        CHECK(err <= 1e-4, "%s: fused_grad.%d rel err %g", c->name, e, err);
        at += n;
        free(ref);
    }
    CHECK(c->k == 0 ? !t->d_fused : at == t->n_fused * c->d, "%s: trace has %lld fused rows",
          c->name, (long long)t->n_fused);
}

/* The full step: loss, count, gradients, trace; the arena left as found. */
static void check_step(aim_case *c, arena *a) {
    aim_trace t;
    CHECK(aim_count_targets(c->eps, c->batch) == c->n_targets, "%s: %lld targets, want %lld",
          c->name, (long long)aim_count_targets(c->eps, c->batch), (long long)c->n_targets);
    size_t used = a->used;
    double sum = fresh_step(c, a, c->eps, c->batch, 1, &t);
    double ref = scalar_f32(c->f, "loss"), err = rel_scalar(sum / (double)c->n_targets, ref);
    printf("  %-34s loss %.6f (ref %.6f) rel %.2e\n", c->name, sum / (double)c->n_targets, ref,
           err);
    CHECK(err <= 1e-5, "%s: loss %.7f, reference %.7f", c->name, sum / (double)c->n_targets,
          ref);
    CHECK(a->used == used, "%s: arena used %zu after the step, %zu before", c->name, a->used,
          used);
    check_grads(c);
    check_embeds(c, &t);
    check_fused_grad(c, &t);
    aim_trace_free(&t);
}

/* hidden.<e> / fused.<e> from aim_demo_hidden / aim_fuse_demo, demo by demo. */
static void check_demos(aim_case *c, arena *a) {
    for (int e = 0; e < c->batch && c->k > 0; e++) {
        int64_t n;
        float *hid_ref = fx_read_f32(c->f, fx_per_ep("hidden", e), &n);
        float *fus_ref = fx_read_f32(c->f, fx_per_ep("fused", e), NULL);
        float *hid = tl_alloc((size_t)n * sizeof *hid), *fus = tl_alloc((size_t)n * sizeof *fus);
        int64_t at = 0;
        for (int i = 0; i < c->k; i++) {
            const episode_item *demo = &c->eps[e].items[i];
            fx_poison_arena(a);
            arena_reset(a);
            tensor h = aim_demo_hidden(&c->am, a, demo);
            tensor f = aim_fuse_demo(&c->am, a, demo, NULL);
            be->download(hid + at, h.data, tensor_bytes(&h));
            be->download(fus + at, f.data, tensor_bytes(&f));
            at += demo->n_tokens * c->d;
        }
        arena_reset(a);
        double eh = at == n ? rel_err_f32(hid, hid_ref, n) : INFINITY;
        double ef = at == n ? rel_err_f32(fus, fus_ref, n) : INFINITY;
        printf("  %-34s hidden.%d rel %.2e  fused.%d rel %.2e\n", c->name, e, eh, e, ef);
        CHECK(eh <= 1e-4 && ef <= 1e-4, "%s: episode %d: hidden rel %g, fused rel %g", c->name, e,
              eh, ef);
        free(hid_ref), free(fus_ref), free(hid), free(fus);
    }
}

/* ---- self-consistency ---------------------------------------------------------------------- */

/* Episode by episode with the global dscale, accumulated = the full batch. */
static void check_micro_batches(aim_case *c, arena *a) {
    int64_t n;
    double full = fresh_step(c, a, c->eps, c->batch, 1, NULL);
    float *g_full = grads_of(&c->proj, &n);
    double parts = fresh_step(c, a, c->eps, 1, 1, NULL); /* zeroes, then accumulates */
    float dscale = (float)(1.0 / (double)c->n_targets);
    for (int e = 1; e < c->batch; e++) {
        fx_poison_arena(a);
        parts += aim_batch_step(&c->am, a, c->eps + e, 1, dscale, 1);
    }
    float *g_parts = grads_of(&c->proj, &n);
    double eg = rel_err_f32(g_parts, g_full, n); /* both all 0 when k = 0: absolute */
    CHECK(rel_scalar(parts, full) <= 1e-5 && eg <= 1e-5,
          "%s: micro-batches: loss sum %.7f vs %.7f, gradients rel %g", c->name, parts, full, eg);
    free(g_full), free(g_parts);
}

/* want_grad = 0: the same loss, gradient buffers untouched. */
static void check_no_grad(aim_case *c, arena *a) {
    int64_t n;
    double with = fresh_step(c, a, c->eps, c->batch, 1, NULL);
    float *g = grads_of(&c->proj, &n);
    fill_normal(g, n, 1.0);
    set_grads(&c->proj, g);
    fx_poison_arena(a);
    double without = aim_batch_step(&c->am, a, c->eps, c->batch, 0.5f, 0);
    float *after = grads_of(&c->proj, &n);
    CHECK(!memcmp(g, after, (size_t)n * sizeof *g) && rel_scalar(without, with) <= 1e-6,
          "%s: want_grad 0 changed the gradients or the loss (%.7f vs %.7f)", c->name, without,
          with);
    free(g), free(after);
}

static void run_case(const char *file, arena *a) {
    aim_case c;
    case_open(&c, file);
    check_step(&c, a);
    check_demos(&c, a);
    check_micro_batches(&c, a);
    check_no_grad(&c, a);
    case_close(&c);
}

/* Episodes with k = 1 and k = 3 in one batch (projector of the k = 1 file)
 * = each run alone, summed. */
static void check_mixed_k(const char *k1_file, const char *k3_file, arena *a) {
    aim_case c1, c3;
    case_open(&c1, k1_file);
    case_open(&c3, k3_file);
    episode mixed[2] = {c1.eps[0], c3.eps[1]};
    int64_t n;
    c1.n_targets = aim_count_targets(mixed, 2);
    double both = fresh_step(&c1, a, mixed, 2, 1, NULL);
    float *g_both = grads_of(&c1.proj, &n);
    double alone = fresh_step(&c1, a, mixed, 1, 1, NULL);
    fx_poison_arena(a);
    alone += aim_batch_step(&c1.am, a, mixed + 1, 1, (float)(1.0 / (double)c1.n_targets), 1);
    float *g_alone = grads_of(&c1.proj, &n);
    double eg = rel_err_f32(g_both, g_alone, n);
    CHECK(rel_scalar(both, alone) <= 1e-5 && eg <= 1e-5,
          "mixed k (%s + %s): loss sum %.7f vs %.7f alone, gradients rel %g", k1_file, k3_file,
          both, alone, eg);
    free(g_both), free(g_alone);
    case_close(&c1);
    case_close(&c3);
}

/* ---- bad input (forked children, before any OpenMP region here) ------------------------------- */

static int bad_kind;

static void bad_input_child(void) {
    aim_case c;
    arena a;
    case_open(&c, "llava_k1_linear_L2.safetensors");
    arena_init(&a, be, ARENA_BYTES);
    if (bad_kind == 0) c.eps[0].items[0].n_tokens = 0;
    if (bad_kind == 1) c.eps[1].items[1].n_target = 3;
    if (bad_kind == 2) c.am.layer = 7;
    aim_batch_step(&c.am, &a, c.eps, c.batch, 1.0f, 1);
    exit(0);
}

static void bad_demo(void) { bad_kind = 0, bad_input_child(); }
static void bad_targets(void) { bad_kind = 1, bad_input_child(); }
static void bad_layer(void) { bad_kind = 2, bad_input_child(); }

static void check_bad_input(void) {
    EXPECT_DIES(bad_demo, 1, "demonstration demo has no text tokens");
    EXPECT_DIES(bad_targets, 1, "target flags set but n_target 3");
    EXPECT_DIES(bad_layer, 1, "7");
}

int main(void) {
    tests_begin("test_aim");
    be = backend_cpu();
    check_bad_input();
    static const char *files[] = {
        "llava_k0_linear_L2.safetensors",    "llava_k1_linear_L2.safetensors",
        "llava_k3_linear_L2.safetensors",    "llava_k1_linear_L1.safetensors",
        "llava_k1_linear_ln_L2.safetensors", "llava_k1_mlp_L2.safetensors",
        "blip2_k0_linear_L2.safetensors",    "blip2_k1_linear_L2.safetensors",
        "blip2_k3_linear_L2.safetensors"};
    arena a;
    arena_init(&a, be, ARENA_BYTES);
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) run_case(files[i], &a);
    check_mixed_k("llava_k1_linear_L2.safetensors", "llava_k3_linear_L2.safetensors", &a);
    check_mixed_k("blip2_k1_linear_L2.safetensors", "blip2_k3_linear_L2.safetensors", &a);
    arena_free(&a);
    for (int i = 0; i < 2; i++)
        if (models[i]) mllm_free(models[i]);
    return tests_done();
}
