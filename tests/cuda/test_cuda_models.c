/* test_cuda_models: whole models on the cuda backend, against transformers'
 * numbers in tests/fixtures/models (scripts/make_model_fixtures.py, f32), the
 * PyTorch AIM reference in tests/fixtures/aim, and the cpu backend (f32). The
 * cuda backend runs as a real run does: weights and activations stored in
 * bf16 (be->act_dtype), f32 math inside every op.
 *  1. `aimc forward --device cuda` (cmd_forward) on the LLaVA, BLIP-2 and
 *     CLIP fixtures: logits (non-pad rows), last hidden states, image
 *     tokens, loss; CLIP's embeds, logits, loss, both towers' last hidden
 *     states.
 *  2. Through the API on cuda: d loss / d image tokens (the decoder's input
 *     gradient gathered at the image rows) and d loss / d inputs_embeds
 *     (non-pad rows), against transformers and the cpu.
 *  3. One AIM projector step (aim_batch_step) from the same projector and
 *     batch (tests/fixtures/aim files) on cuda and cpu: loss and gradients
 *     against the cpu's and PyTorch's; then projector_step (clipped AdamW)
 *     on both from the same gradients.
 *
 * Tolerances: each comes from the arithmetic the cuda path adds to the f32
 * reference, not from the errors measured here.
 *  - Tensors (rel err ||got - ref|| / ||ref||). A bf16 store keeps 8
 *    significant bits: |err| <= 2^-8 |x|, an rms relative error of 1.7e-3
 *    for Gaussian values; BF16_EPS = 2^-9 = 1.95e-3 per rounding, rounded
 *    up. A transformer layer rounds about ROUNDINGS_PER_LAYER = 20 times (6
 *    or 7 weight matrices once; the norm output, q, k, v, attention output,
 *    its projection, the residual sum, the MLP pre-activations, activation
 *    and output, the second residual: host/vit.c, host/decoder.c).
 *    Independent roundings add in quadrature, so a value n layer-equivalents
 *    deep is off by about BF16_EPS sqrt(20 n) = tol_layers(n), n = the
 *    layers on its path plus one for the embeddings, projections and head
 *    around them (struct depth): LLaVA's image tokens 2 vision layers
 *    (vision_feature_layer -2 of 3) + 1 = 3 (1.5e-2), its logits + 2 LM
 *    layers = 5 (2.0e-2); BLIP-2's image tokens 2 vision + 2 Q-Former
 *    layers (self-attention, cross-attention, MLP: 1.5 each) + 1 = 6
 *    (2.1e-2), logits 8 (2.5e-2); CLIP's 2-layer towers 3 (1.5e-2). A
 *    gradient at the LM input also goes back through the LM, a backward
 *    layer rounding about twice as often: + 2 x 2 LM layers (LLaVA 9:
 *    2.6e-2, BLIP-2 12: 3.0e-2). The AIM gradient is d fused^T x hidden:
 *    the aggregated hidden states (image + LM + 1) and d fused (image + 3
 *    LM + 1) add (LLaVA 14: 3.3e-2, BLIP-2 20: 3.9e-2). This holds for
 *    smooth, well-conditioned layers.
 *  - Gradients are not smooth in the activations where a ReLU is (BLIP-2's
 *    OPT): a unit whose pre-activation changes sign switches its whole
 *    gradient on or off. On the cpu in f32 (measured 2026-11-23), scaling
 *    BLIP-2's inputs_embeds by (1 + 1e-3 N(0, 1)) flips one fc1 unit of
 *    3680 and moves d loss / d inputs_embeds by 5.5e-2, while noise up to
 *    1e-4 moves it by 0.5 x the noise (LLaVA, SiLU: 0.97 x the noise from
 *    1e-6 to 1e-2). No rounding model bounds that, so each gradient's
 *    tolerance adds, in quadrature, the reference's own spread: the largest
 *    change of the cpu's (f32) result over SPREAD_DRAWS runs with the LM's
 *    input weights (token embeddings, image-token projection) scaled by (1
 *    + eta N(0, 1)), eta = the image tokens' budget tol_image. For BLIP-2
 *    that makes the input gradients' tolerance about 0.1: only O(1)
 *    mistakes show there; its AIM gradients (about 0.08) are sharper.
 *  - CLIP logits = s cos(image, text), s = exp(logit_scale): random
 *    embeddings' cosines are small, so the logits' relative error is not
 *    the embeddings'. With unit rows |d(a.b)| <= |da| + |db| + |da||db|, so
 *    rms |d logits| / s <= e_img + e_txt + e_img e_txt (the embeddings' own
 *    rel errs, checked above): the comparison with transformers. What
 *    gives it teeth: the logits must be s times the cosines of cuda's own
 *    embeddings to f32 precision (TOL_F32).
 *  - Losses (LM, CLIP): a loss L = mean_r lse(z_r) - z_r[y_r] moves with
 *    its logits. Taylor at transformers' logits z, d = got - z: L(got) -
 *    L(z) = mean_r <softmax(z_r) - onehot(y_r), d_r> + R with 0 <= R <=
 *    mean_r max|d_r|^2 / 2 (the Hessian of lse is diag(p) - p p^T). Checked:
 *    |L_cuda - L_ref - first order| <= that bound + LOSS_F32 |L_ref| (the
 *    f32 sums; test_mllm's loss bound): the loss follows its logits, whose
 *    own error is checked above.
 *  - The AIM loss has no logits to follow: its budget is that of the
 *    query's logits with the fused tokens' error added, tol_layers(2 image
 *    + 2 LM + 2). A coarse check: the gradients carry the step's parity
 *    (tests/fixtures/aim/README.md: every structural slip there moves them
 *    by >= 0.23).
 *  - projector_step from identical gradients: f32 on both sides, TOL_F32
 *    (test_cuda_ops' f32 bound), and the parameters must have moved.
 *
 * Without a usable GPU this prints "cuda tests: no GPU (reason)" and fails,
 * as test_cuda_ops does. */
