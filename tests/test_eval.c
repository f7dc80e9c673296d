/* aimc eval: the benchmark readers, demonstration selection, the text
 * forms, answer scoring, and the whole scoring path end to end on the tiny
 * LLaVA fixture (the aimc binary next to this test's folder, run as a child
 * process), checked against computations done here:
 *  - readers: every published format in tests/fixtures/eval (values written
 *    by scripts/make_eval_fixtures.py, hard-coded here), files in either
 *    order, split lists; malformed variants (bad JSON, a missing field, a
 *    question without annotation, empty answers, a bad label, repeated ids)
 *    give one line naming the file, the item and the field;
 *  - image patterns against libc's snprintf on random ids;
 *  - selection: deterministic per seed, distinct, never the query, every
 *    other item when k equals them, an error beyond; nearest-neighbour
 *    retrieval against a sort of all similarities done here;
 *  - post-processing, templates, quantiles, the two-class probability;
 *  - the answers' log-probabilities over the KV cache (one prefill, cache
 *    rewound between answers, answers of different lengths) against a full
 *    forward of prompt + answer with log_softmax in double here;
 *  - CLI: VQA accuracy, CIDEr-D and ROC-AUC recomputed from the per-item
 *    JSONL with host/metrics.h (and a pairwise AUC loop here) equal the
 *    summary; runs whose references are rigged to contain the model's own
 *    answers score above 0 and exactly as recomputed; aim prompts are
 *    shorter than icl's by k x 16 image tokens per query; the bank gives
 *    the same scores; --limit, --csv, CLIP retrieval; --help and bad
 *    flags exit 0 / 2. */
#include "model_fixture.h"
#include "cli_fixture.h"
#include "../host/checkpoint.h"
#include "../kernels/check.h"
#include "../host/eval.h"
#include "../host/metrics.h"
#include "../host/mllm.h"
#include <fcntl.h>

static const backend *be;
static char tmpdir[] = "/tmp/aimc-test-eval-XXXXXX";
static char aimc[PATH_MAX + 16];
static fx_path fx_root, models;

static fx_path fx(const char *rel) { return fx_join(fx_root.s, rel); }
static fx_path tmp(const char *name) { return fx_join(tmpdir, name); }

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f)) printf("FAIL: cannot write %s\n", path), exit(1);
}

/* ---- readers ------------------------------------------------------------------------ */

static int read_set(eval_set *s, eval_task task, const char *const *files, int n, const char *images,
                    const char *pattern, const char *splits, char *err) {
    eval_read_opts o = {.images_dir = images, .image_pattern = pattern, .splits = splits};
    return eval_read(s, task, files, n, &o, err, 1024);
}

static void test_read_okvqa(void) {
    fx_path q = fx("okvqa/OpenEnded_mscoco_val2014_questions.json"), a = fx("okvqa/mscoco_val2014_annotations.json");
    eval_set s, t;
    char err[1024] = "";
    const char *files[2] = {q.s, a.s}, *swapped[2] = {a.s, q.s};
    CHECK(read_set(&s, EVAL_TASK_VQA, files, 2, "IMG", "COCO_val2014_%012d.jpg", NULL, err) == 0, "okvqa: %s", err);
    CHECK(s.n == 4, "okvqa val: %lld items, want 4", (long long)s.n);
    if (s.n == 4) {
        CHECK(!strcmp(s.items[0].id, "2011") && !strcmp(s.items[3].id, "2032"), "okvqa ids %s %s", s.items[0].id,
              s.items[3].id);
        CHECK(!strcmp(s.items[2].image, "IMG/COCO_val2014_000000000203.jpg"), "okvqa image %s", s.items[2].image);
        CHECK(!strcmp(s.items[1].text, "Is it round?"), "okvqa question '%s'", s.items[1].text);
        CHECK(s.items[0].n_answers == 10 && !strcmp(s.items[0].answers[6], "navy") &&
                  !strcmp(s.items[1].answers[2], "No"), "okvqa answers");
        CHECK(s.items[0].label == -1, "okvqa label %d", s.items[0].label);
    }
    CHECK(read_set(&t, EVAL_TASK_VQA, swapped, 2, "IMG", "COCO_val2014_%012d.jpg", NULL, err) == 0 && t.n == s.n &&
              !strcmp(t.items[3].answers[3], s.items[3].answers[3]), "okvqa with the files swapped: %s", err);
    eval_set_free(&s), eval_set_free(&t);
    fx_path tq = fx("okvqa/OpenEnded_mscoco_train2014_questions.json"), ta = fx("okvqa/mscoco_train2014_annotations.json");
    const char *train[2] = {tq.s, ta.s};
    CHECK(read_set(&s, EVAL_TASK_VQA, train, 2, NULL, "COCO_train2014_%012d.jpg", NULL, err) == 0 && s.n == 6 &&
              !strcmp(s.items[5].image, "COCO_train2014_000000000106.jpg") && !strcmp(s.items[2].answers[2], "1"),
          "okvqa train: %s", err);
    eval_set_free(&s);
}

static void test_read_others(void) {
    eval_set s;
    char err[1024] = "";
    fx_path v = fx("vizwiz/val.json"), k = fx("flickr30k/dataset_flickr30k.json"), h = fx("hateful_memes/dev_seen.jsonl");
    const char *vf[1] = {v.s}, *kf[1] = {k.s}, *hf[1] = {h.s};
    CHECK(read_set(&s, EVAL_TASK_VQA, vf, 1, "V", NULL, NULL, err) == 0 && s.n == 3 &&
              !strcmp(s.items[1].id, "VizWiz_val_00000001.jpg") && !strcmp(s.items[1].image, "V/VizWiz_val_00000001.jpg") &&
              !strcmp(s.items[2].answers[5], "72") && !strcmp(s.items[0].text, "What is in this box?"),
          "vizwiz: %s", err);
    eval_set_free(&s);
    CHECK(read_set(&s, EVAL_TASK_CAPTION, kf, 1, "F/", NULL, "test", err) == 0 && s.n == 3 && !strcmp(s.items[0].id, "5") &&
              !strcmp(s.items[0].image, "F/1000092880.jpg") && s.items[0].n_answers == 5 &&
              !strcmp(s.items[2].answers[4], "Black and white.") && !s.items[0].text,
          "karpathy test: %s", err);
    eval_set_free(&s);
    CHECK(read_set(&s, EVAL_TASK_CAPTION, kf, 1, NULL, NULL, "train", err) == 0 && s.n == 4 && !strcmp(s.items[3].id, "4"),
          "karpathy train: %s (%lld)", err, (long long)s.n);
    eval_set_free(&s);
    CHECK(read_set(&s, EVAL_TASK_CAPTION, kf, 1, NULL, NULL, "val,train", err) == 0 && s.n == 5 &&
              !strcmp(s.items[3].id, "3"), "karpathy val,train: %s", err);
    eval_set_free(&s);
    CHECK(read_set(&s, EVAL_TASK_HATEFUL, hf, 1, "H", NULL, NULL, err) == 0 && s.n == 4 && !strcmp(s.items[2].id, "3745") &&
              !strcmp(s.items[2].image, "H/img/03745.png") && s.items[0].label == 1 && s.items[1].label == 0 &&
              !strcmp(s.items[3].text, "it is time.. to water the plants") && s.items[0].n_answers == 0,
          "hateful: %s", err);
    eval_set_free(&s);
}

/* One malformed file: reading it fails with a message holding every want. */
static void expect_read_error(eval_task task, const char *name, const char *content, const char *other_name,
                              const char *other, const char *const *want, int n_want) {
    fx_path p = tmp(name), o = tmp(other_name ? other_name : "unused");
    write_text(p.s, content);
    if (other) write_text(o.s, other);
    const char *files[2] = {p.s, o.s};
    eval_set s = {.n = 7};
    char err[1024] = "";
    int rc = read_set(&s, task, files, other ? 2 : 1, NULL, "%d.jpg", "test", err);
    int ok = rc == -1 && s.n == 0 && s.items == NULL && !strchr(err, '\n');
    for (int i = 0; i < n_want; i++) ok = ok && strstr(err, want[i]);
    CHECK(ok, "%s: rc %d, message '%s'", name, rc, err);
}

