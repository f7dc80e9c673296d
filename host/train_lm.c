/* The LM objective of aimc train (train.h): the AIM projector on a frozen
 * LLaVA / BLIP-2, trained with the LM loss on the query's target tokens. */
#include "../data/preprocess.h"
#include "../data/tokenizer.h"
#include "../kernels/check.h"
#include "dist.h"
#include "mllm.h"
#include "model_dir.h"
#include "train_impl.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- setup --------------------------------------------------------------------------- */

/* A CLIP folder is a likely mistake for this objective: say which one it takes. */
static int check_not_clip(const char *dir, char *err, size_t errlen) {
    model_dir *md = model_dir_open(dir, err, errlen);
    if (!md) return -1;
    int clip = !strcmp(cfg_str_or(md, "model_type", ""), "clip");
    model_dir_close(md);
    if (clip)
        return aimc_set_err(err, errlen,
                            "%s is a CLIP model: --objective lm trains the AIM projector of a LLaVA / BLIP-2; "
                            "CLIP's projection heads train with --objective contrastive",
                            dir);
    return 0;
}

static int check_layer(const trainer *t, char *err, size_t errlen) {
    const train_config *c = t->cfg;
    int64_t layers = mllm_decoder(t->mllm)->cfg.layers;
    if (c->layer < -(layers + 1) || c->layer > layers)
        return aimc_set_err(err, errlen, "--layer %lld is outside [-%lld, %lld] for %s (%lld decoder layers)",
                            (long long)c->layer, (long long)(layers + 1), (long long)layers, c->model,
                            (long long)layers);
    return 0;
}

/* The identity a checkpoint is bound to: the aggregation layer is part of it. */
static void describe_backbone(trainer *t) {
    const decoder *lm = mllm_decoder(t->mllm);
    int64_t layers = lm->cfg.layers, layer = t->cfg->layer;
    snprintf(t->backbone_text, sizeof t->backbone_text,
             "name=%s arch=%s lm=%s d_model=%lld layers=%lld vocab=%lld image_tokens=%lld layer=%lld",
             t->backbone_name, t->mllm->arch == MLLM_LLAVA ? "llava" : "blip2",
             lm->cfg.arch == DEC_LLAMA ? "llama" : "opt", (long long)mllm_d_model(t->mllm), (long long)layers,
             (long long)lm->cfg.vocab, (long long)mllm_tokens_per_image(t->mllm),
             (long long)(layer < 0 ? layers + 1 + layer : layer));
}

static void make_projector(trainer *t) {
    const train_config *c = t->cfg;
    int64_t d = mllm_d_model(t->mllm);
    projector_config pc = {.type = (projector_type)projector_type_parse(c->projector),
                           .d_in = d,
                           .d_out = d,
                           .d_hidden = c->proj_hidden,
                           .ln_eps = 1e-5f,
                           .seed = (uint64_t)c->seed};
    char err[256];
    if (projector_config_check(&pc, err, sizeof err)) aimc_die("train: projector: %s", err);
    projector_init(&t->proj, t->be, &pc);
    projector_describe(&pc, t->projector_text, sizeof t->projector_text);
    t->params = &t->proj;
    t->am = (aim_model){.mllm = t->mllm, .proj = &t->proj, .layer = c->layer};
}

static int lm_load(trainer *t, char *err, size_t errlen) {
    const train_config *c = t->cfg;
    if (check_not_clip(c->model, err, errlen)) return -1;
    t->mllm = mllm_load(c->model, t->be, t->be->act_dtype);
    t->tok = tokenizer_load(c->model, err, errlen);
    if (!t->tok || preprocess_config_load(&t->pp, c->model, err, errlen) || check_layer(t, err, errlen))
        return -1;
    describe_backbone(t);
    make_projector(t);
    return 0;
}

/* ---- the step ----------------------------------------------------------------------- */

/* LM input positions an episode costs: each demonstration's native sequence
 * and the query sequence with the fused tokens (tokens/s in the progress line). */
static double episode_positions(const episode *e, int64_t image_tokens) {
    double n = 0, fused = 0;
    for (int i = 0; i < e->k; i++) {
        n += (double)(1 + image_tokens + e->items[i].n_tokens);
        fused += (double)e->items[i].n_tokens;
    }
    return n + 1 + fused + (double)image_tokens + (double)e->items[e->k].n_tokens;
}

/* Sums every projector gradient over ranks: the same bits on every rank
 * (host transports sum in rank order; NCCL in its own order). */
static void allreduce_grads(trainer *t, int64_t step) {
    if (t->world == 1) return;
    for (int i = 0; i < t->proj.n_params; i++) {
        tensor *g = &t->proj.params[i].grad;
        if (!strcmp(g->be->name, "cpu") || t->use_nccl) {
            dist_allreduce_tensor(g, step);
            continue;
        }
        size_t bytes = tensor_bytes(g); /* no NCCL: through host memory */
        float *host = malloc(bytes);
        AIMC_CHECK(host, "train: out of host memory (%zu bytes)", bytes);
        g->be->download(host, g->data, bytes);
        dist_allreduce_sum(host, tensor_numel(g), DIST_F32, step);
        g->be->upload(g->data, host, bytes);
        free(host);
    }
}