#include "../testlib.h"
#include "cuda_test.h"
#include "../model_fixture.h"
#include "../../host/aim.h"
#include "../../host/commands.h"
#include "../../host/mllm.h"
#include "../../kernels/check.h"

#define BF16_EPS 0x1p-9
#define ROUNDINGS_PER_LAYER 20
#define LOSS_F32 1e-5
#define TOL_F32 1e-5
#define SPREAD_DRAWS 3
#define ARENA_BYTES ((size_t)64 << 20)

static const backend *CPU, *GPU;
static char tmp_dir[64];

/* Layer-equivalents from the inputs to the image tokens and through the
 * language model (see the top comment). */
typedef struct depth {
    const char *name;
    double image, lm;
    const char *img_key; /* the image tokens' name in expected.safetensors */
} depth;

static const depth LLAVA = {"llava", 2, 2, "image_features"};
static const depth BLIP2 = {"blip2", 5, 2, "language_projection_output"};

static double tol_layers(double n) { return BF16_EPS * sqrt(ROUNDINGS_PER_LAYER * n); }
static double tol_image(const depth *d) { return tol_layers(d->image + 1); }
static double tol_logits(const depth *d) { return tol_layers(d->image + d->lm + 1); }
static double tol_input_grad(const depth *d) { return tol_layers(d->image + 3 * d->lm + 1); }
static double tol_aim_grad(const depth *d) { return tol_layers(2 * d->image + 4 * d->lm + 2); }
static double tol_aim_loss(const depth *d) { return tol_layers(2 * d->image + 2 * d->lm + 2); }

static fx_path fixture(const char *name) {
    return fx_join(fx_repo_dir("tests/fixtures/models").s, name);
}

/* ---- the loss through its logits ------------------------------------------------ */

/* For the rows r with target[r] >= 0 (cols logits each): the first-order
 * change of the mean cross-entropy from ref to got, and the bound on the
 * remainder (top comment). NaN in got makes first NaN. */
typedef struct ce_shift {
    double first, rest;
} ce_shift;

static ce_shift ce_shift_of(const float *ref, const float *got, const int32_t *target,
                            int64_t rows, int64_t cols) {
    ce_shift s = {0, 0};
    int64_t n = 0;
    for (int64_t r = 0; r < rows; r++) {
        if (target[r] < 0) continue;
        const float *z = ref + r * cols, *g = got + r * cols;
        double mx = -INFINITY, sum = 0, dot = 0, dmax = 0;
        for (int64_t v = 0; v < cols; v++) mx = fmax(mx, z[v]);
        for (int64_t v = 0; v < cols; v++) sum += exp(z[v] - mx);
        for (int64_t v = 0; v < cols; v++) {
            double d = (double)g[v] - z[v];
            dot += exp(z[v] - mx) / sum * d;
            dmax = fmax(dmax, fabs(d));
        }
        s.first += dot - ((double)g[target[r]] - z[target[r]]);
        s.rest += 0.5 * dmax * dmax;
        n++;
    }
    if (n) s.first /= (double)n, s.rest /= (double)n;
    return s;
}

/* |got - ref - first| within the remainder bound and the f32 sums. */
static void check_loss(const char *name, double got, double ref, ce_shift s) {
    double off = fabs(got - ref - s.first), bound = s.rest + LOSS_F32 * fabs(ref);
    CHECK(off <= bound, "%s: loss %.7f vs %.7f: %.2e off its logits' first-order change %.2e "
          "(bound %.2e)", name, got, ref, off, s.first, bound);
    printf("%s: loss %.7f vs %.7f (rel %.2e; first-order change from the logits %.2e, "
           "left %.2e <= %.2e)\n", name, got, ref, fabs(got - ref) / fabs(ref), s.first, off,
           bound);
}

/* The target of each logits row of a causal LM: the next position's label
 * (-1: none, or -100). */
