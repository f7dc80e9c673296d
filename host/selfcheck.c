/* aimc selfcheck: the AIM training step in miniature, on a tiny random
 * frozen decoder (one pre-RMSNorm block with RoPE attention and SwiGLU, tied
 * head), through the backend op interface:
 *   demonstration tokens -> frozen forward -> hidden states (no grad)
 *   -> trainable linear projector -> fused tokens
 *   [fused demo ; query] -> frozen forward -> LM loss on the target tokens
 *   -> backward to the input embeddings only -> projector grads -> AdamW.
 * It checks the projector gradient against a central finite difference along
 * a random direction and that the loss falls while training one episode. */
#include "arena.h"
#include "args.h"
#include "backend.h"
#include "commands.h"
#include "ops.h"
#include "../kernels/check.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { V = 96, D = 32, H = 4, HD = D / H, F = 64, T_DEMO = 7, T_QUERY = 9, N_TARGET = 4 };
#define ROPE_THETA 10000.0f
#define RMS_EPS 1e-5f

typedef struct frozen_model { /* all on the backend, f32 */
    tensor embed, norm1, wq, wk, wv, wo, norm2, wgate, wup, wdown, norm_final;
} frozen_model;

typedef struct projector { /* trainable: fused = h W^T + b */
    tensor w, b, dw, db, mw, vw, mb, vb;
} projector;

/* What the backward pass needs from one forward pass. */
typedef struct block_acts {
    int64_t t;
    tensor x, rstd1, h1, q, k, v, att, lse, x2, rstd2, h2, gate, up, act, x3, rstd_f, hf;
} block_acts;

typedef struct lcg { uint64_t s; } lcg;
static float lcg_uniform(lcg *r) { /* in [-1, 1) */
    r->s = r->s * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((r->s >> 40) * (2.0 / 16777216.0) - 1.0);
}

static tensor upload_random(arena *a, lcg *r, float scale, float offset, int64_t rows, int64_t cols) {
    tensor t = rows ? arena_new(a, DT_F32, rows, cols) : arena_new(a, DT_F32, cols);
    int64_t n = tensor_numel(&t);
    float *host = malloc((size_t)n * sizeof *host);
    AIMC_CHECK(host, "selfcheck: out of host memory");
    for (int64_t i = 0; i < n; i++) host[i] = offset + scale * lcg_uniform(r);
    a->be->upload(t.data, host, (size_t)n * sizeof *host);
    free(host);
    return t;
}

static void upload_ids(const tensor *t, const int32_t *ids) {
    t->be->upload(t->data, ids, tensor_bytes(t));
}

static float download_scalar_sum(const tensor *t) {
    int64_t n = tensor_numel(t);
    float *host = malloc((size_t)n * sizeof *host);
    AIMC_CHECK(host, "selfcheck: out of host memory");
    t->be->download(host, t->data, (size_t)n * sizeof *host);
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += host[i];
    free(host);
    return (float)s;
}

static void init_model(frozen_model *m, arena *a, lcg *r) {
    float ws = 1.0f / sqrtf((float)D);
    m->embed = upload_random(a, r, 0.5f, 0, V, D);
    m->norm1 = upload_random(a, r, 0.2f, 1.0f, 0, D);
    m->wq = upload_random(a, r, ws, 0, D, D);
    m->wk = upload_random(a, r, ws, 0, D, D);
    m->wv = upload_random(a, r, ws, 0, D, D);
    m->wo = upload_random(a, r, ws, 0, D, D);
    m->norm2 = upload_random(a, r, 0.2f, 1.0f, 0, D);
    m->wgate = upload_random(a, r, ws, 0, F, D);
    m->wup = upload_random(a, r, ws, 0, F, D);
    m->wdown = upload_random(a, r, 1.0f / sqrtf((float)F), 0, D, F);
    m->norm_final = upload_random(a, r, 0.2f, 1.0f, 0, D);
}

