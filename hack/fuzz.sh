#!/usr/bin/env bash
# Builds the parser's fuzz targets (the dissector, TCP reassembly, the batch decoder) with libFuzzer and coverage
# instrumentation, and runs each for the given time.
# Uses the stable toolchain: the instrumentation flags cargo-fuzz passes are stable; only its
# sanitizers need nightly, and the dissector has no unsafe code for them to check.
# Usage: hack/fuzz.sh [seconds per target, default 30]   (crashes land in parser/fuzz/artifacts/)
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
for target_name in dissect stream wire_decode; do
  mkdir -p "$root/parser/fuzz/corpus/$target_name" "$root/parser/fuzz/artifacts/$target_name"
  echo "fuzz: $target_name" >&2
  "$CARGO_TARGET_DIR/$target/release/$target_name" -max_total_time="$seconds" -max_len=4096 \
    -artifact_prefix="$root/parser/fuzz/artifacts/$target_name/" "$root/parser/fuzz/corpus/$target_name" 2>&1 | tail -n 3
done
