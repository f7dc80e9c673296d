/* Metrics of aimc eval (host/metrics.h) against
 * - tests/fixtures/metrics (scripts/make_metric_fixtures.py): the official
 *   VQA evaluation transcribed in Python, pycocoevalcap's Cider fed by its
 *   own Java PTBTokenizer, and sklearn's roc_auc_score;
 * - cases worked out here from the definitions, and naive float64
 *   references (leave-one-out loops, all-pairs AUC) on fresh random inputs.
 * Tolerances: VQA accuracy 1e-9 absolute; CIDEr-D and AUC 1e-6 relative;
 * strings (normalisation, tokenization) exactly. */
#include "../host/metrics.h"
#include "testlib.h"
#include <cjson/cJSON.h>

static const char *fixture_dir(void) {
    static const char *roots[] = {"tests/fixtures/metrics", "../tests/fixtures/metrics",
                                  "../../tests/fixtures/metrics"};
    for (int i = 0; i < 3; i++)
        if (access(roots[i], R_OK) == 0) return roots[i];
    return roots[0];
}

static cJSON *load_fixture(const char *name) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", fixture_dir(), name);
    FILE *f = fopen(path, "rb");
    if (!f) {
        CHECK(0, "cannot open %s (run from the repository root)", path);
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = tl_alloc((size_t)len + 1);
    size_t got = fread(buf, 1, (size_t)len, f);
    buf[got] = 0;
    fclose(f);
    cJSON *j = cJSON_Parse(buf);
    free(buf);
    CHECK(j != NULL, "%s is not valid JSON", path);
    return j;
}

static int close_rel(double got, double want, double tol) {
    return fabs(got - want) <= tol * fabs(want) + 1e-12;
}

/* An array of JSON strings as a malloc'd char* array (pointers into j). */
static const char **strings_of(const cJSON *arr, int *n) {
    *n = cJSON_GetArraySize(arr);
    const char **v = tl_alloc((size_t)(*n ? *n : 1) * sizeof *v);
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, arr) v[i++] = e->valuestring;
    return v;
}

/* ================================================================ VQA */

static void check_string_pairs(const cJSON *pairs, char *(*fn)(const char *), const char *what) {
    int bad = 0, n = 0;
    const cJSON *p;
    cJSON_ArrayForEach(p, pairs) {
        const char *in = cJSON_GetArrayItem(p, 0)->valuestring, *want = cJSON_GetArrayItem(p, 1)->valuestring;
        char *got = fn(in);
        if (strcmp(got, want) && bad++ < 8) printf("  %s(\"%s\") = \"%s\", want \"%s\"\n", what, in, got, want);
        free(got);
        n++;
    }
    CHECK(bad == 0 && n > 300, "%s: %d of %d strings differ from the official code", what, bad, n);
}

static void vqa_fixture(void) {
    cJSON *j = load_fixture("vqa.json");
    if (!j) return;
    check_string_pairs(cJSON_GetObjectItem(j, "punct"), metric_vqa_process_punctuation, "processPunctuation");
    check_string_pairs(cJSON_GetObjectItem(j, "digit_article"), metric_vqa_process_digit_article,
                       "processDigitArticle");
    check_string_pairs(cJSON_GetObjectItem(j, "normalize"), metric_vqa_normalize, "normalize");
    const cJSON *c;
    int n_cases = 0;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(j, "accuracy")) {
        int n;
        const char **gts = strings_of(cJSON_GetObjectItem(c, "gts"), &n);
        const char *pred = cJSON_GetObjectItem(c, "pred")->valuestring;
        static const char *keys[] = {"acc", "acc_gt_vision_lab", "acc_vizwiz"};
        for (int v = 0; v < 3; v++) {
            double want = cJSON_GetObjectItem(c, keys[v])->valuedouble;
            double got = v ? metric_vqa_accuracy_variant(pred, gts, n, (vqa_variant)v)
                           : metric_vqa_accuracy(pred, gts, n); /* the default is variant 0 */
            CHECK(fabs(got - want) <= 1e-9, "vqa %s(\"%s\", %d answers starting \"%s\") = %.12f, want %.12f", keys[v],
                  pred, n, gts[0], got, want);
        }
        free(gts);
        n_cases++;
    }
    CHECK(n_cases > 100, "vqa.json has only %d accuracy cases", n_cases);
    cJSON_Delete(j);
}

