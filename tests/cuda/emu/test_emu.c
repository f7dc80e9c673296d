/* test_emu: the CUDA emulator (tests/cuda/emu/) is itself a test oracle, so
 * it is tested: correct kernels give the results worked out here, a race
 * gives order-dependent results, and every kind of undefined behaviour it
 * claims to catch stops the process with its one-line report (each broken
 * kernel runs in a forked child). The cuBLASLt emulation is checked on a
 * product small enough to write out by hand, and the 16-bit conversions on
 * ties and overflow, and one tensor-core product on fragments built from
 * the PTX ISA's formulas. Built and run only by `make test-cuda-emu`. */
#include "../../testlib.h"
#include <cublasLt.h>
#include <cuda_runtime_api.h>

void emu_case_geometry(float *host, int n);
void emu_case_block_sum(float *sums, const float *x, int blocks);
float emu_case_last_writer(void);
void emu_case_divergent_barrier(void);
void emu_case_return_before_barrier(void);
void emu_case_partial_warp_shuffle(void);
void emu_case_deadlock(void);
void emu_case_write_past_end(void);
void emu_case_launch_errors(int errors[3]);
unsigned short emu_bf16_bits(float v);
unsigned short emu_half_bits(float v);
int emu_under_asan(void);
void emu_case_mma(float d[128], const float a[256], const float b[128]);

enum { ABORTED = 128 + 6 }; /* SIGABRT */

static void test_geometry(void) {
    enum { N = 3 * 2 * 2 * 4 * 3 * 2 };
    float out[N];
    emu_case_geometry(out, N);
    int wrong = 0;
    for (int i = 0; i < N; i++) wrong += out[i] != (float)i;
    CHECK(wrong == 0, "3-d grid of 3-d blocks: %d of %d threads wrote the wrong slot", wrong, N);
}

static void test_block_sum(void) {
    enum { BLOCKS = 5 };
    float x[BLOCKS * 256], sums[BLOCKS];
    for (int i = 0; i < BLOCKS * 256; i++) x[i] = (float)rng_int(1000); /* exact sums */
    emu_case_block_sum(sums, x, BLOCKS);
    for (int b = 0; b < BLOCKS; b++) {
        double ref = 0;
        for (int i = 0; i < 256; i++) ref += x[b * 256 + i];
        CHECK(sums[b] == (float)ref, "block %d: shuffle + shared sum %g, want %g", b, sums[b], ref);
    }
}

/* The race's result must vary over launches (the emulator reorders threads),
 * while staying one of the values a thread wrote. */
static void test_race_varies(void) {
    int seen[64] = {0}, distinct = 0, valid = 1;
    for (int run = 0; run < 16; run++) {
        float v = emu_case_last_writer();
        if (v < 0 || v > 63 || v != (int)v) {
            valid = 0;
            continue;
        }
        distinct += !seen[(int)v]++;
    }
    CHECK(valid, "last-writer race gave a value no thread wrote");
    CHECK(distinct >= 2, "last-writer race gave the same value in 16 launches (no reordering?)");
}

static void test_undefined_behaviour(void) {
    EXPECT_DIES(emu_case_divergent_barrier, ABORTED, "while others wait at");
    EXPECT_DIES(emu_case_return_before_barrier, ABORTED, "returned while other threads wait");
    EXPECT_DIES(emu_case_partial_warp_shuffle, ABORTED, "in a warp with 16 live lanes");
    EXPECT_DIES(emu_case_deadlock, ABORTED, "deadlock");
    if (emu_under_asan()) /* the red zones are poisoned: ASan stops at the write */
        EXPECT_DIES(emu_case_write_past_end, 1, "AddressSanitizer: use-after-poison");
    else
        EXPECT_DIES(emu_case_write_past_end, ABORTED, "past the end of a 40-byte device allocation");
}

static void copy_outside_allocation(void) {
    float *d, h[4];
    cudaMalloc((void **)&d, 3 * sizeof(float));
    cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost);
}

static void test_memory(void) {
    float *d, h[3];
    CHECK(cudaMalloc((void **)&d, sizeof h) == cudaSuccess, "cudaMalloc");
    cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost);
    CHECK(isnan(h[0]) && isnan(h[1]) && isnan(h[2]), "fresh device memory does not read as NaN");
    cudaFree(d);
    EXPECT_DIES(copy_outside_allocation, ABORTED, "not inside one device allocation");
}

static void test_launch_errors(void) {
    int e[3];
    emu_case_launch_errors(e);
    CHECK(e[0] == cudaErrorInvalidConfiguration, "1025 threads per block: error %d", e[0]);
    CHECK(e[1] == cudaErrorInvalidValue, "64 KiB dynamic shared memory unasked for: error %d",
          e[1]);
    CHECK(e[2] == cudaSuccess, "64 KiB after cudaFuncSetAttribute: error %d", e[2]);
}

/* D = alpha op(A) op(B) + beta C + bias on 2 x 2 results, every number
 * written out: A stored 3 x 2 column-major and transposed (op(A) 2 x 3),
 * B 3 x 2 column-major as is. */
