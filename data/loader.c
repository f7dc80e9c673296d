/* The threaded, resumable episode loader (see loader.h).
 *
 * Pipeline: reader thread -> ring of slots (sequence numbers) -> worker
 * threads -> loader_next, which takes slots strictly in sequence order. Each
 * slot's result depends only on its raw sample, so the output order is the
 * reader's order whatever the threads do. */
#include "loader.h"
#include "../kernels/check.h"
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- PRNG ------------------------------------------------------------- */

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

uint64_t loader_rng_next(loader_rng *r) { return mix64(r->state += 0x9e3779b97f4a7c15ull); }

uint64_t loader_rng_below(loader_rng *r, uint64_t n) {
    uint64_t limit = UINT64_MAX - UINT64_MAX % n, x;
    do x = loader_rng_next(r);
    while (x >= limit);
    return x % n;
}

loader_rng loader_rng_derive(uint64_t seed, uint64_t a, uint64_t b, uint64_t c, uint64_t d) {
    uint64_t h = mix64(seed + 0x9e3779b97f4a7c15ull);
    const uint64_t parts[4] = {a, b, c, d};
    for (int i = 0; i < 4; i++) h = mix64(h ^ mix64(parts[i] + (uint64_t)(i + 1) * 0x632be59bd9b4e019ull));
    return (loader_rng){h};
}

/* Fisher–Yates. */
static void shuffle_i64(int64_t *a, int64_t n, loader_rng *r) {
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)loader_rng_below(r, (uint64_t)i + 1), t = a[i];
        a[i] = a[j], a[j] = t;
    }
}

enum { TAG_SHARD_ORDER = 1, TAG_BLOCK = 2 };

/* ---- items and slots -------------------------------------------------- */

typedef enum { RAW_SAMPLE, RAW_EMPTY, RAW_END } raw_kind;
typedef enum { OUT_NONE, OUT_SKIP, OUT_PAIR, OUT_EPISODE, OUT_END } out_kind;
typedef enum { SLOT_FREE, SLOT_READY, SLOT_BUSY, SLOT_DONE } slot_state;

/* Counters that travel with an item and are added when it is consumed. */
typedef struct item_delta {
    skip_counts skips;
    int64_t shards_done;
} item_delta;

/* Where an item sits in the stream: enough to compute the cursor after it. */
typedef struct item_pos {
    int64_t epoch, block, start_shard, start_sample; /* the block and its start */
    int64_t offset, len;                            /* index in the permuted block, block length */
    int64_t next_shard, next_sample;                /* the start of the following block */
    int epoch_end;                                  /* the block ends the epoch */
} item_pos;

typedef struct raw_item {
    raw_kind kind;
    shard_sample sample;
    int64_t shard; /* index into the rank's shards */
    item_delta delta;
    item_pos pos;
} raw_item;

typedef struct slot {
    slot_state state;
    raw_item in;
    out_kind kind;
    skip_reason why;
    episode_pair pair;
    episode ep;
    char msg[768];
} slot;

struct loader {
    loader_config cfg; /* shards = NULL: see paths */
    char **paths;      /* the rank's shards */
    char *images;      /* cfg.mmc4_images, copied */
    int64_t n_paths;
    episode_config ecfg; /* cfg.episode with the format resolved */
    episode_ctx ctx;
    uint64_t hash;
    loader_cursor start; /* where the reader begins */

    pthread_mutex_t mu;
    pthread_cond_t space, work, done;
    slot *ring;
    int64_t cap, next_seq, claim_seq, consume_seq;
    atomic_int stop; /* read by the reader outside the lock too */
    pthread_t reader, *workers;
    int reader_started, n_workers_started;
    uint8_t *warned; /* per rank shard: unreadable already reported (reader thread only) */

    /* consumer side (the thread calling loader_next) */
    loader_cursor cur;
    episode_pair *pending;
    int n_pending;
    int finished; /* 0 running, 1 ended, -1 failed */
    char final_msg[512];
    int64_t seen_epoch, usable_in_epoch;
    int epoch_fresh;
};

static void delta_add(item_delta *into, const item_delta *d) {
    skip_counts_add(&into->skips, &d->skips);
    into->shards_done += d->shards_done;
}