/* m of 10 answers equal the prediction: those m score min(1,(m-1)/3) and the
 * other 10-m score min(1,m/3). */
static double worked_accuracy(int m) {
    return (m * fmin(1.0, (m - 1) / 3.0) + (10 - m) * fmin(1.0, m / 3.0)) / 10.0;
}

static void vqa_worked_cases(void) {
    static const double table[] = {0, 0.3, 0.6, 0.9, 1, 1, 1, 1, 1, 1, 1}; /* worked out by hand */
    for (int m = 0; m <= 10; m++) {
        const char *gts[10];
        for (int i = 0; i < 10; i++) gts[i] = i < m ? "2" : (i % 2 ? "dog" : "cat");
        double got = metric_vqa_accuracy("two", gts, 10); /* "two" normalises to "2" */
        if (m == 10) {
            CHECK(got == 0.0, "unanimous \"2\" vs \"two\" compares raw strings: got %g, want 0", got);
            CHECK(metric_vqa_accuracy("2", gts, 10) == 1.0, "unanimous exact match must score 1");
            continue;
        }
        CHECK(fabs(got - table[m]) <= 1e-12 && fabs(worked_accuracy(m) - table[m]) <= 1e-12,
              "%d matching answers: got %.15f, want %.15f", m, got, table[m]);
    }
    const char *gts[10] = {"A dog.", "dog", "the dog", "Dog!", "a cat", "cat", "dogs", "dog,", "an dog", "x"};
    /* normalised: dog dog dog dog cat cat dogs dog dog x: 6 x "dog" */
    CHECK(fabs(metric_vqa_accuracy("  The  DOG.\n", gts, 10) - 1.0) <= 1e-12, "6 of 10 \"dog\" after normalisation");
    const char *yes[10] = {"yes", "yes", "yes", "yes", "yes", "yes", "yes", "yes", "yes", "yes"};
    CHECK(metric_vqa_accuracy("Yes", yes, 10) == 0.0 && metric_vqa_accuracy(" yes\t", yes, 10) == 1.0,
          "unanimous answers: only whitespace is cleaned");
    /* The other forms always normalise the prediction. */
    CHECK(metric_vqa_accuracy_variant("Yes", yes, 10, VQA_GT_VISION_LAB) == 1.0 &&
              metric_vqa_accuracy_variant("Yes!", yes, 10, VQA_VIZWIZ) == 1.0,
          "GT-Vision-Lab / VizWiz forms: \"Yes\" matches ten \"yes\"");
    const char *mixed[4] = {"two dogs", "two dogs", "two dogs", "2 cats"};
    /* OpenFlamingo normalises both sides ("2 dogs" x3); GT-Vision-Lab only
     * punctuation-processes the answers, so "2 dogs" never matches; VizWiz
     * compares them raw. */
    CHECK(metric_vqa_accuracy("Two dogs", mixed, 4) == 0.75 &&
              metric_vqa_accuracy_variant("Two dogs", mixed, 4, VQA_GT_VISION_LAB) == 0.0 &&
              metric_vqa_accuracy_variant("Two dogs", mixed, 4, VQA_VIZWIZ) == 0.0,
          "number words on both sides: %g %g %g", metric_vqa_accuracy("Two dogs", mixed, 4),
          metric_vqa_accuracy_variant("Two dogs", mixed, 4, VQA_GT_VISION_LAB),
          metric_vqa_accuracy_variant("Two dogs", mixed, 4, VQA_VIZWIZ));
}

