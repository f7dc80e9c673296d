/* VQA accuracy with the official answer normalisation, and ROC-AUC.
 * Definitions and the reference they match: metrics.h. */
#include "metrics.h"
#include "../data/tok_internal.h"
#include "../kernels/check.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ======================================================== text helpers */

/* Unicode decimal digits (category Nd, Python's \d) come in runs of ten from
 * these zeros (Unicode 14, as Python 3.11's unicodedata). */
static const uint32_t nd_zeros[] = {
    0x30,    0x660,   0x6F0,   0x7C0,   0x966,   0x9E6,   0xA66,   0xAE6,   0xB66,   0xBE6,   0xC66,
    0xCE6,   0xD66,   0xDE6,   0xE50,   0xED0,   0xF20,   0x1040,  0x1090,  0x17E0,  0x1810,  0x1946,
    0x19D0,  0x1A80,  0x1A90,  0x1B50,  0x1BB0,  0x1C40,  0x1C50,  0xA620,  0xA8D0,  0xA900,  0xA9D0,
    0xA9F0,  0xAA50,  0xABF0,  0xFF10,  0x104A0, 0x10D30, 0x11066, 0x110F0, 0x11136, 0x111D0, 0x112F0,
    0x11450, 0x114D0, 0x11650, 0x116C0, 0x11730, 0x118E0, 0x11950, 0x11C50, 0x11D50, 0x11DA0, 0x16A60,
    0x16AC0, 0x16B50, 0x1D7CE, 0x1D7D8, 0x1D7E2, 0x1D7EC, 0x1D7F6, 0x1E140, 0x1E2F0, 0x1E950, 0x1FBF0,
};

static int is_decimal_digit(uint32_t cp) {
    int lo = 0, hi = (int)(sizeof nd_zeros / sizeof nd_zeros[0]) - 1, best = -1;
    while (lo <= hi) { /* the last zero <= cp */
        int mid = (lo + hi) / 2;
        if (nd_zeros[mid] <= cp) best = mid, lo = mid + 1;
        else hi = mid - 1;
    }
    return best >= 0 && cp - nd_zeros[best] < 10;
}

/* The code point that ends just before byte i (valid UTF-8). */
static uint32_t cp_before(const char *s, size_t i) {
    size_t k = i - 1;
    while (k > 0 && ((unsigned char)s[k] & 0xC0) == 0x80) k--;
    size_t j = k;
    return utf8_next(s, i, &j);
}

static uint32_t cp_at(const char *s, size_t n, size_t i) {
    return utf8_next(s, n, &i);
}

/* The string built in t, "" when nothing was put (a reserve alone leaves
 * the buffer unterminated). */
static char *take(tstr *t) {
    if (!t->p) return strdup("");
    t->p[t->n] = 0;
    return t->p;
}

static tstr sanitized(const char *text) {
    tstr t = {0};
    utf8_sanitize(text, strlen(text), &t);
    tstr_reserve(&t, 0);
    t.p[t.n] = 0;
    return t;
}

/* Python's s.replace('\n', ' ').replace('\t', ' ').strip() (str.isspace). */
static char *clean_whitespace(const char *text) {
    tstr t = sanitized(text);
    for (size_t i = 0; i < t.n; i++)
        if (t.p[i] == '\n' || t.p[i] == '\t') t.p[i] = ' ';
    size_t a = 0, b = t.n;
    while (a < b) {
        size_t j = a;
        if (!uni_is_python_space(utf8_next(t.p, b, &j))) break;
        a = j;
    }
    while (b > a) {
        size_t k = b - 1;
        while (k > a && ((unsigned char)t.p[k] & 0xC0) == 0x80) k--;
        size_t j = k;
        if (!uni_is_python_space(utf8_next(t.p, b, &j))) break;
        b = k;
    }
    memmove(t.p, t.p + a, b - a);
    t.p[b - a] = 0;
    return t.p;
}

/* ================================================== processPunctuation */

static const char vqa_punct[] = ";/[]\"{}()=+\\_-><@`,?!";

static int is_vqa_punct(char c) {
    return c && strchr(vqa_punct, c) != NULL;
}

static int has_digit_comma_digit(const char *s, size_t n) {
    for (size_t i = 1; i + 1 < n; i++)
        if (s[i] == ',' && is_decimal_digit(cp_before(s, i)) && is_decimal_digit(cp_at(s, n, i + 1))) return 1;
    return 0;
}