#define BAD(task, name, content, other_name, other, ...)                                                  \
    expect_read_error(task, name, content, other_name, other, (const char *const[]){__VA_ARGS__},           \
                      (int)(sizeof((const char *const[]){__VA_ARGS__}) / sizeof(const char *)))

static void test_read_errors(void) {
    const char *ann = "{\"annotations\": [{\"question_id\": 1, \"answers\": [{\"answer\": \"a\"}]},"
                      " {\"question_id\": 2, \"answers\": [{\"answer\": \"b\"}]}]}";
    BAD(EVAL_TASK_VQA, "q_syntax.json", "{\"questions\": [\n{\"image_id\": 1,}\n]}", "a.json", ann, "q_syntax.json",
        "not valid JSON", "line 2");
    BAD(EVAL_TASK_VQA, "q_field.json",
        "{\"questions\": [{\"image_id\": 1, \"question\": \"x\", \"question_id\": 1}, {\"image_id\": 2, \"question_id\": 2}]}",
        "a.json", ann, "q_field.json", "questions[1]", "\"question\"", "missing");
    BAD(EVAL_TASK_VQA, "q_noann.json", "{\"questions\": [{\"image_id\": 3, \"question\": \"x\", \"question_id\": 3}]}",
        "a.json", ann, "questions[0]", "question_id 3", "no annotation", "a.json");
    BAD(EVAL_TASK_VQA, "q_ok.json", "{\"questions\": [{\"image_id\": 1, \"question\": \"x\", \"question_id\": 1}]}",
        "a_empty.json", "{\"annotations\": [{\"question_id\": 1, \"answers\": []}]}", "a_empty.json", "annotations[0]",
        "\"answers\"", "empty");
    BAD(EVAL_TASK_VQA, "q_ok2.json", "{\"questions\": [{\"image_id\": 1, \"question\": \"x\", \"question_id\": 1}]}",
        "a_type.json", "{\"annotations\": [{\"question_id\": 1, \"answers\": [{\"answer\": \"a\"}, {\"answer\": 3}]}]}",
        "a_type.json", "answers[1].answer");
    BAD(EVAL_TASK_VQA, "q_float.json", "{\"questions\": [{\"image_id\": 1.5, \"question\": \"x\", \"question_id\": 1}]}",
        "a.json", ann, "q_float.json", "\"image_id\"", "not an integer");
    BAD(EVAL_TASK_VQA, "q_noarr.json", "{\"qs\": []}", "a.json", ann, "q_noarr.json", "\"questions\"");
    BAD(EVAL_TASK_VQA, "viz_obj.json", "{\"image\": \"x\"}", NULL, NULL, "viz_obj.json", "not a VizWiz");
    BAD(EVAL_TASK_VQA, "viz_noq.json", "[{\"image\": \"x.jpg\", \"answers\": [{\"answer\": \"a\"}]}]", NULL, NULL,
        "viz_noq.json", "[0]", "\"question\"");
    BAD(EVAL_TASK_VQA, "viz_dup.json",
        "[{\"image\": \"x.jpg\", \"question\": \"q\", \"answers\": [{\"answer\": \"a\"}]},"
        " {\"image\": \"x.jpg\", \"question\": \"r\", \"answers\": [{\"answer\": \"b\"}]}]",
        NULL, NULL, "viz_dup.json", "'x.jpg'", "twice", "0", "1");
    BAD(EVAL_TASK_CAPTION, "k_raw.json",
        "{\"images\": [{\"filename\": \"a.jpg\", \"split\": \"test\", \"imgid\": 0, \"sentences\": [{\"tokens\": []}]}]}",
        NULL, NULL, "k_raw.json", "images[0]", "sentences[0].raw");
    BAD(EVAL_TASK_CAPTION, "k_split.json",
        "{\"images\": [{\"filename\": \"a.jpg\", \"split\": \"train\", \"imgid\": 0, \"sentences\": [{\"raw\": \"x\"}]}]}",
        NULL, NULL, "k_split.json", "no image in split 'test'");
    BAD(EVAL_TASK_CAPTION, "k_nosplit.json", "{\"images\": [{\"filename\": \"a.jpg\", \"imgid\": 0}]}", NULL, NULL,
        "k_nosplit.json", "images[0]", "\"split\"");
    BAD(EVAL_TASK_HATEFUL, "h_json.jsonl",
        "{\"id\": 1, \"img\": \"a.png\", \"label\": 0, \"text\": \"t\"}\n\n{\"id\": 2, \"img\": \"b.png\"\n", NULL,
        NULL, "h_json.jsonl:3", "not a JSON object");
    BAD(EVAL_TASK_HATEFUL, "h_label.jsonl", "{\"id\": 1, \"img\": \"a.png\", \"label\": 2, \"text\": \"t\"}\n", NULL, NULL,
        "h_label.jsonl:1", "\"label\"", "not 0 or 1");
    BAD(EVAL_TASK_HATEFUL, "h_nolabel.jsonl", "{\"id\": 1, \"img\": \"a.png\", \"text\": \"t\"}\n", NULL, NULL,
        "h_nolabel.jsonl:1", "\"label\"", "missing");
    BAD(EVAL_TASK_HATEFUL, "h_noimg.jsonl", "{\"id\": 1, \"label\": 1, \"text\": \"t\"}\n", NULL, NULL,
        "h_noimg.jsonl:1", "\"img\"");
    BAD(EVAL_TASK_HATEFUL, "h_empty.jsonl", "\n \n", NULL, NULL, "h_empty.jsonl", "no memes");
    BAD(EVAL_TASK_HATEFUL, "h_missing_file.jsonl", "", NULL, NULL, "h_missing_file.jsonl");
    eval_set s;
    char err[1024] = "";
    fx_path none = tmp("does_not_exist.jsonl");
    const char *files[1] = {none.s};
    CHECK(read_set(&s, EVAL_TASK_HATEFUL, files, 1, NULL, NULL, NULL, err) == -1 && strstr(err, "does_not_exist.jsonl") &&
              strstr(err, "cannot open"), "a missing file: '%s'", err);
}

static void test_image_names(void) {
    static const char *const pats[] = {"COCO_val2014_%012d.jpg", "%d.png", "img%5d_%%.jpg", "%%%03d", "x%dy"};
    char err[512];
    for (int t = 0; t < 40; t++) {
        const char *pat = pats[t % 5];
        long long id = t < 5 ? (long long)t * 7 : (long long)(rng_u64() % 2000000000ull) - (t % 4 == 0 ? 1000000 : 0);
        char idtext[32], want[128];
        snprintf(idtext, sizeof idtext, "%lld", id);
        snprintf(want, sizeof want, pat, (int)id); /* pats are trusted constants here */
        char *got = eval_image_name(pat, idtext, 1, err, sizeof err);
        CHECK(got && !strcmp(got, want), "pattern '%s' id %s: '%s', printf gives '%s'", pat, idtext, got ? got : err, want);
        free(got);
    }
    char *s = eval_image_name("COCO_%012d.jpg", "VizWiz_x.jpg", 0, err, sizeof err);
    CHECK(s && !strcmp(s, "VizWiz_x.jpg"), "a string id is the file name: '%s'", s ? s : err);
    free(s);
    s = eval_image_name("pre_%s.jpg", "abc", 0, err, sizeof err);
    CHECK(s && !strcmp(s, "pre_abc.jpg"), "%%s pattern: '%s'", s ? s : err);
    free(s);
    static const char *const bad[] = {"%x.jpg", "%d_%d.jpg", "plain.jpg", "%"};
    for (int i = 0; i < 4; i++) {
        s = eval_image_name(bad[i], "12", 1, err, sizeof err);
        CHECK(!s && strstr(err, "image pattern"), "bad pattern '%s': '%s'", bad[i], s ? s : err);
        free(s);
    }
}

