/* aimc train: configuration, setup, the step loop and reporting, shared by
 * the objectives (train.h; train_lm.c, train_contrastive.c). Checkpoints,
 * resume and the metrics file are in train_state.c. */
#include "train.h"
#include "../data/loader.h"
#include "../data/tokenizer.h"
#include "../kernels/check.h"
#include "backend.h"
#include "config.h"
#include "dist.h"
#include "train_impl.h"
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>


/* ---- configuration ---------------------------------------------------------------- */

void train_config_default(train_config *c) {
    memset(c, 0, sizeof *c);
    c->objective = "lm";
    c->backbone = "";
    c->format = ""; /* the objective's (train_config_resolve) */
    c->out = "out";
    c->projector = "linear";
    c->schedule = "cosine";
    c->device = "cpu";
    c->demo_template = "{caption}";
    c->query_prompt = "";
    c->target_template = "{caption}";
    c->eval_data = "";
    c->mmc4_images = "";
    c->eval_episodes = 32;
    c->steps = 100;
    c->batch = 4;
    c->accum = 1;
    c->k = -1; /* the objective's (train_config_resolve) */
    c->layer = -1;
    c->warmup = 0;
    c->save_every = 100;
    c->keep = 3;
    c->log_every = 10;
    c->workers = 2;
    c->max_text_tokens = 64;
    c->shuffle_block = 256;
    c->shuffle_shards = 1;
    c->max_bad_steps = 3;
    c->arena_mb = 256;
    c->lr = 1e-3;
    c->min_lr = 0;
    c->weight_decay = 0;
    c->beta1 = 0.9;
    c->beta2 = 0.999;
    c->adam_eps = 1e-8;
    c->clip = 1.0;
    c->sim_threshold = 0.24;
}

int train_config_options(train_config *c, arg_opt *o) {
    const arg_opt table[] = {
        {"--config", ARG_STR, &c->config, "key = value file (configs/*.conf); command-line options win"},
        {"--objective", ARG_STR, &c->objective,
         "lm (the AIM projector on LLaVA / BLIP-2) or contrastive (CLIP's projection heads)"},
        {"--model", ARG_STR, &c->model, "Hugging Face folder of the frozen LLaVA / BLIP-2 / CLIP backbone"},
        {"--backbone", ARG_STR, &c->backbone,
         "backbone name for checkpoints and exports (empty: the folder's name)"},
        {"--data", ARG_STR, &c->data,
         "training shards: paths, globs or ranges (dir/{00000..00009}.tar); .jsonl files: raw MMC4 (--mmc4-images)"},
        {"--format", ARG_STR, &c->format,
         "shard format: mmc4 (documents), laion (pairs) or auto (empty: mmc4 for lm, laion for contrastive)"},
        {"--mmc4-images", ARG_STR, &c->mmc4_images,
         "folder of the images of raw MMC4 .jsonl --data / --eval-data files (DIR/<image_name>)"},
        {"--out", ARG_STR, &c->out, "output folder: checkpoints, metrics.jsonl, config.conf"},
        {"--steps", ARG_INT, &c->steps,
         "optimizer steps in total (a resumed run counts from its checkpoint)"},
        {"--until", ARG_INT, &c->until,
         "stop after this step (0 = --steps); the schedule still spans --steps"},
        {"--batch", ARG_INT, &c->batch, "episodes (contrastive: pairs) per rank per micro-batch"},
        {"--accum", ARG_INT, &c->accum, "micro-batches per step (gradient accumulation; lm only)"},
        {"--k", ARG_INT, &c->k,
         "demonstrations per episode (-1: 2 for lm, 0 for contrastive, which takes only 0)"},
        {"--layer", ARG_INT, &c->layer, "hidden_states index aggregated (-1 = last, after the final norm)"},
        {"--projector", ARG_STR, &c->projector, "linear, linear_ln or mlp"},
        {"--proj-hidden", ARG_INT, &c->proj_hidden, "mlp hidden width (0 = the model width)"},
        {"--lr", ARG_FLOAT, &c->lr, "peak learning rate"},
        {"--min-lr", ARG_FLOAT, &c->min_lr, "cosine floor (reached at the last step)"},
        {"--warmup", ARG_INT, &c->warmup, "linear warmup steps"},
        {"--schedule", ARG_STR, &c->schedule, "cosine or constant (after warmup)"},
        {"--weight-decay", ARG_FLOAT, &c->weight_decay, "AdamW weight decay (Linear weights only)"},
        {"--beta1", ARG_FLOAT, &c->beta1, "AdamW beta1"},
        {"--beta2", ARG_FLOAT, &c->beta2, "AdamW beta2"},
        {"--adam-eps", ARG_FLOAT, &c->adam_eps, "AdamW epsilon"},
        {"--clip", ARG_FLOAT, &c->clip, "global gradient-norm clip (0 = none)"},
        {"--seed", ARG_INT, &c->seed, "projector initialisation and data order"},
        {"--save-every", ARG_INT, &c->save_every, "checkpoint every N steps (0: only at the end)"},
        {"--keep", ARG_INT, &c->keep, "checkpoints kept (0 = all)"},
        {"--resume", ARG_FLAG, &c->resume, "continue from OUT/latest when it exists"},
        {"--device", ARG_STR, &c->device, "cpu or cuda"},
        {"--log-every", ARG_INT, &c->log_every, "progress line every N steps"},
        {"--workers", ARG_INT, &c->workers, "data decoding threads per rank"},
        {"--max-text-tokens", ARG_INT, &c->max_text_tokens, "tokens per demonstration / query text"},
        {"--sim-threshold", ARG_FLOAT, &c->sim_threshold,
         "MMC4: image-sentence pairs need matched_sim >= this"},
        {"--demo-template", ARG_STR, &c->demo_template, "demonstration text ({caption} = the sentence)"},
        {"--query-prompt", ARG_STR, &c->query_prompt, "query prompt before the target (not trained on)"},
        {"--target-template", ARG_STR, &c->target_template, "query target text ({caption} = the sentence)"},
        {"--eval-data", ARG_STR, &c->eval_data, "held-out shards for the evaluation loss (empty: none)"},
        {"--eval-episodes", ARG_INT, &c->eval_episodes, "held-out episodes evaluated"},
        {"--eval-every", ARG_INT, &c->eval_every,
         "evaluate every N steps (0: at the start and the end only)"},
        {"--shuffle-block", ARG_INT, &c->shuffle_block, "samples shuffled together (<= 1: file order)"},
        {"--shuffle-shards", ARG_INT, &c->shuffle_shards,
         "1: shuffle the shard order every epoch; 0: as listed"},
        {"--max-bad-steps", ARG_INT, &c->max_bad_steps, "non-finite steps in a row before the run stops"},
        {"--arena-mb", ARG_INT, &c->arena_mb, "step memory on the device, MiB"},
        {"--dist-timeout", ARG_FLOAT, &c->dist_timeout,
         "seconds a collective may wait (0: $AIMC_DIST_TIMEOUT or 300)"},
    };
    int n = (int)(sizeof table / sizeof table[0]);
    AIMC_CHECK(n <= TRAIN_MAX_OPTIONS, "train: %d options, room for %d", n, TRAIN_MAX_OPTIONS);
    memcpy(o, table, sizeof table);
    return n;
}

