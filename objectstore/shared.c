/* objectstore/shared.c — one handle per store per process.
 *
 * LMDB forbids opening one environment twice in a process: closing the
 * second copy drops the process's file locks and clears every reader slot
 * of the process, so another user's zero-copy views could be overwritten
 * under it.  So every user in a process (the clients of a driver, an
 * executor and the client its tasks use) attaching to the same store shares
 * one handle, opened by the first and closed by the last.  loom_store is safe
 * to use from several threads (MDB_NOTLS).
 *
 * Also the waiting put (backpressure) that producers use. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "base/clock.h"
#include "objectstore/store.h"
#include "loom/loom.h"

typedef struct shared_store {
    dev_t dev;
    ino_t ino;
    char *dir;                /* and its path: an inode number can be reused */
    loom_store *store;
    int users;
    struct shared_store *next;
} shared_store;

static pthread_mutex_t shared_stores_lock = PTHREAD_MUTEX_INITIALIZER;
static shared_store *shared_stores;

int loom__store_open_shared(const loom_store_opts *so, loom_store **out)
{
    struct stat st;
    if (!so || !so->mem_dir || stat(so->mem_dir, &st) != 0) return LOOM_ENOTFOUND;
    pthread_mutex_lock(&shared_stores_lock);
    shared_store *e = shared_stores;
    while (e && (e->dev != st.st_dev || e->ino != st.st_ino || strcmp(e->dir, so->mem_dir))) e = e->next;
    int rc = LOOM_OK;
    if (!e) {
        e = calloc(1, sizeof(*e));
        if (e) e->dir = strdup(so->mem_dir);
        rc = e && e->dir ? loom__store_open(so, &e->store) : LOOM_ENOMEM;
        if (rc) {
            if (e) free(e->dir);
            free(e);
            e = NULL;
        } else {
            e->dev = st.st_dev;
            e->ino = st.st_ino;
            e->next = shared_stores;
            shared_stores = e;
        }
    }
    if (e) {
        e->users++;
        *out = e->store;
    }
    pthread_mutex_unlock(&shared_stores_lock);
    return rc;
}

void loom__store_close_shared(loom_store **s)
{
    if (!s || !*s) return;
    pthread_mutex_lock(&shared_stores_lock);
    for (shared_store **pe = &shared_stores; *pe; pe = &(*pe)->next) {
        shared_store *e = *pe;
        if (e->store != *s) continue;
        if (--e->users == 0) {
            *pe = e->next;
            loom__store_close(&e->store);
            free(e->dir);
            free(e);
        }
        break;
    }
    pthread_mutex_unlock(&shared_stores_lock);
    *s = NULL;
}

/* ---- backpressure ------------------------------------------------------- */

int loom__store_could_hold(loom_store *s, uint64_t len)
{
    loom_store_stats st = {0};
    if (loom__store_stats_get(s, &st)) return 1;
    uint64_t tier = st.capacity > st.spill_capacity ? st.capacity : st.spill_capacity;
    /* LMDB pages and the store's own records take a little room too */
    return len + len / 32 + (256u << 10) <= tier;
}

/* Call try(s, arg) until it stops finding the store full, wait_ms pass, or
 * the store could never hold len: the backoff of a writer waiting for room
 * (5 ms, doubling up to 200 ms). */
static int while_full(loom_store *s, uint64_t len, int64_t wait_ms, int (*try)(loom_store *, void *), void *arg)
{
    int64_t deadline = loom__now_ms() + (wait_ms > 0 ? wait_ms : 0);
    useconds_t pause = 5000;
    for (;;) {
        int rc = try(s, arg);
        if (rc != LOOM_ESTOREFULL || wait_ms <= 0 || loom__now_ms() >= deadline || !loom__store_could_hold(s, len))
            return rc;
        usleep(pause);
        if (pause < 200000) pause *= 2;
    }
}

typedef struct store_write {
    const uint8_t *id;
    const void *data;
    uint64_t len;
    int flags;
    loom_store_reservation *r;
} store_write;

static int try_put(loom_store *s, void *arg)
{
    store_write *w = arg;
    return loom__store_put(s, w->id, w->data, w->len, w->flags);
}

static int try_reserve(loom_store *s, void *arg)
{
    store_write *w = arg;
    return loom__store_reserve(s, w->id, w->len, w->flags, w->r);
}

int loom__store_put_wait(loom_store *s, const uint8_t id[20], const void *data, uint64_t len, int flags,
                         int64_t wait_ms)
{
    store_write w = {id, data, len, flags, NULL};
    return while_full(s, len, wait_ms, try_put, &w);
}

int loom__store_reserve_wait(loom_store *s, const uint8_t id[20], uint64_t len, int flags, int64_t wait_ms,
                             loom_store_reservation *r)
{
    store_write w = {id, NULL, len, flags, r};
    return while_full(s, len, wait_ms, try_reserve, &w);
}
