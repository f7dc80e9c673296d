/* A bump allocator over one backend allocation: tensors for a step come
 * from here and are all released at once by arena_reset (no malloc in hot
 * loops). */
#ifndef AIMC_ARENA_H
#define AIMC_ARENA_H
#include "../kernels/backend.h"

typedef struct arena {
    const backend *be;
    char *base;
    size_t cap, used, peak;
} arena;

void arena_init(arena *a, const backend *be, size_t bytes);
void arena_free(arena *a);
/* A new tensor of the given shape; contents undefined. Aborts with the sizes
 * when the arena is full. */
tensor arena_tensor(arena *a, dtype dt, int ndim, const int64_t *shape);
/* Convenience: arena_new(a, DT_F32, rows, cols) (1 to 4 sizes). */
#define arena_new(a, dt, ...)                                  \
    arena_tensor((a), (dt), (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), \
                 (int64_t[]){__VA_ARGS__})
void arena_reset(arena *a);
#endif
