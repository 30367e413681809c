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
 *   GET  /v1/jobs?offset=N&limit=N               a page of jobs, newest first
 *   GET  /v1/jobs/{id}                           its state
 *   GET  /v1/jobs/{id}/result?task=T&output=N    a task's output (JSON when msgpack, else bytes)
 *   GET  /v1/jobs/{id}/logs?task=T               a task's logs
 *   DELETE /v1/jobs/{id}                         cancel what runs and drop its outputs
 *   /v1/models...                                the model registry (registry.c)
 *   /v1/deployments..., /v2, /v2/models/...      serving, KServe v2 (kserve.c)
 * With auth on, requests carry bearer tokens and see only their user's jobs,
 * models and deployments, and public models (auth.c).
 */
#ifndef LOOM_GATEWAY_GATEWAY_H
#define LOOM_GATEWAY_GATEWAY_H

#include "loom/loom.h"

typedef struct loom_gateway loom_gateway;

/* OIDC access tokens (JWTs) from the site's identity provider, besides
 * loom's own tokens: verified against the issuer's keys (a JWKS file, read
 * again when it changes), with the user from user_claim and the projects
 * from groups_claim.  Members of run_group may run code, of admin_group may
 * do anything. */
typedef struct loom_gateway_oidc {
    const char *issuer;        /* NULL: no OIDC */
    const char *audience;      /* required with issuer */
    const char *jwks_file;     /* required with issuer */
    const char *user_claim;    /* ["sub"] */
    const char *groups_claim;  /* ["groups"] */
    const char *run_group;     /* NULL: no OIDC user may run code */
    const char *admin_group;   /* NULL: no OIDC user is an admin */
} loom_gateway_oidc;

typedef struct loom_gateway_opts {
    const char *host;          /* [127.0.0.1] */
    int port;                  /* 0: any free port (loom_gateway_port) */
    const char *state_dir;     /* the head's state dir: its address file */
    const char *secret;        /* the cluster secret (hex) */
    int workers;               /* worker threads [16] */
    int queue_max;             /* requests waiting for a worker [256]; beyond: 429 */
    const char *lib_dir;       /* task libraries named by path in REST jobs must lie
                                  in this directory; NULL: only "library_ref" */
    int auth;                  /* 1: bearer tokens required (all but health, /metrics);
                                  0 is refused unless host is a loopback address */
    loom_gateway_oidc oidc;    /* with auth: OIDC tokens too */
    double rate_per_user;      /* with auth: requests per second per user [1000; bursts
                                  of twice the rate]; < 0: no limit; beyond: 429 */
    const char *tls_cert;      /* TLS only on the port: certificate chain (PEM) */
    const char *tls_key;       /*   and its private key (PEM); both or neither */
    char *error;               /* optional: why the start failed (error_cap bytes) */
    size_t error_cap;
} loom_gateway_opts;

/* Start listening (returns once the port is bound).  0 or LOOM_E*: LOOM_EAUTH
 * for auth off on a non-loopback host, LOOM_EINVAL for a TLS certificate or
 * key that cannot be loaded or do not match (the reason in o->error). */
int loom_gateway_start(const loom_gateway_opts *o, loom_gateway **out);
int loom_gateway_port(const loom_gateway *g);
/* Stop the server and the workers, free everything; NULL-safe. */
void loom_gateway_stop(loom_gateway **g);
/* Tells the gateway that the head now takes connections (it connects and
 * turns ready at once instead of at its next stats round).  Thread-safe. */
void loom_gateway_head_listening(loom_gateway *g);

/* Tokens for the gateway's auth (`loom token create/revoke`), kept hashed in
 * the cluster's key-value table.  create writes a new token ("loom_" + 48
 * hex) into token (at least LOOM_GATEWAY_TOKEN_LEN bytes); revoke forgets
 * one (LOOM_ENOTFOUND if unknown).  A user or project name is 1-63 bytes of
 * [A-Za-z0-9._@+-] (LOOM_EINVAL otherwise). */
#define LOOM_GATEWAY_TOKEN_LEN 64
typedef struct loom_gateway_token_opts {
    const char *user;          /* whose token it is */
    int run;                   /* may run code: POST /v1/jobs (command and library tasks) */
    int admin;                 /* may do anything (implies run) */
    const char *projects;      /* "a,b": projects the user belongs to (at most 16); NULL: none */
} loom_gateway_token_opts;
int loom_gateway_token_create(loom_client *c, const loom_gateway_token_opts *o, char *token);
int loom_gateway_token_revoke(loom_client *c, const char *token);

/* A usage report as JSON (gateway/usage.c): per user (by "user") or project
 * ("project") since the UTC day `since` ("YYYY-MM-DD"; NULL or "": today):
 * tasks, CPU-, GPU- and memory-GiB-hours, gateway requests, bytes stored in
 * the registry.  user NULL: everyone; else only user and its projects ("a,b").
 * 0 with *json (malloc'd), or LOOM_EINVAL (bad since/by) with err. */
int loom_gateway_usage_report(loom_client *c, const char *since, const char *by, const char *user,
                              const char *projects, char **json, char *err, size_t errcap);

#endif
