/* Skip counters shared by the shard reader, the sample decoders and the
 * loader (see shard.h). */
#include "shard.h"
#include <stdio.h>

static const char *const skip_names[SKIP_REASON_COUNT] = {
    [SKIP_SHARD_UNREADABLE] = "shard_unreadable",
    [SKIP_TRUNCATED_SHARD] = "truncated_shard",
    [SKIP_BAD_HEADER] = "bad_header",
    [SKIP_MEMBER_TOO_LARGE] = "member_too_large",
    [SKIP_BAD_IMAGE] = "bad_image",
    [SKIP_BAD_JSON] = "bad_json",
    [SKIP_BAD_TEXT] = "bad_text",
    [SKIP_MISSING_MEMBER] = "missing_member",
    [SKIP_TOO_FEW_PAIRS] = "too_few_pairs",
    [SKIP_NO_TARGET] = "no_target",
    [SKIP_MISSING_IMAGE] = "missing_image",
};

const char *skip_reason_name(skip_reason r) {
    return (int)r >= 0 && r < SKIP_REASON_COUNT ? skip_names[r] : "unknown";
}

void skip_count(skip_counts *c, skip_reason r) {
    if (c && (int)r >= 0 && r < SKIP_REASON_COUNT) c->n[r]++;
}

void skip_counts_add(skip_counts *into, const skip_counts *from) {
    for (int i = 0; i < SKIP_REASON_COUNT; i++) into->n[i] += from->n[i];
}

const char *skip_counts_str(const skip_counts *c, char *buf, size_t n) {
    size_t used = 0;
    int any = 0;
    if (!n) return buf;
    buf[0] = 0;
    for (int i = 0; i < SKIP_REASON_COUNT; i++) {
        if (!c->n[i]) continue;
        any = 1;
        int k = snprintf(buf + used, n - used, "%s%s=%lld", used ? " " : "", skip_names[i], (long long)c->n[i]);
        if (k < 0 || (size_t)k >= n - used) break; /* truncated: keep what fits */
        used += (size_t)k;
    }
    if (!any) snprintf(buf, n, "none");
    return buf;
}
