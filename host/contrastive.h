/* The contrastive objective for CLIP: re-train the two projection heads and
 * logit_scale on frozen towers with the symmetric InfoNCE loss, negatives
 * gathered from every rank (the global batch).
 *
 * One step, on every rank (host/dist.h collectives; world 1 is local):
 *   1. frozen towers, no grad: pooled_v [b, Dv] = vision pooler_output
 *      (post_layernorm of the CLS row), pooled_t [b, Dt] = the text tower's
 *      final_layer_norm row at EOS (clip.h's pooling rule); both in f32;
 *   2. img = l2norm(pooled_v W_v^T), txt = l2norm(pooled_t W_t^T) [b, P];
 *   3. img_all, txt_all [N, P] = every rank's rows in rank order
 *      (allgatherv: ranks may hold different b, even 0); this rank's rows are
 *      columns [offset, offset + b);
 *   4. op_infonce with dscale = 1 / (2N): the loss is the mean over the global
 *      batch of (CE(image -> texts) + CE(text -> images)) / 2, transformers'
 *      CLIP loss on the whole global batch;
 *   5. gradients of the embeddings: the local rows' own gradients plus this
 *      rank's slice of the column gradients summed over ranks; then
 *      l2norm_backward and dW = dE^T pooled; head and logit_scale gradients
 *      summed over ranks (rank order: deterministic, the same on every rank);
 *   6. the update (contrastive_update): global-norm clipping and AdamW
 *      through projector_step (decay on the two weights, none on
 *      logit_scale), then logit_scale clamped to [0, logit_scale_max]
 *      (ln 100 by default), as CLIP / open_clip do after each step.
 * The loss and gradients equal those of one rank holding the whole global
 * batch up to f32 reduction order. There is no gradient accumulation: the
 * negatives of a contrastive step are its whole batch, so micro-batches
 * would change the objective.
 *
 * Parameters: heads->params is a projector (host/projector.h) used as a
 * parameter set only (never pass it to projector_forward/backward), so that
 * projector_step, projector_sumsq, ckpt_projector_tensors and
 * ckpt_projector_restore work on it unchanged. Its three parameters, under
 * transformers' CLIPModel state_dict names, so that an exported file is a
 * drop-in partial state_dict:
 *   visual_projection.weight [P, Dv]  decay
 *   text_projection.weight   [P, Dt]  decay
 *   logit_scale              [1]      no decay (CLIPModel holds it 0-d; torch's
 *                                     load_state_dict takes a [1] tensor for it)
 * initialised from the checkpoint's own values; f32 on the model's backend.
 * The checkpoint's projector text is contrastive_describe()'s.
 *
 * Text inputs: CLIP expects <|startoftext|> caption <|endoftext|>, padded
 * (pad id, mask 0) to the batch's length; contrastive_pack_text builds that
 * from tokens without special tokens, and contrastive_batch_from_episodes
 * builds a whole batch from k = 0 episodes (data/episode.h: one image +
 * caption each). */
#ifndef AIMC_CONTRASTIVE_H
#define AIMC_CONTRASTIVE_H
#include "../data/episode.h"
#include "arena.h"
#include "clip.h"
#include "projector.h"
#include <stddef.h>
#include <stdint.h>

#define CONTRASTIVE_LOGIT_SCALE_MAX 4.605170185988091 /* ln 100 */

/* Indices into heads->params.params. */
enum { CONTRASTIVE_VISUAL = 0, CONTRASTIVE_TEXT = 1, CONTRASTIVE_SCALE = 2, CONTRASTIVE_N_PARAMS = 3 };

typedef struct contrastive_heads {
    projector params;      /* the three parameters above, with grads and AdamW moments */
    int64_t dv, dt, p;     /* vision width, text width, projection_dim */
    float logit_scale;     /* host mirror of the parameter (op_infonce takes it by value) */
    float logit_scale_max; /* the clamp after each update */
} contrastive_heads;

/* One rank's share of a step: n image-caption pairs in host memory. */
typedef struct contrastive_batch {
    const float *pixels;  /* [n, C, H, W], normalised (data/preprocess.h) */
    const int32_t *ids;   /* [n, len] with BOS ... EOS, padded */
    const int32_t *mask;  /* [n, len] 1 = token, 0 = padding; NULL: no padding */
    int64_t n, len;
    int64_t channels, height, width;
} contrastive_batch;

