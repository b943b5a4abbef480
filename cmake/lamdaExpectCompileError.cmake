# Script mode (cmake -P): compile SOURCE and succeed only if the compiler rejects it with a
# diagnostic matching EXPECT. Used by the compile-fail tests of both CMake and Meson.
#
#   cmake -DCOMPILER="c++" -DSOURCE=file.cpp -DINCLUDE_DIR=include \
#         -DEXPECT="static.assert.*lamda: " [-DFLAGS="-std=c++17"] -P lamdaExpectCompileError.cmake
#
# COMPILER and FLAGS are ;-separated lists (COMPILER may be e.g. "ccache;c++").
foreach(var COMPILER SOURCE INCLUDE_DIR EXPECT)
    if(NOT DEFINED ${var})
        message(FATAL_ERROR "lamdaExpectCompileError.cmake: -D${var}=... is required")
    endif()
endforeach()
if(NOT DEFINED FLAGS)
    set(FLAGS -std=c++17)
endif()

execute_process(
    COMMAND ${COMPILER} ${FLAGS} -fsyntax-only "-I${INCLUDE_DIR}" "${SOURCE}"
    RESULT_VARIABLE result
    OUTPUT_VARIABLE output
    ERROR_VARIABLE output)

if(result EQUAL 0)
    message(FATAL_ERROR "${SOURCE} compiled, but it must not: the mistake it contains "
        "is no longer caught at compile time")
endif()
# Match line by line (";" would split the list, so neutralise it first).
string(REPLACE ";" "," flat "${output}")
string(REGEX MATCHALL "[^\n]+" lines "${flat}")
set(matched "")
foreach(line IN LISTS lines)
    if(line MATCHES "${EXPECT}")
        set(matched "${line}")
        break()
    endif()
endforeach()
if(matched STREQUAL "")
    message(FATAL_ERROR "${SOURCE} failed to compile, but not with the expected error "
        "(no line matches the regex '${EXPECT}'). Compiler output:\n${output}")
endif()
message(STATUS "rejected as expected: ${matched}")
