/* aimc eval: a benchmark run in the AIM paper's protocol (OpenFlamingo's
 * prompts): read the train and test splits in their published formats
 * (host/eval_data.h), pick k demonstrations per query from the train split
 * (seeded random, or CLIP retrieval), answer every test query with the
 * frozen model in --mode aim / icl / zero-shot (host/infer.h), score with
 * host/metrics.h, and report the score, tokens per prompt, peak memory and
 * latency per query as one JSON line (docs/eval.md). */
#include "../kernels/check.h"
#include "args.h"
#include "backend.h"
#include "bank.h"
#include "commands.h"
#include "eval.h"
#include "generate.h"
#include "infer.h"
#include "metrics.h"
#include "mllm.h"
#include <cjson/cJSON.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#ifdef AIMC_CUDA
#include <cuda_runtime_api.h>
#endif

#define EVAL_MAX_FILES 16
#define EVAL_MAX_SHOTS 4096

typedef struct eval_cli {
    const char *model, *task, *projector, *mode, *bank, *retrieval, *clip_model, *out, *summary, *csv;
    const char *images, *train_images, *image_pattern, *train_image_pattern, *train_split, *test_split;
    const char *templates, *template_name, *device, *layer, *export_demos, *label;
    int64_t shots, seed, limit, beams, max_new, arena_mb;
    double length_penalty;
    int verbose;
    int n_train, n_test;
    const char *train[EVAL_MAX_FILES], *test[EVAL_MAX_FILES];
} eval_cli;

/* What the run measured. */
typedef struct eval_stats {
    double *latency;       /* seconds per query */
    int64_t *prompt_len;   /* positions per query */
    size_t arena_peak, cache_peak, device_peak, weights;
    double *item_score;    /* vqa: accuracy; hateful: P(yes) */
    int *labels;           /* hateful */
    cider_scorer *cider;   /* caption */
    double wall_s;
} eval_stats;

/* Everything a run holds (freed by run_free). */
typedef struct eval_run {
    const eval_cli *cli;
    eval_task task;
    infer_mode mode;
    int k;
    eval_set train, test;
    infer_templates ts;
    const infer_template *tpl;
    infer_session sess; /* model, projector, bank, layer */
    int64_t *demos;       /* [test.n * k] train indices, in prompt order */
    char **demo_text;     /* per train item, made when first needed */
    int64_t *demo_tokens; /* per train item, -1 until tokenized */
    tok_ids (*answers)[2];/* hateful: per query, the tokens of "yes" and "no" */
    FILE *out;
    eval_stats st;
} eval_run;

static int usage(const char *msg, const char *arg) {
    fprintf(stderr, "aimc eval: error: %s%s (see 'aimc eval --help')\n", msg, arg ? arg : "");
    return 2;
}


/* ---- arguments -------------------------------------------------------------------- */

/* --train / --test take every following word up to the next option. */
static int take_files(int argc, char **argv, int *i, const char **files, int *n, const char *flag) {
    const char *a = argv[*i];
    if (a[strlen(flag)] == '=') {
        if (*n == EVAL_MAX_FILES) return usage("too many files for ", flag), -1;
        files[(*n)++] = a + strlen(flag) + 1;
        return 0;
    }
    int before = *n;
    while (*i + 1 < argc && strncmp(argv[*i + 1], "--", 2)) {
        if (*n == EVAL_MAX_FILES) return usage("too many files for ", flag), -1;
        files[(*n)++] = argv[++*i];
    }
    if (*n == before) return usage("no file after ", flag), -1;
    return 0;
}

static int is_flag(const char *a, const char *flag) {
    size_t n = strlen(flag);
    return !strncmp(a, flag, n) && (a[n] == 0 || a[n] == '=');
}

/* Takes --train and --test out of argv; returns the new argc, or -1. */
static int extract_files(int argc, char **argv, eval_cli *o) {
    int out = 1;
    for (int i = 1; i < argc; i++) {
        if (is_flag(argv[i], "--train")) {
            if (take_files(argc, argv, &i, o->train, &o->n_train, "--train")) return -1;
        } else if (is_flag(argv[i], "--test")) {
            if (take_files(argc, argv, &i, o->test, &o->n_test, "--test")) return -1;
        } else {
            argv[out++] = argv[i];
        }
    }
    return out;
}

