/* The dist layer: launcher detection, the collective deadline and error
 * line, and the host collectives built on two transport primitives
 * (gather to rank 0, broadcast from rank 0). See dist.h. */
#include "dist_impl.h"
#include "../kernels/backend.h"
#include "../kernels/check.h"
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

dist_info g_dist = {0, 1, 0, DIST_LAUNCH_SINGLE, DIST_LOCAL, DIST_DEFAULT_TIMEOUT_S};
dist_call g_dist_call = {"setup", DIST_SETUP, 0, 0};
static int g_initialized;

/* Bytes each rank contributes to one gather round: bounds rank 0's scratch
 * (world x this) and keeps every MPI count below INT_MAX. */
#define DIST_CHUNK_BYTES ((size_t)4 << 20)

/* ---- clock, deadline, errors ---- */


/* Ranks other than 0 wait a little longer than rank 0. In the star, rank 0
 * is the one that knows which rank is missing; giving it the first expiry
 * means its line ("... waiting for rank 2") is what every rank reports
 * (TCP abort notice; under MPI its MPI_Abort ends the job) instead of N-1
 * lines saying "waiting for rank 0". */
static double grace_s(void) {
    if (g_dist.rank == 0) return 0;
    double g = 0.25 * g_dist.timeout_s;
    return g < 30 ? g : 30;
}

void dist_call_begin(const char *op, int64_t step) {
    g_dist_call.op = op;
    g_dist_call.step = step;
    g_dist_call.start = aimc_now();
    g_dist_call.deadline = g_dist_call.start + g_dist.timeout_s + grace_s();
}

double dist_call_left(void) { return g_dist_call.deadline - aimc_now(); }

const char *dist_call_prefix(char *buf, size_t n) {
    if (g_dist_call.step >= 0)
        snprintf(buf, n, "rank %d/%d: %s at step %lld", g_dist.rank, g_dist.world, g_dist_call.op,
                 (long long)g_dist_call.step);
    else
        snprintf(buf, n, "rank %d/%d: %s during setup", g_dist.rank, g_dist.world, g_dist_call.op);
    return buf;
}

/* Tells the peers and ends the process; never returns. */
static void stop_all_ranks(const char *msg) __attribute__((noreturn));
static void stop_all_ranks(const char *msg) {
    static int stopping;
    if (stopping) _exit(1); /* a failure while reporting a failure */
    stopping = 1;
#ifdef AIMC_CUDA
    if (dist_nccl_is_open()) dist_nccl_abort();
#endif
    if (g_dist.transport == DIST_TCP) dist_tcp_notify_abort(msg);
    if (g_dist.transport == DIST_MPI) dist_mpi_abort();
    exit(1);
}

void dist_fail(const char *fmt, ...) {
    char prefix[160], tail[512], msg[704];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tail, sizeof tail, fmt, ap);
    va_end(ap);
    snprintf(msg, sizeof msg, "%s%s", dist_call_prefix(prefix, sizeof prefix), tail);
    fflush(stdout);
    fprintf(stderr, "aimc: error: %s\n", msg);
    fflush(stderr);
    stop_all_ranks(msg);
}

void dist_fail_timeout(int peer) {
    dist_fail(" timed out after %g s waiting for rank %d",
              g_dist_call.deadline - g_dist_call.start, peer);
}

/* ---- launch environment ---- */

typedef struct launch {
    dist_launcher launcher;
    dist_transport transport;
    int rank, world, local_rank; /* local_rank -1: derive from host names */
    const char *addr, *port;
} launch;

/* Reads an integer environment variable; 0 when unset. A malformed value is
 * a user error naming the variable. */
static int env_int(const char *name, int *out) {
    const char *s = getenv(name);
    if (!s || !*s) return 0;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < 0 || v > INT_MAX)
        aimc_die("environment variable %s='%s' is not a non-negative integer", name, s);
    *out = (int)v;
    return 1;
}

static int env_set(const char *name) {
    const char *s = getenv(name);
    return s && *s;
}

static void require_env_int(const char *name, int *out, const char *launcher) {
    if (!env_int(name, out)) aimc_die("launched by %s but %s is not set", launcher, name);
}

