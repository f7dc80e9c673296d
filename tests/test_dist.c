/* The dist layer: launcher detection and bad launch environments (in this
 * process and in forked children), then real multi-process runs:
 *  - TCP: this test forks N ranks with RANK / WORLD_SIZE / MASTER_ADDR=127.0.0.1
 *    / MASTER_PORT=<free port> (or Slurm-style variables);
 *  - MPI: when mpirun is on PATH, `mpirun -np 3 <this binary> --child ...`.
 * Each rank runs one scenario (this file's child mode) and writes what it got
 * to a file; the parent compares every rank's results with values it computes
 * itself from the same generator (rank-order sums in f32/f64/i64, slices,
 * copies), bitwise, and checks that all ranks agree bitwise and that MPI and
 * TCP agree bitwise. Failure scenarios (a rank exits, is SIGKILLed, hangs,
 * calls another collective; a rank never shows up) must make every other rank
 * exit non-zero within the 2 s collective timeout plus a margin, with the
 * one-line error naming rank, step and operation, and leave no child behind. */
#include "../host/dist.h"
#include "../kernels/backend.h"
#include "../kernels/check.h"
#include "testlib.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#if defined(__has_include)
#if __has_include(<mpi.h>)
#define TEST_HAVE_MPI 1
#endif
#endif

#define TIMEOUT_S 2      /* collective deadline inside the children */
#define MARGIN_S 3.0     /* slack for process start-up and scheduling */
#define N_REDUCE 1200007 /* > one 4 MiB chunk of f32: two rounds */
#define N_BCAST 1100001
#define N_BIG_SLICE 1100003
#define WORLD 3
#define VICTIM (WORLD - 1)

static char g_dir[64];
static uint64_t g_seed;
static char g_self[4096];

/* ===== inputs: a stateless generator the parent can replay ============= */

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static uint64_t hash4(uint64_t seed, int salt, int rank, int64_t i) {
    return mix64(seed ^ mix64(((uint64_t)salt << 56) ^ ((uint64_t)rank << 40) ^ (uint64_t)i) ^ 0x9e3779b97f4a7c15ull);
}
static float gen_f32(int salt, int rank, int64_t i) {
    return (float)((double)(hash4(g_seed, salt, rank, i) >> 11) * 0x1p-52 - 1.0);
}
static double gen_f64(int salt, int rank, int64_t i) {
    return ((double)(hash4(g_seed, salt, rank, i) >> 11) * 0x1p-52 - 1.0) * 1e3;
}
/* Large magnitudes, both signs, so a sum near the int64 range would show. */
static int64_t gen_i64(int salt, int rank, int64_t i) {
    return (int64_t)(hash4(g_seed, salt, rank, i) >> 3) - ((int64_t)1 << 60);
}
static int64_t slice_f32(int r) { return r == 1 ? 0 : r == WORLD - 1 ? N_BIG_SLICE : 5 + r; }
static int64_t slice_i64(int r) { return r == 1 ? 0 : 2 + r; }

enum { S_RED_F32 = 1, S_RED_F64, S_RED_I64, S_GATHER_F32, S_GATHER_I64, S_BCAST_F32, S_BCAST_I64, S_TENSOR };

/* ===== child mode: one rank of one scenario ============================= */

static void put(FILE *f, const void *p, size_t bytes) {
    if (bytes && fwrite(p, 1, bytes, f) != bytes) {
        fprintf(stderr, "child: short write\n");
        _exit(90);
    }
}
static float *fvec(int64_t n) { return tl_alloc((size_t)n * sizeof(float)); }
static int64_t *ivec(int64_t n) { return tl_alloc((size_t)n * sizeof(int64_t)); }

static void child_allreduce(FILE *f, int me) {
    float *a = fvec(N_REDUCE);
    for (int64_t i = 0; i < N_REDUCE; i++) a[i] = gen_f32(S_RED_F32, me, i);
    dist_allreduce_sum(a, N_REDUCE, DIST_F32, 1);
    put(f, a, sizeof(float) * N_REDUCE);
    double d[7];
    int64_t q[5];
    for (int i = 0; i < 7; i++) d[i] = gen_f64(S_RED_F64, me, i);
    for (int i = 0; i < 5; i++) q[i] = gen_i64(S_RED_I64, me, i);
    dist_allreduce_sum(d, 7, DIST_F64, 2);
    dist_allreduce_sum(q, 5, DIST_I64, 2);
    dist_allreduce_sum(a, 0, DIST_F32, 2); /* empty: no traffic on any rank, no error */
    put(f, d, sizeof d);
    put(f, q, sizeof q);
    free(a);
}

