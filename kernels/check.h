/* Error reporting. Internal failures (a failed library call, a broken
 * invariant) abort the process with file:line; they never continue. */
#ifndef AIMC_CHECK_H
#define AIMC_CHECK_H
#include <stdio.h>
#include <stdlib.h>

#ifdef __cplusplus
extern "C" {
#endif
/* Prints "aimc: error: <msg>" and exits with status 1. For user-facing errors. */
void aimc_die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
/* Prints "aimc: <file>:<line>: <msg>" and exits with status 1. */
void aimc_fail_at(const char *file, int line, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 3, 4)));
#ifdef __cplusplus
}
#endif

#define AIMC_CHECK(cond, ...)                                   \
    do {                                                        \
        if (!(cond)) aimc_fail_at(__FILE__, __LINE__, __VA_ARGS__); \
    } while (0)

#endif