static launch detect_mpirun(void) {
    launch l = {DIST_LAUNCH_MPIRUN, DIST_MPI, 0, 1, 0, NULL, NULL};
    require_env_int("OMPI_COMM_WORLD_SIZE", &l.world, "mpirun");
    require_env_int("OMPI_COMM_WORLD_RANK", &l.rank, "mpirun");
    if (!env_int("OMPI_COMM_WORLD_LOCAL_RANK", &l.local_rank)) l.local_rank = 0;
    return l;
}

/* torchrun style: RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT. */
static launch detect_env(void) {
    launch l = {DIST_LAUNCH_ENV, DIST_TCP, 0, 1, -1, NULL, NULL};
    require_env_int("WORLD_SIZE", &l.world, "environment variables (RANK is set)");
    require_env_int("RANK", &l.rank, "environment variables (WORLD_SIZE is set)");
    if (!env_int("LOCAL_RANK", &l.local_rank)) l.local_rank = -1;
    l.addr = getenv("MASTER_ADDR");
    l.port = getenv("MASTER_PORT");
    return l;
}

/* srun: MPI when srun gave the tasks a PMI(x) server (srun --mpi=pmix),
 * else TCP through MASTER_ADDR / MASTER_PORT. */
static launch detect_slurm(void) {
    launch l = {DIST_LAUNCH_SLURM, DIST_TCP, 0, 1, 0, NULL, NULL};
    require_env_int("SLURM_STEP_NUM_TASKS", &l.world, "srun");
    require_env_int("SLURM_PROCID", &l.rank, "srun");
    if (!env_int("SLURM_LOCALID", &l.local_rank)) l.local_rank = -1;
    l.addr = getenv("MASTER_ADDR");
    l.port = getenv("MASTER_PORT");
    if ((env_set("PMIX_RANK") || env_set("PMI_RANK")) && dist_mpi_built()) {
        l.transport = DIST_MPI;
    } else if (l.world > 1 && (!l.addr || !l.port)) {
        aimc_die("launched by srun with %d tasks but without MPI support (PMIX_RANK / PMI_RANK "
                 "unset) and without MASTER_ADDR / MASTER_PORT: run 'srun --mpi=pmix ...' or "
                 "export MASTER_ADDR=<first node> MASTER_PORT=<free port>", l.world);
    }
    return l;
}

static launch detect_launch(void) {
    if (env_set("OMPI_COMM_WORLD_SIZE")) return detect_mpirun();
    if (env_set("WORLD_SIZE") || env_set("RANK")) return detect_env();
    if (env_set("SLURM_STEP_NUM_TASKS") && env_set("SLURM_PROCID")) return detect_slurm();
    launch l = {DIST_LAUNCH_SINGLE, DIST_LOCAL, 0, 1, 0, NULL, NULL};
    return l;
}

static void check_launch(launch *l) {
    if (l->world < 1) aimc_die("world size %d: it must be at least 1", l->world);
    if (l->rank >= l->world)
        aimc_die("rank %d is out of range for world size %d (ranks are 0..%d)", l->rank, l->world,
                 l->world - 1);
    if (l->world == 1) l->transport = DIST_LOCAL;
    if (l->transport == DIST_MPI && !dist_mpi_built())
        aimc_die("launched by %s but this aimc was built without MPI (install libopenmpi-dev and "
                 "rebuild)", dist_launcher_name(l->launcher));
    if (l->transport == DIST_TCP && (!l->addr || !*l->addr))
        aimc_die("world size %d without MPI needs MASTER_ADDR (rank 0's host name or address)",
                 l->world);
    if (l->transport == DIST_TCP && (!l->port || !*l->port))
        aimc_die("world size %d without MPI needs MASTER_PORT (a free TCP port on rank 0's host)",
                 l->world);
}

static double default_timeout(void) {
    const char *s = getenv("AIMC_DIST_TIMEOUT");
    if (!s || !*s) return DIST_DEFAULT_TIMEOUT_S;
    char *end;
    double v = strtod(s, &end);
    if (*end || !(v > 0)) aimc_die("AIMC_DIST_TIMEOUT='%s' is not a positive number of seconds", s);
    return v;
}

static void print_start_line(const launch *l) {
    char where[160] = "";
    if (g_dist.transport == DIST_TCP) snprintf(where, sizeof where, " %s:%s", l->addr, l->port);
    printf("aimc: dist: world %d, launcher %s, transport %s%s, rank %d, local rank %d, "
           "collective timeout %g s\n",
           g_dist.world, dist_launcher_name(g_dist.launcher), dist_transport_name(g_dist.transport),
           where, g_dist.rank, g_dist.local_rank, g_dist.timeout_s);
    fflush(stdout);
}

