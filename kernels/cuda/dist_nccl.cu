/* NCCL for the dist layer: one communicator over every rank, collectives on
 * the cuda backend's stream, every wait bounded by the collective deadline.
 *
 * libnccl.so.2 is opened at run time (dlopen), not linked: a binary built
 * with CUDA runs on machines without NCCL until it asks for a communicator,
 * and the build needs nothing but nccl.h. AIMC_NCCL_LIB names another file.
 *
 * The communicator is non-blocking (ncclConfig_t.blocking = 0): NCCL calls
 * return at once and ncclCommGetAsyncError says when they are done, so init
 * and every collective can be polled against a deadline. On expiry or on an
 * NCCL error the communicator is aborted (ncclCommAbort) before the process
 * exits with the usual one-line error (dist_fail). */
#include "cuda_common.cuh"
#include "../../host/dist_impl.h"
#include <dlfcn.h>
#include <nccl.h>
#include <time.h>

namespace {

struct nccl_api {
    decltype(&ncclGetVersion) GetVersion;
    decltype(&ncclGetUniqueId) GetUniqueId;
    decltype(&ncclCommInitRankConfig) CommInitRankConfig;
    decltype(&ncclCommGetAsyncError) CommGetAsyncError;
    decltype(&ncclCommAbort) CommAbort;
    decltype(&ncclCommFinalize) CommFinalize;
    decltype(&ncclCommDestroy) CommDestroy;
    decltype(&ncclAllReduce) AllReduce;
    decltype(&ncclBroadcast) Broadcast;
    decltype(&ncclGroupStart) GroupStart;
    decltype(&ncclGroupEnd) GroupEnd;
    decltype(&ncclGetErrorString) GetErrorString;
    decltype(&ncclGetLastError) GetLastError;
};

nccl_api g_api;
void *g_lib;
ncclComm_t g_comm;

/* Non-blocking communicators need NCCL 2.14 or newer. */
const int kMinVersion = 21400;

template <typename F> int resolve(F *slot, const char *name, char *err, size_t errlen) {
    *slot = reinterpret_cast<F>(dlsym(g_lib, name));
    if (*slot) return 1;
    snprintf(err, errlen, "NCCL library lacks %s", name);
    return 0;
}

int resolve_all(char *err, size_t n) {
    return resolve(&g_api.GetVersion, "ncclGetVersion", err, n) &&
           resolve(&g_api.GetUniqueId, "ncclGetUniqueId", err, n) &&
           resolve(&g_api.CommInitRankConfig, "ncclCommInitRankConfig", err, n) &&
           resolve(&g_api.CommGetAsyncError, "ncclCommGetAsyncError", err, n) &&
           resolve(&g_api.CommAbort, "ncclCommAbort", err, n) &&
           resolve(&g_api.CommFinalize, "ncclCommFinalize", err, n) &&
           resolve(&g_api.CommDestroy, "ncclCommDestroy", err, n) &&
           resolve(&g_api.AllReduce, "ncclAllReduce", err, n) &&
           resolve(&g_api.Broadcast, "ncclBroadcast", err, n) &&
           resolve(&g_api.GroupStart, "ncclGroupStart", err, n) &&
           resolve(&g_api.GroupEnd, "ncclGroupEnd", err, n) &&
           resolve(&g_api.GetErrorString, "ncclGetErrorString", err, n) &&
           resolve(&g_api.GetLastError, "ncclGetLastError", err, n);
}

ncclDataType_t nccl_type(dist_dtype dt) {
    switch (dt) {
    case DIST_F32: return ncclFloat32;
    case DIST_F64: return ncclFloat64;
    case DIST_I64: return ncclInt64;
    case DIST_BF16: return ncclBfloat16;
    case DIST_BYTE: return ncclUint8;
    default: aimc_fail_at(__FILE__, __LINE__, "dist: bad dtype %d for NCCL", (int)dt);
    }
}

void nap(void) {
    struct timespec ts = {0, 100000}; /* 0.1 ms */
    nanosleep(&ts, NULL);
}

__attribute__((noreturn)) void fail_nccl(const char *what, ncclResult_t r) {
    const char *last = g_comm ? g_api.GetLastError(g_comm) : NULL;
    dist_fail(": %s failed: %s%s%s", what, g_api.GetErrorString(r), last && *last ? ": " : "",
              last ? last : "");
}

/* Polls the communicator until its pending calls (init, a group) are done. */
void wait_comm(const char *what) {
    for (;;) {
        ncclResult_t state = ncclInProgress;
        ncclResult_t r = g_api.CommGetAsyncError(g_comm, &state);
        if (r != ncclSuccess) fail_nccl("ncclCommGetAsyncError", r);
        if (state == ncclSuccess) return;
        if (state != ncclInProgress) fail_nccl(what, state);
        if (dist_call_left() <= 0)
            dist_fail(" timed out after %g s in %s (another rank stopped, or never started)",
                      g_dist_call.deadline - g_dist_call.start, what);
        nap();
    }
}

/* A non-blocking NCCL call: ncclInProgress means "poll until done". */
void nccl_call(ncclResult_t r, const char *what) {
    if (r == ncclInProgress) wait_comm(what);
    else if (r != ncclSuccess) fail_nccl(what, r);
}

/* Waits for the work queued on the backend stream (the collective and
 * whatever was queued before it), watching the communicator for errors. */
void wait_stream(const char *what) {
    cudaStream_t s = cuda_stream();
    for (;;) {
        cudaError_t e = cudaStreamQuery(s);
        if (e == cudaSuccess) return;
        if (e != cudaErrorNotReady)
            dist_fail(": CUDA error while waiting for %s: %s", what, cudaGetErrorString(e));
        ncclResult_t state = ncclSuccess;
        g_api.CommGetAsyncError(g_comm, &state);
        if (state != ncclSuccess && state != ncclInProgress) fail_nccl(what, state);
        if (dist_call_left() <= 0)
            dist_fail(" timed out after %g s in %s (another rank stopped or is stuck)",
                      g_dist_call.deadline - g_dist_call.start, what);
        nap();
    }
}

} // namespace

