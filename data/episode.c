/* Documents -> AIM episodes: pair selection, image decode + preprocess,
 * templated tokenization with target marking (see episode.h). */
#include "episode.h"
#include "../kernels/check.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CAPTION_SLOT "{caption}"

void episode_config_default(episode_config *c) {
    memset(c, 0, sizeof *c);
    c->k = 2;
    c->sim_threshold = 0.24;
    c->max_images = 6;
    c->min_pairs = 0;
    c->max_text_tokens = 64;
    c->demo_template = CAPTION_SLOT;
    c->query_prompt = "";
    c->target_template = CAPTION_SLOT;
    c->target_eos = 1;
    c->min_image_side = 16;
    c->max_image_pixels = IMAGE_DEFAULT_MAX_PIXELS;
}

int episode_config_check(const episode_config *c, char *err, size_t errlen) {
    if (c->k < 0 || c->k > 1024) return aimc_set_err(err, errlen, "episode k = %d: must be in [0, 1024]", c->k);
    if (c->max_images < c->k + 1)
        return aimc_set_err(err, errlen, "episode max_images = %d: must be at least k + 1 = %d", c->max_images,
                            c->k + 1);
    if (c->max_text_tokens < 1)
        return aimc_set_err(err, errlen, "episode max_text_tokens = %lld: must be >= 1", (long long)c->max_text_tokens);
    if (!c->demo_template || !c->query_prompt || !c->target_template)
        return aimc_set_err(err, errlen, "episode templates must not be NULL");
    if (!strstr(c->target_template, CAPTION_SLOT))
        return aimc_set_err(err, errlen, "episode target_template '%s' has no " CAPTION_SLOT, c->target_template);
    if (strstr(c->query_prompt, CAPTION_SLOT))
        return aimc_set_err(err, errlen,
                            "episode query_prompt '%s' must not contain " CAPTION_SLOT " (it is the target)",
                            c->query_prompt);
    if (c->min_image_side < 1 || c->max_image_pixels < 1)
        return aimc_set_err(err, errlen,
                            "episode image limits: min_image_side = %lld and max_image_pixels = %lld must be >= 1",
                            (long long)c->min_image_side, (long long)c->max_image_pixels);
    return 0;
}

int episode_ctx_check(const episode_ctx *ctx, char *err, size_t errlen) {
    if (episode_config_check(ctx->cfg, err, errlen)) return -1;
    if (ctx->cfg->target_eos && tokenizer_special_id(ctx->tok, "eos_token") < 0)
        return aimc_set_err(err, errlen, "episode target_eos is set but the tokenizer has no eos_token");
    return 0;
}

void episode_item_free(episode_item *it) {
    if (!it) return;
    free(it->pixels);
    free(it->tokens);
    free(it->target);
    free(it->source);
    memset(it, 0, sizeof *it);
}

void episode_free(episode *e) {
    if (!e) return;
    if (e->items)
        for (int i = 0; i <= e->k; i++) episode_item_free(&e->items[i]);
    free(e->items);
    memset(e, 0, sizeof *e);
}

void episode_pair_free(episode_pair *p) {
    if (!p) return;
    free(p->pixels);
    free(p->source);
    tok_ids_free(&p->demo);
    tok_ids_free(&p->query);
    free(p->target);
    memset(p, 0, sizeof *p);
}

/* ---- images ------------------------------------------------------------ */

static int build_pixels(const episode_ctx *ctx, const uint8_t *data, size_t size, episode_pair *p, char *err,
                        size_t errlen) {
    const episode_config *c = ctx->cfg;
    image_decode_opts o = {.max_pixels = c->max_image_pixels, .min_side = c->jpeg_scale_min_side};
    image_rgb img = {0};
    char why[256];
    if (size == 0) return aimc_set_err(err, errlen, "empty image file");
    if (image_decode(data, size, &o, &img, why, sizeof why)) return aimc_set_err(err, errlen, "%s", why);
    int rc = -1;
    if (img.width < c->min_image_side || img.height < c->min_image_side) {
        aimc_set_err(err, errlen, "image %lldx%lld is below the minimum side %lld", (long long)img.width,
                     (long long)img.height, (long long)c->min_image_side);
    } else if (!preprocess_output_size(ctx->pp, img.width, img.height, &p->height, &p->width, why, sizeof why)) {
        p->pixels = malloc((size_t)(3 * p->height * p->width) * sizeof(float));
        if (!p->pixels) aimc_set_err(err, errlen, "out of memory for pixel values");
        else if (preprocess_image(ctx->pp, &img, p->pixels, why, sizeof why)) aimc_set_err(err, errlen, "%s", why);
        else rc = 0;
    } else {
        aimc_set_err(err, errlen, "%s", why);
    }
    image_free(&img);
    return rc;
}

/* ---- text ------------------------------------------------------------- */

