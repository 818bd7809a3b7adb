#!/usr/bin/env bash
# test_serve.sh EFT SOURCE_DIR — `eft serve` over real HTTP on loopback: starts the server on a
# free port with the fixture encoder (bert) and cross-encoder (bert-cls), waits for /health, and
# checks every embedding route against sentence-transformers' outputs in tests/fixtures/ref,
# the error contract (status codes, OpenAI's error shape on /v1/, TEI's on /embed, /rerank and
# /tokenize) on bad input, 20 concurrent
# clients, API keys, and that SIGTERM exits 0. A second server on the llama fixture checks the
# generation routes (plain and streamed) when the generator links into this build.
set -u
EFT=$1
SRC=$2
# shellcheck source=lib.sh
. "$SRC/tests/e2e/lib.sh"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
  rm -rf "$TMP"
}
trap cleanup EXIT
command -v curl >/dev/null || { echo "skip: curl is not installed"; exit 0; }
if "$EFT" serve --help 2>&1 | grep -q "without libmicrohttpd"; then echo "skip: built without libmicrohttpd"; exit 0; fi

# shellcheck source=serve_lib.sh
. "$SRC/tests/e2e/serve_lib.sh"
# start NAME ARGS...: starts a server on port 0, sets PORT and SPID, waits for /health 200.
start() {
  local name=$1 rc
  shift
  serve_start "$TMP/$name.err" "$@"
  rc=$?
  PIDS+=("$SPID")
  [ $rc -eq 0 ] || { bad "$name: $SERVE_WHY"; return 1; }
}

