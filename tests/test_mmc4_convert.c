/* scripts/mmc4_to_shards.py: a raw MMC4 layout (jsonl documents, one file
 * zipped, an image folder with one image missing) converted into shards and
 * read back with aimc's own shard reader and document parser. Every
 * sentence, image byte, matched index/similarity and similarity_matrix row is
 * compared with what the test wrote. Needs python3 (CI machines may lack it:
 * then only the script's presence is checked, and the skip is printed). */
#include "../data/sample.h"
#include "../data/shard.h"
#include "../data/synth.h"
#include "testlib.h"
#include <cjson/cJSON.h>
#include <sys/stat.h>

#define N_DOCS 3
#define MAX_IMGS 3
#define MAX_TEXTS 4

/* One raw document as the test writes it. present[i]: image i is written
 * into the image folder. */
typedef struct raw_doc {
    int n_texts, n_images;
    char texts[MAX_TEXTS][64];
    char names[MAX_IMGS][32];
    int text_index[MAX_IMGS];
    double sim[MAX_IMGS];
    double matrix[MAX_IMGS][MAX_TEXTS];
    int present[MAX_IMGS];
    uint8_t *bytes[MAX_IMGS];
    size_t size[MAX_IMGS];
} raw_doc;

static char script[512], tmp_dir[256];

static void find_script(void) {
    /* scripts/ sits beside tests/ (the source path as compiled from the repo root) */
    char dir[400];
    snprintf(dir, sizeof dir, "%s", __FILE__);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0;
    else snprintf(dir, sizeof dir, ".");
    snprintf(script, sizeof script, "%s/../scripts/mmc4_to_shards.py", dir);
}

static void check_script_file(void) {
    struct stat st;
    CHECK(stat(script, &st) == 0 && (st.st_mode & S_IXUSR), "%s missing or not executable", script);
    FILE *f = fopen(script, "r");
    char line[128] = "";
    if (f) {
        if (!fgets(line, sizeof line, f)) line[0] = 0;
        fclose(f);
    }
    CHECK(!strncmp(line, "#!/usr/bin/env python3", 22), "%s lacks the python3 shebang: '%s'", script, line);
}

/* A random scene, encoded as PNG or JPEG at a random odd-ish size. */
static void make_image(raw_doc *d, int i, int64_t serial) {
    uint64_t st = rng_u64();
    synth_scene sc;
    synth_scene_random(&st, &sc);
    int64_t w = 17 + rng_int(40), h = 13 + rng_int(40);
    uint8_t *rgb = malloc((size_t)(w * h * 3));
    synth_render(&sc, w, h, rgb);
    synth_image_format f = rng_int(2) ? SYNTH_IMG_PNG : SYNTH_IMG_JPEG;
    char err[256];
    if (synth_encode(rgb, w, h, f, &d->bytes[i], &d->size[i], err, sizeof err)) {
        printf("encode: %s\n", err);
        exit(1);
    }
    free(rgb);
    snprintf(d->names[i], sizeof d->names[i], "%08llx%04lld.%s", (unsigned long long)(rng_u64() >> 32),
             (long long)serial, synth_image_ext(f));
}

/* Doc 0: two images, both present; doc 1: three images, the middle one
 * missing; doc 2: one image, missing (left with none). Sentences carry a
 * non-ASCII word and a quote so JSON escaping is exercised. */
static void make_docs(raw_doc *docs) {
    static const int n_images[N_DOCS] = {2, 3, 1};
    int64_t serial = 0;
    for (int k = 0; k < N_DOCS; k++) {
        raw_doc *d = &docs[k];
        memset(d, 0, sizeof *d);
        d->n_texts = 2 + (int)rng_int(MAX_TEXTS - 1);
        d->n_images = n_images[k];
        for (int t = 0; t < d->n_texts; t++)
            snprintf(d->texts[t], sizeof d->texts[t], "Doc %d sentence %d: caf\xc3\xa9 \\\"%llu\\\"", k, t,
                     (unsigned long long)rng_int(1000000));
        for (int i = 0; i < d->n_images; i++) {
            make_image(d, i, serial++);
            d->text_index[i] = (int)rng_int(d->n_texts);
            d->sim[i] = rng_uniform(0.2, 0.35);
            for (int t = 0; t < d->n_texts; t++) d->matrix[i][t] = rng_uniform(0.1, 0.4);
            d->present[i] = !((k == 1 && i == 1) || k == 2);
        }
    }
}

