/* Tar shards (webdataset / img2dataset layout) read as a stream of samples.
 *
 * A shard is a tar file, plain or compressed (gzip, zstd; detected by magic
 * bytes), holding members named "<key>.<ext>"; key = the basename up to its
 * FIRST dot (plus the directory part), ext = the rest ("jpg", "txt",
 * "json", "0.jpg"). Consecutive members with the same key form one sample,
 * whatever their order. ustar, PAX ('x' / 'g' records: path, size) and GNU
 * long names ('L') are understood.
 *
 * Damage never stops a run: a member or sample that cannot be read is
 * skipped and counted by reason; a truncated shard ends early with its
 * complete samples delivered and one SKIP_TRUNCATED_SHARD counted.
 *
 * Details: a member whose header is damaged (checksum, numeric field) counts
 * one SKIP_BAD_HEADER and the reader resumes at the next valid header; the
 * sample it belonged to is still delivered without it. A sample counts as
 * complete once the next member's header (another key) or the end-of-archive
 * block (or at least the header of a member with another key, when the data
 * ends inside that member) has been read, so a shard cut anywhere loses at
 * most the sample in progress. A damaged first header makes shard_open
 * refuse the file (it cannot be told apart from a file that is no tar). Entries that are not regular files, and names with no dot in
 * their basename, are ignored (not counted). Two members of a sample with the
 * same extension are both kept; shard_sample_member returns the first.
 *
 * Raw MMC4 (a path ending in .jsonl, .jsonl.gz or .jsonl.zst; plain, gzip or
 * zstd whatever the name says): one JSON document per line, images in a
 * folder as <folder>/<image_name> (shard_open_mmc4's mmc4_images). Each non-blank
 * line is one sample: key = its 1-based line number ("17"), a "json" member
 * holding the line, and one member per image_info entry whose file was read,
 * named by its image_name (what data/sample.h looks up when an entry has no
 * image_base64). Entries with image_base64 are not looked up; a name used
 * twice is read once. A line longer than max_member_bytes is dropped
 * (SKIP_MEMBER_TOO_LARGE; the reader goes on at the next line, holding at
 * most max_member_bytes of it); a malformed line is still delivered and
 * document_parse counts it (SKIP_BAD_JSON). Per image, with the document
 * delivered without it (as OpenFlamingo drops images that failed): a file
 * that does not exist, or a name that is empty, holds a '/' or starts with
 * '.', SKIP_MISSING_IMAGE; a file that exists but cannot be read (not a
 * regular file, permissions, I/O error) SKIP_BAD_IMAGE; one over
 * max_member_bytes, or past max_members - 1 images, SKIP_MEMBER_TOO_LARGE.
 * Whether the document then still has enough pairs is data/episode.h's
 * call. A compressed file that stops inside a gzip member / zstd frame (or
 * is corrupt) counts one SKIP_TRUNCATED_SHARD and loses only its unfinished
 * last line. With no mmc4_images no image is read or counted (inspect).
 * An empty (0-byte) file, like an empty tar, cannot be opened. */
#ifndef AIMC_SHARD_H
#define AIMC_SHARD_H
#include <stddef.h>
#include <stdint.h>

typedef enum {
    SKIP_SHARD_UNREADABLE = 0, /* could not be opened / not a tar */
    SKIP_TRUNCATED_SHARD,      /* ended inside a header or a member */
    SKIP_BAD_HEADER,           /* checksum, size or name field invalid */
    SKIP_MEMBER_TOO_LARGE,     /* over shard_limits.max_member_bytes (the member is
                                  dropped), or a sample with more than max_members
                                  members (the sample is dropped) */
    SKIP_BAD_IMAGE,            /* undecodable, too small or too large */
    SKIP_BAD_JSON,             /* malformed document or missing fields */
    SKIP_BAD_TEXT,             /* empty caption / sentence after cleaning */
    SKIP_MISSING_MEMBER,       /* e.g. an image without its caption */
    SKIP_TOO_FEW_PAIRS,        /* a document with fewer usable pairs than needed */
    SKIP_NO_TARGET,            /* an episode whose target has no tokens left */
    SKIP_MISSING_IMAGE,        /* raw MMC4 .jsonl: an image_info file absent from the image folder
                                  (counted per image; the document goes on without it) */
    SKIP_REASON_COUNT
} skip_reason;

typedef struct skip_counts {
    int64_t n[SKIP_REASON_COUNT];
} skip_counts;

const char *skip_reason_name(skip_reason r);
void skip_count(skip_counts *c, skip_reason r);
void skip_counts_add(skip_counts *into, const skip_counts *from);
/* "bad_image=3 bad_json=1" (only non-zero reasons; "none" if all zero). */
const char *skip_counts_str(const skip_counts *c, char *buf, size_t n);

typedef struct shard_member {
    char *ext;      /* after the first dot of the basename, no leading dot */
    uint8_t *data;  /* owned by the sample; data[size] is an extra NUL byte */
    size_t size;
} shard_member;

typedef struct shard_sample {
    char *key;
    int n_members;
    shard_member *members;
    int64_t index;  /* 0-based position of this sample in its shard (a sample
                       dropped for having too many members takes a position too) */
} shard_sample;

typedef struct shard_limits { /* 0 in a field: its default */
    size_t max_member_bytes; /* default 64 MiB; also the longest .jsonl line and image file */
    int max_members;         /* per sample, default 256 */
} shard_limits;

typedef struct shard_reader shard_reader;

/* NULL and one line in err when the file cannot be opened or is not a
 * (compressed) tar. limits may be NULL (defaults). */
shard_reader *shard_open(const char *path, const shard_limits *limits, char *err, size_t errlen);
/* The same, with the image folder of raw MMC4 .jsonl files (copied; NULL:
 * no image is read). Tar shards ignore it. */
shard_reader *shard_open_mmc4(const char *path, const shard_limits *limits, const char *mmc4_images, char *err,
                              size_t errlen);
/* Next complete sample into *s (free it with shard_sample_free). Returns 1,
 * or 0 at the end of the shard (also after truncation, counted in skips). */
int shard_next(shard_reader *r, shard_sample *s, skip_counts *skips);
/* Passes over up to n samples exactly as shard_next would deliver them,
 * counting nothing (a resumed loader's way to its position; a .jsonl reader
 * reads no image on the way). Returns how many it passed (< n: the end). */
int64_t shard_skip(shard_reader *r, int64_t n);
void shard_close(shard_reader *r);
/* Whether shard_open reads path as raw MMC4 jsonl (by its name, see above). */
int shard_is_jsonl(const char *path);
void shard_sample_free(shard_sample *s);
/* The member with this exact extension, or NULL. */
const shard_member *shard_sample_member(const shard_sample *s, const char *ext);

/* Expands a shard specification into paths, in order: a comma-separated
 * list of items, each a path, a glob ("*.tar" in some folder; matches sorted
 * bytewise) or a brace range ("shards/{00000..00099}.tar", zero padding
 * kept; also lists "{a,b}"; several groups multiply). Returns the count
 * (paths malloc'd, free with shard_paths_free), or -1 with a message in err
 * (e.g. a glob matching nothing, a malformed range). */
int64_t shard_expand(const char *spec, char ***paths, char *err, size_t errlen);
void shard_paths_free(char **paths, int64_t n);
#endif