/* 1 when "p " or " p" occurs in s. */
static int next_to_space(const char *s, size_t n, char p) {
    for (size_t i = 0; i + 1 < n; i++)
        if ((s[i] == p && s[i + 1] == ' ') || (s[i] == ' ' && s[i + 1] == p)) return 1;
    return 0;
}

/* Deletes each '.' not followed by a digit, the first `limit` of them. */
static void strip_periods(const char *s, size_t n, int limit, tstr *out) {
    int stripped = 0;
    for (size_t i = 0; i < n; i++) {
        int followed_by_digit = i + 1 < n && is_decimal_digit(cp_at(s, n, i + 1));
        if (s[i] == '.' && stripped < limit && !followed_by_digit) {
            stripped++;
            continue;
        }
        tstr_putc(out, s[i]);
    }
}

static char *process_punctuation(const char *s, size_t n) {
    int comma_digit = has_digit_comma_digit(s, n);
    int delete_it[128] = {0}; /* per punctuation character: delete, or turn into a space */
    for (const char *p = vqa_punct; *p; p++) delete_it[(int)*p] = comma_digit || next_to_space(s, n, *p);
    tstr spaced = {0}, out = {0};
    tstr_reserve(&spaced, n);
    for (size_t i = 0; i < n; i++) {
        if (!is_vqa_punct(s[i])) tstr_putc(&spaced, s[i]);
        else if (!delete_it[(int)s[i]]) tstr_putc(&spaced, ' ');
    }
    tstr_reserve(&out, spaced.n);
    strip_periods(spaced.p, spaced.n, 32, &out); /* re.sub(..., count=re.UNICODE == 32) */
    tstr_free(&spaced);
    return take(&out);
}

char *metric_vqa_process_punctuation(const char *text) {
    tstr t = sanitized(text);
    char *out = process_punctuation(t.p, t.n);
    tstr_free(&t);
    return out;
}

/* ================================================= processDigitArticle */

typedef struct {
    const char *from, *to;
} word_map;

static const word_map number_words[] = {
    {"none", "0"}, {"zero", "0"}, {"one", "1"}, {"two", "2"},   {"three", "3"}, {"four", "4"},
    {"five", "5"}, {"six", "6"},  {"seven", "7"}, {"eight", "8"}, {"nine", "9"}, {"ten", "10"},
};

/* The official contractions table, verbatim (keys with capitals, such as
 * "Im", can never match lowercased text; "somebody'd" maps to "somebodyd"). */
