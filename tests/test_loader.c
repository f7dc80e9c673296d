/* The episode loader (data/loader.h) on shards written by this test (its own
 * minimal ustar writer) and by data/synth.h:
 * - two ranks see disjoint samples whose union is every good sample, each
 *   rank only its shards r::W;
 * - every epoch holds every good sample exactly once; epochs are shuffled
 *   differently; the same seed gives the same sequence, another seed another;
 * - 1 and 3 worker threads (and different queue depths) give the identical
 *   sequence (pixels, tokens, targets, sources);
 * - a cursor saved after m episodes (mid-shard, mid-block, at an epoch
 *   boundary), serialised and restored in a fresh loader, gives exactly the
 *   episodes and counters the uninterrupted run gave;
 * - bad samples, a truncated shard and a shard deleted while the loader runs
 *   are skipped and counted exactly; clear errors at open (fewer shards than
 *   ranks, a cursor of another rank / seed / shard list, corrupt bytes) and
 *   for an epoch with no usable sample. */
#include "../data/loader.h"
#include "../data/synth.h"
#include "testlib.h"
#include "fixture_path.h"
#include <sys/stat.h>
#include <webp/encode.h>

static tokenizer *tok;
static preprocess_config pp;
static char tmpdir[256];

/* ---- a minimal tar writer ------------------------------------------------ */

typedef struct tarbuf {
    uint8_t *data;
    size_t n, cap;
} tarbuf;

static void tar_reserve(tarbuf *t, size_t more) {
    if (t->n + more <= t->cap) return;
    while (t->n + more > t->cap) t->cap = t->cap ? 2 * t->cap : 1 << 16;
    t->data = realloc(t->data, t->cap);
    if (!t->data) exit(1);
}

static void tar_add(tarbuf *t, const char *name, const void *data, size_t size) {
    uint8_t h[512] = {0};
    snprintf((char *)h, 100, "%s", name);
    memcpy(h + 100, "0000644", 8);
    memcpy(h + 108, "0000000", 8);
    memcpy(h + 116, "0000000", 8);
    snprintf((char *)h + 124, 12, "%011llo", (unsigned long long)size);
    snprintf((char *)h + 136, 12, "%011o", 0);
    h[156] = '0';
    memcpy(h + 257, "ustar", 6);
    memcpy(h + 263, "00", 2);
    memset(h + 148, ' ', 8);
    unsigned sum = 0;
    for (int i = 0; i < 512; i++) sum += h[i];
    snprintf((char *)h + 148, 8, "%06o", sum);
    h[155] = ' ';
    size_t padded = (size + 511) / 512 * 512;
    tar_reserve(t, 512 + padded);
    memcpy(t->data + t->n, h, 512);
    memcpy(t->data + t->n + 512, data, size);
    memset(t->data + t->n + 512 + size, 0, padded - size);
    t->n += 512 + padded;
}

static void tar_write(tarbuf *t, const char *path, size_t cut) {
    tar_reserve(t, 1024);
    memset(t->data + t->n, 0, 1024);
    t->n += 1024;
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL, "cannot write %s", path);
    if (f) fwrite(t->data, 1, cut ? cut : t->n, f), fclose(f);
    free(t->data);
    memset(t, 0, sizeof *t);
}

/* ---- the test corpus --------------------------------------------------------- */

#define NSHARDS 6
#define PER_SHARD 7
#define NSAMPLES (NSHARDS * PER_SHARD)

/* Sample id -> what is wrong with it (0 = good). Shard 5 is cut inside
 * sample 4, so its samples 4..6 never arrive. */
enum { GOOD, BAD_IMAGE, NO_CAPTION, BAD_UTF8, LOST };
static int sample_kind(int id) {
    if (id == 3) return BAD_IMAGE;
    if (id == 10) return NO_CAPTION;
    if (id == 30) return BAD_UTF8;
    if (id >= 5 * PER_SHARD + 4) return LOST;
    return GOOD;
}
static int n_good(void) {
    int n = 0;
    for (int i = 0; i < NSAMPLES; i++) n += sample_kind(i) == GOOD;
    return n;
}

