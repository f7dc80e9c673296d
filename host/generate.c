/* Greedy and beam search over a decoder with its KV cache (generate.h). */
#include "generate.h"
#include "../kernels/check.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- configuration ------------------------------------------------------------ */

void gen_config_default(gen_config *c) {
    memset(c, 0, sizeof *c);
    c->max_new_tokens = 20;
    c->num_beams = 1;
    c->length_penalty = 1.0;
    c->early_stopping = GEN_EARLY_FALSE;
    c->eos_id = -1;
}

int gen_early_stop_parse(const char *s) {
    if (!strcmp(s, "false")) return GEN_EARLY_FALSE;
    if (!strcmp(s, "true")) return GEN_EARLY_TRUE;
    if (!strcmp(s, "never")) return GEN_EARLY_NEVER;
    return -1;
}

const char *gen_stop_name(gen_stop_reason r) {
    switch (r) {
    case GEN_STOP_EOS: return "eos";
    case GEN_STOP_STRING: return "stop-string";
    default: return "max-tokens";
    }
}

#define GEN_MAX_BEAMS 4096

int gen_config_check(const gen_config *c, const decoder *m, char *err, size_t errlen) {
    int64_t vocab = m->cfg.vocab;
    if (c->max_new_tokens < 1)
        return aimc_set_err(err, errlen, "max new tokens must be at least 1 (got %lld)",
                            (long long)c->max_new_tokens);
    if (c->num_beams < 1 || c->num_beams > GEN_MAX_BEAMS)
        return aimc_set_err(err, errlen, "number of beams must be in [1, %d] (got %d)", GEN_MAX_BEAMS,
                            c->num_beams);
    if (!isfinite(c->length_penalty))
        return aimc_set_err(err, errlen, "length penalty must be a finite number (got %g)",
                            c->length_penalty);
    if (c->early_stopping < GEN_EARLY_FALSE || c->early_stopping > GEN_EARLY_NEVER)
        return aimc_set_err(err, errlen, "early stopping must be true, false or never (got %d)",
                            (int)c->early_stopping);
    if (c->eos_id < -1 || c->eos_id >= vocab)
        return aimc_set_err(err, errlen, "EOS id %d is outside the vocabulary [0, %lld)", c->eos_id,
                            (long long)vocab);
    if (c->n_stop > 0 && !c->tok) return aimc_set_err(err, errlen,
                                                      "stop strings need a tokenizer to decode the text");
    for (int i = 0; i < c->n_stop; i++)
        if (!c->stop[i] || !*c->stop[i]) return aimc_set_err(err, errlen, "stop string %d is empty", i + 1);
    if (c->allowed && c->n_allowed < 1) return aimc_set_err(err, errlen, "the allowed-token list is empty");
    for (int64_t i = 0; c->allowed && i < c->n_allowed; i++)
        if (c->allowed[i] < 0 || c->allowed[i] >= vocab)
            return aimc_set_err(err, errlen, "allowed token %d is outside the vocabulary [0, %lld)",
                                c->allowed[i],
                                (long long)vocab);
    return 0;
}

static int check_prompt(const decoder *m, const tensor *prompt, char *err, size_t errlen) {
    if (prompt->ndim != 3 || prompt->shape[0] != 1 || prompt->shape[1] < 1 ||
        prompt->shape[2] != m->cfg.hidden || prompt->be != m->be)
        return aimc_set_err(err, errlen,
                            "generate: the prompt must be [1, T >= 1, %lld] on the model's backend",
                            (long long)m->cfg.hidden);
    return 0;
}

void gen_result_free(gen_result *r) {
    if (!r) return;
    free(r->ids);
    free(r->text);
    memset(r, 0, sizeof *r);
}

/* ---- host helpers ---------------------------------------------------------------- */

void gen_log_softmax(const float *logits, int64_t vocab, const uint8_t *allowed, double *out) {
    double mx = -INFINITY, sum = 0;
    for (int64_t t = 0; t < vocab; t++)
        if (logits[t] > mx) mx = logits[t];
    for (int64_t t = 0; t < vocab; t++) sum += exp((double)logits[t] - mx);
    double lse = mx + log(sum);
    for (int64_t t = 0; t < vocab; t++)
        out[t] = (!allowed || allowed[t]) ? (double)logits[t] - lse : -INFINITY;
}