static void child_allgather(FILE *f, int me, int world) {
    int64_t cf[WORLD], ci[WORLD], nf = 0, ni = 0;
    for (int r = 0; r < world; r++) cf[r] = slice_f32(r), ci[r] = slice_i64(r), nf += cf[r], ni += ci[r];
    float *sf = fvec(cf[me] + 1), *rf = fvec(nf);
    int64_t *si = ivec(ci[me] + 1), *ri = ivec(ni);
    for (int64_t i = 0; i < cf[me]; i++) sf[i] = gen_f32(S_GATHER_F32, me, i);
    for (int64_t i = 0; i < ci[me]; i++) si[i] = gen_i64(S_GATHER_I64, me, i);
    poison(rf, nf);
    memset(ri, 0xab, sizeof(int64_t) * (size_t)ni);
    dist_allgatherv(sf, rf, cf, DIST_F32, 3);
    dist_allgatherv(si, ri, ci, DIST_I64, 3);
    int64_t counts[WORLD];
    dist_allgather_counts(10 + me, counts, 3);
    put(f, rf, sizeof(float) * (size_t)nf);
    put(f, ri, sizeof(int64_t) * (size_t)ni);
    put(f, counts, sizeof(int64_t) * (size_t)world);
    free(sf), free(rf), free(si), free(ri);
}

static void child_broadcast(FILE *f, int me, int world) {
    float *b = fvec(N_BCAST);
    int root = world - 1;
    if (me == root)
        for (int64_t i = 0; i < N_BCAST; i++) b[i] = gen_f32(S_BCAST_F32, root, i);
    else
        poison(b, N_BCAST);
    dist_broadcast(b, N_BCAST, DIST_F32, root, 4);
    int64_t q[3];
    for (int i = 0; i < 3; i++) q[i] = me == 0 ? gen_i64(S_BCAST_I64, 0, i) : -1;
    dist_broadcast(q, 3, DIST_I64, 0, 4);
    dist_barrier(4);
    put(f, b, sizeof(float) * N_BCAST);
    put(f, q, sizeof q);
    free(b);
}

static void child_agreement_and_tensor(FILE *f, int me) {
    int32_t out[3];
    int bad = -7;
    out[0] = dist_all_ok(me != 1, 5, &bad);
    out[1] = bad;
    out[2] = dist_all_ok(1, 5, NULL);
    put(f, out, sizeof out);
    float x[15];
    for (int i = 0; i < 15; i++) x[i] = gen_f32(S_TENSOR, me, i);
    tensor t = tensor_wrap(x, DT_F32, backend_cpu(), 2, (int64_t[]){3, 5});
    dist_allreduce_tensor(&t, 5);
    put(f, x, sizeof x);
}

/* Every collective, results to <dir>/<tag>.rank<r>. */
static int child_collectives(const char *tag) {
    int me = dist_rank(), world = dist_world();
    if (world != WORLD) return 80;
    char path[256];
    snprintf(path, sizeof path, "%s/%s.rank%d", g_dir, tag, me);
    FILE *f = fopen(path, "wb");
    if (!f) return 81;
    int32_t head[4] = {me, world, dist_local_rank(), (int32_t)dist_get_info()->transport};
    put(f, head, sizeof head);
    child_allreduce(f, me);
    child_allgather(f, me, world);
    child_broadcast(f, me, world);
    child_agreement_and_tensor(f, me);
    return fclose(f) ? 82 : 0;
}

/* The failing rank: rank 0 for "rootkill", else the last rank. */
static int victim_of(const char *how) { return strcmp(how, "rootkill") ? VICTIM : 0; }

/* One good step, then the victim exits / dies / hangs / calls something else
 * while the others enter the allreduce of step 7. Returning 0 from here
 * means a survivor got through a collective it should have failed in. */
static int child_failure(const char *how) {
    float x[1000];
    for (int i = 0; i < 1000; i++) x[i] = (float)i;
    dist_allreduce_sum(x, 1000, DIST_F32, 6);
    int me = dist_rank();
    if (me == victim_of(how)) {
        if (!strcmp(how, "exit")) _exit(3);
        if (!strcmp(how, "kill") || !strcmp(how, "rootkill")) raise(SIGKILL);
        if (!strcmp(how, "hang")) sleep(30); /* killed by the parent (or mpirun) */
        if (!strcmp(how, "mismatch")) {
            int64_t c[WORLD];
            dist_allgather_counts(1, c, 7);
        }
        return 0;
    }
    dist_allreduce_sum(x, 1000, DIST_F32, 7);
    return 0;
}