static int32_t *next_token_targets(const int32_t *labels, int64_t batch, int64_t len) {
    int32_t *t = tl_alloc((size_t)(batch * len) * sizeof *t);
    for (int64_t b = 0; b < batch; b++)
        for (int64_t j = 0; j < len; j++) {
            int32_t y = j + 1 < len ? labels[b * len + j + 1] : -100;
            t[b * len + j] = y < 0 ? -1 : y;
        }
    return t;
}

/* ---- 1. aimc forward --device cuda --------------------------------------------------- */

static void run_forward_cuda(const char *model, const char *out) {
    fx_path inputs = fx_join(model, "inputs.safetensors");
    char *argv[] = {"forward", "--model", (char *)model, "--inputs", inputs.s, "--out",
                    (char *)out, "--device", "cuda", NULL};
    int rc = cmd_forward(9, argv);
    CHECK(rc == 0, "aimc forward --device cuda --model %s: exit %d", model, rc);
}

static double scalar(st_file *f, const char *name) {
    float *v = fx_read_f32_n(f, name, 1);
    double x = v[0];
    free(v);
    return x;
}

static void check_forward_mllm(const depth *d) {
    fx_path dir = fixture(d->name), out = fx_join(tmp_dir, "out.safetensors");
    run_forward_cuda(dir.s, out.s);
    st_file *o = fx_open_st(out.s), *ex = fx_open_st(fx_join(dir.s, "expected.safetensors").s);
    st_file *in = fx_open_st(fx_join(dir.s, "inputs.safetensors").s);
    const st_tensor *ids = fx_need(in, "input_ids");
    int64_t B = ids->shape[0], T = ids->shape[1], V = fx_need(ex, "logits")->shape[2];
    int32_t *mask = fx_read_i32_n(in, "attention_mask", B * T);
    int32_t *labels = fx_read_i32_n(in, "labels", B * T);
    double e_log = fx_out_vs(o, "logits", ex, "logits", mask, B * T);
    double e_hid = fx_out_vs(o, "hidden_states", ex, "hidden_states.2", mask, B * T);
    double e_img = fx_out_vs(o, "image_features", ex, d->img_key, NULL, 1);
    CHECK(e_log <= tol_logits(d) && e_hid <= tol_logits(d),
          "%s: cuda logits rel err %.2e, last hidden states %.2e (tol %.2e)", d->name, e_log,
          e_hid, tol_logits(d));
    CHECK(e_img <= tol_image(d), "%s: cuda %s rel err %.2e (tol %.2e)", d->name, d->img_key,
          e_img, tol_image(d));
    printf("%s: aimc forward --device cuda: logits rel err %.2e, hidden_states.2 %.2e (tol "
           "%.2e), %s %.2e (tol %.2e)\n", d->name, e_log, e_hid, tol_logits(d), d->img_key, e_img,
           tol_image(d));
    float *got = fx_read_f32_n(o, "logits", B * T * V);
    float *ref = fx_read_f32_n(ex, "logits", B * T * V);
    int32_t *target = next_token_targets(labels, B, T);
    char what[64];
    snprintf(what, sizeof what, "%s: cuda", d->name);
    check_loss(what, scalar(o, "loss"), scalar(ex, "loss"),
               ce_shift_of(ref, got, target, B * T, V));
    free(got), free(ref), free(target), free(mask), free(labels);
    st_close(o), st_close(ex), st_close(in);
}

/* CE shift of CLIP's loss: the mean of the image->text and text->image
 * cross-entropies, each over N rows whose target is the diagonal. */
static ce_shift clip_ce_shift(st_file *o, st_file *ex, int64_t n) {
    int32_t *diag = tl_alloc((size_t)n * sizeof *diag);
    for (int64_t i = 0; i < n; i++) diag[i] = (int32_t)i;
    ce_shift s = {0, 0};
    const char *names[] = {"logits_per_image", "logits_per_text"};
    for (int k = 0; k < 2; k++) {
        float *got = fx_read_f32_n(o, names[k], n * n), *ref = fx_read_f32_n(ex, names[k], n * n);
        ce_shift one = ce_shift_of(ref, got, diag, n, n);
        s.first += one.first / 2, s.rest += one.rest / 2;
        free(got), free(ref);
    }
    free(diag);
    return s;
}

/* rel err of OUT's logits against scale * a b^T of OUT's own embeddings, in
 * float64: the logits must be the scaled cosines of the embeddings. */
static double clip_logits_vs_embeds(st_file *o, const char *logits, const char *a_name,
                                    const char *b_name, double scale) {
    float *a = fx_read_f32(o, a_name, NULL), *b = fx_read_f32(o, b_name, NULL);
    const st_tensor *at = fx_need(o, a_name), *bt = fx_need(o, b_name);
    int64_t ra = at->shape[0], rb = bt->shape[0], p = at->shape[1];
    float *l = fx_read_f32_n(o, logits, ra * rb);
    double num = 0, den = 0;
    for (int64_t i = 0; i < ra; i++)
        for (int64_t j = 0; j < rb; j++) {
            double dot = 0;
            for (int64_t k = 0; k < p; k++) dot += (double)a[i * p + k] * b[j * p + k];
            double want = scale * dot, diff = l[i * rb + j] - want;
            num += diff * diff, den += want * want;
        }
    free(a), free(b), free(l);
    return bt->shape[1] == p ? sqrt(num / den) : INFINITY;
}