/* 1 per allowed id, or NULL when every id is allowed. */
static uint8_t *allowed_mask(const gen_config *c, int64_t vocab) {
    if (!c->allowed) return NULL;
    uint8_t *mask = aimc_xcalloc((size_t)vocab, 1);
    for (int64_t i = 0; i < c->n_allowed; i++) mask[c->allowed[i]] = 1;
    return mask;
}

/* Decoded text of ids (special tokens skipped; ids the tokenizer does not
 * know, such as a model's extra padding rows, are left out). malloc'd. */
static char *decode_ids(const tokenizer *tok, const int32_t *ids, int64_t n) {
    int32_t *known = aimc_xcalloc((size_t)n, sizeof *known);
    int64_t k = 0;
    for (int64_t i = 0; i < n; i++)
        if (tokenizer_id_to_token(tok, ids[i])) known[k++] = ids[i];
    char err[256];
    char *text = tokenizer_decode(tok, known, k, 1, NULL, err, sizeof err);
    AIMC_CHECK(text, "generate: decoding known ids failed: %s", err);
    free(known);
    return text;
}

/* The stop string occurring first in text (the earliest position; ties:
 * the lower index) and its position, or -1. */
static int first_stop(const gen_config *c, const char *text, size_t *at) {
    int best = -1;
    for (int i = 0; i < c->n_stop; i++) {
        const char *hit = strstr(text, c->stop[i]);
        if (hit && (best < 0 || (size_t)(hit - text) < *at)) best = i, *at = (size_t)(hit - text);
    }
    return best;
}

static int hits_stop(const gen_config *c, const int32_t *ids, int64_t n) {
    if (c->n_stop == 0) return -1;
    char *text = decode_ids(c->tok, ids, n);
    size_t at = 0;
    int which = first_stop(c, text, &at);
    free(text);
    return which;
}

/* The answer's text: cut before the stop string when one ended it. */
static void finish_text(const gen_config *c, gen_result *r) {
    if (!c->tok) return;
    r->text = decode_ids(c->tok, r->ids, r->n);
    size_t at = 0;
    if (r->stop == GEN_STOP_STRING && first_stop(c, r->text, &at) >= 0) r->text[at] = 0;
}

static void download_rows(const tensor *logits, int64_t rows, float *host) {
    int64_t vocab = logits->shape[2];
    logits->be->download(host, logits->data, (size_t)(rows * vocab) * sizeof *host);
}

/* Backend bytes of a KV cache: keys, values and the mask. */
static size_t cache_bytes(const decoder_cache *c) {
    size_t bytes = tensor_bytes(&c->mask);
    for (int64_t l = 0; l < c->layers; l++) bytes += tensor_bytes(&c->k[l]) + tensor_bytes(&c->v[l]);
    return bytes;
}

/* ---- greedy ------------------------------------------------------------------------ */

/* The allowed id with the highest logit; ties: the lower id. */
static int32_t argmax_allowed(const float *row, int64_t vocab, const uint8_t *allowed) {
    int32_t best = -1;
    for (int64_t t = 0; t < vocab; t++) {
        if (allowed && !allowed[t]) continue;
        if (best < 0 || row[t] > row[best]) best = (int32_t)t;
    }
    return best;
}

/* Why the sequence ids[0..n) ends, or -1 when it goes on. */
static int ends_here(const gen_config *c, const int32_t *ids, int64_t n, int *which) {
    *which = -1;
    if (c->eos_id >= 0 && ids[n - 1] == c->eos_id) return GEN_STOP_EOS;
    if ((*which = hits_stop(c, ids, n)) >= 0) return GEN_STOP_STRING;
    if (n >= c->max_new_tokens) return GEN_STOP_LENGTH;
    return -1;
}

