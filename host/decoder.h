/* The frozen language model of a multimodal backbone: one decoder-only
 * transformer interface that LLaMA (LLaVA-1.5) and OPT (BLIP-2) both
 * implement, numerically as transformers' modeling_llama.py /
 * modeling_opt.py compute it.
 *
 * What AIM needs from it, and what this offers:
 *  - token embeddings (decoder_embed_tokens);
 *  - a forward pass over inputs_embeds [B, T, D] with an attention mask,
 *    returning logits [B, T, V] (f32) and/or the hidden states of one layer
 *    (decoder_forward);
 *  - a backward pass from d logits and/or d hidden states to d
 *    inputs_embeds only (frozen weights: activation gradients, no weight
 *    gradients) (decoder_backward);
 *  - the causal-LM loss as transformers computes it (decoder_lm_loss);
 *  - a KV cache for generation: a prefill and one-token decode steps that
 *    append to it (decoder_cache_*, decoder_step).
 *
 * One block serves both architectures (pre-norm):
 *   x += o(attn(rope?(q(n1(x))), rope?(k(n1(x))), v(n1(x))))
 *   x += down(mlp(n2(x)))     mlp = silu(gate(h)) * up(h)  (LLaMA, SwiGLU)
 *                                 = act(fc1(h))            (OPT: up = fc1, down = fc2)
 * then a final norm and the LM head. LLaMA: RMSNorm, rotary positions
 * (half-split), GQA, usually no biases, untied head. OPT: LayerNorm with
 * bias, learned positions (offset 2) added to the input embeddings, every
 * Linear with bias, ReLU, tied head. OPT multiplies q by head_dim^-0.5
 * before q.k^T; here the attention op's scale does it (same math, rounding
 * differs at the last bit).
 *
 * Hidden states use transformers' hidden_states indexing: index 0 is the
 * input of the first layer (inputs_embeds for LLaMA; inputs_embeds + the
 * position embeddings for OPT), index i the output of layer i, and the last
 * index (= number of layers) the output of the FINAL NORM: transformers
 * replaces the last layer's raw output by last_hidden_state (both
 * LlamaModel and OPTDecoder). Negative indices count from the end (-1 = the
 * last).
 *
 * Positions. LLaMA's rotary positions follow transformers: a plain forward
 * (position_ids None) uses arange(T) + cache length whatever the padding
 * (DEC_POS_ARANGE); generate() passes cumsum(mask) - 1 with 0 at pads
 * (DEC_POS_FROM_MASK), which differs under left padding. OPT always derives
 * them from the mask: cumsum(mask) * mask - 1, looked up at pos + 2.
 *
 * Padding. attention_mask entries are 1 (attend) or 0 (pad). Pad positions
 * are masked as keys; a query row that sees no key at all (left padding)
 * gives a zero attention output, where transformers' value depends on its
 * attention implementation: compare outputs at non-pad positions only.
 *
 * Memory. Every activation comes from the caller's arena (backend memory);
 * the pass keeps tensors that point into it, valid until the arena is reset
 * or rewound below them. Weights are in the loader's dtype; activations in
 * the backend's act_dtype (f32 on cpu, bf16 on cuda); logits, masks and
 * norm statistics in f32. */
#ifndef AIMC_DECODER_H
#define AIMC_DECODER_H
#include "arena.h"
#include "nn.h"

typedef enum { DEC_LLAMA, DEC_OPT } decoder_arch;
typedef enum { DEC_POS_ARANGE, DEC_POS_FROM_MASK } decoder_pos_mode;

typedef struct decoder_config {
    decoder_arch arch;
    int64_t vocab, hidden, layers, heads, kv_heads, head_dim, ffn;
    int64_t pos_rows;  /* OPT: rows of the learned position table (max_position_embeddings + 2) */
    float rope_theta;  /* LLaMA: rotary base; 0 for OPT (learned positions) */
    int gated_mlp;     /* 1: down(silu(gate) * up) (LLaMA); 0: down(act(up)) (OPT) */
    act_kind act;      /* the activation of a plain MLP */
    int tied_head;     /* the LM head is the token embedding table */
} decoder_config;

typedef struct decoder_layer {
    nn_norm attn_norm, mlp_norm; /* input_layernorm / post_attention_layernorm (LLaMA);
                                    self_attn_layer_norm / final_layer_norm (OPT) */
    nn_linear q, k, v, o;
    nn_linear gate, up, down;    /* plain MLP: up = fc1, down = fc2, gate unused */
} decoder_layer;

