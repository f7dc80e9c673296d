/* Raw MMC4 .jsonl files read as shard samples (rules in shard.h): lines
 * are cut from the byte stream of data/byte_stream.h (plain, gzip, zstd)
 * with a bounded line buffer; each document line becomes a sample holding
 * the line as its "json" member and every image_info image found in the
 * image folder as a member named by its image_name, which is exactly where
 * document_parse (data/sample.h) looks for an image without image_base64. */
#include "shard_jsonl.h"
#include "byte_stream.h"
#include "../kernels/check.h"
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define JSONL_CHUNK_BYTES (256 * 1024)
#define JSONL_FIRST_LINE_CAP 4096

struct jsonl_reader {
    byte_stream s;
    shard_limits lim;
    char *images;     /* the image folder, or NULL: no image is read */
    uint8_t *chunk;   /* decompressed input */
    size_t pos, len;
    int eof;
    uint8_t *line;    /* the current line, without its '\n' */
    size_t line_len, line_cap;
    int64_t line_no;  /* physical lines read (1-based number of the current one) */
    int64_t docs;     /* document lines seen (too long ones included) */
    int end_counted;  /* truncation at the end already counted */
};

/* ---- lines ---------------------------------------------------------------- */

static void refill(jsonl_reader *r) {
    r->len = stream_read(&r->s, r->chunk, JSONL_CHUNK_BYTES);
    r->pos = 0;
    if (r->len == 0) r->eof = 1;
}

/* Appends to the line unless it is already over the limit (then only the
 * flag is kept: the rest of the line is read through, never stored). */
static void line_append(jsonl_reader *r, const uint8_t *p, size_t n, int *too_long) {
    if (*too_long) return;
    if (n > r->lim.max_member_bytes - r->line_len) {
        *too_long = 1;
        return;
    }
    if (r->line_len + n + 1 > r->line_cap) {
        size_t cap = r->line_cap ? r->line_cap : JSONL_FIRST_LINE_CAP;
        while (cap < r->line_len + n + 1) cap *= 2;
        if (cap > r->lim.max_member_bytes + 1) cap = r->lim.max_member_bytes + 1;
        r->line = aimc_xrealloc(r->line, cap);
        r->line_cap = cap;
    }
    memcpy(r->line + r->line_len, p, n);
    r->line_len += n;
    r->line[r->line_len] = 0;
}

/* The next physical line into r->line. Returns 0 at the end of the data
 * (nothing read), else 1 with *terminated = whether a '\n' ended it and
 * *too_long = whether it was over the limit (its bytes are then not kept). */
static int read_line(jsonl_reader *r, int *terminated, int *too_long) {
    int any = 0;
    r->line_len = 0;
    *too_long = *terminated = 0;
    for (;;) {
        if (r->pos == r->len && !r->eof) refill(r);
        if (r->pos == r->len) {
            if (any) r->line_no++;
            return any;
        }
        const uint8_t *start = r->chunk + r->pos, *nl = memchr(start, '\n', r->len - r->pos);
        size_t n = nl ? (size_t)(nl - start) : r->len - r->pos;
        line_append(r, start, n, too_long);
        r->pos += n + (nl != NULL);
        any = 1;
        if (nl) {
            r->line_no++;
            *terminated = 1;
            return 1;
        }
    }
}

static int blank(const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r') return 0;
    return 1;
}

/* Counts one truncated_shard when a compressed file ends inside a gzip
 * member / zstd frame or its data is corrupt. */
static void count_end(jsonl_reader *r, skip_counts *skips) {
    if (r->end_counted) return;
    r->end_counted = 1;
    if (stream_truncated(&r->s)) skip_count(skips, SKIP_TRUNCATED_SHARD);
}

/* Moves to the next document line (in r->line). Blank lines are no
 * documents; a line over the limit counts member_too_large; the last line
 * of a cut compressed file is dropped (it is incomplete). 0 at the end. */
static int next_document_line(jsonl_reader *r, skip_counts *skips) {
    int terminated, too_long;
    while (read_line(r, &terminated, &too_long)) {
        if (!too_long && blank(r->line, r->line_len)) continue;
        if (!terminated && stream_truncated(&r->s)) break;
        r->docs++;
        if (!too_long) return 1;
        skip_count(skips, SKIP_MEMBER_TOO_LARGE);
    }
    count_end(r, skips);
    return 0;
}

/* ---- image files ---------------------------------------------------------- */

typedef enum { IMAGE_FILE_OK, IMAGE_FILE_MISSING, IMAGE_FILE_UNREADABLE, IMAGE_FILE_TOO_LARGE } image_file_status;

