/* Synthetic shards made entirely in C, so the main job and the tests run on
 * a fresh machine with no download. Images are simple scenes (one centred
 * shape of one colour on a plain or two-colour gradient background) and the
 * text describes them: "a red circle on a blue background", "a yellow
 * triangle on a background fading from green to black".
 *
 * Two layouts, both tar files as webdataset / img2dataset write them (a PAX
 * "././@PaxHeader" entry before each member, as Python's tarfile does):
 *  - LAION: {key}.jpg|png|webp + {key}.txt (caption) + {key}.json (url,
 *    caption, key, status, width, height, original_width, original_height);
 *    keys are shard * 10^digits + index, zero padded; shards "%05d.tar".
 *  - MMC4: {key}.json documents {url, text_list, image_info [{image_name,
 *    raw_url, matched_text_index, matched_sim, face_detections,
 *    image_base64}], similarity_matrix [images][sentences],
 *    could_have_url_duplicate}; each image's sentence describes it, other
 *    sentences are filler; matched similarities mostly 0.25-0.35, some
 *    below 0.24 (weak matches); shards "%09d.tar".
 *  - MMC4_JSONL, the raw MMC4 layout: the same documents (same seed, same
 *    documents and image bytes as MMC4) one per line in "%09d.jsonl", with
 *    no image_base64: each image is the file images/<image_name> beside them.
 * Output is identical for identical options (seeded; each shard seeded by
 * its index, so shards can be written independently). */
#ifndef AIMC_SYNTH_H
#define AIMC_SYNTH_H
#include <stddef.h>
#include <stdint.h>

#define SYNTH_MAX_DOC_IMAGES 16

typedef enum { SYNTH_LAION, SYNTH_MMC4, SYNTH_MMC4_JSONL } synth_layout;
typedef enum { SYNTH_COMPRESS_NONE, SYNTH_COMPRESS_GZIP, SYNTH_COMPRESS_ZSTD } synth_compress;
typedef enum { SYNTH_IMG_WEBP, SYNTH_IMG_JPEG, SYNTH_IMG_PNG, SYNTH_IMG_MIXED } synth_image_format;

typedef struct synth_options {
    synth_layout layout;
    int64_t shards;          /* number of shard files */
    int64_t docs;            /* samples (LAION) or documents (MMC4) per shard */
    synth_compress compress; /* adds ".gz" / ".zst" to the file names */
    synth_image_format image_format;
    uint64_t seed;
    int64_t image_size;      /* longest side in pixels (the other is 3/4 to 1 of it) */
    int64_t min_images, max_images; /* MMC4: images per document (both 0: 2 and 5) */
} synth_options;

/* Parsers for the command line: 0, or -1 when the name is unknown. */
int synth_parse_layout(const char *name, synth_layout *out);          /* laion | mmc4 | mmc4-jsonl */
int synth_parse_compress(const char *name, synth_compress *out);      /* none | gzip | zstd */
int synth_parse_image_format(const char *name, synth_image_format *out); /* webp | jpeg | png | mixed */

/* One scene: indices into the colour and shape tables below. bg2 < 0: a
 * plain background, else a vertical gradient from bg (top) to bg2 (bottom). */
typedef struct synth_scene {
    int shape, fg, bg, bg2;
    double radius; /* shape half-size as a fraction of the shorter side, 0.25..0.4 */
} synth_scene;

#define SYNTH_NCOLOURS 10
#define SYNTH_NSHAPES 5
extern const char *const synth_colour_names[SYNTH_NCOLOURS];
extern const uint8_t synth_colour_rgb[SYNTH_NCOLOURS][3];
extern const char *const synth_shape_names[SYNTH_NSHAPES];

/* Deterministic generator state (splitmix64). */
uint64_t synth_rand(uint64_t *state);
void synth_scene_random(uint64_t *state, synth_scene *s);
/* Fills w x h RGB pixels. The image centre always lies inside the shape and
 * the corners always outside it. */
void synth_render(const synth_scene *s, int64_t w, int64_t h, uint8_t *rgb);
/* "a red circle on a blue background" into buf; returns its length. */
int synth_caption(const synth_scene *s, char *buf, size_t n);
/* Encodes RGB pixels; *out malloc'd. f must not be SYNTH_IMG_MIXED.
 * Returns 0, or -1 with a message. */
int synth_encode(const uint8_t *rgb, int64_t w, int64_t h, synth_image_format f, uint8_t **out, size_t *n,
                 char *err, size_t errlen);
const char *synth_image_ext(synth_image_format f); /* "webp", "jpg", "png" */

/* Writes every shard into dir (created if missing; MMC4_JSONL also
 * dir/images). Returns the number of shard files written, or -1 with a
 * message. Paths of the shards are dir/NAME where NAME is
 * synth_shard_name(o, i). */
int64_t synth_write(const synth_options *o, const char *dir, char *err, size_t errlen);
void synth_shard_name(const synth_options *o, int64_t shard, char *buf, size_t n);
#endif
