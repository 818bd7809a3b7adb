"""Shared helpers for the eft reference-fixture generators.

Everything here is deterministic: fixed seeds, single-threaded torch and tokenizers, and a
safetensors writer of our own (sorted metadata keys, tensors in insertion order) so that running
a generator twice on the same machine gives byte-identical files.
"""

from __future__ import annotations

import os

# Before tokenizers / torch are imported: no thread-count-dependent reductions, no rayon pools.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # references are computed on the CPU
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TQDM_DISABLE", "1")

import argparse
import json
import random
import shutil
import struct
import sys
import warnings
from pathlib import Path

import numpy as np

warnings.filterwarnings("ignore")

REPO_ROOT = Path(__file__).resolve().parents[2]
FORMAT_NAME = "eft-fixture"
FORMAT_VERSION = "1"

# --------------------------------------------------------------------------------------------
# Training corpus: English prose, a little code, accents, CJK, Korean, emoji. Written for this
# project; it only has to give the tokenizer trainers something varied to chew on.
# --------------------------------------------------------------------------------------------
CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "A tiny model is still a model: it has weights, a tokenizer and a configuration.",
    "Sentence embeddings map a piece of text to a vector of numbers.",
    "Similar sentences should have similar vectors, and different ones should not.",
    "The engine reads the folder, builds a graph, compiles it and runs it on the CPU.",
    "Attention lets every token look at the tokens before it, or at all of them in an encoder.",
    "Rotary position embeddings rotate pairs of numbers by an angle that grows with the position.",
    "A key-value cache keeps the keys and values of earlier tokens so that decoding is fast.",
    "Greedy decoding always picks the most likely next token; sampling draws one at random.",
    "The weather today is sunny with a light breeze from the west.",
    "She sells sea shells by the sea shore, and the shells she sells are surely sea shells.",
    "How much wood would a woodchuck chuck if a woodchuck could chuck wood?",
    "Numbers like 0, 1, 2, 3, 42, 2024, 3.14159 and 1e-5 appear in text all the time.",
    "Email me at someone@example.com or visit https://example.org/docs?page=2#top for more.",
    "Don't stop; we're almost there. It's what they'd want, isn't it? I'll see, you've seen.",
    "UPPER CASE, lower case, Title Case and MiXeD cAsE words all need to be handled.",
    "    Indented lines,\ttabs,\nnewlines and  double  spaces are whitespace too.",
    "def add(a, b):\n    return a + b\n",
    "for (int i = 0; i < n; i++) { sum += x[i] * w[i]; }",
    "import numpy as np\nx = np.zeros((4, 8), dtype=np.float32)\nprint(x.shape)",
    "if (ptr == NULL) { return EFT_ERR_NOMEM; } /* out of memory */",
    "SELECT name, count(*) FROM tokens WHERE id > 100 GROUP BY name;",
    "{\"model\": \"tiny\", \"input\": [\"hello\", \"world\"], \"normalize\": true}",
    "Café, naïve, résumé, jalapeño, Zürich, São Paulo, Kraków, Øresund, façade, coöperate.",
    "El niño comió una manzana y la señora bebió café con leche.",
    "Les élèves étudient à l'école; ils sont très contents de l'été.",
    "Der Bär läuft über die Straße und isst süße Äpfel.",
    "Привет, мир! Как дела? Это небольшой тест.",
    "Γειά σου κόσμε, αυτό είναι ένα μικρό κείμενο.",
    "今日は良い天気ですね。東京で会いましょう。",
    "我们一起学习机器学习和自然语言处理。你好，世界！",
    "안녕하세요, 세계! 오늘은 좋은 날입니다.",
    "Emoji are text too 🙂 👍 🚀 🎉 ❤️ and so are flags 🇫🇷 and families 👨‍👩‍👧.",
    "Math: α + β = γ, ∑ x² ≤ ∞, and π ≈ 3.14; arrows → ← ↔ and ellipsis …",
    "Quotes: “double”, ‘single’, «guillemets» and the dash — or the en dash –.",
    "Tokenizers split text into pieces; the pieces become ids; the ids become vectors.",
    "Byte fallback means that an unknown character is spelled out as its UTF-8 bytes.",
    "WordPiece, BPE and Unigram are three ways to learn a subword vocabulary from text.",
    "The meeting is on Monday at 10:30 in room 4B; bring the report and a pen.",
    "Water boils at 100 degrees Celsius at sea level and freezes at 0 degrees.",
    "Machine learning models learn patterns from data instead of following fixed rules.",
    "A recipe: mix flour, sugar and eggs, then bake for twenty minutes until golden.",
    "The library opens at nine in the morning and closes at six in the evening.",
    "Trains, buses and bicycles are common ways to travel around the city.",
    "The cat sat on the mat; the dog lay on the rug; the bird sang in the tree.",
    "query: what is the capital of France? passage: Paris is the capital of France.",
    "query: how do I bake bread? passage: Mix flour, water, yeast and salt, then bake.",
]
# Repeat so that pair counts are high enough for the trainers to learn useful merges.
TRAIN_TEXTS = CORPUS * 3


