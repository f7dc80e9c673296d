/* Internals shared by dist.c (launch, collectives), dist_tcp.c (TCP store
 * and star transport), dist_mpi.c (MPI transport) and, in CUDA builds,
 * kernels/cuda/dist_nccl.cu. Not for use outside the dist layer. */
#ifndef AIMC_DIST_IMPL_H
#define AIMC_DIST_IMPL_H
#include "dist.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The collective in progress: names it in errors and holds its deadline. */
typedef struct dist_call {
    const char *op; /* "allreduce", "broadcast", ... */
    int64_t step;   /* DIST_SETUP outside the step loop */
    double start, deadline; /* aimc_now() seconds */
} dist_call;

extern dist_info g_dist;      /* rank, world, transport, timeout */
extern dist_call g_dist_call; /* the current collective */

/* Monotonic clock in seconds. */
/* Starts a collective: records op and step, deadline = now + timeout. */
void dist_call_begin(const char *op, int64_t step);
/* Seconds left before the current deadline (<= 0: expired). */
double dist_call_left(void);
/* "rank 1/2: allreduce at step 17" (or "... during setup") into buf. */
const char *dist_call_prefix(char *buf, size_t n);
/* Prints "aimc: error: <prefix><tail>" (tail is formatted, e.g. " timed out
 * after 5 s waiting for rank 0"), tells the peers (TCP abort notice, NCCL
 * abort, MPI_Abort) and exits with status 1. */
void dist_fail(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
/* The standard timeout tail: " timed out after T s waiting for rank R". */
void dist_fail_timeout(int peer) __attribute__((noreturn));

/* ---- TCP (dist_tcp.c) ---- */
/* Rank 0 listens on addr:port, the others connect (retrying until the
 * connect deadline); every rank sends its rank, world size and host name.
 * When *local_rank < 0 it is derived from the host names (rank order). */
void dist_tcp_connect(const char *addr, const char *port, double connect_timeout_s,
                      int *local_rank);
/* Rank 0 receives bytes[r] bytes from every rank r into recv (rank order,
 * its own included); other ranks send `send` (their bytes[rank] bytes). */
void dist_tcp_gather0(const void *send, void *recv, const size_t *bytes);
/* Every rank's buf = rank 0's buf. */
void dist_tcp_bcast0(void *buf, size_t bytes);
/* Best effort: tells the peers this rank is stopping, with the reason. */
void dist_tcp_notify_abort(const char *reason);
void dist_tcp_close(void);

/* ---- MPI (dist_mpi.c) ---- */
int dist_mpi_built(void); /* 1 when this build links MPI */
/* MPI_Init; rank and world from MPI_COMM_WORLD (checked against the env). */
void dist_mpi_init(void);
void dist_mpi_gather0(const void *send, void *recv, const size_t *bytes);
void dist_mpi_bcast0(void *buf, size_t bytes);
void dist_mpi_abort(void) __attribute__((noreturn));
void dist_mpi_finalize(void);

/* ---- NCCL (kernels/cuda/dist_nccl.cu, CUDA builds only) ---- */
/* dlopen libnccl.so.2 and resolve the calls; 0 with the reason on failure. */
int dist_nccl_load(char *err, size_t errlen);
int dist_nccl_unique_id(unsigned char id[128], char *err, size_t errlen);
/* ncclCommInitRankConfig (non-blocking) on the current device, waited for
 * under the current deadline. */
void dist_nccl_open(int rank, int world, const unsigned char id[128]);
int dist_nccl_is_open(void);
void dist_nccl_allreduce(void *buf, int64_t count, dist_dtype dt);
void dist_nccl_allgatherv(const void *send, void *recv, const int64_t *counts, dist_dtype dt);
void dist_nccl_broadcast(void *buf, int64_t count, dist_dtype dt, int root);
/* Device copy on the backend stream (world-1 allgather without NCCL). */
void dist_nccl_copy(void *dst, const void *src, size_t bytes);
void dist_nccl_abort(void);
void dist_nccl_close(void);

#ifdef __cplusplus
}
#endif
#endif
