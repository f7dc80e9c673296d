/* The BPE model: vocabulary and merge-rank hash maps, a priority-queue merge
 * per word (HF tokenizers' algorithm: lowest rank first, leftmost on ties;
 * O(n log n) per word), and a bounded word cache. */
#include "tok_internal.h"
#include "../kernels/check.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { CACHE_MAX_WORD = 256, CACHE_MAX_ENTRIES = 65536, CACHE_MAX_IDS = 1 << 20 };

/* ------------------------------------------------------------ hash maps */

uint64_t tok_hash(const char *p, size_t n) {
    uint64_t h = 0x9E3779B97F4A7C15ull ^ ((uint64_t)n * 0xC2B2AE3D27D4EB4Full);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * 0xFF51AFD7ED558CCDull;
        h ^= h >> 32;
        p += 8;
        n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, p, n);
    h = (h ^ w) * 0xC4CEB9FE1A85EC53ull;
    return h ^ (h >> 29);
}

static void strmap_rehash(strmap *m, uint64_t cap) {
    free(m->slots);
    m->slots = tok_xrealloc(NULL, cap * sizeof *m->slots);
    memset(m->slots, 0xFF, cap * sizeof *m->slots);
    m->mask = cap - 1;
    for (int64_t e = 0; e < m->n; e++) {
        uint64_t i = m->entries[e].hash & m->mask;
        while (m->slots[i] >= 0) i = (i + 1) & m->mask;
        m->slots[i] = (int32_t)e;
    }
}

static int64_t strmap_find(const strmap *m, uint64_t h, const char *k, size_t n, uint64_t *slot) {
    uint64_t i = h & m->mask;
    int32_t e;
    while ((e = m->slots[i]) >= 0) {
        const strmap_entry *en = &m->entries[e];
        if (en->hash == h && en->len == n && !memcmp(m->keys.p + en->off, k, n)) break;
        i = (i + 1) & m->mask;
    }
    *slot = i;
    return e;
}

const int32_t *strmap_get(const strmap *m, const char *k, size_t n) {
    if (!m->mask) return NULL;
    uint64_t slot;
    int64_t e = strmap_find(m, tok_hash(k, n), k, n, &slot);
    return e >= 0 ? &m->entries[e].value : NULL;
}

/* Keys are stored NUL-terminated, so m->keys.p + off is a C string. */
void strmap_set(strmap *m, const char *k, size_t n, int32_t value) {
    if (!m->mask || (uint64_t)(m->n + 1) * 2 > m->mask + 1) strmap_rehash(m, m->mask ? (m->mask + 1) * 2 : 64);
    uint64_t slot, h = tok_hash(k, n);
    int64_t e = strmap_find(m, h, k, n, &slot);
    if (e >= 0) {
        m->entries[e].value = value;
        return;
    }
    if (m->n == m->cap) {
        m->cap = m->cap ? m->cap * 2 : 64;
        m->entries = tok_xrealloc(m->entries, (size_t)m->cap * sizeof *m->entries);
    }
    m->entries[m->n] = (strmap_entry){h, (uint32_t)m->keys.n, (uint32_t)n, value};
    tstr_put(&m->keys, k, n);
    tstr_putc(&m->keys, 0);
    m->slots[slot] = (int32_t)m->n++;
}

void strmap_clear(strmap *m) {
    m->n = 0;
    tstr_clear(&m->keys);
    if (m->mask) memset(m->slots, 0xFF, (m->mask + 1) * sizeof *m->slots);
}

void strmap_free(strmap *m) {
    tstr_free(&m->keys);
    free(m->entries);
    free(m->slots);
    memset(m, 0, sizeof *m);
}

static uint64_t mix64(uint64_t k) {
    k = (k ^ (k >> 33)) * 0xFF51AFD7ED558CCDull;
    return k ^ (k >> 31);
}

static void u64map_grow(u64map *m) {
    uint64_t old_cap = m->mask ? m->mask + 1 : 0, cap = old_cap ? old_cap * 2 : 64;
    uint64_t *ok = m->keys, *ov = m->vals;
    m->keys = tok_xrealloc(NULL, cap * sizeof *m->keys);
    m->vals = tok_xrealloc(NULL, cap * sizeof *m->vals);
    memset(m->keys, 0xFF, cap * sizeof *m->keys);
    m->mask = cap - 1;
    for (uint64_t i = 0; i < old_cap; i++) {
        if (ok[i] == UINT64_MAX) continue;
        uint64_t j = mix64(ok[i]) & m->mask;
        while (m->keys[j] != UINT64_MAX) j = (j + 1) & m->mask;
        m->keys[j] = ok[i];
        m->vals[j] = ov[i];
    }
    free(ok);
    free(ov);
}

