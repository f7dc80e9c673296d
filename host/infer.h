/* Inference prompts: AIM (fused demonstrations), ordinary multimodal
 * in-context learning and zero-shot, as input embeddings for
 * host/generate.h; prompt templates; loading a trained projector; the
 * setup aimc infer and aimc eval share (infer_session).
 *
 * Layouts (docs/aim-step.md's pieces; unit(x) is one image + text in the
 * model's native order without the sequence-start BOS: LLaVA [IMG(x)][E(x)],
 * BLIP-2 [IMG(x)][E(BOS)][E(x)]):
 *   zero-shot  LLaVA [E(BOS)] unit(q)                 BLIP-2 unit(q)
 *   aim        LLaVA [E(BOS)] [F_1]..[F_k] unit(q)    BLIP-2 [F_1]..[F_k] unit(q)
 *   icl        LLaVA [E(BOS)] unit(d_1)..unit(d_k) unit(q)
 *              BLIP-2 unit(d_1)..unit(d_k) unit(q)
 * so the AIM prompt is docs/aim-step.md's query sequence with the prompt
 * and no target, and ICL puts each demonstration, with all its image
 * tokens, where AIM puts its fused tokens. F_i = projector(H_i), H_i the
 * demonstration's aggregated hidden states (aim_fuse_demo, or a bank's rows
 * through the projector). Texts are tokenized without special tokens.
 *
 * Templates (OpenFlamingo's evaluation prompts; "{prompt}" is the query's
 * --prompt, "{answer}" a demonstration's answer):
 *   caption  query "Output:"                          demo "Output:{answer}"
 *   vqa      query "Question:{prompt} Short answer:"   demo "Question:{prompt} Short answer:{answer}"
 *   hateful  query "is an image with: '{prompt}' written on it. Is it hateful? Answer:"
 *            demo  "is an image with: '{prompt}' written on it. Is it hateful? Answer: {answer}"
 *   raw      query "{prompt}"                          demo "{answer}"
 * A templates file (configs/templates.conf) has `NAME = QUERY` and
 * `NAME_demo = DEMO` lines (config.h syntax); it overrides the built-ins
 * and may add names. */
#ifndef AIMC_INFER_H
#define AIMC_INFER_H
#include "../data/episode.h"
#include "arena.h"
#include "generate.h"
#include "projector.h"

struct mllm;
struct bank;

typedef enum { INFER_AIM, INFER_ICL, INFER_ZERO_SHOT } infer_mode;
/* "aim", "icl", "zero-shot" (also "zero_shot", "zeroshot"); -1 if unknown. */
int infer_mode_parse(const char *s);
const char *infer_mode_name(infer_mode mode);

/* ---- templates ----------------------------------------------------------------- */

typedef struct infer_template {
    char *name, *query, *demo;
} infer_template;

typedef struct infer_templates {
    int n;
    infer_template *t;
} infer_templates;

/* The built-in templates above. */
void infer_templates_default(infer_templates *ts);
/* Reads a templates file over ts (replacing or adding). 0, or -1 with one
 * line in err naming FILE:LINE. */
int infer_templates_load(infer_templates *ts, const char *path, char *err, size_t errlen);
void infer_templates_free(infer_templates *ts);
const infer_template *infer_template_find(const infer_templates *ts, const char *name);
/* tpl with every "{prompt}" and "{answer}" replaced (NULL counts as "");
 * malloc'd. */
char *infer_template_fill(const char *tpl, const char *prompt, const char *answer);

/* ---- items ---------------------------------------------------------------------- */

/* An item from an image file (NULL: no image) and a text: the image decoded
 * and preprocessed with pp, the text tokenized without special tokens. The
 * source names it in messages. 0, or -1 with one line in err. */
int infer_item_load(episode_item *it, const char *image_path, const char *text, const tokenizer *tok,
                    const preprocess_config *pp, const char *source, char *err, size_t errlen);

/* ---- prompts ---------------------------------------------------------------------- */

typedef struct infer_model {
    struct mllm *m;
    projector *proj; /* AIM with demonstrations; may be NULL otherwise */
    int64_t layer;   /* aggregation layer: hidden_states index (negative from the end) */
} infer_model;

typedef struct infer_demo {
    const episode_item *item; /* text tokens, and the image unless hidden is given */
    const float *hidden;      /* AIM: aggregated rows [item->n_tokens, D] (host f32, e.g. a bank's); NULL: aggregate */
} infer_demo;

/* Positions of the prompt (the layouts above). */
int64_t infer_prompt_len(const struct mllm *m, infer_mode mode, const infer_demo *demos, int k,
                         const episode_item *query);
