/* AdamW and the sum of squares behind the global gradient norm.
 *
 * AdamW: elementwise on f32 param, m, v (grad any float dtype), 8 elements
 * per thread with 16-byte accesses where aligned; the bias corrections are
 * computed once on the host in f64 (beta2^step stays near 1 for thousands of
 * steps). Decoupled weight decay uses the old p, as torch.optim.AdamW.
 *
 * sumsq: deterministic two-stage reduction in f64. Stage 1 runs a grid whose
 * size depends only on n; each block sums a fixed strided subset and
 * reduces it in a fixed order -> partial[block]. Stage 2 (one block) adds
 * the partials in a fixed order. Same input, same bits, every run. */
#include "cuda_common.cuh"

enum { THREADS = 256, SUMSQ_MAX_BLOCKS = 1024, SUMSQ_FINAL_THREADS = 1024 };

struct adamw_consts {
    float lr, b1, b2, eps, wd, grad_scale, inv_bc1, inv_bc2;
};

static __global__ void adamw_kernel(float *p, const void *grad, dtype g_dt, float *m, float *v,
                                    adamw_consts c, int64_t n) {
    for (int64_t i = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) * 8; i < n;
         i += (int64_t)gridDim.x * blockDim.x * 8) {
        float pv[8], gv[8], mv[8], vv[8];
        load8(p, DT_F32, i, n, pv);
        load8(grad, g_dt, i, n, gv);
        load8(m, DT_F32, i, n, mv);
        load8(v, DT_F32, i, n, vv);
#pragma unroll
        for (int k = 0; k < 8; k++) {
            float g = gv[k] * c.grad_scale;
            mv[k] = c.b1 * mv[k] + (1.0f - c.b1) * g;
            vv[k] = c.b2 * vv[k] + (1.0f - c.b2) * g * g;
            float update = (mv[k] * c.inv_bc1) / (sqrtf(vv[k] * c.inv_bc2) + c.eps);
            pv[k] -= c.lr * (update + c.wd * pv[k]);
        }
        store8(p, DT_F32, i, n, pv);
        store8(m, DT_F32, i, n, mv);
        store8(v, DT_F32, i, n, vv);
    }
}

static void cuda_adamw(tensor *param, const tensor *grad, tensor *m, tensor *v,
                       const adamw_opts *o) {
    AIMC_CHECK(param->dt == DT_F32 && m->dt == DT_F32 && v->dt == DT_F32,
               "cuda adamw: param, m and v must be f32");
    AIMC_CHECK(o->step >= 1, "cuda adamw: step %lld, expected >= 1", (long long)o->step);
    int64_t n = tensor_numel(param);
    if (n <= 0) return;
    adamw_consts c = {o->lr,
                      o->beta1,
                      o->beta2,
                      o->eps,
                      o->weight_decay,
                      o->grad_scale,
                      (float)(1.0 / (1.0 - pow((double)o->beta1, (double)o->step))),
                      (float)(1.0 / (1.0 - pow((double)o->beta2, (double)o->step)))};
    adamw_kernel<<<grid_blocks(n, (int64_t)THREADS * 8), THREADS, 0, cuda_stream()>>>(
        (float *)param->data, grad->data, grad->dt, (float *)m->data, (float *)v->data, c, n);
    CUDA_LAUNCH_CHECK();
}

static __global__ void sumsq_partial_kernel(double *partial, const void *x, dtype dt, int64_t n) {
    __shared__ double red[32];
    double acc = 0.0;
    for (int64_t i = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) * 8; i < n;
         i += (int64_t)gridDim.x * blockDim.x * 8) {
        float v[8];
        load8(x, dt, i, n, v); /* past the end: 0 */
#pragma unroll
        for (int k = 0; k < 8; k++) acc += (double)v[k] * v[k];
    }
    acc = block_sum(acc, red);
    if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

static __global__ void sumsq_final_kernel(float *out, const double *partial, int nparts) {
    __shared__ double red[32];
    double acc = (int)threadIdx.x < nparts ? partial[threadIdx.x] : 0.0;
    acc = block_sum(acc, red);
    if (threadIdx.x == 0) out[0] = (float)acc;
}

static void cuda_sumsq(tensor *out, const tensor *x) {
    int64_t n = tensor_numel(x);
    /* grid size from n alone (not from the device), so the order is fixed */
    int64_t blocks = (n + THREADS * 8 - 1) / (THREADS * 8);
    if (blocks > SUMSQ_MAX_BLOCKS) blocks = SUMSQ_MAX_BLOCKS;
    if (blocks < 1) blocks = 1;
    double *partial = (double *)cuda_tmp_alloc((size_t)blocks * sizeof(double));
    sumsq_partial_kernel<<<(unsigned)blocks, THREADS, 0, cuda_stream()>>>(partial, x->data, x->dt,
                                                                          n);
    CUDA_LAUNCH_CHECK();
    sumsq_final_kernel<<<1, SUMSQ_FINAL_THREADS, 0, cuda_stream()>>>((float *)out->data, partial,
                                                                     (int)blocks);
    CUDA_LAUNCH_CHECK();
    cuda_tmp_free(partial);
}

void cuda_fill_optim(backend *b) {
    b->adamw = cuda_adamw;
    b->sumsq = cuda_sumsq;
}
