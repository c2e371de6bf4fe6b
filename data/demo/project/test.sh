#!/bin/sh
# The project's check (sh test.sh): runs every case, fails if any case fails.
failures=0

# check EXPECTED_OUTPUT EXPECTED_EXIT_CODE ARGS...
check() {
  expected=$1 expected_code=$2
  shift 2
  actual=$(sh ./temp.sh "$@" 2>&1)
  code=$?
  if [ "$actual" = "$expected" ] && [ "$code" -eq "$expected_code" ]; then
    echo "ok   temp.sh $*"
  else
    echo "FAIL temp.sh $*: got '$actual' (exit $code), want '$expected' (exit $expected_code)"
    failures=$((failures + 1))
  fi
}

check 212 0 c2f 100
check 32 0 c2f 0
check 100 0 f2c 212
check -40 0 f2c -40

[ "$failures" -eq 0 ] && echo "all checks pass" || { echo "$failures failing"; exit 1; }
