/* Hugging Face model folders: weights (single file or shards), tensor name
 * aliases and ties, dtype-converting uploads, and config.json accessors.
 * The rules are described in model_dir.h. */
#include "model_dir.h"
#include "../kernels/check.h"
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MD_LOAD_CHUNK ((int64_t)1 << 20) /* elements converted per upload */

typedef struct prefix_rule {
    char *from, *to;
} prefix_rule;

typedef struct shard {
    char *file; /* name inside the folder */
    st_file *st;
} shard;

typedef struct tie_rule {
    char *name, *source;
} tie_rule;

struct model_dir {
    char *path;
    char *config_path;
    cJSON *config;
    shard *shards;
    int nshards;
    int64_t shardcap;
    prefix_rule *rules;
    int nrules;
    int64_t rulecap;
    tie_rule *ties;
    int nties;
    int64_t tiecap;
};

/* Both LLaVA key layouts, each direction (model_dir.h). */
static const char *const default_aliases[][2] = {
    {"language_model.model.", "model.language_model."},
    {"model.language_model.", "language_model.model."},
    {"language_model.lm_head.", "lm_head."},
    {"lm_head.", "language_model.lm_head."},
    {"vision_tower.", "model.vision_tower."},
    {"model.vision_tower.", "vision_tower."},
    {"multi_modal_projector.", "model.multi_modal_projector."},
    {"model.multi_modal_projector.", "multi_modal_projector."},
};

static char *join_path(const char *dir, const char *file) {
    size_t n = strlen(dir) + strlen(file) + 2;
    char *p = aimc_xmalloc(n);
    snprintf(p, n, "%s/%s", dir, file);
    return p;
}

