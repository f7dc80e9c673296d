/* Fuzz target: the demonstration-bank reader (host/bank.h: bank_open).
 * Input: one flag byte, then the bank file. With flags & 1 the harness first
 * repairs what random mutation almost never keeps right (the header's file
 * size, the backbone text's hash, the CRC-32 over header, text, index and
 * pool), so the fuzzer reaches the index and the string pool.
 * Oracles for a bank that opens: each entry is found by its id and its rows
 * [row, row + n_rows) lie inside total_rows (and are readable); the model
 * check accepts the stored backbone and layer and refuses others; writing the
 * entries back with bank_writer and reopening gives the same bank. */
#include "../../host/bank.h"
#include "../../host/checkpoint.h"
#include "fuzz.h"
#include <zlib.h>

static uint64_t bkfz_get64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static void bkfz_put(uint8_t *p, uint64_t v, int bytes) {
    for (int i = 0; i < bytes; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* True when [off, off + len) lies inside size bytes. */
static int bkfz_inside(uint64_t off, uint64_t len, size_t size) { return off <= size && len <= size - off; }

/* File size, text hash and the metadata CRC (docs in host/bank.c) made consistent. */
static void bkfz_repair(uint8_t *b, size_t size) {
    if (size < BANK_HEADER_SIZE) return;
    bkfz_put(b + 16, size, 8);
    uint64_t text_off = bkfz_get64(b + 72), text_len = bkfz_get64(b + 80), count = bkfz_get64(b + 48);
    uint64_t index_off = bkfz_get64(b + 88), pool_len = bkfz_get64(b + 96);
    if (!bkfz_inside(text_off, text_len, size) || count > size / BANK_ENTRY_SIZE) return;
    char *text = fuzz_cstr(b + text_off, (size_t)text_len);
    bkfz_put(b + 24, ckpt_hash_text(text), 8);
    free(text);
    uint64_t index_len = count * BANK_ENTRY_SIZE;
    if (!bkfz_inside(index_off, index_len, size) || !bkfz_inside(index_off + index_len, pool_len, size)) return;
    uLong c = crc32_z(0, NULL, 0);
    c = crc32_z(c, b, 104);
    c = crc32_z(c, b + text_off, (size_t)text_len);
    c = crc32_z(c, b + index_off, (size_t)index_len);
    c = crc32_z(c, b + index_off + index_len, (size_t)pool_len);
    bkfz_put(b + 104, (uint32_t)c, 4);
}

static void bkfz_check_entries(const bank *b) {
    FUZZ_ASSERT(b->d_model >= 1 && b->count >= 0 && b->total_rows >= 0, "header values");
    for (int64_t i = 0; i < b->count; i++) {
        const bank_entry *e = &b->entries[i];
        FUZZ_ASSERT(bank_find(b, e->id) == e, "entry '%s' not found or not unique", e->id);
        FUZZ_ASSERT(e->row >= 0 && e->n_rows >= 1 && e->row + e->n_rows <= b->total_rows, "rows of '%s'", e->id);
        fuzz_touch(bank_entry_rows(b, e), (size_t)(e->n_rows * b->d_model) * sizeof(float));
        fuzz_touch(e->image, strlen(e->image));
        fuzz_touch(e->text, strlen(e->text));
    }
    char err[1024];
    FUZZ_ASSERT(bank_check_model(b, b->backbone_text, b->layer, err, sizeof err) == 0, "own model refused: %s", err);
    FUZZ_ASSERT(bank_check_model(b, "arch=other", b->layer, err, sizeof err) == -1 && err[0], "other backbone accepted");
    FUZZ_ASSERT(bank_check_model(b, b->backbone_text, b->layer + 1, err, sizeof err) == -1, "other layer accepted");
}

/* bank_writer of what was read, reopened: the same entries and rows. */
static void bkfz_check_rewrite(const bank *b) {
    static char *path;
    if (!path) path = fuzz_tmp_path("rewrite.bank");
    char err[1024];
    bank_writer *w = bank_writer_open(path, b->backbone_text, b->layer, b->d_model, err, sizeof err);
    FUZZ_ASSERT(w, "bank_writer_open refused what bank_open accepted: %s", err);
    for (int64_t i = 0; i < b->count; i++) {
        const bank_entry *e = &b->entries[i];
        FUZZ_ASSERT(bank_writer_add(w, e->id, e->image, e->text, bank_entry_rows(b, e), e->n_rows, err, sizeof err) == 0,
                    "bank_writer_add refused entry %lld that bank_open accepted: %s", (long long)i, err);
    }
    FUZZ_ASSERT(bank_writer_finish(w, err, sizeof err) == 0, "rewrite failed: %s", err);
    bank *g = bank_open(path, err, sizeof err);
    FUZZ_ASSERT(g, "rewritten bank refused: %s", err);
    FUZZ_ASSERT(g->count == b->count && g->total_rows == b->total_rows && g->layer == b->layer &&
                    !strcmp(g->backbone_text, b->backbone_text),
                "header changed in the rewrite");
    for (int64_t i = 0; i < b->count; i++) {
        const bank_entry *x = &b->entries[i], *y = &g->entries[i];
        FUZZ_ASSERT(!strcmp(x->id, y->id) && !strcmp(x->image, y->image) && !strcmp(x->text, y->text) &&
                        x->row == y->row && x->n_rows == y->n_rows &&
                        !memcmp(bank_entry_rows(b, x), bank_entry_rows(g, y),
                                (size_t)(x->n_rows * b->d_model) * sizeof(float)),
                    "entry '%s' changed in the rewrite", x->id);
    }
    bank_close(g);
}

int fuzz_bank_one(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    static char *path;
    if (!path) path = fuzz_tmp_path("input.bank");
    uint8_t *file = malloc(size);
    if (!file) abort();
    memcpy(file, data + 1, size - 1);
    if (data[0] & 1) bkfz_repair(file, size - 1);
    fuzz_write_file(path, file, size - 1);
    free(file);
    char err[1024] = "";
    bank *b = bank_open(path, err, sizeof err);
    if (!b) {
        FUZZ_ASSERT(err[0], "bank_open failed without a message");
        return 0;
    }
    bkfz_check_entries(b);
    if (size < (1u << 20)) bkfz_check_rewrite(b);
    bank_close(b);
    return 0;
}

/* Small banks written by bank_writer. */
static void bkfz_seed_bank(const char *dir, const char *name, int entries, int64_t d_model) {
    char *tmp = fuzz_tmp_path("seed.bank"), err[1024];
    bank_writer *w = bank_writer_open(tmp, "arch=llava lm=llama d_model=4 layers=2 weights=0123456789abcdef", 3,
                                      d_model, err, sizeof err);
    float rows[3 * 8];
    for (int i = 0; i < 3 * 8; i++) rows[i] = (float)i * 0.25f - 1.0f;
    static const char *const ids[] = {"demo-0", "cat_photo", "x"};
    static const char *const texts[] = {"a red circle", "", "caf\xc3\xa9 \xe6\x97\xa5"};
    for (int i = 0; w && i < entries; i++)
        if (bank_writer_add(w, ids[i], i ? "images/x.jpg" : "", texts[i], rows, 1 + i, err, sizeof err)) break;
    if (!w || bank_writer_finish(w, err, sizeof err)) {
        fprintf(stderr, "fuzz: seed bank: %s\n", err);
    } else {
        size_t n;
        uint8_t *file = fuzz_read_file(tmp, &n);
        for (uint8_t flags = 0; flags < 2; flags++) {
            char seed[64];
            snprintf(seed, sizeof seed, "%s_%u", name, flags);
            fuzz_seed(dir, seed, &flags, 1, file, n);
        }
        free(file);
    }
    remove(tmp);
    free(tmp);
}

void fuzz_bank_seeds(const char *dir) {
    bkfz_seed_bank(dir, "three", 3, 2);
    bkfz_seed_bank(dir, "one", 1, 8);
    bkfz_seed_bank(dir, "empty", 0, 4);
}

FUZZ_MAIN(bank)
