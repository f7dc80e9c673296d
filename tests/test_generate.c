/* Generation (host/generate.h) on the tiny LLaVA (LLaMA) and BLIP-2 (OPT)
 * decoders, on the cpu backend, against references computed here by full
 * forward passes without a KV cache:
 *  - greedy with the cache = argmax decoding by a full forward per token
 *    (random prompts, EOS on and off, max_new 1..10): the same ids (a
 *    mismatch is accepted only at a step whose top-2 logits differ by less
 *    than 1e-4), the same stop reason, sum of log-probabilities |diff| <= 1e-4;
 *  - beam search with 1 beam (every early-stopping mode) = greedy;
 *  - beam search over a 4-token allowed set, 3 new tokens, 12 beams (no
 *    pruning possible: at most 9 running beams, and every finishing
 *    candidate of steps 1-2 ranks among the 12 candidates there; at step 3
 *    all have length 3, so the best ranks first) = a brute-force
 *    enumeration of every sequence, scored
 *    sum logprob / len^alpha from full forwards, for alpha 0, 1, 2, -0.5 and
 *    two EOS choices; with 2 beams the returned score equals the full-forward
 *    score of the returned sequence and is <= the optimum;
 *  - beam search (2-5 beams, 2-8 new tokens, a frequent token as EOS, every
 *    early-stopping mode, alpha 0, 1, 2.5) = the same algorithm written out
 *    here with full forwards instead of the cache and a full sort of the
 *    candidates: same ids, score rel <= 1e-5;
 *  - stop strings end generation at the first token whose decoded text
 *    contains one, and the text is cut before it; max tokens is respected;
 *  - bad configurations are refused with a message.
 * The arena is filled with NaN before each generation. */
#include "testlib.h"
#include "model_fixture.h"
#include "../host/generate.h"
#include "../host/mllm.h"
#include <limits.h>

#define ARENA_BYTES ((size_t)64 << 20)

static const backend *be;
static arena ar;

static void model_path(const char *name, char *out, size_t n) {
    snprintf(out, n, "%s/tests/fixtures/models/%s", fx_repo_root(), name);
}

static void poison_arena(void) {
    arena_reset(&ar);
    memset(ar.base, 0xff, ar.cap); /* all-ones bytes are NaN floats */
}

/* ---- the reference: full forwards ------------------------------------------------ */

typedef struct prompt_case {
    int32_t *ids;
    int64_t len;
} prompt_case;

static prompt_case random_prompt(const decoder *lm, int64_t len) {
    prompt_case p = {tl_alloc((size_t)len * sizeof(int32_t)), len};
    for (int64_t i = 0; i < len; i++) p.ids[i] = (int32_t)(3 + rng_int(lm->cfg.vocab - 3));
    return p;
}

/* Logits (f32, V) at the last position of prompt + gen, by one forward of
 * the whole sequence without a cache. */
static void full_last_logits(const decoder *lm, const prompt_case *p, const int32_t *gen, int64_t n, float *out) {
    size_t mark = ar.used;
    int64_t len = p->len + n;
    int32_t *ids = tl_alloc((size_t)len * sizeof *ids);
    memcpy(ids, p->ids, (size_t)p->len * sizeof *ids);
    if (n) memcpy(ids + p->len, gen, (size_t)n * sizeof *ids);
    tensor x = decoder_embed_tokens(lm, &ar, ids, 1, len);
    decoder_fwd_opts o = {.want_logits = 1, .pos_mode = DEC_POS_ARANGE};
    decoder_pass pass;
    decoder_forward(lm, &ar, &x, NULL, &o, &pass);
    int64_t v = lm->cfg.vocab;
    memcpy(out, (const float *)pass.logits.data + (len - 1) * v, (size_t)v * sizeof *out);
    decoder_pass_release(&pass);
    free(ids);
    ar.used = mark;
}

static void log_softmax_ref(const float *x, int64_t v, double *out) {
    double mx = -INFINITY, s = 0;
    for (int64_t i = 0; i < v; i++) mx = x[i] > mx ? x[i] : mx;
    for (int64_t i = 0; i < v; i++) s += exp((double)x[i] - mx);
    for (int64_t i = 0; i < v; i++) out[i] = (double)x[i] - mx - log(s);
}