static int is_file(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* ---- opening ------------------------------------------------------------ */

/* A whole small file as a NUL-terminated string; NULL with "PATH: problem". */
static char *read_small_file(const char *path, char *err, size_t errlen) {
    size_t n;
    char *text = aimc_read_file(path, AIMC_MAX_CONFIG_BYTES, &n, err, errlen);
    if (text && memchr(text, '\0', n)) {
        aimc_fail_path(err, errlen, path, "contains a NUL byte");
        free(text);
        text = NULL;
    }
    return text;
}

/* Parses a whole JSON file that must hold an object; NULL with "PATH: problem". */
static cJSON *read_json_file(const char *path, char *err, size_t errlen) {
    char *text = read_small_file(path, err, errlen);
    if (!text) return NULL;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(text, &end, 1);
    if (!root) {
        aimc_set_err(err, errlen, "%s: not valid JSON (error at byte %td)", path,
                     end ? end - text : 0);
    } else if (!cJSON_IsObject(root)) {
        aimc_set_err(err, errlen, "%s: not a JSON object", path);
        cJSON_Delete(root);
        root = NULL;
    }
    free(text);
    return root;
}

static int add_shard(model_dir *md, const char *file, char *err, size_t errlen) {
    for (int i = 0; i < md->nshards; i++)
        if (!strcmp(md->shards[i].file, file)) return 0;
    char *full = join_path(md->path, file);
    st_file *f = st_open(full, err, errlen);
    free(full);
    if (!f) return -1;
    md->shards = aimc_grow(md->shards, &md->shardcap, md->nshards + 1, sizeof *md->shards, 8);
    md->shards[md->nshards++] = (shard){aimc_strdup(file), f};
    return 0;
}

/* A shard must be a plain file name inside the folder. */
static int valid_shard_name(const char *s) {
    return *s && !strchr(s, '/') && strcmp(s, ".") && strcmp(s, "..");
}

/* Every weight_map entry must name an existing shard that holds it. */
static int check_weight_map(model_dir *md, const cJSON *map, const char *index_path, char *err,
                            size_t errlen) {
    for (const cJSON *e = map->child; e; e = e->next) {
        int s = 0;
        while (strcmp(md->shards[s].file, e->valuestring)) s++; /* present: added above */
        if (!st_find(md->shards[s].st, e->string))
            return aimc_set_err(
                err, errlen, "%s: tensor '%s' is mapped to shard '%s', which does not contain it",
                index_path, e->string, e->valuestring);
    }
    return 0;
}

static int open_sharded(model_dir *md, const char *index_path, char *err, size_t errlen) {
    cJSON *root = read_json_file(index_path, err, errlen);
    if (!root) return -1;
    const cJSON *map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    int rc = 0;
    if (!cJSON_IsObject(map))
        rc = aimc_set_err(err, errlen, "%s: no \"weight_map\" object", index_path);
    for (const cJSON *e = rc ? NULL : map->child; e && !rc; e = e->next) {
        if (!cJSON_IsString(e) || !valid_shard_name(e->valuestring))
            rc = aimc_set_err(err, errlen,
                              "%s: weight_map entry for '%s' is not a file name in the folder",
                              index_path, e->string);
        else
            rc = add_shard(md, e->valuestring, err, errlen);
    }
    if (!rc) rc = check_weight_map(md, map, index_path, err, errlen);
    cJSON_Delete(root);
    return rc;
}

static int open_weights(model_dir *md, char *err, size_t errlen) {
    char *single = join_path(md->path, "model.safetensors");
    char *index = join_path(md->path, "model.safetensors.index.json");
    char *bin = join_path(md->path, "pytorch_model.bin");
    int rc;
    if (is_file(single))
        rc = add_shard(md, "model.safetensors", err, errlen);
    else if (is_file(index))
        rc = open_sharded(md, index, err, errlen);
    else if (is_file(bin))
        rc = aimc_set_err(err, errlen,
                          "%s: only PyTorch .bin weights found; aimc reads safetensors "
                          "(model.safetensors or model.safetensors.index.json)",
                          md->path);
    else
        rc = aimc_set_err(err, errlen, "%s: no model.safetensors or model.safetensors.index.json",
                          md->path);
    free(single);
    free(index);
    free(bin);
    return rc;
}

model_dir *model_dir_open(const char *dir, char *err, size_t errlen) {
    model_dir *md = aimc_xcalloc(1, sizeof *md);
    md->path = aimc_strdup(dir);
    md->config_path = join_path(dir, "config.json");
    struct stat sb;
    int rc = 0;
    if (stat(dir, &sb))
        rc =
            aimc_set_err(err, errlen, "%s: cannot open the model folder: %s", dir, strerror(errno));
    else if (!S_ISDIR(sb.st_mode))
        rc = aimc_set_err(err, errlen, "%s: not a folder", dir);
    if (!rc) {
        md->config = read_json_file(md->config_path, err, errlen);
        rc = md->config ? open_weights(md, err, errlen) : -1;
    }
    if (rc) {
        model_dir_close(md);
        return NULL;
    }
    for (size_t i = 0; i < sizeof default_aliases / sizeof default_aliases[0]; i++)
        model_dir_alias(md, default_aliases[i][0], default_aliases[i][1]);
    return md;
}

void model_dir_close(model_dir *md) {
    if (!md) return;
    for (int i = 0; i < md->nshards; i++) {
        st_close(md->shards[i].st);
        free(md->shards[i].file);
    }
    for (int i = 0; i < md->nrules; i++) {
        free(md->rules[i].from);
        free(md->rules[i].to);
    }
    for (int i = 0; i < md->nties; i++) {
        free(md->ties[i].name);
        free(md->ties[i].source);
    }
    free(md->shards);
    free(md->rules);
    free(md->ties);
    cJSON_Delete(md->config);
    free(md->config_path);
    free(md->path);
    free(md);
}

const char *model_dir_path(const model_dir *md) { return md->path; }
const struct cJSON *model_dir_config(const model_dir *md) { return md->config; }
int model_dir_shard_count(const model_dir *md) { return md->nshards; }

/* ---- names: aliases and ties -------------------------------------------- */

void model_dir_alias(model_dir *md, const char *from_prefix, const char *to_prefix) {
    md->rules = aimc_grow(md->rules, &md->rulecap, md->nrules + 1, sizeof *md->rules, 8);
    md->rules[md->nrules++] = (prefix_rule){aimc_strdup(from_prefix), aimc_strdup(to_prefix)};
}

void model_dir_tie(model_dir *md, const char *name, const char *source) {
    md->ties = aimc_grow(md->ties, &md->tiecap, md->nties + 1, sizeof *md->ties, 8);
    md->ties[md->nties++] = (tie_rule){aimc_strdup(name), aimc_strdup(source)};
}

/* The name followed by each alias rewrite of it, in table order. */
typedef struct name_list {
    char **v;
    int n;
} name_list;

static name_list alias_candidates(const model_dir *md, const char *name) {
    name_list l = {malloc(sizeof(char *) * (size_t)(md->nrules + 1)), 0};
    AIMC_CHECK(l.v, "out of memory");
    l.v[l.n++] = aimc_strdup(name);
    for (int i = 0; i < md->nrules; i++) {
        size_t fl = strlen(md->rules[i].from);
        if (strncmp(name, md->rules[i].from, fl)) continue;
        size_t n = strlen(md->rules[i].to) + strlen(name + fl) + 1;
        char *c = aimc_xmalloc(n);
        snprintf(c, n, "%s%s", md->rules[i].to, name + fl);
        l.v[l.n++] = c;
    }
    return l;
}

static void free_names(name_list *l) {
    for (int i = 0; i < l->n; i++) free(l->v[i]);
    free(l->v);
}

static const st_tensor *find_exact(const model_dir *md, const char *name) {
    for (int i = 0; i < md->nshards; i++) {
        const st_tensor *t = st_find(md->shards[i].st, name);
        if (t) return t;
    }
    return NULL;
}

static const st_tensor *find_aliased(const model_dir *md, const char *name) {
    name_list l = alias_candidates(md, name);
    const st_tensor *t = NULL;
    for (int i = 0; i < l.n && !t; i++) t = find_exact(md, l.v[i]);
    free_names(&l);
    return t;
}

/* The tie whose name equals the name or one of its rewrites; NULL if none. */
static const tie_rule *tie_for(const model_dir *md, const char *name) {
    name_list l = alias_candidates(md, name);
    const tie_rule *hit = NULL;
    for (int t = 0; t < md->nties && !hit; t++)
        for (int i = 0; i < l.n && !hit; i++)
            if (!strcmp(md->ties[t].name, l.v[i])) hit = &md->ties[t];
    free_names(&l);
    return hit;
}

const st_tensor *model_dir_find(const model_dir *md, const char *name) {
    const st_tensor *t = find_aliased(md, name);
    if (t) return t;
    const tie_rule *tie = tie_for(md, name);
    return tie ? find_aliased(md, tie->source) : NULL;
}

/* "'a', 'b' (tied to 'c')": every name a failed lookup tried after the first. */
static void describe_tries(const model_dir *md, const char *name, char *buf, size_t n) {
    name_list l = alias_candidates(md, name);
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 1; i < l.n && used < n; i++)
        used += (size_t)snprintf(buf + used, n - used, "%s'%s'", i > 1 ? ", " : "", l.v[i]);
    const tie_rule *tie = tie_for(md, name);
    if (tie && used < n)
        snprintf(buf + used, n - used, "%stied to '%s'", used ? ", " : "", tie->source);
    free_names(&l);
}