static int format_ok(const char *f) {
    return !strcmp(f, "mmc4") || !strcmp(f, "laion") || !strcmp(f, "auto");
}

/* The objective named by --objective, or NULL. */
static const train_objective *objective_by_name(const char *name) {
    if (!strcmp(name, train_objective_lm.name)) return &train_objective_lm;
    if (!strcmp(name, train_objective_contrastive.name)) return &train_objective_contrastive;
    return NULL;
}

void train_config_resolve(train_config *c) {
    int contrastive = !strcmp(c->objective, "contrastive");
    if (c->k < 0) c->k = contrastive ? 0 : 2;
    if (!*c->format) c->format = contrastive ? "laion" : "mmc4";
}

static int check_names(const train_config *c, char *err, size_t errlen) {
    if (!objective_by_name(c->objective))
        return aimc_set_err(err, errlen, "--objective must be lm or contrastive, got '%s'", c->objective);
    if (!c->model || !*c->model)
        return aimc_set_err(err, errlen, "--model DIR is required (or model = DIR in --config)");
    if (!c->data || !*c->data)
        return aimc_set_err(err, errlen, "--data SPEC is required (or data = SPEC in --config)");
    if (!c->out || !*c->out) return aimc_set_err(err, errlen, "--out DIR must not be empty");
    if (!format_ok(c->format))
        return aimc_set_err(err, errlen, "--format must be mmc4, laion or auto, got '%s'", c->format);
    if (projector_type_parse(c->projector) < 0)
        return aimc_set_err(err, errlen, "--projector must be linear, linear_ln or mlp, got '%s'",
                            c->projector);
    if (lr_kind_parse(c->schedule) < 0)
        return aimc_set_err(err, errlen, "--schedule must be cosine or constant, got '%s'", c->schedule);
    if (strcmp(c->device, "cpu") && strcmp(c->device, "cuda"))
        return aimc_set_err(err, errlen, "--device must be cpu or cuda, got '%s'", c->device);
    return 0;
}

