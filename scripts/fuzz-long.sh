#!/usr/bin/env bash
# A longer fuzzing run than scripts/test.sh's (docs/security.md, "Fuzzing"): every parser's
# libFuzzer program, each for SECONDS (default 1800) with a persistent corpus in
# build-fuzz/corpus/NAME/ that grows from run to run, seeded with valid files written by lamda
# and with the kept crash corpus tests/fuzz/corpus/NAME/.
#   bash scripts/fuzz-long.sh [SECONDS] [NAME ...]      (NAME: dsl safetensors onnx task_json
#                                                        profile_json journal_line agent_request url;
#                                                        default all)
# Builds with clang++ and -fsanitize=fuzzer,address,undefined in build-fuzz/. A crash leaves its
# reproducer in build-fuzz/artifacts/; once fixed, copy it into tests/fuzz/corpus/NAME/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
seconds=${1:-1800}
shift || true
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(dsl safetensors onnx task_json profile_json journal_line agent_request url)
jobs=$(nproc)

[ -f build-fuzz/CMakeCache.txt ] || cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=Debug \
    -DCMAKE_CXX_COMPILER="${LAMDA_FUZZ_CXX:-clang++}" -DLAMDA_SANITIZE=ON -DLAMDA_BUILD_FUZZ=ON \
    -DLAMDA_BUILD_TESTS=OFF -DLAMDA_BUILD_TOOLS=OFF -DLAMDA_BUILD_BENCH=OFF -DLAMDA_BUILD_EXAMPLES=OFF \
    -DLAMDA_WITH_TORCH=OFF
targets=()
for name in "${names[@]}"; do targets+=("lamda_fuzz_$name"); done
cmake --build build-fuzz -j "$jobs" --target "${targets[@]}" lamda_fuzz_seeds

mkdir -p build-fuzz/corpus build-fuzz/artifacts build-fuzz/corpus/dsl
cp -n examples/models/*.lamda build-fuzz/corpus/dsl/ 2>/dev/null || true
build-fuzz/lamda_fuzz_seeds build-fuzz/corpus
/usr/bin/python3 tests/hostile/onnx_hostile.py --seeds build-fuzz/corpus/onnx || true

failed=0
for name in "${names[@]}"; do
    mkdir -p "build-fuzz/corpus/$name" "tests/fuzz/corpus/$name"
    echo "==== fuzz_$name for ${seconds}s ===="
    ASAN_OPTIONS=detect_leaks=1 "build-fuzz/lamda_fuzz_$name" "build-fuzz/corpus/$name" "tests/fuzz/corpus/$name" \
        -max_total_time="$seconds" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix=build-fuzz/artifacts/ -print_final_stats=1 \
        >"build-fuzz/artifacts/fuzz_$name.log" 2>&1 || { echo "fuzz_$name FAILED: see build-fuzz/artifacts/"; failed=1; }
done
exit "$failed"
