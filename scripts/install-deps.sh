#!/usr/bin/env bash
# Installs every Debian 12 package lamda needs to build, test, fuzz and benchmark.
# Idempotent and non-interactive; skips `apt-get update` when everything is already there.
# Run as root (CI does) or with sudo available.
set -euo pipefail

packages=(
    # toolchains and build systems
    g++ clang libclang-rt-14-dev cmake ninja-build meson pkg-config ccache python3 bash
    # header-only dependencies
    doctest-dev libcli11-dev libeigen3-dev libcpp-httplib-dev
    # compiled dependencies
    libsimdjson-dev libbenchmark-dev libxnnpack-dev libpthreadpool-dev libtorch-dev
    # an optimised BLAS for libtorch (Debian's default reference BLAS makes it 4x slower)
    libopenblas0-serial
)

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    echo "install-deps: all ${#packages[@]} packages already installed"
    exit 0
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        sudo=(sudo)
    else
        echo "install-deps: missing packages (${missing[*]}) and not root; rerun as root" >&2
        exit 1
    fi
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -q
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    "${missing[@]}"
