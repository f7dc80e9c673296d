/* Rotary position embedding, half-split layout, in place on x [B, T, H, hd]:
 * with x1 = x[:hd/2], x2 = x[hd/2:] (transformers' rotate_half),
 *   out1 = x1 cos - x2 sin,  out2 = x2 cos + x1 sin.
 * The angles follow transformers exactly, all in f32:
 *   inv_freq_i = 1 / theta^((2i) / hd),  angle = (float)pos * inv_freq_i,
 * then cosf / sinf. Long positions make the f32 angle coarse; matching the
 * rounding of the reference implementation keeps outputs comparable. */
#include "cpu.h"
#include <math.h>
#include <stdlib.h>

static void rope_inv_freq(float *inv_freq, int64_t half, int64_t hd, float theta) {
    for (int64_t i = 0; i < half; i++) inv_freq[i] = 1.0f / powf(theta, (float)(2 * i) / (float)hd);
}

/* cos and sin of one position's angles; sin negated for the inverse rotation. */
static void rope_angles(float *cs, float *sn, const float *inv_freq, int64_t half, int32_t pos,
                        int inverse) {
    for (int64_t i = 0; i < half; i++) {
        float angle = (float)pos * inv_freq[i];
        cs[i] = cosf(angle);
        sn[i] = inverse ? -sinf(angle) : sinf(angle);
    }
}

/* Rotates the H heads of one token, starting at element off. */
static void rope_token(tensor *x, int64_t off, int64_t heads, int64_t hd, const float *cs,
                       const float *sn) {
    int64_t half = hd / 2;
    for (int64_t h = 0; h < heads; h++) {
        int64_t base = off + h * hd;
        for (int64_t i = 0; i < half; i++) {
            float x1 = load_as_f32(x->data, x->dt, base + i);
            float x2 = load_as_f32(x->data, x->dt, base + half + i);
            store_from_f32(x->data, x->dt, base + i, x1 * cs[i] - x2 * sn[i]);
            store_from_f32(x->data, x->dt, base + half + i, x2 * cs[i] + x1 * sn[i]);
        }
    }
}

static void cpu_rope(tensor *x, const tensor *pos, float theta, int inverse) {
    int64_t tokens = x->shape[0] * x->shape[1], heads = x->shape[2], hd = x->shape[3];
    int64_t half = hd / 2;
    const int32_t *p = (const int32_t *)pos->data;
    float *inv_freq = aimc_xmalloc((size_t)half * sizeof(float));
    rope_inv_freq(inv_freq, half, hd, theta);
#pragma omp parallel if (tokens * heads * hd >= CPU_PARALLEL_MIN)
    {
        float *cs = aimc_xmalloc((size_t)half * 2 * sizeof(float)), *sn = cs + half;
#pragma omp for schedule(static)
        for (int64_t t = 0; t < tokens; t++) {
            rope_angles(cs, sn, inv_freq, half, p[t], inverse);
            rope_token(x, t * heads * hd, heads, hd, cs, sn);
        }
        free(cs);
    }
    free(inv_freq);
}

void cpu_fill_rope(backend *b) { b->rope = cpu_rope; }
