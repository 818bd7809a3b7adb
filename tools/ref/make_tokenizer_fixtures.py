#!/usr/bin/env python3
"""make_tokenizer_fixtures.py — expected token ids, offsets and decodes from Hugging Face
`tokenizers` for eft's tokenizer tests.

For every tokenizer.json given (default: the tiny fixture models, plus the real all-MiniLM-L6-v2
when models/ has it) it writes tests/fixtures/tokenizers/<name>.json:

  {"tokenizer": "<path relative to the repo>", "tokenizers_version": "...",
   "cases": [{"text": str | null, "text_hex": hex | null, "pair": str | null,
              "add_special_tokens": bool, "ids": [...], "type_ids": [...],
              "offsets": [[start, end], ...] | null,   # UTF-8 byte offsets into the text
              "decoded": str, "decoded_skip": str}]}

Invalid UTF-8 (text_hex cases): eft's documented policy is to replace each maximal invalid
subsequence by U+FFFD before tokenizing, which is what Python's bytes.decode("utf-8",
"replace") does, so the expectation is computed on that decoded string. Offsets are written in
UTF-8 bytes (HF reports characters) and omitted for invalid-UTF-8 cases, where eft's offsets point
into the original bytes.

Also: the synthetic tokenizers (synthetic/, one per group of components, see
synthetic_tokenizers), the GGUF vocabularies converted by transformers (gguf-*), and folders
opened with transformers' AutoTokenizer (hf-*). Needs tokenizers, transformers, gguf and (for
synth-precompiled) sentencepiece.

Usage: /tmp/refvenv/bin/python tools/ref/make_tokenizer_fixtures.py [--retrain] [name=path/tokenizer.json ...]
"""
import json
import os
import sys

import tokenizers
from tokenizers import (AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers,
                        processors, trainers)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "fixtures", "tokenizers")

# Hard on purpose: every script and shape that tokenizers get wrong.
CORPUS = [
    "",
    " ",
    "Hello world!",
    "The quick brown fox jumps over the lazy dog. It's 3:45pm, isn't it? I'd've thought so.",
    "  leading and trailing spaces  ",
    "tabs\tand\nnewlines\r\nand\u000bvertical\u000cfeeds\n\n\n  \t  \n",
    "multiple     spaces      between        words",
    "def foo(x):\n    return x**2 + 1  # comment\n\nif __name__ == '__main__':\n\tprint(foo(3))\n",
    "for (int i = 0; i < n; ++i) { a[i] = b[i] * c; } // C++ & <html attr=\"v\">&amp;</html>",
    "日本語のテキストです。東京は大きい。",
    "中文测试：你好，世界！这是一个句子。",
    "한국어 텍스트입니다. 안녕하세요",
    "مرحبا بالعالم، هذا نص عربي.",
    "नमस्ते दुनिया, यह हिंदी पाठ है।",
    "Emoji: 😀 👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈 ❤️ 🇫🇷🇯🇵 1️⃣",
    "Combining: e\u0301 a\u0300 o\u0308 n\u0303 Z\u0335\u0321\u0322a\u0336l\u0337g\u0338o",
    "Accented: café naïve résumé Ångström Œuvre façade ÀÉÎÕÜ ß ﬁ ﬀ İstanbul",
    "Fullwidth: ＡＢＣ１２３ ｱｲｳ and ½ ⅓ ² ℌ ㎏",
    "Supercalifragilisticexpialidocious" * 6,
    "1234567890" * 8 + " 3.14159265358979 1,000,000 0x1F 1e-10",
    "Pneumonoultramicroscopicsilicovolcanoconiosis antidisestablishmentarianism",
    "hello<s>world</s> [CLS] x [SEP] [MASK] <unk> <|endoftext|><|im_start|>user\nhi<|im_end|> <pad> <eos> <bos>",
    "ÿ\u0000\u0001\u001f\u007f\u0080\u00ad\u200b\u200d\ufeff\ufffd zero-width",
    "Mixed 日本 text with émojis 🎉 and numbers 42!!! ??? ...",
    "a",
    "\n",
    "word " * 40,
    "ALL CAPS SHOUTING AND lowercase whisper, MiXeD CaSe",
    "‘smart quotes’ “double” — em dash – en dash … ellipsis • bullet",
    "URL: https://example.com/path?query=1&x=y#frag email@example.org @user #hashtag",
]
INVALID = [b"abc\xffdef", b"\xc3\x28 bad", b"\xe2\x82 truncated", b"\xf0\x9f\x98", b"ok \xed\xa0\x80 surrogate",
           b"\x80\x80\x80", b"caf\xc3"]
PAIRS = [("What is the capital of France?", "Paris is the capital and largest city of France."),
         ("", "empty first"), ("日本語", "🎉 emoji pair"), ("short", "")]


