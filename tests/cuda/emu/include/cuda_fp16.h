/* cuda-emu: half lives in emu_device.h. */
#include "cuda_runtime.h"