/* The prompt's embeddings on the backend, in the arena. */
static tensor prompt_embeds(const decoder *lm, const prompt_case *p) {
    return decoder_embed_tokens(lm, &ar, p->ids, 1, p->len);
}

/* ---- greedy ------------------------------------------------------------------------ */

typedef struct greedy_ref {
    int32_t ids[64];
    double margin[64]; /* top-1 minus top-2 logit at each step */
    int64_t n;
    double sum;
    int eos_hit;
} greedy_ref;

static void greedy_reference(const decoder *lm, const prompt_case *p, int64_t max_new, int32_t eos, greedy_ref *r) {
    int64_t v = lm->cfg.vocab;
    float *row = tl_alloc((size_t)v * sizeof *row);
    double *lp = tl_alloc((size_t)v * sizeof *lp);
    memset(r, 0, sizeof *r);
    while (r->n < max_new) {
        full_last_logits(lm, p, r->ids, r->n, row);
        int32_t best = 0, second = -1;
        for (int32_t t = 1; t < v; t++) {
            if (row[t] > row[best]) second = best, best = t;
            else if (second < 0 || row[t] > row[second]) second = t;
        }
        log_softmax_ref(row, v, lp);
        r->margin[r->n] = (double)row[best] - (double)row[second];
        r->sum += lp[best];
        r->ids[r->n++] = best;
        if (best == eos) {
            r->eos_hit = 1;
            break;
        }
    }
    free(row), free(lp);
}

/* ids equal, or they first differ at a near-tie step of the reference. */
static int same_or_tie(const int32_t *got, int64_t n_got, const greedy_ref *r) {
    int64_t n = n_got < r->n ? n_got : r->n;
    for (int64_t i = 0; i < n; i++)
        if (got[i] != r->ids[i]) return r->margin[i] < 1e-4;
    return n_got == r->n;
}

static int64_t first_difference(const int32_t *got, int64_t n_got, const greedy_ref *r) {
    int64_t n = n_got < r->n ? n_got : r->n;
    for (int64_t i = 0; i < n; i++)
        if (got[i] != r->ids[i]) return i;
    return n_got == r->n ? -1 : n;
}

static void check_beam1(const char *name, const decoder *lm, const prompt_case *p, const gen_config *c,
                        const gen_result *greedy) {
    for (int es = 0; es < 3; es++) {
        gen_config b = *c;
        b.num_beams = 1;
        b.early_stopping = (gen_early_stop)es;
        gen_result r;
        char err[256];
        poison_arena();
        tensor prompt = prompt_embeds(lm, p);
        int rc = gen_beam(lm, &ar, &prompt, &b, &r, err, sizeof err);
        int same = rc == 0 && r.n == greedy->n && !memcmp(r.ids, greedy->ids, (size_t)r.n * sizeof *r.ids);
        CHECK(same, "%s: beam search with 1 beam (early %d) differs from greedy (n %lld vs %lld)", name, es,
              (long long)r.n, (long long)greedy->n);
        CHECK(rc == 0 && fabs(r.sum_logprob - greedy->sum_logprob) <= 1e-9 && r.stop == greedy->stop,
              "%s: beam-1 sum %.9g vs greedy %.9g, stop %d vs %d", name, r.sum_logprob, greedy->sum_logprob,
              (int)r.stop, (int)greedy->stop);
        gen_result_free(&r);
    }
}