static int begin(const decoder *m, const tensor *prompt, const gen_config *c, gen_result *out,
                 char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    out->stop_string = -1;
    if (gen_config_check(c, m, err, errlen) || check_prompt(m, prompt, err, errlen)) return -1;
    out->prompt_len = prompt->shape[1];
    out->ids = aimc_xcalloc((size_t)c->max_new_tokens, sizeof *out->ids);
    return 0;
}

int gen_greedy(const decoder *m, arena *a, const tensor *prompt, const gen_config *c,
               gen_result *out, char *err, size_t errlen) {
    if (begin(m, prompt, c, out, err, errlen)) return -1;
    int64_t vocab = m->cfg.vocab;
    size_t mark = a->used;
    decoder_cache cache;
    decoder_cache_init(&cache, m, 1, out->prompt_len + c->max_new_tokens, DEC_POS_ARANGE);
    out->cache_bytes = cache_bytes(&cache);
    uint8_t *allowed = allowed_mask(c, vocab);
    float *row = aimc_xcalloc((size_t)vocab, sizeof *row);
    double *lp = aimc_xcalloc((size_t)vocab, sizeof *lp);
    tensor logits = arena_new(a, DT_F32, 1, 1, vocab);
    size_t step_mark = a->used;
    decoder_step(m, &cache, a, prompt, NULL, &logits);
    out->forward_steps = 1;
    for (int reason = -1; reason < 0;) {
        download_rows(&logits, 1, row);
        int32_t t = argmax_allowed(row, vocab, allowed);
        gen_log_softmax(row, vocab, allowed, lp);
        out->sum_logprob += lp[t];
        out->ids[out->n++] = t;
        reason = ends_here(c, out->ids, out->n, &out->stop_string);
        if (reason >= 0) {
            out->stop = (gen_stop_reason)reason;
            break;
        }
        tensor e = decoder_embed_tokens(m, a, &t, 1, 1);
        decoder_step(m, &cache, a, &e, NULL, &logits);
        out->forward_steps++;
        a->used = step_mark;
    }
    out->score = out->sum_logprob;
    finish_text(c, out);
    free(row), free(lp), free(allowed);
    decoder_cache_free(&cache);
    a->used = mark;
    return 0;
}

/* ---- beam search: bookkeeping ------------------------------------------------------ */

typedef struct hyp {
    int32_t *ids;
    int64_t n;
    double sum, score;
    gen_stop_reason stop;
    int stop_string;
} hyp;

typedef struct beam_state {
    int nb;              /* num_beams */
    int64_t max_new;
    int n_run;           /* running beams, rows [0, n_run) of run_ids / the cache */
    int32_t *run_ids;    /* [nb, max_new] */
    double *run_sum;     /* [nb] */
    int n_next;
    int32_t *next_ids;   /* [nb, max_new] */
    double *next_sum;
    int32_t *parent, *token; /* [nb]: where each next beam comes from */
    hyp *pool;           /* finished hypotheses, at most nb */
    int n_pool;
} beam_state;

static void beam_state_init(beam_state *s, int nb, int64_t max_new) {
    memset(s, 0, sizeof *s);
    s->nb = nb;
    s->max_new = max_new;
    s->run_ids = aimc_xcalloc((size_t)(nb * max_new), sizeof *s->run_ids);
    s->next_ids = aimc_xcalloc((size_t)(nb * max_new), sizeof *s->next_ids);
    s->run_sum = aimc_xcalloc((size_t)nb, sizeof *s->run_sum);
    s->next_sum = aimc_xcalloc((size_t)nb, sizeof *s->next_sum);
    s->parent = aimc_xcalloc((size_t)nb, sizeof *s->parent);
    s->token = aimc_xcalloc((size_t)nb, sizeof *s->token);
    s->pool = aimc_xcalloc((size_t)nb, sizeof *s->pool);
    s->n_run = 1; /* the prompt */
}

static void beam_state_free(beam_state *s) {
    for (int i = 0; i < s->n_pool; i++) free(s->pool[i].ids);
    free(s->run_ids), free(s->next_ids), free(s->run_sum), free(s->next_sum);
    free(s->parent), free(s->token), free(s->pool);
}

