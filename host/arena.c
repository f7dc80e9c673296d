#include "arena.h"
#include "../kernels/check.h"

#define ARENA_ALIGN 256 /* keeps every tensor aligned for 16-byte vector loads on any backend */

void arena_init(arena *a, const backend *be, size_t bytes) {
    a->be = be;
    a->base = be->alloc(bytes);
    a->cap = bytes;
    a->used = a->peak = 0;
}

void arena_free(arena *a) {
    if (a->base) a->be->release(a->base);
    a->base = NULL;
    a->cap = a->used = 0;
}

tensor arena_tensor(arena *a, dtype dt, int ndim, const int64_t *shape) {
    tensor t = tensor_wrap(NULL, dt, a->be, ndim, shape);
    size_t bytes = (tensor_bytes(&t) + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN;
    if (bytes > a->cap - a->used)
        aimc_die("%s arena full: need %zu more bytes, %zu of %zu used (raise the arena size)",
                 a->be->name, bytes, a->used, a->cap);
    t.data = a->base + a->used;
    a->used += bytes;
    if (a->used > a->peak) a->peak = a->used;
    return t;
}

void arena_reset(arena *a) { a->used = 0; }
