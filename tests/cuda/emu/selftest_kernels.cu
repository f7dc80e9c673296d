/* Kernels for test_emu.c, the emulator's own test: correct ones whose
 * results are known, and broken ones the emulator must catch. Each
 * emu_case_* function launches one and returns what the test checks. Built
 * only in the emulated build (a GPU would run the broken ones into
 * undefined behaviour). */
#include <cuda_runtime.h>
#include <stdlib.h>

#define CHECK_CUDA(call)                                                                           \
    do {                                                                                           \
        if ((call) != cudaSuccess) abort();                                                        \
    } while (0)

static float *device_floats(int n) {
    float *p;
    CHECK_CUDA(cudaMalloc(&p, n * sizeof(float)));
    return p;
}

static void download(float *host, const float *dev, int n) {
    CHECK_CUDA(cudaMemcpy(host, dev, n * sizeof(float), cudaMemcpyDeviceToHost));
    CHECK_CUDA(cudaFree((void *)dev));
}

/* ---- correct kernels ------------------------------------------------------- */

/* out[linear thread id] = linear id, over a 3-d grid of 3-d blocks. */
static __global__ void geometry_kernel(float *out) {
    unsigned block = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
    unsigned thread = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    unsigned per_block = blockDim.x * blockDim.y * blockDim.z;
    out[block * per_block + thread] = (float)(block * per_block + thread);
}

/* out[block] = sum of x over the block's 256 values: warp shuffles, then the
 * warps' sums through dynamic shared memory. */
static __global__ void block_sum_kernel(float *out, const float *x) {
    extern __shared__ float partial[];
    float v = x[blockIdx.x * blockDim.x + threadIdx.x];
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = v;
    __syncthreads();
    if (threadIdx.x == 0) {
        float s = 0.0f;
        for (unsigned w = 0; w < blockDim.x / 32; w++) s += partial[w];
        out[blockIdx.x] = s;
    }
}

extern "C" void emu_case_geometry(float *host, int n) {
    float *d = device_floats(n);
    geometry_kernel<<<dim3(3, 2, 2), dim3(4, 3, 2)>>>(d);
    CHECK_CUDA(cudaGetLastError());
    download(host, d, n);
}

extern "C" void emu_case_block_sum(float *sums, const float *x, int blocks) {
    float *dx = device_floats(blocks * 256), *dout = device_floats(blocks);
    CHECK_CUDA(cudaMemcpy(dx, x, blocks * 256 * sizeof(float), cudaMemcpyHostToDevice));
    block_sum_kernel<<<blocks, 256, 8 * sizeof(float)>>>(dout, dx);
    CHECK_CUDA(cudaGetLastError());
    CHECK_CUDA(cudaFree(dx));
    download(sums, dout, blocks);
}

/* ---- a race: the result depends on the order of the threads -------------------- */

/* Every thread writes the shared word; which write survives is up to the
 * scheduler. */
static __global__ void last_writer_kernel(float *out) {
    __shared__ float word;
    word = (float)threadIdx.x;
    __syncthreads();
    if (threadIdx.x == 0) out[0] = word;
}

extern "C" float emu_case_last_writer(void) {
    float *d = device_floats(1), h;
    last_writer_kernel<<<1, 64>>>(d);
    download(&h, d, 1);
    return h;
}

/* ---- undefined behaviour the emulator stops at --------------------------------- */

static __global__ void divergent_barrier_kernel(float *out) {
    if (threadIdx.x < 16)
        __syncthreads();
    else
        __syncthreads();
    out[threadIdx.x] = 1.0f;
}

static __global__ void return_before_barrier_kernel(float *out) {
    if (threadIdx.x == 5) return;
    __syncthreads();
    out[threadIdx.x] = 1.0f;
}

static __global__ void partial_warp_shuffle_kernel(float *out) {
    float v = __shfl_xor_sync(0xffffffffu, 1.0f, 1);
    out[threadIdx.x] = v;
}

static __global__ void deadlock_kernel(float *out) {
    float v = 1.0f;
    if (threadIdx.x == 0)
        v = __shfl_xor_sync(0xffffffffu, v, 1);
    else
        __syncthreads();
    out[threadIdx.x] = v;
}

static __global__ void write_past_end_kernel(float *out, int n) {
    if (threadIdx.x == 0) out[n] = 1.0f;
}

static void run_broken(void (*kernel)(float *), int threads) {
    float *d = device_floats(64);
    kernel<<<1, threads>>>(d);
    CHECK_CUDA(cudaDeviceSynchronize());
    CHECK_CUDA(cudaFree(d));
}

