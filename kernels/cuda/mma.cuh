/* One warp-wide tensor-core product: d += A B, m16 n8 k16, bf16 operands,
 * f32 accumulators (mma.sync, sm_80 and later). Fragment layouts (PTX ISA,
 * "Matrix fragments for mma.m16n8k16"), lane = 4 g + t; two bf16 per
 * register, the lower row or column index in the low 16 bits:
 *   a[0] = A[g][2t..2t+1]     a[1] = A[g+8][2t..2t+1]
 *   a[2] = A[g][2t+8..2t+9]   a[3] = A[g+8][2t+8..2t+9]
 *   b[0] = B[2t..2t+1][g]     b[1] = B[2t+8..2t+9][g]
 *   d[0], d[1] = D[g][2t], D[g][2t+1];  d[2], d[3] = D[g+8][2t], D[g+8][2t+1]
 * All 32 lanes of the warp execute it together. In the CPU emulation
 * (AIMC_CUDA_EMU, tests/cuda/emu/) the emulator gathers the 32 lanes'
 * fragments and computes the same product. */
#ifndef AIMC_CUDA_MMA_CUH
#define AIMC_CUDA_MMA_CUH
#include <stdint.h>

static __device__ __forceinline__ void mma_m16n8k16_bf16(float d[4], const uint32_t a[4],
                                                         const uint32_t b[2]) {
#ifdef AIMC_CUDA_EMU
    emu_mma_m16n8k16_bf16(d, a, b, __FILE__, __LINE__);
#else
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
                 "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
}

/* Two floats as the bf16 pair of one register (lo in the low half). */
static __device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
    return (uint32_t)__bfloat16_as_ushort(__float2bfloat16_rn(lo)) |
           ((uint32_t)__bfloat16_as_ushort(__float2bfloat16_rn(hi)) << 16);
}
#endif
