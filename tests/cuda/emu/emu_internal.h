/* cuda-emu: what runtime.cpp and lt.cpp share. */
#ifndef AIMC_CUDA_EMU_INTERNAL_H
#define AIMC_CUDA_EMU_INTERNAL_H
#include "emu_device.h"
#include <cublasLt.h>
#include <stddef.h>

/* Prints "cuda-emu: <message>" and aborts. */
[[noreturn]] void emu_die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Dies unless [p, p + bytes) lies inside one device allocation. */
void emu_require_device(const void *p, size_t bytes, const char *what);
#endif
