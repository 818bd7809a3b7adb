#!/usr/bin/env bash
# test_soak.sh EFT SOURCE_DIR — one `eft serve` with the llama fixture (generation, ctx 128, 4
# slots), the bert fixture (embeddings) and the bert-cls fixture (rerank) under a mixed load from
# 12 client threads for $EFT_SOAK_SECONDS (default 30): tests/e2e/soak.py checks the answers,
# deadlines, bad requests, dropped streams, CPU per request and memory over the run. Then SIGTERM
# must exit 0, which under ASan also means LeakSanitizer found nothing.
set -u
EFT=$1
SRC=$2
SECONDS_=${EFT_SOAK_SECONDS:-30}
TMP=$(mktemp -d)
SPID=
cleanup() {
  [ -n "$SPID" ] && kill -9 "$SPID" 2>/dev/null
  rm -rf "$TMP"
}
trap cleanup EXIT
command -v python3 >/dev/null || { echo "skip: python3 is not installed"; exit 0; }
command -v curl >/dev/null || { echo "skip: curl is not installed"; exit 0; }
if "$EFT" serve --help 2>&1 | grep -q "without libmicrohttpd"; then echo "skip: built without libmicrohttpd"; exit 0; fi
F=$SRC/tests/fixtures/models
# shellcheck source=serve_lib.sh
. "$SRC/tests/e2e/serve_lib.sh"
if ! serve_start "$TMP/serve.err" --model "$F/llama" --ctx-len 128 --full-batch-size 4 --max-queue 64 \
  --embedding-model "$F/bert" --rerank-model "$F/bert-cls"; then
  echo "FAIL the server did not start: $SERVE_WHY"
  exit 1
fi
rc=0
python3 "$SRC/tests/e2e/soak.py" "$PORT" "$SPID" "$SECONDS_" || rc=1
kill -TERM "$SPID"
wait "$SPID"
src=$?
SPID=
if [ $src -ne 0 ]; then
  echo "FAIL SIGTERM after the soak: exit $src: $(grep -v '^eft info' "$TMP/serve.err" | tail -20)"
  rc=1
else
  echo "ok   SIGTERM after the soak exits 0"
fi
[ $rc -eq 0 ] && echo "soak passed" || echo "soak FAILED"
exit $rc