/* The raw text of a sentence as stored in our struct has \" for a quote
 * (written verbatim into JSON); the decoded sentence has a plain quote. */
static void decoded_text(const char *raw, char *out, size_t n) {
    size_t j = 0;
    for (size_t i = 0; raw[i] && j + 1 < n; i++) {
        if (raw[i] == '\\' && raw[i + 1]) i++;
        out[j++] = raw[i];
    }
    out[j] = 0;
}

static void write_doc_line(FILE *f, const raw_doc *d) {
    fprintf(f, "{\"url\": \"http://example.com/d\", \"text_list\": [");
    for (int t = 0; t < d->n_texts; t++) fprintf(f, "%s\"%s\"", t ? ", " : "", d->texts[t]);
    fprintf(f, "], \"image_info\": [");
    for (int i = 0; i < d->n_images; i++)
        fprintf(f, "%s{\"image_name\": \"%s\", \"raw_url\": \"http://example.com/%s\", \"face_detections\": null, "
                   "\"matched_text_index\": %d, \"matched_sim\": %.17g}",
                i ? ", " : "", d->names[i], d->names[i], d->text_index[i], d->sim[i]);
    fprintf(f, "], \"similarity_matrix\": [");
    for (int i = 0; i < d->n_images; i++) {
        fprintf(f, "%s[", i ? ", " : "");
        for (int t = 0; t < d->n_texts; t++) fprintf(f, "%s%.17g", t ? ", " : "", d->matrix[i][t]);
        fprintf(f, "]");
    }
    fprintf(f, "], \"could_have_url_duplicate\": 0}\n");
}

static void write_file(const char *path, const uint8_t *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, n, f) != n || fclose(f)) {
        printf("cannot write %s\n", path);
        exit(1);
    }
}

/* docs 0 and 1 (plus a malformed line and a blank one) in a plain .jsonl;
 * doc 2 in docs_shard_1_v2.jsonl.zip (zipped with python's zipfile). */
static int write_raw_layout(const raw_doc *docs) {
    char path[512], cmd[2048];
    snprintf(path, sizeof path, "%s/raw/images", tmp_dir);
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", path);
    if (system(cmd)) return -1;
    for (int k = 0; k < N_DOCS; k++)
        for (int i = 0; i < docs[k].n_images; i++) {
            if (!docs[k].present[i]) continue;
            snprintf(path, sizeof path, "%s/raw/images/%s", tmp_dir, docs[k].names[i]);
            write_file(path, docs[k].bytes[i], docs[k].size[i]);
        }
    snprintf(path, sizeof path, "%s/raw/docs_shard_0_v2.jsonl", tmp_dir);
    FILE *f = fopen(path, "w");
    write_doc_line(f, &docs[0]);
    fprintf(f, "{\"text_list\": [\"truncated\n\n");
    write_doc_line(f, &docs[1]);
    fclose(f);
    snprintf(path, sizeof path, "%s/raw/docs_shard_1_v2.jsonl", tmp_dir);
    f = fopen(path, "w");
    write_doc_line(f, &docs[2]);
    fclose(f);
    snprintf(cmd, sizeof cmd,
             "cd '%s/raw' && python3 -c \"import zipfile; z = zipfile.ZipFile('docs_shard_1_v2.jsonl.zip', 'w', "
             "zipfile.ZIP_DEFLATED); z.write('docs_shard_1_v2.jsonl'); z.close()\" && rm docs_shard_1_v2.jsonl",
             tmp_dir);
    return system(cmd) ? -1 : 0;
}