/* rms |got - ref| / scale of a CLIP logits matrix. */
static double clip_logits_err(st_file *o, st_file *ex, const char *name, double scale) {
    int64_t n;
    float *ref = fx_read_f32(ex, name, &n), *got = fx_read_f32_n(o, name, n);
    double sum = 0;
    for (int64_t i = 0; i < n; i++) sum += ((double)got[i] - ref[i]) * ((double)got[i] - ref[i]);
    free(ref), free(got);
    return sqrt(sum / (double)n) / scale;
}

static void check_forward_clip(void) {
    fx_path dir = fixture("clip"), out = fx_join(tmp_dir, "clip_out.safetensors");
    run_forward_cuda(dir.s, out.s);
    st_file *o = fx_open_st(out.s), *ex = fx_open_st(fx_join(dir.s, "expected.safetensors").s);
    st_file *w = fx_open_st(fx_join(dir.s, "model.safetensors").s);
    double tol = tol_layers(2 + 1); /* 2-layer towers, + 1: embeddings and projections */
    double e_img = fx_out_vs(o, "image_embeds", ex, "image_embeds", NULL, 1);
    double e_txt = fx_out_vs(o, "text_embeds", ex, "text_embeds", NULL, 1);
    double e_th = fx_out_vs(o, "text_hidden_states", ex, "text_hidden_states.2", NULL, 1);
    double e_vh = fx_out_vs(o, "vision_hidden_states", ex, "vision_hidden_states.2", NULL, 1);
    CHECK(e_img <= tol && e_txt <= tol && e_th <= tol && e_vh <= tol,
          "clip: cuda embeds rel err image %.2e text %.2e, last hidden states text %.2e vision "
          "%.2e (tol %.2e)", e_img, e_txt, e_th, e_vh, tol);
    double scale = exp(scalar(w, "logit_scale")), bound = e_img + e_txt + e_img * e_txt;
    double e_lpi = clip_logits_err(o, ex, "logits_per_image", scale);
    double e_lpt = clip_logits_err(o, ex, "logits_per_text", scale);
    double c_lpi =
        clip_logits_vs_embeds(o, "logits_per_image", "image_embeds", "text_embeds", scale);
    double c_lpt =
        clip_logits_vs_embeds(o, "logits_per_text", "text_embeds", "image_embeds", scale);
    CHECK(e_lpi <= bound && e_lpt <= bound,
          "clip: cuda logits rms err / scale: per image %.2e, per text %.2e (bound %.2e)", e_lpi,
          e_lpt, bound);
    CHECK(c_lpi <= TOL_F32 && c_lpt <= TOL_F32,
          "clip: cuda logits vs scale x its own embeds' cosines: rel err %.2e, %.2e (tol %.0e)",
          c_lpi, c_lpt, TOL_F32);
    printf("clip: aimc forward --device cuda: embeds rel err image %.2e text %.2e, hidden states "
           "text %.2e vision %.2e (tol %.2e); logits rms err / scale %.2e, %.2e (bound %.2e), "
           "vs its embeds' cosines %.2e, %.2e\n",
           e_img, e_txt, e_th, e_vh, tol, e_lpi, e_lpt, bound, c_lpi, c_lpt);
    int64_t n = fx_need(ex, "logits_per_image")->shape[0];
    check_loss("clip: cuda", scalar(o, "loss"), scalar(ex, "loss"), clip_ce_shift(o, ex, n));
    st_close(o), st_close(ex), st_close(w);
}

/* ---- the reference's spread --------------------------------------------------------- */

/* The weights that make the LM's input: the token embeddings (OPT: also the
 * tied head) and the last linear of the image path. */
static void lm_input_weights(mllm *m, tensor *w[2]) {
    w[0] = &m->lm->embed;
    w[1] = m->arch == MLLM_LLAVA ? &m->proj2.w : &m->lang_proj.w;
}

/* Multiplies every value of the cpu model's LM-input weights by (1 + eta
 * N(0, 1)) (restore: put back `saved`, from the first call). */
static void perturb_lm_inputs(mllm *m, double eta, float *saved[2], int restore) {
    tensor *w[2];
    lm_input_weights(m, w);
    for (int i = 0; i < 2; i++) {
        if (w[i]->be != CPU || w[i]->dt != DT_F32)
            printf("FAIL: perturb_lm_inputs: not a cpu f32 model\n"), exit(1);
        int64_t n = tensor_numel(w[i]);
        float *x = w[i]->data;
        if (!saved[i]) {
            saved[i] = tl_alloc((size_t)n * sizeof *x);
            memcpy(saved[i], x, (size_t)n * sizeof *x);
        }
        for (int64_t j = 0; j < n; j++)
            x[j] = restore ? saved[i][j] : (float)(saved[i][j] * (1 + eta * rng_normal()));
    }
}