static void init_projector(projector *p, arena *a, lcg *r) {
    p->w = upload_random(a, r, 1.0f / sqrtf((float)D), 0, D, D);
    p->b = upload_random(a, r, 0.0f, 0, 0, D);
    p->dw = arena_new(a, DT_F32, D, D);
    p->db = arena_new(a, DT_F32, D);
    p->mw = arena_new(a, DT_F32, D, D);
    p->vw = arena_new(a, DT_F32, D, D);
    p->mb = arena_new(a, DT_F32, D);
    p->vb = arena_new(a, DT_F32, D);
    const tensor *zeroed[] = {&p->mw, &p->vw, &p->mb, &p->vb};
    for (int i = 0; i < 4; i++) a->be->zero(zeroed[i]->data, tensor_bytes(zeroed[i]));
}

static attn_opts causal_opts(void) {
    attn_opts o = {.scale = 1.0f / sqrtf((float)HD), .causal = 1};
    return o;
}

/* [t, D] <-> [1, t, H, HD] views of the same memory (attention's layout). */
static tensor as_heads(const tensor *x) {
    return tensor_reshape(x, 4, (int64_t[]){1, x->shape[0], H, HD});
}
static tensor as_rows(const tensor *x) { return tensor_reshape(x, 2, (int64_t[]){x->shape[1], D}); }

static tensor project_heads(arena *a, const tensor *h, const tensor *w) {
    tensor y = arena_new(a, DT_F32, h->shape[0], D);
    op_matmul(&y, h, w, NULL, 0, 1, 0);
    return as_heads(&y);
}

/* Forward of the frozen block and final norm on input embeddings x [t, D]. */
static void block_forward(const frozen_model *m, arena *a, const tensor *x, const tensor *pos,
                          block_acts *s) {
    int64_t t = x->shape[0];
    attn_opts o = causal_opts();
    s->t = t;
    s->x = *x;
    s->rstd1 = arena_new(a, DT_F32, t);
    s->h1 = arena_new(a, DT_F32, t, D);
    op_rmsnorm(&s->h1, &s->rstd1, x, &m->norm1, RMS_EPS);
    s->q = project_heads(a, &s->h1, &m->wq);
    s->k = project_heads(a, &s->h1, &m->wk);
    s->v = project_heads(a, &s->h1, &m->wv);
    op_rope(&s->q, pos, ROPE_THETA, 0);
    op_rope(&s->k, pos, ROPE_THETA, 0);
    s->att = arena_new(a, DT_F32, 1, t, H, HD);
    s->lse = arena_new(a, DT_F32, 1, H, t);
    op_attention(&s->att, &s->lse, &s->q, &s->k, &s->v, &o);
    s->x2 = arena_new(a, DT_F32, t, D);
    tensor att_rows = as_rows(&s->att);
    op_matmul(&s->x2, &att_rows, &m->wo, NULL, 0, 1, 0);
    op_add(&s->x2, &s->x2, x);
    s->rstd2 = arena_new(a, DT_F32, t);
    s->h2 = arena_new(a, DT_F32, t, D);
    op_rmsnorm(&s->h2, &s->rstd2, &s->x2, &m->norm2, RMS_EPS);
    s->gate = arena_new(a, DT_F32, t, F);
    s->up = arena_new(a, DT_F32, t, F);
    s->act = arena_new(a, DT_F32, t, F);
    op_matmul(&s->gate, &s->h2, &m->wgate, NULL, 0, 1, 0);
    op_matmul(&s->up, &s->h2, &m->wup, NULL, 0, 1, 0);
    op_swiglu(&s->act, &s->gate, &s->up);
    s->x3 = arena_new(a, DT_F32, t, D);
    op_matmul(&s->x3, &s->act, &m->wdown, NULL, 0, 1, 0);
    op_add(&s->x3, &s->x3, &s->x2);
    s->rstd_f = arena_new(a, DT_F32, t);
    s->hf = arena_new(a, DT_F32, t, D);
    op_rmsnorm(&s->hf, &s->rstd_f, &s->x3, &m->norm_final, RMS_EPS);
}

