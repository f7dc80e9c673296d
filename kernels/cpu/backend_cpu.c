/* The cpu backend's memory functions and the assembly of its op table. */
#include "cpu.h"
#include <stdlib.h>
#include <string.h>

static void *cpu_alloc(size_t bytes) {
    void *p = NULL;
    /* 256 bytes, like the arena's tensors and cudaMalloc */
    if (posix_memalign(&p, 256, bytes ? bytes : 256))
        aimc_die("cpu: out of memory allocating %zu bytes", bytes);
    return p;
}
static void cpu_release(void *p) { free(p); }
static void cpu_copy(void *dst, const void *src, size_t bytes) { memcpy(dst, src, bytes); }
static void cpu_zero(void *p, size_t bytes) { memset(p, 0, bytes); }
static void cpu_sync(void) {}

const backend *backend_cpu(void) {
    static backend b;
    static int ready;
    if (!ready) {
        b.name = "cpu";
        b.act_dtype = DT_F32;
        b.alloc = cpu_alloc;
        b.release = cpu_release;
        b.upload = cpu_copy;
        b.download = cpu_copy;
        b.zero = cpu_zero;
        b.sync = cpu_sync;
        void (*const fillers[])(backend *) = {cpu_fill_matmul, cpu_fill_attention, cpu_fill_norm,
                                               cpu_fill_activation, cpu_fill_rope, cpu_fill_rows,
                                               cpu_fill_loss, cpu_fill_optim};
        for (size_t i = 0; i < sizeof fillers / sizeof fillers[0]; i++) fillers[i](&b);
        ready = 1;
    }
    return &b;
}
