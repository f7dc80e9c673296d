/* aimc-bench (make bench): times the cuda backend on the GPU it finds.
 *
 * First the two ceilings: device-to-device copy bandwidth (a large
 * same-dtype convert, i.e. cudaMemcpyAsync) and a large bf16 GEMM through
 * the backend's cuBLASLt matmul. Then every kernel at the shapes aimc runs
 * (LLaMA-7B: d 4096, ffn 11008, vocab 32064, 32 heads of 128, T 512-2048;
 * CLIP ViT-L/14-336: T 577, d 1024, 16 heads of 64; OPT-2.7B: 32 heads of
 * 80), each reported as achieved GB/s (memory-bound kernels: the bytes the
 * op must move at least, read + written once) or TFLOP/s (matmul,
 * attention), and as a fraction of the matching ceiling.
 *
 * Timing: one warm-up call, one timed call to size the loop, then enough
 * calls for about 0.2 s between two stream synchronisations (wall clock);
 * launch overhead is included, as in real use.
 *
 * Attention is also compared with cuDNN's fused attention (and
 * FlashAttention-2) through PyTorch's scaled_dot_product_attention, timed
 * the same way by scripts/bench_sdpa.py in the same `make bench` run: its
 * CSV, when given, becomes a side-by-side table. (The cuDNN frontend's C++
 * headers are not in the toolkit image; PyTorch is on the GPU machines.)
 *
 * Usage: aimc-bench [OUT_DIR [SDPA_CSV]]   writes OUT_DIR/perf-<gpu>.md
 * (default docs). */
#include "../../kernels/backend.h"
#include "../../kernels/check.h"
#include <cuda_runtime_api.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const backend *be;

typedef enum { BYTES, FLOPS } amount_kind;

typedef struct result {
    char name[48], shape[64];
    double seconds, amount; /* per call */
    amount_kind kind;
} result;

enum { MAX_RESULTS = 128 };
static result results[MAX_RESULTS];
static int nresults;
static double copy_gbs, gemm_tflops; /* the ceilings */

/* AIMC_BENCH_SHRINK=N divides every size but head counts and head dims by
 * N: a smoke run of this program (e.g. on the CPU emulator of CUDA, where
 * full sizes would take hours). Its numbers and shape labels mean nothing. */
static int64_t g_shrink = 1;
static int64_t sz(int64_t full) { return full / g_shrink > 0 ? full / g_shrink : 1; }

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void record(const char *name, const char *shape, double seconds, double amount,
                   amount_kind kind) {
    AIMC_CHECK(nresults < MAX_RESULTS, "bench: more than %d results", MAX_RESULTS);
    result *r = &results[nresults++];
    snprintf(r->name, sizeof r->name, "%s", name);
    snprintf(r->shape, sizeof r->shape, "%s", shape);
    r->seconds = seconds, r->amount = amount, r->kind = kind;
    double rate = kind == BYTES ? amount / seconds / 1e9 : amount / seconds / 1e12;
    printf("%-32s %-30s %10.1f us  %8.1f %s\n", name, shape, seconds * 1e6, rate,
           kind == BYTES ? "GB/s" : "TFLOP/s");
    fflush(stdout);
}

/* Times stmt (see the header comment) and records it. */
#define BENCH(name, shape, amount, kind, stmt)                                                     \
    do {                                                                                           \
        stmt;                                                                                      \
        be->sync();                                                                                \
        double t0_ = now();                                                                        \
        stmt;                                                                                      \
        be->sync();                                                                                \
        double one_ = now() - t0_;                                                                 \
        int iters_ = (int)fmin(1000.0, fmax(3.0, 0.2 / fmax(one_, 1e-7)));                         \
        t0_ = now();                                                                               \
        for (int i_ = 0; i_ < iters_; i_++) stmt;                                                  \
        be->sync();                                                                                \
        record((name), (shape), (now() - t0_) / iters_, (amount), (kind));                         \
    } while (0)

/* ---- tensors ------------------------------------------------------------------ */

