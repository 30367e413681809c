/* scheduler/headdb.h — the head's tables on disk: one LMDB environment
 * (<state_dir>/head.lmdb) with a database per table (nodes, jobs, tasks,
 * objects, the key-value table).  Writes go into one transaction per event-loop turn (group commit)
 * which loom__headdb_commit closes; the file is synced once a second. */
#ifndef LOOM_SCHEDULER_HEADDB_H
#define LOOM_SCHEDULER_HEADDB_H
#include <stddef.h>

enum { HEADDB_NODES = 0, HEADDB_JOBS, HEADDB_TASKS, HEADDB_OBJECTS, HEADDB_KV, HEADDB_NTABLES };

typedef struct headdb headdb;

int loom__headdb_open(const char *dir, headdb **out);
void loom__headdb_close(headdb **db);
int loom__headdb_put(headdb *db, int table, const void *key, size_t klen, const void *val, size_t vlen);
int loom__headdb_del(headdb *db, int table, const void *key, size_t klen);
int loom__headdb_commit(headdb *db);
int loom__headdb_sync(headdb *db);
/* Number of records in a table (committed state). */
long loom__headdb_count(headdb *db, int table);
/* Call fn for every record of a table (committed state), in key order; the
 * key and value bytes are valid only during the call.  Stops early when fn
 * returns non-zero.  0 or LOOM_EIO. */
int loom__headdb_foreach(headdb *db, int table,
                         int (*fn)(void *arg, const void *key, size_t klen, const void *val, size_t vlen), void *arg);
#endif
