/* api/local.h — the embedded local cluster behind loom_connect("local"): a
 * head and N node daemons started as child processes of the driver, in a
 * fresh state directory, stopped (and their files removed) by loom__local_stop
 * or when the driver exits. */
#ifndef LOOM_API_LOCAL_H
#define LOOM_API_LOCAL_H
#include <stddef.h>
#include "loom/loom.h"

typedef struct loom_local loom_local;

int loom__local_start(const loom_connect_opts *opts, loom_local **out, char *address, size_t addrlen,
                      char secret[65], char *err, size_t errlen);
int loom__local_num_nodes(const loom_local *l);
void loom__local_stop(loom_local **l);
#endif
