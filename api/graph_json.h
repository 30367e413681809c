/* api/graph_json.h — read a task graph described in JSON (the format of
 * `loom submit`, documented in the README) into a loom_graph.  Not public. */
#ifndef LOOM_API_GRAPH_JSON_H
#define LOOM_API_GRAPH_JSON_H

#include <stddef.h>
#include "loom/loom.h"

/* Callback used to turn a "library" path into a ref (the CLI uploads it with
 * loom_library_load).  May be NULL: then every function task must carry a
 * "library_ref" (40 hex chars) instead. */
typedef int (*loom_graph_json_lib_fn)(void *arg, const char *path, loom_ref *out);

/* Parse len bytes of JSON text.  base_dir resolves relative "file" arguments
 * and library paths (NULL: the current directory).  On error returns LOOM_EINVAL
 * (or LOOM_ENOMEM / the callback's error) and writes a one-line reason with the
 * JSON path of the bad element into err (errlen bytes). */
int loom__graph_from_json(const char *text, size_t len, const char *base_dir,
                          loom_graph_json_lib_fn lib_fn, void *lib_arg,
                          loom_graph **out, char *err, size_t errlen);

/* The same for a document from a remote user (the HTTP gateway): "file"
 * arguments, which would read the server's files, are refused, and library
 * paths go to lib_fn, which decides what they may name. */
int loom__graph_from_json_remote(const char *text, size_t len, loom_graph_json_lib_fn lib_fn, void *lib_arg,
                                 loom_graph **out, char *err, size_t errlen);

/* The document's top-level "name" (the job name) into out, truncated to
 * outlen - 1 bytes; "" when it has none.  Call it on text that
 * loom__graph_from_json accepted.  0, or LOOM_EINVAL for bad arguments. */
int loom__graph_json_name(const char *text, size_t len, char *out, size_t outlen);

#endif
