/* loom/collective.h — collective communication among the members of a group
 * (actors, or tasks of a placement group): allreduce, broadcast, allgather,
 * reduce-scatter, barrier.
 *
 * Every member calls loom_collective_init with the same group name and world
 * size and its own rank; members find each other through a rendezvous store
 * (the head's key-value table, or any loom_rendezvous).  Two backends with the
 * same semantics and results:
 *   - LOOM_COLL_CPU: ZeroMQ TCP channels between every pair of members
 *     (allreduce is reduce-scatter then allgather: each member sends and
 *     receives 2(n-1)/n of the buffer; broadcast is a pipelined chain);
 *     buffers are host memory.
 *   - LOOM_COLL_NCCL: NVIDIA NCCL, loaded at run time (libnccl.so.2 and
 *     libcudart); the NCCL unique id is exchanged through the rendezvous.
 *     Buffers may be device or host memory (host buffers are staged through
 *     the device).  Unavailable (LOOM_ENOTFOUND) without a GPU or NCCL.
 * LOOM_COLL_AUTO picks NCCL when this process sees a GPU and NCCL loads, else
 * CPU.  All members must pick the same backend: AUTO decides on rank 0 and
 * publishes its choice.
 *
 * Operations are blocking and must be called by every member in the same
 * order with the same counts.  Reductions sum in rank order on the CPU
 * backend, so integer-valued floats give bit-identical results on both
 * backends.  Every call returns 0 or a negative LOOM_E* code; a member that
 * does not answer within the group's timeout gives LOOM_ETIMEOUT, a malformed
 * message LOOM_EPROTO.  After a failure other than LOOM_EINVAL the members are
 * out of step: the group's later operations fail with LOOM_ESTATE.  Group
 * names must be fresh within a rendezvous (its keys are not removed).
 * A group is not thread-safe. */
#ifndef LOOM_COLLECTIVE_H
#define LOOM_COLLECTIVE_H

#include "loom/export.h"

#include <stddef.h>
#include <stdint.h>
#include "loom/loom.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct loom_collective loom_collective;

enum loom_dtype { LOOM_DT_F32 = 0, LOOM_DT_F64, LOOM_DT_I32, LOOM_DT_I64, LOOM_DT_U8 };
enum loom_redop { LOOM_OP_SUM = 0, LOOM_OP_PROD, LOOM_OP_MIN, LOOM_OP_MAX };
enum { LOOM_COLL_AUTO = 0, LOOM_COLL_CPU = 1, LOOM_COLL_NCCL = 2 };

/* Where members publish and find each other's addresses.  get waits up to
 * timeout_ms for the key to appear; *val is malloc'd, freed by the caller.
 * Both return 0 or a negative LOOM_E* code. */
typedef struct loom_rendezvous {
    void *arg;
    int (*put)(void *arg, const char *key, const void *val, size_t len);
    int (*get)(void *arg, const char *key, int64_t timeout_ms, void **val, size_t *len);
} loom_rendezvous;

/* A rendezvous in a directory every member can read (a shared file system,
 * or one machine): keys are files written atomically.  *rv points into
 * storage owned by the caller's `dir` string, which must outlive the group. */
LOOM_API void loom_rendezvous_dir(loom_rendezvous *rv, const char *dir);
/* The cluster's rendezvous: the head's key-value table (loom_kv_put/get). */
LOOM_API void loom_rendezvous_cluster(loom_rendezvous *rv, loom_client *c);

typedef struct loom_collective_opts {
    int backend;            /* LOOM_COLL_AUTO (default), _CPU or _NCCL */
    int64_t timeout_ms;     /* for joining, and for each wait on a member within
                               an operation; default 60000 */
    const char *host;       /* CPU backend: address to listen on; default
                               $LOOM_NODE_HOST, else 127.0.0.1 */
} loom_collective_opts;

/* Join group `name` of `world` members as `rank` (0..world-1).  Blocks until
 * every member has joined or the timeout.  opts may be NULL. */
LOOM_API int loom_collective_init(const loom_rendezvous *rv, const char *name, int world, int rank,
                         const loom_collective_opts *opts, loom_collective **out);
LOOM_API void loom_collective_destroy(loom_collective **g);   /* NULL-safe */

LOOM_API int loom_collective_rank(const loom_collective *g);
LOOM_API int loom_collective_world(const loom_collective *g);
LOOM_API int loom_collective_backend(const loom_collective *g);   /* LOOM_COLL_CPU or _NCCL */
/* Message of the last failure on this group ("" if none).  With g NULL: why
 * this thread's last loom_collective_init failed. */
LOOM_API const char *loom_collective_error(const loom_collective *g);

LOOM_API size_t loom_dtype_size(int dtype);

/* buf (count elements) becomes the elementwise reduction over all members. */
LOOM_API int loom_allreduce(loom_collective *g, void *buf, size_t count, int dtype, int op);
/* buf (count elements) on every member becomes root's. */
LOOM_API int loom_broadcast(loom_collective *g, void *buf, size_t count, int dtype, int root);
/* recv (world * count elements) gets every member's send (count), in rank order.
 * send may be recv + rank * count (in place); otherwise they must not overlap. */
LOOM_API int loom_allgather(loom_collective *g, const void *send, size_t count, int dtype, void *recv);
/* send holds world * count elements; recv (count) gets the reduction of block
 * `rank` over all members.  recv may be send + rank * count (in place);
 * otherwise they must not overlap. */
LOOM_API int loom_reduce_scatter(loom_collective *g, const void *send, size_t count, int dtype, int op,
                        void *recv);
LOOM_API int loom_barrier(loom_collective *g);

#ifdef __cplusplus
}
#endif
#endif