static void raw_item_free(raw_item *it) {
    if (it->kind == RAW_SAMPLE) shard_sample_free(&it->sample);
    memset(&it->sample, 0, sizeof it->sample);
}

/* ---- ring (all under l->mu) --------------------------------------------- */

/* Reader: blocks while the ring is full. 0, or -1 when stopping (item freed). */
static int ring_push(loader *l, raw_item *it) {
    pthread_mutex_lock(&l->mu);
    while (!l->stop && l->next_seq - l->consume_seq >= l->cap) pthread_cond_wait(&l->space, &l->mu);
    if (l->stop) {
        pthread_mutex_unlock(&l->mu);
        raw_item_free(it);
        return -1;
    }
    slot *s = &l->ring[l->next_seq % l->cap];
    AIMC_CHECK(s->state == SLOT_FREE, "loader ring slot %lld is busy", (long long)(l->next_seq % l->cap));
    s->in = *it;
    s->kind = OUT_NONE;
    s->msg[0] = 0;
    s->state = SLOT_READY;
    l->next_seq++;
    pthread_cond_signal(&l->work);
    pthread_mutex_unlock(&l->mu);
    return 0;
}

/* Worker: the next READY slot in sequence order, or NULL when stopping. */
static slot *ring_claim(loader *l) {
    pthread_mutex_lock(&l->mu);
    while (!l->stop && l->claim_seq == l->next_seq) pthread_cond_wait(&l->work, &l->mu);
    slot *s = NULL;
    if (!l->stop) {
        s = &l->ring[l->claim_seq++ % l->cap];
        s->state = SLOT_BUSY;
    }
    pthread_mutex_unlock(&l->mu);
    return s;
}

static void ring_finish(loader *l, slot *s) {
    pthread_mutex_lock(&l->mu);
    s->state = SLOT_DONE;
    pthread_cond_broadcast(&l->done);
    pthread_mutex_unlock(&l->mu);
}

/* Consumer: moves the next slot (in sequence order) into *out once done. */
static void ring_take(loader *l, slot *out) {
    pthread_mutex_lock(&l->mu);
    slot *s = &l->ring[l->consume_seq % l->cap];
    while (s->state != SLOT_DONE) pthread_cond_wait(&l->done, &l->mu);
    *out = *s;
    memset(s, 0, sizeof *s);
    s->state = SLOT_FREE;
    l->consume_seq++;
    pthread_cond_signal(&l->space);
    pthread_mutex_unlock(&l->mu);
}

/* ---- reader thread ------------------------------------------------------ */

typedef struct reader_state {
    int64_t epoch, block, pos, taken, drop;
    int64_t *order;     /* this epoch's shard order */
    shard_reader *r;    /* open shard at order[pos], or NULL */
    raw_item *blk;      /* the block being read */
    int64_t *perm;
    int64_t block_cap;
} reader_state;

static void make_order(const loader *l, reader_state *rs) {
    for (int64_t i = 0; i < l->n_paths; i++) rs->order[i] = i;
    if (!l->cfg.shuffle_shards) return;
    loader_rng r = loader_rng_derive(l->cfg.seed, TAG_SHARD_ORDER, (uint64_t)l->cfg.rank, (uint64_t)rs->epoch, 0);
    shuffle_i64(rs->order, l->n_paths, &r);
}

static void warn_unreadable(loader *l, int64_t shard, const char *msg) {
    if (l->warned[shard] || l->cfg.quiet) return;
    l->warned[shard] = 1;
    fprintf(stderr, "aimc: warning: rank %d: shard skipped: %s\n", l->cfg.rank, msg);
}

/* Opens the shard at rs->pos and skips the samples a resume has already
 * taken from it. NULL when it is unreadable or ends early (counted in
 * *pending; the caller moves on to the next shard). */
static shard_reader *open_at(loader *l, reader_state *rs, item_delta *pending) {
    int64_t shard = rs->order[rs->pos];
    char msg[512];
    shard_reader *r = shard_open_mmc4(l->paths[shard], &l->cfg.limits, l->cfg.mmc4_images, msg, sizeof msg);
    if (!r) {
        warn_unreadable(l, shard, msg);
        skip_count(&pending->skips, SKIP_SHARD_UNREADABLE);
        pending->shards_done++;
        return NULL;
    }
    if (shard_skip(r, rs->taken) < rs->taken) { /* skips on the way were counted before the cursor was saved */
        shard_close(r);
        pending->shards_done++;
        return NULL;
    }
    return r;
}