static int check_cli(const eval_cli *o) {
    if (!o->task) return usage("--task is required (vqa, caption or hateful)", NULL);
    if (eval_task_parse(o->task) < 0) return usage("--task must be vqa, caption or hateful, not ", o->task);
    if (infer_mode_parse(o->mode) < 0) return usage("--mode must be aim, icl or zero-shot, not ", o->mode);
    if (strcmp(o->retrieval, "random") && strcmp(o->retrieval, "clip"))
        return usage("--retrieval must be random or clip, not ", o->retrieval);
    if (!strcmp(o->retrieval, "clip") && !o->clip_model) return usage("--retrieval clip needs --clip-model DIR", NULL);
    if (o->shots < 0 || o->shots > EVAL_MAX_SHOTS) return usage("--shots must be in [0, 4096]", NULL);
    if (o->limit < 0) return usage("--limit must be >= 0 (0: the whole test split)", NULL);
    if (o->beams < 1 || o->beams > 64) return usage("--beams must be in [1, 64]", NULL);
    if (o->max_new < 0) return usage("--max-new-tokens must be >= 0 (0: the task's default)", NULL);
    if (!infer_layer_arg_ok(o->layer)) return usage("--layer must be an integer or auto, not ", o->layer);
    if (o->export_demos) return o->n_train ? 0 : usage("--export-demos needs --train FILES", NULL);
    if (!o->model) return usage("--model is required", NULL);
    if (!o->n_test) return usage("--test FILES is required", NULL);
    if (o->shots > 0 && infer_mode_parse(o->mode) != INFER_ZERO_SHOT && !o->n_train)
        return usage("--shots > 0 needs --train FILES (the demonstrations' split)", NULL);
    return 0;
}

/* ---- data ----------------------------------------------------------------------------- */

static void read_split(eval_run *r, eval_set *set, const char *const *files, int n, const char *images,
                       const char *pattern, const char *splits) {
    char err[4096];
    eval_read_opts ro = {.images_dir = images, .image_pattern = pattern, .splits = splits};
    if (eval_read(set, r->task, files, n, &ro, err, sizeof err)) aimc_die("%s", err);
}

static void read_data(eval_run *r) {
    const eval_cli *o = r->cli;
    const char *train_images = o->train_images ? o->train_images : o->images;
    if (o->n_test) read_split(r, &r->test, o->test, o->n_test, o->images, o->image_pattern, o->test_split);
    if (o->n_train && (r->k > 0 || o->export_demos))
        read_split(r, &r->train, o->train, o->n_train, train_images, o->train_image_pattern, o->train_split);
    if (o->limit > 0) eval_set_truncate(&r->test, o->limit);
}

static const char *demo_text(eval_run *r, int64_t i) {
    if (!r->demo_text[i]) r->demo_text[i] = eval_demo_text(r->task, r->tpl, &r->train.items[i]);
    return r->demo_text[i];
}

/* --export-demos: the train split as `aimc bank build` JSONL. */
static int export_demos(eval_run *r) {
    FILE *f = fopen(r->cli->export_demos, "w");
    if (!f) aimc_die("%s: cannot write", r->cli->export_demos);
    r->demo_text = aimc_xcalloc((size_t)r->train.n, sizeof *r->demo_text);
    for (int64_t i = 0; i < r->train.n; i++) {
        const eval_item *it = &r->train.items[i];
        char abs[PATH_MAX];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "id", it->id);
        cJSON_AddStringToObject(o, "image", realpath(it->image, abs) ? abs : it->image);
        cJSON_AddStringToObject(o, "text", demo_text(r, i));
        char *line = cJSON_PrintUnformatted(o);
        fprintf(f, "%s\n", line);
        free(line);
        cJSON_Delete(o);
    }
    if (fclose(f)) aimc_die("%s: write error", r->cli->export_demos);
    fprintf(stderr, "aimc eval: wrote %lld demonstrations to %s (build a bank: aimc bank build --demos %s)\n",
            (long long)r->train.n, r->cli->export_demos, r->cli->export_demos);
    return 0;
}

/* ---- model ------------------------------------------------------------------------------ */

/* The model, the projector and bank when aim uses them, then the layer
 * (as aimc infer); the weights statistic counts the projector's too. */
static void load_session(eval_run *r) {
    const eval_cli *o = r->cli;
    infer_session *s = &r->sess;
    infer_session_load_model(s, o->model, o->device);
    r->st.weights = eval_weights_bytes(o->model, s->be->act_dtype);
    if (o->projector && r->mode == INFER_AIM) {
        infer_session_load_projector(s, o->projector);
        r->st.weights += (size_t)projector_numel(&s->proj) * sizeof(float);
    }
    if (r->mode == INFER_AIM && r->k > 0 && !s->has_proj)
        aimc_die("--mode aim with --shots > 0 needs a trained projector (--projector CKPT or .safetensors)");
    if (o->bank && r->mode == INFER_AIM && r->k > 0) infer_session_open_bank(s, o->bank);
    infer_session_resolve_layer(s, o->layer, r->mode);
}

/* ---- demonstrations ----------------------------------------------------------------------- */

