#!/usr/bin/env bash
# test_embed.sh EFT SOURCE_DIR — `eft embed` end to end (tokenizer + encoder + pooling + Normalize)
# against sentence-transformers' embeddings stored in tests/fixtures/ref (tolerance from each
# file's metadata), and its length contract: over the limit is an error naming both lengths
# unless --truncate is given. Also the output formats (JSON lines, --npy), inputs from --file and
# stdin, --dimensions, --normalize/--no-normalize, --prompt-name, --token-embeddings and --seq-len
# (bucketing gives the same vectors; lists that cannot be planned are refused).
set -u
EFT=$1
SRC=$2
# shellcheck source=lib.sh
. "$SRC/tests/e2e/lib.sh"
export EFT_CACHE_DIR=$TMP/cache # compiled programs go to a scratch cache, not the user's

# compare NAME MODEL REF [KEY [EFT-OPTIONS...]]: embeds every case text of REF and compares with
# case{i}.KEY (default embedding).
compare() {
  local name=$1 model=$2 ref=$3 key=${4:-embedding}
  shift 4 2>/dev/null || shift 3
  python3 - "$EFT" "$model" "$ref" "$key" "$@" <<'PY'
import json, struct, subprocess, sys
eft, model, ref, key = sys.argv[1:5]
opts = sys.argv[5:]
raw = open(ref, "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
hdr = json.loads(raw[8:8 + n])
meta = hdr.pop("__metadata__")
texts = json.loads(meta["texts"])
tol = json.loads(meta["tolerance"]).get("embedding", 1e-4)
def tensor(name):
    t = hdr[name]; b, e = t["data_offsets"]
    return struct.unpack("<%df" % ((e - b) // 4), raw[8 + n + b:8 + n + e])
idx = [i for i in range(len(texts)) if "case%d.%s" % (i, key) in hdr]
out = subprocess.run([eft, "embed", model] + opts + ["--"] + [texts[i] for i in idx], capture_output=True, text=True)
if out.returncode != 0:
    print("eft embed failed:", out.stderr.strip()); sys.exit(1)
got = [json.loads(l) for l in out.stdout.splitlines()]
if len(got) != len(idx):
    print("%d lines for %d texts" % (len(got), len(idx))); sys.exit(1)
worst = 0.0
for k, i in enumerate(idx):
    want = tensor("case%d.%s" % (i, key))
    if len(got[k]) != len(want):
        print("case %d: %d dims, expected %d" % (i, len(got[k]), len(want))); sys.exit(1)
    worst = max(worst, max(abs(a - b) for a, b in zip(got[k], want)))
print("%d texts, max abs error %.2g (tolerance %g)" % (len(idx), worst, tol))
sys.exit(0 if worst <= tol else 1)
PY
  local rc=$?
  [ $rc -eq 0 ] && ok "$name" || bad "$name"
}

for m in bert roberta xlm-roberta mpnet; do
  compare "fixture $m vs sentence-transformers" "$SRC/tests/fixtures/models/$m" "$SRC/tests/fixtures/ref/$m.safetensors"
  compare "fixture $m --seq-len 8,16,32,64 --batch 2" "$SRC/tests/fixtures/models/$m" "$SRC/tests/fixtures/ref/$m.safetensors" \
    embedding --seq-len 8,16,32,64 --batch 2
  compare "fixture $m --prompt-name query" "$SRC/tests/fixtures/models/$m" "$SRC/tests/fixtures/ref/$m.safetensors" \
    query.embedding --prompt-name query --truncate right
done
BERT=$SRC/tests/fixtures/models/bert
# bert pools mean + Normalize: --no-normalize gives the plain mean.
compare "--no-normalize (bert: pooled mean)" "$BERT" "$SRC/tests/fixtures/ref/bert.safetensors" pooled.mean --no-normalize

# Formats and sources: JSON lines from arguments, --file and stdin, and --npy, all the same vectors.
printf 'Hello, world!\nA second line\n\nafter an empty line\n' >"$TMP/in.txt"
"$EFT" embed "$BERT" -- "Hello, world!" "A second line" "" "after an empty line" >"$TMP/args.jsonl" 2>"$TMP/err" &&
  "$EFT" embed "$BERT" --file "$TMP/in.txt" >"$TMP/file.jsonl" 2>>"$TMP/err" &&
  "$EFT" embed "$BERT" <"$TMP/in.txt" >"$TMP/stdin.jsonl" 2>>"$TMP/err" &&
  "$EFT" embed "$BERT" --file "$TMP/in.txt" --npy "$TMP/out.npy" >"$TMP/npy.stdout" 2>>"$TMP/err" &&
  python3 - "$TMP" <<'PY'
import json, struct, sys
d = sys.argv[1]
rows = [[json.loads(l) for l in open("%s/%s.jsonl" % (d, n))] for n in ("args", "file", "stdin")]
assert len(rows[0]) == 4 and all(len(r) == 64 for r in rows[0]), "4 lines of 64 values expected"
assert rows[0] == rows[1] == rows[2], "arguments, --file and stdin differ"
raw = open(d + "/out.npy", "rb").read()
assert raw[:8] == b"\x93NUMPY\x01\x00", "npy magic/version"
hl = struct.unpack("<H", raw[8:10])[0]
assert (10 + hl) % 64 == 0 and raw[10 + hl - 1:10 + hl] == b"\n", "npy header padding"
import ast
h = ast.literal_eval(raw[10:10 + hl].decode("latin1"))
assert h == {"descr": "<f4", "fortran_order": False, "shape": (4, 64)}, h
assert len(raw) == 10 + hl + 4 * 256, "npy data size"
vals = struct.unpack("<256f", raw[10 + hl:])
for i in range(4):
    for k in range(64):
        # %.9g round-trips float32: the JSON value rounded to float32 is the stored bits.
        assert vals[i * 64 + k] == struct.unpack("<f", struct.pack("<f", rows[0][i][k]))[0], (i, k)
assert open(d + "/npy.stdout").read() == ""
PY
[ $? -eq 0 ] && ok "JSON lines from arguments, --file and stdin; --npy float32 [4, 64]" || bad "formats: $(head -c 300 "$TMP/err")"

# --dimensions: a Matryoshka cut, normalised again (bert normalises), or left as cut with --no-normalize.
"$EFT" embed "$BERT" --dimensions 16 "Hello, world!" >"$TMP/d16" 2>"$TMP/err" &&
  "$EFT" embed "$BERT" --dimensions 16 --no-normalize "Hello, world!" >"$TMP/d16raw" 2>>"$TMP/err" &&
  "$EFT" embed "$BERT" --no-normalize "Hello, world!" >"$TMP/full_raw" 2>>"$TMP/err" &&
  python3 - "$TMP" <<'PY'
import json, math, sys
d = sys.argv[1]
a = json.loads(open(d + "/d16").read()); b = json.loads(open(d + "/d16raw").read())
full = json.loads(open(d + "/full_raw").read())
assert len(a) == 16 and len(b) == 16 and len(full) == 64
assert abs(math.sqrt(sum(x * x for x in a)) - 1) < 1e-5, "not unit length"
assert b == full[:16], "--no-normalize cut is not the first 16 values"
n = math.sqrt(sum(x * x for x in b))
assert max(abs(x / n - y) for x, y in zip(b, a)) < 1e-6
PY
[ $? -eq 0 ] && ok "--dimensions 16 (normalised again; raw with --no-normalize)" || bad "--dimensions: $(head -c 300 "$TMP/err")"
"$EFT" embed "$BERT" --dimensions 65 "x" >/dev/null 2>"$TMP/err"
[ $? -eq 1 ] && grep -q "dimensions 65" "$TMP/err" && ok "--dimensions over D refused" || bad "--dimensions 65: $(head -c 200 "$TMP/err")"

# --seq-len: over the longest compiled length is refused naming both lengths; bad lists refused.
blong=$(for i in $(seq 100); do printf 'word%d ' "$i"; done)
"$EFT" embed "$BERT" --seq-len 16,32 "short" "$blong" >/dev/null 2>"$TMP/err"
rc=$?
if [ $rc -eq 1 ] && grep -q "input 1 has" "$TMP/err" && grep -q "limit of 32" "$TMP/err" && grep -q "model takes 64" "$TMP/err"; then
  ok "--seq-len 16,32: over 32 refused, naming both lengths"
else bad "--seq-len over the limit: rc=$rc $(head -c 300 "$TMP/err")"; fi
"$EFT" embed "$BERT" --seq-len 16,32 --truncate right "$blong" >"$TMP/out" 2>"$TMP/err" && [ "$(wc -l <"$TMP/out")" -eq 1 ] &&
  ok "--seq-len 16,32 --truncate right" || bad "--seq-len --truncate: $(head -c 300 "$TMP/err")"
for spec in 32,16 0,16 16,128 16,,32 abc; do
  "$EFT" embed "$BERT" --seq-len $spec "x" >/dev/null 2>"$TMP/err"
  rc=$?
  [ $rc -eq 1 ] && [ -s "$TMP/err" ] && ok "--seq-len $spec refused: $(head -c 120 "$TMP/err")" || bad "--seq-len $spec: rc=$rc"
done
MINILM=$SRC/models/all-MiniLM-L6-v2
if [ -d "$MINILM" ]; then
  compare "all-MiniLM-L6-v2 vs sentence-transformers" "$MINILM" "$SRC/tests/fixtures/ref/all-MiniLM-L6-v2.safetensors"
  long=$(for i in $(seq 400); do printf 'word%d ' "$i"; done)
  compare "all-MiniLM-L6-v2 --seq-len 16,32,64,128,256" "$MINILM" "$SRC/tests/fixtures/ref/all-MiniLM-L6-v2.safetensors" \
    embedding --seq-len 16,32,64,128,256 --batch 4
  "$EFT" embed "$MINILM" "short" "$long" >/dev/null 2>"$TMP/err"
  rc=$?
  if [ $rc -eq 1 ] && grep -q "input 1 has" "$TMP/err" && grep -q "limit of 256" "$TMP/err"; then ok "over the limit is refused, naming both lengths"
  else bad "over the limit: rc=$rc $(head -c 300 "$TMP/err")"; fi
  for side in right left; do
    if "$EFT" embed "$MINILM" --truncate $side "$long" >"$TMP/out" 2>"$TMP/err" && grep -q '^\[' "$TMP/out"; then ok "--truncate $side"
    else bad "--truncate $side: $(head -c 300 "$TMP/err")"; fi
  done
  printf 'one\ntwo\n' | "$EFT" embed "$MINILM" >"$TMP/out" 2>"$TMP/err"
  [ "$(grep -c '^ \?\[' "$TMP/out")" -eq 2 ] && ok "stdin lines" || bad "stdin lines: $(head -c 200 "$TMP/out") $(head -c 200 "$TMP/err")"
else
  echo "skip all-MiniLM-L6-v2 (not fetched)"
fi
# --token-embeddings: every case's last hidden state ([T, C], no pooling) against transformers'.
for m in bert mpnet; do
  python3 - "$EFT" "$SRC/tests/fixtures/models/$m" "$SRC/tests/fixtures/ref/$m.safetensors" <<'PY' \
    && ok "--token-embeddings: fixture $m's last hidden states" || bad "--token-embeddings ($m)"
import json, struct, subprocess, sys
eft, model, ref = sys.argv[1:4]
raw = open(ref, "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
hdr = json.loads(raw[8:8 + n])
meta = hdr.pop("__metadata__")
texts = json.loads(meta["texts"])
tol = json.loads(meta["tolerance"])["hidden"]
idx = [i for i in range(len(texts)) if "case%d.last_hidden_state" % i in hdr]
out = subprocess.run([eft, "embed", model, "--token-embeddings", "--"] + [texts[i] for i in idx],
                     capture_output=True, text=True)
if out.returncode != 0:
    print("eft embed --token-embeddings failed:", out.stderr.strip()); sys.exit(1)
lines = out.stdout.splitlines()
worst = 0.0
for k, i in enumerate(idx):
    t = hdr["case%d.last_hidden_state" % i]
    b, e = t["data_offsets"]
    want = struct.unpack("<%df" % ((e - b) // 4), raw[8 + n + b:8 + n + e])
    got = json.loads(lines[k])
    if [len(got), len(got[0])] != t["shape"]:
        print("case %d: shape %s, expected %s" % (i, [len(got), len(got[0])], t["shape"])); sys.exit(1)
    worst = max(worst, max(abs(a - b) for a, b in zip([x for row in got for x in row], want)))
print("%d texts, max abs error %.2g (tolerance %g)" % (len(idx), worst, tol))
sys.exit(0 if worst <= tol else 1)
PY
done
"$EFT" embed "$BERT" --token-embeddings --npy "$TMP/t.npy" "Hello, world!" 2>"$TMP/err" \
  && python3 -c 'import sys; d=open(sys.argv[1],"rb").read(); assert b"(10, 64)" in d[:128], d[:128]' "$TMP/t.npy" \
  && ok "--token-embeddings --npy: [T, C]" || bad "--token-embeddings --npy: $(head -c 200 "$TMP/err")"
"$EFT" embed "$BERT" --token-embeddings --npy "$TMP/t.npy" a b 2>"$TMP/err"
[ $? -eq 1 ] && grep -q "one input" "$TMP/err" && ok "--token-embeddings --npy refuses several inputs" \
  || bad "--token-embeddings --npy with two inputs: $(head -c 200 "$TMP/err")"
"$EFT" embed "$BERT" --token-embeddings --dimensions 8 a 2>"$TMP/err"
[ $? -eq 1 ] && grep -q "before pooling" "$TMP/err" && ok "--token-embeddings refuses pooling options" \
  || bad "--token-embeddings --dimensions: $(head -c 200 "$TMP/err")"
"$EFT" embed "$SRC/tests/fixtures/models/llama" "x" >/dev/null 2>"$TMP/err"
[ $? -eq 1 ] && grep -qi "llama" "$TMP/err" && ok "decoder refused" || bad "decoder refused: $(head -c 200 "$TMP/err")"

e2e_finish
