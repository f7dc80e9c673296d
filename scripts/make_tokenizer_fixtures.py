#!/usr/bin/env python3
"""Builds the tokenizer fixtures under tests/fixtures/tokenizers/.

Trains TINY BPE tokenizers locally with Hugging Face `tokenizers` (pip install
tokenizers; nothing is downloaded) in the exact component layout of the
backbones' tokenizer.json files, then records HF's own ids for a corpus of hard
strings. aimc's C tokenizer must reproduce these ids exactly.

  llama/       LLaMA/Vicuna legacy SentencePiece layout: normalizer
               Prepend("▁") + Replace(" " -> "▁"), no pre-tokenizer, BPE with
               byte_fallback (<0x00>..<0xFF> at ids 3..258), fuse_unk, BOS via
               TemplateProcessing, decoder Replace/ByteFallback/Fuse/Strip.
               Merges stored as [["a","b"], ...].
  llama_meta/  Newer (legacy=false) LLaMA layout: Metaspace pre-tokenizer with
               prepend_scheme "first"; decoder ByteFallback/Metaspace.
  opt/         GPT-2/OPT byte-level BPE: ByteLevel pre-tokenizer (GPT-2 regex),
               BOS "</s>" (id 2) via Sequence[ByteLevel, TemplateProcessing],
               merges stored in the legacy "a b" string form; extra added tokens
               with lstrip / rstrip / single_word / normalized flags.
  misc/        Not a backbone: the remaining supported components (every Split
               behaviour, Strip/regex normalizers, "##" prefix + "</w>" suffix,
               unk without byte fallback, ignore_merges, BertProcessing,
               BPEDecoder/Replace/Strip decoders). Strings up to 600 chars.
  clip/        CLIP: NFC + Replace(\\s+ -> " ") + Lowercase, Split(CLIP regex,
               removed, invert) + ByteLevel(no regex), "</w>" suffix,
               RobertaProcessing <|startoftext|> ... <|endoftext|>.

expected.json per folder: {"cases": [{"text", "hex" (UTF-8 bytes), "ids",
"ids_nospecial", "ids_trunc", "decode", "decode_skip"}], "trunc_length",
"invalid_utf8": [{"hex", "ids"}] (ids of bytes.decode("utf-8", "replace"))}
and, for clip, "nfc": [[hex_in, hex_out], ...] from Python's unicodedata.

Usage: python3 scripts/make_tokenizer_fixtures.py [OUT_DIR]

llama/, llama_meta/ and opt/ come out identical on every run; clip/ and misc/
do not: HF's BpeTrainer breaks equal-count ties in hash order once
end_of_word_suffix is set. Any run's output is a valid fixture (expected.json
is always computed from the tokenizer.json written next to it).
"""
import json
import os
import random
import sys
import unicodedata

from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import BPE
from tokenizers.trainers import BpeTrainer

SPACE = "\u2581"

TRAIN_TEXT = """
The quick brown fox jumps over the lazy dog. A photo of a cat sitting on a red sofa.
Two dogs are playing in the park while children watch them from a wooden bench.
It's a beautiful day, isn't it? We'll go to the market and they've already left.
I'm sure you're right; she'd know what he'll say. Don't worry about the weather.
Large language models learn to predict the next token from billions of words.
Describe this image in detail. What is the man holding in his left hand?
A close-up photograph of a bowl of fresh fruit: apples, oranges and bananas.
An aerial view of a city at night with bright lights and busy streets below.
The train arrives at 10:45 on platform 3, and the ticket costs $12.50 today.
Numbers like 1234567890, 3.14159 and 2,718,281 appear in scientific writing.
def tokenize(text): return [vocab[w] for w in text.split()]  # python code
https://example.com/images/cat.jpg?size=large&format=webp
Привет, мир! Как дела? Это пример текста на русском языке для обучения.
你好，世界。今天天气很好，我们去公园散步吧。这是一个中文句子。
こんにちは世界。これは日本語の文です。
مرحبا بالعالم. هذا نص باللغة العربية.
नमस्ते दुनिया। यह हिंदी में एक वाक्य है।
Ελληνικά: γεια σου κόσμε. Français: où est la bibliothèque? Deutsch: Straße, Größe.
Emoji are fun 😀 👍 🎉 ❤️ and people use them everywhere in captions.
A woman wearing a yellow raincoat walks her dog along the beach in the morning.
Several people are standing around a table covered with books, papers and laptops.
The mountain landscape shows snow on the peaks and a green valley with a river.
This is a picture of a kitchen with white cabinets, a stove and a large window.
Question: how many birds are sitting on the wire? Answer: there are seven birds.
The projector maps visual features into the embedding space of the language model.
During training the backbone stays frozen and only the small adapter is updated.
Interleaved documents contain images between paragraphs of text from web pages.
"""