typedef struct int_range {
    const char *name;
    int64_t v, lo, hi;
} int_range;

static int check_ints(const train_config *c, char *err, size_t errlen) {
    const int64_t big = INT64_C(1) << 40;
    const int_range r[] = {
        {"--steps", c->steps, 1, big},
        {"--until", c->until, 0, big},
        {"--batch", c->batch, 1, 1 << 16},
        {"--accum", c->accum, 1, 1 << 16},
        {"--k", c->k, 0, 1024},
        {"--proj-hidden", c->proj_hidden, 0, big},
        {"--warmup", c->warmup, 0, big},
        {"--seed", c->seed, 0, INT64_MAX},
        {"--save-every", c->save_every, 0, big},
        {"--keep", c->keep, 0, 1 << 20},
        {"--log-every", c->log_every, 1, big},
        {"--workers", c->workers, 1, 256},
        {"--max-text-tokens", c->max_text_tokens, 1, 1 << 20},
        {"--shuffle-block", c->shuffle_block, 0, 1 << 24},
        {"--shuffle-shards", c->shuffle_shards, 0, 1},
        {"--max-bad-steps", c->max_bad_steps, 1, big},
        {"--arena-mb", c->arena_mb, 1, 1 << 24},
        {"--eval-episodes", c->eval_episodes, 1, 1 << 20},
        {"--eval-every", c->eval_every, 0, big},
    };
    for (size_t i = 0; i < sizeof r / sizeof r[0]; i++)
        if (r[i].v < r[i].lo || r[i].v > r[i].hi)
            return aimc_set_err(err, errlen, "%s must be in [%lld, %lld], got %lld", r[i].name,
                                (long long)r[i].lo, (long long)r[i].hi, (long long)r[i].v);
    if (c->batch * c->accum > (1 << 16))
        return aimc_set_err(err, errlen,
                            "--batch x --accum = %lld episodes per step is too many (at most 65536)",
                            (long long)(c->batch * c->accum));
    return 0;
}

static int check_floats(const train_config *c, char *err, size_t errlen) {
    if (!(isfinite(c->lr) && c->lr >= 0))
        return aimc_set_err(err, errlen, "--lr must be finite and >= 0, got %g", c->lr);
    if (!(isfinite(c->min_lr) && c->min_lr >= 0 && c->min_lr <= c->lr))
        return aimc_set_err(err, errlen, "--min-lr must be in [0, --lr = %g], got %g", c->lr, c->min_lr);
    if (!(isfinite(c->weight_decay) && c->weight_decay >= 0))
        return aimc_set_err(err, errlen, "--weight-decay must be finite and >= 0, got %g", c->weight_decay);
    if (!(c->beta1 >= 0 && c->beta1 < 1))
        return aimc_set_err(err, errlen, "--beta1 must be in [0, 1), got %g", c->beta1);
    if (!(c->beta2 >= 0 && c->beta2 < 1))
        return aimc_set_err(err, errlen, "--beta2 must be in [0, 1), got %g", c->beta2);
    if (!(isfinite(c->adam_eps) && c->adam_eps > 0))
        return aimc_set_err(err, errlen, "--adam-eps must be finite and > 0, got %g", c->adam_eps);
    if (!(isfinite(c->clip) && c->clip >= 0))
        return aimc_set_err(err, errlen, "--clip must be finite and >= 0, got %g", c->clip);
    if (!(c->sim_threshold >= -1 && c->sim_threshold <= 1))
        return aimc_set_err(err, errlen, "--sim-threshold must be in [-1, 1], got %g", c->sim_threshold);
    if (!(isfinite(c->dist_timeout) && c->dist_timeout >= 0))
        return aimc_set_err(err, errlen, "--dist-timeout must be finite and >= 0, got %g", c->dist_timeout);
    return 0;
}

/* What one objective needs of the shared settings. */
static int check_objective(const train_config *c, char *err, size_t errlen) {
    if (strcmp(c->objective, "contrastive")) {
        if (c->k < 1)
            return aimc_set_err(err, errlen, "--k must be >= 1 for --objective lm, got %lld",
                                (long long)c->k);
        return 0;
    }
    if (c->k != 0)
        return aimc_set_err(err, errlen,
                            "--objective contrastive trains on image-caption pairs: --k must be 0, got %lld",
                            (long long)c->k);
    if (c->accum != 1)
        return aimc_set_err(err, errlen,
                            "--objective contrastive takes no gradient accumulation (--accum must be 1, got "
                            "%lld): its negatives are the step's whole batch, so micro-batches would change "
                            "the loss; raise --batch instead",
                            (long long)c->accum);
    return 0;
}

