/* aimc train: trains an AIM projector on a frozen LLaVA / BLIP-2 backbone
 * with the LM objective, or CLIP's projection heads with the contrastive one
 * (host/train.h). Settings: defaults, then --config FILE (key = value,
 * host/config.h), then the command line. */
#include "args.h"
#include "commands.h"
#include "config.h"
#include "dist.h"
#include "train.h"
#include <stdio.h>
#include <stdlib.h>

static const char *const train_usage =
    "aimc train --model DIR --data SPEC --out DIR [--config FILE] [options]";
static const char *const train_summary =
    "Trains the AIM projector (the only trainable part) on a frozen multimodal LLM with the\n"
    "LM loss on the query's target tokens (--objective lm), or CLIP's projection heads and\n"
    "logit_scale on its frozen towers with the InfoNCE loss over the global batch of\n"
    "image-caption pairs (--objective contrastive). Checkpoints (parameters, AdamW state, every rank's\n"
    "data position) go to OUT every --save-every steps and at the end; --resume continues\n"
    "from OUT/latest exactly. Every option is also a config key (max_text_tokens = 32);\n"
    "the command line wins over --config. Launch several ranks with mpirun, srun or\n"
    "RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT (docs/distributed.md).";

static int usage_error(const char *msg) {
    fprintf(stderr, "aimc train: error: %s (see 'aimc train --help')\n", msg);
    return 2;
}

/* Loads --config into the option destinations: 0, or the exit status. */
static int apply_config_file(int argc, char **argv, const arg_opt *opts, int n, config_file *file) {
    static const char *const not_keys[] = {"--config", NULL};
    const char *path = config_find_arg(argc, argv, "--config");
    char err[1024];
    if (!path) return 0;
    if (config_load(path, file, err, sizeof err) || config_apply(file, opts, n, not_keys, err, sizeof err))
        return usage_error(err);
    return 0;
}

int cmd_train(int argc, char **argv) {
    train_config c;
    train_config_default(&c);
    arg_opt opts[TRAIN_MAX_OPTIONS];
    int n = train_config_options(&c, opts);
    config_file file = {0};
    int rc = apply_config_file(argc, argv, opts, n, &file);
    if (rc) {
        config_free(&file);
        return rc;
    }
    int npos = args_parse(argc, argv, train_usage, train_summary, opts, n);
    train_config_resolve(&c); /* the objective's defaults, now that it is known */
    char err[1024];
    if (npos) {
        snprintf(err, sizeof err, "unexpected argument '%s'", argv[1]);
        rc = usage_error(err);
    } else if (train_config_check(&c, err, sizeof err)) {
        rc = usage_error(err);
    } else {
        dist_opts d = {.timeout_s = c.dist_timeout, .quiet = 1}; /* train prints the world itself */
        dist_init(&d);
        rc = train_run(&c);
        if (rc == 0) dist_finalize(); /* after an error every rank exits without waiting in MPI_Finalize */
    }
    config_free(&file);
    return rc;
}