static int child_main(const char *scenario) {
    const char *s = getenv("AIMC_DIST_TEST_SEED");
    g_seed = s ? strtoull(s, NULL, 10) : 1;
    s = getenv("AIMC_DIST_TEST_DIR");
    snprintf(g_dir, sizeof g_dir, "%s", s ? s : "/tmp");
    dist_init(NULL); /* AIMC_DIST_TIMEOUT=2 comes from the environment */
    int rc;
    if (!strncmp(scenario, "collectives", 11)) rc = child_collectives(scenario);
    else if (!strncmp(scenario, "fail-", 5)) rc = child_failure(scenario + 5);
    else if (!strcmp(scenario, "join")) rc = 0; /* rendezvous only */
    else rc = 70;
    dist_finalize();
    return rc;
}

/* ===== parent: spawning ranks ============================================ */

static const char *launch_vars[] = {
    "RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "OMPI_COMM_WORLD_SIZE",
    "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_STEP_NUM_TASKS", "SLURM_PROCID",
    "SLURM_LOCALID", "PMIX_RANK", "PMI_RANK", "AIMC_DIST_TIMEOUT"};

static void clear_launch_env(void) {
    for (size_t i = 0; i < sizeof launch_vars / sizeof *launch_vars; i++) unsetenv(launch_vars[i]);
}

static void setenv_int(const char *name, long v) {
    char b[32];
    snprintf(b, sizeof b, "%ld", v);
    setenv(name, b, 1);
}


/* A port that was free a moment ago (bound to 127.0.0.1:0, then closed). */
static void log_path(char *buf, size_t n, const char *name, int rank) {
    snprintf(buf, n, "%s/%s.log%d", g_dir, name, rank);
}

/* The child's stdout and stderr go to <dir>/<name>.log<rank>. */
static void redirect_output(const char *name, int rank) {
    char path[256];
    log_path(path, sizeof path, name, rank);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) _exit(91);
    dup2(fd, 1);
    dup2(fd, 2);
    close(fd);
}

static void set_child_env(void) {
    clear_launch_env();
    setenv_int("AIMC_DIST_TIMEOUT", TIMEOUT_S);
    setenv("AIMC_DIST_TEST_DIR", g_dir, 1);
    char b[32];
    snprintf(b, sizeof b, "%llu", (unsigned long long)g_seed);
    setenv("AIMC_DIST_TEST_SEED", b, 1);
}

/* Forks one TCP rank; style "env" (torchrun variables) or "slurm". */
static pid_t spawn_tcp_rank(const char *log, const char *scenario, int rank, int world, int port,
                            const char *style) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid != 0) return pid;
    redirect_output(log, rank);
    set_child_env();
    setenv("MASTER_ADDR", "127.0.0.1", 1);
    setenv_int("MASTER_PORT", port);
    if (!strcmp(style, "slurm")) {
        setenv_int("SLURM_STEP_NUM_TASKS", world);
        setenv_int("SLURM_PROCID", rank);
    } else {
        setenv_int("WORLD_SIZE", world);
        setenv_int("RANK", rank);
    }
    int rc = child_main(scenario);
    fflush(NULL);
    _exit(rc);
}

/* waitpid with a deadline; a child still running then is SIGKILLed (and
 * reported as 128 + 9). Returns the exit status (128 + signal if killed). */
static int wait_until(pid_t pid, double deadline, double *exited_at) {
    int status = 0;
    for (;;) {
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid) break;
        if (aimc_now() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            break;
        }
        usleep(5000);
    }
    if (exited_at) *exited_at = aimc_now();
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* ===== parent: reading what the ranks wrote ============================== */

static char *read_log(const char *name, int rank) {
    char path[256];
    log_path(path, sizeof path, name, rank);
    char *s = tl_read_file(path, NULL);
    return s ? s : strdup("");
}

/* One check: rank's log contains `want` (the log is printed when not). */
static void check_log(const char *name, int rank, const char *want) {
    char *s = read_log(name, rank);
    CHECK(strstr(s, want) != NULL, "%s rank %d: log lacks '%s'; log:\n%s", name, rank, want, s);
    free(s);
}

/* ===== parent: the reference results ===================================== */

typedef struct bytes_out {
    unsigned char *p;
    size_t n, cap;
} bytes_out;

static void out_put(bytes_out *o, const void *p, size_t n) {
    if (o->n + n > o->cap) {
        o->cap = (o->n + n) * 2;
        o->p = realloc(o->p, o->cap);
        if (!o->p) exit(1);
    }
    memcpy(o->p + o->n, p, n);
    o->n += n;
}

