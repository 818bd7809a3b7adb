#!/usr/bin/env bash
# test_serve_openai.sh EFT SOURCE_DIR — `eft serve` driven by the official `openai` Python client
# (pinned, installed into the repo's .venv when missing): embeddings (the client asks for base64
# and decodes it) against sentence-transformers' vectors, greedy completions against
# transformers' tokens, streamed chat equal to the plain answer, and the client's own exception
# types for 401 and 400. Skips, saying so, when the client cannot be installed.
set -u
EFT=$1
SRC=$2
TMP=$(mktemp -d)
SPID=
cleanup() {
  [ -n "$SPID" ] && kill -9 "$SPID" 2>/dev/null
  rm -rf "$TMP"
}
trap cleanup EXIT
if "$EFT" serve --help 2>&1 | grep -q "without libmicrohttpd"; then echo "skip: built without libmicrohttpd"; exit 0; fi
PY=$SRC/.venv/bin/python
[ -x "$PY" ] || PY=python3
OPENAI_PIN=openai==3.51.0
if ! "$PY" -c 'import openai' 2>/dev/null; then
  echo "installing $OPENAI_PIN into $("$PY" -c 'import sys; print(sys.prefix)')"
  timeout 300 "$PY" -m pip install -q "$OPENAI_PIN" >"$TMP/pip.log" 2>&1
  if ! "$PY" -c 'import openai' 2>/dev/null; then
    echo "skip: the openai client is not installable here: $(tail -2 "$TMP/pip.log")"
    exit 0
  fi
fi

# shellcheck source=serve_lib.sh
. "$SRC/tests/e2e/serve_lib.sh"
if ! serve_start "$TMP/err" --model "$SRC/tests/fixtures/models/llama" --ctx-len 128 --full-batch-size 2 \
  --embedding-model "$SRC/tests/fixtures/models/bert" --api-key sk-test; then
  echo "FAIL server did not start: $SERVE_WHY"
  exit 1
fi

"$PY" - "$PORT" "$SRC/tests/fixtures/ref" <<'PY'
import json, math, struct, sys
import openai
port, ref = sys.argv[1:3]
passed = failed = 0
def ok(name): 
    global passed; passed += 1; print("ok  ", name)
def bad(name):
    global failed; failed += 1; print("FAIL", name)
def load(path):
    raw = open(path, "rb").read(); n = struct.unpack("<Q", raw[:8])[0]
    hdr = json.loads(raw[8:8 + n]); meta = hdr.pop("__metadata__")
    def tensor(name):
        t = hdr[name]; b, e = t["data_offsets"]; f = {"F32": "f", "I64": "q"}[t["dtype"]]
        return list(struct.unpack("<%d%s" % ((e - b) // struct.calcsize(f), f), raw[8 + n + b:8 + n + e]))
    return hdr, meta, tensor
client = openai.OpenAI(base_url="http://127.0.0.1:%s/v1" % port, api_key="sk-test", max_retries=0)

hdr, meta, tensor = load(ref + "/bert.safetensors")
texts = json.loads(meta["texts"])
idx = [i for i in range(len(texts)) if "case%d.embedding" % i in hdr]
r = client.embeddings.create(model="bert", input=[texts[i] for i in idx])
err = max(max(abs(a - b) for a, b in zip(r.data[k].embedding, tensor("case%d.embedding" % i))) for k, i in enumerate(idx))
want_tokens = sum(len(tensor("case%d.input_ids" % i)) for i in idx)
(ok if err <= 1e-4 and r.usage.prompt_tokens == want_tokens else bad)(
    "embeddings.create: max abs error %.2g, %d prompt tokens (expected %d)" % (err, r.usage.prompt_tokens, want_tokens))
r = client.embeddings.create(model="bert", input=texts[idx[0]], dimensions=8, encoding_format="float")
(ok if len(r.data[0].embedding) == 8 and abs(math.fsum(x * x for x in r.data[0].embedding) - 1) < 1e-4 else bad)(
    "embeddings.create dimensions=8")

hdr, meta, tensor = load(ref + "/llama.safetensors")
i = 0
g = tensor("prompt%d.greedy" % i)
r = client.completions.create(model="llama", prompt=tensor("prompt%d.input_ids" % i), max_tokens=32, temperature=0)
tok = client.with_options(base_url="http://127.0.0.1:%s" % port)
want = {tok.post("/detokenize", body={"tokens": g[:m]}, cast_to=object)["prompt"]
        for m in (r.usage.completion_tokens, r.usage.completion_tokens - 1)}
(ok if r.choices[0].text in want else bad)("completions.create greedy equals transformers: %r" % r.choices[0].text[:40])

msgs = [{"role": "user", "content": "What is 2+2?"}]
plain = client.chat.completions.create(model="llama", messages=msgs, max_tokens=12, temperature=0)
parts, usage, finish = [], None, None
for chunk in client.chat.completions.create(model="llama", messages=msgs, max_tokens=12, temperature=0, stream=True,
                                            stream_options={"include_usage": True}):
    if chunk.usage: usage = chunk.usage
    for c in chunk.choices:
        if c.delta.content: parts.append(c.delta.content)
        if c.finish_reason: finish = c.finish_reason
(ok if "".join(parts) == plain.choices[0].message.content and finish == plain.choices[0].finish_reason
    and usage and usage.completion_tokens == plain.usage.completion_tokens else bad)(
    "streamed chat equals the plain answer (%r, %s)" % ("".join(parts)[:40], finish))

try:
    openai.OpenAI(base_url="http://127.0.0.1:%s/v1" % port, api_key="wrong", max_retries=0).models.list()
    bad("wrong key accepted")
except openai.AuthenticationError:
    ok("wrong key -> AuthenticationError")
try:
    client.embeddings.create(model="bert", input=[])
    bad("empty input accepted")
except openai.BadRequestError as e:
    ok("empty input -> BadRequestError (%s)" % e.body.get("message", "")[:40] if isinstance(e.body, dict) else "empty input -> BadRequestError")
ids = [m.id for m in client.models.list().data]
(ok if len(ids) == 2 else bad)("models.list: %s" % ids)
print("%d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
PY
rc=$?
kill -TERM "$SPID"
wait "$SPID"
src=$?
SPID=
[ $src -eq 0 ] || { echo "FAIL server exit status $src"; rc=1; }
exit $rc