/* Already-normalised words, so accuracy is the plain leave-one-out formula. */
static void vqa_random_vs_naive(void) {
    static const char *words[] = {"yes", "no", "2", "red", "blue", "dog"};
    for (int t = 0; t < 300; t++) {
        int n = 1 + (int)rng_int(12);
        const char *gts[12];
        for (int i = 0; i < n; i++) gts[i] = words[rng_int(6)];
        const char *pred = words[rng_int(6)];
        double want = 0;
        for (int i = 0; i < n; i++) {
            int others = 0;
            for (int j = 0; j < n; j++) others += j != i && !strcmp(gts[j], pred);
            want += others >= 3 ? 1.0 : others / 3.0;
        }
        want /= n;
        double got = metric_vqa_accuracy(pred, gts, n);
        CHECK(fabs(got - want) <= 1e-12, "random vqa case %d (n=%d, pred %s): %.15f vs naive %.15f", t, n, pred, got,
              want);
    }
}

static void vqa_no_answers(void) {
    metric_vqa_accuracy("yes", NULL, 0);
}

/* ============================================================ CIDEr-D */

/* Adds items {candidate, refs} from a JSON list; raw or pre-tokenized. */
static void add_items(cider_scorer *s, const cJSON *items, int tokenized) {
    const cJSON *it;
    cJSON_ArrayForEach(it, items) {
        int n;
        const char **refs = strings_of(cJSON_GetObjectItem(it, "refs"), &n);
        const char *cand = cJSON_GetObjectItem(it, "candidate")->valuestring;
        (tokenized ? cider_add_tokenized : cider_add)(s, cand, refs, n);
        free(refs);
    }
}

static void check_cider(cider_scorer *s, const cJSON *want_scores, double want_mean, const char *what) {
    int64_t n = cider_count(s);
    CHECK(n == cJSON_GetArraySize(want_scores), "%s: %lld items", what, (long long)n);
    double *got = tl_alloc((size_t)n * sizeof *got);
    for (int64_t i = 0; i < n; i++) got[i] = NAN;
    double mean = cider_compute(s, got);
    int bad = 0;
    for (int64_t i = 0; i < n; i++) {
        double want = cJSON_GetArrayItem(want_scores, (int)i)->valuedouble;
        if (!close_rel(got[i], want, 1e-6) && bad++ < 6) printf("  %s item %lld: %.12f, want %.12f\n", what,
                                                                 (long long)i, got[i], want);
    }
    CHECK(bad == 0, "%s: %d of %lld items differ from pycocoevalcap", what, bad, (long long)n);
    CHECK(close_rel(mean, want_mean, 1e-6), "%s: mean %.12f, want %.12f", what, mean, want_mean);
    free(got);
}

/* 1 (and a line for the first few) when aimc's tokens differ from PTB's. */
static int tokenization_differs(const char *in, const char *want) {
    static int shown;
    char *got = metric_caption_tokenize(in);
    int differs = strcmp(got, want) != 0;
    if (differs && shown++ < 8) printf("  tokenize(\"%s\") = \"%s\", PTB \"%s\"\n", in, got, want);
    free(got);
    return differs;
}

/* Every raw caption of the corpus tokenizes exactly as PTB + pycocoevalcap. */
static void tokenizer_on_corpus(const cJSON *raw, const cJSON *ptb) {
    int bad = 0, n = 0;
    for (int i = 0; i < cJSON_GetArraySize(raw); i++) {
        const cJSON *r = cJSON_GetArrayItem(raw, i), *p = cJSON_GetArrayItem(ptb, i);
        bad += tokenization_differs(cJSON_GetObjectItem(r, "candidate")->valuestring,
                                    cJSON_GetObjectItem(p, "candidate")->valuestring);
        const cJSON *rr = cJSON_GetObjectItem(r, "refs"), *pr = cJSON_GetObjectItem(p, "refs");
        for (int k = 0; k < cJSON_GetArraySize(rr); k++)
            bad += tokenization_differs(cJSON_GetArrayItem(rr, k)->valuestring, cJSON_GetArrayItem(pr, k)->valuestring);
        n += 1 + cJSON_GetArraySize(rr);
    }
    CHECK(bad == 0 && n >= 200, "caption corpus: %d of %d captions tokenize differently from PTB", bad, n);
}

