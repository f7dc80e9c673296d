/* Hugging Face `tokenizer.json` BPE tokenizers in C, reproducing the ids of the
 * `tokenizers` library (and so of transformers' fast tokenizers) exactly.
 *
 * Supported components (anything else is a load error naming the component
 * and its type):
 *   model          BPE (vocab; merges as "a b" strings or ["a","b"] pairs;
 *                  unk_token, fuse_unk, byte_fallback, continuing_subword_prefix,
 *                  end_of_word_suffix, ignore_merges; dropout must be null/0)
 *   normalizer     Sequence, Prepend, Replace (String or Regex), NFC,
 *                  Lowercase, Strip
 *   pre_tokenizer  Sequence, ByteLevel (GPT-2 regex, add_prefix_space,
 *                  use_regex), Split (String or Regex; Removed, Isolated,
 *                  MergedWithPrevious, MergedWithNext, Contiguous; invert),
 *                  Metaspace (prepend_scheme always/first/never or the older
 *                  add_prefix_space; split)
 *   post_processor TemplateProcessing (single template), RobertaProcessing,
 *                  BertProcessing, ByteLevel (no-op on ids), Sequence
 *   decoder        Sequence, ByteLevel, Metaspace, Replace, ByteFallback, Fuse,
 *                  Strip, BPEDecoder
 *   added_tokens   split out of the text before the model runs, honouring
 *                  special, normalized, lstrip, rstrip and single_word.
 * The three backbone styles: LLaMA/Vicuna (legacy Prepend+Replace normalizer or
 * Metaspace pre-tokenizer, byte fallback, BOS by template), GPT-2/OPT
 * (byte-level, BOS "</s>" by template) and CLIP (NFC + whitespace collapse +
 * lowercase, CLIP split regex, "</w>" suffix, <|startoftext|>/<|endoftext|>).
 *
 * Text is UTF-8. Invalid UTF-8 never fails: each maximal invalid subsequence is
 * replaced by U+FFFD first, exactly like Python's bytes.decode("utf-8",
 * "replace") before handing the str to HF. Regexes run on PCRE2 (UTF + UCP)
 * with \s / \S / \w rewritten to Oniguruma's (Unicode White_Space / word)
 * meaning; Unicode tables (NFC, lowercase) come from Unicode 14 (Python 3.11's
 * unicodedata), so characters newer than that may differ from HF.
 *
 * Thread safety: a loaded tokenizer may be used from several threads at once;
 * its word cache is guarded by a mutex that encoders only try-lock.
 */
#ifndef AIMC_TOKENIZER_H
#define AIMC_TOKENIZER_H
#include <stddef.h>
#include <stdint.h>

typedef struct tokenizer tokenizer;

/* A growable list of token ids (zero-initialise it; free with tok_ids_free). */
typedef struct tok_ids {
    int32_t *ids;
    int64_t n, cap;
} tok_ids;

typedef struct tokenizer_encode_opts {
    /* 1: run the post_processor (BOS/EOS/CLS/SEP), as HF's add_special_tokens=True. */
    int add_special;
    /* > 0: truncate on the right so that the result, special tokens included,
     * has at most max_length ids (CLIP: 77, which keeps <|endoftext|> last);
     * 0: the tokenizer.json "truncation" setting if it has one, else none;
     * < 0: never truncate. */
    int64_t max_length;
} tokenizer_encode_opts;

/* Loads a tokenizer. `path` is a model folder (reads DIR/tokenizer.json and,
 * when present, DIR/special_tokens_map.json and DIR/tokenizer_config.json) or
 * a tokenizer.json file. On failure returns NULL and writes one line naming
 * the file and the problem into err (errlen bytes). */
tokenizer *tokenizer_load(const char *path, char *err, size_t errlen);
void tokenizer_free(tokenizer *tok);

/* Encodes `len` bytes of text; the ids replace out's contents. opts NULL means
 * {add_special = 1, max_length = 0}. Returns 0, or -1 with a message in err
 * (for tokenizer files whose unk_token is missing from the vocabulary, a
 * max_length smaller than the number of special tokens, or a text longer than
 * TOKENIZER_MAX_TEXT_BYTES, which bounds the memory one encode can take). */
#define TOKENIZER_MAX_TEXT_BYTES ((size_t)64 << 20)
int tokenizer_encode(const tokenizer *tok, const char *text, size_t len,
                     const tokenizer_encode_opts *opts, tok_ids *out, char *err, size_t errlen);

/* Decodes ids to text through the file's decoder (tokens joined by spaces when
 * it has none). skip_special drops special added tokens (HF's
 * skip_special_tokens). For tokenizers with an end_of_word_suffix and no
 * BPEDecoder (CLIP), the suffix becomes a space and the result is stripped, as
 * transformers' CLIPTokenizerFast.decode does. Returns a malloc'd
 * NUL-terminated string (its byte length in *out_len when out_len is not
 * NULL), or NULL with a message in err for an id outside the vocabulary. */
char *tokenizer_decode(const tokenizer *tok, const int32_t *ids, int64_t n, int skip_special,
                       size_t *out_len, char *err, size_t errlen);

/* The id of a token string (added tokens first, then the model vocabulary); -1 if none. */
int32_t tokenizer_token_to_id(const tokenizer *tok, const char *token);
/* The string of an id (added tokens first), or NULL. Owned by the tokenizer. */
const char *tokenizer_id_to_token(const tokenizer *tok, int32_t id);
/* 1 + the largest id of the vocabulary and the added tokens. */
int64_t tokenizer_vocab_size(const tokenizer *tok);
/* The id of a named special token ("bos_token", "eos_token", "unk_token",
 * "pad_token", ...) from special_tokens_map.json, else tokenizer_config.json;
 * -1 when neither names it or its token is not in the vocabulary. */
int32_t tokenizer_special_id(const tokenizer *tok, const char *name);
/* tokenizer_config.json's model_max_length (CLIP: 77); 0 when absent or huge. */
int64_t tokenizer_model_max_length(const tokenizer *tok);

void tok_ids_free(tok_ids *ids);
#endif