static void select_demos(eval_run *r) {
    char err[4096];
    r->demos = aimc_xcalloc((size_t)(r->test.n * r->k) + 1, sizeof *r->demos);
    float *train_emb = NULL, *test_emb = NULL;
    int64_t dim = 0;
    int clip = !strcmp(r->cli->retrieval, "clip") && r->k > 0;
    if (clip) {
        train_emb = eval_clip_embed(r->cli->clip_model, r->sess.be, &r->train, &dim, err, sizeof err);
        test_emb = train_emb ? eval_clip_embed(r->cli->clip_model, r->sess.be, &r->test, &dim, err, sizeof err) : NULL;
        if (!test_emb) aimc_die("%s", err);
    }
    for (int64_t q = 0; q < r->test.n; q++) {
        const char *id = r->test.items[q].id;
        int64_t *out = r->demos + q * r->k;
        int rc = clip ? eval_select_nearest(&r->train, train_emb, test_emb + q * dim, dim, id, r->k, out, err, sizeof err)
                      : eval_select_random(&r->train, id, r->k, (uint64_t)r->cli->seed, out, err, sizeof err);
        if (rc) aimc_die("%s", err);
    }
    free(train_emb), free(test_emb);
}

static int64_t count_tokens(eval_run *r, const char *text) {
    char err[1024];
    tok_ids ids = {0};
    tokenizer_encode_opts o = {.add_special = 0, .max_length = -1};
    if (tokenizer_encode(r->sess.tok, text, strlen(text), &o, &ids, err, sizeof err)) aimc_die("%s", err);
    int64_t n = ids.n;
    tok_ids_free(&ids);
    return n;
}

static int64_t demo_tokens(eval_run *r, int64_t i) {
    if (r->demo_tokens[i] < 0) r->demo_tokens[i] = count_tokens(r, demo_text(r, i));
    return r->demo_tokens[i];
}

static void answer_tokens(eval_run *r, int64_t q) {
    char err[1024];
    for (int c = 0; c < 2; c++)
        if (eval_answer_tokens(r->sess.tok, r->tpl, &r->test.items[q], eval_hateful_answer(1 - c), &r->answers[q][c],
                               err, sizeof err))
            aimc_die("test item %lld (id %s): %s", (long long)q, r->test.items[q].id, err);
}

/* A query's prompt length, from token counts alone (no image decoding). */
static int64_t planned_len(eval_run *r, int64_t q) {
    episode_item *items = aimc_xcalloc((size_t)r->k + 1, sizeof *items);
    infer_demo *demos = aimc_xcalloc((size_t)r->k + 1, sizeof *demos);
    char *qt = eval_query_text(r->task, r->tpl, &r->test.items[q]);
    for (int j = 0; j < r->k; j++) {
        items[j] = (episode_item){.n_tokens = demo_tokens(r, r->demos[q * r->k + j])};
        demos[j] = (infer_demo){.item = &items[j]};
    }
    items[r->k] = (episode_item){.n_tokens = count_tokens(r, qt)};
    free(qt);
    int64_t len = infer_prompt_len(r->sess.m, r->mode, demos, r->k, &items[r->k]);
    free(items), free(demos);
    return len;
}

/* ---- one query ------------------------------------------------------------------------------ */

static void load_item(eval_run *r, episode_item *it, const char *image, const char *text, const char *what,
                      const eval_item *src) {
    char err[4096], source[512];
    snprintf(source, sizeof source, "%s item %s", what, src->id);
    if (infer_item_load(it, image, text, r->sess.tok, &r->sess.pp, source, err, sizeof err))
        aimc_die("%s item %s: %s", what, src->id, err);
}

/* A demonstration from the bank: its rows, after checking its text. */
static const float *bank_rows(eval_run *r, const eval_item *it, const char *text, int64_t n_tokens) {
    const bank_entry *e = bank_find(r->sess.bk, it->id);
    if (!e)
        aimc_die("%s: no demonstration with id '%s' (build the bank from the train split: aimc eval --export-demos "
                 "FILE, then aimc bank build --demos FILE)", r->sess.bk->path, it->id);
    if (strcmp(e->text, text) || e->n_rows != n_tokens)
        aimc_die("%s: demonstration '%s' holds the text '%s', but this run's template gives '%s' (rebuild the bank)",
                 r->sess.bk->path, it->id, e->text, text);
    return bank_entry_rows(r->sess.bk, e);
}

static void load_demos(eval_run *r, int64_t q, episode_item *items, infer_demo *demos) {
    int need_image = r->mode == INFER_ICL || (r->mode == INFER_AIM && !r->sess.bk);
    for (int j = 0; j < r->k; j++) {
        int64_t t = r->demos[q * r->k + j];
        const eval_item *it = &r->train.items[t];
        load_item(r, &items[j], need_image ? it->image : NULL, demo_text(r, t), "train", it);
        demos[j] = (infer_demo){.item = &items[j]};
        if (r->sess.bk) demos[j].hidden = bank_rows(r, it, demo_text(r, t), items[j].n_tokens);
    }
}

static size_t device_used_bytes(const backend *be) {
#ifdef AIMC_CUDA
    size_t free_b = 0, total = 0;
    if (!strcmp(be->name, "cuda") && cudaMemGetInfo(&free_b, &total) == cudaSuccess) return total - free_b;
#else
    (void)be;
#endif
    return 0;
}