def corpus_lines(repeat=40):
    """The training text, repeated with small variations so merges have counts."""
    base = [l for l in TRAIN_TEXT.strip().split("\n") if l]
    rng = random.Random(1234)
    out = []
    for _ in range(repeat):
        for line in base:
            words = line.split(" ")
            rng.shuffle(words)
            out.append(" ".join(words))
            out.append(line)
            out.append(line.upper() if rng.random() < 0.1 else line.lower())
    return out


def trained_model(tok, trainer):
    """Trains `tok` on the corpus and returns (vocab dict, merges list of pairs)."""
    tok.train_from_iterator(corpus_lines(), trainer=trainer)
    model = json.loads(tok.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    return model["vocab"], merges


def bytes_to_unicode():
    """GPT-2's reversible byte -> printable character map."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def vocab_from_merges(base_tokens, merges, suffix_free_prefix=""):
    """base tokens first, then every merge result in merge order (dedup)."""
    vocab = {}
    for t in base_tokens:
        vocab.setdefault(t, len(vocab))
    for a, b in merges:
        vocab.setdefault(a + b[len(suffix_free_prefix):], len(vocab))
    return vocab


def llama_tokenizers(size):
    trainer_tok = Tokenizer(BPE(unk_token="<unk>"))
    trainer_tok.normalizer = normalizers.Sequence([normalizers.Prepend(SPACE), normalizers.Replace(" ", SPACE)])
    trainer_tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=SPACE, prepend_scheme="never", split=True)
    trainer = BpeTrainer(vocab_size=size, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False)
    _, merges = trained_model(trainer_tok, trainer)
    base = ["<unk>", "<s>", "</s>"] + ["<0x%02X>" % b for b in range(256)]
    chars = sorted({c for a, b in merges for c in a + b})
    vocab = vocab_from_merges(base + chars, merges)

    def build(legacy):
        tok = Tokenizer(BPE(vocab=dict(vocab), merges=list(merges), unk_token="<unk>",
                            byte_fallback=True, fuse_unk=True))
        if legacy:
            tok.normalizer = normalizers.Sequence([normalizers.Prepend(SPACE), normalizers.Replace(" ", SPACE)])
            tok.decoder = decoders.Sequence([decoders.Replace(SPACE, " "), decoders.ByteFallback(),
                                             decoders.Fuse(), decoders.Strip(" ", 1, 0)])
        else:
            tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=SPACE, prepend_scheme="first", split=False)
            tok.decoder = decoders.Sequence([decoders.ByteFallback(),
                                             decoders.Metaspace(replacement=SPACE, prepend_scheme="first")])
        tok.post_processor = processors.TemplateProcessing(
            single="<s>:0 $A:0", pair="<s>:0 $A:0 <s>:1 $B:1", special_tokens=[("<s>", 1)])
        tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in ["<unk>", "<s>", "</s>"]])
        tok.add_special_tokens([AddedToken("<image>", special=True, normalized=False),
                                AddedToken("<pad>", special=True, normalized=False),
                                AddedToken("<|endofchunk|>", special=True, normalized=False)])
        # A normalized, non-special added token: its match pattern is the
        # *normalized* content ("▁<tag>" under the legacy Prepend normalizer).
        tok.add_tokens([AddedToken("<tag>", special=False, normalized=True)])
        return tok

    return build(True), build(False)


def opt_tokenizer(size):
    trainer_tok = Tokenizer(BPE())
    trainer_tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = BpeTrainer(vocab_size=size, special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
                         initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    vocab, merges = trained_model(trainer_tok, trainer)
    tok = Tokenizer(BPE(vocab=vocab, merges=merges, continuing_subword_prefix="", end_of_word_suffix="",
                        fuse_unk=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single="</s>:0 $A:0", pair="</s>:0 $A:0 $B:1", special_tokens=[("</s>", 2)]),
    ])
    tok.add_special_tokens([AddedToken("<s>", special=True, normalized=False),
                            AddedToken("<pad>", special=True, normalized=True),
                            AddedToken("</s>", special=True, normalized=False),
                            AddedToken("<unk>", special=True, normalized=False)])
    tok.add_special_tokens([AddedToken("<|endofchunk|>", special=True, normalized=False),
                            AddedToken("<image>", special=True, normalized=False),
                            AddedToken("<mask>", special=True, normalized=False, lstrip=True),
                            AddedToken("<rs>", special=True, normalized=False, rstrip=True)])
    tok.add_tokens([AddedToken("qux", special=False, normalized=True, single_word=True)])
    return tok


def clip_tokenizer(size):
    norm = normalizers.Sequence([normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()])
    pre = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""),
                             behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False),
    ])
    trainer_tok = Tokenizer(BPE(continuing_subword_prefix="", end_of_word_suffix="</w>"))
    trainer_tok.normalizer = norm
    trainer_tok.pre_tokenizer = pre
    trainer = BpeTrainer(vocab_size=size, end_of_word_suffix="</w>", show_progress=False,
                         initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    _, merges = trained_model(trainer_tok, trainer)
    byte_chars = list(bytes_to_unicode().values())
    vocab = vocab_from_merges(byte_chars + [c + "</w>" for c in byte_chars], merges)
    for t in ["<|startoftext|>", "<|endoftext|>"]:
        vocab[t] = len(vocab)
    tok = Tokenizer(BPE(vocab=vocab, merges=merges, continuing_subword_prefix="", end_of_word_suffix="</w>",
                        fuse_unk=False, unk_token="<|endoftext|>"))
    tok.normalizer = norm
    tok.pre_tokenizer = pre
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.RobertaProcessing(sep=("<|endoftext|>", vocab["<|endoftext|>"]),
                                                      cls_token=("<|startoftext|>", vocab["<|startoftext|>"]),
                                                      add_prefix_space=False, trim_offsets=False)
    # openai's file marks both as normalized (matched after lowercasing).
    tok.add_special_tokens([AddedToken("<|startoftext|>", special=True, normalized=True),
                            AddedToken("<|endoftext|>", special=True, normalized=True),
                            AddedToken("<image>", special=True, normalized=True)])
    return tok


def misc_tokenizer(size):
    """Not a backbone layout: exercises the remaining supported components
    (Strip / regex Replace normalizers, every Split behaviour, Metaspace with
    split, continuing_subword_prefix + end_of_word_suffix, unk without byte
    fallback, ignore_merges, BertProcessing, BPEDecoder / Replace / Strip)."""
    norm = normalizers.Sequence([normalizers.Strip(), normalizers.Replace(Regex(r"\d+"), "0"), normalizers.Lowercase()])
    pre = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"\s+"), behavior="merged_with_previous"),
        pre_tokenizers.Split(Regex(r"[!?.,]"), behavior="isolated"),
        pre_tokenizers.Split("-", behavior="merged_with_next"),
        pre_tokenizers.Split(Regex(r"\p{N}"), behavior="contiguous"),
        pre_tokenizers.Split(Regex(r"\p{Cc}+"), behavior="removed"),
        pre_tokenizers.Split(Regex(r"\p{L}+"), behavior="merged_with_previous", invert=True),
        pre_tokenizers.Metaspace(replacement="_", prepend_scheme="always", split=True),
    ])
    specials = ["[UNK]", "[CLS]", "[SEP]", "[PAD]"]
    trainer_tok = Tokenizer(BPE(unk_token="[UNK]", continuing_subword_prefix="##", end_of_word_suffix="</w>"))
    trainer_tok.normalizer = norm
    trainer_tok.pre_tokenizer = pre
    trainer = BpeTrainer(vocab_size=size, limit_alphabet=70, special_tokens=specials, show_progress=False,
                         continuing_subword_prefix="##", end_of_word_suffix="</w>")
    vocab, merges = trained_model(trainer_tok, trainer)
    tok = Tokenizer(BPE(vocab=vocab, merges=merges, unk_token="[UNK]", fuse_unk=False, ignore_merges=True,
                        continuing_subword_prefix="##", end_of_word_suffix="</w>"))
    tok.normalizer = norm
    tok.pre_tokenizer = pre
    tok.post_processor = processors.BertProcessing(("[SEP]", vocab["[SEP]"]), ("[CLS]", vocab["[CLS]"]))
    tok.decoder = decoders.Sequence([decoders.BPEDecoder(suffix="</w>"), decoders.Replace("_", " "),
                                     decoders.Strip(" ", 1, 0)])  # (1, 1) panics in HF on " "
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    tok.add_special_tokens([AddedToken("<image>", special=True, normalized=False, lstrip=True, rstrip=True)])
    tok.add_tokens([AddedToken("Hello World", special=False, normalized=True, single_word=True)])
    return tok


def long_random_word(n, seed):
    rng = random.Random(seed)
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyzéßж") for _ in range(n))


HARD_STRINGS = [
    "", "Hello world", "hello", " leading space", "trailing space ", "  two leading spaces",
    "   ", " ", "\n", "\t", "a    b     c", "\tTab\tseparated\tvalues\t", "line1\nline2\n\nline4\n",
    "windows\r\nline ends\r\n", "mixed \t\n whitespace \u00a0 nbsp \u3000 ideographic",
    "I'm he's she'd we'll they've you're can't DON'T It'S y'all o'clock",
    "'s 't 're 've 'm 'll 'd", "1234567890 3.14159 1,000,000 2024-01-01 007",
    "123456789012345678901234567890123456789", "٣٤٥ ١٢ digits in Arabic-Indic, ⅔ ½ ² ³",
    "Привет, мир! Как дела?", "你好，世界。今天天气很好。", "こんにちは世界、カタカナ", "مرحبا بالعالم",
    "नमस्ते दुनिया", "안녕하세요 세계", "Ελληνικά κείμενα ΣΑΣ", "עברית שלום", "ภาษาไทย", "Türkçe İstanbul ıi",
    "naïve café résumé Straße ẞ", "cafe\u0301 decomposed", "a\u0323\u0307 a\u0307\u0323 marks order",
    "\u212b angstrom \u2126 ohm", "\u1100\u1161\u11a8 jamo", "ﬁ ligature ǅ Dž ǆ", "\u0301 leading mark",
    "😀 👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈 ❤️ 🇺🇸 1️⃣", "a😀b😀😀c", "emoji🎉at🎉edges🎉",
    "<image>", "<image>Describe this image.", "USER: <image>\nWhat is this? ASSISTANT:",
    "Describe <image> this", "text<image>text", "<image><image>", " <image> ",
    "<image>\n<image> caption<|endofchunk|><image>next<|endofchunk|>", "<|endofchunk|>",
    "<|endofchunk|> at start", "at end <|endofchunk|>", "<imag <image <image< < image> <IMAGE> <<image>>",
    "<s>", "</s>", "<s>hi</s>", "<unk> <pad>", "<|startoftext|>a photo<|endoftext|>",
    "a <mask> b", "a   <mask>", "  Hello World  ", "hello world!", "say Hello Worlds", "x-y--z 12-34 a - b", "\t<mask>\t<mask>", "<rs>   x", "<rs>\n\ny", "x<mask><rs> y",
    "qux", "a qux b", "aqux quxb qux. (qux)", "a <tag> b", "<tag>b", "a<tag>", "<tag>",
    "A Photo Of A CAT", "HeLLo WoRLD", "ALL CAPS SENTENCE!",
    "def f(x):\n    return x**2  # comment", "https://example.com/path?q=1&r=2#frag",
    "foo_bar-baz.qux", "C++ && || !== -> => :: ...", "!!!??...,,,;;;", "\"quoted\" 'single' «guillemets» “curly”",
    "\x00\x01\x07 nul and bell", "zero\u200bwidth", "\ufeffBOM", "nel\u0085next", "ls\u2028ps\u2029",
    "mongolian\u180eseparator", "\x1c\x1d\x1e\x1f info separators", "\u2581 literal metaspace", "Ġ literal",
    "\ue000 private use \U0010fffd", "\uffff\ufffe noncharacters", "\ufffd replacement char",
    "Zaun 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝓜𝓪𝓽𝓱", "日本語のテキストと English mixed 123",
    "supercalifragilisticexpialidocious" * 40,
    long_random_word(5000, 7),
    "a" * 1000,
    " ".join(["The quick brown fox jumps over the lazy dog."] * 12),
]

INVALID_UTF8 = [b"\xff", b"abc\x80def", b"\xc3", b"\xc3(", b"\xe2\x82", b"\xe2\x82(x", b"\xf0\x9f\x98",
                b"\xed\xa0\x80 surrogate", b"\xc0\xaf overlong", b"\xf8\x88\x80\x80\x80", b"ok \xf4\x90\x80\x80",
                b"<image>\xfe<image>", b"\x80\x80\x80"]

NFC_CASES = ["cafe\u0301", "a\u0323\u0307", "a\u0307\u0323", "\u212b", "\u1100\u1161\u11a8", "\u1100\u1161",
             "\uac00\u11a8", "e\u0301\u0301", "\u0301e", "o\u0308\u0304", "\u0b47\u0b3e", "\u0344",
             "\u0958", "\u1e9b\u0323", "A\u030a\u0323", "\u00c5\u0323", "q\u0307\u0323", "\u0f73", "ǅ",
             "\u05d0\u05b7\u05bc", "\u0915\u093c", "\U0001d15e", "x\u0300\u0315\u0300", "\u3071\u309a",
             "\u304b\u3099\u3099", "Ḱ\u0327", "\u1f87\u0345", "\u0041\u0328\u0301\u0330"]


def case_record(tok, text, trunc_len, strip_suffix):
    enc = tok.encode(text)
    ids = enc.ids
    nospecial = tok.encode(text, add_special_tokens=False).ids
    tok.enable_truncation(trunc_len)
    trunc = tok.encode(text).ids
    tok.no_truncation()
    dec = tok.decode(ids, skip_special_tokens=False)
    dec_skip = tok.decode(ids, skip_special_tokens=True)
    if strip_suffix:  # transformers' CLIPTokenizerFast wraps decode this way
        dec = dec.replace(strip_suffix, " ").strip()
        dec_skip = dec_skip.replace(strip_suffix, " ").strip()
    return {"text": text, "hex": text.encode("utf-8").hex(), "ids": ids, "ids_nospecial": nospecial,
            "ids_trunc": trunc, "decode": dec, "decode_skip": dec_skip}


def write_fixture(out, name, tok, trunc_len, legacy_merges=False, strip_suffix=None, extra=None, max_chars=None):
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "tokenizer.json")
    tok.save(path)
    if legacy_merges:  # rewrite merges as "a b" strings (the older tokenizer.json form)
        with open(path, encoding="utf-8") as f:
            j = json.load(f)
        j["model"]["merges"] = [" ".join(m) if isinstance(m, list) else m for m in j["model"]["merges"]]
        with open(path, "w", encoding="utf-8") as f:
            json.dump(j, f, ensure_ascii=False, indent=1)
    tok = Tokenizer.from_file(path)  # the ids below come from exactly what is on disk
    cases = [case_record(tok, s, trunc_len, strip_suffix) for s in HARD_STRINGS
             if max_chars is None or len(s) <= max_chars]
    bad = [{"hex": b.hex(), "ids": tok.encode(b.decode("utf-8", "replace")).ids} for b in INVALID_UTF8]
    rec = {"trunc_length": trunc_len, "cases": cases, "invalid_utf8": bad,
           "vocab_size": tok.get_vocab_size(with_added_tokens=True)}
    if extra:
        rec.update(extra)
    write_compact_json(os.path.join(d, "expected.json"), rec)
    return d


def write_compact_json(path, rec):
    """One list element per line: diffable, yet small (long strings are stored once, as hex)."""
    for case in rec["cases"]:
        if len(case["text"]) > 200:
            del case["text"]
    with open(path, "w", encoding="utf-8") as f:
        f.write("{\n")
        items = list(rec.items())
        for k, (key, val) in enumerate(items):
            sep = "," if k + 1 < len(items) else ""
            if isinstance(val, list):
                body = ",\n".join(json.dumps(v, ensure_ascii=False, separators=(",", ":")) for v in val)
                f.write('"%s": [\n%s\n]%s\n' % (key, body, sep))
            else:
                f.write('"%s": %s%s\n' % (key, json.dumps(val), sep))
        f.write("}\n")


def write_special_map(d, mapping):
    with open(os.path.join(d, "special_tokens_map.json"), "w", encoding="utf-8") as f:
        json.dump(mapping, f, indent=1)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "tests",
                                                             "fixtures", "tokenizers")
    llama, llama_meta = llama_tokenizers(1500)
    d = write_fixture(out, "llama", llama, 16)
    write_special_map(d, {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"})
    d = write_fixture(out, "llama_meta", llama_meta, 16)
    write_special_map(d, {"bos_token": {"content": "<s>", "lstrip": False}, "eos_token": "</s>"})
    d = write_fixture(out, "opt", opt_tokenizer(1500), 16, legacy_merges=True)
    write_special_map(d, {"bos_token": "</s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"})
    nfc = [[s.encode().hex(), unicodedata.normalize("NFC", s).encode().hex()] for s in NFC_CASES]
    d = write_fixture(out, "clip", clip_tokenizer(1500), 77, strip_suffix="</w>", extra={"nfc": nfc})
    write_special_map(d, {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
                          "pad_token": "<|endoftext|>", "unk_token": "<|endoftext|>"})
    with open(os.path.join(d, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump({"model_max_length": 77, "do_lower_case": True}, f, indent=1)
    d = write_fixture(out, "misc", misc_tokenizer(700), 8, max_chars=600)
    write_special_map(d, {"cls_token": "[CLS]", "sep_token": "[SEP]", "eos_token": "[SEP]"})
    print("wrote fixtures under", os.path.abspath(out))


if __name__ == "__main__":
    main()
