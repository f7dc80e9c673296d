/* The trainable AIM projector: hidden states of the frozen model at the
 * demonstration's text positions [N, d_in] -> fused virtual tokens [N, d_out]
 * in the language model's input-embedding space (one per text token).
 *
 * Types (PyTorch module each one equals, and its state_dict names):
 *   linear     fused = x W^T + b            nn.Linear(d_in, d_out)
 *              linear.weight [d_out, d_in], linear.bias [d_out]
 *   linear_ln  fused = LayerNorm(x W^T + b) linear = nn.Linear(d_in, d_out),
 *              norm = nn.LayerNorm(d_out, eps): linear.weight, linear.bias,
 *              norm.weight [d_out], norm.bias [d_out]
 *   mlp        fused = fc2(GELU(fc1(x)))    fc1 = nn.Linear(d_in, d_hidden),
 *              exact (erf) GELU,            fc2 = nn.Linear(d_hidden, d_out):
 *              fc1.weight, fc1.bias, fc2.weight, fc2.bias
 *
 * Initialisation (torch's defaults, drawn from our own seeded generator so a
 * seed gives the same projector on every machine):
 *   every Linear weight and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)), which
 *   is what nn.Linear's kaiming_uniform_(a = sqrt(5)) and its bias init give;
 *   LayerNorm weight = 1, bias = 0. Values are drawn in parameter order
 *   (the order of the list above), each weight row-major, from splitmix64
 *   seeded with cfg.seed: u = (next() >> 40) / 2^24 in [0, 1), value =
 *   bound * (2u - 1) computed in double and rounded to f32.
 *
 * Storage: parameters, their gradients and the AdamW moments m, v are f32 on
 * the backend (the master copy). Activations keep the input's dtype (f32 on
 * cpu, the backend's act dtype on cuda): the fused tokens come out in x's
 * dtype, ready to be scattered into the decoder's input embeddings.
 *
 * Gradient accumulation: projector_backward(.., accumulate = 0) overwrites
 * the gradient buffers, accumulate = 1 adds to them. The first micro-batch of
 * a step passes 0, later ones 1 (or call projector_zero_grad first and pass
 * 1 throughout). Only parameter gradients are computed: the projector's input
 * is the frozen model's hidden states, which need no gradient.
 *
 * Everything goes through host/ops.h, so the projector runs on any backend. */
#ifndef AIMC_PROJECTOR_H
#define AIMC_PROJECTOR_H
#include "arena.h"
#include "ops.h"
#include <stddef.h>
#include <stdint.h>

typedef enum { PROJ_LINEAR = 0, PROJ_LINEAR_LN, PROJ_MLP, PROJ_TYPE_COUNT } projector_type;

typedef struct projector_config {
    projector_type type;
    int64_t d_in, d_out;
    int64_t d_hidden; /* mlp only (0 means d_out); ignored otherwise */
    float ln_eps;     /* linear_ln only (torch's default 1e-5); ignored otherwise */
    uint64_t seed;    /* initialisation; not part of the canonical description */
} projector_config;

#define PROJECTOR_MAX_PARAMS 4
#define PROJECTOR_NAME_MAX 32

typedef struct projector_param {
    char name[PROJECTOR_NAME_MAX]; /* PyTorch state_dict name: "linear.weight" */
    tensor value, grad, m, v;      /* f32 on the backend, all the same shape */
    int decay;                     /* AdamW weight decay applies: Linear weights only */
} projector_param;

typedef struct projector {
    projector_config cfg;
    const backend *be;
    int n_params;
    projector_param params[PROJECTOR_MAX_PARAMS];
    tensor sumsq; /* [n_params] f32 scratch for the gradient norm */
} projector;

/* What projector_backward needs from one projector_forward. x is the
 * caller's input tensor (by value: the caller keeps its memory alive until
 * the backward); the rest lives in the arena passed to the forward. */
typedef struct projector_saved {
    tensor x;
    tensor pre;        /* linear_ln: the linear output before the norm; mlp: fc1 output */
    tensor act;        /* mlp: GELU(pre) */
    tensor mean, rstd; /* linear_ln: row statistics [rows] f32 */
} projector_saved;

const char *projector_type_name(projector_type type); /* "linear", "linear_ln", "mlp" */
/* Also accepts "linear+layernorm" and "linear+ln" for linear_ln; -1 if unknown. */
int projector_type_parse(const char *name);

/* NULL when cfg is usable, else err holding one line that names the bad field. */
const char *projector_config_check(const projector_config *cfg, char *err, size_t errlen);
/* The canonical one-line description (the checkpoint hashes it):
 *   "type=linear d_in=32 d_out=32"
 *   "type=linear_ln d_in=32 d_out=32 ln_eps=1e-05"
 *   "type=mlp d_in=32 d_hidden=64 d_out=32"
 * Returns buf (truncated descriptions abort: buf must hold 160 bytes). */
const char *projector_describe(const projector_config *cfg, char *buf, size_t n);
/* Inverse of projector_describe (seed set to 0). 0, or -1 with err set. */
int projector_config_parse(const char *text, projector_config *cfg, char *err, size_t errlen);

/* Allocates and initialises the parameters (see the header comment); zero
 * gradients and moments. cfg must pass projector_config_check. */
void projector_init(projector *p, const backend *be, const projector_config *cfg);
void projector_free(projector *p);
/* Number of trainable scalars. */
int64_t projector_numel(const projector *p);
/* A zeroed f32 tensor on be (aborts naming the size when allocation fails). */
tensor projector_alloc_f32(const backend *be, int ndim, const int64_t *shape);
/* Registers a parameter (value, grad, m, v: zeroed f32 on p->be) with weight
 * decay on or off; for parameter sets built outside projector_init (CLIP heads). */
projector_param *projector_add_param(projector *p, const char *name, int ndim, const int64_t *shape,
                                     int decay);
/* The parameter named name, or NULL. */
projector_param *projector_find(projector *p, const char *name);

/* fused [.., d_out] (x's leading dims, x's dtype, from the arena) for x
 * [.., d_in]. saved may be NULL when no backward follows. */
tensor projector_forward(const projector *p, arena *ar, const tensor *x, projector_saved *saved);
/* Parameter gradients of sum(d_fused * fused): overwritten (accumulate = 0)
 * or added (accumulate = 1). Scratch comes from ar. */
void projector_backward(projector *p, arena *ar, const projector_saved *saved,
                        const tensor *d_fused, int accumulate);
void projector_zero_grad(projector *p);

/* Sum of squares of every gradient buffer, reduced per parameter by op_sumsq
 * and then in parameter order in double (deterministic). */
double projector_sumsq(projector *p);

/* One optimiser step, torch-style:
 *   g = grad * o->grad_scale (e.g. 1 / micro-batches);
 *   norm = ||g|| over all parameters (the global norm);
 *   when clip > 0, g *= min(1, clip / (norm + 1e-6))  (clip_grad_norm_);
 *   AdamW (op_adamw) with lr, o->beta1/beta2/eps, o->step (1-based), and
 *   o->weight_decay on parameters with decay set (biases and norms get none).
 * o->lr is ignored (lr is the schedule's value). Returns norm (before
 * clipping). A non-finite norm changes nothing (no update, moments kept) and
 * is returned so the caller can report the step. */
double projector_step(projector *p, const adamw_opts *o, float lr, float clip);
#endif
