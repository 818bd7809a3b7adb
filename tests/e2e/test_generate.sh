#!/usr/bin/env bash
# test_generate.sh EFT SOURCE_DIR — `eft generate` end to end: greedy output of the fixture
# decoders equals the decode of transformers' greedy tokens (tests/fixtures/ref, EOS ignored as
# the references were made), the prompt from --prompt, --prompt-file and stdin alike, --stream
# equal to the buffered output, --chat, and clean errors for bad flags. On the real SmolLM2 GGUF
# (when models/ has it) a chat answer is printed, with no timing asserted.
set -u
EFT=$1
SRC=$2
# shellcheck source=lib.sh
. "$SRC/tests/e2e/lib.sh"

# ref_dump REF DIR: writes DIR/text{i} (the prompt strings, exact bytes) and DIR/greedy{i} (the
# 32 reference ids, space-separated) from a reference file, with the standard library only.
ref_dump() {
  python3 - "$1" "$2" <<'PY'
import json, struct, sys
ref, out = sys.argv[1:3]
raw = open(ref, "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
hdr = json.loads(raw[8:8 + n])
meta = hdr.pop("__metadata__")
for i, t in enumerate(json.loads(meta["texts"])):
    open("%s/text%d" % (out, i), "wb").write(t.encode("utf-8"))
    x = hdr["prompt%d.greedy" % i]; b, e = x["data_offsets"]
    ids = struct.unpack("<%dq" % ((e - b) // 8), raw[8 + n + b:8 + n + e])
    open("%s/greedy%d" % (out, i), "w").write(" ".join(map(str, ids)))
PY
}

for m in llama qwen2 gemma2 gpt2 phi3; do
  MODEL=$SRC/tests/fixtures/models/$m
  D=$TMP/$m
  mkdir -p "$D"
  if ! ref_dump "$SRC/tests/fixtures/ref/$m.safetensors" "$D"; then bad "$m: read the reference"; continue; fi
  good=0
  for i in 0 1 2 3; do
    # shellcheck disable=SC2046
    "$EFT" detokenize "$MODEL" --skip-special $(cat "$D/greedy$i") >"$D/want$i" 2>"$D/err"
    "$EFT" generate "$MODEL" --prompt-file "$D/text$i" --temperature 0 --max-tokens 32 --ignore-eos \
      --prefill-seq-len 8 --quiet >"$D/got$i" 2>>"$D/err"
    rc=$?
    if [ $rc -eq 0 ] && cmp -s "$D/got$i" "$D/want$i"; then good=$((good + 1))
    else echo "  $m prompt $i: rc=$rc got '$(head -c 200 "$D/got$i")' want '$(head -c 200 "$D/want$i")' $(head -c 300 "$D/err")"; fi
  done
  [ $good -eq 4 ] && ok "$m: greedy text equals the decode of transformers' tokens (4 prompts)" || bad "$m: greedy text ($good/4)"
done

# One prompt three ways, streamed and not: the same text.
MODEL=$SRC/tests/fixtures/models/llama
D=$TMP/llama
args=(--temperature 0 --max-tokens 32 --ignore-eos --quiet)
"$EFT" generate "$MODEL" --prompt "$(cat "$D/text1")" "${args[@]}" >"$TMP/a" 2>&1
"$EFT" generate "$MODEL" "${args[@]}" <"$D/text1" >"$TMP/b" 2>&1
"$EFT" generate "$MODEL" --prompt-file "$D/text1" --stream "${args[@]}" >"$TMP/c" 2>&1
if cmp -s "$TMP/a" "$D/want1" && cmp -s "$TMP/b" "$D/want1" && cmp -s "$TMP/c" "$D/want1"; then
  ok "--prompt, stdin, --prompt-file --stream give the same text"
else bad "--prompt/stdin/--stream differ: '$(head -c 100 "$TMP/a")' '$(head -c 100 "$TMP/b")' '$(head -c 100 "$TMP/c")'"; fi

# --no-cache: the same text, and nothing written to the program cache.
EFT_CACHE_DIR=$TMP/nc "$EFT" generate "$MODEL" --prompt "$(cat "$D/text1")" --no-cache "${args[@]}" >"$TMP/nc.out" 2>&1
if cmp -s "$TMP/nc.out" "$D/want1" && [ ! -e "$TMP/nc" ]; then ok "--no-cache: same text, no program written"
else bad "--no-cache: '$(head -c 100 "$TMP/nc.out")', cache: $(ls "$TMP/nc" 2>&1 | head -1)"; fi

# Figures go to stderr, the text alone to stdout.
"$EFT" generate "$MODEL" --prompt-file "$D/text0" --temperature 0 --max-tokens 5 >"$TMP/out" 2>"$TMP/err"
if [ $? -eq 0 ] && grep -q "prompt tokens 11, generated tokens 5" "$TMP/err" && grep -q "tok/s" "$TMP/err" &&
   ! grep -q "tok/s" "$TMP/out"; then ok "figures on stderr: $(head -1 "$TMP/err")"
else bad "figures: $(cat "$TMP/err")"; fi

# Seeded sampling repeats itself.
"$EFT" generate "$MODEL" --prompt hello --temperature 1.1 --top-p 0.9 --top-k 20 --seed 7 --max-tokens 16 --quiet >"$TMP/s1" 2>&1
"$EFT" generate "$MODEL" --prompt hello --temperature 1.1 --top-p 0.9 --top-k 20 --seed 7 --max-tokens 16 --quiet >"$TMP/s2" 2>&1
if cmp -s "$TMP/s1" "$TMP/s2" && [ -s "$TMP/s1" ]; then ok "same seed, same text"; else bad "seeded sampling differs"; fi

# --chat renders the prompt with the model's template (qwen2 has chat_template.jinja).
"$EFT" generate "$SRC/tests/fixtures/models/qwen2" --chat --prompt "What is 2+2?" --max-tokens 4 --quiet >"$TMP/out" 2>"$TMP/err"
[ $? -eq 0 ] && ok "--chat on a model with a template" || bad "--chat: $(cat "$TMP/err")"
"$EFT" generate "$SRC/tests/fixtures/models/gpt2" --chat --prompt "hi" --max-tokens 4 >"$TMP/out" 2>"$TMP/err"
rc=$?
[ $rc -eq 1 ] && grep -q "no usable chat template" "$TMP/err" && ok "--chat without a template is an error" ||
  bad "--chat without template: rc=$rc $(cat "$TMP/err")"

# Bad flags: exit status 2 (usage) or 1 (a model that cannot be used), one clear line, nothing on stdout.
expect_err() { # RC NEEDLE ARGS...
  local want=$1 needle=$2
  shift 2
  "$EFT" generate "$@" </dev/null >"$TMP/out" 2>"$TMP/err"
  local rc=$?
  if [ $rc -eq "$want" ] && grep -q -- "$needle" "$TMP/err" && [ ! -s "$TMP/out" ]; then ok "error: $*"
  else bad "error for '$*': rc=$rc (want $want) stderr '$(head -c 300 "$TMP/err")'"; fi
}
expect_err 2 "bad value 'abc'" "$MODEL" --prompt x --temperature abc
expect_err 2 "bad value '-1'" "$MODEL" --prompt x --temperature -1
expect_err 2 "bad value '1.5'" "$MODEL" --prompt x --top-p 1.5
expect_err 2 "bad value '0'" "$MODEL" --prompt x --max-tokens 0
expect_err 2 "bad value 'q9'" "$MODEL" --prompt x --weight-dtype q9
expect_err 2 "bad value 'int4'" "$MODEL" --prompt x --kv-dtype int4
expect_err 2 "unknown option '--bogus'" "$MODEL" --prompt x --bogus 1
expect_err 2 "needs a value" "$MODEL" --prompt
expect_err 2 "not both" "$MODEL" --prompt x --prompt-file "$D/text0"
expect_err 2 "usage" --prompt x
expect_err 1 "no-such-file" "$MODEL" --prompt-file "$TMP/no-such-file"
expect_err 1 "generate" "$TMP/no-such-model" --prompt x
expect_err 1 "ctx_len" "$MODEL" --prompt-file "$D/text3" --ctx-len 8
expect_err 1 "empty" "$SRC/tests/fixtures/models/gpt2" --prompt ""

SMOL=$SRC/models/SmolLM2-135M-Instruct-Q4_1/SmolLM2-135M-Instruct.Q4_1.gguf
if [ -f "$SMOL" ]; then
  "$EFT" generate "$SMOL" --chat --prompt "What is the capital of France? Answer in one sentence." \
    --max-tokens 48 >"$TMP/out" 2>"$TMP/err"
  rc=$?
  echo "  SmolLM2 says: $(cat "$TMP/out")"
  sed 's/^/  /' "$TMP/err"
  [ $rc -eq 0 ] && grep -q "Paris" "$TMP/out" && ok "SmolLM2-135M-Instruct Q4_1 --chat answers 'Paris'" ||
    bad "SmolLM2 --chat: rc=$rc"
fi

e2e_finish
