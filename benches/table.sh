#!/usr/bin/env bash
# Re-runs every benchmark and replaces the table in BENCHMARKS.md (between
# its table markers) with the new one. Run from the repository root; extra
# arguments go to the bench (a row filter). Peers: ALOOP_BENCH_RALPH,
# ALOOP_BENCH_RALPH_SH (see benches/aloop.rs).
set -euo pipefail
table=$(mktemp)
trap 'rm -f "$table"' EXIT
cargo bench --bench aloop -- "$@" > "$table"
{
  sed -n '1,/^<!-- table -->$/p' BENCHMARKS.md
  echo
  echo "One run of \`benches/table.sh\` on $(date -u +%Y-%m-%d), $(nproc) cores, $(uname -sr), $(rustc --version | cut -d' ' -f1-2)."
  echo
  cat "$table"
  echo
  sed -n '/^<!-- \/table -->$/,$p' BENCHMARKS.md
} > BENCHMARKS.md.new
mv BENCHMARKS.md.new BENCHMARKS.md
