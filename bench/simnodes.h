/* bench/simnodes.h — light simulated nodes for measuring the head at scale
 * (issue 20): N nodes in one process, each a real zmq DEALER to the head
 * with the node's CURVE key, that say HELLO as a daemon does, heartbeat as
 * often as a daemon, and finish every task assigned to them at once with a
 * small inline result (no executor, no store).  One thread serves them all.
 * The head cannot tell them from daemons on the wire, so its placement,
 * heartbeat and bookkeeping costs are the real ones. */
#ifndef LOOM_BENCH_SIMNODES_H
#define LOOM_BENCH_SIMNODES_H
#include <stdint.h>

typedef struct simnodes simnodes;

/* Connect n nodes of `cpus` CPUs each to the head at address (HOST:PORT),
 * authenticating with the cluster secret (hex), and wait up to 60 s until
 * each is welcomed.  0, or -1 with the reason on stderr. */
int simnodes_start(const char *address, const char *secret_hex, int n, double cpus, simnodes **out);
/* Tasks the nodes finished so far. */
uint64_t simnodes_tasks_done(simnodes *s);
/* Stop the thread and close every socket. */
void simnodes_stop(simnodes **s);

#endif