static const word_map contractions[] = {
    {"aint", "ain't"}, {"arent", "aren't"}, {"cant", "can't"}, {"couldve", "could've"},
    {"couldnt", "couldn't"}, {"couldn'tve", "couldn't've"}, {"couldnt've", "couldn't've"},
    {"didnt", "didn't"}, {"doesnt", "doesn't"}, {"dont", "don't"}, {"hadnt", "hadn't"},
    {"hadnt've", "hadn't've"}, {"hadn'tve", "hadn't've"}, {"hasnt", "hasn't"}, {"havent", "haven't"},
    {"hed", "he'd"}, {"hed've", "he'd've"}, {"he'dve", "he'd've"}, {"hes", "he's"}, {"howd", "how'd"},
    {"howll", "how'll"}, {"hows", "how's"}, {"Id've", "I'd've"}, {"I'dve", "I'd've"}, {"Im", "I'm"},
    {"Ive", "I've"}, {"isnt", "isn't"}, {"itd", "it'd"}, {"itd've", "it'd've"}, {"it'dve", "it'd've"},
    {"itll", "it'll"}, {"let's", "let's"}, {"maam", "ma'am"}, {"mightnt", "mightn't"},
    {"mightnt've", "mightn't've"}, {"mightn'tve", "mightn't've"}, {"mightve", "might've"},
    {"mustnt", "mustn't"}, {"mustve", "must've"}, {"neednt", "needn't"}, {"notve", "not've"},
    {"oclock", "o'clock"}, {"oughtnt", "oughtn't"}, {"ow's'at", "'ow's'at"}, {"'ows'at", "'ow's'at"},
    {"'ow'sat", "'ow's'at"}, {"shant", "shan't"}, {"shed've", "she'd've"}, {"she'dve", "she'd've"},
    {"she's", "she's"}, {"shouldve", "should've"}, {"shouldnt", "shouldn't"},
    {"shouldnt've", "shouldn't've"}, {"shouldn'tve", "shouldn't've"}, {"somebody'd", "somebodyd"},
    {"somebodyd've", "somebody'd've"}, {"somebody'dve", "somebody'd've"}, {"somebodyll", "somebody'll"},
    {"somebodys", "somebody's"}, {"someoned", "someone'd"}, {"someoned've", "someone'd've"},
    {"someone'dve", "someone'd've"}, {"someonell", "someone'll"}, {"someones", "someone's"},
    {"somethingd", "something'd"}, {"somethingd've", "something'd've"},
    {"something'dve", "something'd've"}, {"somethingll", "something'll"}, {"thats", "that's"},
    {"thered", "there'd"}, {"thered've", "there'd've"}, {"there'dve", "there'd've"},
    {"therere", "there're"}, {"theres", "there's"}, {"theyd", "they'd"}, {"theyd've", "they'd've"},
    {"they'dve", "they'd've"}, {"theyll", "they'll"}, {"theyre", "they're"}, {"theyve", "they've"},
    {"twas", "'twas"}, {"wasnt", "wasn't"}, {"wed've", "we'd've"}, {"we'dve", "we'd've"},
    {"weve", "we've"}, {"werent", "weren't"}, {"whatll", "what'll"}, {"whatre", "what're"},
    {"whats", "what's"}, {"whatve", "what've"}, {"whens", "when's"}, {"whered", "where'd"},
    {"wheres", "where's"}, {"whereve", "where've"}, {"whod", "who'd"}, {"whod've", "who'd've"},
    {"who'dve", "who'd've"}, {"wholl", "who'll"}, {"whos", "who's"}, {"whove", "who've"},
    {"whyll", "why'll"}, {"whyre", "why're"}, {"whys", "why's"}, {"wont", "won't"},
    {"wouldve", "would've"}, {"wouldnt", "wouldn't"}, {"wouldnt've", "wouldn't've"},
    {"wouldn'tve", "wouldn't've"}, {"yall", "y'all"}, {"yall'll", "y'all'll"}, {"y'allll", "y'all'll"},
    {"yall'd've", "y'all'd've"}, {"y'alld've", "y'all'd've"}, {"y'all'dve", "y'all'd've"},
    {"youd", "you'd"}, {"youd've", "you'd've"}, {"you'dve", "you'd've"}, {"youll", "you'll"},
    {"youre", "you're"}, {"youve", "you've"},
};

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

/* The mapped word, or NULL when w[0..n) is not a key. */
static const char *lookup(const word_map *map, size_t count, const char *w, size_t n) {
    for (size_t i = 0; i < count; i++)
        if (strlen(map[i].from) == n && !memcmp(map[i].from, w, n)) return map[i].to;
    return NULL;
}

static int is_article(const char *w, size_t n) {
    return (n == 1 && w[0] == 'a') || (n == 2 && !memcmp(w, "an", 2)) || (n == 3 && !memcmp(w, "the", 3));
}

/* One word through the manual map, the article filter and the contractions. */
static void put_word(tstr *out, const char *w, size_t n) {
    const char *num = lookup(number_words, N_OF(number_words), w, n);
    if (num) w = num, n = strlen(num);
    if (is_article(w, n)) return;
    const char *c = lookup(contractions, N_OF(contractions), w, n);
    if (c) w = c, n = strlen(c);
    if (out->n) tstr_putc(out, ' ');
    tstr_put(out, w, n);
}

static char *process_digit_article(const char *s, size_t n) {
    tstr low = {0}, out = {0};
    uni_lowercase(s, n, &low);
    size_t i = 0, start = 0;
    int in_word = 0;
    while (i < low.n) { /* str.split(): runs of non-whitespace */
        size_t at = i;
        int space = uni_is_python_space(utf8_next(low.p, low.n, &i));
        if (!space && !in_word) start = at, in_word = 1;
        if (space && in_word) put_word(&out, low.p + start, at - start), in_word = 0;
    }
    if (in_word) put_word(&out, low.p + start, low.n - start);
    tstr_free(&low);
    return take(&out);
}

char *metric_vqa_process_digit_article(const char *text) {
    tstr t = sanitized(text);
    char *out = process_digit_article(t.p, t.n);
    tstr_free(&t);
    return out;
}

char *metric_vqa_normalize(const char *text) {
    char *p = metric_vqa_process_punctuation(text);
    char *out = metric_vqa_process_digit_article(p);
    free(p);
    return out;
}

/* ============================================================ accuracy */

