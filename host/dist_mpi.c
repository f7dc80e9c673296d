/* The MPI transport (mpirun, srun --mpi=pmix): the same star as the TCP
 * transport, built from non-blocking point-to-point messages, so that
 *  - the result does not depend on MPI's reduction order (rank 0 sums in
 *    rank order, as over TCP: both transports give the same bits);
 *  - every wait polls MPI_Test against the collective's deadline and, on
 *    expiry, names the rank it was waiting for before MPI_Abort ends the
 *    whole job (a blocking MPI call would hang forever instead).
 * Errors come back as codes (MPI_ERRORS_RETURN) and become one-line errors.
 * Built only when mpi.h is found (the Makefile adds pkg-config ompi-c). */
#include "dist_impl.h"
#include "../kernels/check.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#if defined(__has_include)
#if __has_include(<mpi.h>)
#define AIMC_HAVE_MPI 1
#endif
#endif

#ifdef AIMC_HAVE_MPI
#include <mpi.h>

enum { TAG_GATHER = 101, TAG_BCAST = 102 };

int dist_mpi_built(void) { return 1; }

static void check_mpi(int rc, const char *what) {
    if (rc == MPI_SUCCESS) return;
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, text, &len);
    dist_fail(": %s failed: %s", what, text);
}

void dist_mpi_init(void) {
    int provided = 0, rank = 0, world = 0;
    /* FUNNELED: OpenMP threads compute, only the main thread calls MPI. */
    if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        aimc_die("MPI_Init failed (launched by %s)", dist_launcher_name(g_dist.launcher));
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    if (rank != g_dist.rank || world != g_dist.world)
        aimc_die("MPI says rank %d of %d but the launcher's environment says rank %d of %d",
                 rank, world, g_dist.rank, g_dist.world);
}

static void pause_briefly(void) {
    struct timespec ts = {0, 200000}; /* 0.2 ms */
    nanosleep(&ts, NULL);
}

/* Polls every request until all are done. peers[i] is the rank request i
 * talks to; on expiry the first unfinished one is named. Spins for the
 * first 0.1 s (MPI only progresses inside MPI calls), then sleeps between
 * polls so a rank waiting for a slow peer does not burn a core. */
static void wait_all(MPI_Request *reqs, const int *peers, int n) {
    double spin_until = aimc_now() + 0.1;
    for (;;) {
        int pending = -1;
        for (int i = 0; i < n; i++) {
            if (reqs[i] == MPI_REQUEST_NULL) continue;
            int done = 0;
            check_mpi(MPI_Test(&reqs[i], &done, MPI_STATUS_IGNORE), "MPI_Test");
            if (!done && pending < 0) pending = i;
        }
        if (pending < 0) return;
        if (dist_call_left() <= 0) dist_fail_timeout(peers[pending]);
        if (aimc_now() > spin_until) pause_briefly();
    }
}

static int as_int(size_t bytes) {
    AIMC_CHECK(bytes <= (size_t)INT32_MAX, "dist: MPI message of %zu bytes", bytes);
    return (int)bytes;
}

void dist_mpi_gather0(const void *send, void *recv, const size_t *bytes) {
    int world = g_dist.world, me = g_dist.rank;
    MPI_Request *reqs = malloc(sizeof(MPI_Request) * (size_t)world);
    int *peers = malloc(sizeof(int) * (size_t)world);
    AIMC_CHECK(reqs && peers, "out of memory");
    int n = 0;
    if (me != 0) {
        peers[n] = 0;
        check_mpi(MPI_Isend(send, as_int(bytes[me]), MPI_BYTE, 0, TAG_GATHER, MPI_COMM_WORLD,
                            &reqs[n++]), "MPI_Isend");
    } else {
        size_t off = bytes[0];
        if (bytes[0]) memmove(recv, send, bytes[0]);
        for (int r = 1; r < world; r++) {
            peers[n] = r;
            check_mpi(MPI_Irecv((char *)recv + off, as_int(bytes[r]), MPI_BYTE, r, TAG_GATHER,
                                MPI_COMM_WORLD, &reqs[n++]), "MPI_Irecv");
            off += bytes[r];
        }
    }
    wait_all(reqs, peers, n);
    free(peers);
    free(reqs);
}

void dist_mpi_bcast0(void *buf, size_t bytes) {
    int world = g_dist.world;
    MPI_Request *reqs = malloc(sizeof(MPI_Request) * (size_t)world);
    int *peers = malloc(sizeof(int) * (size_t)world);
    AIMC_CHECK(reqs && peers, "out of memory");
    int n = 0;
    if (g_dist.rank != 0) {
        peers[n] = 0;
        check_mpi(MPI_Irecv(buf, as_int(bytes), MPI_BYTE, 0, TAG_BCAST, MPI_COMM_WORLD, &reqs[n++]),
                  "MPI_Irecv");
    } else {
        for (int r = 1; r < world; r++) {
            peers[n] = r;
            check_mpi(MPI_Isend(buf, as_int(bytes), MPI_BYTE, r, TAG_BCAST, MPI_COMM_WORLD,
                                &reqs[n++]), "MPI_Isend");
        }
    }
    wait_all(reqs, peers, n);
    free(peers);
    free(reqs);
}

void dist_mpi_abort(void) {
    MPI_Abort(MPI_COMM_WORLD, 1);
    _exit(1);
}

void dist_mpi_finalize(void) { MPI_Finalize(); }

#else /* no MPI in this build: the launcher check stops before these run */

int dist_mpi_built(void) { return 0; }
void dist_mpi_init(void) { AIMC_CHECK(0, "built without MPI"); }
void dist_mpi_gather0(const void *send, void *recv, const size_t *bytes) {
    (void)send, (void)recv, (void)bytes;
    AIMC_CHECK(0, "built without MPI");
}
void dist_mpi_bcast0(void *buf, size_t bytes) {
    (void)buf, (void)bytes;
    AIMC_CHECK(0, "built without MPI");
}
void dist_mpi_abort(void) { _exit(1); }
void dist_mpi_finalize(void) {}
#endif
