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
# The unpacked files are listed in /usr/aarch64-linux-gnu/share/lamda-arm64-debs.
set -euo pipefail

aarch64=${LAMDA_AARCH64:-0}
for arg in "$@"; do
    case $arg in
        --aarch64) aarch64=1 ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
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
    # gzip-compressed datasets (IDX .gz files, dataset.hpp)
    zlib1g-dev
    # an optimised BLAS for libtorch (Debian's default reference BLAS makes it 4x slower)
    libopenblas0-serial
    # the demo task's dataset (read from /usr/share/... by `--dataset fashion-mnist`)
    dataset-fashion-mnist
    # renders report.html headless in the generation loop's test
    chromium
    # `lamda export --pytorch` round-trip test, `lamda import` (ONNX) and its torchvision test
    python3-torch python3-torchvision python3-onnx libonnx-dev
)
if [ "$aarch64" = 1 ]; then
    packages+=(
        # the aarch64 cross build (cmake/toolchains/aarch64-linux-gnu.cmake,
        # cross/aarch64-linux-gnu.ini) and its tests under qemu-user
        g++-aarch64-linux-gnu qemu-user
    )
fi
# Debian's arm64 packages unpacked into the cross tree (see above); the files that must be there.
arm64_debs=(libxnnpack0 libxnnpack-dev libpthreadpool0 libpthreadpool-dev libcpuinfo0)
cross_root=/usr/aarch64-linux-gnu
arm64_files=(include/xnnpack.h include/pthreadpool.h lib/libXNNPACK.so lib/libXNNPACK.so.0
    lib/libpthreadpool.so lib/libpthreadpool.so.0 lib/libcpuinfo.so.0)

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
    "${sudo[@]}" mkdir -p "$cross_root/include" "$cross_root/lib" "$cross_root/share"
    manifest=()
    for f in "$work"/root/usr/include/*.h "$work"/root/usr/lib/aarch64-linux-gnu/*; do
        case $f in *.h) dest=$cross_root/include ;; *) dest=$cross_root/lib ;; esac
        "${sudo[@]}" cp -P "$f" "$dest/"
        manifest+=("$dest/$(basename "$f")")
    done
    {
        echo "# Unpacked by lamda's scripts/install-deps.sh --aarch64 from:"
        for deb in "$work"/*.deb; do echo "#   $(basename "$deb")"; done
        printf '%s\n' "${manifest[@]}"
    } | "${sudo[@]}" tee "$cross_root/share/lamda-arm64-debs" >/dev/null
    for f in "${arm64_files[@]}"; do
        [ -e "$cross_root/$f" ] || { echo "install-deps: $cross_root/$f is missing" >&2; exit 1; }
    done
fi
