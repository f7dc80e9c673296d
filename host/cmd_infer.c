/* aimc infer: answer one query with a frozen LLaVA / BLIP-2 model, with
 * k demonstrations fused by a trained AIM projector (--mode aim), put in
 * the prompt with all their image tokens (--mode icl), or none
 * (--mode zero-shot). Layouts and templates: host/infer.h; search:
 * host/generate.h. Prints the answer on stdout (and with --show-ids its
 * token ids); one statistics line goes to stderr. */
#include "../kernels/check.h"
#include "args.h"
#include "backend.h"
#include "bank.h"
#include "commands.h"
#include "generate.h"
#include "infer.h"
#include "mllm.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define INFER_MAX_DEMOS 4096
#define INFER_MAX_STOPS 64

typedef struct infer_cli {
    const char *model, *projector, *mode, *bank, *demo_ids, *query_image, *prompt;
    const char *template_name, *templates, *device, *early, *layer;
    int64_t max_new, beams, arena_mb;
    double length_penalty;
    int show_ids;
    int n_demos, n_stops;
    const char *demo_image[INFER_MAX_DEMOS], *demo_text[INFER_MAX_DEMOS];
    const char *stop[INFER_MAX_STOPS];
} infer_cli;

/* Everything a run holds (freed by run_free). */
typedef struct infer_run {
    const infer_cli *cli;
    infer_mode mode;
    infer_session sess; /* model, projector, bank, layer */
    int k;
    episode_item *items; /* k demonstrations, then the query */
    infer_demo *demos;
} infer_run;

static int usage(const char *msg, const char *arg) {
    fprintf(stderr, "aimc infer: error: %s%s (see 'aimc infer --help')\n", msg, arg ? arg : "");
    return 2;
}

/* ---- arguments ----------------------------------------------------------------- */

/* Takes the two-value --demo IMAGE TEXT and the repeatable --stop out of
 * argv (args_parse keeps the last value of a flag); the rest stays. Returns
 * the new argc, or -1 after a usage error. */
static int extract_repeated(int argc, char **argv, infer_cli *o) {
    int out = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--demo")) {
            if (i + 2 >= argc) return usage("--demo needs two values: IMAGE TEXT", NULL), -1;
            if (o->n_demos == INFER_MAX_DEMOS) return usage("too many --demo", NULL), -1;
            o->demo_image[o->n_demos] = argv[i + 1];
            o->demo_text[o->n_demos++] = argv[i + 2];
            i += 2;
        } else if (!strcmp(argv[i], "--stop") || !strncmp(argv[i], "--stop=", 7)) {
            const char *v = argv[i][6] == '=' ? argv[i] + 7 : (i + 1 < argc ? argv[++i] : NULL);
            if (!v) return usage("--stop needs a value", NULL), -1;
            if (!*v) return usage("--stop needs a non-empty string", NULL), -1;
            if (o->n_stops == INFER_MAX_STOPS) return usage("too many --stop", NULL), -1;
            o->stop[o->n_stops++] = v;
        } else {
            argv[out++] = argv[i];
        }
    }
    return out;
}

static int check_cli(const infer_cli *o) {
    if (!o->model || !o->query_image) return usage("--model and --query-image are required", NULL);
    if (infer_mode_parse(o->mode) < 0) return usage("--mode must be aim, icl or zero-shot, not ", o->mode);
    if (gen_early_stop_parse(o->early) < 0) return usage("--early-stopping must be true, false or never, not ", o->early);
    if (o->bank && o->n_demos) return usage("give demonstrations with --demo or with --bank/--demo-ids, not both", NULL);
    if (o->bank && !o->demo_ids) return usage("--bank needs --demo-ids", NULL);
    if (o->demo_ids && !o->bank) return usage("--demo-ids needs --bank", NULL);
    if (o->max_new < 1) return usage("--max-new-tokens must be at least 1", NULL);
    if (o->beams < 1 || o->beams > 4096) return usage("--beams must be in [1, 4096]", NULL);
    if (!infer_layer_arg_ok(o->layer)) return usage("--layer must be an integer or auto, not ", o->layer);
    return 0;
}

/* ---- setup ---------------------------------------------------------------------- */

/* The model, the projector and the bank (each when given), then the layer. */
static void load_session(infer_run *r) {
    const infer_cli *o = r->cli;
    infer_session_load_model(&r->sess, o->model, o->device);
    if (o->projector) infer_session_load_projector(&r->sess, o->projector);
    if (o->bank) infer_session_open_bank(&r->sess, o->bank);
    infer_session_resolve_layer(&r->sess, o->layer, r->mode);
}

/* ---- demonstrations and the query --------------------------------------------------- */

static void load_item(infer_run *r, episode_item *it, const char *image, const char *text, const char *source) {
    char err[4096];
    if (infer_item_load(it, image, text, r->sess.tok, &r->sess.pp, source, err, sizeof err)) aimc_die("%s", err);
}

