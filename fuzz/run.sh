#!/usr/bin/env bash
# Coverage-guided fuzzing with libFuzzer on the stable toolchain (the sancov flags cargo-fuzz
# passes, without its nightly-only sanitizers).
# Usage: fuzz/run.sh [SECONDS] [TARGET...]   each target for SECONDS (default 60; default
#        targets: all of them). Corpus in fuzz/corpus/<target> (seeded from fuzz/seeds/<target>),
#        crashes in fuzz/artifacts/. The seeds also run on every `cargo test` (tests/fuzz_seeds.rs).
set -euo pipefail
cd "$(dirname "$0")"
SECS=${1:-60}
shift || true
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
  TARGETS=(parse_expr push_json push_proto line_format config segment wal)
fi
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
 -Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions"
TARGET=$(rustc -vV | sed -n 's/^host: //p')
cargo build --release --target "$TARGET" $(printf -- '--bin %s ' "${TARGETS[@]}")
mkdir -p artifacts
for t in "${TARGETS[@]}"; do
  mkdir -p "corpus/$t"
  echo "== $t: ${SECS}s"
  "target/$TARGET/release/$t" -max_total_time="$SECS" -max_len=65536 -timeout=10 \
    -rss_limit_mb=2048 -artifact_prefix="artifacts/$t-" "corpus/$t" "seeds/$t"
done
