# What every benchmark script shares; sourced, not run: `source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"`.
# Runs from the repository's root with strict bash, keeps builds in the cache outside the clone
# (as hack/test.sh does, so a benchmark after the tests rebuilds nothing), and logs to stderr.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
export TRAWL_CACHE=${TRAWL_CACHE:-$HOME/.cache/trawl}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$TRAWL_CACHE/target}
log() { echo "bench: $*" >&2; }
