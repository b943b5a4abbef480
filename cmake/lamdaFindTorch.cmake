# Finds libtorch the way Debian's libtorch-dev lays it out (headers under /usr/include and
# /usr/include/torch/csrc/api/include; libtorch, libtorch_cpu, libc10), without TorchConfig.cmake,
# which imposes its own flags. Used by lamda's own build and by the installed lamdaConfig.cmake.
#
# Sets:
#   LAMDA_TORCH_FOUND          TRUE when the headers and libraries were found
#   LAMDA_TORCH_INCLUDE_DIR, LAMDA_TORCH_API_INCLUDE_DIR, LAMDA_TORCH_LIBRARY,
#   LAMDA_TORCH_CPU_LIBRARY, LAMDA_C10_LIBRARY (cache variables)
# Defines:
#   lamda_link_torch(<target>)  adds libtorch, lamda::lamda and LAMDA_WITH_TORCH=1 to <target>'s
#                               INTERFACE (headers as SYSTEM: they do not pass our warnings)
include_guard(GLOBAL)

find_path(LAMDA_TORCH_API_INCLUDE_DIR torch/torch.h PATH_SUFFIXES torch/csrc/api/include)
find_path(LAMDA_TORCH_INCLUDE_DIR ATen/ATen.h)
find_library(LAMDA_TORCH_LIBRARY NAMES torch)
find_library(LAMDA_TORCH_CPU_LIBRARY NAMES torch_cpu)
find_library(LAMDA_C10_LIBRARY NAMES c10)
mark_as_advanced(LAMDA_TORCH_API_INCLUDE_DIR LAMDA_TORCH_INCLUDE_DIR LAMDA_TORCH_LIBRARY
    LAMDA_TORCH_CPU_LIBRARY LAMDA_C10_LIBRARY)

set(LAMDA_TORCH_FOUND FALSE)
if(LAMDA_TORCH_API_INCLUDE_DIR AND LAMDA_TORCH_INCLUDE_DIR AND LAMDA_TORCH_LIBRARY AND
        LAMDA_TORCH_CPU_LIBRARY AND LAMDA_C10_LIBRARY)
    set(LAMDA_TORCH_FOUND TRUE)
endif()

function(lamda_link_torch target)
    target_include_directories(${target} SYSTEM INTERFACE
        "${LAMDA_TORCH_API_INCLUDE_DIR}" "${LAMDA_TORCH_INCLUDE_DIR}")
    target_link_libraries(${target} INTERFACE lamda::lamda
        "${LAMDA_TORCH_LIBRARY}" "${LAMDA_TORCH_CPU_LIBRARY}" "${LAMDA_C10_LIBRARY}")
    target_compile_definitions(${target} INTERFACE LAMDA_WITH_TORCH=1)
endfunction()
