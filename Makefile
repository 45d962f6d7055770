# The README's two commands:
#   make run    install what is missing, build, run slabkit-bench: every backend,
#               glibc and the installed peers (jemalloc, tcmalloc, mimalloc);
#               writes slabkit-bench.{csv,json,html} here (BENCH_ARGS=--quick: < 60 s)
#   make test   install what is missing, build, run the whole suite (ctest), the
#               NUMA guest test (make numa-vm), then the sanitizer builds
#               (ASan+UBSan, TSan) and the libFuzzer build (clang); ctest's 'install' test installs into a
#               scratch prefix and builds a program against it
#   make numa-vm  boot Debian's kernel under QEMU with 2 and 4 NUMA nodes and check
#               slabkit's placement there with move_pages (tests/numa-vm.sh)
#
# As root on Debian, missing packages are installed with apt-get.  Everything
# else is plain CMake: see README.md.

SHELL := /bin/bash
JOBS ?= $(shell nproc)
DEBIAN_PACKAGES := build-essential cmake pkg-config libck-dev libhwloc-dev liburcu-dev libcmocka-dev \
  python3 sqlite3 git perl redis-server redis-tools valgrind
# The other mallocs slabkit-bench compares with (LD_PRELOADed; skipped when absent).
BENCH_PEER_PACKAGES := libjemalloc2 libtcmalloc-minimal4 libmimalloc2.0
# make check-fuzz only: clang and its runtimes (libFuzzer, ASan, UBSan)
FUZZ_PACKAGES := clang libclang-rt-14-dev
# make numa-vm only (the kernel itself is fetched with apt-get download, not installed)
NUMA_VM_PACKAGES := qemu-system-x86 busybox-static cpio xz-utils
BUILD ?= build

.PHONY: run test deps bench-peers bench-preload build check check-asan check-tsan check-fuzz memcheck numa-vm clean

run: deps bench-peers
	cmake -S . -B $(BUILD)-release -DCMAKE_BUILD_TYPE=Release -DSLABKIT_BUILD_TESTS=OFF
	cmake --build $(BUILD)-release -j$(JOBS) --target slabkit-bench
	./$(BUILD)-release/tools/slabkit-bench $(BENCH_ARGS)

# Real programs and workloads under glibc, every backend (libslabkit-preload.so),
# jemalloc, tcmalloc and mimalloc; the table goes to $(BUILD)-release/preload-bench.md.
bench-preload: deps bench-peers
	cmake -S . -B $(BUILD)-release -DCMAKE_BUILD_TYPE=Release -DSLABKIT_BUILD_TESTS=OFF
	cmake --build $(BUILD)-release -j$(JOBS) --target slabkit_preload
	python3 preload/bench/run.py --preload $(BUILD)-release/libslabkit-preload.so \
	  --out $(BUILD)-release/preload-bench.md $(PRELOAD_BENCH_ARGS)

test: deps check numa-vm check-asan check-tsan check-fuzz
	@echo "make test: every suite passed"

# $(call install_missing,packages,fatal): apt-get install what dpkg lacks.
define install_missing
	@missing=""; \
	for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing:$$missing"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    (apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null) || $(2); \
	  else \
	    echo "missing Debian packages:$$missing (run as root, or: sudo apt-get install$$missing)"; $(2); \
	  fi; \
	fi
endef

deps:
	$(call install_missing,$(DEBIAN_PACKAGES),exit 1)

# Optional: without them slabkit-bench compares the backends with glibc only.
bench-peers:
	$(call install_missing,$(BENCH_PEER_PACKAGES),echo "slabkit-bench will skip the peers it cannot find")

build: deps
	cmake -S . -B $(BUILD)
	cmake --build $(BUILD) -j$(JOBS)

check: build
	ctest --test-dir $(BUILD) --output-on-failure -j2

# tests/numa-vm.sh says "skipped: why" itself when a package cannot be had.
numa-vm: build
	$(call install_missing,$(NUMA_VM_PACKAGES),echo "tests/numa-vm.sh will say what it lacks")
	bash tests/numa-vm.sh $(BUILD)

