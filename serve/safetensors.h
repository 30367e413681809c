/* serve/safetensors.h — read and write the safetensors format
 * (https://huggingface.co/docs/safetensors), the model artifact format of the
 * serve runtimes:
 *
 *     u64 LE  N                   header length, 2 .. LOOM_ST_HEADER_MAX
 *     N bytes of JSON             {"name": {"dtype": "F32", "shape": [..],
 *                                           "data_offsets": [begin, end]}, …,
 *                                  "__metadata__": {"key": "string", …}}
 *                                 (may end in spaces, the writer's padding)
 *     the byte buffer             tensors' data, offsets relative to its start
 *
 * The reader takes untrusted bytes (an artifact from the object store or an
 * upload) and checks everything: the header length against the buffer, the
 * JSON (jansson; duplicate keys refused), each dtype and shape, that
 * end - begin == prod(shape) * element size, and that the tensors tile the
 * byte buffer exactly — no overlap, no hole, nothing after the last one — as
 * the reference implementation requires.  Metadata values must be strings.
 *
 * Tensors are loom_tensor views (serve/tensor.h) into the caller's buffer,
 * which must outlive the file handle; data may be unaligned (read it with
 * loom_tensor_to_f32 and friends).  safetensors dtypes map to loom dtypes:
 * BOOL U8 U16 U32 U64 I8 I16 I32 I64 F16 BF16 F32 F64; the FP8 types are
 * refused (LOOM_EINVAL, "dtype F8_E4M3 is not supported").
 *
 * Errors: LOOM_EINVAL (malformed), LOOM_ETOOBIG (over a limit), LOOM_ENOMEM,
 * with a message in err. */
#ifndef LOOM_SERVE_SAFETENSORS_H
#define LOOM_SERVE_SAFETENSORS_H

#include <stddef.h>
#include "serve/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

#define LOOM_ST_HEADER_MAX (100u << 20)  /* the reference reader's limit */
#define LOOM_ST_MAX_TENSORS 65536
#define LOOM_ST_MAX_METADATA 1024

typedef struct loom_st_file loom_st_file;

/* Parse buf[0..len).  *out is freed with loom_st_close. */
int loom_st_open(const void *buf, size_t len, loom_st_file **out, char *err, size_t errlen);
void loom_st_close(loom_st_file **f);

/* Tensors in the order of their data offsets. */
int loom_st_count(const loom_st_file *f);
const loom_tensor *loom_st_tensor(const loom_st_file *f, int i);
const loom_tensor *loom_st_find(const loom_st_file *f, const char *name);

/* __metadata__: the value of key (NULL if absent); entries by index. */
const char *loom_st_metadata(const loom_st_file *f, const char *key);
int loom_st_metadata_count(const loom_st_file *f);
int loom_st_metadata_entry(const loom_st_file *f, int i, const char **key, const char **value);

/* safetensors' dtype name ("F32") of a loom dtype, and back
 * (LOOM_DTYPE_INVALID when it has none). */
const char *loom_st_dtype_name(loom_tensor_dtype dt);
loom_tensor_dtype loom_st_dtype_from_name(const char *name);

/* Write tensors t[0..n) (data laid out in that order) and metadata, given as
 * nmeta key/value pairs in meta[0..2*nmeta), into a malloc'd buffer *out of
 * *len bytes that the caller frees.  The header is padded with spaces so that
 * the byte buffer starts 8-aligned. */
int loom_st_write(const loom_tensor *t, int n, const char *const *meta, int nmeta, void **out,
                  size_t *len, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
