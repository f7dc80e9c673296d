/* aimc train (host/train.h, host/cmd_train.c, host/config.h), run as the real
 * command (fork + exec of the aimc binary next to this test's folder) on the
 * tiny LLaVA fixture and synthetic MMC4 shards written here:
 *  1. learning: after training, the loss on held-out episodes (computed here
 *     with aim_batch_step, no gradient) is clearly below the untrained
 *     projector's; an lr = 0 run leaves the projector bitwise at its
 *     initialisation (so that baseline is what training starts from); the
 *     logged training loss falls;
 *  2. exact resume: N steps in one go == N/2 (--until) + --resume N/2,
 *     bitwise (parameters, AdamW moments, data cursors, counters);
 *  3. a run SIGKILLed after a checkpoint, and one killed in the middle of a
 *     checkpoint write, resume to the uninterrupted run's projector bitwise;
 *  4. data parallelism: 2 ranks with batch B (over TCP via RANK/WORLD_SIZE,
 *     and under mpirun when present) == 1 rank with batch 2B within f32
 *     reduction-order rounding (rel <= 1e-5); TCP and MPI bitwise equal; a
 *     1-rank resume of a 2-rank checkpoint is refused;
 *  5. config file < command line precedence, the resolved config stored in
 *     config.conf and the checkpoint; bad values exit 2 with one line; a
 *     resume with another projector, or a fresh run over checkpoints, is
 *     refused and changes nothing; non-finite steps are skipped, counted and
 *     named, and max_bad_steps in a row stop the run;
 *  6. --objective contrastive on the tiny CLIP fixture and synthetic LAION
 *     shards: the heads start bitwise at the fixture's visual_projection,
 *     text_projection and logit_scale (an lr = 0 run); the held-out loss at
 *     step 0 equals the CLIPModel loss of the same batches computed here with
 *     clip_forward (rel 1e-5); training loss and held-out loss fall clearly;
 *     N steps == N/2 + --resume N/2 bitwise; 2 ranks x batch B (TCP, and
 *     mpirun when present) == 1 rank x 2B (params, per-step loss, gradient
 *     norm and held-out loss within rel 1e-5); aimc export writes
 *     visual_projection.weight, text_projection.weight and logit_scale with
 *     their shapes and the checkpoint's values; --accum > 1, --k > 0, a
 *     non-CLIP folder and an LM checkpoint are refused.
 * Children run with OMP_WAIT_POLICY=passive: on a loaded 2-core machine
 * spinning OpenMP threads starve the loader's decode threads. */
#include "../data/loader.h"
#include "../kernels/check.h"
#include "../data/synth.h"
#include "../host/aim.h"
#include "../host/checkpoint.h"
#include "../host/clip.h"
#include "../host/config.h"
#include "../host/contrastive.h"
#include "../host/mllm.h"
#include "../host/model_dir.h"
#include "../host/safetensors.h"
#include "testlib.h"
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>

#define MODEL "tests/fixtures/models/llava"

static char g_aimc[4096]; /* the aimc binary */
static char g_root[256] = "/tmp/aimc-train-XXXXXX";

static const char *at(const char *name) {
    static char buf[8][512];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_root, name);
    return buf[k];
}


static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f)) printf("FAIL: cannot write %s\n", path), exit(1);
}

/* ===== running aimc =========================================================== */

#define MAX_ARGS 96

typedef struct cmdline {
    const char *argv[MAX_ARGS];
    int n;
    const char *env[8]; /* NAME=VALUE for the child */
    int n_env;
} cmdline;

static void arg(cmdline *c, const char *a) {
    if (c->n + 1 >= MAX_ARGS) printf("FAIL: too many arguments\n"), exit(1);
    c->argv[c->n++] = a;
    c->argv[c->n] = NULL;
}
static void args(cmdline *c, const char *const *list) {
    for (int i = 0; list[i]; i++) arg(c, list[i]);
}
static void env(cmdline *c, const char *kv) { c->env[c->n_env++] = kv; }

/* aimc train with the small settings every run here shares. */
static cmdline train_cmd(const char *out) {
    static const char *const common[] = {"--model",
                                         MODEL,
                                         "--k",
                                         "1",
                                         "--max-text-tokens",
                                         "12",
                                         "--sim-threshold",
                                         "0",
                                         "--workers",
                                         "1",
                                         "--log-every",
                                         "1000",
                                         "--lr",
                                         "0.05",
                                         "--warmup",
                                         "2",
                                         "--min-lr",
                                         "0.005",
                                         "--arena-mb",
                                         "64",
                                         "--save-every",
                                         "0",
                                         NULL};
    cmdline c = {.n = 0};
    arg(&c, g_aimc);
    arg(&c, "train");
    args(&c, common);
    arg(&c, "--out");
    arg(&c, out);
    return c;
}

/* Starts the command with stdout + stderr into log (NULL: /dev/null). */
static pid_t spawn(const cmdline *c, const char *log) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid != 0) return pid;
    int fd = open(log ? log : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) dup2(fd, 1), dup2(fd, 2), close(fd);
    setenv("OMP_WAIT_POLICY", "passive", 1);
    for (int i = 0; i < c->n_env; i++) putenv((char *)c->env[i]);
    execv(c->argv[0], (char *const *)c->argv);
    _exit(127);
}

/* Runs to the end; its output in *out (malloc'd, may be NULL). */
static int run(const cmdline *c, char **out) {
    const char *log = at("last.log");
    int st = tl_wait_status(spawn(c, log));
    char *text = tl_read_text(log);
    if (out)
        *out = text;
    else
        free(text);
    return st;
}

/* Runs and checks it succeeded (printing its output when not). */
static int run_ok(const cmdline *c, const char *what) {
    char *out;
    int st = run(c, &out);
    CHECK(st == 0, "%s: aimc exited with %d:\n%s", what, st, out ? out : "");
    free(out);
    return st == 0;
}

/* ===== checkpoints ============================================================== */

static ckpt_file *open_latest(const char *dir) {
    char path[1024], err[1024];
    if (ckpt_resolve(dir, path, sizeof path, err, sizeof err)) {
        printf("FAIL: %s\n", err);
        return NULL;
    }
    ckpt_file *f = ckpt_open(path, NULL, err, sizeof err);
    if (!f) printf("FAIL: %s\n", err);
    return f;
}

static int64_t latest_step(const char *dir) {
    ckpt_file *f = open_latest(dir);
    int64_t s = f ? (int64_t)f->step : -1;
    ckpt_close(f);
    return s;
}

/* Every tensor of a bitwise equal to b's, same step, and (with extra) the
 * same extra blob. */
