#!/usr/bin/env bash
# An installed lamda is usable from Meson through pkg-config: install the CMake build to a temporary
# prefix, then build and run a tiny consumer whose meson.build says dependency('lamda').
# usage: bash tests/pkgconfig_test.sh BUILD_DIR     (exits 77, skipped, without meson or pkg-config)
set -eu
build=$1
command -v meson >/dev/null 2>&1 && command -v pkg-config >/dev/null 2>&1 || { echo "no meson or pkg-config: skipped"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
pc=$tmp/prefix/share/pkgconfig/lamda.pc
[ -f "$pc" ] || { echo "FAIL: $pc not installed"; exit 1; }
# The man page and completions, generated at build time from the CLI, are installed with it.
if [ -f "$build/completions/lamda.bash" ]; then
    for f in share/bash-completion/completions/lamda share/zsh/site-functions/_lamda; do
        [ -s "$tmp/prefix/$f" ] || { echo "FAIL: $f not installed"; exit 1; }
    done
    grep -q "fmt" "$tmp/prefix/share/bash-completion/completions/lamda" || { echo "FAIL: no fmt in the completions"; exit 1; }
fi
if [ -f "$build/lamda.1" ]; then
    [ -s "$tmp/prefix/share/man/man1/lamda.1" ] || { echo "FAIL: the man page is not installed"; exit 1; }
fi
# The installed lamda opens its libtorch module from LIBDIR/lamda (tools/lamda/train_module.hpp):
# a training command gets as far as the dataset, which does not exist.
if [ -x "$tmp/prefix/bin/lamda" ] && "$tmp/prefix/bin/lamda" --version | grep -q "features:.*torch"; then
    ls "$tmp"/prefix/lib*/lamda/lamda-train.so "$tmp"/prefix/lib/*/lamda/lamda-train.so 2>/dev/null | grep -q . ||
        { echo "FAIL: lamda-train.so not installed under $tmp/prefix/lib"; exit 1; }
    printf 'i: input shape=8x8x1\ng: gap\nf: fc out=2\n' >"$tmp/m.lamda"
    if "$tmp/prefix/bin/lamda" train "$tmp/m.lamda" --dataset "$tmp/no-such-dataset" >"$tmp/train.log" 2>&1; then
        echo "FAIL: the installed lamda trained on a dataset that does not exist"; exit 1
    fi
    grep -q "no-such-dataset" "$tmp/train.log" && ! grep -q "could not be loaded" "$tmp/train.log" ||
        { echo "FAIL: the installed lamda did not reach the dataset:"; cat "$tmp/train.log"; exit 1; }
    echo "installed lamda: its training module loads"
fi
mkdir "$tmp/consumer"
cat >"$tmp/consumer/meson.build" <<'MESON'
project('consumer', 'cpp', default_options: ['cpp_std=c++17', 'warning_level=3', 'werror=true'])
executable('consumer', 'main.cpp', dependencies: dependency('lamda', version: '>=0.1'))
MESON
cat >"$tmp/consumer/main.cpp" <<'CPP'
#include <lamda/core.hpp>
#include <cstdio>
int main() {
    const lamda::ParseResult r = lamda::parse_dsl("input: input shape=8x8x1\nc: conv2d out=4 kernel=3\n");
    if (!r.ok()) return 1;
    std::printf("params %lld\n", static_cast<long long>(lamda::analyze(r.graph).params));
    return 0;
}
CPP
export PKG_CONFIG_PATH=$tmp/prefix/share/pkgconfig
pkg-config --cflags lamda | grep -q -- "-I$tmp/prefix/share/pkgconfig/../../include" \
    || { echo "FAIL: pkg-config --cflags lamda: $(pkg-config --cflags lamda)"; exit 1; }
meson setup "$tmp/consumer/build" "$tmp/consumer" >"$tmp/setup.log" 2>&1 || { cat "$tmp/setup.log"; exit 1; }
meson compile -C "$tmp/consumer/build" >"$tmp/compile.log" 2>&1 || { cat "$tmp/compile.log"; exit 1; }
out=$("$tmp/consumer/build/consumer")
[ "$out" = "params 40" ] || { echo "FAIL: consumer printed '$out'"; exit 1; }
echo "pkg-config consumer: ok ($out)"