static tensor dev(dtype dt, int ndim, const int64_t *shape) {
    tensor t = tensor_wrap(NULL, dt, be, ndim, shape);
    t.data = be->alloc(tensor_bytes(&t));
    return t;
}
#define DEV(dt, ...)                                                                               \
    dev((dt), (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (int64_t[]){__VA_ARGS__})

static uint64_t lcg_state = 12345;
static float lcg_uniform(void) { /* [-1, 1) */
    lcg_state = lcg_state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(lcg_state >> 40) / 8388608.0 - 1.0);
}

/* Random values in [lo, hi) (as the tensor's dtype), through a host buffer. */
static void fill(const tensor *t, float lo, float hi) {
    int64_t n = tensor_numel(t);
    void *host = malloc(tensor_bytes(t) ? tensor_bytes(t) : 1);
    AIMC_CHECK(host, "bench: out of host memory");
    for (int64_t i = 0; i < n; i++)
        store_from_f32(host, t->dt, i, lo + (hi - lo) * 0.5f * (lcg_uniform() + 1.0f));
    be->upload(t->data, host, tensor_bytes(t));
    free(host);
}

static void fill_ints(const tensor *t, int32_t below) {
    int64_t n = tensor_numel(t);
    int32_t *host = malloc((size_t)n * sizeof(int32_t));
    AIMC_CHECK(host, "bench: out of host memory");
    for (int64_t i = 0; i < n; i++)
        host[i] = (int32_t)((lcg_uniform() + 1.0f) * 0.5f * (float)below) % below;
    be->upload(t->data, host, (size_t)n * sizeof(int32_t));
    free(host);
}

static void release(tensor *t) { be->release(t->data); }

/* ---- the ceilings ------------------------------------------------------------- */

static void bench_ceilings(void) {
    int64_t n = sz((int64_t)1 << 28); /* 1 GiB of f32 */
    tensor a = DEV(DT_F32, n), b = DEV(DT_F32, n);
    be->zero(a.data, tensor_bytes(&a));
    BENCH("copy d2d (ceiling)", "1 GiB", 2.0 * (double)tensor_bytes(&a), BYTES,
          be->convert(&b, &a));
    copy_gbs = results[nresults - 1].amount / results[nresults - 1].seconds / 1e9;
    release(&a), release(&b);

    int64_t s = sz(8192);
    tensor x = DEV(DT_BF16, s, s), w = DEV(DT_BF16, s, s), y = DEV(DT_BF16, s, s);
    fill(&x, -1, 1), fill(&w, -1, 1);
    BENCH("matmul bf16 (ceiling)", "8192^3", 2.0 * (double)s * s * s, FLOPS,
          be->matmul(&y, &x, &w, NULL, 0, 1, 0.0f));
    gemm_tflops = results[nresults - 1].amount / results[nresults - 1].seconds / 1e12;
    release(&x), release(&w), release(&y);
}

/* ---- kernels at aimc's shapes -------------------------------------------------- */

static void bench_matmuls(void) {
    const int64_t T = sz(2048), D = sz(4096), F = sz(11008), V = sz(32064);
    const int64_t outs[3] = {D, F, V};
    const char *names[3] = {"matmul qkvo 4096", "matmul ffn up 11008", "matmul lm head 32064"};
    tensor x = DEV(DT_BF16, T, D);
    fill(&x, -1, 1);
    for (int i = 0; i < 3; i++) {
        tensor w = DEV(DT_BF16, outs[i], D), y = DEV(DT_BF16, T, outs[i]);
        fill(&w, -0.02f, 0.02f);
        char shape[64];
        snprintf(shape, sizeof shape, "[%lld,%lld]x[%lld,%lld]^T", (long long)T, (long long)D,
                 (long long)outs[i], (long long)D);
        BENCH(names[i], shape, 2.0 * T * D * outs[i], FLOPS,
              be->matmul(&y, &x, &w, NULL, 0, 1, 0.0f));
        release(&w), release(&y);
    }
    release(&x);
}

typedef struct attn_shape {
    const char *model;
    int64_t b, t, h, hd;
    int causal;
} attn_shape;

/* aimc's attention times per shape, for the table against PyTorch's SDPA. */
typedef struct attn_timing {
    attn_shape s;
    double fwd, bwd; /* seconds per call */
} attn_timing;
static attn_timing attn_times[16];
static int nattn;

