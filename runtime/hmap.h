/* runtime/hmap.h — an open-addressing hash map from short byte keys (ids,
 * routing identities, job ids: at most LOOM_HMAP_KEY_MAX bytes) to pointers.
 * Linear probing with backward-shift deletion; grows at 70% load. */
#ifndef LOOM_RUNTIME_HMAP_H
#define LOOM_RUNTIME_HMAP_H
#include <stddef.h>
#include <stdint.h>

#define LOOM_HMAP_KEY_MAX 32

typedef struct loom_hmap_slot {
    uint64_t hash;          /* 0 = empty */
    uint8_t klen;
    uint8_t key[LOOM_HMAP_KEY_MAX];
    void *val;
} loom_hmap_slot;

typedef struct loom_hmap {
    loom_hmap_slot *slots;
    size_t cap, count;
} loom_hmap;

void *loom__hmap_get(const loom_hmap *m, const void *key, size_t klen);
/* Insert or replace. 0, LOOM_EINVAL (key too long) or LOOM_ENOMEM. */
int loom__hmap_put(loom_hmap *m, const void *key, size_t klen, void *val);
/* Remove; returns the old value or NULL. */
void *loom__hmap_del(loom_hmap *m, const void *key, size_t klen);
void loom__hmap_free(loom_hmap *m);
/* Iterate: for (size_t i = 0; loom__hmap_next(m, &i, &val);) ... (no changes while iterating) */
int loom__hmap_next(const loom_hmap *m, size_t *it, void **val);
#endif
