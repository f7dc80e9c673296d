/* Row moves and simple elementwise ops: gather_rows (embedding lookup),
 * scatter_rows (placing tokens in a sequence), convert, add, scale.
 *
 * Strategy: memory-bound, so each thread moves 8 consecutive elements with
 * 16-byte loads/stores where aligned (load8/store8), grid-stride loops for
 * flat ops, one warp per row for the row moves (a warp covers 256 columns
 * per step, fully coalesced).
 * Bad indices cannot abort from the device: the row is skipped (gather fills
 * it with NaN), a bit is set in the device error word, and the next sync or
 * download exits with the message.
 * scatter_rows matches the cpu reference for repeated indices (the last
 * source row wins) deterministically: an integer atomicMax first elects, for
 * each destination row, the largest source row aimed at it (integer maxima
 * do not depend on the order), then only the elected rows are copied. */
#include "cuda_common.cuh"

enum { THREADS = 256, WARPS_PER_BLOCK = THREADS / 32 };

/* ---- flat elementwise ------------------------------------------------------ */

static __global__ void convert_kernel(void *dst, dtype dst_dt, const void *src, dtype src_dt,
                                      int64_t n) {
    for (int64_t i = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) * 8; i < n;
         i += (int64_t)gridDim.x * blockDim.x * 8) {
        float v[8];
        load8(src, src_dt, i, n, v);
        store8(dst, dst_dt, i, n, v);
    }
}

/* out = a + b when b is given, else out = a * s. Each thread reads its eight
 * elements before writing them, so out may alias a or b. */
static __global__ void add_scale_kernel(void *out, dtype out_dt, const void *a, dtype a_dt,
                                        const void *b, dtype b_dt, float s, int64_t n) {
    for (int64_t i = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) * 8; i < n;
         i += (int64_t)gridDim.x * blockDim.x * 8) {
        float va[8], vb[8];
        load8(a, a_dt, i, n, va);
        if (b) {
            load8(b, b_dt, i, n, vb);
#pragma unroll
            for (int k = 0; k < 8; k++) va[k] += vb[k];
        } else {
#pragma unroll
            for (int k = 0; k < 8; k++) va[k] *= s;
        }
        store8(out, out_dt, i, n, va);
    }
}

void cuda_convert_raw(void *dst, dtype dst_dt, const void *src, dtype src_dt, int64_t n) {
    if (n <= 0) return;
    if (dst_dt == src_dt) { /* also the i32 -> i32 case */
        if (dst != src)
            CUDA_CHECK(cudaMemcpyAsync(dst, src,
                                       (size_t)n * (dst_dt == DT_F32 || dst_dt == DT_I32 ? 4 : 2),
                                       cudaMemcpyDeviceToDevice, cuda_stream()));
        return;
    }
    convert_kernel<<<grid_blocks(n, THREADS * 8), THREADS, 0, cuda_stream()>>>(dst, dst_dt, src,
                                                                               src_dt, n);
    CUDA_LAUNCH_CHECK();
}

static void cuda_convert(tensor *dst, const tensor *src) {
    cuda_convert_raw(dst->data, dst->dt, src->data, src->dt, tensor_numel(src));
}

static void cuda_add(tensor *out, const tensor *a, const tensor *b) {
    int64_t n = tensor_numel(out);
    if (n <= 0) return;
    add_scale_kernel<<<grid_blocks(n, THREADS * 8), THREADS, 0, cuda_stream()>>>(
        out->data, out->dt, a->data, a->dt, b->data, b->dt, 1.0f, n);
    CUDA_LAUNCH_CHECK();
}

static void cuda_scale(tensor *out, const tensor *x, float s) {
    int64_t n = tensor_numel(out);
    if (n <= 0) return;
    add_scale_kernel<<<grid_blocks(n, THREADS * 8), THREADS, 0, cuda_stream()>>>(
        out->data, out->dt, x->data, x->dt, NULL, DT_F32, s, n);
    CUDA_LAUNCH_CHECK();
}

/* ---- row moves ----------------------------------------------------------- */

/* dst row = src row, one warp, converting dtype. */
static __device__ __forceinline__ void warp_copy_row(void *dst, dtype dst_dt, const void *src,
                                                     dtype src_dt, int64_t cols, int lane) {
    for (int64_t c = (int64_t)lane * 8; c < cols; c += 256) {
        float v[8];
        load8(src, src_dt, c, cols, v);
        store8(dst, dst_dt, c, cols, v);
    }
}

