/* aimc export: a checkpoint's projector as a plain PyTorch state_dict in
 * safetensors (f32, names as in host/projector.h) or as a params-only flat
 * checkpoint, plus a JSON description next to it (OUT with its extension
 * replaced by .json: projector.safetensors -> projector.json). A checkpoint
 * of the contrastive objective holds CLIP's heads instead (host/contrastive.h:
 * visual_projection.weight, text_projection.weight, logit_scale, a partial
 * CLIPModel state_dict); its JSON has projector_type "clip_heads", d_vision,
 * d_text and d_proj. */
#include "args.h"
#include "checkpoint.h"
#include "commands.h"
#include "safetensors.h"
#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int export_fail(const char *msg) {
    fprintf(stderr, "aimc export: error: %s\n", msg);
    return 1;
}

static st_dtype st_dtype_of(dtype dt) {
    switch (dt) {
    case DT_BF16: return ST_BF16;
    case DT_F16: return ST_F16;
    case DT_I32: return ST_I32;
    default: return ST_F32;
    }
}

static int write_safetensors(const ckpt_file *f, const char *out, char *err, size_t errlen) {
    st_writer *w = st_writer_new();
    char step[32];
    snprintf(step, sizeof step, "%llu", (unsigned long long)f->step);
    st_writer_metadata(w, "format", "pt");
    st_writer_metadata(w, "aimc_projector", f->projector_text);
    st_writer_metadata(w, "aimc_step", step);
    for (int i = 0; i < f->n_tensors; i++) {
        const ckpt_tensor *t = &f->tensors[i];
        if (t->role == CKPT_ROLE_PARAM)
            st_writer_add(w, t->name, st_dtype_of(t->dt), t->ndim, t->shape, t->data);
    }
    int rc = st_writer_save(w, out, err, errlen);
    st_writer_free(w);
    return rc;
}

static int write_flat(const ckpt_file *f, const char *out, char *err, size_t errlen) {
    ckpt_tensor *params = calloc((size_t)f->n_tensors + 1, sizeof *params);
    int n = 0;
    for (int i = 0; i < f->n_tensors; i++)
        if (f->tensors[i].role == CKPT_ROLE_PARAM) params[n++] = f->tensors[i];
    ckpt_contents c = {.kind = CKPT_KIND_PARAMS, .step = f->step,
                       .backbone_text = f->backbone_text, .projector_text = f->projector_text,
                       .config_text = f->config_text, .tensors = params, .n_tensors = n};
    int rc = ckpt_write(out, &c, err, errlen);
    free(params);
    return rc;
}

/* ---- the JSON description --------------------------------------------------- */

static char *trim(char *s) {
    while (isspace((unsigned char)*s)) s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1])) s[--n] = 0;
    if (n >= 2 && (s[0] == '"' || s[0] == '\'') && s[n - 1] == s[0]) {
        s[n - 1] = 0;
        s++;
    }
    return s;
}

/* value of `key = value` lines (config files; '#' starts a comment line). */
static int lookup_line(const char *text, const char *key, char *out, size_t n) {
    char line[1024];
    for (const char *s = text; *s;) {
        size_t len = strcspn(s, "\n");
        snprintf(line, sizeof line, "%.*s", (int)(len < sizeof line ? len : sizeof line - 1), s);
        s += len + (s[len] == '\n');
        char *eq = strchr(line, '=');
        if (line[0] == '#' || !eq) continue;
        *eq = 0;
        if (!strcmp(trim(line), key)) return snprintf(out, n, "%s", trim(eq + 1)), 1;
    }
    return 0;
}

/* value of a `key=value` word (one-line descriptions). */
static int lookup_word(const char *text, const char *key, char *out, size_t n) {
    size_t klen = strlen(key);
    for (const char *s = text; *s;) {
        s += strspn(s, " \t\n");
        size_t len = strcspn(s, " \t\n");
        if (len > klen && !strncmp(s, key, klen) && s[klen] == '=')
            return snprintf(out, n, "%.*s", (int)(len - klen - 1), s + klen + 1), 1;
        s += len;
    }
    return 0;
}

