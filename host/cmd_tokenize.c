/* aimc tokenize: encode text to ids, decode ids to text, or benchmark the
 * tokenizer of a Hugging Face model folder (tokenizer.json). */
#include "../data/tokenizer.h"
#include "../kernels/check.h"
#include "args.h"
#include "commands.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct tok_cli {
    const char *model, *bench;
    int decode, no_special;
    int64_t max_length;
    double seconds;
} tok_cli;

static int fail(const char *fmt, const char *a, const char *b) {
    fprintf(stderr, "aimc tokenize: error: ");
    fprintf(stderr, fmt, a, b);
    fputc('\n', stderr);
    return 1;
}

static void print_ids(const tok_ids *ids) {
    for (int64_t i = 0; i < ids->n; i++) printf(i ? " %d" : "%d", ids->ids[i]);
    putchar('\n');
}

static int encode_one(const tokenizer *tok, const tok_cli *o, const char *text, size_t n) {
    tokenizer_encode_opts eo = {!o->no_special, o->max_length};
    tok_ids ids = {0};
    char err[512];
    if (tokenizer_encode(tok, text, n, &eo, &ids, err, sizeof err)) return fail("%s%s", err, "");
    print_ids(&ids);
    tok_ids_free(&ids);
    return 0;
}

/* "1 2, 3" -> ids; returns -1 (with a message) on anything that is not an id. */
static int parse_ids(const char *s, tok_ids *out) {
    out->n = 0;
    while (*s) {
        if (*s == ' ' || *s == ',' || *s == '\t' || *s == '\n' || *s == '\r' || *s == '[' || *s == ']') {
            s++;
            continue;
        }
        char *end;
        errno = 0;
        long long v = strtoll(s, &end, 10);
        if (end == s || errno || v < 0 || v > INT32_MAX || (*end && !strchr(" ,\t\r\n[]", *end))) {
            char word[64];
            snprintf(word, sizeof word, "%.*s", (int)strcspn(s, " ,\t\r\n"), s);
            return fail("'%s' is not a token id%s", word, "");
        }
        if (out->n == out->cap) {
            out->cap = out->cap ? out->cap * 2 : 64;
            out->ids = realloc(out->ids, (size_t)out->cap * sizeof *out->ids);
        }
        out->ids[out->n++] = (int32_t)v;
        s = end;
    }
    return 0;
}

static int decode_one(const tokenizer *tok, const tok_cli *o, const char *arg) {
    tok_ids ids = {0};
    char err[512];
    int rc = parse_ids(arg, &ids);
    size_t n = 0;
    char *text = rc ? NULL : tokenizer_decode(tok, ids.ids, ids.n, o->no_special, &n, err, sizeof err);
    if (!rc && !text) rc = fail("%s%s", err, "");
    if (text) {
        fwrite(text, 1, n, stdout);
        putchar('\n');
    }
    free(text);
    tok_ids_free(&ids);
    return rc;
}


/* Encodes either the whole text at once or line by line; returns ids per pass. */
static int64_t bench_pass(const tokenizer *tok, const char *text, size_t n, int by_line, tok_ids *ids) {
    tokenizer_encode_opts eo = {0, -1};
    char err[256];
    if (!by_line) return tokenizer_encode(tok, text, n, &eo, ids, err, sizeof err) ? -1 : ids->n;
    int64_t total = 0;
    for (size_t i = 0; i < n;) {
        const char *nl = memchr(text + i, '\n', n - i);
        size_t len = nl ? (size_t)(nl - text) - i : n - i;
        if (tokenizer_encode(tok, text + i, len, &eo, ids, err, sizeof err)) return -1;
        total += ids->n;
        i += len + 1;
    }
    return total;
}