static const char *shape_text(int ndim, const int64_t *shape, char *buf, size_t n) {
    size_t used = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < ndim && used < n; i++) {
        const char *sep = i ? ", " : "";
        if (shape[i] == MD_ANY_SIZE)
            used += (size_t)snprintf(buf + used, n - used, "%s*", sep);
        else
            used += (size_t)snprintf(buf + used, n - used, "%s%lld", sep, (long long)shape[i]);
    }
    if (used < n) snprintf(buf + used, n - used, "]");
    return buf;
}

static int shape_matches(const st_tensor *t, int ndim, const int64_t *shape) {
    if (ndim == MD_ANY_SHAPE) return 1;
    if (t->ndim != ndim) return 0;
    for (int i = 0; i < ndim; i++)
        if (shape[i] != MD_ANY_SIZE && shape[i] != t->shape[i]) return 0;
    return 1;
}

const st_tensor *model_dir_need(const model_dir *md, const char *name, int ndim,
                                const int64_t *shape) {
    const st_tensor *t = model_dir_find(md, name);
    if (!t) {
        char tries[1024];
        describe_tries(md, name, tries, sizeof tries);
        if (tries[0])
            aimc_die("%s: tensor '%s' not found in the checkpoint (also tried %s)", md->path, name,
                     tries);
        aimc_die("%s: tensor '%s' not found in the checkpoint", md->path, name);
    }
    if (!shape_matches(t, ndim, shape)) {
        char have[256], want[256], stored[512] = "";
        if (strcmp(t->name, name)) snprintf(stored, sizeof stored, " (stored as '%s')", t->name);
        aimc_die("%s: tensor '%s'%s has shape %s, expected %s", md->path, name, stored,
                 shape_text(t->ndim, t->shape, have, sizeof have),
                 shape_text(ndim, shape, want, sizeof want));
    }
    return t;
}

/* ---- loading onto a backend --------------------------------------------- */

static int is_float_st(st_dtype dt) {
    return dt == ST_F64 || dt == ST_F32 || dt == ST_F16 || dt == ST_BF16 || dt == ST_F8_E4M3 ||
           dt == ST_F8_E5M2;
}

