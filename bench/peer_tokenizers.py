#!/usr/bin/env python3
"""Peer measurements for `eft bench tokenize`: Hugging Face `tokenizers` (Rust, through its Python
package) on the text eft used, in the same run.

Prints one JSON object per line:
  {"case": "single", "size": n, "bytes": b, "tokens": k, "seconds": s}
                                   Tokenizer.encode of the first n bytes cut to b (a character boundary)
  {"case": "batch", "threads": t, "texts": m, "tokens": k, "seconds": s}
                                                 encode_batch of the text cut into ~B-byte texts
or {"case": "...", "error": "..."} when tokenizers cannot run. Each figure is the median repetition
within --seconds, as eft measures itself. One thread for single texts (encode is sequential); the
batch runs once with RAYON_NUM_THREADS=1 and once with the thread count, each in its own process
(rayon reads the variable once, when the pool starts).

TOKENIZER is what eft was given: a tokenizer.json, a folder holding one (or one .gguf), or a .gguf
file (converted by transformers, as eft's fixtures are).

usage: peer_tokenizers.py --tokenizer PATH --text FILE --sizes 1024,102400,1048576 --batch-bytes 200
                          --threads N --seconds S
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time


def emit(**kw):
    print(json.dumps(kw), flush=True)


def timed(fn, seconds):
    fn()  # warm-up
    reps, start = [], time.perf_counter()
    while time.perf_counter() - start < seconds or len(reps) < 3:
        t0 = time.perf_counter()
        fn()
        reps.append(time.perf_counter() - t0)
        if len(reps) >= 4096:
            break
    return statistics.median(reps)


def load(path):
    tok = load_raw(path)
    # eft encodes whole texts: a tokenizer.json's own truncation/padding (MiniLM: 128) would not
    # measure the same work.
    tok.no_truncation()
    tok.no_padding()
    return tok


def load_raw(path):
    from tokenizers import Tokenizer
    if os.path.isdir(path):
        tj = os.path.join(path, "tokenizer.json")
        if os.path.exists(tj):
            return Tokenizer.from_file(tj)
        ggufs = [f for f in os.listdir(path) if f.endswith(".gguf")]
        if len(ggufs) != 1:
            raise RuntimeError("%s has no tokenizer.json and not exactly one .gguf" % path)
        path = os.path.join(path, ggufs[0])
    if path.endswith(".gguf"):
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        from transformers import AutoTokenizer
        return AutoTokenizer.from_pretrained(os.path.dirname(os.path.abspath(path)),
                                             gguf_file=os.path.basename(path)).backend_tokenizer
    return Tokenizer.from_file(path)


def cut(data, n):
    """The first n bytes, cut back to a character boundary, as text."""
    n = min(n, len(data))
    while 0 < n < len(data) and (data[n] & 0xC0) == 0x80:
        n -= 1
    return data[:n].decode("utf-8", "replace"), n


def batch_texts(data, size):
    out, at = [], 0
    while at < len(data):
        end = min(at + size, len(data))
        while end < len(data) and (data[end] & 0xC0) == 0x80:
            end += 1
        out.append(data[at:end].decode("utf-8", "replace"))
        at = end
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--text", required=True)
    ap.add_argument("--sizes", default="1024,102400,1048576")
    ap.add_argument("--batch-bytes", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--batch-only", action="store_true", help="internal: one batch figure in this process")
    a = ap.parse_args()
    data = open(a.text, "rb").read()

    if a.batch_only:
        # RAYON_NUM_THREADS was set by the parent before tokenizers was imported here.
        try:
            tok = load(a.tokenizer)
        except Exception as e:  # noqa: BLE001 - any failure is the peer's absence
            emit(case="batch", threads=a.threads, error="tokenizers cannot load %s: %s" % (a.tokenizer, e))
            return
        texts = batch_texts(data, a.batch_bytes)
        tokens = sum(len(e.ids) for e in tok.encode_batch(texts))
        s = timed(lambda: tok.encode_batch(texts), a.seconds)
        emit(case="batch", threads=a.threads, texts=len(texts), tokens=tokens, seconds=s)
        return

    os.environ["RAYON_NUM_THREADS"] = "1"
    try:
        import tokenizers  # noqa: F401
    except Exception as e:  # noqa: BLE001
        emit(case="single", error="tokenizers is not importable with %s: %s" % (sys.executable, e))
        return
    try:
        tok = load(a.tokenizer)
    except Exception as e:  # noqa: BLE001
        emit(case="single", error="tokenizers cannot load %s: %s" % (a.tokenizer, e))
        return
    for n in (int(x) for x in a.sizes.split(",")):
        text, nb = cut(data, n)
        tokens = len(tok.encode(text).ids)
        s = timed(lambda: tok.encode(text), a.seconds)
        emit(case="single", size=n, bytes=nb, tokens=tokens, seconds=s)
    path = a.tokenizer
    if not (path.endswith(".json") and os.path.isfile(path)):
        # A GGUF conversion takes a while: the batch processes load the result instead.
        import tempfile
        fd, path = tempfile.mkstemp(suffix=".json")
        with os.fdopen(fd, "w") as f:
            f.write(tok.to_str())
    for threads in sorted({1, a.threads}):
        env = dict(os.environ, RAYON_NUM_THREADS=str(threads), TOKENIZERS_PARALLELISM="true")
        cmd = [sys.executable, os.path.abspath(__file__), "--tokenizer", path, "--text", a.text,
               "--batch-bytes", str(a.batch_bytes), "--threads", str(threads), "--seconds", str(a.seconds),
               "--batch-only"]
        out = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True)
        sys.stdout.write(out.stdout)
        sys.stdout.flush()
    if path != a.tokenizer:
        os.unlink(path)


if __name__ == "__main__":
    main()
