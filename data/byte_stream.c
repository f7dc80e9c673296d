/* The byte stream under the shard readers (see byte_stream.h): plain files
 * are read straight from the FILE; gzip through zlib (15 + 32: gzip or zlib
 * headers, several members), zstd through libzstd (several frames). */
#include "byte_stream.h"
#include "../kernels/check.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define STREAM_INPUT_BYTES (256 * 1024)
#define SKIP_CHUNK_BYTES (64 * 1024)

static void stream_refill(byte_stream *bs) {
    if (bs->in_pos < bs->in_len || bs->in_eof) return;
    bs->in_len = fread(bs->in, 1, STREAM_INPUT_BYTES, bs->f);
    bs->in_pos = 0;
    if (bs->in_len == 0) bs->in_eof = 1;
}

/* One gzip decoding step into dst[*got..n). Returns -1 on corrupt data. */
static int gzip_step(byte_stream *bs, uint8_t *dst, size_t n, size_t *got) {
    size_t want = n - *got;
    bs->z.next_in = bs->in + bs->in_pos;
    bs->z.avail_in = (uInt)(bs->in_len - bs->in_pos);
    bs->z.next_out = dst + *got;
    bs->z.avail_out = want > (1u << 30) ? (1u << 30) : (uInt)want;
    uInt out_before = bs->z.avail_out;
    int rc = inflate(&bs->z, Z_NO_FLUSH);
    bs->in_pos = bs->in_len - bs->z.avail_in;
    *got += out_before - bs->z.avail_out;
    bs->mid_frame = rc != Z_STREAM_END;
    if (rc == Z_STREAM_END) return inflateReset(&bs->z) == Z_OK ? 0 : -1; /* another member may follow */
    return rc == Z_OK || rc == Z_BUF_ERROR ? 0 : -1;
}

static int zstd_step(byte_stream *bs, uint8_t *dst, size_t n, size_t *got) {
    ZSTD_inBuffer ib = {bs->in, bs->in_len, bs->in_pos};
    ZSTD_outBuffer ob = {dst, n, *got};
    size_t rc = ZSTD_decompressStream(bs->zs, &ob, &ib);
    bs->in_pos = ib.pos;
    *got = ob.pos;
    bs->mid_frame = rc != 0; /* 0: a frame was completely decoded and flushed */
    return ZSTD_isError(rc) ? -1 : 0;
}

size_t stream_read(byte_stream *bs, uint8_t *dst, size_t n) {
    if (bs->codec == CODEC_PLAIN) {
        size_t got = fread(dst, 1, n, bs->f);
        bs->file_pos += (int64_t)got;
        return got;
    }
    size_t got = 0;
    while (got < n && !bs->failed) {
        stream_refill(bs);
        size_t in_before = bs->in_pos, out_before = got;
        int was_mid = bs->mid_frame;
        int rc = bs->codec == CODEC_GZIP ? gzip_step(bs, dst, n, &got) : zstd_step(bs, dst, n, &got);
        int stuck = got == out_before && bs->in_pos == in_before;
        if (stuck) bs->mid_frame = was_mid; /* a step that did nothing says nothing about frames */
        if (rc || (stuck && bs->in_pos < bs->in_len)) bs->failed = 1; /* a decoder that cannot move is damage */
        else if (stuck && bs->in_eof) break;                          /* nothing left */
    }
    return got;
}

int stream_skip(byte_stream *bs, uint64_t n) {
    if (bs->codec == CODEC_PLAIN) {
        if (n > (uint64_t)(bs->file_size - bs->file_pos)) {
            fseeko(bs->f, 0, SEEK_END);
            bs->file_pos = bs->file_size;
            return -1;
        }
        if (fseeko(bs->f, (off_t)n, SEEK_CUR)) return -1;
        bs->file_pos += (int64_t)n;
        return 0;
    }
    uint8_t scratch[SKIP_CHUNK_BYTES];
    while (n > 0) {
        size_t want = n < sizeof scratch ? (size_t)n : sizeof scratch;
        if (stream_read(bs, scratch, want) != want) return -1;
        n -= want;
    }
    return 0;
}