static void test_greedy(const char *name, const decoder *lm, int32_t model_eos, int trials) {
    for (int trial = 0; trial < trials; trial++) {
        prompt_case p = random_prompt(lm, 2 + rng_int(11));
        int64_t max_new = 1 + rng_int(10);
        int32_t eos = trial % 2 ? model_eos : -1;
        greedy_ref ref;
        greedy_reference(lm, &p, max_new, eos, &ref);
        gen_config c;
        gen_config_default(&c);
        c.max_new_tokens = max_new;
        c.eos_id = eos;
        poison_arena();
        tensor prompt = prompt_embeds(lm, &p);
        size_t used = ar.used;
        gen_result r;
        char err[256];
        int rc = gen_greedy(lm, &ar, &prompt, &c, &r, err, sizeof err);
        CHECK(rc == 0, "%s: gen_greedy failed: %s", name, err);
        CHECK(ar.used == used, "%s: the arena was not left as found", name);
        CHECK(same_or_tie(r.ids, r.n, &ref), "%s trial %d: greedy ids differ from full-forward argmax at step %lld",
              name, trial, (long long)first_difference(r.ids, r.n, &ref));
        if (first_difference(r.ids, r.n, &ref) < 0) {
            CHECK(fabs(r.sum_logprob - ref.sum) <= 1e-4, "%s: sum logprob %.8g vs reference %.8g", name,
                  r.sum_logprob, ref.sum);
            gen_stop_reason want = ref.eos_hit ? GEN_STOP_EOS : GEN_STOP_LENGTH;
            CHECK(r.stop == want, "%s: stop %s, expected %s", name, gen_stop_name(r.stop), gen_stop_name(want));
        }
        CHECK(r.n <= max_new && (r.stop != GEN_STOP_LENGTH || r.n == max_new),
              "%s: %lld tokens for max_new %lld", name, (long long)r.n, (long long)max_new);
        CHECK(r.prompt_len == p.len && r.forward_steps == r.n, "%s: prompt_len %lld, %lld forward steps for %lld tokens",
              name, (long long)r.prompt_len, (long long)r.forward_steps, (long long)r.n);
        int64_t cap = p.len + max_new;
        size_t kv = (size_t)(2 * lm->cfg.layers * cap * lm->cfg.kv_heads * lm->cfg.head_dim) * 4 + (size_t)cap * 4;
        CHECK(r.cache_bytes == kv, "%s: cache_bytes %zu, expected %zu", name, r.cache_bytes, kv);
        check_beam1(name, lm, &p, &c, &r);
        gen_result_free(&r);
        free(p.ids);
    }
}

/* ---- beam search vs brute force ----------------------------------------------------------- */

/* Every complete sequence over the allowed tokens (ending in EOS or at
 * max_new tokens) with its sum of log-probabilities from full forwards. */
typedef struct brute {
    const decoder *lm;
    const prompt_case *p;
    const int32_t *allowed;
    int n_allowed;
    int32_t eos;
    int64_t max_new;
    int n_seq;
    int32_t seq_ids[128][4];
    int64_t seq_n[128];
    double seq_sum[128];
} brute;

static void brute_extend(brute *b, int32_t *seq, int64_t n, double sum) {
    int64_t v = b->lm->cfg.vocab;
    float *row = tl_alloc((size_t)v * sizeof *row);
    double *lp = tl_alloc((size_t)v * sizeof *lp);
    full_last_logits(b->lm, b->p, seq, n, row);
    log_softmax_ref(row, v, lp);
    for (int i = 0; i < b->n_allowed; i++) {
        int32_t t = b->allowed[i];
        seq[n] = t;
        double s = sum + lp[t];
        if (t != b->eos && n + 1 < b->max_new) {
            brute_extend(b, seq, n + 1, s);
        } else if (b->n_seq < 128) {
            memcpy(b->seq_ids[b->n_seq], seq, (size_t)(n + 1) * sizeof *seq);
            b->seq_n[b->n_seq] = n + 1;
            b->seq_sum[b->n_seq++] = s;
        }
    }
    free(row), free(lp);
}

/* The best length-penalised sequence (index) and the runner-up's score. */
static int brute_best(const brute *b, double alpha, double *best, double *second) {
    int at = -1;
    *best = *second = -INFINITY;
    for (int i = 0; i < b->n_seq; i++) {
        double score = b->seq_sum[i] / pow((double)b->seq_n[i], alpha);
        if (score > *best) *second = *best, *best = score, at = i;
        else if (score > *second) *second = score;
    }
    return at;
}

/* sum logprob of a full sequence by full forwards. */
static double sequence_logprob(const decoder *lm, const prompt_case *p, const int32_t *ids, int64_t n) {
    int64_t v = lm->cfg.vocab;
    float *row = tl_alloc((size_t)v * sizeof *row);
    double *lp = tl_alloc((size_t)v * sizeof *lp), sum = 0;
    for (int64_t i = 0; i < n; i++) {
        full_last_logits(lm, p, ids, i, row);
        log_softmax_ref(row, v, lp);
        sum += lp[ids[i]];
    }
    free(row), free(lp);
    return sum;
}

