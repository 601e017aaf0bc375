#!/usr/bin/env bash
# Build, on the GPU-less development machine, everything one GPU session needs, into one
# ignored folder (default gpu-bundle/): release binary, test and bench executables (kernels
# precompiled by nvcc when the CUDA wheels are installed), reference vectors, peer scripts,
# and run.sh, which the GPU machine executes:
#     bash gpu-bundle/run.sh "$OUT"      # results (text + JSON) land in $OUT
set -euo pipefail
cd "$(dirname "$0")/.."
BUNDLE="${1:-gpu-bundle}"

# Precompile kernels (PTX + sm_90 cubin) if the pinned CUDA wheels are available.
VENV="${JETGEN_CUDA_VENV:-$HOME/.cache/jetgen-cuda-venv}"
if [ -x "$VENV/bin/python" ] && CU=$("$VENV/bin/python" -c 'import nvidia, os; print(os.path.join(nvidia.__path__[0], "cu13"))' 2>/dev/null); then
  export PATH="$CU/bin:$PATH" LD_LIBRARY_PATH="$CU/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  echo "bundle: kernels precompiled with $(nvcc --version | tail -1)"
else
  echo "bundle: no CUDA wheels ($VENV): kernels will be compiled by NVRTC on the GPU machine"
fi

rm -rf "$BUNDLE"
mkdir -p "$BUNDLE/bin" "$BUNDLE/tests" "$BUNDLE/benches" "$BUNDLE/peers"
cargo build --release --bins
cp target/release/jetgen "$BUNDLE/bin/"

# Test and bench executables, found from cargo's JSON messages.
copy_executables() { # $1 = dest, rest = cargo args
  local dest=$1; shift
  cargo "$@" --message-format=json 2>/dev/null \
    | python3 -c 'import json,sys
for line in sys.stdin:
    try: m = json.loads(line)
    except ValueError: continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] != ["bin"]:
        print(m["target"]["name"], m["executable"])' \
    | while read -r name exe; do cp "$exe" "$dest/$name"; done
}
copy_executables "$BUNDLE/tests" test --release --no-run
copy_executables "$BUNDLE/benches" bench --no-run
rm -f "$BUNDLE/tests/jetgen" # the lib's unit tests: CPU-only

rm -f "$BUNDLE/benches/jetgen" # the lib target's (empty) bench harness
# Only the suites that exercise CUDA travel (the CPU-only suites run in CI); the bundle must
# stay under the device tool's 64 MiB.
for t in "$BUNDLE"/tests/*; do
  case "$(basename "$t")" in cuda_parity|cuda_kernel_coverage|kernel_compile) ;; *) rm -f "$t" ;; esac
done
# Debug info is most of the size; the bundle must stay under 64 MiB.
strip "$BUNDLE"/bin/* "$BUNDLE"/tests/* "$BUNDLE"/benches/*

cp -r tests/vectors "$BUNDLE/vectors"
cp -r data/sample "$BUNDLE/sample"
cp benches/peers/*.py "$BUNDLE/peers/"
# the kernel peers' op definitions, and the pure-Python peer libraries the GPU machine lacks
# (it has PyTorch, NumPy and SciPy but no internet): nflows (an sdist, built into a wheel
# here), GeomLoss, tqdm. POT is left out: its cp312 wheel (33 MB, 177 MB installed) does not
# fit the 64 MiB bundle; on the GPU the Sinkhorn peers are PyTorch's log-domain loop and
# GeomLoss' tensorised loop.
SHARED_PEERS="${JETGEN_SHARED_PEERS:-../shared/peers}"
if [ -f "$SHARED_PEERS/bench_kernels.py" ]; then
  cp "$SHARED_PEERS/bench_kernels.py" "$BUNDLE/peers/"
else
  echo "bundle: $SHARED_PEERS/bench_kernels.py not found: no kernel peers on the GPU"
fi
WHEELS=$(mktemp -d)
if python3 -m pip wheel --quiet --disable-pip-version-check --no-deps -w "$WHEELS" \
      "nflows==0.14" "geomloss==0.3.1" "tqdm" > /dev/null 2>&1 \
   && python3 -m pip install --quiet --disable-pip-version-check --no-deps --target "$BUNDLE/pylib" \
      "$WHEELS"/*.whl > /dev/null 2>&1; then
  echo "bundle: peer libraries in pylib/ ($(du -sh "$BUNDLE/pylib" | cut -f1))"
else
  rm -rf "$BUNDLE/pylib"
  echo "bundle: could not build the nflows/GeomLoss wheels: those peers will be skipped on the GPU"
fi
rm -rf "$WHEELS"
cp scripts/gpu-run.sh "$BUNDLE/run.sh"
chmod +x "$BUNDLE/run.sh"
du -sh "$BUNDLE"
