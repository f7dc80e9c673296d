/* The cpu reference backend: plain C, f32 math, OpenMP over rows.
 * Each op-family file fills its part of the op table; backend_cpu.c calls
 * every filler once. */
#ifndef AIMC_CPU_H
#define AIMC_CPU_H
#include "../backend.h"
#include "../check.h"

void cpu_fill_matmul(backend *b);     /* matmul.c: matmul, bias_grad */
void cpu_fill_attention(backend *b);  /* attention.c: attention (+ backward) */
void cpu_fill_norm(backend *b);       /* norm.c: layernorm, rmsnorm (+ backward) */
void cpu_fill_activation(backend *b); /* activation.c: act, swiglu (+ backward) */
void cpu_fill_rope(backend *b);       /* rope.c */
void cpu_fill_rows(backend *b);       /* rows.c: gather/scatter rows, convert, add, scale */
void cpu_fill_loss(backend *b);       /* loss.c: cross_entropy, l2norm, infonce */
void cpu_fill_optim(backend *b);      /* optim.c: adamw, sumsq */

/* Below this many elements an elementwise op runs on one thread (OpenMP
 * start-up costs more). */
#define CPU_PARALLEL_MIN 16384
/* The same for multiply-add-bound ops (matmul, attention). */
#define CPU_PARALLEL_MIN_FLOPS (1 << 18)
#endif