/* Forward + backward of every micro-batch; returns the local loss sum. */
static double run_micro_batches(trainer *t, episode *eps, float dscale) {
    const train_config *c = t->cfg;
    double loss = 0;
    for (int64_t m = 0; m < c->accum; m++) {
        arena_reset(&t->work);
        loss += aim_batch_step(&t->am, &t->work, eps + m * c->batch, (int)c->batch, dscale, 1);
    }
    return loss;
}

/* Forward + backward of this rank's episodes with the global mean's scale;
 * returns the local loss sum, *targets the global target count. */
static double gradient_pass(trainer *t, episode *eps, int64_t n, int64_t step, int64_t *targets,
                            step_result *r) {
    double t0 = aimc_now();
    *targets = aim_count_targets(eps, (int)n);
    dist_allreduce_sum(targets, 1, DIST_I64, step); /* before any backward: dscale = 1 / it */
    double t1 = aimc_now();
    AIMC_CHECK(*targets > 0, "train: step %lld has no target token (episodes always have one)",
               (long long)step);
    projector_zero_grad(&t->proj);
    double local = run_micro_batches(t, eps, (float)(1.0 / (double)*targets));
    train_test_poison(t, step, 0);
    r->t_comm += t1 - t0;
    r->t_compute += aimc_now() - t1;
    return local;
}

/* Sums gradients and statistics over ranks, then the optimizer step (skipped
 * when the loss or the gradient norm is not finite). */
static void update_pass(trainer *t, episode *eps, int64_t n, int64_t step, double local, step_result *r) {
    double t0 = aimc_now();
    /* whether this rank's own part is already bad, to name its episodes */
    int local_bad = !isfinite(local) || !isfinite(projector_sumsq(&t->proj));
    double stats[3] = {local, 0, local_bad};
    for (int64_t i = 0; i < n; i++) stats[1] += episode_positions(&eps[i], mllm_tokens_per_image(t->mllm));
    allreduce_grads(t, step);
    dist_allreduce_sum(stats, 3, DIST_F64, step);
    double t1 = aimc_now();
    r->lr = lr_at(&t->sched, step);
    r->loss = stats[0] / r->loss_count;
    r->tokens = stats[1];
    r->some_rank_bad = stats[2] > 0;
    r->norm = NAN;
    if (isfinite(r->loss)) {
        t->adam.step = (int64_t)t->prog.opt_step + 1;
        r->norm = projector_step(&t->proj, &t->adam, (float)r->lr, (float)t->cfg->clip);
    }
    r->skipped = !isfinite(r->loss) || !isfinite(r->norm);
    if (r->skipped && local_bad)
        train_name_bad_episodes(t, eps, n, step, isfinite(local) ? "gradient (loss finite here)" : "loss");
    if (r->skipped && !r->some_rank_bad && t->rank == 0)
        fprintf(stderr, "aimc train: step %lld: every rank's gradient was finite, their sum is not\n",
                (long long)step);
    r->t_comm += t1 - t0;
    r->t_compute += aimc_now() - t1;
}

static void lm_step(trainer *t, episode *eps, int64_t n, int64_t step, step_result *r) {
    int64_t targets;
    double local = gradient_pass(t, eps, n, step, &targets, r);
    r->loss_count = (double)targets;
    update_pass(t, eps, n, step, local, r);
}

/* ---- held-out loss, teardown ---------------------------------------------------------- */

/* The mean LM loss over every rank's held-out target tokens (no gradient). */
static double lm_eval(trainer *t, int64_t step, double *count) {
    double sums[2] = {0, 0};
    for (int64_t i = 0; i < t->n_eval; i += t->cfg->batch) {
        int n = (int)(t->n_eval - i < t->cfg->batch ? t->n_eval - i : t->cfg->batch);
        arena_reset(&t->work);
        sums[0] += aim_batch_step(&t->am, &t->work, t->eval_eps + i, n, 0.0f, 0);
        sums[1] += (double)aim_count_targets(t->eval_eps + i, n);
    }
    dist_allreduce_sum(sums, 2, DIST_F64, step);
    *count = sums[1];
    return sums[0] / sums[1];
}

static void lm_free(trainer *t) {
    if (t->proj.be) projector_free(&t->proj);
    if (t->mllm) mllm_free(t->mllm);
}

const train_objective train_objective_lm = {
    .name = "lm",
    .count_key = "targets",
    .count_label = "target tokens",
    .trainable = "projector",
    .load = lm_load,
    .restored = NULL,
    .step = lm_step,
    .eval = lm_eval,
    .free = lm_free,
};
