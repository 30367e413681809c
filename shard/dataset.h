/* shard/dataset.h — the datasets of batch inference: rows of numbers read
 * from real formats into one float32 matrix, and results written as NumPy
 * .npy files.
 *
 * Formats (chosen by the file's extension; a directory holds several):
 *   .npy     a NumPy array (format versions 1.0, 2.0 and 3.0), little- or
 *            big-endian, C or Fortran order, dtype bool, int8..int64,
 *            uint8..uint64, float16, float32 or float64.  Shape [N] is N rows
 *            of one value; [N, D] N rows of D; [N, d1, d2, …] N rows of
 *            d1*d2*… values (flattened in C order).
 *   .csv     rows of numbers separated by commas (spaces around them are
 *            allowed); a first line that is not all numbers is a header and
 *            is skipped; empty lines are skipped; every row has the same
 *            number of columns.  Both LF and CRLF line ends.
 *   .jsonl, .ndjson   one JSON value per line: an array of numbers (nested
 *            arrays are flattened row-major, and must be rectangular), or an
 *            object whose "input" member is such an array; empty lines are
 *            skipped.
 *   a directory: every file in it with one of those extensions (not its
 *            subdirectories), in the byte order of their names, one after the
 *            other; all must have the same number of columns.  Other files
 *            are ignored; a directory with none is an error.
 * NaN and infinities are refused in every format (LOOM_EINVAL), as are
 * values that do not fit a float32 (finite but larger than FLT_MAX).
 *
 * Errors: LOOM_EINVAL for malformed input, with the file, line or offset
 * and what was wrong in err; LOOM_EIO when a file cannot be read;
 * LOOM_ETOOBIG over the limits below; LOOM_ENOMEM.
 * Ownership: a loaded dataset owns its matrix; free it with
 * shard_dataset_free. */
#ifndef LOOM_SHARD_DATASET_H
#define LOOM_SHARD_DATASET_H

#include <stddef.h>
#include <stdint.h>

#define SHARD_MAX_COLS (1 << 24)
#define SHARD_MAX_CELLS ((int64_t)1 << 32) /* rows * cols */

typedef struct shard_dataset {
    int64_t rows, cols;
    float *x;            /* rows * cols values, row-major; owned */
} shard_dataset;

/* Load a file or directory (format from the extension). */
int shard_dataset_load(const char *path, shard_dataset *out, char *err, size_t errlen);

/* Parse bytes already in memory as format "npy", "csv" or "jsonl" (what
 * the fuzz tests call). */
int shard_dataset_parse(const void *data, size_t len, const char *format, shard_dataset *out,
                        char *err, size_t errlen);

void shard_dataset_free(shard_dataset *d);

/* Write an .npy file (version 1.0, C order, little-endian) of shape
 * [rows, cols] (cols 0: shape [rows]) with dtype "<f4" (data float32) or
 * "<i8" (data int64).  Written to a temporary name and renamed, so a
 * reader never sees half a file. */
int shard_npy_write_f32(const char *path, const float *data, int64_t rows, int64_t cols, char *err,
                        size_t errlen);
int shard_npy_write_i64(const char *path, const int64_t *data, int64_t rows, char *err, size_t errlen);

/* The bytes of such a file in memory (malloc'd *out, *len), for results
 * kept in a cache before they are written. */
int shard_npy_encode_f32(const float *data, int64_t rows, int64_t cols, void **out, size_t *len);

#endif
