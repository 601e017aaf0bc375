#!/usr/bin/env bash
# The CUDA tests through the stand-in driver built with AddressSanitizer and UBSan: the
# executor, the driver, cuBLAS and every kernel instrumented (the Rust test programs are not;
# libasan and libubsan are preloaded into them so the instrumented libcuda.so.1 can be
# dlopen'ed). Any sanitizer report aborts the run. Slower than the plain run; a separate job.
#
#   kernels/emu/sanitized.sh [JETGEN_EMU_SCHEDULE, default forward,reverse]
set -euo pipefail
cd "$(dirname "$0")/../.."

emu=$(JETGEN_CUDA_EMU_SANITIZE=address,undefined \
  cargo run -q --manifest-path kernels/emu/Cargo.toml --target-dir target/cuda-emu)
echo "sanitized stand-in: $emu"
cxx=${CXX:-c++}
preload="$("$cxx" -print-file-name=libasan.so):$("$cxx" -print-file-name=libubsan.so)"
# Preload the sanitizer runtimes into the test programs only (cargo's test runner), not into
# cargo and rustc.
triple=$(rustc -vV | sed -n 's/^host: //p' | tr 'a-z-' 'A-Z_')
export "CARGO_TARGET_${triple}_RUNNER=env LD_PRELOAD=$preload"
export LD_LIBRARY_PATH="$emu/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:allow_user_segv_handler=1:detect_stack_use_after_return=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
JETGEN_EMU_SCHEDULE="${1:-forward,reverse}" REQUIRE_GPU=1 JETGEN_REQUIRE_EMU=1 \
  cargo test --test cuda_emu --test cuda_parity --test cuda_kernel_coverage
