#!/usr/bin/env bash
# What each way of running the batch costs on S3, in requests a day, counted by the test S3
# server (127.0.0.1), for a day of logs over 10,000 domains written as 288 objects (one every
# five minutes), logs and store both in S3:
#   nightly    : one run over the day's 288 objects,
#   per object : 288 runs of one object each (a five-minute schedule, or the new-object
#                trigger: EventBridge -> SQS -> the batch function),
# each followed by the next day's first run (nothing new to read, the day over by its clock),
# which folds the day if it holds more than one segment. Then a query of 24 h for one domain,
# at the end of the day, counted too.
# Prints requests by kind and their price at S3 Standard list prices (us-east-1: PUT, COPY,
# POST, LIST $0.005 per 1,000; GET $0.0004 per 1,000; DELETE free).
#
#   bash bench/cost.sh           # DOMAINS=1000 for a quick look
set -euo pipefail
cd "$(dirname "$0")/.."
DOMAINS=${DOMAINS:-10000}
ROWS=${ROWS:-2880000}
DIR=${BENCH_DIR:-target/bench-data}/cost
NOW=2019-12-11T00:00:00Z
BIN=target/release/srctraffic-batch
cargo build --release --locked -p srctraffic-batch -p srctraffic-s3-test-server
rm -rf "$DIR"; mkdir -p "$DIR/s3root/bench"
$BIN gen-logs --out "$DIR/logs" --domains "$DOMAINS" --rows "$ROWS" --files 288 --day 2019-12-10 --seed 3 > /dev/null
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
target/release/s3-test-server --port "$PORT" --access-key k --secret-key s --stats "$DIR/stats.json" "$DIR/s3root" 2> "$DIR/s3.log" &
S3PID=$!
trap 'kill $S3PID 2>/dev/null || true' EXIT
export AWS_ENDPOINT_URL=http://127.0.0.1:$PORT AWS_ACCESS_KEY_ID=k AWS_SECRET_ACCESS_KEY=s \
  AWS_REGION=us-east-1 SRCTRAFFIC_S3_PATH_STYLE=1 AWS_EC2_METADATA_DISABLED=true
for _ in $(seq 50); do [ -s "$DIR/s3.log" ] && break; sleep 0.1; done
# The logs go into the server's bucket directly (not through S3, so not counted).
mkdir -p "$DIR/s3root/bench/logs"; cp "$DIR"/logs/*.csv "$DIR/s3root/bench/logs/"
stats() { sleep 1.2; cat "$DIR/stats.json"; }
RESULTS="$DIR/results.txt"; : > "$RESULTS"
mark() { echo "$1 $(stats)" >> "$RESULTS"; }
mkdir -p "$DIR/empty"
next_day() { $BIN aggregate --now 2019-12-11T03:00:00Z --store "$1" "$DIR/empty" > /dev/null; }
query() {
  target/release/srctraffic-batch inspect --store "$1" --domain img0.customer0.example.com --day 2019-12-10 > /dev/null
}

mark start
$BIN aggregate --now $NOW --store s3://bench/nightly s3://bench/logs/ > /dev/null
mark nightly-runs
next_day s3://bench/nightly
mark nightly-next-run
query s3://bench/nightly
mark nightly-query
for f in $(ls "$DIR/s3root/bench/logs" | sort); do
  $BIN aggregate --now $NOW --store s3://bench/per-object "s3://bench/logs/$f" > /dev/null
done
mark per-object-runs
query s3://bench/per-object
mark per-object-query-before-fold
next_day s3://bench/per-object
mark per-object-next-run
query s3://bench/per-object
mark per-object-query

python3 - "$RESULTS" "$DOMAINS" <<'PY'
import json, sys
rows = [(l.split(" ", 1)[0], json.loads(l.split(" ", 1)[1])) for l in open(sys.argv[1])]
d = lambda a, b: {k: b[k] - a[k] for k in ("get", "put", "list", "delete")}
price = lambda r: (r["put"] + r["list"]) * 0.005 / 1000 + r["get"] * 0.0004 / 1000
print(f"\nrequests for one day of logs over {sys.argv[2]} domains (288 objects), counted at the S3 server")
print("| mode | step | GET | PUT | LIST | DELETE | USD |")
print("| --- | --- | --- | --- | --- | --- | --- |")
days = {}
for (_, a), (name, b) in zip(rows, rows[1:]):
    r = d(a, b)
    mode, step = name.split("-", 1) if name.startswith("nightly") else ("per-object", name[len("per-object-"):])
    print(f"| {mode} | {step} | {r['get']} | {r['put']} | {r['list']} | {r['delete']} | {price(r):.4f} |")
    if "query" not in step:
        t = days.setdefault(mode, {"get": 0, "put": 0, "list": 0, "delete": 0})
        for k in t:
            t[k] += r[k]
print()
for mode, t in days.items():
    print(f"{mode}: {t['get']} GET, {t['put']} PUT, {t['list']} LIST a day = ${price(t):.4f} a day, ${30 * price(t):.2f} a month")
PY
rm -rf "$DIR"
