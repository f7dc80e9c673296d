/* The vision transformer written once for every backbone, and the pre-LN
 * transformer encoder it shares with CLIP's text tower.
 *
 * Two weight layouts (transformers' modeling_clip.py / modeling_blip_2.py):
 *  VIT_CLIP  CLIP's vision tower (CLIP itself, LLaVA's CLIP ViT-L/14-336):
 *            conv patch embedding without bias, class_embedding [D],
 *            position_embedding.weight [T, D], pre_layrnorm over the whole
 *            sequence, separate self_attn.{q,k,v,out}_proj, LayerNorm eps and
 *            activation from the config (defaults 1e-5, quick_gelu).
 *  VIT_EVA   BLIP-2's EVA ViT-g: conv patch embedding with bias,
 *            class_embedding [1, 1, D], position_embedding [1, T, D], no
 *            pre-LN, one fused self_attn.qkv Linear (rows [q | k | v]) whose
 *            bias is either stored whole (qkv.bias [3D], transformers v5) or as
 *            q_bias / v_bias with a zero k bias (older files), output
 *            self_attn.projection (defaults 1e-6, gelu).
 * Both: encoder.layers.{i}.{layer_norm1, layer_norm2, mlp.fc1, mlp.fc2},
 * post_layernorm.
 *
 * Hidden states follow transformers' hidden_states indexing: index 0 is the
 * input of the first encoder layer (after pre_layrnorm for CLIP), index i
 * the output of layer i, index L (= number of layers) the last layer's
 * output, before post_layernorm. Negative indices count from the end
 * (-1 = L, -2 = L - 1: LLaVA's vision_feature_layer). */
#ifndef AIMC_VIT_H
#define AIMC_VIT_H
#include "arena.h"
#include "nn.h"

typedef enum { VIT_CLIP, VIT_EVA } vit_style;

/* Sizes and options of a pre-LN transformer encoder. */
typedef struct enc_config {
    int64_t dim, heads, head_dim, mlp_dim, layers;
    act_kind act;
    float eps;    /* LayerNorm eps (every norm of the tower) */
    int qkv_bias; /* EVA: the fused qkv has a bias (config qkv_bias, default true) */
} enc_config;

/* One pre-LN block: x += out(attn(ln1(x))); x += fc2(act(fc1(ln2(x)))).
 * With a fused qkv (EVA), q, k and v are row views of qkv, which owns the
 * memory; otherwise qkv is empty and q, k, v own theirs. */
typedef struct enc_layer {
    nn_norm ln1, ln2;
    nn_linear qkv, q, k, v, out, fc1, fc2;
} enc_layer;

typedef struct encoder {
    enc_config cfg;
    enc_layer *layers; /* cfg.layers of them */
} encoder;

/* The encoder sizes under cfg_prefix ("vision_config", "text_config", or ""
 * for a config.json that is the tower's own). hidden_size,
 * intermediate_size, num_hidden_layers and num_attention_heads are
 * required; hidden_act and layer_norm_eps default to the given values (the
 * transformers class defaults). Dies with one line on a missing key, an
 * unknown activation or a width that the heads do not divide. */
enc_config enc_config_read(const model_dir *md, const char *cfg_prefix, const char *default_act,
                           double default_eps);
/* Loads "<prefix>.layers.{i}.*" ("vision_model.encoder"). */
void encoder_load(encoder *e, const nn_loader *ld, const char *prefix, const enc_config *cfg,
                  vit_style style);
void encoder_free(encoder *e, const backend *be);
/* Runs layers [first, last) in place on x [B, T, D] (activation dtype).
 * Temporaries come from `a` and are released again before it returns. */
void encoder_run(const encoder *e, arena *a, tensor *x, int64_t first, int64_t last,
                 const attn_opts *o);

typedef struct vit_model {
    vit_style style;
    enc_config enc;
    int64_t channels, image_size, patch_size, grid, seq_len; /* seq_len = grid^2 + 1 */
    tensor patch_w;   /* [D, C * p * p]: the conv kernel as a Linear over unfolded patches */
    tensor patch_b;   /* [D] (EVA); data NULL for CLIP */
    tensor class_emb; /* [D] */
    tensor pos_emb;   /* [seq_len, D] */
    nn_norm pre_ln;   /* CLIP only (w.data NULL for EVA) */
    nn_norm post_ln;
    encoder encoder;
    const backend *be;
} vit_model;

/* prefix: where the tower's weights live ("vision_model" in CLIP and BLIP-2,
 * "vision_tower" in LLaVA, "" in a CLIPVisionModel folder); when the tensors
 * sit one level deeper under "<prefix>.vision_model" (transformers v4's
 * CLIPVisionModel wrapper, as in llava-hf checkpoints) that is used instead.
 * cfg_prefix: its config ("vision_config", or "" when config.json is the
 * tower's own). Required keys beyond
 * enc_config_read's: image_size, patch_size. Dies with one line naming the
 * key or tensor on a config or checkpoint that does not fit. */
vit_model *vit_load(const nn_loader *ld, const char *prefix, const char *cfg_prefix,
                    vit_style style);
void vit_free(vit_model *m);
/* The hidden_states index `layer` (negative from the end) as 0..layers;
 * dies naming the value when it is out of range. */
int64_t vit_layer_index(const vit_model *m, int64_t layer);
/* pixel_values [N, C, H, W] f32 on any backend (H = W = image_size), already
 * normalised. Returns hidden_states[layer] as [N, seq_len, D] in the
 * backend's activation dtype, allocated from `a` (row 0 of each image is the
 * CLS token); apply_post_ln applies post_layernorm to every row (BLIP-2's
 * last_hidden_state). Only the layers needed for `layer` run. */
tensor vit_forward(const vit_model *m, arena *a, const tensor *pixel_values, int64_t layer,
                   int apply_post_ln);
/* CLIP's pooler_output: post_layernorm(hidden[:, 0]) -> [N, D]. */
tensor vit_pool(const vit_model *m, arena *a, const tensor *hidden);

/* hidden [N, T, D] without each image's CLS row -> [N, T - 1, D], contiguous
 * (LLaVA's vision_feature_select_strategy "default"). */
tensor vit_drop_cls(arena *a, const tensor *hidden);

/* Helpers shared with the other towers. */
/* "<prefix>.<key>", or just key for an empty prefix (nn_name's ring). */
const char *vit_key(const char *prefix, const char *key);
/* Copies a name (e.g. from nn_name's short-lived ring) into dst[n]. */
void vit_copy_name(char *dst, size_t n, const char *src);
/* A copy of t (any backend, any dtype with `want`'s element kind: float ->
 * float, i32 -> i32) as a new `want` tensor on a's backend. */
tensor vit_to_backend(arena *a, const tensor *t, dtype want);
#endif
