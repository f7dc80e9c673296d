/* Rotary position embedding, half-split layout (transformers' rotate_half),
 * in place on x [B, T, H, hd] with positions pos [B, T]:
 *   out1 = x1 cos - x2 sin,  out2 = x2 cos + x1 sin   (sin negated: inverse).
 *
 * Strategy: one thread per rotated pair (x[i], x[i + hd/2]); neighbouring
 * threads take neighbouring i, so both halves are read and written
 * coalesced. The angles follow transformers in f32:
 *   inv_freq_i = 1 / theta^(2i / hd),  angle = (float)pos * inv_freq_i.
 * inv_freq is computed on the host with the same expression as the cpu
 * reference (so both backends use bitwise the same frequencies; the device
 * powf may differ by an ulp, which a large position multiplies) and cached
 * on the device per (theta, hd). cos/sin are the accurate sincosf. */
#include "cuda_common.cuh"

enum { THREADS = 256, FREQ_CACHE = 8 };

static __global__ void rope_kernel(void *x, dtype dt, const int32_t *pos, const float *inv_freq,
                                   int64_t rows, int64_t heads, int64_t hd, int inverse) {
    int64_t half = hd / 2, total = rows * half;
    for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < total;
         e += (int64_t)gridDim.x * blockDim.x) {
        int64_t row = e / half, i = e % half; /* row = (b T + t) H + h */
        float angle = (float)pos[row / heads] * inv_freq[i], s, c;
        sincosf(angle, &s, &c);
        if (inverse) s = -s;
        int64_t i1 = row * hd + i, i2 = i1 + half;
        float x1 = ld(x, dt, i1), x2 = ld(x, dt, i2);
        st(x, dt, i1, x1 * c - x2 * s);
        st(x, dt, i2, x2 * c + x1 * s);
    }
}

typedef struct freq_table {
    float theta;
    int64_t hd;
    float *dev; /* [hd / 2], lives as long as the process */
} freq_table;

/* The device table of inv_freq for (theta, hd), built on first use. */
static const float *inv_freq_table(float theta, int64_t hd) {
    static freq_table cache[FREQ_CACHE];
    static int next;
    for (int i = 0; i < FREQ_CACHE; i++)
        if (cache[i].dev && cache[i].theta == theta && cache[i].hd == hd) return cache[i].dev;
    int64_t half = hd / 2;
    float *host = (float *)malloc((size_t)half * sizeof(float));
    AIMC_CHECK(host, "cuda rope: out of host memory for %lld frequencies", (long long)half);
    for (int64_t i = 0; i < half; i++) host[i] = 1.0f / powf(theta, (float)(2 * i) / (float)hd);
    freq_table *t = &cache[next];
    next = (next + 1) % FREQ_CACHE;
    if (t->dev) { /* evict: the stream may still read it */
        CUDA_CHECK(cudaStreamSynchronize(cuda_stream()));
        CUDA_CHECK(cudaFree(t->dev));
    }
    CUDA_CHECK(cudaMalloc(&t->dev, (size_t)half * sizeof(float)));
    CUDA_CHECK(cudaMemcpyAsync(t->dev, host, (size_t)half * sizeof(float), cudaMemcpyHostToDevice,
                               cuda_stream()));
    CUDA_CHECK(cudaStreamSynchronize(cuda_stream())); /* before host is freed */
    free(host);
    t->theta = theta;
    t->hd = hd;
    return t->dev;
}

static void cuda_rope(tensor *x, const tensor *pos, float theta, int inverse) {
    AIMC_CHECK(x->ndim == 4 && x->shape[3] % 2 == 0, "cuda rope: x must be [B, T, H, even hd]");
    int64_t heads = x->shape[2], hd = x->shape[3];
    int64_t rows = x->shape[0] * x->shape[1] * heads;
    if (rows <= 0 || hd <= 0) return;
    const float *freq = inv_freq_table(theta, hd);
    rope_kernel<<<grid_blocks(rows * (hd / 2), THREADS), THREADS, 0, cuda_stream()>>>(
        x->data, x->dt, (const int32_t *)pos->data, freq, rows, heads, hd, inverse);
    CUDA_LAUNCH_CHECK();
}

void cuda_fill_rope(backend *b) { b->rope = cuda_rope; }