/* Reads up to block_cap samples; returns the count, with the counters left
 * after the last sample in *trailing and *epoch_end set when the epoch ran out. */
static int64_t read_block(loader *l, reader_state *rs, item_delta *trailing, int *epoch_end) {
    int64_t count = 0;
    item_delta pending = {0};
    *epoch_end = 0;
    while (count < rs->block_cap && !l->stop) {
        if (rs->pos == l->n_paths) {
            *epoch_end = 1;
            break;
        }
        if (!rs->r && !(rs->r = open_at(l, rs, &pending))) {
            rs->pos++, rs->taken = 0;
            continue;
        }
        item_delta d = {0};
        raw_item *it = &rs->blk[count];
        if (shard_next(rs->r, &it->sample, &d.skips)) {
            it->kind = RAW_SAMPLE;
            it->shard = rs->order[rs->pos];
            it->delta = pending;
            delta_add(&it->delta, &d);
            memset(&pending, 0, sizeof pending);
            count++, rs->taken++;
        } else {
            delta_add(&pending, &d);
            pending.shards_done++;
            shard_close(rs->r);
            rs->r = NULL;
            rs->pos++, rs->taken = 0;
        }
    }
    *trailing = pending;
    return count;
}

/* Pushes the block in its permuted order (dropping the items a resume has
 * already used). An epoch's empty last block becomes one RAW_EMPTY item so
 * that its counters still arrive. 0, or -1 when stopping. */
static int emit_block(loader *l, reader_state *rs, int64_t count, const item_delta *trailing, int epoch_end,
                      int64_t start_shard, int64_t start_sample) {
    int64_t len = count ? count : 1;
    if (!count) rs->blk[0] = (raw_item){.kind = RAW_EMPTY};
    for (int64_t i = 0; i < len; i++) rs->perm[i] = i;
    loader_rng r = loader_rng_derive(l->cfg.seed, TAG_BLOCK, (uint64_t)l->cfg.rank, (uint64_t)rs->epoch, (uint64_t)rs->block);
    shuffle_i64(rs->perm, len, &r);
    item_pos pos = {rs->epoch, rs->block, start_shard, start_sample, 0, len, rs->pos, rs->taken, epoch_end};
    int rc = 0;
    for (int64_t j = 0; j < len; j++) {
        raw_item it = rs->blk[rs->perm[j]];
        it.pos = pos, it.pos.offset = j;
        if (j == len - 1) delta_add(&it.delta, trailing);
        if (j < rs->drop || rc) raw_item_free(&it);
        else if (ring_push(l, &it)) rc = -1;
    }
    rs->drop = 0;
    return rc;
}

static void reader_loop(loader *l, reader_state *rs) {
    while (!l->stop) {
        if (l->cfg.max_epochs > 0 && rs->epoch >= l->cfg.max_epochs) {
            raw_item end = {.kind = RAW_END};
            ring_push(l, &end);
            return;
        }
        int64_t start_shard = rs->pos, start_sample = rs->taken;
        item_delta trailing;
        int epoch_end;
        int64_t count = read_block(l, rs, &trailing, &epoch_end);
        if (l->stop) {
            for (int64_t i = 0; i < count; i++) raw_item_free(&rs->blk[i]);
            return;
        }
        if (emit_block(l, rs, count, &trailing, epoch_end, start_shard, start_sample)) return;
        if (epoch_end) {
            rs->epoch++, rs->block = 0, rs->pos = 0, rs->taken = 0;
            make_order(l, rs);
        } else {
            rs->block++;
        }
    }
}

