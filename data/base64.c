/* Base64 encoder and strict decoder (see base64.h). */
#include "base64.h"
#include <stdlib.h>

static const char b64_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t base64_encoded_len(size_t n) { return (n + 2) / 3 * 4; }

char *base64_encode(const uint8_t *d, size_t n, size_t *out_len) {
    size_t len = base64_encoded_len(n), o = 0, i = 0;
    char *s = malloc(len + 1);
    if (!s) return NULL;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)d[i] << 16 | (uint32_t)d[i + 1] << 8 | d[i + 2];
        s[o++] = b64_alphabet[v >> 18];
        s[o++] = b64_alphabet[(v >> 12) & 63];
        s[o++] = b64_alphabet[(v >> 6) & 63];
        s[o++] = b64_alphabet[v & 63];
    }
    if (i < n) { /* 1 or 2 bytes left: 2 or 3 characters, then padding */
        uint32_t v = (uint32_t)d[i] << 16 | (i + 1 < n ? (uint32_t)d[i + 1] << 8 : 0);
        s[o++] = b64_alphabet[v >> 18];
        s[o++] = b64_alphabet[(v >> 12) & 63];
        s[o++] = i + 1 < n ? b64_alphabet[(v >> 6) & 63] : '=';
        s[o++] = '=';
    }
    s[o] = 0;
    if (out_len) *out_len = o;
    return s;
}

/* 0..63 for an alphabet character, 64 for '=', 65 for whitespace, -1 otherwise. */
static int b64_value(unsigned char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    if (c == '=') return 64;
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n') return 65;
    return -1;
}

/* Writes the bytes of a final group of k (2 or 3) characters held in v;
 * returns -1 when the unused low bits are not zero. */
static int flush_tail(uint32_t v, int k, uint8_t *out, size_t *o) {
    if (k == 2) {
        if (v & 0xF) return -1;
        out[(*o)++] = (uint8_t)(v >> 4);
    } else if (k == 3) {
        if (v & 0x3) return -1;
        out[(*o)++] = (uint8_t)(v >> 10);
        out[(*o)++] = (uint8_t)(v >> 2);
    } else if (k == 1) {
        return -1;
    }
    return 0;
}

static int decode_into(const char *text, size_t n, uint8_t *out, size_t *out_len) {
    uint32_t v = 0;
    int k = 0, padding = 0;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int c = b64_value((unsigned char)text[i]);
        if (c < 0) return -1;
        if (c == 65) continue;
        if (c == 64) { /* '=' only after 2 or 3 characters of the last group */
            if (padding == 0 && k < 2) return -1;
            if (++padding > 2 || k + padding > 4) return -1;
            continue;
        }
        if (padding) return -1; /* data after padding */
        v = v << 6 | (uint32_t)c;
        if (++k == 4) {
            out[o++] = (uint8_t)(v >> 16);
            out[o++] = (uint8_t)(v >> 8);
            out[o++] = (uint8_t)v;
            v = 0;
            k = 0;
        }
    }
    if (padding && k + padding != 4) return -1;
    if (flush_tail(v, k, out, &o)) return -1;
    *out_len = o;
    return 0;
}

int base64_decode(const char *text, size_t n, uint8_t **out, size_t *out_len) {
    *out = malloc(n / 4 * 3 + 4);
    size_t len = 0;
    if (!*out || decode_into(text, n, *out, &len)) {
        free(*out);
        *out = NULL;
        return -1;
    }
    (*out)[len] = 0;
    *out_len = len;
    return 0;
}
