/* aimc bank: build a demonstration bank (host/bank.h, docs/bank.md) from a
 * JSONL list of demonstrations, or describe one. */
#include "../kernels/check.h"
#include "args.h"
#include "backend.h"
#include "bank.h"
#include "commands.h"
#include "infer.h"
#include "mllm.h"
#include <cjson/cJSON.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct bank_cli {
    const char *model, *demos, *out, *device;
    int64_t layer, arena_mb;
} bank_cli;

static int bank_usage(const char *msg, const char *arg) {
    fprintf(stderr, "aimc bank: error: %s%s (see 'aimc bank --help')\n", msg, arg ? arg : "");
    return 2;
}

/* ---- build ------------------------------------------------------------------------ */

/* What a build holds. */
typedef struct bank_build {
    const bank_cli *cli;
    infer_session s; /* model, tokenizer, preprocessing */
    infer_model im;
    arena a;
    int64_t arena_len; /* the prompt length the arena is sized for */
    bank_writer *w;
    int64_t count, rows;
} bank_build;

/* Removes the half-written bank, then dies with one line. */
static void build_fail(bank_build *b, const char *fmt, ...) __attribute__((noreturn, format(printf, 2, 3)));
static void build_fail(bank_build *b, const char *fmt, ...) {
    char msg[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    bank_writer_abort(b->w);
    aimc_die("%s", msg);
}

/* An image path from the JSONL: absolute as is, else relative to the
 * JSONL's folder; stored resolved (realpath) so the bank works from any
 * directory. */
static void image_path(const char *jsonl, const char *image, char *out, size_t n) {
    char joined[PATH_MAX + 1024];
    const char *slash = strrchr(jsonl, '/');
    if (image[0] == '/' || !slash) snprintf(joined, sizeof joined, "%s", image);
    else snprintf(joined, sizeof joined, "%.*s/%s", (int)(slash - jsonl), jsonl, image);
    char real[PATH_MAX];
    snprintf(out, n, "%s", realpath(joined, real) ? real : joined);
}

static const char *json_string(bank_build *b, const cJSON *o, const char *key, long line) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsString(v)) build_fail(b, "%s:%ld: \"%s\" must be a string", b->cli->demos, line, key);
    return v->valuestring;
}

/* Grows the arena when a demonstration's native sequence is longer than
 * what it was sized for. */
static void ensure_arena(bank_build *b, int64_t len) {
    if (len <= b->arena_len) return;
    if (b->arena_len) arena_free(&b->a);
    b->arena_len = len < 256 ? 256 : len;
    size_t bytes =
        b->cli->arena_mb > 0 ? (size_t)b->cli->arena_mb << 20 : infer_arena_bytes(b->s.m, b->arena_len, 0, 1);
    arena_init(&b->a, b->s.be, bytes);
}

static void add_demo(bank_build *b, const char *id, const char *image, const char *text, const char *where) {
    char err[4096];
    episode_item it;
    if (infer_item_load(&it, image, text, b->s.tok, &b->s.pp, where, err, sizeof err))
        build_fail(b, "%s: %s", where, err);
    if (it.n_tokens < 1) build_fail(b, "%s: demonstration '%s' has an empty text", where, id);
    ensure_arena(b, 1 + mllm_tokens_per_image(b->s.m) + 1 + it.n_tokens);
    size_t mark = b->a.used;
    tensor h = infer_demo_hidden(&b->im, &b->a, &it);
    float *rows = infer_download_f32(&b->a, &h);
    b->a.used = mark;
    if (bank_writer_add(b->w, id, image, text, rows, it.n_tokens, err, sizeof err)) build_fail(b, "%s: %s", where, err);
    b->count++;
    b->rows += it.n_tokens;
    free(rows);
    episode_item_free(&it);
}

static void add_line(bank_build *b, const char *line, long lineno) {
    const char *path = b->cli->demos;
    cJSON *o = cJSON_Parse(line);
    if (!cJSON_IsObject(o)) build_fail(b, "%s:%ld: not a JSON object", path, lineno);
    const char *id = json_string(b, o, "id", lineno), *image = json_string(b, o, "image", lineno);
    const char *text = json_string(b, o, "text", lineno);
    char where[PATH_MAX + 64], resolved[PATH_MAX + 1024];
    snprintf(where, sizeof where, "%s:%ld", path, lineno);
    image_path(path, image, resolved, sizeof resolved);
    add_demo(b, id, resolved, text, where);
    cJSON_Delete(o);
}

static int blank(const char *s) {
    return s[strspn(s, " \t\r\n")] == 0;
}

