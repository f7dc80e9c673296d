/* The language-model decoders (host/decoder.h): LLaMA as in the LLaVA
 * fixture, OPT as in the BLIP-2 fixture (tests/fixtures/models, written by
 * scripts/make_model_fixtures.py from transformers with eager attention).
 * For each fixture, on the cpu backend:
 *  - token embeddings, with the image features scattered at the image
 *    positions, reproduce transformers' inputs_embeds;
 *  - from transformers' inputs_embeds (right-padded batch of 2): logits and
 *    every hidden_states[i] at the non-pad positions (rel <= 1e-4), through
 *    both the saving and the streaming forward; the LM loss (rel <= 1e-5);
 *    d loss / d inputs_embeds (rel <= 1e-3);
 *  - independent checks of the backward: central finite differences of the
 *    loss along random directions (two step sizes, both must agree), and of
 *    a projection of a middle hidden state (the backward from d_hidden);
 *  - the KV cache: a prefill of T-3 tokens and three one-token steps give
 *    the full forward's logits (<= 1e-4), also the last-position-only form;
 *  - padding: a left- or right-padded row gives the unpadded row's outputs
 *    (LLaMA with generate()'s mask positions, OPT always), forward and cache;
 *  - the old LLaVA key layout (bf16, two shards, v4 config spellings) and
 *    bf16 weights load to the same numbers;
 *  - bad configs and bad calls end with one error line and status 1 (run in
 *    forked children first, before any OpenMP region starts). */
#include "testlib.h"
#include "model_fixture.h"
#include "../host/decoder.h"
#include "../host/safetensors.h"
#include <cjson/cJSON.h>
#include <sys/stat.h>
#include <unistd.h>

#define ARENA_BYTES ((size_t)64 << 20)

static const backend *be;
static char scratch[256];

/* The fixture folder `name`, in one of 16 buffers used in turn. */
static const char *fixture_dir(const char *name) {
    static fx_path bufs[16];
    static int next;
    fx_path *b = &bufs[next++ & 15];
    *b = fx_join(fx_repo_dir("tests/fixtures/models").s, name);
    return b->s;
}

/* ---- fixture data --------------------------------------------------------------- */

typedef struct fixture {
    const char *name, *dir, *data_dir, *wprefix, *cprefix;
    model_dir *md;
    decoder *m;
    st_file *in, *ex;
    int64_t B, T, D, V;
    int32_t *ids, *mask, *labels;
    float *embeds; /* transformers' inputs_embeds */
} fixture;

static decoder *load_decoder(model_dir *md, const char *wprefix, const char *cprefix, dtype wdt) {
    nn_loader ld = {.md = md, .be = be, .wdt = wdt};
    return decoder_load(&ld, wprefix, cprefix);
}

static model_dir *open_dir(const char *dir) {
    char err[512] = "";
    model_dir *md = model_dir_open(dir, err, sizeof err);
    if (!md) printf("FAIL: %s\n", err), exit(1);
    return md;
}

/* The fixture's inputs and transformers' inputs_embeds, for the loaded f->m. */
static void fixture_read_data(fixture *f) {
    f->in = fx_open_st(fx_join(f->data_dir, "inputs.safetensors").s);
    f->ex = fx_open_st(fx_join(f->data_dir, "expected.safetensors").s);
    const st_tensor *ids = fx_need(f->in, "input_ids");
    f->B = ids->shape[0];
    f->T = ids->shape[1];
    f->D = f->m->cfg.hidden;
    f->V = f->m->cfg.vocab;
    f->ids = fx_read_i32_n(f->in, "input_ids", f->B * f->T);
    f->mask = fx_read_i32_n(f->in, "attention_mask", f->B * f->T);
    f->labels = fx_read_i32_n(f->in, "labels", f->B * f->T);
    f->embeds = fx_read_f32_n(f->ex, "inputs_embeds", f->B * f->T * f->D);
}

static void fixture_open(fixture *f, dtype wdt) {
    f->md = open_dir(f->dir);
    f->m = load_decoder(f->md, f->wprefix, f->cprefix, wdt);
    fixture_read_data(f);
}

static void fixture_close(fixture *f) {
    free(f->ids), free(f->mask), free(f->labels), free(f->embeds);
    st_close(f->in);
    st_close(f->ex);
    decoder_free(f->m);
    model_dir_close(f->md);
}

/* ---- helpers -------------------------------------------------------------------- */

static tensor upload_f32(arena *a, const float *host, int64_t b, int64_t t, int64_t c) {
    tensor x = arena_new(a, DT_F32, b, t, c);
    be->upload(x.data, host, tensor_bytes(&x));
    return x;
}

