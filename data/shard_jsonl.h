/* The raw MMC4 layout (.jsonl documents + an image folder) read as shard
 * samples; used by data/shard.c behind shard_open / shard_next (the rules
 * are in shard.h). Internal to data/. */
#ifndef AIMC_SHARD_JSONL_H
#define AIMC_SHARD_JSONL_H
#include "shard.h"

typedef struct jsonl_reader jsonl_reader;

/* lim: resolved (no zero fields); images: the image folder (copied) or
 * NULL. NULL with "PATH: problem" in err. */
jsonl_reader *jsonl_open(const char *path, const shard_limits *lim, const char *images, char *err, size_t errlen);
int jsonl_next(jsonl_reader *r, shard_sample *s, skip_counts *skips);
/* Passes over up to n samples as jsonl_next would deliver them, without
 * reading images or counting skips; returns how many it passed. */
int64_t jsonl_skip(jsonl_reader *r, int64_t n);
void jsonl_close(jsonl_reader *r);
#endif
