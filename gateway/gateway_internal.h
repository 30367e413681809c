/* gateway/gateway_internal.h — what the gateway's route files share: a worker
 * (thread + its own loom_client), the reply helpers and the route functions. */
#ifndef LOOM_GATEWAY_INTERNAL_H
#define LOOM_GATEWAY_INTERNAL_H

#include <jansson.h>
#include <stddef.h>

#include "gateway/gateway.h"
#include "gateway/http.h"
#include "loom/loom.h"

typedef struct gw_worker {
    loom_gateway *gw;
    loom_client *c;            /* NULL until the first request (or after a lost connection) */
    int index;
} gw_worker;

/* The worker's client, connected on first use; NULL (and a 503 sent) when the
 * head cannot be reached. */
loom_client *gw_client(gw_worker *w, loom_http_reply *rep);
/* After a call failed with rc: a lost connection drops the client so the next
 * request connects again. */
void gw_client_check(gw_worker *w, int rc);
const char *gw_lib_dir(const loom_gateway *g);

/* Replies. */
void gw_reply_json(loom_http_reply *rep, int status, json_t *body);   /* steals body */
void gw_reply_error(loom_http_reply *rep, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The HTTP status for a loom error code. */
int gw_status_of(int rc);

/* The path segment after prefix ("/v1/jobs/"), up to the next '/', into out;
 * *rest points after it ("" or "/..."). 0, or -1 when absent or too long. */
int gw_path_segment(const char *path, const char *prefix, char *out, size_t cap, const char **rest);

/* jobs.c: /v1/jobs routes; 1 if the path was one of them (answered). */
int gw_jobs_route(gw_worker *w, const loom_http_request *req, loom_http_reply *rep);

#endif
