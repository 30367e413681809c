/* runtime/secret.c — creating, loading and comparing the cluster secret. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "loom/loom.h"
#include "runtime/ids.h"
#include "runtime/secret.h"
#include "runtime/util.h"

int loom__secret_create(const char *path, char out[LOOM_SECRET_HEX + 1])
{
    uint8_t raw[LOOM_SECRET_HEX / 2];
    loom__random_bytes(raw, sizeof(raw));
    loom__hex_encode(raw, sizeof(raw), out);
    return loom__write_file(path, out, LOOM_SECRET_HEX, 0600);
}

int loom__secret_load(const char *path, char out[LOOM_SECRET_HEX + 1])
{
    struct stat st;
    if (stat(path, &st) != 0) return LOOM_ENOTFOUND;
    if (st.st_mode & 077) return LOOM_EAUTH; /* readable by others: refuse to trust it */
    char *buf;
    size_t n;
    int rc = loom__read_file(path, 4096, &buf, &n);
    if (rc) return rc;
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == ' ')) n--;
    if (n != LOOM_SECRET_HEX) {
        free(buf);
        return LOOM_EAUTH;
    }
    memcpy(out, buf, LOOM_SECRET_HEX);
    out[LOOM_SECRET_HEX] = 0;
    free(buf);
    return LOOM_OK;
}

int loom__secret_equal(const char *a, const char *b)
{
    if (!a || !b) return 0;
    size_t na = strlen(a), nb = strlen(b);
    unsigned diff = (unsigned)(na ^ nb);
    for (size_t i = 0; i < na && i < nb; i++) diff |= (unsigned)(a[i] ^ b[i]);
    return diff == 0 && na > 0;
}
