/* objectstore/shared.c — one handle per store per process.
 *
 * LMDB forbids opening one environment twice in a process: closing the
 * second copy drops the process's file locks and clears every reader slot
 * of the process, so another user's zero-copy views could be overwritten
 * under it.  So every user in a process (the clients of a driver, an
 * executor and the client its tasks use) attaching to the same store shares
 * one handle, opened by the first and closed by the last.  loom_store is safe
 * to use from several threads (MDB_NOTLS). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

int loom_store_open_shared(const loom_store_opts *so, loom_store **out)
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
        rc = e && e->dir ? loom_store_open(so, &e->store) : LOOM_ENOMEM;
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

void loom_store_close_shared(loom_store **s)
{
    if (!s || !*s) return;
    pthread_mutex_lock(&shared_stores_lock);
    for (shared_store **pe = &shared_stores; *pe; pe = &(*pe)->next) {
        shared_store *e = *pe;
        if (e->store != *s) continue;
        if (--e->users == 0) {
            *pe = e->next;
            loom_store_close(&e->store);
            free(e->dir);
            free(e);
        }
        break;
    }
    pthread_mutex_unlock(&shared_stores_lock);
    *s = NULL;
}
