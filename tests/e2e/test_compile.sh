#!/usr/bin/env bash
# test_compile.sh EFT SOURCE_DIR — `eft compile` end to end: a fixture encoder compiled into a
# folder, `eft embed PROGRAM` equal to `eft embed MODEL` with the same plan, `eft info PROGRAM`
# (text and --json), f16 programs, refusals (bad options, a decoder, a corrupt program), and the
# program cache of `eft embed MODEL` (a miss writes, a hit reads, the same vectors; the default
# folder under $HOME/.cache/eft or $XDG_CACHE_HOME/eft). HOME and the cache point into a scratch
# folder, so the user's cache is never touched.
set -u
EFT=$1
SRC=$2
# shellcheck source=lib.sh
. "$SRC/tests/e2e/lib.sh"
export EFT_CACHE_DIR=$TMP/cache
export HOME=$TMP/home
unset XDG_CACHE_HOME
TEXTS=("hello world" "a compiled program" "x")

# same A B: two JSON embedding outputs hold the same numbers (max abs difference <= tol).
same() {
  python3 - "$1" "$2" "${3:-0}" <<'PY'
import json, sys
def load(p):  # one JSON array per line (JSON lines), or one array of arrays
    text = open(p).read()
    try:
        return json.loads(text)
    except ValueError:
        return [json.loads(l) for l in text.splitlines() if l.strip()]
a, b = (load(p) for p in sys.argv[1:3])
tol = float(sys.argv[3])
if len(a) != len(b) or any(len(x) != len(y) for x, y in zip(a, b)):
    print("shapes differ"); sys.exit(1)
worst = max(abs(p - q) for x, y in zip(a, b) for p, q in zip(x, y))
print("max abs difference %.3g (tolerance %g)" % (worst, tol))
sys.exit(0 if worst <= tol else 1)
PY
}

for m in bert mpnet roberta; do
  MODEL=$SRC/tests/fixtures/models/$m
  P=$TMP/prog-$m
  if "$EFT" compile "$MODEL" --seq-len 16,64 --batch-size 2 --num-cores 2 -o "$P" >"$TMP/out" 2>"$TMP/err" &&
     grep -q "program.eft" "$TMP/out" && [ -f "$P/program.eft" ]; then ok "$m: compile"
  else bad "$m: compile: $(head -c 300 "$TMP/err")"; continue; fi
  "$EFT" embed "$MODEL" --threads 2 --batch 2 --seq-len 16,64 -- "${TEXTS[@]}" >"$TMP/model.json" 2>"$TMP/err1"
  "$EFT" embed "$P" -- "${TEXTS[@]}" >"$TMP/prog.json" 2>"$TMP/err2"
  if [ -s "$TMP/prog.json" ] && cmp -s "$TMP/model.json" "$TMP/prog.json"; then ok "$m: eft embed PROGRAM == eft embed MODEL (bit for bit)"
  else bad "$m: embed PROGRAM differs: $(head -c 200 "$TMP/err1") $(head -c 200 "$TMP/err2")"; fi
  # The program file itself works as well as its folder.
  "$EFT" embed "$P/program.eft" -- "${TEXTS[@]}" >"$TMP/prog2.json" 2>"$TMP/err"
  cmp -s "$TMP/prog.json" "$TMP/prog2.json" && ok "$m: the program file as the reference" || bad "$m: program file: $(head -c 200 "$TMP/err")"
done

P=$TMP/prog-bert
if "$EFT" info "$P" >"$TMP/info" 2>"$TMP/err" && grep -q "^program .*program.eft" "$TMP/info" &&
   grep -q "architecture *bert" "$TMP/info" && grep -q "seq_lens *\[16, *64\]" "$TMP/info" &&
   grep -q "batch_size *2" "$TMP/info" && grep -q "^blobs ([0-9]*, [0-9]* bytes)" "$TMP/info" &&
   grep -q "layer.0.attention.self.query.weight|fused" "$TMP/info" && grep -q "hash" "$TMP/info"; then ok "eft info PROGRAM"
else bad "eft info PROGRAM: $(head -c 600 "$TMP/info") $(head -c 200 "$TMP/err")"; fi
if "$EFT" info --json "$P" >"$TMP/info.json" 2>"$TMP/err" && python3 - "$TMP/info.json" "$SRC" <<'PY'
import json, os, sys
j = json.load(open(sys.argv[1]))
h = j["header"]
assert h["kind"] == "encoder" and h["architecture"] == "bert", h
assert h["options"] == {"seq_lens": [16, 64], "batch_size": 2, "num_cores": 2, "dtype": "f32"}, h["options"]
assert os.path.samefile(h["model"]["path"], os.path.join(sys.argv[2], "tests/fixtures/models/bert"))
assert len(h["key"]) == 16 and h["eft_version"] and h["isa"]
assert j["size"] == os.path.getsize(j["file"]) and j["blob_bytes"] == sum(b["bytes"] for b in j["blobs"])
PY
then ok "eft info --json PROGRAM"; else bad "eft info --json: $(head -c 300 "$TMP/err")"; fi

