/* OPT (the language model of BLIP-2), as transformers' modeling_opt.py:
 * learned position embeddings looked up at cumsum(mask) * mask - 1 + 2
 * and added to the input embeddings, pre-LN blocks (do_layer_norm_before)
 * with LayerNorm (eps 1e-5, torch's default), every Linear with bias
 * (enable_bias), ReLU MLP fc2(relu(fc1(x))), final_layer_norm, and the
 * lm_head tied to embed_tokens (absent from the file). transformers scales
 * q by head_dim^-0.5 before q.k^T; the shared block passes that factor as
 * the attention scale instead (same math). This file reads the config and
 * the weights; the math is the shared block in decoder.c.
 *
 * Unsupported variants are refused with a clear error: post-LN OPT-350m
 * (do_layer_norm_before false), word_embed_proj_dim != hidden_size (its
 * project_in / project_out), no final norm, LayerNorms without weights. */
#include "decoder.h"
#include "../kernels/check.h"
#include <string.h>

#define KEY(alts) decoder_cfg_key(cfg_prefix, alts)

static void refuse(const model_dir *md, const char *key, const char *why) {
    aimc_die("%s/config.json: %s: %s", model_dir_path(md), key, why);
}

/* Variants of OPT that this decoder does not implement. */
static void check_opt_variant(const model_dir *md, const char *cfg_prefix, int64_t hidden) {
    if (!cfg_bool_or(md, KEY("do_layer_norm_before"), 1))
        refuse(md, KEY("do_layer_norm_before"), "false (post-LN OPT-350m) is not supported");
    if (cfg_bool_or(md, KEY("_remove_final_layer_norm"), 0))
        refuse(md, KEY("_remove_final_layer_norm"), "true is not supported");
    if (!cfg_bool_or(md, KEY("layer_norm_elementwise_affine"), 1))
        refuse(md, KEY("layer_norm_elementwise_affine"), "false is not supported");
    int64_t proj = cfg_int_or(md, KEY("word_embed_proj_dim"), hidden);
    if (proj != hidden)
        aimc_die("%s/config.json: %s is %lld but hidden_size is %lld; OPT's project_in / "
                 "project_out (word_embed_proj_dim != hidden_size) is not supported",
                 model_dir_path(md), KEY("word_embed_proj_dim"), (long long)proj,
                 (long long)hidden);
}

static decoder_config opt_config(const model_dir *md, const char *cfg_prefix, int *bias) {
    decoder_config c = {.arch = DEC_OPT, .gated_mlp = 0};
    c.vocab = cfg_int_or(md, KEY("vocab_size"), 50272);
    c.hidden = cfg_int_or(md, KEY("hidden_size"), 768);
    c.ffn = cfg_int_or(md, KEY("ffn_dim"), 3072);
    c.layers = cfg_int_or(md, KEY("num_hidden_layers"), 12);
    c.heads = cfg_int_or(md, KEY("num_attention_heads"), 12);
    c.kv_heads = c.heads;
    c.pos_rows = cfg_int_or(md, KEY("max_position_embeddings"), 2048) + 2;
    c.tied_head = cfg_bool_or(md, KEY("tie_word_embeddings"), 1);
    *bias = cfg_bool_or(md, KEY("enable_bias"), 1);
    const char *act = cfg_str_or(md, KEY("activation_function"), "relu");
    int kind = act_parse(act);
    if (kind < 0)
        aimc_die("%s/config.json: %s is '%s', an activation aimc does not know",
                 model_dir_path(md), KEY("activation_function"), act);
    c.act = (act_kind)kind;
    if (c.heads > 0 && c.hidden % c.heads)
        aimc_die("%s/config.json: %s (%lld) does not divide %s (%lld)", model_dir_path(md),
                 KEY("num_attention_heads"), (long long)c.heads, KEY("hidden_size"),
                 (long long)c.hidden);
    c.head_dim = c.heads > 0 ? c.hidden / c.heads : 0;
    check_opt_variant(md, cfg_prefix, c.hidden);
    decoder_config_check(&c, md, cfg_prefix);
    return c;
}

#define OPT_LN_EPS 1e-5f /* nn.LayerNorm's default; OPT's config has no eps */

static void opt_load_layer(decoder *m, const nn_loader *ld, const char *base, int64_t l, int bias) {
    decoder_layer *w = &m->layer[l];
    int64_t d = m->cfg.hidden, f = m->cfg.ffn;
    char pre[512];
    snprintf(pre, sizeof pre, "%s.layers.%lld", base, (long long)l);
    w->attn_norm = nn_norm_load(ld, nn_name("%s.self_attn_layer_norm", pre), d, OPT_LN_EPS,
                                NN_LAYERNORM, 1);
    w->mlp_norm =
        nn_norm_load(ld, nn_name("%s.final_layer_norm", pre), d, OPT_LN_EPS, NN_LAYERNORM, 1);
    w->q = nn_linear_load(ld, nn_name("%s.self_attn.q_proj", pre), d, d, bias);
    w->k = nn_linear_load(ld, nn_name("%s.self_attn.k_proj", pre), d, d, bias);
    w->v = nn_linear_load(ld, nn_name("%s.self_attn.v_proj", pre), d, d, bias);
    w->o = nn_linear_load(ld, nn_name("%s.self_attn.out_proj", pre), d, d, bias);
    w->up = nn_linear_load(ld, nn_name("%s.fc1", pre), d, f, bias);
    w->down = nn_linear_load(ld, nn_name("%s.fc2", pre), f, d, bias);
}

decoder *opt_load(const nn_loader *ld, const char *weights_prefix, const char *cfg_prefix) {
    int bias;
    decoder_config c = opt_config(ld->md, cfg_prefix, &bias);
    decoder *m = decoder_alloc(ld, &c);
    char base[300], head[300];
    decoder_weight_name(base, sizeof base, weights_prefix, "model.decoder");
    decoder_weight_name(head, sizeof head, weights_prefix, "lm_head");
    m->embed = nn_tensor_load(ld, nn_name("%s.embed_tokens.weight", base), ld->wdt, 2,
                              (int64_t[]){c.vocab, c.hidden});
    m->pos_embed = nn_tensor_load(ld, nn_name("%s.embed_positions.weight", base), ld->wdt, 2,
                                  (int64_t[]){c.pos_rows, c.hidden});
    for (int64_t l = 0; l < c.layers; l++) opt_load_layer(m, ld, base, l, bias);
    m->final_norm = nn_norm_load(ld, nn_name("%s.final_layer_norm", base), c.hidden, OPT_LN_EPS,
                                 NN_LAYERNORM, 1);
    decoder_load_head(m, ld, head);
    return m;
}