static __global__ void gather_rows_kernel(void *out, dtype out_dt, const void *src, dtype src_dt,
                                          const int32_t *idx, int64_t n, int64_t src_rows,
                                          int64_t cols, int *err) {
    int lane = threadIdx.x & 31;
    for (int64_t i = (int64_t)blockIdx.x * WARPS_PER_BLOCK + (threadIdx.x >> 5); i < n;
         i += (int64_t)gridDim.x * WARPS_PER_BLOCK) {
        int64_t r = idx[i];
        void *dst = row_ptr_mut(out, out_dt, i, cols);
        if (r < 0 || r >= src_rows) {
            if (lane == 0) atomicOr(err, CUDA_ERR_GATHER_INDEX);
            for (int64_t c = lane; c < cols; c += 32) st(dst, out_dt, c, NAN);
            continue;
        }
        warp_copy_row(dst, out_dt, row_ptr(src, src_dt, r, cols), src_dt, cols, lane);
    }
}

static void cuda_gather_rows(tensor *out, const tensor *src, const tensor *idx) {
    int64_t n = tensor_numel(idx), cols = tensor_cols(src);
    if (n <= 0 || cols <= 0) return;
    gather_rows_kernel<<<grid_blocks(n, WARPS_PER_BLOCK), THREADS, 0, cuda_stream()>>>(
        out->data, out->dt, src->data, src->dt, (const int32_t *)idx->data, n,
        tensor_numel(src) / cols, cols, cuda_error_flag());
    CUDA_LAUNCH_CHECK();
}

/* owner[idx[i]] = max i over the source rows aimed at it. */
static __global__ void scatter_elect_kernel(int32_t *owner, const int32_t *idx, int64_t n,
                                            int64_t dst_rows, int *err) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = idx[i];
        if (r < 0 || r >= dst_rows)
            atomicOr(err, CUDA_ERR_SCATTER_INDEX);
        else
            atomicMax(&owner[r], (int32_t)i);
    }
}

static __global__ void scatter_rows_kernel(void *dst, dtype dst_dt, const void *src, dtype src_dt,
                                           const int32_t *idx, const int32_t *owner, int64_t n,
                                           int64_t dst_rows, int64_t cols) {
    int lane = threadIdx.x & 31;
    for (int64_t i = (int64_t)blockIdx.x * WARPS_PER_BLOCK + (threadIdx.x >> 5); i < n;
         i += (int64_t)gridDim.x * WARPS_PER_BLOCK) {
        int64_t r = idx[i];
        if (r < 0 || r >= dst_rows || owner[r] != i) continue; /* bad, or a later row wins */
        warp_copy_row(row_ptr_mut(dst, dst_dt, r, cols), dst_dt, row_ptr(src, src_dt, i, cols),
                      src_dt, cols, lane);
    }
}

static void cuda_scatter_rows(tensor *dst, const tensor *src, const tensor *idx) {
    int64_t n = tensor_numel(idx), cols = tensor_cols(dst);
    if (n <= 0 || cols <= 0) return;
    AIMC_CHECK(n < INT32_MAX, "cuda scatter_rows: %lld source rows exceed the i32 election",
               (long long)n);
    int64_t dst_rows = tensor_numel(dst) / cols;
    cudaStream_t s = cuda_stream();
    int32_t *owner = (int32_t *)cuda_tmp_alloc((size_t)dst_rows * sizeof(int32_t));
    CUDA_CHECK(cudaMemsetAsync(owner, 0xff, (size_t)dst_rows * sizeof(int32_t), s)); /* -1 */
    scatter_elect_kernel<<<grid_blocks(n, THREADS), THREADS, 0, s>>>(
        owner, (const int32_t *)idx->data, n, dst_rows, cuda_error_flag());
    CUDA_LAUNCH_CHECK();
    scatter_rows_kernel<<<grid_blocks(n, WARPS_PER_BLOCK), THREADS, 0, s>>>(
        dst->data, dst->dt, src->data, src->dt, (const int32_t *)idx->data, owner, n, dst_rows,
        cols);
    CUDA_LAUNCH_CHECK();
    cuda_tmp_free(owner);
}

void cuda_fill_rows(backend *b) {
    b->gather_rows = cuda_gather_rows;
    b->scatter_rows = cuda_scatter_rows;
    b->convert = cuda_convert;
    b->add = cuda_add;
    b->scale = cuda_scale;
}
