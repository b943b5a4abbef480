#!/usr/bin/env bash
# Builds lamda every way we support and runs every check. Run from anywhere:
#   bash scripts/test.sh
# Steps: amalgamation check; onnxruntime-node from npm into bench/peers/node_modules (the
# onnx_import test's reference); CMake + g++ (build/); CMake + clang++ with ASan/UBSan
# (build-asan/); Meson + g++ (build-meson/); aarch64 cross builds, CMake (build-aarch64/) and Meson
# (build-meson-aarch64/), whose tests run under qemu-aarch64; examples/firmware built on its own
# with CMake and Meson, natively and for aarch64 (build-firmware*/); libFuzzer on every parser
# (built in build-asan/: DSL, safetensors, ONNX, task, profile, journal).
# Environment: LAMDA_SKIP_FUZZ=1 skips fuzzing; LAMDA_FUZZ_RUNS (default 200000) and
# LAMDA_FUZZ_SECONDS (default 50; 0 = no limit) bound each fuzzer, whichever comes first;
# LAMDA_SKIP_ASAN=1, LAMDA_SKIP_MESON=1 skip those builds; LAMDA_ASAN_CXX (default clang++);
# LAMDA_SKIP_AARCH64=1 skips the aarch64 builds (which need `scripts/install-deps.sh --aarch64`;
# LAMDA_SKIP_MESON=1 leaves out the Meson one).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
jobs=$(nproc)
start=$SECONDS
export CTEST_OUTPUT_ON_FAILURE=1
# Sanitizers: fail on the first report, with symbolised stacks.
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=0:detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

section() {
    printf '\n==== %s (%ds elapsed) ====\n' "$1" "$((SECONDS - start))"
}

# Configures a CMake build directory once; later runs only rebuild (ccache makes clean builds cheap).
cmake_configure() {
    local dir=$1
    shift
    if [ ! -f "$dir/CMakeCache.txt" ]; then
        cmake -S "$root" -B "$dir" -G Ninja "$@"
    else
        cmake -S "$root" -B "$dir" "$@" >/dev/null
    fi
}

section "amalgamation: single_include/lamda/lamda.hpp is up to date"
python3 scripts/amalgamate.py --check

# ONNX Runtime for the onnx_import test's reference outputs (bench/peers/ort_run.js) and for
# bench/peers/compare.py: onnxruntime-node at bench/peers/package-lock.json's version, from npm.
# --ignore-scripts: its install script downloads; the package already holds the CPU library.
# Reinstalled only when it does not load or is not the version package.json pins.
section "npm: onnxruntime-node in bench/peers/node_modules (the onnx_import test's reference)"
ort_check="const want = require('./package.json').dependencies['onnxruntime-node'];
const have = require('onnxruntime-node/package.json').version;
require('onnxruntime-node');
if (have !== want) {
    console.error('onnxruntime-node ' + have + ', want ' + want);
    process.exit(1);
}
console.log('onnxruntime-node ' + have + ' installed');"
if ! (cd bench/peers && node -e "$ort_check" 2>/dev/null); then
    if ! command -v npm >/dev/null 2>&1; then
        echo "npm not found: run 'bash scripts/install-deps.sh' (Debian's nodejs and npm)" >&2
        exit 1
    fi
    (cd bench/peers && npm ci --ignore-scripts --no-audit --no-fund)
    (cd bench/peers && node -e "$ort_check")
fi

# llama.cpp for the llm_llama test (tests/llm/llama/server.mjs): node-llama-cpp at
# tests/llm/llama/package-lock.json's version with its prebuilt linux-x64 CPU binary only.
# --ignore-scripts: its postinstall would download or build llama.cpp; --omit=optional leaves out
# the CUDA, Vulkan and other platforms' binaries (~600 MB). x86_64 only (the binary's platform).
if [ "$(uname -m)" = x86_64 ]; then
    section "npm: node-llama-cpp in tests/llm/llama/node_modules (the llm_llama test's llama.cpp)"
    llama_check="const want = require('./package.json').dependencies['node-llama-cpp'];
const have = require('./node_modules/node-llama-cpp/package.json').version;
require.resolve('./node_modules/@node-llama-cpp/linux-x64/bins/linux-x64/llama-addon.node');
if (have !== want) {
    console.error('node-llama-cpp ' + have + ', want ' + want);
    process.exit(1);
}
console.log('node-llama-cpp ' + have + ' installed');"
    if ! (cd tests/llm/llama && node -e "$llama_check" 2>/dev/null); then
        (cd tests/llm/llama && npm ci --ignore-scripts --omit=optional --no-audit --no-fund)
        (cd tests/llm/llama && node -e "$llama_check")
    fi
fi

section "CMake + $(c++ --version | head -n1): configure and build (build/)"
cmake_configure build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j "$jobs"

section "CMake: ctest (build/)"
ctest --test-dir build -j "$jobs"

