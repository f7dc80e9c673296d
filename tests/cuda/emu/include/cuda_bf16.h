/* cuda-emu: bfloat16 lives in emu_device.h. */
#include "cuda_runtime.h"