/* template with every "{caption}" replaced by caption (malloc'd). */
static char *expand(const char *tmpl, const char *caption) {
    size_t nt = strlen(tmpl), nc = strlen(caption), slot = strlen(CAPTION_SLOT), count = 0;
    for (const char *p = strstr(tmpl, CAPTION_SLOT); p; p = strstr(p + slot, CAPTION_SLOT)) count++;
    char *out = malloc(nt + count * nc + 1), *o = out;
    if (!out) return NULL;
    for (const char *p = tmpl; *p;) {
        if (!strncmp(p, CAPTION_SLOT, slot)) {
            memcpy(o, caption, nc), o += nc, p += slot;
        } else {
            *o++ = *p++;
        }
    }
    *o = 0;
    return out;
}

static int encode(const episode_ctx *ctx, const char *text, tok_ids *ids, char *err, size_t errlen) {
    tokenizer_encode_opts o = {.add_special = 0, .max_length = -1};
    ids->n = 0;
    if (!text[0]) return 0;
    return tokenizer_encode(ctx->tok, text, strlen(text), &o, ids, err, errlen);
}

static int encode_template(const episode_ctx *ctx, const char *tmpl, const char *caption, tok_ids *ids, char *err,
                           size_t errlen) {
    char *text = expand(tmpl, caption);
    AIMC_CHECK(text, "out of memory");
    int rc = encode(ctx, text, ids, err, errlen);
    free(text);
    return rc;
}

static int push_id(tok_ids *ids, int32_t id) {
    if (ids->n == ids->cap) {
        int64_t cap = ids->cap ? 2 * ids->cap : 16;
        int32_t *p = realloc(ids->ids, (size_t)cap * sizeof *p);
        if (!p) return -1;
        ids->ids = p, ids->cap = cap;
    }
    ids->ids[ids->n++] = id;
    return 0;
}

static int build_demo_tokens(const episode_ctx *ctx, const char *sentence, episode_pair *p, skip_reason *why,
                             char *err, size_t errlen) {
    *why = SKIP_BAD_TEXT;
    if (encode_template(ctx, ctx->cfg->demo_template, sentence, &p->demo, err, errlen)) return -1;
    if (p->demo.n > ctx->cfg->max_text_tokens) p->demo.n = ctx->cfg->max_text_tokens;
    if (p->demo.n == 0) return aimc_set_err(err, errlen, "demonstration text has no tokens");
    return 0;
}

/* prompt (not targets) + target shortened to fit max_text_tokens + EOS. */
static int build_query_tokens(const episode_ctx *ctx, const char *sentence, episode_pair *p, skip_reason *why,
                              char *err, size_t errlen) {
    const episode_config *c = ctx->cfg;
    tok_ids target = {0};
    int rc = -1;
    *why = SKIP_BAD_TEXT;
    if (encode(ctx, c->query_prompt, &p->query, err, errlen) ||
        encode_template(ctx, c->target_template, sentence, &target, err, errlen))
        goto done;
    int64_t n_prompt = p->query.n, n_eos = c->target_eos ? 1 : 0;
    int64_t room = c->max_text_tokens - n_prompt - n_eos, keep = target.n < room ? target.n : room;
    if (keep <= 0) {
        *why = SKIP_NO_TARGET;
        aimc_set_err(err, errlen,
                     "query has no target token left (%lld prompt + %lld target tokens, max_text_tokens %lld)",
                     (long long)n_prompt, (long long)target.n, (long long)c->max_text_tokens);
        goto done;
    }
    int fail = 0;
    for (int64_t i = 0; i < keep; i++) fail |= push_id(&p->query, target.ids[i]);
    if (n_eos) fail |= push_id(&p->query, tokenizer_special_id(ctx->tok, "eos_token"));
    p->target = calloc((size_t)p->query.n, 1);
    AIMC_CHECK(!fail && p->target, "out of memory");
    memset(p->target + n_prompt, 1, (size_t)(p->query.n - n_prompt));
    p->n_target = p->query.n - n_prompt;
    rc = 0;
done:
    tok_ids_free(&target);
    return rc;
}

int episode_pair_build(const episode_ctx *ctx, const uint8_t *image, size_t image_size, const char *sentence,
                       const char *source, int roles, episode_pair *out, skip_reason *why, char *err,
                       size_t errlen) {
    memset(out, 0, sizeof *out);
    out->source = aimc_strdup(source ? source : "");
    int rc = 0;
    char msg[384] = "";
    if ((roles & EPISODE_ROLE_DEMO) && build_demo_tokens(ctx, sentence, out, why, msg, sizeof msg)) rc = -1;
    if (!rc && (roles & EPISODE_ROLE_QUERY) && build_query_tokens(ctx, sentence, out, why, msg, sizeof msg)) rc = -1;
    /* images last: the costly part, skipped when the text already failed */
    if (!rc && build_pixels(ctx, image, image_size, out, msg, sizeof msg)) *why = SKIP_BAD_IMAGE, rc = -1;
    if (rc) {
        aimc_set_err(err, errlen, "%s: %s", source ? source : "", msg);
        episode_pair_free(out);
    }
    return rc;
}

/* ---- episodes --------------------------------------------------------- */

static void item_from_tokens(episode_item *it, tok_ids *ids) {
    it->tokens = ids->ids, it->n_tokens = ids->n;
    ids->ids = NULL, ids->n = ids->cap = 0;
}