extern "C" int dist_nccl_load(char *err, size_t errlen) {
    if (g_lib) return 1;
    const char *path = getenv("AIMC_NCCL_LIB");
    g_lib = dlopen(path && *path ? path : "libnccl.so.2", RTLD_NOW | RTLD_LOCAL);
    if (!g_lib && !(path && *path)) g_lib = dlopen("libnccl.so", RTLD_NOW | RTLD_LOCAL);
    if (!g_lib) {
        snprintf(err, errlen, "cannot load NCCL (%s): %s", path && *path ? path : "libnccl.so.2",
                 dlerror());
        return 0;
    }
    int version = 0;
    if (!resolve_all(err, errlen) || g_api.GetVersion(&version) != ncclSuccess) goto fail;
    if (version < kMinVersion) {
        snprintf(err, errlen, "NCCL %d is too old: aimc needs 2.14 or newer", version);
        goto fail;
    }
    return 1;
fail:
    dlclose(g_lib);
    g_lib = NULL;
    return 0;
}

extern "C" int dist_nccl_unique_id(unsigned char id[128], char *err, size_t errlen) {
    static_assert(sizeof(ncclUniqueId) == 128, "ncclUniqueId is 128 bytes");
    ncclUniqueId uid;
    ncclResult_t r = g_api.GetUniqueId(&uid);
    if (r != ncclSuccess) {
        snprintf(err, errlen, "ncclGetUniqueId failed: %s", g_api.GetErrorString(r));
        return 0;
    }
    memcpy(id, &uid, sizeof uid);
    return 1;
}

extern "C" void dist_nccl_open(int rank, int world, const unsigned char id[128]) {
    ncclUniqueId uid;
    memcpy(&uid, id, sizeof uid);
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    ncclResult_t r = g_api.CommInitRankConfig(&g_comm, world, uid, rank, &config);
    if (r != ncclSuccess && r != ncclInProgress) {
        g_comm = NULL;
        fail_nccl("ncclCommInitRankConfig", r);
    }
    wait_comm("ncclCommInitRankConfig");
}

extern "C" int dist_nccl_is_open(void) { return g_comm != NULL; }

extern "C" void dist_nccl_allreduce(void *buf, int64_t count, dist_dtype dt) {
    AIMC_CHECK(dt != DIST_BYTE, "dist: NCCL sums take f32, f64, i64 or bf16");
    nccl_call(g_api.AllReduce(buf, buf, (size_t)count, nccl_type(dt), ncclSum, g_comm, cuda_stream()),
              "ncclAllReduce");
    wait_stream("ncclAllReduce");
}

extern "C" void dist_nccl_allgatherv(const void *send, void *recv, const int64_t *counts,
                                     dist_dtype dt) {
    size_t es = dist_dtype_size(dt), off = 0;
    nccl_call(g_api.GroupStart(), "ncclGroupStart");
    for (int r = 0; r < g_dist.world; r++) {
        if (counts[r] > 0)
            nccl_call(g_api.Broadcast(send, (char *)recv + off, (size_t)counts[r], nccl_type(dt), r,
                                      g_comm, cuda_stream()),
                      "ncclBroadcast");
        off += (size_t)counts[r] * es;
    }
    nccl_call(g_api.GroupEnd(), "ncclGroupEnd (allgather)");
    wait_stream("allgather (grouped ncclBroadcast)");
}

extern "C" void dist_nccl_broadcast(void *buf, int64_t count, dist_dtype dt, int root) {
    nccl_call(g_api.Broadcast(buf, buf, (size_t)count, nccl_type(dt), root, g_comm, cuda_stream()),
              "ncclBroadcast");
    wait_stream("ncclBroadcast");
}

extern "C" void dist_nccl_copy(void *dst, const void *src, size_t bytes) {
    if (bytes && dst != src)
        CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, cuda_stream()));
}

extern "C" void dist_nccl_abort(void) {
    if (!g_comm) return;
    ncclComm_t c = g_comm;
    g_comm = NULL; /* a failure inside the abort must not abort again */
    g_api.CommAbort(c);
}

extern "C" void dist_nccl_close(void) {
    if (!g_comm) return;
    dist_call_begin("nccl finalize", DIST_SETUP);
    nccl_call(g_api.CommFinalize(g_comm), "ncclCommFinalize");
    wait_comm("ncclCommFinalize");
    g_api.CommDestroy(g_comm);
    g_comm = NULL;
}