/* The pool's lowest score (the one a better hypothesis replaces when full). */
static int pool_worst(const beam_state *s) {
    int w = 0;
    for (int i = 1; i < s->n_pool; i++)
        if (s->pool[i].score <= s->pool[w].score) w = i; /* ties: the later one goes first */
    return w;
}

static void pool_add(beam_state *s, const int32_t *ids, int64_t n, double sum, double alpha,
                     gen_stop_reason why, int which) {
    double score = sum / pow((double)n, alpha);
    int slot = s->n_pool;
    if (s->n_pool == s->nb) {
        slot = pool_worst(s);
        if (!(score > s->pool[slot].score)) return;
        free(s->pool[slot].ids);
        /* keep insertion order: later entries move down so "earlier wins" ties hold */
        memmove(&s->pool[slot], &s->pool[slot + 1], (size_t)(s->n_pool - slot - 1) * sizeof *s->pool);
        slot = s->n_pool - 1;
    } else {
        s->n_pool++;
    }
    hyp *h = &s->pool[slot];
    h->ids = aimc_xcalloc((size_t)n, sizeof *h->ids);
    memcpy(h->ids, ids, (size_t)n * sizeof *ids);
    h->n = n, h->sum = sum, h->score = score, h->stop = why, h->stop_string = which;
}

/* ---- beam search: candidates ---------------------------------------------------------- */

typedef struct cand {
    double score;
    int64_t flat; /* beam * vocab + token */
} cand;

/* Inserts (score, flat) into the sorted list top[0..*n) of at most k
 * (descending; an equal score goes after the ones already there, and flat
 * indices arrive in increasing order, so ties keep the lower index). */
static void top_insert(cand *top, int *n, int k, double score, int64_t flat) {
    if (*n == k && !(score > top[k - 1].score)) return;
    int at = *n < k ? *n : k - 1;
    while (at > 0 && top[at - 1].score < score) {
        top[at] = top[at - 1];
        at--;
    }
    top[at] = (cand){score, flat};
    if (*n < k) ++*n;
}

static int select_candidates(const beam_state *s, const double *lp, int64_t vocab, cand *top) {
    int n = 0, k = 2 * s->nb;
    for (int b = 0; b < s->n_run; b++)
        for (int64_t t = 0; t < vocab; t++) {
            double sc = s->run_sum[b] + lp[(int64_t)b * vocab + t];
            if (sc > -INFINITY) top_insert(top, &n, k, sc, (int64_t)b * vocab + t);
        }
    return n;
}

/* Ranks the candidates of step `len` (tokens per sequence after it) into
 * finished hypotheses and the next running beams. */
static void process_candidates(beam_state *s, const gen_config *c, const cand *top, int n_top,
                               int64_t vocab, int64_t len, int32_t *seq) {
    s->n_next = 0;
    for (int r = 0; r < n_top; r++) {
        int b = (int)(top[r].flat / vocab);
        int32_t t = (int32_t)(top[r].flat % vocab);
        memcpy(seq, s->run_ids + (int64_t)b * s->max_new, (size_t)(len - 1) * sizeof *seq);
        seq[len - 1] = t;
        int which, why = ends_here(c, seq, len, &which);
        if (why >= 0) {
            if (r < s->nb) pool_add(s, seq, len, top[r].score, c->length_penalty, (gen_stop_reason)why, which);
            continue;
        }
        if (s->n_next == s->nb) continue;
        memcpy(s->next_ids + (int64_t)s->n_next * s->max_new, seq, (size_t)len * sizeof *seq);
        s->next_sum[s->n_next] = top[r].score;
        s->parent[s->n_next] = b;
        s->token[s->n_next] = t;
        s->n_next++;
    }
}

/* Whether the search is over after step `len` (the next beams chosen). */
static int beam_done(const beam_state *s, const gen_config *c, int64_t len) {
    if (s->n_next == 0 || len >= c->max_new_tokens) return 1;
    if (s->n_pool < s->nb) return 0;
    if (c->early_stopping == GEN_EARLY_TRUE) return 1;
    double best_len = (double)len;
    if (c->early_stopping == GEN_EARLY_NEVER && c->length_penalty > 0) best_len = (double)c->max_new_tokens;
    double best_running = s->next_sum[0] / pow(best_len, c->length_penalty);
    return !(best_running > s->pool[pool_worst(s)].score);
}