static void bench_attention_shape(const attn_shape *s) {
    tensor q = DEV(DT_BF16, s->b, s->t, s->h, s->hd), k = DEV(DT_BF16, s->b, s->t, s->h, s->hd);
    tensor v = DEV(DT_BF16, s->b, s->t, s->h, s->hd), o = DEV(DT_BF16, s->b, s->t, s->h, s->hd);
    tensor lse = DEV(DT_F32, s->b, s->h, s->t), dout = DEV(DT_BF16, s->b, s->t, s->h, s->hd);
    tensor dq = DEV(DT_BF16, s->b, s->t, s->h, s->hd), dk = DEV(DT_BF16, s->b, s->t, s->h, s->hd);
    tensor dv = DEV(DT_BF16, s->b, s->t, s->h, s->hd);
    fill(&q, -1, 1), fill(&k, -1, 1), fill(&v, -1, 1), fill(&dout, -1, 1);
    attn_opts opts = {.scale = 1.0f / sqrtf((float)s->hd), .causal = s->causal};
    /* 2 matmuls of T x T x hd forward, 5 backward; causal does about half */
    double fwd = 4.0 * s->b * s->h * (double)s->t * s->t * s->hd * (s->causal ? 0.5 : 1.0);
    char shape[64], name[48];
    snprintf(shape, sizeof shape, "B%lld T%lld H%lld hd%lld%s", (long long)s->b, (long long)s->t,
             (long long)s->h, (long long)s->hd, s->causal ? " causal" : "");
    snprintf(name, sizeof name, "attention fwd (%s)", s->model);
    BENCH(name, shape, fwd, FLOPS, be->attention(&o, &lse, &q, &k, &v, &opts));
    snprintf(name, sizeof name, "attention bwd (%s)", s->model);
    BENCH(name, shape, 2.5 * fwd, FLOPS,
          be->attention_backward(&dq, &dk, &dv, &dout, &q, &k, &v, &o, &lse, &opts));
    AIMC_CHECK(nattn < (int)(sizeof attn_times / sizeof attn_times[0]), "bench: too many attention shapes");
    attn_times[nattn++] = (attn_timing){*s, results[nresults - 2].seconds, results[nresults - 1].seconds};
    /* the f32 SIMT kernels on the same inputs (the tensor-core ones' baseline) */
    setenv("AIMC_ATTN_SIMT", "1", 1);
    snprintf(name, sizeof name, "attention fwd simt (%s)", s->model);
    BENCH(name, shape, fwd, FLOPS, be->attention(&o, &lse, &q, &k, &v, &opts));
    snprintf(name, sizeof name, "attention bwd simt (%s)", s->model);
    BENCH(name, shape, 2.5 * fwd, FLOPS,
          be->attention_backward(&dq, &dk, &dv, &dout, &q, &k, &v, &o, &lse, &opts));
    unsetenv("AIMC_ATTN_SIMT");
    tensor *all[] = {&q, &k, &v, &o, &lse, &dout, &dq, &dk, &dv};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) release(all[i]);
}

static void bench_attention(void) {
    const attn_shape shapes[] = {
        {"llama-7b", 1, 512, 32, 128, 1},  {"llama-7b", 1, 1024, 32, 128, 1},
        {"llama-7b", 1, 2048, 32, 128, 1}, {"clip-l-336", 8, 577, 16, 64, 0},
        {"opt-2.7b", 1, 2048, 32, 80, 1},
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        attn_shape s = shapes[i];
        s.t = sz(s.t);
        bench_attention_shape(&s);
    }
}

