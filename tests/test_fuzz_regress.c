/* The fuzz targets (tests/fuzz/fuzz_*.c) as a plain test, built with gcc and
 * no libFuzzer, so `make test` (and, instrumented, `make test-asan`) keeps
 * every finding fixed:
 *   - each target's seed corpus (made from the committed fixtures) runs
 *     through its entry point: the harness and its oracles accept valid input;
 *   - every saved reproducer in tests/fuzz/crashes/TARGET/ runs through it:
 *     a crash reproducer found once stays a regression test;
 *   - a few randomly mutated seeds per target (testlib's seed; AIMC_TEST_SEED
 *     repeats a run) exercise the error paths.
 * Each input runs in a child process; a crash, a sanitizer report, a failed
 * oracle, an internal check, or an aimc_die outside the calls documented to
 * die (fuzz.h: FUZZ_CATCH_DIE) counts as one FAIL naming the target and the
 * input. Every target file is included here, so their helpers have unique
 * names. */
#define FUZZ_REGRESS 1
#include "fuzz/fuzz_bank.c"
#include "fuzz/fuzz_base64.c"
#include "fuzz/fuzz_checkpoint.c"
#include "fuzz/fuzz_image.c"
#include "fuzz/fuzz_model_dir.c"
#include "fuzz/fuzz_preprocess_config.c"
#include "fuzz/fuzz_run_config.c"
#include "fuzz/fuzz_safetensors.c"
#include "fuzz/fuzz_sample.c"
#include "fuzz/fuzz_shard.c"
#include "fuzz/fuzz_tokenizer_decode.c"
#include "fuzz/fuzz_tokenizer_encode.c"
#include "fuzz/fuzz_tokenizer_load.c"
#include "testlib.h"
#include <sys/mman.h>
#include <sys/wait.h>

#define MUTANTS_PER_TARGET 24

typedef struct fuzz_target {
    const char *name;
    int (*one)(const uint8_t *data, size_t size);
    void (*seeds)(const char *dir);
} fuzz_target;

#define TARGET(n) {"fuzz_" #n, fuzz_##n##_one, fuzz_##n##_seeds}
static const fuzz_target targets[] = {
    TARGET(bank),            TARGET(base64),           TARGET(checkpoint),       TARGET(image),
    TARGET(model_dir),       TARGET(preprocess_config), TARGET(run_config),
    TARGET(safetensors),     TARGET(sample),           TARGET(shard),
    TARGET(tokenizer_decode), TARGET(tokenizer_encode), TARGET(tokenizer_load),
};

/* Runs one input in a child process; 0, or -1 (with the reason printed)
 * when it crashed, failed an oracle or exited other than by an expected die. */
static int replay(const fuzz_target *t, const uint8_t *data, size_t size) {
    *fuzz_die_expected = 0;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        t->one(data, size);
        exit(0); /* not _exit: under make test-asan, LeakSanitizer checks at exit */
    }
    int status;
    if (waitpid(pid, &status, 0) != pid) return -1;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return 0;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 1 && *fuzz_die_expected) return 0;
    if (WIFSIGNALED(status))
        printf("  %s: killed by signal %d\n", t->name, WTERMSIG(status));
    else
        printf("  %s: exit status %d (a sanitizer report, an internal check, or aimc_die where an error "
               "return is promised)\n",
               t->name, WEXITSTATUS(status));
    return -1;
}

static int replay_file(const fuzz_target *t, const char *path) {
    size_t n;
    uint8_t *data = fuzz_read_file(path, &n);
    if (!data) return -1;
    int rc = replay(t, data, n);
    free(data);
    return rc;
}

/* The regular files of a folder, sorted (malloc'd paths); the count. */
static int list_files(const char *dir, char ***out) {
    *out = NULL;
    struct dirent **ents;
    int n = scandir(dir, &ents, NULL, alphasort), k = 0;
    if (n < 0) return 0;
    *out = calloc((size_t)n + 1, sizeof **out);
    for (int i = 0; i < n; i++) {
        char path[4096];
        struct stat sb;
        snprintf(path, sizeof path, "%s/%s", dir, ents[i]->d_name);
        if (stat(path, &sb) == 0 && S_ISREG(sb.st_mode)) (*out)[k++] = strdup(path);
        free(ents[i]);
    }
    free(ents);
    return k;
}

static void free_files(char **files, int n) {
    for (int i = 0; i < n; i++) free(files[i]);
    free(files);
}

/* A seed with 1-8 random bytes changed, maybe truncated or extended. */
static void run_mutant(const fuzz_target *t, const char *seed_path) {
    size_t n;
    uint8_t *data = fuzz_read_file(seed_path, &n);
    if (!data) return;
    uint8_t *m = malloc(n + 17);
    memcpy(m, data, n);
    size_t size = n;
    int edits = 1 + (int)rng_int(8);
    for (int e = 0; e < edits && size; e++) m[rng_int((int64_t)size)] = (uint8_t)rng_u64();
    int64_t cut = rng_int(4);
    if (cut == 0 && size) size = (size_t)rng_int((int64_t)size);
    if (cut == 1) for (int i = 0; i < 16; i++) m[size++] = (uint8_t)rng_u64();
    CHECK(replay(t, m, size) == 0, "%s: a mutation of %s (AIMC_TEST_SEED repeats it)", t->name, seed_path);
    free(m);
    free(data);
}

static void run_target(const fuzz_target *t) {
    char seeds_dir[4096], crash_dir[512];
    int len = snprintf(seeds_dir, sizeof seeds_dir, "%s/seeds-%s", fuzz_tmpdir(), t->name);
    AIMC_CHECK(len > 0 && (size_t)len < sizeof seeds_dir, "seed folder name too long");
    mkdir(seeds_dir, 0777);
    t->seeds(seeds_dir);
    char **files;
    int n = list_files(seeds_dir, &files);
    CHECK(n > 0, "%s: no seeds written", t->name);
    for (int i = 0; i < n; i++) CHECK(replay_file(t, files[i]) == 0, "%s: seed %s", t->name, files[i]);
    for (int i = 0; i < MUTANTS_PER_TARGET && n; i++) run_mutant(t, files[rng_int(n)]);
    free_files(files, n);
    snprintf(crash_dir, sizeof crash_dir, "tests/fuzz/crashes/%s", t->name);
    n = list_files(crash_dir, &files);
    for (int i = 0; i < n; i++) CHECK(replay_file(t, files[i]) == 0, "%s: reproducer %s", t->name, files[i]);
    printf("%-26s seeds and %d reproducer(s) replayed\n", t->name, n);
    free_files(files, n);
}

int main(void) {
    tests_begin("test_fuzz_regress");
    fuzz_die_expected = mmap(NULL, sizeof(int), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (fuzz_die_expected == MAP_FAILED) return 1;
    fuzz_tmpdir(); /* made here, so children share it and only this process removes it */
    for (size_t i = 0; i < sizeof targets / sizeof targets[0]; i++) run_target(&targets[i]);
    return tests_done();
}