/* One bank entry: its rows (aim) or its stored image path (icl). */
static void bank_demo(infer_run *r, int i, const char *id) {
    const bank_entry *e = bank_find(r->sess.bk, id);
    if (!e) aimc_die("%s: no demonstration with id '%s' (%lld in the bank; 'aimc bank info' lists them)",
                     r->sess.bk->path, id, (long long)r->sess.bk->count);
    char source[512];
    snprintf(source, sizeof source, "%s:%s", r->sess.bk->path, id);
    int need_image = r->mode == INFER_ICL;
    load_item(r, &r->items[i], need_image ? e->image : NULL, e->text, source);
    if (r->items[i].n_tokens != e->n_rows)
        aimc_die("%s: demonstration '%s' has %lld rows, but its text gives %lld tokens with %s's tokenizer",
                 r->sess.bk->path, id, (long long)e->n_rows, (long long)r->items[i].n_tokens, r->cli->model);
    r->demos[i].hidden = r->mode == INFER_AIM ? bank_entry_rows(r->sess.bk, e) : NULL;
}

static int count_ids(const char *list) {
    int n = 1;
    for (const char *s = list; *s; s++) n += *s == ',';
    return n;
}

static void bank_demos(infer_run *r) {
    char *list = strdup(r->cli->demo_ids), *save = NULL;
    AIMC_CHECK(list, "out of memory");
    int i = 0;
    for (char *id = strtok_r(list, ",", &save); id; id = strtok_r(NULL, ",", &save)) bank_demo(r, i++, id);
    r->k = i;
    free(list);
}

static void load_items(infer_run *r) {
    const infer_cli *o = r->cli;
    int cap = o->bank ? count_ids(o->demo_ids) : o->n_demos;
    r->items = calloc((size_t)cap + 1, sizeof *r->items);
    r->demos = calloc((size_t)cap + 1, sizeof *r->demos);
    AIMC_CHECK(r->items && r->demos, "out of memory");
    for (int i = 0; i < cap; i++) r->demos[i].item = &r->items[i];
    if (r->mode == INFER_ZERO_SHOT && (o->n_demos || o->bank))
        fprintf(stderr, "aimc infer: note: zero-shot mode leaves the demonstrations out\n");
    if (r->mode != INFER_ZERO_SHOT && o->bank) {
        bank_demos(r);
    } else if (r->mode != INFER_ZERO_SHOT) {
        for (int i = 0; i < o->n_demos; i++) {
            char source[64];
            snprintf(source, sizeof source, "--demo %d", i + 1);
            load_item(r, &r->items[i], o->demo_image[i], o->demo_text[i], source);
        }
        r->k = o->n_demos;
    }
    if (r->mode == INFER_AIM && r->k > 0 && !r->sess.has_proj)
        aimc_die("--mode aim with demonstrations needs a trained projector (--projector CKPT or .safetensors)");
}

static void load_query(infer_run *r, const infer_templates *ts) {
    const infer_template *t = infer_template_find(ts, r->cli->template_name);
    char *text = infer_template_fill(t->query, r->cli->prompt, NULL);
    load_item(r, &r->items[r->k], r->cli->query_image, text, "--query-image");
    free(text);
}

/* ---- generation and output ------------------------------------------------------- */

static void gen_setup(const infer_run *r, gen_config *g) {
    const infer_cli *o = r->cli;
    infer_session_gen_config(&r->sess, g);
    g->max_new_tokens = o->max_new;
    g->num_beams = (int)o->beams;
    g->length_penalty = o->length_penalty;
    g->early_stopping = (gen_early_stop)gen_early_stop_parse(o->early);
    g->stop = o->stop;
    g->n_stop = o->n_stops;
}


static void print_result(const infer_run *r, const gen_result *g, double seconds, size_t peak) {
    printf("%s\n", g->text);
    if (r->cli->show_ids) {
        printf("ids:");
        for (int64_t i = 0; i < g->n; i++) printf(" %d", g->ids[i]);
        printf("\n");
    }
    fflush(stdout);
    fprintf(stderr, "aimc infer: mode %s, %d demonstration%s, prompt %lld positions, %lld new tokens (%s), "
                    "%.3f s, arena peak %.1f MiB, kv cache %.1f MiB, device %s\n",
            infer_mode_name(r->mode), r->k, r->k == 1 ? "" : "s", (long long)g->prompt_len, (long long)g->n,
            gen_stop_name(g->stop), seconds, (double)peak / (1 << 20), (double)g->cache_bytes / (1 << 20),
            r->sess.be->name);
}

