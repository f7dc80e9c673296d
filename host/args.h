/* One flag parser for every subcommand. A command declares its options in a
 * table; args_parse fills them, prints --help from the table, and turns an
 * unknown flag or a bad value into a one-line error with exit status 2. */
#ifndef AIMC_ARGS_H
#define AIMC_ARGS_H
#include <stdint.h>

typedef enum { ARG_STR, ARG_INT, ARG_FLOAT, ARG_FLAG } arg_type;

typedef struct arg_opt {
    const char *name;  /* "--device" */
    arg_type type;
    void *dest;        /* const char **, int64_t *, double *, int * */
    const char *help;  /* one line; the default is printed from dest */
} arg_opt;

/* Parses argv[1..argc) (argv[0] is the command name). Positional arguments
 * are kept in order in argv and their count is returned. `usage` is the
 * synopsis line ("aimc selfcheck [options]"). Exits 0 after --help. */
int args_parse(int argc, char **argv, const char *usage, const char *summary,
               const arg_opt *opts, int nopts);
#endif