/* Rank-order sums, written out here: ((x0 + x1) + x2) in the value's type. */
static void ref_allreduce(bytes_out *o, double *worst_rel) {
    float *a = fvec(N_REDUCE);
    double num = 0, den = 0;
    for (int64_t i = 0; i < N_REDUCE; i++) {
        float acc = gen_f32(S_RED_F32, 0, i);
        double exact = acc;
        for (int r = 1; r < WORLD; r++) acc += gen_f32(S_RED_F32, r, i), exact += gen_f32(S_RED_F32, r, i);
        a[i] = acc;
        num += (acc - exact) * (acc - exact), den += exact * exact;
    }
    *worst_rel = sqrt(num / den); /* the f32 sum really is a sum */
    out_put(o, a, sizeof(float) * N_REDUCE);
    free(a);
    double d[7];
    uint64_t q[5];
    for (int i = 0; i < 7; i++) {
        d[i] = gen_f64(S_RED_F64, 0, i);
        for (int r = 1; r < WORLD; r++) d[i] += gen_f64(S_RED_F64, r, i);
    }
    for (int i = 0; i < 5; i++) {
        q[i] = (uint64_t)gen_i64(S_RED_I64, 0, i);
        for (int r = 1; r < WORLD; r++) q[i] += (uint64_t)gen_i64(S_RED_I64, r, i);
    }
    out_put(o, d, sizeof d);
    out_put(o, q, sizeof q);
}

static void ref_allgather(bytes_out *o) {
    for (int r = 0; r < WORLD; r++)
        for (int64_t i = 0; i < slice_f32(r); i++) {
            float v = gen_f32(S_GATHER_F32, r, i);
            out_put(o, &v, sizeof v);
        }
    for (int r = 0; r < WORLD; r++)
        for (int64_t i = 0; i < slice_i64(r); i++) {
            int64_t v = gen_i64(S_GATHER_I64, r, i);
            out_put(o, &v, sizeof v);
        }
    for (int r = 0; r < WORLD; r++) {
        int64_t c = 10 + r;
        out_put(o, &c, sizeof c);
    }
}

static void ref_rest(bytes_out *o) {
    float *b = fvec(N_BCAST);
    for (int64_t i = 0; i < N_BCAST; i++) b[i] = gen_f32(S_BCAST_F32, WORLD - 1, i);
    out_put(o, b, sizeof(float) * N_BCAST);
    free(b);
    for (int i = 0; i < 3; i++) {
        int64_t v = gen_i64(S_BCAST_I64, 0, i);
        out_put(o, &v, sizeof v);
    }
    int32_t agree[3] = {0, 1, 1}; /* rank 1 said "not ok"; then everyone ok */
    out_put(o, agree, sizeof agree);
    for (int i = 0; i < 15; i++) {
        float acc = gen_f32(S_TENSOR, 0, i);
        for (int r = 1; r < WORLD; r++) acc += gen_f32(S_TENSOR, r, i);
        out_put(o, &acc, sizeof acc);
    }
}

/* Every rank's file: its header, then results bitwise equal to the
 * reference (which also makes them bitwise equal across ranks). Returns
 * rank 0's results (after the header) for the MPI-vs-TCP comparison. */
static unsigned char *check_collectives(const char *tag, int transport, size_t *len_out) {
    bytes_out ref = {0};
    double rel = 0;
    ref_allreduce(&ref, &rel);
    ref_allgather(&ref);
    ref_rest(&ref);
    CHECK(rel < 1e-6, "%s: reference f32 sum vs f64 sum: rel %.3g", tag, rel);
    unsigned char *first = NULL;
    for (int r = 0; r < WORLD; r++) {
        char path[256];
        size_t len = 0;
        snprintf(path, sizeof path, "%s/%s.rank%d", g_dir, tag, r);
        unsigned char *got = (unsigned char *)tl_read_file(path, &len);
        int32_t head[4] = {-1, -1, -1, -1};
        if (got && len >= sizeof head) memcpy(head, got, sizeof head);
        CHECK(got && len == sizeof head + ref.n, "%s rank %d: result file has %zu bytes, want %zu",
              tag, r, len, sizeof head + ref.n);
        CHECK(head[0] == r && head[1] == WORLD && head[2] == r && head[3] == transport,
              "%s rank %d: rank %d world %d local rank %d transport %d", tag, r, head[0], head[1],
              head[2], head[3]);
        if (!got || len != sizeof head + ref.n) {
            free(got);
            continue;
        }
        size_t at = 0;
        while (at < ref.n && got[sizeof head + at] == ref.p[at]) at++;
        CHECK(at == ref.n, "%s rank %d: results differ from the reference at byte %zu of %zu", tag,
              r, at, ref.n);
        if (r == 0) {
            first = got;
            *len_out = len;
        } else {
            free(got);
        }
    }
    free(ref.p);
    return first;
}