static int same_state(const char *dir_a, const char *dir_b, int with_extra, const char *what) {
    ckpt_file *a = open_latest(dir_a), *b = open_latest(dir_b);
    int ok = a && b && a->step == b->step && a->n_tensors == b->n_tensors;
    for (int i = 0; ok && i < a->n_tensors; i++) {
        const ckpt_tensor *x = &a->tensors[i], *y = ckpt_find(b, x->name);
        ok = y && x->nbytes == y->nbytes && !memcmp(x->data, y->data, x->nbytes);
        if (!ok) printf("  %s: tensor %s differs\n", what, x->name);
    }
    if (ok && with_extra) ok = a->extra_len == b->extra_len && !memcmp(a->extra, b->extra, a->extra_len);
    CHECK(ok, "%s: final states differ (steps %lld, %lld)", what, a ? (long long)a->step : -1LL,
          b ? (long long)b->step : -1LL);
    ckpt_close(a);
    ckpt_close(b);
    return ok;
}

/* max over parameters of ||a - b|| / ||b||. */
static double param_rel_diff(const char *dir_a, const char *dir_b) {
    ckpt_file *a = open_latest(dir_a), *b = open_latest(dir_b);
    double worst = a && b ? 0 : INFINITY;
    for (int i = 0; a && b && i < a->n_tensors; i++) {
        const ckpt_tensor *x = &a->tensors[i], *y = ckpt_find(b, x->name);
        if (x->role != CKPT_ROLE_PARAM) continue;
        if (!y || y->nbytes != x->nbytes) return INFINITY;
        double e = rel_err_f32(x->data, y->data, (int64_t)(x->nbytes / 4));
        if (!(e <= worst)) worst = e;
    }
    ckpt_close(a);
    ckpt_close(b);
    return worst;
}

/* ===== data ========================================================================== */

static void synth(const char *dir, int64_t shards, int64_t docs, uint64_t seed) {
    synth_options o = {.layout = SYNTH_MMC4,
                       .shards = shards,
                       .docs = docs,
                       .image_format = SYNTH_IMG_MIXED,
                       .seed = seed,
                       .image_size = 32,
                       .min_images = 2,
                       .max_images = 4};
    char err[512];
    if (synth_write(&o, dir, err, sizeof err) < 0) printf("FAIL: synth: %s\n", err), exit(1);
}

/* ===== 1. learning ==================================================================== */

typedef struct eval_set {
    mllm *m;
    const backend *be;
    episode eps[32];
    int n;
} eval_set;

static int load_eval_set(eval_set *s) {
    char err[1024];
    s->be = backend_cpu();
    s->m = mllm_load(MODEL, s->be, DT_F32);
    tokenizer *tok = tokenizer_load(MODEL, err, sizeof err);
    preprocess_config pp;
    if (!tok || preprocess_config_load(&pp, MODEL, err, sizeof err)) return printf("FAIL: %s\n", err), 0;
    char **shards;
    int64_t n = shard_expand(at("eval/*.tar"), &shards, err, sizeof err);
    loader_config lc;
    loader_config_default(&lc);
    lc.shards = shards;
    lc.n_shards = n;
    lc.n_workers = 1;
    lc.max_epochs = 1;
    lc.tok = tok;
    lc.pp = &pp;
    lc.episode.k = 1;
    lc.episode.sim_threshold = 0;
    lc.episode.max_text_tokens = 12;
    loader *l = n > 0 ? loader_open(&lc, NULL, err, sizeof err) : NULL;
    if (!l) return printf("FAIL: eval loader: %s\n", err), 0;
    s->n = 0;
    while (s->n < 32 && loader_next(l, &s->eps[s->n], err, sizeof err) == 1) s->n++;
    loader_close(l);
    shard_paths_free(shards, n);
    tokenizer_free(tok);
    return s->n;
}

/* Mean LM loss over the set's target tokens (no gradient). */
static double eval_loss(const eval_set *s, projector *p) {
    aim_model am = {.mllm = s->m, .proj = p, .layer = -1};
    arena a;
    arena_init(&a, s->be, 64u << 20);
    double sum = 0;
    for (int i = 0; i < s->n; i += 8) {
        int b = s->n - i < 8 ? s->n - i : 8;
        sum += aim_batch_step(&am, &a, s->eps + i, b, 0.0f, 0);
    }
    arena_free(&a);
    return sum / (double)aim_count_targets(s->eps, s->n);
}

static void init_projector(const eval_set *s, projector *p) {
    projector_config pc = {.type = PROJ_LINEAR,
                           .d_in = mllm_d_model(s->m),
                           .d_out = mllm_d_model(s->m),
                           .ln_eps = 1e-5f,
                           .seed = 0};
    projector_init(p, s->be, &pc);
}

/* The mean "loss" of metrics lines [from, to) (1-based steps). */
static double logged_loss(const char *dir, int from, int to) {
    char path[512];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    char *text = tl_read_text(path);
    double sum = 0;
    int n = 0;
    for (char *s = text; s && (s = strstr(s, "{\"step\":")); s++) {
        int step = atoi(s + 8);
        char *l = strstr(s, "\"loss\":");
        if (l && step >= from && step < to) sum += atof(l + 7), n++;
    }
    free(text);
    return n ? sum / n : NAN;
}

static void test_learning(void) {
    cmdline c = train_cmd(at("learn"));
    args(&c, (const char *[]){"--data", at("train/*.tar"), "--steps", "40", "--batch", "8", NULL});
    if (!run_ok(&c, "training run")) return;
    cmdline z = train_cmd(at("frozen"));
    args(&z, (const char *[]){"--data", at("train/*.tar"), "--steps", "3", "--batch", "8", "--lr", "0",
                              "--min-lr", "0", NULL});
    if (!run_ok(&z, "lr = 0 run")) return;

    eval_set s;
    if (!load_eval_set(&s)) return;
    CHECK(s.n >= 16, "eval set: %d episodes", s.n);
    projector p0, p1, pz;
    init_projector(&s, &p0);
    init_projector(&s, &p1);
    init_projector(&s, &pz);
    char err[1024];
    ckpt_file *f = open_latest(at("learn")), *fz = open_latest(at("frozen"));
    int ok = f && fz && !ckpt_projector_restore(f, &p1, 0, err, sizeof err) &&
             !ckpt_projector_restore(fz, &pz, 0, err, sizeof err);
    CHECK(ok, "restoring the trained projectors: %s", err);
    double l0 = eval_loss(&s, &p0), l1 = eval_loss(&s, &p1), lz = eval_loss(&s, &pz);
    printf("held-out loss (%d episodes): initial projector %.4f, lr = 0 run %.4f, trained %.4f\n", s.n, l0,
           lz, l1);
    CHECK(lz == l0,
          "lr = 0 run: held-out loss %.6f, the initial projector's %.6f (training must start from "
          "projector_init(seed))",
          lz, l0);
    CHECK(l1 < l0 - 0.1, "trained held-out loss %.4f is not clearly below the untrained %.4f", l1, l0);
    double first = logged_loss(at("learn"), 1, 6), last = logged_loss(at("learn"), 36, 41);
    printf("logged training loss: steps 1-5 %.4f, steps 36-40 %.4f\n", first, last);
    CHECK(last < first - 0.1, "training loss did not fall: %.4f -> %.4f", first, last);
    ckpt_close(f);
    ckpt_close(fz);
    projector_free(&p0);
    projector_free(&p1);
    projector_free(&pz);
    for (int i = 0; i < s.n; i++) episode_free(&s.eps[i]);
    mllm_free(s.m);
}

