/* cuda-emu runtime: runs aimc's CUDA kernels on the CPU for `make
 * test-cuda-emu` (tests/cuda/emu/README.md).
 *
 *  - Threads are fibers with their own stacks (a guard page below each),
 *    switched by a few instructions of assembly on x86-64 (ucontext
 *    elsewhere). One block runs at a time on the calling OS thread.
 *  - Scheduling: a fiber runs until it reaches a barrier or returns. After
 *    every barrier the runnable fibers are resumed in a fresh random order,
 *    and the blocks of a grid run in a random order (seed: environment
 *    variable AIMC_CUDA_EMU_SEED, default 1; every launch draws anew).
 *  - Undefined behaviour that the emulator sees stops the process with one
 *    line: __syncthreads reached at different lines, a thread returning
 *    while others wait at __syncthreads, shuffles with missing or diverged
 *    lanes, deadlock, a launch configuration a GPU refuses (that one becomes
 *    cudaGetLastError's error, as on a GPU), device copies that leave their
 *    allocation, and kernel writes past either end of an allocation (256-byte
 *    red zones checked after every launch).
 *  - Device memory is host memory, filled with 0xff bytes (NaN as floats) when
 *    allocated, so reads of never-written memory show up as NaN.
 *  - cuBLASLt's matmul is a float64 loop over cuBLASLt's documented
 *    column-major semantics (op(A) m x k, op(B) k x n, D = alpha op(A) op(B)
 *    + beta C + bias[row]). Its heuristic refuses pointers aligned to less
 *    than 16 bytes, so aimc's fallback path runs in the tests too.
 *
 * Not emulated: timing, memory-ordering weaker than sequential consistency,
 * the limits on registers and static shared memory, NCCL (nccl_stub.cpp). */
#include "emu_internal.h"

#include <algorithm>
#include <map>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>
#include <vector>
#if !defined(__x86_64__)
#include <ucontext.h>
#endif

uint3 emu_thread_idx, emu_block_idx;
dim3 emu_block_dim, emu_grid_dim;

void emu_die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("cuda-emu: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    fflush(stderr);
    abort();
}

/* ---- random order ---------------------------------------------------------- */

static uint64_t g_rng;
static uint64_t next_random(void) {
    if (!g_rng) {
        const char *s = getenv("AIMC_CUDA_EMU_SEED");
        g_rng = 0x9e3779b97f4a7c15ull * (s && *s ? strtoull(s, NULL, 10) + 1 : 2);
    }
    g_rng ^= g_rng << 13, g_rng ^= g_rng >> 7, g_rng ^= g_rng << 17; /* xorshift64 */
    return g_rng;
}
static void shuffle(std::vector<int> &v) {
    for (size_t i = v.size(); i > 1; i--) std::swap(v[i - 1], v[next_random() % i]);
}

/* ---- fibers ------------------------------------------------------------------ */

enum { STACK_BYTES = 256 << 10, MAX_THREADS = 1024, WARP = 32 };

#if defined(__x86_64__)
/* emu_ctx_switch(save, load): pushes the callee-saved registers, stores the
 * stack pointer in *save, switches to stack `load` and pops its registers.
 * A new fiber's stack holds zeros, the entry in r13, its argument in r12 and
 * emu_ctx_start as the return address. */
extern "C" void emu_ctx_switch(void **save, void *load);
extern "C" void emu_ctx_start(void);
asm(R"(
    .text
    .globl emu_ctx_switch
    .type emu_ctx_switch, @function
emu_ctx_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size emu_ctx_switch, .-emu_ctx_switch
    .globl emu_ctx_start
    .type emu_ctx_start, @function
emu_ctx_start:
    movq %r12, %rdi
    andq $-16, %rsp
    callq *%r13
    ud2
    .size emu_ctx_start, .-emu_ctx_start
)");

