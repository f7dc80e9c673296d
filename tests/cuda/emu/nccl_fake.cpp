/* cuda-emu's NCCL: libnccl-emu.so, which an emulated aimc opens through
 * AIMC_NCCL_LIB, so that multi-rank runs on the emulator take the same NCCL
 * path (kernels/cuda/dist_nccl.cu) as on GPUs. Ranks are processes on one
 * machine; device memory is host memory, so collectives move bytes over
 * loopback TCP in a star around rank 0:
 *  - ncclGetUniqueId (rank 0's process) listens on 127.0.0.1 and puts the
 *    port in the id; ncclCommInitRankConfig connects the other ranks to it;
 *  - ncclAllReduce (sum): rank 0 adds the other ranks' buffers in rank
 *    order and sends the result back; ncclBroadcast: the root's buffer goes
 *    through rank 0 to everyone;
 *  - between ncclGroupStart and ncclGroupEnd the calls are queued and run
 *    in order at the end (every rank queues the same calls).
 * Everything completes before the call returns (a non-blocking
 * communicator may do that); a lost peer or a timeout (AIMC_EMU_NCCL_TIMEOUT
 * seconds, default 120) is ncclRemoteError with a message for
 * ncclGetLastError. As with real NCCL, `send` may equal `recv`, and a
 * broadcast reads `send` only on its root. */
#include "include/nccl.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <vector>

namespace {

const char kMagic[16] = "aimc-emu-nccl";
enum { MAX_RANKS = 64 };

struct comm_state {
    int rank, nranks;
    int fds[MAX_RANKS]; /* rank 0: one per peer; others: fds[0] to rank 0 */
    ncclResult_t error;
    char last[256];
};

struct pending { /* a collective queued inside a group */
    bool allreduce;
    const void *send;
    void *recv;
    size_t count;
    ncclDataType_t type;
    int root;
    comm_state *comm;
};

int g_listen_fd = -1; /* opened by ncclGetUniqueId in rank 0's process */
int g_group_depth;
std::vector<pending> g_group;

int timeout_ms(void) {
    const char *s = getenv("AIMC_EMU_NCCL_TIMEOUT");
    int sec = s && *s ? atoi(s) : 120;
    return (sec > 0 ? sec : 120) * 1000;
}

ncclResult_t fail(comm_state *c, const char *what) {
    c->error = ncclRemoteError;
    snprintf(c->last, sizeof c->last, "emulated NCCL, rank %d: %s (%s)", c->rank, what,
             errno ? strerror(errno) : "peer closed the connection");
    return ncclRemoteError;
}

/* Waits until fd is readable / writable, within the timeout. */
bool wait_fd(int fd, short events) {
    struct pollfd p = {fd, events, 0};
    return poll(&p, 1, timeout_ms()) == 1;
}

bool send_all(int fd, const void *buf, size_t n) {
    const char *p = (const char *)buf;
    while (n > 0) {
        if (!wait_fd(fd, POLLOUT)) return false;
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k <= 0) return false;
        p += k, n -= (size_t)k;
    }
    return true;
}

bool recv_all(int fd, void *buf, size_t n) {
    char *p = (char *)buf;
    errno = 0;
    while (n > 0) {
        if (!wait_fd(fd, POLLIN)) return false;
        ssize_t k = recv(fd, p, n, 0);
        if (k <= 0) return false;
        p += k, n -= (size_t)k;
    }
    return true;
}

size_t type_size(ncclDataType_t t) {
    switch (t) {
    case ncclUint8: return 1;
    case ncclBfloat16: return 2;
    case ncclFloat32: return 4;
    default: return 8;
    }
}

