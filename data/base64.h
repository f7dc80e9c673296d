/* Base64 (RFC 4648, standard alphabet "A-Za-z0-9+/", '=' padding), as
 * Python's base64.b64encode writes it: used for the images MMC4-style shards
 * embed in their JSON documents (image_info[i].image_base64). */
#ifndef AIMC_BASE64_H
#define AIMC_BASE64_H
#include <stddef.h>
#include <stdint.h>

/* Characters base64_encode writes for n bytes (without the terminating NUL). */
size_t base64_encoded_len(size_t n);
/* malloc'd, NUL-terminated text; *out_len (may be NULL) gets its length.
 * NULL only when out of memory. */
char *base64_encode(const uint8_t *data, size_t n, size_t *out_len);
/* Decodes n characters of text. Whitespace (space, \t, \r, \n) is ignored;
 * the final '=' padding may be present or missing. Returns 0 with *out
 * malloc'd (one extra NUL byte after *out_len bytes), or -1 with *out NULL
 * on any other character, misplaced padding, a dangling final character or
 * non-zero bits left over in the last group (not canonical), or when out of
 * memory. */
int base64_decode(const char *text, size_t n, uint8_t **out, size_t *out_len);
#endif
