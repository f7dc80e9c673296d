/* Internals shared by host/train.c (configuration, setup, the step loop,
 * reporting), host/train_state.c (checkpoints, resume, metrics file) and the
 * objectives: host/train_lm.c (the AIM projector, LM loss) and
 * host/train_contrastive.c (CLIP heads, InfoNCE). Not an API. */
#ifndef AIMC_TRAIN_IMPL_H
#define AIMC_TRAIN_IMPL_H
#include "../data/loader.h"
#include "aim.h"
#include "arena.h"
#include "clip.h"
#include "contrastive.h"
#include "projector.h"
#include "schedule.h"
#include "train.h"
#include <stdio.h>

/* What a checkpoint carries besides the parameters (train.h: extra blob). */
typedef struct train_progress {
    int64_t step;            /* steps completed (updates + skipped) */
    uint64_t opt_step;       /* AdamW updates done (bias correction) */
    uint64_t skipped_steps;  /* non-finite steps, in total */
    uint64_t bad_in_a_row;   /* non-finite steps since the last good one */
    uint64_t rng_state;      /* the trainer's generator (train.h) */
    uint64_t episodes_total; /* episodes trained on, every rank */
} train_progress;

/* One step as every rank saw it (filled by the objective's step, timings of
 * the data wait and the total by the loop). */
typedef struct step_result {
    double loss;       /* the global mean loss (NaN: non-finite) */
    double loss_count; /* what it averages over, every rank: target tokens (lm), pairs (contrastive) */
    double tokens;     /* input positions processed, every rank (tokens/s) */
    double episodes;   /* every rank */
    double norm, lr;   /* gradient norm before clipping; the schedule's lr */
    double t_data, t_compute, t_comm, t_total;
    int comm_in_compute; /* the collectives run inside t_compute (not timed apart) */
    int skipped;         /* no update: the loss or the gradient norm was not finite */
    int some_rank_bad;   /* some rank's own loss or gradient was non-finite */
} step_result;

typedef struct trainer trainer;

/* What differs between objectives. Every function runs on every rank. */
typedef struct train_objective {
    const char *name;        /* as --objective spells it */
    const char *count_key;   /* metrics key of step_result.loss_count ("targets", "pairs") */
    const char *count_label; /* the same in the held-out line ("target tokens", "pairs") */
    const char *trainable;   /* what the parameters are, for the start lines ("projector") */
    /* The frozen backbone on t->be, tokenizer, preprocessing, t->backbone_text
     * (the checkpoint's identity), t->params and t->projector_text. 0, or -1
     * with one line in err (bad user input). */
    int (*load)(trainer *t, char *err, size_t errlen);
    /* After t->params was restored from a checkpoint (NULL: nothing to do). */
    void (*restored)(trainer *t);
    /* Gradients over this rank's n episodes, summed over ranks, then the
     * update with the schedule's lr (skipped when the loss or the gradient
     * norm is not finite). Fills everything in r but t_data and t_total. */
    void (*step)(trainer *t, episode *eps, int64_t n, int64_t step, step_result *r);
    /* The held-out loss over every rank's t->eval_eps (no update); *count =
     * what it averages over. */
    double (*eval)(trainer *t, int64_t step, double *count);
    void (*free)(trainer *t);
} train_objective;

extern const train_objective train_objective_lm, train_objective_contrastive;

struct trainer {
    train_config *cfg;
    const train_objective *obj;
    int rank, world;
    const backend *be;
    int use_nccl;      /* device gradients summed by NCCL (else via host memory) */
    projector *params; /* the trainable set: &proj (lm) or &heads.params (contrastive) */
    tokenizer *tok;
    preprocess_config pp;
    /* lm */
    struct mllm *mllm;
    projector proj;
    aim_model am;
    /* contrastive */
    clip_model *clip;
    contrastive_heads heads;
    contrastive_text_spec spec;

    arena work;
    char **shards;
    int64_t n_shards;
    loader *ld;
    lr_schedule sched;
    adamw_opts adam;
    char backbone_text[512], projector_text[160];
    char *config_text;
    train_progress prog;
    int64_t first_step;  /* the step this process started after (0, or the resumed one) */
    int64_t last_step;   /* the step this process stops after (--until, else --steps) */
    double log_loss_sum; /* losses of the good steps since the last progress line */
    int64_t log_steps;
    char backbone_name[256]; /* --backbone, or the model folder's name */
    episode *eval_eps;       /* this rank's share of the held-out episodes */
    int64_t n_eval, n_eval_global;
    loader_cursor start_totals; /* every rank's counters summed, at the start */
    FILE *metrics;
    double t_start;
};

/* ---- train_state.c ---- */

#define TRAIN_EXTRA_MAGIC "AIMCTRN1"
#define TRAIN_EXTRA_VERSION 1u
#define TRAIN_EXTRA_HEADER 64 /* magic, version, world, six u64 */

/* Every rank: gathers the cursors, rank 0 writes OUT/ckpt-<step>.aimc.
 * 0, or 1 on every rank when the write failed (rank 0 printed why). */
int train_save(trainer *t);
/* Every rank: decides from OUT/latest whether to resume (cfg->resume) and
 * restores the parameters, progress and this rank's cursor (*cursor, with
 * *have_cursor = 1). Returns 0, or 1 after an error line (every rank). */
int train_resume(trainer *t, loader_cursor *cursor, int *have_cursor);
/* Sums of every rank's loader counters (a collective). */
void train_gather_totals(trainer *t, loader_cursor *sum);
/* Rank 0: opens OUT/metrics.jsonl for appending, first dropping lines for
 * steps after t->prog.step (left by a run that died after its last
 * checkpoint). 0, or -1 with err. */
int train_metrics_open(trainer *t, char *err, size_t errlen);
/* Rank 0: writes text to path atomically. 0, or -1 with err. */
int train_write_text(const char *path, const char *text, char *err, size_t errlen);

/* ---- train.c ---- */
/* Every rank learns whether every rank is ok; the lowest failing rank
 * prints its err (one line for the whole job). 1 when all are ok. */
int train_all_ok(const trainer *t, int ok, const char *err, int64_t step);
/* stderr: "step S: rank R: non-finite WHAT; its episodes: <sources>". */
void train_name_bad_episodes(const trainer *t, const episode *eps, int64_t n, int64_t step, const char *what);
/* Test hook: AIMC_TEST_TRAIN_NAN_STEPS=3,4 makes the first parameter's
 * gradient NaN at those steps: on rank 0 only (before gradients are summed),
 * or on every rank with every_rank (after they were summed). */
void train_test_poison(const trainer *t, int64_t step, int every_rank);
#endif