# f16: half the weight bytes, close to f32.
MODEL=$SRC/tests/fixtures/models/bert
"$EFT" embed "$P" -- "${TEXTS[@]}" >"$TMP/prog.json" 2>"$TMP/err"
if "$EFT" compile "$MODEL" --seq-len 16,64 --batch-size 2 --num-cores 2 --dtype f16 -o "$TMP/f16" >/dev/null 2>"$TMP/err" &&
   "$EFT" embed "$TMP/f16" -- "${TEXTS[@]}" >"$TMP/f16.json" 2>>"$TMP/err" &&
   same "$TMP/prog.json" "$TMP/f16.json" 1e-2 >/dev/null &&
   ! cmp -s "$TMP/prog.json" "$TMP/f16.json" &&
   [ "$(stat -c %s "$TMP/f16/program.eft")" -lt "$(stat -c %s "$P/program.eft")" ]; then ok "--dtype f16: smaller, within 1e-2 of f32"
else bad "--dtype f16: $(head -c 300 "$TMP/err")"; fi
# int8: Q8_0 weights through the precision pass, shown by eft info, close to f32.
if "$EFT" compile "$MODEL" --seq-len 16,64 --batch-size 2 --num-cores 2 --dtype int8 -o "$TMP/i8" >/dev/null 2>"$TMP/err" &&
   "$EFT" embed "$TMP/i8" -- "${TEXTS[@]}" >"$TMP/i8.json" 2>>"$TMP/err" &&
   same "$TMP/prog.json" "$TMP/i8.json" 5e-2 >/dev/null &&
   "$EFT" info "$TMP/i8" >"$TMP/i8.info" 2>>"$TMP/err" && grep -q "qgemm_q8_0" "$TMP/i8.info" &&
   grep -q "passes *fold, fuse_matmuls, precision, kernels" "$TMP/i8.info" &&
   [ "$(stat -c %s "$TMP/i8/program.eft")" -lt "$(stat -c %s "$TMP/f16/program.eft")" ]; then ok "--dtype int8: Q8_0 kernels, smaller, within 5e-2 of f32"
else bad "--dtype int8: $(head -c 300 "$TMP/err")"; fi
# A group-quantised layout (int4, groups of 64 with a minimum): the family's gqgemm kernel, named in
# the header, within int4's distance of f32.
if "$EFT" compile "$MODEL" --seq-len 16,64 --batch-size 2 --num-cores 2 --dtype int4-g64-asym -o "$TMP/i4" >/dev/null 2>"$TMP/err" &&
   "$EFT" embed "$TMP/i4" -- "${TEXTS[@]}" >"$TMP/i4.json" 2>>"$TMP/err" &&
   same "$TMP/prog.json" "$TMP/i4.json" 3e-1 >/dev/null &&
   "$EFT" info "$TMP/i4" >"$TMP/i4.info" 2>>"$TMP/err" && grep -q "gqgemm" "$TMP/i4.info" && grep -q "U4_G64" "$TMP/i4.info" &&
   [ "$(stat -c %s "$TMP/i4/program.eft")" -lt "$(stat -c %s "$TMP/i8/program.eft")" ]; then ok "--dtype int4-g64-asym: gqgemm kernels, smaller than int8, within 3e-1 of f32"
else bad "--dtype int4-g64-asym: $(head -c 300 "$TMP/err")"; fi

# Refusals: clear errors, nothing written.
expect_error() { # name rc pattern args...
  local name=$1 want=$2 pat=$3
  shift 3
  "$EFT" "$@" >/dev/null 2>"$TMP/err"
  local rc=$?
  if [ $rc -eq "$want" ] && grep -q "$pat" "$TMP/err"; then ok "$name"; else bad "$name: rc=$rc $(head -c 300 "$TMP/err")"; fi
}
expect_error "unsorted --seq-len" 1 "ascending" compile "$MODEL" --seq-len 64,16 -o "$TMP/x1"
expect_error "--seq-len over the limit" 1 "outside" compile "$MODEL" --seq-len 4096 -o "$TMP/x1"
expect_error "malformed --seq-len" 1 "seq-len" compile "$MODEL" --seq-len 16,,32 -o "$TMP/x1"
expect_error "--dtype int3" 1 "f32, f16, bf16, int8, int4, int8-g64" compile "$MODEL" --dtype int3 -o "$TMP/x1"
expect_error "a bad --weight-dtype" 1 "weight-dtype" compile "$SRC/tests/fixtures/models/llama" --weight-dtype q2 -o "$TMP/x1"
expect_error "no -o" 2 "usage" compile "$MODEL"
[ ! -e "$TMP/x1" ] && ok "refused compiles write nothing" || bad "refused compiles wrote $TMP/x1"
cp -r "$P" "$TMP/broken"
truncate -s 5000 "$TMP/broken/program.eft"
expect_error "embed a truncated program" 1 "program.eft.*truncated" embed "$TMP/broken" "x"
expect_error "info a truncated program" 1 "program.eft" info "$TMP/broken"
# A program whose model folder has gone: the error names both.
cp -r "$MODEL" "$TMP/gone-model"
"$EFT" compile "$TMP/gone-model" -o "$TMP/orphan" >/dev/null 2>&1
rm -rf "$TMP/gone-model"
expect_error "a program whose model folder is gone" 1 "orphan/program.eft was compiled from .*gone-model" embed "$TMP/orphan" "x"

