#!/usr/bin/env bash
# test.sh — the whole test suite, from scratch: set-up (scripts/setup.sh --test), a fresh release
# build and its tests, a fresh ASan+UBSan build and its tests, and a short libFuzzer run of every
# fuzz target. Prints one closing line "N passed, N failed" over all of it; exits non-zero on any
# failure.
set -uo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-$(nproc)}
FUZZ_SECONDS=${FUZZ_SECONDS:-10}

bash scripts/setup.sh --test || { echo "setup failed"; echo "0 passed, 1 failed"; exit 1; }

passed=0
failed=0
count_ctest() { # $1 = ctest log
  local line p f
  line=$(grep -E "tests passed, [0-9]+ tests failed out of" "$1" | tail -n 1)
  if [ -z "$line" ]; then failed=$((failed + 1)); return; fi
  f=$(echo "$line" | sed -E 's/.* ([0-9]+) tests failed out of ([0-9]+).*/\1/')
  p=$(( $(echo "$line" | sed -E 's/.*out of ([0-9]+).*/\1/') - f ))
  passed=$((passed + p)); failed=$((failed + f))
}

suite() { # $1 = build dir, rest = cmake options
  local dir=$1; shift
  echo "== $dir: configure and build from scratch"
  rm -rf "$dir"
  if ! cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >"$dir.log" 2>&1 ||
     ! cmake --build "$dir" -j "$JOBS" >>"$dir.log" 2>&1; then
    tail -n 40 "$dir.log"; echo "build in $dir failed"; failed=$((failed + 1)); return
  fi
  echo "== $dir: ctest"
  (cd "$dir" && ctest -j "$JOBS" --output-on-failure --timeout 900) 2>&1 | tee "$dir/ctest.log" | grep -vE "^ *[0-9]+/[0-9]+ Test +#[0-9]+: .* Passed|^ *Start +[0-9]+: "
  count_ctest "$dir/ctest.log"
}

suite build
suite build-asan -DEFT_SANITIZE=ON
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}

echo "== build-fuzz: libFuzzer targets, ${FUZZ_SECONDS}s each"
rm -rf build-fuzz
fuzz_targets=$(for f in tests/fuzz/fuzz_*.c; do basename "$f" .c; done)
# shellcheck disable=SC2086 # one --target per fuzz target
if CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEFT_FUZZ=ON >build-fuzz.log 2>&1 &&
   cmake --build build-fuzz -j "$JOBS" $(printf -- '--target %s ' $fuzz_targets) >>build-fuzz.log 2>&1; then
  for bin in build-fuzz/fuzz_*; do
    name=${bin#build-fuzz/fuzz_}
    work=$(mktemp -d)
    # Fuzz into a scratch copy of the corpus so the run never modifies the committed seeds.
    cp -r "tests/fuzz/corpus/$name/." "$work/" 2>/dev/null || true
    if "$bin" -max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="build-fuzz/crash-$name-" "$work" >"build-fuzz/$name.log" 2>&1; then
      execs=$(grep -E "stat::number_of_executed_units" "build-fuzz/$name.log" | awk '{print $2}')
      echo "fuzz $name: ok (${execs:-?} executions)"
      passed=$((passed + 1))
    else
      echo "fuzz $name: FAILED"; tail -n 30 "build-fuzz/$name.log"
      failed=$((failed + 1))
    fi
    rm -rf "$work"
  done
else
  tail -n 40 build-fuzz.log; echo "fuzz build failed"; failed=$((failed + 1))
fi

echo
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