/* dx [t, D] = d loss / d input embeddings, given dhf (grad at the final norm
 * output). Frozen weights: activation gradients only. */
static void block_backward(const frozen_model *m, arena *a, const block_acts *s, const tensor *pos,
                           const tensor *dhf, tensor *dx) {
    int64_t t = s->t;
    attn_opts o = causal_opts();
    tensor dx3 = arena_new(a, DT_F32, t, D), tmp = arena_new(a, DT_F32, t, D);
    op_rmsnorm_backward(&dx3, NULL, dhf, &s->x3, &m->norm_final, &s->rstd_f);
    tensor dact = arena_new(a, DT_F32, t, F), dgate = arena_new(a, DT_F32, t, F),
           dup = arena_new(a, DT_F32, t, F);
    op_matmul(&dact, &dx3, &m->wdown, NULL, 0, 0, 0);
    op_swiglu_backward(&dgate, &dup, &dact, &s->gate, &s->up);
    tensor dh2 = arena_new(a, DT_F32, t, D);
    op_matmul(&dh2, &dgate, &m->wgate, NULL, 0, 0, 0);
    op_matmul(&dh2, &dup, &m->wup, NULL, 0, 0, 1);
    tensor dx2 = arena_new(a, DT_F32, t, D);
    op_rmsnorm_backward(&tmp, NULL, &dh2, &s->x2, &m->norm2, &s->rstd2);
    op_add(&dx2, &dx3, &tmp);
    tensor datt = arena_new(a, DT_F32, t, D), dq = arena_new(a, DT_F32, t, D),
           dk = arena_new(a, DT_F32, t, D), dv = arena_new(a, DT_F32, t, D);
    op_matmul(&datt, &dx2, &m->wo, NULL, 0, 0, 0);
    tensor datt_h = as_heads(&datt), dq_h = as_heads(&dq), dk_h = as_heads(&dk), dv_h = as_heads(&dv);
    op_attention_backward(&dq_h, &dk_h, &dv_h, &datt_h, &s->q, &s->k, &s->v, &s->att, &s->lse, &o);
    op_rope(&dq_h, pos, ROPE_THETA, 1);
    op_rope(&dk_h, pos, ROPE_THETA, 1);
    tensor dh1 = arena_new(a, DT_F32, t, D);
    op_matmul(&dh1, &dq, &m->wq, NULL, 0, 0, 0);
    op_matmul(&dh1, &dk, &m->wk, NULL, 0, 0, 1);
    op_matmul(&dh1, &dv, &m->wv, NULL, 0, 0, 1);
    op_rmsnorm_backward(&tmp, NULL, &dh1, &s->x, &m->norm1, &s->rstd1);
    op_add(dx, &dx2, &tmp);
}

typedef struct episode { /* device tensors */
    tensor demo_ids, query_ids, targets, demo_pos, seq_pos;
} episode;

static void make_episode(episode *e, arena *a, lcg *r) {
    int32_t demo[T_DEMO], query[T_QUERY], targets[T_DEMO + T_QUERY], dpos[T_DEMO],
        spos[T_DEMO + T_QUERY];
    for (int i = 0; i < T_DEMO; i++) demo[i] = (int32_t)((lcg_uniform(r) + 1) * 0.5f * V);
    for (int i = 0; i < T_QUERY; i++) query[i] = (int32_t)((lcg_uniform(r) + 1) * 0.5f * V);
    /* The LM predicts token j+1 from position j; only the last N_TARGET query
     * tokens are targets, everything else is ignored (-100). */
    for (int j = 0; j < T_DEMO + T_QUERY; j++) {
        int q = j - T_DEMO + 1; /* index in the query of the token predicted at j */
        targets[j] = q >= T_QUERY - N_TARGET && q < T_QUERY ? query[q] : -100;
        spos[j] = j;
    }
    for (int i = 0; i < T_DEMO; i++) dpos[i] = i;
    e->demo_ids = arena_new(a, DT_I32, T_DEMO);
    e->query_ids = arena_new(a, DT_I32, T_QUERY);
    e->targets = arena_new(a, DT_I32, T_DEMO + T_QUERY);
    e->demo_pos = arena_new(a, DT_I32, 1, T_DEMO);
    e->seq_pos = arena_new(a, DT_I32, 1, T_DEMO + T_QUERY);
    upload_ids(&e->demo_ids, demo);
    upload_ids(&e->query_ids, query);
    upload_ids(&e->targets, targets);
    upload_ids(&e->demo_pos, dpos);
    upload_ids(&e->seq_pos, spos);
}

