# Cross-compiles for 64-bit Arm Linux (aarch64) with Debian's cross toolchain:
#   bash scripts/install-deps.sh --aarch64      # g++-aarch64-linux-gnu, qemu-user, arm64 XNNPACK
#   cmake -B build-aarch64 -G Ninja -DCMAKE_TOOLCHAIN_FILE=cmake/toolchains/aarch64-linux-gnu.cmake
#   cmake --build build-aarch64 && ctest --test-dir build-aarch64   # tests run under qemu-aarch64
#
# Libraries for the target are looked for, in this order, in
#   LAMDA_AARCH64_SYSROOT (default /usr/aarch64-linux-gnu: where the cross libc lives, and where
#                         install-deps.sh --aarch64 unpacks Debian's arm64 XNNPACK/pthreadpool,
#                         simdjson, zlib and cpp-httplib with OpenSSL and brotli),
#   /usr/lib/aarch64-linux-gnu (Debian multiarch: packages installed as foo:arm64).
# Never in the host's /usr/lib/x86_64-linux-gnu (CMAKE_LIBRARY_ARCHITECTURE is aarch64-linux-gnu).
# Arch-independent header-only packages (doctest, CLI11) are found in /usr/include, which
# Debian's cross compiler searches last.
#
# Programs built here are run on the build machine through CMAKE_CROSSCOMPILING_EMULATOR
# (qemu-aarch64 -L <sysroot>): ctest, doctest_discover_tests() and add_test(COMMAND <target>)
# use it. Without qemu the build still works; only running the tests needs it.

set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(_lamda_triple aarch64-linux-gnu)
set(CMAKE_C_COMPILER ${_lamda_triple}-gcc)
set(CMAKE_CXX_COMPILER ${_lamda_triple}-g++)
set(CMAKE_LIBRARY_ARCHITECTURE ${_lamda_triple})
# GCC notes on aarch64 that passing std::pair<float, float> changed ABI in GCC 10.1 (-Wpsabi);
# everything here is built by one compiler, so the note is noise.
set(CMAKE_C_FLAGS_INIT "-Wno-psabi")
set(CMAKE_CXX_FLAGS_INIT "-Wno-psabi")

if(NOT DEFINED LAMDA_AARCH64_SYSROOT)
    if(DEFINED ENV{LAMDA_AARCH64_SYSROOT})
        set(LAMDA_AARCH64_SYSROOT "$ENV{LAMDA_AARCH64_SYSROOT}")
    else()
        set(LAMDA_AARCH64_SYSROOT /usr/${_lamda_triple})
    endif()
endif()
# try_compile() projects re-read this file: hand them the same value.
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES LAMDA_AARCH64_SYSROOT)

# find_library()/find_path()/find_package() look under the sysroot first, then the build
# machine's own prefixes (multiarch); programs (python3, bash, qemu) come from the build machine.
set(CMAKE_FIND_ROOT_PATH "${LAMDA_AARCH64_SYSROOT}")
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)

# pkg-config (cpp-httplib, simdjson: FindPkgConfig) reads the target's .pc files only, as the Meson
# cross file's pkg_config_libdir does: the sysroot's (install-deps.sh --aarch64 rewrites Debian's
# arm64 ones into it), multiarch ones, and arch-independent ones; never the build machine's
# /usr/lib/x86_64-linux-gnu/pkgconfig, whose libraries would be x86_64 ones.
set(ENV{PKG_CONFIG_LIBDIR}
    "${LAMDA_AARCH64_SYSROOT}/lib/pkgconfig:/usr/lib/${_lamda_triple}/pkgconfig:/usr/share/pkgconfig")

# -E LD_LIBRARY_PATH: the guest's libc must be the sysroot's, the one its ld.so belongs to. Without
# it, a libc6:arm64 installed through multiarch (/lib/aarch64-linux-gnu) is found first, and a
# mismatched ld.so/libc pair hangs in the first pthread_create.
if(NOT CMAKE_CROSSCOMPILING_EMULATOR)
    find_program(LAMDA_QEMU_AARCH64 NAMES qemu-aarch64 qemu-aarch64-static)
    if(LAMDA_QEMU_AARCH64)
        set(CMAKE_CROSSCOMPILING_EMULATOR "${LAMDA_QEMU_AARCH64};-L;${LAMDA_AARCH64_SYSROOT}"
            "-E;LD_LIBRARY_PATH=${LAMDA_AARCH64_SYSROOT}/lib")
    endif()
endif()