static void colour_of(int id, uint8_t rgb[3]) {
    rgb[0] = (uint8_t)(37 * id + 20), rgb[1] = (uint8_t)(91 * id + 50), rgb[2] = (uint8_t)(53 * id + 200);
}

static void add_sample(tarbuf *t, int id, size_t *cut_at) {
    char key[32], name[48], caption[64];
    snprintf(key, sizeof key, "s%d_%03d", id / PER_SHARD, id);
    uint8_t c[3], px[20 * 20 * 3], *enc = NULL;
    colour_of(id, c);
    for (int i = 0; i < 20 * 20; i++) memcpy(px + 3 * i, c, 3);
    size_t n = WebPEncodeLosslessRGB(px, 20, 20, 60, &enc);
    if (sample_kind(id) == BAD_IMAGE) memset(enc + 12, 0x5a, n - 12);
    snprintf(caption, sizeof caption, sample_kind(id) == BAD_UTF8 ? "photo \xfe %d" : "photo number %d", id);
    if (sample_kind(id) != NO_CAPTION) {
        snprintf(name, sizeof name, "%s.txt", key);
        tar_add(t, name, caption, strlen(caption));
    }
    snprintf(name, sizeof name, "%s.json", key);
    tar_add(t, name, "{\"status\": \"success\"}", 21);
    if (cut_at && id == 5 * PER_SHARD + 4) *cut_at = t->n + 512 + n / 2; /* inside this image's data */
    snprintf(name, sizeof name, "%s.webp", key);
    tar_add(t, name, enc, n);
    WebPFree(enc);
}

static void write_corpus(const char *dir, char **paths) {
    mkdir(dir, 0755);
    for (int s = 0; s < NSHARDS; s++) {
        tarbuf t = {0};
        size_t cut = 0;
        for (int i = 0; i < PER_SHARD; i++) add_sample(&t, s * PER_SHARD + i, s == 5 ? &cut : NULL);
        snprintf(paths[s], 512, "%s/%05d.tar", dir, s);
        tar_write(&t, paths[s], cut);
    }
}

/* ---- running a loader ------------------------------------------------------------ */

typedef struct run {
    uint64_t *hash;      /* per episode */
    int *query_id;       /* sample id of the query */
    int64_t n;
    loader_cursor cursor; /* after the last episode taken */
    int rc;              /* last loader_next result */
    char err[512];
} run;

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

static int id_of(const char *source) {
    const char *u = strrchr(source, '_');
    return u ? atoi(u + 1) : -1;
}

/* Checks an item against its sample (colour and caption) and hashes it. */
static uint64_t item_hash(uint64_t h, const episode_item *it, int is_query) {
    int id = id_of(it->source);
    uint8_t c[3];
    colour_of(id, c);
    double want = ((double)c[0] / 255.0 - 0.48145466) / 0.26862954;
    char caption[64];
    snprintf(caption, sizeof caption, "photo number %d", id);
    tok_ids ids = {0};
    tokenizer_encode_opts o = {.add_special = 0, .max_length = -1};
    char err[128];
    tokenizer_encode(tok, caption, strlen(caption), &o, &ids, err, sizeof err);
    int ok = it->height == 16 && it->width == 16 && fabs(it->pixels[0] - want) < 1e-5 &&
             it->n_tokens == ids.n + is_query && !memcmp(it->tokens, ids.ids, (size_t)ids.n * 4) &&
             (is_query ? it->target && it->n_target == it->n_tokens : !it->target);
    CHECK(ok, "item %s: pixels / tokens / targets do not belong to sample %d", it->source, id);
    tok_ids_free(&ids);
    h = fnv(h, it->source, strlen(it->source));
    h = fnv(h, it->pixels, (size_t)(3 * it->height * it->width) * sizeof(float));
    h = fnv(h, it->tokens, (size_t)it->n_tokens * sizeof(int32_t));
    if (it->target) h = fnv(h, it->target, (size_t)it->n_tokens);
    return h;
}

