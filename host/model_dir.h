/* A Hugging Face model folder: config.json plus weights in model.safetensors
 * or in shards listed by model.safetensors.index.json ({"weight_map":
 * {tensor name: shard file}}; each shard is opened once).
 *
 * Tensor names. A lookup tries, in order:
 *  1. the name as given;
 *  2. prefix rewrites from the alias table, in table order: when the name
 *     starts with a rule's `from`, that prefix is replaced by its `to`. The
 *     defaults cover both LLaVA key layouts, each direction:
 *       language_model.model.*    <-> model.language_model.*
 *       language_model.lm_head.*  <-> lm_head.*
 *       vision_tower.*            <-> model.vision_tower.*
 *       multi_modal_projector.*   <-> model.multi_modal_projector.*
 *     model_dir_alias adds rules after these;
 *  3. tied weights: when name (or one of its rewrites) was registered with
 *     model_dir_tie(md, name, source), the source tensor (looked up by 1-2),
 *     e.g. OPT's lm_head.weight -> model.decoder.embed_tokens.weight.
 *
 * Config. Keys are dotted paths ("text_config.hidden_size"; a number
 * indexes an array: "architectures.0"). A path string may list
 * alternatives separated by '|', tried in order, for keys that were renamed
 * ("image_token_index|image_token_id"). A JSON null counts as absent.
 * cfg_X returns 1 and stores the value when found, 0 when absent; cfg_need_X
 * dies naming the key and the file when absent; cfg_X_or returns a default.
 * A value of the wrong type dies in every variant (bad user input).
 *
 * Errors from model_dir_need / model_dir_load / cfg_* are one line through
 * aimc_die (exit status 1): a checkpoint that does not fit the model is a
 * user error, not an internal one. */
#ifndef AIMC_MODEL_DIR_H
#define AIMC_MODEL_DIR_H
#include "../kernels/backend.h"
#include "safetensors.h"
#include <stdint.h>

struct cJSON;
typedef struct model_dir model_dir;

/* NULL and one line in err (naming the file and the problem) on failure. */
model_dir *model_dir_open(const char *dir, char *err, size_t errlen);
void model_dir_close(model_dir *md);
const char *model_dir_path(const model_dir *md);
const struct cJSON *model_dir_config(const model_dir *md);
int model_dir_shard_count(const model_dir *md);

/* Extends the alias table (tried after the defaults) and the tie list. */
void model_dir_alias(model_dir *md, const char *from_prefix, const char *to_prefix);
void model_dir_tie(model_dir *md, const char *name, const char *source);

/* Looks a tensor up in every shard with aliases and ties; NULL if absent. */
const st_tensor *model_dir_find(const model_dir *md, const char *name);

/* Expected shapes: ndim == MD_ANY_SHAPE accepts any shape; a size of
 * MD_ANY_SIZE in shape[i] accepts any size in that dimension. ndim 0 is a
 * scalar (shape may be NULL). */
#define MD_ANY_SHAPE (-1)
#define MD_ANY_SIZE (-1)
/* The tensor, or dies: "DIR: tensor 'x' not found (also tried 'y')" or
 * "DIR: tensor 'x' has shape [4, 3], expected [4, 5]". */
const st_tensor *model_dir_need(const model_dir *md, const char *name, int ndim,
                                const int64_t *shape);
/* model_dir_need, then a new tensor on `be` (memory from be->alloc; the
 * caller releases t.data with be->release) holding the values converted to
 * `want`: F64/F32/F16/BF16/F8 -> f32/bf16/f16, integer dtypes -> i32 (range
 * checked). A 0-d tensor loads as shape [1]; more than 4 dims dies. */
tensor model_dir_load(const model_dir *md, const char *name, const backend *be, dtype want,
                      int ndim, const int64_t *shape);

/* Config accessors (see the top of this file). */
int cfg_has(const model_dir *md, const char *paths);
int cfg_int(const model_dir *md, const char *paths, int64_t *out);
int64_t cfg_need_int(const model_dir *md, const char *paths);
int64_t cfg_int_or(const model_dir *md, const char *paths, int64_t dflt);
int cfg_double(const model_dir *md, const char *paths, double *out);
double cfg_need_double(const model_dir *md, const char *paths);
double cfg_double_or(const model_dir *md, const char *paths, double dflt);
int cfg_bool(const model_dir *md, const char *paths, int *out);
int cfg_bool_or(const model_dir *md, const char *paths, int dflt);
/* Strings point into the parsed config (valid until model_dir_close). */
int cfg_str(const model_dir *md, const char *paths, const char **out);
const char *cfg_need_str(const model_dir *md, const char *paths);
const char *cfg_str_or(const model_dir *md, const char *paths, const char *dflt);
#endif
