/* The contrastive objective of aimc train (train.h): CLIP's projection heads
 * and logit_scale on the frozen towers, InfoNCE over the global batch
 * (host/contrastive.h does the step; this file feeds it). */
#include "../data/preprocess.h"
#include "../data/tokenizer.h"
#include "../kernels/check.h"
#include "dist.h"
#include "model_dir.h"
#include "train_impl.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- setup --------------------------------------------------------------------------- */

/* The folder must hold a CLIPModel (clip_load would name a missing tensor). */
static int check_model_type(const model_dir *md, const char *dir, char *err, size_t errlen) {
    const char *type = cfg_str_or(md, "model_type", "");
    if (strcmp(type, "clip"))
        return aimc_set_err(err, errlen,
                            "--objective contrastive needs a CLIPModel folder (config.json model_type "
                            "\"clip\"); %s has model_type \"%s\"",
                            dir, type);
    return 0;
}

/* Every image must reach the vision tower at its image_size: the folder's
 * preprocessing has to produce that size from any aspect ratio. */
static int check_image_size(const trainer *t, char *err, size_t errlen) {
    int64_t s = t->clip->vision->image_size;
    const int64_t probes[2][2] = {{s, s}, {4 * s, 3 * s}}; /* w, h: square and 4:3 */
    for (int i = 0; i < 2; i++) {
        int64_t h, w;
        if (preprocess_output_size(&t->pp, probes[i][0], probes[i][1], &h, &w, err, errlen)) return -1;
        if (h != s || w != s)
            return aimc_set_err(err, errlen,
                                "%s/preprocessor_config.json turns a %lldx%lld image into %lldx%lld but "
                                "vision_config.image_size is %lld: the tower needs %lldx%lld inputs "
                                "(center crop to it, or resize to it exactly)",
                                t->cfg->model, (long long)probes[i][0], (long long)probes[i][1], (long long)w,
                                (long long)h, (long long)s, (long long)s, (long long)s);
    }
    return 0;
}

/* The identity a checkpoint is bound to: the heads' shapes and the towers
 * that feed them. */
static void describe_backbone(trainer *t) {
    const clip_model *m = t->clip;
    snprintf(t->backbone_text, sizeof t->backbone_text,
             "name=%s arch=clip d_vision=%lld d_text=%lld d_proj=%lld vision_layers=%lld "
             "text_layers=%lld image_size=%lld patch=%lld vocab=%lld",
             t->backbone_name, (long long)m->vision->enc.dim, (long long)m->text.enc.dim,
             (long long)m->proj_dim, (long long)m->vision->enc.layers, (long long)m->text.enc.layers,
             (long long)m->vision->image_size, (long long)m->vision->patch_size, (long long)m->text.vocab);
}

static int contrastive_load(trainer *t, char *err, size_t errlen) {
    const train_config *c = t->cfg;
    model_dir *md = model_dir_open(c->model, err, errlen);
    if (!md) return -1;
    if (check_model_type(md, c->model, err, errlen)) {
        model_dir_close(md);
        return -1;
    }
    t->clip = clip_load(&(nn_loader){md, t->be, t->be->act_dtype}, "");
    model_dir_close(md); /* every tensor is a copy in backend memory */
    t->tok = tokenizer_load(c->model, err, errlen);
    if (!t->tok || preprocess_config_load(&t->pp, c->model, err, errlen) ||
        check_image_size(t, err, errlen) || contrastive_text_spec_get(t->tok, t->clip, &t->spec, err, errlen))
        return -1;
    describe_backbone(t);
    contrastive_init(&t->heads, t->clip);
    contrastive_describe(&t->heads, t->projector_text, sizeof t->projector_text);
    t->params = &t->heads.params;
    return 0;
}

/* logit_scale's host mirror follows the restored parameter. */
static void contrastive_restored(trainer *t) { contrastive_sync_scale(&t->heads); }

/* ---- the step ----------------------------------------------------------------------- */

/* The episodes as one batch (packed texts, stacked pixels); a failure is a
 * data error on this rank (the setup checks make it unexpected). */
