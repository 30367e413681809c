/* tests/fuzz/fuzz_shard_dataset.c — fuzz target for the dataset parsers
 * (shard/dataset.c).  The first byte picks the format (npy, csv or jsonl,
 * by its value mod 3); the rest is parsed as that format.  What is refused
 * comes with a known error code, a message and an empty dataset; what is
 * accepted has rows × cols finite float32 values (cols ≥ 1, within the
 * limits), and a CSV or JSONL dataset has at least one row.  An accepted
 * dataset is also written as .npy and read back to the same values. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "loom/loom.h"
#include "shard/dataset.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_refusal(int rc, const shard_dataset *d, const char *err)
{
    if (rc != LOOM_EINVAL && rc != LOOM_ETOOBIG && rc != LOOM_ENOMEM) abort();
    if (!err[0] || d->x || d->rows || d->cols) abort();
}

static void check_dataset(const shard_dataset *d, int is_npy)
{
    if (d->rows < 0 || d->cols < 1 || d->cols > SHARD_MAX_COLS || !d->x) abort();
    if (d->rows > SHARD_MAX_CELLS / d->cols) abort();
    if (!is_npy && d->rows == 0) abort();
    for (int64_t i = 0; i < d->rows * d->cols; i++)
        if (!isfinite(d->x[i])) abort();
}

/* Encoded as .npy and parsed again, the values come back bit for bit. */
static void check_npy_round_trip(const shard_dataset *d)
{
    void *enc;
    size_t len;
    if (shard_npy_encode_f32(d->x, d->rows, d->cols, &enc, &len)) abort();
    shard_dataset back;
    char err[256];
    if (shard_dataset_parse(enc, len, "npy", &back, err, sizeof err)) abort();
    size_t n = (size_t)(d->rows * d->cols);
    if (back.rows != d->rows || back.cols != d->cols || (n && memcmp(back.x, d->x, n * sizeof(float)))) abort();
    shard_dataset_free(&back);
    free(enc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) return 0;
    static const char *const formats[3] = {"npy", "csv", "jsonl"};
    const char *format = formats[data[0] % 3];
    /* the bytes in a buffer of exactly their size, so that AddressSanitizer
     * sees a read past them */
    size_t len = size - 1;
    uint8_t *copy = malloc(len ? len : 1);
    if (!copy) return 0;
    memcpy(copy, data + 1, len);
    shard_dataset d;
    char err[256];
    int rc = shard_dataset_parse(copy, len, format, &d, err, sizeof err);
    if (rc) check_refusal(rc, &d, err);
    else {
        check_dataset(&d, data[0] % 3 == 0);
        check_npy_round_trip(&d);
    }
    shard_dataset_free(&d);
    free(copy);
    return 0;
}
