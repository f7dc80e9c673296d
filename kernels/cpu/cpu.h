/* The cpu reference backend: plain C, f32 math, OpenMP over rows.
 * Each op-family file fills its part of the table. */
#ifndef AIMC_CPU_H
#define AIMC_CPU_H
#include "../backend.h"
#include "../check.h"

void cpu_fill_linear(backend *b);    /* matmul.c, attention.c: matmul, bias_grad, attention(+bwd) */
void cpu_fill_pointwise(backend *b); /* norms, activations, rope, rows, convert, add, scale */
void cpu_fill_loss(backend *b);      /* cross_entropy, l2norm, infonce, adamw, sumsq */
#endif