void dist_init(const dist_opts *opts) {
    if (g_initialized) aimc_die("dist_init called twice");
    dist_opts o = {0};
    if (opts) o = *opts;
    launch l = detect_launch();
    check_launch(&l);
    g_dist.rank = l.rank;
    g_dist.world = l.world;
    g_dist.local_rank = l.local_rank < 0 ? (l.world == 1 ? 0 : -1) : l.local_rank;
    g_dist.launcher = l.launcher;
    g_dist.transport = l.transport;
    g_dist.timeout_s = o.timeout_s > 0 ? o.timeout_s : default_timeout();
    double connect_s = o.connect_timeout_s > 0 ? o.connect_timeout_s : g_dist.timeout_s;
    if (l.transport == DIST_MPI) dist_mpi_init();
    if (l.transport == DIST_TCP) dist_tcp_connect(l.addr, l.port, connect_s, &g_dist.local_rank);
    g_initialized = 1;
    if (!o.quiet && g_dist.rank == 0) print_start_line(&l);
}

void dist_finalize(void) {
    if (!g_initialized) return;
#ifdef AIMC_CUDA
    if (dist_nccl_is_open()) dist_nccl_close();
#endif
    if (g_dist.transport == DIST_TCP) dist_tcp_close();
    if (g_dist.transport == DIST_MPI) dist_mpi_finalize();
    g_initialized = 0;
    g_dist = (dist_info){0, 1, 0, DIST_LAUNCH_SINGLE, DIST_LOCAL, g_dist.timeout_s};
}

int dist_rank(void) { return g_dist.rank; }
int dist_world(void) { return g_dist.world; }
int dist_local_rank(void) { return g_dist.local_rank; }
const dist_info *dist_get_info(void) { return &g_dist; }

void dist_set_timeout(double seconds) {
    AIMC_CHECK(seconds > 0, "dist_set_timeout: %g s", seconds);
    g_dist.timeout_s = seconds;
}

const char *dist_launcher_name(dist_launcher l) {
    static const char *names[] = {"none", "mpirun", "srun", "env"};
    return (unsigned)l < 4 ? names[l] : "?";
}

const char *dist_transport_name(dist_transport t) {
    static const char *names[] = {"local", "mpi", "tcp"};
    return (unsigned)t < 3 ? names[t] : "?";
}

size_t dist_dtype_size(dist_dtype dt) {
    static const size_t sizes[DIST_DTYPE_COUNT] = {4, 8, 8, 1, 2};
    AIMC_CHECK((unsigned)dt < DIST_DTYPE_COUNT, "bad dist dtype %d", (int)dt);
    return sizes[dt];
}

/* ---- the two transport primitives ---- */

static void gather0(const void *send, void *recv, const size_t *bytes) {
    if (g_dist.transport == DIST_TCP) dist_tcp_gather0(send, recv, bytes);
    else dist_mpi_gather0(send, recv, bytes);
}

static void bcast0(void *buf, size_t bytes) {
    for (size_t off = 0; off < bytes; off += DIST_CHUNK_BYTES) {
        size_t n = bytes - off < DIST_CHUNK_BYTES ? bytes - off : DIST_CHUNK_BYTES;
        if (g_dist.transport == DIST_TCP) dist_tcp_bcast0((char *)buf + off, n);
        else dist_mpi_bcast0((char *)buf + off, n);
    }
}

static void *scratch(size_t bytes) {
    void *p = calloc(1, bytes ? bytes : 1);
    AIMC_CHECK(p, "dist: out of memory (%zu bytes of scratch)", bytes);
    return p;
}

static void check_call(const char *op, int64_t count, dist_dtype dt) {
    AIMC_CHECK(g_initialized || g_dist.world == 1, "dist: %s before dist_init", op);
    AIMC_CHECK(count >= 0, "dist: %s of %lld elements", op, (long long)count);
    AIMC_CHECK((unsigned)dt < DIST_DTYPE_COUNT, "dist: %s: bad dtype %d", op, (int)dt);
}

/* ---- allreduce ---- */

