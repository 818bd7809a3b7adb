#!/usr/bin/env bash
# test_embed.sh EFT SOURCE_DIR — `eft embed` end to end (tokenizer + encoder + pooling + Normalize)
# against sentence-transformers' embeddings stored in tests/fixtures/ref (tolerance from each
# file's metadata), and its length contract: over the limit is an error naming both lengths
# unless --truncate is given.
set -u
EFT=$1
SRC=$2
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; }

# compare MODEL REF: embeds every case text of REF and compares with case{i}.embedding.
compare() {
  local name=$1 model=$2 ref=$3
  python3 - "$EFT" "$model" "$ref" <<'PY'
import json, struct, subprocess, sys
eft, model, ref = sys.argv[1:4]
raw = open(ref, "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
hdr = json.loads(raw[8:8 + n])
meta = hdr.pop("__metadata__")
texts = json.loads(meta["texts"])
tol = json.loads(meta["tolerance"]).get("embedding", 1e-4)
def tensor(name):
    t = hdr[name]; b, e = t["data_offsets"]
    return struct.unpack("<%df" % ((e - b) // 4), raw[8 + n + b:8 + n + e])
idx = [i for i in range(len(texts)) if "case%d.embedding" % i in hdr]
out = subprocess.run([eft, "embed", model, "--"] + [texts[i] for i in idx], capture_output=True, text=True)
if out.returncode != 0:
    print("eft embed failed:", out.stderr.strip()); sys.exit(1)
got = json.loads(out.stdout)
worst = 0.0
for k, i in enumerate(idx):
    want = tensor("case%d.embedding" % i)
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
done
MINILM=$SRC/models/all-MiniLM-L6-v2
if [ -d "$MINILM" ]; then
  compare "all-MiniLM-L6-v2 vs sentence-transformers" "$MINILM" "$SRC/tests/fixtures/ref/all-MiniLM-L6-v2.safetensors"
  long=$(for i in $(seq 400); do printf 'word%d ' "$i"; done)
  "$EFT" embed "$MINILM" "short" "$long" >/dev/null 2>"$TMP/err"
  rc=$?
  if [ $rc -eq 1 ] && grep -q "input 1 has" "$TMP/err" && grep -q "limit of 256" "$TMP/err"; then ok "over the limit is refused, naming both lengths"
  else bad "over the limit: rc=$rc $(head -c 300 "$TMP/err")"; fi
  for side in right left; do
    if "$EFT" embed "$MINILM" --truncate $side "$long" >"$TMP/out" 2>"$TMP/err" && grep -q '^\[\[' "$TMP/out"; then ok "--truncate $side"
    else bad "--truncate $side: $(head -c 300 "$TMP/err")"; fi
  done
  printf 'one\ntwo\n' | "$EFT" embed "$MINILM" >"$TMP/out" 2>"$TMP/err"
  [ "$(grep -c '^ \?\[' "$TMP/out")" -eq 2 ] && ok "stdin lines" || bad "stdin lines: $(head -c 200 "$TMP/out") $(head -c 200 "$TMP/err")"
else
  echo "skip all-MiniLM-L6-v2 (not fetched)"
fi
"$EFT" embed "$SRC/tests/fixtures/models/llama" "x" >/dev/null 2>"$TMP/err"
[ $? -eq 1 ] && grep -qi "llama" "$TMP/err" && ok "decoder refused" || bad "decoder refused: $(head -c 200 "$TMP/err")"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
