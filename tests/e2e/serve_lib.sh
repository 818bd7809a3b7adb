# serve_lib.sh — sourced by the end-to-end tests that run `eft serve` (not a test itself).
#
# serve_start LOG ARGS...: starts "$EFT" serve --port 0 ARGS... in the background with its stderr
# in LOG (ASan's quarantine kept small, so a long run does not grow to gigabytes), sets SPID and
# PORT, and waits up to 60 s for /health to answer 200. On failure sets SERVE_WHY (with the start
# of LOG) and returns 1; the caller decides what that means for its count. Call it directly, not
# in $(...): SPID and PORT must reach the caller's shell.
serve_start() {
  local log=$1
  shift
  ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=1" "$EFT" serve --port 0 "$@" 2>"$log" &
  SPID=$!
  PORT=
  local _
  for _ in $(seq 300); do
    PORT=$(grep -o 'listening on http://127.0.0.1:[0-9]*' "$log" | grep -o '[0-9]*$')
    [ -n "$PORT" ] && break
    kill -0 "$SPID" 2>/dev/null || break
    sleep 0.1
  done
  if [ -z "$PORT" ]; then
    SERVE_WHY="no 'listening on' line: $(head -c 300 "$log")"
    return 1
  fi
  for _ in $(seq 600); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/health")" = 200 ] && return 0
    kill -0 "$SPID" 2>/dev/null || break
    sleep 0.1
  done
  SERVE_WHY="/health never answered 200: $(head -c 300 "$log")"
  return 1
}
