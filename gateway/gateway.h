/* gateway/gateway.h — loom's HTTP gateway: the application on top of the HTTP
 * server core (http.h).  It runs in the head's process (`loom start --head
 * --http-port P`) and talks to the head as an ordinary client over the
 * cluster's socket, from a pool of worker threads, each with its own
 * loom_client.  Health checks and /metrics are answered on the HTTP thread, so
 * they answer while the workers are busy; everything else waits in a bounded
 * queue (full: 429 with Retry-After).
 *
 * Routes (see README.md in this folder):
 *   GET  /v2/health/live, /v2/health/ready      KServe v2 health
 *   GET  /metrics                                Prometheus text
 *   POST /v1/jobs                                submit a graph (the JSON of `loom submit`)
 *   GET  /v1/jobs/{id}                           its state
 *   GET  /v1/jobs/{id}/result?task=T&output=N    a task's output (JSON when msgpack, else bytes)
 *   GET  /v1/jobs/{id}/logs?task=T               a task's logs
 *   DELETE /v1/jobs/{id}                         cancel what runs and drop its outputs
 */
#ifndef LOOM_GATEWAY_GATEWAY_H
#define LOOM_GATEWAY_GATEWAY_H

typedef struct loom_gateway loom_gateway;

typedef struct loom_gateway_opts {
    const char *host;          /* [127.0.0.1] */
    int port;                  /* 0: any free port (loom_gateway_port) */
    const char *state_dir;     /* the head's state dir: its address file */
    const char *secret;        /* the cluster secret (hex) */
    int workers;               /* worker threads [16] */
    int queue_max;             /* requests waiting for a worker [256]; beyond: 429 */
    const char *lib_dir;       /* task libraries named by path in REST jobs must lie
                                  in this directory; NULL: only "library_ref" */
} loom_gateway_opts;

/* Start listening (returns once the port is bound).  0 or LOOM_E*. */
int loom_gateway_start(const loom_gateway_opts *o, loom_gateway **out);
int loom_gateway_port(const loom_gateway *g);
/* Stop the server and the workers, free everything; NULL-safe. */
void loom_gateway_stop(loom_gateway **g);

#endif