static void bench_norms(void) {
    const int64_t T = sz(2048), D = sz(4096);
    double act = (double)T * D * 2; /* bytes of one bf16 [T, D] activation */
    tensor x = DEV(DT_BF16, T, D), y = DEV(DT_BF16, T, D), dy = DEV(DT_BF16, T, D),
           dx = DEV(DT_BF16, T, D);
    tensor w = DEV(DT_BF16, D), dw = DEV(DT_F32, D), rstd = DEV(DT_F32, T);
    fill(&x, -2, 2), fill(&dy, -1, 1), fill(&w, 0.5f, 1.5f);
    BENCH("rmsnorm fwd", "[2048,4096] bf16", 2 * act, BYTES, be->rmsnorm(&y, &rstd, &x, &w, 1e-6f));
    BENCH("rmsnorm bwd (dx, dw)", "[2048,4096] bf16", 3 * act, BYTES,
          be->rmsnorm_backward(&dx, &dw, &dy, &x, &w, &rstd));
    tensor *all[] = {&x, &y, &dy, &dx, &w, &dw, &rstd};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) release(all[i]);

    const int64_t R = sz(8 * 577), C = sz(1024); /* CLIP ViT-L/14-336, batch 8 */
    double cact = (double)R * C * 2;
    tensor cx = DEV(DT_BF16, R, C), cy = DEV(DT_BF16, R, C), cdy = DEV(DT_BF16, R, C),
           cdx = DEV(DT_BF16, R, C);
    tensor cw = DEV(DT_F32, C), cb = DEV(DT_F32, C), cdw = DEV(DT_F32, C), cdb = DEV(DT_F32, C);
    tensor mean = DEV(DT_F32, R), crstd = DEV(DT_F32, R);
    fill(&cx, -2, 2), fill(&cdy, -1, 1), fill(&cw, 0.5f, 1.5f), fill(&cb, -0.1f, 0.1f);
    BENCH("layernorm fwd", "[4616,1024] bf16", 2 * cact, BYTES,
          be->layernorm(&cy, &mean, &crstd, &cx, &cw, &cb, 1e-5f));
    BENCH("layernorm bwd (dx, dw, db)", "[4616,1024] bf16", 3 * cact, BYTES,
          be->layernorm_backward(&cdx, &cdw, &cdb, &cdy, &cx, &cw, &mean, &crstd));
    tensor *call[] = {&cx, &cy, &cdy, &cdx, &cw, &cb, &cdw, &cdb, &mean, &crstd};
    for (size_t i = 0; i < sizeof call / sizeof call[0]; i++) release(call[i]);
}

static void bench_pointwise(void) {
    const int64_t T = sz(2048), F = sz(11008), D = sz(4096), V = sz(32064), H = 32, HD = 128;
    double ffn = (double)T * F * 2;
    tensor g = DEV(DT_BF16, T, F), u = DEV(DT_BF16, T, F), y = DEV(DT_BF16, T, F),
           dy = DEV(DT_BF16, T, F);
    tensor dg = DEV(DT_BF16, T, F), du = DEV(DT_BF16, T, F);
    fill(&g, -3, 3), fill(&u, -1, 1), fill(&dy, -1, 1);
    BENCH("act silu fwd", "[2048,11008] bf16", 2 * ffn, BYTES, be->act(ACT_SILU, &y, &g));
    BENCH("act gelu bwd", "[2048,11008] bf16", 3 * ffn, BYTES,
          be->act_backward(ACT_GELU, &dg, &dy, &g));
    BENCH("swiglu fwd", "[2048,11008] bf16", 3 * ffn, BYTES, be->swiglu(&y, &g, &u));
    BENCH("swiglu bwd", "[2048,11008] bf16", 5 * ffn, BYTES,
          be->swiglu_backward(&dg, &du, &dy, &g, &u));
    tensor *all[] = {&g, &u, &y, &dy, &dg, &du};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) release(all[i]);

    tensor q = DEV(DT_BF16, 1, T, H, HD), pos = DEV(DT_I32, 1, T);
    fill(&q, -1, 1), fill_ints(&pos, (int32_t)T);
    BENCH("rope (in place)", "[1,2048,32,128] bf16", 2.0 * T * H * HD * 2, BYTES,
          be->rope(&q, &pos, 10000.0f, 0));
    release(&q), release(&pos);

    tensor table = DEV(DT_BF16, V, D), out = DEV(DT_BF16, T, D), idx = DEV(DT_I32, T),
           b2 = DEV(DT_BF16, T, D);
    fill(&table, -1, 1), fill_ints(&idx, (int32_t)V), fill(&b2, -1, 1);
    double act = (double)T * D * 2;
    BENCH("gather_rows (embedding)", "2048 of [32064,4096] bf16", 2 * act, BYTES,
          be->gather_rows(&out, &table, &idx));
    BENCH("add (residual)", "[2048,4096] bf16", 3 * act, BYTES, be->add(&out, &out, &b2));
    release(&table), release(&out), release(&idx), release(&b2);
}