/* The next beams become the running ones. */
static void advance(beam_state *s) {
    int32_t *ids = s->run_ids;
    s->run_ids = s->next_ids;
    s->next_ids = ids;
    memcpy(s->run_sum, s->next_sum, (size_t)s->n_next * sizeof *s->run_sum);
    s->n_run = s->n_next;
}

/* ---- beam search: the cache ------------------------------------------------------------- */

/* Copies the first n cached positions of sequence sb of src into sequence
 * db of dst (same model, same capacity). */
static void cache_copy_seq(decoder_cache *dst, int64_t db, const decoder_cache *src, int64_t sb, int64_t n) {
    for (int64_t l = 0; l < dst->layers; l++) {
        tensor dk = tensor_slice0(&dst->k[l], db * dst->cap, n), sk = tensor_slice0(&src->k[l], sb * src->cap, n);
        tensor dv = tensor_slice0(&dst->v[l], db * dst->cap, n), sv = tensor_slice0(&src->v[l], sb * src->cap, n);
        op_convert(&dk, &sk);
        op_convert(&dv, &sv);
    }
    tensor dm = tensor_slice0(&dst->mask, db * dst->cap, n), sm = tensor_slice0(&src->mask, sb * src->cap, n);
    op_convert(&dm, &sm);
    memcpy(dst->host_mask + db * dst->cap, src->host_mask + sb * src->cap, (size_t)n * sizeof *dst->host_mask);
}

/* One tensor's rows: sequence j gets parent[j]'s first n positions (through
 * a temporary, so that a sequence can be copied before it is overwritten). */
static void reorder_rows(tensor *t, arena *a, int64_t cap, int64_t n, const int32_t *parent, int64_t batch) {
    size_t mark = a->used;
    int64_t shape[4] = {batch * n, 1, 1, 1};
    for (int d = 1; d < t->ndim; d++) shape[d] = t->shape[d];
    tensor tmp = arena_tensor(a, t->dt, t->ndim, shape);
    for (int64_t j = 0; j < batch; j++) {
        if (parent[j] == j) continue;
        tensor dst = tensor_slice0(&tmp, j * n, n), src = tensor_slice0(t, parent[j] * cap, n);
        op_convert(&dst, &src);
    }
    for (int64_t j = 0; j < batch; j++) {
        if (parent[j] == j) continue;
        tensor dst = tensor_slice0(t, j * cap, n), src = tensor_slice0(&tmp, j * n, n);
        op_convert(&dst, &src);
    }
    a->used = mark;
}

static void cache_reorder(decoder_cache *c, arena *a, const int32_t *parent) {
    for (int64_t l = 0; l < c->layers; l++) {
        reorder_rows(&c->k[l], a, c->cap, c->len, parent, c->batch);
        reorder_rows(&c->v[l], a, c->cap, c->len, parent, c->batch);
    }
    reorder_rows(&c->mask, a, c->cap, c->len, parent, c->batch);
    int32_t *old = aimc_xcalloc((size_t)(c->batch * c->cap), sizeof *old);
    memcpy(old, c->host_mask, (size_t)(c->batch * c->cap) * sizeof *old);
    for (int64_t j = 0; j < c->batch; j++)
        memcpy(c->host_mask + j * c->cap, old + (int64_t)parent[j] * c->cap, (size_t)c->len * sizeof *old);
    free(old);
}

/* Prefills the prompt once (batch 1) and copies it into sequence 0 of the
 * beam cache; the first logits row goes to host_row. */
