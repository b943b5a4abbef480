# Finds XNNPACK and pthreadpool, which ship neither pkg-config nor CMake files on Debian
# (libxnnpack-dev, libpthreadpool-dev). Used by lamda's own build and by the installed
# lamdaConfig.cmake.
#
# Sets:
#   LAMDA_XNNPACK_FOUND           TRUE when the headers and libraries were found and link
#   LAMDA_XNNPACK_LIBRARY, LAMDA_PTHREADPOOL_LIBRARY, LAMDA_XNNPACK_INCLUDE_DIR,
#   LAMDA_PTHREADPOOL_INCLUDE_DIR (cache variables; set them to point at another install)
# Defines:
#   lamda_link_xnnpack(<target>)  adds XNNPACK, pthreadpool, lamda::lamda and
#                                 LAMDA_WITH_XNNPACK=1 to <target>'s INTERFACE
include_guard(GLOBAL)

find_path(LAMDA_XNNPACK_INCLUDE_DIR xnnpack.h)
find_path(LAMDA_PTHREADPOOL_INCLUDE_DIR pthreadpool.h)
find_library(LAMDA_XNNPACK_LIBRARY NAMES XNNPACK xnnpack)
find_library(LAMDA_PTHREADPOOL_LIBRARY NAMES pthreadpool)
mark_as_advanced(LAMDA_XNNPACK_INCLUDE_DIR LAMDA_PTHREADPOOL_INCLUDE_DIR
    LAMDA_XNNPACK_LIBRARY LAMDA_PTHREADPOOL_LIBRARY)

set(LAMDA_XNNPACK_FOUND FALSE)
if(LAMDA_XNNPACK_INCLUDE_DIR AND LAMDA_PTHREADPOOL_INCLUDE_DIR AND
        LAMDA_XNNPACK_LIBRARY AND LAMDA_PTHREADPOOL_LIBRARY)
    # A header check alone is not enough: make sure the library links (its own dependencies,
    # such as cpuinfo, must be resolvable too). Projects without C++ enabled trust the files.
    if(NOT CMAKE_CXX_COMPILER_LOADED)
        set(LAMDA_XNNPACK_LINKS TRUE)
    endif()
    include(CheckCXXSourceCompiles)
    include(CMakePushCheckState)
    cmake_push_check_state(RESET)
    set(CMAKE_REQUIRED_QUIET ON)
    set(CMAKE_REQUIRED_INCLUDES "${LAMDA_XNNPACK_INCLUDE_DIR}" "${LAMDA_PTHREADPOOL_INCLUDE_DIR}")
    set(CMAKE_REQUIRED_LIBRARIES "${LAMDA_XNNPACK_LIBRARY}" "${LAMDA_PTHREADPOOL_LIBRARY}")
    if(NOT DEFINED LAMDA_XNNPACK_LINKS)
        check_cxx_source_compiles([[
            #include <xnnpack.h>
            #include <pthreadpool.h>
            int main() {
                pthreadpool_t pool = pthreadpool_create(1);
                const bool ok = xnn_initialize(nullptr) == xnn_status_success;
                pthreadpool_destroy(pool);
                return ok ? 0 : 1;
            }]] LAMDA_XNNPACK_LINKS)
    endif()
    cmake_pop_check_state()
    if(LAMDA_XNNPACK_LINKS)
        set(LAMDA_XNNPACK_FOUND TRUE)
    endif()
endif()

function(lamda_link_xnnpack target)
    target_include_directories(${target} SYSTEM INTERFACE
        "${LAMDA_XNNPACK_INCLUDE_DIR}" "${LAMDA_PTHREADPOOL_INCLUDE_DIR}")
    target_link_libraries(${target} INTERFACE
        lamda::lamda "${LAMDA_XNNPACK_LIBRARY}" "${LAMDA_PTHREADPOOL_LIBRARY}")
    target_compile_definitions(${target} INTERFACE LAMDA_WITH_XNNPACK=1)
endfunction()