/* ---- selection ------------------------------------------------------------------------------ */

static eval_set synthetic_set(int64_t n) {
    eval_set s = {.task = EVAL_TASK_VQA, .n = n, .items = tl_alloc((size_t)n * sizeof(eval_item))};
    for (int64_t i = 0; i < n; i++) {
        char id[32];
        snprintf(id, sizeof id, "t%lld", (long long)i);
        s.items[i] = (eval_item){.id = strdup(id), .image = strdup("x.jpg"), .label = -1};
    }
    return s;
}

static int distinct_valid(const int64_t *out, int k, int64_t n, int64_t forbidden) {
    for (int i = 0; i < k; i++) {
        if (out[i] < 0 || out[i] >= n || out[i] == forbidden) return 0;
        for (int j = 0; j < i; j++)
            if (out[i] == out[j]) return 0;
    }
    return 1;
}

static void test_select_random(void) {
    eval_set s = synthetic_set(50);
    char err[512];
    int64_t a[50], b[50];
    int differs = 0;
    for (int trial = 0; trial < 20; trial++) {
        int64_t qi = rng_int(50);
        int k = 1 + (int)rng_int(8);
        uint64_t seed = rng_u64();
        int rc = eval_select_random(&s, s.items[qi].id, k, seed, a, err, sizeof err);
        rc |= eval_select_random(&s, s.items[qi].id, k, seed, b, err, sizeof err);
        CHECK(rc == 0 && !memcmp(a, b, (size_t)k * sizeof *a), "selection not deterministic per seed");
        CHECK(distinct_valid(a, k, 50, qi), "selection of %d for query %lld: repeated, out of range or the query", k,
              (long long)qi);
        eval_select_random(&s, s.items[qi].id, k, seed + 1, b, err, sizeof err);
        differs += memcmp(a, b, (size_t)k * sizeof *a) != 0;
    }
    CHECK(differs >= 15, "another seed changed the selection only %d times in 20", differs);
    /* a query from another split (id not in train) may get any item */
    CHECK(eval_select_random(&s, "not-in-train", 50, 3, a, err, sizeof err) == 0 && distinct_valid(a, 50, 50, -1),
          "k = n without the query in the split");
    CHECK(eval_select_random(&s, "t10", 49, 3, a, err, sizeof err) == 0 && distinct_valid(a, 49, 50, 10),
          "k = every other item: %s", err);
    CHECK(eval_select_random(&s, "t10", 50, 3, a, err, sizeof err) == -1 && strstr(err, "50 demonstrations") &&
              strstr(err, "49 items"), "k beyond the split: '%s'", err);
    CHECK(eval_select_random(&s, "t3", 0, 3, a, err, sizeof err) == 0, "k = 0");
    eval_set_free(&s);
}

static void unit_rows(float *x, int64_t n, int64_t d) {
    for (int64_t i = 0; i < n; i++) {
        double s = 0;
        for (int64_t j = 0; j < d; j++) s += (double)x[i * d + j] * x[i * d + j];
        for (int64_t j = 0; j < d; j++) x[i * d + j] = (float)(x[i * d + j] / sqrt(s));
    }
}

static void test_select_nearest(void) {
    const int64_t n = 40, d = 7;
    eval_set s = synthetic_set(n);
    float *emb = tl_alloc((size_t)(n * d) * sizeof *emb), q[7];
    char err[512];
    for (int trial = 0; trial < 10; trial++) {
        fill_normal(emb, n * d, 1.0);
        unit_rows(emb, n, d);
        int64_t qi = rng_int(n);
        memcpy(q, emb + qi * d, sizeof q); /* the query's own image: must not be picked */
        for (int j = 0; j < d; j++) q[j] += (float)(0.3 * rng_normal());
        unit_rows(q, 1, d);
        int k = 1 + (int)rng_int(6);
        int64_t got[8], order[40];
        double sim[40];
        CHECK(eval_select_nearest(&s, emb, q, d, s.items[qi].id, k, got, err, sizeof err) == 0, "nearest: %s", err);
        int m = 0;
        for (int64_t i = 0; i < n; i++) {
            if (i == qi) continue;
            double dd = 0;
            for (int64_t j = 0; j < d; j++) dd += (double)emb[i * d + j] * q[j];
            int at = m++;
            while (at > 0 && dd > sim[at - 1]) sim[at] = sim[at - 1], order[at] = order[at - 1], at--; /* stable */
            sim[at] = dd, order[at] = i;
        }
        int same = 1;
        for (int i = 0; i < k; i++) same = same && got[i] == order[k - 1 - i]; /* least similar first */
        CHECK(same, "nearest %d for query %lld differ from the full sort", k, (long long)qi);
    }
    free(emb);
    eval_set_free(&s);
}

/* ---- texts and statistics ---------------------------------------------------------------------- */