static void read_demos(bank_build *b) {
    FILE *f = fopen(b->cli->demos, "r");
    if (!f) build_fail(b, "%s: cannot open the demonstrations file", b->cli->demos);
    char *line = NULL;
    size_t cap = 0;
    long lineno = 0;
    while (getline(&line, &cap, f) >= 0) {
        lineno++;
        if (!blank(line)) add_line(b, line, lineno);
    }
    free(line);
    fclose(f);
}

static int run_build(const bank_cli *o) {
    bank_build b = {.cli = o};
    char err[4096], text[512];
    infer_session_load_model(&b.s, o->model, o->device);
    int64_t layer = decoder_hidden_index(mllm_decoder(b.s.m), o->layer);
    b.im = (infer_model){.m = b.s.m, .layer = layer};
    b.w = bank_writer_open(o->out, bank_backbone_text(b.s.m, text, sizeof text), layer, mllm_d_model(b.s.m), err,
                           sizeof err);
    if (!b.w) aimc_die("%s", err);
    read_demos(&b);
    if (bank_writer_finish(b.w, err, sizeof err)) aimc_die("%s", err);
    printf("aimc bank build: %lld demonstrations, %lld rows of %lld floats (layer %lld) -> %s\n",
           (long long)b.count, (long long)b.rows, (long long)mllm_d_model(b.s.m), (long long)layer, o->out);
    if (b.arena_len) arena_free(&b.a);
    infer_session_free(&b.s);
    return 0;
}

static int cmd_bank_build(int argc, char **argv) {
    bank_cli o = {.device = "cpu", .layer = -1};
    arg_opt opts[] = {
        {"--model", ARG_STR, &o.model, "Hugging Face LLaVA / BLIP-2 folder"},
        {"--layer", ARG_INT, &o.layer, "aggregation layer (hidden_states index; negative counts from the end)"},
        {"--demos", ARG_STR, &o.demos, "JSONL: one {\"id\", \"image\", \"text\"} per line (images relative to the file)"},
        {"--out", ARG_STR, &o.out, "the bank file to write"},
        {"--device", ARG_STR, &o.device, "cpu or cuda"},
        {"--arena-mb", ARG_INT, &o.arena_mb, "step memory in MiB (0: sized from the demonstrations)"},
    };
    int npos = args_parse(argc, argv, "aimc bank build --model DIR [--layer L] --demos FILE.jsonl --out BANK",
                          "aggregate every demonstration once and store its hidden states (before the projector)",
                          opts, (int)(sizeof opts / sizeof opts[0]));
    if (npos > 0) return bank_usage("unexpected argument ", argv[1]);
    if (!o.model || !o.demos || !o.out) return bank_usage("--model, --demos and --out are required", NULL);
    return run_build(&o);
}

/* ---- info ------------------------------------------------------------------------------ */

static int cmd_bank_info(int argc, char **argv) {
    int64_t limit = 20;
    arg_opt opts[] = {
        {"--entries", ARG_INT, &limit, "demonstrations to list (-1: all)"},
    };
    int npos = args_parse(argc, argv, "aimc bank info BANK", "describe a demonstration bank", opts, 1);
    if (npos != 1) return bank_usage("bank info takes one BANK file", NULL);
    char err[4096];
    bank *b = bank_open(argv[1], err, sizeof err);
    if (!b) aimc_die("%s", err);
    printf("bank %s: version %u, %lld demonstrations, %lld rows of %lld floats, layer %lld\nbackbone: %s\n", b->path,
           b->version, (long long)b->count, (long long)b->total_rows, (long long)b->d_model, (long long)b->layer,
           b->backbone_text);
    for (int64_t i = 0; i < b->count && (limit < 0 || i < limit); i++)
        printf("  %s\t%lld rows\t%s\t%s\n", b->entries[i].id, (long long)b->entries[i].n_rows, b->entries[i].image,
               b->entries[i].text);
    if (limit >= 0 && b->count > limit) printf("  ... %lld more\n", (long long)(b->count - limit));
    bank_close(b);
    return 0;
}

int cmd_bank(int argc, char **argv) {
    static char build_name[] = "bank build", info_name[] = "bank info"; /* args_parse's messages name argv[0] */
    if (argc >= 2 && !strcmp(argv[1], "build")) return argv[1] = build_name, cmd_bank_build(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "info")) return argv[1] = info_name, cmd_bank_info(argc - 1, argv + 1);
    FILE *f = argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) ? stdout : stderr;
    fprintf(f, "usage: aimc bank build --model DIR [--layer L] --demos FILE.jsonl --out BANK\n"
               "       aimc bank info BANK\n\n"
               "A demonstration bank stores each demonstration's aggregated hidden states once\n"
               "(before the projector), for aimc infer --bank FILE --demo-ids a,b.\n");
    return f == stdout ? 0 : 2;
}
