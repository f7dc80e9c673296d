/* The demonstration bank (exact layout: docs/bank.md): the aggregated hidden
 * states of many demonstrations, computed once and reused by AIM inference.
 *
 * AIM aggregates each demonstration alone (docs/aim-step.md step 1), so its
 * hidden states depend only on the frozen backbone, the layer and the
 * demonstration itself: never on the query, the other demonstrations or the
 * projector. The bank therefore stores the hidden states BEFORE the
 * projector: one bank serves every projector trained on that backbone and
 * layer, and inference runs only the (cheap) projector on its rows.
 *
 *   header (128 bytes) | rows: f32 [total_rows, d_model] at 128 |
 *   backbone text | index: count x 64-byte entries | string pool
 *
 * The backbone description (bank_backbone_text) names the architecture,
 * sizes and a fingerprint of the weights; the header keeps its 64-bit
 * FNV-1a hash and the aggregation layer. A bank built from another backbone
 * or layer is refused (bank_check_model) with one line naming both.
 * Readers validate every size and offset against the file length and a
 * CRC-32 of the header, text and index before trusting anything; the rows
 * are not checksummed (they can be large). Writing is atomic (temporary
 * file, fsync, rename). */
#ifndef AIMC_BANK_H
#define AIMC_BANK_H
#include <stddef.h>
#include <stdint.h>

#define BANK_MAGIC "AIMCBANK"
#define BANK_VERSION 1u
#define BANK_HEADER_SIZE 128u
#define BANK_ENTRY_SIZE 64u
#define BANK_ID_MAX 256 /* bytes of an id, NUL excluded */

struct mllm;

/* One demonstration: its rows are [row, row + n_rows) of the bank. */
typedef struct bank_entry {
    const char *id;    /* unique, no ',' and no control characters */
    const char *image; /* the image path it was built from (may be "") */
    const char *text;  /* the demonstration's text (tokenized without special tokens) */
    int64_t row, n_rows;
} bank_entry;

/* An opened, validated bank. Rows point into a read-only mapping. */
typedef struct bank {
    char *path;
    uint32_t version;
    uint64_t backbone_hash;
    char *backbone_text;
    int64_t layer;      /* hidden_states index, non-negative */
    int64_t d_model, count, total_rows;
    bank_entry *entries; /* count, in file order; strings are NUL-terminated copies */
    const float *rows;   /* [total_rows, d_model] */
    void *map;
    size_t map_size;
    char *pool;          /* the copied strings */
} bank;

/* The backbone description a bank (and inference) identifies a model by:
 * "arch=llava lm=llama d_model=4096 layers=32 vocab=32064 image_tokens=576
 * weights=<16 hex digits>". The fingerprint is the FNV-1a hash of bf16
 * roundings of 64 rows spread over the LM's token embedding table, its
 * final norm weight and the last layer of the image-token path (LLaVA's
 * multi_modal_projector.linear_2, BLIP-2's language_projection), so the
 * same weights give the same text on every device and dtype. Writes buf
 * (truncated descriptions abort: 256 bytes hold one). */
const char *bank_backbone_text(const struct mllm *m, char *buf, size_t n);

/* ---- writing ------------------------------------------------------------------- */

typedef struct bank_writer bank_writer;
/* Starts a bank at path (written to a temporary file next to it until
 * bank_writer_finish). NULL with one line in err. */
bank_writer *bank_writer_open(const char *path, const char *backbone_text, int64_t layer,
                              int64_t d_model, char *err, size_t errlen);
/* Appends one demonstration's rows (host f32 [n_rows, d_model]). 0, or -1
 * with err set (a bad or repeated id, n_rows < 1, a write error). */
int bank_writer_add(bank_writer *w, const char *id, const char *image, const char *text,
                    const float *rows, int64_t n_rows, char *err, size_t errlen);
/* Writes the index, syncs and renames into place; frees w. 0, or -1 with
 * err set (the temporary file is removed, path untouched). */
int bank_writer_finish(bank_writer *w, char *err, size_t errlen);
/* Abandons the bank (removes the temporary file); frees w. */
void bank_writer_abort(bank_writer *w);

/* ---- reading ------------------------------------------------------------------- */

/* Opens and validates path. NULL with one line in err naming the file and
 * the problem (unreadable, not a bank, another version, truncated,
 * corrupt). */
bank *bank_open(const char *path, char *err, size_t errlen);
void bank_close(bank *b);
const bank_entry *bank_find(const bank *b, const char *id); /* NULL if absent */
const float *bank_entry_rows(const bank *b, const bank_entry *e);
/* 0 when the bank was built from this backbone description and layer
 * (non-negative); else -1 with one line naming the bank, both
 * descriptions or both layers. */
int bank_check_model(const bank *b, const char *backbone_text, int64_t layer, char *err,
                     size_t errlen);
#endif
