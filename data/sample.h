/* One shard sample (data/shard.h) parsed into a document: sentences and
 * images, with the image–sentence matching of the corpus.
 *
 * MMC4-style (interleaved documents, one `{key}.json` member):
 *   {"text_list": [sentence, ...],
 *    "image_info": [{"image_name": "b9040a0dbb22.jpg", "matched_text_index": 3,
 *                    "matched_sim": 0.27, "image_base64": "..." (optional)}, ...],
 *    "similarity_matrix": [[...], ...] (optional: images x sentences)}
 *   An image's bytes are its base64 field when present, else the member of
 *   the same sample whose extension is the image_name ("{key}.{image_name}").
 *   matched_sim may be left out when similarity_matrix has the entry.
 *   An image whose bytes cannot be found (or whose base64 is invalid) is kept
 *   with no data and the reason: only the images an episode uses must be
 *   present (data/episode.h decides).
 * LAION / img2dataset-style: `{key}.jpg|jpeg|png|webp` + `{key}.txt`
 *   (+ `{key}.json`, not needed): one image, one sentence (the caption),
 *   matched with similarity 1.
 *
 * Text: every sentence is trimmed of surrounding whitespace. Sentences must
 * be UTF-8: with SAMPLE_UTF8_SKIP (the default) a document holding an invalid
 * sequence is skipped as SKIP_BAD_TEXT; with SAMPLE_UTF8_REPLACE each maximal
 * invalid subsequence becomes U+FFFD (what Python's decode("utf-8",
 * "replace") gives). An empty LAION caption is SKIP_BAD_TEXT; an empty MMC4
 * sentence only makes its pairs unusable.
 *
 * Skip reasons (one per sample): SKIP_MISSING_MEMBER (no .json; LAION image
 * or caption missing), SKIP_BAD_JSON (unparsable, or a field of the wrong
 * type, a matched_text_index out of range, no similarity), SKIP_BAD_TEXT. */
#ifndef AIMC_SAMPLE_H
#define AIMC_SAMPLE_H
#include "shard.h"
#include <stddef.h>
#include <stdint.h>

typedef enum {
    SAMPLE_FORMAT_AUTO = 0, /* per sample: LAION when it has .txt or an image member, else MMC4 */
    SAMPLE_FORMAT_MMC4,
    SAMPLE_FORMAT_LAION,
} sample_format;

typedef enum {
    SAMPLE_UTF8_SKIP = 0, /* invalid UTF-8 in a sentence skips the sample (SKIP_BAD_TEXT) */
    SAMPLE_UTF8_REPLACE,  /* replaced by U+FFFD, as Python's errors="replace" */
} sample_utf8_policy;

typedef struct sample_opts {
    sample_format format;
    sample_utf8_policy invalid_utf8;
} sample_opts;

typedef struct doc_image {
    char *name;            /* image_name (MMC4) or the member extension (LAION) */
    const uint8_t *data;   /* the encoded file; NULL when missing (see missing) */
    size_t size;
    int64_t text_index;    /* matched_text_index: the sentence it belongs to */
    double sim;            /* matched_sim */
    skip_reason missing;   /* when data is NULL: SKIP_MISSING_MEMBER or SKIP_BAD_IMAGE (bad base64) */
    uint8_t *owned;        /* decoded base64 (data points here), else NULL */
} doc_image;

typedef struct document {
    sample_format format;  /* MMC4 or LAION, never AUTO */
    char *key;
    int64_t n_texts;
    char **texts;          /* trimmed, valid UTF-8, NUL-terminated (may be "") */
    int64_t n_images;
    doc_image *images;     /* in image_info order */
} document;

/* Parses s (which must outlive doc: image data may point into its members).
 * opts NULL = defaults. Returns 0, or -1 with *why set and one line in err
 * naming the key and the problem; doc is then empty. */
int document_parse(const shard_sample *s, const sample_opts *opts, document *doc, skip_reason *why, char *err,
                   size_t errlen);
void document_free(document *doc);

/* The format a sample looks like: LAION when it has a "txt" member or a
 * member whose extension is exactly jpg/jpeg/png/webp, else MMC4. */
sample_format sample_detect_format(const shard_sample *s);
const char *sample_format_name(sample_format f); /* "auto", "mmc4", "laion" */
/* "auto" | "mmc4" | "laion" -> 0, else -1. */
int sample_format_parse(const char *name, sample_format *out);

/* UTF-8 helpers (exposed for tests and other text sources). */
int sample_utf8_valid(const char *s, size_t n);
/* A malloc'd NUL-terminated copy with invalid sequences replaced by U+FFFD
 * (maximal-subpart rule, as Python / the Unicode standard recommend). */
char *sample_utf8_replace(const char *s, size_t n, size_t *out_len);
#endif
