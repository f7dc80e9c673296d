/* Training state on disk: checkpoints with every rank's data cursor, resume,
 * the metrics file (formats in train.h). */
#include "../kernels/check.h"
#include "checkpoint.h"
#include "config.h"
#include "dist.h"
#include "train_impl.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- the extra blob ------------------------------------------------------------------ */

static void put_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put_u64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get_u32(const uint8_t *p) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) v |= (uint32_t)p[i] << (8 * i);
    return v;
}
static uint64_t get_u64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static void encode_header(const trainer *t, uint8_t *p) {
    memcpy(p, TRAIN_EXTRA_MAGIC, 8);
    put_u32(p + 8, TRAIN_EXTRA_VERSION);
    put_u32(p + 12, (uint32_t)t->world);
    const uint64_t v[6] = {(uint64_t)t->prog.step, t->prog.opt_step,  t->prog.skipped_steps,
                           t->prog.bad_in_a_row,   t->prog.rng_state, t->prog.episodes_total};
    for (int i = 0; i < 6; i++) put_u64(p + 16 + 8 * i, v[i]);
}

/* Validates the blob and reads the progress; 0, or -1 with err. */
static int decode_header(const trainer *t, const ckpt_file *f, train_progress *prog, char *err,
                         size_t errlen) {
    const uint8_t *p = f->extra;
    if (f->extra_len < TRAIN_EXTRA_HEADER || memcmp(p, TRAIN_EXTRA_MAGIC, 8))
        return snprintf(err, errlen, "%s: holds no aimc train state (extra blob of %zu bytes)", f->path,
                        f->extra_len),
               -1;
    if (get_u32(p + 8) != TRAIN_EXTRA_VERSION)
        return snprintf(err, errlen, "%s: train state version %u, this build reads %u", f->path,
                        get_u32(p + 8), TRAIN_EXTRA_VERSION),
               -1;
    uint32_t world = get_u32(p + 12);
    if (world != (uint32_t)t->world)
        return snprintf(
                   err, errlen,
                   "%s was written by a run of %u rank%s and this run has %d: resume with the same number "
                   "of ranks (every rank's data position is saved separately)",
                   f->path, world, world == 1 ? "" : "s", t->world),
               -1;
    if (f->extra_len != TRAIN_EXTRA_HEADER + (size_t)world * LOADER_CURSOR_BYTES)
        return snprintf(err, errlen, "%s: train state of %zu bytes, expected %zu for %u ranks", f->path,
                        f->extra_len, TRAIN_EXTRA_HEADER + (size_t)world * LOADER_CURSOR_BYTES, world),
               -1;
    *prog = (train_progress){(int64_t)get_u64(p + 16), get_u64(p + 24), get_u64(p + 32),
                             get_u64(p + 40),          get_u64(p + 48), get_u64(p + 56)};
    return 0;
}

/* ---- saving -------------------------------------------------------------------------- */

/* Every rank's encoded cursor, in rank order (a collective). */
static uint8_t *gather_cursors(trainer *t, int64_t step) {
    uint8_t mine[LOADER_CURSOR_BYTES];
    loader_cursor c;
    loader_cursor_get(t->ld, &c);
    loader_cursor_encode(&c, mine);
    int64_t *counts = malloc((size_t)t->world * sizeof *counts);
    uint8_t *all = malloc((size_t)t->world * LOADER_CURSOR_BYTES);
    AIMC_CHECK(counts && all, "train: out of memory");
    for (int r = 0; r < t->world; r++) counts[r] = LOADER_CURSOR_BYTES;
    dist_allgatherv(mine, all, counts, DIST_BYTE, step);
    free(counts);
    return all;
}

