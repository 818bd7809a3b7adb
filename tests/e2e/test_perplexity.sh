#!/usr/bin/env bash
# test_perplexity.sh EFT SOURCE_DIR — `eft perplexity` on a fixture causal LM: one row per weight
# type, f32 the baseline (agreement 100 %, +0 %), f16 within a hair of f32, every perplexity a
# positive finite number and int4 the furthest from f32; bad arguments are clear errors.
set -u
EFT=$1
SRC=$2
# shellcheck source=lib.sh
. "$SRC/tests/e2e/lib.sh"
export EFT_CACHE_DIR=$TMP/cache
LM=$SRC/tests/fixtures/models/llama
TEXT=$SRC/tests/fixtures/text/perplexity.txt

if "$EFT" perplexity "$LM" --file "$TEXT" --ctx-len 128 --greedy 16 --prompt-tokens 16 >"$TMP/out" 2>"$TMP/err" &&
   python3 - "$TMP/out" <<'PY'
import math, sys
rows = {}
for line in open(sys.argv[1]):
    f = line.split()
    if f and f[0] in ("f32", "f16", "int8", "int4"):
        rows[f[0]] = (float(f[1]), float(f[2].rstrip("%")), float(f[3].rstrip("%")), int(f[4]), int(f[6]))
assert set(rows) == {"f32", "f16", "int8", "int4"}, rows
for name, (ppl, rel, top1, same, total) in rows.items():
    assert math.isfinite(ppl) and ppl > 1, (name, ppl)
    assert total == 16 and 0 <= same <= total, (name, same, total)
assert rows["f32"][1:4] == (0.0, 100.0, 16), rows["f32"]
assert abs(rows["f16"][1]) < 0.1 and rows["f16"][2] >= 95, rows["f16"]
assert rows["int8"][2] >= 85, rows["int8"]
assert abs(rows["int4"][1]) >= abs(rows["int8"][1]) and rows["int4"][2] <= rows["int8"][2], rows
PY
then ok "perplexity table"; else bad "perplexity: $(cat "$TMP/out") $(head -c 300 "$TMP/err")"; fi

"$EFT" perplexity "$LM" --file "$TMP/none.txt" >/dev/null 2>"$TMP/err"
[ $? -ne 0 ] && grep -q "none.txt" "$TMP/err" && ok "a missing file" || bad "missing file: $(head -c 200 "$TMP/err")"
"$EFT" perplexity "$LM" --file "$TEXT" --weight-dtype int3 >/dev/null 2>"$TMP/err"
[ $? -ne 0 ] && grep -q "int3" "$TMP/err" && ok "a bad --weight-dtype" || bad "bad dtype: $(head -c 200 "$TMP/err")"
"$EFT" perplexity "$LM" >/dev/null 2>"$TMP/err"
[ $? -eq 2 ] && grep -q "usage" "$TMP/err" && ok "no --file: usage" || bad "no file: $(head -c 200 "$TMP/err")"
printf 'a' >"$TMP/short.txt"
"$EFT" perplexity "$LM" --file "$TMP/short.txt" >/dev/null 2>"$TMP/err"
[ $? -ne 0 ] && grep -q "at least 3" "$TMP/err" && ok "a text too short" || bad "short: $(head -c 200 "$TMP/err")"

e2e_finish
