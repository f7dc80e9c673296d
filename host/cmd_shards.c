/* aimc shards: inspect tar shards and raw MMC4 .jsonl files (sample counts,
 * member extensions, guessed layout, skip reasons), write synthetic LAION- /
 * MMC4-style shards (or the raw MMC4 layout), and benchmark image decode +
 * preprocess. */
#include "../data/base64.h"
#include "../data/image.h"
#include "../data/preprocess.h"
#include "../data/shard.h"
#include "../data/synth.h"
#include "../kernels/check.h"
#include "args.h"
#include "bench_loader.h"
#include "commands.h"
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* ---- inspect ---- */

#define MAX_EXTS 32 /* distinct extensions listed per shard; the rest count as "other" */

typedef enum { LAYOUT_LAION, LAYOUT_MMC4, LAYOUT_OTHER, LAYOUT_COUNT } layout_guess;
static const char *const layout_names[LAYOUT_COUNT] = {"laion", "mmc4", "other"};

typedef struct shard_stats {
    int64_t samples, layouts[LAYOUT_COUNT];
    int n_exts;
    char exts[MAX_EXTS][24];
    int64_t ext_counts[MAX_EXTS], other_exts;
    skip_counts skips;
} shard_stats;

static void count_ext(shard_stats *st, const char *ext) {
    for (int i = 0; i < st->n_exts; i++)
        if (!strcmp(st->exts[i], ext)) {
            st->ext_counts[i]++;
            return;
        }
    if (st->n_exts == MAX_EXTS || strlen(ext) >= sizeof st->exts[0]) {
        st->other_exts++;
        return;
    }
    snprintf(st->exts[st->n_exts], sizeof st->exts[0], "%s", ext);
    st->ext_counts[st->n_exts++] = 1;
}

static const shard_member *image_member(const shard_sample *s) {
    static const char *const exts[] = {"jpg", "jpeg", "png", "webp"};
    for (int i = 0; i < 4; i++) {
        const shard_member *m = shard_sample_member(s, exts[i]);
        if (m) return m;
    }
    return NULL;
}

static int image_ok(const uint8_t *d, size_t n) {
    image_rgb img;
    char err[256];
    if (image_decode(d, n, NULL, &img, err, sizeof err)) return 0;
    image_free(&img);
    return 1;
}

/* Decodes every image_base64 of an MMC4 document; returns how many fail. */
static int64_t bad_embedded_images(const cJSON *doc) {
    int64_t bad = 0;
    const cJSON *info, *infos = cJSON_GetObjectItemCaseSensitive(doc, "image_info");
    cJSON_ArrayForEach(info, infos) {
        const cJSON *b64 = cJSON_GetObjectItemCaseSensitive(info, "image_base64");
        uint8_t *d;
        size_t n;
        if (!cJSON_IsString(b64)) continue; /* images kept outside the document */
        if (base64_decode(b64->valuestring, strlen(b64->valuestring), &d, &n)) {
            bad++;
            continue;
        }
        bad += !image_ok(d, n);
        free(d);
    }
    return bad;
}

/* Decodes every member of an MMC4 sample but its document (images kept
 * as members: "{key}.{image_name}" in a tar, files of a .jsonl's folder);
 * returns how many fail. */
static int64_t bad_member_images(const shard_sample *s) {
    int64_t bad = 0;
    for (int i = 0; i < s->n_members; i++)
        if (strcmp(s->members[i].ext, "json")) bad += !image_ok(s->members[i].data, s->members[i].size);
    return bad;
}

/* laion: an image and a caption; mmc4: a JSON document with text_list. A
 * JSON member that does not parse counts as bad_json. With decode, every
 * image is decoded and failures count as bad_image. */
static layout_guess classify(const shard_sample *s, int decode, skip_counts *skips) {
    const shard_member *img = image_member(s), *txt = shard_sample_member(s, "txt");
    const shard_member *json = shard_sample_member(s, "json");
    if (img && txt) {
        if (decode && !image_ok(img->data, img->size)) skip_count(skips, SKIP_BAD_IMAGE);
        return LAYOUT_LAION;
    }
    if (!json) return LAYOUT_OTHER;
    cJSON *doc = cJSON_ParseWithLength((const char *)json->data, json->size);
    if (!doc) {
        skip_count(skips, SKIP_BAD_JSON);
        return LAYOUT_OTHER;
    }
    layout_guess g = cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(doc, "text_list")) ? LAYOUT_MMC4 : LAYOUT_OTHER;
    if (g == LAYOUT_MMC4 && decode)
        for (int64_t k = bad_embedded_images(doc) + bad_member_images(s); k > 0; k--)
            skip_count(skips, SKIP_BAD_IMAGE);
    cJSON_Delete(doc);
    return g;
}