/* Aggregation: the frozen model reads the demonstration alone; its final
 * hidden states at the text positions are what the projector consumes. */
static tensor aggregate_demo(const frozen_model *m, arena *a, const episode *e) {
    tensor x = arena_new(a, DT_F32, T_DEMO, D);
    block_acts s;
    op_gather_rows(&x, &m->embed, &e->demo_ids);
    block_forward(m, a, &x, &e->demo_pos, &s);
    return s.hf;
}

/* One forward (and, when want_grad, backward into p->dw, p->db) of the main
 * pass. Returns the mean LM loss over the target tokens. */
static float aim_step(const frozen_model *m, projector *p, arena *a, const episode *e,
                      const tensor *hidden, int want_grad) {
    const int64_t t = T_DEMO + T_QUERY;
    tensor seq = arena_new(a, DT_F32, t, D);
    tensor fused = tensor_slice0(&seq, 0, T_DEMO), query = tensor_slice0(&seq, T_DEMO, T_QUERY);
    op_matmul(&fused, hidden, &p->w, &p->b, 0, 1, 0); /* the fused tokens */
    op_gather_rows(&query, &m->embed, &e->query_ids);
    block_acts s;
    block_forward(m, a, &seq, &e->seq_pos, &s);
    tensor logits = arena_new(a, DT_F32, t, V), loss = arena_new(a, DT_F32, t);
    op_matmul(&logits, &s.hf, &m->embed, NULL, 0, 1, 0); /* tied head */
    op_cross_entropy(&loss, &logits, &e->targets, want_grad ? 1.0f / N_TARGET : 0.0f);
    float mean_loss = download_scalar_sum(&loss) / N_TARGET;
    if (!want_grad) return mean_loss;
    tensor dhf = arena_new(a, DT_F32, t, D), dseq = arena_new(a, DT_F32, t, D);
    op_matmul(&dhf, &logits, &m->embed, NULL, 0, 0, 0); /* logits now hold dlogits */
    block_backward(m, a, &s, &e->seq_pos, &dhf, &dseq);
    tensor dfused = tensor_slice0(&dseq, 0, T_DEMO);
    op_matmul(&p->dw, &dfused, hidden, NULL, 1, 0, 0);
    op_bias_grad(&p->db, &dfused, 0);
    return mean_loss;
}

/* Directional finite difference: (L(W + eps R) - L(W - eps R)) / 2 eps vs
 * <dW, R>. Returns the relative difference. */
