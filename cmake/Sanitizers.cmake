# LINSERVE_SANITIZE=address|undefined|thread adds the sanitizer to every
# target of the build (compile and link flags).
if(LINSERVE_SANITIZE STREQUAL "")
  return()
endif()
if(LINSERVE_SANITIZE STREQUAL "address")
  set(_linserve_san_flags -fsanitize=address -fno-omit-frame-pointer)
elseif(LINSERVE_SANITIZE STREQUAL "undefined")
  set(_linserve_san_flags -fsanitize=undefined -fno-sanitize-recover=undefined
      -fno-omit-frame-pointer)
elseif(LINSERVE_SANITIZE STREQUAL "thread")
  set(_linserve_san_flags -fsanitize=thread -fno-omit-frame-pointer)
else()
  message(FATAL_ERROR
    "LINSERVE_SANITIZE must be address, undefined or thread, not '${LINSERVE_SANITIZE}'")
endif()
add_compile_options(${_linserve_san_flags})
add_link_options(${_linserve_san_flags})
message(STATUS "linserve: building with -fsanitize=${LINSERVE_SANITIZE}")