int train_config_check(const train_config *c, char *err, size_t errlen) {
    if (check_names(c, err, errlen) || check_ints(c, err, errlen) || check_floats(c, err, errlen) ||
        check_objective(c, err, errlen))
        return -1;
    if (!strstr(c->target_template, "{caption}"))
        return aimc_set_err(err, errlen, "--target-template must contain {caption}, got '%s'",
                            c->target_template);
    return 0;
}

static const char *const not_stored[] = {"--config", NULL};

char *train_config_text(train_config *c) {
    arg_opt opts[TRAIN_MAX_OPTIONS];
    int n = train_config_options(c, opts);
    return config_format(opts, n, not_stored,
                         "# aimc train: the resolved configuration (defaults < --config < command line)\n");
}

/* ---- setup ------------------------------------------------------------------------- */

/* The last path component of dir (trailing slashes ignored). */
static void base_name(const char *dir, char *out, size_t n) {
    size_t len = strlen(dir);
    while (len > 1 && dir[len - 1] == '/') len--;
    size_t start = len;
    while (start > 0 && dir[start - 1] != '/') start--;
    snprintf(out, n, "%.*s", (int)(len - start), dir + start);
}

/* One GPU per rank on a node: the cuda backend opens the AIMC_CUDA_DEVICE-th
 * visible GPU (modulo their count; kernels/cuda/backend_cuda.cu), so before
 * its first call this rank asks for the local_rank-th, which the dist layer
 * knows for every launcher (LOCAL_RANK alone is torchrun's). The visible set
 * is left alone: narrowing CUDA_VISIBLE_DEVICES per rank would keep NCCL
 * from using CUDA IPC between the ranks' GPUs. A launcher that binds one GPU
 * per task (srun --gpus-per-task=1) leaves one visible: index 0 whatever the
 * local rank. An AIMC_CUDA_DEVICE the user set wins. */
static void select_gpu(const trainer *t) {
    int local = dist_local_rank();
    if (strcmp(t->cfg->device, "cuda") || local < 0 || getenv("AIMC_CUDA_DEVICE")) return;
    char index[32];
    snprintf(index, sizeof index, "%d", local);
    setenv("AIMC_CUDA_DEVICE", index, 1);
}

/* Device gradients are summed by NCCL when every rank has it, else through
 * host memory (every rank must take the same path). */
static void open_nccl(trainer *t) {
    if (t->world == 1 || !strcmp(t->be->name, "cpu")) return;
    char err[512] = "";
    int mine = dist_nccl_init(err, sizeof err);
    t->use_nccl = dist_all_ok(mine, DIST_SETUP, NULL);
    if (!t->use_nccl && t->rank == 0)
        printf("aimc train: NCCL unavailable%s%s%s: gradients are summed through host memory\n",
               *err ? " (" : "", err, *err ? ")" : "");
}

/* The device, then the objective's backbone and trainable parameters. */
static int load_backbone(trainer *t, char *err, size_t errlen) {
    train_config *c = t->cfg;
    select_gpu(t);
    t->be = backend_by_name(c->device);
    open_nccl(t);
    char *name = t->backbone_name;
    if (*c->backbone)
        snprintf(name, sizeof t->backbone_name, "%s", c->backbone);
    else
        base_name(c->model, name, sizeof t->backbone_name);
    c->backbone = name; /* the resolved config names it (aimc export reads it) */
    return t->obj->load(t, err, errlen);
}

static void make_schedule(trainer *t) {
    const train_config *c = t->cfg;
    t->sched = (lr_schedule){.kind = (lr_kind)lr_kind_parse(c->schedule),
                             .peak_lr = c->lr,
                             .min_lr = c->min_lr,
                             .warmup_steps = c->warmup,
                             .total_steps = c->steps};
    char err[256];
    if (lr_schedule_check(&t->sched, err, sizeof err)) aimc_die("train: schedule: %s", err);
    t->adam = (adamw_opts){.beta1 = (float)c->beta1,
                           .beta2 = (float)c->beta2,
                           .eps = (float)c->adam_eps,
                           .weight_decay = (float)c->weight_decay,
                           .grad_scale = 1.0f};
}

static int expand_shards(trainer *t, char *err, size_t errlen) {
    t->n_shards = shard_expand(t->cfg->data, &t->shards, err, errlen);
    if (t->n_shards < 0) return -1;
    if (t->n_shards < t->world)
        return aimc_set_err(err, errlen,
                            "--data has %lld shard%s for %d ranks: every rank needs at least one",
                            (long long)t->n_shards, t->n_shards == 1 ? "" : "s", t->world);
    return 0;
}

