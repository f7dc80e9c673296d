/* Benchmark readers (eval_data.h). */
#include "eval_data.h"
#include "../kernels/check.h"
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int eval_task_parse(const char *s) {
    if (!strcmp(s, "vqa")) return EVAL_TASK_VQA;
    if (!strcmp(s, "caption")) return EVAL_TASK_CAPTION;
    if (!strcmp(s, "hateful")) return EVAL_TASK_HATEFUL;
    return -1;
}

const char *eval_task_name(eval_task t) {
    return t == EVAL_TASK_VQA ? "vqa" : t == EVAL_TASK_CAPTION ? "caption" : "hateful";
}

/* ---- files ---------------------------------------------------------------------- */

/* Line and column of byte `at` in text, for JSON syntax errors. */
static void line_col(const char *text, size_t at, int64_t *line, int64_t *col) {
    *line = 1, *col = 1;
    for (size_t i = 0; i < at && text[i]; i++) {
        if (text[i] == '\n') (*line)++, *col = 1;
        else (*col)++;
    }
}

static cJSON *parse_json(const char *path, const char *text, char *err, size_t errlen) {
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithOpts(text, &end, 1);
    if (!j) {
        int64_t line, col;
        line_col(text, end ? (size_t)(end - text) : 0, &line, &col);
        aimc_fail_path(err, errlen, path, "not valid JSON (line %lld, column %lld)", (long long)line, (long long)col);
    }
    return j;
}

static cJSON *load_json(const char *path, char *err, size_t errlen) {
    char *text = aimc_read_file(path, AIMC_MAX_DATASET_BYTES, NULL, err, errlen);
    if (!text) return NULL;
    cJSON *j = parse_json(path, text, err, errlen);
    free(text);
    return j;
}

/* "dir/rel" (rel as is when absolute or dir is empty). */
static char *join_path(const char *dir, const char *rel) {
    if (!dir || !*dir || rel[0] == '/') return aimc_strdup(rel);
    size_t n = strlen(dir) + strlen(rel) + 2;
    char *p = aimc_xmalloc(n);
    snprintf(p, n, "%s%s%s", dir, dir[strlen(dir) - 1] == '/' ? "" : "/", rel);
    return p;
}

/* ---- fields ---------------------------------------------------------------------- */

/* Where an item is, for messages: "FILE: questions[3]" or "FILE:12". */
typedef struct where {
    const char *file, *array;
    int64_t index; /* array index, or jsonl line number when array is NULL */
} where;

static int bad_field(char *err, size_t errlen, const where *w, const char *field, const char *problem) {
    if (w->array)
        return aimc_set_err(err, errlen, "%s: %s[%lld]: \"%s\" %s", w->file, w->array, (long long)w->index, field,
                            problem);
    return aimc_set_err(err, errlen, "%s:%lld: \"%s\" %s", w->file, (long long)w->index, field, problem);
}

static const cJSON *field(const cJSON *o, const char *name) { return cJSON_GetObjectItemCaseSensitive(o, name); }

/* A string field, borrowed. */
static int get_string(const cJSON *o, const char *name, const where *w, const char **out, char *err, size_t errlen) {
    const cJSON *v = field(o, name);
    if (!cJSON_IsString(v)) return bad_field(err, errlen, w, name, "is missing or not a string");
    *out = v->valuestring;
    return 0;
}

/* An id: a non-empty string, or an integer written in decimal. */
static int get_id(const cJSON *o, const char *name, const where *w, char **out, int *is_number, char *err,
                  size_t errlen) {
    const cJSON *v = field(o, name);
    if (cJSON_IsString(v) && v->valuestring[0]) {
        *out = aimc_strdup(v->valuestring);
        if (is_number) *is_number = 0;
        return 0;
    }
    if (cJSON_IsNumber(v)) {
        double d = v->valuedouble;
        if (d != floor(d) || fabs(d) > 9007199254740992.0) return bad_field(err, errlen, w, name, "is not an integer");
        char buf[32];
        snprintf(buf, sizeof buf, "%lld", (long long)d);
        *out = aimc_strdup(buf);
        if (is_number) *is_number = 1;
        return 0;
    }
    return bad_field(err, errlen, w, name, "is missing or not a string or integer");
}

