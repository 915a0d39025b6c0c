#!/usr/bin/env bash
# Restart-to-ready with about 1 GB of WAL: push without flushing, SIGKILL, restart, time /ready.
# Usage: benches/wal_replay.sh [SECONDS_OF_PUSH]   (needs a release build)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=./target/release/sawmill
DATA=$(mktemp -d)
CFG=$DATA.yaml
PORT=3311
cat > "$CFG" <<YAML
server:
  log_level: warn
limits_config:
  ingestion_rate_mb: 100000
  ingestion_burst_size_mb: 100000
ingester:
  chunk_target_size: 8GB
  max_chunk_age: 24h
  chunk_idle_period: 24h
  flush_check_period: 24h
  wal:
    max_size: 100GB
    segment_size: 256MB
YAML
$BIN serve --config "$CFG" --data-dir "$DATA" --listen 127.0.0.1:$PORT &
PID=$!
until curl -fs http://127.0.0.1:$PORT/ready >/dev/null; do sleep 0.1; done
$BIN bench push --addr http://127.0.0.1:$PORT --connections 4 --duration "${1:-7}"
kill -KILL $PID; wait $PID 2>/dev/null || true
echo "WAL on disk: $(du -sb "$DATA/wal" | cut -f1) bytes"
START=$(date +%s.%N)
$BIN serve --config "$CFG" --data-dir "$DATA" --listen 127.0.0.1:$PORT &
PID=$!
until curl -fs http://127.0.0.1:$PORT/ready >/dev/null 2>&1; do sleep 0.01; done
END=$(date +%s.%N)
echo "restart to ready: $(echo "$END - $START" | bc) s"
grep VmHWM /proc/$PID/status
kill -TERM $PID; wait $PID 2>/dev/null || true
rm -rf "$DATA" "$CFG"
