/* UTF-8 well-formedness for the data pipeline (sample text checks) and the
 * tokenizer (its U+FFFD replacement), inline because both call it per byte. */
#ifndef AIMC_UTF8_H
#define AIMC_UTF8_H
#include <stddef.h>
#include <stdint.h>

/* Length (1..4) of the well-formed UTF-8 sequence at s[0..n), n >= 1; 0 when
 * it is not well formed, and then *bad gets the length (>= 1) of its maximal
 * subpart: the bytes one U+FFFD replaces (Unicode 3.9, "U+FFFD substitution
 * of maximal subparts", which Python and Rust both follow). */
static inline size_t utf8_seq_len(const uint8_t *s, size_t n, size_t *bad) {
    uint8_t b = s[0];
    size_t need;
    uint8_t lo = 0x80, hi = 0xBF;
    *bad = 1;
    if (b < 0x80) return 1;
    if (b >= 0xC2 && b <= 0xDF) need = 1;
    else if (b >= 0xE0 && b <= 0xEF) need = 2, lo = b == 0xE0 ? 0xA0 : 0x80, hi = b == 0xED ? 0x9F : 0xBF;
    else if (b >= 0xF0 && b <= 0xF4) need = 3, lo = b == 0xF0 ? 0x90 : 0x80, hi = b == 0xF4 ? 0x8F : 0xBF;
    else return 0;
    for (size_t i = 1; i <= need; i++) {
        uint8_t c = i < n ? s[i] : 0;
        uint8_t l = i == 1 ? lo : 0x80, h = i == 1 ? hi : 0xBF;
        if (i >= n || c < l || c > h) {
            *bad = i;
            return 0;
        }
    }
    return need + 1;
}

#endif
