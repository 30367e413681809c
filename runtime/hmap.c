/* runtime/hmap.c — the byte-keyed hash map (see hmap.h). */
#include <stdlib.h>
#include <string.h>
#include "loom/loom.h"
#include "runtime/hmap.h"

static uint64_t hash_key(const void *key, size_t n)
{
    /* FNV-1a, then a finalizer; never returns 0 (0 marks an empty slot). */
    const uint8_t *p = key;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h ? h : 1;
}

static loom_hmap_slot *find(const loom_hmap *m, const void *key, size_t klen, uint64_t h)
{
    if (!m->cap) return NULL;
    size_t mask = m->cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        loom_hmap_slot *s = &m->slots[i];
        if (!s->hash) return NULL;
        if (s->hash == h && s->klen == klen && !memcmp(s->key, key, klen)) return s;
    }
}

void *loom__hmap_get(const loom_hmap *m, const void *key, size_t klen)
{
    if (klen > LOOM_HMAP_KEY_MAX) return NULL;
    loom_hmap_slot *s = find(m, key, klen, hash_key(key, klen));
    return s ? s->val : NULL;
}

static void place(loom_hmap_slot *slots, size_t cap, const loom_hmap_slot *src)
{
    size_t mask = cap - 1;
    for (size_t i = src->hash & mask;; i = (i + 1) & mask)
        if (!slots[i].hash) {
            slots[i] = *src;
            return;
        }
}

static int grow(loom_hmap *m)
{
    size_t cap = m->cap ? m->cap * 2 : 64;
    loom_hmap_slot *slots = calloc(cap, sizeof(*slots));
    if (!slots) return LOOM_ENOMEM;
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].hash) place(slots, cap, &m->slots[i]);
    free(m->slots);
    m->slots = slots;
    m->cap = cap;
    return LOOM_OK;
}

int loom__hmap_put(loom_hmap *m, const void *key, size_t klen, void *val)
{
    if (klen > LOOM_HMAP_KEY_MAX) return LOOM_EINVAL;
    uint64_t h = hash_key(key, klen);
    loom_hmap_slot *s = find(m, key, klen, h);
    if (s) {
        s->val = val;
        return LOOM_OK;
    }
    if ((m->count + 1) * 10 > m->cap * 7 && grow(m)) return LOOM_ENOMEM;
    loom_hmap_slot n = {.hash = h, .klen = (uint8_t)klen, .val = val};
    memcpy(n.key, key, klen);
    place(m->slots, m->cap, &n);
    m->count++;
    return LOOM_OK;
}

void *loom__hmap_del(loom_hmap *m, const void *key, size_t klen)
{
    if (klen > LOOM_HMAP_KEY_MAX) return NULL;
    loom_hmap_slot *s = find(m, key, klen, hash_key(key, klen));
    if (!s) return NULL;
    void *val = s->val;
    size_t mask = m->cap - 1, i = (size_t)(s - m->slots);
    /* backward-shift deletion keeps probe chains intact without tombstones */
    for (size_t j = (i + 1) & mask;; j = (j + 1) & mask) {
        loom_hmap_slot *t = &m->slots[j];
        if (!t->hash) break;
        size_t home = t->hash & mask;
        int movable = i <= j ? (home <= i || home > j) : (home <= i && home > j);
        if (movable) {
            m->slots[i] = *t;
            i = j;
        }
    }
    memset(&m->slots[i], 0, sizeof(m->slots[i]));
    m->count--;
    return val;
}

void loom__hmap_free(loom_hmap *m)
{
    free(m->slots);
    m->slots = NULL;
    m->cap = m->count = 0;
}

int loom__hmap_next(const loom_hmap *m, size_t *it, void **val)
{
    while (*it < m->cap) {
        loom_hmap_slot *s = &m->slots[(*it)++];
        if (s->hash) {
            *val = s->val;
            return 1;
        }
    }
    return 0;
}
