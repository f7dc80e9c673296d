/* scripts/ablations.sh end to end: the script run with bash from the
 * repository root on a small grid (the aimc binary next to this test's
 * folder, the tiny LLaVA fixture, the synthetic benchmarks of
 * tests/fixtures/eval, one projector trained for 2 steps), then its outputs
 * checked against the grid as written here:
 *  - results.csv has exactly the columns docs/eval.md documents, in order,
 *    and one row per grid cell (the cells worked out here from the grid
 *    passed: per task, one zero-shot run for shots 0, one icl run per shots
 *    > 0, one aim run per shots > 0, projector and layer), no cell twice;
 *  - every numeric field parses completely and is finite; the score is in
 *    its metric's range (VQA accuracy and ROC-AUC in [0, 100], CIDEr-D >= 0),
 *    the metric is the task's, n the --limit, the seed the one passed,
 *    latency p50 <= p90; prompts: zero-shot < aim < icl at the same shots;
 *  - results.md has the same number of data rows, each naming its CSV row's
 *    task, backbone, mode and shots and its score to 2 decimals;
 *    summaries.jsonl one JSON object per row with the same task and mode;
 *  - with python3 + matplotlib: score_<task>_llava.png and
 *    efficiency_<task>_llava.png per task, each starting with the PNG
 *    signature, and no other PNG; without: the check is skipped (a note,
 *    not a failure), and the script says it drew nothing;
 *  - bad flag values (a word that is not a number of shots, an unknown
 *    mode or task, a negative --limit, an empty list, a flag without its
 *    value, an unknown flag): exit status 2 and one line "ablations.sh:
 *    error: ..." naming the flag, before any work (no output folder). */
#include "model_fixture.h"
#include "cli_fixture.h"
#include <dirent.h>
#include <errno.h>
#include <sys/stat.h>

static char tmpdir[] = "/tmp/aimc-test-ablations-XXXXXX";
static char aimc[PATH_MAX + 16];
static fx_path script;

/* ---- the grid ------------------------------------------------------------------------ */

static const char *const grid_tasks[] = {"vqa", "hateful"};
static const int grid_shots[] = {0, 2};
static const char *const grid_modes[] = {"aim", "icl", "zero-shot"};
static const char *const grid_projectors[] = {"linear"};
static const int grid_layers[] = {1};
#define GRID_LIMIT 2 /* test items per run: the first two hateful items hold both labels, so ROC-AUC is defined */
#define GRID_SEED 7
#define N_OF(x) (int)(sizeof(x) / sizeof(x)[0])

/* The columns of results.csv as docs/eval.md lists them. */
static const char *const csv_columns[] = {"label", "task", "backbone", "mode", "shots", "projector_type", "layer",
                                          "retrieval", "seed", "n", "metric", "score", "tokens_per_prompt",
                                          "peak_mem_mib", "latency_mean_ms", "latency_p50_ms", "latency_p90_ms",
                                          "device"};
#define N_COLS N_OF(csv_columns)

typedef struct cell {
    const char *task, *mode, *projector; /* projector "" unless aim */
    int shots, layer;                     /* layer -1 unless aim */
    int found;
} cell;

#define MAX_CELLS 64

static int has_mode(const char *mode) {
    for (int i = 0; i < N_OF(grid_modes); i++)
        if (!strcmp(grid_modes[i], mode)) return 1;
    return 0;
}

/* The runs the script's documented rules make of the grid. */
static int grid_cells(cell *c) {
    int n = 0;
    for (int t = 0; t < N_OF(grid_tasks); t++)
        for (int s = 0; s < N_OF(grid_shots); s++) {
            int k = grid_shots[s];
            if (k == 0) {
                if (has_mode("zero-shot")) c[n++] = (cell){grid_tasks[t], "zero-shot", "", 0, -1, 0};
                continue;
            }
            if (has_mode("icl")) c[n++] = (cell){grid_tasks[t], "icl", "", k, -1, 0};
            for (int p = 0; has_mode("aim") && p < N_OF(grid_projectors); p++)
                for (int l = 0; l < N_OF(grid_layers); l++)
                    c[n++] = (cell){grid_tasks[t], "aim", grid_projectors[p], k, grid_layers[l], 0};
        }
    return n;
}