int stream_truncated(const byte_stream *bs) { return bs->codec != CODEC_PLAIN && (bs->failed || bs->mid_frame); }

void stream_close(byte_stream *bs) {
    if (bs->codec == CODEC_GZIP) inflateEnd(&bs->z);
    if (bs->zs) ZSTD_freeDStream(bs->zs);
    if (bs->f) fclose(bs->f);
    free(bs->in);
    memset(bs, 0, sizeof *bs);
}

/* Picks the codec from the first bytes; -1 with a message for formats aimc
 * does not read. */
static int stream_detect(byte_stream *bs, const char *path, char *err, size_t errlen) {
    static const uint8_t gz[2] = {0x1f, 0x8b}, zst[4] = {0x28, 0xb5, 0x2f, 0xfd};
    static const uint8_t xz[6] = {0xfd, '7', 'z', 'X', 'Z', 0};
    const uint8_t *p = bs->in;
    size_t n = bs->in_len;
    bs->codec = CODEC_PLAIN;
    if (n >= 2 && !memcmp(p, gz, 2)) bs->codec = CODEC_GZIP;
    else if (n >= 4 && !memcmp(p, zst, 4)) bs->codec = CODEC_ZSTD;
    else if ((n >= 6 && !memcmp(p, xz, 6)) || (n >= 3 && !memcmp(p, "BZh", 3))) {
        aimc_set_err(err, errlen, "%s: %s-compressed, which aimc does not read (recompress with gzip or zstd)", path,
                     p[0] == 'B' ? "bzip2" : "xz");
        return -1;
    }
    return 0;
}

static int stream_init_codec(byte_stream *bs, const char *path, char *err, size_t errlen) {
    if (bs->codec == CODEC_GZIP && inflateInit2(&bs->z, 15 + 32) != Z_OK) { /* 15+32: gzip or zlib header */
        bs->codec = CODEC_PLAIN;
        aimc_set_err(err, errlen, "%s: cannot start the gzip decoder", path);
        return -1;
    }
    if (bs->codec == CODEC_ZSTD && (!(bs->zs = ZSTD_createDStream()) || ZSTD_isError(ZSTD_initDStream(bs->zs)))) {
        aimc_set_err(err, errlen, "%s: cannot start the zstd decoder", path);
        return -1;
    }
    return 0;
}

static int stream_open_file(byte_stream *bs, const char *path, char *err, size_t errlen) {
    struct stat st;
    memset(bs, 0, sizeof *bs);
    if (!(bs->f = fopen(path, "rb"))) {
        aimc_set_err(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    if (fstat(fileno(bs->f), &st) || S_ISDIR(st.st_mode)) {
        aimc_set_err(err, errlen, "%s: %s", path,
                     S_ISDIR(st.st_mode) ? "is a directory, not a shard" : strerror(errno));
        return -1;
    }
    bs->file_size = (int64_t)st.st_size;
    if (!(bs->in = malloc(STREAM_INPUT_BYTES))) {
        aimc_set_err(err, errlen, "%s: out of memory", path);
        return -1;
    }
    stream_refill(bs);
    if (bs->in_len == 0) {
        aimc_set_err(err, errlen, "%s: empty file (0 bytes), not a shard", path);
        return -1;
    }
    if (stream_detect(bs, path, err, errlen)) return -1;
    if (bs->codec == CODEC_PLAIN) { /* read plain files straight from the FILE */
        fseeko(bs->f, 0, SEEK_SET);
        bs->in_pos = bs->in_len = 0;
    }
    return stream_init_codec(bs, path, err, errlen);
}

int stream_open(byte_stream *bs, const char *path, char *err, size_t errlen) {
    if (stream_open_file(bs, path, err, errlen) == 0) return 0;
    stream_close(bs);
    return -1;
}