/* acc[i] = parts[0][i] + parts[1][i] + ... in rank order. */
static void sum_in_rank_order(void *acc, const void *parts, int64_t n, dist_dtype dt) {
    int world = g_dist.world;
    if (dt == DIST_F32) {
        const float *p = parts;
        float *a = acc;
        for (int64_t i = 0; i < n; i++) a[i] = p[i];
        for (int r = 1; r < world; r++)
            for (int64_t i = 0; i < n; i++) a[i] += p[(int64_t)r * n + i];
    } else if (dt == DIST_F64) {
        const double *p = parts;
        double *a = acc;
        for (int64_t i = 0; i < n; i++) a[i] = p[i];
        for (int r = 1; r < world; r++)
            for (int64_t i = 0; i < n; i++) a[i] += p[(int64_t)r * n + i];
    } else { /* i64, wrapping like two's complement hardware (no UB) */
        const uint64_t *p = parts;
        uint64_t *a = acc;
        for (int64_t i = 0; i < n; i++) a[i] = p[i];
        for (int r = 1; r < world; r++)
            for (int64_t i = 0; i < n; i++) a[i] += p[(int64_t)r * n + i];
    }
}

/* op names the collective in errors ("allreduce", "barrier"). */
static void allreduce_as(const char *op, void *buf, int64_t count, dist_dtype dt, int64_t step) {
    check_call(op, count, dt);
    AIMC_CHECK(dt == DIST_F32 || dt == DIST_F64 || dt == DIST_I64,
               "dist_allreduce_sum: host sums take f32, f64 or i64 (dtype %d)", (int)dt);
    if (g_dist.world == 1) return;
    dist_call_begin(op, step);
    size_t es = dist_dtype_size(dt);
    int64_t chunk = (int64_t)(DIST_CHUNK_BYTES / es);
    size_t *bytes = scratch(sizeof(size_t) * (size_t)g_dist.world);
    int64_t most = count < chunk ? count : chunk;
    void *parts = g_dist.rank == 0 ? scratch((size_t)g_dist.world * (size_t)most * es) : NULL;
    for (int64_t off = 0; off < count; off += chunk) {
        int64_t n = count - off < chunk ? count - off : chunk;
        char *piece = (char *)buf + (size_t)off * es;
        for (int r = 0; r < g_dist.world; r++) bytes[r] = (size_t)n * es;
        gather0(piece, parts, bytes);
        if (g_dist.rank == 0) sum_in_rank_order(piece, parts, n, dt);
        bcast0(piece, (size_t)n * es);
    }
    free(parts);
    free(bytes);
}

void dist_allreduce_sum(void *buf, int64_t count, dist_dtype dt, int64_t step) {
    allreduce_as("allreduce", buf, count, dt, step);
}

/* ---- allgather ---- */

/* Round k of a chunked gather: rank r sends bytes [k*C, min((k+1)*C, total_r)). */
static size_t round_bytes(size_t total, size_t begin) {
    if (total <= begin) return 0;
    return total - begin < DIST_CHUNK_BYTES ? total - begin : DIST_CHUNK_BYTES;
}

/* Every rank's `mine` bytes to rank 0, into recv at offs[r]; chunked so that
 * one round moves at most DIST_CHUNK_BYTES per rank. */
static void gather_slices_to0(const void *mine, void *recv, const size_t *total,
                              const size_t *offs) {
    int world = g_dist.world;
    size_t most = 0;
    for (int r = 0; r < world; r++) most = total[r] > most ? total[r] : most;
    size_t *bytes = scratch(sizeof(size_t) * (size_t)world);
    size_t round = most < DIST_CHUNK_BYTES ? most : DIST_CHUNK_BYTES;
    char *tmp = g_dist.rank == 0 ? scratch((size_t)world * round) : NULL;
    for (size_t begin = 0; begin < most; begin += DIST_CHUNK_BYTES) {
        for (int r = 0; r < world; r++) bytes[r] = round_bytes(total[r], begin);
        gather0((const char *)mine + (bytes[g_dist.rank] ? begin : 0), tmp, bytes);
        if (g_dist.rank != 0) continue;
        size_t at = 0;
        for (int r = 0; r < world; r++) {
            if (bytes[r]) memcpy((char *)recv + offs[r] + begin, tmp + at, bytes[r]);
            at += bytes[r];
        }
    }
    free(tmp);
    free(bytes);
}