float bf16_to_f32(uint16_t b) {
    uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* NaN */
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

/* acc[i] += x[i] in the collective's type. */
void add_into(void *acc, const void *x, size_t count, ncclDataType_t t) {
    for (size_t i = 0; i < count; i++) switch (t) {
        case ncclFloat32: ((float *)acc)[i] += ((const float *)x)[i]; break;
        case ncclFloat64: ((double *)acc)[i] += ((const double *)x)[i]; break;
        case ncclInt64: ((int64_t *)acc)[i] += ((const int64_t *)x)[i]; break;
        case ncclBfloat16:
            ((uint16_t *)acc)[i] = f32_to_bf16(bf16_to_f32(((uint16_t *)acc)[i]) +
                                               bf16_to_f32(((const uint16_t *)x)[i]));
            break;
        default: ((uint8_t *)acc)[i] += ((const uint8_t *)x)[i]; break;
        }
}

ncclResult_t run_allreduce(const pending &p) {
    comm_state *c = p.comm;
    size_t bytes = p.count * type_size(p.type);
    if (c->rank != 0) {
        if (!send_all(c->fds[0], p.send, bytes)) return fail(c, "allreduce: sending to rank 0");
        if (!recv_all(c->fds[0], p.recv, bytes)) return fail(c, "allreduce: receiving the sum");
        return ncclSuccess;
    }
    if (p.recv != p.send) memmove(p.recv, p.send, bytes);
    std::vector<char> peer(bytes);
    for (int r = 1; r < c->nranks; r++) {
        if (!recv_all(c->fds[r], peer.data(), bytes)) return fail(c, "allreduce: receiving a rank's buffer");
        add_into(p.recv, peer.data(), p.count, p.type);
    }
    for (int r = 1; r < c->nranks; r++)
        if (!send_all(c->fds[r], p.recv, bytes)) return fail(c, "allreduce: sending the sum");
    return ncclSuccess;
}

ncclResult_t run_broadcast(const pending &p) {
    comm_state *c = p.comm;
    size_t bytes = p.count * type_size(p.type);
    if (c->rank == p.root && p.recv != p.send) memmove(p.recv, p.send, bytes);
    if (c->rank != 0) {
        if (c->rank == p.root && p.root != 0 && !send_all(c->fds[0], p.recv, bytes))
            return fail(c, "broadcast: sending to rank 0");
        if (c->rank != p.root && !recv_all(c->fds[0], p.recv, bytes))
            return fail(c, "broadcast: receiving");
        return ncclSuccess;
    }
    if (p.root != 0 && !recv_all(c->fds[p.root], p.recv, bytes))
        return fail(c, "broadcast: receiving from the root");
    for (int r = 1; r < c->nranks; r++)
        if (r != p.root && !send_all(c->fds[r], p.recv, bytes))
            return fail(c, "broadcast: sending");
    return ncclSuccess;
}

ncclResult_t submit(const pending &p) {
    if (!p.comm || p.count > ((size_t)1 << 40)) return ncclInvalidArgument;
    if (p.comm->error != ncclSuccess) return p.comm->error;
    if (g_group_depth > 0) {
        g_group.push_back(p);
        return ncclSuccess;
    }
    return p.allreduce ? run_allreduce(p) : run_broadcast(p);
}

struct id_blob {
    char magic[16];
    uint16_t port;
};

/* Rank 0: accepts the other ranks, each of which says who it is. */
ncclResult_t accept_peers(comm_state *c) {
    if (g_listen_fd < 0) return ncclInvalidUsage; /* rank 0 must be the id's maker */
    for (int got = 1; got < c->nranks; got++) {
        if (!wait_fd(g_listen_fd, POLLIN)) return fail(c, "init: waiting for the other ranks");
        int fd = accept(g_listen_fd, NULL, NULL);
        int32_t r = -1;
        if (fd < 0 || !recv_all(fd, &r, sizeof r) || r <= 0 || r >= c->nranks || c->fds[r] >= 0)
            return fail(c, "init: a peer sent no valid rank");
        c->fds[r] = fd;
    }
    close(g_listen_fd);
    g_listen_fd = -1;
    return ncclSuccess;
}

/* Other ranks: connect to rank 0 (retrying while it starts) and say who. */
ncclResult_t connect_root(comm_state *c, uint16_t port) {
    struct sockaddr_in a = {};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0) {
            int32_t r = c->rank;
            c->fds[0] = fd;
            return send_all(fd, &r, sizeof r) ? ncclSuccess : fail(c, "init: sending the rank");
        }
        if (fd >= 0) close(fd);
        clock_gettime(CLOCK_MONOTONIC, &now);
        if ((now.tv_sec - t0.tv_sec) * 1000 > timeout_ms()) return fail(c, "init: connecting to rank 0");
        usleep(10000);
    }
}

} // namespace