static double dot_f32(const float *a, const float *b, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

/* ---- embeddings -------------------------------------------------------------------- */

/* embed(input_ids) with the image rows (LLaVA image_features / BLIP-2
 * language_projection_output, in row-major order) scattered at the image
 * token positions must give transformers' inputs_embeds. */
static void check_embeddings(fixture *f, arena *a, const char *image_key) {
    int32_t image_token = (int32_t)cfg_need_int(f->md, "image_token_index|image_token_id");
    size_t mark = a->used;
    tensor e = decoder_embed_tokens(f->m, a, f->ids, f->B, f->T);
    float *got = fx_download_f32(&e);
    const st_tensor *img_t = st_find(f->ex, image_key);
    float *img = fx_read_f32(f->ex, image_key, NULL);
    int64_t n_img = 0, img_rows = img_t->shape[0] * img_t->shape[1];
    for (int64_t r = 0; r < f->B * f->T; r++)
        if (f->ids[r] == image_token && n_img++ < img_rows)
            memcpy(got + r * f->D, img + (n_img - 1) * f->D, (size_t)f->D * sizeof *got);
    double err = fx_rel_rows(got, f->embeds, NULL, f->B * f->T, f->D);
    CHECK(n_img == img_rows && err <= 1e-6,
          "%s: embed + image rows vs inputs_embeds: rel err %.2e (%lld image rows, expected %lld)",
          f->name, err, (long long)n_img, (long long)img_rows);
    printf("%s: embeddings + image features vs inputs_embeds: rel err %.2e\n", f->name, err);
    free(got), free(img);
    a->used = mark;
}

/* ---- forward, loss, backward against transformers ------------------------------------- */

static void check_hidden_states(fixture *f, arena *a, const tensor *embeds) {
    int64_t L = f->m->cfg.layers;
    double worst_saved = 0, worst_stream = 0;
    for (int64_t i = 0; i <= L; i++) {
        char key[64];
        snprintf(key, sizeof key, "hidden_states.%lld", (long long)i);
        float *ref = fx_read_f32_n(f->ex, key, f->B * f->T * f->D);
        for (int saved = 0; saved < 2; saved++) {
            size_t mark = a->used;
            decoder_pass p;
            /* a negative index for the streaming run: -(L + 1 - i) is i */
            decoder_fwd_opts o = {.want_hidden = 1, .hidden_layer = saved ? i : i - (L + 1),
                                  .for_backward = saved};
            decoder_forward(f->m, a, embeds, f->mask, &o, &p);
            float *got = fx_download_f32(&p.hidden);
            double err = fx_rel_rows(got, ref, f->mask, f->B * f->T, f->D);
            CHECK(err <= 1e-4 && p.layers_run == (i == L ? L : i),
                  "%s: hidden_states[%lld] (%s): rel err %.2e, %lld layers run", f->name,
                  (long long)i, saved ? "saved" : "streaming", err, (long long)p.layers_run);
            if (saved) worst_saved = fmax(worst_saved, err);
            else worst_stream = fmax(worst_stream, err);
            free(got);
            decoder_pass_release(&p);
            a->used = mark;
        }
        free(ref);
    }
    printf("%s: hidden_states[0..%lld] at non-pad positions: max rel err %.2e (saving forward), "
           "%.2e (streaming)\n",
           f->name, (long long)L, worst_saved, worst_stream);
}

/* Forward with logits (kept for the backward), loss and d inputs_embeds. */
static double loss_and_grad(fixture *f, arena *a, const tensor *embeds, tensor *d_embeds,
                            float **logits_out) {
    decoder_pass p;
    decoder_fwd_opts o = {.want_logits = 1, .for_backward = d_embeds != NULL};
    decoder_forward(f->m, a, embeds, f->mask, &o, &p);
    if (logits_out) *logits_out = fx_download_f32(&p.logits);
    double loss;
    if (d_embeds) {
        tensor dlogits = arena_new(a, DT_F32, f->B, f->T, f->V);
        fx_poison_tensor(&dlogits);
        loss = decoder_lm_loss(a, &p.logits, f->labels, f->T, &dlogits);
        decoder_backward(f->m, a, &p, &dlogits, NULL, d_embeds);
    } else {
        loss = decoder_lm_loss(a, &p.logits, f->labels, f->T, NULL);
    }
    decoder_pass_release(&p);
    return loss;
}

static void check_against_transformers(fixture *f, arena *a, const tensor *embeds) {
    size_t mark = a->used;
    tensor d_embeds = arena_new(a, DT_F32, f->B, f->T, f->D);
    fx_poison_tensor(&d_embeds);
    float *logits;
    double loss = loss_and_grad(f, a, embeds, &d_embeds, &logits);
    float *ref_logits = fx_read_f32_n(f->ex, "logits", f->B * f->T * f->V);
    float *ref_loss = fx_read_f32_n(f->ex, "loss", 1);
    float *ref_grad = fx_read_f32_n(f->ex, "inputs_embeds_grad", f->B * f->T * f->D);
    float *grad = fx_download_f32(&d_embeds);
    double e_logits = fx_rel_rows(logits, ref_logits, f->mask, f->B * f->T, f->V);
    double e_loss = fabs(loss - ref_loss[0]) / fabs(ref_loss[0]);
    double e_grad = fx_rel_rows(grad, ref_grad, NULL, f->B * f->T, f->D);
    CHECK(e_logits <= 1e-4, "%s: logits rel err %.2e", f->name, e_logits);
    CHECK(e_loss <= 1e-5, "%s: loss %.8f vs %.8f (rel %.2e)", f->name, loss, ref_loss[0], e_loss);
    CHECK(e_grad <= 1e-3, "%s: inputs_embeds_grad rel err %.2e", f->name, e_grad);
    printf("%s: logits rel err %.2e, loss %.7f vs %.7f (rel %.2e), d inputs_embeds rel err %.2e\n",
           f->name, e_logits, loss, ref_loss[0], e_loss, e_grad);
    /* the loss alone (no dlogits) is the same number */
    double loss2 = loss_and_grad(f, a, embeds, NULL, NULL);
    CHECK(loss2 == loss, "%s: loss without gradients %.9f vs %.9f", f->name, loss2, loss);
    free(logits), free(ref_logits), free(ref_loss), free(ref_grad), free(grad);
    a->used = mark;
}

/* ---- finite differences -------------------------------------------------------------- */

/* embeds + s * dir, uploaded. */
static tensor shifted(arena *a, const fixture *f, const float *x, const float *dir, double s) {
    int64_t n = f->B * f->T * f->D;
    float *h = tl_alloc((size_t)n * sizeof *h);
    for (int64_t i = 0; i < n; i++) h[i] = (float)(x[i] + s * dir[i]);
    tensor t = upload_f32(a, h, f->B, f->T, f->D);
    free(h);
    return t;
}

/* A unit direction: 0.8 of the unit gradient plus 0.6 of a random unit
 * vector (orthogonalised), so the directional derivative is large against
 * the f32 noise of the loss while still probing a random direction. */
static float *probe_direction(const float *grad, int64_t n) {
    float *dir = tl_alloc((size_t)n * sizeof *dir);
    fill_normal(dir, n, 1.0);
    double gg = dot_f32(grad, grad, n), rg = dot_f32(dir, grad, n);
    for (int64_t i = 0; i < n; i++) dir[i] -= (float)(rg / gg * grad[i]);
    double rn = sqrt(dot_f32(dir, dir, n)), gn = sqrt(gg);
    for (int64_t i = 0; i < n; i++) dir[i] = (float)(0.8 * grad[i] / gn + 0.6 * dir[i] / rn);
    return dir;
}

/* Step sizes h and h/2 (in the embedding space's norm, ~25 here). The f32
 * forward leaves ~1e-7 relative noise in the loss, which favours large
 * steps; OPT's ReLU kinks crossed by a step add an error that shrinks only
 * like h (on the fixture: 2e-3 at h = 2e-2; over 60 random directions at
 * most 1.2e-3 at h = 2.5e-3 and 9e-4 at h = 1.25e-3), so OPT gets smaller
 * steps than the smooth LLaMA (~1e-5 at h = 2e-2). */
static void fd_steps(const fixture *f, double steps[2]) {
    steps[0] = f->m->cfg.arch == DEC_OPT ? 1.25e-3 : 2e-2;
    steps[1] = steps[0] / 2;
}

/* A scalar function of inputs_embeds x; ctx holds what it needs besides f. */
typedef double (*fd_objective)(fixture *f, arena *a, const tensor *x, const void *ctx);

/* For both of fd_steps' step sizes: the rel err of obj's central difference
 * along dir at transformers' inputs_embeds against the analytic slope. */
static void fd_errors(fixture *f, arena *a, fd_objective obj, const void *ctx, const float *dir,
                      double analytic, double steps[2], double err[2]) {
    fd_steps(f, steps);
    for (int k = 0; k < 2; k++) {
        size_t mark = a->used;
        tensor xp = shifted(a, f, f->embeds, dir, steps[k]);
        tensor xm = shifted(a, f, f->embeds, dir, -steps[k]);
        double numeric = (obj(f, a, &xp, ctx) - obj(f, a, &xm, ctx)) / (2 * steps[k]);
        err[k] = fabs(numeric - analytic) / fmax(fabs(analytic), 1e-8);
        a->used = mark;
    }
}

static double loss_objective(fixture *f, arena *a, const tensor *x, const void *ctx) {
    (void)ctx;
    size_t mark = a->used;
    double loss = loss_and_grad(f, a, x, NULL, NULL);
    a->used = mark;
    return loss;
}

/* Central differences along probe_direction at both step sizes; both must
 * match <grad, dir>. */
static void check_loss_fd(fixture *f, arena *a) {
    int64_t n = f->B * f->T * f->D;
    size_t mark = a->used;
    tensor x = upload_f32(a, f->embeds, f->B, f->T, f->D);
    tensor d_embeds = arena_new(a, DT_F32, f->B, f->T, f->D);
    loss_and_grad(f, a, &x, &d_embeds, NULL);
    float *grad = fx_download_f32(&d_embeds);
    float *dir = probe_direction(grad, n);
    double analytic = dot_f32(grad, dir, n), steps[2], err[2];
    fd_errors(f, a, loss_objective, NULL, dir, analytic, steps, err);
    CHECK(err[0] <= 2e-3 && err[1] <= 2e-3,
          "%s: d loss / d inputs_embeds vs finite differences: rel err %.2e (h=%.2g), %.2e "
          "(h=%.2g), <grad, dir> = %.4g",
          f->name, err[0], steps[0], err[1], steps[1], analytic);
    printf("%s: loss gradient vs central differences: rel err %.2e (h=%.2g), %.2e (h=%.2g)\n",
           f->name, err[0], steps[0], err[1], steps[1]);
    free(dir), free(grad);
    a->used = mark;
}

/* J = <hidden_states[layer], R>: its gradient comes from decoder_backward's
 * d_hidden path; checked against central differences of J. */
static double hidden_objective(fixture *f, arena *a, const tensor *x, int64_t layer,
                               const float *r, tensor *d_embeds) {
    size_t mark = a->used;
    decoder_pass p;
    decoder_fwd_opts o = {.want_hidden = 1, .hidden_layer = layer, .for_backward = d_embeds != NULL};
    decoder_forward(f->m, a, x, f->mask, &o, &p);
    float *h = fx_download_f32(&p.hidden);
    int64_t n = f->B * f->T * f->D;
    double j = dot_f32(h, r, n);
    if (d_embeds) {
        tensor dh = upload_f32(a, r, f->B, f->T, f->D);
        decoder_backward(f->m, a, &p, NULL, &dh, d_embeds);
    }
    free(h);
    decoder_pass_release(&p);
    a->used = mark;
    return j;
}

typedef struct hidden_probe {
    int64_t layer;
    const float *r;
} hidden_probe;

static double hidden_probe_objective(fixture *f, arena *a, const tensor *x, const void *ctx) {
    const hidden_probe *hp = ctx;
    return hidden_objective(f, a, x, hp->layer, hp->r, NULL);
}

/* The same check for J = <hidden_states[layer], R> with R random on the
 * real tokens (the backward from d_hidden, stopping below the top). */
static void check_hidden_fd(fixture *f, arena *a, int64_t layer) {
    int64_t n = f->B * f->T * f->D;
    float *r = tl_alloc((size_t)n * sizeof *r);
    fill_normal(r, n, 1.0);
    for (int64_t i = 0; i < n; i++)
        if (!f->mask[i / f->D]) r[i] = 0; /* pad rows differ from transformers; keep them out */
    size_t mark = a->used;
    tensor d_embeds = arena_new(a, DT_F32, f->B, f->T, f->D);
    tensor x = upload_f32(a, f->embeds, f->B, f->T, f->D);
    hidden_objective(f, a, &x, layer, r, &d_embeds);
    float *grad = fx_download_f32(&d_embeds);
    float *dir = probe_direction(grad, n);
    double analytic = dot_f32(grad, dir, n), steps[2], err[2];
    hidden_probe probe = {layer, r};
    fd_errors(f, a, hidden_probe_objective, &probe, dir, analytic, steps, err);
    CHECK(err[0] <= 2e-3 && err[1] <= 2e-3,
          "%s: backward from hidden_states[%lld] vs finite differences: rel err %.2e, %.2e",
          f->name, (long long)layer, err[0], err[1]);
    printf("%s: backward from hidden_states[%lld] vs central differences: rel err %.2e (h=%.2g), "
           "%.2e (h=%.2g)\n",
           f->name, (long long)layer, err[0], steps[0], err[1], steps[1]);
    free(dir), free(r), free(grad);
    a->used = mark;
}

/* ---- KV cache ------------------------------------------------------------------------ */

/* [b, t0, t0 + n) rows of a host [B, T, C] array as a new [B, n, C] tensor. */
static tensor upload_cols(arena *a, const float *x, int64_t B, int64_t T, int64_t C, int64_t t0,
                          int64_t n) {
    tensor t = arena_new(a, DT_F32, B, n, C);
    for (int64_t b = 0; b < B; b++)
        be->upload((float *)t.data + b * n * C, x + (b * T + t0) * C, (size_t)(n * C) * 4);
    return t;
}

static int32_t *mask_cols(const int32_t *mask, int64_t B, int64_t T, int64_t t0, int64_t n) {
    int32_t *m = tl_alloc((size_t)(B * n) * sizeof *m);
    for (int64_t b = 0; b < B; b++) memcpy(m + b * n, mask + b * T + t0, (size_t)n * sizeof *m);
    return m;
}

/* Prefill T - steps tokens, then `steps` one-token steps; the logits of
 * every new position against the full forward's (rows that are real
 * tokens). last_only asks each call for the last position's logits only. */
static double cache_vs_full(const decoder *m, arena *a, const float *x, const int32_t *mask,
                            int64_t B, int64_t T, int64_t steps, decoder_pos_mode mode,
                            int last_only, const float *full) {
    int64_t D = m->cfg.hidden, V = m->cfg.vocab, pre = T - steps;
    decoder_cache c;
    decoder_cache_init(&c, m, B, T, mode);
    double worst = 0;
    for (int64_t t0 = 0; t0 < T; t0 += (t0 == 0 ? pre : 1)) {
        int64_t n = t0 == 0 ? pre : 1;
        size_t mark = a->used;
        tensor e = upload_cols(a, x, B, T, D, t0, n);
        int32_t *mk = mask_cols(mask, B, T, t0, n);
        tensor logits = arena_new(a, DT_F32, B, last_only ? 1 : n, V);
        fx_poison_tensor(&logits);
        decoder_step(m, &c, a, &e, mk, &logits);
        float *got = fx_download_f32(&logits);
        int64_t first = last_only ? t0 + n - 1 : t0, cnt = last_only ? 1 : n;
        for (int64_t b = 0; b < B; b++) {
            const float *ref = full + (b * T + first) * V;
            double err = fx_rel_rows(got + b * cnt * V, ref, mask + b * T + first, cnt, V);
            worst = fmax(worst, err);
        }
        free(got), free(mk);
        a->used = mark;
    }
    CHECK(c.len == T, "cache length %lld after %lld tokens", (long long)c.len, (long long)T);
    decoder_cache_free(&c);
    return worst;
}

static float *full_logits(const decoder *m, arena *a, const float *x, const int32_t *mask,
                          int64_t B, int64_t T, decoder_pos_mode mode) {
    size_t mark = a->used;
    tensor e = upload_f32(a, x, B, T, m->cfg.hidden);
    decoder_pass p;
    decoder_fwd_opts o = {.want_logits = 1, .pos_mode = mode};
    decoder_forward(m, a, &e, mask, &o, &p);
    float *l = fx_download_f32(&p.logits);
    decoder_pass_release(&p);
    a->used = mark;
    return l;
}

static void check_cache(fixture *f, arena *a) {
    float *full = full_logits(f->m, a, f->embeds, f->mask, f->B, f->T, DEC_POS_ARANGE);
    float *ref = fx_read_f32_n(f->ex, "logits", f->B * f->T * f->V);
    double e_full = fx_rel_rows(full, ref, f->mask, f->B * f->T, f->V);
    double e_all = cache_vs_full(f->m, a, f->embeds, f->mask, f->B, f->T, 3, DEC_POS_ARANGE, 0, full);
    double e_last = cache_vs_full(f->m, a, f->embeds, f->mask, f->B, f->T, 3, DEC_POS_ARANGE, 1, full);
    CHECK(e_full <= 1e-4 && e_all <= 1e-4 && e_last <= 1e-4,
          "%s: KV cache logits rel err %.2e (every position), %.2e (last only); full %.2e",
          f->name, e_all, e_last, e_full);
    printf("%s: KV cache (prefill %lld + 3 steps) vs full forward: rel err %.2e (every position), "
           "%.2e (last position only)\n",
           f->name, (long long)(f->T - 3), e_all, e_last);
    free(full), free(ref);
}

/* ---- padding ------------------------------------------------------------------------------ */

/* Row b of the fixture placed in a batch of 2 with `pad` garbage pad tokens
 * on the left (or right) of it, next to the unpadded row: the padded row's
 * real positions must give the unpadded logits, in the full forward and
 * through the cache. LLaMA uses generate()'s mask positions here. */
static void check_padding(fixture *f, arena *a, int left) {
    int64_t b = f->B - 1, len = 0, pad = 5, D = f->D, V = f->V;
    while (len < f->T && f->mask[b * f->T + len]) len++;
    int64_t T = len + pad;
    float *x = tl_alloc((size_t)(2 * T * D) * 4);
    int32_t *mask = tl_alloc((size_t)(2 * T) * sizeof *mask);
    fill_normal(x, 2 * T * D, 3.0); /* garbage in every pad slot */
    int64_t off = left ? pad : 0;
    for (int64_t t = 0; t < T; t++) {
        mask[t] = t < len;             /* row 0: unpadded sequence, right padding */
        mask[T + t] = t >= off && t < off + len; /* row 1: the same, left or right padded */
    }
    memcpy(x, f->embeds + b * f->T * D, (size_t)(len * D) * 4);
    memcpy(x + (T + off) * D, f->embeds + b * f->T * D, (size_t)(len * D) * 4);
    decoder_pos_mode mode = DEC_POS_FROM_MASK;
    float *full = full_logits(f->m, a, x, mask, 2, T, mode);
    double err = fx_rel_rows(full + (T + off) * V, full, NULL, len, V);
    double e_cache = cache_vs_full(f->m, a, x, mask, 2, T, 3, mode, 0, full);
    CHECK(err <= 1e-5 && e_cache <= 1e-4,
          "%s: %s-padded row vs unpadded: rel err %.2e; through the cache %.2e", f->name,
          left ? "left" : "right", err, e_cache);
    printf("%s: %s padding by %lld: padded vs unpadded row rel err %.2e; cache vs full %.2e\n",
           f->name, left ? "left" : "right", (long long)pad, err, e_cache);
    free(x), free(mask), free(full);
}

/* Labels shorter than the sequence line up with its end (BLIP-2 passes
 * text-only labels): dropping a leading run of -100 columns must leave the
 * loss and d logits unchanged. */
static void check_short_labels(fixture *f, arena *a, const tensor *embeds) {
    int64_t k = f->T; /* leading columns that are -100 in every row */
    for (int64_t b = 0; b < f->B; b++)
        for (int64_t t = 0; t < k; t++)
            if (f->labels[b * f->T + t] != -100) k = t;
    k -= 1; /* the first kept column is predicted from a dropped position: keep it -100 */
    if (k < 1) return;
    int64_t n = f->T - k;
    int32_t *short_labels = mask_cols(f->labels, f->B, f->T, k, n);
    size_t mark = a->used;
    decoder_pass p;
    decoder_fwd_opts o = {.want_logits = 1};
    decoder_forward(f->m, a, embeds, f->mask, &o, &p);
    tensor d_full = arena_new(a, DT_F32, f->B, f->T, f->V), d_short = arena_new(a, DT_F32, f->B, f->T, f->V);
    double full = decoder_lm_loss(a, &p.logits, f->labels, f->T, &d_full);
    double part = decoder_lm_loss(a, &p.logits, short_labels, n, &d_short);
    float *g1 = fx_download_f32(&d_full), *g2 = fx_download_f32(&d_short);
    double err = rel_err_f32(g2, g1, f->B * f->T * f->V);
    CHECK(full == part && err == 0, "%s: labels for the last %lld positions: loss %.9f vs %.9f, "
          "dlogits rel err %.2e", f->name, (long long)n, part, full, err);
    free(g1), free(g2), free(short_labels);
    decoder_pass_release(&p);
    a->used = mark;
}

/* ---- one fixture ------------------------------------------------------------------------------ */

static void check_fixture(fixture *f, arena *a, const char *image_key, int full) {
    fixture_open(f, DT_F32);
    arena_reset(a);
    if (image_key) check_embeddings(f, a, image_key);
    tensor embeds = upload_f32(a, f->embeds, f->B, f->T, f->D);
    check_against_transformers(f, a, &embeds);
    if (full) {
        check_hidden_states(f, a, &embeds);
        check_short_labels(f, a, &embeds);
        check_loss_fd(f, a);
        check_hidden_fd(f, a, 1);
        check_cache(f, a);
        check_padding(f, a, 1);
        check_padding(f, a, 0);
    }
    fixture_close(f);
}

/* bf16 weights. The LLaVA fixture's values are exact in bf16, so nothing
 * may change; the BLIP-2 fixture's are not, so it gets bf16 rounding's
 * tolerance. */
static void check_bf16_weights(fixture *f, arena *a, double tol) {
    fixture_open(f, DT_BF16);
    arena_reset(a);
    tensor embeds = upload_f32(a, f->embeds, f->B, f->T, f->D);
    float *logits;
    tensor d = arena_new(a, DT_F32, f->B, f->T, f->D);
    loss_and_grad(f, a, &embeds, &d, &logits);
    float *ref = fx_read_f32_n(f->ex, "logits", f->B * f->T * f->V);
    double err = fx_rel_rows(logits, ref, f->mask, f->B * f->T, f->V);
    CHECK(err <= tol, "%s with bf16 weights: logits rel err %.2e (tolerance %.0e)", f->name, err, tol);
    printf("%s with bf16 weights: logits rel err %.2e\n", f->name, err);
    free(logits), free(ref);
    fixture_close(f);
}

/* A plain LlamaForCausalLM / OPTForCausalLM folder: the text config at the
 * top level and weights under model.* / lm_head.* (weights prefix "" and
 * config prefix ""). Made from a fixture: its text_config as config.json,
 * its weights symlinked and reached through model_dir aliases. */
static void check_plain_folder(const char *src, const char *name, const char *from,
                               const char *to, const char *head_to, arena *a) {
    char dir[600];
    snprintf(dir, sizeof dir, "%s/plain_%s", scratch, name);
    fx_link_weights(dir, fixture_dir(src));
    model_dir *fmd = open_dir(fixture_dir(src));
    fx_write_json(fx_join(dir, "config.json").s,
                  cJSON_GetObjectItemCaseSensitive(model_dir_config(fmd), "text_config"));
    model_dir_close(fmd);
    fixture f = {.name = name, .dir = dir, .data_dir = fixture_dir(src), .wprefix = "",
                 .cprefix = ""};
    f.md = open_dir(dir);
    model_dir_alias(f.md, from, to);
    if (head_to) model_dir_alias(f.md, "lm_head.", head_to);
    f.m = load_decoder(f.md, "", "", DT_F32);
    fixture_read_data(&f);
    arena_reset(a);
    float *logits = full_logits(f.m, a, f.embeds, f.mask, f.B, f.T, DEC_POS_ARANGE);
    float *ref = fx_read_f32_n(f.ex, "logits", f.B * f.T * f.V);
    double err = fx_rel_rows(logits, ref, f.mask, f.B * f.T, f.V);
    CHECK(err <= 1e-4, "%s: logits rel err %.2e", name, err);
    printf("%s (plain folder: top-level config, model.* / lm_head.*): logits rel err %.2e\n", name,
           err);
    free(logits), free(ref);
    fixture_close(&f);
}

/* ---- errors ----------------------------------------------------------------------------- */

static const char *g_dir;
static char g_cprefix[32] = "text_config";

/* A scratch model folder: the fixture's weights (symlinked) with a config
 * edited by `edit` (a JSON snippet replacing `from` once). */
static const char *bad_dir(const char *name, const char *src, const char *from, const char *to) {
    static char dir[4][600];
    static int next;
    char *d = dir[next++ & 3], path[700], cfg[700];
    snprintf(d, sizeof dir[0], "%s/%s", scratch, name);
    fx_link_weights(d, fixture_dir(src));
    snprintf(cfg, sizeof cfg, "%s/config.json", fixture_dir(src));
    FILE *in = fopen(cfg, "rb");
    if (!in) printf("FAIL: cannot read %s\n", cfg), exit(1);
    char *text = tl_alloc(1 << 16);
    size_t n = fread(text, 1, (1 << 16) - 1, in);
    text[n] = 0;
    fclose(in);
    char *at = strstr(text, from);
    if (!at) printf("FAIL: '%s' not in %s\n", from, cfg), exit(1);
    snprintf(path, sizeof path, "%s/config.json", d);
    FILE *out = fopen(path, "wb");
    fwrite(text, 1, (size_t)(at - text), out);
    fputs(to, out);
    fputs(at + strlen(from), out);
    fclose(out);
    free(text);
    return d;
}

static void load_g_dir(void) {
    model_dir *md = open_dir(g_dir);
    load_decoder(md, "language_model", g_cprefix, DT_F32);
}

static void expect_error(const char *what, void (*fn)(void), const char *want) {
    char msg[1024];
    int rc = tl_run_child(fn, msg, sizeof msg);
    size_t len = strlen(msg);
    int one_line = len > 0 && strchr(msg, '\n') == msg + len - 1;
    CHECK(rc == 1 && one_line && strstr(msg, want),
          "%s: want exit 1 and one line with '%s', got %d: %s", what, want, rc, msg);
}

/* Bad calls on a good model. */
static int g_case;
static void misuse(void) {
    model_dir *md = open_dir(fixture_dir("llava"));
    decoder *m = load_decoder(md, "language_model", "text_config", DT_F32);
    arena a;
    arena_init(&a, be, 1 << 20);
    int32_t ids[4] = {1, 2, 3, 99999}, labels[4] = {-100, 5, 77777, -100};
    switch (g_case) {
    case 0: decoder_embed_tokens(m, &a, ids, 1, 4); break;
    case 1: {
        tensor e = arena_new(&a, DT_F32, 1, 4, m->cfg.hidden + 1);
        decoder_pass p;
        decoder_fwd_opts o = {.want_logits = 1};
        decoder_forward(m, &a, &e, NULL, &o, &p);
        break;
    }
    case 2: {
        tensor e = arena_new(&a, DT_F32, 1, 4, m->cfg.hidden);
        decoder_pass p;
        decoder_fwd_opts o = {.want_hidden = 1, .hidden_layer = 7};
        decoder_forward(m, &a, &e, NULL, &o, &p);
        break;
    }
    case 3: {
        tensor logits = arena_new(&a, DT_F32, 1, 4, m->cfg.vocab);
        decoder_lm_loss(&a, &logits, labels, 4, NULL);
        break;
    }
    case 4: {
        decoder_cache c;
        decoder_cache_init(&c, m, 1, 3, DEC_POS_ARANGE);
        tensor e = arena_new(&a, DT_F32, 1, 4, m->cfg.hidden), l = arena_new(&a, DT_F32, 1, 1, m->cfg.vocab);
        decoder_step(m, &c, &a, &e, NULL, &l);
        break;
    }
    case 5: {
        tensor e = arena_new(&a, DT_F32, 1, 4, m->cfg.hidden);
        int32_t mask[4] = {1, 1, 2, 0};
        decoder_pass p;
        decoder_fwd_opts o = {.want_logits = 1};
        decoder_forward(m, &a, &e, mask, &o, &p);
        break;
    }
    }
}

static void test_errors(void) {
    g_dir = bad_dir("no_type", "llava", "\"model_type\": \"llama\"", "\"modeltype\": \"llama\"");
    expect_error("missing model_type", load_g_dir, "text_config.model_type");
    g_dir = bad_dir("mistral", "llava", "\"model_type\": \"llama\"", "\"model_type\": \"mistral\"");
    expect_error("unknown architecture", load_g_dir, "'mistral'");
    g_dir = bad_dir("wide", "llava", "\"hidden_size\": 32", "\"hidden_size\": 48");
    expect_error("hidden_size not matching the weights", load_g_dir,
                 "has shape [1743, 32], expected [1743, 48]");
    g_dir = bad_dir("heads", "llava", "\"num_key_value_heads\": 2", "\"num_key_value_heads\": 3");
    expect_error("kv heads not dividing heads", load_g_dir, "not a multiple of num_key_value_heads");
    g_dir = bad_dir("rope", "llava", "\"rope_type\": \"default\"", "\"rope_type\": \"llama3\"");
    expect_error("unsupported rope", load_g_dir, "'llama3'");
    g_dir = bad_dir("proj", "blip2", "\"word_embed_proj_dim\": 40", "\"word_embed_proj_dim\": 20");
    expect_error("OPT project_in/out", load_g_dir, "word_embed_proj_dim is 20 but hidden_size is 40");
    g_dir = bad_dir("postln", "blip2", "\"do_layer_norm_before\": true", "\"do_layer_norm_before\": false");
    expect_error("OPT post-LN", load_g_dir, "do_layer_norm_before");
    g_dir = bad_dir("vocab", "blip2", "\"vocab_size\": 1505", "\"vocab_size\": 1500");
    expect_error("OPT vocab not matching", load_g_dir, "has shape [1505, 40], expected [1500, 40]");
    const char *want[] = {"input_ids[0][3] is 99999, outside the vocabulary",
                          "inputs_embeds has shape [1, 4, 33], expected [batch, tokens, 32]",
                          "hidden layer 7 is out of range",
                          "labels[0][2] is 77777, outside the vocabulary",
                          "KV cache full: 0 cached + 4 new tokens exceed its capacity of 3",
                          "attention_mask[0][2] is 2, expected 0 or 1"};
    for (g_case = 0; g_case < 6; g_case++) expect_error(want[g_case], misuse, want[g_case]);
}

static void remove_scratch(void) {
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", scratch);
    if (system(cmd)) printf("warning: could not remove %s\n", scratch);
}

int main(void) {
    tests_begin("test_decoder");
    be = backend_cpu();
    snprintf(scratch, sizeof scratch, "/tmp/aimc_test_decoder_XXXXXX");
    if (!mkdtemp(scratch)) printf("FAIL: mkdtemp\n"), exit(1);
    test_errors(); /* first: the forked children must not inherit an OpenMP pool */
    arena a;
    arena_init(&a, be, ARENA_BYTES);
    fixture llava = {.name = "llava", .dir = fixture_dir("llava"), .data_dir = fixture_dir("llava"),
                     .wprefix = "language_model", .cprefix = "text_config"};
    fixture old = {.name = "llava (old keys, bf16, 2 shards, v4 config)",
                   .dir = fixture_dir("llava_oldkeys"), .data_dir = fixture_dir("llava"),
                   .wprefix = "language_model", .cprefix = "text_config"};
    fixture blip2 = {.name = "blip2", .dir = fixture_dir("blip2"), .data_dir = fixture_dir("blip2"),
                     .wprefix = "language_model", .cprefix = "text_config"};
    check_fixture(&llava, &a, "image_features", 1);
    check_fixture(&old, &a, NULL, 0);
    check_fixture(&blip2, &a, "language_projection_output", 1);
    check_plain_folder("llava", "llama", "model.", "model.language_model.", NULL, &a);
    check_plain_folder("blip2", "opt", "model.", "language_model.model.", NULL, &a);
    check_bf16_weights(&llava, &a, 1e-4);
    check_bf16_weights(&blip2, &a, 2e-2);
    arena_free(&a);
    remove_scratch();
    return tests_done();
}
