/* aimc forward: one forward pass of a Hugging Face model folder on
 * preprocessed inputs, written as safetensors (f32).
 *
 * Inputs (IN.safetensors): input_ids [B, T] (I64 or I32); attention_mask
 * [B, T] (optional, default all ones); pixel_values [N, 3, H, W] (floats;
 * for the models that take images); labels [B, T] (optional; -100 is
 * ignored).
 * Outputs, by model:
 *  - LLaVA / BLIP-2: logits [B, T', V], hidden_states [B, T', D] (the
 *    --hidden-layer entry of transformers' hidden_states, default the last),
 *    image_features [N, n, D] (the image tokens put into the LM input; only
 *    with pixel_values), loss [] (with labels). T' = T, or n + T for a
 *    BLIP-2 config without image_token_index (the queries go in front).
 *  - a plain LLaMA / OPT causal LM: logits, hidden_states, loss.
 *  - CLIP: logits_per_image [Ni, Nt], logits_per_text [Nt, Ni],
 *    text_embeds, image_embeds (unit rows), loss [] (when Ni == Nt),
 *    text_hidden_states [B, T, Dt], vision_hidden_states [N, Tv, Dv] (the
 *    towers' --hidden-layer entries; the last is before the final norm). */
#include "args.h"
#include "backend.h"
#include "clip.h"
#include "commands.h"
#include "mllm.h"
#include "safetensors.h"
#include "../kernels/check.h"
#include <stdlib.h>
#include <string.h>

typedef struct fwd_cli {
    const char *model, *inputs, *out, *device;
    int64_t hidden_layer, arena_mb;
} fwd_cli;

/* What the input file holds, on the host. */
typedef struct fwd_inputs {
    st_file *file;
    int64_t batch, len;
    int32_t *ids, *mask, *labels; /* mask, labels NULL when absent */
    float *pixels;                /* NULL when absent */
    int64_t px_shape[4];
} fwd_inputs;

/* ---- reading the inputs ------------------------------------------------- */

