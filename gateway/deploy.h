/* gateway/deploy.h — deployments of registered models: replicas of a model
 * runtime's `Model` actor, requests batched dynamically onto the least-loaded
 * replica, autoscaling on load, rollout of a new version with no failed
 * request, undeploy.  Used by the KServe routes (kserve.c); the deployment
 * table lives in this process (one gateway per head) under one lock. */
#ifndef LOOM_GATEWAY_DEPLOY_H
#define LOOM_GATEWAY_DEPLOY_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "gateway/metrics.h"
#include "loom/loom.h"
#include "serve/tensor.h"

#define GW_DEPLOY_NAME_MAX 128

typedef struct gw_deploy_spec {
    const char *name, *model;
    int version;               /* 0: the registry's newest */
    int replicas;              /* to start with */
    int min_replicas, max_replicas;   /* autoscaling bounds (both = replicas: fixed) */
    double target_load;        /* requests in flight per replica above which one is added */
    double num_cpus, num_gpus; /* per replica */
    const char *params;        /* runtime params, JSON object text (NULL: {}) */
    int max_batch;             /* rows per batch (1: no batching) */
    int max_wait_ms;           /* how long a batch waits for more rows while every replica is busy */
    int max_queued;            /* requests queued or running; beyond: LOOM_EFULL (503) */
    const char *owner;         /* the user it belongs to ("" with auth off) */
    int public_;               /* readable by everyone (the model version is public) */
} gw_deploy_spec;

/* Parse a JSON deployment request into s (strings point into body). */
int gw_deploy_parse(json_t *body, gw_deploy_spec *s, char *err, size_t errlen);
/* Create the deployment and wait for its replicas: 0, LOOM_ESTATE (the name
 * exists), LOOM_ENOTFOUND (no such model version), LOOM_EFULL, or the error. */
int gw_deploy_create(loom_client *c, const gw_deploy_spec *s, char *err, size_t errlen);
/* Replace the replicas with ones of `version` (the registry's number, which
 * the caller resolved and checked the user may read) once those are ready;
 * the old ones finish what they run, then end.  The deployment is public
 * from then on exactly when public_ is set (that version's flag). */
int gw_deploy_rollout(loom_client *c, const char *name, int version, int public_, char *err, size_t errlen);
/* Take it out of service, wait for its requests, end its replicas. */
int gw_deploy_delete(loom_client *c, const char *name);
/* Every deployment (or one: NULL if absent) as JSON, with "owner" and "public". */
json_t *gw_deploy_list(void);
json_t *gw_deploy_info(const char *name);
/* Its owner and whether it is public: 0, or LOOM_ENOTFOUND. */
/* How many deployments owner has (and the most replicas they may scale to). */
int gw_deploy_count_owned(const char *owner, int *replicas);
int gw_deploy_access(const char *name, char *owner, size_t cap, int *public_);
/* Whether name serves `version` (0: any) now. */
int gw_deploy_serving(const char *name, int version);
/* The runtime's metadata of a deployment serving `version` (0: any); *ver
 * gets the version it serves.  NULL if not deployed (at that version). */
json_t *gw_deploy_metadata(const char *name, int version, int *ver);

/* One prediction: the input tensors go (batched with others when there is
 * one input) to a replica; *out is the replica's whole answer (malloc'd
 * LTN1), of which this request's rows are [*row_off, *row_off + rows of in).
 * LOOM_ENOTFOUND when not deployed; LOOM_EFULL when max_queued requests are
 * in it already; LOOM_ETASK with the runtime's reason. */
typedef struct gw_prediction {
    void *out;
    size_t len;
    int64_t row_off, rows, batch_rows;   /* batch_rows: rows the answer covers */
    int version;
} gw_prediction;
int gw_deploy_predict(loom_client *c, const char *name, int version, const loom_tensor *in, int nin,
                      gw_prediction *p, char *err, size_t errlen);

/* Periodic work (the gateway's stats thread): autoscaling, ending retired
 * replicas once idle, gauges. */
void gw_deploy_tick(loom_client *c, loom_metrics *m);
/* Record a batch of `rows` rows sent to a replica of deployment name. */
void gw_deploy_observe_batch(loom_metrics *m, const char *name, int64_t rows);
/* Forget the table (the gateway stops). */
void gw_deploy_free(void);

#endif