static void allgatherv_as(const char *op, const void *send, void *recv, const int64_t *counts,
                          dist_dtype dt, int64_t step) {
    check_call(op, 0, dt);
    int world = g_dist.world, me = g_dist.rank;
    size_t es = dist_dtype_size(dt);
    size_t *total = scratch(sizeof(size_t) * (size_t)world);
    size_t *offs = scratch(sizeof(size_t) * (size_t)world);
    size_t all = 0;
    for (int r = 0; r < world; r++) {
        AIMC_CHECK(counts[r] >= 0, "dist_allgatherv: counts[%d] = %lld", r, (long long)counts[r]);
        total[r] = (size_t)counts[r] * es;
        offs[r] = all;
        all += total[r];
    }
    if (world == 1) {
        if (total[me]) memmove((char *)recv + offs[me], send, total[me]);
    } else {
        dist_call_begin(op, step);
        gather_slices_to0(send, recv, total, offs);
        bcast0(recv, all);
    }
    free(offs);
    free(total);
}

void dist_allgatherv(const void *send, void *recv, const int64_t *counts, dist_dtype dt,
                     int64_t step) {
    allgatherv_as("allgather", send, recv, counts, dt, step);
}

void dist_allgather_counts(int64_t mine, int64_t *counts, int64_t step) {
    int64_t *ones = scratch(sizeof(int64_t) * (size_t)g_dist.world);
    for (int r = 0; r < g_dist.world; r++) ones[r] = 1;
    allgatherv_as("allgather of counts", &mine, counts, ones, DIST_I64, step);
    free(ones);
}

/* ---- broadcast, barrier, agreement ---- */

void dist_broadcast(void *buf, int64_t count, dist_dtype dt, int root, int64_t step) {
    check_call("broadcast", count, dt);
    AIMC_CHECK(root >= 0 && root < g_dist.world, "dist_broadcast: root %d of %d ranks", root,
               g_dist.world);
    if (g_dist.world == 1) return;
    dist_call_begin("broadcast", step);
    size_t bytes = (size_t)count * dist_dtype_size(dt);
    if (root != 0) { /* root -> rank 0 first: a gather where only root has bytes */
        size_t *total = scratch(sizeof(size_t) * (size_t)g_dist.world);
        size_t *offs = scratch(sizeof(size_t) * (size_t)g_dist.world);
        for (int r = 0; r < g_dist.world; r++) {
            total[r] = r == root ? bytes : 0;
            offs[r] = 0;
        }
        gather_slices_to0(buf, buf, total, offs);
        free(offs);
        free(total);
    }
    bcast0(buf, bytes);
}

void dist_barrier(int64_t step) {
    int64_t one = 1;
    if (g_dist.world == 1) return;
    allreduce_as("barrier", &one, 1, DIST_I64, step);
    if (one != g_dist.world) dist_fail(": %lld ranks arrived, expected %d", (long long)one, g_dist.world);
}

int dist_all_ok(int ok, int64_t step, int *first_bad) {
    int world = g_dist.world;
    int64_t mine = ok ? 1 : 0;
    int64_t *all = scratch(sizeof(int64_t) * (size_t)world);
    int64_t *ones = scratch(sizeof(int64_t) * (size_t)world);
    for (int r = 0; r < world; r++) ones[r] = 1;
    allgatherv_as("status check", &mine, all, ones, DIST_I64, step);
    int bad = -1;
    for (int r = world - 1; r >= 0; r--)
        if (!all[r]) bad = r;
    free(ones);
    free(all);
    if (first_bad) *first_bad = bad;
    return bad < 0;
}

/* ---- tensor forms ---- */

static int on_cpu(const tensor *t) { return t->be && !strcmp(t->be->name, "cpu"); }

static dist_dtype tensor_dist_dtype(const tensor *t, const char *what) {
    if (t->dt == DT_F32) return DIST_F32;
    if (t->dt == DT_BF16 && !on_cpu(t)) return DIST_BF16;
    aimc_die("%s: tensors of dtype %s on backend %s are not supported (f32; bf16 on cuda)", what,
             dtype_name(t->dt), t->be ? t->be->name : "none");
}

void dist_allreduce_tensor(tensor *t, int64_t step) {
    dist_dtype dt = tensor_dist_dtype(t, "dist_allreduce_tensor");
    if (on_cpu(t)) dist_allreduce_sum(t->data, tensor_numel(t), dt, step);
    else dist_dev_allreduce_sum(t->data, tensor_numel(t), dt, step);
}