struct raw_context {
    void *sp;
};
static void raw_init(raw_context *c, char *stack_top, void (*entry)(void *), void *arg) {
    uint64_t *sp = (uint64_t *)((uintptr_t)stack_top & ~(uintptr_t)15) - 8;
    memset(sp, 0, 8 * sizeof *sp);
    sp[2] = (uint64_t)entry;         /* r13 */
    sp[3] = (uint64_t)arg;           /* r12 */
    sp[6] = (uint64_t)emu_ctx_start; /* return address of the first switch */
    c->sp = sp;
}
static void raw_switch(raw_context *from, raw_context *to) { emu_ctx_switch(&from->sp, to->sp); }
#else
struct raw_context {
    ucontext_t uc;
};
static void raw_init(raw_context *c, char *stack_top, void (*entry)(void *), void *arg) {
    getcontext(&c->uc);
    c->uc.uc_stack.ss_sp = stack_top - STACK_BYTES;
    c->uc.uc_stack.ss_size = STACK_BYTES;
    c->uc.uc_link = NULL;
    makecontext(&c->uc, (void (*)(void))entry, 1, arg); /* one pointer-sized argument */
}
static void raw_switch(raw_context *from, raw_context *to) { swapcontext(&from->uc, &to->uc); }
#endif

/* Under AddressSanitizer every switch is announced, so that it knows which
 * stack is live (fiber stacks are reused: their shadow is cleared first). */
#if defined(__SANITIZE_ADDRESS__)
#define EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define EMU_ASAN 1
#endif
#endif
#ifdef EMU_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

struct context {
    raw_context raw;
    const void *stack_bottom; /* the scheduler's is learnt at the first switch */
    size_t stack_size;
    void *fake_stack;
};

static void context_init(context *c, char *stack_top, void (*entry)(void *)) {
    c->stack_bottom = stack_top - STACK_BYTES, c->stack_size = STACK_BYTES;
#ifdef EMU_ASAN
    ASAN_UNPOISON_MEMORY_REGION((void *)c->stack_bottom, c->stack_size);
#endif
    raw_init(&c->raw, stack_top, entry, NULL);
}

/* from_done: `from` never runs again (its fake stack can go). */
static void context_switch(context *from, context *to, bool from_done) {
#ifdef EMU_ASAN
    __sanitizer_start_switch_fiber(from_done ? NULL : &from->fake_stack, to->stack_bottom,
                                   to->stack_size);
#else
    (void)from_done;
#endif
    raw_switch(&from->raw, &to->raw);
#ifdef EMU_ASAN
    __sanitizer_finish_switch_fiber(from->fake_stack, NULL, NULL);
#endif
}

/* First thing on a new fiber: completes the switch that started it and
 * learns the scheduler's stack. */
static void context_started(context *scheduler) {
#ifdef EMU_ASAN
    __sanitizer_finish_switch_fiber(NULL, &scheduler->stack_bottom, &scheduler->stack_size);
#else
    (void)scheduler;
#endif
}

enum fiber_state { RUNNABLE, AT_BLOCK_BARRIER, AT_WARP_BARRIER, DONE };

struct fiber {
    context ctx;
    uint3 tid;
    int warp, lane;
    fiber_state state;
};

/* A barrier: how many of its members are alive and have arrived, and where
 * the first one arrived (the others must arrive at the same place). */
struct barrier {
    int alive, arrived;
    const char *file;
    int line;
};

enum { SLOT_WORDS = 6 }; /* the most a lane hands in: an mma's a[4] and b[2] */
struct warp_state {
    barrier bar;
    unsigned generation; /* exchanges completed */
    uint32_t slot[2][WARP][SLOT_WORDS]; /* double-buffered by generation */
};

/* The running block. */
static struct {
    const char *kernel;
    fiber fibers[MAX_THREADS];
    warp_state warps[MAX_THREADS / WARP];
    int nthreads, current;
    barrier bar;
    context scheduler;
    void (*body)(void *);
    void *body_arg;
    unsigned char *smem; /* dynamic shared memory: malloc'd at its exact size per launch */
    size_t smem_bytes;
    bool running;
} B;

static char *g_stacks[MAX_THREADS];

static char *stack_top(int i) {
    if (!g_stacks[i]) {
        size_t bytes = STACK_BYTES + 4096;
        void *m = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                       -1, 0);
        if (m == MAP_FAILED) emu_die("cannot map a %d-byte fiber stack", STACK_BYTES);
        if (mprotect(m, 4096, PROT_NONE)) emu_die("cannot protect a fiber stack's guard page");
        g_stacks[i] = (char *)m;
    }
    return g_stacks[i] + STACK_BYTES + 4096;
}

