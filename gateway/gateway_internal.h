/* gateway/gateway_internal.h — what the gateway's route files share: a worker
 * (thread + its own loom_client), the reply helpers and the route functions. */
#ifndef LOOM_GATEWAY_INTERNAL_H
#define LOOM_GATEWAY_INTERNAL_H

#include <jansson.h>
#include <stddef.h>

#include "gateway/gateway.h"
#include "gateway/http.h"
#include "loom/loom.h"

#define GW_USER_MAX 64
#define GW_PROJECTS_MAX 2064       /* "a,b,...": 16 names of up to 128 bytes */

typedef struct gw_worker {
    loom_gateway *gw;
    loom_client *c;            /* NULL until the first request (or after a lost connection) */
    int index;
    char user[GW_USER_MAX];    /* who sent the request being answered ("" with auth off) */
    char projects[GW_PROJECTS_MAX];   /* the projects they belong to: "a,b" */
    int admin;                 /* 1: may do anything (and always with auth off) */
    int run;                   /* 1: may run code (submit jobs) */
} gw_worker;

/* auth.c.  Sets w->user and w->admin from the request's bearer token: 0, or
 * -1 with a 401 (or 503) sent.  With auth off: 0, as an admin. */
int gw_authenticate(gw_worker *w, const loom_http_request *req, loom_http_reply *rep);
int gw_auth_on(const loom_gateway *g);
/* May w read something of owner (public: readable by all) / change it? */
int gw_may_read(const gw_worker *w, const char *owner, int public_);
int gw_may_write(const gw_worker *w, const char *owner);
/* The SHA-256 (hex) a token is stored under. */
void gw_token_hash(const char *token, char out[65]);
/* Is s a valid user or project name (1-63 bytes of [A-Za-z0-9._@+-])? */
int gw_name_ok(const char *s);
/* Is w a member of project? */
int gw_in_project(const gw_worker *w, const char *project);
/* Admission of a request's body on its headers (the HTTP thread; see auth.c):
 * answers the ticket with loom_http_admit, at once or from the auth thread. */
void gw_admit(loom_gateway *g, const loom_http_request *head, loom_http_reply *ticket);
int gw_admit_start(loom_gateway *g);
void gw_admit_stop(void);
/* OIDC (auth.c): load the issuer's keys; 0 or LOOM_EINVAL/LOOM_EIO with err. */
int gw_oidc_start(const loom_gateway_oidc *o, char *err, size_t errcap);
void gw_oidc_stop(void);
/* May w read something with this owner, public flag and project? */
int gw_may_read_in(const gw_worker *w, const char *owner, int public_, const char *project);
/* The same for a registry or deployment record with "owner", "public", "project". */
int gw_may_read_rec(const gw_worker *w, json_t *rec);
/* The largest request body an admitted request may send. */
size_t gw_max_body(const loom_gateway *g);

/* The worker's client, connected on first use; NULL (and a 503 sent) when the
 * head cannot be reached. */
loom_client *gw_client(gw_worker *w, loom_http_reply *rep);
/* After a call failed with rc: a lost connection drops the client so the next
 * request connects again. */
void gw_client_check(gw_worker *w, int rc);
const char *gw_lib_dir(const loom_gateway *g);

/* Is a JSON text within the gateway's depth and element limits?  0 with a
 * reason in err when not. */
int gw_json_bounded(const char *p, size_t len, char *err, size_t errcap);

/* Replies. */
void gw_reply_json(loom_http_reply *rep, int status, json_t *body);   /* steals body */
void gw_reply_error(loom_http_reply *rep, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The HTTP status for a loom error code. */
int gw_status_of(int rc);

/* The path segment after prefix ("/v1/jobs/"), up to the next '/', into out;
 * *rest points after it ("" or "/..."). 0, or -1 when absent or too long. */
int gw_path_segment(const char *path, const char *prefix, char *out, size_t cap, const char **rest);

/* Route files: each answers its paths and returns 1, or returns 0.
 *   jobs.c      /v1/jobs...
 *   registry.c  /v1/models...        the model registry
 *   kserve.c    /v1/deployments..., /v2, /v2/models/...   serving (KServe v2, on deploy.c) */
int gw_jobs_route(gw_worker *w, const loom_http_request *req, loom_http_reply *rep);
int gw_registry_route(gw_worker *w, const loom_http_request *req, loom_http_reply *rep);
int gw_kserve_route(gw_worker *w, const loom_http_request *req, loom_http_reply *rep);
int gw_usage_route(gw_worker *w, const loom_http_request *req, loom_http_reply *rep);   /* usage.c */

/* usage.c: a new job of a user (or project) whose CPU-/GPU-hours for today are
 * used up: 429 with why; else 0.  Counting requests per user, and writing the
 * counts into the key-value table (the stats thread). */
int gw_quota_check(gw_worker *w, const char *project, char *why, size_t cap);
void gw_usage_count_request(const char *user);
/* The number `field` of kind ('u' or 'p') name's quota record, NAN if none. */
double gw_quota_field(loom_client *c, char kind, const char *name, const char *field);
void gw_usage_flush(loom_client *c);

/* The gateway's metrics registry. */
loom_metrics *gw_metrics(loom_gateway *g);

#endif
