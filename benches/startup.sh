#!/usr/bin/env bash
# Cold start of whole aloop processes against a hello-world Rust binary, with
# hyperfine (apt-get install hyperfine). Run from the repository root.
set -euo pipefail
cargo build --release --quiet
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf 'fn main() { println!("hello"); }\n' > "$work/hello.rs"
rustc -O -o "$work/hello" "$work/hello.rs"
aloop=$PWD/target/release/aloop
export ALOOP_HOME=$work/home
mkdir -p "$work/project" && cd "$work/project"
git init -q -b main
"$aloop" init --agent claude >/dev/null 2>&1
printf '{"project":"p","branchName":"main","description":"","userStories":[{"id":"US-001","title":"t","priority":1,"passes":false}]}\n' > .loop/prd.json
"$aloop" iterate watch --interval 1h >/dev/null 2>&1
hyperfine -N --warmup 20 --runs 300 \
  "$work/hello" \
  "$aloop --version" \
  "$aloop status" \
  "$aloop iterate watch --status"