/* Takes up to max episodes (all when max < 0). */
static void run_loader(const loader_config *cfg, const loader_cursor *resume, int64_t max, run *r) {
    memset(r, 0, sizeof *r);
    r->hash = tl_alloc(4096 * sizeof *r->hash);
    r->query_id = tl_alloc(4096 * sizeof *r->query_id);
    loader *l = loader_open(cfg, resume, r->err, sizeof r->err);
    if (!l) {
        r->rc = -2;
        return;
    }
    while (max < 0 || r->n < max) {
        episode ep;
        r->rc = loader_next(l, &ep, r->err, sizeof r->err);
        if (r->rc != 1) break;
        uint64_t h = 0xcbf29ce484222325ull;
        for (int i = 0; i <= ep.k; i++) h = item_hash(h, &ep.items[i], i == ep.k);
        if (r->n < 4096) r->hash[r->n] = h, r->query_id[r->n] = id_of(ep.items[ep.k].source);
        r->n++;
        episode_free(&ep);
    }
    loader_cursor_get(l, &r->cursor);
    loader_close(l);
}

static void run_free(run *r) {
    free(r->hash);
    free(r->query_id);
}

static void base_config(loader_config *c, char **paths, int64_t n) {
    loader_config_default(c);
    c->shards = paths, c->n_shards = n;
    c->tok = tok, c->pp = &pp;
    c->quiet = 1;
    c->seed = 1234;
    c->episode.k = 2;
}

static int same_counters(const loader_cursor *a, const loader_cursor *b) {
    return a->episodes == b->episodes && a->samples == b->samples && a->shards_done == b->shards_done &&
           !memcmp(&a->skips, &b->skips, sizeof a->skips) && a->epoch == b->epoch && a->block == b->block &&
           a->start_shard == b->start_shard && a->start_sample == b->start_sample && a->in_block == b->in_block;
}

/* ---- tests -------------------------------------------------------------------- */

static void test_ranks(char **paths) {
    int seen[NSAMPLES] = {0};
    for (int rank = 0; rank < 2; rank++) {
        loader_config c;
        base_config(&c, paths, NSHARDS);
        c.world = 2, c.rank = rank, c.episode.k = 0, c.max_epochs = 1, c.shuffle_block = 4;
        run r;
        run_loader(&c, NULL, -1, &r);
        CHECK(r.rc == 0, "rank %d: ended with %d: %s", rank, r.rc, r.err);
        for (int64_t i = 0; i < r.n; i++) {
            int id = r.query_id[i];
            CHECK(id >= 0 && id < NSAMPLES && (id / PER_SHARD) % 2 == rank, "rank %d got sample %d of shard %d", rank,
                  id, id / PER_SHARD);
            if (id >= 0 && id < NSAMPLES) seen[id]++;
        }
        /* rank 0: shards 0 2 4 (bad image 3 in shard 0, bad utf8 30 in shard 4); rank 1: 1 3 5 (10, truncated 5) */
        skip_counts want = {0};
        want.n[rank ? SKIP_MISSING_MEMBER : SKIP_BAD_IMAGE] = 1;
        want.n[rank ? SKIP_TRUNCATED_SHARD : SKIP_BAD_TEXT] = 1;
        char a[256], b[256];
        CHECK(!memcmp(&r.cursor.skips, &want, sizeof want) && r.cursor.shards_done == 3 &&
                  r.cursor.samples == (rank ? 3 * PER_SHARD - 3 : 3 * PER_SHARD),
              "rank %d: skips %s (want %s), %lld shards done, %lld samples", rank,
              skip_counts_str(&r.cursor.skips, a, sizeof a), skip_counts_str(&want, b, sizeof b),
              (long long)r.cursor.shards_done, (long long)r.cursor.samples);
        run_free(&r);
    }
    int ok = 1;
    for (int i = 0; i < NSAMPLES; i++) ok &= seen[i] == (sample_kind(i) == GOOD);
    CHECK(ok, "the two ranks' samples are disjoint and cover every good sample once");
}

