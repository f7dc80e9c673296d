/* aimc_read_file / aimc_read_stream (host/check.c): the one whole-file reader,
 * and the size limit that keeps a hostile file from making aimc allocate
 * without bound. Files are written by the test; the expected bytes are the
 * ones it wrote. */
#include "../kernels/check.h"
#include "testlib.h"
#include <sys/stat.h>

static char dir[] = "/tmp/aimc-read-file-XXXXXX";

static void path_of(char *out, size_t n, const char *name) { snprintf(out, n, "%s/%s", dir, name); }

/* Writes n random bytes (NULs included) to dir/name; returns them. */
static unsigned char *write_random(const char *name, size_t n) {
    char path[512];
    path_of(path, sizeof path, name);
    unsigned char *bytes = malloc(n ? n : 1);
    for (size_t i = 0; i < n; i++) bytes[i] = (unsigned char)rng_u64();
    FILE *f = fopen(path, "wb");
    fwrite(bytes, 1, n, f);
    fclose(f);
    return bytes;
}

/* Sizes around the reader's 64 KiB first buffer and its doublings. */
static void check_round_trip(void) {
    const size_t sizes[] = {0, 1, 65534, 65535, 65536, 65537, 200000, 262143 + (size_t)rng_int(1000)};
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        size_t n = sizes[k], len = 12345;
        unsigned char *want = write_random("data.bin", n);
        char path[512], err[256] = "";
        path_of(path, sizeof path, "data.bin");
        char *got = aimc_read_file(path, n, &len, err, sizeof err); /* exactly at the limit: allowed */
        CHECK(got && len == n && !memcmp(got, want, n) && got[n] == 0, "%zu bytes: read back %s (%s)", n,
              got ? "wrong" : "nothing", err);
        free(got);
        if (n) {
            err[0] = 0;
            got = aimc_read_file(path, n - 1, &len, err, sizeof err);
            CHECK(!got && strstr(err, path) && strstr(err, "more than"), "%zu bytes over a limit of %zu: '%s'", n,
                  n - 1, err);
            free(got);
            FILE *f = fopen(path, "rb"); /* the stream form cannot know the size beforehand */
            err[0] = 0;
            got = aimc_read_stream(f, "pipe", n - 1, &len, err, sizeof err);
            fclose(f);
            CHECK(!got && strstr(err, "pipe: more than"), "stream of %zu bytes over %zu: '%s'", n, n - 1, err);
            free(got);
        }
        free(want);
    }
}

static void check_refusals(void) {
    char path[512], err[256] = "";
    path_of(path, sizeof path, "missing");
    CHECK(!aimc_read_file(path, 100, NULL, err, sizeof err) && strstr(err, "cannot open"), "missing: '%s'", err);
    err[0] = 0;
    CHECK(!aimc_read_file(dir, 100, NULL, err, sizeof err) && strstr(err, "is a folder"), "folder: '%s'", err);
    path_of(path, sizeof path, "fifo"); /* reading a FIFO with no writer would block forever */
    CHECK(mkfifo(path, 0600) == 0, "mkfifo %s", path);
    err[0] = 0;
    CHECK(!aimc_read_file(path, 100, NULL, err, sizeof err) && strstr(err, "not a regular file"), "fifo: '%s'",
          err);
    unlink(path);
}

int main(void) {
    tests_begin("test_read_file");
    if (!mkdtemp(dir)) {
        printf("FAIL cannot make a temp folder\n");
        return 1;
    }
    check_round_trip();
    check_refusals();
    char path[512];
    path_of(path, sizeof path, "data.bin");
    unlink(path);
    rmdir(dir);
    return tests_done();
}
