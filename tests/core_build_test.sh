#!/usr/bin/env bash
# Builds examples/hello against the runtime-free core the way a firmware project would
# (-fno-exceptions -fno-rtti, warnings as errors), from include/ and from the single header
# single_include/lamda/lamda_core.hpp, and runs it.
#   tests/core_build_test.sh COMPILER SOURCE_DIR
set -euo pipefail
cxx=$1
src=$2
if ! command -v "$cxx" >/dev/null 2>&1; then
    echo "skipped: $cxx not found"
    exit 77
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
flags=(-std=c++17 -fno-exceptions -fno-rtti -Wall -Wextra -Wpedantic -Wshadow -Werror -O1)
for include in "$src/include" "$work/single"; do
    if [ "$include" = "$work/single" ]; then
        # Only the single core header, under the name a project would include it by.
        mkdir -p "$work/single/lamda"
        cp "$src/single_include/lamda/lamda_core.hpp" "$work/single/lamda/core.hpp"
    fi
    "$cxx" "${flags[@]}" -I"$include" "$src/examples/hello/hello.cpp" -o "$work/hello"
    out=$("$work/hello")
    echo "$include: $out"
    if [ "$out" != "hello: 618 params, 110752 MACs" ]; then
        echo "unexpected output from hello built against $include" >&2
        exit 1
    fi
    # The core must not pull in what firmware cannot have.
    printf '#include <lamda/core.hpp>\n' > "$work/probe.cpp"
    banned=$("$cxx" -std=c++17 -I"$include" -fsyntax-only -H "$work/probe.cpp" 2>&1 |
        grep -E '/(thread|filesystem|fstream|random|iostream)$' || true)
    if [ -n "$banned" ]; then
        echo "lamda/core.hpp includes a header the core must not use:" >&2
        echo "$banned" >&2
        exit 1
    fi
done
echo "core builds with -fno-exceptions -fno-rtti: ok"