/* One epoch: every good sample once (k = 0); two epochs: a different order. */
static void test_epochs_and_seeds(char **paths) {
    loader_config c;
    base_config(&c, paths, NSHARDS);
    c.episode.k = 0, c.max_epochs = 2, c.shuffle_block = 5;
    run a, b, d;
    run_loader(&c, NULL, -1, &a);
    int g = n_good();
    CHECK(a.rc == 0 && a.n == 2 * g, "two epochs: %lld episodes, want %d (%s)", (long long)a.n, 2 * g, a.err);
    int count[2][NSAMPLES] = {{0}}, same_order = 1;
    for (int64_t i = 0; i < a.n && i < 2 * g; i++) {
        int id = a.query_id[i];
        if (id >= 0 && id < NSAMPLES) count[i >= g][id]++;
        if (i < g) same_order &= a.query_id[i] == a.query_id[i + g];
    }
    int ok = 1;
    for (int i = 0; i < NSAMPLES; i++) ok &= count[0][i] == (sample_kind(i) == GOOD) && count[1][i] == count[0][i];
    CHECK(ok, "each epoch holds every good sample exactly once");
    CHECK(!same_order, "the second epoch is shuffled differently from the first");
    int in_listed_order = 1;
    for (int64_t i = 1; i < g; i++) in_listed_order &= a.query_id[i] > a.query_id[i - 1];
    CHECK(!in_listed_order, "the first epoch is shuffled");
    run_loader(&c, NULL, -1, &b);
    CHECK(b.n == a.n && !memcmp(a.hash, b.hash, (size_t)a.n * sizeof *a.hash), "same seed, same sequence");
    c.seed = 99;
    run_loader(&c, NULL, -1, &d);
    CHECK(d.n == a.n && memcmp(a.hash, d.hash, (size_t)a.n * sizeof *a.hash), "another seed, another sequence");
    c.seed = 1234, c.shuffle_block = 0, c.shuffle_shards = 0;
    run_free(&d);
    run_loader(&c, NULL, -1, &d);
    in_listed_order = d.n == a.n;
    for (int64_t i = 1; i < g && in_listed_order; i++) in_listed_order = d.query_id[i] > d.query_id[i - 1];
    CHECK(in_listed_order, "without shuffling, samples come in listed order");
    run_free(&a), run_free(&b), run_free(&d);
}

