/* Internals shared by host/train.c (setup and the step loop) and
 * host/train_state.c (checkpoints, resume, metrics file). Not an API. */
#ifndef AIMC_TRAIN_IMPL_H
#define AIMC_TRAIN_IMPL_H
#include "../data/loader.h"
#include "aim.h"
#include "arena.h"
#include "projector.h"
#include "schedule.h"
#include "train.h"
#include <stdio.h>

/* What a checkpoint carries besides the projector (train.h: extra blob). */
typedef struct train_progress {
    int64_t step;            /* steps completed (updates + skipped) */
    uint64_t opt_step;       /* AdamW updates done (bias correction) */
    uint64_t skipped_steps;  /* non-finite steps, in total */
    uint64_t bad_in_a_row;   /* non-finite steps since the last good one */
    uint64_t rng_state;      /* the trainer's generator (train.h) */
    uint64_t episodes_total; /* episodes trained on, every rank */
} train_progress;

typedef struct trainer {
    train_config *cfg;
    int rank, world;
    const backend *be;
    int use_nccl; /* device gradients summed by NCCL (else via host memory) */
    struct mllm *mllm;
    tokenizer *tok;
    preprocess_config pp;
    projector proj;
    aim_model am;
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
} trainer;

/* ---- train_state.c ---- */

#define TRAIN_EXTRA_MAGIC "AIMCTRN1"
#define TRAIN_EXTRA_VERSION 1u
#define TRAIN_EXTRA_HEADER 64 /* magic, version, world, six u64 */

/* Every rank: gathers the cursors, rank 0 writes OUT/ckpt-<step>.aimc.
 * 0, or 1 on every rank when the write failed (rank 0 printed why). */
int train_save(trainer *t);
/* Every rank: decides from OUT/latest whether to resume (cfg->resume) and
 * restores the projector, progress and this rank's cursor (*cursor, with
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
double train_now(void);
/* Every rank learns whether every rank is ok; the lowest failing rank
 * prints its err (one line for the whole job). 1 when all are ok. */
int train_all_ok(const trainer *t, int ok, const char *err, int64_t step);
#endif