/* The 4 tokens with the highest first-step logits (ties: lower id). */
static void top4(const decoder *lm, const prompt_case *p, int32_t *out) {
    int64_t v = lm->cfg.vocab;
    float *row = tl_alloc((size_t)v * sizeof *row);
    full_last_logits(lm, p, NULL, 0, row);
    for (int k = 0; k < 4; k++) {
        int32_t best = -1;
        for (int32_t t = 0; t < v; t++) {
            int taken = 0;
            for (int j = 0; j < k; j++) taken |= out[j] == t;
            if (!taken && (best < 0 || row[t] > row[best])) best = t;
        }
        out[k] = best;
    }
    free(row);
}

static void run_beam_case(const char *name, const decoder *lm, const prompt_case *p, const brute *b, double alpha,
                          gen_early_stop early) {
    double best, second;
    int at = brute_best(b, alpha, &best, &second);
    gen_config c;
    gen_config_default(&c);
    c.max_new_tokens = b->max_new, c.num_beams = 12, c.length_penalty = alpha, c.early_stopping = early;
    c.eos_id = b->eos, c.allowed = b->allowed, c.n_allowed = b->n_allowed;
    poison_arena();
    tensor prompt = prompt_embeds(lm, p);
    gen_result r;
    char err[256];
    int rc = gen_beam(lm, &ar, &prompt, &c, &r, err, sizeof err);
    CHECK(rc == 0, "%s: gen_beam failed: %s", name, err);
    int same = at >= 0 && r.n == b->seq_n[at] && !memcmp(r.ids, b->seq_ids[at], (size_t)r.n * sizeof *r.ids);
    CHECK(same || best - second < 1e-6,
          "%s (alpha %g, eos %d): beam search picked %lld tokens (score %.8g), brute force %lld tokens (score %.8g)",
          name, alpha, b->eos, (long long)r.n, r.score, (long long)(at >= 0 ? b->seq_n[at] : -1), best);
    CHECK(fabs(r.score - best) <= 1e-5 * (1 + fabs(best)), "%s (alpha %g): score %.9g vs brute force %.9g", name,
          alpha, r.score, best);
    gen_result_free(&r);

    /* 2 beams prune: its answer is still scored correctly and never beats the optimum */
    c.num_beams = 2;
    poison_arena();
    prompt = prompt_embeds(lm, p);
    rc = gen_beam(lm, &ar, &prompt, &c, &r, err, sizeof err);
    double sum = rc ? NAN : sequence_logprob(lm, p, r.ids, r.n);
    double want = sum / pow((double)r.n, alpha);
    CHECK(rc == 0 && fabs(r.score - want) <= 1e-5 * (1 + fabs(want)) && r.score <= best + 1e-6,
          "%s (alpha %g, 2 beams): score %.9g, recomputed %.9g, optimum %.9g", name, alpha, r.score, want, best);
    gen_result_free(&r);
}

static void test_beam_bruteforce(const char *name, const decoder *lm, int32_t model_eos) {
    static const double alphas[] = {0.0, 1.0, 2.0, -0.5};
    for (int trial = 0; trial < 2; trial++) {
        prompt_case p = random_prompt(lm, 3 + rng_int(6));
        int32_t allowed[4];
        top4(lm, &p, allowed);
        /* trial 0: EOS is the second-best first token (finishing competes);
         * trial 1: the model's own EOS replaces the fourth */
        int32_t eos = allowed[1];
        if (trial == 1) {
            eos = model_eos;
            if (allowed[0] != eos && allowed[1] != eos && allowed[2] != eos) allowed[3] = eos;
        }
        brute *b = tl_alloc(sizeof *b);
        *b = (brute){.lm = lm, .p = &p, .allowed = allowed, .n_allowed = 4, .eos = eos, .max_new = 3};
        int32_t seq[4];
        brute_extend(b, seq, 0, 0.0);
        CHECK(b->n_seq == 1 + 3 + 9 * 4, "%s: %d complete sequences enumerated, expected 40", name, b->n_seq);
        for (int i = 0; i < 4; i++) run_beam_case(name, lm, &p, b, alphas[i], (gen_early_stop)(i % 3));
        free(b);
        free(p.ids);
    }
}

/* ---- beam search vs a cache-free re-implementation ------------------------------------------- */

typedef struct ref_cand {
    double score;
    int64_t flat;
} ref_cand;

static int ref_cand_cmp(const void *x, const void *y) {
    const ref_cand *a = x, *b = y;
    if (a->score != b->score) return a->score > b->score ? -1 : 1;
    return a->flat < b->flat ? -1 : a->flat > b->flat;
}

