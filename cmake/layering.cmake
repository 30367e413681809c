# cmake/layering.cmake — the layers of docs/ARCHITECTURE.md, checked when
# the build is configured: a folder's sources may include (#include "DIR/...")
# only the folders below it, its own, and the public headers (loom/...).
#
#   base <- runtime <- objectstore <- scheduler, worker <- api
#        <- serve <- shard;  tune;  gateway (in the head's process);  cli
#
# serve, tune and shard are shared libraries over libloom.so: they see only
# its public API (include/loom/) and the internal base library; so is python
# (the _loom extension and libloom_python.so), which sees the public API only.  gateway and
# cli are linked with libloom's objects into the loom binary.
set(LOOM_LAYERS
  "base:"
  "runtime:base"
  "objectstore:base runtime"
  "scheduler:base runtime objectstore"
  "worker:base runtime objectstore"
  "api:base runtime objectstore"
  "serve:base"
  "tune:base"
  "shard:base serve"
  "python:"
  "gateway:base runtime objectstore api serve"
  "cli:base runtime objectstore scheduler worker api serve tune shard gateway")

function(loom_check_layering)
  set(errors "")
  foreach(entry ${LOOM_LAYERS})
    string(REPLACE ":" ";" parts "${entry}")
    list(GET parts 0 dir)
    list(LENGTH parts n)
    set(allowed ${dir} loom)
    if(n GREATER 1)
      list(GET parts 1 below)
      string(REPLACE " " ";" below "${below}")
      list(APPEND allowed ${below})
    endif()
    file(GLOB sources ${CMAKE_SOURCE_DIR}/${dir}/*.c ${CMAKE_SOURCE_DIR}/${dir}/*.h)
    foreach(src ${sources})
      file(STRINGS ${src} includes REGEX "^[ \t]*#[ \t]*include[ \t]+\"[A-Za-z0-9_]+/")
      foreach(line ${includes})
        string(REGEX REPLACE "^[ \t]*#[ \t]*include[ \t]+\"([A-Za-z0-9_]+)/.*" "\\1" inc "${line}")
        list(FIND allowed ${inc} found)
        if(found EQUAL -1)
          file(RELATIVE_PATH rel ${CMAKE_SOURCE_DIR} ${src})
          string(APPEND errors "\n  ${rel} includes ${inc}/, above or beside ${dir}/ (it may include: ${allowed})")
        endif()
      endforeach()
    endforeach()
  endforeach()
  # every folder with sources has a layer
  file(GLOB dirs LIST_DIRECTORIES true ${CMAKE_SOURCE_DIR}/*)
  foreach(d ${dirs})
    get_filename_component(name ${d} NAME)
    file(GLOB csrc ${d}/*.c)
    if(csrc AND NOT name MATCHES "^(tests|bench|examples|build.*)$")
      set(listed FALSE)
      foreach(entry ${LOOM_LAYERS})
        if(entry MATCHES "^${name}:")
          set(listed TRUE)
        endif()
      endforeach()
      if(NOT listed)
        string(APPEND errors "\n  ${name}/ has sources but no layer in cmake/layering.cmake")
      endif()
    endif()
  endforeach()
  if(errors)
    message(FATAL_ERROR "loom: layering violations (cmake/layering.cmake):${errors}")
  endif()
endfunction()