static fiber &current(void) { return B.fibers[B.current]; }

static void where(char *buf, size_t n) {
    const fiber &f = current();
    snprintf(buf, n, "%s block (%u,%u,%u) thread (%u,%u,%u)", B.kernel, emu_block_idx.x,
             emu_block_idx.y, emu_block_idx.z, f.tid.x, f.tid.y, f.tid.z);
}

static void yield_to_scheduler(void) { context_switch(&current().ctx, &B.scheduler, false); }

static void release_block_barrier(void) {
    for (int i = 0; i < B.nthreads; i++)
        if (B.fibers[i].state == AT_BLOCK_BARRIER) B.fibers[i].state = RUNNABLE;
    B.bar.arrived = 0;
}

static void release_warp_barrier(warp_state &w, int warp) {
    for (int l = 0; l < WARP; l++) {
        fiber &f = B.fibers[warp * WARP + l];
        if (f.state == AT_WARP_BARRIER) f.state = RUNNABLE;
    }
    w.bar.arrived = 0;
    w.generation++;
}

/* Records the arrival of the current fiber at b (which place: file:line). */
static void arrive(barrier &b, const char *file, int line, const char *what) {
    if (b.arrived == 0) {
        b.file = file, b.line = line;
    } else if (b.line != line || strcmp(b.file, file)) {
        char w[160];
        where(w, sizeof w);
        emu_die("%s: reached %s at %s:%d while others wait at %s:%d (undefined in CUDA)", w, what, file,
            line, b.file, b.line);
    }
    b.arrived++;
}

void emu_syncthreads(const char *file, int line) {
    if (!B.running) emu_die("__syncthreads called outside a kernel (%s:%d)", file, line);
    arrive(B.bar, file, line, "__syncthreads");
    current().state = AT_BLOCK_BARRIER;
    if (B.bar.arrived == B.bar.alive) release_block_barrier();
    yield_to_scheduler();
}

/* A warp-wide exchange: the current lane hands in `words`, waits until all
 * 32 lanes of its warp have (at the same place), and gets every lane's
 * words. Double buffering by generation makes one barrier enough: a lane
 * can only overwrite this generation's buffer two exchanges later, after
 * every lane has passed the next one. */
static const uint32_t (*warp_exchange(const uint32_t *words, int n, const char *what,
                                      const char *file, int line))[SLOT_WORDS] {
    fiber &f = current();
    warp_state &w = B.warps[f.warp];
    if (w.bar.alive != WARP) {
        char at[160];
        where(at, sizeof at);
        emu_die("%s: %s at %s:%d in a warp with %d live lanes (undefined in CUDA)", at, what, file,
                line, w.bar.alive);
    }
    unsigned buf = w.generation & 1;
    memcpy(w.slot[buf][f.lane], words, n * sizeof *words);
    arrive(w.bar, file, line, what);
    f.state = AT_WARP_BARRIER;
    if (w.bar.arrived == WARP) release_warp_barrier(w, f.warp);
    yield_to_scheduler();
    return w.slot[buf];
}

uint64_t emu_shfl_xor(unsigned mask, uint64_t bits, int lane_mask, int width, const char *file,
                      int line) {
    if (mask != 0xffffffffu || width != WARP || lane_mask < 0 || lane_mask >= WARP) {
        char at[160];
        where(at, sizeof at);
        emu_die("%s: shuffle with mask %#x, width %d, lane mask %d at %s:%d (the emulator knows "
                "full-mask, full-width ones)",
                at, mask, width, lane_mask, file, line);
    }
    uint32_t words[2] = {(uint32_t)bits, (uint32_t)(bits >> 32)};
    const uint32_t(*all)[SLOT_WORDS] = warp_exchange(words, 2, "a full-mask shuffle", file, line);
    const uint32_t *src = all[current().lane ^ lane_mask];
    return (uint64_t)src[0] | (uint64_t)src[1] << 32;
}

/* Element (half) of a lane's bf16 pair register, as a float. */
static float bf16_half(uint32_t reg, int half) {
    return __uint_as_float(half ? reg & 0xffff0000u : reg << 16);
}