/* The "answer" strings of an answers array (at least one). */
static int get_answers(const cJSON *o, const where *w, eval_item *it, char *err, size_t errlen) {
    const cJSON *arr = field(o, "answers");
    int n = cJSON_IsArray(arr) ? cJSON_GetArraySize(arr) : -1;
    if (n < 0) return bad_field(err, errlen, w, "answers", "is missing or not an array");
    if (n == 0) return bad_field(err, errlen, w, "answers", "is empty (scoring needs at least one answer)");
    it->answers = aimc_xcalloc((size_t)n, sizeof *it->answers);
    int i = 0;
    for (const cJSON *a = arr->child; a; a = a->next, i++) {
        const cJSON *s = cJSON_IsObject(a) ? field(a, "answer") : NULL;
        if (!cJSON_IsString(s)) {
            char name[64];
            snprintf(name, sizeof name, "answers[%d].answer", i);
            return bad_field(err, errlen, w, name, "is missing or not a string");
        }
        it->answers[it->n_answers++] = aimc_strdup(s->valuestring);
    }
    return 0;
}

/* ---- sets ---------------------------------------------------------------------------- */

static void item_free(eval_item *it) {
    free(it->id), free(it->image), free(it->text);
    for (int i = 0; i < it->n_answers; i++) free(it->answers[i]);
    free(it->answers);
    memset(it, 0, sizeof *it);
}

void eval_set_free(eval_set *set) {
    for (int64_t i = 0; i < set->n; i++) item_free(&set->items[i]);
    free(set->items);
    set->items = NULL, set->n = 0;
}

void eval_set_truncate(eval_set *set, int64_t n) {
    while (set->n > n && set->n > 0) item_free(&set->items[--set->n]);
}

/* A new zeroed item at the end of set (capacity kept in *cap). */
static eval_item *push_item(eval_set *set, int64_t *cap) {
    set->items = aimc_grow(set->items, cap, set->n + 1, sizeof *set->items, 64);
    eval_item *it = &set->items[set->n++];
    memset(it, 0, sizeof *it);
    it->label = -1;
    return it;
}

/* Drops the last item (after an error while filling it). */
static int pop_item(eval_set *set) {
    item_free(&set->items[--set->n]);
    return -1;
}

typedef struct id_ref {
    const char *id;
    int64_t index;
} id_ref;

static int cmp_id_ref(const void *a, const void *b) {
    const id_ref *x = a, *y = b;
    int c = strcmp(x->id, y->id);
    return c ? c : (x->index > y->index) - (x->index < y->index);
}

int eval_check_ids(const eval_set *set, const char *what, char *err, size_t errlen) {
    id_ref *refs = aimc_xcalloc((size_t)set->n, sizeof *refs);
    for (int64_t i = 0; i < set->n; i++) refs[i] = (id_ref){set->items[i].id, i};
    qsort(refs, (size_t)set->n, sizeof *refs, cmp_id_ref);
    int rc = 0;
    for (int64_t i = 1; i < set->n && !rc; i++)
        if (!strcmp(refs[i].id, refs[i - 1].id))
            rc = aimc_set_err(err, errlen, "%s: id '%s' appears twice (items %lld and %lld); ids must be unique", what,
                              refs[i].id, (long long)refs[i - 1].index, (long long)refs[i].index);
    free(refs);
    return rc;
}

/* ---- image patterns ------------------------------------------------------------------ */

/* The one conversion of a pattern: its position, width, zero flag, kind. */
typedef struct conversion {
    size_t at, len;
    int width, zero;
    char kind; /* 'd' or 's' */
} conversion;