static void *reader_main(void *arg) {
    loader *l = arg;
    reader_state rs = {.epoch = l->start.epoch, .block = l->start.block, .pos = l->start.start_shard,
                       .taken = l->start.start_sample, .drop = l->start.in_block};
    rs.block_cap = l->cfg.shuffle_block > 1 ? l->cfg.shuffle_block : 1;
    rs.order = malloc((size_t)l->n_paths * sizeof *rs.order);
    rs.blk = calloc((size_t)rs.block_cap, sizeof *rs.blk);
    rs.perm = malloc((size_t)rs.block_cap * sizeof *rs.perm);
    AIMC_CHECK(rs.order && rs.blk && rs.perm, "out of memory for the loader's shuffle block (%lld samples)",
               (long long)rs.block_cap);
    make_order(l, &rs);
    reader_loop(l, &rs);
    if (rs.r) shard_close(rs.r);
    free(rs.order);
    free(rs.blk);
    free(rs.perm);
    return NULL;
}

/* ---- workers ------------------------------------------------------------ */

static void process_sample(loader *l, slot *s) {
    const shard_sample *smp = &s->in.sample;
    char source[512];
    snprintf(source, sizeof source, "%s:%s", l->paths[s->in.shard], smp->key ? smp->key : "?");
    s->kind = OUT_SKIP;
    sample_format want = l->ecfg.sample.format;
    if (sample_detect_format(smp) != want) {
        s->why = SKIP_MISSING_MEMBER;
        snprintf(s->msg, sizeof s->msg, "%s: a %s-style sample in a %s stream", source,
                 sample_format_name(sample_detect_format(smp)), sample_format_name(want));
        return;
    }
    document doc;
    if (document_parse(smp, &l->ecfg.sample, &doc, &s->why, s->msg, sizeof s->msg)) return;
    if (want == SAMPLE_FORMAT_LAION) {
        int roles = l->ecfg.k > 0 ? EPISODE_ROLE_BOTH : EPISODE_ROLE_QUERY;
        if (!episode_pair_build(&l->ctx, doc.images[0].data, doc.images[0].size, doc.texts[0], source, roles,
                                &s->pair, &s->why, s->msg, sizeof s->msg))
            s->kind = OUT_PAIR;
    } else if (!episode_from_document(&l->ctx, &doc, source, &s->ep, &s->why, s->msg, sizeof s->msg)) {
        s->kind = OUT_EPISODE;
    }
    document_free(&doc);
}

static void process_slot(loader *l, slot *s) {
    switch (s->in.kind) {
    case RAW_SAMPLE:
        process_sample(l, s);
        raw_item_free(&s->in);
        break;
    case RAW_EMPTY: s->kind = OUT_NONE; break;
    case RAW_END: s->kind = OUT_END; break;
    }
}

static void *worker_main(void *arg) {
    loader *l = arg;
    slot *s;
    while ((s = ring_claim(l))) {
        process_slot(l, s);
        ring_finish(l, s);
    }
    return NULL;
}

/* ---- consumer ----------------------------------------------------------- */

static void slot_release(slot *s) {
    raw_item_free(&s->in);
    episode_pair_free(&s->pair);
    episode_free(&s->ep);
}

static void commit_position(loader *l, const item_pos *p) {
    loader_cursor *c = &l->cur;
    if (p->offset + 1 < p->len) {
        c->epoch = p->epoch, c->block = p->block, c->start_shard = p->start_shard, c->start_sample = p->start_sample;
        c->in_block = p->offset + 1;
    } else if (p->epoch_end) {
        c->epoch = p->epoch + 1, c->block = 0, c->start_shard = 0, c->start_sample = 0, c->in_block = 0;
    } else {
        c->epoch = p->epoch, c->block = p->block + 1, c->start_shard = p->next_shard,
        c->start_sample = p->next_sample, c->in_block = 0;
    }
}

/* An epoch read from its start that gave no usable sample would repeat
 * forever: an error. 0, or -1 with final_msg set. */
static int check_epoch_change(loader *l, int64_t epoch) {
    if (epoch == l->seen_epoch) return 0;
    if (l->epoch_fresh && l->usable_in_epoch == 0) {
        char sk[512];
        snprintf(l->final_msg, sizeof l->final_msg,
                 "rank %d: epoch %lld over its %lld shards gave no usable sample (skipped: %s)", l->cfg.rank,
                 (long long)l->seen_epoch, (long long)l->n_paths, skip_counts_str(&l->cur.skips, sk, sizeof sk));
        return -1;
    }
    l->seen_epoch = epoch, l->usable_in_epoch = 0, l->epoch_fresh = 1;
    return 0;
}

