#!/usr/bin/env bash
# The GPU check of the `cuda` feature: the GPU tests (tests/cuda.rs), then workload W loaded
# onto and saved from cuda:0 next to the raw pinned copy bandwidth (benches/gpu.rs), then the
# CPU benchmark of W on every core of the machine (benches/save_load.rs: its threads table,
# targets and byte-traffic limits). Needs an NVIDIA GPU and its driver, no CUDA toolkit. Fails
# if the GPU tests were skipped. Each step has a timeout, so the whole fits in 5 minutes; every
# figure is printed again at the end, on one screen.
#
#   scripts/gpu-check.sh                 build here with cargo, then run (a GPU machine with Rust)
#   scripts/gpu-check.sh --prepare DIR   only build the two programs into DIR (on any machine)
#   scripts/gpu-check.sh --prebuilt DIR  only run programs built by --prepare (a GPU machine
#                                        without Rust or a network: carry DIR there)
#
# CKPT_BENCH_MB scales W down (default: full size, 1.32 GiB); CKPT_BENCH_REPEAT (default 3);
# CKPT_BENCH_DIR holds the files (default /dev/shm, where it exists).
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:-all}
bin=${2:-target/gpu-check}
case "$mode" in
all | --prepare | --prebuilt) ;;
*)
    echo "usage: $0 [--prepare DIR | --prebuilt DIR]" >&2
    exit 2
    ;;
esac

if [ "$mode" != --prebuilt ]; then
    # Release builds: smaller to carry, and the benchmark needs one anyway.
    mkdir -p "$bin"
    exe() { grep -o "($1-[0-9a-f]*)" | tr -d '()' | tail -n 1; }
    test_exe=$(timeout 300 cargo test --release --features cuda --test cuda --no-run 2>&1 |
        tee /dev/stderr | exe target/release/deps/cuda)
    bench_exe=$(timeout 300 cargo bench --features cuda --bench gpu --no-run 2>&1 |
        tee /dev/stderr | exe target/release/deps/gpu)
    cpu_exe=$(timeout 300 cargo bench --bench save_load --no-run 2>&1 |
        tee /dev/stderr | exe target/release/deps/save_load)
    cp "$test_exe" "$bin/cuda-tests"
    cp "$bench_exe" "$bin/gpu-bench"
    cp "$cpu_exe" "$bin/cpu-bench"
    strip "$bin/cuda-tests" "$bin/gpu-bench" "$bin/cpu-bench" 2>/dev/null || true
    ls -l "$bin"
    [ "$mode" = --prepare ] && exit 0
fi

log="$bin/gpu-check.log"
: >"$log"
nvidia-smi --query-gpu=name,driver_version,memory.total,pcie.link.gen.current,pcie.link.width.current \
    --format=csv,noheader 2>&1 | tee -a "$log" || true

# The fake-driver tests need cargo, and test ckpt without the GPU: not here.
timeout 60 "$bin/cuda-tests" --nocapture --test-threads=1 --skip fake_driver --skip fault_ 2>&1 |
    tee -a "$log"
if grep -q "skipped: CUDA is not available" "$log"; then
    echo "gpu-check: the GPU tests were skipped: no usable GPU here" >&2
    exit 1
fi

# The file in memory where there is room, so saves time the transfers rather than a disk.
if [ -z "${CKPT_BENCH_DIR:-}" ] && [ -d /dev/shm ]; then
    export CKPT_BENCH_DIR=/dev/shm
fi
export CKPT_BENCH_REPEAT=${CKPT_BENCH_REPEAT:-3}
timeout 100 "$bin/gpu-bench" 2>&1 | tee -a "$log" ||
    echo "gpu-check: the GPU benchmark failed or ran past 100 s" | tee -a "$log"

# Every core: the table of 1, 2 and all threads, the targets, the byte-traffic limits. Files in
# memory need no pause for write-back between runs.
cpu_log="$bin/cpu-bench.log"
CKPT_BENCH_SETTLE_MS=${CKPT_BENCH_SETTLE_MS:-100} timeout 130 "$bin/cpu-bench" 2>&1 |
    tee "$cpu_log" || echo "gpu-check: the CPU benchmark failed or ran past 130 s" | tee -a "$cpu_log"

echo
echo "== workload W on cuda:0 (seconds for W, GiB/s) =="
grep -E '^(workload|bench |ratios|  ckpt_)' "$log"
echo
echo "== workload W on the CPU, $(nproc) cores (benches/save_load.rs) =="
grep -E '^workload' "$cpu_log"
sed -n '/^threads table/,$p' "$cpu_log"