static void make_batch(const trainer *t, const episode *eps, int64_t n, contrastive_owned_batch *ob) {
    char err[1024];
    if (contrastive_batch_from_episodes(eps, n, &t->spec, ob, err, sizeof err))
        aimc_die("train: rank %d: contrastive batch: %s", t->rank, err);
}

/* Input positions of the global batch: each pair's text tokens and its
 * image's vision sequence (a collective). */
static double global_tokens(const trainer *t, const contrastive_batch *b, int64_t step) {
    double n = (double)b->n * (double)t->clip->vision->seq_len;
    for (int64_t i = 0; b->mask && i < b->n * b->len; i++) n += b->mask[i];
    dist_allreduce_sum(&n, 1, DIST_F64, step);
    return n;
}

/* The update after contrastive_grads (every rank holds the same summed
 * gradients, so every rank takes the same branch). */
static void update(trainer *t, const contrastive_result *cr, int64_t step, step_result *r) {
    const train_config *c = t->cfg;
    r->lr = lr_at(&t->sched, step);
    r->norm = NAN;
    if (!isfinite(cr->loss)) return;
    contrastive_opts o = {.lr = (float)r->lr,
                          .beta1 = (float)c->beta1,
                          .beta2 = (float)c->beta2,
                          .eps = (float)c->adam_eps,
                          .weight_decay = (float)c->weight_decay,
                          .clip = (float)c->clip,
                          .step = (int64_t)t->prog.opt_step + 1};
    r->norm = contrastive_update(&t->heads, &o);
}

static void contrastive_train_step(trainer *t, episode *eps, int64_t n, int64_t step, step_result *r) {
    double t0 = aimc_now();
    contrastive_owned_batch ob;
    make_batch(t, eps, n, &ob);
    arena_reset(&t->work);
    /* the towers, the gathers and the gradient sums: one call, so the
     * collectives are timed as compute */
    contrastive_result cr = contrastive_grads(&t->heads, t->clip, &t->work, &ob.b, step);
    train_test_poison(t, step, 1); /* the gradients are already summed */
    r->loss = cr.loss;
    r->loss_count = (double)cr.n_global;
    r->tokens = global_tokens(t, &ob.b, step);
    update(t, &cr, step, r);
    r->skipped = !isfinite(r->loss) || !isfinite(r->norm);
    r->some_rank_bad = r->skipped; /* the loss is global: no rank can tell whose pairs it was */
    if (r->skipped) train_name_bad_episodes(t, eps, n, step, "loss or gradient of the global batch");
    r->comm_in_compute = 1;
    r->t_compute = aimc_now() - t0;
    contrastive_owned_batch_free(&ob);
}

/* ---- held-out loss, teardown ---------------------------------------------------------- */

/* The held-out pairs in global batches of world x batch (train.h); the mean
 * over pairs of the batches' losses. Every rank runs the same number of
 * batches (some with no pair of their own). */
static double contrastive_eval(trainer *t, int64_t step, double *count) {
    int64_t b = t->cfg->batch, most = (t->n_eval_global + t->world - 1) / t->world;
    double sum = 0, pairs = 0;
    for (int64_t lo = 0; lo < most; lo += b) {
        int64_t from = lo < t->n_eval ? lo : t->n_eval, to = lo + b < t->n_eval ? lo + b : t->n_eval;
        contrastive_owned_batch ob;
        make_batch(t, t->eval_eps + from, to - from, &ob);
        arena_reset(&t->work);
        contrastive_result cr = contrastive_grads(&t->heads, t->clip, &t->work, &ob.b, step);
        contrastive_owned_batch_free(&ob);
        sum += cr.loss * (double)cr.n_global;
        pairs += (double)cr.n_global;
    }
    *count = pairs;
    return sum / pairs;
}

static void contrastive_objective_free(trainer *t) {
    if (t->heads.params.be) contrastive_free(&t->heads);
    clip_free(t->clip);
}

const train_objective train_objective_contrastive = {
    .name = "contrastive",
    .count_key = "pairs",
    .count_label = "pairs",
    .trainable = "heads",
    .load = contrastive_load,
    .restored = contrastive_restored,
    .step = contrastive_train_step,
    .eval = contrastive_eval,
    .free = contrastive_objective_free,
};