/* Runs the converter over the raw folder into out_name; 0 on success. */
static int run_script(const char *out_name, const char *extra, char *summary, size_t n) {
    char cmd[2048], log[512];
    snprintf(log, sizeof log, "%s/%s.log", tmp_dir, out_name);
    snprintf(cmd, sizeof cmd, "python3 '%s' '%s/raw' --images '%s/raw/images' --out '%s/%s' %s >'%s' 2>&1", script,
             tmp_dir, tmp_dir, tmp_dir, out_name, extra, log);
    int rc = system(cmd);
    FILE *f = fopen(log, "r");
    summary[0] = 0;
    if (f) {
        size_t got = fread(summary, 1, n - 1, f);
        summary[got] = 0;
        fclose(f);
    }
    return rc;
}

/* The similarity_matrix rows of the document member, checked against the
 * rows of the present images of d. */
static void check_matrix(const shard_sample *s, const raw_doc *d) {
    const shard_member *m = shard_sample_member(s, "json");
    cJSON *j = m ? cJSON_ParseWithLength((const char *)m->data, m->size) : NULL;
    const cJSON *rows = cJSON_GetObjectItemCaseSensitive(j, "similarity_matrix");
    int r = 0, bad = 0;
    for (int i = 0; i < d->n_images; i++) {
        if (!d->present[i]) continue;
        const cJSON *row = cJSON_GetArrayItem(rows, r++);
        for (int t = 0; t < d->n_texts; t++) {
            const cJSON *v = cJSON_GetArrayItem(row, t);
            bad += !cJSON_IsNumber(v) || v->valuedouble != d->matrix[i][t];
        }
    }
    CHECK(j && cJSON_GetArraySize(rows) == r && !bad, "key %s: similarity_matrix rows differ (%d bad values)",
          s->key, bad);
    cJSON_Delete(j);
}

/* Compares one parsed document with the raw document it came from. */
static void check_doc(const shard_sample *s, const document *doc, const raw_doc *d) {
    char want[64];
    CHECK(doc->n_texts == d->n_texts, "key %s: %lld sentences, want %d", s->key, (long long)doc->n_texts, d->n_texts);
    for (int t = 0; t < d->n_texts && t < doc->n_texts; t++) {
        decoded_text(d->texts[t], want, sizeof want);
        CHECK(!strcmp(doc->texts[t], want), "key %s sentence %d: '%s', want '%s'", s->key, t, doc->texts[t], want);
    }
    int64_t j = 0;
    for (int i = 0; i < d->n_images; i++) {
        if (!d->present[i]) continue;
        if (j >= doc->n_images) break;
        const doc_image *im = &doc->images[j++];
        CHECK(!strcmp(im->name, d->names[i]), "key %s image %lld: name %s, want %s", s->key, (long long)j - 1,
              im->name, d->names[i]);
        CHECK(im->data && im->size == d->size[i] && !memcmp(im->data, d->bytes[i], d->size[i]),
              "key %s image %s: embedded bytes differ (%zu vs %zu bytes)", s->key, d->names[i], im->size, d->size[i]);
        CHECK(im->text_index == d->text_index[i] && im->sim == d->sim[i], "key %s image %s: index %lld sim %.17g",
              s->key, d->names[i], (long long)im->text_index, im->sim);
    }
    CHECK(j == doc->n_images, "key %s: %lld images, want %lld", s->key, (long long)doc->n_images, (long long)j);
    check_matrix(s, d);
}

/* Reads shard out_name/%09d.tar (idx) and checks its documents are the raw
 * docs listed in want (count n) with the given keys. */