/* ---- 2. d loss / d image tokens on cuda ------------------------------------------------ */

typedef struct batch {
    st_file *in, *ex;
    int64_t B, T;
    int32_t *ids, *mask, *labels;
    float *pixels;
    tensor px; /* host f32 */
} batch;

static void batch_open(batch *b, const char *name) {
    fx_path dir = fixture(name);
    b->in = fx_open_st(fx_join(dir.s, "inputs.safetensors").s);
    b->ex = fx_open_st(fx_join(dir.s, "expected.safetensors").s);
    const st_tensor *ids = fx_need(b->in, "input_ids"), *px = fx_need(b->in, "pixel_values");
    b->B = ids->shape[0];
    b->T = ids->shape[1];
    b->ids = fx_read_i32_n(b->in, "input_ids", b->B * b->T);
    b->mask = fx_read_i32_n(b->in, "attention_mask", b->B * b->T);
    b->labels = fx_read_i32_n(b->in, "labels", b->B * b->T);
    b->pixels = fx_read_f32(b->in, "pixel_values", NULL);
    b->px = tensor_wrap(b->pixels, DT_F32, CPU, 4, px->shape);
}

static void batch_close(batch *b) {
    free(b->ids), free(b->mask), free(b->labels), free(b->pixels);
    st_close(b->in), st_close(b->ex);
}

/* d loss / d image tokens [N, n, D] and d loss / d inputs_embeds [B, T, D]
 * of the fixture batch on m's backend, as host f32. */
typedef struct input_grads {
    float *img, *all;
    int64_t n_img, n_all;
} input_grads;

static input_grads input_grads_of(const mllm *m, const batch *b) {
    const backend *be = m->be;
    arena a;
    arena_init(&a, be, ARENA_BYTES);
    fx_poison_arena(&a);
    tensor img = mllm_image_tokens(m, &a, &b->px);
    tensor embeds = mllm_build_inputs(m, &a, b->ids, b->B, b->T, &img);
    decoder_pass p;
    decoder_fwd_opts o = {.want_logits = 1, .for_backward = 1};
    decoder_forward(m->lm, &a, &embeds, b->mask, &o, &p);
    tensor dlogits = arena_tensor(&a, DT_F32, 3, p.logits.shape);
    decoder_lm_loss(&a, &p.logits, b->labels, b->T, &dlogits);
    tensor d_embeds = arena_tensor(&a, be->act_dtype, 3, embeds.shape);
    decoder_backward(m->lm, &a, &p, &dlogits, NULL, &d_embeds);
    tensor d_img = mllm_gather_image_rows(m, &a, b->ids, b->B, b->T, &d_embeds);
    input_grads g = {fx_download_f32(&d_img), fx_download_f32(&d_embeds), tensor_numel(&d_img),
                     tensor_numel(&d_embeds)};
    decoder_pass_release(&p);
    arena_free(&a);
    return g;
}

static void input_grads_free(input_grads *g) { free(g->img), free(g->all); }

/* rel errs of g against r: image rows, and every non-pad row. */
static void input_grads_err(const input_grads *g, const input_grads *r, const batch *b,
                            double e[2]) {
    int64_t d = g->n_all / (b->B * b->T);
    e[0] = g->n_img == r->n_img ? rel_err_f32(g->img, r->img, g->n_img) : INFINITY;
    e[1] = fx_rel_rows(g->all, r->all, b->mask, b->B * b->T, d);
}

/* The largest change of the cpu's input gradients when the LM's inputs move
 * by eta (SPREAD_DRAWS draws). */
static void input_grads_spread(mllm *cpu_model, const batch *b, double eta, double spread[2]) {
    input_grads ref = input_grads_of(cpu_model, b);
    float *saved[2] = {NULL, NULL};
    spread[0] = spread[1] = 0;
    for (int k = 0; k < SPREAD_DRAWS; k++) {
        perturb_lm_inputs(cpu_model, eta, saved, 0);
        input_grads g = input_grads_of(cpu_model, b);
        double e[2];
        input_grads_err(&g, &ref, b, e);
        spread[0] = fmax(spread[0], e[0]), spread[1] = fmax(spread[1], e[1]);
        input_grads_free(&g);
    }
    perturb_lm_inputs(cpu_model, eta, saved, 1);
    free(saved[0]), free(saved[1]);
    input_grads_free(&ref);
}

