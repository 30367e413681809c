/* cli/tune_cmd.h — `loom tune run|status|stop|resume` (cli/tune_cmd.c). */
#ifndef LOOM_CLI_TUNE_CMD_H
#define LOOM_CLI_TUNE_CMD_H

#include "loom/loom.h"

typedef struct tune_cli_opts {
    const char *arg;     /* the spec file (run) or sweep id (others); may be NULL for status */
    const char *output;  /* run: --output DIR */
    const char *gateway; /* run: the gateway of the cluster (HOST:PORT) or NULL, for "register" */
    int quiet, json;
} tune_cli_opts;

/* Run operation op; returns the process exit status. */
int tune_cli(loom_client *c, const char *op, const tune_cli_opts *o);

#endif