/* "a b c" from a list of words. */
static void join_words(char *out, size_t n, const char *const *words, const int *ints, int count) {
    size_t at = 0;
    out[0] = 0;
    for (int i = 0; i < count && at < n; i++) {
        if (words) at += (size_t)snprintf(out + at, n - at, "%s%s", i ? " " : "", words[i]);
        else at += (size_t)snprintf(out + at, n - at, "%s%d", i ? " " : "", ints[i]);
    }
}

/* ---- running the script ------------------------------------------------------------------- */

/* bash scripts/ablations.sh ARGS... (NULL-terminated), output captured in tmpdir. */
static void run_script(cli_out *r, const char *const *args) {
    const char *argv[CLI_MAX_ARGS] = {script.s};
    int n = 1;
    while (args[n - 1] && n < CLI_MAX_ARGS - 1) argv[n] = args[n - 1], n++;
    argv[n] = NULL;
    cli_run(r, "/bin/bash", tmpdir, argv);
}

/* ---- reading the outputs -------------------------------------------------------------------- */

typedef struct table {
    char *text;                 /* the file, split in place */
    int n_rows;                 /* data rows (the header excluded) */
    char *head[N_COLS + 1];
    char *rows[MAX_CELLS + 1][N_COLS + 1];
    int n_fields[MAX_CELLS + 1]; /* per row; N_COLS + 1 means "more than N_COLS" */
    int n_head;
} table;

/* A whole text file, NUL-terminated (malloc'd), or NULL. */
/* Splits line at commas into at most max + 1 fields (empty fields kept). */
static int split_commas(char *line, char **fields, int max) {
    int n = 0;
    for (char *s = line; s && n <= max;) {
        fields[n++] = strsep(&s, ",");
    }
    return n;
}

