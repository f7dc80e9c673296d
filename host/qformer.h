/* BLIP-2's Q-Former (transformers' Blip2QFormerModel fed by query_tokens,
 * as Blip2ForConditionalGeneration runs it): a post-LN BERT encoder over a
 * fixed set of learned queries that cross-attends to the image features.
 * Forward only (the backbone is frozen).
 *
 *   x = LayerNorm(query_tokens)                      (qformer.layernorm, eps 1e-12)
 *   per layer i:
 *     x = LN(dense(self_attention(x)) + x)           attention.{attention,output}
 *     if i % cross_attention_frequency == 0:
 *       x = LN(dense(cross_attention(x, img)) + x)   crossattention.*: q from x,
 *                                                    k, v from the image features
 *     x = LN(output_query(act(intermediate_query(x))) + x)
 *   no final LayerNorm.
 * Attention: softmax(q k^T / sqrt(head_dim)) v, no mask (every query sees
 * every query and every image token). The text branch of the Q-Former
 * (intermediate / output, embeddings) is never used by BLIP-2's generation
 * path and is not loaded.
 *
 * Weights (prefix P = "qformer"): P.layernorm.{weight,bias},
 * P.encoder.layer.{i}.attention.attention.{query,key,value}.{weight,bias},
 * P.encoder.layer.{i}.attention.output.{dense,LayerNorm}.{weight,bias},
 * P.encoder.layer.{i}.crossattention.* (same names; key/value [D, D_img]),
 * P.encoder.layer.{i}.intermediate_query.dense.*,
 * P.encoder.layer.{i}.output_query.{dense,LayerNorm}.*; and the queries
 * (BLIP-2: top-level "query_tokens" [1, n_query, D]).
 * Config (prefix "qformer_config"): hidden_size, num_hidden_layers,
 * num_attention_heads, intermediate_size, hidden_act ("gelu"),
 * layer_norm_eps (1e-12), cross_attention_frequency (2),
 * position_embedding_type ("absolute"; the queries get no positions);
 * absent keys take Blip2QFormerConfig's defaults. */
#ifndef AIMC_QFORMER_H
#define AIMC_QFORMER_H
#include "arena.h"
#include "nn.h"

typedef struct qformer_config {
    int64_t dim, heads, head_dim, mlp_dim, layers;
    int64_t cross_freq; /* a layer i has cross-attention when i % cross_freq == 0 */
    int64_t enc_dim;    /* width of the image features (the vision tower's) */
    int64_t n_query;
    act_kind act;
    float eps;
} qformer_config;

/* BERT attention: query/key/value, then output.dense and output.LayerNorm
 * (the residual LayerNorm of the sub-block). */
typedef struct qformer_attn {
    nn_linear q, k, v, out;
    nn_norm ln;
} qformer_attn;

typedef struct qformer_layer {
    qformer_attn self_attn;
    qformer_attn cross;   /* w.data NULL in layers without cross-attention */
    int has_cross;
    nn_linear ffn_in, ffn_out; /* intermediate_query.dense, output_query.dense */
    nn_norm ffn_ln;            /* output_query.LayerNorm */
} qformer_layer;

typedef struct qformer {
    qformer_config cfg;
    tensor queries;  /* [n_query, D], activation dtype */
    nn_norm ln;      /* the input LayerNorm (qformer.layernorm) */
    qformer_layer *layers;
    const backend *be;
} qformer;

/* Reads the config under cfg_prefix and the weights under prefix; the
 * queries are the tensor query_name ([1, n_query, D] or [n_query, D]);
 * n_query is its row count, enc_dim the width of the image features the
 * cross-attention reads (transformers sets encoder_hidden_size to the vision
 * tower's hidden_size). Dies with one line on a missing or mis-shaped
 * tensor or config value. */
qformer *qformer_load(const nn_loader *ld, const char *prefix, const char *cfg_prefix,
                      const char *query_name, int64_t enc_dim);
void qformer_free(qformer *q);
/* image [N, T_img, enc_dim] (activation dtype, the model's backend) ->
 * last_hidden_state of the queries [N, n_query, D] from a. Temporaries are
 * released before it returns. */
tensor qformer_forward(const qformer *q, arena *a, const tensor *image);
#endif