typedef struct decoder {
    decoder_config cfg;
    const backend *be;
    tensor embed;          /* [vocab, hidden] */
    tensor pos_embed;      /* OPT: [pos_rows, hidden]; data NULL for LLaMA */
    decoder_layer *layer;  /* cfg.layers of them */
    nn_norm final_norm;
    tensor head;           /* [vocab, hidden]; shares embed's memory when cfg.tied_head */
} decoder;

/* ---- loading ---------------------------------------------------------------- */

/* Loads the language model whose config is under cfg_prefix ("text_config"
 * in a LLaVA / BLIP-2 config.json, "" for a plain LlamaForCausalLM /
 * OPTForCausalLM folder) and whose weights are the causal-LM module under
 * weights_prefix: "<p>.model.*" and "<p>.lm_head.weight" ("language_model"
 * for LLaVA (model_dir's aliases find the newer model.language_model.* /
 * lm_head.* layout too) and BLIP-2; "" for a plain folder: model.*,
 * lm_head.weight). The architecture comes from <cfg_prefix>.model_type
 * ("llama" or "opt"); other config keys default to the transformers class
 * defaults, as transformers does (llava-1.5's text_config lists only a few).
 * Dies with one clear line on a missing model_type, an unsupported
 * architecture or option, an inconsistent config, or a missing or
 * mis-shaped tensor. */
decoder *decoder_load(const nn_loader *ld, const char *weights_prefix, const char *cfg_prefix);
void decoder_free(decoder *m);
/* The architecture loaders decoder_load dispatches to (host/llama.c, host/opt.c). */
decoder *llama_load(const nn_loader *ld, const char *weights_prefix, const char *cfg_prefix);
decoder *opt_load(const nn_loader *ld, const char *weights_prefix, const char *cfg_prefix);

/* A hidden-states index in [-(layers + 1), layers] made non-negative; dies
 * with the valid range otherwise. */
int64_t decoder_hidden_index(const decoder *m, int64_t index);

/* ---- embedding -------------------------------------------------------------- */

/* inputs_embeds [B, T, D] (act dtype, from a) for host token ids [B * T];
 * an id outside the vocabulary is a one-line error naming it. */
tensor decoder_embed_tokens(const decoder *m, arena *a, const int32_t *ids, int64_t batch,
                            int64_t len);

/* ---- forward and backward --------------------------------------------------- */

typedef struct decoder_fwd_opts {
    int want_logits;       /* compute logits [B, T, V] f32 */
    int want_hidden;       /* return hidden_states[hidden_layer] */
    int64_t hidden_layer;  /* transformers' index, negative counts from the end */
    int for_backward;      /* keep what decoder_backward needs */
    decoder_pos_mode pos_mode; /* LLaMA only (see the top of this file) */
} decoder_fwd_opts;

/* What one layer's backward needs from its forward. */
typedef struct decoder_layer_acts {
    tensor x;                 /* layer input [B, T, D] = hidden_states[l] */
    tensor mean1, rstd1;      /* attention norm statistics [B * T] (mean: LayerNorm only) */
    tensor q, k, v, att, lse; /* q, att [B, T, Hq, hd] (after rope); k, v [B, T, Hkv, hd]; lse [B, Hq, T] */
    tensor x2;                /* after the attention residual [B, T, D] */
    tensor mean2, rstd2;      /* MLP norm statistics */
    tensor gate, up;          /* MLP pre-activations [B, T, F] (plain MLP: up only) */
} decoder_layer_acts;

/* The result of decoder_forward; tensors point into the arena. */
typedef struct decoder_pass {
    int64_t batch, len;
    int64_t layers_run;       /* layers computed (fewer than all when only an early hidden layer was asked for) */
    int64_t hidden_layer;     /* non-negative index of `hidden`, -1 when none */
    tensor logits;            /* [B, T, V] f32 (data NULL unless want_logits) */
    tensor hidden;            /* [B, T, D] (data NULL unless want_hidden) */
    tensor mask;              /* [B, T] f32 key mask (data NULL: no padding) */
    tensor pos;               /* [B, T] i32 positions (rotary angle, or OPT table row - 2) */
    /* kept for the backward (for_backward only) */
    int saved;
    decoder_layer_acts *acts; /* host array of layers_run entries (malloc) */
    tensor final_x, final_mean, final_rstd; /* final norm input and statistics */
} decoder_pass;

/* Runs the model on embeds [B, T, D] (act dtype; for_backward keeps a
 * reference to it, so it must stay untouched until the backward) with a
 * host attention mask [B * T] of 0/1 (NULL: no padding). */
void decoder_forward(const decoder *m, arena *a, const tensor *embeds, const int32_t *mask,
                     const decoder_fwd_opts *o, decoder_pass *p);