static void gen_setup(const eval_run *r, gen_config *g) {
    infer_session_gen_config(&r->sess, g);
    int64_t dflt = r->task == EVAL_TASK_VQA ? 5 : 20; /* OpenFlamingo's max_generation_length */
    g->max_new_tokens = r->cli->max_new > 0 ? r->cli->max_new : dflt;
    g->num_beams = (int)r->cli->beams;
    g->length_penalty = r->cli->length_penalty;
}

/* What one query produced. */
typedef struct query_result {
    char *generated, *answer;
    double lp[2];     /* hateful: mean log-probability per token of "yes", "no" */
    double score;     /* vqa: accuracy; hateful: P(yes) */
    size_t cache_bytes;
} query_result;

static void answer_query(eval_run *r, arena *a, int64_t q, const tensor *prompt, query_result *res) {
    const decoder *lm = mllm_decoder(r->sess.m);
    const eval_item *it = &r->test.items[q];
    if (r->task == EVAL_TASK_HATEFUL) {
        double sum[2];
        eval_answer_logprobs(lm, a, prompt, r->answers[q], 2, sum, &res->cache_bytes);
        for (int c = 0; c < 2; c++) res->lp[c] = sum[c] / (double)r->answers[q][c].n;
        res->score = eval_two_class_prob(res->lp[0], res->lp[1]);
        res->answer = aimc_strdup(res->score >= 0.5 ? "yes" : "no");
        return;
    }
    gen_config g;
    gen_setup(r, &g);
    gen_result gr;
    char err[1024];
    if (gen_generate(lm, a, prompt, &g, &gr, err, sizeof err)) aimc_die("%s", err);
    res->generated = aimc_strdup(gr.text ? gr.text : "");
    res->cache_bytes = gr.cache_bytes;
    gen_result_free(&gr);
    res->answer = eval_postprocess(r->task, res->generated);
    if (r->task == EVAL_TASK_VQA)
        res->score = metric_vqa_accuracy(res->answer, (const char *const *)it->answers, it->n_answers);
    else
        cider_add(r->st.cider, res->answer, (const char *const *)it->answers, it->n_answers);
}

/* ---- output ---------------------------------------------------------------------------------- */

static cJSON *string_array(char *const *s, int n) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateString(s[i]));
    return a;
}

static void write_item(eval_run *r, int64_t q, const query_result *res) {
    if (!r->out) return;
    const eval_item *it = &r->test.items[q];
    cJSON *o = cJSON_CreateObject(), *ids = cJSON_CreateArray();
    cJSON_AddNumberToObject(o, "index", (double)q);
    cJSON_AddStringToObject(o, "id", it->id);
    cJSON_AddStringToObject(o, "image", it->image);
    if (it->text) cJSON_AddStringToObject(o, r->task == EVAL_TASK_VQA ? "question" : "text", it->text);
    for (int j = 0; j < r->k; j++) cJSON_AddItemToArray(ids, cJSON_CreateString(r->train.items[r->demos[q * r->k + j]].id));
    cJSON_AddItemToObject(o, "demo_ids", ids);
    cJSON_AddNumberToObject(o, "prompt_tokens", (double)r->st.prompt_len[q]);
    cJSON_AddNumberToObject(o, "latency_s", r->st.latency[q]);
    if (res->generated) cJSON_AddStringToObject(o, "generated", res->generated);
    cJSON_AddStringToObject(o, "answer", res->answer);
    if (r->task == EVAL_TASK_VQA) {
        cJSON_AddItemToObject(o, "answers", string_array(it->answers, it->n_answers));
        cJSON_AddNumberToObject(o, "accuracy", res->score);
    } else if (r->task == EVAL_TASK_CAPTION) {
        cJSON_AddItemToObject(o, "references", string_array(it->answers, it->n_answers));
    } else {
        cJSON_AddNumberToObject(o, "label", it->label);
        cJSON_AddNumberToObject(o, "logprob_yes", res->lp[0]);
        cJSON_AddNumberToObject(o, "logprob_no", res->lp[1]);
        cJSON_AddNumberToObject(o, "score", res->score);
    }
    char *line = cJSON_PrintUnformatted(o);
    fprintf(r->out, "%s\n", line);
    fflush(r->out);
    free(line);
    cJSON_Delete(o);
}

static void print_progress(const eval_run *r, int64_t q, const query_result *res) {
    if (!r->cli->verbose) return;
    fprintf(stderr, "aimc eval: %lld/%lld id %s: prompt %lld positions, %.3f s: %s\n", (long long)q + 1,
            (long long)r->test.n, r->test.items[q].id, (long long)r->st.prompt_len[q], r->st.latency[q], res->answer);
}

/* ---- the loop ------------------------------------------------------------------------------------ */

