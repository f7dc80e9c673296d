/* Fuzz target: the tar shard reader (data/shard.h: plain, gzip or zstd tar;
 * ustar, PAX, GNU long names), the raw MMC4 .jsonl reader (data/shard_jsonl.c)
 * and, on every sample they deliver, the MMC4 / LAION document parser
 * (data/sample.h), as the data loader runs them on each shard.
 * Input: the shard file (member limit 1 MiB, 64 members per sample, so the
 * too-large paths are reachable); an input that starts with "jsonl\n" is
 * the rest read as a .jsonl file (plain, gzip or zstd by content) whose
 * image_name entries resolve in a folder holding the images of a small
 * synthetic mmc4-jsonl set (the same one the jsonl seeds come from).
 * Oracles: every delivered sample has a key, members with an extension and
 * size bytes plus the promised NUL after them, shard_sample_member finds
 * each extension, sample indices increase, skip counts never go negative,
 * and document_parse either succeeds or names a skip reason. */
#include "../../data/sample.h"
#include "../../data/shard.h"
#include "../../data/synth.h"
#include "fuzz.h"

#define SHFZ_MAX_SAMPLES 100000 /* far more than an input can hold; stops a non-terminating reader */

static void shfz_check_sample(const shard_sample *s, int64_t prev_index) {
    FUZZ_ASSERT(s->key && s->n_members >= 1 && s->members, "sample without key or members");
    FUZZ_ASSERT(s->index > prev_index, "sample index %lld after %lld", (long long)s->index,
                (long long)prev_index);
    for (int i = 0; i < s->n_members; i++) {
        const shard_member *m = &s->members[i];
        FUZZ_ASSERT(m->ext && m->data, "member %d of '%s' without ext or data", i, s->key);
        FUZZ_ASSERT(m->size <= (1u << 20), "member of %zu bytes over the limit", m->size);
        FUZZ_ASSERT(m->data[m->size] == 0, "member '%s.%s' lacks its NUL", s->key, m->ext);
        fuzz_touch(m->data, m->size);
        const shard_member *f = shard_sample_member(s, m->ext);
        FUZZ_ASSERT(f && !strcmp(f->ext, m->ext), "shard_sample_member misses '%s'", m->ext);
    }
}

static void shfz_parse_document(const shard_sample *s, sample_utf8_policy policy) {
    sample_opts o = {SAMPLE_FORMAT_AUTO, policy};
    document doc;
    skip_reason why = SKIP_REASON_COUNT;
    char err[512] = "";
    if (document_parse(s, &o, &doc, &why, err, sizeof err)) {
        FUZZ_ASSERT(why < SKIP_REASON_COUNT && err[0], "document_parse failed without reason or message");
        return;
    }
    FUZZ_ASSERT(doc.format == SAMPLE_FORMAT_MMC4 || doc.format == SAMPLE_FORMAT_LAION, "format %d", doc.format);
    for (int64_t i = 0; i < doc.n_texts; i++) fuzz_touch(doc.texts[i], strlen(doc.texts[i]) + 1);
    for (int64_t i = 0; i < doc.n_images; i++)
        if (doc.images[i].data) fuzz_touch(doc.images[i].data, doc.images[i].size);
    document_free(&doc);
}

#define SHFZ_JSONL "jsonl\n"

/* The synthetic mmc4-jsonl set (documents and images/) in dir: the seeds'
 * documents and the image folder every jsonl input reads from. */
static void shfz_write_jsonl_set(const char *dir) {
    synth_options o = {.layout = SYNTH_MMC4_JSONL, .shards = 1, .docs = 3, .image_format = SYNTH_IMG_MIXED,
                       .seed = 7, .image_size = 16, .min_images = 1, .max_images = 3};
    char err[512];
    if (synth_write(&o, dir, err, sizeof err) < 1) {
        fprintf(stderr, "fuzz: synth_write (mmc4-jsonl): %s\n", err);
        abort();
    }
}

static const char *shfz_image_dir(void) {
    static char *images;
    if (!images) {
        char *set = fuzz_tmp_path("jsonl_set");
        shfz_write_jsonl_set(set);
        size_t n = strlen(set) + 8;
        images = malloc(n);
        if (!images) abort();
        snprintf(images, n, "%s/images", set);
        free(set);
    }
    return images;
}