typedef struct ref_hyp {
    int32_t ids[16];
    int64_t n;
    double score;
} ref_hyp;

/* generate.h's beam search written out plainly: every beam's logits from a
 * full forward (no cache), all candidates sorted. */
static ref_hyp ref_beam(const decoder *lm, const prompt_case *p, int nb, int64_t max_new, int32_t eos, double alpha,
                        gen_early_stop early, const int32_t *allowed, int n_allowed) {
    int64_t v = lm->cfg.vocab;
    int32_t run[64][16], next[64][16];
    double run_sum[64] = {0}, next_sum[64];
    int n_run = 1;
    ref_hyp pool[64], best = {.score = -INFINITY};
    int n_pool = 0;
    float *row = tl_alloc((size_t)v * sizeof *row);
    double *lp = tl_alloc((size_t)(nb * v) * sizeof *lp);
    ref_cand *c = tl_alloc((size_t)(nb * v) * sizeof *c);
    for (int64_t len = 1;; len++) {
        for (int b = 0; b < n_run; b++) {
            full_last_logits(lm, p, run[b], len - 1, row);
            log_softmax_ref(row, v, lp + b * v);
        }
        int64_t nc = 0;
        for (int64_t f = 0; f < n_run * v; f++) {
            int ok = !allowed;
            for (int i = 0; allowed && i < n_allowed; i++) ok |= allowed[i] == f % v;
            if (ok) c[nc++] = (ref_cand){run_sum[f / v] + lp[f], f};
        }
        qsort(c, (size_t)nc, sizeof *c, ref_cand_cmp);
        int n_next = 0;
        for (int r = 0; r < 2 * nb && r < nc; r++) {
            int b = (int)(c[r].flat / v);
            int32_t t = (int32_t)(c[r].flat % v);
            int32_t seq[16];
            memcpy(seq, run[b], (size_t)(len - 1) * sizeof *seq);
            seq[len - 1] = t;
            if (t == eos || len == max_new) {
                if (r >= nb) continue;
                ref_hyp h = {.n = len, .score = c[r].score / pow((double)len, alpha)};
                memcpy(h.ids, seq, (size_t)len * sizeof *seq);
                if (n_pool < nb) {
                    pool[n_pool++] = h;
                    continue;
                }
                int w = 0;
                for (int i = 1; i < n_pool; i++)
                    if (pool[i].score <= pool[w].score) w = i;
                if (!(h.score > pool[w].score)) continue;
                memmove(&pool[w], &pool[w + 1], (size_t)(n_pool - w - 1) * sizeof *pool);
                pool[n_pool - 1] = h;
            } else if (n_next < nb) {
                memcpy(next[n_next], seq, (size_t)len * sizeof *seq);
                next_sum[n_next++] = c[r].score;
            }
        }
        int done = n_next == 0 || len >= max_new;
        if (!done && n_pool == nb) {
            double worst = INFINITY;
            for (int i = 0; i < n_pool; i++) worst = pool[i].score < worst ? pool[i].score : worst;
            double blen = early == GEN_EARLY_NEVER && alpha > 0 ? (double)max_new : (double)len;
            done = early == GEN_EARLY_TRUE || !(next_sum[0] / pow(blen, alpha) > worst);
        }
        if (done) break;
        memcpy(run, next, sizeof run);
        memcpy(run_sum, next_sum, (size_t)n_next * sizeof *run_sum);
        n_run = n_next;
    }
    for (int i = 0; i < n_pool; i++)
        if (pool[i].score > best.score) best = pool[i];
    free(row), free(lp), free(c);
    return best;
}