/* ===== parent: scenarios ================================================= */

/* TCP, every collective, 3 forked ranks. */
static unsigned char *run_tcp_collectives(size_t *len) {
    int port = tl_free_port();
    pid_t pids[WORLD];
    for (int r = 0; r < WORLD; r++) pids[r] = spawn_tcp_rank("tcp-collectives", "collectives-tcp", r, WORLD, port, "env");
    double deadline = aimc_now() + 20;
    for (int r = 0; r < WORLD; r++) {
        int st = wait_until(pids[r], deadline, NULL);
        CHECK(st == 0, "tcp collectives: rank %d exited with %d", r, st);
        if (st) {
            char *s = read_log("tcp-collectives", r);
            printf("rank %d log:\n%s\n", r, s);
            free(s);
        }
    }
    check_log("tcp-collectives", 0, "aimc: dist: world 3, launcher env, transport tcp 127.0.0.1:");
    return check_collectives("collectives-tcp", DIST_TCP, len);
}

/* A rank fails in one of several ways during step 7; every other rank must
 * exit non-zero within the timeout plus a margin, naming the step. */
static void run_tcp_failure(const char *how, const char *style) {
    char scen[32], log[48];
    snprintf(scen, sizeof scen, "fail-%s", how);
    snprintf(log, sizeof log, "tcp-%s-%s", how, style);
    int port = tl_free_port();
    pid_t pids[WORLD];
    double t0 = aimc_now();
    for (int r = 0; r < WORLD; r++) pids[r] = spawn_tcp_rank(log, scen, r, WORLD, port, style);
    int victim = victim_of(how);
    for (int r = 0; r < WORLD; r++) {
        if (r == victim) continue;
        double at = 0;
        int st = wait_until(pids[r], t0 + TIMEOUT_S + MARGIN_S, &at);
        CHECK(st == 1, "%s: rank %d exited with %d, want 1", log, r, st);
        CHECK(at - t0 < TIMEOUT_S + MARGIN_S, "%s: rank %d took %.2f s", log, r, at - t0);
        char want[64];
        snprintf(want, sizeof want, "aimc: error: rank %d/%d: allreduce at step 7", r, WORLD);
        check_log(log, r, want);
    }
    int vst = wait_until(pids[victim], aimc_now() + (strcmp(how, "hang") ? 5 : 0), NULL);
    int want_victim = !strcmp(how, "exit") ? 3 : !strcmp(how, "mismatch") ? 1 : 128 + SIGKILL;
    CHECK(vst == want_victim, "%s: the failing rank exited with %d, want %d", log, vst, want_victim);
    if (!strcmp(how, "exit") || !strcmp(how, "kill"))
        check_log(log, 0, "rank 2 closed its connection (it exited or was killed)");
    if (!strcmp(how, "rootkill"))
        for (int r = 1; r < WORLD; r++) check_log(log, r, "rank 0 closed its connection (it exited or was killed)");
    if (!strcmp(how, "hang")) {
        check_log(log, 0, "aimc: error: rank 0/3: allreduce at step 7 timed out after 2 s waiting for rank 2");
        /* rank 1's deadline has a grace: it hears rank 0's reason first */
        check_log(log, 1, "aimc: error: rank 1/3: allreduce at step 7: stopping because another rank "
                          "failed: rank 0/3: allreduce at step 7 timed out after 2 s waiting for rank 2");
    }
    if (!strcmp(how, "mismatch")) {
        check_log(log, 0, "rank 2 is in allgather of counts at step 7");
        check_log(log, 0, "every rank must call the same collectives in the same order");
        check_log(log, VICTIM, "aimc: error: rank 2/3: allgather of counts at step 7: stopping because another rank failed: rank 0/3: allreduce at step 7");
    }
    if (!strcmp(style, "slurm")) check_log(log, 0, "launcher srun, transport tcp");
}

