#include "args.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void print_default(const arg_opt *o) {
    switch (o->type) {
    case ARG_STR:
        if (*(const char **)o->dest) printf(" (default: %s)", *(const char **)o->dest);
        break;
    case ARG_INT: printf(" (default: %lld)", (long long)*(int64_t *)o->dest); break;
    case ARG_FLOAT: printf(" (default: %g)", *(double *)o->dest); break;
    case ARG_FLAG: break;
    }
}

static void print_help(const char *usage, const char *summary, const arg_opt *opts, int n) {
    printf("usage: %s\n\n%s\n\noptions:\n", usage, summary);
    for (int i = 0; i < n; i++) {
        const char *meta = opts[i].type == ARG_STR ? " S" : opts[i].type == ARG_INT ? " N"
                           : opts[i].type == ARG_FLOAT ? " X" : "";
        printf("  %s%-*s %s", opts[i].name, (int)(22 - strlen(opts[i].name)), meta, opts[i].help);
        print_default(&opts[i]);
        putchar('\n');
    }
    printf("  %-22s %s\n", "--help", "show this help");
}

static void usage_error(const char *cmd, const char *fmt, const char *a, const char *b) {
    fprintf(stderr, "aimc %s: error: ", cmd);
    fprintf(stderr, fmt, a, b);
    fprintf(stderr, " (see 'aimc %s --help')\n", cmd);
    exit(2);
}

static void set_value(const char *cmd, const arg_opt *o, const char *val) {
    char *end;
    errno = 0;
    if (o->type == ARG_STR) {
        *(const char **)o->dest = val;
    } else if (o->type == ARG_INT) {
        long long v = strtoll(val, &end, 10);
        if (errno || *end || end == val) usage_error(cmd, "%s expects an integer, got '%s'", o->name, val);
        *(int64_t *)o->dest = v;
    } else {
        double v = strtod(val, &end);
        if (errno || *end || end == val) usage_error(cmd, "%s expects a number, got '%s'", o->name, val);
        *(double *)o->dest = v;
    }
}

int args_parse(int argc, char **argv, const char *usage, const char *summary,
               const arg_opt *opts, int nopts) {
    const char *cmd = argv[0];
    int npos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            print_help(usage, summary, opts, nopts);
            exit(0);
        }
        if (strncmp(a, "--", 2) || !a[2]) {
            argv[1 + npos++] = argv[i];
            continue;
        }
        const char *eq = strchr(a, '=');
        size_t len = eq ? (size_t)(eq - a) : strlen(a);
        const arg_opt *o = NULL;
        for (int j = 0; j < nopts; j++)
            if (strlen(opts[j].name) == len && !strncmp(opts[j].name, a, len)) o = &opts[j];
        if (!o) usage_error(cmd, "unknown option '%s'%s", a, "");
        if (o->type == ARG_FLAG) {
            if (eq) usage_error(cmd, "%s takes no value%s", o->name, "");
            *(int *)o->dest = 1;
            continue;
        }
        const char *val = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
        if (!val) usage_error(cmd, "%s needs a value%s", o->name, "");
        set_value(cmd, o, val);
    }
    return npos;
}
