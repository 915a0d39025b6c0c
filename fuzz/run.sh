#!/usr/bin/env bash
# Coverage-guided fuzzing of the LogQL parser with libFuzzer on the stable toolchain (the
# sancov flags cargo-fuzz passes, without its nightly-only sanitizers).
# Usage: fuzz/run.sh [SECONDS]   (corpus in fuzz/corpus/parse_expr, crashes in fuzz/artifacts/)
set -euo pipefail
cd "$(dirname "$0")"
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
 -Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions"
TARGET=$(rustc -vV | sed -n 's/^host: //p')
cargo build --release --target "$TARGET"
mkdir -p corpus/parse_expr artifacts
"target/$TARGET/release/parse_expr" -max_total_time="${1:-60}" -max_len=1024 \
  -artifact_prefix=artifacts/ corpus/parse_expr
