# What `cmake --install` (and so the Debian packages, debian/*.install)
# puts where. The programs go to bin/: parley-agent finds parley-vmm and
# the process backend's parley-vmm-stub beside itself. The partition SDK
# (headers, the freestanding guest library, its link script and a CMake
# helper) goes under include/parley and LIBDIR/parley-guest.
include(GNUInstallDirs)

install(TARGETS parleyd parley-pki parley-pkg parley-agent parley-vmm
  parley-vmm-stub parleyctl parley-smcp RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

set(PARLEY_GUEST_INSTALL_DIR ${CMAKE_INSTALL_LIBDIR}/parley-guest)
set(PARLEY_GUEST_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/ParleyGuest)
install(FILES ${CMAKE_SOURCE_DIR}/include/parley/abi.h
  ${CMAKE_SOURCE_DIR}/include/parley/hypercall.h
  ${CMAKE_SOURCE_DIR}/include/parley/ring.h
  ${CMAKE_SOURCE_DIR}/include/parley/svc.h
  ${CMAKE_SOURCE_DIR}/include/parley/segset.h
  ${CMAKE_SOURCE_DIR}/guest/include/parley/guest.h
  ${CMAKE_SOURCE_DIR}/guest/include/parley/segsdk.h
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/parley)
install(TARGETS parley_guest ARCHIVE DESTINATION ${PARLEY_GUEST_INSTALL_DIR})
install(FILES ${CMAKE_SOURCE_DIR}/guest/lib/link.ld
  DESTINATION ${PARLEY_GUEST_INSTALL_DIR})

# The helper finds the SDK relative to itself, so an unpacked package
# (dpkg-deb -x) works as well as an installed one.
file(RELATIVE_PATH PARLEY_GUEST_TO_PREFIX
  /prefix/${PARLEY_GUEST_CMAKE_DIR} /prefix)
configure_file(${CMAKE_SOURCE_DIR}/cmake/ParleyGuestConfig.cmake.in
  ${CMAKE_BINARY_DIR}/ParleyGuestConfig.cmake @ONLY)
configure_file(${CMAKE_SOURCE_DIR}/cmake/ParleyGuestConfigVersion.cmake.in
  ${CMAKE_BINARY_DIR}/ParleyGuestConfigVersion.cmake @ONLY)
install(FILES ${CMAKE_BINARY_DIR}/ParleyGuestConfig.cmake
  ${CMAKE_BINARY_DIR}/ParleyGuestConfigVersion.cmake
  DESTINATION ${PARLEY_GUEST_CMAKE_DIR})

# The web console (daemon/CMakeLists.txt, daemon/rpc/api_ui.c): parleyd
# finds it at ../share/parley/console from its own directory.
install(DIRECTORY ${CMAKE_SOURCE_DIR}/dist/console/
  DESTINATION ${CMAKE_INSTALL_DATADIR}/parley/console)

# Device plugins (agent/plugin/README.md) where parley-agent looks by
# default: /usr/lib/parley/plugins, not the multiarch LIBDIR (the path is
# fixed in agent/plugin/agentset.h). Their manifests are written from the
# installed files themselves, so that a hash always names the file that
# ships (debian/rules keeps dh_strip and dh_dwz off them afterwards).
set(PARLEY_PLUGIN_INSTALL_DIR lib/parley/plugins)
install(TARGETS parley-plugin-file parley-plugin-console parley-plugin-xts
  LIBRARY DESTINATION ${PARLEY_PLUGIN_INSTALL_DIR})
foreach(p file:block console:console xts:transform)
  string(REPLACE ":" ";" pc ${p})
  list(GET pc 0 name)
  list(GET pc 1 class)
  install(CODE "
    set(dir \"\$ENV{DESTDIR}\${CMAKE_INSTALL_PREFIX}/${PARLEY_PLUGIN_INSTALL_DIR}\")
    execute_process(COMMAND \${CMAKE_COMMAND}
      -DSO=\${dir}/parley-plugin-${name}.so -DNAME=${name} -DCLASS=${class}
      -DOUT=\${dir}/manifests/${name}.json
      -P ${CMAKE_SOURCE_DIR}/cmake/plugin_manifest.cmake
      RESULT_VARIABLE rc)
    if(rc)
      message(FATAL_ERROR \"manifest of plugin ${name}: \${rc}\")
    endif()
    message(STATUS \"Manifest: \${dir}/manifests/${name}.json\")")
endforeach()