void emu_mma_m16n8k16_bf16(float d[4], const uint32_t a[4], const uint32_t b[2], const char *file,
                           int line) {
    uint32_t words[SLOT_WORDS] = {a[0], a[1], a[2], a[3], b[0], b[1]};
    const uint32_t(*all)[SLOT_WORDS] = warp_exchange(words, SLOT_WORDS, "an mma", file, line);
    int g = current().lane / 4, t = current().lane % 4;
    for (int e = 0; e < 4; e++) {
        int row = g + (e >= 2 ? 8 : 0), col = 2 * t + (e & 1);
        double acc = 0.0;
        for (int k = 0; k < 16; k++) {
            /* A[row][k]: lane 4 (row % 8) + (k % 8) / 2, register (row >= 8) + 2 (k >= 8) */
            const uint32_t *al = all[4 * (row % 8) + (k % 8) / 2];
            float av = bf16_half(al[(row >= 8) + 2 * (k >= 8)], k & 1);
            /* B[k][col]: lane 4 col + (k % 8) / 2, register 4 + (k >= 8) */
            const uint32_t *bl = all[4 * col + (k % 8) / 2];
            float bv = bf16_half(bl[4 + (k >= 8)], k & 1);
            acc += (double)av * bv;
        }
        d[e] = (float)((double)d[e] + acc);
    }
}

void *emu_dynamic_smem(void) { return B.smem; }

extern "C" int emu_under_asan(void) {
#ifdef EMU_ASAN
    return 1;
#else
    return 0;
#endif
}

static void fiber_main(void *arg) {
    (void)arg;
    context_started(&B.scheduler);
    B.body(B.body_arg);
    fiber &f = current();
    warp_state &w = B.warps[f.warp];
    char at[160];
    where(at, sizeof at);
    if (w.bar.arrived)
        emu_die("%s returned while lanes of its warp wait in the shuffle at %s:%d", at, w.bar.file,
            w.bar.line);
    if (B.bar.arrived)
        emu_die("%s returned while other threads wait at __syncthreads at %s:%d (undefined in CUDA)",
            at, B.bar.file, B.bar.line);
    f.state = DONE;
    B.bar.alive--;
    w.bar.alive--;
    context_switch(&f.ctx, &B.scheduler, true);
    emu_die("a finished fiber was resumed");
}

static void report_deadlock(void) {
    int at_block = 0, at_warp = 0;
    for (int i = 0; i < B.nthreads; i++) {
        at_block += B.fibers[i].state == AT_BLOCK_BARRIER;
        at_warp += B.fibers[i].state == AT_WARP_BARRIER;
    }
    emu_die("%s block (%u,%u,%u): deadlock: %d threads wait at __syncthreads (%s:%d), %d in shuffles",
        B.kernel, emu_block_idx.x, emu_block_idx.y, emu_block_idx.z, at_block,
        B.bar.file ? B.bar.file : "-", B.bar.line, at_warp);
}

static void run_block(const dim3 &block) {
    B.nthreads = (int)(block.x * block.y * block.z);
    B.bar = barrier{B.nthreads, 0, NULL, 0};
    for (int w = 0; w * WARP < B.nthreads; w++) {
        B.warps[w].bar = barrier{std::min((int)WARP, B.nthreads - w * WARP), 0, NULL, 0};
        B.warps[w].generation = 0;
    }
    for (int i = 0; i < B.nthreads; i++) {
        fiber &f = B.fibers[i];
        f.tid = uint3{i % block.x, i / block.x % block.y, i / (block.x * block.y)};
        f.warp = i / WARP, f.lane = i % WARP;
        f.state = RUNNABLE;
        context_init(&f.ctx, stack_top(i), fiber_main);
    }
    std::vector<int> order;
    order.reserve(B.nthreads);
    while (B.bar.alive > 0) {
        order.clear();
        for (int i = 0; i < B.nthreads; i++)
            if (B.fibers[i].state == RUNNABLE) order.push_back(i);
        if (order.empty()) report_deadlock();
        shuffle(order);
        for (int i : order) {
            if (B.fibers[i].state != RUNNABLE) continue;
            B.current = i;
            emu_thread_idx = B.fibers[i].tid;
            context_switch(&B.scheduler, &B.fibers[i].ctx, false);
        }
    }
}

/* ---- device memory ------------------------------------------------------------- */

