/* The cuda backend: memory on one GPU (below: which), one non-blocking
 * stream that every op is queued on (so ops run in call order and need no
 * other synchronisation), the cuBLASLt handle and workspace, and the
 * assembly of the op table from the op-family files.
 *
 * Host <-> device copies synchronise the stream before returning, so the
 * host buffer may be reused at once and downloaded data is complete.
 * Temporaries inside ops come from the stream-ordered allocator
 * (cudaMallocAsync) with a pool that keeps its memory, so they cost no
 * device-wide synchronisation after the first use.
 *
 * Which GPU (among those CUDA_VISIBLE_DEVICES leaves visible): the index in
 * the environment variable AIMC_CUDA_DEVICE when it is set, else LOCAL_RANK
 * (torchrun-style launchers), else 0; taken modulo the number of visible
 * devices, so that the local ranks of a node spread over its GPUs. The
 * trainer sets AIMC_CUDA_DEVICE to the dist layer's local rank (which it also
 * knows for mpirun, srun and host-name rendezvous) before the first call.
 * The device is selected with cudaSetDevice on the calling thread: every
 * backend call must come from that thread (aimc's main thread). Narrowing
 * CUDA_VISIBLE_DEVICES per process instead would hide the other ranks' GPUs
 * from this process and keep NCCL from using CUDA IPC between them. */
#include "cuda_common.cuh"
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>

static cudaStream_t g_stream;
static int g_sm_count;
static size_t g_smem_optin;
static int *g_error_flag; /* device word, see cuda_error_flag */
static cublasLtHandle_t g_lt;
static void *g_lt_workspace;
static const size_t g_lt_workspace_bytes = (size_t)32 << 20; /* what cuBLAS suggests for Hopper */

cudaStream_t cuda_stream(void) { return g_stream; }
int cuda_sm_count(void) { return g_sm_count; }
size_t cuda_smem_optin(void) { return g_smem_optin; }
cublasLtHandle_t cuda_lt_handle(void) { return g_lt; }
int *cuda_error_flag(void) { return g_error_flag; }

void *cuda_lt_workspace(size_t *bytes) {
    *bytes = g_lt_workspace_bytes;
    return g_lt_workspace;
}

void *cuda_tmp_alloc(size_t bytes) {
    void *p = NULL;
    cudaError_t e = cudaMallocAsync(&p, bytes ? bytes : 256, g_stream);
    if (e != cudaSuccess)
        aimc_die("cuda: out of device memory for a %zu-byte temporary (%s)", bytes,
                 cudaGetErrorString(e));
    return p;
}

void cuda_tmp_free(void *p) {
    if (p) CUDA_CHECK(cudaFreeAsync(p, g_stream));
}

/* Reports (and exits on) a bad index that a kernel flagged. */
static void check_device_errors(void) {
    int flags = 0;
    CUDA_CHECK(
        cudaMemcpyAsync(&flags, g_error_flag, sizeof flags, cudaMemcpyDeviceToHost, g_stream));
    CUDA_CHECK(cudaStreamSynchronize(g_stream));
    if (flags & CUDA_ERR_GATHER_INDEX)
        aimc_die("cuda: gather_rows got an index outside the rows of its table");
    if (flags & CUDA_ERR_SCATTER_INDEX)
        aimc_die("cuda: scatter_rows got an index outside the rows of its destination");
    if (flags & CUDA_ERR_CE_TARGET)
        aimc_die(
            "cuda: cross_entropy got a target outside [0, V) that is not the ignore index -100");
}

static void *cuda_alloc(size_t bytes) {
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 256);
    if (e != cudaSuccess)
        aimc_die("cuda: out of device memory allocating %zu bytes (%s)", bytes,
                 cudaGetErrorString(e));
    return p;
}

/* Waits for queued work first: a kernel may still use the memory. */
static void cuda_release(void *p) {
    if (!p) return;
    CUDA_CHECK(cudaStreamSynchronize(g_stream));
    CUDA_CHECK(cudaFree(p));
}

static void cuda_upload(void *dst, const void *host_src, size_t bytes) {
    if (!bytes) return;
    CUDA_CHECK(cudaMemcpyAsync(dst, host_src, bytes, cudaMemcpyHostToDevice, g_stream));
    CUDA_CHECK(cudaStreamSynchronize(g_stream));
}

static void cuda_download(void *host_dst, const void *src, size_t bytes) {
    if (bytes) CUDA_CHECK(cudaMemcpyAsync(host_dst, src, bytes, cudaMemcpyDeviceToHost, g_stream));
    check_device_errors(); /* also synchronises */
}

static void cuda_zero(void *p, size_t bytes) {
    if (bytes) CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, g_stream));
}