static int find_conversion(const char *pat, conversion *c, char *err, size_t errlen) {
    int found = 0;
    for (size_t i = 0; pat[i]; i++) {
        if (pat[i] != '%') continue;
        if (pat[i + 1] == '%') {
            i++;
            continue;
        }
        conversion x = {.at = i};
        size_t j = i + 1;
        if (pat[j] == '0') x.zero = 1, j++;
        while (pat[j] >= '0' && pat[j] <= '9' && x.width < 1000) x.width = x.width * 10 + (pat[j++] - '0');
        if (pat[j] != 'd' && pat[j] != 's')
            return aimc_set_err(err, errlen, "image pattern '%s': only %%d, %%Nd, %%0Nd, %%s and %%%% are allowed", pat);
        x.kind = pat[j];
        x.len = j + 1 - i;
        if (found++) return aimc_set_err(err, errlen, "image pattern '%s' has more than one conversion", pat);
        *c = x;
        i = j;
    }
    if (!found) return aimc_set_err(err, errlen, "image pattern '%s' has no %%d or %%s for the image id", pat);
    return 0;
}

/* pat[from, to) with %% collapsed, appended to out. */
static size_t copy_literal(char *out, const char *pat, size_t from, size_t to) {
    size_t n = 0;
    for (size_t i = from; i < to; i++) {
        out[n++] = pat[i];
        if (pat[i] == '%' && pat[i + 1] == '%') i++;
    }
    return n;
}

char *eval_image_name(const char *pattern, const char *id_text, int id_is_number, char *err, size_t errlen) {
    const char *pat = pattern ? pattern : "%s";
    conversion c = {0};
    if (!id_is_number && !strstr(pat, "%s")) return aimc_strdup(id_text); /* a file name already */
    if (find_conversion(pat, &c, err, errlen)) return NULL;
    if (c.kind == 'd' && !id_is_number) {
        aimc_set_err(err, errlen, "image id '%s' is not a number, but image pattern '%s' expects one", id_text, pat);
        return NULL;
    }
    size_t idlen = strlen(id_text), pad = (size_t)c.width > idlen ? (size_t)c.width - idlen : 0;
    char *out = aimc_xmalloc(strlen(pat) + idlen + pad + 1);
    size_t n = copy_literal(out, pat, 0, c.at);
    int negative = id_text[0] == '-';
    if (negative && c.zero) out[n++] = '-'; /* printf puts the sign before the zeros */
    for (size_t i = 0; i < pad; i++) out[n++] = c.zero ? '0' : ' ';
    const char *digits = negative && c.zero ? id_text + 1 : id_text;
    memcpy(out + n, digits, strlen(digits));
    n += strlen(digits);
    n += copy_literal(out + n, pat, c.at + c.len, strlen(pat));
    out[n] = 0;
    return out;
}

/* ---- VQA pair ------------------------------------------------------------------------- */

typedef struct ann_ref {
    char *qid;
    const cJSON *obj;
    int64_t index;
} ann_ref;

static int cmp_ann(const void *a, const void *b) { return strcmp(((const ann_ref *)a)->qid, ((const ann_ref *)b)->qid); }

static void free_anns(ann_ref *refs, int64_t n) {
    for (int64_t i = 0; i < n; i++) free(refs[i].qid);
    free(refs);
}

/* The annotations sorted by question id. */
static ann_ref *index_annotations(const cJSON *arr, const char *file, int64_t *n_out, char *err, size_t errlen) {
    int64_t n = cJSON_GetArraySize(arr), i = 0;
    ann_ref *refs = aimc_xcalloc((size_t)n, sizeof *refs);
    for (const cJSON *a = arr->child; a; a = a->next, i++) {
        where w = {file, "annotations", i};
        if (!cJSON_IsObject(a)) {
            aimc_set_err(err, errlen, "%s: annotations[%lld] is not an object", file, (long long)i);
            free_anns(refs, i);
            return NULL;
        }
        refs[i] = (ann_ref){NULL, a, i};
        if (get_id(a, "question_id", &w, &refs[i].qid, NULL, err, errlen)) {
            free_anns(refs, i);
            return NULL;
        }
    }
    qsort(refs, (size_t)n, sizeof *refs, cmp_ann);
    *n_out = n;
    return refs;
}

static const cJSON *top_array(const cJSON *root, const char *key, const char *file, char *err, size_t errlen) {
    const cJSON *arr = cJSON_IsObject(root) ? field(root, key) : NULL;
    if (!cJSON_IsArray(arr)) aimc_fail_path(err, errlen, file, "no \"%s\" array at the top level", key);
    return cJSON_IsArray(arr) ? arr : NULL;
}

