#!/usr/bin/env python3
"""soak.py PORT SERVER_PID SECONDS — a mixed load against one `eft serve` that hosts a causal LM,
an embedding model and a reranker, from many client threads at once (standard library only).

What it holds the server to, all at the same time:
- every answer is right, not merely 200: an embedding is the same vector whatever batch it was
  merged into, a greedy completion is the same text whatever else was decoding next to it, and a
  streamed completion's text is the non-streamed one;
- nothing hangs: every request has a deadline (a hang near a full KV cache fails here);
- bad requests (malformed JSON, over-long input, invalid sampling values) get their 4xx and harm
  no one else; clients that drop a stream mid-way are cancelled and harm no one else;
- no decay: server CPU seconds per request in the last third of the run are at most twice those
  of the first third, and its resident memory grows by less than 64 MiB after the first third.
Prints a summary; exits 1 with the failures listed when any check fails.
"""
import http.client
import json
import math
import os
import random
import socket
import sys
import threading
import time

PORT = int(sys.argv[1])
PID = int(sys.argv[2])
SECONDS = float(sys.argv[3])
THREADS = 12
TIMEOUT = 60.0
WORDS = ("the quick brown fox jumps over a lazy dog while seven wizards quietly hex "
         "jovial bankers near the old harbour café naïve résumé 東京 42 3.14 hello world").split()

lock = threading.Lock()
failures = []
counts = {}
done_times = []   # completion times of successful requests
ref_embed = {}    # text -> vector (first answer seen)
ref_gen = {}      # (prompt, max_tokens) -> (text, finish_reason)


def fail(msg):
    with lock:
        if len(failures) < 40:
            failures.append(msg)


def count(kind):
    with lock:
        counts[kind] = counts.get(kind, 0) + 1
        done_times.append(time.monotonic())


def request(method, path, body=None, raw=None):
    c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=TIMEOUT)
    try:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        c.request(method, path, body=data, headers={"Content-Type": "application/json"})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def text(rng, lo, hi):
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))


def same_vec(a, b, tol=1e-5):
    return len(a) == len(b) and all(abs(x - y) <= tol for x, y in zip(a, b))


def check_embedding(t, v, where):
    if not all(math.isfinite(x) for x in v):
        fail("%s: non-finite embedding for %r" % (where, t))
        return
    with lock:
        ref = ref_embed.setdefault(t, v)
    if not same_vec(ref, v):
        fail("%s: %r embedded differently in another batch (max diff %g)"
             % (where, t, max(abs(x - y) for x, y in zip(ref, v))))


def do_openai_embed(rng):
    texts = [text(rng, 1, 14) for _ in range(rng.randint(1, 8))]  # the fixture takes 64 tokens
    st, b = request("POST", "/v1/embeddings", {"input": texts, "model": "m"})
    if st != 200:
        return fail("/v1/embeddings: %d %s" % (st, b[:200]))
    d = json.loads(b)["data"]
    if [e["index"] for e in d] != list(range(len(texts))):
        return fail("/v1/embeddings: indices %s" % [e["index"] for e in d])
    for t, e in zip(texts, d):
        check_embedding(t, e["embedding"], "/v1/embeddings")
    count("embeddings")


def do_tei_embed(rng):
    texts = [text(rng, 1, 12) for _ in range(rng.randint(1, 4))]
    st, b = request("POST", "/embed", {"inputs": texts})
    if st != 200:
        return fail("/embed: %d %s" % (st, b[:200]))
    vecs = json.loads(b)
    if len(vecs) != len(texts):
        return fail("/embed: %d vectors for %d inputs" % (len(vecs), len(texts)))
    count("embed")


def do_rerank(rng):
    q, docs = text(rng, 2, 5), [text(rng, 2, 9) for _ in range(rng.randint(1, 5))]
    st, b = request("POST", "/rerank", {"query": q, "texts": docs})
    if st != 200:
        return fail("/rerank: %d %s" % (st, b[:200]))
    r = json.loads(b)
    if sorted(x["index"] for x in r) != list(range(len(docs))):
        return fail("/rerank: indices %s" % r)
    count("rerank")