/* results.csv: 0, or -1 when it cannot be read. */
static int read_csv(const char *path, table *t) {
    memset(t, 0, sizeof *t);
    t->text = tl_read_text(path);
    if (!t->text) return -1;
    char *save = NULL;
    for (char *line = strtok_r(t->text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (!t->n_head) {
            t->n_head = split_commas(line, t->head, N_COLS);
            continue;
        }
        if (t->n_rows > MAX_CELLS) break;
        t->n_fields[t->n_rows] = split_commas(line, t->rows[t->n_rows], N_COLS);
        t->n_rows++;
    }
    return 0;
}

static const char *field(const table *t, int row, const char *col) {
    for (int i = 0; i < N_COLS; i++)
        if (!strcmp(csv_columns[i], col)) return i < t->n_fields[row] ? t->rows[row][i] : "";
    printf("FAIL: no column %s in the test's list\n", col), exit(1);
}

/* A field that must be a number: parsed completely, finite. */
static int number(const table *t, int row, const char *col, double *v) {
    const char *s = field(t, row, col);
    char *end;
    errno = 0;
    *v = strtod(s, &end);
    int ok = *s && !*end && !errno && isfinite(*v);
    CHECK(ok, "results.csv row %d: %s '%s' is not a finite number", row + 1, col, s);
    return ok;
}

/* ---- the grid's outputs ----------------------------------------------------------------------- */

static void check_header(const table *t) {
    int same = t->n_head == N_COLS;
    for (int i = 0; same && i < N_COLS; i++) same = !strcmp(t->head[i], csv_columns[i]);
    char want[512];
    join_words(want, sizeof want, csv_columns, NULL, N_COLS);
    CHECK(same, "results.csv header: %d columns, want the %d documented ones (%s)", t->n_head, N_COLS, want);
}

/* The cell a row belongs to, or NULL. */
static cell *row_cell(const table *t, int row, cell *cells, int n_cells) {
    for (int i = 0; i < n_cells; i++) {
        cell *c = &cells[i];
        char shots[16], layer[16];
        snprintf(shots, sizeof shots, "%d", c->shots);
        snprintf(layer, sizeof layer, "%d", c->layer);
        if (!strcmp(field(t, row, "task"), c->task) && !strcmp(field(t, row, "mode"), c->mode) &&
            !strcmp(field(t, row, "shots"), shots) && !strcmp(field(t, row, "projector_type"), c->projector) &&
            !strcmp(field(t, row, "layer"), c->layer < 0 ? "" : layer))
            return c;
    }
    return NULL;
}

static const char *metric_of(const char *task) {
    return !strcmp(task, "vqa") ? "vqa_accuracy" : !strcmp(task, "caption") ? "cider" : "roc_auc";
}

static void check_row_values(const table *t, int row) {
    const char *task = field(t, row, "task"), *metric = field(t, row, "metric");
    CHECK(!strcmp(metric, metric_of(task)), "row %d: task %s with metric %s", row + 1, task, metric);
    CHECK(!strcmp(field(t, row, "backbone"), "llava") && !strcmp(field(t, row, "device"), "cpu"),
          "row %d: backbone '%s', device '%s'", row + 1, field(t, row, "backbone"), field(t, row, "device"));
    double score, n, seed, tokens, mem, mean, p50, p90, v;
    if (number(t, row, "score", &score)) {
        double hi = strcmp(metric, "cider") ? 100.0 : INFINITY;
        CHECK(score >= 0 && score <= hi, "row %d: %s %g out of [0, %g]", row + 1, metric, score, hi);
    }
    if (number(t, row, "n", &n)) CHECK(n == GRID_LIMIT, "row %d: n %g, --limit %d", row + 1, n, GRID_LIMIT);
    if (number(t, row, "seed", &seed)) CHECK(seed == GRID_SEED, "row %d: seed %g, --seed %d", row + 1, seed, GRID_SEED);
    if (number(t, row, "tokens_per_prompt", &tokens)) CHECK(tokens > 0, "row %d: %g tokens per prompt", row + 1, tokens);
    if (number(t, row, "peak_mem_mib", &mem)) CHECK(mem > 0, "row %d: peak memory %g MiB", row + 1, mem);
    int latencies = number(t, row, "latency_mean_ms", &mean);
    latencies &= number(t, row, "latency_p50_ms", &p50);
    latencies &= number(t, row, "latency_p90_ms", &p90);
    if (latencies)
        CHECK(mean >= 0 && p50 >= 0 && p50 <= p90, "row %d: latency mean %g p50 %g p90 %g ms", row + 1, mean, p50, p90);
    number(t, row, "shots", &v);
    if (!strcmp(field(t, row, "mode"), "aim")) number(t, row, "layer", &v);
}

/* tokens_per_prompt of the row with this task, mode and shots (NAN if none). */
static double prompt_tokens(const table *t, const char *task, const char *mode, int shots) {
    char s[16];
    snprintf(s, sizeof s, "%d", shots);
    for (int r = 0; r < t->n_rows; r++)
        if (!strcmp(field(t, r, "task"), task) && !strcmp(field(t, r, "mode"), mode) && !strcmp(field(t, r, "shots"), s))
            return strtod(field(t, r, "tokens_per_prompt"), NULL);
    return NAN;
}

static void check_prompt_order(const table *t) {
    for (int i = 0; i < N_OF(grid_tasks); i++)
        for (int s = 0; s < N_OF(grid_shots); s++) {
            int k = grid_shots[s];
            if (!k) continue;
            double zero = prompt_tokens(t, grid_tasks[i], "zero-shot", 0);
            double aim = prompt_tokens(t, grid_tasks[i], "aim", k), icl = prompt_tokens(t, grid_tasks[i], "icl", k);
            CHECK(zero < aim && aim < icl, "%s %d-shot tokens per prompt: zero-shot %g, aim %g, icl %g (want increasing)",
                  grid_tasks[i], k, zero, aim, icl);
        }
}

static void check_csv(const char *out, cell *cells, int n_cells, table *t) {
    fx_path csv = fx_join(out, "results.csv");
    CHECK(read_csv(csv.s, t) == 0, "cannot read %s", csv.s);
    check_header(t);
    CHECK(t->n_rows == n_cells, "results.csv: %d rows for %d grid cells", t->n_rows, n_cells);
    for (int r = 0; r < t->n_rows && r < MAX_CELLS; r++) {
        CHECK(t->n_fields[r] == N_COLS, "results.csv row %d: %d fields, want %d", r + 1, t->n_fields[r], N_COLS);
        if (t->n_fields[r] != N_COLS) continue;
        cell *c = row_cell(t, r, cells, n_cells);
        CHECK(c && !c->found, "results.csv row %d (%s %s %s-shot %s %s) is %s", r + 1, field(t, r, "task"),
              field(t, r, "mode"), field(t, r, "shots"), field(t, r, "projector_type"), field(t, r, "layer"),
              c ? "a cell seen twice" : "no cell of the grid");
        if (c) c->found++;
        check_row_values(t, r);
    }
    for (int i = 0; i < n_cells; i++)
        CHECK(cells[i].found, "no row for the cell %s %s %d-shot %s", cells[i].task, cells[i].mode, cells[i].shots,
              cells[i].projector);
    check_prompt_order(t);
}

/* The cells of a markdown table row "| a | b | ... |", trimmed, in place. */
static int md_cells(char *line, char **cells, int max) {
    int n = 0;
    if (*line != '|') return 0;
    for (char *s = line + 1, *bar; (bar = strchr(s, '|')) && n < max; s = bar + 1) {
        *bar = 0;
        while (*s == ' ') s++;
        char *e = bar;
        while (e > s && e[-1] == ' ') e--;
        *e = 0;
        cells[n++] = s;
    }
    return n;
}

static void check_markdown(const char *out, const table *t) {
    fx_path md = fx_join(out, "results.md");
    char *text = tl_read_text(md.s);
    CHECK(text != NULL, "cannot read %s", md.s);
    if (!text) return;
    int line_no = 0, rows = 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save), line_no++) {
        char *c[16];
        int n = md_cells(line, c, 16);
        if (line_no == 0) {
            CHECK(n == 13 && !strcmp(c[0], "task") && !strcmp(c[8], "score"), "results.md header: '%s'", line);
            continue;
        }
        if (line_no == 1) continue; /* |---|... */
        int r = rows++;
        if (r >= t->n_rows) continue;
        char score[32];
        snprintf(score, sizeof score, "%.2f", strtod(field(t, r, "score"), NULL));
        CHECK(n == 13 && !strcmp(c[0], field(t, r, "task")) && !strcmp(c[1], field(t, r, "backbone")) &&
                  !strcmp(c[2], field(t, r, "mode")) && !strcmp(c[3], field(t, r, "shots")) && !strcmp(c[8], score),
              "results.md row %d '%s' is not results.csv row %d", r + 1, line, r + 1);
    }
    CHECK(rows == t->n_rows, "results.md: %d data rows, results.csv %d", rows, t->n_rows);
    free(text);
}