/* ===== 2, 3. exact resume ============================================================= */

/* The reference: 6 steps, 2 micro-batches of 2, in one go. */
static cmdline resume_cmd(const char *out) {
    cmdline c = train_cmd(out);
    args(&c, (const char *[]){"--data", at("train/*.tar"), "--steps", "6", "--batch", "2", "--accum", "2",
                              "--shuffle-block", "8", NULL});
    return c;
}

static void test_exact_resume(void) {
    cmdline full = resume_cmd(at("full"));
    if (!run_ok(&full, "uninterrupted run")) return;
    cmdline first = resume_cmd(at("split"));
    arg(&first, "--until");
    arg(&first, "3");
    if (!run_ok(&first, "first half")) return;
    CHECK(latest_step(at("split")) == 3, "--until 3 stopped at step %lld",
          (long long)latest_step(at("split")));
    cmdline second = resume_cmd(at("split"));
    arg(&second, "--resume");
    if (!run_ok(&second, "resumed half")) return;
    same_state(at("full"), at("split"), 1, "6 steps vs 3 + resume 3");
    /* the comparison can fail: step 3's state is not step 6's */
    char p3[512], err[512];
    snprintf(p3, sizeof p3, "%s/ckpt-0000000003.aimc", at("split"));
    ckpt_file *a = ckpt_open(p3, NULL, err, sizeof err), *b = open_latest(at("full"));
    const ckpt_tensor *w3 = a ? ckpt_find(a, "linear.weight") : NULL,
                      *w6 = b ? ckpt_find(b, "linear.weight") : NULL;
    CHECK(w3 && w6 && memcmp(w3->data, w6->data, w3->nbytes), "step 3 and step 6 weights should differ");
    ckpt_close(a);
    ckpt_close(b);
}

/* Waits until path exists (1) or the child exits / time runs out (0). */
static int wait_for_file(const char *path, pid_t pid, double limit_s) {
    double t0 = aimc_now();
    struct stat st;
    while (aimc_now() - t0 < limit_s) {
        if (!stat(path, &st)) return 1;
        if (waitpid(pid, NULL, WNOHANG) == pid) return 0;
        usleep(5000);
    }
    return 0;
}

/* A temporary checkpoint file in dir (a write in progress), or 0. */
static int temp_file_in(const char *dir) {
    DIR *d = opendir(dir);
    struct dirent *e;
    int found = 0;
    while (d && (e = readdir(d)))
        if (!strncmp(e->d_name, ".ckpt-", 6) && strstr(e->d_name, ".tmp.")) found = 1;
    if (d) closedir(d);
    return found;
}

static void test_kill_after_checkpoint(void) {
    cmdline c = resume_cmd(at("killed"));
    args(&c, (const char *[]){"--save-every", "2", NULL});
    env(&c, "AIMC_TEST_STEP_DELAY_MS=400");
    pid_t pid = spawn(&c, at("killed.log"));
    char latest[512];
    snprintf(latest, sizeof latest, "%s/latest", at("killed"));
    int seen = wait_for_file(latest, pid, 30);
    kill(pid, SIGKILL);
    int st = tl_wait_status(pid);
    CHECK(seen && st == 128 + SIGKILL, "the run was not killed after its first checkpoint (status %d)", st);
    int64_t step = latest_step(at("killed"));
    CHECK(step >= 2 && step < 6, "killed run's latest checkpoint is at step %lld", (long long)step);
    cmdline r = resume_cmd(at("killed"));
    arg(&r, "--resume");
    if (run_ok(&r, "resume after SIGKILL")) same_state(at("full"), at("killed"), 1, "SIGKILL + resume");
}

static void test_kill_during_write(void) {
    cmdline c = resume_cmd(at("torn"));
    args(&c, (const char *[]){"--save-every", "2", NULL});
    env(&c, "AIMC_TEST_CKPT_SLOW_WRITE=150");
    pid_t pid = spawn(&c, at("torn.log"));
    char latest[512];
    snprintf(latest, sizeof latest, "%s/latest", at("torn"));
    int seen = wait_for_file(latest, pid, 30), writing = 0;
    double t0 = aimc_now();
    while (seen && !writing && aimc_now() - t0 < 30 && waitpid(pid, NULL, WNOHANG) == 0) {
        writing = temp_file_in(at("torn"));
        if (!writing) usleep(2000);
    }
    kill(pid, SIGKILL);
    tl_wait_status(pid);
    CHECK(seen && writing, "never saw the second checkpoint being written");
    CHECK(latest_step(at("torn")) == 2, "after a kill mid-write latest is step %lld, want 2",
          (long long)latest_step(at("torn")));
    cmdline r = resume_cmd(at("torn"));
    arg(&r, "--resume");
    if (run_ok(&r, "resume after a torn write"))
        same_state(at("full"), at("torn"), 1, "kill mid-write + resume");
    CHECK(!temp_file_in(at("torn")), "the dead writer's temporary file was not cleaned up");
}

/* ===== 4. data parallelism ============================================================= */

/* 6 shards of 2 documents, read in order: with 2 ranks, rank r's step s is
 * shard 2s + r; with 1 rank and batch 4, step s is shards 2s and 2s + 1. */
static cmdline dp_cmd(const char *out, const char *batch) {
    cmdline c = train_cmd(out);
    args(&c, (const char *[]){"--data", at("dp/*.tar"), "--steps", "3", "--batch", batch, "--shuffle-shards",
                              "0", "--shuffle-block", "0", "--dist-timeout", "60", "--eval-data",
                              at("eval/*.tar"), "--eval-episodes", "9", NULL});
    return c;
}

/* Two ranks of the command make_cmd(out, "2") over TCP on the loopback,
 * each logging to OUT.rankN.log (printed when it fails); what prefixes the
 * failure message. */
static int run_tcp_ranks_of(cmdline (*make_cmd)(const char *, const char *), const char *out,
                            const char *what) {
    static char port_kv[32];
    snprintf(port_kv, sizeof port_kv, "MASTER_PORT=%d", tl_free_port());
    pid_t pids[2];
    char log[2][512];
    for (int r = 0; r < 2; r++) {
        cmdline c = make_cmd(out, "2");
        env(&c, r == 0 ? "RANK=0" : "RANK=1");
        env(&c, "WORLD_SIZE=2");
        env(&c, "MASTER_ADDR=127.0.0.1");
        env(&c, port_kv);
        snprintf(log[r], sizeof log[r], "%s.rank%d.log", out, r);
        pids[r] = spawn(&c, log[r]);
    }
    int ok = 1;
    for (int r = 0; r < 2; r++) {
        int st = tl_wait_status(pids[r]);
        if (st) {
            char *text = tl_read_text(log[r]);
            printf("rank %d log:\n%s\n", r, text ? text : "");
            free(text);
        }
        ok &= st == 0;
    }
    CHECK(ok, "%s2 ranks over TCP failed", what);
    return ok;
}