typedef struct vqa_ctx {
    const char *qfile, *afile;
    const ann_ref *anns;
    int64_t n_anns;
    const eval_read_opts *o;
} vqa_ctx;

static int vqa_question(eval_set *set, int64_t *cap, const vqa_ctx *x, const cJSON *q, int64_t i, char *err,
                        size_t errlen) {
    where w = {x->qfile, "questions", i};
    if (!cJSON_IsObject(q)) return aimc_set_err(err, errlen, "%s: questions[%lld] is not an object", x->qfile, (long long)i);
    eval_item *it = push_item(set, cap);
    const char *question = NULL;
    char *image_id = NULL;
    int numeric = 0;
    if (get_id(q, "question_id", &w, &it->id, NULL, err, errlen) || get_string(q, "question", &w, &question, err, errlen) ||
        get_id(q, "image_id", &w, &image_id, &numeric, err, errlen))
        return free(image_id), pop_item(set);
    it->text = aimc_strdup(question);
    char why[512];
    char *name = eval_image_name(x->o->image_pattern, image_id, numeric, why, sizeof why);
    free(image_id);
    if (!name) return aimc_set_err(err, errlen, "%s: questions[%lld]: %s", x->qfile, (long long)i, why), pop_item(set);
    it->image = join_path(x->o->images_dir, name);
    free(name);
    ann_ref key = {.qid = it->id};
    const ann_ref *a = bsearch(&key, x->anns, (size_t)x->n_anns, sizeof key, cmp_ann);
    if (!a)
        return aimc_set_err(err, errlen, "%s: questions[%lld]: question_id %s has no annotation in %s", x->qfile,
                            (long long)i, it->id, x->afile), pop_item(set);
    where aw = {x->afile, "annotations", a->index};
    if (get_answers(a->obj, &aw, it, err, errlen)) return pop_item(set);
    return 0;
}

/* Tells the questions file from the annotations file by their top-level key. */
static int is_questions(const cJSON *root) { return cJSON_IsObject(root) && cJSON_IsArray(field(root, "questions")); }

int eval_read_vqa_pair(eval_set *set, const char *questions, const char *annotations, const eval_read_opts *o,
                       char *err, size_t errlen) {
    cJSON *qj = load_json(questions, err, errlen), *aj = qj ? load_json(annotations, err, errlen) : NULL;
    int rc = -1;
    if (qj && aj && !is_questions(qj) && is_questions(aj)) { /* given the other way round */
        cJSON *t = qj;
        qj = aj, aj = t;
        const char *f = questions;
        questions = annotations, annotations = f;
    }
    const cJSON *qarr = aj ? top_array(qj, "questions", questions, err, errlen) : NULL;
    const cJSON *aarr = qarr ? top_array(aj, "annotations", annotations, err, errlen) : NULL;
    int64_t n_anns = 0, cap = set->n;
    ann_ref *anns = aarr ? index_annotations(aarr, annotations, &n_anns, err, errlen) : NULL;
    if (anns) {
        vqa_ctx x = {questions, annotations, anns, n_anns, o};
        int64_t i = 0;
        rc = 0;
        for (const cJSON *q = qarr->child; q && !rc; q = q->next, i++) rc = vqa_question(set, &cap, &x, q, i, err, errlen);
        free_anns(anns, n_anns);
    }
    cJSON_Delete(qj), cJSON_Delete(aj);
    return rc;
}

/* ---- VizWiz single file ------------------------------------------------------------------ */

static int vizwiz_item(eval_set *set, int64_t *cap, const char *file, const cJSON *q, int64_t i, const eval_read_opts *o,
                       char *err, size_t errlen) {
    where w = {file, "", i};
    if (!cJSON_IsObject(q)) return aimc_set_err(err, errlen, "%s: [%lld] is not an object", file, (long long)i);
    eval_item *it = push_item(set, cap);
    const char *image = NULL, *question = NULL;
    if (get_string(q, "image", &w, &image, err, errlen) || get_string(q, "question", &w, &question, err, errlen) ||
        get_answers(q, &w, it, err, errlen))
        return pop_item(set);
    if (!image[0]) return bad_field(err, errlen, &w, "image", "is empty"), pop_item(set);
    it->id = aimc_strdup(image);
    it->text = aimc_strdup(question);
    it->image = join_path(o->images_dir, image);
    return 0;
}