static void check_shard(const char *out_name, int idx, const raw_doc *docs, const int *want, const char **keys,
                        int n) {
    char path[512], err[512];
    snprintf(path, sizeof path, "%s/%s/%09d.tar", tmp_dir, out_name, idx);
    shard_reader *r = shard_open(path, NULL, err, sizeof err);
    CHECK(r != NULL, "cannot open %s: %s", path, err);
    if (!r) return;
    skip_counts skips = {0};
    shard_sample s;
    int got = 0;
    while (shard_next(r, &s, &skips)) {
        document doc;
        skip_reason why;
        if (got < n) {
            CHECK(!strcmp(s.key, keys[got]), "%s: sample %d key %s, want %s", path, got, s.key, keys[got]);
            int rc = document_parse(&s, NULL, &doc, &why, err, sizeof err);
            CHECK(rc == 0 && doc.format == SAMPLE_FORMAT_MMC4, "%s: key %s does not parse: %s", path, s.key, err);
            if (rc == 0) {
                check_doc(&s, &doc, &docs[want[got]]);
                document_free(&doc);
            }
        }
        got++;
        shard_sample_free(&s);
    }
    shard_close(r);
    char buf[256];
    CHECK(got == n, "%s: %d documents, want %d", path, got, n);
    CHECK(!strcmp(skip_counts_str(&skips, buf, sizeof buf), "none"), "%s: skips %s", path, buf);
}

static int file_exists(const char *out_name, int idx) {
    char path[512];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s/%09d.tar", tmp_dir, out_name, idx);
    return stat(path, &st) == 0;
}

/* Keys are the running line index over all inputs (the malformed line
 * takes index 1): doc 0 -> 0, doc 1 -> 2, doc 2 -> 3. */
static void test_convert(const raw_doc *docs) {
    char summary[4096];
    int rc = run_script("drop", "--docs-per-shard 2", summary, sizeof summary);
    CHECK(rc == 0, "converter failed (%d):\n%s", rc, summary);
    CHECK(strstr(summary, "4 lines (1 malformed, skipped); 2 documents written to 1 shards") &&
              strstr(summary, "4 images embedded, 2 missing") && strstr(summary, "1 dropped, 0 kept"),
          "summary (drop):\n%s", summary);
    const int want_drop[] = {0, 1};
    const char *keys_drop[] = {"000000000000", "000000000002"};
    check_shard("drop", 0, docs, want_drop, keys_drop, 2);
    CHECK(!file_exists("drop", 1), "a second shard was written with the imageless document dropped");

    rc = run_script("keep", "--docs-per-shard 2 --keep-imageless --first-shard 7", summary, sizeof summary);
    CHECK(rc == 0, "converter failed (%d):\n%s", rc, summary);
    CHECK(strstr(summary, "3 documents written to 2 shards") && strstr(summary, "0 dropped, 1 kept"),
          "summary (keep):\n%s", summary);
    const int want_keep1[] = {2};
    const char *keys_keep1[] = {"000000000003"};
    check_shard("keep", 7, docs, want_drop, keys_drop, 2);
    check_shard("keep", 8, docs, want_keep1, keys_keep1, 1);

    rc = run_script("bad", "--docs-per-shard 0", summary, sizeof summary);
    CHECK(rc != 0 && strstr(summary, "--docs-per-shard must be >= 1"), "bad option accepted:\n%s", summary);
}

int main(void) {
    tests_begin("test_mmc4_convert");
    find_script();
    check_script_file();
    if (system("python3 -c 'import json' >/dev/null 2>&1") != 0) {
        printf("SKIP conversion checks: python3 is not available (only the script file was checked)\n");
        return tests_done();
    }
    snprintf(tmp_dir, sizeof tmp_dir, "/tmp/aimc_test_mmc4_XXXXXX");
    if (!mkdtemp(tmp_dir)) return 1;
    raw_doc docs[N_DOCS];
    make_docs(docs);
    CHECK(write_raw_layout(docs) == 0, "could not write the raw layout in %s", tmp_dir);
    test_convert(docs);
    for (int k = 0; k < N_DOCS; k++)
        for (int i = 0; i < docs[k].n_images; i++) free(docs[k].bytes[i]);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_dir);
    if (system(cmd)) printf("note: could not remove %s\n", tmp_dir);
    return tests_done();
}
