/* Elementwise activations (GELU erf and tanh forms, QuickGELU, SiLU, ReLU)
 * and SwiGLU, forward and backward.
 *
 * Strategy: purely memory-bound. Each thread handles 8 consecutive elements
 * per step with 16-byte loads/stores where the address allows (load8 /
 * store8), in a grid-stride loop; the activation kind is a run-time switch
 * that is the same for every thread. Math in f32 with the accurate library
 * functions (erfcf, expf); the forms avoid cancellation for negative inputs:
 * 0.5 (1 + erf z) = 0.5 erfc(-z), 0.5 (1 + tanh u) = sigmoid(2u), and
 * 1 - sigmoid(z) is taken from exp(-|z|) directly. */
#include "cuda_common.cuh"

enum { THREADS = 256 };

#define SQRT1_2 0.70710678118654752440f
#define INV_SQRT_2PI 0.39894228040143267794f
#define GELU_TANH_K 0.79788456080286535588f /* sqrt(2 / pi) */
#define GELU_TANH_C 0.044715f
#define QUICK_GELU_K 1.702f

static __device__ __forceinline__ float sigmoid(float z) { return 1.0f / (1.0f + expf(-z)); }

/* sigmoid(z) and 1 - sigmoid(z), both to f32 precision, for any z. */
static __device__ __forceinline__ void sigmoid_pair(float z, float *s, float *one_minus_s) {
    float e = expf(-fabsf(z)), big = 1.0f / (1.0f + e), small = e * big;
    *s = z >= 0.0f ? big : small;
    *one_minus_s = z >= 0.0f ? small : big;
}

static __device__ __forceinline__ float act_value(int kind, float x) {
    switch (kind) {
    case ACT_GELU:
        return 0.5f * x * erfcf(-x * SQRT1_2);
    case ACT_GELU_TANH:
        return x * sigmoid(2.0f * GELU_TANH_K * (x + GELU_TANH_C * x * x * x));
    case ACT_QUICK_GELU:
        return x * sigmoid(QUICK_GELU_K * x);
    case ACT_SILU:
        return x * sigmoid(x);
    default:
        return x < 0.0f ? 0.0f : x; /* ACT_RELU; NaN passes through */
    }
}

/* d act(x) / dx */
static __device__ __forceinline__ float act_slope(int kind, float x) {
    float s, t;
    switch (kind) {
    case ACT_GELU:
        return 0.5f * erfcf(-x * SQRT1_2) + x * INV_SQRT_2PI * expf(-0.5f * x * x);
    case ACT_GELU_TANH: {
        float du = GELU_TANH_K * (1.0f + 3.0f * GELU_TANH_C * x * x);
        sigmoid_pair(2.0f * GELU_TANH_K * (x + GELU_TANH_C * x * x * x), &s, &t);
        return s + x * 2.0f * s * t * du;
    }
    case ACT_QUICK_GELU:
        sigmoid_pair(QUICK_GELU_K * x, &s, &t);
        return s + x * QUICK_GELU_K * s * t;
    case ACT_SILU:
        sigmoid_pair(x, &s, &t);
        return s * (1.0f + x * t);
    default:
        return x > 0.0f ? 1.0f : 0.0f; /* ACT_RELU */
    }
}

/* First element of this thread's group of 8 and the grid-wide step. */
#define FOR_EACH_8(i, n)                                                                           \
    for (int64_t i = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) * 8; i < (n);                \
         i += (int64_t)gridDim.x * blockDim.x * 8)

static __global__ void act_kernel(int kind, void *y, dtype y_dt, const void *x, dtype x_dt,
                                  int64_t n) {
    FOR_EACH_8(i, n) {
        float v[8];
        load8(x, x_dt, i, n, v);
#pragma unroll
        for (int k = 0; k < 8; k++) v[k] = act_value(kind, v[k]);
        store8(y, y_dt, i, n, v);
    }
}

