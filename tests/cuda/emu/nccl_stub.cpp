/* cuda-emu: the emulated build has no NCCL. A one-rank job never opens it
 * (dist_nccl_load says why); dist_nccl_copy, which a one-rank allgather uses,
 * is a device copy as in kernels/cuda/dist_nccl.cu. */
#include "emu_internal.h"
#include "../../../host/dist_impl.h"
#include <stdio.h>

extern "C" {
int dist_nccl_load(char *err, size_t errlen) {
    if (err && errlen) snprintf(err, errlen, "the CPU emulation of CUDA (cuda-emu) has no NCCL");
    return 0;
}
int dist_nccl_unique_id(unsigned char id[128], char *err, size_t errlen) {
    (void)id;
    return dist_nccl_load(err, errlen);
}
void dist_nccl_open(int rank, int world, const unsigned char id[128]) {
    (void)rank, (void)world, (void)id;
    emu_die("dist_nccl_open: no NCCL in the CPU emulation of CUDA");
}
int dist_nccl_is_open(void) { return 0; }
void dist_nccl_allreduce(void *buf, int64_t count, dist_dtype dt) {
    (void)buf, (void)count, (void)dt;
    emu_die("dist_nccl_allreduce: no NCCL in the CPU emulation of CUDA");
}
void dist_nccl_allgatherv(const void *send, void *recv, const int64_t *counts, dist_dtype dt) {
    (void)send, (void)recv, (void)counts, (void)dt;
    emu_die("dist_nccl_allgatherv: no NCCL in the CPU emulation of CUDA");
}
void dist_nccl_broadcast(void *buf, int64_t count, dist_dtype dt, int root) {
    (void)buf, (void)count, (void)dt, (void)root;
    emu_die("dist_nccl_broadcast: no NCCL in the CPU emulation of CUDA");
}
void dist_nccl_copy(void *dst, const void *src, size_t bytes) {
    if (bytes && dst != src) cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice);
}
void dist_nccl_abort(void) {}
void dist_nccl_close(void) {}
}
