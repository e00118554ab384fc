#!/usr/bin/env bash
# Builds the dissector's fuzz target with libFuzzer and coverage instrumentation, and runs it.
# Uses the stable toolchain: the instrumentation flags cargo-fuzz passes are stable; only its
# sanitizers need nightly, and the dissector has no unsafe code for them to check.
# Usage: hack/fuzz.sh [seconds, default 30]   (crashes land in parser/fuzz/artifacts/)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
seconds=${1:-30}
export CARGO_TARGET_DIR=${TRAWL_CACHE:-$HOME/.cache/trawl}/fuzz-target
export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares -Cdebug-assertions -Coverflow-checks"
# An explicit --target keeps RUSTFLAGS (the instrumentation) off build scripts, as cargo-fuzz does.
target=$(rustc -vV | awk '/^host:/ {print $2}')
cargo build --release -q --target "$target" --manifest-path "$root/parser/fuzz/Cargo.toml"
mkdir -p "$root/parser/fuzz/corpus/dissect" "$root/parser/fuzz/artifacts/dissect"
"$CARGO_TARGET_DIR/$target/release/dissect" -max_total_time="$seconds" -max_len=2048 \
  -artifact_prefix="$root/parser/fuzz/artifacts/dissect/" "$root/parser/fuzz/corpus/dissect" 2>&1 | tail -n 3
