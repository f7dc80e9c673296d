/* cpu reference: fused softmax cross-entropy, L2 normalisation and the
 * symmetric InfoNCE (CLIP) loss. Semantics in kernels/backend.h; the checked
 * wrappers (host/ops_loss.c) have validated dtypes and shapes already.
 * OpenMP runs over rows; every cross-row sum is taken serially in row order
 * so results do not depend on the thread count. Reductions inside a row
 * accumulate in double: this is the reference the cuda kernels are held to. */
#include "cpu.h"
#include <math.h>
#include <stdlib.h>

#define IGNORE_INDEX (-100)

/* ---- cross-entropy ---------------------------------------------------- */

/* Softmax cross-entropy of one row x[V] against class `target`; x is
 * overwritten with (softmax - onehot) * dscale and the loss returned.
 * Pass 1 keeps a running max m and s = sum exp(x - m), rescaling s whenever
 * m grows (one read of the row instead of two); pass 2 writes the gradient. */
static float ce_row(float *x, int64_t V, int64_t target, float dscale) {
    float m = -INFINITY;
    double s = 0.0;
    for (int64_t j = 0; j < V; j++) {
        if (x[j] > m) {
            s = s * exp((double)m - (double)x[j]) + 1.0;
            m = x[j];
        } else {
            s += (double)expf(x[j] - m);
        }
    }
    double x_target = x[target];
    float loss = (float)(log(s) + (double)m - x_target);
    float p_scale = (float)(1.0 / s) * dscale;
    for (int64_t j = 0; j < V; j++) x[j] = expf(x[j] - m) * p_scale;
    /* p - 1 in double: when the target dominates, p rounds to 1 in f32 */
    x[target] = (float)((exp(x_target - (double)m) / s - 1.0) * (double)dscale);
    return loss;
}

/* Targets must be a class index or the ignore index; checked before any
 * thread starts so the message names the first bad row. */
static void ce_validate_targets(const int32_t *t, int64_t N, int64_t V) {
    for (int64_t i = 0; i < N; i++)
        if (t[i] != IGNORE_INDEX && (t[i] < 0 || t[i] >= V))
            aimc_die("cross_entropy: row %lld has target %d, outside [0, %lld) and not the "
                     "ignore index -100",
                     (long long)i, (int)t[i], (long long)V);
}

static void cpu_cross_entropy(tensor *loss, tensor *logits, const tensor *targets, float dscale) {
    int64_t V = tensor_cols(logits), N = tensor_rows_count(logits);
    float *x = logits->data, *out = loss->data;
    const int32_t *t = targets->data;
    ce_validate_targets(t, N, V);
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t i = 0; i < N; i++) {
        float *row = x + i * V;
        if (t[i] == IGNORE_INDEX) {
            for (int64_t j = 0; j < V; j++) row[j] = 0.0f;
            out[i] = 0.0f;
        } else {
            out[i] = ce_row(row, V, t[i], dscale);
        }
    }
}

/* ---- L2 normalisation ------------------------------------------------- */

/* A zero row would divide by zero; like torch's F.normalize the norm is
 * clamped from below, so such a row maps to zero instead of NaN. */
#define L2NORM_MIN 1e-12

static void cpu_l2norm(tensor *y, tensor *rnorm, const tensor *x) {
    int64_t D = tensor_cols(x), rows = tensor_rows_count(x);
    const float *xs = x->data;
    float *ys = y->data, *rn = rnorm->data;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < rows; i++) {
        const float *xi = xs + i * D;
        double ss = 0.0;
        for (int64_t j = 0; j < D; j++) ss += (double)xi[j] * xi[j];
        double r = 1.0 / fmax(sqrt(ss), L2NORM_MIN);
        for (int64_t j = 0; j < D; j++) ys[i * D + j] = (float)(xi[j] * r);
        rn[i] = (float)r;
    }
}

/* y = x / |x|  =>  dx = (dy - y (y . dy)) / |x| */
static void cpu_l2norm_backward(tensor *dx, const tensor *dy, const tensor *y,
                                const tensor *rnorm) {
    int64_t D = tensor_cols(y), rows = tensor_rows_count(y);
    const float *dys = dy->data, *ys = y->data, *rn = rnorm->data;
    float *dxs = dx->data;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < rows; i++) {
        const float *yi = ys + i * D, *dyi = dys + i * D;
        double ydy = 0.0;
        for (int64_t j = 0; j < D; j++) ydy += (double)yi[j] * dyi[j];
        for (int64_t j = 0; j < D; j++)
            dxs[i * D + j] = (float)(((double)dyi[j] - (double)yi[j] * ydy) * rn[i]);
    }
}

/* ---- InfoNCE ---------------------------------------------------------- */