enum { REDZONE = 256 };
static const unsigned char REDZONE_BYTE = 0xa5;

struct allocation {
    size_t bytes;
    const char *how; /* cudaMalloc or cudaMallocAsync */
};
static std::map<uintptr_t, allocation> g_allocs; /* by the pointer handed out */
static size_t g_live_bytes;
static const size_t TOTAL_BYTES = (size_t)80 << 30;

static size_t padded(size_t bytes) { return (bytes + 255) / 256 * 256 + REDZONE; }

/* Under ASan the red zones are poisoned instead: any access to them stops
 * the process at the kernel's line, reads included. */
static void poison_redzones(unsigned char *p, size_t bytes, bool poison) {
#ifdef EMU_ASAN
    size_t hi = padded(bytes) - bytes;
    if (poison) {
        ASAN_POISON_MEMORY_REGION(p - REDZONE, REDZONE);
        ASAN_POISON_MEMORY_REGION(p + bytes, hi);
    } else {
        ASAN_UNPOISON_MEMORY_REGION(p - REDZONE, REDZONE + bytes + hi);
    }
#else
    (void)p, (void)bytes, (void)poison;
#endif
}

static void check_redzones(uintptr_t p, const allocation &a, const char *after) {
#ifdef EMU_ASAN
    return; /* poisoned: ASan reports the access itself */
#endif
    const unsigned char *lo = (const unsigned char *)p - REDZONE, *hi = (const unsigned char *)p + a.bytes;
    size_t hi_len = padded(a.bytes) - a.bytes;
    for (size_t i = 0; i < REDZONE; i++)
        if (lo[i] != REDZONE_BYTE)
            emu_die("%s wrote %zu bytes before the start of a %zu-byte device allocation", after,
                REDZONE - i, a.bytes);
    for (size_t i = hi_len; i-- > 0;)
        if (hi[i] != REDZONE_BYTE)
            emu_die("%s wrote past the end of a %zu-byte device allocation (up to byte %zu after it)",
                    after, a.bytes, i);
}

static void check_all_redzones(const char *after) {
    for (auto &kv : g_allocs) check_redzones(kv.first, kv.second, after);
}

static cudaError_t device_alloc(void **p, size_t bytes, const char *how) {
    if (!p) return cudaErrorInvalidValue;
    if (g_live_bytes + bytes > TOTAL_BYTES) return cudaErrorMemoryAllocation;
    unsigned char *m = (unsigned char *)aligned_alloc(256, REDZONE + padded(bytes));
    if (!m) return cudaErrorMemoryAllocation;
    memset(m, REDZONE_BYTE, REDZONE + padded(bytes));
    memset(m + REDZONE, 0xff, bytes); /* uninitialised device memory reads as NaN */
    *p = m + REDZONE;
    poison_redzones(m + REDZONE, bytes, true);
    g_allocs[(uintptr_t)*p] = allocation{bytes, how};
    g_live_bytes += bytes;
    return cudaSuccess;
}

static cudaError_t device_free(void *p) {
    if (!p) return cudaSuccess;
    auto it = g_allocs.find((uintptr_t)p);
    if (it == g_allocs.end()) emu_die("cudaFree of %p, which is not a device allocation", p);
    check_redzones(it->first, it->second, "a kernel");
    g_live_bytes -= it->second.bytes;
    poison_redzones((unsigned char *)p, it->second.bytes, false);
    g_allocs.erase(it);
    free((unsigned char *)p - REDZONE);
    return cudaSuccess;
}

/* Dies unless [p, p + bytes) lies inside one device allocation. */
void emu_require_device(const void *p, size_t bytes, const char *what) {
    uintptr_t u = (uintptr_t)p;
    auto it = g_allocs.upper_bound(u);
    if (it != g_allocs.begin()) {
        --it;
        if (u >= it->first && u + bytes <= it->first + it->second.bytes) return;
    }
    emu_die("%s: %zu bytes at %p are not inside one device allocation", what, bytes, p);
}

/* ---- launches ---------------------------------------------------------------------- */

static cudaError_t g_last_error;
static std::map<const void *, int> g_max_dynamic_smem; /* cudaFuncSetAttribute */
static struct emu_stream {
    int unused;
} g_stream_object;
static const size_t SMEM_DEFAULT = 48 << 10, SMEM_OPTIN = 227 << 10; /* as on an H100 */