/* Frees the pass's host memory (its tensors live in the arena). */
void decoder_pass_release(decoder_pass *p);

/* d_embeds [B, T, D] (act dtype) = d loss / d inputs_embeds, from dlogits
 * [B, T, V] f32 (or NULL) and/or d_hidden [B, T, D] (act dtype, or NULL)
 * at the pass's hidden layer; both are summed when both are given. The
 * pass must come from a forward with for_backward (and want_logits when
 * dlogits is given). Temporaries come from a and are released before it
 * returns; d_embeds may come from a before the call. */
void decoder_backward(const decoder *m, arena *a, const decoder_pass *p, const tensor *dlogits,
                      const tensor *d_hidden, tensor *d_embeds);

/* ---- loss ------------------------------------------------------------------- */

/* The causal-LM loss as transformers' ForCausalLMLoss computes it: host
 * labels [B, n_labels] line up with the LAST n_labels positions of the
 * logits (n_labels = T for LLaVA / a plain LM; BLIP-2 passes text-only
 * labels shorter than the sequence); the logits at a position predict the
 * label one step to its right; -100 is ignored; the mean runs over every
 * counted label of the batch. Writes d mean-loss / d logits into dlogits
 * ([B, T, V] f32; may be the logits tensor itself, which is then
 * overwritten; NULL when only the loss is wanted). Returns the mean loss,
 * or 0 (and zero gradients) when no label counts (transformers gives NaN).
 * A label outside [0, V) other than -100 is a one-line error. */
double decoder_lm_loss(arena *a, const tensor *logits, const int32_t *labels, int64_t n_labels,
                       tensor *dlogits);

/* ---- generation: KV cache --------------------------------------------------- */

/* Keys (after rope) and values of every layer for `batch` sequences of up
 * to `cap` tokens, and the attention mask seen so far. */
typedef struct decoder_cache {
    int64_t layers, batch, cap, len; /* len: tokens cached so far */
    decoder_pos_mode pos_mode;
    tensor *k, *v;       /* per layer [batch * cap, Hkv, hd] (act dtype) */
    tensor mask;         /* [batch * cap] f32 */
    int32_t *host_mask;  /* [batch * cap], for positions */
    const backend *be;
} decoder_cache;

void decoder_cache_init(decoder_cache *c, const decoder *m, int64_t batch, int64_t cap,
                        decoder_pos_mode pos_mode);
void decoder_cache_free(decoder_cache *c);
void decoder_cache_reset(decoder_cache *c);

/* Appends T tokens: embeds [B, T, D] (act dtype), host mask [B * T] for
 * them (NULL: all 1). The first call on an empty cache is the prefill; T = 1
 * afterwards is one decode step. logits is [B, T, V] f32 (every new
 * position) or [B, 1, V] (the last new position only). Dies when the cache
 * would overflow. Temporaries come from a and are released before it
 * returns. */
void decoder_step(const decoder *m, decoder_cache *c, arena *a, const tensor *embeds,
                  const int32_t *mask, tensor *logits);

/* ---- pass counts ------------------------------------------------------------- */

/* Passes run so far in this process, over every decoder: `forwards` counts
 * decoder_forward calls (whole-sequence passes: training steps and AIM's
 * demonstration aggregation), `steps` decoder_step calls (generation: the
 * prefill and each decode step). Always on (one relaxed atomic increment
 * per pass); the work of a code path is the difference of two readings,
 * exact when no other thread runs passes in between. */
typedef struct decoder_counts {
    uint64_t forwards, steps;
} decoder_counts;
decoder_counts decoder_counts_now(void);

/* ---- shared by the architecture loaders -------------------------------------- */

/* "<prefix>.a|<prefix>.b" for alternatives "a|b" (prefix "" leaves them
 * as they are); a static ring of 8 results like nn_name. */
const char *decoder_cfg_key(const char *prefix, const char *alternatives);
/* buf = "<prefix>.<name>" ("<name>" for prefix ""); dies when it does not fit. */
void decoder_weight_name(char *buf, size_t n, const char *prefix, const char *name);
/* Allocates the model and its layer array; be and cfg set. */
decoder *decoder_alloc(const nn_loader *ld, const decoder_config *cfg);
/* Checks sizes read from the config (positive, heads dividing, ...); dies
 * naming the config file otherwise. */
void decoder_config_check(const decoder_config *cfg, const model_dir *md, const char *cfg_prefix);
/* Loads the head: shares embed when cfg.tied_head, else "<head_name>.weight". */
void decoder_load_head(decoder *m, const nn_loader *ld, const char *head_name);
#endif