static void test_beam_reference(const char *name, const decoder *lm, int trials) {
    for (int trial = 0; trial < trials; trial++) {
        prompt_case p = random_prompt(lm, 3 + rng_int(8));
        int nb = 2 + (int)rng_int(4);
        int64_t max_new = 2 + rng_int(7);
        static const double alphas[3] = {1.0, 0.0, 2.5};
        double alpha = alphas[trial % 9 / 3]; /* every (alpha, early stopping) pair, with and without restriction */
        gen_early_stop early = (gen_early_stop)(trial % 3);
        /* a token greedy decoding produces as EOS makes hypotheses finish early
         * and often (random models repeat tokens) */
        greedy_ref g;
        greedy_reference(lm, &p, 3, -1, &g);
        int32_t eos = g.ids[trial % 3];
        /* trials 9-17: only three tokens, EOS one of them, so that hypotheses
         * fill the pool before the end and early stopping decides */
        int32_t top[4], allowed[3];
        top4(lm, &p, top);
        int n_allowed = 0;
        for (int i = 0; i < 4 && n_allowed < 2; i++)
            if (top[i] != eos) allowed[n_allowed++] = top[i];
        allowed[n_allowed++] = eos;
        int restrict_vocab = trial % 18 >= 9;
        ref_hyp want = ref_beam(lm, &p, nb, max_new, eos, alpha, early, restrict_vocab ? allowed : NULL, 3);
        gen_config c;
        gen_config_default(&c);
        c.max_new_tokens = max_new, c.num_beams = nb, c.length_penalty = alpha, c.early_stopping = early;
        c.eos_id = eos;
        if (restrict_vocab) c.allowed = allowed, c.n_allowed = 3;
        poison_arena();
        tensor prompt = prompt_embeds(lm, &p);
        gen_result r;
        char err[256];
        int rc = gen_beam(lm, &ar, &prompt, &c, &r, err, sizeof err);
        CHECK(rc == 0 && r.n == want.n && !memcmp(r.ids, want.ids, (size_t)r.n * sizeof *r.ids) &&
                  fabs(r.score - want.score) <= 1e-5 * (1 + fabs(want.score)),
              "%s: %d beams, %lld new, alpha %g, early %d: %lld tokens score %.8g, cache-free reference %lld tokens "
              "score %.8g",
              name, nb, (long long)max_new, alpha, (int)early, (long long)r.n, r.score, (long long)want.n, want.score);
        gen_result_free(&r);
        free(p.ids);
    }
}

/* ---- stop strings, max tokens, bad configurations --------------------------------------------- */

static char *decode_known(const tokenizer *tok, const int32_t *ids, int64_t n) {
    int32_t *known = tl_alloc((size_t)(n + 1) * sizeof *known);
    int64_t k = 0;
    for (int64_t i = 0; i < n; i++)
        if (tokenizer_id_to_token(tok, ids[i])) known[k++] = ids[i];
    char err[256];
    char *s = tokenizer_decode(tok, known, k, 1, NULL, err, sizeof err);
    free(known);
    return s ? s : strdup("");
}

/* A stop string that first appears in the text of ids[0..j) for some
 * j >= 2: the last (up to 3) characters of that text. */
static int pick_stop(const tokenizer *tok, const int32_t *ids, int64_t n, char *stop, size_t len) {
    for (int64_t j = 2; j <= n; j++) {
        char *prev = decode_known(tok, ids, j - 1), *cur = decode_known(tok, ids, j);
        size_t cl = strlen(cur), start = cl;
        for (int chars = 0; start > 0 && chars < 3;) {
            start--;
            if (((unsigned char)cur[start] & 0xc0) != 0x80) chars++;
        }
        int ok = cl > 0 && cl - start < len && !strstr(prev, cur + start);
        if (ok) snprintf(stop, len, "%s", cur + start);
        free(prev), free(cur);
        if (ok) return 1;
    }
    return 0;
}