static void beam_prefill(const decoder *m, arena *a, const tensor *prompt, decoder_cache *beams,
                         float *host_row) {
    size_t mark = a->used;
    decoder_cache one;
    decoder_cache_init(&one, m, 1, beams->cap, DEC_POS_ARANGE);
    tensor logits = arena_new(a, DT_F32, 1, 1, m->cfg.vocab);
    decoder_step(m, &one, a, prompt, NULL, &logits);
    download_rows(&logits, 1, host_row);
    cache_copy_seq(beams, 0, &one, 0, one.len);
    beams->len = one.len;
    decoder_cache_free(&one);
    a->used = mark;
}

/* Feeds the next beams' tokens (rows past n_next repeat beam 0: their
 * results are never read) and downloads the logits of the n_next rows. */
static void beam_step(const decoder *m, arena *a, decoder_cache *cache, beam_state *s, float *host) {
    size_t mark = a->used;
    int nb = s->nb;
    for (int j = s->n_next; j < nb; j++) s->parent[j] = s->parent[0], s->token[j] = s->token[0];
    cache_reorder(cache, a, s->parent);
    tensor logits = arena_new(a, DT_F32, nb, 1, m->cfg.vocab);
    tensor e = decoder_embed_tokens(m, a, s->token, nb, 1);
    decoder_step(m, cache, a, &e, NULL, &logits);
    download_rows(&logits, s->n_next, host);
    a->used = mark;
}

static void take_best(const beam_state *s, gen_result *out) {
    int best = 0;
    for (int i = 1; i < s->n_pool; i++)
        if (s->pool[i].score > s->pool[best].score) best = i;
    const hyp *h = &s->pool[best];
    memcpy(out->ids, h->ids, (size_t)h->n * sizeof *h->ids);
    out->n = h->n, out->sum_logprob = h->sum, out->score = h->score;
    out->stop = h->stop, out->stop_string = h->stop_string;
}

int gen_beam(const decoder *m, arena *a, const tensor *prompt, const gen_config *c,
             gen_result *out, char *err, size_t errlen) {
    if (begin(m, prompt, c, out, err, errlen)) return -1;
    int64_t vocab = m->cfg.vocab;
    int nb = c->num_beams;
    size_t mark = a->used;
    beam_state s;
    beam_state_init(&s, nb, c->max_new_tokens);
    decoder_cache cache;
    decoder_cache_init(&cache, m, nb, out->prompt_len + c->max_new_tokens, DEC_POS_ARANGE);
    out->cache_bytes = cache_bytes(&cache) + cache_bytes(&cache) / (size_t)nb; /* + the prefill's batch-1 cache */
    uint8_t *allowed = allowed_mask(c, vocab);
    float *rows = aimc_xcalloc((size_t)(nb * vocab), sizeof *rows);
    double *lp = aimc_xcalloc((size_t)(nb * vocab), sizeof *lp);
    cand *top = aimc_xcalloc((size_t)(2 * nb), sizeof *top);
    int32_t *seq = aimc_xcalloc((size_t)c->max_new_tokens, sizeof *seq);
    beam_prefill(m, a, prompt, &cache, rows);
    out->forward_steps = 1;
    for (int64_t len = 1;; len++) {
        for (int b = 0; b < s.n_run; b++) gen_log_softmax(rows + b * vocab, vocab, allowed, lp + b * vocab);
        int n_top = select_candidates(&s, lp, vocab, top);
        process_candidates(&s, c, top, n_top, vocab, len, seq);
        if (beam_done(&s, c, len)) break;
        beam_step(m, a, &cache, &s, rows);
        out->forward_steps++;
        advance(&s);
    }
    int rc = 0;
    if (s.n_pool == 0) rc = aimc_set_err(err, errlen,
                                         "beam search: no finite-score continuation (check the allowed tokens)");
    else take_best(&s, out);
    if (!rc) finish_text(c, out);
    free(rows), free(lp), free(top), free(seq), free(allowed);
    beam_state_free(&s);
    decoder_cache_free(&cache);
    a->used = mark;
    return rc;
}

int gen_generate(const decoder *m, arena *a, const tensor *prompt, const gen_config *c,
                 gen_result *out, char *err, size_t errlen) {
    if (c->num_beams == 1) return gen_greedy(m, a, prompt, c, out, err, errlen);
    return gen_beam(m, a, prompt, c, out, err, errlen);
}