static int write_checkpoint(trainer *t, const uint8_t *cursors, char *err, size_t errlen) {
    size_t extra_len = TRAIN_EXTRA_HEADER + (size_t)t->world * LOADER_CURSOR_BYTES;
    uint8_t *extra = malloc(extra_len);
    AIMC_CHECK(extra, "train: out of memory");
    encode_header(t, extra);
    memcpy(extra + TRAIN_EXTRA_HEADER, cursors, (size_t)t->world * LOADER_CURSOR_BYTES);
    ckpt_tensor tensors[CKPT_PROJECTOR_MAX_TENSORS];
    int n = ckpt_projector_tensors(t->params, 1, tensors);
    ckpt_contents c = {.kind = CKPT_KIND_TRAIN,
                       .step = (uint64_t)t->prog.step,
                       .backbone_text = t->backbone_text,
                       .projector_text = t->projector_text,
                       .config_text = t->config_text,
                       .extra = extra,
                       .extra_len = extra_len,
                       .tensors = tensors,
                       .n_tensors = n};
    char path[4200];
    int rc = ckpt_save_dir(t->cfg->out, &c, (int)t->cfg->keep, path, sizeof path, err, errlen);
    if (!rc) printf("aimc train: step %lld: checkpoint %s\n", (long long)t->prog.step, path), fflush(stdout);
    ckpt_tensors_free(tensors, n);
    free(extra);
    return rc;
}

int train_save(trainer *t) {
    uint8_t *cursors = gather_cursors(t, t->prog.step);
    char err[4096] = "", msg[4200];
    int ok = t->rank != 0 || !write_checkpoint(t, cursors, err, sizeof err);
    free(cursors);
    snprintf(msg, sizeof msg, "step %lld: saving the checkpoint failed: %s", (long long)t->prog.step, err);
    return train_all_ok(t, ok, msg, t->prog.step) ? 0 : 1;
}

void train_gather_totals(trainer *t, loader_cursor *sum) {
    uint8_t *all = gather_cursors(t, t->prog.step);
    memset(sum, 0, sizeof *sum);
    for (int r = 0; r < t->world; r++) {
        loader_cursor c;
        char err[256];
        AIMC_CHECK(!loader_cursor_decode(all + (size_t)r * LOADER_CURSOR_BYTES, LOADER_CURSOR_BYTES, &c, err,
                                         sizeof err),
                   "train: rank %d's cursor: %s", r, err);
        sum->episodes += c.episodes;
        sum->samples += c.samples;
        sum->shards_done += c.shards_done;
        skip_counts_add(&sum->skips, &c.skips);
    }
    free(all);
}

/* ---- resuming ------------------------------------------------------------------------ */

/* What rank 0 found in OUT, sent to every rank. */
typedef struct resume_plan {
    int64_t status; /* 1 resume from path, 0 start fresh, -1 stop (rank 0 printed why) */
    char path[4096];
} resume_plan;

static void plan_resume(const trainer *t, resume_plan *p) {
    char err[4096];
    memset(p, 0, sizeof *p);
    int found = ckpt_latest(t->cfg->out, p->path, sizeof p->path, err, sizeof err);
    if (found < 0) {
        fprintf(stderr, "aimc train: error: %s\n", err);
        p->status = -1;
    } else if (found && !t->cfg->resume) {
        fprintf(
            stderr,
            "aimc train: error: %s already holds a checkpoint (%s): pass --resume to continue it, or choose "
            "another --out\n",
            t->cfg->out, p->path);
        p->status = -1;
    } else if (!found && t->cfg->resume) {
        printf("aimc train: --resume: no checkpoint in %s yet, starting at step 0\n", t->cfg->out);
        p->status = 0;
    } else {
        p->status = found;
    }
}

static const char *const resume_ignored[] = {"resume", "device",   "workers",      "log_every", "save_every",
                                             "keep",   "arena_mb", "dist_timeout", "until",     NULL};

static void note_changes(const trainer *t, const ckpt_file *f) {
    char diff[2048];
    int n = config_diff(f->config_text, t->config_text, resume_ignored, diff, sizeof diff);
    if (n && t->rank == 0)
        printf("aimc train: note: %d setting%s differ from the checkpoint's (the run will not match an "
               "uninterrupted one): %s\n",
               n, n == 1 ? "" : "s", diff);
}

