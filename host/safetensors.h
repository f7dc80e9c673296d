/* safetensors: read (memory-mapped, every size validated against the file
 * before it is trusted) and write. Format: u64 LE header length N, N bytes
 * of JSON {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__"},
 * then the data buffer (offsets relative to byte 8 + N). */
#ifndef AIMC_SAFETENSORS_H
#define AIMC_SAFETENSORS_H
#include "../kernels/tensor.h"
#include <stddef.h>
#include <stdint.h>

#define ST_MAX_DIMS 8

typedef enum {
    ST_F64, ST_F32, ST_F16, ST_BF16, ST_I64, ST_I32, ST_I16, ST_I8, ST_U8, ST_BOOL,
    ST_F8_E4M3, ST_F8_E5M2, ST_DTYPE_COUNT
} st_dtype;

typedef struct st_tensor {
    const char *name;
    st_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    const void *data;  /* points into the mapping */
    size_t nbytes;
} st_tensor;

typedef struct st_file st_file;

/* Opens and validates a file. On failure returns NULL and writes one line
 * naming the file and what is wrong into err. */
st_file *st_open(const char *path, char *err, size_t errlen);
void st_close(st_file *f);
int st_count(const st_file *f);
const st_tensor *st_at(const st_file *f, int i);
const st_tensor *st_find(const st_file *f, const char *name); /* NULL if absent */
const char *st_dtype_name(st_dtype dt);  /* "BF16" */
size_t st_dtype_size(st_dtype dt);
/* Our tensor dtype for a safetensors dtype, or -1 when it has none. */
int st_to_dtype(st_dtype dt);
/* Copies a tensor's values into f32 / i32 host arrays of numel elements,
 * converting from any float / integer dtype; returns 0, or -1 with a message
 * in err for an incompatible dtype. */
int st_read_f32(const st_tensor *t, float *out, char *err, size_t errlen);
int st_read_i32(const st_tensor *t, int32_t *out, char *err, size_t errlen);

/* Writer: collects tensors (the data is copied) and writes them at once,
 * to a temporary file renamed into place, so a failed save never leaves a
 * half-written file under the final name. */
typedef struct st_writer st_writer;
st_writer *st_writer_new(void);
void st_writer_add(st_writer *w, const char *name, st_dtype dtype, int ndim,
                   const int64_t *shape, const void *data);
void st_writer_metadata(st_writer *w, const char *key, const char *value);
/* 0 on success; -1 with a one-line message in err. */
int st_writer_save(st_writer *w, const char *path, char *err, size_t errlen);
void st_writer_free(st_writer *w);
#endif
