/* Image preprocessing shared by every backbone, reproducing transformers'
 * PIL-backend image processors (CLIPImageProcessor, LlavaImageProcessor,
 * BlipImageProcessor) pixel for pixel:
 *   [pad to square with the mean colour]  LLaVA's original expand2square
 *   -> [resize]   Pillow's antialiased bicubic (a = -0.5), either the short
 *                 side to `shortest_edge` (long side int(s * long / short))
 *                 or to an exact height x width
 *   -> [centre crop]  top = floor((H - crop_h) / 2), zero-padded when the
 *                 crop is larger than the image
 *   -> [rescale]  float32(u8 * rescale_factor), computed in double
 *   -> [normalise] (x - mean) / std in float32
 * giving float32 CHW pixel_values. */
#ifndef AIMC_PREPROCESS_H
#define AIMC_PREPROCESS_H
#include "image.h"
#include <stddef.h>
#include <stdint.h>

typedef enum { PREPROCESS_SHORTEST_EDGE, PREPROCESS_EXACT_SIZE } preprocess_size_mode;

/* Which Pillow's resize to reproduce. Pillow 13 does the vertical pass first
 * when the height shrinks by more than twice as many pixels as the width;
 * Pillow <= 12 always starts horizontally. With the uint8 rounding between
 * passes, the two differ by a few levels on some pixels of such resizes. */
typedef enum { IMAGE_RESIZE_PILLOW13, IMAGE_RESIZE_PILLOW12 } image_resize_order;

#define PREPROCESS_RESAMPLE_BICUBIC 3 /* Pillow's id, as in preprocessor_config.json */
#define PREPROCESS_MAX_SIDE 16384     /* refused above this (config sizes and resize outputs) */

typedef struct preprocess_config {
    int do_pad_square; /* LLaVA original; pad colour = int(mean * 255) per channel */
    int do_resize;
    preprocess_size_mode size_mode;
    int64_t shortest_edge; /* PREPROCESS_SHORTEST_EDGE */
    int64_t height, width; /* PREPROCESS_EXACT_SIZE */
    int resample;          /* only PREPROCESS_RESAMPLE_BICUBIC */
    image_resize_order resize_order; /* not in preprocessor_config.json; default Pillow 13 */
    int do_center_crop;
    int64_t crop_height, crop_width;
    int do_rescale;
    double rescale_factor;
    int do_normalize;
    double mean[3], std[3];
    int do_convert_rgb; /* kept for completeness: decoding always gives RGB */
} preprocess_config;

/* Presets: "clip" (224 short side + 224 crop), "llava" (336 + 336 crop, as
 * llava-hf's processor), "llava_pad" (llava with the original pad-to-square),
 * "blip2" (224x224, no crop); all with CLIP mean/std. 0, or -1 for an
 * unknown name. */
int preprocess_preset(preprocess_config *c, const char *name);
#define PREPROCESS_PRESET_NAMES "clip, llava, llava_pad, blip2"

/* Fills c from preprocessor_config.json text: defaults of the processor class
 * named by image_processor_type (Blip: 384x384 exact; otherwise CLIP's),
 * overridden by the keys present. `where` names the source in messages.
 * 0, or -1 with one line in err. */
int preprocess_config_parse(preprocess_config *c, const char *json_text, const char *where, char *err,
                            size_t errlen);
/* Reads MODEL_DIR/preprocessor_config.json. */
int preprocess_config_load(preprocess_config *c, const char *model_dir, char *err, size_t errlen);

/* Output height and width for an input of w x h; 0, or -1 with a message
 * when the pipeline would produce an empty or oversized image. */
int preprocess_output_size(const preprocess_config *c, int64_t w, int64_t h, int64_t *out_h, int64_t *out_w,
                           char *err, size_t errlen);
/* Runs the pipeline; out holds 3 * out_h * out_w floats (CHW). */
int preprocess_image(const preprocess_config *c, const image_rgb *img, float *out, char *err, size_t errlen);

/* Pillow's Image.resize(..., BICUBIC) on RGB: separable, support 2 widened
 * by the scale when shrinking, weights normalised then rounded to 22-bit
 * fixed point, uint8 rounding and clipping after each pass. The order of the
 * two passes is the given Pillow version's (see image_resize_order).
 * 0, or -1 (out of memory). */
int image_resize_bicubic(const image_rgb *src, int64_t out_w, int64_t out_h, image_resize_order order,
                         image_rgb *dst, char *err, size_t errlen);
#endif