/* " name=count ..." for the non-zero counts, or " none". */
static void print_counts(const char *label, const char *const *names, const int64_t *counts, int n) {
    int any = 0;
    printf("  %s", label);
    for (int i = 0; i < n; i++)
        if (counts[i]) {
            printf(" %s=%lld", names[i], (long long)counts[i]);
            any = 1;
        }
    if (!any) printf(" none");
}

static int cmp_ext(const void *a, const void *b, void *st_) {
    const shard_stats *st = st_;
    return strcmp(st->exts[*(const int *)a], st->exts[*(const int *)b]);
}

static void print_shard(const char *path, const shard_stats *st) {
    const char *ext_names[MAX_EXTS];
    int64_t ext_counts[MAX_EXTS];
    int order[MAX_EXTS];
    char buf[512];
    for (int i = 0; i < st->n_exts; i++) order[i] = i;
    qsort_r(order, (size_t)st->n_exts, sizeof *order, cmp_ext, (void *)st);
    for (int i = 0; i < st->n_exts; i++) {
        ext_names[i] = st->exts[order[i]];
        ext_counts[i] = st->ext_counts[order[i]];
    }
    printf("%s: %lld samples\n", path, (long long)st->samples);
    print_counts("formats:", layout_names, st->layouts, LAYOUT_COUNT);
    printf("\n");
    print_counts("members:", ext_names, ext_counts, st->n_exts);
    if (st->other_exts) printf(" (other)=%lld", (long long)st->other_exts);
    printf("\n  skips: %s\n", skip_counts_str(&st->skips, buf, sizeof buf));
}

/* Reads one shard; returns -1 when it cannot be opened. */
static int inspect_shard(const char *path, const shard_limits *lim, const char *images, int decode,
                         shard_stats *st) {
    char err[512];
    memset(st, 0, sizeof *st);
    shard_reader *r = shard_open_mmc4(path, lim, images, err, sizeof err);
    if (!r) {
        printf("%s: unreadable: %s\n", path, err);
        skip_count(&st->skips, SKIP_SHARD_UNREADABLE);
        return -1;
    }
    shard_sample s;
    int jsonl = shard_is_jsonl(path);
    while (shard_next(r, &s, &st->skips)) {
        st->samples++;
        for (int i = 0; i < s.n_members; i++) /* a .jsonl's images are named by image_name: count them as one kind */
            count_ext(st, jsonl && strcmp(s.members[i].ext, "json") ? "image_file" : s.members[i].ext);
        st->layouts[classify(&s, decode, &st->skips)]++;
        shard_sample_free(&s);
    }
    shard_close(r);
    print_shard(path, st);
    return 0;
}