static void check_input_grad(const depth *d) {
    batch b;
    batch_open(&b, d->name);
    mllm *gm = mllm_load(fixture(d->name).s, GPU, GPU->act_dtype);
    mllm *cm = mllm_load(fixture(d->name).s, CPU, DT_F32);
    input_grads g = input_grads_of(gm, &b), c = input_grads_of(cm, &b);
    char key[64];
    snprintf(key, sizeof key, "%s_grad", d->img_key);
    int64_t n_img, n_all;
    float *ref_img = fx_read_f32(b.ex, key, &n_img);
    float *ref_all = fx_read_f32(b.ex, "inputs_embeds_grad", &n_all);
    input_grads r = {ref_img, ref_all, n_img, n_all};
    double e_ref[2], e_cpu[2], spread[2];
    input_grads_err(&g, &r, &b, e_ref);
    input_grads_err(&g, &c, &b, e_cpu);
    input_grads_spread(cm, &b, tol_image(d), spread);
    const char *what[2] = {key, "inputs_embeds_grad (non-pad rows)"};
    for (int i = 0; i < 2; i++) {
        double tol = hypot(tol_input_grad(d), spread[i]);
        CHECK(e_ref[i] <= tol && e_cpu[i] <= tol,
              "%s: cuda %s rel err vs transformers %.2e, vs cpu %.2e (tol %.2e)", d->name,
              what[i], e_ref[i], e_cpu[i], tol);
        printf("%s: cuda backward: %s rel err vs transformers %.2e, vs cpu %.2e (tol %.2e: "
               "rounding %.2e, reference's spread %.2e)\n", d->name, what[i], e_ref[i], e_cpu[i],
               tol, tol_input_grad(d), spread[i]);
    }
    input_grads_free(&g), input_grads_free(&c), input_grads_free(&r);
    mllm_free(gm), mllm_free(cm);
    batch_close(&b);
}

/* ---- 3. one AIM projector step, cuda vs cpu ------------------------------------------- */

static int32_t scalar_i32(st_file *f, const char *name) {
    int32_t *v = fx_read_i32_n(f, name, 1), x = v[0];
    free(v);
    return x;
}

/* An item with image `i` of the [N, 3, H, W] tensor name and tokens a ++ b
 * (b's tokens flagged as targets when b is given). */
static void make_item(episode_item *it, st_file *f, const char *name, int64_t i,
                      const int32_t *a, int64_t na, const int32_t *b, int64_t nb) {
    const st_tensor *t = fx_need(f, name);
    float *px = fx_read_f32(f, name, NULL);
    it->height = t->shape[2], it->width = t->shape[3];
    int64_t plane = 3 * it->height * it->width;
    it->pixels = tl_alloc((size_t)plane * sizeof *it->pixels);
    memcpy(it->pixels, px + i * plane, (size_t)plane * sizeof *px);
    it->n_tokens = na + nb;
    it->tokens = tl_alloc((size_t)(na + nb) * sizeof *it->tokens);
    memcpy(it->tokens, a, (size_t)na * sizeof *a);
    if (nb) memcpy(it->tokens + na, b, (size_t)nb * sizeof *b);
    if (b) {
        it->target = tl_alloc((size_t)(na + nb));
        for (int64_t j = 0; j < na + nb; j++) it->target[j] = j >= na;
        it->n_target = nb;
    }
    it->source = aimc_strdup(b ? "query" : "demo");
    free(px);
}

/* Episode e of an AIM fixture file (tests/fixtures/aim/README.md): k demos
 * and the query. */
static void make_episode(st_file *f, int e, int k, episode *ep) {
    ep->k = k;
    ep->items = tl_alloc((size_t)(k + 1) * sizeof *ep->items);
    memset(ep->items, 0, (size_t)(k + 1) * sizeof *ep->items);
    if (k > 0) {
        int32_t *ids = fx_read_i32(f, fx_per_ep("demo_ids", e), NULL);
        int32_t *lens = fx_read_i32_n(f, fx_per_ep("demo_lens", e), k);
        for (int i = 0, at = 0; i < k; at += lens[i], i++)
            make_item(&ep->items[i], f, fx_per_ep("demo_pixels", e), i, ids + at, lens[i], NULL, 0);
        free(ids), free(lens);
    }
    int64_t np, nt;
    int32_t *p = fx_read_i32(f, fx_per_ep("prompt_ids", e), &np);
    int32_t *t = fx_read_i32(f, fx_per_ep("target_ids", e), &nt);
    make_item(&ep->items[k], f, fx_per_ep("query_pixels", e), 0, p, np, t, nt);
    free(p), free(t);
}

/* The file's projector on be: its type, then its parameters over the init. */
static void load_projector(projector *pr, const backend *be, st_file *f, int64_t d) {
    projector_config cfg = {.type = (projector_type)scalar_i32(f, "projector_type"),
                            .d_in = d, .d_out = d, .d_hidden = d, .ln_eps = 1e-5f};
    if (cfg.type == PROJ_LINEAR_LN) cfg.ln_eps = (float)scalar(f, "ln_eps");
    projector_init(pr, be, &cfg);
    for (int i = 0; i < pr->n_params; i++) {
        tensor *v = &pr->params[i].value;
        float *x = fx_read_f32_n(f, pr->params[i].name, tensor_numel(v));
        be->upload(v->data, x, tensor_bytes(v));
        free(x);
    }
}