static int run_tcp_ranks(const char *out) { return run_tcp_ranks_of(dp_cmd, out, ""); }

static int mpirun_available(void) { return system("command -v mpirun >/dev/null 2>&1") == 0; }

/* docs/distributed.md: root in a container needs --allow-run-as-root; 2 ranks on
 * 2 busy cores --oversubscribe; MPI's own traffic on the loopback interface. */
static int run_mpirun(const char *out) {
    cmdline c = {.n = 0};
    args(&c,
         (const char *[]){"/usr/bin/env", "mpirun", "--allow-run-as-root", "--oversubscribe", "--mca",
                          "btl_tcp_if_include", "lo", "--mca", "oob_tcp_if_include", "lo", "-np", "2", NULL});
    cmdline t = dp_cmd(out, "2");
    for (int i = 0; i < t.n; i++) arg(&c, t.argv[i]);
    env(&c, "ASAN_OPTIONS=detect_leaks=0"); /* under make test-asan: OpenMPI's own start-up allocations */
    return run_ok(&c, "mpirun -np 2");
}

/* The value of key in the metrics line of step that has it (NAN when none does). */
static double metric_at(const char *dir, int step, const char *key) {
    char path[512], head[64], pat[64];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    snprintf(head, sizeof head, "{\"step\":%d,", step);
    snprintf(pat, sizeof pat, "\"%s\":", key);
    char *text = tl_read_text(path);
    double x = NAN;
    for (char *line = text; line && *line && isnan(x);) {
        char *end = strchr(line, '\n'), *v = strstr(line, pat);
        if (!strncmp(line, head, strlen(head)) && v && (!end || v < end)) x = strtod(v + strlen(pat), NULL);
        line = end ? end + 1 : NULL;
    }
    free(text);
    return x;
}

/* Per-step loss and gradient norm of two runs agree (the gradient norm
 * is not invariant to a wrong scale, which AdamW's update nearly is). */
static void same_curves(const char *a, const char *b, int steps, const char *what) {
    double worst = 0;
    for (int s = 0; s <= steps; s++)
        for (int k = 0; k < 3; k++) {
            const char *key = k == 0 ? "loss" : k == 1 ? "grad_norm" : "eval_loss";
            if (s == 0 && k < 2) continue;
            if (k == 2 && s != 0 && s != steps) continue; /* evaluated at the start and the end */
            double x = metric_at(a, s, key), y = metric_at(b, s, key), e = fabs(x - y) / fabs(y);
            if (!(e <= worst)) worst = e;
        }
    CHECK(worst <= 1e-5, "%s: per-step loss / grad norm / held-out loss differ by %.3g (rel)", what, worst);
}

static void test_data_parallel(void) {
    cmdline one = dp_cmd(at("dp1"), "4");
    if (!run_ok(&one, "1 rank, batch 4")) return;
    if (run_tcp_ranks(at("dp2tcp"))) {
        double e = param_rel_diff(at("dp2tcp"), at("dp1"));
        printf("2 ranks (tcp) x batch 2 vs 1 rank x batch 4: max rel diff %.3g\n", e);
        CHECK(e <= 1e-5, "2 ranks x batch 2 vs 1 x 4: rel diff %.3g > 1e-5", e);
        same_curves(at("dp2tcp"), at("dp1"), 3, "2 ranks (tcp) vs 1");
        ckpt_file *f = open_latest(at("dp2tcp"));
        CHECK(f && f->extra_len == 64 + 2 * LOADER_CURSOR_BYTES, "2-rank checkpoint: extra blob of %zu bytes",
              f ? f->extra_len : 0);
        ckpt_close(f);
        cmdline r = dp_cmd(at("dp2tcp"), "4");
        args(&r, (const char *[]){"--resume", "--steps", "4", NULL});
        char *out = NULL;
        int st = run(&r, &out);
        CHECK(st == 1 && out && strstr(out, "run of 2 ranks and this run has 1"),
              "1-rank resume of a 2-rank checkpoint: status %d, output:\n%s", st, out ? out : "");
        free(out);
        CHECK(latest_step(at("dp2tcp")) == 3, "the refused resume changed the checkpoint directory");
    }
    if (!mpirun_available()) {
        printf("skip: mpirun not found: the MPI launch is untested here\n");
        return;
    }
    if (run_mpirun(at("dp2mpi"))) {
        double e = param_rel_diff(at("dp2mpi"), at("dp1"));
        printf("2 ranks (mpirun) x batch 2 vs 1 rank x batch 4: max rel diff %.3g\n", e);
        CHECK(e <= 1e-5, "mpirun: rel diff %.3g > 1e-5", e);
        same_curves(at("dp2mpi"), at("dp1"), 3, "2 ranks (mpirun) vs 1");
        same_state(at("dp2mpi"), at("dp2tcp"), 1, "mpirun vs tcp ranks");
    }
}

/* ===== 5. configuration and refusals ====================================================== */