/* One direction of the contrastive loss: local rows r [b, D] against all
 * columns c [N, D]; row i's positive is column offset + i. g [b, N] is
 * scratch (logits, then their gradients). */
typedef struct infonce_side {
    const float *rows, *cols;
    float *d_rows, *d_cols;
    int64_t b, N, D, offset;
} infonce_side;

static double dot_f64(const float *a, const float *b, int64_t n) {
    double acc = 0.0;
    for (int64_t k = 0; k < n; k++) acc += (double)a[k] * b[k];
    return acc;
}

/* g[i, :] = dscale * (softmax(s r_i . c^T) - onehot(offset + i)); returns the
 * summed loss of the b rows (summed in row order). */
static double infonce_logit_grads(const infonce_side *q, float *g, float s, float dscale) {
    float *row_loss = aimc_xmalloc((size_t)q->b * sizeof(float));
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < q->b; i++) {
        float *gi = g + i * q->N;
        for (int64_t j = 0; j < q->N; j++)
            gi[j] = (float)(s * dot_f64(q->rows + i * q->D, q->cols + j * q->D, q->D));
        row_loss[i] = ce_row(gi, q->N, q->offset + i, dscale);
    }
    double total = 0.0;
    for (int64_t i = 0; i < q->b; i++) total += row_loss[i];
    free(row_loss);
    return total;
}

/* out[o, :] = s * sum_k w(o, k) * vecs[k, :], with w(o, k) = g[o*so + k*sk]:
 * the rows' gradient reads g by rows, the columns' gradient by columns. */
static void infonce_weighted_sums(float *out, int64_t n_out, const float *g, int64_t so,
                                  int64_t sk, const float *vecs, int64_t n_vecs, int64_t D,
                                  float s) {
#pragma omp parallel
    {
        double *acc = aimc_xmalloc((size_t)D * sizeof(double));
#pragma omp for schedule(static)
        for (int64_t o = 0; o < n_out; o++) {
            for (int64_t d = 0; d < D; d++) acc[d] = 0.0;
            for (int64_t k = 0; k < n_vecs; k++) {
                double w = g[o * so + k * sk];
                const float *v = vecs + k * D;
                for (int64_t d = 0; d < D; d++) acc[d] += w * v[d];
            }
            for (int64_t d = 0; d < D; d++) out[o * D + d] = (float)(s * acc[d]);
        }
        free(acc);
    }
}

/* Loss of one direction; writes d_rows, d_cols and adds this direction's
 * share of d loss / d logit_scale to *d_ls. Since logit_ij = s r_i . c_j and
 * d logit_ij / d logit_scale = logit_ij, that share is
 * sum_ij g_ij logit_ij = sum_i r_i . d_rows_i. */
static double infonce_side_run(const infonce_side *q, float *g, float s, float dscale,
                               double *d_ls) {
    double loss = infonce_logit_grads(q, g, s, dscale);
    infonce_weighted_sums(q->d_rows, q->b, g, q->N, 1, q->cols, q->N, q->D, s);
    infonce_weighted_sums(q->d_cols, q->N, g, 1, q->N, q->rows, q->b, q->D, s);
    for (int64_t i = 0; i < q->b; i++)
        *d_ls += dot_f64(q->rows + i * q->D, q->d_rows + i * q->D, q->D);
    return loss;
}

static void cpu_infonce(tensor *loss, tensor *d_img, tensor *d_txt, tensor *d_img_all,
                        tensor *d_txt_all, tensor *d_logit_scale, const tensor *img,
                        const tensor *txt, const tensor *img_all, const tensor *txt_all,
                        int64_t offset, float logit_scale, float dscale) {
    int64_t b = img->shape[0], N = img_all->shape[0], D = tensor_cols(img);
    float s = expf(logit_scale);
    infonce_side i2t = {img->data, txt_all->data, d_img->data, d_txt_all->data, b, N, D, offset};
    infonce_side t2i = {txt->data, img_all->data, d_txt->data, d_img_all->data, b, N, D, offset};
    float *g = aimc_xmalloc((size_t)b * (size_t)N * sizeof(float));
    double d_ls = 0.0;
    double total = infonce_side_run(&i2t, g, s, dscale, &d_ls);
    total += infonce_side_run(&t2i, g, s, dscale, &d_ls);
    free(g);
    ((float *)loss->data)[0] = (float)total;
    ((float *)d_logit_scale->data)[0] = (float)d_ls;
}

void cpu_fill_loss(backend *b) {
    b->cross_entropy = cpu_cross_entropy;
    b->l2norm = cpu_l2norm;
    b->l2norm_backward = cpu_l2norm_backward;
    b->infonce = cpu_infonce;
}
