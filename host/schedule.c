/* Learning-rate schedules (formulas in schedule.h). */
#include "schedule.h"
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

static const char *const lr_kind_names[LR_KIND_COUNT] = {"cosine", "constant"};

const char *lr_kind_name(lr_kind kind) {
    return (unsigned)kind < LR_KIND_COUNT ? lr_kind_names[kind] : "?";
}

int lr_kind_parse(const char *name) {
    for (int i = 0; i < LR_KIND_COUNT; i++)
        if (!strcmp(name, lr_kind_names[i])) return i;
    return -1;
}

/* Cosine from peak (p = 0) down to min (p = 1). */
static double cosine_decay(const lr_schedule *s, int64_t step) {
    int64_t span = s->total_steps - s->warmup_steps;
    double p = span > 0 ? (double)(step - s->warmup_steps) / (double)span : 1.0;
    if (p < 0) p = 0;
    if (p > 1) p = 1;
    return s->min_lr + (s->peak_lr - s->min_lr) * 0.5 * (1.0 + cos(M_PI * p));
}

double lr_at(const lr_schedule *s, int64_t step) {
    if (step < 1) step = 1;
    if (step <= s->warmup_steps) return s->peak_lr * (double)step / (double)s->warmup_steps;
    return s->kind == LR_CONSTANT ? s->peak_lr : cosine_decay(s, step);
}

const char *lr_schedule_check(const lr_schedule *s, char *err, size_t errlen) {
    if ((unsigned)s->kind >= LR_KIND_COUNT)
        snprintf(err, errlen, "unknown learning-rate schedule %d", (int)s->kind);
    else if (!(isfinite(s->peak_lr) && s->peak_lr >= 0))
        snprintf(err, errlen, "learning rate %g must be finite and >= 0", s->peak_lr);
    else if (!(isfinite(s->min_lr) && s->min_lr >= 0 && s->min_lr <= s->peak_lr))
        snprintf(err, errlen, "min_lr %g must be in [0, lr = %g]", s->min_lr, s->peak_lr);
    else if (s->warmup_steps < 0)
        snprintf(err, errlen, "warmup steps %lld must be >= 0", (long long)s->warmup_steps);
    else if (s->kind == LR_COSINE && s->total_steps < s->warmup_steps)
        snprintf(err, errlen, "total steps %lld must be >= warmup steps %lld for the cosine schedule",
                 (long long)s->total_steps, (long long)s->warmup_steps);
    else
        return NULL;
    return err;
}
