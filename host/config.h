/* Run configuration files: the one parser for the files in configs/ and for the
 * resolved configuration a checkpoint stores.
 *
 * Format (UTF-8 text, one setting per line):
 *     # a comment line
 *     model = tests/fixtures/models/llava   # a comment after a value
 *     query_prompt = "Caption:"               (quotes keep spaces and '#')
 * - the key is an option name of the command (arg_opt.name without "--");
 *   '-' and '_' are the same in keys (max_text_tokens = max-text-tokens);
 * - the value runs to the end of the line or to a " #" comment; surrounding
 *   whitespace is dropped; "..." or '...' quote it ('...' is literal; inside "..." a backslash escapes
 *   the next character: \" \\ and \n \r \t for newline, return, tab);
 * - flags (ARG_FLAG) take true/false, yes/no, on/off or 1/0;
 * - an unknown key, a repeated key, a line without '=' or a value of the
 *   wrong type is an error naming FILE:LINE, the key and the value.
 *
 * Precedence: the command's defaults, then the file, then the command line
 * (config_find_arg picks --config out of argv first; config_apply sets the
 * option destinations; args_parse then overwrites what the command line
 * names). One table of arg_opt serves all three and the --help text. */
#ifndef AIMC_CONFIG_H
#define AIMC_CONFIG_H
#include "args.h"
#include <stddef.h>

typedef struct config_entry {
    char *key;   /* as written */
    char *value; /* unquoted */
    int line;    /* 1-based */
} config_entry;

typedef struct config_file {
    char *where; /* the path, or the name given to config_parse */
    int n;
    config_entry *entries;
} config_file;

/* Parses text. 0, or -1 with one line "WHERE:LINE: problem" in err. */
int config_parse(const char *text, const char *where, config_file *out, char *err, size_t errlen);
/* Reads and parses a file (errors name the path). */
int config_load(const char *path, config_file *out, char *err, size_t errlen);
void config_free(config_file *c);
/* The entry for an option name ("--max-text-tokens" or "max_text_tokens"), or NULL. */
const config_entry *config_find(const config_file *c, const char *name);

/* Sets each entry's option destination (strings point into c, which must
 * outlive their use). Options named in skip (NULL-terminated, e.g.
 * {"--config", NULL}) are refused as keys. 0, or -1 with one line in err. */
int config_apply(const config_file *c, const arg_opt *opts, int nopts, const char *const *skip, char *err,
                 size_t errlen);

/* The value of `--flag VALUE` / `--flag=VALUE` in argv[1..argc), or NULL
 * (the last one wins, as in args_parse). */
const char *config_find_arg(int argc, char **argv, const char *flag);

/* The options' current values as config text: `header` (comment lines, may
 * be NULL), then one "key = value" line per option except those in skip,
 * keys with '_'. Parsing it back with config_parse + config_apply restores
 * the same values (numbers print exactly). malloc'd. */
char *config_format(const arg_opt *opts, int nopts, const char *const *skip, const char *header);

/* Keys whose value differs between two config texts (as "key: OLD -> NEW"
 * joined by "; ", keys in ignore left out) into buf; returns the count.
 * Texts that do not parse count as no difference. */
int config_diff(const char *old_text, const char *new_text, const char *const *ignore, char *buf, size_t n);
#endif
