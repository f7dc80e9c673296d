/* A byte stream over a plain, gzip or zstd file (codec detected from the
 * first bytes; several gzip members / zstd frames in a row are one stream).
 * Shared by the tar shard reader and the raw MMC4 .jsonl reader (data/shard.h).
 * Corrupt compressed data ends the stream early; stream_truncated then
 * tells it apart from a clean end. Internal to data/. */
#ifndef AIMC_BYTE_STREAM_H
#define AIMC_BYTE_STREAM_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <zlib.h>
#include <zstd.h>

typedef enum { CODEC_PLAIN, CODEC_GZIP, CODEC_ZSTD } stream_codec;

typedef struct byte_stream {
    FILE *f;
    stream_codec codec;
    int64_t file_size, file_pos; /* plain files: bounds for seeking over data */
    uint8_t *in;
    size_t in_pos, in_len;
    int in_eof, failed;
    int mid_frame; /* compressed: the last decoding step left a gzip member / zstd frame unfinished */
    z_stream z;
    ZSTD_DStream *zs;
} byte_stream;

/* 0, or -1 with "PATH: problem" in err (cannot open, a folder, an empty
 * file, xz / bzip2 data, a decoder that cannot start); bs is then closed. */
int stream_open(byte_stream *bs, const char *path, char *err, size_t errlen);
/* Reads up to n bytes; fewer only at the end of the data or on damage. */
size_t stream_read(byte_stream *bs, uint8_t *dst, size_t n);
/* Skips n bytes; 0, or -1 when the data ends first. */
int stream_skip(byte_stream *bs, uint64_t n);
/* After the end was reached: 1 when the compressed data was corrupt or
 * stopped inside a gzip member / zstd frame (a cut file), else 0. Plain
 * files never look truncated at this level. */
int stream_truncated(const byte_stream *bs);
void stream_close(byte_stream *bs);
#endif