extern "C" void emu_case_divergent_barrier(void) { run_broken(divergent_barrier_kernel, 32); }
extern "C" void emu_case_return_before_barrier(void) {
    run_broken(return_before_barrier_kernel, 32);
}
extern "C" void emu_case_partial_warp_shuffle(void) { run_broken(partial_warp_shuffle_kernel, 48); }
extern "C" void emu_case_deadlock(void) { run_broken(deadlock_kernel, 64); }
extern "C" void emu_case_write_past_end(void) {
    float *d = device_floats(10);
    write_past_end_kernel<<<1, 32>>>(d, 10);
    CHECK_CUDA(cudaFree(d));
}

/* ---- launch configurations a GPU refuses ---------------------------------------- */

static __global__ void smem_kernel(float *out) {
    extern __shared__ float big[];
    big[threadIdx.x] = 2.0f;
    __syncthreads();
    out[threadIdx.x] = big[threadIdx.x];
}

/* The error of each launch: 1025 threads; 64 KiB of dynamic shared memory
 * without, then with, cudaFuncSetAttribute. */
extern "C" void emu_case_launch_errors(int errors[3]) {
    float *d = device_floats(32);
    smem_kernel<<<1, 1025>>>(d);
    errors[0] = (int)cudaGetLastError();
    smem_kernel<<<1, 32, 64 << 10>>>(d);
    errors[1] = (int)cudaGetLastError();
    CHECK_CUDA(cudaFuncSetAttribute(smem_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    64 << 10));
    smem_kernel<<<1, 32, 64 << 10>>>(d);
    errors[2] = (int)cudaGetLastError();
    CHECK_CUDA(cudaFree(d));
}

/* ---- the 16-bit conversions kernels use ------------------------------------------ */

extern "C" unsigned short emu_bf16_bits(float v) { return __bfloat16_as_ushort(__float2bfloat16_rn(v)); }
extern "C" unsigned short emu_half_bits(float v) { return __half_as_ushort(__float2half_rn(v)); }

/* ---- mma.sync m16n8k16, fragments built from the PTX ISA's own formulas -------- */

#include "../../../kernels/cuda/mma.cuh"

static __device__ uint32_t bf16_pair(float lo, float hi) {
    return (uint32_t)__bfloat16_as_ushort(__float2bfloat16_rn(lo)) |
           (uint32_t)__bfloat16_as_ushort(__float2bfloat16_rn(hi)) << 16;
}

/* d (16 x 8, row-major) = A (16 x 16, row-major) B (16 x 8, row-major) by one
 * mma. The ISA ("Matrix fragments for mma.m16n8k16", .bf16), with
 * groupID = lane >> 2 and threadID_in_group = lane % 4:
 *   a_i (i < 8): row groupID for i in {0,1,4,5}, else groupID + 8;
 *                col threadID_in_group * 2 + (i & 1), + 8 for i >= 4;
 *   b_i (i < 4): row threadID_in_group * 2 + (i & 1), + 8 for i >= 2; col groupID;
 *   c_i (i < 4): row groupID, + 8 for i >= 2; col threadID_in_group * 2 + (i & 1);
 * two elements per 32-bit register, a_0 / b_0 in the low half. */
static __global__ void mma_kernel(float *d, const float *A, const float *B) {
    int group = threadIdx.x >> 2, tig = threadIdx.x % 4;
    float av[8], bv[4];
    for (int i = 0; i < 8; i++) {
        int row = (i == 0 || i == 1 || i == 4 || i == 5) ? group : group + 8;
        int col = tig * 2 + (i & 1) + (i >= 4 ? 8 : 0);
        av[i] = A[row * 16 + col];
    }
    for (int i = 0; i < 4; i++) bv[i] = B[(tig * 2 + (i & 1) + (i >= 2 ? 8 : 0)) * 8 + group];
    uint32_t a[4] = {bf16_pair(av[0], av[1]), bf16_pair(av[2], av[3]), bf16_pair(av[4], av[5]),
                     bf16_pair(av[6], av[7])};
    uint32_t b[2] = {bf16_pair(bv[0], bv[1]), bf16_pair(bv[2], bv[3])};
    float c[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    mma_m16n8k16_bf16(c, a, b);
    for (int i = 0; i < 4; i++) d[(group + (i >= 2 ? 8 : 0)) * 8 + tig * 2 + (i & 1)] = c[i];
}

extern "C" void emu_case_mma(float d[128], const float a[256], const float b[128]) {
    float *da = device_floats(256), *db = device_floats(128), *dd = device_floats(128);
    CHECK_CUDA(cudaMemcpy(da, a, 256 * sizeof(float), cudaMemcpyHostToDevice));
    CHECK_CUDA(cudaMemcpy(db, b, 128 * sizeof(float), cudaMemcpyHostToDevice));
    mma_kernel<<<1, 32>>>(dd, da, db);
    CHECK_CUDA(cudaGetLastError());
    CHECK_CUDA(cudaFree(da));
    CHECK_CUDA(cudaFree(db));
    download(d, dd, 128);
}
