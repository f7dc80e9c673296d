/* Flat binary checkpoints (exact layout: docs/checkpoint.md).
 *
 *   header (128 bytes, little-endian) | backbone text | projector text |
 *   resolved config text | extra blob | tensor table (128 bytes per tensor) |
 *   tensor data (64-byte aligned) | trailer: CRC-32 of all that precedes, "AEND"
 *
 * The backbone and projector texts are the canonical one-line descriptions
 * the caller passes (projector_describe() for the projector); the header keeps
 * their 64-bit FNV-1a hashes, and loading a checkpoint for another backbone or
 * projector is refused with one line naming both. The extra blob is opaque
 * (the trainer's RNG state and every rank's data cursor).
 *
 * Writing is atomic: a temporary file in the same directory, every write
 * checked, fflush + fsync, rename into place, fsync of the directory. A crash
 * or a full disk at any point leaves the previous files untouched.
 * Reading validates magic, version, every size and offset against the file
 * length, and the checksum before trusting anything; it never writes.
 *
 * Test hook: AIMC_TEST_CKPT_SLOW_WRITE=MS makes the writer flush and sleep MS
 * milliseconds after each tensor (so a test can kill it mid-write). */
#ifndef AIMC_CHECKPOINT_H
#define AIMC_CHECKPOINT_H
#include "../kernels/tensor.h"
#include "projector.h"
#include <stddef.h>
#include <stdint.h>

#define CKPT_MAGIC "AIMCCKPT"
#define CKPT_VERSION 1u
#define CKPT_HEADER_SIZE 128u
#define CKPT_ENTRY_SIZE 128u
#define CKPT_NAME_MAX 64 /* bytes in the table's name field, NUL included */
#define CKPT_DATA_ALIGN 64u

typedef enum { CKPT_KIND_TRAIN = 1, CKPT_KIND_PARAMS = 2 } ckpt_kind;
typedef enum { CKPT_ROLE_PARAM = 0, CKPT_ROLE_ADAM_M = 1, CKPT_ROLE_ADAM_V = 2, CKPT_ROLE_OTHER = 3 } ckpt_role;

/* One tensor: host memory of numel * dtype_size(dt) bytes. */
typedef struct ckpt_tensor {
    const char *name; /* < CKPT_NAME_MAX bytes, unique within a file */
    uint32_t role;    /* ckpt_role */
    dtype dt;
    int ndim; /* 1..4 */
    int64_t shape[4];
    const void *data;
    size_t nbytes;    /* filled in by the reader; the writer computes it */
} ckpt_tensor;

/* What a checkpoint holds. Texts may be "" but not NULL. */
typedef struct ckpt_contents {
    ckpt_kind kind;
    uint64_t step;              /* optimizer steps completed */
    const char *backbone_text;  /* canonical backbone description (hashed) */
    const char *projector_text; /* projector_describe() (hashed) */
    const char *config_text;    /* the resolved run configuration, kept as is */
    const void *extra;          /* opaque resume state (RNG, cursors); may be NULL if extra_len 0 */
    size_t extra_len;
    const ckpt_tensor *tensors;
    int n_tensors;
} ckpt_contents;

/* 64-bit FNV-1a of a NUL-terminated text. */
uint64_t ckpt_hash_text(const char *text);

/* Writes c to path atomically (see above). 0, or -1 with one line in err;
 * on failure the temporary file is removed and path is unchanged. */
int ckpt_write(const char *path, const ckpt_contents *c, char *err, size_t errlen);

/* An opened, validated checkpoint. Tensor data and extra point into a
 * read-only mapping of the file; texts are NUL-terminated copies. */
typedef struct ckpt_file {
    char *path;
    uint32_t version;
    ckpt_kind kind;
    uint64_t step, backbone_hash, projector_hash;
    char *backbone_text, *projector_text, *config_text;
    const void *extra;
    size_t extra_len;
    int n_tensors;
    ckpt_tensor *tensors; /* in file order */
    void *map;
    size_t map_size;
} ckpt_file;

/* The descriptions this run expects; NULL fields are not checked. */
typedef struct ckpt_expect {
    const char *backbone_text, *projector_text;
} ckpt_expect;

/* Opens and validates path (expect may be NULL). NULL with one line in err
 * naming the file and the problem: unreadable, truncated, foreign, corrupt,
 * or written for another backbone/projector. */
ckpt_file *ckpt_open(const char *path, const ckpt_expect *expect, char *err, size_t errlen);
void ckpt_close(ckpt_file *f);
const ckpt_tensor *ckpt_find(const ckpt_file *f, const char *name); /* NULL if absent */

/* ---- a directory of checkpoints ------------------------------------------------
 * DIR/ckpt-<step, 10 digits>.aimc, and DIR/latest: one line naming the newest
 * complete checkpoint, replaced atomically after that checkpoint is durable. */

/* Writes DIR/ckpt-<step>.aimc, points DIR/latest at it, then deletes older
 * checkpoints so that keep_last remain: the one just written and the
 * keep_last - 1 others with the highest steps (keep_last <= 0: keep all).
 * Stale temporary files of dead writers are removed too. The written path
 * goes to path_out (may be NULL). 0, or -1 with err set and latest unchanged. */
int ckpt_save_dir(const char *dir, const ckpt_contents *c, int keep_last, char *path_out,
                  size_t path_len, char *err, size_t errlen);
/* The path DIR/latest names: 1 found, 0 no checkpoint yet (no latest file),
 * -1 with err set (unreadable or naming a missing file). */
int ckpt_latest(const char *dir, char *path, size_t path_len, char *err, size_t errlen);
/* A checkpoint file path, or a directory (its latest): the file to load.
 * 0, or -1 with err set. */
int ckpt_resolve(const char *path_or_dir, char *out, size_t out_len, char *err, size_t errlen);

/* ---- the projector's state --------------------------------------------------------
 * Names: parameters under their state_dict names ("linear.weight", role
 * PARAM); AdamW moments as "exp_avg.<name>" (ADAM_M) and "exp_avg_sq.<name>"
 * (ADAM_V), torch.optim's state names. */

#define CKPT_PROJECTOR_MAX_TENSORS (3 * PROJECTOR_MAX_PARAMS)

/* Host copies of the parameters (and, with with_optim, m and v) into out
 * (room for CKPT_PROJECTOR_MAX_TENSORS); returns the count. Free with
 * ckpt_tensors_free. */
int ckpt_projector_tensors(const projector *p, int with_optim, ckpt_tensor *out);
void ckpt_tensors_free(ckpt_tensor *t, int n);
/* Uploads the parameters (and m, v with with_optim) from f into p. Every
 * tensor must be present with p's shape and dtype f32: 0, or -1 with err
 * naming the tensor. p is unchanged on failure. */
int ckpt_projector_restore(const ckpt_file *f, projector *p, int with_optim, char *err,
                           size_t errlen);
#endif