void dist_broadcast_tensor(tensor *t, int root, int64_t step) {
    dist_dtype dt = tensor_dist_dtype(t, "dist_broadcast_tensor");
    if (on_cpu(t)) dist_broadcast(t->data, tensor_numel(t), dt, root, step);
    else dist_dev_broadcast(t->data, tensor_numel(t), dt, root, step);
}

/* ---- device collectives ---- */

#ifdef AIMC_CUDA
int dist_nccl_init(char *err, size_t errlen) {
    if (dist_nccl_is_open()) return 1;
    unsigned char id[128] = {0};
    int ok = dist_nccl_load(err, errlen), bad = -1;
    if (ok && g_dist.rank == 0) ok = dist_nccl_unique_id(id, err, errlen);
    /* every rank learns whether all loaded NCCL and rank 0 got an id, so no
     * rank waits in the broadcast for one that gave up */
    if (!dist_all_ok(ok, DIST_SETUP, &bad)) {
        if (ok && err && errlen) snprintf(err, errlen, "rank %d could not set up NCCL", bad);
        return 0;
    }
    dist_broadcast(id, sizeof id, DIST_BYTE, 0, DIST_SETUP);
    dist_call_begin("nccl init", DIST_SETUP);
    dist_nccl_open(g_dist.rank, g_dist.world, id);
    return 1;
}

int dist_nccl_ready(void) { return dist_nccl_is_open(); }

/* Without a communicator only world 1 works (nothing to exchange). */
static int need_nccl(const char *op) {
    if (dist_nccl_is_open()) return 1;
    if (g_dist.world == 1) return 0;
    aimc_die("%s on device memory with %d ranks needs dist_nccl_init first", op, g_dist.world);
}

void dist_dev_allreduce_sum(void *dev_buf, int64_t count, dist_dtype dt, int64_t step) {
    check_call("allreduce", count, dt);
    if (!need_nccl("allreduce") || count == 0) return;
    dist_call_begin("allreduce", step);
    dist_nccl_allreduce(dev_buf, count, dt);
}

void dist_dev_allgatherv(const void *dev_send, void *dev_recv, const int64_t *counts,
                         dist_dtype dt, int64_t step) {
    check_call("allgather", 0, dt);
    if (!need_nccl("allgather")) {
        size_t off = 0;
        for (int r = 0; r < g_dist.rank; r++) off += (size_t)counts[r] * dist_dtype_size(dt);
        dist_nccl_copy((char *)dev_recv + off, dev_send,
                       (size_t)counts[g_dist.rank] * dist_dtype_size(dt));
        return;
    }
    dist_call_begin("allgather", step);
    dist_nccl_allgatherv(dev_send, dev_recv, counts, dt);
}

void dist_dev_broadcast(void *dev_buf, int64_t count, dist_dtype dt, int root, int64_t step) {
    check_call("broadcast", count, dt);
    if (!need_nccl("broadcast") || count == 0) return;
    dist_call_begin("broadcast", step);
    dist_nccl_broadcast(dev_buf, count, dt, root);
}
#else
int dist_nccl_init(char *err, size_t errlen) {
    if (err && errlen) snprintf(err, errlen, "this aimc was built without CUDA (no NCCL)");
    return 0;
}
int dist_nccl_ready(void) { return 0; }
static void no_cuda(const char *op) __attribute__((noreturn));
static void no_cuda(const char *op) {
    aimc_die("%s on device memory: this aimc was built without CUDA", op);
}
void dist_dev_allreduce_sum(void *dev_buf, int64_t count, dist_dtype dt, int64_t step) {
    (void)dev_buf, (void)count, (void)dt, (void)step;
    no_cuda("dist_dev_allreduce_sum");
}
void dist_dev_allgatherv(const void *dev_send, void *dev_recv, const int64_t *counts,
                         dist_dtype dt, int64_t step) {
    (void)dev_send, (void)dev_recv, (void)counts, (void)dt, (void)step;
    no_cuda("dist_dev_allgatherv");
}
void dist_dev_broadcast(void *dev_buf, int64_t count, dist_dtype dt, int root, int64_t step) {
    (void)dev_buf, (void)count, (void)dt, (void)root, (void)step;
    no_cuda("dist_dev_broadcast");
}
#endif