/* Applies one consumed slot. Returns 1 with *out filled when an episode is
 * complete, 0 to go on, -1 on a loader error, 2 at the end. */
static int consume(loader *l, slot *s, episode *out) {
    if (s->kind == OUT_END) return 2;
    if (check_epoch_change(l, s->in.pos.epoch)) return -1;
    skip_counts_add(&l->cur.skips, &s->in.delta.skips);
    l->cur.shards_done += s->in.delta.shards_done;
    if (s->in.kind == RAW_SAMPLE) l->cur.samples++;
    int got = 0;
    if (s->kind == OUT_SKIP) {
        skip_count(&l->cur.skips, s->why);
    } else if (s->kind == OUT_EPISODE) {
        *out = s->ep;
        memset(&s->ep, 0, sizeof s->ep);
        l->usable_in_epoch++, got = 1;
    } else if (s->kind == OUT_PAIR) {
        l->pending[l->n_pending++] = s->pair;
        memset(&s->pair, 0, sizeof s->pair);
        l->usable_in_epoch++;
        if (l->n_pending == l->ecfg.k + 1) {
            episode_from_pairs(l->pending, l->ecfg.k, out);
            l->n_pending = 0, got = 1;
        }
    }
    if (l->n_pending == 0) commit_position(l, &s->in.pos);
    if (got) l->cur.episodes++;
    return got;
}

int loader_next(loader *l, episode *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    while (!l->finished) {
        slot s;
        ring_take(l, &s);
        int rc = consume(l, &s, out);
        slot_release(&s);
        if (rc == 1) return 1;
        if (rc == 2) l->finished = 1;
        if (rc < 0) l->finished = -1;
    }
    if (l->finished < 0) {
        aimc_set_err(err, errlen, "%s", l->final_msg);
        return -1;
    }
    return 0;
}

void loader_cursor_get(const loader *l, loader_cursor *c) { *c = l->cur; }

int64_t loader_rank_shards(const loader *l) { return l->n_paths; }

/* ---- open / close ------------------------------------------------------- */

void loader_config_default(loader_config *c) {
    memset(c, 0, sizeof *c);
    c->world = 1;
    c->n_workers = 2;
    c->shuffle_block = 256;
    c->shuffle_shards = 1;
    episode_config_default(&c->episode);
}

static uint64_t fnv1a(uint64_t h, const void *data, size_t n) {
    const uint8_t *p = data;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

static uint64_t config_hash(const loader *l) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (int64_t i = 0; i < l->n_paths; i++) h = fnv1a(h, l->paths[i], strlen(l->paths[i]) + 1);
    int64_t block = l->cfg.shuffle_block > 1 ? l->cfg.shuffle_block : 1, shuf = l->cfg.shuffle_shards != 0;
    h = fnv1a(h, &block, sizeof block);
    return fnv1a(h, &shuf, sizeof shuf);
}

/* Raw MMC4 .jsonl files need their image folder, and it must be one. */
static int check_image_folder(const loader_config *c, char *err, size_t errlen) {
    const char *dir = c->mmc4_images;
    struct stat st;
    if (dir && stat(dir, &st))
        return aimc_set_err(err, errlen, "loader: the MMC4 image folder '%s': %s", dir, strerror(errno));
    if (dir && !S_ISDIR(st.st_mode))
        return aimc_set_err(err, errlen, "loader: the MMC4 image folder '%s' is not a folder", dir);
    for (int64_t i = 0; !dir && i < c->n_shards; i++)
        if (shard_is_jsonl(c->shards[i]))
            return aimc_set_err(err, errlen,
                                "loader: %s is a raw MMC4 .jsonl file: give the folder of its images "
                                "(mmc4_images, --mmc4-images DIR)",
                                c->shards[i]);
    return 0;
}