static void cider_fixture(void) {
    cJSON *j = load_fixture("cider.json");
    if (!j) return;
    const cJSON *tok_cases = cJSON_GetObjectItem(j, "tokenizer");
    int bad = 0, n = 0;
    const cJSON *p;
    cJSON_ArrayForEach(p, tok_cases) {
        bad += tokenization_differs(cJSON_GetArrayItem(p, 0)->valuestring, cJSON_GetArrayItem(p, 1)->valuestring);
        n++;
    }
    CHECK(bad == 0 && n > 500, "tokenizer: %d of %d strings differ from PTB", bad, n);
    const cJSON *raw = cJSON_GetObjectItem(j, "raw"), *ptb = cJSON_GetObjectItem(j, "ptb");
    tokenizer_on_corpus(raw, ptb);
    const cJSON *exp = cJSON_GetObjectItem(j, "expected");
    const cJSON *want_scores = cJSON_GetObjectItem(exp, "scores");
    double want_mean = cJSON_GetObjectItem(exp, "mean")->valuedouble;

    cider_scorer *s = cider_new();
    add_items(s, ptb, 1);
    check_cider(s, want_scores, want_mean, "cider on PTB tokens");
    cider_free(s);
    s = cider_new();
    add_items(s, raw, 0);
    check_cider(s, want_scores, want_mean, "cider on raw captions (aimc tokenizer)");
    cider_free(s);

    const cJSON *tk = cJSON_GetObjectItem(j, "tokens");
    s = cider_new();
    add_items(s, cJSON_GetObjectItem(tk, "items"), 1);
    check_cider(s, cJSON_GetObjectItem(tk, "scores"), cJSON_GetObjectItem(tk, "mean")->valuedouble,
                "cider on synthetic tokens");
    cider_free(s);
    cJSON_Delete(j);
}

/* Closed forms: one item has idf 0 everywhere (log 1 - log 1), so scores 0;
 * with two items of disjoint words every reference n-gram has df 1 and
 * idf log 2, and a candidate equal to its only reference (>= 4 words) has
 * cosine 1 for every n and no length penalty: 10. */
static void cider_worked_cases(void) {
    const char *r1[] = {"a man rides a red bike"}, *r2[] = {"two dogs play in snow"};
    cider_scorer *s = cider_new();
    cider_add(s, "A man rides a red bike.", r1, 1);
    double one;
    double mean = cider_compute(s, &one);
    CHECK(one == 0.0 && mean == 0.0, "a single item scores 0 (got %g)", one);
    cider_add(s, "Two dogs play in snow!", r2, 1);
    double two[2] = {NAN, NAN};
    mean = cider_compute(s, two);
    CHECK(fabs(two[0] - 10) < 1e-9 && fabs(two[1] - 10) < 1e-9 && fabs(mean - 10) < 1e-9,
          "identical caption, disjoint corpus: %g %g (want 10)", two[0], two[1]);

    /* Clipping: the candidate repeats "red" 3x, the reference has it once.
     * Unigram weights w = count * log 2 (df 1) or log 2 * 1 (df 0, "blue").
     * Candidate {red:3, bike:1}, reference {red:1, bike:1}: clipped dot =
     * min(3,1)*1 + 1*1 = 2 (times log2^2); norms sqrt(10) and sqrt(2) (times
     * log 2): cos1 = 2/sqrt(20). Higher n: candidate bigrams {red red:2,
     * red bike:1} vs {red bike:1}: dot 1, norms sqrt(5), 1: cos2 = 1/sqrt(5);
     * trigrams {red red red, red red bike} vs none: 0. Bigram counts 3 vs 1:
     * penalty exp(-4/72). Score = 10 * (cos1 + cos2) / 4 * penalty. */
    cider_scorer *c = cider_new();
    const char *rr[] = {"red bike"}, *ro[] = {"zebra"};
    cider_add_tokenized(c, "red red red bike", rr, 1);
    cider_add_tokenized(c, "zebra", ro, 1);
    double sc[2];
    cider_compute(c, sc);
    double want = 10.0 * (2 / sqrt(20.0) + 1 / sqrt(5.0)) / 4 * exp(-4.0 / 72.0);
    CHECK(close_rel(sc[0], want, 1e-12), "clipping case: %.15f, want %.15f", sc[0], want);
    cider_free(c);

    const char *empty_ref[] = {"x y"};
    cider_add(s, "", empty_ref, 1);
    double three[3];
    cider_compute(s, three);
    CHECK(three[2] == 0.0, "empty candidate scores 0 (got %g)", three[2]);
    CHECK(cider_count(s) == 3, "cider_count %lld", (long long)cider_count(s));
    cider_free(s);
    cider_scorer *e = cider_new();
    CHECK(isnan(cider_compute(e, NULL)), "no items: NaN");
    cider_free(e);
}