int eval_read_vizwiz(eval_set *set, const char *file, const eval_read_opts *o, char *err, size_t errlen) {
    cJSON *j = load_json(file, err, errlen);
    if (!j) return -1;
    int rc = 0;
    if (!cJSON_IsArray(j)) {
        rc = aimc_fail_path(err, errlen, file, "not a VizWiz annotation file (a JSON array of {\"image\", \"question\", "
                                               "\"answers\"}); VQA-format files come as a questions + annotations pair");
    }
    int64_t i = 0, cap = set->n;
    for (const cJSON *q = rc ? NULL : j->child; q && !rc; q = q->next, i++)
        rc = vizwiz_item(set, &cap, file, q, i, o, err, errlen);
    cJSON_Delete(j);
    return rc;
}

/* ---- Karpathy split -------------------------------------------------------------------------- */

/* Whether split is one of the comma-separated names in list. */
static int split_wanted(const char *list, const char *split) {
    size_t n = strlen(split);
    for (const char *s = list; *s;) {
        size_t len = strcspn(s, ",");
        if (len == n && !strncmp(s, split, n)) return 1;
        s += len + (s[len] == ',');
    }
    return 0;
}

static int karpathy_sentences(const cJSON *img, const where *w, eval_item *it, char *err, size_t errlen) {
    const cJSON *arr = field(img, "sentences");
    int n = cJSON_IsArray(arr) ? cJSON_GetArraySize(arr) : -1;
    if (n < 0) return bad_field(err, errlen, w, "sentences", "is missing or not an array");
    if (n == 0) return bad_field(err, errlen, w, "sentences", "is empty (scoring needs a reference caption)");
    it->answers = aimc_xcalloc((size_t)n, sizeof *it->answers);
    int i = 0;
    for (const cJSON *s = arr->child; s; s = s->next, i++) {
        const cJSON *raw = cJSON_IsObject(s) ? field(s, "raw") : NULL;
        if (!cJSON_IsString(raw)) {
            char name[64];
            snprintf(name, sizeof name, "sentences[%d].raw", i);
            return bad_field(err, errlen, w, name, "is missing or not a string");
        }
        it->answers[it->n_answers++] = aimc_strdup(raw->valuestring);
    }
    return 0;
}

static int karpathy_id(const cJSON *img, const where *w, eval_item *it, char *err, size_t errlen) {
    if (field(img, "imgid")) return get_id(img, "imgid", w, &it->id, NULL, err, errlen);
    if (field(img, "cocoid")) return get_id(img, "cocoid", w, &it->id, NULL, err, errlen);
    return get_id(img, "filename", w, &it->id, NULL, err, errlen);
}

static int karpathy_image(eval_set *set, int64_t *cap, const char *file, const cJSON *img, int64_t i,
                          const eval_read_opts *o, char *err, size_t errlen) {
    where w = {file, "images", i};
    if (!cJSON_IsObject(img)) return aimc_set_err(err, errlen, "%s: images[%lld] is not an object", file, (long long)i);
    const char *split = NULL, *filename = NULL, *filepath = NULL;
    if (get_string(img, "split", &w, &split, err, errlen)) return -1;
    if (!split_wanted(o->splits ? o->splits : "test", split)) return 0;
    eval_item *it = push_item(set, cap);
    if (get_string(img, "filename", &w, &filename, err, errlen) || karpathy_id(img, &w, it, err, errlen) ||
        karpathy_sentences(img, &w, it, err, errlen))
        return pop_item(set);
    if (field(img, "filepath") && get_string(img, "filepath", &w, &filepath, err, errlen)) return pop_item(set);
    char *rel = filepath && *filepath ? join_path(filepath, filename) : aimc_strdup(filename);
    it->image = join_path(o->images_dir, rel);
    free(rel);
    return 0;
}