static void test_texts(void) {
    struct {
        eval_task task;
        const char *in, *want;
    } cases[] = {
        {EVAL_TASK_VQA, " blue, red Question: what", "blue"},
        {EVAL_TASK_VQA, "yes Short answer: no", "yes"},
        {EVAL_TASK_VQA, "two dogs\nAnswer", "two dogs"},
        {EVAL_TASK_VQA, "Answer: x", ""},
        {EVAL_TASK_VQA, "red,blue", "red,blue"},
        {EVAL_TASK_CAPTION, "A \"big\" cat. Output: a dog", "A big cat."},
        {EVAL_TASK_CAPTION, "  A dog runs\n", "A dog runs"},
        {EVAL_TASK_CAPTION, "Outputs", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *got = eval_postprocess(cases[i].task, cases[i].in);
        CHECK(!strcmp(got, cases[i].want), "postprocess '%s': '%s', want '%s'", cases[i].in, got, cases[i].want);
        free(got);
    }
    infer_templates ts;
    infer_templates_default(&ts);
    char *ans[2] = {"red", "dark red"}, *caps[1] = {"  A cat sits. "};
    eval_item v = {.id = "1", .text = "What color?", .answers = ans, .n_answers = 2, .label = -1};
    eval_item c = {.id = "2", .answers = caps, .n_answers = 1, .label = -1};
    eval_item h = {.id = "3", .text = "so it goes", .label = 1};
    struct {
        char *got;
        const char *want;
    } t[] = {
        {eval_demo_text(EVAL_TASK_VQA, infer_template_find(&ts, "vqa"), &v), "Question:What color? Short answer:red"},
        {eval_query_text(EVAL_TASK_VQA, infer_template_find(&ts, "vqa"), &v), "Question:What color? Short answer:"},
        {eval_demo_text(EVAL_TASK_CAPTION, infer_template_find(&ts, "caption"), &c), "Output:A cat sits."},
        {eval_query_text(EVAL_TASK_CAPTION, infer_template_find(&ts, "caption"), &c), "Output:"},
        {eval_demo_text(EVAL_TASK_HATEFUL, infer_template_find(&ts, "hateful"), &h),
         "is an image with: 'so it goes' written on it. Is it hateful? Answer: yes"},
        {eval_query_text(EVAL_TASK_HATEFUL, infer_template_find(&ts, "hateful"), &h),
         "is an image with: 'so it goes' written on it. Is it hateful? Answer:"},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        CHECK(!strcmp(t[i].got, t[i].want), "text %zu: '%s', want '%s'", i, t[i].got, t[i].want);
        free(t[i].got);
    }
    h.label = 0;
    char *no = eval_demo_text(EVAL_TASK_HATEFUL, infer_template_find(&ts, "hateful"), &h);
    CHECK(strstr(no, "Answer: no") != NULL, "label 0 demo: '%s'", no);
    free(no);
    infer_templates_free(&ts);
}

static void test_stats(void) {
    double x[5] = {4, 1, 3, 2, 10};
    CHECK(fabs(eval_quantile(x, 4, 0.5) - 2.5) < 1e-12 && fabs(eval_quantile(x, 4, 0.9) - 3.7) < 1e-12,
          "quantiles of 1..4: %g %g (numpy: 2.5 3.7)", eval_quantile(x, 4, 0.5), eval_quantile(x, 4, 0.9));
    CHECK(fabs(eval_quantile(x, 5, 0.9) - 7.6) < 1e-12 && eval_quantile(x, 1, 0.9) == 4 && isnan(eval_quantile(x, 0, 0.5)),
          "quantiles: %g (numpy 7.6)", eval_quantile(x, 5, 0.9));
    CHECK(x[0] == 4 && x[1] == 1, "eval_quantile modified its input");
    for (int i = 0; i < 10; i++) {
        double a = rng_uniform(-30, 0), b = rng_uniform(-30, 0), want = 1.0 / (1.0 + exp(b - a));
        CHECK(fabs(eval_two_class_prob(a, b) - want) < 1e-12, "P(first) of %g, %g", a, b);
    }
    CHECK(fabs(eval_two_class_prob(-1000, -1001) - 1.0 / (1.0 + exp(-1.0))) < 1e-12, "P(first) far below 0");
}

/* ---- answer log-probabilities --------------------------------------------------------------------- */

/* log p(ids | prompt) by one full forward of [prompt ; E(ids)], double log_softmax. */
static double full_forward_logprob(const decoder *lm, arena *a, const tensor *prompt, const int32_t *ids, int64_t n) {
    size_t mark = a->used;
    int64_t T = prompt->shape[1], D = prompt->shape[2], V = lm->cfg.vocab;
    tensor x = arena_new(a, DT_F32, 1, T + n, D);
    tensor e = decoder_embed_tokens(lm, a, ids, 1, n);
    float *h = tl_alloc((size_t)((T + n) * D) * sizeof *h);
    be->download(h, prompt->data, (size_t)(T * D) * sizeof *h);
    be->download(h + T * D, e.data, (size_t)(n * D) * sizeof *h);
    be->upload(x.data, h, (size_t)((T + n) * D) * sizeof *h);
    decoder_fwd_opts o = {.want_logits = 1, .pos_mode = DEC_POS_ARANGE};
    decoder_pass p;
    decoder_forward(lm, a, &x, NULL, &o, &p);
    float *logits = fx_download_f32(&p.logits);
    double sum = 0;
    for (int64_t i = 0; i < n; i++) {
        const float *row = logits + (T - 1 + i) * V;
        double mx = -INFINITY, z = 0;
        for (int64_t v = 0; v < V; v++) mx = row[v] > mx ? row[v] : mx;
        for (int64_t v = 0; v < V; v++) z += exp((double)row[v] - mx);
        sum += (double)row[ids[i]] - mx - log(z);
    }
    decoder_pass_release(&p);
    free(h), free(logits);
    a->used = mark;
    return sum;
}

static void test_answer_logprobs(void) {
    fx_path dir = fx_join(models.s, "llava");
    mllm *m = mllm_load(dir.s, be, DT_F32);
    char err[1024];
    tokenizer *tok = tokenizer_load(dir.s, err, sizeof err);
    preprocess_config pp;
    if (!tok || preprocess_config_load(&pp, dir.s, err, sizeof err)) printf("FAIL: %s\n", err), exit(1);
    infer_templates ts;
    infer_templates_default(&ts);
    const infer_template *t = infer_template_find(&ts, "hateful");
    eval_item q = {.id = "q", .text = "some words here", .label = 1};
    tok_ids ans[3] = {{0}};
    CHECK(eval_answer_tokens(tok, t, &q, "yes", &ans[0], err, sizeof err) == 0 && ans[0].n >= 1, "yes tokens: %s", err);
    /* the answer's tokens are what tokens(demo) adds to tokens(query) */
    tok_ids qi = {0}, di = {0};
    tokenizer_encode_opts eo = {.add_special = 0, .max_length = -1};
    char *qt = eval_query_text(EVAL_TASK_HATEFUL, t, &q), *dt = eval_demo_text(EVAL_TASK_HATEFUL, t, &q);
    tokenizer_encode(tok, qt, strlen(qt), &eo, &qi, err, sizeof err);
    tokenizer_encode(tok, dt, strlen(dt), &eo, &di, err, sizeof err);
    CHECK(di.n == qi.n + ans[0].n && !memcmp(di.ids + qi.n, ans[0].ids, (size_t)ans[0].n * sizeof(int32_t)),
          "yes tokens are not the demo's tail (%lld + %lld vs %lld)", (long long)qi.n, (long long)ans[0].n,
          (long long)di.n);
    /* answers of 1, 3 and 5 tokens: the cache is rewound between them */
    int64_t lens[3] = {1, 3, 5};
    for (int j = 0; j < 3; j++) {
        ans[j].n = 0;
        for (int64_t i = 0; i < lens[j]; i++) {
            ans[j].ids = aimc_grow(ans[j].ids, &ans[j].cap, ans[j].n + 1, sizeof(int32_t), 8);
            ans[j].ids[ans[j].n++] = (int32_t)(3 + rng_int(1500));
        }
    }
    episode_item item;
    fx_path img = fx("hateful_memes/img/08291.png");
    if (infer_item_load(&item, img.s, qt, tok, &pp, "q", err, sizeof err)) printf("FAIL: %s\n", err), exit(1);
    arena a;
    arena_init(&a, be, (size_t)64 << 20);
    infer_model im = {.m = m, .layer = -1};
    tensor prompt = infer_build_prompt(&im, &a, INFER_ZERO_SHOT, NULL, 0, &item);
    double got[3] = {NAN, NAN, NAN};
    size_t cache = 0;
    eval_answer_logprobs(mllm_decoder(m), &a, &prompt, ans, 3, got, &cache);
    for (int j = 0; j < 3; j++) {
        double want = full_forward_logprob(mllm_decoder(m), &a, &prompt, ans[j].ids, ans[j].n);
        CHECK(fabs(got[j] - want) < 1e-4 * (1 + fabs(want)), "answer %d (%lld tokens): cached %.8f, full forward %.8f", j,
              (long long)ans[j].n, got[j], want);
    }
    CHECK(cache > 0, "no cache bytes reported");
    arena_free(&a);
    episode_item_free(&item);
    for (int j = 0; j < 3; j++) tok_ids_free(&ans[j]);
    tok_ids_free(&qi), tok_ids_free(&di);
    free(qt), free(dt);
    infer_templates_free(&ts);
    tokenizer_free(tok);
    mllm_free(m);
}

/* ---- the CLI ------------------------------------------------------------------------------------------ */

typedef cli_out run_out;

/* aimc ARGS... (NULL-terminated) with stdout and stderr captured. */
static void run(run_out *r, const char *const *args) { cli_run(r, aimc, tmpdir, args); }

#define RUN(r, ...) run((r), (const char *const[]){__VA_ARGS__, NULL})

/* The summary: the last line of stdout, parsed. */
static cJSON *summary_of(const run_out *r) {
    const char *end = r->out + strlen(r->out);
    while (end > r->out && end[-1] == '\n') end--;
    const char *start = end;
    while (start > r->out && start[-1] != '\n') start--;
    return cJSON_ParseWithLength(start, (size_t)(end - start));
}

static double num(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static const char *str(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : "";
}

/* The per-item JSONL: up to 16 objects. */
typedef struct items {
    int n;
    cJSON *o[16];
} items;

static void read_items(const char *path, items *it) {
    char buf[65536];
    cli_slurp(path, buf, sizeof buf);
    it->n = 0;
    for (char *s = buf, *next; *s && it->n < 16; s = next) {
        size_t len = strcspn(s, "\n");
        next = s + len + (s[len] == '\n');
        s[len] = 0;
        if (len) it->o[it->n++] = cJSON_Parse(s);
    }
}

static void free_items(items *it) {
    for (int i = 0; i < it->n; i++) cJSON_Delete(it->o[i]);
    it->n = 0;
}

static int strings_of(const cJSON *o, const char *key, const char **out, int max) {
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, key);
    int n = 0;
    for (const cJSON *v = a ? a->child : NULL; v && n < max; v = v->next) out[n++] = v->valuestring;
    return n;
}

static void test_usage(void) {
    run_out r;
    fx_path llava = fx_join(models.s, "llava"), h = fx("hateful_memes/dev_seen.jsonl");
    RUN(&r, "eval", "--help");
    CHECK(r.rc == 0 && strstr(r.out, "usage: aimc eval") && strstr(r.out, "--retrieval"), "--help: %d", r.rc);
    RUN(&r, "eval", "--model", llava.s, "--task", "vqa", "--test", h.s, "--bogus");
    CHECK(r.rc == 2 && strstr(r.err, "unknown option '--bogus'"), "bad flag: %d '%s'", r.rc, r.err);
    RUN(&r, "eval", "--model", llava.s, "--task", "ocr", "--test", h.s);
    CHECK(r.rc == 2 && strstr(r.err, "--task"), "bad task: %d '%s'", r.rc, r.err);
    RUN(&r, "eval", "--model", llava.s, "--task", "hateful");
    CHECK(r.rc == 2 && strstr(r.err, "--test"), "no --test: %d '%s'", r.rc, r.err);
    RUN(&r, "eval", "--model", llava.s, "--task", "hateful", "--test", "--shots", "0");
    CHECK(r.rc == 2 && strstr(r.err, "no file after --test"), "--test without files: %d '%s'", r.rc, r.err);
    RUN(&r, "eval", "--model", llava.s, "--task", "hateful", "--test", h.s, "--shots", "2", "--mode", "icl");
    CHECK(r.rc == 2 && strstr(r.err, "--train"), "shots without --train: %d '%s'", r.rc, r.err);
    RUN(&r, "eval", "--model", llava.s, "--task", "hateful", "--test", h.s, "--mode", "few");
    CHECK(r.rc == 2 && strstr(r.err, "--mode"), "bad mode: %d '%s'", r.rc, r.err);
    RUN(&r, "eval", "--model", llava.s, "--task", "hateful", "--test", h.s, "--retrieval", "clip");
    CHECK(r.rc == 2 && strstr(r.err, "--clip-model"), "clip without a model: %d '%s'", r.rc, r.err);
    RUN(&r, "eval", "--model", llava.s, "--task", "hateful", "--test", h.s, "--shots", "x");
    CHECK(r.rc == 2 && strstr(r.err, "--shots"), "bad --shots: %d '%s'", r.rc, r.err);
    RUN(&r, "eval", "--model", llava.s, "--task", "hateful", "--test", h.s, "--train", h.s, "--mode", "aim", "--shots", "1");
    CHECK(r.rc == 1 && strstr(r.err, "needs a trained projector"), "aim without a projector: %d '%s'", r.rc, r.err);
    fx_path blip2 = fx_join(models.s, "blip2"), tr = fx("hateful_memes/train.jsonl"), img = fx("hateful_memes");
    RUN(&r, "eval", "--model", blip2.s, "--task", "hateful", "--test", h.s, "--train", tr.s, "--images", img.s, "--mode",
        "icl", "--shots", "3");
    CHECK(r.rc == 1 && strstr(r.err, "max_position_embeddings") && !r.out[0], "OPT prompt too long: %d '%s'", r.rc, r.err);
    fx_path bad = tmp("bad.jsonl");
    write_text(bad.s, "{\"id\": 1, \"img\": \"a.png\", \"label\": 7, \"text\": \"t\"}\n");
    RUN(&r, "eval", "--model", llava.s, "--task", "hateful", "--test", bad.s, "--mode", "zero-shot");
    CHECK(r.rc == 1 && strstr(r.err, "bad.jsonl:1") && strstr(r.err, "\"label\""), "malformed test file: %d '%s'", r.rc,
          r.err);
}

/* VQA (OK-VQA files): the score is the mean of the per-item accuracies,
 * which are metric_vqa_accuracy of the written answers; then references
 * rigged with the model's own answers score above zero, exactly as
 * recomputed. Demonstrations are deterministic and never the query. */
static void vqa_common(const char **args, int *n) {
    static fx_path tq, ta, vq, ti, vi, llava;
    tq = fx("okvqa/OpenEnded_mscoco_train2014_questions.json"), ta = fx("okvqa/mscoco_train2014_annotations.json");
    vq = fx("okvqa/OpenEnded_mscoco_val2014_questions.json");
    ti = fx("coco/train2014"), vi = fx("coco/val2014"), llava = fx_join(models.s, "llava");
    const char *a[] = {"eval", "--model", llava.s, "--task", "vqa", "--mode", "icl", "--shots", "2",
                       "--train", tq.s, ta.s, "--train-images", ti.s, "--images", vi.s, "--test", vq.s};
    memcpy(args, a, sizeof a);
    *n = (int)(sizeof a / sizeof a[0]);
}

static double recompute_vqa(const items *it, const char *const rigged[][10], int *ok) {
    double sum = 0;
    *ok = 1;
    for (int i = 0; i < it->n; i++) {
        const char *gt[10];
        int n = strings_of(it->o[i], "answers", gt, 10);
        if (rigged) memcpy(gt, rigged[i], sizeof gt), n = 10;
        double acc = metric_vqa_accuracy(str(it->o[i], "answer"), gt, n);
        char *pp = eval_postprocess(EVAL_TASK_VQA, str(it->o[i], "generated"));
        *ok = *ok && fabs(acc - num(it->o[i], "accuracy")) < 1e-12 && !strcmp(pp, str(it->o[i], "answer"));
        free(pp);
        sum += acc;
    }
    return 100.0 * sum / it->n;
}

static void test_vqa(void) {
    const char *args[40];
    int n;
    vqa_common(args, &n);
    fx_path va = fx("okvqa/mscoco_val2014_annotations.json"), out = tmp("vqa.jsonl"), out2 = tmp("vqa2.jsonl");
    args[n++] = va.s, args[n++] = "--out", args[n++] = out.s, args[n] = NULL;
    run_out r, r2;
    run(&r, args);
    args[n - 1] = out2.s;
    run(&r2, args);
    cJSON *s = summary_of(&r);
    items it, it2;
    read_items(out.s, &it), read_items(out2.s, &it2);
    CHECK(r.rc == 0 && s && it.n == 4 && num(s, "n") == 4, "vqa run: %d '%s' (%d items)", r.rc, r.err, it.n);
    int ok = 0, same = it.n == it2.n;
    double score = it.n ? recompute_vqa(&it, NULL, &ok) : NAN;
    CHECK(ok && fabs(score - num(s, "score")) < 1e-9, "vqa: summary %g, recomputed %g (items agree: %d)", num(s, "score"),
          score, ok);
    for (int i = 0; i < it.n && i < it2.n; i++) {
        const char *d[4], *d2[4];
        int k = strings_of(it.o[i], "demo_ids", d, 4), k2 = strings_of(it2.o[i], "demo_ids", d2, 4);
        same = same && k == 2 && k2 == 2 && !strcmp(d[0], d2[0]) && !strcmp(d[1], d2[1]) &&
               !strcmp(str(it.o[i], "answer"), str(it2.o[i], "answer"));
        CHECK(strcmp(d[0], str(it.o[i], "id")) && strcmp(d[1], str(it.o[i], "id")) && strcmp(d[0], d[1]),
              "item %d: demonstrations %s, %s", i, d[0], d[1]);
    }
    CHECK(same, "a second run chose other demonstrations or answers");
    /* rigged annotations: item i holds its own answer i times among 10 */
    static char rig_text[4][10][256];
    const char *rigged[4][10];
    cJSON *root = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(root, "annotations");
    for (int i = 0; i < it.n && i < 4; i++) {
        cJSON *a = cJSON_CreateObject(), *ans = cJSON_AddArrayToObject(a, "answers");
        cJSON_AddStringToObject(a, "question_id", str(it.o[i], "id"));
        for (int j = 0; j < 10; j++) {
            snprintf(rig_text[i][j], 256, "%s", j < i ? str(it.o[i], "answer") : "zzqx");
            rigged[i][j] = rig_text[i][j];
            cJSON *one = cJSON_CreateObject();
            cJSON_AddStringToObject(one, "answer", rigged[i][j]);
            cJSON_AddItemToArray(ans, one);
        }
        cJSON_AddItemToArray(arr, a);
    }
    fx_path rig = tmp("rigged_annotations.json"), out3 = tmp("vqa3.jsonl");
    fx_write_json(rig.s, root);
    cJSON_Delete(root);
    vqa_common(args, &n);
    args[n++] = rig.s, args[n++] = "--out", args[n++] = out3.s, args[n] = NULL;
    run(&r2, args);
    cJSON *s3 = summary_of(&r2);
    items it3;
    read_items(out3.s, &it3);
    double rigged_score = it3.n == 4 ? recompute_vqa(&it3, rigged, &ok) : NAN;
    CHECK(r2.rc == 0 && ok && fabs(rigged_score - num(s3, "score")) < 1e-9 && rigged_score > 0,
          "rigged vqa: summary %g, recomputed %g (%d: %s)", num(s3, "score"), rigged_score, r2.rc, r2.err);
    /* with i copies of the answer the official formula gives min(1, copies among the other 9 / 3) averaged */
    double want = 0;
    for (int i = 0; i < 4; i++) {
        double acc = 0;
        for (int j = 0; j < 10; j++) acc += fmin(1.0, (i - (j < i)) / 3.0);
        want += acc / 10;
    }
    CHECK(fabs(rigged_score - 100 * want / 4) < 1e-9, "rigged vqa %g, formula %g", rigged_score, 100 * want / 4);
    cJSON_Delete(s), cJSON_Delete(s3);
    free_items(&it), free_items(&it2), free_items(&it3);
}

/* Captions: CIDEr-D recomputed from the JSONL; references rigged with the
 * model's own captions give a positive score, as recomputed. */
static void test_caption(void) {
    fx_path k = fx("flickr30k/dataset_flickr30k.json"), imgs = fx("flickr30k/flickr30k-images"),
            llava = fx_join(models.s, "llava"), out = tmp("cap.jsonl"), out2 = tmp("cap2.jsonl"), rig = tmp("rig_k.json");
    run_out r;
    RUN(&r, "eval", "--model", llava.s, "--task", "caption", "--mode", "icl", "--shots", "2", "--train", k.s, "--test",
        k.s, "--images", imgs.s, "--max-new-tokens", "8", "--out", out.s);
    cJSON *s = summary_of(&r);
    items it;
    read_items(out.s, &it);
    CHECK(r.rc == 0 && it.n == 3, "caption run: %d '%s'", r.rc, r.err);
    for (int pass = 0; pass < 2; pass++) {
        cider_scorer *c = cider_new();
        for (int i = 0; i < it.n; i++) {
            const char *refs[8];
            int n = strings_of(it.o[i], "references", refs, 8);
            cider_add(c, str(it.o[i], "answer"), refs, n);
            char *pp = eval_postprocess(EVAL_TASK_CAPTION, str(it.o[i], "generated"));
            CHECK(!strcmp(pp, str(it.o[i], "answer")), "caption %d: answer '%s' is not the post-processed '%s'", i,
                  str(it.o[i], "answer"), str(it.o[i], "generated"));
            free(pp);
        }
        double want = 100 * cider_compute(c, NULL);
        cider_free(c);
        CHECK(fabs(want - num(s, "score")) < 1e-9 * (1 + want) && (pass == 0 || want > 0),
              "caption pass %d: summary %g, recomputed %g", pass, num(s, "score"), want);
        if (pass) break;
        /* the Karpathy file again, each test image's first sentence now the model's caption */
        char buf[65536];
        cli_slurp(k.s, buf, sizeof buf);
        cJSON *root = cJSON_Parse(buf);
        cJSON *images = cJSON_GetObjectItemCaseSensitive(root, "images");
        for (cJSON *img = images ? images->child : NULL; img; img = img->next)
            for (int i = 0; i < it.n; i++)
                if ((int)num(img, "imgid") == atoi(str(it.o[i], "id"))) {
                    cJSON *sent = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(img, "sentences"), 0);
                    cJSON_ReplaceItemInObject(sent, "raw", cJSON_CreateString(str(it.o[i], "answer")));
                }
        fx_write_json(rig.s, root);
        cJSON_Delete(root);
        RUN(&r, "eval", "--model", llava.s, "--task", "caption", "--mode", "icl", "--shots", "2", "--train", k.s,
            "--test", rig.s, "--images", imgs.s, "--max-new-tokens", "8", "--out", out2.s);
        cJSON_Delete(s), free_items(&it);
        s = summary_of(&r);
        read_items(out2.s, &it);
        CHECK(r.rc == 0 && it.n == 3, "rigged caption run: %d '%s'", r.rc, r.err);
    }
    cJSON_Delete(s), free_items(&it);
}

