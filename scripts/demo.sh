#!/usr/bin/env bash
# The main job on the embedded default store, from nothing: make a day of logs, fold them into
# ./data, then serve the API (and its console) on 127.0.0.1 and print requests to try.
#   bash scripts/demo.sh            # 1M lines; ROWS=10000000 for the benchmark's size
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${ROWS:-1000000}
LISTEN=${LISTEN:-127.0.0.1:9000}
DAY=2019-12-10
NOW=2019-12-11T00:00:00Z

cargo build --release --locked -p srctraffic-batch -p srctraffic-api
rm -rf demo-logs demo-logs.truth.csv demo-logs.truth.measures.csv
./target/release/srctraffic-batch gen-logs --out demo-logs --domains 200 --rows "$ROWS" --day $DAY --bad-ratio 0.0005 \
  --scheme-column
./target/release/srctraffic-batch aggregate --store ./data --now $NOW --rejects demo-rejects.csv demo-logs
# gen-logs names domain 0 img0.customer0.example.com and makes it the busiest; the README's
# examples use it.
domain=img0.customer0.example.com
cat <<MSG

The API is starting on http://$LISTEN (auth off, data clock fixed at $NOW). Try:

  curl 'http://$LISTEN/?Action=DescribeDomainRealTimeSrcTrafficData&DomainName=$domain&StartTime=${DAY}T20:00:00Z&EndTime=${DAY}T20:05:00Z&Format=JSON'
  curl 'http://$LISTEN/?Action=DescribeDomainSrcHttpCodeData&DomainName=$domain&StartTime=${DAY}T20:00:00Z&EndTime=${DAY}T20:10:00Z&Format=JSON'

or open the console, which draws any of the seven actions: http://$LISTEN/console

Ctrl-C stops it.
MSG
exec ./target/release/srctraffic-api serve --listen "$LISTEN" --store ./data --auth off --now $NOW