static void test_lt_matmul(void) {
    const float a[6] = {1, 2, 3, 4, 5, 6}; /* A = [1 4; 2 5; 3 6]: op(A) = [1 2 3; 4 5 6] */
    const float b[6] = {1, 0, 2, 0, 1, 1}; /* B = [1 0; 0 1; 2 1] */
    const float c[4] = {10, 20, 30, 40};  /* C = [10 30; 20 40] */
    const float bias[2] = {100, 200};
    /* op(A) B = [7 5; 16 11]; 2 op(A) B + 0.5 C + bias[row] = [119 125; 242 242] */
    const float want[4] = {119, 242, 125, 242};
    float *da, *db, *dd, *dbias, out[4];
    cudaMalloc((void **)&da, sizeof a), cudaMalloc((void **)&db, sizeof b);
    cudaMalloc((void **)&dd, sizeof c), cudaMalloc((void **)&dbias, sizeof bias);
    cudaMemcpy(da, a, sizeof a, cudaMemcpyHostToDevice);
    cudaMemcpy(db, b, sizeof b, cudaMemcpyHostToDevice);
    cudaMemcpy(dd, c, sizeof c, cudaMemcpyHostToDevice);
    cudaMemcpy(dbias, bias, sizeof bias, cudaMemcpyHostToDevice);
    cublasLtHandle_t h;
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t la, lb, lc;
    cublasLtCreate(&h);
    cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F);
    int32_t trans = CUBLAS_OP_T;
    uint32_t epi = CUBLASLT_EPILOGUE_BIAS;
    const void *bias_ptr = dbias;
    cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &trans, sizeof trans);
    cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi);
    cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias_ptr,
                                   sizeof bias_ptr);
    cublasLtMatrixLayoutCreate(&la, CUDA_R_32F, 3, 2, 3);
    cublasLtMatrixLayoutCreate(&lb, CUDA_R_32F, 3, 2, 3);
    cublasLtMatrixLayoutCreate(&lc, CUDA_R_32F, 2, 2, 2);
    float alpha = 2.0f, beta = 0.5f;
    cublasStatus_t st = cublasLtMatmul(h, desc, &alpha, da, la, db, lb, &beta, dd, lc, dd, lc, NULL,
                                       NULL, 0, NULL);
    cudaMemcpy(out, dd, sizeof out, cudaMemcpyDeviceToHost);
    CHECK(st == CUBLAS_STATUS_SUCCESS && !memcmp(out, want, sizeof want),
          "cuBLASLt emulation: status %d, D = [%g %g; %g %g], want [119 125; 242 242]", (int)st,
          out[0], out[2], out[1], out[3]);
    cublasLtMatrixLayout_t bad;
    cublasLtMatrixLayoutCreate(&bad, CUDA_R_32F, 2, 2, 2); /* op(A) would be 2 x 2: k disagrees */
    st = cublasLtMatmul(h, desc, &alpha, da, bad, db, lb, &beta, dd, lc, dd, lc, NULL, NULL, 0,
                        NULL);
    CHECK(st == CUBLAS_STATUS_INVALID_VALUE, "inconsistent shapes: status %d", (int)st);
    cublasLtMatrixLayoutDestroy(bad), cublasLtMatrixLayoutDestroy(la);
    cublasLtMatrixLayoutDestroy(lb), cublasLtMatrixLayoutDestroy(lc);
    cublasLtMatmulDescDestroy(desc);
    cudaFree(da), cudaFree(db), cudaFree(dd), cudaFree(dbias);
}

/* One mma.sync against a float64 product. Entries are multiples of 1/8 in
 * [-4, 4] (exact in bf16; every product and partial sum exact in f32), so D
 * must match exactly. */
static void test_mma(void) {
    float a[256], b[128], d[128];
    for (int i = 0; i < 256; i++) a[i] = (float)(rng_int(65) - 32) / 8.0f;
    for (int i = 0; i < 128; i++) b[i] = (float)(rng_int(65) - 32) / 8.0f;
    emu_case_mma(d, a, b);
    int wrong = 0;
    for (int r = 0; r < 16; r++)
        for (int c = 0; c < 8; c++) {
            double ref = 0;
            for (int k = 0; k < 16; k++) ref += (double)a[r * 16 + k] * b[k * 8 + c];
            wrong += d[r * 8 + c] != (float)ref;
        }
    CHECK(wrong == 0, "mma m16n8k16 from the ISA's fragment formulas: %d of 128 wrong", wrong);
}

/* Round to nearest even at ties, overflow to infinity. */
static void test_conversions(void) {
    CHECK(emu_bf16_bits(1.00390625f) == 0x3f80, "bf16(1 + 2^-8) = %#x, want 0x3f80 (tie, even)",
          emu_bf16_bits(1.00390625f));
    CHECK(emu_bf16_bits(1.01171875f) == 0x3f82, "bf16(1 + 3 2^-8) = %#x, want 0x3f82 (tie, even)",
          emu_bf16_bits(1.01171875f));
    CHECK(emu_bf16_bits(-2.0f) == 0xc000, "bf16(-2) = %#x", emu_bf16_bits(-2.0f));
    CHECK((emu_bf16_bits(NAN) & 0x7fc0) == 0x7fc0, "bf16(NaN) = %#x is not a NaN",
          emu_bf16_bits(NAN));
    CHECK(emu_half_bits(65519.0f) == 0x7bff, "half(65519) = %#x, want 0x7bff (65504)",
          emu_half_bits(65519.0f));
    CHECK(emu_half_bits(65520.0f) == 0x7c00, "half(65520) = %#x, want inf", emu_half_bits(65520.0f));
    CHECK(emu_half_bits(1.00048828125f) == 0x3c00, "half(1 + 2^-11) = %#x, want 0x3c00 (tie)",
          emu_half_bits(1.00048828125f));
}

int main(void) {
    tests_begin("test_emu");
    test_undefined_behaviour(); /* forked children first */
    test_memory();
    test_geometry();
    test_block_sum();
    test_race_varies();
    test_launch_errors();
    test_lt_matmul();
    test_mma();
    test_conversions();
    return tests_done();
}
