#!/usr/bin/env bash
# test_template.sh EFT SOURCE_DIR — `eft template` on the chat-template fixtures: the prompt is
# printed byte for byte (no newline added), tools and options reach the template, the message of
# raise_exception reaches stderr with exit status 1, and bad usage exits 2. The expected prompts
# are renderings by transformers (tests/fixtures/chat/*/cases.json). Prints "N passed, N failed".
set -u
EFT=$1
SRC=$2
CHAT=$SRC/tests/fixtures/chat
# shellcheck source=lib.sh
. "$SRC/tests/e2e/lib.sh"

printf '%s' '[{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": "What is the capital of France?"}]' >"$TMP/sys_user.json"

# expect_output NAME EXPECTED ARGS...: exit 0 and stdout exactly EXPECTED (printf escapes allowed)
expect_output() {
  local name=$1 expected=$2; shift 2
  printf "$expected" >"$TMP/expected"
  if ! "$EFT" template "$@" >"$TMP/out" 2>"$TMP/err"; then
    bad "$name: exit status $? ($(head -c 400 "$TMP/err"))"; return
  fi
  if ! cmp -s "$TMP/out" "$TMP/expected"; then
    bad "$name: got '$(head -c 400 "$TMP/out")'"; return
  fi
  ok "$name"
}

expect_output chatml_gen \
  '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n' \
  "$CHAT/chatml" --messages "$TMP/sys_user.json" --add-generation-prompt
expect_output chatml_nogen \
  '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nWhat is the capital of France?<|im_end|>\n' \
  "$CHAT/chatml" --messages "$TMP/sys_user.json"
expect_output llama31_special_tokens_and_kwargs \
  '<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: 01 Jan 2025\n\nYou are a helpful assistant.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nWhat is the capital of France?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n' \
  "$CHAT/llama-3.1" --messages "$TMP/sys_user.json" --add-generation-prompt --set "date_string=01 Jan 2025"
expect_output stdin_and_template_file 'X<s>' \
  --template <(printf '%s' 'X{{ bos_token }}') --messages - --set bos_token='<s>' <<<'[]'

# Tools reach the template.
printf '%s' '[{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}}}]' >"$TMP/tools.json"
if "$EFT" template "$CHAT/qwen2.5" --messages "$TMP/sys_user.json" --tools "$TMP/tools.json" >"$TMP/out" 2>"$TMP/err" &&
  grep -q '<tools>' "$TMP/out" && grep -q '"name": "get_weather"' "$TMP/out"; then
  ok tools
else
  bad "tools: $(head -c 400 "$TMP/out" "$TMP/err")"
fi

# raise_exception: the template's message, exit status 1.
if "$EFT" template "$CHAT/gemma-2" --messages "$TMP/sys_user.json" >"$TMP/out" 2>"$TMP/err"; then
  bad "raise_exception: exit status 0"
elif ! grep -q 'System role not supported' "$TMP/err" || [ -s "$TMP/out" ]; then
  bad "raise_exception: stderr '$(head -c 400 "$TMP/err")'"
else
  ok raise_exception
fi

# Bad usage and bad input.
"$EFT" template "$CHAT/chatml" >/dev/null 2>&1
[ $? -eq 2 ] && ok "missing --messages" || bad "missing --messages: exit status not 2"
printf '[{' >"$TMP/bad.json"
if "$EFT" template "$CHAT/chatml" --messages "$TMP/bad.json" >/dev/null 2>"$TMP/err"; then
  bad "bad json: exit 0"
else
  grep -q 'invalid JSON' "$TMP/err" && ok "bad json" || bad "bad json: $(head -c 300 "$TMP/err")"
fi
if "$EFT" template "$TMP/nonexistent" --messages "$TMP/sys_user.json" >/dev/null 2>"$TMP/err"; then
  bad "missing model: exit 0"
else
  grep -q 'nonexistent' "$TMP/err" && ok "missing model" || bad "missing model: $(head -c 300 "$TMP/err")"
fi

# The real SmolLM2 GGUF, named by its folder as the fetch step lays it out.
SMOL=$SRC/models/SmolLM2-135M-Instruct-Q4_1
if [ -d "$SMOL" ]; then
  printf '[{"role":"user","content":"H\u00e9llo"}]' >"$TMP/u.json"
  if "$EFT" template "$SMOL" --messages "$TMP/u.json" --add-generation-prompt >"$TMP/out" 2>"$TMP/err" &&
     printf '<|im_start|>user\nHéllo<|im_end|>\n<|im_start|>assistant\n' >"$TMP/want_tail" &&
     [ "$(tail -c "$(wc -c <"$TMP/want_tail")" "$TMP/out")" = "$(cat "$TMP/want_tail")" ]; then
    ok "SmolLM2 GGUF by folder"
  else
    bad "SmolLM2 GGUF by folder: $(head -c 300 "$TMP/err") $(head -c 300 "$TMP/out")"
  fi
else
  echo "skip SmolLM2 (not fetched)"
fi

e2e_finish
