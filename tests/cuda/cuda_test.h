/* What every CUDA test (tests/cuda/test_*.c) starts with: the cuda backend
 * (on a GPU, or the CPU emulator of make test-cuda-emu) and the cpu one to
 * compare with. Without a usable GPU: "cuda tests: no GPU (reason)" and a
 * failing exit, since these tests run only where a GPU is expected. */
#ifndef AIMC_CUDA_TEST_H
#define AIMC_CUDA_TEST_H
#include "../../kernels/backend.h"
#include <stdio.h>
#include <stdlib.h>

/* Sets *cpu and *gpu, or exits 1 with the reason there is no GPU. */
static inline void cuda_test_backends(const backend **cpu, const backend **gpu) {
    char why[256] = "";
#ifdef AIMC_CUDA
    *gpu = backend_cuda(why, sizeof why);
#else
    snprintf(why, sizeof why, "this aimc was built without CUDA");
    *gpu = NULL;
#endif
    if (!*gpu) {
        printf("cuda tests: no GPU (%s)\n", why);
        exit(1);
    }
    *cpu = backend_cpu();
}
#endif