/* Every tensor `which` (0 value, 1 grad, 2 m, 3 v) of p, concatenated on the host. */
static float *params_of(const projector *p, int which, int64_t *n) {
    int64_t total = 0, at = 0;
    for (int i = 0; i < p->n_params; i++) total += tensor_numel(&p->params[i].value);
    float *out = tl_alloc((size_t)total * sizeof *out);
    for (int i = 0; i < p->n_params; i++) {
        const projector_param *q = &p->params[i];
        const tensor *all[4] = {&q->value, &q->grad, &q->m, &q->v}, *t = all[which];
        float *h = fx_download_f32(t);
        memcpy(out + at, h, tensor_bytes(t));
        at += tensor_numel(t);
        free(h);
    }
    *n = total;
    return out;
}

/* One backend's side of the step: its model, projector and arena. */
typedef struct side {
    const backend *be;
    mllm *m;
    projector proj;
    aim_model am;
    arena a;
} side;

static void side_open(side *s, const depth *d, st_file *f) {
    s->m = mllm_load(fixture(d->name).s, s->be, s->be->act_dtype);
    load_projector(&s->proj, s->be, f, mllm_d_model(s->m));
    s->am = (aim_model){.mllm = s->m, .proj = &s->proj, .layer = scalar_i32(f, "layer")};
    arena_init(&s->a, s->be, ARENA_BYTES);
}

/* The step's gradients into the projector; returns the mean loss. */
static double side_step(side *s, const episode *eps, int batch, int64_t n_targets) {
    fx_poison_arena(&s->a);
    projector_zero_grad(&s->proj);
    double dscale = 1.0 / (double)n_targets;
    return aim_batch_step(&s->am, &s->a, eps, batch, (float)dscale, 1) * dscale;
}

static void side_free(side *s) {
    arena_free(&s->a);
    projector_free(&s->proj);
    mllm_free(s->m);
}

/* The largest change of each cpu projector gradient when the LM's inputs
 * move by eta (SPREAD_DRAWS draws); leaves the cpu side's gradients as
 * they were. */
static void aim_grads_spread(side *cpu, const episode *eps, int batch, int64_t n_targets,
                             double eta, double *spread) {
    int64_t n;
    float *ref = params_of(&cpu->proj, 1, &n), *saved[2] = {NULL, NULL};
    for (int i = 0; i < cpu->proj.n_params; i++) spread[i] = 0;
    for (int k = 0; k < SPREAD_DRAWS; k++) {
        perturb_lm_inputs(cpu->m, eta, saved, 0);
        side_step(cpu, eps, batch, n_targets);
        float *g = params_of(&cpu->proj, 1, &n);
        for (int64_t i = 0, at = 0; i < cpu->proj.n_params; i++) {
            int64_t m = tensor_numel(&cpu->proj.params[i].grad);
            spread[i] = fmax(spread[i], rel_err_f32(g + at, ref + at, m));
            at += m;
        }
        free(g);
    }
    perturb_lm_inputs(cpu->m, eta, saved, 1);
    for (int64_t i = 0, at = 0; i < cpu->proj.n_params; i++) {
        tensor *t = &cpu->proj.params[i].grad;
        CPU->upload(t->data, ref + at, tensor_bytes(t));
        at += tensor_numel(t);
    }
    free(saved[0]), free(saved[1]), free(ref);
}

/* Each parameter's gradient: cuda against cpu and against PyTorch's grad.<name>. */
static void check_aim_grads(const char *file, const depth *d, st_file *f, side *gpu, side *cpu,
                            const double *spread) {
    for (int i = 0; i < gpu->proj.n_params; i++) {
        const char *pname = gpu->proj.params[i].name;
        int64_t n = tensor_numel(&gpu->proj.params[i].grad);
        double tol = hypot(tol_aim_grad(d), spread[i]);
        char key[64];
        snprintf(key, sizeof key, "grad.%s", pname);
        float *g = fx_download_f32(&gpu->proj.params[i].grad);
        float *c = fx_download_f32(&cpu->proj.params[i].grad), *t = fx_read_f32_n(f, key, n);
        double e_cpu = rel_err_f32(g, c, n), e_torch = rel_err_f32(g, t, n);
        CHECK(e_cpu <= tol && e_torch <= tol,
              "%s: cuda %s rel err vs cpu %.2e, vs PyTorch %.2e (tol %.2e)", file, key, e_cpu,
              e_torch, tol);
        printf("  %-34s %-18s cuda vs cpu %.2e, vs PyTorch %.2e (tol %.2e: rounding %.2e, "
               "reference's spread %.2e)\n", file, key, e_cpu, e_torch, tol, tol_aim_grad(d),
               spread[i]);
        free(g), free(c), free(t);
    }
}

/* From the same parameters and the same (cuda's) gradients, one
 * projector_step on each backend: parameters and moments agree in f32. */