static void bench_mode(const tokenizer *tok, const char *text, size_t n, int by_line, double seconds) {
    tok_ids ids = {0};
    double t0 = aimc_now();
    int64_t per_pass = bench_pass(tok, text, n, by_line, &ids);
    double cold = aimc_now() - t0;
    int passes = 0;
    t0 = aimc_now();
    do {
        bench_pass(tok, text, n, by_line, &ids);
        passes++;
    } while (aimc_now() - t0 < seconds);
    double warm = (aimc_now() - t0) / passes;
    printf("aimc %-10s %lld tokens/pass  cold %.3f s  warm %.4f s/pass  %.3f Mtok/s  %.2f MB/s  (%d passes)\n",
           by_line ? "per-line" : "whole-text", (long long)per_pass, cold, warm, (double)per_pass / warm / 1e6,
           (double)n / warm / 1e6, passes);
    tok_ids_free(&ids);
}

static int run_bench(const tokenizer *tok, const tok_cli *o) {
    size_t n;
    char err[512];
    char *text = aimc_read_file(o->bench, AIMC_MAX_DATASET_BYTES, &n, err, sizeof err);
    if (!text) return fail("%s%s", err, "");
    printf("aimc tokenize --bench %s: %.2f MB, single thread\n", o->bench, (double)n / 1e6);
    bench_mode(tok, text, n, 0, o->seconds);
    bench_mode(tok, text, n, 1, o->seconds);
    free(text);
    return 0;
}

static int run_args(const tokenizer *tok, const tok_cli *o, int npos, char **pos) {
    int rc = 0;
    if (npos == 0) { /* stdin: one text to encode, or one id list per line to decode */
        size_t n;
        char err[512];
        char *in = aimc_read_stream(stdin, "stdin", AIMC_MAX_DATASET_BYTES, &n, err, sizeof err);
        if (!in) return fail("%s%s", err, "");
        if (!o->decode && n && in[n - 1] == '\n') n -= n > 1 && in[n - 2] == '\r' ? 2 : 1; /* echo's newline */
        if (!o->decode) rc = encode_one(tok, o, in, n);
        for (char *line = in, *next; o->decode && line && *line; line = next) {
            next = strchr(line, '\n');
            if (next) *next++ = 0;
            rc |= decode_one(tok, o, line);
        }
        free(in);
        return rc;
    }
    for (int i = 0; i < npos; i++)
        rc |= o->decode ? decode_one(tok, o, pos[i]) : encode_one(tok, o, pos[i], strlen(pos[i]));
    return rc;
}

int cmd_tokenize(int argc, char **argv) {
    tok_cli o = {NULL, NULL, 0, 0, 0, 2.0};
    arg_opt opts[] = {
        {"--model", ARG_STR, &o.model, "model folder with tokenizer.json (or the tokenizer.json file)"},
        {"--decode", ARG_FLAG, &o.decode, "arguments are token ids (space/comma separated); print the text"},
        {"--no-special", ARG_FLAG, &o.no_special, "encode: add no BOS/EOS/CLS/SEP; decode: drop special tokens"},
        {"--max-length", ARG_INT, &o.max_length, "truncate to N ids, special tokens included (CLIP: 77); 0: file's"},
        {"--bench", ARG_STR, &o.bench, "encode FILE repeatedly, whole and per line; print tokens/s and MB/s"},
        {"--seconds", ARG_FLOAT, &o.seconds, "bench: measuring time per mode"},
    };
    int npos = args_parse(argc, argv, "aimc tokenize --model DIR [--decode] [--no-special] [--max-length N] TEXT...",
                          "Prints the token ids of each TEXT, one line each, exactly as Hugging Face tokenizers\n"
                          "would (stdin when no TEXT, minus one trailing newline); with --decode, the text of\n"
                          "each id list (stdin: one list per line).",
                          opts, (int)(sizeof opts / sizeof opts[0]));
    if (!o.model) return fail("--model DIR is required (see 'aimc tokenize --help')%s%s", "", "") + 1;
    if (o.max_length < 0) return fail("--max-length must be >= 0%s%s", "", "");
    char err[1024];
    tokenizer *tok = tokenizer_load(o.model, err, sizeof err);
    if (!tok) return fail("%s%s", err, "");
    int rc = o.bench ? run_bench(tok, &o) : run_args(tok, &o, npos, argv + 1);
    tokenizer_free(tok);
    return rc;
}
