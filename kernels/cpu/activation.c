/* Elementwise activations and SwiGLU, forward and backward, in f32.
 * The gelu forms avoid 1 + erf / 1 + tanh, which cancel for negative x:
 * 0.5 (1 + erf(z)) = 0.5 erfc(-z) and 0.5 (1 + tanh(u)) = sigmoid(2u). */
#include "cpu.h"
#include <math.h>

#define SQRT1_2 0.70710678118654752440f
#define INV_SQRT_2PI 0.39894228040143267794f
#define GELU_TANH_K 0.79788456080286535588f /* sqrt(2 / pi) */
#define GELU_TANH_C 0.044715f
#define QUICK_GELU_K 1.702f

static float sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }

/* sigmoid(z) and 1 - sigmoid(z), each accurate to f32 precision (the plain
 * 1 - s loses digits when s is near 1), with no overflow for any z. */
static void sigmoid_pair(float z, float *s, float *one_minus_s) {
    float e = expf(-fabsf(z)), big = 1.0f / (1.0f + e), small = e * big;
    *s = z >= 0.0f ? big : small;
    *one_minus_s = z >= 0.0f ? small : big;
}

static float gelu_tanh_arg(float x) { return GELU_TANH_K * (x + GELU_TANH_C * x * x * x); }

static float act_value(act_kind kind, float x) {
    switch (kind) {
    case ACT_GELU: return 0.5f * x * erfcf(-x * SQRT1_2);
    case ACT_GELU_TANH: return x * sigmoidf(2.0f * gelu_tanh_arg(x));
    case ACT_QUICK_GELU: return x * sigmoidf(QUICK_GELU_K * x);
    case ACT_SILU: return x * sigmoidf(x);
    case ACT_RELU: return x < 0.0f ? 0.0f : x; /* NaN passes through */
    default: break;
    }
    AIMC_CHECK(0, "act: unknown activation kind %d", (int)kind);
}

/* d act(x) / dx */
static float act_slope(act_kind kind, float x) {
    switch (kind) {
    case ACT_GELU: return 0.5f * erfcf(-x * SQRT1_2) + x * INV_SQRT_2PI * expf(-0.5f * x * x);
    case ACT_GELU_TANH: {
        float s, t, du = GELU_TANH_K * (1.0f + 3.0f * GELU_TANH_C * x * x);
        sigmoid_pair(2.0f * gelu_tanh_arg(x), &s, &t);
        return s + x * 2.0f * s * t * du;
    }
    case ACT_QUICK_GELU: {
        float s, t;
        sigmoid_pair(QUICK_GELU_K * x, &s, &t);
        return s + x * QUICK_GELU_K * s * t;
    }
    case ACT_SILU: {
        float s, t;
        sigmoid_pair(x, &s, &t);
        return s * (1.0f + x * t);
    }
    case ACT_RELU: return x > 0.0f ? 1.0f : 0.0f;
    default: break;
    }
    AIMC_CHECK(0, "act_backward: unknown activation kind %d", (int)kind);
}

static float ld(const tensor *t, int64_t i) { return load_as_f32(t->data, t->dt, i); }
static void st(tensor *t, int64_t i, float v) { store_from_f32(t->data, t->dt, i, v); }

static void cpu_act(act_kind kind, tensor *y, const tensor *x) {
    int64_t n = tensor_numel(x);
#pragma omp parallel for schedule(static) if (n >= CPU_PARALLEL_MIN)
    for (int64_t i = 0; i < n; i++) st(y, i, act_value(kind, ld(x, i)));
}

static void cpu_act_backward(act_kind kind, tensor *dx, const tensor *dy, const tensor *x) {
    int64_t n = tensor_numel(x);
#pragma omp parallel for schedule(static) if (n >= CPU_PARALLEL_MIN)
    for (int64_t i = 0; i < n; i++) st(dx, i, ld(dy, i) * act_slope(kind, ld(x, i)));
}

static void cpu_swiglu(tensor *y, const tensor *gate, const tensor *up) {
    int64_t n = tensor_numel(y);
#pragma omp parallel for schedule(static) if (n >= CPU_PARALLEL_MIN)
    for (int64_t i = 0; i < n; i++) st(y, i, act_value(ACT_SILU, ld(gate, i)) * ld(up, i));
}

/* dgate = dy * up * silu'(gate), dup = dy * silu(gate). Each element's
 * inputs are read before its outputs are written (outputs may alias inputs). */
static void cpu_swiglu_backward(tensor *dgate, tensor *dup, const tensor *dy, const tensor *gate,
                                const tensor *up) {
    int64_t n = tensor_numel(dy);
#pragma omp parallel for schedule(static) if (n >= CPU_PARALLEL_MIN)
    for (int64_t i = 0; i < n; i++) {
        float g = ld(gate, i), u = ld(up, i), d = ld(dy, i);
        st(dgate, i, d * u * act_slope(ACT_SILU, g));
        st(dup, i, d * act_value(ACT_SILU, g));
    }
}

void cpu_fill_activation(backend *b) {
    b->act = cpu_act;
    b->act_backward = cpu_act_backward;
    b->swiglu = cpu_swiglu;
    b->swiglu_backward = cpu_swiglu_backward;
}
