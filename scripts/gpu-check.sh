#!/usr/bin/env bash
# On a machine with an NVIDIA GPU and its driver (no CUDA toolkit needed): builds with the
# `cuda` feature, runs the GPU tests, then benchmarks workload W on cuda:0 next to the raw
# pinned copy bandwidth. Fails if the GPU tests were skipped. Fits in 10 minutes; the table
# comes last. CKPT_BENCH_MB scales W down (default: full size, 1.32 GiB).
set -euo pipefail
cd "$(dirname "$0")/.."
log=${CKPT_GPU_LOG:-target/gpu-check.log}
mkdir -p "$(dirname "$log")"
: >"$log"

nvidia-smi --query-gpu=name,driver_version,memory.total,pcie.link.gen.current,pcie.link.width.current \
    --format=csv,noheader 2>&1 | tee -a "$log" || true

# Both builds first, so that the timings below run on a quiet machine.
timeout 300 cargo build --release --features cuda --bench gpu 2>&1 | tail -n 3
timeout 240 cargo test --features cuda --test cuda --no-run 2>&1 | tail -n 3

timeout 120 cargo test --features cuda --test cuda -- --nocapture --test-threads=1 2>&1 | tee -a "$log"
if grep -q "skipped: CUDA is not available" "$log"; then
    echo "gpu-check: the GPU tests were skipped: no usable GPU here" >&2
    exit 1
fi

CKPT_BENCH_REPEAT=${CKPT_BENCH_REPEAT:-3} timeout 240 \
    cargo bench --features cuda --bench gpu 2>&1 | tee -a "$log"

echo
echo "== workload W on cuda:0 (seconds for W, GiB/s) =="
grep -E '^(workload|bench |ratios|  ckpt_)' "$log"