static int cmd_inspect(int argc, char **argv) {
    int decode = 0;
    int64_t max_member_mb = 64, max_members = 256;
    const char *images = NULL;
    arg_opt opts[] = {
        {"--decode", ARG_FLAG, &decode, "also decode every image (counted as bad_image when that fails)"},
        {"--mmc4-images", ARG_STR, &images,
         "raw MMC4 .jsonl files: the folder of their images (each image_info file is read; absent: missing_image)"},
        {"--max-member-mb", ARG_INT, &max_member_mb, "members larger than this are skipped (member_too_large)"},
        {"--max-members", ARG_INT, &max_members, "samples with more members than this are skipped"},
    };
    int n = args_parse(argc, argv, "aimc shards inspect SPEC [--decode] [--mmc4-images DIR]",
                       "Per shard: sample count, guessed layout (laion, mmc4), member extensions and skip counts.\n"
                       "SPEC: comma-separated paths, globs (dir/*.tar) or brace ranges (dir/{00000..00009}.tar).\n"
                       "A .jsonl / .jsonl.gz / .jsonl.zst file is raw MMC4: one document per line, its images\n"
                       "read from --mmc4-images DIR (without it only the documents are read).",
                       opts, (int)(sizeof opts / sizeof opts[0]));
    if (n != 1) aimc_die("shards inspect: give one shard spec (see 'aimc shards inspect --help')");
    if (max_member_mb < 1 || max_members < 1)
        aimc_die("shards inspect: --max-member-mb and --max-members must be >= 1");
    char err[512], **paths;
    int64_t np = shard_expand(argv[1], &paths, err, sizeof err);
    if (np < 0) aimc_die("shards inspect: %s", err);
    struct stat dir_st;
    if (images && (stat(images, &dir_st) || !S_ISDIR(dir_st.st_mode)))
        aimc_die("shards inspect: --mmc4-images %s: not a folder", images);
    shard_limits lim = {(size_t)max_member_mb << 20, (int)max_members};
    shard_stats total = {0}, st;
    int64_t unreadable = 0;
    for (int64_t i = 0; i < np; i++) {
        unreadable += inspect_shard(paths[i], &lim, images, decode, &st) != 0;
        total.samples += st.samples;
        for (int k = 0; k < LAYOUT_COUNT; k++) total.layouts[k] += st.layouts[k];
        skip_counts_add(&total.skips, &st.skips);
    }
    printf("total: %lld shards (%lld unreadable), %lld samples\n", (long long)np, (long long)unreadable,
           (long long)total.samples);
    print_counts("formats:", layout_names, total.layouts, LAYOUT_COUNT);
    printf("\n  skips: %s\n", skip_counts_str(&total.skips, err, sizeof err));
    shard_paths_free(paths, np);
    return 0;
}

/* ---- synth ---- */

static int cmd_synth(int argc, char **argv) {
    const char *out = NULL, *format = "laion", *compress = "none", *image_format = "mixed";
    int64_t shards = 2, docs = 100, seed = 0, image_size = 128, min_images = 2, max_images = 5;
    arg_opt opts[] = {
        {"--out", ARG_STR, &out, "output folder (created if missing)"},
        {"--format", ARG_STR, &format,
         "laion (image + caption pairs), mmc4 (interleaved documents) or mmc4-jsonl (the same documents in the raw "
         "MMC4 layout: DIR/NNNNNNNNN.jsonl + DIR/images/)"},
        {"--shards", ARG_INT, &shards, "number of shard files"},
        {"--docs", ARG_INT, &docs, "samples (laion) or documents (mmc4) per shard"},
        {"--compress", ARG_STR, &compress, "none, gzip (.tar.gz) or zstd (.tar.zst)"},
        {"--image-format", ARG_STR, &image_format, "webp, jpeg, png or mixed"},
        {"--seed", ARG_INT, &seed, "the same seed writes the same bytes"},
        {"--image-size", ARG_INT, &image_size, "longest image side in pixels"},
        {"--min-images", ARG_INT, &min_images, "mmc4: fewest images per document"},
        {"--max-images", ARG_INT, &max_images, "mmc4: most images per document"},
    };
    int n = args_parse(argc, argv, "aimc shards synth --out DIR [options]",
                       "Writes synthetic shards: images of simple coloured shapes (made and encoded in C) with\n"
                       "text that describes them, as LAION / img2dataset pairs or MMC4-style documents.",
                       opts, (int)(sizeof opts / sizeof opts[0]));
    if (n) aimc_die("shards synth: unexpected argument '%s'", argv[1]);
    if (!out) aimc_die("shards synth: --out DIR is required");
    synth_options o = {.shards = shards, .docs = docs, .seed = (uint64_t)seed, .image_size = image_size,
                       .min_images = min_images, .max_images = max_images};
    if (synth_parse_layout(format, &o.layout))
        aimc_die("shards synth: --format must be laion, mmc4 or mmc4-jsonl, got '%s'", format);
    if (synth_parse_compress(compress, &o.compress))
        aimc_die("shards synth: --compress must be none, gzip or zstd, got '%s'", compress);
    if (synth_parse_image_format(image_format, &o.image_format))
        aimc_die("shards synth: --image-format must be webp, jpeg, png or mixed, got '%s'", image_format);
    char err[512], first[64];
    if (synth_write(&o, out, err, sizeof err) < 0) aimc_die("%s", err);
    synth_shard_name(&o, 0, first, sizeof first);
    printf("aimc shards synth: wrote %lld %s shards of %lld %s to %s (%s, ...%s)\n", (long long)shards, format,
           (long long)docs, o.layout == SYNTH_LAION ? "samples" : "documents", out, first,
           o.layout == SYNTH_MMC4_JSONL ? "; images in images/" : "");
    return 0;
}