/* The loader settings shared by training and evaluation. */
static void base_loader_config(const trainer *t, loader_config *lc) {
    const train_config *c = t->cfg;
    loader_config_default(lc);
    lc->n_workers = (int)c->workers;
    lc->seed = (uint64_t)c->seed;
    lc->quiet = t->rank != 0;
    lc->tok = t->tok;
    lc->pp = &t->pp;
    episode_config *e = &lc->episode;
    e->k = (int)c->k;
    e->sim_threshold = c->sim_threshold;
    if (e->max_images < e->k + 1) e->max_images = e->k + 1;
    e->max_text_tokens = c->max_text_tokens;
    e->demo_template = c->demo_template;
    e->query_prompt = c->query_prompt;
    e->target_template = c->target_template;
    lc->mmc4_images = *c->mmc4_images ? c->mmc4_images : NULL;
    e->sample.format = !strcmp(c->format, "mmc4")    ? SAMPLE_FORMAT_MMC4
                       : !strcmp(c->format, "laion") ? SAMPLE_FORMAT_LAION
                                                     : SAMPLE_FORMAT_AUTO;
}

static int open_loader(trainer *t, const loader_cursor *cursor, char *err, size_t errlen) {
    loader_config lc;
    base_loader_config(t, &lc);
    lc.shards = t->shards;
    lc.n_shards = t->n_shards;
    lc.rank = t->rank;
    lc.world = t->world;
    lc.shuffle_block = t->cfg->shuffle_block;
    lc.shuffle_shards = (int)t->cfg->shuffle_shards;
    t->ld = loader_open(&lc, cursor, err, errlen);
    return t->ld ? 0 : -1;
}

/* Reads the held-out episodes (every rank reads the same ones, in file
 * order, and keeps its share). */
static int load_eval(trainer *t, char *err, size_t errlen) {
    const train_config *c = t->cfg;
    if (!*c->eval_data) return 0;
    char **shards;
    int64_t n = shard_expand(c->eval_data, &shards, err, errlen);
    if (n < 0) return -1;
    loader_config lc;
    base_loader_config(t, &lc);
    lc.shards = shards;
    lc.n_shards = n;
    lc.shuffle_block = 0;
    lc.shuffle_shards = 0;
    lc.max_epochs = 1;
    loader *l = loader_open(&lc, NULL, err, errlen);
    t->eval_eps = calloc((size_t)c->eval_episodes, sizeof *t->eval_eps);
    AIMC_CHECK(t->eval_eps, "train: out of memory");
    int rc = l ? 0 : -1;
    for (int64_t i = 0; !rc && i < c->eval_episodes; i++) {
        episode e;
        rc = loader_next(l, &e, err, errlen);
        if (rc != 1) break;
        rc = 0;
        t->n_eval_global++;
        if (i % t->world == t->rank)
            t->eval_eps[t->n_eval++] = e;
        else
            episode_free(&e);
    }
    loader_close(l);
    shard_paths_free(shards, n);
    if (rc < 0) return -1;
    if (t->n_eval_global == 0)
        return snprintf(err, errlen, "--eval-data %s holds no usable episode", c->eval_data), -1;
    return 0;
}

int train_all_ok(const trainer *t, int ok, const char *err, int64_t step) {
    int first_bad = 0;
    if (dist_all_ok(ok, step, &first_bad)) return 1;
    if (t->rank != first_bad) return 0;
    if (t->world > 1)
        fprintf(stderr, "aimc train: error: rank %d/%d: %s\n", t->rank, t->world, err);
    else
        fprintf(stderr, "aimc train: error: %s\n", err);
    return 0;
}

static int make_out_dir(const char *dir, char *err, size_t errlen) {
    char path[4096];
    snprintf(path, sizeof path, "%s", dir);
    for (char *p = path + 1; *p; p++) { /* mkdir -p */
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(path, 0777) && errno != EEXIST)
            return aimc_set_err(err, errlen, "cannot create %s: %s", path, strerror(errno));
        *p = '/';
    }
    if (mkdir(path, 0777) && errno != EEXIST)
        return aimc_set_err(err, errlen, "cannot create --out %s: %s", path, strerror(errno));
    return 0;
}

/* The resolved configuration as "key=value" words, a few per line. */
static void print_config_words(const char *text) {
    config_file cf;
    char err[256];
    if (config_parse(text, "resolved", &cf, err, sizeof err)) return;
    int col = 0;
    for (int i = 0; i < cf.n; i++) {
        const char *v = cf.entries[i].value;
        int quote = !*v || strpbrk(v, " \t#") != NULL;
        int w = (int)(strlen(cf.entries[i].key) + strlen(v)) + 3 + 2 * quote;
        if (col && col + w > 110) printf("\n"), col = 0;
        printf(col ? "  " : "aimc train: config: ");
        printf(quote ? "%s=\"%s\"" : "%s=%s", cf.entries[i].key, v);
        col += w + (col ? 2 : 20);
    }
    printf("\n");
    config_free(&cf);
}

