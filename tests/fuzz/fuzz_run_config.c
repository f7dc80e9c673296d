/* Fuzz target: run configuration files (host/config.h), the parser of
 * configs/NAME.conf and of the resolved configuration a checkpoint stores.
 * Input: the file's text (parsed up to its first NUL, as config_load refuses
 * NUL bytes).
 * Oracles: every parsed entry is found by config_find under its key; when
 * the entries apply to a table of options of every type, config_format of the
 * resulting values parses and applies back to exactly the same values (the
 * round trip config.h promises, on which resuming from a checkpoint relies). */
#include "../../host/config.h"
#include "fuzz.h"
#include <math.h>

typedef struct rcfz_values {
    const char *model, *prompt, *tmpl;
    int64_t steps, k;
    double lr, sim;
    int eos, bf16;
} rcfz_values;

#define RCFZ_NOPTS 10

static void rcfz_table(rcfz_values *v, arg_opt *o) {
    const arg_opt t[RCFZ_NOPTS] = {
        {"--model", ARG_STR, &v->model, "model folder"},
        {"--query-prompt", ARG_STR, &v->prompt, "prompt"},
        {"--target-template", ARG_STR, &v->tmpl, "template"},
        {"--steps", ARG_INT, &v->steps, "steps"},
        {"--k", ARG_INT, &v->k, "demonstrations"},
        {"--lr", ARG_FLOAT, &v->lr, "learning rate"},
        {"--sim-threshold", ARG_FLOAT, &v->sim, "threshold"},
        {"--target-eos", ARG_FLAG, &v->eos, "eos"},
        {"--bf16", ARG_FLAG, &v->bf16, "bf16"},
        {"--config", ARG_STR, NULL, "the file itself (refused as a key)"},
    };
    memcpy(o, t, sizeof t);
}

static const char *const rcfz_skip[] = {"--config", NULL};

static int rcfz_same_double(double a, double b) { return (isnan(a) && isnan(b)) || !memcmp(&a, &b, sizeof a); }

static int rcfz_same(const rcfz_values *a, const rcfz_values *b) {
    return !strcmp(a->model, b->model) && !strcmp(a->prompt, b->prompt) && !strcmp(a->tmpl, b->tmpl) &&
           a->steps == b->steps && a->k == b->k && rcfz_same_double(a->lr, b->lr) &&
           rcfz_same_double(a->sim, b->sim) && a->eos == b->eos && a->bf16 == b->bf16;
}

static void rcfz_roundtrip(const rcfz_values *applied) {
    rcfz_values copy = *applied, back = {"", "", "", 0, 0, 0, 0, 0, 0};
    arg_opt o[RCFZ_NOPTS], ob[RCFZ_NOPTS];
    rcfz_table(&copy, o);
    rcfz_table(&back, ob);
    char *text = config_format(o, RCFZ_NOPTS - 1, rcfz_skip, "# fuzz round trip\n");
    config_file c;
    char err[1024] = "";
    FUZZ_ASSERT(config_parse(text, "roundtrip", &c, err, sizeof err) == 0,
                "config_format wrote text it cannot parse: %s\n--- text:\n%s", err, text);
    FUZZ_ASSERT(config_apply(&c, ob, RCFZ_NOPTS - 1, rcfz_skip, err, sizeof err) == 0,
                "formatted config does not apply: %s\n--- text:\n%s", err, text);
    FUZZ_ASSERT(rcfz_same(applied, &back), "values changed in the round trip\n--- text:\n%s", text);
    config_free(&c);
    free(text);
}

int fuzz_run_config_one(const uint8_t *data, size_t size) {
    char *text = fuzz_cstr(data, size);
    config_file c;
    char err[1024] = "";
    if (config_parse(text, "fuzz.conf", &c, err, sizeof err)) {
        FUZZ_ASSERT(err[0] && c.n == 0 && !c.entries, "failed parse without a message or with entries");
        free(text);
        return 0;
    }
    for (int i = 0; i < c.n; i++)
        FUZZ_ASSERT(config_find(&c, c.entries[i].key) == &c.entries[i], "entry '%s' not found", c.entries[i].key);
    rcfz_values v = {"default/model", "Caption:", "{caption}", 1000, 2, 1e-3, 0.24, 1, 0};
    arg_opt o[RCFZ_NOPTS];
    rcfz_table(&v, o);
    if (config_apply(&c, o, RCFZ_NOPTS, rcfz_skip, err, sizeof err) == 0) rcfz_roundtrip(&v);
    config_free(&c);
    free(text);
    return 0;
}

void fuzz_run_config_seeds(const char *dir) {
    static const char *const texts[] = {
        "# a run\nmodel = tests/fixtures/models/llava   # comment\nquery_prompt = \"Caption: #1\"\n"
        "target-template = '{caption}.'\nsteps = 20\nk = 3\nlr = 2.5e-4\nsim_threshold = 0.3\n"
        "target_eos = no\nbf16 = ON\n",
        "steps = 0x10\n", "lr = nan\nk = -1\n", "model = \n", "query_prompt = '  spaced  '\n",
        "bad line\n", "k = 1\nk = 2\n", "config = other.conf\n", "unknown = 1\n", "\n\n   # only comments\n",
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        char name[32];
        snprintf(name, sizeof name, "conf%zu", i);
        fuzz_seed(dir, name, NULL, 0, texts[i], strlen(texts[i]));
    }
    rcfz_values v = {"m", "Q: a \"quoted\" prompt", "{caption}", 7, 1, 0.1, -0.0, 0, 1};
    arg_opt o[RCFZ_NOPTS];
    rcfz_table(&v, o);
    char *text = config_format(o, RCFZ_NOPTS - 1, rcfz_skip, "# formatted\n");
    fuzz_seed(dir, "formatted", NULL, 0, text, strlen(text));
    free(text);
}

FUZZ_MAIN(run_config)