static int check_config(const loader_config *c, char *err, size_t errlen) {
    if (!c->tok || !c->pp) return aimc_set_err(err, errlen, "loader: a tokenizer and a preprocess config are required");
    if (c->world < 1 || c->rank < 0 || c->rank >= c->world)
        return aimc_set_err(err, errlen, "loader: rank %d of world size %d is not a valid rank", c->rank, c->world);
    if (c->n_shards < c->world)
        return aimc_set_err(err, errlen,
                            "loader: %lld shard(s) for %d ranks: every rank reads its own shards (rank r takes r::%d), "
                            "so at least %d shards are needed; split the data into more shards or use fewer ranks",
                            (long long)c->n_shards, c->world, c->world, c->world);
    if (c->n_workers < 1 || c->n_workers > 1024)
        return aimc_set_err(err, errlen, "loader: n_workers = %d: must be in [1, 1024]", c->n_workers);
    if (c->shuffle_block < 0 || c->shuffle_block > (1 << 24))
        return aimc_set_err(err, errlen, "loader: shuffle_block = %lld: must be in [0, 16777216]",
                            (long long)c->shuffle_block);
    if (c->queue_depth < 0 || c->max_epochs < 0)
        return aimc_set_err(err, errlen, "loader: queue_depth and max_epochs must not be negative");
    if (check_image_folder(c, err, errlen)) return -1;
    episode_ctx ctx = {&c->episode, c->tok, c->pp};
    return episode_ctx_check(&ctx, err, errlen);
}

/* SAMPLE_FORMAT_AUTO: the format of the first readable sample of the rank's
 * shards in listed order. */
static int resolve_format(loader *l, char *err, size_t errlen) {
    if (l->ecfg.sample.format != SAMPLE_FORMAT_AUTO) return 0;
    for (int64_t i = 0; i < l->n_paths; i++) {
        char msg[256];
        shard_reader *r = shard_open(l->paths[i], NULL, msg, sizeof msg);
        if (!r) continue;
        shard_sample s;
        skip_counts ignored = {0};
        int got = shard_next(r, &s, &ignored);
        if (got) {
            l->ecfg.sample.format = sample_detect_format(&s);
            shard_sample_free(&s);
        }
        shard_close(r);
        if (got) return 0;
    }
    aimc_set_err(err, errlen, "loader: rank %d: none of its %lld shards has a readable sample (format auto-detection)",
                 l->cfg.rank, (long long)l->n_paths);
    return -1;
}

static int check_resume(const loader *l, const loader_cursor *c, char *err, size_t errlen) {
    if (c->rank != l->cfg.rank || c->world != l->cfg.world)
        return aimc_set_err(err, errlen,
                            "loader: the cursor is rank %d of %d, this run is rank %d of %d: resuming with another "
                            "number of ranks is not supported (it would repeat or skip samples)",
                            c->rank, c->world, l->cfg.rank, l->cfg.world);
    if (c->seed != l->cfg.seed)
        return aimc_set_err(err, errlen, "loader: the cursor was saved with seed %llu, this run uses seed %llu",
                            (unsigned long long)c->seed, (unsigned long long)l->cfg.seed);
    if (c->config_hash != l->hash)
        return aimc_set_err(err, errlen,
                            "loader: the cursor was saved for another shard list or shuffle settings "
                            "(rank %d: %lld shards now)",
                            l->cfg.rank, (long long)l->n_paths);
    int64_t block = l->cfg.shuffle_block > 1 ? l->cfg.shuffle_block : 1;
    if (c->epoch < 0 || c->block < 0 || c->start_shard < 0 || c->start_shard > l->n_paths || c->start_sample < 0 ||
        c->in_block < 0 || c->in_block >= block)
        return aimc_set_err(err, errlen,
                            "loader: the cursor's position (epoch %lld, block %lld, shard %lld, sample %lld, "
                            "item %lld) is out of range",
                            (long long)c->epoch, (long long)c->block, (long long)c->start_shard,
                            (long long)c->start_sample, (long long)c->in_block);
    return 0;
}

static int copy_rank_paths(loader *l, const loader_config *cfg) {
    l->n_paths = (cfg->n_shards - cfg->rank + cfg->world - 1) / cfg->world;
    l->paths = calloc((size_t)l->n_paths, sizeof *l->paths);
    l->warned = calloc((size_t)l->n_paths, 1);
    if (!l->paths || !l->warned) return -1;
    for (int64_t i = 0; i < l->n_paths; i++)
        if (!(l->paths[i] = strdup(cfg->shards[cfg->rank + i * cfg->world]))) return -1;
    return 0;
}