# --------------------------------------------------------------------------------------------
# Determinism
# --------------------------------------------------------------------------------------------
def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)


def perturb_constant_params(model, seed: int) -> None:
    """Give every parameter that the initializer set to a constant (norm weights = 1 or 0,
    biases = 0) small random values, so that a C implementation that forgets a norm weight or a
    bias is caught by the references."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            flat = p.detach().reshape(-1)
            if flat.numel() == 0 or not bool((flat == flat[0]).all()):
                continue
            lname = name.lower()
            scale = 0.1 if ("norm" in lname or "ln_" in lname) else 0.05
            p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype) * scale)


def versions() -> dict[str, str]:
    import safetensors
    import tokenizers
    import torch
    import transformers

    out = {
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "tokenizers": tokenizers.__version__,
        "safetensors": safetensors.__version__,
        "numpy": np.__version__,
        "python": "%d.%d.%d" % sys.version_info[:3],
    }
    try:
        import sentence_transformers

        out["sentence_transformers"] = sentence_transformers.__version__
    except Exception:  # pragma: no cover
        pass
    try:
        import gguf  # noqa: F401
        from importlib.metadata import version

        out["gguf"] = version("gguf")
    except Exception:  # pragma: no cover
        pass
    return out


def base_metadata(model: str, generator: str, tolerance: dict, texts) -> dict[str, str]:
    v = versions()
    md = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "model": model,
        "generator": generator,
        "transformers": v["transformers"],
        "torch": v["torch"],
        "tokenizers": v["tokenizers"],
        "numpy": v["numpy"],
        "tolerance": json.dumps(tolerance, sort_keys=True),
        "texts": json.dumps(texts, ensure_ascii=False),
    }
    if "sentence_transformers" in v:
        md["sentence_transformers"] = v["sentence_transformers"]
    if "gguf" in v:
        md["gguf"] = v["gguf"]
    return md


# --------------------------------------------------------------------------------------------
# safetensors writer (deterministic, our own; the format is tiny)
# --------------------------------------------------------------------------------------------
_ST_DTYPES = {
    np.dtype(np.float32): "F32",
    np.dtype(np.float16): "F16",
    np.dtype(np.int64): "I64",
    np.dtype(np.int32): "I32",
    np.dtype(np.uint8): "U8",
}


def write_safetensors(path: Path, tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> None:
    """Header = {"__metadata__": {...sorted...}, name: {dtype, shape, data_offsets}, ...} in
    insertion order, padded with spaces to a multiple of 8; data little-endian, contiguous."""
    header: dict = {"__metadata__": {k: str(metadata[k]) for k in sorted(metadata)}}
    blobs = []
    offset = 0
    for name, arr in tensors.items():
        arr = np.ascontiguousarray(arr)
        if arr.dtype not in _ST_DTYPES:
            raise TypeError(f"{name}: unsupported dtype {arr.dtype}")
        data = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {
            "dtype": _ST_DTYPES[arr.dtype],
            "shape": list(arr.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        blobs.append(data)
        offset += len(data)
    hbytes = json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    hbytes += b" " * ((8 - len(hbytes) % 8) % 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hbytes)))
        f.write(hbytes)
        for b in blobs:
            f.write(b)
    # Round-trip through the official reader as a self-check.
    from safetensors.numpy import load_file
    from safetensors import safe_open

    back = load_file(str(path))
    for name, arr in tensors.items():
        assert back[name].dtype == arr.dtype and back[name].shape == arr.shape, name
        assert np.array_equal(back[name], arr), name
    with safe_open(str(path), "np") as f:
        assert f.metadata() == header["__metadata__"]


# --------------------------------------------------------------------------------------------
# Tokenizers
# --------------------------------------------------------------------------------------------
QWEN_SPLIT_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def _ids(tok, names):
    out = []
    for n in names:
        i = tok.token_to_id(n)
        assert i is not None, n
        out.append((n, i))
    return out


def fixed_alphabet(tok, n: int) -> list[str]:
    """The n most frequent characters the trainer will see (after tok's normalizer and
    pre-tokenizer), ties broken by code point. The trainers' own limit_alphabet breaks ties in
    hash-map order, which changes from run to run; passing this list as initial_alphabet with
    limit_alphabet=len(list) makes training reproducible."""
    from collections import Counter

    counts: Counter = Counter()
    for t in TRAIN_TEXTS:
        if tok.normalizer is not None:
            t = tok.normalizer.normalize_str(t)
        pieces = [p for p, _ in tok.pre_tokenizer.pre_tokenize_str(t)] if tok.pre_tokenizer is not None else [t]
        for p in pieces:
            counts.update(p)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], ord(kv[0])))
    return [c for c, _ in ranked[:n]]


def train_wordpiece_vocab(tok, specials: list[str], vocab_size: int, alphabet_size: int,
                          prefix: str = "##") -> list[str]:
    """WordPiece vocabulary learned the way tokenizers' WordPieceTrainer does it (BPE merges over
    words whose non-initial characters carry the ## prefix, most frequent pair first, at least 2
    occurrences), in plain Python so that ties are broken the same way on every run (the Rust
    trainer breaks them in hash-map order). Words with characters outside the alphabet are left
    out of training; at run time such a word becomes the unk token, as WordPiece does."""
    from collections import Counter

    words: Counter = Counter()
    for t in TRAIN_TEXTS:
        t = tok.normalizer.normalize_str(t)
        for w, _ in tok.pre_tokenizer.pre_tokenize_str(t):
            words[w] += 1
    alphabet = set(fixed_alphabet(tok, alphabet_size))
    splits = {w: [w[0]] + [prefix + c for c in w[1:]] for w in words if set(w) <= alphabet}
    vocab = list(specials)
    vocab += sorted(alphabet)
    vocab += sorted({p for sp in splits.values() for p in sp[1:]})
    known = set(vocab)
    while len(vocab) < vocab_size:
        pairs: Counter = Counter()
        for w, sp in splits.items():
            for a, b in zip(sp, sp[1:]):
                pairs[(a, b)] += words[w]
        if not pairs:
            break
        (a, b), n = min(pairs.items(), key=lambda kv: (-kv[1], kv[0]))
        if n < 2:
            break
        merged = a + (b[len(prefix):] if b.startswith(prefix) else b)
        for w, sp in splits.items():
            i, out = 0, []
            while i < len(sp):
                if i + 1 < len(sp) and sp[i] == a and sp[i + 1] == b:
                    out.append(merged)
                    i += 2
                else:
                    out.append(sp[i])
                    i += 1
            splits[w] = out
        if merged not in known:
            known.add(merged)
            vocab.append(merged)
    return vocab


def wordpiece_tokenizer(specials: list[str], unk: str, cls: str, sep: str, post: str,
                        vocab_size: int = 440, lowercase: bool = True,
                        extra_specials: list[str] = ()):
    """BERT-family WordPiece. specials get ids 0.. in order; extra_specials are appended after
    training (ids at the end, like roberta/mpnet's <mask>). post: "template" | "bert" | "roberta"."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    tok = Tokenizer(models.WordPiece(unk_token=unk))
    tok.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    vocab = train_wordpiece_vocab(tok, specials, vocab_size, alphabet_size=150)
    model = models.WordPiece(vocab={p: i for i, p in enumerate(vocab)}, unk_token=unk,
                             max_input_chars_per_word=100)
    norm, pre = tok.normalizer, tok.pre_tokenizer
    tok = Tokenizer(model)
    tok.normalizer, tok.pre_tokenizer = norm, pre
    tok.decoder = decoders.WordPiece(prefix="##")
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    if extra_specials:
        tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in extra_specials])
    (c, ci), (s, si) = _ids(tok, [cls, sep])
    if post == "template":
        tok.post_processor = processors.TemplateProcessing(
            single=f"{c}:0 $A:0 {s}:0", pair=f"{c}:0 $A:0 {s}:0 $B:1 {s}:1",
            special_tokens=[(c, ci), (s, si)])
    elif post == "bert":
        tok.post_processor = processors.BertProcessing((s, si), (c, ci))
    elif post == "roberta":
        tok.post_processor = processors.RobertaProcessing(
            (s, si), (c, ci), trim_offsets=True, add_prefix_space=False)
    else:
        raise ValueError(post)
    return tok