/* A random linear projector for the fixture model folder MODEL, at LAYER. */
static void write_projector(const char *model, const char *file, int64_t layer) {
    fx_path dir = fx_join(models.s, model);
    mllm *m = mllm_load(dir.s, be, DT_F32);
    int64_t d = mllm_d_model(m);
    projector p;
    projector_config pc = {.type = PROJ_LINEAR, .d_in = d, .d_out = d, .seed = rng_u64()};
    projector_init(&p, be, &pc);
    const decoder *dec = mllm_decoder(m);
    char backbone[512], desc[160], config[64], err[512];
    snprintf(backbone, sizeof backbone, "arch=llava lm=llama d_model=%lld layers=%lld vocab=%lld image_tokens=%lld",
             (long long)d, (long long)dec->cfg.layers, (long long)dec->cfg.vocab, (long long)mllm_tokens_per_image(m));
    snprintf(config, sizeof config, "layer = %lld\n", (long long)layer);
    ckpt_tensor t[CKPT_PROJECTOR_MAX_TENSORS];
    int n = ckpt_projector_tensors(&p, 0, t);
    ckpt_contents c = {.kind = CKPT_KIND_PARAMS, .step = 1, .backbone_text = backbone,
                       .projector_text = projector_describe(&pc, desc, sizeof desc), .config_text = config,
                       .tensors = t, .n_tensors = n};
    if (ckpt_write(file, &c, err, sizeof err)) printf("FAIL: %s\n", err), exit(1);
    ckpt_tensors_free(t, n);
    projector_free(&p);
    mllm_free(m);
}