static int restore(trainer *t, const ckpt_file *f, loader_cursor *cursor, char *err, size_t errlen) {
    if (f->kind != CKPT_KIND_TRAIN)
        return snprintf(err, errlen, "%s holds projector parameters only (an export), not a training state",
                        f->path),
               -1;
    train_progress prog;
    if (decode_header(t, f, &prog, err, errlen)) return -1;
    if ((uint64_t)prog.step != f->step)
        return snprintf(err, errlen, "%s: header step %llu, train state step %lld", f->path,
                        (unsigned long long)f->step, (long long)prog.step),
               -1;
    const uint8_t *mine =
        (const uint8_t *)f->extra + TRAIN_EXTRA_HEADER + (size_t)t->rank * LOADER_CURSOR_BYTES;
    char why[512];
    if (loader_cursor_decode(mine, LOADER_CURSOR_BYTES, cursor, why, sizeof why))
        return snprintf(err, errlen, "%s: rank %d's data cursor: %s", f->path, t->rank, why), -1;
    if (ckpt_projector_restore(f, t->params, 1, err, errlen)) return -1;
    if (t->obj->restored) t->obj->restored(t);
    t->prog = prog;
    return 0;
}

int train_resume(trainer *t, loader_cursor *cursor, int *have_cursor) {
    resume_plan plan;
    if (t->rank == 0) plan_resume(t, &plan);
    dist_broadcast(&plan, (int64_t)sizeof plan, DIST_BYTE, 0, DIST_SETUP);
    *have_cursor = 0;
    if (plan.status <= 0) return plan.status < 0;
    char err[4096] = "";
    ckpt_expect expect = {t->backbone_text, t->projector_text};
    ckpt_file *f = ckpt_open(plan.path, &expect, err, sizeof err);
    int ok = f && !restore(t, f, cursor, err, sizeof err);
    if (ok) note_changes(t, f);
    ckpt_close(f);
    if (!train_all_ok(t, ok, err, DIST_SETUP)) return 1;
    if (t->rank == 0)
        printf("aimc train: resuming from %s (step %lld)\n", plan.path, (long long)t->prog.step);
    *have_cursor = 1;
    return 0;
}

/* ---- files ----------------------------------------------------------------------------- */

int train_write_text(const char *path, const char *text, char *err, size_t errlen) {
    char tmp[4300];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "w");
    int ok = f && fputs(text, f) >= 0 && !fflush(f) && !fsync(fileno(f));
    int e = errno;
    if (f && fclose(f)) ok = 0, e = errno;
    if (ok && rename(tmp, path)) ok = 0, e = errno;
    if (ok) return 0;
    unlink(tmp);
    snprintf(err, errlen, "%s: writing failed: %s", path, strerror(e));
    return -1;
}

/* The "step" of a metrics line, or -1. */
static long long line_step(const char *line) {
    const char *s = strstr(line, "\"step\":");
    return s ? strtoll(s + 7, NULL, 10) : -1;
}

/* Keeps the lines of path for steps <= last (a run that died after its last
 * checkpoint wrote lines the resumed run writes again). */
static int drop_lines_after(const char *path, int64_t last, char *err, size_t errlen) {
    FILE *f = fopen(path, "r");
    if (!f) return errno == ENOENT ? 0 : (snprintf(err, errlen, "%s: %s", path, strerror(errno)), -1);
    char *kept = NULL, *line = NULL;
    size_t kept_len = 0, cap = 0;
    ssize_t n;
    FILE *mem = open_memstream(&kept, &kept_len);
    AIMC_CHECK(mem, "train: open_memstream failed");
    while ((n = getline(&line, &cap, f)) > 0) {
        long long s = line_step(line);
        if (s >= 0 && s <= last && line[n - 1] == '\n') fputs(line, mem);
    }
    free(line);
    fclose(f);
    fclose(mem);
    int rc = train_write_text(path, kept, err, errlen);
    free(kept);
    return rc;
}

int train_metrics_open(trainer *t, char *err, size_t errlen) {
    char path[4200];
    snprintf(path, sizeof path, "%s/metrics.jsonl", t->cfg->out);
    if (drop_lines_after(path, t->prog.step, err, errlen)) return -1;
    t->metrics = fopen(path, "a");
    if (!t->metrics)
        return snprintf(err, errlen, "%s: cannot open for appending: %s", path, strerror(errno)), -1;
    return 0;
}
