/* worker/daemon.h — the node daemon and the executor processes it starts. */
#ifndef LOOM_WORKER_DAEMON_H
#define LOOM_WORKER_DAEMON_H
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
    int ready_fd;               /* >= 0: write "node ID\n" here once joined, then close */
} loom_daemon_opts;

/* Serve until SIGINT/SIGTERM. */
int loom_daemon_run(const loom_daemon_opts *opts);

typedef struct loom_executor_opts {
    const char *daemon_endpoint;  /* ipc:// of the daemon's executor socket */
    const char *secret;
    const char *store_dir, *spill_dir;
    const char *node_dir;
} loom_executor_opts;

int loom_executor_run(const loom_executor_opts *opts);

#endif
