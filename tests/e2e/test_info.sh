#!/usr/bin/env bash
# test_info.sh EFT SOURCE_DIR — `eft info` on every fixture model, every GGUF fixture and every
# fetched real model (exit 0, the expected architecture in the JSON), and on broken files (exit 1,
# an error that names the file). Prints "N passed, N failed".
set -u
EFT=$1
SRC=$2
# shellcheck source=lib.sh
. "$SRC/tests/e2e/lib.sh"

# expect_info NAME PATH PATTERN...: exit 0 and each pattern found in the --json output
expect_info() {
  local name=$1 path=$2; shift 2
  if ! "$EFT" info "$path" --json >"$TMP/out.json" 2>"$TMP/err"; then
    bad "$name: exit status $? ($(head -c 400 "$TMP/err"))"; return
  fi
  for pat in "$@"; do
    if ! grep -q -- "$pat" "$TMP/out.json"; then bad "$name: no '$pat' in $(head -c 600 "$TMP/out.json")"; return; fi
  done
  if ! "$EFT" info "$path" >"$TMP/out.txt" 2>"$TMP/err" || ! grep -q "architecture" "$TMP/out.txt"; then
    bad "$name: human-readable output"; return
  fi
  ok "$name"
}

# expect_error NAME PATH PATTERN: exit 1 and PATTERN in stderr
expect_error() {
  local name=$1 path=$2 pat=$3
  "$EFT" info "$path" >"$TMP/out" 2>"$TMP/err"
  local rc=$?
  if [ $rc -ne 1 ]; then bad "$name: exit status $rc, expected 1"; return; fi
  if ! grep -q -- "$pat" "$TMP/err"; then bad "$name: stderr lacks '$pat': $(head -c 400 "$TMP/err")"; return; fi
  ok "$name"
}

declare -A ARCH=([bert]=bert [bert-cls]=bert [roberta]=roberta [xlm-roberta]=xlm-roberta [mpnet]=mpnet
  [llama]=llama [llama-rope3]=llama [mistral]=mistral [qwen2]=qwen2 [qwen3]=qwen3 [gemma2]=gemma2
  [gemma3]=gemma3 [gemma3_text]=gemma3 [phi3]=phi3 [gpt2]=gpt2)
n_fixtures=0
for dir in "$SRC"/tests/fixtures/models/*/; do
  [ -f "$dir/config.json" ] || continue
  name=$(basename "$dir")
  n_fixtures=$((n_fixtures + 1))
  expect_info "fixture $name" "$dir" "\"model_type\"" "\"tensors\"" "\"tokenizer\""
done
[ "$n_fixtures" -gt 0 ] && ok "found $n_fixtures fixture models" || bad "no fixture models under tests/fixtures/models"

for f in "$SRC"/tests/fixtures/gguf/*.gguf; do
  [ -f "$f" ] || continue
  case $(basename "$f") in
    tiny-llama.gguf) expect_info "gguf $(basename "$f")" "$f" "\"gguf\"" "\"llama\"" ;;
    *) "$EFT" info "$f" --json >/dev/null 2>"$TMP/err"; rc=$?
       # Test GGUFs without an architecture are described or refused cleanly, never crash.
       if [ $rc -le 1 ]; then ok "gguf $(basename "$f") (exit $rc)"; else bad "gguf $(basename "$f"): exit $rc"; fi ;;
  esac
done

MODELS=$SRC/models
if [ -d "$MODELS/all-MiniLM-L6-v2" ]; then
  expect_info "real all-MiniLM-L6-v2" "$MODELS/all-MiniLM-L6-v2" '"model_type": "bert"' '"hidden_size": 384' \
    '"WordPiece"' '"mean"' '"normalize": true' '"max_seq_length": 256'
else echo "skip all-MiniLM-L6-v2 (not fetched)"; fi
if [ -d "$MODELS/SmolLM2-135M-Instruct-Q4_1" ]; then
  expect_info "real SmolLM2 GGUF" "$MODELS/SmolLM2-135M-Instruct-Q4_1/SmolLM2-135M-Instruct.Q4_1.gguf" \
    '"model_type": "llama"' '"Q4_1"' '"hidden_size": 576' '"vocab_size": 49152'
  expect_info "real SmolLM2 GGUF by folder" "$MODELS/SmolLM2-135M-Instruct-Q4_1" '"model_type": "llama"'
else echo "skip SmolLM2 (not fetched)"; fi
if [ -d "$MODELS/gemma-3-270m-Q4_K_M" ]; then
  expect_info "real Gemma-3-270M GGUF" "$MODELS/gemma-3-270m-Q4_K_M/gemma-3-270m-q4_k_m.gguf" \
    '"model_type": "gemma3"' '"Q4_K"' '"hidden_size": 640'
else echo "skip Gemma 3 (not fetched)"; fi

# Broken inputs: a clear error naming the file, exit 1, no crash.
expect_error "missing path" "$TMP/nope" "nope"
mkdir -p "$TMP/empty"
expect_error "folder without config.json" "$TMP/empty" "config.json"
if [ -d "$SRC/tests/fixtures/models/bert" ]; then
  cp -r "$SRC/tests/fixtures/models/bert" "$TMP/trunc"
  size=$(stat -c %s "$TMP/trunc/model.safetensors")
  truncate -s $((size - 100)) "$TMP/trunc/model.safetensors"
  expect_error "truncated safetensors" "$TMP/trunc" "model.safetensors"
  cp -r "$SRC/tests/fixtures/models/bert" "$TMP/badcfg"
  printf '{"model_type": "bert", "hidden_size": ' >"$TMP/badcfg/config.json"
  expect_error "truncated config.json" "$TMP/badcfg" "config.json"
  cp -r "$SRC/tests/fixtures/models/bert" "$TMP/unknown"
  sed -i 's/"model_type": *"bert"/"model_type": "frobnicator"/' "$TMP/unknown/config.json"
  expect_error "unknown model_type" "$TMP/unknown" "frobnicator"
fi
printf 'GGUF\003\000\000\000' >"$TMP/short.gguf"
expect_error "truncated gguf" "$TMP/short.gguf" "short.gguf"

e2e_finish