/* Per-item scores do not depend on the order items were added in. */
static void cider_order_invariance(void) {
    cJSON *j = load_fixture("cider.json");
    if (!j) return;
    const cJSON *items = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "tokens"), "items");
    int n = cJSON_GetArraySize(items);
    int *perm = tl_alloc((size_t)n * sizeof *perm);
    for (int i = 0; i < n; i++) perm[i] = i;
    for (int i = n - 1; i > 0; i--) {
        int k = (int)rng_int(i + 1), t = perm[i];
        perm[i] = perm[k], perm[k] = t;
    }
    cider_scorer *a = cider_new(), *b = cider_new();
    add_items(a, items, 1);
    for (int i = 0; i < n; i++) {
        const cJSON *it = cJSON_GetArrayItem(items, perm[i]);
        int nr;
        const char **refs = strings_of(cJSON_GetObjectItem(it, "refs"), &nr);
        cider_add_tokenized(b, cJSON_GetObjectItem(it, "candidate")->valuestring, refs, nr);
        free(refs);
    }
    double *sa = tl_alloc((size_t)n * sizeof *sa), *sb = tl_alloc((size_t)n * sizeof *sb);
    cider_compute(a, sa);
    cider_compute(b, sb);
    int bad = 0;
    for (int i = 0; i < n; i++) bad += !close_rel(sb[i], sa[perm[i]], 1e-12);
    CHECK(bad == 0, "shuffled items: %d scores changed", bad);
    free(sa), free(sb), free(perm);
    cider_free(a), cider_free(b);
    cJSON_Delete(j);
}

static void cider_no_refs(void) {
    cider_scorer *s = cider_new();
    cider_add(s, "a dog", NULL, 0);
}

/* ============================================================ ROC-AUC */

static void auc_fixture(void) {
    cJSON *j = load_fixture("auc.json");
    if (!j) return;
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(j, "cases")) {
        const cJSON *sc = cJSON_GetObjectItem(c, "scores"), *lb = cJSON_GetObjectItem(c, "labels");
        int n = cJSON_GetArraySize(sc);
        double *scores = tl_alloc((size_t)n * sizeof *scores);
        int *labels = tl_alloc((size_t)n * sizeof *labels);
        for (int i = 0; i < n; i++) {
            scores[i] = cJSON_GetArrayItem(sc, i)->valuedouble;
            labels[i] = cJSON_GetArrayItem(lb, i)->valueint;
        }
        double got = metric_roc_auc(scores, labels, n);
        const char *name = cJSON_GetObjectItem(c, "name")->valuestring;
        if (cJSON_IsTrue(cJSON_GetObjectItem(c, "undefined")))
            CHECK(isnan(got), "auc %s: sklearn refuses (one class), want NaN, got %g", name, got);
        else
            CHECK(close_rel(got, cJSON_GetObjectItem(c, "auc")->valuedouble, 1e-6), "auc %s: %.12f, want %.12f", name,
                  got, cJSON_GetObjectItem(c, "auc")->valuedouble);
        free(scores), free(labels);
    }
    cJSON_Delete(j);
}

/* All pairs: P(pos > neg) + P(tie) / 2, in float64. */
static double naive_auc(const double *s, const int *y, int n) {
    double wins = 0, pairs = 0;
    for (int i = 0; i < n; i++)
        for (int k = 0; k < n; k++)
            if (y[i] == 1 && y[k] == 0) {
                pairs++;
                wins += s[i] > s[k] ? 1.0 : s[i] == s[k] ? 0.5 : 0.0;
            }
    return wins / pairs;
}

