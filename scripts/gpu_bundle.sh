#!/usr/bin/env bash
# Builds what a GPU session runs, here on the development machine (which has
# nvcc but no GPU), into one folder small enough for the device tool to carry:
#
#   bash scripts/gpu_bundle.sh            # -> build-gpu/bundle/ (about 35 MB)
#
# The bundle holds aimc, aimc-bench, every CUDA test (tests-cuda/), and in
# lib/ the shared libraries the GPU machine's image lacks (JSON, regex,
# image decoders, zstd): under the device tool's 64 MiB carry limit. MPI is left out (the dist layer then uses its TCP transport), and
# cuBLASLt is the image's own CUDA 13 (rpath /usr/local/cuda/lib64;
# scripts/gpu_check.sh also looks in the pip wheel). Then, through the
# device tool, in one call:
#
#   run(command="bash scripts/gpu_check.sh", carry=["build-gpu/bundle"])
#
# and commit the docs/perf-<gpu>.md it returns under $OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=build-gpu
command -v nvcc >/dev/null || [ -x /usr/local/cuda/bin/nvcc ] || {
  echo "gpu_bundle: nvcc not found: the bundle needs the CUDA toolkit" >&2; exit 1; }
# Hopper only (the lent machines are H100 / H200): one device image per
# binary instead of two keeps the bundle under the carry limit.
make BUILD=$BUILD CUDA=1 MPI_CFLAGS= MPI_LIBS= CUDA_ARCH="-gencode arch=compute_90a,code=sm_90a" -j"$(nproc)" \
  $BUILD/aimc $BUILD/bench/aimc-bench \
  $(ls tests/cuda/test_*.c | sed -E "s|tests/cuda/(.*)\.c|$BUILD/tests-cuda/\1|")
BUNDLE=$BUILD/bundle
rm -rf $BUNDLE && mkdir -p $BUNDLE/lib $BUNDLE/tests-cuda
cp $BUILD/aimc $BUILD/bench/aimc-bench $BUNDLE/
for t in $BUILD/tests-cuda/*; do [ -x "$t" ] && cp "$t" $BUNDLE/tests-cuda/; done
# DWARF off (symbols stay, for backtraces): the carry limit is 64 MiB.
strip --strip-debug $BUNDLE/aimc $BUNDLE/aimc-bench $BUNDLE/tests-cuda/*
# Every library the binaries need from outside glibc, libstdc++/libgcc,
# libgomp and CUDA itself.
for bin in $BUNDLE/aimc $BUNDLE/aimc-bench $BUNDLE/tests-cuda/*; do ldd "$bin"; done |
  awk '$3 ~ /^\// {print $3}' | sort -u |
  grep -vE '/(libc|libm|libdl|librt|libpthread|libstdc\+\+|libgcc_s|libgomp|ld-linux[^/]*)\.so|/usr/local/cuda' |
  while read -r lib; do cp -L "$lib" $BUNDLE/lib/; done
echo "gpu_bundle: $(du -sh $BUNDLE | cut -f1) in $BUNDLE/; libraries carried: $(ls $BUNDLE/lib | tr '\n' ' ')"
