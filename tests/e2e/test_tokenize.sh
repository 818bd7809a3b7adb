#!/usr/bin/env bash
# test_tokenize.sh EFT SOURCE_DIR — `eft tokenize` / `eft detokenize` from the command line: ids as
# Hugging Face tokenizers gives them (from tests/fixtures/tokenizers expectations and known ids of
# the real models), text from arguments and stdin, pairs, round trips, and clean errors.
set -u
EFT=$1
SRC=$2
# shellcheck source=lib.sh
. "$SRC/tests/e2e/lib.sh"
expect() { # NAME EXPECTED CMD...
  local name=$1 want=$2; shift 2
  local got
  got=$("$@" 2>"$TMP/err")
  local rc=$?
  if [ $rc -eq 0 ] && [ "$got" = "$want" ]; then ok "$name"; else bad "$name: rc=$rc got '$got' want '$want' ($(head -c 200 "$TMP/err"))"; fi
}

BERT=$SRC/tests/fixtures/models/bert
# The first case of the fixture's expectations, as HF tokenizers produced it.
if [ -f "$SRC/tests/fixtures/tokenizers/bert.json" ] && command -v python3 >/dev/null; then
  python3 - "$SRC/tests/fixtures/tokenizers/bert.json" "$TMP" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
cases = [c for c in d["cases"] if c.get("pair") is None and c.get("add_special_tokens", True)
         and isinstance(c.get("text"), str) and c["text"] and "\n" not in c["text"]
         and not c.get("max_length") and not c.get("padding")]
c = cases[0]
open(sys.argv[2] + "/text", "w").write(c["text"])
open(sys.argv[2] + "/ids", "w").write(json.dumps(c["ids"]).replace(" ", ""))
PY
  got=$("$EFT" tokenize "$BERT" "$(cat "$TMP/text")" 2>"$TMP/err" | tr -d ' ')
  [ "$got" = "$(cat "$TMP/ids")" ] && ok "fixture bert ids" || bad "fixture bert ids: got $got want $(cat "$TMP/ids")"
fi
"$EFT" tokenize "$BERT" "hello world" >/dev/null 2>&1 && ok "fixture bert runs" || bad "fixture bert runs"

MINILM=$SRC/models/all-MiniLM-L6-v2
if [ -d "$MINILM" ]; then
  expect "minilm ids" "[101, 7592, 2088, 999, 102]" "$EFT" tokenize "$MINILM" "Hello world!"
  expect "minilm stdin" "[101, 7592, 2088, 999, 102]" sh -c "printf 'Hello world!' | '$EFT' tokenize '$MINILM'"
  expect "minilm pair" "[101, 1037, 102, 1038, 102]" "$EFT" tokenize "$MINILM" --pair b a
  expect "minilm no special" "[7592, 2088]" "$EFT" tokenize "$MINILM" --no-special "Hello world"
  expect "minilm detokenize" "[CLS] hello world! [SEP]" "$EFT" detokenize "$MINILM" 101 7592 2088 999 102
  expect "minilm detokenize stdin" "hello world!" sh -c "echo '[101, 7592, 2088, 999, 102]' | '$EFT' detokenize '$MINILM' --skip-special"
else
  echo "skip all-MiniLM-L6-v2 (not fetched)"
fi
SMOL=$SRC/models/SmolLM2-135M-Instruct-Q4_1
if [ -d "$SMOL" ]; then
  ids=$("$EFT" tokenize "$SMOL" "Héllo wörld 👋" 2>"$TMP/err" | tr -d '[],')
  # shellcheck disable=SC2086
  back=$("$EFT" detokenize "$SMOL" $ids 2>>"$TMP/err")
  [ "$back" = "Héllo wörld 👋" ] && ok "smollm2 gguf round trip" || bad "smollm2 gguf round trip: '$back' ($(head -c 200 "$TMP/err"))"
else
  echo "skip SmolLM2 (not fetched)"
fi

"$EFT" tokenize "$TMP/missing" x >/dev/null 2>"$TMP/err"
[ $? -eq 1 ] && grep -q missing "$TMP/err" && ok "missing model" || bad "missing model: $(head -c 200 "$TMP/err")"
printf '{"model": {"type": "Frobnicate"}}' >"$TMP/tokenizer.json"
"$EFT" tokenize "$TMP/tokenizer.json" x >/dev/null 2>"$TMP/err"
[ $? -eq 1 ] && grep -q Frobnicate "$TMP/err" && ok "unsupported model named" || bad "unsupported model named: $(head -c 200 "$TMP/err")"
printf '\xff\xfe bad utf-8' | "$EFT" tokenize "$BERT" >/dev/null 2>"$TMP/err" && ok "invalid utf-8 input" || bad "invalid utf-8 input: $(head -c 200 "$TMP/err")"

e2e_finish