static void check_summaries(const char *out, const table *t) {
    fx_path path = fx_join(out, "summaries.jsonl");
    char *text = tl_read_text(path.s);
    CHECK(text != NULL, "cannot read %s", path.s);
    if (!text) return;
    int r = 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save), r++) {
        cJSON *o = cJSON_Parse(line);
        const cJSON *task = cJSON_GetObjectItemCaseSensitive(o, "task"), *mode = cJSON_GetObjectItemCaseSensitive(o, "mode");
        CHECK(o && r < t->n_rows && cJSON_IsString(task) && cJSON_IsString(mode) &&
                  !strcmp(task->valuestring, field(t, r, "task")) && !strcmp(mode->valuestring, field(t, r, "mode")),
              "summaries.jsonl line %d is not results.csv row %d: %.200s", r + 1, r + 1, line);
        cJSON_Delete(o);
    }
    CHECK(r == t->n_rows, "summaries.jsonl: %d lines, results.csv %d rows", r, t->n_rows);
    free(text);
}

static int is_png(const char *path) {
    static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    unsigned char head[8];
    FILE *f = fopen(path, "rb");
    int ok = f && fread(head, 1, 8, f) == 8 && !memcmp(head, sig, 8);
    if (f) fclose(f);
    return ok;
}

static int count_pngs(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));) {
        size_t len = strlen(e->d_name);
        n += len > 4 && !strcmp(e->d_name + len - 4, ".png");
    }
    if (d) closedir(d);
    return n;
}