# The cache of eft embed MODEL: a miss compiles and writes, a hit reads; the same vectors.
export EFT_CACHE_DIR=$TMP/cache2
"$EFT" embed "$MODEL" -- "${TEXTS[@]}" >"$TMP/c1.json" 2>"$TMP/err"
n1=$(ls "$EFT_CACHE_DIR"/*.eft 2>/dev/null | wc -l)
EFT_LOG=info "$EFT" embed "$MODEL" -- "${TEXTS[@]}" >"$TMP/c2.json" 2>"$TMP/err"
if [ "$n1" -eq 1 ] && grep -q "program cache: loaded" "$TMP/err" && cmp -s "$TMP/c1.json" "$TMP/c2.json"; then ok "cache: miss writes, hit loads, same vectors"
else bad "cache: $n1 programs, $(head -c 300 "$TMP/err")"; fi
# A corrupt cached program is compiled again (a warning), with the same answer.
for f in "$EFT_CACHE_DIR"/*.eft; do truncate -s 100 "$f"; done
"$EFT" embed "$MODEL" -- "${TEXTS[@]}" >"$TMP/c3.json" 2>"$TMP/err"
if cmp -s "$TMP/c1.json" "$TMP/c3.json" && grep -q "compiling again" "$TMP/err"; then ok "cache: a corrupt program is a miss"
else bad "cache: corrupt: $(head -c 300 "$TMP/err")"; fi
# Default folders: $XDG_CACHE_HOME/eft, else $HOME/.cache/eft (both inside $TMP here).
env -u EFT_CACHE_DIR XDG_CACHE_HOME="$TMP/xdg" "$EFT" embed "$MODEL" "x" >/dev/null 2>"$TMP/err"
env -u EFT_CACHE_DIR "$EFT" embed "$MODEL" "x" >/dev/null 2>>"$TMP/err"
if ls "$TMP/xdg/eft/"*.eft >/dev/null 2>&1 && ls "$HOME/.cache/eft/"*.eft >/dev/null 2>&1; then ok "cache folders: XDG_CACHE_HOME, HOME"
else bad "cache folders: $(head -c 300 "$TMP/err")"; fi
# A cache that cannot be written is a warning, not an error.
EFT_CACHE_DIR=$MODEL/config.json/x "$EFT" embed "$MODEL" "x" >/dev/null 2>"$TMP/err"
[ $? -eq 0 ] && grep -q "not written" "$TMP/err" && ok "unwritable cache: a warning" || bad "unwritable cache: $(head -c 300 "$TMP/err")"

# Causal LMs: `eft generate PROGRAM` gives the tokens `eft generate MODEL` gives, for every weight
# type; the program's plan is the default; a corrupt or stale program is refused; the cache.
export EFT_CACHE_DIR=$TMP/cache3
LM=$TMP/lm
cp -r "$SRC/tests/fixtures/models/llama" "$LM"
gen() { "$EFT" generate "$@" --prompt "hello world" --max-tokens 12 --quiet 2>>"$TMP/generr"; }
for wd in keep f32 f16 int8 int4; do
  opt=(); [ "$wd" != keep ] && opt=(--weight-dtype "$wd")
  if "$EFT" compile "$LM" "${opt[@]}" --ctx-len 96 --prefill-seq-len 16 --full-batch-size 2 -o "$TMP/lm-$wd" >/dev/null 2>"$TMP/err" &&
     EFT_CACHE_DIR=$TMP/nocache gen "$LM" "${opt[@]}" --ctx-len 96 --prefill-seq-len 16 >"$TMP/m.txt" &&
     gen "$TMP/lm-$wd" >"$TMP/p.txt" && [ -s "$TMP/p.txt" ] && cmp -s "$TMP/m.txt" "$TMP/p.txt"; then ok "lm $wd: generate PROGRAM == generate MODEL"
  else bad "lm $wd: $(head -c 300 "$TMP/err") $(tail -c 300 "$TMP/generr")"; fi
done
if "$EFT" info --json "$TMP/lm-int8" >"$TMP/info.json" 2>"$TMP/err" && python3 - "$TMP/info.json" <<'PY'
import json, sys
h = json.load(open(sys.argv[1]))["header"]
assert h["kind"] == "decoder" and h["architecture"] == "llama", h
o = h["options"]
assert (o["ctx_len"], o["prefill_seq_len"], o["full_batch_size"], o["weight_dtype"], o["kv_dtype"]) == (96, 16, 2, "Q8_0", "F32"), o
assert h["plan"]["ctx_len"] == 96 and h["plan"]["slots"] == 2, h["plan"]
PY
then ok "lm: eft info --json PROGRAM"; else bad "lm: info: $(head -c 300 "$TMP/err")"; fi
"$EFT" info "$TMP/lm-int8" >"$TMP/info" 2>&1 && grep -q "kind *decoder" "$TMP/info" && grep -q "q_proj.weight *Q8_0" "$TMP/info" &&
  ok "lm: eft info PROGRAM" || bad "lm: eft info: $(head -c 300 "$TMP/info")"
cp -r "$TMP/lm-int8" "$TMP/lm-broken"
truncate -s 5000 "$TMP/lm-broken/program.eft"
expect_error "generate a truncated program" 1 "program.eft.*truncated" generate "$TMP/lm-broken" --prompt hi
printf 'x' | dd of="$TMP/lm-int8/program.eft" bs=1 seek=70 conv=notrunc 2>/dev/null
expect_error "generate a corrupt program" 1 "program.eft.*checksum" generate "$TMP/lm-int8" --prompt hi
touch -d "2001-01-01" "$LM/model.safetensors"
expect_error "generate a stale program" 1 "changed since" generate "$TMP/lm-f32" --prompt hi
expect_error "embed a decoder program" 1 "kind 'decoder'" embed "$TMP/lm-keep" "x"
# eft serve --model PROGRAM: the program stands for its model; the same tokens over HTTP.
if command -v curl >/dev/null; then
  "$EFT" compile "$LM" --weight-dtype f16 --ctx-len 96 -o "$TMP/lm-serve" >/dev/null 2>&1
  "$EFT" serve --port 0 --model "$TMP/lm-serve" 2>"$TMP/serve.err" &
  SPID=$!
  PORT=
  for _ in $(seq 1 100); do
    PORT=$(grep -o 'listening on http://127.0.0.1:[0-9]*' "$TMP/serve.err" | grep -o '[0-9]*$')
    [ -n "$PORT" ] && [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/health")" = 200 ] && break
    sleep 0.2
  done
  curl -s "http://127.0.0.1:$PORT/v1/completions" -d '{"prompt": "hello world", "max_tokens": 12, "temperature": 0}' >"$TMP/serve.json"
  kill "$SPID" 2>/dev/null
  wait "$SPID" 2>/dev/null
  gen "$LM" --weight-dtype f16 >"$TMP/sm.txt"
  if python3 - "$TMP/serve.json" "$TMP/sm.txt" <<'PY'
import json, sys
got = json.load(open(sys.argv[1]))["choices"][0]["text"]
want = open(sys.argv[2]).read()
assert want.endswith("\n") and got == want[:-1], (got, want)
PY
  then ok "lm: eft serve --model PROGRAM"; else bad "lm: serve: $(head -c 300 "$TMP/serve.json") $(tail -c 300 "$TMP/serve.err")"; fi
fi
# The cache of eft generate MODEL: a miss builds and writes, a hit loads; the same tokens.
rm -rf "$EFT_CACHE_DIR"
gen "$LM" --weight-dtype int4 >"$TMP/g1.txt"
n1=$(ls "$EFT_CACHE_DIR"/*.eft 2>/dev/null | wc -l)
EFT_LOG=info "$EFT" generate "$LM" --weight-dtype int4 --prompt "hello world" --max-tokens 12 --quiet >"$TMP/g2.txt" 2>"$TMP/err"
if [ "$n1" -eq 1 ] && grep -q "program cache: loaded" "$TMP/err" && [ -s "$TMP/g1.txt" ] && cmp -s "$TMP/g1.txt" "$TMP/g2.txt"; then ok "lm cache: miss writes, hit loads, same tokens"
else bad "lm cache: $n1 programs, $(head -c 300 "$TMP/err")"; fi
for f in "$EFT_CACHE_DIR"/*.eft; do truncate -s 100 "$f"; done
gen "$LM" --weight-dtype int4 >"$TMP/g3.txt"
cmp -s "$TMP/g1.txt" "$TMP/g3.txt" && grep -q "compiling again" "$TMP/generr" && ok "lm cache: a corrupt program is a miss" ||
  bad "lm cache: corrupt: $(tail -c 300 "$TMP/generr")"

e2e_finish
