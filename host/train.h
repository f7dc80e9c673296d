/* The loop behind `aimc train`, for two objectives (--objective):
 *   lm           the AIM projector on a frozen LLaVA / BLIP-2 (below);
 *   contrastive  CLIP's projection heads and logit_scale on the frozen towers
 *                (host/contrastive.h), on image-caption pairs (k = 0
 *                episodes, LAION shards by default): one global batch of
 *                world x batch pairs per step, negatives from every rank, no
 *                gradient accumulation (--accum must be 1: micro-batches
 *                would change the objective). Its trainable set is
 *                visual_projection.weight, text_projection.weight and
 *                logit_scale, initialised from the checkpoint's own values.
 * Both share everything else: the schedule, data, checkpoints, resume,
 * evaluation, logging and data parallelism (host/train_impl.h: an objective
 * is its backbone load, its step and its held-out loss).
 *
 * One LM step (every rank, the same number of steps: the loader's epochs wrap):
 *   1. data: accum x batch episodes from the rank's loader (data/loader.h);
 *   2. the step's target tokens are counted and summed over ranks BEFORE any
 *      backward, so every micro-batch backward uses dscale = 1 / (target
 *      tokens of the whole global step): the mean loss of docs/aim-step.md over
 *      world x accum x batch episodes, whatever the split;
 *   3. per micro-batch: aim_batch_step (forward + backward, gradients added);
 *   4. projector gradients summed over ranks (host/dist.h: rank order,
 *      deterministic), then projector_step (global-norm clip, AdamW) with the
 *      schedule's learning rate;
 *   5. a non-finite loss or gradient norm skips the update (counted, the
 *      episodes' sources named); max_bad_steps in a row stop the run.
 * One contrastive step: batch pairs per rank, contrastive_grads (towers,
 * the embeddings' all-gather and the gradient sums in one call, so the
 * progress line times compute and communication together), then
 * contrastive_update; step 5 as above. Metrics name the loss's count
 * "pairs" where the LM's says "targets".
 * GPUs: with --device cuda each rank opens the local_rank-th visible GPU
 * (AIMC_CUDA_DEVICE, kernels/cuda/backend_cuda.cu).
 * Checkpoints (rank 0, host/checkpoint.h) every save_every steps and at the
 * end: projector + AdamW moments + step + the resolved config + the extra
 * blob below; --resume continues bitwise-identically to a run that never
 * stopped.
 *
 * Extra blob (little-endian, 64-byte header): "AIMCTRN1", u32 version = 1,
 * u32 world, u64 step, u64 opt_step (AdamW updates done), u64
 * skipped_steps, u64 bad_in_a_row, u64 rng_state, u64 episodes_total; then
 * world x LOADER_CURSOR_BYTES
 * (rank r's loader cursor, data/loader.h encoding). rng_state is the
 * trainer's own splitmix64 generator (seeded from seed): nothing in the LM
 * step draws from it yet, it is kept so that a stochastic addition resumes
 * exactly. A resume with another world size is refused (cursors are per
 * rank).
 *
 * Held-out evaluation (--eval-data): the first eval_episodes episodes of
 * those shards (read in order, once, with the training episode settings),
 * split over ranks (episode i on rank i mod world), evaluated with no update
 * at step 0 of a fresh run, every eval_every steps and at the last step. It
 * changes no training state. lm: the mean LM loss over their target tokens.
 * contrastive: the held-out pairs in global batches of world x batch pairs
 * (chunk j = episodes [j B world, (j + 1) B world), whatever the world
 * size), the mean over pairs of each batch's InfoNCE loss.
 *
 * Files in out: ckpt-<step>.aimc + latest (checkpoint.h), metrics.jsonl (one
 * JSON object per step; lines past the resumed step are dropped on resume),
 * config.conf (the resolved configuration). */
#ifndef AIMC_TRAIN_H
#define AIMC_TRAIN_H
#include "args.h"
#include <stddef.h>
#include <stdint.h>

typedef struct train_config {
    const char *config;    /* --config FILE (not stored) */
    const char *objective; /* lm | contrastive */
    const char *model;     /* Hugging Face folder of the frozen backbone */
    const char *backbone;  /* its name in checkpoints and exports ("" = the folder's basename) */
    const char *data;      /* shard spec (data/shard.h: lists, globs, {a..b}; .jsonl = raw MMC4) */
    const char *format;    /* mmc4 | laion | auto */
    const char *out;
    const char *projector; /* linear | linear_ln | mlp */
    const char *schedule;  /* cosine | constant */
    const char *device;    /* cpu | cuda */
    const char *demo_template, *query_prompt, *target_template;
    const char *eval_data; /* held-out shards ("" = no evaluation) */
    const char *mmc4_images; /* image folder of raw MMC4 .jsonl data ("" = none) */
    int64_t steps, until, batch, accum, k, layer, proj_hidden;
    int64_t warmup, seed, save_every, keep, log_every, workers, max_text_tokens;
    int64_t shuffle_block, shuffle_shards, max_bad_steps, arena_mb, eval_episodes, eval_every;
    double lr, min_lr, weight_decay, beta1, beta2, adam_eps, clip, sim_threshold, dist_timeout;
    int resume;
} train_config;

/* The defaults (the tiny-model main job's sizes; real runs use configs/).
 * k = -1 and format = "" stand for the objective's default (lm: 2, mmc4;
 * contrastive: 0, laion), set by train_config_resolve. */
void train_config_default(train_config *c);
/* Replaces those placeholders once the objective is known (after the config
 * file and the command line, before train_config_check). */
void train_config_resolve(train_config *c);

#define TRAIN_MAX_OPTIONS 64
/* The option table bound to c's fields (names are the CLI flags; config keys
 * are the same without "--"). Returns the count. */
int train_config_options(train_config *c, arg_opt *opts);
/* 0, or -1 with one line in err naming the option and the bad value. */
int train_config_check(const train_config *c, char *err, size_t errlen);
/* The resolved configuration as config text (malloc'd). */
char *train_config_text(train_config *c);

/* Runs the training described by c on every rank (dist_init already done,
 * or a single process). Returns the exit status: 0, or 1 after printing one
 * error line. */
int train_run(train_config *c);
#endif