static double check_projector_grad(const frozen_model *m, projector *p, arena *a, const episode *e,
                                   const tensor *hidden, lcg *r) {
    const float eps = 3e-3f;
    size_t mark = a->used;
    tensor dir = upload_random(a, r, 1.0f, 0, D, D), w0 = arena_new(a, DT_F32, D, D),
           shifted = arena_new(a, DT_F32, D, D);
    aim_step(m, p, a, e, hidden, 1);
    float *hd = malloc(D * D * sizeof *hd), *hw = malloc(D * D * sizeof *hw);
    AIMC_CHECK(hd && hw, "selfcheck: out of host memory");
    a->be->download(hd, p->dw.data, D * D * sizeof *hd);
    a->be->download(hw, dir.data, D * D * sizeof *hw);
    double analytic = 0;
    for (int i = 0; i < D * D; i++) analytic += (double)hd[i] * hw[i];
    free(hd);
    free(hw);
    op_convert(&w0, &p->w);
    float lp, lm;
    op_scale(&shifted, &dir, eps);
    op_add(&p->w, &w0, &shifted);
    lp = aim_step(m, p, a, e, hidden, 0);
    op_scale(&shifted, &dir, -eps);
    op_add(&p->w, &w0, &shifted);
    lm = aim_step(m, p, a, e, hidden, 0);
    op_convert(&p->w, &w0);
    a->used = mark;
    double numeric = ((double)lp - lm) / (2.0 * eps);
    return fabs(numeric - analytic) / fmax(fabs(analytic), 1e-6);
}

static void adamw_update(projector *p, int64_t step, float lr) {
    adamw_opts o = {.lr = lr, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.0f,
                    .step = step, .grad_scale = 1.0f};
    op_adamw(&p->w, &p->dw, &p->mw, &p->vw, &o);
    op_adamw(&p->b, &p->db, &p->mb, &p->vb, &o);
}

int cmd_selfcheck(int argc, char **argv) {
    const char *device = "cpu";
    int64_t steps = 40, seed = 1234;
    double lr = 3e-2;
    arg_opt opts[] = {
        {"--device", ARG_STR, &device, "cpu or cuda"},
        {"--steps", ARG_INT, &steps, "training steps on one episode"},
        {"--lr", ARG_FLOAT, &lr, "AdamW learning rate"},
        {"--seed", ARG_INT, &seed, "seed for the random model and episode"},
    };
    args_parse(argc, argv, "aimc selfcheck [options]",
               "Trains a tiny AIM projector through a random frozen decoder block on one\n"
               "episode: checks the projector gradient against finite differences and that\n"
               "the LM loss falls. Exit status 0 when both hold.",
               opts, (int)(sizeof opts / sizeof opts[0]));
    if (steps < 1) aimc_die("--steps must be >= 1, got %lld", (long long)steps);
    const backend *be = backend_by_name(device);
    arena weights, work;
    arena_init(&weights, be, 1 << 20);
    arena_init(&work, be, 8 << 20);
    lcg r = {(uint64_t)seed * 2654435761u + 1};
    frozen_model m;
    projector p;
    episode e;
    init_model(&m, &weights, &r);
    init_projector(&p, &weights, &r);
    make_episode(&e, &weights, &r);
    tensor hidden_work = aggregate_demo(&m, &work, &e);
    tensor hidden = arena_new(&weights, DT_F32, T_DEMO, D); /* cached, like a demonstration bank */
    op_convert(&hidden, &hidden_work);
    arena_reset(&work);

    double grad_err = check_projector_grad(&m, &p, &work, &e, &hidden, &r);
    printf("selfcheck [%s]: projector gradient vs finite difference: rel err %.2e\n", be->name, grad_err);
    float first = 0, last = 0;
    for (int64_t step = 1; step <= steps; step++) {
        arena_reset(&work);
        last = aim_step(&m, &p, &work, &e, &hidden, 1);
        if (step == 1) first = last;
        adamw_update(&p, step, (float)lr);
        if (step == 1 || step % 10 == 0 || step == steps)
            printf("step %4lld/%lld  loss %.4f\n", (long long)step, (long long)steps, last);
    }
    int ok = grad_err < 1e-2 && isfinite(last) && last < 0.8f * first; /* the projector alone cannot memorise the targets; it must clearly help */
    printf("selfcheck [%s]: loss %.4f -> %.4f over %lld steps; peak work memory %zu bytes: %s\n",
           be->name, first, last, (long long)steps, work.peak, ok ? "OK" : "FAILED");
    arena_free(&work);
    arena_free(&weights);
    return ok ? 0 : 1;
}
