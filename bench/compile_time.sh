#!/usr/bin/env bash
# How long a project's translation unit takes to parse each way of including lamda, measured side
# by side (interleaved rounds, median per variant) with g++ -std=c++17 -fsyntax-only:
#   core        #include <lamda/core.hpp>            (include/)
#   core-single #include <lamda/lamda_core.hpp>      (single_include/)
#   full-single #include <lamda/lamda.hpp>           (single_include/, no feature macro)
#   before      the same, with single_include/lamda/lamda.hpp as it was before the core was split
#               out (commit 36fdd95; needs git and the repository's history)
# Usage: bash bench/compile_time.sh [ROUNDS=7] [CXX=g++]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
rounds=${1:-7}
cxx=${2:-g++}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf '#include <lamda/core.hpp>\n' > "$work/core.cpp"
printf '#include <lamda/lamda_core.hpp>\n' > "$work/core_single.cpp"
printf '#include <lamda/lamda.hpp>\n' > "$work/full_single.cpp"
declare -A cmd=(
    [core]="$cxx -std=c++17 -fsyntax-only -Iinclude $work/core.cpp"
    [core-single]="$cxx -std=c++17 -fsyntax-only -Isingle_include $work/core_single.cpp"
    [full-single]="$cxx -std=c++17 -fsyntax-only -Isingle_include $work/full_single.cpp"
)
order=(core core-single full-single)
if git cat-file -e 36fdd95:single_include/lamda/lamda.hpp 2>/dev/null; then
    mkdir -p "$work/before/lamda"
    git show 36fdd95:single_include/lamda/lamda.hpp > "$work/before/lamda/lamda.hpp"
    cmd[before]="$cxx -std=c++17 -fsyntax-only -I$work/before $work/full_single.cpp"
    order+=(before)
fi
declare -A times
for ((r = 0; r < rounds; r++)); do
    for v in "${order[@]}"; do
        start=$(date +%s.%N)
        ${cmd[$v]}
        end=$(date +%s.%N)
        times[$v]+="$(awk -v a="$start" -v b="$end" 'BEGIN { print b - a }') "
    done
done
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
full=$(echo "${times[full-single]}" | median)
printf '%-12s %10s %8s   (%s, %d rounds, load %s)\n' variant "median s" "x full" "$($cxx --version | head -n1)" "$rounds" "$(cut -d' ' -f1 /proc/loadavg)"
for v in "${order[@]}"; do
    m=$(echo "${times[$v]}" | median)
    printf '%-12s %10.3f %8.2f\n' "$v" "$m" "$(awk -v a="$m" -v b="$full" 'BEGIN { print a / b }')"
done
