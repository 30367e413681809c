/* api/collective_cluster.c — the cluster's rendezvous for collective groups:
 * keys and values go to the head's key-value table (loom_kv_put/loom_kv_get),
 * which every member of a cluster can reach through its client. */
#include "loom/collective.h"

static int kv_put(void *arg, const char *key, const void *val, size_t len)
{
    return loom_kv_put(arg, key, val, len);
}

static int kv_get(void *arg, const char *key, int64_t timeout_ms, void **val, size_t *len)
{
    return loom_kv_get(arg, key, timeout_ms, val, len);
}

void loom_rendezvous_cluster(loom_rendezvous *rv, loom_client *c)
{
    rv->arg = c;
    rv->put = kv_put;
    rv->get = kv_get;
}
