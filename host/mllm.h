/* One interface to the frozen multimodal LLMs AIM runs on: LLaVA-1.5
 * (transformers' LlavaForConditionalGeneration) and BLIP-2
 * (Blip2ForConditionalGeneration with an OPT or LLaMA language model).
 * The architecture comes from config.json's model_type ("llava", "blip-2"),
 * or architectures[0] when model_type is absent; anything else is a
 * one-line error naming it.
 *
 * Image tokens (what replaces the <image> embeddings in the LM input):
 *  - LLaVA: the CLIP vision tower's hidden_states[vision_feature_layer]
 *    (default -2: before post_layernorm), the CLS row dropped
 *    (vision_feature_select_strategy "default"; "full" keeps it), then
 *    multi_modal_projector: linear_2(act(linear_1(x))), act =
 *    projector_hidden_act (default "gelu", exact). n = grid^2 (+1 for "full").
 *  - BLIP-2: the EVA tower's last layer with post_layernorm over the whole
 *    sequence -> Q-Former (host/qformer.h) -> language_projection.
 *    n = num_query_tokens.
 * inputs_embeds = the LM's token embeddings with the image tokens written
 * over the rows whose id is image_token_id, in row-major order (LLaVA; and
 * BLIP-2 configs with image_token_index, as Blip2Processor lays them out).
 * A BLIP-2 config without image_token_index (older checkpoints) instead
 * puts each sample's image tokens in front of its text: inputs_embeds is
 * [B, n + T, D] and the mask gains n ones in front (mllm_input_len,
 * mllm_input_mask); labels then cover the text only (decoder_lm_loss lines
 * them up with the last positions).
 *
 * Native single-image layout (docs/aim-step.md): LLaVA [BOS][IMG][text],
 * BLIP-2 [IMG][BOS][text].
 *
 * Weight names: LLaVA's older (language_model.model.*, vision_tower.*,
 * multi_modal_projector.*) and newer (model.language_model.*, ...) layouts
 * both load (model_dir aliases), with or without the vision tower's
 * ".vision_model" level; BLIP-2: vision_model.*, query_tokens, qformer.*,
 * language_projection.*, language_model.* (lm_head tied for OPT). Absent
 * config keys take transformers' class defaults. */
#ifndef AIMC_MLLM_H
#define AIMC_MLLM_H
#include "decoder.h"
#include "qformer.h"
#include "vit.h"

typedef enum { MLLM_LLAVA, MLLM_BLIP2 } mllm_arch;
typedef enum {
    MLLM_LAYOUT_BOS_IMAGE, /* LLaVA: [BOS] [image tokens] [text] */
    MLLM_LAYOUT_IMAGE_BOS  /* BLIP-2: [image tokens] [BOS] [text] */
} mllm_layout;

typedef struct mllm {
    mllm_arch arch;
    const backend *be;
    vit_model *vision;
    decoder *lm;
    int64_t d_model;        /* the LM's hidden size */
    int64_t tokens_per_image;
    int32_t image_token_id; /* -1: BLIP-2 without image_token_index (prepends) */
    int32_t bos_id, pad_id; /* pad_id -1 when the config names none */
    mllm_layout layout;
    /* LLaVA */
    int64_t feature_layer;  /* vision hidden_states index (non-negative) */
    int keep_cls;           /* vision_feature_select_strategy "full" */
    nn_linear proj1, proj2; /* multi_modal_projector.linear_{1,2} */
    act_kind proj_act;
    /* BLIP-2 */
    qformer *qformer;
    nn_linear lang_proj;    /* language_projection */
} mllm;

/* The architecture named by an opened folder's config.json, or -1 (with
 * what it names in what[n]) when it is not one of mllm_arch. */
int mllm_detect(const model_dir *md, char *what, size_t n);
/* Loads everything from a Hugging Face folder; weights (matrices) stored as
 * wdt, activations in be->act_dtype. Dies with one line on an unknown
 * architecture, a config missing a required key, or a missing or
 * mis-shaped tensor. */
mllm *mllm_load(const char *dir, const backend *be, dtype wdt);
void mllm_free(mllm *m);

/* Queries. */
int64_t mllm_d_model(const mllm *m);
int64_t mllm_tokens_per_image(const mllm *m);
int32_t mllm_image_token_id(const mllm *m);
int32_t mllm_bos_id(const mllm *m);
mllm_layout mllm_native_layout(const mllm *m);
/* The language model: run decoder_forward / decoder_backward /
 * decoder_lm_loss on the inputs_embeds built here. */
const decoder *mllm_decoder(const mllm *m);

/* pixel_values [N, 3, H, W] f32 (any backend, already normalised) ->
 * image tokens [N, tokens_per_image, d_model] in the activation dtype, from
 * a (temporaries released). */
tensor mllm_image_tokens(const mllm *m, arena *a, const tensor *pixel_values);
/* mllm_image_tokens calls so far in this process, over every model: one
 * vision-tower pass each, over all the images it is given (always on; a
 * relaxed atomic count like decoder_counts_now). */
uint64_t mllm_image_passes(void);

/* The LM input for host input_ids [batch * len] (i32) and the image tokens
 * of the batch's images in order ([N, n, D], or NULL for none): [batch,
 * mllm_input_len(len), D] from a. The number of image_token_id ids must be
 * N * n (prepending: N == batch); a mismatch, or an id outside the
 * vocabulary, is a one-line error. */
tensor mllm_build_inputs(const mllm *m, arena *a, const int32_t *input_ids, int64_t batch,
                         int64_t len, const tensor *image_tokens);
/* The sequence length of inputs_embeds for len text tokens. */
int64_t mllm_input_len(const mllm *m, int64_t len);
/* The attention mask for inputs_embeds ([batch * mllm_input_len(len)],
 * malloc'd) from the text's (NULL: all ones). */
int32_t *mllm_input_mask(const mllm *m, const int32_t *mask, int64_t batch, int64_t len);
/* The inverse of the scatter: rows of x [batch, mllm_input_len(len), C]
 * (e.g. d loss / d inputs_embeds) at the image positions -> [N, n, C] with
 * N = (number of image positions) / n, from a. */
tensor mllm_gather_image_rows(const mllm *m, arena *a, const int32_t *input_ids, int64_t batch,
                              int64_t len, const tensor *x);
#endif
