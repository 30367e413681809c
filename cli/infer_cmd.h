/* cli/infer_cmd.h — `loom infer` (cli/infer_cmd.c). */
#ifndef LOOM_CLI_INFER_CMD_H
#define LOOM_CLI_INFER_CMD_H

#include <stdint.h>

#include "loom/loom.h"

typedef struct infer_cli_opts {
    const char *model, *input, *output, *params;
    int64_t shard_size;
    int max_in_flight, no_cache, quiet;
    double num_cpus, num_gpus, straggler_factor;
} infer_cli_opts;

/* Run it; returns the process exit status. */
int infer_cli(loom_client *c, const infer_cli_opts *o);

#endif