def gen_prompt(rng):
    # A small set of prompts, so that each is seen many times and compared with its first answer.
    return "%s %s" % (rng.choice(("Once upon a time", "The answer is", "Hello", "In the beginning")),
                      rng.choice(WORDS))


def do_complete(rng):
    p, n = gen_prompt(rng), rng.choice((1, 8, 24))
    st, b = request("POST", "/v1/completions", {"prompt": p, "max_tokens": n, "temperature": 0})
    if st != 200:
        return fail("/v1/completions: %d %s" % (st, b[:200]))
    c = json.loads(b)["choices"][0]
    got = (c["text"], c["finish_reason"])
    with lock:
        ref = ref_gen.setdefault((p, n), got)
    if got != ref:
        fail("/v1/completions %r max %d: %r, earlier %r (continuous batching changed a greedy answer)"
             % (p, n, got, ref))
    count("completions")


def sse_text(body):
    out, finish, done = [], None, False
    for line in body.decode("utf-8", "replace").split("\n"):
        if not line.startswith("data: "):
            continue
        if line == "data: [DONE]":
            done = True
            continue
        for ch in json.loads(line[6:]).get("choices", []):
            out.append(ch.get("text", ""))
            finish = ch.get("finish_reason") or finish
    return "".join(out), finish, done


def do_stream(rng):
    p, n = gen_prompt(rng), rng.choice((8, 24))
    st, b = request("POST", "/v1/completions", {"prompt": p, "max_tokens": n, "temperature": 0, "stream": True})
    if st != 200:
        return fail("stream: %d %s" % (st, b[:200]))
    t, finish, done = sse_text(b)
    if not done:
        return fail("stream %r: no [DONE]" % p)
    with lock:
        ref = ref_gen.setdefault((p, n), (t, finish))
    if (t, finish) != ref:
        fail("stream %r max %d: %r, non-streamed %r" % (p, n, (t, finish), ref))
    count("streams")


def do_full_cache(rng):
    # A prompt that fills much of the 128-token context and max_tokens for the rest, EOS ignored:
    # decoding runs to the last cache entry and must come back (finish "length" at exactly ctx_len), not
    # hang. A prompt over ctx_len, and max_tokens beyond what is left, are refused with 400.
    p = text(rng, 12, 24)  # 40 to 100 tokens of the llama fixture
    st, b = request("POST", "/v1/completions", {"prompt": p, "max_tokens": 1})
    if st != 200:
        return fail("full cache, the prompt's length: %d %s" % (st, b[:200]))
    left = 128 - json.loads(b)["usage"]["prompt_tokens"]
    st, b = request("POST", "/v1/completions", {"prompt": p, "temperature": 0, "ignore_eos": True, "max_tokens": left})
    if st != 200:
        return fail("full cache: %d %s" % (st, b[:200]))
    d = json.loads(b)
    u, c = d["usage"], d["choices"][0]
    if c["finish_reason"] != "length" or u["prompt_tokens"] + u["completion_tokens"] != 128:
        return fail("full cache: finish %s, %d + %d tokens in a 128 context"
                    % (c["finish_reason"], u["prompt_tokens"], u["completion_tokens"]))
    count("full_cache")
    st, b = request("POST", "/v1/completions", {"prompt": p, "max_tokens": 129 - u["prompt_tokens"]})
    if st != 400:
        fail("max_tokens one past the context: %d %s" % (st, b[:200]))
    st, b = request("POST", "/v1/completions", {"prompt": text(rng, 60, 70), "max_tokens": 4})
    if st != 400:
        fail("prompt over ctx_len: %d %s" % (st, b[:200]))
    count("too_long")


def do_drop(rng):
    # Start a stream, read its first bytes, hang up.
    s = socket.create_connection(("127.0.0.1", PORT), timeout=TIMEOUT)
    try:
        body = json.dumps({"prompt": gen_prompt(rng), "max_tokens": 100, "stream": True,
                           "ignore_eos": True}).encode()
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(body) + body)
        if not s.recv(64):
            fail("dropped stream: no first bytes")
    finally:
        s.close()
    count("dropped")