static void normalize_in_place(char **s) {
    char *t = metric_vqa_normalize(*s);
    free(*s);
    *s = t;
}

static int all_equal(char *const *v, int n) {
    for (int i = 1; i < n; i++)
        if (strcmp(v[i], v[0])) return 0;
    return 1;
}

/* The strings each evaluation script compares: answers into gts[n], the
 * prediction into *res (all malloc'd). */
static void prepare_vqa(const char *pred, const char *const *gt_answers, int n, vqa_variant variant, char **gts,
                        char **res) {
    int cleaned = variant == VQA_OPENFLAMINGO;
    for (int i = 0; i < n; i++) {
        if (cleaned) {
            gts[i] = clean_whitespace(gt_answers[i]);
        } else {
            tstr t = sanitized(gt_answers[i]);
            gts[i] = t.p;
        }
    }
    *res = clean_whitespace(pred);
    int disagree = !all_equal(gts, n);
    if (variant == VQA_OPENFLAMINGO && disagree) { /* normalised only when annotators disagree */
        for (int i = 0; i < n; i++) normalize_in_place(&gts[i]);
        normalize_in_place(res);
    } else if (variant == VQA_GT_VISION_LAB || variant == VQA_VIZWIZ) {
        normalize_in_place(res);
        for (int i = 0; i < n && variant == VQA_GT_VISION_LAB && disagree; i++) {
            char *t = metric_vqa_process_punctuation(gts[i]);
            free(gts[i]);
            gts[i] = t;
        }
    }
}

double metric_vqa_accuracy_variant(const char *pred, const char *const *gt_answers, int n, vqa_variant variant) {
    AIMC_CHECK(n >= 1 && gt_answers, "metric_vqa_accuracy: a question needs at least one answer (got %d)", n);
    AIMC_CHECK(variant >= VQA_OPENFLAMINGO && variant <= VQA_VIZWIZ, "metric_vqa_accuracy: variant %d", (int)variant);
    char **gts = malloc((size_t)n * sizeof *gts), *res;
    AIMC_CHECK(gts, "metric_vqa_accuracy: out of memory");
    prepare_vqa(pred, gt_answers, n, variant, gts, &res);
    int matches = 0;
    for (int i = 0; i < n; i++) matches += strcmp(gts[i], res) == 0;
    double sum = 0;
    for (int i = 0; i < n; i++) { /* leave answer i out */
        int others = matches - (strcmp(gts[i], res) == 0);
        sum += fmin(1.0, (double)others / 3.0);
        free(gts[i]);
    }
    free(gts);
    free(res);
    return sum / n;
}

double metric_vqa_accuracy(const char *pred, const char *const *gt_answers, int n) {
    return metric_vqa_accuracy_variant(pred, gt_answers, n, VQA_OPENFLAMINGO);
}

/* ============================================================= ROC-AUC */

typedef struct {
    double score;
    int label;
} scored;

static int by_score(const void *a, const void *b) {
    double x = ((const scored *)a)->score, y = ((const scored *)b)->score;
    return (x > y) - (x < y);
}

/* Sum over positives of (#negatives scored lower + #negatives tied / 2),
 * over items sorted by score. */
static double mann_whitney_u(const scored *v, int64_t n) {
    double u = 0, neg_below = 0;
    for (int64_t i = 0; i < n;) {
        int64_t j = i;
        double pos = 0, neg = 0;
        for (; j < n && v[j].score == v[i].score; j++) v[j].label ? pos++ : neg++;
        u += pos * neg_below + 0.5 * pos * neg;
        neg_below += neg;
        i = j;
    }
    return u;
}

double metric_roc_auc(const double *scores, const int *labels, int64_t n) {
    int64_t pos = 0;
    for (int64_t i = 0; i < n; i++) {
        AIMC_CHECK(labels[i] == 0 || labels[i] == 1, "metric_roc_auc: label %lld is %d, not 0 or 1",
                   (long long)i, labels[i]);
        if (isnan(scores[i])) return NAN;
        pos += labels[i];
    }
    if (pos == 0 || pos == n) return NAN;
    scored *v = malloc((size_t)n * sizeof *v);
    AIMC_CHECK(v, "metric_roc_auc: out of memory");
    for (int64_t i = 0; i < n; i++) v[i] = (scored){scores[i], labels[i]};
    qsort(v, (size_t)n, sizeof *v, by_score);
    double u = mann_whitney_u(v, n);
    free(v);
    return u / ((double)pos * (double)(n - pos));
}