def bytelevel_bpe_tokenizer(style: str, front_specials: list[str], back_specials: list[str],
                            vocab_size: int = 400, back_nonspecial: list[str] = ()):
    """Byte-level BPE. style: "gpt2" (ByteLevel pre-tokenizer with its built-in GPT-2 regex),
    "qwen" (NFC + Split(Qwen regex) + ByteLevel(use_regex=False)), "roberta" (ByteLevel +
    RobertaProcessing with <s>/</s>)."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    if style in ("gpt2", "roberta"):
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    elif style == "qwen":
        tok.normalizer = normalizers.NFC()
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(QWEN_SPLIT_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
        ])
    else:
        raise ValueError(style)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=2, special_tokens=front_specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(TRAIN_TEXTS, trainer)
    if back_specials:
        tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in back_specials])
    if back_nonspecial:
        tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in back_nonspecial])
    if style == "roberta":
        (c, ci), (s, si) = _ids(tok, ["<s>", "</s>"])
        tok.post_processor = processors.RobertaProcessing(
            (s, si), (c, ci), trim_offsets=True, add_prefix_space=False)
    else:
        tok.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    return tok


def train_unigram_vocab(tok, vocab_size: int, n_specials: int, alphabet_size: int = 120,
                        max_len: int = 8, iterations: int = 4) -> list[tuple[str, float]]:
    """A small Unigram LM vocabulary, learned in plain Python so that it is identical on every
    run (tokenizers' UnigramTrainer returns slightly different piece sets and scores from run to
    run). Candidates: the alphabet_size most frequent characters plus every substring of up to
    max_len characters seen at least 3 times; then a few rounds of hard EM (Viterbi-segment every
    word, keep the most used pieces, score = log relative frequency). Scores are made strictly
    decreasing (tiny offsets in (score desc, piece) order) so no two pieces tie."""
    import math
    from collections import Counter

    words: Counter = Counter()
    for t in TRAIN_TEXTS:
        t = tok.normalizer.normalize_str(t)
        for w, _ in tok.pre_tokenizer.pre_tokenize_str(t):
            words[w] += 1
    chars = fixed_alphabet(tok, alphabet_size)
    alphabet = set(chars)
    sub: Counter = Counter()
    for w, n in words.items():
        for i in range(len(w)):
            for j in range(i + 2, min(len(w), i + max_len) + 1):
                piece = w[i:j]
                if set(piece) <= alphabet:
                    sub[piece] += n
    multi = sorted((p for p, n in sub.items() if n >= 3), key=lambda p: (-sub[p] * len(p), p))
    budget = vocab_size - n_specials - len(chars)
    score = {c: 0.0 for c in chars}
    for p in multi:
        score[p] = math.log(sub[p] * len(p))

    def viterbi(w):
        best = [(0.0, 0, None)] + [(-math.inf, 0, None)] * len(w)
        for i in range(1, len(w) + 1):
            for j in range(max(0, i - max_len), i):
                p = w[j:i]
                if p in score and best[j][0] > -math.inf:
                    v = best[j][0] + score[p]
                    if v > best[i][0]:
                        best[i] = (v, j, p)
            if best[i][0] == -math.inf:  # unknown character: skip it
                best[i] = (best[i - 1][0] - 20.0, i - 1, None)
        out, i = [], len(w)
        while i > 0:
            _, j, p = best[i]
            if p is not None:
                out.append(p)
            i = j
        return out

    for _ in range(iterations):
        used: Counter = Counter()
        for w, n in sorted(words.items()):
            for p in viterbi(w):
                used[p] += n
        keep = sorted((p for p in score if len(p) > 1 and used[p] > 0), key=lambda p: (-used[p], p))[:budget]
        total = sum(used.values()) + len(chars)
        score = {c: math.log((used[c] + 0.5) / total) for c in chars}
        for p in keep:
            score[p] = math.log(used[p] / total)
    ranked = sorted(score.items(), key=lambda ps: (-ps[1], ps[0]))
    return [(p, round(sc, 4) - 1e-6 * k) for k, (p, sc) in enumerate(ranked)]


def unigram_tokenizer(specials: list[str], unk: str, back_specials: list[str], vocab_size: int = 400):
    """XLM-RoBERTa-style Unigram + Metaspace (prepend always, split), <s> $A </s>."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    probe = Tokenizer(models.Unigram())
    probe.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")])
    probe.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    pieces = train_unigram_vocab(probe, vocab_size, len(specials))
    vocab = [(p, 0.0) for p in specials] + pieces
    tok = Tokenizer(models.Unigram(vocab, unk_id=specials.index(unk), byte_fallback=False))
    tok.normalizer = probe.normalizer
    tok.pre_tokenizer = probe.pre_tokenizer
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    if back_specials:
        tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in back_specials])
    (c, ci), (s, si) = _ids(tok, ["<s>", "</s>"])
    tok.post_processor = processors.TemplateProcessing(
        single=f"{c}:0 $A:0 {s}:0", pair=f"{c}:0 $A:0 {s}:0 {s}:0 $B:0 {s}:0",
        special_tokens=[(c, ci), (s, si)])
    return tok


