/* Data parallelism: which process am I, and collectives between processes.
 *
 * dist_init detects how the ranks were launched (docs/distributed.md):
 *   mpirun            OMPI_COMM_WORLD_{RANK,SIZE,LOCAL_RANK}  -> MPI
 *   env variables     RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT
 *                     (torchrun style, no MPI)                 -> TCP (star on rank 0)
 *   Slurm srun        SLURM_PROCID, SLURM_STEP_NUM_TASKS, SLURM_LOCALID:
 *                     with PMI(x) (srun --mpi=pmix)            -> MPI,
 *                     else with MASTER_ADDR/MASTER_PORT set    -> TCP
 *   nothing           one process                              -> local (no-op)
 *
 * Host collectives (this file's dist_* on host memory) run on MPI or TCP.
 * Every one is a "star": rank 0 gathers, works in rank order, sends the
 * result to every rank. So allreduce_sum is deterministic: the result is
 * ((x0 + x1) + x2) + ... element by element, bitwise the same on every rank,
 * for every transport and every run.
 *
 * Device collectives (dist_dev_*, CUDA builds) run on NCCL, whose unique id
 * travels over the host transport.
 *
 * Failure: every collective has a deadline: timeout_s on rank 0, plus a
 * grace of a quarter of it (at most 30 s) on the other ranks, so that rank 0,
 * which knows who is missing, reports first. On expiry, on a peer's death,
 * or when ranks disagree on which collective comes next, the rank prints one
 * line
 *   aimc: error: rank 0/2: allreduce at step 17 timed out after 5 s waiting for rank 1
 * and exits with status 1 (MPI: MPI_Abort, which ends every rank); over TCP
 * the peers learn of it at once (abort notice or closed socket) and stop the
 * same way, quoting that line. No collective waits past its deadline.
 *
 * `step` names the training step in error messages; pass DIST_SETUP (-1)
 * outside the step loop. Counts are in elements. Every rank must call the
 * same collectives in the same order with the same counts. */
#ifndef AIMC_DIST_H
#define AIMC_DIST_H
#include <stddef.h>
#include <stdint.h>
#include "../kernels/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DIST_SETUP (-1)
#define DIST_DEFAULT_TIMEOUT_S 300.0

typedef enum { DIST_F32 = 0, DIST_F64, DIST_I64, DIST_BYTE, DIST_BF16, DIST_DTYPE_COUNT } dist_dtype;

typedef enum { DIST_LAUNCH_SINGLE = 0, DIST_LAUNCH_MPIRUN, DIST_LAUNCH_SLURM, DIST_LAUNCH_ENV } dist_launcher;
typedef enum { DIST_LOCAL = 0, DIST_MPI, DIST_TCP } dist_transport;

typedef struct dist_opts {
    double timeout_s;         /* deadline of every collective; <= 0: $AIMC_DIST_TIMEOUT or 300 */
    double connect_timeout_s; /* TCP rendezvous deadline; <= 0: same as timeout_s */
    int quiet;                /* 1: no start line */
} dist_opts;

typedef struct dist_info {
    int rank, world, local_rank;
    dist_launcher launcher;
    dist_transport transport;
    double timeout_s;
} dist_info;

/* Detects the launcher, joins the other ranks and (unless quiet) prints one
 * line from rank 0. opts may be NULL. A bad launch environment (RANK without
 * WORLD_SIZE, rank out of range, unreachable MASTER_ADDR, ...) is a one-line
 * error. Calling it twice is an error. */
void dist_init(const dist_opts *opts);
/* Leaves cleanly (NCCL communicator freed, sockets closed, MPI_Finalize).
 * Call it before a successful exit: under mpirun a rank that exits without
 * it counts as failed. It is deliberately not an atexit handler, so a rank
 * that stops on an error (exit(1)) never blocks in MPI_Finalize. */
void dist_finalize(void);

int dist_rank(void);
int dist_world(void);
int dist_local_rank(void);
const dist_info *dist_get_info(void);
const char *dist_launcher_name(dist_launcher l);
const char *dist_transport_name(dist_transport t);
size_t dist_dtype_size(dist_dtype dt);
/* Sets the deadline of every later collective (tests use a few seconds). */
void dist_set_timeout(double seconds);

/* ---- host collectives (f32, f64, i64; DIST_BYTE for copies only) ---- */

/* buf[i] = sum over ranks in rank order, on every rank (not DIST_BYTE/BF16). */
void dist_allreduce_sum(void *buf, int64_t count, dist_dtype dt, int64_t step);
/* recv = concatenation of every rank's send in rank order; counts[r] is rank
 * r's element count, the same array on every rank; recv holds sum(counts)
 * elements. */
void dist_allgatherv(const void *send, void *recv, const int64_t *counts, dist_dtype dt,
                     int64_t step);
/* counts[r] = rank r's `mine` (sizes recv for dist_allgatherv). */
void dist_allgather_counts(int64_t mine, int64_t *counts, int64_t step);
/* buf on every rank = buf on root. */
void dist_broadcast(void *buf, int64_t count, dist_dtype dt, int root, int64_t step);
void dist_barrier(int64_t step);
/* Every rank says whether its step went well; returns 1 when every rank is
 * ok, else 0 with *first_bad (may be NULL) = the lowest failing rank. */
int dist_all_ok(int ok, int64_t step, int *first_bad);

/* Tensor forms: f32 tensors on the cpu backend go through the host
 * collectives; tensors on the cuda backend through NCCL (dist_dev_*). */
void dist_allreduce_tensor(tensor *t, int64_t step);
void dist_broadcast_tensor(tensor *t, int root, int64_t step);

/* ---- device collectives (CUDA builds; NCCL loaded at run time) ---- */

/* Creates the NCCL communicator on the current CUDA device (the cuda backend
 * must already be initialised on LOCAL_RANK's GPU): rank 0's ncclUniqueId
 * goes to every rank over the host transport; ncclCommInitRank runs
 * non-blocking under the collective deadline. Returns 0 with the reason in
 * err when NCCL cannot be used (no CUDA build, libnccl.so.2 missing, ...). */
int dist_nccl_init(char *err, size_t errlen);
int dist_nccl_ready(void);
/* Queued on the cuda backend's stream, then waited for under the deadline
 * (ncclCommGetAsyncError polling; ncclCommAbort + exit on expiry or error).
 * dt: f32, f64, i64, bf16 (sum), or byte (copies). */
void dist_dev_allreduce_sum(void *dev_buf, int64_t count, dist_dtype dt, int64_t step);
/* Variable counts: one grouped ncclBroadcast per rank into its slice. */
void dist_dev_allgatherv(const void *dev_send, void *dev_recv, const int64_t *counts,
                         dist_dtype dt, int64_t step);
void dist_dev_broadcast(void *dev_buf, int64_t count, dist_dtype dt, int root, int64_t step);

#ifdef __cplusplus
}
#endif
#endif