static void bench_losses(void) {
    const int64_t T = sz(2048), V = sz(32064);
    tensor logits = DEV(DT_F32, T, V), loss = DEV(DT_F32, T), tg = DEV(DT_I32, T);
    fill(&logits, -8, 8), fill_ints(&tg, (int32_t)V);
    BENCH("cross_entropy (in place)", "[2048,32064] f32", 2.0 * T * V * 4, BYTES,
          be->cross_entropy(&loss, &logits, &tg, 1.0f / (float)T));
    release(&logits), release(&loss), release(&tg);

    const int64_t n = sz((int64_t)4096 * 4096); /* a 16.8M-parameter projector */
    tensor p = DEV(DT_F32, n), g = DEV(DT_F32, n), m = DEV(DT_F32, n), v = DEV(DT_F32, n),
           s = DEV(DT_F32, 1);
    fill(&p, -1, 1), fill(&g, -1, 1);
    be->zero(m.data, tensor_bytes(&m)), be->zero(v.data, tensor_bytes(&v));
    adamw_opts o = {.lr = 1e-4f,
                    .beta1 = 0.9f,
                    .beta2 = 0.999f,
                    .eps = 1e-8f,
                    .weight_decay = 0.01f,
                    .step = 1,
                    .grad_scale = 1.0f};
    BENCH("adamw", "16.8M f32 params", 7.0 * n * 4, BYTES, be->adamw(&p, &g, &m, &v, &o));
    BENCH("sumsq (grad norm)", "16.8M f32", 4.0 * n, BYTES, be->sumsq(&s, &g));
    release(&p), release(&g), release(&m), release(&v), release(&s);
}

/* ---- report ------------------------------------------------------------------- */

/* "NVIDIA H100 80GB HBM3" -> "nvidia-h100-80gb-hbm3" */
static void file_slug(char *out, size_t n, const char *name) {
    size_t j = 0;
    for (size_t i = 0; name[i] && j + 1 < n; i++) {
        char c = (char)tolower((unsigned char)name[i]);
        if (isalnum((unsigned char)c))
            out[j++] = c;
        else if (j && out[j - 1] != '-')
            out[j++] = '-';
    }
    while (j && out[j - 1] == '-') j--;
    out[j] = 0;
}

static const attn_timing *find_attn(int64_t b, int64_t t, int64_t h, int64_t hd, int causal) {
    for (int i = 0; i < nattn; i++) {
        const attn_shape *s = &attn_times[i].s;
        if (s->b == b && s->t == t && s->h == h && s->hd == hd && s->causal == causal) return &attn_times[i];
    }
    return NULL;
}

/* scripts/bench_sdpa.py's CSV (backend,b,t,h,hd,causal,fwd_s,bwd_s) next to
 * aimc's times for the same shapes; "x aimc" > 1 means aimc is faster. */
static void write_sdpa_table(FILE *f, const char *csv) {
    FILE *in = csv ? fopen(csv, "r") : NULL;
    if (!in) {
        fprintf(f, "\nNo comparison with cuDNN SDPA in this run (%s).\n",
                csv ? "its CSV could not be read" : "PyTorch with CUDA was not found");
        return;
    }
    fprintf(f, "\n## Attention against PyTorch SDPA, same run\n\n"
               "scripts/bench_sdpa.py: torch.nn.functional.scaled_dot_product_attention, bf16 [B, H, T, hd], "
               "one backend forced at a time (cudnn: cuDNN fused attention; flash2: FlashAttention-2); "
               "bwd is forward+backward minus forward. Time ratio = their time / aimc's (> 1: aimc faster).\n\n"
               "| backend | shape | aimc fwd (us) | their fwd (us) | ratio fwd | aimc bwd (us) | their bwd (us) | "
               "ratio bwd |\n|---|---|---:|---:|---:|---:|---:|---:|\n");
    char line[256], name[32];
    long long b, t, h, hd;
    int causal;
    double fwd, bwd;
    while (fgets(line, sizeof line, in)) {
        if (sscanf(line, "%31[^,],%lld,%lld,%lld,%lld,%d,%lf,%lf", name, &b, &t, &h, &hd, &causal, &fwd, &bwd) != 8)
            continue; /* the header */
        const attn_timing *a = find_attn(b, t, h, hd, causal);
        if (!a) continue;
        fprintf(f, "| %s | %s B%lld T%lld H%lld hd%lld%s | %.1f | %.1f | %.2f | %.1f | %.1f | %.2f |\n", name,
                a->s.model, b, t, h, hd, causal ? " causal" : "", a->fwd * 1e6, fwd * 1e6, fwd / a->fwd,
                a->bwd * 1e6, bwd * 1e6, bwd / a->bwd);
        printf("%-8s %-10s T%-5lld hd%-4lld fwd %.2fx  bwd %.2fx (their time / aimc's)\n", name, a->s.model, t, hd,
               fwd / a->fwd, bwd / a->bwd);
    }
    fclose(in);
}

