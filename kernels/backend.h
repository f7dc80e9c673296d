/* The op interface: one table of function pointers that every backend
 * (cpu: plain C reference; cuda: hand-written kernels + cuBLASLt) fills in.
 * Models call the checked wrappers in host/ops.h, never these directly.
 *
 * Conventions for every op:
 *  - all tensors are contiguous and owned by the backend that runs the op;
 *  - outputs are overwritten (matmul's beta is the one accumulate switch);
 *  - "rows" means numel / last dimension; row-wise ops treat a tensor as
 *    [rows, cols] whatever its number of dimensions;
 *  - float math is f32; storage may be f32/bf16/f16 where an op says so
 *    (the cpu backend takes any float dtype for matmul weights and
 *    embedding tables, f32 for activations);
 *  - optional tensors are NULL when absent. */
#ifndef AIMC_BACKEND_H
#define AIMC_BACKEND_H
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { ACT_GELU = 0, ACT_GELU_TANH, ACT_QUICK_GELU, ACT_SILU, ACT_RELU, ACT_COUNT } act_kind;

/* Attention options. Layouts: q [B, Tq, Hq, hd]; k, v [B, Tk, Hkv, hd];
 * out [B, Tq, Hq, hd]; lse [B, Hq, Tq] f32. Hq % Hkv == 0 (GQA: query head h
 * uses kv head h / (Hq / Hkv)). */
typedef struct attn_opts {
    float scale;             /* multiplies q.k (usually hd^-0.5) */
    int causal;              /* query i sees keys j <= i + (Tk - Tq) */
    const tensor *key_mask;  /* [B, Tk] f32, 1 = attend, 0 = masked (padding, variable lengths) */
    const tensor *bias;      /* [B, Tq, Tk] f32 additive, same for every head */
} attn_opts;

typedef struct adamw_opts {
    float lr, beta1, beta2, eps, weight_decay;
    int64_t step;      /* 1-based, for bias correction */
    float grad_scale;  /* gradients are multiplied by this first (clipping, 1/accum) */
} adamw_opts;

