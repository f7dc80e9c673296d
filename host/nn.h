/* Building blocks shared by every model: Linear and LayerNorm/RMSNorm
 * layers loaded from a Hugging Face folder, and their forward / input-gradient
 * calls. Models are written once against these and host/ops.h. */
#ifndef AIMC_NN_H
#define AIMC_NN_H
#include "model_dir.h"
#include "ops.h"

/* y = x W^T + b; W [out, in] as stored by torch.nn.Linear. b.data is NULL
 * when the layer has no bias. */
typedef struct nn_linear {
    tensor w, b;
} nn_linear;

typedef enum { NN_LAYERNORM, NN_RMSNORM } nn_norm_kind;

/* b.data is NULL for RMSNorm (and LayerNorm without bias). */
typedef struct nn_norm {
    tensor w, b;
    float eps;
    nn_norm_kind kind;
} nn_norm;

/* Where and how a model's weights are loaded. */
typedef struct nn_loader {
    const model_dir *md;
    const backend *be;
    dtype wdt; /* storage of matrices (norms and biases stay f32) */
} nn_loader;

/* printf into a static ring of buffers: nn_name("%s.layers.%d.fc1", p, i).
 * Each result stays valid for the next 7 calls. */
const char *nn_name(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Loads "<prefix>.weight" [out, in] (and "<prefix>.bias" [out] when bias),
 * dying with a clear message on a missing or mis-shaped tensor. */
nn_linear nn_linear_load(const nn_loader *ld, const char *prefix, int64_t in, int64_t out, int bias);
nn_norm nn_norm_load(const nn_loader *ld, const char *prefix, int64_t dim, float eps,
                     nn_norm_kind kind, int bias);
/* A tensor with any expected shape (see model_dir_need), in dtype want. */
tensor nn_tensor_load(const nn_loader *ld, const char *name, dtype want, int ndim,
                      const int64_t *shape);
void nn_tensor_free(const backend *be, tensor *t);
void nn_linear_free(const backend *be, nn_linear *l);
void nn_norm_free(const backend *be, nn_norm *n);

/* y [.., out] = x [.., in] W^T + b */
void nn_linear_forward(tensor *y, const tensor *x, const nn_linear *l);
/* dx [.., in] = dy W (+ beta dx): the input gradient of a frozen Linear. */
void nn_linear_backward_input(tensor *dx, const tensor *dy, const nn_linear *l, float beta);
/* y = norm(x); rstd (and mean, LayerNorm only) [rows] f32 may be NULL. */
void nn_norm_forward(tensor *y, tensor *mean, tensor *rstd, const tensor *x, const nn_norm *n);
/* dx from dy for a frozen norm (no weight gradients). */
void nn_norm_backward_input(tensor *dx, const tensor *dy, const tensor *x, const tensor *mean,
                            const tensor *rstd, const nn_norm *n);
#endif
