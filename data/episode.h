/* AIM training episodes: k demonstrations (image + text) and a query (image +
 * prompt + target text), with decoded, preprocessed images and token ids.
 *
 * Pairs of a document (data/sample.h):
 *   MMC4: image i pairs with sentence matched_text_index[i] when
 *     matched_sim >= sim_threshold, its sentence is not empty and its bytes
 *     are present (a missing member / bad base64 drops the pair, as
 *     OpenFlamingo drops images that failed); one image per sentence (the most similar one, the
 *     lower image index on ties; OpenFlamingo also matches one-to-one);
 *     pairs in document order (by sentence index); the first max_images
 *     are kept. A document needs max(min_pairs, k + 1) pairs, else
 *     SKIP_TOO_FEW_PAIRS, or, when it has enough only counting the pairs
 *     whose image bytes are missing, the first such image's reason
 *     (SKIP_MISSING_MEMBER, SKIP_BAD_IMAGE). Its first k pairs are the demonstrations and the
 *     next one the query: one episode per document.
 *   LAION: a sample is one pair; the loader (data/loader.h) makes an episode
 *     of k + 1 consecutive pairs of its (shuffled) stream.
 *
 * Text of an item (tokenizer without special tokens: add BOS / image tokens
 * where the model's prompt format puts them):
 *   demonstration: demo_template with "{caption}" replaced by the sentence;
 *   query: the tokens of query_prompt (never targets), then the tokens of
 *     target_template with "{caption}" replaced (targets), then EOS when
 *     target_eos (a target too). The two parts are tokenized separately
 *     and concatenated (LLaVA's training code tokenizes turns the same way).
 *   Truncation to max_text_tokens (special tokens included) cuts the
 *   caption's end: a demonstration keeps its first max_text_tokens tokens;
 *   a query keeps its prompt and EOS and shortens the target. A query left
 *   with no target token is SKIP_NO_TARGET; a demonstration with no token is
 *   SKIP_BAD_TEXT.
 * Images: decoded (data/image.h) with max_image_pixels (larger ones are
 *   refused from their header), refused when a side is below min_image_side
 *   (1x1 trackers, icons); then preprocess_image (data/preprocess.h). A
 *   selected image that cannot be decoded or is out of limits skips the
 *   whole sample as SKIP_BAD_IMAGE (only the k + 1 selected are decoded). */
#ifndef AIMC_EPISODE_H
#define AIMC_EPISODE_H
#include "preprocess.h"
#include "sample.h"
#include "tokenizer.h"
#include <stddef.h>
#include <stdint.h>

typedef struct episode_config {
    int k;                     /* demonstrations per episode (default 2); 0 = query only */
    double sim_threshold;      /* MMC4 pairs need matched_sim >= this (default 0.24) */
    int max_images;            /* MMC4: pairs kept per document (default 6); >= k + 1 */
    int min_pairs;             /* MMC4: documents with fewer pairs are skipped; < k + 1 means k + 1 */
    int64_t max_text_tokens;   /* per item (default 64) */
    const char *demo_template;   /* default "{caption}" */
    const char *query_prompt;    /* default "" */
    const char *target_template; /* default "{caption}" */
    int target_eos;              /* append the tokenizer's eos_token to the target (default 1) */
    int64_t min_image_side;      /* default 16 */
    int64_t max_image_pixels;    /* default IMAGE_DEFAULT_MAX_PIXELS */
    /* > 0: JPEGs may be decoded at 1/2, 1/4, 1/8 size by DCT scaling while
     * both sides stay >= this (faster, not Pillow-exact); default 0 = off. */
    int64_t jpeg_scale_min_side;
    sample_opts sample;
} episode_config;

/* The defaults above. */
void episode_config_default(episode_config *c);
/* 0, or -1 with one line in err naming the bad field and value. */
int episode_config_check(const episode_config *c, char *err, size_t errlen);

typedef struct episode_item {
    float *pixels;          /* 3 x height x width float32 (CHW), malloc'd */
    int64_t height, width;
    int32_t *tokens;        /* n_tokens ids, malloc'd */
    int64_t n_tokens;
    uint8_t *target;        /* query only: 1 where the token is a target; NULL for demonstrations */
    int64_t n_target;       /* number of target tokens (0 for demonstrations) */
    char *source;           /* "SHARD:KEY" or "KEY#i" (image i of a document), for messages */
} episode_item;

typedef struct episode {
    int k;
    episode_item *items; /* k + 1: demonstrations, then the query */
} episode;

void episode_item_free(episode_item *it);
void episode_free(episode *e);

/* What building needs; all borrowed. */
typedef struct episode_ctx {
    const episode_config *cfg;
    const tokenizer *tok;
    const preprocess_config *pp;
} episode_ctx;

/* One image + sentence ready for either role: pixels, the demonstration's
 * tokens and the query's tokens with their target mask. */
typedef struct episode_pair {
    float *pixels;
    int64_t height, width;
    char *source;
    tok_ids demo;     /* demonstration tokens (empty unless built for that role) */
    tok_ids query;    /* query tokens: prompt, target (+ EOS) */
    uint8_t *target;  /* query.n flags */
    int64_t n_target;
} episode_pair;

/* episode_config_check, plus: the tokenizer has an eos_token when target_eos
 * is set. 0, or -1 with one line in err. */
int episode_ctx_check(const episode_ctx *ctx, char *err, size_t errlen);

enum { EPISODE_ROLE_DEMO = 1, EPISODE_ROLE_QUERY = 2, EPISODE_ROLE_BOTH = 3 };

/* Decodes + preprocesses the image, tokenizes the sentence for the given
 * roles. source is copied. 0, or -1 with *why and one line in err. */
int episode_pair_build(const episode_ctx *ctx, const uint8_t *image, size_t image_size, const char *sentence,
                       const char *source, int roles, episode_pair *out, skip_reason *why, char *err,
                       size_t errlen);
void episode_pair_free(episode_pair *p);

/* Moves k demonstrations (pairs[0..k)) and the query (pairs[k]) into out;
 * the pairs are left empty. */
void episode_from_pairs(episode_pair *pairs, int k, episode *out);

/* The usable pairs of a document in episode order (see above): indices into
 * doc->images, at most max_images. Returns the count (out needs
 * doc->n_images entries). */
int64_t episode_select_pairs(const document *doc, const episode_config *cfg, int64_t *out);

/* One episode from an MMC4 document (or, with k = 0, a LAION one). 0, or
 * -1 with *why and one line in err. */
int episode_from_document(const episode_ctx *ctx, const document *doc, const char *source, episode *out,
                          skip_reason *why, char *err, size_t errlen);
#endif