typedef struct contrastive_opts {
    float lr, beta1, beta2, eps, weight_decay;
    float clip;   /* max global gradient norm; <= 0: no clipping */
    int64_t step; /* 1-based optimizer step (bias correction, and the step in dist errors) */
} contrastive_opts;

typedef struct contrastive_result {
    double loss;      /* mean over the global batch (the same on every rank) */
    double grad_norm; /* global norm of the summed gradients, before clipping */
    int64_t n_global; /* pairs in the global batch */
    int updated;      /* 0 when the loss or the norm was not finite (or N = 0): nothing changed */
} contrastive_result;

/* Heads initialised from m's visual_projection, text_projection and
 * logit_scale (f32 copies on m's backend), zero gradients and moments. */
void contrastive_init(contrastive_heads *h, const clip_model *m);
void contrastive_free(contrastive_heads *h);
/* "type=clip_heads d_vision=32 d_text=32 d_proj=16" (the checkpoint's
 * projector text). buf needs 96 bytes; returns buf. */
const char *contrastive_describe(const contrastive_heads *h, char *buf, size_t n);

/* Steps 1-5 for one rank's batch: the frozen towers, then
 * contrastive_loss_grads. Scratch comes from a (reset to where it was on
 * return). */
contrastive_result contrastive_grads(contrastive_heads *h, const clip_model *m, arena *a,
                                     const contrastive_batch *b, int64_t step);
/* Steps 2-5 from pooled features [b, Dv] and [b, Dt] (any float dtype, on
 * h's backend; b may be 0 on some ranks). Gradients overwrite the params'
 * grad buffers. Returns the global loss and N (grad_norm and updated unset). */
contrastive_result contrastive_loss_grads(contrastive_heads *h, arena *a, const tensor *pooled_v,
                                          const tensor *pooled_t, int64_t step);
/* Step 6. Returns the gradient norm before clipping; a non-finite norm
 * changes nothing. */
double contrastive_update(contrastive_heads *h, const contrastive_opts *o);
/* contrastive_grads then contrastive_update (skipped, updated = 0, when the
 * loss is not finite). */
contrastive_result contrastive_step(contrastive_heads *h, const clip_model *m, arena *a,
                                    const contrastive_batch *b, const contrastive_opts *o);

/* Re-reads the host mirror of logit_scale from the parameter (after
 * ckpt_projector_restore or any write to it). */
void contrastive_sync_scale(contrastive_heads *h);

/* ---- text and batches ------------------------------------------------------- */

/* CLIP's special tokens and the longest sequence the text tower takes. */
typedef struct contrastive_text_spec {
    int32_t bos, eos, pad;
    int64_t max_len; /* max_position_embeddings (77) */
} contrastive_text_spec;

/* The spec from a tokenizer (bos_token, eos_token, pad_token falling back to
 * eos) and the tower's max_position_embeddings. 0, or -1 with one line in
 * err when the tokenizer lacks BOS or EOS. */
int contrastive_text_spec_get(const tokenizer *tok, const clip_model *m,
                              contrastive_text_spec *spec, char *err, size_t errlen);
/* One row of len ids (and mask): BOS, the tokens with any BOS / EOS ids
 * among them dropped, cut so that EOS still fits, EOS, then pad ids with
 * mask 0. len >= 2. Returns the number of unmasked positions. */
int64_t contrastive_pack_text(const int32_t *tokens, int64_t n_tokens,
                              const contrastive_text_spec *spec, int64_t len, int32_t *ids,
                              int32_t *mask);

/* A batch that owns its host memory. */
typedef struct contrastive_owned_batch {
    contrastive_batch b;
    float *pixels;
    int32_t *ids, *mask;
} contrastive_owned_batch;

/* n episodes with k = 0 (the query item is the pair; its tokens are the
 * caption, e.g. target_template "{caption}" with an empty query_prompt):
 * pixels stacked, texts packed to the batch's longest (<= spec->max_len).
 * 0, or -1 with one line in err (an episode with demonstrations, images of
 * different sizes). */
int contrastive_batch_from_episodes(const episode *eps, int64_t n,
                                    const contrastive_text_spec *spec,
                                    contrastive_owned_batch *out, char *err, size_t errlen);
void contrastive_owned_batch_free(contrastive_owned_batch *b);
#endif