const uint64_t *u64map_get(const u64map *m, uint64_t key) {
    if (!m->mask) return NULL;
    for (uint64_t i = mix64(key) & m->mask;; i = (i + 1) & m->mask) {
        if (m->keys[i] == key) return &m->vals[i];
        if (m->keys[i] == UINT64_MAX) return NULL;
    }
}

void u64map_set(u64map *m, uint64_t key, uint64_t value) {
    if (!m->mask || (uint64_t)(m->n + 1) * 2 > m->mask + 1) u64map_grow(m);
    uint64_t i = mix64(key) & m->mask;
    while (m->keys[i] != UINT64_MAX && m->keys[i] != key) i = (i + 1) & m->mask;
    if (m->keys[i] == UINT64_MAX) m->n++;
    m->keys[i] = key;
    m->vals[i] = value;
}

void u64map_free(u64map *m) {
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

/* ------------------------------------------------------------- loading */

void bpe_load_vocab_done(tok_bpe *m) {
    m->nids = 0;
    for (int64_t e = 0; e < m->vocab.n; e++)
        if (m->vocab.entries[e].value + 1 > m->nids) m->nids = m->vocab.entries[e].value + 1;
    m->vocab_count = m->vocab.n;
    m->id_to_tok = tok_xrealloc(NULL, (size_t)(m->nids ? m->nids : 1) * sizeof *m->id_to_tok);
    memset(m->id_to_tok, 0, (size_t)(m->nids ? m->nids : 1) * sizeof *m->id_to_tok);
    for (int64_t e = 0; e < m->vocab.n; e++)
        m->id_to_tok[m->vocab.entries[e].value] = m->vocab.keys.p + m->vocab.entries[e].off;
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        const int32_t *id = strmap_get(&m->vocab, name, 6);
        m->byte_ids[b] = id ? *id : -1;
    }
    pthread_mutex_init(&m->cache_lock, NULL);
    m->lock_ready = 1;
}

int bpe_add_merge(tok_bpe *m, const char *a, size_t na, const char *b, size_t nb, uint32_t rank,
                  char *err, size_t errlen) {
    const int32_t *ia = strmap_get(&m->vocab, a, na), *ib = strmap_get(&m->vocab, b, nb);
    if (!ia || !ib) {
        aimc_set_err(err, errlen, "model.merges[%u]: token '%.*s' is not in the vocabulary", rank, (int)(ia ? nb : na),
                     ia ? b : a);
        return -1;
    }
    size_t skip = m->prefix.n; /* HF drops continuing_subword_prefix's length from b */
    if (skip > nb) skip = nb;
    tstr merged = {0};
    tstr_put(&merged, a, na);
    tstr_put(&merged, b + skip, nb - skip);
    const int32_t *id = strmap_get(&m->vocab, merged.p, merged.n);
    if (!id) aimc_set_err(err, errlen, "model.merges[%u]: merged token '%s' is not in the vocabulary", rank, merged.p);
    tstr_free(&merged);
    if (!id) return -1;
    u64map_set(&m->merges, (uint64_t)(uint32_t)*ia << 32 | (uint32_t)*ib, (uint64_t)rank << 32 | (uint32_t)*id);
    return 0;
}

void bpe_free(tok_bpe *m) {
    strmap_free(&m->vocab);
    free(m->id_to_tok);
    u64map_free(&m->merges);
    free(m->unk_token);
    tstr_free(&m->prefix);
    tstr_free(&m->suffix);
    if (m->lock_ready) pthread_mutex_destroy(&m->cache_lock);
    strmap_free(&m->cache);
    free(m->cache_ids);
}

/* ---------------------------------------------------------- one word */

static void word_add(tok_ctx *c, int32_t id, int32_t len) {
    if (c->nsyms == c->cap_syms) {
        c->cap_syms = c->cap_syms ? c->cap_syms * 2 : 64;
        c->syms = tok_xrealloc(c->syms, (size_t)c->cap_syms * sizeof *c->syms);
    }
    int32_t k = (int32_t)c->nsyms++;
    c->syms[k] = (bpe_sym){id, k - 1, -1, len};
    if (k) c->syms[k - 1].next = k;
}