static void test_stop_strings(const decoder *lm, const tokenizer *tok) {
    for (int trial = 0; trial < 3; trial++) {
        prompt_case p = random_prompt(lm, 4 + rng_int(6));
        gen_config c;
        gen_config_default(&c);
        c.max_new_tokens = 12, c.tok = tok;
        poison_arena();
        tensor prompt = prompt_embeds(lm, &p);
        gen_result full, r;
        char err[256], stop[32];
        gen_greedy(lm, &ar, &prompt, &c, &full, err, sizeof err);
        CHECK(full.n == 12 && full.stop == GEN_STOP_LENGTH, "stop: %lld tokens without EOS (max 12)", (long long)full.n);
        if (!pick_stop(tok, full.ids, full.n, stop, sizeof stop)) {
            gen_result_free(&full), free(p.ids);
            continue;
        }
        int64_t want_n = 0;
        for (int64_t j = 1; j <= full.n && !want_n; j++) {
            char *t = decode_known(tok, full.ids, j);
            if (strstr(t, stop)) want_n = j;
            free(t);
        }
        char *text = decode_known(tok, full.ids, want_n);
        text[strstr(text, stop) - text] = 0;
        const char *stops[2] = {"\x01never\x02", stop};
        c.stop = stops, c.n_stop = 2;
        for (int nb = 1; nb <= 2; nb++) {
            poison_arena();
            prompt = prompt_embeds(lm, &p);
            int rc = nb == 1 ? gen_greedy(lm, &ar, &prompt, &c, &r, err, sizeof err)
                             : (c.num_beams = 1, gen_beam(lm, &ar, &prompt, &c, &r, err, sizeof err));
            CHECK(rc == 0 && r.n == want_n && !memcmp(r.ids, full.ids, (size_t)want_n * sizeof *r.ids) &&
                      r.stop == GEN_STOP_STRING && r.stop_string == 1,
                  "stop '%s' (%s): %lld tokens, stop %s, expected %lld", stop, nb == 1 ? "greedy" : "beam",
                  (long long)r.n, gen_stop_name(r.stop), (long long)want_n);
            CHECK(rc == 0 && r.text && !strcmp(r.text, text), "stop '%s': text '%s', expected '%s'", stop,
                  r.text ? r.text : "(null)", text);
            gen_result_free(&r);
        }
        free(text);
        gen_result_free(&full);
        free(p.ids);
    }
}

static void expect_config_error(const decoder *lm, const gen_config *c, const char *want) {
    char err[256] = "";
    int rc = gen_config_check(c, lm, err, sizeof err);
    CHECK(rc == -1 && strstr(err, want), "config error: want '%s', got %d '%s'", want, rc, err);
}

static void test_bad_configs(const decoder *lm) {
    gen_config c;
    gen_config_default(&c);
    char err[256];
    CHECK(gen_config_check(&c, lm, err, sizeof err) == 0, "the default configuration is refused: %s", err);
    gen_config b = c;
    b.max_new_tokens = 0;
    expect_config_error(lm, &b, "max new tokens");
    b = c, b.num_beams = 0;
    expect_config_error(lm, &b, "beams");
    b = c, b.eos_id = (int32_t)lm->cfg.vocab;
    expect_config_error(lm, &b, "EOS id");
    const char *empty[1] = {""};
    b = c, b.stop = empty, b.n_stop = 1;
    expect_config_error(lm, &b, "tokenizer");
    int32_t bad = -3;
    b = c, b.allowed = &bad, b.n_allowed = 1;
    expect_config_error(lm, &b, "allowed token");
    b = c, b.length_penalty = NAN;
    expect_config_error(lm, &b, "length penalty");
    /* a prompt of the wrong width */
    poison_arena();
    tensor wrong = arena_new(&ar, DT_F32, 1, 3, lm->cfg.hidden + 1);
    gen_result r;
    CHECK(gen_generate(lm, &ar, &wrong, &c, &r, err, sizeof err) == -1 && strstr(err, "prompt"),
          "a mis-shaped prompt is accepted (%s)", err);
    gen_result_free(&r);
}

int main(void) {
    tests_begin("test_generate");
    be = backend_cpu();
    arena_init(&ar, be, ARENA_BYTES);
    char path[PATH_MAX + 64], err[512];
    model_path("llava", path, sizeof path);
    mllm *llava = mllm_load(path, be, DT_F32);
    tokenizer *tok = tokenizer_load(path, err, sizeof err);
    if (!tok) printf("FAIL: %s\n", err), exit(1);
    model_path("blip2", path, sizeof path);
    mllm *blip2 = mllm_load(path, be, DT_F32);

    test_bad_configs(mllm_decoder(llava));
    test_greedy("llama", mllm_decoder(llava), 2, 4);
    test_greedy("opt", mllm_decoder(blip2), 2, 4);
    test_beam_bruteforce("llama", mllm_decoder(llava), 2);
    test_beam_bruteforce("opt", mllm_decoder(blip2), 2);
    test_beam_reference("llama", mllm_decoder(llava), 18);
    test_beam_reference("opt", mllm_decoder(blip2), 18);
    test_stop_strings(mllm_decoder(llava), tok);

    tokenizer_free(tok);
    mllm_free(llava);
    mllm_free(blip2);
    arena_free(&ar);
    return tests_done();
}
