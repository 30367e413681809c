/* runtime/ids.h — ids: random bytes, hex encoding, ref layout. */
#ifndef LOOM_RUNTIME_IDS_H
#define LOOM_RUNTIME_IDS_H
#include <stddef.h>
#include <stdint.h>
#include "loom/loom.h"

void loom__hex_encode(const uint8_t *in, size_t n, char *out);   /* out: 2n+1 */
int loom__hex_decode(const char *hex, uint8_t *out, size_t n);   /* exactly 2n hex chars */
void loom__random_bytes(uint8_t *out, size_t n);
uint32_t loom__ref_index(const loom_ref *ref);
#ifndef LOOM_TASK_ID_LEN
#define LOOM_TASK_ID_LEN 16
#endif
/* A ref is a 16-byte task (or put) id followed by the big-endian output index. */
void loom__ref_make(const uint8_t task_id[LOOM_TASK_ID_LEN], uint32_t index, loom_ref *out);
#endif
#ifndef LOOM_SHA256_DECL
#define LOOM_SHA256_DECL
void loom__sha256(const void *data, size_t len, uint8_t out[32]);
#endif