typedef struct backend {
    const char *name;
    dtype act_dtype; /* storage for activations: f32 on cpu, bf16 on cuda; losses and norms' stats stay f32 */

    /* Memory. Sizes in bytes; copies between this backend and host memory. */
    void *(*alloc)(size_t bytes);
    void (*release)(void *p);
    void (*upload)(void *dst, const void *host_src, size_t bytes);
    void (*download)(void *host_dst, const void *src, size_t bytes);
    void (*zero)(void *p, size_t bytes);
    void (*sync)(void);

    /* out[M,N] = op(a)[M,K] . op(b)[K,N] (+ bias[N]) (+ beta * out).
     * a is [M,K] ([K,M] when trans_a); b is [K,N] ([N,K] when trans_b).
     * A Linear y = x W^T + b is matmul(y, x, W, b, 0, 1, 0); its input grad
     * dx = dy W is matmul(dx, dy, W, NULL, 0, 0, 0); its weight grad
     * dW += dy^T x is matmul(dW, dy, x, NULL, 1, 0, 1). Leading dims of a and
     * out are flattened into rows. */
    void (*matmul)(tensor *out, const tensor *a, const tensor *b, const tensor *bias,
                   int trans_a, int trans_b, float beta);
    /* db[N] = sum over rows of dy[rows, N] (+ beta * db). */
    void (*bias_grad)(tensor *db, const tensor *dy, float beta);

    /* Scaled dot-product attention, softmax in f32. lse (may be NULL when no
     * backward follows) receives the log-sum-exp of each score row; rows with
     * every key masked give out = 0 and lse = -inf. */
    void (*attention)(tensor *out, tensor *lse, const tensor *q, const tensor *k,
                      const tensor *v, const attn_opts *o);
    /* Gradients of attention w.r.t. q, k, v given dout and the forward's out, lse. */
    void (*attention_backward)(tensor *dq, tensor *dk, tensor *dv, const tensor *dout,
                               const tensor *q, const tensor *k, const tensor *v,
                               const tensor *out, const tensor *lse, const attn_opts *o);

    /* y = (x - mean) * rstd * w + b over the last dim; mean, rstd [rows] f32
     * (may be NULL when no backward follows); b may be NULL. */
    void (*layernorm)(tensor *y, tensor *mean, tensor *rstd, const tensor *x,
                      const tensor *w, const tensor *b, float eps);
    /* dx from dy; dw, db (may be NULL: frozen) get the parameter gradients,
     * overwritten. */
    void (*layernorm_backward)(tensor *dx, tensor *dw, tensor *db, const tensor *dy,
                               const tensor *x, const tensor *w, const tensor *mean,
                               const tensor *rstd);
    /* y = x * rsqrt(mean(x^2) + eps) * w; rstd [rows] f32 (may be NULL). */
    void (*rmsnorm)(tensor *y, tensor *rstd, const tensor *x, const tensor *w, float eps);
    void (*rmsnorm_backward)(tensor *dx, tensor *dw, const tensor *dy, const tensor *x,
                             const tensor *w, const tensor *rstd);

    /* Elementwise activations, y = act(x); dx = dy * act'(x). */
    void (*act)(act_kind kind, tensor *y, const tensor *x);
    void (*act_backward)(act_kind kind, tensor *dx, const tensor *dy, const tensor *x);
    /* y = silu(gate) * up; and its backward. */
    void (*swiglu)(tensor *y, const tensor *gate, const tensor *up);
    void (*swiglu_backward)(tensor *dgate, tensor *dup, const tensor *dy, const tensor *gate,
                            const tensor *up);

    /* Rotary embedding, half-split layout (rotate_half = cat(-x2, x1)), in place
     * on x [B, T, H, hd]; pos [B, T] i32; angle = pos * theta^(-2i/hd).
     * inverse = 1 rotates by -angle (the backward). */
    void (*rope)(tensor *x, const tensor *pos, float theta, int inverse);

    /* out[i, :] = src[idx[i], :]  (embedding lookup; src may be bf16/f16). */
    void (*gather_rows)(tensor *out, const tensor *src, const tensor *idx);
    /* dst[idx[i], :] = src[i, :]  (place fused / image tokens in a sequence). */
    void (*scatter_rows)(tensor *dst, const tensor *src, const tensor *idx);
    /* dst = src with dtype conversion (same numel). */
    void (*convert)(tensor *dst, const tensor *src);
    /* out = a + b (out may alias a or b). */
    void (*add)(tensor *out, const tensor *a, const tensor *b);
    /* out = x * s (out may alias x). */
    void (*scale)(tensor *out, const tensor *x, float s);

    /* Fused softmax + cross-entropy. logits [N, V] f32 is overwritten with
     * dlogits = (softmax - onehot) * dscale for rows whose target is not -100
     * (zero for ignored rows). loss [N] f32 gets each row's -log p(target)
     * (0 for ignored rows). targets [N] i32. */
    void (*cross_entropy)(tensor *loss, tensor *logits, const tensor *targets, float dscale);

    /* Rows scaled to unit L2 norm; rnorm [rows] f32 keeps 1/||x||. */
    void (*l2norm)(tensor *y, tensor *rnorm, const tensor *x);
    void (*l2norm_backward)(tensor *dx, const tensor *dy, const tensor *y, const tensor *rnorm);

    /* Symmetric InfoNCE (CLIP) on L2-normalised features, written for a global
     * batch: img, txt [b, D] are this rank's rows, img_all, txt_all [N, D] the
     * gathered columns of every rank, and local row i's positive is column
     * offset + i. With s = exp(logit_scale), logits_i2t = s img txt_all^T,
     * logits_t2i = s txt img_all^T. loss [1] f32 = sum over local rows of
     * (CE(i2t row) + CE(t2i row)). Gradients of dscale * loss: d_img, d_txt
     * [b, D] through the rows, d_img_all, d_txt_all [N, D] through the
     * columns (sum them over ranks, then add the own slice), d_logit_scale [1]. */
    void (*infonce)(tensor *loss, tensor *d_img, tensor *d_txt, tensor *d_img_all,
                    tensor *d_txt_all, tensor *d_logit_scale, const tensor *img,
                    const tensor *txt, const tensor *img_all, const tensor *txt_all,
                    int64_t offset, float logit_scale, float dscale);

    /* AdamW with decoupled weight decay on f32 params, grads, m, v:
     *   g = grad * grad_scale; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
     *   p -= lr * (m_hat / (sqrt(v_hat) + eps) + wd * p). */
    void (*adamw)(tensor *param, const tensor *grad, tensor *m, tensor *v, const adamw_opts *o);
    /* out[1] f32 = sum of x^2 (for the global gradient norm), f64 accumulation on cpu. */
    void (*sumsq)(tensor *out, const tensor *x);
} backend;

const backend *backend_cpu(void);
/* Only in builds with CUDA (AIMC_CUDA defined). Returns NULL and writes the
 * reason into err when no usable GPU is present. Opens the visible GPU
 * numbered $AIMC_CUDA_DEVICE, else $LOCAL_RANK, else 0 (modulo the count),
 * with cudaSetDevice on the calling thread, which must make every later
 * backend call. */
const backend *backend_cuda(char *err, size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