static void run_query(eval_run *r, arena *a, int64_t q) {
    episode_item *items = aimc_xcalloc((size_t)r->k + 1, sizeof *items);
    infer_demo *demos = aimc_xcalloc((size_t)r->k + 1, sizeof *demos);
    const eval_item *it = &r->test.items[q];
    load_demos(r, q, items, demos);
    char *qt = eval_query_text(r->task, r->tpl, it);
    load_item(r, &items[r->k], it->image, qt, "test", it);
    free(qt);
    infer_model im = infer_session_model(&r->sess);
    arena_reset(a);
    a->peak = 0;
    double t0 = aimc_now();
    tensor prompt = infer_build_prompt(&im, a, r->mode, demos, r->k, &items[r->k]);
    size_t device = device_used_bytes(r->sess.be);
    query_result res = {0};
    answer_query(r, a, q, &prompt, &res);
    r->sess.be->sync();
    r->st.latency[q] = aimc_now() - t0;
    r->st.prompt_len[q] = prompt.shape[1];
    r->st.item_score[q] = res.score;
    size_t arena_peak = a->peak;
    r->st.arena_peak = arena_peak > r->st.arena_peak ? arena_peak : r->st.arena_peak;
    r->st.cache_peak = res.cache_bytes > r->st.cache_peak ? res.cache_bytes : r->st.cache_peak;
    if (device && device + res.cache_bytes > r->st.device_peak) r->st.device_peak = device + res.cache_bytes;
    write_item(r, q, &res);
    print_progress(r, q, &res);
    free(res.generated), free(res.answer);
    for (int j = 0; j <= r->k; j++) episode_item_free(&items[j]);
    free(items), free(demos);
}

/* OPT's learned positions end at max_position_embeddings: say so before
 * the first query rather than in the middle of the run. */
static void check_positions(const eval_run *r, int64_t need) {
    const decoder *lm = mllm_decoder(r->sess.m);
    int64_t limit = lm->cfg.pos_rows - 2; /* OPT: max_position_embeddings (+ 2 offset rows); LLaMA: 0 */
    if (lm->cfg.pos_rows > 0 && need > limit)
        aimc_die("the longest prompt plus the answer needs %lld positions, but %s has %lld (max_position_embeddings); "
                 "use fewer --shots or a shorter --max-new-tokens", (long long)need, r->cli->model, (long long)limit);
}

static void run_queries(eval_run *r) {
    int64_t n = r->test.n, longest = 0, extra = 0;
    r->demo_text = aimc_xcalloc((size_t)r->train.n + 1, sizeof *r->demo_text);
    r->demo_tokens = aimc_xmalloc(((size_t)r->train.n + 1) * sizeof *r->demo_tokens);
    for (int64_t i = 0; i < r->train.n; i++) r->demo_tokens[i] = -1;
    r->answers = aimc_xcalloc((size_t)n, sizeof *r->answers);
    for (int64_t q = 0; q < n; q++) {
        int64_t len = planned_len(r, q);
        longest = len > longest ? len : longest;
        if (r->task != EVAL_TASK_HATEFUL) continue;
        answer_tokens(r, q);
        for (int c = 0; c < 2; c++) extra = r->answers[q][c].n > extra ? r->answers[q][c].n : extra;
    }
    gen_config g;
    gen_setup(r, &g);
    check_positions(r, longest + (r->task == EVAL_TASK_HATEFUL ? extra : g.max_new_tokens));
    arena a;
    infer_session_arena(&r->sess, &a, r->cli->arena_mb, longest + extra, g.max_new_tokens, g.num_beams);
    double t0 = aimc_now();
    for (int64_t q = 0; q < n; q++) run_query(r, &a, q);
    r->st.wall_s = aimc_now() - t0;
    arena_free(&a);
}

/* ---- scores and the summary -------------------------------------------------------------------------- */

static const char *metric_name(eval_task t) {
    return t == EVAL_TASK_VQA ? "vqa_accuracy" : t == EVAL_TASK_CAPTION ? "cider" : "roc_auc";
}

/* The run's score in percent (OpenFlamingo reports VQA accuracy and CIDEr x 100). */
static double run_score(eval_run *r) {
    int64_t n = r->test.n;
    if (r->task == EVAL_TASK_CAPTION) return 100.0 * cider_compute(r->st.cider, NULL);
    if (r->task == EVAL_TASK_HATEFUL) {
        for (int64_t q = 0; q < n; q++) r->st.labels[q] = r->test.items[q].label;
        return 100.0 * metric_roc_auc(r->st.item_score, r->st.labels, n);
    }
    double sum = 0;
    for (int64_t q = 0; q < n; q++) sum += r->st.item_score[q];
    return n ? 100.0 * sum / (double)n : NAN;
}

static const char *base_name(const char *path) {
    static char buf[PATH_MAX];
    snprintf(buf, sizeof buf, "%s", path);
    size_t n = strlen(buf);
    while (n > 1 && buf[n - 1] == '/') buf[--n] = 0;
    const char *slash = strrchr(buf, '/');
    return slash ? slash + 1 : buf;
}

