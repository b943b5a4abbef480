#!/usr/bin/env bash
# Installs every Debian 12 package lamda needs to build, test, fuzz and benchmark.
# Idempotent and non-interactive; skips `apt-get update` when everything is already there.
# Run as root (CI does) or with sudo available.
#
#   bash scripts/install-deps.sh             the native (amd64) build
#   bash scripts/install-deps.sh --aarch64   also the aarch64 cross build and qemu-user
#                                            (or LAMDA_AARCH64=1)
#
# --aarch64 adds the arm64 architecture to apt/dpkg and installs g++-aarch64-linux-gnu and
# qemu-user. Debian 12's libxnnpack0/libxnnpack-dev/libpthreadpool0/libpthreadpool-dev are not
# "Multi-Arch: same", so their :arm64 packages cannot be installed next to the amd64 ones (apt
# would remove libxnnpack-dev:amd64 and libtorch-dev). Instead those :arm64 .debs (and
# libcpuinfo0:arm64, which XNNPACK needs at run time) are downloaded from Debian and unpacked
# into the cross toolchain's own tree, /usr/aarch64-linux-gnu/{include,lib}, next to the cross
# libc, where aarch64-linux-gnu-g++ and `qemu-aarch64 -L /usr/aarch64-linux-gnu` find them with
# no flags (what dpkg-cross does). No :arm64 package is installed through dpkg: libc6:arm64 in
# /lib/aarch64-linux-gnu, a different build of glibc than the cross toolchain's, would be picked
# up by the cross toolchain's ld.so under qemu and hang the first pthread_create.
# The same goes for what the latency model and the on-device agent (lamda-agent) link: simdjson,
# and cpp-httplib, which Debian builds as a shared library with OpenSSL, zlib and brotli (its
# run-time libraries and the -dev packages whose headers and pkg-config files a build needs;
# libssl-dev's opensslconf.h/configuration.h are arm64's own). Their pkg-config files are
# rewritten to point into the cross tree (prefix /usr/aarch64-linux-gnu, libdir .../lib), where
# the toolchain file and the cross file look for .pc files. Static libraries, CMake package files
# (whose paths assume /usr/lib/aarch64-linux-gnu; lamda finds simdjson through pkg-config when its
# CMake package is missing) and OpenSSL's engines and modules are left out.
# The unpacked files are listed in /usr/aarch64-linux-gnu/share/lamda-arm64-debs.
set -euo pipefail

aarch64=${LAMDA_AARCH64:-0}
for arg in "$@"; do
    case $arg in
        --aarch64) aarch64=1 ;;
        -h|--help) sed -n '2,/^set -euo/{/^#/p}' "$0"; exit 0 ;;
        *) echo "install-deps: unknown argument '$arg' (see --help)" >&2; exit 2 ;;
    esac
done

packages=(
    # toolchains and build systems
    g++ clang libclang-rt-14-dev cmake ninja-build meson pkg-config ccache python3 bash
    # header-only dependencies
    doctest-dev libcli11-dev libeigen3-dev libcpp-httplib-dev
    # compiled dependencies
    libsimdjson-dev libbenchmark-dev libxnnpack-dev libpthreadpool-dev libtorch-dev
    # gzip-compressed datasets (IDX .gz files, data/dataset.hpp)
    zlib1g-dev
    # scale-out: `mpirun -n N lamda generate` (search/mpi.hpp, tests/mpi_test.sh, docs/scale.md)
    libopenmpi-dev openmpi-bin
    # an optimised BLAS for libtorch (Debian's default reference BLAS makes it 4x slower)
    libopenblas0-serial
    # the demo task's dataset (read from /usr/share/... by `--dataset fashion-mnist`)
    dataset-fashion-mnist
    # renders report.html headless in the generation loop's test
    chromium
    # the man page, generated at build time from `lamda --help` (docs/cli.md)
    help2man
    # `lamda export --pytorch` round-trip test, `lamda import` (ONNX) and its torchvision test
    python3-torch python3-torchvision python3-onnx libonnx-dev
    # node for ONNX Runtime (onnxruntime-node from npm, bench/peers): that test's reference
    # outputs and bench/peers/compare.py; scripts/test.sh runs the npm install
    nodejs
    # `lamda export --firmware` on an emulated Cortex-M4 (examples/mcu, tests/firmware_mcu_test.sh)
    gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm
)
# npm: Debian's package, unless an npm is already on PATH (NodeSource's nodejs, which satisfies
# the nodejs above, bundles npm and conflicts with Debian's npm package).
if ! command -v npm >/dev/null 2>&1; then
    packages+=(npm)
