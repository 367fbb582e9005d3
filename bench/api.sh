#!/usr/bin/env bash
# API benchmark over HTTP (BENCH.md section 2): requests per second and p99 with wrk at 32
# connections against `srctraffic-api serve` (auth off), RSS before and after 100,000+ requests,
# cold start (exec to the first answered request, median of 20) and the release binary's size.
# The store is the batch's output for the benchmark's day (1,000 domains).
#   bash bench/api.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${BENCH_DIR:-target/bench-data}
ROWS=${ROWS:-10000000}
NOW=2019-12-11T00:00:00Z
cargo build --release --locked -p srctraffic-api -p srctraffic-batch
command -v wrk >/dev/null || apt-get install -y -q wrk >/dev/null
STORE="$DIR/api-store"
if [ ! -f "$STORE/meta/watermark" ]; then
  [ -d "$DIR/plain-$ROWS" ] || target/release/srctraffic-batch gen-logs --out "$DIR/plain-$ROWS" --domains 1000 --rows "$ROWS" --day 2019-12-10 --seed 7
  target/release/srctraffic-batch aggregate --store "$STORE" --now $NOW "$DIR/plain-$ROWS" > /dev/null
fi
domain=$(target/release/srctraffic-batch export --store "$STORE" | sed -n 2p | cut -d, -f1)
out=$(mktemp)
target/release/srctraffic-api serve --listen 127.0.0.1:0 --store "$STORE" --auth off --now $NOW > "$out" 2>/dev/null &
pid=$!
trap 'kill $pid 2>/dev/null; rm -f "$out"' EXIT
for _ in $(seq 100); do grep -q listening "$out" && break; sleep 0.05; done
addr=$(sed -n 's|listening on http://||p' "$out")
url="http://$addr/?Action=DescribeDomainRealTimeSrcTrafficData&DomainName=$domain&StartTime=2019-12-10T00:00:00Z&EndTime=2019-12-11T00:00:00Z&Format=JSON"
curl -sf "$url" > /dev/null
rss() { awk '/VmRSS/ {print $2}' "/proc/$pid/status"; }
before=$(rss)
wrk -t2 -c32 -d15s --latency "$url" | tee "$DIR/wrk.txt"
after=$(rss)
requests=$(awk '/requests in/ {print $1}' "$DIR/wrk.txt")
echo "RSS: $before KiB before, $after KiB after $requests requests"
kill $pid; wait $pid 2>/dev/null || true

python3 - "$STORE" "$url" <<'PY'
import socket, statistics, subprocess, sys, time, urllib.parse
store, url = sys.argv[1], sys.argv[2]
u = urllib.parse.urlsplit(url)
times = []
for i in range(20):
    port = 19000 + i
    t0 = time.perf_counter()
    p = subprocess.Popen(["target/release/srctraffic-api", "serve", "--listen", f"127.0.0.1:{port}",
                          "--store", store, "--auth", "off", "--now", "2019-12-11T00:00:00Z"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while True:
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=1)
            s.sendall(f"GET /?{u.query} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            if s.recv(12).startswith(b"HTTP/1.1 200"):
                times.append(time.perf_counter() - t0)
                s.close()
                break
            s.close()
        except OSError:
            time.sleep(0.0005)
    p.kill(); p.wait()
print(f"cold start (exec to first 200), median of 20: {statistics.median(times) * 1000:.1f} ms (target < 20)")
PY
echo "release binary: $(stat -c %s target/release/srctraffic-api) bytes"
