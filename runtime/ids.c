/* runtime/ids.c — object and task ids: random generation, hex form, and the
 * task-id ++ output-index layout of a ref; SHA-256 digests (binary and hex). */
#include <stdint.h>
#include <string.h>
#include <sys/random.h>
#include <openssl/sha.h>
#include "loom/loom.h"
#include "runtime/ids.h"

static const char hexdig[] = "0123456789abcdef";

void loom__hex_encode(const uint8_t *in, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hexdig[in[i] >> 4];
        out[2 * i + 1] = hexdig[in[i] & 15];
    }
    out[2 * n] = 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int loom__hex_decode(const char *hex, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int hi = hexval(hex[2 * i]);
        if (hi < 0) return LOOM_EINVAL;
        int lo = hexval(hex[2 * i + 1]);
        if (lo < 0) return LOOM_EINVAL;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return hex[2 * n] == 0 ? LOOM_OK : LOOM_EINVAL;
}

void loom_ref_to_hex(const loom_ref *ref, char out[2 * LOOM_ID_LEN + 1])
{
    loom__hex_encode(ref->id, LOOM_ID_LEN, out);
}

int loom_ref_from_hex(const char *hex, loom_ref *out)
{
    if (!hex || !out) return LOOM_EINVAL;
    return loom__hex_decode(hex, out->id, LOOM_ID_LEN);
}

void loom__random_bytes(uint8_t *out, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = getrandom(out + got, n - got, 0);
        if (r > 0) got += (size_t)r;
    }
}

void loom__ref_make(const uint8_t task_id[LOOM_TASK_ID_LEN], uint32_t index, loom_ref *out)
{
    memcpy(out->id, task_id, LOOM_TASK_ID_LEN);
    out->id[16] = (uint8_t)(index >> 24);
    out->id[17] = (uint8_t)(index >> 16);
    out->id[18] = (uint8_t)(index >> 8);
    out->id[19] = (uint8_t)index;
}

uint32_t loom__ref_index(const loom_ref *ref)
{
    return (uint32_t)ref->id[16] << 24 | (uint32_t)ref->id[17] << 16 |
           (uint32_t)ref->id[18] << 8 | ref->id[19];
}

void loom__sha256(const void *data, size_t len, uint8_t out[32])
{
    SHA256(data, len, out);
}

void loom_sha256_hex(const void *data, size_t len, char out[65])
{
    uint8_t md[32];
    loom__sha256(data, len, md);
    loom__hex_encode(md, sizeof md, out);
}