def spm_bpe_tokenizer(style: str, specials: list[str], bos: str | None, unk: str,
                      back_specials: list[str] = (), trained_size: int = 236, limit_alphabet: int = 100):
    """SentencePiece-style BPE with byte_fallback (Llama-2 family).

    Vocabulary layout (like Llama-2 / Gemma): specials (ids 0..), then <0x00>..<0xFF>, then the
    trained pieces in merge order, then back_specials (added tokens, e.g. chat markers).
    style:
      "llama"     - legacy Llama-2 tokenizer.json: normalizer Prepend(▁)+Replace(' ', ▁),
                    no pre-tokenizer; decoder Replace/ByteFallback/Fuse/Strip; "<s> $A".
      "metaspace" - newer conversion: no normalizer, Metaspace(prepend_scheme=first, split=False)
                    pre-tokenizer, same decoder; "<s> $A".
      "gemma"     - Gemma: normalizer Replace(' ', ▁) only (no dummy prefix), no pre-tokenizer,
                    decoder Replace/ByteFallback/Fuse; "<bos> $A".
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    # 1) learn merges on ▁-prefixed words (pieces never cross a word boundary, like sentencepiece)
    trainer_tok = Tokenizer(models.BPE())
    trainer_tok.pre_tokenizer = pre_tokenizers.Metaspace(
        replacement="▁", prepend_scheme="never" if style == "gemma" else "always", split=True)
    alphabet = fixed_alphabet(trainer_tok, limit_alphabet)
    trainer = trainers.BpeTrainer(vocab_size=trained_size, min_frequency=2, special_tokens=[],
                                  initial_alphabet=alphabet, limit_alphabet=len(alphabet), show_progress=False)
    trainer_tok.train_from_iterator(TRAIN_TEXTS, trainer)
    model_json = json.loads(trainer_tok.to_str())["model"]
    trained_vocab = sorted(model_json["vocab"].items(), key=lambda kv: kv[1])
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model_json["merges"]]

    # 2) final vocabulary: specials, 256 byte pieces, trained pieces
    vocab: dict[str, int] = {}
    for s in specials:
        vocab[s] = len(vocab)
    for b in range(256):
        vocab["<0x%02X>" % b] = len(vocab)
    for piece, _ in trained_vocab:
        if piece not in vocab:
            vocab[piece] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token=unk, fuse_unk=True, byte_fallback=True))
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    if back_specials:
        tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in back_specials])

    sp_decoder = [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
    if style == "llama":
        tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
        tok.decoder = decoders.Sequence(sp_decoder + [decoders.Strip(" ", 1, 0)])
    elif style == "metaspace":
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
        tok.decoder = decoders.Sequence(sp_decoder + [decoders.Strip(" ", 1, 0)])
    elif style == "gemma":
        tok.normalizer = normalizers.Replace(" ", "▁")
        tok.decoder = decoders.Sequence(sp_decoder)
    else:
        raise ValueError(style)
    if bos is not None:
        bi = tok.token_to_id(bos)
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos}:0 $A:0", pair=f"{bos}:0 $A:0 {bos}:1 $B:1", special_tokens=[(bos, bi)])
    return tok


def save_hf_tokenizer(tok, folder: Path, *, special: dict[str, str], model_max_length: int,
                      chat_template: str | None = None, model_input_names=None,
                      padding_side: str = "right", extra_config: dict | None = None):
    """Save tokenizer.json + tokenizer_config.json (+ chat_template.jinja) with transformers,
    and write special_tokens_map.json ourselves (transformers 5 no longer writes it)."""
    from transformers import PreTrainedTokenizerFast

    kwargs = dict(special)
    if model_input_names is not None:
        kwargs["model_input_names"] = list(model_input_names)
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=model_max_length,
                                 padding_side=padding_side, **kwargs)
    if chat_template is not None:
        hf.chat_template = chat_template
    hf.save_pretrained(str(folder))
    if extra_config:
        p = folder / "tokenizer_config.json"
        cfg = json.loads(p.read_text(encoding="utf-8"))
        cfg.update(extra_config)
        p.write_text(json.dumps(cfg, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
    with open(folder / "special_tokens_map.json", "w", encoding="utf-8") as f:
        json.dump({k: v for k, v in sorted(special.items())}, f, indent=2, ensure_ascii=False)
        f.write("\n")
    return hf


def check_tokenizer_json(folder: Path, texts, hf_tok, pairs: bool = False) -> None:
    """The C side only reads tokenizer.json: make sure it alone reproduces transformers' ids."""
    from tokenizers import Tokenizer

    raw = Tokenizer.from_file(str(folder / "tokenizer.json"))
    for t in texts:
        if pairs:
            a = raw.encode(t[0], t[1]).ids
            b = hf_tok(t[0], t[1])["input_ids"]
        else:
            a = raw.encode(t).ids
            b = hf_tok(t)["input_ids"]
        assert a == list(b), (folder.name, t, a, list(b))