static void print_config(const trainer *t) {
    const dist_info *d = dist_get_info();
    printf("aimc train: %d rank%s", t->world, t->world == 1 ? "" : "s");
    if (t->world > 1)
        printf(" (launcher %s, transport %s, collective timeout %g s)", dist_launcher_name(d->launcher),
               dist_transport_name(d->transport), d->timeout_s);
    printf(", device %s, objective %s\naimc train: backbone %s\naimc train: %s %s (%lld parameters)\n",
           t->be->name, t->obj->name, t->backbone_text, t->obj->trainable, t->projector_text,
           (long long)projector_numel(t->params));
    print_config_words(t->config_text);
    fflush(stdout);
}

/* ---- the step ----------------------------------------------------------------------- */

static void fetch_episodes(trainer *t, episode *eps, int64_t n) {
    char err[1024];
    for (int64_t i = 0; i < n; i++) {
        int rc = loader_next(t->ld, &eps[i], err, sizeof err);
        if (rc == 1) continue;
        /* max_epochs is 0 (endless), so 0 cannot happen; -1 is a data error on this rank */
        aimc_die("train: rank %d: data: %s", t->rank, rc < 0 ? err : "the loader ended");
    }
}

static void free_episodes(episode *eps, int64_t n) {
    for (int64_t i = 0; i < n; i++) episode_free(&eps[i]);
}

void train_test_poison(const trainer *t, int64_t step, int every_rank) {
    const char *spec = getenv("AIMC_TEST_TRAIN_NAN_STEPS");
    if (!spec || (t->rank != 0 && !every_rank)) return;
    for (const char *s = spec; *s;) {
        char *end;
        long long v = strtoll(s, &end, 10);
        if (end == s) return;
        if (v == step) {
            float nan_value = NAN;
            t->be->upload(t->params->params[0].grad.data, &nan_value, sizeof nan_value);
            return;
        }
        s = *end ? end + 1 : end;
    }
}

void train_name_bad_episodes(const trainer *t, const episode *eps, int64_t n, int64_t step,
                             const char *what) {
    fprintf(stderr, "aimc train: step %lld: rank %d: non-finite %s; its episodes:", (long long)step, t->rank,
            what);
    for (int64_t i = 0; i < n; i++) {
        const episode *e = &eps[i];
        fprintf(stderr, " %s", e->items[e->k].source ? e->items[e->k].source : "?");
    }
    fprintf(stderr, "\n");
}

static void run_step(trainer *t, episode *eps, int64_t step, step_result *r) {
    int64_t n = t->cfg->batch * t->cfg->accum;
    memset(r, 0, sizeof *r);
    double t0 = aimc_now();
    fetch_episodes(t, eps, n);
    r->t_data = aimc_now() - t0;
    t->obj->step(t, eps, n, step, r);
    r->episodes = (double)(n * t->world);
    r->t_total = aimc_now() - t0;
    free_episodes(eps, n);
}

static void update_progress(trainer *t, const step_result *r, int64_t step) {
    t->prog.step = step;
    t->prog.episodes_total += (uint64_t)r->episodes;
    if (r->skipped) {
        t->prog.skipped_steps++;
        t->prog.bad_in_a_row++;
    } else {
        t->prog.opt_step++;
        t->prog.bad_in_a_row = 0;
    }
}

/* ---- reporting ----------------------------------------------------------------------- */

static void format_duration(double s, char *buf, size_t n) {
    long long x = (long long)(s + 0.5);
    snprintf(buf, n, "%lld:%02lld:%02lld", x / 3600, x / 60 % 60, x % 60);
}

static void json_number(FILE *f, const char *key, double v) {
    if (isfinite(v))
        fprintf(f, ",\"%s\":%.9g", key, v);
    else
        fprintf(f, ",\"%s\":null", key);
}

static void write_metrics(trainer *t, const step_result *r, int64_t step) {
    if (!t->metrics) return;
    FILE *f = t->metrics;
    fprintf(f, "{\"step\":%lld", (long long)step);
    json_number(f, "loss", r->loss);
    json_number(f, "lr", r->lr);
    json_number(f, "grad_norm", r->norm);
    json_number(f, "episodes", r->episodes);
    json_number(f, t->obj->count_key, r->loss_count);
    json_number(f, "tokens", r->tokens);
    json_number(f, "step_s", r->t_total);
    json_number(f, "data_s", r->t_data);
    json_number(f, "compute_s", r->t_compute);
    json_number(f, "comm_s", r->t_comm);
    json_number(f, "episodes_per_s", r->episodes / r->t_total);
    json_number(f, "tokens_per_s", r->tokens / r->t_total);
    json_number(f, "elapsed_s", aimc_now() - t->t_start);
    fprintf(f, ",\"skipped\":%d,\"skipped_total\":%llu}\n", r->skipped,
            (unsigned long long)t->prog.skipped_steps);
    fflush(f);
}