static bool bad_config(const emu_cfg &c, const void *kernel) {
    const dim3 &g = c.grid, &b = c.block;
    if (!g.x || !g.y || !g.z || !b.x || !b.y || !b.z) return true;
    if (b.x > 1024 || b.y > 1024 || b.z > 64 || (uint64_t)b.x * b.y * b.z > MAX_THREADS)
        return true;
    if (g.x > 0x7fffffffu || g.y > 65535 || g.z > 65535) return true;
    if (c.smem > SMEM_DEFAULT) {
        auto it = g_max_dynamic_smem.find(kernel);
        if (it == g_max_dynamic_smem.end() || c.smem > (size_t)it->second) return true;
    }
    return false;
}

void emu_run(const char *name, const void *kernel, const emu_cfg &cfg, void (*body)(void *),
             void *ctx) {
    if (B.running) emu_die("%s launched from inside kernel %s", name, B.kernel);
    if (cfg.stream && cfg.stream != &g_stream_object)
        emu_die("%s launched on a stream that cudaStreamCreateWithFlags did not make", name);
    if (bad_config(cfg, kernel)) {
        g_last_error = cfg.smem > SMEM_DEFAULT ? cudaErrorInvalidValue : cudaErrorInvalidConfiguration;
        return;
    }
    B.kernel = name, B.body = body, B.body_arg = ctx, B.running = true;
    emu_block_dim = cfg.block, emu_grid_dim = cfg.grid;
    free(B.smem);
    B.smem = (unsigned char *)malloc(cfg.smem ? cfg.smem : 1);
    B.smem_bytes = cfg.smem;
    uint64_t nblocks = (uint64_t)cfg.grid.x * cfg.grid.y * cfg.grid.z;
    if (nblocks > (1u << 26)) emu_die("%s: a grid of %llu blocks is too large to emulate", name,
                                      (unsigned long long)nblocks);
    std::vector<int> order(nblocks);
    for (uint64_t i = 0; i < nblocks; i++) order[i] = (int)i;
    shuffle(order);
    for (int i : order) {
        emu_block_idx = uint3{i % cfg.grid.x, i / cfg.grid.x % cfg.grid.y,
                              i / (cfg.grid.x * cfg.grid.y)};
        memset(B.smem, 0xff, B.smem_bytes);
        run_block(cfg.block);
    }
    B.running = false;
    char after[200];
    snprintf(after, sizeof after, "kernel %s", name);
    check_all_redzones(after);
}

/* ---- NCCL ---------------------------------------------------------------------------------- */

/* Unless AIMC_NCCL_LIB is set, point it at the emulator's NCCL
 * (libnccl-emu.so beside the binary, or one folder up for the test
 * binaries): the system's libnccl would look for a real GPU. */
__attribute__((constructor)) static void choose_fake_nccl(void) {
    const char *set = getenv("AIMC_NCCL_LIB");
    if (set && *set) return;
    char exe[4096], path[4200];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return;
    exe[n] = 0;
    char *slash = strrchr(exe, '/');
    if (!slash) return;
    *slash = 0;
    const char *const candidates[] = {"%s/libnccl-emu.so", "%s/../libnccl-emu.so"};
    for (const char *fmt : candidates) {
        snprintf(path, sizeof path, fmt, exe);
        if (access(path, R_OK) == 0) {
            setenv("AIMC_NCCL_LIB", path, 1);
            return;
        }
    }
}

/* ---- runtime API ----------------------------------------------------------------------- */

extern "C" {

const char *cudaGetErrorString(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorNotReady: return "device not ready";
    }
    return "unknown error";
}

const char *cudaGetErrorName(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorNotReady: return "cudaErrorNotReady";
    }
    return "cudaErrorUnknown";
}

cudaError_t cudaGetLastError(void) {
    cudaError_t e = g_last_error;
    g_last_error = cudaSuccess;
    return e;
}

/* Two devices, so that multi-rank runs give each rank its own (they share
 * the one emulated memory and properties). */
enum { DEVICES = 2 };

cudaError_t cudaGetDeviceCount(int *count) {
    *count = DEVICES;
    return cudaSuccess;
}