/* Elements [i0, i0 + n) of t as a 1-d tensor. */
static st_tensor chunk_view(const st_tensor *t, int64_t i0, int64_t n) {
    st_tensor v = *t;
    v.ndim = 1;
    v.shape[0] = n;
    v.data = (const char *)t->data + (size_t)i0 * st_dtype_size(t->dtype);
    v.nbytes = (size_t)n * st_dtype_size(t->dtype);
    return v;
}

/* Converts chunk by chunk through a host buffer, so a 500 MB embedding
 * table needs 8 MB of scratch, not a second copy. */
static void upload_converted(const model_dir *md, const st_tensor *t, tensor *dst) {
    int64_t n = tensor_numel(dst);
    size_t out_size = dtype_size(dst->dt);
    char *scratch = malloc((size_t)MD_LOAD_CHUNK * 4), *staged = malloc((size_t)MD_LOAD_CHUNK * 4);
    AIMC_CHECK(scratch && staged, "out of memory");
    char err[512];
    for (int64_t i0 = 0; i0 < n; i0 += MD_LOAD_CHUNK) {
        int64_t c = n - i0 < MD_LOAD_CHUNK ? n - i0 : MD_LOAD_CHUNK;
        st_tensor v = chunk_view(t, i0, c);
        const char *src = scratch;
        if (dst->dt == DT_I32) {
            if (st_read_i32(&v, (int32_t *)scratch, err, sizeof err))
                aimc_die("%s: %s", md->path, err);
        } else {
            st_read_f32(&v, (float *)scratch, err, sizeof err);
            if (dst->dt != DT_F32) {
                for (int64_t i = 0; i < c; i++)
                    store_from_f32(staged, dst->dt, i, ((float *)scratch)[i]);
                src = staged;
            }
        }
        dst->be->upload((char *)dst->data + (size_t)i0 * out_size, src, (size_t)c * out_size);
    }
    free(scratch);
    free(staged);
}

tensor model_dir_load(const model_dir *md, const char *name, const backend *be, dtype want,
                      int ndim, const int64_t *shape) {
    const st_tensor *t = model_dir_need(md, name, ndim, shape);
    if (t->ndim > TENSOR_MAX_DIMS)
        aimc_die("%s: tensor '%s' has %d dimensions; aimc tensors have at most %d", md->path, name,
                 t->ndim, TENSOR_MAX_DIMS);
    int convertible = want == DT_I32 ? !is_float_st(t->dtype) : is_float_st(t->dtype);
    if (!convertible)
        aimc_die("%s: tensor '%s' is %s in the checkpoint and cannot be loaded as %s", md->path,
                 name, st_dtype_name(t->dtype), dtype_name(want));
    int64_t one = 1;
    tensor out = t->ndim ? tensor_wrap(NULL, want, be, t->ndim, t->shape)
                         : tensor_wrap(NULL, want, be, 1, &one);
    size_t bytes = tensor_bytes(&out);
    out.data = be->alloc(bytes);
    if (st_to_dtype(t->dtype) == (int)want) {
        if (bytes) be->upload(out.data, t->data, bytes);
    } else {
        upload_converted(md, t, &out);
    }
    return out;
}

/* ---- config.json -------------------------------------------------------- */

/* One dotted path segment [s, s + n) applied to a JSON value. */
static const cJSON *step(const cJSON *v, const char *s, size_t n) {
    char key[256];
    if (!v || n == 0 || n >= sizeof key) return NULL;
    memcpy(key, s, n);
    key[n] = '\0';
    if (cJSON_IsObject(v)) return cJSON_GetObjectItemCaseSensitive(v, key);
    if (!cJSON_IsArray(v) || strspn(key, "0123456789") != n || n > 9) return NULL;
    return cJSON_GetArrayItem(v, atoi(key));
}

/* The value at one dotted path [s, s + n); NULL when absent or JSON null. */
static const cJSON *lookup_path(const cJSON *root, const char *s, size_t n) {
    const cJSON *v = root;
    const char *end = s + n;
    while (v && s < end) {
        const char *dot = memchr(s, '.', (size_t)(end - s));
        size_t len = dot ? (size_t)(dot - s) : (size_t)(end - s);
        v = step(v, s, len);
        s += len + (dot != NULL);
    }
    return cJSON_IsNull(v) ? NULL : v;
}

/* The first of the '|'-separated alternatives that is present; its text
 * goes to which[] for messages. */