# req METHOD PATH [BODY] [CURL ARGS...]: prints the body to $TMP/body, returns the status in CODE.
req() {
  local method=$1 path=$2
  shift 2
  local body=${1-}
  [ $# -gt 0 ] && shift
  if [ -n "$body" ]; then
    CODE=$(curl -s -o "$TMP/body" -w '%{http_code}' -X "$method" -H 'Content-Type: application/json' \
      --data-binary "$body" "$@" "http://127.0.0.1:$PORT$path")
  else
    CODE=$(curl -s -o "$TMP/body" -w '%{http_code}' -X "$method" "$@" "http://127.0.0.1:$PORT$path")
  fi
}

# expect_error NAME STATUS METHOD PATH BODY: the status and a well-formed OpenAI error body.
expect_error() {
  local name=$1 want=$2
  shift 2
  req "$@"
  if [ "$CODE" = "$want" ] && python3 -c '
import json, sys
e = json.load(open(sys.argv[1]))["error"]
assert isinstance(e["message"], str) and e["message"] and isinstance(e["type"], str) and "param" in e and "code" in e
' "$TMP/body" 2>/dev/null; then ok "$name -> $want"
  else bad "$name: expected $want with an error body, got $CODE $(head -c 300 "$TMP/body")"; fi
}

# expect_tei NAME STATUS ERROR_TYPE METHOD PATH BODY: TEI's routes answer in TEI's shape,
# {"error": "...", "error_type": "Validation"}, with TEI's status codes.
expect_tei() {
  local name=$1 want=$2 type=$3
  shift 3
  req "$@"
  if [ "$CODE" = "$want" ] && python3 -c '
import json, sys
e = json.load(open(sys.argv[1]))
assert isinstance(e["error"], str) and e["error"] and e["error_type"] == sys.argv[2], e
' "$TMP/body" "$type" 2>/dev/null; then ok "$name -> $want $type"
  else bad "$name: expected $want $type in TEI's shape, got $CODE $(head -c 300 "$TMP/body")"; fi
}

REF=$SRC/tests/fixtures/ref
start enc --model "$SRC/tests/fixtures/models/bert" --rerank-model "$SRC/tests/fixtures/models/bert-cls" \
  --max-body-bytes 65536 --max-inputs 8 || { echo "$pass passed, $fail failed"; exit 1; }
ok "server up on port $PORT, /health 200"
BASE=http://127.0.0.1:$PORT

# ---- embeddings and reranking against sentence-transformers --------------------------------------
python3 - "$BASE" "$REF/bert.safetensors" "$REF/bert-cls.safetensors" <<'PY'
import base64, json, math, struct, sys, urllib.request
base, ref, ref_cls = sys.argv[1:4]
def load(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    hdr = json.loads(raw[8:8 + n]); meta = hdr.pop("__metadata__")
    def tensor(name):
        t = hdr[name]; b, e = t["data_offsets"]
        fmt = {"F32": "f", "I64": "q"}[t["dtype"]]
        return list(struct.unpack("<%d%s" % ((e - b) // struct.calcsize(fmt), fmt), raw[8 + n + b:8 + n + e]))
    return hdr, meta, tensor
def post(path, body):
    r = urllib.request.urlopen(urllib.request.Request(base + path, json.dumps(body).encode(),
                                                      {"Content-Type": "application/json"}))
    return json.loads(r.read())
fails = 0
def check(name, got, want, tol):
    global fails
    err = max(abs(a - b) for a, b in zip(got, want)) if len(got) == len(want) else float("inf")
    if err > tol:
        fails += 1; print("FAIL %s: max abs error %g (%d values, expected %d)" % (name, err, len(got), len(want)))
    return err

hdr, meta, tensor = load(ref)
texts = json.loads(meta["texts"]); tol = json.loads(meta["tolerance"]).get("embedding", 1e-4)
idx = [i for i in range(len(texts)) if "case%d.embedding" % i in hdr]
worst = 0.0
# OpenAI shape, floats, every case in one request; usage holds the real token counts.
r = post("/v1/embeddings", {"input": [texts[i] for i in idx], "model": "bert"})
want_tokens = sum(len(tensor("case%d.input_ids" % i)) for i in idx)
if r["object"] != "list" or [d["index"] for d in r["data"]] != list(range(len(idx))) or "model" not in r:
    fails += 1; print("FAIL openai shape", json.dumps(r)[:300])
if r["usage"] != {"prompt_tokens": want_tokens, "total_tokens": want_tokens}:
    fails += 1; print("FAIL usage", r["usage"], "expected", want_tokens)
for k, i in enumerate(idx):
    worst = max(worst, check("openai case %d" % i, r["data"][k]["embedding"], tensor("case%d.embedding" % i), tol))
# base64 is the little-endian float32 bytes.
r = post("/v1/embeddings", {"input": texts[idx[0]], "encoding_format": "base64"})
b = base64.b64decode(r["data"][0]["embedding"])
worst = max(worst, check("base64", struct.unpack("<%df" % (len(b) // 4), b), tensor("case%d.embedding" % idx[0]), tol))
# Token ids in (a list of lists, and one list): the reference's own ids give the same vectors.
ids = [tensor("case%d.input_ids" % i) for i in idx]
r = post("/v1/embeddings", {"input": ids})
for k, i in enumerate(idx):
    worst = max(worst, check("ids case %d" % i, r["data"][k]["embedding"], tensor("case%d.embedding" % i), tol))
r = post("/v1/embeddings", {"input": ids[0]})
worst = max(worst, check("one id list", r["data"][0]["embedding"], tensor("case%d.embedding" % idx[0]), tol))
if r["usage"]["prompt_tokens"] != len(ids[0]):
    fails += 1; print("FAIL ids usage", r["usage"])
# dimensions: the first values, normalised again (the fixture has a Normalize module).
r = post("/v1/embeddings", {"input": texts[idx[0]], "dimensions": 16})
v = tensor("case%d.embedding" % idx[0])[:16]; nv = math.sqrt(sum(x * x for x in v))
worst = max(worst, check("dimensions 16", r["data"][0]["embedding"], [x / nv for x in v], tol))
# TEI /embed, and a prompt by name.
r = post("/embed", {"inputs": [texts[i] for i in idx]})
for k, i in enumerate(idx): worst = max(worst, check("tei case %d" % i, r[k], tensor("case%d.embedding" % i), tol))
r = post("/embed", {"inputs": texts[idx[0]]})
if len(r) != 1: fails += 1; print("FAIL /embed of one string is not a list of one vector")
q = [i for i in idx if "case%d.query.embedding" % i in hdr]
# sentence-transformers cuts inputs at max_seq_length (one query is over it): ask for the same.
r = post("/embed", {"inputs": [texts[i] for i in q], "prompt_name": "query", "truncate": True})
for k, i in enumerate(q): worst = max(worst, check("prompt query case %d" % i, r[k], tensor("case%d.query.embedding" % i), tol))
print("embeddings: %d cases, max abs error %.2g (tolerance %g)" % (len(idx), worst, tol))

hdr, meta, tensor = load(ref_cls)
pairs = json.loads(meta["texts"]); tol = json.loads(meta["tolerance"]).get("logits", 1e-4)
worst = 0.0
for i, (qq, t) in enumerate(pairs):
    if "case%d.logits" % i not in hdr: continue
    logit = tensor("case%d.logits" % i)[0]
    raw = post("/rerank", {"query": qq, "texts": [t], "raw_scores": True})
    sig = post("/rerank", {"query": qq, "texts": [t, "x"], "return_text": True})
    worst = max(worst, check("rerank raw case %d" % i, [raw[0]["score"]], [logit], tol))
    mine = [d for d in sig if d["index"] == 0][0]
    worst = max(worst, check("rerank sigmoid case %d" % i, [mine["score"]], [1 / (1 + math.exp(-logit))], tol))
    if mine.get("text") != t or sig[0]["score"] < sig[1]["score"]:
        fails += 1; print("FAIL rerank: text or order", sig)
print("rerank: %d pairs, max abs error %.2g (tolerance %g)" % (len(pairs), worst, tol))
sys.exit(1 if fails else 0)
PY
[ $? -eq 0 ] && ok "embeddings (float, base64, ids, dimensions, TEI, prompt_name) and rerank vs reference" \
  || bad "embeddings/rerank vs reference"

# ---- the other routes ----------------------------------------------------------------------------
req POST /tokenize '{"inputs":"Hello, world!"}'
[ "$CODE" = 200 ] && python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["count"]==len(d["tokens"])>2' "$TMP/body" \
  && ok "/tokenize" || bad "/tokenize: $CODE $(head -c 200 "$TMP/body")"
toks=$(python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))["tokens"]))' "$TMP/body" 2>/dev/null)
req POST /detokenize "{\"tokens\":$toks}"
[ "$CODE" = 200 ] && grep -q '"prompt":"hello, world!"' "$TMP/body" && ok "/detokenize round trip" \
  || bad "/detokenize: $CODE $(head -c 200 "$TMP/body")"
req GET /v1/models
[ "$CODE" = 200 ] && grep -q '"object":"list"' "$TMP/body" && grep -q 'bert-cls' "$TMP/body" && ok "/v1/models" \
  || bad "/v1/models: $CODE $(head -c 200 "$TMP/body")"
req GET /info
[ "$CODE" = 200 ] && python3 -c '
import json,sys; d=json.load(open(sys.argv[1]))
assert d["limits"]["max_body_bytes"]==65536 and d["limits"]["max_inputs"]==8
assert {m["kind"] for m in d["models"]}=={"embedding","rerank"}
assert all(m["threads"] >= 1 for m in d["models"])' "$TMP/body" && ok "/info publishes models and limits" \
  || bad "/info: $CODE $(head -c 300 "$TMP/body")"

# ---- bad input: clean 4xx in OpenAI's error shape, never a 500 ---------------------------------
expect_error "malformed JSON" 400 POST /v1/embeddings '{"input": ["a",'
expect_error "not an object" 400 POST /v1/embeddings '["a"]'
expect_error "missing input" 400 POST /v1/embeddings '{"model":"m"}'
expect_error "input of the wrong type" 400 POST /v1/embeddings '{"input": 42}'
expect_error "mixed list" 400 POST /v1/embeddings '{"input": ["a", 3]}'
expect_error "empty list" 400 POST /v1/embeddings '{"input": []}'
expect_error "empty id list" 400 POST /v1/embeddings '{"input": [[]]}'
expect_error "negative token id" 400 POST /v1/embeddings '{"input": [1, -2]}'
expect_error "token id outside the vocabulary" 400 POST /v1/embeddings '{"input": [1, 999999]}'
expect_error "bad encoding_format" 400 POST /v1/embeddings '{"input": "a", "encoding_format": "hex"}'
expect_error "dimensions over D" 400 POST /v1/embeddings '{"input": "a", "dimensions": 100000}'
expect_error "dimensions 0" 400 POST /v1/embeddings '{"input": "a", "dimensions": 0}'
expect_tei "TEI: unknown prompt_name" 422 Validation POST /embed '{"inputs": "a", "prompt_name": "nope"}'
expect_tei "TEI: normalize not a boolean" 422 Validation POST /embed '{"inputs": "a", "normalize": "yes"}'
expect_tei "TEI: bad truncation_direction" 422 Validation POST /embed '{"inputs": "a", "truncate": true, "truncation_direction": "up"}'
expect_tei "TEI: empty body" 422 Validation POST /embed ''
expect_tei "TEI: malformed JSON" 422 Validation POST /embed '{"inputs": ["a",'
expect_tei "TEI: empty inputs" 400 Empty POST /embed '{"inputs": []}'
expect_tei "TEI: too many inputs" 422 Validation POST /embed '{"inputs": ["a","b","c","d","e","f","g","h","i"]}'
expect_tei "TEI: /tokenize without inputs" 422 Validation POST /tokenize '{}'
expect_tei "TEI: wrong method" 405 Validation GET /rerank
expect_error "OpenAI routes keep OpenAI's shape: empty list" 400 POST /v1/embeddings '{"input": []}'
printf '{"input": "caf\xc3\x28 \xff"}' >"$TMP/badutf8"
expect_error "invalid UTF-8" 400 POST /v1/embeddings "@$TMP/badutf8"
expect_error "NUL inside a string" 400 POST /v1/embeddings '{"input": "a\u0000b"}'
long=$(for i in $(seq 200); do printf 'word%d ' "$i"; done)
expect_error "input over the token limit" 422 POST /v1/embeddings "{\"input\": [\"short\", \"$long\"]}"
expect_tei "TEI: input over the token limit" 422 Validation POST /embed "{\"inputs\": \"$long\"}"
req POST /embed "{\"inputs\": \"$long\", \"truncate\": true}"
[ "$CODE" = 200 ] && ok "over the limit with truncate: 200" || bad "truncate: $CODE $(head -c 200 "$TMP/body")"
req POST /embed "{\"inputs\": \"$long\", \"truncate\": true, \"truncation_direction\": \"Left\"}"
[ "$CODE" = 200 ] && ok "truncation_direction Left: 200" || bad "truncate left: $CODE $(head -c 200 "$TMP/body")"
expect_error "too many inputs" 413 POST /v1/embeddings '{"input": ["a","b","c","d","e","f","g","h","i"]}'
expect_tei "TEI: too many rerank texts" 422 Validation POST /rerank '{"query":"q","texts": ["a","b","c","d","e","f","g","h","i"]}'
expect_tei "TEI: rerank without query" 422 Validation POST /rerank '{"texts":["a"]}'
expect_tei "TEI: rerank with empty texts" 400 Empty POST /rerank '{"query":"q","texts":[]}'
head -c 200000 /dev/zero | tr '\0' 'a' >"$TMP/big"
expect_error "body over --max-body-bytes" 413 POST /v1/embeddings "@$TMP/big"
# Chunked upload (no Content-Length): the cap still holds while reading.
CODE=$(curl -s -o "$TMP/body" -w '%{http_code}' -H 'Transfer-Encoding: chunked' --data-binary "@$TMP/big" "$BASE/embed")
[ "$CODE" = 413 ] && grep -q '"error_type":"Validation"' "$TMP/body" && ok "chunked body over the limit -> 413 (TEI shape)" \
  || bad "chunked over the limit: $CODE $(head -c 200 "$TMP/body")"
expect_error "unknown route" 404 GET /v2/nothing
expect_error "wrong method" 405 GET /v1/embeddings
expect_error "wrong method on a GET route" 405 POST /v1/models '{}'
expect_error "completions without a generation model" 400 POST /v1/completions '{"prompt":"x"}'
# A request trickled in slowly is still read whole.
(printf 'POST /embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 16\r\nConnection: close\r\n\r\n'
 for ch in '{' '"' 'i' 'n' 'p' 'u' 't' 's' '"' ':' '"' 'a' 'b' 'c' '"' '}'; do printf '%s' "$ch"; sleep 0.05; done) |
  python3 -c '
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
data = sys.stdin.buffer.read()
for b in data: s.send(bytes([b]))
out = b""
while True:
    c = s.recv(65536)
    if not c: break
    out += c
sys.exit(0 if out.startswith(b"HTTP/1.1 200") and b"[[" in out else 1)' "$PORT" && ok "request trickled byte by byte" || bad "trickled request"
# Connections opened and dropped, with and without half a request.
python3 - "$PORT" <<'PY' && ok "1,000 connections opened and dropped" || bad "dropped connections"
import socket, sys
for i in range(1000):
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
    if i % 2: s.send(b"POST /embed HTTP/1.1\r\nContent-Length: 100\r\n\r\n{\"inp")
    s.close()
PY
req GET /health
[ "$CODE" = 200 ] && ok "still healthy after bad input" || bad "health after bad input: $CODE"

# Memory stays flat: RSS after 1,500 more requests (good and bad) is within 8 MB of RSS after the
# first 300. (Sanitizer builds keep freed memory in quarantine: start() makes that small.)
rss() { awk '/^VmRSS/{print $2}' "/proc/$SPID/status"; }
storm() {
  python3 - "$PORT" "$1" <<'PY'
import http.client, json, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]))
bodies = [("/v1/embeddings", {"input": ["memory check one", "two"]}), ("/embed", {"inputs": "three"}),
          ("/v1/embeddings", {"input": 5}), ("/rerank", {"query": "q", "texts": ["a", "b"]}), ("/embed", "{bad json")]
for i in range(int(sys.argv[2])):
    path, body = bodies[i % len(bodies)]
    c.request("POST", path, body if isinstance(body, str) else json.dumps(body), {"Content-Type": "application/json"})
    r = c.getresponse(); r.read()
    assert r.status in (200, 400, 422), r.status  # TEI's /embed answers bad JSON with 422
PY
}
storm 300 && r1=$(rss) && storm 1500 && r2=$(rss)
if [ -n "${r1:-}" ] && [ -n "${r2:-}" ] && [ $((r2 - r1)) -lt 8192 ]; then ok "memory flat: RSS ${r1} kB -> ${r2} kB over 1,500 requests"
else bad "memory: RSS ${r1:-?} kB -> ${r2:-?} kB"; fi

# ---- concurrency: 20 clients at once, each answered with its own vector ------------------------
python3 - "$BASE" <<'PY' && ok "20 concurrent clients answered correctly" || bad "concurrent clients"
import json, sys, threading, urllib.request
base = sys.argv[1]
def post(body):
    r = urllib.request.urlopen(urllib.request.Request(base + "/v1/embeddings", json.dumps(body).encode()))
    return json.loads(r.read())
texts = ["sentence number %d about %s" % (i, "cats dogs birds fish"[i % 10:]) for i in range(20)]
solo = [post({"input": t})["data"][0]["embedding"] for t in texts]
got = [None] * 20
def run(i):
    got[i] = post({"input": [texts[i], texts[(i + 1) % 20]]})["data"]
ts = [threading.Thread(target=run, args=(i,)) for i in range(20)]
[t.start() for t in ts]; [t.join() for t in ts]
bad = 0
for i in range(20):
    for k, j in enumerate((i, (i + 1) % 20)):
        if max(abs(a - b) for a, b in zip(got[i][k]["embedding"], solo[j])) > 1e-5: bad += 1
print("concurrent: %d mismatches" % bad)
sys.exit(1 if bad else 0)
PY
req GET /metrics
[ "$CODE" = 200 ] && grep -q 'eft_requests_total{route="/v1/embeddings",status="200"}' "$TMP/body" \
  && grep -q 'eft_requests_total{route="/v1/embeddings",status="400"}' "$TMP/body" \
  && grep -q '^eft_embed_batch_requests_count' "$TMP/body" && grep -q '^eft_queue_depth' "$TMP/body" \
  && ok "/metrics counts requests by route and status" || bad "/metrics: $CODE $(head -c 300 "$TMP/body")"
merged=$(awk '/^eft_embed_batch_requests_bucket\{le="1"\}/{one=$2} /^eft_embed_batch_requests_count/{all=$2} END{print all-one}' "$TMP/body")
echo "     embedding calls that merged several requests: ${merged:-?}"

kill -TERM "$SPID"
wait "$SPID"
rc=$?
[ $rc -eq 0 ] && ok "SIGTERM exits 0" || bad "SIGTERM exit status $rc: $(tail -3 "$TMP/enc.err")"

# ---- API keys ------------------------------------------------------------------------------------
start keys --model "$SRC/tests/fixtures/models/bert" --api-key sekrit --api-key other
expect_tei "no API key" 401 Unauthorized POST /embed '{"inputs":"a"}'
expect_tei "wrong API key" 401 Unauthorized POST /embed '{"inputs":"a"}' -H 'Authorization: Bearer sekri'
expect_error "no API key (OpenAI route)" 401 POST /v1/embeddings '{"input":"a"}'
expect_error "longer wrong API key" 401 GET /v1/models '' -H 'Authorization: Bearer sekrit2'
req POST /embed '{"inputs":"a"}' -H 'Authorization: Bearer sekrit'
[ "$CODE" = 200 ] && ok "right API key" || bad "right API key: $CODE"
req GET /v1/models '' -H 'Authorization: Bearer other'
[ "$CODE" = 200 ] && ok "second API key" || bad "second API key: $CODE"
req GET /health
[ "$CODE" = 200 ] && ok "/health open without a key" || bad "/health with keys: $CODE"
req OPTIONS /embed '' -H 'Authorization: Bearer sekrit'
[ "$CODE" = 405 ] && ok "no CORS preflight unless --cors ($CODE)" || bad "OPTIONS without --cors: $CODE"
kill -INT "$SPID"
wait "$SPID"
rc=$?
[ $rc -eq 0 ] && ok "SIGINT exits 0" || bad "SIGINT exit status $rc"
start cors --model "$SRC/tests/fixtures/models/bert" --api-key sekrit --cors
CODE=$(curl -s -o /dev/null -D "$TMP/hdr" -w '%{http_code}' -X OPTIONS "http://127.0.0.1:$PORT/embed" \
  -H 'Origin: http://example.com' -H 'Access-Control-Request-Method: POST')
[ "$CODE" = 204 ] && grep -qi '^access-control-allow-origin: \*' "$TMP/hdr" && ok "--cors: preflight 204 without a key" \
  || bad "--cors preflight: $CODE"
req POST /embed '{"inputs":"a"}' -H 'Authorization: Bearer sekrit' -D "$TMP/hdr"
[ "$CODE" = 200 ] && grep -qi '^access-control-allow-origin' "$TMP/hdr" && ok "--cors: header on answers" \
  || bad "--cors answer: $CODE"
kill -INT "$SPID"
wait "$SPID"
rc=$?
[ $rc -eq 0 ] && ok "SIGINT exits 0" || bad "SIGINT exit status $rc"

# ---- generation (when the generator is in this build) -------------------------------------------
LLAMA=$SRC/tests/fixtures/models/llama
if start gen --model "$LLAMA" --ctx-len 128 --full-batch-size 2; then
  BASE=http://127.0.0.1:$PORT
  req POST /v1/completions '{"prompt":"Hello world","max_tokens":5,"temperature":0}'
  [ "$CODE" = 200 ] && python3 -c '
import json,sys; d=json.load(open(sys.argv[1])); c=d["choices"][0]
assert d["object"]=="text_completion" and c["finish_reason"] in ("stop","length") and isinstance(c["text"],str)
u=d["usage"]; assert u["completion_tokens"]<=5 and u["total_tokens"]==u["prompt_tokens"]+u["completion_tokens"]' "$TMP/body" \
    && ok "/v1/completions" || bad "/v1/completions: $CODE $(head -c 300 "$TMP/body")"
  req POST /v1/chat/completions '{"messages":[{"role":"user","content":"Hi"}],"max_tokens":4,"temperature":0}'
  [ "$CODE" = 200 ] && python3 -c '
import json,sys; d=json.load(open(sys.argv[1])); c=d["choices"][0]
assert d["object"]=="chat.completion" and c["message"]["role"]=="assistant" and c["finish_reason"] in ("stop","length")' "$TMP/body" \
    && ok "/v1/chat/completions" || bad "/v1/chat/completions: $CODE $(head -c 300 "$TMP/body")"
  curl -s -N -o "$TMP/sse" -D "$TMP/hdr" "$BASE/v1/chat/completions" -H 'Content-Type: application/json' \
    -d '{"messages":[{"role":"user","content":"Hi"}],"max_tokens":4,"temperature":0,"stream":true,"stream_options":{"include_usage":true}}'
  python3 - "$TMP/sse" "$TMP/hdr" <<'PY' && ok "streamed chat: SSE framing, role, finish_reason, usage, [DONE]" || bad "streamed chat"
import json, sys
body = open(sys.argv[1]).read(); hdr = open(sys.argv[2]).read().lower()
assert "content-type: text/event-stream" in hdr, hdr
events = body.split("\n\n")
assert events[-1] == "" and events[-2] == "data: [DONE]", events[-3:]
chunks = [json.loads(e[6:]) for e in events[:-2]]
assert all(e.startswith("data: ") for e in events[:-1])
assert chunks[0]["choices"][0]["delta"].get("role") == "assistant"
fin = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
assert len(fin) == 1 and fin[0]["choices"][0]["finish_reason"] in ("stop", "length")
assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] <= 4
assert all(c["object"] == "chat.completion.chunk" for c in chunks)
PY
  # Greedy text equals transformers' greedy tokens (tests/fixtures/ref/llama.safetensors), decoded,
  # with several clients at once so sequences share the decode slots.
  python3 - "$BASE" "$REF/llama.safetensors" <<'PY' && ok "greedy completions equal transformers' tokens (4 concurrent)" || bad "greedy completions vs reference"
import json, struct, sys, threading, urllib.request
base, ref = sys.argv[1:3]
raw = open(ref, "rb").read(); n = struct.unpack("<Q", raw[:8])[0]; hdr = json.loads(raw[8:8 + n]); hdr.pop("__metadata__")
def ids(name):
    t = hdr[name]; b, e = t["data_offsets"]
    return list(struct.unpack("<%dq" % ((e - b) // 8), raw[8 + n + b:8 + n + e]))
def post(path, body):
    r = urllib.request.urlopen(urllib.request.Request(base + path, json.dumps(body).encode()))
    return json.loads(r.read())
cases = [i for i in range(8) if "prompt%d.greedy" % i in hdr]
got = {}
def run(i):
    got[i] = post("/v1/completions", {"prompt": ids("prompt%d.input_ids" % i), "max_tokens": 32, "temperature": 0})
ts = [threading.Thread(target=run, args=(i,)) for i in cases]
[t.start() for t in ts]; [t.join() for t in ts]
bad = 0
for i in cases:
    c = got[i]["choices"][0]; k = got[i]["usage"]["completion_tokens"]; g = ids("prompt%d.greedy" % i)
    # The text ends before an EOS token, which the count includes.
    want = {post("/detokenize", {"tokens": g[:m]})["prompt"] for m in (k, k - 1) if m >= 0}
    if c["text"] not in want:
        bad += 1; print("prompt %d: got %r, expected %r" % (i, c["text"], sorted(want)))
print("greedy: %d prompts, %d mismatches" % (len(cases), bad))
sys.exit(1 if bad or not cases else 0)
PY
  req POST /v1/completions '{"prompt":"Hello","max_tokens":100000}'
  [ "$CODE" = 400 ] && ok "max_tokens beyond the context -> 400" || bad "max_tokens beyond context: $CODE"
  expect_error "n > 1" 400 POST /v1/completions '{"prompt":"x","n":2}'
  expect_error "chat without messages" 400 POST /v1/chat/completions '{"model":"m"}'
  expect_error "temperature out of range" 400 POST /v1/completions '{"prompt":"x","temperature":9}'
  # A client that leaves mid-stream frees its slot: later requests still run.
  python3 - "$PORT" <<'PY' && ok "client gone mid-stream: the server carries on" || bad "client gone mid-stream"
import json, socket, sys
body = json.dumps({"prompt": "Hello world", "max_tokens": 60, "stream": True}).encode()
for _ in range(3):
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
    s.send(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    s.recv(200)
    s.close()
PY
  req POST /v1/completions '{"prompt":"Hello world","max_tokens":3}'
  [ "$CODE" = 200 ] && ok "generation after dropped streams" || bad "after dropped streams: $CODE"
  # (Whether those streams ended "cancelled" is checked below with generations long enough to
  # outlast the hang-up: this model writes 60 tokens in a few milliseconds.)
  kill -TERM "$SPID"
  wait "$SPID"
fi

# ---- a compiled program's plan: its num_cores and context are the server's defaults -----------
if "$EFT" compile "$LLAMA" --ctx-len 96 --num-cores 3 -o "$TMP/prog" >/dev/null 2>"$TMP/compile.err" &&
  start prog --model "$TMP/prog"; then
  req GET /info
  [ "$CODE" = 200 ] && python3 -c '
import json,sys; d=json.load(open(sys.argv[1])); m=d["models"][0]
assert m["kind"]=="generation" and m["threads"]==3 and m["ctx_len"]==96, m' "$TMP/body" \
    && ok "serve PROGRAM: the program's num_cores and ctx_len" || bad "serve PROGRAM /info: $(head -c 300 "$TMP/body")"
  kill -TERM "$SPID"
  wait "$SPID"
else
  bad "compile or serve a program: $(cat "$TMP/compile.err" "$TMP/prog.err" 2>/dev/null | head -c 300)"
fi

# ---- queue full: 429 while the only place is taken -------------------------------------------
# The first stream must still be generating when the second request comes: this model writes
# 100 tokens in about 5 ms, so it asks for 8,000 (about 0.8 s).
if start queue --model "$LLAMA" --ctx-len 8192 --max-queue 1; then
  python3 - "$PORT" <<'PY' && ok "queue full -> 429 with an error body; the first stream completes" || bad "queue full"
import json, socket, sys, urllib.error, urllib.request
port = int(sys.argv[1])
body = json.dumps({"prompt": "Hello world", "max_tokens": 8000, "stream": True, "temperature": 0,
                   "ignore_eos": True}).encode()
s = socket.create_connection(("127.0.0.1", port))
s.send(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\n"
       b"Content-Length: %d\r\n\r\n" % len(body) + body)
first = s.recv(4096)
try:
    urllib.request.urlopen(urllib.request.Request("http://127.0.0.1:%d/v1/completions" % port,
                                                  json.dumps({"prompt": "x", "max_tokens": 2}).encode()))
    print("second request was not refused"); sys.exit(1)
except urllib.error.HTTPError as e:
    err = json.loads(e.read())["error"]
    if e.code != 429 or not err["message"]: print("got", e.code, err); sys.exit(1)
rest = first
while True:
    c = s.recv(65536)
    if not c: break
    rest += c
sys.exit(0 if b"data: [DONE]" in rest else 1)
PY
  kill -TERM "$SPID"
  wait "$SPID"
fi

# ---- clients that hang up: their sequences cancelled, their slot freed --------------------------
# A plain completion waits suspended (MHD does not poll it), so the worker watches the socket; a
# stream's hang-up shows when MHD's next write fails. With one slot, each sequence must end
# "cancelled" rather than run its thousands of tokens to "length", and the next request is served.
if start hangup --model "$LLAMA" --ctx-len 8192 --full-batch-size 1; then
  python3 - "$PORT" <<'PY' && ok "plain completion and streams, client hung up: cancelled, next request served" || bad "hang-ups"
import json, re, socket, struct, sys, time, urllib.request
port = int(sys.argv[1])
base = "http://127.0.0.1:%d" % port
def finishes():
    m = urllib.request.urlopen(base + "/metrics").read().decode()
    return {k: int(float(v)) for k, v in re.findall(r'^eft_generations_total\{finish_reason="(\w+)"\} (\S+)', m, re.M)}
body = json.dumps({"prompt": "Hello world", "max_tokens": 2000, "ignore_eos": True, "temperature": 0}).encode()
s = socket.create_connection(("127.0.0.1", port))
s.send(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
time.sleep(0.05)
s.close()
for _ in range(600):
    f = finishes()
    if sum(f.values()): break
    time.sleep(0.05)
print("finishes after the hang-up:", f)
if f.get("cancelled", 0) != 1 or f.get("length", 0) != 0: sys.exit(1)
# Streams whose clients leave after the first event: each must end "cancelled", not run its
# 8,000 tokens (about half a second on this model) to "length". SO_LINGER 0 makes the close an
# abortive one, so the server's next write fails at once.
body = json.dumps({"prompt": "Hello world", "max_tokens": 8000, "ignore_eos": True, "stream": True}).encode()
for _ in range(3):
    s = socket.create_connection(("127.0.0.1", port))
    s.send(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    s.recv(200)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
for _ in range(600):
    f = finishes()
    if sum(f.values()) >= 4: break
    time.sleep(0.05)
print("finishes after three dropped streams:", f)
if f.get("cancelled", 0) != 4 or f.get("length", 0) != 0: sys.exit(1)
r = json.loads(urllib.request.urlopen(urllib.request.Request(base + "/v1/completions",
        json.dumps({"prompt": "Hi", "max_tokens": 3}).encode())).read())
sys.exit(0 if r["choices"][0]["finish_reason"] in ("stop", "length") else 1)
PY
  BASE=http://127.0.0.1:$PORT
  # SIGTERM during a stream: the stream still ends with [DONE], new connections are refused, exit 0.
  # 8,000 tokens take this model about 0.8 s, so the signal lands mid-stream.
  curl -s -N -o "$TMP/sse2" "$BASE/v1/completions" -H 'Content-Type: application/json' \
    -d '{"prompt":"Hello","max_tokens":8000,"ignore_eos":true,"stream":true,"temperature":0}' &
  cpid=$!
  # SIGTERM once the stream has begun: a fixed sleep raced curl's connect on a loaded machine,
  # and a signal before the request arrives tests nothing but a refused connection.
  for _ in $(seq 500); do [ -s "$TMP/sse2" ] && break; sleep 0.01; done
  kill -TERM "$SPID"
  wait "$cpid"
  sleep 0.2
  refused=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$BASE/health")
  wait "$SPID"
  rc=$?
  # The stream runs to its 8,000 tokens ("length"), not cut off at the signal.
  [ $rc -eq 0 ] && tail -c 20 "$TMP/sse2" | grep -q 'data: \[DONE\]' && [ "$refused" = 000 ] &&
    grep -q '"finish_reason":"length"' "$TMP/sse2" \
    && ok "SIGTERM mid-stream: stream finished, new connections refused, exit 0" \
    || bad "SIGTERM mid-stream: exit $rc, refused=$refused, tail $(tail -c 80 "$TMP/sse2")"
fi

# A model that cannot be loaded: a message naming it and exit 1, not a server without a model.
timeout 60 "$EFT" serve --port 0 --model "$TMP/no-such-model" 2>"$TMP/nomodel.err"
rc=$?
[ $rc -eq 1 ] && grep -q "no-such-model" "$TMP/nomodel.err" && ok "unloadable model: exit 1 with its name" \
  || bad "unloadable model: exit $rc $(head -c 200 "$TMP/nomodel.err")"

e2e_finish