static void check_aim_update(const char *file, side *gpu, side *cpu) {
    int64_t n;
    float *g = params_of(&gpu->proj, 1, &n);
    for (int64_t i = 0, at = 0; i < cpu->proj.n_params; i++) {
        tensor *t = &cpu->proj.params[i].grad;
        CPU->upload(t->data, g + at, tensor_bytes(t));
        at += tensor_numel(t);
    }
    adamw_opts o = {.beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.1f,
                    .step = 1, .grad_scale = 1.0f};
    float clip = 0.5f * (float)sqrt(projector_sumsq(&cpu->proj)); /* makes clipping act */
    float *before = params_of(&gpu->proj, 0, &n);
    double norm_g = projector_step(&gpu->proj, &o, 1e-3f, clip);
    double norm_c = projector_step(&cpu->proj, &o, 1e-3f, clip);
    double worst = fabs(norm_g - norm_c) / norm_c;
    float *after = params_of(&gpu->proj, 0, &n);
    double moved = rel_err_f32(after, before, n);
    free(before), free(after);
    static const int kept[] = {0, 2, 3}; /* value, m, v */
    for (int i = 0; i < 3; i++) {
        float *a = params_of(&gpu->proj, kept[i], &n), *b = params_of(&cpu->proj, kept[i], &n);
        worst = fmax(worst, rel_err_f32(a, b, n));
        free(a), free(b);
    }
    CHECK(worst <= TOL_F32 && moved > 0, "%s: projector_step from the same gradients: cuda vs "
          "cpu rel err %.2e (norm %.6g vs %.6g), parameters moved by %.2e", file, worst, norm_g,
          norm_c, moved);
    printf("  %-34s projector_step (clipped AdamW) from the same gradients: parameters moved "
           "by %.2e, cuda vs cpu max rel err %.2e\n", file, moved, worst);
    free(g);
}

static void check_aim_step(const char *file, const depth *d) {
    st_file *f = fx_open_st(fx_join(fx_repo_dir("tests/fixtures/aim").s, file).s);
    int batch = scalar_i32(f, "batch"), k = scalar_i32(f, "k");
    int64_t n_targets = scalar_i32(f, "n_targets");
    episode *eps = tl_alloc((size_t)batch * sizeof *eps);
    for (int e = 0; e < batch; e++) make_episode(f, e, k, &eps[e]);
    side gpu = {.be = GPU}, cpu = {.be = CPU};
    side_open(&gpu, d, f);
    side_open(&cpu, d, f);
    double loss_g = side_step(&gpu, eps, batch, n_targets);
    double loss_c = side_step(&cpu, eps, batch, n_targets);
    double ref = scalar(f, "loss"), tol = tol_aim_loss(d);
    double e_cpu = fabs(loss_g - loss_c) / loss_c, e_torch = fabs(loss_g - ref) / ref;
    CHECK(e_cpu <= tol && e_torch <= tol, "%s: cuda loss %.6f, cpu %.6f, PyTorch %.6f (tol %.2e)",
          file, loss_g, loss_c, ref, tol);
    printf("  %-34s loss cuda %.6f, cpu %.6f, PyTorch %.6f: rel %.2e, %.2e (tol %.2e)\n", file,
           loss_g, loss_c, ref, e_cpu, e_torch, tol);
    double spread[PROJECTOR_MAX_PARAMS];
    aim_grads_spread(&cpu, eps, batch, n_targets, tol_image(d), spread);
    check_aim_grads(file, d, f, &gpu, &cpu, spread);
    check_aim_update(file, &gpu, &cpu);
    side_free(&gpu), side_free(&cpu);
    for (int e = 0; e < batch; e++) episode_free(&eps[e]);
    free(eps);
    st_close(f);
}

/* ---- driver ------------------------------------------------------------------------------ */

/* backend_cuda, or NULL with the reason; a build without CUDA has none. */

int main(void) {
    tests_begin("test_cuda_models");
    cuda_test_backends(&CPU, &GPU);
    snprintf(tmp_dir, sizeof tmp_dir, "/tmp/aimc_test_cuda_models_XXXXXX");
    if (!mkdtemp(tmp_dir)) printf("FAIL: mkdtemp\n"), exit(1);
    check_forward_mllm(&LLAVA);
    check_forward_mllm(&BLIP2);
    check_forward_clip();
    check_input_grad(&LLAVA);
    check_input_grad(&BLIP2);
    printf("one AIM step, cuda vs cpu (f32) and PyTorch:\n");
    check_aim_step("llava_k3_linear_L2.safetensors", &LLAVA);
    check_aim_step("llava_k1_linear_ln_L2.safetensors", &LLAVA);
    check_aim_step("llava_k1_mlp_L2.safetensors", &LLAVA);
    check_aim_step("blip2_k3_linear_L2.safetensors", &BLIP2);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_dir);
    if (system(cmd)) printf("note: could not remove %s\n", tmp_dir);
    return tests_done();
}
