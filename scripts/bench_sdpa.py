#!/usr/bin/env python3
"""The comparison point for aimc's attention kernels in `make bench`: PyTorch's
scaled_dot_product_attention with the cuDNN backend (and FlashAttention-2,
PyTorch's own), at the shapes tests/cuda/bench.c times, bf16, timed the way
aimc-bench times (one warm-up, then calls for about 0.2 s between two
synchronisations, launch overhead included).

    python3 scripts/bench_sdpa.py [--device cuda|cpu] > sdpa.csv

Writes CSV lines `backend,b,t,h,hd,causal,fwd_s,bwd_s` (seconds per call;
bwd_s is forward+backward minus forward) that aimc-bench reads (its second
argument) to put each backend next to aimc's kernel in the same table. A
backend that refuses a shape is left out, with a note on stderr.
--device cpu (PyTorch's math backend, tiny shapes) only checks the script.
"""
import argparse
import sys
import time

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

# (b, t, h, hd, causal): keep in step with bench_attention() in tests/cuda/bench.c
SHAPES = [(1, 512, 32, 128, 1), (1, 1024, 32, 128, 1), (1, 2048, 32, 128, 1),
          (8, 577, 16, 64, 0), (1, 2048, 32, 80, 1)]
CPU_SHAPES = [(1, 33, 2, 64, 1), (2, 17, 2, 80, 0)]


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def seconds_per_call(fn, device, budget=0.2):
    fn()  # warm-up
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    once = max(time.perf_counter() - t0, 1e-6)
    calls = max(1, min(10000, int(budget / once)))
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    sync(device)
    return (time.perf_counter() - t0) / calls


def time_shape(shape, device, dtype):
    b, t, h, hd, causal = shape
    q, k, v = (torch.empty(b, h, t, hd, device=device, dtype=dtype).uniform_(-1, 1).requires_grad_()
               for _ in range(3))
    dout = torch.empty(b, h, t, hd, device=device, dtype=dtype).uniform_(-1, 1)

    def fwd():
        with torch.no_grad():
            F.scaled_dot_product_attention(q, k, v, is_causal=bool(causal))

    def fwd_bwd():
        out = F.scaled_dot_product_attention(q, k, v, is_causal=bool(causal))
        torch.autograd.grad(out, (q, k, v), dout)

    f = seconds_per_call(fwd, device)
    return f, max(seconds_per_call(fwd_bwd, device) - f, 0.0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    a = ap.parse_args()
    if a.device == "cuda" and not torch.cuda.is_available():
        sys.exit("bench_sdpa.py: error: no CUDA device visible to PyTorch")
    if a.device == "cuda":
        backends = [("cudnn", SDPBackend.CUDNN_ATTENTION), ("flash2", SDPBackend.FLASH_ATTENTION)]
        shapes, dtype = SHAPES, torch.bfloat16
    else:
        backends, shapes, dtype = [("math", SDPBackend.MATH)], CPU_SHAPES, torch.float32
    print("backend,b,t,h,hd,causal,fwd_s,bwd_s")
    for name, backend in backends:
        for shape in shapes:
            try:
                with sdpa_kernel(backend):
                    fwd_s, bwd_s = time_shape(shape, a.device, dtype)
            except RuntimeError as e:  # the backend does not take this shape
                print(f"bench_sdpa.py: {name} skipped {shape}: {str(e).splitlines()[0]}", file=sys.stderr)
                continue
            print(",".join([name] + [str(x) for x in shape] + [f"{fwd_s:.9g}", f"{bwd_s:.9g}"]), flush=True)


if __name__ == "__main__":
    main()