static void start_threads(loader *l) {
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->space, NULL);
    pthread_cond_init(&l->work, NULL);
    pthread_cond_init(&l->done, NULL);
    l->workers = aimc_xcalloc((size_t)l->cfg.n_workers, sizeof *l->workers);
    AIMC_CHECK(!pthread_create(&l->reader, NULL, reader_main, l), "cannot start the loader's reader thread");
    l->reader_started = 1;
    for (int i = 0; i < l->cfg.n_workers; i++) {
        AIMC_CHECK(!pthread_create(&l->workers[i], NULL, worker_main, l), "cannot start loader worker %d", i);
        l->n_workers_started++;
    }
}

static int init_loader(loader *l, const loader_config *cfg, const loader_cursor *resume, char *err, size_t errlen) {
    l->cfg = *cfg;
    l->cfg.shards = NULL;
    if (cfg->mmc4_images) l->cfg.mmc4_images = l->images = aimc_strdup(cfg->mmc4_images);
    if (copy_rank_paths(l, cfg)) return aimc_set_err(err, errlen, "loader: out of memory");
    l->ecfg = cfg->episode;
    l->ctx = (episode_ctx){&l->ecfg, cfg->tok, cfg->pp};
    l->hash = config_hash(l);
    if (resume && check_resume(l, resume, err, errlen)) return -1;
    if (resolve_format(l, err, errlen)) return -1;
    l->cap = cfg->queue_depth > 0 ? cfg->queue_depth : 4 * (int64_t)cfg->n_workers + 4;
    l->ring = calloc((size_t)l->cap, sizeof *l->ring);
    l->pending = calloc((size_t)l->ecfg.k + 1, sizeof *l->pending);
    if (!l->ring || !l->pending) return aimc_set_err(err, errlen, "loader: out of memory");
    loader_cursor fresh = {.rank = cfg->rank, .world = cfg->world, .seed = cfg->seed, .config_hash = l->hash};
    l->start = resume ? *resume : fresh;
    l->cur = l->start;
    l->seen_epoch = l->start.epoch;
    l->epoch_fresh = !l->start.block && !l->start.start_shard && !l->start.start_sample && !l->start.in_block;
    return 0;
}

loader *loader_open(const loader_config *cfg, const loader_cursor *resume, char *err, size_t errlen) {
    if (check_config(cfg, err, errlen)) return NULL;
    loader *l = calloc(1, sizeof *l);
    if (!l) return aimc_set_err(err, errlen, "loader: out of memory"), NULL;
    if (init_loader(l, cfg, resume, err, errlen)) {
        loader_close(l);
        return NULL;
    }
    start_threads(l);
    return l;
}

void loader_close(loader *l) {
    if (!l) return;
    if (l->reader_started) {
        pthread_mutex_lock(&l->mu);
        l->stop = 1;
        pthread_cond_broadcast(&l->space);
        pthread_cond_broadcast(&l->work);
        pthread_cond_broadcast(&l->done);
        pthread_mutex_unlock(&l->mu);
        pthread_join(l->reader, NULL);
        for (int i = 0; i < l->n_workers_started; i++) pthread_join(l->workers[i], NULL);
        pthread_mutex_destroy(&l->mu);
        pthread_cond_destroy(&l->space);
        pthread_cond_destroy(&l->work);
        pthread_cond_destroy(&l->done);
    }
    for (int64_t i = 0; l->ring && i < l->cap; i++) slot_release(&l->ring[i]);
    for (int i = 0; l->pending && i < l->n_pending; i++) episode_pair_free(&l->pending[i]);
    for (int64_t i = 0; l->paths && i < l->n_paths; i++) free(l->paths[i]);
    free(l->paths);
    free(l->warned);
    free(l->images);
    free(l->ring);
    free(l->pending);
    free(l->workers);
    free(l);
}

/* ---- cursor bytes ------------------------------------------------------- */

#define CURSOR_MAGIC "AIMCLCUR"
#define CURSOR_VERSION 1u

