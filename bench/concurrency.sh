#!/usr/bin/env bash
# Write-path benchmark: what per-file triggers, frequent runs and Distributed Map shards do.
# On the batch benchmark's files (10M lines, 24 files, 1,000 domains), interleaved rounds of
#   one    : one run over all 24 files,
#   24x1   : 24 concurrent runs of one file each,
# on disk, and on the test S3 server (127.0.0.1, data on disk)
#   s3-one : one run over all 24 files,
#   s3-8x3 : 8 concurrent runs of 3 files each,
# each on a fresh store whose export is checked against the ground truth. Prints medians, the
# ratio of each concurrent form to its one run (target: at most 2x), and the S3 requests each
# form made (counted by the server).
#
#   bash bench/concurrency.sh             # ROWS=1000000 ROUNDS=1 for a quick look
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${ROWS:-10000000}
DOMAINS=${DOMAINS:-1000}
ROUNDS=${ROUNDS:-3}
DIR=${BENCH_DIR:-target/bench-data}
NOW=2019-12-11T00:00:00Z
BIN=target/release/srctraffic-batch
S3BIN=target/release/s3-test-server

cargo build --release --locked -p srctraffic-batch -p srctraffic-s3-test-server
mkdir -p "$DIR"
PLAIN="$DIR/plain-$ROWS"
if [ ! -f "$PLAIN.done" ]; then
  rm -rf "$PLAIN"
  $BIN gen-logs --out "$PLAIN" --domains "$DOMAINS" --rows "$ROWS" --day 2019-12-10 --seed 7
  touch "$PLAIN.done"
fi
cat "$PLAIN"/*.csv > /dev/null
OUT="$DIR/concurrency"; rm -rf "$OUT"; mkdir -p "$OUT/s3root/bench"
FILES=("$PLAIN"/*.csv)

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
$S3BIN --port "$PORT" --access-key bench-key --secret-key bench-secret --stats "$OUT/s3stats.json" "$OUT/s3root" 2> "$OUT/s3.log" &
S3PID=$!
trap 'kill $S3PID 2>/dev/null || true' EXIT
export AWS_ENDPOINT_URL=http://127.0.0.1:$PORT AWS_ACCESS_KEY_ID=bench-key AWS_SECRET_ACCESS_KEY=bench-secret \
  AWS_REGION=us-east-1 SRCTRAFFIC_S3_PATH_STYLE=1 AWS_EC2_METADATA_DISABLED=true
for _ in $(seq 50); do [ -s "$OUT/s3.log" ] && break; sleep 0.1; done

RESULTS="$OUT/results.txt"; : > "$RESULTS"
# The server rewrites its stats file as requests come: a read may catch it empty, so read again.
s3_requests() {
  sleep 1.2
  local s
  for _ in 1 2 3 4 5; do
    s=$(cat "$OUT/s3stats.json" 2>/dev/null || true)
    case "$s" in "{"*"}") echo "$s"; return ;; esac
    sleep 0.2
  done
  echo '{}'
}
# measure NAME STORE CMD...: runs CMD, checks the store against the truth, records the time.
measure() {
  local name=$1 store=$2; shift 2
  local before; before=$(s3_requests)
  local t0; t0=$(date +%s.%N)
  "$@"
  local t1; t1=$(date +%s.%N)
  local after; after=$(s3_requests)
  $BIN export --store "$store" > "$OUT/export.csv"
  python3 bench/compare.py "$PLAIN.truth.csv" "$OUT/export.csv" > /dev/null || { echo "$name: wrong totals"; exit 1; }
  echo "$ROUND $name $(echo "$t1 - $t0" | bc) $before $after" >> "$RESULTS"
}
agg() { $BIN aggregate --now $NOW --store "$@" > /dev/null; }
# Runs every given command at once; fails if any fails.
together() {
  local pids=()
  while [ $# -gt 0 ]; do
    local store=$1 files=$2; shift 2
    # shellcheck disable=SC2086
    agg "$store" $files & pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; done
}
one_file_each() { local args=(); for f in "${FILES[@]}"; do args+=("$1" "$f"); done; together "${args[@]}"; }
three_files_each() {
  local args=()
  for i in $(seq 0 3 23); do args+=("$1" "${FILES[$i]} ${FILES[$((i + 1))]} ${FILES[$((i + 2))]}"); done
  together "${args[@]}"
}

for i in $(seq 0 "$ROUNDS"); do  # round 0 is the warm-up and is dropped
  ROUND=$i
  measure one "$OUT/one-$i" agg "$OUT/one-$i" "$PLAIN"
  measure 24x1 "$OUT/many-$i" one_file_each "$OUT/many-$i"
  measure s3-one "s3://bench/one-$i" agg "s3://bench/one-$i" "$PLAIN"
  measure s3-8x3 "s3://bench/many-$i" three_files_each "s3://bench/many-$i"
  rm -rf "$OUT/one-$i" "$OUT/many-$i" "$OUT/s3root/bench/one-$i" "$OUT/s3root/bench/many-$i"
done

python3 - "$RESULTS" <<'PY'
import json, statistics, sys
rows, reqs = {}, {}
for line in open(sys.argv[1]):
    round_, name, wall, rest = line.split(" ", 3)
    if round_ == "0":
        continue
    before, after = rest.split("} ")
    b, a = json.loads(before + "}"), json.loads(after)
    rows.setdefault(name, []).append(float(wall))
    reqs[name] = {k: a.get(k, 0) - b.get(k, 0) for k in ("get", "put", "list", "delete")}
med = {k: statistics.median(v) for k, v in rows.items()}
print(f"\n{len(rows['one'])} interleaved rounds, median wall time, every store exact")
print("| form | wall s | vs its one run | S3 GET | S3 PUT | S3 LIST |")
print("| --- | --- | --- | --- | --- | --- |")
base = {"one": "one", "24x1": "one", "s3-one": "s3-one", "s3-8x3": "s3-one"}
for k in rows:
    r = reqs[k] if k.startswith("s3") else {"get": "-", "put": "-", "list": "-"}
    print(f"| {k} | {med[k]:.2f} | {med[k] / med[base[k]]:.2f}x | {r['get']} | {r['put']} | {r['list']} |")
print(f"\n24 concurrent one-file runs: {med['24x1'] / med['one']:.2f}x one run (target <= 2); "
      f"8 concurrent runs on S3: {med['s3-8x3'] / med['s3-one']:.2f}x one run (target <= 2)")
PY
