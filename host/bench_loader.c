/* aimc shards bench --loader SPEC --model DIR: the training loader's
 * throughput (episodes/s and images/s: tar or .jsonl reading, JSON, image
 * decode + the model's preprocessing, tokenizing) with 1, 2, ... workers,
 * and how close each worker count comes to linear scaling from one. The
 * loader is the one `aimc train` runs (data/loader.h), with train's
 * defaults; each count reads the same episodes from the start, after a
 * warm-up of 2 x workers episodes that fills the queue. */
#include "bench_loader.h"
#include "../data/loader.h"
#include "../kernels/check.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>


/* "1,2,4" -> counts (at most max); dies on anything else. */
static int parse_workers(const char *s, int *out, int max) {
    int n = 0;
    for (const char *p = s; *p;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 1 || v > 1024 || n == max || (*end && *end != ','))
            aimc_die("shards bench: --workers must be a list like 1,2,4 of counts in [1, 1024], got '%s'", s);
        out[n++] = (int)v;
        p = *end ? end + 1 : end;
    }
    if (!n) aimc_die("shards bench: --workers is empty");
    return n;
}

/* Seconds for `episodes` episodes after the warm-up; images counted into *images. */
static double time_loader(loader_config *lc, int64_t episodes, int64_t *images) {
    char err[1024];
    loader *l = loader_open(lc, NULL, err, sizeof err);
    if (!l) aimc_die("shards bench: %s", err);
    double t0 = 0;
    int64_t warm = 2 * (int64_t)lc->n_workers;
    *images = 0;
    for (int64_t i = 0; i < warm + episodes; i++) {
        if (i == warm) t0 = aimc_now();
        episode e;
        int rc = loader_next(l, &e, err, sizeof err);
        if (rc < 0) aimc_die("shards bench: %s", err);
        if (rc == 0) aimc_die("shards bench: the loader ended after %lld episodes", (long long)i);
        if (i >= warm) *images += e.k + 1;
        episode_free(&e);
    }
    double s = aimc_now() - t0;
    loader_cursor c;
    loader_cursor_get(l, &c);
    int64_t skipped = 0;
    for (int r = 0; r < SKIP_REASON_COUNT; r++) skipped += c.skips.n[r];
    if (skipped) printf("  (%lld samples skipped while reading)\n", (long long)skipped);
    loader_close(l);
    return s;
}

int bench_loader_run(const bench_loader_opts *o) {
    char err[1024];
    tokenizer *tok = tokenizer_load(o->model, err, sizeof err);
    if (!tok) aimc_die("shards bench: %s", err);
    preprocess_config pp;
    if (preprocess_config_load(&pp, o->model, err, sizeof err)) aimc_die("shards bench: %s", err);
    char **paths;
    int64_t n_paths = shard_expand(o->spec, &paths, err, sizeof err);
    if (n_paths < 0) aimc_die("shards bench: %s", err);
    int counts[16];
    int n_counts = parse_workers(o->workers, counts, 16);
    loader_config lc;
    loader_config_default(&lc);
    lc.shards = paths, lc.n_shards = n_paths, lc.seed = 1, lc.quiet = 1;
    lc.mmc4_images = o->mmc4_images, lc.tok = tok, lc.pp = &pp;
    lc.episode.k = o->k;
    if (lc.episode.max_images < o->k + 1) lc.episode.max_images = o->k + 1;
    printf("aimc shards bench --loader: %lld shard%s, model %s, k = %d, %lld episodes per worker count\n",
           (long long)n_paths, n_paths == 1 ? "" : "s", o->model, o->k, (long long)o->episodes);
    double base = 0;
    for (int i = 0; i < n_counts; i++) {
        lc.n_workers = counts[i];
        lc.queue_depth = 0; /* the default for this count */
        int64_t images;
        double s = time_loader(&lc, o->episodes, &images);
        double rate = (double)images / s;
        if (i == 0) base = rate / counts[0];
        printf("  %3d worker%s: %7.1f episodes/s, %8.1f images/s, %7.1f images/s per worker, %5.1f%% of "
               "linear from %d\n",
               counts[i], counts[i] == 1 ? " " : "s", (double)o->episodes / s, rate, rate / counts[i],
               100.0 * rate / (base * counts[i]), counts[0]);
    }
    shard_paths_free(paths, n_paths);
    tokenizer_free(tok);
    return 0;
}
