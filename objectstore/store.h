/* objectstore/store.h — the node's object store: LMDB environments on tmpfs
 * (memory tier) and on disk (spill tier), shared by the daemon, its executors
 * and drivers on the same machine.
 *
 * Objects are immutable byte strings named by 20-byte ids.  get is zero-copy:
 * the view points into LMDB's read-only map and stays valid until released.
 * Accounting: the memory tier holds at most `capacity` bytes of values.  A put
 * that does not fit first evicts unpinned secondary copies (least recently
 * used first), then spills primary copies (LRU) to the disk tier, then, if the
 * object itself is larger than the memory tier, writes it to the disk tier; if
 * nothing works it fails with LOOM_ESTOREFULL and changes nothing.  Never
 * SIGBUS: the memory tier's map is writable (a put is one copy into it), and
 * its file's pages are fallocated before a transaction writes to them, so a
 * full file system is LOOM_ESTOREFULL; the capacity is also clamped to the
 * free space of the file system at open.
 *
 * Several processes may open the same directories at once (LMDB's locking).
 * Metadata (size, flags, pin count, last use, tier) lives in a "meta" database
 * in the memory tier's environment.
 */
#ifndef LOOM_OBJECTSTORE_STORE_H
#define LOOM_OBJECTSTORE_STORE_H

#include <stddef.h>
#include <stdint.h>

#define LOOM_STORE_ID_LEN 20

typedef struct loom_store loom_store;

typedef struct loom_store_opts {
    const char *mem_dir;     /* memory tier directory (created); e.g. /dev/shm/loom-x/node1 */
    const char *spill_dir;   /* disk tier directory (created); NULL: no spilling */
    uint64_t capacity;       /* bytes of values in the memory tier */
    uint64_t spill_capacity; /* bytes of values in the disk tier (0: 4 x capacity) */
    int create;              /* 1: the daemon creating the store (sizes the map, sets
                                capacity); 0: a client process attaching to it */
} loom_store_opts;

/* Put flags */
enum {
    LOOM_STORE_PRIMARY = 1   /* the primary copy: spilled, never evicted */
};

/* A zero-copy view of one object. */
typedef struct loom_store_view {
    const void *data;
    size_t len;
    void *txn_;              /* private: the read transaction that maps it */
} loom_store_view;

typedef struct loom_store_stats {
    uint64_t capacity, used;           /* memory tier */
    uint64_t spill_capacity, spill_used;
    uint64_t objects, spilled_objects;
    uint64_t evictions, spills;        /* counters since create */
} loom_store_stats;

/* Open (and with opts->create, create) a store.  Returns 0 or LOOM_E*. */
int loom__store_open(const loom_store_opts *opts, loom_store **out);
void loom__store_close(loom_store **s);   /* NULL-safe; sets *s NULL */
/* The same, shared by every user in the process of the same store directory
 * (LMDB allows one handle per environment per process): the first open
 * opens, the last close closes. */
int loom__store_open_shared(const loom_store_opts *opts, loom_store **out);
void loom__store_close_shared(loom_store **s);

/* Whether an object of len bytes could be stored if the store were empty
 * (it fits one of the tiers). */
int loom__store_could_hold(loom_store *s, uint64_t len);
/* loom__store_put, but when the store is full and the object could fit once
 * room is made (objects released, secondary copies evicted, primaries
 * spilled), wait for room up to wait_ms: a store under pressure slows its
 * producers instead of failing them.  LOOM_ESTOREFULL after that, or at once
 * for an object no tier can ever hold. */
int loom__store_put_wait(loom_store *s, const uint8_t id[20], const void *data, uint64_t len, int flags,
                         int64_t wait_ms);

/* Copy len bytes in under id.  Putting an id that exists is a no-op returning 0
 * (objects are immutable).  LOOM_ESTOREFULL when it cannot fit. */
int loom__store_put(loom_store *s, const uint8_t id[LOOM_STORE_ID_LEN],
                    const void *data, size_t len, int flags);

/* Two-step put without an extra copy: reserve returns a buffer of len bytes to
 * fill, commit makes the object visible (abort drops it).  Between the two, the
 * store's single writer lock is held: fill quickly, do not call other store
 * functions from the same process. */
typedef struct loom_store_reservation {
    void *data;
    size_t len;
    void *txn_;
    int tier_;
    uint8_t id_[LOOM_STORE_ID_LEN];
    int flags_;
} loom_store_reservation;
int loom__store_reserve(loom_store *s, const uint8_t id[LOOM_STORE_ID_LEN], size_t len,
                        int flags, loom_store_reservation *r);
int loom__store_commit(loom_store *s, loom_store_reservation *r);
void loom__store_abort(loom_store *s, loom_store_reservation *r);
/* loom__store_reserve, waiting for room as loom__store_put_wait does. */
int loom__store_reserve_wait(loom_store *s, const uint8_t id[20], uint64_t len, int flags, int64_t wait_ms,
                             loom_store_reservation *r);

/* Zero-copy get from either tier.  LOOM_ENOTFOUND if absent. */
int loom__store_get(loom_store *s, const uint8_t id[LOOM_STORE_ID_LEN], loom_store_view *v);
void loom__store_view_release(loom_store *s, loom_store_view *v);

/* 1 if present (either tier), 0 if not, <0 on error.  *len gets the size when
 * len is not NULL. */
int loom__store_contains(loom_store *s, const uint8_t id[LOOM_STORE_ID_LEN], uint64_t *len);

/* Remove from both tiers; LOOM_ENOTFOUND if absent. */
int loom__store_delete(loom_store *s, const uint8_t id[LOOM_STORE_ID_LEN]);

/* Pin count: a pinned object is never evicted (it may be spilled).  unpin of
 * an unpinned object is LOOM_ESTATE.  touch marks it used now (for LRU). */
int loom__store_pin(loom_store *s, const uint8_t id[LOOM_STORE_ID_LEN]);
int loom__store_unpin(loom_store *s, const uint8_t id[LOOM_STORE_ID_LEN]);
int loom__store_touch(loom_store *s, const uint8_t id[LOOM_STORE_ID_LEN]);

int loom__store_stats_get(loom_store *s, loom_store_stats *st);

#endif