static void test_workers_and_resume(char **paths) {
    loader_config c;
    base_config(&c, paths, NSHARDS);
    c.max_epochs = 3, c.shuffle_block = 5, c.n_workers = 1, c.queue_depth = 2;
    run full, three;
    run_loader(&c, NULL, -1, &full);
    int64_t per_epoch = n_good() / 3;
    CHECK(full.rc == 0 && full.n == 3 * per_epoch, "k=2 over 3 epochs: %lld episodes, want %lld (%s)",
          (long long)full.n, (long long)(3 * per_epoch), full.err);
    c.n_workers = 3, c.queue_depth = 7;
    run_loader(&c, NULL, -1, &three);
    CHECK(three.n == full.n && !memcmp(full.hash, three.hash, (size_t)full.n * sizeof *full.hash) &&
              same_counters(&full.cursor, &three.cursor),
          "1 and 3 workers give the same sequence (%lld vs %lld episodes)", (long long)full.n, (long long)three.n);
    skip_counts want = {0};
    want.n[SKIP_BAD_IMAGE] = want.n[SKIP_MISSING_MEMBER] = want.n[SKIP_BAD_TEXT] = want.n[SKIP_TRUNCATED_SHARD] = 3;
    char a[256];
    CHECK(!memcmp(&full.cursor.skips, &want, sizeof want) && full.cursor.shards_done == 3 * NSHARDS &&
              full.cursor.samples == 3 * (NSAMPLES - 3) && full.cursor.episodes == full.n,
          "counters after 3 epochs: skips %s, %lld shards, %lld samples", skip_counts_str(&full.cursor.skips, a, sizeof a),
          (long long)full.cursor.shards_done, (long long)full.cursor.samples);

    const int64_t cuts[] = {1, 4, 5, 7, per_epoch, per_epoch + 1, 2 * per_epoch - 1, full.n - 1, full.n};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        int64_t m = cuts[i];
        run first, rest;
        c.n_workers = 2, c.queue_depth = 0;
        run_loader(&c, NULL, m, &first);
        uint8_t bytes[LOADER_CURSOR_BYTES];
        loader_cursor_encode(&first.cursor, bytes);
        loader_cursor back;
        char err[256] = "";
        int rc = loader_cursor_decode(bytes, sizeof bytes, &back, err, sizeof err);
        CHECK(rc == 0 && !memcmp(&back, &first.cursor, sizeof back), "cursor bytes round trip: %s", err);
        c.n_workers = 1 + (int)(i % 3);
        run_loader(&c, &back, -1, &rest);
        int ok = first.n == m && rest.rc == 0 && rest.n == full.n - m &&
                 !memcmp(first.hash, full.hash, (size_t)m * sizeof *full.hash) &&
                 !memcmp(rest.hash, full.hash + m, (size_t)(full.n - m) * sizeof *full.hash) &&
                 same_counters(&rest.cursor, &full.cursor);
        CHECK(ok, "resume after %lld episodes (epoch %lld block %lld shard %lld sample %lld item %lld): %lld + %lld "
                  "episodes, want %lld (%s)",
              (long long)m, (long long)back.epoch, (long long)back.block, (long long)back.start_shard,
              (long long)back.start_sample, (long long)back.in_block, (long long)first.n, (long long)rest.n,
              (long long)full.n, rest.err);
        run_free(&first), run_free(&rest);
    }
    run_free(&full), run_free(&three);
}

/* A shard deleted after the loader started: skipped, counted, the run goes on. */
static void test_vanishing_shard(void) {
    char dir[512], *paths[NSHARDS], buf[NSHARDS][512];
    for (int i = 0; i < NSHARDS; i++) paths[i] = buf[i];
    snprintf(dir, sizeof dir, "%s/vanish", tmpdir);
    write_corpus(dir, paths);
    loader_config c;
    base_config(&c, paths, NSHARDS);
    c.episode.k = 0, c.max_epochs = 1, c.shuffle_shards = 0, c.shuffle_block = 4, c.queue_depth = 4;
    char err[256];
    loader *l = loader_open(&c, NULL, err, sizeof err);
    CHECK(l != NULL, "open: %s", err);
    if (!l) return;
    unlink(paths[4]); /* the reader is at most a block + the ring ahead: shard 1 at the latest */
    int64_t n = 0;
    episode ep;
    int rc;
    while ((rc = loader_next(l, &ep, err, sizeof err)) == 1) {
        CHECK(id_of(ep.items[0].source) / PER_SHARD != 4, "a sample of the deleted shard arrived");
        episode_free(&ep), n++;
    }
    loader_cursor cur;
    loader_cursor_get(l, &cur);
    loader_close(l);
    int want = n_good() - (PER_SHARD - 1); /* shard 4 held 6 good samples (30 is bad) */
    CHECK(rc == 0 && n == want && cur.skips.n[SKIP_SHARD_UNREADABLE] == 1 && cur.skips.n[SKIP_BAD_TEXT] == 0 &&
              cur.shards_done == NSHARDS,
          "deleted shard: %lld episodes (want %d), unreadable %lld", (long long)n, want,
          (long long)cur.skips.n[SKIP_SHARD_UNREADABLE]);
}

/* Closing with the ring full and threads busy must not hang or leak. */
static void test_early_close(char **paths) {
    loader_config c;
    base_config(&c, paths, NSHARDS);
    c.n_workers = 3, c.queue_depth = 3, c.shuffle_block = 2;
    char err[256];
    for (int i = 0; i < 3; i++) {
        loader *l = loader_open(&c, NULL, err, sizeof err);
        episode ep;
        if (l && i > 0 && loader_next(l, &ep, err, sizeof err) == 1) episode_free(&ep);
        loader_close(l);
    }
    CHECK(1, "early close");
}