/* The first of keys found in the run config (lines) or the backbone text (words). */
static int lookup(const ckpt_file *f, const char *const *keys, char *out, size_t n) {
    for (int i = 0; keys[i]; i++)
        if (lookup_line(f->config_text, keys[i], out, n)) return 1;
    for (int i = 0; keys[i]; i++)
        if (lookup_word(f->backbone_text, keys[i], out, n)) return 1;
    return 0;
}

/* An integer-looking value as a number, anything else as a string, absent as null. */
static void add_lookup(cJSON *o, const char *field, const ckpt_file *f, const char *const *keys) {
    char v[512], *end;
    if (!lookup(f, keys, v, sizeof v)) {
        cJSON_AddNullToObject(o, field);
        return;
    }
    long long x = strtoll(v, &end, 10);
    if (*v && !*end) cJSON_AddNumberToObject(o, field, (double)x);
    else cJSON_AddStringToObject(o, field, v);
}

static const char *base_name(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* "state_dict": {name: shape} of the parameters. */
static void add_state_dict(cJSON *o, const ckpt_file *f) {
    cJSON *sd = cJSON_AddObjectToObject(o, "state_dict");
    for (int i = 0; i < f->n_tensors; i++) {
        const ckpt_tensor *t = &f->tensors[i];
        if (t->role != CKPT_ROLE_PARAM) continue;
        cJSON *shape = cJSON_AddArrayToObject(sd, t->name);
        for (int d = 0; d < t->ndim; d++) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->shape[d]));
    }
}

static void add_projector_fields(cJSON *o, const ckpt_file *f, const projector_config *cfg) {
    cJSON_AddStringToObject(o, "projector_type", projector_type_name(cfg->type));
    cJSON_AddNumberToObject(o, "d_in", (double)cfg->d_in);
    cJSON_AddNumberToObject(o, "d_out", (double)cfg->d_out);
    if (cfg->type == PROJ_MLP) {
        cJSON_AddNumberToObject(o, "d_hidden", (double)(cfg->d_hidden ? cfg->d_hidden : cfg->d_out));
        cJSON_AddStringToObject(o, "activation", "gelu");
    }
    if (cfg->type == PROJ_LINEAR_LN) { /* as the description writes it: 1e-05, not 9.99999974737875e-06 */
        const char *eps = strstr(f->projector_text, "ln_eps=");
        cJSON_AddNumberToObject(o, "ln_eps", eps ? strtod(eps + 7, NULL) : (double)cfg->ln_eps);
    }
    add_state_dict(o, f);
}

/* Whether the checkpoint holds CLIP's contrastive heads ("type=clip_heads ..."). */
static int is_clip_heads(const ckpt_file *f) {
    const char *p = f->projector_text, *type = "type=clip_heads";
    size_t n = strlen(type);
    return !strncmp(p, type, n) && (p[n] == ' ' || !p[n]);
}

static void add_clip_heads_fields(cJSON *o, const ckpt_file *f) {
    static const char *const sizes[] = {"d_vision", "d_text", "d_proj", NULL};
    cJSON_AddStringToObject(o, "projector_type", "clip_heads");
    for (int i = 0; sizes[i]; i++) {
        char v[64];
        if (lookup_word(f->projector_text, sizes[i], v, sizeof v))
            cJSON_AddNumberToObject(o, sizes[i], strtod(v, NULL));
        else
            cJSON_AddNullToObject(o, sizes[i]);
    }
    add_state_dict(o, f);
}

/* cfg NULL: CLIP's heads (no aggregation layer, no projector_config). */
static char *describe_json(const ckpt_file *f, const projector_config *cfg, const char *out,
                           const char *format) {
    static const char *const backbone_keys[] = {"backbone", "model", "name", NULL};
    static const char *const layer_keys[] = {"layer", "source_layer", "aggregation_layer",
                                             "feature_layer", NULL};
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "format", "aimc-projector");
    add_lookup(o, "backbone", f, backbone_keys);
    if (cfg) {
        add_lookup(o, "layer", f, layer_keys);
        add_projector_fields(o, f, cfg);
    } else {
        cJSON_AddNullToObject(o, "layer");
        add_clip_heads_fields(o, f);
    }
    cJSON_AddNumberToObject(o, "step", (double)f->step);
    cJSON_AddStringToObject(o, "weights", base_name(out));
    cJSON_AddStringToObject(o, "weights_format", format);
    cJSON_AddStringToObject(o, "dtype", "float32");
    cJSON_AddStringToObject(o, "projector_config", f->projector_text);
    cJSON_AddStringToObject(o, "backbone_config", f->backbone_text);
    char *text = cJSON_Print(o);
    cJSON_Delete(o);
    return text;
}

