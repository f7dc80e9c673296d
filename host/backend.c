#include "backend.h"
#include "../kernels/check.h"
#include <string.h>

int backend_has_cuda_build(void) {
#ifdef AIMC_CUDA
    return 1;
#else
    return 0;
#endif
}

const backend *backend_by_name(const char *name) {
    if (!strcmp(name, "cpu")) return backend_cpu();
    if (!strcmp(name, "cuda")) {
#ifdef AIMC_CUDA
        char err[256] = "";
        const backend *be = backend_cuda(err, sizeof err);
        if (!be) aimc_die("--device cuda: %s", err);
        return be;
#else
        aimc_die("--device cuda: this aimc was built without CUDA (nvcc not found or CUDA=0); "
                 "rebuild with nvcc on PATH or use --device cpu");
#endif
    }
    fprintf(stderr, "aimc: error: unknown device '%s' (expected cpu or cuda)\n", name);
    exit(2);
}
