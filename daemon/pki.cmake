# parley-pki: throw-away CA, certificates and policy key for tests and the
# demo (daemon/pki_main.c). Included from daemon/CMakeLists.txt.
add_executable(parley-pki ${CMAKE_CURRENT_SOURCE_DIR}/pki_main.c)
target_link_libraries(parley-pki PRIVATE parley_common)
set_target_properties(parley-pki PROPERTIES
  RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/bin)
# The glob in daemon/CMakeLists.txt also puts pki_main.c into
# parley_daemonlib; there it compiles to nothing (see the guard in it).
target_compile_definitions(parley-pki PRIVATE PARLEY_PKI_TOOL)
