/* The training data loader: tar shards (or raw MMC4 .jsonl files, which
 * data/shard.h reads as shards of one document per line) -> AIM episodes,
 * decoded ahead by worker threads, in an order that depends only on
 * (shards, seed, config), never on the number of threads or their timing,
 * and that can be resumed exactly from a saved cursor.
 *
 * Order of samples for rank r of W:
 *   - the rank's shards are shards[r], shards[r + W], ... (r::W); at least one
 *     shard per rank is required (loader_open fails otherwise);
 *   - epoch e reads them in an order shuffled by (seed, rank, e) (or as
 *     listed when shuffle_shards = 0), each shard front to back;
 *   - the samples of an epoch are cut into consecutive blocks of
 *     shuffle_block samples (the last one shorter), and each block is
 *     permuted by (seed, rank, e, block index) — a block shuffle instead of
 *     webdataset's sliding buffer, so that the cursor stays a few numbers and
 *     a resume re-reads at most one block;
 *   - epochs follow one another (max_epochs, 0 = forever).
 * Episodes: an MMC4 document gives one episode (data/episode.h); LAION pairs
 * are grouped into episodes of k + 1 consecutive pairs of that order (a
 * group still open when the last epoch ends is dropped). A loader reads one
 * format: sample_opts.format, or for SAMPLE_FORMAT_AUTO the format of the
 * first sample of the first readable shard of the rank (in listed order);
 * samples of the other kind are then skipped as SKIP_MISSING_MEMBER.
 *
 * Threads: one reader thread reads raw samples in that order into a ring of
 * queue_depth slots; n_workers threads decode, preprocess and tokenize them;
 * loader_next takes the results in ring order. Worker count only changes
 * speed, so resuming with another count is fine. Workers do not own shards,
 * so no worker can idle for want of one: a rank needs one shard, not one
 * per worker. The reader does the tar reading on one core (JSON, base64,
 * image decoding and tokenizing all happen in the workers); for a .jsonl
 * file it also parses each line once for its image names and reads the
 * image files (a resume passes over the lines already taken without
 * reading images: shard_skip). Memory: the reader holds one block of raw
 * samples, the ring queue_depth samples or episodes. Every rank's stream is endless unless max_epochs is set, so
 * ranks with different shard sizes still take the same number of steps.
 *
 * Bad data: each skipped sample is counted by reason (data/shard.h) as it
 * reaches loader_next; a shard that cannot be opened is counted as
 * SKIP_SHARD_UNREADABLE (and reported on stderr once, unless quiet) and the
 * epoch goes on. A whole epoch with no usable sample is an error (never a
 * silent endless loop).
 *
 * Cursor: after loader_next returns, loader_cursor_get() describes the position
 * just after everything returned so far (epoch, block, where the block
 * starts: shard position in the epoch order and samples already taken from
 * it, items of the permuted block already used) plus the counters. A loader
 * opened with that cursor (same shards, rank, world, seed and shuffle
 * settings; otherwise loader_open refuses it) yields exactly the episodes the
 * first one would have yielded next, and the same counters. The shuffles'
 * generators are derived from (seed, rank, epoch, block), so the cursor
 * needs no generator state. */
#ifndef AIMC_LOADER_H
#define AIMC_LOADER_H
#include "episode.h"
#include "shard.h"
#include <stddef.h>
#include <stdint.h>

typedef struct loader_config {
    char **shards;          /* every rank's shards, in order (e.g. from shard_expand); copied */
    int64_t n_shards;
    int rank, world;        /* default 0 of 1 */
    int n_workers;          /* decode threads (default 2) */
    int64_t queue_depth;    /* samples in flight (default 4 * n_workers + 4) */
    int64_t shuffle_block;  /* samples permuted together (default 256; <= 1: none) */
    int shuffle_shards;     /* shuffle the shard order every epoch (default 1) */
    uint64_t seed;
    int64_t max_epochs;     /* 0 = forever */
    int quiet;              /* 1: no stderr line for unreadable shards */
    shard_limits limits;    /* zero = data/shard.h defaults */
    const char *mmc4_images; /* the image folder of raw MMC4 .jsonl shards (copied); required
                                when a shard is a .jsonl file */
    episode_config episode;
    const tokenizer *tok;             /* borrowed, must outlive the loader */
    const preprocess_config *pp;      /* borrowed, must outlive the loader */
} loader_config;

/* The defaults above (shards, tok and pp left NULL). */
void loader_config_default(loader_config *c);

typedef struct loader_cursor {
    int32_t rank, world;
    uint64_t seed;
    uint64_t config_hash;   /* of the rank's shard list and the shuffle settings */
    int64_t epoch;          /* 0-based */
    int64_t block;          /* block index within the epoch */
    int64_t start_shard;    /* where that block starts: position in the epoch's shard order */
    int64_t start_sample;   /*   and samples already taken from that shard */
    int64_t in_block;       /* items of the permuted block already used */
    int64_t episodes;       /* episodes returned */
    int64_t samples;        /* samples read (used or skipped) */
    int64_t shards_done;    /* shards finished (read to the end, or unreadable) */
    skip_counts skips;
} loader_cursor;

typedef struct loader loader;

/* Validates the config and starts the threads. resume NULL: from the start.
 * NULL and one line in err on any problem (bad config, fewer shards than
 * ranks, a cursor from another run or rank). */
loader *loader_open(const loader_config *cfg, const loader_cursor *resume, char *err, size_t errlen);
/* The next episode into *out (free with episode_free): 1; 0 when max_epochs
 * are done; -1 with one line in err (e.g. an epoch without one usable
 * sample). After 0 or -1 every further call returns the same. */
int loader_next(loader *l, episode *out, char *err, size_t errlen);
/* The position after the last loader_next, with the counters. */
void loader_cursor_get(const loader *l, loader_cursor *c);
/* The rank's shard count. */
int64_t loader_rank_shards(const loader *l);
/* Stops and joins every thread, frees everything. NULL is fine. */
void loader_close(loader *l);

/* Cursor <-> bytes (little-endian, fixed size, checksummed), for checkpoints. */
#define LOADER_CURSOR_BYTES 256
void loader_cursor_encode(const loader_cursor *c, uint8_t out[LOADER_CURSOR_BYTES]);
/* 0, or -1 with one line in err (wrong size, magic, version or checksum). */
int loader_cursor_decode(const uint8_t *buf, size_t n, loader_cursor *c, char *err, size_t errlen);

/* The loader's PRNG (splitmix64): small, and its whole state is one word. */
typedef struct loader_rng {
    uint64_t state;
} loader_rng;
uint64_t loader_rng_next(loader_rng *r);
/* Uniform in [0, n), n >= 1 (rejection sampling: no modulo bias). */
uint64_t loader_rng_below(loader_rng *r, uint64_t n);
/* A generator for one purpose, from the seed and up to four numbers. */
loader_rng loader_rng_derive(uint64_t seed, uint64_t a, uint64_t b, uint64_t c, uint64_t d);
#endif