/* Only one rank of two starts: the rendezvous gives up at its deadline. */
static void run_tcp_lonely(int rank) {
    char log[32], want[160];
    snprintf(log, sizeof log, "tcp-lonely%d", rank);
    int port = tl_free_port();
    double t0 = aimc_now(), at = 0;
    pid_t pid = spawn_tcp_rank(log, "join", rank, 2, port, "env");
    int st = wait_until(pid, t0 + TIMEOUT_S + MARGIN_S, &at);
    CHECK(st == 1, "%s: exited with %d, want 1", log, st);
    CHECK(at - t0 < TIMEOUT_S + MARGIN_S, "%s: took %.2f s", log, at - t0);
    if (rank == 0)
        snprintf(want, sizeof want, "aimc: error: rank 0/2: rendezvous during setup timed out after 2 s "
                 "waiting for rank 1 (1 of 2 ranks never connected)");
    else
        snprintf(want, sizeof want, "aimc: error: rank 1/2: rendezvous during setup timed out after 2 s "
                 "waiting for rank 0 at 127.0.0.1:%d", port);
    check_log(log, rank, want);
}

static int mpirun_available(void) {
#ifdef TEST_HAVE_MPI
    return system("command -v mpirun >/dev/null 2>&1") == 0;
#else
    return 0;
#endif
}

/* mpirun -np 3 <this test> --child <scenario>; its output (every rank's,
 * forwarded by mpirun) goes to <dir>/<log>.log0. Runs as root in CI, hence
 * --allow-run-as-root; 3 ranks on 2 cores, hence --oversubscribe; the mca
 * options keep MPI's own traffic on the loopback interface. */
static pid_t spawn_mpirun(const char *log, const char *scenario) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid != 0) return pid;
    redirect_output(log, 0);
    set_child_env();
    execlp("mpirun", "mpirun", "--allow-run-as-root", "--oversubscribe", "--mca",
           "btl_tcp_if_include", "lo", "--mca", "oob_tcp_if_include", "lo", "-np", "3", g_self,
           "--child", scenario, (char *)NULL);
    _exit(127);
}

static unsigned char *run_mpi_collectives(size_t *len) {
    double t0 = aimc_now();
    int st = wait_until(spawn_mpirun("mpi-collectives", "collectives-mpi"), t0 + 25, NULL);
    CHECK(st == 0, "mpi collectives: mpirun exited with %d", st);
    if (st) {
        char *s = read_log("mpi-collectives", 0);
        printf("mpirun log:\n%s\n", s);
        free(s);
    }
    check_log("mpi-collectives", 0, "aimc: dist: world 3, launcher mpirun, transport mpi");
    return check_collectives("collectives-mpi", DIST_MPI, len);
}

/* Under mpirun a dead or stuck rank ends the whole job: mpirun kills the
 * others when one dies; a timed-out rank calls MPI_Abort. */
static void run_mpi_failure(const char *how) {
    char scen[32], log[32];
    snprintf(scen, sizeof scen, "fail-%s", how);
    snprintf(log, sizeof log, "mpi-%s", how);
    double t0 = aimc_now(), at = 0;
    double limit = TIMEOUT_S + MARGIN_S + 1.0; /* + mpirun's own start-up */
    int st = wait_until(spawn_mpirun(log, scen), t0 + 20, &at);
    CHECK(st != 0, "%s: mpirun exited with %d, want a failure status", log, st);
    CHECK(at - t0 < limit, "%s: took %.2f s (limit %.1f)", log, at - t0, limit);
    if (!strcmp(how, "hang"))
        check_log(log, 0, "aimc: error: rank 0/3: allreduce at step 7 timed out after 2 s waiting for rank 2");
}

/* No rank of ours may outlive its run: no child left to reap, and no
 * process still running this binary in child mode. */
static int stray_ranks(void) {
    int n = 0;
    DIR *d = opendir("/proc");
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9' || atoi(e->d_name) == (int)getpid()) continue;
        char path[300], *cmd;
        size_t len = 0;
        snprintf(path, sizeof path, "/proc/%s/cmdline", e->d_name);
        if (!(cmd = tl_read_file(path, &len))) continue;
        /* cmdline is NUL-separated: argv[0], then "--child" */
        size_t a0 = strlen(cmd);
        if (!strcmp(cmd, g_self) && len > a0 + 1 && !strcmp(cmd + a0 + 1, "--child")) n++;
        free(cmd);
    }
    if (d) closedir(d);
    return n;
}

static void check_no_leftovers(void) {
    errno = 0;
    CHECK(waitpid(-1, NULL, WNOHANG) == -1 && errno == ECHILD, "a child process is left unreaped");
    double until = aimc_now() + 3;
    int n;
    while ((n = stray_ranks()) > 0 && aimc_now() < until) usleep(50000);
    CHECK(n == 0, "%d rank processes still running after their runs", n);
}

/* ===== single process and launch environments (no peers) ================ */