/* dir/name into a malloc'd buffer (NUL after the data). */
static image_file_status read_image_file(const char *dir, const char *name, size_t max, uint8_t **data,
                                         size_t *size) {
    size_t nd = strlen(dir), nn = strlen(name);
    char *path = aimc_xmalloc(nd + nn + 2);
    memcpy(path, dir, nd), path[nd] = '/', memcpy(path + nd + 1, name, nn + 1);
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC); /* O_NONBLOCK: a FIFO must not block the reader */
    free(path);
    if (fd < 0) return errno == ENOENT || errno == ENOTDIR ? IMAGE_FILE_MISSING : IMAGE_FILE_UNREADABLE;
    struct stat st;
    image_file_status status = IMAGE_FILE_UNREADABLE;
    uint8_t *buf = NULL;
    size_t got = 0;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode)) goto done;
    if ((uint64_t)st.st_size > max) {
        status = IMAGE_FILE_TOO_LARGE;
        goto done;
    }
    buf = aimc_xmalloc((size_t)st.st_size + 1);
    while (got < (size_t)st.st_size) {
        ssize_t k = read(fd, buf + got, (size_t)st.st_size - got);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        got += (size_t)k;
    }
    if (got == (size_t)st.st_size) {
        buf[got] = 0;
        *data = buf, *size = got, buf = NULL;
        status = IMAGE_FILE_OK;
    }
done:
    free(buf);
    close(fd);
    return status;
}

/* A plain file name inside the folder: not empty, no '/', not starting
 * with '.' (so never ".", ".." or a hidden file). */
static int safe_name(const char *name) { return name[0] && name[0] != '.' && !strchr(name, '/'); }

static void add_member(shard_sample *s, const char *ext, uint8_t *data, size_t size) {
    s->members = aimc_xrealloc(s->members, (size_t)(s->n_members + 1) * sizeof *s->members);
    s->members[s->n_members++] = (shard_member){aimc_strdup(ext), data, size};
}

/* Whether an earlier entry of image_info names the same file. */
static int named_before(const cJSON *infos, const cJSON *info, const char *name) {
    for (const cJSON *e = infos->child; e && e != info; e = e->next) {
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(e, "image_name");
        if (cJSON_IsString(n) && !strcmp(n->valuestring, name)) return 1;
    }
    return 0;
}

/* One image_info entry: its file becomes a member, or a member-level skip
 * is counted. Entries without a string image_name, with image_base64, or
 * naming a file already handled are left to document_parse. */
static void add_image(jsonl_reader *r, shard_sample *s, const cJSON *infos, const cJSON *info, skip_counts *skips) {
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(info, "image_name");
    if (!cJSON_IsString(name) || cJSON_IsString(cJSON_GetObjectItemCaseSensitive(info, "image_base64")) ||
        named_before(infos, info, name->valuestring))
        return;
    if (s->n_members >= r->lim.max_members) {
        skip_count(skips, SKIP_MEMBER_TOO_LARGE);
        return;
    }
    uint8_t *data = NULL;
    size_t size = 0;
    image_file_status st = safe_name(name->valuestring)
                               ? read_image_file(r->images, name->valuestring, r->lim.max_member_bytes, &data, &size)
                               : IMAGE_FILE_MISSING;
    switch (st) {
    case IMAGE_FILE_OK: add_member(s, name->valuestring, data, size); break;
    case IMAGE_FILE_MISSING: skip_count(skips, SKIP_MISSING_IMAGE); break;
    case IMAGE_FILE_UNREADABLE: skip_count(skips, SKIP_BAD_IMAGE); break;
    case IMAGE_FILE_TOO_LARGE: skip_count(skips, SKIP_MEMBER_TOO_LARGE); break;
    }
}

/* The images of the document in member 0. A line that is no JSON object
 * with an image_info array gets none: document_parse then says why. */
static void add_images(jsonl_reader *r, shard_sample *s, skip_counts *skips) {
    if (!r->images) return;
    cJSON *doc = cJSON_ParseWithLength((const char *)s->members[0].data, s->members[0].size);
    const cJSON *infos = cJSON_IsObject(doc) ? cJSON_GetObjectItemCaseSensitive(doc, "image_info") : NULL;
    const cJSON *info;
    if (cJSON_IsArray(infos)) cJSON_ArrayForEach(info, infos) add_image(r, s, infos, info, skips);
    cJSON_Delete(doc);
}

/* ---- reader --------------------------------------------------------------- */

jsonl_reader *jsonl_open(const char *path, const shard_limits *lim, const char *images, char *err, size_t errlen) {
    jsonl_reader *r = aimc_xcalloc(1, sizeof *r);
    if (stream_open(&r->s, path, err, errlen)) {
        free(r);
        return NULL;
    }
    r->lim = *lim;
    r->images = images ? aimc_strdup(images) : NULL;
    r->chunk = aimc_xmalloc(JSONL_CHUNK_BYTES);
    return r;
}

int jsonl_next(jsonl_reader *r, shard_sample *s, skip_counts *skips) {
    memset(s, 0, sizeof *s);
    if (!next_document_line(r, skips)) return 0;
    char key[32];
    snprintf(key, sizeof key, "%lld", (long long)r->line_no);
    s->key = aimc_strdup(key);
    s->index = r->docs - 1;
    uint8_t *json = aimc_xmalloc(r->line_len + 1);
    memcpy(json, r->line, r->line_len);
    json[r->line_len] = 0;
    add_member(s, "json", json, r->line_len);
    add_images(r, s, skips);
    return 1;
}

int64_t jsonl_skip(jsonl_reader *r, int64_t n) {
    int64_t done = 0;
    while (done < n && next_document_line(r, NULL)) done++;
    return done;
}

void jsonl_close(jsonl_reader *r) {
    if (!r) return;
    stream_close(&r->s);
    free(r->images);
    free(r->chunk);
    free(r->line);
    free(r);
}
