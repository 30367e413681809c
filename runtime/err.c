/* runtime/err.c — names of loom's error codes (loom_strerror). */
#include "loom/loom.h"

const char *loom_strerror(int err)
{
    switch (err) {
    case LOOM_OK: return "success";
    case LOOM_EINVAL: return "invalid argument";
    case LOOM_ENOMEM: return "out of memory";
    case LOOM_ETIMEOUT: return "timed out";
    case LOOM_ECONN: return "cannot reach the cluster";
    case LOOM_EAUTH: return "cluster secret missing or wrong";
    case LOOM_ENOTFOUND: return "not found";
    case LOOM_ETASK: return "task failed";
    case LOOM_ECANCELLED: return "task cancelled";
    case LOOM_ESTOREFULL: return "object store full";
    case LOOM_EPROTO: return "malformed or unexpected message";
    case LOOM_EIO: return "I/O error";
    case LOOM_ETOOBIG: return "value too large";
    case LOOM_EDEP: return "a dependency failed";
    case LOOM_ENODE: return "node died";
    case LOOM_EINFEASIBLE: return "no node can satisfy the request";
    case LOOM_ESYS: return "system call failed";
    case LOOM_ESTATE: return "invalid in the current state";
    case LOOM_EFULL: return "queue full, retry later";
    case LOOM_EACTOR: return "the actor died or was killed";
    case LOOM_EWORKER: return "the executor running the task died";
    default: return "unknown error";
    }
}
