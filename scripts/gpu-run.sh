#!/usr/bin/env bash
# Runs on the GPU machine from the bundle made by scripts/gpu-bundle.sh:
#     bash gpu-bundle/run.sh RESULTS_DIR [PHASE]
# PHASE (default all; each fits one 10-minute device call, `all` may not):
#   tests  — environment report; the test executables with REQUIRE_GPU=1 (CUDA parity suite,
#            kernel compile check); compute-sanitizer memcheck and racecheck over the parity suite
#   bench  — `jetgen bench` (engine, kernels, generate) on CUDA, a 300-step CUDA training run,
#            `jetgen bench` on the CPU
#   peers  — the PyTorch engine peer and the kernel peers (PyTorch, GeomLoss, POT, nflows) on the
#            same GPU, and the side-by-side kernel table (needs bench's kernels_cuda.json)
# Everything is written into RESULTS_DIR as it goes (partial results survive a time-out);
# summary.txt has one line per step.
set -u
B="$(cd "$(dirname "$0")" && pwd)"
R="${1:?usage: run.sh RESULTS_DIR [all|tests|bench|peers]}"
PHASE="${2:-all}"
mkdir -p "$R"
S="$R/summary.txt"
touch "$S"
want() { [ "$PHASE" = all ] || [ "$PHASE" = "$1" ]; }

{
  date -u; nvidia-smi; ldd --version | head -1
  echo "libcuda: $(ldconfig -p | grep -m1 libcuda.so.1 || echo 'NOT FOUND')"
} > "$R/env.txt" 2>&1

# libcublas / libnvrtc: system toolkit first, then pip wheels of the preinstalled PyTorch.
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
  [ -d "$d" ] && LD_LIBRARY_PATH="$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
done
PYLIBS=$(python3 - <<'PY' 2>/dev/null
import glob, os
try:
    import nvidia
    dirs = set()
    for p in nvidia.__path__:
        dirs.update(os.path.dirname(f) for f in glob.glob(os.path.join(p, "**", "lib*.so*"), recursive=True))
    print(":".join(sorted(dirs)))
except Exception:
    pass
PY
)
[ -n "$PYLIBS" ] && LD_LIBRARY_PATH="${LD_LIBRARY_PATH:-}${LD_LIBRARY_PATH:+:}$PYLIBS"
export LD_LIBRARY_PATH="${LD_LIBRARY_PATH:-}" REQUIRE_GPU=1 JETGEN_VECTORS="$B/vectors" JETGEN_SAMPLE_DIR="$B/sample" JETGEN_CUDA_SYNC=1
echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH" >> "$R/env.txt"

"$B/bin/jetgen" info > "$R/info.txt" 2>&1; echo "info: rc=$?" >> "$S"

if want tests; then
for t in "$B"/tests/*; do
  name=$(basename "$t")
  timeout 300 "$t" --test-threads=1 --include-ignored > "$R/test_$name.txt" 2>&1
  echo "test $name: rc=$? $(grep -E '^test result' "$R/test_$name.txt" | tail -1)" >> "$S"
done

if command -v compute-sanitizer > /dev/null; then
  for tool in memcheck racecheck; do
    timeout 240 compute-sanitizer --tool "$tool" --error-exitcode 9 "$B/tests/cuda_parity" --test-threads=1 --include-ignored \
      > "$R/sanitizer_$tool.txt" 2>&1
    echo "compute-sanitizer $tool: rc=$? $(grep -E 'ERROR SUMMARY' "$R/sanitizer_$tool.txt" | tail -1)" >> "$S"
  done
else
  echo "compute-sanitizer: not found" >> "$S"
fi
fi

unset JETGEN_CUDA_SYNC
if want bench; then
"$B/bin/jetgen" bench --device cuda --iters 100 --json "$R/bench_cuda.json" > "$R/bench_cuda.txt" 2>&1
echo "bench cuda: rc=$?" >> "$S"
"$B/bin/jetgen" bench kernels --device cuda --min-time 0.5 --json "$R/kernels_cuda.json" > "$R/kernels_cuda.txt" 2>&1
echo "bench kernels cuda: rc=$?" >> "$S"
# flows on the GPU: training-step and sampling times (nflows' peer configurations) and
# generation throughput through the Rust and the C API; a short CUDA training run end to end
"$B/bin/jetgen" bench generate --device cuda --iters 20 --json "$R/generate_cuda.json" > "$R/generate_cuda.txt" 2>&1
echo "bench generate cuda: rc=$?" >> "$S"
# MPGAN's D+G training step with the fused CUDA edge network (its kernels/edge_mlp.cu rows
# are in kernels_cuda above, with their roofline bounds)
"$B/bin/jetgen" bench mpgan --device cuda --iters 10 --json "$R/mpgan_cuda.json" > "$R/mpgan_cuda.txt" 2>&1
echo "bench mpgan cuda: rc=$?" >> "$S"
timeout 300 "$B/bin/jetgen" train --device cuda --data "$B/sample/g.hdf5" --steps 300 --quick-eval --out "$R/train_cuda" > "$R/train_cuda.txt" 2>&1
echo "train cuda (300 steps): rc=$?" >> "$S"
"$B/bin/jetgen" bench --device cpu --iters 50 --json "$R/bench_cpu.json" > "$R/bench_cpu.txt" 2>&1
echo "bench cpu: rc=$?" >> "$S"
fi

if want peers; then
python3 "$B/peers/torch_engine.py" --device cuda --iters 100 --json "$R/torch_cuda.json" > "$R/torch_cuda.txt" 2>&1
echo "torch peer cuda: rc=$?" >> "$S"
if [ -f "$B/peers/bench_kernels.py" ]; then
  PYTHONPATH="$B/pylib${PYTHONPATH:+:$PYTHONPATH}" timeout 420 python3 "$B/peers/gpu_kernels.py" \
    --out "$R/peers_kernels_cuda.json" > "$R/peers_kernels_cuda.txt" 2>&1
  echo "kernel peers cuda: rc=$? $(tail -1 "$R/peers_kernels_cuda.txt")" >> "$S"
  if [ -f "$R/kernels_cuda.json" ] && [ -f "$R/peers_kernels_cuda.json" ]; then
    python3 "$B/peers/compare_kernels.py" "$R/kernels_cuda.json" "$R/peers_kernels_cuda.json" --threads 0 \
      > "$R/kernels_vs_peers_cuda.md" 2>&1
    echo "kernel table: rc=$? ($R/kernels_vs_peers_cuda.md)" >> "$S"
  fi
fi
fi
cat "$S"