static void check_world1(dist_launcher launcher) {
    const dist_info *in = dist_get_info();
    CHECK(dist_world() == 1 && dist_rank() == 0 && dist_local_rank() == 0,
          "world 1: rank %d world %d local %d", dist_rank(), dist_world(), dist_local_rank());
    CHECK(in->launcher == launcher && in->transport == DIST_LOCAL, "world 1: launcher %s transport %s",
          dist_launcher_name(in->launcher), dist_transport_name(in->transport));
}

/* World 1: every collective is the identity (allgather a copy). */
static void check_world1_collectives(void) {
    float x[7], keep[7], got[7];
    fill_uniform(x, 7, -1, 1);
    memcpy(keep, x, sizeof x);
    dist_allreduce_sum(x, 7, DIST_F32, 0);
    dist_broadcast(x, 7, DIST_F32, 0, 0);
    CHECK(!memcmp(x, keep, sizeof x), "world 1: allreduce/broadcast changed the buffer");
    poison(got, 7);
    dist_allgatherv(x, got, (int64_t[]){7}, DIST_F32, 0);
    CHECK(!memcmp(got, keep, sizeof got), "world 1: allgather is not a copy");
    int64_t c = -1;
    dist_allgather_counts(9, &c, 0);
    CHECK(c == 9, "world 1: allgather_counts gave %lld", (long long)c);
    int bad = -5;
    CHECK(dist_all_ok(1, 0, &bad) == 1 && bad == -1, "world 1: all_ok(1) -> bad %d", bad);
    CHECK(dist_all_ok(0, 0, &bad) == 0 && bad == 0, "world 1: all_ok(0) -> bad %d", bad);
    dist_barrier(0);
    tensor t = tensor_wrap(x, DT_F32, backend_cpu(), 1, (int64_t[]){7});
    dist_allreduce_tensor(&t, 0);
    CHECK(!memcmp(x, keep, sizeof x), "world 1: tensor allreduce changed the tensor");
    CHECK(!dist_nccl_ready(), "world 1: NCCL ready without dist_nccl_init");
#ifndef AIMC_CUDA
    char err[200] = "";
    CHECK(!dist_nccl_init(err, sizeof err) && strstr(err, "without CUDA"), "nccl init: '%s'", err);
#endif
}

static void test_single_process(void) {
    clear_launch_env();
    dist_init(&(dist_opts){.timeout_s = 5, .quiet = 1});
    check_world1(DIST_LAUNCH_SINGLE);
    CHECK(dist_get_info()->timeout_s == 5, "timeout %g", dist_get_info()->timeout_s);
    check_world1_collectives();
    dist_finalize();

    setenv("RANK", "0", 1), setenv("WORLD_SIZE", "1", 1); /* torchrun with one process */
    dist_init(&(dist_opts){.quiet = 1});
    check_world1(DIST_LAUNCH_ENV);
    CHECK(dist_get_info()->timeout_s == DIST_DEFAULT_TIMEOUT_S, "default timeout %g", dist_get_info()->timeout_s);
    dist_finalize();
    clear_launch_env();

    setenv("SLURM_STEP_NUM_TASKS", "1", 1), setenv("SLURM_PROCID", "0", 1), setenv("SLURM_LOCALID", "0", 1);
    setenv("AIMC_DIST_TIMEOUT", "7.5", 1);
    dist_init(&(dist_opts){.quiet = 1});
    check_world1(DIST_LAUNCH_SLURM);
    CHECK(dist_get_info()->timeout_s == 7.5, "AIMC_DIST_TIMEOUT: timeout %g", dist_get_info()->timeout_s);
    dist_finalize();
    clear_launch_env();
}

/* Bad launch environments: each child sets variables, calls dist_init, and
 * must stop with status 1 and the named message. */
static void env2(const char *rank, const char *world) {
    clear_launch_env();
    if (rank) setenv("RANK", rank, 1);
    if (world) setenv("WORLD_SIZE", world, 1);
}
static void init_quiet(void) { dist_init(&(dist_opts){.quiet = 1, .timeout_s = 2}); }
static void die_rank_out_of_range(void) {
    env2("2", "2");
    setenv("MASTER_ADDR", "127.0.0.1", 1), setenv("MASTER_PORT", "1", 1);
    init_quiet();
}
static void die_no_master_addr(void) { env2("0", "2"), init_quiet(); }
static void die_no_master_port(void) { env2("0", "2"), setenv("MASTER_ADDR", "127.0.0.1", 1), init_quiet(); }
static void die_bad_rank(void) { env2("abc", "2"), init_quiet(); }
static void die_rank_without_world(void) { env2("0", NULL), init_quiet(); }
static void die_srun_without_mpi(void) {
    clear_launch_env();
    setenv("SLURM_STEP_NUM_TASKS", "2", 1), setenv("SLURM_PROCID", "0", 1);
    init_quiet();
}
static void die_bad_timeout(void) { clear_launch_env(), setenv("AIMC_DIST_TIMEOUT", "soon", 1), dist_init(NULL); }
static void die_init_twice(void) { clear_launch_env(), init_quiet(), init_quiet(); }
static int g_busy_port;
static void die_port_in_use(void) {
    env2("0", "2");
    setenv("MASTER_ADDR", "127.0.0.1", 1);
    setenv_int("MASTER_PORT", g_busy_port);
    init_quiet();
}

