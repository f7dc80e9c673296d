/* Running the aimc binary from a test (test_eval, test_infer_cli): finding
 * BUILD/aimc next to BUILD/tests/<this test>, and running it as a child
 * process with stdout and stderr captured through files in a scratch
 * folder. A missing binary ends the test binary with one FAIL line and
 * status 1: nothing after it could be checked. */
#ifndef AIMC_CLI_FIXTURE_H
#define AIMC_CLI_FIXTURE_H
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* Writes the path of BUILD/aimc into aimc[n], or FAILs and exits. */
static inline void cli_find_aimc(char *aimc, size_t n) {
    char self[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len <= 0) printf("FAIL: cannot read /proc/self/exe\n"), exit(1);
    self[len] = 0;
    *strrchr(self, '/') = 0;
    snprintf(aimc, n, "%s/../aimc", self);
    if (access(aimc, X_OK)) printf("FAIL: %s not found (make BUILD/aimc first)\n", aimc), exit(1);
}

/* The start of a file as a string in buf[n] ("" when it cannot be read). */
static inline void cli_slurp(const char *file, char *buf, size_t n) {
    FILE *f = fopen(file, "rb");
    size_t got = f ? fread(buf, 1, n - 1, f) : 0;
    buf[got] = 0;
    if (f) fclose(f);
}

typedef struct cli_out {
    int rc; /* exit status, or 128 + the signal that ended it */
    char out[16384], err[8192];
} cli_out;

#define CLI_MAX_ARGS 64

/* aimc ARGS... (NULL-terminated) with stdout and stderr captured through
 * tmpdir/stdout and tmpdir/stderr. */
static inline void cli_run(cli_out *r, const char *aimc, const char *tmpdir, const char *const *args) {
    const char *argv[CLI_MAX_ARGS + 2] = {aimc};
    int n = 0;
    while (args[n] && n < CLI_MAX_ARGS) argv[1 + n] = args[n], n++;
    char o[PATH_MAX + 16], e[PATH_MAX + 16];
    snprintf(o, sizeof o, "%s/stdout", tmpdir);
    snprintf(e, sizeof e, "%s/stderr", tmpdir);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        int fo = open(o, O_WRONLY | O_CREAT | O_TRUNC, 0644), fe = open(e, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fo, 1), dup2(fe, 2);
        setenv("OMP_NUM_THREADS", "1", 1); /* tiny models: threads only add scheduling noise */
        execv(aimc, (char *const *)argv);
        _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    r->rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    cli_slurp(o, r->out, sizeof r->out);
    cli_slurp(e, r->err, sizeof r->err);
}

#endif
