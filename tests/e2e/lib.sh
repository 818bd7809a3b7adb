# lib.sh — sourced by the end-to-end test scripts (not a test itself), after they set EFT and SRC:
# a fresh temporary directory TMP, removed at exit (a script with more to clean up sets its own
# EXIT trap afterwards, which must remove TMP too), and the pass/fail counters with ok, bad and
# e2e_finish.
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; }
# e2e_finish: prints the counts; its status (0 when nothing failed) is the script's.
e2e_finish() {
  echo "$pass passed, $fail failed"
  [ "$fail" -eq 0 ]
}