/* "data 5% compute 90% comm 5%" (compute+comm when the objective cannot time them apart). */
static void format_split(const step_result *r, char *buf, size_t n) {
    double total = r->t_data + r->t_compute + r->t_comm;
    if (r->comm_in_compute)
        snprintf(buf, n, "data %.0f%% compute+comm %.0f%%", 100 * r->t_data / total,
                 100 * r->t_compute / total);
    else
        snprintf(buf, n, "data %.0f%% compute %.0f%% comm %.0f%%", 100 * r->t_data / total,
                 100 * r->t_compute / total, 100 * r->t_comm / total);
}

static void print_progress(trainer *t, const step_result *r, int64_t step) {
    const train_config *c = t->cfg;
    double elapsed = aimc_now() - t->t_start, per_step = elapsed / (double)(step - t->first_step);
    char eta[32], skips[256], split[96];
    loader_cursor cur;
    loader_cursor_get(t->ld, &cur); /* this rank's data skips (rank 0) */
    format_duration(per_step * (double)(t->last_step - step), eta, sizeof eta);
    format_split(r, split, sizeof split);
    double avg = t->log_steps ? t->log_loss_sum / (double)t->log_steps : NAN;
    printf("step %*lld/%lld  loss %.4f (mean of %lld: %.4f)  lr %.3e  gnorm %.3f  %.1f ep/s  %.0f tok/s  "
           "%s  skips: %s%s  steps skipped %llu  ETA %s\n",
           (int)snprintf(NULL, 0, "%lld", (long long)c->steps), (long long)step, (long long)c->steps, r->loss,
           (long long)t->log_steps, avg, r->lr, r->norm, r->episodes / r->t_total, r->tokens / r->t_total,
           split, skip_counts_str(&cur.skips, skips, sizeof skips), t->world > 1 ? " (rank 0)" : "",
           (unsigned long long)t->prog.skipped_steps, eta);
    fflush(stdout);
}

static void report_step(trainer *t, const step_result *r, int64_t step) {
    if (t->rank != 0) return;
    write_metrics(t, r, step);
    if (!r->skipped) {
        t->log_loss_sum += r->loss;
        t->log_steps++;
    }
    if (step % t->cfg->log_every == 0 || step == t->first_step + 1 || step == t->last_step || r->skipped) {
        print_progress(t, r, step);
        t->log_loss_sum = 0;
        t->log_steps = 0;
    }
}

static void print_totals(trainer *t, const char *when) {
    loader_cursor sum;
    train_gather_totals(t, &sum);
    if (t->rank != 0) return;
    char skips[512];
    printf("aimc train: %s: step %lld, %lld episodes trained on, %lld samples read, %lld shards completed, "
           "data skips: %s; steps skipped (non-finite): %llu\n",
           when, (long long)t->prog.step, (long long)t->prog.episodes_total, (long long)sum.samples,
           (long long)sum.shards_done, skip_counts_str(&sum.skips, skips, sizeof skips),
           (unsigned long long)t->prog.skipped_steps);
    fflush(stdout);
}

/* ---- the run ------------------------------------------------------------------------- */

static int setup(trainer *t) {
    char err[4096] = "";
    int ok = !make_out_dir(t->cfg->out, err, sizeof err) && !expand_shards(t, err, sizeof err) &&
             !load_backbone(t, err, sizeof err);
    if (!train_all_ok(t, ok, err, DIST_SETUP)) return 1;
    make_schedule(t);
    arena_init(&t->work, t->be, (size_t)t->cfg->arena_mb << 20);
    t->config_text = train_config_text(t->cfg);
    t->prog.rng_state = (uint64_t)t->cfg->seed ^ 0x5eed5eed5eed5eedull;
    return 0;
}

static int start_data(trainer *t) {
    loader_cursor cursor;
    int have_cursor = 0;
    if (train_resume(t, &cursor, &have_cursor)) return 1;
    char err[4096] = "";
    int ok = !open_loader(t, have_cursor ? &cursor : NULL, err, sizeof err) && !load_eval(t, err, sizeof err);
    if (ok && t->rank == 0) {
        char path[4200];
        snprintf(path, sizeof path, "%s/config.conf", t->cfg->out);
        ok = !train_write_text(path, t->config_text, err, sizeof err) &&
             !train_metrics_open(t, err, sizeof err);
    }
    return train_all_ok(t, ok, err, DIST_SETUP) ? 0 : 1;
}