static uint8_t *put_u64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
    return p + 8;
}
static uint8_t *put_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
    return p + 4;
}
static uint64_t get_u64(const uint8_t **p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)(*p)[i] << (8 * i);
    *p += 8;
    return v;
}
static uint32_t get_u32(const uint8_t **p) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) v |= (uint32_t)(*p)[i] << (8 * i);
    *p += 4;
    return v;
}

/* Layout: magic[8] version u32, skip reasons u32, rank i32, world i32,
 * seed u64, config_hash u64, 8 x i64 (epoch .. shards_done), skips[count]
 * i64, zero padding, FNV-1a checksum u64 of everything before it. */
#define CURSOR_SKIP_SLOTS 12 /* room for new skip reasons without a new layout */
_Static_assert(SKIP_REASON_COUNT <= CURSOR_SKIP_SLOTS, "cursor layout: too many skip reasons");
_Static_assert(8 + 4 * 4 + 2 * 8 + 8 * 8 + CURSOR_SKIP_SLOTS * 8 + 8 <= LOADER_CURSOR_BYTES, "cursor layout size");

void loader_cursor_encode(const loader_cursor *c, uint8_t out[LOADER_CURSOR_BYTES]) {
    memset(out, 0, LOADER_CURSOR_BYTES);
    uint8_t *p = out;
    memcpy(p, CURSOR_MAGIC, 8), p += 8;
    p = put_u32(p, CURSOR_VERSION);
    p = put_u32(p, SKIP_REASON_COUNT);
    p = put_u32(p, (uint32_t)c->rank);
    p = put_u32(p, (uint32_t)c->world);
    p = put_u64(p, c->seed);
    p = put_u64(p, c->config_hash);
    const int64_t v[8] = {c->epoch, c->block, c->start_shard, c->start_sample, c->in_block, c->episodes, c->samples, c->shards_done};
    for (int i = 0; i < 8; i++) p = put_u64(p, (uint64_t)v[i]);
    for (int i = 0; i < CURSOR_SKIP_SLOTS; i++) p = put_u64(p, i < SKIP_REASON_COUNT ? (uint64_t)c->skips.n[i] : 0);
    put_u64(out + LOADER_CURSOR_BYTES - 8, fnv1a(0xcbf29ce484222325ull, out, LOADER_CURSOR_BYTES - 8));
}

int loader_cursor_decode(const uint8_t *buf, size_t n, loader_cursor *c, char *err, size_t errlen) {
    memset(c, 0, sizeof *c);
    if (n != LOADER_CURSOR_BYTES)
        return aimc_set_err(err, errlen, "loader cursor: %zu bytes, expected %d", n, LOADER_CURSOR_BYTES);
    if (memcmp(buf, CURSOR_MAGIC, 8))
        return aimc_set_err(err, errlen, "loader cursor: bad magic (not a loader cursor)");
    const uint8_t *sum = buf + LOADER_CURSOR_BYTES - 8;
    if (get_u64(&sum) != fnv1a(0xcbf29ce484222325ull, buf, LOADER_CURSOR_BYTES - 8))
        return aimc_set_err(err, errlen, "loader cursor: checksum mismatch (corrupt)");
    const uint8_t *p = buf + 8;
    uint32_t version = get_u32(&p), n_skips = get_u32(&p);
    if (version != CURSOR_VERSION || n_skips > CURSOR_SKIP_SLOTS)
        return aimc_set_err(err, errlen,
                            "loader cursor: version %u with %u skip reasons is not supported (this build: "
                            "version %u)",
                            version, n_skips, CURSOR_VERSION);
    c->rank = (int32_t)get_u32(&p);
    c->world = (int32_t)get_u32(&p);
    c->seed = get_u64(&p);
    c->config_hash = get_u64(&p);
    int64_t *v[8] = {&c->epoch, &c->block, &c->start_shard, &c->start_sample, &c->in_block, &c->episodes, &c->samples, &c->shards_done};
    for (int i = 0; i < 8; i++) *v[i] = (int64_t)get_u64(&p);
    for (uint32_t i = 0; i < CURSOR_SKIP_SLOTS; i++) {
        int64_t x = (int64_t)get_u64(&p);
        if (i < n_skips && i < SKIP_REASON_COUNT) c->skips.n[i] = x;
    }
    return 0;
}