int fuzz_shard_one(const uint8_t *data, size_t size) {
    static char *tar_path, *jsonl_path;
    if (!tar_path) tar_path = fuzz_tmp_path("input.tar"), jsonl_path = fuzz_tmp_path("input.jsonl");
    size_t plen = strlen(SHFZ_JSONL);
    int jsonl = size >= plen && !memcmp(data, SHFZ_JSONL, plen);
    const char *path = jsonl ? jsonl_path : tar_path;
    fuzz_write_file(path, data + (jsonl ? plen : 0), size - (jsonl ? plen : 0));
    shard_limits lim = {1u << 20, 64};
    char err[512] = "";
    shard_reader *r = jsonl ? shard_open_mmc4(path, &lim, shfz_image_dir(), err, sizeof err)
                            : shard_open(path, &lim, err, sizeof err);
    if (!r) {
        FUZZ_ASSERT(err[0], "shard_open failed without a message");
        return 0;
    }
    skip_counts skips = {{0}};
    shard_sample s;
    int64_t prev = -1, n = 0;
    while (shard_next(r, &s, &skips)) {
        FUZZ_ASSERT(++n < SHFZ_MAX_SAMPLES, "more than %d samples from %zu bytes", SHFZ_MAX_SAMPLES, size);
        shfz_check_sample(&s, prev);
        prev = s.index;
        shfz_parse_document(&s, n & 1 ? SAMPLE_UTF8_REPLACE : SAMPLE_UTF8_SKIP);
        shard_sample_free(&s);
    }
    for (int i = 0; i < SKIP_REASON_COUNT; i++) FUZZ_ASSERT(skips.n[i] >= 0, "negative skip count");
    FUZZ_ASSERT(!shard_next(r, &s, &skips), "a sample after the end");
    shard_close(r);
    return 0;
}

/* Tiny synthetic shards of both layouts and every compression. */
static void shfz_seed_synth(const char *dir) {
    char *tmp = fuzz_tmp_path("synth");
    const synth_layout layouts[2] = {SYNTH_MMC4, SYNTH_LAION};
    const synth_compress comps[3] = {SYNTH_COMPRESS_NONE, SYNTH_COMPRESS_GZIP, SYNTH_COMPRESS_ZSTD};
    for (int l = 0; l < 2; l++)
        for (int c = 0; c < 3; c++) {
            synth_options o = {.layout = layouts[l], .shards = 1, .docs = 2, .compress = comps[c],
                               .image_format = SYNTH_IMG_MIXED, .seed = (uint64_t)(3 * l + c + 1),
                               .image_size = 16, .min_images = 2, .max_images = 2};
            char err[512], name[256], src[4096], seed[64];
            if (synth_write(&o, tmp, err, sizeof err) < 1) {
                fprintf(stderr, "fuzz: synth_write: %s\n", err);
                continue;
            }
            synth_shard_name(&o, 0, name, sizeof name);
            snprintf(src, sizeof src, "%s/%s", tmp, name);
            snprintf(seed, sizeof seed, "synth_%s_%d", l ? "laion" : "mmc4", c);
            fuzz_seed_fixture(dir, seed, NULL, 0, src);
            remove(src);
        }
    rmdir(tmp);
    free(tmp);
}

/* The synthetic mmc4-jsonl documents, behind the jsonl prefix. */
static void shfz_seed_jsonl(const char *dir) {
    char *tmp = fuzz_tmp_path("jsonl_seed");
    shfz_write_jsonl_set(tmp);
    synth_options o = {.layout = SYNTH_MMC4_JSONL};
    char name[256], src[4096];
    synth_shard_name(&o, 0, name, sizeof name);
    snprintf(src, sizeof src, "%s/%s", tmp, name);
    fuzz_seed_fixture(dir, "synth_mmc4_jsonl", SHFZ_JSONL, strlen(SHFZ_JSONL), src);
    free(tmp); /* fuzz_tmpdir's cleanup removes the files */
}

void fuzz_shard_seeds(const char *dir) {
    shfz_seed_synth(dir);
    shfz_seed_jsonl(dir);
    static const char *const files[] = {"pax.tar", "gnu.tar", "pax.tar.zst", "ustar.tar.gz"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char path[256];
        snprintf(path, sizeof path, "tests/fixtures/shards/%s", files[i]);
        fuzz_seed_fixture(dir, files[i], NULL, 0, path);
    }
}

FUZZ_MAIN(shard)
