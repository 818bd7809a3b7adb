#!/usr/bin/env bash
# test_bench_generate.sh EFT SOURCE_DIR — `eft bench generate` end to end on the fixture Llama:
# the table has a row per weight type with positive prefill and decode figures, --median says it
# quotes median steps, --kv-dtype and --act-dtype are named in the header, --profile breaks the
# decode steps down by operation, --rounds with a stand-in peer (fixed figures) gives medians and each
# weight type's ratios to it, and bad flags are clean errors. No speed is asserted.
set -u
EFT=$1
SRC=$2
# shellcheck source=lib.sh
. "$SRC/tests/e2e/lib.sh"
MODEL="$SRC/tests/fixtures/models/llama"

# row_positive FILE NAME: the row of weight type NAME has a prefill and two decode figures > 0.
row_positive() {
  awk -v n="$2" '$1 == n { if ($2 > 0 && $3 > 0 && $5 > 0) found = 1 } END { exit !found }' "$1"
}

for mode in mean median; do
  flag=""
  [ "$mode" = median ] && flag="--median"
  if "$EFT" bench generate "$MODEL" --threads 2 --seconds 0.2 --prefill 8 --context 8 --decode 1,2 \
      --weight-dtype keep,int8 $flag >"$TMP/out" 2>"$TMP/err" &&
    row_positive "$TMP/out" keep && row_positive "$TMP/out" int8; then
    ok "$mode: a row per weight type with positive figures"
  else
    bad "$mode: table"; cat "$TMP/out" "$TMP/err"
  fi
  if [ "$mode" = median ]; then
    grep -q "median step time" "$TMP/out" && ok "median: says so" || bad "median: header"
  else
    grep -q "over the whole decode time" "$TMP/out" && ok "mean: says so" || bad "mean: header"
  fi
done

# The cache and activation types: the table as before, and the header says which.
if "$EFT" bench generate "$MODEL" --threads 2 --seconds 0.2 --prefill 8 --context 8 --decode 1,2 \
    --weight-dtype keep --kv-dtype f16 --act-dtype int8 >"$TMP/out" 2>"$TMP/err" &&
  row_positive "$TMP/out" keep && grep -q "^activations int8, KV cache f16$" "$TMP/out"; then
  ok "kv-dtype f16, act-dtype int8: positive figures, named in the header"
else
  bad "kv-dtype/act-dtype"; cat "$TMP/out" "$TMP/err"
fi

# --profile: after each decode measurement, where the steps went, by operation.
if "$EFT" bench generate "$MODEL" --threads 2 --seconds 0.2 --prefill 8 --context 8 --decode 1,2 \
    --weight-dtype keep --profile >"$TMP/out" 2>"$TMP/err" &&
  row_positive "$TMP/out" keep && grep -q "^profile: keep, decode b=1, [0-9]* steps" "$TMP/out" &&
  grep -q "^profile: keep, decode b=2, " "$TMP/out" &&
  grep -Eq "^  matmul +output.logits +[0-9.]+ ms/step" "$TMP/out" &&
  grep -Eq "^  cache_attention +attn +[0-9.]+ ms/step" "$TMP/out"; then
  ok "profile: per batch size, products and attention named"
else
  bad "profile"; cat "$TMP/out" "$TMP/err"
fi

# A stand-in for bench/peer_generate.py: the same JSON lines, fixed figures.
cat >"$TMP/peer" <<'EOF2'
#!/bin/sh
echo '{"peer": "torch", "what": "prefill", "batch": 1, "tokens": 8, "tokens_per_s": 100.0}'
echo '{"peer": "torch", "what": "decode", "batch": 1, "tokens": 8, "tokens_per_s": 10.0}'
echo '{"peer": "torch", "what": "decode", "batch": 2, "tokens": 8, "tokens_per_s": 20.0}'
EOF2
chmod +x "$TMP/peer"
if "$EFT" bench generate "$MODEL" --threads 2 --seconds 0.2 --prefill 8 --context 8 --decode 1,2 \
    --weight-dtype keep,int8 --rounds 2 --python "$TMP/peer" >"$TMP/out" 2>"$TMP/err" &&
  grep -q "medians of 2 rounds" "$TMP/out" && row_positive "$TMP/out" keep &&
  awk '$1 == "torch" && $2 == 100 && $3 == 10 && $4 == 20 { found = 1 } END { exit !found }' "$TMP/out" &&
  [ "$(grep -c "round [12] of 2 done" "$TMP/err")" = 2 ]; then
  ok "rounds: medians, and the peer's figures as it gave them"
else
  bad "rounds: table"; cat "$TMP/out" "$TMP/err"
fi
# The ratio rows: keep and int8, three ratios each, every one positive with its range.
if awk '/^x torch/ { on = 1; next } on && ($1 == "keep" || $1 == "int8") {
          n = 0; for (i = 2; i <= NF; i++) if ($i ~ /^[0-9.]+x$/ && $i + 0 > 0) n++
          if (n == 3) rows++ } END { exit rows != 2 }' "$TMP/out"; then
  ok "rounds: a ratio to the peer per weight type and figure"
else
  bad "rounds: ratios"; cat "$TMP/out"
fi

for args in "--decode 0" "--weight-dtype q3" "--act-dtype f16" "--kv-dtype f8" "--seconds 0" "--rounds 0" "--rounds 21" "--frobnicate"; do
  # shellcheck disable=SC2086
  if "$EFT" bench generate "$MODEL" $args >"$TMP/out" 2>"$TMP/err"; then
    bad "bad flag accepted: $args"
  elif [ -s "$TMP/err" ]; then
    ok "bad flag refused with a message: $args"
  else
    bad "bad flag refused silently: $args"
  fi
done
if "$EFT" bench generate "$SRC/tests/fixtures/models/no-such-model" >"$TMP/out" 2>"$TMP/err"; then
  bad "missing model accepted"
else
  ok "missing model refused"
fi

e2e_finish