static void test_config_parser(void) {
    const char *text =
        "# comment\n  steps = 7 \nmax-text-tokens=9 # trailing\nquery_prompt = \"Caption: #1 \"\n"
        "lr = 1e-3\nresume = yes\n\n";
    config_file cf;
    char err[256];
    CHECK(!config_parse(text, "t.conf", &cf, err, sizeof err), "parse: %s", err);
    int64_t steps = 0, mtt = 0;
    const char *prompt = NULL;
    double lr = 0;
    int resume = 0;
    arg_opt opts[] = {{"--steps", ARG_INT, &steps, ""},
                      {"--max-text-tokens", ARG_INT, &mtt, ""},
                      {"--query-prompt", ARG_STR, &prompt, ""},
                      {"--lr", ARG_FLOAT, &lr, ""},
                      {"--resume", ARG_FLAG, &resume, ""}};
    CHECK(!config_apply(&cf, opts, 5, NULL, err, sizeof err), "apply: %s", err);
    CHECK(steps == 7 && mtt == 9 && lr == 1e-3 && resume == 1 && prompt && !strcmp(prompt, "Caption: #1 "),
          "values: steps %lld mtt %lld lr %g resume %d prompt '%s'", (long long)steps, (long long)mtt, lr,
          resume, prompt ? prompt : "(null)");
    /* round trip, doubles exactly */
    lr = 0.1 + 0.2;
    char *out = config_format(opts, 5, NULL, "# h\n");
    config_file back;
    double lr0 = lr;
    lr = 0;
    CHECK(!config_parse(out, "out", &back, err, sizeof err) &&
              !config_apply(&back, opts, 5, NULL, err, sizeof err),
          "round trip: %s", err);
    CHECK(lr == lr0 && !strcmp(prompt, "Caption: #1 "), "round trip lr %.17g prompt '%s'\n%s", lr, prompt,
          out);
    free(out);
    config_free(&back);
    config_free(&cf);
    static const struct {
        const char *text, *want;
    } bad[] = {
        {"steps = 1\nsteps = 2\n", "t.conf:2: key 'steps' repeats line 1"},
        {"steps\n", "t.conf:1: expected 'key = value'"},
        {"q = \"open\n", "unterminated quote"},
        {"bad key = 1\n", "bad key"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = config_parse(bad[i].text, "t.conf", &cf, err, sizeof err);
        CHECK(rc == -1 && strstr(err, bad[i].want), "'%s': rc %d err '%s'", bad[i].text, rc, err);
    }
}

static int count_lines(const char *s) {
    int n = 0;
    for (; s && *s; s++) n += *s == '\n';
    return n;
}

static void test_precedence(void) {
    /* train_cmd passes --max-text-tokens 12 and --lr 0.05 on the command line */
    write_text(at("run.conf"), "# a run config\nsteps = 2\nlr = 0.5   # the command line overrides it\n"
                               "max-text-tokens = 10\nquery_prompt = \"Caption: #1\"\nbatch = 2\nseed = 5\n");
    cmdline c = train_cmd(at("prec"));
    args(&c, (const char *[]){"--config", at("run.conf"), "--data", at("train/*.tar"), "--lr", "0.25", NULL});
    if (!run_ok(&c, "config + command line")) return;
    char path[512];
    snprintf(path, sizeof path, "%s/config.conf", at("prec"));
    char *text = tl_read_text(path);
    const char *want[] = {"\nsteps = 2\n", "\nlr = 0.25\n",       "\nmax_text_tokens = 12\n",
                          "\nbatch = 2\n", "\nseed = 5\n",        "\nquery_prompt = \"Caption: #1\"\n",
                          "\nk = 1\n",     "\nbackbone = llava\n"};
    for (size_t i = 0; i < sizeof want / sizeof *want; i++)
        CHECK(text && strstr(text, want[i]), "config.conf lacks '%s':\n%s", want[i] + 1, text ? text : "");
    ckpt_file *f = open_latest(at("prec"));
    CHECK(f && text && !strcmp(f->config_text, text), "the checkpoint's config differs from config.conf");
    CHECK(f && f->step == 2, "steps from the file: checkpoint at %lld", f ? (long long)f->step : -1LL);
    ckpt_close(f);
    free(text);
}

typedef struct bad_case {
    const char *flags[8];
    const char *conf; /* written to bad.conf and passed as --config when not NULL */
    const char *want;
} bad_case;

static void test_bad_values(void) {
    const bad_case cases[] = {
        {{"--lr", "abc"}, NULL, "--lr expects a number, got 'abc'"},
        {{"--steps", "0"}, NULL, "--steps must be in [1, "},
        {{"--projector", "conv"}, NULL, "--projector must be linear, linear_ln or mlp, got 'conv'"},
        {{"--format", "tar"}, NULL, "--format must be mmc4, laion or auto, got 'tar'"},
        {{"--device", "tpu"}, NULL, "--device must be cpu or cuda, got 'tpu'"},
        {{"--min-lr", "1"}, NULL, "--min-lr must be in [0, --lr = 0.05], got 1"},
        {{"--nope"}, NULL, "unknown option '--nope'"},
        {{"extra"}, NULL, "unexpected argument 'extra'"},
        {{NULL}, "batch = many\n", "bad.conf:1: batch expects an integer, got 'many'"},
        {{NULL}, "# x\nbogus = 1\n", "bad.conf:2: unknown key 'bogus'"},
        {{NULL}, "config = other.conf\n", "bad.conf:1: unknown key 'config'"},
        {{NULL}, "resume = maybe\n", "resume expects true or false, got 'maybe'"},
        {{"--objective", "mse"}, NULL, "--objective must be lm or contrastive, got 'mse'"},
        {{"--objective", "contrastive", "--k", "0", "--accum", "2"},
         NULL,
         "takes no gradient accumulation (--accum must be 1, got 2)"},
        {{"--objective", "contrastive", "--k", "1"}, NULL, "--k must be 0, got 1"},
        {{"--k", "0"}, NULL, "--k must be >= 1 for --objective lm, got 0"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        cmdline c = train_cmd(at("bad"));
        args(&c, (const char *[]){"--data", at("train/*.tar"), NULL});
        for (int j = 0; cases[i].flags[j]; j++) arg(&c, cases[i].flags[j]);
        if (cases[i].conf) {
            write_text(at("bad.conf"), cases[i].conf);
            args(&c, (const char *[]){"--config", at("bad.conf"), NULL});
        }
        char *out = NULL;
        int st = run(&c, &out);
        CHECK(st == 2 && out && strstr(out, cases[i].want) && count_lines(out) == 1 &&
                  !strncmp(out, "aimc train: error: ", 19),
              "case %zu: status %d (want 2), output '%s' (want one line with '%s')", i, st, out ? out : "",
              cases[i].want);
        free(out);
    }
    cmdline c = {.n = 0};
    args(&c, (const char *[]){g_aimc, "train", "--data", "x.tar", NULL});
    char *out = NULL;
    int st = run(&c, &out);
    CHECK(st == 2 && out && strstr(out, "--model DIR is required"), "no --model: %d '%s'", st,
          out ? out : "");
    free(out);
    cmdline m = train_cmd(at("bad"));
    args(&m, (const char *[]){"--data", at("train/*.tar"), "--config", at("missing.conf"), NULL});
    st = run(&m, &out);
    CHECK(st == 2 && out && strstr(out, "missing.conf: cannot open"), "missing config: %d '%s'", st,
          out ? out : "");
    free(out);
}

static void test_refusals(void) {
    /* "prec" holds a linear projector's checkpoint at step 2 */
    char latest[512];
    snprintf(latest, sizeof latest, "%s/latest", at("prec"));
    char *before = tl_read_text(latest);
    cmdline c = train_cmd(at("prec"));
    args(&c, (const char *[]){"--data", at("train/*.tar"), "--steps", "4", "--batch", "2",
                              "--max-text-tokens", "10", "--projector", "mlp", "--resume", NULL});
    char *out = NULL;
    int st = run(&c, &out);
    CHECK(st == 1 && out && strstr(out, "checkpoint was written for projector") && strstr(out, "type=linear"),
          "resume with another projector: status %d, output:\n%s", st, out ? out : "");
    free(out);
    cmdline fresh = train_cmd(at("prec"));
    args(&fresh, (const char *[]){"--data", at("train/*.tar"), "--steps", "4", "--batch", "2", NULL});
    st = run(&fresh, &out);
    CHECK(st == 1 && out && strstr(out, "already holds a checkpoint") && strstr(out, "--resume"),
          "fresh run over checkpoints: status %d, output:\n%s", st, out ? out : "");
    free(out);
    char *after = tl_read_text(latest);
    CHECK(before && after && !strcmp(before, after) && latest_step(at("prec")) == 2,
          "a refused run changed the checkpoint directory");
    free(before);
    free(after);
}

static void test_nonfinite(void) {
    cmdline c = train_cmd(at("nan1"));
    args(&c, (const char *[]){"--data", at("train/*.tar"), "--steps", "4", "--batch", "2", NULL});
    env(&c, "AIMC_TEST_TRAIN_NAN_STEPS=2");
    char *out = NULL;
    int st = run(&c, &out);
    CHECK(st == 0 && out && strstr(out, "step 2: rank 0: non-finite gradient") &&
              strstr(out, "steps skipped 1"),
          "one non-finite step: status %d, output:\n%s", st, out ? out : "");
    free(out);
    char path[512];
    snprintf(path, sizeof path, "%s/metrics.jsonl", at("nan1"));
    char *m = tl_read_text(path);
    CHECK(m && strstr(m, "{\"step\":2,") && strstr(strstr(m, "{\"step\":2,"), "\"skipped\":1"),
          "metrics do not mark step 2 skipped:\n%s", m ? m : "");
    free(m);
    cmdline d = train_cmd(at("nan3"));
    args(&d, (const char *[]){"--data", at("train/*.tar"), "--steps", "6", "--batch", "2", "--max-bad-steps",
                              "3", NULL});
    env(&d, "AIMC_TEST_TRAIN_NAN_STEPS=2,3,4");
    st = run(&d, &out);
    CHECK(st == 1 && out && strstr(out, "3 steps in a row (steps 2-4) had a non-finite"),
          "three non-finite steps: status %d, output:\n%s", st, out ? out : "");
    free(out);
}

/* ===== 6. the contrastive objective ====================================================== */

#define CLIP_MODEL "tests/fixtures/models/clip"
#define CLIP_TEXT_TOKENS "24"

/* LAION pairs; 30 px is the fixture's vision image_size, and its preprocessing
 * (shortest edge 30, centre crop 30) gives 30 x 30 from any aspect ratio. */
static void synth_laion(const char *dir, int64_t shards, int64_t docs, uint64_t seed) {
    synth_options o = {.layout = SYNTH_LAION,
                       .shards = shards,
                       .docs = docs,
                       .image_format = SYNTH_IMG_MIXED,
                       .seed = seed,
                       .image_size = 30};
    char err[512];
    if (synth_write(&o, dir, err, sizeof err) < 0) printf("FAIL: synth: %s\n", err), exit(1);
}

/* aimc train --objective contrastive with the settings every run here shares. */
static cmdline clip_cmd(const char *out, const char *data) {
    static const char *const common[] = {"--objective",
                                         "contrastive",
                                         "--model",
                                         CLIP_MODEL,
                                         "--max-text-tokens",
                                         CLIP_TEXT_TOKENS,
                                         "--workers",
                                         "1",
                                         "--log-every",
                                         "1000",
                                         "--lr",
                                         "0.03",
                                         "--warmup",
                                         "2",
                                         "--arena-mb",
                                         "32",
                                         "--save-every",
                                         "0",
                                         NULL};
    cmdline c = {.n = 0};
    arg(&c, g_aimc);
    arg(&c, "train");
    args(&c, common);
    args(&c, (const char *[]){"--out", out, "--data", data, NULL});
    return c;
}

/* The fixture's own head values (f32 copies, as the trainer starts from). */
static int heads_equal_fixture(const char *dir) {
    char err[512];
    st_file *st = st_open(CLIP_MODEL "/model.safetensors", err, sizeof err);
    ckpt_file *f = open_latest(dir);
    static const char *const names[] = {"visual_projection.weight", "text_projection.weight", "logit_scale"};
    int ok = st && f;
    for (int i = 0; ok && i < 3; i++) {
        const st_tensor *want = st_find(st, names[i]);
        const ckpt_tensor *got = ckpt_find(f, names[i]);
        int64_t n = got ? (int64_t)(got->nbytes / 4) : 0;
        float *ref = tl_alloc((size_t)n * sizeof *ref + 4);
        ok = want && got && n > 0 && !st_read_f32(want, ref, err, sizeof err) &&
             !memcmp(ref, got->data, got->nbytes);
        if (!ok) printf("  %s differs from the fixture's\n", names[i]);
        free(ref);
    }
    ckpt_close(f);
    if (st) st_close(st);
    return ok;
}

/* The held-out set as the trainer reads it (k = 0 LAION pairs, file order). */
static int load_clip_eval(episode *eps, int max, const preprocess_config *pp, tokenizer *tok) {
    char err[1024], **shards;
    int64_t n_shards = shard_expand(at("clipeval/*.tar"), &shards, err, sizeof err);
    loader_config lc;
    loader_config_default(&lc);
    lc.shards = shards;
    lc.n_shards = n_shards;
    lc.n_workers = 1;
    lc.max_epochs = 1;
    lc.shuffle_block = 0;
    lc.shuffle_shards = 0;
    lc.tok = tok;
    lc.pp = pp;
    lc.episode.k = 0;
    lc.episode.max_images = 1;
    lc.episode.max_text_tokens = atoi(CLIP_TEXT_TOKENS);
    lc.episode.sample.format = SAMPLE_FORMAT_LAION;
    loader *l = n_shards > 0 ? loader_open(&lc, NULL, err, sizeof err) : NULL;
    if (!l) return printf("FAIL: clip eval loader: %s\n", err), 0;
    int n = 0;
    while (n < max && loader_next(l, &eps[n], err, sizeof err) == 1) n++;
    loader_close(l);
    shard_paths_free(shards, n_shards);
    return n;
}

/* CLIPModel's loss (clip_forward) of one batch of pairs. */
static double clip_batch_loss(const clip_model *m, arena *a, const contrastive_owned_batch *ob) {
    const contrastive_batch *b = &ob->b;
    float *maskf = tl_alloc((size_t)(b->n * b->len) * sizeof *maskf);
    for (int64_t i = 0; i < b->n * b->len; i++) maskf[i] = (float)b->mask[i];
    tensor px = tensor_wrap(ob->pixels, DT_F32, backend_cpu(), 4,
                            (int64_t[]){b->n, b->channels, b->height, b->width});
    tensor ids = tensor_wrap(ob->ids, DT_I32, backend_cpu(), 2, (int64_t[]){b->n, b->len});
    tensor mask = tensor_wrap(maskf, DT_F32, backend_cpu(), 2, (int64_t[]){b->n, b->len});
    arena_reset(a);
    clip_output o;
    clip_forward(m, a, &px, &ids, &mask, &o);
    double loss = ((const float *)o.loss.data)[0];
    free(maskf);
    return loss;
}

/* The trainer's step-0 held-out loss: batches of `batch` pairs in file order,
 * the mean over pairs of their CLIPModel losses. */
static double clip_reference_eval(int batch) {
    char err[1024];
    model_dir *md = model_dir_open(CLIP_MODEL, err, sizeof err);
    tokenizer *tok = tokenizer_load(CLIP_MODEL, err, sizeof err);
    preprocess_config pp;
    if (!md || !tok || preprocess_config_load(&pp, CLIP_MODEL, err, sizeof err))
        return printf("FAIL: %s\n", err), NAN;
    clip_model *m = clip_load(&(nn_loader){md, backend_cpu(), DT_F32}, "");
    contrastive_text_spec spec;
    episode eps[32];
    int n = contrastive_text_spec_get(tok, m, &spec, err, sizeof err) ? 0 : load_clip_eval(eps, 32, &pp, tok);
    arena a;
    arena_init(&a, backend_cpu(), 16u << 20);
    double sum = 0;
    for (int i = 0; i < n; i += batch) {
        int b = n - i < batch ? n - i : batch;
        contrastive_owned_batch ob;
        if (contrastive_batch_from_episodes(eps + i, b, &spec, &ob, err, sizeof err))
            return printf("FAIL: %s\n", err), NAN;
        sum += clip_batch_loss(m, &a, &ob) * b;
        contrastive_owned_batch_free(&ob);
    }
    for (int i = 0; i < n; i++) episode_free(&eps[i]);
    arena_free(&a);
    clip_free(m);
    tokenizer_free(tok);
    model_dir_close(md);
    CHECK(n == 32, "clip eval set: %d pairs, want 32", n);
    return sum / n;
}

static void test_clip_learning(void) {
    /* the preset (lr 0.03, batch 16), shortened */
    cmdline c = {.n = 0};
    args(&c,
         (const char *[]){g_aimc, "train", "--config", "configs/tiny-clip.conf", "--data", at("laion/*.tar"),
                          "--out", at("clip-learn"), "--steps", "30", "--workers", "1", "--max-text-tokens",
                          CLIP_TEXT_TOKENS, "--eval-data", at("clipeval/*.tar"), NULL});
    if (!run_ok(&c, "contrastive training run (configs/tiny-clip.conf)")) return;
    cmdline z = clip_cmd(at("clip-frozen"), at("laion/*.tar"));
    args(&z, (const char *[]){"--steps", "2", "--batch", "16", "--lr", "0", "--eval-data",
                              at("clipeval/*.tar"), NULL});
    if (!run_ok(&z, "contrastive lr = 0 run")) return;
    CHECK(heads_equal_fixture(at("clip-frozen")), "lr = 0: the heads are not bitwise the fixture's (training "
                                                  "must start from the checkpoint's own heads)");
    double ref = clip_reference_eval(16), e0 = metric_at(at("clip-learn"), 0, "eval_loss");
    double ez = metric_at(at("clip-frozen"), 2, "eval_loss"),
           e30 = metric_at(at("clip-learn"), 30, "eval_loss");
    printf("contrastive held-out loss: CLIPModel reference %.6f, step 0 %.6f, lr = 0 after 2 steps %.6f, "
           "trained 30 steps %.4f\n",
           ref, e0, ez, e30);
    CHECK(fabs(e0 - ref) <= 1e-5 * fabs(ref), "step-0 held-out loss %.7f, CLIPModel's %.7f", e0, ref);
    CHECK(fabs(ez - ref) <= 1e-5 * fabs(ref), "lr = 0 held-out loss %.7f moved from %.7f", ez, ref);
    CHECK(e30 < 0.7 * e0, "held-out loss %.4f -> %.4f: no clear fall", e0, e30);
    double first = logged_loss(at("clip-learn"), 1, 6), last = logged_loss(at("clip-learn"), 26, 31);
    printf("contrastive training loss: steps 1-5 %.4f, steps 26-30 %.4f\n", first, last);
    CHECK(last < first - 0.5, "contrastive training loss did not fall: %.4f -> %.4f", first, last);
}

static cmdline clip_resume_cmd(const char *out) {
    cmdline c = clip_cmd(out, at("laion/*.tar"));
    args(&c, (const char *[]){"--steps", "6", "--batch", "4", "--shuffle-block", "8", NULL});
    return c;
}

static void test_clip_resume(void) {
    cmdline full = clip_resume_cmd(at("clip-full"));
    if (!run_ok(&full, "contrastive uninterrupted run")) return;
    cmdline first = clip_resume_cmd(at("clip-split"));
    args(&first, (const char *[]){"--until", "3", NULL});
    if (!run_ok(&first, "contrastive first half")) return;
    cmdline second = clip_resume_cmd(at("clip-split"));
    arg(&second, "--resume");
    if (!run_ok(&second, "contrastive resumed half")) return;
    same_state(at("clip-full"), at("clip-split"), 1, "contrastive: 6 steps vs 3 + resume 3");
    char p3[512], err[512];
    snprintf(p3, sizeof p3, "%s/ckpt-0000000003.aimc", at("clip-split"));
    ckpt_file *a = ckpt_open(p3, NULL, err, sizeof err), *b = open_latest(at("clip-full"));
    const ckpt_tensor *s3 = a ? ckpt_find(a, "logit_scale") : NULL,
                      *s6 = b ? ckpt_find(b, "logit_scale") : NULL;
    CHECK(s3 && s6 && memcmp(s3->data, s6->data, 4), "step 3 and step 6 logit_scale should differ");
    ckpt_close(a);
    ckpt_close(b);
}

/* 6 shards of 2 pairs read in order: 2 ranks x 2 pairs, or 1 rank x 4, take
 * the same 4 pairs per step (shards 2s and 2s + 1). 9 held-out pairs: odd,
 * so the ranks' shares differ. */
static cmdline clip_dp_cmd(const char *out, const char *batch) {
    cmdline c = clip_cmd(out, at("laiondp/*.tar"));
    args(&c, (const char *[]){"--steps", "3", "--batch", batch, "--shuffle-shards", "0", "--shuffle-block",
                              "0", "--dist-timeout", "60", "--eval-data", at("clipeval/*.tar"),
                              "--eval-episodes", "9", NULL});
    return c;
}

static int run_clip_tcp_ranks(const char *out) {
    return run_tcp_ranks_of(clip_dp_cmd, out, "contrastive: ");
}

static void check_clip_dp(const char *dir, const char *what) {
    double e = param_rel_diff(dir, at("clip-dp1"));
    printf("contrastive: 2 ranks (%s) x batch 2 vs 1 rank x batch 4: max rel diff %.3g\n", what, e);
    CHECK(e <= 1e-5, "contrastive, %s: 2 ranks x 2 vs 1 x 4: rel diff %.3g > 1e-5", what, e);
    same_curves(dir, at("clip-dp1"), 3, what);
}

static void test_clip_data_parallel(void) {
    cmdline one = clip_dp_cmd(at("clip-dp1"), "4");
    if (!run_ok(&one, "contrastive: 1 rank, batch 4")) return;
    if (run_clip_tcp_ranks(at("clip-dp2tcp"))) check_clip_dp(at("clip-dp2tcp"), "tcp");
    if (!mpirun_available()) return;
    cmdline c = {.n = 0};
    args(&c,
         (const char *[]){"/usr/bin/env", "mpirun", "--allow-run-as-root", "--oversubscribe", "--mca",
                          "btl_tcp_if_include", "lo", "--mca", "oob_tcp_if_include", "lo", "-np", "2", NULL});
    cmdline t = clip_dp_cmd(at("clip-dp2mpi"), "2");
    for (int i = 0; i < t.n; i++) arg(&c, t.argv[i]);
    env(&c, "ASAN_OPTIONS=detect_leaks=0");
    if (run_ok(&c, "contrastive: mpirun -np 2")) {
        check_clip_dp(at("clip-dp2mpi"), "mpirun");
        same_state(at("clip-dp2mpi"), at("clip-dp2tcp"), 1, "contrastive: mpirun vs tcp ranks");
    }
}

/* aimc export of the trained heads: names, shapes and the checkpoint's values. */
static void test_clip_export(void) {
    char out[512], json_path[512], err[512];
    snprintf(out, sizeof out, "%s/heads.safetensors", g_root);
    snprintf(json_path, sizeof json_path, "%s/heads.json", g_root);
    cmdline c = {.n = 0};
    args(&c, (const char *[]){g_aimc, "export", at("clip-learn"), "--out", out, NULL});
    if (!run_ok(&c, "aimc export (contrastive heads)")) return;
    st_file *st = st_open(out, err, sizeof err);
    ckpt_file *f = open_latest(at("clip-learn"));
    CHECK(st && st_count(st) == 3, "export: %s", st ? "not 3 tensors" : err);
    static const struct {
        const char *name;
        int ndim;
        int64_t shape[2];
    } want[] = {{"visual_projection.weight", 2, {16, 32}},
                {"text_projection.weight", 2, {16, 32}},
                {"logit_scale", 1, {1, 0}}};
    for (int i = 0; st && f && i < 3; i++) {
        const st_tensor *t = st_find(st, want[i].name);
        const ckpt_tensor *k = ckpt_find(f, want[i].name);
        int ok = t && k && t->dtype == ST_F32 && t->ndim == want[i].ndim && t->shape[0] == want[i].shape[0] &&
                 (t->ndim == 1 || t->shape[1] == want[i].shape[1]) && t->nbytes == k->nbytes &&
                 !memcmp(t->data, k->data, k->nbytes);
        CHECK(ok, "export: %s missing, or not f32 of the expected shape and the checkpoint's values",
              want[i].name);
    }
    char *json = tl_read_text(json_path);
    CHECK(json && strstr(json, "\"clip_heads\"") && strstr(json, "\"d_proj\":\t16"), "export JSON:\n%s",
          json ? json : "(none)");
    free(json);
    ckpt_close(f);
    if (st) st_close(st);
}

static void test_clip_refusals(void) {
    cmdline c = clip_cmd(at("clip-bad"), at("laion/*.tar"));
    args(&c, (const char *[]){"--model", MODEL, "--steps", "1", NULL});
    char *out = NULL;
    int st = run(&c, &out);
    CHECK(st == 1 && out && strstr(out, "needs a CLIPModel folder") && strstr(out, "model_type \"llava\""),
          "contrastive on the LLaVA folder: status %d, output:\n%s", st, out ? out : "");
    free(out);
    cmdline lm = train_cmd(at("clip-bad"));
    args(&lm, (const char *[]){"--model", CLIP_MODEL, "--data", at("laion/*.tar"), "--steps", "1", NULL});
    st = run(&lm, &out);
    CHECK(st == 1 && out && strstr(out, "is a CLIP model") && strstr(out, "--objective contrastive"),
          "the LM objective on the CLIP folder: status %d, output:\n%s", st, out ? out : "");
    free(out);
    /* "prec" holds the LM objective's checkpoint for the tiny LLaVA */
    cmdline r = clip_cmd(at("prec"), at("laion/*.tar"));
    args(&r, (const char *[]){"--steps", "4", "--resume", NULL});
    st = run(&r, &out);
    CHECK(st == 1 && out && strstr(out, "backbone") && latest_step(at("prec")) == 2,
          "contrastive resume of an LM checkpoint: status %d, output:\n%s", st, out ? out : "");
    free(out);
}

/* ===== main ================================================================================ */

static int find_aimc(void) {
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) return 0;
    self[n] = 0;
    char *slash = strrchr(self, '/'); /* BUILD/tests/test_train -> BUILD/aimc */
    if (slash) *slash = 0;
    slash = strrchr(self, '/');
    if (slash) *slash = 0;
    snprintf(g_aimc, sizeof g_aimc, "%.4000s/aimc", self);
    return access(g_aimc, X_OK) == 0;
}

int main(void) {
    tests_begin("test_train");
    if (!find_aimc()) {
        CHECK(0, "no aimc binary at %s (make builds it before the tests)", g_aimc);
        return tests_done();
    }
    if (!mkdtemp(g_root)) printf("FAIL: mkdtemp: %s\n", strerror(errno)), exit(1);
    double t0 = aimc_now();
    synth(at("train"), 4, 16, 7);
    synth(at("eval"), 1, 32, 99);
    synth(at("dp"), 6, 2, 11);
    test_config_parser();
    test_bad_values();
    test_precedence();
    test_refusals();
    test_nonfinite();
    printf("config and refusals: %.1f s\n", aimc_now() - t0);
    test_learning();
    printf("learning: %.1f s\n", aimc_now() - t0);
    test_exact_resume();
    test_kill_after_checkpoint();
    test_kill_during_write();
    printf("resume: %.1f s\n", aimc_now() - t0);
    test_data_parallel();
    printf("data parallel: %.1f s\n", aimc_now() - t0);
    synth_laion(at("laion"), 4, 64, 5);
    synth_laion(at("clipeval"), 1, 32, 6);
    synth_laion(at("laiondp"), 6, 2, 8);
    test_clip_refusals();
    test_clip_learning();
    test_clip_resume();
    test_clip_data_parallel();
    test_clip_export();
    printf("contrastive: %.1f s\n", aimc_now() - t0);
    if (!tl_failed && !getenv("AIMC_TRAIN_TEST_KEEP")) {
        char cmd[600];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_root);
        if (system(cmd)) printf("note: could not remove %s\n", g_root);
    } else {
        printf("outputs kept in %s\n", g_root);
    }
    return tests_done();
}
