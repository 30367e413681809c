/* runtime/secret.h — the cluster secret: 32 random bytes as hex, written by the
 * head to a file only its user can read, presented by every daemon and driver. */
#ifndef LOOM_RUNTIME_SECRET_H
#define LOOM_RUNTIME_SECRET_H
#define LOOM_SECRET_HEX 64
int loom__secret_create(const char *path, char out[LOOM_SECRET_HEX + 1]);
int loom__secret_load(const char *path, char out[LOOM_SECRET_HEX + 1]);
/* Constant-time comparison; 1 when equal. */
int loom__secret_equal(const char *a, const char *b);
#endif