/* OUT minus a .safetensors / .bin / .aimc extension, plus .json. */
static void json_path(const char *out, char *buf, size_t n) {
    const char *dot = strrchr(out, '.');
    size_t keep = strlen(out);
    if (dot && strchr(dot, '/') == NULL &&
        (!strcmp(dot, ".safetensors") || !strcmp(dot, ".bin") || !strcmp(dot, ".aimc")))
        keep = (size_t)(dot - out);
    snprintf(buf, n, "%.*s.json", (int)keep, out);
}

/* text to path via a temporary file, fsync and rename. */
static int write_text_atomic(const char *path, const char *text, char *err, size_t errlen) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "w");
    int ok = f && fputs(text, f) >= 0 && fputc('\n', f) != EOF && !fflush(f) && !fsync(fileno(f));
    int e = errno;
    if (f && fclose(f)) ok = 0, e = errno;
    if (ok && rename(tmp, path)) ok = 0, e = errno;
    if (!ok) {
        unlink(tmp);
        snprintf(err, errlen, "%s: writing failed: %s", path, strerror(e));
        return -1;
    }
    return 0;
}

typedef struct export_cli {
    const char *out, *format;
} export_cli;

static int run_export(const char *ckpt, const export_cli *o) {
    char err[8192], path[4096], jpath[4096];
    if (ckpt_resolve(ckpt, path, sizeof path, err, sizeof err)) return export_fail(err);
    ckpt_file *f = ckpt_open(path, NULL, err, sizeof err);
    if (!f) return export_fail(err);
    projector_config cfg;
    int heads = is_clip_heads(f);
    int rc = heads ? 0 : projector_config_parse(f->projector_text, &cfg, err, sizeof err);
    if (!rc && !strcmp(o->format, "bin")) rc = write_flat(f, o->out, err, sizeof err);
    else if (!rc) rc = write_safetensors(f, o->out, err, sizeof err);
    char *json = rc ? NULL : describe_json(f, heads ? NULL : &cfg, o->out, o->format);
    json_path(o->out, jpath, sizeof jpath);
    if (json) rc = write_text_atomic(jpath, json, err, sizeof err);
    if (!rc)
        printf("aimc export: %s (step %llu, %s%s) -> %s and %s\n", path, (unsigned long long)f->step,
               heads ? "CLIP contrastive heads" : projector_type_name(cfg.type), heads ? "" : " projector",
               o->out, jpath);
    free(json);
    ckpt_close(f);
    return rc ? export_fail(err) : 0;
}

int cmd_export(int argc, char **argv) {
    export_cli o = {NULL, "safetensors"};
    arg_opt opts[] = {
        {"--out", ARG_STR, &o.out, "output file (projector.safetensors)"},
        {"--format", ARG_STR, &o.format, "safetensors (a PyTorch state_dict) or bin (flat aimc format)"},
    };
    int npos = args_parse(argc, argv, "aimc export CKPT --out FILE [--format safetensors|bin]",
                          "Writes the projector of checkpoint CKPT (a file, or a checkpoint directory:\n"
                          "its latest) as f32 tensors named like the PyTorch module's state_dict, and a\n"
                          "JSON description (backbone, layer, projector type, sizes, step) next to it:\n"
                          "FILE with its extension replaced by .json.",
                          opts, (int)(sizeof opts / sizeof opts[0]));
    if (npos != 1 || !o.out) {
        fprintf(stderr, "aimc export: error: need one CKPT and --out FILE (see 'aimc export --help')\n");
        return 2;
    }
    if (strcmp(o.format, "safetensors") && strcmp(o.format, "bin")) {
        fprintf(stderr, "aimc export: error: --format '%s' is not safetensors or bin\n", o.format);
        return 2;
    }
    return run_export(argv[1], &o);
}