SYNTH = os.path.join(OUT, "synthetic")
GGUFS = [("gguf-tiny-llama", "tests/fixtures/gguf/tiny-llama.gguf"),
         ("gguf-smollm2", "models/SmolLM2-135M-Instruct-Q4_1/SmolLM2-135M-Instruct.Q4_1.gguf")]


SYNTH_NAMES = ["synth-wordpiece", "synth-bpe-suffix", "synth-unigram", "synth-added", "synth-precompiled"]


def synthetic_tokenizers():
    """Small tokenizers that put every component eft implements through its paces, trained on
    the corpus itself and kept in tests/fixtures/tokenizers/synthetic. Training is not
    deterministic (HF's trainers break ties in hash order), so committed files are reused and
    only --retrain builds them again."""
    paths = [(n, os.path.join(SYNTH, n + ".json")) for n in SYNTH_NAMES]
    if "--retrain" not in sys.argv and all(os.path.exists(p) for _, p in paths):
        return paths
    # No NUL in trained vocabularies: jansson (eft's JSON parser) cannot hold one in an object key.
    train = [t.replace("\u0000", "") for t in CORPUS] * 3
    out = []

    t = Tokenizer(models.WordPiece(unk_token="[UNK]", max_input_chars_per_word=30))
    t.normalizer = normalizers.Sequence([normalizers.NFD(), normalizers.Lowercase(), normalizers.StripAccents(),
                                         normalizers.Strip(), normalizers.Replace(Regex(r"\d{4,}"), "#")])
    t.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                               pre_tokenizers.Punctuation("contiguous"),
                                               pre_tokenizers.Digits(individual_digits=True)])
    t.train_from_iterator(train, trainers.WordPieceTrainer(vocab_size=400, special_tokens=["[UNK]", "[CLS]", "[SEP]"]))
    t.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", t.token_to_id("[CLS]")), ("[SEP]", t.token_to_id("[SEP]"))])
    t.decoder = decoders.WordPiece(cleanup=False)
    out.append(("synth-wordpiece", t))

    t = Tokenizer(models.BPE(unk_token="<unk>", continuing_subword_prefix="##", end_of_word_suffix="</w>"))
    t.normalizer = normalizers.Sequence([normalizers.NFKD(), normalizers.Prepend("_")])
    t.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(" ", "merged_with_previous"),
        pre_tokenizers.Split(Regex(r"\p{P}"), "merged_with_next"),
        pre_tokenizers.Digits(individual_digits=False)])
    t.train_from_iterator(train, trainers.BpeTrainer(vocab_size=500, special_tokens=["<unk>", "<s>", "</s>"],
                                                     continuing_subword_prefix="##", end_of_word_suffix="</w>"))
    t.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 1))
    t.decoder = decoders.BPEDecoder(suffix="</w>")
    out.append(("synth-bpe-suffix", t))

    t = Tokenizer(models.Unigram())
    t.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    t.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace(),
                                               pre_tokenizers.Split(Regex("[aeiou]"), "contiguous", invert=True),
                                               pre_tokenizers.Metaspace(prepend_scheme="never", split=False)])
    t.train_from_iterator(train, trainers.UnigramTrainer(vocab_size=300, special_tokens=["<unk>", "[CLS]", "[SEP]"],
                                                         unk_token="<unk>"))
    t.post_processor = processors.BertProcessing(("[SEP]", t.token_to_id("[SEP]")), ("[CLS]", t.token_to_id("[CLS]")))
    t.decoder = decoders.Sequence([decoders.Metaspace(prepend_scheme="never"), decoders.Strip(" ", 0, 1),
                                   decoders.Replace(Regex("a+"), "A")])
    out.append(("synth-unigram", t))

    t = Tokenizer(models.BPE(unk_token="<unk>"))
    t.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Lowercase()])
    t.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"\s+"), "removed"), pre_tokenizers.Split("o", "isolated", invert=True),
        pre_tokenizers.CharDelimiterSplit("x"), pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True)])
    t.train_from_iterator(train, trainers.BpeTrainer(vocab_size=600, special_tokens=["<unk>"],
                                                     initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    t.add_special_tokens([AddedToken("<mask>", lstrip=True, special=True), AddedToken("[END]", rstrip=True, special=True),
                          AddedToken("<s>", special=True), AddedToken("</s>", special=True)])
    t.add_tokens([AddedToken("hello", single_word=True, normalized=True), AddedToken("WoRlD", normalized=True),
                  AddedToken("ZEBRA", normalized=False), AddedToken(" spaced ", normalized=False)])
    t.post_processor = processors.Sequence([processors.ByteLevel(trim_offsets=True),
                                            processors.TemplateProcessing(single="<s> $A </s>",
                                                                          pair="<s> $A </s> $B:1 </s>:1",
                                                                          special_tokens=[("<s>", t.token_to_id("<s>")),
                                                                                          ("</s>", t.token_to_id("</s>"))])])
    t.decoder = decoders.ByteLevel()
    out.append(("synth-added", t))

    precompiled = sentencepiece_unigram(train)
    if precompiled is not None:
        out.append(("synth-precompiled", precompiled))

    os.makedirs(SYNTH, exist_ok=True)
    res = []
    for name, tok in out:
        path = os.path.join(SYNTH, name + ".json")
        tok.save(path)
        res.append((name, path))
    return res


def _proto_fields(buf):
    """(field number, wire type, value) of a protobuf message; enough to read a SentencePiece model."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _varint(buf, i)
        elif wt == 1:
            v, i = buf[i:i + 8], i + 8
        elif wt == 2:
            n, i = _varint(buf, i)
            v, i = buf[i:i + n], i + n
        elif wt == 5:
            v, i = buf[i:i + 4], i + 4
        else:
            raise ValueError("unsupported wire type")
        yield num, wt, v


def _varint(buf, i):
    shift = value = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, i


def sentencepiece_unigram(train):
    """A SentencePiece Unigram model trained on the corpus with the nmt_nfkc rules, converted the
    way transformers converts T5/XLM-R models: Precompiled charsmap + Metaspace + Unigram."""
    try:
        import io
        import struct
        import sentencepiece as spm
    except ImportError:
        print("sentencepiece is not installed: no synth-precompiled fixture")
        return None
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(train), model_writer=model, vocab_size=250,
                                   model_type="unigram", normalization_rule_name="nmt_nfkc",
                                   character_coverage=1.0, hard_vocab_limit=False, minloglevel=2)
    vocab, charsmap, unk_id = [], b"", 0
    for num, _, v in _proto_fields(model.getvalue()):
        if num == 1:
            piece, score, kind = "", 0.0, 1
            for n2, _, v2 in _proto_fields(v):
                if n2 == 1:
                    piece = v2.decode("utf-8")
                elif n2 == 2:
                    score = struct.unpack("<f", v2)[0]
                elif n2 == 3:
                    kind = v2
            if kind == 2:
                unk_id = len(vocab)
            vocab.append((piece, score))
        elif num == 3:
            for n2, _, v2 in _proto_fields(v):
                if n2 == 2:
                    charsmap = v2
    t = Tokenizer(models.Unigram(vocab, unk_id=unk_id, byte_fallback=False))
    t.normalizer = normalizers.Sequence([normalizers.Precompiled(charsmap),
                                         normalizers.Replace(Regex(" {2,}"), " ")])
    t.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    t.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    return t


EXTRA = ["hello world HELLO worldly hellos say hello. WoRlD world ZEBRA zebra <mask> x <mask>[END]   y [END] z",
         "say  spaced  words<s>in</s>between x spaced y", "xoxo oxo ooo xx"]
TRUNC = [(8, "longest_first", "right"), (9, "longest_first", "left"), (12, "only_first", "right"),
         (12, "only_second", "left"), (5, "longest_first", "right")]


def default_tokenizers():
    out = []
    base = os.path.join(ROOT, "tests", "fixtures", "models")
    for name in sorted(os.listdir(base)):
        p = os.path.join(base, name, "tokenizer.json")
        if os.path.exists(p):
            out.append((name, p))
    real = os.path.join(ROOT, "models", "all-MiniLM-L6-v2", "tokenizer.json")
    if os.path.exists(real):
        out.append(("all-MiniLM-L6-v2", real))
    return out


def char_to_byte_offsets(text, offsets):
    pos = [0]
    for ch in text:
        pos.append(pos[-1] + len(ch.encode("utf-8")))
    return [[pos[a], pos[b]] for a, b in offsets]


def case(tok, text, pair, add_special, raw=None):
    enc = tok.encode(text, pair, add_special_tokens=add_special) if pair is not None else \
        tok.encode(text, add_special_tokens=add_special)
    c = {"text": text if raw is None else None, "text_hex": raw.hex() if raw is not None else None,
         "pair": pair, "add_special_tokens": add_special, "ids": enc.ids, "type_ids": enc.type_ids}
    if raw is None and pair is None:
        c["offsets"] = char_to_byte_offsets(text, enc.offsets)
    else:
        c["offsets"] = None
    c["decoded"] = tok.decode(enc.ids, skip_special_tokens=False)
    c["decoded_skip"] = tok.decode(enc.ids, skip_special_tokens=True)
    return c


def truncation_cases(tok):
    out = []
    a, b = PAIRS[0]
    for max_length, strategy, direction in TRUNC:
        for pair in (None, b):
            if strategy == "only_second" and pair is None:
                continue
            tok.enable_truncation(max_length, strategy=strategy, direction=direction)
            try:
                c = case(tok, a, pair, True)
            except Exception:  # HF refuses some combinations; eft must refuse them too
                c = {"text": a, "pair": pair, "add_special_tokens": True, "error": True}
            c["truncation"] = {"max_length": max_length, "strategy": strategy, "direction": direction}
            out.append(c)
    tok.no_truncation()
    for length, direction in ((40, "right"), (40, "left")):
        tok.enable_padding(direction=direction, pad_id=0, pad_type_id=0, length=length)
        c = case(tok, "short text", None, True)
        c["padding"] = {"length": length, "direction": direction, "pad_id": 0}
        out.append(c)
    tok.no_padding()
    return out


def gguf_tokenizer(path):
    from transformers import AutoTokenizer
    full = os.path.join(ROOT, path)
    return AutoTokenizer.from_pretrained(os.path.dirname(full), gguf_file=os.path.basename(full)).backend_tokenizer


def transformers_folders():
    """Folders opened the way transformers' AutoTokenizer does, where tokenizer_config.json's
    add_bos_token / add_eos_token rebuild the post-processor."""
    import shutil
    folder = os.path.join(SYNTH, "llama-bos-eos")
    os.makedirs(folder, exist_ok=True)
    shutil.copy(os.path.join(ROOT, "tests/fixtures/models/llama/tokenizer.json"), folder)
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump({"add_bos_token": True, "add_eos_token": True, "bos_token": "<s>",
                   "eos_token": {"__type": "AddedToken", "content": "</s>", "special": True, "lstrip": False, "rstrip": False, "normalized": False, "single_word": False}, "tokenizer_class": "TokenizersBackend"}, f)
    out = [("hf-llama-bos-eos", folder)]
    for name in ("bert", "qwen2", "gemma3"):
        out.append(("hf-" + name, os.path.join(ROOT, "tests/fixtures/models", name)))
    return out


def transformers_cases(path):
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(path)
    cases = []
    for text in CORPUS[:12] + EXTRA:
        for add in (True, False):
            enc = tok(text, add_special_tokens=add)
            cases.append({"text": text, "pair": None, "add_special_tokens": add, "ids": enc["input_ids"],
                          "type_ids": enc.get("token_type_ids", [0] * len(enc["input_ids"])) if False else
                          tok.backend_tokenizer.encode(text, add_special_tokens=add).type_ids,
                          "offsets": None})
    for a, b in PAIRS:
        if not a or not b:
            continue  # transformers reads an empty text as "no text" here
        enc = tok(a, b)
        cases.append({"text": a, "pair": b, "add_special_tokens": True, "ids": enc["input_ids"],
                      "type_ids": tok.backend_tokenizer.encode(a, b).type_ids, "offsets": None})
    return cases


def main():
    pairs = [a.split("=", 1) for a in sys.argv[1:] if not a.startswith("--")] or \
        default_tokenizers() + synthetic_tokenizers() + [g for g in GGUFS if os.path.exists(os.path.join(ROOT, g[1]))]
    os.makedirs(OUT, exist_ok=True)
    for name, path in pairs:
        tok = gguf_tokenizer(path) if path.endswith(".gguf") else Tokenizer.from_file(path)
        tok.no_truncation()
        tok.no_padding()
        cases = []
        for text in CORPUS:
            for add in (True, False):
                cases.append(case(tok, text, None, add))
        for text in EXTRA:
            cases.append(case(tok, text, None, True))
        for raw in INVALID:
            cases.append(case(tok, raw.decode("utf-8", "replace"), None, True, raw=raw))
        for a, b in PAIRS:
            cases.append(case(tok, a, b, True))
            cases.append(case(tok, a, b, False))
        cases += truncation_cases(tok)
        rel = os.path.relpath(os.path.join(ROOT, path), ROOT)
        doc = {"tokenizer": rel, "tokenizers_version": tokenizers.__version__, "cases": cases}
        with open(os.path.join(OUT, name + ".json"), "w", encoding="utf-8") as f:
            json.dump(doc, f, ensure_ascii=False, indent=0)
            f.write("\n")
        print(f"{name}: {len(cases)} cases")
    if not [a for a in sys.argv[1:] if not a.startswith("--")]:
        for name, path in transformers_folders():
            cases = transformers_cases(path)
            doc = {"tokenizer": os.path.relpath(path, ROOT), "reference": "transformers AutoTokenizer (folder)",
                   "cases": cases}
            with open(os.path.join(OUT, name + ".json"), "w", encoding="utf-8") as f:
                json.dump(doc, f, ensure_ascii=False, indent=0)
                f.write("\n")
            print(f"{name}: {len(cases)} cases (transformers)")


if __name__ == "__main__":
    main()
