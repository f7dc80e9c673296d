/* Benchmark readers for aimc eval: the published formats of the AIM paper's
 * evaluation sets, read into one item list per split.
 *
 *  VQA pair (VQA v2, OK-VQA; OpenFlamingo's VizWiz/TextVQA conversions):
 *    questions   {"questions": [{"image_id", "question", "question_id"}, ...]}
 *    annotations {"annotations": [{"question_id", "answers": [{"answer"}, ...]}, ...]}
 *    Either file may come first (told apart by their top-level key). Every
 *    question needs an annotation with at least one answer (10 in the
 *    real sets); annotations without a question are ignored. The image is
 *    images_dir / image_pattern applied to image_id (below).
 *  VizWiz single file: [{"image", "question", "answers": [{"answer",
 *    "answer_confidence"}, ...]}, ...]; the image is images_dir / image.
 *  Karpathy caption split (Flickr30k, COCO): {"images": [{"filename",
 *    "split", "sentences": [{"raw"}, ...], "imgid", ["filepath"]}]}; items
 *    whose split is in the given comma-separated list; the image is
 *    images_dir / [filepath /] filename; answers = every sentence's raw text.
 *  Hateful Memes jsonl: one {"id", "img", "label", "text"} per line (blank
 *    lines skipped); the image is images_dir / img; label 0 or 1.
 *
 * Image patterns (VQA pairs): a printf-like pattern with exactly one
 * conversion, %d / %Nd / %0Nd for a numeric image_id or %s for any
 * ("COCO_val2014_%012d.jpg"); %% is a percent sign. A string image_id
 * (OpenFlamingo's VizWiz conversion stores the file name) is used as the
 * file name itself unless the pattern has %s.
 *
 * Ids: question_id (VQA), image (VizWiz), imgid (Karpathy; cocoid, then
 * filename, when absent), id (Hateful Memes), as text. They must be unique
 * within a split: demonstration selection tells the query apart by id, and
 * a demonstration bank (aimc bank build) indexes its entries by them.
 *
 * Errors are one line naming the file, the item (index, or line for jsonl)
 * and the field: "FILE: questions[3]: \"question\" is missing or not a
 * string". */
#ifndef AIMC_EVAL_DATA_H
#define AIMC_EVAL_DATA_H
#include <stddef.h>
#include <stdint.h>

typedef enum { EVAL_TASK_VQA, EVAL_TASK_CAPTION, EVAL_TASK_HATEFUL } eval_task;
/* "vqa", "caption", "hateful"; -1 if unknown. */
int eval_task_parse(const char *s);
const char *eval_task_name(eval_task t);

typedef struct eval_item {
    char *id;       /* unique within its set */
    char *image;    /* image file path */
    char *text;     /* VQA: the question; Hateful Memes: the meme text; captions: NULL */
    char **answers; /* VQA: the human answers; captions: the reference captions; hateful: none */
    int n_answers;
    int label;      /* Hateful Memes: 0 or 1; -1 otherwise */
} eval_item;

typedef struct eval_set {
    eval_task task;
    int64_t n;
    eval_item *items;
} eval_set;

typedef struct eval_read_opts {
    const char *images_dir;    /* prefix of relative image paths ("" or NULL: as they are) */
    const char *image_pattern; /* VQA pairs; NULL: "%s" */
    const char *splits;        /* Karpathy: comma-separated split names; NULL: "test" */
} eval_read_opts;

/* Reads the files of one split: VQA a questions + annotations pair or
 * VizWiz single files; captions Karpathy JSONs; hateful jsonl files
 * (several files are appended in order). 0, or -1 with one line in err
 * (set is then empty). */
int eval_read(eval_set *set, eval_task task, const char *const *files, int n_files, const eval_read_opts *o,
              char *err, size_t errlen);
/* The single-format readers eval_read dispatches to (they append to set). */
int eval_read_vqa_pair(eval_set *set, const char *questions, const char *annotations, const eval_read_opts *o,
                       char *err, size_t errlen);
int eval_read_vizwiz(eval_set *set, const char *file, const eval_read_opts *o, char *err, size_t errlen);
int eval_read_karpathy(eval_set *set, const char *file, const eval_read_opts *o, char *err, size_t errlen);
int eval_read_hateful(eval_set *set, const char *file, const eval_read_opts *o, char *err, size_t errlen);
/* 0 when every id is distinct, else -1 naming the id and both indices. */
int eval_check_ids(const eval_set *set, const char *what, char *err, size_t errlen);
void eval_set_free(eval_set *set);
/* Keeps the first n items (all when n >= set->n). */
void eval_set_truncate(eval_set *set, int64_t n);

/* The file name of image_id under pattern (above): malloc'd, or NULL with
 * one line in err (a bad pattern, or a number pattern for a string id). */
char *eval_image_name(const char *pattern, const char *id_text, int id_is_number, char *err, size_t errlen);
#endif