fi
if [ "$aarch64" = 1 ]; then
    packages+=(
        # the aarch64 cross build (cmake/toolchains/aarch64-linux-gnu.cmake,
        # cross/aarch64-linux-gnu.ini) and its tests under qemu-user
        g++-aarch64-linux-gnu qemu-user
    )
fi
# Debian's arm64 packages unpacked into the cross tree (see above); the files that must be there.
arm64_debs=(
    # XNNPACK (the executor)
    libxnnpack0 libxnnpack-dev libpthreadpool0 libpthreadpool-dev libcpuinfo0
    # simdjson (the latency model) and zlib (gzip datasets; cpp-httplib)
    libsimdjson14 libsimdjson-dev zlib1g zlib1g-dev
    # cpp-httplib (the LLM generator, lamda-agent) and what it links: OpenSSL, brotli, zlib
    libcpp-httplib0.11 libcpp-httplib-dev libssl3 libssl-dev libbrotli1 libbrotli-dev
)
cross_root=/usr/aarch64-linux-gnu
triple="aarch64-linux-gnu"
# One file or more of each package above: a missing one (e.g. a tree unpacked by an older
# version of this script) makes the script unpack them all again.
arm64_files=(include/xnnpack.h include/pthreadpool.h lib/libXNNPACK.so lib/libXNNPACK.so.0
    lib/libpthreadpool.so lib/libpthreadpool.so.0 lib/libcpuinfo.so.0
    include/simdjson.h lib/libsimdjson.so lib/libsimdjson.so.14 lib/pkgconfig/simdjson.pc
    include/zlib.h include/zconf.h lib/libz.so lib/libz.so.1 lib/pkgconfig/zlib.pc
    include/httplib.h lib/libcpp-httplib.so lib/libcpp-httplib.so.0.11 lib/pkgconfig/cpp-httplib.pc
    lib/libssl.so lib/libssl.so.3 lib/libcrypto.so lib/libcrypto.so.3 include/openssl/ssl.h
    include/openssl/configuration.h lib/pkgconfig/openssl.pc lib/pkgconfig/libssl.pc
    lib/pkgconfig/libcrypto.pc
    include/brotli/decode.h lib/libbrotlicommon.so.1 lib/libbrotlidec.so.1 lib/libbrotlienc.so.1
    lib/libbrotlicommon.so lib/libbrotlidec.so lib/libbrotlienc.so lib/pkgconfig/libbrotlicommon.pc
    lib/pkgconfig/libbrotlidec.pc lib/pkgconfig/libbrotlienc.pc)

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done

missing_arm64=0
if [ "$aarch64" = 1 ]; then
    for f in "${arm64_files[@]}"; do
        [ -e "$cross_root/$f" ] || missing_arm64=1
    done
fi

