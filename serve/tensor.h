/* serve/tensor.h — named tensor batches and their wire format (LTN1), shared
 * by the gateway and every model runtime: a request or a response of a model
 * is one encoded container of tensors.
 *
 * Data types are named as in KServe v2 / the Open Inference Protocol ("FP32",
 * "INT64", …); BF16 is Triton's extension.  BYTES (variable-length strings) is
 * not a fixed-size type and has no place in this format.
 *
 * Wire format, every integer little-endian:
 *
 *     "LTN1"                   magic, 4 bytes
 *     u32   count              tensors that follow, at most LOOM_TENSOR_MAX_COUNT
 *     count times:
 *       u16 name_len           1..LOOM_TENSOR_NAME_MAX bytes of name (no NUL)
 *       name
 *       u8  dtype              a loom_tensor_dtype code (below)
 *       u8  ndim               0..LOOM_TENSOR_MAX_DIMS
 *       i64 shape[ndim]        each >= 0
 *       u64 nbytes             = prod(shape) * element size, exactly
 *       zero bytes             up to the next multiple of 8 from the start of
 *                              the container, so that data in an 8-aligned
 *                              buffer is aligned for any element type
 *       data                   nbytes raw little-endian elements, row-major
 *     nothing after the last tensor.
 *
 * Decoding never copies: it fills loom_tensor views whose data points into the
 * caller's buffer (which must outlive them).  Every size read from the buffer
 * is overflow-checked against the bytes that are there.  Element access should
 * go through loom_tensor_to_f32 (and friends), which handle any alignment.
 *
 * Errors: LOOM_EINVAL (malformed input or arguments), LOOM_ETOOBIG (over a
 * limit), LOOM_ENOMEM; a message in err when err is not NULL. */
#ifndef LOOM_SERVE_TENSOR_H
#define LOOM_SERVE_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LOOM_TENSOR_MAGIC "LTN1"
#define LOOM_TENSOR_MAX_DIMS 8
#define LOOM_TENSOR_NAME_MAX 255
#define LOOM_TENSOR_MAX_COUNT 64

/* Codes are part of the wire format: never renumber. */
typedef enum loom_tensor_dtype {
    LOOM_DTYPE_INVALID = 0,
    LOOM_DTYPE_BOOL = 1,
    LOOM_DTYPE_UINT8 = 2,
    LOOM_DTYPE_UINT16 = 3,
    LOOM_DTYPE_UINT32 = 4,
    LOOM_DTYPE_UINT64 = 5,
    LOOM_DTYPE_INT8 = 6,
    LOOM_DTYPE_INT16 = 7,
    LOOM_DTYPE_INT32 = 8,
    LOOM_DTYPE_INT64 = 9,
    LOOM_DTYPE_FP16 = 10,
    LOOM_DTYPE_FP32 = 11,
    LOOM_DTYPE_FP64 = 12,
    LOOM_DTYPE_BF16 = 13,
    LOOM_DTYPE_COUNT_ = 14
} loom_tensor_dtype;

/* Bytes per element; 0 for an invalid code. */
size_t loom_tensor_dtype_size(loom_tensor_dtype dt);
/* "FP32", …; NULL for an invalid code. */
const char *loom_tensor_dtype_name(loom_tensor_dtype dt);
/* The code of a KServe v2 name (exact, upper case); LOOM_DTYPE_INVALID if none. */
loom_tensor_dtype loom_tensor_dtype_from_name(const char *name);

/* One named tensor.  A view: data is owned by whoever filled it in (the
 * decoded buffer, or the caller that builds a tensor to encode). */
typedef struct loom_tensor {
    char name[LOOM_TENSOR_NAME_MAX + 1];
    loom_tensor_dtype dtype;
    int ndim;
    int64_t shape[LOOM_TENSOR_MAX_DIMS];
    const void *data;
    size_t nbytes;
} loom_tensor;

/* Fill t as a view of data with the given name, dtype and shape (nbytes is
 * computed; data may be NULL only when it is 0). */
int loom_tensor_set(loom_tensor *t, const char *name, loom_tensor_dtype dt, int ndim,
                    const int64_t *shape, const void *data, char *err, size_t errlen);

/* prod(shape) into *numel and prod(shape) * elsize into *nbytes, or
 * LOOM_ETOOBIG when either overflows (LOOM_EINVAL for a negative dim, a bad
 * ndim or dtype).  Either output may be NULL. */
int loom_tensor_shape_size(loom_tensor_dtype dt, int ndim, const int64_t *shape, int64_t *numel,
                           size_t *nbytes);

/* Element i of t converted to float or double (any numeric dtype; BOOL is 0
 * or 1); i must be < numel. */
float loom_tensor_get_f32(const loom_tensor *t, size_t i);
double loom_tensor_get_f64(const loom_tensor *t, size_t i);
/* All numel elements of t into out, converted to float. */
void loom_tensor_to_f32(const loom_tensor *t, float *out);

/* The first tensor named name among t[0..n), or NULL. */
const loom_tensor *loom_tensors_find(const loom_tensor *t, int n, const char *name);

/* Bytes that loom_tensors_encode will write for t[0..n). */
int loom_tensors_encoded_size(const loom_tensor *t, int n, size_t *size, char *err, size_t errlen);
/* Encode t[0..n) into buf (cap bytes); *len gets the bytes written. */
int loom_tensors_encode(const loom_tensor *t, int n, void *buf, size_t cap, size_t *len,
                        char *err, size_t errlen);
/* Encode into a malloc'd buffer the caller frees. */
int loom_tensors_encode_alloc(const loom_tensor *t, int n, void **out, size_t *len, char *err,
                              size_t errlen);

/* Decode a container: up to max tensors into out, their number into *count.
 * The views point into buf.  More than max tensors is LOOM_ETOOBIG. */
int loom_tensors_decode(const void *buf, size_t len, loom_tensor *out, int max, int *count,
                        char *err, size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
