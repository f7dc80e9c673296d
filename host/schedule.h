/* Learning-rate schedules: pure functions of the step number.
 *
 * Steps count optimizer updates from 1 (the first update uses lr_at(s, 1)),
 * the same numbering as adamw_opts.step.
 *   warmup:  for step <= warmup_steps, lr = peak_lr * step / warmup_steps
 *            (linear from peak/warmup up to peak; never 0, so step 1 moves);
 *   cosine:  after warmup, with progress p = (step - warmup) / (total - warmup)
 *            clamped to [0, 1], lr = min_lr + (peak_lr - min_lr) (1 + cos(pi p)) / 2:
 *            peak right after warmup, min_lr at step total and after;
 *   constant: after warmup, lr = peak_lr. */
#ifndef AIMC_SCHEDULE_H
#define AIMC_SCHEDULE_H
#include <stddef.h>
#include <stdint.h>

typedef enum { LR_COSINE = 0, LR_CONSTANT, LR_KIND_COUNT } lr_kind;

typedef struct lr_schedule {
    lr_kind kind;
    double peak_lr, min_lr;
    int64_t warmup_steps, total_steps;
} lr_schedule;

/* The learning rate of 1-based step `step`. */
double lr_at(const lr_schedule *s, int64_t step);
/* "cosine" / "constant"; -1 when unknown. */
int lr_kind_parse(const char *name);
const char *lr_kind_name(lr_kind kind);
/* NULL when the schedule is usable, else one line naming the bad value
 * (written into err). */
const char *lr_schedule_check(const lr_schedule *s, char *err, size_t errlen);
#endif
