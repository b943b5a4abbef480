#!/usr/bin/env bash
# fp32 against int8 through the XNNPACK executor: the zoo at 224x224x3 and the 28x28 models,
# 1 thread, timed run for run in alternation (bench/bench_int8.cpp); prints a Markdown table.
#
#   bench/int8_table.sh [--rounds N] [--qemu]
#
# --qemu builds for aarch64 (aarch64-linux-gnu-g++, Debian's arm64 XNNPACK in
# /usr/aarch64-linux-gnu; scripts/install-deps.sh --aarch64) and runs under qemu-aarch64: its
# times are emulated (meaningless), the output error column is the check that the int8 path
# computes the same there. Needs libxnnpack-dev and libpthreadpool-dev (or their arm64 copies).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
rounds=30
qemu=0
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) rounds="$2"; shift 2 ;;
        --qemu) qemu=1; shift ;;
        *) echo "usage: bench/int8_table.sh [--rounds N] [--qemu]" >&2; exit 2 ;;
    esac
done
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cxx="${CXX:-c++}"
run=()
flags=()
arch="$(uname -m)"
if [ "$qemu" = 1 ]; then
    cxx=aarch64-linux-gnu-g++
    flags=(-Wno-psabi)
    arch="aarch64 under qemu-aarch64 (times are emulated)"
    sysroot=/usr/aarch64-linux-gnu
    run=(qemu-aarch64 -L "$sysroot" -E "LD_LIBRARY_PATH=$sysroot/lib")
fi
"$cxx" -std=c++17 -O2 -DNDEBUG -DLAMDA_WITH_XNNPACK=1 "${flags[@]}" -I"$here/include" \
    "$here/bench/bench_int8.cpp" -o "$work/bench_int8" -lXNNPACK -lpthreadpool -lpthread
m="$here/examples/models"
echo "# $arch, $("$cxx" --version | head -1), 1 thread, $rounds rounds"
"${run[@]}" "$work/bench_int8" --rounds "$rounds" \
    "$m/mobilenet_v2.lamda" "$m/mobilenet_v3_small.lamda" "$m/mnasnet0_5.lamda" \
    "$m/squeezenet1_1.lamda" "$m/resnet18.lamda" "$m/lenet5.lamda" "$m/tiny_mobilenet.lamda"