static void generate_answer(infer_run *r) {
    infer_model im = infer_session_model(&r->sess);
    episode_item *query = &r->items[r->k];
    int64_t len = infer_prompt_len(r->sess.m, r->mode, r->demos, r->k, query);
    arena a;
    infer_session_arena(&r->sess, &a, r->cli->arena_mb, len, r->cli->max_new, (int)r->cli->beams);
    double t0 = aimc_now();
    tensor prompt = infer_build_prompt(&im, &a, r->mode, r->demos, r->k, query);
    gen_config g;
    gen_setup(r, &g);
    gen_result res;
    char err[1024];
    if (gen_generate(mllm_decoder(r->sess.m), &a, &prompt, &g, &res, err, sizeof err)) aimc_die("%s", err);
    r->sess.be->sync();
    print_result(r, &res, aimc_now() - t0, a.peak);
    gen_result_free(&res);
    arena_free(&a);
}

static void run_free(infer_run *r) {
    for (int i = 0; r->items && i <= r->k; i++) episode_item_free(&r->items[i]);
    free(r->items);
    free(r->demos);
    infer_session_free(&r->sess);
}

static int run_infer(const infer_cli *o) {
    infer_templates ts;
    infer_templates_default(&ts);
    char err[4096];
    if (o->templates && infer_templates_load(&ts, o->templates, err, sizeof err)) aimc_die("%s", err);
    if (!infer_template_find(&ts, o->template_name)) {
        infer_templates_free(&ts);
        return usage("unknown --template ", o->template_name);
    }
    infer_run r = {.cli = o, .mode = (infer_mode)infer_mode_parse(o->mode)};
    load_session(&r);
    load_items(&r);
    load_query(&r, &ts);
    generate_answer(&r);
    run_free(&r);
    infer_templates_free(&ts);
    return 0;
}

int cmd_infer(int argc, char **argv) {
    infer_cli o = {.mode = "aim", .prompt = "", .template_name = "raw", .device = "cpu", .early = "false",
                   .layer = "auto", .max_new = 20, .beams = 1, .length_penalty = 1.0};
    const char *demo_help = NULL, *stop_help = NULL;
    arg_opt opts[] = {
        {"--model", ARG_STR, &o.model, "Hugging Face LLaVA / BLIP-2 folder (weights, tokenizer, preprocessor)"},
        {"--projector", ARG_STR, &o.projector, "trained projector: checkpoint file or folder, or exported .safetensors (+ .json)"},
        {"--mode", ARG_STR, &o.mode, "aim (fused demonstrations), icl (demonstrations with their image tokens) or zero-shot"},
        {"--demo", ARG_STR, &demo_help, "IMAGE TEXT: one demonstration, its text used as given (repeatable, in order)"},
        {"--bank", ARG_STR, &o.bank, "demonstration bank (aimc bank build) to take demonstrations from"},
        {"--demo-ids", ARG_STR, &o.demo_ids, "comma-separated ids of the bank's demonstrations, in order"},
        {"--query-image", ARG_STR, &o.query_image, "the query's image"},
        {"--prompt", ARG_STR, &o.prompt, "the query's text ({prompt} of the template)"},
        {"--template", ARG_STR, &o.template_name, "query template: caption, vqa, hateful, raw (or one from --templates)"},
        {"--templates", ARG_STR, &o.templates, "templates file (configs/templates.conf format) over the built-ins"},
        {"--max-new-tokens", ARG_INT, &o.max_new, "most tokens to generate"},
        {"--beams", ARG_INT, &o.beams, "beam search width (1: greedy)"},
        {"--length-penalty", ARG_FLOAT, &o.length_penalty, "beam score = sum logprob / length^this"},
        {"--early-stopping", ARG_STR, &o.early, "beam search: true, false (heuristic) or never"},
        {"--stop", ARG_STR, &stop_help, "stop when the answer contains this string (repeatable; cut from the answer)"},
        {"--layer", ARG_STR, &o.layer, "aggregation layer (hidden_states index); auto: the projector's or bank's"},
        {"--device", ARG_STR, &o.device, "cpu or cuda"},
        {"--show-ids", ARG_FLAG, &o.show_ids, "also print the generated token ids"},
        {"--arena-mb", ARG_INT, &o.arena_mb, "step memory in MiB (0: sized from the prompt)"},
    };
    argc = extract_repeated(argc, argv, &o);
    if (argc < 0) return 2;
    int npos = args_parse(argc, argv,
                          "aimc infer --model DIR [--projector P] [--mode aim|icl|zero-shot] "
                          "[--demo IMAGE TEXT ... | --bank FILE --demo-ids a,b] --query-image IMAGE "
                          "[--prompt TEXT] [--template NAME] [--max-new-tokens N] [--beams N] [--stop S]",
                          "generate the answer to one multimodal query, with k demonstrations fused (aim), "
                          "in the prompt (icl) or none (zero-shot)",
                          opts, (int)(sizeof opts / sizeof opts[0]));
    if (npos > 0) return usage("unexpected argument ", argv[1]);
    if (demo_help || stop_help) return usage("write --demo IMAGE TEXT and --stop STRING as separate words", NULL);
    if (check_cli(&o)) return 2;
    return run_infer(&o);
}