void episode_from_pairs(episode_pair *pairs, int k, episode *out) {
    out->k = k;
    out->items = calloc((size_t)k + 1, sizeof *out->items);
    AIMC_CHECK(out->items, "out of memory for an episode of %d items", k + 1);
    for (int i = 0; i <= k; i++) {
        episode_pair *p = &pairs[i];
        episode_item *it = &out->items[i];
        it->pixels = p->pixels, it->height = p->height, it->width = p->width, it->source = p->source;
        p->pixels = NULL, p->source = NULL;
        if (i < k) {
            item_from_tokens(it, &p->demo);
        } else {
            item_from_tokens(it, &p->query);
            it->target = p->target, it->n_target = p->n_target;
            p->target = NULL;
        }
        episode_pair_free(p);
    }
}

/* Usable for a pair apart from its bytes. */
static int pair_candidate(const document *doc, const episode_config *c, int64_t i) {
    const doc_image *im = &doc->images[i];
    return im->sim >= c->sim_threshold && doc->texts[im->text_index][0] != 0;
}

/* Selection by sentence: the best image of each sentence, in sentence
 * order. with_bytes: also require the image bytes. */
static int64_t select_pairs(const document *doc, const episode_config *c, int with_bytes, int64_t *out) {
    int64_t n = 0;
    for (int64_t t = 0; t < doc->n_texts && n < c->max_images; t++) {
        int64_t best = -1;
        for (int64_t i = 0; i < doc->n_images; i++) {
            const doc_image *im = &doc->images[i];
            if (im->text_index != t || !pair_candidate(doc, c, i) || (with_bytes && !im->data)) continue;
            if (best < 0 || im->sim > doc->images[best].sim) best = i;
        }
        if (best >= 0) out[n++] = best;
    }
    return n;
}

int64_t episode_select_pairs(const document *doc, const episode_config *cfg, int64_t *out) {
    return select_pairs(doc, cfg, 1, out);
}

static int64_t needed_pairs(const episode_config *c) { return c->min_pairs > c->k + 1 ? c->min_pairs : c->k + 1; }

/* Why a document has too few pairs: its first selected-but-missing image's
 * reason when the missing bytes made the difference, else TOO_FEW_PAIRS. */
static skip_reason shortfall_reason(const document *doc, const episode_config *c, int64_t *scratch) {
    int64_t n = select_pairs(doc, c, 0, scratch);
    if (n < needed_pairs(c)) return SKIP_TOO_FEW_PAIRS;
    for (int64_t j = 0; j < n; j++)
        if (!doc->images[scratch[j]].data) return doc->images[scratch[j]].missing;
    return SKIP_TOO_FEW_PAIRS;
}

static int build_document_pairs(const episode_ctx *ctx, const document *doc, const char *source, const int64_t *sel,
                                episode_pair *pairs, skip_reason *why, char *err, size_t errlen) {
    int k = ctx->cfg->k;
    for (int i = 0; i <= k; i++) {
        const doc_image *im = &doc->images[sel[i]];
        char src[512], msg[768];
        snprintf(src, sizeof src, "%s#%lld", source, (long long)sel[i]);
        int role = i < k ? EPISODE_ROLE_DEMO : EPISODE_ROLE_QUERY;
        if (episode_pair_build(ctx, im->data, im->size, doc->texts[im->text_index], src, role, &pairs[i], why, msg,
                               sizeof msg)) {
            aimc_set_err(err, errlen, "%s (image '%s')", msg, im->name ? im->name : "");
            for (int j = 0; j < i; j++) episode_pair_free(&pairs[j]);
            return -1;
        }
    }
    return 0;
}

int episode_from_document(const episode_ctx *ctx, const document *doc, const char *source, episode *out,
                          skip_reason *why, char *err, size_t errlen) {
    const episode_config *c = ctx->cfg;
    memset(out, 0, sizeof *out);
    int64_t *sel = malloc((size_t)(doc->n_images + 1) * sizeof *sel);
    episode_pair *pairs = calloc((size_t)c->k + 1, sizeof *pairs);
    int rc = -1;
    AIMC_CHECK(sel && pairs, "out of memory");
    int64_t n = select_pairs(doc, c, 1, sel);
    if (n < needed_pairs(c)) {
        *why = shortfall_reason(doc, c, sel);
        aimc_set_err(err, errlen,
                     "%s: %lld usable image-sentence pairs (similarity >= %g, images present), need %lld%s", source,
                     (long long)n, c->sim_threshold, (long long)needed_pairs(c),
                     *why == SKIP_MISSING_MEMBER ? "; images of the others are missing members"
                     : *why == SKIP_BAD_IMAGE    ? "; images of the others have invalid base64"
                                                 : "");
        goto done;
    }
    if (build_document_pairs(ctx, doc, source, sel, pairs, why, err, errlen)) goto done;
    episode_from_pairs(pairs, c->k, out);
    rc = 0;
done:
    free(sel);
    free(pairs);
    return rc;
}