int eval_read_karpathy(eval_set *set, const char *file, const eval_read_opts *o, char *err, size_t errlen) {
    cJSON *j = load_json(file, err, errlen);
    if (!j) return -1;
    const cJSON *arr = top_array(j, "images", file, err, errlen);
    int rc = arr ? 0 : -1;
    int64_t i = 0, cap = set->n, before = set->n;
    for (const cJSON *img = arr ? arr->child : NULL; img && !rc; img = img->next, i++)
        rc = karpathy_image(set, &cap, file, img, i, o, err, errlen);
    if (!rc && set->n == before)
        rc = aimc_fail_path(err, errlen, file, "no image in split '%s' (the \"split\" values are train, val, test, restval)",
                            o->splits ? o->splits : "test");
    cJSON_Delete(j);
    return rc;
}

/* ---- Hateful Memes jsonl ------------------------------------------------------------------------ */

static int hateful_line(eval_set *set, int64_t *cap, const char *file, const char *line, int64_t lineno,
                        const eval_read_opts *o, char *err, size_t errlen) {
    cJSON *j = cJSON_Parse(line);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return aimc_set_err(err, errlen, "%s:%lld: not a JSON object", file, (long long)lineno);
    }
    where w = {file, NULL, lineno};
    eval_item *it = push_item(set, cap);
    const char *img = NULL, *text = NULL;
    const cJSON *label = field(j, "label");
    int rc = get_id(j, "id", &w, &it->id, NULL, err, errlen) || get_string(j, "img", &w, &img, err, errlen) ||
             get_string(j, "text", &w, &text, err, errlen);
    if (!rc && !(cJSON_IsNumber(label) && (label->valuedouble == 0 || label->valuedouble == 1)))
        rc = bad_field(err, errlen, &w, "label", label ? "is not 0 or 1" : "is missing (scoring needs labels)");
    if (!rc) {
        it->label = (int)label->valuedouble;
        it->text = aimc_strdup(text);
        it->image = join_path(o->images_dir, img);
    }
    cJSON_Delete(j);
    return rc ? pop_item(set) : 0;
}

int eval_read_hateful(eval_set *set, const char *file, const eval_read_opts *o, char *err, size_t errlen) {
    char *text = aimc_read_file(file, AIMC_MAX_DATASET_BYTES, NULL, err, errlen);
    if (!text) return -1;
    int rc = 0;
    int64_t lineno = 0, cap = set->n, before = set->n;
    for (char *s = text, *next; *s && !rc; s = next) {
        size_t len = strcspn(s, "\n");
        next = s + len + (s[len] == '\n');
        s[len] = 0;
        lineno++;
        if (strspn(s, " \t\r") == len) continue; /* blank line */
        rc = hateful_line(set, &cap, file, s, lineno, o, err, errlen);
    }
    if (!rc && set->n == before) rc = aimc_fail_path(err, errlen, file, "no memes in the file");
    free(text);
    return rc;
}

/* ---- dispatch ------------------------------------------------------------------------------------ */

static int read_vqa_files(eval_set *set, const char *const *files, int n, const eval_read_opts *o, char *err,
                          size_t errlen) {
    if (n == 2) return eval_read_vqa_pair(set, files[0], files[1], o, err, errlen);
    if (n == 1) return eval_read_vizwiz(set, files[0], o, err, errlen);
    return aimc_set_err(err, errlen,
                        "a VQA split is a questions + annotations pair (VQA v2 / OK-VQA format) or one VizWiz file, "
                        "not %d files", n);
}

int eval_read(eval_set *set, eval_task task, const char *const *files, int n_files, const eval_read_opts *o,
              char *err, size_t errlen) {
    memset(set, 0, sizeof *set);
    set->task = task;
    int rc = n_files < 1 ? aimc_set_err(err, errlen, "no file given for the split") : 0;
    if (!rc && task == EVAL_TASK_VQA) rc = read_vqa_files(set, files, n_files, o, err, errlen);
    for (int i = 0; !rc && task == EVAL_TASK_CAPTION && i < n_files; i++)
        rc = eval_read_karpathy(set, files[i], o, err, errlen);
    for (int i = 0; !rc && task == EVAL_TASK_HATEFUL && i < n_files; i++)
        rc = eval_read_hateful(set, files[i], o, err, errlen);
    if (!rc) rc = eval_check_ids(set, files[0], err, errlen);
    if (rc) eval_set_free(set);
    return rc;
}