static void test_bad_environments(void) {
    EXPECT_DIES(die_rank_out_of_range, 1, "rank 2 is out of range for world size 2");
    EXPECT_DIES(die_no_master_addr, 1, "world size 2 without MPI needs MASTER_ADDR");
    EXPECT_DIES(die_no_master_port, 1, "needs MASTER_PORT");
    EXPECT_DIES(die_bad_rank, 1, "environment variable RANK='abc' is not a non-negative integer");
    EXPECT_DIES(die_rank_without_world, 1, "WORLD_SIZE is not set");
    EXPECT_DIES(die_srun_without_mpi, 1, "srun --mpi=pmix");
    EXPECT_DIES(die_bad_timeout, 1, "AIMC_DIST_TIMEOUT='soon' is not a positive number");
    EXPECT_DIES(die_init_twice, 1, "dist_init called twice");
    /* rank 0 cannot listen: the port is taken */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (fd >= 0 && !bind(fd, (struct sockaddr *)&a, sizeof a) && !listen(fd, 1) &&
        !getsockname(fd, (struct sockaddr *)&a, &len)) {
        g_busy_port = ntohs(a.sin_port);
        EXPECT_DIES(die_port_in_use, 1, "rank 0/2: rendezvous during setup: cannot listen on MASTER_ADDR 127.0.0.1");
    }
    if (fd >= 0) close(fd);
}

/* ===== main =============================================================== */

static void remove_dir(void) {
    DIR *d = opendir(g_dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[400];
        snprintf(path, sizeof path, "%s/%s", g_dir, e->d_name);
        unlink(path);
    }
    if (d) closedir(d);
    rmdir(g_dir);
}

int main(int argc, char **argv) {
    if (argc >= 3 && !strcmp(argv[1], "--child")) { /* a rank under mpirun */
        int rc = child_main(argv[2]);
        fflush(NULL);
        _exit(rc); /* no exit-time leak check of MPI's own allocations under ASan */
    }
    tests_begin("test_dist");
    signal(SIGPIPE, SIG_IGN);
    g_seed = rng_u64();
    ssize_t n = readlink("/proc/self/exe", g_self, sizeof g_self - 1);
    g_self[n > 0 ? n : 0] = 0;
    snprintf(g_dir, sizeof g_dir, "/tmp/aimc-dist-XXXXXX");
    if (!mkdtemp(g_dir)) {
        printf("FAIL: mkdtemp: %s\n", strerror(errno));
        return 1;
    }
    double t0 = aimc_now();
    test_single_process();
    test_bad_environments();

    size_t tcp_len = 0, mpi_len = 0;
    unsigned char *tcp = run_tcp_collectives(&tcp_len);
    run_tcp_failure("exit", "slurm");
    run_tcp_failure("kill", "env");
    run_tcp_failure("rootkill", "env");
    run_tcp_failure("hang", "env");
    run_tcp_failure("mismatch", "env");
    run_tcp_lonely(0);
    run_tcp_lonely(1);
    if (mpirun_available()) {
        unsigned char *mpi = run_mpi_collectives(&mpi_len);
        /* the header holds the transport; everything after it must match */
        CHECK(tcp && mpi && tcp_len == mpi_len && !memcmp(tcp + 16, mpi + 16, tcp_len - 16),
              "MPI and TCP results differ");
        free(mpi);
        run_mpi_failure("kill");
        run_mpi_failure("hang");
    } else {
        printf("skip: mpirun not found (or built without MPI): MPI transport untested\n");
    }
    free(tcp);
    check_no_leftovers();
    if (getenv("AIMC_DIST_TEST_KEEP")) printf("logs and results kept in %s\n", g_dir);
    else remove_dir();
    printf("elapsed %.1f s\n", aimc_now() - t0);
    return tests_done();
}