static int all_bytes_known(const tok_bpe *m, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (m->byte_ids[(unsigned char)s[i]] < 0) return 0;
    return 1;
}

/* The vocabulary key of the character w[start..end): prefix for non-first
 * characters, suffix for the last one. */
static const char *char_key(const tok_bpe *m, tok_ctx *c, const char *w, size_t n, size_t start, size_t end,
                            size_t *klen) {
    int add_prefix = start > 0 && m->prefix.n, add_suffix = end == n && m->suffix.n;
    *klen = end - start;
    if (!add_prefix && !add_suffix) return w + start;
    tstr_clear(&c->scratch2);
    if (add_prefix) tstr_put(&c->scratch2, m->prefix.p, m->prefix.n);
    tstr_put(&c->scratch2, w + start, end - start);
    if (add_suffix) tstr_put(&c->scratch2, m->suffix.p, m->suffix.n);
    *klen = c->scratch2.n;
    return c->scratch2.p;
}

/* Initial symbols: one per character, else its <0xXX> bytes, else unk (fused
 * when fuse_unk), else nothing; as HF's BPE::merge_word. */
static int split_chars(const tok_bpe *m, tok_ctx *c, const char *w, size_t n, char *err, size_t errlen) {
    int32_t unk_id = -1, unk_len = 0;
    c->nsyms = 0;
    for (size_t i = 0; i < n;) {
        size_t start = i, klen;
        utf8_next(w, n, &i);
        const char *key = char_key(m, c, w, n, start, i, &klen);
        const int32_t *id = strmap_get(&m->vocab, key, klen);
        if (id) {
            if (unk_id >= 0) word_add(c, unk_id, unk_len);
            unk_id = -1;
            word_add(c, *id, (int32_t)(i - start));
        } else if (m->byte_fallback && all_bytes_known(m, key, klen)) {
            for (size_t k = 0; k < klen; k++) word_add(c, m->byte_ids[(unsigned char)key[k]], 1);
        } else if (m->unk_token) {
            if (unk_id >= 0 && m->fuse_unk) {
                unk_len += (int32_t)(i - start);
                continue;
            }
            const int32_t *u = strmap_get(&m->vocab, m->unk_token, strlen(m->unk_token));
            if (!u) {
                aimc_set_err(err, errlen, "unk_token '%s' is not in the vocabulary", m->unk_token);
                return -1;
            }
            if (unk_id >= 0) word_add(c, unk_id, unk_len);
            unk_id = *u;
            unk_len = (int32_t)(i - start);
        }
    }
    if (unk_id >= 0) word_add(c, unk_id, unk_len);
    return 0;
}

static int merge_of(const tok_bpe *m, int32_t a, int32_t b, uint32_t *rank, int32_t *new_id) {
    const uint64_t *v = u64map_get(&m->merges, (uint64_t)(uint32_t)a << 32 | (uint32_t)b);
    if (!v) return 0;
    *rank = (uint32_t)(*v >> 32);
    *new_id = (int32_t)(uint32_t)*v;
    return 1;
}