if [ "${LAMDA_SKIP_ASAN:-0}" != 1 ]; then
    asan_cxx=${LAMDA_ASAN_CXX:-clang++}
    fuzz=OFF
    if [ "${LAMDA_SKIP_FUZZ:-0}" != 1 ]; then fuzz=ON; fi
    section "CMake + $asan_cxx, -fsanitize=address,undefined: configure and build (build-asan/)"
    cmake_configure build-asan -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_COMPILER="$asan_cxx" \
        -DLAMDA_SANITIZE=ON -DLAMDA_BUILD_BENCH=OFF -DLAMDA_BUILD_FUZZ="$fuzz" \
        -DLAMDA_WITH_TORCH=OFF  # libtorch is not instrumented, and slow to compile twice more
    cmake --build build-asan -j "$jobs"

    section "CMake + sanitizers: ctest (build-asan/)"
    ctest --test-dir build-asan -j "$jobs"
fi

if [ "${LAMDA_SKIP_MESON:-0}" != 1 ]; then
    section "Meson: configure and build (build-meson/)"
    # -Dunit_tests=false: the doctest programs (tests/*/test_*.cpp) already run in build/,
    # build-asan/ and build-aarch64/; compiling them a fourth time cost CI minutes. The CLI, script
    # and single-header tests run here with the Meson-built tools. tests/CMakeLists.txt checks that
    # tests/meson.build lists every test source.
    if [ -f build-meson/build.ninja ]; then
        meson setup --reconfigure build-meson -Dunit_tests=false >/dev/null
    else
        # -O0: the CMake build above already covers g++ with optimisation (and is quicker to build).
        meson setup build-meson --buildtype=debug -Dunit_tests=false
    fi
    meson compile -C build-meson -j "$jobs"

    section "Meson: meson test (build-meson/)"
    meson test -C build-meson --print-errorlogs --num-processes "$jobs"
fi

if [ "${LAMDA_SKIP_AARCH64:-0}" != 1 ]; then
    # Correctness only: every test, the XNNPACK executor against the reference included, on
    # aarch64 code (NEON kernels) under qemu-user. Timings under emulation mean nothing.
    for tool in aarch64-linux-gnu-g++ qemu-aarch64; do
        if ! command -v "$tool" >/dev/null 2>&1; then
            echo "$tool not found: run 'bash scripts/install-deps.sh --aarch64'" \
                "(or skip this step with LAMDA_SKIP_AARCH64=1)" >&2
            exit 1
        fi
    done
    section "aarch64 cross build, CMake toolchain file: configure and build (build-aarch64/)"
    # The latency model, the LLM generator and the on-device agent are required, not detected:
    # install-deps.sh --aarch64 puts their arm64 libraries in the cross tree, and a build directory
    # configured before that would otherwise keep them off.
    cmake_configure build-aarch64 -DCMAKE_TOOLCHAIN_FILE="$root/cmake/toolchains/aarch64-linux-gnu.cmake" \
        -DCMAKE_BUILD_TYPE=Release -DLAMDA_WITH_XNNPACK=ON -DLAMDA_WITH_TORCH=OFF \
        -DLAMDA_WITH_LATENCY=ON -DLAMDA_WITH_LLM=ON -DLAMDA_WITH_AGENT=ON \
        -DLAMDA_BUILD_BENCH=OFF  # benchmark timings under emulation mean nothing
    cmake --build build-aarch64 -j "$jobs"

    section "aarch64: ctest under qemu-aarch64 (build-aarch64/)"
    ctest --test-dir build-aarch64 -j "$jobs"

    if [ "${LAMDA_SKIP_MESON:-0}" != 1 ]; then
        section "aarch64 cross build, Meson cross file: configure and build (build-meson-aarch64/)"
        # -Dunit_tests=false: the doctest program already runs under qemu in build-aarch64/ (the same
        # test sources, the slowest test under emulation); building it again here cost CI minutes.
        if [ -f build-meson-aarch64/build.ninja ]; then
            meson setup --reconfigure build-meson-aarch64 -Dlatency=enabled -Dagent=enabled \
                -Dunit_tests=false >/dev/null
        else
            # debugoptimized, not debug: the programs run under qemu; assertions stay on
            # (b_ndebug=false), and build-meson/ is -O0.
            meson setup build-meson-aarch64 --cross-file cross/aarch64-linux-gnu.ini \
                --buildtype=debugoptimized -Dxnnpack=enabled -Dbench=disabled -Dtorch=disabled \
                -Dlatency=enabled -Dagent=enabled -Dunit_tests=false
        fi
        meson compile -C build-meson-aarch64 -j "$jobs"

        section "aarch64: meson test under qemu-aarch64 (build-meson-aarch64/)"
        meson test -C build-meson-aarch64 --print-errorlogs --num-processes "$jobs"
    fi
fi

# examples/firmware as a project of its own (only single_include/ and its generated header),
# with CMake and Meson, natively and for aarch64 (run under qemu-user): each program's
# predictions must equal the native lamda's (tests/firmware_test.sh, with build/lamda).
section "examples/firmware on its own: CMake and Meson, x86_64 and aarch64 (build-firmware*/)"
firmware_builds=(build-firmware)
cmake_fw() {
    local dir=$1
    shift
    [ -f "$dir/CMakeCache.txt" ] || cmake -S examples/firmware -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release "$@"
    cmake --build "$dir" -j "$jobs"
}
cmake_fw build-firmware
if [ "${LAMDA_SKIP_MESON:-0}" != 1 ]; then
    [ -f build-firmware-meson/build.ninja ] || meson setup build-firmware-meson examples/firmware
    meson compile -C build-firmware-meson -j "$jobs"
    firmware_builds+=(build-firmware-meson)
