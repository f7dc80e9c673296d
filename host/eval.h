/* The pieces of aimc eval (host/cmd_eval.c runs them; docs/eval.md):
 * demonstration selection, the texts of demonstrations and queries, the
 * answer post-processing and log-probability scoring of OpenFlamingo's
 * evaluation protocol, latency statistics, CLIP image embeddings for
 * retrieval and the memory the weights take.
 *
 * Selection. Demonstrations come from the train split and never include the
 * query itself (the train item with the query's id). Random selection draws
 * k distinct items with a generator seeded by (seed, query id) alone, so a
 * query gets the same demonstrations whatever --limit, the order of the
 * test set or the other queries; OpenFlamingo draws them per batch from
 * Python's global random state instead. CLIP retrieval (RICES) takes the k
 * train images most similar to the query image (cosine of CLIP image
 * embeddings; ties to the lower index), ordered from least to most similar
 * so that the nearest one sits next to the query, as OpenFlamingo's
 * rices.py orders them.
 *
 * Texts (host/infer.h templates; "{prompt}" is the question or meme text):
 *   vqa      demo: template demo with the first human answer; query: template query
 *   caption  demo: the first reference caption, stripped; query: template query
 *   hateful  demo: the answer is "yes" (label 1) or "no" (label 0)
 *
 * Post-processing of generated text (OpenFlamingo's):
 *   vqa      cut before the first "Question", "Answer" or "Short", then before
 *            the first ", " (postprocess_vqa_generation); OK-VQA's extra
 *            lemmatisation (NLTK) is not done;
 *   caption  cut before the first "Output", every '"' removed
 *            (postprocess_captioning_generation);
 *   both then stripped of surrounding whitespace (the metrics strip anyway).
 *
 * Hateful Memes is scored, not generated: for each answer ("yes", "no") the
 * log-probability of its tokens right after the query prompt, from decoder
 * passes over the KV cache (the prompt is prefilled once and shared); the
 * item's score is P(yes) = exp(lp_yes - logsumexp(lp_yes, lp_no)) with lp the
 * mean log-probability per answer token (OpenFlamingo's
 * get_rank_classifications with normalize_length=True; for one-token
 * answers the sum). */
#ifndef AIMC_EVAL_H
#define AIMC_EVAL_H
#include "../data/tokenizer.h"
#include "decoder.h"
#include "eval_data.h"
#include "infer.h"

/* ---- selection ------------------------------------------------------------------ */

/* The generator state of one query's random selection. */
uint64_t eval_query_seed(uint64_t seed, const char *query_id);
/* k distinct indices of train (none with the query's id) into out[k]. 0, or
 * -1 with one line in err when the split has fewer than k other items. */
int eval_select_random(const eval_set *train, const char *query_id, int k, uint64_t seed, int64_t *out, char *err,
                       size_t errlen);
/* The k most similar train items to the query (embeddings: unit rows
 * train_emb[train->n, dim] and query_emb[dim]), least similar first. Same
 * errors as eval_select_random. */
int eval_select_nearest(const eval_set *train, const float *train_emb, const float *query_emb, int64_t dim,
                        const char *query_id, int k, int64_t *out, char *err, size_t errlen);

/* ---- texts ----------------------------------------------------------------------- */

/* "yes" for label 1, "no" for 0. */
const char *eval_hateful_answer(int label);
/* The demonstration / query text of an item (malloc'd). */
char *eval_demo_text(eval_task task, const infer_template *t, const eval_item *it);
char *eval_query_text(eval_task task, const infer_template *t, const eval_item *it);
/* The answer read from generated text (malloc'd). */
char *eval_postprocess(eval_task task, const char *generated);
/* s without surrounding whitespace (malloc'd). */
char *eval_strip(const char *s);

/* ---- answer scoring ---------------------------------------------------------------- */

/* The tokens of answer after the query: tokens(demo text with answer) minus
 * the leading tokens(query text) when those are a prefix of it, else the
 * tokens of the text the demo form adds after the query form, alone. 0, or
 * -1 with err set (a tokenizer error, or an answer without tokens). */
int eval_answer_tokens(const tokenizer *tok, const infer_template *t, const eval_item *query, const char *answer,
                       tok_ids *out, char *err, size_t errlen);
/* Sums of log-probabilities: sum_out[j] = sum over the tokens of answers[j]
 * of log p(token | prompt, the answer's previous tokens), from one prefill
 * of prompt [1, T, D] and single-token steps over the KV cache. The cache's
 * backend bytes go to *cache_bytes (when not NULL). */
void eval_answer_logprobs(const decoder *m, arena *a, const tensor *prompt, const tok_ids *answers, int n_answers,
                          double *sum_out, size_t *cache_bytes);
/* P(first class) from two per-token mean log-probabilities. */
double eval_two_class_prob(double lp_first, double lp_second);

/* ---- statistics --------------------------------------------------------------------- */

/* The q-quantile (0..1) of x[n] with linear interpolation between the
 * order statistics (numpy's default); NaN for n = 0. x is not modified. */
double eval_quantile(const double *x, int64_t n, double q);

/* ---- retrieval ------------------------------------------------------------------------- */

/* CLIP image embeddings (unit rows, [set->n, *dim] host f32, malloc'd) of
 * every item's image with the CLIPModel folder clip_dir (its vision tower,
 * visual projection and preprocessor_config.json). NULL with one line in
 * err on an unreadable image. */
float *eval_clip_embed(const char *clip_dir, const backend *be, const eval_set *set, int64_t *dim, char *err,
                       size_t errlen);

/* ---- memory ------------------------------------------------------------------------------ */

/* Bytes the weights of a model folder take when loaded as dt: every float
 * tensor of its model*.safetensors files at dt's size (integer tensors at 4
 * bytes). 0 when none can be read. */
size_t eval_weights_bytes(const char *model_dir, dtype dt);
#endif