# Tokenizer edge cases, run through every fixture's tokenizer (with its special tokens added, as
# tokenizer(text) does). Special-token strings are in the text on purpose: each tokenizer must
# match only its own added tokens.
TOKENIZE_TEXTS = [
    "",
    " ",
    "  leading and trailing  ",
    "a\nb\r\n\tc   d",
    "ÀÉÎÕÜ àéîõü ß ﬁ ① ｆｕｌｌ Ⅻ",
    "東京タワー 🗼 👩‍💻 🇯🇵 ❤️",
    "don't I'll we've 12345 3.14 1,000,000",
    "def f(x):\n    return x**2  # comment",
    "<s>[CLS]</s>[MASK]<mask><bos><start_of_turn>user<end_of_turn><|im_start|><|endoftext|><think>x</think>",
    "a" * 120,
]


def tokenize_cases(folder: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """tokenize{i}.input_ids for TOKENIZE_TEXTS with tokenizer.json alone (tokenizers library:
    encode(text, add_special_tokens=True)); metadata: the texts and
    decode(ids, skip_special_tokens=False) of each."""
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    raw = Tokenizer.from_file(str(folder / "tokenizer.json"))
    hf = AutoTokenizer.from_pretrained(str(folder))
    tensors, decoded = {}, []
    for i, t in enumerate(TOKENIZE_TEXTS):
        ids = raw.encode(t).ids
        assert ids == list(hf(t)["input_ids"]), (folder.name, t)
        tensors[f"tokenize{i}.input_ids"] = np.asarray(ids, dtype=np.int64)
        decoded.append(raw.decode(ids, skip_special_tokens=False))
    md = {"tokenize_texts": json.dumps(TOKENIZE_TEXTS, ensure_ascii=False),
          "tokenize_decoded": json.dumps(decoded, ensure_ascii=False)}
    return tensors, md


def fresh_dir(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def dump_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")


def arg_parser(desc: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=desc)
    p.add_argument("--out", default=str(REPO_ROOT / "tests" / "fixtures"),
                   help="fixtures root (default: tests/fixtures of this checkout)")
    p.add_argument("--only", default="", help="comma-separated model names to (re)build")
    return p


def selected(name: str, only: str) -> bool:
    return not only or name in only.split(",")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
