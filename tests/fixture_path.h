/* Fixture folders beside the test sources (tests/fixtures/..., found from
 * the test's own __FILE__, so tests run from the repository root when
 * built from it). Used by test_image, test_shards, test_episodes and
 * test_loader. */
#ifndef AIMC_FIXTURE_PATH_H
#define AIMC_FIXTURE_PATH_H
#include <stdio.h>
#include <string.h>

/* Writes "<folder of src>/fixtures/<rel>" into out[n] ("./fixtures/<rel>"
 * when src names no folder). */
static inline void fixture_path_beside(const char *src, const char *rel, char *out, size_t n) {
    snprintf(out, n, "%s", src);
    char *slash = strrchr(out, '/');
    if (slash) *slash = 0;
    else snprintf(out, n, ".");
    size_t len = strlen(out);
    snprintf(out + len, n - len, "/fixtures/%s", rel);
}

/* The fixture folder rel beside the calling test's source file. */
#define FIXTURE_PATH(rel, out, n) fixture_path_beside(__FILE__, (rel), (out), (n))

#endif
