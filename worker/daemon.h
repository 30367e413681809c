/* worker/daemon.h — the node daemon and the executor processes it starts. */
#ifndef LOOM_WORKER_DAEMON_H
#define LOOM_WORKER_DAEMON_H
#include <stddef.h>
#include <stdint.h>

typedef struct loom_daemon_opts {
    const char *head_address;   /* HOST:PORT */
    const char *secret;         /* cluster secret (hex) */
    const char *bind_host;      /* data port interface (default 127.0.0.1) */
    const char *advertise_host; /* address other nodes use (default: bind_host) */
    int data_port;              /* 0: any free port */
    const char *node_dir;       /* logs, work dirs, spill tier, library cache */
    const char *store_dir;      /* memory tier (default /dev/shm/loom-<uid>/<node>) */
    double num_cpus;            /* default: online CPUs */
    uint64_t memory;            /* default: physical memory */
    uint64_t store_bytes;       /* default 1 GiB */
    int heartbeat_ms;           /* default 1000 */
    int num_gpus;               /* < 0 (default): discover; else report this many */
    uint64_t gpu_memory;        /* bytes per GPU to report (0: as discovered) */
    const char *resources;      /* custom resources "name=amount,..." (NULL: none) */
    const char *labels;         /* node labels "key=value,..." (NULL: none) */
    int ready_fd;               /* >= 0: write "node ID\n" here once joined, then close */
} loom_daemon_opts;

/* Serve until SIGINT/SIGTERM. */
int loom__daemon_run(const loom_daemon_opts *opts);

/* Makes a client connected to the cluster for a task (loom_task_client);
 * set by the `loom executor` command, which sits above the worker layer. */
typedef struct loom_client loom_client;
typedef loom_client *(*loom_client_factory)(char *err, size_t errlen);

typedef struct loom_executor_opts {
    const char *daemon_endpoint;  /* ipc:// of the daemon's executor socket */
    const char *token;            /* its grant's token (runtime/curve.h), for HELLO */
    const char *store_dir, *spill_dir;
    const char *node_dir;
    const char *actor;            /* hex id: this executor hosts that actor */
    const char *gpus;             /* an actor's CUDA_VISIBLE_DEVICES (NULL: none set) */
    loom_client_factory connect;  /* NULL: tasks get no client */
} loom_executor_opts;

/* Parse "name=amount,name=amount" (resources) or "key=value,..." (labels)
 * into the wire form; strings point into *arena.  0 or LOOM_EINVAL with the
 * reason in err. */
#include "runtime/wire.h"
int loom__parse_resources(const char *spec, loom_arena *arena, loom_wire_res **out, uint32_t *n,
                          char *err, size_t errlen);
int loom__parse_labels(const char *spec, loom_arena *arena, loom_wire_label **out, uint32_t *n,
                       char *err, size_t errlen);

int loom__executor_run(const loom_executor_opts *opts);

#endif
