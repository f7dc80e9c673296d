/* cpu reference: the AdamW update and the sum of squares behind the global
 * gradient norm. Semantics in kernels/backend.h. */
#include "cpu.h"
#include <math.h>
#include <stdlib.h>

/* torch.optim.AdamW: decoupled weight decay p -= lr * wd * p, then the Adam
 * step lr * m_hat / (sqrt(v_hat) + eps); both use the old p, so they fold
 * into one update. */
static void cpu_adamw(tensor *param, const tensor *grad, tensor *m, tensor *v,
                      const adamw_opts *o) {
    int64_t n = tensor_numel(param);
    float *p = param->data, *ms = m->data, *vs = v->data;
    const float *g = grad->data;
    float b1 = o->beta1, b2 = o->beta2, lr = o->lr, wd = o->weight_decay, eps = o->eps;
    float gs = o->grad_scale;
    /* bias corrections 1 - beta^step, in double: beta2^step stays near 1 for
     * thousands of steps and f32 would lose most of 1 - beta2^step early on */
    float inv_bc1 = (float)(1.0 / (1.0 - pow(b1, (double)o->step)));
    float inv_bc2 = (float)(1.0 / (1.0 - pow(b2, (double)o->step)));
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
        float gi = g[i] * gs;
        float mi = b1 * ms[i] + (1.0f - b1) * gi;
        float vi = b2 * vs[i] + (1.0f - b2) * gi * gi;
        ms[i] = mi;
        vs[i] = vi;
        float update = (mi * inv_bc1) / (sqrtf(vi * inv_bc2) + eps);
        p[i] -= lr * (update + wd * p[i]);
    }
}

/* Fixed-size chunks summed in order afterwards: the result is the same
 * whatever the number of threads (determinism of the gradient norm). */
#define SUMSQ_CHUNK ((int64_t)1 << 16)

static void cpu_sumsq(tensor *out, const tensor *x) {
    int64_t n = tensor_numel(x), chunks = (n + SUMSQ_CHUNK - 1) / SUMSQ_CHUNK;
    const float *xs = x->data;
    double *partial = malloc((size_t)(chunks ? chunks : 1) * sizeof(double));
    AIMC_CHECK(partial != NULL, "sumsq: out of memory for %lld partial sums", (long long)chunks);
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < chunks; c++) {
        int64_t end = (c + 1) * SUMSQ_CHUNK < n ? (c + 1) * SUMSQ_CHUNK : n;
        double acc = 0.0;
        for (int64_t i = c * SUMSQ_CHUNK; i < end; i++) acc += (double)xs[i] * xs[i];
        partial[c] = acc;
    }
    double total = 0.0;
    for (int64_t c = 0; c < chunks; c++) total += partial[c];
    free(partial);
    ((float *)out->data)[0] = (float)total;
}

void cpu_fill_optim(backend *b) {
    b->adamw = cpu_adamw;
    b->sumsq = cpu_sumsq;
}