static void test_errors(char **paths) {
    loader_config c;
    char err[512] = "";
    base_config(&c, paths, NSHARDS);
    c.world = 7, c.rank = 0;
    CHECK(!loader_open(&c, NULL, err, sizeof err) && strstr(err, "6 shard(s) for 7 ranks"), "too few shards: %s", err);
    c.world = 2, c.rank = 2;
    CHECK(!loader_open(&c, NULL, err, sizeof err) && strstr(err, "rank 2"), "bad rank: %s", err);

    base_config(&c, paths, NSHARDS);
    c.world = 2, c.rank = 0, c.max_epochs = 1;
    run r;
    run_loader(&c, NULL, 3, &r);
    loader_cursor cur = r.cursor;
    c.rank = 1;
    CHECK(!loader_open(&c, &cur, err, sizeof err) && strstr(err, "rank 0 of 2"), "cursor of another rank: %s", err);
    c.rank = 0, c.world = 3;
    CHECK(!loader_open(&c, &cur, err, sizeof err) && strstr(err, "number of ranks"), "another world size: %s", err);
    c.world = 2, c.seed = 5;
    CHECK(!loader_open(&c, &cur, err, sizeof err) && strstr(err, "seed"), "another seed: %s", err);
    c.seed = 1234, c.n_shards = NSHARDS - 2;
    CHECK(!loader_open(&c, &cur, err, sizeof err) && strstr(err, "shard list"), "another shard list: %s", err);
    c.n_shards = NSHARDS, c.shuffle_block = 17;
    CHECK(!loader_open(&c, &cur, err, sizeof err) && strstr(err, "shuffle"), "another shuffle block: %s", err);
    run_free(&r);

    uint8_t bytes[LOADER_CURSOR_BYTES];
    loader_cursor_encode(&cur, bytes);
    loader_cursor back;
    bytes[40] ^= 1;
    CHECK(loader_cursor_decode(bytes, sizeof bytes, &back, err, sizeof err) && strstr(err, "checksum"), "flipped bit: %s", err);
    CHECK(loader_cursor_decode(bytes, 100, &back, err, sizeof err) && strstr(err, "bytes"), "short cursor: %s", err);
    memcpy(bytes, "NOTACURS", 8);
    CHECK(loader_cursor_decode(bytes, sizeof bytes, &back, err, sizeof err) && strstr(err, "magic"), "bad magic: %s", err);

    /* shards that all vanish: auto-detection fails at open; a fixed format
     * fails at the end of the first epoch instead of looping forever */
    char gone0[600], gone1[600], *gone[2] = {gone0, gone1};
    snprintf(gone0, sizeof gone0, "%s/missing-0.tar", tmpdir);
    snprintf(gone1, sizeof gone1, "%s/missing-1.tar", tmpdir);
    base_config(&c, gone, 2);
    CHECK(!loader_open(&c, NULL, err, sizeof err) && strstr(err, "readable"), "no readable shard: %s", err);
    c.episode.sample.format = SAMPLE_FORMAT_LAION;
    run_loader(&c, NULL, -1, &r);
    CHECK(r.rc == -1 && strstr(r.err, "no usable sample") && strstr(r.err, "shard_unreadable=2"),
          "an epoch without usable samples: rc %d: %s", r.rc, r.err);
    run_free(&r);
}

/* MMC4 documents from data/synth.h through the loader: one episode per
 * document with enough pairs, the rest counted as too_few_pairs; the same
 * sequence with 1 and 3 workers. */