def do_bad(rng):
    cases = [("POST", "/v1/embeddings", None, b'{"input": ["a", '),
             ("POST", "/v1/completions", {"prompt": "x", "max_tokens": 2, "top_p": 3}, None),
             ("POST", "/v1/completions", {"prompt": "x", "max_tokens": -1}, None),
             ("POST", "/embed", {"inputs": [text(rng, 900, 950)]}, None),
             ("POST", "/v1/embeddings", None, b"\xff\xfe not json at all"),
             ("POST", "/rerank", {"query": "q", "texts": []}, None)]
    m, path, body, raw = rng.choice(cases)
    st, b = request(m, path, body, raw)
    if not 400 <= st < 500:
        fail("bad request to %s answered %d %s" % (path, st, b[:200]))
    count("bad")


ACTIONS = [(do_openai_embed, 4), (do_tei_embed, 2), (do_rerank, 2), (do_complete, 4), (do_stream, 3),
           (do_full_cache, 1), (do_drop, 1), (do_bad, 2)]


def worker(seed, deadline):
    rng = random.Random(seed)
    fns = [f for f, w in ACTIONS for _ in range(w)]
    while time.monotonic() < deadline and len(failures) < 40:
        f = rng.choice(fns)
        try:
            f(rng)
        except Exception as e:  # a timeout, a reset connection, a body that is not JSON
            fail("%s: %s: %s" % (f.__name__, type(e).__name__, e))


def proc_cpu_rss():
    with open("/proc/%d/stat" % PID) as fh:
        f = fh.read().rsplit(")", 1)[1].split()
    cpu = (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    with open("/proc/%d/status" % PID) as fh:
        rss = next(int(l.split()[1]) for l in fh if l.startswith("VmRSS:")) * 1024
    return cpu, rss


def main():
    t0 = time.monotonic()
    deadline = t0 + SECONDS
    threads = [threading.Thread(target=worker, args=(1000 + i, deadline), daemon=True) for i in range(THREADS)]
    for t in threads:
        t.start()
    marks = []
    for k in (1, 2):
        time.sleep(max(0.0, t0 + SECONDS * k / 3 - time.monotonic()))
        with lock:
            n = len(done_times)
        marks.append((n,) + proc_cpu_rss())
    for t in threads:
        t.join(TIMEOUT + 5)
        if t.is_alive():
            fail("a client thread is still waiting %g s after the end: a request hung" % (TIMEOUT + 5))
    n_end = len(done_times)
    cpu_end, rss_end = proc_cpu_rss()
    (n1, cpu1, rss1), (n2, cpu2, _) = marks
    first = cpu1 / max(n1, 1)
    last = (cpu_end - cpu2) / max(n_end - n2, 1)
    print("soak: %d requests in %.0f s from %d clients: %s" % (n_end, SECONDS, THREADS, json.dumps(counts, sort_keys=True)))
    print("soak: server CPU per request %.2f ms (first third), %.2f ms (last third); RSS %.1f MiB -> %.1f MiB"
          % (first * 1e3, last * 1e3, rss1 / 2**20, rss_end / 2**20))
    if n1 < 20 or n_end - n2 < 20:
        fail("too few requests to judge: %d in the first third, %d in the last" % (n1, n_end - n2))
    elif last > 2 * first:
        fail("decay: the last third took %.2f ms of server CPU per request, the first %.2f ms" % (last * 1e3, first * 1e3))
    if rss_end - rss1 > 64 * 2**20:
        fail("memory: RSS grew by %.1f MiB after the first third" % ((rss_end - rss1) / 2**20))
    for kind in ("embeddings", "completions", "streams", "rerank", "full_cache", "dropped", "bad"):
        if counts.get(kind, 0) == 0:
            fail("no %s request completed" % kind)
    st, b = request("GET", "/health")
    if st != 200:
        fail("/health after the soak: %d" % st)
    for f in failures:
        print("FAIL", f)
    sys.exit(1 if failures else 0)


main()