static double mean_of(const double *x, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += x[i];
    return n ? s / (double)n : NAN;
}

static double mean_len(const int64_t *x, int64_t n, int64_t *max) {
    double s = 0;
    *max = 0;
    for (int64_t i = 0; i < n; i++) s += (double)x[i], *max = x[i] > *max ? x[i] : *max;
    return n ? s / (double)n : NAN;
}

/* Peak memory: the device's (cudaMemGetInfo) on CUDA, else weights + arena + KV cache. */
static size_t peak_bytes(const eval_run *r, const char **source) {
    if (r->st.device_peak) return *source = "cudaMemGetInfo", r->st.device_peak;
    *source = "weights+arena+kv_cache";
    return r->st.weights + r->st.arena_peak + r->st.cache_peak;
}

static void add_run_fields(const eval_run *r, cJSON *o) {
    const eval_cli *c = r->cli;
    cJSON_AddStringToObject(o, "task", eval_task_name(r->task));
    cJSON_AddStringToObject(o, "mode", infer_mode_name(r->mode));
    cJSON_AddNumberToObject(o, "shots", r->k);
    cJSON_AddNumberToObject(o, "seed", (double)c->seed);
    cJSON_AddStringToObject(o, "retrieval", c->retrieval);
    cJSON_AddStringToObject(o, "model", c->model);
    cJSON_AddStringToObject(o, "backbone", base_name(c->model));
    cJSON_AddStringToObject(o, "projector", r->sess.has_proj ? r->sess.meta.source : "");
    cJSON_AddStringToObject(o, "projector_type", r->sess.has_proj ? projector_type_name(r->sess.proj.cfg.type) : "");
    if (r->mode == INFER_AIM) cJSON_AddNumberToObject(o, "layer", (double)r->sess.layer);
    else cJSON_AddNullToObject(o, "layer"); /* only aim aggregates */
    cJSON_AddStringToObject(o, "bank", r->sess.bk ? r->sess.bk->path : "");
    cJSON_AddStringToObject(o, "device", r->sess.be->name);
    cJSON_AddNumberToObject(o, "beams", (double)c->beams);
    cJSON_AddStringToObject(o, "label", c->label ? c->label : "");
}

static cJSON *summary_json(eval_run *r, double score) {
    int64_t n = r->test.n, longest;
    const char *source;
    size_t peak = peak_bytes(r, &source);
    gen_config g;
    gen_setup(r, &g);
    cJSON *o = cJSON_CreateObject();
    add_run_fields(r, o);
    cJSON_AddNumberToObject(o, "max_new_tokens", r->task == EVAL_TASK_HATEFUL ? 0 : (double)g.max_new_tokens);
    cJSON_AddStringToObject(o, "metric", metric_name(r->task));
    cJSON_AddNumberToObject(o, "score", score);
    cJSON_AddNumberToObject(o, "n", (double)n);
    cJSON_AddNumberToObject(o, "tokens_per_prompt", mean_len(r->st.prompt_len, n, &longest));
    cJSON_AddNumberToObject(o, "tokens_per_prompt_max", (double)longest);
    cJSON_AddNumberToObject(o, "peak_mem_bytes", (double)peak);
    cJSON_AddNumberToObject(o, "peak_mem_mib", (double)peak / (1 << 20));
    cJSON_AddStringToObject(o, "peak_mem_source", source);
    cJSON_AddNumberToObject(o, "weights_bytes", (double)r->st.weights);
    cJSON_AddNumberToObject(o, "arena_peak_bytes", (double)r->st.arena_peak);
    cJSON_AddNumberToObject(o, "kv_cache_bytes", (double)r->st.cache_peak);
    cJSON_AddNumberToObject(o, "latency_mean_s", mean_of(r->st.latency, n));
    cJSON_AddNumberToObject(o, "latency_p50_s", eval_quantile(r->st.latency, n, 0.5));
    cJSON_AddNumberToObject(o, "latency_p90_s", eval_quantile(r->st.latency, n, 0.9));
    cJSON_AddNumberToObject(o, "wall_s", r->st.wall_s);
    return o;
}

/* A CSV field: commas, quotes and line breaks become ';' / '\'' / ' ' so
 * that the file splits on commas alone (scripts/ablations.sh uses awk -F,). */
static void csv_field(FILE *f, const char *s, int last) {
    for (; *s; s++) fputc(*s == ',' ? ';' : *s == '"' ? '\'' : (*s == '\n' || *s == '\r') ? ' ' : *s, f);
    fputc(last ? '\n' : ',', f);
}

static const char *const csv_columns[] = {"label", "task", "backbone", "mode", "shots", "projector_type", "layer",
                                          "retrieval", "seed", "n", "metric", "score", "tokens_per_prompt",
                                          "peak_mem_mib", "latency_mean_ms", "latency_p50_ms", "latency_p90_ms",
                                          "device"};