if [ ${#missing[@]} -eq 0 ] && [ "$missing_arm64" = 0 ]; then
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

export DEBIAN_FRONTEND=noninteractive
apt_opts=(-o DPkg::Lock::Timeout=600)
if [ "$aarch64" = 1 ] && ! dpkg --print-foreign-architectures | grep -qx arm64; then
    echo "install-deps: dpkg --add-architecture arm64"
    "${sudo[@]}" dpkg --add-architecture arm64
fi
"${sudo[@]}" apt-get "${apt_opts[@]}" update -q
if [ ${#missing[@]} -gt 0 ]; then
    echo "install-deps: installing ${missing[*]}"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" install -y -q \
        --no-install-recommends "${missing[@]}"
fi

if [ "$missing_arm64" = 1 ]; then
    echo "install-deps: unpacking ${arm64_debs[*]/%/:arm64} into $cross_root"
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    # apt-get download run by root fetches as the _apt user, which must be able to write here.
    if [ "$(id -u)" -eq 0 ] && id _apt >/dev/null 2>&1; then chown _apt "$work"; fi
    (cd "$work" && apt-get "${apt_opts[@]}" download -q "${arm64_debs[@]/%/:arm64}")
    for deb in "$work"/*.deb; do
        dpkg-deb -x "$deb" "$work/root"
    done
    "${sudo[@]}" mkdir -p "$cross_root/include" "$cross_root/lib/pkgconfig" "$cross_root/share"
    manifest=()
    # Copies one unpacked file to $cross_root/$2 (a directory of it is made as needed).
    put() {
        local src=$1 dest=$cross_root/$2 target
        "${sudo[@]}" mkdir -p "$(dirname "$dest")"
        if [ -L "$src" ]; then
            # Every library lands in one directory: an absolute link (zlib1g-dev's libz.so ->
            # /lib/aarch64-linux-gnu/libz.so.1.2.13) becomes one to the file's name.
            target=$(readlink "$src")
            case $target in /*) target=$(basename "$target") ;; esac
            "${sudo[@]}" ln -sfn "$target" "$dest"
        elif [[ $src == *.pc ]]; then
            # prefix=/usr, libdir=${prefix}/lib/aarch64-linux-gnu -> the cross tree's.
            sed -e "s|/usr/lib/$triple|$cross_root/lib|g" -e "s|/lib/$triple|/lib|g" \
                -e "s|^\([A-Za-z_]*\)=/usr\$|\1=$cross_root|" \
                -e "s|^\([A-Za-z_]*\)=/usr/include\$|\1=$cross_root/include|" "$src" |
                "${sudo[@]}" tee "$dest" >/dev/null
        else
            "${sudo[@]}" cp -f "$src" "$dest"
        fi
        manifest+=("$dest")
    }
    root=$work/root
    # Headers: usr/include/** and the arch-specific usr/include/aarch64-linux-gnu/** both go to
    # $cross_root/include (openssl/configuration.h is arm64's own).
    while IFS= read -r f; do
        rel=${f#"$root"/usr/include/}
        case $rel in "$triple"/*) rel=${rel#"$triple"/} ;; esac
        put "$f" "include/$rel"
    done < <(find "$root/usr/include" \( -type f -o -type l \) 2>/dev/null | sort)
    # Shared libraries (usr/lib/<triple> and, for zlib1g, lib/<triple>) and pkg-config files.
    while IFS= read -r f; do
        put "$f" "lib/$(basename "$f")"
    done < <(find "$root/usr/lib/$triple" "$root/lib/$triple" -maxdepth 1 -name '*.so*' \
                 \( -type f -o -type l \) 2>/dev/null | sort)
    while IFS= read -r f; do
        put "$f" "lib/pkgconfig/$(basename "$f")"
    done < <(find "$root/usr/lib/$triple/pkgconfig" -name '*.pc' 2>/dev/null | sort)
    {
        echo "# Unpacked by lamda's scripts/install-deps.sh --aarch64 from:"
        for deb in "$work"/*.deb; do echo "#   $(basename "$deb")"; done
        printf '%s\n' "${manifest[@]}"
    } | "${sudo[@]}" tee "$cross_root/share/lamda-arm64-debs" >/dev/null
    for f in "${arm64_files[@]}"; do
        [ -e "$cross_root/$f" ] || { echo "install-deps: $cross_root/$f is missing" >&2; exit 1; }
    done
fi
