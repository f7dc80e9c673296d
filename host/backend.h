#ifndef AIMC_HOST_BACKEND_H
#define AIMC_HOST_BACKEND_H
#include "../kernels/backend.h"
/* "cpu" or "cuda"; anything else, or cuda in a build/machine without it, is
 * a one-line error and exit status 2 (usage) or 1 (no GPU). */
const backend *backend_by_name(const char *name);
/* Whether this binary was built with the CUDA backend. */
int backend_has_cuda_build(void);
#endif