/* ---- bench ---- */

/* Encoded test images, all in memory, as the loader would hold shard members. */
typedef struct bench_set {
    int64_t n;
    uint8_t **data;
    size_t *size;
    int64_t *pixels;  /* width * height, for the report */
    image_format *format;
} bench_set;

/* A photo-like picture: a synth scene with a smooth colour wash, fine
 * texture and per-pixel noise, so the encoders see detail (flat shapes
 * compress and decode unrealistically fast). */
static void render_photo(uint64_t *st, int64_t w, int64_t h, uint8_t *rgb) {
    synth_scene sc;
    synth_scene_random(st, &sc);
    synth_render(&sc, w, h, rgb);
    double fx = 0.02 + (double)(synth_rand(st) % 1000) * 1e-4, fy = 0.015 + (double)(synth_rand(st) % 1000) * 1e-4;
    for (int64_t y = 0; y < h; y++)
        for (int64_t x = 0; x < w; x++) {
            uint8_t *px = rgb + 3 * (y * w + x);
            double wash = 40.0 * sin((double)x * fx) * cos((double)y * fy) + 25.0 * sin((double)(x + y) * 0.31);
            for (int c = 0; c < 3; c++) {
                double noise = (double)(synth_rand(st) % 33) - 16.0;
                double v = 0.7 * px[c] + wash * (c == 1 ? 0.6 : 1.0) + noise + 30.0;
                px[c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
        }
}

/* Image i: JPEG for even i, WebP for odd; sides in [lo, hi]. */
static void bench_make(bench_set *b, int64_t n, int64_t lo, int64_t hi) {
    uint64_t st = 12345;
    char err[256];
    b->n = n;
    b->data = aimc_xmalloc((size_t)n * sizeof *b->data);
    b->size = aimc_xmalloc((size_t)n * sizeof *b->size);
    b->pixels = aimc_xmalloc((size_t)n * sizeof *b->pixels);
    b->format = aimc_xmalloc((size_t)n * sizeof *b->format);
    for (int64_t i = 0; i < n; i++) {
        int64_t w = lo + (int64_t)(synth_rand(&st) % (uint64_t)(hi - lo + 1));
        int64_t h = lo + (int64_t)(synth_rand(&st) % (uint64_t)(hi - lo + 1));
        uint8_t *rgb = aimc_xmalloc((size_t)(w * h * 3));
        render_photo(&st, w, h, rgb);
        synth_image_format f = i % 2 ? SYNTH_IMG_WEBP : SYNTH_IMG_JPEG;
        if (synth_encode(rgb, w, h, f, &b->data[i], &b->size[i], err, sizeof err)) aimc_die("shards bench: %s", err);
        b->pixels[i] = w * h;
        b->format[i] = image_detect(b->data[i], b->size[i]);
        free(rgb);
    }
}

static void bench_free(bench_set *b) {
    for (int64_t i = 0; i < b->n; i++) free(b->data[i]);
    free(b->data);
    free(b->size);
    free(b->pixels);
    free(b->format);
}

/* Writes image i as DIR/%05d.jpg|webp so another tool can time the same files. */
static void bench_write(const bench_set *b, const char *dir) {
    char path[4096];
    if (mkdir(dir, 0755) && errno != EEXIST) aimc_die("shards bench: cannot create --write-dir %s", dir);
    for (int64_t i = 0; i < b->n; i++) {
        snprintf(path, sizeof path, "%s/%05lld.%s", dir, (long long)i,
                 b->format[i] == IMAGE_FORMAT_JPEG ? "jpg" : "webp");
        FILE *f = fopen(path, "wb");
        if (!f || fwrite(b->data[i], 1, b->size[i], f) != b->size[i] || fclose(f))
            aimc_die("shards bench: cannot write %s", path);
    }
}


/* Decode + preprocess of image i into out (one image's pixel_values). */
static void bench_one(const bench_set *b, int64_t i, const preprocess_config *c, const image_decode_opts *o,
                      float *out) {
    char err[512];
    image_rgb img;
    if (image_decode(b->data[i], b->size[i], o, &img, err, sizeof err)) aimc_die("shards bench: image %lld: %s",
                                                                                (long long)i, err);
    if (preprocess_image(c, &img, out, err, sizeof err)) aimc_die("shards bench: image %lld: %s", (long long)i, err);
    image_free(&img);
}

/* Times `rounds` passes over the images whose format is f (UNKNOWN: all) on
 * `threads` threads, one pass after the other: *total and *best get the
 * seconds of all passes and of the fastest one (the best pass is the one a
 * burst of load elsewhere on the machine disturbed least); returns the
 * images per pass. */
static int64_t bench_time(const bench_set *b, image_format f, const preprocess_config *c, const image_decode_opts *o,
                          int threads, int64_t rounds, int64_t out_floats, double *total, double *best) {
    int64_t done = 0;
    *total = 0;
    *best = INFINITY;
    for (int64_t r = 0; r < rounds; r++) {
        done = 0;
        double t0 = aimc_now();
#pragma omp parallel num_threads(threads) reduction(+ : done)
        {
            float *out = aimc_xmalloc((size_t)out_floats * sizeof *out);
#pragma omp for schedule(dynamic, 1)
            for (int64_t i = 0; i < b->n; i++)
                if (f == IMAGE_FORMAT_UNKNOWN || b->format[i] == f) {
                    bench_one(b, i, c, o, out);
                    done++;
                }
            free(out);
        }
        double s = aimc_now() - t0;
        *total += s;
        *best = s < *best ? s : *best;
    }
    return done;
}

static void parse_size_range(const char *s, int64_t *lo, int64_t *hi) {
    char *end;
    *lo = strtoll(s, &end, 10);
    *hi = *lo;
    if (!strncmp(end, "..", 2)) *hi = strtoll(end + 2, &end, 10);
    if (*end || *lo < 16 || *hi < *lo || *hi > 8192)
        aimc_die("shards bench: --size must be N or LO..HI with 16 <= LO <= HI <= 8192, got '%s'", s);
}

static void bench_report(const char *label, const bench_set *b, image_format f, const preprocess_config *c,
                         const image_decode_opts *o, int threads, int64_t rounds, int64_t out_floats) {
    double s, best;
    int64_t per_round = bench_time(b, f, c, o, threads, rounds, out_floats, &s, &best), count = per_round * rounds;
    printf("  %-6s %d thread%s: %6lld images in %7.3f s = %8.1f images/s, %7.1f images/s per core"
           " (best of %lld rounds: %7.1f per core)\n",
           label, threads, threads == 1 ? " " : "s", (long long)count, s, (double)count / s,
           (double)count / s / threads, (long long)rounds, (double)per_round / best / threads);
}

static int cmd_bench(int argc, char **argv) {
    const char *size = "640..1024", *preset = "llava", *write_dir = NULL;
    int64_t n_images = 64, threads = 2, rounds = 1, jpeg_min_side = 0, k = 2;
    bench_loader_opts lopt = {.workers = "1,2", .episodes = 64};
    arg_opt opts[] = {
        {"--images", ARG_INT, &n_images, "number of distinct images (half JPEG q90 4:2:0, half WebP q85)"},
        {"--size", ARG_STR, &size, "image sides in pixels: N or LO..HI (each side drawn at random)"},
        {"--preset", ARG_STR, &preset, "preprocessing: " PREPROCESS_PRESET_NAMES},
        {"--threads", ARG_INT, &threads, "threads for the parallel run (the first run uses 1)"},
        {"--rounds", ARG_INT, &rounds, "times each image is processed per run"},
        {"--jpeg-min-side", ARG_INT, &jpeg_min_side, "JPEG DCT scaling down to this side (0: full decode, as Pillow)"},
        {"--write-dir", ARG_STR, &write_dir, "also write the images here (NNNNN.jpg / .webp) for other tools"},
        {"--loader", ARG_STR, &lopt.spec, "SPEC: time the training loader on these shards instead (needs --model)"},
        {"--model", ARG_STR, &lopt.model, "--loader: model folder (tokenizer, preprocessing)"},
        {"--workers", ARG_STR, &lopt.workers, "--loader: worker counts to time, e.g. 1,2,4"},
        {"--episodes", ARG_INT, &lopt.episodes, "--loader: timed episodes per worker count"},
        {"--k", ARG_INT, &k, "--loader: demonstrations per episode"},
        {"--mmc4-images", ARG_STR, &lopt.mmc4_images, "--loader: image folder of raw MMC4 .jsonl shards"},
    };
    int n = args_parse(argc, argv, "aimc shards bench [options]",
                       "Times image decoding + preprocessing (images/s per core) on photo-like JPEG and WebP\n"
                       "images made in memory: one thread, then --threads threads. With --loader SPEC --model DIR:\n"
                       "the training loader's episodes/s on those shards for each --workers count instead.",
                       opts, (int)(sizeof opts / sizeof opts[0]));
    if (n) aimc_die("shards bench: unexpected argument '%s'", argv[1]);
    if (lopt.spec) {
        if (!lopt.model) aimc_die("shards bench: --loader needs --model DIR (its tokenizer and preprocessing)");
        if (lopt.episodes < 1 || k < 0 || k > 64) aimc_die("shards bench: need --episodes >= 1 and 0 <= --k <= 64");
        lopt.k = (int)k;
        return bench_loader_run(&lopt);
    }
    int64_t lo_side, hi, oh, ow;
    parse_size_range(size, &lo_side, &hi);
    if (n_images < 2 || threads < 1 || threads > 1024 || rounds < 1 || jpeg_min_side < 0)
        aimc_die("shards bench: need --images >= 2, 1 <= --threads <= 1024, --rounds >= 1, --jpeg-min-side >= 0");
    preprocess_config c;
    if (preprocess_preset(&c, preset)) aimc_die("shards bench: unknown --preset '%s' (one of %s)", preset,
                                                PREPROCESS_PRESET_NAMES);
    char err[512];
    if (preprocess_output_size(&c, hi, hi, &oh, &ow, err, sizeof err)) aimc_die("shards bench: %s", err);
    image_decode_opts o = {.min_side = jpeg_min_side};
    bench_set b;
    bench_make(&b, n_images, lo_side, hi);
    if (write_dir) bench_write(&b, write_dir);
    printf("aimc shards bench: %lld images %s px (JPEG + WebP), preset %s -> %lldx%lld, %lld round%s%s\n",
           (long long)n_images, size, preset, (long long)ow, (long long)oh, (long long)rounds, rounds == 1 ? "" : "s",
           jpeg_min_side ? ", JPEG DCT scaling on" : "");
    bench_report("jpeg", &b, IMAGE_FORMAT_JPEG, &c, &o, 1, rounds, 3 * oh * ow);
    bench_report("webp", &b, IMAGE_FORMAT_WEBP, &c, &o, 1, rounds, 3 * oh * ow);
    bench_report("all", &b, IMAGE_FORMAT_UNKNOWN, &c, &o, 1, rounds, 3 * oh * ow);
    if (threads > 1) bench_report("all", &b, IMAGE_FORMAT_UNKNOWN, &c, &o, (int)threads, rounds, 3 * oh * ow);
    bench_free(&b);
    return 0;
}

static void shards_usage(FILE *f) {
    fprintf(f, "usage: aimc shards inspect SPEC [options]\n"
               "       aimc shards synth --out DIR [options]\n"
               "       aimc shards bench [options]\n\n"
               "  inspect   per-shard sample counts, layouts, member extensions, skip reasons\n"
               "  synth     write synthetic LAION- or MMC4-style shards\n"
               "  bench     time image decode + preprocess (images/s per core), or the loader (--loader)\n"
               "(aimc shards <subcommand> --help for its options)\n");
}

int cmd_shards(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        shards_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    int (*sub)(int, char **) = !strcmp(argv[1], "inspect") ? cmd_inspect
                               : !strcmp(argv[1], "synth") ? cmd_synth
                               : !strcmp(argv[1], "bench") ? cmd_bench
                                                           : NULL;
    if (!sub) {
        fprintf(stderr, "aimc shards: error: unknown subcommand '%s' (inspect, synth or bench)\n", argv[1]);
        return 2;
    }
    /* the subcommand's own argv, named "shards inspect" / "shards synth" in messages */
    char name[32];
    snprintf(name, sizeof name, "shards %s", argv[1]);
    char **sub_argv = aimc_xmalloc((size_t)argc * sizeof *sub_argv);
    sub_argv[0] = name;
    for (int i = 2; i < argc; i++) sub_argv[i - 1] = argv[i];
    int rc = sub(argc - 1, sub_argv);
    free(sub_argv);
    return rc;
}