static const cJSON *lookup_any(const model_dir *md, const char *paths, char *which, size_t wn) {
    const char *s = paths;
    for (;;) {
        const char *bar = strchr(s, '|');
        size_t len = bar ? (size_t)(bar - s) : strlen(s);
        const cJSON *v = lookup_path(md->config, s, len);
        if (v) {
            snprintf(which, wn, "%.*s", (int)len, s);
            return v;
        }
        if (!bar) return NULL;
        s = bar + 1;
    }
}

static const char *json_kind(const cJSON *v) {
    if (cJSON_IsBool(v)) return "a boolean";
    if (cJSON_IsNumber(v)) return "a number";
    if (cJSON_IsString(v)) return "a string";
    if (cJSON_IsArray(v)) return "an array";
    if (cJSON_IsObject(v)) return "an object";
    return "not a value";
}

static void die_missing(const model_dir *md, const char *paths) {
    char list[1024];
    size_t used = 0;
    for (const char *s = paths; *s && used + 8 < sizeof list; s++) {
        if (*s == '|')
            used += (size_t)snprintf(list + used, sizeof list - used, "' or '");
        else
            list[used++] = *s;
    }
    list[used] = '\0';
    aimc_die("%s: missing required key '%s'", md->config_path, list);
}

static void die_type(const model_dir *md, const char *which, const cJSON *v, const char *want) {
    aimc_die("%s: key '%s' is %s, expected %s", md->config_path, which, json_kind(v), want);
}

int cfg_has(const model_dir *md, const char *paths) {
    char which[256];
    return lookup_any(md, paths, which, sizeof which) != NULL;
}

/* The value at the first of paths that is present, or NULL when none is;
 * dies naming the key when that value is not of the kind is_kind accepts. */
static const cJSON *lookup_kind(const model_dir *md, const char *paths,
                                int (*is_kind)(const cJSON *), const char *want) {
    char which[256];
    const cJSON *v = lookup_any(md, paths, which, sizeof which);
    if (v && !is_kind(v)) die_type(md, which, v, want);
    return v;
}

/* A number that a double holds exactly and that has no fraction. */
static int is_exact_integer(const cJSON *v) {
    double d = cJSON_IsNumber(v) ? v->valuedouble : NAN;
    return fabs(d) < 9007199254740992.0 && d == floor(d);
}

int cfg_int(const model_dir *md, const char *paths, int64_t *out) {
    const cJSON *v = lookup_kind(md, paths, is_exact_integer, "an integer");
    if (v) *out = (int64_t)v->valuedouble;
    return v != NULL;
}

int64_t cfg_need_int(const model_dir *md, const char *paths) {
    int64_t v;
    if (!cfg_int(md, paths, &v)) die_missing(md, paths);
    return v;
}

int64_t cfg_int_or(const model_dir *md, const char *paths, int64_t dflt) {
    int64_t v;
    return cfg_int(md, paths, &v) ? v : dflt;
}

int cfg_double(const model_dir *md, const char *paths, double *out) {
    const cJSON *v = lookup_kind(md, paths, cJSON_IsNumber, "a number");
    if (v) *out = v->valuedouble;
    return v != NULL;
}

double cfg_need_double(const model_dir *md, const char *paths) {
    double v;
    if (!cfg_double(md, paths, &v)) die_missing(md, paths);
    return v;
}

double cfg_double_or(const model_dir *md, const char *paths, double dflt) {
    double v;
    return cfg_double(md, paths, &v) ? v : dflt;
}

int cfg_bool(const model_dir *md, const char *paths, int *out) {
    const cJSON *v = lookup_kind(md, paths, cJSON_IsBool, "true or false");
    if (v) *out = cJSON_IsTrue(v);
    return v != NULL;
}

int cfg_bool_or(const model_dir *md, const char *paths, int dflt) {
    int v;
    return cfg_bool(md, paths, &v) ? v : dflt;
}

int cfg_str(const model_dir *md, const char *paths, const char **out) {
    const cJSON *v = lookup_kind(md, paths, cJSON_IsString, "a string");
    if (v) *out = v->valuestring;
    return v != NULL;
}

const char *cfg_need_str(const model_dir *md, const char *paths) {
    const char *v;
    if (!cfg_str(md, paths, &v)) die_missing(md, paths);
    return v;
}

const char *cfg_str_or(const model_dir *md, const char *paths, const char *dflt) {
    const char *v;
    return cfg_str(md, paths, &v) ? v : dflt;
}