static void check_plots(const char *out, const cli_out *r) {
    /* the same two Pythons the script tries */
    if (system("python3 -c 'import matplotlib' >/dev/null 2>&1 || /usr/bin/python3 -c 'import matplotlib' >/dev/null 2>&1")) {
        printf("note: python3 with matplotlib not found: skipped the PNG check\n");
        CHECK(strstr(r->err, "matplotlib not found") && count_pngs(out) == 0,
              "without matplotlib: want the script's note and no PNG, got %d PNGs, stderr '%s'", count_pngs(out), r->err);
        return;
    }
    for (int i = 0; i < N_OF(grid_tasks); i++) {
        static const char *const kinds[] = {"score", "efficiency"};
        for (int k = 0; k < 2; k++) {
            char name[64];
            snprintf(name, sizeof name, "%s_%s_llava.png", kinds[k], grid_tasks[i]);
            fx_path png = fx_join(out, name);
            CHECK(is_png(png.s), "%s is missing or not a PNG", png.s);
        }
    }
    CHECK(count_pngs(out) == 2 * N_OF(grid_tasks), "%d PNGs in %s, want %d", count_pngs(out), out,
          2 * N_OF(grid_tasks));
}

static void test_grid(void) {
    cell cells[MAX_CELLS];
    int n_cells = grid_cells(cells);
    char tasks[128], shots[64], modes[64], projectors[64], layers[64], limit[16], seed[16], runs[64];
    join_words(tasks, sizeof tasks, grid_tasks, NULL, N_OF(grid_tasks));
    join_words(shots, sizeof shots, NULL, grid_shots, N_OF(grid_shots));
    join_words(modes, sizeof modes, grid_modes, NULL, N_OF(grid_modes));
    join_words(projectors, sizeof projectors, grid_projectors, NULL, N_OF(grid_projectors));
    join_words(layers, sizeof layers, NULL, grid_layers, N_OF(grid_layers));
    snprintf(limit, sizeof limit, "%d", GRID_LIMIT);
    snprintf(seed, sizeof seed, "%d", GRID_SEED);
    fx_path out = fx_join(tmpdir, "grid");
    cli_out *r = tl_alloc(sizeof *r);
    const char *args[] = {"--aimc", aimc, "--out", out.s, "--tasks", tasks, "--shots", shots, "--modes", modes,
                          "--projectors", projectors, "--layers", layers, "--limit", limit, "--seed", seed,
                          "--train-steps", "2", NULL};
    run_script(r, args);
    snprintf(runs, sizeof runs, "%d runs (0 failed)", n_cells);
    CHECK(r->rc == 0 && strstr(r->out, runs), "ablations.sh: exit %d, want '%s' in its output:\n%s\n%s", r->rc, runs,
          r->out, r->err);
    if (r->rc != 0) {
        fx_path log = fx_join(out.s, "log.txt");
        char tail[4096];
        cli_slurp(log.s, tail, sizeof tail);
        printf("log.txt starts:\n%s\n", tail);
    }
    table *t = tl_alloc(sizeof *t);
    check_csv(out.s, cells, n_cells, t);
    check_markdown(out.s, t);
    check_summaries(out.s, t);
    check_plots(out.s, r);
    free(t->text), free(t), free(r);
}

