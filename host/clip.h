/* CLIP (transformers' CLIPModel): the vision tower (host/vit.h, VIT_CLIP),
 * the text tower, the two projections and the image-text logits and
 * contrastive loss. Forward only: the towers are frozen.
 *
 * Text tower: token + learned position embeddings (positions 0..T-1 whatever
 * the padding), the shared pre-LN encoder with a causal mask and the
 * attention_mask as a key mask, final_layer_norm over every position.
 * Pooling picks one row per sequence: when text_config.eos_token_id is 2 (the
 * value before transformers PR #24773) the position of the largest id,
 * otherwise the first position whose id is eos_token_id (position 0 when
 * there is none, as torch's argmax of an all-zero row).
 *
 * Weights (prefix P, "" for a CLIPModel folder): P.text_model.embeddings.
 * {token_embedding,position_embedding}.weight, P.text_model.encoder.layers.*,
 * P.text_model.final_layer_norm, P.vision_model.* (vit.h),
 * P.visual_projection.weight, P.text_projection.weight (no biases),
 * P.logit_scale. Config: text_config.*, vision_config.*, projection_dim. */
#ifndef AIMC_CLIP_H
#define AIMC_CLIP_H
#include "vit.h"

typedef struct clip_text {
    enc_config enc;
    int64_t vocab, max_pos, eos_token_id;
    tensor tok_emb; /* [vocab, D], weight dtype */
    tensor pos_emb; /* [max_pos, D], activation dtype */
    encoder encoder;
    nn_norm final_ln;
    const backend *be;
} clip_text;

/* prefix "text_model", cfg_prefix "text_config". */
void clip_text_load(clip_text *t, const nn_loader *ld, const char *prefix, const char *cfg_prefix);
void clip_text_free(clip_text *t);
/* input_ids [B, T] i32 and attention_mask [B, T] (f32 1/0, or NULL: no
 * padding) on any backend; ids outside the vocabulary die with one line.
 * Returns hidden_states[layer] (indexing as in vit.h: 0 = embeddings, -1 =
 * last layer, before final_layer_norm) as [B, T, D]; apply_final_ln applies
 * final_layer_norm (last_hidden_state when layer is -1). */
tensor clip_text_forward(const clip_text *t, arena *a, const tensor *input_ids,
                         const tensor *attention_mask, int64_t layer, int apply_final_ln);
/* pooler_output [B, D]: the row of last_hidden_state chosen by the EOS rule. */
tensor clip_text_pool(const clip_text *t, arena *a, const tensor *last_hidden,
                      const tensor *input_ids);

typedef struct clip_model {
    vit_model *vision;
    clip_text text;
    nn_linear visual_proj, text_proj; /* [proj, D_vision], [proj, D_text] */
    int64_t proj_dim;
    float logit_scale; /* log of the logits' multiplier */
    const backend *be;
} clip_model;

/* Every output of CLIPModel.forward (tensors from the arena). Activations are
 * in the backend's activation dtype; embeds, logits and loss are f32. */
typedef struct clip_output {
    tensor vision_last_hidden, vision_pooled; /* [Ni, Tv, Dv], [Ni, Dv] */
    tensor text_last_hidden, text_pooled;     /* [Nt, T, Dt] (after final LN), [Nt, Dt] */
    tensor image_embeds, text_embeds;         /* [Ni, P], [Nt, P], unit rows */
    tensor logits_per_image, logits_per_text; /* [Ni, Nt], [Nt, Ni] */
    tensor loss; /* [1]: mean of the two cross-entropies; data NULL unless Ni == Nt */
} clip_output;

clip_model *clip_load(const nn_loader *ld, const char *prefix);
void clip_free(clip_model *m);
/* The whole CLIPModel forward (return_loss when Ni == Nt). */
void clip_forward(const clip_model *m, arena *a, const tensor *pixel_values,
                  const tensor *input_ids, const tensor *attention_mask, clip_output *out);
/* Unit-norm projected embeddings from pooled outputs ([N, D] -> [N, P] f32). */
tensor clip_embed(arena *a, const tensor *pooled, const nn_linear *proj);
#endif