static int too_many_bad(const trainer *t, int64_t step) {
    if ((int64_t)t->prog.bad_in_a_row < t->cfg->max_bad_steps) return 0;
    if (t->rank == 0)
        fprintf(
            stderr,
            "aimc train: error: %llu steps in a row (steps %lld-%lld) had a non-finite loss or gradient norm "
            "(their episodes are named above); stopping. They did not update the %s; "
            "the last checkpoint is in %s\n",
            (unsigned long long)t->prog.bad_in_a_row, (long long)(step - (int64_t)t->prog.bad_in_a_row + 1),
            (long long)step, t->obj->trainable, t->cfg->out);
    return 1;
}

/* The held-out loss (no update; train.h), printed and logged by rank 0. */
static void run_eval(trainer *t, int64_t step) {
    if (!t->n_eval_global) return;
    double t0 = aimc_now(), count;
    double loss = t->obj->eval(t, step, &count);
    if (t->rank != 0) return;
    printf("eval  step %lld: held-out loss %.4f (%lld episodes, %.0f %s, %.2f s)\n", (long long)step, loss,
           (long long)t->n_eval_global, count, t->obj->count_label, aimc_now() - t0);
    fflush(stdout);
    if (t->metrics) {
        char key[64];
        snprintf(key, sizeof key, "eval_%s", t->obj->count_key);
        fprintf(t->metrics, "{\"step\":%lld", (long long)step);
        json_number(t->metrics, "eval_loss", loss);
        json_number(t->metrics, key, count);
        fprintf(t->metrics, "}\n");
        fflush(t->metrics);
    }
}

static int eval_due(const trainer *t, int64_t step) {
    return step == t->last_step || (t->cfg->eval_every > 0 && step % t->cfg->eval_every == 0);
}

/* Test hook: AIMC_TEST_STEP_DELAY_MS=N sleeps after each step (kill tests). */
static void step_delay(void) {
    const char *s = getenv("AIMC_TEST_STEP_DELAY_MS");
    if (s && atoi(s) > 0) usleep((useconds_t)atoi(s) * 1000);
}

static int train_loop(trainer *t) {
    const train_config *c = t->cfg;
    int64_t n = c->batch * c->accum;
    episode *eps = calloc((size_t)n, sizeof *eps);
    AIMC_CHECK(eps, "train: out of memory");
    int rc = 0;
    if (t->prog.step == 0) run_eval(t, 0);
    for (int64_t step = t->prog.step + 1; step <= t->last_step; step++) {
        step_result r;
        run_step(t, eps, step, &r);
        update_progress(t, &r, step);
        report_step(t, &r, step);
        if (too_many_bad(t, step)) {
            rc = 1;
            break;
        }
        if (eval_due(t, step)) run_eval(t, step);
        if (((c->save_every > 0 && step % c->save_every == 0) || step == t->last_step) && train_save(t)) {
            rc = 1;
            break;
        }
        step_delay();
    }
    free(eps);
    return rc;
}

static void teardown(trainer *t) {
    if (t->metrics) fclose(t->metrics);
    for (int64_t i = 0; i < t->n_eval; i++) episode_free(&t->eval_eps[i]);
    free(t->eval_eps);
    loader_close(t->ld);
    shard_paths_free(t->shards, t->n_shards > 0 ? t->n_shards : 0);
    if (t->work.base) arena_free(&t->work);
    t->obj->free(t);
    tokenizer_free(t->tok);
    free(t->config_text);
}

int train_run(train_config *c) {
    trainer t = {
        .cfg = c, .obj = objective_by_name(c->objective), .rank = dist_rank(), .world = dist_world()};
    AIMC_CHECK(t.obj, "train: unknown objective '%s' (train_config_check lets none through)", c->objective);
    int rc = setup(&t);
    if (!rc && t.rank == 0) print_config(&t);
    if (!rc) rc = start_data(&t);
    if (!rc) {
        t.first_step = t.prog.step;
        t.last_step = c->until > 0 && c->until < c->steps ? c->until : c->steps;
        t.t_start = aimc_now();
        if (t.prog.step > 0) print_totals(&t, "resumed");
        if (t.prog.step >= t.last_step && t.rank == 0)
            printf(
                "aimc train: the checkpoint is at step %lld, the run stops after step %lld: nothing to do\n",
                (long long)t.prog.step, (long long)t.last_step);
        rc = train_loop(&t);
        if (!rc) print_totals(&t, "done");
    }
    teardown(&t);
    return rc;
}