/* ---- bad flag values ------------------------------------------------------------------------------ */

static void expect_bad_flag(const char *flag, const char *value, const char *want) {
    static int calls;
    char name[32];
    snprintf(name, sizeof name, "bad-%d", calls++);
    fx_path out = fx_join(tmpdir, name);
    cli_out *r = tl_alloc(sizeof *r);
    const char *args[] = {"--aimc", aimc, "--out", out.s, "--train-steps", "2", "--limit", "1", flag, value, NULL};
    run_script(r, args);
    struct stat sb;
    const char *nl = strchr(r->err, '\n');
    CHECK(r->rc == 2 && !strncmp(r->err, "ablations.sh: error: ", 21) && strstr(r->err, want) && nl && !nl[1] &&
              stat(out.s, &sb) != 0,
          "ablations.sh %s '%s': want exit 2, one error line naming '%s' and no work; got %d, stderr '%s'%s", flag,
          value ? value : "(none)", want, r->rc, r->err, stat(out.s, &sb) == 0 ? ", an output folder" : "");
    free(r);
}

static void test_bad_flags(void) {
    expect_bad_flag("--shots", "0 two", "--shots (SHOTS): 'two'");
    expect_bad_flag("--shots", "-1", "--shots (SHOTS): '-1'");
    expect_bad_flag("--modes", "aim fewshot", "--modes (MODES): 'fewshot'");
    expect_bad_flag("--tasks", "vqa ocr", "--tasks (TASKS): 'ocr'");
    expect_bad_flag("--tasks", " ", "--tasks (TASKS) is empty");
    expect_bad_flag("--limit", "-1", "--limit (LIMIT): '-1'");
    expect_bad_flag("--layers", "last", "--layers (LAYERS): 'last'");
    expect_bad_flag("--device", "gpu", "--device (DEVICE): 'gpu'");
    expect_bad_flag("--projectors", "no-such-projector", "--projectors (PROJECTORS): 'no-such-projector'");
    expect_bad_flag("--shots", NULL, "--shots needs a value");
    expect_bad_flag("--frobnicate", "1", "unknown argument '--frobnicate'");
}

int main(void) {
    tests_begin("test_ablations");
    cli_find_aimc(aimc, sizeof aimc);
    /* the script reads the fixtures and configs relative to the repository root */
    if (chdir(fx_repo_root())) printf("FAIL: cannot enter the repository root\n"), exit(1);
    script = fx_join(fx_repo_root(), "scripts/ablations.sh");
    /* the script also takes its settings from the environment: none may leak in */
    static const char *const env[] = {"AIMC", "OUT", "TASKS", "BACKBONES", "SHOTS", "MODES", "PROJECTORS", "LAYERS",
                                      "LIMIT", "SEED", "DEVICE", "TRAIN_STEPS", "VQA_TRAIN", "VQA_TEST", "VQA_IMAGES",
                                      "VQA_TRAIN_IMAGES", "CAPTION_FILE", "CAPTION_IMAGES", "HATEFUL_TRAIN",
                                      "HATEFUL_TEST", "HATEFUL_IMAGES"};
    for (int i = 0; i < N_OF(env); i++) unsetenv(env[i]);
    if (!mkdtemp(tmpdir)) printf("FAIL: mkdtemp\n"), exit(1);

    test_bad_flags();
    test_grid();

    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd)) printf("note: could not remove %s\n", tmpdir);
    return tests_done();
}