extern "C" {

ncclResult_t ncclGetVersion(int *version) {
    *version = 22000; /* "2.20": new enough for non-blocking communicators */
    return ncclSuccess;
}

ncclResult_t ncclGetUniqueId(ncclUniqueId *id) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) || listen(fd, MAX_RANKS) ||
        getsockname(fd, (struct sockaddr *)&a, &len)) {
        if (fd >= 0) close(fd);
        return ncclSystemError;
    }
    if (g_listen_fd >= 0) close(g_listen_fd);
    g_listen_fd = fd;
    id_blob blob = {};
    memcpy(blob.magic, kMagic, sizeof kMagic);
    blob.port = ntohs(a.sin_port);
    memset(id, 0, sizeof *id);
    memcpy(id->internal, &blob, sizeof blob);
    return ncclSuccess;
}

ncclResult_t ncclCommInitRankConfig(ncclComm_t *comm, int nranks, ncclUniqueId id, int rank,
                                    ncclConfig_t *config) {
    (void)config;
    id_blob blob;
    memcpy(&blob, id.internal, sizeof blob);
    if (memcmp(blob.magic, kMagic, sizeof kMagic) || nranks < 1 || nranks > MAX_RANKS ||
        rank < 0 || rank >= nranks)
        return ncclInvalidArgument;
    comm_state *c = new comm_state();
    c->rank = rank, c->nranks = nranks, c->error = ncclSuccess;
    for (int &fd : c->fds) fd = -1;
    ncclResult_t r = rank == 0 ? accept_peers(c) : connect_root(c, blob.port);
    *comm = (ncclComm_t)c;
    return r;
}

ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t *state) {
    if (!comm) return ncclInvalidArgument;
    *state = ((comm_state *)comm)->error;
    return ncclSuccess;
}

ncclResult_t ncclCommDestroy(ncclComm_t comm) {
    comm_state *c = (comm_state *)comm;
    if (!c) return ncclInvalidArgument;
    for (int fd : c->fds)
        if (fd >= 0) close(fd);
    delete c;
    return ncclSuccess;
}

ncclResult_t ncclCommAbort(ncclComm_t comm) { return ncclCommDestroy(comm); }
ncclResult_t ncclCommFinalize(ncclComm_t comm) { return comm ? ncclSuccess : ncclInvalidArgument; }

ncclResult_t ncclAllReduce(const void *send, void *recv, size_t count, ncclDataType_t type,
                           ncclRedOp_t op, ncclComm_t comm, cudaStream_t stream) {
    (void)stream;
    if (op != ncclSum) return ncclInvalidArgument;
    return submit({true, send, recv, count, type, 0, (comm_state *)comm});
}

ncclResult_t ncclBroadcast(const void *send, void *recv, size_t count, ncclDataType_t type,
                           int root, ncclComm_t comm, cudaStream_t stream) {
    (void)stream;
    comm_state *c = (comm_state *)comm;
    if (!c || root < 0 || root >= c->nranks) return ncclInvalidArgument;
    return submit({false, send, recv, count, type, root, c});
}

ncclResult_t ncclGroupStart(void) {
    g_group_depth++;
    return ncclSuccess;
}

ncclResult_t ncclGroupEnd(void) {
    if (g_group_depth == 0) return ncclInvalidUsage;
    if (--g_group_depth > 0) return ncclSuccess;
    std::vector<pending> calls;
    calls.swap(g_group);
    for (const pending &p : calls) {
        ncclResult_t r = p.allreduce ? run_allreduce(p) : run_broadcast(p);
        if (r != ncclSuccess) return r;
    }
    return ncclSuccess;
}

const char *ncclGetErrorString(ncclResult_t result) {
    switch (result) {
    case ncclSuccess: return "no error";
    case ncclSystemError: return "unhandled system error";
    case ncclInternalError: return "internal error";
    case ncclInvalidArgument: return "invalid argument";
    case ncclInvalidUsage: return "invalid usage";
    case ncclRemoteError: return "remote process exited or there was a network error";
    case ncclInProgress: return "NCCL operation in progress";
    }
    return "unknown result code";
}

const char *ncclGetLastError(ncclComm_t comm) { return comm ? ((comm_state *)comm)->last : ""; }

} /* extern "C" */