static void auc_random_vs_naive(void) {
    static const int sizes[] = {2, 3, 7, 64, 257, 1000};
    for (int t = 0; t < 6; t++) {
        int n = sizes[t];
        double *s = tl_alloc((size_t)n * sizeof *s);
        int *y = tl_alloc((size_t)n * sizeof *y);
        for (int i = 0; i < n; i++) {
            s[i] = floor(rng_normal() * 4) / 4; /* coarse: many ties */
            y[i] = rng_uniform(0, 1) < 0.4;
        }
        y[0] = 1, y[n - 1] = 0;
        double got = metric_roc_auc(s, y, n), want = naive_auc(s, y, n);
        CHECK(close_rel(got, want, 1e-12), "auc n=%d: %.15f vs all-pairs %.15f", n, got, want);
        s[n / 2] = NAN;
        CHECK(isnan(metric_roc_auc(s, y, n)), "auc with a NaN score must be NaN");
        free(s), free(y);
    }
    CHECK(isnan(metric_roc_auc(NULL, NULL, 0)), "auc of nothing is NaN");
}

static void auc_bad_label(void) {
    double s[3] = {0.1, 0.2, 0.3};
    int y[3] = {0, 2, 1};
    metric_roc_auc(s, y, 3);
}

/* ====================================================== robustness */

/* Strict UTF-8 check, written here independently of aimc's. */
static int valid_utf8(const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        int len = *p < 0x80 ? 1 : (*p >> 5) == 6 ? 2 : (*p >> 4) == 14 ? 3 : (*p >> 3) == 30 ? 4 : 0;
        if (!len) return 0;
        uint32_t cp = len == 1 ? *p : *p & (0x7F >> len);
        for (int k = 1; k < len; k++) {
            if ((p[k] & 0xC0) != 0x80) return 0;
            cp = cp << 6 | (p[k] & 0x3F);
        }
        static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < min_cp[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
        p += len;
    }
    return 1;
}

/* Random bytes (invalid UTF-8 included) and random punctuation soup: no
 * crash, valid UTF-8 out, accuracy in [0, 1], finite CIDEr. */
static void fuzz_robustness(void) {
    static const char soup[] = " .,;:!?'\"`()[]{}-_/\\<>@#$%&*+=~|0123456789aAzZ\t\n";
    int bad = 0;
    cider_scorer *c = cider_new();
    for (int t = 0; t < 400; t++) {
        char buf[64];
        int n = (int)rng_int(63);
        for (int i = 0; i < n; i++)
            buf[i] = t % 2 ? (char)(1 + rng_int(255)) : soup[rng_int((int64_t)sizeof soup - 1)];
        buf[n] = 0;
        char *tok = metric_caption_tokenize(buf), *norm = metric_vqa_normalize(buf);
        const char *gts[3] = {buf, "yes", tok};
        double acc = metric_vqa_accuracy(buf, gts, 3);
        bad += !valid_utf8(tok) || !valid_utf8(norm) || !(acc >= 0 && acc <= 1);
        const char *refs[2] = {buf, norm};
        cider_add(c, tok, refs, 2);
        free(tok);
        free(norm);
    }
    double *sc = tl_alloc(400 * sizeof *sc);
    double mean = cider_compute(c, sc);
    for (int i = 0; i < 400; i++) bad += !isfinite(sc[i]) || sc[i] < 0;
    CHECK(bad == 0 && isfinite(mean), "fuzz: %d bad outputs", bad);
    free(sc);
    cider_free(c);
}

int main(void) {
    tests_begin("test_metrics");
    vqa_fixture();
    vqa_worked_cases();
    vqa_random_vs_naive();
    EXPECT_DIES(vqa_no_answers, 1, "at least one answer");
    cider_fixture();
    cider_worked_cases();
    cider_order_invariance();
    EXPECT_DIES(cider_no_refs, 1, "at least one reference");
    auc_fixture();
    auc_random_vs_naive();
    EXPECT_DIES(auc_bad_label, 1, "not 0 or 1");
    fuzz_robustness();
    return tests_done();
}
