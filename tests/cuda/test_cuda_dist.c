/* test_cuda_dist: data-parallel training on the cuda backend with gradients
 * summed by NCCL (kernels/cuda/dist_nccl.cu), two ranks on two GPUs (on the
 * emulator, through its NCCL: tests/cuda/emu/nccl_fake.cpp):
 *  - 2 ranks x batch 2 == 1 rank x batch 4, for AIM on the tiny LLaVA (the
 *    projector gradients all-reduced) and for CLIP's contrastive objective
 *    (each rank's features gathered from all: grouped broadcasts): the
 *    exported weights agree to 1e-4 (each sample's forward and backward are
 *    the same computation on either side; only the order of the gradient
 *    sums differs), and the logged losses to 1e-5;
 *  - rank 0 says nothing of "NCCL unavailable" (the NCCL path ran, not the
 *    host-memory fallback);
 *  - a rank killed mid-run ends the other with a one-line error, within the
 *    collective timeout.
 * Each run is the aimc binary next to this test's folder (fork + exec), on
 * 6 synthetic shards of 2 documents (MMC4) or pairs (LAION) read in order
 * (with 2 ranks, rank r's step s is shard 2s + r; with 1 rank and batch 4,
 * shards 2s and 2s + 1).
 * Needs 2 visible GPUs (the emulator has 2); with fewer it says so and
 * checks nothing. */
#include "../../data/synth.h"
#include "../../host/safetensors.h"
#include "../../kernels/check.h"
#include "../model_fixture.h"
#include "../testlib.h"
#include <cuda_runtime_api.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>

static char tmp_dir[64], aimc_bin[4200];

static const char *at(const char *name) {
    static char buf[8][512];
    static int k;
    char *s = buf[k++ & 7];
    snprintf(s, sizeof buf[0], "%s/%s", tmp_dir, name);
    return s;
}

/* What a run trains: AIM on the tiny LLaVA config, or CLIP's projections
 * (contrastive, whose loss gathers every rank's features: NCCL's grouped
 * broadcasts). */
static const char *const LM_ARGS[] = {"--config", "configs/tiny-llava.conf", "--data", NULL, NULL};
static const char *const CLIP_ARGS[] = {"--objective", "contrastive", "--model",
                                        "tests/fixtures/models/clip", "--max-text-tokens", "24",
                                        "--lr", "0.03", "--arena-mb", "32", "--data", NULL, NULL};

/* `aimc train` (objective args, data, this batch) into out, as rank `rank`
 * of `world` (rank < 0: a plain one-rank run), output to log. */
static pid_t spawn_train(const char *const *objective, const char *data, const char *out,
                         const char *batch, int rank, int world, int port, const char *log) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid != 0) return pid;
    int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) dup2(fd, 1), dup2(fd, 2), close(fd);
    if (rank >= 0) {
        char v[32];
        snprintf(v, sizeof v, "%d", rank), setenv("RANK", v, 1);
        snprintf(v, sizeof v, "%d", world), setenv("WORLD_SIZE", v, 1);
        snprintf(v, sizeof v, "%d", port), setenv("MASTER_PORT", v, 1);
        setenv("MASTER_ADDR", "127.0.0.1", 1);
    }
    setenv("OMP_WAIT_POLICY", "passive", 1);
    const char *argv[48] = {aimc_bin, "train", "--device", "cuda", "--out", out, "--batch", batch,
                            "--steps", "3", "--warmup", "1", "--shuffle-shards", "0",
                            "--shuffle-block", "0", "--save-every", "0", "--log-every", "1",
                            "--workers", "1", "--dist-timeout", "20"};
    int n = 24;
    for (int i = 0; objective[i]; i++) argv[n++] = objective[i];
    argv[n++] = data; /* every objective's list ends with "--data" */
    argv[n] = NULL;
    execv(argv[0], (char *const *)argv);
    _exit(127);
}

