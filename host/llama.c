/* LLaMA (the language model of LLaVA-1.5, Vicuna), as transformers'
 * modeling_llama.py: RMSNorm (f32 statistics, then * weight), half-split
 * rotary embeddings on q and k, grouped-query attention
 * (num_key_value_heads), SwiGLU MLP down(silu(gate(x)) * up(x)), no biases
 * unless attention_bias / mlp_bias, an untied lm_head unless
 * tie_word_embeddings. This file reads the config and the weights; the
 * math is the shared block in decoder.c.
 *
 * Config keys default to LlamaConfig's defaults when absent: a LLaVA
 * config.json's text_config often lists only a few of them. */
#include "decoder.h"
#include "../kernels/check.h"
#include <string.h>

#define KEY(alts) decoder_cfg_key(cfg_prefix, alts)

/* The rotary variant: only the original ("default") one is implemented. */
static void check_rope_type(const model_dir *md, const char *cfg_prefix) {
    const char *key = KEY("rope_parameters.rope_type|rope_scaling.rope_type|rope_scaling.type");
    const char *type = cfg_str_or(md, key, "default");
    if (strcmp(type, "default"))
        aimc_die("%s/config.json: %s is '%s'; aimc implements only the default rotary embedding",
                 model_dir_path(md), key, type);
}

/* Tied when the text config says so, or (LLaVA) the top-level config. */
static int llama_tied(const model_dir *md, const char *cfg_prefix) {
    int tied = cfg_bool_or(md, KEY("tie_word_embeddings"), 0);
    if (cfg_prefix[0]) tied |= cfg_bool_or(md, "tie_word_embeddings", 0);
    return tied;
}

static decoder_config llama_config(const model_dir *md, const char *cfg_prefix, float *eps,
                                   int *attn_bias, int *mlp_bias) {
    decoder_config c = {.arch = DEC_LLAMA, .gated_mlp = 1, .act = ACT_SILU};
    c.vocab = cfg_int_or(md, KEY("vocab_size"), 32000);
    c.hidden = cfg_int_or(md, KEY("hidden_size"), 4096);
    c.ffn = cfg_int_or(md, KEY("intermediate_size"), 11008);
    c.layers = cfg_int_or(md, KEY("num_hidden_layers"), 32);
    c.heads = cfg_int_or(md, KEY("num_attention_heads"), 32);
    c.kv_heads = cfg_int_or(md, KEY("num_key_value_heads"), c.heads);
    c.head_dim = cfg_int_or(md, KEY("head_dim"), c.heads > 0 ? c.hidden / c.heads : 0);
    c.rope_theta = (float)cfg_double_or(md, KEY("rope_parameters.rope_theta|rope_theta"), 10000.0);
    c.tied_head = llama_tied(md, cfg_prefix);
    *eps = (float)cfg_double_or(md, KEY("rms_norm_eps"), 1e-6);
    *attn_bias = cfg_bool_or(md, KEY("attention_bias"), 0);
    *mlp_bias = cfg_bool_or(md, KEY("mlp_bias"), 0);
    const char *act = cfg_str_or(md, KEY("hidden_act"), "silu");
    if (strcmp(act, "silu"))
        aimc_die("%s/config.json: %s is '%s'; aimc's LLaMA MLP is SwiGLU (silu)",
                 model_dir_path(md), KEY("hidden_act"), act);
    if (!(c.rope_theta > 0))
        aimc_die("%s/config.json: rope_theta is %g, expected > 0", model_dir_path(md),
                 (double)c.rope_theta);
    check_rope_type(md, cfg_prefix);
    decoder_config_check(&c, md, cfg_prefix);
    return c;
}

static void llama_load_layer(decoder *m, const nn_loader *ld, const char *base, int64_t l,
                             float eps, int attn_bias, int mlp_bias) {
    const decoder_config *c = &m->cfg;
    decoder_layer *w = &m->layer[l];
    int64_t d = c->hidden, q_out = c->heads * c->head_dim, kv_out = c->kv_heads * c->head_dim;
    char pre[512];
    snprintf(pre, sizeof pre, "%s.layers.%lld", base, (long long)l);
    w->attn_norm = nn_norm_load(ld, nn_name("%s.input_layernorm", pre), d, eps, NN_RMSNORM, 0);
    w->mlp_norm =
        nn_norm_load(ld, nn_name("%s.post_attention_layernorm", pre), d, eps, NN_RMSNORM, 0);
    w->q = nn_linear_load(ld, nn_name("%s.self_attn.q_proj", pre), d, q_out, attn_bias);
    w->k = nn_linear_load(ld, nn_name("%s.self_attn.k_proj", pre), d, kv_out, attn_bias);
    w->v = nn_linear_load(ld, nn_name("%s.self_attn.v_proj", pre), d, kv_out, attn_bias);
    w->o = nn_linear_load(ld, nn_name("%s.self_attn.o_proj", pre), q_out, d, attn_bias);
    w->gate = nn_linear_load(ld, nn_name("%s.mlp.gate_proj", pre), d, c->ffn, mlp_bias);
    w->up = nn_linear_load(ld, nn_name("%s.mlp.up_proj", pre), d, c->ffn, mlp_bias);
    w->down = nn_linear_load(ld, nn_name("%s.mlp.down_proj", pre), c->ffn, d, mlp_bias);
}

decoder *llama_load(const nn_loader *ld, const char *weights_prefix, const char *cfg_prefix) {
    float eps;
    int attn_bias, mlp_bias;
    decoder_config c = llama_config(ld->md, cfg_prefix, &eps, &attn_bias, &mlp_bias);
    decoder *m = decoder_alloc(ld, &c);
    char base[300], head[300];
    decoder_weight_name(base, sizeof base, weights_prefix, "model");
    decoder_weight_name(head, sizeof head, weights_prefix, "lm_head");
    m->embed = nn_tensor_load(ld, nn_name("%s.embed_tokens.weight", base), ld->wdt, 2,
                              (int64_t[]){c.vocab, c.hidden});
    for (int64_t l = 0; l < c.layers; l++) llama_load_layer(m, ld, base, l, eps, attn_bias, mlp_bias);
    m->final_norm = nn_norm_load(ld, nn_name("%s.norm", base), c.hidden, eps, NN_RMSNORM, 0);
    decoder_load_head(m, ld, head);
    return m;
}
