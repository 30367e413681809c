/* api/collective_internal.h — what the collective core (api/collective.c)
 * and the NCCL backend (api/collective_nccl.c) share.  Not installed.
 *
 * The NCCL backend loads libnccl.so.2 and libcudart with dlopen, so every
 * function here exists in every build; without a GPU or NCCL they fail with
 * LOOM_ENOTFOUND.  Each function writes a message to err (errlen bytes) when
 * it fails and returns 0 or a negative LOOM_E* code. */
#ifndef LOOM_API_COLLECTIVE_INTERNAL_H
#define LOOM_API_COLLECTIVE_INTERNAL_H
#include <stddef.h>
#include <stdint.h>
#include "loom/collective.h"

typedef struct loom_coll_nccl loom_coll_nccl;

/* 1 when NCCL and libcudart load and a GPU is visible, else 0 with the
 * reason in why. */
int loom__coll_nccl_usable(char *why, size_t whylen);

/* Join group `name` through rv: rank 0 publishes the NCCL unique id under
 * "loom/coll/<name>/nccl_id"; every member waits (up to timeout_ms) for all
 * the others before creating the communicator on the first visible device. */
int loom__coll_nccl_new(const loom_rendezvous *rv, const char *name, int world, int rank,
                        int64_t timeout_ms, loom_coll_nccl **out, char *err, size_t errlen);
void loom__coll_nccl_destroy(loom_coll_nccl **n);   /* NULL-safe */

/* The operations of loom/collective.h, arguments already checked.  Buffers
 * may be device or host memory (host memory is staged through the device). */
int loom__coll_nccl_allreduce(loom_coll_nccl *n, void *buf, size_t count, int dtype, int op,
                              char *err, size_t errlen);
int loom__coll_nccl_broadcast(loom_coll_nccl *n, void *buf, size_t count, int dtype, int root,
                              char *err, size_t errlen);
int loom__coll_nccl_allgather(loom_coll_nccl *n, const void *send, size_t count, int dtype,
                              void *recv, char *err, size_t errlen);
int loom__coll_nccl_reduce_scatter(loom_coll_nccl *n, const void *send, size_t count, int dtype,
                                   int op, void *recv, char *err, size_t errlen);
#endif