static __global__ void act_backward_kernel(int kind, void *dx, dtype dx_dt, const void *dy,
                                           dtype dy_dt, const void *x, dtype x_dt, int64_t n) {
    FOR_EACH_8(i, n) {
        float g[8], v[8];
        load8(dy, dy_dt, i, n, g);
        load8(x, x_dt, i, n, v);
#pragma unroll
        for (int k = 0; k < 8; k++) g[k] *= act_slope(kind, v[k]);
        store8(dx, dx_dt, i, n, g);
    }
}

static __global__ void swiglu_kernel(void *y, dtype y_dt, const void *gate, dtype g_dt,
                                     const void *up, dtype u_dt, int64_t n) {
    FOR_EACH_8(i, n) {
        float g[8], u[8];
        load8(gate, g_dt, i, n, g);
        load8(up, u_dt, i, n, u);
#pragma unroll
        for (int k = 0; k < 8; k++) g[k] = g[k] * sigmoid(g[k]) * u[k];
        store8(y, y_dt, i, n, g);
    }
}

/* y = silu(g) u: dg = dy u silu'(g), du = dy silu(g). */
static __global__ void swiglu_backward_kernel(void *dgate, dtype dg_dt, void *dup, dtype du_dt,
                                              const void *dy, dtype dy_dt, const void *gate,
                                              dtype g_dt, const void *up, dtype u_dt, int64_t n) {
    FOR_EACH_8(i, n) {
        float d[8], g[8], u[8], out_g[8], out_u[8];
        load8(dy, dy_dt, i, n, d);
        load8(gate, g_dt, i, n, g);
        load8(up, u_dt, i, n, u);
#pragma unroll
        for (int k = 0; k < 8; k++) {
            float s, t;
            sigmoid_pair(g[k], &s, &t);
            out_g[k] = d[k] * u[k] * s * (1.0f + g[k] * t);
            out_u[k] = d[k] * g[k] * s;
        }
        store8(dgate, dg_dt, i, n, out_g);
        store8(dup, du_dt, i, n, out_u);
    }
}

static unsigned blocks_for(int64_t n) { return grid_blocks(n, (int64_t)THREADS * 8); }

static void cuda_act(act_kind kind, tensor *y, const tensor *x) {
    int64_t n = tensor_numel(x);
    AIMC_CHECK((unsigned)kind < ACT_COUNT, "cuda act: unknown activation kind %d", (int)kind);
    if (n <= 0) return;
    act_kernel<<<blocks_for(n), THREADS, 0, cuda_stream()>>>((int)kind, y->data, y->dt, x->data,
                                                             x->dt, n);
    CUDA_LAUNCH_CHECK();
}

static void cuda_act_backward(act_kind kind, tensor *dx, const tensor *dy, const tensor *x) {
    int64_t n = tensor_numel(x);
    AIMC_CHECK((unsigned)kind < ACT_COUNT, "cuda act_backward: unknown activation kind %d",
               (int)kind);
    if (n <= 0) return;
    act_backward_kernel<<<blocks_for(n), THREADS, 0, cuda_stream()>>>(
        (int)kind, dx->data, dx->dt, dy->data, dy->dt, x->data, x->dt, n);
    CUDA_LAUNCH_CHECK();
}

static void cuda_swiglu(tensor *y, const tensor *gate, const tensor *up) {
    int64_t n = tensor_numel(y);
    if (n <= 0) return;
    swiglu_kernel<<<blocks_for(n), THREADS, 0, cuda_stream()>>>(y->data, y->dt, gate->data,
                                                                gate->dt, up->data, up->dt, n);
    CUDA_LAUNCH_CHECK();
}

static void cuda_swiglu_backward(tensor *dgate, tensor *dup, const tensor *dy, const tensor *gate,
                                 const tensor *up) {
    int64_t n = tensor_numel(gate);
    if (n <= 0) return;
    swiglu_backward_kernel<<<blocks_for(n), THREADS, 0, cuda_stream()>>>(
        dgate->data, dgate->dt, dup->data, dup->dt, dy->data, dy->dt, gate->data, gate->dt,
        up->data, up->dt, n);
    CUDA_LAUNCH_CHECK();
}

void cuda_fill_activation(backend *b) {
    b->act = cuda_act;
    b->act_backward = cuda_act_backward;
    b->swiglu = cuda_swiglu;
    b->swiglu_backward = cuda_swiglu_backward;
}
