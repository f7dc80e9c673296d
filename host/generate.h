/* Text generation over a decoder (host/decoder.h) with its KV cache:
 * prefill the prompt's input embeddings once, then one token per step.
 *
 * Greedy: each step takes the token with the highest logit (ties: the
 * lower id) among the allowed ones.
 *
 * Beam search, as transformers' _beam_search (4.4x+) does it:
 *  - every running beam b with log-probability sum S_b proposes each token t
 *    with S_b + log_softmax(logits_b)[t] (disallowed tokens get -inf after
 *    the log_softmax, as logits processors do in beam search);
 *  - the best 2 * num_beams candidates are ranked (ties: the lower beam,
 *    then the lower token id, so results are deterministic);
 *  - a candidate FINISHES when its token is EOS, when its decoded text now
 *    contains a stop string, or when it reaches max_new_tokens; among the
 *    finishing ones only those ranked in the top num_beams enter the pool
 *    of finished hypotheses, with score = S / len^length_penalty, len = the
 *    number of generated tokens including the last one (EOS included, as
 *    transformers' cur_len + 1 - prompt_len); the pool keeps the best
 *    num_beams (ties: the earlier one);
 *  - the best num_beams candidates that do not finish are the next running
 *    beams (fewer at the start, when fewer exist);
 *  - it stops when no beam runs, or by early_stopping: GEN_EARLY_TRUE as
 *    soon as the pool is full; GEN_EARLY_FALSE (transformers' default
 *    heuristic) when the pool is full and the best running beam's
 *    S / cur_len^length_penalty is not above the worst finished score;
 *    GEN_EARLY_NEVER the same with len = max_new_tokens when
 *    length_penalty > 0 (an upper bound for negative S);
 *  - the answer is the pool's best hypothesis.
 * num_beams = 1 in gen_generate runs greedy (transformers does the same).
 *
 * Stop strings: after each token the generated ids are decoded (special
 * tokens skipped) and generation stops when the text contains one of the
 * strings; the returned text is cut before its first occurrence. The ids
 * keep the token that completed it. EOS stays in the ids too (not in the
 * text).
 *
 * Positions: the prompt occupies positions [0, T); generated tokens follow
 * (no padding, so LLaMA's two position modes agree). */
#ifndef AIMC_GENERATE_H
#define AIMC_GENERATE_H
#include "../data/tokenizer.h"
#include "decoder.h"

typedef enum { GEN_EARLY_FALSE = 0, GEN_EARLY_TRUE = 1, GEN_EARLY_NEVER = 2 } gen_early_stop;

typedef struct gen_config {
    int64_t max_new_tokens;       /* >= 1 */
    int num_beams;                /* 1: greedy */
    double length_penalty;        /* beam search only (transformers' default 1.0) */
    gen_early_stop early_stopping;
    int32_t eos_id;               /* -1: no EOS */
    const char *const *stop;      /* stop strings (n_stop of them; need tok) */
    int n_stop;
    const tokenizer *tok;         /* decodes the text; may be NULL without stop strings */
    const int32_t *allowed;       /* NULL: every token; else only these n_allowed ids */
    int64_t n_allowed;
} gen_config;

/* transformers' defaults: 20 new tokens, greedy, length_penalty 1, early
 * stopping false, no EOS, no stop strings. */
void gen_config_default(gen_config *c);
/* "true", "false", "never"; -1 if unknown. */
int gen_early_stop_parse(const char *s);

typedef enum { GEN_STOP_EOS, GEN_STOP_STRING, GEN_STOP_LENGTH } gen_stop_reason;
const char *gen_stop_name(gen_stop_reason r); /* "eos", "stop-string", "max-tokens" */

typedef struct gen_result {
    int32_t *ids;            /* generated ids (malloc'd) */
    int64_t n;
    double sum_logprob;      /* sum of the chosen tokens' log-probabilities */
    double score;            /* beam: sum_logprob / n^length_penalty; greedy: sum_logprob */
    gen_stop_reason stop;
    int stop_string;         /* index of the stop string that ended it, else -1 */
    char *text;              /* decoded answer (malloc'd); NULL when cfg.tok is NULL */
    int64_t prompt_len;      /* prompt positions */
    int64_t forward_steps;   /* decoder_step calls (prefill included) */
    size_t cache_bytes;      /* backend memory of the KV cache(s) (outside the arena) */
} gen_result;
void gen_result_free(gen_result *r);

/* Checks a configuration against a model's vocabulary: 0, or -1 with one
 * line in err naming the bad field. */
int gen_config_check(const gen_config *c, const decoder *m, char *err, size_t errlen);

/* Generates from prompt [1, T, D] (act dtype, on m's backend). Scratch and
 * per-step memory come from a (left as found); the KV cache is allocated
 * and freed here. 0, or -1 with one line in err (a bad configuration). */
int gen_generate(const decoder *m, arena *a, const tensor *prompt, const gen_config *c,
                 gen_result *out, char *err, size_t errlen);
/* The two searches on their own (gen_beam accepts num_beams = 1). */
int gen_greedy(const decoder *m, arena *a, const tensor *prompt, const gen_config *c,
               gen_result *out, char *err, size_t errlen);
int gen_beam(const decoder *m, arena *a, const tensor *prompt, const gen_config *c,
             gen_result *out, char *err, size_t errlen);

/* Host helpers (exposed for tests and scoring): log_softmax of one logits
 * row in double with the allowed mask (NULL: all) into out[V]. */
void gen_log_softmax(const float *logits, int64_t vocab, const uint8_t *allowed, double *out);
#endif