/* Mann-Whitney by pairs, written out here. */
static double pairwise_auc(const double *s, const int *y, int n) {
    double wins = 0, pairs = 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++)
            if (y[i] == 1 && y[j] == 0) pairs += 1, wins += s[i] > s[j] ? 1 : s[i] == s[j] ? 0.5 : 0;
    return wins / pairs;
}

static void hateful_run(run_out *r, const char *mode, const char *ckpt, const char *bank, const char *out,
                        const char *csv) {
    fx_path tr = fx("hateful_memes/train.jsonl"), te = fx("hateful_memes/dev_seen.jsonl"), imgs = fx("hateful_memes"),
            llava = fx_join(models.s, "llava");
    const char *args[40] = {"eval", "--model", llava.s, "--task", "hateful", "--mode", mode, "--shots", "2",
                            "--train", tr.s, "--test", te.s, "--images", imgs.s, "--seed", "7", "--out", out};
    int n = 19;
    if (ckpt) args[n++] = "--projector", args[n++] = ckpt;
    if (bank) args[n++] = "--bank", args[n++] = bank;
    if (csv) args[n++] = "--csv", args[n++] = csv;
    args[n] = NULL;
    run(r, args);
}

/* Hateful Memes with AIM: ROC-AUC from the written scores, P(yes) from the
 * written log-probabilities; the bank answers the same; icl prompts are
 * longer by k x 16 image tokens per query. */