static int run_export(const char *run, const char *out) {
    char cmd[sizeof aimc_bin + 1200];
    snprintf(cmd, sizeof cmd, "'%s' export '%s' --out '%s' >/dev/null 2>&1", aimc_bin, run, out);
    return system(cmd);
}

/* Largest rel diff over the tensors of two exported projectors. */
static double projector_diff(const char *a_path, const char *b_path) {
    st_file *a = fx_open_st(a_path), *b = fx_open_st(b_path);
    double worst = 0;
    for (int i = 0; i < st_count(a); i++) {
        const char *name = st_at(a, i)->name;
        int64_t n = 0;
        float *x = fx_read_f32(a, name, &n), *y = fx_read_f32(b, name, NULL);
        double e = rel_err_f32(x, y, n);
        worst = e > worst ? e : worst;
        free(x), free(y);
    }
    CHECK(st_count(a) == st_count(b) && st_count(a) > 0, "projectors hold %d and %d tensors",
          st_count(a), st_count(b));
    st_close(a), st_close(b);
    return worst;
}

/* Step losses logged in a run's log ("step N/3  loss X"). */
static int losses(const char *log, double out[8]) {
    char *text = tl_read_text(log);
    int n = 0;
    for (char *p = text; p && n < 8 && (p = strstr(p, "  loss ")); p += 7) out[n++] = atof(p + 7);
    free(text);
    return n;
}

static void print_log(const char *what, const char *log) {
    char *text = tl_read_text(log);
    printf("%s log:\n%s\n", what, text ? text : "(none)");
    free(text);
}

/* One objective: 1 rank x batch 4 and 2 ranks x batch 2 on the same
 * shards (names prefix the runs' folders and logs). */
static void test_two_ranks_equal_one(const char *name, const char *const *objective,
                                     const char *data) {
    char one[64], two[64], log1[64], log_r[2][64];
    snprintf(one, sizeof one, "%s1", name), snprintf(two, sizeof two, "%s2", name);
    snprintf(log1, sizeof log1, "%s1.log", name);
    for (int r = 0; r < 2; r++) snprintf(log_r[r], sizeof log_r[r], "%s2.rank%d.log", name, r);
    int st1 = tl_wait_status(spawn_train(objective, data, at(one), "4", -1, 1, 0, at(log1)));
    int port = tl_free_port();
    pid_t p0 = spawn_train(objective, data, at(two), "2", 0, 2, port, at(log_r[0]));
    pid_t p1 = spawn_train(objective, data, at(two), "2", 1, 2, port, at(log_r[1]));
    int st0 = tl_wait_status(p0), st1b = tl_wait_status(p1);
    CHECK(st1 == 0, "%s: 1 rank x batch 4 failed (exit %d)", name, st1);
    CHECK(st0 == 0 && st1b == 0, "%s: 2 ranks failed (exits %d, %d)", name, st0, st1b);
    if (st1 || st0 || st1b) {
        print_log("1 rank", at(log1)), print_log("rank 0", at(log_r[0]));
        print_log("rank 1", at(log_r[1]));
        return;
    }
    char *log0 = tl_read_text(at(log_r[0]));
    CHECK(log0 && !strstr(log0, "NCCL unavailable"), "%s: rank 0 did not use NCCL:\n%s", name, log0);
    free(log0);
    double l1[8], l2[8];
    int n1 = losses(at(log1), l1), n2 = losses(at(log_r[0]), l2);
    CHECK(n1 == 3 && n2 == 3, "%s: logged %d and %d step losses, want 3", name, n1, n2);
    for (int i = 0; i < n1 && i < n2; i++)
        CHECK(fabs(l1[i] - l2[i]) <= 1e-5 * fabs(l1[i]),
              "%s: step %d loss: 1 rank %.6f, 2 ranks %.6f", name, i + 1, l1[i], l2[i]);
    char st_one[96], st_two[96];
    snprintf(st_one, sizeof st_one, "%s.safetensors", one);
    snprintf(st_two, sizeof st_two, "%s.safetensors", two);
    CHECK(run_export(at(one), at(st_one)) == 0 && run_export(at(two), at(st_two)) == 0,
          "%s: aimc export failed", name);
    double e = projector_diff(at(st_one), at(st_two));
    printf("%s: 2 ranks (NCCL) x batch 2 vs 1 rank x batch 4: trained weights' rel diff %.3g\n",
           name, e);
    CHECK(e <= 1e-4, "%s: 2 ranks x batch 2 vs 1 x 4: rel diff %.3g > 1e-4", name, e);
}

