# aimc — one Makefile.  make | make run | make test | make test-cuda | make bench | make clean
# CUDA=0 builds without the CUDA backend; by default it is built when nvcc is found.

CC      ?= gcc
CFLAGS  ?= -O2 -g
CFLAGS  += -std=c11 -D_GNU_SOURCE -Wall -Wextra -fopenmp -MMD -MP
MPI_CFLAGS ?= $(shell pkg-config --cflags ompi-c 2>/dev/null)
MPI_LIBS   ?= $(shell pkg-config --libs ompi-c 2>/dev/null)
CFLAGS  += $(MPI_CFLAGS)
LDLIBS  += -lcjson -lpcre2-8 -lwebp -lturbojpeg -lpng -lzstd -lz $(MPI_LIBS) -lm -lpthread -fopenmp $(SAN)
BUILD   := build
# SAN="-fsanitize=..." instruments every C object and link (make test-asan sets it).
SAN     ?=
CFLAGS  += $(SAN)

NVCC      ?= $(shell command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
CUDA_HOME ?= $(if $(NVCC),$(patsubst %/bin/nvcc,%,$(NVCC)),/usr/local/cuda)
CUDA      ?= $(if $(NVCC),1,0)
# sm_80 (Ampere) and sm_90a (Hopper, arch-specific features); -gencode form for sm_90a.
CUDA_ARCH ?= -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90a,code=sm_90a
NVFLAGS   ?= -O3 -g -std=c++17 -lineinfo $(CUDA_ARCH) -Xcompiler -Wall,-Wextra -MMD -MP

HOST_SRC  := $(wildcard host/*.c data/*.c kernels/cpu/*.c)
LIB_OBJ   := $(patsubst %.c,$(BUILD)/%.o,$(filter-out host/main.c,$(HOST_SRC)))
CUDA_SRC  := $(wildcard kernels/cuda/*.cu)
TEST_SRC  := $(wildcard tests/test_*.c)
TESTS     := $(patsubst tests/%.c,$(BUILD)/tests/%,$(TEST_SRC))
CUDA_TEST_SRC := $(wildcard tests/cuda/test_*.c)
CUDA_TESTS    := $(patsubst tests/cuda/%.c,$(BUILD)/tests-cuda/%,$(CUDA_TEST_SRC))

# CUDA_EMU=1 (make test-cuda-emu): the kernels of kernels/cuda/ compiled as C++ by
# the host compiler and run by the CPU emulator in tests/cuda/emu/ (its README).
CUDA_EMU ?= 0
EMU_DIR  := tests/cuda/emu
ifeq ($(CUDA_EMU),1)
EMU_CXXFLAGS := -O2 -g -std=c++17 -DAIMC_CUDA_EMU -Wall -Wextra -Wno-unknown-pragmas -MMD -MP -I$(EMU_DIR)/include $(SAN)
CFLAGS  += -DAIMC_CUDA -I$(EMU_DIR)/include
LIB_OBJ += $(patsubst %.cu,$(BUILD)/%.o,$(CUDA_SRC))
LIB_OBJ += $(patsubst %.cpp,$(BUILD)/%.o,$(filter-out $(EMU_DIR)/nccl_fake.cpp,$(wildcard $(EMU_DIR)/*.cpp)))
LDLIBS  += -lstdc++
CUDA_TESTS += $(BUILD)/tests-cuda/test_emu
EMU_NCCL := $(BUILD)/libnccl-emu.so
else ifeq ($(CUDA),1)
CFLAGS  += -DAIMC_CUDA -I$(CUDA_HOME)/include
LIB_OBJ += $(patsubst %.cu,$(BUILD)/%.o,$(CUDA_SRC))
LDLIBS  += -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcublasLt -lcublas -lcudart_static -ldl -lrt -lstdc++
endif

.PHONY: all deps run test test-asan test-cuda test-cuda-emu bench clean
all: $(BUILD)/aimc

# Every compile waits for the Debian packages (also under make -j).
DEPS_STAMP := $(BUILD)/.deps-installed
$(DEPS_STAMP): third_party/packages.txt third_party/packages-optional.txt third_party/install.sh
	@bash third_party/install.sh
	@mkdir -p $(dir $@) && touch $@
deps:
	@bash third_party/install.sh

$(BUILD)/%.o: %.c | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

ifeq ($(CUDA_EMU),1)
$(BUILD)/%.o: %.cu $(EMU_DIR)/cu2cpp.sed | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	@{ echo '#line 1 "$<"'; sed -E -f $(EMU_DIR)/cu2cpp.sed $<; } > $(BUILD)/$*.emu.cpp
	$(CXX) $(EMU_CXXFLAGS) -I$(dir $<) -include $(EMU_DIR)/emu_device.h -c $(BUILD)/$*.emu.cpp -o $@

$(BUILD)/%.o: %.cpp | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CXX) $(EMU_CXXFLAGS) -c $< -o $@

# The emulator's NCCL (multi-rank runs; found next to the binaries).
$(EMU_NCCL): $(EMU_DIR)/nccl_fake.cpp $(EMU_DIR)/include/nccl.h | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CXX) $(EMU_CXXFLAGS) -fPIC -shared $< -o $@
else
$(BUILD)/%.o: %.cu | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(NVCC) $(NVFLAGS) -c $< -o $@
endif

$(BUILD)/libaimc.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/aimc: $(BUILD)/host/main.o $(BUILD)/libaimc.a
	$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

TEST_HEADERS := $(wildcard tests/*.h tests/cuda/*.h)
$(BUILD)/tests/%: tests/%.c $(TEST_HEADERS) $(BUILD)/libaimc.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $< $(BUILD)/libaimc.a -o $@ $(LDLIBS)

$(BUILD)/tests-cuda/%: tests/cuda/%.c $(TEST_HEADERS) $(BUILD)/libaimc.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $< $(BUILD)/libaimc.a -o $@ $(LDLIBS)

# The emulator's own test (emulated builds only): its driver and its kernels.
$(BUILD)/tests-cuda/test_emu: $(EMU_DIR)/test_emu.c $(BUILD)/$(EMU_DIR)/selftest_kernels.o $(TEST_HEADERS) $(BUILD)/libaimc.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $< $(BUILD)/$(EMU_DIR)/selftest_kernels.o $(BUILD)/libaimc.a -o $@ $(LDLIBS)

# The main job on the embedded default (CPU when there is no GPU).
run: deps $(BUILD)/aimc
	rm -rf $(BUILD)/run
	$(BUILD)/aimc shards synth --format mmc4 --shards 4 --docs 64 --image-size 32 --seed 1 --out $(BUILD)/run/shards
	$(BUILD)/aimc shards synth --format mmc4 --shards 1 --docs 32 --image-size 32 --seed 2 --out $(BUILD)/run/heldout
	@echo "== train the projector of the tiny LLaVA fixture (configs/tiny-llava.conf) up to step 40"
	OMP_WAIT_POLICY=passive $(BUILD)/aimc train --config configs/tiny-llava.conf --data '$(BUILD)/run/shards/*.tar' --eval-data '$(BUILD)/run/heldout/*.tar' --out $(BUILD)/run/out --until 40
	@echo "== resume from the step-40 checkpoint and finish the run"
	OMP_WAIT_POLICY=passive $(BUILD)/aimc train --config configs/tiny-llava.conf --data '$(BUILD)/run/shards/*.tar' --eval-data '$(BUILD)/run/heldout/*.tar' --out $(BUILD)/run/out --resume
	$(BUILD)/aimc export $(BUILD)/run/out --out $(BUILD)/run/projector.safetensors

test: deps $(BUILD)/aimc $(TESTS)
	@bash tests/run.sh $(BUILD)/tests

# The CPU suite under AddressSanitizer (+ LeakSanitizer) and UBSan, in its own build folder.
ASAN_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
test-asan:
	$(MAKE) BUILD=build-asan CUDA=0 SAN="$(ASAN_FLAGS)" test

test-cuda: deps $(BUILD)/aimc $(CUDA_TESTS) $(EMU_NCCL)
	@if [ "$(CUDA)$(CUDA_EMU)" = 00 ]; then echo "make test-cuda: this build has no CUDA (nvcc not found or CUDA=0)"; exit 1; fi
	@bash tests/run.sh $(BUILD)/tests-cuda

# The cuda suite on the CPU: every kernel run by the emulator (tests/cuda/emu/),
# under ASan + UBSan (device memory's red zones are poisoned: out-of-bounds
# reads and writes in kernels stop at their line).
# Then the benchmark program end to end at 1/32 of its sizes (a smoke run: it
# must finish and write its table; the numbers mean nothing).
test-cuda-emu:
	$(MAKE) BUILD=build-emu CUDA=0 CUDA_EMU=1 SAN="$(ASAN_FLAGS)" test-cuda build-emu/bench/aimc-bench
	@echo "test_cuda_ops again, cuBLASLt taking every element-aligned pointer (as on a GPU):"
	@AIMC_CUDA_EMU_LT_ALIGN=2 build-emu/tests-cuda/test_cuda_ops | tail -n 1 | grep -q ' 0 failed' \
	  || { AIMC_CUDA_EMU_LT_ALIGN=2 build-emu/tests-cuda/test_cuda_ops | grep -E '^FAIL|failed'; exit 1; }
	@mkdir -p build-emu/bench-smoke && rm -f build-emu/bench-smoke/*.md
	@AIMC_BENCH_SHRINK=32 build-emu/bench/aimc-bench build-emu/bench-smoke > build-emu/bench-smoke/log 2>&1 \
	  && ls build-emu/bench-smoke/perf-*.md >/dev/null \
	  && echo "aimc-bench smoke run on the emulator: table written" \
	  || { tail -20 build-emu/bench-smoke/log; echo "aimc-bench smoke run failed"; exit 1; }

clean:
	rm -rf $(BUILD)

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

# make bench: the copy-bandwidth and bf16-GEMM ceilings, then every cuda kernel
# at aimc's shapes; prints the table and writes docs/perf-<gpu>.md, with
# attention beside PyTorch's cuDNN / FlashAttention-2 SDPA (scripts/bench_sdpa.py)
# when python3 has torch with CUDA.
BENCH_BIN := $(BUILD)/bench/aimc-bench
$(BENCH_BIN): tests/cuda/bench.c $(BUILD)/libaimc.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $< $(BUILD)/libaimc.a -o $@ $(LDLIBS)

ifeq ($(CUDA),1)
SDPA_CSV := $(BUILD)/bench/sdpa.csv
bench: $(BENCH_BIN)
	@rm -f $(SDPA_CSV)
	@if python3 -c 'import torch, sys; sys.exit(not torch.cuda.is_available())' 2>/dev/null; then \
	  python3 scripts/bench_sdpa.py > $(SDPA_CSV) || rm -f $(SDPA_CSV); \
	else echo "make bench: python3 with torch + CUDA not found: no SDPA comparison"; fi
	$(BENCH_BIN) docs $$([ -f $(SDPA_CSV) ] && echo $(SDPA_CSV))
else
bench:
	@echo "make bench: this build has no CUDA (nvcc not found or CUDA=0)"; exit 1
endif

# make fuzz: libFuzzer targets for every parser of outside input (tests/fuzz/README.md).
# Clang with ASan + UBSan, CPU only, in its own build folder. Each target first
# replays its saved reproducers (tests/fuzz/crashes/TARGET/*), then runs for
# FUZZ_SECONDS; any crash, leak, timeout or oracle failure fails the run.
# FUZZ_TARGETS="fuzz_image fuzz_base64" picks targets; FUZZ_KEEP_GOING=1 fuzzes
# on past findings (libFuzzer fork mode). Needs clang, libclang-rt-14-dev, libomp-14-dev.
FUZZ_BUILD   := build-fuzz
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= $(patsubst tests/fuzz/%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_SAN     := -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
.PHONY: fuzz fuzz-build
fuzz-build:
	$(MAKE) BUILD=$(FUZZ_BUILD) CUDA=0 CC=$(FUZZ_CC) SAN="$(FUZZ_SAN)" $(addprefix $(FUZZ_BUILD)/fuzz/,$(FUZZ_TARGETS))
fuzz: fuzz-build
	bash tests/fuzz/run.sh $(FUZZ_BUILD)/fuzz $(FUZZ_SECONDS) $(FUZZ_TARGETS)

# The targets define aimc_die / aimc_fail_at themselves (tests/fuzz/fuzz.h):
# they link a copy of the library in which the library's are weak.
$(BUILD)/libaimc-fuzz.a: $(BUILD)/libaimc.a
	objcopy --weaken-symbol=aimc_die --weaken-symbol=aimc_fail_at $< $@

$(BUILD)/fuzz/%: tests/fuzz/%.c tests/fuzz/fuzz.h $(BUILD)/libaimc-fuzz.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -fsanitize=fuzzer $< $(BUILD)/libaimc-fuzz.a -o $@ $(LDLIBS)

# make bench-data: images/s per core for decode + preprocess of 640-1024 px
# JPEG / WebP (aimc, 1 and THREADS threads) and Pillow on the same files when
# python3 with Pillow is present, then the loader by worker count (scripts/bench_data.sh;
# env IMAGES, SIZE, PRESET, THREADS, ROUNDS, LOADER_WORKERS).
.PHONY: bench-data
bench-data: $(BUILD)/aimc
	bash scripts/bench_data.sh $(BUILD)/aimc
