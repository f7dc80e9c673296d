/* cuda-emu: the runtime API, plus the device side in C++ (tests/cuda/emu/). */
#ifndef AIMC_CUDA_EMU_RUNTIME_H
#define AIMC_CUDA_EMU_RUNTIME_H
#include "cuda_runtime_api.h"
#ifdef __cplusplus
#include "../emu_device.h"
#endif
#endif