static int item_less(const bpe_merge_item *a, const bpe_merge_item *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void heap_push(tok_ctx *c, uint32_t rank, int32_t pos, int32_t new_id) {
    if (c->nheap == c->cap_heap) {
        c->cap_heap = c->cap_heap ? c->cap_heap * 2 : 64;
        c->heap = tok_xrealloc(c->heap, (size_t)c->cap_heap * sizeof *c->heap);
    }
    bpe_merge_item it = {rank, pos, new_id};
    int64_t i = c->nheap++;
    while (i > 0 && item_less(&it, &c->heap[(i - 1) / 2])) {
        c->heap[i] = c->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    c->heap[i] = it;
}

static bpe_merge_item heap_pop(tok_ctx *c) {
    bpe_merge_item top = c->heap[0], last = c->heap[--c->nheap];
    int64_t i = 0, n = c->nheap;
    for (;;) {
        int64_t l = 2 * i + 1, best = l;
        if (l >= n) break;
        if (l + 1 < n && item_less(&c->heap[l + 1], &c->heap[l])) best = l + 1;
        if (!item_less(&c->heap[best], &last)) break;
        c->heap[i] = c->heap[best];
        i = best;
    }
    if (n) c->heap[i] = last;
    return top;
}

static void push_pair(const tok_bpe *m, tok_ctx *c, int32_t left) {
    uint32_t rank;
    int32_t new_id;
    int32_t right = c->syms[left].next;
    if (right >= 0 && merge_of(m, c->syms[left].id, c->syms[right].id, &rank, &new_id))
        heap_push(c, rank, left, new_id);
}

/* Applies merges lowest rank first; stale queue entries (whose pair changed)
 * are recognised by the merged id and skipped, as in HF's Word::merge_all. */
static void merge_all(const tok_bpe *m, tok_ctx *c) {
    c->nheap = 0;
    for (int32_t i = 0; i + 1 < (int32_t)c->nsyms; i++) push_pair(m, c, i);
    while (c->nheap) {
        bpe_merge_item top = heap_pop(c);
        bpe_sym *s = &c->syms[top.pos];
        if (s->len == 0 || s->next < 0) continue;
        bpe_sym *r = &c->syms[s->next];
        uint32_t rank;
        int32_t new_id;
        if (!merge_of(m, s->id, r->id, &rank, &new_id) || new_id != top.new_id) continue;
        s->id = top.new_id;
        s->len += r->len;
        s->next = r->next;
        r->len = 0;
        if (s->next >= 0) c->syms[s->next].prev = top.pos;
        if (s->prev >= 0) push_pair(m, c, s->prev);
        push_pair(m, c, top.pos);
    }
}

/* ---------------------------------------------------------- word cache */

static int cache_get(tok_bpe *m, const char *w, size_t n, tok_ids *out) {
    if (n > CACHE_MAX_WORD || pthread_mutex_trylock(&m->cache_lock)) return 0;
    const int32_t *at = strmap_get(&m->cache, w, n);
    if (at) {
        int32_t len = m->cache_ids[*at];
        for (int32_t k = 0; k < len; k++) ids_push(out, m->cache_ids[*at + 1 + k]);
    }
    pthread_mutex_unlock(&m->cache_lock);
    return at != NULL;
}

static void cache_put(tok_bpe *m, const char *w, size_t n, const int32_t *ids, int64_t len) {
    if (n > CACHE_MAX_WORD || pthread_mutex_trylock(&m->cache_lock)) return;
    if (m->cache.n >= CACHE_MAX_ENTRIES || m->ncache_ids + len + 1 > CACHE_MAX_IDS) {
        strmap_clear(&m->cache);
        m->ncache_ids = 0;
    }
    if (m->ncache_ids + len + 1 > m->cap_cache_ids) {
        int64_t cap = m->cap_cache_ids ? m->cap_cache_ids : 4096;
        while (cap < m->ncache_ids + len + 1) cap *= 2;
        m->cache_ids = tok_xrealloc(m->cache_ids, (size_t)cap * sizeof *m->cache_ids);
        m->cap_cache_ids = cap;
    }
    strmap_set(&m->cache, w, n, (int32_t)m->ncache_ids);
    m->cache_ids[m->ncache_ids++] = (int32_t)len;
    memcpy(m->cache_ids + m->ncache_ids, ids, (size_t)len * sizeof *ids);
    m->ncache_ids += len;
    pthread_mutex_unlock(&m->cache_lock);
}

int bpe_tokenize(const tok_bpe *cm, tok_ctx *c, const char *w, size_t n, tok_ids *out, char *err,
                 size_t errlen) {
    tok_bpe *m = (tok_bpe *)cm; /* only the mutex-guarded cache is written */
    if (m->ignore_merges) {
        const int32_t *id = strmap_get(&m->vocab, w, n);
        if (id) {
            ids_push(out, *id);
            return 0;
        }
    }
    if (cache_get(m, w, n, out)) return 0;
    if (split_chars(m, c, w, n, err, errlen)) return -1;
    merge_all(m, c);
    int64_t first = out->n;
    for (int64_t i = 0; i < c->nsyms; i++)
        if (c->syms[i].len) ids_push(out, c->syms[i].id);
    if (out->n > first) cache_put(m, w, n, out->ids + first, out->n - first); /* nothing to cache for no ids */
    return 0;
}