static void write_report(const char *dir, const char *sdpa_csv, const struct cudaDeviceProp *prop) {
    char slug[96], path[512], date[32];
    file_slug(slug, sizeof slug, prop->name);
    snprintf(path, sizeof path, "%s/perf-%s.md", dir, slug);
    time_t t = time(NULL);
    strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", gmtime(&t));
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "aimc-bench: cannot write %s: %s\n", path, strerror(errno));
        return;
    }
    int rt = 0, drv = 0;
    cudaRuntimeGetVersion(&rt);
    cudaDriverGetVersion(&drv);
    fprintf(f, "# aimc cuda kernels on %s\n\n", prop->name);
    if (g_shrink > 1)
        fprintf(f, "**Smoke run (AIMC_BENCH_SHRINK=%lld): sizes divided, labels and numbers "
                   "meaningless.**\n\n", (long long)g_shrink);
    fprintf(f,
            "Measured by `make bench` (tests/cuda/bench.c) on %s; %d SMs, CUDA runtime %d, driver "
            "%d.\n",
            date, prop->multiProcessorCount, rt, drv);
    fprintf(
        f,
        "Memory-bound rows: bytes the op must move (each input read and each output written once) "
        "per second, as a fraction of the measured device-to-device copy bandwidth. Matmul and "
        "attention rows: FLOP/s as a fraction of the measured 8192^3 bf16 cuBLASLt GEMM. "
        "`attention fwd` / `bwd` are the bf16 tensor-core kernels (attention_mma.cu), the `simt` "
        "rows the f32 SIMT ones (AIMC_ATTN_SIMT=1) on the same inputs.\n\n");
    fprintf(f,
            "| kernel | shape | time (us) | achieved | of ceiling |\n|---|---|---:|---:|---:|\n");
    for (int i = 0; i < nresults; i++) {
        const result *r = &results[i];
        int bytes = r->kind == BYTES;
        double rate = r->amount / r->seconds / (bytes ? 1e9 : 1e12);
        double ceiling = bytes ? copy_gbs : gemm_tflops;
        fprintf(f, "| %s | %s | %.1f | %.1f %s | %.0f%% |\n", r->name, r->shape, r->seconds * 1e6,
                rate, bytes ? "GB/s" : "TFLOP/s", 100.0 * rate / ceiling);
    }
    write_sdpa_table(f, sdpa_csv);
    fclose(f);
    printf("aimc-bench: wrote %s\n", path);
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "docs", *sdpa_csv = argc > 2 ? argv[2] : NULL;
    const char *shrink = getenv("AIMC_BENCH_SHRINK");
    if (shrink && atoll(shrink) > 1) g_shrink = atoll(shrink);
    char why[256] = "";
    be = backend_cuda(why, sizeof why);
    if (!be) {
        fprintf(stderr, "aimc-bench: no GPU (%s)\n", why);
        return 1;
    }
    struct cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess)
        aimc_die("aimc-bench: cudaGetDeviceProperties failed");
    printf("aimc-bench on %s (%d SMs)\n", prop.name, prop.multiProcessorCount);
    bench_ceilings();
    bench_matmuls();
    bench_attention();
    bench_norms();
    bench_pointwise();
    bench_losses();
    write_report(dir, sdpa_csv, &prop);
    return 0;
}