/* Rank 1 is killed once rank 0 has logged its first step: rank 0 must stop
 * with one "aimc: error: rank 0/2: ..." line (seen on the emulator: "allreduce
 * at step 2: ncclAllReduce failed: remote process exited ...") within the
 * 20 s collective timeout plus a margin. */
static void test_killed_rank(void) {
    int port = tl_free_port();
    setenv("AIMC_TEST_STEP_DELAY_MS", "300", 1); /* keeps the run going while rank 1 dies */
    pid_t p0 = spawn_train(LM_ARGS, at("shards/*.tar"), at("killed"), "2", 0, 2, port, at("k0.log"));
    pid_t p1 = spawn_train(LM_ARGS, at("shards/*.tar"), at("killed"), "2", 1, 2, port, at("k1.log"));
    unsetenv("AIMC_TEST_STEP_DELAY_MS");
    double t0 = aimc_now();
    int stepped = 0;
    while (!stepped && aimc_now() - t0 < 120 && waitpid(p1, NULL, WNOHANG) == 0) {
        char *text = tl_read_text(at("k0.log"));
        stepped = text && strstr(text, "step 1/3");
        free(text);
        if (!stepped) usleep(20000);
    }
    kill(p1, SIGKILL);
    tl_wait_status(p1);
    double t_kill = aimc_now();
    int st0 = tl_wait_status(p0);
    double waited = aimc_now() - t_kill;
    char *log0 = tl_read_text(at("k0.log"));
    CHECK(stepped, "rank 0 never logged step 1");
    CHECK(st0 != 0 && log0 && strstr(log0, "aimc: error: rank 0/2"),
          "rank 0 after rank 1 was killed: exit %d, log:\n%s", st0, log0 ? log0 : "");
    CHECK(waited < 20 + 15, "rank 0 took %.1f s to stop after rank 1 died", waited);
    free(log0);
}

/* 6 shards of 2 MMC4 documents or LAION pairs (see the top of the file). */
static void make_shards(const char *dir, synth_layout layout, uint64_t seed) {
    synth_options o = {.layout = layout, .shards = 6, .docs = 2, .image_size = 32, .seed = seed};
    char err[512];
    if (synth_write(&o, at(dir), err, sizeof err) < 0) printf("FAIL: synth: %s\n", err), exit(1);
}

int main(void) {
    tests_begin("test_cuda_dist");
    int gpus = 0;
    if (cudaGetDeviceCount(&gpus) != cudaSuccess || gpus < 2) {
        printf("cuda dist: %d GPU(s) visible, 2 needed: nothing checked\n", gpus);
        return tests_done();
    }
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) printf("FAIL: readlink /proc/self/exe\n"), exit(1);
    self[n] = 0;
    *strrchr(self, '/') = 0;
    snprintf(aimc_bin, sizeof aimc_bin, "%s/../aimc", self);
    snprintf(tmp_dir, sizeof tmp_dir, "/tmp/aimc_test_cuda_dist_XXXXXX");
    if (!mkdtemp(tmp_dir)) printf("FAIL: mkdtemp\n"), exit(1);
    make_shards("shards", SYNTH_MMC4, 11);
    make_shards("laion", SYNTH_LAION, 8);
    test_two_ranks_equal_one("aim", LM_ARGS, at("shards/*.tar"));
    test_two_ranks_equal_one("clip", CLIP_ARGS, at("laion/*.tar"));
    test_killed_rank();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_dir);
    if (!tl_failed && system(cmd) != 0) printf("note: could not remove %s\n", tmp_dir);
    return tests_done();
}