static void cuda_sync(void) { check_device_errors(); }

/* A kernel to find out whether this build's machine code (sm_80, sm_90a)
 * runs on the device at hand. */
static __global__ void probe_kernel(int *p) {
    if (p) *p = 0;
}

/* Writes "what: cuda's reason" into err; returns 0 (failure). */
static int fail(char *err, size_t errlen, const char *what, cudaError_t e) {
    if (err && errlen) snprintf(err, errlen, "%s: %s", what, cudaGetErrorString(e));
    return 0;
}

/* The value of environment variable name as a device index: 1 set (in
 * *out), 0 unset, -1 malformed (reason in err). */
static int env_index(const char *name, int *out, char *err, size_t errlen) {
    const char *s = getenv(name);
    if (!s || !*s) return 0;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < 0 || v > INT_MAX) {
        if (err && errlen)
            snprintf(err, errlen, "environment variable %s='%s' is not a non-negative integer",
                     name, s);
        return -1;
    }
    *out = (int)v;
    return 1;
}

/* The device ordinal among count visible ones (see the top of this file).
 * 0, or -1 with the reason in err. */
static int pick_device(int count, int *dev, char *err, size_t errlen) {
    static const char *const sources[] = {"AIMC_CUDA_DEVICE", "LOCAL_RANK"};
    int index = 0;
    for (int i = 0; i < 2; i++) {
        int found = env_index(sources[i], &index, err, errlen);
        if (found < 0) return -1;
        if (found) break;
    }
    *dev = index % count;
    return 0;
}

/* The chosen device: properties, stream, pool, flag word, cuBLASLt. Returns
 * 0 with the reason in err when the GPU cannot be used. */
static int init_device(int dev, char *err, size_t errlen) {
    cudaError_t e = cudaSetDevice(dev);
    if (e != cudaSuccess) {
        if (err && errlen)
            snprintf(err, errlen, "cudaSetDevice(%d): %s", dev, cudaGetErrorString(e));
        return 0;
    }
    cudaDeviceProp prop;
    e = cudaGetDeviceProperties(&prop, dev);
    if (e != cudaSuccess) return fail(err, errlen, "cudaGetDeviceProperties", e);
    cudaFuncAttributes attr;
    e = cudaFuncGetAttributes(&attr, probe_kernel);
    if (e != cudaSuccess) {
        if (err && errlen)
            snprintf(err, errlen,
                     "GPU '%s' (compute capability %d.%d) cannot run this build's kernels "
                     "(built for sm_80 and sm_90a): %s",
                     prop.name, prop.major, prop.minor, cudaGetErrorString(e));
        return 0;
    }
    g_sm_count = prop.multiProcessorCount;
    g_smem_optin = prop.sharedMemPerBlockOptin;
    CUDA_CHECK(cudaStreamCreateWithFlags(&g_stream, cudaStreamNonBlocking));
    cudaMemPool_t pool;
    CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, dev));
    uint64_t keep = UINT64_MAX; /* never hand pooled memory back to the driver at a sync */
    CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep));
    CUDA_CHECK(cudaMalloc(&g_error_flag, sizeof(int)));
    /* on the stream every kernel runs on: the legacy stream does not order
     * with a non-blocking one */
    CUDA_CHECK(cudaMemsetAsync(g_error_flag, 0, sizeof(int), g_stream));
    CUBLAS_CHECK(cublasLtCreate(&g_lt));
    CUDA_CHECK(cudaMalloc(&g_lt_workspace, g_lt_workspace_bytes));
    return 1;
}

extern "C" const backend *backend_cuda(char *err, size_t errlen) {
    static backend b;
    static int ready;
    if (ready) return &b;
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
        fail(err, errlen, "no usable NVIDIA GPU or driver on this machine (cudaGetDeviceCount)", e);
        return NULL;
    }
    if (count == 0) {
        if (err && errlen) snprintf(err, errlen, "no CUDA device is visible");
        return NULL;
    }
    int dev = 0;
    if (pick_device(count, &dev, err, errlen) || !init_device(dev, err, errlen)) return NULL;
    b.name = "cuda";
    b.act_dtype = DT_BF16;
    b.alloc = cuda_alloc;
    b.release = cuda_release;
    b.upload = cuda_upload;
    b.download = cuda_download;
    b.zero = cuda_zero;
    b.sync = cuda_sync;
    cuda_fill_matmul(&b);
    cuda_fill_attention(&b);
    cuda_fill_norm(&b);
    cuda_fill_activation(&b);
    cuda_fill_rope(&b);
    cuda_fill_rows(&b);
    cuda_fill_loss(&b);
    cuda_fill_optim(&b);
    ready = 1;
    return &b;
}
