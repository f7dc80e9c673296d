/* aimc shards bench --loader: the training loader's throughput by worker count. */
#ifndef AIMC_BENCH_LOADER_H
#define AIMC_BENCH_LOADER_H
#include <stdint.h>

typedef struct bench_loader_opts {
    const char *spec;        /* shards: list, glob or brace range (data/shard.h) */
    const char *model;       /* model folder: its tokenizer and preprocessing */
    const char *mmc4_images; /* image folder of raw MMC4 .jsonl shards, or NULL */
    const char *workers;     /* worker counts to time, "1,2" */
    int64_t episodes;        /* timed episodes per count */
    int k;                   /* demonstrations per episode */
} bench_loader_opts;

/* Prints one line per worker count; dies with one line on bad input. */
int bench_loader_run(const bench_loader_opts *o);
#endif