static void test_hateful(void) {
    fx_path ckpt = tmp("proj.aimc"), o_aim = tmp("h_aim.jsonl"), o_icl = tmp("h_icl.jsonl"), o_bank = tmp("h_bank.jsonl"),
            demos = tmp("demos.jsonl"), bankf = tmp("h.bank"), csv = tmp("runs.csv"), tr = fx("hateful_memes/train.jsonl"),
            imgs = fx("hateful_memes"), llava = fx_join(models.s, "llava");
    write_projector("llava", ckpt.s, 1);
    run_out r, ri, rb;
    hateful_run(&r, "aim", ckpt.s, NULL, o_aim.s, csv.s);
    hateful_run(&ri, "icl", NULL, NULL, o_icl.s, csv.s);
    cJSON *s = summary_of(&r), *si = summary_of(&ri);
    items a, ic;
    read_items(o_aim.s, &a), read_items(o_icl.s, &ic);
    CHECK(r.rc == 0 && ri.rc == 0 && a.n == 4 && ic.n == 4, "hateful runs: %d '%s' / %d '%s'", r.rc, r.err, ri.rc, ri.err);
    double scores[4];
    int labels[4], prob_ok = 1;
    for (int i = 0; i < a.n; i++) {
        scores[i] = num(a.o[i], "score"), labels[i] = (int)num(a.o[i], "label");
        double lp_yes = num(a.o[i], "logprob_yes"), lp_no = num(a.o[i], "logprob_no");
        prob_ok = prob_ok && fabs(scores[i] - 1.0 / (1.0 + exp(lp_no - lp_yes))) < 1e-12 && lp_yes < 0 && lp_no < 0;
    }
    CHECK(prob_ok, "a written score is not P(yes) from the written log-probabilities");
    double auc = a.n == 4 ? pairwise_auc(scores, labels, 4) : NAN;
    CHECK(fabs(100 * auc - num(s, "score")) < 1e-9 && fabs(metric_roc_auc(scores, labels, 4) - auc) < 1e-12,
          "hateful: summary %g, pairwise AUC x 100 = %g", num(s, "score"), 100 * auc);
    CHECK(!strcmp(str(s, "metric"), "roc_auc") && num(s, "layer") == 1 && !strcmp(str(s, "projector_type"), "linear") &&
              num(s, "shots") == 2, "hateful summary fields: %s", r.out);
    int shorter = a.n == ic.n;
    for (int i = 0; i < a.n && i < ic.n; i++)
        shorter = shorter && num(ic.o[i], "prompt_tokens") - num(a.o[i], "prompt_tokens") == 2 * 16;
    CHECK(shorter && num(s, "tokens_per_prompt") < num(si, "tokens_per_prompt"),
          "aim prompts are not shorter than icl's by 2 x 16 tokens: %g vs %g", num(s, "tokens_per_prompt"),
          num(si, "tokens_per_prompt"));
    CHECK(num(s, "peak_mem_bytes") > num(s, "weights_bytes") && num(s, "weights_bytes") > 0 &&
              num(s, "latency_p90_s") >= num(s, "latency_p50_s") && num(s, "latency_mean_s") > 0,
          "memory / latency fields: %s", r.out);
    /* the bank: same answers without aggregating demonstrations */
    RUN(&rb, "eval", "--model", llava.s, "--task", "hateful", "--train", tr.s, "--images", imgs.s, "--export-demos", demos.s);
    CHECK(rb.rc == 0, "--export-demos: %d '%s'", rb.rc, rb.err);
    RUN(&rb, "bank", "build", "--model", llava.s, "--layer", "1", "--demos", demos.s, "--out", bankf.s);
    CHECK(rb.rc == 0, "bank build: %d '%s'", rb.rc, rb.err);
    hateful_run(&rb, "aim", ckpt.s, bankf.s, o_bank.s, NULL);
    items b;
    read_items(o_bank.s, &b);
    int same = rb.rc == 0 && b.n == a.n;
    for (int i = 0; same && i < a.n; i++) same = fabs(num(b.o[i], "score") - num(a.o[i], "score")) < 1e-6;
    CHECK(same, "bank answers differ from aggregation: %d '%s'", rb.rc, rb.err);
    /* the CSV: a header and one row per run */
    char buf[4096];
    cli_slurp(csv.s, buf, sizeof buf);
    int lines = 0, commas = 0;
    for (char *p = buf; *p; p++) lines += *p == '\n', commas += *p == ',';
    CHECK(lines == 3 && commas == 3 * 17 && !strncmp(buf, "label,task,backbone,mode,shots", 30), "csv:\n%s", buf);
    cJSON_Delete(s), cJSON_Delete(si);
    free_items(&a), free_items(&ic), free_items(&b);
}

/* One VQA run on the wide LLaVA fixture (64 image tokens per image): the
 * summary line, parsed, or NULL after a failed CHECK. */
static cJSON *wide_vqa_run(const char *mode, int shots, const char *ckpt) {
    fx_path tq = fx("okvqa/OpenEnded_mscoco_train2014_questions.json"), ta = fx("okvqa/mscoco_train2014_annotations.json"),
            vq = fx("okvqa/OpenEnded_mscoco_val2014_questions.json"), va = fx("okvqa/mscoco_val2014_annotations.json"),
            ti = fx("coco/train2014"), vi = fx("coco/val2014"), wide = fx_join(models.s, "llava_wide");
    char k[16];
    snprintf(k, sizeof k, "%d", shots);
    const char *args[40] = {"eval", "--model", wide.s, "--task", "vqa", "--mode", mode, "--shots", k,
                            "--train", tq.s, ta.s, "--train-images", ti.s, "--images", vi.s, "--test", vq.s, va.s,
                            "--limit", "2", "--beams", "1", "--max-new-tokens", "2", "--seed", "3"};
    int n = 0;
    while (args[n]) n++;
    if (!strcmp(mode, "aim")) args[n++] = "--projector", args[n++] = ckpt;
    args[n] = NULL;
    run_out r;
    run(&r, args);
    cJSON *s = summary_of(&r);
    CHECK(r.rc == 0 && s, "wide vqa %s %d-shot: %d '%s'", mode, shots, r.rc, r.err);
    if (s) printf("  llava_wide %-3s %d-shot: %6.1f tokens/prompt, peak %.0f bytes\n", mode, shots,
                  num(s, "tokens_per_prompt"), num(s, "peak_mem_bytes"));
    return s;
}

/* Issue 8: AIM's prompt and memory stay nearly flat as the shots grow while
 * ICL's grow. Each extra ICL shot adds a demonstration's 64 image tokens and
 * its text; each extra AIM shot adds only the fused tokens of its text (the
 * same demonstrations in both modes: same seed and query ids).
 * Memory bound: the growth with the shots is the KV cache and the LM pass
 * over the longer prompt, roughly proportional to the added tokens, so AIM's
 * share is about text / (64 + text) per shot; measured (2026-11-22, CPU) 0 -> 4
 * shots: aim +101100 bytes, icl +416492 bytes, a ratio of 0.24 (text ~22
 * tokens per demonstration, 22 / 86 = 0.26). 0.35 leaves ~45% margin yet
 * fails if demonstrations' image tokens reached AIM's prompt or memory (a
 * ratio near 1). The numbers are deterministic (fixed seed, fixed fixtures). */
