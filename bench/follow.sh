#!/usr/bin/env bash
# Freshness with `aggregate --follow` (its default --interval and --settle): 100 files land one
# a second, each with a domain of its own; a client polls the API (srctraffic-api serve, on the
# same store) every 50 ms until each file's bytes are in its answer. Prints the p50, p99 and
# worst time from a file being written to its data being answered (target: p99 within 5 s).
#
#   bash bench/follow.sh          # FILES=20 for a quick look
set -euo pipefail
cd "$(dirname "$0")/.."
FILES=${FILES:-100}
DIR=${BENCH_DIR:-target/bench-data}/follow
NOW=2019-12-11T00:00:00Z
cargo build --release --locked -p srctraffic-batch -p srctraffic-api
rm -rf "$DIR"; mkdir -p "$DIR/logs"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
target/release/srctraffic-batch aggregate --follow --now $NOW --store "$DIR/store" "$DIR/logs" > "$DIR/follow.log" 2>&1 &
FOLLOW=$!
target/release/srctraffic-api serve --listen 127.0.0.1:"$PORT" --store "$DIR/store" --auth off --now $NOW > "$DIR/api.log" 2>&1 &
API=$!
trap 'kill $FOLLOW $API 2>/dev/null || true' EXIT
python3 - "$DIR/logs" "$FILES" "$PORT" <<'PY'
import json, os, statistics, sys, threading, time, urllib.request
logs, n, port = sys.argv[1], int(sys.argv[2]), sys.argv[3]
for _ in range(100):
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/?Action=DescribeDomainRealTimeSrcTrafficData&DomainName=a.com", timeout=1)
        break
    except Exception as e:
        if getattr(e, "code", None):
            break
        time.sleep(0.1)
lat = [None] * n
landed = [None] * n
def answered(i):
    q = (f"http://127.0.0.1:{port}/?Action=DescribeDomainRealTimeSrcTrafficData&DomainName=f{i}.example.com"
         "&StartTime=2019-12-10T10:00:00Z&EndTime=2019-12-10T10:01:00Z&Format=JSON")
    body = json.load(urllib.request.urlopen(q, timeout=5))
    pts = body["RealTimeSrcTrafficDataPerInterval"]["DataModule"]
    return any(p["Value"] == str(i + 1) for p in pts)
def poll():
    while any(l is None for l in lat):
        for i in range(n):
            if landed[i] is not None and lat[i] is None and answered(i):
                lat[i] = time.time() - landed[i]
        time.sleep(0.05)
t = threading.Thread(target=poll); t.start()
for i in range(n):
    path = os.path.join(logs, f"{i:04}.csv")
    with open(path, "w") as f:
        f.write(f"time,domain,bytes\n2019-12-10T10:00:00Z,f{i}.example.com,{i + 1}\n")
    landed[i] = time.time()
    time.sleep(1)
t.join(timeout=60)
done = sorted(l for l in lat if l is not None)
if len(done) < n:
    sys.exit(f"{n - len(done)} files never answered")
q = statistics.quantiles(done, n=100)
print(f"{n} files, one a second: from written to answered p50 {q[49]:.2f} s, p99 {q[98]:.2f} s, worst {done[-1]:.2f} s")
PY
kill -TERM $FOLLOW; wait $FOLLOW || true
tail -1 "$DIR/follow.log"
rm -rf "$DIR"