/* The prompt's input embeddings [1, T, D] (act dtype) from a; temporaries
 * released. Dies with one line on a demonstration without what its mode
 * needs (an image for ICL; text tokens for AIM and ICL). */
tensor infer_build_prompt(const infer_model *im, arena *a, infer_mode mode, const infer_demo *demos,
                          int k, const episode_item *query);

/* A demonstration's aggregated hidden states (docs/aim-step.md step 1:
 * hidden_states[layer] of native(image, text) at its text positions),
 * computed through this file's layout code: [n_tokens, D] (act dtype)
 * from a. What a bank stores (aim_demo_hidden computes the same numbers
 * for training). */
tensor infer_demo_hidden(const infer_model *im, arena *a, const episode_item *demo);
/* Host f32 copy of a backend tensor [.., D] (malloc'd). */
float *infer_download_f32(arena *a, const tensor *t);

/* A step arena size for prompts of up to prompt_len positions, max_new
 * generated tokens and num_beams beams (generous: vision tower, the
 * largest LM pass, the beam cache's reorder buffer, plus a margin). */
size_t infer_arena_bytes(const struct mllm *m, int64_t prompt_len, int64_t max_new, int num_beams);

/* ---- projectors -------------------------------------------------------------------- */

/* What a saved projector records about its training. */
typedef struct infer_projector_meta {
    int has_layer;
    int64_t layer;            /* aggregation layer it was trained with */
    char backbone_text[1024]; /* the checkpoint's backbone description ("" when unknown) */
    char source[4096];        /* the file it came from */
} infer_projector_meta;

/* Loads a projector (parameters only, f32 on be) from a checkpoint file or
 * directory (its latest), from an exported .safetensors with its .json
 * description next to it, or from that .json. 0, or -1 with one line in
 * err. p is initialised on success only. */
int infer_projector_load(projector *p, const backend *be, const char *path, infer_projector_meta *meta,
                         char *err, size_t errlen);
/* Compares the arch, lm, d_model, layers, vocab and image_tokens words of
 * a recorded backbone description with the model (absent words are not
 * compared). 0, or -1 with one line naming the word and both values. */
int infer_check_backbone(const char *recorded, const struct mllm *m, const char *what, char *err,
                         size_t errlen);

/* ---- sessions --------------------------------------------------------------------------- */

/* What aimc infer and aimc eval load before they answer queries: the frozen
 * model with its tokenizer and image preprocessing, an optional trained
 * projector and demonstration bank, and the aggregation layer. Start from
 * {0} and fill it in this order: load_model, then (optionally)
 * load_projector and open_bank, then resolve_layer. Each step dies with one
 * line on failure (these are the commands' setup, not a library API). */
typedef struct infer_session {
    const char *model_dir; /* as given (named in messages) */
    const backend *be;
    struct mllm *m;
    tokenizer *tok;
    preprocess_config pp;
    projector proj; /* valid when has_proj */
    int has_proj;
    infer_projector_meta meta;
    struct bank *bk; /* NULL: no bank */
    int64_t layer;   /* hidden_states index, >= 0 after resolve_layer */
} infer_session;

/* Backend by name ("cpu", "cuda"), the model in its act dtype, its
 * tokenizer and preprocessor config. */
void infer_session_load_model(infer_session *s, const char *model_dir, const char *device);
/* A trained projector (infer_projector_load's formats), refused unless it
 * maps the model's hidden size to itself and its recorded backbone, if any,
 * matches the model. */
void infer_session_load_projector(infer_session *s, const char *path);
void infer_session_open_bank(infer_session *s, const char *path);
/* 1 when a --layer value is "auto" or an integer. */
int infer_layer_arg_ok(const char *arg);
/* The aggregation layer: layer_arg unless "auto", else the projector's
 * recorded layer, else the bank's, else the last; a projector trained on
 * another layer is refused, and in aim mode so is a bank made for another
 * backbone or layer (icl takes only its texts and image paths). */
void infer_session_resolve_layer(infer_session *s, const char *layer_arg, infer_mode mode);
/* The model, projector (NULL without one) and layer for infer_build_prompt. */
infer_model infer_session_model(infer_session *s);
/* gen_config_default with the model's EOS token and its tokenizer (for
 * stop strings); the command sets the search options. */
void infer_session_gen_config(const infer_session *s, gen_config *g);
/* Initialises a on the session's backend: arena_mb MiB when > 0 (the
 * commands' --arena-mb), else infer_arena_bytes for these sizes. */
void infer_session_arena(const infer_session *s, arena *a, int64_t arena_mb, int64_t prompt_len, int64_t max_new,
                         int num_beams);
/* Frees what was loaded (any prefix of the steps above). */
void infer_session_free(infer_session *s);
#endif