#define N_CSV (int)(sizeof csv_columns / sizeof csv_columns[0])

static void csv_value(FILE *f, const cJSON *o, const char *col, int last) {
    char buf[64];
    int ms = strstr(col, "_ms") != NULL;
    char key[64];
    snprintf(key, sizeof key, "%s", col);
    if (ms) snprintf(key, sizeof key, "%.*s_s", (int)(strlen(col) - 3), col);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (cJSON_IsString(v)) return csv_field(f, v->valuestring, last);
    if (cJSON_IsNull(v)) return csv_field(f, "", last);
    double d = cJSON_IsNumber(v) ? v->valuedouble * (ms ? 1000.0 : 1.0) : NAN;
    snprintf(buf, sizeof buf, "%.6g", d);
    csv_field(f, buf, last);
}

static void append_csv(const char *path, const cJSON *o) {
    struct stat sb;
    int fresh = stat(path, &sb) != 0 || sb.st_size == 0;
    FILE *f = fopen(path, "a");
    if (!f) aimc_die("%s: cannot append", path);
    for (int i = 0; fresh && i < N_CSV; i++) csv_field(f, csv_columns[i], i == N_CSV - 1);
    for (int i = 0; i < N_CSV; i++) csv_value(f, o, csv_columns[i], i == N_CSV - 1);
    if (fclose(f)) aimc_die("%s: write error", path);
}

static void report(eval_run *r) {
    cJSON *o = summary_json(r, run_score(r));
    char *line = cJSON_PrintUnformatted(o);
    printf("%s\n", line);
    fflush(stdout);
    if (r->cli->summary) {
        FILE *f = fopen(r->cli->summary, "a");
        if (!f || fprintf(f, "%s\n", line) < 0 || fclose(f)) aimc_die("%s: cannot append the summary", r->cli->summary);
    }
    if (r->cli->csv) append_csv(r->cli->csv, o);
    free(line);
    cJSON_Delete(o);
}

/* ---- setup and teardown ------------------------------------------------------------------------------ */

static void setup_templates(eval_run *r) {
    char err[4096];
    infer_templates_default(&r->ts);
    if (r->cli->templates && infer_templates_load(&r->ts, r->cli->templates, err, sizeof err)) aimc_die("%s", err);
    const char *name = r->cli->template_name ? r->cli->template_name : eval_task_name(r->task);
    r->tpl = infer_template_find(&r->ts, name);
    if (!r->tpl) aimc_die("no template '%s' (built in: caption, vqa, hateful, raw; or add it with --templates)", name);
}

static void setup_stats(eval_run *r) {
    int64_t n = r->test.n + 1;
    r->st.latency = aimc_xcalloc((size_t)n, sizeof *r->st.latency);
    r->st.prompt_len = aimc_xcalloc((size_t)n, sizeof *r->st.prompt_len);
    r->st.item_score = aimc_xcalloc((size_t)n, sizeof *r->st.item_score);
    r->st.labels = aimc_xcalloc((size_t)n, sizeof *r->st.labels);
    if (r->task == EVAL_TASK_CAPTION) r->st.cider = cider_new();
    if (r->cli->out && !(r->out = fopen(r->cli->out, "w"))) aimc_die("%s: cannot write", r->cli->out);
}

static void run_free(eval_run *r) {
    for (int64_t i = 0; r->demo_text && i < r->train.n; i++) free(r->demo_text[i]);
    for (int64_t q = 0; r->answers && q < r->test.n; q++) tok_ids_free(&r->answers[q][0]), tok_ids_free(&r->answers[q][1]);
    free(r->demo_text), free(r->demo_tokens), free(r->answers), free(r->demos);
    free(r->st.latency), free(r->st.prompt_len), free(r->st.item_score), free(r->st.labels);
    if (r->st.cider) cider_free(r->st.cider);
    if (r->out && fclose(r->out)) aimc_die("%s: write error", r->cli->out);
    infer_session_free(&r->sess);
    eval_set_free(&r->train), eval_set_free(&r->test);
    infer_templates_free(&r->ts);
}

static int run_eval(const eval_cli *o) {
    eval_run r = {.cli = o, .task = (eval_task)eval_task_parse(o->task), .mode = (infer_mode)infer_mode_parse(o->mode)};
    r.k = r.mode == INFER_ZERO_SHOT ? 0 : (int)o->shots;
    setup_templates(&r);
    read_data(&r);
    if (o->export_demos) {
        int rc = export_demos(&r);
        run_free(&r);
        return rc;
    }
    if (r.test.n == 0) aimc_die("the test split is empty");
    load_session(&r);
    select_demos(&r);
    setup_stats(&r);
    run_queries(&r);
    report(&r);
    run_free(&r);
    return 0;
}