/* As the CUDA 13.0 toolkit this emulates. */
cudaError_t cudaRuntimeGetVersion(int *version) {
    *version = 13000;
    return cudaSuccess;
}
cudaError_t cudaDriverGetVersion(int *version) { return cudaRuntimeGetVersion(version); }

cudaError_t cudaSetDevice(int dev) {
    return dev >= 0 && dev < DEVICES ? cudaSuccess : cudaErrorInvalidDevice;
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp *prop, int dev) {
    if (dev < 0 || dev >= DEVICES) return cudaErrorInvalidDevice;
    memset(prop, 0, sizeof *prop);
    snprintf(prop->name, sizeof prop->name, "cuda-emu (CPU emulation)");
    prop->major = 9, prop->minor = 0;
    prop->multiProcessorCount = 2; /* few blocks: grid-stride loops go round */
    prop->sharedMemPerBlockOptin = SMEM_OPTIN;
    prop->totalGlobalMem = TOTAL_BYTES;
    return cudaSuccess;
}

cudaError_t cudaFuncGetAttributes(cudaFuncAttributes *attr, const void *kernel) {
    if (!attr || !kernel) return cudaErrorInvalidValue;
    memset(attr, 0, sizeof *attr);
    attr->maxThreadsPerBlock = MAX_THREADS;
    return cudaSuccess;
}

cudaError_t cudaFuncSetAttribute(const void *kernel, cudaFuncAttribute attr, int value) {
    if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize || value < 0 ||
        (size_t)value > SMEM_OPTIN)
        return cudaErrorInvalidValue;
    g_max_dynamic_smem[kernel] = value;
    return cudaSuccess;
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags) {
    (void)flags;
    *s = &g_stream_object;
    return cudaSuccess;
}

/* Work runs when it is queued, so every sync only checks the red zones. */
cudaError_t cudaStreamSynchronize(cudaStream_t s) {
    (void)s;
    check_all_redzones("a kernel");
    return cudaSuccess;
}
cudaError_t cudaStreamQuery(cudaStream_t s) { return cudaStreamSynchronize(s); }
cudaError_t cudaDeviceSynchronize(void) { return cudaStreamSynchronize(NULL); }

cudaError_t cudaDeviceGetDefaultMemPool(cudaMemPool_t *pool, int dev) {
    *pool = NULL;
    return dev >= 0 && dev < DEVICES ? cudaSuccess : cudaErrorInvalidDevice;
}
cudaError_t cudaMemPoolSetAttribute(cudaMemPool_t pool, cudaMemPoolAttr attr, void *value) {
    (void)pool, (void)attr, (void)value;
    return cudaSuccess;
}

cudaError_t cudaMalloc(void **p, size_t bytes) { return device_alloc(p, bytes, "cudaMalloc"); }
cudaError_t cudaMallocAsync(void **p, size_t bytes, cudaStream_t s) {
    (void)s;
    return device_alloc(p, bytes, "cudaMallocAsync");
}
cudaError_t cudaFree(void *p) { return device_free(p); }
cudaError_t cudaFreeAsync(void *p, cudaStream_t s) {
    (void)s;
    return device_free(p);
}

cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total_bytes) {
    *free_bytes = TOTAL_BYTES - g_live_bytes;
    *total_bytes = TOTAL_BYTES;
    return cudaSuccess;
}

cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind) {
    if (!bytes) return cudaSuccess;
    if (kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice)
        emu_require_device(dst, bytes, "cudaMemcpy destination");
    if (kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice)
        emu_require_device(src, bytes, "cudaMemcpy source");
    if (kind == cudaMemcpyDefault || kind == cudaMemcpyHostToHost)
        emu_die("cudaMemcpy kind %d is not used by aimc", (int)kind);
    memmove(dst, src, bytes);
    return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t s) {
    (void)s;
    return cudaMemcpy(dst, src, bytes, kind);
}

cudaError_t cudaMemset(void *p, int value, size_t bytes) {
    if (!bytes) return cudaSuccess;
    emu_require_device(p, bytes, "cudaMemset");
    memset(p, value, bytes);
    return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void *p, int value, size_t bytes, cudaStream_t s) {
    (void)s;
    return cudaMemset(p, value, bytes);
}

} /* extern "C" */