static void test_aim_vs_icl_cost(void) {
    static const int shots[3] = {0, 2, 4};
    fx_path ckpt = tmp("wide.aimc");
    write_projector("llava_wide", ckpt.s, -1);
    double tok[2][3], mem[2][3];
    const char *modes[2] = {"aim", "icl"};
    for (int m = 0; m < 2; m++)
        for (int i = 0; i < 3; i++) {
            cJSON *s = wide_vqa_run(modes[m], shots[i], ckpt.s);
            tok[m][i] = s ? num(s, "tokens_per_prompt") : NAN, mem[m][i] = s ? num(s, "peak_mem_bytes") : NAN;
            cJSON_Delete(s);
        }
    double text_per_shot = (tok[0][2] - tok[0][0]) / 4, icl_per_shot = (tok[1][2] - tok[1][0]) / 4;
    CHECK(tok[0][0] == tok[1][0] && fabs(icl_per_shot - text_per_shot - 64) < 1e-9 && text_per_shot > 0,
          "tokens per prompt aim %g %g %g, icl %g %g %g: icl should add 64 + aim's per-shot text tokens",
          tok[0][0], tok[0][1], tok[0][2], tok[1][0], tok[1][1], tok[1][2]);
    double aim_growth = mem[0][2] - mem[0][0], icl_growth = mem[1][2] - mem[1][0];
    CHECK(icl_growth > 0 && aim_growth < 0.35 * icl_growth,
          "peak memory growth 0 -> 4 shots: aim %g bytes, icl %g bytes", aim_growth, icl_growth);
}

/* Zero-shot Hateful Memes with a template whose answers take several
 * tokens: the written log-probabilities are the per-token means of a full
 * forward over prompt + answer computed here. */
static void test_hateful_multitoken(void) {
    fx_path te = fx("hateful_memes/dev_seen.jsonl"), imgs = fx("hateful_memes"), dir = fx_join(models.s, "llava"),
            conf = tmp("long.conf"), out = tmp("h_long.jsonl");
    write_text(conf.s, "hateful = \"meme: '{prompt}'. Hateful?\"\n"
                       "hateful_demo = \"meme: '{prompt}'. Hateful? {answer} indeed, friends\"\n");
    run_out r;
    RUN(&r, "eval", "--model", dir.s, "--task", "hateful", "--mode", "zero-shot", "--test", te.s, "--images", imgs.s,
        "--templates", conf.s, "--limit", "2", "--out", out.s);
    items it;
    read_items(out.s, &it);
    CHECK(r.rc == 0 && it.n == 2, "multi-token hateful: %d '%s'", r.rc, r.err);
    mllm *m = mllm_load(dir.s, be, DT_F32);
    char err[1024];
    tokenizer *tok = tokenizer_load(dir.s, err, sizeof err);
    preprocess_config pp;
    if (!tok || preprocess_config_load(&pp, dir.s, err, sizeof err)) printf("FAIL: %s\n", err), exit(1);
    infer_templates ts;
    infer_templates_default(&ts);
    infer_templates_load(&ts, conf.s, err, sizeof err);
    const infer_template *t = infer_template_find(&ts, "hateful");
    arena a;
    arena_init(&a, be, (size_t)64 << 20);
    for (int i = 0; i < it.n; i++) {
        eval_item q = {.id = (char *)str(it.o[i], "id"), .text = (char *)str(it.o[i], "text"), .label = 0};
        char *qt = eval_query_text(EVAL_TASK_HATEFUL, t, &q);
        episode_item item;
        if (infer_item_load(&item, str(it.o[i], "image"), qt, tok, &pp, "q", err, sizeof err))
            printf("FAIL: %s\n", err), exit(1);
        infer_model im = {.m = m, .layer = -1};
        tensor prompt = infer_build_prompt(&im, &a, INFER_ZERO_SHOT, NULL, 0, &item);
        static const char *const keys[2] = {"logprob_yes", "logprob_no"};
        for (int c = 0; c < 2; c++) {
            tok_ids ans = {0};
            eval_answer_tokens(tok, t, &q, c ? "no" : "yes", &ans, err, sizeof err);
            double want = full_forward_logprob(mllm_decoder(m), &a, &prompt, ans.ids, ans.n) / (double)ans.n;
            CHECK(ans.n >= 3 && fabs(want - num(it.o[i], keys[c])) < 1e-4 * (1 + fabs(want)),
                  "item %d %s: written %.8f, full forward mean over %lld tokens %.8f", i, keys[c], num(it.o[i], keys[c]),
                  (long long)ans.n, want);
            tok_ids_free(&ans);
        }
        arena_reset(&a);
        episode_item_free(&item);
        free(qt);
    }
    arena_free(&a);
    infer_templates_free(&ts);
    tokenizer_free(tok);
    mllm_free(m);
    free_items(&it);
}

/* Zero-shot, --limit, and CLIP retrieval on the VizWiz single-file format. */
static void test_vizwiz_clip(void) {
    fx_path tr = fx("vizwiz/train.json"), te = fx("vizwiz/val.json"), ti = fx("vizwiz/train"), vi = fx("vizwiz/val"),
            llava = fx_join(models.s, "llava"), clip = fx_join(models.s, "clip"), out = tmp("viz.jsonl");
    run_out r;
    RUN(&r, "eval", "--model", llava.s, "--task", "vqa", "--mode", "zero-shot", "--test", te.s, "--images", vi.s, "--limit",
        "2", "--out", out.s);
    cJSON *s = summary_of(&r);
    items it;
    read_items(out.s, &it);
    const char *d[4];
    CHECK(r.rc == 0 && num(s, "n") == 2 && it.n == 2 && num(s, "shots") == 0 && strings_of(it.o[0], "demo_ids", d, 4) == 0,
          "zero-shot --limit 2: %d '%s' '%s'", r.rc, r.err, r.out);
    cJSON_Delete(s), free_items(&it);
    RUN(&r, "eval", "--model", llava.s, "--task", "vqa", "--mode", "icl", "--shots", "3", "--train", tr.s,
        "--train-images", ti.s, "--test", te.s, "--images", vi.s, "--retrieval", "clip", "--clip-model", clip.s, "--out",
        out.s);
    s = summary_of(&r);
    read_items(out.s, &it);
    CHECK(r.rc == 0 && it.n == 3 && !strcmp(str(s, "retrieval"), "clip"), "clip retrieval: %d '%s'", r.rc, r.err);
    /* the same selection through the library */
    eval_set train, test;
    char err[1024];
    const char *tf[1] = {tr.s}, *vf[1] = {te.s};
    if (read_set(&train, EVAL_TASK_VQA, tf, 1, ti.s, NULL, NULL, err) ||
        read_set(&test, EVAL_TASK_VQA, vf, 1, vi.s, NULL, NULL, err))
        printf("FAIL: %s\n", err), exit(1);
    int64_t dim = 0, dim2 = 0, pick[3];
    float *te_emb = eval_clip_embed(clip.s, be, &train, &dim, err, sizeof err),
          *q_emb = eval_clip_embed(clip.s, be, &test, &dim2, err, sizeof err);
    int same = te_emb && q_emb && dim == dim2;
    for (int i = 0; same && i < it.n; i++) {
        same = !eval_select_nearest(&train, te_emb, q_emb + i * dim, dim, test.items[i].id, 3, pick, err, sizeof err) &&
               strings_of(it.o[i], "demo_ids", d, 4) == 3;
        for (int j = 0; same && j < 3; j++) same = !strcmp(d[j], train.items[pick[j]].id);
    }
    CHECK(same, "CLI retrieval differs from eval_select_nearest on eval_clip_embed");
    free(te_emb), free(q_emb);
    eval_set_free(&train), eval_set_free(&test);
    cJSON_Delete(s), free_items(&it);
}

int main(void) {
    tests_begin("test_eval");
    be = backend_cpu();
    cli_find_aimc(aimc, sizeof aimc);
    fx_root = fx_repo_dir("tests/fixtures/eval");
    models = fx_repo_dir("tests/fixtures/models");
    if (!mkdtemp(tmpdir)) printf("FAIL: mkdtemp\n"), exit(1);

    test_read_okvqa();
    test_read_others();
    test_read_errors();
    test_image_names();
    test_select_random();
    test_select_nearest();
    test_texts();
    test_stats();
    test_answer_logprobs();
    test_usage();
    test_vqa();
    test_caption();
    test_hateful();
    test_hateful_multitoken();
    test_aim_vs_icl_cost();
    test_vizwiz_clip();

    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd)) printf("note: could not remove %s\n", tmpdir);
    return tests_done();
}