static void test_mmc4_stream(void) {
    char dir[512], err[256];
    snprintf(dir, sizeof dir, "%s/mmc4", tmpdir);
    synth_options o = {.layout = SYNTH_MMC4, .shards = 2, .docs = 8, .seed = 5, .image_size = 32,
                       .image_format = SYNTH_IMG_MIXED, .min_images = 2, .max_images = 5};
    int64_t n = synth_write(&o, dir, err, sizeof err);
    CHECK(n == 2, "synth_write: %s", err);
    if (n != 2) return;
    char p0[1024], p1[1024], *paths[2] = {p0, p1}, name[128];
    for (int i = 0; i < 2; i++) {
        synth_shard_name(&o, i, name, sizeof name);
        snprintf(paths[i], 1024, "%s/%s", dir, name);
    }
    loader_config c;
    base_config(&c, paths, 2);
    c.episode.k = 1, c.max_epochs = 1, c.shuffle_block = 3, c.n_workers = 1;
    char seq1[4096] = "", seq3[4096] = "";
    for (int pass = 0; pass < 2; pass++) {
        c.n_workers = pass ? 3 : 1;
        loader *l = loader_open(&c, NULL, err, sizeof err);
        CHECK(l != NULL, "open MMC4: %s", err);
        if (!l) return;
        episode ep;
        int rc, ok = 1;
        char *seq = pass ? seq3 : seq1;
        while ((rc = loader_next(l, &ep, err, sizeof err)) == 1) {
            ok &= ep.k == 1 && ep.items[0].n_tokens > 0 && !ep.items[0].target && ep.items[1].n_target > 0 &&
                  ep.items[1].n_target == ep.items[1].n_tokens && ep.items[0].height == 16;
            /* both items come from the same document */
            const char *h0 = strrchr(ep.items[0].source, '#'), *h1 = strrchr(ep.items[1].source, '#');
            ok &= h0 && h1 && h0 - ep.items[0].source == h1 - ep.items[1].source &&
                  !strncmp(ep.items[0].source, ep.items[1].source, (size_t)(h0 - ep.items[0].source));
            size_t len = strlen(seq);
            snprintf(seq + len, 4096 - len, "%s|", ep.items[1].source);
            episode_free(&ep);
        }
        loader_cursor cur;
        loader_cursor_get(l, &cur);
        loader_close(l);
        int64_t skipped = 0;
        for (int i = 0; i < SKIP_REASON_COUNT; i++) skipped += cur.skips.n[i];
        CHECK(rc == 0 && ok && cur.samples == 16 && cur.episodes + cur.skips.n[SKIP_TOO_FEW_PAIRS] == 16 &&
                  skipped == cur.skips.n[SKIP_TOO_FEW_PAIRS] && cur.episodes > 0,
              "MMC4 stream (%d workers): %lld episodes, %lld samples, %lld too few pairs: %s", c.n_workers,
              (long long)cur.episodes, (long long)cur.samples, (long long)cur.skips.n[SKIP_TOO_FEW_PAIRS], err);
    }
    CHECK(!strcmp(seq1, seq3), "MMC4: same sequence with 1 and 3 workers");
}

static void remove_tree(const char *dir) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) printf("  could not remove %s\n", dir);
}

int main(void) {
    tests_begin("test_loader");
    char path[1024];
    FIXTURE_PATH("tokenizers/llama", path, sizeof path);
    char err[512];
    tok = tokenizer_load(path, err, sizeof err);
    CHECK(tok != NULL, "tokenizer: %s", err);
    CHECK(preprocess_preset(&pp, "clip") == 0, "clip preset");
    pp.shortest_edge = 16, pp.crop_height = pp.crop_width = 16;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/aimc-test-loader-XXXXXX");
    if (!tok || !mkdtemp(tmpdir)) return tests_done();

    char dir[512], *paths[NSHARDS], buf[NSHARDS][512];
    for (int i = 0; i < NSHARDS; i++) paths[i] = buf[i];
    snprintf(dir, sizeof dir, "%s/laion", tmpdir);
    write_corpus(dir, paths);

    test_ranks(paths);
    test_epochs_and_seeds(paths);
    test_workers_and_resume(paths);
    test_vanishing_shard();
    test_early_close(paths);
    test_errors(paths);
    test_mmc4_stream();

    remove_tree(tmpdir);
    tokenizer_free(tok);
    return tests_done();
}