check-asan: deps
	cmake -S . -B $(BUILD)-asan -DSLABKIT_SANITIZE=address -DSLABKIT_BUILD_TOOLS=OFF
	cmake --build $(BUILD)-asan -j$(JOBS)
	ASAN_OPTIONS=detect_leaks=0 ctest --test-dir $(BUILD)-asan --output-on-failure -j2

# TSan options: fork() safety (core/fork.c) holds every lock of the library
# at once across fork, more than the 64 TSan's deadlock detector can track
# per thread; children of a multi-threaded fork start threads again (the
# maintenance thread, liburcu's worker), which TSan refuses by default.
check-tsan: deps
	cmake -S . -B $(BUILD)-tsan -DSLABKIT_SANITIZE=thread -DSLABKIT_BUILD_TOOLS=OFF
	cmake --build $(BUILD)-tsan -j$(JOBS)
	TSAN_OPTIONS="halt_on_error=1 detect_deadlocks=0 die_after_fork=0 suppressions=$(CURDIR)/tests/tsan.supp" ctest --test-dir $(BUILD)-tsan --output-on-failure -j2

# The fuzz harnesses (tests/fuzz) built with clang and libFuzzer, ASan and
# UBSan, a fixed-seed short run of each on every backend (ctest label
# fuzz).  Every build also runs them without libFuzzer (a seeded driver).
# docs/testing.md has the long-run commands.
FUZZ_PROBE := int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { return 0; }
check-fuzz: deps
	$(call install_missing,$(FUZZ_PACKAGES),echo "check-fuzz: could not install$(FUZZ_PACKAGES)")
	@if ! command -v clang >/dev/null || ! echo '$(FUZZ_PROBE)' | \
	    clang -x c -fsanitize=fuzzer,address -o /dev/null - 2>/dev/null; then \
	  echo "check-fuzz: skipped: clang with libFuzzer is not available (Debian: $(FUZZ_PACKAGES))"; \
	else \
	  CC=clang cmake -S . -B $(BUILD)-fuzz -DSLABKIT_SANITIZE=fuzzer -DSLABKIT_BUILD_TOOLS=OFF \
	    -DSLABKIT_BUILD_EXAMPLES=OFF && \
	  cmake --build $(BUILD)-fuzz -j$(JOBS) --target fuzz_harnesses && \
	  ctest --test-dir $(BUILD)-fuzz -L fuzz --output-on-failure -j2; \
	fi

# The conformance suite under valgrind memcheck, once per backend (not part
# of `make test`: it takes minutes).  Valgrind cannot run restartable
# sequences, so slabkit runs its per-CPU slots in lock mode by itself; small
# arenas keep valgrind's address-space bookkeeping cheap.
MEMCHECK_BACKENDS ?= slab slub slob uma
memcheck: deps
	@command -v valgrind >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get install -y -qq valgrind >/dev/null; }
	cmake -S . -B $(BUILD)-memcheck -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSLABKIT_BUILD_TOOLS=OFF
	cmake --build $(BUILD)-memcheck -j$(JOBS) --target conformance
	@for b in $(MEMCHECK_BACKENDS); do \
	  echo "memcheck: conformance on $$b"; \
	  SLABKIT_ARENA_MB=2048 SLABKIT_BACKEND=$$b SLABKIT_TICK_MS=-1 \
	    valgrind -q --error-exitcode=9 --leak-check=no $(BUILD)-memcheck/tests/conformance \
	    > $(BUILD)-memcheck/memcheck-$$b.log 2>&1 || { tail -40 $(BUILD)-memcheck/memcheck-$$b.log; exit 1; }; \
	done; echo "memcheck: clean on $(MEMCHECK_BACKENDS)"

clean:
	rm -rf $(BUILD) $(BUILD)-release $(BUILD)-asan $(BUILD)-tsan $(BUILD)-fuzz $(BUILD)-memcheck