static int64_t st_numel(const st_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

/* An integer tensor of shape [batch, len] as host i32 (NULL when absent and
 * optional). */
static int32_t *read_ids(const fwd_inputs *in, const char *path, const char *name, int required) {
    const st_tensor *t = st_find(in->file, name);
    if (!t) {
        if (required) aimc_die("%s: no tensor '%s'", path, name);
        return NULL;
    }
    int64_t b = in->batch, l = in->len;
    if (t->ndim != 2 || (b >= 0 && (t->shape[0] != b || t->shape[1] != l)))
        aimc_die("%s: '%s' must be [batch, tokens]%s (it has %d dims%s)", path, name,
                 b >= 0 ? ", the shape of input_ids" : "", t->ndim,
                 t->ndim == 2 ? ", another shape" : "");
    int32_t *out = aimc_xmalloc((size_t)(st_numel(t) > 0 ? st_numel(t) : 1) * sizeof *out);
    char err[512];
    if (st_read_i32(t, out, err, sizeof err)) aimc_die("%s: '%s': %s", path, name, err);
    return out;
}

static void read_pixels(fwd_inputs *in, const char *path) {
    const st_tensor *t = st_find(in->file, "pixel_values");
    if (!t) return;
    if (t->ndim != 4 || st_numel(t) <= 0)
        aimc_die("%s: 'pixel_values' must be [images, channels, height, width] (it has %d dims)",
                 path, t->ndim);
    for (int i = 0; i < 4; i++) in->px_shape[i] = t->shape[i];
    in->pixels = aimc_xmalloc((size_t)st_numel(t) * sizeof *in->pixels);
    char err[512];
    if (st_read_f32(t, in->pixels, err, sizeof err))
        aimc_die("%s: 'pixel_values': %s", path, err);
}

static void read_inputs(fwd_inputs *in, const char *path) {
    char err[1024];
    memset(in, 0, sizeof *in);
    in->file = st_open(path, err, sizeof err);
    if (!in->file) aimc_die("%s", err);
    in->batch = in->len = -1;
    in->ids = read_ids(in, path, "input_ids", 1);
    const st_tensor *t = st_find(in->file, "input_ids");
    in->batch = t->shape[0];
    in->len = t->shape[1];
    if (in->batch < 1 || in->len < 1)
        aimc_die("%s: input_ids is [%lld, %lld]; expected at least one token", path,
                 (long long)in->batch, (long long)in->len);
    in->mask = read_ids(in, path, "attention_mask", 0);
    in->labels = read_ids(in, path, "labels", 0);
    read_pixels(in, path);
}

static void free_inputs(fwd_inputs *in) {
    free(in->ids), free(in->mask), free(in->labels), free(in->pixels);
    st_close(in->file);
}

/* pixel_values as a host tensor (the towers take any backend). */
static tensor pixel_tensor(const fwd_inputs *in, const char *path) {
    if (!in->pixels) aimc_die("%s: this model takes images, but there is no 'pixel_values'", path);
    return tensor_wrap(in->pixels, DT_F32, backend_cpu(), 4, in->px_shape);
}

/* ---- writing the outputs ------------------------------------------------ */

/* Adds t (any backend, any float dtype) as F32. */
static void add_f32(st_writer *w, arena *a, const char *name, const tensor *t) {
    size_t mark = a->used;
    tensor f = *t;
    if (t->dt != DT_F32) {
        f = arena_tensor(a, DT_F32, t->ndim, t->shape);
        op_convert(&f, t);
    }
    int64_t n = tensor_numel(&f);
    float *host = aimc_xmalloc((size_t)(n > 0 ? n : 1) * sizeof *host);
    f.be->download(host, f.data, (size_t)n * sizeof *host);
    st_writer_add(w, name, ST_F32, t->ndim, t->shape, host);
    free(host);
    a->used = mark;
}

static void add_scalar(st_writer *w, const char *name, float v) {
    st_writer_add(w, name, ST_F32, 0, NULL, &v);
}

static void save(st_writer *w, const char *path) {
    char err[1024];
    st_writer_metadata(w, "format", "pt");
    if (st_writer_save(w, path, err, sizeof err)) aimc_die("%s", err);
    st_writer_free(w);
}

/* ---- memory ------------------------------------------------------------- */

/* A generous bound on the step memory: the logits twice (the loss works on
 * a copy), the decoder's per-layer activations, the vision tower's. */
static size_t lm_bytes(const decoder *lm, int64_t batch, int64_t len) {
    const decoder_config *c = &lm->cfg;
    int64_t rows = batch * len;
    int64_t width = 12 * c->hidden + 4 * c->ffn + 4 * c->heads * c->head_dim;
    return (size_t)(rows * (2 * c->vocab + width)) * 4 + (size_t)(batch * c->heads * len) * 8;
}

static size_t vision_bytes(const vit_model *v, int64_t n) {
    if (!v) return 0;
    int64_t rows = n * v->seq_len;
    int64_t width = 12 * v->enc.dim + 3 * v->enc.mlp_dim + 2 * v->channels * v->patch_size *
                                                              v->patch_size;
    return (size_t)(rows * width) * 4;
}

static void arena_for(arena *a, const backend *be, size_t need, int64_t arena_mb) {
    size_t bytes = arena_mb > 0 ? (size_t)arena_mb << 20 : need + need / 2 + ((size_t)64 << 20);
    arena_init(a, be, bytes);
}

/* ---- language models (LLaVA, BLIP-2, plain LLaMA / OPT) ------------------ */

/* Runs the decoder on embeds and writes logits, hidden_states and loss. */
static void run_lm(const decoder *lm, arena *a, const tensor *embeds, const int32_t *mask,
                   const fwd_inputs *in, const fwd_cli *o, st_writer *w) {
    decoder_pass p;
    decoder_fwd_opts fo = {.want_logits = 1, .want_hidden = 1, .hidden_layer = o->hidden_layer};
    decoder_forward(lm, a, embeds, mask, &fo, &p);
    add_f32(w, a, "logits", &p.logits);
    add_f32(w, a, "hidden_states", &p.hidden);
    if (in->labels) add_scalar(w, "loss", (float)decoder_lm_loss(a, &p.logits, in->labels,
                                                                 in->len, NULL));
    decoder_pass_release(&p);
}

static void forward_mllm(const fwd_cli *o, const backend *be, const fwd_inputs *in,
                         st_writer *w) {
    mllm *m = mllm_load(o->model, be, be->act_dtype);
    int64_t n_img = in->pixels ? in->px_shape[0] : 0, full = mllm_input_len(m, in->len);
    arena a;
    arena_for(&a, be, lm_bytes(m->lm, in->batch, full) + vision_bytes(m->vision, n_img),
              o->arena_mb);
    tensor img = {0};
    if (in->pixels) {
        tensor px = pixel_tensor(in, o->inputs);
        img = mllm_image_tokens(m, &a, &px);
    }
    tensor embeds = mllm_build_inputs(m, &a, in->ids, in->batch, in->len,
                                      img.data ? &img : NULL);
    int32_t *mask = mllm_input_mask(m, in->mask, in->batch, in->len);
    if (img.data) add_f32(w, &a, "image_features", &img);
    run_lm(m->lm, &a, &embeds, mask, in, o, w);
    free(mask);
    arena_free(&a);
    mllm_free(m);
}

static void forward_causal_lm(const fwd_cli *o, const backend *be, model_dir *md,
                              const fwd_inputs *in, st_writer *w) {
    if (in->pixels)
        aimc_die("%s: pixel_values given, but %s is a text-only language model", o->inputs,
                 o->model);
    nn_loader ld = {.md = md, .be = be, .wdt = be->act_dtype};
    decoder *lm = decoder_load(&ld, "", "");
    arena a;
    arena_for(&a, be, lm_bytes(lm, in->batch, in->len), o->arena_mb);
    tensor embeds = decoder_embed_tokens(lm, &a, in->ids, in->batch, in->len);
    run_lm(lm, &a, &embeds, in->mask, in, o, w);
    arena_free(&a);
    decoder_free(lm);
}

/* ---- CLIP ----------------------------------------------------------------- */

/* attention_mask as f32 [B, T] on the host (NULL when absent). */
static float *mask_f32(const fwd_inputs *in) {
    if (!in->mask) return NULL;
    int64_t n = in->batch * in->len;
    float *f = aimc_xmalloc((size_t)n * sizeof *f);
    for (int64_t i = 0; i < n; i++) f[i] = (float)in->mask[i];
    return f;
}

static void clip_outputs(const clip_model *m, arena *a, const tensor *px, const tensor *ids,
                         const tensor *mask, const fwd_cli *o, st_writer *w) {
    clip_output out;
    clip_forward(m, a, px, ids, mask, &out);
    add_f32(w, a, "logits_per_image", &out.logits_per_image);
    add_f32(w, a, "logits_per_text", &out.logits_per_text);
    add_f32(w, a, "text_embeds", &out.text_embeds);
    add_f32(w, a, "image_embeds", &out.image_embeds);
    if (out.loss.data) {
        tensor loss0 = out.loss;
        loss0.ndim = 0; /* transformers' loss is a 0-d tensor */
        add_f32(w, a, "loss", &loss0);
    }
    tensor th = clip_text_forward(&m->text, a, ids, mask, o->hidden_layer, 0);
    add_f32(w, a, "text_hidden_states", &th);
    tensor vh = vit_forward(m->vision, a, px, o->hidden_layer, 0);
    add_f32(w, a, "vision_hidden_states", &vh);
}

static void forward_clip(const fwd_cli *o, const backend *be, model_dir *md,
                         const fwd_inputs *in, st_writer *w) {
    nn_loader ld = {.md = md, .be = be, .wdt = be->act_dtype};
    clip_model *m = clip_load(&ld, "");
    tensor px = pixel_tensor(in, o->inputs);
    tensor ids = tensor_wrap(in->ids, DT_I32, backend_cpu(), 2, (int64_t[]){in->batch, in->len});
    float *maskf = mask_f32(in);
    tensor mask = tensor_wrap(maskf, DT_F32, backend_cpu(), 2, (int64_t[]){in->batch, in->len});
    int64_t width = 16 * m->text.enc.dim + 3 * m->text.enc.mlp_dim;
    size_t need = (size_t)(in->batch * in->len * width) * 4 +
                  2 * vision_bytes(m->vision, in->px_shape[0]);
    arena a;
    arena_for(&a, be, need, o->arena_mb);
    clip_outputs(m, &a, &px, &ids, maskf ? &mask : NULL, o, w);
    arena_free(&a);
    free(maskf);
    clip_free(m);
}

/* ---- dispatch --------------------------------------------------------------- */

typedef enum { FWD_MLLM, FWD_CLIP, FWD_CAUSAL_LM } fwd_kind;

/* Which runner a folder needs, from config.json's model_type /
 * architectures; dies naming an architecture aimc does not run. */
static fwd_kind model_kind(const model_dir *md) {
    char what[256];
    if (mllm_detect(md, what, sizeof what) >= 0) return FWD_MLLM;
    const char *type = cfg_str_or(md, "model_type", "");
    if (!strcmp(type, "clip")) return FWD_CLIP;
    if (!strcmp(type, "llama") || !strcmp(type, "opt")) return FWD_CAUSAL_LM;
    aimc_die("%s/config.json: %s is not a model aimc runs (llava, blip-2, clip, llama, opt)",
             model_dir_path(md), what);
}

static void run_forward(const fwd_cli *o) {
    const backend *be = backend_by_name(o->device);
    char err[1024];
    model_dir *md = model_dir_open(o->model, err, sizeof err);
    if (!md) aimc_die("%s", err);
    fwd_kind kind = model_kind(md);
    fwd_inputs in;
    read_inputs(&in, o->inputs);
    st_writer *w = st_writer_new();
    if (kind == FWD_MLLM) {
        model_dir_close(md); /* mllm_load opens the folder itself */
        md = NULL;
        forward_mllm(o, be, &in, w);
    } else if (kind == FWD_CLIP) {
        forward_clip(o, be, md, &in, w);
    } else {
        forward_causal_lm(o, be, md, &in, w);
    }
    save(w, o->out);
    free_inputs(&in);
    if (md) model_dir_close(md);
}

int cmd_forward(int argc, char **argv) {
    fwd_cli o = {.device = "cpu", .hidden_layer = -1};
    arg_opt opts[] = {
        {"--model", ARG_STR, &o.model, "Hugging Face model folder (config.json + safetensors)"},
        {"--inputs", ARG_STR, &o.inputs,
         "input_ids, attention_mask, pixel_values, labels (safetensors)"},
        {"--out", ARG_STR, &o.out, "output safetensors (logits, hidden_states, loss, ...)"},
        {"--device", ARG_STR, &o.device, "cpu or cuda"},
        {"--hidden-layer", ARG_INT, &o.hidden_layer,
         "hidden_states index to write (transformers' numbering; negative counts from the end)"},
        {"--arena-mb", ARG_INT, &o.arena_mb, "step memory in MiB (0: sized from the inputs)"},
    };
    int npos = args_parse(argc, argv,
                          "aimc forward --model DIR --inputs IN.safetensors --out OUT.safetensors",
                          "one forward pass of a LLaVA / BLIP-2 / CLIP / LLaMA / OPT folder",
                          opts, (int)(sizeof opts / sizeof opts[0]));
    if (npos > 0) {
        fprintf(stderr, "aimc forward: error: unexpected argument '%s'\n", argv[1]);
        return 2;
    }
    if (!o.model || !o.inputs || !o.out) {
        fprintf(stderr, "aimc forward: error: --model, --inputs and --out are required\n");
        return 2;
    }
    run_forward(&o);
    return 0;
}