fi
if [ "${LAMDA_SKIP_AARCH64:-0}" != 1 ]; then
    cmake_fw build-firmware-aarch64 -DCMAKE_TOOLCHAIN_FILE="$root/cmake/toolchains/aarch64-linux-gnu.cmake"
    firmware_builds+=(build-firmware-aarch64)
    if [ "${LAMDA_SKIP_MESON:-0}" != 1 ]; then
        [ -f build-firmware-meson-aarch64/build.ninja ] ||
            meson setup build-firmware-meson-aarch64 examples/firmware --cross-file cross/aarch64-linux-gnu.ini
        meson compile -C build-firmware-meson-aarch64 -j "$jobs"
        firmware_builds+=(build-firmware-meson-aarch64)
    fi
fi
for dir in "${firmware_builds[@]}"; do
    wrapper=""
    case $dir in
        *aarch64) wrapper="qemu-aarch64 -L /usr/aarch64-linux-gnu -E LD_LIBRARY_PATH=/usr/aarch64-linux-gnu/lib" ;;
    esac
    echo "$dir:"
    LAMDA_FIRMWARE_WRAPPER=$wrapper bash tests/firmware_test.sh "$dir/lamda_firmware" build/lamda "$root"
done

if [ "${LAMDA_SKIP_FUZZ:-0}" != 1 ] && [ "${LAMDA_SKIP_ASAN:-0}" != 1 ]; then
    # Every parser's libFuzzer program (built in build-asan/), each from a seed corpus of valid
    # files written at this point (lamda_fuzz_seeds, tests/hostile/onnx_hostile.py --seeds) plus
    # its kept crash corpus tests/fuzz/corpus/NAME/ (regression inputs, run first), for
    # LAMDA_FUZZ_RUNS runs or LAMDA_FUZZ_SECONDS seconds each, whichever comes first
    # (8 programs x 50 s, two at a time on CI's two cores: under 4 minutes).
    # scripts/fuzz-long.sh runs longer.
    runs=${LAMDA_FUZZ_RUNS:-200000}
    seconds=${LAMDA_FUZZ_SECONDS:-50}
    seeds=$(mktemp -d)
    trap 'rm -rf "$seeds"' EXIT
    mkdir -p "$seeds/dsl" build-asan/fuzz-artifacts
    cp examples/models/*.lamda "$seeds/dsl/"
    if [ -x build-asan/lamda_fuzz_seeds ]; then build-asan/lamda_fuzz_seeds "$seeds"; fi
    if [ -x build-asan/lamda_fuzz_onnx ]; then
        /usr/bin/python3 tests/hostile/onnx_hostile.py --seeds "$seeds/onnx" || true  # 77 without python3-onnx
    fi
    # $jobs fuzzers at a time: each is one process on one core.
    fuzz_one() {
        local name=$1 fuzzer=build-asan/lamda_fuzz_$1 log=build-asan/fuzz-artifacts/fuzz_$1.log
        mkdir -p "$seeds/$name" "tests/fuzz/corpus/$name"
        # Crash reproducers (crash-*, leak-*, timeout-*, oom-*) land in build-asan/fuzz-artifacts/;
        # copy one into tests/fuzz/corpus/NAME/ once fixed, to keep it as a regression input.
        local status=0
        ASAN_OPTIONS=detect_leaks=1 "$fuzzer" "$seeds/$name" "tests/fuzz/corpus/$name" -runs="$runs" \
            -max_len=65536 -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
            -artifact_prefix=build-asan/fuzz-artifacts/ -print_final_stats=1 >"$log" 2>&1 || status=$?
        echo "$status" >"$log.status"
    }
    fuzzed=()
    for name in dsl safetensors onnx task_json profile_json journal_line agent_request url; do
        [ -x "build-asan/lamda_fuzz_$name" ] || { echo "fuzz_$name: not built (its parser is not in this build)"; continue; }
        while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
        echo "libFuzzer: fuzz_$name started, $runs runs or ${seconds}s"
        fuzz_one "$name" &
        fuzzed+=("$name")
    done
    wait
    for name in "${fuzzed[@]}"; do
        section "libFuzzer: fuzz_$name"
        log=build-asan/fuzz-artifacts/fuzz_$name.log
        # Everything but the progress lines (#N NEW/REDUCE/pulse ...); all of it is in $log.
        grep -vE '^#[0-9]+[[:space:]]+(NEW|REDUCE|pulse|RELOAD)' "$log" | tail -n 20
        status=$(cat "$log.status")
        if [ "$status" -ne 0 ]; then
            echo "fuzz_$name failed (exit $status): reproducer and full log in build-asan/fuzz-artifacts/" >&2
            exit 1
        fi
    done
fi

section "all checks passed in $((SECONDS - start))s"