int cmd_eval(int argc, char **argv) {
    eval_cli o = {.mode = "aim", .retrieval = "random", .device = "cpu", .layer = "auto", .train_split = "train",
                  .test_split = "test", .image_pattern = "COCO_val2014_%012d.jpg",
                  .train_image_pattern = "COCO_train2014_%012d.jpg", .shots = 4, .seed = 42, .beams = 3};
    const char *files_help = NULL;
    arg_opt opts[] = {
        {"--model", ARG_STR, &o.model, "Hugging Face LLaVA / BLIP-2 folder (weights, tokenizer, preprocessor)"},
        {"--task", ARG_STR, &o.task, "vqa (OK-VQA, VizWiz), caption (Flickr30k, COCO) or hateful (Hateful Memes)"},
        {"--train", ARG_STR, &files_help, "FILES...: the demonstrations' split (vqa: questions + annotations, or VizWiz)"},
        {"--test", ARG_STR, &files_help, "FILES...: the evaluated split, in the same format"},
        {"--images", ARG_STR, &o.images, "folder the test split's image paths are relative to"},
        {"--train-images", ARG_STR, &o.train_images, "folder for the train split's images (default: --images)"},
        {"--image-pattern", ARG_STR, &o.image_pattern, "vqa pairs: test image file name from image_id (%d, %012d, %s)"},
        {"--train-image-pattern", ARG_STR, &o.train_image_pattern, "vqa pairs: train image file name from image_id"},
        {"--train-split", ARG_STR, &o.train_split, "caption: Karpathy splits of the demonstrations (comma-separated)"},
        {"--test-split", ARG_STR, &o.test_split, "caption: Karpathy splits evaluated"},
        {"--projector", ARG_STR, &o.projector, "trained projector (checkpoint, or exported .safetensors / .json); aim only"},
        {"--mode", ARG_STR, &o.mode, "aim (fused demonstrations), icl (with their image tokens) or zero-shot"},
        {"--shots", ARG_INT, &o.shots, "demonstrations per query (zero-shot: none)"},
        {"--seed", ARG_INT, &o.seed, "demonstration selection seed (with the query's id)"},
        {"--limit", ARG_INT, &o.limit, "evaluate the first N test items (0: all)"},
        {"--bank", ARG_STR, &o.bank, "demonstration bank of the train split (aim: no aggregation of demonstrations)"},
        {"--retrieval", ARG_STR, &o.retrieval, "random, or clip (most similar train images, RICES)"},
        {"--clip-model", ARG_STR, &o.clip_model, "CLIPModel folder for --retrieval clip"},
        {"--templates", ARG_STR, &o.templates, "templates file (configs/templates.conf format) over the built-ins"},
        {"--template", ARG_STR, &o.template_name, "template name (default: the task's)"},
        {"--beams", ARG_INT, &o.beams, "beam search width (OpenFlamingo: 3)"},
        {"--max-new-tokens", ARG_INT, &o.max_new, "generation limit (0: vqa 5, caption 20)"},
        {"--length-penalty", ARG_FLOAT, &o.length_penalty, "beam score = sum logprob / length^this (OpenFlamingo: 0)"},
        {"--layer", ARG_STR, &o.layer, "aggregation layer (hidden_states index); auto: the projector's or bank's"},
        {"--device", ARG_STR, &o.device, "cpu or cuda"},
        {"--arena-mb", ARG_INT, &o.arena_mb, "step memory in MiB (0: sized from the longest prompt)"},
        {"--out", ARG_STR, &o.out, "per-item results (JSONL)"},
        {"--summary", ARG_STR, &o.summary, "also append the summary JSON line to this file"},
        {"--csv", ARG_STR, &o.csv, "append the summary as a CSV row (header when the file is new)"},
        {"--label", ARG_STR, &o.label, "free-form run name copied into the summary"},
        {"--export-demos", ARG_STR, &o.export_demos, "write the train split as aimc bank build JSONL and exit"},
        {"--verbose", ARG_FLAG, &o.verbose, "one line per query on stderr"},
    };
    argc = extract_files(argc, argv, &o);
    if (argc < 0) return 2;
    int npos = args_parse(argc, argv,
                          "aimc eval --model DIR --task vqa|caption|hateful --train FILES... --test FILES... "
                          "--images DIR [--projector P] [--mode aim|icl|zero-shot] [--shots K] [--seed N] [--limit N] "
                          "[--bank FILE] [--retrieval random|clip --clip-model DIR] [--out results.jsonl]",
                          "evaluate k-shot answers on a benchmark split (VQA accuracy, CIDEr-D, ROC-AUC) and report "
                          "tokens per prompt, peak memory and latency per query as one JSON line",
                          opts, (int)(sizeof opts / sizeof opts[0]));
    if (npos > 0) return usage("unexpected argument ", argv[1]);
    if (files_help) return usage("--train/--test take their files as separate words", NULL);
    if (check_cli(&o)) return 2;
    return run_eval(&o);
}
